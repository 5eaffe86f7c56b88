//! The engine handle's tests: writes, reads, flushes, compactions (inline and run apart),
//! syncs reported by a host, batches and limits, over [`crate::mem_storage::MemStorage`].

use super::*;
use crate::batch::WriteBatch;
use crate::flush::Flushed;
use crate::io::read_exact_at;
use crate::mem_storage::{MemError, MemStorage};
use crate::names::{file_name, FileKind};
use crate::record::HEADER_LEN;
use crate::wal::WATERMARK_LEN;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec::Vec;

type Mem = MemStorage<Vec<u8>, 64>;
type TestDb = Db<Mem, Box<dyn FnMut() -> u64>, Vec<u8>>;

fn clock(t: &Rc<Cell<u64>>) -> Box<dyn FnMut() -> u64> {
    let t = t.clone();
    Box::new(move || t.get())
}

fn open(storage: Mem, t: &Rc<Cell<u64>>, mem: usize) -> TestDb {
    Db::open(storage, clock(t), [vec![0; mem], vec![0; mem]], Config::default()).unwrap()
}

/// Storage of 256 files (64 MiB), for the tests of many tables.
#[cfg(feature = "many-tables")]
type Big = MemStorage<Vec<u8>, 256>;
#[cfg(feature = "many-tables")]
type BigDb = Db<Big, Box<dyn FnMut() -> u64>, Vec<u8>>;

/// A database of 4 KiB MemTables over [`Big`] storage.
#[cfg(feature = "many-tables")]
fn open_big(t: &Rc<Cell<u64>>, config: Config) -> BigDb {
    Db::open(Big::new(vec![0; 64 << 20]), clock(t), [vec![0; 4096], vec![0; 4096]], config).unwrap()
}

fn get(db: &mut TestDb, key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; 512];
    db.get(key, &mut buf).unwrap().map(<[u8]>::to_vec)
}

fn files(db: &mut TestDb, ext: &str) -> usize {
    let mut n = 0;
    db.storage().list(&mut |name| n += usize::from(name.ends_with(ext))).unwrap();
    n
}

#[test]
fn writes_survive_close_and_reopen_from_wal_and_tables() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
    for i in 0..300u32 {
        db.put(&i.to_be_bytes(), &[i as u8; 20]).unwrap();
    }
    assert!(db.stats().tables > 0, "small MemTables must have been flushed");
    let (storage, closed) = db.close();
    closed.unwrap();
    let mut db = open(storage, &t, 2048);
    for i in 0..300u32 {
        assert_eq!(get(&mut db, &i.to_be_bytes()), Some(vec![i as u8; 20]), "key {i}");
    }
}

#[test]
fn tombstone_in_memtable_and_in_table_hides_older_table_value() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap();
    db.delete(b"k").unwrap();
    assert_eq!(get(&mut db, b"k"), None);
    db.flush().unwrap();
    assert_eq!(db.stats().tables, 2);
    assert_eq!(get(&mut db, b"k"), None);
}

#[test]
fn expired_entries_read_as_absent_everywhere() {
    let t = Rc::new(Cell::new(100));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
    db.put(b"k", b"forever").unwrap();
    db.flush().unwrap();
    db.put_expiring(b"k", b"brief", 200).unwrap();
    assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
    db.flush().unwrap();
    assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
    t.set(200);
    assert_eq!(get(&mut db, b"k"), None, "expired entry hides the older value");
    assert_eq!(db.put_expiring(b"x", b"v", 200), Err(Error::InvalidTtl));
    // A flush removes tables that expired whole, but not this one: it lies over the older value,
    // which would read again without it.
    db.put(b"other", b"1").unwrap();
    db.flush().unwrap();
    assert_eq!(get(&mut db, b"k"), None, "the expired entry still hides the older value");
    assert_eq!(db.stats().expired_tables, 0);
    let (storage, _) = db.close();
    let mut db = open(storage, &t, 4096);
    assert_eq!(get(&mut db, b"k"), None, "nor after open, which removes expired tables too");
    assert_eq!(db.stats().expired_tables, 0);
}

#[test]
fn a_ttl_counts_from_the_engines_own_clock_reading_however_late_the_write_arrives() {
    let t = Rc::new(Cell::new(100));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
    // A caller read the clock at 100 and reached the engine at 500: an absolute expiry from
    // its reading is refused, a TTL is counted from the engine's reading.
    t.set(500);
    assert_eq!(db.put_expiring(b"late", b"v", 101), Err(Error::InvalidTtl));
    db.put_with_ttl(b"late", b"v", 1).unwrap();
    db.put_with_ttl(b"zero", b"v", 0).unwrap();
    db.put_with_ttl(b"long", b"v", 50).unwrap();
    db.put_with_ttl(b"max", b"v", u64::MAX).unwrap();
    for k in [&b"late"[..], b"zero", b"long", b"max"] {
        assert_eq!(get(&mut db, k).as_deref(), Some(&b"v"[..]), "{k:?}");
    }
    t.set(501);
    assert_eq!(get(&mut db, b"late"), None);
    assert_eq!(get(&mut db, b"zero"), None, "a TTL of 0 is 1");
    assert_eq!(get(&mut db, b"long").as_deref(), Some(&b"v"[..]));
    t.set(550);
    assert_eq!(get(&mut db, b"long"), None);
    assert_eq!(get(&mut db, b"max").as_deref(), Some(&b"v"[..]), "saturates, never wraps");
}

#[test]
fn flush_retires_wals_and_rotation_keeps_at_most_two() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 1024);
    for i in 0..200u32 {
        db.put(&i.to_le_bytes(), b"0123456789").unwrap();
        assert!(files(&mut db, ".wal") <= 2);
    }
    db.flush().unwrap();
    assert_eq!(files(&mut db, ".wal"), 1);
    assert_eq!(db.stats().wal_bytes, 0);
}

