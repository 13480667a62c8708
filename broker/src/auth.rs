//! Authentication (who is connecting) and authorization (what they may do).
//!
//! An [`Authenticator`] is built from `[auth]` and replaced as a whole when the configuration is
//! reloaded. It answers three questions:
//!
//! - [`Authenticator::authenticate`]: do this login and passcode name a configured user? The
//!   passcode is checked against the user's argon2id PHC string. That costs tens of milliseconds
//!   of CPU and ~19 MiB of memory by design, so sessions go through [`Authenticator::login`],
//!   which runs it on the blocking pool, at most [`max_concurrent_verifications`] at a time, and
//!   delays failures by `auth.failure_delay_ms`.
//! - [`Authenticator::authenticate_cert`]: which user does a verified client certificate's
//!   subject CN name? No passcode is needed: the TLS handshake proved possession of the key.
//! - [`Authenticator::authorize`]: may this principal read, write, create or administer a
//!   destination? The union of the `[[auth.rules]]` that match both decides; no rule = deny. A
//!   configuration without any rule is an open broker where everything is allowed.
//!
//! Failures never say which part was wrong: an unknown user and a wrong passcode produce the same
//! [`AuthError`] after the same work, because an unknown user's passcode is verified against a
//! dummy hash with the same parameters as a real one. Nothing here logs a passcode or a hash.
//!
//! Logins when no user is configured: with `anonymous = true` and no `[[auth.users]]`
//! (the embedded default) there is nobody to log in as, so any login and passcode are ignored and
//! the client is the anonymous principal. As soon as one user is configured, a login must be valid.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use stompd_config::{glob_match, AuthConfig, AuthRule, Permission};
use tokio::sync::Semaphore;

pub use crate::broker::Principal;

/// Why a login failed, as far as the client may know: nothing more than that it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong passcode, missing login where anonymous access is off, or a client
    /// certificate that names no configured user. Deliberately one case.
    #[error("authentication failed")]
    Failed,
}

/// A user's `password_hash` that is not a usable argon2id PHC string. Found when the
/// [`Authenticator`] is built (broker start or reload); names the key but not the hash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "key `auth.users[{index}].password_hash` (user {name:?}): not a usable argon2id hash: {reason}"
)]
pub struct AuthSetupError {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

struct User {
    hash: PasswordHash,
    groups: Vec<String>,
}

/// Built from `[auth]`; cheap to share (`Arc`), rebuilt on reload.
pub struct Authenticator {
    anonymous: bool,
    failure_delay: Duration,
    users: HashMap<String, User>,
    /// Verified for unknown users so that they cost what a known user costs.
    dummy: PasswordHash,
    rules: Vec<AuthRule>,
    #[cfg(test)]
    dummy_verifications: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Authenticator {
    // By hand: the derived form would print password hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("Authenticator")
            .field("anonymous", &self.anonymous)
            .field("users", &users)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// How many passcode verifications run at once, broker-wide: each holds ~19 MiB (argon2's
/// default `m`) and a core, so a flood of CONNECTs queues here instead of exhausting memory.
pub fn max_concurrent_verifications() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn verification_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(max_concurrent_verifications()))
}

impl Authenticator {
    /// Parses every user's PHC string. The config crate checked their shape; this checks what
    /// only argon2 knows (salt and output lengths, parameter ranges).
    pub fn new(config: &AuthConfig) -> Result<Authenticator, AuthSetupError> {
        let mut users = HashMap::with_capacity(config.users.len());
        let mut dummy = None;
        for (index, user) in config.users.iter().enumerate() {
            let setup_error = |reason: String| AuthSetupError {
                index,
                name: user.name.clone(),
                reason,
            };
            let hash =
                PasswordHash::new(&user.password_hash).map_err(|e| setup_error(e.to_string()))?;
            if hash.algorithm.as_str() != "argon2id" {
                return Err(setup_error("the algorithm must be argon2id".to_owned()));
            }
            // Parameters argon2 rejects would fail every login; say so now.
            argon2::Params::try_from(&hash).map_err(|e| setup_error(e.to_string()))?;
            if hash.salt.is_none() || hash.hash.is_none() {
                return Err(setup_error("salt or hash missing".to_owned()));
            }
            if dummy.is_none() {
                dummy = Some(dummy_like(&hash));
            }
            users.insert(
                user.name.clone(),
                User {
                    hash,
                    groups: user.groups.clone(),
                },
            );
        }
        let dummy = dummy.unwrap_or_else(default_dummy);
        Ok(Authenticator {
            anonymous: config.anonymous,
            failure_delay: config.failure_delay(),
            users,
            dummy,
            rules: config.rules.clone(),
            #[cfg(test)]
            dummy_verifications: Default::default(),
        })
    }

