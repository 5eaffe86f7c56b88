//! [`ResidentIndexes`]: the filters, fences and run starts of the live SSTables held in memory
//! for gets ([`minivault_core::sstable::ResidentIndex`]), within [`crate::Options::index_bytes`].
//!
//! Owns the budget ([`IndexBudget`]: the bytes loaded, the filters and fences resident, the
//! loads refused) and one [`IndexSlot`] per live table, shared by every
//! [`crate::view::TableView`] that shows the table, so an index is loaded once however many
//! views a flush or a compaction makes.
//!
//! A table's index is held in two parts, loaded by the first get that probes the table, with no
//! lock of the Db's (never under the engine's lock, where a large table's load would stall
//! writers), each if the budget has room for it:
//! - its **filter** (1.25 bytes per key), which every probe of the table asks, so that a key the
//!   table lacks costs no read at all; the filter's 64-byte blocks are placed on 64-byte
//!   boundaries, so a question reads one cache line;
//! - its **fences and run starts** (about `(10 + key length) / 16` bytes per key), which only a
//!   probe the filter lets through uses. **Filters come first**: fences are loaded only into
//!   room that the filters of every live table leave (loaded or not yet), so a budget too small
//!   for everything holds every filter it can before any fence. At 10^7 keys of 16 bytes the
//!   filters take about 12 MiB and the fences about 16 MiB: a budget of 16 MiB holds the
//!   filters, so a missing key rarely reads anything, and the fences of the tables loaded first.
//!
//! A table whose resident filter rules a get's key out is not probed at all
//! ([`crate::view::TableView`] asks the filters first), so its fences load with the first get
//! the filter lets through.
//!
//! A get that finds another get loading the table, or no room, reads that part from storage
//! (the same lookup, slower); once room is given back (a table dropped) a later get tries
//! again, so a part gets resident once compactions free room. A part loaded stays until its
//! table is dropped (fences loaded early may keep a newer table's filter out until then). A
//! filter larger than the whole budget is never loaded and keeps no room. The loads check what
//! a lookup from storage checks (the index and fence sections against their CRC, each filter
//! block against its own), and report damage as the get's error, naming the table. The bytes
//! are given back when the last view holding the table is dropped: the sum loaded never exceeds
//! the budget.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use embedded_io::{Read, Seek};
use minivault_core::filter::BLOCK_LEN;
use minivault_core::io::ReadError;
use minivault_core::sstable::{Footer, ResidentIndex};

use crate::page_cache::FileKey;

/// What the resident indexes hold ([`crate::Db::index_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    /// The budget, [`crate::Options::index_bytes`].
    pub budget_bytes: usize,
    /// Bytes of filters, fences and run starts loaded now (at most `budget_bytes`).
    pub resident_bytes: usize,
    /// Tables whose fences are loaded now (their filter, which comes first, almost always is).
    pub resident_tables: usize,
    /// Tables whose filter is loaded now.
    pub resident_filters: usize,
    /// Bytes of the filters loaded now (part of `resident_bytes`; each filter counts 63 bytes
    /// more than its size, the room to place its blocks on 64-byte boundaries).
    pub filter_bytes: usize,
    /// Loads of a filter or of fences refused since open for want of room. The table's gets
    /// then read that part from storage, without asking again until room is given back.
    pub refused_loads: u64,
}

/// The budget of the resident indexes: what is loaded, against the limit.
#[derive(Debug)]
pub(crate) struct IndexBudget {
    limit: usize,
    used: AtomicUsize,
    /// Bytes the filters of the live tables' slots take, loaded or not: the room fences leave.
    filters_wanted: AtomicUsize,
    fences: AtomicUsize,
    filters: AtomicUsize,
    filter_bytes: AtomicUsize,
    refused: AtomicU64,
    /// Times room was given back (a part released, a slot dropped with its filter unloaded):
    /// a slot refused room asks again only once this moved.
    freed: AtomicU64,
}

/// Which part of a table's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Filter,
    Fences,
}

