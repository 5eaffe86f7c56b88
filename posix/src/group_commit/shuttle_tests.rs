//! The hand-off of `protocol.rs`, compiled again over shuttle's `Mutex` and `Condvar`, and every
//! interleaving of two writers explored (shuttle's depth-first scheduler, with syncs that succeed
//! and that fail), plus random and PCT schedules of groups of up to six writers.
//!
//! The model: a log whose records are appended under a lock (each taking the next ticket), and
//! a device that holds what completed syncs covered (`device`). A sync reads how far the log
//! goes, yields (other threads run while it is "in flight"), then either makes that much
//! durable or fails. Each writer checks, when `wait_durable` returns:
//! - `Ok` only if the device holds its record (acknowledged only after a covering sync);
//! - `Err` only if a sync failed and the device does not hold its record (no error for a write
//!   a completed sync covered);
//! - after a failed sync, no writer whose record the device lacks gets `Ok`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::thread;

/// What the protocol is compiled over here.
mod sync {
    pub use shuttle::sync::{Condvar, Mutex, MutexGuard};
}

// The same file as the parent's `protocol`, compiled over shuttle's primitives on purpose.
#[allow(clippy::duplicate_mod)]
#[path = "protocol.rs"]
mod protocol;

use protocol::GroupCommit;

/// The log and the device: records appended, records durable, syncs started.
struct Log {
    /// Appending a record and taking its ticket are one step, as under the engine's lock.
    appended: AtomicU64,
    device: AtomicU64,
    syncs: AtomicU64,
    /// The sync with this number (from 1) fails; 0: none does.
    fail_at: u64,
    failed: AtomicU64,
}

impl Log {
    fn new(fail_at: u64) -> Self {
        Log {
            appended: AtomicU64::new(0),
            device: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            fail_at,
            failed: AtomicU64::new(0),
        }
    }

    fn append(&self) -> u64 {
        self.appended.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The leader's job: what is appended now, "in flight" for a while, then durable or failed.
    fn sync(&self) -> Result<u64, &'static str> {
        let target = self.appended.load(Ordering::SeqCst);
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        thread::yield_now();
        if n == self.fail_at {
            self.failed.store(1, Ordering::SeqCst);
            return Err("injected sync failure");
        }
        self.device.fetch_max(target, Ordering::SeqCst);
        Ok(target)
    }
}

/// `writers` threads, each appending `writes` records and waiting for each to be durable.
fn scenario(writers: usize, writes: usize, fail_at: u64) {
    let log = Arc::new(Log::new(fail_at));
    let gc = Arc::new(GroupCommit::<&'static str>::new());
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (log, gc) = (log.clone(), gc.clone());
            thread::spawn(move || {
                for _ in 0..writes {
                    let ticket = log.append();
                    let result = gc.wait_durable(ticket, 1, || log.sync());
                    let on_device = log.device.load(Ordering::SeqCst) >= ticket;
                    match result {
                        Ok(()) => assert!(on_device, "ticket {ticket} acknowledged before a sync covered it"),
                        Err(_) => {
                            assert!(log.failed.load(Ordering::SeqCst) == 1, "an error without a failed sync");
                            assert!(!on_device, "ticket {ticket} failed although a sync covered it");
                            // After a failure, every later write of this writer fails too.
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (syncs, acked) = gc.counts();
    let total = (writers * writes) as u64;
    if fail_at == 0 {
        assert_eq!(acked, total, "every write acknowledged");
        assert!(syncs <= total, "at most one sync per write");
    }
}

#[test]
fn every_interleaving_of_two_writers() {
    shuttle::check_dfs(|| scenario(2, 1, 0), None);
}

#[test]
fn every_interleaving_of_two_writers_with_a_failing_sync() {
    for fail_at in 1..=2 {
        shuttle::check_dfs(move || scenario(2, 1, fail_at), None);
    }
}

#[test]
fn random_and_pct_schedules_of_larger_groups() {
    // Exhaustive search is out of reach past two writers (three writers of one write each ran
    // for minutes); PCT finds bugs of depth 3 with a known probability per run.
    shuttle::check_pct(|| scenario(3, 1, 0), 10_000, 3);
    shuttle::check_pct(|| scenario(2, 2, 0), 10_000, 3);
    shuttle::check_random(|| scenario(6, 3, 0), 5_000);
    shuttle::check_pct(|| scenario(6, 3, 0), 5_000, 3);
    for fail_at in [1, 2, 4] {
        shuttle::check_random(move || scenario(5, 3, fail_at), 3_000);
        shuttle::check_pct(move || scenario(5, 3, fail_at), 3_000, 3);
    }
}
