//! The REPL's line parser (`minivault::repl::parse_line`), and `format_value` round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| minivault_suite::fault::targets::repl_parse(data));
