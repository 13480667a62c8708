//! A queue's logic as a plain synchronous type: no sockets, no runtime, the clock passed in.
//!
//! Invariants:
//! - every message is in exactly one place: `ready` (per priority, sorted by seq) or `in_flight`
//!   (delivered to one consumer, waiting for ACK/NACK); leaving both means it is gone for good and
//!   is reported in [`Effects::removed`] so the journal can record it;
//! - delivery order is highest priority first, then lowest seq (FIFO per priority), and a message
//!   that comes back is put back at its original place;
//! - a consumer receives a message only while it has credit (`in_flight < window`), so what the
//!   queue hands a slow consumer is bounded and the others keep being served;
//! - nothing here blocks or allocates per consumer per message beyond the delivery itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use stompd_config::{Overflow, QueuePolicy};

use stompd_protocol::ByteStr;

use crate::message::{Message, SharedMessage, MAX_PRIORITY};
use crate::selector::Selector;

pub type ConsumerId = u64;

/// Priority levels, 0..=9.
pub const LEVELS: usize = MAX_PRIORITY as usize + 1;

/// A stored message and how often it has been handed out and come back.
///
/// The message itself may be paged out (`msg` is `None`): a persistent queue over the broker's
/// memory budget leaves headers and body in the journal and reads them back when the message is
/// due. What ordering, limits and expiry need stays here.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    pub msg: Option<SharedMessage>,
    pub redeliveries: u32,
    pub priority: u8,
    /// Body bytes, the unit of `max_bytes`.
    pub size: u64,
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    pub fn new(seq: u64, msg: SharedMessage, redeliveries: u32) -> Entry {
        Entry {
            seq,
            redeliveries,
            priority: msg.priority.min(MAX_PRIORITY),
            size: msg.size(),
            expires_at_ms: msg.expires_at_ms,
            msg: Some(msg),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_at_ms, Some(at) if at <= now_ms)
    }

    fn is_paged(&self) -> bool {
        self.msg.is_none()
    }
}

/// Reads a paged-out message back (from the journal), by seq.
pub type Loader = Arc<dyn Fn(u64) -> Option<SharedMessage> + Send + Sync>;

/// Retry delay for a paged-out message that could not be read back.
const LOAD_RETRY_MS: u64 = 1000;

/// A message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub seq: u64,
    pub msg: SharedMessage,
    /// Number of earlier deliveries that were not acknowledged.
    pub redelivery_count: u32,
}

impl Delivery {
    pub fn redelivered(&self) -> bool {
        self.redelivery_count > 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    Nack,
    Expired,
    MaxRedeliveries,
    Overflow,
    /// Moved out by an operator closing the queue with `dead_letter=true`.
    QueueClosed,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Nack => "nack",
            DeadReason::Expired => "expired",
            DeadReason::MaxRedeliveries => "max-redeliveries",
            DeadReason::Overflow => "overflow",
            DeadReason::QueueClosed => "queue-closed",
        }
    }
}

#[derive(Debug)]
pub struct DeadLetter {
    pub entry: Entry,
    pub reason: DeadReason,
}

/// What an operation did besides changing the state, for the thin owner around the state to carry
/// out: hand deliveries to sessions, move dead letters, write journal records.
#[derive(Debug, Default)]
pub struct Effects {
    pub deliveries: Vec<(ConsumerId, Delivery)>,
    /// Messages that must go to the dead-letter queue (or be dropped and logged when there is none).
    pub dead: Vec<DeadLetter>,
    /// Seqs that left the queue for good (acked, auto-acked on delivery, expired, dead-lettered,
    /// dropped): each becomes an ack record in the journal.
    pub removed: Vec<u64>,
    /// (seq, new redelivery count) of messages that came back to ready.
    pub redelivered: Vec<(u64, u32)>,
    /// (consumer, seq) of deliveries taken back because they were not acknowledged within the
    /// queue's `ack_timeout`: the consumer's session is told, the connection stays up.
    pub timed_out: Vec<(ConsumerId, u64)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
            && self.dead.is_empty()
            && self.removed.is_empty()
            && self.redelivered.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Messages(u64),
    Bytes(u64),
    /// `max_messages_per_priority` at this priority.
    PriorityMessages {
        priority: u8,
        limit: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("queue is closed to producers")]
    Closed,
    #[error("queue is full")]
    Full(Limit),
}

#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub id: ConsumerId,
    /// Maximum messages handed out and not yet acknowledged. Auto-ack subscriptions are acked by
    /// their session once the MESSAGE has been written to the socket, so a message still in a
    /// dead connection's buffer comes back instead of being lost.
    pub window: u32,
    /// Maximum body bytes handed out and not yet acknowledged (Artemis' `consumer-window-size`);
    /// one message is always allowed, however large. `u64::MAX` for no limit.
    pub window_bytes: u64,
    /// Only messages this selector accepts are handed to the consumer.
    pub selector: Option<Arc<Selector>>,
}

impl ConsumerSpec {
    /// A consumer with a message window only.
    pub fn new(id: ConsumerId, window: u32) -> ConsumerSpec {
        ConsumerSpec {
            id,
            window,
            window_bytes: u64::MAX,
            selector: None,
        }
    }
}

#[derive(Debug)]
struct Consumer {
    spec: ConsumerSpec,
    in_flight: u32,
    in_flight_bytes: u64,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.in_flight < self.spec.window
            && (self.in_flight == 0 || self.in_flight_bytes < self.spec.window_bytes)
    }

    fn accepts(&self, msg: &Message) -> bool {
        self.spec
            .selector
            .as_ref()
            .is_none_or(|s| crate::topic::matches(s, msg))
    }
}

/// Ready messages a dispatch with selectors examines at most: messages no consumer selects
/// stay in the queue, and must not make every dispatch rescan all of them.
const SELECTOR_SCAN_LIMIT: usize = 10_000;

#[derive(Debug)]
struct InFlight {
    entry: Entry,
    consumer: ConsumerId,
    /// Ack timeout, epoch ms.
    deadline: Option<u64>,
}

/// Counters since the queue was created (or the broker started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub enqueued: u64,
    pub delivered: u64,
    pub acked: u64,
    pub redelivered: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    /// Of `bytes`, what is held in memory (the rest is paged out to the journal).
    pub resident_bytes: u64,
    pub ready: u64,
    pub in_flight: u64,
    pub consumers: u64,
    pub closed: bool,
    pub counters: Counters,
}

