//! Compaction on background threads (`Options::background_threads`, the POSIX default): writes
//! go on while merges run and nothing written is lost, the thresholds hold writes back when
//! flushes outrun the merges, and `close` gives a running merge up without leaving anything
//! behind; an input the reaper cannot unlink after the install is counted in
//! `BackgroundStats::failed_unlinks`. (A failed merge poisons the database:
//! `background_compaction_failure_poisons.rs`, its own process for its file size limit.)

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::Rng;
use minivault::{Db, Durability, Options};

fn options(memtable_bytes: usize) -> Options {
    Options { memtable_bytes, durability: Durability::Manual, ..Options::default() }
}

fn tmp_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    common::files_with_ext(dir, "tmp")
}

fn check(db: &mut Db, model: &BTreeMap<String, String>, keys: u64) {
    for i in 0..keys {
        let k = format!("k{i:06}");
        let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got.as_ref(), model.get(&k), "key {k}");
    }
}

#[test]
fn writes_go_on_while_background_merges_run_and_nothing_is_lost() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(16 << 10);
    let mut db = Db::open_with(dir.path(), opts).unwrap();
    let mut rng = Rng::new(0xB6);
    let mut model = BTreeMap::new();
    const KEYS: u64 = 20_000;
    let mut most_tables = 0;
    for i in 0..80_000u32 {
        let k = format!("k{:06}", rng.below(KEYS));
        if rng.chance(1, 10) {
            db.delete(k.as_bytes()).unwrap();
            model.remove(&k);
        } else {
            let v = format!("v{i}-{}", "x".repeat(rng.below(64) as usize));
            db.put(k.as_bytes(), v.as_bytes()).unwrap();
            model.insert(k, v);
        }
        most_tables = most_tables.max(db.stats().tables);
        if i % 20_000 == 0 {
            for _ in 0..200 {
                let k = format!("k{:06}", rng.below(KEYS));
                let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
                assert_eq!(got.as_ref(), model.get(&k), "key {k} after {i} writes");
            }
        }
    }
    // No install from here on (the threads' nudges would add one between the two counts).
    db.hold_background_installs(true);
    let bg = db.background_stats();
    let stats = db.stats();
    eprintln!("{bg:?}, {} tables at most, {stats:?}", most_tables);
    assert!(bg.installed >= 10, "compactions ran in the background: {bg:?}");
    assert_eq!(stats.compactions, bg.installed, "every compaction was a background one");
    assert!(most_tables <= opts.stop_tables, "{most_tables} tables");
    check(&mut db, &model, KEYS);
    db.close().unwrap();
    assert_eq!(tmp_files(dir.path()), Vec::<std::path::PathBuf>::new(), "close leaves no .tmp");
    let mut db = Db::open_with(dir.path(), opts).unwrap();
    check(&mut db, &model, KEYS);
}

#[test]
fn flushes_that_outrun_the_merges_are_held_back_at_the_thresholds() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    // Small MemTables and low thresholds: the size-tiered policy alone would keep about a dozen
    // tables, so writes reach both thresholds.
    let opts = Options { background_threads: 1, slowdown_tables: 4, stop_tables: 6, ..options(8 << 10) };
    let mut db = Db::open_with(dir.path(), opts).unwrap();
    let mut model = BTreeMap::new();
    let mut most_tables = 0;
    for i in 0..12_000u32 {
        let k = format!("k{:06}", (i * 7919) % 30_000);
        let v = format!("v{i}");
        db.put(k.as_bytes(), v.as_bytes()).unwrap();
        model.insert(k, v);
        most_tables = most_tables.max(db.stats().tables);
    }
    let bg = db.background_stats();
    eprintln!("{bg:?}, {most_tables} tables at most");
    assert!(most_tables <= opts.stop_tables, "{most_tables} tables, stop at {}", opts.stop_tables);
    assert!(bg.stopped_writes > 0 && bg.slowed_writes > 0, "{bg:?}");
    check(&mut db, &model, 30_000);
    db.close().unwrap();
    let mut db = Db::open_with(dir.path(), opts).unwrap();
    check(&mut db, &model, 30_000);
}

