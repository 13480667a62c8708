//! Operator commands that speak STOMP over TCP to a running broker (stompd or any other):
//! `stompd send`, `stompd recv` (a get with a wait, like a classic MQGet) and `stompd probe` (a
//! quick conformance check).
//!
//! A small blocking client: one `std::net::TcpStream`, the protocol crate's client codec for
//! reading and `encode_frame` for writing. Every wait has a deadline, so no command hangs.
//!
//! Exit codes, shared by the commands:
//! - 0: done (`send`: RECEIPT; `recv`: all `--count` messages; `probe`: every check passed);
//! - 1: local error (bad `--header`, unreadable `--file`), or a `probe` check failed;
//! - 2: `recv` timed out with fewer than `--count` messages (prints how many it got);
//! - 3: the broker answered with an ERROR frame (its `code` and `message` are printed);
//! - 4: no usable connection: cannot connect, connection lost, protocol error, or no RECEIPT /
//!   CONNECTED in time.

use std::collections::VecDeque;
use std::fmt;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use clap::{Args, ValueEnum};
use stompd_protocol::{encode_frame, Command, Frame, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::Decoder as _;

/// How long a TCP connect plus the CONNECT/CONNECTED handshake may take (`send` uses --timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `recv` waits for the RECEIPT of its DISCONNECT (which confirms its ACKs).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PORT: u16 = 61613;

const EXIT_LOCAL: u8 = 1;
const EXIT_TIMEOUT: u8 = 2;
const EXIT_BROKER_ERROR: u8 = 3;
const EXIT_CONNECTION: u8 = 4;

/// Where to connect and as whom (shared by `send`, `recv` and `probe`).
#[derive(Args, Clone, Debug)]
pub struct ConnArgs {
    /// Broker host [default: 127.0.0.1].
    #[arg(long, conflicts_with = "addr")]
    pub host: Option<String>,
    /// Broker STOMP port [default: 61613].
    #[arg(long, conflicts_with = "addr")]
    pub port: Option<u16>,
    /// CONNECT `login` header.
    #[arg(long)]
    pub login: Option<String>,
    /// CONNECT `passcode` header.
    #[arg(long)]
    pub passcode: Option<String>,
    /// `host` header of CONNECT (RabbitMQ takes it as the virtual host).
    #[arg(long, default_value = "/")]
    pub vhost: String,
}

/// `stompd send DEST [HOST:PORT]`.
#[derive(Args, Clone, Debug)]
pub struct SendArgs {
    /// Destination, e.g. /queue/orders or /topic/prices.
    pub destination: String,
    /// Broker as HOST:PORT (instead of --host/--port).
    #[arg(value_name = "HOST:PORT")]
    pub addr: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Extra header NAME:VALUE (the value may contain ':'); repeat for several.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Ask for a RECEIPT and wait for it (the default).
    #[arg(long, overrides_with = "no_receipt")]
    pub receipt: bool,
    /// Do not ask for a receipt for the SEND (a receipted DISCONNECT still confirms it was read).
    #[arg(long, overrides_with = "receipt")]
    pub no_receipt: bool,
    /// Message body (default: read from stdin).
    #[arg(long, conflicts_with = "file")]
    pub body: Option<String>,
    /// Read the message body from this file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Seconds for connecting and for the receipt.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub timeout: Duration,
}

/// When `recv` acknowledges a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecvAck {
    /// As soon as it arrives, before printing (at most once).
    Auto,
    /// After it is printed and stdout flushed (at least once).
    ClientIndividual,
}

/// `stompd recv DEST [HOST:PORT]`.
#[derive(Args, Clone, Debug)]
pub struct RecvArgs {
    /// Destination, e.g. /queue/orders.
    pub destination: String,
    /// Broker as HOST:PORT (instead of --host/--port).
    #[arg(value_name = "HOST:PORT")]
    pub addr: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// How many messages to take, then exit 0.
    #[arg(long, short = 'n', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Seconds to wait for the --count messages in all; fewer by then exits 2.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// When to acknowledge. Either way the subscription is `client-individual` with a prefetch of
    /// --count on the wire, so exactly --count messages are taken from a queue.
    #[arg(long, value_enum, default_value = "client-individual")]
    pub ack: RecvAck,
    /// Print each message's headers (NAME:VALUE lines and an empty line) before its body.
    #[arg(long)]
    pub headers: bool,
}

