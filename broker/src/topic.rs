//! A topic: every current subscriber gets every message, sharing one `Arc<Message>` (no copy).
//!
//! A topic keeps nothing, so it cannot wait for a slow subscriber without stalling its producers
//! and every other subscriber. Each subscriber has a bound on messages handed to its session and
//! not yet written; one that reaches it is cut off with an explicit cancellation (the session
//! turns it into an ERROR frame with code `slow-consumer`), never silently skipped.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use stompd_protocol::ByteStr;

use crate::message::SharedMessage;
use crate::queue::{ConsumerId, Queue, QueueHost};
use crate::session::{SessionEvent, Sink};
use crate::storage::Commit;

pub struct Topic {
    name: String,
    /// Durable subscriptions: subscription key -> the queue that keeps its messages while the
    /// subscriber is away.
    durables: RwLock<Vec<(String, Arc<Queue>)>>,
    destination: ByteStr,
    next_seq: AtomicU64,
    subscribers: RwLock<Vec<Subscriber>>,
    published: AtomicU64,
}

struct Subscriber {
    id: ConsumerId,
    sink: Sink,
    /// Messages handed to the session and not yet written; shared with the session.
    pending: Arc<AtomicU32>,
    limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    pub subscribers: u64,
    pub published: u64,
}

impl Topic {
    pub fn new(name: String, destination: ByteStr) -> Arc<Topic> {
        Arc::new(Topic {
            durables: RwLock::new(Vec::new()),
            name,
            destination,
            next_seq: AtomicU64::new(1),
            subscribers: RwLock::new(Vec::new()),
            published: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn destination(&self) -> &ByteStr {
        &self.destination
    }

    pub fn stats(&self) -> TopicStats {
        TopicStats {
            subscribers: self.subscribers.read().len() as u64,
            published: self.published.load(Ordering::Relaxed),
        }
    }

    /// Adds a subscriber; `pending` is decremented by its session as it writes.
    pub fn subscribe(&self, id: ConsumerId, sink: Sink, pending: Arc<AtomicU32>, limit: u32) {
        self.subscribers.write().push(Subscriber {
            id,
            sink,
            pending,
            limit: limit.max(1),
        });
    }

    pub fn unsubscribe(&self, id: ConsumerId) {
        self.subscribers.write().retain(|s| s.id != id);
    }

    pub fn durable(&self, key: &str) -> Option<Arc<Queue>> {
        self.durables
            .read()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, q)| q.clone())
    }

    pub fn attach_durable(&self, key: String, queue: Arc<Queue>) {
        let mut d = self.durables.write();
        if !d.iter().any(|(k, _)| *k == key) {
            d.push((key, queue));
        }
    }

    pub fn detach_durable(&self, key: &str) -> Option<Arc<Queue>> {
        let mut d = self.durables.write();
        let pos = d.iter().position(|(k, _)| k == key)?;
        Some(d.remove(pos).1)
    }

    pub fn durable_keys(&self) -> Vec<String> {
        self.durables
            .read()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Delivers to every current subscriber and stores a copy in every durable subscription's
    /// queue. Returns the journal commit of the last durable copy (commits complete in order,
    /// so it covers them all).
    pub fn publish_all(&self, host: &dyn QueueHost, msg: SharedMessage) -> Option<Commit> {
        let mut last = None;
        let durables: Vec<Arc<Queue>> = self
            .durables
            .read()
            .iter()
            .map(|(_, q)| q.clone())
            .collect();
        for q in durables {
            match q.send_shared(host, msg.clone()) {
                Ok((_, Some(c))) => last = Some(c),
                Ok((_, None)) => {}
                Err(e) => {
                    tracing::warn!(topic = %self.destination, queue = q.name(), error = %e, "durable subscription refused a message")
                }
            }
        }
        self.publish(msg);
        last
    }

    /// Delivers to every current subscriber. Returns the number of subscribers reached.
    pub fn publish(&self, msg: SharedMessage) -> usize {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut slow = Vec::new();
        let mut reached = 0;
        {
            let subs = self.subscribers.read();
            for s in subs.iter() {
                if s.pending.fetch_add(1, Ordering::AcqRel) >= s.limit {
                    s.pending.fetch_sub(1, Ordering::AcqRel);
                    slow.push(s.id);
                    continue;
                }
                let event = SessionEvent::TopicMessage {
                    consumer: s.id,
                    seq,
                    msg: msg.clone(),
                };
                if s.sink.send(event).is_ok() {
                    reached += 1;
                }
            }
        }
        if !slow.is_empty() {
            let mut subs = self.subscribers.write();
            subs.retain(|s| {
                if slow.contains(&s.id) {
                    tracing::warn!(topic = %self.destination, consumer = s.id, "slow subscriber cut off");
                    let _ = s.sink.send(SessionEvent::Cancelled {
                        consumer: s.id,
                        reason: "slow-consumer",
                    });
                    false
                } else {
                    true
                }
            });
        }
        reached
    }
}
