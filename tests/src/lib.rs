//! End-to-end test harness for stompd: runs the real `stompd` binary and talks STOMP to it over
//! TCP with a small blocking client built on the protocol crate's codec.
//!
//! - [`Broker`] starts the binary on `127.0.0.1:0` in a fresh temporary data directory, learns
//!   the port from its `listening on ADDR` log line, captures its log, and kills it on drop
//!   (printing the log when the test is failing).
//! - [`Client`] is a blocking STOMP client whose every read has a deadline, so a test that waits
//!   for something the broker never sends fails instead of hanging.
//!
//! Every test gets its own broker, port and directory, so tests run in parallel.

mod broker;
mod client;

pub use broker::{http, rss_kib_of, stompd_bin, Broker, BrokerBuilder, CliOutput};
pub use client::{describe, send_frame, subscribe_frame, Client, Event};

use std::time::Duration;

/// How long a test waits for something that should happen (a frame, a log line, an exit).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How long a test waits to be confident that something does *not* happen (no delivery).
pub const QUIET: Duration = Duration::from_millis(400);

/// Destinations every test config gets, appended after the test's own tables: the same
/// auto-created `/queue/*` and `/topic/*` as the embedded default (a config file replaces the
/// default wholesale, and with no `[[auto_create]]` rule no run-time destination may be used).
pub const AUTO_CREATE_DESTINATIONS: &str = r#"
[[auto_create]]
pattern = "/queue/*"
who = ["*"]

[[auto_create]]
pattern = "/topic/*"
who = ["*"]
"#;

/// A complete config file: the test's own tables followed by [`AUTO_CREATE_DESTINATIONS`].
pub fn config_with(tables: &str) -> String {
    format!("{tables}\n{AUTO_CREATE_DESTINATIONS}")
}
