//! A crash in the middle of a WAL append leaves a torn tail: the last record cut short, or
//! followed by bytes that are not a record. Open must cut that tail off (counting it in
//! `stats().torn_tails_truncated`), keep every whole record before it, and go on accepting
//! writes that survive the next reopen.
//!
//! WAL layout (see `core/src/record.rs`): records back to back, each `u32 len | u32 crc | payload`.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::wal_files;
use minivault::{Db, Durability, Options};

const N: usize = 8;
const HEADER: usize = 8;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:03}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:03}-{}", "z".repeat(i * 3)).into_bytes()
}

/// A fresh database holding keys `0..N`, each acknowledged with `Durability::Always`, closed.
fn database_with_n_keys(dir: &Path) -> PathBuf {
    let mut db = Db::open(dir).unwrap();
    for i in 0..N {
        db.put(&key(i), &value(i)).unwrap();
    }
    drop(db);
    let wals = wal_files(dir);
    assert_eq!(wals.len(), 1, "{wals:?}");
    wals[0].clone()
}

/// Start offsets of the records in a WAL, plus the end offset.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += HEADER + len;
        starts.push(pos);
    }
    assert_eq!(pos, bytes.len(), "the WAL does not parse as whole records");
    starts
}

fn truncate_by(path: &Path, cut: usize) {
    let len = fs::metadata(path).unwrap().len();
    OpenOptions::new().write(true).open(path).unwrap().set_len(len - cut as u64).unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Opens after damage; checks keys `0..present` are there and `present..N` are not, that one
/// torn tail was cut and the WAL now ends at `good_len`; then writes more and reopens.
fn check_recovery(dir: &Path, wal: &Path, present: usize, good_len: usize, what: &str) {
    let mut db = Db::open(dir).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
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

    let mut db = Db::open(dir).unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
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
    assert_eq!(starts.len(), N + 1);
    let last_len = starts[N] - starts[N - 1];

    for cut in 1..last_len {
        let dir = tempfile::tempdir().unwrap();
        let wal = database_with_n_keys(dir.path());
        truncate_by(&wal, cut);
        check_recovery(dir.path(), &wal, N - 1, starts[N - 1], &format!("cut {cut} of {last_len} bytes"));
    }
}

#[test]
fn cut_exactly_at_a_record_boundary_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let wal = database_with_n_keys(dir.path());
    let starts = record_starts(&fs::read(&wal).unwrap());
    truncate_by(&wal, starts[N] - starts[N - 1]);
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(db.stats().torn_tails_truncated, 0);
    assert_eq!(db.get(&key(N - 1)).unwrap(), None);
    assert_eq!(db.get(&key(N - 2)).unwrap(), Some(value(N - 2)));
}

#[test]
fn zeros_appended_after_the_last_record_are_cut_off() {
    for zeros in [1, 3, 7, 8, 9, 64, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let wal = database_with_n_keys(dir.path());
        let good = fs::metadata(&wal).unwrap().len() as usize;
        append(&wal, &vec![0u8; zeros]);
        check_recovery(dir.path(), &wal, N, good, &format!("{zeros} zero bytes appended"));
    }
}

#[test]
fn partial_headers_and_partial_records_appended_are_cut_off() {
    let probe = tempfile::tempdir().unwrap();
    let wal = database_with_n_keys(probe.path());
    let bytes = fs::read(&wal).unwrap();
    let starts = record_starts(&bytes);
    // A copy of a real record, as a torn append of a similar record would leave it.
    let record = &bytes[starts[N - 1]..starts[N]];
    let mut bad_crc = record.to_vec();
    *bad_crc.last_mut().unwrap() ^= 0x01;

    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("length field only", 20u32.to_le_bytes().to_vec()),
        ("seven header bytes", record[..7].to_vec()),
        ("whole header, no payload", record[..HEADER].to_vec()),
        ("header and half the payload", record[..HEADER + (record.len() - HEADER) / 2].to_vec()),
        ("all but the last byte", record[..record.len() - 1].to_vec()),
        ("whole record with a bad checksum", bad_crc),
        ("header declaring a huge length", u32::MAX.to_le_bytes().iter().chain(&[0u8; 4]).copied().collect()),
    ];
    for (what, tail) in tails {
        let dir = tempfile::tempdir().unwrap();
        let wal = database_with_n_keys(dir.path());
        append(&wal, &tail);
        check_recovery(dir.path(), &wal, N, bytes.len(), what);
    }
}

#[test]
fn torn_tail_of_the_newest_wal_with_an_older_wal_present() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 4096, durability: Durability::Always, ..Options::default() };
    let mut written = Vec::new();
    {
        let mut db = Db::open_with(dir.path(), options).unwrap();
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
    truncate_by(&wals[1], 3);
    let mut db = Db::open_with(dir.path(), options).unwrap();
    assert_eq!(db.stats().torn_tails_truncated, 1);
    let (last, others) = written.split_last().unwrap();
    for (k, v) in others {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "{}", String::from_utf8_lossy(k));
    }
    assert_eq!(db.get(&last.0).unwrap(), None);
}
