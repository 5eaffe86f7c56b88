//! One `Arc<Db>` shared by writer and reader threads, checked against a model: every write
//! acknowledged before a read starts is seen by that read (or a newer write of the key is), the
//! final state is the model's, and so is the state after a reopen.
//!
//! Each key belongs to one writer thread, so its writes have one order (the writer's sequence
//! numbers, carried in the values). Per key the model keeps `acked`, the sequence number of
//! the newest acknowledged write (put or delete), and `deletes`, of the newest delete *started*
//! (a write is visible before its call returns, so a read may see one that is still in flight).
//! A reader loads `acked` before its read starts, then checks what it got:
//! - a value: its sequence number is at least `acked`;
//! - absent: the key was never acknowledged, or a delete at least as new as `acked` started.
//!
//! Readers also scan ranges: keys strictly ascending, each value checked as a get's, and every
//! key missing from the scan justified as an absent get is. Writers put, delete and write
//! batches of their own keys, and now and then flush; MemTables are small, so rotations,
//! flushes and compactions run under the readers, whose gets read the tables without the
//! engine's lock (`posix/src/view.rs`). One test per durability mode (the relaxed ones also
//! call `sync`), one with compactions inside the writes (no background threads), and one under
//! a cap whose tables are evicted ([`WhenFull::DropOldest`]): there an acknowledged key may read
//! as absent once evicted, but never as an older value.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::Rng;
use minivault::{Db, Durability, Options, WhenFull, WriteBatch};

const WRITERS: u64 = 4;
const READERS: u64 = 3;
const KEYS: u64 = 96;

fn key(k: u64) -> Vec<u8> {
    format!("key{k:03}").into_bytes()
}

/// `s<seq>:<key>` and some padding: the sequence number, and proof the value is the key's.
fn value(k: u64, seq: u64, pad: usize) -> Vec<u8> {
    let mut v = format!("s{seq}:{k}:").into_bytes();
    v.resize(v.len() + pad, b'.');
    v
}

/// The sequence number in a value of key `k` (panics on a value that is not one of `k`'s).
fn seq_of(k: u64, v: &[u8]) -> u64 {
    let s = std::str::from_utf8(v).expect("utf-8 value");
    let mut parts = s.split(':');
    let seq = parts.next().and_then(|p| p.strip_prefix('s')).and_then(|p| p.parse().ok());
    let owner = parts.next().and_then(|p| p.parse::<u64>().ok());
    assert_eq!(owner, Some(k), "key {k} holds another key's value {s:?}");
    seq.unwrap_or_else(|| panic!("key {k}: malformed value {s:?}"))
}

/// On drop (a read's end): counts the read if a flush was held at its start and still is.
struct HeldRead<'a> {
    held_before: bool,
    holding: &'a AtomicBool,
    reads_while_held: &'a AtomicU64,
}

