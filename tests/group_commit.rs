//! Group commit on the POSIX handle, made deterministic with the test hook that stands in for
//! the WAL's `fdatasync` (`Db::set_wal_sync_hook`): the hook holds a sync "in progress" until
//! the test lets it go, so each test arranges exactly who waits for what. No timing is
//! asserted: a channel wait that gives up after a minute only turns a deadlock into a failure.
//!
//! - A get (of a key written long ago, and of the key whose write is being synced) and a
//!   relaxed-mode put complete while a durable write's sync is in progress: the engine's lock
//!   is not held across `fdatasync`. Fails when the leader syncs under the lock.
//! - Writers that arrive while a sync runs share the next WAL record and the next sync (the
//!   write group): four durable writes, two records, two syncs.
//! - A group's writes apply in the order they arrived, as if each had been written alone
//!   (puts, range deletes, batches, TTLs), before and after a reopen.
//! - A group the engine refuses as one batch is written write by write: each gets its own
//!   answer, and the valid ones still share one sync.
//! - A full database (`RefuseWrites`) refuses a group with a put in it: its delete is then
//!   written alone and taken, its put refused, as each would have been alone.
//! - A group whose leader panics in its sync: the leader's thread panics, the group's other
//!   writer gets `Error::WriteAbandoned`, and later writes and syncs go on (neither the write
//!   group nor the group commit waits for the panicked leader).
//! - A failed sync fails every writer of its group, none gets `Ok`, the database is poisoned,
//!   reads go on.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use minivault::{Db, Durability, EngineError, Error, Options, Ttl, WriteBatch};

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

/// One write call, run on a thread of its own.
type Write = Box<dyn FnOnce(&Db) -> Result<(), Error> + Send>;

/// Waits until `n` writes are queued in the write group (while a leader's sync is held).
fn wait_for_queued(db: &Db, n: usize) {
    let deadline = std::time::Instant::now() + STUCK;
    while db.write_group_counts().queued < n {
        assert!(std::time::Instant::now() < deadline, "{n} writes never queued in the write group");
        thread::yield_now();
    }
}

/// Starts `write` on a thread of its own once the writes started before it are queued: the
/// group then holds them in the order they were started.
fn queue_in_order(db: &Arc<Db>, writes: Vec<Write>) -> Vec<thread::JoinHandle<Result<(), Error>>> {
    let before = db.write_group_counts().queued;
    writes
        .into_iter()
        .enumerate()
        .map(|(i, write)| {
            let d = db.clone();
            let handle = thread::spawn(move || write(&d));
            wait_for_queued(db, before + i + 1);
            handle
        })
        .collect()
}

/// Starts `write` (durable) on a thread and returns once its group's sync is held in progress
/// (by [`gate`]): the writes started from then on queue for the next group.
fn hold_a_group(
    db: &Arc<Db>,
    started: &Receiver<()>,
    write: impl FnOnce(&Db) -> Result<(), Error> + Send + 'static,
) -> thread::JoinHandle<Result<(), Error>> {
    let d = db.clone();
    let handle = thread::spawn(move || write(&d));
    started.recv_timeout(STUCK).expect("the held group's sync started");
    handle
}

/// Lets the held sync go, waits for the next group's sync and lets it go too.
fn run_the_next_group(started: &Receiver<()>, go: &Sender<io::Result<()>>) {
    go.send(Ok(())).unwrap();
    started.recv_timeout(STUCK).expect("the next group's sync started");
    go.send(Ok(())).unwrap();
}

#[test]
fn writers_arriving_during_a_sync_share_the_next_wal_record_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (started, go) = gate(&db);
    let first = hold_a_group(&db, &started, move |db| db.put(b"k0", b"v"));
    let rest: Vec<_> = (1..4)
        .map(|i| {
            let db = db.clone();
            thread::spawn(move || db.put(format!("k{i}").as_bytes(), b"v"))
        })
        .collect();
    // They queue while the first one's group syncs; none is applied yet.
    wait_for_queued(&db, 3);
    assert_eq!(db.write_group_counts().records, 1, "only the first write reached the WAL");
    go.send(Ok(())).unwrap();
    // The next leader writes the three as one WAL record, and one sync covers them.
    started.recv_timeout(STUCK).unwrap();
    assert_eq!(db.write_group_counts().records, 2, "the three in one record, before their sync");
    go.send(Ok(())).unwrap();
    first.join().unwrap().unwrap();
    for r in rest {
        r.join().unwrap().unwrap();
    }
    let counts = db.write_group_counts();
    assert_eq!((counts.writes, counts.groups, counts.records), (4, 2, 2), "{counts:?}");
    assert_eq!(db.group_commit_counts(), (2, 4), "two syncs for four durable writes");
    db.set_wal_sync_hook(None);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    for i in 0..4 {
        assert_eq!(db.get(format!("k{i}").as_bytes()).unwrap(), Some(b"v".to_vec()));
    }
}

