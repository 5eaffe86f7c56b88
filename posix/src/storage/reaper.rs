//! [`Reaper`]: a thread that unlinks the tables a compaction replaced and closes their files,
//! and unlinks the WALs a flush made obsolete, so that the engine's lock is not held while the
//! file system frees their blocks: the last close of a removed table of a few hundred megabytes
//! (or its unlink, when nothing holds it open) takes tens of milliseconds, an install under the
//! lock replaces up to fifteen, and a WAL's unlink was measured at 64 ms under load.
//!
//! The engine's storage hands such names over ([`minivault_core::Storage::remove_obsolete`]),
//! and then the files ([`minivault_core::Storage::retire`]); the engine's lock holder hands
//! over what else may hold the last descriptor of such a file (a view of the tables that was
//! replaced, [`RemovalQueue::drop_later`]). All of it while a [`RemovalQueue`] is attached to
//! the storage (with background threads:
//! `crate::background::Background` starts the reaper and attaches its queue). The names are
//! never used again, and a file still there at a crash is removed by the next open (core
//! `Storage::remove_obsolete` says why), so no answer depends on when the unlink happens; the
//! storage still bounds how many obsolete WALs a crash can leave, by queuing a WAL only while
//! fewer than two are queued (open removes any number, but each is a file to list and remove). A failed
//! unlink (the file already gone, or not removable) is left to the next open as well, and
//! counted ([`Reaper::failed_unlinks`], reported as `crate::BackgroundStats::failed_unlinks`).
//! [`Reaper::settle`] waits
//! until every queued name has been unlinked and every queued file closed ([`crate::Db::flush`],
//! close); dropping the reaper settles it too.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use super::sys;

/// Jobs queued and not yet done, the condition variable that says the count fell, the unlinks
/// that failed, and how many of the jobs are unlinks of WALs.
#[derive(Default)]
struct Pending {
    count: Mutex<usize>,
    /// WAL unlinks queued and not yet done ([`RemovalQueue::pending_wals`]).
    wals: AtomicUsize,
    fell: Condvar,
    /// Unlinks that failed since the reaper started (their files left to the next open).
    failed: AtomicU64,
}

impl Pending {
    fn add(&self, n: isize) {
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_add_signed(n);
        if n < 0 {
            self.fell.notify_all();
        }
    }
}

/// What the reaper is handed.
enum Job {
    /// A name to unlink, and whether it is a WAL's.
    Unlink(CString, bool),
    /// Something that may hold the last descriptor of a removed file, to drop.
    Drop(Box<dyn Send>),
}

/// The sending side, attached to the engine's storage.
#[derive(Clone)]
pub(crate) struct RemovalQueue {
    jobs: Sender<Job>,
    pending: Arc<Pending>,
}

impl std::fmt::Debug for RemovalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemovalQueue")
    }
}

impl RemovalQueue {
    /// Queues `name` (a WAL's when `wal`) for the reaper to unlink; gives it back when the
    /// reaper is gone.
    pub(super) fn push(&self, name: CString, wal: bool) -> Result<(), CString> {
        if wal {
            self.pending.wals.fetch_add(1, Ordering::Relaxed);
        }
        if self.send(Job::Unlink(name.clone(), wal)) {
            Ok(())
        } else {
            if wal {
                self.pending.wals.fetch_sub(1, Ordering::Relaxed);
            }
            Err(name)
        }
    }

    /// WAL unlinks queued and not yet done.
    pub(crate) fn pending_wals(&self) -> usize {
        self.pending.wals.load(Ordering::Relaxed)
    }

    /// Hands `value` to the reaper to drop, after the names and values queued before it: a
    /// file of a removed table, or what shares its descriptor. Dropped here and now when the
    /// reaper is gone.
    pub(crate) fn drop_later<T: Send + 'static>(&self, value: T) {
        // A job the reaper cannot take any more is dropped as the send fails.
        self.send(Job::Drop(Box::new(value)));
    }

    /// Queues `job`; false (and `job` dropped) when the reaper is gone.
    fn send(&self, job: Job) -> bool {
        self.pending.add(1);
        let sent = self.jobs.send(job).is_ok();
        if !sent {
            self.pending.add(-1);
        }
        sent
    }
}

