//! Maps key paths to positions in the text and positions back to key paths,
//! using toml_edit's spanned document.

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `queues.orders.dead_letter` or `auth.users[1].name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }
}

/// Creates a key path from dotted literal parts: `path(&["queues", name])`.
pub(crate) fn path(keys: &[&str]) -> KeyPath {
    KeyPath(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(k) {
                        f.write_str(k)?;
                    } else {
                        // Same quoting as TOML, so `queues."a.b"` is unambiguous.
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The span of the key at `path`; if the path does not exist in full (the
/// value came from a default), the span of the deepest part that does.
pub(crate) fn span_of(doc: &ImDocument<&str>, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in &path.0 {
        let Some((span, next)) = node.child(seg) else {
            break;
        };
        best = span.or(best);
        node = next;
    }
    best
}

/// Anything a key path can step through.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    /// The child at `seg` and the span that names it (its key, or the
    /// element itself for an array index).
    fn child(self, seg: &Seg) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match seg {
            Seg::Key(k) => {
                let (key, child) = match self {
                    Node::Table(t) | Node::Item(Item::Table(t)) => t.get_key_value(k)?,
                    Node::Value(Value::InlineTable(t))
                    | Node::Item(Item::Value(Value::InlineTable(t))) => t.get_key_value(k)?,
                    _ => return None,
                };
                Some((key.span().or_else(|| child.span()), Node::Item(child)))
            }
            Seg::Index(i) => match self {
                Node::Item(Item::ArrayOfTables(a)) => {
                    let t = a.get(*i)?;
                    Some((t.span(), Node::Table(t)))
                }
                Node::Value(Value::Array(a)) | Node::Item(Item::Value(Value::Array(a))) => {
                    let v = a.get(*i)?;
                    Some((v.span(), Node::Value(v)))
                }
                _ => None,
            },
        }
    }
}

/// The key path of the innermost key or value whose span contains `offset`.
pub(crate) fn path_at(doc: &ImDocument<&str>, offset: usize) -> Option<KeyPath> {
    let mut best: Option<(usize, KeyPath)> = None;
    walk_item(doc.as_item(), &KeyPath::default(), offset, &mut best);
    best.map(|(_, p)| p)
}

fn consider(
    span: Option<Range<usize>>,
    path: &KeyPath,
    offset: usize,
    best: &mut Option<(usize, KeyPath)>,
) {
    let Some(span) = span else { return };
    let hit = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !hit {
        return;
    }
    let len = span.len();
    // `<=` lets a deeper path win a tie (a value and the key holding it).
    if best.as_ref().is_none_or(|(l, _)| len <= *l) {
        *best = Some((len, path.clone()));
    }
}

fn walk_item(item: &Item, path: &KeyPath, offset: usize, best: &mut Option<(usize, KeyPath)>) {
    match item {
        Item::None => {}
        Item::Table(t) => {
            if !path.0.is_empty() {
                consider(t.span(), path, offset, best);
            }
            for (name, _) in t.iter() {
                if let Some((key, child)) = t.get_key_value(name) {
                    let p = path.key(name);
                    consider(key.span(), &p, offset, best);
                    walk_item(child, &p, offset, best);
                }
            }
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let p = path.index(i);
                consider(t.span(), &p, offset, best);
                for (name, _) in t.iter() {
                    if let Some((key, child)) = t.get_key_value(name) {
                        let q = p.key(name);
                        consider(key.span(), &q, offset, best);
                        walk_item(child, &q, offset, best);
                    }
                }
            }
        }
        Item::Value(v) => walk_value(v, path, offset, best),
    }
}

fn walk_value(value: &Value, path: &KeyPath, offset: usize, best: &mut Option<(usize, KeyPath)>) {
    consider(value.span(), path, offset, best);
    match value {
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk_value(v, &path.index(i), offset, best);
            }
        }
        Value::InlineTable(t) => {
            for (name, _) in t.iter() {
                if let Some((key, child)) = t.get_key_value(name) {
                    let p = path.key(name);
                    consider(key.span(), &p, offset, best);
                    walk_item(child, &p, offset, best);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_chars() {
        let text = "ab\nçd = 1\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'ç' is two bytes: byte 5 is 'd', the second character.
        assert_eq!(line_col(text, 5), (2, 2));
        // Past the end and mid-character offsets do not panic.
        assert_eq!(line_col(text, 999), (3, 1));
        assert_eq!(line_col(text, 4), (2, 1));
    }

    #[test]
    fn key_path_display_quotes_non_bare_keys() {
        let p = path(&["queues", "orders.eu", "read"]).index(2);
        assert_eq!(p.to_string(), "queues.\"orders.eu\".read[2]");
        assert_eq!(
            path(&["auth", "users"]).index(0).key("name").to_string(),
            "auth.users[0].name"
        );
    }

    #[test]
    fn span_and_path_agree() {
        let text =
            "[server]\nname = \"x\"\n[[auth.users]]\nname = \"a\"\ngroups = [\"g\", \"h\"]\n";
        let doc = ImDocument::parse(text).unwrap();
        for p in [
            path(&["server", "name"]),
            path(&["auth", "users"]).index(0).key("groups").index(1),
        ] {
            let span = span_of(&doc, &p).unwrap();
            assert_eq!(path_at(&doc, span.start), Some(p));
        }
        assert_eq!(span_of(&doc, &path(&["server", "name"])), Some(9..13));
        assert_eq!(span_of(&doc, &path(&["nope"])), None);
    }
}
