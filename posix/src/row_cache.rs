//! RowCache: a bounded cache of recently read rows (key → value, with the value's expiry) in
//! front of the engine's read path, owned by the [`crate::Db`] handle (RocksDB's `row_cache`).
//!
//! A get that misses the MemTables costs a binary search per SSTable, each probe a read through
//! the page cache ([`crate::page_cache`]); a row served from here costs one hash lookup and a copy.
//! The cache owns:
//! - rows keyed by the user's key, each holding the value and the expiry the engine reported
//!   for it ([`minivault_core::Db::get_with_expiry`]);
//! - the byte bound: the rows' charges ([`RowCache::bytes`]) never exceed the capacity. A row is
//!   charged `key + value + ENTRY_OVERHEAD` ([`RowCache::row_charge`]): the key and value are
//!   one allocation, held in the row's slot with the key's hash; the index is a hash table of
//!   slot numbers (`hashbrown::HashTable`), which finds a key by its hash and the slot's bytes
//!   and an evicted row's place by the stored hash, so a get that misses and caches its answer
//!   hashes the key twice (the lookup, the insert) and never an evicted key. [`ENTRY_OVERHEAD`]
//!   is the allocator's header of that allocation, twice the row's place in the slot vector
//!   (which grows by doubling) and four times its place in the index (which also doubles when
//!   removals left it full of deleted marks); both are shrunk once four times larger than the
//!   rows need. On 64-bit targets a row of a 16-byte key and a 100-byte value is charged 236
//!   bytes (302 before the index held slot numbers). The hash is std's SipHash, keyed at
//!   random per cache: the keys are the user's, possibly chosen by whoever feeds the device. A
//!   row charged more than 1/[`MAX_ROW_SHARE`] of the capacity is not cached, so one large
//!   value cannot push out the hot set. The charges are the bound; the heap follows them up to
//!   the allocator's rounding;
//! - CLOCK eviction, as in the page cache: a hit sets the row's reference bit; to make room the
//!   hand clears set bits and evicts the first row whose bit is already clear, and the new row
//!   takes the victim's slot, just behind the hand, so it has a whole turn to be read again.
//!   Slots stay dense (a removed row's slot takes the last row), so the index holds no holes;
//! - admission ([`RowCache::offer`], what a get calls with the answer it read): while the rows
//!   fit, every answer is cached; once caching one would evict another, only a key already
//!   offered a short while before is cached (a [`Doorkeeper`] of key hashes, 1/256 of the
//!   capacity). Keys read once, such as a sweep of every key or uniformly random gets over
//!   far more rows than fit, then cost a bit each instead of an insert and an eviction, and do
//!   not push out the rows that are read again and again. The doorkeeper's bytes count against
//!   the capacity;
//! - expiry: a row is served only while the clock (the engine's) is before its expiry; a lookup
//!   that finds an expired row drops it.
//!
//! It does not know about writes: the handle removes a key (or everything) before each write
//! reaches the engine, so a cached row is always the value the engine would return. A get that
//! reads the tables without the engine's lock caches its answer only if no write of its key
//! came in between: it takes a [`Stamp`] of the key's write count under the engine's lock and
//! offers it with [`RowCache::offer_if_unchanged`]. The counts are kept per stripe of keys
//! ([`STAMP_STRIPES`] of them, by a hash of the key; a write to another key of the stripe only
//! costs that get its caching), and [`RowCache::clear`] changes every stamp. Absent keys
//! are not cached: the hot-key reads this serves find their keys, a stream of misses would push
//! the hot rows out, and misses are the job of the SSTables' own filters.

use std::hash::{BuildHasher, RandomState};
use std::mem::size_of;

use hashbrown::HashTable;

use minivault_core::entry;

use crate::doorkeeper::Doorkeeper;

