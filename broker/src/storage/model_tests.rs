//! Model-based property test: random operations and crash points against an in-memory model.
//!
//! The model applies records with its own (deliberately naive) code. After every reopen, the
//! recovered state must equal the model exactly. A "crash" drops the journal without closing
//! it and, when the last append was never awaited, may tear that entry at a random byte: the
//! model then forgets that batch (it was never acknowledged as durable).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use stompd_protocol::ByteStr;

use crate::storage::record::{self, Record, StoredMessage};
use crate::storage::segment;
use crate::storage::{FsyncPolicy, Journal, JournalOptions, Recovered, RecoveredQueue};

const QUEUES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        q: usize,
        priority: u8,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Several enqueues to `q` and an ack in `other`, as one batch (a transaction).
    Txn {
        q: usize,
        sends: u8,
        other: usize,
        pick: Index,
    },
    Ack {
        q: usize,
        pick: Index,
    },
    Redeliver {
        q: usize,
        pick: Index,
    },
    SetClosed {
        q: usize,
        closed: bool,
    },
    Create {
        q: usize,
    },
    Delete {
        q: usize,
    },
    Reopen,
    /// Drop without close; with `tear`, cut the last entry at `tear % len` if it was never
    /// awaited.
    Crash {
        tear: Option<u16>,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES.len();
    prop_oneof![
        8 => (
            q.clone(),
            0u8..10,
            prop::collection::vec(("[a-z-]{0,6}", "\\PC{0,8}"), 0..3),
            prop::collection::vec(any::<u8>(), 0..160),
        )
            .prop_map(|(q, priority, headers, body)| Op::Enqueue { q, priority, headers, body }),
        2 => (q.clone(), 1u8..4, q.clone(), any::<Index>())
            .prop_map(|(q, sends, other, pick)| Op::Txn { q, sends, other, pick }),
        8 => (q.clone(), any::<Index>()).prop_map(|(q, pick)| Op::Ack { q, pick }),
        2 => (q.clone(), any::<Index>()).prop_map(|(q, pick)| Op::Redeliver { q, pick }),
        1 => (q.clone(), any::<bool>()).prop_map(|(q, closed)| Op::SetClosed { q, closed }),
        1 => q.clone().prop_map(|q| Op::Create { q }),
        1 => q.prop_map(|q| Op::Delete { q }),
        1 => Just(Op::Reopen),
        2 => proptest::option::weighted(0.7, any::<u16>()).prop_map(|tear| Op::Crash { tear }),
    ]
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ModelQueue {
    created: bool,
    closed: bool,
    next_seq: u64,
    msgs: BTreeMap<u64, StoredMessage>,
    /// Every idempotency key enqueued (the journal remembers at most 10,000; tests stay below).
    keys: Vec<(ByteStr, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    queues: BTreeMap<String, ModelQueue>,
}

impl Model {
    fn apply(&mut self, batch: &[Record]) {
        for r in batch {
            match r {
                Record::Enqueue { queue, msg } => {
                    let q = self.queues.entry(queue.to_string()).or_default();
                    q.next_seq = q.next_seq.max(msg.seq + 1);
                    q.msgs.insert(msg.seq, msg.clone());
                    if let Some(k) = &msg.idempotency_key {
                        q.keys.push((k.clone(), msg.timestamp_ms));
                    }
                }
                Record::Send { .. } => unreachable!("the model appends Enqueue records only"),
                Record::Ack { queue, seq } => {
                    if let Some(q) = self.queues.get_mut(&**queue) {
                        q.msgs.remove(seq);
                    }
                }
                Record::Redelivered { queue, seq, count } => {
                    if let Some(m) = self
                        .queues
                        .get_mut(&**queue)
                        .and_then(|q| q.msgs.get_mut(seq))
                    {
                        m.redelivery_count = *count;
                    }
                }
                Record::QueueClosed { queue, closed } => {
                    self.queues.entry(queue.to_string()).or_default().closed = *closed;
                }
                Record::QueueCreated { queue } => {
                    self.queues.entry(queue.to_string()).or_default().created = true;
                }
                Record::QueueDeleted { queue } => {
                    self.queues.remove(&**queue);
                }
            }
        }
    }

    fn next_seq(&self, q: &str) -> u64 {
        self.queues.get(q).map_or(0, |q| q.next_seq)
    }

    fn pick(&self, q: &str, pick: &Index) -> Option<StoredMessage> {
        let msgs = &self.queues.get(q)?.msgs;
        if msgs.is_empty() {
            return None;
        }
        msgs.values().nth(pick.index(msgs.len())).cloned()
    }

    fn expected(&self) -> BTreeMap<String, RecoveredQueue> {
        self.queues
            .iter()
            .map(|(name, q)| {
                (
                    name.clone(),
                    RecoveredQueue {
                        messages: q.msgs.values().cloned().collect(),
                        paged: Vec::new(),
                        keys: key_set(&q.keys),
                        closed: q.closed,
                        created: q.created,
                        next_seq: q.next_seq,
                    },
                )
            })
            .collect()
    }

    /// The records an operation turns into, given the current state (empty = nothing to do).
    fn records_for(&self, op: &Op, counter: &mut u64) -> Vec<Record> {
        let mut message =
            |seq: u64, priority: u8, headers: Vec<(String, String)>, body: Vec<u8>| {
                *counter += 1;
                StoredMessage {
                    seq,
                    priority,
                    timestamp_ms: *counter,
                    expires_at_ms: counter.is_multiple_of(3).then_some(*counter * 10),
                    redelivery_count: 0,
                    idempotency_key: counter
                        .is_multiple_of(4)
                        .then(|| format!("idem-{counter}").into()),
                    headers: headers
                        .into_iter()
                        .map(|(n, v)| (n.into(), v.into()))
                        .collect(),
                    body: Bytes::from(body),
                }
            };
        match op {
            Op::Enqueue {
                q,
                priority,
                headers,
                body,
            } => {
                let queue = QUEUES[*q];
                let msg = message(
                    self.next_seq(queue),
                    *priority,
                    headers.clone(),
                    body.clone(),
                );
                vec![Record::Enqueue {
                    queue: queue.into(),
                    msg,
                }]
            }
            Op::Txn {
                q,
                sends,
                other,
                pick,
            } => {
                let queue = QUEUES[*q];
                let base = self.next_seq(queue);
                let mut batch: Vec<Record> = (0..u64::from(*sends))
                    .map(|i| Record::Enqueue {
                        queue: queue.into(),
                        msg: message(base + i, 4, vec![("tx".into(), "1".into())], vec![b'x'; 40]),
                    })
                    .collect();
                if let Some(m) = self.pick(QUEUES[*other], pick) {
                    batch.push(Record::Ack {
                        queue: QUEUES[*other].into(),
                        seq: m.seq,
                    });
                }
                batch
            }
            Op::Ack { q, pick } => self
                .pick(QUEUES[*q], pick)
                .map(|m| Record::Ack {
                    queue: QUEUES[*q].into(),
                    seq: m.seq,
                })
                .into_iter()
                .collect(),
            Op::Redeliver { q, pick } => self
                .pick(QUEUES[*q], pick)
                .map(|m| Record::Redelivered {
                    queue: QUEUES[*q].into(),
                    seq: m.seq,
                    count: m.redelivery_count + 1,
                })
                .into_iter()
                .collect(),
            Op::SetClosed { q, closed } => vec![Record::QueueClosed {
                queue: QUEUES[*q].into(),
                closed: *closed,
            }],
            Op::Create { q } => vec![Record::QueueCreated {
                queue: QUEUES[*q].into(),
            }],
            Op::Delete { q } => vec![Record::QueueDeleted {
                queue: QUEUES[*q].into(),
            }],
            Op::Reopen | Op::Crash { .. } => vec![],
        }
    }
}

fn segment_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(segment::parse_file_name))
        .collect();
    ids.sort_unstable();
    ids
}

