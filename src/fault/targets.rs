//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, here so that `cargo test` can replay
//! saved inputs through exactly the same checks (`tests/hostile_input.rs`). Each panics when the
//! engine misbehaves on `data`, and returns normally otherwise.
//!
//! Also the checks of the format modules that the property tests of `tests/hostile_input.rs`
//! run on generated inputs ([`record_round_trip`], [`entry_round_trip`], [`check_damaged_table`],
//! ...). This file is the only one of the test suite that calls the engine's format modules
//! (`record`, `entry`, `sstable`) directly: when they move, this is the one place to follow.

use std::collections::BTreeMap;

use minivault_core::entry::EntryHeader;
use minivault_core::record::{self, FrameError, HEADER_LEN};
use minivault_core::sstable::{self, Lookup};
use minivault_core::{entry, Config, Db, Error, SyncPolicy};

use super::{visible, FaultStorage, History, ManualClock, MemCursor, ModelOp, Rng};

type FuzzDb = Db<FaultStorage, ManualClock, Vec<u8>>;

fn open_db(storage: &FaultStorage, mem: usize, sync: SyncPolicy) -> Result<FuzzDb, Error<super::FaultError>> {
    FuzzDb::open(
        storage.clone(),
        ManualClock::new(1_000),
        [vec![0u8; mem], vec![0u8; mem]],
        Config::with_sync(sync),
    )
}

/// The length of a record header (length and CRC), for tests that shape raw record bytes.
pub const RECORD_HEADER_LEN: usize = HEADER_LEN;

/// Record framing and entry decoding of arbitrary bytes: a decoded record is exactly its header
/// and payload, within the bytes, with a matching checksum; otherwise a clean error.
pub fn record_decode(data: &[u8]) {
    match record::decode(data) {
        Ok((payload, used)) => {
            assert_eq!(used, HEADER_LEN + payload.len());
            assert!(used <= data.len());
            assert_eq!(&data[HEADER_LEN..used], payload);
            assert_eq!(record::crc32c(&[payload]).to_le_bytes(), data[4..8]);
            entry_decode(payload);
        }
        Err(FrameError::Incomplete | FrameError::Corrupt(_)) => {}
    }
    entry_decode(data);
}

/// Entry decoding of arbitrary bytes: a decoded entry has a key of 1 ..= `MAX_KEY_LEN` bytes and
/// a tombstone has no value; the header decoder never panics.
pub fn entry_decode(data: &[u8]) {
    if let Ok(e) = entry::decode(data) {
        assert!(!e.key.is_empty() && e.key.len() <= minivault_core::MAX_KEY_LEN);
        assert!(!e.tombstone || e.value.is_empty());
    }
    let _ = EntryHeader::decode(data);
}

