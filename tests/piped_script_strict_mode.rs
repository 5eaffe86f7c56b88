//! A script piped into `minivault` goes on after an `ERR` reply (exit 0); with `--strict` it
//! stops at the first `ERR`, runs nothing after it, and exits 1.

mod common;

use common::cli::minivault_in;

const SCRIPT: &str = "put a 1\nbogus\nput b 2\nget a\n";

#[test]
fn by_default_a_script_goes_on_after_err() {
    let cwd = tempfile::tempdir().unwrap();
    let ran = minivault_in(cwd.path(), ["db"], SCRIPT);
    assert_eq!(ran.stdout, "OK\nERR unknown command bogus (type help)\nOK\n1\n");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

#[test]
fn strict_stops_at_the_first_err_with_exit_1() {
    let cwd = tempfile::tempdir().unwrap();
    let ran = minivault_in(cwd.path(), ["--strict", "db"], SCRIPT);
    assert_eq!(ran.stdout, "OK\nERR unknown command bogus (type help)\n");
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let after = minivault_in(cwd.path(), ["db", "mget", "a", "b"], "");
    assert_eq!(after.stdout, "1 (nil)\n", "nothing after the ERR ran");
    // A backend error counts as well as a parse error; a clean script exits 0.
    let ran = minivault_in(cwd.path(), ["--strict", "db"], "put \"\" v\nput c 3\n");
    assert_eq!((ran.stdout.as_str(), ran.code), ("ERR empty key\n", 1));
    let ran = minivault_in(cwd.path(), ["--strict", "db"], "put c 3\nget c\n");
    assert_eq!((ran.stdout.as_str(), ran.code), ("OK\n3\n", 0));
}
