//! The WAL is preallocated: extended with zeros ahead of its records, so that a durable append
//! does not change the file's size. What must hold:
//! - on a real file system the WAL file is longer than its records, and appends inside the
//!   extension leave its size alone;
//! - a zero tail is the clean end of any WAL: a preallocated WAL reopens with every acknowledged
//!   write and no torn tail counted, and an older WAL with a zero tail is replayed whole;
//! - damage followed by zeros is still a torn tail in the newest WAL, and damage followed by a
//!   valid record is still corruption, zeros in between or not;
//! - a power cut in the middle of an append that extends the WAL, and a failed extension, lose
//!   no acknowledged write.

mod common;

use std::fs;

use common::{core_get as get, open_fault, wal_files, wal_logical_len, FaultDb as TestDb};
use minivault::{Db as PosixDb, Durability, Options};
use minivault_core::wal::preallocation_chunk;
use minivault_core::{Corruption, Error, SyncPolicy};
use minivault_suite::fault::{Call, FaultError, FaultKind, FaultStorage, Rng};

/// Small MemTables: WALs of a few KiB, extended in 4 KiB chunks.
const MEM: usize = 4096;

/// Bytes of a WAL's file header, before its records.
const WAL_HEADER: usize = minivault_core::wal::FILE_HEADER_LEN as usize;

fn open(storage: &FaultStorage) -> Result<TestDb, Error<FaultError>> {
    open_fault(storage, MEM, SyncPolicy::EveryWrite)
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}-{}", "v".repeat(i % 40)).into_bytes()
}

/// The names of the WALs on a [`FaultStorage`], oldest first.
fn wals(storage: &FaultStorage) -> Vec<String> {
    storage.names().into_iter().filter(|n| n.ends_with(".wal")).collect()
}

#[test]
fn wal_file_is_preallocated_and_appends_inside_it_leave_its_size_alone() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 64 * 1024, durability: Durability::Always, ..Options::default() };
    let chunk = preallocation_chunk(options.memtable_bytes);
    let db = PosixDb::open_with(dir.path(), options).unwrap();
    db.put(b"first", b"write").unwrap();
    let wal = &wal_files(dir.path())[0];
    assert_eq!(fs::metadata(wal).unwrap().len(), chunk, "the first append extends by one chunk");
    let mut i = 0;
    while db.stats().wal_bytes + 200 < chunk {
        db.put(&key(i), &value(i)).unwrap();
        assert_eq!(fs::metadata(wal).unwrap().len(), chunk, "write {i} changed the WAL's size");
        i += 1;
    }
    assert!(i > 50, "only {i} writes fit in a chunk");
}

#[test]
fn preallocated_wal_with_a_zero_tail_reopens_with_every_acknowledged_write_and_no_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = PosixDb::open(dir.path()).unwrap();
        for i in 0..300 {
            db.put(&key(i), &value(i)).unwrap();
        }
        // Dropped without `close`: as after a process crash.
    }
    let wal = &wal_files(dir.path())[0];
    let bytes = fs::read(wal).unwrap();
    let records = wal_logical_len(&bytes);
    assert!(bytes.len() > records, "the WAL has no zero tail: {} bytes, all records", bytes.len());

    let db = PosixDb::open(dir.path()).unwrap();
    assert_eq!(db.stats().torn_tails_truncated, 0, "a zero tail counted as a torn tail");
    assert_eq!(db.stats().wal_bytes, (records - common::wal_header_len(&bytes)) as u64);
    for i in 0..300 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
    }
    assert_eq!(fs::metadata(wal).unwrap().len(), bytes.len() as u64, "open kept the preallocated tail");
    db.put(b"after", b"reopen").unwrap();
    drop(db);
    let db = PosixDb::open(dir.path()).unwrap();
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"reopen"[..]));
    assert_eq!(db.get(&key(299)).unwrap(), Some(value(299)));
}

#[test]
fn older_wal_with_a_zero_tail_is_replayed_fully() {
    let dir = tempfile::tempdir().unwrap();
    // Flushes inline (no background threads): the frozen MemTable waits for the next rotation.
    let options = Options {
        memtable_bytes: 16 * 1024,
        durability: Durability::Always,
        background_threads: 0,
        ..Options::default()
    };
    let mut written = 0;
    {
        let db = PosixDb::open_with(dir.path(), options).unwrap();
        // One rotation and no flush yet: two WALs, the older one with its zero tail.
        while db.stats().immutable_keys == 0 || db.stats().memtable_keys < 3 {
            db.put(&key(written), &value(written)).unwrap();
            written += 1;
        }
    }
    let wals = wal_files(dir.path());
    assert_eq!(wals.len(), 2, "{wals:?}");
    let older = fs::read(&wals[0]).unwrap();
    assert!(older.len() > wal_logical_len(&older), "the older WAL has no zero tail");

    let db = PosixDb::open_with(dir.path(), options).unwrap();
    assert_eq!(db.stats().torn_tails_truncated, 0);
    for i in 0..written {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
    }
}

