//! The hand-off of the background threads' reports to the calls that install them: a thread
//! sends its report on its channel, then raises one flag shared by every thread ([`Signal`]),
//! wakes the writes waiting for a report and nudges the handle; a call under the engine's lock
//! lowers the flag, and reads the channels only when it was up ([`Signal::take`],
//! [`next_report`]).
//!
//! Rules it keeps (`shuttle_tests` checks them over every interleaving of small scenarios):
//! - a report never waits unread with the flag down: it is sent before its flag rises, and a
//!   call lowers the flag before it reads, so a report a call misses raises the flag after that
//!   call lowered it, and the next call (or the nudge) reads it;
//! - a thread's nudge installs its report when the engine's lock is free, and gives up only
//!   when the report was read, the handle is closing, or the lock stayed busy for all of
//!   [`NUDGE_TRIES`] (the flag is then still up, for the next call);
//! - a close that sets [`Signal::close`] while holding the engine's lock, joins the threads and
//!   raises the flag itself ([`Signal::raise`]) reads every report, and joining cannot wait for a
//!   nudge (nudges only try the lock).
//!
//! Generic over its primitives (`super::sync`) so that `shuttle_tests` compiles this file again
//! over shuttle's.

use std::sync::{Arc, OnceLock};

use super::sync::{pause, AtomicBool, Condvar, Ordering, Receiver, Sender, NUDGE_TRIES};

/// What the handle gives the threads to install their reports without waiting for a call
/// ([`Signal::set_nudge`]): it installs them if the engine's lock is free, and returns `false`
/// when the lock was held (then tried again).
pub(crate) type Nudge = Box<dyn Fn() -> bool + Send + Sync>;

/// How a background thread (a worker, the flush thread) says it reported: it raises the flag
/// the calls under the engine's lock read, notifies the writes that wait for a report, and
/// nudges the handle, which installs the report at once when the engine's lock is free, so
/// that a database that stops being written still finishes its flush and its compactions.
#[derive(Clone)]
pub(crate) struct Signal {
    reported: Arc<Condvar>,
    waiting: Arc<AtomicBool>,
    nudge: Arc<OnceLock<Nudge>>,
    /// Set by the close before it joins the threads: no more nudges.
    closing: Arc<AtomicBool>,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal {
            reported: Arc::new(Condvar::new()),
            waiting: Arc::new(AtomicBool::new(false)),
            nudge: Arc::default(),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends `report` on `to`, then raises the flag, wakes the waiting writes and nudges. False
    /// when the channel's receiver is gone (the handle dropped it: the thread is to end).
    pub(crate) fn report<R>(&self, to: &Sender<R>, report: R) -> bool {
        if to.send(report).is_err() {
            return false;
        }
        self.raise();
        self.reported.notify_all();
        let Some(nudge) = self.nudge.get() else { return true };
        for _ in 0..NUDGE_TRIES {
            // Lowered: a write, a get or another thread's nudge picked the report up; or the
            // handle is closing, and installs it after the joins.
            if !self.waiting.load(Ordering::Acquire) || self.closing.load(Ordering::Acquire) || nudge() {
                return true;
            }
            pause();
        }
        true
    }

    /// Raises the flag: after a report, or by the close once the threads are joined (whoever
    /// lowered it last, the next [`Signal::take`] then reads the channels).
    pub(crate) fn raise(&self) {
        // A read-modify-write, not a store: a second thread's report then continues the first
        // one's release sequence, so the take that reads the flag sees both reports (with a
        // plain store it could see only the second, and the first would wait unread).
        let _ = self.waiting.swap(true, Ordering::AcqRel);
    }

    /// Lowers the flag; true when it was up: the channels are to be read ([`next_report`]).
    /// A report sent from here on raises it again.
    pub(crate) fn take(&self) -> bool {
        self.waiting.swap(false, Ordering::AcqRel)
    }

    /// True while a report may wait unread.
    pub(crate) fn is_up(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// No more nudges: set by the close, under the engine's lock, before it joins the threads.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Gives the threads their nudge; set once.
    pub(crate) fn set_nudge(&self, nudge: Nudge) {
        let _ = self.nudge.set(nudge);
    }

    /// The condition variable the writes held back for a report wait on.
    pub(crate) fn condvar(&self) -> Arc<Condvar> {
        Arc::clone(&self.reported)
    }
}

/// The next report waiting on `reports` when `reported` (what [`Signal::take`] returned, or a
/// reason of the caller's own to read, such as a thread found dead); `None` otherwise.
pub(crate) fn next_report<R>(reported: bool, reports: &Receiver<R>) -> Option<R> {
    reported.then(|| reports.try_recv().ok()).flatten()
}
