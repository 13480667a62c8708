//! The broker's shared state: configuration, the destination registry and routing.
//!
//! Sessions hold an `Arc<Broker>` and resolve destination names to cheap handles (`Arc<Queue>`,
//! `Arc<Topic>`); they never hold queue state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use stompd_config::{Config, QueuePolicy};
use stompd_protocol::ByteStr;

use crate::auth::Authenticator;
use crate::error::ClientError;
use crate::message::{now_ms, Message};
use crate::queue::{DeadLetter, Queue, QueueHost};
use crate::storage::{Journal, Record, Recovered};
use crate::topic::Topic;
use stompd_config::Permission;

pub const QUEUE_PREFIX: &str = "/queue/";
/// Journal names of durable topic subscriptions' queues: `~durable/TOPIC/KEY` (`/` cannot occur
/// in a queue name, so these never collide with `/queue/` names).
pub const DURABLE_PREFIX: &str = "~durable/";
/// Destination under which a durable subscription's queue is listed (admin API).
pub const DURABLE_DEST_PREFIX: &str = "/durable/";

/// Produces the configuration a reload applies (the file re-read, command-line overrides
/// re-applied), or an error message naming what is wrong.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
pub const TOPIC_PREFIX: &str = "/topic/";
pub const TEMP_QUEUE_PREFIX: &str = "/temp-queue/";

/// Who is asking; filled from CONNECT.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
    pub anonymous: bool,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            groups: Vec::new(),
            anonymous: true,
        }
    }

    /// Matches an access-list entry: `*`, a user name, or `group:NAME`.
    pub fn matches(&self, entry: &str) -> bool {
        entry == "*"
            || entry == self.name
            || entry
                .strip_prefix("group:")
                .is_some_and(|g| self.groups.iter().any(|mine| mine == g))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
}

#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Topic(Arc<Topic>),
}

pub struct Broker {
    config: RwLock<Arc<Config>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    next_id: AtomicU64,
    /// The shared journal of persistent queues; `None` when the broker runs without storage.
    journal: Option<Journal>,
    /// Live connections and broker-wide traffic counters.
    pub registry: crate::registry::Registry,
    /// Swapped as a whole on reload.
    auth: RwLock<Arc<Authenticator>>,
    /// Where a reload reads the configuration from (file plus command-line overrides).
    config_source: parking_lot::Mutex<Option<ConfigSource>>,
    pub started_at_ms: u64,
}

impl Broker {
    /// A broker without storage: persistent queues behave as ephemeral ones (tests, tools).
    pub fn new(config: Config) -> Arc<Broker> {
        Broker::with_storage(config, None, false)
    }

    /// A broker over an opened journal, rebuilding every queue it recovered.
    ///
    /// `after_crash`: the previous run did not stop cleanly, so any recovered message may have
    /// been delivered (its ACK lost with the crash): such messages are marked redelivered.
    pub fn with_storage(
        config: Config,
        storage: Option<(Journal, Recovered)>,
        after_crash: bool,
    ) -> Arc<Broker> {
        let (journal, recovered) = match storage {
            Some((j, r)) => (Some(j), Some(r)),
            None => (None, None),
        };
        // main.rs refuses a bad configuration before this; a broker built in code fails closed.
        let auth = Authenticator::new(&config.auth).unwrap_or_else(|_| Authenticator::locked());
        let broker = Arc::new(Broker {
            config: RwLock::new(Arc::new(config)),
            queues: RwLock::new(HashMap::new()),
            topics: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            journal,
            registry: Default::default(),
            auth: RwLock::new(Arc::new(auth)),
            config_source: parking_lot::Mutex::new(None),
            started_at_ms: now_ms(),
        });
        broker.declare_configured();
        if let Some(recovered) = recovered {
            broker.restore(recovered, after_crash);
        }
        if let Some(journal) = &broker.journal {
            let weak = Arc::downgrade(&broker);
            journal.on_failed_batch(Arc::new(move |records| {
                if let Some(b) = weak.upgrade() {
                    b.discard_unstored(records);
                }
            }));
        }
        broker
    }

