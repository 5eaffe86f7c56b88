//! [`Snapshot`]: the database as it was when [`Db::snapshot`] was called, readable for as long
//! as the snapshot lives, whatever is written, flushed, compacted or evicted meanwhile. Every
//! iterator of a [`Db`] ([`Db::range`], [`Db::prefix`], [`Db::keys`]) takes one when it is
//! made, and reads through it.
//!
//! Taking one copies nothing and writes nothing: under the engine's lock it pins a point in the
//! active MemTable (`crate::pins`, [`minivault_core::Db::pin_memtable`]: its generation and
//! arena bytes in use, O(1)), the live tables' view (`crate::view`: an `Arc` of their footers
//! and open descriptors, shared with gets) and the clock:
//!
//! ```text
//!  Db::snapshot     engine lock { pin (generation, point) + the MemTable waiting for a flush
//!                   + TableView of the live tables } + now
//!  Snapshot::get    the MemTables as of the point (the engine's active one under its lock while
//!                   the generation is active, else the generation's copy, no lock), then
//!                   minivault_core::get_from_tables over the view, expiry judged at `now`
//!  Snapshot::range  minivault_core::Scan over the same MemTables and the view, in batches
//! ```
//!
//! What it holds: the generation's record (shared by every snapshot of the generation; its
//! frozen copy once the engine rotates that MemTable away, or before [`Db::flush`], close and
//! drop), the copy of the MemTable that was waiting for a flush when it was taken (made by the
//! first snapshot that needs it, shared by the later ones), the view (an `Arc` shared with gets
//! that took the same one) and, through the view's descriptors, the disk space of every table
//! it pins that the database has since removed, freed when the snapshot is dropped. So each
//! live snapshot holds at most two MemTable copies (2 × [`crate::Options::memtable_bytes`]),
//! shared among the snapshots of the same generations; pinned files do not count against
//! [`crate::Options::max_bytes`]. While it lives, the active MemTable keeps the entries it sees
//! that later writes overwrite (version slots): it fills, and is flushed, sooner. It reads
//! through the database's page cache, which it keeps alive should it outlive the [`Db`].
//!
//! Tables never change once written; tables flushed after the snapshot was taken hold only
//! newer writes and are never read by it.

use std::fmt;
use std::ops::RangeBounds;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minivault_core::memtable::{MemLookup, MemTable, NEWEST};
use minivault_core::sstable::ReadCounters;
use minivault_core::{KeyRange, Scan};

use crate::db::{State, ValueWithExpiry, VALUE_LEN_HINT};
use crate::pins::{Generation, MemCopy, Pinned};
use crate::scan::{collect_batch, read_ahead_bytes, Entry, Keys, Range};
use crate::view::{TableView, ValueExpiringAt, ViewStorage};
use crate::{Db, Error};

/// A read-only view of a [`Db`] at one moment: it sees exactly the writes acknowledged before
/// [`Db::snapshot`] returned it (and perhaps writes made concurrently with that call), and
/// nothing written later, however long it lives. TTLs are judged at its creation: a key alive
/// then stays readable in it after it expires.
///
/// `Send + Sync`. Its reads take the engine's lock only for the MemTable part while its
/// MemTable generation is still the active one. See [`Db::snapshot`] for its cost.
pub struct Snapshot {
    /// The database's state, for the active MemTable while its generation is still active.
    db: Weak<Mutex<State>>,
    /// The MemTable generation pinned, and its copy once made.
    generation: Arc<Generation>,
    /// What the snapshot sees of that generation: entries below this arena offset.
    point: u32,
    /// The MemTable that was waiting for a flush when the snapshot was taken (a copy), or an
    /// empty one.
    older: MemCopy,
    view: Arc<TableView>,
    /// The engine's clock (ms since the epoch) when the snapshot was taken.
    now: u64,
    /// The buffer size of the next get: the largest value read.
    value_len_hint: AtomicUsize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation.id)
            .field("point", &self.point)
            .field("tables", &self.view.len())
            .field("now", &self.now)
            .finish()
    }
}

