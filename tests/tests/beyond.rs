//! "Beyond every STOMP broker" (issue 8), through the real binary: machine-readable ERROR codes,
//! NACK policies and redelivery counts (also across a restart), redelivery delay with backoff,
//! self-explaining dead letters, ack timeout with the `/sys/events` channel, closed queues with
//! an end-of-stream marker, browse with selective removal, idempotent producers, exact expiry and
//! heart-beat grace.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stompd_protocol::{Command, Frame, HeartBeat};
use stompd_tests::{
    config_with, describe, http, send_frame, subscribe_frame, Broker, Client, Event, QUIET, TIMEOUT,
};

const QUEUES: &str = r#"
[server]
shutdown_grace_ms = 3000

[queues.shut]
closed = true

[queues.full]
max_messages = 1
overflow = "reject"

[queues.locked]
write = ["nobody"]

[queues.requeue]
dead_letter = "requeue-dlq"

[queues.requeue-dlq]

[queues.dl]
nack = "dead-letter"
dead_letter = "dl-dlq"

[queues.dl-dlq]

[queues.dropped]
nack = "drop"
dead_letter = "dropped-dlq"

[queues.dropped-dlq]

[queues.delayed]
redelivery_delay_ms = 300
redelivery_backoff = 2.0
redelivery_delay_max_ms = 10000

[queues.durable]
persistent = true

[queues.durable-delayed]
persistent = true
redelivery_delay_ms = 3000

[queues.capped]
redelivery_delay_ms = 200
redelivery_backoff = 10.0
redelivery_delay_max_ms = 300

[queues.dedup-timed]
dedup_window = 100
dedup_window_ms = 300

[queues.limited]
max_redeliveries = 2
dead_letter = "limited-dlq"

[queues.limited-dlq]

[queues.expiring]
dead_letter = "expiring-dlq"

[queues.expiring-dlq]

[queues.overflowing]
max_messages = 2
overflow = "drop-oldest"
dead_letter = "overflowing-dlq"

[queues.overflowing-dlq]

[queues.per-priority]
max_messages_per_priority = 2

[queues.per-priority-drop]
max_messages_per_priority = 1
overflow = "drop-oldest"
dead_letter = "per-priority-dlq"

[queues.per-priority-dlq]

[queues.quota]
max_messages = 5

[queues.evacuated]
dead_letter = "evacuated-dlq"

[queues.evacuated-dlq]

[queues.no-dlq]

[queues.slow]
ack_timeout_ms = 500

[queues.drain]

[queues.browsed]

[queues.dedup]
dedup_window = 100

[queues.dedup-durable]
dedup_window = 100
persistent = true
"#;

fn broker() -> Broker {
    Broker::with_config(&config_with(QUEUES))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn body(m: &Frame) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

fn bodies(msgs: &[Frame]) -> Vec<String> {
    msgs.iter().map(body).collect()
}

/// The value of header `name`, or a panic naming the frame.
#[track_caller]
fn header<'a>(m: &'a Frame, name: &str) -> &'a str {
    m.get(name)
        .unwrap_or_else(|| panic!("no `{name}` header in {}", describe(m)))
}

#[track_caller]
fn ack_id(m: &Frame) -> String {
    header(m, "ack").to_owned()
}

fn nack_frame(m: &Frame) -> Frame {
    Frame::new(Command::Nack).with_header("id", ack_id(m).as_str())
}

fn ack_frame(m: &Frame) -> Frame {
    Frame::new(Command::Ack).with_header("id", ack_id(m).as_str())
}

/// Sends `frame` with `receipt:RECEIPT` and expects an ERROR with `code`, a non-empty `message`
/// and `receipt-id:RECEIPT`; returns the ERROR.
#[track_caller]
fn expect_error_with_receipt(c: &mut Client, frame: Frame, code: &str, receipt: &str) -> Frame {
    c.send(&frame.with_header("receipt", receipt));
    let e = c.expect(Command::Error, TIMEOUT);
    assert_eq!(e.get("code"), Some(code), "{}", describe(&e));
    assert!(
        e.get("message").is_some_and(|m| !m.is_empty()),
        "ERROR without a message header: {}",
        describe(&e)
    );
    assert_eq!(
        e.get("receipt-id"),
        Some(receipt),
        "ERROR for a frame with receipt:{receipt} should carry receipt-id:{receipt}: {}",
        describe(&e)
    );
    e
}

/// Receives every frame that arrives until `quiet` passes with none (bounded by `TIMEOUT` * 2).
fn drain(c: &mut Client, quiet: Duration) -> Vec<Frame> {
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match c.recv(quiet) {
            Some(f) => out.push(f),
            None => break,
        }
    }
    out
}

/// Checks the headers every dead letter must carry and returns the reason.
#[track_caller]
fn check_dead_letter(d: &Frame, original_destination: &str, reason: &str) {
    assert_eq!(
        d.get("original-destination"),
        Some(original_destination),
        "{}",
        describe(d)
    );
    let omid = header(d, "original-message-id");
    assert!(
        omid.starts_with(&format!("{original_destination}@")),
        "original-message-id {omid:?} should be DESTINATION@SEQ: {}",
        describe(d)
    );
    assert_eq!(d.get("dead-letter-reason"), Some(reason), "{}", describe(d));
    let redeliveries = header(d, "dead-letter-redeliveries");
    assert!(
        redeliveries.parse::<u32>().is_ok(),
        "dead-letter-redeliveries {redeliveries:?} is not a count: {}",
        describe(d)
    );
    let dead_at: u64 = header(d, "dead-letter-timestamp")
        .parse()
        .unwrap_or_else(|_| panic!("dead-letter-timestamp not epoch ms: {}", describe(d)));
    let born_at: u64 = header(d, "original-timestamp")
        .parse()
        .unwrap_or_else(|_| panic!("original-timestamp not epoch ms: {}", describe(d)));
    let now = now_ms();
    assert!(
        born_at <= dead_at && dead_at <= now + 1000 && now - born_at < 60_000,
        "timestamps out of order: original {born_at}, dead-letter {dead_at}, now {now}: {}",
        describe(d)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. ERROR frames: code, message, receipt-id
// ---------------------------------------------------------------------------------------------

#[test]
fn send_to_a_closed_queue_gets_error_code_queue_closed_with_receipt_id() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        send_frame("/queue/shut", b"no", &[]),
        "queue-closed",
        "r1",
    );
    assert!(c.is_closed(TIMEOUT), "connection stayed open after ERROR");
}

