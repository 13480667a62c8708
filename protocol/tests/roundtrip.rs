//! Property: any frames encoded with any version, separated by heart-beat EOLs and fed to the
//! decoder in arbitrary chunks (down to single bytes), come out unchanged.

use bytes::BytesMut;
use proptest::prelude::*;
use stompd_protocol::{encode_frame, Command, Frame, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::Decoder;

const COMMANDS: [Command; 15] = [
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
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(':'),
            Just('\n'),
            Just('\r'),
            Just('\\'),
            Just(' '),
            Just('é'),
            Just('\u{1F600}'),
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9'),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Makes a header representable for `version`/`command`: where nothing is escaped, CR, LF and a
/// name's ':' cannot be written; in 1.1 a value cannot end with CR (it would read as CRLF).
fn representable(version: Version, command: Command, name: &str, value: &str) -> (String, String) {
    let escaped = version != Version::V1_0
        && !matches!(
            command,
            Command::Connect | Command::Stomp | Command::Connected
        );
    let (mut name, mut value) = (name.to_owned(), value.to_owned());
    if !escaped {
        name.retain(|c| !matches!(c, ':' | '\n' | '\r'));
        value.retain(|c| !matches!(c, '\n' | '\r'));
    } else if version == Version::V1_1 {
        while value.ends_with('\r') {
            value.pop();
        }
    }
    if name.is_empty() || name == "content-length" {
        name.insert(0, 'h');
    }
    (name, value)
}

#[derive(Debug, Clone)]
struct Case {
    version: Version,
    frames: Vec<(Frame, Vec<u8>)>,
    chunks: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let frame = (
        0..COMMANDS.len(),
        proptest::collection::vec((text(), text()), 0..6),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(b'\n'), any::<u8>()], 0..40),
        proptest::collection::vec(prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..])], 0..3),
    );
    (
        0..3usize,
        proptest::collection::vec(frame, 1..6),
        prop_oneof![
            Just(vec![1usize]),
            proptest::collection::vec(1..40usize, 1..20)
        ],
    )
        .prop_map(|(v, frames, chunks)| {
            let version = Version::ALL[v];
            let frames = frames
                .into_iter()
                .map(|(c, headers, body, eols)| {
                    let command = COMMANDS[c];
                    let mut frame = Frame::new(command).with_body(body);
                    for (n, v) in headers {
                        let (n, v) = representable(version, command, &n, &v);
                        frame.push_header(n, v);
                    }
                    (frame, eols.concat())
                })
                .collect();
            Case {
                version,
                frames,
                chunks,
            }
        })
}

fn without_content_length(f: &Frame) -> Vec<(String, String)> {
    f.headers
        .iter()
        .filter(|(n, _)| n != "content-length")
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_in_chunks(case in case()) {
        let mut wire = BytesMut::new();
        for (frame, eols) in &case.frames {
            encode_frame(
                &mut wire,
                case.version,
                frame.command,
                frame.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                &frame.body,
            );
            wire.extend_from_slice(eols);
        }
        let mut codec = StompCodec::server(Limits::default());
        codec.set_version(case.version);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut heartbeats = 0;
        let mut offset = 0;
        let mut i = 0;
        while offset < wire.len() {
            let n = case.chunks[i % case.chunks.len()].min(wire.len() - offset);
            i += 1;
            buf.extend_from_slice(&wire[offset..offset + n]);
            offset += n;
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                match item {
                    Inbound::Frame(f) => got.push(f),
                    Inbound::HeartBeat => heartbeats += 1,
                }
            }
        }
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(got.len(), case.frames.len());
        for ((want, _), got) in case.frames.iter().zip(&got) {
            prop_assert_eq!(want.command, got.command);
            prop_assert_eq!(without_content_length(want), without_content_length(got));
            prop_assert_eq!(&want.body, &got.body);
        }
        let eol_groups = case.frames.iter().filter(|(_, e)| !e.is_empty()).count();
        prop_assert!(heartbeats >= eol_groups);
        prop_assert!(codec.bytes_examined() <= wire.len() as u64);
    }
}
