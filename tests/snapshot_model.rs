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
use minivault::{Db, Options, Snapshot, WhenFull, WriteBatch};

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
fn a_snapshot_of_a_read_only_handle_sees_what_it_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(b"in-the-wal", b"1").unwrap();
    db.close().unwrap();
    let db = Db::open_with(dir.path(), Options { read_only: true, ..Options::default() }).unwrap();
    let snapshot = db.snapshot().unwrap();
    assert_eq!(snapshot.get(b"in-the-wal").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(snapshot.keys::<&[u8], _>(..).count(), 1);
}

/// `(key, value)` pairs of `model`, in order.
fn pairs(model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Puts `keys` (key numbers) with `value` into the database and the model.
fn put_all(db: &Db, model: &mut Model, keys: std::ops::Range<u64>, value: &[u8]) {
    for k in keys {
        db.put(&key(k), value).unwrap();
        model.insert(key(k), value.to_vec());
    }
}

/// A snapshot takes no flush; reads of keys overwritten, deleted and range-deleted after it in
/// the same MemTable return what it saw, while that MemTable is still the active one, after it
/// rotates, after it is flushed, after compactions, and after the handle is dropped.
fn overwrites_after_a_snapshot_in_its_memtable(background_threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 64 << 10, background_threads, ..Options::default() };
    let db = Db::open_with(dir.path(), options).unwrap();
    let mut model = Model::new();
    put_all(&db, &mut model, 200..260, b"in a table");
    db.flush().unwrap();
    put_all(&db, &mut model, 0..100, b"in the memtable");
    put_all(&db, &mut model, 250..260, b"in the memtable too");
    let (tables, flushes) = (db.tables().len(), db.stats().flushes);
    let snapshot = db.snapshot().unwrap();
    let at_snapshot = model.clone();
    assert_eq!(db.tables().len(), tables, "a snapshot writes no table");
    assert_eq!(db.stats().flushes, flushes, "a snapshot flushes nothing");
    assert!(db.stats().memtable_keys > 0, "the MemTable still holds the writes");

    // Overwrites, deletes, a range delete and new keys, all in the same MemTable.
    put_all(&db, &mut model, 0..10, b"overwritten");
    put_all(&db, &mut model, 0..5, b"overwritten twice");
    for k in 10..20 {
        db.delete(&key(k)).unwrap();
        model.remove(&key(k));
    }
    db.delete_range(&key(20), &key(30)).unwrap();
    for k in 20..30 {
        model.remove(&key(k));
    }
    put_all(&db, &mut model, 100..110, b"new");
    put_all(&db, &mut model, 200..205, b"table key overwritten");
    let mut batch = WriteBatch::new(vec![0; 256]);
    batch.put(&key(40), b"batch").unwrap();
    batch.delete(&key(41)).unwrap();
    db.write_batch(&batch).unwrap();
    model.insert(key(40), b"batch".to_vec());
    model.remove(&key(41));
    assert_eq!(db.stats().flushes, flushes, "all of it in the same MemTable");
    let later = db.snapshot().unwrap();
    let at_later = model.clone();
    check(&snapshot, &at_snapshot, "same MemTable");
    check(&later, &at_later, "same MemTable, the later snapshot");
    let db_now: Vec<(Vec<u8>, Vec<u8>)> = db.range::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
    assert_eq!(db_now, pairs(&model), "the database itself moved on");

    // Rotations: writes fill the MemTable several times over.
    let mut step = 0;
    while db.stats().flushes < flushes + 3 {
        put_all(&db, &mut model, (step % 5)..(step % 5 + 1), format!("fill {step}").as_bytes());
        put_all(&db, &mut model, 300 + step % 2000..301 + step % 2000, &[b'.'; 100]);
        step += 1;
    }
    check(&snapshot, &at_snapshot, "after rotations");
    check(&later, &at_later, "after rotations, the later snapshot");
    db.flush().unwrap();
    check(&snapshot, &at_snapshot, "after a flush");
    for round in 0..12u64 {
        put_all(&db, &mut model, 0..60, format!("round {round}").as_bytes());
        db.flush().unwrap();
    }
    assert!(db.stats().compactions > 0 || background_threads > 0, "{:?}", db.stats());
    check(&snapshot, &at_snapshot, "after compactions");
    check(&later, &at_later, "after compactions, the later snapshot");
    drop(db);
    check(&snapshot, &at_snapshot, "after the handle was dropped");
}

#[test]
fn a_snapshot_flushes_nothing_and_keeps_what_later_writes_replace_in_its_memtable() {
    overwrites_after_a_snapshot_in_its_memtable(2);
}