/// `stompd probe [HOST:PORT]`.
#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    /// Broker as HOST:PORT (instead of --host/--port).
    #[arg(value_name = "HOST:PORT")]
    pub addr: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Seconds each step may wait for the broker.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s:?}: give seconds > 0 and at most 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why a command stopped.
#[derive(Debug)]
enum Failure {
    /// Bad local input.
    Local(String),
    /// The broker sent an ERROR frame.
    Broker(Frame),
    /// Connection, protocol or timeout trouble.
    Conn(String),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Local(_) => EXIT_LOCAL,
            Failure::Broker(_) => EXIT_BROKER_ERROR,
            Failure::Conn(_) => EXIT_CONNECTION,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Local(m) | Failure::Conn(m) => f.write_str(m),
            Failure::Broker(frame) => f.write_str(&describe_error(frame)),
        }
    }
}

/// An ERROR frame in one line: `ERROR code=CODE: MESSAGE (BODY)`.
fn describe_error(frame: &Frame) -> String {
    let mut s = String::from("ERROR");
    if let Some(code) = frame.get("code") {
        s.push_str(" code=");
        s.push_str(code);
    }
    s.push_str(": ");
    s.push_str(frame.get("message").unwrap_or("(no message header)"));
    let body = String::from_utf8_lossy(&frame.body);
    let body = body.trim();
    if !body.is_empty() {
        let short: String = body.chars().take(300).collect();
        s.push_str(" (");
        s.push_str(&short.replace('\n', " "));
        s.push(')');
    }
    s
}

/// Host and port from `HOST:PORT` (or `[V6]:PORT`, or a bare host) or from --host/--port.
fn endpoint(addr: Option<&str>, conn: &ConnArgs) -> Result<(String, u16), Failure> {
    let Some(addr) = addr else {
        return Ok((
            conn.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned()),
            conn.port.unwrap_or(DEFAULT_PORT),
        ));
    };
    let bad = || Failure::Local(format!("{addr:?} is not HOST:PORT"));
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if rest.is_empty() => DEFAULT_PORT,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.is_empty() => {
            Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
        }
        Some(_) => Err(bad()),
        None if addr.is_empty() => Err(bad()),
        None => Ok((addr.to_owned(), DEFAULT_PORT)),
    }
}

/// A unique token for receipt ids and probe destinations.
fn unique() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn io_err(what: &str, e: std::io::Error) -> Failure {
    Failure::Conn(format!("{what}: {e}"))
}

/// A blocking STOMP client connection.
struct Client {
    stream: TcpStream,
    codec: StompCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: Version,
    connected: Frame,
    /// MESSAGE frames that arrived while waiting for a RECEIPT.
    pending: VecDeque<Frame>,
    peer: String,
}

