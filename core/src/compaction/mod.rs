//! Compaction: merging adjacent SSTables into one, so that the number of tables, the
//! probes per `get`, and the space held by overwritten, deleted and expired entries stay bounded.
//!
//! Three files, one step each: [`policy`] chooses the tables (from their sizes alone), [`merge`](mod@merge)
//! writes their merged contents as one table, and [`run`] (here) carries a compaction out: it asks
//! the policy, merges into `<id>.tmp`, and has the table set ([`crate::version::Version`]) make
//! the output live in place of its inputs. The scratch memory is the idle MemTable's buffer.
//!
//! # Crash safety
//! The output is written as `<newest input id>.tmp`, synced, and renamed over the newest input;
//! its footer says `replaces_from` = the oldest input's id. Only then are the older inputs
//! removed. A crash before the rename leaves a `.tmp` that open removes; a crash after it leaves
//! older inputs that open recognises as replaced (their id lies in `[replaces_from, id)` of a
//! newer table) and removes, so a dropped tombstone can never let an old value resurface.

pub mod merge;
pub mod policy;
pub mod steps;

pub use merge::{merge, slot_len, Merge, Output};
pub use policy::{pick, MIN_MERGE, TIER_RATIO, TIER_WIDTH};
pub use steps::Maintenance;

use heapless::Vec;

use crate::error::{Error, ResultExt};
use crate::limits::{CROWDED_TABLES, MAX_MERGE, MAX_MERGE_BYTES, MAX_TABLES};
use crate::names::{file_name, FileKind, FileName};
use crate::space::{discard_if_full, no_space};
use crate::sstable::{Footer, Table};
use crate::storage::Storage;
use crate::version::{run_flags, TableState, Version};

/// A compaction decided on ([`plan`]): a run of adjacent live tables, and what its output's
/// footer will say. Small and `Copy`: the tables themselves stay where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Plan {
    /// The oldest input's id.
    pub first: u64,
    /// The newest input's id, which the output takes: written as `<id>.tmp`, renamed over
    /// `<id>.sst`.
    pub id: u64,
    /// Tables in the run.
    pub count: usize,
    /// The output footer's `replaces_from`: the oldest input's.
    pub replaces_from: u64,
    /// The output footer's `wal_covered`: the largest of the inputs'.
    pub wal_covered: u64,
    /// `Some(now)` when the run starts at the oldest table: tombstones and entries expired at
    /// `now` are dropped (nothing older can hide behind them).
    pub drop_dead_at: Option<u64>,
}

impl Plan {
    /// The output's temporary name, `<id>.tmp`.
    pub fn temp_name(&self) -> FileName {
        file_name(FileKind::TempTable, self.id)
    }
}

/// What a planner knows of one input table, for a compaction run on another storage handle
/// ([`Execution`]): its id, footer (checked when the table was opened) and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// The table's id.
    pub id: u64,
    /// Its footer.
    pub footer: Footer,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A finished compaction's output, synced, waiting to be installed
/// ([`crate::Db::install_compaction`]): still named `<id>.tmp` ([`TableState::Synced`]), or
/// already renamed over `<id>.sst` by whoever ran the merge ([`TableState::Published`]).
pub struct Compacted<F> {
    /// What was merged.
    pub plan: Plan,
    /// The output, open.
    pub file: F,
    /// Its footer.
    pub footer: Footer,
    /// How far the output was taken: what the install has left to do.
    pub state: TableState,
}

/// The most tables the policy lets a database hold before it merges whatever it must:
/// [`MAX_TABLES`], or half the files of a storage with a file limit ([`Storage::max_files`]),
/// so that the WALs (two, more when open finds a rotation cut short) and the tables being
/// written always have the other half; at least 2.
pub fn table_limit<S: Storage>(storage: &S) -> usize {
    storage.max_files().map_or(MAX_TABLES, |files| (files / 2).clamp(2, MAX_TABLES))
}

/// Where the table set becomes crowded ([`policy`]: past it the tables are tiered one by one):
/// [`CROWDED_TABLES`], or three quarters of a smaller [`table_limit`]; never without
/// `many-tables` (the limit itself).
pub fn crowded_tables<S: Storage>(storage: &S) -> usize {
    crowded_at(table_limit(storage))
}

/// [`crowded_tables`] for a table limit of `limit`.
fn crowded_at(limit: usize) -> usize {
    if CROWDED_TABLES >= MAX_TABLES {
        limit
    } else {
        CROWDED_TABLES.min(limit - limit / 4)
    }
}

