//! STOMP 1.0/1.1/1.2 on bytes: frames, a resumable tokio-util codec, version and heart-beat
//! negotiation, and typed client frames. No sockets and no runtime, so every rule is testable alone.

mod bytestr;
pub mod client;
mod codec;
mod command;
mod encode;
mod error;
mod frame;
mod heartbeat;
mod version;

pub use bytestr::ByteStr;
pub use client::{AckMode, ClientFrame};
pub use codec::{HeartBeatEol, Inbound, Limits, StompCodec};
pub use command::Command;
pub use encode::encode_frame;
pub use error::{DecodeError, FrameError};
pub use frame::Frame;
pub use heartbeat::{negotiate_heartbeat, HeartBeat};
pub use version::{negotiate_version, Version};
