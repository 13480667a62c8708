//! The admin listener: a JSON API over queues, topics and connections, `/metrics` for
//! Prometheus, and a live dashboard page, served over HTTP/1.1 by hyper (no framework).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/` | the dashboard (one self-contained page polling the API every second) |
//! | GET | `/metrics` | Prometheus text format 0.0.4 |
//! | GET | `/api/overview` | version, uptime, connections, traffic, message totals, journal, memory |
//! | GET | `/api/queues` | every queue: depth, bytes, ready, in flight, consumers, closed, counters, rates |
//! | GET | `/api/history` | depth over time per queue (the sampler's ring, one point a second) |
//! | GET, PUT, DELETE | `/api/queues/{name}` | one queue; create a run-time queue; delete one |
//! | GET | `/api/queues/{name}/messages?offset=&limit=` | browse ready messages (paged) |
//! | GET, DELETE | `/api/queues/{name}/messages/{seq}` | one message with its body; remove it |
//! | POST | `/api/queues/{name}/purge`, `/close`, `/reopen` | |
//! | GET | `/api/topics` | topics with subscribers and messages published |
//! | GET, DELETE | `/api/connections`, `/api/connections/{id}` | open connections; close one |
//!
//! Errors are `{"error": "...", "code": "..."}` with a fitting status. Every mutating request is
//! logged (peer, user, what, result). Access: see [`access`]. Two checks guard an open listener
//! against a browser being used against it: a mutating request whose `Origin` is not the
//! listener's own is refused, and without configured users the `Host` header must be an IP
//! address or `localhost` (DNS rebinding).

pub mod access;
pub mod api;
pub mod metrics;
pub mod routes;
pub mod sampler;
pub mod stats;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use access::{Access, Denied, BROKER_RESOURCE};
use api::{ApiError, ApiResult, Reply};
use routes::{queue_destination, route, Route, RouteError};
use sampler::Sampler;

pub const DASHBOARD: &str = include_str!("dashboard.html");

/// Admin connections served at once per listener; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 128;

/// The reserved destination a STOMP client SENDs to, with a `queue` header naming a queue and a
/// `reply-to`, to be sent that queue's statistics (see [`stats_message`]).
pub const STATS_DESTINATION: &str = "/sys/stats";

/// State shared by the admin listeners.
pub struct Admin {
    pub broker: Arc<Broker>,
    pub sampler: Arc<Sampler>,
    access: Access,
}

impl Admin {
    pub fn new(broker: Arc<Broker>) -> Arc<Admin> {
        Arc::new(Admin {
            broker,
            sampler: Arc::default(),
            access: Access::default(),
        })
    }

    /// Starts the sampler and one accept loop per listener; all stop when `shutdown` is
    /// cancelled (open admin connections finish their current request first).
    pub fn start(
        self: &Arc<Self>,
        listeners: Vec<TcpListener>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::with_capacity(listeners.len() + 1);
        tasks.push(tokio::spawn(
            self.sampler
                .clone()
                .run(self.broker.clone(), shutdown.clone()),
        ));
        for listener in listeners {
            tasks.push(tokio::spawn(serve(
                self.clone(),
                listener,
                shutdown.clone(),
            )));
        }
        tasks
    }
}

/// Statistics of one queue for a STOMP client: the headers and JSON body of the MESSAGE the
/// session sends to the request's `reply-to`. `destination` is the request's `queue` header
/// (`/queue/NAME`). The body is the object `GET /api/queues/{name}` returns, without `rates`.
pub fn stats_message(
    broker: &Broker,
    destination: &str,
) -> Result<(Vec<(String, String)>, String), String> {
    let Some(q) = broker.queue(destination) else {
        return Err(format!("queue {destination} does not exist"));
    };
    let body = api::queue_json(&q, None).to_string();
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/json;charset=utf-8".to_owned(),
        ),
        ("stats-queue".to_owned(), destination.to_owned()),
        (
            "stats-timestamp".to_owned(),
            crate::message::now_ms().to_string(),
        ),
    ];
    Ok((headers, body))
}

/// Accepts admin connections until `shutdown`.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin connection refused: too many open");
            continue;
        };
        let admin = admin.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            }
        });
    }
}

/// Serves one request; never fails (errors become JSON error responses).
pub async fn handle(
    admin: &Admin,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = RequestInfo {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        authorization: header(header::AUTHORIZATION),
        host: header(header::HOST),
        origin: header(header::ORIGIN),
        peer,
    };
    drop(req);
    respond(admin, request).await
}

/// What a handler needs of a request (the body is never read: no endpoint takes one).
pub struct RequestInfo {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub peer: SocketAddr,
}

