//! The configuration file's tables, as serde structs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::policy::{Acknowledgement, NackPolicy, Overflow, QueuePolicy, QueuePolicyRaw};

/// The whole resource file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub heartbeat: HeartbeatConfig,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    pub websocket: WebSocketConfig,
    /// `[[tls]]`: STOMP over TLS listeners, beside the plain ones.
    pub tls: Vec<TlsListenerConfig>,
    pub auth: AuthConfig,
    pub queue_defaults: QueuePolicyRaw,
    pub queues: BTreeMap<String, QueuePolicyRaw>,
    pub topics: BTreeMap<String, TopicConfig>,
    pub auto_create: Vec<AutoCreateRule>,
}

/// `[server]`: the STOMP TCP listener and connection limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// 0 = unlimited.
    pub max_connections: usize,
    /// 0 = unlimited.
    pub max_connections_per_ip: usize,
    pub connect_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    /// The `server` header is `<name>/<version>`.
    pub name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 61613))],
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            connect_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            name: "stompd".to_owned(),
        }
    }
}

impl ServerConfig {
    /// Time from TCP accept to CONNECTED.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// How long shutdown waits for sessions and queues.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// `max_connections` with 0 mapped to `None` (unlimited).
    pub fn connection_limit(&self) -> Option<usize> {
        (self.max_connections != 0).then_some(self.max_connections)
    }

    /// `max_connections_per_ip` with 0 mapped to `None` (unlimited).
    pub fn connection_limit_per_ip(&self) -> Option<usize> {
        (self.max_connections_per_ip != 0).then_some(self.max_connections_per_ip)
    }
}

/// `log.format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// `[limits]`: per-frame and per-connection limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_frame_bytes: usize,
    pub max_header_line_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// Per connection.
    pub max_subscriptions: usize,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// SEND/ACK/NACK frames buffered in one transaction.
    pub max_transaction_frames: usize,
    /// Hard cap of a subscription's prefetch window.
    pub max_unacked: u32,
    /// Per-connection pending outgoing bytes before the writer waits.
    pub outbox_bytes: usize,
    pub write_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            max_header_line_bytes: 16 * 1024,
            max_headers: 256,
            max_body_bytes: 16 * 1024 * 1024,
            max_subscriptions: 1024,
            max_transactions: 64,
            max_transaction_frames: 10_000,
            max_unacked: 10_000,
            outbox_bytes: 4 * 1024 * 1024,
            write_timeout_ms: 30_000,
        }
    }
}

impl LimitsConfig {
    /// A client that does not read for this long is dropped.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// `[heartbeat]`: what the server offers and accepts in `heart-beat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Server offers to send every `send_ms` (sx); 0 = never.
    pub send_ms: u64,
    /// Server asks the client to send every `expect_ms` (sy); 0 = never.
    pub expect_ms: u64,
    /// Floor: a client asking faster is raised to this.
    pub min_ms: u64,
    /// Ceiling.
    pub max_ms: u64,
    /// A client silent for `grace * interval` is dropped (>= 1.0).
    pub grace: f64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            send_ms: 10_000,
            expect_ms: 10_000,
            min_ms: 1000,
            max_ms: 3_600_000,
            grace: 1.5,
        }
    }
}

impl HeartbeatConfig {
    /// `send_ms`; `None` = the server never offers to send heart-beats.
    pub fn send(&self) -> Option<Duration> {
        (self.send_ms != 0).then(|| Duration::from_millis(self.send_ms))
    }

    /// `expect_ms`; `None` = the server never asks for heart-beats.
    pub fn expect(&self) -> Option<Duration> {
        (self.expect_ms != 0).then(|| Duration::from_millis(self.expect_ms))
    }

    /// `min_ms`.
    pub fn min(&self) -> Duration {
        Duration::from_millis(self.min_ms)
    }

    /// `max_ms`.
    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }

    /// How long a peer expected to beat every `interval` may stay silent.
    pub fn deadline(&self, interval: Duration) -> Duration {
        // Checked: `mul_f64` panics on overflow, and grace is user input.
        Duration::try_from_secs_f64(interval.as_secs_f64() * self.grace).unwrap_or(Duration::MAX)
    }
}

/// `storage.fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncMode {
    /// fsync before acknowledging every write (group commit).
    #[default]
    Always,
    /// fsync every `fsync_interval_ms`.
    Interval,
    /// Leave it to the OS.
    Never,
}

