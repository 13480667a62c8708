//! Running one plan: one task per connection, a shared start, bounded in count and time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use stompd_protocol::{ByteStr, Command, Frame, Version};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{describe, Conn, Target, READ_CHUNK};
use super::report::{self, Latency, Report};
use super::verify::{self, parse_u64, Tracker};
use super::{BenchArgs, Plan};

/// After the producers stop, how long consumers get to receive what was sent.
const DRAIN: Duration = Duration::from_secs(15);
/// How long subscriptions get to be confirmed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Most SENDs encoded into one write.
const BATCH: u64 = 128;

/// State shared by the tasks of one run.
struct Shared {
    /// Reference for `bench-ts` (send time) and latencies.
    epoch: Instant,
    sent: AtomicU64,
    /// MESSAGE frames received, per consumer.
    received: Vec<AtomicU64>,
    /// Consumers made progress (producers waiting on --max-lag listen).
    progress: Notify,
    topic: bool,
}

impl Shared {
    /// How far the producers are ahead of the consumers.
    fn lag(&self) -> u64 {
        let sent = self.sent.load(Ordering::Relaxed);
        if self.received.is_empty() {
            return 0;
        }
        let got = if self.topic {
            self.received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0)
        } else {
            self.received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .sum()
        };
        sent.saturating_sub(got)
    }

    fn received_total(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }
}

/// A decimal number formatted on the stack, for header values without allocating.
struct Num {
    buf: [u8; 20],
    start: usize,
}

impl Num {
    fn new(mut n: u64) -> Num {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Num { buf, start: i }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

struct ConsumerOut {
    tracker: Tracker,
    latencies: Vec<u64>,
    last_rx: Option<Instant>,
}

/// Runs one plan and reports what it measured.
pub async fn run_plan(
    target: &Target,
    plan: &Plan,
    rss_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let plan = Arc::new(plan.clone());
    let consume_only = plan.run_id.is_none();
    let producers = if consume_only { 0 } else { plan.producers };
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        sent: AtomicU64::new(0),
        received: (0..plan.consumers).map(|_| AtomicU64::new(0)).collect(),
        progress: Notify::new(),
        topic: plan.topic,
    });
    let cancel = CancellationToken::new();
    let rss = RssSampler::start(rss_pid, cancel.clone());