/// Default capacity of [`crate::Options::row_cache_bytes`]: 4 MiB, the size of the default
/// MemTable. At 16-byte keys and 100-byte values that is about 17,700 rows (on 64-bit targets).
pub const DEFAULT_ROW_CACHE_BYTES: usize = 4 << 20;

/// Rows charged more than `capacity / MAX_ROW_SHARE` bytes are not cached.
pub const MAX_ROW_SHARE: usize = 8;

/// Bytes a heap allocation costs beyond what it holds (glibc malloc: an 8-byte header, rounded
/// up to 16 bytes).
const ALLOC_HEADER: usize = 16;

/// Bytes of one place in the slot vector.
const SLOT_BYTES: usize = size_of::<Slot>();

/// Bytes of one place in the index: a slot number and its control byte, in a table at most 7/8
/// full (hashbrown's layout).
const INDEX_ENTRY_BYTES: usize = ((size_of::<u32>() + 1) * 8).div_ceil(7);

/// Bytes charged per row beyond its key and value: the header of its allocation (the key and
/// value), twice its place in the slot vector and four times its place in the index (a table
/// that churns at one size fills with deleted marks and then doubles; 120 bytes on 64-bit
/// targets).
pub const ENTRY_OVERHEAD: usize = ALLOC_HEADER + 2 * SLOT_BYTES + 4 * INDEX_ENTRY_BYTES;

/// A slot's `expires_at` for a row that never expires (an expiry this far off reads as never).
const NEVER: u64 = u64::MAX;

/// Stripes of the write counts behind [`Stamp`]s: 256 counters, 2 KiB.
pub const STAMP_STRIPES: usize = 256;

/// The write count of a key's stripe when a get took it ([`RowCache::stamp`]): a row read with
/// it may be cached only while no write of the stripe (nor a clear) has come since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    stripe: usize,
    writes: u64,
}

/// A slot number no row has (rows are fewer than `u32::MAX`): an index entry parked there
/// while two rows swap slots.
const PARKED: usize = u32::MAX as usize;

/// The index is not shrunk below this many places.
const MIN_INDEX: usize = 16;

/// One cached row: `data` is the key followed by the value; `hash` is the key's.
struct Slot {
    data: Box<[u8]>,
    hash: u64,
    /// In the engine's clock; [`NEVER`] for none.
    expires_at: u64,
    key_len: u32,
    referenced: bool,
}

impl Slot {
    fn key(&self) -> &[u8] {
        self.data.get(..self.key_len as usize).unwrap_or(&[])
    }

    fn value(&self) -> &[u8] {
        self.data.get(self.key_len as usize..).unwrap_or(&[])
    }
}

/// Counters and sizes of a [`RowCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowCacheStats {
    /// Gets answered from the cache.
    pub hits: u64,
    /// Gets the cache could not answer (absent, evicted, invalidated or expired rows), while
    /// enabled.
    pub misses: u64,
    /// Rows dropped by CLOCK to make room.
    pub evictions: u64,
    /// Answers not cached because the cache was full and their key had not been offered a short
    /// while before ([`RowCache::offer`]).
    pub declined: u64,
    /// Rows in the cache.
    pub rows: usize,
    /// Bytes counted against the capacity: the rows' charges (see [`RowCache::row_charge`]) and,
    /// once the cache has been full, its doorkeeper's (see [`RowCache::offer`]).
    pub bytes: usize,
    /// The bound on `bytes`; 0 when disabled.
    pub capacity_bytes: usize,
}

/// The cache. `capacity` is in bytes; 0 disables it.
pub struct RowCache {
    /// Slot numbers, found by their rows' key hashes.
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Slot>,
    capacity: usize,
    /// Sum of [`RowCache::row_charge`] over the cached rows.
    row_bytes: usize,
    hand: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    declined: u64,
    doorkeeper: Doorkeeper,
    /// Keys removed, per stripe ([`RowCache::stamp`]).
    stripe_writes: Box<[u64; STAMP_STRIPES]>,
    /// Clears since creation.
    epoch: u64,
}

