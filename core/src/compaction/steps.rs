//! Compaction in bounded steps, for a device without threads (a microcontroller), in two forms:
//! - [`crate::CompactionMode::Stepped`]: the database runs the steps itself, one in each write
//!   (scratch from [`crate::Db::set_compaction_scratch`]), and
//!   [`crate::Db::step_compaction`] advances it when the device is idle. The worst put is
//!   bounded (below).
//! - [`crate::CompactionMode::External`]: the caller advances compactions by calling
//!   [`crate::Db::maintain`] with a [`Maintenance`] (its scratch memory and the compaction in
//!   progress) and a budget: a little after each write, more when the device is idle.
//!
//! # The bound on a write with `Stepped { budget: b }`
//! Let `M` be the bytes of a MemTable buffer, `E` its key capacity, `R` the largest record (8
//! bytes of header and the largest entry a MemTable takes), `H` = 136 bytes (a record's first
//! read: its header and up to [`crate::record::PIECE_LEN`] bytes), `k` the inputs of the running
//! merge (at most [`crate::limits::MAX_MERGE`]) and `S` the scratch given. A put, delete, batch
//! or range delete does at most:
//! 1. its own WAL record (appended, and synced as the [`crate::SyncPolicy`] says);
//! 2. one flush, when its MemTable is full: one table of at most `E` entries written (at most
//!    `2 × M` bytes: records, index, fences, filter, footer), read back for its index, fences
//!    and filter (at most `3 × E × H` bytes), synced and renamed, the directory synced, the WAL
//!    rotated;
//! 3. the start of one compaction, after the flush or after an install: per input one index
//!    entry and one record head (`k × (4 + H)` bytes read) and the output created;
//! 4. one step of `b × (1 + min(d, MAX_DEBT))` units, at most `4 × b`, `d` the flushes since
//!    the compaction started. A unit is one key merged (for each input holding the key, its
//!    record read through its checksum, `H + R`, and the next record's index entry and head,
//!    `4 + H`; one record written, `R`) or one record of the output read back for the index,
//!    fences or filter (`H + R + 4` read, at most `R` written). Not split, once per compaction:
//!    the union of the inputs' range deletes, one filter window written (at most `S`), the
//!    footer;
//! 5. when the step completes the compaction, its install: one sync of the output, one rename,
//!    one directory sync, the other inputs removed (and 3, the next one).
//!
//! In all, at most `3·E·H + 2·k·(4 + H) + 4·b·k·(2·H + R + 4)` bytes read and
//! `R + 2·M + 4·b·R + S + 128` written, two renames, and the flush's syncs plus two: nothing
//! that grows with the data. Measured in `tests/stepped_compaction_bounds_every_put.rs`
//! (4 KiB MemTables, 4-byte keys and 24-byte values written once each, 4 KiB of scratch,
//! `b` = 32, 24,000 puts, 69 compactions): the worst put read 17,664 B and wrote 4,761 B
//! (5 syncs, 1 rename); inline, the worst put read 1,341,042 B and wrote 140,433 B.
//!
//! **The exception.** The bound holds while the steps keep up with the flushes. A compaction
//! the table limit would force is started one flush before the limit, so it has one MemTable of
//! writes to run in (a policy compaction, from when the policy asks, usually many); it keeps up
//! when `4 × b` times the writes that fill a MemTable exceed its units, about `(2 + w)` per
//! entry of its inputs (`w` the filter windows, 1 when the filter fits in the scratch). If a
//! flush reaches the table limit ([`crate::compaction::table_limit`], or
//! [`crate::limits::MAX_TABLES`] − 1) while a compaction is unfinished, that write finishes it
//! whole and, if the tables are still at the limit, merges the newest tables whole as
//! [`crate::CompactionMode::Inline`] does: the table count stays bounded, and the write is
//! counted in [`crate::Stats::compaction_overruns`] (0 means every write kept to the bound).
//! Writes made before [`crate::Db::set_compaction_scratch`] and open itself compact whole too.
//!
//! A stepped compaction writes `<id>.tmp` across writes: one file more than
//! [`crate::CompactionMode::Inline`] needs between writes (the table limit leaves room for it),
//! and, until it is installed, its inputs' bytes and its output's on storage at once. A crash
//! leaves the `.tmp`, which open removes; [`crate::Db::close`] removes it.
//!
//! # What a call costs
//! `maintain(m, budget)` does at most:
//! - when no compaction runs and one is due: plan it (sizes only) and start it (open each input
//!   again and read its first key: one small read per input, at most [`crate::limits::MAX_MERGE`]);
//! - `budget` units of merge work ([`crate::compaction::merge::Merge`]): records merged (each
//!   read once and copied once: at most one MemTable's largest entry), or records of the output
//!   read back for its index, fences or filter; plus, at most once per compaction and not split,
//!   the union of the inputs' range deletes, one window of the output's filter written (at most
//!   the scratch memory) and the footer;
//! - when the output is complete: one sync of it, and its install (a rename, a directory sync
//!   and the removal of each other input).
//!
//! So with a budget of `b` per write, the worst write costs the write itself, a flush when its
//! MemTable fills (one MemTable written and synced), and `b` records of merge work plus those
//! fixed parts; no write waits for a whole compaction, **as long as the maintenance keeps up**.
//! Over its life an entry costs about `(2 + w) × m` units of merge work: `m` merges (about
//! log8(data / MemTable size) with the tiered policy), each reading and writing it, reading it
//! back for the index and, for a filter that needs `w` windows of the scratch, `w - 1` more
//! times. The budget per write must exceed that with room to spare. If flushes outrun the
//! maintenance and the tables reach the table limit ([`crate::compaction::table_limit`]), the
//! flush merges inline, whole, as [`crate::CompactionMode::Inline`] always does: the unbounded
//! fallback that keeps the table count bounded. Measured in `tests/maintain_bounds_the_worst_put.rs`
//! (4 KiB MemTables of ~30-byte entries, 4 KiB of scratch, 24,000 puts): a budget of 32 keeps up
//! and the worst put stays at 640 storage calls (a flush and the start of a merge) from the
//! first quarter of the run to the last, against 51,947 for the worst put inline; a budget of 4
//! falls behind.
//!
//! # Memory
//! With [`crate::CompactionMode::Stepped`], the database holds the merge state (the merge's
//! cursors and phase, two handles on the output: on thumbv7m about 650 of the firmware's
//! 5,064-byte `Db`, in every mode) and the scratch it was given. A
//! [`Maintenance`] holds its scratch buffer (the caller's: key slots for the merge, the rest a
//! window of the output's filter; a few KiB is enough, see [`crate::compaction::slot_len`]) and,
//! while a compaction runs, its state: a handle and a footer per input, the merge's cursors,
//! two handles on the output (about 2 KiB on a 32-bit target with [`crate::limits::MAX_MERGE`] = 16). The
//! database itself holds nothing more; a caller that never calls `maintain` pays nothing.

