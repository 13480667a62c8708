//! Decoder rules: framing, EOLs, escaping per version, limits and every error variant.

use bytes::{Bytes, BytesMut};
use stompd_protocol::{Command, DecodeError, Frame, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::Decoder;

fn server(v: Option<Version>) -> StompCodec {
    let mut c = StompCodec::server(Limits::default());
    if let Some(v) = v {
        c.set_version(v);
    }
    c
}

/// Decodes everything in `input`, returning items until the first error.
fn decode_all(codec: &mut StompCodec, input: &[u8]) -> Result<Vec<Inbound>, DecodeError> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(item) = codec.decode(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

fn one_frame(codec: &mut StompCodec, input: &[u8]) -> Frame {
    let items = decode_all(codec, input).expect("decodes");
    let frames: Vec<Frame> = items
        .into_iter()
        .filter_map(|i| match i {
            Inbound::Frame(f) => Some(f),
            Inbound::HeartBeat => None,
        })
        .collect();
    assert_eq!(frames.len(), 1, "expected exactly one frame");
    frames.into_iter().next().unwrap()
}

fn err(codec: &mut StompCodec, input: &[u8]) -> DecodeError {
    decode_all(codec, input).expect_err("should fail")
}

#[test]
fn simple_frame_and_partial_input() {
    let mut c = server(Some(Version::V1_2));
    let input = b"SEND\ndestination:/queue/a\nreceipt:1\n\nhello\0";
    let mut buf = BytesMut::new();
    for (i, b) in input.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let r = c.decode(&mut buf).unwrap();
        if i + 1 < input.len() {
            assert_eq!(r, None, "frame finished early at byte {i}");
        } else {
            let Some(Inbound::Frame(f)) = r else {
                panic!("no frame")
            };
            assert_eq!(f.command, Command::Send);
            assert_eq!(f.get("destination"), Some("/queue/a"));
            assert_eq!(f.get("receipt"), Some("1"));
            assert_eq!(&f.body[..], b"hello");
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn crlf_line_endings() {
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(&mut c, b"SEND\r\ndestination:/q\r\nx:y\r\n\r\nbody\0");
    assert_eq!(f.command, Command::Send);
    assert_eq!(f.get("destination"), Some("/q"));
    assert_eq!(f.get("x"), Some("y"));
    assert_eq!(&f.body[..], b"body");
}

#[test]
fn heartbeats_between_frames() {
    let mut c = server(Some(Version::V1_2));
    let items = decode_all(
        &mut c,
        b"\n\r\n\nSEND\ndestination:/q\n\na\0\nSEND\ndestination:/q\n\nb\0\r\n",
    )
    .unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], Inbound::HeartBeat);
    assert!(matches!(&items[1], Inbound::Frame(f) if &f.body[..] == b"a"));
    assert_eq!(items[2], Inbound::HeartBeat);
    assert!(matches!(&items[3], Inbound::Frame(f) if &f.body[..] == b"b"));
    assert_eq!(items[4], Inbound::HeartBeat);
}

#[test]
fn lone_cr_waits_for_lf() {
    let mut c = server(None);
    let mut buf = BytesMut::from(&b"\r"[..]);
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(c.decode(&mut buf).unwrap(), Some(Inbound::HeartBeat));
    assert!(buf.is_empty());
}

#[test]
fn header_split_at_first_colon_and_not_trimmed() {
    for v in [None, Some(Version::V1_0)] {
        let mut c = server(v);
        let f = one_frame(&mut c, b"SEND\ndestination: /a:b \n\n\0");
        assert_eq!(f.get("destination"), Some(" /a:b "));
    }
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(&mut c, b"SEND\ndestination: /a \n\n\0");
    assert_eq!(f.get("destination"), Some(" /a "));
}

#[test]
fn repeated_headers_kept_first_wins() {
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(&mut c, b"SEND\nfoo:1\nfoo:2\ndestination:/q\nfoo:3\n\n\0");
    assert_eq!(f.get("foo"), Some("1"));
    let foos: Vec<&str> = f
        .headers
        .iter()
        .filter(|(n, _)| n == "foo")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(foos, ["1", "2", "3"]);
    assert_eq!(f.headers.len(), 4);
}

#[test]
fn first_content_length_is_used() {
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(
        &mut c,
        b"SEND\ncontent-length:3\ncontent-length:1\n\na\0b\0",
    );
    assert_eq!(&f.body[..], b"a\0b");
}

#[test]
fn content_length_body_may_contain_nul() {
    let mut c = server(Some(Version::V1_1));
    let f = one_frame(
        &mut c,
        b"SEND\ndestination:/q\ncontent-length:5\n\n\0\0x\0\0\0",
    );
    assert_eq!(&f.body[..], b"\0\0x\0\0");
}

#[test]
fn content_length_zero() {
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(&mut c, b"SEND\ncontent-length:0\n\n\0");
    assert!(f.body.is_empty());
}

#[test]
fn content_length_without_nul_is_missing_nul() {
    let mut c = server(Some(Version::V1_2));
    let e = err(&mut c, b"SEND\ncontent-length:2\n\nabc\0");
    assert!(matches!(e, DecodeError::MissingNul), "{e:?}");
    assert_eq!(e.code(), "bad-frame");
}

#[test]
fn bad_content_length() {
    for bad in [
        "",
        "abc",
        "-1",
        " 3",
        "3 ",
        "1.0",
        "99999999999999999999999999",
    ] {
        let mut c = server(Some(Version::V1_2));
        let input = format!("SEND\ncontent-length:{bad}\n\n\0");
        let e = err(&mut c, input.as_bytes());
        assert!(
            matches!(e, DecodeError::BadContentLength(_)),
            "{bad:?}: {e:?}"
        );
        assert_eq!(e.code(), "bad-content-length");
    }
}

#[test]
fn body_is_zero_copy_slice_of_the_frame() {
    let mut c = server(Some(Version::V1_2));
    let input = b"SEND\ndestination:/q\n\nhello\0";
    let mut buf = BytesMut::from(&input[..]);
    let start = buf.as_ptr() as usize;
    let Some(Inbound::Frame(f)) = c.decode(&mut buf).unwrap() else {
        panic!()
    };
    let body_ptr = f.body.as_ptr() as usize;
    let dest_ptr = f.get("destination").unwrap().as_ptr() as usize;
    assert_eq!(body_ptr, start + input.len() - 6);
    assert_eq!(dest_ptr, start + 17);
}

#[test]
fn escapes_v12() {
    let mut c = server(Some(Version::V1_2));
    let f = one_frame(&mut c, b"SEND\na\\cb:x\\ny\\\\z\\r\\c\n\n\0");
    assert_eq!(f.headers[0].0, "a:b");
    assert_eq!(f.headers[0].1, "x\ny\\z\r:");
}

#[test]
fn escapes_v11_reject_backslash_r() {
    let mut c = server(Some(Version::V1_1));
    let f = one_frame(&mut c, b"SEND\nk:a\\nb\\cc\\\\\n\n\0");
    assert_eq!(f.get("k"), Some("a\nb:c\\"));
    let mut c = server(Some(Version::V1_1));
    let e = err(&mut c, b"SEND\nk:a\\rb\n\n\0");
    assert!(matches!(e, DecodeError::BadEscape(_)), "{e:?}");
}

#[test]
fn bad_escapes_are_errors() {
    for v in [Version::V1_1, Version::V1_2] {
        for bad in [&b"k:\\t"[..], b"k:abc\\", b"k\\x:v", b"k:\\"] {
            let mut c = server(Some(v));
            let mut input = b"SEND\n".to_vec();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"\n\n\0");
            let e = err(&mut c, &input);
            assert!(matches!(e, DecodeError::BadEscape(_)), "{v} {bad:?}: {e:?}");
            assert_eq!(e.code(), "bad-escape");
        }
    }
}

#[test]
fn no_unescaping_in_v10_or_unnegotiated() {
    for v in [None, Some(Version::V1_0)] {
        let mut c = server(v);
        let f = one_frame(&mut c, b"SEND\nk:a\\nb\\t\\\n\n\0");
        assert_eq!(f.get("k"), Some("a\\nb\\t\\"));
    }
}

#[test]
fn connect_stomp_connected_never_unescaped() {
    for cmd in ["CONNECT", "STOMP"] {
        let mut c = server(Some(Version::V1_2));
        let input = format!("{cmd}\nlogin:a\\c\\q\n\n\0");
        let f = one_frame(&mut c, input.as_bytes());
        assert_eq!(f.get("login"), Some("a\\c\\q"));
    }
    let mut c = StompCodec::client(Limits::default());
    c.set_version(Version::V1_2);
    let f = one_frame(&mut c, b"CONNECTED\nserver:x\\c\n\n\0");
    assert_eq!(f.get("server"), Some("x\\c"));
    // ...but MESSAGE on the client side is.
    let f = one_frame(&mut c, b"MESSAGE\nk:x\\c\n\n\0");
    assert_eq!(f.get("k"), Some("x:"));
}

#[test]
fn unnegotiated_then_set_version() {
    let mut c = server(None);
    let mut buf = BytesMut::from(&b"CONNECT\naccept-version:1.2\n\n\0SEND\nk:a\\cb\n\n\0"[..]);
    let Some(Inbound::Frame(f)) = c.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.command, Command::Connect);
    c.set_version(Version::V1_2);
    let Some(Inbound::Frame(f)) = c.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.get("k"), Some("a:b"));
}

