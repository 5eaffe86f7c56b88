//! The key space, the values and the random orders every engine sees: the same bytes for the
//! same `--seed`, whichever engine runs.
//!
//! Key `i` (present keys are the even numbers `0, 2, 4, …`, missing keys the odd ones in
//! between, so a lookup of a missing key lands inside every table's key range) is `i` in
//! zero-padded decimal, `key_size` bytes long, like db_bench's keys. Values are pseudo-random
//! bytes (incompressible, so engines that compress by default gain nothing from it), derived from
//! the key number and a generation, so an overwrite writes different bytes.

/// The seeded generator shared with the crash tests (SplitMix64; `minivault_suite::fault::rng`).
pub use minivault_suite::fault::Rng;

/// A pseudo-random bijection of `0..n`: a few rounds of xor-shift and odd multiplication (each a
/// bijection on `bits`-bit numbers), cycle-walked back into `0..n`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    /// A permutation of `0..n` chosen by `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = (64 - n.max(2).saturating_sub(1).leading_zeros()).max(2);
        let mut rng = Rng::new(seed);
        let keys = [rng.next_u64() | 1, rng.next_u64(), rng.next_u64() | 1, rng.next_u64()];
        Permutation { n, bits, keys }
    }

    fn round(&self, mut x: u64) -> u64 {
        let mask = if self.bits == 64 { u64::MAX } else { (1u64 << self.bits) - 1 };
        let half = self.bits.div_ceil(2);
        for pair in self.keys.chunks(2) {
            x ^= x >> half;
            x = x.wrapping_mul(pair[0]) & mask;
            x = x.wrapping_add(pair[1]) & mask;
        }
        x ^ (x >> half)
    }

    /// The `i`-th element (`i < n`).
    pub fn at(&self, i: u64) -> u64 {
        let mut x = self.round(i);
        while x >= self.n {
            x = self.round(x);
        }
        x
    }
}

/// The keys and values of one run.
#[derive(Debug, Clone)]
pub struct KeySpace {
    /// Number of present keys.
    pub n: u64,
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// The run's seed.
    pub seed: u64,
}

impl KeySpace {
    /// Writes present key number `i` (`0..n`) into `out`.
    pub fn key(&self, i: u64, out: &mut Vec<u8>) {
        self.key_raw(2 * i, out);
    }

    /// Writes missing key number `i`: it sorts between present keys `i` and `i + 1`.
    pub fn missing_key(&self, i: u64, out: &mut Vec<u8>) {
        self.key_raw(2 * i + 1, out);
    }

    /// Writes key number `i` of the scan workloads' database, where every number `0..n` is
    /// present (no gaps for missing keys): `i` in zero-padded decimal. The keys `100 m ..
    /// 100 m + 99` share their first `key_size - 2` bytes, so that prefix names a group of
    /// 100 keys ([`KeySpace::group_prefix`]).
    pub fn dense_key(&self, i: u64, out: &mut Vec<u8>) {
        self.key_raw(i, out);
    }

    /// Groups of 100 dense keys that are complete (at least one, which holds every key when
    /// `n < 100`).
    pub fn groups(&self) -> u64 {
        (self.n / 100).max(1)
    }

    /// Writes the prefix of dense-key group `m`: the first `key_size - 2` bytes of dense key
    /// `100 m`; returns how many keys of `0..n` carry it (100, or `n` when `n < 100`).
    pub fn group_prefix(&self, m: u64, out: &mut Vec<u8>) -> u64 {
        self.key_raw(100 * m, out);
        out.truncate(self.key_size - 2);
        self.n.saturating_sub(100 * m).min(100)
    }

    fn key_raw(&self, k: u64, out: &mut Vec<u8>) {
        out.clear();
        let digits = k.to_string();
        if digits.len() >= self.key_size {
            out.extend_from_slice(&digits.as_bytes()[digits.len() - self.key_size..]);
        } else {
            out.resize(self.key_size - digits.len(), b'0');
            out.extend_from_slice(digits.as_bytes());
        }
    }

    /// Writes the value of key `i` in write generation `generation` into `out`.
    pub fn value(&self, i: u64, generation: u64, out: &mut Vec<u8>) {
        out.clear();
        let mut rng = Rng::new(self.seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (generation << 56));
        while out.len() < self.value_size {
            let w = rng.next_u64().to_le_bytes();
            let take = (self.value_size - out.len()).min(8);
            out.extend_from_slice(&w[..take]);
        }
    }

    /// The key numbers `0..n` in a random order fixed by the seed and `salt`, computed on the
    /// fly (no `n`-sized vector inflates the benchmark's own RSS).
    pub fn permutation(&self, salt: u64) -> Permutation {
        Permutation::new(self.n, self.seed.wrapping_add(salt.wrapping_mul(0x1000_0000_01B3)))
    }

    /// Bytes of one key plus one value: the user data of one put.
    pub fn entry_bytes(&self) -> u64 {
        (self.key_size + self.value_size) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_missing_keys_interleave() {
        let ks = KeySpace { n: 10, key_size: 16, value_size: 100, seed: 1 };
        let (mut a, mut m, mut b) = (Vec::new(), Vec::new(), Vec::new());
        ks.key(3, &mut a);
        ks.missing_key(3, &mut m);
        ks.key(4, &mut b);
        assert_eq!(a, b"0000000000000006");
        assert!(a < m && m < b);
    }

    #[test]
    fn a_group_prefix_holds_100_dense_keys() {
        let ks = KeySpace { n: 1000, key_size: 16, value_size: 8, seed: 7 };
        let (mut p, mut k) = (Vec::new(), Vec::new());
        assert_eq!(ks.groups(), 10);
        assert_eq!(ks.group_prefix(3, &mut p), 100);
        assert_eq!(p, b"00000000000003");
        let holding: Vec<u64> = (0..1000)
            .filter(|&i| {
                ks.dense_key(i, &mut k);
                k.starts_with(&p)
            })
            .collect();
        assert_eq!(holding, (300..400).collect::<Vec<_>>());
        let few = KeySpace { n: 42, ..ks };
        assert_eq!((few.groups(), few.group_prefix(0, &mut p)), (1, 42));
    }

    #[test]
    fn permutation_holds_every_key_once() {
        let ks = KeySpace { n: 1000, key_size: 16, value_size: 8, seed: 7 };
        let perm = ks.permutation(1);
        let mut p: Vec<u64> = (0..1000).map(|i| perm.at(i)).collect();
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn values_differ_per_generation() {
        let ks = KeySpace { n: 10, key_size: 16, value_size: 100, seed: 7 };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ks.value(1, 0, &mut a);
        ks.value(1, 1, &mut b);
        assert_eq!(a.len(), 100);
        assert_ne!(a, b);
    }
}
