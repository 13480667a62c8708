//! The resumable STOMP codec.
//!
//! The decoder is a small state machine over the frame at the head of the read buffer:
//! `Idle` (EOLs here are heart-beats) -> `Command` -> `Headers` -> `Body`. Between calls it keeps
//! the scan position, the parsed command, header ranges and the content-length, so a frame that
//! arrives one byte at a time is still examined once (`bytes_examined` lets tests prove it). Every
//! limit is checked as soon as the bytes that break it are buffered, and a known content-length is
//! checked against the limits before any of the body arrives. Only a complete frame is split off
//! the buffer, frozen once, and sliced into zero-copy header and body `Bytes`.

use crate::{encode_frame, ByteStr, Command, DecodeError, Frame, Version};
use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Size limits, all checked before more is buffered or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_header_line_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024 * 1024,
            max_header_line_bytes: 16 * 1024,
            max_headers: 256,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Frame(Frame),
    /// One or more EOLs between frames.
    HeartBeat,
}

/// A heart-beat EOL ("\n").
#[derive(Debug, Clone, Copy, Default)]
pub struct HeartBeatEol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// Where the decoder is within the frame at the head of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Between frames: EOLs here are heart-beats.
    #[default]
    Idle,
    Command,
    Headers,
    Body,
}

/// A header name or value: a range of the frame's bytes, or the unescaped copy when unescaping
/// changed it.
#[derive(Debug)]
enum Part {
    Range(usize, usize),
    Owned(ByteStr),
}

/// Parse state of the partial frame at the head of the buffer, kept between `decode` calls so no
/// byte is examined twice. All offsets are relative to the buffer start, which is the frame start
/// because complete frames are split off.
#[derive(Debug, Default)]
struct State {
    phase: Phase,
    /// Next byte to examine.
    pos: usize,
    /// Start of the line being read (command and header phases).
    line_start: usize,
    command: Option<Command>,
    /// Whether this frame's headers are unescaped, and with 1.2 rules (`\r`).
    unescape: Option<Version>,
    headers: Vec<(Part, Part)>,
    content_length: Option<usize>,
    body_start: usize,
}

/// STOMP codec for one connection.
#[derive(Debug)]
pub struct StompCodec {
    role: Role,
    version: Option<Version>,
    limits: Limits,
    st: State,
    /// Bytes examined by the scanner, for the test that decoding stays linear under tiny reads.
    examined: u64,
    /// The `receipt` header of a frame that failed to decode after its headers were read.
    failed_receipt: Option<String>,
}

impl StompCodec {
    /// Server side: decodes client frames, encodes server frames. Starts unnegotiated: CONNECT/STOMP
    /// headers are never unescaped; after `set_version` escaping follows that version.
    pub fn server(limits: Limits) -> Self {
        Self::new(Role::Server, limits)
    }

    /// Client side (tests, bench tool): decodes server frames. CONNECTED is never unescaped.
    pub fn client(limits: Limits) -> Self {
        Self::new(Role::Client, limits)
    }

    fn new(role: Role, limits: Limits) -> Self {
        StompCodec {
            role,
            version: None,
            limits,
            st: State::default(),
            examined: 0,
            failed_receipt: None,
        }
    }