impl IndexBudget {
    /// Takes `len` bytes for `part` if they fit: a filter within the limit, fences within the
    /// limit less the filters of every live table.
    fn reserve(&self, part: Part, len: usize) -> bool {
        let keep = match part {
            Part::Filter => 0,
            Part::Fences => self.filters_wanted.load(Ordering::Acquire),
        };
        let fits = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total.saturating_add(keep) <= self.limit)
            })
            .is_ok();
        if fits {
            self.count(part).fetch_add(1, Ordering::Relaxed);
            if part == Part::Filter {
                self.filter_bytes.fetch_add(len, Ordering::Relaxed);
            }
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Gives back `len` bytes taken by [`IndexBudget::reserve`] for `part`.
    fn release(&self, part: Part, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
        self.freed.fetch_add(1, Ordering::AcqRel);
        self.count(part).fetch_sub(1, Ordering::Relaxed);
        if part == Part::Filter {
            self.filter_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    fn count(&self, part: Part) -> &AtomicUsize {
        match part {
            Part::Filter => &self.filters,
            Part::Fences => &self.fences,
        }
    }
}

/// A filter held in memory with its blocks on 64-byte boundaries: `len` bytes from `at` in
/// `buf`, which has room to spare for the shift.
#[derive(Debug)]
struct AlignedFilter {
    buf: Box<[u8]>,
    at: usize,
    len: usize,
}

impl AlignedFilter {
    /// The bytes a filter of `len` bytes takes: itself, and room to shift it onto a block
    /// boundary.
    fn footprint(len: usize) -> usize {
        len + BLOCK_LEN - 1
    }

    fn zeroed(len: usize) -> AlignedFilter {
        let buf = vec![0u8; Self::footprint(len)].into_boxed_slice();
        // Where the buffer's first block boundary is (`align_offset` may, in principle, not
        // know: the filter then starts at byte 63 of the buffer, correct and a little slower).
        let at = buf.as_ptr().align_offset(BLOCK_LEN).min(BLOCK_LEN - 1);
        AlignedFilter { buf, at, len }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(self.at..self.at + self.len).unwrap_or(&[])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.at..self.at + self.len).unwrap_or(&mut [])
    }
}

/// One live table's place for its resident index: empty until a get loads a part.
#[derive(Debug)]
pub(crate) struct IndexSlot {
    /// [`ResidentIndex::fences_len`] of the table; `None`: a table without fences.
    fences_len: Option<usize>,
    /// [`ResidentIndex::filter_len`] of the table; `None`: a table without a filter, or with one
    /// larger than the whole budget (read from storage).
    filter_len: Option<usize>,
    fences: OnceLock<Box<[u8]>>,
    filter: OnceLock<AlignedFilter>,
    /// Held by the get that loads a part.
    loading: Mutex<()>,
    /// [`IndexBudget::freed`] when a part of this table was last refused room (`u64::MAX`:
    /// never): until room is given back, gets read the missing part from storage without asking.
    refused_at: AtomicU64,
    budget: Arc<IndexBudget>,
}

impl IndexSlot {
    fn new(footer: &Footer, budget: &Arc<IndexBudget>) -> IndexSlot {
        // A filter larger than the whole budget is never loaded, and keeps no room from fences.
        let filter_len =
            ResidentIndex::filter_len(footer).filter(|&len| AlignedFilter::footprint(len) <= budget.limit);
        if let Some(len) = filter_len {
            budget.filters_wanted.fetch_add(AlignedFilter::footprint(len), Ordering::AcqRel);
        }
        IndexSlot {
            fences_len: ResidentIndex::fences_len(footer),
            filter_len,
            fences: OnceLock::new(),
            filter: OnceLock::new(),
            loading: Mutex::new(()),
            refused_at: AtomicU64::new(u64::MAX),
            budget: Arc::clone(budget),
        }
    }

    /// The table's index: the parts resident, loaded through `io` first if they are not yet
    /// and the budget has room (the filter first); a part not resident is read from storage.
    pub(crate) fn get_or_load<IO: Read + Seek<Error = io::Error>>(
        &self,
        io: &mut IO,
        footer: &Footer,
    ) -> Result<ResidentIndex<'_>, ReadError<io::Error>> {
        let missing = |len: Option<usize>, loaded: bool| len.is_some() && !loaded;
        if (missing(self.filter_len, self.filter.get().is_some())
            || missing(self.fences_len, self.fences.get().is_some()))
            && self.refused_at.load(Ordering::Acquire) != self.budget.freed.load(Ordering::Acquire)
        {
            // Another get is loading a part: this one reads from storage rather than wait.
            if let Ok(_loading) = self.loading.try_lock() {
                // Read before asking: room given back meanwhile makes the next get ask again.
                let freed = self.budget.freed.load(Ordering::Acquire);
                let filter = self.load_filter(io, footer)?;
                let fences = self.load_fences(io, footer)?;
                if !(filter && fences) {
                    self.refused_at.store(freed, Ordering::Release);
                }
            }
        }
        let fences = self.fences.get().map(|b| &b[..]);
        Ok(ResidentIndex::over(footer, fences, self.filter.get().map(AlignedFilter::bytes)))
    }

    /// True when the table's filter is resident and rules hash `hash` out (the same answer
    /// [`ResidentIndex`] gives a probe); false when it may hold the key or is not resident.
    pub(crate) fn rules_out(&self, hash: u64) -> bool {
        let filter = self.filter.get().map(AlignedFilter::bytes);
        filter.is_some_and(|filter| !minivault_core::filter::filter_admits(filter, hash))
    }

    /// Loads the filter if it is not loaded and fits (call it holding `loading`); false when
    /// it was refused room.
    fn load_filter<IO: Read + Seek<Error = io::Error>>(
        &self,
        io: &mut IO,
        footer: &Footer,
    ) -> Result<bool, ReadError<io::Error>> {
        let Some(len) = self.filter_len else { return Ok(true) };
        let footprint = AlignedFilter::footprint(len);
        if self.filter.get().is_some() {
            return Ok(true);
        }
        if !self.budget.reserve(Part::Filter, footprint) {
            return Ok(false);
        }
        // Its room is held now, no longer kept for it: at once, not after the read, or fences
        // asking meanwhile would see the filter counted twice and be refused room they have.
        self.budget.filters_wanted.fetch_sub(footprint, Ordering::AcqRel);
        let mut filter = AlignedFilter::zeroed(len);
        if let Err(e) = ResidentIndex::load_filter(io, footer, filter.bytes_mut()) {
            self.budget.filters_wanted.fetch_add(footprint, Ordering::AcqRel);
            self.budget.release(Part::Filter, footprint);
            return Err(e);
        }
        let _ = self.filter.set(filter);
        Ok(true)
    }

    /// Loads the fences if they are not loaded and fit beside every live table's filter (call
    /// it holding `loading`); false when they were refused room.
    fn load_fences<IO: Read + Seek<Error = io::Error>>(
        &self,
        io: &mut IO,
        footer: &Footer,
    ) -> Result<bool, ReadError<io::Error>> {
        let Some(len) = self.fences_len else { return Ok(true) };
        if self.fences.get().is_some() {
            return Ok(true);
        }
        if !self.budget.reserve(Part::Fences, len) {
            return Ok(false);
        }
        let mut bytes = vec![0u8; len].into_boxed_slice();
        if let Err(e) = ResidentIndex::load_fences(io, footer, &mut bytes) {
            self.budget.release(Part::Fences, len);
            return Err(e);
        }
        let _ = self.fences.set(bytes);
        Ok(true)
    }
}

