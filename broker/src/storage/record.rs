//! Journal records and their binary encoding.
//!
//! The byte layout is documented in the module docs of [`crate::storage::journal`]; this file is
//! its only implementation. Everything here is pure: no files, no threads.

use bytes::Bytes;
use stompd_protocol::ByteStr;

/// Version byte at the start of every entry payload. Bump it (and keep decoding the old one)
/// whenever the layout below changes.
pub const FORMAT_VERSION: u8 = 1;

pub(crate) const KIND_BATCH: u8 = 1;
pub(crate) const KIND_SNAPSHOT: u8 = 2;

const TAG_ENQUEUE: u8 = 1;
const TAG_ACK: u8 = 2;
const TAG_REDELIVERED: u8 = 3;
const TAG_QUEUE_CLOSED: u8 = 4;
const TAG_QUEUE_CREATED: u8 = 5;
const TAG_QUEUE_DELETED: u8 = 6;

/// A message as the journal stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Per-queue sequence number, increasing in enqueue order.
    pub seq: u64,
    pub priority: u8,
    pub timestamp_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub redelivery_count: u32,
    /// Shared with the message in memory (a refcount, not a copy, per header).
    pub idempotency_key: Option<ByteStr>,
    pub headers: Vec<(ByteStr, ByteStr)>,
    pub body: Bytes,
}

/// A recovered message whose headers and body were left on disk because replay had used up the
/// memory budget: what a queue needs to order and account for it until it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagedMessage {
    pub seq: u64,
    pub priority: u8,
    pub timestamp_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub redelivery_count: u32,
    pub idempotency_key: Option<ByteStr>,
    /// Body length in bytes.
    pub size: u64,
}

/// A queue's name in records: shared, since every record of a busy queue carries it.
pub type QueueName = std::sync::Arc<str>;

/// One change to the state of the persistent queues. A batch of records passed to one
/// [`Journal::append`](crate::storage::journal::Journal::append) is applied all-or-nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The message is stored in `queue` (replaces a message with the same `seq`, if any).
    Enqueue {
        queue: QueueName,
        msg: StoredMessage,
    },
    /// A new message as a producer's SEND left it (redelivery count 0): encoded exactly like
    /// `Enqueue`, which is what decoding gives back, but it shares the queue's message instead of
    /// copying its headers (the append path of every persistent SEND).
    Send {
        queue: QueueName,
        seq: u64,
        msg: crate::message::SharedMessage,
    },
    /// The message `seq` of `queue` is gone for good (acked, expired, dropped, moved).
    Ack { queue: QueueName, seq: u64 },
    /// The message's redelivery count is now `count` (absolute, not an increment).
    Redelivered {
        queue: QueueName,
        seq: u64,
        count: u32,
    },
    /// The queue is closed to producers (`closed: true`) or reopened.
    QueueClosed { queue: QueueName, closed: bool },
    /// The queue was created at run time.
    QueueCreated { queue: QueueName },
    /// The queue and all its messages are gone.
    QueueDeleted { queue: QueueName },
}

/// The message fields of an `Enqueue` or `Send` record, borrowed: both encode the same way.
pub(crate) struct Enqueued<'a> {
    pub seq: u64,
    pub priority: u8,
    pub timestamp_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub redelivery_count: u32,
    pub key: Option<&'a ByteStr>,
    pub headers: &'a [(ByteStr, ByteStr)],
    pub body: &'a Bytes,
}

impl Record {
    /// The stored message of an `Enqueue` or `Send` record.
    pub(crate) fn enqueued(&self) -> Option<Enqueued<'_>> {
        match self {
            Record::Enqueue { msg, .. } => Some(Enqueued {
                seq: msg.seq,
                priority: msg.priority,
                timestamp_ms: msg.timestamp_ms,
                expires_at_ms: msg.expires_at_ms,
                redelivery_count: msg.redelivery_count,
                key: msg.idempotency_key.as_ref(),
                headers: &msg.headers,
                body: &msg.body,
            }),
            Record::Send { seq, msg, .. } => Some(Enqueued {
                seq: *seq,
                priority: msg.priority,
                timestamp_ms: msg.timestamp_ms,
                expires_at_ms: msg.expires_at_ms,
                redelivery_count: 0,
                key: msg.idempotency_key.as_ref(),
                headers: &msg.headers,
                body: &msg.body,
            }),
            _ => None,
        }
    }

    /// The queue this record belongs to.
    pub fn queue(&self) -> &str {
        match self {
            Record::Enqueue { queue, .. }
            | Record::Send { queue, .. }
            | Record::Ack { queue, .. }
            | Record::Redelivered { queue, .. }
            | Record::QueueClosed { queue, .. }
            | Record::QueueCreated { queue }
            | Record::QueueDeleted { queue } => queue,
        }
    }
}

