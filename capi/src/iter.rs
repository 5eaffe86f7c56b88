//! Iterators over a key range or a prefix, [`minivault_iter`]: double-ended, in key order.
//!
//! An iterator does not hold the database between calls (the handle stays usable, also for
//! writes, while iterators are open): each fetch takes the handle's lock, reads the next batch
//! of entries past the last key returned on its side (`db.range((Excluded(last), end))`), and
//! lets go. So a batch sees the database as it is when it is fetched; keys written behind a
//! side's position are not seen, keys written ahead of it are. The front and the back never
//! return a key twice: each fetch is bounded by the other side's last key.
//!
//! Batch sizes follow the Rust iterator's own (16 entries, doubling to 1,024 per engine
//! fetch): the k-th fetch of a side asks for exactly what the Rust iterator's first k + 1
//! internal batches hold (16, 48, 112, ..., then 2,032 at a time), so no entry is read and
//! thrown away. Memory: at most one such batch (2,032 entries) per side.

use std::collections::VecDeque;
use std::ops::Bound;

use minivault_posix::scan::{FIRST_BATCH, MAX_BATCH};

use crate::args::{bytes, reference, Out};
use crate::db::{minivault_db, with_db, Shared};
use crate::status::*;

type Entry = (Vec<u8>, Vec<u8>);

/// An iterator. Opaque: made by `minivault_iter_range` or `minivault_iter_prefix`, freed by
/// `minivault_iter_free`. One thread at a time may use it.
pub struct minivault_iter {
    shared: Shared,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    front: Side,
    back: Side,
    /// The entry last returned: the pointers `minivault_iter_next` hands out point into it.
    current: Entry,
    /// An error was returned: the iterator is over.
    failed: bool,
}

/// One direction's state.
#[derive(Default)]
struct Side {
    /// Fetched and not yet returned, in this side's order.
    buffered: VecDeque<Entry>,
    /// The last key fetched on this side.
    mark: Option<Vec<u8>>,
    /// Nothing is left to fetch on this side.
    done: bool,
    /// Fetches made so far.
    fetches: u32,
}

/// Entries the `fetches`-th fetch asks for: the sum of the Rust iterator's first `fetches + 1`
/// internal batch sizes.
fn batch_len(fetches: u32) -> usize {
    let mut total = 0;
    let mut batch = FIRST_BATCH;
    for _ in 0..=fetches {
        total += batch;
        if batch >= MAX_BATCH {
            break;
        }
        batch = (batch * 2).min(MAX_BATCH);
    }
    total
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

impl minivault_iter {
    fn new(shared: Shared, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Self {
        minivault_iter {
            shared,
            start,
            end,
            front: Side::default(),
            back: Side::default(),
            current: Entry::default(),
            failed: false,
        }
    }

    /// Fetches the next batch on one side (`reverse`: the back).
    fn fetch(&mut self, reverse: bool) -> Result<(), Failure> {
        let start = match &self.front.mark {
            Some(m) => Bound::Excluded(m.clone()),
            None => self.start.clone(),
        };
        let end = match &self.back.mark {
            Some(m) => Bound::Excluded(m.clone()),
            None => self.end.clone(),
        };
        let side = if reverse { &mut self.back } else { &mut self.front };
        let want = batch_len(side.fetches);
        let fetched: Vec<Entry> = with_db(&self.shared, |db| {
            let range = db.range((start, end));
            let taken: Result<Vec<Entry>, _> =
                if reverse { range.rev().take(want).collect() } else { range.take(want).collect() };
            Ok(taken?)
        })?;
        side.fetches += 1;
        side.done = fetched.len() < want;
        if let Some((k, _)) = fetched.last() {
            side.mark = Some(k.clone());
        }
        side.buffered.extend(fetched);
        Ok(())
    }

    /// The next entry on one side: from its buffer, a fetch, or (once the side is done) the
    /// entries the other side fetched and has not returned.
    fn step(&mut self, reverse: bool) -> Result<Option<Entry>, Failure> {
        if self.failed {
            return Ok(None);
        }
        loop {
            let (this, other) =
                if reverse { (&mut self.back, &mut self.front) } else { (&mut self.front, &mut self.back) };
            if let Some(e) = this.buffered.pop_front() {
                return Ok(Some(e));
            }
            if this.done {
                return Ok(other.buffered.pop_back());
            }
            if let Err(e) = self.fetch(reverse) {
                self.failed = true;
                return Err(e);
            }
        }
    }
}

/// Makes an iterator over the keys from `start` (inclusive) to `end` (exclusive) and stores it
/// in `*iter`. A NULL `start` (with length 0) starts at the first key; a NULL `end` ends after
/// the last. A non-NULL `end` of length 0 is the empty key, below every key: the iterator is
/// empty (pass NULL for no end). The bytes are copied: the caller's buffers may be reused at
/// once.
///
/// # Safety
/// `db` is NULL or an open handle; `start` points to `start_len` bytes and `end` to `end_len`
/// bytes (each NULL only with length 0); `iter` is NULL (an error) or points to writable
/// storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn minivault_iter_range(
    db: *mut minivault_db,
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
    iter: *mut *mut minivault_iter,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, start_key, end_key, mut out) = unsafe {
            (
                reference(db, "db")?,
                bytes(start, start_len, "start")?,
                bytes(end, end_len, "end")?,
                Out::new(iter, "iter")?,
            )
        };
        let bound = |ptr: *const u8, key: &[u8], inclusive: bool| match (ptr.is_null(), inclusive) {
            (true, _) => Bound::Unbounded,
            (false, true) => Bound::Included(key.to_vec()),
            (false, false) => Bound::Excluded(key.to_vec()),
        };
        let it =
            minivault_iter::new(h.shared.clone(), bound(start, start_key, true), bound(end, end_key, false));
        out.write(Box::into_raw(Box::new(it)));
        Ok(MINIVAULT_OK)
    })
}

