//! PageCache: a bounded cache of 4 KiB file pages for reads, shared by the files of one
//! [`crate::storage::PosixStorage`].
//!
//! SSTable lookups are binary searches made of many small reads; served from memory they cost
//! a hash lookup and a copy instead of a `pread` each. The cache owns:
//! - pages keyed by (device, inode, page number), so every handle on a file shares them;
//! - CLOCK eviction over a fixed number of slots: memory is `capacity` pages, allocated as used;
//! - invalidation: every `pwrite` and `ftruncate` through a handle of the storage that owns
//!   the cache drops the pages it touches, and creating a file drops every page of its inode, as
//!   does every open through a read-only handle (which sees none of a writer's removals), so a
//!   reused inode number can never serve another file's bytes (a file written through another
//!   storage handle, with a cache of its own, is opened with `PosixStorage::open_fresh`);
//! - a short record of the latest invalidations ([`PageCache::unchanged_since`]), so that a
//!   reader that read pages from a file with the cache unlocked keeps them only when no
//!   invalidation of that file came meanwhile;
//! - admission ([`PageCache::admits`]): once every slot is taken, a read that misses asks the
//!   cache's [`Doorkeeper`] whether its pages were asked about a short while before; when not,
//!   the reader reads only the bytes it wants from the file, into its own buffer, and caches
//!   nothing (a get's run of records in a table far larger than the cache: 2 KiB read instead of
//!   one or two whole pages copied in and out, no page evicted). Caches of fewer than
//!   [`ADMIT_ALL_BELOW`] pages admit every page.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::RangeInclusive;

use crate::doorkeeper::Doorkeeper;

/// Page keys are three integers chosen by the kernel and the file layout, not by an attacker,
/// so a multiply-rotate mix replaces SipHash on this hot path.
#[derive(Default)]
struct PageKeyHasher(u64);

impl Hasher for PageKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type PageMap = HashMap<PageKey, usize, BuildHasherDefault<PageKeyHasher>>;

/// Bytes per cached page.
pub const PAGE_SIZE: usize = 4096;

/// A cache of fewer pages than this admits every page it misses (no [`Doorkeeper`]).
pub const ADMIT_ALL_BELOW: usize = 64;

/// A read that misses wanting fewer bytes than this is admitted whatever the doorkeeper says:
/// small reads (an offset, a record's header, a piece of a streamed record) come back to the
/// same page.
pub const READ_PAST_MIN: usize = 512;

/// A file's identity: device and inode numbers.
pub type FileKey = (u64, u64);

type PageKey = (u64, u64, u64);

struct Slot {
    key: PageKey,
    data: Vec<u8>,
    referenced: bool,
}

/// The cache. `capacity` is in pages; 0 disables caching.
pub struct PageCache {
    map: PageMap,
    slots: Vec<Slot>,
    capacity: usize,
    hand: usize,
    /// Reads served from memory.
    pub hits: u64,
    /// Pages read from the file and stored (a page read twice at once counts twice; one read
    /// across an invalidation of its file is not stored and not counted).
    pub misses: u64,
    /// Reads that missed a full cache and were read past it, their pages not admitted
    /// ([`PageCache::admits`]).
    pub declined: u64,
    /// Admission once full; `None` for a cache of fewer than [`ADMIT_ALL_BELOW`] pages.
    doorkeeper: Option<Doorkeeper>,
    /// Counts every invalidation ([`PageCache::generation`]).
    generation: u64,
    /// The latest invalidations: generation `g`'s file at `g % RECENT` (`None`: every file).
    recent: [(u64, Option<FileKey>); RECENT],
}

