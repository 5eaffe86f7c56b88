//! The WAL does not grow without bound: each MemTable rotation starts a new WAL, a flush retires
//! the WALs its SSTables cover, so at most two WAL files (active + immutable MemTable) exist and
//! their bytes stay near two MemTables' worth, however much is written (each file preallocated
//! less than one chunk past its records). After `flush()` no data
//! is left in any WAL and a reopen finds everything in SSTables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{sst_files, total_len, total_wal_record_bytes, wal_files};
use minivault::{Db, Durability, Options};

const MEMTABLE: usize = 16 * 1024;

fn options(durability: Durability) -> Options {
    Options { memtable_bytes: MEMTABLE, durability, ..Options::default() }
}

fn key(i: usize) -> Vec<u8> {
    format!("key{:04}", i % 700).into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(i % 50)).into_bytes()
}

fn check_all(db: &mut Db, model: &BTreeMap<Vec<u8>, Vec<u8>>, when: &str) {
    for (k, v) in model {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "{when}: key {:?}", String::from_utf8_lossy(k));
    }
}

fn names(paths: &[PathBuf]) -> BTreeSet<PathBuf> {
    paths.iter().cloned().collect()
}

/// Writes `n` entries, checking the WAL invariants after every write; returns the bytes written.
fn write_checking_wals(
    db: &mut Db,
    dir: &Path,
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    range: std::ops::Range<usize>,
) -> u64 {
    // Installs come with writes only (not from the threads' nudges), so that the files listed
    // and the stats read after a write describe the same moment.
    db.hold_background_installs(true);
    let mut written = 0u64;
    let mut last_flushes = db.stats().flushes;
    let mut retired: BTreeSet<PathBuf> = BTreeSet::new();
    let mut previous = names(&wal_files(dir));
    for i in range {
        let (k, v) = (key(i), value(i));
        db.put(&k, &v).unwrap();
        written += (k.len() + v.len()) as u64;
        model.insert(k, v);

        // WALs a background flush made obsolete are unlinked off the writer's path.
        db.settle_removals();
        let wals = wal_files(dir);
        assert!(wals.len() <= 2, "after write {i}: {} WAL files: {wals:?}", wals.len());
        let bound = 3 * MEMTABLE as u64;
        let stats = db.stats();
        assert!(stats.wal_bytes <= bound, "after write {i}: wal_bytes {} > {bound}", stats.wal_bytes);
        assert_eq!(
            total_wal_record_bytes(&wals),
            stats.wal_bytes,
            "after write {i}: stats disagree with the records in the files"
        );
        // Each WAL is its header and records, preallocated ahead of them by less than one chunk.
        let per_file =
            minivault_core::wal::preallocation_chunk(MEMTABLE) + minivault_core::wal::FILE_HEADER_LEN;
        let slack = wals.len() as u64 * per_file;
        let on_disk = total_len(&wals);
        assert!(
            on_disk >= stats.wal_bytes && on_disk <= stats.wal_bytes + slack,
            "after write {i}: {on_disk} bytes of WAL files for {} bytes of records",
            stats.wal_bytes
        );
        assert!(stats.flushes >= last_flushes, "flushes went backwards");
        last_flushes = stats.flushes;

        let now = names(&wals);
        for gone in previous.difference(&now) {
            retired.insert(gone.clone());
        }
        for w in &now {
            assert!(!retired.contains(w), "retired WAL {w:?} came back");
        }
        previous = now;
    }
    written
}

#[test]
fn at_most_two_wals_and_bounded_wal_bytes_under_many_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
    let mut model = BTreeMap::new();
    let written = write_checking_wals(&mut db, dir.path(), &mut model, 0..5000);
    let stats = db.stats();
    // (Each WAL record holds a key and value of 50 bytes on average, plus 15 bytes of framing.)
    assert!(written > 16 * stats.wal_bytes, "wrote {written} bytes but the WAL holds {}", stats.wal_bytes);
    assert!(stats.flushes >= 10, "expected many rotations, got {stats:?}");
    assert!(!sst_files(dir.path()).is_empty());
    check_all(&mut db, &model, "before reopen");
    drop(db);
    let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
    check_all(&mut db, &model, "after reopen");
}