#[test]
fn a_snapshot_flushes_nothing_and_keeps_what_later_writes_replace_with_inline_flushes() {
    overwrites_after_a_snapshot_in_its_memtable(0);
}

#[test]
fn a_snapshot_taken_while_a_memtable_waits_for_its_flush_reads_it_after_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 16 << 10, background_threads: 0, ..Options::default() };
    let db = Db::open_with(dir.path(), options).unwrap();
    let mut model = Model::new();
    // Inline flushes: the frozen MemTable waits for the next rotation.
    let flushes = db.stats().flushes;
    let mut k = 0;
    while db.stats().immutable_keys == 0 {
        put_all(&db, &mut model, k % 200..k % 200 + 1, format!("v{k}").as_bytes());
        k += 1;
    }
    assert_eq!(db.stats().flushes, flushes);
    let snapshot = db.snapshot().unwrap();
    let at_snapshot = model.clone();
    for j in 0..400 {
        put_all(&db, &mut model, j % 200..j % 200 + 1, &[b'x'; 80]);
    }
    assert!(db.stats().flushes > flushes, "{:?}", db.stats());
    check(&snapshot, &at_snapshot, "after the waiting MemTable was flushed");
}

#[test]
fn a_flush_that_rotates_nothing_leaves_later_snapshots_and_iterators_seeing_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut model = Model::new();
    put_all(&db, &mut model, 0..50, b"before");
    db.flush().unwrap();
    // A snapshot of the (empty) active MemTable lives on through a flush that has nothing to
    // rotate: that MemTable stays the active one and takes the writes after it.
    let held = db.snapshot().unwrap();
    let at_held = model.clone();
    db.flush().unwrap();
    put_all(&db, &mut model, 50..60, b"after");
    let later = db.snapshot().unwrap();
    check(&later, &model, "a snapshot taken after the writes");
    let seen: Vec<(Vec<u8>, Vec<u8>)> = db.range::<&[u8], _>(..).map(Result::unwrap).collect();
    assert_eq!(seen, pairs(&model), "an iterator made after the writes");
    check(&held, &at_held, "the snapshot held through the flush");
    // And once that MemTable is flushed, the next generation's snapshots too.
    db.flush().unwrap();
    put_all(&db, &mut model, 60..70, b"next");
    check(&db.snapshot().unwrap(), &model, "a snapshot of the next generation");
    check(&held, &at_held, "the held snapshot after it all");
}

#[test]
fn a_range_iterator_sees_no_write_made_after_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut model = Model::new();
    put_all(&db, &mut model, 0..200, b"before");
    let want = pairs(&model);
    let mut forward = db.range::<&[u8], _>(..);
    let mut backward = db.range::<&[u8], _>(..).rev();
    let unread = db.keys::<&[u8], _>(..);
    let first = forward.next().unwrap().unwrap();
    let last = backward.next().unwrap().unwrap();
    // Past the first batch of each side, and before any batch of `unread`.
    put_all(&db, &mut model, 100..110, b"after");
    db.delete(&key(120)).unwrap();
    db.delete_range(&key(130), &key(140)).unwrap();
    put_all(&db, &mut model, 1000..1010, b"new");
    let mut got = vec![first];
    got.extend(forward.map(Result::unwrap));
    assert_eq!(got, want, "forward");
    let mut got = vec![last];
    got.extend(backward.map(Result::unwrap));
    got.reverse();
    assert_eq!(got, want, "backward");
    let keys: Vec<Vec<u8>> = unread.map(Result::unwrap).collect();
    assert_eq!(keys, want.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), "keys");
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

/// The sequence number in `v` (`<seq>:<pad>`).
fn seq(v: &[u8]) -> u64 {
    let s = std::str::from_utf8(v).unwrap();
    s.split(':').next().unwrap().parse().unwrap()
}