    // Consumers first: connect, subscribe, wait for every RECEIPT.
    let mut consumer_tasks = Vec::new();
    let mut ready = Vec::new();
    for c in 0..plan.consumers {
        let conn = Conn::connect(target, (0, 0), READ_CHUNK)
            .await
            .with_context(|| format!("consumer {c}"))?;
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        consumer_tasks.push(tokio::spawn(consumer(
            conn,
            plan.clone(),
            shared.clone(),
            c,
            tx,
            cancel.clone(),
        )));
    }
    for (c, rx) in ready.into_iter().enumerate() {
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, rx).await {
            Ok(Ok(())) => {}
            _ => {
                cancel.cancel();
                // The task's own error says more than "no receipt".
                if let Some(t) = consumer_tasks.get_mut(c) {
                    if t.is_finished() {
                        if let Ok(Err(e)) = t.await {
                            return Err(e.context(format!("consumer {c}")));
                        }
                    }
                }
                bail!("consumer {c}: no RECEIPT for SUBSCRIBE");
            }
        }
    }
    let mut producer_conns = Vec::new();
    for p in 0..producers {
        let conn = Conn::connect(target, (0, 0), 64 * 1024)
            .await
            .with_context(|| format!("producer {p}"))?;
        producer_conns.push(conn);
    }

    let t0 = Instant::now();
    let deadline = t0 + plan.duration_max;
    let mut producer_tasks = Vec::new();
    for (p, conn) in producer_conns.into_iter().enumerate() {
        let quota = plan.messages / producers as u64
            + u64::from((p as u64) < plan.messages % producers as u64);
        producer_tasks.push(tokio::spawn(producer(
            conn,
            plan.clone(),
            shared.clone(),
            p,
            quota,
            deadline,
        )));
    }
    let mut sent = vec![
        0u64;
        if consume_only {
            plan.producers
        } else {
            producers
        }
    ];
    let mut first_error: Option<anyhow::Error> = None;
    for (p, t) in producer_tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(n)) => sent[p] = n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e.context(format!("producer {p}")));
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("producer {p} panicked: {e}"));
            }
        }
    }
    let producers_end = Instant::now();
    if consume_only {
        for (p, s) in sent.iter_mut().enumerate() {
            *s = plan.messages / plan.producers as u64
                + u64::from((p as u64) < plan.messages % plan.producers as u64);
        }
    }
    let total_sent: u64 = sent.iter().sum();

    // Wait (bounded) for the consumers to receive everything.
    if plan.consumers > 0 && first_error.is_none() {
        let want = if plan.topic {
            total_sent * plan.consumers as u64
        } else {
            total_sent
        };
        let until = Instant::now().max(deadline) + DRAIN;
        while shared.received_total() < want && Instant::now() < until {
            if consumer_tasks.iter().any(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    cancel.cancel();
    let mut trackers = Vec::new();
    let mut latencies = Vec::new();
    let mut end = producers_end;
    let mut deliveries = 0;
    for (c, t) in consumer_tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(out)) => {
                deliveries += out.tracker.received;
                if let Some(at) = out.last_rx {
                    end = end.max(at);
                }
                trackers.push(out.tracker);
                latencies.extend(out.latencies);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e.context(format!("consumer {c}")));
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("consumer {c} panicked: {e}"));
            }
        }
    }
    if plan.consumers > 0 && deliveries == 0 {
        end = producers_end;
    }
    let verdict = if plan.consumers == 0 || first_error.is_some() {
        None
    } else if plan.topic {
        Some(verify::verify_topic(&trackers, &sent))
    } else {
        Some(verify::verify_queue(&trackers, &sent))
    };
    Ok(Report {
        scenario: plan.name.clone(),
        destination: plan.destination.clone(),
        producers: plan.producers,
        consumers: plan.consumers,
        body_size: plan.body_size,
        messages: total_sent,
        deliveries,
        seconds: end.duration_since(t0).as_secs_f64(),
        latency: Latency::from_nanos(&mut latencies),
        verdict,
        rss_kib: rss.finish().await,
        error: first_error.map(|e| format!("{e:#}")),
    })
}

async fn producer(
    mut conn: Conn,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    p: usize,
    quota: u64,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let body = vec![b'x'; plan.body_size];
    let pid = Num::new(p as u64);
    let run = plan.run_id.clone().unwrap_or_default();
    let rate = plan
        .rate
        .map(|r| r.max(1) as f64 / plan.producers.max(1) as f64);
    let t0 = Instant::now();
    // Seqs whose SEND asked for a receipt, oldest first.
    let mut outstanding: VecDeque<u64> = VecDeque::new();
    let window = if plan.sync_receipts { 0 } else { 1 };
    let mut seq = 0u64;
    while seq < quota {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if plan.max_lag != u64::MAX {
            while shared.lag() > plan.max_lag && Instant::now() < deadline {
                let _ = tokio::time::timeout(Duration::from_millis(1), shared.progress.notified())
                    .await;
            }
        }
        let mut n = if plan.sync_receipts {
            1
        } else {
            BATCH.min(quota - seq)
        };
        if let Some(r) = rate {
            // Messages due by now at the fixed rate; sleep until the next one is due.
            let due = (now.duration_since(t0).as_secs_f64() * r) as u64 + 1;
            if due <= seq {
                let at = t0 + Duration::from_secs_f64(seq as f64 / r);
                tokio::time::sleep_until(at.min(deadline)).await;
                continue;
            }
            n = n.min(due - seq);
        }
        for _ in 0..n {
            let s = Num::new(seq);
            let ts = if rate.is_some() {
                Some(Num::new(shared.epoch.elapsed().as_nanos() as u64))
            } else {
                None
            };
            let want_receipt = plan.sync_receipts
                || (seq + 1).is_multiple_of(plan.receipt_every)
                || seq + 1 == quota;
            let mut headers: [(&str, &str); 8] = [("", ""); 8];
            headers[0] = ("destination", plan.destination.as_str());
            headers[1] = ("bench-run", run.as_str());
            headers[2] = ("bench-producer", pid.as_str());
            headers[3] = ("bench-seq", s.as_str());
            let mut k = 4;
            if let Some(ts) = &ts {
                headers[k] = ("bench-ts", ts.as_str());
                k += 1;
            }
            if plan.persistent_header {
                headers[k] = ("persistent", "true");
                k += 1;
            }
            if want_receipt {
                headers[k] = ("receipt", s.as_str());
                k += 1;
                outstanding.push_back(seq);
            }
            conn.encode(Command::Send, headers[..k].iter().copied(), &body);
            seq += 1;
        }
        conn.flush().await?;
        shared.sent.fetch_add(n, Ordering::Relaxed);
        while outstanding.len() > window {
            await_receipt(&mut conn, &mut outstanding).await?;
        }
    }
    while !outstanding.is_empty() {
        await_receipt(&mut conn, &mut outstanding).await?;
    }
    Ok(seq)
}

