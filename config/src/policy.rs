//! Queue policies: the raw, layered form (every field optional) and the
//! resolved form the broker uses (every field concrete).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a queue treats the `ack` header of SUBSCRIBE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Acknowledgement {
    /// Clients choose their ack mode.
    #[default]
    Optional,
    /// SUBSCRIBE with `ack:auto` is refused.
    Required,
    /// Every subscription is treated as `ack:auto`.
    Auto,
}

/// What a full queue does with a new message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Refuse the SEND with an ERROR frame.
    #[default]
    Reject,
    /// Discard the oldest ready message to make room.
    DropOldest,
    /// Hold the producer up to `block_timeout`, then reject.
    Block,
}

/// What a NACK does with the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NackPolicy {
    /// Back to ready (subject to redelivery delay and `max_redeliveries`).
    #[default]
    Requeue,
    /// Straight to the dead-letter queue.
    DeadLetter,
    /// Discard.
    Drop,
}

/// One layer of queue policy as written in the file: `[queue_defaults]`,
/// an `[[auto_create]]` rule or `[queues.NAME]`. `None` = not set here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuePolicyRaw {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_priority: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_redeliveries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nack: Option<NackPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivery_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivery_backoff: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivery_delay_max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<String>>,
}

/// A resolved queue policy: built-in defaults < `[queue_defaults]` <
/// matching `[[auto_create]]` rule < `[queues.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuePolicy {
    pub persistent: bool,
    pub acknowledgement: Acknowledgement,
    /// Depth limit; 0 = unlimited.
    pub max_messages: u64,
    /// Body bytes limit; 0 = unlimited.
    pub max_bytes: u64,
    /// Most messages waiting (ready) at any one priority level; 0 = unlimited.
    pub max_messages_per_priority: u64,
    pub overflow: Overflow,
    /// How long a producer waits with `overflow = "block"`.
    pub block_timeout: Duration,
    /// Default per-subscription window in client ack modes (>= 1).
    pub prefetch: u32,
    /// 0..=9.
    pub default_priority: u8,
    /// `None` = messages do not expire unless the producer says so.
    pub default_ttl: Option<Duration>,
    /// 0 = unlimited.
    pub max_redeliveries: u32,
    /// Queue name (no `/queue/` prefix). Never the queue's own name when
    /// resolved with [`crate::Config::queue_policy`] or
    /// [`crate::Config::resolve_queue`].
    pub dead_letter: Option<String>,
    pub nack: NackPolicy,
    /// Delay before the first redelivery.
    pub redelivery_delay: Duration,
    /// Each further redelivery waits `backoff` times longer (>= 1.0).
    pub redelivery_backoff: f64,
    /// Cap on the redelivery delay.
    pub redelivery_delay_max: Duration,
    /// `None` = an unacked message stays with its consumer until disconnect.
    pub ack_timeout: Option<Duration>,
    /// Count of idempotency keys remembered; 0 = off.
    pub dedup_window: u64,
    /// How long idempotency keys are remembered; `None` = no time limit.
    pub dedup_window_time: Option<Duration>,
    /// Starts closed to producers.
    pub closed: bool,
    /// Who may subscribe/browse; `None` = no per-queue restriction.
    pub read: Option<Vec<String>>,
    /// Who may send; `None` = no per-queue restriction.
    pub write: Option<Vec<String>>,
}

impl Default for QueuePolicy {
    /// The built-in defaults (the bottom layer).
    fn default() -> Self {
        QueuePolicy {
            persistent: false,
            acknowledgement: Acknowledgement::Optional,
            max_messages: 0,
            max_bytes: 0,
            max_messages_per_priority: 0,
            overflow: Overflow::Reject,
            block_timeout: Duration::from_millis(5000),
            prefetch: 100,
            default_priority: 4,
            default_ttl: None,
            max_redeliveries: 0,
            dead_letter: None,
            nack: NackPolicy::Requeue,
            redelivery_delay: Duration::ZERO,
            redelivery_backoff: 2.0,
            redelivery_delay_max: Duration::from_millis(60_000),
            ack_timeout: None,
            dedup_window: 0,
            dedup_window_time: None,
            closed: false,
            read: None,
            write: None,
        }
    }
}

fn nonzero_ms(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

impl QueuePolicy {
    /// Applies the fields set in `layer` on top of `self`.
    pub fn apply(&mut self, layer: &QueuePolicyRaw) {
        let l = layer;
        if let Some(v) = l.persistent {
            self.persistent = v;
        }
        if let Some(v) = l.acknowledgement {
            self.acknowledgement = v;
        }
        if let Some(v) = l.max_messages {
            self.max_messages = v;
        }
        if let Some(v) = l.max_bytes {
            self.max_bytes = v;
        }
        if let Some(v) = l.max_messages_per_priority {
            self.max_messages_per_priority = v;
        }
        if let Some(v) = l.overflow {
            self.overflow = v;
        }
        if let Some(v) = l.block_timeout_ms {
            self.block_timeout = Duration::from_millis(v);
        }
        if let Some(v) = l.prefetch {
            self.prefetch = v;
        }
        if let Some(v) = l.default_priority {
            self.default_priority = v;
        }
        if let Some(v) = l.default_ttl_ms {
            self.default_ttl = nonzero_ms(v);
        }
        if let Some(v) = l.max_redeliveries {
            self.max_redeliveries = v;
        }
        if let Some(v) = &l.dead_letter {
            self.dead_letter = Some(v.clone());
        }
        if let Some(v) = l.nack {
            self.nack = v;
        }
        if let Some(v) = l.redelivery_delay_ms {
            self.redelivery_delay = Duration::from_millis(v);
        }
        if let Some(v) = l.redelivery_backoff {
            self.redelivery_backoff = v;
        }
        if let Some(v) = l.redelivery_delay_max_ms {
            self.redelivery_delay_max = Duration::from_millis(v);
        }
        if let Some(v) = l.ack_timeout_ms {
            self.ack_timeout = nonzero_ms(v);
        }
        if let Some(v) = l.dedup_window {
            self.dedup_window = v;
        }
        if let Some(v) = l.dedup_window_ms {
            self.dedup_window_time = nonzero_ms(v);
        }
        if let Some(v) = l.closed {
            self.closed = v;
        }
        if let Some(v) = &l.read {
            self.read = Some(v.clone());
        }
        if let Some(v) = &l.write {
            self.write = Some(v.clone());
        }
    }

    /// The delay before redelivery number `attempt` (1 = first redelivery):
    /// `redelivery_delay * backoff^(attempt-1)`, capped at `redelivery_delay_max`.
    pub fn redelivery_delay_for(&self, attempt: u32) -> Duration {
        if attempt == 0 || self.redelivery_delay.is_zero() {
            return if attempt == 0 {
                Duration::ZERO
            } else {
                self.redelivery_delay
            };
        }
        let exp = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        let secs = self.redelivery_delay.as_secs_f64() * self.redelivery_backoff.powi(exp);
        let max = self.redelivery_delay_max.as_secs_f64();
        if secs >= max {
            return self.redelivery_delay_max;
        }
        // NaN or negative only from a hand-built policy with a bad backoff.
        Duration::try_from_secs_f64(secs).unwrap_or(self.redelivery_delay_max)
    }
}