/// The stripe of `key`: a multiply-rotate hash of its bytes. Collisions cost a get its caching,
/// never a stale row.
fn stripe_of(key: &[u8]) -> usize {
    let mut h: u64 = 0;
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    (h >> 56) as usize % STAMP_STRIPES
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache").field("stats", &self.stats()).finish()
    }
}

impl RowCache {
    /// A cache of at most `bytes` bytes (0: disabled).
    pub fn new(bytes: usize) -> Self {
        RowCache {
            index: HashTable::new(),
            hasher: RandomState::new(),
            slots: Vec::new(),
            capacity: bytes,
            row_bytes: 0,
            hand: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            declined: 0,
            doorkeeper: Doorkeeper::for_capacity(bytes),
            stripe_writes: Box::new([0; STAMP_STRIPES]),
            epoch: 0,
        }
    }

    /// The write count of `key`'s stripe now: taken under the lock writes hold while they
    /// remove their keys, before a read whose answer is to be cached with
    /// [`RowCache::offer_if_unchanged`].
    pub fn stamp(&self, key: &[u8]) -> Stamp {
        let stripe = stripe_of(key);
        Stamp { epoch: self.epoch, stripe, writes: self.stripe_writes.get(stripe).copied().unwrap_or(0) }
    }

    /// [`RowCache::offer`], unless a key of `stamp`'s stripe was removed (a write) or the
    /// cache cleared since `stamp` was taken: the value may then be older than that write.
    /// Returns whether the row was offered to the cache.
    pub fn offer_if_unchanged(
        &mut self,
        key: &[u8],
        stamp: Stamp,
        value: &[u8],
        expires_at: Option<u64>,
    ) -> bool {
        if stamp != self.stamp(key) {
            return false;
        }
        self.offer(key, value, expires_at);
        true
    }

    /// A get's answer, offered: cached as [`RowCache::insert`] caches it while it fits without
    /// evicting a row, or when its key was offered a short while before (the doorkeeper: see
    /// the module docs); otherwise its key is remembered and it is not cached (counted in
    /// [`RowCacheStats::declined`]). Returns whether it was cached.
    pub fn offer(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let charge = Self::row_charge(key.len(), value.len());
        if charge > self.capacity / MAX_ROW_SHARE {
            // Never cached (see `insert`): its key is not worth a bit.
            return false;
        }
        let hash = self.hash(key);
        if self.row_bytes.saturating_add(charge) > self.row_limit() && !self.doorkeeper.seen_or_mark(hash) {
            self.declined += 1;
            return false;
        }
        self.insert_hashed(hash, key, value, expires_at)
    }

    /// The bytes rows may be charged: the capacity less the doorkeeper's.
    fn row_limit(&self) -> usize {
        self.capacity.saturating_sub(self.doorkeeper.bytes())
    }

    /// True when the cache holds nothing, ever (capacity 0).
    pub fn is_disabled(&self) -> bool {
        self.capacity == 0
    }

