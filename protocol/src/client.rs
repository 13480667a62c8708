//! Typed client frames: the required headers of each command, per version, checked once so the
//! session never deals with a half-valid frame.

use crate::{ByteStr, Command, Frame, FrameError, HeartBeat, Version};

/// A subscription's acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckMode {
    #[default]
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    /// Parses the `ack` header value (exact spelling).
    pub fn parse(s: &str) -> Option<AckMode> {
        match s {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

/// A validated client frame. Variants that the broker forwards or inspects further keep the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Connect {
        /// The `accept-version` header, if any (absent means 1.0 only).
        version_header: Option<ByteStr>,
        host: Option<ByteStr>,
        login: Option<ByteStr>,
        passcode: Option<ByteStr>,
        heart_beat: HeartBeat,
        /// The frame used the 1.1+ `STOMP` command instead of `CONNECT`.
        stomp_command: bool,
        frame: Frame,
    },
    Send {
        destination: ByteStr,
        transaction: Option<ByteStr>,
        receipt: Option<ByteStr>,
        frame: Frame,
    },
    Subscribe {
        id: ByteStr,
        destination: ByteStr,
        ack: AckMode,
        receipt: Option<ByteStr>,
        frame: Frame,
    },
    Unsubscribe {
        id: ByteStr,
        receipt: Option<ByteStr>,
    },
    Ack {
        id: ByteStr,
        subscription: Option<ByteStr>,
        transaction: Option<ByteStr>,
        receipt: Option<ByteStr>,
    },
    Nack {
        id: ByteStr,
        subscription: Option<ByteStr>,
        transaction: Option<ByteStr>,
        receipt: Option<ByteStr>,
    },
    Begin {
        transaction: ByteStr,
        receipt: Option<ByteStr>,
    },
    Commit {
        transaction: ByteStr,
        receipt: Option<ByteStr>,
    },
    Abort {
        transaction: ByteStr,
        receipt: Option<ByteStr>,
    },
    Disconnect {
        receipt: Option<ByteStr>,
    },
}

fn opt(frame: &Frame, name: &str) -> Option<ByteStr> {
    frame.get_bytestr(name).cloned()
}

/// A required header; an empty value counts as missing because no command can use it.
fn req(frame: &Frame, name: &'static str) -> Result<ByteStr, FrameError> {
    match frame.get_bytestr(name) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(FrameError::MissingHeader {
            command: frame.command,
            header: name,
        }),
    }
}

impl ClientFrame {
    /// Validates required headers for `version`:
    ///  SEND: destination. SUBSCRIBE: destination; id required in 1.1+ (1.0: id defaults to
    ///  destination). UNSUBSCRIBE: id (1.1+); 1.0 accepts id or destination. ACK/NACK: 1.2 `id`;
    ///  1.1 `message-id` + `subscription`; 1.0 `message-id` (NACK does not exist in 1.0).
    ///  BEGIN/COMMIT/ABORT: transaction. Server commands -> `FrameError::NotAClientFrame`.
    pub fn from_frame(frame: Frame, version: Version) -> Result<ClientFrame, FrameError> {
        let receipt = opt(&frame, "receipt");
        Ok(match frame.command {
            Command::Connect | Command::Stomp => {
                let heart_beat = match frame.get("heart-beat") {
                    Some(s) => HeartBeat::parse(s)?,
                    None => HeartBeat::default(),
                };
                ClientFrame::Connect {
                    version_header: opt(&frame, "accept-version"),
                    host: opt(&frame, "host"),
                    login: opt(&frame, "login"),
                    passcode: opt(&frame, "passcode"),
                    heart_beat,
                    stomp_command: frame.command == Command::Stomp,
                    frame,
                }
            }
            Command::Send => ClientFrame::Send {
                destination: req(&frame, "destination")?,
                transaction: opt(&frame, "transaction"),
                receipt,
                frame,
            },
            Command::Subscribe => {
                let destination = req(&frame, "destination")?;
                let id = match version {
                    Version::V1_0 => req(&frame, "id").unwrap_or_else(|_| destination.clone()),
                    _ => req(&frame, "id")?,
                };
                let ack = match frame.get("ack") {
                    None => AckMode::Auto,
                    Some(s) => AckMode::parse(s).ok_or_else(|| FrameError::BadHeaderValue {
                        header: "ack".to_owned(),
                        value: s.to_owned(),
                    })?,
                };
                ClientFrame::Subscribe {
                    id,
                    destination,
                    ack,
                    receipt,
                    frame,
                }
            }
            Command::Unsubscribe => {
                let id = match version {
                    Version::V1_0 => req(&frame, "id").or_else(|_| {
                        req(&frame, "destination").map_err(|_| FrameError::MissingHeader {
                            command: Command::Unsubscribe,
                            header: "id",
                        })
                    })?,
                    _ => req(&frame, "id")?,
                };
                ClientFrame::Unsubscribe { id, receipt }
            }
            Command::Ack | Command::Nack => {
                let (id, subscription) = match version {
                    Version::V1_0 if frame.command == Command::Nack => {
                        return Err(FrameError::Unsupported {
                            command: Command::Nack,
                            version,
                        })
                    }
                    Version::V1_0 => (req(&frame, "message-id")?, opt(&frame, "subscription")),
                    Version::V1_1 => (
                        req(&frame, "message-id")?,
                        Some(req(&frame, "subscription")?),
                    ),
                    Version::V1_2 => (req(&frame, "id")?, opt(&frame, "subscription")),
                };
                let transaction = opt(&frame, "transaction");
                if frame.command == Command::Ack {
                    ClientFrame::Ack {
                        id,
                        subscription,
                        transaction,
                        receipt,
                    }
                } else {
                    ClientFrame::Nack {
                        id,
                        subscription,
                        transaction,
                        receipt,
                    }
                }
            }
            Command::Begin => ClientFrame::Begin {
                transaction: req(&frame, "transaction")?,
                receipt,
            },
            Command::Commit => ClientFrame::Commit {
                transaction: req(&frame, "transaction")?,
                receipt,
            },
            Command::Abort => ClientFrame::Abort {
                transaction: req(&frame, "transaction")?,
                receipt,
            },
            Command::Disconnect => ClientFrame::Disconnect { receipt },
            c @ (Command::Connected | Command::Message | Command::Receipt | Command::Error) => {
                return Err(FrameError::NotAClientFrame(c))
            }
        })
    }

    /// The `receipt` header, which the broker must answer whatever the command (CONNECT has none:
    /// its answer is CONNECTED).
    pub fn receipt(&self) -> Option<&ByteStr> {
        match self {
            ClientFrame::Connect { .. } => None,
            ClientFrame::Send { receipt, .. }
            | ClientFrame::Subscribe { receipt, .. }
            | ClientFrame::Unsubscribe { receipt, .. }
            | ClientFrame::Ack { receipt, .. }
            | ClientFrame::Nack { receipt, .. }
            | ClientFrame::Begin { receipt, .. }
            | ClientFrame::Commit { receipt, .. }
            | ClientFrame::Abort { receipt, .. }
            | ClientFrame::Disconnect { receipt } => receipt.as_ref(),
        }
    }
}
