//! Encoder rules: escaping per version and command, content-length, heart-beat EOLs.

use bytes::BytesMut;
use stompd_protocol::{
    encode_frame, Command, Frame, HeartBeatEol, Inbound, Limits, StompCodec, Version,
};
use tokio_util::codec::{Decoder, Encoder};

fn enc(version: Version, command: Command, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_frame(&mut dst, version, command, headers.iter().copied(), body);
    dst.to_vec()
}

#[test]
fn message_frame_layout() {
    let out = enc(
        Version::V1_2,
        Command::Message,
        &[("destination", "/q"), ("message-id", "7")],
        b"hi",
    );
    assert_eq!(
        out,
        b"MESSAGE\ndestination:/q\nmessage-id:7\ncontent-length:2\n\nhi\0"
    );
}

#[test]
fn escapes_v12_and_v11() {
    let h = [("a:b", "x\ny\\z\r:")];
    assert_eq!(
        enc(Version::V1_2, Command::Receipt, &h, b""),
        b"RECEIPT\na\\cb:x\\ny\\\\z\\r\\c\n\n\0"
    );
    // 1.1 has no \r escape: CR is written as is.
    assert_eq!(
        enc(Version::V1_1, Command::Receipt, &h, b""),
        b"RECEIPT\na\\cb:x\\ny\\\\z\r\\c\n\n\0"
    );
}

#[test]
fn no_escaping_for_v10_and_handshake_frames() {
    let h = [("k", "a:b\\c")];
    assert_eq!(
        enc(Version::V1_0, Command::Receipt, &h, b""),
        b"RECEIPT\nk:a:b\\c\n\n\0"
    );
    for cmd in [Command::Connect, Command::Stomp, Command::Connected] {
        let out = enc(Version::V1_2, cmd, &h, b"");
        let expected = format!("{cmd}\nk:a:b\\c\n\n\0");
        assert_eq!(out, expected.as_bytes());
    }
}

#[test]
fn unescapable_line_breaks_cannot_inject_headers() {
    let out = enc(
        Version::V1_0,
        Command::Error,
        &[("message", "bad\nevil:1\r")],
        b"",
    );
    assert_eq!(out, b"ERROR\nmessage:bad evil:1 \ncontent-length:0\n\n\0");
}

#[test]
fn content_length_rules() {
    // Given content-length headers are dropped and the real one written.
    let out = enc(
        Version::V1_2,
        Command::Receipt,
        &[("content-length", "999"), ("receipt-id", "1")],
        b"a\0b",
    );
    assert_eq!(out, b"RECEIPT\nreceipt-id:1\ncontent-length:3\n\na\0b\0");
    // Empty body: only SEND/MESSAGE/ERROR carry content-length:0.
    assert_eq!(
        enc(Version::V1_2, Command::Receipt, &[], b""),
        b"RECEIPT\n\n\0"
    );
    for cmd in [Command::Send, Command::Message, Command::Error] {
        let out = enc(Version::V1_2, cmd, &[], b"");
        assert_eq!(out, format!("{cmd}\ncontent-length:0\n\n\0").as_bytes());
    }
    let big = vec![7u8; 1234567];
    let out = enc(Version::V1_2, Command::Message, &[], &big);
    assert!(out.starts_with(b"MESSAGE\ncontent-length:1234567\n\n"));
}

#[test]
fn codec_encoder_uses_its_version() {
    let frame = Frame::new(Command::Message)
        .with_header("k", "a:b")
        .with_body(&b"x"[..]);
    let mut c = StompCodec::server(Limits::default());
    let mut dst = BytesMut::new();
    // Unnegotiated: no escaping.
    c.encode(&frame, &mut dst).unwrap();
    assert_eq!(&dst[..], b"MESSAGE\nk:a:b\ncontent-length:1\n\nx\0");
    dst.clear();
    c.set_version(Version::V1_2);
    c.encode(frame.clone(), &mut dst).unwrap();
    assert_eq!(&dst[..], b"MESSAGE\nk:a\\cb\ncontent-length:1\n\nx\0");
    dst.clear();
    c.encode(HeartBeatEol, &mut dst).unwrap();
    assert_eq!(&dst[..], b"\n");
}

#[test]
fn client_and_server_codecs_round_trip() {
    let mut client = StompCodec::client(Limits::default());
    let mut server = StompCodec::server(Limits::default());
    client.set_version(Version::V1_2);
    server.set_version(Version::V1_2);
    let send = Frame::new(Command::Send)
        .with_header("destination", "/queue/a:b")
        .with_header("x", "line1\nline2\\")
        .with_body(&b"payload\0with nul"[..]);
    let mut wire = BytesMut::new();
    client.encode(&send, &mut wire).unwrap();
    let Some(Inbound::Frame(got)) = server.decode(&mut wire).unwrap() else {
        panic!("no frame")
    };
    assert_eq!(got.get("destination"), Some("/queue/a:b"));
    assert_eq!(got.get("x"), Some("line1\nline2\\"));
    assert_eq!(got.get("content-length"), Some("16"));
    assert_eq!(&got.body[..], b"payload\0with nul");
}
