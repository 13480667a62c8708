//! Running the real `stompd` binary: location, start, log capture, signals, restart.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// Path of the `stompd` binary under test: env `STOMPD_BIN` if set, else `stompd` in the cargo
/// profile directory this test executable was built into (`<target>/<profile>/deps/<test>` ->
/// `<target>/<profile>/stompd`).
///
/// # Panics
/// If the binary does not exist, with a message that says how to build it.
pub fn stompd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STOMPD_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "STOMPD_BIN={} does not exist; build it with `cargo build -p stompd`",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent dir")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join(format!("stompd{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the stompd binary was not found at {}: run `cargo build -p stompd` (with the same \
         CARGO_TARGET_DIR and profile) or `cargo test --workspace`, or set STOMPD_BIN",
        bin.display()
    );
    bin
}

/// The log of a broker process, shared with the threads that read its stdout and stderr.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<String>>);

impl LogBuf {
    fn push_line(&self, line: &str) {
        let line = strip_ansi(line);
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.push_str(&line);
        if !line.ends_with('\n') {
            s.push('\n');
        }
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Removes ANSI colour escapes (`ESC [ ... letter`) so log matching is not fooled by them.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spawn_reader(stream: impl Read + Send + 'static, log: LogBuf, prefix: &'static str) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    log.push_line(&format!("{prefix}{line}"));
                }
            }
        }
    });
}

/// Every address in `listening on ADDR` lines of `log`, in order.
pub fn listening_addrs(log: &str) -> Vec<SocketAddr> {
    const NEEDLE: &str = "listening on ";
    let mut out = Vec::new();
    for line in log.lines() {
        let mut rest = line;
        while let Some(i) = rest.find(NEEDLE) {
            rest = &rest[i + NEEDLE.len()..];
            // The address may be followed by punctuation (a JSON log quotes it) or a space.
            let token: String = rest
                .trim_start_matches(['"', '\'', '`', ' '])
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            if let Ok(a) = token.parse::<SocketAddr>() {
                out.push(a);
            }
        }
    }
    out
}

/// The resident set size of process `pid` in KiB, from `VmRSS` in `/proc/PID/status` (Linux);
/// `None` if unavailable.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How to start a [`Broker`].
#[derive(Clone, Debug)]
pub struct BrokerBuilder {
    config: Option<String>,
    listeners: usize,
    args: Vec<String>,
    log_level: Option<String>,
}

impl Default for BrokerBuilder {
    fn default() -> Self {
        BrokerBuilder {
            config: None,
            listeners: 1,
            args: Vec::new(),
            log_level: Some("debug".to_owned()),
        }
    }
}

impl BrokerBuilder {
    /// A config file (TOML text), written into the broker's temp dir and passed with `--config`.
    /// Use [`crate::config_with`] to get the usual auto-created destinations.
    pub fn config(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Number of `--listen 127.0.0.1:0` flags (default 1).
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n;
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// `--log-level` (default `debug`, so a failing test's dump shows what happened); `None`
    /// passes no flag.
    pub fn log_level(mut self, level: Option<&str>) -> Self {
        self.log_level = level.map(str::to_owned);
        self
    }

    /// Starts the broker and waits until every listener logged `listening on`.
    pub fn start(self) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("stompd-e2e-")
            .tempdir()
            .expect("create temp dir");
        let config_path = self.config.as_ref().map(|text| {
            let p = dir.path().join("stompd.toml");
            std::fs::write(&p, text).expect("write config");
            p
        });
        let mut broker = Broker {
            child: None,
            log: LogBuf::default(),
            run_start: 0,
            addrs: Vec::new(),
            data_dir: dir.path().join("data"),
            config_path,
            builder: self,
            dir,
        };
        broker.spawn();
        broker
    }
}

/// A running `stompd` process with its own data directory and port(s).
pub struct Broker {
    child: Option<Child>,
    log: LogBuf,
    /// Offset in `log` where the current run's output starts (after a restart).
    run_start: usize,
    addrs: Vec<SocketAddr>,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    builder: BrokerBuilder,
    // Last: dropped (deleted) after the child is killed.
    dir: tempfile::TempDir,
}

impl Broker {
    /// A broker with the embedded default config.
    pub fn start() -> Broker {
        BrokerBuilder::default().start()
    }

