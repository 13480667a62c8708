//! One consistent-enough read of everything the admin API, `/metrics` and `/sys/stats` report.
//!
//! Each queue is read under its own lock once; the broker-wide numbers are sums of those reads
//! and of the registry's atomics, so a snapshot never blocks the message path for long.

use std::sync::atomic::Ordering;

use crate::broker::Broker;
use crate::message::now_ms;
use crate::queue::{Counters, QueueStats};
use crate::registry::CounterSnapshot;
use crate::storage::JournalStats;
use crate::topic::TopicStats;

pub struct QueueSnapshot {
    pub name: String,
    pub destination: String,
    pub persistent: bool,
    pub temporary: bool,
    pub stats: QueueStats,
}

pub struct TopicSnapshot {
    pub destination: String,
    pub stats: TopicStats,
}

pub struct Snapshot {
    pub version: &'static str,
    pub started_at_ms: u64,
    pub uptime_ms: u64,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub traffic: CounterSnapshot,
    /// Sums over the current queues.
    pub messages: Counters,
    pub journal: Option<JournalStats>,
    pub rss_bytes: Option<u64>,
    pub queues: Vec<QueueSnapshot>,
    pub topics: Vec<TopicSnapshot>,
}

impl Snapshot {
    pub fn collect(broker: &Broker) -> Snapshot {
        let queues: Vec<QueueSnapshot> = broker
            .queues()
            .into_iter()
            .map(|q| QueueSnapshot {
                name: q.name().to_owned(),
                destination: q.destination().to_string(),
                persistent: q.is_persistent(),
                temporary: q.owner().is_some(),
                stats: q.stats(),
            })
            .collect();
        let mut messages = Counters::default();
        for q in &queues {
            add_counters(&mut messages, &q.stats.counters);
        }
        let topics = broker
            .topics()
            .into_iter()
            .map(|t| TopicSnapshot {
                destination: t.destination().to_string(),
                stats: t.stats(),
            })
            .collect();
        let now = now_ms();
        let r = &broker.registry;
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            started_at_ms: broker.started_at_ms,
            uptime_ms: now.saturating_sub(broker.started_at_ms),
            connections_open: r.open() as u64,
            connections_accepted: r.connections_accepted.load(Ordering::Relaxed),
            connections_refused: r.connections_refused.load(Ordering::Relaxed),
            traffic: r.totals(),
            messages,
            journal: broker.journal().map(|j| j.stats()),
            rss_bytes: resident_memory_bytes(),
            queues,
            topics,
        }
    }
}

pub fn add_counters(into: &mut Counters, c: &Counters) {
    into.enqueued += c.enqueued;
    into.delivered += c.delivered;
    into.acked += c.acked;
    into.redelivered += c.redelivered;
    into.expired += c.expired;
    into.dead_lettered += c.dead_lettered;
    into.dropped += c.dropped;
}

/// The process's resident set size, from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") | Some("KB") | Some("kb") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        None => 1,
        Some(_) => return None,
    };
    Some(value * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_parsed_in_bytes() {
        let status = "Name:\tstompd\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory_bytes().is_some_and(|b| b > 0));
        }
    }
}
