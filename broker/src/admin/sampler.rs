//! Once a second, a snapshot of every queue's depth and counters into a small ring per queue.
//! Rates (messages per second over the last few seconds) and the dashboard's depth-over-time
//! chart are read from it; nothing on the message path is touched.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::message::now_ms;

/// Samples kept per queue: five minutes at one a second.
pub const CAPACITY: usize = 300;
/// The window rates are computed over.
pub const RATE_WINDOW_MS: u64 = 5_000;
pub const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub depth: u64,
    pub enqueued: u64,
    pub delivered: u64,
    pub acked: u64,
}

/// Messages per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    pub enqueue: f64,
    pub deliver: f64,
    pub ack: f64,
}

#[derive(Default)]
pub struct Sampler {
    rings: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl Sampler {
    /// Records one sample of every queue; forgets queues that no longer exist.
    pub fn sample(&self, broker: &Broker) {
        let now = now_ms();
        let queues = broker.queues();
        let mut rings = self.rings.lock();
        rings.retain(|dest, _| queues.iter().any(|q| q.destination().as_str() == dest));
        for q in queues {
            let s = q.stats();
            push_locked(
                &mut rings,
                q.destination().as_str(),
                Sample {
                    at_ms: now,
                    depth: s.depth,
                    enqueued: s.counters.enqueued,
                    delivered: s.counters.delivered,
                    acked: s.counters.acked,
                },
            );
        }
    }

    /// Adds a sample by hand (tests).
    pub fn push(&self, destination: &str, sample: Sample) {
        let mut rings = self.rings.lock();
        push_locked(&mut rings, destination, sample);
    }

    /// Rates over the last [`RATE_WINDOW_MS`] (or what has been sampled so far); zero before two
    /// samples exist.
    pub fn rates(&self, destination: &str) -> Rates {
        let rings = self.rings.lock();
        let Some(ring) = rings.get(destination) else {
            return Rates::default();
        };
        let Some(last) = ring.back() else {
            return Rates::default();
        };
        let since = last.at_ms.saturating_sub(RATE_WINDOW_MS);
        let Some(first) = ring.iter().find(|s| s.at_ms >= since) else {
            return Rates::default();
        };
        let dt = last.at_ms.saturating_sub(first.at_ms);
        if dt == 0 {
            return Rates::default();
        }
        let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1000.0 / dt as f64;
        Rates {
            enqueue: per_s(first.enqueued, last.enqueued),
            deliver: per_s(first.delivered, last.delivered),
            ack: per_s(first.acked, last.acked),
        }
    }

    /// `(time ms, depth)` points of every sampled queue, oldest first.
    pub fn history(&self) -> Vec<(String, Vec<(u64, u64)>)> {
        let rings = self.rings.lock();
        let mut out: Vec<_> = rings
            .iter()
            .map(|(dest, ring)| {
                (
                    dest.clone(),
                    ring.iter().map(|s| (s.at_ms, s.depth)).collect(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Samples every [`INTERVAL`] until `shutdown`.
    pub async fn run(self: Arc<Self>, broker: Arc<Broker>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.sample(&broker),
            }
        }
    }
}

fn push_locked(rings: &mut HashMap<String, VecDeque<Sample>>, destination: &str, sample: Sample) {
    let ring = match rings.get_mut(destination) {
        Some(r) => r,
        None => rings
            .entry(destination.to_owned())
            .or_insert_with(|| VecDeque::with_capacity(CAPACITY)),
    };
    if ring.len() == CAPACITY {
        ring.pop_front();
    }
    ring.push_back(sample);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, enqueued: u64) -> Sample {
        Sample {
            at_ms,
            depth: enqueued,
            enqueued,
            delivered: enqueued / 2,
            acked: 0,
        }
    }

    #[test]
    fn rates_cover_the_last_five_seconds() {
        let sampler = Sampler::default();
        assert_eq!(sampler.rates("/queue/a"), Rates::default());
        sampler.push("/queue/a", s(1_000, 0));
        assert_eq!(sampler.rates("/queue/a"), Rates::default());
        // 1000 messages long ago, then 10/s for the last five seconds.
        sampler.push("/queue/a", s(2_000, 1_000));
        for i in 0..=5 {
            sampler.push("/queue/a", s(10_000 + i * 1_000, 1_000 + i * 10));
        }
        let r = sampler.rates("/queue/a");
        assert!((r.enqueue - 10.0).abs() < 1e-9, "{r:?}");
        assert!((r.deliver - 5.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.ack, 0.0);
    }

    #[test]
    fn rings_are_bounded_and_history_is_sorted() {
        let sampler = Sampler::default();
        for i in 0..(CAPACITY as u64 + 10) {
            sampler.push("/queue/b", s(i * 1_000, i));
            sampler.push("/queue/a", s(i * 1_000, i));
        }
        let h = sampler.history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0, "/queue/a");
        assert_eq!(h[0].1.len(), CAPACITY);
        assert_eq!(h[0].1[0], (10_000, 10));
    }
}