    /// An authenticator that lets nobody in (no users, no anonymous access): a safe stand-in
    /// where a configuration's users cannot be parsed and the caller must not fail.
    pub fn locked() -> Authenticator {
        Authenticator {
            anonymous: false,
            failure_delay: AuthConfig::default().failure_delay(),
            users: HashMap::new(),
            dummy: default_dummy(),
            rules: Vec::new(),
            #[cfg(test)]
            dummy_verifications: Default::default(),
        }
    }

    /// Checks a CONNECT's `login` and `passcode`. CPU-heavy when a login is given (an argon2
    /// verification): call it from [`tokio::task::spawn_blocking`], or use [`Self::login`].
    ///
    /// - no login (absent or empty): the anonymous principal if `anonymous = true`, else failure;
    /// - no users configured and `anonymous = true`: the anonymous principal, whatever the login;
    /// - otherwise the login must be a configured user and the passcode must match its hash. An
    ///   absent passcode is checked as the empty one. An unknown user is checked against a dummy
    ///   hash with the first user's parameters, so that it takes as long as a wrong passcode.
    pub fn authenticate(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let login = login.filter(|l| !l.is_empty());
        let Some(login) = login.filter(|_| !(self.users.is_empty() && self.anonymous)) else {
            return if self.anonymous {
                Ok(Principal::anonymous())
            } else {
                Err(AuthError::Failed)
            };
        };
        let passcode = passcode.unwrap_or("").as_bytes();
        match self.users.get(login) {
            Some(user) if verify(passcode, &user.hash) => Ok(Principal {
                name: login.to_owned(),
                groups: user.groups.clone(),
                anonymous: false,
            }),
            Some(_) => Err(AuthError::Failed),
            None => {
                #[cfg(test)]
                self.dummy_verifications
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // The result is ignored: the dummy matches no passcode anyone knows, and an
                // unknown user fails either way. The work is the point.
                let _ = verify(passcode, &self.dummy);
                Err(AuthError::Failed)
            }
        }
    }

    /// Maps the subject CN of a client certificate that the TLS handshake verified against
    /// `client_ca` to the configured user of that name. Cheap: no passcode is involved.
    pub fn authenticate_cert(&self, subject_cn: &str) -> Result<Principal, AuthError> {
        match self.users.get(subject_cn) {
            Some(user) => Ok(Principal {
                name: subject_cn.to_owned(),
                groups: user.groups.clone(),
                anonymous: false,
            }),
            None => Err(AuthError::Failed),
        }
    }

    /// The whole CONNECT check, for a session: what it should call.
    ///
    /// - `cert_cn` is the subject CN of the client's verified certificate (TLS listeners with
    ///   `client_ca`; see `tls::peer_common_name`). If present, it decides the user: the CONNECT
    ///   `login` must be absent or equal to it, and the passcode is ignored.
    /// - Otherwise `login`/`passcode` go through [`Self::authenticate`] on the blocking pool,
    ///   at most [`max_concurrent_verifications`] at once.
    ///
    /// A failure is returned only after `auth.failure_delay_ms`, to slow down guessing.
    pub async fn login(
        self: Arc<Self>,
        cert_cn: Option<String>,
        login: Option<String>,
        passcode: Option<String>,
    ) -> Result<Principal, AuthError> {
        let delay = self.failure_delay;
        let result = match cert_cn {
            Some(cn) => match login.as_deref().filter(|l| !l.is_empty()) {
                Some(l) if l != cn => Err(AuthError::Failed),
                _ => self.authenticate_cert(&cn),
            },
            None => {
                let needs_verification = login.as_deref().is_some_and(|l| !l.is_empty())
                    && !(self.users.is_empty() && self.anonymous);
                if needs_verification {
                    match verification_slots().acquire().await {
                        Ok(_permit) => tokio::task::spawn_blocking(move || {
                            self.authenticate(login.as_deref(), passcode.as_deref())
                        })
                        .await
                        .unwrap_or(Err(AuthError::Failed)),
                        // The semaphore is never closed.
                        Err(_) => Err(AuthError::Failed),
                    }
                } else {
                    self.authenticate(login.as_deref(), passcode.as_deref())
                }
            }
        };
        if result.is_err() && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        result
    }

