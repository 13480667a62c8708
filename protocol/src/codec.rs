//! The resumable STOMP codec.

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

/// STOMP codec for one connection.
#[derive(Debug)]
pub struct StompCodec {
    role: Role,
    version: Option<Version>,
    limits: Limits,
}

impl StompCodec {
    /// Server side: decodes client frames, encodes server frames. Starts unnegotiated: CONNECT/STOMP
    /// headers are never unescaped; after `set_version` escaping follows that version.
    pub fn server(limits: Limits) -> Self {
        StompCodec {
            role: Role::Server,
            version: None,
            limits,
        }
    }

    /// Client side (tests, bench tool): decodes server frames. CONNECTED is never unescaped.
    pub fn client(limits: Limits) -> Self {
        StompCodec {
            role: Role::Client,
            version: None,
            limits,
        }
    }

    pub fn set_version(&mut self, v: Version) {
        self.version = Some(v);
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }
}

impl Decoder for StompCodec {
    type Item = Inbound;
    type Error = DecodeError;

    fn decode(&mut self, _src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        let _ = (self.role, ByteStr::default(), Command::Send);
        todo!()
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
