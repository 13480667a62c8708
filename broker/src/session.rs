//! One task per connection: the STOMP handshake, frames in, MESSAGE/RECEIPT/ERROR out.
//!
//! The task owns both halves of the stream and never blocks on one while the other needs
//! service: a single `select!` reads frames, writes the outgoing buffer, takes deliveries from its
//! channel and keeps heart-beats. Everything ready is encoded into one buffer and written with as
//! few syscalls as the socket allows. Backpressure: while the outgoing buffer is over its limit the
//! session takes no new deliveries and reads no new frames, so TCP pushes back on the client;
//! queues stop handing it messages once its window is used up.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use stompd_config::{Acknowledgement, Config};
use stompd_protocol::{
    encode_frame, negotiate_heartbeat, negotiate_version, AckMode, ByteStr, ClientFrame, Command,
    Frame, HeartBeat, Inbound, Limits, StompCodec, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{temp_name, Broker, Destination, Intent, Principal, TEMP_QUEUE_PREFIX};
use crate::error::ClientError;
use crate::message::{now_ms, Message, SharedMessage};
use crate::queue::{
    ConsumerId, ConsumerSpec, DeadLetter, Delivery, EnqueueError, Queue, QueueHost,
};
use crate::registry::SessionHandle;
use crate::storage::{Commit, ErrorSink, JournalError};
use crate::topic::Topic;
use stompd_config::Overflow;

/// What queues and topics hand a session.
#[derive(Debug)]
pub enum SessionEvent {
    Deliver {
        consumer: ConsumerId,
        delivery: Delivery,
    },
    TopicMessage {
        consumer: ConsumerId,
        seq: u64,
        msg: SharedMessage,
    },
    /// The subscription ended on the broker's side (queue deleted, slow topic subscriber).
    Cancelled {
        consumer: ConsumerId,
        reason: &'static str,
    },
    /// A delivery was taken back because it was not acknowledged within the ack timeout.
    AckTimeout { consumer: ConsumerId, seq: u64 },
    /// The queue is closed and drained: no message will ever come again (until reopened).
    EndOfStream { consumer: ConsumerId },
    /// A SEND sent without a receipt could not be stored (reported by the journal writer).
    StoreFailed(Box<JournalError>),
    /// The subscription's queue was closed to producers (or reopened) by an operator.
    QueueClosed { consumer: ConsumerId, closed: bool },
}

/// A session's inbox. Unbounded as a channel, bounded by the credit each queue grants and the
/// per-subscriber limit each topic keeps.
pub type Sink = mpsc::UnboundedSender<SessionEvent>;

/// Messages an auto-ack subscription may have handed to the session and not yet written.
const AUTO_WINDOW: u32 = 2048;
/// Deliveries taken from the inbox per turn of the loop, so reading and writing get their turn.
const EVENTS_PER_TURN: usize = 1024;
/// How long a closing connection is read (and discarded) after our FIN so the ERROR is not lost
/// to a reset.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;
/// Read buffer growth: a connection whose last read filled the buffer gets this much room next.
const READ_CHUNK: usize = 64 * 1024;
/// Buffers of a new or idle connection: most connections are idle most of the time, and 10,000
/// of them must fit in a few tens of MiB, so buffers start small and shrink back when idle.
const IDLE_READ_BUF: usize = 1024;
/// Growth of the read buffer when the last read did not fill it.
const SMALL_READ_CHUNK: usize = 4 * 1024;
/// A connection whose buffers are empty and that has not read or written for this long gives
/// back buffers larger than the idle size.
const SHRINK_AFTER: Duration = Duration::from_secs(2);

pub const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2";

/// Reserved destination of the opt-in event channel: MESSAGE frames about this connection
/// (subscription cancelled, ack timeout), the soft errors STOMP lacks.
pub const EVENTS_DESTINATION: &str = "/sys/events";
/// Acknowledgements of deliveries already taken back by an ack timeout are accepted as no-ops;
/// this many are remembered.
const LATE_ACKS_REMEMBERED: usize = 4096;

/// What an ACK/NACK id designates.
enum AckTarget {
    /// A queue delivery: the consumer and the index in its unacked list.
    Queue(ConsumerId, usize),
    /// A message seen through a browser subscription: ACK removes it from the queue.
    Browse(Arc<Queue>, u64),
    /// Nothing to do: a topic message, an end-of-stream marker, or a delivery already taken
    /// back by the ack timeout.
    Ignore,
}

/// Runs one connection to its end.
///
/// `cert_cn`: the common name of a verified client certificate (TLS listeners), which logs the
/// client in as the user of that name.
pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    cert_cn: Option<String>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let id = broker.next_id();
    let span = tracing::info_span!("session", id, %peer, login = tracing::field::Empty);
    let handle = Arc::new(SessionHandle {
        id,
        peer,
        connected_at_ms: now_ms(),
        counters: Default::default(),
        subscriptions: Default::default(),
        login: Default::default(),
        version: Default::default(),
        close: shutdown.child_token(),
    });
    broker.registry.register(handle.clone());
    async move {
        let mut session = Session::new(id, broker, handle);
        session.peer = peer;
        session.cert_cn = cert_cn;
        let close = session.handle.close.clone();
        session.serve(stream, close).await;
        session.teardown();
    }
    .instrument(span)
    .await
}

struct Subscription {
    client_id: ByteStr,
    ack: AckMode,
    target: Target,
    /// Delivered and not yet acknowledged, in delivery order: (ack tag, seq).
    unacked: VecDeque<(u64, u64)>,
    /// Topic subscriptions: messages handed to us and not yet encoded.
    pending: Option<Arc<AtomicU32>>,
    /// The `destination` MESSAGE frames of this subscription carry (the topic, for a durable
    /// subscription; the name the client used, for a temporary queue).
    shown: ByteStr,
    /// Durable topic subscription: its topic and key.
    durable: Option<(Arc<Topic>, String)>,
    /// RabbitMQ's `auto-delete:true` on a durable subscription: removed (with its stored
    /// messages) when its last subscriber leaves.
    auto_delete: bool,
}

#[derive(Clone)]
enum Target {
    Queue(Arc<Queue>),
    Topic(Arc<Topic>),
}

impl Target {
    fn destination(&self) -> &ByteStr {
        match self {
            Target::Queue(q) => q.destination(),
            Target::Topic(t) => t.destination(),
        }
    }
}

enum TxOp {
    Send {
        destination: ByteStr,
        frame: Frame,
    },
    Ack {
        id: ByteStr,
        subscription: Option<ByteStr>,
        nack: bool,
        requeue: bool,
    },
}

/// A reply that must wait until the journal has what it confirms: RECEIPTs go out in the order
/// their frames arrived, each only once every earlier journal write it follows is durable.
struct Waiting {
    commit: Option<Commit>,
    receipt: Option<ByteStr>,
}

impl Future for Waiting {
    type Output = (Option<ByteStr>, Result<(), JournalError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match self.commit.as_mut() {
            Some(c) => match Pin::new(c).poll(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            },
            None => Ok(()),
        };
        Poll::Ready((self.receipt.take(), result))
    }
}

/// Journal writes a session may have outstanding before it stops reading: bounds the memory a
/// fire-and-forget producer can make the broker hold while the disk catches up.
const MAX_PENDING_COMMITS: usize = 8192;

/// What one ACK/NACK covers: the queue, the consumer, and the seqs.
type Acked = (Arc<Queue>, ConsumerId, Vec<u64>);

/// A SEND waiting for room in a full queue whose overflow policy is `block`.
struct Blocked {
    queue: Arc<Queue>,
    destination: String,
    msg: SharedMessage,
    receipt: Option<ByteStr>,
    since: Instant,
    deadline: Instant,
}

/// How often a blocked producer retries its SEND.
const BLOCK_RETRY: Duration = Duration::from_millis(10);

/// Why the loop ended.
enum End {
    /// The peer closed or the socket failed; nothing more can be written.
    Gone,
    /// Close after writing what is buffered (DISCONNECT, ERROR).
    Graceful,
}

/// A CONNECT that passed its syntax checks and waits for authentication.
struct ConnectRequest {
    version: Version,
    login: Option<String>,
    passcode: Option<String>,
    heart_beat: HeartBeat,
}

