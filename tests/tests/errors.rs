//! Every client mistake gets an ERROR frame with a `message` header, the offending connection is
//! closed, and the broker keeps serving everyone else.

use std::time::{Duration, Instant};

use stompd_protocol::{Command, Frame};
use stompd_tests::{config_with, describe, Broker, Client, TIMEOUT};

const LIMITS: &str = "\
[limits]
max_frame_bytes = 65536
max_header_line_bytes = 1024
max_headers = 32
max_body_bytes = 4096
";

fn broker() -> Broker {
    Broker::with_config(&config_with(LIMITS))
}

/// Connects a well-behaved client, then a bad one that sends `bytes` after a 1.2 handshake; the
/// bad one must get an ERROR with a `message` and be closed, and the good one must keep working
/// on its connection, as must a fresh connection. Returns the ERROR frame.
#[track_caller]
fn assert_rejected_1_2(bytes: &[u8]) -> Frame {
    assert_rejected(&[("accept-version", "1.2"), ("host", "localhost")], bytes)
}

#[track_caller]
fn assert_rejected(connect: &[(&str, &str)], bytes: &[u8]) -> Frame {
    let broker = broker();
    let mut good = Client::connect_v12(broker.addr());
    good.assert_round_trip("before");

    let mut bad = Client::connect_with(broker.addr(), connect);
    // The server may close while we are still writing; what matters is what it answers.
    let _ = bad.try_send_raw(bytes);
    let error = bad.expect(Command::Error, TIMEOUT);
    let message = error.get("message").unwrap_or_default();
    assert!(
        !message.is_empty(),
        "ERROR without a `message` header: {}",
        describe(&error)
    );
    assert!(
        bad.is_closed(TIMEOUT),
        "the connection stayed open after ERROR {}",
        describe(&error)
    );

    good.assert_round_trip("after");
    Client::connect_v12(broker.addr()).assert_round_trip("fresh");
    error
}

#[test]
fn unknown_command_gets_error_and_close() {
    assert_rejected_1_2(b"FROBNICATE\nx:y\n\n\0");
}

#[test]
fn lowercase_command_is_unknown() {
    assert_rejected_1_2(b"send\ndestination:/queue/x\n\nhi\0");
}

#[test]
fn server_command_sent_by_client_gets_error_and_close() {
    assert_rejected_1_2(b"MESSAGE\ndestination:/queue/x\nmessage-id:1\nsubscription:0\n\nhi\0");
}

#[test]
fn send_without_destination_gets_error_and_close() {
    let e = assert_rejected_1_2(b"SEND\nx-h:v\n\nno destination\0");
    let text = format!(
        "{} {}",
        e.get("message").unwrap_or_default(),
        String::from_utf8_lossy(&e.body)
    );
    assert!(
        text.contains("destination"),
        "the ERROR should name the missing header: {}",
        describe(&e)
    );
}

#[test]
fn subscribe_without_id_in_1_2_gets_error_and_close() {
    let e = assert_rejected_1_2(b"SUBSCRIBE\ndestination:/queue/x\nack:auto\n\n\0");
    let text = format!(
        "{} {}",
        e.get("message").unwrap_or_default(),
        String::from_utf8_lossy(&e.body)
    );
    assert!(
        text.contains("id"),
        "the ERROR should name the missing header: {}",
        describe(&e)
    );
}

#[test]
fn subscribe_without_id_in_1_1_gets_error_and_close() {
    assert_rejected(
        &[("accept-version", "1.1"), ("host", "localhost")],
        b"SUBSCRIBE\ndestination:/queue/x\n\n\0",
    );
}

#[test]
fn subscribe_without_destination_gets_error_and_close() {
    assert_rejected_1_2(b"SUBSCRIBE\nid:0\n\n\0");
}

#[test]
fn unsubscribe_without_id_gets_error_and_close() {
    assert_rejected_1_2(b"UNSUBSCRIBE\n\n\0");
}

#[test]
fn invalid_escape_tab_in_1_2_header_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\nx-h:a\\tb\n\nbody\0");
}

#[test]
fn backslash_at_end_of_1_2_header_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\nx-h:ab\\\n\nbody\0");
}

#[test]
fn non_numeric_content_length_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\ncontent-length:abc\n\nbody\0");
}

#[test]
fn negative_content_length_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\ncontent-length:-1\n\nbody\0");
}

