//! Damaged bytes are reported as corruption, never read as a wrong value, never a panic, never
//! silently skipped: a flipped byte anywhere in an SSTable (records, index, footer) makes open or
//! the `get` that touches it fail with `is_corruption()`; a damaged WAL record followed by valid
//! records is corruption (a crash only ever damages the tail), and so is a torn tail in a WAL
//! that is not the newest, or anything but zeros in its preallocated tail.

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use common::{sst_files, wal_files, wal_logical_len, wal_record_starts, Rng};
use minivault::{Db, Durability, Error, Options};
use minivault_core::sstable::FOOTER_LEN;

const KEYS: usize = 20;

/// Small MemTables: the sweeps below open the database hundreds of times.
const SMALL: Options =
    Options { memtable_bytes: 16 * 1024, durability: Durability::Always, ..Options::DEFAULT };

fn key(i: usize) -> Vec<u8> {
    format!("key{i:03}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("val{i}-{}", "w".repeat(i % 7)).into_bytes()
}

/// Overwrites one byte of a file in place.
fn set_byte(path: &Path, pos: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    OpenOptions::new().write(true).open(path).unwrap().write_all_at(&[byte], pos as u64).unwrap();
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn assert_corruption_naming(e: &Error, file: &str, what: &str) {
    assert!(e.is_corruption(), "{what}: expected corruption, got {e} ({e:?})");
    let text = e.to_string();
    assert!(text.contains(file), "{what}: the error does not name {file}: {text}");
}

/// Opens the database and reads every key. Returns whether the damage was reported; panics on
/// a wrong value, a key reported absent, or an error that is not corruption naming `file`.
fn open_and_read_all(dir: &Path, file: &str, what: &str) -> bool {
    let db = match Db::open_with(dir, SMALL) {
        Err(e) => {
            assert_corruption_naming(&e, file, what);
            return true;
        }
        Ok(db) => db,
    };
    let mut reported = false;
    for i in 0..KEYS {
        match db.get(&key(i)) {
            Ok(got) => assert_eq!(got, Some(value(i)), "{what}: key {i} read wrong"),
            Err(e) => {
                assert_corruption_naming(&e, file, &format!("{what}, get key {i}"));
                reported = true;
            }
        }
    }
    reported
}

/// A database whose only data is one SSTable of `KEYS` entries; returns the table's path.
fn database_with_one_table(dir: &Path) -> std::path::PathBuf {
    let db = Db::open(dir).unwrap();
    for i in 0..KEYS {
        db.put(&key(i), &value(i)).unwrap();
    }
    db.flush().unwrap();
    assert_eq!(db.stats().wal_bytes, 0);
    drop(db);
    let tables = sst_files(dir);
    assert_eq!(tables.len(), 1);
    tables[0].clone()
}

#[test]
fn every_flipped_byte_of_an_sstable_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let table = database_with_one_table(dir.path());
    let name = file_name(&table);
    let pristine = fs::read(&table).unwrap();
    let footer_at = pristine.len() - FOOTER_LEN;
    let index_at = u64::from_le_bytes(pristine[footer_at + 16..footer_at + 24].try_into().unwrap()) as usize;
    assert!(index_at < footer_at, "index offset {index_at}, footer at {footer_at}");
    assert!(!open_and_read_all(dir.path(), &name, "pristine"));

    let mut counts = [0usize; 3];
    for pos in 0..pristine.len() {
        // One bit, the top bit, or every bit: a different pattern at neighbouring positions.
        let masks: &[u8] =
            if pos >= footer_at { &[0x01, 0x80, 0xff] } else { &[[0x01u8, 0x80, 0xff][pos % 3]] };
        for &mask in masks {
            set_byte(&table, pos, pristine[pos] ^ mask);
            let section = if pos >= footer_at {
                "footer"
            } else if pos >= index_at {
                "index"
            } else {
                "data"
            };
            let what = format!("byte {pos} ({section}) ^ {mask:#04x}");
            assert!(open_and_read_all(dir.path(), &name, &what), "{what}: the damage went unnoticed");
            set_byte(&table, pos, pristine[pos]);
            counts[match section {
                "data" => 0,
                "index" => 1,
                _ => 2,
            }] += 1;
        }
    }
    assert_eq!(fs::read(&table).unwrap(), pristine, "the sweep changed the table");
    assert!(counts.iter().all(|&c| c > 0), "positions per section: {counts:?}");
    assert!(!open_and_read_all(dir.path(), &name, "restored"));
}

#[test]
fn damaged_older_sstable_is_reported_for_keys_only_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        db.put(b"old-only", b"1").unwrap();
        db.flush().unwrap();
        db.put(b"new-only", b"2").unwrap();
        db.flush().unwrap();
    }
    let tables = sst_files(dir.path());
    assert_eq!(tables.len(), 2);
    // Damage the value byte of the only record of the older table (just before the index).
    let mut bytes = fs::read(&tables[0]).unwrap();
    let footer_at = bytes.len() - FOOTER_LEN;
    let index_at = u64::from_le_bytes(bytes[footer_at + 16..footer_at + 24].try_into().unwrap()) as usize;
    bytes[index_at - 1] ^= 0x20;
    fs::write(&tables[0], &bytes).unwrap();

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"new-only").unwrap().as_deref(), Some(&b"2"[..]));
    let e = db.get(b"old-only").unwrap_err();
    assert_corruption_naming(&e, &file_name(&tables[0]), "older table record");
}

