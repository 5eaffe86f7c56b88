//! Db: the engine's handle. It routes each call to the part that owns the work and keeps one
//! rule of its own: a storage failure while changing files poisons the database.
//!
//! ```text
//! put/delete/batch ─► Wals (wal/)           append a record, sync by policy
//!                  └► MemTables             insert; full: rotate (flush the immutable one first)
//! rotate ─────────► Wals::rotate            start the next WAL (the old one: next sync)
//!                  └► flush                 immutable MemTable ─► SSTable ─► Version::add
//!                  └► compaction::run       policy, merge, Version::replace_run
//! plan_flush ─────► flush::write_temp       the same flush apart from the database (a copy of
//!   install_flush                           the immutable MemTable, another storage handle);
//!   (apart.rs)                              meanwhile a rotation is Error::FlushPending;
//!                                           plan_compaction .. install_compaction likewise
//! get ────────────► MemTables ─► get_from_tables (tables newest to oldest, through their filters)
//! open ───────────► recovery                Version::recover, WalReader replay, Wal::adopt
//! after a flush ──► space                   the cap: evict the oldest tables, or refuse writes
//! ```
//!
//! # Memory
//! Two MemTable buffers come from the caller ([`Db::open`]); nothing else is allocated.
//!
//! # Failure
//! A storage error during a write, sync, flush, rotation or compaction poisons the database:
//! later writes fail with [`Error::Poisoned`] until it is reopened, because the state on storage
//! is unknown and a failed sync must never be retried into a false success. Reads keep working.
//! One guard (`Db::mutate`) applies the rule to every path that changes files. Running out of
//! space is the exception: [`Error::Full`] comes only from steps that left nothing behind (see
//! [`crate::space`]), so it does not poison; with [`crate::WhenFull::DropOldest`] the guard
//! evicts the oldest table and tries the write again.

use crate::batch::WriteBatch;
use crate::compaction;
use crate::entry::{self, is_dead, EntryHeader};
use crate::error::Error;
use crate::flush::{self, FlushPlan};
use crate::limits::{MAX_BATCH_LEN, MAX_KEY_LEN, MAX_MEMTABLE_RANGES, MAX_RUNNING, MAX_VALUE_LEN};
use crate::log::{event, warn_event};
use crate::memtable::{MemLookup, MemTable};
use crate::memtables::MemTables;
use crate::options::{Clock, CompactionMode, Config};
use crate::scan::{self, KeyRange, OrderCache, Scan};
use crate::space::Space;
use crate::sstable::{Lookup, ProbeTable, ReadCounters, Table, TableInfo};
use crate::stats::Stats;
use crate::storage::Storage;
use crate::version::Version;
use crate::wal::{SyncTarget, Wals};

mod apart;

pub(crate) type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

/// A value read by [`Db::get_with_expiry`], and when it expires (`None`: never).
pub type ValueWithExpiry<'b> = (&'b [u8], Option<u64>);

/// What the MemTables answer for a key ([`Db::get_from_memtables`]).
#[derive(Debug, PartialEq, Eq)]
pub enum MemGet<'b> {
    /// The newest entry is this value (copied into the caller's buffer) with this expiry.
    Found(&'b [u8], Option<u64>),
    /// Deleted, expired, or under a range delete of a MemTable: absent, whatever the tables hold.
    Gone,
    /// The MemTables know nothing of the key: the tables answer ([`get_from_tables`]). The
    /// caller's buffer, handed back.
    InTables(&'b mut [u8]),
}

/// Counters kept since open.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) flushes: u64,
    pub(crate) compactions: u64,
    pub(crate) compactions_skipped_for_space: u64,
    pub(crate) compaction_overruns: u64,
    /// Tables removed whole because every entry in them had expired, and their bytes.
    pub(crate) expired_tables: u64,
    pub(crate) expired_bytes: u64,
    pub(crate) torn_tails_truncated: u64,
    pub(crate) wals_dropped: u64,
    pub(crate) spare_wals_taken: u64,
    pub(crate) gets: u64,
    pub(crate) reads: ReadCounters,
}

/// A compaction planned by [`Db::plan_compaction`] and not yet installed: its run of tables,
/// by id, and whether an eviction took one of them since (then its output is discarded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running {
    first: u64,
    id: u64,
    cancelled: bool,
}