pub async fn respond(admin: &Admin, req: RequestInfo) -> Response<Full<Bytes>> {
    let route = match route(&req.method, &req.path) {
        Ok(r) => r,
        Err(e) => {
            let (err, allow) = match e {
                RouteError::NotFound => (
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not-found",
                        format!("no endpoint {}", req.path),
                    ),
                    None,
                ),
                RouteError::MethodNotAllowed(allow) => (
                    ApiError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method-not-allowed",
                        format!(
                            "{} is not allowed on {} (allowed: {allow})",
                            req.method, req.path
                        ),
                    ),
                    Some(allow),
                ),
                RouteError::BadPath(m) => (
                    ApiError::new(StatusCode::BAD_REQUEST, "bad-request", m),
                    None,
                ),
            };
            let mut resp = error_response(&err);
            if let Some(allow) = allow {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            return resp;
        }
    };
    let config = admin.broker.config();
    if let Err(e) = guard_browser(&req, &route, config.auth.users.is_empty()) {
        return error_response(&e);
    }
    let resource = match &route {
        Route::Queue(s)
        | Route::CreateQueue(s)
        | Route::DeleteQueue(s)
        | Route::Messages(s)
        | Route::Message(s, _)
        | Route::RemoveMessage(s, _)
        | Route::Purge(s)
        | Route::Close(s)
        | Route::Reopen(s)
        | Route::Redrive(s) => queue_destination(s),
        _ => BROKER_RESOURCE.to_owned(),
    };
    let principal = match admin
        .access
        .check(
            &config,
            admin.broker.authenticator(),
            req.authorization.as_deref(),
            &resource,
        )
        .await
    {
        Ok(p) => p,
        Err(denied) => {
            let (err, challenge) = match denied {
                Denied::Unauthenticated(m) => (
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m),
                    true,
                ),
                Denied::Forbidden(m) => {
                    (ApiError::new(StatusCode::FORBIDDEN, "forbidden", m), false)
                }
            };
            if route.is_mutation() || challenge {
                tracing::info!(peer = %req.peer, method = %req.method, path = req.path, status = err.status.as_u16(), "admin request denied");
            }
            let mut resp = error_response(&err);
            if challenge {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"stompd admin\", charset=\"UTF-8\""),
                );
            }
            return resp;
        }
    };
    let result = dispatch(admin, &route, req.query.as_deref()).await;
    if route.is_mutation() {
        let user = principal.as_ref().map_or("-", |p| p.name.as_str());
        match &result {
            Ok(reply) => tracing::info!(
                peer = %req.peer,
                user,
                action = ?route,
                status = reply.status.as_u16(),
                result = %String::from_utf8_lossy(&reply.body),
                "admin change"
            ),
            Err(e) => tracing::info!(
                peer = %req.peer,
                user,
                action = ?route,
                status = e.status.as_u16(),
                code = e.code,
                error = e.message,
                "admin change refused"
            ),
        }
    }
    match result {
        Ok(reply) => reply_response(reply),
        Err(e) => error_response(&e),
    }
}

async fn dispatch(admin: &Admin, route: &Route, query: Option<&str>) -> ApiResult {
    let b = &*admin.broker;
    match route {
        Route::Dashboard => Ok(Reply {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from_static(DASHBOARD.as_bytes()),
        }),
        Route::Metrics => Ok(Reply {
            status: StatusCode::OK,
            content_type: metrics::CONTENT_TYPE,
            body: Bytes::from(metrics::render(&stats::Snapshot::collect(b))),
        }),
        Route::Overview => api::overview(b),
        Route::Queues => api::queues(b, &admin.sampler),
        Route::History => api::history(&admin.sampler),
        Route::Queue(s) => api::queue(b, &admin.sampler, s),
        Route::CreateQueue(s) => api::create_queue(b, s),
        Route::DeleteQueue(s) => api::delete_queue(b, s).await,
        Route::Messages(s) => api::messages(b, s, query),
        Route::Message(s, seq) => api::message(b, s, *seq),
        Route::RemoveMessage(s, seq) => api::remove_message(b, s, *seq),
        Route::Purge(s) => api::purge(b, s),
        Route::Close(s) => api::set_closed(b, s, true, query).await,
        Route::Reopen(s) => api::set_closed(b, s, false, None).await,
        Route::Topics => api::topics(b),
        Route::Connections => api::connections(b),
        Route::CloseConnection(id) => api::close_connection(b, *id),
        Route::Redrive(s) => match b.redrive(&queue_destination(s)) {
            Ok((moved, kept)) => Ok(Reply::ok(
                &serde_json::json!({ "moved": moved, "kept": kept }),
            )),
            Err(e) => Err(api::ApiError::new(StatusCode::NOT_FOUND, e.code, e.message)),
        },
        Route::Reload => match b.reload() {
            Ok(summary) => Ok(Reply::ok(
                &serde_json::json!({ "reloaded": true, "summary": summary }),
            )),
            Err(e) => Err(api::ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-config",
                e,
            )),
        },
    }
}

