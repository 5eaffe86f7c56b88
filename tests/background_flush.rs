//! With background threads, a MemTable is flushed off the writer's path: the write that fills
//! the active MemTable only freezes it and starts the next WAL; the flush thread writes the
//! table; the frozen MemTable answers reads until the table is installed. A write waits for a
//! flush only when it fills the next MemTable while that flush still runs (counted in
//! `BackgroundStats::flush_waits`). A failed flush poisons the database as a failed write does.
//!
//! The flush is held in progress (or failed) deterministically through `Db::set_flush_hook`,
//! which the flush thread calls before it writes a table, with no lock held.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, EngineError, Error, Options};

const MEMTABLE: usize = 64 << 10;

fn options() -> Options {
    Options { background_threads: 1, ..common::options(MEMTABLE, Durability::Manual) }
}

/// A gate the flush hook waits at until it is opened, and whether the hook was entered.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicBool,
}

impl Gate {
    fn hook(self: &Arc<Self>) -> minivault::FlushHook {
        let gate = Arc::clone(self);
        Arc::new(move || {
            gate.entered.store(true, Ordering::SeqCst);
            let mut open = gate.open.lock().unwrap();
            while !*open {
                open = gate.opened.wait(open).unwrap();
            }
            Ok(())
        })
    }

    fn wait_entered(&self) {
        let start = Instant::now();
        while !self.entered.load(Ordering::SeqCst) {
            assert!(start.elapsed() < Duration::from_secs(10), "the flush thread never started a flush");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped, also when an assertion fails, so that the handle's drop (which
/// finishes the running flush) does not wait at it forever.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Key `i`: scattered, so that the tables overlap and the policy merges them.
fn key(i: u32) -> Vec<u8> {
    format!("k{:08x}", common::scattered(i)).into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(80)).into_bytes()
}

/// Puts keys from `i` until a put freezes the active MemTable (the active one's key count
/// drops); returns the next key.
fn put_until_rotation(db: &Db, mut i: u32) -> u32 {
    loop {
        let before = db.stats().memtable_keys;
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
        if db.stats().memtable_keys <= before {
            return i;
        }
    }
}

#[test]
fn a_put_returns_while_the_flush_of_the_memtable_it_froze_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    let gate = Arc::new(Gate::default());
    db.set_flush_hook(Some(gate.hook()));
    // The put that fills the MemTable freezes it and returns; the flush is handed to the thread.
    let mut i = put_until_rotation(&db, 0);
    gate.wait_entered();
    // The flush is held: puts into the new MemTable, gets of the frozen one, a scan, a sync.
    let frozen = db.stats().immutable_keys;
    for _ in 0..100 {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
    }
    db.sync().unwrap();
    assert_eq!(db.stats().immutable_keys, frozen, "the frozen MemTable is still there");
    assert_eq!(db.background_stats().flushes, 0, "the flush has not finished: no put waited for it");
    assert_eq!(db.stats().tables, 0);
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j} while its flush is held");
    }
    assert_eq!(db.count::<&[u8], _>(..).unwrap(), u64::from(i));
    gate.release();
    // Installed by the next call once reported; flush() waits for it.
    db.flush().unwrap();
    assert_eq!(db.background_stats().flushes, 1);
    assert_eq!(db.background_stats().flush_waits, 0);
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)));
    }
    db.close().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    assert_eq!(db.count::<&[u8], _>(..).unwrap(), u64::from(i));
}

/// Whether the active MemTable is three quarters full, by its arena or its keys: where a write
/// starts to sleep `FLUSH_PACE` while a flush runs.
fn three_quarters_full(db: &Db) -> bool {
    let s = db.stats();
    s.memtable_bytes * 4 >= s.memtable_capacity_bytes * 3
        || s.memtable_keys * 4 >= s.memtable_key_capacity * 3
}

#[test]
fn writes_into_the_last_quarter_of_the_memtable_sleep_while_the_flush_runs_and_not_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(Arc::clone(&gate));
    // No flush runs: a MemTable filled past three quarters paces no write.
    let mut i = 0;
    while !three_quarters_full(&db) {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
    }
    for _ in 0..10 {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
    }
    assert_eq!(db.background_stats().paced_writes, 0);
    // The flush of the MemTable the next rotation freezes is held.
    db.set_flush_hook(Some(gate.hook()));
    i = put_until_rotation(&db, i);
    gate.wait_entered();
    // Below three quarters of the new MemTable: no write sleeps; from there, each write once.
    while !three_quarters_full(&db) {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
        assert_eq!(db.background_stats().paced_writes, 0, "key {i}: paced below three quarters");
    }
    let start = Instant::now();
    for n in 1..=20 {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
        let stats = db.background_stats();
        assert_eq!(stats.paced_writes, n, "{stats:?}");
    }
    assert!(start.elapsed() >= 20 * minivault::FLUSH_PACE);
    assert!(db.background_stats().stalled >= 20 * minivault::FLUSH_PACE);
    // Once the flush is installed, writes into the same MemTable, still three quarters full, go
    // on unpaced.
    gate.release();
    let start = Instant::now();
    while db.background_stats().flushes == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the released flush was never installed");
        thread::sleep(Duration::from_millis(1));
    }
    let paced = db.background_stats().paced_writes;
    for _ in 0..10 {
        db.put(&key(i), &value(i)).unwrap();
        i += 1;
    }
    assert!(three_quarters_full(&db), "the MemTable rotated: the test's 10 puts are too many");
    assert_eq!(db.background_stats().paced_writes, paced);
    assert_eq!(db.background_stats().flush_waits, 0, "paced, no write filled the MemTable");
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)));
    }
}