/// Writer threads each own two keys, written together in batches with the same sequence
/// number, and fill the MemTables with other keys between; a checker takes snapshots and
/// iterators while they write. Each must see, for every writer, one batch: both keys at the
/// same number, no older than the last batch acknowledged before its creation and no newer
/// than the last one started before its creation ended; a snapshot read again later, after
/// rotations, flushes and compactions, answers the same.
fn writers_against_snapshots_and_iterators(background_threads: usize) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const WRITERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 16 << 10, background_threads, ..Options::default() };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (db, acked, started, stop) =
                (Arc::clone(&db), Arc::clone(&acked), Arc::clone(&started), Arc::clone(&stop));
            thread::spawn(move || {
                let mut rng = Rng::new(0x5ab0_0100 + t as u64);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let v = format!("{n}:{}", ".".repeat(rng.below(40) as usize)).into_bytes();
                    let mut batch = WriteBatch::new(vec![0; 512]);
                    batch.put(format!("w{t}/a").as_bytes(), &v).unwrap();
                    batch.put(format!("w{t}/b").as_bytes(), &v).unwrap();
                    started[t].store(n, Ordering::SeqCst);
                    db.write_batch(&batch).unwrap();
                    acked[t].store(n, Ordering::SeqCst);
                    let fill = format!("x{t}/{}", rng.below(500));
                    db.put(fill.as_bytes(), &v).unwrap();
                    if rng.chance(1, 500) {
                        db.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    let mut kept: Vec<(Snapshot, Vec<u64>)> = Vec::new();
    let flushes = db.stats().flushes;
    // At least 300 rounds, and on until the MemTables rotated under the readers a few times (a
    // loaded machine gives the writers less time per round); bounded, so the check below can fail.
    for round in 0.. {
        if round >= 300 && (db.stats().flushes > flushes + 5 || round >= 20_000) {
            break;
        }
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let as_snapshot = round % 2 == 0;
        let (seen, snapshot) = if as_snapshot {
            let s = db.snapshot().unwrap();
            let after: Vec<u64> = started.iter().map(|a| a.load(Ordering::SeqCst)).collect();
            let seen = seen_by(|t| {
                let a = s.get(format!("w{t}/a").as_bytes()).unwrap();
                let b = s.get(format!("w{t}/b").as_bytes()).unwrap();
                (a, b)
            });
            check_seen(&seen, &before, &after, round);
            (seen, Some(s))
        } else {
            let it = db.prefix("w");
            let after: Vec<u64> = started.iter().map(|a| a.load(Ordering::SeqCst)).collect();
            // Read slowly: writes go on between the entries.
            let mut got = BTreeMap::new();
            for e in it {
                let (k, v) = e.unwrap();
                got.insert(k, v);
                thread::yield_now();
            }
            let seen = seen_by(|t| {
                (
                    got.get(format!("w{t}/a").as_bytes()).cloned(),
                    got.get(format!("w{t}/b").as_bytes()).cloned(),
                )
            });
            check_seen(&seen, &before, &after, round);
            (seen, None)
        };
        if let Some(s) = snapshot {
            if round % 10 == 0 && round < 300 {
                kept.push((s, seen));
            }
        }
        for (i, (s, seen)) in kept.iter().enumerate() {
            if round % 25 == 0 {
                let again = seen_by(|t| {
                    (
                        s.get(format!("w{t}/a").as_bytes()).unwrap(),
                        s.get(format!("w{t}/b").as_bytes()).unwrap(),
                    )
                });
                assert_eq!(&again, seen, "snapshot {i} read again at round {round}");
                let scanned = s.prefix("w").count();
                assert_eq!(scanned, seen.iter().filter(|&&n| n > 0).count() * 2, "snapshot {i} scanned");
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let stats = db.stats();
    assert!(stats.flushes > flushes + 5, "the MemTables rotated under the readers: {stats:?}");
    for (i, (s, seen)) in kept.iter().enumerate() {
        let again = seen_by(|t| {
            (s.get(format!("w{t}/a").as_bytes()).unwrap(), s.get(format!("w{t}/b").as_bytes()).unwrap())
        });
        assert_eq!(&again, seen, "snapshot {i} at the end");
    }
}

/// Per writer, the batch number both of its keys hold (0: neither exists); panics when the two
/// differ.
fn seen_by(mut read: impl FnMut(usize) -> (Option<Vec<u8>>, Option<Vec<u8>>)) -> Vec<u64> {
    (0..4)
        .map(|t| match read(t) {
            (None, None) => 0,
            (Some(a), Some(b)) => {
                let (sa, sb) = (seq(&a), seq(&b));
                assert_eq!(sa, sb, "writer {t}: the two keys of one batch differ");
                assert_eq!(a, b, "writer {t}: the two keys of one batch differ");
                sa
            }
            (a, b) => panic!("writer {t}: one key of a batch without the other: {a:?} {b:?}"),
        })
        .collect()
}

fn check_seen(seen: &[u64], before: &[u64], after: &[u64], round: usize) {
    for t in 0..seen.len() {
        assert!(
            before[t] <= seen[t] && seen[t] <= after[t],
            "round {round}, writer {t}: saw batch {} outside {}..={}",
            seen[t],
            before[t],
            after[t]
        );
    }
}

#[test]
fn snapshots_and_iterators_see_one_moment_while_many_threads_write() {
    writers_against_snapshots_and_iterators(2);
}

#[test]
fn snapshots_and_iterators_see_one_moment_while_many_threads_write_with_inline_flushes() {
    writers_against_snapshots_and_iterators(0);
}
