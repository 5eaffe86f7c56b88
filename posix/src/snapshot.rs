//! [`Snapshot`]: the database as it was when [`Db::snapshot`] was called, readable for as long
//! as the snapshot lives, whatever is written, flushed, compacted or evicted meanwhile.
//!
//! Made without a format change: `snapshot()` flushes the MemTables (as [`Db::flush`] does),
//! so that everything acknowledged is in SSTables, then pins the live tables' view
//! (`crate::view`: their footers and open descriptors) and the clock:
//!
//! ```text
//!  Db::snapshot   engine lock { flush the MemTables → TableView of the live tables } + now
//!  Snapshot::get  minivault_core::get_from_tables over the view, expiry judged at `now`
//!  Snapshot::range  minivault_core::Scan over the view (and two empty MemTables), in batches
//! ```
//!
//! Tables never change once written; a compaction or an eviction removes files from the
//! directory, and the snapshot's descriptors keep them readable (POSIX unlink semantics). What
//! it holds: the view (an `Arc` shared with gets that took the same one), two empty MemTables of
//! [`MIN_MEMTABLE_BYTES`] each (what the engine's scan walks besides the tables), and, through
//! the descriptors, the disk space of every table it pins that the database has since removed,
//! freed when the snapshot is dropped. Pinned files do not count against
//! [`crate::Options::max_bytes`]. It reads through the database's page cache, which it keeps
//! alive should it outlive the [`Db`].

use std::fmt;
use std::ops::RangeBounds;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minivault_core::memtable::{MemTable, MIN_MEMTABLE_BYTES};
use minivault_core::sstable::ReadCounters;
use minivault_core::{KeyRange, Scan};

use crate::db::{ValueWithExpiry, VALUE_LEN_HINT};
use crate::scan::{collect_batch, read_ahead_bytes, Entry, Keys, Range};
use crate::view::{TableView, ViewStorage};
use crate::{Db, Error};

/// A read-only view of a [`Db`] at one moment: it sees exactly the writes acknowledged before
/// [`Db::snapshot`] returned it (and perhaps writes made concurrently with that call), and
/// nothing written later, however long it lives. TTLs are judged at its creation: a key alive
/// then stays readable in it after it expires.
///
/// `Send + Sync`; its reads take no lock of the Db's. See [`Db::snapshot`] for its cost.
pub struct Snapshot {
    view: Arc<TableView>,
    /// The engine's clock (ms since the epoch) when the snapshot was taken.
    now: u64,
    /// What the engine's scan walks besides the tables: nothing.
    mems: [MemTable<Vec<u8>>; 2],
    /// The buffer size of the next get: the largest value read.
    value_len_hint: AtomicUsize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("tables", &self.view.len()).field("now", &self.now).finish()
    }
}

impl Snapshot {
    /// Two empty MemTables, made before the engine's lock is taken.
    pub(crate) fn empty_mems() -> Result<[MemTable<Vec<u8>>; 2], Error> {
        let one = || {
            MemTable::new(vec![0u8; MIN_MEMTABLE_BYTES]).map_err(|m| {
                Error::Engine(minivault_core::Error::InsufficientMemory {
                    needed: MIN_MEMTABLE_BYTES,
                    given: m.len(),
                })
            })
        };
        Ok([one()?, one()?])
    }

    pub(crate) fn new(view: Arc<TableView>, now: u64, mems: [MemTable<Vec<u8>>; 2]) -> Snapshot {
        Snapshot { view, now, mems, value_len_hint: AtomicUsize::new(VALUE_LEN_HINT) }
    }

    /// The value of `key` when the snapshot was taken, or `None` when it was absent, deleted or
    /// expired then.
    ///
    /// # Errors
    ///
    /// As [`Db::get`]: a damaged table ([`minivault_core::Error::Corrupted`]) or an I/O error.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut counters = ReadCounters::default();
        Ok(self.view.read(key, self.now, &self.value_len_hint, &mut counters)?.map(|(v, _)| v))
    }

    /// [`Snapshot::get`], with when the value expires (`None`: never); a time before now means
    /// it has expired in the database since the snapshot was taken.
    pub fn get_with_expiry(&self, key: &[u8]) -> Result<Option<ValueWithExpiry>, Error> {
        let mut counters = ReadCounters::default();
        let read = self.view.read(key, self.now, &self.value_len_hint, &mut counters)?;
        Ok(read.map(|(value, at)| (value, at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))))
    }

    /// When the snapshot was taken: the time its TTLs are judged at.
    pub fn taken_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now)
    }

    /// The entries of `range` when the snapshot was taken, in key order: a double-ended
    /// iterator, as [`Db::range`] (the same type, the same batches and memory), reading the
    /// snapshot's tables through the engine's own scan, with no lock.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Range<'_> {
        Range::new(self, range)
    }

    /// The entries whose key starts with `prefix` when the snapshot was taken, in key order
    /// (double-ended, like [`Snapshot::range`]).
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range<'_> {
        Range::prefix(self, prefix.as_ref())
    }

    /// The keys of `range` when the snapshot was taken, in order, without reading the values.
    pub fn keys<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Keys<'_> {
        Keys::new(Range::new(self, range))
    }

    /// One batch of a scan of the snapshot: as [`Db::scan_batch`](crate::scan), over the
    /// snapshot's tables.
    pub(crate) fn scan_batch(
        &self,
        range: KeyRange<'_>,
        reverse: bool,
        limit: usize,
        keys_only: bool,
        read_ahead: bool,
    ) -> Result<Vec<Entry>, Error> {
        let mut tables = self.view.tables();
        let [a, b] = &self.mems;
        let key_bytes = minivault_core::scan::key_bytes(tables.iter(), [a, b]);
        let mut keys = vec![0u8; key_bytes + read_ahead_bytes(tables.len(), read_ahead)];
        let mut storage = ViewStorage::new();
        let scan = Scan::over(&mut storage, &mut tables, [a, b], &mut keys, range, reverse, self.now)?;
        collect_batch(scan, limit, keys_only)
    }
}

impl Db {
    /// A [`Snapshot`] of the database now: it sees exactly the writes acknowledged before this
    /// call (writes racing it on other threads may or may not be in it) and nothing later,
    /// however long it lives and whatever flushes, compactions and evictions happen meanwhile.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let db = minivault::Db::open(tmp.path())?;
    /// db.put(b"config/mode", b"eco")?;
    /// let snapshot = db.snapshot()?;
    /// db.put(b"config/mode", b"boost")?;
    /// db.delete(b"config/mode")?;
    /// assert_eq!(snapshot.get(b"config/mode")?.as_deref(), Some(&b"eco"[..]));
    /// assert_eq!(db.get(b"config/mode")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Cost: it flushes the MemTables first, under the engine's lock, as [`Db::flush`] does
    /// (each non-empty one becomes an SSTable, the WAL is retired; nothing when they are
    /// empty), so taking snapshots often makes many small tables for compaction to merge. It
    /// then holds the tables live at that moment open: a table a compaction or an eviction
    /// removes afterwards stays on disk, unlisted, until the snapshot is dropped (the disk space
    /// of pinned files is freed then, and is not counted against [`crate::Options::max_bytes`]).
    ///
    /// # Errors
    ///
    /// As [`Db::flush`]: [`minivault_core::Error::ReadOnly`] on a handle opened read-only (its
    /// MemTables cannot be flushed), [`minivault_core::Error::Poisoned`], or the flush's own
    /// error.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let mems = Snapshot::empty_mems()?;
        let (view, now) = self.flushed_view()?;
        Ok(Snapshot::new(view, now, mems))
    }
}
