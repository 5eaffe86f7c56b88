//! A clock the test moves by hand, for TTLs and expiry without waiting.

use std::cell::Cell;
use std::rc::Rc;

use minivault_core::Clock;

/// A clock the test moves by hand; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Rc<Cell<u64>>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: u64) -> Self {
        ManualClock(Rc::new(Cell::new(now)))
    }

    /// The current time.
    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Sets the time to `now` (forward or back: a test may rewind it between engine sessions).
    pub fn set(&self, now: u64) {
        self.0.set(now);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: u64) {
        self.0.set(self.0.get().saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now(&mut self) -> u64 {
        self.0.get()
    }
}
