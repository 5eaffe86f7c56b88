//! Background work: merges of SSTables run on worker threads and the frozen MemTable is flushed
//! on a thread of its own ([`crate::flusher`]) while writes go on. A write waits only when the
//! disk is slower than the writes: when flushes outrun the merges (the table thresholds below),
//! or when it fills the next MemTable before the previous flush is installed; it sleeps
//! [`FLUSH_PACE`] when it finds the active MemTable three quarters full while a flush runs.
//!
//! The engine runs in [`CompactionMode::External`](minivault_core::CompactionMode::External):
//! it never compacts inside a write (unless the table limit forces it), and this module plans,
//! hands out and installs the compactions.
//!
//! ```text
//! the Db's calls (writer side)                     worker thread × background_threads
//! ────────────────────────────                     ──────────────────────────────────
//! before a write (engine lock held):               Execution::start: its own PosixStorage
//!   reports in: done → Engine::install_compaction    handle (same directory, own small page
//!               failed → Engine::fail_compaction     cache), its own handles on the inputs,
//!   backlog ≥ stop_tables: wait for a report,        its own scratch (memtable_bytes)
//!     lock let go (Condvar `reported`)             Execution::step × n, STEP_RECORDS each,
//!   backlog ≥ slowdown_tables: sleep SLOWDOWN,       looking at the stop flag between steps
//!     lock let go; below it, a flush running and   sync the output (when nothing evicts:
//!     the MemTable ¾ full: sleep FLUSH_PACE
//!                                                  rename it over <id>.sst, sync the
//!                                                  directory), report it, notify
//! the write (a rotation only seals the MemTable       `reported`, raise `waiting` and
//!   and starts the next WAL)                         nudge: try the engine's lock, and
//! after it: the flush of the frozen MemTable →       with it settle (what a write does
//!   the flush thread (crate::flusher);               before and after it: reports in,
//!   Engine::plan_compaction → idle worker            work handed out)
//! a get or snapshot with `waiting` up: settle
//! ```
//!
//! The nudge ([`Signal`]) is what lets a database that is no longer written finish: without
//! it a report waited for the next write, and with it the frozen MemTable (searched by every
//! get), the covered WALs and the merged tables stayed until then. A failure a settle meets
//! is held ([`Background::settle`]) for the next call that collects to return.
//!
//! `Background` lives beside the engine under [`crate::Db`]'s engine lock, and every method
//! here runs under it; a writer held back by the thresholds lets the lock go while it waits, so
//! gets, scans and other writers' group commits go on. Installing takes the engine (`&mut`), in
//! the call (or the nudge) that picks the report up: the table set changed and the inputs
//! handed to the reaper (under `max_bytes` or with `WhenFull::DropOldest`: also the output's
//! rename and directory sync; under `max_bytes` the inputs are unlinked there and then). The
//! merge itself never holds the engine or its lock, and neither does the worker's rename and
//! directory sync: a directory sync commits the file system's journal, measured at up to 77 ms
//! under the lock at 10^7 keys.
//!
//! `Background` owns the flush thread too: its reports are picked up by the same calls and
//! nudges (the flush first, so the compactions planned next see its table), it notifies the
//! same `reported`, and it stops in [`Background::shut_down`], after the workers, finishing its
//! flush.
//!
//! # Failure
//! A compaction (or a flush) that fails poisons the database exactly as a failed write does
//! ([`minivault_core::Db::fail_compaction`]): the next write, `flush`, `sync` or `close`
//! returns the error, later ones [`minivault_core::Error::Poisoned`]; reads go on. Out of space
//! only skips that compaction (its output removed), as inline.
//!
//! # Shutdown and crashes
//! [`Background::shut_down`] (from `close` and drop) ends the nudges and sets the stop flag:
//! each worker gives its merge up at the next step (removing its `.tmp`), reports and exits, and is joined; outputs
//! already complete are installed. A crash before the output's rename leaves at most a
//! `<id>.tmp`, which the next open removes, and the inputs as they were; after it (the worker's
//! or the install's), the output live in place of its newest input, whose lineage
//! (`[replaces_from, id)`) names the older inputs for the next open to remove, as after an
//! install.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use minivault_core::compaction::{Compacted, Execution, Input, Plan};
use minivault_core::version::TableState;

use crate::engine::Engine;
use crate::flusher::{FlushActivity, FlushHook, Flusher};
use crate::storage::{PosixFile, PosixStorage, Reaper, Settler};
use crate::{Error, Options};

/// How long a write sleeps when the tables reach [`crate::Options::slowdown_tables`].
pub const SLOWDOWN: Duration = Duration::from_millis(1);

