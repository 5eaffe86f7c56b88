//! `Db::snapshot` against a model: a snapshot's gets and scans return the model as it was when
//! the snapshot was taken, however many writes, flushes, compactions and evictions come after,
//! and whichever threads read it; TTLs are judged at its creation; the files it pins are
//! released when it drops.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::Rng;
use minivault::{Db, EngineError, Error, Options, Snapshot, WhenFull, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const KEYS: u64 = 300;

fn key(k: u64) -> Vec<u8> {
    format!("k{k:04}").into_bytes()
}

/// One random write, applied to the database and the model alike.
fn random_write(db: &Db, model: &mut Model, rng: &mut Rng, step: u64, pad: usize) {
    let k = rng.below(KEYS);
    match rng.below(100) {
        0..=59 => {
            let v = format!("v{step}:{}", ".".repeat(rng.below(pad as u64) as usize)).into_bytes();
            db.put(&key(k), &v).unwrap();
            model.insert(key(k), v);
        }
        60..=79 => {
            db.delete(&key(k)).unwrap();
            model.remove(&key(k));
        }
        80..=84 => {
            let end = (k + 1 + rng.below(10)).min(KEYS);
            db.delete_range(&key(k), &key(end)).unwrap();
            for j in k..end {
                model.remove(&key(j));
            }
        }
        85..=94 => {
            let mut batch = WriteBatch::new(vec![0; 4 * (pad + 64)]);
            for j in [k, (k + 7) % KEYS] {
                let v = format!("b{step}:{j}").into_bytes();
                batch.put(&key(j), &v).unwrap();
                model.insert(key(j), v);
            }
            db.write_batch(&batch).unwrap();
        }
        _ => {
            // A TTL far beyond the test: alive throughout.
            let v = format!("t{step}").into_bytes();
            db.put_with_ttl(&key(k), &v, Duration::from_secs(3600)).unwrap();
            model.insert(key(k), v);
        }
    }
}

/// Checks every get and a forward, a backward and a prefix scan of `snapshot` against `want`.
fn check(snapshot: &Snapshot, want: &Model, when: &str) {
    for k in 0..KEYS {
        assert_eq!(snapshot.get(&key(k)).unwrap(), want.get(&key(k)).cloned(), "{when}: get of key {k}");
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> = snapshot.range::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all, expected, "{when}: forward scan");
    let mut back: Vec<(Vec<u8>, Vec<u8>)> =
        snapshot.range::<&[u8], _>(..).rev().collect::<Result<_, _>>().unwrap();
    back.reverse();
    assert_eq!(back, expected, "{when}: backward scan");
    let some: Vec<Vec<u8>> = snapshot.keys(key(100)..key(200)).collect::<Result<_, _>>().unwrap();
    let expected_keys: Vec<Vec<u8>> = want.range(key(100)..key(200)).map(|(k, _)| k.clone()).collect();
    assert_eq!(some, expected_keys, "{when}: keys of a range");
    let prefixed = snapshot.prefix("k01").count();
    assert_eq!(prefixed, want.range(key(100)..key(200)).count(), "{when}: prefix scan");
}

/// What the database holds now: the model of every write, less (when tables are evicted) what
/// eviction removed, which the database itself reads as absent.
fn as_of_now(db: &Db, model: &Model, evicts: bool) -> Model {
    if !evicts {
        return model.clone();
    }
    let held: Model = db.range::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
    for (k, v) in &held {
        assert_eq!(model.get(k), Some(v), "the database holds {k:?} as the model does");
    }
    held
}

/// Writes, taking a snapshot every `every` writes, checking every snapshot taken so far now
/// and then; returns the directory, the handle, the snapshots and their models.
fn run(
    options: Options,
    writes: u64,
    every: u64,
    pad: usize,
    seed: u64,
) -> (tempfile::TempDir, Db, Vec<(Snapshot, Model)>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(dir.path(), options).unwrap();
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    let evicts = options.max_bytes.is_some();
    for step in 1..=writes {
        random_write(&db, &mut model, &mut rng, step, pad);
        if step % every == 0 {
            let snapshot = db.snapshot().unwrap();
            snapshots.push((snapshot, as_of_now(&db, &model, evicts)));
        }
        if rng.chance(1, 300) {
            db.flush().unwrap();
        }
        if step % (4 * every) == 0 {
            for (i, (s, m)) in snapshots.iter().enumerate() {
                check(s, m, &format!("snapshot {i} at write {step}"));
            }
        }
    }
    for (i, (s, m)) in snapshots.iter().enumerate() {
        check(s, m, &format!("snapshot {i} at the end"));
    }
    // The database itself moved on: the last snapshot and the model of now differ.
    let now = db.snapshot().unwrap();
    check(&now, &as_of_now(&db, &model, evicts), "a snapshot of the end");
    (dir, db, snapshots)
}

#[test]
fn snapshots_never_change_while_writes_flushes_and_background_compactions_go_on() {
    let options = Options { memtable_bytes: 16 << 10, ..Options::default() };
    let (_dir, db, snapshots) = run(options, 6000, 250, 60, 0x5ab0_0001);
    let stats = db.stats();
    eprintln!("{} snapshots; {stats:?}", snapshots.len());
    assert!(stats.compactions > 0 && stats.flushes > 20, "{stats:?}");
}

#[test]
fn snapshots_never_change_while_compactions_run_inside_the_writes() {
    let options = Options { memtable_bytes: 16 << 10, background_threads: 0, ..Options::default() };
    let (_dir, db, _) = run(options, 6000, 250, 60, 0x5ab0_0002);
    assert!(db.stats().compactions > 0, "{:?}", db.stats());
}

#[test]
fn snapshots_keep_what_eviction_removes_from_the_database() {
    let memtable_bytes = 16 << 10;
    let options = Options {
        memtable_bytes,
        max_bytes: Some(minivault_core::space::min_max_bytes(memtable_bytes)),
        when_full: WhenFull::DropOldest,
        ..Options::default()
    };
    let (_dir, db, _) = run(options, 4000, 400, 3000, 0x5ab0_0003);
    assert!(db.stats().evicted_tables > 0, "{:?}", db.stats());
}

#[test]
fn a_snapshot_read_by_many_threads_while_another_writes_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Db::open_with(dir.path(), Options { memtable_bytes: 16 << 10, ..Options::default() }).unwrap(),
    );
    let mut rng = Rng::new(0x5ab0_0004);
    let mut model = Model::new();
    for step in 0..2000 {
        random_write(&db, &mut model, &mut rng, step, 60);
    }
    let snapshot = Arc::new(db.snapshot().unwrap());
    let model = Arc::new(model);
    let writer = {
        let db = Arc::clone(&db);
        thread::spawn(move || {
            let mut rng = Rng::new(7);
            let mut scratch = Model::new();
            for step in 0..4000 {
                random_write(&db, &mut scratch, &mut rng, 10_000 + step, 60);
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (snapshot, model) = (Arc::clone(&snapshot), Arc::clone(&model));
            thread::spawn(move || {
                for round in 0..5 {
                    check(&snapshot, &model, &format!("reader {r}, round {round}"));
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    check(&snapshot, &model, "after the writer");
}

#[test]
fn a_snapshot_judges_ttls_when_it_was_taken() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put_with_ttl(b"gone", b"x", Duration::from_millis(1)).unwrap();
    thread::sleep(Duration::from_millis(20));
    db.put_with_ttl(b"session", b"token", Duration::from_millis(400)).unwrap();
    let snapshot = db.snapshot().unwrap();
    thread::sleep(Duration::from_millis(600));
    assert_eq!(db.get(b"session").unwrap(), None, "expired in the database");
    assert_eq!(snapshot.get(b"session").unwrap().as_deref(), Some(&b"token"[..]), "alive in the snapshot");
    let (_, expires) = snapshot.get_with_expiry(b"session").unwrap().unwrap();
    assert!(expires.unwrap() > snapshot.taken_at());
    assert_eq!(snapshot.get(b"gone").unwrap(), None, "expired before the snapshot");
    assert_eq!(snapshot.keys::<&[u8], _>(..).count(), 1);
}

#[test]
fn a_snapshot_of_a_read_only_handle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Db::open(dir.path()).unwrap().close().unwrap();
    let db = Db::open_with(dir.path(), Options { read_only: true, ..Options::default() }).unwrap();
    match db.snapshot() {
        Err(Error::Engine(EngineError::ReadOnly)) => {}
        other => panic!("expected ReadOnly, got {other:?}"),
    }
}

/// Descriptors of this process open on files of `dir` that were removed.
#[cfg(target_os = "linux")]
fn removed_files_held_open(dir: &std::path::Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.starts_with(&dir) && p.to_string_lossy().ends_with(" (deleted)"))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn the_files_a_snapshot_pins_are_released_when_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 16 << 10, background_threads: 0, ..Options::default() };
    let db = Db::open_with(dir.path(), options).unwrap();
    for t in 0..4u64 {
        for i in 0..20 {
            db.put(&key(t * 20 + i), b"first").unwrap();
        }
        db.flush().unwrap();
    }
    let snapshot = db.snapshot().unwrap();
    assert_eq!(db.get(&key(5)).unwrap().as_deref(), Some(&b"first"[..])); // the Db's own view
    for t in 0..8u64 {
        for i in 0..20 {
            db.put(&key(t * 20 + i), b"second").unwrap();
        }
        db.flush().unwrap();
    }
    assert!(db.stats().compactions > 0, "{:?}", db.stats());
    assert_eq!(db.get(&key(5)).unwrap().as_deref(), Some(&b"second"[..]));
    let pinned = removed_files_held_open(dir.path());
    assert!(pinned >= 4, "the snapshot holds the four removed tables open: {pinned}");
    assert_eq!(snapshot.get(&key(5)).unwrap().as_deref(), Some(&b"first"[..]));
    drop(snapshot);
    assert_eq!(removed_files_held_open(dir.path()), 0, "released with the snapshot");
}