/// Refuses what only a browser tricked by another site would send: a mutation from a foreign
/// `Origin`, or (when the listener is open) a `Host` that is a DNS name, as a rebinding attack
/// would produce.
fn guard_browser(req: &RequestInfo, route: &Route, open: bool) -> Result<(), ApiError> {
    if open {
        if let Some(host) = &req.host {
            if !is_local_host(host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "bad-host",
                    format!("Host {host:?} refused: without [[auth.users]] the admin listener answers only requests addressed to an IP address or localhost"),
                ));
            }
        }
    }
    if route.is_mutation() {
        if let Some(origin) = &req.origin {
            let same = req
                .host
                .as_deref()
                .is_some_and(|h| origin == &format!("http://{h}"));
            if !same {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross-origin",
                    format!("changes from origin {origin:?} are refused"),
                ));
            }
        }
    }
    Ok(())
}

/// `127.0.0.1:8080`, `[::1]:80`, `localhost`, any IP literal with an optional port.
fn is_local_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => return ip.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn reply_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    reply_response(Reply::json(e.status, &e.body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stompd_config::Config;

    fn info(method: Method, path: &str) -> RequestInfo {
        RequestInfo {
            method,
            path: path.to_owned(),
            query: None,
            authorization: None,
            host: Some("127.0.0.1:9".into()),
            origin: None,
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    async fn call(admin: &Admin, req: RequestInfo) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt as _;
        let resp = respond(admin, req).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[test]
    fn local_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:80",
            "[::1]",
            "localhost:1",
            "LOCALHOST",
            "10.0.0.1:5",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in ["evil.example:80", "evil.example", "[nope]:1", "[::1"] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn api_without_a_listener() {
        let broker = Broker::new(Config::embedded());
        let admin = Admin::new(broker.clone());
        let (s, v) = call(&admin, info(Method::GET, "/api/queues")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["queues"], serde_json::json!([]));

        let (s, v) = call(&admin, info(Method::PUT, "/api/queues/jobs")).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["destination"], "/queue/jobs");
        let (s, v) = call(&admin, info(Method::PUT, "/api/queues/jobs")).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(v["code"], "queue-exists");

        let (s, v) = call(&admin, info(Method::GET, "/api/queues/nope")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["code"], "unknown-queue");
        assert!(v["error"].as_str().unwrap().contains("/queue/nope"));

        let (s, v) = call(&admin, info(Method::POST, "/api/queues/jobs")).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["code"], "method-not-allowed");

        let (s, v) = call(&admin, info(Method::POST, "/api/queues/jobs/close")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(broker.queue("/queue/jobs").unwrap().is_closed());

        let mut foreign = info(Method::POST, "/api/queues/jobs/reopen");
        foreign.origin = Some("http://evil.example".into());
        let (s, v) = call(&admin, foreign).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(v["code"], "cross-origin");
        assert!(broker.queue("/queue/jobs").unwrap().is_closed());

        let mut same = info(Method::POST, "/api/queues/jobs/reopen");
        same.origin = Some("http://127.0.0.1:9".into());
        let (s, _) = call(&admin, same).await;
        assert_eq!(s, StatusCode::OK);
        assert!(!broker.queue("/queue/jobs").unwrap().is_closed());

        let mut rebound = info(Method::GET, "/api/queues");
        rebound.host = Some("evil.example".into());
        let (s, v) = call(&admin, rebound).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("bad-host"))
        );

        let (s, v) = call(&admin, info(Method::DELETE, "/api/queues/jobs")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(broker.queue("/queue/jobs").is_none());
        let (s, _) = call(&admin, info(Method::DELETE, "/api/queues/jobs")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, v) = call(&admin, info(Method::DELETE, "/api/connections/99")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown-connection"))
        );

        let (s, v) = call(&admin, info(Method::GET, "/api/overview")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["journal"].is_null());
    }

    #[test]
    fn stats_message_for_a_queue() {
        let broker = Broker::new(Config::embedded());
        broker.declare_queue("jobs").unwrap();
        let (headers, body) = stats_message(&broker, "/queue/jobs").unwrap();
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["destination"], "/queue/jobs");
        assert_eq!(v["depth"], 0);
        assert!(stats_message(&broker, "/queue/nope").is_err());
    }
}
