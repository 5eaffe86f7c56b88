//! The cost of `Db::snapshot` and of a 10-key `Db::range` on a loaded database, each measured
//! after a put (the pattern of a reader among writers: the MemTable has changed since the last
//! one), against the put alone, measured in the same run.
//!
//! Run: `cargo run --release -p minivault-bench --bin snapshot_cost -- [KEYS] [ROUNDS]`
//! (defaults 200,000 keys of 16 bytes with 100-byte values, 15 rounds). Rounds interleave the
//! operations (1,000 of each per round) so that load on a shared machine falls on all alike; it
//! prints each one's median time per operation over the rounds and the ratios to the put alone.
//! Also the snapshot and the range with no put before them (nothing changed since the last).

use std::time::Instant;

use minivault::{Db, Durability, Options};
use minivault_suite::fault::Rng;

const OPS: u64 = 1_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{:016}", i).as_bytes());
    k
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A database of `keys` keys in a table and a twentieth of them in the MemTable again, as a
/// loaded database is.
fn loaded(dir: &std::path::Path, keys: u64) -> Result<Db, Box<dyn std::error::Error>> {
    let options = Options { durability: Durability::Manual, ..Options::default() };
    let db = Db::open_with(dir, options)?;
    let value = [7u8; 100];
    for i in 0..keys {
        db.put(&key(i.wrapping_mul(7919) % keys), &value)?;
    }
    db.flush()?;
    for i in 0..keys / 20 {
        db.put(&key(i.wrapping_mul(104_729) % keys), &value)?;
    }
    Ok(db)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(15);
    let root = std::env::temp_dir().join(format!("minivault-snapshot-cost-{}", std::process::id()));
    // One database per operation, loaded alike: what one operation leaves behind (tables,
    // compactions, stalls) falls on its own measurements only.
    let dbs = ["put", "snapshot", "range"].map(|name| loaded(&root.join(name), keys));
    let [db_put, db_snap, db_range] = dbs;
    let (db_put, db_snap, db_range) = (db_put?, db_snap?, db_range?);
    let value = [7u8; 100];
    let mut rng = Rng::new(42);
    let (mut put, mut snap, mut range) = (Vec::new(), Vec::new(), Vec::new());
    let (mut snap_alone, mut range_alone) = (Vec::new(), Vec::new());
    let mut seen = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..OPS {
            db_put.put(&key(rng.below(keys)), &value)?;
        }
        put.push(t.elapsed().as_secs_f64() / OPS as f64);
        let t = Instant::now();
        for _ in 0..OPS {
            db_snap.put(&key(rng.below(keys)), &value)?;
            let s = db_snap.snapshot()?;
            seen += usize::from(s.get(&key(0))?.is_some());
        }
        snap.push(t.elapsed().as_secs_f64() / OPS as f64);
        let t = Instant::now();
        for _ in 0..OPS {
            db_range.put(&key(rng.below(keys)), &value)?;
            let from = key(rng.below(keys));
            for e in db_range.range(from..).take(10) {
                seen += e?.0.len();
            }
        }
        range.push(t.elapsed().as_secs_f64() / OPS as f64);
        // Readers between writes: nothing changed since the last one.
        let t = Instant::now();
        for _ in 0..OPS {
            let s = db_snap.snapshot()?;
            seen += usize::from(s.get(&key(0))?.is_some());
        }
        snap_alone.push(t.elapsed().as_secs_f64() / OPS as f64);
        let t = Instant::now();
        for _ in 0..OPS {
            let from = key(rng.below(keys));
            for e in db_range.range(from..).take(10) {
                seen += e?.0.len();
            }
        }
        range_alone.push(t.elapsed().as_secs_f64() / OPS as f64);
    }
    let (p, s, r) = (median(put), median(snap), median(range));
    println!("keys {keys}, rounds {rounds} x {OPS} ops");
    for (name, db) in [("put", &db_put), ("snapshot", &db_snap), ("range", &db_range)] {
        let stats = db.stats();
        println!(
            "  db of {name:<8}: tables {}, flushes {}, compactions {}, MemTable keys {}",
            stats.tables, stats.flushes, stats.compactions, stats.memtable_keys
        );
    }
    println!("put                  {:>9.2} us", p * 1e6);
    println!("put + snapshot       {:>9.2} us  ({:.2} x put)", s * 1e6, s / p);
    println!("put + range(10 keys) {:>9.2} us  ({:.2} x put)", r * 1e6, r / p);
    let (sa, ra) = (median(snap_alone), median(range_alone));
    println!("snapshot, no put     {:>9.2} us  ({:.2} x put)", sa * 1e6, sa / p);
    println!("range(10 keys), no put {:>7.2} us  ({:.2} x put)", ra * 1e6, ra / p);
    println!("(checksum {seen})");
    for db in [db_put, db_snap, db_range] {
        db.close()?;
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
