//! SSTable open and lookup (`minivault_core::sstable::{open, lookup}`): arbitrary tables, and real tables with bytes flipped.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::sstable_lookup(data));
