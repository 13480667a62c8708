//! Frame encoding: the hot path that writes MESSAGE frames straight into a session's output buffer.

use crate::{Command, Version};
use bytes::{BufMut, BytesMut};

/// Hot path: encode one frame straight into `dst` from borrowed parts, escaping per `version`
/// (none for 1.0, CONNECT, STOMP, CONNECTED). Any `content-length` in `headers` is skipped; the
/// encoder writes the correct one itself whenever the body is non-empty (and for SEND/MESSAGE/ERROR
/// always), so a body may contain NUL bytes.
///
/// Where no escaping exists (1.0 and the handshake frames) CR and LF inside names and values are
/// written as spaces: they cannot be represented, and writing them raw would let a header value
/// inject headers or end the header block.
///
/// Names and values are taken as bytes (`&str`, `&[u8]`, `&ByteStr`...): the encoder only copies
/// and escapes them, so the hot path never re-validates UTF-8 that the decoder already checked.
pub fn encode_frame<K, V>(
    dst: &mut BytesMut,
    version: Version,
    command: Command,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &[u8],
) where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let headers = headers.into_iter();
    let mode = if command.never_escaped() {
        Mode::Raw
    } else {
        match version {
            Version::V1_0 => Mode::Raw,
            Version::V1_1 => Mode::V11,
            Version::V1_2 => Mode::V12,
        }
    };
    // One reservation sized from the iterator's hint; escapes are rare, so growth is rare too.
    let (hint, _) = headers.size_hint();
    dst.reserve(command.as_str().len() + 48 + hint.saturating_mul(48) + body.len());

    dst.put_slice(command.as_str().as_bytes());
    dst.put_u8(b'\n');
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name == b"content-length" {
            continue;
        }
        put_escaped(dst, name, mode);
        dst.put_u8(b':');
        put_escaped(dst, value, mode);
        dst.put_u8(b'\n');
    }
    if !body.is_empty() || matches!(command, Command::Send | Command::Message | Command::Error) {
        dst.put_slice(b"content-length:");
        put_decimal(dst, body.len());
        dst.put_u8(b'\n');
    }
    dst.put_u8(b'\n');
    dst.put_slice(body);
    dst.put_u8(0);
}

#[derive(Clone, Copy)]
enum Mode {
    Raw,
    V11,
    V12,
}

/// Bytes that need attention per mode: bit 0 = escaped in 1.1, bit 1 = escaped in 1.2,
/// bit 2 = replaced in raw mode.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\\' as usize] = 0b011;
    t[b'\n' as usize] = 0b111;
    t[b':' as usize] = 0b011;
    t[b'\r' as usize] = 0b110;
    t
};

fn put_escaped(dst: &mut BytesMut, s: &[u8], mode: Mode) {
    let mask = match mode {
        Mode::Raw => 0b100,
        Mode::V11 => 0b001,
        Mode::V12 => 0b010,
    };
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if CLASS[b as usize] & mask == 0 {
            continue;
        }
        dst.put_slice(s.get(start..i).unwrap_or_default());
        start = i + 1;
        match (mode, b) {
            (Mode::Raw, _) => dst.put_u8(b' '),
            (_, b'\\') => dst.put_slice(b"\\\\"),
            (_, b'\n') => dst.put_slice(b"\\n"),
            (_, b':') => dst.put_slice(b"\\c"),
            (_, _) => dst.put_slice(b"\\r"),
        }
    }
    dst.put_slice(s.get(start..).unwrap_or_default());
}

/// Writes `n` in decimal without going through `fmt` or an allocation.
fn put_decimal(dst: &mut BytesMut, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(buf.get(i..).unwrap_or_default());
}
