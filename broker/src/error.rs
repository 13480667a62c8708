//! Errors a client caused. Each knows the ERROR frame it becomes: a machine-readable `code`, a
//! `message` a person can act on, and whether the connection must close (STOMP says it must after
//! every ERROR; the soft errors of the event channel are not ERROR frames).

use stompd_protocol::{ByteStr, DecodeError, FrameError};

use crate::message::HeaderError;
use crate::queue::{EnqueueError, Limit};

#[derive(Debug, Clone)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    /// Longer explanation, sent as the ERROR frame's body.
    pub detail: Option<String>,
    /// The `receipt` of the frame that failed, echoed as `receipt-id`.
    pub receipt: Option<ByteStr>,
}

impl ClientError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
            detail: None,
            receipt: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ClientError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_receipt(mut self, receipt: Option<&ByteStr>) -> ClientError {
        if self.receipt.is_none() {
            self.receipt = receipt.cloned();
        }
        self
    }

    pub fn enqueue(destination: &str, err: EnqueueError) -> ClientError {
        match err {
            EnqueueError::Closed => ClientError::new(
                "queue-closed",
                format!("queue {destination} is closed to producers"),
            ),
            EnqueueError::Full(Limit::Messages(n)) => ClientError::new(
                "queue-full",
                format!("queue {destination} is full (limit {n} messages)"),
            ),
            EnqueueError::Full(Limit::Bytes(n)) => ClientError::new(
                "queue-full",
                format!("queue {destination} is full (limit {n} bytes)"),
            ),
            EnqueueError::Full(Limit::PriorityMessages { priority, limit }) => ClientError::new(
                "queue-full",
                format!(
                    "queue {destination} is full at priority {priority} (limit {limit} waiting messages per priority)"
                ),
            ),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<&DecodeError> for ClientError {
    fn from(e: &DecodeError) -> ClientError {
        ClientError::new(e.code(), e.to_string())
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> ClientError {
        ClientError::new(e.code(), e.to_string())
    }
}

impl From<HeaderError> for ClientError {
    fn from(e: HeaderError) -> ClientError {
        ClientError::new("bad-header", e.to_string())
    }
}
