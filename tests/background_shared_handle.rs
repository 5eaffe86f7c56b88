//! Background compaction on a shared handle: a write held back at `stop_tables` waits without
//! the engine's lock (gets, scans, stats and other calls go on meanwhile), many writer threads
//! pass the thresholds together, and whatever was acknowledged is there after reopen.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, Options};

/// Longer than any call takes when it is not blocked behind a stalled write.
const STUCK: Duration = Duration::from_secs(10);

/// Key `i`: scattered, so that the tables overlap and the policy merges them.
fn key(i: u64) -> Vec<u8> {
    format!("k{:08x}", common::scattered(i as u32)).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("v{i}-{}", "x".repeat(200)).into_bytes()
}

/// Runs `f` on a thread and returns its result, or fails if it does not finish (blocked).
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(STUCK).unwrap_or_else(|_| panic!("{what} waited behind a write held at stop_tables"))
}

#[test]
fn a_write_held_at_stop_tables_does_not_hold_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_bytes: 16 << 10,
        durability: Durability::Manual,
        background_threads: 1,
        slowdown_tables: 2,
        stop_tables: 3,
        ..Options::default()
    };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    // The worker's merge stays in progress: the tables cannot fall below stop_tables.
    db.pause_background(true);
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, acked) = (Arc::clone(&db), Arc::clone(&acked));
        thread::spawn(move || {
            for i in 0..2_000 {
                db.put(&key(i), &value(i)).unwrap();
                acked.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    // Wait until the writer is held: tables at the stop threshold, a merge running, and no
    // acknowledgement for a while. Every call here must get the engine's lock meanwhile.
    let started = Instant::now();
    let held_at = loop {
        let before = acked.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
        let db2 = Arc::clone(&db);
        let stats = finishes("stats", move || db2.stats());
        let after = acked.load(Ordering::SeqCst);
        if stats.tables >= options.stop_tables
            && stats.compactions_running > 0
            && after == before
            && after > 0
        {
            break after;
        }
        assert!(started.elapsed() < STUCK, "the writer was never held: {stats:?}, {after} acknowledged");
        assert!(after < 2_000, "all writes went through with the merge paused: {stats:?}");
    };
    let db2 = Arc::clone(&db);
    let first = finishes("a get", move || db2.get(&key(0)).unwrap());
    assert_eq!(first, Some(value(0)));
    let db2 = Arc::clone(&db);
    let last = finishes("a get", move || db2.get(&key(held_at - 1)).unwrap());
    assert_eq!(last, Some(value(held_at - 1)));
    let db2 = Arc::clone(&db);
    let counted = finishes("a scan", move || db2.count::<&[u8], _>(..).unwrap());
    assert_eq!(counted, held_at, "a scan sees every acknowledged write and nothing else");
    let db2 = Arc::clone(&db);
    finishes("background_stats", move || db2.background_stats());
    assert_eq!(acked.load(Ordering::SeqCst), held_at, "the writer was still held");

    db.pause_background(false);
    writer.join().unwrap();
    let bg = db.background_stats();
    eprintln!("held after {held_at} writes; {bg:?}");
    assert!(bg.stopped_writes > 0 && bg.installed > 0, "{bg:?}");
    for i in 0..2_000 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
    }
    Arc::into_inner(db).expect("the writer is done").close().unwrap();
    let db = Db::open_with(dir.path(), options).unwrap();
    assert_eq!(db.count::<&[u8], _>(..).unwrap(), 2_000);
}

#[test]
fn many_writers_pass_the_thresholds_and_lose_nothing() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_bytes: 16 << 10,
        durability: Durability::EveryN(16),
        background_threads: 2,
        slowdown_tables: 4,
        stop_tables: 6,
        ..Options::default()
    };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let most_tables = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (db, done, most) = (Arc::clone(&db), Arc::clone(&done), Arc::clone(&most_tables));
        thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(db.stats().tables as u64, Ordering::SeqCst);
                // Writer 0's first key is written first and never again.
                if let Some(v) = db.get(&key(0)).unwrap() {
                    assert_eq!(v, value(0));
                }
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = Arc::clone(&db);
            thread::spawn(move || {
                for j in 0..PER_WRITER {
                    let i = j * WRITERS + w;
                    db.put(&key(i), &value(i)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reads = watcher.join().unwrap();
    let bg = db.background_stats();
    let most = most_tables.load(Ordering::SeqCst);
    eprintln!("{reads} reads meanwhile; at most {most} tables; {bg:?}; {:?}", db.stats());
    assert!(bg.installed > 0, "compactions ran in the background: {bg:?}");
    // A write that goes ahead at stop_tables (nothing could be planned) may add one table.
    assert!(most <= options.stop_tables as u64 + 1, "{most} tables");
    let model: BTreeMap<Vec<u8>, Vec<u8>> = (0..WRITERS * PER_WRITER).map(|i| (key(i), value(i))).collect();
    let check = |db: &Db, when: &str| {
        let all: BTreeMap<Vec<u8>, Vec<u8>> = db.range::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
        assert!(all == model, "{when}: {} keys, {} expected", all.len(), model.len());
    };
    check(&db, "before close");
    Arc::into_inner(db).expect("every thread is done").close().unwrap();
    let db = Db::open_with(dir.path(), options).unwrap();
    check(&db, "after reopen");
}
