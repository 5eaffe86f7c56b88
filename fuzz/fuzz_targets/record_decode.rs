//! Record framing and entry decoding (`minivault_core::record::decode`, `entry::decode`) of arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::record_decode(data));
