//! A crash in the middle of a WAL append leaves a torn tail: the last record cut short, or
//! followed by bytes that are not a record. Open must cut that tail off (counting it in
//! `stats().torn_tails_truncated`), keep every whole record before it, and go on accepting
//! writes that survive the next reopen.
//!
//! WAL layout (see `docs/FORMAT.md`): records back to back, each `u32 len | u32 crc | payload`,
//! then zeros up to the end of the file (the WAL is preallocated ahead of its records). A torn
//! append into that zero tail leaves the damaged record followed by zeros; a file system that
//! lost the extension (or a WAL without one) leaves the file cut inside the record. Each case
//! below is checked both ways. Zeros alone after the last record are the clean end of the WAL,
//! not a torn tail.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{wal_files, wal_logical_len, wal_record_starts};
use minivault::{Db, Durability, Options};

const N: usize = 8;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:03}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:03}-{}", "z".repeat(i * 3)).into_bytes()
}

/// A fresh database holding keys `0..N`, each acknowledged with `Durability::Always`, closed.
/// Returns its WAL, which is preallocated: longer than its records, zeros after them.
fn database_with_n_keys(dir: &Path) -> PathBuf {
    let db = Db::open(dir).unwrap();
    for i in 0..N {
        db.put(&key(i), &value(i)).unwrap();
    }
    drop(db);
    let wals = wal_files(dir);
    assert_eq!(wals.len(), 1, "{wals:?}");
    let bytes = fs::read(&wals[0]).unwrap();
    assert!(wal_logical_len(&bytes) < bytes.len(), "the WAL is not preallocated");
    wals[0].clone()
}

/// Start offsets of the records in a WAL, plus the end offset of the last.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let starts = wal_record_starts(bytes);
    assert_eq!(starts.len(), N + 1, "the WAL does not hold {N} whole records");
    starts
}

/// How a torn append ends the file.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// The file ends where the torn bytes end (a WAL whose extension did not survive).
    Cut,
    /// Zeros follow up to the preallocated length (a torn append into the zero tail).
    Zeros,
}

const TAILS: [Tail; 2] = [Tail::Cut, Tail::Zeros];

/// Removes every byte of the WAL from `at` on: cut off, or zeroed up to the file's length.
fn clear_from(path: &Path, at: usize, tail: Tail) {
    let len = fs::metadata(path).unwrap().len() as usize;
    let file = OpenOptions::new().write(true).open(path).unwrap();
    match tail {
        Tail::Cut => file.set_len(at as u64).unwrap(),
        Tail::Zeros => file.write_all_at(&vec![0u8; len.saturating_sub(at)], at as u64).unwrap(),
    }
}

/// Writes `bytes` at the WAL's logical end `at`, after clearing from there as `tail` says.
fn write_at_end(path: &Path, at: usize, bytes: &[u8], tail: Tail) {
    clear_from(path, at, tail);
    OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, at as u64).unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Opens after damage; checks keys `0..present` are there and `present..N` are not, that one
/// torn tail was cut and the WAL now ends at `good_len`; then writes more and reopens.
fn check_recovery(dir: &Path, wal: &Path, present: usize, good_len: usize, what: &str) {
    let db = Db::open(dir).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert_eq!(db.stats().torn_tails_truncated, 1, "{what}");
    for i in 0..N {
        let want = (i < present).then(|| value(i));
        assert_eq!(db.get(&key(i)).unwrap(), want, "{what}: key {i}");
    }
    assert_eq!(
        fs::metadata(wal).unwrap().len(),
        good_len as u64,
        "{what}: WAL not cut back to its last whole record"
    );
    db.put(b"after", b"recovery").unwrap();
    db.put(&key(N - 1), b"rewritten").unwrap();
    drop(db);

    let db = Db::open(dir).unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
    assert_eq!(db.stats().torn_tails_truncated, 0, "{what}: the tail was torn again");
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"recovery"[..]), "{what}");
    assert_eq!(db.get(&key(N - 1)).unwrap().as_deref(), Some(&b"rewritten"[..]), "{what}");
    for i in 0..present.min(N - 1) {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "{what}: key {i} after second open");
    }
}

#[test]
fn every_cut_inside_the_last_record_loses_only_that_record() {
    let probe = tempfile::tempdir().unwrap();
    let wal = database_with_n_keys(probe.path());
    let starts = record_starts(&fs::read(&wal).unwrap());
    let last_len = starts[N] - starts[N - 1];

    for tail in TAILS {
        for cut in 1..last_len {
            let dir = tempfile::tempdir().unwrap();
            let wal = database_with_n_keys(dir.path());
            clear_from(&wal, starts[N] - cut, tail);
            let what = format!("{cut} of {last_len} bytes torn off, {tail:?}");
            check_recovery(dir.path(), &wal, N - 1, starts[N - 1], &what);
        }
    }
}

