//! The original design's analysis: MiniVaultDB's get latency and SSTable probes per get as data,
//! and with it the number of SSTables, grows.
//!
//! Keys go in, in a random order, `keys_per_table` at a time, each batch followed by
//! [`minivault::Db::flush`], so every batch becomes one SSTable, and the engine's size-tiered
//! compaction merges them as it would in use. After 1, 2, 4, … batches the sweep times random
//! gets of keys written so far (`sst-present`) and of absent keys that sort between them
//! (`sst-missing`), and records the number of SSTables, probes and read system calls per get.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::keys::{KeySpace, Rng};
use crate::metrics::{self, Latency, ProcIo};
use crate::row::Row;

/// Parameters of one sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Directory (removed first and afterwards).
    pub dir: PathBuf,
    /// Key and value sizes and seed; `n` is ignored.
    pub ks: KeySpace,
    /// Keys per SSTable.
    pub keys_per_table: u64,
    /// Batches (flushes) at the end.
    pub max_tables: u64,
    /// Gets per checkpoint and kind, before the time cap.
    pub gets: u64,
    /// Time cap per checkpoint and kind.
    pub max_secs: f64,
    /// Round (reported only).
    pub round: u32,
}

/// The batch counts after which the sweep measures.
fn checkpoints(max: u64) -> Vec<u64> {
    let mut v: Vec<u64> =
        std::iter::successors(Some(1u64), |x| Some(x * 2)).take_while(|&x| x < max).collect();
    v.push(max);
    v
}

/// Runs the sweep; one row per checkpoint and kind (`tables` holds the table count).
pub fn run_sweep(cfg: &SweepConfig) -> Result<Vec<Row>, String> {
    let _ = std::fs::remove_dir_all(&cfg.dir);
    let max_tables = cfg.max_tables.max(1);
    let ks = KeySpace { n: cfg.keys_per_table * max_tables, ..cfg.ks.clone() };
    // Room for one table's keys in one MemTable, with slack for the hash index.
    let memtable_bytes = ((cfg.keys_per_table * (ks.entry_bytes() + 64) * 2) as usize).max(1 << 20);
    // No row cache: the sweep measures the SSTable read path, which cached rows would skip.
    let options = minivault::Options {
        memtable_bytes,
        durability: minivault::Durability::Manual,
        row_cache_bytes: 0,
        ..Default::default()
    };
    let db = minivault::Db::open_with(&cfg.dir, options).map_err(|e| format!("open: {e}"))?;
    let perm = ks.permutation(1);
    let mut rng = Rng::new(ks.seed ^ 0x55);
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut rows = Vec::new();
    let mut written = 0u64;
    let mut flushes = 0u64;
    for target in checkpoints(max_tables) {
        while flushes < target {
            flushes += 1;
            for _ in 0..cfg.keys_per_table {
                let id = perm.at(written);
                ks.key(id, &mut k);
                ks.value(id, 0, &mut v);
                db.put(&k, &v).map_err(|e| format!("put: {e}"))?;
                written += 1;
            }
            db.flush().map_err(|e| format!("flush: {e}"))?;
        }
        let tables = db.stats().tables as u64;
        for (kind, name) in [(0u8, "sst-present"), (1, "sst-missing")] {
            let mut lat = Latency::new();
            let s0 = db.stats();
            let io0 = ProcIo::now();
            let deadline = Instant::now() + Duration::from_secs_f64(cfg.max_secs);
            let (mut done, mut busy) = (0u64, Duration::ZERO);
            while done < cfg.gets && Instant::now() < deadline {
                if kind == 0 {
                    ks.key(perm.at(rng.below(written)), &mut k);
                } else {
                    ks.missing_key(rng.below(ks.n), &mut k);
                }
                let t0 = Instant::now();
                let got = db.get(&k).map_err(|e| format!("get: {e}"))?;
                let dt = t0.elapsed();
                lat.record(dt.as_nanos() as u64);
                busy += dt;
                done += 1;
                if got.is_some() != (kind == 0) {
                    return Err(format!("{name}: wrong answer at {tables} tables"));
                }
            }
            let io = ProcIo::now().since(&io0);
            let s1 = db.stats();
            let mut row = Row::new("minivault", written, name, cfg.round);
            row.ops = done;
            row.secs = busy.as_secs_f64();
            row.p50_ns = lat.quantile(0.5);
            row.p99_ns = lat.quantile(0.99);
            row.p999_ns = lat.quantile(0.999);
            row.max_ns = lat.max();
            row.syscr = io.syscr;
            row.rss_kib = metrics::peak_rss_kib();
            row.tables = Some(tables);
            let gets = (s1.gets - s0.gets).max(1);
            row.probes_per_get = Some((s1.table_probes - s0.table_probes) as f64 / gets as f64);
            rows.push(row);
        }
        eprintln!("  sweep: {written} keys, {tables} SSTables measured");
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&cfg.dir);
    Ok(rows)
}