    /// Whether `principal` holds `perm` on `destination` (the full name, e.g. `/queue/orders`).
    ///
    /// No rules at all: everything is allowed. Otherwise allowed if some rule matches the
    /// destination (any of its `destinations` globs), applies to the principal (`users` holds
    /// `"*"` or its name, where `"anonymous"` is the anonymous principal, or `groups` holds one
    /// of its groups) and allows `perm`. Default deny.
    pub fn authorize(&self, principal: &Principal, destination: &str, perm: Permission) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        self.rules.iter().any(|rule| {
            rule.allow.contains(&perm)
                && applies_to(rule, principal)
                && rule.destinations.iter().any(|p| glob_match(p, destination))
        })
    }

    /// Whether there are no rules, so that [`Self::authorize`] allows everything.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// `auth.failure_delay_ms`.
    pub fn failure_delay(&self) -> Duration {
        self.failure_delay
    }
}

fn applies_to(rule: &AuthRule, principal: &Principal) -> bool {
    rule.users.iter().any(|u| u == "*" || *u == principal.name)
        || (!principal.anonymous
            && rule
                .groups
                .iter()
                .any(|g| principal.groups.iter().any(|mine| mine == g)))
}

fn verify(passcode: &[u8], hash: &PasswordHash) -> bool {
    Argon2::default().verify_password(passcode, hash).is_ok()
}

/// A hash with `like`'s algorithm, version and parameters (so the same cost), a fixed salt and an
/// all-zero output that no passcode is known to produce.
fn dummy_like(like: &PasswordHash) -> PasswordHash {
    let mut dummy = like.clone();
    let len = like.hash.as_ref().map_or(32, |h| h.len());
    dummy.salt = Salt::new(b"stompd-unknown-user").ok();
    dummy.hash = Output::new(&vec![0u8; len]).ok();
    dummy
}

/// The dummy when no user is configured (then it is used only with `anonymous = false` and an
/// empty user list, which the config crate rejects): argon2's default parameters.
fn default_dummy() -> PasswordHash {
    let params = argon2::Params::default();
    let text = format!(
        "$argon2id$v=19$m={},t={},p={}$c3RvbXBkLXVua25vd24tdXNlcg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    );
    match PasswordHash::new(&text) {
        Ok(hash) => hash,
        // Not user input: the string is fixed, and a test parses it.
        Err(e) => panic!("built-in dummy hash does not parse: {e}"),
    }
}

/// Hashes `password` with argon2id, argon2's default parameters (m=19 MiB, t=2, p=1) and a
/// random 16-byte salt, as a PHC string for `password_hash`. For `stompd hash-password`.
///
/// # Panics
/// If the operating system's random number generator fails.
pub fn hash_password(password: &str) -> String {
    match Argon2::default().hash_password(password.as_bytes()) {
        Ok(hash) => hash.to_string(),
        Err(e) => panic!("cannot hash the password: {e}"),
    }
}

/// Reads the password for `stompd hash-password`: from the terminal without echo (asking twice)
/// when stdin is a terminal, else the first line of stdin (without its line ending). Refuses an
/// empty password.
pub fn read_password() -> std::io::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(invalid_password("the passwords differ"));
        }
        non_empty(first)
    } else {
        first_line(std::io::stdin().lock())
    }
}

/// The first line of `input` without its line ending (`\n` or `\r\n`); other whitespace is
/// part of the password.
fn first_line(mut input: impl std::io::BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    non_empty(line)
}

fn non_empty(password: String) -> std::io::Result<String> {
    if password.is_empty() {
        return Err(invalid_password("empty password"));
    }
    Ok(password)
}

