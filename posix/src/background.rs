//! Background compaction: merges of SSTables run on worker threads while writes go on, and a
//! write waits only when flushes outrun the workers.
//!
//! The engine runs in [`CompactionMode::External`](minivault_core::CompactionMode::External):
//! it never compacts inside a write (unless the table limit forces it), and this module plans,
//! hands out and installs the compactions.
//!
//! ```text
//! the Db's calls (writer side)                     worker thread × background_threads
//! ────────────────────────────                     ──────────────────────────────────
//! before a write:                                  Execution::start: its own PosixStorage
//!   reports in: done → Engine::install_compaction    handle (same directory, own small page
//!               failed → Engine::fail_compaction     cache), its own handles on the inputs,
//!   tables ≥ stop_tables: wait for a report          its own scratch (memtable_bytes)
//!   tables ≥ slowdown_tables: sleep SLOWDOWN       Execution::step × n, STEP_RECORDS each,
//! the write (a rotation flushes inline)              looking at the stop flag between steps
//! after it: Engine::plan_compaction → idle worker  sync the output, report it
//! ```
//!
//! Installing takes the engine (`&mut`): a rename, a directory sync and the removal of the
//! inputs, in the call that picks the report up. The merge itself never holds the engine.
//!
//! # Failure
//! A compaction that fails poisons the database exactly as a failed write does
//! ([`minivault_core::Db::fail_compaction`]): the next write, `flush`, `sync` or `close`
//! returns the error, later ones [`minivault_core::Error::Poisoned`]; reads go on. Out of space
//! only skips that compaction (its output removed), as inline.
//!
//! # Shutdown and crashes
//! [`Background::shut_down`] (from `close` and drop) sets the stop flag: each worker gives its
//! merge up at the next step (removing its `.tmp`), reports and exits, and is joined; outputs
//! already complete are installed. Nothing a worker writes is live before the install's
//! rename: a crash at any point leaves at most a `<id>.tmp`, which the next open removes, and
//! the inputs as they were.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use minivault_core::compaction::{Compacted, Execution, Input, Plan};

use crate::db::Engine;
use crate::storage::{PosixFile, PosixStorage};
use crate::Error;

/// How long a write sleeps when the tables reach [`crate::Options::slowdown_tables`].
pub const SLOWDOWN: Duration = Duration::from_millis(1);

/// Records a worker merges between two looks at the stop flag: about a millisecond of work, so
/// that `close` gives a merge up promptly.
pub const STEP_RECORDS: u32 = 4096;

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
    /// The output, complete and synced (`Ok`), or why the merge failed (its output removed).
    Done {
        worker: usize,
        plan: Plan,
        result: Result<Compacted<PosixFile>, minivault_core::Error<std::io::Error>>,
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

/// What the background has done since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Time writes spent waiting, both kinds.
    pub stalled: Duration,
}

/// The worker threads and the writer side's view of them.
pub(crate) struct Background {
    workers: Vec<Worker>,
    reports: Receiver<Report>,
    stop: Arc<AtomicBool>,
    scratch_len: usize,
    slowdown_tables: usize,
    stop_tables: usize,
    stats: BackgroundStats,
}