/// Reads until a RECEIPT arrives; it settles every outstanding receipt up to its id.
async fn await_receipt(conn: &mut Conn, outstanding: &mut VecDeque<u64>) -> anyhow::Result<()> {
    let f = tokio::time::timeout(Duration::from_secs(30), conn.next_frame())
        .await
        .map_err(|_| anyhow!("no RECEIPT within 30 s"))??;
    match f.command {
        Command::Receipt => {
            let id = f
                .get("receipt-id")
                .and_then(|v| parse_u64(v.as_bytes()))
                .ok_or_else(|| anyhow!("RECEIPT with an unexpected receipt-id"))?;
            while outstanding.front().is_some_and(|&s| s <= id) {
                outstanding.pop_front();
            }
            Ok(())
        }
        _ => bail!("{}", describe(&f)),
    }
}

async fn consumer(
    mut conn: Conn,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    idx: usize,
    ready: oneshot::Sender<()>,
    cancel: CancellationToken,
) -> anyhow::Result<ConsumerOut> {
    let mut ready = Some(ready);
    conn.encode_subscribe("0", &plan.destination, plan.client_ack, plan.prefetch);
    conn.flush().await?;
    let mut out = ConsumerOut {
        tracker: Tracker::new(plan.producers),
        latencies: Vec::new(),
        last_rx: None,
    };
    let want_latency = plan.rate.is_some();
    let run = plan.run_id.as_deref();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = conn.fill() => { r?; }
        }
        let mut got = 0u64;
        while let Some(f) = conn.try_frame()? {
            match f.command {
                Command::Message => {
                    got += 1;
                    on_message(
                        &mut conn,
                        &f,
                        run,
                        plan.client_ack,
                        &mut out,
                        want_latency,
                        &shared,
                    );
                }
                Command::Receipt => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Command::Error => bail!("{}", describe(&f)),
                _ => {}
            }
        }
        if plan.client_ack {
            conn.flush().await?;
        }
        if got > 0 {
            out.last_rx = Some(Instant::now());
            shared.received[idx].fetch_add(got, Ordering::Relaxed);
            shared.progress.notify_waiters();
        }
    }
    Ok(out)
}

fn on_message(
    conn: &mut Conn,
    f: &Frame,
    run: Option<&str>,
    client_ack: bool,
    out: &mut ConsumerOut,
    want_latency: bool,
    shared: &Shared,
) {
    let (mut producer, mut seq, mut ts) = (None, None, None);
    let mut same_run = run.is_none();
    let (mut ack, mut message_id): (Option<&ByteStr>, Option<&ByteStr>) = (None, None);
    for (name, value) in &f.headers {
        match name.as_bytes() {
            b"bench-producer" => producer = parse_u64(value.as_bytes()),
            b"bench-seq" => seq = parse_u64(value.as_bytes()),
            b"bench-ts" => ts = parse_u64(value.as_bytes()),
            b"bench-run" => same_run = same_run || run == Some(value.as_str()),
            b"ack" => ack = Some(value),
            b"message-id" => message_id = Some(value),
            _ => {}
        }
    }
    match (producer, seq) {
        (Some(p), Some(s)) if same_run => out.tracker.record(p as usize, s),
        _ => out.tracker.foreign(),
    }
    if want_latency && same_run {
        if let Some(ts) = ts {
            let now = shared.epoch.elapsed().as_nanos() as u64;
            out.latencies.push(now.saturating_sub(ts));
        }
    }
    if client_ack {
        let version = conn.version;
        match (version, ack, message_id) {
            (Version::V1_2, Some(a), _) => conn.encode(Command::Ack, [("id", a.as_str())], b""),
            (Version::V1_1, _, Some(m)) => conn.encode(
                Command::Ack,
                [("message-id", m.as_str()), ("subscription", "0")],
                b"",
            ),
            (_, _, Some(m)) => conn.encode(Command::Ack, [("message-id", m.as_str())], b""),
            _ => {}
        }
    }
}

