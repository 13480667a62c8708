//! Graceful shutdown on SIGTERM / SIGINT: clients get an ERROR, are closed, the process exits 0
//! within the grace period.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use stompd_protocol::Command;
use stompd_tests::{config_with, describe, Broker, Client, TIMEOUT};

const GRACE: &str = "[server]\nshutdown_grace_ms = 2000\n";
const GRACE_PERIOD: Duration = Duration::from_millis(2000);

#[track_caller]
fn assert_told_shutting_down(c: &mut Client) {
    let e = c.expect(Command::Error, TIMEOUT);
    let message = e.get("message").unwrap_or_default();
    assert!(
        message.contains("shutting down"),
        "ERROR on shutdown should say \"shutting down\": {}",
        describe(&e)
    );
    assert!(
        c.is_closed(TIMEOUT),
        "connection still open after the shutdown ERROR"
    );
}

#[test]
fn sigterm_sends_error_to_every_client_closes_them_and_exits_zero() {
    let mut broker = Broker::with_config(&config_with(GRACE));
    let mut idle = Client::connect_v12(broker.addr());
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("s", "/queue/busy", "auto");
    let mut v10 = Client::connect_with(broker.addr(), &[]);
    v10.assert_round_trip("v10");

    let start = Instant::now();
    broker.sigterm();
    for c in [&mut idle, &mut consumer, &mut v10] {
        assert_told_shutting_down(c);
    }
    let status = broker
        .wait_exit(GRACE_PERIOD + Duration::from_secs(3))
        .unwrap_or_else(|| panic!("stompd still running {:?} after SIGTERM", start.elapsed()));
    assert!(
        status.success(),
        "stompd exited with {status} after SIGTERM"
    );
    assert!(
        start.elapsed() < GRACE_PERIOD + Duration::from_secs(1),
        "exit took {:?}, grace period is {GRACE_PERIOD:?}",
        start.elapsed()
    );
}

#[test]
fn sigint_shuts_down_like_sigterm() {
    let mut broker = Broker::with_config(&config_with(GRACE));
    let mut c = Client::connect_v12(broker.addr());
    broker.sigint();
    assert_told_shutting_down(&mut c);
    let status = broker
        .wait_exit(GRACE_PERIOD + Duration::from_secs(3))
        .expect("stompd still running after SIGINT");
    assert!(status.success(), "stompd exited with {status} after SIGINT");
}

#[test]
fn idle_broker_exits_zero_promptly_on_sigterm() {
    let mut broker = Broker::with_config(&config_with(GRACE));
    let start = Instant::now();
    broker.sigterm();
    let status = broker
        .wait_exit(GRACE_PERIOD + Duration::from_secs(3))
        .expect("stompd still running after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "an idle broker took {:?} to exit",
        start.elapsed()
    );
}

#[test]
fn sigterm_with_default_config_exits_zero() {
    let mut broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    broker.sigterm();
    assert_told_shutting_down(&mut c);
    let status = broker
        .wait_exit(Duration::from_secs(12))
        .expect("stompd still running 12 s after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
}

#[test]
fn client_in_the_middle_of_a_frame_is_still_told_and_closed() {
    let mut broker = Broker::with_config(&config_with(GRACE));
    let mut c = Client::connect_v12(broker.addr());
    c.send_raw(b"SEND\ndestination:/queue/half\ncontent-length:100\n\nonly part of the bo");
    // Let the server read the partial frame before the signal.
    std::thread::sleep(Duration::from_millis(100));
    broker.sigterm();
    assert_told_shutting_down(&mut c);
    let status = broker
        .wait_exit(GRACE_PERIOD + Duration::from_secs(3))
        .expect("stompd still running after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
}

#[test]
fn listener_stops_accepting_after_shutdown() {
    let mut broker = Broker::with_config(&config_with(GRACE));
    let addr = broker.addr();
    broker.sigterm();
    broker
        .wait_exit(GRACE_PERIOD + Duration::from_secs(3))
        .expect("stompd still running after SIGTERM");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the port still accepts connections after the broker exited"
    );
}