    /// A broker with the given config file text.
    pub fn with_config(toml: &str) -> Broker {
        BrokerBuilder::default().config(toml).start()
    }

    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(stompd_bin());
        cmd.current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(&self.data_dir);
        for _ in 0..self.builder.listeners {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if let Some(p) = &self.config_path {
            cmd.arg("--config").arg(p);
        }
        if let Some(level) = &self.builder.log_level {
            cmd.args(["--log-level", level]);
        }
        cmd.args(&self.builder.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        self.run_start = self.log.len();
        spawn_reader(child.stderr.take().expect("stderr"), self.log.clone(), "");
        spawn_reader(
            child.stdout.take().expect("stdout"),
            self.log.clone(),
            "[stdout] ",
        );
        self.child = Some(child);

        let want = self.builder.listeners;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let addrs = listening_addrs(&self.log());
            if addrs.len() >= want {
                self.addrs = addrs;
                return;
            }
            if let Some(status) = self.try_status() {
                thread::sleep(Duration::from_millis(50)); // let the readers drain
                panic!(
                    "stompd exited with {status} before listening; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "stompd did not log `listening on ADDR` {want} time(s) within 10 s; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The first STOMP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every STOMP listener's address, in the order they were logged.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// True while the current run's process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_status().is_none()
    }

    /// The resident set size of the current run's process in KiB (`VmRSS` in
    /// `/proc/PID/status`); `None` where that file is unavailable or the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        rss_kib_of(pid)
    }

    /// The process id of the current run.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is running").id()
    }

    /// The data directory passed with `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin listener's address (its `listening on` line names `admin`), waiting for it
    /// up to [`TIMEOUT`]. Start the broker with `--admin-listen 127.0.0.1:0`.
    #[track_caller]
    pub fn admin_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.log();
            let found = log
                .lines()
                .filter(|l| l.contains("admin"))
                .find_map(|l| listening_addrs(l).into_iter().next());
            if let Some(a) = found {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no admin `listening on ADDR` line within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log (stderr, and stdout lines prefixed `[stdout] `) of the current run so far.
    pub fn log(&self) -> String {
        let all = self.log.text();
        all.get(self.run_start..).unwrap_or_default().to_owned()
    }

    /// The log of every run of this broker (see [`Broker::restart`]).
    pub fn full_log(&self) -> String {
        self.log.text()
    }

    /// Waits until the current run's log contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed: {status}");
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGHUP (configuration reload).
    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    /// The configuration file the broker was started with, if any (rewrite it, then
    /// [`Broker::sighup`], to test reloads).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Sends SIGINT (graceful shutdown, like Ctrl-C).
    pub fn sigint(&self) {
        self.signal("-INT");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the current process (if still running) and starts a new one with the same data dir,
    /// config and arguments, on a new port.
    pub fn restart(&mut self) {
        if self.try_status().is_none() {
            self.kill9();
        }
        self.log.push_line("===== harness: restart =====");
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            // Give the reader threads a moment to catch the last lines.
            thread::sleep(Duration::from_millis(50));
            eprintln!(
                "===== stompd log ({}) =====\n{}===== end of stompd log =====",
                self.dir.path().display(),
                self.full_log()
            );
        }
    }
}

/// Result of running the binary as a one-shot command (`check-config`, `print-config`).
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Runs `stompd ARGS...` in `cwd` and waits (bounded by [`TIMEOUT`] * 2) for it to exit.
    pub fn run(args: &[&str], cwd: &Path) -> CliOutput {
        let mut child = Command::new(stompd_bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stompd");
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let t_out = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let deadline = Instant::now() + TIMEOUT * 2;
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`stompd {}` did not exit within {:?}",
                    args.join(" "),
                    TIMEOUT * 2
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
        CliOutput {
            status,
            stdout: strip_ansi(&stdout),
            stderr: strip_ansi(&stderr),
        }
    }
}

/// One HTTP/1.1 request with an empty body to the admin listener; (status, whole response).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_addresses_in_text_and_json_logs() {
        let log = "2025-01-01T00:00:00Z  INFO stompd: listening on 127.0.0.1:40123\n\
                   {\"fields\":{\"message\":\"listening on 127.0.0.1:40124\"}}\n\
                   INFO listening on [::1]:5 proto=stomp\n\
                   INFO nothing here\n";
        let addrs = listening_addrs(log);
        assert_eq!(
            addrs,
            vec![
                "127.0.0.1:40123".parse().unwrap(),
                "127.0.0.1:40124".parse().unwrap(),
                "[::1]:5".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn strips_ansi_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[32m INFO\u{1b}[0m listening on"),
            " INFO listening on"
        );
    }
}