#[test]
fn frame_level_errors_carry_their_code_message_and_receipt_id() {
    let broker = broker();

    let mut c = Client::connect_v12(broker.addr());
    c.send_to_sync("/queue/full", b"one", &[]);
    expect_error_with_receipt(
        &mut c,
        send_frame("/queue/full", b"two", &[]),
        "queue-full",
        "r-full",
    );

    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        send_frame("/queue/locked", b"x", &[]),
        "access-denied",
        "r-denied",
    );

    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        Frame::new(Command::Commit).with_header("transaction", "never-begun"),
        "unknown-transaction",
        "r-tx",
    );

    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        Frame::new(Command::Ack).with_header("id", "987654"),
        "unknown-ack",
        "r-ack",
    );

    Client::connect_v12(broker.addr()).assert_round_trip("after-errors");
}

#[test]
fn destination_neither_configured_nor_auto_created_gets_error_code_unknown_destination() {
    // No [[auto_create]] rules: only the configured queue exists.
    let broker = Broker::with_config("[queues.known]\n");
    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        send_frame("/queue/unknown", b"x", &[]),
        "unknown-destination",
        "r-dest",
    );
    let mut c = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut c,
        subscribe_frame("s", "/queue/unknown", "auto"),
        "unknown-destination",
        "r-sub",
    );
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/known", "auto");
    c.send_to_sync("/queue/known", b"fine", &[]);
    assert_eq!(body(&c.expect(Command::Message, TIMEOUT)), "fine");
}

/// Errors found while decoding (before the frame is whole) still carry `code` and `message`.
#[test]
fn decode_errors_carry_code_and_message() {
    let broker = Broker::with_config(&config_with(
        "[limits]\nmax_frame_bytes = 8192\nmax_body_bytes = 1024\nmax_header_line_bytes = 1024\n",
    ));

    let check = |raw: &[u8], code: &str| {
        let mut c = Client::connect_v12(broker.addr());
        // The server may close while we still write: ignore write errors, judge by the answer.
        let _ = c.try_send_raw(raw);
        let e = c.expect(Command::Error, TIMEOUT);
        assert_eq!(e.get("code"), Some(code), "{}", describe(&e));
        assert!(
            e.get("message").is_some_and(|m| !m.is_empty()),
            "{}",
            describe(&e)
        );
        assert!(c.is_closed(TIMEOUT), "connection stayed open after ERROR");
    };

    check(
        b"SEND\ndestination:/queue/esc\nreceipt:r-esc\nx-h:a\\tb\n\nbody\0",
        "bad-escape",
    );

    let mut big_body =
        b"SEND\ndestination:/queue/big\nreceipt:r-body\ncontent-length:2000\n\n".to_vec();
    big_body.extend(std::iter::repeat_n(b'x', 2000));
    big_body.push(0);
    check(&big_body, "body-too-large");

    let mut big_frame = b"SEND\ndestination:/queue/big\nreceipt:r-frame\n".to_vec();
    for i in 0..120 {
        big_frame.extend_from_slice(format!("x-pad-{i:03}:{}\n", "p".repeat(90)).as_bytes());
    }
    big_frame.extend_from_slice(b"\n\0");
    check(&big_frame, "frame-too-large");

    Client::connect_v12(broker.addr()).assert_round_trip("after-decode-errors");
}

/// A frame rejected while decoding, but after its whole header block was read (an invalid
/// escape, a declared body over the limit), asked for a receipt: its ERROR names it.
#[test]
fn decode_errors_after_the_headers_were_read_carry_receipt_id() {
    let broker = Broker::with_config(&config_with(
        "[limits]\nmax_frame_bytes = 8192\nmax_body_bytes = 1024\nmax_header_line_bytes = 1024\n",
    ));
    let check = |raw: &[u8], code: &str, receipt: &str| {
        let mut c = Client::connect_v12(broker.addr());
        let _ = c.try_send_raw(raw);
        let e = c.expect(Command::Error, TIMEOUT);
        assert_eq!(e.get("code"), Some(code), "{}", describe(&e));
        assert_eq!(
            e.get("receipt-id"),
            Some(receipt),
            "ERROR for a frame with receipt:{receipt} should carry receipt-id:{receipt}: {}",
            describe(&e)
        );
    };
    check(
        b"SEND\ndestination:/queue/esc\nreceipt:r-esc\nx-h:a\\tb\n\nbody\0",
        "bad-escape",
        "r-esc",
    );
    let mut big_body =
        b"SEND\ndestination:/queue/big\nreceipt:r-body\ncontent-length:2000\n\n".to_vec();
    big_body.extend(std::iter::repeat_n(b'x', 2000));
    big_body.push(0);
    check(&big_body, "body-too-large", "r-body");
}

// ---------------------------------------------------------------------------------------------
// 2. NACK policies and redelivery delay
// ---------------------------------------------------------------------------------------------