/// How long a write sleeps when it finds the active MemTable three quarters full while the
/// previous one is still being flushed: spread over the last quarter's writes, the wait a write
/// that fills the MemTable would make for the flush, in one piece, otherwise.
pub const FLUSH_PACE: Duration = Duration::from_micros(50);

/// Records a worker merges between two looks at the stop flag: about a millisecond of work, so
/// that `close` gives a merge up promptly.
pub const STEP_RECORDS: u32 = 4096;

/// How long a compaction worker waits, at most, for one flush to end before the next step of
/// its merge, or the output's sync (it looks every millisecond): a flush is one MemTable,
/// written in a few milliseconds when it has the disk, and a writer that filled the next
/// MemTable meanwhile waits for it, while a merge only brings the next slowdown nearer. Not while
/// the backlog is at `stop_tables` (writes then wait for the merges). The cap keeps a flush that
/// hangs (a failing disk) from stopping the merges.
pub const FLUSH_GIVE_WAY: Duration = Duration::from_millis(100);

mod signal;

// Compiled again over shuttle's primitives; shuttle is a dev-dependency of the 64-bit hosts
// only (posix/Cargo.toml).
#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod shuttle_tests;

pub(crate) use signal::{next_report, Nudge, Signal};

/// What the report hand-off ([`signal`]) is built on.
mod sync {
    pub use std::sync::atomic::{AtomicBool, Ordering};
    pub use std::sync::mpsc::{Receiver, Sender};
    pub use std::sync::Condvar;
    use std::time::Duration;

    /// How often a thread that reported tries the engine's lock for its nudge
    /// ([`super::Signal::report`]) while the report waits, and how long it pauses between
    /// tries ([`pause`]): a busy lock is let go between two writes or gets. A thread gives up
    /// after about 10 ms (the report then waits for the next get, snapshot or write), at once
    /// when the handle closes (which holds the lock while it joins the threads, and installs
    /// what they reported).
    pub const NUDGE_TRIES: u32 = 100;
    const NUDGE_PAUSE: Duration = Duration::from_micros(100);

    /// The pause between two tries of a nudge.
    pub fn pause() {
        std::thread::sleep(NUDGE_PAUSE);
    }
}

/// Bytes of each worker's own page cache: enough for the pages its merge is reading in each
/// input (index and data) and in the output's read-back; the merge reads every page once.
const WORKER_CACHE_BYTES: usize = 512 << 10;

/// What a worker is asked to merge.
struct Job {
    plan: Plan,
    inputs: Vec<Input>,
}

/// What a worker reports back.
enum Report {
    /// The output, complete and synced (`Ok`; live already when `publish` was set), or why
    /// the merge failed (its `.tmp` removed; live if only the directory sync after its rename
    /// failed, which poisons the engine).
    Done {
        worker: usize,
        plan: Plan,
        /// Boxed: a report is one per compaction, and the output's footer makes it large.
        result: Box<Result<Compacted<PosixFile>, minivault_core::Error<std::io::Error>>>,
    },
    /// Given up at the stop flag; its output removed.
    Abandoned { worker: usize, plan: Plan },
}

struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The plan it is running.
    busy: Option<Plan>,
}

impl Worker {
    /// True when its thread is no longer running (it panicked; joined threads are taken).
    fn ended(&self) -> bool {
        self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }
}

/// What the background has done since open. More fields may come: build it with
/// `Default` and read its fields by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackgroundStats {
    /// Compactions handed to a worker.
    pub started: u64,
    /// Compactions whose output was installed.
    pub installed: u64,
    /// Compactions that ended otherwise: failed, discarded (an input evicted), or given up at
    /// close.
    pub not_installed: u64,
    /// Writes that slept [`SLOWDOWN`] because the tables reached `slowdown_tables`.
    pub slowed_writes: u64,
    /// Writes that waited for a compaction because the tables reached `stop_tables`.
    pub stopped_writes: u64,
    /// Writes that slept [`FLUSH_PACE`] because the active MemTable was three quarters full
    /// while the previous one was still being flushed (a write group, whose leader is admitted
    /// once for all its writes, counts once).
    pub paced_writes: u64,
    /// Flushes the flush thread wrote and that were installed (`crate::flusher`).
    pub flushes: u64,
    /// Writes that filled the active MemTable while the previous one was still being flushed,
    /// and waited for that flush (the engine's lock let go): the stop condition of the flush.
    pub flush_waits: u64,
    /// Time writes spent waiting, every kind (a slowed write counts [`SLOWDOWN`]).
    pub stalled: Duration,
    /// Of that, the time writes held at `stop_tables` waited.
    pub stopped_time: Duration,
    /// Of that, the time writes waited for a flush.
    pub flush_wait_time: Duration,
    /// The longest single wait of a write at `stop_tables`.
    pub longest_stop: Duration,
    /// The longest single wait of a write for a flush.
    pub longest_flush_wait: Duration,
    /// Time the compaction workers paused their merges while the flush thread wrote a table,
    /// all workers together ([`FLUSH_GIVE_WAY`]); a pause is counted when it ends.
    pub merges_gave_way: Duration,
    /// Files the installs made obsolete whose unlink by the storage's reaper failed (already
    /// gone, or not removable): left in the directory for the next open to remove. Always 0
    /// without the reaper (under `max_bytes`), where the install unlinks them itself and a
    /// failure is its error.
    pub failed_unlinks: u64,
}

