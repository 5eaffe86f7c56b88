//! `minivault.RangeIter`: the iterator of `Db.range`, `Db.prefix`, `Db.keys` and `iter(db)`.
//!
//! A Python iterator outlives any single call, and the Rust `Db` is `&mut self`: no Rust
//! borrow of it may stay alive between two `__next__` calls. So the iterator keeps only its
//! bounds and the last key it fetched; each fetch locks the database (with the GIL released),
//! reads the next batch from just past that key (`db.range((Excluded(last), end))`) and lets
//! go. Writes may therefore go on while an iterator is open; each batch sees the database as
//! it is when fetched.
//!
//! Batch sizes follow the Rust iterator's own (16 entries, doubling to 1,024 per engine
//! fetch): the k-th fetch asks for exactly what its first k + 1 internal batches hold (16, 48,
//! 112, ..., then 2,032 at a time), so nothing is read and thrown away, and a `next()` on a
//! fresh iterator costs a 16-entry read. Memory: one batch at most.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Mutex;

use minivault_posix::scan::{FIRST_BATCH, MAX_BATCH};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::db::PyDb;

type Entry = (Vec<u8>, Vec<u8>);

/// The bounds of an iteration, owned.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
}

impl Bounds {
    /// `start <= key < end`; `None` is an open end.
    pub(crate) fn range(start: Option<&[u8]>, end: Option<&[u8]>) -> Self {
        Bounds {
            start: start.map_or(Bound::Unbounded, |s| Bound::Included(s.to_vec())),
            end: end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec())),
        }
    }

    /// The keys that start with `prefix`.
    pub(crate) fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        // The smallest key after every key with the prefix: drop trailing 0xFF bytes and
        // increment the last other byte; none (all 0xFF, or empty) means no upper bound.
        let end = loop {
            match end.pop() {
                Some(u8::MAX) => continue,
                Some(last) => {
                    end.push(last + 1);
                    break Bound::Excluded(end);
                }
                None => break Bound::Unbounded,
            }
        };
        Bounds { start: Bound::Included(prefix.to_vec()), end }
    }

    /// The bounds as a `RangeBounds` for the Rust API.
    pub(crate) fn as_range(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        (self.start.clone(), self.end.clone())
    }
}

/// Entries the `fetches`-th fetch asks for (see the module docs).
fn batch_len(fetches: u32) -> usize {
    let (mut total, mut batch) = (0, FIRST_BATCH);
    for _ in 0..=fetches {
        total += batch;
        if batch >= MAX_BATCH {
            break;
        }
        batch = (batch * 2).min(MAX_BATCH);
    }
    total
}

/// Where an iteration is.
struct Cursor {
    bounds: Bounds,
    reverse: bool,
    keys_only: bool,
    buffered: VecDeque<Entry>,
    /// The last key fetched: the next fetch starts past it.
    last: Option<Vec<u8>>,
    fetches: u32,
    done: bool,
}

impl Cursor {
    /// The bounds of the next fetch: past the last key fetched.
    fn remaining(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let (mut start, mut end) = self.bounds.as_range();
        if let Some(last) = &self.last {
            if self.reverse {
                end = Bound::Excluded(last.clone());
            } else {
                start = Bound::Excluded(last.clone());
            }
        }
        (start, end)
    }
}

/// An iterator over a key range of a Db, in key order (or reversed): yields (key, value)
/// tuples of bytes, or keys alone for Db.keys() and iter(db). It reads in batches and holds no
/// lock on the database between them.
#[pyclass(frozen, module = "minivault", name = "RangeIter")]
pub struct RangeIter {
    db: Py<PyDb>,
    cursor: Mutex<Cursor>,
}

impl RangeIter {
    pub(crate) fn new(db: Py<PyDb>, bounds: Bounds, reverse: bool, keys_only: bool) -> Self {
        let cursor = Cursor {
            bounds,
            reverse,
            keys_only,
            buffered: VecDeque::new(),
            last: None,
            fetches: 0,
            done: false,
        };
        RangeIter { db, cursor: Mutex::new(cursor) }
    }
}

#[pymethods]
impl RangeIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<pyo3::Bound<'py, PyAny>>> {
        // Never wait for this lock with the GIL held (its holder may be waiting for the GIL):
        // a second thread on the same iterator is an error, as for a running generator.
        let mut cursor =
            self.cursor.try_lock().map_err(|_| PyRuntimeError::new_err("iterator already in use"))?;
        if cursor.buffered.is_empty() && !cursor.done {
            let (range, want, reverse, keys_only) =
                (cursor.remaining(), batch_len(cursor.fetches), cursor.reverse, cursor.keys_only);
            let fetched: Vec<Entry> = self.db.get().with_db(py, |db| {
                if keys_only {
                    let keys = db.keys(range);
                    let keys: Result<Vec<Vec<u8>>, _> =
                        if reverse { keys.rev().take(want).collect() } else { keys.take(want).collect() };
                    Ok(keys?.into_iter().map(|k| (k, Vec::new())).collect())
                } else {
                    let entries = db.range(range);
                    if reverse {
                        entries.rev().take(want).collect()
                    } else {
                        entries.take(want).collect()
                    }
                }
            })?;
            cursor.fetches += 1;
            cursor.done = fetched.len() < want;
            if let Some((k, _)) = fetched.last() {
                cursor.last = Some(k.clone());
            }
            cursor.buffered.extend(fetched);
        }
        let keys_only = cursor.keys_only;
        let Some((k, v)) = cursor.buffered.pop_front() else { return Ok(None) };
        let key = PyBytes::new(py, &k).into_any();
        if keys_only {
            return Ok(Some(key));
        }
        Ok(Some(PyTuple::new(py, [key, PyBytes::new(py, &v).into_any()])?.into_any()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lengths_match_the_rust_iterators_batches() {
        let lens: Vec<usize> = (0..8).map(batch_len).collect();
        assert_eq!(lens, [16, 48, 112, 240, 496, 1008, 2032, 2032]);
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(Bounds::prefix(b"a\xff").end, Bound::Excluded(b"b".to_vec()));
        assert_eq!(Bounds::prefix(b"\xff\xff").end, Bound::Unbounded);
    }
}
