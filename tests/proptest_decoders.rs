//! Property tests (stable toolchain) of every decoder that reads bytes from disk or from a user:
//! record framing, entry encoding, WAL replay, SSTable open and lookup, and the REPL's line
//! parser. The same targets run under libFuzzer in `fuzz/` (nightly); these run in `cargo test`.
//!
//! The properties: arbitrary bytes never panic and give only clean errors; valid data round
//! trips; a WAL cut at any byte replays exactly its whole records; garbage after a valid WAL is
//! cut off as a torn tail, zeros after it are its clean end; a flipped bit in an SSTable gives an error or the right answer, never
//! a wrong one. `PROPTEST_CASES=<n>` runs more cases.

use std::collections::BTreeMap;

use minivault::repl::{format_value, parse_line, Command};
use minivault_core::entry::{self, EntryHeader};
use minivault_core::record::{self, FrameError, HEADER_LEN};
use minivault_core::sstable::{self, Lookup};
use minivault_core::{Config, Db, Error, SyncPolicy};
use minivault_suite::fault::{FaultStorage, ManualClock, MemCursor};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

type TestDb = Db<FaultStorage, ManualClock, Vec<u8>>;

const WAL: &str = "0000000000000001.wal";
const MEM: usize = 64 * 1024;

fn open(storage: &FaultStorage) -> Result<TestDb, Error<minivault_suite::fault::FaultError>> {
    TestDb::open(
        storage.clone(),
        ManualClock::new(10),
        [vec![0u8; MEM], vec![0u8; MEM]],
        Config::with_sync(SyncPolicy::EveryWrite),
    )
}

/// A write for the generated workloads: key index, value (None = delete).
fn op() -> impl Strategy<Value = (u8, Option<Vec<u8>>)> {
    (0u8..12, prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..80)))
}

fn key(i: u8) -> Vec<u8> {
    format!("key{i}").into_bytes()
}

/// Runs `ops` through a fresh database and returns its WAL bytes (with their preallocated zero
/// tail) and the expected contents.
/// Key → value: what a database holds.
type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

fn wal_of(ops: &[(u8, Option<Vec<u8>>)]) -> (Vec<u8>, Vec<Contents>) {
    let storage = FaultStorage::new(0);
    let mut db = open(&storage).expect("open");
    let mut states = vec![BTreeMap::new()];
    let mut state = BTreeMap::new();
    for (k, v) in ops {
        match v {
            Some(v) => {
                db.put(&key(*k), v).expect("put");
                state.insert(key(*k), v.clone());
            }
            None => {
                db.delete(&key(*k)).expect("delete");
                state.remove(&key(*k));
            }
        }
        states.push(state.clone());
    }
    drop(db);
    let wal = storage.names().into_iter().find(|n| n.ends_with(".wal")).expect("a WAL");
    (storage.read_file(&wal).expect("WAL bytes"), states)
}

fn contents(db: &mut TestDb) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    (0u8..12).filter_map(|i| db.get(&key(i), &mut buf).expect("get").map(|v| (key(i), v.to_vec()))).collect()
}

/// The offsets where whole records end in a valid WAL (the first: where the file header ends).
fn record_ends(wal: &[u8]) -> Vec<usize> {
    // Format 2: an 8-byte header starting `MVWL`, then the records.
    let mut pos = if wal.starts_with(b"MVWL") { 8 } else { 0 };
    let mut ends = vec![pos];
    while let Ok((_, used)) = record::decode(&wal[pos..]) {
        pos += used;
        ends.push(pos);
    }
    ends
}