#[test]
fn filters_rule_out_tables_without_a_search_and_never_hide_a_key() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
    for i in 0..3000u32 {
        db.put(format!("present{i}").as_bytes(), &i.to_le_bytes()).unwrap();
    }
    db.flush().unwrap();
    let s0 = db.stats();
    assert!(s0.tables >= 2 && s0.compactions > 0, "flushed and compacted tables: {s0:?}");
    for i in 0..3000u32 {
        assert_eq!(get(&mut db, format!("present{i}").as_bytes()), Some(i.to_le_bytes().to_vec()));
    }
    let s1 = db.stats();
    // Each present key is searched for in about one table, not in every table.
    let searches = s1.table_probes - s0.table_probes;
    assert!(searches < 3000 * 11 / 10, "{searches} searches for 3000 present keys, {} tables", s1.tables);
    for i in 0..3000u32 {
        assert_eq!(get(&mut db, format!("absent{i}").as_bytes()), None);
    }
    let s2 = db.stats();
    let (searched, skipped) = (s2.table_probes - s1.table_probes, s2.filter_skips - s1.filter_skips);
    let lookups = 3000 * s2.tables as u64;
    assert_eq!(searched + skipped, lookups);
    assert!(searched * 20 < lookups, "filters let {searched} of {lookups} lookups through");
}

#[test]
fn compaction_keeps_latest_values_and_drops_dead_entries() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
    let mut model = BTreeMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for step in 0..6000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("k{}", x % 700).into_bytes();
        if x.is_multiple_of(5) {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let v = format!("v{step}").into_bytes();
            db.put(&key, &v).unwrap();
            model.insert(key, v);
        }
    }
    let s = db.stats();
    assert!(s.compactions > 0, "{s:?}");
    assert!(s.tables <= 20, "{s:?}");
    for i in 0..700 {
        let key = format!("k{i}").into_bytes();
        assert_eq!(get(&mut db, &key), model.get(&key).cloned(), "key {i}");
    }
    let (storage, closed) = db.close();
    closed.unwrap();
    let mut db = open(storage, &t, 8192);
    for (k, v) in &model {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
}

#[test]
fn open_removes_inputs_a_finished_compaction_replaced() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
    db.put(b"gone", b"old").unwrap();
    db.flush().unwrap();
    // Keep a copy of the oldest table, as if the compaction had crashed before removing it.
    let oldest = db.tables().next().unwrap().id;
    let name = file_name(FileKind::Table, oldest);
    let copy = {
        let s = db.storage();
        let mut f = s.open(&name).unwrap();
        let len = s.len(&mut f).unwrap() as usize;
        let mut b = vec![0; len];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        b
    };
    db.delete(b"gone").unwrap();
    for i in 0..(compaction::TIER_WIDTH as u32 - 1) {
        db.put(&i.to_be_bytes(), b"x").unwrap();
        // Every table spans the same keys: tables that overlap nothing are kept, not merged.
        db.put(b"~", b"x").unwrap();
        db.flush().unwrap();
    }
    assert!(db.stats().compactions > 0);
    assert_eq!(get(&mut db, b"gone"), None);
    let (mut storage, closed) = db.close();
    closed.unwrap();
    let mut f = storage.create(&name).unwrap();
    embedded_io::Write::write_all(&mut storage.io(&mut f), &copy).unwrap();
    let mut db = open(storage, &t, 8192);
    assert_eq!(get(&mut db, b"gone"), None, "a replaced table must not resurrect a deleted key");
    assert_eq!(files(&mut db, ".sst"), 1);
}

fn external(storage: Mem, t: &Rc<Cell<u64>>, mem: usize) -> TestDb {
    let config = Config { compaction: CompactionMode::External, ..Config::default() };
    Db::open(storage, clock(t), [vec![0; mem], vec![0; mem]], config).unwrap()
}