#[test]
fn a_put_that_fills_the_next_memtable_waits_for_the_flush_with_the_lock_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open_with(dir.path(), options()).unwrap());
    let gate = Arc::new(Gate::default());
    db.set_flush_hook(Some(gate.hook()));
    let i = put_until_rotation(&db, 0);
    gate.wait_entered();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        thread::spawn(move || {
            // Fills the active MemTable: the put that must rotate waits for the held flush.
            let end = put_until_rotation(&db, i);
            done.store(true, Ordering::SeqCst);
            end
        })
    };
    // While it waits, reads and the lock are free.
    let start = Instant::now();
    while db.background_stats().flush_waits == 0 && start.elapsed() < Duration::from_millis(300) {
        assert_eq!(db.get(&key(0)).unwrap(), Some(value(0)));
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    assert!(!done.load(Ordering::SeqCst), "the write that needs the frozen MemTable's room waits");
    assert_eq!(db.get(&key(i - 1)).unwrap(), Some(value(i - 1)));
    assert!(db.stats().memtable_keys > 0);
    gate.release();
    let end = writer.join().unwrap();
    let stats = db.background_stats();
    assert_eq!(stats.flush_waits, 1, "{stats:?}");
    assert!(stats.flushes >= 1, "{stats:?}");
    for j in 0..end {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)));
    }
}

#[test]
fn a_put_that_waited_for_a_flush_is_held_at_stop_tables_when_that_flush_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    // Two tables after the first flushes; the held flush's table makes three: the stop threshold.
    let options = Options { slowdown_tables: 2, stop_tables: 3, ..options() };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let i = put_until_rotation(&db, 0);
    db.flush().unwrap();
    assert_eq!(db.stats().tables, 2);
    let gate = Arc::new(Gate::default());
    db.set_flush_hook(Some(gate.hook()));
    let i = put_until_rotation(&db, i);
    gate.wait_entered();
    let writer = {
        let db = Arc::clone(&db);
        // The put that must rotate again waits for the held flush.
        thread::spawn(move || put_until_rotation(&db, i))
    };
    // Waiting: the active MemTable stops filling.
    let start = Instant::now();
    let mut keys = db.stats().memtable_keys;
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = db.stats().memtable_keys;
        if now == keys && !writer.is_finished() {
            break;
        }
        keys = now;
        assert!(start.elapsed() < Duration::from_secs(10), "the writer never waited for the flush");
    }
    let stopped_before = db.background_stats().stopped_writes;
    gate.release();
    let end = writer.join().unwrap();
    let stats = db.background_stats();
    assert_eq!(stats.flush_waits, 1, "{stats:?}");
    // Once the flush it waited for was installed, the write was held until a compaction took
    // the tables below `stop_tables`, as any write arriving then would have been.
    assert_eq!(stats.stopped_writes, stopped_before + 1, "{stats:?}");
    assert!(stats.installed >= 1, "{stats:?}");
    for j in 0..end {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)));
    }
}

#[test]
fn a_merge_in_progress_pauses_while_the_flush_thread_writes_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    // The worker holds its merge before its first step; each round adds a table until the
    // policy hands it one, and the merge has created its output.
    db.pause_background(true);
    let mut i = 0;
    while db.stats().compactions_running == 0 {
        for _ in 0..100 {
            db.put(&key(i), &value(i)).unwrap();
            i += 1;
        }
        db.flush().unwrap();
        assert!(db.stats().tables < 64, "no compaction was planned: {:?}", db.stats());
    }
    let started = Instant::now();
    while common::files_with_ext(dir.path(), "tmp").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the worker never started its merge");
        thread::sleep(Duration::from_millis(1));
    }
    // A flush held in progress, then the merge let go: it waits for the flush, at most
    // FLUSH_GIVE_WAY, before its next step.
    let gate = Arc::new(Gate::default());
    let _open_at_the_end = OpenOnDrop(Arc::clone(&gate));
    db.set_flush_hook(Some(gate.hook()));
    put_until_rotation(&db, i);
    gate.wait_entered();
    assert_eq!(db.background_stats().merges_gave_way, Duration::ZERO);
    db.pause_background(false);
    let started = Instant::now();
    while db.background_stats().merges_gave_way.is_zero() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the merge never paused for the flush, or never went on at the cap"
        );
        thread::sleep(Duration::from_millis(1));
    }
    // The flush is still held: the merge went on at the cap, after waiting all of it.
    let stats = db.background_stats();
    assert!(stats.merges_gave_way >= minivault::FLUSH_GIVE_WAY, "{stats:?}");
    gate.release();
    db.flush().unwrap();
    db.close().unwrap();
}