/// `payload` framed as a record (length, CRC-32C, payload): hand-made WAL and table bytes.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut r = (payload.len() as u32).to_le_bytes().to_vec();
    r.extend_from_slice(&record::crc32c(&[payload]).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// A record encoded from `parts` (a non-empty payload) decodes to their concatenation, every
/// cut of it is `Incomplete`, and flipping bit `flip` (modulo the record's bits) never goes
/// unnoticed.
pub fn record_round_trip(parts: &[Vec<u8>], flip: usize) {
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let payload: Vec<u8> = parts.concat();
    assert!(!payload.is_empty(), "the caller gives a non-empty payload");
    let mut buf = vec![0u8; HEADER_LEN + payload.len()];
    let n = record::encode_into(&refs, &mut buf).expect("fits");
    assert_eq!(record::decode(&buf[..n]), Ok((&payload[..], n)));
    for cut in 0..n {
        assert_eq!(record::decode(&buf[..cut]), Err(FrameError::Incomplete));
    }
    let bit = flip % (n * 8);
    buf[bit / 8] ^= 1 << (bit % 8);
    assert!(
        record::decode(&buf[..n]).map(|(p, _)| p != &payload[..]).unwrap_or(true),
        "a flipped bit went unnoticed"
    );
}

/// An entry encoded from its header, key and value decodes to the same fields. `kind`: 0 a put,
/// 1 a tombstone (its value dropped), 2 a put expiring at `t`.
pub fn entry_round_trip(key: &[u8], value: &[u8], kind: u8, t: u64) {
    let (tombstone, expires_at) = match kind {
        0 => (false, None),
        1 => (true, None),
        _ => (false, Some(t)),
    };
    let value = if tombstone { &[][..] } else { value };
    let h = EntryHeader { tombstone, key_len: key.len(), expires_at };
    let (hb, hn) = h.encode();
    let bytes = [&hb[..hn], key, value].concat();
    let e = entry::decode(&bytes).expect("valid entry");
    assert_eq!((e.key, e.value, e.tombstone, e.expires_at), (key, value, tombstone, expires_at));
}

/// SSTable open and lookups of `key` (and of `k`) in arbitrary bytes: errors, never a panic.
pub fn sstable_open_and_lookup(table: &[u8], key: &[u8]) {
    let mut io = MemCursor::new(table.to_vec());
    if let Ok(footer) = sstable::open(&mut io, table.len() as u64) {
        let mut out = [0u8; 64];
        let _ = sstable::lookup(&mut io, &footer, key, &mut out);
        let _ = sstable::lookup(&mut io, &footer, b"k", &mut out);
    }
}

/// A damaged copy of a real table (`table`, written from `state`: key → value, `None` for a
/// delete): if it opens, every lookup gives an error or the right answer, never a wrong value,
/// and never hides a key that has one.
pub fn check_damaged_table(table: Vec<u8>, state: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    let len = table.len() as u64;
    let mut io = MemCursor::new(table);
    let Ok(footer) = sstable::open(&mut io, len) else { return };
    let mut out = vec![0u8; 4096];
    for (key, want) in state {
        match sstable::lookup(&mut io, &footer, key, &mut out) {
            Err(_) => {}
            Ok(Lookup::Found { value_len, tombstone: false, .. }) => {
                assert_eq!(Some(&out[..value_len]), want.as_deref(), "wrong value for {key:?}");
            }
            // A tombstone, or no entry at all for a deleted key when the table dropped it.
            Ok(Lookup::Found { tombstone: true, .. } | Lookup::Absent) => {
                assert!(want.is_none(), "damage hid {key:?}");
            }
        }
    }
}

/// WAL replay: the first byte splits the rest into one or two WAL files; the database must
/// open (and take a write) or report corruption or a memory shortfall.
pub fn wal_replay(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let storage = FaultStorage::new(0);
    let split = (first as usize * rest.len() / 255).min(rest.len());
    if first & 1 == 1 {
        storage.write_file("0000000000000001.wal", &rest[..split]);
        storage.write_file("0000000000000002.wal", &rest[split..]);
    } else {
        storage.write_file("0000000000000001.wal", rest);
    }
    let mem = if first & 2 == 2 { 512 } else { 4096 };
    match open_db(&storage, mem, SyncPolicy::EveryWrite) {
        Ok(mut db) => {
            let mut buf = vec![0u8; 8192];
            for k in [&b"k"[..], b"key", b"\x00"] {
                let _ = db.get(k, &mut buf);
            }
            db.put(b"after", b"replay").expect("a recovered database takes writes");
            drop(db);
            let mut db = open_db(&storage, mem, SyncPolicy::EveryWrite).expect("reopen after recovery");
            assert_eq!(
                db.get(b"after", &mut buf).expect("get").map(<[u8]>::to_vec),
                Some(b"replay".to_vec())
            );
        }
        Err(Error::Corrupted { .. } | Error::InsufficientMemory { .. }) => {}
        Err(e) => panic!("WAL replay failed with {e:?}"),
    }
}

/// SSTable open and lookup. First byte even: the rest is a table and its last byte a key
/// length. Odd: the rest describes entries; a real table is written with them, bytes of it
/// are flipped where the input says, and every lookup must give an error or the right answer.
pub fn sstable_lookup(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    if first & 1 == 0 {
        let klen = rest.last().map_or(1, |&b| (b as usize % 16) + 1).min(rest.len());
        let (table, key) = rest.split_at(rest.len() - klen);
        sstable_open_and_lookup(table, key);
        return;
    }
    let half = rest.len() / 2;
    let (entries, flips) = rest.split_at(half);
    let storage = FaultStorage::new(0);
    let mut db = open_db(&storage, 64 * 1024, SyncPolicy::Manual).expect("open");
    let mut state: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for chunk in entries.chunks(4) {
        let key = vec![b'k', chunk[0] % 32];
        if chunk.len() > 1 && chunk[1] % 5 == 0 {
            db.delete(&key).expect("delete");
            state.insert(key, None);
        } else {
            let value = chunk.get(1..).unwrap_or(&[]).repeat(chunk.get(2).map_or(1, |&n| n as usize % 9));
            db.put(&key, &value).expect("put");
            state.insert(key, Some(value));
        }
    }
    db.flush().expect("flush");
    drop(db);
    let Some(name) = storage.names().into_iter().find(|n| n.ends_with(".sst")) else { return };
    let mut table = storage.read_file(&name).expect("table");
    for pair in flips.chunks(3) {
        if let [a, b, x] = *pair {
            let i = (a as usize) << 8 | b as usize;
            let len = table.len();
            table[i % len] ^= x;
        }
    }
    check_damaged_table(table, &state);
}

/// The REPL's line parser: never panics, and a parsed `put` prints back to the same command.
pub fn repl_parse(data: &[u8]) {
    use minivault::repl::{format_value, parse_line, Command};
    if let Ok(Some(Command::Put { key, value, ttl_secs })) = parse_line(data) {
        let mut line = format!("put {} {}", format_value(&key), format_value(&value));
        if let Some(t) = ttl_secs {
            line.push_str(&format!(" EX {t}"));
        }
        assert_eq!(parse_line(line.as_bytes()), Ok(Some(Command::Put { key, value, ttl_secs })));
    }
}

/// Operations against a database on a [`FaultStorage`], checked against a [`History`]:
/// each input byte pair is one step (put, delete, TTL put, clock, get, flush, sync, crash,
/// power cut). `EveryWrite`: nothing acknowledged may be lost.
pub fn ops(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else { return };
    let storage = FaultStorage::new(u64::from(seed));
    let clock = ManualClock::new(1_000);
    let mut rng = Rng::new(u64::from(seed));
    let mem = [512, 1024, 4096][seed as usize % 3];
    let open = |s: &FaultStorage| {
        FuzzDb::open(
            s.clone(),
            clock.clone(),
            [vec![0u8; mem], vec![0u8; mem]],
            Config::with_sync(SyncPolicy::EveryWrite),
        )
    };
    let mut db = Some(open(&storage).expect("open"));
    let mut hist = History::new();
    let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'k', i]).collect();
    let mut buf = vec![0u8; 8192];
    let check = |db: &mut FuzzDb, hist: &mut History, buf: &mut Vec<u8>, power_cut: bool, now: u64| {
        let mut got = BTreeMap::new();
        for k in &keys {
            if let Some(v) = db.get(k, buf).expect("get after reopen") {
                got.insert(k.clone(), v.to_vec());
            }
        }
        if let Err(e) = hist.check_recovered(&got, now, power_cut) {
            panic!("{e}");
        }
    };
    for pair in rest.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let key = keys[arg as usize % keys.len()].clone();
        let d = db.as_mut().expect("open");
        // The write this step makes, if it makes one.
        let write = match op % 10 {
            0..=2 => Some(ModelOp::Put {
                key: key.clone(),
                value: vec![arg; (op as usize / 10) * 3],
                expires_at: None,
            }),
            3 => Some(ModelOp::Delete { key: key.clone() }),
            4 => {
                // A distinct value per TTL put (see History).
                let t = clock.get() + u64::from(arg % 50) + 1;
                let value = format!("ttl{t}-{}", rng.next_u64()).into_bytes();
                Some(ModelOp::Put { key: key.clone(), value, expires_at: Some(t) })
            }
            5 if op >= 200 => {
                // An atomic batch of up to four writes (distinct values, see History).
                let ops = (0..(arg % 4 + 1))
                    .map(|j| {
                        let key = keys[(arg as usize + j as usize * 3) % keys.len()].clone();
                        if j == 2 {
                            ModelOp::Delete { key }
                        } else {
                            let value = format!("b{}-{j}", rng.next_u64()).into_bytes();
                            ModelOp::Put { key, value, expires_at: None }
                        }
                    })
                    .collect();
                Some(ModelOp::Batch(ops))
            }
            _ => None,
        };
        if let Some(write) = write {
            match write.write_to(d, 1024) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{write:?} failed: {e:?}"),
                Err(e) => panic!("{write:?} could not be issued: {e}"),
            }
            hist.ack(write);
            hist.mark_durable();
            continue;
        }
        match op % 10 {
            5 => clock.advance(u64::from(arg % 30)),
            6 => {
                let want = visible(&hist.current(), clock.get()).get(&key).cloned();
                let got = d.get(&key, &mut buf).expect("get").map(<[u8]>::to_vec);
                assert_eq!(got, want, "live get {key:?}");
            }
            7 => d.flush().expect("flush"),
            8 | 9 => {
                let power_cut = op % 10 == 9;
                drop(db.take());
                if power_cut {
                    storage.power_cut(&mut rng);
                }
                let mut d = open(&storage).expect("reopen");
                check(&mut d, &mut hist, &mut buf, power_cut, clock.get());
                db = Some(d);
            }
            _ => unreachable!(),
        }
    }
}