#[test]
fn unknown_command_and_bad_utf8() {
    let mut c = server(None);
    let e = err(&mut c, b"FOO\n\n\0");
    assert!(
        matches!(&e, DecodeError::UnknownCommand(s) if s == "FOO"),
        "{e:?}"
    );
    assert_eq!(e.code(), "unknown-command");
    let mut c = server(None);
    let e = err(&mut c, b"send\n\n\0");
    assert!(matches!(e, DecodeError::UnknownCommand(_)));
    let mut c = server(None);
    let e = err(&mut c, b"SE\xffND\n\n\0");
    assert!(matches!(e, DecodeError::BadUtf8), "{e:?}");
    let mut c = server(Some(Version::V1_2));
    let e = err(&mut c, b"SEND\nk:\xc3\x28\n\n\0");
    assert!(matches!(e, DecodeError::BadUtf8), "{e:?}");
    assert_eq!(e.code(), "bad-utf8");
}

#[test]
fn all_commands_decode() {
    for cmd in [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ] {
        let mut c = server(Some(Version::V1_2));
        let f = one_frame(&mut c, format!("{cmd}\n\n\0").as_bytes());
        assert_eq!(f.command, cmd);
        assert_eq!(Command::from_bytes(cmd.as_str().as_bytes()), Some(cmd));
    }
}