#[derive(Debug)]
pub struct QueueState {
    policy: QueuePolicy,
    next_seq: u64,
    /// Index = priority; each level sorted by seq.
    ready: [VecDeque<Entry>; LEVELS],
    ready_count: u64,
    ready_bytes: u64,
    /// (expires_at_ms, seq) of ready messages that expire.
    expiry: BTreeSet<(u64, u64)>,
    /// Messages waiting out a redelivery delay: (due_ms, seq) -> entry.
    delayed: BTreeMap<(u64, u64), Entry>,
    delayed_bytes: u64,
    /// Idempotency keys seen within the dedup window, oldest first.
    dedup_order: VecDeque<(ByteStr, u64)>,
    dedup: HashSet<ByteStr>,
    in_flight: HashMap<u64, InFlight>,
    in_flight_bytes: u64,
    /// Bytes of ready and delayed messages that are paged out (never in flight).
    paged_bytes: u64,
    loader: LoaderSlot,
    consumers: Vec<Consumer>,
    /// Round-robin position among consumers.
    cursor: usize,
    closed: bool,
    counters: Counters,
}

impl QueueState {
    pub fn new(policy: QueuePolicy) -> Self {
        let closed = policy.closed;
        QueueState {
            policy,
            next_seq: 1,
            ready: Default::default(),
            ready_count: 0,
            ready_bytes: 0,
            expiry: BTreeSet::new(),
            delayed: BTreeMap::new(),
            delayed_bytes: 0,
            dedup_order: VecDeque::new(),
            dedup: HashSet::new(),
            in_flight: HashMap::new(),
            in_flight_bytes: 0,
            paged_bytes: 0,
            loader: LoaderSlot(None),
            consumers: Vec::new(),
            cursor: 0,
            closed,
            counters: Counters::default(),
        }
    }

    pub fn policy(&self) -> &QueuePolicy {
        &self.policy
    }

    /// Lets the state read paged-out messages back; without one it never pages out.
    pub fn set_loader(&mut self, loader: Loader) {
        self.loader = LoaderSlot(Some(loader));
    }

    /// Body bytes held in memory (everything stored minus what is paged out).
    pub fn resident_bytes(&self) -> u64 {
        self.bytes().saturating_sub(self.paged_bytes)
    }

    /// Seqs of in-memory ready messages worth about `want` bytes, the ones due last first:
    /// lowest priority first, newest first within a priority.
    pub fn page_out_candidates(&self, want: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut bytes = 0;
        if self.loader.0.is_none() {
            return out;
        }
        for level in &self.ready {
            for e in level.iter().rev() {
                if bytes >= want {
                    return out;
                }
                if e.is_paged() {
                    continue;
                }
                bytes += e.size;
                out.push(e.seq);
            }
        }
        out
    }

    /// Pages out the ready messages `seqs` (that the journal holds). Returns the bytes freed.
    pub fn page_out(&mut self, seqs: &[u64]) -> u64 {
        let mut freed = 0;
        for &seq in seqs {
            for level in self.ready.iter_mut() {
                if let Some(i) = find_seq(level, seq) {
                    let e = &mut level[i];
                    if e.msg.take().is_some() {
                        freed += e.size;
                    }
                    break;
                }
            }
        }
        self.paged_bytes += freed;
        freed
    }

    /// The message of `e`, read back if it is paged out.
    fn load(&self, e: &Entry) -> Option<SharedMessage> {
        match &e.msg {
            Some(m) => Some(m.clone()),
            None => self.loader.0.as_ref().and_then(|l| l(e.seq)),
        }
    }

    /// A reloaded configuration; the messages stay.
    pub fn set_policy(&mut self, policy: QueuePolicy) {
        self.policy = policy;
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn set_closed(&mut self, closed: bool) {
        self.closed = closed;
    }

    pub fn depth(&self) -> u64 {
        self.ready_count + self.in_flight.len() as u64 + self.delayed.len() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.ready_bytes + self.in_flight_bytes + self.delayed_bytes
    }

    /// Consumers currently attached.
    pub fn consumer_ids(&self) -> Vec<ConsumerId> {
        self.consumers.iter().map(|c| c.spec.id).collect()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.depth(),
            bytes: self.bytes(),
            resident_bytes: self.resident_bytes(),
            ready: self.ready_count,
            in_flight: self.in_flight.len() as u64,
            consumers: self.consumers.len() as u64,
            closed: self.closed,
            counters: self.counters,
        }
    }

    /// Checks closed state and limits without changing anything, so a caller can journal first.
    /// Returns the seq the message will get.
    pub fn admit(&self, size: u64) -> Result<u64, EnqueueError> {
        if self.closed {
            return Err(EnqueueError::Closed);
        }
        match self.policy.overflow {
            Overflow::DropOldest => {
                // A message that could never fit is refused rather than emptying the queue for it.
                if self.policy.max_bytes > 0 && size > self.policy.max_bytes {
                    return Err(EnqueueError::Full(Limit::Bytes(self.policy.max_bytes)));
                }
            }
            Overflow::Reject | Overflow::Block => {
                if let Some(limit) = self.over_limit(1, size) {
                    return Err(EnqueueError::Full(limit));
                }
            }
        }
        Ok(self.next_seq)
    }

    /// Like [`QueueState::admit`] for several messages at once (a transaction's SENDs).
    /// `per_priority[p]`: how many of the messages have priority `p`.
    pub fn admit_batch(
        &self,
        messages: u64,
        bytes: u64,
        per_priority: &[u64; LEVELS],
    ) -> Result<(), EnqueueError> {
        if self.closed {
            return Err(EnqueueError::Closed);
        }
        if self.policy.overflow != Overflow::DropOldest {
            if let Some(limit) = self.over_limit(messages, bytes) {
                return Err(EnqueueError::Full(limit));
            }
            let limit = self.policy.max_messages_per_priority;
            for (p, &n) in per_priority.iter().enumerate() {
                if limit > 0 && n > 0 && self.ready[p].len() as u64 + n > limit {
                    return Err(EnqueueError::Full(Limit::PriorityMessages {
                        priority: p as u8,
                        limit,
                    }));
                }
            }
        }
        Ok(())
    }

    fn over_limit(&self, extra_messages: u64, extra_bytes: u64) -> Option<Limit> {
        let p = &self.policy;
        if p.max_messages > 0 && self.depth() + extra_messages > p.max_messages {
            return Some(Limit::Messages(p.max_messages));
        }
        if p.max_bytes > 0 && self.bytes() + extra_bytes > p.max_bytes {
            return Some(Limit::Bytes(p.max_bytes));
        }
        None
    }