#[test]
fn a_damaged_filter_or_fence_is_reported_when_the_resident_index_loads() {
    let dir = tempfile::tempdir().unwrap();
    let table = database_with_one_table(dir.path());
    let name = file_name(&table);
    let pristine = fs::read(&table).unwrap();
    let footer_at = pristine.len() - FOOTER_LEN;
    let u32_at = |at: usize| u32::from_le_bytes(pristine[at..at + 4].try_into().unwrap()) as usize;
    let (entries, filter_len) = (u32_at(footer_at + 12), u32_at(footer_at + 28));
    let index_at = u64::from_le_bytes(pristine[footer_at + 16..footer_at + 24].try_into().unwrap()) as usize;
    let (fences_at, filter_at) = (index_at + entries * 4, footer_at - filter_len);
    assert!(filter_len > 0 && fences_at < filter_at, "{entries} entries, filter of {filter_len}");
    // No page cache: every read reaches the file, damaged after the open checked it.
    let resident = Options { cache_bytes: 0, row_cache_bytes: 0, ..SMALL };
    // The last byte of the fence section (of the last fence's key), then a filter bit.
    for (pos, section) in [(filter_at - 1, "fence"), (filter_at + 10, "filter")] {
        let db = Db::open_with(dir.path(), resident).unwrap();
        set_byte(&table, pos, pristine[pos] ^ 0x01);
        for i in 0..KEYS {
            let e = db.get(&key(i)).expect_err("the damaged index is reported");
            assert_corruption_naming(&e, &name, &format!("{section} byte {pos}, key {i}"));
        }
        // The filter is loaded first, on its own: damaged fences leave it resident.
        let s = db.index_stats();
        assert_eq!(
            (s.resident_tables, s.resident_filters),
            (0, usize::from(section == "fence")),
            "{section}"
        );
        set_byte(&table, pos, pristine[pos]);
        assert_eq!(db.get(&key(0)).unwrap(), Some(value(0)), "{section}: the next get loads it");
        let s = db.index_stats();
        assert_eq!((s.resident_tables, s.resident_filters), (1, 1), "{section}");
    }
}

#[test]
fn truncated_or_empty_sstable_is_reported_on_open() {
    for keep in [0usize, 1, FOOTER_LEN - 1, FOOTER_LEN, 100] {
        let dir = tempfile::tempdir().unwrap();
        let table = database_with_one_table(dir.path());
        let len = fs::metadata(&table).unwrap().len() as usize;
        let new_len = if keep == 100 { len - 1 } else { keep };
        OpenOptions::new().write(true).open(&table).unwrap().set_len(new_len as u64).unwrap();
        let what = format!("table cut to {new_len} of {len} bytes");
        let e = Db::open(dir.path()).err().unwrap_or_else(|| panic!("{what}: open succeeded"));
        assert_corruption_naming(&e, &file_name(&table), &what);
    }
}

/// A database whose WAL holds `n` records (one put each) and its zero tail; returns the WAL
/// and the record offsets (the last is the logical end, where the zero tail starts).
fn database_with_wal(dir: &Path, n: usize) -> (std::path::PathBuf, Vec<usize>) {
    let db = Db::open(dir).unwrap();
    for i in 0..n {
        db.put(&key(i), &value(i)).unwrap();
    }
    drop(db);
    let wals = wal_files(dir);
    assert_eq!(wals.len(), 1);
    let bytes = fs::read(&wals[0]).unwrap();
    let starts = wal_record_starts(&bytes);
    assert_eq!(starts.len(), n + 1);
    assert_eq!(wal_logical_len(&bytes), starts[n]);
    (wals[0].clone(), starts)
}

