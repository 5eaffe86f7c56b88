//! Group commit of [`super::Outbox::append`]: appends that arrive from several threads while one
//! write is being made durable go to the database together, in the next write batch: one WAL
//! record and one `fdatasync` for all of them. Each call still returns only once its own record
//! is durable (per the durability mode), with its own seq.
//!
//! The protocol is the write group's ([`WriteQueue`], shared with [`crate::Db`]'s durable
//! writes): an append queues its record; the first thread to find no leader leads, takes the
//! queue (up to [`MAX_GROUP_ITEMS`] records and [`MAX_GROUP_BYTES`] bytes), writes it as one batch and posts
//! each record's result; the others wait for theirs (or lead the next group, of what was queued
//! after the leader took its own). With one appending thread the group holds its one record,
//! written as a plain put.

use crate::group_commit::{WriteQueue, MAX_GROUP_BYTES, MAX_GROUP_ITEMS};
use crate::Error;

/// A queued append.
#[derive(Debug)]
pub(super) struct Queued {
    pub stream: Vec<u8>,
    pub value: Vec<u8>,
}

/// The appends waiting to be written, and the results of those written: the write group's
/// queue ([`WriteQueue`]), whose cost is a record's value bytes.
pub(super) struct Group {
    queue: WriteQueue<Queued, Result<u64, Error>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (appended, writes) = self.counts();
        f.debug_struct("Group").field("appended", &appended).field("writes", &writes).finish()
    }
}

impl Default for Group {
    fn default() -> Self {
        Group { queue: WriteQueue::new(MAX_GROUP_ITEMS, MAX_GROUP_BYTES) }
    }
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
        let queued = Queued { stream: stream.to_vec(), value: value.to_vec() };
        self.queue.join(queued, value.len(), |batch| write(&batch)).unwrap_or(Err(Error::WriteAbandoned))
    }

    /// (appends, writes that carried them) since the start.
    pub fn counts(&self) -> (u64, u64) {
        self.queue.counts()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

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
            batch.iter().map(|_| Err(error.duplicate())).collect()
        });
        assert!(matches!(e, Err(Error::Engine(minivault_core::Error::Full))));
        let io =
            Error::Engine(minivault_core::Error::Storage(io::Error::new(io::ErrorKind::StorageFull, "disk")));
        assert_eq!(io.duplicate().to_string(), io.to_string());
    }
}