/// A key-value database over storage `S`, clock `C` and MemTable buffers `M`.
pub struct Db<S: Storage, C, M> {
    pub(crate) storage: S,
    pub(crate) clock: C,
    pub(crate) config: Config,
    pub(crate) mems: MemTables<M>,
    pub(crate) wals: Wals<S::File>,
    pub(crate) version: Version<S::File>,
    pub(crate) poisoned: bool,
    /// Poisoned by [`Db::refuse_writes`] alone, no failure since: [`Db::sync`] still syncs.
    pub(crate) refused_by_host: bool,
    pub(crate) counters: Counters,
    /// Where scans keep the active MemTable's order ([`Db::set_scan_order_buffer`]).
    pub(crate) order: Option<OrderCache<M>>,
    /// The storage budget and what eviction removed.
    pub(crate) space: Space,
    /// Compactions running apart from the database ([`CompactionMode::External`]), and the
    /// stepped one ([`CompactionMode::Stepped`]).
    pub(crate) running: heapless::Vec<Running, MAX_RUNNING>,
    /// The compaction in progress with [`CompactionMode::Stepped`] ([`compaction::steps`]).
    pub(crate) stepped: Option<compaction::steps::Stepped<S::File>>,
    /// Its scratch memory ([`Db::set_compaction_scratch`]).
    pub(crate) stepped_scratch: Option<M>,
    /// The flush of the immutable MemTable running apart from the database
    /// ([`Db::plan_flush`]): while it runs, a write that must rotate gets
    /// [`Error::FlushPending`].
    pub(crate) flushing: Option<FlushPlan>,
    /// The spare WAL planned by [`Db::plan_spare_wal`] and not yet installed or failed.
    pub(crate) spare_planned: Option<crate::wal::Spare>,
}

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Runs `change`, which changes files; if it fails, the database refuses writes from then on,
    /// unless it failed for want of space ([`Error::Full`], which leaves nothing behind): then,
    /// with [`crate::WhenFull::DropOldest`], the tables in which everything expired are removed,
    /// or else the oldest table is evicted, and `change` runs again, as long as there is a table
    /// to remove.
    pub(crate) fn mutate<T>(&mut self, mut change: impl FnMut(&mut Self) -> Result<T, S>) -> Result<T, S> {
        self.check_writable()?;
        loop {
            let result = change(self);
            match result {
                Err(Error::Full) if self.space.evicts() => match self.free_a_table() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return self.poison(e),
                },
                Err(Error::Full) => {}
                // Refused before anything was logged or changed: the caller waits for the flush.
                Err(Error::FlushPending) => return Err(Error::FlushPending),
                Err(e) => return self.poison(e),
                // The write may have extended the WAL past the cap.
                Ok(_) => return self.enforce_cap().map_or_else(|e| self.poison(e), |()| result),
            }
            warn_event!("a write failed for want of space; nothing of it was stored");
            self.space.count_refusal();
            return Err(Error::Full);
        }
    }

    fn poison<T>(&mut self, error: Error<S::Error>) -> Result<T, S> {
        warn_event!("a write failed; writes refused until reopen");
        self.poisoned = true;
        self.refused_by_host = false;
        Err(error)
    }

    /// Bytes the database's files take now: what counts against [`Config::max_bytes`].
    fn used_bytes(&self) -> u64 {
        Space::used(self.version.bytes(), self.wals.file_bytes())
    }

    /// With [`crate::WhenFull::RefuseWrites`], refuses a write that adds data once the files
    /// and what one write can add ([`Space::write_reserve`]) exceed the cap.
    /// Tables whose entries have all expired are removed first: they may be what fills the cap.
    fn check_room(&mut self) -> Result<(), S> {
        let reserve = Space::write_reserve(self.mems.buffer_len(), self.wals.chunk());
        if self.space.refuses(self.used_bytes(), reserve) {
            self.drop_expired_tables(false).or_else(|e| self.poison(e))?;
            if self.space.refuses(self.used_bytes(), reserve) {
                self.space.count_refusal();
                return Err(Error::Full);
            }
        }
        Ok(())
    }

    /// Removes the tables in which nothing is alive any more ([`Version::drop_expired`]), except
    /// those a compaction is merging (its output replaces them; a stepped compaction's inputs
    /// are among `running` too). True when it removed one. `at_once`: see
    /// [`Version::drop_expired`].
    pub(crate) fn drop_expired_tables(&mut self, at_once: bool) -> Result<bool, S> {
        let now = self.clock.now();
        let running = &self.running;
        let busy = |id: u64| running.iter().any(|r| r.first <= id && id <= r.id);
        let (tables, bytes) = self.version.drop_expired(&mut self.storage, now, busy, at_once)?;
        self.counters.expired_tables += tables;
        self.counters.expired_bytes += bytes;
        Ok(tables > 0)
    }

    /// Frees space now for a write that failed for want of it ([`crate::WhenFull::DropOldest`]):
    /// the tables that expired whole if there are any (removed in the call: a full storage frees
    /// nothing while a removal waits), else the oldest table. False when nothing could go.
    fn free_a_table(&mut self) -> Result<bool, S> {
        Ok(self.drop_expired_tables(true)? || self.evict_oldest()?)
    }

    /// After a flush made its table live and retired its WALs: removes the tables that expired
    /// whole, compacts if the policy asks, and holds the cap.
    pub(crate) fn after_flush(&mut self) -> Result<(), S> {
        self.drop_expired_tables(false)?;
        self.maybe_compact()?;
        self.enforce_cap()
    }

    /// Removes the oldest table; false when only one is left.
    fn evict_oldest(&mut self) -> Result<bool, S> {
        match self.version.evict_oldest(&mut self.storage)? {
            Some(table) => {
                // A compaction running on this table can no longer be installed: its output
                // would bring the evicted entries back.
                for r in self.running.iter_mut().filter(|r| r.first <= table.id && table.id <= r.id) {
                    r.cancelled = true;
                }
                self.space.count_eviction(table);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// With [`crate::WhenFull::DropOldest`], evicts the oldest tables while the files exceed
    /// the cap, once the tables in which everything expired are gone.
    pub(crate) fn enforce_cap(&mut self) -> Result<(), S> {
        if self.space.evicts() && self.space.over(self.used_bytes()) {
            self.drop_expired_tables(false)?;
        }
        while self.space.evicts() && self.space.over(self.used_bytes()) {
            if !self.evict_oldest()? {
                break;
            }
        }
        Ok(())
    }

    /// Writes are refused once poisoned, and always when read-only.
    fn check_writable(&self) -> Result<(), S> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else if !self.wals.has_current() {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), S> {
        self.write(EntryHeader { tombstone: false, key_len: key.len(), expires_at: None }, key, value)
    }

    /// Stores `value` under `key` until the clock reaches `expires_at` (absolute, in the clock's
    /// units); from then on the key reads as absent.
    pub fn put_expiring(&mut self, key: &[u8], value: &[u8], expires_at: u64) -> Result<(), S> {
        if expires_at <= self.clock.now() {
            return Err(Error::InvalidTtl);
        }
        let h = EntryHeader { tombstone: false, key_len: key.len(), expires_at: Some(expires_at) };
        self.write(h, key, value)
    }

    /// Stores `value` under `key` for `ttl` clock units (at least 1) counted from this call's own
    /// reading of the clock, so a write that waited (for a lock, for a flush) before reaching the
    /// engine still gets its whole TTL and never fails with [`Error::InvalidTtl`].
    pub fn put_with_ttl(&mut self, key: &[u8], value: &[u8], ttl: u64) -> Result<(), S> {
        let expires_at = self.clock.now().saturating_add(ttl.max(1));
        let h = EntryHeader { tombstone: false, key_len: key.len(), expires_at: Some(expires_at) };
        self.write(h, key, value)
    }

    /// Deletes `key` (writes a tombstone, which hides older values in SSTables).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), S> {
        self.write(EntryHeader { tombstone: true, key_len: key.len(), expires_at: None }, key, &[])
    }

    /// Deletes every key from `start` (inclusive) to `end` (exclusive), atomically: one WAL
    /// record, however many keys the range holds. Older values in the range read as absent at
    /// once, in gets and scans; their space is reclaimed by compaction.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), S> {
        self.check_writable()?;
        check_key(start)?;
        check_key(end)?;
        if start >= end {
            return Err(Error::EmptyRange);
        }
        let len = entry::range_payload_len(start, end);
        if len > self.mems.max_payload() {
            return Err(Error::KeyTooLarge {
                len: start.len().max(end.len()),
                max: self.mems.max_payload() / 2,
            });
        }
        self.mutate(|db| {
            if !db.mems.active().fits_items(len, 0, 1) {
                db.rotate()?;
            }
            db.write_step()?;
            db.log(&[&entry::range_header(start.len()), start, end], 1)?;
            db.mems.active_mut().insert_range(start, end).map_err(|_| Error::Poisoned)
        })
    }

    fn write(&mut self, header: EntryHeader, key: &[u8], value: &[u8]) -> Result<(), S> {
        self.check_writable()?;
        check_key(key)?;
        // The entry must fit in either MemTable, or it could be logged and then not applied.
        let room = self.mems.max_payload().saturating_sub(header.encoded_len());
        if key.len() > room {
            return Err(Error::KeyTooLarge { len: key.len(), max: room });
        }
        let max_value = MAX_VALUE_LEN.min(room - key.len());
        if value.len() > max_value {
            return Err(Error::ValueTooLarge { len: value.len(), max: max_value });
        }
        if !header.tombstone {
            self.check_room()?;
        }
        let len = entry::payload_len(&header, value.len());
        self.mutate(|db| {
            if !db.mems.active().fits(len) {
                db.rotate()?;
            }
            db.write_step()?;
            let (hb, hn) = header.encode();
            db.log(&[hb.get(..hn).unwrap_or(&[]), key, value], 1)?;
            // Cannot fail after the `fits` check; refuse further writes rather than diverge.
            db.mems.active_mut().insert(&header, key, value).map_err(|_| Error::Poisoned)
        })
    }

    /// Applies every entry of `batch` atomically: after a crash, all of them or none are there.
    /// One WAL record, and with [`crate::SyncPolicy::EveryWrite`] one sync, for the whole batch.
    pub fn write_batch<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, batch: &WriteBatch<B>) -> Result<(), S> {
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        // Entries were validated as they were added; only expiry depends on "now".
        let expired = batch
            .entries()
            .filter_map(|item| item.ok().and_then(|p| entry::decode(p).ok()))
            .any(|e| entry::is_expired(e.expires_at, now));
        if expired {
            return Err(Error::InvalidTtl);
        }
        let payload = batch.payload();
        let ranges = batch.range_deletes();
        let keys = batch.len() - ranges;
        let max = self.mems.max_payload().min(MAX_BATCH_LEN);
        if payload.len() > max || keys > self.mems.key_capacity() || ranges > MAX_MEMTABLE_RANGES {
            return Err(Error::BatchTooLarge { len: payload.len(), max });
        }
        let adds = batch
            .entries()
            .any(|item| item.ok().and_then(|p| entry::decode(p).ok()).is_some_and(|e| !e.tombstone));
        if adds {
            self.check_room()?;
        }
        self.mutate(|db| {
            if !db.mems.active().fits_items(payload.len(), keys, ranges) {
                db.rotate()?;
            }
            db.write_step()?;
            db.log(&[payload], batch.len() as u32)?;
            db.mems.active_mut().insert_batch(payload).map_err(|_| Error::Poisoned)
        })
    }

    /// Appends one record to the current WAL, synced when the policy says so.
    fn log(&mut self, body: &[&[u8]], writes: u32) -> Result<(), S> {
        let policy = self.config.sync;
        self.wals.append(&mut self.storage, body, writes, policy)
    }

    /// Makes every acknowledged write durable (for [`crate::SyncPolicy::EveryN`] and
    /// [`crate::SyncPolicy::Manual`]).
    ///
    /// After [`Db::refuse_writes`] (and no failure) it still syncs the WAL: what it makes
    /// durable are whole records, or a torn tail that recovery cuts.
    pub fn sync(&mut self) -> Result<(), S> {
        if self.refused_by_host {
            return self.wals.sync(&mut self.storage).or_else(|e| self.poison(e));
        }
        self.mutate(|db| db.wals.sync(&mut db.storage))
    }

    /// What a sync started now must cover, for a host that syncs the WAL outside the engine
    /// (group commit; see [`crate::wal::writer`]), in the order the files must be synced and
    /// reported: the WAL the current one was rotated from while it is not synced (rotation
    /// leaves that to the next sync), then the current WAL. Each names the WAL's id (its file is
    /// `FileName` [`crate::names::FileKind::Wal`] of that id), the end of its records, and the
    /// writes appended so far. The current one is `None` when read-only.
    pub fn wal_sync_targets(&self) -> [Option<SyncTarget>; 2] {
        self.wals.sync_targets()
    }

    /// Reports the outcome of a sync of `target`'s WAL file that the host made itself, started
    /// after `target` was taken ([`Db::wal_sync_targets`]), through a handle that reports the
    /// file's write errors (on POSIX, a descriptor of its own: `open` of the file, not a `dup`).
    ///
    /// `Ok(true)`: the WAL's durable end and unsynced count moved as if [`Db::sync`] had run at
    /// that moment. `Ok(false)`: the report counted for nothing: a WAL that is neither current
    /// nor the unsynced predecessor any more, or the current WAL while its predecessor still
    /// waits for its own sync (a host syncs and reports the targets in order; its writes are not
    /// durable until a report counts, or [`Db::sync`] runs). `Err`: the database is poisoned, as
    /// by any failed sync, and the error comes back as [`Error::Storage`].
    pub fn wal_synced(
        &mut self,
        target: SyncTarget,
        outcome: core::result::Result<(), S::Error>,
    ) -> Result<bool, S> {
        match outcome {
            Ok(()) => Ok(self.wals.note_synced(target)),
            Err(e) => self.poison(Error::Storage(e)),
        }
    }

    /// Writes appended to the current WAL since the last sync (engine's or host's).
    pub fn wal_unsynced(&self) -> u32 {
        self.wals.unsynced()
    }

    /// Seals the active MemTable (no sort) and starts a new WAL, flushing the older immutable MemTable
    /// first (inline, unless a flush apart from the database runs: then
    /// [`Error::FlushPending`], before anything changed).
    fn rotate(&mut self) -> Result<(), S> {
        if self.flushing.is_some() {
            return Err(Error::FlushPending);
        }
        self.flush_immutable()?;
        let old = match self.wals.rotate_to_spare(&mut self.storage)? {
            Some(old) => {
                self.counters.spare_wals_taken += 1;
                old
            }
            None => {
                let id = self.version.new_id();
                self.wals.rotate(&mut self.storage, id)?
            }
        };
        self.mems.rotate(old);
        Ok(())
    }

    /// Writes the immutable MemTable (if any) as an SSTable, retires the WALs it came from, and
    /// compacts if the policy asks.
    pub(crate) fn flush_immutable(&mut self) -> Result<(), S> {
        let now = self.clock.now();
        let Some((mem, covered)) = self.mems.immutable_mut() else { return Ok(()) };
        let in_table = flush::write_table(&mut self.storage, &mut self.version, mem, covered, now)?;
        self.counters.flushes += 1;
        event!("flush: MemTable written as an SSTable, WALs up to {=u64} retired", covered);
        self.wals.retire(&mut self.storage, covered, in_table)?;
        self.mems.retire_immutable();
        self.after_flush()
    }

    /// Merges the newest tables when the policy asks for it, with the idle MemTable as scratch
    /// ([`CompactionMode::Inline`]; with [`CompactionMode::External`], only when the table limit
    /// forces it; with [`CompactionMode::Stepped`], starts or finishes the stepped compaction,
    /// and merges whole only when the table limit forces it). Tables of a running compaction
    /// are left alone.
    pub(crate) fn maybe_compact(&mut self) -> Result<(), S> {
        let mode = self.config.compaction;
        if mode == CompactionMode::External && !self.compaction_forced() {
            return Ok(());
        }
        // In steps; whole only when the table limit is reached first.
        let stepped = matches!(mode, CompactionMode::Stepped { .. }) && self.stepped_scratch.is_some();
        if stepped && !self.stepped_after_flush()? {
            return Ok(());
        }
        loop {
            let now = self.clock.now();
            let free_from = self.free_from();
            let Some(scratch) = self.mems.idle_scratch() else { return Ok(()) };
            let limit = self.space.merge_limit();
            let ran = compaction::run(&mut self.storage, &mut self.version, free_from, scratch, now, limit);
            self.mems.reset_idle();
            match ran {
                Ok(true) => self.counters.compactions += 1,
                Ok(false) => {}
                // The tables are as they were; the flush that came before stands. With
                // DropOldest, when the table limit forces the compaction, the oldest table makes
                // room and it is tried again; a compaction that can wait is skipped.
                Err(Error::Full)
                    if self.space.evicts() && self.compaction_forced() && self.evict_oldest()? =>
                {
                    continue
                }
                Err(Error::Full) => {
                    warn_event!("compaction skipped: the storage is full");
                    self.counters.compactions_skipped_for_space += 1;
                }
                Err(e) => return Err(e),
            }
            return Ok(());
        }
    }

    /// Writes every MemTable entry to SSTables and retires the WALs: after this, a reopen replays
    /// nothing. [`Error::FlushPending`] (nothing done) while a flush planned by
    /// [`Db::plan_flush`] runs.
    pub fn flush(&mut self) -> Result<(), S> {
        self.mutate(|db| {
            if db.flushing.is_some() {
                return Err(Error::FlushPending);
            }
            if !db.mems.active().is_empty() {
                db.rotate()?;
            }
            db.flush_immutable()
        })
    }

    /// Reads the value of `key` into `buf`; returns the filled part of `buf`, or `None` when the
    /// key is absent, deleted or expired. [`Error::BufferTooSmall`] says how much room it needs.
    pub fn get<'b>(&mut self, key: &[u8], buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, S> {
        Ok(self.get_with_expiry(key, buf)?.map(|(value, _)| value))
    }

    /// [`Db::get`], also returning when the value expires (`None`: never), in the clock's units:
    /// from that time on the key reads as absent. For caches above the engine.
    pub fn get_with_expiry<'b>(
        &mut self,
        key: &[u8],
        buf: &'b mut [u8],
    ) -> Result<Option<ValueWithExpiry<'b>>, S> {
        let now = self.clock.now();
        match self.get_from_memtables(key, buf, now)? {
            MemGet::Found(value, expires_at) => Ok(Some((value, expires_at))),
            MemGet::Gone => Ok(None),
            MemGet::InTables(buf) => get_from_tables(
                &mut self.storage,
                self.version.tables_mut().iter_mut(),
                key,
                buf,
                now,
                &mut self.counters.reads,
            ),
        }
    }

    /// The MemTables' part of a get at time `now` (counted as a get in [`Db::stats`]): the value
    /// (copied into `buf`), gone (deleted, expired, or under a MemTable's range delete), or
    /// for the tables to answer. [`Db::get_with_expiry`] is this, then [`get_from_tables`] over
    /// [`Db::live_tables`]; a host that reads the tables through handles of its own, outside
    /// whatever guards the engine, makes the same two calls.
    pub fn get_from_memtables<'b>(
        &mut self,
        key: &[u8],
        buf: &'b mut [u8],
        now: u64,
    ) -> Result<MemGet<'b>, S> {
        check_key(key)?;
        self.counters.gets += 1;
        match self.mems.lookup(key) {
            MemLookup::Found(e) if e.is_dead_at(now) => Ok(MemGet::Gone),
            MemLookup::Found(e) => {
                let n = e.value.len();
                let dst = buf.get_mut(..n).ok_or(Error::BufferTooSmall { needed: n })?;
                dst.copy_from_slice(e.value);
                Ok(MemGet::Found(dst, e.expires_at))
            }
            MemLookup::Deleted => Ok(MemGet::Gone),
            MemLookup::Absent => Ok(MemGet::InTables(buf)),
        }
    }

    /// The live tables, oldest first: their ids, footers and open files, for a host that
    /// probes them through handles of its own ([`get_from_tables`] over its own [`Storage`]).
    /// A table never changes once live; [`Db::table_set_changes`] says when the set does.
    pub fn live_tables(&self) -> &[Table<S::File>] {
        self.version.tables()
    }

    /// The number of live tables ([`Stats::tables`], without building the rest of [`Db::stats`]).
    pub fn table_count(&self) -> usize {
        self.version.len()
    }

    /// How far compaction is behind: the runs of tables by age (a table whose keys lie wholly
    /// below or above those of every older table continues the run before it: sequential keys
    /// count once together, unless either table mixes entries with and without a TTL), plus
    /// every table past the crowding point
    /// ([`crate::limits::CROWDED_TABLES`], or three quarters of a storage's table limit). What a
    /// host throttles writes by; it grows by at most one per flush. Without `many-tables`, the
    /// number of tables.
    pub fn compaction_backlog(&self) -> usize {
        self.version.runs() + self.version.len().saturating_sub(compaction::crowded_tables(&self.storage))
    }

    /// Tables evicted since open ([`Stats::evicted_tables`], without building the rest of
    /// [`Db::stats`]): a host that caches rows compares it after each call.
    pub fn evicted_tables(&self) -> u64 {
        self.space.evicted().tables
    }

    /// How many times the set of live tables has changed since open (a flush added one, a
    /// compaction replaced some, an eviction removed one): equal counts, the same
    /// [`Db::live_tables`].
    pub fn table_set_changes(&self) -> u64 {
        self.version.changes()
    }

    /// The bytes of key buffer a [`Db::scan`] needs now: a slot per SSTable as long as its
    /// longest key, and one as long as the longest key anywhere.
    pub fn scan_key_bytes(&self) -> usize {
        scan::key_bytes(self.version.tables().iter(), self.mems.both().0)
    }

    /// Starts a scan of `range`, in key order (`reverse`: from the last key down). `keys` is the
    /// scan's key buffer (at least [`Db::scan_key_bytes`]). See [`crate::scan`] for the memory a
    /// scan takes and how to resume one after writing, and [`Db::set_scan_order_buffer`]. The
    /// first scan after a rotation sorts the immutable MemTable in place (the rotation only
    /// sealed it: O(n log n) in its keys, once; the flush that writes it out would sort it
    /// otherwise).
    pub fn scan<'a>(
        &'a mut self,
        range: KeyRange<'a>,
        reverse: bool,
        keys: &'a mut [u8],
    ) -> Result<Scan<'a, S, M>, S> {
        let now = self.clock.now();
        // The immutable MemTable is sealed unsorted at rotation: a scan sorts it (once).
        self.mems.sort_immutable();
        let (mems, which) = self.mems.both();
        let sorted = self.order.as_mut().and_then(|o| o.update(which, mems[0]));
        let points = [crate::memtable::NEWEST; 2];
        Scan::start(
            &mut self.storage,
            self.version.tables_mut(),
            mems,
            points,
            sorted,
            keys,
            range,
            reverse,
            now,
        )
    }

    /// Pins the present in the active MemTable for a reader that reads it later as of that
    /// moment ([`Db::scan_pinned`], [`MemTable::lookup_as_of`] on [`Db::memtables`]): returns
    /// the active MemTable's generation and the point. O(1); from then on, until the MemTable
    /// rotates, an overwrite keeps the entry it replaces when the point sees it (a version slot:
    /// the MemTable fills sooner). The host keeps its own copy of the MemTable
    /// ([`MemTable::copy_frozen`]) for reads after the generation has rotated away.
    pub fn pin_memtable(&mut self) -> (u64, u32) {
        self.mems.pin()
    }

    /// Forgets the points pinned in the active MemTable, when no reader of them is left: from
    /// then on overwrites keep no older version.
    pub fn unpin_memtable(&mut self) {
        self.mems.unpin();
    }

    /// The active MemTable's generation ([`MemTables::generation`]).
    pub fn memtable_generation(&self) -> u64 {
        self.mems.generation()
    }

    /// The active MemTable, and the immutable one when there is one.
    pub fn memtables(&self) -> (&MemTable<M>, Option<&MemTable<M>>) {
        (self.mems.active(), self.mems.immutable())
    }

    /// Sorts the immutable MemTable in place if it is not yet ([`MemTable::freeze`]; a rotation
    /// only seals it): before a host copies it for readers that scan it, so that the sort is
    /// done once and each copy is a memcpy.
    pub fn sort_immutable_memtable(&mut self) {
        self.mems.sort_immutable();
    }

    /// Starts a scan over the caller's `tables` (read through `storage`: a host's own view of
    /// an older table set) and two MemTables: this database's active one as of `point` (pinned
    /// by [`Db::pin_memtable`] in the active generation), through the scan order cache, then
    /// `older` (all of it). `keys`: at least [`scan::key_bytes`] of these sources.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_pinned<'a, T: Storage>(
        &'a mut self,
        storage: &'a mut T,
        tables: &'a mut [Table<T::File>],
        point: u32,
        older: &'a MemTable<M>,
        keys: &'a mut [u8],
        range: KeyRange<'a>,
        reverse: bool,
        now: u64,
    ) -> core::result::Result<Scan<'a, T, M>, Error<T::Error>> {
        let (mems, which) = self.mems.both();
        let sorted = self.order.as_mut().and_then(|o| o.update(which, mems[0]));
        let points = [point, crate::memtable::NEWEST];
        Scan::start(storage, tables, [mems[0], older], points, sorted, keys, range, reverse, now)
    }

    /// Gives the database a buffer in which scans keep the active MemTable's keys in order: 4
    /// bytes per key, so [`Stats::memtable_key_capacity`] × 4 bytes for every scan to use it.
    /// Without it, a scan visits the active MemTable by choosing the next key among all of its
    /// keys at every step (O(n) per step); with it, through their order, sorted once
    /// (O(n log n)) and then brought up to date with what later writes added (O(k log n) for
    /// k new entries, up to 64; more, or a rotation, sorts again). Returns the buffer it
    /// replaces.
    pub fn set_scan_order_buffer(&mut self, buf: M) -> Option<M> {
        self.order.replace(OrderCache::new(buf)).map(OrderCache::into_buffer)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let (active, other) = (self.mems.active(), self.mems.other());
        Stats {
            memtable_keys: active.len(),
            memtable_key_capacity: active.key_capacity(),
            memtable_bytes: active.arena_used(),
            memtable_capacity_bytes: active.arena_capacity(),
            immutable_keys: other.len(),
            tables: self.version.len(),
            table_bytes: self.version.bytes(),
            wal_bytes: self.wals.record_bytes(),
            flushes: self.counters.flushes,
            torn_tails_truncated: self.counters.torn_tails_truncated,
            wals_dropped: self.counters.wals_dropped,
            spare_wals_taken: self.counters.spare_wals_taken,
            spare_wal_ready: self.wals.spare().is_some(),
            table_probes: self.counters.reads.table_probes,
            filter_skips: self.counters.reads.filter_skips,
            gets: self.counters.gets,
            compactions: self.counters.compactions,
            file_bytes: self.used_bytes(),
            max_bytes: self.space.max_bytes(),
            evicted_tables: self.space.evicted().tables,
            evicted_entries: self.space.evicted().entries,
            evicted_bytes: self.space.evicted().bytes,
            expired_tables: self.counters.expired_tables,
            expired_bytes: self.counters.expired_bytes,
            full_refusals: self.space.refused(),
            compactions_skipped_for_space: self.counters.compactions_skipped_for_space,
            compactions_running: self.running.len(),
            compaction_overruns: self.counters.compaction_overruns,
        }
    }

    /// The SSTables, oldest first.
    pub fn tables(&self) -> impl Iterator<Item = TableInfo> + '_ {
        self.version.infos()
    }

    /// True once a failed write or sync has made the database refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Makes the database refuse writes from now on ([`Error::Poisoned`]), as a failed write
    /// does; reads go on. For a caller that can no longer vouch for the state it keeps around
    /// the database: a panic while it held the database's lock, which may have stopped a
    /// change halfway.
    ///
    /// [`Db::sync`] still syncs the WAL, so that closing loses nothing logged. No effect on a
    /// read-only database, which refuses writes anyway ([`Error::ReadOnly`]).
    pub fn refuse_writes(&mut self) {
        if self.poisoned || self.is_read_only() {
            return;
        }
        warn_event!("the database's state may be damaged; writes refused until reopen");
        self.poisoned = true;
        self.refused_by_host = true;
    }

    /// (Hidden: for the POSIX crate's write groups.)
    /// Takes back the count of the latest write refused with [`Error::Full`], for a caller that
    /// tries the refused write again as smaller ones (a group of writes split up, each of which
    /// counts its own refusal): [`Stats::full_refusals`] counts each write the caller was
    /// refused once.
    #[doc(hidden)]
    pub fn forgive_refusal(&mut self) {
        self.space.forgive_refusal();
    }

    /// True when the database was opened read-only ([`Config::read_only`]).
    pub fn is_read_only(&self) -> bool {
        !self.wals.has_current()
    }

    /// Syncs outstanding writes and gives the storage back, with the outcome of that sync
    /// (the storage is returned even when the sync failed, so its contents can still be reached).
    pub fn close(mut self) -> (S, Result<(), S>) {
        self.abandon_stepped();
        self.discard_spare_wal();
        let synced = if self.is_read_only() { Ok(()) } else { self.sync() };
        (self.storage, synced)
    }

    /// The storage, for inspection.
    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }
}

