//! Protocol versions and their negotiation from `accept-version`.

use std::fmt;

/// A STOMP protocol version; ordered so that negotiation can pick the highest common one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// Every version this crate speaks, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The wire spelling used in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses the wire spelling, tolerating surrounding whitespace.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Highest version in both `accept-version` (comma separated; absent header => 1.0 only) and
/// `supported`. Unknown entries in `accept-version` are ignored, as the spec allows future versions.
pub fn negotiate_version(accept_version: Option<&str>, supported: &[Version]) -> Option<Version> {
    match accept_version {
        None => supported.contains(&Version::V1_0).then_some(Version::V1_0),
        Some(list) => list
            .split(',')
            .filter_map(Version::parse)
            .filter(|v| supported.contains(v))
            .max(),
    }
}
