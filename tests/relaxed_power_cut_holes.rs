//! Issue 15: in a relaxed durability mode (`Durability::Manual`, `Durability::EveryN`) a power cut
//! can persist a *later* unsynced WAL write while an *earlier* one is lost: the kernel writes
//! dirty pages back in any order and a disk persists sectors in any order. The database must
//! still open, hold everything the mode promised durable, and hold a *prefix* of the writes (a
//! write after the hole is dropped with it); damage to records that *were* synced must still be
//! reported as corruption.
//!
//! Each test runs the real POSIX `minivault::Db`, copies the database directory while the
//! handle is open (the files as a `SIGKILL` would leave them: every write reached the OS, the
//! unsynced ones not the disk), damages the copy's WAL the way a power cut can, and opens the
//! copy. Where records begin and end is never hard-coded: the tests note the WAL's logical end
//! after each write ([`common::wal_end`], the one helper that knows the WAL) and damage the
//! ranges between those ends.
//!
//! The four hole tests fail on the engine before the WAL watermark fix of issue 15 (commit
//! 2a02bc2 and earlier: it refuses to open, "damaged WAL record followed by valid records") and
//! pass with it (WAL format 2, commit 84cdc4f). The corruption test passes before and after.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{copy_dir, wal_end, wal_files};
use minivault::{Db, Durability, Options};

/// 4 KiB: the unit the kernel writes back.
const PAGE: u64 = 4096;

fn options(durability: Durability) -> Options {
    Options { durability, ..Options::default() }
}

/// The writes of a test, in order, with the WAL's logical end after each.
struct Log {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    ends: Vec<u64>,
}

impl Log {
    fn new() -> Self {
        Log { writes: Vec::new(), ends: Vec::new() }
    }

    fn put(&mut self, db: &mut Db, key: &str, value: &[u8]) {
        db.put(key.as_bytes(), value).expect("put");
        self.writes.push((key.as_bytes().to_vec(), value.to_vec()));
        self.ends.push(wal_end(db));
    }

    /// Where write `i`'s record starts in the WAL (the end of the write before, or `start`).
    fn start_of(&self, i: usize, start: u64) -> u64 {
        if i == 0 {
            start
        } else {
            self.ends[i - 1]
        }
    }
}

/// The directory as a crash leaves it (the page cache's view), in `to`.
fn crash_copy(db: &Db, to: &Path) -> PathBuf {
    copy_dir(db.path(), to);
    let wals = wal_files(to);
    assert_eq!(wals.len(), 1, "these tests keep one WAL: {wals:?}");
    wals[0].clone()
}

/// Writes `bytes` at `offset` of `file`.
fn write_at(file: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(file).expect("open WAL");
    f.write_all_at(bytes, offset).expect("damage WAL");
}

/// The WAL bytes `[from, to)` as a lost write leaves them: zeros (the WAL is preallocated, so
/// zeros are also what those bytes held before the write).
fn lose(file: &Path, from: u64, to: u64) {
    assert!(from < to, "empty range {from}..{to}");
    write_at(file, from, &vec![0u8; (to - from) as usize]);
}

/// Opens `dir` and checks it against `log`: the first `durable` writes are there, and what is
/// there is a prefix of the writes. Then it must take a write that survives a reopen, without the
/// writes the hole dropped coming back. Returns how many writes survived.
fn check_prefix(dir: &Path, durability: Durability, log: &Log, durable: usize) -> usize {
    let mut db = match Db::open_with(dir, options(durability)) {
        Ok(db) => db,
        Err(e) => panic!("the database does not open after a power cut in {durability:?}: {e}"),
    };
    let survived = read_prefix(&mut db, log);
    assert!(survived >= durable, "lost durable writes: {survived} of the first {durable} survived");
    db.put(b"after", b"the cut").expect("a recovered database takes writes");
    db.sync().expect("sync");
    drop(db);
    let mut db = Db::open_with(dir, options(durability)).expect("reopen after recovery");
    assert_eq!(read_prefix(&mut db, log), survived, "a reopen changed what survived");
    assert_eq!(db.get(b"after").expect("get").as_deref(), Some(&b"the cut"[..]));
    survived
}

/// How many writes of `log` the database holds, checking that they are a prefix of it.
fn read_prefix(db: &mut Db, log: &Log) -> usize {
    let present: Vec<bool> = log
        .writes
        .iter()
        .map(|(k, v)| match db.get(k).expect("get") {
            None => false,
            Some(got) => {
                assert_eq!(&got, v, "key {}", String::from_utf8_lossy(k));
                true
            }
        })
        .collect();
    let survived = present.iter().take_while(|&&p| p).count();
    assert!(
        present[survived..].iter().all(|&p| !p),
        "not a prefix: writes {:?} survived after write {survived} was lost",
        present.iter().enumerate().filter(|(i, &p)| p && *i > survived).map(|(i, _)| i).collect::<Vec<_>>()
    );
    survived
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("value-{i:03}-").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

/// The smallest case: `put a 1`, `put b 2`, `sync`, `put c 3`, `put d 4`, and a power cut
/// that persists d's record but not c's (zeros where c was).
#[test]
fn lost_write_before_a_persisted_one_in_manual_mode_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with(dir.path().join("db"), options(Durability::Manual)).unwrap();
    let mut log = Log::new();
    log.put(&mut db, "a", b"1");
    log.put(&mut db, "b", b"2");
    db.sync().unwrap();
    let synced = wal_end(&db);
    log.put(&mut db, "c", b"3");
    log.put(&mut db, "d", b"4");
    let crash = dir.path().join("crash");
    let wal = crash_copy(&db, &crash);
    drop(db);
    lose(&wal, synced, log.ends[2]);
    let survived = check_prefix(&crash, Durability::Manual, &log, 2);
    assert_eq!(survived, 2, "c's bytes are gone, so c and d are");
}

