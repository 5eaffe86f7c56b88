//! The report hand-off of `signal.rs`, compiled again over shuttle's atomics, `Condvar` and
//! channels, and explored over every interleaving of small scenarios (shuttle's depth-first
//! scheduler), then random and PCT schedules of larger ones.
//!
//! The model: the engine's lock is a `Mutex` over the state a call installs into (how many
//! reports it installed, and the receiving ends of two channels: the compaction workers' and
//! the flush thread's, both raising the one flag as in `Background`). Background threads each
//! send reports through [`Signal::report`], whose nudge tries the lock and, when free, installs
//! what is waiting, as `Db`'s nudge does; writers take the lock and install, as every write does
//! before it runs ([`collect`], the same steps as `Background::collect`); a close takes the
//! lock, stops the nudges, joins the threads, raises the flag and installs. Checked:
//! - once the threads and writers have ended, a report that waits unread has its flag up (so
//!   the next call, or a nudge, reads it);
//! - with no writer at all, a lone thread's nudges install its reports;
//! - a close installs every report, joining the threads while holding the lock never
//!   deadlocks (shuttle reports a deadlock as a failure), and a thread nudges at most once after
//!   the close stopped the nudges (the one it had decided on before; seen failing with the
//!   `closing` check removed from `Signal::report`).
//!
//! What it does not show: the nudge here is a stand-in for `Db`'s (a `try_lock` and the same
//! collect), no write waits on the condition variable, and shuttle runs the atomics
//! sequentially consistent, so the choice of orderings (`swap` with `AcqRel` over a `store`)
//! is argued in `signal.rs`, not checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use shuttle::sync::mpsc::{channel, Receiver, Sender};
use shuttle::sync::Mutex;
use shuttle::thread;

/// What the hand-off is compiled over here.
mod sync {
    pub use shuttle::sync::atomic::{AtomicBool, Ordering};
    pub use shuttle::sync::mpsc::{Receiver, Sender};
    pub use shuttle::sync::Condvar;

    /// Few tries: each is a point where shuttle may switch threads, and the search grows with
    /// them. A nudge that runs out of tries is a case the rules cover (the flag stays up).
    pub const NUDGE_TRIES: u32 = 2;

    pub fn pause() {
        shuttle::thread::yield_now();
    }
}

// The same file as the parent's `signal`, compiled over shuttle's primitives on purpose.
// (Its `condvar` is for the writes that wait, which this model does not have.)
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "signal.rs"]
mod signal;

use signal::{next_report, Signal};

/// What the engine's lock guards here.
struct Engine {
    installed: u32,
    compactions: Receiver<u32>,
    flushes: Receiver<u32>,
}

/// What `Background::collect` does with the reports: lower the flag, then read both channels
/// if it was up (the flush thread's first).
fn collect(signal: &Signal, engine: &mut Engine) {
    let reported = signal.take();
    while next_report(reported, &engine.flushes).is_some() {
        engine.installed += 1;
    }
    while next_report(reported, &engine.compactions).is_some() {
        engine.installed += 1;
    }
}

