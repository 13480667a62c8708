//! SEND -> MESSAGE: queue and topic semantics, headers and bodies passed through intact.

use std::collections::HashSet;
use std::time::Duration;

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, Broker, Client, QUIET, TIMEOUT};

fn seq_of(m: &Frame) -> usize {
    m.get("x-seq")
        .unwrap_or_else(|| panic!("MESSAGE without x-seq: {}", describe(m)))
        .parse()
        .expect("x-seq is a number")
}

#[test]
fn queue_message_sent_before_subscribe_is_delivered_with_required_headers() {
    let broker = Broker::start();
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/queue/x", b"hello queue", &[]);

    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe("sub-7", "/queue/x", "auto");
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(m.get("destination"), Some("/queue/x"), "{}", describe(&m));
    assert_eq!(m.get("subscription"), Some("sub-7"), "{}", describe(&m));
    let id = m.get("message-id").unwrap_or_default();
    assert!(
        !id.is_empty(),
        "MESSAGE without message-id: {}",
        describe(&m)
    );
    assert_eq!(&m.body[..], b"hello queue");
}

#[test]
fn user_headers_pass_through_unchanged_including_escaped_characters() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/hdrs", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    let headers: &[(&str, &str)] = &[
        ("x-plain", "hello world"),
        ("x-colon", "a:b:c"),
        ("x-newline", "line1\nline2"),
        ("x-backslash", "C:\\path\\to"),
        ("x-cr", "a\rb"),
        ("x-empty", ""),
        ("x-unicode", "grüße ✓"),
        ("x-spaces", "  padded  "),
        ("content-type", "text/plain;charset=utf-8"),
    ];
    producer.send_to_sync("/queue/hdrs", b"body", headers);
    let m = consumer.expect(Command::Message, TIMEOUT);
    for (k, v) in headers {
        assert_eq!(m.get(k), Some(*v), "header {k}: {}", describe(&m));
    }
}

#[test]
fn repeated_user_header_keeps_first_value_first() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/repeat", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync(
        "/queue/repeat",
        b"",
        &[("x-rep", "first"), ("x-rep", "second")],
    );
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(m.get("x-rep"), Some("first"), "{}", describe(&m));
}

#[test]
fn headers_from_a_1_1_producer_reach_a_1_2_consumer_intact() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/v11", "auto");
    let mut producer = Client::connect_with(
        broker.addr(),
        &[("accept-version", "1.1"), ("host", "localhost")],
    );
    producer.send_to_sync(
        "/queue/v11",
        b"from 1.1",
        &[("x-colon", "k:v"), ("x-nl", "a\nb"), ("x-bs", "a\\b")],
    );
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(m.get("x-colon"), Some("k:v"), "{}", describe(&m));
    assert_eq!(m.get("x-nl"), Some("a\nb"), "{}", describe(&m));
    assert_eq!(m.get("x-bs"), Some("a\\b"), "{}", describe(&m));
    assert_eq!(&m.body[..], b"from 1.1");
}

#[test]
fn headers_from_a_1_0_producer_are_taken_literally() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/v10", "auto");
    let mut producer = Client::connect_with(broker.addr(), &[]);
    // STOMP 1.0 has no escapes: a backslash is a backslash, the first colon splits.
    producer.send_raw(
        b"SEND\ndestination:/queue/v10\nx-colon:k:v\nx-bs:a\\nb\nreceipt:r10\n\n1.0 body\0",
    );
    producer.wait_receipt("r10", TIMEOUT);
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(m.get("x-colon"), Some("k:v"), "{}", describe(&m));
    assert_eq!(m.get("x-bs"), Some("a\\nb"), "{}", describe(&m));
    assert_eq!(&m.body[..], b"1.0 body");
}

#[test]
fn binary_body_with_nul_bytes_is_delivered_byte_for_byte() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/bin", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(b"\0\0middle\0\n\r\n\0");
    body.extend((0..=255u8).rev());
    producer.send_to_sync(
        "/queue/bin",
        &body,
        &[("content-type", "application/octet-stream")],
    );
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(m.body.len(), body.len());
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(
        m.get("content-length"),
        Some(body.len().to_string().as_str()),
        "{}",
        describe(&m)
    );
}

#[test]
fn raw_send_with_content_length_and_embedded_nul_is_delivered_intact() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/rawnul", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer
        .send_raw(b"SEND\ndestination:/queue/rawnul\ncontent-length:5\nreceipt:r1\n\na\0b\0c\0");
    producer.wait_receipt("r1", TIMEOUT);
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"a\0b\0c");
}

