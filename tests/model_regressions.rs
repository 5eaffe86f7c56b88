//! Deterministic regressions for engine bugs found by the model-based and error-injection tests
//! (all fixed in the engine since). Each test is one scenario, named for the behaviour that must
//! hold, minimised by hand from a failing seed of `tests/model_power_cut.rs` (named in its doc).

use minivault_core::{Config, Db, Error, SyncPolicy};
use minivault_suite::fault::{Call, FaultConfig, FaultError, FaultKind, FaultStorage, ManualClock};

type TestDb = Db<FaultStorage, ManualClock, Vec<u8>>;

fn open(storage: &FaultStorage, mem: usize, sync: SyncPolicy) -> TestDb {
    TestDb::open(
        storage.clone(),
        ManualClock::new(1_000),
        [vec![0u8; mem], vec![0u8; mem]],
        Config::with_sync(sync),
    )
    .expect("open")
}

fn get(db: &mut TestDb, key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    db.get(key, &mut buf).expect("get").map(<[u8]>::to_vec)
}

/// `Manual`: a write acknowledged before a process crash, then `sync()` after the restart,
/// must survive a power cut: the user synced after it. (Model seed 887 of
/// `every_write_policy_loses_no_acknowledged_write` showed the same through an in-flight write.)
#[test]
fn sync_after_restart_makes_replayed_writes_durable() {
    let storage = FaultStorage::new(1);
    let mut db = open(&storage, 4096, SyncPolicy::Manual);
    db.put(b"a", b"1").unwrap();
    drop(db); // process crash: the record reached the OS, not the medium
    let mut db = open(&storage, 4096, SyncPolicy::Manual);
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"1"[..]), "replayed from the page cache");
    db.sync().expect("sync reports success");
    drop(db);
    storage.power_cut_lose_all();
    let mut db = open(&storage, 4096, SyncPolicy::Manual);
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"1"[..]), "sync() returned Ok but the write was lost");
}

/// `EveryN(4)` promises that a power cut loses at most the last 3 acknowledged writes. Three
/// writes before a process crash and three after it: the engine's counter restarts at 0 on open,
/// so none of the six is synced, and a power cut loses all six.
#[test]
fn every_n_counts_writes_replayed_after_restart() {
    let storage = FaultStorage::new(1);
    let mut db = open(&storage, 4096, SyncPolicy::EveryN(4));
    for k in [b"a1", b"a2", b"a3"] {
        db.put(k, b"v").unwrap();
    }
    drop(db); // process crash
    let mut db = open(&storage, 4096, SyncPolicy::EveryN(4));
    for k in [b"b1", b"b2", b"b3"] {
        db.put(k, b"v").unwrap();
    }
    drop(db);
    storage.power_cut_lose_all();
    let mut db = open(&storage, 4096, SyncPolicy::EveryN(4));
    let lost: Vec<&str> =
        ["a1", "a2", "a3"].into_iter().filter(|k| get(&mut db, k.as_bytes()).is_none()).collect();
    assert!(lost.is_empty(), "more than n-1 = 3 acknowledged writes lost: {lost:?} and b1..b3");
}

/// Model seed 355 of `every_write_policy_loses_no_acknowledged_write` (before open flushed
/// leftover WALs): a WAL whose creation never became durable is adopted by the next open, which
/// appends to it without syncing the directory; an acknowledged `EveryWrite` write then vanishes
/// with the file at the next power cut. Today's path: the first open creates the WAL and its
/// `sync_dir` fails (or the process is killed between the two); the next open adopts that WAL.
#[test]
fn acknowledged_write_survives_when_wal_creation_was_never_made_durable() {
    // A failed call does none of its work here: the WAL's directory entry stays volatile.
    let storage =
        FaultStorage::with_config(1, FaultConfig { partial_failures: false, ..FaultConfig::default() });
    storage.fail_next(Call::SyncDir, FaultKind::Io);
    let first = TestDb::open(
        storage.clone(),
        ManualClock::new(1_000),
        [vec![0u8; 4096], vec![0u8; 4096]],
        Config::with_sync(SyncPolicy::EveryWrite),
    );
    assert!(matches!(first, Err(Error::Storage(FaultError::Injected { op: Call::SyncDir, .. }))));
    drop(first);
    let mut db = open(&storage, 4096, SyncPolicy::EveryWrite);
    db.put(b"after", b"acknowledged").expect("put");
    drop(db);
    storage.power_cut_lose_all();
    let mut db = open(&storage, 4096, SyncPolicy::EveryWrite);
    assert_eq!(
        get(&mut db, b"after").as_deref(),
        Some(&b"acknowledged"[..]),
        "an EveryWrite put returned Ok and was lost: it went to a WAL whose directory entry was never synced"
    );
}

