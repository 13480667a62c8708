//! `stompd send`, `stompd recv` and `stompd probe` through the real binary, against a real broker.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Stompd {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Stompd {
    fn start() -> Stompd {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_stompd"))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--log-format", "text", "--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stompd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("STOMPD_TEST_LOG").is_some() {
                    eprintln!("stompd: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("stompd did not log its listener");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Stompd {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Runs `stompd ARGS... HOST:PORT`-style tool commands (the address is passed as --port).
    fn tool(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let port = self.addr.port().to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompd"));
        cmd.args(args)
            .args(["--host", "127.0.0.1", "--port", &port])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("run stompd tool");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        wait(child)
    }
}

impl Drop for Stompd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a tool process, killing it after TIMEOUT (every tool command must be bounded).
fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tool command did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[test]
fn send_then_recv_round_trips_body_and_headers() {
    let b = Stompd::start();
    let sent = b.tool(
        &[
            "send",
            "/queue/tools-rt",
            "--header",
            "color:blue",
            "--header",
            "path:a:b",
            "--body",
            "hello tools",
        ],
        None,
    );
    assert_eq!(sent.status.code(), Some(0), "{}", show(&sent));
    let receipt = text(&sent.stdout);
    assert!(!receipt.trim().is_empty(), "no receipt id printed");

    // Body from stdin, then from a file.
    let sent = b.tool(&["send", "/queue/tools-rt"], Some(b"from stdin"));
    assert_eq!(sent.status.code(), Some(0), "{}", show(&sent));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.txt");
    std::fs::write(&file, "from a file\n").unwrap();
    let sent = b.tool(
        &["send", "/queue/tools-rt", "--file", file.to_str().unwrap()],
        None,
    );
    assert_eq!(sent.status.code(), Some(0), "{}", show(&sent));

    let got = b.tool(
        &["recv", "/queue/tools-rt", "--headers", "--timeout", "10"],
        None,
    );
    assert_eq!(got.status.code(), Some(0), "{}", show(&got));
    let out = text(&got.stdout);
    assert!(out.contains("color:blue\n"), "{out}");
    assert!(out.contains("path:a:b\n"), "{out}");
    assert!(out.contains("destination:/queue/tools-rt\n"), "{out}");
    assert!(out.ends_with("\n\nhello tools\n"), "{out}");

    // Exactly --count messages are taken: the third stays for the next recv.
    let got = b.tool(
        &["recv", "/queue/tools-rt", "--count", "1", "--ack", "auto"],
        None,
    );
    assert_eq!(got.status.code(), Some(0), "{}", show(&got));
    assert_eq!(text(&got.stdout), "from stdin\n");
    let got = b.tool(&["recv", "/queue/tools-rt", "-n", "1"], None);
    assert_eq!(got.status.code(), Some(0), "{}", show(&got));
    assert_eq!(text(&got.stdout), "from a file\n");

    // Several at once, and a positional HOST:PORT instead of --host/--port.
    for i in 0..3 {
        let sent = b.tool(
            &["send", "/queue/tools-many", "--body", &format!("m{i}")],
            None,
        );
        assert_eq!(sent.status.code(), Some(0), "{}", show(&sent));
    }
    let addr = b.addr.to_string();
    let got = wait(
        Command::new(env!("CARGO_BIN_EXE_stompd"))
            .args(["recv", "/queue/tools-many", &addr, "--count", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(got.status.code(), Some(0), "{}", show(&got));
    assert_eq!(text(&got.stdout), "m0\nm1\nm2\n");
}

#[test]
fn recv_times_out_with_exit_2() {
    let b = Stompd::start();
    let start = Instant::now();
    let got = b.tool(
        &[
            "recv",
            "/queue/tools-empty",
            "--timeout",
            "0.5",
            "--count",
            "2",
        ],
        None,
    );
    assert_eq!(got.status.code(), Some(2), "{}", show(&got));
    assert!(got.stdout.is_empty(), "{}", show(&got));
    assert!(
        text(&got.stderr).contains("received 0 of 2"),
        "{}",
        show(&got)
    );
    assert!(start.elapsed() < Duration::from_secs(8));

    // Fewer than --count: what arrived is printed, and the exit code is still 2.
    let sent = b.tool(&["send", "/queue/tools-empty", "--body", "only one"], None);
    assert_eq!(sent.status.code(), Some(0), "{}", show(&sent));
    let got = b.tool(
        &[
            "recv",
            "/queue/tools-empty",
            "--timeout",
            "0.5",
            "--count",
            "2",
        ],
        None,
    );
    assert_eq!(got.status.code(), Some(2), "{}", show(&got));
    assert_eq!(text(&got.stdout), "only one\n");
    assert!(
        text(&got.stderr).contains("received 1 of 2"),
        "{}",
        show(&got)
    );
}

#[test]
fn error_frames_give_exit_3_with_the_code() {
    let b = Stompd::start();
    let sent = b.tool(&["send", "/nowhere/x", "--body", "lost"], None);
    assert_eq!(sent.status.code(), Some(3), "{}", show(&sent));
    let err = text(&sent.stderr);
    assert!(err.contains("code=bad-destination"), "{err}");
    assert!(err.contains("/nowhere/x"), "{err}");

    let got = b.tool(&["recv", "/nowhere/y", "--timeout", "5"], None);
    assert_eq!(got.status.code(), Some(3), "{}", show(&got));
    assert!(text(&got.stderr).contains("code=bad-destination"));

    // A bad --header is a local error (1), no broker involved.
    let sent = b.tool(
        &["send", "/queue/x", "--header", "nocolon", "--body", "b"],
        None,
    );
    assert_eq!(sent.status.code(), Some(1), "{}", show(&sent));

    // Nobody listening: a connection failure (4), quickly.
    drop(b);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let out = wait(
        Command::new(env!("CARGO_BIN_EXE_stompd"))
            .args(["send", "/queue/x", "--port", &port, "--body", "b"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(text(&out.stderr).contains("cannot connect"));
}

#[test]
fn probe_passes_against_stompd_and_cleans_up() {
    let b = Stompd::start();
    let addr = b.addr.to_string();
    let out = wait(
        Command::new(env!("CARGO_BIN_EXE_stompd"))
            .args(["probe", &addr, "--timeout", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for check in [
        "PASS  connect: version=1.2",
        "PASS  send with receipt",
        "PASS  subscribe",
        "PASS  receive",
        "PASS  header value a\\cb round-trips",
        "PASS  NACK redelivers",
        "PASS  ACK",
        "PASS  transaction commit",
        "PASS  transaction abort",
        "PASS  unsubscribe",
        "PASS  queue empty afterwards",
        "PASS  disconnect",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in\n{stdout}");
    }
    assert!(stdout.contains("0 failed"), "{stdout}");
    let dest = stdout
        .split_whitespace()
        .find(|w| w.starts_with("/queue/stompd-probe-"))
        .expect("probe names its queue")
        .to_owned();
    // Nothing left behind in the probe's queue.
    let got = b.tool(&["recv", &dest, "--timeout", "0.5"], None);
    assert_eq!(got.status.code(), Some(2), "{}", show(&got));

    // Nothing listening: the connect check fails and the exit code is 1.
    drop(b);
    let out = wait(
        Command::new(env!("CARGO_BIN_EXE_stompd"))
            .args(["probe", &addr, "--timeout", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stdout).contains("FAIL  connect"));
}
