//! A queue: the sole owner of its [`QueueState`], behind a short synchronous lock.
//!
//! Why a lock and not an actor task: every operation is a few pointer moves, never awaits, and the
//! producer's own task can then hand deliveries straight to consumers' session channels with no
//! extra hop. The lock is never held across an `.await`; deliveries are pushed into unbounded
//! channels under it (non-blocking, and bounded in practice by each consumer's credit) so that two
//! producers cannot reorder what one consumer sees.
//!
//! Persistence: for a persistent queue every change is appended to the journal *under the same
//! lock* that makes it visible, so the journal's order per queue is the order consumers saw: an
//! ACK record can never precede the ENQUEUE of the message it acknowledges. The append itself only
//! encodes and hands the bytes to the journal's writer thread; callers await the returned
//! [`Commit`] (for a RECEIPT) outside the lock.
//!
//! Memory: a persistent queue can drop the headers and bodies of ready messages from memory
//! ([`Queue::page_out`], driven by the broker's `storage.memory_budget_bytes`); the state keeps
//! what ordering, limits and expiry need, and reads a message back from the journal through its
//! loader when it is due. Only messages the journal already holds are paged out.

pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use stompd_config::QueuePolicy;
use stompd_protocol::ByteStr;

use crate::message::{now_ms, Message, SharedMessage};
use crate::session::{SessionEvent, Sink};
use crate::storage::{Commit, ErrorSink, Journal, PagedMessage, Record, StoredMessage};
pub use state::{
    ConsumerId, ConsumerSpec, Counters, DeadLetter, DeadReason, Delivery, Effects, EnqueueError,
    Entry, Limit, QueueState, QueueStats,
};

/// Where a queue's dead letters go; implemented by the broker so a queue never needs to know the
/// registry.
pub trait QueueHost: Send + Sync {
    /// Carries out dead letters produced by `from` (outside `from`'s lock). The dead messages'
    /// removal from `from` is journaled by the queue after this returns, so a crash in between
    /// leaves a message in both queues, never in neither.
    fn dead_letters(&self, from: &Queue, dead: Vec<DeadLetter>);
}

pub struct Queue {
    /// Name without prefix (`orders` for `/queue/orders`); the journal's key.
    name: crate::storage::QueueName,
    /// Full destination as clients name it.
    destination: ByteStr,
    /// Set for `/temp-queue/` queues: the session that owns it.
    owner: Option<u64>,
    /// Set when the queue is persistent.
    journal: Option<Journal>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: QueueState,
    sinks: HashMap<ConsumerId, Sink>,
    /// The end-of-stream MESSAGE went out for the current closed-and-drained period.
    eos_sent: bool,
}

/// A locked queue, for operations that must happen together (a transaction's COMMIT locks every
/// queue it touches, in a fixed order, and appends one journal batch).
pub struct QueueGuard<'a> {
    queue: &'a Queue,
    inner: MutexGuard<'a, Inner>,
    fx: Effects,
    now_ms: u64,
}

impl Queue {
    pub fn new(
        name: String,
        destination: ByteStr,
        policy: QueuePolicy,
        owner: Option<u64>,
        journal: Option<Journal>,
    ) -> Arc<Queue> {
        let journal = if policy.persistent { journal } else { None };
        let mut state = QueueState::new(policy);
        if let Some(journal) = &journal {
            state.set_loader(loader(journal.clone(), name.clone(), destination.clone()));
        }
        Arc::new(Queue {
            name: name.into(),
            destination,
            owner,
            journal,
            inner: Mutex::new(Inner {
                state,
                sinks: HashMap::new(),
                eos_sent: false,
            }),
        })
    }