/// The reaper thread and its queue.
pub(crate) struct Reaper {
    queue: Option<RemovalQueue>,
    pending: Arc<Pending>,
    /// Detached when the reaper is dropped: it ends when the last queue is let go.
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the thread; `dir` is a descriptor of the database directory.
    pub(crate) fn start(dir: OwnedFd) -> io::Result<Reaper> {
        let (jobs, received) = mpsc::channel::<Job>();
        let pending = Arc::new(Pending::default());
        let counted = Arc::clone(&pending);
        let thread = thread::Builder::new().name("minivault-reaper".into()).spawn(move || {
            for job in received {
                // A drop that panics (a bug) must neither end the thread, leaving the jobs
                // behind it queued, nor leave `settle` (so `Db::flush` and close) waiting.
                let ran = panic::catch_unwind(AssertUnwindSafe(|| match job {
                    Job::Unlink(name, wal) => {
                        let unlinked = sys::unlink_at(dir.as_fd(), &name).is_ok();
                        if wal {
                            counted.wals.fetch_sub(1, Ordering::Relaxed);
                        }
                        unlinked
                    }
                    Job::Drop(value) => {
                        drop(value);
                        true
                    }
                }));
                // A file that is already gone, or that cannot be removed, is left to open.
                if matches!(ran, Ok(false)) {
                    counted.failed.fetch_add(1, Ordering::Relaxed);
                }
                counted.add(-1);
            }
        })?;
        let queue = RemovalQueue { jobs, pending: Arc::clone(&pending) };
        Ok(Reaper { queue: Some(queue), pending, thread: Some(thread) })
    }

    /// The queue to attach to the engine's storage.
    pub(crate) fn queue(&self) -> Option<RemovalQueue> {
        self.queue.clone()
    }

    /// Returns once every name queued so far has been unlinked and every value dropped.
    pub(crate) fn settle(&self) {
        self.settler().settle();
    }

    /// Unlinks that failed since the reaper started: the name was already gone or could not be
    /// removed (the next open removes what is left). An unlink still queued is not counted yet.
    pub(crate) fn failed_unlinks(&self) -> u64 {
        self.pending.failed.load(Ordering::Relaxed)
    }

    /// A handle that waits as [`Reaper::settle`] does, for a caller that must let a lock go
    /// before it waits (the unlinks it waits for take tens of milliseconds).
    pub(crate) fn settler(&self) -> Settler {
        Settler(Arc::clone(&self.pending))
    }
}

/// Waits for a [`Reaper`]'s queue to empty ([`Reaper::settler`]).
pub(crate) struct Settler(Arc<Pending>);