#[test]
fn nack_requeue_redelivers_with_increasing_redelivery_count() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/requeue", "client-individual");
    c.send_to_sync("/queue/requeue", b"again", &[]);
    let first = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&first), "again");
    assert_eq!(first.get("redelivered"), None, "{}", describe(&first));
    assert_eq!(first.get("redelivery-count"), None, "{}", describe(&first));
    let mut last = first;
    for n in 1..=3 {
        c.send_with_receipt(nack_frame(&last));
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(body(&m), "again");
        assert_eq!(
            m.get("message-id"),
            last.get("message-id"),
            "{}",
            describe(&m)
        );
        assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(&m));
        assert_eq!(
            m.get("redelivery-count"),
            Some(n.to_string().as_str()),
            "redelivery {n}: {}",
            describe(&m)
        );
        last = m;
    }
    c.send_with_receipt(ack_frame(&last));
    c.expect_nothing(QUIET);
}

#[test]
fn nack_policy_dead_letter_moves_the_message_to_the_dead_letter_queue() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/dl", "client-individual");
    c.send_to_sync("/queue/dl", b"bad", &[("x-app", "kept")]);
    let m = c.expect(Command::Message, TIMEOUT);
    c.send_with_receipt(nack_frame(&m));
    c.expect_nothing(QUIET);
    c.subscribe("dlq", "/queue/dl-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&d), "bad");
    assert_eq!(d.get("x-app"), Some("kept"), "{}", describe(&d));
    check_dead_letter(&d, "/queue/dl", "nack");
}

#[test]
fn nack_policy_drop_discards_the_message() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/dropped", "client-individual");
    c.send_to_sync("/queue/dropped", b"gone", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    c.send_with_receipt(nack_frame(&m));
    c.expect_nothing(QUIET);
    c.unsubscribe_sync("s");

    let mut later = Client::connect_v12(broker.addr());
    later.subscribe_sync("s", "/queue/dropped", "auto");
    later.subscribe_sync("dlq", "/queue/dropped-dlq", "auto");
    later.expect_nothing(QUIET);
}

