//! The `heart-beat` header and its negotiation.

use crate::FrameError;
use std::fmt;
use std::time::Duration;

/// `heart-beat: cx,cy` in milliseconds: "I can send every cx", "I want to receive every cy";
/// 0 means "cannot" / "do not want".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    pub cx: u32,
    pub cy: u32,
}

impl HeartBeat {
    /// Parses "cx,cy", tolerating whitespace around either number (some clients send "0, 0").
    pub fn parse(s: &str) -> Result<HeartBeat, FrameError> {
        let bad = || FrameError::BadHeaderValue {
            header: "heart-beat".to_owned(),
            value: s.to_owned(),
        };
        let (cx, cy) = s.split_once(',').ok_or_else(bad)?;
        let cx = cx.trim().parse::<u32>().map_err(|_| bad())?;
        let cy = cy.trim().parse::<u32>().map_err(|_| bad())?;
        Ok(HeartBeat { cx, cy })
    }
}

impl fmt::Display for HeartBeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.cx, self.cy)
    }
}

/// Negotiation per spec. Returns (interval at which the *local* side must send, interval at which
/// the local side expects to hear from the peer); `None` = disabled. A direction is off when the
/// sender cannot send (cx = 0) or the receiver does not want beats (cy = 0); otherwise the slower
/// of the two wishes wins.
pub fn negotiate_heartbeat(
    local: HeartBeat,
    peer: HeartBeat,
) -> (Option<Duration>, Option<Duration>) {
    let dir = |send: u32, want: u32| {
        (send != 0 && want != 0).then(|| Duration::from_millis(u64::from(send.max(want))))
    };
    (dir(local.cx, peer.cy), dir(peer.cx, local.cy))
}
