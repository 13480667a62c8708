//! A blocking STOMP client for tests: every read has a deadline.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stompd_protocol::{Command, Frame, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::{Decoder, Encoder};

use crate::TIMEOUT;

/// One thing read from the server.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    HeartBeat,
    /// The server closed the connection (read returned 0 or an error).
    Closed,
    /// Nothing arrived before the deadline.
    Timeout,
}

/// A blocking STOMP client over one TCP connection.
pub struct Client {
    stream: TcpStream,
    codec: StompCodec,
    rbuf: BytesMut,
    /// Frames read while waiting for something else (e.g. a RECEIPT); returned first by `recv`.
    pending: VecDeque<Frame>,
    closed: bool,
    heartbeats: usize,
    last_heartbeat: Option<Instant>,
    next_receipt: u64,
    /// The CONNECTED frame, once the handshake succeeded.
    pub connected: Option<Frame>,
}

/// A short human-readable rendering of a frame for panic messages.
pub fn describe(frame: &Frame) -> String {
    let mut s = format!("{:?} {{", frame.command);
    for (k, v) in &frame.headers {
        let _ = write!(s, " {}:{:?}", k.as_str(), v.as_str());
    }
    let body = String::from_utf8_lossy(&frame.body);
    let body: String = body.chars().take(200).collect();
    let _ = write!(s, " }} body={body:?}");
    s
}

