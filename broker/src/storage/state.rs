//! The state that replaying records builds: queues, their live messages and where each live
//! message's enqueue record sits on disk, plus per-segment liveness accounting.
//!
//! Recovery uses `State<StoredMessage>` (it needs the messages); the writer thread keeps a
//! `State<()>` (locations only, so memory does not grow with message sizes). Both apply records
//! with the same code, so what recovery rebuilds is what the writer tracked.

use std::collections::{BTreeMap, HashMap, VecDeque};

use std::fs::File;
use std::sync::Arc;
use stompd_protocol::ByteStr;

use crate::message::Message;
use crate::storage::record::{PagedMessage, QueueName, Record, SnapshotQueue, StoredMessage};

/// Where a live message's (latest) enqueue record is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MsgLoc {
    pub segment: u64,
    /// Offset of the entry (its header) in the segment.
    pub entry_offset: u64,
    /// Encoded size of the enqueue record.
    pub bytes: u32,
    /// Current redelivery count (from the enqueue record and later `Redelivered` records).
    pub redelivery_count: u32,
}

/// Where a record sits: its entry and its encoded size.
pub(crate) struct Loc {
    pub segment: u64,
    pub entry_offset: u64,
    pub bytes: u32,
}

/// What a state keeps per message besides its location.
pub(crate) trait Tracked: Sized {
    fn from_message(msg: StoredMessage) -> Self;
    /// From a [`Record::Send`] (appends only, so only the writer's index sees one).
    fn from_send(seq: u64, msg: &Message) -> Self {
        Self::from_message(StoredMessage {
            seq,
            priority: msg.priority,
            timestamp_ms: msg.timestamp_ms,
            expires_at_ms: msg.expires_at_ms,
            redelivery_count: 0,
            idempotency_key: msg.idempotency_key.clone(),
            headers: msg.headers.clone(),
            body: msg.body.clone(),
        })
    }
    fn set_redelivery_count(&mut self, count: u32);
    /// Bytes of body this holds in memory (counted against the replay's memory budget).
    fn resident(&self) -> u64 {
        0
    }
    /// Drops the body and headers, keeping what a queue needs to order and account for the
    /// message; they are read back from the journal when the message is due.
    fn page_out(&mut self) {}
}

impl Tracked for () {
    fn from_message(_: StoredMessage) -> Self {}
    fn from_send(_: u64, _: &Message) -> Self {}
    fn set_redelivery_count(&mut self, _: u32) {}
}

impl Tracked for StoredMessage {
    fn from_message(msg: StoredMessage) -> Self {
        msg
    }
    fn set_redelivery_count(&mut self, count: u32) {
        self.redelivery_count = count;
    }
}

/// A message as replay keeps it: whole while the memory budget allows, else only its metadata.
#[derive(Debug, Clone)]
pub(crate) enum ReplayMsg {
    Loaded(StoredMessage),
    Paged(PagedMessage),
}

impl Tracked for ReplayMsg {
    fn from_message(msg: StoredMessage) -> Self {
        ReplayMsg::Loaded(msg)
    }
    fn set_redelivery_count(&mut self, count: u32) {
        match self {
            ReplayMsg::Loaded(m) => m.redelivery_count = count,
            ReplayMsg::Paged(m) => m.redelivery_count = count,
        }
    }
    fn resident(&self) -> u64 {
        match self {
            ReplayMsg::Loaded(m) => m.body.len() as u64,
            ReplayMsg::Paged(_) => 0,
        }
    }
    fn page_out(&mut self) {
        if let ReplayMsg::Loaded(m) = self {
            *self = ReplayMsg::Paged(PagedMessage {
                seq: m.seq,
                priority: m.priority,
                timestamp_ms: m.timestamp_ms,
                expires_at_ms: m.expires_at_ms,
                redelivery_count: m.redelivery_count,
                idempotency_key: m.idempotency_key.take(),
                size: m.body.len() as u64,
            });
        }
    }
}

#[derive(Debug)]
pub(crate) struct Live<M> {
    pub loc: MsgLoc,
    pub msg: M,
}