/// The rotation variant of the scenario above: the `sync_dir` after a rotation's new WAL fails,
/// the database is reopened without a power cut and written to. (Passes since open flushes
/// leftover WALs, which syncs the directory; kept as a guard.)
#[test]
fn acknowledged_write_survives_when_rotation_wal_creation_failed() {
    let storage =
        FaultStorage::with_config(1, FaultConfig { partial_failures: false, ..FaultConfig::default() });
    let mut db = open(&storage, 1024, SyncPolicy::EveryWrite);
    storage.fail_next(Call::SyncDir, FaultKind::Io);
    let mut i = 0u32;
    loop {
        match db.put(format!("key{i:03}").as_bytes(), &[7u8; 100]) {
            Ok(()) => i += 1,
            Err(Error::Storage(FaultError::Injected { op: Call::SyncDir, .. })) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(i < 100, "no rotation happened");
    }
    drop(db);
    let mut db = open(&storage, 1024, SyncPolicy::EveryWrite);
    db.put(b"after", b"acknowledged").expect("put after restart");
    drop(db);
    storage.power_cut_lose_all();
    let mut db = open(&storage, 1024, SyncPolicy::EveryWrite);
    assert_eq!(get(&mut db, b"after").as_deref(), Some(&b"acknowledged"[..]));
    for j in 0..i {
        assert!(get(&mut db, format!("key{j:03}").as_bytes()).is_some(), "key{j:03} lost");
    }
}

/// `close()` returns the outcome of its final sync. On a database poisoned by a failed write, it
/// skips the sync and still reports `Ok(())`, though `Manual` writes acknowledged before the
/// failure are not durable: a success that is not one.
#[test]
fn close_of_poisoned_database_does_not_report_success() {
    let storage = FaultStorage::new(1);
    let mut db = open(&storage, 4096, SyncPolicy::Manual);
    db.put(b"a", b"1").unwrap();
    storage.fail_next(Call::Write, FaultKind::Io);
    assert!(db.put(b"b", b"2").is_err());
    assert!(db.is_poisoned());
    let (storage, result) = db.close();
    storage.power_cut_lose_all();
    let mut db = open(&storage, 4096, SyncPolicy::Manual);
    let a = get(&mut db, b"a");
    assert!(
        result.is_err() || a.is_some(),
        "close() returned Ok(()) but the acknowledged write was not durable (a = {a:?})"
    );
}

/// Soak seed 1185874762 of `every_write_policy_loses_no_acknowledged_write` (found while testing
/// WAL preallocation; the engine bug predates it): a flush renames its table into place and the
/// `sync_dir` after the rename fails, so the table's directory entry is volatile. The database
/// is reopened without a power cut; open sees the table, removes the WAL it covers and fails at
/// its own `sync_dir`. A power cut may then keep the removal and drop the rename (directory
/// operations on unrelated names survive in any combination), and the acknowledged write in the
/// WAL is gone with neither file holding it.
#[test]
fn open_never_removes_a_wal_on_the_strength_of_a_table_that_is_not_durable() {
    let config = FaultConfig { partial_failures: false, ..FaultConfig::default() };
    let mut lost = Vec::new();
    for seed in 0..64 {
        let storage = FaultStorage::with_config(seed, config);
        let mut db = open(&storage, 4096, SyncPolicy::EveryWrite);
        db.put(b"k", b"acknowledged").expect("put");
        // The flush's directory syncs: the new WAL's (1st), then the table's after its rename.
        storage.fail_nth(Call::SyncDir, 2, FaultKind::Io);
        assert!(db.flush().is_err(), "seed {seed}: the failed sync_dir was not reported");
        drop(db);
        // Restart without a power cut; open's next directory sync fails too.
        storage.fail_next(Call::SyncDir, FaultKind::Io);
        let reopened = TestDb::open(
            storage.clone(),
            ManualClock::new(1_000),
            [vec![0u8; 4096], vec![0u8; 4096]],
            Config::with_sync(SyncPolicy::EveryWrite),
        );
        drop(reopened);
        storage.clear_faults();
        storage.power_cut(&mut minivault_suite::fault::Rng::new(seed));
        let mut db = open(&storage, 4096, SyncPolicy::EveryWrite);
        if get(&mut db, b"k").is_none() {
            lost.push(seed);
        }
    }
    assert!(lost.is_empty(), "the acknowledged write was lost after power cuts of seeds {lost:?}");
}