    /// Accepts a message: limits and overflow policy, then delivery to consumers with credit.
    pub fn enqueue(
        &mut self,
        msg: SharedMessage,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<Option<u64>, EnqueueError> {
        let size = msg.size();
        self.admit(size)?;
        if let Some(key) = &msg.idempotency_key {
            if self.is_duplicate(key, now_ms) {
                return Ok(None);
            }
        }
        let level = msg.priority.min(MAX_PRIORITY) as usize;
        let per_level = self.policy.max_messages_per_priority;
        if per_level > 0 && self.ready[level].len() as u64 >= per_level {
            if self.policy.overflow != Overflow::DropOldest {
                return Err(EnqueueError::Full(Limit::PriorityMessages {
                    priority: level as u8,
                    limit: per_level,
                }));
            }
            while self.ready[level].len() as u64 >= per_level {
                let Some(oldest) = self.ready[level].pop_front() else {
                    break;
                };
                self.unlink_ready(&oldest);
                self.counters.dropped += 1;
                fx.removed.push(oldest.seq);
                fx.dead.push(DeadLetter {
                    entry: oldest,
                    reason: DeadReason::Overflow,
                });
            }
        }
        if self.policy.overflow == Overflow::DropOldest {
            while let Some(limit) = self.over_limit(1, size) {
                let Some(oldest) = self.pop_oldest_ready() else {
                    // Everything stored is in flight: nothing can be dropped to make room.
                    return Err(EnqueueError::Full(limit));
                };
                self.counters.dropped += 1;
                fx.removed.push(oldest.seq);
                fx.dead.push(DeadLetter {
                    entry: oldest,
                    reason: DeadReason::Overflow,
                });
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counters.enqueued += 1;
        if let Some(key) = &msg.idempotency_key {
            self.remember_key(key.clone(), now_ms);
        }
        self.insert_ready(Entry::new(seq, msg, 0));
        self.dispatch(now_ms, fx);
        Ok(Some(seq))
    }

    /// Whether `key` was seen within the dedup window (count and time), pruning the window.
    fn is_duplicate(&mut self, key: &ByteStr, now_ms: u64) -> bool {
        let count = self.policy.dedup_window;
        if count == 0 {
            return false;
        }
        let max_age = self.policy.dedup_window_time.map(|d| d.as_millis() as u64);
        while let Some((k, at)) = self.dedup_order.front() {
            let too_many = self.dedup_order.len() as u64 > count;
            let too_old = max_age.is_some_and(|age| now_ms.saturating_sub(*at) > age);
            if !(too_many || too_old) {
                break;
            }
            self.dedup.remove(k);
            self.dedup_order.pop_front();
        }
        self.dedup.contains(key)
    }

    fn remember_key(&mut self, key: ByteStr, now_ms: u64) {
        if self.policy.dedup_window == 0 {
            return;
        }
        if self.dedup.insert(key.clone()) {
            self.dedup_order.push_back((key, now_ms));
        }
    }

    /// Puts back a message recovered from the journal at start-up (no limits, no dispatch), with
    /// its idempotency key and enqueue time for duplicate suppression.
    pub fn restore(&mut self, entry: Entry, key: Option<(ByteStr, u64)>) {
        self.next_seq = self.next_seq.max(entry.seq + 1);
        if let Some((key, at)) = key {
            self.remember_key(key, at);
        }
        self.insert_ready(entry);
    }

    /// Remembers an idempotency key recovered from the journal (oldest first), acknowledged
    /// messages' keys included, so duplicate suppression survives a restart.
    pub fn restore_key(&mut self, key: ByteStr, at_ms: u64) {
        self.remember_key(key, at_ms);
    }

    /// Raises the next seq, so seqs never repeat across restarts even when the queue was empty.
    pub fn restore_next_seq(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec, now_ms: u64, fx: &mut Effects) {
        self.consumers.push(Consumer {
            spec,
            in_flight: 0,
            in_flight_bytes: 0,
        });
        self.dispatch(now_ms, fx);
    }

    /// Removes a consumer; everything it had not acknowledged goes back to ready, marked redelivered.
    pub fn remove_consumer(&mut self, id: ConsumerId, now_ms: u64, fx: &mut Effects) {
        let Some(pos) = self.consumers.iter().position(|c| c.spec.id == id) else {
            return;
        };
        self.consumers.remove(pos);
        if self.cursor > pos {
            self.cursor -= 1;
        }
        let mut seqs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.consumer == id)
            .map(|(seq, _)| *seq)
            .collect();
        seqs.sort_unstable();
        for seq in seqs {
            if let Some(f) = self.take_in_flight(seq) {
                self.requeue(f.entry, now_ms, fx);
            }
        }
        self.dispatch(now_ms, fx);
    }

    /// Acknowledges messages handed to `consumer`. Returns how many were found in flight to it.
    pub fn ack(
        &mut self,
        consumer: ConsumerId,
        seqs: &[u64],
        now_ms: u64,
        fx: &mut Effects,
    ) -> usize {
        let mut found = 0;
        for &seq in seqs {
            if self
                .in_flight
                .get(&seq)
                .is_some_and(|f| f.consumer == consumer)
            {
                self.take_in_flight(seq);
                self.counters.acked += 1;
                fx.removed.push(seq);
                found += 1;
            }
        }
        if found > 0 {
            self.dispatch(now_ms, fx);
        }
        found
    }

    /// Negative acknowledgement: back to ready (or dead-lettered/dropped, as the queue's NACK
    /// policy and `requeue` say).
    pub fn nack(
        &mut self,
        consumer: ConsumerId,
        seqs: &[u64],
        requeue: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) -> usize {
        use stompd_config::NackPolicy;
        let mut found = 0;
        for &seq in seqs {
            if self
                .in_flight
                .get(&seq)
                .is_none_or(|f| f.consumer != consumer)
            {
                continue;
            }
            let Some(f) = self.take_in_flight(seq) else {
                continue;
            };
            found += 1;
            let policy = if requeue {
                self.policy.nack
            } else {
                NackPolicy::DeadLetter
            };
            match policy {
                NackPolicy::Requeue => self.requeue(f.entry, now_ms, fx),
                NackPolicy::DeadLetter => self.dead_letter(f.entry, DeadReason::Nack, fx),
                NackPolicy::Drop => {
                    self.counters.dropped += 1;
                    fx.removed.push(f.entry.seq);
                }
            }
        }
        if found > 0 {
            self.dispatch(now_ms, fx);
        }
        found
    }

    /// Time-driven work: expiry anywhere in the queue, redelivery delays that are over, and
    /// deliveries past the ack timeout.
    pub fn tick(&mut self, now_ms: u64, fx: &mut Effects) {
        self.expire(now_ms, fx);
        let mut promoted = false;
        while let Some((&(due, _), _)) = self.delayed.first_key_value() {
            if due > now_ms {
                break;
            }
            if let Some((_, entry)) = self.delayed.pop_first() {
                self.delayed_bytes -= entry.size;
                if entry.is_paged() {
                    self.paged_bytes -= entry.size;
                }
                self.insert_ready(entry);
                promoted = true;
            }
        }
        if self.policy.ack_timeout.is_some() {
            let mut late: Vec<(u64, ConsumerId)> = self
                .in_flight
                .iter()
                .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now_ms))
                .map(|(seq, f)| (*seq, f.consumer))
                .collect();
            late.sort_unstable();
            for (seq, consumer) in late {
                if let Some(f) = self.take_in_flight(seq) {
                    fx.timed_out.push((consumer, seq));
                    self.requeue(f.entry, now_ms, fx);
                    promoted = true;
                }
            }
        }
        if promoted {
            self.dispatch(now_ms, fx);
        }
    }