/// The LazyFS-free reproduction: 30 puts, `sync`, 30 more (into the next page), and a
/// power cut that writes back page 1 of the WAL but not the unsynced part of page 0.
#[test]
fn zeroed_page_in_the_middle_of_the_unsynced_tail_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with(dir.path().join("db"), options(Durability::Manual)).unwrap();
    let mut log = Log::new();
    for i in 0..30 {
        log.put(&mut db, &format!("key-{i:03}"), &value(i, 80));
    }
    db.sync().unwrap();
    let synced = wal_end(&db);
    let next_page = (synced / PAGE + 1) * PAGE;
    let mut i = 30;
    while wal_end(&db) < next_page + 1024 {
        log.put(&mut db, &format!("key-{i:03}"), &value(i, 80));
        i += 1;
    }
    assert!(i >= 40, "the unsynced tail spans {} writes only", i - 30);
    let crash = dir.path().join("crash");
    let wal = crash_copy(&db, &crash);
    drop(db);
    lose(&wal, synced, next_page);
    let survived = check_prefix(&crash, Durability::Manual, &log, 30);
    assert_eq!(survived, 30, "the first unsynced write was on the lost page");
}

/// A stale page: page 0 of the unsynced tail comes back as the kernel wrote it back earlier,
/// after some of the unsynced writes (their records, then the zeros that followed them), while
/// page 1 comes back with the later records.
#[test]
fn stale_page_before_a_persisted_one_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open_with(dir.path().join("db"), options(Durability::Manual)).unwrap();
    let mut log = Log::new();
    for i in 0..20 {
        log.put(&mut db, &format!("key-{i:03}"), &value(i, 80));
    }
    db.sync().unwrap();
    let synced = wal_end(&db);
    let next_page = (synced / PAGE + 1) * PAGE;
    let mut i = 20;
    while wal_end(&db) < next_page + 1024 {
        log.put(&mut db, &format!("key-{i:03}"), &value(i, 80));
        i += 1;
    }
    // The page as written back after write `stale` (the third unsynced one), which must still
    // end inside page 0.
    let stale = 22;
    assert!(log.ends[stale] < next_page, "write {stale} ends past page 0");
    let crash = dir.path().join("crash");
    let wal = crash_copy(&db, &crash);
    drop(db);
    lose(&wal, log.ends[stale], next_page);
    let survived = check_prefix(&crash, Durability::Manual, &log, 20);
    assert!(survived <= stale + 1, "writes after the stale page's end survived: {survived}");
}

/// `every:4`: a sync on every fourth write, so the last three acknowledged writes may be lost.
/// A power cut loses one of them and keeps the ones after it.
#[test]
fn hole_in_the_last_n_minus_one_writes_of_every_n_is_a_torn_tail() {
    for lost in [8, 9] {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open_with(dir.path().join("db"), options(Durability::EveryN(4))).unwrap();
        let mut log = Log::new();
        for i in 0..11 {
            log.put(&mut db, &format!("key-{i:03}"), &value(i, 40));
        }
        // Writes 0..8 were synced (by writes 3 and 7); 8, 9 and 10 were not.
        let crash = dir.path().join("crash");
        let wal = crash_copy(&db, &crash);
        drop(db);
        lose(&wal, log.start_of(lost, 0), log.ends[lost]);
        let survived = check_prefix(&crash, Durability::EveryN(4), &log, 8);
        assert!(survived <= lost, "write {lost} is gone, so is everything after it: {survived} survived");
    }
}

/// Damage to a record that was synced, followed by records written after the sync (unsynced,
/// or synced later), is corruption: open fails and says so, in both relaxed modes.
#[test]
fn damage_to_a_synced_record_followed_by_later_records_is_reported() {
    for (durability, sync_again) in
        [(Durability::Manual, false), (Durability::Manual, true), (Durability::EveryN(2), false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open_with(dir.path().join("db"), options(durability)).unwrap();
        let mut log = Log::new();
        log.put(&mut db, "a", &value(0, 40));
        log.put(&mut db, "b", &value(1, 40));
        db.sync().unwrap();
        log.put(&mut db, "c", &value(2, 40));
        if sync_again {
            db.sync().unwrap();
        }
        log.put(&mut db, "d", &value(3, 40));
        let crash = dir.path().join("crash");
        let wal = crash_copy(&db, &crash);
        drop(db);
        // Flip one bit in the middle of b's record.
        let (from, to) = (log.ends[0], log.ends[1]);
        let at = (from + to) / 2;
        let f = OpenOptions::new().read(true).write(true).open(&wal).unwrap();
        let mut byte = [0u8];
        f.read_exact_at(&mut byte, at).unwrap();
        f.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
        drop(f);
        match Db::open_with(&crash, options(durability)) {
            Err(e) if e.is_corruption() => {}
            Err(e) => panic!("{durability:?}: open failed, but not as corruption: {e}"),
            Ok(db) => panic!(
                "{durability:?} (sync again {sync_again}): damage to a synced record was not reported; b reads {:?}",
                db.get(b"b").map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
            ),
        }
    }
}