#[test]
fn a_failed_background_flush_poisons_and_the_next_call_reports_it_while_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    db.set_flush_hook(Some(Arc::new(|| Err(io::Error::other("injected flush failure")))));
    let mut i = put_until_rotation(&db, 0);
    // The next call that picks the report up returns the flush's error.
    let start = Instant::now();
    let error = loop {
        match db.put(&key(i), &value(i)) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the failure was never reported");
        thread::sleep(Duration::from_millis(1));
    };
    assert!(
        matches!(&error, Error::Engine(EngineError::Storage(e)) if e.to_string().contains("injected")),
        "{error:?}"
    );
    assert!(db.is_poisoned());
    assert!(matches!(db.put(b"x", b"y"), Err(Error::Engine(EngineError::Poisoned))));
    assert!(matches!(db.sync(), Err(Error::Engine(EngineError::Poisoned))));
    // Reads go on: the frozen MemTable and the active one answer.
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j}");
    }
    assert!(db.close().is_err());
    // Nothing of the failed flush is left; every acknowledged write is replayed from the WALs.
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    let db = Db::open_with(dir.path(), options()).unwrap();
    for j in 0..i {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j} after reopen");
    }
}

#[test]
fn a_database_no_longer_written_installs_its_last_flush_and_retires_the_wals_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    // Held first: the report waits for a write, as it always did before the threads' nudge.
    db.hold_background_installs(true);
    let end = put_until_rotation(&db, 0);
    let start = Instant::now();
    while db.background_stats().flushes == 0 && start.elapsed() < Duration::from_millis(300) {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(db.background_stats().flushes, 0, "installed while installs were held");
    assert_eq!(common::wal_files(dir.path()).len(), 2, "the covered WAL stays until the install");
    // Let go: the next write installs the held report; the flush it later triggers is installed
    // without another call, by the flush thread's nudge (only stats and the directory are read).
    db.hold_background_installs(false);
    let end = put_until_rotation(&db, end);
    let start = Instant::now();
    while db.stats().immutable_keys > 0
        || db.background_stats().flushes < 2
        || common::wal_files(dir.path()).len() > 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the flush was not installed without a write: {:?}, {:?}, WALs {:?}",
            db.stats(),
            db.background_stats(),
            common::wal_files(dir.path())
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(db.stats().tables, 2);
    for j in 0..end {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j}");
    }
}

#[test]
fn a_flush_failure_the_thread_installs_itself_is_returned_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    db.set_flush_hook(Some(Arc::new(|| Err(io::Error::other("injected flush failure")))));
    let end = put_until_rotation(&db, 0);
    // No write from here on: the flush thread's nudge picks its own failure up and poisons.
    let start = Instant::now();
    while !db.is_poisoned() {
        assert!(start.elapsed() < Duration::from_secs(20), "the failure was never picked up");
        thread::sleep(Duration::from_millis(1));
    }
    // A get goes on, and does not take the failure for itself.
    assert_eq!(db.get(&key(0)).unwrap(), Some(value(0)));
    let error = db.put(b"x", b"y").unwrap_err();
    assert!(
        matches!(&error, Error::Engine(EngineError::Storage(e)) if e.to_string().contains("injected")),
        "{error:?}"
    );
    assert!(matches!(db.put(b"x", b"y"), Err(Error::Engine(EngineError::Poisoned))));
    for j in 0..end {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j}");
    }
}

#[test]
fn rotations_take_the_spare_wal_the_flush_thread_made_and_close_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options()).unwrap();
    // Made at open (no flush to write first), handed over by the thread's nudge.
    let start = Instant::now();
    while !db.stats().spare_wal_ready {
        assert!(start.elapsed() < Duration::from_secs(10), "no spare WAL at open: {:?}", db.stats());
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(common::all_wal_files(dir.path()).len(), 2, "the current WAL and the spare");
    let mut end = 0;
    for _ in 0..4 {
        end = put_until_rotation(&db, end);
        // The next rotation's spare is made after the flush of the MemTable this one froze.
        let start = Instant::now();
        while !db.stats().spare_wal_ready {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no spare WAL after a rotation: {:?}",
                db.stats()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
    let stats = db.stats();
    assert_eq!(stats.spare_wals_taken, 4, "every rotation found a spare ready: {stats:?}");
    db.close().unwrap();
    assert_eq!(common::all_wal_files(dir.path()).len(), 1, "close removes the spare");
    let db = Db::open_with(dir.path(), options()).unwrap();
    let stats = db.stats();
    assert_eq!((stats.torn_tails_truncated, stats.wals_dropped), (0, 0), "{stats:?}");
    for j in 0..end {
        assert_eq!(db.get(&key(j)).unwrap(), Some(value(j)), "key {j}");
    }
}