#[test]
fn every_flipped_byte_of_a_middle_wal_record_fails_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, starts) = database_with_wal(dir.path(), 6);
    let name = file_name(&wal);
    let pristine = fs::read(&wal).unwrap();
    // Records 1..=4 each have valid records after them.
    for pos in starts[1]..starts[5] {
        for mask in [0x01u8, 0x80, 0xff] {
            set_byte(&wal, pos, pristine[pos] ^ mask);
            let what = format!("WAL byte {pos} ^ {mask:#04x}");
            match Db::open_with(dir.path(), SMALL) {
                Err(e) => assert_corruption_naming(&e, &name, &what),
                Ok(_) => panic!("{what}: open succeeded over a damaged record followed by valid ones"),
            }
            let now = fs::read(&wal).unwrap();
            assert!(
                now.len() == pristine.len() && now[pos] == pristine[pos] ^ mask,
                "{what}: the failed open modified the WAL"
            );
            set_byte(&wal, pos, pristine[pos]);
        }
    }
    assert_eq!(fs::read(&wal).unwrap(), pristine);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(&key(3)).unwrap(), Some(value(3)));
}

#[test]
fn flipped_length_larger_than_a_memtable_in_a_middle_wal_record_is_corruption() {
    // A WAL longer than one MemTable's largest entry: many overwrites of one key.
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 4096, durability: Durability::Always, ..Options::default() };
    {
        let db = Db::open_with(dir.path(), options).unwrap();
        while db.stats().wal_bytes < 4000 {
            db.put(b"k", b"v").unwrap();
            assert_eq!(db.stats().immutable_keys, 0, "rotated before the WAL grew long enough");
        }
        assert_eq!(wal_files(dir.path()).len(), 1, "the test needs a single WAL");
        db.put(b"last", b"1").unwrap();
    }
    let wal = &wal_files(dir.path())[0];
    let mut bytes = fs::read(wal).unwrap();
    let rec = wal_record_starts(&bytes)[1];
    // Record 1's length: add 0x0e00 = 3584, still inside the file but above any entry a
    // 4096-byte MemTable can hold.
    let old_len = u32::from_le_bytes(bytes[rec..rec + 4].try_into().unwrap()) as usize;
    bytes[rec + 1] ^= 0x0e;
    let new_len = u32::from_le_bytes(bytes[rec..rec + 4].try_into().unwrap()) as usize;
    assert!(
        new_len > old_len && rec + 8 + new_len < bytes.len(),
        "{old_len} -> {new_len}, file {}",
        bytes.len()
    );
    fs::write(wal, &bytes).unwrap();
    match Db::open_with(dir.path(), options) {
        Err(e) => assert_corruption_naming(&e, &file_name(wal), "record length flipped"),
        Ok(_) => panic!("open succeeded over a damaged record followed by valid ones"),
    }
}

#[test]
fn garbage_inside_a_wal_before_valid_records_fails_open() {
    let mut rng = Rng::new(7);
    let garbage: Vec<u8> = (0..24).map(|_| rng.next_u64() as u8).collect();
    type Damage<'a> = Box<dyn Fn(&[u8], &[usize]) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "random bytes over record 2",
            Box::new(|b: &[u8], s: &[usize]| {
                let mut v = b.to_vec();
                v[s[2]..s[2] + 24].copy_from_slice(&garbage);
                v
            }),
        ),
        (
            "random bytes inserted between records 2 and 3",
            Box::new(|b: &[u8], s: &[usize]| [&b[..s[3]], &garbage[..], &b[s[3]..]].concat()),
        ),
        (
            "zeros over records 0 and 1",
            Box::new(|b: &[u8], s: &[usize]| {
                let mut v = b.to_vec();
                v[..s[2]].fill(0);
                v
            }),
        ),
        ("random bytes at the very start", Box::new(|b: &[u8], _: &[usize]| [&garbage[..], b].concat())),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (wal, starts) = database_with_wal(dir.path(), 6);
        let bytes = damage(&fs::read(&wal).unwrap(), &starts);
        fs::write(&wal, &bytes).unwrap();
        match Db::open(dir.path()) {
            Err(e) => assert_corruption_naming(&e, &file_name(&wal), what),
            Ok(_) => panic!("{what}: open succeeded"),
        }
    }
}

