//! The body of the `decode` fuzz target, shared with a stable test (`tests/fuzz_decode.rs`) so CI
//! exercises it without nightly.
//!
//! Input: the first byte seeds the chunking and the negotiated version; the rest is the byte
//! stream of a client connection. Properties: no panic; decoded frames respect the limits; and a
//! frame decoded under 1.2 re-encodes and decodes to the same frame.

use bytes::BytesMut;
use stompd_protocol::{Command, Frame, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::{Decoder, Encoder};

const LIMITS: Limits = Limits {
    max_frame_bytes: 4096,
    max_header_line_bytes: 256,
    max_headers: 16,
    max_body_bytes: 2048,
};

pub fn run(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut codec = StompCodec::server(LIMITS);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut step = u32::from(seed);
    loop {
        // Chunks of 1..=16 bytes in a seed-dependent pattern, or everything at once.
        let n = if seed & 0x80 != 0 {
            rest.len()
        } else {
            step = step.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (step >> 16) as usize % 16 + 1
        };
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        buf.extend_from_slice(chunk);
        rest = tail;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Inbound::Frame(frame))) => check(&mut codec, frame, seed),
                Ok(Some(Inbound::HeartBeat)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fn check(codec: &mut StompCodec, frame: Frame, seed: u8) {
    assert!(frame.body.len() <= LIMITS.max_body_bytes);
    assert!(frame.headers.len() <= LIMITS.max_headers);
    let handshake = matches!(frame.command, Command::Connect | Command::Stomp);
    if handshake && codec.version().is_none() {
        codec.set_version(Version::ALL[usize::from(seed % 3)]);
        return;
    }
    if codec.version() != Some(Version::V1_2) || frame.command == Command::Connected || handshake {
        return;
    }
    let mut wire = BytesMut::new();
    let _ = codec.encode(&frame, &mut wire);
    let mut again = StompCodec::server(Limits::default());
    again.set_version(Version::V1_2);
    let decoded = match again.decode(&mut wire) {
        Ok(Some(Inbound::Frame(f))) => f,
        other => panic!("re-encoded frame did not decode: {other:?}"),
    };
    let strip = |f: &Frame| {
        f.headers
            .iter()
            .filter(|(n, _)| n != "content-length")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(decoded.command, frame.command);
    assert_eq!(strip(&decoded), strip(&frame));
    assert_eq!(decoded.body, frame.body);
    assert!(wire.is_empty());
}