#[test]
fn close_gives_a_running_merge_up_and_reopen_finds_everything() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(1 << 19);
    let mut model = BTreeMap::new();
    let mut running_at_close = 0;
    for round in 0..6u32 {
        let db = Db::open_with(dir.path(), opts).unwrap();
        // Eight MemTables' worth: the eighth flush (the tiered policy's width) makes a merge of
        // about 4 MiB due.
        for i in 0..36_000u32 {
            let k = format!("k{:06}", i);
            let v = format!("r{round}-{i}-{}", "y".repeat(80));
            db.put(k.as_bytes(), v.as_bytes()).unwrap();
            model.insert(k, v);
        }
        db.flush().unwrap();
        running_at_close += usize::from(db.stats().compactions_running > 0);
        let started = Instant::now();
        db.close().unwrap();
        let took = started.elapsed();
        let tmp = tmp_files(dir.path());
        assert!(tmp.is_empty(), "round {round}: close left {tmp:?}");
        eprintln!("round {round}: close took {took:?}");
        let mut db = Db::open_with(dir.path(), opts).unwrap();
        check(&mut db, &model, 36_000);
        db.close().unwrap();
    }
    eprintln!("{running_at_close} of 6 closes came while a merge ran");
    assert!(running_at_close > 0);
}

#[test]
fn replaced_tables_the_reaper_cannot_unlink_are_counted_in_background_stats() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { background_threads: 1, ..options(16 << 10) };
    let db = Db::open_with(dir.path(), opts).unwrap();
    // The worker holds the merge before its first step; each round adds a table until the
    // policy hands it one.
    db.pause_background(true);
    let mut i = 0u32;
    while db.stats().compactions_running == 0 {
        for _ in 0..50 {
            db.put(format!("k{:08x}", common::scattered(i)).as_bytes(), &[b'v'; 100]).unwrap();
            i += 1;
        }
        db.flush().unwrap();
        assert!(db.stats().tables < 64, "no compaction was planned: {:?}", db.stats());
    }
    // The worker opens its inputs, then creates its output `<id>.tmp`, then waits at the pause.
    let started = Instant::now();
    while tmp_files(dir.path()).is_empty() {
        assert!(started.elapsed().as_secs() < 20, "the worker never started its merge");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The merge reads its inputs through the descriptors it holds; the names go behind the
    // engine's back, so the reaper's unlinks of the replaced inputs fail.
    for sst in common::sst_files(dir.path()) {
        std::fs::remove_file(sst).unwrap();
    }
    let before = db.stats().tables;
    // Only the calls below install (not the threads' nudges): one merge, counted exactly.
    db.hold_background_installs(true);
    db.pause_background(false);
    let started = Instant::now();
    while db.background_stats().installed == 0 {
        assert!(
            started.elapsed().as_secs() < 20,
            "the merge was never installed: {:?}",
            db.background_stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
        db.sync().unwrap();
    }
    // flush() waits for the reaper to finish the unlinks the install queued.
    db.flush().unwrap();
    let after = db.stats().tables;
    let bg = db.background_stats();
    assert_eq!(bg.installed, 1, "{bg:?}");
    assert!(before - after > 0, "the merge replaced tables: {before} -> {after}");
    // The output takes the newest input's name; the other inputs were queued for the reaper.
    assert_eq!(bg.failed_unlinks, (before - after) as u64, "{bg:?}");
    drop(db);
}

#[test]
fn a_database_no_longer_written_ends_its_compactions_without_another_call() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(16 << 10);
    let db = Db::open_with(dir.path(), opts).unwrap();
    // Writes stop the moment a merge is handed out (more come due when it is installed).
    let mut i = 0u32;
    while db.background_stats().started == 0 {
        db.put(format!("k{:06}", i % 5_000).as_bytes(), format!("v{i}-{}", "x".repeat(48)).as_bytes())
            .unwrap();
        i += 1;
        assert!(i < 200_000, "no merge was started: {:?}", db.stats());
    }
    // From here on only stats and the directory: the threads install their own work, and hand
    // out what that makes due, until nothing runs, no flush waits and only live tables are left.
    let start = Instant::now();
    loop {
        let (bg, stats) = (db.background_stats(), db.stats());
        let on_disk = common::sst_files(dir.path()).len();
        let settled = bg.started == bg.installed + bg.not_installed
            && stats.immutable_keys == 0
            && on_disk == stats.tables
            // The current WAL (`wal_files` leaves the spare made for the next rotation out).
            && common::wal_files(dir.path()).len() == 1
            && tmp_files(dir.path()).is_empty();
        if settled {
            assert!(bg.installed >= 1 && bg.not_installed == 0, "{bg:?}");
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the background never settled without a write: {bg:?}, {stats:?}, {on_disk} table files"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for j in 0..i.min(5_000) {
        let last = j + (i - 1 - j) / 5_000 * 5_000;
        let want = format!("v{last}-{}", "x".repeat(48));
        assert_eq!(
            db.get(format!("k{j:06}").as_bytes()).unwrap().as_deref(),
            Some(want.as_bytes()),
            "key {j}"
        );
    }
}
