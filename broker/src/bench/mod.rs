//! `stompd bench`: a load generator that talks STOMP over TCP to any STOMP broker (stompd,
//! RabbitMQ, ActiveMQ) and checks what it gets back.
//!
//! Every scenario subscribes its consumers first (waiting for the RECEIPT of each SUBSCRIBE), then
//! starts the clock and its producers. Producers pipeline SENDs: many frames are encoded into one
//! buffer and written at once, and a SEND every `--receipt-every` messages asks for a receipt so
//! at most two such windows are in flight per producer, without a round trip per message (unless
//! `--receipts`: then every SEND waits for its receipt, as a persistent JMS producer does). The
//! tool also bounds how far producers may run ahead of consumers (`--max-lag`), so a topic
//! subscriber is never cut off as a slow consumer and a queue's backlog stays bounded.
//!
//! Each SEND carries `bench-run` (unique per run), `bench-producer:P` and `bench-seq:N`;
//! consumers check per producer that nothing is missing, duplicated or out of order (for
//! competing consumers of one queue, over the union of what they received). The latency scenario
//! adds `bench-ts`, nanoseconds since a start `Instant` shared by producers and consumers of the
//! same process.
//!
//! Everything is bounded: `--messages` per scenario and `--duration-max` seconds of sending, then
//! at most a fixed drain time.

mod conn;
mod report;
mod run;
mod verify;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use report::{Latency, Report};
pub use verify::{Tracker, Verdict};

/// Options of `stompd bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Broker host (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker STOMP port.
    #[arg(long, default_value_t = 61613)]
    pub port: u16,
    #[arg(long)]
    pub login: Option<String>,
    #[arg(long)]
    pub passcode: Option<String>,
    /// `host` header of CONNECT (RabbitMQ: the virtual host).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// What to run. `all` = p1c1, p4c4, body1k, latency, fanout10, persistent.
    #[arg(long, value_enum, default_value = "p1c1")]
    pub scenario: Scenario,
    /// Messages per scenario (all producers together). Default depends on the scenario.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Producers stop sending after this many seconds even if --messages is not reached.
    #[arg(long, default_value_t = 60.0)]
    pub duration_max: f64,
    /// Body size in bytes (default 100; body1k: 1024).
    #[arg(long)]
    pub body_size: Option<usize>,
    #[arg(long)]
    pub producers: Option<usize>,
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Every SEND asks for a receipt and the producer waits for it before the next.
    #[arg(long)]
    pub receipts: bool,
    /// Ack mode of the consumers.
    #[arg(long, value_enum)]
    pub ack: Option<AckArg>,
    /// Messages per second (all producers together) for the latency scenario.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Destination prefix; a unique run id and the scenario name are appended.
    /// Default `/queue/bench-` or `/topic/bench-`.
    #[arg(long)]
    pub destination_prefix: Option<String>,
    /// Exact destination (e.g. a configured queue); overrides --destination-prefix.
    #[arg(long)]
    pub destination: Option<String>,
    /// Queue for the `ephemeral-ff` part of the persistent scenario (default
    /// `/queue/bench-ephemeral-<run>`; configure it as non-persistent in the broker).
    #[arg(long)]
    pub ephemeral_destination: Option<String>,
    /// Print one JSON object per scenario on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Without --receipts, ask for a receipt every this many SENDs (bounds what is in flight).
    #[arg(long, default_value_t = 1000)]
    pub receipt_every: u64,
    /// Most messages sent and not yet received (queues: in total; topics: by the slowest subscriber).
    #[arg(long)]
    pub max_lag: Option<u64>,
    /// Prefetch window of client-individual subscriptions.
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u32,
    /// idle-conns: how many connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// idle-conns: heart-beat interval offered both ways (ms).
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// idle-conns: seconds to hold the connections open once all are established.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Sample this process's RSS (the broker's) during each scenario and report the highest.
    #[arg(long)]
    pub rss_pid: Option<u32>,
    /// Worker threads of the tool's runtime (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Name printed for the scenario in the table and JSON (default: the scenario's own).
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 1 producer, 1 consumer, one queue, auto ack.
    P1c1,
    /// 4 producers, 4 competing consumers, one queue.
    P4c4,
    /// p1c1 with 1 KiB bodies.
    Body1k,
    /// 1 producer at a fixed rate (default 5000 msg/s), 1 consumer: p50/p99/max latency.
    Latency,
    /// 1 producer to a topic, 10 subscribers.
    Fanout10,
    /// Persistent queue: receipt on every SEND from 1, 4 and 16 producers; then fire-and-forget
    /// to a persistent and to an ephemeral queue.
    Persistent,
    /// Everything above, in order.
    All,
    /// Open --connections idle connections with heart-beats and hold them for --hold seconds.
    IdleConns,
    /// Producers only (fire-and-forget, persistent:true): leave a backlog for recovery tests.
    Fill,
    /// Consumers only: drain a backlog left by `fill` with the same --producers/--messages.
    Drain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AckArg {
    Auto,
    ClientIndividual,
}

