//! [`ResidentIndexes`]: the fences, run starts and filters of the live SSTables held in memory
//! for gets ([`minivault_core::sstable::ResidentIndex`]), within [`crate::Options::index_bytes`].
//!
//! Owns the budget ([`IndexBudget`]: the bytes loaded, the tables resident, the loads refused)
//! and one [`IndexSlot`] per live table, shared by every [`crate::view::TableView`] that shows
//! the table, so an index is loaded once however many views a flush or a compaction makes.
//!
//! A table's index is loaded by the first get that probes the table, with no lock of the Db's
//! (never under the engine's lock, where a large table's load would stall writers), if the
//! budget has room for it: [`ResidentIndex::len_for`] bytes, about `(10 + key length) / 16 +
//! 1.25` bytes per key. A get that finds another get loading the table, or no room, reads that
//! table from storage (the same lookup, slower); a later get tries again, so a table gets
//! resident once compactions free room. The load checks what a lookup from storage checks
//! (the index and fence sections against their CRC, each filter block against its own), and
//! reports damage as the get's error, naming the table. The bytes are given back when the last
//! view holding the table is dropped: the sum loaded never exceeds the budget.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use embedded_io::{Read, Seek};
use minivault_core::io::ReadError;
use minivault_core::sstable::{Footer, ResidentIndex};

use crate::page_cache::FileKey;

/// What the resident indexes hold ([`crate::Db::index_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    /// The budget, [`crate::Options::index_bytes`].
    pub budget_bytes: usize,
    /// Bytes of fences, run starts and filters loaded now (at most `budget_bytes`).
    pub resident_bytes: usize,
    /// Tables whose index is loaded now.
    pub resident_tables: usize,
    /// Loads refused since open for want of room (each such get read the table from storage).
    pub refused_loads: u64,
}

/// The budget of the resident indexes: what is loaded, against the limit.
#[derive(Debug)]
pub(crate) struct IndexBudget {
    limit: usize,
    used: AtomicUsize,
    tables: AtomicUsize,
    refused: AtomicU64,
}

impl IndexBudget {
    /// Takes `len` bytes if they fit.
    fn reserve(&self, len: usize) -> bool {
        let fits = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if fits {
            self.tables.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Gives back `len` bytes taken by [`IndexBudget::reserve`].
    fn release(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
        self.tables.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One live table's place for its resident index: empty until a get loads it.
#[derive(Debug)]
pub(crate) struct IndexSlot {
    /// [`ResidentIndex::len_for`] the table; `None`: a table without fences, never resident.
    len: Option<usize>,
    loaded: OnceLock<Box<[u8]>>,
    /// Held by the get that loads it.
    loading: Mutex<()>,
    budget: Arc<IndexBudget>,
}

impl IndexSlot {
    /// The table's resident index, loaded through `io` first if it is not yet and the budget
    /// has room; `None`: probe the table from storage.
    pub(crate) fn get_or_load<IO: Read + Seek<Error = io::Error>>(
        &self,
        io: &mut IO,
        footer: &Footer,
    ) -> Result<Option<ResidentIndex<'_>>, ReadError<io::Error>> {
        if let Some(bytes) = self.loaded.get() {
            return Ok(Some(ResidentIndex::over(footer, bytes)));
        }
        let Some(len) = self.len else { return Ok(None) };
        // Another get is loading it: this one reads from storage rather than wait.
        let Ok(_loading) = self.loading.try_lock() else { return Ok(None) };
        if let Some(bytes) = self.loaded.get() {
            return Ok(Some(ResidentIndex::over(footer, bytes)));
        }
        if !self.budget.reserve(len) {
            return Ok(None);
        }
        let mut bytes = vec![0u8; len].into_boxed_slice();
        if let Err(e) = ResidentIndex::load(io, footer, &mut bytes) {
            self.budget.release(len);
            return Err(e);
        }
        let bytes = self.loaded.get_or_init(|| bytes);
        Ok(Some(ResidentIndex::over(footer, bytes)))
    }
}

impl Drop for IndexSlot {
    fn drop(&mut self) {
        if let (Some(_), Some(len)) = (self.loaded.get(), self.len) {
            self.budget.release(len);
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
            tables: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
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
                    None => Arc::new(IndexSlot {
                        len: ResidentIndex::len_for(&id.footer),
                        loaded: OnceLock::new(),
                        loading: Mutex::new(()),
                        budget: Arc::clone(&self.budget),
                    }),
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
            resident_tables: b.tables.load(Ordering::Relaxed),
            refused_loads: b.refused.load(Ordering::Relaxed),
        }
    }
}