#[test]
fn bad_header_lines() {
    for bad in [&b"SEND\nnocolon\n\n\0"[..], b"SEND\n:value\n\n\0"] {
        let mut c = server(Some(Version::V1_2));
        let e = err(&mut c, bad);
        assert!(matches!(e, DecodeError::BadHeader(_)), "{e:?}");
        assert_eq!(e.code(), "bad-header");
    }
    // An empty value is fine.
    let mut c = server(Some(Version::V1_2));
    assert_eq!(one_frame(&mut c, b"SEND\nk:\n\n\0").get("k"), Some(""));
}

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 200,
        max_header_line_bytes: 20,
        max_headers: 3,
        max_body_bytes: 50,
    }
}

#[test]
fn header_line_too_long_detected_while_partial() {
    let mut c = StompCodec::server(limits());
    // Exactly at the limit is fine.
    let ok = format!("SEND\n{}:{}\n\n\0", "a".repeat(10), "b".repeat(9));
    assert!(decode_all(&mut c, ok.as_bytes()).is_ok());
    // A partial line with no LF that already exceeds the limit fails before more arrives.
    let mut c = StompCodec::server(limits());
    let mut buf = BytesMut::from(&b"SEND\nabc:"[..]);
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[b'x'; 16]);
    assert_eq!(
        c.decode(&mut buf).unwrap(),
        None,
        "20 bytes is still within the limit"
    );
    buf.extend_from_slice(b"\r");
    assert_eq!(
        c.decode(&mut buf).unwrap(),
        None,
        "a trailing CR may belong to the EOL"
    );
    buf.extend_from_slice(b"y");
    let e = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(e, DecodeError::HeaderLineTooLong { limit: 20 }),
        "{e:?}"
    );
    assert_eq!(e.code(), "header-too-long");
}

#[test]
fn command_line_too_long() {
    let mut c = StompCodec::server(limits());
    let e = err(&mut c, &[b'S'; 21]);
    assert!(matches!(e, DecodeError::HeaderLineTooLong { .. }), "{e:?}");
}

#[test]
fn too_many_headers() {
    let mut c = StompCodec::server(limits());
    assert!(decode_all(&mut c, b"SEND\na:1\nb:2\nc:3\n\n\0").is_ok());
    let mut c = StompCodec::server(limits());
    let e = err(&mut c, b"SEND\na:1\nb:2\nc:3\nd:4\n");
    assert!(
        matches!(e, DecodeError::TooManyHeaders { limit: 3 }),
        "{e:?}"
    );
    assert_eq!(e.code(), "too-many-headers");
}

#[test]
fn content_length_above_limit_fails_before_body() {
    let mut c = StompCodec::server(limits());
    let e = err(&mut c, b"SEND\ncontent-length:51\n");
    assert!(
        matches!(
            e,
            DecodeError::BodyTooLarge {
                limit: 50,
                length: Some(51)
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "body-too-large");
    let mut c = StompCodec::server(limits());
    let input = format!("SEND\ncontent-length:50\n\n{}\0", "x".repeat(50));
    assert_eq!(one_frame(&mut c, input.as_bytes()).body.len(), 50);
}

#[test]
fn nul_terminated_body_growing_past_limit() {
    let mut c = StompCodec::server(limits());
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    buf.extend_from_slice(&[b'x'; 50]);
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"x");
    let e = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::BodyTooLarge {
                limit: 50,
                length: None
            }
        ),
        "{e:?}"
    );
    // All at once, complete with NUL, still too large.
    let mut c = StompCodec::server(limits());
    let input = format!("SEND\n\n{}\0", "x".repeat(51));
    assert!(matches!(
        err(&mut c, input.as_bytes()),
        DecodeError::BodyTooLarge { .. }
    ));
}

