//! A scan that meets a read error and is asked again goes on from where it was, and never
//! serves what a newer write hid: for every storage call a whole scan makes, a run of the scan
//! whose call N fails once (EIO) is asked again after the error, over tables that overlap, where
//! newer tables delete and overwrite keys of older ones (so a table passed over, or a cursor
//! moved on in one table and not in an older one, would let an older value through). Once with
//! reads that fail cleanly, once with reads that fill part or all of their buffer before
//! failing.

mod common;

use std::collections::BTreeMap;

use minivault_core::{Error, KeyRange, SyncPolicy};
use minivault_suite::fault::{FaultConfig, FaultError, FaultKind, FaultStorage};

use common::{open_fault, FaultDb};

/// What a scan returned, in its order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Key `i`, with a width that keeps order.
fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Five flushed tables over the keys 0..200, each newer one overwriting or deleting a share of
/// the keys the older ones hold, and writes left in the MemTables; returns the model.
fn build(db: &mut FaultDb) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for round in 0..6u32 {
        for i in (round % 3..200).step_by(3) {
            let k = key(i);
            if (i + round) % 4 == 0 {
                db.delete(&k).expect("delete");
                model.remove(&k);
            } else {
                let v = format!("v{round}-{i}").into_bytes();
                db.put(&k, &v).expect("put");
                model.insert(k, v);
            }
        }
        if round < 5 {
            db.flush().expect("flush");
        }
    }
    model
}

/// A forward (or reverse) scan of everything, asked again after each read error; returns the
/// entries and the errors met.
fn scan(db: &mut FaultDb, reverse: bool) -> (Entries, usize) {
    // Beyond the key slots: read-ahead windows for the tables (1 KiB each for the three tables
    // `build` leaves), smaller than the largest, so that windows are refilled, whole, while
    // records are read across their ends.
    let mut keys = vec![0u8; db.scan_key_bytes() + 3 * 1024];
    let mut errors = 0;
    // Starting reads no table (they are positioned by the steps): it cannot meet a fault.
    let mut scan = db.scan(KeyRange::all(), reverse, &mut keys).expect("scan start");
    let (mut k, mut v) = ([0u8; 64], [0u8; 64]);
    let mut out = Vec::new();
    loop {
        match scan.next(&mut k, &mut v) {
            Ok(None) => return (out, errors),
            Ok(Some((kl, vl))) => out.push((k[..kl].to_vec(), v[..vl].to_vec())),
            // One fault per run: a second error would be the scan failing without one.
            Err(Error::Storage(FaultError::Injected { .. })) if errors == 0 => errors += 1,
            Err(e) => panic!("next: {e:?}"),
        }
    }
}

#[test]
fn a_scan_asked_again_after_a_read_error_returns_every_entry_once_and_nothing_stale() {
    // A failed read leaves its buffer as it was (the next test fills it).
    sweep(FaultStorage::with_config(7, FaultConfig { partial_reads: false, ..FaultConfig::default() }));
}

#[test]
fn a_scan_asked_again_after_a_read_that_filled_part_of_its_buffer_goes_on_correctly() {
    // Each seed draws how much of each failed read's buffer is filled (all of it half the
    // time): a read-ahead window refilled in part or whole must not be taken for what it held.
    for seed in 0..16 {
        sweep(FaultStorage::with_config(seed, FaultConfig { partial_reads: true, ..FaultConfig::default() }));
    }
}

/// Fails each storage call of a whole scan in turn, forward and in reverse, over the database
/// [`build`] makes on `storage`.
fn sweep(storage: FaultStorage) {
    let mut db = open_fault(&storage, 4096, SyncPolicy::EveryWrite).expect("open");
    let model = build(&mut db);
    assert!(db.stats().tables >= 3, "{:?}", db.stats());
    for reverse in [false, true] {
        let mut want: Entries = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if reverse {
            want.reverse();
        }
        let before = storage.calls();
        let (clean, errors) = scan(&mut db, reverse);
        assert_eq!((clean.len(), errors), (want.len(), 0));
        assert!(clean == want, "reverse {reverse}: the scan without errors");
        let calls = storage.calls() - before;
        let mut failed = 0;
        for n in 1..=calls {
            storage.fail_in(n, FaultKind::Io, false);
            let (got, errors) = scan(&mut db, reverse);
            storage.clear_faults();
            failed += errors;
            let show = |e: &(Vec<u8>, Vec<u8>)| {
                format!("{}={}", String::from_utf8_lossy(&e.0), String::from_utf8_lossy(&e.1))
            };
            let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                got == want,
                "reverse {reverse}, call {n} of {calls} failed ({errors} errors): {} entries of {}; {}",
                got.len(),
                want.len(),
                first_difference.map_or("the same up to the shorter".to_string(), |i| format!(
                    "at {i}: {} where {} was due",
                    show(&got[i]),
                    show(&want[i])
                )),
            );
        }
        assert!(failed as u64 >= calls / 2, "the faults were met: {failed} of {calls}");
    }
}