#[test]
fn damage_then_zeros_in_the_newest_wal_is_a_torn_tail() {
    let storage = FaultStorage::new(3);
    let mut db = open(&storage).unwrap();
    for i in 0..10 {
        db.put(&key(i), &value(i)).unwrap();
    }
    // Where the records end: after the WAL's header (`Stats::wal_bytes` counts records only).
    let records = WAL_HEADER + db.stats().wal_bytes as usize;
    drop(db);
    let name = wals(&storage).pop().unwrap();
    let mut bytes = storage.read_file(&name).unwrap();
    assert!(bytes.len() > records + 16, "no zero tail to tear into");
    // Half a header of an eleventh record at the logical end, zeros after it.
    bytes[records..records + 4].copy_from_slice(&30u32.to_le_bytes());
    storage.write_file(&name, &bytes);

    let mut db = open(&storage).unwrap();
    assert_eq!(db.stats().torn_tails_truncated, 1);
    assert_eq!(storage.read_file(&name).unwrap().len(), records, "the torn tail (and its zeros) is cut");
    for i in 0..10 {
        assert_eq!(get(&mut db, &key(i)), Some(value(i)), "key {i}");
    }
}

#[test]
fn damage_then_zeros_then_a_valid_record_is_corruption() {
    let storage = FaultStorage::new(4);
    let mut db = open(&storage).unwrap();
    let mut starts = vec![];
    for i in 0..6 {
        starts.push(WAL_HEADER + db.stats().wal_bytes as usize);
        db.put(&key(i), &value(i)).unwrap();
    }
    drop(db);
    let name = wals(&storage).pop().unwrap();
    let mut bytes = storage.read_file(&name).unwrap();
    // Record 2 damaged in its first byte, the rest of it and record 3 zeroed: records 4 and 5
    // are still valid after the zeros, which no crash produces.
    bytes[starts[2]] ^= 0x10;
    bytes[starts[2] + 1..starts[4]].fill(0);
    storage.write_file(&name, &bytes);
    match open(&storage) {
        Err(Error::Corrupted { offset, kind: Corruption::WalRecordBeforeValidData, .. }) => {
            assert_eq!(offset, starts[2] as u64)
        }
        Err(e) => panic!("expected WalRecordBeforeValidData, got {e:?}"),
        Ok(_) => panic!("open skipped damage in front of valid records"),
    }
    // A run of zeros alone (no damaged byte) in front of valid records is no zero tail either.
    bytes[starts[2]] = 0;
    storage.write_file(&name, &bytes);
    assert!(
        matches!(open(&storage), Err(Error::Corrupted { kind: Corruption::WalRecordBeforeValidData, .. })),
        "zeros followed by valid records were taken for the clean end"
    );
}

#[test]
fn power_cut_during_an_append_that_extends_the_wal_loses_no_acknowledged_write() {
    // 32 KiB MemTables: 8 KiB chunks, and two of them fill before the MemTable does.
    const BIG: usize = 32 * 1024;
    let open_big = |storage: &FaultStorage| open_fault(storage, BIG, SyncPolicy::EveryWrite);
    for seed in 0..300u64 {
        let storage = FaultStorage::new(seed);
        let mut rng = Rng::new(seed);
        let mut db = open_big(&storage).unwrap();
        let mut acked = Vec::new();
        let mut i = 0;
        // Write until the next record would not fit in the preallocated length (the first or
        // the second time, by seed); that write's sync fails (it stays in flight) and the power
        // goes.
        let mut boundaries = seed % 2 + 1;
        loop {
            let name = wals(&storage).pop().unwrap();
            let file_len = storage.read_file(&name).unwrap().len();
            let records = db.stats().wal_bytes as usize;
            let record = 8 + 3 + key(i).len() + value(i).len();
            if records > 0 && records + record > file_len {
                boundaries -= 1;
                if boundaries == 0 {
                    break;
                }
            }
            db.put(&key(i), &value(i)).unwrap();
            acked.push(i);
            i += 1;
        }
        assert_eq!(db.stats().immutable_keys, 0, "seed {seed}: the test needs a single WAL");
        storage.record_calls(true);
        storage.fail_next(Call::Sync, FaultKind::Io);
        assert!(db.put(&key(i), &value(i)).is_err(), "seed {seed}: the failed sync was not reported");
        assert!(storage.recorded_calls().contains(&Call::Preallocate), "seed {seed}: no extension");
        drop(db);
        storage.power_cut(&mut rng);

        let mut db = open_big(&storage).unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e:?}"));
        for &k in &acked {
            assert_eq!(get(&mut db, &key(k)), Some(value(k)), "seed {seed}: acknowledged key {k} lost");
        }
        let inflight = get(&mut db, &key(i));
        assert!(inflight.is_none() || inflight == Some(value(i)), "seed {seed}: in-flight write garbled");
        // The recovered database takes writes that survive the next power cut.
        db.put(b"after", b"cut").unwrap();
        drop(db);
        storage.power_cut(&mut rng);
        let mut db =
            open_big(&storage).unwrap_or_else(|e| panic!("seed {seed}: second reopen failed: {e:?}"));
        assert_eq!(get(&mut db, b"after").as_deref(), Some(&b"cut"[..]), "seed {seed}");
        let last = *acked.last().unwrap();
        assert_eq!(get(&mut db, &key(last)), Some(value(last)), "seed {seed}");
    }
}

