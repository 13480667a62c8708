//! Per-connection and per-address limits through the real binary: each refusal is an ERROR
//! with a code, and the broker keeps serving everyone else.

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, stompd_bin, Broker, Client};

const T: Duration = Duration::from_secs(3);

#[test]
fn connections_per_source_address_are_capped() {
    let broker = Broker::with_config(&config_with("[server]\nmax_connections_per_ip = 2\n"));
    let _a = Client::connect_v12(broker.addr());
    let _b = Client::connect_v12(broker.addr());
    let mut c = Client::connect(broker.addr());
    let f = c.expect(Command::Error, T);
    assert_eq!(f.get("code"), Some("connection-limit"), "{}", describe(&f));
    assert!(c.is_closed(T));
    drop(_a);
    // A slot frees when a connection closes.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(c) = Client::try_connect_v12(broker.addr(), T) {
            ok = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ok.expect("a new connection once one closed")
        .assert_round_trip("after-limit");
}

#[test]
fn subscriptions_and_transactions_per_connection_are_capped() {
    let broker = Broker::with_config(&config_with(
        "[limits]\nmax_subscriptions = 2\nmax_transactions = 1\n",
    ));
    let mut c = Client::connect_v12(broker.addr());
    c.subscribe_sync("1", "/queue/a", "auto");
    c.subscribe_sync("2", "/queue/b", "auto");
    c.send(
        &Frame::new(Command::Subscribe)
            .with_header("id", "3")
            .with_header("destination", "/queue/c"),
    );
    let f = c.expect(Command::Error, T);
    assert_eq!(
        f.get("code"),
        Some("too-many-subscriptions"),
        "{}",
        describe(&f)
    );

    let mut t = Client::connect_v12(broker.addr());
    t.send(&Frame::new(Command::Begin).with_header("transaction", "t1"));
    t.send(&Frame::new(Command::Begin).with_header("transaction", "t2"));
    let f = t.expect(Command::Error, T);
    assert_eq!(
        f.get("code"),
        Some("too-many-transactions"),
        "{}",
        describe(&f)
    );
    Client::connect_v12(broker.addr()).assert_round_trip("others-unaffected");
}

#[test]
fn unacked_messages_per_subscription_are_capped_whatever_the_client_asks() {
    let broker = Broker::with_config(&config_with("[limits]\nmax_unacked = 2\n"));
    let mut p = Client::connect_v12(broker.addr());
    for i in 0..5 {
        p.send_to_sync("/queue/capped", format!("m{i}").as_bytes(), &[]);
    }
    let mut c = Client::connect_v12(broker.addr());
    c.send(
        &Frame::new(Command::Subscribe)
            .with_header("id", "s")
            .with_header("destination", "/queue/capped")
            .with_header("ack", "client-individual")
            .with_header("prefetch-count", "100"),
    );
    let first = c.expect(Command::Message, T);
    let _second = c.expect(Command::Message, T);
    c.expect_nothing(Duration::from_millis(400));
    c.send(&Frame::new(Command::Ack).with_header("id", first.get("ack").unwrap_or_default()));
    let third = c.expect(Command::Message, T);
    assert_eq!(&third.body[..], b"m2");
}

#[test]
fn hash_password_prints_an_argon2id_hash_that_logs_in() {
    let mut child = Process::new(stompd_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"s3cret pass\n").expect("write password");
    }
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret"));

    let broker = Broker::with_config(&config_with(&format!(
        "[auth]\nanonymous = false\nfailure_delay_ms = 0\n[[auth.users]]\nname = \"carol\"\npassword_hash = \"{hash}\"\n"
    )));
    let mut c = Client::connect(broker.addr());
    let reply = c.handshake(&[
        ("accept-version", "1.2"),
        ("host", "localhost"),
        ("login", "carol"),
        ("passcode", "s3cret pass"),
    ]);
    assert_eq!(reply.command, Command::Connected, "{}", describe(&reply));
}
