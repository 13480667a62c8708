//! A queue: the sole owner of its [`QueueState`], behind a short synchronous lock.
//!
//! Why a lock and not an actor task: every operation is a few pointer moves, never awaits, and the
//! producer's own task can then hand deliveries straight to consumers' session channels with no
//! extra hop. The lock is never held across an `.await`; deliveries are pushed into unbounded
//! channels under it (non-blocking, and bounded in practice by each consumer's credit) so that two
//! producers cannot reorder what one consumer sees.

pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use stompd_config::QueuePolicy;
use stompd_protocol::ByteStr;

use crate::message::{now_ms, Message, SharedMessage};
use crate::session::{SessionEvent, Sink};
pub use state::{
    ConsumerId, ConsumerSpec, Counters, DeadLetter, DeadReason, Delivery, Effects, EnqueueError,
    Limit, QueueState, QueueStats,
};

/// Where a queue's dead letters and durable records go; implemented by the broker so a queue
/// never needs to know the registry.
pub trait QueueHost: Send + Sync {
    /// Carries out dead letters produced by `from` (outside `from`'s lock).
    fn dead_letters(&self, from: &Queue, dead: Vec<DeadLetter>);
}

pub struct Queue {
    /// Name without prefix (`orders` for `/queue/orders`).
    name: String,
    /// Full destination as clients name it.
    destination: ByteStr,
    /// Set for `/temp-queue/` queues: the session that owns it.
    owner: Option<u64>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: QueueState,
    sinks: HashMap<ConsumerId, Sink>,
}

impl Queue {
    pub fn new(
        name: String,
        destination: ByteStr,
        policy: QueuePolicy,
        owner: Option<u64>,
    ) -> Arc<Queue> {
        Arc::new(Queue {
            name,
            destination,
            owner,
            inner: Mutex::new(Inner {
                state: QueueState::new(policy),
                sinks: HashMap::new(),
            }),
        })
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

    /// Checks closed state and limits without enqueueing (transactions check every SEND first).
    pub fn admit(&self, size: u64) -> Result<(), EnqueueError> {
        self.inner.lock().state.admit(size).map(|_| ())
    }

    pub fn send(&self, host: &dyn QueueHost, msg: Message) -> Result<u64, EnqueueError> {
        self.send_shared(host, Arc::new(msg))
    }

    pub fn send_shared(
        &self,
        host: &dyn QueueHost,
        msg: SharedMessage,
    ) -> Result<u64, EnqueueError> {
        let mut fx = Effects::default();
        let seq = {
            let mut inner = self.inner.lock();
            let seq = inner.state.enqueue(msg, now_ms(), &mut fx)?;
            inner.deliver(&self.name, &mut fx);
            seq
        };
        self.finish(host, fx);
        Ok(seq)
    }

    pub fn subscribe(&self, host: &dyn QueueHost, spec: ConsumerSpec, sink: Sink) {
        let mut fx = Effects::default();
        {
            let mut inner = self.inner.lock();
            inner.sinks.insert(spec.id, sink);
            inner.state.add_consumer(spec, now_ms(), &mut fx);
            inner.deliver(&self.name, &mut fx);
        }
        self.finish(host, fx);
    }

    pub fn unsubscribe(&self, host: &dyn QueueHost, consumer: ConsumerId) {
        let mut fx = Effects::default();
        {
            let mut inner = self.inner.lock();
            inner.sinks.remove(&consumer);
            inner.state.remove_consumer(consumer, now_ms(), &mut fx);
            inner.deliver(&self.name, &mut fx);
        }
        self.finish(host, fx);
    }

    pub fn ack(&self, host: &dyn QueueHost, consumer: ConsumerId, seqs: &[u64]) -> usize {
        let mut fx = Effects::default();
        let n = {
            let mut inner = self.inner.lock();
            let n = inner.state.ack(consumer, seqs, now_ms(), &mut fx);
            inner.deliver(&self.name, &mut fx);
            n
        };
        self.finish(host, fx);
        n
    }

    pub fn nack(
        &self,
        host: &dyn QueueHost,
        consumer: ConsumerId,
        seqs: &[u64],
        requeue: bool,
    ) -> usize {
        let mut fx = Effects::default();
        let n = {
            let mut inner = self.inner.lock();
            let n = inner.state.nack(consumer, seqs, requeue, now_ms(), &mut fx);
            inner.deliver(&self.name, &mut fx);
            n
        };
        self.finish(host, fx);
        n
    }

    /// Sweeps expired messages; returns the next expiry time, if any.
    pub fn expire(&self, host: &dyn QueueHost, now_ms: u64) -> Option<u64> {
        let mut fx = Effects::default();
        let next = {
            let mut inner = self.inner.lock();
            inner.state.expire(now_ms, &mut fx);
            inner.state.next_expiry()
        };
        self.finish(host, fx);
        next
    }

    pub fn browse(&self, limit: usize) -> Vec<Delivery> {
        self.inner.lock().state.browse(now_ms(), limit)
    }

    pub fn peek(&self, seq: u64) -> Option<Delivery> {
        self.inner.lock().state.peek(seq)
    }

    pub fn remove(&self, host: &dyn QueueHost, seq: u64) -> bool {
        let mut fx = Effects::default();
        let removed = self.inner.lock().state.remove(seq, &mut fx);
        self.finish(host, fx);
        removed
    }

    pub fn purge(&self, host: &dyn QueueHost) -> u64 {
        let mut fx = Effects::default();
        let n = self.inner.lock().state.purge(&mut fx);
        self.finish(host, fx);
        n
    }

    pub fn set_closed(&self, closed: bool) {
        self.inner.lock().state.set_closed(closed);
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().state.is_closed()
    }

    pub fn set_policy(&self, policy: QueuePolicy) {
        self.inner.lock().state.set_policy(policy);
    }

    /// Tells every consumer its subscription is gone (queue deleted), dropping their credit.
    pub fn cancel_consumers(&self, reason: &'static str) {
        let inner = self.inner.lock();
        for (id, sink) in &inner.sinks {
            let _ = sink.send(SessionEvent::Cancelled {
                consumer: *id,
                reason,
            });
        }
    }

    fn finish(&self, host: &dyn QueueHost, fx: Effects) {
        if !fx.dead.is_empty() {
            host.dead_letters(self, fx.dead);
        }
    }
}

impl Inner {
    /// Hands deliveries to consumers' sessions, in order, under the queue lock.
    fn deliver(&mut self, queue: &str, fx: &mut Effects) {
        for (consumer, delivery) in fx.deliveries.drain(..) {
            match self.sinks.get(&consumer) {
                Some(sink) => {
                    if let Err(err) = sink.send(SessionEvent::Deliver { consumer, delivery }) {
                        // The session ended between its last frame and its unsubscribe: the queue
                        // gets the message back when that unsubscribe arrives.
                        if let SessionEvent::Deliver { delivery, .. } = err.0 {
                            tracing::debug!(
                                queue,
                                seq = delivery.seq,
                                "delivery to a closed session"
                            );
                        }
                    }
                }
                None => tracing::warn!(queue, consumer, "delivery to an unknown consumer"),
            }
        }
    }
}