impl Drop for IndexSlot {
    fn drop(&mut self) {
        if let (Some(_), Some(len)) = (self.fences.get(), self.fences_len) {
            self.budget.release(Part::Fences, len);
        }
        if let Some(len) = self.filter_len {
            let footprint = AlignedFilter::footprint(len);
            match self.filter.get() {
                Some(_) => self.budget.release(Part::Filter, footprint),
                None => {
                    self.budget.filters_wanted.fetch_sub(footprint, Ordering::AcqRel);
                    self.budget.freed.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// What tells one table from another: its id alone does not (a compaction's output takes the
/// id of its newest input), so also its file (device and inode), size and footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableIdentity {
    pub(crate) id: u64,
    pub(crate) file: FileKey,
    pub(crate) bytes: u64,
    pub(crate) footer: Footer,
}

/// The budget and the live tables' slots.
#[derive(Debug)]
pub(crate) struct ResidentIndexes {
    budget: Arc<IndexBudget>,
    /// The slots of the tables of the last view made.
    live: Vec<(TableIdentity, Arc<IndexSlot>)>,
}

impl ResidentIndexes {
    /// No index loaded yet, `limit` bytes of room ([`crate::Options::index_bytes`]).
    pub(crate) fn new(limit: usize) -> Self {
        let budget = IndexBudget {
            limit,
            used: AtomicUsize::new(0),
            filters_wanted: AtomicUsize::new(0),
            fences: AtomicUsize::new(0),
            filters: AtomicUsize::new(0),
            filter_bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            freed: AtomicU64::new(0),
        };
        ResidentIndexes { budget: Arc::new(budget), live: Vec::new() }
    }

    /// The slots of `tables` (oldest first): the slot a table already had, or a new empty one.
    /// Slots of tables no longer live are let go here (a view still holding one keeps it, and
    /// its bytes, until it drops).
    pub(crate) fn slots(&mut self, tables: impl Iterator<Item = TableIdentity>) -> Vec<Arc<IndexSlot>> {
        let live: Vec<(TableIdentity, Arc<IndexSlot>)> = tables
            .map(|id| {
                let slot = match self.live.iter().find(|(had, _)| *had == id) {
                    Some((_, slot)) => Arc::clone(slot),
                    None => Arc::new(IndexSlot::new(&id.footer, &self.budget)),
                };
                (id, slot)
            })
            .collect();
        self.live = live;
        self.live.iter().map(|(_, slot)| Arc::clone(slot)).collect()
    }

    /// What is loaded now.
    pub(crate) fn stats(&self) -> IndexStats {
        let b = &self.budget;
        IndexStats {
            budget_bytes: b.limit,
            resident_bytes: b.used.load(Ordering::Acquire),
            resident_tables: b.fences.load(Ordering::Relaxed),
            resident_filters: b.filters.load(Ordering::Relaxed),
            filter_bytes: b.filter_bytes.load(Ordering::Relaxed),
            refused_loads: b.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use embedded_io::{ErrorType, SeekFrom};

    /// A table's bytes, read as a file.
    struct MemIo {
        bytes: Vec<u8>,
        pos: u64,
    }

    impl ErrorType for MemIo {
        type Error = io::Error;
    }

    impl Read for MemIo {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let from = (self.pos as usize).min(self.bytes.len());
            let n = buf.len().min(self.bytes.len() - from);
            buf[..n].copy_from_slice(&self.bytes[from..from + n]);
            self.pos += n as u64;
            Ok(n)
        }
    }

    impl Seek for MemIo {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.pos = match pos {
                SeekFrom::Start(at) => at,
                SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
                SeekFrom::End(d) => (self.bytes.len() as u64).checked_add_signed(d).unwrap(),
            };
            Ok(self.pos)
        }
    }

    /// The bytes and footer of a table of 2,000 keys, written by a Db.
    fn table() -> (Vec<u8>, Footer) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(dir.path()).unwrap();
        for i in 0..2000 {
            db.put(format!("key{i:06}").as_bytes(), b"value").unwrap();
        }
        db.flush().unwrap();
        db.close().unwrap();
        let sst = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "sst"))
            .unwrap();
        let bytes = std::fs::read(sst).unwrap();
        let footer =
            minivault_core::sstable::open(&mut MemIo { bytes: bytes.clone(), pos: 0 }, bytes.len() as u64)
                .unwrap();
        (bytes, footer)
    }

    fn counts(b: &IndexBudget) -> (usize, usize, usize, usize) {
        let load = |a: &AtomicUsize| a.load(Ordering::Acquire);
        (load(&b.used), load(&b.filters_wanted), load(&b.filters), load(&b.fences))
    }

    #[test]
    fn fences_refused_room_are_loaded_once_room_is_given_back_and_every_count_returns_to_zero() {
        let (bytes, footer) = table();
        let mut io = MemIo { bytes, pos: 0 };
        let filter = AlignedFilter::footprint(ResidentIndex::filter_len(&footer).unwrap());
        let fences = ResidentIndex::fences_len(&footer).unwrap();
        // Room for two filters and one table's fences.
        let indexes = ResidentIndexes::new(2 * filter + fences);
        let budget = &indexes.budget;
        let a = IndexSlot::new(&footer, budget);
        let b = IndexSlot::new(&footer, budget);
        assert_eq!(counts(budget), (0, 2 * filter, 0, 0), "both filters wanted");

        a.get_or_load(&mut io, &footer).unwrap();
        assert_eq!(counts(budget), (filter + fences, filter, 1, 1), "a: filter and fences");
        b.get_or_load(&mut io, &footer).unwrap();
        assert_eq!(counts(budget), (2 * filter + fences, 0, 2, 1), "b: its filter, no room for fences");
        let refused = budget.refused.load(Ordering::Acquire);
        assert_eq!(refused, 1);
        for _ in 0..3 {
            b.get_or_load(&mut io, &footer).unwrap();
        }
        assert_eq!(
            budget.refused.load(Ordering::Acquire),
            refused,
            "not asked again while no room came back"
        );

        drop(a);
        assert_eq!(counts(budget), (filter, 0, 1, 0));
        b.get_or_load(&mut io, &footer).unwrap();
        assert_eq!(counts(budget), (filter + fences, 0, 1, 1), "b's fences, once a gave room back");
        drop(b);
        assert_eq!(counts(budget), (0, 0, 0, 0));
    }

    #[test]
    fn a_filter_larger_than_the_whole_budget_keeps_no_room_from_the_fences() {
        let (bytes, footer) = table();
        let mut io = MemIo { bytes, pos: 0 };
        let filter = AlignedFilter::footprint(ResidentIndex::filter_len(&footer).unwrap());
        let fences = ResidentIndex::fences_len(&footer).unwrap();
        assert!(filter > fences, "{filter} {fences}");
        let indexes = ResidentIndexes::new(fences);
        let budget = &indexes.budget;
        let slot = IndexSlot::new(&footer, budget);
        assert_eq!(counts(budget), (0, 0, 0, 0), "no room kept for a filter that cannot fit");
        slot.get_or_load(&mut io, &footer).unwrap();
        assert_eq!(counts(budget), (fences, 0, 0, 1), "the fences fit");
        drop(slot);
        assert_eq!(counts(budget), (0, 0, 0, 0));
    }

    #[test]
    fn a_damaged_filter_is_an_error_that_takes_no_room_and_keeps_its_room_wanted() {
        let (mut bytes, footer) = table();
        let filter = AlignedFilter::footprint(ResidentIndex::filter_len(&footer).unwrap());
        let at = footer.filter_offset as usize + 10;
        bytes[at] ^= 0x01;
        let mut io = MemIo { bytes, pos: 0 };
        let indexes = ResidentIndexes::new(1 << 20);
        let budget = &indexes.budget;
        let slot = IndexSlot::new(&footer, budget);
        assert!(matches!(slot.get_or_load(&mut io, &footer), Err(ReadError::Corrupt { .. })));
        assert_eq!(counts(budget), (0, filter, 0, 0));
        // Mended, the next get loads it.
        io.bytes[at] ^= 0x01;
        slot.get_or_load(&mut io, &footer).unwrap();
        let fences = ResidentIndex::fences_len(&footer).unwrap();
        assert_eq!(counts(budget), (filter + fences, 0, 1, 1));
        drop(slot);
        assert_eq!(counts(budget), (0, 0, 0, 0));
    }
}
