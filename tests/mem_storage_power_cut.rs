//! The core engine (`minivault_core::Db`) on `MemStorage`, the microcontroller configuration, cut
//! off by many seeded power cuts (`MemStorage::power_cut`: each file's unsynced change kept,
//! lost, torn, or scattered by 512-byte sectors or 4 KiB pages). After each cut the database
//! must open and hold the state after a prefix of the acknowledged writes that reaches every
//! write the policy promised durable (`fault::History`).
//!
//! `EveryN(4)` and `Manual` fail on the engine before the WAL watermark fix of issue 15 (commit
//! 2a02bc2: a hole in the unsynced tail of the WAL makes open refuse with
//! `WalRecordBeforeValidData`, 5 and 29 of 300 seeds) and pass with it (WAL format 2).
//! `MINIVAULT_SEEDS=<n>` changes the number of seeds (default 300 per policy).

mod common;

use common::{open_core, read_keys};
use minivault_core::mem_storage::PowerCutReport;
use minivault_core::{Db, MemStorage, SyncPolicy};
use minivault_suite::fault::{History, ManualClock, ModelOp, Rng};

/// 16 files of 64 KiB: room for the WALs and tables of 1–4 KiB MemTables.
type Mem = MemStorage<Vec<u8>, 16>;
type MemDb = Db<Mem, ManualClock, Vec<u8>>;

const FILE_BYTES: usize = 64 * 1024;

#[derive(Default, Debug)]
struct Figures {
    seeds: u64,
    writes: u64,
    power_cuts: u64,
    scattered: u64,
    holes: u64,
}

fn open(storage: Mem, clock: &ManualClock, mem: usize, sync: SyncPolicy) -> Result<MemDb, String> {
    open_core(storage, clock, mem, sync).map_err(|e| format!("database does not open: {e}"))
}

/// One seed: random writes, syncs, flushes and power cuts; checked after every cut.
fn run_seed(seed: u64, sync: SyncPolicy, figures: &mut Figures) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mem = [1024, 2048, 4096][rng.below(3) as usize];
    let clock = ManualClock::new(1_000);
    let keys: Vec<Vec<u8>> = (0..rng.range(4, 20)).map(|i| format!("k{i:02}").into_bytes()).collect();
    let mut db = open(Mem::new(vec![0; 16 * FILE_BYTES]), &clock, mem, sync)?;
    let mut hist = History::new();
    let mut serial = 0u32;
    for step in 0..rng.range(100, 300) {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        serial += 1;
        let op = match rng.below(20) {
            0..=9 => {
                // Distinct values (see History), of 4 to ~300 bytes so records cross sectors.
                let mut value = serial.to_le_bytes().to_vec();
                value.resize(rng.range(4, 300) as usize, b'a' + (serial % 26) as u8);
                ModelOp::Put { key, value, expires_at: None }
            }
            10..=12 => ModelOp::Delete { key },
            13 => ModelOp::Batch(
                (0..rng.range(1, 4))
                    .map(|j| {
                        let key = keys[rng.below(keys.len() as u64) as usize].clone();
                        ModelOp::Put { key, value: format!("b{serial}-{j}").into_bytes(), expires_at: None }
                    })
                    .collect(),
            ),
            14 | 15 => {
                db.sync().map_err(|e| format!("sync: {e}"))?;
                hist.mark_durable();
                continue;
            }
            16 => {
                db.flush().map_err(|e| format!("flush: {e}"))?;
                hist.mark_durable();
                continue;
            }
            _ => {
                // Power cut: take the storage without the sync of close(), cut, reopen, check.
                let mut storage = std::mem::replace(db.storage(), Mem::new(Vec::new()));
                drop(db);
                let cut: PowerCutReport = storage.power_cut(rng.next_u64());
                figures.power_cuts += 1;
                figures.scattered += u64::from(cut.scattered);
                figures.holes += u64::from(cut.holes);
                db = open(storage, &clock, mem, sync)
                    .map_err(|e| format!("step {step}, after {cut:?}: {e}"))?;
                let got = read_keys(&mut db, &keys, &[b"never"])?;
                hist.check_recovered(&got, clock.get(), true)
                    .map_err(|m| format!("step {step}, after {cut:?}: {m}"))?;
                continue;
            }
        };
        op.write_to(&mut db, 4096)?.map_err(|e| format!("{op:?}: {e}"))?;
        figures.writes += op.writes() as u64;
        hist.ack(op);
        match sync {
            SyncPolicy::EveryWrite => hist.mark_durable(),
            SyncPolicy::EveryN(n) => hist.mark_durable_but_last(n as usize - 1),
            SyncPolicy::Manual => {}
        }
    }
    Ok(())
}

fn run(test: &str, sync: SyncPolicy) {
    let seeds = std::env::var("MINIVAULT_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300u64);
    let mut figures = Figures::default();
    let mut failures = Vec::new();
    for seed in 0..seeds {
        figures.seeds += 1;
        if let Err(e) = run_seed(seed, sync, &mut figures) {
            if failures.len() < 3 {
                eprintln!("{test}: seed {seed} FAILED ({sync:?}): {e}");
            }
            failures.push(seed);
        }
    }
    eprintln!("{test} ({sync:?}): {figures:?}, {} failing seeds", failures.len());
    assert!(
        failures.is_empty(),
        "{test}: {} failing seeds, first {:?}",
        failures.len(),
        &failures[..3.min(failures.len())]
    );
}

#[test]
fn every_write_on_mem_storage_survives_power_cuts() {
    run("every_write_on_mem_storage_survives_power_cuts", SyncPolicy::EveryWrite);
}

#[test]
fn every_n_on_mem_storage_survives_unsynced_pages_reaching_flash_out_of_order() {
    run("every_n_on_mem_storage_survives_unsynced_pages_reaching_flash_out_of_order", SyncPolicy::EveryN(4));
}

#[test]
fn manual_on_mem_storage_survives_unsynced_pages_reaching_flash_out_of_order() {
    run("manual_on_mem_storage_survives_unsynced_pages_reaching_flash_out_of_order", SyncPolicy::Manual);
}
