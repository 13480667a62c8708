//! The admin listener through the real binary: STOMP and HTTP over raw sockets, no client crates.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Stompd {
    child: Child,
    stomp: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Stompd {
    fn start(config: Option<&str>) -> Stompd {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompd"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--log-format", "text", "--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(text) = config {
            let path = dir.path().join("stompd.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd.spawn().expect("start stompd");
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
        let (mut stomp, mut admin) = (None, None);
        let deadline = Instant::now() + TIMEOUT;
        while stomp.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("stompd did not log its listeners");
            let Some(rest) = line.split("listening on ").nth(1) else {
                continue;
            };
            let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
            if line.contains("protocol=\"admin\"") {
                admin = Some(addr);
            } else if line.contains("protocol=\"stomp\"") {
                stomp = Some(addr);
            }
        }
        Stompd {
            child,
            stomp: stomp.unwrap(),
            admin: admin.unwrap(),
            _dir: dir,
        }
    }

    fn http(&self, method: &str, path: &str) -> Response {
        self.http_with(method, path, &[])
    }

    fn http_with(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.admin
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response head");
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn json(&self, method: &str, path: &str, status: u16) -> Value {
        let r = self.http(method, path);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        serde_json::from_str(&r.body).unwrap()
    }
}

impl Drop for Stompd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A STOMP 1.2 client over a raw socket.
struct Stomp {
    s: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Stomp {
    fn connect(addr: SocketAddr, login: Option<(&str, &str)>) -> Stomp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Stomp { s, buf: Vec::new() };
        let mut headers = vec![("accept-version", "1.2"), ("host", "localhost")];
        if let Some((l, p)) = login {
            headers.push(("login", l));
            headers.push(("passcode", p));
        }
        c.send_frame("CONNECT", &headers, "");
        let f = c.read().expect("CONNECTED");
        assert_eq!(f.command, "CONNECTED", "{f:?}");
        c
    }

    fn send_frame(&mut self, command: &str, headers: &[(&str, &str)], body: &str) {
        let mut out = format!("{command}\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}:{v}\n"));
        }
        out.push('\n');
        out.push_str(body);
        out.push('\0');
        self.s.write_all(out.as_bytes()).unwrap();
    }

    /// The next frame, or `None` at end of stream.
    fn read(&mut self) -> Option<Frame> {
        loop {
            while matches!(self.buf.first(), Some(b'\n' | b'\r')) {
                self.buf.remove(0);
            }
            if let Some(end) = self.buf.iter().position(|&b| b == 0) {
                let raw: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&raw[..end]).into_owned();
                let head = text.split_once("\n\n").map_or(text.as_str(), |(h, _)| h);
                let mut lines = head.lines();
                let command = lines.next().unwrap_or("").to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                return Some(Frame { command, headers });
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// SEND with a receipt; returns the RECEIPT or the ERROR that came instead.
    fn send(&mut self, destination: &str, body: &str, extra: &[(&str, &str)]) -> Frame {
        let mut headers = vec![("destination", destination), ("receipt", "r")];
        headers.extend_from_slice(extra);
        self.send_frame("SEND", &headers, body);
        self.read().expect("RECEIPT or ERROR")
    }
}

fn queue_depth(b: &Stompd, name: &str) -> u64 {
    b.json("GET", &format!("/api/queues/{name}"), 200)["depth"]
        .as_u64()
        .unwrap()
}

#[test]
fn queues_messages_metrics_and_connections() {
    let b = Stompd::start(None);
    let mut producer = Stomp::connect(b.stomp, None);
    for body in ["m1", "m2", "m3"] {
        let f = producer.send("/queue/work", body, &[("x-kind", "test")]);
        assert_eq!(f.command, "RECEIPT", "{f:?}");
    }

    // Queue listing and one queue.
    let list = b.json("GET", "/api/queues", 200);
    let work = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["destination"] == "/queue/work")
        .expect("listed");
    assert_eq!(work["depth"], 3);
    assert_eq!(work["ready"], 3);
    assert_eq!(work["in_flight"], 0);
    assert_eq!(work["consumers"], 0);
    assert_eq!(work["closed"], false);
    assert_eq!(work["counters"]["enqueued"], 3);
    assert!(work["rates"]["enqueue"].is_number());
    assert_eq!(
        b.json("GET", "/api/queues/work", 200)["bytes"],
        work["bytes"]
    );

    // Browse, paged.
    let page = b.json("GET", "/api/queues/work/messages?limit=2", 200);
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["body_preview"], "m1");
    assert_eq!(msgs[1]["body_preview"], "m2");
    assert_eq!(msgs[0]["body_size"], 2);
    assert!(msgs[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "x-kind" && h[1] == "test"));
    let seq1 = msgs[0]["seq"].as_u64().unwrap();
    let seq2 = msgs[1]["seq"].as_u64().unwrap();
    assert_eq!(msgs[1]["message_id"], format!("/queue/work@{seq2}"));
    let rest = b.json("GET", "/api/queues/work/messages?offset=2&limit=10", 200);
    assert_eq!(rest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(rest["messages"][0]["body_preview"], "m3");
    let bad = b.json("GET", "/api/queues/work/messages?limit=x", 400);
    assert_eq!(bad["code"], "bad-request");

    // One message, then remove it.
    let one = b.json("GET", &format!("/api/queues/work/messages/{seq2}"), 200);
    assert_eq!(one["body"], "m2");
    assert_eq!(one["body_encoding"], "utf-8");
    b.json("DELETE", &format!("/api/queues/work/messages/{seq2}"), 200);
    assert_eq!(queue_depth(&b, "work"), 2);
    let gone = b.json("DELETE", &format!("/api/queues/work/messages/{seq2}"), 404);
    assert_eq!(gone["code"], "unknown-message");
    b.json("GET", &format!("/api/queues/work/messages/{seq2}"), 404);
    b.json("GET", &format!("/api/queues/work/messages/{seq1}"), 200);

    // Metrics agree.
    let m = b.http("GET", "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "stompd_queue_depth{destination=\"/queue/work\"} 2",
        "stompd_queue_enqueued_total{destination=\"/queue/work\"} 3",
        "stompd_queue_acked_total{destination=\"/queue/work\"} 1",
        "stompd_connections_open 1",
        "stompd_messages_enqueued_total 3",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "{line} not in\n{}",
            m.body
        );
    }
    for name in [
        "stompd_frames_in_total",
        "stompd_bytes_out_total",
        "stompd_journal_fsyncs_total",
        "stompd_journal_fsync_seconds_total",
        "stompd_journal_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(
            m.body.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} not in\n{}",
            m.body
        );
    }

    // Purge.
    let purged = b.json("POST", "/api/queues/work/purge", 200);
    assert_eq!(purged["purged"], 2);
    assert_eq!(queue_depth(&b, "work"), 0);

    // Close: a SEND is refused; reopen: accepted again.
    b.json("POST", "/api/queues/work/close", 200);
    assert_eq!(b.json("GET", "/api/queues/work", 200)["closed"], true);
    let mut other = Stomp::connect(b.stomp, None);
    let err = other.send("/queue/work", "refused", &[]);
    assert_eq!(err.command, "ERROR", "{err:?}");
    assert_eq!(err.header("code"), Some("queue-closed"));
    b.json("POST", "/api/queues/work/reopen", 200);
    let ok = producer.send("/queue/work", "again", &[]);
    assert_eq!(ok.command, "RECEIPT", "{ok:?}");
    assert_eq!(queue_depth(&b, "work"), 1);

    // Overview.
    let o = b.json("GET", "/api/overview", 200);
    assert!(o["connections"]["accepted"].as_u64().unwrap() >= 2);
    assert!(o["traffic"]["frames_in"].as_u64().unwrap() >= 6);
    assert!(o["journal"]["segments"].is_number());
    assert!(o["process"]["rss_bytes"].as_u64().unwrap() > 0);

    // Connections: list, close one.
    let deadline = Instant::now() + TIMEOUT;
    let conns = loop {
        // The refused client's connection closes after its ERROR.
        let c = b.json("GET", "/api/connections", 200);
        if c["connections"].as_array().unwrap().len() == 1 || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let list = conns["connections"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{conns}");
    let c = &list[0];
    assert_eq!(c["version"], "1.2");
    assert_eq!(c["peer"], producer.s.local_addr().unwrap().to_string());
    assert!(c["frames_in"].as_u64().unwrap() >= 5);
    let id = c["id"].as_u64().unwrap();
    b.json("DELETE", &format!("/api/connections/{id}"), 200);
    // The connection ends (after an ERROR frame, if the session sends one).
    while let Some(f) = producer.read() {
        assert_eq!(f.command, "ERROR", "{f:?}");
    }
    let deadline = Instant::now() + TIMEOUT;
    while !b.json("GET", "/api/connections", 200)["connections"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "connection still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.json("DELETE", &format!("/api/connections/{id}"), 404);
}

#[test]
fn run_time_queues_errors_and_dashboard() {
    let b = Stompd::start(None);
    let created = b.json("PUT", "/api/queues/fresh", 201);
    assert_eq!(created["destination"], "/queue/fresh");
    assert_eq!(
        b.json("PUT", "/api/queues/fresh", 409)["code"],
        "queue-exists"
    );
    assert_eq!(queue_depth(&b, "fresh"), 0);
    // The embedded configuration auto-creates /queue/* but nothing deeper.
    let bad = b.json("PUT", "/api/queues/a%2Fb", 400);
    assert_eq!(bad["code"], "bad-destination");

    let mut consumer = Stomp::connect(b.stomp, None);
    consumer.send_frame(
        "SUBSCRIBE",
        &[
            ("id", "s1"),
            ("destination", "/queue/fresh"),
            ("receipt", "sub"),
        ],
        "",
    );
    assert_eq!(consumer.read().unwrap().command, "RECEIPT");
    assert_eq!(b.json("GET", "/api/queues/fresh", 200)["consumers"], 1);
    b.json("DELETE", "/api/queues/fresh", 200);
    b.json("GET", "/api/queues/fresh", 404);
    assert_eq!(
        b.json("DELETE", "/api/queues/fresh", 404)["code"],
        "unknown-destination"
    );

    let nf = b.json("GET", "/api/nothing", 404);
    assert_eq!(nf["code"], "not-found");
    let r = b.http("POST", "/api/queues");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let foreign = b.http_with(
        "POST",
        "/api/queues/x/purge",
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(foreign.status, 403);

    let page = b.http("GET", "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("<title>stompd</title>"));
    let topics = b.json("GET", "/api/topics", 200);
    assert!(topics["topics"].is_array());
    let history = b.json("GET", "/api/history", 200);
    assert_eq!(history["interval_ms"], 1000);
}

#[test]
fn admin_needs_credentials_and_the_admin_permission_when_users_exist() {
    let ops = stompd::auth::hash_password("ops-pass");
    let bob = stompd::auth::hash_password("bob-pass");
    let config = format!(
        r#"
[auth]
anonymous = false
failure_delay_ms = 0

[[auth.users]]
name = "ops"
password_hash = "{ops}"
groups = ["admins"]

[[auth.users]]
name = "bob"
password_hash = "{bob}"

[[auth.rules]]
destinations = ["/**"]
groups = ["admins"]
allow = ["read", "write", "create", "admin"]

[[auth.rules]]
destinations = ["/**"]
users = ["bob"]
allow = ["read", "write", "create"]

[[auto_create]]
pattern = "/queue/*"
who = ["*"]
"#
    );
    let b = Stompd::start(Some(&config));
    let basic = |user: &str, pass: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let none = b.http("GET", "/api/queues");
    assert_eq!(none.status, 401);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let wrong = b.http_with(
        "GET",
        "/api/queues",
        &[("Authorization", &basic("ops", "nope"))],
    );
    assert_eq!(wrong.status, 401);
    let bob = b.http_with(
        "GET",
        "/api/overview",
        &[("Authorization", &basic("bob", "bob-pass"))],
    );
    assert_eq!(bob.status, 403, "{}", bob.body);
    let ops_auth = basic("ops", "ops-pass");
    for _ in 0..2 {
        // The second time from the cache of verified credentials.
        let ok = b.http_with("GET", "/metrics", &[("Authorization", &ops_auth)]);
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let created = b.http_with(
        "PUT",
        "/api/queues/secured",
        &[("Authorization", &ops_auth)],
    );
    assert_eq!(created.status, 201, "{}", created.body);
}
