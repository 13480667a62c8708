//! The broker's message: what a SEND becomes once it is accepted, shared (never copied) between a
//! queue, its in-flight table and every topic subscriber it fans out to.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stompd_protocol::{ByteStr, Frame};

/// Highest STOMP/JMS priority; 0 is the lowest.
pub const MAX_PRIORITY: u8 = 9;
/// JMS's default priority, used when neither the SEND nor the queue says otherwise.
pub const DEFAULT_PRIORITY: u8 = 4;

/// Headers a SEND carries that belong to the SEND itself, not to the message: they are never
/// copied into the MESSAGE frames the message becomes.
const TRANSPORT_HEADERS: &[&str] = &[
    "destination",
    "transaction",
    "receipt",
    "content-length",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "redelivery-count",
];

#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// Destination as the producer named it (`/queue/x`, `/topic/y`).
    pub destination: ByteStr,
    /// User headers, in the order the producer sent them (first occurrence wins on read).
    pub headers: Vec<(ByteStr, ByteStr)>,
    pub body: Bytes,
    /// 0..=9, 9 first.
    pub priority: u8,
    /// Wall-clock time the broker accepted it, epoch milliseconds.
    pub timestamp_ms: u64,
    /// Absolute expiry, epoch milliseconds.
    pub expires_at_ms: Option<u64>,
    /// Optional producer-supplied key for duplicate suppression.
    pub idempotency_key: Option<ByteStr>,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    /// Builds a message from a SEND frame. `default_priority` and `default_ttl_ms` come from the
    /// destination's policy; the headers the producer sent win over them.
    pub fn from_send(
        frame: Frame,
        destination: ByteStr,
        default_priority: u8,
        default_ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Message, HeaderError> {
        let priority = match frame.get("priority") {
            Some(p) => parse_priority(p)?,
            None => default_priority,
        };
        let expires_at_ms = expiry(&frame, default_ttl_ms, now_ms)?;
        let idempotency_key = frame.get_bytestr("idempotency-key").cloned();
        let Frame { headers, body, .. } = frame;
        let mut kept = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            // Compared as bytes: names were validated once by the decoder.
            if !TRANSPORT_HEADERS
                .iter()
                .any(|t| t.as_bytes() == name.as_bytes())
            {
                kept.push((name, value));
            }
        }
        Ok(Message {
            destination,
            headers: kept,
            body,
            priority,
            timestamp_ms: now_ms,
            expires_at_ms,
            idempotency_key,
        })
    }

    /// Body size, the unit of `max_bytes` limits.
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v.as_str())
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_at_ms, Some(at) if at <= now_ms)
    }
}

/// A header the broker interprets had a value it cannot use.
#[derive(Debug, thiserror::Error)]
#[error("header `{header}` has an invalid value {value:?}: {expected}")]
pub struct HeaderError {
    pub header: &'static str,
    pub value: String,
    pub expected: &'static str,
}

fn parse_priority(value: &str) -> Result<u8, HeaderError> {
    match value.trim().parse::<u8>() {
        Ok(p) if p <= MAX_PRIORITY => Ok(p),
        _ => Err(HeaderError {
            header: "priority",
            value: value.to_owned(),
            expected: "an integer from 0 to 9",
        }),
    }
}

/// Expiry from the SEND's headers, in precedence order: `expires` (absolute epoch ms, ActiveMQ/JMS;
/// 0 means never), then `expiration` (relative ms, RabbitMQ), then `ttl` (relative ms); otherwise
/// the destination's default TTL.
fn expiry(
    frame: &Frame,
    default_ttl_ms: Option<u64>,
    now_ms: u64,
) -> Result<Option<u64>, HeaderError> {
    if let Some(v) = frame.get("expires") {
        let at = parse_ms("expires", v)?;
        return Ok((at != 0).then_some(at));
    }
    for name in ["expiration", "ttl"] {
        if let Some(v) = frame.get(name) {
            let ttl = parse_ms(if name == "ttl" { "ttl" } else { "expiration" }, v)?;
            return Ok(Some(now_ms.saturating_add(ttl)));
        }
    }
    Ok(default_ttl_ms.map(|ttl| now_ms.saturating_add(ttl)))
}

fn parse_ms(header: &'static str, value: &str) -> Result<u64, HeaderError> {
    value.trim().parse::<u64>().map_err(|_| HeaderError {
        header,
        value: value.to_owned(),
        expected: "a non-negative integer of milliseconds",
    })
}

/// Wall clock in epoch milliseconds: expiry headers are wall-clock by definition.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stompd_protocol::Command;

    fn send(headers: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(Command::Send).with_body("hi");
        for (n, v) in headers {
            f.push_header(*n, *v);
        }
        f
    }

    #[test]
    fn transport_headers_are_stripped_and_user_headers_kept_in_order() {
        let f = send(&[
            ("destination", "/queue/a"),
            ("receipt", "r1"),
            ("b", "2"),
            ("a", "1"),
            ("a", "dup"),
        ]);
        let m = Message::from_send(f, "/queue/a".into(), 4, None, 1000).unwrap();
        let names: Vec<_> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "a"]);
        assert_eq!(m.header("a"), Some("1"));
    }

    #[test]
    fn priority_header_wins_over_default_and_is_range_checked() {
        let m =
            Message::from_send(send(&[("priority", "9")]), "/queue/a".into(), 4, None, 0).unwrap();
        assert_eq!(m.priority, 9);
        let m = Message::from_send(send(&[]), "/queue/a".into(), 2, None, 0).unwrap();
        assert_eq!(m.priority, 2);
        assert!(
            Message::from_send(send(&[("priority", "10")]), "/queue/a".into(), 4, None, 0).is_err()
        );
        assert!(
            Message::from_send(send(&[("priority", "x")]), "/queue/a".into(), 4, None, 0).is_err()
        );
    }

    #[test]
    fn expiry_precedence_expires_then_expiration_then_ttl_then_default() {
        let d: ByteStr = "/queue/a".into();
        let m = Message::from_send(
            send(&[("expires", "5000"), ("ttl", "1")]),
            d.clone(),
            4,
            Some(9),
            1000,
        )
        .unwrap();
        assert_eq!(m.expires_at_ms, Some(5000));
        let m = Message::from_send(send(&[("expires", "0")]), d.clone(), 4, Some(9), 1000).unwrap();
        assert_eq!(m.expires_at_ms, None);
        let m = Message::from_send(
            send(&[("expiration", "250"), ("ttl", "1")]),
            d.clone(),
            4,
            None,
            1000,
        )
        .unwrap();
        assert_eq!(m.expires_at_ms, Some(1250));
        let m = Message::from_send(send(&[("ttl", "7")]), d.clone(), 4, None, 1000).unwrap();
        assert_eq!(m.expires_at_ms, Some(1007));
        let m = Message::from_send(send(&[]), d.clone(), 4, Some(30), 1000).unwrap();
        assert_eq!(m.expires_at_ms, Some(1030));
        assert!(m.is_expired(1030));
        assert!(!m.is_expired(1029));
        assert!(Message::from_send(send(&[("ttl", "-1")]), d, 4, None, 0).is_err());
    }
}