/// `[storage]`: the journal for persistent queues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Relative to the process's working directory.
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    pub memory_budget_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("stompd-data"),
            fsync: FsyncMode::Always,
            fsync_interval_ms: 10,
            segment_bytes: 64 * 1024 * 1024,
            memory_budget_bytes: 256 * 1024 * 1024,
        }
    }
}

impl StorageConfig {
    /// `fsync_interval_ms` (used with `fsync = "interval"`).
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }

    /// Body bytes of persistent queues kept in memory; `u64::MAX` when `memory_budget_bytes`
    /// is 0 (no limit).
    pub fn memory_budget(&self) -> u64 {
        match self.memory_budget_bytes {
            0 => u64::MAX,
            n => n,
        }
    }
}

/// `[admin]`: HTTP admin API and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: Vec<SocketAddr>,
}

/// `[websocket]`: STOMP over WebSocket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    pub listen: Vec<SocketAddr>,
}

/// `[[tls]]`: one STOMP-over-TLS listener.
///
/// `cert`, `key` and `client_ca` are only checked to be named here (and in
/// `stompd check-config`); whether the files exist and hold usable PEM data
/// is checked when the broker starts, which then fails naming the file.
/// Relative paths are relative to the process's working directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// PEM file: the server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file: the private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of CA certificates; when set, clients are asked for a
    /// certificate signed by one of them, and a verified certificate's
    /// subject CN logs the client in as the `[[auth.users]]` of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// CONNECT without login is allowed, as principal `anonymous`.
    pub anonymous: bool,
    /// Wait before answering a failed login with ERROR, to slow guessing.
    pub failure_delay_ms: u64,
    pub users: Vec<UserConfig>,
    /// Grants; the union of all matching rules applies. Empty = open broker.
    pub rules: Vec<AuthRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: true,
            failure_delay_ms: 1000,
            users: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// The user with this login name.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// `failure_delay_ms`: how long a failed login waits before its ERROR.
    pub fn failure_delay(&self) -> Duration {
        Duration::from_millis(self.failure_delay_ms)
    }
}

/// `[[auth.users]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// PHC string; must start with `$argon2id$`.
    pub password_hash: String,
    pub groups: Vec<String>,
}

/// A permission granted by an `[[auth.rules]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Subscribe and browse.
    Read,
    /// Send.
    Write,
    /// Create destinations matched by an auto_create rule.
    Create,
    /// Administrative operations.
    Admin,
}

/// `[[auth.rules]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthRule {
    /// Destination patterns, see [`crate::glob_match`].
    pub destinations: Vec<String>,
    /// User names; `"*"` = everyone including anonymous.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub allow: Vec<Permission>,
}

/// `[topics.NAME]`: destination `/topic/NAME`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Durable subscriptions are stored when true.
    pub persistent: bool,
    /// Principals that may subscribe; `None` = no per-destination restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    /// Principals that may send; `None` = no per-destination restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<String>>,
}

/// `[[auto_create]]`: destinations created on first use.
///
/// In the file the policy fields sit next to `pattern` and `who`; serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, so the file form
/// is a private flat struct, converted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "AutoCreateFile", into = "AutoCreateFile")]
pub struct AutoCreateRule {
    /// Glob on the full destination, see [`crate::glob_match`].
    pub pattern: String,
    /// Principals allowed to create: `"*"`, a user name or `"group:NAME"`.
    pub who: Vec<String>,
    /// Policy layer for queues created by this rule.
    pub policy: QueuePolicyRaw,
}

impl Default for AutoCreateRule {
    fn default() -> Self {
        AutoCreateRule {
            pattern: String::new(),
            who: vec!["*".to_owned()],
            policy: QueuePolicyRaw::default(),
        }
    }
}

impl AutoCreateRule {
    /// Whether `destination` (e.g. `/queue/orders`) matches this rule.
    pub fn matches(&self, destination: &str) -> bool {
        crate::glob_match(&self.pattern, destination)
    }
}

/// Declares `AutoCreateFile` with the QueuePolicyRaw fields inline, and the
/// conversions, from one field list so the two cannot drift apart.
macro_rules! auto_create_file {
    ($($field:ident: $ty:ty),* $(,)?) => {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct AutoCreateFile {
            pattern: String,
            who: Vec<String>,
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                $field: Option<$ty>,
            )*
        }

        impl Default for AutoCreateFile {
            fn default() -> Self {
                AutoCreateRule::default().into()
            }
        }

        impl From<AutoCreateFile> for AutoCreateRule {
            fn from(f: AutoCreateFile) -> Self {
                AutoCreateRule {
                    pattern: f.pattern,
                    who: f.who,
                    policy: QueuePolicyRaw { $($field: f.$field),* },
                }
            }
        }

        impl From<AutoCreateRule> for AutoCreateFile {
            fn from(r: AutoCreateRule) -> Self {
                AutoCreateFile {
                    pattern: r.pattern,
                    who: r.who,
                    $($field: r.policy.$field),*
                }
            }
        }
    };
}