fn invalid_password(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message.to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use stompd_config::UserConfig;

    use super::*;

    /// Cheap parameters so the tests stay fast; verification uses the hash's own parameters.
    fn cheap_hash(password: &str) -> String {
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon2
            .hash_password_with_salt(password.as_bytes(), b"saltsaltsalt")
            .unwrap()
            .to_string()
    }

    fn user(name: &str, password: &str, groups: &[&str]) -> UserConfig {
        UserConfig {
            name: name.into(),
            password_hash: cheap_hash(password),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn config(anonymous: bool, users: Vec<UserConfig>, rules: Vec<AuthRule>) -> AuthConfig {
        AuthConfig {
            anonymous,
            failure_delay_ms: 0,
            users,
            rules,
        }
    }

    fn rule(
        destinations: &[&str],
        users: &[&str],
        groups: &[&str],
        allow: &[Permission],
    ) -> AuthRule {
        AuthRule {
            destinations: destinations.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            allow: allow.to_vec(),
        }
    }

    fn alice_and_bob(anonymous: bool) -> Authenticator {
        Authenticator::new(&config(
            anonymous,
            vec![
                user("alice", "wonderland", &["producers"]),
                user("bob", "builder", &["consumers", "ops"]),
            ],
            vec![],
        ))
        .unwrap()
    }

    #[test]
    fn right_passcode_logs_in_with_groups() {
        let auth = alice_and_bob(false);
        let p = auth.authenticate(Some("bob"), Some("builder")).unwrap();
        assert_eq!(p.name, "bob");
        assert_eq!(p.groups, ["consumers", "ops"]);
        assert!(!p.anonymous);
        assert_eq!(auth.dummy_verifications.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unknown_user_and_wrong_passcode_fail_alike_after_a_verification() {
        let auth = alice_and_bob(true);
        let wrong = auth.authenticate(Some("alice"), Some("looking-glass"));
        assert_eq!(auth.dummy_verifications.load(Ordering::Relaxed), 0);
        let unknown = auth.authenticate(Some("mallory"), Some("looking-glass"));
        // The unknown user took the dummy path: a full argon2 verification.
        assert_eq!(auth.dummy_verifications.load(Ordering::Relaxed), 1);
        assert_eq!(wrong.as_ref().err(), Some(&AuthError::Failed));
        assert_eq!(unknown.as_ref().err(), wrong.as_ref().err());
        assert_eq!(
            wrong.unwrap_err().to_string(),
            unknown.unwrap_err().to_string()
        );
        // A missing passcode is a wrong one, for known and unknown users.
        assert_eq!(
            auth.authenticate(Some("alice"), None).err(),
            Some(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(Some("eve"), None).err(),
            Some(AuthError::Failed)
        );
        assert_eq!(auth.dummy_verifications.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn dummy_hash_has_the_first_users_parameters() {
        let auth = alice_and_bob(false);
        let alice = &auth.users["alice"].hash;
        assert_eq!(auth.dummy.algorithm, alice.algorithm);
        assert_eq!(auth.dummy.version, alice.version);
        assert_eq!(auth.dummy.params, alice.params);
        assert_eq!(
            auth.dummy.hash.as_ref().unwrap().len(),
            alice.hash.as_ref().unwrap().len()
        );
        assert_ne!(auth.dummy.salt, alice.salt);
        // Verifying against it runs argon2 (parameters valid) and fails.
        assert!(argon2::Params::try_from(&auth.dummy).is_ok());
        assert!(!verify(b"", &auth.dummy));
    }

    #[test]
    fn built_in_dummy_parses_with_default_parameters() {
        let dummy = default_dummy();
        let params = argon2::Params::try_from(&dummy).unwrap();
        assert_eq!(params.m_cost(), argon2::Params::DEFAULT_M_COST);
        assert_eq!(params.t_cost(), argon2::Params::DEFAULT_T_COST);
        assert_eq!(dummy.hash.unwrap().len(), 32);
    }

    #[test]
    fn anonymous_only_where_allowed() {
        let open = alice_and_bob(true);
        for login in [None, Some("")] {
            let p = open.authenticate(login, None).unwrap();
            assert!(p.anonymous);
            assert_eq!(p.name, "anonymous");
        }
        let closed = alice_and_bob(false);
        assert_eq!(
            closed.authenticate(None, None).err(),
            Some(AuthError::Failed)
        );
        assert_eq!(
            closed.authenticate(Some(""), Some("x")).err(),
            Some(AuthError::Failed)
        );
        assert_eq!(closed.dummy_verifications.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn locked_lets_nobody_in() {
        let auth = Authenticator::locked();
        assert!(auth.authenticate(None, None).is_err());
        assert!(auth.authenticate(Some("root"), Some("")).is_err());
        assert!(auth.authenticate_cert("root").is_err());
    }

    #[test]
    fn without_users_an_open_broker_ignores_logins() {
        let auth = Authenticator::new(&config(true, vec![], vec![])).unwrap();
        let p = auth.authenticate(Some("guest"), Some("guest")).unwrap();
        assert!(p.anonymous);
        assert_eq!(auth.dummy_verifications.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bad_hashes_are_setup_errors_naming_the_key_not_the_hash() {
        let mut users = vec![user("alice", "x", &[])];
        users.push(UserConfig {
            name: "bob".into(),
            // Shape-valid (the config crate accepts it) but the salt is too short for argon2.
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaGhhc2hoYXNo".into(),
            groups: vec![],
        });
        let e = Authenticator::new(&config(false, users.clone(), vec![])).unwrap_err();
        assert_eq!((e.index, e.name.as_str()), (1, "bob"));
        let text = e.to_string();
        assert!(
            text.starts_with("key `auth.users[1].password_hash` (user \"bob\")"),
            "{text}"
        );
        assert!(!text.contains("c2FsdA"), "{text}");

        users[1].password_hash = "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into();
        let e = Authenticator::new(&config(false, users.clone(), vec![])).unwrap_err();
        assert_eq!(e.index, 1, "{e}");

        users[1].password_hash = "$argon2i$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into();
        let e = Authenticator::new(&config(false, users, vec![])).unwrap_err();
        assert!(e.reason.contains("argon2id"), "{e}");
    }

    #[test]
    fn debug_does_not_print_hashes() {
        let auth = alice_and_bob(false);
        let text = format!("{auth:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("argon2"), "{text}");
    }

    #[test]
    fn hash_password_makes_verifiable_salted_argon2id() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        let config = config(
            false,
            vec![UserConfig {
                name: "carol".into(),
                password_hash: a.clone(),
                groups: vec![],
            }],
            vec![],
        );
        // What the config crate accepts...
        let text = format!(
            "[auth]\nanonymous = false\n[[auth.users]]\nname = \"carol\"\npassword_hash = \"{a}\"\n"
        );
        stompd_config::Config::from_toml(&text, std::path::Path::new("t.toml")).unwrap();
        // ...the authenticator verifies.
        let auth = Authenticator::new(&config).unwrap();
        assert!(auth
            .authenticate(Some("carol"), Some("correct horse"))
            .is_ok());
        assert!(auth
            .authenticate(Some("carol"), Some("correct horsE"))
            .is_err());
    }

    #[test]
    fn password_from_the_first_line_of_input() {
        assert_eq!(first_line(&b"s3cret\r\nsecond"[..]).unwrap(), "s3cret");
        assert_eq!(first_line(&b" spaced pw \n"[..]).unwrap(), " spaced pw ");
        assert_eq!(first_line(&b"no newline"[..]).unwrap(), "no newline");
        assert!(first_line(&b"\n"[..]).is_err());
        assert!(first_line(&b""[..]).is_err());
    }

    #[test]
    fn certificate_cn_maps_to_a_user() {
        let auth = alice_and_bob(false);
        let p = auth.authenticate_cert("bob").unwrap();
        assert_eq!((p.name.as_str(), p.anonymous), ("bob", false));
        assert_eq!(p.groups, ["consumers", "ops"]);
        assert_eq!(
            auth.authenticate_cert("mallory").err(),
            Some(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate_cert("anonymous").err(),
            Some(AuthError::Failed)
        );
        assert_eq!(auth.authenticate_cert("").err(), Some(AuthError::Failed));
    }

    #[tokio::test]
    async fn login_prefers_the_certificate_and_checks_the_login_against_it() {
        let auth = Arc::new(alice_and_bob(false));
        let p = auth
            .clone()
            .login(Some("alice".into()), None, None)
            .await
            .unwrap();
        assert_eq!(p.name, "alice");
        // The certificate wins over a passcode, which is not checked.
        let p = auth
            .clone()
            .login(
                Some("alice".into()),
                Some("alice".into()),
                Some("wrong".into()),
            )
            .await
            .unwrap();
        assert_eq!(p.name, "alice");
        // A login naming someone else than the certificate fails.
        let r = auth
            .clone()
            .login(
                Some("alice".into()),
                Some("bob".into()),
                Some("builder".into()),
            )
            .await;
        assert_eq!(r.err(), Some(AuthError::Failed));
        // Without a certificate, passcodes are verified (on the blocking pool).
        let p = auth
            .clone()
            .login(None, Some("bob".into()), Some("builder".into()))
            .await
            .unwrap();
        assert_eq!(p.name, "bob");
        let r = auth
            .clone()
            .login(None, Some("bob".into()), Some("x".into()))
            .await;
        assert_eq!(r.err(), Some(AuthError::Failed));
        assert_eq!(
            auth.clone().login(None, None, None).await.err(),
            Some(AuthError::Failed)
        );
    }

    #[tokio::test]
    async fn login_failures_wait_the_failure_delay() {
        let mut c = config(true, vec![user("alice", "pw", &[])], vec![]);
        c.failure_delay_ms = 300;
        let auth = Arc::new(Authenticator::new(&c).unwrap());
        let start = tokio::time::Instant::now();
        let r = auth.clone().login(Some("mallory".into()), None, None).await;
        assert_eq!(r.err(), Some(AuthError::Failed));
        assert!(start.elapsed() >= Duration::from_millis(300));
        let start = tokio::time::Instant::now();
        assert!(
            auth.clone()
                .login(None, None, None)
                .await
                .unwrap()
                .anonymous
        );
        assert!(start.elapsed() < Duration::from_millis(300));
    }

    fn principal(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            anonymous: false,
        }
    }

    #[test]
    fn no_rules_allow_everything() {
        let auth = alice_and_bob(true);
        assert!(auth.is_open());
        for perm in [
            Permission::Read,
            Permission::Write,
            Permission::Create,
            Permission::Admin,
        ] {
            assert!(auth.authorize(&Principal::anonymous(), "/queue/x", perm));
        }
    }

    #[test]
    fn rules_grant_the_union_and_deny_by_default() {
        use Permission::*;
        let auth = Authenticator::new(&config(
            true,
            vec![],
            vec![
                rule(&["/queue/orders.*"], &["alice"], &[], &[Write]),
                rule(
                    &["/queue/orders.*", "/topic/**"],
                    &[],
                    &["consumers"],
                    &[Read],
                ),
                rule(&["/topic/public"], &["*"], &[], &[Read]),
                rule(&["/queue/guest.*"], &["anonymous"], &[], &[Write, Create]),
                rule(&["/**"], &[], &["ops"], &[Admin]),
            ],
        ))
        .unwrap();
        assert!(!auth.is_open());
        let alice = principal("alice", &["producers"]);
        let bob = principal("bob", &["consumers"]);
        let carol = principal("carol", &["consumers", "ops"]);
        let anon = Principal::anonymous();

        assert!(auth.authorize(&alice, "/queue/orders.eu", Write));
        assert!(!auth.authorize(&alice, "/queue/orders.eu", Read));
        assert!(
            !auth.authorize(&alice, "/queue/orders", Write),
            "'.*' needs a suffix"
        );
        assert!(
            !auth.authorize(&alice, "/queue/orders.eu/x", Write),
            "'*' stays in a level"
        );
        assert!(auth.authorize(&bob, "/queue/orders.eu", Read));
        assert!(
            auth.authorize(&bob, "/topic/a/b", Read),
            "'**' crosses levels"
        );
        assert!(!auth.authorize(&bob, "/topic/a", Write));
        // "*" in users is everyone, the anonymous principal included.
        for p in [&alice, &bob, &anon] {
            assert!(auth.authorize(p, "/topic/public", Read));
        }
        // "anonymous" names the anonymous principal only.
        assert!(auth.authorize(&anon, "/queue/guest.1", Create));
        assert!(!auth.authorize(&alice, "/queue/guest.1", Create));
        assert!(!auth.authorize(&anon, "/queue/orders.eu", Read));
        // Union: carol has read from one group's rule and admin from the other's.
        assert!(auth.authorize(&carol, "/queue/orders.eu", Read));
        assert!(auth.authorize(&carol, "/queue/anything", Admin));
        assert!(!auth.authorize(&carol, "/queue/anything", Write));
        // Nobody matched at all.
        assert!(!auth.authorize(&principal("dave", &[]), "/queue/orders.eu", Read));
    }

    #[test]
    fn anonymous_principal_gets_no_group_grants() {
        // A group literally named like nothing the anonymous principal has: no match.
        let auth = Authenticator::new(&config(
            true,
            vec![],
            vec![rule(&["/**"], &[], &["anonymous"], &[Permission::Read])],
        ))
        .unwrap();
        assert!(!auth.authorize(&Principal::anonymous(), "/queue/a", Permission::Read));
    }
}
