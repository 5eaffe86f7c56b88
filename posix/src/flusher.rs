//! The flush thread: the frozen MemTable is written out as an SSTable off the writer's path.
//!
//! It owns one buffer of `memtable_bytes` (the *flush copy*) and a storage handle of its own.
//! The engine keeps the MemTables; the write that fills the active one only seals it (no more
//! writes, no sort) and starts the next WAL (under the engine's lock, as before). Then, still
//! under the lock:
//!
//! ```text
//! writer side (engine lock held)                 flush thread (no lock of the Db's)
//! ──────────────────────────────                 ──────────────────────────────────
//! Engine::plan_flush: table id, WALs covered,
//!   whether dead entries may be dropped
//! Engine::copy_immutable into the flush copy ─►  flush::write_temp: the copy sorted, its
//!   (a memcpy of the used bytes)                   filter built in it, <id>.tmp written by its own
//!                                                  PosixStorage handle; flush::publish: synced,
//!                                                  renamed to <id>.sst, directory synced
//! the thread's nudge, a later call (or the ◄─     report, notify `reported`, nudge
//!   write waiting for it), under the lock:       (crate::background::Signal)
//!   Engine::install_flush: <id>.sst opened and
//!   added to the table set, WALs retired, the
//!   frozen MemTable emptied, the cap applied
//!   failed → Engine::fail_flush (poisons)
//! ```
//!
//! With each flush the thread also makes the next rotation's WAL, a *spare*
//! (`Engine::plan_spare_wal`, [`minivault_core::wal::spare::create`]: the file created, its
//! header written, one chunk preallocated, the file synced) before it writes the table, whose
//! publish syncs the directory for both names; the report carries it and the install hands it
//! to the engine right after the table (`Engine::install_spare_wal`). A rotation needs the
//! previous flush installed, so it always finds its spare ready, and takes it without a sync:
//! no device stall reaches the write that fills a MemTable through a rotation. At open, with no
//! flush to ride on, the spare is a job of its own ([`minivault_core::wal::spare::prepare`]);
//! one a rotation went on without is removed when it is handed back; close removes a spare
//! still waiting; under `max_bytes` none is made.
//!
//! While the thread writes a table, the compaction workers start no new step of their merges
//! (at most [`crate::FLUSH_GIVE_WAY`] for one flush, and not while writes are held at
//! `stop_tables`; [`FlushActivity`]): a writer that fills the next MemTable waits for this
//! flush, which should not wait behind the merges' writes. The inline flushes (`Db::flush`'s,
//! and those after the thread died) are not marked.
//!
//! The frozen MemTable stays in the engine and answers gets and scans until the install, which
//! the thread asks for itself when the engine's lock is free (a database no longer written
//! still installs its last flush; a held lock's get, or the next write, installs it otherwise). While
//! the flush runs, a write that must rotate again gets
//! [`minivault_core::Error::FlushPending`] from the engine (before its WAL record): [`crate::Db`]
//! waits for the report with the engine's lock let go, the one stop a write makes for a flush
//! ([`crate::BackgroundStats::flush_waits`]); before it, writes into the last quarter of the
//! active MemTable sleep [`crate::FLUSH_PACE`] each while the flush runs.
//!
//! # Failure
//! A failed flush poisons the database as a failed write does: the call that picks the report
//! up returns the error, later writes [`minivault_core::Error::Poisoned`]; reads go on (the
//! frozen MemTable is still there). Out of space does not poison
//! ([`minivault_core::Db::fail_flush`]): the MemTable stays and is planned again.
//!
//! # Shutdown and crashes
//! At close the running flush is finished, not abandoned: it is one MemTable (a few
//! milliseconds of writing), and installed it leaves the next open less WAL to replay. The
//! thread makes the table live itself (rename and directory sync, so that neither waits under
//! the engine's lock), except under `max_bytes`, where a table must not be in the directory
//! before the engine counts it (the install renames it then); the WALs it covers are removed
//! only by the install, after that. A crash
//! before the rename leaves every WAL and at most a `<id>.tmp`, which open removes; after it, the
//! table and the WALs it covers, which open recognises from the table's footer and removes
//! (`minivault_core::flush`, *Crash safety*).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use minivault_core::flush::{self, FlushPlan, Flushed, TableState};
use minivault_core::memtable::MemTable;
use minivault_core::sstable::Footer;
use minivault_core::wal::spare::{self, Spare};

use crate::background::{next_report, Signal};
use crate::engine::Engine;
use crate::storage::PosixStorage;
use crate::Error;

