//! Gets that read the SSTables without the engine's lock (`posix/src/view.rs`): a get held
//! between taking its view of the tables and reading them still reads tables a compaction
//! removed meanwhile; its answer is never cached once a write of the key came in between; a
//! damaged table read this way is a clear error; writes and flushes go on while a get is held.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use minivault::{Corruption, Db, EngineError, Error, Options};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// Makes the next get that reads the tables stop after taking its view: returns a barrier
/// that the held get and the test both pass once when it is held, and again to let it go.
fn hold_next_get(db: &Db) -> Arc<Barrier> {
    let barrier = Arc::new(Barrier::new(2));
    let armed = Arc::new(AtomicBool::new(true));
    let b = Arc::clone(&barrier);
    db.set_get_hook(Some(Arc::new(move || {
        if armed.swap(false, Ordering::SeqCst) {
            b.wait(); // held
            b.wait(); // released
        }
    })));
    barrier
}

fn sst_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sst"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_stale_value_read_during_a_write_of_its_key_is_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap(); // "old" is in a table: a get of k reads the tables
    let held = hold_next_get(&db);
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || db.get(b"k").unwrap())
    };
    held.wait(); // the reader has its view (k = "old") and no lock
    db.put(b"k", b"new").unwrap();
    held.wait();
    // Concurrent with the put: either value is a right answer for this get.
    let got = reader.join().unwrap();
    assert!(got.as_deref() == Some(&b"old"[..]) || got.as_deref() == Some(&b"new"[..]), "{got:?}");
    // Started after the put returned: the new value, whatever the held get left in the cache.
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
    db.flush().unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_stale_value_read_during_a_batch_or_a_range_delete_is_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    db.put(b"a", b"old").unwrap();
    db.put(b"b", b"old").unwrap();
    db.flush().unwrap();
    // A batch of the key.
    let held = hold_next_get(&db);
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || db.get(b"a").unwrap())
    };
    held.wait();
    let mut batch = minivault::WriteBatch::new(vec![0; 256]);
    batch.put(b"a", b"new").unwrap();
    db.write_batch(&batch).unwrap();
    held.wait();
    reader.join().unwrap();
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"new"[..]));
    // A range delete over the key.
    let held = hold_next_get(&db);
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || db.get(b"b").unwrap())
    };
    held.wait();
    db.delete_range(b"b", b"c").unwrap();
    held.wait();
    reader.join().unwrap();
    assert_eq!(db.get(b"b").unwrap(), None);
}

#[test]
fn a_held_get_reads_tables_a_compaction_removed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    // Inline compactions: the eighth table of a tier merges the tier inside the flush.
    let options = Options { memtable_bytes: 16 << 10, background_threads: 0, ..Options::default() };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    for t in 0..7u32 {
        for i in 0..20 {
            db.put(&key(t * 20 + i), format!("v{t}/{i}").as_bytes()).unwrap();
        }
        // Every table spans the same keys: tables that overlap nothing are kept, not merged.
        db.put(b"~", b"edge").unwrap();
        db.flush().unwrap();
    }
    assert_eq!(db.tables().len(), 7);
    let before = sst_names(dir.path());
    let held = hold_next_get(&db);
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || (db.get(&key(3)).unwrap(), db.get(&key(61)).unwrap()))
    };
    held.wait();
    for i in 0..20 {
        db.put(&key(7 * 20 + i), b"last").unwrap();
    }
    db.put(b"~", b"edge").unwrap();
    db.flush().unwrap(); // the eighth table: the tier is merged, the inputs' files removed
    assert_eq!(db.stats().compactions, 1, "{:?}", db.tables());
    let after = sst_names(dir.path());
    assert!(before.iter().any(|n| !after.contains(n)), "no input was removed: {before:?} -> {after:?}");
    held.wait();
    let (first, second) = reader.join().unwrap();
    assert_eq!(first.as_deref(), Some(&b"v0/3"[..]), "read through the removed files");
    assert_eq!(second.as_deref(), Some(&b"v3/1"[..]), "read through the merged table's view");
    assert_eq!(db.get(&key(3)).unwrap().as_deref(), Some(&b"v0/3"[..]));
}

#[test]
fn writes_and_flushes_go_on_while_a_get_reads_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    db.put(b"k", b"v").unwrap();
    db.flush().unwrap();
    let held = hold_next_get(&db);
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || db.get(b"k").unwrap())
    };
    held.wait();
    // The held get has no lock of the Db's: a write, a flush and other gets finish.
    let (tx, rx) = mpsc::channel();
    let writer = {
        let db = Arc::clone(&db);
        thread::spawn(move || {
            db.put(b"other", b"x").unwrap();
            db.flush().unwrap();
            tx.send(db.get(b"other").unwrap()).unwrap();
        })
    };
    let got = rx.recv_timeout(Duration::from_secs(30)).expect("a write waited for a held get");
    assert_eq!(got.as_deref(), Some(&b"x"[..]));
    writer.join().unwrap();
    held.wait();
    assert_eq!(reader.join().unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_damaged_table_read_outside_the_engine_lock_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(b"older", b"fine").unwrap();
    db.flush().unwrap();
    db.put(b"damaged", &[b'v'; 3000]).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let newest = sst_names(dir.path()).pop().unwrap();
    let path = dir.path().join(&newest);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0xFF; // inside the record's value
    fs::write(&path, bytes).unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (db, errors) = (Arc::clone(&db), Arc::clone(&errors));
            thread::spawn(move || {
                for _ in 0..50 {
                    match db.get(b"damaged") {
                        Err(Error::Engine(EngineError::Corrupted {
                            file,
                            kind: Corruption::ChecksumMismatch { .. },
                            ..
                        })) => errors.lock().unwrap().push(file.as_str().to_owned()),
                        other => panic!("expected a checksum mismatch, got {other:?}"),
                    }
                    // The older table still answers for its own key.
                    assert_eq!(db.get(b"older").unwrap().as_deref(), Some(&b"fine"[..]));
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 200);
    assert!(errors.iter().all(|f| *f == newest), "{errors:?} should all name {newest}");
    assert_eq!(db.row_cache_stats().rows, 1, "only the good row is cached");
}
