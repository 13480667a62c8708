//! A persistent backlog larger than `storage.memory_budget_bytes` (issue 4, item 4), against the
//! real binary: bodies beyond the budget wait in the journal and come back, byte for byte and in
//! priority order, when they are due; a restart rebuilds the queue within the budget too.

use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, send_frame, Broker, Client, QUIET};

const BUDGET: u64 = 64 * 1024;
const BODY: usize = 4096;
const COUNT: usize = 300;

fn config() -> String {
    config_with(&format!(
        "[storage]\nmemory_budget_bytes = {BUDGET}\n\n[queues.backlog]\npersistent = true\n"
    ))
}

/// Distinct, binary bodies (NUL bytes included) so a mix-up cannot go unnoticed.
fn body(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..BODY)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 251) as u8
        })
        .collect()
}

fn priority(i: usize) -> u8 {
    [2, 5, 8][i % 3]
}

/// Asks `/sys/stats` for the queue and returns its JSON.
fn queue_stats(c: &mut Client, queue: &str) -> serde_json::Value {
    c.send(
        &Frame::new(Command::Send)
            .with_header("destination", "/sys/stats")
            .with_header("queue", queue)
            .with_header("reply-to", "/temp-queue/stats"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(f) = c.recv(Duration::from_millis(200)) {
            if f.command == Command::Message {
                let v: serde_json::Value = serde_json::from_slice(&f.body).expect("stats JSON");
                return v;
            }
        }
    }
    panic!("no statistics reply for {queue}");
}

/// Polls the stats until resident bytes are within the budget; returns the last stats.
fn wait_within_budget(c: &mut Client, queue: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = queue_stats(c, queue);
        let resident = v["resident_bytes"].as_u64().expect("resident_bytes");
        if resident <= BUDGET || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_backlog_beyond_the_memory_budget_waits_on_disk_and_comes_back_whole_in_priority_order() {
    let mut broker = Broker::with_config(&config());
    let mut p = Client::connect_v12(broker.addr());
    for i in 0..COUNT {
        let mut f = send_frame(
            "/queue/backlog",
            &body(i),
            &[
                ("x-index", &i.to_string()),
                ("content-type", "application/octet-stream"),
            ],
        )
        .with_header("priority", priority(i).to_string());
        if i + 1 == COUNT {
            f = f.with_header("receipt", "last");
        }
        p.send(&f);
    }
    p.wait_receipt("last", Duration::from_secs(20));
    let total = (COUNT * BODY) as u64;

    let mut s = Client::connect_v12(broker.addr());
    s.subscribe_sync("stats", "/temp-queue/stats", "auto");
    let v = wait_within_budget(&mut s, "/queue/backlog");
    assert_eq!(v["depth"].as_u64(), Some(COUNT as u64), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(total), "{v}");
    let resident = v["resident_bytes"].as_u64().unwrap();
    assert!(
        resident <= BUDGET,
        "{resident} bytes of {total} still in memory with a budget of {BUDGET}: {v}"
    );
    drop(s);
    drop(p);

    // A crash: recovery itself keeps only the budget in memory.
    broker.kill9();
    broker.restart();
    let mut s = Client::connect_v12(broker.addr());
    s.subscribe_sync("stats", "/temp-queue/stats", "auto");
    let v = queue_stats(&mut s, "/queue/backlog");
    assert_eq!(v["depth"].as_u64(), Some(COUNT as u64), "{v}");
    let resident = v["resident_bytes"].as_u64().unwrap();
    assert!(resident <= BUDGET, "after recovery: {v}");

    // Drain: highest priority first, FIFO within a priority, every body and header intact.
    let mut expected: Vec<usize> = (0..COUNT).collect();
    expected.sort_by_key(|&i| (std::cmp::Reverse(priority(i)), i));
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(
        Frame::new(Command::Subscribe)
            .with_header("id", "d")
            .with_header("destination", "/queue/backlog")
            .with_header("ack", "client-individual")
            .with_header("prefetch-count", "20"),
    );
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < COUNT && Instant::now() < deadline {
        let Some(m) = c.recv(QUIET) else { continue };
        assert_eq!(m.command, Command::Message, "{}", describe(&m));
        let i: usize = m.get("x-index").expect("x-index kept").parse().unwrap();
        assert_eq!(m.get("content-type"), Some("application/octet-stream"));
        assert_eq!(m.get("priority"), Some(priority(i).to_string().as_str()));
        assert!(m.body == body(i), "body of message {i} differs");
        c.send(&Frame::new(Command::Ack).with_header("id", m.get("ack").expect("ack header")));
        got.push(i);
    }
    assert_eq!(got, expected);
    let v = queue_stats(&mut s, "/queue/backlog");
    // Acks are processed in order before the stats request of another connection is answered
    // only eventually: poll until the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut v = v;
    while v["depth"].as_u64() != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        v = queue_stats(&mut s, "/queue/backlog");
    }
    assert_eq!(v["depth"].as_u64(), Some(0), "{v}");
    assert_eq!(v["resident_bytes"].as_u64(), Some(0), "{v}");
}
