//! Heart-beats: negotiated per the spec, sent by the server when due, and a silent client dropped.

use std::time::{Duration, Instant};

use stompd_protocol::{negotiate_heartbeat, HeartBeat};
use stompd_tests::{config_with, describe, Broker, Client, Event};

/// The server offers and asks for fast beats; a floor low enough for the tests.
const FAST_HEARTBEATS: &str = "\
[heartbeat]
send_ms = 100
expect_ms = 100
min_ms = 100
grace = 1.5
";

fn broker() -> Broker {
    Broker::with_config(&config_with(FAST_HEARTBEATS))
}

fn connect_with_heartbeat(broker: &Broker, hb: &str) -> (Client, HeartBeat) {
    let c = Client::connect_with(
        broker.addr(),
        &[
            ("accept-version", "1.2"),
            ("host", "localhost"),
            ("heart-beat", hb),
        ],
    );
    let connected = c.connected.clone().expect("connected");
    let server = HeartBeat::parse(
        connected
            .get("heart-beat")
            .unwrap_or_else(|| panic!("CONNECTED without heart-beat: {}", describe(&connected))),
    )
    .expect("valid heart-beat header");
    (c, server)
}

#[test]
fn server_sends_heartbeats_at_the_negotiated_interval() {
    let broker = broker();
    let client_hb = HeartBeat { cx: 0, cy: 500 };
    let (mut c, server_hb) = connect_with_heartbeat(&broker, "0,500");
    let (_, from_server) = negotiate_heartbeat(client_hb, server_hb);
    let interval = from_server.unwrap_or_else(|| {
        panic!("server offers heart-beat {server_hb} (config send_ms = 100): no beats to a client asking 0,500")
    });
    assert_eq!(
        interval,
        Duration::from_millis(500),
        "server offers {server_hb}; with send_ms = 100 a client asking for 500 ms should get 500 ms"
    );

    let start = Instant::now();
    let window = Duration::from_millis(3000);
    let mut beats = Vec::new();
    while start.elapsed() < window {
        match c.recv_heartbeat_or_frame(window.saturating_sub(start.elapsed())) {
            Event::HeartBeat => beats.push(start.elapsed()),
            Event::Frame(f) => panic!("unexpected frame {}", describe(&f)),
            Event::Closed => panic!("server closed a client that expects beats and sends none"),
            Event::Timeout => break,
        }
    }
    assert!(
        (4..=12).contains(&beats.len()),
        "expected about 6 heart-beats in 3 s at 500 ms, got {} at {beats:?}",
        beats.len()
    );
    let mut prev = Duration::ZERO;
    for t in &beats {
        let gap = *t - prev;
        assert!(
            gap <= Duration::from_millis(900),
            "a heart-beat gap of {gap:?} is far over the 500 ms interval: {beats:?}"
        );
        prev = *t;
    }
}

#[test]
fn server_sends_no_heartbeats_to_a_client_that_does_not_want_them() {
    let broker = broker();
    let (mut c, _) = connect_with_heartbeat(&broker, "0,0");
    match c.recv_heartbeat_or_frame(Duration::from_millis(1200)) {
        Event::HeartBeat => panic!("heart-beat sent to a client that asked for none"),
        Event::Frame(f) => panic!("unexpected frame {}", describe(&f)),
        Event::Closed => panic!("server closed a client that promised no beats"),
        Event::Timeout => {}
    }
    c.assert_round_trip("no-beats");
}

#[test]
fn silent_client_that_promised_heartbeats_is_disconnected() {
    let broker = broker();
    let client_hb = HeartBeat { cx: 300, cy: 0 };
    let start = Instant::now();
    let (mut c, server_hb) = connect_with_heartbeat(&broker, "300,0");
    let (to_server, _) = negotiate_heartbeat(client_hb, server_hb);
    let interval = to_server.unwrap_or_else(|| {
        panic!("server heart-beat {server_hb} (config expect_ms = 100) does not ask for the client's beats")
    });
    assert_eq!(interval, Duration::from_millis(300));
    // Say nothing: the server must drop us after about 300 ms * 1.5.
    assert!(
        c.is_closed(Duration::from_secs(4)),
        "a client silent for 4 s after promising beats every 300 ms was not disconnected"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "disconnected after {took:?}, before even one interval passed"
    );
    assert!(
        took <= Duration::from_secs(3),
        "disconnected only after {took:?}"
    );
    // The broker keeps serving.
    Client::connect_v12(broker.addr()).assert_round_trip("after-drop");
}

#[test]
fn client_sending_heartbeats_stays_connected() {
    let broker = broker();
    let (mut c, _) = connect_with_heartbeat(&broker, "300,0");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        c.send_heartbeat();
        match c.recv_heartbeat_or_frame(Duration::from_millis(100)) {
            Event::Closed => panic!(
                "server closed a client beating every 100 ms after {:?}",
                start.elapsed()
            ),
            Event::Frame(f) => panic!("unexpected frame {}", describe(&f)),
            Event::HeartBeat | Event::Timeout => {}
        }
    }
    c.assert_round_trip("beating");
}

#[test]
fn client_sending_frames_instead_of_heartbeats_stays_connected() {
    let broker = broker();
    let (mut c, _) = connect_with_heartbeat(&broker, "300,0");
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        i += 1;
        c.send_to("/topic/chatter", format!("{i}").as_bytes(), &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    c.assert_round_trip("chatty");
}

#[test]
fn both_directions_beating_keeps_an_idle_connection_alive() {
    let broker = broker();
    let (mut c, _) = connect_with_heartbeat(&broker, "200,200");
    let start = Instant::now();
    let mut last_sent = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        if last_sent.elapsed() >= Duration::from_millis(150) {
            c.send_heartbeat();
            last_sent = Instant::now();
        }
        match c.recv_heartbeat_or_frame(Duration::from_millis(50)) {
            Event::Closed => panic!("closed after {:?}", start.elapsed()),
            Event::Frame(f) => panic!("unexpected frame {}", describe(&f)),
            Event::HeartBeat | Event::Timeout => {}
        }
    }
    assert!(
        c.heartbeats() >= 4,
        "got only {} heart-beats in 2 s at 200 ms",
        c.heartbeats()
    );
    c.assert_round_trip("both-ways");
}