impl Drop for HeldRead<'_> {
    fn drop(&mut self) {
        if self.held_before && self.holding.load(Ordering::SeqCst) {
            self.reads_while_held.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every thread sees of every key.
struct Model {
    acked: Vec<AtomicU64>,
    deletes: Vec<AtomicU64>,
    /// Tables are evicted: an acknowledged write may be gone.
    evicts: bool,
}

impl Model {
    /// Checks what a read that started when `acked` was `floor` returned for key `k`.
    fn check(&self, k: u64, floor: u64, got: Option<&[u8]>, what: &str) {
        match got {
            Some(v) => {
                let seq = seq_of(k, v);
                assert!(
                    seq >= floor,
                    "{what}: key {k} read s{seq}, but s{floor} was acknowledged before the read"
                );
            }
            None => {
                let deleted = self.deletes[k as usize].load(Ordering::SeqCst);
                assert!(
                    floor == 0 || deleted >= floor || self.evicts,
                    "{what}: key {k} read as absent, but s{floor} was acknowledged before the read (newest delete s{deleted})"
                );
            }
        }
    }
}

fn writer(db: &Db, model: &Model, w: u64, setup: &Setup, seed: u64) -> Vec<Option<Vec<u8>>> {
    let (ops, durability, pad) = (setup.ops, setup.options.durability, setup.pad);
    let mut rng = Rng::new(seed ^ w);
    let mine: Vec<u64> = (0..KEYS).filter(|k| k % WRITERS == w).collect();
    // The writer's own view of its keys' final values, indexed like `mine`.
    let mut last: Vec<Option<Vec<u8>>> = vec![None; mine.len()];
    for seq in 1..=ops {
        let pick = rng.below(100);
        if pick < 10 {
            // A batch of up to three of its keys, one sequence number for all.
            let mut batch = WriteBatch::new(vec![0; 4 * (pad as usize + 64)]);
            let mut touched = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(mine.len() as u64) as usize;
                let v = value(mine[i], seq, rng.below(pad) as usize);
                batch.put(&key(mine[i]), &v).unwrap();
                touched.push((i, v));
            }
            db.write_batch(&batch).unwrap();
            for (i, v) in touched {
                model.acked[mine[i] as usize].store(seq, Ordering::SeqCst);
                last[i] = Some(v);
            }
        } else if pick < 25 {
            let i = rng.below(mine.len() as u64) as usize;
            model.deletes[mine[i] as usize].store(seq, Ordering::SeqCst);
            db.delete(&key(mine[i])).unwrap();
            model.acked[mine[i] as usize].store(seq, Ordering::SeqCst);
            last[i] = None;
        } else {
            let i = rng.below(mine.len() as u64) as usize;
            let v =
                value(mine[i], seq, rng.below(if pick < 28 { (10 * pad).min(8000) } else { pad }) as usize);
            db.put(&key(mine[i]), &v).unwrap();
            model.acked[mine[i] as usize].store(seq, Ordering::SeqCst);
            last[i] = Some(v);
        }
        if durability != Durability::Always && rng.chance(1, 50) {
            db.sync().unwrap();
        }
        if setup.flushes && rng.chance(1, 200) {
            db.flush().unwrap();
        }
    }
    last
}

/// Reads (gets and scans) checked against the model until `stop`; counts in `reads_while_held`
/// those that started and ended while `holding` (a flush held in progress) was set.
fn reader(
    db: &Db,
    model: &Model,
    r: u64,
    stop: &AtomicBool,
    seed: u64,
    holding: &AtomicBool,
    reads_while_held: &AtomicU64,
) -> (u64, u64) {
    let mut rng = Rng::new(seed ^ (100 + r));
    let (mut gets, mut scans) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        let held_before = holding.load(Ordering::SeqCst);
        let _count = HeldRead { held_before, holding, reads_while_held };
        if rng.chance(1, 20) {
            let lo = rng.below(KEYS);
            let hi = (lo + 1 + rng.below(20)).min(KEYS);
            let floors: Vec<u64> = (lo..hi).map(|k| model.acked[k as usize].load(Ordering::SeqCst)).collect();
            let reverse = rng.chance(1, 2);
            let iter = db.range(key(lo)..key(hi));
            let got: Vec<(Vec<u8>, Vec<u8>)> =
                if reverse { iter.rev().collect::<Result<_, _>>() } else { iter.collect::<Result<_, _>>() }
                    .unwrap();
            let mut ks: Vec<u64> = Vec::new();
            for (k, v) in &got {
                let k: u64 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
                assert!((lo..hi).contains(&k), "scan {lo}..{hi} returned key {k}");
                model.check(k, floors[(k - lo) as usize], Some(v), "scan");
                ks.push(k);
            }
            if reverse {
                ks.reverse();
            }
            assert!(ks.windows(2).all(|w| w[0] < w[1]), "scan {lo}..{hi} out of order or repeated: {ks:?}");
            for k in (lo..hi).filter(|k| !ks.contains(k)) {
                model.check(k, floors[(k - lo) as usize], None, "scan");
            }
            scans += 1;
        } else {
            let k = rng.below(KEYS);
            let floor = model.acked[k as usize].load(Ordering::SeqCst);
            let got = db.get(&key(k)).unwrap();
            model.check(k, floor, got.as_deref(), "get");
            gets += 1;
        }
    }
    (gets, scans)
}

/// One run: the handle's options, the writes per writer, the padding of most values (one put
/// in 25 pads ten times more).
struct Setup {
    options: Options,
    ops: u64,
    pad: u64,
    /// Writers also call `flush` now and then.
    flushes: bool,
    /// Every background flush is held this long before it writes its table (the frozen MemTable
    /// answering the readers meanwhile), and reads made while one is held are counted: some must be.
    flush_hold: Option<Duration>,
}

impl Setup {
    /// Small MemTables: rotations, flushes and compactions while readers read.
    fn new(durability: Durability, ops: u64) -> Setup {
        let options = Options { memtable_bytes: 16 << 10, durability, ..Options::default() };
        Setup { options, ops, pad: 60, flushes: false, flush_hold: None }
    }

    fn evicts(&self) -> bool {
        self.options.max_bytes.is_some()
    }
}

