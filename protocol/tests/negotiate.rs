//! Version and heart-beat negotiation, and the small value types.

use std::time::Duration;
use stompd_protocol::{
    negotiate_heartbeat, negotiate_version, ByteStr, Command, HeartBeat, Version,
};

#[test]
fn version_negotiation() {
    let all = &Version::ALL;
    assert_eq!(negotiate_version(None, all), Some(Version::V1_0));
    assert_eq!(
        negotiate_version(Some("1.0,1.1,1.2"), all),
        Some(Version::V1_2)
    );
    assert_eq!(negotiate_version(Some("1.1,1.0"), all), Some(Version::V1_1));
    assert_eq!(
        negotiate_version(Some("1.2, 1.1"), &[Version::V1_1]),
        Some(Version::V1_1)
    );
    assert_eq!(negotiate_version(Some("2.0,1.1"), all), Some(Version::V1_1));
    assert_eq!(negotiate_version(Some("2.0"), all), None);
    assert_eq!(negotiate_version(Some(""), all), None);
    assert_eq!(negotiate_version(None, &[Version::V1_2]), None);
    assert_eq!(
        negotiate_version(Some("1.0"), &[Version::V1_1, Version::V1_2]),
        None
    );
}

#[test]
fn version_order_and_display() {
    assert!(Version::V1_0 < Version::V1_1 && Version::V1_1 < Version::V1_2);
    assert_eq!(Version::V1_1.to_string(), "1.1");
    assert_eq!(Version::V1_2.as_str(), "1.2");
}

#[test]
fn heartbeat_parse() {
    assert_eq!(HeartBeat::parse("0,0").unwrap(), HeartBeat::default());
    assert_eq!(
        HeartBeat::parse(" 100 , 2000 ").unwrap(),
        HeartBeat { cx: 100, cy: 2000 }
    );
    for bad in ["", "1", "1,", ",1", "a,b", "-1,0", "1,2,3", "99999999999,0"] {
        let e = HeartBeat::parse(bad).expect_err(bad);
        assert_eq!(e.code(), "bad-header");
    }
    assert_eq!(HeartBeat { cx: 5, cy: 6 }.to_string(), "5,6");
}

#[test]
fn heartbeat_negotiation() {
    let ms = Duration::from_millis;
    let hb = |cx, cy| HeartBeat { cx, cy };
    // Server can send every 1000, wants every 2000; client sends every 3000, wants every 500.
    assert_eq!(
        negotiate_heartbeat(hb(1000, 2000), hb(3000, 500)),
        (Some(ms(1000)), Some(ms(3000)))
    );
    assert_eq!(
        negotiate_heartbeat(hb(100, 100), hb(5000, 6000)),
        (Some(ms(6000)), Some(ms(5000)))
    );
    // Zero on either side disables that direction only.
    assert_eq!(
        negotiate_heartbeat(hb(0, 1000), hb(1000, 1000)),
        (None, Some(ms(1000)))
    );
    assert_eq!(
        negotiate_heartbeat(hb(1000, 1000), hb(1000, 0)),
        (None, Some(ms(1000)))
    );
    assert_eq!(
        negotiate_heartbeat(hb(1000, 0), hb(1000, 1000)),
        (Some(ms(1000)), None)
    );
    assert_eq!(
        negotiate_heartbeat(hb(1000, 1000), hb(0, 1000)),
        (Some(ms(1000)), None)
    );
    assert_eq!(
        negotiate_heartbeat(HeartBeat::default(), hb(10, 10)),
        (None, None)
    );
}

#[test]
fn command_roles() {
    assert!(Command::Send.is_client() && !Command::Send.is_server());
    assert!(Command::Message.is_server() && !Command::Message.is_client());
    assert!(Command::Connected.is_server());
    assert!(Command::Stomp.is_client());
    assert_eq!(Command::from_bytes(b"NACK"), Some(Command::Nack));
    assert_eq!(Command::from_bytes(b"nack"), None);
}

#[test]
fn bytestr_basics() {
    let s = ByteStr::from("héllo");
    assert_eq!(s, "héllo");
    assert_eq!(s.len(), 6);
    assert_eq!(&*s, "héllo");
    assert_eq!(s.to_string(), "héllo");
    assert!(ByteStr::default().is_empty());
    assert_eq!(ByteStr::from_static("a").as_bytes(), b"a");
    assert!(ByteStr::try_from_bytes(bytes::Bytes::from_static(b"\xff")).is_err());
    let owned = ByteStr::from(String::from("x"));
    assert_eq!(owned.clone().into_bytes(), bytes::Bytes::from_static(b"x"));
    let mut set = std::collections::HashSet::new();
    set.insert(owned);
    assert!(set.contains("x"));
}