impl Client {
    /// TCP connect, CONNECT offering `accept-version:1.0,1.1,1.2` and `heart_beat`, and the
    /// CONNECTED answer, all before `timeout`.
    fn connect(
        host: &str,
        port: u16,
        conn: &ConnArgs,
        heart_beat: &str,
        timeout: Duration,
    ) -> Result<Client, Failure> {
        let deadline = Instant::now() + timeout;
        let peer = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| Failure::Conn(format!("cannot resolve {peer}: {e}")))?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| match last {
            Some(e) => Failure::Conn(format!("cannot connect to {peer}: {e}")),
            None => Failure::Conn(format!("cannot connect to {peer}: no address")),
        })?;
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            codec: StompCodec::client(Limits::default()),
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(4 * 1024),
            version: Version::V1_0,
            connected: Frame::new(Command::Connected),
            pending: VecDeque::new(),
            peer,
        };
        let mut headers = vec![
            ("accept-version", "1.0,1.1,1.2"),
            ("host", conn.vhost.as_str()),
            ("heart-beat", heart_beat),
        ];
        if let Some(l) = &conn.login {
            headers.push(("login", l.as_str()));
        }
        if let Some(p) = &conn.passcode {
            headers.push(("passcode", p.as_str()));
        }
        client.write(Command::Connect, &headers, b"")?;
        let frame = client.next_frame(deadline)?.ok_or_else(|| {
            Failure::Conn(format!(
                "no CONNECTED from {} within {:?}",
                client.peer, timeout
            ))
        })?;
        match frame.command {
            Command::Connected => {}
            Command::Error => return Err(Failure::Broker(frame)),
            other => {
                return Err(Failure::Conn(format!(
                    "expected CONNECTED, got {}",
                    other.as_str()
                )))
            }
        }
        client.version = match frame.get("version") {
            None => Version::V1_0,
            Some(v) => Version::parse(v).ok_or_else(|| {
                Failure::Conn(format!("CONNECTED names an unknown version {v:?}"))
            })?,
        };
        client.codec.set_version(client.version);
        client.connected = frame;
        Ok(client)
    }

    /// Encodes and writes one frame, escaping per the negotiated version.
    fn write(
        &mut self,
        command: Command,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Failure> {
        self.wbuf.clear();
        encode_frame(
            &mut self.wbuf,
            self.version,
            command,
            headers.iter().copied(),
            body,
        );
        self.stream
            .write_all(&self.wbuf)
            .map_err(|e| io_err(&format!("cannot write to {}", self.peer), e))
    }

    /// The next frame (heart-beats skipped); `None` once `deadline` passes.
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, Failure> {
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(Inbound::Frame(f))) => return Ok(Some(f)),
                Ok(Some(Inbound::HeartBeat)) => continue,
                Ok(None) => {}
                Err(e) => return Err(Failure::Conn(format!("bad frame from {}: {e}", self.peer))),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| io_err("cannot set a read timeout", e))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Conn(format!("connection closed by {}", self.peer))),
                Ok(n) => self
                    .rbuf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(io_err(&format!("cannot read from {}", self.peer), e)),
            }
        }
    }

    /// Waits for the RECEIPT `id`; MESSAGEs arriving meanwhile are kept for [`Self::next_message`].
    fn await_receipt(&mut self, id: &str, deadline: Instant) -> Result<(), Failure> {
        loop {
            let Some(frame) = self.next_frame(deadline)? else {
                return Err(Failure::Conn(format!(
                    "no RECEIPT {id} from {} in time",
                    self.peer
                )));
            };
            match frame.command {
                Command::Receipt if frame.get("receipt-id") == Some(id) => return Ok(()),
                Command::Error => return Err(Failure::Broker(frame)),
                Command::Message => self.pending.push_back(frame),
                _ => {}
            }
        }
    }

    /// The next MESSAGE (kept ones first); `None` once `deadline` passes.
    fn next_message(&mut self, deadline: Instant) -> Result<Option<Frame>, Failure> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        loop {
            let Some(frame) = self.next_frame(deadline)? else {
                return Ok(None);
            };
            match frame.command {
                Command::Message => return Ok(Some(frame)),
                Command::Error => return Err(Failure::Broker(frame)),
                _ => {}
            }
        }
    }

    /// Writes a frame with a fresh `receipt` header and waits for that RECEIPT.
    fn request(
        &mut self,
        command: Command,
        headers: &[(&str, &str)],
        body: &[u8],
        deadline: Instant,
    ) -> Result<String, Failure> {
        let receipt = format!("{}-{}", command.as_str().to_ascii_lowercase(), unique());
        let mut all = headers.to_vec();
        all.push(("receipt", receipt.as_str()));
        self.write(command, &all, body)?;
        self.await_receipt(&receipt, deadline)?;
        Ok(receipt)
    }

    /// The `ack` mode to ask for per-message acknowledgement (`client` in 1.0, which lacks
    /// `client-individual`; acking every message in order makes them equivalent).
    fn individual_ack_mode(&self) -> &'static str {
        if self.version == Version::V1_0 {
            "client"
        } else {
            "client-individual"
        }
    }

    /// ACK or NACK of `msg`, with the headers of the negotiated version.
    fn ack(
        &mut self,
        command: Command,
        msg: &Frame,
        extra: &[(&str, &str)],
        receipt: Option<Instant>,
    ) -> Result<(), Failure> {
        let message_id = msg.get("message-id").unwrap_or_default().to_owned();
        let subscription = msg.get("subscription").unwrap_or_default().to_owned();
        let mut headers: Vec<(&str, &str)> = match self.version {
            Version::V1_2 => vec![("id", msg.get("ack").unwrap_or(message_id.as_str()))],
            Version::V1_1 => vec![
                ("message-id", message_id.as_str()),
                ("subscription", subscription.as_str()),
            ],
            Version::V1_0 => vec![("message-id", message_id.as_str())],
        };
        headers.extend_from_slice(extra);
        match receipt {
            Some(deadline) => self.request(command, &headers, b"", deadline).map(drop),
            None => self.write(command, &headers, b""),
        }
    }

    /// DISCONNECT with a receipt, waiting until `deadline`: confirms everything before it was read.
    fn disconnect(&mut self, deadline: Instant) -> Result<(), Failure> {
        self.request(Command::Disconnect, &[], b"", deadline)
            .map(drop)
    }
}