    /// Takes back messages whose journal write failed (disk full): their SENDs get an ERROR,
    /// so they must not be delivered. One already handed to a consumer stays with it.
    fn discard_unstored(&self, records: &[crate::storage::Record]) {
        for r in records {
            let Some(seq) = r.enqueued().map(|m| m.seq) else {
                continue;
            };
            let queue = r.queue();
            let dest = match queue.strip_prefix(DURABLE_PREFIX) {
                Some(rest) => format!("{DURABLE_DEST_PREFIX}{rest}"),
                None => format!("{QUEUE_PREFIX}{queue}"),
            };
            if let Some(q) = self.queue(&dest) {
                let removed = q.remove(self, seq);
                tracing::warn!(
                    queue = %dest,
                    seq,
                    removed,
                    "message not stored (journal write failed); taken back from the queue"
                );
            }
        }
    }

    /// Sets how [`Broker::reload`] obtains the new configuration.
    pub fn set_config_source(&self, source: ConfigSource) {
        *self.config_source.lock() = Some(source);
    }

    /// Reloads the configuration (SIGHUP, admin API) without dropping connections: queue and
    /// topic definitions, policies, users and rules change; listeners, storage and limits of
    /// already open connections do not (they need a restart). An invalid configuration is
    /// refused and the running one kept.
    pub fn reload(&self) -> Result<String, String> {
        let source = self.config_source.lock();
        let Some(load) = source.as_ref() else {
            return Err("this broker has no configuration source to reload from".into());
        };
        let config = load()?;
        drop(source);
        let auth = Authenticator::new(&config.auth).map_err(|e| e.to_string())?;
        let old = self.config();
        let mut notes = Vec::new();
        if old.server.listen != config.server.listen
            || old.websocket.listen != config.websocket.listen
            || old.admin.listen != config.admin.listen
            || old.storage.dir != config.storage.dir
        {
            notes.push("listener and storage changes take effect at the next restart".to_owned());
        }
        *self.config.write() = Arc::new(config);
        *self.auth.write() = Arc::new(auth);
        let config = self.config();
        let mut changed = 0;
        for q in self.queues() {
            if q.owner().is_some() {
                continue;
            }
            if let Some(mut policy) = config.resolve_queue(q.name()) {
                // Whether a queue is journaled is fixed when it is created.
                policy.persistent = q.is_persistent();
                let closed_before = q.is_closed();
                if q.policy() != policy {
                    let close_changed = policy.closed != q.policy().closed;
                    q.set_policy(policy.clone());
                    if close_changed && policy.closed != closed_before {
                        drop(q.set_closed(policy.closed));
                    }
                    changed += 1;
                }
            }
        }
        let before = self.queues.read().len() + self.topics.read().len();
        self.declare_configured();
        let added = self.queues.read().len() + self.topics.read().len() - before;
        let summary = format!(
            "configuration reloaded: {changed} queue policies changed, {added} destinations added{}",
            if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
        );
        tracing::info!("{summary}");
        Ok(summary)
    }

    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.read().clone()
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Rebuilds queues from the journal. A queue that is no longer configured and matches no
    /// rule keeps its messages anyway (persistent, default policy): stored data is never dropped
    /// because of a configuration change.
    fn restore(&self, recovered: Recovered, after_crash: bool) {
        let config = self.config();
        for (name, mut rq) in recovered.queues {
            if after_crash {
                for m in &mut rq.messages {
                    m.redelivery_count = m.redelivery_count.max(1);
                }
                for m in &mut rq.paged {
                    m.redelivery_count = m.redelivery_count.max(1);
                }
            }
            if let Some(rest) = name.strip_prefix(DURABLE_PREFIX) {
                // A durable topic subscription: re-attach its queue to its topic.
                let Some((topic_name, key)) = rest.split_once('/') else {
                    continue;
                };
                let tdest = format!("{TOPIC_PREFIX}{topic_name}");
                let topic = self
                    .topics
                    .write()
                    .entry(tdest.clone())
                    .or_insert_with(|| Topic::new(topic_name.to_owned(), ByteStr::from(tdest)))
                    .clone();
                let q = self.durable_queue(&topic, key);
                let n = rq.messages.len() + rq.paged.len();
                q.restore_keys(rq.keys);
                q.restore(rq.messages, rq.paged, false, rq.next_seq);
                tracing::info!(topic = %topic.destination(), subscription = key, messages = n, "durable subscription recovered");
                continue;
            }
            let dest = format!("{QUEUE_PREFIX}{name}");
            let queue = match self.queue(&dest) {
                Some(q) => q,
                None => {
                    let policy = match config.resolve_queue(&name) {
                        Some(p) => p,
                        None => {
                            if rq.messages.is_empty() && rq.paged.is_empty() {
                                continue;
                            }
                            tracing::warn!(
                                queue = name,
                                messages = rq.messages.len() + rq.paged.len(),
                                "stored queue is no longer configured; keeping its messages"
                            );
                            QueuePolicy {
                                persistent: true,
                                ..QueuePolicy::default()
                            }
                        }
                    };
                    let q = Queue::new(
                        name.clone(),
                        ByteStr::from(dest.clone()),
                        policy,
                        None,
                        self.journal.clone(),
                    );
                    self.queues.write().insert(dest, q.clone());
                    q
                }
            };
            let stored = !(rq.messages.is_empty() && rq.paged.is_empty());
            if !queue.is_persistent() && stored {
                tracing::warn!(
                    queue = name,
                    "queue is now ephemeral; its stored messages are kept in memory only"
                );
                // An ephemeral queue cannot read from the journal later: read them all now.
                if let Some(journal) = &self.journal {
                    for p in std::mem::take(&mut rq.paged) {
                        match journal.read_message(&name, p.seq) {
                            Ok(mut m) => {
                                m.redelivery_count = p.redelivery_count;
                                rq.messages.push(m);
                            }
                            Err(e) => {
                                tracing::error!(queue = name, seq = p.seq, error = %e, "stored message cannot be read")
                            }
                        }
                    }
                    rq.messages.sort_by_key(|m| m.seq);
                }
            }
            let n = rq.messages.len() + rq.paged.len();
            queue.restore_keys(rq.keys);
            queue.restore(rq.messages, rq.paged, rq.closed, rq.next_seq);
            if n > 0 {
                tracing::info!(queue = name, messages = n, "queue recovered");
            }
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// A broker-unique id for sessions and consumers.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates every queue and topic the configuration names, so they exist (and can be written
    /// to) before anyone subscribes.
    fn declare_configured(&self) {
        let config = self.config();
        let mut queues = self.queues.write();
        for name in config.queues.keys() {
            if let Some(policy) = config.queue_policy(name) {
                let dest = format!("{QUEUE_PREFIX}{name}");
                queues.entry(dest.clone()).or_insert_with(|| {
                    Queue::new(
                        name.clone(),
                        ByteStr::from(dest),
                        policy,
                        None,
                        self.journal.clone(),
                    )
                });
            }
        }
        let mut topics = self.topics.write();
        for name in config.topics.keys() {
            let dest = format!("{TOPIC_PREFIX}{name}");
            topics
                .entry(dest.clone())
                .or_insert_with(|| Topic::new(name.clone(), ByteStr::from(dest)));
        }
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        let mut v: Vec<_> = self.queues.read().values().cloned().collect();
        v.sort_by(|a, b| a.destination().cmp(b.destination()));
        v
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics.read().values().cloned().collect();
        v.sort_by(|a, b| a.destination().cmp(b.destination()));
        v
    }

    /// The queue keeping a durable subscription's messages, created on first use. It is
    /// persistent when the topic is (`[topics.NAME] persistent`, or the matching auto_create
    /// rule's `persistent`).
    pub fn durable_queue(&self, topic: &Arc<Topic>, key: &str) -> Arc<Queue> {
        if let Some(q) = topic.durable(key) {
            return q;
        }
        let name = format!("{DURABLE_PREFIX}{}/{key}", topic.name());
        let dest = format!("{DURABLE_DEST_PREFIX}{}/{key}", topic.name());
        let config = self.config();
        let mut policy = QueuePolicy::default();
        policy.apply(&config.queue_defaults);
        policy.persistent = match config.topics.get(topic.name()) {
            Some(t) => t.persistent,
            None => config
                .auto_create_rule(topic.destination())
                .and_then(|r| r.policy.persistent)
                .unwrap_or(false),
        };
        policy.closed = false;
        policy.read = None;
        policy.write = None;
        let mut queues = self.queues.write();
        let q = queues
            .entry(dest.clone())
            .or_insert_with(|| {
                tracing::info!(topic = %topic.destination(), subscription = key, persistent = policy.persistent, "durable subscription created");
                Queue::new(name.clone(), ByteStr::from(dest), policy, None, self.journal.clone())
            })
            .clone();
        drop(queues);
        if q.is_persistent() {
            if let Some(j) = &self.journal {
                drop(j.append(vec![Record::QueueCreated { queue: name.into() }]));
            }
        }
        topic.attach_durable(key.to_owned(), q.clone());
        q
    }

    /// Moves the ready messages of a dead-letter queue back to the queues they came from
    /// (`original-destination`), without the dead-letter headers. Each message is removed from
    /// the dead-letter queue only once its original queue accepted it. Returns (moved, kept).
    pub fn redrive(&self, dlq_destination: &str) -> Result<(u64, u64), ClientError> {
        let dlq = self.queue(dlq_destination).ok_or_else(|| {
            ClientError::new(
                "unknown-destination",
                format!("queue {dlq_destination} does not exist"),
            )
        })?;
        let (mut moved, mut kept) = (0, 0);
        for d in dlq.browse(usize::MAX) {
            let target = d.msg.header("original-destination").and_then(|o| {
                self.queue(o).or_else(|| {
                    let name = o.strip_prefix(QUEUE_PREFIX)?;
                    self.create_queue(o, name, &Principal::anonymous()).ok()
                })
            });
            let Some(target) = target else {
                kept += 1;
                continue;
            };
            let headers = d
                .msg
                .headers
                .iter()
                .filter(|(n, _)| {
                    !n.as_str().starts_with("dead-letter-") && !n.as_str().starts_with("original-")
                })
                .cloned()
                .collect();
            let msg = Message {
                destination: target.destination().clone(),
                headers,
                body: d.msg.body.clone(),
                priority: d.msg.priority,
                timestamp_ms: now_ms(),
                expires_at_ms: None,
                idempotency_key: None,
            };
            match target.send(self, msg) {
                Ok(_) => {
                    dlq.remove(self, d.seq);
                    moved += 1;
                }
                Err(e) => {
                    tracing::warn!(dead_letter = dlq_destination, to = %target.destination(), error = %e, "redrive refused");
                    kept += 1;
                }
            }
        }
        tracing::info!(
            dead_letter = dlq_destination,
            moved,
            kept,
            "dead letters moved back"
        );
        Ok((moved, kept))
    }

    /// Removes a durable subscription and its stored messages.
    pub fn remove_durable(&self, topic: &Arc<Topic>, key: &str) -> bool {
        let Some(q) = topic.detach_durable(key) else {
            return false;
        };
        self.queues.write().remove(q.destination().as_str());
        q.cancel_consumers("durable-subscription-removed");
        if q.is_persistent() {
            if let Some(j) = &self.journal {
                drop(j.append(vec![Record::QueueDeleted {
                    queue: q.name().into(),
                }]));
            }
        }
        tracing::info!(topic = %topic.destination(), subscription = key, "durable subscription removed");
        true
    }

    pub fn topic(&self, destination: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(destination).cloned()
    }

    pub fn queue(&self, destination: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(destination).cloned()
    }

    /// Resolves a destination for `principal`, creating it when a rule allows.
    /// `session` is the asking session, owner of its `/temp-queue/` names.
    pub fn resolve(
        &self,
        destination: &str,
        principal: &Principal,
        intent: Intent,
        session: u64,
    ) -> Result<Destination, ClientError> {
        if !destination.starts_with(TEMP_QUEUE_PREFIX) {
            // Temporary queues are private to their connection and reached through reply-to;
            // the access rules cover every other destination.
            let perm = match intent {
                Intent::Read => Permission::Read,
                Intent::Write => Permission::Write,
            };
            if !self.authenticator().authorize(principal, destination, perm) {
                let verb = if intent == Intent::Read {
                    "read from"
                } else {
                    "write to"
                };
                return Err(ClientError::new(
                    "access-denied",
                    format!("{} may not {verb} {destination}", principal.name),
                ));
            }
        }
        if let Some(name) = destination.strip_prefix(QUEUE_PREFIX) {
            check_name(destination, name)?;
            let queue = match self.queue(destination) {
                Some(q) => q,
                None => self.create_queue(destination, name, principal)?,
            };
            if !queue.allows(principal, intent) {
                let verb = if intent == Intent::Read {
                    "read from"
                } else {
                    "write to"
                };
                return Err(ClientError::new(
                    "access-denied",
                    format!("{} may not {verb} {destination}", principal.name),
                ));
            }
            return Ok(Destination::Queue(queue));
        }
        if let Some(name) = destination.strip_prefix(TOPIC_PREFIX) {
            check_name(destination, name)?;
            // A topic's own read/write lists further restrict the access rules.
            if let Some(tc) = self.config().topics.get(name) {
                let list = match intent {
                    Intent::Read => &tc.read,
                    Intent::Write => &tc.write,
                };
                if list
                    .as_ref()
                    .is_some_and(|l| !l.iter().any(|e| principal.matches(e)))
                {
                    let verb = if intent == Intent::Read {
                        "read from"
                    } else {
                        "write to"
                    };
                    return Err(ClientError::new(
                        "access-denied",
                        format!("{} may not {verb} {destination}", principal.name),
                    ));
                }
            }
            if let Some(t) = self.topics.read().get(destination) {
                return Ok(Destination::Topic(t.clone()));
            }
            return self
                .create_topic(destination, name, principal)
                .map(Destination::Topic);
        }
        if let Some(name) = destination.strip_prefix(TEMP_QUEUE_PREFIX) {
            check_name(destination, name)?;
            if let Some(q) = self.queue(destination) {
                // Anyone holding the name may reply to it; only its owner reads it.
                if intent == Intent::Read && q.owner() != Some(session) {
                    return Err(ClientError::new(
                        "access-denied",
                        format!("{destination} is private to the connection that created it"),
                    ));
                }
                return Ok(Destination::Queue(q));
            }
            // Only the owner creates its temporary queues, under the name `temp_name` gave it.
            return match temp_owner(name) {
                Some(owner) if owner == session => Ok(Destination::Queue(self.create_temp_queue(
                    destination,
                    name,
                    session,
                ))),
                Some(_) => Err(ClientError::new(
                    "unknown-destination",
                    format!(
                        "temporary queue {destination} does not exist (its connection has closed)"
                    ),
                )),
                None => Err(ClientError::new(
                    "bad-destination",
                    format!("temporary queue name {destination} lacks its connection suffix"),
                )),
            };
        }
        Err(ClientError::new(
            "bad-destination",
            format!(
                "destination {destination:?} is not supported: use {QUEUE_PREFIX}NAME, {TOPIC_PREFIX}NAME or {TEMP_QUEUE_PREFIX}NAME"
            ),
        ))
    }

    fn create_queue(
        &self,
        destination: &str,
        name: &str,
        principal: &Principal,
    ) -> Result<Arc<Queue>, ClientError> {
        let config = self.config();
        let Some(rule) = config.auto_create_rule(destination) else {
            return Err(ClientError::new(
                "unknown-destination",
                format!(
                    "queue {destination} is not defined and no auto_create rule allows creating it"
                ),
            ));
        };
        if !rule.who.iter().any(|w| principal.matches(w))
            || !self
                .authenticator()
                .authorize(principal, destination, Permission::Create)
        {
            return Err(ClientError::new(
                "access-denied",
                format!("{} may not create {destination}", principal.name),
            ));
        }
        let policy = config
            .resolve_queue(name)
            .unwrap_or_else(|| config.auto_queue_policy(rule));
        let mut queues = self.queues.write();
        if let Some(q) = queues.get(destination) {
            return Ok(q.clone());
        }
        tracing::info!(
            destination,
            persistent = policy.persistent,
            "queue created on first use"
        );
        let queue = Queue::new(
            name.to_owned(),
            ByteStr::from(destination),
            policy,
            None,
            self.journal.clone(),
        );
        queues.insert(destination.to_owned(), queue.clone());
        drop(queues);
        if let Some(journal) = self.journal.as_ref().filter(|_| queue.is_persistent()) {
            // So an empty run-time queue is still listed after a restart; not awaited.
            drop(journal.append(vec![Record::QueueCreated { queue: name.into() }]));
        }
        Ok(queue)
    }

    fn create_topic(
        &self,
        destination: &str,
        name: &str,
        principal: &Principal,
    ) -> Result<Arc<Topic>, ClientError> {
        let config = self.config();
        let Some(rule) = config.auto_create_rule(destination) else {
            return Err(ClientError::new(
                "unknown-destination",
                format!(
                    "topic {destination} is not defined and no auto_create rule allows creating it"
                ),
            ));
        };
        if !rule.who.iter().any(|w| principal.matches(w))
            || !self
                .authenticator()
                .authorize(principal, destination, Permission::Create)
        {
            return Err(ClientError::new(
                "access-denied",
                format!("{} may not create {destination}", principal.name),
            ));
        }
        let mut topics = self.topics.write();
        Ok(topics
            .entry(destination.to_owned())
            .or_insert_with(|| {
                tracing::debug!(destination, "topic created on first use");
                Topic::new(name.to_owned(), ByteStr::from(destination))
            })
            .clone())
    }

    fn create_temp_queue(&self, destination: &str, name: &str, session: u64) -> Arc<Queue> {
        let config = self.config();
        // Temporary queues are private, in memory, and live as long as their connection.
        let mut policy = QueuePolicy::default();
        policy.apply(&config.queue_defaults);
        policy.persistent = false;
        policy.closed = false;
        policy.read = None;
        policy.write = None;
        policy.dead_letter = None;
        self.queues
            .write()
            .entry(destination.to_owned())
            .or_insert_with(|| {
                Queue::new(
                    name.to_owned(),
                    ByteStr::from(destination),
                    policy,
                    Some(session),
                    None,
                )
            })
            .clone()
    }

    /// Creates `/queue/NAME` at run time (admin API) with the policy the configuration gives that
    /// name: a `[queues.NAME]` table or the first matching `[[auto_create]]` rule. Codes:
    /// `bad-destination` (invalid name), `queue-exists`, `unknown-destination` (no rule allows it).
    pub fn declare_queue(&self, name: &str) -> Result<Arc<Queue>, ClientError> {
        let destination = format!("{QUEUE_PREFIX}{name}");
        check_name(&destination, name)?;
        let config = self.config();
        let Some(policy) = config.resolve_queue(name) else {
            return Err(ClientError::new(
                "unknown-destination",
                format!("queue {destination} is not configured and no auto_create rule matches it"),
            ));
        };
        let mut queues = self.queues.write();
        if queues.contains_key(&destination) {
            return Err(ClientError::new(
                "queue-exists",
                format!("queue {destination} already exists"),
            ));
        }
        let queue = Queue::new(
            name.to_owned(),
            ByteStr::from(destination.clone()),
            policy,
            None,
            self.journal.clone(),
        );
        queues.insert(destination, queue.clone());
        drop(queues);
        if let Some(journal) = self.journal.as_ref().filter(|_| queue.is_persistent()) {
            drop(journal.append(vec![Record::QueueCreated { queue: name.into() }]));
        }
        Ok(queue)
    }

    /// Deletes a run-time `/queue/` queue (admin API): it leaves the registry, its consumers are
    /// cancelled, and a persistent one journals `QueueDeleted` (the returned commit resolves when
    /// that is durable). Configured queues (`[queues.NAME]`) and temporary queues are refused
    /// (`queue-configured`, `bad-destination`); an unknown one is `unknown-destination`.
    pub fn delete_queue(
        &self,
        destination: &str,
    ) -> Result<(Arc<Queue>, Option<crate::storage::Commit>), ClientError> {
        if let Some(rest) = destination.strip_prefix(DURABLE_DEST_PREFIX) {
            // A durable subscription (listed as /durable/TOPIC/KEY).
            let (topic, key) = rest.split_once('/').ok_or_else(|| {
                ClientError::new(
                    "unknown-destination",
                    format!("{destination} does not exist"),
                )
            })?;
            let t = self.topic(&format!("{TOPIC_PREFIX}{topic}"));
            let q = self.queue(destination);
            return match (t, q) {
                (Some(t), Some(q)) if self.remove_durable(&t, key) => Ok((q, None)),
                _ => Err(ClientError::new(
                    "unknown-destination",
                    format!("durable subscription {destination} does not exist"),
                )),
            };
        }
        let Some(name) = destination.strip_prefix(QUEUE_PREFIX) else {
            return Err(ClientError::new(
                "bad-destination",
                format!("only {QUEUE_PREFIX}NAME queues can be deleted, not {destination}"),
            ));
        };
        if self.config().queues.contains_key(name) {
            return Err(ClientError::new(
                "queue-configured",
                format!(
                    "queue {destination} is configured; remove it from the configuration instead"
                ),
            ));
        }
        let Some(queue) = self.queues.write().remove(destination) else {
            return Err(ClientError::new(
                "unknown-destination",
                format!("queue {destination} does not exist"),
            ));
        };
        queue.cancel_consumers("queue-deleted");
        let commit = self
            .journal
            .as_ref()
            .filter(|_| queue.is_persistent())
            .map(|journal| journal.append(vec![Record::QueueDeleted { queue: name.into() }]));
        tracing::info!(destination, "queue deleted");
        Ok((queue, commit))
    }

    /// Removes a session's temporary queues when it closes; their consumers are told.
    pub fn drop_temp_queues(&self, session: u64) {
        let mut queues = self.queues.write();
        queues.retain(|_, q| {
            if q.owner() == Some(session) {
                q.cancel_consumers("temporary-queue-deleted");
                false
            } else {
                true
            }
        });
    }

    /// Sweeps expired messages from every queue.
    pub fn expire_all(&self) {
        let now = now_ms();
        for q in self.queues() {
            q.tick(self, now);
        }
    }

    /// Keeps the bodies that persistent queues hold in memory within
    /// `storage.memory_budget_bytes`: when over it, the messages due last (largest queues
    /// first) are paged out down to 90% of it, to be read back from the journal when due.
    /// Returns the bytes paged out.
    pub fn enforce_memory_budget(&self) -> u64 {
        if self.journal.is_none() {
            return 0;
        }
        let budget = self.config().storage.memory_budget();
        if budget == u64::MAX {
            return 0;
        }
        let mut queues: Vec<(u64, Arc<Queue>)> = self
            .queues()
            .into_iter()
            .filter(|q| q.is_persistent())
            .map(|q| (q.resident_bytes(), q))
            .collect();
        let total: u64 = queues.iter().map(|(r, _)| r).sum();
        if total <= budget {
            return 0;
        }
        let mut excess = total - budget / 10 * 9;
        queues.sort_by_key(|(resident, _)| std::cmp::Reverse(*resident));
        let mut freed = 0;
        for (resident, q) in queues {
            let f = q.page_out(resident.min(excess));
            freed += f;
            excess = excess.saturating_sub(f);
            if excess == 0 {
                break;
            }
        }
        if freed > 0 {
            tracing::debug!(
                resident_bytes = total - freed,
                budget,
                paged_out_bytes = freed,
                "message bodies paged out to the journal"
            );
        }
        freed
    }
}

/// `/temp-queue/NAME` as the owning session writes it becomes a broker-wide name carrying the
/// session id, so a reply-to handed to another client resolves to the same queue.
pub fn temp_name(destination: &str, session: u64) -> Option<String> {
    let name = destination.strip_prefix(TEMP_QUEUE_PREFIX)?;
    if temp_owner(name).is_some() {
        return None;
    }
    Some(format!("{TEMP_QUEUE_PREFIX}{name}@{session}"))
}

fn temp_owner(name: &str) -> Option<u64> {
    name.rsplit_once('@').and_then(|(_, s)| s.parse().ok())
}

fn check_name(destination: &str, name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        return Err(ClientError::new(
            "bad-destination",
            format!("destination {destination:?} has an empty or invalid name"),
        ));
    }
    Ok(())
}

impl QueueHost for Broker {
    fn dead_letters(&self, from: &Queue, dead: Vec<DeadLetter>) {
        let policy = from.policy();
        let target = policy
            .dead_letter
            .as_deref()
            .map(|name| format!("{QUEUE_PREFIX}{name}"))
            .and_then(|dest| {
                let q = self.queue(&dest).or_else(|| {
                    let name = dest.strip_prefix(QUEUE_PREFIX)?.to_owned();
                    self.create_queue(&dest, &name, &Principal::anonymous())
                        .ok()
                });
                if q.is_none() {
                    tracing::warn!(
                        queue = from.name(),
                        dead_letter = dest,
                        "dead-letter queue cannot be created"
                    );
                }
                q
            });
        let now = now_ms();
        for d in dead {
            let seq = d.entry.seq;
            let Some(dlq) = &target else {
                tracing::info!(
                    queue = from.name(),
                    seq,
                    reason = d.reason.as_str(),
                    "message dropped (no dead-letter queue)"
                );
                continue;
            };
            let Some(original) = &d.entry.msg else {
                tracing::error!(
                    queue = from.name(),
                    seq,
                    "dead letter could not be read back from the journal; it stays in its queue's journal"
                );
                continue;
            };
            let mut headers = original.headers.clone();
            let extra: [(&str, String); 6] = [
                ("original-destination", from.destination().to_string()),
                (
                    "original-message-id",
                    format!("{}@{}", from.destination(), seq),
                ),
                ("dead-letter-reason", d.reason.as_str().to_owned()),
                ("dead-letter-redeliveries", d.entry.redeliveries.to_string()),
                ("dead-letter-timestamp", now.to_string()),
                ("original-timestamp", original.timestamp_ms.to_string()),
            ];
            for (n, v) in extra {
                headers.push((ByteStr::from(n), ByteStr::from(v)));
            }
            let msg = Message {
                destination: dlq.destination().clone(),
                headers,
                body: original.body.clone(),
                priority: original.priority,
                timestamp_ms: now,
                // An expired message must stay readable in the dead-letter queue.
                expires_at_ms: None,
                idempotency_key: None,
            };
            if let Err(e) = dlq.send(self, msg) {
                tracing::warn!(queue = from.name(), dead_letter = dlq.name(), seq, error = %e, "dead letter refused; message dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::writer::Faults;
    use crate::storage::JournalOptions;
    use std::sync::atomic::Ordering::SeqCst;

    #[test]
    fn a_message_whose_journal_write_failed_is_taken_back_from_its_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let (journal, recovered) =
            Journal::open_with(JournalOptions::new(tmp.path()), faults.clone()).unwrap();
        let mut config = Config::embedded();
        config.storage.dir = tmp.path().to_path_buf();
        let broker = Broker::with_storage(config, Some((journal.clone(), recovered)), false);
        let q = broker
            .create_queue("/queue/full", "full", &Principal::anonymous())
            .unwrap();
        assert!(q.is_persistent());
        let msg = |body: &'static str| Message {
            destination: q.destination().clone(),
            headers: vec![],
            body: bytes::Bytes::from_static(body.as_bytes()),
            priority: 4,
            timestamp_ms: 1,
            expires_at_ms: None,
            idempotency_key: None,
        };
        faults.0.fail_writes.store(1, SeqCst);
        let (_, commit) = q.send(&*broker, msg("lost")).unwrap();
        let err = commit.expect("persistent").wait().unwrap_err();
        assert!(
            matches!(err, crate::storage::JournalError::DiskFull { .. }),
            "{err}"
        );
        // The hook ran before the waiter learned the error: the message is gone already.
        assert_eq!(q.stats().depth, 0);
        let (_, commit) = q.send(&*broker, msg("kept")).unwrap();
        commit.unwrap().wait().unwrap();
        let seen: Vec<_> = q.browse(10).iter().map(|d| d.msg.body.clone()).collect();
        assert_eq!(seen, ["kept"]);
    }
}
