//! Group commit on the POSIX handle, made deterministic with the test hook that stands in for
//! the WAL's `fdatasync` (`Db::set_wal_sync_hook`): the hook holds a sync "in progress" until
//! the test lets it go, so each test arranges exactly who waits for what. No timing is
//! asserted: a channel wait that gives up after a minute only turns a deadlock into a failure.
//!
//! - A get (of a key written long ago, and of the key whose write is being synced) and a
//!   relaxed-mode put complete while a durable write's sync is in progress: the engine's lock
//!   is not held across `fdatasync`. Fails when the leader syncs under the lock.
//! - Writers that arrive while a sync runs share the next one: four durable writes, two syncs.
//! - A failed sync fails every writer it was to cover (and those waiting behind it), none gets
//!   `Ok`, the database is poisoned, reads go on.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use minivault::{Db, Durability, EngineError, Error, Options};

/// Long enough that only a deadlock reaches it.
const STUCK: Duration = Duration::from_secs(60);

/// A sync hook that reports each sync's start on `started`, then waits for a go (`Ok` or the
/// error to fail with) on the returned sender.
fn gate(db: &Db) -> (Receiver<()>, Sender<io::Result<()>>) {
    let (started_tx, started) = channel();
    let (go, go_rx) = channel::<io::Result<()>>();
    let started_tx = Mutex::new(started_tx);
    let go_rx = Mutex::new(go_rx);
    db.set_wal_sync_hook(Some(Arc::new(move || {
        started_tx.lock().unwrap().send(()).unwrap();
        go_rx.lock().unwrap().recv_timeout(STUCK).expect("the test never let the sync go")
    })));
    (started, go)
}

fn open(dir: &std::path::Path) -> Arc<Db> {
    let options = Options { durability: Durability::Always, ..Options::default() };
    Arc::new(Db::open_with(dir, options).unwrap())
}

/// Runs `f` on a thread and returns its result, or fails if it does not finish (blocked).
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(STUCK).unwrap_or_else(|_| panic!("{what} waited for the sync in progress"))
}

/// Waits until the active MemTable holds `n` keys: the writers have appended their records.
fn wait_for_keys(db: &Db, n: usize) {
    while db.stats().memtable_keys < n {
        thread::yield_now();
    }
}

#[test]
fn a_get_is_not_blocked_by_a_sync_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(b"old", b"1").unwrap();
    let (started, go) = gate(&db);
    let writer = {
        let db = db.clone();
        thread::spawn(move || db.put(b"new", b"2"))
    };
    started.recv_timeout(STUCK).expect("the writer's sync started");
    // The sync is in progress now, and stays so until `go`.
    let d = db.clone();
    assert_eq!(finishes("a get", move || d.get(b"old").unwrap()), Some(b"1".to_vec()));
    let d = db.clone();
    let seen = finishes("a get of the key being synced", move || d.get(b"new").unwrap());
    assert_eq!(seen, Some(b"2".to_vec()), "a write is visible once applied, before its sync ends");
    let d = db.clone();
    let stats = finishes("stats", move || d.stats());
    assert_eq!(stats.memtable_keys, 2);
    let d = db.clone();
    let scanned = finishes("a scan", move || d.keys::<&[u8], _>(..).count());
    assert_eq!(scanned, 2);
    assert!(!writer.is_finished(), "the durable write returned before its sync ended");
    go.send(Ok(())).unwrap();
    writer.join().unwrap().unwrap();
    db.set_wal_sync_hook(None);
}

#[test]
fn writers_arriving_during_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (started, go) = gate(&db);
    let first = {
        let db = db.clone();
        thread::spawn(move || db.put(b"k0", b"v"))
    };
    started.recv_timeout(STUCK).unwrap();
    let rest: Vec<_> = (1..4)
        .map(|i| {
            let db = db.clone();
            thread::spawn(move || db.put(format!("k{i}").as_bytes(), b"v"))
        })
        .collect();
    wait_for_keys(&db, 4);
    go.send(Ok(())).unwrap();
    // The next leader's sync covers the three that waited.
    started.recv_timeout(STUCK).unwrap();
    go.send(Ok(())).unwrap();
    first.join().unwrap().unwrap();
    for r in rest {
        r.join().unwrap().unwrap();
    }
    assert_eq!(db.group_commit_counts(), (2, 4), "two syncs for four durable writes");
    db.set_wal_sync_hook(None);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    for i in 0..4 {
        assert_eq!(db.get(format!("k{i}").as_bytes()).unwrap(), Some(b"v".to_vec()));
    }
}

#[test]
fn a_failed_sync_fails_every_writer_it_covers_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(b"before", b"1").unwrap();
    let syncs_before = db.group_commit_counts().0;
    let (started, go) = gate(&db);
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            thread::spawn(move || db.put(format!("k{i}").as_bytes(), b"v"))
        })
        .collect();
    started.recv_timeout(STUCK).unwrap();
    wait_for_keys(&db, 5);
    go.send(Err(io::Error::from_raw_os_error(libc::EIO))).unwrap();
    for w in writers {
        match w.join().unwrap() {
            Err(Error::Engine(EngineError::Storage(e))) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            other => panic!("a writer of the failed group got {other:?}"),
        }
    }
    assert!(db.is_poisoned());
    assert!(matches!(db.put(b"after", b"x"), Err(Error::Engine(EngineError::Poisoned))));
    assert!(matches!(db.sync(), Err(Error::Engine(EngineError::Poisoned))));
    assert_eq!(db.get(b"before").unwrap(), Some(b"1".to_vec()), "reads go on");
    assert_eq!(db.group_commit_counts().0, syncs_before + 1, "one sync, not retried");
}

#[test]
fn every_n_writes_arriving_during_its_sync_are_not_due_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::EveryN(4), ..Options::default() };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let (started, go) = gate(&db);
    for i in 0..3 {
        db.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    // The fourth write is due: it waits for a sync, held in progress.
    let fourth = {
        let db = db.clone();
        thread::spawn(move || db.put(b"k3", b"v"))
    };
    started.recv_timeout(STUCK).unwrap();
    // Three more writes meanwhile: fewer than 4 since the sync asked for, so none waits (before,
    // each found 4 or more unsynced and asked for a sync of its own, after this one).
    let db2 = db.clone();
    finishes("a write arriving during a due sync", move || {
        for i in 4..7 {
            db2.put(format!("k{i}").as_bytes(), b"v").unwrap();
        }
    });
    go.send(Ok(())).unwrap();
    fourth.join().unwrap().unwrap();
    assert_eq!(db.group_commit_counts().0, 1, "one sync for the seven writes");
    // The eighth write since the last sync asked for is due again.
    let db2 = db.clone();
    let eighth = thread::spawn(move || db2.put(b"k7", b"v"));
    started.recv_timeout(STUCK).expect("the eighth write asks for a sync");
    go.send(Ok(())).unwrap();
    eighth.join().unwrap().unwrap();
    db.set_wal_sync_hook(None);
}
