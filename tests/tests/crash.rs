//! Crash safety of persistent queues (issue 4, item 6), against the real binary: producers with
//! receipts and consumers with `client-individual` acks run while the broker is killed with
//! SIGKILL at random moments and restarted on the same data directory; then the queue is drained
//! and the promises of the README checked:
//!
//! - a SEND that got its RECEIPT is on disk: it is delivered (again) until an ACK is sent for it;
//! - an ACK that got its RECEIPT is on disk: that message is never delivered again;
//! - an ACK without its RECEIPT may be lost in a crash: the message then comes back once more,
//!   marked `redelivered:true` (the documented window); no other duplicates exist;
//! - messages of one producer (same priority) arrive in the order they were sent.
//!
//! Also: a clean restart (SIGTERM), a journal torn by a kill in the middle of a stream, a second
//! broker on a data directory in use, and transactions cut by a crash.
//!
//! The random moments come from a seeded xorshift generator; the seed is printed, and
//! `STOMPD_CRASH_SEED=N` replays it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{describe, send_frame, Broker, CliOutput, Client, QUIET, TIMEOUT};

// ------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------

/// xorshift64*: a tiny deterministic generator, enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (hi > lo).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The seed of this run: `STOMPD_CRASH_SEED` if set, else from the clock. Printed so that a
/// failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("STOMPD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: seed {seed} (replay with STOMPD_CRASH_SEED={seed})");
    seed
}

/// The body of message `seq` of `producer`: a readable prefix, then binary filler (NULs
/// included) of a length that varies with the message, so records of many sizes are journaled.
fn body_of(producer: u32, seq: u64) -> Vec<u8> {
    let mut body = format!("p{producer}-s{seq}:").into_bytes();
    let len = ((seq.wrapping_mul(7919) + u64::from(producer) * 131) % 1500) as usize;
    body.extend((0..len).map(|i| (i as u64 ^ seq ^ u64::from(producer)) as u8));
    body
}

fn ack_frame(m: &Frame) -> Frame {
    let id = m
        .get("ack")
        .unwrap_or_else(|| panic!("MESSAGE without `ack` header: {}", describe(m)));
    Frame::new(Command::Ack).with_header("id", id)
}

fn prefetch_subscribe(id: &str, dest: &str, prefetch: usize) -> Frame {
    Frame::new(Command::Subscribe)
        .with_header("id", id)
        .with_header("destination", dest)
        .with_header("ack", "client-individual")
        .with_header("prefetch-count", prefetch.to_string())
}

/// Drains `dest` on a fresh connection: every message is acked with a receipt; stops when
/// nothing arrives for `QUIET` (or after `limit` messages). Returns the messages in arrival order.
fn drain(broker: &Broker, dest: &str, limit: usize) -> Vec<Frame> {
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(prefetch_subscribe("drain", dest, 1000));
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < limit && Instant::now() < deadline {
        match c.recv(QUIET) {
            Some(m) if m.command == Command::Message => {
                c.send(&ack_frame(&m).with_header("receipt", format!("drain-{}", out.len())));
                out.push(m);
            }
            Some(f) if f.command == Command::Receipt => {}
            Some(f) => panic!("draining {dest}: unexpected {}", describe(&f)),
            None => break,
        }
    }
    // Every ACK is durable before we say the queue is drained.
    c.disconnect();
    out
}

fn header_u64(m: &Frame, name: &str) -> u64 {
    m.get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MESSAGE without numeric `{name}`: {}", describe(m)))
}

// ------------------------------------------------------------------------------------------
// Producers and consumers under repeated kill -9
// ------------------------------------------------------------------------------------------

const CRASH_QUEUE: &str = "/queue/crash";
const PRODUCERS: u32 = 4;
const CONSUMERS: u32 = 2;
/// SENDs with receipts a producer keeps in flight.
const WINDOW: usize = 4;
const PREFETCH: usize = 32;
const KILLS: u32 = 4;
/// Producers pause while the SENDs of all producers exceed the MESSAGEs of all consumers by
/// this much: on a fast disk producers outrun the acking consumers, and an unbounded backlog
/// would only test how fast the final drain is.
const MAX_BACKLOG: u64 = 5_000;

