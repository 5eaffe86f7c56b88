//! Filter: the blocked Bloom filter an SSTable carries, so that a lookup of a key the table
//! does not hold usually costs one 64-byte read instead of a binary search.
//!
//! ```text
//! filter = blocks × 64 bytes
//! block  = crc u32 LE (CRC-32C of the 60 bytes that follow) | 60 bytes = 480 bits
//! ```
//! A key's 64-bit hash ([`key_hash`]) picks one block from its high half and [`PROBES`] bits
//! inside that block from its low half (double hashing), so a query reads and checks one block.
//! At [`BITS_PER_KEY`] bits per key the false-positive rate is about 1 %.
//!
//! Each block carries its own checksum, checked on every query: a flipped bit can never turn a
//! stored key into a "not here" (which would read as a lost write); it is reported as corruption.
//!
//! The filter is built in caller memory ([`FilterBuilder`] over a byte slice): a flush uses the
//! free tail of the frozen MemTable's slot table (always room for [`BITS_PER_KEY`]), a compaction
//! its spare scratch, one window of blocks at a time when the whole filter does not fit
//! ([`FilterBuilder::window`]). Given too little memory a filter has fewer blocks and more false
//! positives, never false negatives; with none, the table has no filter.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::error::Corruption;
use crate::record::crc32c;

/// Bytes per filter block, checksum included.
pub const BLOCK_LEN: usize = 64;
/// Filter bits per block (the rest of the block is its checksum).
pub const BLOCK_BITS: u32 = ((BLOCK_LEN - 4) * 8) as u32;
/// Bits probed per key.
pub const PROBES: u32 = 6;
/// Bits per key a filter is sized for when memory allows.
pub const BITS_PER_KEY: usize = 10;