/// Invalidations [`PageCache::unchanged_since`] can look back over.
const RECENT: usize = 16;

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("pages", &self.map.len())
            .field("capacity", &self.capacity)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl PageCache {
    /// A cache of at most `bytes` bytes of pages.
    pub fn new(bytes: usize) -> Self {
        let doorkeeper = (bytes / PAGE_SIZE >= ADMIT_ALL_BELOW).then(|| Doorkeeper::for_capacity(bytes));
        // The doorkeeper's bytes come out of the pages'.
        let doorkeeper_pages = doorkeeper.as_ref().map_or(0, |d| d.bytes().div_ceil(PAGE_SIZE));
        PageCache {
            map: PageMap::default(),
            slots: Vec::new(),
            capacity: (bytes / PAGE_SIZE).saturating_sub(doorkeeper_pages),
            hand: 0,
            hits: 0,
            misses: 0,
            declined: 0,
            doorkeeper,
            generation: 0,
            recent: [(0, None); RECENT],
        }
    }

    /// A count that grows with every invalidation, forget and clear: what a reader notes
    /// before it lets the lock go to read pages from a file ([`PageCache::unchanged_since`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True when no invalidation since `generation` can have touched `file`: pages of it read
    /// from the file after that generation was noted may be stored. False also when more
    /// invalidations came than the cache remembers.
    pub fn unchanged_since(&self, file: FileKey, generation: u64) -> bool {
        let since = self.generation.saturating_sub(generation);
        since == 0
            || (since <= RECENT as u64
                && (generation + 1..=self.generation).all(|g| {
                    self.recent
                        .get((g % RECENT as u64) as usize)
                        .is_some_and(|&(at, which)| at == g && which.is_some_and(|f| f != file))
                }))
    }

    /// Counts an invalidation of `file` (`None`: of every file).
    fn note_invalidation(&mut self, file: Option<FileKey>) {
        self.generation += 1;
        if let Some(slot) = self.recent.get_mut((self.generation % RECENT as u64) as usize) {
            *slot = (self.generation, file);
        }
    }

    /// True when the cache holds no page at all (capacity 0).
    pub fn is_disabled(&self) -> bool {
        self.capacity == 0
    }

    /// The cached bytes of page `page` of `file` (shorter than a page at the end of the file).
    pub fn get(&mut self, file: FileKey, page: u64) -> Option<&[u8]> {
        let &i = self.map.get(&(file.0, file.1, page))?;
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        self.hits += 1;
        Some(&slot.data)
    }

    /// True when pages `pages` of `file`, which a read of `wanted` more bytes missed, are to be
    /// read whole and stored: always for a read of fewer than [`READ_PAST_MIN`] bytes, or while
    /// a place is free (or without a doorkeeper); once the cache is full, when one of them was
    /// asked about a short while before (each is remembered). A read whose pages are not
    /// admitted reads only its own bytes from the file (counted in `declined`).
    pub fn admits(&mut self, file: FileKey, pages: RangeInclusive<u64>, wanted: usize) -> bool {
        // Pages invalidated or forgotten leave their slots behind: the live ones count.
        let full = self.map.len() >= self.capacity;
        let Some(doorkeeper) = self.doorkeeper.as_mut().filter(|_| full && wanted >= READ_PAST_MIN) else {
            return true;
        };
        let hasher = BuildHasherDefault::<PageKeyHasher>::default();
        // Every page is asked about (no short cut), so each is remembered.
        let seen =
            pages.fold(false, |seen, p| doorkeeper.seen_or_mark(hasher.hash_one((file.0, file.1, p))) | seen);
        if !seen {
            self.declined += 1;
        }
        seen
    }

    /// Stores page `page` of `file`; `data` is at most [`PAGE_SIZE`] bytes.
    pub fn insert(&mut self, file: FileKey, page: u64, data: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        self.misses += 1;
        let key = (file.0, file.1, page);
        if let Some(&i) = self.map.get(&key) {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.data.clear();
                slot.data.extend_from_slice(data);
            }
            return;
        }
        let i = if self.slots.len() < self.capacity {
            self.slots.push(Slot { key, data: Vec::with_capacity(PAGE_SIZE), referenced: false });
            self.slots.len() - 1
        } else {
            // CLOCK: skip (and clear) referenced slots until an unreferenced one comes round.
            loop {
                let h = self.hand % self.slots.len();
                self.hand = h + 1;
                let slot = &mut self.slots[h];
                if slot.referenced {
                    slot.referenced = false;
                } else {
                    // An invalidated page leaves its key in its slot; the page may have been
                    // cached again since, in another slot, which must keep its entry.
                    if self.map.get(&slot.key) == Some(&h) {
                        self.map.remove(&slot.key);
                    }
                    break h;
                }
            }
        };
        let slot = &mut self.slots[i];
        slot.key = key;
        slot.referenced = false;
        slot.data.clear();
        slot.data.extend_from_slice(data);
        self.map.insert(key, i);
    }

    /// Drops the pages of `file` that overlap bytes `start..end`.
    pub fn invalidate(&mut self, file: FileKey, start: u64, end: u64) {
        self.note_invalidation(Some(file));
        if self.map.is_empty() || end <= start {
            return;
        }
        let (first, last) = (start / PAGE_SIZE as u64, (end - 1) / PAGE_SIZE as u64);
        if last - first >= self.map.len() as u64 {
            self.map.retain(|k, _| !(k.0 == file.0 && k.1 == file.1 && (first..=last).contains(&k.2)));
        } else {
            for p in first..=last {
                self.map.remove(&(file.0, file.1, p));
            }
        }
    }

    /// Drops every page.
    pub fn clear(&mut self) {
        self.note_invalidation(None);
        self.map.clear();
    }

    /// Drops every page of `file`.
    pub fn forget(&mut self, file: FileKey) {
        self.note_invalidation(Some(file));
        if !self.map.is_empty() {
            self.map.retain(|k, _| !(k.0 == file.0 && k.1 == file.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_across_an_invalidation_of_their_file_are_not_kept_and_others_are() {
        let mut c = PageCache::new(4 * PAGE_SIZE);
        let (table, wal) = ((1, 2), (1, 3));
        let g = c.generation();
        c.insert(table, 0, b"abc");
        assert!(c.unchanged_since(table, g), "an insert is no invalidation");
        // Writes to another file (a WAL's appends) do not stop a table's reads from being kept.
        c.invalidate(wal, 0, 100);
        c.forget(wal);
        assert!(c.unchanged_since(table, g));
        assert!(!c.unchanged_since(wal, g));
        c.invalidate(table, 0, 1);
        assert!(!c.unchanged_since(table, g));
        let g = c.generation();
        c.clear();
        assert!(!c.unchanged_since(table, g), "a clear touches every file");
        // More invalidations than it remembers: nothing is known, nothing kept.
        let g = c.generation();
        for _ in 0..=RECENT {
            c.invalidate(wal, 0, 1);
        }
        assert!(!c.unchanged_since(table, g));
        let g = c.generation();
        for _ in 0..RECENT {
            c.invalidate(wal, 0, 1);
        }
        assert!(c.unchanged_since(table, g));
    }

    #[test]
    fn cached_page_is_returned_until_invalidated() {
        let mut c = PageCache::new(4 * PAGE_SIZE);
        c.insert((1, 2), 0, b"abc");
        assert_eq!(c.get((1, 2), 0), Some(&b"abc"[..]));
        assert_eq!(c.get((1, 3), 0), None, "another inode");
        c.invalidate((1, 2), 10, 11);
        assert_eq!(c.get((1, 2), 0), None);
    }

    #[test]
    fn invalidation_covers_every_page_a_range_touches() {
        let mut c = PageCache::new(16 * PAGE_SIZE);
        for p in 0..8 {
            c.insert((0, 9), p, &[p as u8]);
        }
        c.invalidate((0, 9), PAGE_SIZE as u64 - 1, 3 * PAGE_SIZE as u64 + 1);
        let left: Vec<u64> = (0..8).filter(|&p| c.get((0, 9), p).is_some()).collect();
        assert_eq!(left, [4, 5, 6, 7]);
        c.forget((0, 9));
        assert!((0..8).all(|p| c.get((0, 9), p).is_none()));
    }

    #[test]
    fn capacity_is_never_exceeded_and_referenced_pages_survive_longer() {
        let mut c = PageCache::new(3 * PAGE_SIZE);
        c.insert((0, 1), 0, b"0");
        c.insert((0, 1), 1, b"1");
        c.insert((0, 1), 2, b"2");
        assert!(c.get((0, 1), 0).is_some());
        c.insert((0, 1), 3, b"3");
        assert_eq!(c.slots.len(), 3);
        assert!(c.get((0, 1), 0).is_some(), "the referenced page was kept");
        assert!(c.get((0, 1), 3).is_some());
    }

    #[test]
    fn evicting_the_slot_of_an_invalidated_page_keeps_the_page_cached_since() {
        let mut c = PageCache::new(3 * PAGE_SIZE);
        let f = (0, 1);
        c.insert(f, 0, b"old");
        c.insert(f, 1, b"one");
        c.insert(f, 2, b"two");
        assert!(c.get(f, 0).is_some()); // referenced: the hand will pass over its slot once
        c.invalidate(f, 0, 1);
        c.insert(f, 0, b"new"); // takes page 1's slot; page 0's old slot still names page 0
        c.insert(f, 3, b"three"); // takes page 2's slot
        c.insert(f, 4, b"four"); // takes the old slot that names page 0
        assert_eq!(c.get(f, 0), Some(&b"new"[..]), "the live entry for page 0 was kept");
    }

    #[test]
    fn pages_are_admitted_while_a_slot_is_free_and_then_only_when_asked_about_again() {
        let f = (0, 1);
        // Below `ADMIT_ALL_BELOW` pages: every page, full or not.
        let mut small = PageCache::new((ADMIT_ALL_BELOW - 1) * PAGE_SIZE);
        for p in 0..ADMIT_ALL_BELOW as u64 * 2 {
            assert!(small.admits(f, p..=p, PAGE_SIZE));
            small.insert(f, p, b"x");
        }
        let mut c = PageCache::new(ADMIT_ALL_BELOW * 4 * PAGE_SIZE);
        let mut p = 0;
        // Bounded: a cache that admitted every page would otherwise be filled for ever.
        while p < 10_000 && c.admits(f, p..=p, PAGE_SIZE) {
            c.insert(f, p, b"x");
            p += 1;
        }
        // The doorkeeper's page came out of the slots.
        assert_eq!(p, ADMIT_ALL_BELOW as u64 * 4 - 1);
        assert_eq!(c.declined, 1);
        assert!(c.admits(f, p..=p, PAGE_SIZE), "asked about again");
        assert!(c.admits(f, 5000..=5000, READ_PAST_MIN - 1), "a small read, whatever the doorkeeper says");
        assert_eq!(c.declined, 1);
        // Two pages: admitted when either was asked about before, and both are remembered.
        assert!(!c.admits(f, 1000..=1001, PAGE_SIZE));
        assert!(c.admits(f, 1001..=1002, PAGE_SIZE) && c.admits(f, 1002..=1002, PAGE_SIZE));
        // Pages forgotten free their places: a cache that holds none admits every page.
        c.forget(f);
        assert!(c.admits(f, 2000..=2000, PAGE_SIZE));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = PageCache::new(0);
        c.insert((0, 1), 0, b"x");
        assert!(c.get((0, 1), 0).is_none() && c.is_disabled());
    }
}
