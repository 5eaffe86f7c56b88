//! Entries written with a time to live read as present until their expiry and as absent from
//! then on, wherever they are (MemTable, WAL after reopen, SSTable, the POSIX row cache), and an
//! expired entry hides older values of its key instead of uncovering them; the core engine's
//! `get_with_expiry` reports the expiry with the value.
//!
//! The POSIX tests use the wall clock (milliseconds) and sleep; the core tests drive a manual
//! clock, so their expiry instants are exact. (Merged from `ttl_expiry.rs`,
//! `row_cache_ttl_expiry.rs` and `get_with_expiry.rs`.)

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{close_core, core_get, get, mem_storage, open_core, MemDb as CoreDb};
use minivault::{Db, Durability, Options};
use minivault_core::{Error as CoreError, SyncPolicy};
use minivault_suite::fault::ManualClock;

const TTL: Duration = Duration::from_millis(300);
/// Sleep this long to be sure a `TTL` entry written before the sleep has expired.
const PAST_TTL: Duration = Duration::from_millis(400);

#[test]
fn ttl_value_is_visible_before_and_absent_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    db.put(b"plain", b"p").unwrap();
    let start = Instant::now();
    db.put_with_ttl(b"t", b"v", TTL).unwrap();
    let early = get(&mut db, b"t");
    if start.elapsed() < TTL {
        assert_eq!(early.as_deref(), Some(&b"v"[..]), "visible before its TTL");
    }
    sleep(PAST_TTL);
    assert_eq!(get(&mut db, b"t"), None, "absent after its TTL");
    assert_eq!(get(&mut db, b"plain").as_deref(), Some(&b"p"[..]));
    // A plain put afterwards makes the key live again, for good.
    db.put(b"t", b"again").unwrap();
    sleep(PAST_TTL);
    assert_eq!(get(&mut db, b"t").as_deref(), Some(&b"again"[..]));
}

#[test]
fn ttl_overwritten_by_plain_put_and_plain_overwritten_by_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    db.put_with_ttl(b"a", b"short", TTL).unwrap();
    db.put(b"a", b"forever").unwrap();
    db.put(b"b", b"forever").unwrap();
    db.put_with_ttl(b"b", b"short", TTL).unwrap();
    sleep(PAST_TTL);
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"forever"[..]));
    assert_eq!(get(&mut db, b"b"), None, "the expired newer entry hides the older plain one");
}

#[test]
fn unexpired_ttl_value_survives_reopen_from_wal_and_from_sstable() {
    let dir = tempfile::tempdir().unwrap();
    let long = Duration::from_secs(3600);
    {
        let db = Db::open(dir.path()).unwrap();
        db.put_with_ttl(b"wal", b"w", long).unwrap();
        db.put_with_ttl(b"short", b"s", TTL).unwrap();
    }
    {
        let mut db = Db::open(dir.path()).unwrap();
        assert_eq!(get(&mut db, b"wal").as_deref(), Some(&b"w"[..]), "replayed from the WAL");
        db.put_with_ttl(b"sst", b"s", long).unwrap();
        db.flush().unwrap();
        assert!(!db.tables().is_empty());
    }
    sleep(PAST_TTL);
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"wal").as_deref(), Some(&b"w"[..]));
    assert_eq!(get(&mut db, b"sst").as_deref(), Some(&b"s"[..]));
    assert_eq!(get(&mut db, b"short"), None, "expired while the database was closed");
}

#[test]
fn expired_entry_in_newer_sstable_hides_older_plain_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"old").unwrap();
        db.flush().unwrap();
        db.put_with_ttl(b"k", b"new", TTL).unwrap();
        db.flush().unwrap();
        assert_eq!(db.tables().len(), 2);
        assert_eq!(db.stats().wal_bytes, 0);
        sleep(PAST_TTL);
        assert_eq!(get(&mut db, b"k"), None, "the older SSTable value came back");
    }
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k"), None, "the older SSTable value came back after reopen");
}

#[test]
fn entry_that_expired_in_the_memtable_still_hides_older_value_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path()).unwrap();
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap();
    db.put_with_ttl(b"k", b"new", TTL).unwrap();
    sleep(PAST_TTL);
    assert_eq!(get(&mut db, b"k"), None, "expired in the MemTable");
    // Flushed after it expired: the table writer must keep it (or a tombstone) because an
    // older table holds a value for the key.
    db.flush().unwrap();
    assert_eq!(get(&mut db, b"k"), None, "expired entry dropped at flush uncovered the old value");
    drop(db);
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k"), None);
}