/// What the test threads share: the current broker address and its run number, stop flags,
/// and failures seen by the threads (they never panic; the main thread asserts).
struct Shared {
    /// The run number and the address of the running broker; `None` while it is down (so no
    /// client connects to an old address that a new run might have been given).
    addr: Mutex<(u32, Option<SocketAddr>)>,
    stop_producing: AtomicBool,
    stop_consuming: AtomicBool,
    /// Milliseconds since `start` of the last MESSAGE any consumer received.
    last_message_ms: AtomicU64,
    /// SENDs written by all producers, MESSAGEs received by all consumers.
    sends: AtomicU64,
    received: AtomicU64,
    start: Instant,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn current(&self) -> Option<(u32, SocketAddr)> {
        let (run, addr) = *self.addr.lock().unwrap();
        addr.map(|a| (run, a))
    }

    fn fail(&self, what: String) {
        eprintln!("FAILURE: {what}");
        self.failures.lock().unwrap().push(what);
    }
}

/// One SEND of a producer.
struct Sent {
    seq: u64,
    run: u32,
    receipted: bool,
}

fn producer(shared: Arc<Shared>, id: u32) -> Vec<Sent> {
    let mut sent: Vec<Sent> = Vec::new();
    let mut seq = 0u64;
    let mut receipt_no = 0u64;
    'connect: loop {
        if shared.stop_producing.load(Ordering::SeqCst) {
            return sent;
        }
        let Some((run, addr)) = shared.current() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut c = match Client::try_connect_v12(addr, Duration::from_secs(2)) {
            Ok(c) => c,
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        // receipt id -> index in `sent`
        let mut outstanding: HashMap<String, usize> = HashMap::new();
        let mut stopping_since: Option<Instant> = None;
        loop {
            let stopping = shared.stop_producing.load(Ordering::SeqCst);
            if stopping {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if outstanding.is_empty() {
                    let _ = c.try_send(&Frame::new(Command::Disconnect));
                    return sent;
                }
                if since.elapsed() > TIMEOUT {
                    shared.fail(format!(
                        "producer {id}: {} SEND receipts still missing {TIMEOUT:?} after the \
                         last restart's load stopped",
                        outstanding.len()
                    ));
                    return sent;
                }
            }
            let backlog = shared
                .sends
                .load(Ordering::SeqCst)
                .saturating_sub(shared.received.load(Ordering::SeqCst));
            if backlog > MAX_BACKLOG && !stopping {
                // Let the consumers catch up (receipts still arrive below).
                thread::sleep(Duration::from_millis(2));
            }
            while !stopping && backlog <= MAX_BACKLOG && outstanding.len() < WINDOW {
                receipt_no += 1;
                let rid = format!("p{id}-r{receipt_no}");
                let f = send_frame(
                    CRASH_QUEUE,
                    &body_of(id, seq),
                    &[
                        ("producer", &id.to_string()),
                        ("seq", &seq.to_string()),
                        ("receipt", &rid),
                    ],
                );
                sent.push(Sent {
                    seq,
                    run,
                    receipted: false,
                });
                seq += 1;
                shared.sends.fetch_add(1, Ordering::SeqCst);
                if c.try_send(&f).is_err() {
                    continue 'connect;
                }
                outstanding.insert(rid, sent.len() - 1);
            }
            match c.recv(Duration::from_millis(500)) {
                Some(f) if f.command == Command::Receipt => {
                    let rid = f.get("receipt-id").unwrap_or_default();
                    match outstanding.remove(rid) {
                        Some(i) => sent[i].receipted = true,
                        None => shared.fail(format!(
                            "producer {id}: RECEIPT for an unknown receipt id: {}",
                            describe(&f)
                        )),
                    }
                }
                Some(f) => {
                    shared.fail(format!(
                        "producer {id} (run {run}): unexpected {}",
                        describe(&f)
                    ));
                    continue 'connect;
                }
                None if c.saw_close() => continue 'connect,
                None => {}
            }
        }
    }
}