/// How hard the tables press on a write ([`Background::pressure`]), by the compaction backlog
/// ([`minivault_core::Db::compaction_backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pressure {
    /// Below `slowdown_tables`: the write goes ahead.
    None,
    /// At `slowdown_tables`: the write sleeps [`SLOWDOWN`] first (once).
    Slow,
    /// At `stop_tables`: the write waits for compactions until the backlog is below it.
    Stop,
}

/// The worker threads and the writer side's view of them.
pub(crate) struct Background {
    workers: Vec<Worker>,
    /// The flush thread.
    flusher: Flusher,
    /// Unlinks the files installs made obsolete and closes them (and the views of the tables
    /// that shared their descriptors), off the engine's lock (`crate::storage`'s reaper; not
    /// under `max_bytes`); its queue is attached to the engine's storage while it runs.
    reaper: Option<Reaper>,
    reports: Receiver<Report>,
    /// Raised by a worker or the flush thread after each report (see [`Background::reported`]).
    signal: Signal,
    /// A failure [`Background::settle`] met, for the next call that collects to return.
    held_error: Option<Error>,
    /// Set by tests ([`Background::hold_installs`]): reports wait for a write to install them.
    installs_held: bool,
    stop: Arc<AtomicBool>,
    /// Set by tests ([`Background::pause`]): workers wait between steps.
    paused: Arc<AtomicBool>,
    /// The flush thread's flushes, which the workers give way to.
    flushing: FlushActivity,
    /// Set while the backlog is at `stop_tables` ([`Flags`]).
    at_stop: Arc<AtomicBool>,
    scratch_len: usize,
    slowdown_tables: usize,
    stop_tables: usize,
    stats: BackgroundStats,
    /// What the engine looked like when the policy last found nothing due
    /// ([`Background::schedule`]): the plan depends on nothing else, so while it is unchanged
    /// the writes that follow do not ask again.
    nothing_due: Option<PlanInputs>,
}

/// What [`minivault_core::Db::plan_compaction`] decides from, besides `force`: the table set
/// (its change count), the compactions running (their tables are not planned again), and
/// whether the engine is poisoned (nothing is planned then).
type PlanInputs = (u64, usize, bool);

fn plan_inputs(engine: &Engine) -> PlanInputs {
    (engine.table_set_changes(), engine.compactions_running(), engine.is_poisoned())
}

