//! Bounded space (issue 13, item 1): a cap on the database's files (`max_bytes`) and a full
//! device, with each of the two policies. Checked:
//! - `DropOldest` holds the files under the cap while ten times the cap is written, drops the
//!   oldest data first (what is left of a sequence of keys is its newest part) and counts exactly
//!   what it dropped; the POSIX handle's directory stays under the cap and its row cache forgets
//!   evicted rows;
//! - `RefuseWrites` fails writes with `Error::Full` without poisoning: reads go on, nothing
//!   acknowledged is lost across a reopen, deletes are taken and, once compaction has reclaimed
//!   their space, writes are taken again;
//! - a full device (ENOSPC from the storage, no cap) is the same `Full`, or eviction;
//! - power cuts while `DropOldest` evicts: after every reopen each key reads its last
//!   acknowledged value or nothing, never an older one, and the keys left of a sequence are its
//!   newest ones;
//! - a cap too small for the MemTables is refused at open.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use minivault::{Db as PosixDb, Durability, Options};
use minivault_core::{Config, Db, Error, Storage, SyncPolicy, WhenFull};
use minivault_suite::fault::{FaultStorage, ManualClock};

use common::{core_get, Mem, Rng};

const MEM: usize = 4096;

fn config(cap: Option<u64>, when_full: WhenFull, sync: SyncPolicy) -> Config {
    Config { max_bytes: cap, when_full, ..Config::with_sync(sync) }
}

fn open<S: Storage>(
    storage: S,
    clock: &ManualClock,
    config: Config,
) -> Result<Db<S, ManualClock, Vec<u8>>, Error<S::Error>> {
    Db::open(storage, clock.clone(), [vec![0u8; MEM], vec![0u8; MEM]], config)
}

/// An in-memory storage whose 64 files can each grow to 256 KiB: room for any table here.
fn big_mem() -> Mem {
    Mem::new(vec![0; 64 * 256 * 1024])
}

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("reading-{i:08}-{}", "x".repeat(24)).into_bytes()
}

/// The first of `0..n` present in `db`, after checking that every key from it on is present with
/// its value and every key before it absent: what is left is the newest part of the sequence.
fn newest_suffix<S: Storage>(db: &mut Db<S, ManualClock, Vec<u8>>, n: u32) -> u32 {
    let first = (0..n).find(|&i| core_get(db, &key(i)).is_some()).expect("the newest keys are kept");
    for i in first..n {
        assert_eq!(core_get(db, &key(i)), Some(value(i)), "key {i} (the oldest kept is {first})");
    }
    first
}

#[test]
fn drop_oldest_holds_the_files_under_the_cap_while_ten_times_the_cap_is_written() {
    let cap = minivault_core::space::min_max_bytes(MEM);
    let clock = ManualClock::new(1);
    let storage = big_mem();
    let mut db =
        open(storage, &clock, config(Some(cap), WhenFull::DropOldest, SyncPolicy::EveryWrite)).unwrap();
    let (mut written, mut n, mut most) = (0u64, 0u32, 0u64);
    while written < 10 * cap {
        db.put(&key(n), &value(n)).unwrap();
        written += (4 + value(n).len()) as u64;
        n += 1;
        let s = db.stats();
        assert!(
            s.file_bytes <= cap,
            "after {n} puts the files take {} bytes, over the cap of {cap}",
            s.file_bytes
        );
        most = most.max(s.file_bytes);
    }
    let s = db.stats();
    assert!(s.evicted_tables > 0 && s.evicted_bytes > 0, "{s:?}");
    assert!(!db.is_poisoned());
    let first = newest_suffix(&mut db, n);
    // Every key was written once: the entries evicted are exactly the keys gone.
    assert_eq!(s.evicted_entries, u64::from(first), "{s:?}");
    assert!(most > cap / 2, "the cap is used, not just respected: at most {most} of {cap} bytes");
    eprintln!(
        "bounded_space: {n} puts, {written} bytes into a cap of {cap}: at most {most} bytes of files, \
         {} tables evicted ({} entries), {} keys kept",
        s.evicted_tables,
        s.evicted_entries,
        n - first
    );
    // The cap holds across a reopen, and nothing the eviction kept is lost.
    let storage = common::close_core(db);
    let mut db =
        open(storage, &clock, config(Some(cap), WhenFull::DropOldest, SyncPolicy::EveryWrite)).unwrap();
    assert_eq!(newest_suffix(&mut db, n), first);
}