#[test]
fn crlf_line_endings_are_accepted_in_1_2() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/crlf", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_raw(b"SEND\r\ndestination:/queue/crlf\r\nx-h:v\r\nreceipt:r1\r\n\r\ncrlf body\0");
    producer.wait_receipt("r1", TIMEOUT);
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(
        m.get("destination"),
        Some("/queue/crlf"),
        "{}",
        describe(&m)
    );
    assert_eq!(m.get("x-h"), Some("v"), "{}", describe(&m));
    assert_eq!(&m.body[..], b"crlf body");
}

#[test]
fn one_mebibyte_body_round_trips() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/big", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    producer.send_to_sync("/queue/big", &body, &[]);
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert!(m.body[..] == body[..], "1 MiB body differs");
}

#[test]
fn message_ids_are_unique() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/ids", "auto");
    for i in 0..20 {
        c.send_to("/queue/ids", format!("m{i}").as_bytes(), &[]);
    }
    let msgs = c.recv_messages(20, TIMEOUT);
    assert_eq!(msgs.len(), 20);
    let ids: HashSet<_> = msgs
        .iter()
        .map(|m| m.get("message-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20, "message-ids repeat");
}

#[test]
fn queue_delivers_each_message_to_exactly_one_of_two_consumers_round_robin() {
    const N: usize = 40;
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    let mut b = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/work", "auto");
    b.subscribe_sync("b", "/queue/work", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    for i in 0..N {
        let seq = i.to_string();
        producer.send_to("/queue/work", seq.as_bytes(), &[("x-seq", &seq)]);
    }
    producer.send_to_sync("/queue/other", b"fence", &[]);

    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got_a.len() + got_b.len() < N && std::time::Instant::now() < deadline {
        got_a.extend(a.recv_messages(N, Duration::from_millis(100)));
        got_b.extend(b.recv_messages(N, Duration::from_millis(100)));
    }
    // Nothing more arrives later (no duplicates in flight).
    got_a.extend(a.recv_messages(N, QUIET));
    got_b.extend(b.recv_messages(N, QUIET));

    for m in &got_a {
        assert_eq!(m.get("subscription"), Some("a"), "{}", describe(m));
    }
    for m in &got_b {
        assert_eq!(m.get("subscription"), Some("b"), "{}", describe(m));
    }
    let mut all: Vec<usize> = got_a.iter().chain(&got_b).map(seq_of).collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "a message was delivered twice");
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "messages lost");
    let (na, nb) = (got_a.len(), got_b.len());
    assert!(
        na.abs_diff(nb) <= 2,
        "round-robin should split {N} messages evenly, got {na} and {nb}"
    );
    // Each consumer sees its share in send order.
    for got in [&got_a, &got_b] {
        let seqs: Vec<usize> = got.iter().map(seq_of).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "a consumer's messages are out of order");
    }
}

#[test]
fn queue_message_left_by_an_unsubscribed_consumer_goes_to_the_next_subscriber() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/handover", "auto");
    a.unsubscribe_sync("a");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/queue/handover", b"for the next one", &[]);
    a.expect_nothing(QUIET);
    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/handover", "auto");
    let m = b.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"for the next one");
}

#[test]
fn topic_delivers_to_every_current_subscriber_but_not_to_a_later_one() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    let mut b = Client::connect_v12(broker.addr());
    a.subscribe_sync("ta", "/topic/news", "auto");
    b.subscribe_sync("tb", "/topic/news", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/topic/news", b"first", &[("x-n", "1")]);

    for (c, sub) in [(&mut a, "ta"), (&mut b, "tb")] {
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(&m.body[..], b"first");
        assert_eq!(
            m.get("destination"),
            Some("/topic/news"),
            "{}",
            describe(&m)
        );
        assert_eq!(m.get("subscription"), Some(sub), "{}", describe(&m));
        assert_eq!(m.get("x-n"), Some("1"), "{}", describe(&m));
    }

    let mut late = Client::connect_v12(broker.addr());
    late.subscribe_sync("tl", "/topic/news", "auto");
    late.expect_nothing(QUIET);

    producer.send_to_sync("/topic/news", b"second", &[]);
    for c in [&mut a, &mut b, &mut late] {
        let m = c.expect(Command::Message, TIMEOUT);
        assert_eq!(&m.body[..], b"second");
    }
    for c in [&mut a, &mut b, &mut late] {
        c.expect_nothing(QUIET);
    }
}