    /// Body bytes this queue holds in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.inner.lock().state.resident_bytes()
    }

    /// Pages out about `want` bytes of the messages due last (persistent queues only; only
    /// messages already written to the journal). Returns the bytes freed.
    pub fn page_out(&self, want: u64) -> u64 {
        let Some(journal) = &self.journal else {
            return 0;
        };
        let mut seqs = self.inner.lock().state.page_out_candidates(want);
        journal.retain_stored(&self.name, &mut seqs);
        // In chunks, so producers and consumers get the lock in between; a message delivered
        // meanwhile is simply not found.
        seqs.chunks(4096)
            .map(|chunk| self.inner.lock().state.page_out(chunk))
            .sum()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn destination(&self) -> &ByteStr {
        &self.destination
    }

    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    pub fn is_persistent(&self) -> bool {
        self.journal.is_some()
    }

    pub fn policy(&self) -> QueuePolicy {
        self.inner.lock().state.policy().clone()
    }

    /// Priority and TTL (ms) for a SEND that names neither.
    pub fn message_defaults(&self) -> (u8, Option<u64>) {
        let inner = self.inner.lock();
        let p = inner.state.policy();
        (
            p.default_priority,
            p.default_ttl.map(|d| d.as_millis() as u64),
        )
    }

    pub fn acknowledgement(&self) -> stompd_config::Acknowledgement {
        self.inner.lock().state.policy().acknowledgement
    }

    pub fn overflow(&self) -> stompd_config::Overflow {
        self.inner.lock().state.policy().overflow
    }

    pub fn prefetch(&self) -> u32 {
        self.inner.lock().state.policy().prefetch
    }

    /// Checks the queue's own read/write lists for `principal`.
    pub fn allows(
        &self,
        principal: &crate::broker::Principal,
        intent: crate::broker::Intent,
    ) -> bool {
        let inner = self.inner.lock();
        let p = inner.state.policy();
        let list = match intent {
            crate::broker::Intent::Read => &p.read,
            crate::broker::Intent::Write => &p.write,
        };
        list.as_ref()
            .is_none_or(|l| l.iter().any(|e| principal.matches(e)))
    }

    pub fn stats(&self) -> QueueStats {
        self.inner.lock().state.stats()
    }

    pub fn lock(&self) -> QueueGuard<'_> {
        QueueGuard {
            queue: self,
            inner: self.inner.lock(),
            fx: Effects::default(),
            now_ms: now_ms(),
        }
    }

    /// Enqueues one message. The commit (persistent queues) resolves when it is on disk.
    pub fn send(
        &self,
        host: &dyn QueueHost,
        msg: Message,
    ) -> Result<(Option<u64>, Option<Commit>), EnqueueError> {
        self.send_shared(host, Arc::new(msg))
    }

    pub fn send_shared(
        &self,
        host: &dyn QueueHost,
        msg: SharedMessage,
    ) -> Result<(Option<u64>, Option<Commit>), EnqueueError> {
        let mut g = self.lock();
        let mut records = Vec::new();
        let seq = g.enqueue(msg, &mut records)?;
        let (commit, dead) = g.finish(records);
        self.after(host, dead);
        Ok((seq, commit))
    }

    /// Enqueues one message without a [`Commit`]: a journal failure goes to `on_error`.
    pub fn send_reporting(
        &self,
        host: &dyn QueueHost,
        msg: SharedMessage,
        on_error: &ErrorSink,
    ) -> Result<Option<u64>, EnqueueError> {
        let mut g = self.lock();
        let mut records = Vec::new();
        let seq = g.enqueue(msg, &mut records)?;
        let dead = g.finish_untracked(records, Some(on_error));
        self.after(host, dead);
        Ok(seq)
    }

    pub fn subscribe(&self, host: &dyn QueueHost, spec: ConsumerSpec, sink: Sink) {
        let mut g = self.lock();
        if g.inner.eos_sent {
            let _ = sink.send(SessionEvent::EndOfStream { consumer: spec.id });
        }
        g.inner.sinks.insert(spec.id, sink);
        let now = g.now_ms;
        g.inner.state.add_consumer(spec, now, &mut g.fx);
        let (_, dead) = g.finish(Vec::new());
        self.after(host, dead);
    }

    pub fn unsubscribe(&self, host: &dyn QueueHost, consumer: ConsumerId) {
        let mut g = self.lock();
        g.inner.sinks.remove(&consumer);
        let now = g.now_ms;
        g.inner.state.remove_consumer(consumer, now, &mut g.fx);
        let (_, dead) = g.finish(Vec::new());
        self.after(host, dead);
    }

    /// Acknowledges; the commit resolves when the acknowledgement is on disk.
    pub fn ack(
        &self,
        host: &dyn QueueHost,
        consumer: ConsumerId,
        seqs: &[u64],
    ) -> (usize, Option<Commit>) {
        let mut g = self.lock();
        let n = g.ack(consumer, seqs);
        let (commit, dead) = g.finish(Vec::new());
        self.after(host, dead);
        (n, commit)
    }

    /// Acknowledges without waiting for the disk (automatic acknowledgement of written
    /// deliveries: at worst such a message comes back once after a crash, marked redelivered).
    pub fn settle(&self, host: &dyn QueueHost, consumer: ConsumerId, seqs: &[u64]) {
        let mut g = self.lock();
        g.ack(consumer, seqs);
        let dead = g.finish_untracked(Vec::new(), None);
        self.after(host, dead);
    }

    pub fn nack(
        &self,
        host: &dyn QueueHost,
        consumer: ConsumerId,
        seqs: &[u64],
        requeue: bool,
    ) -> (usize, Option<Commit>) {
        let mut g = self.lock();
        let n = g.nack(consumer, seqs, requeue);
        let (commit, dead) = g.finish(Vec::new());
        self.after(host, dead);
        (n, commit)
    }

    /// Sweeps expired messages; returns the next expiry time, if any.
    pub fn tick(&self, host: &dyn QueueHost, now_ms: u64) {
        let mut g = self.lock();
        if !g.inner.state.has_timed_work() {
            return;
        }
        g.inner.state.tick(now_ms, &mut g.fx);
        let (_, dead) = g.finish(Vec::new());
        self.after(host, dead);
    }

    pub fn browse(&self, limit: usize) -> Vec<Delivery> {
        self.inner.lock().state.browse(now_ms(), limit)
    }

    pub fn peek(&self, seq: u64) -> Option<Delivery> {
        self.inner.lock().state.peek(seq)
    }

    pub fn remove(&self, host: &dyn QueueHost, seq: u64) -> bool {
        let mut g = self.lock();
        let removed = g.inner.state.remove(seq, &mut g.fx);
        let (_, dead) = g.finish(Vec::new());
        self.after(host, dead);
        removed
    }

    pub fn purge(&self, host: &dyn QueueHost) -> u64 {
        let mut g = self.lock();
        let n = g.inner.state.purge(&mut g.fx);
        let (_, dead) = g.finish(Vec::new());
        self.after(host, dead);
        n
    }

    /// Closes the queue to producers (or reopens it); remembered across restarts.
    pub fn set_closed(&self, closed: bool) -> Option<Commit> {
        let mut g = self.lock();
        if g.inner.state.is_closed() != closed {
            g.notify_closed(closed);
        }
        g.inner.state.set_closed(closed);
        if !closed {
            g.inner.eos_sent = false;
        }
        let record = Record::QueueClosed {
            queue: self.name.clone(),
            closed,
        };
        let (commit, _) = g.finish(vec![record]);
        commit
    }

    /// Closes the queue and moves its ready and delayed messages to its dead-letter queue with
    /// reason `queue-closed`. Returns how many were moved.
    pub fn close_and_dead_letter(&self, host: &dyn QueueHost) -> (u64, Option<Commit>) {
        let mut g = self.lock();
        g.inner.state.set_closed(true);
        let n = g.inner.state.evacuate(&mut g.fx);
        g.notify_closed(true);
        let record = Record::QueueClosed {
            queue: self.name.clone(),
            closed: true,
        };
        let (commit, dead) = g.finish(vec![record]);
        self.after(host, dead);
        (n, commit)
    }

    /// Depth, message limit, bytes and byte limit, when the queue has a limit.
    pub fn quota(&self) -> Option<(u64, u64, u64, u64)> {
        let inner = self.inner.lock();
        let p = inner.state.policy();
        (p.max_messages > 0 || p.max_bytes > 0).then(|| {
            (
                inner.state.depth(),
                p.max_messages,
                inner.state.bytes(),
                p.max_bytes,
            )
        })
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().state.is_closed()
    }

    pub fn set_policy(&self, policy: QueuePolicy) {
        self.inner.lock().state.set_policy(policy);
    }

    /// Puts back the idempotency keys the journal remembered (before [`Queue::restore`]).
    pub fn restore_keys(&self, keys: Vec<(ByteStr, u64)>) {
        let mut inner = self.inner.lock();
        for (key, at) in keys {
            inner.state.restore_key(key, at);
        }
    }

    /// Puts back messages recovered from the journal (start-up only: no consumers yet):
    /// `messages` in memory, `paged` left on disk; both sorted by seq.
    pub fn restore(
        &self,
        messages: Vec<StoredMessage>,
        paged: Vec<PagedMessage>,
        closed: bool,
        next_seq: u64,
    ) {
        let mut inner = self.inner.lock();
        let mut paged = paged.into_iter().peekable();
        let restore_paged = |inner: &mut Inner, p: PagedMessage| {
            let key = p.idempotency_key.map(|k| (k, p.timestamp_ms));
            let entry = Entry {
                seq: p.seq,
                msg: None,
                redeliveries: p.redelivery_count,
                priority: p.priority.min(crate::message::MAX_PRIORITY),
                size: p.size,
                expires_at_ms: p.expires_at_ms,
            };
            inner.state.restore(entry, key);
        };
        // Merged in seq order, so each priority level is rebuilt by appends.
        for m in messages {
            while let Some(p) = paged.next_if(|p| p.seq < m.seq) {
                restore_paged(&mut inner, p);
            }
            let (seq, redeliveries) = (m.seq, m.redelivery_count);
            let msg = Arc::new(from_stored(self.destination.clone(), m));
            let key = msg.idempotency_key.clone().map(|k| (k, msg.timestamp_ms));
            inner.state.restore(Entry::new(seq, msg, redeliveries), key);
        }
        for p in paged {
            restore_paged(&mut inner, p);
        }
        inner.state.restore_next_seq(next_seq);
        if closed {
            inner.state.set_closed(true);
        }
    }

    /// Tells every consumer its subscription is gone (queue deleted).
    pub fn cancel_consumers(&self, reason: &'static str) {
        let inner = self.inner.lock();
        for (id, sink) in &inner.sinks {
            let _ = sink.send(SessionEvent::Cancelled {
                consumer: *id,
                reason,
            });
        }
    }

    /// Carries out dead letters, then journals their removal from this queue.
    pub fn after(&self, host: &dyn QueueHost, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        let seqs: Vec<u64> = dead.iter().map(|d| d.entry.seq).collect();
        let mut dead = dead;
        for d in &mut dead {
            if d.entry.msg.is_none() {
                // Still in the journal: its removal is appended only below.
                d.entry.msg = self
                    .journal
                    .as_ref()
                    .and_then(|j| load(j, &self.name, &self.destination, d.entry.seq));
            }
        }
        host.dead_letters(self, dead);
        if let Some(journal) = &self.journal {
            let records = seqs
                .into_iter()
                .map(|seq| Record::Ack {
                    queue: self.name.clone(),
                    seq,
                })
                .collect();
            // Not awaited: losing this record in a crash means the message is in both queues.
            journal.append_detached(records);
        }
    }
}

