//! Micro-benchmarks of the core's hot paths, in memory (no file system): MemTable put and get,
//! record framing and its CRC, and gets answered by an SSTable (through `Db` over `MemStorage`).
//!
//! Run: `cargo bench -p minivault-bench --bench core_hot_paths` (add `-- memtable` to filter).

use divan::{black_box, Bencher};
use minivault_core::entry::EntryHeader;
use minivault_core::memtable::MemTable;
use minivault_core::{record, Config, Db, MemStorage, SyncPolicy};

fn main() {
    divan::main();
}

const KEY: usize = 16;
const VALUE: usize = 100;

fn key(i: u64) -> [u8; KEY] {
    let mut k = [b'0'; KEY];
    let s = format!("{:016}", i.wrapping_mul(2_654_435_761) % 10_000_000_000);
    k.copy_from_slice(&s.as_bytes()[..KEY]);
    k
}

fn put_header() -> EntryHeader {
    EntryHeader { tombstone: false, key_len: KEY, expires_at: None }
}

/// Inserts into a fresh 4 MiB MemTable until `n` keys are in it.
#[divan::bench(args = [1_000, 10_000])]
fn memtable_put(b: Bencher, n: u64) {
    let value = [7u8; VALUE];
    let keys: Vec<[u8; KEY]> = (0..n).map(key).collect();
    b.with_inputs(|| MemTable::new(vec![0u8; 4 << 20]).unwrap_or_else(|_| panic!("memtable")))
        .input_counter(move |_| divan::counter::ItemsCount::new(n as usize))
        .bench_local_values(|mut t| {
            for k in &keys {
                let _ = t.insert(&put_header(), k, &value);
            }
            t
        });
}

/// Gets of present keys from a MemTable holding 10,000.
#[divan::bench]
fn memtable_get(b: Bencher) {
    let value = [7u8; VALUE];
    let mut t = MemTable::new(vec![0u8; 4 << 20]).unwrap_or_else(|_| panic!("memtable"));
    let keys: Vec<[u8; KEY]> = (0..10_000).map(key).collect();
    for k in &keys {
        t.insert(&put_header(), k, &value).unwrap_or_else(|_| panic!("insert"));
    }
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 7919) % keys.len();
        black_box(t.get(black_box(&keys[i])).is_some())
    });
}

/// Framing one WAL record (header with CRC-32C, then the parts), 116 B of payload.
#[divan::bench]
fn record_encode(b: Bencher) {
    let k = key(1);
    let v = [7u8; VALUE];
    let mut out = [0u8; 256];
    b.counter(divan::counter::BytesCount::new(KEY + VALUE))
        .bench_local(|| black_box(record::encode_into(&[black_box(&k[..]), black_box(&v[..])], &mut out)));
}

/// Checking and decoding one framed record.
#[divan::bench]
fn record_decode(b: Bencher) {
    let k = key(1);
    let v = [7u8; VALUE];
    let mut out = [0u8; 256];
    let n = record::encode_into(&[&k, &v], &mut out).unwrap_or(0);
    b.counter(divan::counter::BytesCount::new(n))
        .bench_local(|| black_box(record::decode(black_box(&out[..n])).is_ok()));
}

/// CRC-32C over 4 KiB.
#[divan::bench]
fn crc32c_4k(b: Bencher) {
    let data = vec![0xA5u8; 4096];
    b.counter(divan::counter::BytesCount::new(data.len()))
        .bench_local(|| black_box(record::crc32c(&[black_box(&data)])));
}

type MemDb = Db<MemStorage<Vec<u8>, 16>, fn() -> u64, Vec<u8>>;

fn zero() -> u64 {
    0
}

/// A database whose `n` keys sit in one SSTable (flushed), in memory.
fn db_with_table(n: u64) -> (MemDb, Vec<[u8; KEY]>) {
    let storage = MemStorage::<Vec<u8>, 16>::new(vec![0u8; 64 << 20]);
    let mut db = MemDb::open(
        storage,
        zero as fn() -> u64,
        [vec![0u8; 2 << 20], vec![0u8; 2 << 20]],
        Config::with_sync(SyncPolicy::Manual),
    )
    .unwrap_or_else(|_| panic!("open"));
    let v = [7u8; VALUE];
    let keys: Vec<[u8; KEY]> = (0..n).map(key).collect();
    for k in &keys {
        db.put(k, &v).unwrap_or_else(|_| panic!("put"));
    }
    db.flush().unwrap_or_else(|_| panic!("flush"));
    (db, keys)
}

/// Gets answered by one SSTable of `n` keys (binary search over its index).
#[divan::bench(args = [1_000, 10_000])]
fn sstable_get_present(b: Bencher, n: u64) {
    let (mut db, keys) = db_with_table(n);
    let mut buf = [0u8; 256];
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 7919) % keys.len();
        black_box(db.get(black_box(&keys[i]), &mut buf).map(|v| v.is_some()).unwrap_or(false))
    });
}

/// Gets of absent keys against one SSTable of 10,000 keys.
#[divan::bench]
fn sstable_get_missing(b: Bencher) {
    let (mut db, _) = db_with_table(10_000);
    let mut buf = [0u8; 256];
    let mut i = 0u64;
    b.bench_local(|| {
        i += 1;
        let mut k = key(i);
        k[KEY - 1] = b'x';
        black_box(db.get(black_box(&k), &mut buf).map(|v| v.is_some()).unwrap_or(false))
    });
}