impl Settler {
    /// Returns once every name queued so far has been unlinked and every value dropped.
    pub(crate) fn settle(&self) {
        let mut count = self.0.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count > 0 {
            count = self.0.fell.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Reaper {
    /// Waits until what is queued is unlinked and dropped. The thread itself ends once every
    /// queue is let go (the storage's too: `PosixStorage::set_removals(None)`, or the storage
    /// dropped).
    fn drop(&mut self) {
        self.queue = None;
        self.settle();
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::fs;

    use minivault_core::names::{file_name, FileKind, FileName};
    use minivault_core::Storage;

    use super::*;
    use crate::storage::tests::storage;

    #[test]
    fn names_handed_to_the_reaper_are_gone_once_it_settles() {
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        for i in 0..20 {
            fs::write(dir.path().join(format!("{i}.sst")), vec![7u8; 100_000]).unwrap();
        }
        for i in 0..20 {
            storage.remove_obsolete(&format!("{i}.sst")).unwrap();
        }
        reaper.settle();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(reaper.failed_unlinks(), 0);
    }

    #[test]
    fn an_unlink_that_fails_is_counted_not_returned() {
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        fs::write(dir.path().join("3.sst"), b"x").unwrap();
        fs::write(dir.path().join("4.sst"), b"x").unwrap();
        storage.remove_obsolete("3.sst").unwrap();
        // Gone behind the reaper's back, or never there: the reaper's to count, not the
        // caller's error.
        fs::remove_file(dir.path().join("4.sst")).unwrap();
        storage.remove_obsolete("4.sst").unwrap();
        storage.remove_obsolete("missing.wal").unwrap();
        reaper.settle();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(reaper.failed_unlinks(), 2);
    }

    /// What a [`Witness`] saw as it was dropped: the thread's name, and whether its file was gone.
    type Seen = Arc<Mutex<Vec<(Option<String>, bool)>>>;

    /// Records, as it is dropped, the thread it is dropped on and whether `name` was gone.
    struct Witness {
        name: std::path::PathBuf,
        seen: Seen,
    }

    impl Drop for Witness {
        fn drop(&mut self) {
            let thread = thread::current().name().map(str::to_owned);
            self.seen.lock().unwrap().push((thread, !self.name.exists()));
        }
    }

    #[test]
    fn retired_files_are_closed_on_the_reapers_thread_after_the_unlinks_queued_before_them() {
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let name = format!("{i}.sst");
            let file = storage.create(&name).unwrap();
            storage.remove_obsolete(&name).unwrap();
            storage.retire(file);
            storage.drop_later(Witness { name: dir.path().join(&name), seen: Arc::clone(&seen) });
        }
        reaper.settle();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 5, "settle waits for the drops too");
        for (thread, gone) in seen.iter() {
            assert_eq!(thread.as_deref(), Some("minivault-reaper"));
            assert!(gone, "dropped after the unlink queued before it");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_drop_that_panics_neither_stops_the_reaper_nor_hangs_settle() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("a bug in a dropped value");
            }
        }
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        storage.drop_later(Bomb);
        fs::write(dir.path().join("5.sst"), b"x").unwrap();
        storage.remove_obsolete("5.sst").unwrap();
        reaper.settle();
        assert!(!dir.path().join("5.sst").exists(), "the job after the panic ran");
        assert_eq!(reaper.failed_unlinks(), 0);
    }

    #[test]
    fn an_obsolete_wal_is_unlinked_in_the_call_once_two_wals_wait_at_the_reaper() {
        /// Holds the reaper in its drop until the test lets it go.
        struct Gate(mpsc::Receiver<()>);
        impl Drop for Gate {
            fn drop(&mut self) {
                let _ = self.0.recv();
            }
        }
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        let (open, gate) = mpsc::channel();
        storage.drop_later(Gate(gate));
        let wal = |id| file_name(FileKind::Wal, id);
        let table = |id| file_name(FileKind::Table, id);
        let names = [table(1), table(2), table(3), wal(4), wal(5), wal(6)];
        for name in &names {
            fs::write(dir.path().join(name.as_str()), b"x").unwrap();
        }
        let exists = |name: &FileName| dir.path().join(name.as_str()).exists();
        // Tables queued behind the gate do not count against WALs.
        for name in &names[..5] {
            storage.remove_obsolete(name).unwrap();
        }
        assert!(names[..5].iter().all(exists), "all queued behind the gate");
        // Two WALs wait: the third is unlinked here.
        storage.remove_obsolete(&names[5]).unwrap();
        assert!(!exists(&names[5]), "unlinked in the call");
        open.send(()).unwrap();
        reaper.settle();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(reaper.queue().map(|q| q.pending_wals()), Some(0));
    }

    #[test]
    fn without_a_reaper_a_retired_file_is_closed_in_the_call() {
        let (dir, storage) = storage();
        let seen = Arc::new(Mutex::new(Vec::new()));
        storage.drop_later(Witness { name: dir.path().join("0.sst"), seen: Arc::clone(&seen) });
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(seen.lock().unwrap()[0].0, thread::current().name().map(str::to_owned));
    }

    #[test]
    fn once_the_queue_is_let_go_names_are_unlinked_in_the_call() {
        let (dir, mut storage) = storage();
        let reaper = Reaper::start(storage.dir_handle().unwrap()).unwrap();
        storage.set_removals(reaper.queue());
        storage.set_removals(None);
        drop(reaper);
        fs::write(dir.path().join("2.sst"), b"x").unwrap();
        storage.remove_obsolete("2.sst").unwrap();
        assert!(!dir.path().join("2.sst").exists(), "unlinked in the call");
        assert!(storage.remove_obsolete("2.sst").is_err(), "a missing file is the caller's error then");
    }
}
