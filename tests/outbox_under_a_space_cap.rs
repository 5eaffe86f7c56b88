//! The outbox under the database's space cap (`Options::max_bytes`):
//!
//! - with `WhenFull::DropOldest`, writing four times the cap (the benchmark writes ten) keeps the files under the cap (plus
//!   the eighth a compaction may add for a moment), the oldest records go first, a consumer's
//!   cursor stays readable, the records it never acknowledged are counted as evicted (in its
//!   stats, and kept in its cursor once it acknowledges past them, across a reopen), and reading
//!   after the cursor steps over the gap to the oldest record left;
//! - with `WhenFull::RefuseWrites`, an append at the cap is a clear `Full` error that poisons
//!   nothing: reads go on, and so does everything once space is given back (a reopen with a
//!   larger cap).

use minivault::outbox::Outbox;
use minivault::{Durability, EngineError, Error, Options, WhenFull};

const CAP: u64 = 1 << 20;

fn options(when_full: WhenFull, max_bytes: u64) -> Options {
    Options {
        durability: Durability::Manual,
        memtable_bytes: 64 << 10,
        max_bytes: Some(max_bytes),
        when_full,
        wal_preallocation_bytes: Some(0),
        ..Options::default()
    }
}

fn reading(seq: u64) -> Vec<u8> {
    format!("seq={seq} {}", "t".repeat(1000)).into_bytes()
}

#[test]
fn drop_oldest_keeps_space_flat_and_counts_what_no_consumer_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options(WhenFull::DropOldest, CAP)).unwrap();
    for seq in 1..=20 {
        outbox.append(b"s", &reading(seq)).unwrap();
    }
    outbox.ack(b"s", b"uplink", 10).unwrap();
    // Four times the cap of records while the uplink is away.
    let (mut seq, mut peak) = (20, 0);
    while seq * 1000 < 4 * CAP {
        let values: Vec<Vec<u8>> = (seq + 1..=seq + 20).map(reading).collect();
        seq = outbox.append_batch(b"s", &values).unwrap().end - 1;
        peak = peak.max(outbox.db().stats().file_bytes);
    }
    assert!(peak <= CAP + CAP / 8, "files grew to {peak} bytes under a cap of {CAP}");
    let engine = outbox.db().stats();
    assert!(engine.evicted_tables > 0 && engine.evicted_entries > 0, "{engine:?}");
    let stats = outbox.stats(b"s").unwrap();
    let oldest = stats.oldest.unwrap();
    assert!(oldest > 11, "the oldest records went first: oldest left {oldest}");
    assert_eq!(stats.newest, Some(seq));
    let uplink = &stats.consumers[0];
    assert_eq!((uplink.acked, uplink.lag), (10, seq - 10));
    assert_eq!(uplink.evicted_before_ack, oldest - 11, "11..{oldest} were never acknowledged");
    assert_eq!(stats.evicted_before_ack, oldest - 11);
    // The forwarder's read after the cursor steps over the gap.
    let next = outbox.read(b"s", 11, 3).unwrap();
    assert_eq!(next.iter().map(|r| r.seq).collect::<Vec<_>>(), [oldest, oldest + 1, oldest + 2]);
    assert_eq!(next[0].value, reading(oldest));
    // Acknowledged past the gap: the count moves into the cursor and survives a reopen.
    outbox.ack(b"s", b"uplink", oldest + 2).unwrap();
    drop(outbox);
    let outbox = Outbox::open(tmp.path(), options(WhenFull::DropOldest, CAP)).unwrap();
    let uplink = outbox.stats(b"s").unwrap().consumers.remove(0);
    assert_eq!((uplink.acked, uplink.evicted_before_ack), (oldest + 2, oldest - 11));
    assert_eq!(outbox.append(b"s", b"after").unwrap(), seq + 1, "seqs go on");
}

#[test]
fn refuse_writes_is_a_clear_error_that_poisons_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options(WhenFull::RefuseWrites, CAP)).unwrap();
    let mut last = 0;
    let error = loop {
        match outbox.append(b"s", &reading(last + 1)) {
            Ok(seq) => last = seq,
            Err(e) => break e,
        }
        assert!(last < 100_000, "never refused");
    };
    assert!(matches!(error, Error::Engine(EngineError::Full)), "{error:?}");
    assert_eq!(error.to_string(), "no space: the database is at its size cap or the storage is full");
    assert!(!outbox.db().is_poisoned());
    assert_eq!(outbox.read(b"s", 1, 2).unwrap()[1].value, reading(2), "reads go on");
    assert_eq!(outbox.newest(b"s").unwrap(), last, "a refused append takes no seq");
    drop(outbox);
    // Space given back: everything goes on where it stopped.
    let outbox = Outbox::open(tmp.path(), options(WhenFull::RefuseWrites, 4 * CAP)).unwrap();
    assert_eq!(outbox.append(b"s", b"more room").unwrap(), last + 1);
    assert_eq!(outbox.ack(b"s", b"uplink", last + 1).unwrap(), last + 1);
}
