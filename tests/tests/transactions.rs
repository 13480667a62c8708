//! Transactions (issue 3): SENDs and ACKs in a transaction take effect together at COMMIT;
//! ABORT and disconnect discard them; bad transaction ids get an ERROR.

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, send_frame, Broker, Client, QUIET, TIMEOUT};

fn begin(c: &mut Client, tx: &str) {
    c.send_with_receipt(Frame::new(Command::Begin).with_header("transaction", tx));
}

fn commit(c: &mut Client, tx: &str) {
    c.send_with_receipt(Frame::new(Command::Commit).with_header("transaction", tx));
}

fn abort(c: &mut Client, tx: &str) {
    c.send_with_receipt(Frame::new(Command::Abort).with_header("transaction", tx));
}

#[test]
fn sends_in_a_transaction_are_delivered_only_at_commit_in_order() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/tx", "auto");
    let mut p = Client::connect_v12(broker.addr());
    begin(&mut p, "t1");
    for i in 0..3 {
        p.send_with_receipt(send_frame(
            "/queue/tx",
            format!("m{i}").as_bytes(),
            &[("transaction", "t1")],
        ));
    }
    consumer.expect_nothing(QUIET);
    commit(&mut p, "t1");
    let msgs = consumer.recv_messages(3, TIMEOUT);
    let bodies: Vec<_> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(bodies, vec!["m0", "m1", "m2"]);
}

#[test]
fn abort_discards_the_transactions_sends() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/tx-abort", "auto");
    let mut p = Client::connect_v12(broker.addr());
    begin(&mut p, "t1");
    p.send_with_receipt(send_frame(
        "/queue/tx-abort",
        b"never",
        &[("transaction", "t1")],
    ));
    abort(&mut p, "t1");
    consumer.expect_nothing(QUIET);
    p.send_to_sync("/queue/tx-abort", b"outside", &[]);
    assert_eq!(
        &consumer.expect(Command::Message, TIMEOUT).body[..],
        b"outside"
    );
}

#[test]
fn disconnect_discards_an_open_transaction() {
    let broker = Broker::start();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/tx-dc", "auto");
    let mut p = Client::connect_v12(broker.addr());
    begin(&mut p, "t1");
    p.send_with_receipt(send_frame(
        "/queue/tx-dc",
        b"never",
        &[("transaction", "t1")],
    ));
    p.disconnect();
    consumer.expect_nothing(QUIET);
}

#[test]
fn acks_in_an_aborted_transaction_do_not_take_effect() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/tx-ack", "client-individual");
    c.send_to_sync("/queue/tx-ack", b"keep me", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    let ack = m.get("ack").expect("ack header").to_owned();
    begin(&mut c, "t1");
    c.send_with_receipt(
        Frame::new(Command::Ack)
            .with_header("id", ack.as_str())
            .with_header("transaction", "t1"),
    );
    abort(&mut c, "t1");
    c.disconnect();

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe("b", "/queue/tx-ack", "auto");
    let again = b.expect(Command::Message, TIMEOUT);
    assert_eq!(&again.body[..], b"keep me");
}

#[test]
fn acks_in_a_committed_transaction_take_effect() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("s", "/queue/tx-ack-commit", "client-individual");
    c.send_to_sync("/queue/tx-ack-commit", b"done", &[]);
    let m = c.expect(Command::Message, TIMEOUT);
    let ack = m.get("ack").expect("ack header").to_owned();
    begin(&mut c, "t1");
    c.send_with_receipt(
        Frame::new(Command::Ack)
            .with_header("id", ack.as_str())
            .with_header("transaction", "t1"),
    );
    commit(&mut c, "t1");
    c.disconnect();

    let mut b = Client::connect_v12(broker.addr());
    b.subscribe_sync("b", "/queue/tx-ack-commit", "auto");
    b.expect_nothing(QUIET);
}

#[test]
fn commit_of_unknown_transaction_gets_error() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(&Frame::new(Command::Commit).with_header("transaction", "nope"));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
    assert!(c.is_closed(TIMEOUT));
    Client::connect_v12(broker.addr()).assert_round_trip("after-bad-commit");
}

#[test]
fn send_in_unknown_transaction_gets_error() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send(&send_frame("/queue/x", b"x", &[("transaction", "nope")]));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
}

#[test]
fn duplicate_begin_gets_error() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    begin(&mut c, "t1");
    c.send(&Frame::new(Command::Begin).with_header("transaction", "t1"));
    let e = c.expect(Command::Error, TIMEOUT);
    assert!(e.get("message").is_some(), "{}", describe(&e));
}

#[test]
fn a_transaction_id_is_reusable_after_commit() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    begin(&mut c, "t1");
    commit(&mut c, "t1");
    begin(&mut c, "t1");
    abort(&mut c, "t1");
    c.assert_round_trip("tx-reuse");
}