/// Chooses the next compaction among the tables from index `free_from` on (the ones newer
/// than every compaction already running), given `scratch_len` bytes of scratch memory for the
/// merge: the policy ([`pick`]) over their sizes, forced when the table limit is near (or
/// `force`). `now` is when tombstones and expired entries may be dropped (if the run starts at
/// the oldest table); `merge_limit` caps the bytes of the inputs (see
/// [`crate::space::Space::merge_limit`]); `table_limit` is [`table_limit`]'s.
pub fn plan<F>(
    version: &Version<F>,
    free_from: usize,
    scratch_len: usize,
    now: u64,
    (merge_limit, table_limit): (Option<u64>, usize),
    force: bool,
) -> Option<Plan> {
    let tables = version.tables().get(free_from..)?;
    let slot = slot_len(tables.iter().map(|t| t.footer()));
    // A merge holds a key slot per input and one more; merging range deletes, at least
    // `RANGE_SLOTS` in all.
    let slots = scratch_len / slot;
    if tables.iter().any(|t| t.footer().range_count > 0) && slots < merge::RANGE_SLOTS {
        return None;
    }
    let max_inputs = slots.saturating_sub(1);
    if max_inputs < 2 {
        return None;
    }
    let mut sizes: Vec<u64, MAX_TABLES> = Vec::new();
    for t in tables {
        let _ = sizes.push(t.bytes());
    }
    // Whether a table is apart depends on every live table, the running compactions' too.
    let flags = run_flags(version.tables());
    let joins = flags.get(free_from..).unwrap_or(&[]);
    // Near MAX_TABLES a merge must make room before the next flush fails; at a storage's own
    // limit, once it is reached (the other half of its files leave room for that flush).
    let force = force || version.len() + 1 >= MAX_TABLES || version.len() >= table_limit;
    let crowded = version.len() >= crowded_at(table_limit);
    let max_bytes = merge_limit.map_or(MAX_MERGE_BYTES, |m| m.min(MAX_MERGE_BYTES));
    let (start, end) = pick(&sizes, joins, max_inputs, max_bytes, force, crowded)?;
    let inputs = tables.get(start..end)?;
    let (oldest, newest) = (inputs.first()?, inputs.last()?);
    Some(Plan {
        first: oldest.id(),
        id: newest.id(),
        count: inputs.len(),
        replaces_from: oldest.footer().replaces_from,
        wal_covered: inputs.iter().map(|t| t.footer().wal_covered).max().unwrap_or(0),
        // Nothing older than the oldest table can hide behind a tombstone or an expired entry.
        drop_dead_at: (free_from + start == 0).then_some(now),
    })
}

/// Merges the newest tables (from index `free_from` on) when the policy ([`plan`]) asks for it,
/// all at once, on the table handles the version holds, using `scratch` (the idle MemTable's
/// buffer), and installs the output ([`Version::replace_run`]). Returns whether a compaction
/// ran. On a full storage the output's temporary file is removed and the error is
/// [`Error::Full`]: the tables are as they were.
pub fn run<S: Storage>(
    storage: &mut S,
    version: &mut Version<S::File>,
    free_from: usize,
    scratch: &mut [u8],
    now: u64,
    merge_limit: Option<u64>,
) -> Result<bool, Error<S::Error>> {
    let limits = (merge_limit, table_limit(storage));
    let Some(plan) = plan(version, free_from, scratch.len(), now, limits, false) else {
        return Ok(false);
    };
    let Some(start) = version.position(plan.first) else { return Ok(false) };
    let tmp = plan.temp_name();
    let mut out = storage.create(&tmp).map_err(|e| no_space(storage, e))?;
    let mut reader = match storage.open(&tmp) {
        Ok(r) => r,
        Err(e) => {
            drop(out);
            return Err(discard_if_full(storage, &tmp, Error::Storage(e)));
        }
    };
    let inputs = version.tables_mut().get_mut(start..start + plan.count).unwrap_or(&mut []);
    let output = Output {
        file: &mut out,
        reader: &mut reader,
        name: &tmp,
        wal_covered: plan.wal_covered,
        replaces_from: plan.replaces_from,
    };
    let merged = merge(storage, inputs, output, scratch, plan.drop_dead_at);
    drop(reader);
    match merged {
        Ok(footer) => {
            version.replace_run(storage, start, plan.count, out, footer, TableState::Written).map(|()| true)
        }
        Err(e) => {
            drop(out);
            Err(discard_if_full(storage, &tmp, e))
        }
    }
}

/// A compaction run apart from the database: on a storage handle of its own (on POSIX, a second
/// handle on the same directory, on another thread), with its own handles on the inputs and its
/// own scratch memory, in steps ([`Execution::step`]) so that it can be given up between any two
/// ([`Execution::abandon`]). The database meanwhile goes on: it keeps reading the inputs through
/// its own handles, flushes add newer tables, and [`crate::Db::install_compaction`] makes the
/// output live.
pub struct Execution<F> {
    plan: Plan,
    inputs: Vec<Table<F>, MAX_MERGE>,
    out: F,
    reader: F,
    name: FileName,
    merge: Merge,
    footer: Option<Footer>,
}

