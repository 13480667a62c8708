//! Client acknowledgement (issue 3): `client` and `client-individual` modes, NACK, redelivery of
//! unacked messages when a consumer goes away, the prefetch window, and ACK mistakes.

use std::time::Duration;

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, Broker, Client, QUIET, TIMEOUT};

fn ack_frame(m: &Frame) -> Frame {
    let id = m.get("ack").unwrap_or_else(|| {
        panic!(
            "MESSAGE in a client ack mode without `ack` header: {}",
            describe(m)
        )
    });
    Frame::new(Command::Ack).with_header("id", id)
}

fn nack_frame(m: &Frame) -> Frame {
    let id = m.get("ack").unwrap_or_else(|| {
        panic!(
            "MESSAGE in a client ack mode without `ack` header: {}",
            describe(m)
        )
    });
    Frame::new(Command::Nack).with_header("id", id)
}

fn bodies(msgs: &[Frame]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

/// Sends `m0`..`m{n-1}` to `dest`, then an empty "fence" message with `x-fence:1`, with a receipt.
fn send_n(broker: &Broker, dest: &str, n: usize) {
    let mut p = Client::connect_v12(broker.addr());
    for i in 0..n {
        p.send_to(dest, format!("m{i}").as_bytes(), &[]);
    }
    p.send_to_sync(dest, b"", &[("x-fence", "1")]);
}

/// Receives the `n` messages of [`send_n`] and then its fence.
fn recv_payload(c: &mut Client, n: usize) -> (Vec<Frame>, Frame) {
    let mut msgs = c.recv_messages(n + 1, TIMEOUT);
    assert_eq!(msgs.len(), n + 1, "got {:?}", bodies(&msgs));
    let fence = msgs.pop().unwrap();
    assert_eq!(fence.get("x-fence"), Some("1"), "{}", describe(&fence));
    (msgs, fence)
}

#[test]
fn client_individual_acked_message_is_not_redelivered() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/ci", "client-individual");
    c.send_to_sync("/queue/ci", b"once", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    c.send_with_receipt(ack_frame(&m));
    c.disconnect();

    let mut again = Client::connect_v12(broker.addr());
    again.subscribe_sync("s", "/queue/ci", "client-individual");
    again.expect_nothing(QUIET);
}

#[test]
fn unacked_message_goes_to_another_consumer_marked_redelivered_after_disconnect() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/redeliver", "client-individual");
    a.send_to_sync("/queue/redeliver", b"precious", &[("x-keep", "yes")]);
    let first = a.expect(Command::Message, TIMEOUT);
    assert_ne!(
        first.get("redelivered"),
        Some("true"),
        "{}",
        describe(&first)
    );
    a.disconnect();

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/redeliver", "client-individual");
    let m = b.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"precious");
    assert_eq!(m.get("x-keep"), Some("yes"), "{}", describe(&m));
    assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(&m));
}

#[test]
fn unacked_messages_survive_a_consumer_whose_connection_drops() {
    let broker = Broker::start();
    send_n(&broker, "/queue/crash", 5);
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe("a", "/queue/crash", "client-individual");
    let (got, _unacked_fence) = recv_payload(&mut a, 5);
    // Ack two, then vanish without DISCONNECT.
    a.send_with_receipt(ack_frame(&got[0]));
    a.send_with_receipt(ack_frame(&got[3]));
    a.shutdown();
    drop(a);

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/crash", "client-individual");
    let msgs = b.recv_messages(4, TIMEOUT);
    let mut got_b = bodies(&msgs);
    got_b.sort();
    assert_eq!(
        got_b,
        vec!["", "m1", "m2", "m4"],
        "the unacked messages, each once"
    );
    for m in &msgs {
        assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(m));
    }
    b.expect_nothing(QUIET);
}

#[test]
fn client_mode_ack_is_cumulative() {
    let broker = Broker::start();
    send_n(&broker, "/queue/cumulative", 4);
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe("a", "/queue/cumulative", "client");
    let (got, _fence) = recv_payload(&mut a, 4);
    // ACK of m2 acks m0, m1 and m2.
    a.send_with_receipt(ack_frame(&got[2]));
    a.disconnect();

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/cumulative", "client");
    let msgs = b.recv_messages(2, TIMEOUT);
    assert_eq!(bodies(&msgs), vec!["m3", ""]);
    b.expect_nothing(QUIET);
}

#[test]
fn client_individual_ack_acks_only_that_message() {
    let broker = Broker::start();
    send_n(&broker, "/queue/individual", 3);
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe("a", "/queue/individual", "client-individual");
    let (got, fence) = recv_payload(&mut a, 3);
    a.send_with_receipt(ack_frame(&got[2]));
    a.send_with_receipt(ack_frame(&fence));
    a.disconnect();

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/individual", "client-individual");
    let msgs = b.recv_messages(2, TIMEOUT);
    assert_eq!(bodies(&msgs), vec!["m0", "m1"]);
    b.expect_nothing(QUIET);
}