/// The scan merge: the input is a workload on a database with small MemTables (puts, deletes,
/// expiring puts, flushes, clock moves, reopens), each byte pair one step, then scans whose
/// bounds and direction the input picks; every scan must return exactly what a `BTreeMap` of
/// the live entries holds in that range, in order.
pub fn scan_merge(data: &[u8]) {
    use minivault_core::KeyRange;
    use std::ops::Bound;

    let Some((&seed, rest)) = data.split_first() else { return };
    let storage = FaultStorage::new(u64::from(seed));
    let clock = ManualClock::new(1_000);
    let mem = [512, 1024, 2048][seed as usize % 3];
    let open = |s: &FaultStorage| {
        let mut db = FuzzDb::open(
            s.clone(),
            clock.clone(),
            [vec![0u8; mem], vec![0u8; mem]],
            Config::with_sync(SyncPolicy::EveryWrite),
        )
        .expect("open");
        if seed & 4 == 0 {
            db.set_scan_order_buffer(vec![0u8; db.stats().memtable_key_capacity * 4]);
        }
        db
    };
    let mut db = open(&storage);
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = BTreeMap::new();
    // Keys of one to three bytes from a small alphabet, so ranges meet stored keys.
    let key_of = |b: u8| -> Vec<u8> {
        const A: [u8; 4] = [0x00, b'a', 0xfe, 0xff];
        let len = 1 + (b as usize % 3);
        (0..len).map(|i| A[(b as usize >> (2 + 2 * i)) % 4]).collect()
    };
    for pair in rest.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let key = key_of(arg);
        match op % 12 {
            0..=3 => {
                let value = vec![op; usize::from(op / 12 % 5)];
                db.put(&key, &value).expect("put");
                model.insert(key, (value, None));
            }
            4 => {
                db.delete(&key).expect("delete");
                model.remove(&key);
            }
            5 => {
                let t = clock.get() + u64::from(op % 7) + 1;
                let value = vec![b't', op];
                db.put_expiring(&key, &value, t).expect("put_expiring");
                model.insert(key, (value, Some(t)));
            }
            6 => db.flush().expect("flush"),
            7 => clock.advance(u64::from(op % 5)),
            8 => {
                drop(db);
                db = open(&storage);
            }
            _ => {
                let other = key_of(op);
                let (lo, hi) = if key <= other { (&key, &other) } else { (&other, &key) };
                fn bound(b: u8, k: &[u8]) -> Bound<&[u8]> {
                    match b % 3 {
                        0 => Bound::Included(k),
                        1 => Bound::Excluded(k),
                        _ => Bound::Unbounded,
                    }
                }
                let range = if op & 0x10 != 0 {
                    KeyRange::prefix(&lo[..lo.len().min(usize::from(op >> 6))])
                } else {
                    KeyRange::new(bound(op >> 2, lo), bound(op >> 4, hi))
                };
                let reverse = op & 0x20 != 0;
                let now = clock.get();
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, (_, t))| range.contains(k) && t.is_none_or(|t| t > now))
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect();
                if reverse {
                    want.reverse();
                }
                let mut keys = vec![0u8; db.scan_key_bytes()];
                let mut scan = db.scan(range, reverse, &mut keys).expect("scan");
                let (mut k, mut v) = ([0u8; 8], [0u8; 16]);
                let mut got = Vec::new();
                while let Some((kl, vl)) = scan.next(&mut k, &mut v).expect("next") {
                    got.push((k[..kl].to_vec(), v[..vl].to_vec()));
                }
                assert_eq!(got, want, "scan {range:?} reverse {reverse}");
            }
        }
    }
}