#[test]
fn a_groups_writes_apply_in_the_order_they_arrived_as_if_written_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (started, go) = gate(&db);
    let first = hold_a_group(&db, &started, move |db| db.put(b"x", b"blocker"));
    let mut batch = WriteBatch::new(vec![0; 256]);
    batch.put(b"b1", b"in a batch").unwrap();
    batch.delete(b"a2").unwrap();
    let writes: Vec<Write> = vec![
        Box::new(|db| db.put(b"a1", b"1")),
        Box::new(|db| db.put(b"a3", b"3")),
        Box::new(|db| db.delete_range(b"a1", b"a3")), // a1 goes, a3 stays
        Box::new(|db| db.put(b"a2", b"2")),
        Box::new(move |db| db.write_batch(&batch)), // b1 comes, a2 goes
        Box::new(|db| db.put_with_ttl(b"t", b"ttl", Duration::from_secs(3600))),
        Box::new(|db| db.delete(b"a3")),
        Box::new(|db| db.put(b"a2", b"again")),
    ];
    let n = writes.len() as u64;
    let handles = queue_in_order(&db, writes);
    run_the_next_group(&started, &go);
    first.join().unwrap().unwrap();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let counts = db.write_group_counts();
    assert_eq!((counts.writes, counts.groups, counts.records), (1 + n, 2, 2), "{counts:?}");
    db.set_wal_sync_hook(None);
    let expect = |db: &Db, when: &str| {
        assert_eq!(db.get(b"a1").unwrap(), None, "{when}: a1 range-deleted after its put");
        assert_eq!(db.get(b"a2").unwrap(), Some(b"again".to_vec()), "{when}: the last write of a2");
        assert_eq!(db.get(b"a3").unwrap(), None, "{when}: a3 deleted");
        assert_eq!(db.get(b"b1").unwrap(), Some(b"in a batch".to_vec()), "{when}");
        assert!(
            matches!(db.ttl(b"t").unwrap(), Ttl::ExpiresIn(left) if left > Duration::from_secs(3500)),
            "{when}"
        );
        assert_eq!(db.get(b"x").unwrap(), Some(b"blocker".to_vec()), "{when}");
    };
    expect(&db, "before reopening");
    drop(db);
    expect(&Db::open(dir.path()).unwrap(), "after reopening (the group replayed from the WAL)");
}

#[test]
fn a_group_the_engine_refuses_together_is_written_one_by_one_each_with_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (started, go) = gate(&db);
    let first = hold_a_group(&db, &started, move |db| db.put(b"x", b"blocker"));
    let writes: Vec<Write> = vec![
        Box::new(|db| db.put(b"k1", b"1")),
        Box::new(|db| db.put(b"", b"an empty key")),
        Box::new(|db| db.delete_range(b"z", b"a")),
        Box::new(|db| db.put(b"k2", b"2")),
    ];
    let handles = queue_in_order(&db, writes);
    // The two valid writes, each alone: one sync covers both.
    run_the_next_group(&started, &go);
    first.join().unwrap().unwrap();
    let results: Vec<Result<(), Error>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    assert!(matches!(results[1], Err(Error::Engine(EngineError::EmptyKey))), "{results:?}");
    assert!(matches!(results[2], Err(Error::Engine(EngineError::EmptyRange))), "{results:?}");
    assert!(!db.is_poisoned());
    let counts = db.write_group_counts();
    assert_eq!((counts.writes, counts.groups, counts.records), (5, 2, 3), "{counts:?}");
    assert_eq!(db.group_commit_counts(), (2, 3), "one sync for the two valid writes of the group");
    assert_eq!(db.get(b"k1").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"k2").unwrap(), Some(b"2".to_vec()));
    db.set_wal_sync_hook(None);
}

