//! Authentication and authorization through the real binary: argon2id users, the same answer
//! for a wrong password and an unknown user (after the failure delay), per-destination rules,
//! failed logins logged with the peer and never the passcode, and statistics over STOMP.

use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, Broker, Client};

/// argon2id of "secret" (from `stompd hash-password`).
const SECRET_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$oB1I7AIQonC5Q8IZYHub6w$9o7XWWhJ0rAlKbzAf0zb0t1pu06YuvCs2SaIwbgjKMw";

fn config() -> String {
    format!(
        r#"
[auth]
anonymous = false
failure_delay_ms = 300

[[auth.users]]
name = "alice"
password_hash = "{SECRET_HASH}"
groups = ["producers"]

[[auth.users]]
name = "bob"
password_hash = "{SECRET_HASH}"

[[auth.rules]]
destinations = ["/queue/orders.*"]
groups = ["producers"]
allow = ["read", "write", "create"]

[[auth.rules]]
destinations = ["/queue/orders.*"]
users = ["bob"]
allow = ["read"]

[[auto_create]]
pattern = "/queue/*"
"#
    )
}

fn login(broker: &Broker, user: &str, pass: &str) -> (Client, Frame) {
    let mut c = Client::connect(broker.addr());
    let reply = c.handshake(&[
        ("accept-version", "1.2"),
        ("host", "localhost"),
        ("login", user),
        ("passcode", pass),
    ]);
    (c, reply)
}

#[test]
fn valid_credentials_connect_and_bad_ones_get_one_generic_error_after_the_delay() {
    let broker = Broker::with_config(&config());
    let (_, ok) = login(&broker, "alice", "secret");
    assert_eq!(ok.command, Command::Connected, "{}", describe(&ok));

    let mut answers = Vec::new();
    for (user, pass) in [("alice", "wrong"), ("mallory", "secret"), ("alice", "")] {
        let start = Instant::now();
        let (mut c, reply) = login(&broker, user, pass);
        let took = start.elapsed();
        assert_eq!(
            reply.command,
            Command::Error,
            "{user}: {}",
            describe(&reply)
        );
        assert_eq!(reply.get("code"), Some("access-denied"));
        assert!(
            took >= Duration::from_millis(250),
            "{user}: answered after {took:?}, before the failure delay"
        );
        assert!(
            c.is_closed(Duration::from_secs(3)),
            "{user}: connection left open after ERROR"
        );
        answers.push(reply.get("message").unwrap_or_default().to_owned());
    }
    // Unknown user and wrong password are indistinguishable.
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    let mut anon = Client::connect(broker.addr());
    let reply = anon.handshake(&[("accept-version", "1.2"), ("host", "localhost")]);
    assert_eq!(reply.command, Command::Error, "anonymous access is off");

    let log = broker.log();
    assert!(
        log.contains("authentication failed"),
        "failed logins are logged:\n{log}"
    );
    assert!(log.contains("mallory"), "the failed login names the login");
    assert!(
        !log.contains("wrong"),
        "a passcode appeared in the log:\n{log}"
    );
}

#[test]
fn rules_grant_per_destination_and_deny_with_an_error_naming_it() {
    let broker = Broker::with_config(&config());
    let (mut alice, _) = login(&broker, "alice", "secret");
    alice.send_to_sync("/queue/orders.eu", b"o1", &[]);

    // bob may read orders but not write them.
    let (mut bob, _) = login(&broker, "bob", "secret");
    bob.subscribe_sync("s", "/queue/orders.eu", "auto");
    let m = bob.expect(Command::Message, Duration::from_secs(3));
    assert_eq!(&m.body[..], b"o1");
    bob.send(
        &stompd_tests::send_frame("/queue/orders.eu", b"nope", &[]).with_header("receipt", "r"),
    );
    let err = bob.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(err.get("code"), Some("access-denied"), "{}", describe(&err));
    assert!(err
        .get("message")
        .unwrap_or_default()
        .contains("/queue/orders.eu"));
    assert_eq!(err.get("receipt-id"), Some("r"));

    // Nothing stored by the denied SEND; a destination without a rule is denied to alice too.
    let (mut alice2, _) = login(&broker, "alice", "secret");
    alice2.send(&stompd_tests::send_frame("/queue/payroll", b"x", &[]).with_header("receipt", "p"));
    let err = alice2.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(err.get("code"), Some("access-denied"));
    alice.subscribe_sync("a", "/queue/orders.eu", "auto");
    alice.expect_nothing(Duration::from_millis(300));
}

#[test]
fn statistics_over_stomp_answer_on_the_reply_to_destination() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    for i in 0..3 {
        c.send_to_sync("/queue/counted", format!("m{i}").as_bytes(), &[]);
    }
    c.subscribe_sync("replies", "/temp-queue/stats", "auto");
    c.send(
        &Frame::new(Command::Send)
            .with_header("destination", "/sys/stats")
            .with_header("queue", "/queue/counted")
            .with_header("reply-to", "/temp-queue/stats")
            .with_header("receipt", "st"),
    );
    let mut reply = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while reply.is_none() && Instant::now() < deadline {
        if let Some(f) = c.recv(Duration::from_millis(200)) {
            if f.command == Command::Message {
                reply = Some(f);
            }
        }
    }
    let reply = reply.expect("a statistics MESSAGE on the reply-to queue");
    assert_eq!(reply.get("stats-queue"), Some("/queue/counted"));
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.contains("\"depth\":3"), "{body}");
    // A missing reply-to is a client error.
    c.send(
        &Frame::new(Command::Send)
            .with_header("destination", "/sys/stats")
            .with_header("queue", "/queue/counted"),
    );
    let err = c.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(err.get("code"), Some("bad-frame"));
}
