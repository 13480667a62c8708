//! STOMP over WebSocket: a listener whose connections speak STOMP inside WebSocket messages, for
//! browser clients such as @stomp/stompjs.
//!
//! The accept loop does admission only, as [`crate::server::serve_stomp`] does: the connection
//! limits are checked and a task is spawned. The WebSocket handshake happens inside that task,
//! bounded by `server.connect_timeout_ms`. The session is the ordinary [`session::run`]: it sees
//! a byte stream, [`WsStream`], that maps bytes to and from WebSocket messages.
//!
//! Subprotocols: the client's best offer among `v12.stomp`, `v11.stomp`, `v10.stomp` and `stomp`
//! is echoed in `Sec-WebSocket-Protocol`. A client that offers none of them is still accepted,
//! without the header (many clients send none); the STOMP version is negotiated by CONNECT's
//! `accept-version` either way.
//!
//! Framing: STOMP frames are not aligned with WebSocket messages. Reads yield the payloads of
//! text and binary messages as one byte stream, so a frame may span messages and a message may
//! hold several frames. Each write becomes one message, text when the bytes are valid UTF-8
//! (stompjs expects text frames), else binary.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Sink, SinkExt, Stream};
use stompd_config::LimitsConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::server::ConnectionCounter;
use crate::session;

/// STOMP subprotocols we accept, best first.
pub const SUBPROTOCOLS: [&str; 4] = ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

/// Room for a frame's WebSocket-level overhead and for a message carrying a frame plus a
/// heart-beat or the start of the next frame.
const MESSAGE_SLACK: usize = 64 * 1024;

/// How long a connection over the limits gets to finish its handshake and read our ERROR.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts WebSocket connections until `shutdown` is cancelled; sessions are tracked by `tracker`.
pub async fn serve_ws(
    listener: TcpListener,
    broker: Arc<Broker>,
    counter: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = broker.config();
        let slot = counter.try_acquire(
            peer.ip(),
            config.server.connection_limit(),
            config.server.connection_limit_per_ip(),
        );
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _ = stream.set_nodelay(true);
            match slot {
                Ok(_slot) => {
                    let timeout = broker.config().server.connect_timeout();
                    if let Some(ws) = handshake(stream, peer, &broker, timeout, &shutdown).await {
                        session::run(WsStream::new(ws), peer, None, broker, shutdown).await;
                    }
                }
                Err(reason) => {
                    tracing::info!(%peer, reason, "websocket connection refused");
                    if let Some(ws) =
                        handshake(stream, peer, &broker, REFUSE_TIMEOUT, &shutdown).await
                    {
                        refuse(ws, reason).await;
                    }
                }
            }
        });
    }
}

/// The WebSocket configuration for a broker's limits: a message may hold at most one frame of the
/// largest size accepted, plus slack.
pub fn websocket_config(limits: &LimitsConfig) -> WebSocketConfig {
    let max = limits.max_frame_bytes.saturating_add(MESSAGE_SLACK);
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The HTTP upgrade, bounded by `timeout` and `shutdown`; `None` when it failed (logged).
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    broker: &Broker,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<WebSocketStream<TcpStream>> {
    let config = websocket_config(&broker.config().limits);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        negotiate_subprotocol,
        Some(config),
    );
    tokio::select! {
        _ = shutdown.cancelled() => None,
        r = tokio::time::timeout(timeout, upgrade) => match r {
            Ok(Ok(ws)) => Some(ws),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "websocket handshake failed");
                None
            }
            Err(_) => {
                tracing::info!(%peer, "no websocket handshake within the connect timeout; closing");
                None
            }
        },
    }
}

/// The handshake callback: echoes the best STOMP subprotocol the client offers, if any.
#[allow(clippy::result_large_err)] // The signature is tungstenite's `Callback`.
fn negotiate_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok());
    if let Some(chosen) = choose_subprotocol(offered) {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
    }
    Ok(response)
}

/// The best of [`SUBPROTOCOLS`] among `Sec-WebSocket-Protocol` header values (each a
/// comma-separated list; names compare case-sensitively, as RFC 6455 says).
pub fn choose_subprotocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let mut best: Option<usize> = None;
    for value in offered {
        for name in value.split(',').map(str::trim) {
            if let Some(rank) = SUBPROTOCOLS.iter().position(|p| *p == name) {
                best = Some(best.map_or(rank, |b| b.min(rank)));
            }
        }
    }
    best.map(|i| SUBPROTOCOLS[i])
}

