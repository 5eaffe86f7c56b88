//! The row cache never serves a stale value: every write through the handle (put, put with a
//! TTL, delete, write batch), successful or not, leaves the next get of its keys answering what
//! the engine holds, whether the cached row came from a MemTable or from an SSTable.
//!
//! Each scenario first proves the key is served from the cache (a second get is a hit), then
//! writes, then reads.

use std::time::Duration;

use minivault::{Db, Durability, Error, Options, WriteBatch, MAX_KEY_LEN};

fn open(dir: &std::path::Path) -> Db {
    let options = Options { memtable_bytes: 64 * 1024, durability: Durability::Manual, ..Options::default() };
    Db::open_with(dir, options).unwrap()
}

/// Reads `key` twice and checks the second read came from the row cache; returns the value.
fn cached_read(db: &mut Db, key: &[u8]) -> Vec<u8> {
    let first = db.get(key).unwrap().expect("the key is present");
    let hits = db.row_cache_stats().hits;
    assert_eq!(db.get(key).unwrap().as_deref(), Some(&first[..]));
    assert_eq!(db.row_cache_stats().hits, hits + 1, "the second read was not served by the row cache");
    first
}

/// Runs `scenario` with the cached row coming from the active MemTable, then from an SSTable.
fn in_memtable_and_in_sstable(scenario: impl Fn(&mut Db, bool)) {
    for flushed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path());
        db.put(b"k", b"old").unwrap();
        db.put(b"other", b"untouched").unwrap();
        if flushed {
            db.flush().unwrap();
            assert_eq!(db.stats().memtable_keys, 0);
        }
        assert_eq!(cached_read(&mut db, b"k"), b"old");
        assert_eq!(cached_read(&mut db, b"other"), b"untouched");
        scenario(&mut db, flushed);
        assert_eq!(db.get(b"other").unwrap().as_deref(), Some(&b"untouched"[..]), "flushed: {flushed}");
    }
}

#[test]
fn overwrite_after_a_cached_read_returns_the_new_value() {
    in_memtable_and_in_sstable(|db, flushed| {
        db.put(b"k", b"new").unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"new"[..]), "flushed: {flushed}");
        assert_eq!(cached_read(db, b"k"), b"new");
    });
}

#[test]
fn delete_after_a_cached_read_returns_none() {
    in_memtable_and_in_sstable(|db, flushed| {
        db.delete(b"k").unwrap();
        assert_eq!(db.get(b"k").unwrap(), None, "flushed: {flushed}");
        db.flush().unwrap();
        assert_eq!(db.get(b"k").unwrap(), None, "flushed: {flushed}");
    });
}

#[test]
fn put_with_ttl_after_a_cached_read_returns_the_new_value() {
    in_memtable_and_in_sstable(|db, flushed| {
        db.put_with_ttl(b"k", b"brief", Duration::from_secs(3600)).unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"brief"[..]), "flushed: {flushed}");
    });
}

#[test]
fn write_batch_overwriting_and_deleting_cached_keys_is_seen() {
    in_memtable_and_in_sstable(|db, flushed| {
        db.put(b"gone", b"soon").unwrap();
        assert_eq!(cached_read(db, b"gone"), b"soon");
        let mut batch = WriteBatch::new(vec![0; 4096]);
        batch.put(b"unrelated", b"1").unwrap();
        batch.put(b"k", b"from batch").unwrap();
        batch.delete(b"gone").unwrap();
        db.write_batch(&batch).unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"from batch"[..]), "flushed: {flushed}");
        assert_eq!(db.get(b"gone").unwrap(), None, "flushed: {flushed}");
        assert_eq!(db.get(b"unrelated").unwrap().as_deref(), Some(&b"1"[..]));
    });
}

#[test]
fn write_batch_leaves_cached_keys_it_does_not_touch_cached() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.put(b"k", b"v").unwrap();
    assert_eq!(cached_read(&mut db, b"k"), b"v");
    let mut batch = WriteBatch::new(vec![0; 4096]);
    batch.put(b"a", b"1").unwrap();
    db.write_batch(&batch).unwrap();
    cached_read(&mut db, b"k");
    let hits = db.row_cache_stats().hits;
    db.get(b"k").unwrap();
    assert_eq!(db.row_cache_stats().hits, hits + 1, "the batch dropped a key it does not write");
}

/// A write the engine refuses changes nothing, and the cache is emptied of its keys anyway: the
/// next get asks the engine (a miss) and returns what the engine holds.
#[test]
fn failed_writes_leave_no_cached_row_and_the_old_value_stands() {
    in_memtable_and_in_sstable(|db, flushed| {
        let misses = db.row_cache_stats().misses;
        let huge = vec![0u8; 1 << 20];
        assert!(matches!(db.put(b"k", &huge), Err(Error::Engine(_))), "value too large");
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"old"[..]), "flushed: {flushed}");
        assert_eq!(db.row_cache_stats().misses, misses + 1, "the failed put left the row cached");

        cached_read(db, b"k");
        let misses = db.row_cache_stats().misses;
        assert!(db.put_with_ttl(b"k", &huge, Duration::from_secs(60)).is_err());
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(db.row_cache_stats().misses, misses + 1, "the failed put_with_ttl left the row cached");

        // A batch holding an entry that expired before it was applied is refused as a whole.
        cached_read(db, b"k");
        let misses = db.row_cache_stats().misses;
        let mut batch = WriteBatch::new(vec![0; 4096]);
        batch.put(b"k", b"never").unwrap();
        batch.put_expiring(b"t", b"dead", 1).unwrap();
        assert!(matches!(db.write_batch(&batch), Err(Error::Engine(_))));
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(db.row_cache_stats().misses, misses + 1, "the failed batch left the row cached");
    });
}

#[test]
fn a_key_too_large_to_store_is_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    assert!(db.put(&long, b"v").is_err());
    assert!(db.get(&long).is_err(), "the engine still rejects the key on read");
    assert_eq!(db.row_cache_stats().rows, 0);
}
