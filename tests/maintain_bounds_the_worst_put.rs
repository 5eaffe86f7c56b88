//! Compaction in bounded steps (`Db::maintain`, `core/src/compaction/steps.rs`): with a small
//! budget after each write, no write does more than a flush and a bounded step, however large the
//! database grows; inline, the write whose flush calls for a merge does all of it. Work is counted
//! in storage calls on the device model (never time: the machine is shared).

mod common;

use minivault_core::compaction::{table_limit, Maintenance};
use minivault_core::{CompactionMode, Config, Db, SyncPolicy};
use minivault_suite::fault::{FaultStorage, ManualClock};

const PUTS: u32 = 24_000;
const MEM: usize = 4096;
/// Records of merge work after each put: enough to keep up here (4 is not: the tables reach the
/// limit and a flush merges inline).
const BUDGET: u32 = 32;

/// Puts `PUTS` keys (calling `maintain(budget)` after each, when given), then checks them all;
/// returns the most storage calls one put (and its maintenance) took in each quarter of the run,
/// and the compactions done.
fn worst_put_per_quarter(maintain: Option<u32>) -> ([u64; 4], u64) {
    let storage = FaultStorage::new(7);
    let compaction = if maintain.is_some() { CompactionMode::External } else { CompactionMode::Inline };
    let config = Config { compaction, ..Config::with_sync(SyncPolicy::Manual) };
    let clock = ManualClock::new(1_000);
    let mut db = Db::open(storage.clone(), clock, [vec![0u8; MEM], vec![0u8; MEM]], config).unwrap();
    let mut steps = Maintenance::new(vec![0u8; 4096]);
    let limit = table_limit(db.storage());
    let mut worst = [0u64; 4];
    for i in 0..PUTS {
        // Keys in a scattered order, so that merges interleave their inputs.
        let k = (i.wrapping_mul(2_654_435_761) % PUTS).to_be_bytes();
        let before = storage.calls();
        db.put(&k, &[i as u8; 24]).unwrap();
        if let Some(budget) = maintain {
            db.maintain(&mut steps, budget).unwrap();
            // Never at the table limit, where a flush merges inline, whole.
            assert!(db.stats().tables + 1 < limit, "maintenance fell behind: {:?}", db.stats());
        }
        let q = (i * 4 / PUTS) as usize;
        worst[q] = worst[q].max(storage.calls() - before);
    }
    for i in (0..PUTS).step_by(7) {
        let k = (i.wrapping_mul(2_654_435_761) % PUTS).to_be_bytes();
        assert!(common::core_get(&mut db, &k).is_some(), "key {i}");
    }
    (worst, db.stats().compactions)
}

#[test]
fn maintenance_keeps_the_worst_put_bounded_as_the_data_grows() {
    let (inline, inline_compactions) = worst_put_per_quarter(None);
    let (stepped, stepped_compactions) = worst_put_per_quarter(Some(BUDGET));
    eprintln!("worst put, storage calls per quarter: inline {inline:?}, maintain({BUDGET}) {stepped:?}");
    eprintln!("compactions: inline {inline_compactions}, maintain({BUDGET}) {stepped_compactions}");
    assert!(inline_compactions > 10 && stepped_compactions > 10);
    // Inline, the worst put merges tiers of 8 × 8 MemTables whole; in steps it is a flush and a
    // step (and the start of a merge), the same in every quarter.
    let (inline_max, stepped_max) = (*inline.iter().max().unwrap(), *stepped.iter().max().unwrap());
    assert!(stepped_max * 20 < inline_max, "maintain({BUDGET}) {stepped:?}, inline {inline:?}");
    assert!(stepped[3] <= stepped[0] * 3 / 2, "the worst stepped put grew: {stepped:?}");
}