impl QueueGuard<'_> {
    pub fn queue(&self) -> &Queue {
        self.queue
    }

    /// Enqueues; for a persistent queue the ENQUEUE record is added to `records`.
    pub fn enqueue(
        &mut self,
        msg: SharedMessage,
        records: &mut Vec<Record>,
    ) -> Result<Option<u64>, EnqueueError> {
        let stored = self.queue.journal.is_some().then(|| msg.clone());
        let Some(seq) = self.inner.state.enqueue(msg, self.now_ms, &mut self.fx)? else {
            return Ok(None);
        };
        if let Some(msg) = stored {
            records.push(Record::Send {
                queue: self.queue.name.clone(),
                seq,
                msg,
            });
        }
        Ok(Some(seq))
    }

    /// Checks that `messages` totalling `bytes` would all be accepted (transactions check before
    /// they change anything).
    pub fn admit_batch(
        &self,
        messages: u64,
        bytes: u64,
        per_priority: &[u64; state::LEVELS],
    ) -> Result<(), EnqueueError> {
        self.inner.state.admit_batch(messages, bytes, per_priority)
    }

    pub fn ack(&mut self, consumer: ConsumerId, seqs: &[u64]) -> usize {
        self.inner
            .state
            .ack(consumer, seqs, self.now_ms, &mut self.fx)
    }

    pub fn nack(&mut self, consumer: ConsumerId, seqs: &[u64], requeue: bool) -> usize {
        self.inner
            .state
            .nack(consumer, seqs, requeue, self.now_ms, &mut self.fx)
    }

    /// Hands out deliveries, appends `records` plus the removals and redeliveries of this
    /// operation to the journal (persistent queues), and returns the dead letters to carry out
    /// once the lock is released.
    pub fn finish(mut self, mut records: Vec<Record>) -> (Option<Commit>, Vec<DeadLetter>) {
        let dead = self.drain_into(&mut records);
        let commit = match &self.queue.journal {
            Some(journal) if !records.is_empty() => Some(journal.append(records)),
            _ => None,
        };
        (commit, dead)
    }

    /// [`QueueGuard::finish`] without a [`Commit`]: a journal failure goes to `on_error` if
    /// given, else only to the log.
    pub fn finish_untracked(
        mut self,
        mut records: Vec<Record>,
        on_error: Option<&ErrorSink>,
    ) -> Vec<DeadLetter> {
        let dead = self.drain_into(&mut records);
        if let (Some(journal), false) = (&self.queue.journal, records.is_empty()) {
            // Under the queue lock, like every append: journal order is delivery order.
            match on_error {
                Some(sink) => journal.append_reporting(records, sink),
                None => journal.append_detached(records),
            }
        }
        dead
    }

    /// Hands out deliveries and adds this queue's journal records to `records`, keeping the lock:
    /// a transaction appends the records of every queue it touched as one batch before it lets
    /// go of any of them.
    pub fn drain_into(&mut self, records: &mut Vec<Record>) -> Vec<DeadLetter> {
        self.deliver();
        let fx = std::mem::take(&mut self.fx);
        if self.queue.journal.is_some() {
            self.journal_effects(&fx, records);
        }
        fx.dead
    }

    fn journal_effects(&self, fx: &Effects, records: &mut Vec<Record>) {
        let name = &self.queue.name;
        // Dead letters are acked here only after they reach their dead-letter queue.
        for &seq in &fx.removed {
            if !fx.dead.iter().any(|d| d.entry.seq == seq) {
                records.push(Record::Ack {
                    queue: name.clone(),
                    seq,
                });
            }
        }
        for &(seq, count) in &fx.redelivered {
            records.push(Record::Redelivered {
                queue: name.clone(),
                seq,
                count,
            });
        }
    }

    /// Tells every consumer the queue was closed or reopened (an event on `/sys/events`).
    fn notify_closed(&self, closed: bool) {
        for (consumer, sink) in &self.inner.sinks {
            let _ = sink.send(SessionEvent::QueueClosed {
                consumer: *consumer,
                closed,
            });
        }
    }

    /// Hands deliveries to consumers' sessions, in order, under the queue lock.
    fn deliver(&mut self) {
        for (consumer, seq) in self.fx.timed_out.drain(..) {
            if let Some(sink) = self.inner.sinks.get(&consumer) {
                let _ = sink.send(SessionEvent::AckTimeout { consumer, seq });
            }
        }
        if self.inner.state.is_closed() && self.inner.state.depth() == 0 && !self.inner.eos_sent {
            self.inner.eos_sent = true;
            for (consumer, sink) in &self.inner.sinks {
                let _ = sink.send(SessionEvent::EndOfStream {
                    consumer: *consumer,
                });
            }
        }
        for (consumer, delivery) in self.fx.deliveries.drain(..) {
            match self.inner.sinks.get(&consumer) {
                Some(sink) => {
                    if sink
                        .send(SessionEvent::Deliver { consumer, delivery })
                        .is_err()
                    {
                        // The session ended between its last frame and its unsubscribe: the queue
                        // gets the message back when that unsubscribe arrives.
                        tracing::debug!(queue = %self.queue.name, "delivery to a closed session");
                    }
                }
                None => tracing::warn!(
                    queue = %self.queue.name,
                    consumer,
                    "delivery to an unknown consumer"
                ),
            }
        }
    }
}

