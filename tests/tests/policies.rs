//! Queue policies and destinations (issue 3): priorities, expiry, redelivery limit and dead
//! letters, depth limits, closed queues, `acknowledgement = "required"`, browsing, reply-to with
//! temporary queues, and run-time destination rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, subscribe_frame, Broker, Client, QUIET, TIMEOUT};

const QUEUES: &str = r#"
[queues.retry]
max_redeliveries = 1
dead_letter = "retry-dlq"

[queues.retry-dlq]

[queues.expiring]
dead_letter = "expired-dlq"

[queues.expired-dlq]

[queues.small]
max_messages = 2
overflow = "reject"

[queues.oldest]
max_messages = 2
overflow = "drop-oldest"

[queues.shut]
closed = true

[queues.strict]
acknowledgement = "required"
"#;

fn broker() -> Broker {
    Broker::with_config(&config_with(QUEUES))
}

fn bodies(msgs: &[Frame]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn higher_priority_is_delivered_first_fifo_within_a_priority() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for (body, prio) in [
        ("low", "1"),
        ("mid-a", "5"),
        ("high", "9"),
        ("mid-b", "5"),
        ("default", ""),
    ] {
        let headers: &[(&str, &str)] = if prio.is_empty() {
            &[]
        } else {
            &[("priority", prio)]
        };
        p.send_to("/queue/prio", body.as_bytes(), headers);
    }
    p.send_to_sync("/queue/prio-fence", b"", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/prio", "auto");
    let msgs = c.recv_messages(5, TIMEOUT);
    assert_eq!(
        bodies(&msgs),
        vec!["high", "mid-a", "mid-b", "default", "low"]
    );
}

#[test]
fn message_already_expired_is_never_delivered() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    let past = (now_ms() - 1000).to_string();
    p.send_to_sync("/queue/stale", b"stale", &[("expires", past.as_str())]);
    p.send_to_sync("/queue/stale", b"fresh", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/stale", "auto");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"fresh");
    c.expect_nothing(QUIET);
}

#[test]
fn message_whose_ttl_passed_while_queued_is_not_delivered_and_goes_to_the_dead_letter_queue() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/expiring", b"short-lived", &[("ttl", "100")]);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/expiring", "auto");
    c.expect_nothing(QUIET);
    c.subscribe("dlq", "/queue/expired-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&d.body[..], b"short-lived");
    assert!(
        d.headers
            .iter()
            .any(|(_, v)| v.as_str() == "/queue/expiring"),
        "the dead letter should record its original destination: {}",
        describe(&d)
    );
}

#[test]
fn message_over_the_redelivery_limit_moves_to_the_dead_letter_queue() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/retry", "client-individual");
    c.send_to_sync("/queue/retry", b"poison", &[("x-orig", "kept")]);
    let mut deliveries = 0;
    while let Some(m) = c.recv(Duration::from_millis(500)) {
        assert_eq!(m.command, Command::Message, "{}", describe(&m));
        deliveries += 1;
        assert!(
            deliveries <= 2,
            "delivered {deliveries} times with max_redeliveries = 1"
        );
        let id = m.get("ack").expect("ack header").to_owned();
        c.send(&Frame::new(Command::Nack).with_header("id", id.as_str()));
    }
    assert_eq!(deliveries, 2, "first delivery plus one redelivery");
    c.subscribe("dlq", "/queue/retry-dlq", "auto");
    let d = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&d.body[..], b"poison");
    assert_eq!(d.get("x-orig"), Some("kept"), "{}", describe(&d));
    assert!(
        d.headers.iter().any(|(_, v)| v.as_str() == "/queue/retry"),
        "the dead letter should record its original destination: {}",
        describe(&d)
    );
    assert!(
        d.headers.iter().any(|(k, _)| k.as_str().contains("reason")),
        "the dead letter should record the reason: {}",
        describe(&d)
    );
}

#[test]
fn send_over_a_reject_depth_limit_gets_error_naming_the_queue_and_keeps_stored_messages() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/small", b"one", &[]);
    p.send_to_sync("/queue/small", b"two", &[]);
    p.send(&stompd_tests::send_frame("/queue/small", b"three", &[]));
    let e = p.expect(Command::Error, TIMEOUT);
    let text = format!(
        "{} {}",
        e.get("message").unwrap_or_default(),
        String::from_utf8_lossy(&e.body)
    );
    assert!(
        text.contains("small"),
        "the ERROR should name the queue: {}",
        describe(&e)
    );
    assert!(
        text.contains('2'),
        "the ERROR should name the limit: {}",
        describe(&e)
    );
    assert!(p.is_closed(TIMEOUT), "connection stayed open after ERROR");

    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/small", "auto");
    let msgs = c.recv_messages(2, TIMEOUT);
    assert_eq!(bodies(&msgs), vec!["one", "two"]);
    c.expect_nothing(QUIET);
}

