//! The work the database hands out to be run apart from it, and takes back: compactions
//! ([`crate::CompactionMode::External`]: a plan, its inputs, then the output installed, failed or
//! abandoned) and the flush of the immutable MemTable ([`Db::plan_flush`] to
//! [`Db::install_flush`]). On POSIX, the background worker threads and the flush thread run them
//! on storage handles of their own; this side marks what runs, so that no two plans take the
//! same tables, and makes each result live (or not) under the same rules as the inline paths.

use super::{Db, Result, Running};
use crate::compaction::{self, Compacted, Input, Plan};
use crate::error::Error;
use crate::flush::{FlushPlan, Flushed};
use crate::limits::{MAX_MERGE, MAX_TABLES};
use crate::log::{event, warn_event};
use crate::memtable::MemTable;
use crate::names::{file_name, FileKind};
use crate::options::Clock;
use crate::storage::Storage;
use crate::version::TableState;
use crate::wal::Spare;

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
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
    pub(super) fn free_from(&self) -> usize {
        match self.running.iter().map(|r| r.id).max() {
            None => 0,
            Some(newest) => {
                self.version.tables().iter().position(|t| t.id() > newest).unwrap_or(self.version.len())
            }
        }
    }

    /// Decides the next compaction to run apart from the database
    /// ([`crate::CompactionMode::External`]): the tiered policy over the tables newer than every
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
    /// Run it with [`Db::copy_immutable`] and [`crate::flush::write_temp`] on a storage handle of its
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
    /// apart from the database: a memcpy, unsorted as the rotation left it
    /// ([`MemTable::sealed_copy`]); the copy is the flusher's, which [`crate::flush::write_temp`]
    /// sorts and builds the table's filter in, while the database's own keeps answering reads.
    /// `Err(buf)` when there is no immutable MemTable or `buf`'s length is not a MemTable
    /// buffer's.
    pub fn copy_immutable<N: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        buf: N,
    ) -> core::result::Result<MemTable<N>, N> {
        if self.mems.immutable_wal().is_none() {
            return Err(buf);
        }
        self.mems.other().sealed_copy(buf)
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
        self.after_flush()
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

    /// Decides a spare WAL for the next rotation ([`crate::wal::spare`]): its id, and the
    /// current WAL it will follow. Run [`crate::wal::spare::prepare`] with it on a storage
    /// handle of its own, then hand it back with [`Db::install_spare_wal`] (or
    /// [`Db::fail_spare_wal`]). `None` when a spare is kept or planned already, the database is
    /// read-only or poisoned, or under [`crate::Config::max_bytes`] (a file must not be in the
    /// directory before the cap counts it).
    pub fn plan_spare_wal(&mut self) -> Option<Spare> {
        if self.poisoned || self.space.max_bytes().is_some() || self.spare_planned.is_some() {
            return None;
        }
        if self.wals.spare().is_some() {
            return None;
        }
        let predecessor = self.wals.current_ref()?.id();
        let spare = Spare { id: self.version.new_id(), predecessor, chunk: self.wals.chunk() };
        self.spare_planned = Some(spare);
        Some(spare)
    }

    /// Takes back the spare [`Db::plan_spare_wal`] planned, prepared: kept for the next rotation
    /// (`true`) when it still names the current WAL, else removed (`false`: a rotation
    /// went on without it meanwhile). A spare that is not the planned one is removed too. A
    /// failed removal is left to the next open, which sets such a file aside (no error: the
    /// file holds nothing).
    pub fn install_spare_wal(&mut self, spare: Spare) -> bool {
        let planned = self.spare_planned == Some(spare);
        if planned {
            self.spare_planned = None;
        }
        if planned && !self.poisoned && self.wals.set_spare(spare) {
            return true;
        }
        // Never named by a WAL: open sets it aside should the removal fail or not last.
        if self.storage.remove_obsolete(&file_name(FileKind::Wal, spare.id)).is_err() {
            warn_event!("a spare WAL no rotation can take was not removed; the next open removes it");
        }
        false
    }

    /// Reports that preparing `spare` failed with `error` (its file removed, or left for open
    /// to set aside). Out of space ([`Error::Full`]) is only counted in the log: the next
    /// rotation creates its WAL itself. Any other error poisons the database, as a failed
    /// sync does wherever it happens, and is returned.
    pub fn fail_spare_wal(&mut self, spare: &Spare, error: Error<S::Error>) -> Result<(), S> {
        if self.spare_planned == Some(*spare) {
            self.spare_planned = None;
        }
        match error {
            Error::Full => {
                warn_event!("no spare WAL: the storage is full");
                Ok(())
            }
            e => self.poison(e),
        }
    }

    /// Forgets the spare [`Db::plan_spare_wal`] planned, which was given up (its runner died, or
    /// the host closes); its file, if made, is set aside by the next open.
    pub fn abandon_spare_wal(&mut self, spare: &Spare) {
        if self.spare_planned == Some(*spare) {
            self.spare_planned = None;
        }
    }

    /// Prepares a spare WAL for the next rotation here and now ([`Db::plan_spare_wal`],
    /// [`crate::wal::spare::prepare`], [`Db::install_spare_wal`] in one call): for a host without
    /// threads, in its idle time, so that the rotation a later write makes syncs nothing.
    /// `Ok(false)` when none was made (one is kept already, the storage is full, or under
    /// [`crate::Config::max_bytes`]). A failed sync poisons the database.
    pub fn prepare_spare_wal(&mut self) -> Result<bool, S> {
        self.check_writable()?;
        let Some(spare) = self.plan_spare_wal() else { return Ok(false) };
        match crate::wal::spare::prepare(&mut self.storage, &spare) {
            Ok(()) => Ok(self.install_spare_wal(spare)),
            Err(e) => self.fail_spare_wal(&spare, e).map(|()| false),
        }
    }

    /// Removes the spare WAL kept for the next rotation, if any (at close: the next open would
    /// set it aside anyway). A failed removal is left to that open.
    pub fn discard_spare_wal(&mut self) {
        if let Some(spare) = self.wals.take_spare() {
            let _ = self.storage.remove(&file_name(FileKind::Wal, spare.id));
        }
    }
}
