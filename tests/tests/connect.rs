//! The CONNECT/STOMP handshake: version negotiation, CONNECTED headers, refusals, timeout.

use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame, HeartBeat};
use stompd_tests::{config_with, describe, Broker, Client, TIMEOUT};

/// Asserts the headers every CONNECTED must carry (`version` only when `version` is Some).
#[track_caller]
fn assert_connected(f: &Frame, version: Option<&str>) {
    assert_eq!(f.command, Command::Connected, "{}", describe(f));
    if let Some(v) = version {
        assert_eq!(f.get("version"), Some(v), "{}", describe(f));
    }
    let hb = f
        .get("heart-beat")
        .unwrap_or_else(|| panic!("CONNECTED without heart-beat: {}", describe(f)));
    HeartBeat::parse(hb).unwrap_or_else(|e| panic!("bad heart-beat {hb:?}: {e}"));
    let server = f
        .get("server")
        .unwrap_or_else(|| panic!("CONNECTED without server: {}", describe(f)));
    assert!(
        server.starts_with("stompd/"),
        "server header should be name/version, got {server:?}"
    );
    let session = f
        .get("session")
        .unwrap_or_else(|| panic!("CONNECTED without session: {}", describe(f)));
    assert!(!session.is_empty());
}

#[test]
fn connect_with_accept_version_1_2_gets_connected_1_2_with_all_headers() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[("accept-version", "1.2"), ("host", "localhost")]);
    assert_connected(&f, Some("1.2"));
    c.assert_round_trip("v12");
}

#[test]
fn stomp_command_is_accepted_like_connect() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake_command(
        Command::Stomp,
        &[("accept-version", "1.2"), ("host", "localhost")],
    );
    assert_connected(&f, Some("1.2"));
    c.assert_round_trip("stomp-cmd");
}

#[test]
fn connect_with_accept_version_1_1_gets_1_1() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[("accept-version", "1.1"), ("host", "localhost")]);
    assert_connected(&f, Some("1.1"));
    c.assert_round_trip("v11");
}

#[test]
fn connect_without_accept_version_is_stomp_1_0() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[]);
    assert_eq!(f.command, Command::Connected, "{}", describe(&f));
    // A 1.0 CONNECTED may omit `version`; if present it must say 1.0.
    if let Some(v) = f.get("version") {
        assert_eq!(v, "1.0", "{}", describe(&f));
    }
    assert!(f.get("session").is_some(), "{}", describe(&f));
    c.assert_round_trip("v10");
}

#[test]
fn connect_offering_all_versions_picks_1_2() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[("accept-version", "1.0,1.1,1.2"), ("host", "localhost")]);
    assert_connected(&f, Some("1.2"));
}

#[test]
fn connect_offering_1_0_and_1_1_picks_1_1() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[("accept-version", "1.1,1.0"), ("host", "localhost")]);
    assert_connected(&f, Some("1.1"));
}

#[test]
fn each_connection_gets_its_own_session_id() {
    let broker = Broker::start();
    let a = Client::connect_v12(broker.addr());
    let b = Client::connect_v12(broker.addr());
    let sa = a.connected.as_ref().and_then(|f| f.get("session")).unwrap();
    let sb = b.connected.as_ref().and_then(|f| f.get("session")).unwrap();
    assert_ne!(sa, sb);
}

#[test]
fn unsupported_accept_version_gets_error_then_close() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    let f = c.handshake(&[("accept-version", "2.0"), ("host", "localhost")]);
    assert_eq!(f.command, Command::Error, "{}", describe(&f));
    assert!(f.get("message").is_some(), "{}", describe(&f));
    assert!(c.is_closed(TIMEOUT), "connection not closed after ERROR");
    // The broker keeps serving.
    Client::connect_v12(broker.addr()).assert_round_trip("after-bad-version");
}

#[test]
fn send_before_connect_gets_error_then_close() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    c.send_raw(b"SEND\ndestination:/queue/early\n\nhello\0");
    let f = c.expect(Command::Error, TIMEOUT);
    assert!(f.get("message").is_some(), "{}", describe(&f));
    assert!(c.is_closed(TIMEOUT), "connection not closed after ERROR");
    Client::connect_v12(broker.addr()).assert_round_trip("after-send-first");
}

#[test]
fn subscribe_before_connect_gets_error_then_close() {
    let broker = Broker::start();
    let mut c = Client::connect(broker.addr());
    c.send_raw(b"SUBSCRIBE\nid:0\ndestination:/queue/early\n\n\0");
    let f = c.expect(Command::Error, TIMEOUT);
    assert!(f.get("message").is_some(), "{}", describe(&f));
    assert!(c.is_closed(TIMEOUT), "connection not closed after ERROR");
}

const SHORT_CONNECT_TIMEOUT: &str = "[server]\nconnect_timeout_ms = 300\n";

#[test]
fn idle_connection_without_connect_is_closed_after_connect_timeout() {
    let broker = Broker::with_config(&config_with(SHORT_CONNECT_TIMEOUT));
    let start = Instant::now();
    let mut c = Client::connect(broker.addr());
    assert!(
        c.is_closed(Duration::from_secs(4)),
        "a connection that never sent CONNECT was still open after 4 s (connect_timeout_ms = 300)"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed after {took:?}, before the 300 ms connect timeout"
    );
}

#[test]
fn partial_connect_frame_is_closed_after_connect_timeout() {
    let broker = Broker::with_config(&config_with(SHORT_CONNECT_TIMEOUT));
    let mut c = Client::connect(broker.addr());
    c.send_raw(b"CONNECT\naccept-version:1.2\n");
    assert!(
        c.is_closed(Duration::from_secs(4)),
        "a connection stuck inside CONNECT was still open after 4 s (connect_timeout_ms = 300)"
    );
}

#[test]
fn connect_timeout_does_not_affect_connected_clients() {
    let broker = Broker::with_config(&config_with(SHORT_CONNECT_TIMEOUT));
    let mut c = Client::connect_v12(broker.addr());
    std::thread::sleep(Duration::from_millis(700));
    c.assert_round_trip("connected-outlives-connect-timeout");
}

#[test]
fn many_clients_connect_concurrently() {
    let broker = Broker::start();
    let addr = broker.addr();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect_v12(addr);
                c.assert_round_trip(&format!("conc{i}"));
                c.disconnect();
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

#[test]
fn connections_over_max_connections_are_refused_and_others_keep_working() {
    let broker = Broker::with_config(&config_with("[server]\nmax_connections = 2\n"));
    let mut a = Client::connect_v12(broker.addr());
    let _b = Client::connect_v12(broker.addr());
    let mut over = Client::connect(broker.addr());
    // Refused: closed at once, or an ERROR then close; never CONNECTED.
    over.send(
        &Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost"),
    );
    if let Some(f) = over.recv(TIMEOUT) {
        assert_eq!(f.command, Command::Error, "{}", describe(&f));
    }
    assert!(
        over.is_closed(TIMEOUT),
        "the connection over the limit stayed open"
    );
    a.assert_round_trip("under-limit");
    // A slot frees up when a client leaves.
    a.disconnect();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = Client::connect(broker.addr());
        c.send(
            &Frame::new(Command::Connect)
                .with_header("accept-version", "1.2")
                .with_header("host", "localhost"),
        );
        match c.recv(TIMEOUT) {
            Some(f) if f.command == Command::Connected => break,
            other => {
                let got = other
                    .as_ref()
                    .map(describe)
                    .unwrap_or_else(|| "a close".into());
                assert!(
                    Instant::now() < deadline,
                    "no slot freed after a DISCONNECT: got {got}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