#[test]
fn nack_with_requeue_false_dead_letters_under_the_requeue_policy() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/requeue", "client-individual");
    c.send_to_sync("/queue/requeue", b"no-retry", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    c.send_with_receipt(nack_frame(&m).with_header("requeue", "false"));
    c.expect_nothing(QUIET);
    c.subscribe("dlq", "/queue/requeue-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&d), "no-retry");
    check_dead_letter(&d, "/queue/requeue", "nack");
}

#[test]
fn redelivery_delay_grows_with_backoff() {
    // redelivery_delay_ms = 300, backoff 2: the 1st redelivery after >= 300 ms, the 2nd after
    // >= 600 ms; the broker sweeps every 250 ms, so allow +400 ms.
    const SLACK: Duration = Duration::from_millis(400);
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/delayed", "client-individual");
    c.send_to_sync("/queue/delayed", b"later", &[]);
    let mut m = c.expect(Command::Message, TIMEOUT);
    for (n, delay_ms) in [(1u32, 300u64), (2, 600)] {
        let delay = Duration::from_millis(delay_ms);
        let nacked = Instant::now();
        c.send(&nack_frame(&m));
        m = c.expect(Command::Message, TIMEOUT);
        let took = nacked.elapsed();
        assert_eq!(body(&m), "later");
        assert_eq!(
            m.get("redelivery-count"),
            Some(n.to_string().as_str()),
            "{}",
            describe(&m)
        );
        // A few ms of slack below: the broker's clock is read after ours, in whole ms.
        assert!(
            took + Duration::from_millis(10) >= delay,
            "redelivery {n} arrived {took:?} after the NACK, before the {delay:?} delay"
        );
        assert!(
            took <= delay + SLACK,
            "redelivery {n} arrived {took:?} after the NACK, more than {SLACK:?} late for {delay:?}"
        );
    }
    c.send_with_receipt(ack_frame(&m));
}

#[test]
fn redelivery_delay_is_capped_by_redelivery_delay_max_ms() {
    // 200 ms, backoff 10, max 300: the 2nd redelivery waits 300 ms, not 2 s.
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/capped", "client-individual");
    c.send_to_sync("/queue/capped", b"capped", &[]);
    let mut m = c.expect(Command::Message, TIMEOUT);
    for n in 1..=2u32 {
        let nacked = Instant::now();
        c.send(&nack_frame(&m));
        m = c.expect(Command::Message, TIMEOUT);
        let took = nacked.elapsed();
        assert_eq!(
            m.get("redelivery-count"),
            Some(n.to_string().as_str()),
            "{}",
            describe(&m)
        );
        assert!(
            took + Duration::from_millis(10) >= Duration::from_millis(200),
            "redelivery {n} after {took:?}, before the 200 ms delay"
        );
        assert!(
            took <= Duration::from_millis(300 + 400),
            "redelivery {n} after {took:?}: the delay is capped at 300 ms"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. redelivery-count across a restart
// ---------------------------------------------------------------------------------------------

#[test]
fn redelivery_count_survives_a_restart_of_a_persistent_queue() {
    let mut broker = broker();
    {
        let mut c = Client::connect_v12(broker.addr());
        c.subscribe_sync("s", "/queue/durable", "client-individual");
        c.send_to_sync("/queue/durable", b"sticky", &[]);
        let m = c.expect(Command::Message, TIMEOUT);
        c.send_with_receipt(nack_frame(&m));
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(m.get("redelivery-count"), Some("1"), "{}", describe(&m));
        c.send_with_receipt(nack_frame(&m));
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(m.get("redelivery-count"), Some("2"), "{}", describe(&m));
        // Left unacknowledged: SIGTERM while it is in flight.
        broker.sigterm();
        let status = broker
            .wait_exit(TIMEOUT * 2)
            .expect("stompd did not exit after SIGTERM");
        assert!(status.success(), "stompd exited with {status}");
    }
    broker.restart();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/durable", "client-individual");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&m), "sticky");
    assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(&m));
    let count: u32 = header(&m, "redelivery-count")
        .parse()
        .unwrap_or_else(|_| panic!("redelivery-count not a number: {}", describe(&m)));
    assert!(
        count >= 2,
        "redelivery-count {count} after a restart, was 2 before: {}",
        describe(&m)
    );
}

/// A NACKed message still waiting out its redelivery delay when the broker stops keeps the count
/// that NACK gave it.
#[test]
fn redelivery_count_of_a_message_waiting_out_its_delay_survives_a_restart() {
    let mut broker = broker();
    {
        let mut c = Client::connect_v12(broker.addr());
        c.subscribe_sync("s", "/queue/durable-delayed", "client-individual");
        c.send_to_sync("/queue/durable-delayed", b"waiting", &[]);
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(m.get("redelivery-count"), None, "{}", describe(&m));
        c.send_with_receipt(nack_frame(&m));
        c.unsubscribe_sync("s");
        c.disconnect();
    }
    broker.sigterm();
    let status = broker
        .wait_exit(TIMEOUT * 2)
        .expect("stompd did not exit after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
    broker.restart();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/durable-delayed", "client-individual");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&m), "waiting");
    assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(&m));
    assert_eq!(
        m.get("redelivery-count"),
        Some("1"),
        "NACKed once before the restart: {}",
        describe(&m)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Dead letters explain themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn message_over_max_redeliveries_is_dead_lettered_with_reason_and_headers() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/limited", "client-individual");
    let payload = "poison \u{e9}\0 body";
    c.send_to_sync(
        "/queue/limited",
        payload.as_bytes(),
        &[("x-orig", "kept"), ("content-type", "text/plain")],
    );
    // max_redeliveries = 2: delivered 3 times, the 3rd NACK dead-letters it.
    for n in 0..3 {
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(body(&m), payload);
        if n > 0 {
            assert_eq!(
                m.get("redelivery-count"),
                Some(n.to_string().as_str()),
                "{}",
                describe(&m)
            );
        }
        c.send_with_receipt(nack_frame(&m));
    }
    c.expect_nothing(QUIET);
    c.subscribe("dlq", "/queue/limited-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&d.body[..], payload.as_bytes(), "body changed");
    assert_eq!(d.get("x-orig"), Some("kept"), "{}", describe(&d));
    assert_eq!(
        d.get("content-type"),
        Some("text/plain"),
        "{}",
        describe(&d)
    );
    check_dead_letter(&d, "/queue/limited", "max-redeliveries");
    let redeliveries: u32 = header(&d, "dead-letter-redeliveries").parse().unwrap();
    assert!(
        redeliveries >= 2,
        "dead-letter-redeliveries {redeliveries}: it was redelivered twice: {}",
        describe(&d)
    );
    c.expect_nothing(QUIET);
}

#[test]
fn expired_message_is_dead_lettered_with_reason_expired() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/expiring", b"short-lived", &[("ttl", "100")]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("dlq", "/queue/expiring-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&d), "short-lived");
    check_dead_letter(&d, "/queue/expiring", "expired");
    c.subscribe_sync("s", "/queue/expiring", "auto");
    c.expect_nothing(QUIET);
}

#[test]
fn drop_oldest_overflow_dead_letters_with_reason_overflow() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["a", "b", "c"] {
        p.send_to_sync("/queue/overflowing", b.as_bytes(), &[]);
    }
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("dlq", "/queue/overflowing-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&d), "a");
    check_dead_letter(&d, "/queue/overflowing", "overflow");
    c.expect_nothing(QUIET);
    c.subscribe("s", "/queue/overflowing", "auto");
    assert_eq!(bodies(&c.recv_messages(2, TIMEOUT)), vec!["b", "c"]);
}

#[test]
fn a_per_priority_limit_refuses_only_the_full_priority() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["h1", "h2"] {
        p.send_to_sync("/queue/per-priority", b.as_bytes(), &[("priority", "9")]);
    }
    // Another priority still has room.
    p.send_to_sync("/queue/per-priority", b"low", &[("priority", "1")]);
    let e = expect_error_with_receipt(
        &mut p,
        send_frame("/queue/per-priority", b"h3", &[("priority", "9")]),
        "queue-full",
        "r-full",
    );
    assert!(
        header(&e, "message").contains("priority 9"),
        "{}",
        describe(&e)
    );
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/per-priority", "auto");
    assert_eq!(
        bodies(&c.recv_messages(3, TIMEOUT)),
        vec!["h1", "h2", "low"]
    );
    c.expect_nothing(QUIET);
}

#[test]
fn a_per_priority_limit_with_drop_oldest_dead_letters_the_oldest_of_that_priority() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/per-priority-drop", b"old", &[("priority", "7")]);
    p.send_to_sync("/queue/per-priority-drop", b"other", &[("priority", "2")]);
    p.send_to_sync("/queue/per-priority-drop", b"new", &[("priority", "7")]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("dlq", "/queue/per-priority-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&d), "old");
    check_dead_letter(&d, "/queue/per-priority-drop", "overflow");
    c.subscribe("s", "/queue/per-priority-drop", "auto");
    assert_eq!(bodies(&c.recv_messages(2, TIMEOUT)), vec!["new", "other"]);
}

// ---------------------------------------------------------------------------------------------
// 5. Ack timeout and the event channel
// ---------------------------------------------------------------------------------------------

#[test]
fn ack_timeout_takes_the_message_back_and_tells_the_consumer_on_sys_events() {
    let broker = broker();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("ev", "/sys/events", "auto");
    a.subscribe_sync("slow-a", "/queue/slow", "client-individual");
    let mut b = Client::connect_v12(broker.addr());
    b.subscribe_sync("slow-b", "/queue/slow", "client-individual");

    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/slow", b"work", &[]);
    let m = a.expect(Command::Message, TIMEOUT);
    let delivered = Instant::now();
    assert_eq!(m.get("subscription"), Some("slow-a"), "{}", describe(&m));
    assert_eq!(body(&m), "work");

    // Not acknowledged: after 500 ms (+ a sweep) it goes to the other consumer.
    let again = b.expect(Command::Message, Duration::from_millis(2500));
    let took = delivered.elapsed();
    assert_eq!(body(&again), "work");
    assert_eq!(
        again.get("redelivered"),
        Some("true"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        again.get("redelivery-count"),
        Some("1"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        again.get("message-id"),
        m.get("message-id"),
        "{}",
        describe(&again)
    );
    assert!(
        took <= Duration::from_millis(1500),
        "taken back and redelivered {took:?} after delivery with ack_timeout_ms = 500"
    );
    assert!(
        took >= Duration::from_millis(450),
        "taken back {took:?} after delivery, before the 500 ms ack timeout"
    );

    let ev = a.expect(Command::Message, TIMEOUT);
    assert_eq!(
        ev.get("destination"),
        Some("/sys/events"),
        "{}",
        describe(&ev)
    );
    assert_eq!(ev.get("subscription"), Some("ev"), "{}", describe(&ev));
    assert_eq!(ev.get("event"), Some("ack-timeout"), "{}", describe(&ev));
    // The event's own `subscription` header is the channel's; the timed-out subscription is
    // named by `event-subscription`.
    assert_eq!(
        ev.get("event-subscription"),
        Some("slow-a"),
        "the event should name the subscription slow-a: {}",
        describe(&ev)
    );
    assert_eq!(
        ev.get("subscription-destination"),
        Some("/queue/slow"),
        "{}",
        describe(&ev)
    );
    assert_eq!(
        ev.get("timed-out-message-id"),
        m.get("message-id"),
        "{}",
        describe(&ev)
    );

    // The late ACK is accepted (a no-op), the connection stays usable.
    a.send_with_receipt(ack_frame(&m));
    a.assert_round_trip("after-ack-timeout");
    b.send_with_receipt(ack_frame(&again));
    b.expect_nothing(QUIET);
}

// ---------------------------------------------------------------------------------------------
// 6. Closed queues and the end-of-stream marker
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_end_of_stream(f: &Frame, destination: &str, subscription: &str) {
    assert_eq!(f.command, Command::Message, "{}", describe(f));
    assert_eq!(f.get("queue-state"), Some("closed"), "{}", describe(f));
    assert_eq!(f.get("destination"), Some(destination), "{}", describe(f));
    assert_eq!(f.get("subscription"), Some(subscription), "{}", describe(f));
    assert!(
        f.body.is_empty(),
        "end-of-stream with a body: {}",
        describe(f)
    );
}

#[test]
fn config_closed_queue_refuses_send_and_gives_a_subscriber_one_end_of_stream_message() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/shut", "auto");
    let frames = drain(&mut c, QUIET);
    assert_eq!(
        frames.len(),
        1,
        "expected exactly one end-of-stream MESSAGE, got {:?}",
        frames.iter().map(describe).collect::<Vec<_>>()
    );
    assert_end_of_stream(&frames[0], "/queue/shut", "s");

    let mut p = Client::connect_v12(broker.addr());
    expect_error_with_receipt(
        &mut p,
        send_frame("/queue/shut", b"no", &[]),
        "queue-closed",
        "r-shut",
    );
    c.expect_nothing(QUIET);
}

/// The admin listener's address, from its `listening on ADDR` log line.
/// One HTTP/1.1 request without a body; returns the status and the response text.
#[test]
fn queue_closed_through_admin_delivers_what_it_holds_then_one_end_of_stream_per_consumer() {
    let broker = Broker::builder()
        .config(config_with(QUEUES))
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .start();
    let admin = broker.admin_addr();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["a", "b", "c"] {
        p.send_to_sync("/queue/drain", b.as_bytes(), &[]);
    }
    let (status, text) = http(admin, "POST", "/api/queues/drain/close");
    assert_eq!(status, 200, "close answered {text}");
    expect_error_with_receipt(
        &mut p,
        send_frame("/queue/drain", b"late", &[]),
        "queue-closed",
        "r-late",
    );

    let mut c1 = Client::connect_v12(broker.addr());
    c1.subscribe_sync("c1", "/queue/drain", "client-individual");
    let mut c2 = Client::connect_v12(broker.addr());
    c2.subscribe_sync("c2", "/queue/drain", "client-individual");

    let msgs = c1.recv_messages(3, TIMEOUT);
    assert_eq!(bodies(&msgs), vec!["a", "b", "c"]);
    for m in &msgs {
        assert_eq!(m.get("queue-state"), None, "{}", describe(m));
    }
    // Not drained while deliveries are unacknowledged (a NACK could bring them back).
    c1.expect_nothing(QUIET);
    c2.expect_nothing(Duration::from_millis(100));
    for m in &msgs {
        c1.send_with_receipt(ack_frame(m));
    }

    for (c, sub) in [(&mut c1, "c1"), (&mut c2, "c2")] {
        let frames = drain(c, QUIET);
        assert_eq!(
            frames.len(),
            1,
            "{sub}: expected exactly one end-of-stream MESSAGE, got {:?}",
            frames.iter().map(describe).collect::<Vec<_>>()
        );
        assert_end_of_stream(&frames[0], "/queue/drain", sub);
        // In a client mode the marker has an ack id; acknowledging it is harmless.
        if let Some(ack) = frames[0].get("ack") {
            c.send_with_receipt(Frame::new(Command::Ack).with_header("id", ack));
        }
    }

    // A consumer arriving after the end also learns it once.
    let mut c3 = Client::connect_v12(broker.addr());
    c3.subscribe_sync("c3", "/queue/drain", "auto");
    let frames = drain(&mut c3, QUIET);
    assert_eq!(
        frames.len(),
        1,
        "c3: {:?}",
        frames.iter().map(describe).collect::<Vec<_>>()
    );
    assert_end_of_stream(&frames[0], "/queue/drain", "c3");

    // Reopened: producers are accepted again and consumers get the new messages.
    c1.unsubscribe_sync("c1");
    c2.unsubscribe_sync("c2");
    let (status, text) = http(admin, "POST", "/api/queues/drain/reopen");
    assert_eq!(status, 200, "reopen answered {text}");
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/drain", b"reopened", &[]);
    let m = c3.expect(Command::Message, TIMEOUT);
    assert_eq!(body(&m), "reopened");
}

// ---------------------------------------------------------------------------------------------
// 7. Browse with selective removal
// ---------------------------------------------------------------------------------------------

/// A browser subscription's frames: the browsed messages and the end marker.
fn browse(c: &mut Client, id: &str, destination: &str) -> (Vec<Frame>, Frame) {
    c.send_with_receipt(subscribe_frame(id, destination, "auto").with_header("browser", "true"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = c
            .recv(left)
            .unwrap_or_else(|| panic!("no browser:end within {TIMEOUT:?}; saw {}", seen.len()));
        assert_eq!(f.command, Command::Message, "{}", describe(&f));
        if f.get("browser") == Some("end") {
            return (seen, f);
        }
        seen.push(f);
    }
}

#[test]
fn browser_sees_messages_with_ack_ids_then_an_end_marker_and_consumes_nothing() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["one", "two", "three"] {
        p.send_to_sync("/queue/browsed", b.as_bytes(), &[]);
    }
    let mut b = Client::connect_v12(broker.addr());
    let (seen, end) = browse(&mut b, "b", "/queue/browsed");
    assert_eq!(bodies(&seen), vec!["one", "two", "three"]);
    for m in &seen {
        assert!(m.get("ack").is_some(), "{}", describe(m));
        assert_eq!(m.get("subscription"), Some("b"), "{}", describe(m));
    }
    assert_eq!(
        end.get("message-id"),
        Some("browser-end"),
        "{}",
        describe(&end)
    );
    assert_eq!(end.get("subscription"), Some("b"), "{}", describe(&end));
    b.expect_nothing(QUIET);
    b.unsubscribe_sync("b");

    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/browsed", "auto");
    assert_eq!(
        bodies(&c.recv_messages(3, TIMEOUT)),
        vec!["one", "two", "three"]
    );
    c.expect_nothing(QUIET);
}

#[test]
fn ack_of_a_browsed_message_removes_exactly_that_message() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["keep-1", "remove-me", "keep-2"] {
        p.send_to_sync("/queue/browsed", b.as_bytes(), &[]);
    }
    let mut b = Client::connect_v12(broker.addr());
    let (seen, _) = browse(&mut b, "b", "/queue/browsed");
    assert_eq!(bodies(&seen), vec!["keep-1", "remove-me", "keep-2"]);
    b.send_with_receipt(ack_frame(&seen[1]));
    b.expect_nothing(QUIET);

    // A second browse no longer sees it.
    let mut b2 = Client::connect_v12(broker.addr());
    let (seen2, _) = browse(&mut b2, "b2", "/queue/browsed");
    assert_eq!(bodies(&seen2), vec!["keep-1", "keep-2"]);

    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/browsed", "auto");
    assert_eq!(
        bodies(&c.recv_messages(2, TIMEOUT)),
        vec!["keep-1", "keep-2"]
    );
    c.expect_nothing(QUIET);
}

// ---------------------------------------------------------------------------------------------
// 8. Idempotent producers
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_idempotency_key_is_receipted_but_enqueued_once() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/dedup", b"first", &[("idempotency-key", "k1")]);
    p.send_to_sync("/queue/dedup", b"retry", &[("idempotency-key", "k1")]);
    p.send_to_sync("/queue/dedup", b"other", &[("idempotency-key", "k2")]);
    p.send_to_sync("/queue/dedup", b"plain", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/dedup", "auto");
    assert_eq!(
        bodies(&c.recv_messages(3, TIMEOUT)),
        vec!["first", "other", "plain"]
    );
    c.expect_nothing(QUIET);
}

#[test]
fn idempotency_key_dedup_holds_across_a_restart_of_a_persistent_queue() {
    let mut broker = broker();
    {
        let mut p = Client::connect_v12(broker.addr());
        p.send_to_sync(
            "/queue/dedup-durable",
            b"before",
            &[("idempotency-key", "d1")],
        );
        p.disconnect();
    }
    broker.sigterm();
    let status = broker
        .wait_exit(TIMEOUT * 2)
        .expect("stompd did not exit after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
    broker.restart();

    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync(
        "/queue/dedup-durable",
        b"after",
        &[("idempotency-key", "d1")],
    );
    p.send_to_sync("/queue/dedup-durable", b"new", &[("idempotency-key", "d2")]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/dedup-durable", "auto");
    assert_eq!(bodies(&c.recv_messages(2, TIMEOUT)), vec!["before", "new"]);
    c.expect_nothing(QUIET);
}

#[test]
fn idempotency_key_is_forgotten_after_dedup_window_ms() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/dedup-timed", b"first", &[("idempotency-key", "t1")]);
    p.send_to_sync("/queue/dedup-timed", b"dup", &[("idempotency-key", "t1")]);
    thread::sleep(Duration::from_millis(600));
    p.send_to_sync(
        "/queue/dedup-timed",
        b"much-later",
        &[("idempotency-key", "t1")],
    );
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/dedup-timed", "auto");
    assert_eq!(
        bodies(&c.recv_messages(2, TIMEOUT)),
        vec!["first", "much-later"]
    );
    c.expect_nothing(QUIET);
}

// ---------------------------------------------------------------------------------------------
// 9. Exact expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn expires_expiration_and_ttl_are_all_honoured_and_expiry_behind_the_head_is_swept() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    let sent = Instant::now();
    let soon = (now_ms() + 200).to_string();
    let later = (now_ms() + 60_000).to_string();
    // The head: high priority, never expires; nobody consumes, so the rest sits behind it.
    p.send_to_sync("/queue/expiring", b"head", &[("priority", "9")]);
    p.send_to_sync(
        "/queue/expiring",
        b"by-expires",
        &[("priority", "1"), ("expires", soon.as_str())],
    );
    p.send_to_sync(
        "/queue/expiring",
        b"by-expiration",
        &[("priority", "1"), ("expiration", "200")],
    );
    p.send_to_sync(
        "/queue/expiring",
        b"by-ttl",
        &[("priority", "1"), ("ttl", "200")],
    );
    p.send_to_sync(
        "/queue/expiring",
        b"expires-later",
        &[("priority", "1"), ("expires", later.as_str())],
    );
    p.send_to_sync("/queue/expiring", b"tail", &[("priority", "0")]);

    let mut d = Client::connect_v12(broker.addr());
    d.subscribe("dlq", "/queue/expiring-dlq", "auto");
    let dead = d.recv_messages(3, Duration::from_millis(2500));
    let took = sent.elapsed();
    let mut got = bodies(&dead);
    got.sort();
    assert_eq!(
        got,
        vec!["by-expiration", "by-expires", "by-ttl"],
        "expired messages in the dead-letter queue after {took:?}"
    );
    assert!(
        took <= Duration::from_millis(200 + 1000 + 300),
        "expired messages were removed {took:?} after sending (expiry at 200 ms, within ~1 s)"
    );
    for m in &dead {
        check_dead_letter(m, "/queue/expiring", "expired");
    }
    d.expect_nothing(QUIET);

    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/expiring", "auto");
    assert_eq!(
        bodies(&c.recv_messages(3, TIMEOUT)),
        vec!["head", "expires-later", "tail"]
    );
    c.expect_nothing(QUIET);
}

// ---------------------------------------------------------------------------------------------
// 10. Heart-beats
// ---------------------------------------------------------------------------------------------

#[test]
fn heartbeats_are_negotiated_logged_and_late_beats_within_the_grace_are_tolerated() {
    let broker = Broker::with_config(&config_with(
        "[heartbeat]\nsend_ms = 400\nexpect_ms = 400\nmin_ms = 100\n",
    ));
    let mut c = Client::connect_with(
        broker.addr(),
        &[
            ("accept-version", "1.2"),
            ("host", "localhost"),
            ("heart-beat", "400,400"),
        ],
    );
    let connected = c.connected.clone().expect("connected");
    let hb = HeartBeat::parse(header(&connected, "heart-beat")).expect("valid heart-beat");
    assert_eq!(
        (hb.cx, hb.cy),
        (400, 400),
        "CONNECTED heart-beat: {}",
        describe(&connected)
    );
    assert!(
        broker.wait_for_log("expect_heartbeat_ms", TIMEOUT),
        "no `connected` log line with the negotiated heart-beats:\n{}",
        broker.log()
    );
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("connected") && l.contains("expect_heartbeat_ms"))
        .unwrap_or_else(|| panic!("no `connected` line with heart-beats:\n{log}"));
    assert!(
        line.contains("send_heartbeat_ms=400") && line.contains("expect_heartbeat_ms=400"),
        "the connected line should show 400 ms both ways: {line}"
    );

    // Promised 400 ms, beats every 550 ms: under the 1.5 x 400 = 600 ms grace.
    let start = Instant::now();
    let mut next = start + Duration::from_millis(550);
    while start.elapsed() < Duration::from_secs(3) {
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match c.recv_heartbeat_or_frame(left) {
                Event::HeartBeat | Event::Timeout => {}
                Event::Frame(f) => panic!("unexpected frame {}", describe(&f)),
                Event::Closed => panic!(
                    "dropped after {:?} although beats came every 550 ms (grace 1.5 x 400 ms)",
                    start.elapsed()
                ),
            }
        }
        c.send_heartbeat();
        next += Duration::from_millis(550);
    }
    c.assert_round_trip("after-late-beats");
}