struct Session {
    id: u64,
    /// The CONNECT's `client-id` (ActiveMQ durable subscriptions).
    client_id: Option<String>,
    /// Set while handling an UNSUBSCRIBE that also removes its durable subscription.
    remove_durable_on_unsubscribe: Option<ByteStr>,
    peer: SocketAddr,
    cert_cn: Option<String>,
    connect_req: Option<ConnectRequest>,
    handle: Arc<SessionHandle>,
    broker: Arc<Broker>,
    config: Arc<Config>,
    version: Option<Version>,
    principal: Principal,
    codec: StompCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes ever appended to / written from `wbuf`: positions for settling auto acks.
    appended: u64,
    written: u64,
    tx: Sink,
    rx: mpsc::UnboundedReceiver<SessionEvent>,
    subs_by_id: HashMap<ByteStr, ConsumerId>,
    subs: HashMap<ConsumerId, Subscription>,
    ack_tags: HashMap<u64, ConsumerId>,
    next_tag: u64,
    txs: HashMap<ByteStr, Vec<TxOp>>,
    /// Auto-ack deliveries encoded but not yet handed to the kernel: (end position, consumer, seq).
    unsettled: VecDeque<(u64, ConsumerId, u64)>,
    send_every: Option<Duration>,
    expect_every: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
    scratch_id: String,
    scratch_ack: String,
    scratch_count: String,
    /// Set when heart-beat intervals change (CONNECT), so the timer stops waiting for the connect deadline.
    rearm_timer: bool,
    pending: FuturesOrdered<Waiting>,
    /// Browser subscriptions: id -> (number used in ack ids, queue).
    browses: HashMap<ByteStr, (u64, Arc<Queue>)>,
    /// Deliveries taken back by the ack timeout: (tag, consumer, seq).
    late: VecDeque<(u64, ConsumerId, u64)>,
    /// Subscription id of the event channel, if the client subscribed to it.
    events_sub: Option<ByteStr>,
    next_event: u64,
    /// Set by an event that must end the connection (after the loop's current turn).
    fatal: Option<ClientError>,
    blocked: Option<Blocked>,
    /// Where the journal reports a failed fire-and-forget SEND: this session's own inbox.
    on_store_error: ErrorSink,
    /// Queues this connection was told are near a limit (`quota-near`), until they drop below.
    quota_warned: std::collections::HashSet<ByteStr>,
}