impl Background {
    /// Starts `options.background_threads` workers on second handles of `engine`'s storage,
    /// each with `memtable_bytes` of scratch memory for its merges and lowered by
    /// `compaction_nice`, and the flush thread. Not under `max_bytes` (where the directory must
    /// be under the cap after each call, so files appear and go only when the engine counts
    /// them), the flush thread makes its tables live itself and a reaper thread unlinks obsolete
    /// files, both off the engine's lock. With [`Options::workers_publish_outputs`] (that, and
    /// no eviction), the workers make their outputs live themselves too.
    pub(crate) fn start(engine: &mut Engine, options: &Options) -> std::io::Result<Background> {
        let threads = options.background_threads;
        let scratch_len = options.memtable_bytes;
        let (slowdown_tables, stop_tables) = (options.slowdown_tables, options.stop_tables);
        let nice = options.compaction_nice;
        // Under a cap, a file removed later would count against it meanwhile.
        let off_lock = options.max_bytes.is_none();
        let publish_outputs = options.workers_publish_outputs();
        let (report_tx, reports) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Signal::new();
        let paused = Arc::new(AtomicBool::new(false));
        let flushing = FlushActivity::default();
        let at_stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            // It reads its input tables from start to end through read-ahead windows.
            let storage = engine.storage().second_handle(WORKER_CACHE_BYTES)?.with_read_ahead();
            let (jobs, job_rx) = mpsc::channel();
            let (tx, notify) = (report_tx.clone(), signal.clone());
            let flags = Flags {
                stop: Arc::clone(&stop),
                paused: Arc::clone(&paused),
                flushing: flushing.clone(),
                at_stop: Arc::clone(&at_stop),
                publish: publish_outputs,
            };
            let thread =
                thread::Builder::new().name(format!("minivault-compaction-{index}")).spawn(move || {
                    lower_priority(nice);
                    work(index, storage, job_rx, tx, &notify, &flags, scratch_len)
                })?;
            workers.push(Worker { jobs: Some(jobs), thread: Some(thread), busy: None });
        }
        let flusher = Flusher::start(engine, scratch_len, signal.clone(), flushing.clone(), off_lock)?;
        let reaper = if off_lock { Some(Reaper::start(engine.storage().dir_handle()?)?) } else { None };
        engine.storage().set_removals(reaper.as_ref().and_then(Reaper::queue));
        Ok(Background {
            workers,
            flusher,
            reaper,
            reports,
            signal,
            held_error: None,
            installs_held: false,
            stop,
            paused,
            flushing,
            at_stop,
            scratch_len,
            slowdown_tables,
            stop_tables,
            stats: BackgroundStats::default(),
            nothing_due: None,
        })
    }

    /// What waits until the tables the installs so far replaced and the WALs their flushes
    /// covered are unlinked, and the tables closed (with the engine's lock let go first);
    /// `None` when that happens at once.
    pub(crate) fn removals_settler(&self) -> Option<Settler> {
        self.reaper.as_ref().map(Reaper::settler)
    }

    /// Makes the workers wait before each step of their merges (`true`) or go on: for tests
    /// that need a merge to stay in progress.
    pub(crate) fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// What the background has done since open.
    pub(crate) fn stats(&self) -> BackgroundStats {
        BackgroundStats {
            flushes: self.flusher.installed,
            failed_unlinks: self.reaper.as_ref().map_or(0, Reaper::failed_unlinks),
            merges_gave_way: self.flushing.waited(),
            ..self.stats
        }
    }

    /// Sets the hook the flush thread calls before each flush (tests).
    pub(crate) fn set_flush_hook(&mut self, hook: Option<FlushHook>) {
        self.flusher.set_hook(hook);
    }

    /// True while the flush thread has a flush not yet reported back.
    pub(crate) fn flush_running(&self) -> bool {
        self.flusher.is_running()
    }

    /// Hands the flush thread the immutable MemTable, if there is one and it is idle.
    pub(crate) fn schedule_flush(&mut self, engine: &mut Engine) {
        if !self.stop.load(Ordering::Relaxed) {
            self.flusher.schedule(engine);
        }
    }

    /// Counts a write that waited `waited` for the running flush.
    pub(crate) fn note_flush_wait(&mut self, waited: Duration) {
        self.stats.flush_waits += 1;
        self.stats.stalled += waited;
        self.stats.flush_wait_time += waited;
        self.stats.longest_flush_wait = self.stats.longest_flush_wait.max(waited);
    }

    /// How hard a write must be held back now: [`Pressure::Stop`] at a compaction backlog of
    /// `stop_tables`, [`Pressure::Slow`] at `slowdown_tables`. The caller ([`crate::Db`]) waits without the
    /// engine's lock: [`Background::wait_for_report`] for a stop, a sleep of [`SLOWDOWN`] for a
    /// slowdown.
    pub(crate) fn pressure(&self, engine: &Engine) -> Pressure {
        let backlog = engine.compaction_backlog();
        self.at_stop.store(backlog >= self.stop_tables, Ordering::Relaxed);
        if backlog >= self.stop_tables {
            Pressure::Stop
        } else if backlog >= self.slowdown_tables {
            Pressure::Slow
        } else {
            Pressure::None
        }
    }

    /// At [`Pressure::Stop`]: hands idle workers the newest free tables (even when the policy
    /// would wait) and reaps workers that died. `false` when no compaction runs (nothing could
    /// be planned): the write then goes ahead, and at the table limit the engine merges inline.
    pub(crate) fn press(&mut self, engine: &mut Engine) -> Result<bool, Error> {
        self.reap_dead_workers(engine)?;
        self.schedule(engine, true);
        Ok(self.workers.iter().any(|w| w.busy.is_some()))
    }

    /// The condition variable a worker notifies after each report: a writer held at
    /// `stop_tables` waits on it with the engine's lock let go (a wake-up can be missed when a
    /// report lands between the writer's look and its wait, so it waits with a timeout).
    pub(crate) fn reported(&self) -> Arc<Condvar> {
        self.signal.condvar()
    }

    /// Whether a write should sleep [`FLUSH_PACE`] first: a flush runs on the flush thread and
    /// the active MemTable is three quarters full (its arena, or its slots: keys and the
    /// versions kept for snapshots).
    pub(crate) fn pace_for_flush(&self, engine: &Engine) -> bool {
        if !self.flush_running() {
            return false;
        }
        let (active, _) = engine.memtables();
        let arena = active.arena_used() * 4 >= active.arena_capacity() * 3;
        let slots = active.used_slots() * 4 >= active.key_capacity() * 3;
        arena || slots
    }

    /// Counts a write that slept [`FLUSH_PACE`], for `slept` (the sleep as the clock saw it).
    pub(crate) fn note_paced(&mut self, slept: Duration) {
        self.stats.paced_writes += 1;
        self.stats.stalled += slept;
    }

    /// Counts a write held back by `pressure` for `waited`.
    pub(crate) fn note_stall(&mut self, pressure: Pressure, waited: Duration) {
        match pressure {
            Pressure::Stop => {
                self.stats.stopped_writes += 1;
                self.stats.stopped_time += waited;
                self.stats.longest_stop = self.stats.longest_stop.max(waited);
            }
            Pressure::Slow => self.stats.slowed_writes += 1,
            Pressure::None => return,
        }
        self.stats.stalled += waited;
    }

    /// After a write, flush or open: installs what the flush thread and the workers finished,
    /// hands the flush thread a frozen MemTable, and idle workers the compactions that are due.
    pub(crate) fn after_write(&mut self, engine: &mut Engine) -> Result<(), Error> {
        self.collect(engine)?;
        self.schedule_flush(engine);
        self.schedule(engine, false);
        Ok(())
    }

    /// Gives the threads what installs their reports when no call comes ([`Signal::report`]);
    /// set once, by the handle that owns this (not under `max_bytes`, where only writes install:
    /// the directory may change only within a call).
    pub(crate) fn set_nudge(&self, nudge: Nudge) {
        self.signal.set_nudge(nudge);
    }

    /// True when a thread reported since the last [`Background::collect`] (and installs are not
    /// held): a get or a snapshot then settles ([`Background::settle`]) under the lock it took.
    pub(crate) fn report_waiting(&self) -> bool {
        !self.installs_held && self.signal.is_up()
    }

    /// Makes reports wait for the next write, flush or close to install them (`true`), as
    /// before any nudge, or installs them at once again: for tests that need a window between a
    /// thread's report and its install.
    pub(crate) fn hold_installs(&mut self, held: bool) {
        self.installs_held = held;
    }

    /// [`Background::after_write`] for a call that is not a write (a get, a snapshot, a
    /// thread's nudge): installs what the threads reported and hands out the work due next. A
    /// failure (which has poisoned the engine) is kept for the next write, flush, sync or close
    /// to return, as if that call had collected the report.
    pub(crate) fn settle(&mut self, engine: &mut Engine) {
        if let Err(e) = self.after_write(engine) {
            self.hold_error(e);
        }
    }

    /// Keeps `e`, a background failure found by a call that stands (a write already logged and
    /// applied), for the next write, flush, sync or close to return.
    pub(crate) fn hold_error(&mut self, e: Error) {
        self.held_error.get_or_insert(e);
    }

    /// Installs (or reports the failure of) the flush and every compaction the threads
    /// finished; returns the first failure, or one [`Background::settle`] kept.
    pub(crate) fn collect(&mut self, engine: &mut Engine) -> Result<(), Error> {
        // Lowered before the reports are read: a report sent from here on raises it again.
        // Every report is sent before its thread raises the flag (`Signal::report`), so
        // with the flag down there is none to read, bar one whose flag is about to rise (the
        // next call reads it): most writes look at one atomic instead of two channels.
        // A thread that ended is read too, whatever the flag: a report it sent before it ended
        // goes in before the thread is found dead.
        let reported = self.signal.take() || self.thread_ended();
        let mut first_error = self.held_error.take();
        if let Err(e) = self.flusher.collect(engine, reported) {
            first_error.get_or_insert(e);
        }
        while let Some(report) = next_report(reported, &self.reports) {
            if let Err(e) = self.handle(engine, report) {
                first_error.get_or_insert(e);
            }
        }
        // After the reports: a worker that died (a panic) is reported by the next call, not
        // only once writes reach stop_tables.
        if let Err(e) = self.reap_dead_workers(engine) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// True when the flush thread or a worker is no longer running (it panicked, or the handle
    /// is closing).
    fn thread_ended(&self) -> bool {
        self.flusher.thread_ended() || self.workers.iter().any(Worker::ended)
    }

    /// A worker that ended without reporting (it panicked: a bug) leaves its plan running
    /// forever; give the plan up and poison the engine rather than wait on it.
    fn reap_dead_workers(&mut self, engine: &mut Engine) -> Result<(), Error> {
        for w in &mut self.workers {
            if w.ended() {
                w.jobs = None;
                if let Some(plan) = w.busy.take() {
                    self.stats.not_installed += 1;
                    engine.fail_compaction(&plan, minivault_core::Error::Poisoned)?;
                }
            }
        }
        Ok(())
    }

    fn handle(&mut self, engine: &mut Engine, report: Report) -> Result<(), Error> {
        match report {
            Report::Done { worker, plan, result } => {
                self.idle(worker);
                // The output was written through the worker's handle and cache: the engine reads
                // it through a handle of its own storage.
                let result = (*result).and_then(|mut done| {
                    let name = done.state.file_name(plan.id);
                    done.file = engine.storage().open_fresh(&name).map_err(minivault_core::Error::Storage)?;
                    Ok(done)
                });
                match result {
                    Ok(done) => {
                        let installed = engine.install_compaction(done)?;
                        if installed {
                            self.stats.installed += 1;
                        } else {
                            self.stats.not_installed += 1;
                        }
                    }
                    Err(e) => {
                        self.stats.not_installed += 1;
                        engine.fail_compaction(&plan, e)?;
                    }
                }
            }
            Report::Abandoned { worker, plan } => {
                self.idle(worker);
                self.stats.not_installed += 1;
                engine.abandon_compaction(&plan);
            }
        }
        Ok(())
    }

    fn idle(&mut self, worker: usize) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.busy = None;
        }
    }

    /// Hands each idle worker the next compaction that is due (`force`: merge the newest free
    /// tables even when the policy would wait).
    fn schedule(&mut self, engine: &mut Engine, force: bool) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        if !force && self.nothing_due == Some(plan_inputs(engine)) {
            return;
        }
        for w in self.workers.iter_mut().filter(|w| w.busy.is_none()) {
            let Some(jobs) = &w.jobs else { continue };
            let Some(plan) = engine.plan_compaction(self.scratch_len, force) else {
                if !force {
                    self.nothing_due = Some(plan_inputs(engine));
                }
                return;
            };
            let inputs = engine.compaction_inputs(&plan).to_vec();
            if jobs.send(Job { plan, inputs }).is_err() {
                // The worker is gone (it panicked); forget it and the plan.
                w.jobs = None;
                engine.abandon_compaction(&plan);
                continue;
            }
            w.busy = Some(plan);
            self.stats.started += 1;
        }
    }

    /// Stops the workers (each gives its merge up at its next step), joins them, and handles
    /// their last reports: complete outputs are installed, given-up ones forgotten. Returns the
    /// first background failure.
    pub(crate) fn shut_down(&mut self, engine: &mut Engine) -> Result<(), Error> {
        // A failure a nudge picked up is older than any met here.
        let held = self.held_error.take();
        self.signal.close();
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // The running flush is finished and installed (crate::flusher says why).
        let flushed = self.flusher.shut_down(engine).err();
        // Joined: every report is in the channel and its flag raised; raised again here so
        // that the collect reads the channel whoever lowered the flag last.
        self.signal.raise();
        let collected = self.collect(engine).err();
        // What the installs made obsolete is unlinked before close returns.
        engine.storage().set_removals(None);
        drop(self.reaper.take());
        let mut first_error = held.or(flushed).or(collected);
        // Workers that died without reporting.
        for w in &mut self.workers {
            if let Some(plan) = w.busy.take() {
                engine.abandon_compaction(&plan);
                if first_error.is_none() {
                    first_error =
                        engine.fail_compaction(&plan, minivault_core::Error::Poisoned).err().map(Into::into);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What a worker looks at between steps.
#[derive(Clone)]
struct Flags {
    /// Give the merge up and exit: set by [`Background::shut_down`].
    stop: Arc<AtomicBool>,
    /// Wait before the next step: [`Background::pause`].
    paused: Arc<AtomicBool>,
    /// The flush thread's flushes, which a merge gives way to ([`FLUSH_GIVE_WAY`]).
    flushing: FlushActivity,
    /// The compaction backlog was at `stop_tables` when a write last looked
    /// ([`Background::pressure`]): writes wait for the merges, which then give way to nothing.
    at_stop: Arc<AtomicBool>,
    /// Make the output live (rename over `<id>.sst`, directory sync) before reporting it, so
    /// that the install under the engine's lock has only the table set to change: not under
    /// `max_bytes`, where a file must appear only when the engine counts it, nor with
    /// `WhenFull::DropOldest`, where an eviction may cancel the compaction meanwhile
    /// (`crate::Options::workers_publish_outputs`).
    publish: bool,
}

/// A worker thread: merges the jobs it is given until its job channel closes.
/// Raises the calling thread's nice value by `by` (at most to 19): [`crate::Options::compaction_nice`].
/// On Linux the nice value belongs to the thread (`nice(2)`); elsewhere to the whole
/// process, so nothing is changed there. A scheduling hint: a failure is ignored.
fn lower_priority(by: u8) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if by > 0 {
        // SAFETY: `nice` takes an integer and changes only the calling thread's scheduling
        // priority; no memory is passed. Its result (the new value, or -1 and `errno`) is not
        // needed: a thread left at the process's priority still works, only sooner.
        unsafe {
            libc::nice(libc::c_int::from(by));
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = by;
}

/// Waits while the flush thread writes a table, at most [`FLUSH_GIVE_WAY`] for each flush
/// (`given_way_to`: the flush this worker last waited for, which it does not wait for again, in
/// this merge or the next). Not while the backlog is at `stop_tables`: writes are then waiting
/// for the merges themselves.
fn give_way_to_flush(flags: &Flags, given_way_to: &mut Option<u64>) {
    let Some(flush) = flags.flushing.running() else { return };
    if *given_way_to == Some(flush) || flags.at_stop.load(Ordering::Relaxed) {
        return;
    }
    *given_way_to = Some(flush);
    let started = std::time::Instant::now();
    while flags.flushing.running() == Some(flush)
        && !flags.stop.load(Ordering::Relaxed)
        && !flags.at_stop.load(Ordering::Relaxed)
        && started.elapsed() < FLUSH_GIVE_WAY
    {
        thread::sleep(Duration::from_millis(1));
    }
    flags.flushing.note_wait(started.elapsed());
}

fn work(
    worker: usize,
    mut storage: PosixStorage,
    jobs: Receiver<Job>,
    reports: Sender<Report>,
    signal: &Signal,
    flags: &Flags,
    scratch_len: usize,
) {
    let mut scratch = vec![0u8; scratch_len];
    // The last flush this worker gave way to.
    let mut given_way_to = None;
    while let Ok(Job { plan, inputs }) = jobs.recv() {
        // Pages of inputs merged before may belong to files removed since, whose inode
        // numbers new tables can take.
        storage.clear_cache();
        let report = run(worker, &mut storage, plan, &inputs, &mut scratch, flags, &mut given_way_to);
        if !signal.report(&reports, report) {
            break;
        }
    }
}

/// Runs one compaction in steps, giving it up when `stop` is set.
fn run(
    worker: usize,
    storage: &mut PosixStorage,
    plan: Plan,
    inputs: &[Input],
    scratch: &mut [u8],
    flags: &Flags,
    given_way_to: &mut Option<u64>,
) -> Report {
    let done = |result| Report::Done { worker, plan, result: Box::new(result) };
    let mut exec = match Execution::start(storage, plan, inputs, scratch) {
        Ok(exec) => exec,
        Err(e) => return done(Err(e)),
    };
    loop {
        while flags.paused.load(Ordering::Relaxed) && !flags.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(1));
        }
        give_way_to_flush(flags, given_way_to);
        if flags.stop.load(Ordering::Relaxed) {
            let _ = exec.abandon(storage);
            return Report::Abandoned { worker, plan };
        }
        match exec.step(storage, scratch, STEP_RECORDS) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let _ = exec.abandon(storage);
                return done(Err(e));
            }
        }
    }
    // The output's sync, and its rename and directory sync, wait for a flush too.
    give_way_to_flush(flags, given_way_to);
    match exec.finish(storage) {
        Ok(Ok(compacted)) if flags.publish => {
            // Crash-safe from here on as after the install's rename: the output's lineage
            // (`[replaces_from, id)`) names the inputs it replaces, which open removes.
            match minivault_core::version::make_live(storage, plan.id) {
                Ok(()) => done(Ok(Compacted { state: TableState::Published, ..compacted })),
                Err(e) => {
                    drop(compacted);
                    let _ = minivault_core::Storage::remove(storage, &plan.temp_name());
                    done(Err(e))
                }
            }
        }
        Ok(Ok(compacted)) => done(Ok(compacted)),
        Ok(Err(exec)) => {
            let _ = exec.abandon(storage);
            done(Err(minivault_core::Error::Poisoned))
        }
        Err(e) => {
            let _ = minivault_core::Storage::remove(storage, &plan.temp_name());
            done(Err(e))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{give_way_to_flush, Flags, FLUSH_GIVE_WAY};
    use crate::flusher::FlushActivity;

    /// Longer than any wait the rules allow: a wait past it is a failure, not a hang.
    const STUCK: Duration = Duration::from_secs(10);

    fn flags(flushing: &FlushActivity) -> Flags {
        Flags {
            stop: Arc::new(AtomicBool::new(false)),
            paused: Arc::new(AtomicBool::new(false)),
            flushing: flushing.clone(),
            at_stop: Arc::new(AtomicBool::new(false)),
            publish: false,
        }
    }

    /// `give_way_to_flush` on a thread of its own: how long it took and what it left in
    /// `given_way_to`; fails the test if it takes longer than [`STUCK`].
    fn timed_give_way(flags: &Flags, given_way_to: &mut Option<u64>) -> Duration {
        let (tx, rx) = mpsc::channel();
        let (flags, mut given) = (flags.clone(), *given_way_to);
        // Not a scoped thread: a test that fails here does not wait for it.
        thread::spawn(move || {
            let started = Instant::now();
            give_way_to_flush(&flags, &mut given);
            let _ = tx.send((started.elapsed(), given));
        });
        let (waited, given) = rx.recv_timeout(STUCK).expect("the merge waited without end");
        *given_way_to = given;
        waited
    }

    #[test]
    fn a_merge_waits_while_a_flush_runs_and_goes_on_when_it_ends() {
        let activity = FlushActivity::default();
        let flags = flags(&activity);
        let flushing = activity.begin();
        let running = activity.running();
        let started = Instant::now();
        let (waited, ended) = thread::scope(|scope| {
            // The flush ends at least 30 ms after `started`.
            let ender = scope.spawn(move || {
                thread::sleep(Duration::from_millis(30));
                let ended = Instant::now();
                drop(flushing);
                ended
            });
            let mut given_way_to = None;
            give_way_to_flush(&flags, &mut given_way_to);
            assert_eq!(given_way_to, running, "it gave way to the flush running");
            (started.elapsed(), ender.join().expect("the flush's thread panicked"))
        });
        assert!(waited >= Duration::from_millis(30), "went on after {waited:?}, the flush still running");
        // Went on once the flush ended, or at the cap (a loaded machine may run the ending
        // thread late), never before both.
        assert!(
            started + waited >= ended || waited >= FLUSH_GIVE_WAY,
            "went on at {waited:?}, before the flush ended"
        );
        assert!(activity.waited() >= Duration::from_millis(30), "counted {:?}", activity.waited());
    }

    #[test]
    fn a_merge_waits_for_one_flush_at_most_the_cap_and_not_twice() {
        let activity = FlushActivity::default();
        let flags = flags(&activity);
        let _hung = activity.begin();
        let mut given_way_to = None;
        let waited = timed_give_way(&flags, &mut given_way_to);
        assert!(waited >= FLUSH_GIVE_WAY, "gave up after {waited:?}");
        assert_eq!(given_way_to, activity.running());
        let again = timed_give_way(&flags, &mut given_way_to);
        assert!(again < FLUSH_GIVE_WAY / 2, "waited again for the same flush: {again:?}");
    }

    #[test]
    fn a_merge_does_not_wait_with_no_flush_running_nor_at_stop_tables_nor_when_stopped() {
        let activity = FlushActivity::default();
        let flags = flags(&activity);
        let mut given_way_to = None;
        timed_give_way(&flags, &mut given_way_to);
        assert_eq!(given_way_to, None, "no flush ran");
        drop(activity.begin());
        timed_give_way(&flags, &mut given_way_to);
        assert_eq!(given_way_to, None, "waited for a flush that had ended");
        let _running = activity.begin();
        flags.at_stop.store(true, Ordering::Relaxed);
        let waited = timed_give_way(&flags, &mut given_way_to);
        assert!(waited < FLUSH_GIVE_WAY / 2, "waited {waited:?} with writes held at stop_tables");
        flags.at_stop.store(false, Ordering::Relaxed);
        flags.stop.store(true, Ordering::Relaxed);
        let waited = timed_give_way(&flags, &mut given_way_to);
        assert!(waited < FLUSH_GIVE_WAY / 2, "waited {waited:?} when stopped");
    }
}