/// Queue-level state carried by the snapshot entry at the start of every segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotQueue {
    pub name: String,
    pub created: bool,
    pub closed: bool,
    pub next_seq: u64,
    /// The most recent idempotency keys enqueued to the queue, oldest first, with their
    /// enqueue times (epoch ms): duplicate suppression survives the deletion of the segments
    /// that held their enqueue records.
    pub keys: Vec<(ByteStr, u64)>,
}

/// Snapshot flag: a key list follows the queue's `next_seq`.
const SNAPSHOT_HAS_KEYS: u8 = 4;

/// A decoded entry payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    /// The records and the encoded size of each.
    Batch {
        records: Vec<Record>,
        sizes: Vec<u32>,
    },
    Snapshot(Vec<SnapshotQueue>),
}

/// Why a payload whose CRC verified could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Written by a newer stompd: not corruption, and not safe to skip.
    #[error("unsupported journal format version {0}")]
    Version(u8),
    #[error("malformed entry payload: {0}")]
    Malformed(&'static str),
}

// ---------------------------------------------------------------- encoding

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Lengths above `u32::MAX` saturate; such an entry exceeds the maximum entry size and is
/// refused before it reaches the disk, so a saturated length is never written.
fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// A rough size of the encoded batch, to allocate once.
pub(crate) fn estimate_batch(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| {
            32 + r.queue().len()
                + r.enqueued().map_or(0, |m| {
                    48 + m.body.len()
                        + m.key.map_or(0, ByteStr::len)
                        + m.headers
                            .iter()
                            .map(|(k, v)| 8 + k.len() + v.len())
                            .sum::<usize>()
                })
        })
        .sum::<usize>()
        + 8
}

/// Appends the payload of a batch entry to `out`; pushes the encoded size of every record to
/// `sizes` (used to account live bytes per segment).
pub(crate) fn encode_batch(out: &mut Vec<u8>, records: &[Record], sizes: &mut Vec<u32>) {
    out.push(FORMAT_VERSION);
    out.push(KIND_BATCH);
    put_len(out, records.len());
    for r in records {
        let start = out.len();
        encode_record(out, r);
        sizes.push(u32::try_from(out.len() - start).unwrap_or(u32::MAX));
    }
}

fn encode_record(out: &mut Vec<u8>, r: &Record) {
    match r {
        Record::Enqueue { queue, .. } | Record::Send { queue, .. } => {
            let Some(m) = r.enqueued() else { return };
            out.push(TAG_ENQUEUE);
            put_str(out, queue);
            put_u64(out, m.seq);
            out.push(m.priority);
            put_u64(out, m.timestamp_ms);
            match m.expires_at_ms {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    put_u64(out, t);
                }
            }
            put_u32(out, m.redelivery_count);
            // As bytes: a ByteStr is UTF-8 already, `as_str` would only check it again.
            put_opt_bytes(out, m.key.map(ByteStr::as_bytes));
            put_len(out, m.headers.len());
            for (k, v) in m.headers {
                put_bytes(out, k.as_bytes());
                put_bytes(out, v.as_bytes());
            }
            put_bytes(out, m.body);
        }
        Record::Ack { queue, seq } => {
            out.push(TAG_ACK);
            put_str(out, queue);
            put_u64(out, *seq);
        }
        Record::Redelivered { queue, seq, count } => {
            out.push(TAG_REDELIVERED);
            put_str(out, queue);
            put_u64(out, *seq);
            put_u32(out, *count);
        }
        Record::QueueClosed { queue, closed } => {
            out.push(TAG_QUEUE_CLOSED);
            put_str(out, queue);
            out.push(u8::from(*closed));
        }
        Record::QueueCreated { queue } => {
            out.push(TAG_QUEUE_CREATED);
            put_str(out, queue);
        }
        Record::QueueDeleted { queue } => {
            out.push(TAG_QUEUE_DELETED);
            put_str(out, queue);
        }
    }
}

/// Appends the payload of a snapshot entry to `out`.
pub(crate) fn encode_snapshot(out: &mut Vec<u8>, queues: &[SnapshotQueue]) {
    out.push(FORMAT_VERSION);
    out.push(KIND_SNAPSHOT);
    put_len(out, queues.len());
    for q in queues {
        put_str(out, &q.name);
        let has_keys = if q.keys.is_empty() {
            0
        } else {
            SNAPSHOT_HAS_KEYS
        };
        out.push(u8::from(q.created) | (u8::from(q.closed) << 1) | has_keys);
        put_u64(out, q.next_seq);
        if has_keys != 0 {
            put_len(out, q.keys.len());
            for (k, at) in &q.keys {
                put_str(out, k);
                put_u64(out, *at);
            }
        }
    }
}

