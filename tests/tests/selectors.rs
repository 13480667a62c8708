//! Selectors (issue 8, item 12) and the prefetch dialects (item 13) against the real binary:
//! `selector` on queue, topic, durable and browser subscriptions; invalid selectors; Artemis'
//! `consumer-window-size` in bytes.

use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, Broker, Client, QUIET, TIMEOUT};

fn sub(id: &str, destination: &str, ack: &str, extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Subscribe)
        .with_header("id", id)
        .with_header("destination", destination)
        .with_header("ack", ack);
    for (n, v) in extra {
        f.push_header(*n, *v);
    }
    f
}

/// MESSAGE bodies received until nothing comes for `QUIET`.
fn received(c: &mut Client) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match c.recv(QUIET) {
            Some(f) if f.command == Command::Message => {
                out.push(String::from_utf8_lossy(&f.body).into_owned())
            }
            Some(f) => panic!("unexpected {}", describe(&f)),
            None => break,
        }
    }
    out
}

fn send_all(c: &mut Client, destination: &str, items: &[(&str, &str, &str)]) {
    for (body, color, size) in items {
        c.send_to(
            destination,
            body.as_bytes(),
            &[("color", color), ("size", size)],
        );
    }
    c.send_to_sync(destination, b"marker", &[("color", "none"), ("size", "0")]);
}

const ITEMS: &[(&str, &str, &str)] = &[
    ("r1", "red", "1"),
    ("b1", "blue", "5"),
    ("r2", "red", "12"),
    ("g1", "green", "7"),
    ("r3", "red", "3"),
];

#[test]
fn queue_subscribers_with_selectors_get_only_what_they_select_and_the_rest_stays() {
    let broker = Broker::start();
    let mut p = Client::connect_v12(broker.addr());
    send_all(&mut p, "/queue/sel", ITEMS);

    let mut red = Client::connect_v12(broker.addr());
    red.send_with_receipt(sub(
        "r",
        "/queue/sel",
        "client-individual",
        &[("selector", "color = 'red' AND size < 10")],
    ));
    assert_eq!(received(&mut red), ["r1", "r3"]);

    let mut rest = Client::connect_v12(broker.addr());
    rest.send_with_receipt(sub(
        "x",
        "/queue/sel",
        "auto",
        &[("selector", "color IN ('blue', 'green') OR size > 10")],
    ));
    assert_eq!(received(&mut rest), ["b1", "r2", "g1"]);
    // Only the marker is left, for a subscriber without a selector.
    let mut any = Client::connect_v12(broker.addr());
    any.subscribe_sync("a", "/queue/sel", "auto");
    assert_eq!(received(&mut any), ["marker"]);
    // The red subscriber's unacked messages come back to a plain subscriber when it leaves.
    drop(red);
    assert_eq!(received(&mut any), ["r1", "r3"]);
}

#[test]
fn a_browser_with_a_selector_sees_only_the_selected_messages_and_consumes_nothing() {
    let broker = Broker::start();
    let mut p = Client::connect_v12(broker.addr());
    send_all(&mut p, "/queue/browse-sel", ITEMS);
    let mut b = Client::connect_v12(broker.addr());
    b.send_with_receipt(sub(
        "b",
        "/queue/browse-sel",
        "client-individual",
        &[("browser", "true"), ("selector", "color <> 'red'")],
    ));
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let f = b.expect(Command::Message, TIMEOUT);
        if f.get("browser") == Some("end") {
            break;
        }
        seen.push(String::from_utf8_lossy(&f.body).into_owned());
    }
    assert_eq!(seen, ["b1", "g1", "marker"]);
    let mut all = Client::connect_v12(broker.addr());
    all.subscribe_sync("a", "/queue/browse-sel", "auto");
    assert_eq!(received(&mut all).len(), ITEMS.len() + 1);
}

