#![no_main]
//! Arbitrary bytes in arbitrary chunks into the server codec: no panics, limits hold.

use libfuzzer_sys::fuzz_target;

mod decode_body;

fuzz_target!(|data: &[u8]| decode_body::run(data));