#[test]
fn ttl_entries_through_memtable_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 4096, durability: Durability::Manual, ..Options::default() };
    let mut db = Db::open_with(dir.path(), options).unwrap();
    for i in 0..300 {
        let key = format!("key{i:03}");
        db.put(key.as_bytes(), b"plain").unwrap();
        if i % 2 == 0 {
            db.put_with_ttl(key.as_bytes(), b"short", TTL).unwrap();
        }
    }
    assert!(db.stats().flushes >= 2, "expected rotations, got {:?}", db.stats());
    sleep(PAST_TTL);
    for round in ["before reopen", "after reopen"] {
        for i in 0..300 {
            let want = (i % 2 == 1).then(|| b"plain".to_vec());
            assert_eq!(get(&mut db, format!("key{i:03}").as_bytes()), want, "key{i:03} {round}");
        }
        drop(db);
        db = Db::open_with(dir.path(), options).unwrap();
    }
}

/// A row served from the row cache stops being served at its expiry, exactly as the engine stops
/// returning it, and does not uncover an older value.
#[test]
fn ttl_row_read_from_the_cache_expires() {
    for flushed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.put(b"t", b"older plain value").unwrap();
        db.flush().unwrap();
        let start = Instant::now();
        db.put_with_ttl(b"t", b"v", TTL).unwrap();
        if flushed {
            db.flush().unwrap();
        }
        let first = db.get(b"t").unwrap();
        let second = db.get(b"t").unwrap();
        if start.elapsed() >= TTL {
            eprintln!("skipped (flushed: {flushed}): the machine took longer than the TTL");
            continue;
        }
        assert_eq!(first.as_deref(), Some(&b"v"[..]));
        assert_eq!(second.as_deref(), Some(&b"v"[..]));
        assert_eq!(db.row_cache_stats().hits, 1, "the second read came from the row cache");
        sleep(PAST_TTL);
        assert_eq!(db.get(b"t").unwrap(), None, "served after its expiry (flushed: {flushed})");
        assert_eq!(db.row_cache_stats().rows, 0, "the expired row was dropped");
        assert_eq!(db.get(b"t").unwrap(), None, "the expired entry still hides the older value");
    }
}

// ---- Core engine with a manual clock -------------------------------------------------------

/// The core engine on a fresh `MemStorage`, 4 KiB MemTables, syncing every write.
fn open_mem(clock: &ManualClock) -> CoreDb {
    open_core(mem_storage(), clock, 4096, SyncPolicy::EveryWrite).unwrap_or_else(|e| panic!("open: {e}"))
}

