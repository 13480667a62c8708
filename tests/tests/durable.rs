//! Durable topic subscriptions (issue 8, item 2) against the real binary: the Artemis, ActiveMQ
//! and RabbitMQ spellings, messages published while the subscriber was away, a restart of a
//! persistent topic, removal by UNSUBSCRIBE, by the admin API and by RabbitMQ's `auto-delete`.

use std::time::Instant;

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, http, Broker, Client, QUIET, TIMEOUT};

const CONFIG: &str = r#"
[topics.news]
persistent = true

[topics.chatter]
persistent = false
"#;

fn broker() -> Broker {
    Broker::builder()
        .config(config_with(CONFIG))
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .start()
}

fn sub(id: &str, destination: &str, extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Subscribe)
        .with_header("id", id)
        .with_header("destination", destination)
        .with_header("ack", "client-individual");
    for (n, v) in extra {
        f.push_header(*n, *v);
    }
    f
}

fn unsub(id: &str, extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Unsubscribe).with_header("id", id);
    for (n, v) in extra {
        f.push_header(*n, *v);
    }
    f
}

/// Bodies received (and acked) until nothing comes for `QUIET`.
fn take(c: &mut Client) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match c.recv(QUIET) {
            Some(f) if f.command == Command::Message => {
                if let Some(ack) = f.get("ack") {
                    c.send(&Frame::new(Command::Ack).with_header("id", ack));
                }
                out.push(String::from_utf8_lossy(&f.body).into_owned());
            }
            Some(f) => panic!("unexpected {}", describe(&f)),
            None => break,
        }
    }
    out
}

fn publish(broker: &Broker, topic: &str, bodies: &[&str]) {
    let mut p = Client::connect_v12(broker.addr());
    for b in bodies {
        p.send_to_sync(topic, b.as_bytes(), &[]);
    }
}

/// Header list of a frame.
type Headers = Vec<(&'static str, &'static str)>;

/// The three dialects: (CONNECT headers, SUBSCRIBE headers; the latter also remove it when sent
/// with UNSUBSCRIBE).
fn dialects() -> Vec<(Headers, Headers)> {
    vec![
        (
            vec![("accept-version", "1.2")],
            vec![("durable-subscription-name", "artemis-sub")],
        ),
        (
            vec![("accept-version", "1.2"), ("client-id", "app1")],
            vec![("activemq.subscriptionName", "amq-sub")],
        ),
        (vec![("accept-version", "1.2")], vec![("durable", "true")]),
    ]
}

#[test]
fn each_dialect_gets_what_was_published_while_it_was_away() {
    let broker = broker();
    for (i, (connect, headers)) in dialects().into_iter().enumerate() {
        let topic = format!("/topic/away-{i}");
        let id = format!("rabbit-{i}");
        let mut c = Client::connect_with(broker.addr(), &connect);
        c.send_with_receipt(sub(&id, &topic, &headers));
        publish(&broker, &topic, &["while-here"]);
        assert_eq!(take(&mut c), ["while-here"], "dialect {i}");
        // Leave without removing it (a plain UNSUBSCRIBE, then a disconnect).
        c.send_with_receipt(unsub(&id, &[]));
        drop(c);
        publish(&broker, &topic, &["away-1", "away-2"]);
        let mut c = Client::connect_with(broker.addr(), &connect);
        c.send_with_receipt(sub(&id, &topic, &headers));
        assert_eq!(take(&mut c), ["away-1", "away-2"], "dialect {i}");
    }
}

#[test]
fn a_persistent_topic_s_durable_subscription_survives_kill_9() {
    let mut broker = broker();
    let headers = [("durable-subscription-name", "keeper")];
    {
        let mut c = Client::connect_v12(broker.addr());
        c.send_with_receipt(sub("k", "/topic/news", &headers));
        c.send_with_receipt(unsub("k", &[]));
    }
    publish(&broker, "/topic/news", &["n1", "n2"]);
    broker.kill9();
    broker.restart();
    publish(&broker, "/topic/news", &["n3"]);
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(sub("k", "/topic/news", &headers));
    assert_eq!(take(&mut c), ["n1", "n2", "n3"]);
}

#[test]
fn unsubscribe_with_the_naming_header_removes_the_subscription_and_its_messages() {
    let broker = broker();
    for (i, (connect, headers)) in dialects().into_iter().enumerate() {
        let topic = format!("/topic/removed-{i}");
        let id = format!("r-{i}");
        let mut c = Client::connect_with(broker.addr(), &connect);
        c.send_with_receipt(sub(&id, &topic, &headers));
        c.send_with_receipt(unsub(&id, &[]));
        publish(&broker, &topic, &["kept-then-removed"]);
        // Re-attach and remove it for good.
        c.send_with_receipt(sub(&id, &topic, &headers));
        assert_eq!(take(&mut c), ["kept-then-removed"]);
        c.send_with_receipt(unsub(&id, &headers));
        publish(&broker, &topic, &["nobody-keeps-this"]);
        c.send_with_receipt(sub(&id, &topic, &headers));
        assert!(
            take(&mut c).is_empty(),
            "dialect {i}: a new, empty subscription"
        );
    }
}

#[test]
fn rabbitmq_auto_delete_removes_the_subscription_when_its_last_subscriber_leaves() {
    let broker = broker();
    let headers = [("durable", "true"), ("auto-delete", "true")];
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(sub("ad", "/topic/chatter", &headers));
    publish(&broker, "/topic/chatter", &["seen"]);
    assert_eq!(take(&mut c), ["seen"]);
    c.send_with_receipt(unsub("ad", &[]));
    publish(&broker, "/topic/chatter", &["after-delete"]);
    c.send_with_receipt(sub("ad", "/topic/chatter", &headers));
    assert!(
        take(&mut c).is_empty(),
        "the auto-delete subscription was removed"
    );
    // A disconnect counts as leaving too.
    drop(c);
    publish(&broker, "/topic/chatter", &["after-disconnect"]);
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(sub("ad", "/topic/chatter", &headers));
    assert!(take(&mut c).is_empty());
    // Without auto-delete the same spelling keeps collecting.
    let mut k = Client::connect_v12(broker.addr());
    k.send_with_receipt(sub("keep", "/topic/chatter", &[("durable", "true")]));
    k.send_with_receipt(unsub("keep", &[]));
    publish(&broker, "/topic/chatter", &["kept"]);
    k.send_with_receipt(sub("keep", "/topic/chatter", &[("durable", "true")]));
    assert_eq!(take(&mut k), ["kept"]);
}

#[test]
fn the_admin_api_lists_and_removes_a_durable_subscription_and_cancels_its_consumer() {
    let broker = broker();
    let admin = broker.admin_addr();
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("ev", "/sys/events", "auto");
    c.send_with_receipt(sub(
        "d",
        "/topic/news",
        &[("durable-subscription-name", "ops")],
    ));
    let (status, body) = http(admin, "GET", "/api/queues");
    assert_eq!(status, 200);
    assert!(body.contains("/durable/news/ops"), "{body}");
    let (status, body) = http(admin, "DELETE", "/api/queues/%2Fdurable%2Fnews%2Fops");
    assert_eq!(status, 200, "{body}");
    let e = c.expect(Command::Message, TIMEOUT);
    assert_eq!(
        e.get("event"),
        Some("subscription-cancelled"),
        "{}",
        describe(&e)
    );
    assert_eq!(e.get("reason"), Some("durable-subscription-removed"));
    let (_, body) = http(admin, "GET", "/api/queues");
    assert!(!body.contains("/durable/news/ops"), "{body}");
}
