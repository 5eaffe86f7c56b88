//! Doorkeeper: admission to a full cache, for the row cache and the page cache (TinyLFU's first
//! filter).
//!
//! A cache that inserts everything it misses does, under reads spread over far more than it
//! holds, an insert and an eviction per miss for items that are not read again before they are
//! evicted, and lets them push out the items that are. Once such a cache is full it asks the
//! doorkeeper: an item is admitted only when it was asked about a short while before. The
//! doorkeeper owns a bitset of item hashes, one bit per [`BYTES_PER_BIT`] bytes of the cache's
//! capacity (rounded up to a power of two of 64-bit words), allocated when first asked and
//! cleared each time a sixteenth of its bits are set: an item is remembered for about the next
//! `bits / 16` items asked about, and a bit set by another item lets one in a sixteenth of the
//! time at most. Its bytes count against the cache's capacity.

use std::mem::size_of;

/// The bitset takes one bit per this many bytes of the cache's capacity (16 KiB of a 4 MiB
/// cache: about seven bits per cached row of a 16-byte key and a 100-byte value, sixteen per
/// 4 KiB page of a page cache).
pub const BYTES_PER_BIT: usize = 32;

/// The bitset of item hashes asked about since it was last cleared.
#[derive(Debug)]
pub struct Doorkeeper {
    words: Vec<u64>,
    /// Words once allocated: a power of two.
    len: usize,
    /// Bits set since the last clear.
    marks: usize,
}

impl Doorkeeper {
    /// The doorkeeper of a cache of `capacity` bytes (nothing allocated until first asked).
    pub fn for_capacity(capacity: usize) -> Self {
        let len = (capacity / BYTES_PER_BIT / 64).max(1).next_power_of_two();
        Doorkeeper { words: Vec::new(), len, marks: 0 }
    }

    /// The bytes the bitset takes once allocated.
    pub fn bytes(&self) -> usize {
        self.len * size_of::<u64>()
    }

    /// The bytes the bitset takes now (0 until first asked).
    pub fn allocated_bytes(&self) -> usize {
        if self.words.is_empty() {
            0
        } else {
            self.bytes()
        }
    }

    /// The bits of the set.
    pub fn bits(&self) -> usize {
        self.len * 64
    }

    /// True when an item of hash `hash` was asked about since the last clear; remembers it
    /// otherwise.
    pub fn seen_or_mark(&mut self, hash: u64) -> bool {
        if self.words.is_empty() {
            self.words = vec![0; self.len];
        }
        // Hash tables place items by the hash's low bits: the high ones pick the bit.
        let bit = (hash >> 32) as usize & (self.bits() - 1);
        let Some(word) = self.words.get_mut(bit / 64) else { return false };
        let mask = 1u64 << (bit % 64);
        if *word & mask != 0 {
            return true;
        }
        *word |= mask;
        self.marks += 1;
        if self.marks >= self.bits() / 16 {
            self.words.fill(0);
            self.marks = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed 64-bit hash of `i` (splitmix64's finalizer).
    fn hash(i: u64) -> u64 {
        let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    #[test]
    fn an_item_asked_about_again_soon_is_seen_and_one_asked_about_long_ago_is_not() {
        let mut d = Doorkeeper::for_capacity(64 << 10);
        assert_eq!((d.bits(), d.bytes(), d.allocated_bytes()), (2048, 256, 0));
        assert!(!d.seen_or_mark(hash(1)));
        assert_eq!(d.allocated_bytes(), 256);
        assert!(d.seen_or_mark(hash(1)), "asked again at once");
        // Items asked about once, then again after `bits` others: the clears forget most.
        let mut remembered = 0;
        for j in 0..100u64 {
            d.seen_or_mark(hash(1_000_000 + j));
            for i in 0..d.bits() as u64 {
                d.seen_or_mark(hash(2_000_000 + 10_000 * j + i));
            }
            remembered += usize::from(d.seen_or_mark(hash(1_000_000 + j)));
        }
        assert!(remembered < 25, "{remembered} of 100 remembered after {} others", d.bits());
    }

    #[test]
    fn items_asked_about_once_are_let_in_a_sixteenth_of_the_time_at_most() {
        let mut d = Doorkeeper::for_capacity(1 << 20);
        let n = 100_000u64;
        let let_in = (0..n).filter(|&i| d.seen_or_mark(hash(i))).count() as u64;
        assert!(let_in <= n / 16, "{let_in} of {n}");
    }
}
