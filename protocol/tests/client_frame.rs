//! ClientFrame validation per command and version.

use stompd_protocol::{AckMode, ClientFrame, Command, Frame, FrameError, HeartBeat, Version};

fn f(cmd: Command, headers: &[(&str, &str)]) -> Frame {
    headers
        .iter()
        .fold(Frame::new(cmd), |f, (n, v)| f.with_header(*n, *v))
}

fn missing(r: Result<ClientFrame, FrameError>, header: &str) {
    match r {
        Err(FrameError::MissingHeader { header: h, .. }) => assert_eq!(h, header),
        other => panic!("expected missing {header}, got {other:?}"),
    }
}

#[test]
fn connect() {
    let frame = f(
        Command::Stomp,
        &[
            ("accept-version", "1.1,1.2"),
            ("host", "h"),
            ("login", "u"),
            ("passcode", "p"),
            ("heart-beat", "10,20"),
        ],
    );
    let ClientFrame::Connect {
        version_header,
        host,
        login,
        passcode,
        heart_beat,
        stomp_command,
        ..
    } = ClientFrame::from_frame(frame, Version::V1_0).unwrap()
    else {
        panic!()
    };
    assert_eq!(version_header.unwrap(), "1.1,1.2");
    assert_eq!(host.unwrap(), "h");
    assert_eq!(login.unwrap(), "u");
    assert_eq!(passcode.unwrap(), "p");
    assert_eq!(heart_beat, HeartBeat { cx: 10, cy: 20 });
    assert!(stomp_command);
    let c = ClientFrame::from_frame(f(Command::Connect, &[]), Version::V1_0).unwrap();
    assert!(matches!(
        c,
        ClientFrame::Connect {
            stomp_command: false,
            heart_beat: HeartBeat { cx: 0, cy: 0 },
            ..
        }
    ));
    let e = ClientFrame::from_frame(f(Command::Connect, &[("heart-beat", "x")]), Version::V1_2);
    assert!(matches!(e, Err(FrameError::BadHeaderValue { .. })));
}

#[test]
fn send() {
    for v in Version::ALL {
        missing(
            ClientFrame::from_frame(f(Command::Send, &[]), v),
            "destination",
        );
        missing(
            ClientFrame::from_frame(f(Command::Send, &[("destination", "")]), v),
            "destination",
        );
        let c = ClientFrame::from_frame(
            f(
                Command::Send,
                &[
                    ("destination", "/q"),
                    ("receipt", "r"),
                    ("transaction", "t"),
                ],
            ),
            v,
        )
        .unwrap();
        let ClientFrame::Send {
            destination,
            transaction,
            ..
        } = &c
        else {
            panic!()
        };
        assert_eq!(destination, "/q");
        assert_eq!(transaction.as_ref().unwrap(), "t");
        assert_eq!(c.receipt().unwrap(), "r");
    }
}