    /// Removes expired ready messages wherever they are, not only at the head.
    pub fn expire(&mut self, now_ms: u64, fx: &mut Effects) {
        while let Some(&(at, seq)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_first();
            if let Some(entry) = self.remove_ready_seq(seq) {
                self.counters.expired += 1;
                self.dead_letter(entry, DeadReason::Expired, fx);
            }
        }
    }

    /// Earliest expiry among ready messages, for the owner's timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Whether [`QueueState::tick`] has anything to do soon.
    pub fn has_timed_work(&self) -> bool {
        !self.expiry.is_empty()
            || !self.delayed.is_empty()
            || (self.policy.ack_timeout.is_some() && !self.in_flight.is_empty())
    }

    /// Ready messages in delivery order, without consuming them.
    pub fn browse(&self, now_ms: u64, limit: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        for level in self.ready.iter().rev() {
            for e in level {
                if out.len() >= limit {
                    return out;
                }
                if !e.is_expired(now_ms) {
                    if let Some(msg) = self.load(e) {
                        out.push(Delivery {
                            seq: e.seq,
                            msg,
                            redelivery_count: e.redeliveries,
                        });
                    }
                }
            }
        }
        out
    }

    /// One message by seq, ready or in flight.
    pub fn peek(&self, seq: u64) -> Option<Delivery> {
        let e = match self.in_flight.get(&seq) {
            Some(f) => &f.entry,
            None => self
                .ready
                .iter()
                .find_map(|level| find_seq(level, seq).map(|i| &level[i]))?,
        };
        Some(Delivery {
            seq,
            msg: self.load(e)?,
            redelivery_count: e.redeliveries,
        })
    }

    /// Removes a ready message chosen by an operator or a browser's ACK.
    pub fn remove(&mut self, seq: u64, fx: &mut Effects) -> bool {
        match self.remove_ready_seq(seq) {
            Some(_) => {
                self.counters.acked += 1;
                fx.removed.push(seq);
                true
            }
            None => false,
        }
    }

    /// Dead-letters every ready and delayed message with reason `queue-closed` (in-flight ones
    /// stay with their consumers). Returns how many.
    pub fn evacuate(&mut self, fx: &mut Effects) -> u64 {
        let mut n = 0;
        for p in (0..LEVELS).rev() {
            while let Some(entry) = self.ready[p].pop_front() {
                self.unlink_ready(&entry);
                self.dead_letter(entry, DeadReason::QueueClosed, fx);
                n += 1;
            }
        }
        for (_, entry) in std::mem::take(&mut self.delayed) {
            self.dead_letter(entry, DeadReason::QueueClosed, fx);
            n += 1;
        }
        self.delayed_bytes = 0;
        self.paged_bytes = 0;
        n
    }

    /// Removes every ready message; in-flight ones stay with their consumers.
    pub fn purge(&mut self, fx: &mut Effects) -> u64 {
        let mut n = 0;
        for level in self.ready.iter_mut() {
            for e in level.drain(..) {
                fx.removed.push(e.seq);
                n += 1;
            }
        }
        for (_, e) in std::mem::take(&mut self.delayed) {
            fx.removed.push(e.seq);
            n += 1;
        }
        self.delayed_bytes = 0;
        self.paged_bytes = 0;
        self.ready_count = 0;
        self.ready_bytes = 0;
        self.expiry.clear();
        self.counters.dropped += n;
        n
    }

    /// Hands ready messages to consumers with credit, round-robin.
    pub fn dispatch(&mut self, now_ms: u64, fx: &mut Effects) {
        if self.consumers.is_empty() {
            return;
        }
        if self.consumers.iter().any(|c| c.spec.selector.is_some()) {
            self.dispatch_selective(now_ms, fx);
            return;
        }
        while self.ready_count > 0 {
            let Some(ci) = self.next_consumer_with_credit() else {
                break;
            };
            let Some(entry) = self.pop_ready(now_ms, fx) else {
                break;
            };
            let msg = match self.load(&entry) {
                Some(m) => m,
                None => {
                    // A read error (logged by the loader): the message stays stored and is
                    // tried again later rather than blocking the queue.
                    self.delay(entry, now_ms.saturating_add(LOAD_RETRY_MS));
                    continue;
                }
            };
            self.hand_out(ci, entry, msg, now_ms, fx);
        }
    }

    /// Dispatch when some consumer has a selector: each ready message, in delivery order, goes
    /// to the next consumer (round robin) with credit that selects it; a message nobody selects
    /// stays where it is. Examines at most [`SELECTOR_SCAN_LIMIT`] messages per call.
    fn dispatch_selective(&mut self, now_ms: u64, fx: &mut Effects) {
        let mut scanned = 0;
        for p in (0..LEVELS).rev() {
            let mut i = 0;
            while i < self.ready[p].len() {
                if scanned >= SELECTOR_SCAN_LIMIT || !self.consumers.iter().any(|c| c.has_credit())
                {
                    return;
                }
                scanned += 1;
                if self.ready[p][i].is_expired(now_ms) {
                    if let Some(entry) = self.ready[p].remove(i) {
                        self.unlink_ready(&entry);
                        self.counters.expired += 1;
                        self.dead_letter(entry, DeadReason::Expired, fx);
                    }
                    continue;
                }
                let Some(msg) = self.load(&self.ready[p][i]) else {
                    if let Some(entry) = self.ready[p].remove(i) {
                        self.unlink_ready(&entry);
                        self.delay(entry, now_ms.saturating_add(LOAD_RETRY_MS));
                    }
                    continue;
                };
                let n = self.consumers.len();
                let chosen = (0..n)
                    .map(|k| (self.cursor + k) % n)
                    .find(|&k| self.consumers[k].has_credit() && self.consumers[k].accepts(&msg));
                match chosen {
                    Some(ci) => {
                        if let Some(entry) = self.ready[p].remove(i) {
                            self.unlink_ready(&entry);
                            self.hand_out(ci, entry, msg, now_ms, fx);
                        }
                    }
                    None => i += 1,
                }
            }
        }
    }