fn report(command: &str, failure: &Failure) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "stompd {command}: {failure}");
    failure.exit_code()
}

// ---------------------------------------------------------------------------------------------
// send

/// `stompd send`: one SEND, by default with a receipt; prints the receipt id.
pub fn send(args: SendArgs) -> ExitCode {
    match run_send(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report("send", &f),
    }
}

fn run_send(args: &SendArgs) -> Result<(), Failure> {
    let mut extra = Vec::with_capacity(args.headers.len());
    for h in &args.headers {
        match h.split_once(':') {
            Some((name, value)) if !name.is_empty() => extra.push((name, value)),
            _ => {
                return Err(Failure::Local(format!(
                    "--header {h:?}: expected NAME:VALUE"
                )))
            }
        }
    }
    let body = match (&args.body, &args.file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| Failure::Local(format!("cannot read {}: {e}", path.display())))?,
        (None, None) => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                let _ = writeln!(
                    std::io::stderr(),
                    "stompd send: reading the body from stdin (end with Ctrl-D)"
                );
            }
            let mut buf = Vec::new();
            stdin
                .read_to_end(&mut buf)
                .map_err(|e| Failure::Local(format!("cannot read stdin: {e}")))?;
            buf
        }
    };
    let (host, port) = endpoint(args.addr.as_deref(), &args.conn)?;
    let deadline = Instant::now() + args.timeout;
    let mut client = Client::connect(&host, port, &args.conn, "0,0", args.timeout)?;
    let mut headers = vec![("destination", args.destination.as_str())];
    headers.extend(extra);
    if args.no_receipt {
        client.write(Command::Send, &headers, &body)?;
        // Still learn of an ERROR for the SEND: the broker reads frames in order.
        return client.disconnect(deadline);
    }
    let receipt = client.request(Command::Send, &headers, &body, deadline)?;
    let _ = writeln!(std::io::stdout(), "{receipt}");
    let _ = client.disconnect(deadline);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// recv

/// `stompd recv`: takes up to --count messages within --timeout and prints them.
pub fn recv(args: RecvArgs) -> ExitCode {
    match run_recv(&args) {
        Ok(got) if got >= args.count => ExitCode::SUCCESS,
        Ok(got) => {
            let _ = writeln!(
                std::io::stderr(),
                "stompd recv: timed out after {:?}: received {got} of {} message(s) from {}",
                args.timeout,
                args.count,
                args.destination
            );
            ExitCode::from(EXIT_TIMEOUT)
        }
        Err(f) => report("recv", &f),
    }
}

fn run_recv(args: &RecvArgs) -> Result<u32, Failure> {
    let (host, port) = endpoint(args.addr.as_deref(), &args.conn)?;
    let mut client = Client::connect(&host, port, &args.conn, "0,0", CONNECT_TIMEOUT)?;
    let id = format!("stompd-recv-{}", unique());
    let prefetch = args.count.to_string();
    let ack_mode = client.individual_ack_mode();
    client.write(
        Command::Subscribe,
        &[
            ("destination", args.destination.as_str()),
            ("id", id.as_str()),
            ("ack", ack_mode),
            ("prefetch-count", prefetch.as_str()),
            ("activemq.prefetchSize", prefetch.as_str()),
        ],
        b"",
    )?;
    let deadline = Instant::now() + args.timeout;
    let mut got = 0;
    let mut out = std::io::stdout().lock();
    while got < args.count {
        let Some(msg) = client.next_message(deadline)? else {
            break;
        };
        if args.ack == RecvAck::Auto {
            client.ack(Command::Ack, &msg, &[], None)?;
        }
        print_message(&mut out, &msg, args.headers)
            .map_err(|e| Failure::Local(format!("cannot write to stdout: {e}")))?;
        if args.ack == RecvAck::ClientIndividual {
            client.ack(Command::Ack, &msg, &[], None)?;
        }
        got += 1;
    }
    // Unacked extras (none with a broker that honours the prefetch) go back to the queue.
    client.write(Command::Unsubscribe, &[("id", id.as_str())], b"")?;
    if let Err(e) = client.disconnect(Instant::now() + CLOSE_TIMEOUT) {
        if got > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "stompd recv: warning: the broker did not confirm the acknowledgements ({e}); the messages may be delivered again"
            );
        }
    }
    Ok(got)
}

