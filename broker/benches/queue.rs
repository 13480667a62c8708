//! Criterion benches of a queue's logic (`QueueState`), without sockets or runtime: the cost the
//! queue itself adds per message on the SEND -> MESSAGE -> ACK path.
//!
//! `cargo bench -p stompd --bench queue`

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stompd::message::{Message, SharedMessage};
use stompd::queue::state::{ConsumerSpec, Effects, QueueState};
use stompd_config::QueuePolicy;
use stompd_protocol::ByteStr;

const MESSAGES: u64 = 10_000;
const CONSUMERS: u64 = 4;

/// Ten messages, one per priority 0..=9, sharing one 100-byte body.
fn messages() -> Vec<SharedMessage> {
    let body = Bytes::from(vec![b'x'; 100]);
    (0..10u8)
        .map(|priority| {
            Arc::new(Message {
                destination: ByteStr::from_static("/queue/bench"),
                headers: vec![(
                    ByteStr::from_static("bench-producer"),
                    ByteStr::from_static("0"),
                )],
                body: body.clone(),
                priority,
                timestamp_ms: 0,
                expires_at_ms: None,
                idempotency_key: None,
            })
        })
        .collect()
}

fn queue_with_consumers(window: u32) -> QueueState {
    let mut q = QueueState::new(QueuePolicy::default());
    let mut fx = Effects::default();
    for id in 0..CONSUMERS {
        q.add_consumer(ConsumerSpec::new(id, window), 0, &mut fx);
    }
    q
}

/// Steady state: each SEND is enqueued and dispatched to one of 4 consumers (window 100), which
/// acks what it got; 10 priorities interleaved.
fn cycle(c: &mut Criterion) {
    let msgs = messages();
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(MESSAGES));
    g.bench_function("enqueue_dispatch_ack/10prio/4consumers", |b| {
        b.iter_batched_ref(
            || queue_with_consumers(100),
            |q| {
                let mut fx = Effects::default();
                let mut acks: Vec<u64> = Vec::with_capacity(64);
                for i in 0..MESSAGES {
                    let m = msgs[(i % 10) as usize].clone();
                    q.enqueue(m, 0, &mut fx).expect("enqueue");
                    // Consumers ack in small batches, as sessions do after a read.
                    if fx.deliveries.len() >= 16 {
                        for id in 0..CONSUMERS {
                            acks.clear();
                            acks.extend(
                                fx.deliveries
                                    .iter()
                                    .filter(|(c, _)| *c == id)
                                    .map(|(_, d)| d.seq),
                            );
                            q.ack(id, &acks, 0, &mut fx);
                        }
                        fx.deliveries.clear();
                        fx.removed.clear();
                    }
                }
                black_box(q.depth())
            },
            BatchSize::SmallInput,
        )
    });
    // A backlog of 10,000 messages over 10 priorities, then 4 consumers drain it.
    g.bench_function("drain_backlog/10prio/4consumers", |b| {
        b.iter_batched_ref(
            || {
                let mut q = QueueState::new(QueuePolicy::default());
                let mut fx = Effects::default();
                for i in 0..MESSAGES {
                    q.enqueue(msgs[(i % 10) as usize].clone(), 0, &mut fx)
                        .expect("enqueue");
                }
                q
            },
            |q| {
                let mut fx = Effects::default();
                for id in 0..CONSUMERS {
                    q.add_consumer(ConsumerSpec::new(id, 100), 0, &mut fx);
                }
                let mut acks: Vec<u64> = Vec::with_capacity(128);
                while !fx.deliveries.is_empty() {
                    let deliveries = std::mem::take(&mut fx.deliveries);
                    for id in 0..CONSUMERS {
                        acks.clear();
                        acks.extend(
                            deliveries
                                .iter()
                                .filter(|(c, _)| *c == id)
                                .map(|(_, d)| d.seq),
                        );
                        q.ack(id, &acks, 0, &mut fx);
                    }
                    fx.removed.clear();
                }
                black_box(q.depth())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