impl Session {
    fn new(id: u64, broker: Arc<Broker>, handle: Arc<SessionHandle>) -> Session {
        let config = broker.config();
        let l = &config.limits;
        let limits = Limits {
            max_frame_bytes: l.max_frame_bytes,
            max_header_line_bytes: l.max_header_line_bytes,
            max_headers: l.max_headers,
            max_body_bytes: l.max_body_bytes,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let inbox = tx.clone();
        let on_store_error: ErrorSink = Arc::new(move |e: &JournalError| {
            let _ = inbox.send(SessionEvent::StoreFailed(Box::new(e.clone())));
        });
        Session {
            on_store_error,
            quota_warned: Default::default(),
            id,
            client_id: None,
            remove_durable_on_unsubscribe: None,
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            cert_cn: None,
            connect_req: None,
            handle,
            broker,
            config,
            version: None,
            principal: Principal::anonymous(),
            codec: StompCodec::server(limits),
            rbuf: BytesMut::with_capacity(IDLE_READ_BUF),
            wbuf: BytesMut::new(),
            appended: 0,
            written: 0,
            tx,
            rx,
            subs_by_id: HashMap::new(),
            subs: HashMap::new(),
            ack_tags: HashMap::new(),
            next_tag: 1,
            txs: HashMap::new(),
            unsettled: VecDeque::new(),
            send_every: None,
            expect_every: None,
            last_read: now,
            last_write: now,
            scratch_id: String::new(),
            scratch_ack: String::new(),
            scratch_count: String::new(),
            rearm_timer: false,
            pending: FuturesOrdered::new(),
            browses: HashMap::new(),
            late: VecDeque::new(),
            events_sub: None,
            next_event: 1,
            fatal: None,
            blocked: None,
        }
    }

    async fn serve<S>(&mut self, stream: S, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let connect_deadline = Instant::now() + self.config.server.connect_timeout();
        let write_timeout = self.config.limits.write_timeout();
        let outbox_limit = self.config.limits.outbox_bytes.max(64 * 1024);
        let timer = sleep_until(connect_deadline);
        tokio::pin!(timer);
        let mut stalled_since: Option<Instant> = None;

        let end = loop {
            let can_take = self.wbuf.len() < outbox_limit;
            let spare_before = self.rbuf.capacity() - self.rbuf.len();
            if !self.wbuf.is_empty() {
                // Output is waiting: make sure the timer wakes us to check for a stalled reader,
                // even when no heart-beat keeps it short.
                let check = Instant::now() + write_timeout.min(Duration::from_secs(1));
                if timer.deadline() > check {
                    timer.as_mut().reset(check);
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.push_error(ClientError::new("shutting-down", "server shutting down"));
                    break End::Graceful;
                }
                res = writer.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    match res {
                        Ok(0) | Err(_) => break End::Gone,
                        Ok(n) => {
                            self.written += n as u64;
                            self.handle.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                            self.last_write = Instant::now();
                            stalled_since = None;
                            self.settle_auto_acks();
                        }
                    }
                }
                Some((receipt, result)) = self.pending.next(), if !self.pending.is_empty() => {
                    if let Err(err) = self.on_durable(receipt, result) {
                        self.push_error(err);
                        break End::Graceful;
                    }
                }
                _ = tokio::time::sleep(BLOCK_RETRY), if self.blocked.is_some() => {
                    match self.retry_blocked() {
                        Ok(()) => {}
                        Err(err) => {
                            self.push_error(err);
                            break End::Graceful;
                        }
                    }
                }
                res = reader.read_buf(&mut self.rbuf), if can_take && self.blocked.is_none() && self.pending.len() < MAX_PENDING_COMMITS => {
                    match res {
                        Ok(0) => {
                            tracing::debug!("peer closed the connection");
                            break End::Gone;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            break End::Gone;
                        }
                        Ok(n) => {
                            self.handle.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                            self.last_read = Instant::now();
                            let mut outcome = self.process_input();
                            if let (Ok(true), Some(req)) = (&outcome, self.connect_req.take()) {
                                let login = tokio::select! {
                                    _ = shutdown.cancelled() => Err(ClientError::new("shutting-down", "server shutting down")),
                                    _ = tokio::time::sleep_until(connect_deadline) => Err(ClientError::new("connect-timeout", "authentication did not complete in time")),
                                    // Boxed: only the CONNECT needs it, every task would carry it.
                                    r = Box::pin(self.login(&req)) => r,
                                };
                                outcome = match login {
                                    Ok(principal) => {
                                        self.complete_connect(req, principal);
                                        self.process_input()
                                    }
                                    Err(e) => Err(e),
                                };
                            }
                            match outcome {
                                Ok(true) => {}
                                Ok(false) => break End::Graceful,
                                Err(err) => {
                                    tracing::info!(code = err.code, error = %err.message, "client error; closing");
                                    self.push_error(err);
                                    break End::Graceful;
                                }
                            }
                            if std::mem::take(&mut self.rearm_timer) {
                                timer.as_mut().reset(self.next_timer(Instant::now(), write_timeout));
                            }
                            let spare = self.rbuf.capacity() - self.rbuf.len();
                            if n >= spare_before && spare < 1024 {
                                // The read filled the buffer: more is coming, read big.
                                self.rbuf.reserve(READ_CHUNK);
                            } else if spare < 128 {
                                // Room for heart-beats and small frames; a partial frame gets more.
                                self.rbuf.reserve(if self.rbuf.is_empty() { IDLE_READ_BUF } else { SMALL_READ_CHUNK });
                            }
                        }
                    }
                }
                ev = self.rx.recv(), if can_take && self.version.is_some() => {
                    if let Some(ev) = ev {
                        self.on_event(ev);
                        let mut n = 1;
                        while n < EVENTS_PER_TURN && self.wbuf.len() < outbox_limit {
                            match self.rx.try_recv() {
                                Ok(ev) => self.on_event(ev),
                                Err(_) => break,
                            }
                            n += 1;
                        }
                    }
                    if let Some(err) = self.fatal.take() {
                        self.push_error(err);
                        break End::Graceful;
                    }
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if self.version.is_none() {
                        if now >= connect_deadline {
                            tracing::info!("no CONNECT within the connect timeout; closing");
                            break End::Gone;
                        }
                        timer.as_mut().reset(connect_deadline);
                        continue;
                    }
                    if let Some(every) = self.expect_every {
                        let limit = every.mul_f64(self.config.heartbeat.grace.max(1.0));
                        if now.duration_since(self.last_read) > limit {
                            tracing::info!(silent_ms = now.duration_since(self.last_read).as_millis() as u64, "client missed its heart-beats; closing");
                            self.push_error(ClientError::new("heartbeat-timeout", "no data or heart-beat received within the negotiated interval"));
                            break End::Graceful;
                        }
                    }
                    if let Some(every) = self.send_every {
                        if self.wbuf.is_empty() && now.duration_since(self.last_write) >= every {
                            self.push_bytes(b"\n");
                        }
                    }
                    if !self.wbuf.is_empty() {
                        let since = *stalled_since.get_or_insert(now);
                        if now.duration_since(since) > write_timeout {
                            tracing::info!(pending = self.wbuf.len(), "client stopped reading; closing");
                            break End::Gone;
                        }
                    }
                    self.shrink_if_idle(now);
                    timer.as_mut().reset(self.next_timer(now, write_timeout));
                }
            }
        };

        if let End::Graceful = end {
            // Receipts still waiting for the disk go out first (a DISCONNECT receipt promises
            // everything before it was processed).
            let drain = async {
                while let Some((receipt, result)) = self.pending.next().await {
                    if let Err(err) = self.on_durable(receipt, result) {
                        self.push_error(err);
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(write_timeout, drain).await;
            // Write what is buffered (RECEIPT, ERROR) within the write timeout, then FIN, then
            // read and discard briefly so the peer sees our last frame rather than a reset.
            let flush = async {
                while !self.wbuf.is_empty() {
                    match writer.write_buf(&mut self.wbuf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => self.written += n as u64,
                    }
                }
                let _ = writer.flush().await;
                let _ = writer.shutdown().await;
            };
            if tokio::time::timeout(write_timeout, flush).await.is_ok() {
                self.settle_auto_acks();
                // Bounded in time and bytes: a client that keeps blasting is simply cut off.
                // On the heap: an array here would be part of every connection's task.
                let mut sink = vec![0u8; 4096];
                let _ = tokio::time::timeout(LINGER, async {
                    let mut left = LINGER_BYTES;
                    while let Ok(n) = reader.read(&mut sink).await {
                        if n == 0 || n >= left {
                            break;
                        }
                        left -= n;
                    }
                })
                .await;
            }
        }
    }

    fn next_timer(&self, now: Instant, write_timeout: Duration) -> Instant {
        let mut next = now + Duration::from_secs(3600);
        if let Some(every) = self.send_every {
            next = next.min(self.last_write + every);
        }
        if let Some(every) = self.expect_every {
            next = next.min(
                self.last_read
                    + every.mul_f64(self.config.heartbeat.grace.max(1.0))
                    + Duration::from_millis(1),
            );
        }
        if !self.wbuf.is_empty() {
            next = next.min(now + write_timeout.min(Duration::from_secs(1)));
        }
        if self.rbuf.capacity() > IDLE_READ_BUF || self.wbuf.capacity() > 0 {
            // Wake when the connection may have gone quiet, to give its buffers back.
            let quiet_at = self.last_read.max(self.last_write) + SHRINK_AFTER;
            next = next.min(if quiet_at > now {
                quiet_at
            } else {
                now + SHRINK_AFTER
            });
        }
        next.max(now + Duration::from_millis(1))
    }

    /// Decodes and handles every complete frame in the read buffer. Ok(false) = close gracefully.
    fn process_input(&mut self) -> Result<bool, ClientError> {
        loop {
            if self.connect_req.is_some() || self.blocked.is_some() {
                // Frames after CONNECT wait until the client is authenticated.
                return Ok(true);
            }
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(Inbound::HeartBeat)) => {}
                Ok(Some(Inbound::Frame(frame))) => {
                    self.handle
                        .counters
                        .frames_in
                        .fetch_add(1, Ordering::Relaxed);
                    if !self.on_frame(frame)? {
                        return Ok(false);
                    }
                }
                Ok(None) => return Ok(true),
                Err(e) => {
                    let receipt = self.codec.take_failed_receipt().map(ByteStr::from);
                    return Err(ClientError::from(&e).with_receipt(receipt.as_ref()));
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<bool, ClientError> {
        let receipt = frame.get_bytestr("receipt").cloned();
        let Some(version) = self.version else {
            return self.on_connect(frame).map(|()| true);
        };
        // UNSUBSCRIBE naming a durable subscription removes it for good (all dialects).
        if frame.command == Command::Unsubscribe {
            if let Some(id) = frame.get_bytestr("id").cloned() {
                let removes = frame.get("durable-subscription-name").is_some()
                    || frame.get("activemq.subscriptionName").is_some()
                    || frame
                        .get("durable")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                if removes {
                    self.remove_durable_on_unsubscribe = Some(id);
                }
            }
        }
        // NACK's `requeue:false` (RabbitMQ) asks for dead-lettering instead of redelivery.
        let requeue = !frame
            .get("requeue")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        let frame = ClientFrame::from_frame(frame, version)
            .map_err(|e| ClientError::from(e).with_receipt(receipt.as_ref()))?;
        self.on_client_frame(frame, requeue)
            .map_err(|e| e.with_receipt(receipt.as_ref()))
    }

    fn on_connect(&mut self, frame: Frame) -> Result<(), ClientError> {
        if !matches!(frame.command, Command::Connect | Command::Stomp) {
            return Err(ClientError::new(
                "not-connected",
                format!(
                    "expected CONNECT or STOMP as the first frame, got {}",
                    frame.command.as_str()
                ),
            ));
        }
        let version = negotiate_version(frame.get("accept-version"), &Version::ALL).ok_or_else(|| {
            ClientError::new(
                "unsupported-version",
                format!("none of the requested versions is supported; supported versions are {SUPPORTED_VERSIONS}"),
            )
        })?;
        // Check the handshake with the negotiated version's rules.
        let ClientFrame::Connect {
            login,
            passcode,
            heart_beat,
            frame,
            ..
        } = ClientFrame::from_frame(frame, version)?
        else {
            return Err(ClientError::new("bad-frame", "malformed CONNECT frame"));
        };
        self.client_id = frame.get("client-id").map(str::to_owned);
        self.connect_req = Some(ConnectRequest {
            version,
            login: login.map(|l| l.to_string()),
            passcode: passcode.map(|p| p.to_string()),
            heart_beat,
        });
        Ok(())
    }

    /// Checks the CONNECT's credentials (a certificate, login and passcode, or anonymous access
    /// where the configuration allows it).
    async fn login(&self, req: &ConnectRequest) -> Result<Principal, ClientError> {
        let auth = self.broker.authenticator();
        if auth.is_open() && !self.peer.ip().is_loopback() {
            // A broker without access rules serves only this machine.
            tracing::info!(peer = %self.peer, "refused: no access rules, and the peer is not on loopback");
            return Err(ClientError::new(
                "access-denied",
                "authentication failed: this broker has no access rules and accepts only loopback clients",
            ));
        }
        match auth
            .login(
                self.cert_cn.clone(),
                req.login.clone(),
                req.passcode.clone(),
            )
            .await
        {
            Ok(p) => Ok(p),
            Err(_) => {
                tracing::info!(peer = %self.peer, login = ?req.login, "authentication failed");
                Err(ClientError::new("access-denied", "authentication failed"))
            }
        }
    }

    fn complete_connect(&mut self, req: ConnectRequest, principal: Principal) {
        let ConnectRequest {
            version,
            heart_beat,
            ..
        } = req;
        self.principal = principal;
        tracing::Span::current().record("login", self.principal.name.as_str());
        *self.handle.login.lock() = Some(self.principal.name.clone());
        let hb = &self.config.heartbeat;
        let ours = HeartBeat {
            cx: hb.send_ms.min(u32::MAX as u64) as u32,
            cy: hb.expect_ms.min(u32::MAX as u64) as u32,
        };
        let (send, expect) = if version == Version::V1_0 {
            (None, None)
        } else {
            negotiate_heartbeat(ours, heart_beat)
        };
        let (min, max) = (hb.min(), hb.max());
        self.send_every = send.map(|d| d.clamp(min, max.max(min)));
        self.expect_every = expect.map(|d| d.max(min));
        self.version = Some(version);
        self.codec.set_version(version);
        self.rearm_timer = true;
        *self.handle.version.lock() = Some(version.as_str());

        let session = format!("stompd-{}", self.id);
        let server = format!("{}/{}", self.config.server.name, env!("CARGO_PKG_VERSION"));
        let heart_beat = format!("{},{}", ours.cx, ours.cy);
        let mut headers: Vec<(&str, &str)> = vec![
            ("version", version.as_str()),
            ("server", &server),
            ("session", &session),
        ];
        if version != Version::V1_0 {
            headers.push(("heart-beat", &heart_beat));
        }
        let before = self.wbuf.len();
        encode_frame(&mut self.wbuf, version, Command::Connected, headers, b"");
        self.note_frame(before);
        tracing::info!(
            version = version.as_str(),
            login = %self.principal.name,
            send_heartbeat_ms = self.send_every.map(|d| d.as_millis() as u64),
            expect_heartbeat_ms = self.expect_every.map(|d| d.as_millis() as u64),
            "connected"
        );
    }

    fn on_client_frame(&mut self, frame: ClientFrame, requeue: bool) -> Result<bool, ClientError> {
        match frame {
            ClientFrame::Connect { .. } => {
                return Err(ClientError::new(
                    "already-connected",
                    "CONNECT received on a connected session",
                ));
            }
            ClientFrame::Send {
                destination,
                transaction,
                receipt,
                frame,
            } => match transaction {
                Some(tx) => {
                    let max = self.config.limits.max_transaction_frames;
                    let ops = self.tx_ops(&tx)?;
                    if ops.len() >= max {
                        return Err(ClientError::new(
                            "transaction-too-large",
                            format!("transaction {tx} holds more than {max} frames"),
                        ));
                    }
                    ops.push(TxOp::Send { destination, frame });
                    self.receipt(receipt);
                }
                None => {
                    let commit = self.route_send(&destination, frame, receipt.is_some())?;
                    match self.blocked.as_mut() {
                        // The RECEIPT waits until the message is in.
                        Some(b) => b.receipt = receipt,
                        None => self.track(commit, receipt),
                    }
                }
            },
            ClientFrame::Subscribe {
                id,
                destination,
                ack,
                receipt,
                frame,
            } => {
                self.subscribe(id, &destination, ack, &frame)?;
                self.receipt(receipt);
            }
            ClientFrame::Unsubscribe { id, receipt } => {
                if self.browses.remove(&id).is_some() || self.events_sub.as_ref() == Some(&id) {
                    if self.events_sub.as_ref() == Some(&id) {
                        self.events_sub = None;
                    }
                    self.receipt(receipt);
                    return Ok(true);
                }
                let Some(consumer) = self.subs_by_id.remove(&id) else {
                    return Err(ClientError::new(
                        "unknown-subscription",
                        format!("no subscription with id {id}"),
                    ));
                };
                self.unsubscribe(consumer);
                self.receipt(receipt);
            }
            ClientFrame::Ack {
                id,
                subscription,
                transaction,
                receipt,
            } => {
                let commit = self.ack_or_nack(id, subscription, transaction, false, true)?;
                self.track(commit, receipt);
            }
            ClientFrame::Nack {
                id,
                subscription,
                transaction,
                receipt,
            } => {
                let commit = self.ack_or_nack(id, subscription, transaction, true, requeue)?;
                self.track(commit, receipt);
            }
            ClientFrame::Begin {
                transaction,
                receipt,
            } => {
                if self.txs.contains_key(&transaction) {
                    return Err(ClientError::new(
                        "duplicate-transaction",
                        format!("transaction {transaction} is already open"),
                    ));
                }
                let max = self.config.limits.max_transactions;
                if self.txs.len() >= max {
                    return Err(ClientError::new(
                        "too-many-transactions",
                        format!("at most {max} transactions may be open on one connection"),
                    ));
                }
                self.txs.insert(transaction, Vec::new());
                self.receipt(receipt);
            }
            ClientFrame::Commit {
                transaction,
                receipt,
            } => {
                let Some(ops) = self.txs.remove(&transaction) else {
                    return Err(unknown_tx(&transaction));
                };
                let commit = self.commit(ops)?;
                self.track(commit, receipt);
            }
            ClientFrame::Abort {
                transaction,
                receipt,
            } => {
                if self.txs.remove(&transaction).is_none() {
                    return Err(unknown_tx(&transaction));
                }
                self.receipt(receipt);
            }
            ClientFrame::Disconnect { receipt } => {
                self.receipt(receipt);
                tracing::debug!("client disconnected");
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn tx_ops(&mut self, tx: &ByteStr) -> Result<&mut Vec<TxOp>, ClientError> {
        self.txs.get_mut(tx).ok_or_else(|| unknown_tx(tx))
    }

    /// Applies a transaction. Every SEND is checked against its queue first, so a COMMIT does
    /// not stop half-way on a full or closed queue; then every queue touched is locked (in a
    /// fixed order), all SENDs and ACKs take effect, and their journal records are appended as
    /// one batch: after a crash all of them are there, or none.
    fn commit(&mut self, ops: Vec<TxOp>) -> Result<Option<Commit>, ClientError> {
        enum Planned {
            Enqueue(Arc<Queue>, String, Message),
            Publish(Arc<Topic>, Message),
            Ack(Arc<Queue>, ConsumerId, Vec<u64>, bool, bool),
        }
        let now = now_ms();
        let mut planned = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                TxOp::Send { destination, frame } => {
                    let (dest, target) = self.resolve_send(&destination)?;
                    let frame = self.rewrite_reply_to(frame);
                    planned.push(match target {
                        Destination::Queue(q) => {
                            let (priority, ttl) = q.message_defaults();
                            let msg = Message::from_send(
                                frame,
                                q.destination().clone(),
                                priority,
                                ttl,
                                now,
                            )?;
                            Planned::Enqueue(q, dest, msg)
                        }
                        Destination::Topic(t) => {
                            let msg = Message::from_send(
                                frame,
                                t.destination().clone(),
                                crate::message::DEFAULT_PRIORITY,
                                None,
                                now,
                            )?;
                            Planned::Publish(t, msg)
                        }
                    });
                }
                TxOp::Ack {
                    id,
                    subscription,
                    nack,
                    requeue,
                } => {
                    if let Some((q, consumer, seqs)) =
                        self.take_acked(&id, subscription.as_ref())?
                    {
                        planned.push(Planned::Ack(q, consumer, seqs, nack, requeue));
                    }
                }
            }
        }
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        for p in &planned {
            if let Planned::Enqueue(q, ..) | Planned::Ack(q, ..) = p {
                if !queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                    queues.push(q.clone());
                }
            }
        }
        queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
        let index = |q: &Arc<Queue>| queues.iter().position(|x| Arc::ptr_eq(x, q)).unwrap_or(0);
        let mut guards: Vec<_> = queues.iter().map(|q| q.lock()).collect();
        for (i, g) in guards.iter().enumerate() {
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut per_priority = [0u64; crate::queue::state::LEVELS];
            for p in &planned {
                if let Planned::Enqueue(q, _, m) = p {
                    if index(q) == i {
                        n += 1;
                        bytes += m.size();
                        per_priority[usize::from(m.priority.min(crate::message::MAX_PRIORITY))] +=
                            1;
                    }
                }
            }
            if n > 0 {
                g.admit_batch(n, bytes, &per_priority)
                    .map_err(|e| ClientError::enqueue(queues[i].destination(), e))?;
            }
        }
        let mut records = Vec::new();
        let mut publish = Vec::new();
        let mut durable_commits: Vec<Commit> = Vec::new();
        for p in planned {
            match p {
                Planned::Enqueue(q, dest, msg) => {
                    guards[index(&q)]
                        .enqueue(Arc::new(msg), &mut records)
                        .map_err(|e| ClientError::enqueue(&dest, e))?;
                }
                Planned::Ack(q, consumer, seqs, nack, requeue) => {
                    let g = &mut guards[index(&q)];
                    if nack {
                        g.nack(consumer, &seqs, requeue);
                    } else {
                        g.ack(consumer, &seqs);
                    }
                }
                Planned::Publish(t, msg) => publish.push((t, msg)),
            }
        }
        let mut dead: Vec<(usize, Vec<DeadLetter>)> = Vec::new();
        for (i, g) in guards.iter_mut().enumerate() {
            dead.push((i, g.drain_into(&mut records)));
        }
        let commit = match self.broker.journal() {
            Some(j) if !records.is_empty() => Some(j.append(records)),
            _ => None,
        };
        drop(guards);
        for (i, d) in dead {
            queues[i].after(&*self.broker as &dyn QueueHost, d);
        }
        for (t, msg) in publish {
            if let Some(c) = t.publish_all(&*self.broker, Arc::new(msg)) {
                durable_commits.push(c);
            }
        }
        // Journal commits complete in order: the last one covers every earlier one.
        Ok(durable_commits.pop().or(commit))
    }

    fn resolve_send(&self, destination: &str) -> Result<(String, Destination), ClientError> {
        let dest = temp_name(destination, self.id).unwrap_or_else(|| destination.to_owned());
        let target = self
            .broker
            .resolve(&dest, &self.principal, Intent::Write, self.id)?;
        Ok((dest, target))
    }

    /// A reply-to naming our own temporary queue is rewritten to its broker-wide name so whoever
    /// answers reaches it.
    fn rewrite_reply_to(&self, mut frame: Frame) -> Frame {
        for (name, value) in frame.headers.iter_mut() {
            if name.as_bytes() == b"reply-to" {
                if let Some(global) = temp_name(value.as_str(), self.id) {
                    *value = ByteStr::from(global);
                }
                break;
            }
        }
        frame
    }

    /// Statistics over STOMP: a SEND to `/sys/stats` with `queue:/queue/NAME` and `reply-to`
    /// gets a MESSAGE with that queue's statistics (JSON body) on the reply-to destination.
    fn stats_request(&mut self, frame: Frame) -> Result<Option<Commit>, ClientError> {
        let missing = |h: &str| {
            ClientError::new(
                "bad-frame",
                format!(
                    "a SEND to {} needs a `{h}` header",
                    crate::admin::STATS_DESTINATION
                ),
            )
        };
        let queue = frame
            .get("queue")
            .ok_or_else(|| missing("queue"))?
            .to_owned();
        let reply_to = frame
            .get("reply-to")
            .ok_or_else(|| missing("reply-to"))?
            .to_owned();
        if !self.broker.authenticator().authorize(
            &self.principal,
            &queue,
            stompd_config::Permission::Read,
        ) {
            return Err(ClientError::new(
                "access-denied",
                format!("{} may not read {queue}", self.principal.name),
            ));
        }
        let (headers, body) = crate::admin::stats_message(&self.broker, &queue)
            .map_err(|e| ClientError::new("unknown-destination", e))?;
        let mut reply = Frame::new(Command::Send).with_body(body.into_bytes());
        for (n, v) in headers {
            reply.push_header(n, v);
        }
        self.route_send(&reply_to, reply, true)
    }

    /// Routes a SEND. Without a receipt, a persistent queue's journal write is not tracked one
    /// by one: only a failure comes back, as [`SessionEvent::StoreFailed`].
    fn route_send(
        &mut self,
        destination: &str,
        frame: Frame,
        receipt_wanted: bool,
    ) -> Result<Option<Commit>, ClientError> {
        if destination == crate::admin::STATS_DESTINATION {
            return self.stats_request(frame);
        }
        let (dest, target) = self.resolve_send(destination)?;
        let frame = self.rewrite_reply_to(frame);
        let now = now_ms();
        match target {
            Destination::Queue(q) => {
                let (priority, ttl) = q.message_defaults();
                let msg = Arc::new(Message::from_send(
                    frame,
                    q.destination().clone(),
                    priority,
                    ttl,
                    now,
                )?);
                let sent = if receipt_wanted {
                    q.send_shared(&*self.broker, msg.clone())
                        .map(|(_, commit)| commit)
                } else {
                    q.send_reporting(&*self.broker, msg.clone(), &self.on_store_error)
                        .map(|_| None)
                };
                match sent {
                    Ok(commit) => {
                        if self.events_sub.is_some() {
                            self.check_quota(&q);
                        }
                        Ok(commit)
                    }
                    Err(EnqueueError::Full(_)) if q.overflow() == Overflow::Block => {
                        // `block`: this producer's socket is not read until there is room.
                        let timeout = q.policy().block_timeout;
                        tracing::debug!(
                            destination = dest,
                            timeout_ms = timeout.as_millis() as u64,
                            "producer blocked: queue full"
                        );
                        self.blocked = Some(Blocked {
                            queue: q,
                            destination: dest,
                            msg,
                            receipt: None,
                            since: Instant::now(),
                            deadline: Instant::now() + timeout,
                        });
                        Ok(None)
                    }
                    Err(e) => Err(ClientError::enqueue(&dest, e)),
                }
            }
            Destination::Topic(t) => {
                let msg = Message::from_send(
                    frame,
                    t.destination().clone(),
                    crate::message::DEFAULT_PRIORITY,
                    None,
                    now,
                )?;
                Ok(t.publish_all(&*self.broker, Arc::new(msg)))
            }
        }
    }

    /// Tries a blocked SEND again; once it is in, carries on with the frames already read.
    fn retry_blocked(&mut self) -> Result<(), ClientError> {
        let Some(b) = self.blocked.take() else {
            return Ok(());
        };
        match b.queue.send_shared(&*self.broker, b.msg.clone()) {
            Ok((_, commit)) => {
                tracing::debug!(
                    waited_ms = b.since.elapsed().as_millis() as u64,
                    "producer unblocked"
                );
                self.track(commit, b.receipt);
                self.process_input().map(|_| ())
            }
            Err(EnqueueError::Full(limit)) if Instant::now() < b.deadline => {
                let _ = limit;
                self.blocked = Some(b);
                Ok(())
            }
            Err(e) => {
                let waited = b.since.elapsed().as_millis();
                let err = ClientError::enqueue(&b.destination, e);
                Err(ClientError::new(
                    err.code,
                    format!("{} (the producer waited {waited} ms for room)", err.message),
                )
                .with_receipt(b.receipt.as_ref()))
            }
        }
    }

    /// Queues a RECEIPT behind `commit` (and behind every reply still waiting), or writes it at
    /// once when nothing is waiting.
    fn track(&mut self, commit: Option<Commit>, receipt: Option<ByteStr>) {
        if commit.is_none() && self.pending.is_empty() {
            self.receipt(receipt);
        } else if commit.is_some() || receipt.is_some() {
            self.pending.push_back(Waiting { commit, receipt });
        }
    }

    fn on_durable(
        &mut self,
        receipt: Option<ByteStr>,
        result: Result<(), JournalError>,
    ) -> Result<(), ClientError> {
        match result {
            Ok(()) => {
                if let Some(r) = receipt {
                    self.write_receipt(&r);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal write failed");
                let code = if matches!(e, JournalError::DiskFull { .. }) {
                    "disk-full"
                } else {
                    "storage-error"
                };
                Err(
                    ClientError::new(code, format!("the message could not be stored: {e}"))
                        .with_receipt(receipt.as_ref()),
                )
            }
        }
    }

    /// After a SEND: tells the event channel once when the queue reaches 80% of a limit, and
    /// again after it went below and back.
    fn check_quota(&mut self, q: &Arc<Queue>) {
        let Some((depth, max_messages, bytes, max_bytes)) = q.quota() else {
            return;
        };
        let near = |v: u64, max: u64| max > 0 && v.saturating_mul(5) >= max.saturating_mul(4);
        let dest = q.destination();
        if !(near(depth, max_messages) || near(bytes, max_bytes)) {
            self.quota_warned.remove(dest);
            return;
        }
        if !self.quota_warned.insert(dest.clone()) {
            return;
        }
        let (depth, max_messages, bytes, max_bytes) = (
            depth.to_string(),
            max_messages.to_string(),
            bytes.to_string(),
            max_bytes.to_string(),
        );
        self.emit_event(
            "quota-near",
            &[
                ("queue", dest.as_str()),
                ("depth", &depth),
                ("max-messages", &max_messages),
                ("bytes", &bytes),
                ("max-bytes", &max_bytes),
            ],
        );
    }

    /// Gives back large, empty buffers of a connection that went quiet.
    fn shrink_if_idle(&mut self, now: Instant) {
        if self.rbuf.is_empty()
            && self.rbuf.capacity() > IDLE_READ_BUF
            && now.duration_since(self.last_read) >= SHRINK_AFTER
        {
            self.rbuf = BytesMut::with_capacity(IDLE_READ_BUF);
        }
        if self.wbuf.is_empty()
            && self.wbuf.capacity() > 0
            && now.duration_since(self.last_write) >= SHRINK_AFTER
        {
            self.wbuf = BytesMut::new();
        }
    }

    fn subscribe(
        &mut self,
        id: ByteStr,
        destination: &str,
        ack: AckMode,
        frame: &Frame,
    ) -> Result<(), ClientError> {
        if self.subs_by_id.contains_key(&id)
            || self.browses.contains_key(&id)
            || self.events_sub.as_ref() == Some(&id)
        {
            return Err(ClientError::new(
                "duplicate-subscription",
                format!("subscription id {id} is already in use on this connection"),
            ));
        }
        let max = self.config.limits.max_subscriptions;
        if self.subs_by_id.len() >= max {
            return Err(ClientError::new(
                "too-many-subscriptions",
                format!("at most {max} subscriptions per connection"),
            ));
        }
        if destination == EVENTS_DESTINATION {
            self.events_sub = Some(id);
            return Ok(());
        }
        let dest = match destination.strip_prefix(TEMP_QUEUE_PREFIX) {
            Some(_) => temp_name(destination, self.id).unwrap_or_else(|| destination.to_owned()),
            None => destination.to_owned(),
        };
        let mut target = self
            .broker
            .resolve(&dest, &self.principal, Intent::Read, self.id)?;
        let selector = match frame.get("selector").filter(|s| !s.trim().is_empty()) {
            Some(text) => Some(Arc::new(crate::selector::Selector::parse(text).map_err(
                |e| ClientError::new("bad-selector", format!("invalid selector: {e}")),
            )?)),
            None => None,
        };
        let mut durable = None;
        if let Destination::Topic(t) = &target {
            if let Some(key) = self.durable_key(frame, &id)? {
                let q = self.broker.durable_queue(t, &key);
                t.set_durable_selector(&key, selector.clone());
                durable = Some((t.clone(), key));
                target = Destination::Queue(q);
            }
        }
        let consumer = self.broker.next_id();
        let max_unacked = self.config.limits.max_unacked.max(1);
        match target {
            Destination::Queue(q) => {
                let policy_ack = q.acknowledgement();
                let ack = match policy_ack {
                    Acknowledgement::Required if ack == AckMode::Auto => {
                        return Err(ClientError::new(
                            "ack-required",
                            format!("queue {dest} requires acknowledgement: subscribe with ack:client or ack:client-individual"),
                        ));
                    }
                    Acknowledgement::Auto => AckMode::Auto,
                    _ => ack,
                };
                if frame
                    .get("browser")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                {
                    return self.browse(&id, &q, max_unacked as usize, selector.as_deref());
                }
                let window = match ack {
                    AckMode::Auto => AUTO_WINDOW,
                    _ => prefetch(frame)?
                        .unwrap_or_else(|| q.prefetch())
                        .clamp(1, max_unacked),
                };
                // A durable subscription's selector already filters what its queue gets.
                let queue_selector = if durable.is_some() { None } else { selector };
                self.subs.insert(
                    consumer,
                    Subscription {
                        client_id: id.clone(),
                        ack,
                        target: Target::Queue(q.clone()),
                        unacked: VecDeque::new(),
                        pending: None,
                        shown: durable
                            .as_ref()
                            .map(|(t, _)| t.destination().clone())
                            .unwrap_or_else(|| ByteStr::from(destination)),
                        auto_delete: durable.is_some()
                            && frame
                                .get("auto-delete")
                                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                        durable,
                    },
                );
                self.subs_by_id.insert(id, consumer);
                self.handle.subscriptions.fetch_add(1, Ordering::Relaxed);
                q.subscribe(
                    &*self.broker,
                    ConsumerSpec {
                        id: consumer,
                        window,
                        window_bytes: window_bytes(frame)?,
                        selector: queue_selector,
                    },
                    self.tx.clone(),
                );
            }
            Destination::Topic(t) => {
                let pending = Arc::new(AtomicU32::new(0));
                self.subs.insert(
                    consumer,
                    Subscription {
                        client_id: id.clone(),
                        ack,
                        target: Target::Topic(t.clone()),
                        unacked: VecDeque::new(),
                        pending: Some(pending.clone()),
                        shown: t.destination().clone(),
                        durable: None,
                        auto_delete: false,
                    },
                );
                self.subs_by_id.insert(id, consumer);
                self.handle.subscriptions.fetch_add(1, Ordering::Relaxed);
                t.subscribe(consumer, self.tx.clone(), pending, max_unacked, selector);
            }
        }
        Ok(())
    }

    /// The durable subscription a SUBSCRIBE (or UNSUBSCRIBE) names, in the dialects clients
    /// bring, by precedence: `durable-subscription-name` (Artemis), `activemq.subscriptionName`
    /// (ActiveMQ; with the CONNECT's `client-id` as `CLIENTID.NAME`), `durable:true` or
    /// `persistent:true` (RabbitMQ; the subscription `id` is the name).
    fn durable_key(&self, frame: &Frame, id: &ByteStr) -> Result<Option<String>, ClientError> {
        let truthy = |h: &str| frame.get(h).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let key = if let Some(n) = frame.get("durable-subscription-name") {
            Some(n.to_owned())
        } else if let Some(n) = frame.get("activemq.subscriptionName") {
            Some(match &self.client_id {
                Some(c) => format!("{c}.{n}"),
                None => n.to_owned(),
            })
        } else if truthy("durable") || truthy("persistent") {
            Some(id.to_string())
        } else {
            None
        };
        match key {
            Some(k) if k.is_empty() || k.contains('/') || k.chars().any(char::is_control) => {
                Err(ClientError::new(
                    "bad-header",
                    format!("durable subscription name {k:?} must be non-empty without '/' or control characters"),
                ))
            }
            k => Ok(k),
        }
    }

    /// A `browser:true` subscription: the queue's ready messages, unconsumed, then an end marker.
    /// Every browsed message carries an `ack` id: ACKing it removes the message from the queue
    /// (selective removal); a browser that only looks sends nothing.
    fn browse(
        &mut self,
        id: &ByteStr,
        q: &Arc<Queue>,
        limit: usize,
        selector: Option<&crate::selector::Selector>,
    ) -> Result<(), ClientError> {
        let version = self.version.unwrap_or(Version::V1_2);
        let idx = self.next_tag;
        self.next_tag += 1;
        self.browses.insert(id.clone(), (idx, q.clone()));
        let before = self.wbuf.len();
        for d in q.browse(limit) {
            if selector.is_some_and(|s| !crate::topic::matches(s, &d.msg)) {
                continue;
            }
            self.scratch_id.clear();
            let _ = write!(self.scratch_id, "{}@{}", q.destination(), d.seq);
            self.scratch_ack.clear();
            let _ = write!(self.scratch_ack, "b{idx}.{}", d.seq);
            encode_message(
                &mut self.wbuf,
                version,
                q.destination(),
                &self.scratch_id,
                id,
                Some(&self.scratch_ack),
                &d,
                None,
            );
        }
        encode_frame(
            &mut self.wbuf,
            version,
            Command::Message,
            [
                ("destination", q.destination().as_str()),
                ("subscription", id.as_str()),
                ("message-id", "browser-end"),
                ("browser", "end"),
            ],
            b"",
        );
        self.note_frame(before);
        Ok(())
    }

    fn unsubscribe(&mut self, consumer: ConsumerId) {
        let Some(sub) = self.subs.remove(&consumer) else {
            return;
        };
        if let Some((topic, key)) = &sub.durable {
            let explicit = self.remove_durable_on_unsubscribe.as_ref() == Some(&sub.client_id);
            let last_auto_delete = sub.auto_delete
                && matches!(&sub.target, Target::Queue(q) if q.stats().consumers <= 1);
            if explicit || last_auto_delete {
                if explicit {
                    self.remove_durable_on_unsubscribe = None;
                }
                // Detach first so the queue's unacked messages are not handed to anyone else.
                if let Target::Queue(q) = &sub.target {
                    q.unsubscribe(&*self.broker, consumer);
                }
                self.broker.remove_durable(topic, key);
                self.handle.subscriptions.fetch_sub(1, Ordering::Relaxed);
                for (tag, _) in &sub.unacked {
                    self.ack_tags.remove(tag);
                }
                return;
            }
        }
        self.handle.subscriptions.fetch_sub(1, Ordering::Relaxed);
        for (tag, _) in &sub.unacked {
            self.ack_tags.remove(tag);
        }
        match sub.target {
            Target::Queue(q) => q.unsubscribe(&*self.broker, consumer),
            Target::Topic(t) => t.unsubscribe(consumer),
        }
    }

    fn ack_or_nack(
        &mut self,
        id: ByteStr,
        subscription: Option<ByteStr>,
        transaction: Option<ByteStr>,
        nack: bool,
        requeue: bool,
    ) -> Result<Option<Commit>, ClientError> {
        // Validate now, so an unknown id is reported at once even inside a transaction.
        self.find_acked(&id, subscription.as_ref())?;
        match transaction {
            Some(tx) => {
                let max = self.config.limits.max_transaction_frames;
                let ops = self.tx_ops(&tx)?;
                if ops.len() >= max {
                    return Err(ClientError::new(
                        "transaction-too-large",
                        format!("transaction {tx} holds more than {max} frames"),
                    ));
                }
                ops.push(TxOp::Ack {
                    id,
                    subscription,
                    nack,
                    requeue,
                });
                Ok(None)
            }
            None => {
                let Some((q, consumer, seqs)) = self.take_acked(&id, subscription.as_ref())? else {
                    return Ok(None);
                };
                let (_, commit) = if nack {
                    q.nack(&*self.broker, consumer, &seqs, requeue)
                } else {
                    q.ack(&*self.broker, consumer, &seqs)
                };
                Ok(commit)
            }
        }
    }

    /// Finds the subscription and the index in its `unacked` list an ACK/NACK id refers to.
    /// Ok(None): a topic message, whose acknowledgement changes nothing.
    fn find_acked(
        &self,
        id: &ByteStr,
        subscription: Option<&ByteStr>,
    ) -> Result<AckTarget, ClientError> {
        let unknown = || {
            ClientError::new(
                "unknown-ack",
                format!("no unacknowledged message with id {id}"),
            )
        };
        let text = id.as_str();
        let version = self.version.unwrap_or(Version::V1_2);
        if version == Version::V1_2 {
            if let Some(rest) = text.strip_prefix('b') {
                let (idx, seq) = rest.split_once('.').ok_or_else(unknown)?;
                let (idx, seq): (u64, u64) = (
                    idx.parse().map_err(|_| unknown())?,
                    seq.parse().map_err(|_| unknown())?,
                );
                let q = self
                    .browses
                    .values()
                    .find(|(i, _)| *i == idx)
                    .map(|(_, q)| q.clone())
                    .ok_or_else(unknown)?;
                return Ok(AckTarget::Browse(q, seq));
            }
            if text.starts_with('t') || text.starts_with('e') {
                return Ok(AckTarget::Ignore);
            }
            let tag: u64 = text.parse().map_err(|_| unknown())?;
            if self.late.iter().any(|(t, _, _)| *t == tag) {
                return Ok(AckTarget::Ignore);
            }
            let consumer = *self.ack_tags.get(&tag).ok_or_else(unknown)?;
            let sub = self.subs.get(&consumer).ok_or_else(unknown)?;
            let pos = sub
                .unacked
                .iter()
                .position(|(t, _)| *t == tag)
                .ok_or_else(unknown)?;
            return Ok(AckTarget::Queue(consumer, pos));
        }
        // 1.0 and 1.1 acknowledge by message-id (`destination@seq`), 1.1 also names the subscription.
        let (dest, seq) = text.rsplit_once('@').ok_or_else(unknown)?;
        if seq == "end" {
            return Ok(AckTarget::Ignore);
        }
        let seq: u64 = seq.parse().map_err(|_| unknown())?;
        if let Some((_, q)) = subscription.and_then(|s| self.browses.get(s)) {
            return Ok(AckTarget::Browse(q.clone(), seq));
        }
        let candidates: Vec<ConsumerId> = match subscription {
            Some(s) => vec![*self.subs_by_id.get(s).ok_or_else(unknown)?],
            None => self.subs.keys().copied().collect(),
        };
        for consumer in candidates {
            let Some(sub) = self.subs.get(&consumer) else {
                continue;
            };
            if sub.target.destination().as_str() != dest {
                continue;
            }
            if matches!(sub.target, Target::Topic(_)) {
                return Ok(AckTarget::Ignore);
            }
            if let Some(pos) = sub.unacked.iter().position(|(_, s)| *s == seq) {
                return Ok(AckTarget::Queue(consumer, pos));
            }
            if self
                .late
                .iter()
                .any(|(_, c, s)| *c == consumer && *s == seq)
            {
                return Ok(AckTarget::Ignore);
            }
        }
        Err(unknown())
    }

    /// Removes what an ACK/NACK id covers from the subscription's unacked list: the message and,
    /// in `client` mode (cumulative), every earlier one. Ok(None): a topic message.
    fn take_acked(
        &mut self,
        id: &ByteStr,
        subscription: Option<&ByteStr>,
    ) -> Result<Option<Acked>, ClientError> {
        let (consumer, pos) = match self.find_acked(id, subscription)? {
            AckTarget::Queue(c, pos) => (c, pos),
            AckTarget::Browse(q, seq) => {
                // Selective removal through a browser: gone from the queue, journaled.
                q.remove(&*self.broker, seq);
                return Ok(None);
            }
            AckTarget::Ignore => return Ok(None),
        };
        let Some(sub) = self.subs.get_mut(&consumer) else {
            return Ok(None);
        };
        let taken: Vec<(u64, u64)> = match sub.ack {
            AckMode::Client => sub.unacked.drain(..=pos).collect(),
            _ => sub.unacked.remove(pos).into_iter().collect(),
        };
        let Target::Queue(q) = sub.target.clone() else {
            return Ok(None);
        };
        let seqs = taken
            .iter()
            .map(|(tag, seq)| {
                self.ack_tags.remove(tag);
                *seq
            })
            .collect();
        Ok(Some((q, consumer, seqs)))
    }

    fn on_event(&mut self, ev: SessionEvent) {
        let version = self.version.unwrap_or(Version::V1_2);
        let before = self.wbuf.len();
        match ev {
            SessionEvent::Deliver { consumer, delivery } => {
                // Unsubscribed meanwhile: the queue already took the message back.
                let Some(sub) = self.subs.get_mut(&consumer) else {
                    return;
                };
                let Target::Queue(q) = &sub.target else {
                    return;
                };
                self.scratch_id.clear();
                let _ = write!(self.scratch_id, "{}@{}", q.destination(), delivery.seq);
                let ack = if sub.ack == AckMode::Auto {
                    None
                } else {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    sub.unacked.push_back((tag, delivery.seq));
                    self.ack_tags.insert(tag, consumer);
                    self.scratch_ack.clear();
                    let _ = write!(self.scratch_ack, "{tag}");
                    Some(self.scratch_ack.as_str())
                };
                let count = if delivery.redelivered() {
                    self.scratch_count.clear();
                    let _ = write!(self.scratch_count, "{}", delivery.redelivery_count);
                    Some(self.scratch_count.as_str())
                } else {
                    None
                };
                encode_message(
                    &mut self.wbuf,
                    version,
                    &sub.shown,
                    &self.scratch_id,
                    &sub.client_id,
                    ack,
                    &delivery,
                    count,
                );
                let auto = sub.ack == AckMode::Auto;
                self.note_frame(before);
                if auto {
                    self.unsettled
                        .push_back((self.appended, consumer, delivery.seq));
                }
            }
            SessionEvent::TopicMessage { consumer, seq, msg } => {
                let Some(sub) = self.subs.get(&consumer) else {
                    return;
                };
                if let Some(p) = &sub.pending {
                    p.fetch_sub(1, Ordering::AcqRel);
                }
                let Target::Topic(t) = &sub.target else {
                    return;
                };
                self.scratch_id.clear();
                let _ = write!(self.scratch_id, "{}@{}", t.destination(), seq);
                let ack = if sub.ack == AckMode::Auto {
                    None
                } else {
                    self.scratch_ack.clear();
                    let _ = write!(self.scratch_ack, "t{seq}");
                    Some(self.scratch_ack.as_str())
                };
                let delivery = Delivery {
                    seq,
                    msg,
                    redelivery_count: 0,
                };
                encode_message(
                    &mut self.wbuf,
                    version,
                    t.destination(),
                    &self.scratch_id,
                    &sub.client_id,
                    ack,
                    &delivery,
                    None,
                );
                self.note_frame(before);
            }
            SessionEvent::Cancelled { consumer, reason } => {
                let Some(sub) = self.subs.remove(&consumer) else {
                    return;
                };
                self.handle.subscriptions.fetch_sub(1, Ordering::Relaxed);
                self.subs_by_id.remove(&sub.client_id);
                for (tag, _) in &sub.unacked {
                    self.ack_tags.remove(tag);
                }
                tracing::info!(subscription = %sub.client_id, reason, "subscription cancelled by the broker");
                let destination = sub.target.destination().clone();
                let emitted = self.emit_event(
                    "subscription-cancelled",
                    &[
                        ("event-subscription", sub.client_id.as_str()),
                        ("subscription-destination", destination.as_str()),
                        ("reason", reason),
                    ],
                );
                if !emitted {
                    // Without the event channel the only way STOMP has to say it is an ERROR,
                    // after which the connection closes.
                    self.fatal = Some(ClientError::new(
                        reason,
                        format!(
                            "subscription {} to {destination} was cancelled: {reason}",
                            sub.client_id
                        ),
                    ));
                }
            }
            SessionEvent::AckTimeout { consumer, seq } => {
                let Some(sub) = self.subs.get_mut(&consumer) else {
                    return;
                };
                let Some(pos) = sub.unacked.iter().position(|(_, s)| *s == seq) else {
                    return;
                };
                let Some((tag, _)) = sub.unacked.remove(pos) else {
                    return;
                };
                let client_id = sub.client_id.clone();
                let destination = sub.target.destination().clone();
                self.ack_tags.remove(&tag);
                self.late.push_back((tag, consumer, seq));
                if self.late.len() > LATE_ACKS_REMEMBERED {
                    self.late.pop_front();
                }
                let message_id = format!("{destination}@{seq}");
                let ack = tag.to_string();
                self.emit_event(
                    "ack-timeout",
                    &[
                        ("event-subscription", client_id.as_str()),
                        ("subscription-destination", destination.as_str()),
                        ("timed-out-message-id", message_id.as_str()),
                        ("timed-out-ack", ack.as_str()),
                    ],
                );
            }
            SessionEvent::QueueClosed { consumer, closed } => {
                let Some(sub) = self.subs.get(&consumer) else {
                    return;
                };
                let destination = sub.target.destination().clone();
                let client_id = sub.client_id.clone();
                self.emit_event(
                    if closed {
                        "queue-closed"
                    } else {
                        "queue-reopened"
                    },
                    &[
                        ("event-subscription", client_id.as_str()),
                        ("subscription-destination", destination.as_str()),
                    ],
                );
            }
            SessionEvent::StoreFailed(e) => {
                if self.fatal.is_none() {
                    if let Err(err) = self.on_durable(None, Err(*e)) {
                        self.fatal = Some(err);
                    }
                }
            }
            SessionEvent::EndOfStream { consumer } => {
                let Some(sub) = self.subs.get(&consumer) else {
                    return;
                };
                let destination = sub.target.destination().clone();
                let message_id = format!("{destination}@end");
                let mut headers: Vec<(&str, &str)> = vec![
                    ("destination", destination.as_str()),
                    ("message-id", message_id.as_str()),
                    ("subscription", sub.client_id.as_str()),
                    ("queue-state", "closed"),
                ];
                if sub.ack != AckMode::Auto {
                    headers.push(("ack", "e0"));
                }
                encode_frame(&mut self.wbuf, version, Command::Message, headers, b"");
                self.note_frame(before);
            }
        }
    }

    /// Sends a MESSAGE on the event channel if the client subscribed to it.
    fn emit_event(&mut self, event: &str, extra: &[(&str, &str)]) -> bool {
        let Some(sub) = self.events_sub.clone() else {
            return false;
        };
        let version = self.version.unwrap_or(Version::V1_2);
        let message_id = format!("{EVENTS_DESTINATION}@{}", self.next_event);
        self.next_event += 1;
        let mut headers: Vec<(&str, &str)> = vec![
            ("destination", EVENTS_DESTINATION),
            ("message-id", message_id.as_str()),
            ("subscription", sub.as_str()),
            ("event", event),
        ];
        headers.extend_from_slice(extra);
        let before = self.wbuf.len();
        encode_frame(&mut self.wbuf, version, Command::Message, headers, b"");
        self.note_frame(before);
        true
    }

    /// Acks auto-mode deliveries whose bytes the kernel has taken.
    fn settle_auto_acks(&mut self) {
        while let Some(&(end, consumer, _)) = self.unsettled.front() {
            if end > self.written {
                break;
            }
            let mut seqs = Vec::new();
            while let Some(&(end, c, seq)) = self.unsettled.front() {
                if end > self.written || c != consumer {
                    break;
                }
                seqs.push(seq);
                self.unsettled.pop_front();
            }
            if let Some(Subscription {
                target: Target::Queue(q),
                ..
            }) = self.subs.get(&consumer)
            {
                q.settle(&*self.broker, consumer, &seqs);
            }
        }
    }

    fn receipt(&mut self, receipt: Option<ByteStr>) {
        if receipt.is_some() && !self.pending.is_empty() {
            // Keep RECEIPTs in frame order behind the ones waiting for the disk.
            self.pending.push_back(Waiting {
                commit: None,
                receipt,
            });
            return;
        }
        if let Some(r) = receipt {
            self.write_receipt(&r);
        }
    }

    fn write_receipt(&mut self, r: &ByteStr) {
        {
            let version = self.version.unwrap_or(Version::V1_2);
            let before = self.wbuf.len();
            encode_frame(
                &mut self.wbuf,
                version,
                Command::Receipt,
                [("receipt-id", r.as_str())],
                b"",
            );
            self.note_frame(before);
        }
    }

    fn push_error(&mut self, err: ClientError) {
        let version = self.version.unwrap_or(Version::V1_0);
        let mut headers: Vec<(&str, &str)> =
            vec![("message", err.message.as_str()), ("code", err.code)];
        if err.code == "unsupported-version" {
            headers.push(("version", SUPPORTED_VERSIONS));
        }
        if let Some(r) = &err.receipt {
            headers.push(("receipt-id", r.as_str()));
        }
        let body = err.detail.as_deref().unwrap_or("");
        let before = self.wbuf.len();
        encode_frame(
            &mut self.wbuf,
            version,
            Command::Error,
            headers,
            body.as_bytes(),
        );
        self.note_frame(before);
    }

    /// Accounts for a frame just encoded after `before` bytes of the write buffer.
    fn note_frame(&mut self, before: usize) {
        self.appended += (self.wbuf.len() - before) as u64;
        self.handle
            .counters
            .frames_out
            .fetch_add(1, Ordering::Relaxed);
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
        self.appended += bytes.len() as u64;
    }

    /// Returns everything the connection held: unacked messages go back to their queues
    /// (redelivered), transactions are dropped, temporary queues removed.
    fn teardown(&mut self) {
        let consumers: Vec<ConsumerId> = self.subs.keys().copied().collect();
        for c in consumers {
            self.unsubscribe(c);
        }
        self.txs.clear();
        self.rx.close();
        self.broker.drop_temp_queues(self.id);
        self.broker.registry.unregister(self.id);
        tracing::debug!("session closed");
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_message(
    dst: &mut BytesMut,
    version: Version,
    destination: &ByteStr,
    message_id: &str,
    subscription: &ByteStr,
    ack: Option<&str>,
    delivery: &Delivery,
    redelivery_count: Option<&str>,
) {
    let fixed: [(&[u8], &[u8]); 3] = [
        (b"destination", destination.as_bytes()),
        (b"message-id", message_id.as_bytes()),
        (b"subscription", subscription.as_bytes()),
    ];
    let ack = ack.map(|a| (&b"ack"[..], a.as_bytes()));
    let redelivered = redelivery_count.map(|c| {
        [
            (&b"redelivered"[..], &b"true"[..]),
            (&b"redelivery-count"[..], c.as_bytes()),
        ]
    });
    let headers = fixed
        .into_iter()
        .chain(ack)
        .chain(redelivered.into_iter().flatten())
        .chain(
            delivery
                .msg
                .headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
    encode_frame(
        dst,
        version,
        Command::Message,
        headers,
        delivery.msg.body.chunk(),
    );
}

fn unknown_tx(tx: &ByteStr) -> ClientError {
    ClientError::new("unknown-transaction", format!("no open transaction {tx}"))
}

/// Per-subscription window from the headers other brokers' clients send, in precedence order:
/// `prefetch-count` (RabbitMQ), `activemq.prefetchSize` (ActiveMQ).
/// Artemis' `consumer-window-size`: bytes of messages in flight to the consumer; -1 = no limit,
/// 0 = one message at a time.
fn window_bytes(frame: &Frame) -> Result<u64, ClientError> {
    match frame.get("consumer-window-size") {
        None => Ok(u64::MAX),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(-1) => Ok(u64::MAX),
            Ok(n) if n >= 0 => Ok(n as u64),
            _ => Err(ClientError::new(
                "bad-header",
                format!("header `consumer-window-size` must be -1 or a non-negative integer of bytes, got {v:?}"),
            )),
        },
    }
}

fn prefetch(frame: &Frame) -> Result<Option<u32>, ClientError> {
    for name in ["prefetch-count", "activemq.prefetchSize"] {
        if let Some(v) = frame.get(name) {
            return v.trim().parse::<u32>().map(Some).map_err(|_| {
                ClientError::new(
                    "bad-header",
                    format!("header `{name}` must be a non-negative integer, got {v:?}"),
                )
            });
        }
    }
    Ok(None)
}
