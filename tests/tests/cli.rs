//! The command line: check-config, print-config, --listen, --config, --log-format.

use std::path::Path;
use std::time::Duration;

use stompd_tests::{config_with, Broker, CliOutput, Client};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p.to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "good.toml",
        &config_with("[server]\nlisten = [\"127.0.0.1:61613\"]\nshutdown_grace_ms = 500\n"),
    );
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(
        out.status.success(),
        "check-config failed on a valid file: {out:?}"
    );
}

#[test]
fn check_config_accepts_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.toml", "");
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(out.status.success(), "every key has a default: {out:?}");
}

#[test]
fn check_config_rejects_unknown_key_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    // The unknown key is on line 4.
    let path = write(
        dir.path(),
        "typo.toml",
        "# a config with a typo\n[server]\nlisten = [\"127.0.0.1:61613\"]\nshutdown_grace_msec = 500\n",
    );
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(
        !out.status.success(),
        "check-config accepted an unknown key: {out:?}"
    );
    assert!(
        out.stderr.contains(&path),
        "error should name the file {path}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(":4:"),
        "error should name line 4 as `:4:`: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shutdown_grace_msec"),
        "error should name the key: {}",
        out.stderr
    );
}

#[test]
fn check_config_rejects_unknown_key_in_a_later_table() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        config_with("[server]\nname = \"x\"\n\n[limits]\nmax_body_bytes = 10\nmax_bodies = 3\n");
    let path = write(dir.path(), "typo2.toml", &text);
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&path), "{}", out.stderr);
    assert!(
        out.stderr.contains(":6:"),
        "error should name line 6: {}",
        out.stderr
    );
    assert!(out.stderr.contains("max_bodies"), "{}", out.stderr);
}

#[test]
fn check_config_rejects_a_value_of_the_wrong_type_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "type.toml",
        "[server]\nmax_connections = \"lots\"\n",
    );
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&path), "{}", out.stderr);
    assert!(
        out.stderr.contains(":2:"),
        "error should name line 2: {}",
        out.stderr
    );
    assert!(out.stderr.contains("max_connections"), "{}", out.stderr);
}

#[test]
fn check_config_rejects_invalid_toml_syntax_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "syntax.toml",
        "[server]\nname = \"x\"\nlisten = [\n",
    );
    let out = CliOutput::run(&["check-config", &path], dir.path());
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&path), "{}", out.stderr);
}

#[test]
fn check_config_on_a_missing_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let path = path.to_str().unwrap();
    let out = CliOutput::run(&["check-config", path], dir.path());
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(path), "{}", out.stderr);
}

#[test]
fn print_config_is_commented_toml_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = CliOutput::run(&["print-config"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let text = &out.stdout;
    let parsed: toml::Table = toml::from_str(text)
        .unwrap_or_else(|e| panic!("print-config output is not TOML: {e}\n{text}"));
    for table in ["server", "limits", "heartbeat"] {
        assert!(
            parsed.contains_key(table),
            "print-config has no [{table}]:\n{text}"
        );
    }
    for key in [
        "listen",
        "connect_timeout_ms",
        "shutdown_grace_ms",
        "max_frame_bytes",
        "max_header_line_bytes",
        "max_body_bytes",
        "grace",
    ] {
        assert!(
            text.contains(key),
            "print-config does not mention `{key}`:\n{text}"
        );
    }
    let comments = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .count();
    let keys = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with('#') && !l.starts_with('[') && l.contains('=')
        })
        .count();
    assert!(
        comments >= keys,
        "every key should be commented: {comments} comment lines for {keys} keys\n{text}"
    );
    let path = write(dir.path(), "printed.toml", text);
    let check = CliOutput::run(&["check-config", &path], dir.path());
    assert!(
        check.status.success(),
        "check-config rejects print-config's output: {check:?}"
    );
}

#[test]
fn print_config_default_listens_on_loopback_61613() {
    let dir = tempfile::tempdir().unwrap();
    let out = CliOutput::run(&["print-config"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let parsed: toml::Table = toml::from_str(&out.stdout).expect("TOML");
    let listen = parsed
        .get("server")
        .and_then(|s| s.get("listen"))
        .and_then(|l| l.as_array())
        .expect("server.listen array");
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0].as_str(), Some("127.0.0.1:61613"));
}

#[test]
fn repeated_listen_binds_every_address() {
    let broker = Broker::builder().listeners(2).start();
    let log = broker.log();
    let lines = log.lines().filter(|l| l.contains("listening on")).count();
    assert_eq!(lines, 2, "expected two `listening on` lines:\n{log}");
    let addrs = broker.addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    // Both listeners serve STOMP, and they share one broker: a message sent through one is
    // received through the other.
    let mut consumer = Client::connect_v12(addrs[0]);
    consumer.subscribe_sync("s", "/queue/two-doors", "auto");
    let mut producer = Client::connect_v12(addrs[1]);
    producer.send_to_sync("/queue/two-doors", b"through the other door", &[]);
    let m = consumer.expect(stompd_protocol::Command::Message, stompd_tests::TIMEOUT);
    assert_eq!(&m.body[..], b"through the other door");
}

#[test]
fn listen_flag_replaces_the_config_listeners() {
    // The config asks for a fixed port; --listen 127.0.0.1:0 must replace it, not add to it.
    let broker = Broker::with_config(&config_with("[server]\nlisten = [\"127.0.0.1:1\"]\n"));
    std::thread::sleep(Duration::from_millis(300));
    let log = broker.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("listening on")).collect();
    assert_eq!(lines.len(), 1, "one listener expected:\n{log}");
    assert_ne!(broker.addr().port(), 1);
    Client::connect_v12(broker.addr()).assert_round_trip("replaced");
}

#[test]
fn broker_refuses_to_start_with_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", "[server]\nbogus_key = 1\n");
    let data = dir.path().join("data");
    let out = CliOutput::run(
        &[
            "--config",
            &path,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        !out.status.success(),
        "started with an invalid config: {out:?}"
    );
    assert!(out.stderr.contains(&path), "{}", out.stderr);
    assert!(out.stderr.contains("bogus_key"), "{}", out.stderr);
}

#[test]
fn json_log_format_writes_json_lines() {
    let broker = Broker::builder().arg("--log-format").arg("json").start();
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("listening on"))
        .expect("a listening line");
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("`{line}` is not JSON: {e}"));
    assert!(v.is_object());
    Client::connect_v12(broker.addr()).assert_round_trip("json-log");
}

#[test]
fn logs_go_to_stderr_not_stdout() {
    let broker = Broker::start();
    Client::connect_v12(broker.addr()).assert_round_trip("stderr");
    std::thread::sleep(Duration::from_millis(100));
    let log = broker.log();
    assert!(
        !log.lines().any(|l| l.starts_with("[stdout] ")),
        "the broker wrote to stdout:\n{log}"
    );
}

#[test]
fn data_dir_flag_is_used_for_storage() {
    let broker = Broker::start();
    Client::connect_v12(broker.addr()).assert_round_trip("data-dir");
    // The default config has persistent queues; the broker must not write into its cwd's
    // default `stompd-data` when --data-dir is given.
    let cwd_default = broker.data_dir().parent().unwrap().join("stompd-data");
    assert!(
        !cwd_default.exists(),
        "stompd created {} although --data-dir was given",
        cwd_default.display()
    );
}
