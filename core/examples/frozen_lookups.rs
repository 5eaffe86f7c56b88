//! Frozen-MemTable lookups, timed: 10,000 keys of 16 bytes (decimal digits, which share a
//! prefix, or binary) with 100-byte values in a 4 MiB MemTable, half of them overwritten after a
//! pinned point, frozen; then `get` and `lookup_as_of(point)` of random held keys, best of 5
//! passes of 3,000,000 lookups each, in ns per lookup. Compare builds by running it on each:
//! `cargo run --release -p minivault-core --example frozen_lookups`.

use minivault_core::entry::EntryHeader;
use minivault_core::memtable::{MemLookup, MemTable};
use std::time::Instant;

fn main() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for shape in ["decimal16", "binary16"] {
        let mut m = MemTable::new(vec![0u8; 4 << 20]).unwrap();
        let mut keys = Vec::new();
        let mk = |x: u64| -> Vec<u8> {
            if shape == "decimal16" {
                format!("{:016}", x % 100_000_000).into_bytes()
            } else {
                x.to_be_bytes().iter().chain(x.wrapping_mul(31).to_le_bytes().iter()).copied().collect()
            }
        };
        let v = [7u8; 100];
        loop {
            let k = mk(next());
            let h = EntryHeader { tombstone: false, key_len: k.len(), expires_at: None };
            if m.insert(&h, &k, &v).is_err() {
                break;
            }
            keys.push(k);
            if keys.len() == 10000 {
                break;
            }
        }
        let point = m.pin();
        for k in keys.iter().take(keys.len() / 2) {
            let h = EntryHeader { tombstone: false, key_len: k.len(), expires_at: None };
            if m.insert(&h, k, &v).is_err() {
                break;
            }
        }
        m.freeze();
        let n = 3_000_000;
        let idx: Vec<usize> = (0..n).map(|_| next() as usize % keys.len()).collect();
        let mut best_get = f64::MAX;
        let mut best_asof = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let mut found = 0usize;
            for &i in &idx {
                found += m.get(&keys[i]).is_some() as usize;
            }
            best_get = best_get.min(t.elapsed().as_nanos() as f64 / n as f64);
            assert_eq!(found, n);
            let t = Instant::now();
            let mut found = 0usize;
            for &i in &idx {
                found += matches!(m.lookup_as_of(&keys[i], point), MemLookup::Found(_)) as usize;
            }
            best_asof = best_asof.min(t.elapsed().as_nanos() as f64 / n as f64);
            assert_eq!(found, n);
        }
        println!(
            "{shape}: keys {} versions {} get {:.1} ns/op, as-of {:.1} ns/op",
            m.len(),
            m.versions(),
            best_get,
            best_asof
        );
    }
}
