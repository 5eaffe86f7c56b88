//! A failed sync is never retried into a success.
//!
//! After `fsync` fails, the kernel may already have dropped the dirty pages ("fsyncgate"), so a
//! second `fsync` can return `Ok` for data that never reached the device. These scenarios fail
//! the WAL's, a table's or the directory's sync, on a [`FaultStorage`] that models exactly that
//! page loss, and check that every later write, sync and flush is refused with
//! `Error::Poisoned`, that reads still answer, and that after a power cut and reopen every
//! acknowledged write is there and the failed one is all there or not at all.

use minivault_core::{Config, Db, Error, SyncPolicy};
use minivault_suite::fault::{Call, FaultConfig, FaultError, FaultKind, FaultStorage, ManualClock, Rng};

type TestDb = Db<FaultStorage, ManualClock, Vec<u8>>;

fn device(seed: u64) -> FaultStorage {
    FaultStorage::with_config(seed, FaultConfig { failed_sync_loses_pages: true, ..FaultConfig::default() })
}

fn open(storage: &FaultStorage, sync: SyncPolicy) -> TestDb {
    TestDb::open(
        storage.clone(),
        ManualClock::new(1),
        [vec![0u8; 4096], vec![0u8; 4096]],
        Config::with_sync(sync),
    )
    .expect("open")
}

fn get(db: &mut TestDb, key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    db.get(key, &mut buf).expect("get").map(<[u8]>::to_vec)
}

fn assert_refuses_writes(db: &mut TestDb) {
    assert_eq!(db.put(b"x", b"y"), Err(Error::Poisoned));
    assert_eq!(db.delete(b"x"), Err(Error::Poisoned));
    assert_eq!(db.sync(), Err(Error::Poisoned), "a second sync must not report success");
    assert_eq!(db.flush(), Err(Error::Poisoned));
    assert!(db.is_poisoned());
}

#[test]
fn failed_wal_sync_poisons_and_recovery_keeps_acknowledged_writes() {
    for seed in 0..50 {
        let storage = device(seed);
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        db.put(b"a", b"1").unwrap();
        storage.fail_next(Call::Sync, FaultKind::Io);
        assert!(matches!(
            db.put(b"b", b"2"),
            Err(Error::Storage(FaultError::Injected { op: Call::Sync, .. }))
        ));
        assert_refuses_writes(&mut db);
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"1"[..]), "reads keep working");
        assert_eq!(get(&mut db, b"b"), None, "the failed write was not acknowledged, nor is it visible");
        drop(db);
        storage.power_cut(&mut Rng::new(seed));
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"1"[..]), "seed {seed}");
        let b = get(&mut db, b"b");
        assert!(
            b.is_none() || b.as_deref() == Some(&b"2"[..]),
            "seed {seed}: in-flight write half there: {b:?}"
        );
    }
}

#[test]
fn manual_sync_that_fails_is_not_reported_as_success_the_second_time() {
    let storage = device(7);
    let mut db = open(&storage, SyncPolicy::Manual);
    for i in 0..5u8 {
        db.put(&[b'k', i], b"v").unwrap();
    }
    storage.fail_next(Call::Sync, FaultKind::Io);
    assert!(db.sync().is_err());
    assert_refuses_writes(&mut db);
    // (What close() then reports: tests/model_regressions.rs.)
}

#[test]
fn failed_table_sync_during_flush_poisons_and_loses_nothing() {
    for seed in 0..50 {
        let storage = device(seed);
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        for i in 0..20u8 {
            db.put(&[b'k', i], &[i; 30]).unwrap();
        }
        // flush: every write is already synced, so the first sync is the table's.
        storage.fail_nth(Call::Sync, 1, FaultKind::Io);
        assert!(db.flush().is_err());
        assert_refuses_writes(&mut db);
        drop(db);
        storage.power_cut(&mut Rng::new(seed));
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        for i in 0..20u8 {
            assert_eq!(get(&mut db, &[b'k', i]), Some(vec![i; 30]), "seed {seed} key {i}");
        }
    }
}

#[test]
fn failed_directory_sync_poisons_and_loses_nothing() {
    for seed in 0..50 {
        let storage = device(seed);
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        let mut acked = 0u8;
        storage.fail_next(Call::SyncDir, FaultKind::Io);
        loop {
            match db.put(&[b'k', acked], &[acked; 60]) {
                Ok(()) => acked += 1,
                Err(Error::Storage(FaultError::Injected { op: Call::SyncDir, .. })) => break,
                Err(e) => panic!("seed {seed}: {e:?}"),
            }
        }
        assert_refuses_writes(&mut db);
        drop(db);
        storage.power_cut(&mut Rng::new(seed));
        let mut db = open(&storage, SyncPolicy::EveryWrite);
        for i in 0..acked {
            assert_eq!(get(&mut db, &[b'k', i]), Some(vec![i; 60]), "seed {seed} key {i}");
        }
    }
}