/// What the MemTables say of a key, owned.
enum MemAnswer {
    Value(ValueExpiringAt),
    Gone,
    InTables,
}

impl MemAnswer {
    /// The answer of one MemTable's lookup, at `now`; `None`: ask the next source.
    fn of(lookup: MemLookup<'_>, now: u64) -> Option<MemAnswer> {
        match lookup {
            MemLookup::Found(e) if e.is_dead_at(now) => Some(MemAnswer::Gone),
            MemLookup::Found(e) => Some(MemAnswer::Value((e.value.to_vec(), e.expires_at))),
            MemLookup::Deleted => Some(MemAnswer::Gone),
            MemLookup::Absent => None,
        }
    }
}

impl Snapshot {
    /// A snapshot reading `pinned` of the database behind `db`, the tables of `view`, TTLs
    /// judged at `now` (`Db::pin`).
    pub(crate) fn new(db: Weak<Mutex<State>>, pinned: Pinned, view: Arc<TableView>, now: u64) -> Snapshot {
        let (generation, point, older) = pinned;
        Snapshot { db, generation, point, older, view, now, value_len_hint: AtomicUsize::new(VALUE_LEN_HINT) }
    }

    /// The MemTables' answer for `key`: the pinned generation as of the point, then the older
    /// MemTable.
    fn mem_lookup(&self, key: &[u8]) -> Result<MemAnswer, Error> {
        let (point, now) = (self.point, self.now);
        let from_older = || MemAnswer::of(self.older.lookup(key), now).unwrap_or(MemAnswer::InTables);
        let from = |m: &MemTable<Vec<u8>>| MemAnswer::of(m.lookup_as_of(key, point), now);
        if let Some(copy) = self.generation.copy() {
            return Ok(from(copy).unwrap_or_else(from_older));
        }
        let state = self.db.upgrade();
        let guard = state.as_ref().map(|s| crate::db::lock_state(s));
        let answer = match (&guard, self.generation.copy()) {
            (_, Some(copy)) => from(copy),
            (Some(s), None) if s.engine.memtable_generation() == self.generation.id => {
                from(s.engine.memtables().0)
            }
            _ => return Err(self.unavailable()),
        };
        drop(guard);
        Ok(answer.unwrap_or_else(from_older))
    }

    fn unavailable(&self) -> Error {
        Error::SnapshotUnavailable { generation: self.generation.id }
    }

    fn read(&self, key: &[u8]) -> Result<Option<ValueExpiringAt>, Error> {
        match self.mem_lookup(key)? {
            MemAnswer::Value(v) => Ok(Some(v)),
            MemAnswer::Gone => Ok(None),
            MemAnswer::InTables => {
                let mut counters = ReadCounters::default();
                self.view.read(key, self.now, &self.value_len_hint, &mut counters)
            }
        }
    }