impl Client {
    /// Opens a raw TCP connection (no STOMP handshake).
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("write timeout");
        Client {
            stream,
            codec: StompCodec::client(Limits::default()),
            rbuf: BytesMut::with_capacity(64 * 1024),
            pending: VecDeque::new(),
            closed: false,
            heartbeats: 0,
            last_heartbeat: None,
            next_receipt: 0,
            connected: None,
        }
    }

    /// Opens a raw TCP connection (no STOMP handshake), returning the error instead of
    /// panicking (for clients that reconnect to a broker that may be down).
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(Client {
            stream,
            codec: StompCodec::client(Limits::default()),
            rbuf: BytesMut::with_capacity(64 * 1024),
            pending: VecDeque::new(),
            closed: false,
            heartbeats: 0,
            last_heartbeat: None,
            next_receipt: 0,
            connected: None,
        })
    }

    /// Connects and completes a STOMP 1.2 handshake without panicking: any failure (refused,
    /// closed, ERROR, no answer within `timeout`) is returned as a description.
    pub fn try_connect_v12(addr: SocketAddr, timeout: Duration) -> Result<Client, String> {
        let mut c = Client::try_connect(addr, timeout).map_err(|e| format!("connect: {e}"))?;
        let f = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost");
        c.try_send(&f).map_err(|e| format!("write CONNECT: {e}"))?;
        match c.recv(timeout) {
            Some(reply) if reply.command == Command::Connected => {
                c.codec.set_version(Version::V1_2);
                c.connected = Some(reply);
                Ok(c)
            }
            Some(reply) => Err(format!("CONNECT answered with {}", describe(&reply))),
            None => Err(format!(
                "no CONNECTED within {timeout:?} (closed: {})",
                c.closed
            )),
        }
    }

    /// Sets the socket's write timeout (a write that blocks longer fails with `WouldBlock` or
    /// `TimedOut`).
    pub fn set_write_timeout(&self, timeout: Duration) {
        self.stream
            .set_write_timeout(Some(timeout))
            .expect("set_write_timeout");
    }

    /// Connects and completes a STOMP 1.2 handshake (`accept-version:1.2`, `host:localhost`).
    ///
    /// # Panics
    /// If the server does not answer CONNECTED.
    pub fn connect_v12(addr: SocketAddr) -> Client {
        Self::connect_with(addr, &[("accept-version", "1.2"), ("host", "localhost")])
    }

    /// Connects and sends CONNECT with `headers`, asserting CONNECTED.
    pub fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Client {
        let mut c = Client::connect(addr);
        let connected = c.handshake(headers);
        assert_eq!(
            connected.command,
            Command::Connected,
            "expected CONNECTED, got {}",
            describe(&connected)
        );
        c
    }

    /// Sends CONNECT with `headers` and returns the server's answer (CONNECTED or ERROR). On
    /// CONNECTED the codec switches to the negotiated version (no `version` header = 1.0).
    pub fn handshake(&mut self, headers: &[(&str, &str)]) -> Frame {
        self.handshake_command(Command::Connect, headers)
    }

    /// Like [`Client::handshake`] with the command of choice (CONNECT or STOMP).
    pub fn handshake_command(&mut self, command: Command, headers: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(command);
        for (k, v) in headers {
            f.push_header(*k, *v);
        }
        self.send(&f);
        let reply = self.recv(TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no reply to {command:?} within {TIMEOUT:?} (closed: {})",
                self.closed
            )
        });
        if reply.command == Command::Connected {
            let v = match reply.get("version") {
                None | Some("1.0") => Version::V1_0,
                Some("1.1") => Version::V1_1,
                Some("1.2") => Version::V1_2,
                Some(other) => panic!("CONNECTED with unknown version {other:?}"),
            };
            self.codec.set_version(v);
            self.connected = Some(reply.clone());
        }
        reply
    }

    /// The negotiated version, once connected.
    pub fn version(&self) -> Option<Version> {
        self.codec.version()
    }

    /// The local address of this connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// Encodes and writes `frame` (escaping per the negotiated version).
    ///
    /// # Panics
    /// If the write fails.
    pub fn send(&mut self, frame: &Frame) {
        self.try_send(frame)
            .unwrap_or_else(|e| panic!("writing {}: {e}", describe(frame)));
    }

    /// Encodes and writes `frame`, returning the I/O error instead of panicking.
    pub fn try_send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut buf = BytesMut::new();
        self.codec.encode(frame, &mut buf)?;
        self.try_send_raw(&buf)
    }

    /// Writes raw bytes.
    ///
    /// # Panics
    /// If the write fails.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .unwrap_or_else(|e| panic!("writing {} raw bytes: {e}", bytes.len()));
    }

    /// Writes raw bytes, returning the I/O error (the server may already have closed).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends one heart-beat EOL.
    pub fn send_heartbeat(&mut self) {
        self.send_raw(b"\n");
    }

    /// Reads more bytes into the buffer, waiting until `deadline`. Ok(false) = timeout.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.rbuf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The next frame or heart-beat, waiting at most `timeout`. Frames put aside by the
    /// receipt-waiting helpers come first.
    pub fn recv_heartbeat_or_frame(&mut self, timeout: Duration) -> Event {
        if let Some(f) = self.pending.pop_front() {
            return Event::Frame(f);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(Inbound::Frame(f))) => return Event::Frame(f),
                Ok(Some(Inbound::HeartBeat)) => {
                    self.heartbeats += 1;
                    self.last_heartbeat = Some(Instant::now());
                    return Event::HeartBeat;
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "the server sent bytes the client codec cannot decode: {e}; buffer starts {:?}",
                    String::from_utf8_lossy(&self.rbuf[..self.rbuf.len().min(300)])
                ),
            }
            if self.closed {
                return Event::Closed;
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Event::Timeout,
                Err(_) => self.closed = true, // decode what is buffered, then report Closed
            }
        }
    }

    /// The next frame (heart-beats are counted and skipped), or `None` on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_heartbeat_or_frame(left) {
                Event::Frame(f) => return Some(f),
                Event::HeartBeat => continue,
                Event::Closed | Event::Timeout => return None,
            }
        }
    }

    /// The next frame, which must be `command`.
    ///
    /// # Panics
    /// With what arrived instead (another frame, nothing, or a closed connection).
    #[track_caller]
    pub fn expect(&mut self, command: Command, timeout: Duration) -> Frame {
        match self.recv(timeout) {
            Some(f) if f.command == command => f,
            Some(f) => panic!("expected {command:?}, got {}", describe(&f)),
            None if self.closed => {
                panic!("expected {command:?}, but the server closed the connection")
            }
            None => panic!("expected {command:?}, got nothing within {timeout:?}"),
        }
    }

    /// Asserts that no frame arrives within `timeout` (heart-beats are fine).
    #[track_caller]
    pub fn expect_nothing(&mut self, timeout: Duration) {
        if let Some(f) = self.recv(timeout) {
            panic!("expected no frame, got {}", describe(&f));
        }
    }

    /// Waits until the server closes the connection, discarding nothing: bytes that arrive are
    /// kept and can still be decoded with `recv`. True if closed within `timeout`.
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => self.closed = true,
            }
        }
        true
    }

    /// True once a read saw the connection closed.
    pub fn saw_close(&self) -> bool {
        self.closed
    }

    /// Heart-beats received so far.
    pub fn heartbeats(&self) -> usize {
        self.heartbeats
    }

    /// When the last heart-beat arrived.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last_heartbeat
    }

    /// Closes our side of the connection (both directions) without DISCONNECT.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// A fresh receipt id for this client.
    pub fn receipt_id(&mut self) -> String {
        self.next_receipt += 1;
        format!("rcpt-{}", self.next_receipt)
    }

    /// Sends `frame` with a fresh `receipt` header and waits for the matching RECEIPT; other
    /// frames that arrive meanwhile are kept for `recv`.
    ///
    /// # Panics
    /// On an ERROR frame, a close or a timeout.
    #[track_caller]
    pub fn send_with_receipt(&mut self, frame: Frame) -> Frame {
        let id = self.receipt_id();
        let frame = frame.with_header("receipt", id.as_str());
        self.send(&frame);
        self.wait_receipt(&id, TIMEOUT)
    }

    /// Waits for RECEIPT `receipt-id:id`; frames that arrive first are kept for `recv`.
    #[track_caller]
    pub fn wait_receipt(&mut self, id: &str, timeout: Duration) -> Frame {
        self.try_wait_receipt(id, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Client::wait_receipt`], returning what went wrong (an ERROR, a close, a timeout)
    /// instead of panicking.
    pub fn try_wait_receipt(&mut self, id: &str, timeout: Duration) -> Result<Frame, String> {
        let deadline = Instant::now() + timeout;
        let mut aside = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(f) if f.command == Command::Receipt && f.get("receipt-id") == Some(id) => {
                    break Ok(f);
                }
                Some(f) if f.command == Command::Error => {
                    break Err(format!("expected RECEIPT {id}, got {}", describe(&f)))
                }
                Some(f) => aside.push(f),
                None if self.closed => {
                    break Err(format!(
                        "expected RECEIPT {id}, but the server closed the connection"
                    ))
                }
                None => {
                    break Err(format!(
                        "expected RECEIPT {id}, got nothing within {timeout:?}"
                    ))
                }
            }
        };
        // Keep the order: frames put aside come before anything still pending.
        for f in aside.into_iter().rev() {
            self.pending.push_front(f);
        }
        result
    }

    /// SUBSCRIBE without a receipt.
    pub fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        self.send(&subscribe_frame(id, destination, ack));
    }

    /// SUBSCRIBE and wait for its RECEIPT, so the subscription is in place when this returns.
    #[track_caller]
    pub fn subscribe_sync(&mut self, id: &str, destination: &str, ack: &str) {
        self.send_with_receipt(subscribe_frame(id, destination, ack));
    }

    /// UNSUBSCRIBE and wait for its RECEIPT.
    #[track_caller]
    pub fn unsubscribe_sync(&mut self, id: &str) {
        self.send_with_receipt(Frame::new(Command::Unsubscribe).with_header("id", id));
    }

    /// SEND `body` to `destination` with extra `headers`, without a receipt.
    pub fn send_to(&mut self, destination: &str, body: &[u8], headers: &[(&str, &str)]) {
        self.send(&send_frame(destination, body, headers));
    }

    /// SEND and wait for its RECEIPT.
    #[track_caller]
    pub fn send_to_sync(&mut self, destination: &str, body: &[u8], headers: &[(&str, &str)]) {
        self.send_with_receipt(send_frame(destination, body, headers));
    }

    /// DISCONNECT with a receipt; waits for the RECEIPT and then for the server to close.
    #[track_caller]
    pub fn disconnect(mut self) {
        self.send_with_receipt(Frame::new(Command::Disconnect));
        assert!(
            self.is_closed(TIMEOUT),
            "the server did not close the connection after DISCONNECT's RECEIPT"
        );
    }

    /// Receives MESSAGE frames until `n` arrived or `timeout` passed.
    pub fn recv_messages(&mut self, n: usize, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(f) if f.command == Command::Message => out.push(f),
                Some(f) => panic!("expected MESSAGE, got {}", describe(&f)),
                None => break,
            }
        }
        out
    }

    /// A full round trip through a fresh queue on this connection: subscribe, send with receipt,
    /// receive it intact, unsubscribe. Proves the connection and the broker work.
    #[track_caller]
    pub fn assert_round_trip(&mut self, tag: &str) {
        let dest = format!("/queue/roundtrip-{tag}-{}", self.receipt_id());
        let sub = format!("rt-{tag}");
        self.subscribe_sync(&sub, &dest, "auto");
        self.send_to_sync(&dest, tag.as_bytes(), &[("x-tag", tag)]);
        let m = self.expect(Command::Message, TIMEOUT);
        assert_eq!(
            m.get("destination"),
            Some(dest.as_str()),
            "{}",
            describe(&m)
        );
        assert_eq!(m.get("x-tag"), Some(tag), "{}", describe(&m));
        assert_eq!(&m.body[..], tag.as_bytes());
        self.unsubscribe_sync(&sub);
    }
}

/// A SUBSCRIBE frame.
pub fn subscribe_frame(id: &str, destination: &str, ack: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .with_header("id", id)
        .with_header("destination", destination)
        .with_header("ack", ack)
}

/// A SEND frame (the codec adds `content-length`).
pub fn send_frame(destination: &str, body: &[u8], headers: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Send).with_header("destination", destination);
    for (k, v) in headers {
        f.push_header(*k, *v);
    }
    f.with_body(bytes::Bytes::copy_from_slice(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's framing agrees with the server codec: what the client encodes the server
    /// decodes unchanged, escapes included, and content-length is added for SEND.
    #[test]
    fn client_frames_decode_on_the_server_side_codec() {
        let mut client = StompCodec::client(Limits::default());
        let mut server = StompCodec::server(Limits::default());
        client.set_version(Version::V1_2);
        server.set_version(Version::V1_2);
        let frame = send_frame("/queue/x", b"a\0b", &[("x-h", "a:b\nc\\d\re")]);
        let mut buf = BytesMut::new();
        client.encode(&frame, &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        assert!(text.contains("content-length:3\n"), "{text:?}");
        match server.decode(&mut buf).unwrap() {
            Some(Inbound::Frame(f)) => {
                assert_eq!(f.get("x-h"), Some("a:b\nc\\d\re"));
                assert_eq!(&f.body[..], b"a\0b");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heartbeat_eols_decode_as_heartbeats_on_the_client() {
        let mut client = StompCodec::client(Limits::default());
        let mut buf = BytesMut::from(&b"\n"[..]);
        assert!(matches!(
            client.decode(&mut buf),
            Ok(Some(Inbound::HeartBeat))
        ));
    }
}
