//! The Rust side of `scripts/bindings-bench.sh`: the workload of `capi/bench/bench.c` through
//! the Rust API (`minivault::Db`), so that C's rate over this one is the C API's overhead.
//!
//! Usage: `bench_rust DIR KEYS`; prints `fillrandom OPS_PER_S` and `readrandom OPS_PER_S`.

use std::time::Instant;

use minivault_posix::{Db, Durability, Options};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, n] = args.as_slice() else {
        return Err("usage: bench_rust DIR KEYS".into());
    };
    let n: usize = n.parse()?;
    let mut keys = Vec::with_capacity(n * KEY_LEN);
    let mut values = Vec::with_capacity(n * VALUE_LEN);
    let mut x: u64 = 42;
    for i in 0..n {
        keys.extend_from_slice(format!("{:016}", (i * 7919) % n).as_bytes());
        for _ in 0..VALUE_LEN {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x as u8);
        }
    }
    let db = Db::open_with(dir, Options { durability: Durability::Manual, ..Options::default() })?;
    let t0 = Instant::now();
    for i in 0..n {
        db.put(&keys[i * KEY_LEN..][..KEY_LEN], &values[i * VALUE_LEN..][..VALUE_LEN])?;
    }
    let t1 = Instant::now();
    let mut found = 0;
    for i in 0..n {
        // The C side formats each key as it reads it too.
        let k = (i * 7907) % n;
        let key = format!("{:016}", (k * 7919) % n);
        let mut buf = [0u8; VALUE_LEN];
        if let Some(v) = db.get(key.as_bytes())? {
            buf[..v.len()].copy_from_slice(&v);
            found += 1;
        }
        std::hint::black_box(&buf);
    }
    let t2 = Instant::now();
    db.close()?;
    if found != n {
        return Err(format!("found {found} of {n} keys").into());
    }
    println!("fillrandom {:.0}", n as f64 / (t1 - t0).as_secs_f64());
    println!("readrandom {:.0}", n as f64 / (t2 - t1).as_secs_f64());
    Ok(())
}
