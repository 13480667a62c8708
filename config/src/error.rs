//! The one error type: where in which file, which key, what is wrong.

use std::fmt;
use std::path::PathBuf;

/// A configuration error. Displays as
/// `{file}:{line}:{column}: key `{key}`: {message}`, omitting missing parts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Render(self))]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `queues.orders.dead_letter` or `auth.users[1].name`.
    pub key: Option<String>,
    pub message: String,
}

struct Render<'a>(&'a ConfigError);

impl fmt::Display for Render<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "{}", e.file.display())?;
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &e.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", e.message)
    }
}
