//! Who may use the admin listener.
//!
//! With no `[[auth.users]]` configured the listener is open, which is why it listens on loopback
//! only unless told otherwise. Once users exist every request needs HTTP Basic credentials of a
//! configured user (checked by the broker's [`Authenticator`], the same argon2id verification
//! STOMP logins use) and the `admin` permission (`[[auth.rules]]`, checked by [`Authenticator::authorize`]) on:
//! the queue's destination for requests about one queue, and [`BROKER_RESOURCE`] for everything
//! else. A rule with `destinations = ["/**"]` and `allow = ["admin"]` grants the whole API.
//!
//! Verifying a passcode costs tens of milliseconds by design, and the dashboard polls every
//! second, so successful credentials are remembered (at most [`CACHE_LIMIT`] of them) until the
//! configuration changes.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use stompd_config::{Config, Permission};

use crate::auth::Authenticator;
use crate::broker::Principal;

/// What broker-wide admin requests (overview, metrics, connections, topics) are authorized on.
pub const BROKER_RESOURCE: &str = "/sys/admin";
pub const CACHE_LIMIT: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No or wrong credentials: 401 with a `WWW-Authenticate` challenge.
    Unauthenticated(&'static str),
    /// A valid user without the `admin` permission: 403.
    Forbidden(String),
}

/// Remembers verified credentials for the broker's current [`Authenticator`] (replaced as a whole
/// on reload, which forgets them).
#[derive(Default)]
pub struct Access {
    current: Mutex<Option<Current>>,
}

struct Current {
    auth: Arc<Authenticator>,
    /// `Authorization` header value to the principal it proved.
    verified: HashMap<String, Principal>,
}

impl Access {
    /// Checks a request's `Authorization` header for `resource`. `Ok(None)`: no users are
    /// configured, the listener is open.
    pub async fn check(
        &self,
        config: &Config,
        auth: Arc<Authenticator>,
        authorization: Option<&str>,
        resource: &str,
    ) -> Result<Option<Principal>, Denied> {
        if config.auth.users.is_empty() {
            return Ok(None);
        }
        let Some(header) = authorization else {
            return Err(Denied::Unauthenticated("credentials required"));
        };
        let cached = {
            let mut current = self.current.lock();
            match current.as_ref() {
                Some(c) if Arc::ptr_eq(&c.auth, &auth) => c.verified.get(header).cloned(),
                _ => {
                    *current = Some(Current {
                        auth: auth.clone(),
                        verified: HashMap::new(),
                    });
                    None
                }
            }
        };
        let principal = match cached {
            Some(p) => p,
            None => {
                let (login, passcode) = parse_basic(header)
                    .ok_or(Denied::Unauthenticated("malformed Basic credentials"))?;
                if login.is_empty() {
                    return Err(Denied::Unauthenticated("credentials required"));
                }
                let principal = auth
                    .clone()
                    .login(None, Some(login), Some(passcode))
                    .await
                    .map_err(|_| Denied::Unauthenticated("authentication failed"))?;
                if principal.anonymous {
                    return Err(Denied::Unauthenticated("credentials required"));
                }
                let mut current = self.current.lock();
                if let Some(c) = current.as_mut().filter(|c| Arc::ptr_eq(&c.auth, &auth)) {
                    if c.verified.len() >= CACHE_LIMIT {
                        c.verified.clear();
                    }
                    c.verified.insert(header.to_owned(), principal.clone());
                }
                principal
            }
        };
        if auth.authorize(&principal, resource, Permission::Admin) {
            Ok(Some(principal))
        } else {
            Err(Denied::Forbidden(format!(
                "{} lacks the admin permission on {resource}",
                principal.name
            )))
        }
    }
}

/// `Basic base64(login:passcode)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, passcode) = text.split_once(':')?;
    Some((login.to_owned(), passcode.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        // "ops:s3cr:et" — the passcode may hold colons.
        assert_eq!(
            parse_basic("Basic b3BzOnMzY3I6ZXQ="),
            Some(("ops".into(), "s3cr:et".into()))
        );
        assert_eq!(
            parse_basic("basic  b3BzOnMzY3I6ZXQ= "),
            Some(("ops".into(), "s3cr:et".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), None); // "nocolon"
        assert_eq!(parse_basic("Basic"), None);
    }

    #[tokio::test]
    async fn open_without_users() {
        let access = Access::default();
        let config = Config::embedded();
        let auth = Arc::new(Authenticator::new(&config.auth).unwrap());
        assert!(matches!(
            access.check(&config, auth, None, BROKER_RESOURCE).await,
            Ok(None)
        ));
    }
}