auto_create_file! {
    persistent: bool,
    acknowledgement: Acknowledgement,
    max_messages: u64,
    max_bytes: u64,
    max_messages_per_priority: u64,
    overflow: Overflow,
    block_timeout_ms: u64,
    prefetch: u32,
    default_priority: u8,
    default_ttl_ms: u64,
    max_redeliveries: u32,
    dead_letter: String,
    nack: NackPolicy,
    redelivery_delay_ms: u64,
    redelivery_backoff: f64,
    redelivery_delay_max_ms: u64,
    ack_timeout_ms: u64,
    dedup_window: u64,
    dedup_window_ms: u64,
    closed: bool,
    read: Vec<String>,
    write: Vec<String>,
}

impl Config {
    /// Parses [`crate::DEFAULT_CONFIG`]. A test guarantees it is valid.
    pub fn embedded() -> Config {
        match Config::from_toml(crate::DEFAULT_CONFIG, Path::new("<embedded default>")) {
            Ok(config) => config,
            // Not user input: the embedded text is fixed at build time and tested.
            Err(e) => panic!("the embedded default configuration is invalid: {e}"),
        }
    }

    /// Parses and validates `text`; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        crate::validate::parse(text, origin)
    }

    /// Runs the semantic checks of [`Config::from_toml`] on a config built
    /// or changed in code. Errors name the key but no line (there is no text).
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        crate::validate::validate(self, origin)
    }

    /// Reads `path` and parses it with [`Config::from_toml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read configuration file: {e}"),
        })?;
        Config::from_toml(&text, path)
    }

    /// The layered policy of the configured queue `[queues.NAME]`
    /// (`name` without the `/queue/` prefix); `None` if not configured.
    pub fn queue_policy(&self, name: &str) -> Option<QueuePolicy> {
        let raw = self.queues.get(name)?;
        let mut policy = QueuePolicy::default();
        policy.apply(&self.queue_defaults);
        if let Some(rule) = self.auto_create_rule(&format!("/queue/{name}")) {
            policy.apply(&rule.policy);
        }
        policy.apply(raw);
        drop_self_dead_letter(&mut policy, name);
        Some(policy)
    }

    /// The first `[[auto_create]]` rule whose pattern matches `destination`
    /// (the full destination, e.g. `/queue/orders.eu`).
    pub fn auto_create_rule(&self, destination: &str) -> Option<&AutoCreateRule> {
        self.auto_create.iter().find(|r| r.matches(destination))
    }

    /// Policy of a queue created by `rule`: defaults < queue_defaults < rule.
    ///
    /// The result does not know the queue's name, so `dead_letter` may name
    /// the queue itself; [`Config::resolve_queue`] removes that case.
    pub fn auto_queue_policy(&self, rule: &AutoCreateRule) -> QueuePolicy {
        let mut policy = QueuePolicy::default();
        policy.apply(&self.queue_defaults);
        policy.apply(&rule.policy);
        policy
    }

    /// The policy of queue `name` whether configured or auto-created:
    /// [`Config::queue_policy`] if configured, else the policy of the first
    /// matching auto_create rule, else `None` (the queue may not exist).
    pub fn resolve_queue(&self, name: &str) -> Option<QueuePolicy> {
        if let Some(policy) = self.queue_policy(name) {
            return Some(policy);
        }
        let rule = self.auto_create_rule(&format!("/queue/{name}"))?;
        let mut policy = self.auto_queue_policy(rule);
        drop_self_dead_letter(&mut policy, name);
        Some(policy)
    }
}

/// A dead-letter queue inherited from a shared layer may name the queue
/// itself (e.g. `queue_defaults.dead_letter = "dlq"` seen from `dlq`);
/// that would loop, so such a queue has no dead-letter queue.
fn drop_self_dead_letter(policy: &mut QueuePolicy, name: &str) {
    if policy.dead_letter.as_deref() == Some(name) {
        policy.dead_letter = None;
    }
}
