//! A compaction that fails on a background thread poisons the database exactly as a failed
//! write does: the next write returns the error, later ones `Poisoned`, reads go on, and what
//! was acknowledged is there after a reopen.
//!
//! The failure is real, not simulated: with the file size limit (`RLIMIT_FSIZE`) above what a
//! flush writes but below what a merge of four tables writes, the merge's write fails with
//! `EFBIG`. The limit is per process, so this test has a file (a process) of its own.

mod common;

use std::time::{Duration, Instant};

use minivault::{Db, Durability, EngineError, Error, Options};

const MEMTABLE: usize = 64 << 10;

fn options() -> Options {
    Options { background_threads: 1, ..common::options(MEMTABLE, Durability::Manual) }
}

#[test]
fn a_failed_background_compaction_poisons_and_the_next_write_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    // SAFETY: ignoring SIGXFSZ, so that a write past the limit fails with EFBIG rather than
    // killing the test process.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // A flush writes a table of about one MemTable (64 KiB) and the WAL about as much; a merge
    // of four such tables writes about 256 KiB.
    let old = common::set_file_size_limit(120 << 10);
    let mut acked = Vec::new();
    let mut first_error = None;
    let started = Instant::now();
    for i in 0u32.. {
        // Keys spread over the key space, so that every table overlaps the others and the
        // policy merges them (keys in order make tables that overlap nothing, kept as flushed
        // until 384 of them: over 30 s of this loop on a loaded machine).
        let key = format!("k{:05}", u64::from(i) * 7919 % 100_000);
        match db.put(key.as_bytes(), &[b'v'; 900]) {
            Ok(()) => acked.push(key),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
        // Whichever call comes first after the failure reports it: a put or a flush.
        if acked.len() % 60 == 0 {
            if let Err(e) = db.flush() {
                first_error = Some(e);
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no background failure reported");
        if i > 600 {
            // Enough tables for a merge: give the worker time to fail.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let after = db.put(b"later", b"1");
    let synced = db.sync();
    let bg = db.background_stats();
    let readable = db.get(acked[0].as_bytes());
    let closed = db.close();
    // SAFETY: restoring the limit found above.
    unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &old) };

    let error = first_error.expect("the background failure is reported");
    assert!(error.to_string().contains("File too large"), "{error}");
    assert!(matches!(after, Err(Error::Engine(EngineError::Poisoned))), "{after:?}");
    assert!(matches!(synced, Err(Error::Engine(EngineError::Poisoned))), "{synced:?}");
    assert!(matches!(closed, Err(Error::Engine(EngineError::Poisoned))), "{closed:?}");
    assert_eq!(readable.unwrap().as_deref(), Some(&[b'v'; 900][..]), "reads go on");
    // The merge failed (not a flush, whose EFBIG would read the same).
    assert!(bg.started >= 1 && bg.installed == 0 && bg.not_installed >= 1, "{bg:?}");
    eprintln!("{} writes acknowledged before the failure was reported; {bg:?}", acked.len());

    // Everything acknowledged and synced (every flush synced) is there; the merge's `.tmp` is
    // gone after the reopen.
    let db = Db::open_with(dir.path(), Options { background_threads: 0, ..options() }).unwrap();
    let synced_up_to = (acked.len() - 1) / 60 * 60;
    for k in &acked[..synced_up_to] {
        assert_eq!(db.get(k.as_bytes()).unwrap().as_deref(), Some(&[b'v'; 900][..]), "{k}");
    }
    assert!(common::files_with_ext(dir.path(), "tmp").is_empty());
}
