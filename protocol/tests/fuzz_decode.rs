//! Runs the `decode` fuzz target's body on stable over generated inputs: raw random bytes, and
//! valid frame streams with random corruption (which reach much deeper into the decoder).

use proptest::prelude::*;

#[path = "../fuzz/fuzz_targets/decode_body.rs"]
mod decode_body;

fn corrupted_stream() -> impl Strategy<Value = Vec<u8>> {
    let base: &[&[u8]] = &[
        b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:h\n\n\0",
        b"STOMP\naccept-version:1.2\n\n\0\n",
        b"SEND\ndestination:/queue/a\\cb\ncontent-length:4\n\nab\0c\0\r\n",
        b"SEND\r\ndestination:/q\r\nx:y\\n\\r\\\\\r\n\r\nbody\0",
        b"SUBSCRIBE\nid:1\ndestination:/q\nack:client\n\n\0",
        b"ACK\nid:1\n\n\0\n\n",
        b"MESSAGE\nk:v\nk:w\n\n\0",
    ];
    (
        any::<u8>(),
        proptest::collection::vec(0..base.len(), 1..8),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
    )
        .prop_map(move |(seed, picks, flips, cut)| {
            let mut data = vec![seed];
            for p in picks {
                data.extend_from_slice(base[p]);
            }
            for (at, b) in flips {
                let i = 1 + at % (data.len() - 1);
                data[i] = b;
            }
            if cut % 4 == 0 {
                data.truncate(1 + cut % data.len());
            }
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fuzz_body_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_body::run(&data);
    }

    #[test]
    fn fuzz_body_corrupted_frames(data in corrupted_stream()) {
        decode_body::run(&data);
    }
}