/// One MESSAGE a consumer received.
#[derive(Clone, Debug)]
struct Delivery {
    producer: u32,
    seq: u64,
    run: u32,
    /// Consumer connection: unique over the whole test.
    conn: u64,
    at: Instant,
    redelivered: bool,
    ack_sent: bool,
    ack_receipted_at: Option<Instant>,
}

fn check_message(m: &Frame) -> Result<(u32, u64), String> {
    let producer = m
        .get("producer")
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| format!("MESSAGE without producer header: {}", describe(m)))?;
    let seq = m
        .get("seq")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| format!("MESSAGE without seq header: {}", describe(m)))?;
    if m.get("destination") != Some(CRASH_QUEUE) {
        return Err(format!("MESSAGE with wrong destination: {}", describe(m)));
    }
    if m.body[..] != body_of(producer, seq)[..] {
        return Err(format!(
            "MESSAGE p{producer} s{seq}: body differs from what was sent ({} bytes received, {} \
             sent): {}",
            m.body.len(),
            body_of(producer, seq).len(),
            describe(m)
        ));
    }
    Ok((producer, seq))
}

fn consumer(shared: Arc<Shared>, id: u32, seed: u64) -> Vec<Delivery> {
    let mut rng = Rng::new(seed ^ ((u64::from(id) + 1) * 0x9E37_79B9));
    let mut deliveries: Vec<Delivery> = Vec::new();
    let mut conn_no = 0u64;
    let mut receipt_no = 0u64;
    'connect: loop {
        if shared.stop_consuming.load(Ordering::SeqCst) {
            return deliveries;
        }
        let Some((run, addr)) = shared.current() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut c = match Client::try_connect_v12(addr, Duration::from_secs(2)) {
            Ok(c) => c,
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        conn_no += 1;
        let conn = u64::from(id) * 1_000_000 + conn_no;
        receipt_no += 1;
        let sub_rid = format!("c{id}-sub{receipt_no}");
        if c.try_send(
            &prefetch_subscribe("s", CRASH_QUEUE, PREFETCH)
                .with_header("receipt", sub_rid.as_str()),
        )
        .is_err()
        {
            continue;
        }
        // receipt id -> index in `deliveries`
        let mut acks_out: HashMap<String, usize> = HashMap::new();
        // delivered, not acked yet (acked in small random batches)
        let mut to_ack: Vec<(usize, Frame)> = Vec::new();
        let mut batch = rng.range(1, 8) as usize;
        let mut stopping_since: Option<Instant> = None;
        loop {
            if shared.stop_consuming.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if acks_out.is_empty() && to_ack.is_empty() {
                    let _ = c.try_send(&Frame::new(Command::Disconnect));
                    return deliveries;
                }
                if since.elapsed() > TIMEOUT {
                    shared.fail(format!(
                        "consumer {id}: {} ACK receipts still missing {TIMEOUT:?} after the drain",
                        acks_out.len()
                    ));
                    return deliveries;
                }
            }
            let got = c.recv(Duration::from_millis(50));
            let now = Instant::now();
            let idle = got.is_none();
            match got {
                Some(m) if m.command == Command::Message => {
                    shared
                        .last_message_ms
                        .store(shared.start.elapsed().as_millis() as u64, Ordering::SeqCst);
                    shared.received.fetch_add(1, Ordering::SeqCst);
                    match check_message(&m) {
                        Ok((producer, seq)) => {
                            deliveries.push(Delivery {
                                producer,
                                seq,
                                run,
                                conn,
                                at: now,
                                redelivered: m.get("redelivered") == Some("true"),
                                ack_sent: false,
                                ack_receipted_at: None,
                            });
                            to_ack.push((deliveries.len() - 1, m));
                        }
                        Err(e) => shared.fail(format!("consumer {id} (run {run}): {e}")),
                    }
                }
                Some(f) if f.command == Command::Receipt => {
                    let rid = f.get("receipt-id").unwrap_or_default();
                    if rid == sub_rid {
                        continue;
                    }
                    match acks_out.remove(rid) {
                        Some(i) => deliveries[i].ack_receipted_at = Some(now),
                        None => shared.fail(format!(
                            "consumer {id}: RECEIPT for an unknown receipt id: {}",
                            describe(&f)
                        )),
                    }
                }
                Some(f) => {
                    shared.fail(format!(
                        "consumer {id} (run {run}): unexpected {}",
                        describe(&f)
                    ));
                    continue 'connect;
                }
                None if c.saw_close() => continue 'connect,
                None => {}
            }
            if to_ack.len() >= batch || (idle && !to_ack.is_empty()) {
                for (i, m) in to_ack.drain(..) {
                    receipt_no += 1;
                    let rid = format!("c{id}-a{receipt_no}");
                    if c.try_send(&ack_frame(&m).with_header("receipt", rid.as_str()))
                        .is_err()
                    {
                        continue 'connect;
                    }
                    deliveries[i].ack_sent = true;
                    acks_out.insert(rid, i);
                }
                batch = rng.range(1, 8) as usize;
                // Now and then a slow spell, so that a backlog builds up and kills find
                // delivered, unacked messages.
                if rng.range(0, 10) == 0 && !shared.stop_consuming.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(rng.range(20, 250)));
                }
            }
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_receipted_message_and_resurrects_no_receipted_ack() {
    let seed = seed("kill_9_at_random_moments");
    let mut rng = Rng::new(seed);
    let test_start = Instant::now();
    let mut broker = Broker::builder().log_level(Some("info")).start();
    let shared = Arc::new(Shared {
        addr: Mutex::new((0, Some(broker.addr()))),
        stop_producing: AtomicBool::new(false),
        stop_consuming: AtomicBool::new(false),
        last_message_ms: AtomicU64::new(0),
        sends: AtomicU64::new(0),
        received: AtomicU64::new(0),
        start: Instant::now(),
        failures: Mutex::new(Vec::new()),
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let shared = shared.clone();
            thread::spawn(move || producer(shared, id))
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|id| {
            let shared = shared.clone();
            thread::spawn(move || consumer(shared, id, seed))
        })
        .collect();

    let mut restart_times = Vec::new();
    for run in 1..=KILLS {
        let wait = rng.range(700, 2500);
        thread::sleep(Duration::from_millis(wait));
        *shared.addr.lock().unwrap() = (run, None);
        broker.kill9();
        let t = Instant::now();
        broker.restart();
        restart_times.push(t.elapsed());
        *shared.addr.lock().unwrap() = (run, Some(broker.addr()));
        eprintln!(
            "kill {run}: after {wait} ms; restarted in {:?}",
            t.elapsed()
        );
    }
    // The last run: some more load, then stop the producers and drain.
    thread::sleep(Duration::from_millis(1000));
    shared.stop_producing.store(true, Ordering::SeqCst);
    let sent: Vec<Vec<Sent>> = producers
        .into_iter()
        .map(|h| h.join().expect("producer thread panicked"))
        .collect();
    // Consumers go on until nothing arrived for a while (bounded).
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    // Whether the consumers went quiet (a stall) rather than running out of time while still
    // receiving (a slow machine): only the first makes leftover messages a failure.
    let went_idle = loop {
        let last = Duration::from_millis(shared.last_message_ms.load(Ordering::SeqCst));
        if shared.start.elapsed().saturating_sub(last) > Duration::from_millis(1000) {
            break true;
        }
        if Instant::now() > drain_deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(50));
    };
    shared.stop_consuming.store(true, Ordering::SeqCst);
    let deliveries: Vec<Delivery> = consumers
        .into_iter()
        .flat_map(|h| h.join().expect("consumer thread panicked"))
        .collect();

    // Nothing is left in the queue.
    // Nothing is left in the queue: a fresh consumer gets nothing. (Whatever it does get is
    // counted as delivered, so a message that was only stuck is told apart from a lost one.)
    let drained_at = Instant::now();
    let left = drain(&broker, CRASH_QUEUE, 1_000_000);
    let left_keys: Vec<(u32, u64)> = left.iter().filter_map(|m| check_message(m).ok()).collect();
    let left: Vec<String> = left.iter().map(describe).collect();

    // ----- analysis -----
    let mut failures = shared.failures.lock().unwrap().clone();
    if !left.is_empty() && !went_idle {
        eprintln!(
            "drain deadline reached with the consumers still receiving; the final drain took \
             the remaining {} message(s) (counted as delivered)",
            left.len()
        );
    }
    if !left.is_empty() && went_idle {
        failures.push(format!(
            "STUCK: {} message(s) still in the queue after the consumers had been idle for 1 s \
             (the consumers got nothing more while these were ready; first: {})",
            left.len(),
            left[0]
        ));
    }
    let late: Vec<Delivery> = left_keys
        .iter()
        .map(|&(producer, seq)| Delivery {
            producer,
            seq,
            run: KILLS,
            conn: u64::MAX,
            at: drained_at,
            redelivered: true,
            ack_sent: true,
            ack_receipted_at: None,
        })
        .collect();
    let mut by_key: BTreeMap<(u32, u64), Vec<&Delivery>> = BTreeMap::new();
    for d in deliveries.iter().chain(&late) {
        by_key.entry((d.producer, d.seq)).or_default().push(d);
    }
    // Order by run, then by when it was read: a consumer may still read frames its dead broker
    // had written into the socket after a consumer of the next run got the same message.
    for ds in by_key.values_mut() {
        ds.sort_by_key(|d| (d.run, d.at));
    }
    let mut send_run: HashMap<(u32, u64), u32> = HashMap::new();
    let mut receipted = 0usize;
    let mut unknown = 0usize;
    for (p, list) in sent.iter().enumerate() {
        for s in list {
            send_run.insert((p as u32, s.seq), s.run);
            if s.receipted {
                receipted += 1;
            } else {
                unknown += 1;
            }
        }
    }
    // Every receipted SEND is delivered, and its last delivery was acked (a delivery cut by a
    // crash before its ACK must come back).
    for (p, list) in sent.iter().enumerate() {
        for s in list.iter().filter(|s| s.receipted) {
            match by_key.get(&(p as u32, s.seq)) {
                None => failures.push(format!(
                    "LOST: p{p} s{} (sent in run {}) got its RECEIPT but was never delivered",
                    s.seq, s.run
                )),
                Some(ds) => {
                    let last = ds.last().unwrap();
                    if !last.ack_sent {
                        failures.push(format!(
                            "LOST: p{p} s{} (receipted) was last delivered in run {} and not \
                             acked, and never came back",
                            s.seq, last.run
                        ));
                    }
                }
            }
        }
    }
    let mut duplicates = 0usize;
    for (&(p, seq), ds) in &by_key {
        if !send_run.contains_key(&(p, seq)) {
            failures.push(format!("PHANTOM: p{p} s{seq} delivered but never sent"));
            continue;
        }
        // No delivery after an ACK that got its RECEIPT.
        if let Some(t_ack) = ds
            .iter()
            .filter_map(|d| d.ack_receipted_at.map(|t| (d.run, t)))
            .min()
        {
            for d in ds.iter().filter(|d| (d.run, d.at) > t_ack) {
                failures.push(format!(
                    "ACKED CAME BACK: p{p} s{seq} delivered again in run {} (redelivered: {}) \
                     after its ACK was receipted",
                    d.run, d.redelivered
                ));
            }
        }
        // Every delivery after the first is marked redelivered, and follows a delivery whose
        // ACK was not receipted.
        for pair in ds.windows(2) {
            duplicates += 1;
            if !pair[1].redelivered {
                failures.push(format!(
                    "UNMARKED DUPLICATE: p{p} s{seq} delivered in run {} and again in run {} \
                     without redelivered:true",
                    pair[0].run, pair[1].run
                ));
            }
        }
        // A message recovered from the journal after a kill -9 is marked redelivered.
        let sent_in = send_run[&(p, seq)];
        for d in ds.iter().filter(|d| d.run > sent_in && !d.redelivered) {
            failures.push(format!(
                "RECOVERED UNMARKED: p{p} s{seq} sent in run {sent_in}, delivered in run {} \
                 after a kill -9 without redelivered:true",
                d.run
            ));
        }
    }
    // Per producer order among first deliveries, on each consumer connection.
    let mut last_seq: HashMap<(u64, u32), u64> = HashMap::new();
    let mut ordered: Vec<&Delivery> = deliveries.iter().collect();
    ordered.sort_by_key(|d| d.at);
    for d in ordered.iter().filter(|d| !d.redelivered) {
        if let Some(&prev) = last_seq.get(&(d.conn, d.producer)) {
            if d.seq <= prev {
                failures.push(format!(
                    "ORDER: consumer connection {} (run {}) got p{} s{} after p{} s{prev}",
                    d.conn, d.run, d.producer, d.seq, d.producer
                ));
            }
        }
        last_seq.insert((d.conn, d.producer), d.seq);
    }
    let log = broker.full_log();
    if log.contains("panicked") {
        failures.push("the broker log contains \"panicked\"".to_owned());
    }
    eprintln!(
        "seed {seed}: {} SENDs ({receipted} receipted, {unknown} cut by a kill), {} deliveries \
         of {} distinct messages, {duplicates} redeliveries, restarts {restart_times:?}, total \
         {:?}",
        receipted + unknown,
        deliveries.len(),
        by_key.len(),
        test_start.elapsed()
    );
    assert!(
        receipted > 200,
        "too little traffic to mean anything: {receipted} receipted SENDs"
    );
    if !failures.is_empty() {
        // A few of each kind, kinds in order of first appearance.
        let mut shown: Vec<String> = Vec::new();
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for f in &failures {
            let kind: String = f.split(':').next().unwrap_or_default().to_owned();
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind.clone(), 1)),
            }
            if shown.iter().filter(|s| s.starts_with(&kind)).count() < 8 {
                shown.push(f.clone());
            }
        }
        eprintln!("failure kinds: {kinds:?}");
        failures = shown;
        panic!(
            "seed {seed}: {} failure(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

// ------------------------------------------------------------------------------------------
// Clean restart
// ------------------------------------------------------------------------------------------

#[test]
fn sigterm_restart_keeps_unacked_messages_and_marks_only_delivered_ones_redelivered() {
    let q = "/queue/clean";
    let mut broker = Broker::start();
    let mut p = Client::connect_v12(broker.addr());
    for i in 0..30 {
        p.send_to_sync(q, format!("m{i}").as_bytes(), &[("n", &i.to_string())]);
    }
    let mut c = Client::connect_v12(broker.addr());
    c.send_with_receipt(prefetch_subscribe("s", q, 5));
    let first = c.recv_messages(5, TIMEOUT);
    assert_eq!(first.len(), 5);
    for m in &first[..2] {
        c.send_with_receipt(ack_frame(m));
    }
    // The window reopened by the two ACKs: m5 and m6 arrive, then nothing.
    let more = c.recv_messages(2, TIMEOUT);
    assert_eq!(more.len(), 2);
    c.expect_nothing(QUIET);
    let got: Vec<u64> = first
        .iter()
        .chain(&more)
        .map(|m| header_u64(m, "n"))
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 5, 6]);
    for m in first.iter().chain(&more) {
        assert_eq!(m.get("redelivered"), None, "{}", describe(m));
    }

    broker.sigterm();
    let e = c.expect(Command::Error, TIMEOUT);
    assert_eq!(e.get("code"), Some("shutting-down"), "{}", describe(&e));
    let status = broker
        .wait_exit(Duration::from_secs(12))
        .expect("stompd still running 12 s after SIGTERM");
    assert!(status.success(), "stompd exited with {status}");
    broker.restart();

    let all = drain(&broker, q, 100);
    let got: Vec<u64> = all.iter().map(|m| header_u64(m, "n")).collect();
    assert_eq!(
        got,
        (2..30).collect::<Vec<u64>>(),
        "after a clean restart every unacked message must come back, in order, and no acked one"
    );
    for m in &all {
        let n = header_u64(m, "n");
        assert_eq!(&m.body[..], format!("m{n}").as_bytes(), "{}", describe(m));
        if n <= 6 {
            assert_eq!(
                m.get("redelivered"),
                Some("true"),
                "m{n} was delivered and not acked before the clean restart: {}",
                describe(m)
            );
        } else {
            assert_eq!(
                m.get("redelivered"),
                None,
                "m{n} was never delivered before the clean restart: {}",
                describe(m)
            );
        }
    }
    assert!(!broker.full_log().contains("panicked"));
}

