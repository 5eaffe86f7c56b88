//! Group commit: writers that appended records to the WAL share one `fdatasync`; with
//! [`crate::Durability::Always`] they share the record too (the write group, [`WriteQueue`]:
//! one leader appends the writes queued together as one record, then runs the two steps below
//! once for all of them, as "writer A" of the picture; see `queue.rs` for its protocol and
//! rules, `crate::op` for how a group becomes one write batch). Writers that arrive meanwhile
//! queue in the write group and are not appended yet: under `Always` the picture's B and C,
//! arriving during A's sync, form the next group once it ends: one of them appends both as
//! one record and leads one sync for both. The picture as drawn is the `EveryN` and
//! `Periodic` writes', and `Db::sync`'s. A leader whose sync panics ends it (a drop guard):
//! nothing is counted durable and the next waiter leads a new one.
//!
//! A durable write ([`crate::Durability::Always`], or the write that makes an `EveryN` count
//! due) goes through two steps:
//!
//! 1. Under the engine's lock: append the record to the WAL (handed to the OS, not synced) and
//!    apply it to the MemTable; take a **ticket**, the count of records appended so far.
//! 2. Without it: [`GroupCommit::wait_durable`]. If no sync is running, this writer becomes the
//!    **leader**: it takes the engine's lock just long enough to read what a sync now would
//!    cover ([`minivault_core::Db::wal_sync_targets`]: the WAL a rotation left unsynced, if
//!    any, then the current one; and the ticket count), syncs those WAL files in that order
//!    through descriptors of their own with no lock held, reporting each to the engine
//!    ([`minivault_core::Db::wal_synced`]; one that does not count makes the engine sync what
//!    is left itself), then to the hand-off, and wakes everyone.
//!    If a sync is running, the writer waits for it to end and looks again: that sync may have
//!    started before its record was appended, and then the next leader's covers it.
//!
//! ```text
//!  writer A  append#1 ─ lead: target(#1) ─ fdatasync ─────────── durable=1 ─ Ok
//!  writer B       append#2 ─ wait ─────────────────────────────── lead: target(#3) ─ fdatasync ─ durable=3 ─ Ok
//!  writer C            append#3 ─ wait ────────────────────────── (covered by B's sync) ──────────────────── Ok
//!  reader                 get ─ get ─ get ─ get   (the engine's lock is free during every fdatasync)
//! ```
//!
//! Rules it keeps:
//! - A writer returns `Ok` only after a completed sync covers its ticket (and so its record:
//!   tickets follow the WAL's order, and the WAL a rotation left unsynced is synced first).
//! - A sync that fails fails every writer it was to cover and every later one; none of them
//!   gets `Ok`. The engine is poisoned by the same failure, as by a failed sync under its lock.
//! - Every writer leads at most once, and a leader's sync covers everything appended before it
//!   started: under load a sync covers all the writers that arrived while the previous one ran.
//!
//! The hand-off is generic (tickets and a sync closure, no engine, no files) so that it can be
//! explored exhaustively: `shuttle_tests` compiles `protocol.rs` again over shuttle's `Mutex`
//! and `Condvar` and runs every interleaving of small groups of writers, with syncs that succeed
//! and that fail, checking the rules above against a model of what is on the device.

mod protocol;
mod queue;

/// The lock and condition variable the hand-off is built on.
mod sync {
    pub use std::sync::{Condvar, Mutex, MutexGuard};
}

// shuttle is a dev-dependency of the 64-bit hosts only (posix/Cargo.toml).
#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod queue_shuttle_tests;
#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod shuttle_tests;

pub use protocol::GroupCommit;
pub use queue::{WriteQueue, MAX_GROUP_BYTES, MAX_GROUP_ITEMS};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{mpsc, Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::WriteQueue;

    /// Waits until `done` holds, failing after 10 s instead of hanging.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_writer_whose_write_panics_as_leader_takes_its_own_item_back() {
        // Groups of one: while A leads, B, C and D queue, in that order. Once A is done they
        // lead one after another, each taking the queue's head; B's and C's writes panic, D's
        // writes. When C leads first, its write panics on B's item with its own still queued:
        // that item must be taken back at once (D, leading next, must not write it). Whoever
        // panics, no result may be left behind. (When D happens to lead every group, nothing
        // panics, and the checks below hold trivially.)
        let queue: Arc<WriteQueue<char, char>> = Arc::new(WriteQueue::new(1, 8));
        let (entered, release) = (mpsc::channel(), mpsc::channel::<()>());
        let a = {
            let (queue, entered, release) = (queue.clone(), entered.0, release.1);
            thread::spawn(move || {
                queue.join('a', 1, |group| {
                    entered.send(()).unwrap();
                    release.recv().unwrap();
                    group
                })
            })
        };
        entered.1.recv_timeout(Duration::from_secs(10)).expect("A leads");
        let panicking = |item: char| {
            let queue = queue.clone();
            thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| queue.join(item, 1, |_| panic!("write of a group"))))
                    .unwrap_or(Some('!'))
            })
        };
        let written = Arc::new(Mutex::new(Vec::new()));
        // Queued in the order b, c, d: whichever of B and C leads first takes b.
        let b = panicking('b');
        wait_until("B to queue", || queue.queued() == 1);
        let c = panicking('c');
        wait_until("C to queue", || queue.queued() == 2);
        let d = {
            let (queue, written) = (queue.clone(), written.clone());
            thread::spawn(move || {
                queue.join('d', 1, |group| {
                    written.lock().unwrap().extend(group.iter().copied());
                    group
                })
            })
        };
        wait_until("B, C and D to queue", || queue.queued() == 3);
        release.0.send(()).unwrap();
        assert_eq!(a.join().unwrap(), Some('a'));
        // '!': the writer's own write panicked; `None`: its group's leader panicked; its own item:
        // D wrote it.
        let mut panicked = Vec::new();
        for (item, handle) in [('b', b), ('c', c), ('d', d)] {
            match handle.join().unwrap() {
                Some('!') => panicked.push(item),
                got => assert!(got.is_none() || got == Some(item), "{item} got {got:?}"),
            }
        }
        let written = written.lock().unwrap().clone();
        for item in &panicked {
            assert!(!written.contains(item), "{item}'s call panicked, yet D wrote it: {written:?}");
        }
        assert_eq!((queue.queued(), queue.unclaimed()), (0, 0), "left behind in the queue");
        let got = queue.join('e', 1, |group| {
            assert_eq!(group, vec!['e'], "only the new write");
            group
        });
        assert_eq!(got, Some('e'));
    }
}
