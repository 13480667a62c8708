//! Parsing plus the semantic checks serde cannot express.

use std::path::Path;

use crate::{Config, ConfigError};

pub(crate) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    todo!("{text}{origin:?}")
}