/// Refuses an empty key and one longer than [`MAX_KEY_LEN`].
fn check_key<E>(key: &[u8]) -> core::result::Result<(), Error<E>> {
    if key.is_empty() {
        Err(Error::EmptyKey)
    } else if key.len() > MAX_KEY_LEN {
        Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY_LEN })
    } else {
        Ok(())
    }
}

/// The tables' part of a get at time `now`: looks `key` up in `tables` (oldest first, as
/// [`Db::live_tables`] gives them) from the newest down; the newest entry found answers, a
/// table's range delete covering the key counts as a delete, and the expiry rule applies. A
/// found value is copied into `buf` ([`Error::BufferTooSmall`] says how much room it needs);
/// an empty or too long key is refused, as by [`Db::get`]. The one table lookup of the engine:
/// [`Db::get_with_expiry`] runs it over the engine's own tables and storage, a host over
/// handles of its own of the same files (each a [`ProbeTable`], which may hold its filter and
/// fences in memory: [`crate::sstable::ResidentIndex`]).
pub fn get_from_tables<'b, S: Storage, T: IntoIterator>(
    storage: &mut S,
    tables: T,
    key: &[u8],
    buf: &'b mut [u8],
    now: u64,
    counters: &mut ReadCounters,
) -> Result<Option<ValueWithExpiry<'b>>, S>
where
    T::IntoIter: DoubleEndedIterator,
    T::Item: ProbeTable<S>,
{
    check_key(key)?;
    match crate::version::lookup(storage, tables.into_iter(), key, buf, counters)? {
        Lookup::Found { value_len, tombstone, expires_at } if !is_dead(tombstone, expires_at, now) => {
            match buf.get(..value_len) {
                Some(v) => Ok(Some((v, expires_at))),
                None => Err(Error::BufferTooSmall { needed: value_len }),
            }
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
