//! Gets through the SSTables' resident indexes (`Options::index_bytes`: fences, run starts and
//! filters in memory, each run of records read in one go) answer exactly as gets that read the
//! tables from storage: on every key of a model (present, absent, overwritten, tombstoned,
//! range-deleted, expired), with every table resident, none, or only those the budget holds;
//! what is loaded never exceeds the budget; and a budget short of everything holds the filters
//! first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use minivault::{Db, Durability, IndexStats, Options};

/// No row cache: every get reaches the tables. No background threads: the tables stay as the
/// flushes below make them.
fn options(index_bytes: usize) -> Options {
    Options {
        memtable_bytes: 256 << 10,
        durability: Durability::Manual,
        row_cache_bytes: 0,
        background_threads: 0,
        index_bytes,
        ..Options::DEFAULT
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key{:06}", i * 2).into_bytes()
}

/// Mostly short values; every 97th is 3 KiB, so its run of 16 records does not fit a reading
/// thread's 16 KiB run buffer and is streamed.
fn value(i: usize, round: usize) -> Vec<u8> {
    let len = if i % 97 == 5 { 3000 } else { 10 + (i * 7 + round) % 90 };
    format!("{round}-{i}-").into_bytes().into_iter().cycle().take(len).collect()
}

const KEYS: usize = 4000;

/// Writes four tables of overwrites, deletes, a range delete and expiring entries; returns the
/// model of what every key reads once the short TTLs have run out.
fn build(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Db::open_with(dir, options(0)).unwrap();
    let mut model = BTreeMap::new();
    for round in 0..4 {
        for i in (round..KEYS).step_by(round + 1) {
            match (i + round) % 11 {
                0 if round > 0 => {
                    db.delete(&key(i)).unwrap();
                    model.remove(&key(i));
                }
                1 if round > 0 => {
                    // Expired by the time the model is read.
                    db.put_with_ttl(&key(i), &value(i, round), Duration::from_millis(1)).unwrap();
                    model.remove(&key(i));
                }
                2 => {
                    db.put_with_ttl(&key(i), &value(i, round), Duration::from_secs(3600)).unwrap();
                    model.insert(key(i), value(i, round));
                }
                _ => {
                    db.put(&key(i), &value(i, round)).unwrap();
                    model.insert(key(i), value(i, round));
                }
            }
        }
        if round == 2 {
            let (start, end) = (key(1000), key(1300));
            db.delete_range(&start, &end).unwrap();
            model.retain(|k, _| !(k >= &start && k < &end));
        }
        db.flush().unwrap();
    }
    assert!(db.stats().tables >= 3, "several tables to probe: {:?}", db.stats());
    db.close().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    model
}

/// Every key of the model, and the absent keys between and around them, read through `db`.
fn check_every_key(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    for i in 0..KEYS {
        let k = key(i);
        assert_eq!(db.get(&k).unwrap().as_ref(), model.get(&k), "{what}: key {i}");
        let gap = format!("key{:06}", i * 2 + 1).into_bytes();
        assert_eq!(db.get(&gap).unwrap(), None, "{what}: gap after key {i}");
    }
    for k in [&b"a"[..], b"key", b"key0000000", b"zzz"] {
        assert_eq!(db.get(k).unwrap(), None, "{what}: {k:?}");
    }
}

/// Reads every key of the model with room for every index: what is then loaded (every filter
/// and every table's fences, nothing refused) and the number of tables.
fn all_resident(dir: &Path, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> (IndexStats, usize) {
    let db = Db::open_with(dir, options(64 << 20)).unwrap();
    let tables = db.stats().tables;
    check_every_key(&db, model, "all resident");
    let all = db.index_stats();
    assert_eq!((all.resident_tables, all.resident_filters), (tables, tables), "{all:?}");
    assert_eq!(all.refused_loads, 0, "{all:?}");
    (all, tables)
}

#[test]
fn every_key_reads_the_same_through_resident_indexes_storage_and_a_partial_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = build(dir.path());
    let (all, tables) = all_resident(dir.path(), &model);

    // None: every table read from storage.
    let db = Db::open_with(dir.path(), options(0)).unwrap();
    check_every_key(&db, &model, "none resident");
    let none = db.index_stats();
    assert_eq!((none.resident_tables, none.resident_bytes), (0, 0), "{none:?}");
    drop(db);

    // One byte short of all of them: some tables resident, at least one read from storage.
    let budget = all.resident_bytes - 1;
    let db = Db::open_with(dir.path(), options(budget)).unwrap();
    check_every_key(&db, &model, "partly resident");
    let part = db.index_stats();
    assert!(part.resident_tables >= 1 && part.resident_tables < tables, "{part:?} of {tables} tables");
    assert!(part.refused_loads > 0 && part.resident_bytes <= budget, "{part:?}");
}

#[test]
fn a_budget_short_of_every_index_holds_every_filter_before_any_fence() {
    let dir = tempfile::tempdir().unwrap();
    let model = build(dir.path());
    let (all, tables) = all_resident(dir.path(), &model);
    let (filters, fences) = (all.filter_bytes, all.resident_bytes - all.filter_bytes);
    assert!(filters > 0 && fences > 0, "{all:?}");

    // Room for every filter and half the fences: the gets probe the newest tables first, and
    // their fences must not take the room the older tables' filters need.
    let budget = filters + fences / 2;
    let db = Db::open_with(dir.path(), options(budget)).unwrap();
    check_every_key(&db, &model, "filters and some fences");
    let s = db.index_stats();
    assert_eq!(s.resident_filters, tables, "every filter: {s:?}");
    assert!(s.resident_tables < tables && s.resident_bytes <= budget, "{s:?}");
    drop(db);

    // One byte short of the filters: no fences at all, and all but one filter.
    let budget = filters - 1;
    let db = Db::open_with(dir.path(), options(budget)).unwrap();
    check_every_key(&db, &model, "filters only");
    let s = db.index_stats();
    assert_eq!(s.resident_tables, 0, "no fences: {s:?}");
    assert!(s.resident_filters >= 1 && s.resident_filters < tables, "{s:?}");
    assert_eq!(s.resident_bytes, s.filter_bytes, "{s:?}");
}

#[test]
fn the_indexes_loaded_never_exceed_the_budget_as_tables_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 24 << 10;
    let options = Options { background_threads: 2, ..options(budget) };
    let db = Db::open_with(dir.path(), options).unwrap();
    let mut most = 0;
    let mut model = BTreeMap::new();
    for round in 0..40 {
        for i in 0..400 {
            let k = key((i * 37 + round * 101) % KEYS);
            db.put(&k, &value(i, round)).unwrap();
            model.insert(k, value(i, round));
        }
        db.flush().unwrap();
        // Read a sample, loading whatever fits.
        for (k, v) in model.iter().step_by(29) {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "round {round}");
        }
        let s = db.index_stats();
        assert!(s.resident_bytes <= budget, "round {round}: {s:?}");
        most = most.max(s.resident_bytes);
    }
    let s = db.index_stats();
    eprintln!("most loaded {most} of {budget}; {s:?}; {} tables", db.stats().tables);
    assert!(most > budget / 4, "the budget is used, not just respected: {most} of {budget}");
    drop(db);
    let db = Db::open_with(dir.path(), Options { index_bytes: 0, ..options }).unwrap();
    for (k, v) in &model {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v));
    }
}

#[test]
fn a_compaction_output_under_its_newest_inputs_id_is_read_through_its_own_index() {
    // Background compactions, installed after the reads between flushes loaded the index of
    // every table: each output takes the id of its newest input.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), Options { background_threads: 2, ..options(64 << 20) }).unwrap();
    let mut model = BTreeMap::new();
    let mut round = 0;
    while db.background_stats().installed < 3 {
        assert!(round < 200, "no compaction after {round} flushes: {:?}", db.stats());
        for i in (round % 7..KEYS).step_by(7) {
            db.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
        db.flush().unwrap();
        for i in (0..KEYS).step_by(3) {
            assert_eq!(db.get(&key(i)).unwrap().as_ref(), model.get(&key(i)), "round {round}, key {i}");
        }
        round += 1;
    }
    check_every_key(&db, &model, "after compactions");
}