#[test]
fn a_smaller_cap_at_reopen_drops_the_oldest_tables_at_once() {
    let clock = ManualClock::new(1);
    let mut db = open(big_mem(), &clock, Config::default()).unwrap();
    for i in 0..3000 {
        db.put(&key(i), &value(i)).unwrap();
    }
    let before = db.stats().file_bytes;
    let storage = common::close_core(db);
    let cap = minivault_core::space::min_max_bytes(MEM);
    assert!(before > cap, "{before}");
    let mut db =
        open(storage, &clock, config(Some(cap), WhenFull::DropOldest, SyncPolicy::EveryWrite)).unwrap();
    let s = db.stats();
    assert!(s.file_bytes <= cap && s.evicted_tables > 0, "{s:?}");
    let first = newest_suffix(&mut db, 3000);
    assert_eq!(s.evicted_entries, u64::from(first));
}

#[test]
fn refuse_writes_fails_with_full_keeps_reads_and_takes_writes_again_after_deletes() {
    let cap = minivault_core::space::min_max_bytes(MEM);
    let clock = ManualClock::new(1);
    let cfg = config(Some(cap), WhenFull::RefuseWrites, SyncPolicy::EveryWrite);
    let mut db = open(big_mem(), &clock, cfg).unwrap();
    let mut n = 0;
    let refused = loop {
        match db.put(&key(n), &value(n)) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100_000, "the cap never refused a write");
    };
    assert_eq!(refused, Error::Full);
    assert!(!db.is_poisoned());
    assert_eq!(db.stats().full_refusals, 1);
    assert!(db.stats().file_bytes <= cap, "{:?}", db.stats());
    assert_eq!(db.put(&key(n), &value(n)), Err(Error::Full), "still full");
    assert_eq!(core_get(&mut db, &key(n)), None, "a refused write is not stored");
    for i in 0..n {
        assert_eq!(core_get(&mut db, &key(i)), Some(value(i)), "key {i}");
    }
    // Nothing acknowledged is lost across a reopen (which may flush the WALs and find some
    // room: fill it again).
    let storage = common::close_core(db);
    let mut db = open(storage, &clock, cfg).unwrap();
    assert_eq!(newest_suffix(&mut db, n), 0);
    while db.put(&key(n), &value(n)).is_ok() {
        n += 1;
    }
    assert_eq!(db.put(&key(n), &value(n)), Err(Error::Full));
    // Deletes are taken; a compaction that reaches the oldest table reclaims their space.
    db.delete_range(&key(0), &key(n - 10)).unwrap();
    db.delete(&key(n - 1)).unwrap();
    let mut tries = 0;
    while db.put(&key(n), &value(n)) == Err(Error::Full) {
        db.delete(&key(n - 2)).unwrap();
        db.flush().unwrap();
        tries += 1;
        assert!(tries < 200, "deletes never made room: {:?}", db.stats());
    }
    assert!(!db.is_poisoned());
    assert_eq!(core_get(&mut db, &key(n)), Some(value(n)));
    assert_eq!(core_get(&mut db, &key(n - 5)), Some(value(n - 5)));
    assert_eq!(core_get(&mut db, &key(3)), None);
}

#[test]
fn a_full_device_refuses_writes_without_poisoning_and_loses_nothing_acknowledged() {
    let storage = FaultStorage::new(7);
    storage.set_capacity(Some(40 * 1024));
    let clock = ManualClock::new(1);
    let cfg = config(None, WhenFull::RefuseWrites, SyncPolicy::EveryWrite);
    let mut db = open(storage.clone(), &clock, cfg).unwrap();
    let mut acked = 0;
    let mut refusals = 0;
    for i in 0..5000 {
        match db.put(&key(i), &value(i)) {
            Ok(()) => acked = i + 1,
            Err(Error::Full) => {
                refusals += 1;
                assert!(!db.is_poisoned(), "Full poisoned the database");
                if refusals == 20 {
                    break;
                }
            }
            Err(e) => panic!("put {i}: {e:?}"),
        }
    }
    assert!(refusals == 20, "the device never filled: {:?}", db.stats());
    for i in 0..acked {
        assert_eq!(core_get(&mut db, &key(i)), Some(value(i)), "key {i}");
    }
    drop(db);
    // After a power cut, too: every acknowledged write is there.
    storage.power_cut(&mut Rng::new(3));
    let mut db = open(storage.clone(), &clock, cfg).unwrap();
    for i in 0..acked {
        assert_eq!(core_get(&mut db, &key(i)), Some(value(i)), "key {i} after a power cut");
    }
}