/// The body and a newline (none added when the body ends with one); with `headers`, first the
/// headers as NAME:VALUE lines (CR and LF in values shown as `\r`, `\n`) and an empty line.
fn print_message(out: &mut impl std::io::Write, msg: &Frame, headers: bool) -> std::io::Result<()> {
    if headers {
        for (name, value) in &msg.headers {
            let value = value.as_str().replace('\r', "\\r").replace('\n', "\\n");
            writeln!(out, "{}:{value}", name.as_str())?;
        }
        writeln!(out)?;
    }
    out.write_all(&msg.body)?;
    if !msg.body.ends_with(b"\n") {
        writeln!(out)?;
    }
    out.flush()
}

// ---------------------------------------------------------------------------------------------
// probe

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Skip,
}

/// One probe run: the connection, where it sends, and the verdicts so far.
struct Probe {
    client: Client,
    timeout: Duration,
    dest: String,
    sub: String,
    token: String,
    results: Vec<Status>,
    /// Set once the queue was drained by the flow itself.
    drained: bool,
}

/// `stompd probe`: a conformance check of any STOMP broker; exit 0 when every check passes.
pub fn probe(args: ProbeArgs) -> ExitCode {
    let (host, port) = match endpoint(args.addr.as_deref(), &args.conn) {
        Ok(e) => e,
        Err(f) => return report("probe", &f),
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "stompd probe {host}:{port}");
    let client = match Client::connect(&host, port, &args.conn, "0,1000", args.timeout) {
        Ok(c) => c,
        Err(f) => {
            let _ = writeln!(out, "FAIL  connect: {f}");
            let _ = writeln!(out, "summary: 0 passed, 1 failed, 0 skipped");
            return ExitCode::from(EXIT_LOCAL);
        }
    };
    let token = unique();
    let mut p = Probe {
        client,
        timeout: args.timeout,
        dest: format!("/queue/stompd-probe-{token}"),
        sub: format!("probe-{token}"),
        token,
        results: Vec::new(),
        drained: false,
    };
    p.connected();
    if let Err((step, f)) = p.run() {
        p.line(Status::Fail, step, &f.to_string());
        let _ = writeln!(
            std::io::stdout(),
            "        (stopped here; the remaining checks did not run)"
        );
    }
    if !p.drained {
        cleanup(&host, port, &args.conn, &p.dest, args.timeout);
    }
    let count = |s| p.results.iter().filter(|&&r| r == s).count();
    let (pass, fail, skip) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
    );
    let _ = writeln!(
        std::io::stdout(),
        "summary: {pass} passed, {fail} failed, {skip} skipped"
    );
    if fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LOCAL)
    }
}