    /// Sets the negotiated version; takes effect from the next frame.
    pub fn set_version(&mut self, v: Version) {
        self.version = Some(v);
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True for the side that decodes client frames.
    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    /// Total bytes the decoder has scanned; stays linear in the input however it is chunked.
    #[doc(hidden)]
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    /// Reads the next complete line of the command/header section, resuming the LF scan where
    /// the previous call stopped. Returns the line without its EOL.
    fn next_line(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
        let limit = self.limits.max_header_line_bytes;
        let from = self.st.pos;
        let rest = buf.get(from..).unwrap_or_default();
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.examined += i as u64 + 1;
                let lf = from + i;
                let start = self.st.line_start;
                let end = if lf > start && buf.get(lf - 1) == Some(&b'\r') {
                    lf - 1
                } else {
                    lf
                };
                if end - start > limit {
                    return Err(DecodeError::HeaderLineTooLong { limit });
                }
                self.st.pos = lf + 1;
                self.st.line_start = lf + 1;
                self.check_frame_size(self.st.pos)?;
                Ok(Some((start, end)))
            }
            None => {
                self.examined += rest.len() as u64;
                self.st.pos = buf.len();
                let partial = buf.len().saturating_sub(self.st.line_start);
                // A trailing CR may be the first half of the EOL, so it does not count yet.
                let counted = if buf.last() == Some(&b'\r') {
                    partial.saturating_sub(1)
                } else {
                    partial
                };
                if counted > limit {
                    return Err(DecodeError::HeaderLineTooLong { limit });
                }
                self.check_frame_size(self.st.pos)?;
                Ok(None)
            }
        }
    }

    fn check_frame_size(&self, len: usize) -> Result<(), DecodeError> {
        let limit = self.limits.max_frame_bytes;
        if len > limit {
            Err(DecodeError::FrameTooLarge { limit })
        } else {
            Ok(())
        }
    }

    fn parse_command(&mut self, line: &[u8]) -> Result<(), DecodeError> {
        let command = match Command::from_bytes(line) {
            Some(c) => c,
            None => {
                let s = std::str::from_utf8(line).map_err(|_| DecodeError::BadUtf8)?;
                return Err(DecodeError::UnknownCommand(truncate(s)));
            }
        };
        self.st.command = Some(command);
        self.st.unescape = match self.version {
            Some(v @ (Version::V1_1 | Version::V1_2)) if !command.never_escaped() => Some(v),
            _ => None,
        };
        Ok(())
    }

    fn parse_header(&mut self, buf: &[u8], start: usize, end: usize) -> Result<(), DecodeError> {
        let line = buf.get(start..end).unwrap_or_default();
        if self.st.headers.len() >= self.limits.max_headers {
            return Err(DecodeError::TooManyHeaders {
                limit: self.limits.max_headers,
            });
        }
        std::str::from_utf8(line).map_err(|_| DecodeError::BadUtf8)?;
        let colon = match memchr::memchr(b':', line) {
            Some(c) if c > 0 => c,
            _ => {
                return Err(DecodeError::BadHeader(truncate(&String::from_utf8_lossy(
                    line,
                ))))
            }
        };
        let (name, value) = (start..start + colon, start + colon + 1..end);
        // One scan of the whole line decides whether either half needs unescaping.
        let unescape = match self.st.unescape {
            Some(v) if memchr::memchr(b'\\', line).is_some() => Some(v),
            _ => None,
        };
        let name_part = part(buf, name.start, name.end, unescape)?;
        let value_part = part(buf, value.start, value.end, unescape)?;
        if self.st.content_length.is_none() && buf.get(name) == Some(b"content-length".as_slice()) {
            let raw = buf.get(value).unwrap_or_default();
            let n = parse_length(raw).ok_or_else(|| {
                DecodeError::BadContentLength(truncate(&String::from_utf8_lossy(raw)))
            })?;
            if n > self.limits.max_body_bytes {
                return Err(DecodeError::BodyTooLarge {
                    limit: self.limits.max_body_bytes,
                    length: Some(n),
                });
            }
            self.st.content_length = Some(n);
        }
        self.st.headers.push((name_part, value_part));
        Ok(())
    }

    /// The `receipt` header among the already-examined header lines of the frame at the head of
    /// `src` (only used on errors, so the ERROR can carry `receipt-id`).
    fn receipt_of_partial(&self, src: &[u8]) -> Option<String> {
        self.st.command?;
        // The header block as far as it arrived (bounded: this runs only on errors).
        let head = src.get(..src.len().min(64 * 1024))?;
        let head = match memchr::memmem::find(head, b"\n\n") {
            Some(blank) => head.get(..blank + 1)?,
            None => head,
        };
        let at = memchr::memmem::find(head, b"\nreceipt:")? + b"\nreceipt:".len();
        let rest = head.get(at..)?;
        let end = memchr::memchr(b'\n', rest)?;
        let value = rest.get(..end)?;
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        std::str::from_utf8(value).ok().map(str::to_owned)
    }

    /// Takes the `receipt` of the frame whose decoding last failed, if its headers were read.
    pub fn take_failed_receipt(&mut self) -> Option<String> {
        self.failed_receipt.take()
    }

    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        loop {
            match self.st.phase {
                Phase::Idle => {
                    let mut i = 0;
                    loop {
                        match src.get(i) {
                            Some(b'\n') => i += 1,
                            Some(b'\r') if src.get(i + 1) == Some(&b'\n') => i += 2,
                            _ => break,
                        }
                    }
                    self.examined += i as u64;
                    if i > 0 {
                        let _ = src.split_to(i);
                        return Ok(Some(Inbound::HeartBeat));
                    }
                    // Nothing yet, or a lone CR that may be the start of a CRLF heart-beat.
                    if src.is_empty() || src.as_ref() == b"\r" {
                        return Ok(None);
                    }
                    self.st.phase = Phase::Command;
                }
                Phase::Command => {
                    let Some((s, e)) = self.next_line(src)? else {
                        return Ok(None);
                    };
                    self.parse_command(src.get(s..e).unwrap_or_default())?;
                    self.st.phase = Phase::Headers;
                }
                Phase::Headers => {
                    let Some((s, e)) = self.next_line(src)? else {
                        return Ok(None);
                    };
                    if s < e {
                        self.parse_header(src, s, e)?;
                        continue;
                    }
                    self.st.body_start = self.st.pos;
                    self.st.phase = Phase::Body;
                    if let Some(n) = self.st.content_length {
                        let total = self.st.body_start.saturating_add(n).saturating_add(1);
                        self.check_frame_size(total)?;
                        // The body's size is known: grow the buffer once for the whole frame.
                        if total > src.len() {
                            src.reserve(total - src.len());
                        }
                    }
                }
                Phase::Body => return self.decode_body(src),
            }
        }
    }

    fn decode_body(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        let body_start = self.st.body_start;
        let max_body = self.limits.max_body_bytes;
        let body_end = match self.st.content_length {
            Some(n) => {
                let nul = body_start + n;
                match src.get(nul) {
                    None => return Ok(None),
                    Some(0) => {
                        self.examined += 1;
                        nul
                    }
                    Some(_) => return Err(DecodeError::MissingNul),
                }
            }
            None => {
                let from = self.st.pos;
                let rest = src.get(from..).unwrap_or_default();
                match memchr::memchr(0, rest) {
                    Some(i) => {
                        self.examined += i as u64 + 1;
                        from + i
                    }
                    None => {
                        self.examined += rest.len() as u64;
                        self.st.pos = src.len();
                        if src.len() - body_start > max_body {
                            return Err(DecodeError::BodyTooLarge {
                                limit: max_body,
                                length: None,
                            });
                        }
                        self.check_frame_size(src.len())?;
                        return Ok(None);
                    }
                }
            }
        };
        if body_end - body_start > max_body {
            return Err(DecodeError::BodyTooLarge {
                limit: max_body,
                length: None,
            });
        }
        self.check_frame_size(body_end + 1)?;
        let bytes = src.split_to(body_end + 1).freeze();
        let to_str = |p: Part| match p {
            Part::Owned(s) => s,
            // Validated as UTF-8 when the line was parsed.
            Part::Range(a, b) => ByteStr::from_validated(bytes.slice(a..b)),
        };
        let headers = self
            .st
            .headers
            .drain(..)
            .map(|(n, v)| (to_str(n), to_str(v)))
            .collect();
        let frame = Frame {
            command: self.st.command.unwrap_or(Command::Send),
            headers,
            body: bytes.slice(body_start..body_end),
        };
        self.st.reset();
        Ok(Some(Inbound::Frame(frame)))
    }
}

