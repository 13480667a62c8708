//! Hostile input (issue 5, items 5 and 6), against the real binary: garbage bytes, half frames
//! then silence (slowloris), endless header lines, huge `content-length`s, floods of SENDs with
//! receipts from clients that never read, connections opening and closing rapidly, and a
//! subscriber that never reads its socket.
//!
//! All of it runs while a well-behaved client keeps doing SEND + receive round trips with
//! receipts on the same broker; every round trip must complete within [`ROUND_TRIP_LIMIT`]
//! the whole time. Meanwhile the broker's RSS is sampled from `/proc/PID/status` and must stay
//! under [`RSS_LIMIT_KIB`]. Afterwards the broker is still running, its log has no `panicked`,
//! and the persistent messages stored before the attacks are intact.
//!
//! Every connection goes to 127.0.0.1; every loop is bounded in count and time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, send_frame, subscribe_frame, Broker, Client, TIMEOUT};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const WRITE_TIMEOUT: Duration = Duration::from_millis(2000);
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(2);
const RSS_LIMIT_KIB: u64 = 200 * 1024;
const STORED: usize = 50;

fn config() -> String {
    config_with(
        r#"
[server]
connect_timeout_ms = 1000

[limits]
write_timeout_ms = 2000
outbox_bytes = 65536
max_frame_bytes = 1048576
max_body_bytes = 1048576

[queue_defaults]
persistent = true

[queues.busy]
persistent = false
prefetch = 10
"#,
    )
}

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// Failures collected from every thread, with the attack that was running.
#[derive(Default)]
struct Report {
    phase: Mutex<String>,
    failures: Mutex<Vec<String>>,
}

impl Report {
    fn set_phase(&self, p: &str) {
        eprintln!("phase: {p}");
        *self.phase.lock().unwrap() = p.to_owned();
    }

    fn fail(&self, what: String) {
        let phase = self.phase.lock().unwrap().clone();
        let line = format!("[during {phase}] {what}");
        eprintln!("FAILURE: {line}");
        self.failures.lock().unwrap().push(line);
    }
}

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
    s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    s
}

/// Reads and discards until the peer closes (EOF or reset); true if that happened within
/// `timeout`.
fn wait_closed(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// A frame's bytes as a 1.2 client writes them.
fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{command}\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}:{v}\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length:{}\n\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.push(0);
    out
}

// ------------------------------------------------------------------------------------------
// The well-behaved client and the RSS monitor
// ------------------------------------------------------------------------------------------

struct RoundTrips {
    count: u64,
    max: Duration,
}

