//! Request line to [`Route`]: a pure function, so the routing table is tested without sockets.
//!
//! Queue names are one path segment, percent-decoded: `orders` means `/queue/orders`; a segment
//! that decodes to a string starting with `/` is taken as a full destination (so temporary queues,
//! `/temp-queue/NAME@ID`, are reachable as `%2Ftemp-queue%2FNAME%40ID`).

use hyper::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Dashboard,
    Metrics,
    Overview,
    Queues,
    History,
    Queue(String),
    CreateQueue(String),
    DeleteQueue(String),
    Messages(String),
    Message(String, u64),
    RemoveMessage(String, u64),
    Purge(String),
    Close(String),
    Reopen(String),
    Topics,
    Connections,
    CloseConnection(u64),
    Reload,
    Redrive(String),
}

impl Route {
    /// Whether the route changes something (and is logged).
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Route::CreateQueue(_)
                | Route::DeleteQueue(_)
                | Route::RemoveMessage(..)
                | Route::Purge(_)
                | Route::Close(_)
                | Route::Reopen(_)
                | Route::CloseConnection(_)
                | Route::Reload
                | Route::Redrive(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists; these methods are allowed on it.
    MethodNotAllowed(&'static str),
    /// A path segment is not valid percent-encoded UTF-8, or a number is not a number.
    BadPath(String),
}

/// Maps a method and a path (without the query) to a route.
pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    // A trailing slash is tolerated (`/api/queues/`).
    let raw = match raw.split_last() {
        Some((last, rest)) if last.is_empty() && !rest.is_empty() => rest,
        _ => &raw[..],
    };
    let mut segs = Vec::with_capacity(raw.len());
    for s in raw {
        segs.push(percent_decode(s).ok_or_else(|| {
            RouteError::BadPath(format!(
                "path segment {s:?} is not valid percent-encoded UTF-8"
            ))
        })?);
    }
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method;
    let get = |r: Route| {
        if m == Method::GET || m == Method::HEAD {
            Ok(r)
        } else {
            Err(RouteError::MethodNotAllowed("GET, HEAD"))
        }
    };
    let post = |r: Route| {
        if m == Method::POST {
            Ok(r)
        } else {
            Err(RouteError::MethodNotAllowed("POST"))
        }
    };
    match segs[..] {
        [""] | ["index.html"] => get(Route::Dashboard),
        ["metrics"] => get(Route::Metrics),
        ["api", "overview"] => get(Route::Overview),
        ["api", "reload"] => post(Route::Reload),
        ["api", "history"] => get(Route::History),
        ["api", "queues"] => get(Route::Queues),
        ["api", "topics"] => get(Route::Topics),
        ["api", "connections"] => get(Route::Connections),
        ["api", "connections", id] => {
            let id = number(id)?;
            if m == Method::DELETE {
                Ok(Route::CloseConnection(id))
            } else {
                Err(RouteError::MethodNotAllowed("DELETE"))
            }
        }
        ["api", "queues", name] => {
            let name = name.to_owned();
            match *m {
                Method::GET | Method::HEAD => Ok(Route::Queue(name)),
                Method::PUT => Ok(Route::CreateQueue(name)),
                Method::DELETE => Ok(Route::DeleteQueue(name)),
                _ => Err(RouteError::MethodNotAllowed("GET, HEAD, PUT, DELETE")),
            }
        }
        ["api", "queues", name, "messages"] => get(Route::Messages(name.to_owned())),
        ["api", "queues", name, "messages", seq] => {
            let seq = number(seq)?;
            match *m {
                Method::GET | Method::HEAD => Ok(Route::Message(name.to_owned(), seq)),
                Method::DELETE => Ok(Route::RemoveMessage(name.to_owned(), seq)),
                _ => Err(RouteError::MethodNotAllowed("GET, HEAD, DELETE")),
            }
        }
        ["api", "queues", name, "purge"] => post(Route::Purge(name.to_owned())),
        ["api", "queues", name, "close"] => post(Route::Close(name.to_owned())),
        ["api", "queues", name, "reopen"] => post(Route::Reopen(name.to_owned())),
        ["api", "queues", name, "redrive"] => post(Route::Redrive(name.to_owned())),
        _ => Err(RouteError::NotFound),
    }
}

fn number(s: &str) -> Result<u64, RouteError> {
    s.parse()
        .map_err(|_| RouteError::BadPath(format!("{s:?} is not a number")))
}

/// The destination a queue path segment names.
pub fn queue_destination(segment: &str) -> String {
    if segment.starts_with('/') {
        segment.to_owned()
    } else {
        format!("{}{segment}", crate::broker::QUEUE_PREFIX)
    }
}

/// `%XX` sequences to bytes, then UTF-8. `+` is left alone (it is literal in a path).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `key=value&...` with percent-decoding (and `+` as space, as forms send it).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "))?;
        (k == key).then(|| percent_decode(&v.replace('+', " ")))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, p: &str) -> Result<Route, RouteError> {
        route(&m, p)
    }

    #[test]
    fn routing_table() {
        use Route::*;
        let q = || "orders".to_owned();
        assert_eq!(r(Method::GET, "/"), Ok(Dashboard));
        assert_eq!(r(Method::GET, "/metrics"), Ok(Metrics));
        assert_eq!(r(Method::GET, "/api/overview"), Ok(Overview));
        assert_eq!(r(Method::GET, "/api/queues"), Ok(Queues));
        assert_eq!(r(Method::GET, "/api/queues/"), Ok(Queues));
        assert_eq!(r(Method::GET, "/api/history"), Ok(History));
        assert_eq!(r(Method::GET, "/api/topics"), Ok(Topics));
        assert_eq!(r(Method::GET, "/api/connections"), Ok(Connections));
        assert_eq!(
            r(Method::DELETE, "/api/connections/12"),
            Ok(CloseConnection(12))
        );
        assert_eq!(r(Method::GET, "/api/queues/orders"), Ok(Queue(q())));
        assert_eq!(r(Method::HEAD, "/api/queues/orders"), Ok(Queue(q())));
        assert_eq!(r(Method::PUT, "/api/queues/orders"), Ok(CreateQueue(q())));
        assert_eq!(
            r(Method::DELETE, "/api/queues/orders"),
            Ok(DeleteQueue(q()))
        );
        assert_eq!(
            r(Method::GET, "/api/queues/orders/messages"),
            Ok(Messages(q()))
        );
        assert_eq!(
            r(Method::GET, "/api/queues/orders/messages/7"),
            Ok(Message(q(), 7))
        );
        assert_eq!(
            r(Method::DELETE, "/api/queues/orders/messages/7"),
            Ok(RemoveMessage(q(), 7))
        );
        assert_eq!(r(Method::POST, "/api/queues/orders/purge"), Ok(Purge(q())));
        assert_eq!(r(Method::POST, "/api/queues/orders/close"), Ok(Close(q())));
        assert_eq!(
            r(Method::POST, "/api/queues/orders/reopen"),
            Ok(Reopen(q()))
        );
    }

    #[test]
    fn names_are_percent_decoded() {
        assert_eq!(
            r(Method::GET, "/api/queues/a%20b.c"),
            Ok(Route::Queue("a b.c".into()))
        );
        assert_eq!(
            r(Method::GET, "/api/queues/%2Ftemp-queue%2Fx%401"),
            Ok(Route::Queue("/temp-queue/x@1".into()))
        );
        assert_eq!(queue_destination("orders"), "/queue/orders");
        assert_eq!(queue_destination("/temp-queue/x@1"), "/temp-queue/x@1");
        assert_eq!(
            r(Method::GET, "/api/queues/%E2%82%AC"),
            Ok(Route::Queue("€".into()))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(r(Method::GET, "/nope"), Err(RouteError::NotFound));
        assert_eq!(r(Method::GET, "/api/queues/a/b"), Err(RouteError::NotFound));
        assert_eq!(
            r(Method::POST, "/api/queues"),
            Err(RouteError::MethodNotAllowed("GET, HEAD"))
        );
        assert_eq!(
            r(Method::GET, "/api/queues/a/purge"),
            Err(RouteError::MethodNotAllowed("POST"))
        );
        assert_eq!(
            r(Method::POST, "/api/queues/a"),
            Err(RouteError::MethodNotAllowed("GET, HEAD, PUT, DELETE"))
        );
        assert!(matches!(
            r(Method::GET, "/api/queues/a/messages/x"),
            Err(RouteError::BadPath(_))
        ));
        assert!(matches!(
            r(Method::DELETE, "/api/connections/-1"),
            Err(RouteError::BadPath(_))
        ));
        for bad in [
            "/api/queues/%",
            "/api/queues/%4",
            "/api/queues/%zz",
            "/api/queues/%FF",
        ] {
            assert!(
                matches!(r(Method::GET, bad), Err(RouteError::BadPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn mutations() {
        assert!(Route::Purge("a".into()).is_mutation());
        assert!(Route::CloseConnection(1).is_mutation());
        assert!(!Route::Queue("a".into()).is_mutation());
        assert!(!Route::Metrics.is_mutation());
    }

    #[test]
    fn query_params() {
        let q = Some("offset=10&limit=5&x=a%20b+c&flag");
        assert_eq!(query_param(q, "offset").as_deref(), Some("10"));
        assert_eq!(query_param(q, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b c"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "offset"), None);
        assert_eq!(query_param(Some("a=%"), "a"), None);
    }
}