#[test]
fn failed_wal_extension_poisons_on_eio_refuses_on_enospc_and_loses_no_acknowledged_write() {
    for kind in [FaultKind::Io, FaultKind::NoSpace] {
        let storage = FaultStorage::new(5);
        let mut db = open(&storage).unwrap();
        db.put(b"before", b"1").unwrap();
        storage.fail_next(Call::Preallocate, kind);
        let mut i = 0;
        let err = loop {
            match db.put(&key(i), &value(i)) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
            assert!(i < 1_000, "{kind:?}: the failed extension was never reported");
        };
        if kind == FaultKind::NoSpace {
            // Out of space before any byte of the record: refused, not poisoning; the next
            // write (the device has room again) goes on.
            assert_eq!(err, Error::Full, "{kind:?}");
            assert!(!db.is_poisoned(), "{kind:?}: out of space must not poison");
            db.put(b"later", b"x").unwrap();
        } else {
            assert!(matches!(err, Error::Storage(_)), "{kind:?}: {err:?}");
            assert!(db.is_poisoned(), "{kind:?}: a failed extension must poison");
            assert_eq!(db.put(b"later", b"x"), Err(Error::Poisoned), "{kind:?}");
        }
        assert_eq!(get(&mut db, b"before").as_deref(), Some(&b"1"[..]), "{kind:?}: reads go on");
        drop(db);
        storage.power_cut_lose_all();
        let mut db = open(&storage).unwrap();
        assert_eq!(get(&mut db, b"before").as_deref(), Some(&b"1"[..]), "{kind:?}");
        for k in 0..i {
            assert_eq!(get(&mut db, &key(k)), Some(value(k)), "{kind:?}: key {k}");
        }
        assert_eq!(get(&mut db, &key(i)), None, "{kind:?}: the refused write appeared");
        let later = if kind == FaultKind::NoSpace { Some(b"x".to_vec()) } else { None };
        assert_eq!(get(&mut db, b"later"), later, "{kind:?}");
    }
}

/// The lines of `/proc/self/maps` that map a file under `dir`: the WAL windows of a handle
/// opened there (tests of this binary run in parallel, each in its own directory).
#[cfg(target_os = "linux")]
fn mappings_under(dir: &std::path::Path) -> Vec<String> {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let dir = format!("{}/", dir.canonicalize().unwrap().display());
    maps.lines().filter(|l| l.contains(&dir)).map(str::to_owned).collect()
}

#[test]
#[cfg(target_os = "linux")]
fn map_wal_appends_off_writes_every_record_with_pwrite_and_maps_no_wal() {
    let write = |dir: &std::path::Path, map_wal_appends: bool| {
        let options = Options { map_wal_appends, durability: Durability::Manual, ..Options::default() };
        let db = PosixDb::open_with(dir, options).unwrap();
        for i in 0..200 {
            db.put(&key(i), &value(i)).unwrap();
        }
        let mapped = mappings_under(dir);
        drop(db);
        mapped
    };
    // The temporary directory, or else a tmpfs (where WALs are mapped too), if either maps.
    let parents = [std::env::temp_dir(), "/dev/shm".into()];
    let Some((parent, mapped)) = parents.iter().filter(|p| p.is_dir()).find_map(|parent| {
        let on = tempfile::tempdir_in(parent).ok()?;
        let mapped = write(on.path(), true);
        (!mapped.is_empty()).then(|| (parent.clone(), mapped))
    }) else {
        eprintln!("skipped: neither the temporary directory nor /dev/shm maps WALs here");
        return;
    };
    assert!(mapped.iter().all(|l| l.contains(".wal")), "only WALs are mapped: {mapped:?}");
    let off = tempfile::tempdir_in(&parent).unwrap();
    assert_eq!(write(off.path(), false), Vec::<String>::new(), "a WAL was mapped with the option off");
    // The records are there all the same, on reopen.
    let db = PosixDb::open(off.path()).unwrap();
    for i in 0..200 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)));
    }
}