/// Puts keys `k{i}` for `i` in `range` with values tagged `tag` (and two keys at the edges,
/// tagged `tag`), then flushes.
fn fill(db: &mut TestDb, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, range: core::ops::Range<u32>, tag: &str) {
    for i in range {
        let (k, v) = (format!("k{:04}", i % 900).into_bytes(), format!("{tag}{i}").into_bytes());
        if i % 7 == 0 {
            db.delete(&k).unwrap();
            model.remove(&k);
        } else {
            db.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    // Every table spans the same keys: tables that overlap nothing are kept, not merged.
    for edge in [&b"a-edge"[..], b"z-edge"] {
        db.put(edge, tag.as_bytes()).unwrap();
        model.insert(edge.to_vec(), tag.as_bytes().to_vec());
    }
    db.flush().unwrap();
}

fn check(db: &mut TestDb, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for i in 0..900u32 {
        let k = format!("k{i:04}").into_bytes();
        assert_eq!(get(db, &k), model.get(&k).cloned(), "key {i}");
    }
}

#[test]
fn an_external_compaction_installs_behind_tables_flushed_while_it_ran() {
    let t = Rc::new(Cell::new(0));
    let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
    let mut model = BTreeMap::new();
    for r in 0..4u32 {
        fill(&mut db, &mut model, r * 300..(r + 1) * 300, "a");
    }
    assert_eq!(db.stats().compactions, 0, "external mode compacts nothing by itself");
    let tables = db.stats().tables;
    let plan = db.plan_compaction(8192, false).expect("four similar tables are due");
    assert_eq!((plan.count, plan.drop_dead_at), (tables, Some(0)));
    assert_eq!(db.plan_compaction(8192, false), None, "no other run is due");
    let inputs = db.compaction_inputs(&plan);
    let mut scratch = vec![0u8; 8192];
    // The merge runs in steps, with flushes (newer tables) between them.
    let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
    let mut steps = 0;
    while !exec.step(db.storage(), &mut scratch, 50).unwrap() {
        steps += 1;
        if steps % 10 == 0 {
            fill(&mut db, &mut model, 2000 + steps * 10..2000 + steps * 10 + 40, "b");
        }
        check(&mut db, &model);
    }
    assert!(steps > 20, "{steps} steps");
    let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!("finished") };
    let before = db.stats().tables;
    let retired = db.storage().retired;
    assert!(db.install_compaction(done).unwrap());
    assert_eq!(db.stats().tables, before - plan.count + 1);
    assert_eq!(
        db.storage().retired - retired,
        plan.count as u64,
        "every input's file is handed to the storage to close, after its name is gone"
    );
    assert_eq!(db.stats().compactions, 1);
    check(&mut db, &model);
    assert_eq!(files(&mut db, ".tmp"), 0);
    let (storage, closed) = db.close();
    closed.unwrap();
    let mut db = external(storage, &t, 16384);
    check(&mut db, &model);
    assert_eq!(db.stats().tables, before - plan.count + 1, "open removed nothing more");
}

#[test]
fn a_merge_in_steps_writes_the_same_table_as_one_in_one_go() {
    let t = Rc::new(Cell::new(0));
    let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
    let mut model = BTreeMap::new();
    for r in 0..4u32 {
        fill(&mut db, &mut model, r * 250..(r + 1) * 250, "a");
        db.delete_range(b"k0100", b"k0120").unwrap();
    }
    let plan = db.plan_compaction(8192, false).unwrap();
    let inputs = db.compaction_inputs(&plan);
    let mut outputs = Vec::new();
    for budget in [u32::MAX, 1, 7] {
        let mut scratch = vec![0u8; 8192];
        let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
        while !exec.step(db.storage(), &mut scratch, budget).unwrap() {}
        let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!() };
        let mut f = done.file;
        let s = db.storage();
        let len = s.len(&mut f).unwrap() as usize;
        let mut b = vec![0; len];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        outputs.push((b, done.footer));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    db.abandon_compaction(&plan);
}

#[test]
fn a_compaction_filter_keeps_ten_bits_per_key_when_it_outgrows_the_scratch() {
    let t = Rc::new(Cell::new(0));
    let mut db = external(Mem::new(vec![0; 32 << 20]), &t, 1 << 18);
    for r in 0..8u32 {
        for i in r * 750..(r + 1) * 750 {
            db.put(format!("f{i:06}").as_bytes(), &i.to_le_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    // Forced: the tables hold ascending keys, which the policy would keep as they are.
    let plan = db.plan_compaction(1 << 16, true).unwrap();
    assert_eq!(plan.count, 8);
    let inputs = db.compaction_inputs(&plan);
    let want = crate::filter::blocks_for(6000);
    // Scratch for the whole filter at once, then for half of it (two windows), merged at once
    // and in small steps, fresh or holding what an earlier merge left: the same table every
    // time.
    let mut outputs = Vec::new();
    for (scratch_len, budget, fill) in
        [(1 << 16, u32::MAX, 0), (1 << 16, 1000, 0xFF), (4096, u32::MAX, 0), (4096, 7, 0xA5)]
    {
        assert_eq!(compaction::merge::filter_blocks(6000, scratch_len - 9 * 7), want);
        let mut scratch = vec![fill; scratch_len];
        let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
        while !exec.step(db.storage(), &mut scratch, budget).unwrap() {}
        let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!() };
        assert_eq!(done.footer.filter_len as usize, want * crate::filter::BLOCK_LEN, "{scratch_len}");
        let mut f = done.file;
        let s = db.storage();
        let mut b = vec![0; s.len(&mut f).unwrap() as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        outputs.push(b);
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]));
    // Installed, the windowed table answers every key and rules out absent ones.
    let mut scratch = vec![0u8; 4096];
    let done = compaction::execute(db.storage(), plan, &inputs, &mut scratch).unwrap();
    assert!(db.install_compaction(done).unwrap());
    assert_eq!(db.stats().tables, 1);
    for i in 0..6000u32 {
        assert_eq!(get(&mut db, format!("f{i:06}").as_bytes()), Some(i.to_le_bytes().to_vec()));
    }
    let s0 = db.stats();
    for i in 0..6000u32 {
        assert_eq!(get(&mut db, format!("g{i:06}").as_bytes()), None);
    }
    let searched = db.stats().table_probes - s0.table_probes;
    assert!(searched < 6000 / 40, "the filter let {searched} of 6000 absent keys through");
}

#[test]
fn tables_stay_within_a_storage_with_few_files() {
    // Seven files (the firmware's): three tables at most, the rest for WALs and a table being
    // written.
    type Small = MemStorage<Vec<u8>, 7>;
    assert_eq!(compaction::table_limit(&Small::new(vec![0; 7])), 3);
    let t = Rc::new(Cell::new(0));
    let mut db =
        Db::open(Small::new(vec![0; 7 << 14]), clock(&t), [vec![0; 2048], vec![0; 2048]], Config::default())
            .unwrap();
    let mut most = 0;
    for i in 0..3000u32 {
        db.put(format!("k{:04}", i % 400).as_bytes(), &i.to_le_bytes()).unwrap();
        most = most.max(db.stats().tables);
    }
    assert!(db.stats().compactions > 10, "{:?}", db.stats());
    assert!(most <= 3, "{most} tables");
    let mut buf = [0u8; 16];
    for i in 2600..3000u32 {
        assert_eq!(
            db.get(format!("k{:04}", i % 400).as_bytes(), &mut buf).unwrap(),
            Some(&i.to_le_bytes()[..])
        );
    }
}

/// Puts `k{i}` until a write rotates; returns the next `i`.
fn put_until_rotation(db: &mut TestDb, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, mut i: u32) -> u32 {
    let rotations = db.stats().immutable_keys;
    loop {
        let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
        match db.put(&k, &v) {
            Ok(()) => {
                model.insert(k, v);
            }
            Err(Error::FlushPending) => return i,
            Err(e) => panic!("{e:?}"),
        }
        i += 1;
        if db.stats().immutable_keys != rotations && db.stats().immutable_keys > 0 {
            return i;
        }
    }
}

#[test]
fn a_flush_run_apart_is_refused_into_then_installed_and_reads_see_its_memtable_throughout() {
    let t = Rc::new(Cell::new(0));
    let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 4096);
    let mut model = BTreeMap::new();
    let mut i = put_until_rotation(&mut db, &mut model, 0);
    let plan = db.plan_flush().expect("an immutable MemTable to flush");
    assert_eq!(db.plan_flush(), None, "one flush at a time");
    let mut copy = db.copy_immutable(vec![0u8; 4096]).ok().unwrap();
    // The rotation sealed the MemTable without sorting it, and the flusher's copy is a memcpy.
    let unsorted = |m: Option<&MemTable<Vec<u8>>>| m.is_some_and(|m| m.is_sealed() && !m.is_frozen());
    assert!(unsorted(db.memtables().1) && unsorted(Some(&copy)));
    // Fill the active MemTable: the write that must rotate is refused, nothing logged, and
    // the database is not poisoned.
    let wal_before = loop {
        let wal = db.stats().wal_bytes;
        let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
        match db.put(&k, &v) {
            Ok(()) => {
                model.insert(k, v);
                i += 1;
            }
            Err(Error::FlushPending) => break wal,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(db.stats().wal_bytes, wal_before, "a refused write logs nothing");
    assert!(!db.is_poisoned());
    assert_eq!(db.flush(), Err(Error::FlushPending));
    for (k, v) in &model {
        assert_eq!(get(&mut db, k).as_ref(), Some(v), "read while the flush runs");
    }
    // A scan sorts the sealed MemTable in place first, and sees every write in order.
    let mut keys = vec![0u8; db.scan_key_bytes()];
    let (mut key, mut value, mut seen) = ([0u8; 64], [0u8; 64], Vec::new());
    let mut scan = db.scan(KeyRange::all(), false, &mut keys).unwrap();
    while let Some((k, v)) = scan.next(&mut key, &mut value).unwrap() {
        seen.push((key[..k].to_vec(), value[..v].to_vec()));
    }
    drop(scan);
    assert_eq!(seen, model.clone().into_iter().collect::<Vec<_>>());
    assert!(db.memtables().1.is_some_and(MemTable::is_frozen));
    let table = flush::write_temp(db.storage(), &plan, &mut copy).unwrap();
    assert!(copy.is_frozen(), "the flush sorted its copy");
    assert_eq!(files(&mut db, ".tmp"), 1);
    db.install_flush(Flushed { plan, table, state: flush::TableState::Written }).unwrap();
    assert_eq!((files(&mut db, ".tmp"), db.stats().tables, db.stats().immutable_keys), (0, 1, 0));
    // The refused write goes through now, rotating.
    let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
    db.put(&k, &v).unwrap();
    model.insert(k, v);
    assert!(db.stats().immutable_keys > 0);
    // A failed flush poisons; reads go on.
    let plan = db.plan_flush().unwrap();
    let err = Error::Storage(MemError::Full);
    assert_eq!(db.fail_flush(&plan, err.clone()), Err(err));
    assert!(db.is_poisoned());
    assert_eq!(db.put(b"x", b"y"), Err(Error::Poisoned));
    for (k, v) in &model {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
    // Reopened: every write is there (the table, then the WALs replayed).
    let (storage, _) = db.close();
    let mut db = external(storage, &t, 4096);
    for (k, v) in &model {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
}

#[test]
fn a_flushed_table_is_synced_once_whether_the_runner_synced_published_or_only_wrote_it() {
    use flush::TableState;
    for state in [TableState::Written, TableState::Synced, TableState::Published] {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 4096);
        let mut model = BTreeMap::new();
        put_until_rotation(&mut db, &mut model, 0);
        let plan = db.plan_flush().expect("an immutable MemTable to flush");
        let mut copy = db.copy_immutable(vec![0u8; 4096]).ok().unwrap();
        let (mut file, footer) = flush::write_temp(db.storage(), &plan, &mut copy).unwrap().unwrap();
        let before = db.storage().syncs;
        let file = match state {
            TableState::Written => file,
            TableState::Synced => {
                flush::sync_temp(db.storage(), &mut file).unwrap();
                file
            }
            TableState::Published => flush::publish(db.storage(), &plan, file).unwrap(),
        };
        db.install_flush(Flushed { plan, table: Some((file, footer)), state }).unwrap();
        assert_eq!(db.storage().syncs - before, 1, "{state:?}: syncs from the write to the install");
        assert_eq!((files(&mut db, ".tmp"), db.stats().tables), (0, 1), "{state:?}");
        // Durable: a power cut right after the install keeps the table and every write.
        let mut storage = core::mem::replace(db.storage(), Mem::new(Vec::new()));
        drop(db);
        storage.power_cut(7);
        let mut db = external(storage, &t, 4096);
        assert_eq!(db.stats().tables, 1, "{state:?}");
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v), "{state:?}");
        }
    }
}

#[test]
fn eviction_of_a_running_input_discards_the_output_and_a_failure_poisons() {
    let t = Rc::new(Cell::new(0));
    let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
    let mut model = BTreeMap::new();
    for r in 0..4u32 {
        fill(&mut db, &mut model, r * 300..(r + 1) * 300, "a");
    }
    let plan = db.plan_compaction(8192, false).unwrap();
    let inputs = db.compaction_inputs(&plan);
    let mut scratch = vec![0u8; 8192];
    let done = compaction::execute(db.storage(), plan, &inputs, &mut scratch).unwrap();
    assert!(db.evict_oldest().unwrap());
    let tables = db.stats().tables;
    assert!(!db.install_compaction(done).unwrap(), "an input was evicted");
    assert_eq!(db.stats().tables, tables);
    assert_eq!(files(&mut db, ".tmp"), 0);
    assert!(!db.is_poisoned());
    // A failed compaction poisons the database like a failed write.
    let plan = db.plan_compaction(8192, true).unwrap();
    assert_eq!(db.compactions_running(), 1);
    let err = Error::Storage(MemError::Full);
    assert_eq!(db.fail_compaction(&plan, err.clone()), Err(err));
    assert_eq!(db.compactions_running(), 0);
    assert!(db.is_poisoned());
    assert_eq!(db.put(b"x", b"y"), Err(Error::Poisoned));
}

#[test]
fn failed_sync_poisons_writes_but_not_reads() {
    struct FailingSync(Mem, bool);
    impl Storage for FailingSync {
        type Error = MemError;
        type File = crate::mem_storage::MemFile;
        type Io<'a> = crate::mem_storage::MemIo<'a>;
        fn create(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
            self.0.create(n)
        }
        fn open(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
            self.0.open(n)
        }
        fn io<'a>(&'a mut self, f: &'a mut Self::File) -> Self::Io<'a> {
            self.0.io(f)
        }
        fn len(&mut self, f: &mut Self::File) -> core::result::Result<u64, MemError> {
            self.0.len(f)
        }
        fn truncate(&mut self, f: &mut Self::File, l: u64) -> core::result::Result<(), MemError> {
            self.0.truncate(f, l)
        }
        fn sync(&mut self, f: &mut Self::File) -> core::result::Result<(), MemError> {
            if self.1 {
                Err(MemError::Full)
            } else {
                self.0.sync(f)
            }
        }
        fn rename(&mut self, a: &str, b: &str) -> core::result::Result<(), MemError> {
            self.0.rename(a, b)
        }
        fn remove(&mut self, n: &str) -> core::result::Result<(), MemError> {
            self.0.remove(n)
        }
        fn sync_dir(&mut self) -> core::result::Result<(), MemError> {
            self.0.sync_dir()
        }
        fn list(&mut self, v: &mut dyn FnMut(&str)) -> core::result::Result<(), MemError> {
            self.0.list(v)
        }
    }
    let mut db = Db::open(
        FailingSync(Mem::new(vec![0; 1 << 16]), false),
        || 0,
        [vec![0; 1024], vec![0; 1024]],
        Config::default(),
    )
    .unwrap();
    db.put(b"a", b"1").unwrap();
    db.storage().1 = true;
    assert_eq!(db.put(b"b", b"2"), Err(Error::Storage(MemError::Full)));
    db.storage().1 = false;
    assert_eq!(db.put(b"c", b"3"), Err(Error::Poisoned), "no retry into a false success");
    assert_eq!(db.sync(), Err(Error::Poisoned));
    let mut buf = [0u8; 8];
    assert_eq!(db.get(b"a", &mut buf).unwrap(), Some(&b"1"[..]));
}

#[test]
fn rotation_adds_no_wal_sync_when_every_write_is_already_synced() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
    let mut i = 0u32;
    loop {
        let before = db.storage().syncs;
        db.put(&i.to_be_bytes(), &[0; 30]).unwrap();
        i += 1;
        if db.stats().immutable_keys > 0 {
            // This write rotated (no immutable table to flush yet): its own sync and the new
            // WAL's header (synced when the WAL is created), none for the old WAL.
            assert_eq!(db.storage().syncs - before, 2);
            break;
        }
        assert_eq!(db.storage().syncs - before, 1);
    }
}