    /// Hands `entry` (its message loaded as `msg`) to consumer `ci`.
    fn hand_out(
        &mut self,
        ci: usize,
        mut entry: Entry,
        msg: SharedMessage,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        if entry.msg.is_none() {
            // Read back from the journal: in flight it stays in memory.
            entry.msg = Some(msg.clone());
        }
        let consumer = &mut self.consumers[ci];
        consumer.in_flight += 1;
        consumer.in_flight_bytes += entry.size;
        let id = consumer.spec.id;
        self.cursor = (ci + 1) % self.consumers.len();
        self.counters.delivered += 1;
        let delivery = Delivery {
            seq: entry.seq,
            msg,
            redelivery_count: entry.redeliveries,
        };
        self.in_flight_bytes += entry.size;
        let deadline = self
            .policy
            .ack_timeout
            .map(|t| now_ms.saturating_add(t.as_millis() as u64));
        self.in_flight.insert(
            entry.seq,
            InFlight {
                entry,
                consumer: id,
                deadline,
            },
        );
        fx.deliveries.push((id, delivery));
    }

    fn next_consumer_with_credit(&self) -> Option<usize> {
        let n = self.consumers.len();
        (0..n)
            .map(|i| (self.cursor + i) % n)
            .find(|&i| self.consumers[i].has_credit())
    }

    fn take_in_flight(&mut self, seq: u64) -> Option<InFlight> {
        let f = self.in_flight.remove(&seq)?;
        self.in_flight_bytes -= f.entry.size;
        if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == f.consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.in_flight_bytes = c.in_flight_bytes.saturating_sub(f.entry.size);
        }
        Some(f)
    }

    fn requeue(&mut self, mut entry: Entry, now_ms: u64, fx: &mut Effects) {
        entry.redeliveries += 1;
        self.counters.redelivered += 1;
        let max = self.policy.max_redeliveries;
        if max > 0 && entry.redeliveries > max {
            self.dead_letter(entry, DeadReason::MaxRedeliveries, fx);
        } else if entry.is_expired(now_ms) {
            self.counters.expired += 1;
            self.dead_letter(entry, DeadReason::Expired, fx);
        } else {
            let delay = self.policy.redelivery_delay_for(entry.redeliveries);
            if delay.is_zero() {
                fx.redelivered.push((entry.seq, entry.redeliveries));
                self.insert_ready(entry);
            } else {
                // Counted in depth and bytes while it waits; its new count is journaled now, so a
                // restart during the delay keeps it (the message is then ready at once).
                fx.redelivered.push((entry.seq, entry.redeliveries));
                let due = now_ms.saturating_add(delay.as_millis() as u64);
                self.delay(entry, due);
            }
        }
    }

    /// Parks `entry` until `due` (counted in depth and bytes meanwhile).
    fn delay(&mut self, entry: Entry, due: u64) {
        self.delayed_bytes += entry.size;
        if entry.is_paged() {
            self.paged_bytes += entry.size;
        }
        self.delayed.insert((due, entry.seq), entry);
    }

    fn dead_letter(&mut self, entry: Entry, reason: DeadReason, fx: &mut Effects) {
        self.counters.dead_lettered += 1;
        fx.removed.push(entry.seq);
        fx.dead.push(DeadLetter { entry, reason });
    }

    fn insert_ready(&mut self, entry: Entry) {
        let level = &mut self.ready[entry.priority.min(MAX_PRIORITY) as usize];
        self.ready_count += 1;
        self.ready_bytes += entry.size;
        if entry.is_paged() {
            self.paged_bytes += entry.size;
        }
        if let Some(at) = entry.expires_at_ms {
            self.expiry.insert((at, entry.seq));
        }
        // Almost always an append; a returning message goes back to its original place.
        if level.back().is_none_or(|last| last.seq < entry.seq) {
            level.push_back(entry);
        } else {
            let pos = level.partition_point(|e| e.seq < entry.seq);
            level.insert(pos, entry);
        }
    }

    fn unlink_ready(&mut self, entry: &Entry) {
        self.ready_count -= 1;
        self.ready_bytes -= entry.size;
        if entry.is_paged() {
            self.paged_bytes -= entry.size;
        }
        if let Some(at) = entry.expires_at_ms {
            self.expiry.remove(&(at, entry.seq));
        }
    }

    /// Next message to deliver; expired ones met on the way are dead-lettered.
    fn pop_ready(&mut self, now_ms: u64, fx: &mut Effects) -> Option<Entry> {
        for p in (0..LEVELS).rev() {
            while let Some(entry) = self.ready[p].pop_front() {
                self.unlink_ready(&entry);
                if entry.is_expired(now_ms) {
                    self.counters.expired += 1;
                    self.dead_letter(entry, DeadReason::Expired, fx);
                    continue;
                }
                return Some(entry);
            }
        }
        None
    }

    fn pop_oldest_ready(&mut self) -> Option<Entry> {
        let p = (0..LEVELS)
            .filter_map(|p| self.ready[p].front().map(|e| (e.seq, p)))
            .min()?
            .1;
        let entry = self.ready[p].pop_front()?;
        self.unlink_ready(&entry);
        Some(entry)
    }

    fn remove_ready_seq(&mut self, seq: u64) -> Option<Entry> {
        let (p, i) = (0..LEVELS).find_map(|p| find_seq(&self.ready[p], seq).map(|i| (p, i)))?;
        let entry = self.ready[p].remove(i)?;
        self.unlink_ready(&entry);
        Some(entry)
    }
}

/// Holds the loader; a newtype so the state can stay `Debug`.
struct LoaderSlot(Option<Loader>);

impl std::fmt::Debug for LoaderSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Loader" } else { "None" })
    }
}