#[test]
fn dead_letters_move_back_to_their_queue_through_the_admin_api_and_the_cli() {
    let config = config_with(
        "[queues.jobs]\nnack = \"dead-letter\"\ndead_letter = \"jobs-dlq\"\n\n[queues.jobs-dlq]\n",
    );
    let broker = Broker::builder()
        .config(config)
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .start();
    let admin = broker.admin_addr();
    let mut c = Client::connect_v12(broker.addr());
    for body in ["j1", "j2"] {
        c.send_to_sync("/queue/jobs", body.as_bytes(), &[("color", "red")]);
    }
    c.subscribe_sync("w", "/queue/jobs", "client-individual");
    for _ in 0..2 {
        let m = c.expect(Command::Message, TIMEOUT);
        let ack = m.get("ack").expect("ack id").to_owned();
        c.send(&Frame::new(Command::Nack).with_header("id", ack.as_str()));
    }
    c.send(
        &Frame::new(Command::Unsubscribe)
            .with_header("id", "w")
            .with_header("receipt", "u"),
    );
    c.expect(Command::Receipt, TIMEOUT);

    // Both are dead letters now; the admin call moves one batch back.
    let (status, text) = http(admin, "POST", "/api/queues/jobs-dlq/redrive");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"moved\":2"), "{text}");

    c.subscribe_sync("again", "/queue/jobs", "client-individual");
    for _ in 0..2 {
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(m.get("color"), Some("red"), "{}", describe(&m));
        assert_eq!(
            m.get("dead-letter-reason"),
            None,
            "dead-letter headers removed"
        );
        let ack = m.get("ack").expect("ack id").to_owned();
        // Dead-letter them again for the CLI round.
        c.send(&Frame::new(Command::Nack).with_header("id", ack.as_str()));
    }
    c.send(
        &Frame::new(Command::Unsubscribe)
            .with_header("id", "again")
            .with_header("receipt", "u2"),
    );
    c.expect(Command::Receipt, TIMEOUT);

    let out = std::process::Command::new(stompd_tests::stompd_bin())
        .args(["redrive", "/queue/jobs-dlq", "--admin", &admin.to_string()])
        .output()
        .expect("run stompd redrive");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"moved\":2"));
}