// ------------------------------------------------------------------------------------------
// Torn journal tail
// ------------------------------------------------------------------------------------------

#[test]
fn kill_9_in_a_stream_of_sends_leaves_a_prefix_with_every_receipted_message() {
    let q = "/queue/torn";
    let seed = seed("torn_tail");
    let mut rng = Rng::new(seed);
    let mut broker = Broker::builder().log_level(Some("info")).start();
    let mut next = 0u64;
    for round in 0..3 {
        let addr = broker.addr();
        let start_seq = next;
        let producer = thread::spawn(move || {
            // Fire and forget, with a synchronous receipt every 25 messages.
            let mut c = Client::connect_v12(addr);
            let mut seq = start_seq;
            let mut last_receipted: Option<u64> = None;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let body = body_of(9, seq);
                let mut f = send_frame(q, &body, &[("seq", &seq.to_string())]);
                let rid = (seq % 25 == 24).then(|| format!("r{seq}"));
                if let Some(rid) = &rid {
                    f.push_header("receipt", rid.as_str());
                }
                if c.try_send(&f).is_err() {
                    break;
                }
                seq += 1;
                if let Some(rid) = rid {
                    match c.try_wait_receipt(&rid, TIMEOUT) {
                        Ok(_) => last_receipted = Some(seq - 1),
                        Err(_) => break,
                    }
                }
            }
            (seq, last_receipted)
        });
        thread::sleep(Duration::from_millis(rng.range(200, 1200)));
        broker.kill9();
        let (sent_until, last_receipted) = producer.join().expect("producer panicked");
        broker.restart();
        let all = drain(&broker, q, 1_000_000);
        let seqs: Vec<u64> = all.iter().map(|m| header_u64(m, "seq")).collect();
        eprintln!(
            "round {round}: sent {start_seq}..{sent_until}, last receipted {last_receipted:?}, \
             recovered {}",
            seqs.len()
        );
        // A prefix of what was sent this round, in order, intact and marked redelivered.
        for (i, m) in all.iter().enumerate() {
            let seq = seqs[i];
            assert_eq!(
                seq,
                start_seq + i as u64,
                "round {round}: recovered messages are not a prefix of the stream (position \
                 {i}); recovered: {seqs:?}"
            );
            assert_eq!(&m.body[..], &body_of(9, seq)[..], "{}", describe(m));
            assert_eq!(
                m.get("redelivered"),
                Some("true"),
                "recovered after kill -9: {}",
                describe(m)
            );
        }
        if let Some(r) = last_receipted {
            assert!(
                seqs.last().is_some_and(|&l| l >= r),
                "round {round}: message {r} got its RECEIPT but only {seqs:?} were recovered"
            );
        }
        assert!(seqs.last().is_none_or(|&l| l < sent_until));
        next = sent_until;
    }
    assert!(!broker.full_log().contains("panicked"));
}