#[test]
fn a_full_device_with_drop_oldest_evicts_and_keeps_writing() {
    let storage = FaultStorage::new(11);
    let capacity = 48 * 1024;
    storage.set_capacity(Some(capacity));
    let clock = ManualClock::new(1);
    let cfg = config(None, WhenFull::DropOldest, SyncPolicy::EveryWrite);
    let mut db = open(storage.clone(), &clock, cfg).unwrap();
    let n = 10 * capacity as u32 / 40;
    for i in 0..n {
        db.put(&key(i), &value(i)).unwrap_or_else(|e| panic!("put {i}: {e:?} {:?}", db.stats()));
    }
    let s = db.stats();
    assert!(s.evicted_tables > 0 && !db.is_poisoned(), "{s:?}");
    let first = newest_suffix(&mut db, n);
    assert_eq!(s.evicted_entries, u64::from(first));
}

/// A compaction the table limit does not force, which fails for want of space, is skipped:
/// `DropOldest` evicts only when it must (a flush that would pass the table limit), never to
/// make room for a merge that can wait.
#[test]
fn drop_oldest_skips_a_compaction_that_does_not_fit_when_the_table_limit_is_far() {
    // 64 files of 12 KiB: a flushed table fits, a merge of eight of them does not.
    let storage = Mem::new(vec![0; 64 * 12 * 1024]);
    let clock = ManualClock::new(1);
    let mut db = open(storage, &clock, config(None, WhenFull::DropOldest, SyncPolicy::EveryWrite)).unwrap();
    // Scattered keys: the tables overlap, so the policy merges them (sequential ones are kept).
    let key = |i: u32| common::scattered(i).to_be_bytes();
    let mut i = 0;
    while db.stats().flushes < 12 {
        db.put(&key(i), &value(i)).unwrap_or_else(|e| panic!("put {i}: {e:?} {:?}", db.stats()));
        i += 1;
    }
    let s = db.stats();
    assert!(s.compactions_skipped_for_space > 0, "the merge of eight tables was tried: {s:?}");
    assert!(s.tables + 1 < minivault_core::compaction::table_limit(db.storage()), "{s:?}");
    assert_eq!((s.evicted_tables, s.evicted_entries), (0, 0), "nothing forced an eviction: {s:?}");
    assert!(!db.is_poisoned());
    for j in 0..i {
        assert_eq!(core_get(&mut db, &key(j)), Some(value(j)), "key {j}");
    }
}

/// Power cuts at random points of a workload that evicts: sequence keys, each written once in
/// order, and a few "cursor" keys overwritten all along with an increasing tick.
#[test]
fn power_cuts_while_evicting_never_show_an_older_value_or_a_gap() {
    let cap = minivault_core::space::min_max_bytes(MEM);
    let seeds = std::env::var("MINIVAULT_SOAK").map_or(60, |_| 1000);
    let (mut cuts, mut evicted) = (0, 0);
    for seed in 1..=seeds {
        let mut rng = Rng::new(seed);
        let storage = FaultStorage::new(seed);
        let clock = ManualClock::new(1);
        let sync = if seed % 2 == 0 { SyncPolicy::EveryWrite } else { SyncPolicy::EveryN(4) };
        let cfg = config(Some(cap), WhenFull::DropOldest, sync);
        let mut db = open(storage.clone(), &clock, cfg).unwrap();
        // Sequence keys 0..next written; 0..durable made durable. Cursors: latest tick written,
        // and the tick last made durable.
        let (mut next, mut durable, mut tick) = (0u32, 0u32, 0u32);
        let mut cursors: BTreeMap<u8, (u32, u32)> = BTreeMap::new();
        for _ in 0..3 {
            for _ in 0..rng.range(200, 3000) {
                if rng.chance(1, 8) {
                    let c = rng.below(3) as u8;
                    tick += 1;
                    db.put(&[b'c', c], &tick.to_be_bytes()).unwrap();
                    cursors.entry(c).or_insert((0, 0)).0 = tick;
                } else {
                    db.put(&key(next), &value(next)).unwrap();
                    next += 1;
                }
                let synced = match sync {
                    SyncPolicy::EveryWrite => true,
                    _ if rng.chance(1, 50) => db.sync().is_ok(),
                    _ => false,
                };
                if synced {
                    durable = next;
                    cursors.values_mut().for_each(|c| c.1 = c.0);
                }
                assert!(db.stats().file_bytes <= cap, "seed {seed}: {:?}", db.stats());
            }
            evicted += db.stats().evicted_tables;
            drop(db);
            storage.power_cut(&mut rng);
            cuts += 1;
            db = open(storage.clone(), &clock, cfg).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e:?}"));
            let present: Vec<u32> = (0..next).filter(|&i| core_get(&mut db, &key(i)).is_some()).collect();
            if durable > 0 {
                // The newest durable key is never evicted (the cap keeps many MemTables' worth).
                let (first, last) = (present[0], *present.last().unwrap());
                assert!(
                    last + 1 >= durable,
                    "seed {seed}: durable keys up to {durable} lost (last present {last})"
                );
                assert_eq!(present.len() as u32, last - first + 1, "seed {seed}: a gap in {first}..={last}");
                for i in first..=last {
                    assert_eq!(core_get(&mut db, &key(i)), Some(value(i)), "seed {seed}: key {i}");
                }
            }
            next = present.last().map_or(0, |&l| l + 1);
            durable = next;
            // Cursors: the durable tick or a later acknowledged one, or nothing (evicted); never older.
            for (c, (latest, floor)) in cursors.iter_mut() {
                let got = core_get(&mut db, &[b'c', *c]).map(|v| u32::from_be_bytes(v.try_into().unwrap()));
                if let Some(got) = got {
                    assert!(
                        got >= *floor && got <= *latest,
                        "seed {seed}: cursor {c} reads {got}, durable {floor}, latest {latest}"
                    );
                }
                let now = got.unwrap_or(0);
                (*latest, *floor) = (now, now);
            }
        }
    }
    eprintln!("bounded_space: {cuts} power cuts while evicting; {evicted} tables evicted before them");
    assert!(evicted > 0, "the workload never evicted");
}