/// Makes an iterator over the keys that start with `prefix` (every key when `prefix_len` is 0)
/// and stores it in `*iter`.
///
/// # Safety
/// `db` is NULL or an open handle; `prefix` points to `prefix_len` bytes (NULL only with length
/// 0); `iter` is NULL (an error) or points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn minivault_iter_prefix(
    db: *mut minivault_db,
    prefix: *const u8,
    prefix_len: usize,
    iter: *mut *mut minivault_iter,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, prefix, mut out) =
            unsafe { (reference(db, "db")?, bytes(prefix, prefix_len, "prefix")?, Out::new(iter, "iter")?) };
        let it = minivault_iter::new(h.shared.clone(), Bound::Included(prefix.to_vec()), prefix_end(prefix));
        out.write(Box::into_raw(Box::new(it)));
        Ok(MINIVAULT_OK)
    })
}

/// The `next` of both directions.
///
/// # Safety
/// As `minivault_iter_next`.
unsafe fn next_entry(
    iter: *mut minivault_iter,
    reverse: bool,
    key: *mut *const u8,
    key_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument: a live iterator only this call
        // uses, and writable out-parameters.
        let (it, mut k, mut kl, mut v, mut vl) = unsafe {
            (
                iter.as_mut().ok_or_else(|| Failure::invalid("iter is NULL"))?,
                Out::new(key, "key")?,
                Out::new(key_len, "key_len")?,
                Out::new(value, "value")?,
                Out::new(value_len, "value_len")?,
            )
        };
        k.write(std::ptr::null());
        kl.write(0);
        v.write(std::ptr::null());
        vl.write(0);
        let Some(entry) = it.step(reverse)? else { return Ok(MINIVAULT_DONE) };
        it.current = entry;
        k.write(it.current.0.as_ptr());
        kl.write(it.current.0.len());
        v.write(it.current.1.as_ptr());
        vl.write(it.current.1.len());
        Ok(MINIVAULT_OK)
    })
}

/// Moves to the next entry in key order: `*key`/`*key_len` and `*value`/`*value_len` point to
/// it, in memory the iterator owns, valid until the next call on this iterator or its
/// `minivault_iter_free`. Returns `MINIVAULT_OK`, `MINIVAULT_DONE` at the end (pointers NULL,
/// lengths 0), or an error once (a damaged table, an I/O error, `MINIVAULT_ERR_CLOSED` when
/// the handle was closed), after which it returns `MINIVAULT_DONE`.
///
/// # Safety
/// `iter` is NULL or a live iterator not used by another thread during the call; the other
/// arguments are NULL (an error) or point to writable storage.
#[no_mangle]
pub unsafe extern "C" fn minivault_iter_next(
    iter: *mut minivault_iter,
    key: *mut *const u8,
    key_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> minivault_status {
    // SAFETY: this function's contract is next_entry's.
    unsafe { next_entry(iter, false, key, key_len, value, value_len) }
}

/// Moves to the next entry from the back, in descending key order, as `minivault_iter_next`
/// does from the front; the two meet in the middle without returning an entry twice.
///
/// # Safety
/// As `minivault_iter_next`.
#[no_mangle]
pub unsafe extern "C" fn minivault_iter_next_back(
    iter: *mut minivault_iter,
    key: *mut *const u8,
    key_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> minivault_status {
    // SAFETY: this function's contract is next_entry's.
    unsafe { next_entry(iter, true, key, key_len, value, value_len) }
}

/// Frees an iterator. NULL is ignored. Iterators may be freed before or after their handle is
/// closed.
///
/// # Safety
/// `iter` is NULL or an iterator not yet freed; invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn minivault_iter_free(iter: *mut minivault_iter) {
    if !iter.is_null() {
        // Dropping buffers and an Arc cannot panic (the last Arc owner drops a closed handle's
        // empty Option).
        // SAFETY: a pointer from Box::into_raw in minivault_iter_range/_prefix, not yet freed.
        drop(unsafe { Box::from_raw(iter) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lengths_match_the_rust_iterators_batches() {
        let lens: Vec<usize> = (0..9).map(batch_len).collect();
        assert_eq!(lens, [16, 48, 112, 240, 496, 1008, 2032, 2032, 2032]);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Bound::Excluded(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Bound::Excluded(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), Bound::Unbounded);
        assert_eq!(prefix_end(b""), Bound::Unbounded);
    }
}