// ------------------------------------------------------------------------------------------
// Data directory lock
// ------------------------------------------------------------------------------------------

#[test]
fn second_broker_on_a_data_dir_in_use_fails_clearly_and_the_first_keeps_serving() {
    let broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    c.send_to_sync("/queue/locked", b"kept", &[]);
    let data_dir = broker.data_dir().to_str().expect("utf-8 path").to_owned();
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = CliOutput::run(
        &[
            "--data-dir",
            &data_dir,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ],
        cwd.path(),
    );
    assert!(
        !out.status.success(),
        "a second stompd on a data dir in use must fail; it exited with {}\nstderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.contains("in use") && out.stderr.contains(&data_dir),
        "the error should say that {data_dir} is in use; stderr:\n{}",
        out.stderr
    );
    // The first broker is unaffected: new traffic works and the stored message is there.
    c.assert_round_trip("after-second-broker");
    c.subscribe_sync("s", "/queue/locked", "auto");
    let m = c.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"kept");
    Client::connect_v12(broker.addr()).assert_round_trip("fresh");
}

// ------------------------------------------------------------------------------------------
// Transactions and crashes
// ------------------------------------------------------------------------------------------

const TX_SENDS: u64 = 200;

fn send_tx(c: &mut Client, dest: &str, tx: &str, n: u64) {
    c.send(&Frame::new(Command::Begin).with_header("transaction", tx));
    for i in 0..n {
        c.send(&send_frame(
            dest,
            &body_of(7, i),
            &[("transaction", tx), ("seq", &i.to_string())],
        ));
    }
}

