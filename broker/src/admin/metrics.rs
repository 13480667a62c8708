//! `/metrics` in the Prometheus text exposition format, version 0.0.4, written by hand.
//!
//! Broker-wide series have no labels; per-destination series carry `destination="/queue/NAME"`.
//! Every family is announced once with `# HELP` and `# TYPE`, then its samples.

use std::fmt::Write as _;

use super::stats::Snapshot;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    let gauge = "gauge";
    let counter = "counter";

    out.single(
        "stompd_uptime_seconds",
        gauge,
        "Seconds since the broker started.",
        s.uptime_ms as f64 / 1000.0,
    );
    out.single(
        "stompd_connections_open",
        gauge,
        "Open STOMP connections.",
        s.connections_open,
    );
    out.single(
        "stompd_connections_accepted_total",
        counter,
        "STOMP connections accepted since start.",
        s.connections_accepted,
    );
    out.single(
        "stompd_connections_refused_total",
        counter,
        "STOMP connections refused since start.",
        s.connections_refused,
    );
    let t = &s.traffic;
    out.single(
        "stompd_frames_in_total",
        counter,
        "Frames received from clients.",
        t.frames_in,
    );
    out.single(
        "stompd_frames_out_total",
        counter,
        "Frames sent to clients.",
        t.frames_out,
    );
    out.single(
        "stompd_bytes_in_total",
        counter,
        "Bytes received from clients.",
        t.bytes_in,
    );
    out.single(
        "stompd_bytes_out_total",
        counter,
        "Bytes sent to clients.",
        t.bytes_out,
    );
    let m = &s.messages;
    let totals: [(&str, &str, u64); 7] = [
        ("enqueued", "Messages enqueued", m.enqueued),
        ("delivered", "Messages delivered to consumers", m.delivered),
        ("acked", "Messages acknowledged or removed", m.acked),
        ("redelivered", "Messages delivered again", m.redelivered),
        ("expired", "Messages expired", m.expired),
        (
            "dead_lettered",
            "Messages moved to a dead-letter queue",
            m.dead_lettered,
        ),
        ("dropped", "Messages dropped (purge, overflow)", m.dropped),
    ];
    for (what, help, v) in totals {
        out.single(
            &format!("stompd_messages_{what}_total"),
            counter,
            &format!("{help}, summed over the current queues."),
            v,
        );
    }
    if let Some(j) = &s.journal {
        out.single(
            "stompd_journal_fsyncs_total",
            counter,
            "Journal fsync calls.",
            j.fsyncs,
        );
        out.single(
            "stompd_journal_fsync_seconds_total",
            counter,
            "Time spent in journal fsync calls.",
            j.fsync_nanos as f64 / 1e9,
        );
        out.single(
            "stompd_journal_bytes",
            gauge,
            "Bytes of journal segments on disk.",
            j.bytes_on_disk,
        );
        out.single(
            "stompd_journal_segments",
            gauge,
            "Journal segment files.",
            j.segments,
        );
        out.single(
            "stompd_journal_write_errors_total",
            counter,
            "Failed journal writes or syncs.",
            j.write_errors,
        );
    }
    if let Some(rss) = s.rss_bytes {
        out.single(
            "process_resident_memory_bytes",
            gauge,
            "Resident memory size in bytes.",
            rss,
        );
    }

    type QueueValue = fn(&super::stats::QueueSnapshot) -> u64;
    let per_queue: [(&str, &str, &str, QueueValue); 14] = [
        (
            "stompd_queue_depth",
            gauge,
            "Messages in the queue (ready and in flight).",
            |q| q.stats.depth,
        ),
        (
            "stompd_queue_bytes",
            gauge,
            "Bytes of the messages in the queue.",
            |q| q.stats.bytes,
        ),
        (
            "stompd_queue_resident_bytes",
            gauge,
            "Bytes of the queue's messages held in memory (the rest waits in the journal).",
            |q| q.stats.resident_bytes,
        ),
        (
            "stompd_queue_ready",
            gauge,
            "Messages waiting for a consumer.",
            |q| q.stats.ready,
        ),
        (
            "stompd_queue_in_flight",
            gauge,
            "Messages delivered and not yet acknowledged.",
            |q| q.stats.in_flight,
        ),
        (
            "stompd_queue_consumers",
            gauge,
            "Subscriptions on the queue.",
            |q| q.stats.consumers,
        ),
        (
            "stompd_queue_closed",
            gauge,
            "1 if the queue is closed to producers.",
            |q| u64::from(q.stats.closed),
        ),
        (
            "stompd_queue_enqueued_total",
            counter,
            "Messages enqueued.",
            |q| q.stats.counters.enqueued,
        ),
        (
            "stompd_queue_delivered_total",
            counter,
            "Messages delivered.",
            |q| q.stats.counters.delivered,
        ),
        (
            "stompd_queue_acked_total",
            counter,
            "Messages acknowledged or removed.",
            |q| q.stats.counters.acked,
        ),
        (
            "stompd_queue_redelivered_total",
            counter,
            "Messages delivered again.",
            |q| q.stats.counters.redelivered,
        ),
        (
            "stompd_queue_expired_total",
            counter,
            "Messages expired.",
            |q| q.stats.counters.expired,
        ),
        (
            "stompd_queue_dead_lettered_total",
            counter,
            "Messages moved to a dead-letter queue.",
            |q| q.stats.counters.dead_lettered,
        ),
        (
            "stompd_queue_dropped_total",
            counter,
            "Messages dropped (purge, overflow).",
            |q| q.stats.counters.dropped,
        ),
    ];
    if !s.queues.is_empty() {
        for (name, kind, help, value) in per_queue {
            out.family(name, kind, help);
            for q in &s.queues {
                out.sample(name, &[("destination", &q.destination)], value(q));
            }
        }
    }
    if !s.topics.is_empty() {
        out.family(
            "stompd_topic_subscribers",
            gauge,
            "Current subscribers of the topic.",
        );
        for t in &s.topics {
            out.sample(
                "stompd_topic_subscribers",
                &[("destination", &t.destination)],
                t.stats.subscribers,
            );
        }
        out.family(
            "stompd_topic_published_total",
            counter,
            "Messages published to the topic.",
        );
        for t in &s.topics {
            out.sample(
                "stompd_topic_published_total",
                &[("destination", &t.destination)],
                t.stats.published,
            );
        }
    }
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        value.write(&mut self.text);
        self.text.push('\n');
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

