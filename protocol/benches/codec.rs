//! Codec throughput: decoding a stream of SEND frames and encoding MESSAGE frames with
//! `encode_frame`, the broker's hot path.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use stompd_protocol::{encode_frame, Command, Inbound, Limits, StompCodec, Version};
use tokio_util::codec::Decoder;

const FRAMES: usize = 1000;

fn send_stream(body_len: usize) -> Vec<u8> {
    let body = vec![b'x'; body_len];
    let mut out = BytesMut::new();
    for i in 0..FRAMES {
        let id = i.to_string();
        encode_frame(
            &mut out,
            Version::V1_2,
            Command::Send,
            [
                ("destination", "/queue/orders.incoming"),
                ("receipt", id.as_str()),
                ("content-type", "application/json"),
                ("persistent", "true"),
                ("priority", "4"),
                ("correlation-id", "3f2a9c4e-7b1d-4e8a-9c2f-1a2b3c4d5e6f"),
            ],
            &body,
        );
    }
    out.to_vec()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_send");
    for body_len in [100, 1024] {
        let stream = send_stream(body_len);
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(format!("{body_len}B_body"), |b| {
            b.iter(|| {
                let mut codec = StompCodec::server(Limits::default());
                codec.set_version(Version::V1_2);
                let mut buf = BytesMut::from(&stream[..]);
                let mut n = 0;
                while let Ok(Some(item)) = codec.decode(&mut buf) {
                    if let Inbound::Frame(f) = item {
                        black_box(&f);
                        n += 1;
                    }
                }
                assert_eq!(n, FRAMES);
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_message");
    for body_len in [100, 1024] {
        let body = vec![b'x'; body_len];
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(format!("{body_len}B_body"), |b| {
            let mut out = BytesMut::with_capacity(FRAMES * (body_len + 256));
            b.iter(|| {
                out.clear();
                for _ in 0..FRAMES {
                    encode_frame(
                        &mut out,
                        Version::V1_2,
                        Command::Message,
                        [
                            ("subscription", "sub-0"),
                            ("message-id", "q.orders-000000123456"),
                            ("destination", "/queue/orders.incoming"),
                            ("ack", "ack-123456"),
                            ("content-type", "application/json"),
                            ("redelivered", "false"),
                        ],
                        black_box(&body),
                    );
                }
                black_box(out.len());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