/// Sends the refusal as a STOMP ERROR frame, then closes.
async fn refuse(mut ws: WebSocketStream<TcpStream>, reason: &'static str) {
    let mut frame = bytes::BytesMut::new();
    stompd_protocol::encode_frame(
        &mut frame,
        stompd_protocol::Version::V1_0,
        stompd_protocol::Command::Error,
        [("message", reason), ("code", "connection-limit")],
        b"",
    );
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        let _ = ws.send(to_message(&frame)).await;
        let _ = ws.close(None).await;
    })
    .await;
}

/// One WebSocket message holding `bytes`: text when they are valid UTF-8, else binary.
fn to_message(bytes: &[u8]) -> Message {
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Message::text(text),
        Err(e) => Message::binary(e.into_bytes()),
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
        }
        WsError::Capacity(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        other => io::Error::other(other),
    }
}

/// A WebSocket connection as a byte stream, for [`session::run`].
///
/// - Reads yield the payloads of text and binary messages, concatenated. Pings are answered by
///   tungstenite; a close ends the stream (after our close reply is sent).
/// - Each `poll_write` sends its bytes as one message (text if valid UTF-8, else binary) and
///   starts flushing it. At most one written message waits unflushed: the next write waits for
///   it. A pending flush is also driven by reads, because a caller like the session, having
///   nothing more to write, only polls reads (and the flush registered its waker).
/// - `poll_flush` flushes; `poll_shutdown` sends a close frame.
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The rest of the last message received.
    pending: Bytes,
    flush_pending: bool,
    eof: bool,
}

