//! The write group's hand-off: [`WriteQueue`], over whatever `Mutex` and `Condvar` the parent
//! module names `sync` (the standard library's in the build, shuttle's in the schedule
//! explorer's test, which compiles this very file again).
//!
//! Writers that arrive together go to the log together. A writer queues its item and takes a
//! ticket; the first writer to find no leader becomes the **leader**: it takes the queue (its
//! own item and those queued before it, up to a count and a cost), lets the queue's lock go,
//! writes them all in one call and posts one result per item; the others wait for theirs, or
//! lead the next group, made of what was queued after the leader took its own. With one writer
//! the group holds its one item.
//!
//! Rules it keeps:
//! - Every item is written at most once, in one group, and exactly once unless its writer
//!   panicked (below); items of one writer in the order it queued them; a group keeps the
//!   queue's order.
//! - At most one leader writes at a time.
//! - Every writer gets the result the leader posted for its own item, and no other; `None`
//!   when the leader posted none for it (its `write` returned too few results, or panicked),
//!   and never waits for good: the leader's role is given up whatever `write` does.
//! - A leader whose `write` panics posts no result for its own item and, if the item is still
//!   queued (its group was made of items queued before it), takes it back, in the same section
//!   that ends its turn: no later group writes it, and no result is left behind. An item in the
//!   panicking leader's own group may have been written, in part or whole, by that `write`.
//! - A group holds at least one item, at most `max_items` and, but for a single item, at most
//!   `max_cost`.

use std::collections::HashMap;
use std::sync::PoisonError;

use super::sync::{Condvar, Mutex, MutexGuard};

/// Items in one group at most, and their cost in bytes at most (a group holds at least one
/// item): the bounds of the database's write group ([`crate::Db`], also at most half a
/// MemTable's) and of the outbox's append group.
pub const MAX_GROUP_ITEMS: usize = 1024;
pub const MAX_GROUP_BYTES: usize = 1 << 20;

/// A queued item, its ticket and its cost.
struct Waiting<Q> {
    ticket: u64,
    cost: usize,
    item: Q,
}

/// The queue, the results posted and not yet taken, and whether a leader is writing.
struct State<Q, R> {
    waiting: Vec<Waiting<Q>>,
    next_ticket: u64,
    /// `None`: the leader that took the item posted no result for it.
    results: HashMap<u64, Option<R>>,
    leading: bool,
    /// Items written, and the groups (writes) that carried them, since the start.
    items: u64,
    groups: u64,
}

/// A leader's turn: posts its results, or (dropped unposted: its `write` panicked) posts none,
/// leaves no result for the leader's own item (`own`, its ticket) and takes that item back if
/// it is still queued.
struct Leader<'a, Q, R> {
    queue: &'a WriteQueue<Q, R>,
    tickets: Vec<u64>,
    own: u64,
}

impl<Q, R> Leader<'_, Q, R> {
    fn post(&mut self, results: Vec<R>) {
        self.queue.post(std::mem::take(&mut self.tickets), results, None);
    }
}

impl<Q, R> Drop for Leader<'_, Q, R> {
    fn drop(&mut self) {
        if !self.tickets.is_empty() {
            self.queue.post(std::mem::take(&mut self.tickets), Vec::new(), Some(self.own));
        }
    }
}

/// Writers' items queued to be written in groups, one leader at a time. See the module docs.
pub struct WriteQueue<Q, R> {
    state: Mutex<State<Q, R>>,
    /// Signalled when a leader posts its group's results.
    written: Condvar,
    max_items: usize,
    max_cost: usize,
}

impl<Q, R> WriteQueue<Q, R> {
    /// A queue whose groups hold at most `max_items` items (at least 1) and, but for a group of
    /// one, items costing at most `max_cost` together.
    pub fn new(max_items: usize, max_cost: usize) -> Self {
        let state = State {
            waiting: Vec::new(),
            next_ticket: 0,
            results: HashMap::new(),
            leading: false,
            items: 0,
            groups: 0,
        };
        WriteQueue {
            state: Mutex::new(state),
            written: Condvar::new(),
            max_items: max_items.max(1),
            max_cost,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Q, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` (costing `cost` toward a group's `max_cost`) and returns its result, once
    /// a leader wrote it. When no leader is writing, this writer leads: it calls `write` with
    /// no lock held, with the group taken from the queue's head (its own item among them, unless
    /// more than a group's worth was queued before it: then it leads again), and `write` must
    /// return one result per item, in their order.
    ///
    /// Returns `None` when the leader's `write` returned no result for the item (fewer results
    /// than items, or it panicked: then the panic goes on in the leader's thread, and its
    /// group's other writers get `None`).
    pub fn join(&self, item: Q, cost: usize, mut write: impl FnMut(Vec<Q>) -> Vec<R>) -> Option<R> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push(Waiting { ticket, cost, item });
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leading {
                state = self.written.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            let n = self.group_len(&state.waiting);
            let (tickets, items): (Vec<u64>, Vec<Q>) =
                state.waiting.drain(..n).map(|w| (w.ticket, w.item)).unzip();
            drop(state);
            let mut leader = Leader { queue: self, tickets, own: ticket };
            let results = write(items);
            leader.post(results);
            state = self.lock();
        }
    }

    /// Ends a leader's turn: posts `results` to `tickets` in order (`None` to those left
    /// without one), gives up the leader's role and wakes every writer. `gone`: the ticket of a
    /// leader that panicked, whose item is taken out of the queue if still there and gets no
    /// result, in the same section, before another writer can lead.
    fn post(&self, tickets: Vec<u64>, results: Vec<R>, gone: Option<u64>) {
        let mut state = self.lock();
        state.leading = false;
        state.items += tickets.len() as u64;
        state.groups += 1;
        let mut results = results.into_iter();
        for t in tickets {
            let result = results.next();
            if Some(t) != gone {
                state.results.insert(t, result);
            }
        }
        if let Some(gone) = gone {
            state.waiting.retain(|w| w.ticket != gone);
        }
        self.written.notify_all();
    }

    /// How many of the queue's first items make the next group: at least one.
    fn group_len(&self, waiting: &[Waiting<Q>]) -> usize {
        let (mut n, mut cost) = (0usize, 0usize);
        for w in waiting {
            if n > 0 && (n == self.max_items || cost.saturating_add(w.cost) > self.max_cost) {
                break;
            }
            n += 1;
            cost = cost.saturating_add(w.cost);
        }
        n
    }

    /// (items, groups) handed to leaders since the start, a panicked leader's group included.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.items, state.groups)
    }

    /// Items queued now and not yet taken by a leader.
    pub fn queued(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Results posted and not yet taken by their writers.
    #[cfg(test)]
    pub fn unclaimed(&self) -> usize {
        self.lock().results.len()
    }
}