fn admin_broker() -> (Broker, SocketAddr) {
    let broker = Broker::builder()
        .config(config_with(QUEUES))
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .start();
    let admin = broker.admin_addr();
    (broker, admin)
}

#[test]
fn subscribers_learn_on_sys_events_that_their_queue_was_closed_and_reopened() {
    let (broker, admin) = admin_broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("ev", "/sys/events", "auto");
    c.subscribe_sync("work", "/queue/watched", "client-individual");
    let (status, _) = http(admin, "POST", "/api/queues/watched/close");
    assert_eq!(status, 200);
    // The event, and (the queue being empty) the end-of-stream marker on the subscription.
    let (mut event, mut eos) = (None, None);
    while event.is_none() || eos.is_none() {
        let f = c.expect(Command::Message, TIMEOUT);
        if f.get("destination") == Some("/sys/events") {
            event = Some(f);
        } else {
            eos = Some(f);
        }
    }
    let (event, eos) = (event.unwrap(), eos.unwrap());
    assert_eq!(header(&event, "event"), "queue-closed");
    assert_eq!(header(&event, "subscription"), "ev");
    assert_eq!(header(&event, "event-subscription"), "work");
    assert_eq!(header(&event, "subscription-destination"), "/queue/watched");
    assert_end_of_stream(&eos, "/queue/watched", "work");
    let (status, _) = http(admin, "POST", "/api/queues/watched/reopen");
    assert_eq!(status, 200);
    let f = loop {
        let f = c.expect(Command::Message, TIMEOUT);
        if f.get("destination") == Some("/sys/events") {
            break f;
        }
    };
    assert_eq!(header(&f, "event"), "queue-reopened");
    // The connection is still usable.
    c.send_to_sync("/queue/watched", b"after", &[]);
}