#[test]
fn a_cap_too_small_for_the_memtables_is_refused_at_open() {
    let clock = ManualClock::new(1);
    let cap = minivault_core::space::min_max_bytes(MEM) - 1;
    let cfg = config(Some(cap), WhenFull::DropOldest, SyncPolicy::EveryWrite);
    match open(big_mem(), &clock, cfg) {
        Err(Error::MaxBytesTooSmall { needed, given }) => assert_eq!((needed, given), (cap + 1, cap)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let options = Options { memtable_bytes: 1 << 20, max_bytes: Some(1 << 20), ..Options::default() };
    let dir = tempfile::tempdir().unwrap();
    let err = PosixDb::open_with(dir.path().join("db"), options).unwrap_err().to_string();
    assert!(err.contains("max_bytes") && err.contains("16777216"), "{err}");
    assert!(!dir.path().join("db").exists(), "checked before anything was created");
}

/// Bytes of the files in `dir` (the lock file aside), by their lengths: those that count against
/// the cap, and the `.tmp` outputs of compactions running in the background, which are room
/// beyond it (`core/src/space.rs`, *Peaks*).
fn dir_bytes(dir: &Path) -> (u64, u64) {
    let mut bytes = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().map_or(0, |m| m.len());
        if name.ends_with(".tmp") {
            bytes.1 += len;
        } else if !name.contains("LOCK") {
            bytes.0 += len;
        }
    }
    bytes
}

#[test]
fn posix_drop_oldest_keeps_the_directory_under_the_cap_and_forgets_evicted_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let memtable = 64 * 1024;
    let cap = 16 * memtable as u64;
    let options = Options {
        memtable_bytes: memtable,
        durability: Durability::Manual,
        max_bytes: Some(cap),
        when_full: WhenFull::DropOldest,
        ..Options::default()
    };
    let db = PosixDb::open_with(&dir, options).unwrap();
    let value = vec![b'v'; 100];
    db.put(b"0000000000", &value).unwrap();
    assert_eq!(db.get(b"0000000000").unwrap().as_deref(), Some(&value[..]), "now in the row cache");
    let (mut most, mut most_tmp) = (0, 0);
    let n = 10 * cap / 110;
    for i in 1..n {
        db.put(format!("{i:010}").as_bytes(), &value).unwrap();
        if i % 200 == 0 {
            let (bytes, tmp) = dir_bytes(&dir);
            assert!(bytes <= cap, "{bytes} bytes in the directory after {i} puts, cap {cap}");
            // Running merges' outputs: at most what each merges, an eighth of the cap, times the
            // merges that run at once (one per background thread), and a flush's table.
            let room = options.background_threads as u64 * (cap / 8) + memtable as u64;
            assert!(tmp <= room, "{tmp} bytes of .tmp after {i} puts, cap {cap}, room {room}");
            most = most.max(bytes);
            most_tmp = most_tmp.max(tmp);
        }
    }
    let s = db.stats();
    assert!(s.evicted_tables > 0, "{s:?}");
    assert_eq!(db.get(b"0000000000").unwrap(), None, "an evicted row must not be served from the row cache");
    let last = format!("{:010}", n - 1);
    assert_eq!(db.get(last.as_bytes()).unwrap().as_deref(), Some(&value[..]));
    eprintln!(
        "bounded_space (posix): {} bytes written into a cap of {cap}: at most {most} bytes in the directory, and {most_tmp} of background merge output",
        n * 110
    );
    db.close().unwrap();
}
