//! Queue policy layering and the duration accessors.

use std::path::Path;
use std::time::Duration;

use stompd_config::{
    Acknowledgement, Config, FsyncMode, NackPolicy, Overflow, QueuePolicy, QueuePolicyRaw,
};

fn parse(text: &str) -> Config {
    match Config::from_toml(text, Path::new("test.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

const LAYERED: &str = r#"
[queue_defaults]
prefetch = 10
max_messages = 1000
overflow = "block"
ack_timeout_ms = 30000

[[auto_create]]
pattern = "/queue/orders.*"
prefetch = 20
persistent = true
nack = "dead-letter"
dead_letter = "orders.dlq"

[[auto_create]]
pattern = "/queue/**"
prefetch = 99

[queues."orders.eu"]
prefetch = 30
acknowledgement = "required"

[queues.plain]
default_priority = 7

[queues."orders.dlq"]
nack = "drop"
"#;

#[test]
fn configured_queue_gets_all_four_layers() {
    let c = parse(LAYERED);
    let p = c.queue_policy("orders.eu").unwrap();
    assert_eq!(p.prefetch, 30, "[queues.NAME] wins");
    assert_eq!(p.acknowledgement, Acknowledgement::Required);
    assert!(p.persistent, "from the first matching auto_create rule");
    assert_eq!(p.nack, NackPolicy::DeadLetter);
    assert_eq!(p.dead_letter.as_deref(), Some("orders.dlq"));
    assert_eq!(p.max_messages, 1000, "from queue_defaults");
    assert_eq!(p.overflow, Overflow::Block);
    assert_eq!(p.ack_timeout, Some(Duration::from_secs(30)));
    assert_eq!(p.default_priority, 4, "built-in");
    assert_eq!(p.redelivery_backoff, 2.0, "built-in");
    assert_eq!(p.block_timeout, Duration::from_millis(5000), "built-in");
}

#[test]
fn configured_queue_matched_by_a_later_rule_only() {
    let c = parse(LAYERED);
    let p = c.queue_policy("plain").unwrap();
    // "/queue/plain" does not match "orders.*" but matches "/queue/**".
    assert_eq!(p.prefetch, 99);
    assert_eq!(p.default_priority, 7);
    assert!(!p.persistent);
    assert_eq!(p.dead_letter, None);
}

#[test]
fn inherited_dead_letter_to_itself_is_dropped() {
    let c = parse(LAYERED);
    // "orders.dlq" matches "orders.*", which names "orders.dlq" as the DLQ.
    let p = c.queue_policy("orders.dlq").unwrap();
    assert_eq!(p.dead_letter, None);
    assert_eq!(p.nack, NackPolicy::Drop);
    let p = c.resolve_queue("orders.dlq").unwrap();
    assert_eq!(p.dead_letter, None);
}

#[test]
fn unconfigured_queue() {
    let c = parse(LAYERED);
    assert_eq!(c.queue_policy("orders.us"), None, "not configured");
    let rule = c.auto_create_rule("/queue/orders.us").unwrap();
    assert_eq!(rule.pattern, "/queue/orders.*", "first match wins");
    let p = c.auto_queue_policy(rule);
    assert_eq!(p.prefetch, 20);
    assert_eq!(p.max_messages, 1000);
    assert!(p.persistent);
    assert_eq!(c.resolve_queue("orders.us"), Some(p));
    let deep = c.resolve_queue("a/b").unwrap();
    assert_eq!(deep.prefetch, 99, "'**' crosses '/'");
    assert_eq!(c.auto_create_rule("/topic/x"), None);
}

#[test]
fn nothing_configured_resolves_to_builtin() {
    let c = parse("[[auto_create]]\npattern = \"/queue/*\"\n");
    let p = c.resolve_queue("x").unwrap();
    assert_eq!(p, QueuePolicy::default());
    assert_eq!(c.resolve_queue("no/such"), None);
}

#[test]
fn zero_means_none_for_optional_durations() {
    let mut p = QueuePolicy::default();
    p.apply(&QueuePolicyRaw {
        default_ttl_ms: Some(60_000),
        ack_timeout_ms: Some(5),
        dedup_window_ms: Some(1000),
        ..QueuePolicyRaw::default()
    });
    assert_eq!(p.default_ttl, Some(Duration::from_secs(60)));
    assert_eq!(p.ack_timeout, Some(Duration::from_millis(5)));
    assert_eq!(p.dedup_window_time, Some(Duration::from_secs(1)));
    // A higher layer can switch them off again with 0.
    p.apply(&QueuePolicyRaw {
        default_ttl_ms: Some(0),
        ack_timeout_ms: Some(0),
        ..QueuePolicyRaw::default()
    });
    assert_eq!(p.default_ttl, None);
    assert_eq!(p.ack_timeout, None);
    assert_eq!(
        p.dedup_window_time,
        Some(Duration::from_secs(1)),
        "unset keeps"
    );
}

#[test]
fn read_write_lists_replace_not_merge() {
    let c = parse(
        "[queue_defaults]\nread = [\"*\"]\nwrite = [\"group:a\"]\n[queues.q]\nwrite = [\"bob\"]\n",
    );
    let p = c.queue_policy("q").unwrap();
    assert_eq!(p.read, Some(vec!["*".to_owned()]));
    assert_eq!(p.write, Some(vec!["bob".to_owned()]));
}

#[test]
fn redelivery_delay_backs_off_and_caps() {
    let mut p = QueuePolicy::default();
    p.apply(&QueuePolicyRaw {
        redelivery_delay_ms: Some(100),
        redelivery_backoff: Some(3.0),
        redelivery_delay_max_ms: Some(1000),
        ..QueuePolicyRaw::default()
    });
    assert_eq!(p.redelivery_delay_for(0), Duration::ZERO);
    assert_eq!(p.redelivery_delay_for(1), Duration::from_millis(100));
    assert_eq!(p.redelivery_delay_for(2), Duration::from_millis(300));
    assert_eq!(p.redelivery_delay_for(3), Duration::from_millis(900));
    assert_eq!(p.redelivery_delay_for(4), Duration::from_millis(1000));
    assert_eq!(
        p.redelivery_delay_for(u32::MAX),
        Duration::from_millis(1000)
    );
    assert_eq!(
        QueuePolicy::default().redelivery_delay_for(5),
        Duration::ZERO,
        "no delay configured"
    );
}

#[test]
fn duration_accessors() {
    let c = parse(
        r#"
[server]
connect_timeout_ms = 1500
shutdown_grace_ms = 2500
max_connections = 0
[limits]
write_timeout_ms = 700
[heartbeat]
send_ms = 0
expect_ms = 4000
min_ms = 100
max_ms = 9000
grace = 2.0
[storage]
fsync = "interval"
fsync_interval_ms = 25
"#,
    );
    assert_eq!(c.server.connect_timeout(), Duration::from_millis(1500));
    assert_eq!(c.server.shutdown_grace(), Duration::from_millis(2500));
    assert_eq!(c.server.connection_limit(), None);
    assert_eq!(c.server.connection_limit_per_ip(), Some(1000));
    assert_eq!(c.limits.write_timeout(), Duration::from_millis(700));
    assert_eq!(c.heartbeat.send(), None);
    assert_eq!(c.heartbeat.expect(), Some(Duration::from_secs(4)));
    assert_eq!(c.heartbeat.min(), Duration::from_millis(100));
    assert_eq!(c.heartbeat.max(), Duration::from_secs(9));
    assert_eq!(
        c.heartbeat.deadline(Duration::from_secs(3)),
        Duration::from_secs(6)
    );
    assert_eq!(c.storage.fsync, FsyncMode::Interval);
    assert_eq!(c.storage.fsync_interval(), Duration::from_millis(25));
}

#[test]
fn heartbeat_deadline_never_panics() {
    let mut c = Config::default();
    c.heartbeat.grace = 1e300;
    assert_eq!(c.heartbeat.deadline(Duration::from_secs(10)), Duration::MAX);
    c.heartbeat.grace = f64::NAN;
    assert_eq!(c.heartbeat.deadline(Duration::from_secs(10)), Duration::MAX);
}