#[test]
fn nacked_message_is_redelivered_marked_redelivered() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/nack", "client-individual");
    a.send_to_sync("/queue/nack", b"try again", &[]);
    let m = a.expect(Command::Message, TIMEOUT);
    a.send_with_receipt(nack_frame(&m));
    let again = a.expect(Command::Message, TIMEOUT);
    assert_eq!(&again.body[..], b"try again");
    assert_eq!(
        again.get("redelivered"),
        Some("true"),
        "{}",
        describe(&again)
    );
    a.send_with_receipt(ack_frame(&again));
    a.expect_nothing(QUIET);
}

#[test]
fn unsubscribe_returns_unacked_messages_to_the_queue() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/unsub-unacked", "client-individual");
    a.send_to_sync("/queue/unsub-unacked", b"not mine after all", &[]);
    a.expect(Command::Message, TIMEOUT);
    a.unsubscribe_sync("a");

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/unsub-unacked", "auto");
    let m = b.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"not mine after all");
    assert_eq!(m.get("redelivered"), Some("true"), "{}", describe(&m));
}

#[test]
fn ack_of_unknown_id_gets_error_and_close() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/unknown-ack", "client-individual");
    c.send(&Frame::new(Command::Ack).with_header("id", "no-such-message"));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
    assert!(c.is_closed(TIMEOUT), "connection stayed open after ERROR");
    Client::connect_v12(broker.addr()).assert_round_trip("after-bad-ack");
}

#[test]
fn acking_the_same_message_twice_is_an_error() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/double-ack", "client-individual");
    c.send_to_sync("/queue/double-ack", b"x", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    c.send_with_receipt(ack_frame(&m));
    c.send(&ack_frame(&m));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
}

#[test]
fn stomp_1_1_ack_by_message_id_and_subscription() {
    let broker = Broker::start();
    let mut a = Client::connect_with(
        broker.addr(),
        &[("accept-version", "1.1"), ("host", "localhost")],
    );
    a.subscribe_sync("s11", "/queue/ack11", "client-individual");
    a.send_to_sync("/queue/ack11", b"eleven", &[]);
    let m = a.expect(Command::Message, TIMEOUT);
    let id = m.get("message-id").expect("message-id").to_owned();
    a.send_with_receipt(
        Frame::new(Command::Ack)
            .with_header("message-id", id.as_str())
            .with_header("subscription", "s11"),
    );
    a.disconnect();
    let mut b = Client::connect_v12(broker.addr());
    b.subscribe_sync("b", "/queue/ack11", "auto");
    b.expect_nothing(QUIET);
}

#[test]
fn stomp_1_0_client_ack_by_message_id() {
    let broker = Broker::start();
    let mut a = Client::connect_with(broker.addr(), &[]);
    a.subscribe_sync("s10", "/queue/ack10", "client");
    a.send_to_sync("/queue/ack10", b"ten", &[]);
    let m = a.expect(Command::Message, TIMEOUT);
    let id = m.get("message-id").expect("message-id").to_owned();
    a.send_with_receipt(Frame::new(Command::Ack).with_header("message-id", id.as_str()));
    a.disconnect();
    let mut b = Client::connect_v12(broker.addr());
    b.subscribe_sync("b", "/queue/ack10", "auto");
    b.expect_nothing(QUIET);
}

#[test]
fn prefetch_window_limits_unacked_deliveries_and_an_ack_opens_it() {
    let broker = Broker::start();
    send_n(&broker, "/queue/window", 6);
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(
        stompd_tests::subscribe_frame("s", "/queue/window", "client-individual")
            .with_header("prefetch-count", "2"),
    );
    let first = c.recv_messages(2, TIMEOUT);
    assert_eq!(bodies(&first), vec!["m0", "m1"]);
    c.expect_nothing(QUIET);
    c.send(&ack_frame(&first[0]));
    let next = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&next.body[..], b"m2");
    c.expect_nothing(QUIET);
}

#[test]
fn a_full_consumer_does_not_stall_other_consumers() {
    let broker = Broker::start();
    let mut slow = Client::connect_v12(broker.addr());
    slow.send_with_receipt(
        stompd_tests::subscribe_frame("slow", "/queue/stall", "client-individual")
            .with_header("prefetch-count", "1"),
    );
    let mut fast = Client::connect_v12(broker.addr());
    fast.subscribe_sync("fast", "/queue/stall", "auto");
    send_n(&broker, "/queue/stall", 10);
    // The slow one holds one message; the fast one gets everything else.
    let got_slow = slow.recv_messages(1, TIMEOUT);
    assert_eq!(got_slow.len(), 1);
    let got_fast = fast.recv_messages(10, TIMEOUT);
    assert_eq!(
        got_fast.len(),
        10,
        "fast consumer got {:?}",
        bodies(&got_fast)
    );
    slow.expect_nothing(Duration::from_millis(200));
}

#[test]
fn auto_mode_messages_are_never_redelivered() {
    let broker = Broker::start();
    let mut a = Client::connect_v12(broker.addr());
    a.subscribe_sync("a", "/queue/auto-gone", "auto");
    a.send_to_sync("/queue/auto-gone", b"consumed", &[]);
    a.expect(Command::Message, TIMEOUT);
    a.disconnect();
    let mut b = Client::connect_v12(broker.addr());
    b.subscribe_sync("b", "/queue/auto-gone", "auto");
    b.expect_nothing(QUIET);
}
