//! One STOMP client connection of the load tool: a TCP stream, the protocol crate's client codec,
//! one read buffer and one write buffer that are reused for the whole run.
//!
//! Frames are encoded into the write buffer and written together by [`Conn::flush`]: the tool
//! never writes (or flushes) once per message.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::BytesMut;
use stompd_protocol::{encode_frame, Command, Frame, Inbound, Limits, StompCodec, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder as _;

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// `host` header of CONNECT (RabbitMQ takes it as the virtual host).
    pub vhost: String,
}

/// Read buffer growth step of a busy connection.
pub const READ_CHUNK: usize = 256 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Conn {
    stream: TcpStream,
    codec: StompCodec,
    rbuf: BytesMut,
    chunk: usize,
    pub wbuf: BytesMut,
    pub version: Version,
    /// Heart-beat the server will send / expects, as negotiated (ms, 0 = none).
    pub heartbeat: (u64, u64),
}

impl Conn {
    /// TCP connect, CONNECT, wait for CONNECTED. `heart_beat` is what the client offers (cx, cy);
    /// `chunk` is how much the read buffer grows at a time (small for idle connections).
    pub async fn connect(
        target: &Target,
        heart_beat: (u64, u64),
        chunk: usize,
    ) -> anyhow::Result<Conn> {
        let addr = (target.host.as_str(), target.port);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {}:{} timed out", target.host, target.port))?
            .with_context(|| format!("cannot connect to {}:{}", target.host, target.port))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            codec: StompCodec::client(Limits::default()),
            rbuf: BytesMut::with_capacity(chunk),
            chunk,
            wbuf: BytesMut::with_capacity(chunk.min(64 * 1024)),
            version: Version::V1_0,
            heartbeat: (0, 0),
        };
        let hb = format!("{},{}", heart_beat.0, heart_beat.1);
        let mut headers: Vec<(&str, &str)> = vec![
            ("accept-version", "1.0,1.1,1.2"),
            ("host", target.vhost.as_str()),
            ("heart-beat", hb.as_str()),
        ];
        if let Some(l) = &target.login {
            headers.push(("login", l));
        }
        if let Some(p) = &target.passcode {
            headers.push(("passcode", p));
        }
        encode_frame(
            &mut conn.wbuf,
            Version::V1_0,
            Command::Connect,
            headers,
            b"",
        );
        conn.flush().await?;
        let frame = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.next_frame())
            .await
            .map_err(|_| anyhow!("no CONNECTED within {HANDSHAKE_TIMEOUT:?}"))??;
        if frame.command != Command::Connected {
            bail!("expected CONNECTED, got {}", describe(&frame));
        }
        conn.version = match frame.get("version") {
            Some("1.2") => Version::V1_2,
            Some("1.1") => Version::V1_1,
            _ => Version::V1_0,
        };
        conn.codec.set_version(conn.version);
        if let Some((sx, sy)) = frame.get("heart-beat").and_then(parse_heartbeat) {
            // Server sends every max(sx, cy) when both non-zero; expects every max(cx, sy).
            let send = if sx == 0 || heart_beat.1 == 0 {
                0
            } else {
                sx.max(heart_beat.1)
            };
            let expect = if sy == 0 || heart_beat.0 == 0 {
                0
            } else {
                sy.max(heart_beat.0)
            };
            conn.heartbeat = (send, expect);
        }
        Ok(conn)
    }

    /// Encodes a frame into the write buffer (nothing is written yet).
    pub fn encode<'a>(
        &mut self,
        command: Command,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) {
        encode_frame(&mut self.wbuf, self.version, command, headers, body);
    }

    /// Writes everything encoded so far in one `write_all`.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream
                .write_all(&self.wbuf)
                .await
                .context("write failed")?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes a raw heart-beat EOL.
    pub async fn heartbeat(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(b"\n").await.context("write failed")?;
        Ok(())
    }

    /// A frame already in the read buffer, if any (heart-beats skipped). Never reads the socket.
    pub fn try_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            match self.codec.decode(&mut self.rbuf)? {
                Some(Inbound::Frame(f)) => return Ok(Some(f)),
                Some(Inbound::HeartBeat) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Reads more bytes from the socket into the read buffer; an error at EOF.
    pub async fn fill(&mut self) -> anyhow::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < self.chunk / 4 {
            self.rbuf.reserve(self.chunk);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .context("read failed")?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(n)
    }

    /// The next frame, reading as needed. An ERROR frame is returned like any other.
    pub async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Encodes a SUBSCRIBE asking for the receipt `sub-<id>` (not flushed).
    pub fn encode_subscribe(
        &mut self,
        id: &str,
        destination: &str,
        client_ack: bool,
        prefetch: u32,
    ) {
        let receipt = format!("sub-{id}");
        let prefetch = prefetch.to_string();
        let mut headers = vec![
            ("id", id),
            ("destination", destination),
            (
                "ack",
                if client_ack {
                    "client-individual"
                } else {
                    "auto"
                },
            ),
            ("receipt", receipt.as_str()),
        ];
        if client_ack {
            headers.push(("prefetch-count", prefetch.as_str()));
            headers.push(("activemq.prefetchSize", prefetch.as_str()));
        }
        self.encode(Command::Subscribe, headers, b"");
    }
}

/// A frame in one line for error messages: command, `message` header and a bit of the body.
pub fn describe(f: &Frame) -> String {
    let mut s = f.command.as_str().to_owned();
    if let Some(m) = f.get("message") {
        s.push_str(": ");
        s.push_str(m);
    }
    if f.command == Command::Error && !f.body.is_empty() {
        let body = String::from_utf8_lossy(&f.body[..f.body.len().min(200)]).into_owned();
        s.push_str(" (");
        s.push_str(body.trim());
        s.push(')');
    }
    s
}

fn parse_heartbeat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