/// The current WAL's name and bytes.
fn wal_bytes(db: &mut TestDb) -> (std::string::String, Vec<u8>) {
    let id = db.wal_sync_targets()[1].unwrap().wal;
    let name = file_name(FileKind::Wal, id);
    let s = db.storage();
    let mut f = s.open(&name).unwrap();
    let len = s.len(&mut f).unwrap() as usize;
    let mut b = vec![0; len];
    read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
    (name.as_str().into(), b)
}

#[test]
fn a_sync_made_by_the_host_moves_the_watermark_and_a_failed_one_poisons() {
    let t = Rc::new(Cell::new(0));
    let config = Config::with_sync(crate::SyncPolicy::Manual);
    let mut db =
        Db::open(Mem::new(vec![0; 1 << 20]), clock(&t), [vec![0; 4096], vec![0; 4096]], config).unwrap();
    db.put(b"a", b"1").unwrap();
    db.put(b"b", b"2").unwrap();
    assert_eq!(db.wal_unsynced(), 2);
    let target = db.wal_sync_targets()[1].unwrap();
    // Appended while the host's sync runs: not covered by it.
    db.put(b"c", b"3").unwrap();
    let (name, _) = wal_bytes(&mut db);
    {
        let s = db.storage();
        let mut f = s.open(&name).unwrap();
        s.sync(&mut f).unwrap();
    }
    assert!(db.wal_synced(target, Ok(())).unwrap());
    assert_eq!(db.wal_unsynced(), 1, "the write appended after the target is still unsynced");
    let before = db.wal_sync_targets()[1].unwrap().end;
    db.put(b"d", b"4").unwrap();
    let (_, bytes) = wal_bytes(&mut db);
    let at = before as usize + HEADER_LEN;
    let watermark = u32::from_le_bytes(bytes[at..at + WATERMARK_LEN].try_into().unwrap());
    assert_eq!(u64::from(watermark), target.end, "the next record claims what the host synced");
    // A target of a WAL that is neither current nor waiting changes nothing.
    let stale = SyncTarget { wal: target.wal + 100, ..target };
    assert!(!db.wal_synced(stale, Ok(())).unwrap());
    assert_eq!(db.wal_unsynced(), 2);
    assert_eq!(db.wal_synced(target, Err(MemError::Full)), Err(Error::Storage(MemError::Full)));
    assert!(db.is_poisoned());
    assert_eq!(db.put(b"e", b"5"), Err(Error::Poisoned));
    assert_eq!(get(&mut db, b"d").as_deref(), Some(&b"4"[..]), "reads keep working");
}

