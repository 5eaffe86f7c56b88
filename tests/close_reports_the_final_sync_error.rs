//! `Db::close` reports what the final sync could not do, where dropping the handle can only
//! ignore it, and the binary turns it into a message and exit code 1.
//!
//! A failing `fdatasync` cannot be produced on a healthy disk without privileges, so the tests
//! make a write fail instead: with the file size limit (`RLIMIT_FSIZE`) below what the WAL
//! must grow to, the write fails with `EFBIG` and poisons the database, after which the final
//! sync refuses (`Poisoned`): writes acknowledged since the last sync may be lost, and `close`
//! says so.

mod common;

use minivault::{Db, Durability, EngineError, Error, Options};

const MEMTABLE: usize = 64 << 10;

fn manual() -> Options {
    Options { memtable_bytes: MEMTABLE, durability: Durability::Manual, ..Options::default() }
}

#[test]
fn close_returns_the_error_that_drop_would_discard() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();

    // A clean close: Ok, and what Manual durability left unsynced is durable.
    let db = Db::open_with(dir.path(), manual()).unwrap();
    db.put(b"kept", b"1").unwrap();
    db.close().unwrap();

    let db = Db::open_with(dir.path(), manual()).unwrap();
    assert_eq!(db.get(b"kept").unwrap().as_deref(), Some(&b"1"[..]));
    db.put(b"small", b"1").unwrap();
    // SAFETY: ignoring SIGXFSZ, so that a write past the limit fails with EFBIG rather than
    // killing the test process.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // The WAL is preallocated a quarter MemTable (16 KiB) at a time: the next record needs it
    // to grow past the limit.
    let old = common::set_file_size_limit(20 << 10);
    let failed = db.put(b"big", &[7u8; 20 << 10]);
    let closed = db.close();
    // SAFETY: restoring the limit found above.
    unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &old) };
    let write_error = failed.expect_err("a write past RLIMIT_FSIZE fails");
    assert!(write_error.to_string().contains("File too large"), "{write_error}");
    match closed {
        Err(Error::Engine(EngineError::Poisoned)) => {}
        other => panic!("close after a failed write: expected Poisoned, got {other:?}"),
    }
    // What was acknowledged before the failure is there after a reopen.
    let db = Db::open_with(dir.path(), manual()).unwrap();
    assert_eq!(db.get(b"small").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"big").unwrap(), None);
}

#[test]
fn the_binary_reports_a_failed_final_sync_with_exit_code_1() {
    let _serial = common::serial();
    let cwd = tempfile::tempdir().unwrap();
    let value = "v".repeat(20 << 10);
    // `ulimit -f 40` is 20 KiB (512-byte blocks) or 40 KiB (1 KiB blocks, bash): above the
    // first 16 KiB of WAL, below the 32 KiB the big record needs.
    let script = format!(
        "trap '' XFSZ; ulimit -f 40; exec '{}' --sync manual --memtable-bytes 64K db",
        common::minivault_bin().display()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(cwd.path()).args(["-c", &script]);
    let ran = common::cli::run(&mut cmd, &format!("put small 1\nput big {value}\nget small\n"));
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", ran.stdout);
    assert_eq!(lines[0], "OK");
    assert!(lines[1].starts_with("ERR ") && lines[1].contains("File too large"), "{}", lines[1]);
    assert_eq!(lines[2], "1", "reads go on after a failed write");
    assert_eq!(ran.code, 1, "stderr: {}", ran.stderr);
    assert!(ran.stderr.contains("minivault: final sync failed"), "{}", ran.stderr);
    let get = common::cli::minivault_in(cwd.path(), ["db", "get", "small"], "");
    assert_eq!((get.stdout.as_str(), get.code), ("1\n", 0));
}
