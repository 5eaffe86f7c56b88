//! Operations, crashes and power cuts against a database on a FaultStorage, checked against a model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::ops(data));