#[test]
fn a_host_sync_of_the_current_wal_counts_only_after_the_wal_it_was_rotated_from() {
    let t = Rc::new(Cell::new(0));
    let config = Config::with_sync(crate::SyncPolicy::Manual);
    let mut db =
        Db::open(Mem::new(vec![0; 1 << 20]), clock(&t), [vec![0; 2048], vec![0; 2048]], config).unwrap();
    let mut i = 0u32;
    while db.stats().immutable_keys == 0 {
        db.put(&i.to_be_bytes(), &[0; 30]).unwrap();
        i += 1;
    }
    let [Some(older), Some(current)] = db.wal_sync_targets() else { panic!("two targets") };
    assert!(older.wal < current.wal);
    let unsynced = db.wal_unsynced();
    assert!(unsynced > 1, "the rotated-from WAL's writes wait: {unsynced}");
    // Reported out of order: the current WAL's sync counts for nothing yet.
    assert!(!db.wal_synced(current, Ok(())).unwrap());
    assert_eq!(db.wal_unsynced(), unsynced);
    assert!(db.wal_synced(older, Ok(())).unwrap());
    assert_eq!(db.wal_sync_targets()[0], None, "the older WAL is durable");
    assert!(db.wal_synced(current, Ok(())).unwrap());
    assert_eq!(db.wal_unsynced(), 0);
}