#[test]
fn cut_exactly_at_a_record_boundary_is_not_a_torn_tail() {
    for tail in TAILS {
        let dir = tempfile::tempdir().unwrap();
        let wal = database_with_n_keys(dir.path());
        let starts = record_starts(&fs::read(&wal).unwrap());
        clear_from(&wal, starts[N - 1], tail);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.stats().torn_tails_truncated, 0, "{tail:?}");
        assert_eq!(db.get(&key(N - 1)).unwrap(), None, "{tail:?}");
        assert_eq!(db.get(&key(N - 2)).unwrap(), Some(value(N - 2)), "{tail:?}");
    }
}

#[test]
fn zeros_after_the_last_record_are_the_clean_end_not_a_torn_tail() {
    for zeros in [0, 1, 3, 7, 8, 9, 64, 4096, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let wal = database_with_n_keys(dir.path());
        let good = wal_logical_len(&fs::read(&wal).unwrap());
        clear_from(&wal, good, Tail::Cut);
        append(&wal, &vec![0u8; zeros]);
        let what = format!("{zeros} zero bytes after the records");

        let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        assert_eq!(db.stats().torn_tails_truncated, 0, "{what}: a zero tail counted as torn");
        let header = common::wal_header_len(&fs::read(&wal).unwrap());
        assert_eq!(db.stats().wal_bytes, (good - header) as u64, "{what}");
        for i in 0..N {
            assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "{what}: key {i}");
        }
        assert_eq!(fs::metadata(&wal).unwrap().len(), (good + zeros) as u64, "{what}: the zero tail was cut");
        // Appends go to the logical end, over the zeros.
        db.put(b"after", b"zero tail").unwrap();
        drop(db);
        let bytes = fs::read(&wal).unwrap();
        assert_eq!(
            wal_record_starts(&bytes).len(),
            N + 2,
            "{what}: the new record does not follow the others"
        );

        let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
        assert_eq!(db.stats().torn_tails_truncated, 0, "{what}");
        assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"zero tail"[..]), "{what}");
        assert_eq!(db.get(&key(N - 1)).unwrap(), Some(value(N - 1)), "{what}");
    }
}

#[test]
fn partial_headers_and_partial_records_after_the_last_record_are_cut_off() {
    let probe = tempfile::tempdir().unwrap();
    let wal = database_with_n_keys(probe.path());
    let bytes = fs::read(&wal).unwrap();
    let starts = record_starts(&bytes);
    let good = starts[N];
    // A copy of a real record, as a torn append of a similar record would leave it.
    let record = &bytes[starts[N - 1]..starts[N]];
    let mut bad_crc = record.to_vec();
    *bad_crc.last_mut().unwrap() ^= 0x01;

    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("length field only", 20u32.to_le_bytes().to_vec()),
        ("seven header bytes", record[..7].to_vec()),
        ("whole header, no payload", record[..8].to_vec()),
        ("header and half the payload", record[..8 + (record.len() - 8) / 2].to_vec()),
        ("all but the last byte", record[..record.len() - 1].to_vec()),
        ("whole record with a bad checksum", bad_crc),
        ("header declaring a huge length", u32::MAX.to_le_bytes().iter().chain(&[0u8; 4]).copied().collect()),
        ("zeros, then a stray byte", [&[0u8; 100][..], &[7]].concat()),
    ];
    for tail in TAILS {
        for (what, torn) in &tails {
            let dir = tempfile::tempdir().unwrap();
            let wal = database_with_n_keys(dir.path());
            write_at_end(&wal, good, torn, tail);
            check_recovery(dir.path(), &wal, N, good, &format!("{what}, {tail:?}"));
        }
    }
}

#[test]
fn torn_tail_of_the_newest_wal_with_an_older_wal_present() {
    for tail in TAILS {
        let dir = tempfile::tempdir().unwrap();
        // Flushes inline (no background threads): the frozen MemTable waits for the next
        // rotation, so one rotation leaves two WALs.
        let options = Options {
            memtable_bytes: 4096,
            durability: Durability::Always,
            background_threads: 0,
            ..Options::default()
        };
        let mut written = Vec::new();
        {
            let db = Db::open_with(dir.path(), options).unwrap();
            let mut i = 0;
            // Rotate once, then write a few more into the new WAL.
            while db.stats().immutable_keys == 0 || db.stats().memtable_keys < 5 {
                let (k, v) = (format!("k{i:04}").into_bytes(), format!("v{i}").into_bytes());
                db.put(&k, &v).unwrap();
                written.push((k, v));
                i += 1;
            }
        }
        let wals = wal_files(dir.path());
        assert_eq!(wals.len(), 2, "{wals:?}");
        let end = wal_logical_len(&fs::read(&wals[1]).unwrap());
        clear_from(&wals[1], end - 3, tail);
        let db = Db::open_with(dir.path(), options).unwrap();
        assert_eq!(db.stats().torn_tails_truncated, 1, "{tail:?}");
        let (last, others) = written.split_last().unwrap();
        for (k, v) in others {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "{tail:?}: {}", String::from_utf8_lossy(k));
        }
        assert_eq!(db.get(&last.0).unwrap(), None, "{tail:?}");
    }
}