#[test]
fn drop_oldest_depth_limit_keeps_the_newest_messages() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    for b in ["a", "b", "c", "d"] {
        p.send_to_sync("/queue/oldest", b.as_bytes(), &[]);
    }
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/oldest", "auto");
    let msgs = c.recv_messages(2, TIMEOUT);
    assert_eq!(bodies(&msgs), vec!["c", "d"]);
    c.expect_nothing(QUIET);
}

#[test]
fn send_to_a_closed_queue_gets_error_but_subscribing_works() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/shut", "auto");
    let mut p = Client::connect_v12(broker.addr());
    p.send(&stompd_tests::send_frame("/queue/shut", b"no", &[]));
    let e = p.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
    // The queue is closed and empty: the subscriber gets the end-of-stream marker (and never
    // the refused message).
    let end = c.expect(Command::Message, TIMEOUT);
    assert_eq!(end.get("queue-state"), Some("closed"), "{}", describe(&end));
    assert!(end.body.is_empty());
    c.expect_nothing(QUIET);
}

#[test]
fn queue_requiring_acknowledgement_refuses_auto_subscriptions() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    c.send(&subscribe_frame("s", "/queue/strict", "auto"));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));

    let mut ok = Client::connect_v12(broker.addr());
    ok.subscribe_sync("s", "/queue/strict", "client-individual");
    ok.send_to_sync("/queue/strict", b"acked", &[]);
    let m = ok.expect(Command::Message, TIMEOUT);
    assert!(m.get("ack").is_some(), "{}", describe(&m));
}

#[test]
fn browser_subscription_sees_messages_without_consuming_them() {
    let broker = broker();
    let mut p = Client::connect_v12(broker.addr());
    p.send_to_sync("/queue/browse", b"first", &[]);
    p.send_to_sync("/queue/browse", b"second", &[]);
    let mut b = Client::connect_v12(broker.addr());
    b.send_with_receipt(
        subscribe_frame("b", "/queue/browse", "auto").with_header("browser", "true"),
    );
    let mut seen = Vec::new();
    while let Some(m) = b.recv(QUIET) {
        seen.push(String::from_utf8_lossy(&m.body).into_owned());
    }
    assert!(
        seen.contains(&"first".to_owned()) && seen.contains(&"second".to_owned()),
        "browser saw {seen:?}"
    );
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/browse", "auto");
    assert_eq!(
        bodies(&c.recv_messages(2, TIMEOUT)),
        vec!["first", "second"]
    );
}

#[test]
fn reply_to_a_temporary_queue_reaches_its_owner() {
    let broker = broker();
    let mut requester = Client::connect_v12(broker.addr());
    requester.subscribe_sync("replies", "/temp-queue/replies", "auto");
    let mut service = Client::connect_v12(broker.addr());
    service.subscribe_sync("svc", "/queue/service", "auto");

    requester.send_to_sync(
        "/queue/service",
        b"ping",
        &[
            ("reply-to", "/temp-queue/replies"),
            ("correlation-id", "c-1"),
        ],
    );
    let req = service.expect(Command::Message, TIMEOUT);
    let reply_to = req
        .get("reply-to")
        .unwrap_or_else(|| panic!("reply-to did not pass through: {}", describe(&req)))
        .to_owned();
    assert_eq!(req.get("correlation-id"), Some("c-1"));
    service.send_to_sync(&reply_to, b"pong", &[("correlation-id", "c-1")]);

    let reply = requester.expect(Command::Message, TIMEOUT);
    assert_eq!(&reply.body[..], b"pong");
    assert_eq!(
        reply.get("subscription"),
        Some("replies"),
        "{}",
        describe(&reply)
    );
    assert_eq!(reply.get("correlation-id"), Some("c-1"));
}

#[test]
fn destination_matching_no_rule_gets_error() {
    let broker = broker();
    let mut c = Client::connect_v12(broker.addr());
    // '*' does not match '/', so no auto_create rule covers this name.
    c.send(&stompd_tests::send_frame("/queue/nested/name", b"x", &[]));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
    assert!(c.is_closed(TIMEOUT));

    let mut c = Client::connect_v12(broker.addr());
    c.send(&subscribe_frame("s", "/elsewhere/x", "auto"));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
    Client::connect_v12(broker.addr()).assert_round_trip("after-unknown-destination");
}