/// The 64-bit hash of a key that filters are built and queried with.
pub fn key_hash(key: &[u8]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(M) ^ 0x51_7cc1_b727_220a;
    let (words, rest) = key.as_chunks::<8>();
    for w in words {
        h = (h ^ u64::from_le_bytes(*w)).wrapping_mul(M).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    for (t, r) in tail.iter_mut().zip(rest) {
        *t = *r;
    }
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(M);
    // MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Blocks a filter for `keys` keys has when memory allows ([`BITS_PER_KEY`] bits per key).
pub fn blocks_for(keys: usize) -> usize {
    (keys.saturating_mul(BITS_PER_KEY)).div_ceil(BLOCK_BITS as usize)
}

/// The block of a filter of `blocks` blocks that holds the bits of hash `h`.
pub fn block_of(h: u64, blocks: usize) -> usize {
    (((h >> 32) * blocks as u64) >> 32) as usize
}

/// The bit positions of hash `h` inside its block.
fn bits(h: u64) -> impl Iterator<Item = usize> {
    let mut x = h as u32;
    let delta = x.rotate_right(17) | 1;
    (0..PROBES).map(move |_| {
        let bit = ((x as u64 * BLOCK_BITS as u64) >> 32) as usize;
        x = x.wrapping_add(delta);
        bit
    })
}

/// Does the (checked) block admit hash `h`? `Err` when the block fails its checksum.
pub fn may_contain(block: &[u8; BLOCK_LEN], h: u64) -> Result<bool, Corruption> {
    check_block(block)?;
    Ok(admits(block, h))
}

/// Checks a block (`BLOCK_LEN` bytes: its CRC, then its bits) against its checksum.
pub fn check_block(block: &[u8]) -> Result<(), Corruption> {
    let (crc, data) = block.split_at_checked(4).ok_or(Corruption::BadLayout)?;
    let expected = u32::from_le_bytes(crc.first_chunk().copied().unwrap_or_default());
    let got = crc32c(&[data]);
    if expected != got {
        return Err(Corruption::ChecksumMismatch { expected, got });
    }
    Ok(())
}

/// Does a whole filter (blocks already checked by [`check_block`], held in memory) admit hash
/// `h`? A filter without a block admits everything.
pub fn filter_admits(filter: &[u8], h: u64) -> bool {
    let blocks = filter.len() / BLOCK_LEN;
    if blocks == 0 {
        return true;
    }
    let at = block_of(h, blocks) * BLOCK_LEN;
    admits(filter.get(at..at + BLOCK_LEN).unwrap_or(&[]), h)
}

/// Does a block already checked by [`check_block`] admit hash `h`? (A block too short for a bit
/// admits nothing of it.)
pub fn admits(block: &[u8], h: u64) -> bool {
    let data = block.get(4..).unwrap_or(&[]);
    bits(h).all(|b| data.get(b / 8).is_some_and(|byte| byte & (1 << (b % 8)) != 0))
}

/// Builds a filter, or a window of one, in a caller's buffer.
///
/// A filter of `total` blocks can be built in a buffer of fewer: each builder holds the window
/// of blocks `lo .. lo + blocks()` and ignores the keys whose block lies outside it, so the
/// whole filter is built by adding every key once per window ([`FilterBuilder::window`]). A
/// compaction whose output's filter does not fit in its scratch memory builds it that way
/// ([`crate::compaction::merge::Merge`]), so the filter keeps [`BITS_PER_KEY`] at any table size.
pub struct FilterBuilder<'a> {
    buf: &'a mut [u8],
    /// Blocks of the whole filter.
    total: usize,
    /// The first block of the window `buf` holds.
    lo: usize,
}

impl<'a> FilterBuilder<'a> {
    /// A filter for about `keys` keys in the front of `mem`: [`blocks_for`]`(keys)` blocks, or
    /// as many as `mem` holds. `None` when `mem` cannot hold a single block or `keys` is 0.
    pub fn new(mem: &'a mut [u8], keys: usize) -> Option<Self> {
        let blocks = blocks_for(keys).min(mem.len() / BLOCK_LEN);
        Self::window(mem, blocks, 0)
    }

    /// The window of a `total`-block filter that starts at block `lo`, cleared, in the front of
    /// `mem`: as many blocks as `mem` holds, up to the filter's end. `None` when the window
    /// would be empty.
    pub fn window(mem: &'a mut [u8], total: usize, lo: usize) -> Option<Self> {
        let blocks = total.saturating_sub(lo).min(mem.len() / BLOCK_LEN);
        if blocks == 0 {
            return None;
        }
        let buf = mem.get_mut(..blocks * BLOCK_LEN)?;
        buf.fill(0);
        Some(FilterBuilder { buf, total, lo })
    }

    /// The window begun by [`FilterBuilder::window`]`(mem, total, lo)` (or by `new`, whose
    /// `total` is [`FilterBuilder::total`]), with keys added since: its bits are kept. `None`
    /// when the window would be empty.
    pub fn resume(mem: &'a mut [u8], total: usize, lo: usize) -> Option<Self> {
        let blocks = total.saturating_sub(lo).min(mem.len() / BLOCK_LEN);
        if blocks == 0 {
            return None;
        }
        Some(FilterBuilder { buf: mem.get_mut(..blocks * BLOCK_LEN)?, total, lo })
    }

    /// Blocks in the window (for a builder from [`FilterBuilder::new`], the whole filter).
    pub fn blocks(&self) -> usize {
        self.buf.len() / BLOCK_LEN
    }

    /// Blocks in the whole filter.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Adds the key whose [`key_hash`] is `h` (nothing when its block is outside the window).
    pub fn add(&mut self, h: u64) {
        let Some(i) = block_of(h, self.total).checked_sub(self.lo) else { return };
        let at = i * BLOCK_LEN + 4;
        if let Some(data) = self.buf.get_mut(at..at + BLOCK_LEN - 4) {
            for b in bits(h) {
                if let Some(byte) = data.get_mut(b / 8) {
                    *byte |= 1 << (b % 8);
                }
            }
        }
    }

    /// Seals every block of the window with its checksum; returns the window's bytes, which
    /// belong at byte `lo × 64` of the filter.
    pub fn finish(self) -> &'a [u8] {
        for block in self.buf.chunks_exact_mut(BLOCK_LEN) {
            let (crc, data) = block.split_at_mut(4);
            crc.copy_from_slice(&crc32c(&[data]).to_le_bytes());
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(keys: &[Vec<u8>], mem: &mut [u8]) -> Vec<u8> {
        let mut b = FilterBuilder::new(mem, keys.len()).unwrap();
        for k in keys {
            b.add(key_hash(k));
        }
        b.finish().to_vec()
    }

    fn query(filter: &[u8], key: &[u8]) -> Result<bool, Corruption> {
        let h = key_hash(key);
        let i = block_of(h, filter.len() / BLOCK_LEN) * BLOCK_LEN;
        may_contain(filter[i..i + BLOCK_LEN].try_into().unwrap(), h)
    }

    fn keys(n: usize, tag: &str) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("{tag}{i:08}").into_bytes()).collect()
    }

    #[test]
    fn every_added_key_is_admitted() {
        let ks = keys(10_000, "key");
        let mut mem = vec![0u8; 1 << 16];
        let f = build(&ks, &mut mem);
        assert_eq!(f.len(), blocks_for(ks.len()) * BLOCK_LEN);
        for k in &ks {
            assert_eq!(query(&f, k), Ok(true), "{k:?}");
        }
    }

    #[test]
    fn false_positive_rate_is_near_one_percent() {
        let ks = keys(20_000, "present");
        let mut mem = vec![0u8; 1 << 16];
        let f = build(&ks, &mut mem);
        let absent = keys(100_000, "absent");
        let fp = absent.iter().filter(|k| query(&f, k) == Ok(true)).count();
        let rate = fp as f64 / absent.len() as f64;
        assert!(rate < 0.02, "false-positive rate {rate}");
    }

    #[test]
    fn a_smaller_buffer_gives_a_smaller_filter_without_false_negatives() {
        let ks = keys(5_000, "k");
        let mut mem = vec![0u8; 10 * BLOCK_LEN];
        let f = build(&ks, &mut mem);
        assert_eq!(f.len(), 10 * BLOCK_LEN);
        assert!(ks.iter().all(|k| query(&f, k) == Ok(true)));
        assert!(FilterBuilder::new(&mut [0u8; BLOCK_LEN - 1], 10).is_none());
        assert!(FilterBuilder::new(&mut [0u8; 1024], 0).is_none());
    }

    #[test]
    fn a_filter_built_window_by_window_equals_the_filter_built_at_once() {
        let ks = keys(20_000, "w");
        let total = blocks_for(ks.len());
        let mut whole = vec![0u8; total * BLOCK_LEN];
        let at_once = build(&ks, &mut whole);
        assert_eq!(at_once.len(), total * BLOCK_LEN);
        // Windows of 7 blocks (the last one shorter), each fed every key.
        let mut pieced = Vec::new();
        let mut mem = vec![0u8; 7 * BLOCK_LEN + 5];
        let mut lo = 0;
        while let Some(mut w) = FilterBuilder::window(&mut mem, total, lo) {
            for k in &ks {
                w.add(key_hash(k));
            }
            let n = w.blocks();
            pieced.extend_from_slice(w.finish());
            lo += n;
        }
        assert_eq!(lo, total);
        assert_eq!(pieced, at_once);
        assert!(ks.iter().all(|k| query(&pieced, k) == Ok(true)));
    }

    #[test]
    fn any_flipped_bit_is_corruption_or_a_correct_answer() {
        let ks = keys(200, "k");
        let mut mem = vec![0u8; 4096];
        let f = build(&ks, &mut mem);
        for pos in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[pos] ^= 1 << bit;
                for k in &ks {
                    assert_ne!(query(&g, k), Ok(false), "flip at {pos}:{bit} hid {k:?}");
                }
            }
        }
    }

    #[test]
    fn hash_spreads_short_and_similar_keys() {
        // Keys that differ in one byte, or only in length, land on different hashes.
        let a = key_hash(b"");
        let b = key_hash(b"\0");
        let c = key_hash(b"\0\0\0\0\0\0\0\0");
        let d = key_hash(b"\0\0\0\0\0\0\0\0\0");
        assert!(a != b && b != c && c != d && a != d);
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(key_hash(&i.to_le_bytes())));
        }
    }
}
