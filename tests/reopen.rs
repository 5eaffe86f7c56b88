//! Whatever was acknowledged before a handle went away is there after the next open: after a
//! clean drop, after a drop with data only in the WAL, in every durability mode, across
//! different MemTable sizes, and on the core engine over in-memory storage.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{close_core, core_get, mem_storage, open_core, sst_files, wal_files, Mem, MemDb};
use minivault::{Db, Durability, Options};
use minivault_core::{Error as CoreError, MemStorage, SyncPolicy};
use minivault_suite::fault::ManualClock;

type Model = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn write_some(db: &mut Db, model: &mut Model, tag: &str, n: usize) {
    for i in 0..n {
        let k = format!("{tag}-{i:04}").into_bytes();
        let v = format!("{tag} value {i} {}", "v".repeat(i % 30)).into_bytes();
        db.put(&k, &v).unwrap();
        model.insert(k, Some(v));
        if i % 7 == 3 {
            let gone = format!("{tag}-{:04}", i - 3).into_bytes();
            db.delete(&gone).unwrap();
            model.insert(gone, None);
        }
    }
}

fn check(db: &mut Db, model: &Model, when: &str) {
    for (k, v) in model {
        assert_eq!(&db.get(k).unwrap(), v, "{when}: key {}", String::from_utf8_lossy(k));
    }
}

#[test]
fn reopen_after_clean_drop_with_flushed_and_unflushed_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let mut db = Db::open(dir.path()).unwrap();
        write_some(&mut db, &mut model, "flushed", 100);
        db.flush().unwrap();
        write_some(&mut db, &mut model, "walonly", 100);
    }
    let mut db = Db::open(dir.path()).unwrap();
    check(&mut db, &model, "after reopen");
    drop(db);
    let mut db = Db::open(dir.path()).unwrap();
    check(&mut db, &model, "after a second reopen");
}

#[test]
fn reopen_after_drop_without_flush_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let mut db = Db::open(dir.path()).unwrap();
        write_some(&mut db, &mut model, "k", 300);
    }
    assert!(sst_files(dir.path()).is_empty(), "nothing should be flushed yet");
    assert!(!wal_files(dir.path()).is_empty());
    let mut db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.memtable_keys > 0, "nothing was replayed: {stats:?}");
    assert_eq!(stats.torn_tails_truncated, 0);
    check(&mut db, &model, "after replay");
}

#[test]
fn reopen_in_every_durability_mode_after_sync_and_drop() {
    for durability in [
        Durability::Always,
        Durability::EveryN(5),
        Durability::Periodic(Duration::from_millis(1)),
        Durability::Manual,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { memtable_bytes: 16 * 1024, durability, ..Options::default() };
        let mut model = Model::new();
        {
            let mut db = Db::open_with(dir.path(), options).unwrap();
            write_some(&mut db, &mut model, "a", 400);
            db.sync().unwrap();
            write_some(&mut db, &mut model, "b", 3);
            db.sync().unwrap();
            write_some(&mut db, &mut model, "c", 2);
            // Dropped with two writes made after the last explicit sync.
        }
        let mut db = Db::open_with(dir.path(), options).unwrap();
        check(&mut db, &model, &format!("{durability:?}"));
        assert!(!db.is_poisoned());
    }
}

#[test]
fn reopen_many_times_without_writes_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let mut db = Db::open(dir.path()).unwrap();
        write_some(&mut db, &mut model, "x", 50);
        db.flush().unwrap();
        write_some(&mut db, &mut model, "y", 50);
    }
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v
    };
    let before = listing();
    for round in 0..10 {
        let mut db = Db::open(dir.path()).unwrap();
        check(&mut db, &model, &format!("reopen {round}"));
        drop(db);
        assert_eq!(listing(), before, "reopen {round} changed the files");
    }
}

#[test]
fn reopen_with_smaller_memtables_flushes_during_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let big =
            Options { memtable_bytes: 256 * 1024, durability: Durability::Manual, ..Options::default() };
        let mut db = Db::open_with(dir.path(), big).unwrap();
        write_some(&mut db, &mut model, "big", 1000);
        assert!(sst_files(dir.path()).is_empty());
    }
    let small = Options { memtable_bytes: 4096, durability: Durability::Manual, ..Options::default() };
    let mut db = Db::open_with(dir.path(), small).unwrap();
    assert!(db.stats().flushes > 0, "replay into small MemTables must flush: {:?}", db.stats());
    check(&mut db, &model, "after replay into small MemTables");
    write_some(&mut db, &mut model, "small", 200);
    drop(db);
    let mut db = Db::open_with(dir.path(), small).unwrap();
    check(&mut db, &model, "after a second reopen");
}

