//! stompd's TOML resource file: schema, embedded default, validation.
//!
//! The schema is a contract with the broker; see `notes/config-schema.md`.
//! Every error names the file, the line and column, and the key path.

mod error;
mod glob;
mod locate;
mod policy;
mod schema;
mod validate;

pub use error::ConfigError;
pub use glob::glob_match;
pub use policy::{Acknowledgement, NackPolicy, Overflow, QueuePolicy, QueuePolicyRaw};
pub use schema::{
    AdminConfig, AuthConfig, AuthRule, AutoCreateRule, Config, FsyncMode, HeartbeatConfig,
    LimitsConfig, LogConfig, LogFormat, Permission, ServerConfig, StorageConfig, TlsListenerConfig,
    TopicConfig, UserConfig, WebSocketConfig,
};

/// The embedded default configuration, every key present and commented
/// (`stompd print-config` prints it).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");