impl State {
    /// Ready for the next frame; keeps the header vector's capacity.
    fn reset(&mut self) {
        self.headers.clear();
        *self = State {
            headers: std::mem::take(&mut self.headers),
            ..State::default()
        };
    }
}

/// A header name or value, unescaped now (once) if the line has escapes; otherwise a range that
/// becomes a zero-copy slice when the frame is complete.
fn part(buf: &[u8], start: usize, end: usize, v: Option<Version>) -> Result<Part, DecodeError> {
    let raw = buf.get(start..end).unwrap_or_default();
    match v {
        Some(v) if memchr::memchr(b'\\', raw).is_some() => Ok(Part::Owned(unescape(raw, v)?)),
        _ => Ok(Part::Range(start, end)),
    }
}

/// Caps user-controlled text quoted in error messages.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// A non-negative decimal octet count; no sign, no whitespace, no overflow.
fn parse_length(raw: &[u8]) -> Option<usize> {
    if raw.is_empty() {
        return None;
    }
    raw.iter().try_fold(0usize, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Applies 1.1/1.2 header unescaping; any other escape is an error, as the spec requires.
fn unescape(raw: &[u8], v: Version) -> Result<ByteStr, DecodeError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'c') => out.push(b':'),
            Some(b'r') if v == Version::V1_2 => out.push(b'\r'),
            _ => {
                return Err(DecodeError::BadEscape(truncate(&String::from_utf8_lossy(
                    raw,
                ))))
            }
        }
    }
    // Replacing ASCII escape sequences by ASCII bytes keeps valid UTF-8 valid.
    Ok(ByteStr::from_validated(bytes::Bytes::from(out)))
}

impl Decoder for StompCodec {
    type Item = Inbound;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        let r = self.decode_inner(src);
        if r.is_err() {
            self.failed_receipt = self.receipt_of_partial(src);
            // The stream is unusable after an error; start clean rather than from a torn state.
            self.st.reset();
        }
        r
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if src.iter().all(|&b| b == b'\r' || b == b'\n') {
            src.clear();
            self.st.reset();
            return Ok(None);
        }
        self.st.reset();
        Err(DecodeError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a frame",
        )))
    }
}

impl Encoder<&Frame> for StompCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_frame(
            dst,
            self.version.unwrap_or(Version::V1_0),
            frame.command,
            frame.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &frame.body,
        );
        Ok(())
    }
}

impl Encoder<Frame> for StompCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.encode(&frame, dst)
    }
}

impl Encoder<HeartBeatEol> for StompCodec {
    type Error = std::io::Error;

    fn encode(&mut self, _: HeartBeatEol, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}
