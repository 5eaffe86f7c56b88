//! WAL replay: arbitrary bytes as one or two `.wal` files, then `Db::open`, a read and a write.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::wal_replay(data));