#[test]
fn committed_transaction_survives_kill_9_right_after_its_receipt() {
    let q = "/queue/tx-committed";
    let mut broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    send_tx(&mut c, q, "t1", TX_SENDS);
    c.send_with_receipt(Frame::new(Command::Commit).with_header("transaction", "t1"));
    broker.kill9();
    broker.restart();
    let all = drain(&broker, q, 10_000);
    let seqs: Vec<u64> = all.iter().map(|m| header_u64(m, "seq")).collect();
    assert_eq!(seqs, (0..TX_SENDS).collect::<Vec<_>>());
    for m in &all {
        assert_eq!(&m.body[..], &body_of(7, header_u64(m, "seq"))[..]);
    }
}

#[test]
fn uncommitted_transaction_is_gone_after_kill_9() {
    let q = "/queue/tx-open";
    let mut broker = Broker::start();
    let mut c = Client::connect_v12(broker.addr());
    send_tx(&mut c, q, "t1", TX_SENDS);
    // A receipted frame after the SENDs: the broker has read them all.
    c.send_to_sync("/queue/tx-fence", b"fence", &[]);
    broker.kill9();
    broker.restart();
    assert_eq!(
        drain(&broker, q, 10_000).len(),
        0,
        "SENDs of a transaction never committed were stored"
    );
    let fence = drain(&broker, "/queue/tx-fence", 10);
    assert_eq!(
        fence.len(),
        1,
        "the receipted non-transactional SEND was lost"
    );
}