impl Background {
    /// Starts `threads` workers on second handles of `engine`'s storage, each with
    /// `scratch_len` bytes of scratch memory for its merges.
    pub(crate) fn start(
        engine: &mut Engine,
        threads: usize,
        scratch_len: usize,
        slowdown_tables: usize,
        stop_tables: usize,
    ) -> std::io::Result<Background> {
        let (report_tx, reports) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let storage = engine.storage().second_handle(WORKER_CACHE_BYTES)?;
            let (jobs, job_rx) = mpsc::channel();
            let (tx, stop) = (report_tx.clone(), Arc::clone(&stop));
            let thread = thread::Builder::new()
                .name(format!("minivault-compaction-{index}"))
                .spawn(move || work(index, storage, job_rx, tx, stop, scratch_len))?;
            workers.push(Worker { jobs: Some(jobs), thread: Some(thread), busy: None });
        }
        Ok(Background {
            workers,
            reports,
            stop,
            scratch_len,
            slowdown_tables,
            stop_tables,
            stats: BackgroundStats::default(),
        })
    }

    /// What the background has done since open.
    pub(crate) fn stats(&self) -> BackgroundStats {
        self.stats
    }

    /// Before a write: installs what the workers finished, then holds the write back while the
    /// tables are at the thresholds (sleeping [`SLOWDOWN`] at `slowdown_tables`; at
    /// `stop_tables`, waiting for compactions until they are below it). Returns a background
    /// failure, which has poisoned the engine.
    pub(crate) fn before_write(&mut self, engine: &mut Engine) -> Result<(), Error> {
        self.collect(engine)?;
        let tables = engine.stats().tables;
        if tables >= self.stop_tables {
            let started = Instant::now();
            self.stats.stopped_writes += 1;
            while engine.stats().tables >= self.stop_tables {
                self.schedule(engine, true);
                if !self.wait_for_one(engine)? {
                    // Nothing runs and nothing can be planned: the write goes ahead (at the
                    // table limit the engine merges inline).
                    break;
                }
            }
            self.stats.stalled += started.elapsed();
        } else if tables >= self.slowdown_tables {
            self.stats.slowed_writes += 1;
            thread::sleep(SLOWDOWN);
            self.stats.stalled += SLOWDOWN;
        }
        Ok(())
    }

    /// After a write, flush or open: installs what the workers finished and hands idle workers
    /// the compactions that are due.
    pub(crate) fn after_write(&mut self, engine: &mut Engine) -> Result<(), Error> {
        self.collect(engine)?;
        self.schedule(engine, false);
        Ok(())
    }

    /// Installs (or reports the failure of) every compaction the workers finished.
    pub(crate) fn collect(&mut self, engine: &mut Engine) -> Result<(), Error> {
        let mut first_error = None;
        while let Ok(report) = self.reports.try_recv() {
            if let Err(e) = self.handle(engine, report) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for one report and handles it; `false` when no compaction is running.
    fn wait_for_one(&mut self, engine: &mut Engine) -> Result<bool, Error> {
        loop {
            if self.workers.iter().all(|w| w.busy.is_none()) {
                return Ok(false);
            }
            match self.reports.recv_timeout(Duration::from_millis(100)) {
                Ok(report) => {
                    self.handle(engine, report)?;
                    return Ok(true);
                }
                Err(RecvTimeoutError::Timeout) => self.reap_dead_workers(engine)?,
                Err(RecvTimeoutError::Disconnected) => {
                    self.reap_dead_workers(engine)?;
                    return Ok(false);
                }
            }
        }
    }

    /// A worker that ended without reporting (it panicked: a bug) leaves its plan running
    /// forever; give the plan up and poison the engine rather than wait on it.
    fn reap_dead_workers(&mut self, engine: &mut Engine) -> Result<(), Error> {
        for w in &mut self.workers {
            if w.thread.as_ref().is_some_and(JoinHandle::is_finished) {
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
                let result = result.and_then(|mut done| {
                    done.file = engine
                        .storage()
                        .open_fresh(&plan.temp_name())
                        .map_err(minivault_core::Error::Storage)?;
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
        for w in self.workers.iter_mut().filter(|w| w.busy.is_none()) {
            let Some(jobs) = &w.jobs else { continue };
            let Some(plan) = engine.plan_compaction(self.scratch_len, force) else { return };
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
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        let mut first_error = self.collect(engine).err();
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

/// A worker thread: merges the jobs it is given until its job channel closes.
fn work(
    worker: usize,
    mut storage: PosixStorage,
    jobs: Receiver<Job>,
    reports: Sender<Report>,
    stop: Arc<AtomicBool>,
    scratch_len: usize,
) {
    let mut scratch = vec![0u8; scratch_len];
    while let Ok(Job { plan, inputs }) = jobs.recv() {
        // Pages of inputs merged before may belong to files removed since, whose inode
        // numbers new tables can take.
        storage.clear_cache();
        let report = run(worker, &mut storage, plan, &inputs, &mut scratch, &stop);
        if reports.send(report).is_err() {
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
    stop: &AtomicBool,
) -> Report {
    let done = |result| Report::Done { worker, plan, result };
    let mut exec = match Execution::start(storage, plan, inputs, scratch) {
        Ok(exec) => exec,
        Err(e) => return done(Err(e)),
    };
    loop {
        if stop.load(Ordering::Relaxed) {
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
    match exec.finish(storage) {
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
