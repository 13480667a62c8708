//! Errors of the decoder and of typed frame validation.

use crate::{Command, Version};

/// Why a byte stream is not valid STOMP. Display is a sentence fit for an ERROR frame's `message`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame exceeds the maximum size of {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("command or header line exceeds the maximum length of {limit} bytes")]
    HeaderLineTooLong { limit: usize },
    #[error("frame has more than the maximum of {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("body exceeds the maximum size of {limit} bytes")]
    BodyTooLarge { limit: usize, length: Option<usize> },
    #[error("invalid content-length header: {0:?}")]
    BadContentLength(String),
    #[error("invalid escape sequence in header: {0:?}")]
    BadEscape(String),
    #[error("command or header is not valid UTF-8")]
    BadUtf8,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("malformed header line: {0:?}")]
    BadHeader(String),
    #[error("frame body is not terminated by a NUL byte")]
    MissingNul,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl DecodeError {
    /// A stable short code for logs, metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::FrameTooLarge { .. } => "frame-too-large",
            DecodeError::HeaderLineTooLong { .. } => "header-too-long",
            DecodeError::TooManyHeaders { .. } => "too-many-headers",
            DecodeError::BodyTooLarge { .. } => "body-too-large",
            DecodeError::BadContentLength(_) => "bad-content-length",
            DecodeError::BadEscape(_) => "bad-escape",
            DecodeError::BadUtf8 => "bad-utf8",
            DecodeError::UnknownCommand(_) => "unknown-command",
            DecodeError::BadHeader(_) => "bad-header",
            DecodeError::MissingNul => "bad-frame",
            DecodeError::Io(_) => "io",
        }
    }
}

/// Why a well-formed frame is not an acceptable client frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{command} frame is missing the required '{header}' header")]
    MissingHeader {
        command: Command,
        header: &'static str,
    },
    #[error("invalid value {value:?} for header '{header}'")]
    BadHeaderValue { header: String, value: String },
    #[error("{0} is not a frame a client may send")]
    NotAClientFrame(Command),
    #[error("{command} is not supported in STOMP {version}")]
    Unsupported { command: Command, version: Version },
}

impl FrameError {
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::MissingHeader { .. } => "missing-header",
            FrameError::BadHeaderValue { .. } => "bad-header",
            FrameError::NotAClientFrame(_) => "bad-frame",
            FrameError::Unsupported { .. } => "unsupported",
        }
    }
}