    /// The value of `key` when the snapshot was taken, or `None` when it was absent, deleted or
    /// expired then.
    ///
    /// # Errors
    ///
    /// As [`Db::get`]: a damaged table ([`minivault_core::Error::Corrupted`]) or an I/O error.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read(key)?.map(|(v, _)| v))
    }

    /// [`Snapshot::get`], with when the value expires (`None`: never); a time before now means
    /// it has expired in the database since the snapshot was taken.
    pub fn get_with_expiry(&self, key: &[u8]) -> Result<Option<ValueWithExpiry>, Error> {
        let read = self.read(key)?;
        Ok(read.map(|(value, at)| (value, at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))))
    }

    /// When the snapshot was taken: the time its TTLs are judged at.
    pub fn taken_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now)
    }

    /// The entries of `range` when the snapshot was taken, in key order: a double-ended
    /// iterator, as [`Db::range`] (the same type, the same batches and memory), reading the
    /// snapshot's MemTables and tables through the engine's own scan.
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

    /// One batch of a scan of the snapshot: up to `limit` entries of `range` in order
    /// (`reverse`: descending); with `keys_only`, values come back empty; with `read_ahead`,
    /// the SSTables are read in large chunks outside the page cache. Under the engine's lock
    /// while the pinned generation is the active MemTable (its scan order kept by the engine),
    /// else with no lock, over the generation's copy.
    pub(crate) fn scan_batch(
        &self,
        range: KeyRange<'_>,
        reverse: bool,
        limit: usize,
        keys_only: bool,
        read_ahead: bool,
    ) -> Result<Vec<Entry>, Error> {
        let over_copy =
            |copy: &MemTable<Vec<u8>>| self.scan_copy(copy, range, reverse, limit, keys_only, read_ahead);
        if let Some(copy) = self.generation.copy() {
            return over_copy(copy);
        }
        let Some(state) = self.db.upgrade() else {
            return match self.generation.copy() {
                Some(copy) => over_copy(copy),
                None => Err(self.unavailable()),
            };
        };
        let mut guard = crate::db::lock_state(&state);
        if let Some(copy) = self.generation.copy() {
            drop(guard);
            return over_copy(copy);
        }
        let mut tables = self.view.tables();
        let mut storage = ViewStorage::new();
        let older: &MemTable<Vec<u8>> = &self.older;
        let engine = &mut guard.engine;
        if engine.memtable_generation() != self.generation.id {
            return Err(self.unavailable());
        }
        let key_bytes = minivault_core::scan::key_bytes(tables.iter(), [engine.memtables().0, older]);
        let mut keys = vec![0u8; key_bytes + read_ahead_bytes(tables.len(), read_ahead)];
        let scan = engine.scan_pinned(
            &mut storage,
            &mut tables,
            self.point,
            older,
            &mut keys,
            range,
            reverse,
            self.now,
        )?;
        collect_batch(scan, limit, keys_only)
    }
}

impl Snapshot {
    /// [`Snapshot::scan_batch`] over the generation's copy, with no lock.
    fn scan_copy(
        &self,
        copy: &MemTable<Vec<u8>>,
        range: KeyRange<'_>,
        reverse: bool,
        limit: usize,
        keys_only: bool,
        read_ahead: bool,
    ) -> Result<Vec<Entry>, Error> {
        let mut tables = self.view.tables();
        let mut storage = ViewStorage::new();
        let mems: [&MemTable<Vec<u8>>; 2] = [copy, &self.older];
        let key_bytes = minivault_core::scan::key_bytes(tables.iter(), mems);
        let mut keys = vec![0u8; key_bytes + read_ahead_bytes(tables.len(), read_ahead)];
        let points = [self.point, NEWEST];
        let scan = Scan::over(&mut storage, &mut tables, mems, points, &mut keys, range, reverse, self.now)?;
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
    /// Cost: O(1) under the engine's lock, no flush and no copy: a point pinned in the active
    /// MemTable, the view of the live tables (shared with gets; rebuilt only after the table
    /// set changed) and the clock. The one exception: the first snapshot taken while a full
    /// MemTable waits for its flush sorts it in place (the rotation only sealed it: a few
    /// milliseconds for a full default MemTable) and copies it (a memcpy of its used bytes, at
    /// most [`crate::Options::memtable_bytes`]); later snapshots share that copy.
    ///
    /// Memory while it lives: up to two MemTable copies (2 × `memtable_bytes`), shared by the
    /// snapshots and iterators of the same MemTable generations: the copy of the MemTable it
    /// pinned, made when the engine rotates that MemTable away (or at [`Db::flush`], close and
    /// drop), and the copy of the one that waited for a flush. The active MemTable keeps the
    /// entries a live snapshot sees when later writes overwrite them, so it fills, and is
    /// flushed, sooner. Tables live when it was taken stay open: a table a compaction or an
    /// eviction removes afterwards stays on disk, unlisted, until the snapshot is dropped (its
    /// space is freed then, and is not counted against [`crate::Options::max_bytes`]).
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotUnavailable`] should the MemTable waiting for a flush not copy (not
    /// expected). Reads of a snapshot of a poisoned or read-only handle work.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        self.pin()
    }
}
