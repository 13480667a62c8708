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

use crate::message::Message;
use crate::message::SharedMessage;
use crate::queue::{ConsumerId, Queue, QueueHost};
use crate::selector::Selector;
use crate::session::{SessionEvent, Sink};
use crate::storage::Commit;

/// A durable subscription: its key, its queue, and the selector filtering what it stores.
type Durable = (String, Arc<Queue>, Option<Arc<Selector>>);

pub struct Topic {
    name: String,
    /// Durable subscriptions: subscription key -> the queue that keeps its messages while the
    /// subscriber is away.
    durables: RwLock<Vec<Durable>>,
    destination: ByteStr,
    next_seq: AtomicU64,
    subscribers: RwLock<Vec<Subscriber>>,
    published: AtomicU64,
}

struct Subscriber {
    id: ConsumerId,
    selector: Option<Arc<Selector>>,
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
    pub fn subscribe(
        &self,
        id: ConsumerId,
        sink: Sink,
        pending: Arc<AtomicU32>,
        limit: u32,
        selector: Option<Arc<Selector>>,
    ) {
        self.subscribers.write().push(Subscriber {
            id,
            selector,
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
            .find(|(k, _, _)| k == key)
            .map(|(_, q, _)| q.clone())
    }

    pub fn attach_durable(&self, key: String, queue: Arc<Queue>) {
        let mut d = self.durables.write();
        if !d.iter().any(|(k, _, _)| *k == key) {
            d.push((key, queue, None));
        }
    }

    /// Sets (or clears) the selector that filters what a durable subscription stores; the
    /// latest SUBSCRIBE decides.
    pub fn set_durable_selector(&self, key: &str, selector: Option<Arc<Selector>>) {
        if let Some(e) = self.durables.write().iter_mut().find(|(k, _, _)| k == key) {
            e.2 = selector;
        }
    }

    pub fn detach_durable(&self, key: &str) -> Option<Arc<Queue>> {
        let mut d = self.durables.write();
        let pos = d.iter().position(|(k, _, _)| k == key)?;
        Some(d.remove(pos).1)
    }

    pub fn durable_keys(&self) -> Vec<String> {
        self.durables
            .read()
            .iter()
            .map(|(k, _, _)| k.clone())
            .collect()
    }

    /// Delivers to every current subscriber and stores a copy in every durable subscription's
    /// queue whose selector (if any) matches. Returns the journal commit of the last durable
    /// copy (commits complete in order, so it covers them all).
    pub fn publish_all(&self, host: &dyn QueueHost, msg: SharedMessage) -> Option<Commit> {
        let mut last = None;
        let durables: Vec<Arc<Queue>> = self
            .durables
            .read()
            .iter()
            .filter(|(_, _, sel)| sel.as_ref().is_none_or(|s| matches(s, &msg)))
            .map(|(_, q, _)| q.clone())
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
                if s.selector.as_ref().is_some_and(|sel| !matches(sel, &msg)) {
                    continue;
                }
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

const PRIORITIES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Evaluates a selector against a message: its headers, plus `priority`, `timestamp` and
/// `destination`, which the broker keeps outside the header list.
pub fn matches(selector: &Selector, msg: &Message) -> bool {
    let timestamp = msg.timestamp_ms.to_string();
    let lookup = |name: &str| -> Option<&str> {
        match name {
            "priority" => Some(
                msg.header("priority")
                    .unwrap_or(PRIORITIES[msg.priority.min(9) as usize]),
            ),
            "timestamp" => Some(timestamp.as_str()),
            "destination" => Some(msg.destination.as_str()),
            _ => msg.header(name),
        }
    };
    selector.matches(&lookup)
}