#[test]
fn topic_and_durable_subscriptions_filter_with_their_selectors() {
    let broker = Broker::start();
    let mut live = Client::connect_v12(broker.addr());
    live.send_with_receipt(sub(
        "t",
        "/topic/sel",
        "auto",
        &[("selector", "color = 'blue' OR color = 'green'")],
    ));
    let mut d = Client::connect_with(broker.addr(), &[("client-id", "app")]);
    d.send_with_receipt(sub(
        "d",
        "/topic/sel",
        "client-individual",
        &[
            ("activemq.subscriptionName", "reds"),
            ("selector", "color LIKE 'r%'"),
        ],
    ));
    d.send_with_receipt(Frame::new(Command::Unsubscribe).with_header("id", "d"));
    let mut p = Client::connect_v12(broker.addr());
    send_all(&mut p, "/topic/sel", ITEMS);
    assert_eq!(received(&mut live), ["b1", "g1"]);
    // The durable subscription kept only the red ones while it was away.
    d.send_with_receipt(sub(
        "d2",
        "/topic/sel",
        "auto",
        &[
            ("activemq.subscriptionName", "reds"),
            ("selector", "color LIKE 'r%'"),
        ],
    ));
    assert_eq!(received(&mut d), ["r1", "r2", "r3"]);
}

#[test]
fn an_invalid_selector_is_refused_with_bad_selector() {
    let broker = Broker::start();
    for dest in ["/queue/bad-sel", "/topic/bad-sel"] {
        let mut c = Client::connect_v12(broker.addr());
        c.send(&sub("s", dest, "auto", &[("selector", "color = ")]).with_header("receipt", "r1"));
        let e = c.expect(Command::Error, TIMEOUT);
        assert_eq!(e.get("code"), Some("bad-selector"), "{}", describe(&e));
        assert_eq!(e.get("receipt-id"), Some("r1"));
    }
}

#[test]
fn consumer_window_size_bounds_the_bytes_in_flight_to_a_consumer() {
    let broker = Broker::start();
    let mut p = Client::connect_v12(broker.addr());
    for i in 0..6 {
        p.send_to("/queue/window", &[b'x'; 100], &[("n", &i.to_string())]);
    }
    p.send_to_sync("/queue/window", &[b'x'; 100], &[("n", "6")]);
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(sub(
        "w",
        "/queue/window",
        "client-individual",
        &[("consumer-window-size", "250")],
    ));
    // 100 + 100 < 250 lets a third through; then 300 >= 250 stops it.
    let mut got = Vec::new();
    while let Some(f) = c.recv(QUIET) {
        assert_eq!(f.command, Command::Message, "{}", describe(&f));
        got.push(f);
    }
    assert_eq!(got.len(), 3);
    c.send(&Frame::new(Command::Ack).with_header("id", got[0].get("ack").unwrap()));
    let f = c.expect(Command::Message, TIMEOUT);
    assert_eq!(f.get("n"), Some("3"));
    c.expect_nothing(Duration::from_millis(300));
    // prefetch-count wins for the message count; the byte window still applies.
    let mut c2 = Client::connect_v12(broker.addr());
    c2.send_with_receipt(sub(
        "w2",
        "/queue/window",
        "client-individual",
        &[("prefetch-count", "1"), ("consumer-window-size", "-1")],
    ));
    let f = c2.expect(Command::Message, TIMEOUT);
    assert_eq!(f.get("n"), Some("4"));
    c2.expect_nothing(Duration::from_millis(300));
    // A malformed value is a client error.
    let mut c3 = Client::connect_v12(broker.addr());
    c3.send(
        &sub(
            "w3",
            "/queue/window",
            "auto",
            &[("consumer-window-size", "lots")],
        )
        .with_header("receipt", "r"),
    );
    let e = c3.expect(Command::Error, TIMEOUT);
    assert_eq!(e.get("code"), Some("bad-header"), "{}", describe(&e));
}
