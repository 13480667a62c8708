//! The untyped frame: what the codec reads and writes.

use crate::{ByteStr, Command};
use bytes::Bytes;

/// One STOMP frame. Headers keep their order and repeats, because the spec says the first
/// occurrence of a repeated header wins and relays must preserve the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(ByteStr, ByteStr)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Builder form of [`Frame::push_header`].
    pub fn with_header(mut self, name: impl Into<ByteStr>, value: impl Into<ByteStr>) -> Self {
        self.push_header(name, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Appends a header; an earlier header of the same name keeps precedence.
    pub fn push_header(&mut self, name: impl Into<ByteStr>, value: impl Into<ByteStr>) {
        self.headers.push((name.into(), value.into()));
    }

    /// The first occurrence of `name` (spec: repeated headers, first wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytestr(name).map(ByteStr::as_str)
    }

    pub fn get_bytestr(&self, name: &str) -> Option<&ByteStr> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v)
    }
}