fn run(setup: Setup, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (options, durability) = (setup.options, setup.options.durability);
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let holding = Arc::new(AtomicBool::new(false));
    let reads_while_held = Arc::new(AtomicU64::new(0));
    if let Some(hold) = setup.flush_hold {
        let holding = Arc::clone(&holding);
        db.set_flush_hook(Some(Arc::new(move || {
            holding.store(true, Ordering::SeqCst);
            thread::sleep(hold);
            holding.store(false, Ordering::SeqCst);
            Ok(())
        })));
    }
    let model = Arc::new(Model {
        acked: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        deletes: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        evicts: setup.evicts(),
    });
    let setup = Arc::new(setup);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (db, model, stop) = (db.clone(), model.clone(), stop.clone());
            let (holding, reads_while_held) = (holding.clone(), reads_while_held.clone());
            thread::spawn(move || reader(&db, &model, r, &stop, seed, &holding, &reads_while_held))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, model, setup) = (db.clone(), model.clone(), setup.clone());
            thread::spawn(move || writer(&db, &model, w, &setup, seed))
        })
        .collect();
    let finals: Vec<Vec<Option<Vec<u8>>>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    let (mut gets, mut scans) = (0, 0);
    for r in readers {
        let (g, s) = r.join().unwrap();
        gets += g;
        scans += s;
    }
    let want = |k: u64| -> Option<Vec<u8>> {
        let w = k % WRITERS;
        let i = (0..k).filter(|j| j % WRITERS == w).count();
        finals[w as usize][i].clone()
    };
    let evicts = setup.evicts();
    let check_all = |db: &Db, when: &str| {
        for k in 0..KEYS {
            let got = db.get(&key(k)).unwrap();
            if !(evicts && got.is_none()) {
                assert_eq!(got, want(k), "{when}: key {k}");
            }
        }
        let listed: Vec<Vec<u8>> = db.keys::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
        let expected: Vec<Vec<u8>> = (0..KEYS).filter(|k| want(*k).is_some()).map(key).collect();
        if evicts {
            assert!(listed.iter().all(|k| expected.contains(k)), "{when}: the keys a scan lists");
        } else {
            assert_eq!(listed, expected, "{when}: the keys a scan lists");
        }
    };
    check_all(&db, "final state");
    // No install from here on (the threads' nudges would add one between the two counts).
    db.hold_background_installs(true);
    let stats = db.stats();
    let (syncs, acked) = db.group_commit_counts();
    eprintln!(
        "{durability:?}: {} writes by {WRITERS} threads, {gets} gets and {scans} scans by {READERS}; \
         {} flushes, {} compactions, {} tables evicted; group commit: {syncs} syncs for {acked} durable acknowledgements",
        WRITERS * setup.ops,
        stats.flushes,
        stats.compactions,
        stats.evicted_tables,
    );
    assert!(stats.flushes > 0, "the MemTables must have rotated under the readers");
    assert!(stats.compactions > 0, "{stats:?}");
    assert_eq!(stats.evicted_tables > 0, evicts, "{stats:?}");
    let bg = db.background_stats();
    eprintln!("{durability:?}: {bg:?}");
    if options.background_threads > 0 {
        // Compactions ran on the background threads, beside the readers and writers.
        assert!(bg.installed > 0 && bg.installed == stats.compactions, "{bg:?}, {stats:?}");
        // Flushes ran on the flush thread.
        assert!(bg.flushes > 0, "{bg:?}");
    }
    if setup.flush_hold.is_some() {
        let held = reads_while_held.load(Ordering::SeqCst);
        eprintln!("{durability:?}: {held} reads while a flush was held");
        assert!(held > 0, "no read ran while a flush was in progress");
    }
    let db = Arc::into_inner(db).expect("every thread is done");
    db.close().unwrap();
    let db = Db::open_with(dir.path(), options).unwrap();
    check_all(&db, "after reopen");
}

#[test]
fn many_threads_against_a_model_with_every_write_durable() {
    run(Setup::new(Durability::Always, 600), 0x5a1e_0001);
}

#[test]
fn many_threads_against_a_model_syncing_every_8_writes() {
    run(Setup::new(Durability::EveryN(8), 1500), 0x5a1e_0002);
}

#[test]
fn many_threads_against_a_model_syncing_manually() {
    let mut setup = Setup::new(Durability::Manual, 1500);
    setup.flushes = true;
    run(setup, 0x5a1e_0003);
}

#[test]
fn many_threads_against_a_model_while_each_flush_is_held_in_progress() {
    let mut setup = Setup::new(Durability::EveryN(8), 1500);
    setup.flush_hold = Some(Duration::from_millis(3));
    run(setup, 0x5a1e_0006);
}

#[test]
fn many_threads_against_a_model_with_compactions_inside_the_writes() {
    let mut setup = Setup::new(Durability::Manual, 1500);
    setup.options.background_threads = 0;
    setup.flushes = true;
    run(setup, 0x5a1e_0004);
}

#[test]
fn many_threads_against_a_model_while_tables_are_evicted() {
    let mut setup = Setup::new(Durability::Manual, 1500);
    // Values of about 2 KiB: more live data than the cap (the least for these MemTables) holds.
    setup.pad = 4000;
    setup.options.max_bytes = Some(minivault_core::space::min_max_bytes(setup.options.memtable_bytes));
    setup.options.when_full = WhenFull::DropOldest;
    setup.flushes = true;
    run(setup, 0x5a1e_0005);
}

#[test]
fn the_handle_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Db>();
    shared::<Arc<Db>>();
}