/// How many reports wait unread on the two channels (read and counted: called only once every
/// thread has ended, when nothing else will read them).
fn unread(engine: &mut Engine) -> u32 {
    let mut n = 0;
    while engine.flushes.try_recv().is_ok() {
        n += 1;
    }
    while engine.compactions.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// One scenario: `workers` compaction threads and a flush thread each send `reports` reports;
/// `writers` threads each make `calls` calls; then either a close (`close`) or a check of the
/// rules with every thread ended.
fn scenario(workers: usize, reports: u32, writers: usize, calls: u32, close: bool) {
    let (compaction_tx, compactions) = channel::<u32>();
    let (flush_tx, flushes) = channel::<u32>();
    let engine = Arc::new(Mutex::new(Engine { installed: 0, compactions, flushes }));
    let signal = Signal::new();
    // Nudges made once the close has stopped them.
    let closed = Arc::new(AtomicBool::new(false));
    let after_close = Arc::new(AtomicU32::new(0));
    let (weak, nudged) = (Arc::downgrade(&engine), signal.clone());
    let (seen_closed, late) = (closed.clone(), after_close.clone());
    signal.set_nudge(Box::new(move || {
        if seen_closed.load(Ordering::SeqCst) {
            late.fetch_add(1, Ordering::SeqCst);
        }
        let Some(engine) = weak.upgrade() else { return true };
        let Ok(mut guard) = engine.try_lock() else { return false };
        collect(&nudged, &mut guard);
        true
    }));
    let senders: Vec<(Sender<u32>, Signal)> = (0..workers)
        .map(|_| (compaction_tx.clone(), signal.clone()))
        .chain(std::iter::once((flush_tx.clone(), signal.clone())))
        .collect();
    drop((compaction_tx, flush_tx));
    let threads: Vec<_> = senders
        .into_iter()
        .map(|(tx, signal)| {
            thread::spawn(move || {
                for r in 0..reports {
                    assert!(signal.report(&tx, r), "the receiver is held until the end");
                }
            })
        })
        .collect();
    let writer_threads: Vec<_> = (0..writers)
        .map(|_| {
            let (engine, signal) = (engine.clone(), signal.clone());
            thread::spawn(move || {
                for _ in 0..calls {
                    let mut guard = engine.lock().unwrap();
                    collect(&signal, &mut guard);
                }
            })
        })
        .collect();
    for w in writer_threads {
        w.join().unwrap();
    }
    let sent = (workers as u32 + 1) * reports;
    if close {
        // As `Background::shut_down`, under the engine's lock: no more nudges, join, raise,
        // install.
        let mut guard = engine.lock().unwrap();
        signal.close();
        closed.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        signal.raise();
        collect(&signal, &mut guard);
        assert_eq!(guard.installed, sent, "a close installs every report");
        let late = after_close.load(Ordering::SeqCst);
        assert!(late <= workers as u32 + 1, "{late} nudges after the close stopped them");
        return;
    }
    for t in threads {
        t.join().unwrap();
    }
    let mut guard = engine.lock().unwrap();
    let up = signal.is_up();
    let waiting = unread(&mut guard);
    assert!(waiting == 0 || up, "{waiting} reports wait unread with the flag down");
    assert_eq!(guard.installed + waiting, sent);
    if writers == 0 && reports > 0 && workers == 0 {
        // One thread, a lock no one else takes: its nudge installs at the first try.
        assert_eq!(guard.installed, sent, "the nudge installs what a lone thread reported");
    }
}

#[test]
fn every_interleaving_of_a_thread_reporting_beside_a_writer() {
    shuttle::check_dfs(|| scenario(0, 1, 1, 1, false), None);
}

#[test]
fn every_interleaving_of_a_thread_whose_nudges_alone_install_its_reports() {
    shuttle::check_dfs(|| scenario(0, 2, 0, 0, false), None);
}

#[test]
fn every_interleaving_of_a_close_while_a_thread_reports() {
    shuttle::check_dfs(|| scenario(0, 1, 0, 0, true), None);
    shuttle::check_dfs(|| scenario(0, 1, 1, 1, true), None);
}

#[test]
fn random_and_pct_schedules_of_more_threads_and_calls() {
    // Exhaustive search is out of reach with two reporting threads (two threads of one report
    // each and no writer: 97 s); PCT finds bugs of depth 3 with a known probability per run.
    shuttle::check_pct(|| scenario(1, 1, 0, 0, false), 10_000, 3);
    shuttle::check_pct(|| scenario(1, 2, 1, 2, false), 10_000, 3);
    shuttle::check_random(|| scenario(2, 3, 2, 4, false), 5_000);
    shuttle::check_pct(|| scenario(2, 3, 2, 4, false), 5_000, 3);
    shuttle::check_pct(|| scenario(1, 1, 1, 1, true), 10_000, 3);
    shuttle::check_pct(|| scenario(3, 2, 1, 3, true), 5_000, 3);
}