#[test]
fn topic_message_without_subscribers_is_not_kept() {
    let broker = Broker::start();
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/topic/void", b"nobody listens", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("t", "/topic/void", "auto");
    c.expect_nothing(QUIET);
}

#[test]
fn unsubscribe_stops_topic_delivery() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("t", "/topic/stop", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/topic/stop", b"one", &[]);
    assert_eq!(&c.expect(Command::Message, TIMEOUT).body[..], b"one");
    c.unsubscribe_sync("t");
    producer.send_to_sync("/topic/stop", b"two", &[]);
    c.expect_nothing(QUIET);
}

#[test]
fn unsubscribe_stops_queue_delivery() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("q", "/queue/stop", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/queue/stop", b"one", &[]);
    assert_eq!(&c.expect(Command::Message, TIMEOUT).body[..], b"one");
    c.unsubscribe_sync("q");
    producer.send_to_sync("/queue/stop", b"two", &[]);
    c.expect_nothing(QUIET);
    // The message stayed in the queue.
    c.subscribe("q2", "/queue/stop", "auto");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"two");
    assert_eq!(m.get("subscription"), Some("q2"), "{}", describe(&m));
}

#[test]
fn queue_keeps_per_producer_order() {
    const N: usize = 200;
    let broker = Broker::start();
    let mut producer = Client::connect_v12(broker.addr());
    for i in 0..N {
        let seq = i.to_string();
        producer.send_to("/queue/order", seq.as_bytes(), &[("x-seq", &seq)]);
    }
    producer.send_to_sync("/queue/order-fence", b"", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/order", "auto");
    let msgs = c.recv_messages(N, TIMEOUT);
    let seqs: Vec<usize> = msgs.iter().map(seq_of).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
}

#[test]
fn topic_keeps_per_producer_order() {
    const N: usize = 200;
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/topic/order", "auto");
    let mut producer = Client::connect_v12(broker.addr());
    for i in 0..N {
        let seq = i.to_string();
        producer.send_to("/topic/order", seq.as_bytes(), &[("x-seq", &seq)]);
    }
    let msgs = c.recv_messages(N, TIMEOUT);
    let seqs: Vec<usize> = msgs.iter().map(seq_of).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
}

#[test]
fn two_subscriptions_on_one_connection_are_told_apart_by_subscription_header() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("to-a", "/queue/a", "auto");
    c.subscribe_sync("to-b", "/topic/b", "auto");
    c.send_to_sync("/queue/a", b"A", &[]);
    c.send_to_sync("/topic/b", b"B", &[]);
    let mut msgs = c.recv_messages(2, TIMEOUT);
    assert_eq!(msgs.len(), 2);
    msgs.sort_by(|x, y| x.body.cmp(&y.body));
    assert_eq!(msgs[0].get("subscription"), Some("to-a"));
    assert_eq!(msgs[0].get("destination"), Some("/queue/a"));
    assert_eq!(msgs[1].get("subscription"), Some("to-b"));
    assert_eq!(msgs[1].get("destination"), Some("/topic/b"));
}

#[test]
fn a_1_0_client_can_send_and_receive() {
    let broker = Broker::start();
    let mut c = Client::connect_with(broker.addr(), &[]);
    // STOMP 1.0: SUBSCRIBE without id is allowed.
    c.send_raw(b"SUBSCRIBE\ndestination:/queue/old\nreceipt:s\n\n\0");
    c.wait_receipt("s", TIMEOUT);
    c.send_raw(b"SEND\ndestination:/queue/old\n\nold school\0");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(m.get("destination"), Some("/queue/old"), "{}", describe(&m));
    assert!(m.get("message-id").is_some(), "{}", describe(&m));
    assert_eq!(&m.body[..], b"old school");
}

#[test]
fn a_consumer_that_disconnects_does_not_take_queue_messages_with_it() {
    let broker = Broker::start();
    let mut gone = Client::connect_v12(broker.addr());
    gone.subscribe_sync("g", "/queue/leave", "auto");
    gone.disconnect();
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/queue/leave", b"still here", &[]);
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe("s", "/queue/leave", "auto");
    assert_eq!(&c.expect(Command::Message, TIMEOUT).body[..], b"still here");
}