fn well_behaved(addr: SocketAddr, stop: &AtomicBool, report: &Report) -> RoundTrips {
    let mut stats = RoundTrips {
        count: 0,
        max: Duration::ZERO,
    };
    let mut c = match Client::try_connect_v12(addr, TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            report.fail(format!("well-behaved client: {e}"));
            return stats;
        }
    };
    let sub = subscribe_frame("wb", "/queue/well-behaved", "auto").with_header("receipt", "sub");
    if let Err(e) = c
        .try_send(&sub)
        .map_err(|e| e.to_string())
        .and_then(|()| c.try_wait_receipt("sub", TIMEOUT).map(drop))
    {
        report.fail(format!("well-behaved client: SUBSCRIBE: {e}"));
        return stats;
    }
    let hard_stop = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
        stats.count += 1;
        let n = stats.count;
        let body = format!("round trip {n}");
        let start = Instant::now();
        let rid = format!("wb-{n}");
        let sent = c.try_send(&send_frame(
            "/queue/well-behaved",
            body.as_bytes(),
            &[("receipt", &rid), ("n", &n.to_string())],
        ));
        if let Err(e) = sent {
            report.fail(format!("well-behaved client: SEND {n} failed: {e}"));
            return stats;
        }
        let mut receipted = false;
        let mut delivered = false;
        while !(receipted && delivered) {
            let left = (start + ROUND_TRIP_LIMIT * 2).saturating_duration_since(Instant::now());
            match c.recv(left) {
                Some(f) if f.command == Command::Receipt && f.get("receipt-id") == Some(&rid) => {
                    receipted = true;
                }
                Some(f) if f.command == Command::Message => {
                    if f.body[..] != *body.as_bytes() {
                        report.fail(format!(
                            "well-behaved client: round trip {n} got {}",
                            describe(&f)
                        ));
                    }
                    delivered = true;
                }
                Some(f) => {
                    report.fail(format!(
                        "well-behaved client: round trip {n}: unexpected {}",
                        describe(&f)
                    ));
                    return stats;
                }
                None => {
                    report.fail(format!(
                        "well-behaved client: round trip {n} not complete after {:?} \
                         (receipt: {receipted}, message: {delivered}, closed: {})",
                        start.elapsed(),
                        c.saw_close()
                    ));
                    return stats;
                }
            }
        }
        let took = start.elapsed();
        stats.max = stats.max.max(took);
        if took > ROUND_TRIP_LIMIT {
            report.fail(format!(
                "well-behaved client: round trip {n} took {took:?} (limit {ROUND_TRIP_LIMIT:?})"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = c.try_send(&Frame::new(Command::Disconnect));
    stats
}

fn monitor_rss(pid: u32, stop: &AtomicBool, max_kib: &AtomicU64) {
    let hard_stop = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
        if let Some(kib) = stompd_tests::rss_kib_of(pid) {
            max_kib.fetch_max(kib, Ordering::SeqCst);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Sets the flag when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A connection with an `auto` subscription to `/queue/busy` in place, or `None` (reported).
fn subscriber(addr: SocketAddr, id: &str, report: &Report) -> Option<Client> {
    let result = Client::try_connect_v12(addr, TIMEOUT).and_then(|mut c| {
        let sub = subscribe_frame(id, "/queue/busy", "auto").with_header("receipt", "sub");
        c.try_send(&sub).map_err(|e| e.to_string())?;
        c.try_wait_receipt("sub", TIMEOUT)?;
        Ok(c)
    });
    result
        .map_err(|e| report.fail(format!("busy queue subscriber {id}: {e}")))
        .ok()
}

// ------------------------------------------------------------------------------------------
// Attacks
// ------------------------------------------------------------------------------------------

/// Random bytes on many connections, half of them after a valid CONNECT: each must be closed.
fn garbage(addr: SocketAddr, report: &Report) {
    thread::scope(|s| {
        for t in 0..8u64 {
            s.spawn(move || {
                let mut rng = Rng(0x5EED_0000 + t * 7919 + 1);
                for i in 0..13 {
                    let after_connect = i % 2 == 1;
                    let mut stream = raw(addr);
                    if after_connect {
                        let _ = stream.write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0");
                    }
                    let len = 1024 + (rng.next() % (63 * 1024)) as usize;
                    // Ends with EOL: a complete (invalid) line, whatever came before.
                    let mut bytes = rng.bytes(len);
                    bytes.push(b'\n');
                    let _ = stream.write_all(&bytes);
                    if !wait_closed(&mut stream, CONNECT_TIMEOUT + Duration::from_secs(3)) {
                        report.fail(format!(
                            "garbage: a connection sent {len} random bytes (after CONNECT: \
                             {after_connect}) and was still open after {:?}",
                            CONNECT_TIMEOUT + Duration::from_secs(3)
                        ));
                    }
                }
            });
        }
    });
}

/// Half a CONNECT then silence, and CONNECTs trickled a byte at a time: all closed at the
/// connect timeout, not before.
fn slowloris(addr: SocketAddr, report: &Report) {
    const SILENT: usize = 200;
    const TRICKLE: usize = 20;
    let mut conns: Vec<(TcpStream, Instant, bool, Option<Duration>)> = Vec::new();
    for i in 0..SILENT + TRICKLE {
        let mut s = raw(addr);
        let opened = Instant::now();
        let trickle = i >= SILENT;
        if !trickle {
            let _ = s.write_all(b"CONNECT\naccept-version:1.2\nhost:lo");
        }
        s.set_nonblocking(true).expect("nonblocking");
        conns.push((s, opened, trickle, None));
    }
    let trickle_bytes =
        b"CONNECT\naccept-version:1.2\nx-slow:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let deadline = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(4);
    let mut tick = 0usize;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && conns.iter().any(|c| c.3.is_none()) {
        for (s, opened, trickle, closed) in conns.iter_mut().filter(|c| c.3.is_none()) {
            if *trickle && tick.is_multiple_of(5) {
                let b = trickle_bytes[(tick / 5).min(trickle_bytes.len() - 1)];
                if let Err(e) = s.write(&[b]) {
                    if e.kind() != ErrorKind::WouldBlock {
                        *closed = Some(opened.elapsed());
                        continue;
                    }
                }
            }
            match s.read(&mut buf) {
                Ok(0) => *closed = Some(opened.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *closed = Some(opened.elapsed()),
            }
        }
        tick += 1;
        thread::sleep(Duration::from_millis(20));
    }
    let mut early = 0;
    let mut open = 0;
    let mut latest = Duration::ZERO;
    for (_, _, trickle, closed) in &conns {
        match closed {
            None => open += 1,
            Some(d) if *d < CONNECT_TIMEOUT.mul_f64(0.8) => {
                early += 1;
                report.fail(format!(
                    "slowloris: a connection (trickle: {trickle}) was closed after {d:?}, \
                     before the connect timeout {CONNECT_TIMEOUT:?}"
                ));
            }
            Some(d) => latest = latest.max(*d),
        }
    }
    eprintln!(
        "slowloris: {} connections, {open} still open, {early} closed early, last closed at \
         {latest:?}",
        conns.len()
    );
    if open > 0 {
        report.fail(format!(
            "slowloris: {open} of {} connections that never completed CONNECT were still open \
             {:?} after they were opened (connect timeout {CONNECT_TIMEOUT:?})",
            conns.len(),
            CONNECT_TIMEOUT + Duration::from_secs(4)
        ));
    }
}

/// Writes `head` then `a`s in 64 KiB chunks until the broker answers (ERROR or close; it may
/// go on reading and discarding for a moment after its ERROR, so later writes can still
/// succeed), the write fails, or `cap` bytes. Returns the bytes written when the first answer
/// was seen (`None`: no answer) and whether the connection was then closed within a few seconds.
fn endless(mut s: TcpStream, head: &[u8], cap: usize) -> (usize, Option<usize>, bool) {
    s.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    s.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("read timeout");
    let mut written = 0;
    let mut answered = None;
    let mut buf = [0u8; 4096];
    if s.write_all(head).is_ok() {
        written += head.len();
        let chunk = vec![b'a'; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(5);
        while written < cap && Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(_) => {
                    answered = Some(written);
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    answered = Some(written);
                    break;
                }
            }
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => {
                    answered = Some(written);
                    break;
                }
            }
        }
    }
    let closed = wait_closed(&mut s, CONNECT_TIMEOUT + Duration::from_secs(3));
    (written, answered, closed)
}

/// Endless header line (after CONNECT) and endless command line (before): answered (ERROR or
/// close) after at most a few MiB (the limit is 16 KiB; the rest is socket buffers), then
/// closed.
fn endless_lines(addr: SocketAddr, report: &Report) {
    const CAP: usize = 64 * 1024 * 1024;
    const BOUND: usize = 8 * 1024 * 1024;
    thread::scope(|sc| {
        for i in 0..10 {
            sc.spawn(move || {
                let mut s = raw(addr);
                let head: &[u8] = if i % 2 == 0 {
                    let _ = s.write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0");
                    // Consume CONNECTED (up to its NUL), so any later byte is an answer.
                    s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
                    let mut b = [0u8; 1];
                    while matches!(s.read(&mut b), Ok(1)) && b[0] != 0 {}
                    b"SEND\ndestination:/queue/endless\nx-endless:"
                } else {
                    b"CONNECT"
                };
                let what = if i % 2 == 0 {
                    "header line"
                } else {
                    "command line"
                };
                let (written, answered, closed) = endless(s, head, CAP);
                if answered.is_none_or(|a| a >= BOUND) || !closed {
                    report.fail(format!(
                        "endless {what}: wrote {written} bytes, first answer (ERROR or close) \
                         after {answered:?} bytes, closed: {closed} (the header line limit is \
                         16 KiB)"
                    ));
                }
            });
        }
    });
}

/// `content-length`s far over the body limit, and ones that overflow: ERROR and close, without
/// allocating (the RSS monitor watches).
fn huge_content_length(addr: SocketAddr, report: &Report) {
    const LENGTHS: [&str; 5] = [
        "2000000",
        "1099511627776",
        "18446744073709551615",
        "99999999999999999999999999999",
        "9223372036854775807",
    ];
    thread::scope(|sc| {
        for t in 0..5 {
            sc.spawn(move || {
                for i in 0..10 {
                    let len = LENGTHS[(t + i) % LENGTHS.len()];
                    let mut c = match Client::try_connect_v12(addr, TIMEOUT) {
                        Ok(c) => c,
                        Err(e) => {
                            report.fail(format!("huge content-length: CONNECT failed: {e}"));
                            continue;
                        }
                    };
                    let mut bytes =
                        format!("SEND\ndestination:/queue/huge\ncontent-length:{len}\n\n")
                            .into_bytes();
                    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
                    let _ = c.try_send_raw(&bytes);
                    match c.recv(Duration::from_secs(3)) {
                        Some(f) if f.command == Command::Error => {}
                        Some(f) => report.fail(format!(
                            "huge content-length {len}: expected ERROR, got {}",
                            describe(&f)
                        )),
                        None => report.fail(format!(
                            "huge content-length {len}: no ERROR within 3 s (closed: {})",
                            c.saw_close()
                        )),
                    }
                    if !c.is_closed(Duration::from_secs(3)) {
                        report.fail(format!(
                            "huge content-length {len}: connection still open 3 s after ERROR"
                        ));
                    }
                }
            });
        }
    });
}

/// SENDs with receipts, written as fast as possible by a client that never reads: the broker
/// must stop reading it (our writes block) or close it, after a bounded amount of input.
///
/// `receipt_len`: length of each receipt id. Long ids make every RECEIPT big, so the replies
/// fill the socket buffers and the broker's outbox after a few MiB of input; short ones make
/// the flood many small frames (the most work per byte for the broker).
fn flood(addr: SocketAddr, report: &Report, i: usize, receipt_len: usize) {
    const BOUND: usize = 128 * 1024 * 1024;
    let mut s = raw(addr);
    if s.write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")
        .is_err()
    {
        report.fail(format!("flood {i}: CONNECT write failed"));
        return;
    }
    s.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("write timeout");
    let dest = format!("/topic/flood-{i}");
    let body = [b'f'; 100];
    let pad = "r".repeat(receipt_len.saturating_sub(12));
    // One batch of 256 KiB of frames, written again and again (receipt ids repeat: the broker
    // does not care, and the client spends no CPU building frames).
    let mut batch = Vec::with_capacity(260 * 1024);
    let mut frames = 0u64;
    while batch.len() < 256 * 1024 {
        frames += 1;
        batch.extend(frame_bytes(
            "SEND",
            &[
                ("destination", &dest),
                ("receipt", &format!("{pad}{frames:012}")),
            ],
            &body,
        ));
    }
    let mut n = 0u64;
    let mut written = 0usize;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(8);
    let mut blocked_at: Option<Duration> = None;
    let outcome = loop {
        if written >= BOUND {
            break "never blocked";
        }
        if Instant::now() > deadline {
            break if blocked_at.is_some() {
                "blocked"
            } else {
                "neither blocked nor closed"
            };
        }
        if blocked_at.is_some_and(|b| start.elapsed() > b + WRITE_TIMEOUT + Duration::from_secs(2))
        {
            break "blocked";
        }
        n += frames;
        let mut off = 0;
        let mut closed = false;
        while off < batch.len() {
            match s.write(&batch[off..]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(k) => {
                    off += k;
                    written += k;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // Not read for a second: the broker stopped reading. Go on trying (bounded)
                    // to see whether it closes us after its write timeout.
                    blocked_at.get_or_insert(start.elapsed());
                    break;
                }
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break "closed";
        }
    };
    eprintln!(
        "flood {i} (receipt ids of {receipt_len} bytes): {outcome} after {written} bytes (~{n} \
         frames) in {:?}; first blocked at {blocked_at:?}",
        start.elapsed()
    );
    if outcome == "never blocked" {
        report.fail(format!(
            "flood {i}: the broker kept reading SENDs with receipts from a client that never \
             reads: {written} bytes in {:?} and it still reads",
            start.elapsed()
        ));
    }
    if receipt_len > 100 && outcome == "neither blocked nor closed" {
        report.fail(format!(
            "flood {i}: a client sending SENDs with {receipt_len}-byte receipt ids and never \
             reading was neither stopped nor closed after {written} bytes in {:?}",
            start.elapsed()
        ));
    }
}

/// A subscriber of a busy queue that never reads must not stall the other consumer of that
/// queue, and is disconnected after the write timeout; the messages it held and never got
/// written come back to the queue.
///
/// The messages are big (512 KiB, 120 MiB in all) so that the non-reading subscriber's share
/// overflows the socket buffers (Linux loopback buffers several tens of MiB for a socket that is
/// not read) and its outbox stays full.
fn non_reading_subscriber(addr: SocketAddr, report: &Report) {
    const MESSAGES: usize = 240;
    const SIZE: usize = 512 * 1024;
    let Some(mut slow) = subscriber(addr, "slow", report) else {
        return;
    };
    let slow_since = Instant::now();

    let producing = AtomicBool::new(true);
    let stop = AtomicBool::new(false);
    let good = thread::scope(|sc| {
        let good = sc.spawn(|| {
            let mut seen = Vec::new();
            let Some(mut c) = subscriber(addr, "good", report) else {
                return (seen, Duration::ZERO);
            };
            let mut last = Instant::now();
            let mut max_gap = Duration::ZERO;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let got = c.recv(Duration::from_millis(50));
                if producing.load(Ordering::SeqCst) {
                    max_gap = max_gap.max(last.elapsed());
                }
                match got {
                    Some(m) if m.command == Command::Message => {
                        seen.push(m.get("i").and_then(|v| v.parse::<usize>().ok()));
                        last = Instant::now();
                    }
                    Some(f) => {
                        report.fail(format!("busy queue consumer: unexpected {}", describe(&f)));
                        break;
                    }
                    None if c.saw_close() => {
                        report.fail("busy queue consumer: connection closed".to_owned());
                        break;
                    }
                    None => {}
                }
            }
            (seen, max_gap)
        });
        // Give the good consumer time to subscribe.
        thread::sleep(Duration::from_millis(200));
        let mut p = Client::try_connect_v12(addr, TIMEOUT);
        if let Err(e) = &p {
            report.fail(format!("busy queue producer: {e}"));
        }
        let body = vec![b'b'; SIZE];
        let start = Instant::now();
        for i in 0..MESSAGES {
            let Ok(p) = &mut p else { break };
            let f = send_frame("/queue/busy", &body, &[("i", &i.to_string())]);
            if i % 10 == 9 {
                let sent = Instant::now();
                let id = format!("busy-{i}");
                let answer = p
                    .try_send(&f.with_header("receipt", id.as_str()))
                    .map_err(|e| format!("writing SEND {i}: {e}"))
                    .and_then(|()| p.try_wait_receipt(&id, TIMEOUT));
                if let Err(e) = answer {
                    report.fail(format!("busy queue producer: {e}"));
                    break;
                }
                if sent.elapsed() > ROUND_TRIP_LIMIT {
                    report.fail(format!(
                        "busy queue producer: RECEIPT {id} took {:?}",
                        sent.elapsed()
                    ));
                }
            } else if let Err(e) = p.try_send(&f) {
                report.fail(format!("busy queue producer: writing SEND {i}: {e}"));
                break;
            }
        }
        eprintln!("busy queue: {MESSAGES} sent in {:?}", start.elapsed());
        thread::sleep(Duration::from_millis(300));
        producing.store(false, Ordering::SeqCst);
        // Still not reading until the write timeout has surely passed; the good consumer goes on
        // and gets what comes back from the slow one.
        let until = slow_since + WRITE_TIMEOUT + Duration::from_millis(2500);
        thread::sleep(until.saturating_duration_since(Instant::now()));
        if !slow.is_closed(Duration::from_secs(3)) {
            report.fail(format!(
                "busy queue: the subscriber that never read was not disconnected within {:?} \
                 (write timeout {WRITE_TIMEOUT:?})",
                slow_since.elapsed()
            ));
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        good.join().expect("good consumer panicked")
    });
    let (good_seen, max_gap) = good;
    // What reached the slow subscriber's socket before it was closed.
    let mut slow_seen = Vec::new();
    while let Some(m) = slow.recv(Duration::from_millis(10)) {
        if m.command == Command::Message {
            slow_seen.push(m.get("i").and_then(|v| v.parse::<usize>().ok()));
        }
    }
    let mut count = vec![0u32; MESSAGES];
    for i in good_seen.iter().chain(&slow_seen).flatten() {
        if let Some(c) = count.get_mut(*i) {
            *c += 1;
        }
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|&i| count[i] == 0).collect();
    let doubled = count.iter().filter(|&&c| c > 1).count();
    eprintln!(
        "busy queue: the reading consumer got {}, the one that never read {} (complete frames \
         in its socket), longest gap while producing {max_gap:?}; {} missing, {doubled} twice",
        good_seen.len(),
        slow_seen.len(),
        missing.len()
    );
    if max_gap > Duration::from_secs(1) {
        report.fail(format!(
            "busy queue: the reading consumer waited {max_gap:?} for a message while the other \
             consumer did not read (write timeout {WRITE_TIMEOUT:?})"
        ));
    }
    if good_seen.len() < MESSAGES / 2 {
        report.fail(format!(
            "busy queue: the reading consumer got only {} of {MESSAGES} messages",
            good_seen.len()
        ));
    }
    if !missing.is_empty() {
        report.fail(format!(
            "busy queue: {} message(s) reached neither consumer (held by the subscriber that \
             never read and not returned to the queue when it was disconnected), e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
}

/// Many connections opening and closing rapidly; half of them complete a CONNECT first.
fn churn(addr: SocketAddr, report: &Report) {
    const PER_THREAD: usize = 500;
    let start = Instant::now();
    thread::scope(|sc| {
        for t in 0..4 {
            sc.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for i in 0..PER_THREAD {
                    if Instant::now() > deadline {
                        report.fail(format!(
                            "churn: thread {t} did only {i} of {PER_THREAD} connections in 20 s"
                        ));
                        return;
                    }
                    if i % 2 == 0 {
                        match TcpStream::connect_timeout(&addr, TIMEOUT) {
                            Ok(s) => drop(s),
                            Err(e) => report.fail(format!("churn: TCP connect failed: {e}")),
                        }
                    } else if let Err(e) = Client::try_connect_v12(addr, TIMEOUT) {
                        report.fail(format!("churn: CONNECT {i} failed: {e}"));
                    }
                }
            });
        }
    });
    eprintln!(
        "churn: {} connections in {:?}",
        4 * PER_THREAD,
        start.elapsed()
    );
}

#[test]
fn broker_stays_responsive_and_bounded_under_hostile_clients() {
    let test_start = Instant::now();
    let mut broker = Broker::builder()
        .config(config())
        .log_level(Some("info"))
        .start();
    let addr = broker.addr();

    // Stored before the attacks, checked after.
    let mut p = Client::connect_v12(addr);
    for i in 0..STORED {
        p.send_to_sync(
            "/queue/stored",
            format!("stored {i}").as_bytes(),
            &[("i", &i.to_string())],
        );
    }
    p.disconnect();

    let report = Report::default();
    let stop = AtomicBool::new(false);
    let max_rss = AtomicU64::new(0);
    let pid = broker.pid();
    let trips = thread::scope(|sc| {
        // If an attack panics, the helper threads still stop (they end the scope).
        let _stop = StopOnDrop(&stop);
        let wb = sc.spawn(|| well_behaved(addr, &stop, &report));
        sc.spawn(|| monitor_rss(pid, &stop, &max_rss));

        let t = Instant::now();
        report.set_phase("garbage, slowloris, endless lines, huge content-length");
        thread::scope(|inner| {
            inner.spawn(|| garbage(addr, &report));
            inner.spawn(|| slowloris(addr, &report));
            inner.spawn(|| endless_lines(addr, &report));
            inner.spawn(|| huge_content_length(addr, &report));
        });
        eprintln!("phase 1 took {:?}", t.elapsed());

        let t = Instant::now();
        report.set_phase("floods and a subscriber that never reads");
        thread::scope(|inner| {
            // Two floods of small frames (the most work per byte), one of frames with long
            // receipt ids (replies fill every buffer after a few MiB).
            for (i, receipt_len) in [(0, 12), (1, 12), (2, 1000)] {
                let report = &report;
                inner.spawn(move || flood(addr, report, i, receipt_len));
            }
            inner.spawn(|| non_reading_subscriber(addr, &report));
        });
        eprintln!("phase 2 took {:?}", t.elapsed());

        let t = Instant::now();
        report.set_phase("connection churn");
        churn(addr, &report);
        eprintln!("phase 3 took {:?}", t.elapsed());

        report.set_phase("checks");
        stop.store(true, Ordering::SeqCst);
        wb.join().expect("well-behaved client panicked")
    });
    eprintln!(
        "well-behaved client: {} round trips, slowest {:?}; broker max RSS {} KiB",
        trips.count,
        trips.max,
        max_rss.load(Ordering::SeqCst)
    );

    let mut failures = report.failures.lock().unwrap().clone();
    if !broker.is_running() {
        failures.push("the broker process is not running any more".to_owned());
    } else {
        // The stored messages are intact, and a fresh client works.
        let mut c = Client::connect_v12(addr);
        c.assert_round_trip("after-the-attacks");
        c.subscribe_sync("stored", "/queue/stored", "client-individual");
        let msgs = c.recv_messages(STORED, TIMEOUT);
        for (i, m) in msgs.iter().enumerate() {
            if m.body[..] != *format!("stored {i}").as_bytes()
                || m.get("i") != Some(i.to_string().as_str())
            {
                failures.push(format!("stored message {i} changed: {}", describe(m)));
            }
        }
        if msgs.len() != STORED {
            failures.push(format!(
                "only {} of {STORED} stored messages were delivered after the attacks",
                msgs.len()
            ));
        }
        c.disconnect();
    }
    let max_rss = max_rss.load(Ordering::SeqCst);
    if max_rss == 0 {
        failures.push("could not read the broker's VmRSS".to_owned());
    }
    if max_rss > RSS_LIMIT_KIB {
        failures.push(format!(
            "broker RSS reached {max_rss} KiB (limit {RSS_LIMIT_KIB} KiB)"
        ));
    }
    let log = broker.full_log();
    if log.contains("panicked") {
        failures.push("the broker log contains \"panicked\"".to_owned());
    }
    eprintln!("total {:?}", test_start.elapsed());
    if !failures.is_empty() {
        failures.truncate(40);
        panic!("{} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
}