#[test]
fn content_length_not_followed_by_nul_gets_error_and_close() {
    // content-length says 2, but the byte after the body is not NUL.
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\ncontent-length:2\n\nbody\0");
}

#[test]
fn header_line_over_the_limit_gets_error_and_close() {
    let mut frame = b"SEND\ndestination:/queue/x\nx-long:".to_vec();
    frame.extend(std::iter::repeat_n(b'a', 2000));
    frame.extend_from_slice(b"\n\nbody\0");
    assert_rejected_1_2(&frame);
}

#[test]
fn endless_header_line_gets_error_without_waiting_for_its_end() {
    // No newline ever comes: the server must give up at the limit, not buffer forever.
    let mut frame = b"SEND\ndestination:/queue/x\nx-long:".to_vec();
    frame.extend(std::iter::repeat_n(b'a', 4000));
    assert_rejected_1_2(&frame);
}

#[test]
fn too_many_headers_get_error_and_close() {
    let mut frame = b"SEND\ndestination:/queue/x\n".to_vec();
    for i in 0..100 {
        frame.extend_from_slice(format!("x-h{i}:v\n").as_bytes());
    }
    frame.extend_from_slice(b"\nbody\0");
    assert_rejected_1_2(&frame);
}

#[test]
fn body_over_the_limit_with_content_length_gets_error_and_close() {
    let mut frame = b"SEND\ndestination:/queue/x\ncontent-length:8192\n\n".to_vec();
    frame.extend(std::iter::repeat_n(b'b', 8192));
    frame.push(0);
    assert_rejected_1_2(&frame);
}

#[test]
fn body_over_the_limit_without_content_length_gets_error_and_close() {
    let mut frame = b"SEND\ndestination:/queue/x\n\n".to_vec();
    frame.extend(std::iter::repeat_n(b'b', 8192));
    frame.push(0);
    assert_rejected_1_2(&frame);
}

#[test]
fn huge_content_length_gets_error_before_the_body_is_sent() {
    let broker = broker();
    let mut good = Client::connect_v12(broker.addr());
    good.assert_round_trip("before");
    let mut bad = Client::connect_v12(broker.addr());
    let start = Instant::now();
    // Only the headers: the 10^12-byte body never comes.
    bad.send_raw(b"SEND\ndestination:/queue/x\ncontent-length:1000000000000\n\n");
    let e = bad.expect(Command::Error, Duration::from_secs(3));
    assert!(e.get("message").is_some(), "{}", describe(&e));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "ERROR took {:?}",
        start.elapsed()
    );
    assert!(bad.is_closed(TIMEOUT), "connection stayed open after ERROR");
    good.assert_round_trip("after");
}

#[test]
fn invalid_utf8_in_header_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\nx-h:\xff\xfe\n\nbody\0");
}

#[test]
fn header_line_without_colon_gets_error_and_close() {
    assert_rejected_1_2(b"SEND\ndestination:/queue/x\nno-colon-here\n\nbody\0");
}

#[test]
fn nack_in_stomp_1_0_gets_error_and_close() {
    assert_rejected(&[], b"NACK\nmessage-id:1\n\n\0");
}

#[test]
fn error_does_not_disturb_a_consumer_waiting_on_the_same_queue() {
    let broker = broker();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("c", "/queue/shared", "auto");
    let mut bad = Client::connect_v12(broker.addr());
    bad.send_raw(b"SEND\ndestination:/queue/shared\ncontent-length:zz\n\nx\0");
    bad.expect(Command::Error, TIMEOUT);
    let mut producer = Client::connect_v12(broker.addr());
    producer.send_to_sync("/queue/shared", b"still flowing", &[]);
    let m = consumer.expect(Command::Message, TIMEOUT);
    assert_eq!(&m.body[..], b"still flowing");
}

#[test]
fn a_rejected_frame_is_not_delivered() {
    let broker = broker();
    let mut consumer = Client::connect_v12(broker.addr());
    consumer.subscribe_sync("c", "/queue/clean", "auto");
    let mut bad = Client::connect_v12(broker.addr());
    bad.send_raw(b"SEND\ndestination:/queue/clean\nx-h:bad\\tescape\n\npoison\0");
    bad.expect(Command::Error, TIMEOUT);
    consumer.expect_nothing(stompd_tests::QUIET);
}