#[test]
fn flush_retires_every_wal_and_reopen_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
        write_checking_wals(&mut db, dir.path(), &mut model, 0..1500);
        let before = wal_files(dir.path());
        let flushes_before = db.stats().flushes;
        assert!(db.stats().memtable_keys > 0, "the test needs unflushed data");

        db.flush().unwrap();
        let stats = db.stats();
        assert!(stats.flushes > flushes_before, "flush() did not count: {stats:?}");
        assert_eq!(stats.wal_bytes, 0, "data left in the WAL after flush: {stats:?}");
        assert_eq!((stats.memtable_keys, stats.immutable_keys), (0, 0), "{stats:?}");
        let after = wal_files(dir.path());
        for old in &before {
            assert!(!after.contains(old), "flush left the old WAL {old:?}");
        }
        assert!(after.len() <= 1, "{after:?}");
        // Their header and, for a spare taken by the flush's rotation, its preallocated zeros.
        for wal in &after {
            let bytes = std::fs::read(wal).unwrap();
            let records = common::wal_logical_len(&bytes) - common::wal_header_len(&bytes);
            assert_eq!(records, 0, "WAL {wal:?} holds records after flush");
        }
        check_all(&mut db, &model, "after flush");
    }
    let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
    let stats = db.stats();
    assert_eq!((stats.memtable_keys, stats.wal_bytes), (0, 0), "reopen replayed data: {stats:?}");
    check_all(&mut db, &model, "after reopen");
}

#[test]
fn flush_with_nothing_to_write_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options(Durability::Always)).unwrap();
    db.flush().unwrap();
    assert!(sst_files(dir.path()).is_empty());
    assert!(db.tables().is_empty());
    db.put(b"a", b"1").unwrap();
    db.flush().unwrap();
    let tables = db.tables();
    let flushes = db.stats().flushes;
    assert_eq!(tables.len(), 1);
    db.flush().unwrap();
    db.flush().unwrap();
    assert_eq!(db.tables(), tables, "an empty flush changed the tables");
    assert_eq!(db.stats().flushes, flushes, "an empty flush counted as a flush");
    assert_eq!(sst_files(dir.path()).len(), 1);
    assert!(wal_files(dir.path()).len() <= 1);
}

#[test]
fn flushes_count_grows_with_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
    assert_eq!(db.stats().flushes, 0);
    let mut seen = vec![0];
    for i in 0..3000 {
        db.put(&key(i), &value(i)).unwrap();
        let f = db.stats().flushes;
        if f != *seen.last().unwrap() {
            seen.push(f);
        }
    }
    assert!(seen.len() >= 5, "flush count changed only {} times: {seen:?}", seen.len() - 1);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let before = db.stats().flushes;
    db.flush().unwrap();
    assert!(db.stats().flushes > before);
}

#[test]
fn reopen_between_rotations_keeps_wals_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let mut next = 0;
    for round in 0..8 {
        let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
        check_all(&mut db, &model, &format!("reopen {round}"));
        // An uneven number of writes per round, so the reopen lands at different fill levels.
        let n = 300 + round * 97;
        write_checking_wals(&mut db, dir.path(), &mut model, next..next + n);
        next += n;
        // Dropped without flush: the next open replays one or two WALs.
    }
    let mut db = Db::open_with(dir.path(), options(Durability::Manual)).unwrap();
    check_all(&mut db, &model, "final reopen");
    assert!(wal_files(dir.path()).len() <= 2);
}

#[test]
fn reopen_with_larger_memtables_keeps_wals_bounded() {
    // Written with small MemTables, replayed into large ones: both old WALs fit in one MemTable.
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let db = Db::open_with(dir.path(), options(Durability::Always)).unwrap();
        // The flushed table is installed (the older WAL retired) only by a write, not by the
        // flush thread's nudge: the frozen MemTable and its WAL stay for the drop.
        db.hold_background_installs(true);
        let mut i = 0;
        while db.stats().immutable_keys == 0 {
            db.put(&key(i), &value(i)).unwrap();
            model.insert(key(i), value(i));
            i += 1;
        }
        assert_eq!(wal_files(dir.path()).len(), 2);
    }
    let big = Options { memtable_bytes: 4 * MEMTABLE, durability: Durability::Always, ..Options::default() };
    let mut db = Db::open_with(dir.path(), big).unwrap();
    check_all(&mut db, &model, "after reopen");
    let mut i = 10_000;
    let start_flushes = db.stats().flushes;
    while db.stats().flushes < start_flushes + 3 {
        let (k, v) = (format!("new{i}").into_bytes(), value(i));
        db.put(&k, &v).unwrap();
        model.insert(k, v);
        db.settle_removals();
        let wals = wal_files(dir.path());
        assert!(
            wals.len() <= 2,
            "after {} writes since reopen: {} WAL files {wals:?}",
            i - 10_000,
            wals.len()
        );
        i += 1;
    }
    check_all(&mut db, &model, "after writes");
}
