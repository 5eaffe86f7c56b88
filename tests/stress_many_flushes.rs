//! Tens of thousands of puts, overwrites and deletes through small MemTables — so dozens of
//! flushes (and whatever merging the engine does) — checked key by key against a `BTreeMap`
//! model, before and after reopening in the middle and at the end.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Rng;
use minivault::{Db, Durability, Options};
use minivault_core::MAX_TABLES;

const OPS: usize = 20_000;
const KEY_SPACE: u64 = 2_500;
const OPTIONS: Options =
    Options { memtable_bytes: 16 * 1024, durability: Durability::Manual, ..Options::DEFAULT };

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(n: u64) -> Vec<u8> {
    format!("key{n:05}").into_bytes()
}

/// Checks every key of the key space, present or absent.
fn check_every_key(db: &mut Db, model: &Model, when: &str) {
    let t = Instant::now();
    let mut present = 0;
    for n in 0..KEY_SPACE {
        let k = key(n);
        let got = db.get(&k).unwrap_or_else(|e| panic!("{when}: get key{n:05}: {e}"));
        assert_eq!(got.as_ref(), model.get(&k), "{when}: key{n:05}");
        present += usize::from(got.is_some());
    }
    assert_eq!(present, model.len());
    eprintln!("check {when}: {:?}", t.elapsed());
}

fn apply(db: &mut Db, model: &mut Model, rng: &mut Rng, step: usize) {
    let n = rng.below(KEY_SPACE);
    let k = key(n);
    match rng.below(100) {
        0..=19 => {
            db.delete(&k).unwrap();
            model.remove(&k);
        }
        20..=24 => {
            // Long enough never to expire during the test: exercises the expiry encoding.
            let v = format!("ttl{step}").into_bytes();
            db.put_with_ttl(&k, &v, Duration::from_secs(3600)).unwrap();
            model.insert(k, v);
        }
        p => {
            let len = rng.below(if p < 95 { 60 } else { 400 }) as usize;
            let fill = b'a' + (step % 26) as u8;
            let mut v = format!("s{step}:").into_bytes();
            v.resize(v.len() + len, fill);
            db.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
}

#[test]
fn twenty_thousand_ops_through_dozens_of_flushes_match_the_model() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0xdead_beef);
    let mut model = Model::new();
    let mut flushes = 0;

    let mut db = Db::open_with(dir.path(), OPTIONS).unwrap();
    for step in 0..OPS / 2 {
        apply(&mut db, &mut model, &mut rng, step);
    }
    flushes += db.stats().flushes;
    check_every_key(&mut db, &model, "middle, before reopen");
    drop(db);

    let mut db = Db::open_with(dir.path(), OPTIONS).unwrap();
    check_every_key(&mut db, &model, "middle, after reopen");
    for step in OPS / 2..OPS {
        apply(&mut db, &mut model, &mut rng, step);
    }
    // From here on only calls install (not the threads' nudges), and `flush` installs what was
    // reported and waits for the unlinks: the files are the tables the handle reports.
    db.hold_background_installs(true);
    db.flush().unwrap();
    let stats = db.stats();
    flushes += stats.flushes;
    let tables = db.tables();
    assert_eq!(tables.len(), common::sst_files(dir.path()).len());
    check_every_key(&mut db, &model, "end, before reopen");
    drop(db);

    // Dozens of SSTables were written. (How many remain depends on whether the engine merges
    // them; it can never exceed its limit.)
    assert!(flushes >= 24, "only {flushes} flushes: {stats:?}");
    assert!(!tables.is_empty() && tables.len() <= MAX_TABLES, "{} tables", tables.len());

    let mut db = Db::open_with(dir.path(), OPTIONS).unwrap();
    check_every_key(&mut db, &model, "end, after reopen");
    // And it still takes writes.
    db.put(b"final", b"write").unwrap();
    assert_eq!(db.get(b"final").unwrap().as_deref(), Some(&b"write"[..]));
    eprintln!(
        "{OPS} ops, {} live keys, {flushes} flushes, {} tables at the end ({} bytes), {:?}",
        model.len(),
        tables.len(),
        tables.iter().map(|t| t.bytes).sum::<u64>(),
        started.elapsed()
    );
}

#[test]
fn keys_of_max_len_through_many_flushes_match_the_model() {
    use minivault::MAX_KEY_LEN;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 8 * 1024, durability: Durability::Manual, ..Options::default() };
    let mut rng = Rng::new(42);
    let mut model = Model::new();
    let long_key = |n: u64| {
        let mut k = format!("{n:04}").into_bytes();
        k.resize(MAX_KEY_LEN - (n % 3) as usize, b'0' + (n % 10) as u8);
        k
    };
    let mut db = Db::open_with(dir.path(), options).unwrap();
    let mut flushes = 0;
    for step in 0..600 {
        let k = long_key(rng.below(150));
        if rng.chance(20, 100) {
            db.delete(&k).unwrap();
            model.remove(&k);
        } else {
            let v = format!("v{step}").into_bytes();
            db.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        if step == 300 {
            flushes += db.stats().flushes;
            drop(db);
            db = Db::open_with(dir.path(), options).unwrap();
        }
    }
    flushes += db.stats().flushes;
    assert!(flushes >= 24, "only {flushes} flushes");
    for round in ["before reopen", "after reopen"] {
        for n in 0..150 {
            let k = long_key(n);
            assert_eq!(db.get(&k).unwrap().as_ref(), model.get(&k), "{round}: long key {n}");
        }
        drop(db);
        db = Db::open_with(dir.path(), options).unwrap();
    }
}
