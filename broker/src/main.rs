//! The `stompd` command: runs the broker, or checks and prints configuration.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stompd::broker::Broker;
use stompd::server::{self, ConnectionCounter};
use stompd::storage::{FsyncPolicy, Journal, JournalOptions, Recovered};
use stompd_config::{Config, FsyncMode, LogFormat, DEFAULT_CONFIG};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Parser)]
#[command(name = "stompd", version, about = "A STOMP 1.0/1.1/1.2 message broker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file; exits non-zero naming the file, line and key of an error.
    CheckConfig { file: PathBuf },
    /// Print the embedded default configuration, every key commented.
    PrintConfig,
    /// Read a password (from the terminal without echo, asked twice; else the first line of
    /// stdin) and print its argon2id hash for `auth.users[].password_hash`.
    HashPassword,
    /// Load generator: run benchmark scenarios against any STOMP broker (see BENCHMARKS.md).
    Bench(Box<stompd::bench::BenchArgs>),
    /// Send one message to a running broker and wait for its RECEIPT (exit 3 on ERROR).
    Send(Box<stompd::tools::SendArgs>),
    /// Receive messages with a wait, like MQGet: exit 0 after --count, 2 at --timeout.
    Recv(Box<stompd::tools::RecvArgs>),
    /// Quick conformance check of any STOMP broker: PASS/FAIL per check, exit 1 on any FAIL.
    Probe(Box<stompd::tools::ProbeArgs>),
    /// Move the dead letters of a queue back to their original queues, through a running
    /// broker's admin API (`POST /api/queues/NAME/redrive`).
    Redrive {
        /// The dead-letter queue, e.g. `/queue/orders.dlq` or `orders.dlq`.
        queue: String,
        /// The broker's admin listener.
        #[arg(long, value_name = "ADDR")]
        admin: SocketAddr,
        /// `USER:PASSWORD` for HTTP Basic auth when the broker has users.
        #[arg(long, value_name = "USER:PASSWORD")]
        user: Option<String>,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// TOML resource file (default: the embedded configuration, see `stompd print-config`).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// STOMP listener address; repeat for several. Replaces `server.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// STOMP-over-WebSocket listener address; repeat for several. Replaces `websocket.listen`.
    #[arg(long, value_name = "ADDR")]
    ws_listen: Vec<SocketAddr>,
    /// Admin HTTP listener address (JSON API, /metrics, dashboard); repeat for several.
    /// Replaces `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Vec<SocketAddr>,
    /// Storage directory. Replaces `storage.dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format. Replaces `log.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log level or tracing filter (e.g. `debug`, `stompd=debug`). `RUST_LOG` wins over both.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => match stompd::auth::read_password() {
            Ok(password) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    stompd::auth::hash_password(&password)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "stompd hash-password: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::CheckConfig { file }) => match Config::load(&file).and_then(|c| {
            stompd::auth::Authenticator::new(&c.auth).map_err(|e| stompd_config::ConfigError {
                file: file.clone(),
                line: None,
                column: None,
                key: None,
                message: e.to_string(),
            })?;
            Ok(c)
        }) {
            Ok(_) => {
                let _ = writeln!(std::io::stdout(), "{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Bench(args)) => stompd::bench::main(*args),
        Some(Command::Send(args)) => stompd::tools::send(*args),
        Some(Command::Recv(args)) => stompd::tools::recv(*args),
        Some(Command::Probe(args)) => stompd::tools::probe(*args),
        Some(Command::Redrive { queue, admin, user }) => {
            match stompd::tools::redrive(admin, &queue, user.as_deref()) {
                Ok(body) => {
                    let _ = writeln!(std::io::stdout(), "{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "stompd redrive: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Some(Command::PrintConfig) => {
            let _ = std::io::stdout().write_all(DEFAULT_CONFIG.as_bytes());
            ExitCode::SUCCESS
        }
        None => match run(cli.run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Logging may not be up yet (bad config): report on stderr directly.
                let _ = writeln!(std::io::stderr(), "stompd: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if !args.ws_listen.is_empty() {
        config.websocket.listen = args.ws_listen.clone();
    }
    if !args.admin_listen.is_empty() {
        config.admin.listen = args.admin_listen.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.storage.dir = dir.clone();
    }
    if let Some(f) = args.log_format {
        config.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if let Some(level) = &args.log_level {
        config.log.level = level.clone();
    }
    Ok(config)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).context("invalid RUST_LOG")?,
        _ => EnvFilter::try_new(&config.log.level)
            .with_context(|| format!("invalid log level {:?}", config.log.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_logging(&config)?;
    // A password hash that does not parse is a configuration error, not a locked broker.
    stompd::auth::Authenticator::new(&config.auth).context("invalid [auth] configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stompd")
        .build()
        .context("cannot start the runtime")?;
    let storage = open_storage(&config)?;
    runtime.block_on(serve(config, storage, args))
}

/// Written after a clean stop, removed at start: its absence at start means the last run crashed.
const CLEAN_MARKER: &str = "CLEAN_SHUTDOWN";

/// Opens (and recovers) the journal of persistent queues before anything listens.
fn open_storage(config: &Config) -> anyhow::Result<(Journal, Recovered, bool)> {
    let s = &config.storage;
    std::fs::create_dir_all(&s.dir)
        .with_context(|| format!("cannot create the data directory {}", s.dir.display()))?;
    let fsync = match s.fsync {
        FsyncMode::Always => FsyncPolicy::Always,
        FsyncMode::Interval => FsyncPolicy::Interval(s.fsync_interval()),
        FsyncMode::Never => FsyncPolicy::Never,
    };
    let opts = JournalOptions {
        dir: s.dir.clone(),
        segment_bytes: s.segment_bytes,
        fsync,
        memory_budget: s.memory_budget(),
    };
    let (journal, recovered) = Journal::open(opts)
        .with_context(|| format!("cannot open the journal in {}", s.dir.display()))?;
    let marker = s.dir.join(CLEAN_MARKER);
    let after_crash = !marker.exists() && recovered.report.segments > 0;
    if marker.exists() {
        std::fs::remove_file(&marker)
            .with_context(|| format!("cannot remove {}", marker.display()))?;
    }
    let r = &recovered.report;
    tracing::info!(
        dir = %s.dir.display(),
        segments = r.segments,
        records = r.records,
        truncated_bytes = r.truncated_bytes,
        corrupt_entries_skipped = r.corrupt_entries_skipped,
        elapsed_ms = r.elapsed.as_millis() as u64,
        after_crash,
        "journal opened"
    );
    Ok((journal, recovered, after_crash))
}

async fn serve(
    config: Config,
    storage: (Journal, Recovered, bool),
    args: RunArgs,
) -> anyhow::Result<()> {
    let grace = config.server.shutdown_grace();
    let listen = config.server.listen.clone();
    let config_ws_listen = config.websocket.listen.clone();
    let tls_configs = config.tls.clone();
    let data_dir = config.storage.dir.clone();
    let (journal, recovered, after_crash) = storage;
    let broker = Broker::with_storage(config, Some((journal, recovered)), after_crash);
    let ws_listen = config_ws_listen;
    let listeners = server::bind_all(&listen, "stomp").await?;
    let ws_listeners = server::bind_all(&ws_listen, "websocket").await?;
    let admin_listen = broker.config().admin.listen.clone();
    if admin_listen.iter().any(|a| !a.ip().is_loopback()) && broker.config().auth.users.is_empty() {
        tracing::warn!("the admin listener is reachable beyond loopback and no [[auth.users]] are configured: anyone who reaches it can purge queues");
    }
    let admin_listeners = server::bind_all(&admin_listen, "admin").await?;
    let mut tls_listeners = Vec::new();
    for t in &tls_configs {
        let acceptor =
            stompd::tls::acceptor(t).with_context(|| format!("[[tls]] listener {}", t.listen))?;
        let mut bound = server::bind_all(std::slice::from_ref(&t.listen), "stomp+tls").await?;
        if let Some(l) = bound.pop() {
            tls_listeners.push((l, acceptor));
        }
    }

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let counter = Arc::new(ConnectionCounter::default());
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(tokio::spawn(server::serve_stomp(
            listener,
            broker.clone(),
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        )));
    }
    for (listener, acceptor) in tls_listeners {
        accept_loops.push(tokio::spawn(stompd::tls::serve_tls(
            listener,
            acceptor,
            broker.clone(),
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        )));
    }
    for listener in ws_listeners {
        accept_loops.push(tokio::spawn(stompd::ws::serve_ws(
            listener,
            broker.clone(),
            counter.clone(),
            shutdown.clone(),
            tracker.clone(),
        )));
    }
    if !admin_listeners.is_empty() {
        accept_loops
            .extend(stompd::admin::Admin::new(broker.clone()).start(admin_listeners, &shutdown));
    }
    let sweeper = {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        broker.expire_all();
                        broker.enforce_memory_budget();
                    }
                }
            }
        })
    };

    {
        let args = args.clone();
        broker.set_config_source(Box::new(move || {
            load_config(&args).map_err(|e| format!("{e:#}"))
        }));
    }
    let signal = loop {
        tokio::select! {
            s = wait_for_signal() => break s?,
            r = wait_for_hangup() => {
                r?;
                match broker.reload() {
                    Ok(summary) => tracing::info!(summary, "SIGHUP: reload done"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: new configuration refused; the running one is kept"),
                }
            }
        }
    };
    tracing::info!(signal, grace_ms = grace.as_millis() as u64, "shutting down");
    shutdown.cancel();
    tracker.close();
    for l in accept_loops {
        let _ = l.await;
    }
    let _ = sweeper.await;
    tokio::select! {
        _ = tracker.wait() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(open = counter.open(), "grace period over; closing remaining connections"),
        s = wait_for_signal() => {
            tracing::warn!(signal = s.unwrap_or("?"), "second signal; exiting at once");
            std::process::exit(1);
        }
    }
    // Sessions have returned their unacked messages; make everything written durable.
    if let Some(journal) = broker.journal() {
        match journal.shutdown() {
            Ok(()) => {
                if let Err(e) = std::fs::write(data_dir.join(CLEAN_MARKER), b"") {
                    tracing::warn!(error = %e, "cannot write the clean-shutdown marker");
                }
            }
            Err(e) => tracing::error!(error = %e, "journal did not close cleanly"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reload the configuration.
async fn wait_for_hangup() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    hup.recv().await;
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C behaves as SIGTERM).
async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
