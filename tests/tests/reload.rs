//! Configuration reload on SIGHUP: destinations and policies change without dropping
//! connections; an invalid file is refused and the running configuration kept.

use std::time::Duration;

use stompd_protocol::Command;
use stompd_tests::{config_with, Broker, Client};

const BEFORE: &str = "[queues.limited]\n";
const AFTER: &str = "[queues.limited]\nmax_messages = 1\n\n[queues.added]\nread = [\"nobody\"]\n";

#[test]
fn sighup_applies_new_policies_and_keeps_connections() {
    let broker = Broker::with_config(&config_with(BEFORE));
    let mut c = Client::connect_v12(broker.addr());
    c.send_to_sync("/queue/limited", b"one", &[]);
    c.send_to_sync("/queue/limited", b"two", &[]);

    let path = broker
        .config_path()
        .expect("started with a config file")
        .to_owned();
    std::fs::write(&path, config_with(AFTER)).expect("rewrite config");
    broker.sighup();
    assert!(
        broker.wait_for_log("reload done", Duration::from_secs(5)),
        "no reload in the log:\n{}",
        broker.log()
    );

    // The connection opened before the reload still works, under the new limit.
    let mut p = Client::connect_v12(broker.addr());
    let f = stompd_tests::send_frame("/queue/limited", b"three", &[]).with_header("receipt", "r3");
    p.send(&f);
    let err = p.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(err.get("code"), Some("queue-full"));
    assert_eq!(err.get("receipt-id"), Some("r3"));
    c.assert_round_trip("after-reload");

    // A queue added by the reload exists with its access list.
    let mut s = Client::connect_v12(broker.addr());
    s.send(
        &stompd_protocol::Frame::new(Command::Subscribe)
            .with_header("id", "1")
            .with_header("destination", "/queue/added"),
    );
    let err = s.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(
        err.get("code"),
        Some("access-denied"),
        "{:?}",
        err.get("message")
    );
}

#[test]
fn sighup_with_an_invalid_file_keeps_the_running_configuration() {
    let broker = Broker::with_config(&config_with(AFTER));
    let path = broker.config_path().expect("config file").to_owned();
    std::fs::write(&path, "[queues.limited]\nmax_messagez = 5\n").expect("rewrite config");
    broker.sighup();
    assert!(
        broker.wait_for_log("configuration refused", Duration::from_secs(5)),
        "no refusal in the log:\n{}",
        broker.log()
    );
    assert!(
        broker.log().contains("max_messagez"),
        "the error names the key"
    );
    // Old limit still in force, and the broker still serves.
    let mut c = Client::connect_v12(broker.addr());
    c.send_to_sync("/queue/limited", b"one", &[]);
    let f = stompd_tests::send_frame("/queue/limited", b"two", &[]).with_header("receipt", "r2");
    c.send(&f);
    let err = c.expect(Command::Error, Duration::from_secs(3));
    assert_eq!(err.get("code"), Some("queue-full"));
}