/// Samples a process's RSS every 100 ms while a run lasts; reports the highest.
struct RssSampler {
    max: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
    pid: Option<u32>,
}

impl RssSampler {
    fn start(pid: Option<u32>, stop: CancellationToken) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let task = pid.map(|pid| {
            let max = max.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {
                            if let Some(r) = report::rss_kib(pid) {
                                max.fetch_max(r, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
        });
        RssSampler { max, task, pid }
    }

    async fn finish(self) -> Option<u64> {
        let pid = self.pid?;
        if let Some(t) = self.task {
            let _ = t.await;
        }
        if let Some(r) = report::rss_kib(pid) {
            self.max.fetch_max(r, Ordering::Relaxed);
        }
        Some(self.max.load(Ordering::Relaxed))
    }
}

/// Opens `--connections` connections with heart-beats, holds them, reports the broker's RSS.
pub async fn idle_conns(target: &Target, args: &BenchArgs) -> Report {
    let n = args.connections;
    let hb = args.heartbeat_ms;
    let cancel = CancellationToken::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let gate = Arc::new(Semaphore::new(256));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (target, cancel, gate) = (target.clone(), cancel.clone(), gate.clone());
        let (connected, failed, lost, first_error) = (
            connected.clone(),
            failed.clone(),
            lost.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let conn = match Conn::connect(&target, (hb, hb), 1024).await {
                Ok(c) => c,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().get_or_insert(format!("{e:#}"));
                    return;
                }
            };
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = idle(conn, cancel).await {
                lost.fetch_add(1, Ordering::Relaxed);
                first_error.lock().get_or_insert(format!("{e:#}"));
            }
        }));
    }
    let connect_deadline = t0 + Duration::from_secs_f64(args.duration_max.max(1.0));
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let established = t0.elapsed();
    let _ = writeln_stderr(&format!(
        "idle-conns: {} connected in {:.3} s, holding {} s",
        connected.load(Ordering::Relaxed),
        established.as_secs_f64(),
        args.hold
    ));
    let rss = RssSampler::start(args.rss_pid, cancel.clone());
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let still_open = connected.load(Ordering::Relaxed) - lost.load(Ordering::Relaxed);
    cancel.cancel();
    let rss_kib = rss.finish().await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let error = if still_open < n {
        Some(format!(
            "{} of {n} connections open at the end ({} failed to connect, {} dropped): {}",
            still_open,
            failed.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed),
            first_error.lock().clone().unwrap_or_default()
        ))
    } else {
        None
    };
    Report {
        scenario: args
            .label
            .clone()
            .unwrap_or_else(|| "idle-conns".to_owned()),
        destination: String::new(),
        messages: connected.load(Ordering::Relaxed) as u64,
        seconds: established.as_secs_f64(),
        rss_kib,
        error,
        ..Report::default()
    }
}

/// Keeps one connection alive: heart-beats out when due, everything in read and dropped.
async fn idle(mut conn: Conn, cancel: CancellationToken) -> anyhow::Result<()> {
    // Beat at half the interval the server expects, so a late timer never looks like silence.
    let every = match conn.heartbeat.1 {
        0 => Duration::from_secs(3600),
        ms => Duration::from_millis((ms / 2).max(1)),
    };
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => conn.heartbeat().await?,
            r = conn.fill() => {
                r?;
                while let Some(f) = conn.try_frame()? {
                    if f.command == Command::Error {
                        bail!("{}", describe(&f));
                    }
                }
            }
        }
    }
}

fn writeln_stderr(s: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stderr(), "{s}")
}