/// Called by the flush thread before it writes a table, with no lock held; an `Err` fails the
/// flush with it: for tests that hold a flush in progress or fail one ([`crate::Db::set_flush_hook`]).
#[doc(hidden)]
pub type FlushHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Bytes of the flush thread's own page cache: a flush only writes (its read-back comes from
/// the MemTable copy).
const FLUSH_CACHE_BYTES: usize = 64 << 10;

type CoreError = minivault_core::Error<io::Error>;

/// Whether the flush thread is writing a table: the compaction workers give way to it between
/// their steps (`crate::background`), so that a flush, which a writer may be waiting for, does
/// not share the disk and the two cores with two merges. A count raised when a flush starts and
/// again when it ends (odd while one runs), so that a worker can tell one flush from the next;
/// and the time the workers spent waiting ([`crate::BackgroundStats::merges_gave_way`]).
#[derive(Clone, Default)]
pub(crate) struct FlushActivity(Arc<Activity>);

#[derive(Default)]
struct Activity {
    flushes: AtomicU64,
    waited_micros: AtomicU64,
}

impl FlushActivity {
    /// The flush running now (its number), if any.
    pub(crate) fn running(&self) -> Option<u64> {
        let count = self.0.flushes.load(Ordering::Acquire);
        (count % 2 == 1).then_some(count)
    }

    /// Marks a flush running until the guard drops (also when the flush panics).
    pub(crate) fn begin(&self) -> Flushing<'_> {
        self.0.flushes.fetch_add(1, Ordering::AcqRel);
        Flushing(self)
    }

    /// Adds to the time the workers waited for flushes.
    pub(crate) fn note_wait(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .waited_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| Some(total.saturating_add(micros)));
    }

    /// The time the workers waited for flushes, all of them together.
    pub(crate) fn waited(&self) -> Duration {
        Duration::from_micros(self.0.waited_micros.load(Ordering::Relaxed))
    }
}

/// A flush running: [`FlushActivity::begin`].
pub(crate) struct Flushing<'a>(&'a FlushActivity);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0 .0.flushes.fetch_add(1, Ordering::AcqRel);
    }
}

// At most a flush and a spare wait in the channel: boxing the flush's MemTable would only add an
// allocation per flush.
#[allow(clippy::large_enum_variant)]
enum Job {
    Flush {
        plan: FlushPlan,
        mem: MemTable<Vec<u8>>,
        hook: Option<FlushHook>,
        /// The spare WAL for the rotation after the one that froze this MemTable, made before
        /// the table is written; the table's publish syncs the directory for both.
        spare: Option<Spare>,
    },
    /// Make the spare WAL the engine planned ([`minivault_core::wal::spare::prepare`]) when no
    /// flush comes with it (at open).
    Spare(Spare),
}

enum Report {
    Flush {
        plan: FlushPlan,
        /// The footer of the table, written and synced, and renamed to `<id>.sst` when the
        /// thread publishes (`None`: every entry was dead, nothing written), or why the flush
        /// failed (its `.tmp` removed).
        result: Result<Option<Footer>, CoreError>,
        /// The flush copy, back for the next flush.
        buffer: Vec<u8>,
        /// The spare WAL that came with the flush: made and durable (`Ok(true)`), removed again
        /// because the flush failed (`Ok(false)`), or why it could not be made.
        spare: Option<(Spare, Result<bool, CoreError>)>,
    },
    /// The spare WAL, made (its file and the directory synced), or why not (its file removed).
    Spare(Spare, Result<(), CoreError>),
}

/// The flush thread and the writer side's view of it.
pub(crate) struct Flusher {
    jobs: Option<Sender<Job>>,
    reports: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
    /// The flush copy, while no flush runs.
    buffer: Option<Vec<u8>>,
    /// The plan the thread runs.
    running: Option<FlushPlan>,
    /// The spare WAL the thread makes, if any: after each flush, the next rotation's WAL, so that
    /// the write that rotates syncs nothing ([`minivault_core::wal::spare`]).
    spare: Option<Spare>,
    hook: Option<FlushHook>,
    /// The thread makes its tables live itself (`flush::publish`); otherwise the install does
    /// (under `max_bytes`: a table must not be in the directory before the engine counts it).
    publish: bool,
    /// Flushes installed from the thread.
    pub(crate) installed: u64,
}