fn last_segment(dir: &Path) -> Option<std::path::PathBuf> {
    let id = *segment_ids(dir).last()?;
    Some(dir.join(segment::file_name(id)))
}

/// Cuts the last entry of the last segment at `tear % len` if that entry is `batch`; returns
/// how many bytes of it were left.
fn tear_last_entry(dir: &Path, batch: &[Record], tear: u16) -> Option<usize> {
    let path = last_segment(dir)?;
    let bytes = std::fs::read(&path).unwrap();
    let &(offset, len) = segment::scan(&bytes, true).entries.last()?;
    let mut payload = Vec::new();
    record::encode_batch(&mut payload, batch, &mut Vec::new());
    if bytes[offset + segment::HEADER_LEN..offset + len] != payload[..] {
        return None; // something (compaction) was written after it: no tearing
    }
    let cut = offset + usize::from(tear) % len;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    Some(cut - offset)
}

/// Keys as a set: a message moved by compaction and then recovered only from its copy may be
/// remembered twice, which duplicate suppression does not mind.
fn key_set(keys: &[(ByteStr, u64)]) -> Vec<(ByteStr, u64)> {
    let mut v = keys.to_vec();
    v.sort();
    v.dedup();
    v
}

fn check(recovered: &Recovered, model: &Model, step: usize) -> Result<(), TestCaseError> {
    let mut got = recovered.queues.clone();
    for q in got.values_mut() {
        q.keys = key_set(&q.keys);
    }
    prop_assert_eq!(&got, &model.expected(), "after step {}", step);
    prop_assert_eq!(recovered.report.corrupt_entries_skipped, 0);
    Ok(())
}