// ---------------------------------------------------------------- decoding

/// Bounds-checked little-endian reader over bytes read from disk (untrusted input).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Malformed(
                "field runs past the end of the entry",
            ))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bad boolean")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        if self.bool()? {
            Ok(Some(self.string()?))
        } else {
            Ok(None)
        }
    }

    /// A count read from disk, capped for pre-allocation so a corrupt count cannot make us
    /// allocate gigabytes before the reads fail.
    fn count(&mut self) -> Result<(usize, usize), DecodeError> {
        let n = self.u32()? as usize;
        let remaining = self.buf.len() - self.pos;
        Ok((n, n.min(remaining)))
    }
}

/// Decodes an entry payload (after its CRC verified). Bodies are copied out of `buf`, so the
/// decoded records do not keep a whole segment's read buffer alive.
pub(crate) fn decode_payload(buf: &[u8]) -> Result<Payload, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let payload = match r.u8()? {
        KIND_BATCH => {
            let (n, cap) = r.count()?;
            let mut records = Vec::with_capacity(cap);
            let mut sizes = Vec::with_capacity(cap);
            for _ in 0..n {
                let start = r.pos;
                records.push(decode_record(&mut r)?);
                sizes.push(u32::try_from(r.pos - start).unwrap_or(u32::MAX));
            }
            Payload::Batch { records, sizes }
        }
        KIND_SNAPSHOT => {
            let (n, cap) = r.count()?;
            let mut queues = Vec::with_capacity(cap);
            for _ in 0..n {
                let name = r.string()?;
                let flags = r.u8()?;
                if flags & !0b111 != 0 {
                    return Err(DecodeError::Malformed("bad snapshot flags"));
                }
                let next_seq = r.u64()?;
                let mut keys = Vec::new();
                if flags & SNAPSHOT_HAS_KEYS != 0 {
                    let (n, cap) = r.count()?;
                    keys.reserve(cap);
                    for _ in 0..n {
                        let k = ByteStr::from(r.string()?);
                        keys.push((k, r.u64()?));
                    }
                }
                queues.push(SnapshotQueue {
                    name,
                    created: flags & 1 != 0,
                    closed: flags & 2 != 0,
                    next_seq,
                    keys,
                });
            }
            Payload::Snapshot(queues)
        }
        _ => return Err(DecodeError::Malformed("unknown entry kind")),
    };
    if r.pos != buf.len() {
        return Err(DecodeError::Malformed(
            "trailing bytes after the last record",
        ));
    }
    Ok(payload)
}