#[test]
fn write_batch_applies_all_entries_and_later_entries_win() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
    db.put(b"gone", b"x").unwrap();
    let mut b = WriteBatch::new(vec![0u8; 1024]);
    b.put(b"a", b"1").unwrap();
    b.put(b"a", b"2").unwrap();
    b.delete(b"gone").unwrap();
    b.put(b"c", b"3").unwrap();
    db.write_batch(&b).unwrap();
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&mut db, b"gone"), None);
    // Replayed from the WAL after a reopen, then from an SSTable after a flush.
    let (storage, closed) = db.close();
    closed.unwrap();
    let mut db = open(storage, &t, 4096);
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&mut db, b"c").as_deref(), Some(&b"3"[..]));
    db.flush().unwrap();
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&mut db, b"gone"), None);
}

#[test]
fn torn_batch_is_absent_as_a_whole() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
    db.put(b"before", b"1").unwrap();
    let mut b = WriteBatch::new(vec![0u8; 1024]);
    for i in 0..10u8 {
        b.put(&[b'k', i], &[i; 20]).unwrap();
    }
    db.write_batch(&b).unwrap();
    let wal_len = db.stats().wal_bytes;
    let (mut storage, closed) = db.close();
    closed.unwrap();
    // Cut the WAL one byte short of the end of the batch record.
    let name = {
        let mut n = None;
        storage
            .list(&mut |f| {
                if f.ends_with(".wal") {
                    n = Some(f.to_string())
                }
            })
            .unwrap();
        n.unwrap()
    };
    let mut f = storage.open(&name).unwrap();
    let first = wal_len - (b.payload().len() + HEADER_LEN + WATERMARK_LEN) as u64;
    storage.truncate(&mut f, wal_len - 1).unwrap();
    let mut db = open(storage, &t, 4096);
    assert_eq!(db.stats().torn_tails_truncated, 1);
    assert_eq!(get(&mut db, b"before").as_deref(), Some(&b"1"[..]));
    for i in 0..10u8 {
        assert_eq!(get(&mut db, &[b'k', i]), None, "no part of a torn batch survives");
    }
    assert_eq!(db.stats().wal_bytes, first);
}

#[test]
fn oversized_batch_is_refused_and_rotation_makes_room_for_the_rest() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
    let mut big = WriteBatch::new(vec![0u8; 8192]);
    for i in 0..100u32 {
        big.put(&i.to_be_bytes(), &[0; 40]).unwrap();
    }
    assert!(matches!(db.write_batch(&big), Err(Error::BatchTooLarge { .. })));
    assert!(!db.is_poisoned());
    let mut model = BTreeMap::new();
    for round in 0..50u32 {
        let mut b = WriteBatch::new(vec![0u8; 512]);
        for j in 0..5u32 {
            let k = (round * 3 + j).to_be_bytes();
            b.put(&k, &round.to_le_bytes()).unwrap();
            model.insert(k.to_vec(), round.to_le_bytes().to_vec());
        }
        db.write_batch(&b).unwrap();
    }
    assert!(db.stats().flushes > 0);
    for (k, v) in &model {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
}

#[test]
fn limits_are_enforced_with_errors() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
    assert_eq!(db.put(b"", b"v"), Err(Error::EmptyKey));
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    assert_eq!(db.put(&long, b"v"), Err(Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN }));
    assert!(matches!(db.put(b"k", &[0; 4096]), Err(Error::ValueTooLarge { len: 4096, .. })));
    db.put(b"k", &[7; 300]).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(db.get(b"k", &mut small), Err(Error::BufferTooSmall { needed: 300 }));
    assert!(matches!(
        Db::open(Mem::new(vec![0; 4096]), || 0, [vec![0; 100], vec![0; 100]], Config::default()),
        Err(Error::InsufficientMemory { .. })
    ));
}

/// Sequential keys flush into tables that overlap nothing: kept as flushed (never merged), each
/// get searches only the table whose key bounds hold the key, and scans of any range, either
/// way, return the model's entries (tables outside the range are never positioned). A write
/// that overlaps them makes them runs of their own again: merged as before, nothing lost.
#[cfg(feature = "many-tables")]
#[test]
fn tables_of_sequential_keys_are_kept_as_flushed_until_a_write_overlaps_them() {
    let t = Rc::new(Cell::new(0));
    let mut db = open_big(&t, Config::default());
    let key = |i: u32| format!("seq{i:06}").into_bytes();
    let mut model = BTreeMap::new();
    for i in 0..3000u32 {
        db.put(&key(i), &i.to_le_bytes()).unwrap();
        model.insert(key(i), i.to_le_bytes().to_vec());
    }
    db.flush().unwrap();
    let s = db.stats();
    assert_eq!(s.compactions, 0, "{s:?}");
    assert!(s.tables > 3 * compaction::TIER_WIDTH, "one table per flush: {s:?}");
    assert!(db.live_tables().iter().all(|t| !t.footer().expires), "no entry has a TTL");
    assert_eq!(db.compaction_backlog(), 1, "one run");
    let mut buf = [0u8; 64];
    for i in (0..3000u32).step_by(7) {
        assert_eq!(db.get(&key(i), &mut buf).unwrap(), Some(&i.to_le_bytes()[..]), "key {i}");
    }
    let probes = db.stats().table_probes - s.table_probes;
    assert!(probes <= 3000 / 7 + 1, "{probes} searches: one table per key");
    let scan = |db: &mut BigDb, range: KeyRange<'_>, reverse: bool| {
        let mut keys = vec![0u8; db.scan_key_bytes() + (64 << 10)];
        let (mut k, mut v, mut seen) = ([0u8; 64], [0u8; 64], Vec::new());
        let mut scan = db.scan(range, reverse, &mut keys).unwrap();
        while let Some((kn, vn)) = scan.next(&mut k, &mut v).unwrap() {
            seen.push((k[..kn].to_vec(), v[..vn].to_vec()));
        }
        seen
    };
    let (lo, hi) = (key(1234), key(2321));
    for (range, want) in [
        (KeyRange::all(), model.clone()),
        (
            KeyRange::new(core::ops::Bound::Included(&lo), core::ops::Bound::Excluded(&hi)),
            model.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        (
            KeyRange::prefix(b"seq0022"),
            model.range(key(2200)..key(2300)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        (KeyRange::prefix(b"zzz"), BTreeMap::new()),
    ] {
        let want: Vec<_> = want.into_iter().collect();
        assert_eq!(scan(&mut db, range, false), want);
        assert_eq!(scan(&mut db, range, true), want.into_iter().rev().collect::<Vec<_>>());
    }
    // Scans resumed past a key (as a batched iterator resumes), with newer versions of some
    // keys in the MemTable: a table is positioned only when it may hold the next key, and every
    // key comes once, at its newest version.
    for i in (7..3000u32).step_by(301) {
        db.put(&key(i), b"mem").unwrap();
        model.insert(key(i), b"mem".to_vec());
    }
    let from = key(1500);
    let after: Vec<_> = model.range(key(1501)..).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scan(&mut db, KeyRange::all().after(&from), false), after);
    let before: Vec<_> = model.range(..from.clone()).rev().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scan(&mut db, KeyRange::all().before(&from), true), before);
    assert_eq!(scan(&mut db, KeyRange::all(), false), model.clone().into_iter().collect::<Vec<_>>());
    // Overwrites spread over the keys: every table overlaps one of theirs, and the policy
    // merges again.
    for r in 0..compaction::TIER_WIDTH as u32 * 2 {
        for i in (r..3000).step_by(300) {
            db.put(&key(i), b"new").unwrap();
            model.insert(key(i), b"new".to_vec());
        }
        db.flush().unwrap();
    }
    let s = db.stats();
    assert!(s.compactions > 0, "{s:?}");
    for (k, v) in &model {
        assert_eq!(db.get(k, &mut buf).unwrap(), Some(&v[..]));
    }
    assert_eq!(scan(&mut db, KeyRange::all(), false), model.into_iter().collect::<Vec<_>>());
}