fn run(ops: Vec<Op>, segment_bytes: u64, fsync: FsyncPolicy) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = JournalOptions::new(tmp.path());
    opts.segment_bytes = segment_bytes;
    opts.fsync = fsync;
    let (mut journal, recovered) = Journal::open(opts.clone()).unwrap();
    let mut model = Model::default();
    check(&recovered, &model, 0)?;
    let mut counter = 0;
    // The last append, if it was not awaited: its batch, the model before it and the
    // segments that existed before it.
    let mut unawaited: Option<(Vec<Record>, Model, Vec<u64>)> = None;

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Reopen => {
                journal.close().unwrap();
                let (j, r) = Journal::open(opts.clone()).unwrap();
                journal = j;
                check(&r, &model, step)?;
                prop_assert_eq!(r.report.truncated_bytes, 0);
                unawaited = None;
            }
            Op::Crash { tear } => {
                drop(journal);
                let mut partial = 0;
                if let (Some(tear), Some((batch, before, segments))) = (tear, unawaited.take()) {
                    // The writer deletes a segment only after syncing the head: if the entry
                    // made one deletable, it was durable and a real crash cannot tear it.
                    let now = segment_ids(tmp.path());
                    let synced = segments.iter().any(|id| !now.contains(id));
                    let torn = if synced {
                        None
                    } else {
                        tear_last_entry(tmp.path(), &batch, *tear)
                    };
                    if let Some(left) = torn {
                        model = before;
                        partial = left;
                    }
                }
                let (j, r) = Journal::open(opts.clone()).unwrap();
                journal = j;
                check(&r, &model, step)?;
                prop_assert_eq!(r.report.truncated_bytes, partial as u64);
            }
            op => {
                let batch = model.records_for(op, &mut counter);
                if batch.is_empty() {
                    continue;
                }
                let segments = segment_ids(tmp.path());
                let commit = journal.append(batch.clone());
                let next_tears = matches!(ops.get(step + 1), Some(Op::Crash { tear: Some(_) }));
                let before = model.clone();
                model.apply(&batch);
                if next_tears {
                    drop(commit); // never awaited: the crash may tear it
                    unawaited = Some((batch, before, segments));
                } else {
                    commit.wait().unwrap();
                    unawaited = None;
                }
            }
        }
    }
    journal.close().unwrap();
    let (journal, r) = Journal::open(opts).unwrap();
    check(&r, &model, ops.len())?;
    let live: usize = model.queues.values().map(|q| q.msgs.len()).sum();
    prop_assert_eq!(journal.stats().live_messages, live as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn journal_matches_model_across_crashes(
        ops in prop::collection::vec(op_strategy(), 1..70),
        segment_bytes in prop_oneof![Just(700u64), Just(1500), Just(3000), Just(1 << 20)],
        always in any::<bool>(),
    ) {
        let fsync = if always { FsyncPolicy::Always } else { FsyncPolicy::Never };
        run(ops, segment_bytes, fsync)?;
    }
}
