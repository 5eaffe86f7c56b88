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
//!                                           meanwhile a rotation is Error::FlushPending
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
use crate::compaction::{self, Compacted, Input, Plan};
use crate::entry::{self, is_dead, EntryHeader};
use crate::error::Error;
use crate::flush::{self, FlushPlan, Flushed};
use crate::limits::{
    MAX_BATCH_LEN, MAX_KEY_LEN, MAX_MEMTABLE_RANGES, MAX_MERGE, MAX_RUNNING, MAX_TABLES, MAX_VALUE_LEN,
};
use crate::log::{event, warn_event};
use crate::memtable::{MemLookup, MemTable};
use crate::memtables::MemTables;
use crate::options::{Clock, CompactionMode, Config};
use crate::scan::{self, KeyRange, OrderCache, Scan};
use crate::space::Space;
use crate::sstable::{Lookup, ProbeTable, ReadCounters, Table, TableInfo};
use crate::stats::Stats;
use crate::storage::Storage;
use crate::version::{TableState, Version};
use crate::wal::{SyncTarget, Wals};

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
    pub(crate) torn_tails_truncated: u64,
    pub(crate) wals_dropped: u64,
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
}

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Runs `change`, which changes files; if it fails, the database refuses writes from then on,
    /// unless it failed for want of space ([`Error::Full`], which leaves nothing behind): then,
    /// with [`crate::WhenFull::DropOldest`], the oldest table is evicted and `change` runs again,
    /// as long as there is a table to evict.
    pub(crate) fn mutate<T>(&mut self, mut change: impl FnMut(&mut Self) -> Result<T, S>) -> Result<T, S> {
        self.check_writable()?;
        loop {
            let result = change(self);
            match result {
                Err(Error::Full) if self.space.evicts() => match self.evict_oldest() {
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
        Err(error)
    }

    /// Bytes the database's files take now: what counts against [`Config::max_bytes`].
    fn used_bytes(&self) -> u64 {
        Space::used(self.version.bytes(), self.wals.file_bytes())
    }

    /// With [`crate::WhenFull::RefuseWrites`], refuses a write that adds data once the files
    /// and what one write can add ([`Space::write_reserve`]) exceed the cap.
    fn check_room(&mut self) -> Result<(), S> {
        let reserve = Space::write_reserve(self.mems.buffer_len(), self.wals.chunk());
        if self.space.refuses(self.used_bytes(), reserve) {
            self.space.count_refusal();
            return Err(Error::Full);
        }
        Ok(())
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
    /// the cap.
    pub(crate) fn enforce_cap(&mut self) -> Result<(), S> {
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
    pub fn sync(&mut self) -> Result<(), S> {
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

    /// Freezes the active MemTable and starts a new WAL, flushing the older immutable MemTable
    /// first (inline, unless a flush apart from the database runs: then
    /// [`Error::FlushPending`], before anything changed).
    fn rotate(&mut self) -> Result<(), S> {
        if self.flushing.is_some() {
            return Err(Error::FlushPending);
        }
        self.flush_immutable()?;
        let id = self.version.new_id();
        let old = self.wals.rotate(&mut self.storage, id)?;
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
        self.maybe_compact()?;
        self.enforce_cap()
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

    /// Where `plan`'s inputs start among the live tables, if they are still there as planned: a
    /// run of `plan.count` tables from `plan.first` to `plan.id`. Checked arithmetic: a Plan's
    /// fields are public, and a forged count must not overflow.
    pub(crate) fn run_start(&self, plan: &Plan) -> Option<usize> {
        self.version.position(plan.first).filter(|&i| {
            i.checked_add(plan.count.saturating_sub(1))
                .and_then(|last| self.version.tables().get(last))
                .is_some_and(|t| t.id() == plan.id)
        })
    }

    /// True when the table count forces a compaction ([`compaction::plan`] then merges the
    /// newest tables whatever their tiers): the next flush would pass [`MAX_TABLES`], or the
    /// storage's [`compaction::table_limit`] is reached.
    pub(crate) fn compaction_forced(&self) -> bool {
        let len = self.version.len();
        len + 1 >= MAX_TABLES || len >= compaction::table_limit(&self.storage)
    }

    /// The index of the first table newer than every running compaction's inputs: the tables a
    /// new compaction may take.
    fn free_from(&self) -> usize {
        match self.running.iter().map(|r| r.id).max() {
            None => 0,
            Some(newest) => {
                self.version.tables().iter().position(|t| t.id() > newest).unwrap_or(self.version.len())
            }
        }
    }

    /// Decides the next compaction to run apart from the database
    /// ([`CompactionMode::External`]): the tiered policy over the tables newer than every
    /// compaction already running, for a merge with `scratch_len` bytes of scratch memory
    /// (`force`: merge the newest tables even when the policy would wait). The plan's tables are
    /// marked as running: no other plan takes them until [`Db::install_compaction`],
    /// [`Db::fail_compaction`] or [`Db::abandon_compaction`] is called with it. They stay live
    /// and readable meanwhile. `None` when nothing is due, the database is read-only or
    /// poisoned, or [`crate::limits::MAX_RUNNING`] compactions are running.
    ///
    /// Run it with [`Db::compaction_inputs`] and [`compaction::execute`] (or
    /// [`compaction::Execution`]) on a storage handle of its own, then install the output.
    pub fn plan_compaction(&mut self, scratch_len: usize, force: bool) -> Option<Plan> {
        if self.poisoned || self.is_read_only() || self.running.is_full() {
            return None;
        }
        let now = self.clock.now();
        let limit = self.space.merge_limit();
        let limits = (limit, compaction::table_limit(&self.storage));
        let plan = compaction::plan(&self.version, self.free_from(), scratch_len, now, limits, force)?;
        self.running.push(Running { first: plan.first, id: plan.id, cancelled: false }).ok()?;
        Some(plan)
    }

    /// The input tables of `plan` (their ids, footers and sizes), for [`compaction::Execution`].
    pub fn compaction_inputs(&self, plan: &Plan) -> heapless::Vec<Input, MAX_MERGE> {
        let mut inputs = heapless::Vec::new();
        let start = self.version.position(plan.first).unwrap_or(usize::MAX);
        for t in self.version.tables().iter().skip(start).take(plan.count) {
            let _ = inputs.push(Input { id: t.id(), footer: *t.footer(), bytes: t.bytes() });
        }
        inputs
    }

    /// Compactions planned and not yet installed, failed or abandoned.
    pub fn compactions_running(&self) -> usize {
        self.running.len()
    }

    /// The running mark of `plan`, removed.
    fn take_running(&mut self, plan: &Plan) -> Option<Running> {
        let i = self.running.iter().position(|r| r.first == plan.first && r.id == plan.id)?;
        Some(self.running.swap_remove(i))
    }

    /// Makes a finished compaction's output live in place of its inputs (`<id>.tmp` synced,
    /// renamed over `<id>.sst`, directory synced, older inputs removed; the first three already
    /// done when `done.state` says so), wherever its run now is among the tables. `Ok(false)`
    /// when the output was discarded instead (its `.tmp` removed; an output already published
    /// stays, see below):
    /// an eviction took one of its inputs ([`crate::WhenFull::DropOldest`]), or the database
    /// was poisoned meanwhile. A failure poisons the database, as any failed change does.
    pub fn install_compaction(&mut self, done: Compacted<S::File>) -> Result<bool, S> {
        let Compacted { plan, file, footer, state } = done;
        let running = self.take_running(&plan);
        let start = self.run_start(&plan);
        match (running, start) {
            (Some(r), Some(start)) if !r.cancelled && !self.poisoned && plan.count >= 2 => {
                match self.version.replace_run(&mut self.storage, start, plan.count, file, footer, state) {
                    Ok(()) => {
                        self.counters.compactions += 1;
                        self.enforce_cap().or_else(|e| self.poison(e))?;
                        Ok(true)
                    }
                    Err(e) => self.poison(e),
                }
            }
            _ => {
                // A published output is live on disk already: it stays, and the set in memory
                // keeps its inputs. It holds exactly their entries only when no eviction
                // cancelled the plan: a host publishes outputs itself only where nothing evicts
                // (POSIX: no `max_bytes`, no `WhenFull::DropOldest`).
                self.discard_output(file, state, &plan.temp_name());
                Ok(false)
            }
        }
    }

    /// Closes an output that will not be installed and removes its `temp` file unless it was
    /// published already (open removes the `.tmp` if this removal fails).
    fn discard_output(&mut self, file: S::File, state: TableState, temp: &crate::names::FileName) {
        drop(file);
        if state != TableState::Published {
            let _ = self.storage.remove(temp);
        }
    }

    /// Reports that running `plan` failed with `error` (its output removed, or left for open to
    /// remove): the database is poisoned, as by a failed write, and `error` returned; out of
    /// space ([`Error::Full`]) only counts the compaction as skipped, and a plan an eviction
    /// cancelled is simply forgotten.
    pub fn fail_compaction(&mut self, plan: &Plan, error: Error<S::Error>) -> Result<(), S> {
        match self.take_running(plan) {
            Some(r) if !r.cancelled => match error {
                Error::Full => {
                    warn_event!("compaction skipped: the storage is full");
                    self.counters.compactions_skipped_for_space += 1;
                    Ok(())
                }
                e => self.poison(e),
            },
            _ => Ok(()),
        }
    }

    /// Forgets `plan`, which was given up (at close, say); its `.tmp`, if any, is removed by
    /// whoever ran it or by the next open.
    pub fn abandon_compaction(&mut self, plan: &Plan) {
        self.take_running(plan);
    }

    /// Decides the flush of the immutable MemTable, to run apart from the database (on POSIX,
    /// the flush thread): the new table's id, the WALs it covers, whether dead entries may be
    /// left out. Until [`Db::install_flush`], [`Db::fail_flush`] or [`Db::abandon_flush`] is
    /// called with it, the immutable MemTable stays and answers reads, and a write that must
    /// rotate gets [`Error::FlushPending`] (refused before its WAL record: nothing stored, not
    /// poisoning). `None` when there is no immutable MemTable, a flush runs already, the
    /// database is read-only or poisoned, or the table set is full (the next rotation then
    /// flushes inline, as without this call).
    ///
    /// Run it with [`Db::copy_immutable`] and [`flush::write_temp`] on a storage handle of its
    /// own.
    pub fn plan_flush(&mut self) -> Option<FlushPlan> {
        if self.poisoned || self.is_read_only() || self.flushing.is_some() || self.version.is_full() {
            return None;
        }
        let covered = self.mems.immutable_wal()?;
        let drop_dead_at = self.version.is_empty().then(|| self.clock.now());
        let plan = FlushPlan { id: self.version.new_id(), covered, drop_dead_at };
        self.flushing = Some(plan);
        Some(plan)
    }

    /// The flush planned by [`Db::plan_flush`] and not yet installed, failed or abandoned.
    pub fn flush_running(&self) -> Option<FlushPlan> {
        self.flushing
    }

    /// A copy of the immutable MemTable in `buf` (as long as a MemTable buffer), for a flush run
    /// apart from the database: the copy is the flusher's, which builds the table's filter in
    /// it, while the database's own keeps answering reads. `Err(buf)` when there is no
    /// immutable MemTable or `buf`'s length is not a MemTable buffer's.
    pub fn copy_immutable<N: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        buf: N,
    ) -> core::result::Result<MemTable<N>, N> {
        if self.mems.immutable_wal().is_none() {
            return Err(buf);
        }
        self.mems.other().frozen_copy(buf)
    }

    /// Makes a flush's output live (`<id>.tmp` synced, renamed to `<id>.sst`, directory synced,
    /// whichever of these [`Flushed::state`] says the runner has not done:
    /// [`crate::version::Version::add`]), then retires the WALs it covers and the immutable
    /// MemTable, compacts when the table limit forces it, and applies the cap: what the inline
    /// flush does after writing. A flush whose plan is not the running one, or whose database
    /// was poisoned meanwhile, is discarded (its `.tmp` removed; the WAL still holds its
    /// entries). A failure poisons the database, as any failed change does.
    pub fn install_flush(&mut self, done: Flushed<S::File>) -> Result<(), S> {
        let Flushed { plan, table, state } = done;
        if self.flushing != Some(plan) || self.poisoned {
            if self.flushing == Some(plan) {
                self.flushing = None;
            }
            if let Some((file, _)) = table {
                // A published table stays: it is live on disk already, and holds what the WALs
                // it covers hold (`flush`, *Crash safety*).
                self.discard_output(file, state, &plan.temp_name());
            }
            return Ok(());
        }
        self.flushing = None;
        let installed = self.finish_flush(plan, table, state);
        installed.or_else(|e| self.poison(e))
    }

    fn finish_flush(
        &mut self,
        plan: FlushPlan,
        table: Option<(S::File, crate::sstable::Footer)>,
        state: TableState,
    ) -> Result<(), S> {
        let in_table = table.is_some();
        if let Some((file, footer)) = table {
            self.version.add(&mut self.storage, plan.id, file, footer, state)?;
        }
        self.counters.flushes += 1;
        event!("flush: MemTable written as an SSTable, WALs up to {=u64} retired", plan.covered);
        self.wals.retire(&mut self.storage, plan.covered, in_table)?;
        self.mems.retire_immutable();
        self.maybe_compact()?;
        self.enforce_cap()
    }

    /// Reports that running `plan` failed with `error` (its `.tmp` removed, or left for open
    /// to remove): the database is poisoned, as by a failed write, and `error` returned. Out of
    /// space ([`Error::Full`]) does not poison: with [`crate::WhenFull::DropOldest`] the oldest
    /// table is evicted and `Ok` returned, otherwise the refusal is counted and `Full`
    /// returned; either way the immutable MemTable stays, to be planned again. A plan that is
    /// not the running one is ignored.
    pub fn fail_flush(&mut self, plan: &FlushPlan, error: Error<S::Error>) -> Result<(), S> {
        if self.flushing != Some(*plan) {
            return Ok(());
        }
        self.flushing = None;
        match error {
            Error::Full => {
                warn_event!("flush failed for want of space; its MemTable stays");
                if self.space.evicts() {
                    match self.evict_oldest() {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(e) => return self.poison(e),
                    }
                }
                self.space.count_refusal();
                Err(Error::Full)
            }
            e => self.poison(e),
        }
    }

    /// Forgets `plan`, which was given up: the immutable MemTable stays (its entries are in the
    /// WAL), to be planned again; its `.tmp`, if any, is removed by whoever ran it or by the
    /// next open.
    pub fn abandon_flush(&mut self, plan: &FlushPlan) {
        if self.flushing == Some(*plan) {
            self.flushing = None;
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
    /// scan takes and how to resume one after writing, and [`Db::set_scan_order_buffer`].
    pub fn scan<'a>(
        &'a mut self,
        range: KeyRange<'a>,
        reverse: bool,
        keys: &'a mut [u8],
    ) -> Result<Scan<'a, S, M>, S> {
        let now = self.clock.now();
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
            table_probes: self.counters.reads.table_probes,
            filter_skips: self.counters.reads.filter_skips,
            gets: self.counters.gets,
            compactions: self.counters.compactions,
            file_bytes: self.used_bytes(),
            max_bytes: self.space.max_bytes(),
            evicted_tables: self.space.evicted().tables,
            evicted_entries: self.space.evicted().entries,
            evicted_bytes: self.space.evicted().bytes,
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

    /// True when the database was opened read-only ([`Config::read_only`]).
    pub fn is_read_only(&self) -> bool {
        !self.wals.has_current()
    }

    /// Syncs outstanding writes and gives the storage back, with the outcome of that sync
    /// (the storage is returned even when the sync failed, so its contents can still be reached).
    pub fn close(mut self) -> (S, Result<(), S>) {
        self.abandon_stepped();
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
mod tests {
    use super::*;
    use crate::batch::WriteBatch;
    use crate::io::read_exact_at;
    use crate::mem_storage::{MemError, MemStorage};
    use crate::names::{file_name, FileKind};
    use crate::record::HEADER_LEN;
    use crate::wal::WATERMARK_LEN;
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::vec::Vec;

    type Mem = MemStorage<Vec<u8>, 64>;
    type TestDb = Db<Mem, Box<dyn FnMut() -> u64>, Vec<u8>>;

    fn clock(t: &Rc<Cell<u64>>) -> Box<dyn FnMut() -> u64> {
        let t = t.clone();
        Box::new(move || t.get())
    }

    fn open(storage: Mem, t: &Rc<Cell<u64>>, mem: usize) -> TestDb {
        Db::open(storage, clock(t), [vec![0; mem], vec![0; mem]], Config::default()).unwrap()
    }

    fn get(db: &mut TestDb, key: &[u8]) -> Option<Vec<u8>> {
        let mut buf = [0u8; 512];
        db.get(key, &mut buf).unwrap().map(<[u8]>::to_vec)
    }

    fn files(db: &mut TestDb, ext: &str) -> usize {
        let mut n = 0;
        db.storage().list(&mut |name| n += usize::from(name.ends_with(ext))).unwrap();
        n
    }

    #[test]
    fn writes_survive_close_and_reopen_from_wal_and_tables() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        for i in 0..300u32 {
            db.put(&i.to_be_bytes(), &[i as u8; 20]).unwrap();
        }
        assert!(db.stats().tables > 0, "small MemTables must have been flushed");
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 2048);
        for i in 0..300u32 {
            assert_eq!(get(&mut db, &i.to_be_bytes()), Some(vec![i as u8; 20]), "key {i}");
        }
    }

    #[test]
    fn tombstone_in_memtable_and_in_table_hides_older_table_value() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"k", b"old").unwrap();
        db.flush().unwrap();
        db.delete(b"k").unwrap();
        assert_eq!(get(&mut db, b"k"), None);
        db.flush().unwrap();
        assert_eq!(db.stats().tables, 2);
        assert_eq!(get(&mut db, b"k"), None);
    }

    #[test]
    fn expired_entries_read_as_absent_everywhere() {
        let t = Rc::new(Cell::new(100));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"k", b"forever").unwrap();
        db.flush().unwrap();
        db.put_expiring(b"k", b"brief", 200).unwrap();
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
        db.flush().unwrap();
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
        t.set(200);
        assert_eq!(get(&mut db, b"k"), None, "expired entry hides the older value");
        assert_eq!(db.put_expiring(b"x", b"v", 200), Err(Error::InvalidTtl));
    }

    #[test]
    fn a_ttl_counts_from_the_engines_own_clock_reading_however_late_the_write_arrives() {
        let t = Rc::new(Cell::new(100));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        // A caller read the clock at 100 and reached the engine at 500: an absolute expiry from
        // its reading is refused, a TTL is counted from the engine's reading.
        t.set(500);
        assert_eq!(db.put_expiring(b"late", b"v", 101), Err(Error::InvalidTtl));
        db.put_with_ttl(b"late", b"v", 1).unwrap();
        db.put_with_ttl(b"zero", b"v", 0).unwrap();
        db.put_with_ttl(b"long", b"v", 50).unwrap();
        db.put_with_ttl(b"max", b"v", u64::MAX).unwrap();
        for k in [&b"late"[..], b"zero", b"long", b"max"] {
            assert_eq!(get(&mut db, k).as_deref(), Some(&b"v"[..]), "{k:?}");
        }
        t.set(501);
        assert_eq!(get(&mut db, b"late"), None);
        assert_eq!(get(&mut db, b"zero"), None, "a TTL of 0 is 1");
        assert_eq!(get(&mut db, b"long").as_deref(), Some(&b"v"[..]));
        t.set(550);
        assert_eq!(get(&mut db, b"long"), None);
        assert_eq!(get(&mut db, b"max").as_deref(), Some(&b"v"[..]), "saturates, never wraps");
    }

    #[test]
    fn flush_retires_wals_and_rotation_keeps_at_most_two() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 1024);
        for i in 0..200u32 {
            db.put(&i.to_le_bytes(), b"0123456789").unwrap();
            assert!(files(&mut db, ".wal") <= 2);
        }
        db.flush().unwrap();
        assert_eq!(files(&mut db, ".wal"), 1);
        assert_eq!(db.stats().wal_bytes, 0);
    }

    #[test]
    fn filters_rule_out_tables_without_a_search_and_never_hide_a_key() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        for i in 0..3000u32 {
            db.put(format!("present{i}").as_bytes(), &i.to_le_bytes()).unwrap();
        }
        db.flush().unwrap();
        let s0 = db.stats();
        assert!(s0.tables >= 2 && s0.compactions > 0, "flushed and compacted tables: {s0:?}");
        for i in 0..3000u32 {
            assert_eq!(get(&mut db, format!("present{i}").as_bytes()), Some(i.to_le_bytes().to_vec()));
        }
        let s1 = db.stats();
        // Each present key is searched for in about one table, not in every table.
        let searches = s1.table_probes - s0.table_probes;
        assert!(searches < 3000 * 11 / 10, "{searches} searches for 3000 present keys, {} tables", s1.tables);
        for i in 0..3000u32 {
            assert_eq!(get(&mut db, format!("absent{i}").as_bytes()), None);
        }
        let s2 = db.stats();
        let (searched, skipped) = (s2.table_probes - s1.table_probes, s2.filter_skips - s1.filter_skips);
        let lookups = 3000 * s2.tables as u64;
        assert_eq!(searched + skipped, lookups);
        assert!(searched * 20 < lookups, "filters let {searched} of {lookups} lookups through");
    }

    #[test]
    fn compaction_keeps_latest_values_and_drops_dead_entries() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        let mut model = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..6000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % 700).into_bytes();
            if x.is_multiple_of(5) {
                db.delete(&key).unwrap();
                model.remove(&key);
            } else {
                let v = format!("v{step}").into_bytes();
                db.put(&key, &v).unwrap();
                model.insert(key, v);
            }
        }
        let s = db.stats();
        assert!(s.compactions > 0, "{s:?}");
        assert!(s.tables <= 20, "{s:?}");
        for i in 0..700 {
            let key = format!("k{i}").into_bytes();
            assert_eq!(get(&mut db, &key), model.get(&key).cloned(), "key {i}");
        }
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 8192);
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
    }

    #[test]
    fn open_removes_inputs_a_finished_compaction_replaced() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        db.put(b"gone", b"old").unwrap();
        db.flush().unwrap();
        // Keep a copy of the oldest table, as if the compaction had crashed before removing it.
        let oldest = db.tables().next().unwrap().id;
        let name = file_name(FileKind::Table, oldest);
        let copy = {
            let s = db.storage();
            let mut f = s.open(&name).unwrap();
            let len = s.len(&mut f).unwrap() as usize;
            let mut b = vec![0; len];
            read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
            b
        };
        db.delete(b"gone").unwrap();
        for i in 0..(compaction::TIER_WIDTH as u32 - 1) {
            db.put(&i.to_be_bytes(), b"x").unwrap();
            db.flush().unwrap();
        }
        assert!(db.stats().compactions > 0);
        assert_eq!(get(&mut db, b"gone"), None);
        let (mut storage, closed) = db.close();
        closed.unwrap();
        let mut f = storage.create(&name).unwrap();
        embedded_io::Write::write_all(&mut storage.io(&mut f), &copy).unwrap();
        let mut db = open(storage, &t, 8192);
        assert_eq!(get(&mut db, b"gone"), None, "a replaced table must not resurrect a deleted key");
        assert_eq!(files(&mut db, ".sst"), 1);
    }

    fn external(storage: Mem, t: &Rc<Cell<u64>>, mem: usize) -> TestDb {
        let config = Config { compaction: CompactionMode::External, ..Config::default() };
        Db::open(storage, clock(t), [vec![0; mem], vec![0; mem]], config).unwrap()
    }

    /// Puts keys `k{i}` for `i` in `range` with values tagged `tag`, then flushes.
    fn fill(
        db: &mut TestDb,
        model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        range: core::ops::Range<u32>,
        tag: &str,
    ) {
        for i in range {
            let (k, v) = (format!("k{:04}", i % 900).into_bytes(), format!("{tag}{i}").into_bytes());
            if i % 7 == 0 {
                db.delete(&k).unwrap();
                model.remove(&k);
            } else {
                db.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        db.flush().unwrap();
    }

    fn check(db: &mut TestDb, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
        for i in 0..900u32 {
            let k = format!("k{i:04}").into_bytes();
            assert_eq!(get(db, &k), model.get(&k).cloned(), "key {i}");
        }
    }

    #[test]
    fn an_external_compaction_installs_behind_tables_flushed_while_it_ran() {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
        let mut model = BTreeMap::new();
        for r in 0..4u32 {
            fill(&mut db, &mut model, r * 300..(r + 1) * 300, "a");
        }
        assert_eq!(db.stats().compactions, 0, "external mode compacts nothing by itself");
        let tables = db.stats().tables;
        let plan = db.plan_compaction(8192, false).expect("four similar tables are due");
        assert_eq!((plan.count, plan.drop_dead_at), (tables, Some(0)));
        assert_eq!(db.plan_compaction(8192, false), None, "no other run is due");
        let inputs = db.compaction_inputs(&plan);
        let mut scratch = vec![0u8; 8192];
        // The merge runs in steps, with flushes (newer tables) between them.
        let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
        let mut steps = 0;
        while !exec.step(db.storage(), &mut scratch, 50).unwrap() {
            steps += 1;
            if steps % 10 == 0 {
                fill(&mut db, &mut model, 2000 + steps * 10..2000 + steps * 10 + 40, "b");
            }
            check(&mut db, &model);
        }
        assert!(steps > 20, "{steps} steps");
        let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!("finished") };
        let before = db.stats().tables;
        let retired = db.storage().retired;
        assert!(db.install_compaction(done).unwrap());
        assert_eq!(db.stats().tables, before - plan.count + 1);
        assert_eq!(
            db.storage().retired - retired,
            plan.count as u64,
            "every input's file is handed to the storage to close, after its name is gone"
        );
        assert_eq!(db.stats().compactions, 1);
        check(&mut db, &model);
        assert_eq!(files(&mut db, ".tmp"), 0);
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = external(storage, &t, 16384);
        check(&mut db, &model);
        assert_eq!(db.stats().tables, before - plan.count + 1, "open removed nothing more");
    }

    #[test]
    fn a_merge_in_steps_writes_the_same_table_as_one_in_one_go() {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
        let mut model = BTreeMap::new();
        for r in 0..4u32 {
            fill(&mut db, &mut model, r * 250..(r + 1) * 250, "a");
            db.delete_range(b"k0100", b"k0120").unwrap();
        }
        let plan = db.plan_compaction(8192, false).unwrap();
        let inputs = db.compaction_inputs(&plan);
        let mut outputs = Vec::new();
        for budget in [u32::MAX, 1, 7] {
            let mut scratch = vec![0u8; 8192];
            let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
            while !exec.step(db.storage(), &mut scratch, budget).unwrap() {}
            let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!() };
            let mut f = done.file;
            let s = db.storage();
            let len = s.len(&mut f).unwrap() as usize;
            let mut b = vec![0; len];
            read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
            outputs.push((b, done.footer));
        }
        assert_eq!(outputs[0], outputs[1]);
        assert_eq!(outputs[0], outputs[2]);
        db.abandon_compaction(&plan);
    }

    #[test]
    fn a_compaction_filter_keeps_ten_bits_per_key_when_it_outgrows_the_scratch() {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 32 << 20]), &t, 1 << 18);
        for r in 0..8u32 {
            for i in r * 750..(r + 1) * 750 {
                db.put(format!("f{i:06}").as_bytes(), &i.to_le_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let plan = db.plan_compaction(1 << 16, false).unwrap();
        assert_eq!(plan.count, 8);
        let inputs = db.compaction_inputs(&plan);
        let want = crate::filter::blocks_for(6000);
        // Scratch for the whole filter at once, then for half of it (two windows), merged at once
        // and in small steps, fresh or holding what an earlier merge left: the same table every
        // time.
        let mut outputs = Vec::new();
        for (scratch_len, budget, fill) in
            [(1 << 16, u32::MAX, 0), (1 << 16, 1000, 0xFF), (4096, u32::MAX, 0), (4096, 7, 0xA5)]
        {
            assert_eq!(compaction::merge::filter_blocks(6000, scratch_len - 9 * 7), want);
            let mut scratch = vec![fill; scratch_len];
            let mut exec = compaction::Execution::start(db.storage(), plan, &inputs, &mut scratch).unwrap();
            while !exec.step(db.storage(), &mut scratch, budget).unwrap() {}
            let Ok(done) = exec.finish(db.storage()).unwrap() else { panic!() };
            assert_eq!(done.footer.filter_len as usize, want * crate::filter::BLOCK_LEN, "{scratch_len}");
            let mut f = done.file;
            let s = db.storage();
            let mut b = vec![0; s.len(&mut f).unwrap() as usize];
            read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
            outputs.push(b);
        }
        assert!(outputs.iter().all(|o| *o == outputs[0]));
        // Installed, the windowed table answers every key and rules out absent ones.
        let mut scratch = vec![0u8; 4096];
        let done = compaction::execute(db.storage(), plan, &inputs, &mut scratch).unwrap();
        assert!(db.install_compaction(done).unwrap());
        assert_eq!(db.stats().tables, 1);
        for i in 0..6000u32 {
            assert_eq!(get(&mut db, format!("f{i:06}").as_bytes()), Some(i.to_le_bytes().to_vec()));
        }
        let s0 = db.stats();
        for i in 0..6000u32 {
            assert_eq!(get(&mut db, format!("g{i:06}").as_bytes()), None);
        }
        let searched = db.stats().table_probes - s0.table_probes;
        assert!(searched < 6000 / 40, "the filter let {searched} of 6000 absent keys through");
    }

    #[test]
    fn tables_stay_within_a_storage_with_few_files() {
        // Seven files (the firmware's): three tables at most, the rest for WALs and a table being
        // written.
        type Small = MemStorage<Vec<u8>, 7>;
        assert_eq!(compaction::table_limit(&Small::new(vec![0; 7])), 3);
        let t = Rc::new(Cell::new(0));
        let mut db = Db::open(
            Small::new(vec![0; 7 << 14]),
            clock(&t),
            [vec![0; 2048], vec![0; 2048]],
            Config::default(),
        )
        .unwrap();
        let mut most = 0;
        for i in 0..3000u32 {
            db.put(format!("k{:04}", i % 400).as_bytes(), &i.to_le_bytes()).unwrap();
            most = most.max(db.stats().tables);
        }
        assert!(db.stats().compactions > 10, "{:?}", db.stats());
        assert!(most <= 3, "{most} tables");
        let mut buf = [0u8; 16];
        for i in 2600..3000u32 {
            assert_eq!(
                db.get(format!("k{:04}", i % 400).as_bytes(), &mut buf).unwrap(),
                Some(&i.to_le_bytes()[..])
            );
        }
    }

    /// Puts `k{i}` until a write rotates; returns the next `i`.
    fn put_until_rotation(db: &mut TestDb, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, mut i: u32) -> u32 {
        let rotations = db.stats().immutable_keys;
        loop {
            let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
            match db.put(&k, &v) {
                Ok(()) => {
                    model.insert(k, v);
                }
                Err(Error::FlushPending) => return i,
                Err(e) => panic!("{e:?}"),
            }
            i += 1;
            if db.stats().immutable_keys != rotations && db.stats().immutable_keys > 0 {
                return i;
            }
        }
    }

    #[test]
    fn a_flush_run_apart_is_refused_into_then_installed_and_reads_see_its_memtable_throughout() {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 4096);
        let mut model = BTreeMap::new();
        let mut i = put_until_rotation(&mut db, &mut model, 0);
        let plan = db.plan_flush().expect("an immutable MemTable to flush");
        assert_eq!(db.plan_flush(), None, "one flush at a time");
        let mut copy = db.copy_immutable(vec![0u8; 4096]).ok().unwrap();
        // Fill the active MemTable: the write that must rotate is refused, nothing logged, and
        // the database is not poisoned.
        let wal_before = loop {
            let wal = db.stats().wal_bytes;
            let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
            match db.put(&k, &v) {
                Ok(()) => {
                    model.insert(k, v);
                    i += 1;
                }
                Err(Error::FlushPending) => break wal,
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(db.stats().wal_bytes, wal_before, "a refused write logs nothing");
        assert!(!db.is_poisoned());
        assert_eq!(db.flush(), Err(Error::FlushPending));
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v), "read while the flush runs");
        }
        let table = flush::write_temp(db.storage(), &plan, &mut copy).unwrap();
        assert_eq!(files(&mut db, ".tmp"), 1);
        db.install_flush(Flushed { plan, table, state: flush::TableState::Written }).unwrap();
        assert_eq!((files(&mut db, ".tmp"), db.stats().tables, db.stats().immutable_keys), (0, 1, 0));
        // The refused write goes through now, rotating.
        let (k, v) = (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes());
        db.put(&k, &v).unwrap();
        model.insert(k, v);
        assert!(db.stats().immutable_keys > 0);
        // A failed flush poisons; reads go on.
        let plan = db.plan_flush().unwrap();
        let err = Error::Storage(MemError::Full);
        assert_eq!(db.fail_flush(&plan, err.clone()), Err(err));
        assert!(db.is_poisoned());
        assert_eq!(db.put(b"x", b"y"), Err(Error::Poisoned));
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
        // Reopened: every write is there (the table, then the WALs replayed).
        let (storage, _) = db.close();
        let mut db = external(storage, &t, 4096);
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
    }

    #[test]
    fn a_flushed_table_is_synced_once_whether_the_runner_synced_published_or_only_wrote_it() {
        use flush::TableState;
        for state in [TableState::Written, TableState::Synced, TableState::Published] {
            let t = Rc::new(Cell::new(0));
            let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 4096);
            let mut model = BTreeMap::new();
            put_until_rotation(&mut db, &mut model, 0);
            let plan = db.plan_flush().expect("an immutable MemTable to flush");
            let mut copy = db.copy_immutable(vec![0u8; 4096]).ok().unwrap();
            let (mut file, footer) = flush::write_temp(db.storage(), &plan, &mut copy).unwrap().unwrap();
            let before = db.storage().syncs;
            let file = match state {
                TableState::Written => file,
                TableState::Synced => {
                    flush::sync_temp(db.storage(), &mut file).unwrap();
                    file
                }
                TableState::Published => flush::publish(db.storage(), &plan, file).unwrap(),
            };
            db.install_flush(Flushed { plan, table: Some((file, footer)), state }).unwrap();
            assert_eq!(db.storage().syncs - before, 1, "{state:?}: syncs from the write to the install");
            assert_eq!((files(&mut db, ".tmp"), db.stats().tables), (0, 1), "{state:?}");
            // Durable: a power cut right after the install keeps the table and every write.
            let mut storage = core::mem::replace(db.storage(), Mem::new(Vec::new()));
            drop(db);
            storage.power_cut(7);
            let mut db = external(storage, &t, 4096);
            assert_eq!(db.stats().tables, 1, "{state:?}");
            for (k, v) in &model {
                assert_eq!(get(&mut db, k).as_ref(), Some(v), "{state:?}");
            }
        }
    }

    #[test]
    fn eviction_of_a_running_input_discards_the_output_and_a_failure_poisons() {
        let t = Rc::new(Cell::new(0));
        let mut db = external(Mem::new(vec![0; 8 << 20]), &t, 16384);
        let mut model = BTreeMap::new();
        for r in 0..4u32 {
            fill(&mut db, &mut model, r * 300..(r + 1) * 300, "a");
        }
        let plan = db.plan_compaction(8192, false).unwrap();
        let inputs = db.compaction_inputs(&plan);
        let mut scratch = vec![0u8; 8192];
        let done = compaction::execute(db.storage(), plan, &inputs, &mut scratch).unwrap();
        assert!(db.evict_oldest().unwrap());
        let tables = db.stats().tables;
        assert!(!db.install_compaction(done).unwrap(), "an input was evicted");
        assert_eq!(db.stats().tables, tables);
        assert_eq!(files(&mut db, ".tmp"), 0);
        assert!(!db.is_poisoned());
        // A failed compaction poisons the database like a failed write.
        let plan = db.plan_compaction(8192, true).unwrap();
        assert_eq!(db.compactions_running(), 1);
        let err = Error::Storage(MemError::Full);
        assert_eq!(db.fail_compaction(&plan, err.clone()), Err(err));
        assert_eq!(db.compactions_running(), 0);
        assert!(db.is_poisoned());
        assert_eq!(db.put(b"x", b"y"), Err(Error::Poisoned));
    }

    #[test]
    fn failed_sync_poisons_writes_but_not_reads() {
        struct FailingSync(Mem, bool);
        impl Storage for FailingSync {
            type Error = MemError;
            type File = crate::mem_storage::MemFile;
            type Io<'a> = crate::mem_storage::MemIo<'a>;
            fn create(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
                self.0.create(n)
            }
            fn open(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
                self.0.open(n)
            }
            fn io<'a>(&'a mut self, f: &'a mut Self::File) -> Self::Io<'a> {
                self.0.io(f)
            }
            fn len(&mut self, f: &mut Self::File) -> core::result::Result<u64, MemError> {
                self.0.len(f)
            }
            fn truncate(&mut self, f: &mut Self::File, l: u64) -> core::result::Result<(), MemError> {
                self.0.truncate(f, l)
            }
            fn sync(&mut self, f: &mut Self::File) -> core::result::Result<(), MemError> {
                if self.1 {
                    Err(MemError::Full)
                } else {
                    self.0.sync(f)
                }
            }
            fn rename(&mut self, a: &str, b: &str) -> core::result::Result<(), MemError> {
                self.0.rename(a, b)
            }
            fn remove(&mut self, n: &str) -> core::result::Result<(), MemError> {
                self.0.remove(n)
            }
            fn sync_dir(&mut self) -> core::result::Result<(), MemError> {
                self.0.sync_dir()
            }
            fn list(&mut self, v: &mut dyn FnMut(&str)) -> core::result::Result<(), MemError> {
                self.0.list(v)
            }
        }
        let mut db = Db::open(
            FailingSync(Mem::new(vec![0; 1 << 16]), false),
            || 0,
            [vec![0; 1024], vec![0; 1024]],
            Config::default(),
        )
        .unwrap();
        db.put(b"a", b"1").unwrap();
        db.storage().1 = true;
        assert_eq!(db.put(b"b", b"2"), Err(Error::Storage(MemError::Full)));
        db.storage().1 = false;
        assert_eq!(db.put(b"c", b"3"), Err(Error::Poisoned), "no retry into a false success");
        assert_eq!(db.sync(), Err(Error::Poisoned));
        let mut buf = [0u8; 8];
        assert_eq!(db.get(b"a", &mut buf).unwrap(), Some(&b"1"[..]));
    }

    #[test]
    fn rotation_adds_no_wal_sync_when_every_write_is_already_synced() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        let mut i = 0u32;
        loop {
            let before = db.storage().syncs;
            db.put(&i.to_be_bytes(), &[0; 30]).unwrap();
            i += 1;
            if db.stats().immutable_keys > 0 {
                // This write rotated (no immutable table to flush yet): its own sync and the new
                // WAL's header (synced when the WAL is created), none for the old WAL.
                assert_eq!(db.storage().syncs - before, 2);
                break;
            }
            assert_eq!(db.storage().syncs - before, 1);
        }
    }

    /// The current WAL's name and bytes.
    fn wal_bytes(db: &mut TestDb) -> (std::string::String, Vec<u8>) {
        let id = db.wal_sync_targets()[1].unwrap().wal;
        let name = file_name(FileKind::Wal, id);
        let s = db.storage();
        let mut f = s.open(&name).unwrap();
        let len = s.len(&mut f).unwrap() as usize;
        let mut b = vec![0; len];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        (name.as_str().into(), b)
    }

    #[test]
    fn a_sync_made_by_the_host_moves_the_watermark_and_a_failed_one_poisons() {
        let t = Rc::new(Cell::new(0));
        let config = Config::with_sync(crate::SyncPolicy::Manual);
        let mut db =
            Db::open(Mem::new(vec![0; 1 << 20]), clock(&t), [vec![0; 4096], vec![0; 4096]], config).unwrap();
        db.put(b"a", b"1").unwrap();
        db.put(b"b", b"2").unwrap();
        assert_eq!(db.wal_unsynced(), 2);
        let target = db.wal_sync_targets()[1].unwrap();
        // Appended while the host's sync runs: not covered by it.
        db.put(b"c", b"3").unwrap();
        let (name, _) = wal_bytes(&mut db);
        {
            let s = db.storage();
            let mut f = s.open(&name).unwrap();
            s.sync(&mut f).unwrap();
        }
        assert!(db.wal_synced(target, Ok(())).unwrap());
        assert_eq!(db.wal_unsynced(), 1, "the write appended after the target is still unsynced");
        let before = db.wal_sync_targets()[1].unwrap().end;
        db.put(b"d", b"4").unwrap();
        let (_, bytes) = wal_bytes(&mut db);
        let at = before as usize + HEADER_LEN;
        let watermark = u32::from_le_bytes(bytes[at..at + WATERMARK_LEN].try_into().unwrap());
        assert_eq!(u64::from(watermark), target.end, "the next record claims what the host synced");
        // A target of a WAL that is neither current nor waiting changes nothing.
        let stale = SyncTarget { wal: target.wal + 100, ..target };
        assert!(!db.wal_synced(stale, Ok(())).unwrap());
        assert_eq!(db.wal_unsynced(), 2);
        assert_eq!(db.wal_synced(target, Err(MemError::Full)), Err(Error::Storage(MemError::Full)));
        assert!(db.is_poisoned());
        assert_eq!(db.put(b"e", b"5"), Err(Error::Poisoned));
        assert_eq!(get(&mut db, b"d").as_deref(), Some(&b"4"[..]), "reads keep working");
    }

    #[test]
    fn a_host_sync_of_the_current_wal_counts_only_after_the_wal_it_was_rotated_from() {
        let t = Rc::new(Cell::new(0));
        let config = Config::with_sync(crate::SyncPolicy::Manual);
        let mut db =
            Db::open(Mem::new(vec![0; 1 << 20]), clock(&t), [vec![0; 2048], vec![0; 2048]], config).unwrap();
        let mut i = 0u32;
        while db.stats().immutable_keys == 0 {
            db.put(&i.to_be_bytes(), &[0; 30]).unwrap();
            i += 1;
        }
        let [Some(older), Some(current)] = db.wal_sync_targets() else { panic!("two targets") };
        assert!(older.wal < current.wal);
        let unsynced = db.wal_unsynced();
        assert!(unsynced > 1, "the rotated-from WAL's writes wait: {unsynced}");
        // Reported out of order: the current WAL's sync counts for nothing yet.
        assert!(!db.wal_synced(current, Ok(())).unwrap());
        assert_eq!(db.wal_unsynced(), unsynced);
        assert!(db.wal_synced(older, Ok(())).unwrap());
        assert_eq!(db.wal_sync_targets()[0], None, "the older WAL is durable");
        assert!(db.wal_synced(current, Ok(())).unwrap());
        assert_eq!(db.wal_unsynced(), 0);
    }

    #[test]
    fn write_batch_applies_all_entries_and_later_entries_win() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"gone", b"x").unwrap();
        let mut b = WriteBatch::new(vec![0u8; 1024]);
        b.put(b"a", b"1").unwrap();
        b.put(b"a", b"2").unwrap();
        b.delete(b"gone").unwrap();
        b.put(b"c", b"3").unwrap();
        db.write_batch(&b).unwrap();
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"gone"), None);
        // Replayed from the WAL after a reopen, then from an SSTable after a flush.
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 4096);
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"c").as_deref(), Some(&b"3"[..]));
        db.flush().unwrap();
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"gone"), None);
    }

    #[test]
    fn torn_batch_is_absent_as_a_whole() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"before", b"1").unwrap();
        let mut b = WriteBatch::new(vec![0u8; 1024]);
        for i in 0..10u8 {
            b.put(&[b'k', i], &[i; 20]).unwrap();
        }
        db.write_batch(&b).unwrap();
        let wal_len = db.stats().wal_bytes;
        let (mut storage, closed) = db.close();
        closed.unwrap();
        // Cut the WAL one byte short of the end of the batch record.
        let name = {
            let mut n = None;
            storage
                .list(&mut |f| {
                    if f.ends_with(".wal") {
                        n = Some(f.to_string())
                    }
                })
                .unwrap();
            n.unwrap()
        };
        let mut f = storage.open(&name).unwrap();
        let first = wal_len - (b.payload().len() + HEADER_LEN + WATERMARK_LEN) as u64;
        storage.truncate(&mut f, wal_len - 1).unwrap();
        let mut db = open(storage, &t, 4096);
        assert_eq!(db.stats().torn_tails_truncated, 1);
        assert_eq!(get(&mut db, b"before").as_deref(), Some(&b"1"[..]));
        for i in 0..10u8 {
            assert_eq!(get(&mut db, &[b'k', i]), None, "no part of a torn batch survives");
        }
        assert_eq!(db.stats().wal_bytes, first);
    }

    #[test]
    fn oversized_batch_is_refused_and_rotation_makes_room_for_the_rest() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        let mut big = WriteBatch::new(vec![0u8; 8192]);
        for i in 0..100u32 {
            big.put(&i.to_be_bytes(), &[0; 40]).unwrap();
        }
        assert!(matches!(db.write_batch(&big), Err(Error::BatchTooLarge { .. })));
        assert!(!db.is_poisoned());
        let mut model = BTreeMap::new();
        for round in 0..50u32 {
            let mut b = WriteBatch::new(vec![0u8; 512]);
            for j in 0..5u32 {
                let k = (round * 3 + j).to_be_bytes();
                b.put(&k, &round.to_le_bytes()).unwrap();
                model.insert(k.to_vec(), round.to_le_bytes().to_vec());
            }
            db.write_batch(&b).unwrap();
        }
        assert!(db.stats().flushes > 0);
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
    }

    #[test]
    fn limits_are_enforced_with_errors() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        assert_eq!(db.put(b"", b"v"), Err(Error::EmptyKey));
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        assert_eq!(db.put(&long, b"v"), Err(Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN }));
        assert!(matches!(db.put(b"k", &[0; 4096]), Err(Error::ValueTooLarge { len: 4096, .. })));
        db.put(b"k", &[7; 300]).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(db.get(b"k", &mut small), Err(Error::BufferTooSmall { needed: 300 }));
        assert!(matches!(
            Db::open(Mem::new(vec![0; 4096]), || 0, [vec![0; 100], vec![0; 100]], Config::default()),
            Err(Error::InsufficientMemory { .. })
        ));
    }
}