impl Flusher {
    /// Starts the flush thread on a second handle of `engine`'s storage, with a flush copy of
    /// `buffer_len` bytes (a MemTable buffer's length); it raises `signal` after each report and
    /// marks its flushes in `activity`.
    pub(crate) fn start(
        engine: &mut Engine,
        buffer_len: usize,
        signal: Signal,
        activity: FlushActivity,
        publish: bool,
    ) -> io::Result<Flusher> {
        let storage = engine.storage().second_handle(FLUSH_CACHE_BYTES)?;
        let (jobs, job_rx) = mpsc::channel();
        let (report_tx, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("minivault-flush".into())
            .spawn(move || work(storage, job_rx, report_tx, &signal, &activity, publish))?;
        Ok(Flusher {
            publish,
            jobs: Some(jobs),
            reports,
            thread: Some(thread),
            buffer: Some(vec![0u8; buffer_len]),
            running: None,
            spare: None,
            hook: None,
            installed: 0,
        })
    }

    /// Sets the hook the thread calls before each flush ([`FlushHook`]).
    pub(crate) fn set_hook(&mut self, hook: Option<FlushHook>) {
        self.hook = hook;
    }

    /// True while a flush handed to the thread has not been reported back.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// How far this thread takes its tables: published itself, or only synced (under
    /// `max_bytes`, where the install renames them).
    fn state(&self) -> TableState {
        if self.publish {
            TableState::Published
        } else {
            TableState::Synced
        }
    }

    /// Hands the thread the flush of the engine's immutable MemTable, if there is one and the
    /// thread is idle, and then the making of a spare WAL for the next rotation, if the engine
    /// plans one (none kept or being made: after each rotation, and at open).
    pub(crate) fn schedule(&mut self, engine: &mut Engine) {
        self.schedule_flush(engine);
        // Alone only while no flush runs (at open): otherwise one comes with the next flush,
        // and a rotation needs that flush installed before it can take one.
        if self.spare.is_some() || self.running.is_some() {
            return;
        }
        let Some(jobs) = &self.jobs else { return };
        let Some(spare) = engine.plan_spare_wal() else { return };
        match jobs.send(Job::Spare(spare)) {
            Ok(()) => self.spare = Some(spare),
            Err(_) => {
                self.jobs = None;
                engine.abandon_spare_wal(&spare);
            }
        }
    }

    fn schedule_flush(&mut self, engine: &mut Engine) {
        if self.running.is_some() {
            return;
        }
        let (Some(jobs), Some(buffer)) = (&self.jobs, self.buffer.take()) else { return };
        let Some(plan) = engine.plan_flush() else {
            self.buffer = Some(buffer);
            return;
        };
        let mem = match engine.copy_immutable(buffer) {
            Ok(mem) => mem,
            Err(buffer) => {
                engine.abandon_flush(&plan);
                self.buffer = Some(buffer);
                return;
            }
        };
        let spare = if self.spare.is_none() { engine.plan_spare_wal() } else { None };
        match jobs.send(Job::Flush { plan, mem, hook: self.hook.clone(), spare }) {
            Ok(()) => {
                self.running = Some(plan);
                self.spare = self.spare.or(spare);
            }
            Err(mpsc::SendError(job)) => {
                // The thread is gone (it panicked): forget it; the next rotation flushes inline.
                self.jobs = None;
                if let Job::Flush { mem, .. } = job {
                    self.buffer = Some(mem.into_buffer());
                }
                engine.abandon_flush(&plan);
                if let Some(spare) = spare {
                    engine.abandon_spare_wal(&spare);
                }
            }
        }
    }

    /// True when the thread is no longer running (it panicked).
    pub(crate) fn thread_ended(&self) -> bool {
        self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Installs (or reports the failure of) the flush the thread finished, if it has and
    /// `reported` (a thread raised the report flag: its report is sent before); a thread that
    /// died without reporting fails its flush (poisoning the engine).
    pub(crate) fn collect(&mut self, engine: &mut Engine, reported: bool) -> Result<(), Error> {
        let mut first_error = None;
        while let Some(report) = next_report(reported, &self.reports) {
            let (plan, result, buffer, spare) = match report {
                Report::Flush { plan, result, buffer, spare } => (plan, result, buffer, spare),
                Report::Spare(spare, made) => {
                    if let Err(e) = self.hand_over(engine, spare, made.map(|()| true)) {
                        first_error.get_or_insert(e);
                    }
                    continue;
                }
            };
            self.buffer = Some(buffer);
            self.running = None;
            // The table was written through the thread's handle and cache: the engine reads it
            // through a handle of its own storage.
            let result = result.and_then(|table| match table {
                Some(footer) => {
                    let name = self.state().file_name(plan.id);
                    let file = engine.storage().open_fresh(&name).map_err(CoreError::Storage)?;
                    Ok(Some((file, footer)))
                }
                None => Ok(None),
            });
            let handled = match result {
                Ok(table) => {
                    let installed = engine.install_flush(Flushed { plan, table, state: self.state() });
                    if installed.is_ok() {
                        self.installed += 1;
                    }
                    installed
                }
                Err(e) => engine.fail_flush(&plan, e),
            };
            if let Err(e) = handled {
                first_error.get_or_insert(e.into());
            }
            // After the install: the spare names the WAL that is current until the next rotation.
            if let Some((spare, made)) = spare {
                if let Err(e) = self.hand_over(engine, spare, made) {
                    first_error.get_or_insert(e);
                }
            }
        }
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            self.jobs = None;
            if let Some(spare) = self.spare.take() {
                engine.abandon_spare_wal(&spare);
            }
            if let Some(plan) = self.running.take() {
                if let Err(e) = engine.fail_flush(&plan, CoreError::Poisoned) {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Hands the engine the spare WAL the thread made (`Ok(true)`), or forgets it (`Ok(false)`:
    /// removed again after its flush failed), or reports why it could not be made.
    fn hand_over(
        &mut self,
        engine: &mut Engine,
        spare: Spare,
        made: Result<bool, CoreError>,
    ) -> Result<(), Error> {
        self.spare = None;
        match made {
            Ok(true) => {
                engine.install_spare_wal(spare);
                Ok(())
            }
            Ok(false) => {
                engine.abandon_spare_wal(&spare);
                Ok(())
            }
            Err(e) => engine.fail_spare_wal(&spare, e).map_err(Into::into),
        }
    }

    /// Finishes the running flush (the thread completes it and exits), joins the thread and
    /// installs the table. Only from close and drop.
    pub(crate) fn shut_down(&mut self, engine: &mut Engine) -> Result<(), Error> {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Joined: whatever it reported is in the channel.
        let collected = self.collect(engine, true);
        // A spare still waiting is removed (not durably: should it come back after a power cut,
        // the next open sets it aside).
        if let Some(spare) = self.spare.take() {
            engine.abandon_spare_wal(&spare);
        }
        engine.discard_spare_wal();
        // A thread that died without reporting.
        if let Some(plan) = self.running.take() {
            engine.abandon_flush(&plan);
            collected?;
            return Err(CoreError::Poisoned.into());
        }
        collected
    }
}

/// The flush thread: writes the MemTable copies it is given until its job channel closes.
fn work(
    mut storage: PosixStorage,
    jobs: Receiver<Job>,
    reports: Sender<Report>,
    signal: &Signal,
    activity: &FlushActivity,
    publish: bool,
) {
    while let Ok(job) = jobs.recv() {
        let (plan, mut mem, hook, spare) = match job {
            Job::Flush { plan, mem, hook, spare } => (plan, mem, hook, spare),
            Job::Spare(spare) => {
                let made = spare::prepare(&mut storage, &spare);
                if !signal.report(&reports, Report::Spare(spare, made)) {
                    break;
                }
                continue;
            }
        };
        let flushing = activity.begin();
        // Pages of files removed since may share inode numbers with new tables.
        storage.clear_cache();
        // The spare first: its file sync beside the table's, its name made durable by the
        // directory sync that publishes the table.
        let mut spare = spare.map(|s| (s, spare::create(&mut storage, &s).map(|()| true)));
        let result = match hook.map(|hook| hook()) {
            Some(Err(e)) => Err(CoreError::Storage(e)),
            _ => flush::write_temp(&mut storage, &plan, &mut mem).and_then(|table| match table {
                // Live here, off the lock: the install only opens it and retires the WALs.
                Some((file, footer)) if publish => {
                    Ok(Some((flush::publish(&mut storage, &plan, file)?, footer)))
                }
                // Synced here, off the lock: the install only renames it (`TableState::Synced`).
                Some((mut file, footer)) => {
                    flush::sync_temp(&mut storage, &mut file)?;
                    Ok(Some((file, footer)))
                }
                None => Ok(None),
            }),
        };
        if result.is_err() {
            // Open removes it if this fails.
            let _ = minivault_core::Storage::remove(&mut storage, &plan.temp_name());
        }
        if let Some((s, made)) = spare.as_mut().filter(|(_, made)| matches!(made, Ok(true))) {
            let name = minivault_core::names::file_name(minivault_core::names::FileKind::Wal, s.id);
            let published = publish && matches!(result, Ok(Some(_)));
            if result.is_err() {
                // No directory sync made its name durable: it goes (a leftover is set aside
                // by the next open).
                let _ = minivault_core::Storage::remove(&mut storage, &name);
                *made = Ok(false);
            } else if !published {
                if let Err(e) = minivault_core::Storage::sync_dir(&mut storage) {
                    let _ = minivault_core::Storage::remove(&mut storage, &name);
                    *made = Err(CoreError::Storage(e));
                }
            }
        }
        // The table is live; the engine reopens it through its own handle.
        let result = result.map(|table| table.map(|(_file, footer)| footer));
        drop(flushing);
        let report = Report::Flush { plan, result, buffer: mem.into_buffer(), spare };
        if !signal.report(&reports, report) {
            break;
        }
    }
}