#[test]
fn reopen_with_memtables_too_small_for_a_logged_entry_is_an_error_not_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let big_value = vec![b'v'; 3000];
    {
        let db = Db::open(dir.path()).unwrap();
        db.put(b"big", &big_value).unwrap();
    }
    let tiny = Options { memtable_bytes: 1024, durability: Durability::Always, ..Options::default() };
    match Db::open_with(dir.path(), tiny) {
        Err(minivault::Error::Engine(CoreError::MemTableTooSmall { file, needed, given })) => {
            assert!(file.ends_with(".wal"), "{file}");
            assert_eq!(given, 1024);
            // The smallest MemTable that holds the entry (its arena is 7/8 of it).
            assert!((3000..4096).contains(&needed), "needed {needed}");
            let fits = Options { memtable_bytes: needed, ..tiny };
            let db = Db::open_with(dir.path(), fits).expect("MemTables of the size the error names");
            assert_eq!(db.get(b"big").unwrap(), Some(big_value.clone()));
        }
        Err(e) => panic!("expected MemTableTooSmall, got {e}"),
        Ok(_) => panic!("opened although an entry in the WAL cannot fit in a MemTable"),
    }
    // Nothing was lost: a large enough budget reads it back.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"big").unwrap(), Some(big_value));
}

#[test]
fn memtable_buffers_below_the_minimum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 511, durability: Durability::Always, ..Options::default() };
    match Db::open_with(dir.path(), options) {
        Err(minivault::Error::Engine(CoreError::InsufficientMemory { needed, given })) => {
            assert_eq!((needed, given), (512, 511));
        }
        Err(e) => panic!("expected InsufficientMemory, got {e}"),
        Ok(_) => panic!("opened with a 511-byte MemTable"),
    }
    let options = Options { memtable_bytes: 512, durability: Durability::Always, ..Options::default() };
    let db = Db::open_with(dir.path(), options).unwrap();
    for i in 0..50u32 {
        db.put(&i.to_be_bytes(), b"tiny").unwrap();
    }
    drop(db);
    let db = Db::open_with(dir.path(), options).unwrap();
    for i in 0..50u32 {
        assert_eq!(db.get(&i.to_be_bytes()).unwrap().as_deref(), Some(&b"tiny"[..]));
    }
}

// ---- Core engine on MemStorage ------------------------------------------------------------