fn decode_record(r: &mut Reader<'_>) -> Result<Record, DecodeError> {
    let tag = r.u8()?;
    let queue: QueueName = r.string()?.into();
    Ok(match tag {
        TAG_ENQUEUE => {
            let seq = r.u64()?;
            let priority = r.u8()?;
            let timestamp_ms = r.u64()?;
            let expires_at_ms = if r.bool()? { Some(r.u64()?) } else { None };
            let redelivery_count = r.u32()?;
            let idempotency_key = r.opt_string()?.map(ByteStr::from);
            let (n, cap) = r.count()?;
            let mut headers = Vec::with_capacity(cap);
            for _ in 0..n {
                let k = r.string()?;
                let v = r.string()?;
                headers.push((ByteStr::from(k), ByteStr::from(v)));
            }
            let body = Bytes::copy_from_slice(r.bytes()?);
            Record::Enqueue {
                queue,
                msg: StoredMessage {
                    seq,
                    priority,
                    timestamp_ms,
                    expires_at_ms,
                    redelivery_count,
                    idempotency_key,
                    headers,
                    body,
                },
            }
        }
        TAG_ACK => Record::Ack {
            queue,
            seq: r.u64()?,
        },
        TAG_REDELIVERED => Record::Redelivered {
            queue,
            seq: r.u64()?,
            count: r.u32()?,
        },
        TAG_QUEUE_CLOSED => Record::QueueClosed {
            queue,
            closed: r.bool()?,
        },
        TAG_QUEUE_CREATED => Record::QueueCreated { queue },
        TAG_QUEUE_DELETED => Record::QueueDeleted { queue },
        _ => return Err(DecodeError::Malformed("unknown record tag")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_message(seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            priority: 7,
            timestamp_ms: 1_700_000_000_000 + seq,
            expires_at_ms: Some(1_700_000_060_000),
            redelivery_count: 2,
            idempotency_key: Some(format!("key-{seq}").into()),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-ünïcode".into(), "värde:\n".into()),
                (ByteStr::default(), ByteStr::default()),
            ],
            body: Bytes::from(vec![0u8, 1, 2, 255, b'\n', 0]),
        }
    }

    pub(crate) fn every_record() -> Vec<Record> {
        vec![
            Record::Enqueue {
                queue: "orders".into(),
                msg: sample_message(1),
            },
            Record::Enqueue {
                queue: "q".into(),
                msg: StoredMessage {
                    seq: u64::MAX,
                    priority: 0,
                    timestamp_ms: 0,
                    expires_at_ms: None,
                    redelivery_count: u32::MAX,
                    idempotency_key: None,
                    headers: vec![],
                    body: Bytes::new(),
                },
            },
            Record::Ack {
                queue: "orders".into(),
                seq: 1,
            },
            Record::Redelivered {
                queue: "orders".into(),
                seq: 9,
                count: 3,
            },
            Record::QueueClosed {
                queue: "orders".into(),
                closed: true,
            },
            Record::QueueClosed {
                queue: "orders".into(),
                closed: false,
            },
            Record::QueueCreated {
                queue: "auto.1".into(),
            },
            Record::QueueDeleted {
                queue: "auto.1".into(),
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in every_record() {
            let mut out = Vec::new();
            let mut sizes = Vec::new();
            encode_batch(&mut out, std::slice::from_ref(&r), &mut sizes);
            assert_eq!(sizes.len(), 1);
            assert_eq!(sizes[0] as usize, out.len() - 6, "size of {r:?}");
            assert_eq!(
                decode_payload(&out),
                Ok(Payload::Batch {
                    records: vec![r],
                    sizes
                })
            );
        }
        let all = every_record();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        encode_batch(&mut out, &all, &mut sizes);
        assert_eq!(
            decode_payload(&out),
            Ok(Payload::Batch {
                records: all,
                sizes
            })
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let qs = vec![
            SnapshotQueue {
                name: "a".into(),
                created: true,
                closed: false,
                next_seq: 5,
                keys: vec![("k1".into(), 7), ("".into(), 0)],
            },
            SnapshotQueue {
                name: "b".into(),
                created: false,
                closed: true,
                next_seq: 0,
                keys: vec![],
            },
        ];
        let mut out = Vec::new();
        encode_snapshot(&mut out, &qs);
        assert_eq!(decode_payload(&out), Ok(Payload::Snapshot(qs)));
    }

    #[test]
    fn truncated_or_extended_payloads_are_errors_not_panics() {
        let mut out = Vec::new();
        encode_batch(&mut out, &every_record(), &mut Vec::new());
        for cut in 0..out.len() {
            assert!(decode_payload(&out[..cut]).is_err(), "cut at {cut}");
        }
        out.push(0);
        assert!(decode_payload(&out).is_err());
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        assert_eq!(
            decode_payload(&[9, 1, 0, 0, 0, 0]),
            Err(DecodeError::Version(9))
        );
        assert!(matches!(
            decode_payload(&[FORMAT_VERSION, 77]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_send_record_is_encoded_as_the_enqueue_it_decodes_to() {
        let msg = std::sync::Arc::new(crate::message::Message {
            destination: "/queue/q".into(),
            headers: vec![("h".into(), "v:1".into()), ("h".into(), "dup".into())],
            body: Bytes::from_static(b"body\0bytes"),
            priority: 7,
            timestamp_ms: 123,
            expires_at_ms: Some(456),
            idempotency_key: Some("key".into()),
        });
        let send = Record::Send {
            queue: "q".into(),
            seq: 9,
            msg: msg.clone(),
        };
        let (mut out, mut sizes) = (Vec::new(), Vec::new());
        encode_batch(&mut out, std::slice::from_ref(&send), &mut sizes);
        let want = Record::Enqueue {
            queue: "q".into(),
            msg: StoredMessage {
                seq: 9,
                priority: 7,
                timestamp_ms: 123,
                expires_at_ms: Some(456),
                redelivery_count: 0,
                idempotency_key: Some("key".into()),
                headers: msg.headers.clone(),
                body: msg.body.clone(),
            },
        };
        let (mut out2, mut sizes2) = (Vec::new(), Vec::new());
        encode_batch(&mut out2, std::slice::from_ref(&want), &mut sizes2);
        assert_eq!(out, out2, "same bytes on disk");
        assert_eq!(sizes, sizes2);
        match decode_payload(&out) {
            Ok(Payload::Batch { records, .. }) => assert_eq!(records, vec![want]),
            other => panic!("{other:?}"),
        }
        assert!(estimate_batch(&[send]) >= out.len());
    }
}