#[test]
fn frame_too_large() {
    let l = Limits {
        max_frame_bytes: 40,
        ..limits()
    };
    // Headers alone exceed the frame limit.
    let mut c = StompCodec::server(l);
    let e = err(&mut c, b"SEND\naaaaa:1234567890\nbbbbb:1234567890\ncc:12");
    assert!(
        matches!(e, DecodeError::FrameTooLarge { limit: 40 }),
        "{e:?}"
    );
    assert_eq!(e.code(), "frame-too-large");
    // Known content-length that would exceed it fails before the body arrives.
    let mut c = StompCodec::server(l);
    let e = err(&mut c, b"SEND\ncontent-length:40\n\n");
    assert!(matches!(e, DecodeError::FrameTooLarge { .. }), "{e:?}");
    // A NUL-terminated body that pushes the frame over.
    let mut c = StompCodec::server(l);
    let input = format!("SEND\n\n{}", "x".repeat(40));
    assert!(matches!(
        err(&mut c, input.as_bytes()),
        DecodeError::FrameTooLarge { .. }
    ));
    // Exactly at the limit is fine: 6 + 33 + 1 = 40.
    let mut c = StompCodec::server(l);
    let input = format!("SEND\n\n{}\0", "x".repeat(33));
    assert_eq!(one_frame(&mut c, input.as_bytes()).body.len(), 33);
}

#[test]
fn content_length_reserves_whole_frame() {
    let mut c = server(Some(Version::V1_2));
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:100000\n\n"[..]);
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    assert!(
        buf.capacity() >= 100_001 + 28,
        "capacity {}",
        buf.capacity()
    );
}

#[test]
fn decode_eof_behaviour() {
    let mut c = server(None);
    let mut buf = BytesMut::from(&b"\r\n\r"[..]);
    assert_eq!(c.decode_eof(&mut buf).unwrap(), Some(Inbound::HeartBeat));
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    let mut buf = BytesMut::new();
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    let mut buf = BytesMut::from(&b"SEND\nk:v\n\nbo"[..]);
    let e = c.decode_eof(&mut buf).unwrap_err();
    assert!(
        matches!(&e, DecodeError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof),
        "{e:?}"
    );
    assert_eq!(e.code(), "io");
    let mut buf = BytesMut::from(&b"SEND\n\nbody\0"[..]);
    assert!(matches!(
        c.decode_eof(&mut buf).unwrap(),
        Some(Inbound::Frame(_))
    ));
}

#[test]
fn error_messages_are_sentences() {
    let e = DecodeError::BodyTooLarge {
        limit: 10,
        length: Some(11),
    };
    assert_eq!(e.to_string(), "body exceeds the maximum size of 10 bytes");
}

#[test]
fn one_megabyte_body_byte_by_byte_is_linear() {
    let mut c = server(Some(Version::V1_2));
    let body = vec![b'x'; 1 << 20];
    let mut input = b"SEND\ndestination:/q\n\n".to_vec();
    input.extend_from_slice(&body);
    input.push(0);
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for b in &input {
        buf.extend_from_slice(&[*b]);
        if let Some(Inbound::Frame(f)) = c.decode(&mut buf).unwrap() {
            assert_eq!(f.body, Bytes::from(body.clone()));
            frames += 1;
        }
    }
    assert_eq!(frames, 1);
    assert_eq!(
        c.bytes_examined(),
        input.len() as u64,
        "every byte examined exactly once"
    );
}

#[test]
fn many_headers_byte_by_byte_is_linear() {
    let mut c = server(Some(Version::V1_2));
    let mut input = b"SEND\n".to_vec();
    for i in 0..200 {
        input.extend_from_slice(format!("header-{i}:{}\r\n", "v".repeat(100)).as_bytes());
    }
    input.extend_from_slice(b"content-length:3\n\nabc\0");
    let mut buf = BytesMut::new();
    for b in &input {
        buf.extend_from_slice(&[*b]);
        let _ = c.decode(&mut buf).unwrap();
    }
    assert!(buf.is_empty());
    // Body bytes with a known length are skipped, not scanned.
    assert_eq!(c.bytes_examined(), input.len() as u64 - 3);
}