proptest! {
    // Failing cases are saved next to this file, and replayed first on the next run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest_decoders.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn record_decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), small_len in any::<bool>()) {
        let mut bytes = bytes;
        if small_len && bytes.len() >= 4 {
            // Make the declared length plausible, so decoding goes past the length check.
            let len = (bytes.len() as u32).saturating_sub(HEADER_LEN as u32);
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        match record::decode(&bytes) {
            Ok((payload, used)) => {
                prop_assert_eq!(used, HEADER_LEN + payload.len());
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(&bytes[HEADER_LEN..used], payload);
                prop_assert_eq!(&bytes[4..8], &record::crc32c(&[payload]).to_le_bytes()[..]);
            }
            Err(FrameError::Incomplete | FrameError::Corrupt(_)) => {}
        }
    }

    #[test]
    fn record_round_trips_and_detects_truncation_and_flips(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4), flip in any::<prop::sample::Index>()) {
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let payload: Vec<u8> = parts.concat();
        prop_assume!(!payload.is_empty());
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        let n = record::encode_into(&refs, &mut buf).expect("fits");
        prop_assert_eq!(record::decode(&buf[..n]), Ok((&payload[..], n)));
        for cut in 0..n {
            prop_assert_eq!(record::decode(&buf[..cut]), Err(FrameError::Incomplete));
        }
        let bit = flip.index(n * 8);
        buf[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(record::decode(&buf[..n]).map(|(p, _)| p != &payload[..]).unwrap_or(true), "a flipped bit went unnoticed");
    }

    #[test]
    fn entry_decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(e) = entry::decode(&bytes) {
            prop_assert!(!e.key.is_empty() && e.key.len() <= minivault_core::MAX_KEY_LEN);
            prop_assert!(!e.tombstone || e.value.is_empty());
        }
        let _ = EntryHeader::decode(&bytes);
    }

    #[test]
    fn entry_round_trips(key in prop::collection::vec(any::<u8>(), 1..40), value in prop::collection::vec(any::<u8>(), 0..40), kind in 0u8..3, t in any::<u64>()) {
        let (tombstone, expires_at) = match kind { 0 => (false, None), 1 => (true, None), _ => (false, Some(t)) };
        let value = if tombstone { Vec::new() } else { value };
        let h = EntryHeader { tombstone, key_len: key.len(), expires_at };
        let (hb, hn) = h.encode();
        let bytes = [&hb[..hn], &key, &value].concat();
        let e = entry::decode(&bytes).expect("valid entry");
        prop_assert_eq!((e.key, e.value, e.tombstone, e.expires_at), (&key[..], &value[..], tombstone, expires_at));
    }

    #[test]
    fn wal_replay_of_arbitrary_bytes_opens_or_reports_corruption(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &bytes);
        match open(&storage) {
            Ok(mut db) => {
                let mut buf = vec![0u8; 1024];
                let _ = db.get(b"key1", &mut buf);
                db.put(b"after", b"replay").expect("the recovered database takes writes");
            }
            Err(Error::Corrupted { .. } | Error::InsufficientMemory { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn wal_cut_at_any_byte_replays_exactly_its_whole_records(ops in prop::collection::vec(op(), 1..30), cut in any::<prop::sample::Index>()) {
        let (wal, states) = wal_of(&ops);
        let cut = cut.index(wal.len() + 1);
        // A cut inside the file header leaves no record.
        let whole = record_ends(&wal).iter().filter(|&&e| e <= cut).count().saturating_sub(1);
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal[..cut]);
        let mut db = open(&storage).expect("a torn tail must not stop the database from opening");
        prop_assert_eq!(&contents(&mut db), &states[whole]);
    }

    #[test]
    fn garbage_after_a_valid_wal_is_cut_off_as_a_torn_tail(ops in prop::collection::vec(op(), 1..20), garbage in prop::collection::vec(any::<u8>(), 1..300), over_zero_tail in any::<bool>()) {
        // All-zero "garbage" is a zero tail, the clean end of a WAL (the next property).
        prop_assume!(garbage.iter().any(|&b| b != 0));
        let (mut wal, states) = wal_of(&ops);
        let good = *record_ends(&wal).last().expect("ends");
        if over_zero_tail {
            // Where a torn append into the preallocated tail leaves it: zeros follow.
            wal.resize(wal.len().max(good + garbage.len()), 0);
            wal[good..good + garbage.len()].copy_from_slice(&garbage);
        } else {
            wal.extend_from_slice(&garbage);
        }
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal);
        let mut db = open(&storage).expect("open");
        prop_assert_eq!(&contents(&mut db), states.last().expect("states"));
        prop_assert_eq!(db.stats().torn_tails_truncated, 1);
        drop(db);
        prop_assert_eq!(storage.read_file(WAL).expect("WAL").len(), good, "the torn tail is cut off");
    }

    #[test]
    fn zeros_after_a_valid_wal_are_its_clean_end_not_a_torn_tail(ops in prop::collection::vec(op(), 1..20), zeros in 0usize..5000) {
        let (wal, states) = wal_of(&ops);
        let good = *record_ends(&wal).last().expect("ends");
        let mut wal = wal[..good].to_vec();
        wal.resize(good + zeros, 0);
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal);
        let mut db = open(&storage).expect("open");
        prop_assert_eq!(&contents(&mut db), states.last().expect("states"));
        prop_assert_eq!(db.stats().torn_tails_truncated, 0);
        prop_assert_eq!(db.stats().wal_bytes, (good - record_ends(&wal)[0]) as u64);
        db.put(b"after", b"zero tail").expect("put");
        drop(db);
        let mut db = open(&storage).expect("reopen");
        let mut buf = [0u8; 16];
        prop_assert_eq!(db.get(b"after", &mut buf).expect("get"), Some(&b"zero tail"[..]));
        prop_assert_eq!(db.stats().torn_tails_truncated, 0);
    }

    #[test]
    fn sstable_open_and_lookup_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), key in prop::collection::vec(any::<u8>(), 1..20)) {
        let len = bytes.len() as u64;
        let mut io = MemCursor::new(bytes);
        if let Ok(footer) = sstable::open(&mut io, len) {
            let mut out = [0u8; 64];
            let _ = sstable::lookup(&mut io, &footer, &key, &mut out);
        }
    }

    #[test]
    fn sstable_with_a_flipped_bit_gives_an_error_or_the_right_answer(ops in prop::collection::vec(op(), 1..30), flip in any::<prop::sample::Index>()) {
        let storage = FaultStorage::new(0);
        let mut db = open(&storage).expect("open");
        let mut state: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &ops {
            match v {
                Some(v) => db.put(&key(*k), v).expect("put"),
                None => db.delete(&key(*k)).expect("delete"),
            }
            state.insert(key(*k), v.clone());
        }
        db.flush().expect("flush");
        drop(db);
        let Some(sst) = storage.names().into_iter().find(|n| n.ends_with(".sst")) else {
            // Only tombstones with no older table: nothing to write.
            return Ok(());
        };
        let mut bytes = storage.read_file(&sst).expect("table");
        let bit = flip.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let len = bytes.len() as u64;
        let mut io = MemCursor::new(bytes);
        let Ok(footer) = sstable::open(&mut io, len) else { return Ok(()) };
        let mut out = vec![0u8; 256];
        for (k, want) in &state {
            match sstable::lookup(&mut io, &footer, k, &mut out) {
                Err(_) => {}
                Ok(Lookup::Found { value_len, tombstone: false, .. }) => {
                    prop_assert_eq!(Some(&out[..value_len]), want.as_deref(), "wrong value for {:?}", k);
                }
                // A tombstone, or no entry at all for a deleted key when the table dropped it.
                Ok(Lookup::Found { tombstone: true, .. } | Lookup::Absent) => {
                    prop_assert!(want.is_none(), "a flipped bit hid {:?}", k);
                }
            }
        }
    }

    #[test]
    fn repl_parser_never_panics(line in prop::collection::vec(prop::sample::select(b"putgetdlEX \t\"'\\x0123nrt\x00\xff\xc3\xa9\r\n".to_vec()), 0..40)) {
        let _ = parse_line(&line);
    }

    #[test]
    fn repl_parser_of_arbitrary_bytes_never_panics(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_line(&line);
    }

    #[test]
    fn repl_format_value_round_trips_through_the_parser(key in prop::collection::vec(any::<u8>(), 1..30), value in prop::collection::vec(any::<u8>(), 0..60)) {
        let line = format!("put {} {}", format_value(&key), format_value(&value));
        prop_assert_eq!(parse_line(line.as_bytes()), Ok(Some(Command::Put { key, value, ttl_secs: None })));
    }
}