/// A database with two WALs (a rotation, no flush yet), closed; returns the WALs, oldest first.
/// `options` flush inline (`background_threads` = 0): the frozen MemTable waits for the next
/// rotation, so one rotation leaves two WALs (a flush thread would retire the older at once).
fn database_with_two_wals(dir: &Path, options: Options) -> Vec<std::path::PathBuf> {
    let db = Db::open_with(dir, options).unwrap();
    let mut i = 0;
    while db.stats().immutable_keys == 0 || db.stats().memtable_keys < 3 {
        db.put(format!("k{i:04}").as_bytes(), b"some value").unwrap();
        i += 1;
    }
    drop(db);
    let wals = wal_files(dir);
    assert_eq!(wals.len(), 2, "{wals:?}");
    wals
}

#[test]
fn torn_tail_in_an_older_wal_is_corruption() {
    let options = Options {
        memtable_bytes: 4096,
        durability: Durability::Always,
        background_threads: 0,
        ..Options::default()
    };
    // `Always`: the older WAL was synced whole before the rotation, so the newer one's header does
    // not name it as an unsynced predecessor, and a damaged last record in it is damage, whether
    // the file ends there or its zero tail follows.
    for zero_tail in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wals = database_with_two_wals(dir.path(), options);
        let file = OpenOptions::new().write(true).open(&wals[0]).unwrap();
        let len = fs::metadata(&wals[0]).unwrap().len();
        let end = wal_logical_len(&fs::read(&wals[0]).unwrap()) as u64;
        if zero_tail {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&vec![0u8; (len - (end - 3)) as usize], end - 3).unwrap();
        } else {
            file.set_len(end - 3).unwrap();
        }
        let what = format!("older WAL's last record torn (zero tail after it: {zero_tail})");
        match Db::open_with(dir.path(), options) {
            Err(e) => assert_corruption_naming(&e, &file_name(&wals[0]), &what),
            Ok(_) => panic!("{what}: open succeeded although an older WAL lost its tail"),
        }
    }
}

#[test]
fn non_zero_bytes_in_the_zero_tail_of_an_older_wal_are_corruption() {
    let options = Options {
        memtable_bytes: 4096,
        durability: Durability::Always,
        background_threads: 0,
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let wals = database_with_two_wals(dir.path(), options);
    let bytes = fs::read(&wals[0]).unwrap();
    let end = wal_logical_len(&bytes);
    assert!(bytes.len() > end + 100, "the older WAL has no zero tail to damage");
    set_byte(&wals[0], end + 100, 0x5a);
    match Db::open_with(dir.path(), options) {
        Err(e) => {
            assert_corruption_naming(&e, &file_name(&wals[0]), "a stray byte in an older WAL's zero tail")
        }
        Ok(_) => panic!("open succeeded over damage in an older WAL"),
    }
}

/// A record that a compaction drops (here the older version of an overwritten key, shadowed by
/// the newer one) is read through its checksum before it is dropped: a flipped bit in it makes
/// the compaction fail with corruption naming its table, rather than vanish with the record.
#[test]
fn a_flipped_bit_in_a_record_a_compaction_drops_fails_the_compaction() {
    use minivault_core::io::{read_exact_at, write_at};
    use minivault_core::{compaction, CompactionMode, Config, Storage};

    let config = Config { compaction: CompactionMode::External, ..Config::default() };
    let mem = [vec![0u8; 4096], vec![0u8; 4096]];
    let mut db = minivault_core::Db::open(common::Mem::new(vec![0; 64 << 14]), || 1u64, mem, config).unwrap();
    for version in ["older", "newer"] {
        for i in 0..KEYS {
            db.put(&key(i), format!("{version}-{}", value(i).escape_ascii()).as_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    let older = db.tables().next().unwrap().id;
    let name = minivault_core::names::file_name(minivault_core::names::FileKind::Table, older);
    // The last byte of the first record's value (the record: an 8-byte header, then the entry).
    let s = db.storage();
    let mut f = s.open(&name).unwrap();
    let mut header = [0u8; 8];
    read_exact_at(&mut s.io(&mut f), 0, &mut header).unwrap();
    let at = 8 + u64::from(u32::from_le_bytes(header[..4].try_into().unwrap())) - 1;
    let mut byte = [0u8; 1];
    read_exact_at(&mut s.io(&mut f), at, &mut byte).unwrap();
    write_at(&mut s.io(&mut f), at, &[&[byte[0] ^ 0x10]]).unwrap();

    let plan = db.plan_compaction(4096, true).unwrap();
    assert_eq!((plan.first, plan.count), (older, 2), "both tables merged");
    let inputs = db.compaction_inputs(&plan);
    let mut scratch = vec![0u8; 4096];
    let err = compaction::execute(db.storage(), plan, &inputs, &mut scratch).err().expect("corruption");
    assert!(err.is_corruption(), "{err:?}");
    assert!(err.to_string().contains(name.as_str()), "{err}");
}