/// Sequential keys written with a TTL flush into tables that overlap nothing and whose every
/// entry expires: they are kept as flushed (no merge rewrites them) and each is removed whole
/// once the latest of its entries has expired. Tables and bytes stay bounded however long the
/// stream runs, the live keys read back and the expired ones are gone.
#[cfg(feature = "many-tables")]
#[test]
fn tables_of_sequential_keys_with_a_ttl_are_kept_then_dropped_whole_once_expired() {
    let t = Rc::new(Cell::new(0));
    let mut db = open_big(&t, Config::default());
    let key = |i: u32| format!("tel{i:06}").into_bytes();
    // Each round writes 60 keys that live two rounds, then flushes.
    let (rounds, per_round, ttl) = (240u32, 60u32, 20u64);
    let mut most = (0, 0);
    for round in 0..rounds {
        t.set(u64::from(round) * 10);
        for i in round * per_round..(round + 1) * per_round {
            db.put_with_ttl(&key(i), &i.to_le_bytes(), ttl).unwrap();
        }
        db.flush().unwrap();
        let s = db.stats();
        most = (most.0.max(s.tables), most.1.max(s.table_bytes));
    }
    let s = db.stats();
    assert!(db.live_tables().iter().all(|t| t.footer().latest_expiry().is_some()), "{s:?}");
    assert_eq!(s.compactions, 0, "nothing merged: {s:?}");
    assert!(s.expired_tables >= u64::from(rounds) - 4, "dropped whole: {s:?}");
    // Kept and never dropped, the tables grew to 95 and 446 KB; merged (the policy before the
    // latest expiry was recorded), to 13 and 70 KB.
    assert!(most.0 <= 4, "at most {} tables: {s:?}", most.0);
    assert!(most.1 < 24 << 10, "at most {} bytes of tables: {s:?}", most.1);
    assert_eq!(db.compaction_backlog(), 1, "kept tables count once together");
    let mut buf = [0u8; 8];
    let last = rounds * per_round;
    for i in (last - per_round..last).step_by(7) {
        assert_eq!(db.get(&key(i), &mut buf).unwrap(), Some(&i.to_le_bytes()[..]), "live key {i}");
    }
    for i in (0..last - 3 * per_round).step_by(97) {
        assert_eq!(db.get(&key(i), &mut buf).unwrap(), None, "expired key {i}");
    }
}

/// With `DropOldest`, over the cap, the tables in which everything expired are removed before
/// any live data is evicted: the oldest table (settings without a TTL) stays. (Without
/// `many-tables` tables have no key bounds, and only expired tables from the oldest on go.)
#[cfg(feature = "many-tables")]
#[test]
fn over_a_cap_that_drops_the_oldest_expired_tables_go_before_live_data() {
    let t = Rc::new(Cell::new(0));
    let mem = 2048;
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, mem);
    db.put(b"settings", b"keep me").unwrap();
    db.flush().unwrap();
    for round in 0..6u32 {
        for i in 0..20u32 {
            db.put_with_ttl(format!("t{round:02}{i:03}").as_bytes(), &[7u8; 40], 5).unwrap();
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().tables, 7);
    t.set(10);
    // The cap is reached now (as by a write's WAL extension): everything but the settings, the
    // newest table (which always stays) and the WAL must go.
    let cap = db.used_bytes() - 1;
    let config = Config { max_bytes: Some(cap), when_full: crate::WhenFull::DropOldest, ..Config::default() };
    db.space = Space::new::<MemError>(&config, 0).unwrap();
    db.enforce_cap().unwrap();
    let s = db.stats();
    assert_eq!((s.evicted_tables, s.expired_tables), (0, 5), "{s:?}");
    assert_eq!(get(&mut db, b"settings").as_deref(), Some(&b"keep me"[..]));
}