/// Closes `db` and reopens its storage.
fn reopen(db: CoreDb, clock: &ManualClock) -> CoreDb {
    open_core(close_core(db), clock, 4096, SyncPolicy::EveryWrite).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn core_expiry_is_exact_in_the_memtable() {
    let now = ManualClock::new(1_000);
    let mut db = open_mem(&now);
    db.put_expiring(b"k", b"v", 1_100).unwrap();
    now.set(1_099);
    assert_eq!(core_get(&mut db, b"k").as_deref(), Some(&b"v"[..]), "one tick before expiry");
    now.set(1_100);
    assert_eq!(core_get(&mut db, b"k"), None, "at the expiry instant");
    now.set(u64::MAX);
    assert_eq!(core_get(&mut db, b"k"), None);
}

#[test]
fn core_expiry_is_exact_in_sstables_and_hides_older_values() {
    let now = ManualClock::new(0);
    let mut db = open_mem(&now);
    db.put(b"k", b"old").unwrap();
    db.put(b"plain", b"p").unwrap();
    db.flush().unwrap();
    db.put_expiring(b"k", b"new", 50).unwrap();
    db.put_expiring(b"gone", b"g", 50).unwrap();
    db.flush().unwrap();
    assert_eq!(db.tables().count(), 2);

    now.set(49);
    assert_eq!(core_get(&mut db, b"k").as_deref(), Some(&b"new"[..]));
    assert_eq!(core_get(&mut db, b"gone").as_deref(), Some(&b"g"[..]));
    now.set(50);
    assert_eq!(core_get(&mut db, b"k"), None, "expired SSTable entry uncovered the older value");
    assert_eq!(core_get(&mut db, b"gone"), None);
    assert_eq!(core_get(&mut db, b"plain").as_deref(), Some(&b"p"[..]));

    // Reopen on the same storage with the clock past expiry.
    let mut db = reopen(db, &now);
    assert_eq!(core_get(&mut db, b"k"), None);
    assert_eq!(core_get(&mut db, b"plain").as_deref(), Some(&b"p"[..]));
}

#[test]
fn core_entry_expired_before_flush_still_hides_older_value() {
    let now = ManualClock::new(0);
    let mut db = open_mem(&now);
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap();
    db.put_expiring(b"k", b"new", 10).unwrap();
    now.set(20);
    db.flush().unwrap();
    assert_eq!(core_get(&mut db, b"k"), None);
    let mut db = reopen(db, &now);
    assert_eq!(core_get(&mut db, b"k"), None);
}

#[test]
fn core_expired_entry_replayed_from_the_wal_stays_expired() {
    let now = ManualClock::new(0);
    let mut db = open_mem(&now);
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap();
    db.put_expiring(b"k", b"new", 10).unwrap();
    let storage = close_core(db);
    now.set(5);
    let mut db = open_core(storage, &now, 4096, SyncPolicy::EveryWrite).expect("reopen");
    assert_eq!(core_get(&mut db, b"k").as_deref(), Some(&b"new"[..]));
    now.set(10);
    assert_eq!(core_get(&mut db, b"k"), None);
}

#[test]
fn core_put_expiring_at_or_before_now_is_invalid_ttl_and_writes_nothing() {
    let now = ManualClock::new(500);
    let mut db = open_mem(&now);
    db.put(b"k", b"kept").unwrap();
    let wal_before = db.stats().wal_bytes;
    for at in [0, 499, 500] {
        assert_eq!(db.put_expiring(b"k", b"dead", at), Err(CoreError::InvalidTtl), "expiry {at}");
        assert_eq!(db.put_expiring(b"new", b"dead", at), Err(CoreError::InvalidTtl), "expiry {at}");
    }
    assert_eq!(db.stats().wal_bytes, wal_before, "a rejected write reached the WAL");
    assert!(!db.is_poisoned());
    assert_eq!(core_get(&mut db, b"k").as_deref(), Some(&b"kept"[..]));
    assert_eq!(core_get(&mut db, b"new"), None);
    db.put_expiring(b"new", b"live", 501).unwrap();
    assert_eq!(core_get(&mut db, b"new").as_deref(), Some(&b"live"[..]));
}

#[test]
fn core_expiry_across_memtable_rotation() {
    let now = ManualClock::new(0);
    let mut db = open_mem(&now);
    // 4 KiB MemTables: a few dozen keys each, so this rotates and flushes several times.
    for i in 0..200u64 {
        let key = format!("key{i:03}");
        db.put(key.as_bytes(), b"base").unwrap();
        db.put_expiring(key.as_bytes(), b"ttl", 100 + i).unwrap();
        now.set(i);
    }
    assert!(db.stats().flushes >= 2, "expected flushes, got {:?}", db.stats());
    let check = |db: &mut CoreDb, t: u64| {
        for i in 0..200u64 {
            let want = (100 + i > t).then(|| b"ttl".to_vec());
            assert_eq!(core_get(db, format!("key{i:03}").as_bytes()), want, "key{i:03} at {t}");
        }
    };
    for t in [199, 250, 299, 300] {
        now.set(t);
        check(&mut db, t);
    }
    // Reopen with the clock back at 250 (open may flush and compact, dropping what is dead
    // at the clock's time, so the clock must not run backwards across it), then move on.
    now.set(250);
    let mut db = reopen(db, &now);
    for t in [250, 280, 300] {
        now.set(t);
        check(&mut db, t);
    }
}

/// `get_with_expiry` returns the same value as `get` together with the entry's expiry (`None`
/// for an entry that never expires), from the MemTable and from an SSTable, and nothing for a
/// deleted or expired key.
#[test]
fn get_with_expiry_reports_the_expiry_from_memtable_and_sstable() {
    let now = ManualClock::new(10);
    let mut db = open_mem(&now);
    for flushed in [false, true] {
        db.put(b"plain", b"p").unwrap();
        db.put_expiring(b"ttl", b"t", 500).unwrap();
        db.put(b"deleted", b"d").unwrap();
        db.delete(b"deleted").unwrap();
        if flushed {
            db.flush().unwrap();
            assert_eq!(db.stats().memtable_keys, 0);
        }
        assert_eq!(read(&mut db, b"plain"), Some((b"p".to_vec(), None)), "flushed: {flushed}");
        assert_eq!(read(&mut db, b"ttl"), Some((b"t".to_vec(), Some(500))), "flushed: {flushed}");
        assert_eq!(read(&mut db, b"deleted"), None, "flushed: {flushed}");
        assert_eq!(read(&mut db, b"absent"), None, "flushed: {flushed}");
        now.set(500);
        assert_eq!(read(&mut db, b"ttl"), None, "expired, flushed: {flushed}");
        now.set(10);
    }
}

fn read(db: &mut CoreDb, key: &[u8]) -> Option<(Vec<u8>, Option<u64>)> {
    let mut buf = [0u8; 64];
    db.get_with_expiry(key, &mut buf).unwrap().map(|(v, t)| (v.to_vec(), t))
}