#[test]
fn a_full_database_refuses_a_groups_put_alone_and_takes_its_delete() {
    let dir = tempfile::tempdir().unwrap();
    let memtable_bytes = 64 << 10;
    let options = Options {
        durability: Durability::Always,
        memtable_bytes,
        max_bytes: Some(minivault_core::space::min_max_bytes(memtable_bytes)),
        when_full: minivault::WhenFull::RefuseWrites,
        // No flush thread: its install of a MemTable frozen by the fill frees the old WAL's
        // bytes, and a put refused at the end of the fill could then fit (seen 1 run in 40).
        // Without it, only this test's writes change what the files take.
        background_threads: 0,
        ..Options::default()
    };
    let db = Arc::new(Db::open_with(dir.path(), options).unwrap());
    let mut n = 0u32;
    loop {
        match db.put(format!("k{n:06}").as_bytes(), &[7u8; 1024]) {
            Ok(()) => n += 1,
            Err(Error::Engine(EngineError::Full)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(n < 100_000, "the cap never refused a write");
    }
    assert_eq!(db.stats().full_refusals, 1);
    let (started, go) = gate(&db);
    let first = hold_a_group(&db, &started, move |db| db.delete(b"k000001"));
    // Together the engine refuses them (the group adds a value); alone the delete is taken.
    let writes: Vec<Write> =
        vec![Box::new(|db| db.put(b"new", &[7u8; 1024])), Box::new(|db| db.delete(b"k000000"))];
    let handles = queue_in_order(&db, writes);
    run_the_next_group(&started, &go);
    first.join().unwrap().unwrap();
    let results: Vec<Result<(), Error>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(matches!(results[0], Err(Error::Engine(EngineError::Full))), "{results:?}");
    assert!(results[1].is_ok(), "the delete, alone, is taken: {results:?}");
    assert!(!db.is_poisoned());
    // The put was refused once, though the engine refused the group before refusing it alone.
    assert_eq!(db.stats().full_refusals, 2);
    assert_eq!(db.get(b"k000000").unwrap(), None);
    assert_eq!(db.get(b"new").unwrap(), None);
    assert_eq!(db.get(format!("k{:06}", n - 1).as_bytes()).unwrap(), Some(vec![7u8; 1024]));
    db.set_wal_sync_hook(None);
}

/// A sync hook whose first sync reports its start on `started` and waits for a go (as [`gate`]),
/// and whose later ones panic.
fn gate_then_panic(db: &Db) -> (Receiver<()>, Sender<()>) {
    let (started_tx, started) = channel();
    let (go, go_rx) = channel::<()>();
    let (started_tx, go_rx) = (Mutex::new(started_tx), Mutex::new(go_rx));
    let syncs = std::sync::atomic::AtomicU32::new(0);
    db.set_wal_sync_hook(Some(Arc::new(move || {
        if syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            panic!("a sync hook that panics (on purpose)");
        }
        started_tx.lock().unwrap().send(()).unwrap();
        go_rx.lock().unwrap().recv_timeout(STUCK).expect("the test never let the sync go");
        Ok(())
    })));
    (started, go)
}

#[test]
fn a_group_whose_leader_panics_answers_its_other_writers_and_later_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (started, go) = gate_then_panic(&db);
    let first = hold_a_group(&db, &started, move |db| db.put(b"x", b"blocker"));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let db = db.clone();
            thread::spawn(move || db.put(format!("k{i}").as_bytes(), b"v"))
        })
        .collect();
    wait_for_queued(&db, 2);
    // The two form the next group; its leader's sync panics.
    go.send(()).unwrap();
    first.join().unwrap().unwrap();
    let outcomes: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
    let panicked = outcomes.iter().filter(|o| o.is_err()).count();
    let abandoned = outcomes.iter().filter(|o| matches!(o, Ok(Err(Error::WriteAbandoned)))).count();
    assert_eq!((panicked, abandoned), (1, 1), "the leader panics, the other writer is answered");
    // Neither the write group nor the group commit is left waiting for the panicked leader.
    db.set_wal_sync_hook(None);
    let d = db.clone();
    finishes("a put after the panic", move || d.put(b"after", b"1")).unwrap();
    let d = db.clone();
    finishes("a sync after the panic", move || d.sync()).unwrap();
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"after").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"x").unwrap(), Some(b"blocker".to_vec()));
}

#[test]
fn a_failed_sync_fails_every_writer_of_its_group_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(b"before", b"1").unwrap();
    let syncs_before = db.group_commit_counts().0;
    let (started, go) = gate(&db);
    let first = hold_a_group(&db, &started, move |db| db.put(b"x", b"blocker"));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            thread::spawn(move || db.put(format!("k{i}").as_bytes(), b"v"))
        })
        .collect();
    wait_for_queued(&db, 4);
    go.send(Ok(())).unwrap();
    first.join().unwrap().unwrap();
    // The group of four: its sync fails.
    started.recv_timeout(STUCK).unwrap();
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
    assert_eq!(db.group_commit_counts().0, syncs_before + 2, "one sync per group, not retried");
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