#[test]
fn transaction_cut_by_kill_9_during_commit_is_all_or_nothing() {
    let seed = seed("tx_commit_race");
    let mut rng = Rng::new(seed);
    let mut broker = Broker::builder().log_level(Some("info")).start();
    // How long a COMMIT of this size takes to be receipted: the kills land within twice that.
    let probe = {
        let mut c = Client::connect_v12(broker.addr());
        send_tx(&mut c, "/queue/tx-race-probe", "probe", TX_SENDS);
        c.send_to_sync("/queue/tx-race-fence", b"", &[]);
        let t = Instant::now();
        c.send_with_receipt(Frame::new(Command::Commit).with_header("transaction", "probe"));
        t.elapsed()
    };
    let window_us = (probe.as_micros() as u64 * 2).max(2000);
    eprintln!("COMMIT of {TX_SENDS} SENDs took {probe:?}; kills within {window_us} us of COMMIT");
    let mut outcomes = Vec::new();
    for round in 0..6 {
        let q = format!("/queue/tx-race-{round}");
        let mut c = Client::connect_v12(broker.addr());
        send_tx(&mut c, &q, "t", TX_SENDS);
        c.send_to_sync("/queue/tx-race-fence", b"", &[]);
        c.send(
            &Frame::new(Command::Commit)
                .with_header("transaction", "t")
                .with_header("receipt", "commit"),
        );
        thread::sleep(Duration::from_micros(rng.range(0, window_us)));
        broker.kill9();
        // Whatever the broker wrote before it died is still readable.
        let receipted = c
            .try_wait_receipt("commit", Duration::from_millis(500))
            .is_ok();
        broker.restart();
        let n = drain(&broker, &q, 10_000).len() as u64;
        outcomes.push((receipted, n));
        assert!(
            n == 0 || n == TX_SENDS,
            "seed {seed} round {round}: {n} of the transaction's {TX_SENDS} SENDs survived a \
             kill -9 during COMMIT (must be all or none)"
        );
        if receipted {
            assert_eq!(
                n, TX_SENDS,
                "seed {seed} round {round}: COMMIT was receipted but its SENDs are gone"
            );
        }
    }
    eprintln!("commit race outcomes (receipted, recovered): {outcomes:?}");
}