impl<F> Execution<F> {
    /// Opens the inputs (`inputs`, from [`crate::Db::compaction_inputs`]) and creates the output
    /// `<id>.tmp`; `scratch` must then be handed, unchanged, to every step.
    pub fn start<S: Storage<File = F>>(
        storage: &mut S,
        plan: Plan,
        inputs: &[Input],
        scratch: &mut [u8],
    ) -> Result<Self, Error<S::Error>> {
        let mut tables: Vec<Table<F>, MAX_MERGE> = Vec::new();
        for i in inputs {
            let file = storage.open(&file_name(FileKind::Table, i.id)).storage()?;
            tables.push(Table::new(i.id, file, i.footer, i.bytes)).map_err(|_| Error::TooManyTables)?;
        }
        let name = plan.temp_name();
        let out = storage.create(&name).map_err(|e| no_space(storage, e))?;
        let reader = match storage.open(&name) {
            Ok(r) => r,
            Err(e) => {
                drop(out);
                return Err(discard_if_full(storage, &name, Error::Storage(e)));
            }
        };
        match Merge::start(storage, &mut tables, scratch, plan.drop_dead_at) {
            Ok(merge) => Ok(Execution { plan, inputs: tables, out, reader, name, merge, footer: None }),
            Err(e) => {
                drop((out, reader));
                Err(discard_if_full(storage, &name, e))
            }
        }
    }

    /// What is being merged.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Advances the merge by up to `budget` records ([`Merge`] says what that bounds); `true`
    /// once the output is complete. After an error, [`Execution::abandon`] it; a storage
    /// out of space ([`Storage::is_full`]) is [`Error::Full`], as for a compaction inline.
    pub fn step<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        scratch: &mut [u8],
        budget: u32,
    ) -> Result<bool, Error<S::Error>> {
        if self.footer.is_some() {
            return Ok(true);
        }
        let out = Output {
            file: &mut self.out,
            reader: &mut self.reader,
            name: &self.name,
            wal_covered: self.plan.wal_covered,
            replaces_from: self.plan.replaces_from,
        };
        let stepped = self.merge.step(storage, &mut self.inputs, out, scratch, budget);
        self.footer = stepped.map_err(|e| full_if_full(storage, e))?;
        Ok(self.footer.is_some())
    }

    /// The complete output, synced, to install. `None` (and the execution back) when
    /// [`Execution::step`] has not returned `true` yet.
    pub fn finish<S: Storage<File = F>>(
        self,
        storage: &mut S,
    ) -> Result<Result<Compacted<F>, Self>, Error<S::Error>> {
        let Some(footer) = self.footer else { return Ok(Err(self)) };
        let Execution { plan, mut out, .. } = self;
        // Nothing depends on the output yet: out of space here only skips the compaction.
        storage.sync(&mut out).map_err(|e| no_space(storage, e))?;
        Ok(Ok(Compacted { plan, file: out, footer, state: TableState::Synced }))
    }

    /// Gives the compaction up: closes every handle and removes the output. What is on storage
    /// is as before it started (a power cut at any point leaves at most `<id>.tmp`, which open
    /// removes).
    pub fn abandon<S: Storage<File = F>>(self, storage: &mut S) -> Result<(), Error<S::Error>> {
        let name = self.name.clone();
        drop(self);
        match storage.remove(&name) {
            Err(e) if embedded_io::Error::kind(&e) != embedded_io::ErrorKind::NotFound => {
                Err(Error::Storage(e))
            }
            _ => Ok(()),
        }
    }
}

/// `error`, or [`Error::Full`] when it is the storage's "out of space".
fn full_if_full<S: Storage>(storage: &S, error: Error<S::Error>) -> Error<S::Error> {
    match error {
        Error::Storage(e) => no_space(storage, e),
        other => other,
    }
}

/// Runs a whole compaction apart from the database ([`Execution`]) in one call; on an error
/// the output is removed (best effort) and the error returned.
pub fn execute<S: Storage>(
    storage: &mut S,
    plan: Plan,
    inputs: &[Input],
    scratch: &mut [u8],
) -> Result<Compacted<S::File>, Error<S::Error>> {
    let mut exec = Execution::start(storage, plan, inputs, scratch)?;
    loop {
        match exec.step(storage, scratch, u32::MAX) {
            Ok(false) => {}
            Ok(true) => break,
            Err(e) => {
                let _ = exec.abandon(storage);
                return Err(e);
            }
        }
    }
    let name = exec.name.clone();
    match exec.finish(storage) {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(exec)) => {
            let _ = exec.abandon(storage);
            Err(Error::Poisoned)
        }
        Err(e) => {
            let _ = storage.remove(&name);
            Err(e)
        }
    }
}