#[test]
fn a_producer_is_told_once_on_sys_events_when_a_queue_nears_its_limit() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.subscribe_sync("ev", "/sys/events", "auto");
    for i in 0..3 {
        p.send_to_sync("/queue/quota", format!("m{i}").as_bytes(), &[]);
    }
    p.expect_nothing(QUIET);
    p.send_to_sync("/queue/quota", b"m3", &[]);
    let e = p.expect(Command::Message, TIMEOUT);
    assert_eq!(header(&e, "event"), "quota-near", "{}", describe(&e));
    assert_eq!(header(&e, "queue"), "/queue/quota");
    assert_eq!(header(&e, "depth"), "4");
    assert_eq!(header(&e, "max-messages"), "5");
    p.send_to_sync("/queue/quota", b"m4", &[]);
    p.expect_nothing(QUIET);
    // Without an events subscription nobody is told and nothing changes for the producer.
    let mut other = Client::connect_v12(broker.addr());
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/quota", "auto");
    assert_eq!(c.recv_messages(5, TIMEOUT).len(), 5);
    other.send_to_sync("/queue/quota", b"x", &[]);
}

#[test]
fn closing_a_queue_with_dead_letter_moves_its_messages_with_reason_queue_closed() {
    let (broker, admin) = admin_broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["a", "b", "c"] {
        p.send_to_sync("/queue/evacuated", b.as_bytes(), &[]);
    }
    let (status, body) = http(
        admin,
        "POST",
        "/api/queues/evacuated/close?dead_letter=true",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"dead_lettered\":3"), "{body}");
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("dlq", "/queue/evacuated-dlq", "auto");
    let moved = c.recv_messages(3, TIMEOUT);
    assert_eq!(bodies(&moved), vec!["a", "b", "c"]);
    for d in &moved {
        check_dead_letter(d, "/queue/evacuated", "queue-closed");
    }
    expect_error_with_receipt(
        &mut p,
        send_frame("/queue/evacuated", b"late", &[]),
        "queue-closed",
        "r-late",
    );
    // A queue without a dead-letter queue is not emptied by mistake.
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/no-dlq", b"keep", &[]);
    let (status, body) = http(admin, "POST", "/api/queues/no-dlq/close?dead_letter=true");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no-dead-letter-queue"), "{body}");
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/no-dlq", "auto");
    assert_eq!(bodies(&c.recv_messages(1, TIMEOUT)), vec!["keep"]);
}

#[test]
fn an_acknowledged_message_s_idempotency_key_still_suppresses_a_duplicate_after_kill_9() {
    let mut broker = broker();
    {
        let mut p = Client::connect_v12(broker.addr());
        p.send_to_sync(
            "/queue/dedup-durable",
            b"first",
            &[("idempotency-key", "a1")],
        );
        let mut c = Client::connect_v12(broker.addr());
        c.subscribe_sync("s", "/queue/dedup-durable", "client-individual");
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(body(&m), "first");
        c.send_with_receipt(ack_frame(&m));
    }
    broker.kill9();
    broker.restart();
    let mut p = Client::connect_v12(broker.addr());
    // Receipted (the producer's retry succeeds) but not enqueued again.
    p.send_to_sync(
        "/queue/dedup-durable",
        b"retry",
        &[("idempotency-key", "a1")],
    );
    p.send_to_sync(
        "/queue/dedup-durable",
        b"other",
        &[("idempotency-key", "a2")],
    );
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/dedup-durable", "auto");
    assert_eq!(bodies(&c.recv_messages(1, TIMEOUT)), vec!["other"]);
    c.expect_nothing(QUIET);
}