trait Value {
    fn write(&self, out: &mut String);
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed are escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::stats::{QueueSnapshot, TopicSnapshot};
    use crate::queue::{Counters, QueueStats};
    use crate::registry::CounterSnapshot;
    use crate::storage::JournalStats;
    use crate::topic::TopicStats;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0",
            started_at_ms: 0,
            uptime_ms: 1500,
            connections_open: 2,
            connections_accepted: 7,
            connections_refused: 1,
            traffic: CounterSnapshot {
                frames_in: 10,
                frames_out: 20,
                bytes_in: 300,
                bytes_out: 400,
            },
            messages: Counters {
                enqueued: 5,
                delivered: 3,
                acked: 2,
                ..Counters::default()
            },
            journal: Some(JournalStats {
                segments: 1,
                bytes_on_disk: 4096,
                fsyncs: 4,
                fsync_nanos: 2_500_000,
                ..JournalStats::default()
            }),
            rss_bytes: Some(1 << 20),
            queues: vec![QueueSnapshot {
                name: "we\"ird\\q\nx".into(),
                destination: "/queue/we\"ird\\q\nx".into(),
                persistent: true,
                temporary: false,
                stats: QueueStats {
                    depth: 3,
                    bytes: 42,
                    resident_bytes: 40,
                    ready: 2,
                    in_flight: 1,
                    consumers: 1,
                    closed: true,
                    counters: Counters {
                        enqueued: 5,
                        ..Counters::default()
                    },
                },
            }],
            topics: vec![TopicSnapshot {
                destination: "/topic/news".into(),
                stats: TopicStats {
                    subscribers: 4,
                    published: 9,
                },
            }],
        }
    }

    #[test]
    fn broker_wide_series() {
        let text = render(&snapshot());
        for line in [
            "stompd_connections_open 2",
            "stompd_connections_accepted_total 7",
            "stompd_frames_in_total 10",
            "stompd_bytes_out_total 400",
            "stompd_messages_enqueued_total 5",
            "stompd_messages_acked_total 2",
            "stompd_messages_dead_lettered_total 0",
            "stompd_journal_fsyncs_total 4",
            "stompd_journal_fsync_seconds_total 0.0025",
            "stompd_journal_bytes 4096",
            "process_resident_memory_bytes 1048576",
            "stompd_uptime_seconds 1.5",
            "# TYPE stompd_frames_in_total counter",
            "# TYPE stompd_connections_open gauge",
            "stompd_topic_subscribers{destination=\"/topic/news\"} 4",
            "stompd_topic_published_total{destination=\"/topic/news\"} 9",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&snapshot());
        let line = r#"stompd_queue_depth{destination="/queue/we\"ird\\q\nx"} 3"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(text
            .lines()
            .any(|l| l == r#"stompd_queue_closed{destination="/queue/we\"ird\\q\nx"} 1"#));
    }

    #[test]
    fn every_family_is_announced_once_before_its_samples() {
        let text = render(&snapshot());
        let mut announced = std::collections::HashSet::new();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(announced.insert(name.to_owned()), "HELP twice: {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let name = it.next().unwrap();
                let kind = it.next().unwrap();
                assert!(kind == "counter" || kind == "gauge");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                assert!(typed.insert(name.to_owned()), "TYPE twice: {name}");
            } else {
                assert!(!line.is_empty() && !line.starts_with('#'));
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "sample before TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_journal_no_queues_no_journal_series() {
        let mut s = snapshot();
        s.journal = None;
        s.queues.clear();
        s.topics.clear();
        let text = render(&s);
        assert!(!text.contains("stompd_journal_"));
        assert!(!text.contains("stompd_queue_"));
        assert!(!text.contains("stompd_topic_"));
    }

    #[test]
    fn escaping_helpers() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }
}
