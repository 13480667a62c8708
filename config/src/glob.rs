//! Destination globs.

/// Matches `text` against `pattern`: `*` matches any run of characters
/// except `/`, `**` any run of characters including `/`; everything else
/// matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    todo!("{pattern}{text}")
}
