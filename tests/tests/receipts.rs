//! RECEIPT for every client frame that asks for one; DISCONNECT with receipt.

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, Broker, Client, TIMEOUT};

#[test]
fn send_with_receipt_gets_receipt_with_matching_receipt_id() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(
        &Frame::new(Command::Send)
            .with_header("destination", "/queue/r")
            .with_header("receipt", "send-1")
            .with_body("x"),
    );
    let r = c.expect(Command::Receipt, TIMEOUT);
    assert_eq!(r.get("receipt-id"), Some("send-1"), "{}", describe(&r));
}

#[test]
fn subscribe_and_unsubscribe_with_receipt_get_receipts() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(
        &Frame::new(Command::Subscribe)
            .with_header("id", "0")
            .with_header("destination", "/queue/r")
            .with_header("receipt", "sub-1"),
    );
    let r = c.expect(Command::Receipt, TIMEOUT);
    assert_eq!(r.get("receipt-id"), Some("sub-1"), "{}", describe(&r));
    c.send(
        &Frame::new(Command::Unsubscribe)
            .with_header("id", "0")
            .with_header("receipt", "unsub-1"),
    );
    let r = c.expect(Command::Receipt, TIMEOUT);
    assert_eq!(r.get("receipt-id"), Some("unsub-1"), "{}", describe(&r));
}

#[test]
fn disconnect_with_receipt_gets_receipt_then_server_closes() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(&Frame::new(Command::Disconnect).with_header("receipt", "bye-77"));
    let r = c.expect(Command::Receipt, TIMEOUT);
    assert_eq!(r.get("receipt-id"), Some("bye-77"), "{}", describe(&r));
    assert!(
        c.is_closed(TIMEOUT),
        "the server did not close the connection after DISCONNECT's RECEIPT"
    );
    // The broker keeps serving.
    Client::connect_v12(broker.addr()).assert_round_trip("after-disconnect");
}

#[test]
fn disconnect_without_receipt_closes_without_error() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(&Frame::new(Command::Disconnect));
    assert!(
        c.is_closed(TIMEOUT),
        "server did not close after DISCONNECT"
    );
    if let Some(f) = c.recv(std::time::Duration::from_millis(10)) {
        panic!(
            "nothing should follow a DISCONNECT without receipt, got {}",
            describe(&f)
        );
    }
}

#[test]
fn pipelined_frames_each_get_their_receipt() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("p-{i}");
        c.send(
            &Frame::new(Command::Send)
                .with_header("destination", "/queue/pipe")
                .with_header("receipt", id.as_str())
                .with_body(format!("m{i}")),
        );
        ids.push(id);
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        let r = c.expect(Command::Receipt, TIMEOUT);
        got.push(r.get("receipt-id").unwrap_or_default().to_owned());
    }
    assert_eq!(
        got, ids,
        "receipts for pipelined frames, in the order the frames were sent"
    );
}

#[test]
fn receipt_id_with_escaped_characters_is_returned_unchanged() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    let id = "weird:id\\with\nescapes";
    c.send(
        &Frame::new(Command::Send)
            .with_header("destination", "/queue/r")
            .with_header("receipt", id)
            .with_body("x"),
    );
    let r = c.expect(Command::Receipt, TIMEOUT);
    assert_eq!(r.get("receipt-id"), Some(id), "{}", describe(&r));
}

#[test]
fn receipts_work_in_stomp_1_1() {
    let broker = Broker::start();
    let mut c = Client::connect_with(
        broker.addr(),
        &[("accept-version", "1.1"), ("host", "localhost")],
    );
    c.subscribe_sync("s", "/queue/r11", "auto");
    c.send_to_sync("/queue/r11", b"x", &[]);
    assert_eq!(&c.expect(Command::Message, TIMEOUT).body[..], b"x");
    c.unsubscribe_sync("s");
    c.disconnect();
}

#[test]
fn receipts_work_in_stomp_1_0() {
    let broker = Broker::start();
    let mut c = Client::connect_with(broker.addr(), &[]);
    c.subscribe_sync("s", "/queue/r10", "auto");
    c.send_to_sync("/queue/r10", b"x", &[]);
    assert_eq!(&c.expect(Command::Message, TIMEOUT).body[..], b"x");
    c.unsubscribe_sync("s");
    c.disconnect();
}

#[test]
fn receipt_for_send_to_topic_without_subscribers() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send_to_sync("/topic/nobody", b"x", &[]);
}