/// A fatal step failure: the step's name and why.
type StepError = (&'static str, Failure);

impl Probe {
    fn line(&mut self, status: Status, name: &str, detail: &str) {
        self.results.push(status);
        let tag = match status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        let _ = writeln!(std::io::stdout(), "{tag}  {name}: {detail}");
    }

    fn check(&mut self, ok: bool, name: &str, detail: &str) {
        self.line(if ok { Status::Pass } else { Status::Fail }, name, detail);
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Reports the CONNECTED frame: version, server, heart-beat.
    fn connected(&mut self) {
        let c = &self.client.connected;
        let hb = c.get("heart-beat").unwrap_or("0,0").to_owned();
        let server_sends = hb
            .split_once(',')
            .and_then(|(sx, _)| sx.trim().parse::<u64>().ok())
            .map_or(0, |sx| if sx == 0 { 0 } else { sx.max(1000) });
        let detail = format!(
            "version={} server={:?} heart-beat={hb} (server sends every {}) session={}",
            self.client.version,
            c.get("server").unwrap_or("-"),
            if server_sends == 0 {
                "never".to_owned()
            } else {
                format!("{server_sends}ms")
            },
            c.get("session").unwrap_or("-"),
        );
        self.line(Status::Pass, "connect", &detail);
        let v12 = self.client.version == Version::V1_2;
        self.check(
            v12,
            "negotiates STOMP 1.2",
            &format!("offered 1.0,1.1,1.2, got {}", self.client.version),
        );
    }

    fn step<T>(name: &'static str, r: Result<T, Failure>) -> Result<T, StepError> {
        r.map_err(|f| (name, f))
    }

    /// The next MESSAGE or a fatal failure of step `name`.
    fn message(&mut self, name: &'static str) -> Result<Frame, StepError> {
        let deadline = self.deadline();
        match Self::step(name, self.client.next_message(deadline))? {
            Some(m) => Ok(m),
            None => Err((
                name,
                Failure::Conn(format!("no MESSAGE within {:?}", self.timeout)),
            )),
        }
    }

    fn send(
        &mut self,
        name: &'static str,
        body: &str,
        extra: &[(&str, &str)],
        receipt: bool,
    ) -> Result<(), StepError> {
        let mut headers = vec![
            ("destination", self.dest.as_str()),
            ("content-type", "text/plain"),
        ];
        headers.extend_from_slice(extra);
        let r = if receipt {
            let deadline = self.deadline();
            self.client
                .request(Command::Send, &headers, body.as_bytes(), deadline)
                .map(drop)
        } else {
            self.client.write(Command::Send, &headers, body.as_bytes())
        };
        Self::step(name, r)
    }

    fn run(&mut self) -> Result<(), StepError> {
        let v = self.client.version;
        let token = self.token.clone();

        // SEND with a receipt, a header whose value needs escaping (':' is `\c` in 1.1/1.2).
        let body1 = format!("stompd probe {token} first");
        self.send(
            "send with receipt",
            &body1,
            &[("stompd-probe", "a:b")],
            true,
        )?;
        self.line(
            Status::Pass,
            "send with receipt",
            &format!("RECEIPT for SEND to {}", self.dest),
        );

        // SUBSCRIBE client-individual, one message at a time.
        let mode = self.client.individual_ack_mode();
        let (dest, sub) = (self.dest.clone(), self.sub.clone());
        let deadline = self.deadline();
        let r = self.client.request(
            Command::Subscribe,
            &[
                ("destination", dest.as_str()),
                ("id", sub.as_str()),
                ("ack", mode),
                ("prefetch-count", "1"),
                ("activemq.prefetchSize", "1"),
            ],
            b"",
            deadline,
        );
        Self::step("subscribe", r)?;
        self.line(
            Status::Pass,
            "subscribe",
            &format!("ack:{mode} id:{sub}, RECEIPT received"),
        );

        let msg = self.message("receive")?;
        let mut problems = Vec::new();
        if msg.body.as_ref() != body1.as_bytes() {
            problems.push(format!(
                "body {:?} instead of {body1:?}",
                String::from_utf8_lossy(&msg.body)
            ));
        }
        if msg.get("destination") != Some(dest.as_str()) {
            problems.push(format!("destination header {:?}", msg.get("destination")));
        }
        if msg.get("message-id").is_none() {
            problems.push("no message-id header".to_owned());
        }
        if v >= Version::V1_1 && msg.get("subscription") != Some(sub.as_str()) {
            problems.push(format!("subscription header {:?}", msg.get("subscription")));
        }
        if v == Version::V1_2 && msg.get("ack").is_none() {
            problems.push("no ack header (1.2 requires it with client acks)".to_owned());
        }
        let detail = if problems.is_empty() {
            "MESSAGE with the body, destination, message-id, subscription and ack headers"
                .to_owned()
        } else {
            problems.join("; ")
        };
        self.check(problems.is_empty(), "receive", &detail);
        let escaped = msg.get("stompd-probe");
        let label = if v == Version::V1_0 {
            "header value with ':' round-trips (1.0: sent raw)"
        } else {
            "header value a\\cb round-trips as a:b"
        };
        self.check(escaped == Some("a:b"), label, &format!("got {escaped:?}"));

        // NACK: the message must come back.
        let acked = if v == Version::V1_0 {
            self.line(Status::Skip, "NACK redelivers", "STOMP 1.0 has no NACK");
            let deadline = self.deadline();
            Self::step(
                "ACK",
                self.client.ack(Command::Ack, &msg, &[], Some(deadline)),
            )?;
            msg
        } else {
            Self::step(
                "NACK redelivers",
                self.client.ack(Command::Nack, &msg, &[], None),
            )?;
            let again = self.message("NACK redelivers")?;
            let same = again.body == msg.body;
            let marks: Vec<String> = ["redelivered", "redelivery-count"]
                .iter()
                .filter_map(|h| again.get(h).map(|val| format!("{h}:{val}")))
                .collect();
            self.check(
                same,
                "NACK redelivers",
                &if same {
                    format!(
                        "the same message came back ({})",
                        if marks.is_empty() {
                            "no redelivery header".to_owned()
                        } else {
                            marks.join(" ")
                        }
                    )
                } else {
                    format!("got {:?} instead", String::from_utf8_lossy(&again.body))
                },
            );
            again
        };
        let deadline = self.deadline();
        Self::step(
            "ACK",
            self.client.ack(Command::Ack, &acked, &[], Some(deadline)),
        )?;
        self.line(Status::Pass, "ACK", "RECEIPT for the ACK");

        // Transaction commit: held back until COMMIT.
        let tx = format!("probe-tx-c-{token}");
        let body2 = format!("stompd probe {token} committed");
        let marker = format!("stompd probe {token} marker-1");
        Self::step(
            "transaction commit",
            self.client
                .write(Command::Begin, &[("transaction", tx.as_str())], b""),
        )?;
        self.send("transaction commit", &body2, &[("transaction", &tx)], false)?;
        self.send("transaction commit", &marker, &[], true)?;
        let first = self.message("transaction commit")?;
        Self::step(
            "transaction commit",
            self.client.ack(Command::Ack, &first, &[], None),
        )?;
        let deadline = self.deadline();
        Self::step(
            "transaction commit",
            self.client.request(
                Command::Commit,
                &[("transaction", tx.as_str())],
                b"",
                deadline,
            ),
        )?;
        let second = self.message("transaction commit")?;
        Self::step(
            "transaction commit",
            self.client.ack(Command::Ack, &second, &[], None),
        )?;
        let ok =
            first.body.as_ref() == marker.as_bytes() && second.body.as_ref() == body2.as_bytes();
        self.check(
            ok,
            "transaction commit",
            if ok {
                "the transactional SEND was held until COMMIT, then delivered"
            } else if first.body.as_ref() == body2.as_bytes() {
                "the transactional SEND was delivered before COMMIT"
            } else {
                "unexpected messages around the COMMIT"
            },
        );

        // Transaction abort: never delivered.
        let tx = format!("probe-tx-a-{token}");
        let body3 = format!("stompd probe {token} aborted");
        let marker = format!("stompd probe {token} marker-2");
        Self::step(
            "transaction abort",
            self.client
                .write(Command::Begin, &[("transaction", tx.as_str())], b""),
        )?;
        self.send("transaction abort", &body3, &[("transaction", &tx)], false)?;
        let deadline = self.deadline();
        Self::step(
            "transaction abort",
            self.client.request(
                Command::Abort,
                &[("transaction", tx.as_str())],
                b"",
                deadline,
            ),
        )?;
        self.send("transaction abort", &marker, &[], true)?;
        let next = self.message("transaction abort")?;
        let deadline = self.deadline();
        Self::step(
            "transaction abort",
            self.client.ack(Command::Ack, &next, &[], Some(deadline)),
        )?;
        let ok = next.body.as_ref() == marker.as_bytes();
        self.check(
            ok,
            "transaction abort",
            if ok {
                "the aborted SEND was discarded"
            } else {
                "the aborted SEND was delivered"
            },
        );

        // UNSUBSCRIBE with a receipt.
        let deadline = self.deadline();
        Self::step(
            "unsubscribe",
            self.client
                .request(Command::Unsubscribe, &[("id", sub.as_str())], b"", deadline),
        )?;
        self.line(Status::Pass, "unsubscribe", "RECEIPT for the UNSUBSCRIBE");

        // Nothing may be left: drain with an auto-ack subscription until quiet.
        let left = Self::step("queue empty afterwards", self.drain())?;
        self.drained = true;
        self.check(
            left == 0,
            "queue empty afterwards",
            &if left == 0 {
                "no message left after the ACKs".to_owned()
            } else {
                format!("{left} message(s) left over (drained)")
            },
        );

        let deadline = self.deadline();
        Self::step("disconnect", self.client.disconnect(deadline))?;
        self.line(Status::Pass, "disconnect", "RECEIPT for the DISCONNECT");
        Ok(())
    }

    /// Subscribes with ack:auto and counts what arrives until a quiet period passes.
    fn drain(&mut self) -> Result<usize, Failure> {
        drain_on(&mut self.client, &self.dest, self.timeout)
    }
}

/// Consumes `dest` with an auto-ack subscription until nothing arrives for a quiet period.
fn drain_on(client: &mut Client, dest: &str, timeout: Duration) -> Result<usize, Failure> {
    let id = format!("probe-drain-{}", unique());
    client.request(
        Command::Subscribe,
        &[("destination", dest), ("id", id.as_str()), ("ack", "auto")],
        b"",
        Instant::now() + timeout,
    )?;
    let quiet = timeout.min(Duration::from_secs(1));
    let stop = Instant::now() + timeout * 2;
    let mut n = 0;
    while Instant::now() < stop {
        if client
            .next_message((Instant::now() + quiet).min(stop))?
            .is_none()
        {
            break;
        }
        n += 1;
    }
    client.request(
        Command::Unsubscribe,
        &[("id", id.as_str())],
        b"",
        Instant::now() + timeout,
    )?;
    Ok(n)
}

/// After a failed run: a fresh connection drains what the probe may have left behind.
fn cleanup(host: &str, port: u16, conn: &ConnArgs, dest: &str, timeout: Duration) {
    let result = Client::connect(host, port, conn, "0,0", timeout).and_then(|mut c| {
        let n = drain_on(&mut c, dest, timeout)?;
        let _ = c.disconnect(Instant::now() + timeout);
        Ok(n)
    });
    let mut out = std::io::stdout();
    let _ = match result {
        Ok(n) => writeln!(out, "        cleanup: drained {n} message(s) from {dest}"),
        Err(e) => writeln!(out, "        cleanup of {dest} failed: {e}"),
    };
}

/// `stompd redrive`: asks a running broker's admin API to move a dead-letter queue's messages
/// back to their original queues. Returns the JSON answer.
pub fn redrive(
    admin: std::net::SocketAddr,
    queue: &str,
    user: Option<&str>,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let name = queue.strip_prefix("/queue/").unwrap_or(queue);
    let path: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut req = format!(
        "POST /api/queues/{path}/redrive HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n",
        admin.ip()
    );
    if let Some(cred) = user {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(cred);
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let ok = head
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    if ok {
        Ok(body.trim().to_owned())
    } else {
        Err(format!(
            "{} {}",
            head.lines().next().unwrap_or("no answer"),
            body.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnArgs {
        ConnArgs {
            host: None,
            port: None,
            login: None,
            passcode: None,
            vhost: "/".to_owned(),
        }
    }

    #[test]
    fn endpoints() {
        let c = conn();
        let ok = |a: Option<&str>| endpoint(a, &c).ok();
        assert_eq!(ok(None), Some(("127.0.0.1".to_owned(), 61613)));
        assert_eq!(ok(Some("mq:1234")), Some(("mq".to_owned(), 1234)));
        assert_eq!(ok(Some("mq")), Some(("mq".to_owned(), 61613)));
        assert_eq!(ok(Some("[::1]:99")), Some(("::1".to_owned(), 99)));
        assert_eq!(ok(Some("[::1]")), Some(("::1".to_owned(), 61613)));
        assert_eq!(ok(Some("mq:x")), None);
        assert_eq!(ok(Some("::1:5")), None);
        assert_eq!(ok(Some(":5")), None);
        let c = ConnArgs {
            host: Some("h".to_owned()),
            port: Some(7),
            ..conn()
        };
        assert_eq!(endpoint(None, &c).ok(), Some(("h".to_owned(), 7)));
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("x").is_err());
    }

    #[test]
    fn error_line_names_code_and_message() {
        let f = Frame::new(Command::Error)
            .with_header("code", "queue-full")
            .with_header("message", "queue /queue/a is full")
            .with_body(&b"details\nhere"[..]);
        assert_eq!(
            describe_error(&f),
            "ERROR code=queue-full: queue /queue/a is full (details here)"
        );
    }

    #[test]
    fn printed_message() {
        let f = Frame::new(Command::Message)
            .with_header("k", "a\nb")
            .with_body(&b"hi"[..]);
        let mut out = Vec::new();
        print_message(&mut out, &f, true).unwrap();
        assert_eq!(out, b"k:a\\nb\n\nhi\n");
        let mut out = Vec::new();
        print_message(&mut out, &f.with_body(&b"x\n"[..]), false).unwrap();
        assert_eq!(out, b"x\n");
    }
}