    /// True when no row is cached.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes a row of these sizes is charged: `key + value +` [`ENTRY_OVERHEAD`].
    pub fn row_charge(key_len: usize, value_len: usize) -> usize {
        key_len.saturating_add(value_len).saturating_add(ENTRY_OVERHEAD)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`'s row, whose hash is `hash`.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        let at = self.index.find(hash, |&i| slots.get(i as usize).is_some_and(|s| s.key() == key))?;
        Some(*at as usize)
    }

    /// Points the index entry of the row now in slot `i`, which says `was`, at `i`.
    fn repoint(&mut self, i: usize, was: usize) {
        self.repoint_to(i, was, i);
    }

    /// Points the index entry of the row now in slot `i`, which says `was`, at `to`.
    fn repoint_to(&mut self, i: usize, was: usize, to: usize) {
        let Some(hash) = self.slots.get(i).map(|s| s.hash) else { return };
        let found = self.index.find_mut(hash, |&j| j as usize == was).map(|at| *at = to as u32);
        debug_assert!(found.is_some(), "slot {i}'s index entry (at {was}) is missing");
    }

    /// Bytes counted against the capacity: the sum of the cached rows' charges, and the
    /// doorkeeper's bitset once allocated.
    pub fn bytes(&self) -> usize {
        self.row_bytes + self.doorkeeper.allocated_bytes()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> RowCacheStats {
        RowCacheStats {
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            declined: self.declined,
            rows: self.slots.len(),
            bytes: self.bytes(),
            capacity_bytes: self.capacity,
        }
    }

    /// The cached value of `key`, unless it is absent or expired at `now()` (the clock is read
    /// only for a row that expires). An expired row is dropped.
    pub fn get(&mut self, key: &[u8], now: impl FnOnce() -> u64) -> Option<&[u8]> {
        self.get_row(key, now).map(|(value, _)| value)
    }

    /// [`RowCache::get`], with the row's expiry (`None`: never).
    pub fn get_row(&mut self, key: &[u8], now: impl FnOnce() -> u64) -> Option<(&[u8], Option<u64>)> {
        if self.capacity == 0 {
            return None;
        }
        let Some(i) = self.find(self.hash(key), key) else {
            self.misses += 1;
            return None;
        };
        let expired = match self.slots.get(i) {
            // The engine's one expiry rule; the clock is read only for a row that expires.
            Some(slot) => slot.expires_at != NEVER && entry::is_expired(Some(slot.expires_at), now()),
            None => true,
        };
        if expired {
            self.remove_slot(i);
            self.shrink_index();
            self.misses += 1;
            return None;
        }
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        self.hits += 1;
        Some((slot.value(), (slot.expires_at != NEVER).then_some(slot.expires_at)))
    }

    /// Caches `value` (which expires at `expires_at`, if ever) under `key`, replacing any row of
    /// `key`, evicting rows until everything fits. Rows too large for the cache are not kept.
    pub fn insert(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) {
        if self.capacity == 0 {
            return;
        }
        self.insert_hashed(self.hash(key), key, value, expires_at);
    }

    /// [`RowCache::insert`] of a key whose hash is `hash`; returns whether the row was cached.
    fn insert_hashed(&mut self, hash: u64, key: &[u8], value: &[u8], expires_at: Option<u64>) -> bool {
        self.bump(key);
        self.drop_row(hash, key);
        let charge = Self::row_charge(key.len(), value.len());
        let Ok(key_len) = u32::try_from(key.len()) else { return false };
        // Slot numbers are `u32` (below `PARKED`): a cache of that many rows takes no more.
        if charge > self.capacity / MAX_ROW_SHARE || self.slots.len() >= PARKED - 1 {
            return false;
        }
        let mut victim = None;
        while self.row_bytes + charge > self.row_limit() {
            match self.evict_one() {
                Some(h) => victim = Some(h),
                None => return false,
            }
        }
        let mut data = Vec::with_capacity(key.len() + value.len());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        let expires_at = expires_at.unwrap_or(NEVER);
        self.slots.push(Slot { data: data.into_boxed_slice(), hash, expires_at, key_len, referenced: false });
        let last = self.slots.len() - 1;
        let slots = &self.slots;
        self.index.insert_unique(hash, last as u32, |&i| slots.get(i as usize).map_or(0, |s| s.hash));
        self.row_bytes += charge;
        // CLOCK puts the new row in the last victim's slot, just behind the hand, so it gets a
        // whole turn to be read again. (Left at the end, where the victim's slot sent the last
        // row, it would be the next victim: every insert would evict the one before it.)
        if let Some(h) = victim.filter(|&h| h < last) {
            self.slots.swap(h, last);
            // The new row's entry is parked on a number no slot has while the other row's
            // entry moves from `h` to `last`: slot numbers pick an entry out, so never two alike.
            self.repoint_to(h, last, PARKED);
            self.repoint(last, h);
            self.repoint(h, PARKED);
        }
        if let Some(h) = victim {
            self.hand = h + 1;
        }
        true
    }

    /// Drops the row of `key`, if cached, and changes the stamps of its stripe: a write of
    /// `key` is coming.
    pub fn remove(&mut self, key: &[u8]) {
        self.bump(key);
        if !self.slots.is_empty() {
            self.drop_row(self.hash(key), key);
        }
    }

    /// Changes the stamps of `key`'s stripe.
    fn bump(&mut self, key: &[u8]) {
        if let Some(n) = self.stripe_writes.get_mut(stripe_of(key)) {
            *n = n.wrapping_add(1);
        }
    }

    /// Drops the row of `key` (whose hash is `hash`), if cached.
    fn drop_row(&mut self, hash: u64, key: &[u8]) {
        if let Some(i) = self.find(hash, key) {
            self.remove_slot(i);
            self.shrink_index();
        }
    }

    /// Drops every row, gives the index's and the doorkeeper's memory back and changes every
    /// stamp. Counters are kept.
    pub fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.index = HashTable::new();
        self.slots = Vec::new();
        self.row_bytes = 0;
        self.hand = 0;
        self.doorkeeper = Doorkeeper::for_capacity(self.capacity);
    }

    /// CLOCK: skips (and clears) referenced rows until an unreferenced one comes round, and
    /// evicts it. Returns the victim's slot, which the last row now fills (the hand looks at
    /// that row next); `None` when there is no row.
    fn evict_one(&mut self) -> Option<usize> {
        let n = self.slots.len();
        // Every referenced bit is cleared within one sweep, so two sweeps always find a victim.
        for _ in 0..=2 * n {
            let h = if self.hand < n { self.hand } else { 0 };
            let slot = self.slots.get_mut(h)?;
            if slot.referenced {
                slot.referenced = false;
                self.hand = h + 1;
            } else {
                self.hand = h;
                self.remove_slot(h);
                self.evictions += 1;
                return Some(h);
            }
        }
        None
    }

    /// Removes the row in slot `i`; the last slot takes its place.
    fn remove_slot(&mut self, i: usize) {
        if i >= self.slots.len() {
            return;
        }
        let slot = self.slots.swap_remove(i);
        if let Ok(entry) = self.index.find_entry(slot.hash, |&j| j as usize == i) {
            entry.remove();
        }
        self.row_bytes -= Self::row_charge(slot.key().len(), slot.value().len());
        // The last row, moved into slot `i`.
        let was = self.slots.len();
        self.repoint(i, was);
    }

    /// Gives back an index four times larger than the rows need, keeping room to grow again (a
    /// row is charged twice its place in the slots, four times in the index), never below
    /// [`MIN_INDEX`] places. Not called while [`RowCache::insert`] evicts: the row that follows
    /// takes the room back.
    fn shrink_index(&mut self) {
        let len = self.slots.len();
        if self.slots.capacity() > 4 * len.max(MIN_INDEX) {
            let keep = (2 * len).max(MIN_INDEX);
            self.slots.shrink_to(keep);
            let slots = &self.slots;
            self.index.shrink_to(keep, |&i| slots.get(i as usize).map_or(0, |s| s.hash));
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.index.len(), self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            assert_eq!(slot.hash, self.hash(slot.key()));
            assert_eq!(self.find(slot.hash, slot.key()), Some(i), "the index points at the row's slot");
        }
        let charged: usize =
            self.slots.iter().map(|s| Self::row_charge(s.key().len(), s.value().len())).sum();
        assert_eq!(charged, self.row_bytes);
        assert!(self.bytes() <= self.capacity, "{} bytes in a cache of {}", self.bytes(), self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        format!("key{i:06}").into_bytes()
    }

    #[test]
    fn cached_row_is_returned_until_removed() {
        let mut c = RowCache::new(64 << 10);
        assert_eq!(c.get(b"k", || 0), None);
        c.insert(b"k", b"v", None);
        assert_eq!(c.get(b"k", || 0), Some(&b"v"[..]));
        assert_eq!(c.get(b"other", || 0), None);
        c.remove(b"k");
        assert_eq!(c.get(b"k", || 0), None);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.rows), (1, 3, 0));
        c.check_invariants();
    }

    #[test]
    fn insert_replaces_the_row_of_the_same_key() {
        let mut c = RowCache::new(64 << 10);
        c.insert(b"k", b"old", None);
        c.insert(b"k", b"newer value", Some(9));
        assert_eq!(c.get(b"k", || 0), Some(&b"newer value"[..]));
        assert_eq!(c.stats().rows, 1);
        c.check_invariants();
    }

    #[test]
    fn row_is_not_served_at_or_after_its_expiry_and_is_dropped() {
        let mut c = RowCache::new(64 << 10);
        c.insert(b"k", b"v", Some(100));
        assert_eq!(c.get(b"k", || 99), Some(&b"v"[..]));
        assert_eq!(c.get(b"k", || 100), None, "at the expiry instant, as the engine");
        assert_eq!(c.stats().rows, 0, "the expired row was dropped");
        assert_eq!(c.get(b"k", || 0), None, "not even when the clock goes back");
        c.check_invariants();
    }

    #[test]
    fn the_clock_is_read_only_for_rows_that_expire() {
        let mut c = RowCache::new(64 << 10);
        c.insert(b"k", b"v", None);
        assert_eq!(c.get(b"k", || panic!("clock read for a row without expiry")), Some(&b"v"[..]));
    }

    #[test]
    fn referenced_rows_survive_eviction_longer() {
        let mut c = RowCache::new(64 << 10);
        let mut i = 0;
        // Fill until the first eviction, hitting key 0 all along.
        while c.stats().evictions == 0 {
            c.insert(&key(i), &[0; 100], None);
            assert!(c.get(&key(0), || 0).is_some(), "the hot row was evicted after {i} inserts");
            i += 1;
            c.check_invariants();
        }
        assert!(i > 10);
        for j in i..i + 1000 {
            c.insert(&key(j), &[0; 100], None);
            assert!(c.get(&key(0), || 0).is_some(), "the hot row was evicted at {j}");
        }
        c.check_invariants();
    }

    /// The `readhot` pattern: a cache full of rows read once, then a hot set half its size read
    /// over and over, each miss followed by an insert. A new row must get a whole turn of the
    /// hand before it can be evicted, or every insert evicts the one before it.
    #[test]
    fn a_hot_set_smaller_than_the_cache_stays_cached_after_a_scan() {
        let mut c = RowCache::new(256 << 10);
        let rows = c.capacity / RowCache::row_charge(key(0).len(), 100);
        fn read(c: &mut RowCache, k: &[u8]) {
            if c.get(k, || 0).is_none() {
                c.insert(k, &[7; 100], None);
            }
        }
        for i in 0..3 * rows as u32 {
            read(&mut c, &key(1_000_000 + i));
        }
        let hot: Vec<Vec<u8>> = (0..rows as u32 / 2).map(|i| key(i * 7)).collect();
        for _ in 0..3 {
            for k in &hot {
                read(&mut c, k);
            }
        }
        let before = c.stats();
        for k in &hot {
            read(&mut c, k);
        }
        let hits = c.stats().hits - before.hits;
        assert_eq!(hits, hot.len() as u64, "{:?}", c.stats());
        c.check_invariants();
    }

    /// Fills a cache of `capacity` with `rows` keys offered (and read) once each; returns it.
    fn filled(capacity: usize, rows: u32) -> RowCache {
        let mut c = RowCache::new(capacity);
        for i in 0..rows {
            c.offer(&key(i), &[7; 100], None);
        }
        c
    }

    #[test]
    fn answers_are_cached_while_they_fit_and_keys_read_once_do_not_evict_rows_once_full() {
        let capacity = 64 << 10;
        let c = filled(capacity, 10_000);
        let s = c.stats();
        let fit = (capacity - c.doorkeeper.bytes()) / RowCache::row_charge(9, 100);
        assert_eq!(s.rows, fit, "the first answers are cached until the rows fill the cache: {s:?}");
        // A key is let in when its bit was set by another: a sixteenth of the time at most.
        assert!(s.declined > 9_000 && s.evictions < 1_000, "later keys read once evict few rows: {s:?}");
        assert!(c.bytes() <= capacity);
        c.check_invariants();
    }

    #[test]
    fn a_key_offered_again_soon_to_a_full_cache_is_cached() {
        let mut c = filled(64 << 10, 1_000);
        // The first key whose first offer to the full cache only marks it (another key may have
        // set its bit already: a sixteenth of the time at most).
        let Some(k) = (1_000_000..1_000_100).map(key).find(|k| !c.offer(k, b"v", None)) else {
            panic!("every key was let in");
        };
        assert!(c.get(&k, || 0).is_none());
        let evictions = c.stats().evictions;
        assert!(c.offer(&k, b"v", None), "the second is cached, evicting a row");
        assert_eq!(c.get(&k, || 0), Some(&b"v"[..]));
        assert_eq!(c.stats().evictions, evictions + 1);
        c.check_invariants();
    }

    /// The doorkeeper forgets: a key offered once, then followed by more than a sixteenth of its
    /// bits' worth of other keys, is a newcomer again.
    #[test]
    fn the_doorkeeper_forgets_keys_offered_long_ago() {
        let mut c = filled(64 << 10, 1_000);
        let bits = c.doorkeeper.bits();
        // Keys offered once, then after `bits` other keys: most are newcomers again (some find
        // their bit set by another key).
        let mut again = 0;
        for j in 0..100u32 {
            c.offer(&key(1_000_000 + j), b"v", None);
            for i in 0..bits as u32 {
                c.offer(&key(2_000_000 + i), b"v", None);
            }
            again += usize::from(c.offer(&key(1_000_000 + j), b"v", None));
        }
        assert!(again < 25, "{again} of 100 keys were remembered after {bits} other keys");
        assert!(c.bytes() <= 64 << 10);
    }

    /// The `readhot` pattern over a cache too small for the hot set: rows read again and again
    /// keep their places against a stream of keys read once, which CLOCK alone lets through
    /// (every insert evicts the last unreferenced row).
    #[test]
    fn a_hot_set_keeps_its_rows_against_a_stream_of_keys_read_once() {
        let mut c = RowCache::new(64 << 10);
        let hot = |i: u32| key(i % 100);
        for round in 0..20_000u32 {
            let k = if round % 2 == 0 { hot(round / 2) } else { key(1_000_000 + round) };
            if c.get(&k, || 0).is_none() {
                c.offer(&k, b"value", None);
            }
        }
        let s = c.stats();
        assert!(s.hits >= 9_000, "the hot keys were served from the cache: {s:?}");
        assert!(s.declined >= 9_000, "the keys read once were not cached: {s:?}");
        c.check_invariants();
    }

    #[test]
    fn rows_too_large_for_their_share_are_not_cached() {
        let mut c = RowCache::new(64 << 10);
        let max_value = c.capacity / MAX_ROW_SHARE - RowCache::row_charge(1, 0);
        c.insert(b"k", &vec![1; max_value + 1], None);
        assert_eq!(c.get(b"k", || 0), None);
        c.insert(b"k", &vec![1; max_value], None);
        assert!(c.get(b"k", || 0).is_some());
        c.check_invariants();
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_default_capacity_holds_the_rows_its_doc_promises() {
        assert_eq!(RowCache::row_charge(16, 100), 236);
        assert_eq!(DEFAULT_ROW_CACHE_BYTES / RowCache::row_charge(16, 100), 17_772);
    }

    #[test]
    fn a_cache_too_small_for_any_row_stays_within_its_bytes() {
        for capacity in 1..300 {
            let mut c = RowCache::new(capacity);
            for i in 0..10 {
                c.offer(&key(i), b"v", None);
            }
            assert!(c.bytes() <= capacity, "{capacity}: {:?}", c.stats());
        }
    }

    #[test]
    fn zero_capacity_caches_nothing_and_counts_nothing() {
        let mut c = RowCache::new(0);
        c.insert(b"k", b"v", None);
        assert!(c.get(b"k", || 0).is_none() && c.is_disabled());
        assert_eq!(c.stats(), RowCacheStats::default());
    }

    #[test]
    fn clear_drops_every_row_and_the_index() {
        let mut c = RowCache::new(64 << 10);
        for i in 0..100 {
            c.insert(&key(i), b"v", None);
        }
        c.clear();
        assert!(c.is_empty() && c.bytes() == 0);
        assert!((0..100).all(|i| c.get(&key(i), || 0).is_none()));
    }

    #[test]
    fn index_shrinks_after_most_rows_are_removed() {
        let mut c = RowCache::new(1 << 20);
        for i in 0..2000 {
            c.insert(&key(i), b"v", None);
        }
        let full = c.slots.capacity();
        for i in 0..1990 {
            c.remove(&key(i));
        }
        assert!(c.slots.capacity() * 4 < full, "{} of {full}", c.slots.capacity());
        assert!(c.index.capacity() * 4 < full, "{} of {full}", c.index.capacity());
        assert!((1990..2000).all(|i| c.get(&key(i), || 0).is_some()));
        c.check_invariants();
    }

    /// Random inserts, removes, gets and clears of keys and values of random sizes, checked
    /// against a `HashMap` model (which the cache may lack rows of, never disagree with), with
    /// the byte bound and the index checked after every step.
    #[test]
    fn random_workload_agrees_with_a_model_and_stays_within_its_bound() {
        use std::collections::HashMap;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // 2000: a handful of rows (a row is charged at least 129 bytes here, and is cached only
        // up to 250, an eighth of the capacity).
        for capacity in [0, 2000, 4096, 20_000, 100_000] {
            let mut c = RowCache::new(capacity);
            // Each value with its expiry (`None`: never); the clock is the step.
            let mut model: HashMap<Vec<u8>, (Vec<u8>, Option<u64>)> = HashMap::new();
            for step in 0..20_000u64 {
                let k = key(next(1000) as u32);
                match next(10) {
                    0..=3 => {
                        let v = vec![step as u8; next(400) as usize];
                        let expires_at = (next(4) == 0).then(|| step + next(2000));
                        c.insert(&k, &v, expires_at);
                        model.insert(k, (v, expires_at));
                    }
                    4 => {
                        c.remove(&k);
                        model.remove(&k);
                    }
                    5 if next(100) == 0 => c.clear(),
                    // Now and then most rows go: the index shrinks.
                    6 if next(500) == 0 => {
                        for i in 0..900 {
                            c.remove(&key(i));
                            model.remove(&key(i));
                        }
                    }
                    _ => {
                        if let Some((v, at)) = c.get_row(&k, || step) {
                            let want = model.get(&k).filter(|(_, at)| !entry::is_expired(*at, step));
                            assert_eq!(Some(&(v.to_vec(), at)), want, "step {step}");
                        }
                    }
                }
                c.check_invariants();
            }
            if capacity >= 20_000 {
                let s = c.stats();
                assert!(s.hits > 0 && s.evictions > 0, "capacity {capacity}: {s:?}");
            }
        }
    }
}