impl<S> WsStream<S> {
    pub fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            pending: Bytes::new(),
            flush_pending: false,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.inner
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx)).map_err(to_io)?;
        self.flush_pending = false;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flush_pending {
            // Progress on the last write; its waker is registered if it cannot finish now. A
            // failure shows up on the next write or read.
            let _ = this.poll_flush_inner(cx);
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => this.pending = Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => this.pending = bytes,
                // Pings are answered by tungstenite. After a close, polling on sends our reply
                // and then ends the stream.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {}
                Some(Err(e)) => {
                    this.eof = true;
                    return Poll::Ready(Err(to_io(e)));
                }
                None => this.eof = true,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.flush_pending {
            ready!(this.poll_flush_inner(cx))?;
        }
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut this.inner)
            .start_send(to_message(buf))
            .map_err(to_io)?;
        this.flush_pending = true;
        if let Poll::Ready(r) = this.poll_flush_inner(cx) {
            r?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_close(cx)).map_err(to_io)?;
        this.flush_pending = false;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use stompd_config::Config;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const WAIT: Duration = Duration::from_secs(5);

    type Client = WebSocketStream<TcpStream>;

    struct Server {
        addr: SocketAddr,
        shutdown: CancellationToken,
        _tmp: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = Config::embedded();
        config.storage.dir = tmp.path().join("data");
        let broker = Broker::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_ws(
            listener,
            broker,
            Arc::new(ConnectionCounter::default()),
            shutdown.clone(),
            TaskTracker::new(),
        ));
        Server {
            addr,
            shutdown,
            _tmp: tmp,
        }
    }

    async fn connect(addr: SocketAddr, protocols: Option<&str>) -> (Client, Option<String>) {
        let mut request = format!("ws://{addr}/stomp")
            .into_client_request()
            .expect("request");
        if let Some(p) = protocols {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(p).expect("header"),
            );
        }
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (ws, response) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async_with_config(request, tcp, None),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().expect("ascii").to_owned());
        (ws, chosen)
    }

    /// Reads messages until `want` complete frames (NUL-terminated, heart-beat EOLs dropped) have
    /// arrived; returns them as text.
    async fn frames(ws: &mut Client, want: usize) -> Vec<String> {
        let mut bytes = Vec::new();
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, async {
            while out.len() < want {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => bytes.extend_from_slice(t.as_bytes()),
                    Some(Ok(Message::Binary(b))) => bytes.extend_from_slice(&b),
                    Some(Ok(_)) => continue,
                    other => panic!("stream ended: {other:?}"),
                }
                while let Some(i) = bytes.iter().position(|&b| b == 0) {
                    let frame: Vec<u8> = bytes.drain(..=i).collect();
                    let text = String::from_utf8(frame[..i].to_vec()).expect("utf-8");
                    out.push(text.trim_start_matches(['\n', '\r']).to_owned());
                }
            }
        })
        .await
        .expect("frames in time");
        out
    }

    async fn send(ws: &mut Client, frame: &str) {
        ws.send(Message::text(frame)).await.expect("send");
    }

    #[tokio::test]
    async fn connect_gets_connected_and_subprotocol_is_echoed() {
        let server = start().await;
        let (mut ws, chosen) = connect(server.addr, Some("v10.stomp, v12.stomp, v11.stomp")).await;
        assert_eq!(chosen.as_deref(), Some("v12.stomp"));
        send(
            &mut ws,
            "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0",
        )
        .await;
        let got = frames(&mut ws, 1).await;
        assert!(got[0].starts_with("CONNECTED\n"), "{got:?}");
        assert!(got[0].contains("version:1.2\n"), "{got:?}");
    }

    #[tokio::test]
    async fn no_stomp_subprotocol_is_still_accepted_without_the_header() {
        let server = start().await;
        let (mut ws, chosen) = connect(server.addr, None).await;
        assert_eq!(chosen, None);
        // A frame split over two messages is one frame.
        send(&mut ws, "CONNECT\naccept-version:1.1\nhos").await;
        send(&mut ws, "t:localhost\nheart-beat:0,0\n\n\0").await;
        let got = frames(&mut ws, 1).await;
        assert!(got[0].starts_with("CONNECTED\n"), "{got:?}");
        assert!(got[0].contains("version:1.1\n"), "{got:?}");

        let (_ws, chosen) = connect(server.addr, Some("mqtt, v10.stomp")).await;
        assert_eq!(chosen.as_deref(), Some("v10.stomp"));
    }

    #[tokio::test]
    async fn send_and_subscribe_round_trip() {
        let server = start().await;
        let (mut ws, _) = connect(server.addr, Some("v12.stomp")).await;
        send(
            &mut ws,
            "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0",
        )
        .await;
        frames(&mut ws, 1).await;
        // Two frames in one message.
        send(
            &mut ws,
            "SUBSCRIBE\nid:s1\ndestination:/queue/ws.round\nack:client-individual\n\n\0\
             SEND\ndestination:/queue/ws.round\ncolour:blue\nreceipt:r1\n\nhello over ws\0",
        )
        .await;
        let got = frames(&mut ws, 2).await;
        let receipt = got.iter().find(|f| f.starts_with("RECEIPT\n"));
        assert!(
            receipt.is_some_and(|r| r.contains("receipt-id:r1")),
            "{got:?}"
        );
        let message = got
            .iter()
            .find(|f| f.starts_with("MESSAGE\n"))
            .unwrap_or_else(|| panic!("no MESSAGE in {got:?}"));
        assert!(message.contains("subscription:s1\n"), "{message}");
        assert!(message.contains("colour:blue\n"), "{message}");
        assert!(message.ends_with("\n\nhello over ws"), "{message}");
        let ack = message
            .lines()
            .find_map(|l| l.strip_prefix("ack:"))
            .expect("ack header")
            .to_owned();

        send(
            &mut ws,
            &format!("ACK\nid:{ack}\n\n\0UNSUBSCRIBE\nid:s1\n\n\0DISCONNECT\nreceipt:bye\n\n\0"),
        )
        .await;
        let got = frames(&mut ws, 1).await;
        assert!(got[0].starts_with("RECEIPT\nreceipt-id:bye"), "{got:?}");
        // The server closes the WebSocket after DISCONNECT.
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "no close after DISCONNECT");
    }

    #[tokio::test]
    async fn binary_bodies_arrive_in_binary_messages() {
        let server = start().await;
        let (mut ws, _) = connect(server.addr, Some("v12.stomp")).await;
        let mut frame = b"CONNECT\naccept-version:1.2\nhost:h\nheart-beat:0,0\n\n\0".to_vec();
        frame.extend_from_slice(b"SUBSCRIBE\nid:s\ndestination:/topic/ws.bin\n\n\0");
        frame.extend_from_slice(b"SEND\ndestination:/topic/ws.bin\ncontent-length:2\n\n\xff\xfe\0");
        ws.send(Message::binary(frame)).await.expect("send");
        let got = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => break b,
                    Some(Ok(_)) => {}
                    other => panic!("stream ended: {other:?}"),
                }
            }
        })
        .await
        .expect("binary message in time");
        assert!(got.starts_with(b"MESSAGE\n"), "{got:?}");
        assert!(got.ends_with(b"\n\n\xff\xfe\0"), "{got:?}");
    }

    #[tokio::test]
    async fn many_large_messages_flow_through_a_full_socket() {
        // Megabytes both ways: writes wait for pending flushes, and reads drive them. The total
        // stays under limits.outbox_bytes, so the session keeps reading while the client, which
        // does not read until it has sent everything, fills the socket.
        let server = start().await;
        let (mut ws, _) = connect(server.addr, Some("v12.stomp")).await;
        send(
            &mut ws,
            "CONNECT\naccept-version:1.2\nhost:h\nheart-beat:0,0\n\n\0\
             SUBSCRIBE\nid:s\ndestination:/queue/ws.large\n\n\0",
        )
        .await;
        let body = "x".repeat(256 * 1024);
        let count = 12;
        for i in 0..count {
            send(
                &mut ws,
                &format!("SEND\ndestination:/queue/ws.large\nn:{i}\n\n{body}\0"),
            )
            .await;
        }
        let got = frames(&mut ws, count + 1).await;
        assert!(got[0].starts_with("CONNECTED\n"), "{}", &got[0][..40]);
        for (i, frame) in got[1..].iter().enumerate() {
            assert!(frame.starts_with("MESSAGE\n"), "{}", &frame[..40]);
            assert!(
                frame.contains(&format!("\nn:{i}\n")),
                "message {i} out of order"
            );
            assert!(frame.ends_with(&body), "message {i} body");
        }
    }

    #[tokio::test]
    async fn a_pending_flush_is_driven_by_reads() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::protocol::Role;
        // A pipe far smaller than the message: the write is accepted with its flush pending.
        let (a, b) = tokio::io::duplex(1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let mut stream = WsStream::new(server);
        let big = vec![b'y'; 64 * 1024];
        stream.write_all(&big).await.expect("write");
        assert!(stream.flush_pending);
        // Like a session with nothing more to write, the server side now only reads.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).await.expect("read");
            buf[..n].to_vec()
        });
        let got = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("the pending message was flushed by the read side")
            .expect("a message")
            .expect("no error");
        assert_eq!(got, Message::text(String::from_utf8(big).expect("ascii")));
        client
            .send(Message::binary(&b"abc"[..]))
            .await
            .expect("send");
        let read = tokio::time::timeout(WAIT, reader)
            .await
            .expect("read in time");
        assert_eq!(read.expect("join"), b"abc");
    }

    #[tokio::test]
    async fn over_the_connection_limit_gets_an_error_frame() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = Config::embedded();
        config.storage.dir = tmp.path().join("data");
        config.server.max_connections = 1;
        let broker = Broker::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let _guard = shutdown.clone().drop_guard();
        tokio::spawn(serve_ws(
            listener,
            broker,
            Arc::new(ConnectionCounter::default()),
            shutdown,
            TaskTracker::new(),
        ));
        let (_first, _) = connect(addr, Some("v12.stomp")).await;
        let (mut second, _) = connect(addr, Some("v12.stomp")).await;
        let got = frames(&mut second, 1).await;
        assert!(got[0].starts_with("ERROR\n"), "{got:?}");
        assert!(got[0].contains("code:connection-limit"), "{got:?}");
    }

    #[test]
    fn subprotocol_choice() {
        assert_eq!(
            choose_subprotocol(["v10.stomp,v11.stomp"]),
            Some("v11.stomp")
        );
        assert_eq!(
            choose_subprotocol(["stomp", "v10.stomp"]),
            Some("v10.stomp")
        );
        assert_eq!(choose_subprotocol(["stomp"]), Some("stomp"));
        assert_eq!(
            choose_subprotocol(["mqtt", " v12.stomp "]),
            Some("v12.stomp")
        );
        assert_eq!(choose_subprotocol(["V12.STOMP"]), None);
        assert_eq!(choose_subprotocol([]), None);
    }

    #[test]
    fn message_size_follows_the_frame_limit() {
        let limits = LimitsConfig {
            max_frame_bytes: 1000,
            ..LimitsConfig::default()
        };
        let c = websocket_config(&limits);
        assert_eq!(c.max_message_size, Some(1000 + MESSAGE_SLACK));
        assert_eq!(c.max_frame_size, Some(1000 + MESSAGE_SLACK));
    }
}