fn find_seq(level: &VecDeque<Entry>, seq: u64) -> Option<usize> {
    let i = level.partition_point(|e| e.seq < seq);
    (level.get(i).is_some_and(|e| e.seq == seq)).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use std::sync::Arc;
    use stompd_config::{Config, NackPolicy};

    fn policy() -> QueuePolicy {
        let cfg = Config::embedded();
        let rule = cfg
            .auto_create_rule("/queue/t")
            .expect("default config auto-creates queues")
            .clone();
        let mut p = cfg.auto_queue_policy(&rule);
        p.persistent = false;
        p
    }

    fn msg(body: &str, priority: u8, expires: Option<u64>) -> SharedMessage {
        Arc::new(Message {
            destination: "/queue/t".into(),
            headers: vec![],
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            priority,
            timestamp_ms: 0,
            expires_at_ms: expires,
            idempotency_key: None,
        })
    }

    fn bodies(fx: &Effects) -> Vec<String> {
        fx.deliveries
            .iter()
            .map(|(_, d)| String::from_utf8(d.msg.body.to_vec()).unwrap())
            .collect()
    }

    fn consumer(id: u64, window: u32) -> ConsumerSpec {
        ConsumerSpec::new(id, window)
    }

    #[test]
    fn higher_priority_first_fifo_within_priority() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        for (b, p) in [("a", 4), ("b", 9), ("c", 4), ("d", 0), ("e", 9)] {
            q.enqueue(msg(b, p, None), 0, &mut fx).unwrap();
        }
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 100), 0, &mut fx);
        assert_eq!(bodies(&fx), ["b", "e", "a", "c", "d"]);
    }

    #[test]
    fn round_robin_among_consumers_with_credit() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 100), 0, &mut fx);
        q.add_consumer(consumer(2, 100), 0, &mut fx);
        for i in 0..6 {
            q.enqueue(msg(&i.to_string(), 4, None), 0, &mut fx).unwrap();
        }
        let to: Vec<u64> = fx.deliveries.iter().map(|(c, _)| *c).collect();
        assert_eq!(to, [1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn window_bounds_in_flight_and_ack_releases_credit() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 2), 0, &mut fx);
        for i in 0..5 {
            q.enqueue(msg(&i.to_string(), 4, None), 0, &mut fx).unwrap();
        }
        assert_eq!(bodies(&fx), ["0", "1"]);
        assert_eq!(q.stats().in_flight, 2);
        let first = fx.deliveries[0].1.seq;
        let mut fx = Effects::default();
        assert_eq!(q.ack(1, &[first], 0, &mut fx), 1);
        assert_eq!(bodies(&fx), ["2"]);
        assert_eq!(fx.removed, [first]);
        // Unknown or foreign seqs are not acked.
        assert_eq!(
            q.ack(2, &[fx.deliveries[0].1.seq], 0, &mut Effects::default()),
            0
        );
        assert_eq!(q.ack(1, &[999], 0, &mut Effects::default()), 0);
    }

    #[test]
    fn slow_consumer_does_not_stall_others() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 1), 0, &mut fx); // never acks
        q.add_consumer(consumer(2, 100), 0, &mut fx);
        for i in 0..10 {
            q.enqueue(msg(&i.to_string(), 4, None), 0, &mut fx).unwrap();
        }
        let to_2 = fx.deliveries.iter().filter(|(c, _)| *c == 2).count();
        assert_eq!(to_2, 9);
    }

    #[test]
    fn removed_consumer_messages_return_in_original_order_marked_redelivered() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 2), 0, &mut fx);
        for i in 0..4 {
            q.enqueue(msg(&i.to_string(), 4, None), 0, &mut fx).unwrap();
        }
        let mut fx = Effects::default();
        q.remove_consumer(1, 0, &mut fx);
        assert_eq!(fx.redelivered.len(), 2);
        let mut fx = Effects::default();
        q.add_consumer(consumer(2, 10), 0, &mut fx);
        assert_eq!(bodies(&fx), ["0", "1", "2", "3"]);
        let counts: Vec<u32> = fx
            .deliveries
            .iter()
            .map(|(_, d)| d.redelivery_count)
            .collect();
        assert_eq!(counts, [1, 1, 0, 0]);
        assert!(fx.deliveries[0].1.redelivered());
    }

    #[test]
    fn nack_requeues_and_redelivery_limit_dead_letters() {
        let mut p = policy();
        p.max_redeliveries = 2;
        let mut q = QueueState::new(p);
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 1), 0, &mut fx);
        q.enqueue(msg("x", 4, None), 0, &mut fx).unwrap();
        let seq = fx.deliveries[0].1.seq;
        for round in 1..=2 {
            let mut fx = Effects::default();
            assert_eq!(q.nack(1, &[seq], true, 0, &mut fx), 1);
            assert_eq!(fx.deliveries.len(), 1, "round {round}");
            assert_eq!(fx.deliveries[0].1.redelivery_count, round);
        }
        let mut fx = Effects::default();
        q.nack(1, &[seq], true, 0, &mut fx);
        assert!(fx.deliveries.is_empty());
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(fx.dead[0].reason, DeadReason::MaxRedeliveries);
        assert_eq!(fx.removed, [seq]);
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn nack_policies_and_requeue_false() {
        for (nack, requeue, dead, depth) in [
            (NackPolicy::Requeue, false, 1, 0),
            (NackPolicy::DeadLetter, true, 1, 0),
            (NackPolicy::Drop, true, 0, 0),
            (NackPolicy::Requeue, true, 0, 1),
        ] {
            let mut p = policy();
            p.nack = nack;
            let mut q = QueueState::new(p);
            let mut fx = Effects::default();
            q.add_consumer(consumer(1, 1), 0, &mut fx);
            q.enqueue(msg("x", 4, None), 0, &mut fx).unwrap();
            let seq = fx.deliveries[0].1.seq;
            q.remove_consumer(1, 0, &mut Effects::default());
            q.add_consumer(consumer(2, 0), 0, &mut Effects::default()); // window 0: holds nothing
            let mut fx = Effects::default();
            q.add_consumer(consumer(3, 1), 0, &mut fx);
            assert_eq!(fx.deliveries[0].1.seq, seq);
            let mut fx = Effects::default();
            q.remove_consumer(2, 0, &mut fx);
            let mut fx = Effects::default();
            q.nack(3, &[seq], requeue, 0, &mut fx);
            assert_eq!(fx.dead.len(), dead, "{nack:?} requeue={requeue}");
            assert_eq!(q.depth(), depth, "{nack:?} requeue={requeue}");
        }
    }

    #[test]
    fn expired_messages_are_never_delivered_and_are_dead_lettered_anywhere_in_the_queue() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.enqueue(msg("keep", 9, None), 0, &mut fx).unwrap();
        q.enqueue(msg("old", 0, Some(100)), 0, &mut fx).unwrap();
        q.enqueue(msg("later", 4, Some(10_000)), 0, &mut fx)
            .unwrap();
        assert_eq!(q.next_expiry(), Some(100));
        let mut fx = Effects::default();
        q.expire(150, &mut fx);
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(fx.dead[0].reason, DeadReason::Expired);
        assert_eq!(q.depth(), 2);
        // At dispatch time too.
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 10), 20_000, &mut fx);
        assert_eq!(bodies(&fx), ["keep"]);
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(q.stats().counters.expired, 2);
    }

    #[test]
    fn reject_overflow_by_messages_and_bytes_leaves_queue_untouched() {
        let mut p = policy();
        p.max_messages = 2;
        let mut q = QueueState::new(p);
        let mut fx = Effects::default();
        q.enqueue(msg("a", 4, None), 0, &mut fx).unwrap();
        q.enqueue(msg("b", 4, None), 0, &mut fx).unwrap();
        assert_eq!(
            q.enqueue(msg("c", 4, None), 0, &mut fx),
            Err(EnqueueError::Full(Limit::Messages(2)))
        );
        assert_eq!(q.depth(), 2);

        let mut p = policy();
        p.max_bytes = 5;
        let mut q = QueueState::new(p);
        q.enqueue(msg("abc", 4, None), 0, &mut fx).unwrap();
        assert_eq!(
            q.enqueue(msg("abc", 4, None), 0, &mut fx),
            Err(EnqueueError::Full(Limit::Bytes(5)))
        );
        q.enqueue(msg("ab", 4, None), 0, &mut fx).unwrap();
        assert_eq!(q.bytes(), 5);
    }

    #[test]
    fn drop_oldest_makes_room_and_reports_the_dropped() {
        let mut p = policy();
        p.max_messages = 2;
        p.overflow = Overflow::DropOldest;
        let mut q = QueueState::new(p);
        let mut fx = Effects::default();
        q.enqueue(msg("a", 9, None), 0, &mut fx).unwrap();
        q.enqueue(msg("b", 0, None), 0, &mut fx).unwrap();
        let mut fx = Effects::default();
        q.enqueue(msg("c", 4, None), 0, &mut fx).unwrap();
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(&fx.dead[0].entry.msg.as_ref().unwrap().body[..], b"a");
        assert_eq!(fx.dead[0].reason, DeadReason::Overflow);
        assert_eq!(q.depth(), 2);
    }

    #[test]
    fn closed_queue_refuses_producers_but_keeps_delivering() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        q.enqueue(msg("a", 4, None), 0, &mut fx).unwrap();
        q.set_closed(true);
        assert_eq!(
            q.enqueue(msg("b", 4, None), 0, &mut fx),
            Err(EnqueueError::Closed)
        );
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 10), 0, &mut fx);
        assert_eq!(bodies(&fx), ["a"]);
        q.set_closed(false);
        q.enqueue(msg("b", 4, None), 0, &mut Effects::default())
            .unwrap();
    }

    #[test]
    fn browse_peek_remove_purge() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        let a = q.enqueue(msg("a", 4, None), 0, &mut fx).unwrap().unwrap();
        let b = q.enqueue(msg("b", 8, None), 0, &mut fx).unwrap().unwrap();
        q.enqueue(msg("c", 4, None), 0, &mut fx).unwrap();
        let seen: Vec<u64> = q.browse(0, 10).iter().map(|d| d.seq).collect();
        assert_eq!(seen, [b, a, a + 2]);
        assert_eq!(q.browse(0, 1).len(), 1);
        assert_eq!(q.depth(), 3, "browsing consumes nothing");
        assert_eq!(&q.peek(a).unwrap().msg.body[..], b"a");
        let mut fx = Effects::default();
        assert!(q.remove(a, &mut fx));
        assert!(!q.remove(a, &mut fx));
        assert_eq!(fx.removed, [a]);
        assert_eq!(q.purge(&mut fx), 2);
        assert_eq!(q.depth(), 0);
        assert_eq!(q.bytes(), 0);
    }

    /// A loader over a map standing in for the journal, counting reads; `fail` makes it fail.
    fn store_loader(
        store: &Arc<parking_lot::Mutex<HashMap<u64, SharedMessage>>>,
        reads: &Arc<std::sync::atomic::AtomicUsize>,
        fail: &Arc<std::sync::atomic::AtomicBool>,
    ) -> Loader {
        let (store, reads, fail) = (store.clone(), reads.clone(), fail.clone());
        Arc::new(move |seq| {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            store.lock().get(&seq).cloned()
        })
    }

    #[test]
    fn paged_out_messages_are_read_back_when_due_in_order_and_accounted() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let store = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let reads = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        // No loader: nothing is ever paged out.
        let s = q.enqueue(msg("x", 4, None), 0, &mut fx).unwrap().unwrap();
        assert!(q.page_out_candidates(100).is_empty());
        q.remove(s, &mut fx);
        q.set_loader(store_loader(&store, &reads, &fail));
        for (body, p) in [("aa", 4), ("bb", 4), ("cc", 7), ("dd", 4), ("ee", 1)] {
            let m = msg(body, p, None);
            let seq = q.enqueue(m.clone(), 0, &mut fx).unwrap().unwrap();
            store.lock().insert(seq, m);
        }
        assert_eq!(q.resident_bytes(), 10);
        // Due last first: the priority-1 message, then the newest of priority 4.
        let c = q.page_out_candidates(5);
        let body_of = |seq: u64| store.lock()[&seq].body.clone();
        let paged: Vec<_> = c.iter().map(|&s| body_of(s)).collect();
        assert_eq!(paged, ["ee", "dd", "bb"]);
        assert_eq!(q.page_out(&c), 6);
        assert_eq!(q.page_out(&c), 0, "already paged out");
        assert_eq!(q.resident_bytes(), 4);
        assert_eq!(q.bytes(), 10);
        assert_eq!(q.stats().resident_bytes, 4);
        // Browsing reads paged messages back without consuming or keeping them.
        let seen: Vec<_> = q
            .browse(0, 10)
            .iter()
            .map(|d| String::from_utf8(d.msg.body.to_vec()).unwrap())
            .collect();
        assert_eq!(seen, ["cc", "aa", "bb", "dd", "ee"]);
        assert_eq!(reads.load(SeqCst), 3);
        assert_eq!(q.resident_bytes(), 4);
        // A read that fails leaves the message stored and retries it later; the others flow.
        fail.store(true, SeqCst);
        let mut fx = Effects::default();
        q.add_consumer(consumer(1, 10), 0, &mut fx);
        assert_eq!(bodies(&fx), ["cc", "aa"]);
        assert_eq!(q.depth(), 5);
        assert!(q.has_timed_work());
        fail.store(false, SeqCst);
        let mut fx = Effects::default();
        q.tick(LOAD_RETRY_MS - 1, &mut fx);
        assert!(fx.deliveries.is_empty());
        q.tick(LOAD_RETRY_MS, &mut fx);
        assert_eq!(bodies(&fx), ["bb", "dd", "ee"]);
        // In flight, everything is in memory again.
        assert_eq!(q.resident_bytes(), 10);
        // A paged-out message that comes back after a consumer leaves is whole and in order.
        let mut fx = Effects::default();
        q.remove_consumer(1, 2000, &mut fx);
        assert_eq!(q.resident_bytes(), 10);
        let c = q.page_out_candidates(100);
        assert_eq!(q.page_out(&c), 10);
        assert_eq!(q.resident_bytes(), 0);
        q.add_consumer(consumer(2, 10), 2000, &mut fx);
        assert_eq!(bodies(&fx), ["cc", "aa", "bb", "dd", "ee"]);
        assert!(fx.deliveries.iter().all(|(_, d)| d.redelivered()));
    }

    #[test]
    fn paged_out_messages_expire_and_are_dead_lettered_without_being_read() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let store = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let reads = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let mut q = QueueState::new(policy());
        q.set_loader(store_loader(&store, &reads, &fail));
        let mut fx = Effects::default();
        let seq = q
            .enqueue(msg("old", 4, Some(50)), 0, &mut fx)
            .unwrap()
            .unwrap();
        assert_eq!(q.page_out(&[seq]), 3);
        q.tick(60, &mut fx);
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(fx.dead[0].reason, DeadReason::Expired);
        assert!(
            fx.dead[0].entry.msg.is_none(),
            "the owner reads it back for the DLQ"
        );
        assert_eq!(reads.load(SeqCst), 0);
        assert_eq!((q.depth(), q.bytes(), q.resident_bytes()), (0, 0, 0));
    }

    fn colored(body: &str, color: &str) -> SharedMessage {
        Arc::new(Message {
            destination: "/queue/t".into(),
            headers: vec![("color".into(), color.into())],
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            priority: 4,
            timestamp_ms: 0,
            expires_at_ms: None,
            idempotency_key: None,
        })
    }

    fn selecting(id: u64, text: &str) -> ConsumerSpec {
        ConsumerSpec {
            selector: Some(Arc::new(Selector::parse(text).unwrap())),
            ..ConsumerSpec::new(id, 10)
        }
    }

    #[test]
    fn selectors_on_a_queue_pick_their_messages_in_order_and_leave_the_rest() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        for (body, color) in [
            ("r1", "red"),
            ("b1", "blue"),
            ("r2", "red"),
            ("g1", "green"),
        ] {
            q.enqueue(colored(body, color), 0, &mut fx).unwrap();
        }
        q.add_consumer(selecting(1, "color = 'red'"), 0, &mut fx);
        assert_eq!(bodies(&fx), ["r1", "r2"]);
        let mut fx = Effects::default();
        q.add_consumer(selecting(2, "color IN ('blue', 'black')"), 0, &mut fx);
        assert_eq!(bodies(&fx), ["b1"]);
        assert_eq!(fx.deliveries[0].0, 2);
        assert_eq!((q.depth(), q.stats().ready), (4, 1));
        // A new red message goes to the red consumer even though blue is next in turn.
        let mut fx = Effects::default();
        q.enqueue(colored("r3", "red"), 0, &mut fx).unwrap();
        assert_eq!(fx.deliveries.len(), 1);
        assert_eq!(fx.deliveries[0].0, 1);
        // A consumer without a selector takes what nobody selected.
        let mut fx = Effects::default();
        q.add_consumer(ConsumerSpec::new(3, 10), 0, &mut fx);
        assert_eq!(bodies(&fx), ["g1"]);
        // A message the red consumer gives back goes to it again, not to the blue one.
        let mut fx = Effects::default();
        q.remove_consumer(1, 0, &mut fx);
        assert_eq!(bodies(&fx), ["r1", "r2", "r3"]);
        assert!(fx.deliveries.iter().all(|(c, _)| *c == 3));
    }

    #[test]
    fn a_byte_window_bounds_bytes_in_flight_but_always_lets_one_message_through() {
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        let mut seqs = Vec::new();
        for body in ["aaaa", "bb", "cccccc", "d"] {
            seqs.push(q.enqueue(msg(body, 4, None), 0, &mut fx).unwrap().unwrap());
        }
        let spec = ConsumerSpec {
            window_bytes: 5,
            ..ConsumerSpec::new(1, 100)
        };
        q.add_consumer(spec, 0, &mut fx);
        assert_eq!(bodies(&fx), ["aaaa", "bb"]);
        let mut fx = Effects::default();
        q.ack(1, &seqs[..1], 0, &mut fx);
        assert_eq!(bodies(&fx), ["cccccc"]);
        let mut fx = Effects::default();
        q.ack(1, &seqs[1..3], 0, &mut fx);
        assert_eq!(bodies(&fx), ["d"]);
        // 0 bytes: one message at a time.
        let mut q = QueueState::new(policy());
        let mut fx = Effects::default();
        for body in ["x", "y"] {
            q.enqueue(msg(body, 4, None), 0, &mut fx).unwrap();
        }
        let spec = ConsumerSpec {
            window_bytes: 0,
            ..ConsumerSpec::new(1, 100)
        };
        q.add_consumer(spec, 0, &mut fx);
        assert_eq!(bodies(&fx), ["x"]);
    }

    #[test]
    fn a_per_priority_limit_rejects_or_drops_within_that_priority_only() {
        let mut p = policy();
        p.max_messages_per_priority = 2;
        let mut q = QueueState::new(p.clone());
        let mut fx = Effects::default();
        q.enqueue(msg("a", 9, None), 0, &mut fx).unwrap();
        q.enqueue(msg("b", 9, None), 0, &mut fx).unwrap();
        assert_eq!(
            q.enqueue(msg("c", 9, None), 0, &mut fx).unwrap_err(),
            EnqueueError::Full(Limit::PriorityMessages {
                priority: 9,
                limit: 2
            })
        );
        assert_eq!(q.depth(), 2, "the refused message is not stored");
        q.enqueue(msg("d", 4, None), 0, &mut fx).unwrap();
        let mut batch = [0u64; LEVELS];
        batch[9] = 1;
        assert!(q.admit_batch(1, 1, &batch).is_err());
        let mut batch = [0u64; LEVELS];
        batch[4] = 1;
        assert!(q.admit_batch(1, 1, &batch).is_ok());
        // In flight does not count: delivering one makes room at its priority.
        q.add_consumer(ConsumerSpec::new(1, 1), 0, &mut fx);
        q.enqueue(msg("e", 9, None), 0, &mut fx).unwrap();

        p.overflow = Overflow::DropOldest;
        let mut q = QueueState::new(p);
        let mut fx = Effects::default();
        for b in ["a", "b", "c"] {
            q.enqueue(msg(b, 9, None), 0, &mut fx).unwrap();
        }
        q.enqueue(msg("low", 0, None), 0, &mut fx).unwrap();
        assert_eq!(fx.dead.len(), 1);
        assert_eq!(fx.dead[0].reason, DeadReason::Overflow);
        assert_eq!(&fx.dead[0].entry.msg.as_ref().unwrap().body[..], b"a");
        let mut fx = Effects::default();
        q.add_consumer(ConsumerSpec::new(1, 10), 0, &mut fx);
        assert_eq!(bodies(&fx), ["b", "c", "low"]);
    }
}
