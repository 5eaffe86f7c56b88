//! Compaction in bounded steps, for a caller without threads (a microcontroller): the database
//! runs in [`crate::CompactionMode::External`], and the caller advances compactions by calling
//! [`crate::Db::maintain`] with a [`Maintenance`] (its scratch memory and the compaction in
//! progress) and a budget: a little after each write, more when the device is idle.
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
//! A [`Maintenance`] holds its scratch buffer (the caller's: key slots for the merge, the rest a
//! window of the output's filter; a few KiB is enough, see [`crate::compaction::slot_len`]) and,
//! while a compaction runs, its state: a handle and a footer per input, the merge's cursors,
//! two handles on the output (about 2 KiB on a 32-bit target with [`crate::limits::MAX_MERGE`] = 16). The
//! database itself holds nothing more; a caller that never calls `maintain` pays nothing.

use crate::compaction::{Execution, Plan};
use crate::db::{Db, Result};
use crate::options::Clock;
use crate::storage::Storage;

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