/// The core engine on `storage` with the clock at 0 (nothing here expires).
fn open_mem(storage: Mem, memtable: usize, sync: SyncPolicy) -> MemDb {
    open_core(storage, &ManualClock::new(0), memtable, sync).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn core_close_and_reopen_on_mem_storage() {
    for sync in [SyncPolicy::EveryWrite, SyncPolicy::EveryN(4), SyncPolicy::Manual] {
        let mut model: BTreeMap<u32, Option<Vec<u8>>> = BTreeMap::new();
        let mut storage = mem_storage();
        for round in 0..5u32 {
            let mut db = open_mem(storage, 2048, sync);
            for (k, v) in &model {
                assert_eq!(&core_get(&mut db, &k.to_be_bytes()), v, "{sync:?} round {round} key {k}");
            }
            for i in 0..120u32 {
                let k = (round * 37 + i) % 300;
                if i % 5 == 4 {
                    db.delete(&k.to_be_bytes()).unwrap();
                    model.insert(k, None);
                } else {
                    let v = format!("r{round}i{i}").into_bytes();
                    db.put(&k.to_be_bytes(), &v).unwrap();
                    model.insert(k, Some(v));
                }
            }
            if round == 2 {
                db.flush().unwrap();
            }
            storage = close_core(db);
        }
        let mut db = open_mem(storage, 2048, sync);
        for (k, v) in &model {
            assert_eq!(&core_get(&mut db, &k.to_be_bytes()), v, "{sync:?} final key {k}");
        }
    }
}

#[test]
fn core_drop_without_close_keeps_the_writes_in_mem_storage() {
    let mut db = open_mem(mem_storage(), 4096, SyncPolicy::EveryWrite);
    db.put(b"a", b"1").unwrap();
    db.flush().unwrap();
    db.put(b"b", b"2").unwrap();
    // Take the storage as it is, without close(): the equivalent of a crash after the write.
    let storage = std::mem::replace(db.storage(), MemStorage::new(Vec::new()));
    drop(db);
    let mut db = open_mem(storage, 4096, SyncPolicy::EveryWrite);
    assert_eq!(core_get(&mut db, b"a").as_deref(), Some(&b"1"[..]));
    assert_eq!(core_get(&mut db, b"b").as_deref(), Some(&b"2"[..]));
}

/// Copies every `.sst` and `.wal` file of `dir` that `saved` lacks into `saved`: each file as
/// first seen.
fn save_new_files(dir: &std::path::Path, saved: &std::path::Path) {
    for path in sst_files(dir).into_iter().chain(wal_files(dir)) {
        let into = saved.join(path.file_name().unwrap());
        if !into.exists() {
            std::fs::copy(&path, &into).unwrap();
        }
    }
}

#[test]
fn replaced_tables_and_covered_wals_a_power_cut_brings_back_never_stop_open_however_many() {
    // Every removal since the last directory sync can come back after a power cut: compactions'
    // inputs and flushed WALs. Far more than the table list (`MAX_TABLES`) and WAL list (8) hold.
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let opts = Options {
        memtable_bytes: 64 << 10,
        durability: Durability::Manual,
        background_threads: 0,
        ..Options::default()
    };
    let db = Db::open_with(dir.path(), opts).unwrap();
    let mut model = BTreeMap::new();
    // Enough rounds (of new keys, scattered: the tables overlap and are merged, the data grows,
    // so the oldest table is merged rarely) that more replaced tables than the table limit come
    // back newer than the oldest live table.
    for round in 0..(2 * minivault_core::limits::MAX_TABLES as u32 + 128) {
        for i in 0..150u32 {
            let k = format!("key{:08x}", common::scattered(round * 150 + i)).into_bytes();
            let v = format!("round {round} value {i}").into_bytes();
            db.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        db.flush().unwrap();
        save_new_files(dir.path(), saved.path());
    }
    db.close().unwrap();
    // An open runs a merge the last flush left due: let that happen first, so that the opens
    // below have nothing to merge.
    loop {
        let before = common::file_ids(dir.path(), "sst");
        Db::open_with(dir.path(), opts).unwrap().close().unwrap();
        if common::file_ids(dir.path(), "sst") == before {
            break;
        }
    }
    let live: Vec<u64> = common::file_ids(dir.path(), "sst");
    let (mut tables, mut wals) = (0, 0);
    for path in sst_files(saved.path()).into_iter().chain(wal_files(saved.path())) {
        let back = dir.path().join(path.file_name().unwrap());
        if !back.exists() {
            std::fs::copy(&path, &back).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                Some("sst") => tables += 1,
                _ => wals += 1,
            }
        }
    }
    assert!(tables > minivault_core::limits::MAX_TABLES, "{tables} replaced tables brought back");
    assert!(wals > minivault_core::limits::MAX_WALS, "{wals} covered WALs brought back");
    // The oldest live table is older than the MAX_TABLES newest files: an open that kept the
    // newest ids would leave it out.
    let all = common::file_ids(dir.path(), "sst");
    let newest = all[all.len() - minivault_core::limits::MAX_TABLES];
    assert!(live[0] < newest, "live {live:?}, the newest of {} from {newest}", all.len());

    // A read-only open leaves them, the next open removes them; both read every key.
    for read_only in [true, false] {
        let db = Db::open_with(dir.path(), Options { read_only, ..opts }).unwrap();
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "read_only {read_only}");
        }
        assert_eq!(db.stats().tables, live.len(), "read_only {read_only}");
        drop(db);
        if read_only {
            assert_eq!(common::file_ids(dir.path(), "sst"), all, "a read-only open removes nothing");
        }
    }
    assert_eq!(common::file_ids(dir.path(), "sst"), live, "the replaced tables are removed");
    assert!(wal_files(dir.path()).len() <= 2, "{:?}", wal_files(dir.path()));
}