/// The loader of a persistent queue's paged-out messages.
fn loader(journal: Journal, name: String, destination: ByteStr) -> state::Loader {
    Arc::new(move |seq| load(&journal, &name, &destination, seq))
}

fn load(journal: &Journal, queue: &str, destination: &ByteStr, seq: u64) -> Option<SharedMessage> {
    match journal.read_message(queue, seq) {
        Ok(m) => Some(Arc::new(from_stored(destination.clone(), m))),
        Err(e) => {
            tracing::error!(queue, seq, error = %e, "cannot read a paged-out message back from the journal");
            None
        }
    }
}

/// A message as the journal stored it, back in the broker's form.
fn from_stored(destination: ByteStr, m: StoredMessage) -> Message {
    Message {
        destination,
        headers: m.headers,
        body: m.body,
        priority: m.priority.min(crate::message::MAX_PRIORITY),
        timestamp_ms: m.timestamp_ms,
        expires_at_ms: m.expires_at_ms,
        idempotency_key: m.idempotency_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::JournalOptions;
    use std::sync::atomic::Ordering::SeqCst;

    struct NoHost;
    impl QueueHost for NoHost {
        fn dead_letters(&self, _: &Queue, _: Vec<DeadLetter>) {}
    }

    fn message(body: &'static str) -> SharedMessage {
        Arc::new(Message {
            destination: "/queue/q".into(),
            headers: vec![("h".into(), "v".into())],
            body: bytes::Bytes::from_static(body.as_bytes()),
            priority: 4,
            timestamp_ms: 1,
            expires_at_ms: None,
            idempotency_key: None,
        })
    }

    #[test]
    fn a_failed_fire_and_forget_append_is_reported_to_its_sink_and_only_that_one() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = crate::storage::writer::Faults::default();
        let (journal, _) =
            Journal::open_with(JournalOptions::new(tmp.path()), faults.clone()).unwrap();
        let policy = QueuePolicy {
            persistent: true,
            ..QueuePolicy::default()
        };
        let q = Queue::new(
            "q".into(),
            "/queue/q".into(),
            policy,
            None,
            Some(journal.clone()),
        );
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink: ErrorSink = {
            let errors = errors.clone();
            Arc::new(move |e: &crate::storage::JournalError| errors.lock().push(e.to_string()))
        };
        faults.0.fail_writes.store(1, SeqCst);
        q.send_reporting(&NoHost, message("lost"), &sink).unwrap();
        journal.sync().wait().unwrap();
        assert_eq!(errors.lock().len(), 1, "{:?}", errors.lock());
        assert!(errors.lock()[0].contains("no space"), "{:?}", errors.lock());
        q.send_reporting(&NoHost, message("kept"), &sink).unwrap();
        journal.sync().wait().unwrap();
        assert_eq!(errors.lock().len(), 1, "a later success reports nothing");
        drop(q);
        journal.close().unwrap();
        let (_j, r) = Journal::open(JournalOptions::new(tmp.path())).unwrap();
        let bodies: Vec<_> = r.queues["q"]
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(bodies, ["kept"]);
    }
}