#[derive(Debug)]
pub(crate) struct QueueState<M> {
    pub created: bool,
    pub closed: bool,
    pub next_seq: u64,
    pub msgs: BTreeMap<u64, Live<M>>,
    /// Idempotency keys of the latest enqueues (acked or not), oldest first, at most
    /// [`KEYS_REMEMBERED`]: carried by every segment's snapshot.
    pub keys: VecDeque<(ByteStr, u64)>,
}

/// Idempotency keys the journal remembers per queue across restarts.
pub(crate) const KEYS_REMEMBERED: usize = 10_000;

impl<M> Default for QueueState<M> {
    fn default() -> Self {
        QueueState {
            created: false,
            closed: false,
            next_seq: 0,
            msgs: BTreeMap::new(),
            keys: VecDeque::new(),
        }
    }
}

/// Liveness of one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegInfo {
    /// Bytes of the file that hold entries.
    pub size: u64,
    pub live_count: u64,
    pub live_bytes: u64,
    /// Entry offset -> number of live messages whose enqueue record is in that entry.
    pub live_entries: BTreeMap<u64, u32>,
}

#[derive(Debug)]
pub(crate) struct State<M> {
    pub queues: BTreeMap<QueueName, QueueState<M>>,
    pub segments: BTreeMap<u64, SegInfo>,
    pub live_total: u64,
    /// Body bytes held in memory by live messages, and the most it may be before newly
    /// replayed messages are paged out (recovery only; `u64::MAX` for no limit).
    pub resident: u64,
    pub budget: u64,
}

impl<M> Default for State<M> {
    fn default() -> Self {
        State {
            queues: BTreeMap::new(),
            segments: BTreeMap::new(),
            live_total: 0,
            resident: 0,
            budget: u64::MAX,
        }
    }
}

fn add_live(segments: &mut BTreeMap<u64, SegInfo>, live_total: &mut u64, loc: &MsgLoc) {
    let seg = segments.entry(loc.segment).or_default();
    seg.live_count += 1;
    seg.live_bytes += u64::from(loc.bytes);
    *seg.live_entries.entry(loc.entry_offset).or_default() += 1;
    *live_total += 1;
}

fn remove_live(segments: &mut BTreeMap<u64, SegInfo>, live_total: &mut u64, loc: &MsgLoc) {
    *live_total = live_total.saturating_sub(1);
    let Some(seg) = segments.get_mut(&loc.segment) else {
        return;
    };
    seg.live_count = seg.live_count.saturating_sub(1);
    seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(loc.bytes));
    if let Some(n) = seg.live_entries.get_mut(&loc.entry_offset) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            seg.live_entries.remove(&loc.entry_offset);
        }
    }
}

impl<M: Tracked> State<M> {
    /// Applies one record stored in the entry at `entry_offset` of `segment`; `bytes` is the
    /// record's encoded size.
    pub fn apply(&mut self, rec: Record, segment: u64, entry_offset: u64, bytes: u32) {
        match rec {
            Record::Send { queue, seq, msg } => {
                let key = msg.idempotency_key.clone().map(|k| (k, msg.timestamp_ms));
                let tracked = M::from_send(seq, &msg);
                let at = Loc {
                    segment,
                    entry_offset,
                    bytes,
                };
                self.apply_enqueue(queue, seq, 0, key, tracked, at);
            }
            Record::Enqueue { queue, msg } => {
                let key = msg.idempotency_key.clone().map(|k| (k, msg.timestamp_ms));
                let (seq, redelivery_count) = (msg.seq, msg.redelivery_count);
                let tracked = M::from_message(msg);
                let at = Loc {
                    segment,
                    entry_offset,
                    bytes,
                };
                self.apply_enqueue(queue, seq, redelivery_count, key, tracked, at);
            }
            Record::Ack { queue, seq } => {
                if let Some(old) = self
                    .queues
                    .get_mut(&*queue)
                    .and_then(|q| q.msgs.remove(&seq))
                {
                    self.resident = self.resident.saturating_sub(old.msg.resident());
                    remove_live(&mut self.segments, &mut self.live_total, &old.loc);
                }
            }
            Record::Redelivered { queue, seq, count } => {
                if let Some(live) = self
                    .queues
                    .get_mut(&*queue)
                    .and_then(|q| q.msgs.get_mut(&seq))
                {
                    live.loc.redelivery_count = count;
                    live.msg.set_redelivery_count(count);
                }
            }
            Record::QueueClosed { queue, closed } => {
                self.queues.entry(queue).or_default().closed = closed;
            }
            Record::QueueCreated { queue } => {
                self.queues.entry(queue).or_default().created = true;
            }
            Record::QueueDeleted { queue } => {
                if let Some(q) = self.queues.remove(&*queue) {
                    for live in q.msgs.values() {
                        self.resident = self.resident.saturating_sub(live.msg.resident());
                        remove_live(&mut self.segments, &mut self.live_total, &live.loc);
                    }
                }
            }
        }
    }