#[test]
fn subscribe() {
    // 1.0: id defaults to the destination.
    let c = ClientFrame::from_frame(
        f(Command::Subscribe, &[("destination", "/q")]),
        Version::V1_0,
    )
    .unwrap();
    let ClientFrame::Subscribe { id, ack, .. } = c else {
        panic!()
    };
    assert_eq!(id, "/q");
    assert_eq!(ack, AckMode::Auto);
    for v in [Version::V1_1, Version::V1_2] {
        missing(
            ClientFrame::from_frame(f(Command::Subscribe, &[("destination", "/q")]), v),
            "id",
        );
        missing(
            ClientFrame::from_frame(f(Command::Subscribe, &[("id", "1")]), v),
            "destination",
        );
        let c = ClientFrame::from_frame(
            f(
                Command::Subscribe,
                &[
                    ("destination", "/q"),
                    ("id", "1"),
                    ("ack", "client-individual"),
                ],
            ),
            v,
        )
        .unwrap();
        assert!(matches!(
            c,
            ClientFrame::Subscribe {
                ack: AckMode::ClientIndividual,
                ..
            }
        ));
        let e = ClientFrame::from_frame(
            f(
                Command::Subscribe,
                &[("destination", "/q"), ("id", "1"), ("ack", "sometimes")],
            ),
            v,
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad-header");
    }
    assert_eq!(AckMode::parse("client"), Some(AckMode::Client));
    assert_eq!(AckMode::Client.as_str(), "client");
}

#[test]
fn unsubscribe() {
    let c = ClientFrame::from_frame(
        f(Command::Unsubscribe, &[("destination", "/q")]),
        Version::V1_0,
    )
    .unwrap();
    assert!(matches!(c, ClientFrame::Unsubscribe { id, .. } if id == "/q"));
    let c =
        ClientFrame::from_frame(f(Command::Unsubscribe, &[("id", "5")]), Version::V1_0).unwrap();
    assert!(matches!(c, ClientFrame::Unsubscribe { id, .. } if id == "5"));
    missing(
        ClientFrame::from_frame(f(Command::Unsubscribe, &[]), Version::V1_0),
        "id",
    );
    for v in [Version::V1_1, Version::V1_2] {
        missing(
            ClientFrame::from_frame(f(Command::Unsubscribe, &[("destination", "/q")]), v),
            "id",
        );
    }
}

#[test]
fn ack_nack_per_version() {
    // 1.2: id.
    let c = ClientFrame::from_frame(f(Command::Ack, &[("id", "m1")]), Version::V1_2).unwrap();
    assert!(matches!(c, ClientFrame::Ack { id, subscription: None, .. } if id == "m1"));
    missing(
        ClientFrame::from_frame(f(Command::Nack, &[("message-id", "m1")]), Version::V1_2),
        "id",
    );
    // 1.1: message-id and subscription.
    let c = ClientFrame::from_frame(
        f(
            Command::Nack,
            &[
                ("message-id", "m1"),
                ("subscription", "s"),
                ("transaction", "t"),
            ],
        ),
        Version::V1_1,
    )
    .unwrap();
    assert!(matches!(
        c,
        ClientFrame::Nack { id, subscription: Some(s), transaction: Some(_), .. } if id == "m1" && s == "s"
    ));
    missing(
        ClientFrame::from_frame(f(Command::Ack, &[("message-id", "m1")]), Version::V1_1),
        "subscription",
    );
    missing(
        ClientFrame::from_frame(
            f(Command::Ack, &[("id", "m1"), ("subscription", "s")]),
            Version::V1_1,
        ),
        "message-id",
    );
    // 1.0: message-id; no NACK.
    let c =
        ClientFrame::from_frame(f(Command::Ack, &[("message-id", "m1")]), Version::V1_0).unwrap();
    assert!(matches!(c, ClientFrame::Ack { id, .. } if id == "m1"));
    let e = ClientFrame::from_frame(f(Command::Nack, &[("message-id", "m1")]), Version::V1_0)
        .unwrap_err();
    assert_eq!(
        e,
        FrameError::Unsupported {
            command: Command::Nack,
            version: Version::V1_0
        }
    );
    assert_eq!(e.code(), "unsupported");
}

#[test]
fn transactions_and_disconnect() {
    for cmd in [Command::Begin, Command::Commit, Command::Abort] {
        missing(
            ClientFrame::from_frame(f(cmd, &[]), Version::V1_2),
            "transaction",
        );
        let c = ClientFrame::from_frame(
            f(cmd, &[("transaction", "t"), ("receipt", "r")]),
            Version::V1_2,
        )
        .unwrap();
        assert_eq!(c.receipt().unwrap(), "r");
    }
    let c = ClientFrame::from_frame(f(Command::Disconnect, &[("receipt", "77")]), Version::V1_0)
        .unwrap();
    assert!(matches!(&c, ClientFrame::Disconnect { receipt: Some(r) } if r == "77"));
}

#[test]
fn server_frames_rejected() {
    for cmd in [
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ] {
        let e = ClientFrame::from_frame(f(cmd, &[]), Version::V1_2).unwrap_err();
        assert_eq!(e, FrameError::NotAClientFrame(cmd));
        assert_eq!(e.code(), "bad-frame");
    }
}

#[test]
fn first_repeated_header_wins() {
    let c = ClientFrame::from_frame(
        f(
            Command::Send,
            &[("destination", "/first"), ("destination", "/second")],
        ),
        Version::V1_2,
    )
    .unwrap();
    assert!(matches!(c, ClientFrame::Send { destination, .. } if destination == "/first"));
}