/// A compaction's output whose entries all expired is removed only once no input it replaced
/// can come back: an input whose removal had not happened (a queued unlink, a power cut before
/// the directory was synced) would otherwise be live again at the next open, with nothing left to
/// name it as replaced, and show the value the output had overwritten.
#[test]
fn an_expired_compaction_output_is_removed_only_with_the_inputs_it_replaced() {
    let t = Rc::new(Cell::new(0));
    let config = Config { compaction: CompactionMode::External, ..Config::default() };
    let mut db =
        Db::open(Mem::new(vec![0; 1 << 20]), clock(&t), [vec![0; 2048], vec![0; 2048]], config).unwrap();
    db.put(b"k", b"plain").unwrap();
    db.flush().unwrap();
    db.put_with_ttl(b"k", b"brief", 5).unwrap();
    db.flush().unwrap();
    let plan = db.plan_compaction(1 << 16, true).unwrap();
    assert_eq!(plan.count, 2);
    let first = file_name(FileKind::Table, plan.first);
    let read = |db: &mut TestDb, name: &str| {
        let s = db.storage();
        let mut f = s.open(name).unwrap();
        let mut b = vec![0; s.len(&mut f).unwrap() as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        b
    };
    let older = read(&mut db, &first);
    let inputs = db.compaction_inputs(&plan);
    let mut scratch = vec![0u8; 1 << 16];
    let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
    while !exec.step(db.storage(), &mut scratch, u32::MAX).unwrap() {}
    let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!("the merge is complete") };
    assert!(done.footer.latest_expiry().is_some(), "the output holds only the entry with a TTL");
    assert!(db.install_compaction(done).unwrap());
    // The older input comes back, as an unlink still queued or undone by a power cut leaves it.
    let s = db.storage();
    let mut f = s.create(&first).unwrap();
    crate::io::write_at(&mut s.io(&mut f), 0, &[&older]).unwrap();
    s.sync(&mut f).unwrap();
    db.put(b"newer", b"1").unwrap();
    db.flush().unwrap();
    t.set(10);
    db.put(b"newest", b"1").unwrap();
    db.flush().unwrap();
    assert_eq!(db.stats().expired_tables, 1, "the output expired whole and was removed");
    assert_eq!(get(&mut db, b"k"), None);
    let (storage, _) = db.close();
    let mut db = open(storage, &t, 2048);
    assert_eq!(get(&mut db, b"k"), None, "the overwritten value does not come back");
}

/// A telemetry stream with a TTL under a cap that refuses writes: the oldest tables expire whole
/// and are removed when a write would otherwise be refused, so the stream goes on while what is
/// alive fits the cap (the cap here holds a few rounds; the stream writes many times the cap).
#[test]
fn a_ttl_stream_under_a_cap_that_refuses_writes_goes_on_as_its_oldest_tables_expire() {
    let t = Rc::new(Cell::new(0));
    let mem = 2048;
    let cap = crate::space::min_max_bytes(mem);
    let config =
        Config { max_bytes: Some(cap), when_full: crate::WhenFull::RefuseWrites, ..Config::default() };
    let mut db =
        Db::open(Mem::new(vec![0; 4 << 20]), clock(&t), [vec![0; mem], vec![0; mem]], config).unwrap();
    let key = |i: u32| format!("tel{i:06}").into_bytes();
    let (rounds, per_round, ttl) = (200u32, 20u32, 20u64);
    let mut written = 0u64;
    for round in 0..rounds {
        t.set(u64::from(round) * 10);
        for i in round * per_round..(round + 1) * per_round {
            db.put_with_ttl(&key(i), &[7u8; 40], ttl).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            written += 40;
        }
    }
    let s = db.stats();
    assert!(written > 4 * cap, "the stream wrote {written} bytes under a cap of {cap}");
    assert_eq!(s.full_refusals, 0, "{s:?}");
    assert!(s.expired_tables > 0, "{s:?}");
    assert!(s.file_bytes <= cap, "{s:?}");
    let last = rounds * per_round - 1;
    assert_eq!(get(&mut db, &key(last)).as_deref(), Some(&[7u8; 40][..]));
    assert_eq!(get(&mut db, &key(0)), None);
}

/// A range delete over kept tables (a table with range deletes overlaps every table) makes them
/// runs of their own for the policy, which merges them; the compaction backlog a host throttles
/// writes by grows by one, not by every table it overlaps, so writers are not stopped for it.
#[cfg(feature = "many-tables")]
#[test]
fn a_range_delete_over_kept_tables_adds_one_to_the_backlog_and_they_are_merged() {
    let t = Rc::new(Cell::new(0));
    let mut db = open_big(&t, Config { compaction: CompactionMode::External, ..Config::default() });
    let key = |i: u32| format!("seq{i:06}").into_bytes();
    for i in 0..3000u32 {
        db.put(&key(i), &i.to_le_bytes()).unwrap();
    }
    db.flush().unwrap();
    let tables = db.stats().tables;
    assert!(tables > 3 * compaction::TIER_WIDTH);
    assert_eq!(db.compaction_backlog(), 1);
    assert_eq!(db.plan_compaction(1 << 16, false), None, "tables that overlap nothing are kept");
    db.delete_range(&key(0), &key(1000)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.compaction_backlog(), 2, "one more run, however many tables it overlaps");
    let plan = db.plan_compaction(1 << 16, false).expect("the overlapped tables are merged");
    assert!(plan.count >= compaction::TIER_WIDTH, "{plan:?}");
    let mut buf = [0u8; 16];
    assert_eq!(db.get(&key(999), &mut buf).unwrap(), None);
    assert_eq!(db.get(&key(1000), &mut buf).unwrap(), Some(&1000u32.to_le_bytes()[..]));
}

#[test]
fn refused_writes_answer_poisoned_while_reads_and_the_wals_sync_go_on() {
    let t = Rc::new(Cell::new(0));
    let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
    db.put(b"kept", b"1").unwrap();
    db.refuse_writes();
    assert!(db.is_poisoned());
    assert_eq!(db.put(b"later", b"2"), Err(Error::Poisoned));
    assert_eq!(get(&mut db, b"kept"), Some(b"1".to_vec()));
    db.sync().expect("the WAL still syncs");
    let (storage, closed) = db.close();
    closed.expect("close syncs");
    // A read-only database refuses writes anyway: it stays unpoisoned and says why.
    let config = Config { read_only: true, ..Config::default() };
    let mut db: TestDb = Db::open(storage, clock(&t), [vec![0; 2048], vec![0; 2048]], config).unwrap();
    db.refuse_writes();
    assert!(!db.is_poisoned());
    assert_eq!(db.put(b"later", b"2"), Err(Error::ReadOnly));
    assert_eq!(get(&mut db, b"kept"), Some(b"1".to_vec()));
    assert_eq!(get(&mut db, b"later"), None);
}