    fn apply_enqueue(
        &mut self,
        queue: QueueName,
        seq: u64,
        redelivery_count: u32,
        key: Option<(ByteStr, u64)>,
        mut msg: M,
        at: Loc,
    ) {
        let q = self.queues.entry(queue).or_default();
        // Seqs of a queue only grow in the journal: a lower one is a compaction copy of a
        // message whose key is already remembered.
        let is_new = seq >= q.next_seq;
        q.next_seq = q.next_seq.max(seq.saturating_add(1));
        let loc = MsgLoc {
            segment: at.segment,
            entry_offset: at.entry_offset,
            bytes: at.bytes,
            redelivery_count,
        };
        add_live(&mut self.segments, &mut self.live_total, &loc);
        // Replay order is roughly delivery order: the oldest messages stay in memory, the rest
        // wait on disk until they are due.
        if self.resident.saturating_add(msg.resident()) > self.budget {
            msg.page_out();
        }
        self.resident += msg.resident();
        let live = Live { loc, msg };
        match q.msgs.insert(seq, live) {
            Some(old) => {
                // A compaction copy replacing its original.
                self.resident = self.resident.saturating_sub(old.msg.resident());
                remove_live(&mut self.segments, &mut self.live_total, &old.loc);
            }
            None if is_new => {
                if let Some(key) = key {
                    if q.keys.len() >= KEYS_REMEMBERED {
                        q.keys.pop_front();
                    }
                    q.keys.push_back(key);
                }
            }
            None => {}
        }
    }

    /// Applies a snapshot entry: queue-level state is taken from it (`next_seq` never goes
    /// back), messages are untouched.
    pub fn apply_snapshot(&mut self, queues: Vec<SnapshotQueue>) {
        for s in queues {
            let q = self.queues.entry(s.name.into()).or_default();
            q.created = s.created;
            q.closed = s.closed;
            q.next_seq = q.next_seq.max(s.next_seq);
            // The snapshot holds every key remembered when its segment began.
            if !s.keys.is_empty() {
                q.keys = s.keys.into();
            }
        }
    }

    /// Queue-level state, for the snapshot entry that starts a new segment.
    pub fn snapshot(&self) -> Vec<SnapshotQueue> {
        self.queues
            .iter()
            .map(|(name, q)| SnapshotQueue {
                name: name.to_string(),
                created: q.created,
                closed: q.closed,
                next_seq: q.next_seq,
                keys: q.keys.iter().cloned().collect(),
            })
            .collect()
    }

    /// Looks up a live message's location.
    pub fn loc(&self, queue: &str, seq: u64) -> Option<&MsgLoc> {
        self.queues
            .get(queue)
            .and_then(|q| q.msgs.get(&seq))
            .map(|l| &l.loc)
    }
}

/// The writer's index, shared (behind a mutex) with the readers of paged-out messages.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub state: State<()>,
    /// Read handles on segments, opened by the first read; dropped when the segment is deleted
    /// (a reader that already cloned one still reads the unlinked file).
    pub files: HashMap<u64, Arc<File>>,
}