use crate::compaction::{full_if_full, table_limit, Compacted, Execution, Merge, Output, Plan};
use crate::db::{Db, Result};
use crate::error::Error;
use crate::limits::MAX_TABLES;
use crate::options::{Clock, CompactionMode};
use crate::space::{discard_if_full, no_space};
use crate::storage::Storage;
use crate::version::TableState;

/// The state of [`crate::Db::maintain`]: scratch memory, and the compaction in progress.
pub struct Maintenance<F, B> {
    scratch: B,
    running: Option<Execution<F>>,
}

impl<F, B: AsRef<[u8]> + AsMut<[u8]>> Maintenance<F, B> {
    /// Maintenance with `scratch` as the merges' scratch memory.
    pub fn new(scratch: B) -> Self {
        Maintenance { scratch, running: None }
    }

    /// The compaction in progress, if any.
    pub fn running(&self) -> Option<&Plan> {
        self.running.as_ref().map(Execution::plan)
    }

    /// Gives the compaction in progress up (its output removed), e.g. before closing the
    /// database; the database forgets it.
    pub fn abandon<S, C, M>(&mut self, db: &mut Db<S, C, M>)
    where
        S: Storage<File = F>,
        C: Clock,
        M: AsRef<[u8]> + AsMut<[u8]>,
    {
        if let Some(exec) = self.running.take() {
            let plan = *exec.plan();
            let _ = exec.abandon(db.storage());
            db.abandon_compaction(&plan);
        }
    }
}

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Advances compaction by at most `budget` records of merge work (and the fixed costs the
    /// [`crate::compaction::steps`] module lists): starts the compaction the policy asks for if
    /// none is in progress, steps it, and installs it when it is complete. Returns whether a
    /// compaction is still in progress. Meant for [`crate::CompactionMode::External`], after
    /// each write with a small budget and with a large one when idle.
    ///
    /// A failure poisons the database as a failed write does (out of space only skips the
    /// compaction, its output removed); the compaction is then given up.
    pub fn maintain<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        m: &mut Maintenance<S::File, B>,
        budget: u32,
    ) -> Result<bool, S> {
        if budget == 0 {
            return Ok(m.running.is_some());
        }
        let scratch = m.scratch.as_mut();
        let exec = match m.running.as_mut() {
            Some(exec) => exec,
            None => {
                let Some(plan) = self.plan_compaction(scratch.len(), false) else { return Ok(false) };
                let inputs = self.compaction_inputs(&plan);
                match Execution::start(self.storage(), plan, &inputs, scratch) {
                    Ok(exec) => m.running.insert(exec),
                    Err(e) => return self.fail_compaction(&plan, e).map(|()| false),
                }
            }
        };
        match exec.step(self.storage(), scratch, budget) {
            Ok(false) => return Ok(true),
            Ok(true) => {}
            Err(e) => {
                let plan = *exec.plan();
                if let Some(exec) = m.running.take() {
                    let _ = exec.abandon(self.storage());
                }
                return self.fail_compaction(&plan, e).map(|()| false);
            }
        }
        let Some(exec) = m.running.take() else { return Ok(false) };
        let plan = *exec.plan();
        match exec.finish(self.storage()) {
            Ok(Ok(done)) => self.install_compaction(done).map(|_| false),
            Ok(Err(exec)) => {
                // Not complete after all: keep going next time.
                m.running = Some(exec);
                Ok(true)
            }
            Err(e) => {
                let _ = self.storage().remove(&plan.temp_name());
                self.fail_compaction(&plan, e).map(|()| false)
            }
        }
    }
}

