//! The row cache is used: repeated gets of a key stored in an SSTable are answered without an
//! SSTable lookup, its counters show it, its byte charge stays within `row_cache_bytes`, and
//! `row_cache_bytes: 0` turns it off.

use minivault::{Db, Durability, Options};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn database(dir: &std::path::Path, row_cache_bytes: usize) -> Db {
    let options = Options {
        memtable_bytes: 64 * 1024,
        durability: Durability::Manual,
        row_cache_bytes,
        ..Options::default()
    };
    let db = Db::open_with(dir, options).unwrap();
    for i in 0..2000 {
        db.put(&key(i), &[i as u8; 100]).unwrap();
    }
    db.flush().unwrap();
    db
}

#[test]
fn repeated_gets_are_hits_that_skip_the_sstables() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 1 << 20);
    let hot: Vec<u32> = (0..2000).step_by(20).collect();
    for &i in &hot {
        assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]));
    }
    let engine = db.stats();
    let rows = db.row_cache_stats();
    assert_eq!((rows.hits, rows.misses, rows.rows), (0, hot.len() as u64, hot.len()));
    for _ in 0..10 {
        for &i in &hot {
            assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]));
        }
    }
    let after = db.row_cache_stats();
    assert_eq!(after.hits, 10 * hot.len() as u64);
    assert_eq!(after.misses, rows.misses);
    assert_eq!(db.stats().gets, engine.gets, "a cached get reached the engine");
    assert_eq!(db.stats().table_probes, engine.table_probes);
    assert!(after.bytes <= after.capacity_bytes);
}

#[test]
fn byte_charge_stays_within_the_capacity_when_every_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 64 * 1024;
    let db = database(dir.path(), capacity);
    for round in 0..3 {
        for i in 0..2000 {
            assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]), "round {round}");
            let s = db.row_cache_stats();
            assert!(s.bytes <= capacity, "{s:?}");
        }
    }
    let s = db.row_cache_stats();
    assert!(s.evictions > 0 && s.rows > 100, "{s:?}");
}

/// The `readhot` pattern: after a scan has filled the cache with rows read once, a hot set
/// smaller than the cache is soon served entirely from it.
#[test]
fn a_hot_set_stays_cached_after_a_scan_of_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 64 * 1024);
    for i in 0..2000 {
        db.get(&key(i)).unwrap();
    }
    let hot: Vec<u32> = (0..2000).step_by(25).collect();
    for _ in 0..3 {
        for &i in &hot {
            db.get(&key(i)).unwrap();
        }
    }
    let before = db.row_cache_stats();
    for &i in &hot {
        assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]));
    }
    let after = db.row_cache_stats();
    assert_eq!(after.hits - before.hits, hot.len() as u64, "{after:?}");
}

/// Once the cache is full, a sweep of keys read once is not cached (the doorkeeper declines
/// them) instead of evicting a row per key: the rows that were there stay, and are hits.
#[test]
fn a_sweep_of_keys_read_once_does_not_churn_a_full_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 64 * 1024);
    let first: Vec<u32> = (0..200).collect();
    for &i in &first {
        db.get(&key(i)).unwrap();
    }
    let full = db.row_cache_stats();
    assert!(full.rows >= 200, "{full:?}");
    for i in 200..2000 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]));
    }
    let swept = db.row_cache_stats();
    // A key whose doorkeeper bit another key set is let in: a sixteenth of the time at most.
    assert!(swept.declined >= 1500, "{swept:?}");
    assert!(swept.evictions < 300, "{swept:?}");
    for &i in &first {
        assert_eq!(db.get(&key(i)).unwrap(), Some(vec![i as u8; 100]));
    }
    let after = db.row_cache_stats();
    assert!(after.hits - swept.hits >= 100, "most of the first rows are still cached: {after:?}");
}

#[test]
fn zero_row_cache_bytes_disables_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 0);
    for _ in 0..3 {
        assert_eq!(db.get(&key(7)).unwrap(), Some(vec![7; 100]));
    }
    assert_eq!(db.stats().gets, 3, "every get reached the engine");
    assert_eq!(db.row_cache_stats(), minivault::RowCacheStats::default());
}
