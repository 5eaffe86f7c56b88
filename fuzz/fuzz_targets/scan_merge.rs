//! The scan merge over MemTables and SSTables, checked against a sorted model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::scan_merge(data));