/// One concrete run: what a scenario expands to.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub topic: bool,
    pub destination: String,
    pub producers: usize,
    pub consumers: usize,
    pub messages: u64,
    pub body_size: usize,
    /// Every SEND waits for its receipt.
    pub sync_receipts: bool,
    pub receipt_every: u64,
    pub client_ack: bool,
    pub prefetch: u32,
    /// Fixed total send rate (msg/s); measures latency.
    pub rate: Option<u64>,
    pub persistent_header: bool,
    pub max_lag: u64,
    pub duration_max: Duration,
    /// Only count messages carrying this run id (`None`: any run, for `drain`).
    pub run_id: Option<String>,
}

/// Entry point of `stompd bench`.
pub fn main(args: BenchArgs) -> ExitCode {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .thread_name("stompd-bench")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "stompd bench: cannot start a runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let reports = runtime.block_on(run_all(&args));
    let table = report::table(&reports);
    if args.json {
        let _ = std::io::stderr().write_all(table.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(table.as_bytes());
    }
    if reports.iter().all(Report::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_all(args: &BenchArgs) -> Vec<Report> {
    let target = conn::Target {
        host: args.host.clone(),
        port: args.port,
        login: args.login.clone(),
        passcode: args.passcode.clone(),
        vhost: args.vhost.clone(),
    };
    let mut reports = Vec::new();
    if args.scenario == Scenario::IdleConns {
        let r = run::idle_conns(&target, args).await;
        emit(args, &r);
        reports.push(r);
        return reports;
    }
    for plan in plans(args) {
        let mut r = match run::run_plan(&target, &plan, args.rss_pid).await {
            Ok(r) => r,
            Err(e) => Report {
                scenario: plan.name.clone(),
                destination: plan.destination.clone(),
                producers: plan.producers,
                consumers: plan.consumers,
                body_size: plan.body_size,
                error: Some(format!("{e:#}")),
                ..Report::default()
            },
        };
        if let Some(l) = &args.label {
            r.scenario = if args.scenario == Scenario::Persistent || args.scenario == Scenario::All
            {
                format!("{l}-{}", r.scenario)
            } else {
                l.clone()
            };
        }
        emit(args, &r);
        reports.push(r);
        // Let the broker settle (acks, journal) between scenarios.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    reports
}

fn emit(args: &BenchArgs, r: &Report) {
    if args.json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", r.json());
        let _ = out.flush();
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} messages in {:.3} s ({:.0} msg/s), {}",
            r.scenario,
            r.messages,
            r.seconds,
            r.msg_per_s(),
            if r.passed() { "ok" } else { "FAILED" }
        );
    }
}

/// A run id unique enough for one machine: time and pid.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

/// Expands the chosen scenario into concrete runs, applying the command-line overrides.
pub fn plans(args: &BenchArgs) -> Vec<Plan> {
    use Scenario::*;
    let list: Vec<Scenario> = match args.scenario {
        All => vec![P1c1, P4c4, Body1k, Latency, Fanout10, Persistent],
        s => vec![s],
    };
    let single = list.len() == 1 && args.scenario != Persistent;
    let mut out = Vec::new();
    for s in list {
        for mut p in base_plans(s, args) {
            if let Some(n) = args.messages {
                p.messages = n;
            }
            if let Some(b) = args.body_size {
                p.body_size = b;
            }
            if single {
                if let Some(n) = args.producers {
                    p.producers = n;
                }
                if let Some(n) = args.consumers {
                    p.consumers = n;
                }
                if args.receipts {
                    p.sync_receipts = true;
                }
            }
            if let Some(a) = args.ack {
                p.client_ack = a == AckArg::ClientIndividual;
            }
            if let Some(r) = args.rate {
                if p.rate.is_some() || single {
                    p.rate = Some(r);
                }
            }
            if let Some(l) = args.max_lag {
                p.max_lag = l;
            }
            out.push(p);
        }
    }
    out
}

fn base_plans(s: Scenario, args: &BenchArgs) -> Vec<Plan> {
    let id = run_id();
    let dest = |topic: bool, name: &str| -> String {
        if let Some(d) = &args.destination {
            return d.clone();
        }
        let prefix = args.destination_prefix.clone().unwrap_or_else(|| {
            if topic {
                "/topic/bench-".to_owned()
            } else {
                "/queue/bench-".to_owned()
            }
        });
        format!("{prefix}{name}-{id}")
    };
    let base = Plan {
        name: String::new(),
        topic: false,
        destination: String::new(),
        producers: 1,
        consumers: 1,
        messages: 1_000_000,
        body_size: 100,
        sync_receipts: false,
        receipt_every: args.receipt_every.max(1),
        client_ack: false,
        prefetch: args.prefetch.max(1),
        rate: None,
        persistent_header: false,
        max_lag: 50_000,
        duration_max: Duration::from_secs_f64(args.duration_max.max(0.1)),
        run_id: Some(id.clone()),
    };
    let plan = |name: &str, topic: bool, f: &dyn Fn(&mut Plan)| {
        let mut p = Plan {
            name: name.to_owned(),
            topic,
            destination: dest(topic, name),
            ..base.clone()
        };
        f(&mut p);
        p
    };
    match s {
        Scenario::P1c1 => vec![plan("p1c1", false, &|_| {})],
        Scenario::P4c4 => vec![plan("p4c4", false, &|p| {
            p.producers = 4;
            p.consumers = 4;
        })],
        Scenario::Body1k => vec![plan("body1k", false, &|p| {
            p.body_size = 1024;
            p.messages = 500_000;
        })],
        Scenario::Latency => vec![plan("latency", false, &|p| {
            p.rate = Some(5000);
            p.messages = 25_000;
        })],
        Scenario::Fanout10 => vec![plan("fanout10", true, &|p| {
            p.consumers = 10;
            p.messages = 200_000;
            // Below the broker's per-subscriber bound of undelivered messages.
            p.max_lag = 5_000;
        })],
        Scenario::Persistent => {
            let persistent = |name: &str, producers: usize| {
                let mut p = plan(name, false, &|p| {
                    p.producers = producers;
                    p.sync_receipts = true;
                    p.persistent_header = true;
                    p.messages = 50_000;
                });
                if args.destination.is_none() {
                    p.destination = format!(
                        "{}persistent-{name}-{id}",
                        args.destination_prefix
                            .as_deref()
                            .unwrap_or("/queue/bench-")
                    );
                }
                p
            };
            let mut ff = persistent("persistent-ff", 1);
            ff.sync_receipts = false;
            ff.messages = 500_000;
            let mut eph = ff.clone();
            eph.name = "ephemeral-ff".to_owned();
            eph.persistent_header = false;
            eph.destination = args.ephemeral_destination.clone().unwrap_or_else(|| {
                format!(
                    "{}ephemeral-{id}",
                    args.destination_prefix
                        .as_deref()
                        .unwrap_or("/queue/bench-")
                )
            });
            vec![
                persistent("persistent-sync1", 1),
                persistent("persistent-sync4", 4),
                persistent("persistent-sync16", 16),
                ff,
                eph,
            ]
        }
        Scenario::Fill => vec![plan("fill", false, &|p| {
            p.consumers = 0;
            p.persistent_header = true;
        })],
        Scenario::Drain => vec![plan("drain", false, &|p| {
            p.run_id = None;
            p.max_lag = u64::MAX;
        })],
        Scenario::All | Scenario::IdleConns => Vec::new(),
    }
}
