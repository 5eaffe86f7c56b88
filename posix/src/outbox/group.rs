//! Group commit of [`super::Outbox::append`]: appends that arrive from several threads while one
//! write is being made durable go to the database together, in the next write batch: one WAL
//! record and one `fdatasync` for all of them. Each call still returns only once its own record
//! is durable (per the durability mode), with its own seq.
//!
//! The protocol, over one mutex and one condition variable: an append takes a ticket and queues
//! its record; the first thread to find no leader becomes the leader, takes the queue (up to
//! [`MAX_GROUP`] records and [`MAX_GROUP_BYTES`]), writes it as one batch and posts every ticket's
//! result; the others wait for theirs (or become the next leader, for what was queued after the
//! leader took its batch). With one appending thread the queue holds its one record, written
//! as a plain put.

use std::collections::HashMap;
use std::io;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::Error;

/// Records in one group at most.
pub const MAX_GROUP: usize = 1024;
/// Bytes of records in one group at most (a group holds at least one record).
pub const MAX_GROUP_BYTES: usize = 1 << 20;

/// A queued append.
#[derive(Debug)]
pub(super) struct Queued {
    ticket: u64,
    pub stream: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    queue: Vec<Queued>,
    next_ticket: u64,
    results: HashMap<u64, Result<u64, Error>>,
    leading: bool,
    /// Appends and the writes that carried them, since the start.
    appended: u64,
    writes: u64,
}

/// The appends waiting to be written, and the results of those written.
#[derive(Debug, Default)]
pub(super) struct Group {
    state: Mutex<State>,
    written: Condvar,
}

impl Group {
    /// Appends `value` to `stream` through the group: `write` is called by whichever thread
    /// leads, with a batch of queued records, and returns one result per record.
    pub fn append(
        &self,
        stream: &[u8],
        value: &[u8],
        write: impl Fn(&[Queued]) -> Vec<Result<u64, Error>>,
    ) -> Result<u64, Error> {
        let lock = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(Queued { ticket, stream: stream.to_vec(), value: value.to_vec() });
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leading {
                state = self.written.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            let batch = take_group(&mut state.queue);
            drop(state);
            let results = write(&batch);
            state = lock();
            state.leading = false;
            state.appended += batch.len() as u64;
            state.writes += 1;
            for (q, r) in batch.iter().zip(results) {
                state.results.insert(q.ticket, r);
            }
            self.written.notify_all();
        }
    }
}

impl Group {
    /// (appends, writes that carried them) since the start.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.appended, state.writes)
    }
}

/// The first records of `queue`, up to [`MAX_GROUP`] and [`MAX_GROUP_BYTES`] (at least one).
fn take_group(queue: &mut Vec<Queued>) -> Vec<Queued> {
    let (mut n, mut bytes) = (0, 0);
    for q in queue.iter() {
        if n > 0 && (n == MAX_GROUP || bytes + q.value.len() > MAX_GROUP_BYTES) {
            break;
        }
        n += 1;
        bytes += q.value.len();
    }
    queue.drain(..n).collect()
}

/// A copy of `e` for each record of a group that failed together (`Error` is not `Clone`: an
/// I/O error is copied as its kind and message).
pub(super) fn duplicate(e: &Error) -> Error {
    use minivault_core::Error as E;
    match e {
        Error::Engine(core) => Error::Engine(match core {
            E::Full => E::Full,
            E::Poisoned => E::Poisoned,
            E::ReadOnly => E::ReadOnly,
            E::TooManyTables => E::TooManyTables,
            E::TooManyWals => E::TooManyWals,
            E::ValueTooLarge { len, max } => E::ValueTooLarge { len: *len, max: *max },
            E::BatchTooLarge { len, max } => E::BatchTooLarge { len: *len, max: *max },
            E::Storage(io) => E::Storage(io::Error::new(io.kind(), io.to_string())),
            other => E::Storage(io::Error::other(other.to_string())),
        }),
        Error::Batch(b) => Error::Batch(*b),
        Error::Outbox(o) => Error::Outbox(o.clone()),
        other => Error::Engine(E::Storage(io::Error::other(other.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn appends_from_many_threads_share_writes_and_each_gets_its_own_result() {
        let group = Arc::new(Group::default());
        let (writes, next) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(1u64)));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (group, writes, next) = (group.clone(), writes.clone(), next.clone());
                std::thread::spawn(move || {
                    (0..200)
                        .map(|i| {
                            let value = format!("{t}/{i}").into_bytes();
                            group
                                .append(b"s", &value, |batch| {
                                    writes.fetch_add(1, Ordering::SeqCst);
                                    std::thread::sleep(std::time::Duration::from_micros(200)); // a sync
                                    let mut next = next.lock().unwrap();
                                    batch
                                        .iter()
                                        .map(|_| {
                                            *next += 1;
                                            Ok(*next - 1)
                                        })
                                        .collect()
                                })
                                .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort();
        assert_eq!(all, (1..=1600).collect::<Vec<_>>(), "every append got its own seq");
        let writes = writes.load(Ordering::SeqCst);
        assert!(writes < 1600, "{writes} writes for 1,600 appends: none were grouped");
    }

    #[test]
    fn a_failed_group_fails_each_of_its_records_with_the_same_error() {
        let group = Group::default();
        let e = group.append(b"s", b"v", |batch| {
            let error = Error::Engine(minivault_core::Error::Full);
            batch.iter().map(|_| Err(duplicate(&error))).collect()
        });
        assert!(matches!(e, Err(Error::Engine(minivault_core::Error::Full))));
        let io =
            Error::Engine(minivault_core::Error::Storage(io::Error::new(io::ErrorKind::StorageFull, "disk")));
        assert_eq!(duplicate(&io).to_string(), io.to_string());
    }
}