/// The most flushes a stepped compaction's step grows with ([`CompactionMode::Stepped`]): a
/// write's step is `budget × (1 + min(d, MAX_DEBT))` units, `d` the flushes since it started.
pub const MAX_DEBT: u32 = 3;

/// The compaction a database in [`CompactionMode::Stepped`] runs itself, a step in each write:
/// its merge reads the inputs through the table handles the database holds (they stay live and
/// readable), writes `<id>.tmp` through two handles of its own, and keeps its key slots and
/// filter window in the scratch memory given by [`Db::set_compaction_scratch`]. The database
/// owns it; its inputs are marked as running, so no other compaction takes them.
pub(crate) struct Stepped<F> {
    plan: Plan,
    out: F,
    reader: F,
    merge: Merge,
}

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Gives the database `scratch` as the memory of its stepped compactions
    /// ([`CompactionMode::Stepped`]; other modes do not use it): a key slot per input table and
    /// one more (each as long as the inputs' longest key, see [`crate::compaction::slot_len`]),
    /// the rest a window of the output's Bloom filter. A few KiB is enough; with less, merges
    /// take fewer tables at once and filters are built in more passes. Returns the buffer it
    /// replaces; a stepped compaction in progress is given up first (its output removed).
    pub fn set_compaction_scratch(&mut self, scratch: M) -> Option<M> {
        self.abandon_stepped();
        self.stepped_scratch.replace(scratch)
    }

    /// Advances the stepped compaction ([`CompactionMode::Stepped`]) by at most `budget` units
    /// of merge work, starting the one the policy asks for if none is in progress, and installs
    /// it when it is complete: for idle time, with a large budget. Returns whether a compaction
    /// is still in progress. Does nothing in other modes or before
    /// [`Db::set_compaction_scratch`]. A failure poisons the database as a failed write does
    /// (out of space only skips the compaction).
    pub fn step_compaction(&mut self, budget: u32) -> Result<bool, S> {
        if !matches!(self.config.compaction, CompactionMode::Stepped { .. }) {
            return Ok(false);
        }
        self.mutate(|db| {
            if db.stepped.is_none() {
                db.start_stepped()?;
            }
            db.advance_stepped(budget, true)
        })
    }

    /// A write's step ([`CompactionMode::Stepped`]): advances the compaction in progress by
    /// `budget × (1 + d)` units, `d` the tables flushed since it started.
    pub(crate) fn write_step(&mut self) -> Result<(), S> {
        let CompactionMode::Stepped { budget } = self.config.compaction else { return Ok(()) };
        let Some(s) = self.stepped.as_ref() else { return Ok(()) };
        let newest = self.version.position(s.plan.id).map_or(0, |i| i + 1);
        let behind = self.version.len().saturating_sub(newest).min(MAX_DEBT as usize) as u32;
        let units = budget.max(1).saturating_mul(behind + 1);
        self.advance_stepped(units, true).map(|_| ())
    }

    /// After a flush ([`CompactionMode::Stepped`]): starts the compaction that is due, if none
    /// is in progress. At the table limit ([`Db::compaction_forced`]) the one in progress is
    /// finished whole instead, and `true` returned when the tables are still at the limit: the
    /// caller then merges whole, as [`CompactionMode::Inline`] does. Either is an overrun of the
    /// bound on a write, counted in [`crate::Stats::compaction_overruns`].
    pub(crate) fn stepped_after_flush(&mut self) -> Result<bool, S> {
        if self.compaction_forced() {
            self.counters.compaction_overruns += 1;
            self.advance_stepped(u32::MAX, false)?;
            return Ok(self.compaction_forced());
        }
        if self.stepped.is_none() {
            self.start_stepped()?;
        }
        Ok(false)
    }

    /// Gives up the stepped compaction in progress, if any (its output removed, or left for the
    /// next open to remove).
    pub(crate) fn abandon_stepped(&mut self) {
        if let Some(s) = self.stepped.take() {
            let plan = s.plan;
            drop(s);
            let _ = self.storage.remove(&plan.temp_name());
            self.abandon_compaction(&plan);
        }
    }

    /// Plans and starts the compaction that is due: the policy's, or, one flush before the
    /// table limit would force one, a merge of the newest tables (so that it has the writes of
    /// a MemTable to run in). Opens the output and reads each input's first key.
    fn start_stepped(&mut self) -> Result<(), S> {
        let Some(scratch_len) = self.stepped_scratch.as_mut().map(|s| s.as_mut().len()) else {
            return Ok(());
        };
        let len = self.version.len();
        let soon = len + 2 >= MAX_TABLES || len + 1 >= table_limit(&self.storage);
        let Some(plan) = self.plan_compaction(scratch_len, soon) else { return Ok(()) };
        match self.begin_stepped(plan) {
            Ok(s) => {
                self.stepped = Some(s);
                Ok(())
            }
            Err(e) => {
                let _ = self.storage.remove(&plan.temp_name());
                self.fail_compaction(&plan, e)
            }
        }
    }

    fn begin_stepped(&mut self, plan: Plan) -> core::result::Result<Stepped<S::File>, Error<S::Error>> {
        let name = plan.temp_name();
        let start = self.version.position(plan.first).ok_or(Error::Poisoned)?;
        let out = self.storage.create(&name).map_err(|e| no_space(&self.storage, e))?;
        let reader = match self.storage.open(&name) {
            Ok(r) => r,
            Err(e) => {
                drop(out);
                return Err(discard_if_full(&mut self.storage, &name, Error::Storage(e)));
            }
        };
        let inputs = self.version.tables_mut().get_mut(start..start + plan.count).unwrap_or(&mut []);
        let scratch = self.stepped_scratch.as_mut().map_or(&mut [][..], |s| s.as_mut());
        match Merge::start(&mut self.storage, inputs, scratch, plan.drop_dead_at) {
            Ok(merge) => Ok(Stepped { plan, out, reader, merge }),
            Err(e) => {
                drop((out, reader));
                Err(discard_if_full(&mut self.storage, &name, e))
            }
        }
    }

    /// Advances the stepped compaction by up to `units` (all of it: `u32::MAX`); when it is
    /// complete, syncs and installs the output and (`then_start`) starts the next one that is
    /// due. Returns whether a compaction is in progress. Given up when an eviction took an input.
    fn advance_stepped(&mut self, units: u32, then_start: bool) -> Result<bool, S> {
        let Some(mut s) = self.stepped.take() else { return Ok(false) };
        let plan = s.plan;
        let name = plan.temp_name();
        let start = self.run_start(&plan);
        let (Some(start), Some(scratch)) = (start, self.stepped_scratch.as_mut()) else {
            self.stepped = Some(s);
            self.abandon_stepped();
            return Ok(false);
        };
        let inputs = self.version.tables_mut().get_mut(start..start + plan.count).unwrap_or(&mut []);
        let footer = loop {
            let out = Output {
                file: &mut s.out,
                reader: &mut s.reader,
                name: &name,
                wal_covered: plan.wal_covered,
                replaces_from: plan.replaces_from,
            };
            match s.merge.step(&mut self.storage, inputs, out, scratch.as_mut(), units) {
                Ok(Some(footer)) => break footer,
                Ok(None) if units == u32::MAX => {}
                Ok(None) => {
                    self.stepped = Some(s);
                    return Ok(true);
                }
                Err(e) => {
                    drop(s);
                    let e = full_if_full(&self.storage, e);
                    let _ = self.storage.remove(&name);
                    return self.fail_compaction(&plan, e).map(|()| false);
                }
            }
        };
        let Stepped { mut out, reader, .. } = s;
        drop(reader);
        // Nothing depends on the output yet: out of space here only skips the compaction.
        if let Err(e) = self.storage.sync(&mut out) {
            drop(out);
            let e = no_space(&self.storage, e);
            let _ = self.storage.remove(&name);
            return self.fail_compaction(&plan, e).map(|()| false);
        }
        self.install_compaction(Compacted { plan, file: out, footer, state: TableState::Synced })?;
        if then_start {
            self.start_stepped()?;
        }
        Ok(self.stepped.is_some())
    }
}
