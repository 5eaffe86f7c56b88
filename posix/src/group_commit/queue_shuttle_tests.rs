//! The write group's hand-off of `queue.rs`, compiled again over shuttle's `Mutex` and
//! `Condvar`: every interleaving of two writers of one write each (shuttle's depth-first
//! scheduler), PCT and random schedules of more (two writers of two writes are already past
//! exhaustive search).
//!
//! Each writer queues items `(writer, i)` in order, each costing 1 or 2; the leader's `write`
//! checks that no other leader is writing and that the group is within its bounds (a lock
//! taken where it starts and where it ends: other writers queue in between), appends the group
//! to a log and returns one result per item, naming the item and the group. Each writer checks it got its own item's result; at the end the log
//! holds every item once, each writer's in its order, and the queue's counts agree. Whether
//! any schedule formed a group of more than one item is counted outside the explorer, so that
//! a queue that never groups fails too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::Arc;

use shuttle::sync::Mutex;
use shuttle::thread;

/// What the queue is compiled over here.
mod sync {
    pub use shuttle::sync::{Condvar, Mutex, MutexGuard};
}

// The same file as the parent's `queue`, compiled over shuttle's primitives on purpose.
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "queue.rs"]
mod queue;

use queue::WriteQueue;

type Item = (usize, usize);

fn cost(item: Item) -> usize {
    1 + (item.0 + item.1) % 2
}

/// What the leaders wrote: the log, the groups and the largest, and whether one is writing.
#[derive(Default)]
struct Written {
    writing: bool,
    log: Vec<Item>,
    groups: u64,
    largest: usize,
}

/// `writers` threads queue `items` items each; groups hold at most `max_items` and (but for
/// one item) `max_cost`. Adds 1 to `grouped` when some group held more than one item.
fn scenario(writers: usize, items: usize, max_items: usize, max_cost: usize, grouped: &StdAtomicU64) {
    let queue: Arc<WriteQueue<Item, (Item, u64)>> = Arc::new(WriteQueue::new(max_items, max_cost));
    // Two scheduling points per write, where the leader starts and where it ends.
    let written = Arc::new(Mutex::new(Written::default()));
    let threads: Vec<_> = (0..writers)
        .map(|t| {
            let (queue, written) = (queue.clone(), written.clone());
            thread::spawn(move || {
                for i in 0..items {
                    let (got, _group) = queue
                        .join((t, i), cost((t, i)), |group| {
                            {
                                let mut w = written.lock().unwrap();
                                assert!(!w.writing, "two leaders write at once");
                                w.writing = true;
                            }
                            assert!(
                                !group.is_empty() && group.len() <= max_items,
                                "group of {}",
                                group.len()
                            );
                            if group.len() > 1 {
                                let total: usize = group.iter().map(|&item| cost(item)).sum();
                                assert!(total <= max_cost, "a group costing {total} over {max_cost}");
                            }
                            let mut w = written.lock().unwrap();
                            w.writing = false;
                            w.groups += 1;
                            w.largest = w.largest.max(group.len());
                            w.log.extend(group.iter().copied());
                            let n = w.groups;
                            group.into_iter().map(|item| (item, n)).collect()
                        })
                        .expect("a result for every item");
                    assert_eq!(got, (t, i), "a writer got another item's result");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let w = written.lock().unwrap();
    assert_eq!(w.log.len(), writers * items, "every item written once: {:?}", w.log);
    for t in 0..writers {
        let mine: Vec<usize> = w.log.iter().filter(|item| item.0 == t).map(|item| item.1).collect();
        assert_eq!(mine, (0..items).collect::<Vec<_>>(), "writer {t}'s items, once each, in order");
    }
    assert_eq!(queue.counts(), ((writers * items) as u64, w.groups));
    if w.largest > 1 {
        grouped.fetch_add(1, StdOrdering::SeqCst);
    }
}

#[test]
fn every_interleaving_of_two_single_writes_writes_each_once_and_alone() {
    // A group forms of what queued while a leader wrote: with one write each, a leader takes
    // only its own (it queues and takes under one lock), so no group is ever of two.
    let grouped = Arc::new(StdAtomicU64::new(0));
    let g = grouped.clone();
    shuttle::check_dfs(move || scenario(2, 1, 8, 8, &g), None);
    assert_eq!(grouped.load(StdOrdering::SeqCst), 0, "a group of two single writes");
}

#[test]
fn schedules_of_two_writers_of_two_writes_group_within_bounds() {
    // Every interleaving of these is out of reach (100,000 schedules of depth-first search took
    // 1.7 s and had not ended): PCT and random schedules, 20,000 of each per bound.
    for (max_items, max_cost) in [(8, 8), (1, 8), (8, 2)] {
        let grouped = Arc::new(StdAtomicU64::new(0));
        let g = grouped.clone();
        shuttle::check_pct(move || scenario(2, 2, max_items, max_cost, &g), 20_000, 3);
        let g = grouped.clone();
        shuttle::check_random(move || scenario(2, 2, max_items, max_cost, &g), 20_000);
        let grouped = grouped.load(StdOrdering::SeqCst);
        if max_items == 1 {
            assert_eq!(grouped, 0, "a group over max_items");
        } else {
            assert!(grouped > 0, "no schedule formed a group ({max_items}, {max_cost})");
        }
    }
}

#[test]
fn a_leader_that_posts_too_few_results_leaves_no_writer_waiting() {
    // Each leader posts a result for every item but the last of its group: those writers get
    // `None`, the others their own result, and every writer ends (a deadlock fails the test).
    let check = |writers: usize| {
        let queue: Arc<WriteQueue<Item, Item>> = Arc::new(WriteQueue::new(8, 8));
        let threads: Vec<_> = (0..writers)
            .map(|t| {
                let queue = queue.clone();
                thread::spawn(move || {
                    (0..2)
                        .map(|i| {
                            queue.join((t, i), 1, |mut group| {
                                group.pop();
                                group
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut missing = 0;
        for (t, handle) in threads.into_iter().enumerate() {
            for (i, got) in handle.join().unwrap().into_iter().enumerate() {
                match got {
                    Some(item) => assert_eq!(item, (t, i), "another item's result"),
                    None => missing += 1,
                }
            }
        }
        assert_eq!(missing as u64, queue.counts().1, "one item per group without a result");
    };
    shuttle::check_dfs(move || check(1), None);
    shuttle::check_pct(move || check(3), 5_000, 3);
}

#[test]
fn random_and_pct_schedules_of_more_writers() {
    let grouped = Arc::new(StdAtomicU64::new(0));
    let g = grouped.clone();
    shuttle::check_pct(move || scenario(3, 2, 3, 4, &g), 5_000, 3);
    let g = grouped.clone();
    shuttle::check_random(move || scenario(5, 3, 4, 6, &g), 3_000);
    let g = grouped.clone();
    shuttle::check_pct(move || scenario(5, 3, 64, 1 << 20, &g), 3_000, 3);
    assert!(grouped.load(StdOrdering::SeqCst) > 0, "no schedule formed a group");
}
