//! The hand-off itself: [`GroupCommit`], over whatever `Mutex` and `Condvar` the parent module
//! names `sync` (the standard library's in the build, shuttle's in the schedule explorer's test,
//! which compiles this very file again).

use std::sync::PoisonError;

use super::sync::{Condvar, Mutex, MutexGuard};

/// What the hand-off knows: how far the log is durable, whether a leader is syncing, and the
/// error of a sync that failed.
#[derive(Debug)]
struct State<E> {
    /// Every ticket at or below this is covered by a completed sync.
    durable: u64,
    /// A leader is syncing now.
    syncing: bool,
    /// A sync failed with this error: every ticket above `durable` fails with it, for good.
    failed: Option<E>,
    /// Syncs run, and writes acknowledged (counters; a write group's ticket acknowledges each
    /// of its writes).
    syncs: u64,
    acknowledged: u64,
}

/// A leader's sync in progress: should `sync` panic, its drop ends the sync (nothing counted
/// durable) and wakes the waiters, so that one of them leads the next; none waits for good.
struct Syncing<'a, E> {
    commit: &'a GroupCommit<E>,
    ended: bool,
}

impl<E> Drop for Syncing<'_, E> {
    fn drop(&mut self) {
        if !self.ended {
            let mut state = self.commit.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.syncing = false;
            self.commit.done.notify_all();
        }
    }
}

/// The group-commit hand-off between writers that appended records to one log (each holding a
/// ticket: its record's place in the log, tickets increasing with the log's order) and wait
/// for a sync to cover them. See the parent module for the protocol and its rules.
#[derive(Debug)]
pub struct GroupCommit<E> {
    state: Mutex<State<E>>,
    /// Signalled when a sync ends, whatever its outcome.
    done: Condvar,
}

impl<E: Clone> Default for GroupCommit<E> {
    fn default() -> Self {
        GroupCommit::new()
    }
}

impl<E: Clone> GroupCommit<E> {
    /// A hand-off with nothing durable yet (ticket 0 is below every real ticket).
    pub fn new() -> Self {
        let state = State { durable: 0, syncing: false, failed: None, syncs: 0, acknowledged: 0 };
        GroupCommit { state: Mutex::new(state), done: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a completed sync covers `ticket`: `Ok`, or the error of a sync that failed
    /// before one did (every ticket that sync was to cover, and every later one, gets that
    /// error; none gets `Ok`).
    ///
    /// When no sync is running, this writer leads one: it calls `sync` with no lock held.
    /// `sync` must sync everything appended to the log so far (so at least `ticket`, which the
    /// caller appended before calling) and return the highest ticket it covered, or its error.
    /// Otherwise the writer waits for the running sync to end and looks again: the running sync
    /// may have started before its record was appended.
    ///
    /// `writers` is how many writes the ticket acknowledges (a write group's: one per write),
    /// for [`GroupCommit::counts`].
    pub fn wait_durable(
        &self,
        ticket: u64,
        writers: u64,
        sync: impl FnOnce() -> Result<u64, E>,
    ) -> Result<(), E> {
        let mut sync = Some(sync);
        let mut state = self.lock();
        loop {
            if state.durable >= ticket {
                state.acknowledged += writers;
                return Ok(());
            }
            if let Some(e) = &state.failed {
                return Err(e.clone());
            }
            if !state.syncing {
                // A writer leads at most once: its own sync covers its ticket.
                if let Some(sync) = sync.take() {
                    state.syncing = true;
                    drop(state);
                    let mut leading = Syncing { commit: self, ended: false };
                    let synced = sync();
                    leading.ended = true;
                    state = self.lock();
                    state.syncing = false;
                    state.syncs += 1;
                    match synced {
                        Ok(covered) => state.durable = state.durable.max(covered),
                        Err(e) => state.failed = Some(e),
                    }
                    self.done.notify_all();
                    continue;
                }
            }
            state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Syncs run through the hand-off, and writes acknowledged after one.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.syncs, state.acknowledged)
    }
}
