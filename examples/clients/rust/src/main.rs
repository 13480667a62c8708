//! Send and receive through stompd from Rust, with nothing but the standard library: STOMP is
//! text frames over TCP, so a small client needs no crate.
//!
//! Run stompd, then:
//!
//! ```sh
//! cd examples/clients/rust
//! cargo run -- [HOST:PORT]          # default 127.0.0.1:61613
//! ```
//!
//! With auth on, set `STOMP_LOGIN` and `STOMP_PASSCODE`. It subscribes to
//! `/queue/example.rust` with client-individual acks, sends one message with a receipt and a
//! custom header, receives and acknowledges it, and disconnects with a receipt. Exit status 0
//! means it all worked. (Within the stompd repository, the `stompd-protocol` crate has a full
//! codec with escaping and limits.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A received frame: command, headers in order, body.
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        // STOMP 1.2: with repeated headers, the first one wins.
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Escapes a header value as STOMP 1.2 requires.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ':' => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: &str, login: Option<(String, String)>) -> Result<(Client, Frame)> {
        let stream = TcpStream::connect(addr)?;
        // Every read is bounded: a broker that stops answering is an error, not a hang.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut client = Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let mut headers = vec![
            ("accept-version", "1.2".to_owned()),
            ("host", "localhost".to_owned()),
            ("heart-beat", "0,0".to_owned()),
        ];
        if let Some((login, passcode)) = login {
            headers.push(("login", login));
            headers.push(("passcode", passcode));
        }
        client.send_frame("CONNECT", &headers, b"")?;
        let connected = client.expect("CONNECTED")?;
        Ok((client, connected))
    }

    fn send_frame(&mut self, command: &str, headers: &[(&str, String)], body: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(64 + body.len());
        frame.extend_from_slice(command.as_bytes());
        frame.push(b'\n');
        for (k, v) in headers {
            // CONNECT headers are not escaped (STOMP 1.2); these values never need it.
            let v = if command == "CONNECT" {
                v.clone()
            } else {
                escape(v)
            };
            frame.extend_from_slice(format!("{}:{v}\n", escape(k)).as_bytes());
        }
        if !body.is_empty() {
            frame.extend_from_slice(format!("content-length:{}\n", body.len()).as_bytes());
        }
        frame.push(b'\n');
        frame.extend_from_slice(body);
        frame.push(0);
        self.writer.write_all(&frame)?;
        Ok(())
    }

    /// Reads the next frame, skipping heart-beat newlines.
    fn read_frame(&mut self) -> Result<Frame> {
        let mut line = String::new();
        let command = loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err("connection closed by the broker".into());
            }
            let trimmed = line.trim_end_matches(['\n', '\r']);
            if !trimmed.is_empty() {
                break trimmed.to_owned();
            }
        };
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err("connection closed inside a frame".into());
            }
            let trimmed = line.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                break;
            }
            let (k, v) = trimmed.split_once(':').ok_or("header line without ':'")?;
            headers.push((unescape(k), unescape(v)));
        }
        let mut frame = Frame {
            command,
            headers,
            body: Vec::new(),
        };
        match frame.header("content-length").map(str::parse::<usize>) {
            Some(Ok(len)) => {
                let mut body = vec![0; len + 1];
                std::io::Read::read_exact(&mut self.reader, &mut body)?;
                if body.pop() != Some(0) {
                    return Err("frame not terminated by NUL".into());
                }
                frame.body = body;
            }
            Some(Err(_)) => return Err("bad content-length".into()),
            None => {
                self.reader.read_until(0, &mut frame.body)?;
                if frame.body.pop() != Some(0) {
                    return Err("connection closed inside a frame".into());
                }
            }
        }
        Ok(frame)
    }

    /// Reads the next frame and checks its command; an ERROR frame becomes an error.
    fn expect(&mut self, command: &str) -> Result<Frame> {
        let frame = self.read_frame()?;
        if frame.command == "ERROR" {
            let message = frame.header("message").unwrap_or("").to_owned();
            return Err(format!(
                "ERROR from the broker: {message} {}",
                String::from_utf8_lossy(&frame.body)
            )
            .into());
        }
        if frame.command != command {
            return Err(format!("expected {command}, got {}", frame.command).into());
        }
        Ok(frame)
    }

    fn expect_receipt(&mut self, id: &str) -> Result<()> {
        let receipt = self.expect("RECEIPT")?;
        if receipt.header("receipt-id") != Some(id) {
            return Err(format!(
                "expected RECEIPT {id}, got {:?}",
                receipt.header("receipt-id")
            )
            .into());
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stompd-example-client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:61613".to_owned());
    let login = std::env::var("STOMP_LOGIN")
        .ok()
        .map(|l| (l, std::env::var("STOMP_PASSCODE").unwrap_or_default()));
    let destination = "/queue/example.rust".to_owned();

    let (mut client, connected) = Client::connect(&addr, login)?;
    println!(
        "connected: server={} version={}",
        connected.header("server").unwrap_or("?"),
        connected.header("version").unwrap_or("?")
    );

    client.send_frame(
        "SUBSCRIBE",
        &[
            ("id", "rust-example".to_owned()),
            ("destination", destination.clone()),
            ("ack", "client-individual".to_owned()),
            ("receipt", "subscribed".to_owned()),
        ],
        b"",
    )?;
    client.expect_receipt("subscribed")?;

    client.send_frame(
        "SEND",
        &[
            ("destination", destination.clone()),
            ("content-type", "text/plain".to_owned()),
            ("x-example", "rust".to_owned()),
            ("receipt", "sent".to_owned()),
        ],
        b"hello from rust",
    )?;
    // The RECEIPT and the MESSAGE may come in either order.
    let mut message = None;
    let mut stored = false;
    while message.is_none() || !stored {
        let frame = client.read_frame()?;
        match frame.command.as_str() {
            "RECEIPT" if frame.header("receipt-id") == Some("sent") => stored = true,
            "MESSAGE" => message = Some(frame),
            "ERROR" => {
                return Err(format!("ERROR from the broker: {:?}", frame.header("message")).into())
            }
            other => return Err(format!("unexpected {other}").into()),
        }
    }
    println!("sent: hello from rust (receipt received)");
    let message = message.ok_or("no MESSAGE")?;

    // STOMP 1.2: acknowledge with the MESSAGE's `ack` header.
    let ack = message
        .header("ack")
        .ok_or("MESSAGE without an ack header")?
        .to_owned();
    client.send_frame("ACK", &[("id", ack)], b"")?;
    println!(
        "received: {} (x-example={}, acked)",
        String::from_utf8_lossy(&message.body),
        message.header("x-example").unwrap_or("?")
    );

    client.send_frame("DISCONNECT", &[("receipt", "bye".to_owned())], b"")?;
    client.expect_receipt("bye")?;
    println!("done");
    Ok(())
}
