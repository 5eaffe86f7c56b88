//! Ordered reads on the POSIX handle: [`Range`], a double-ended iterator over the entries of a
//! key range or prefix, and [`Keys`], the same over keys alone.
//!
//! An iterator borrows the [`Db`] shared (`&Db`): other threads read and write while it lives.
//! Made from a [`Db`], it takes a [`Snapshot`] first (O(1) under the engine's lock:
//! `crate::snapshot`); made from a [`Snapshot`], it reads that one. Either way it sees exactly
//! the writes acknowledged before the snapshot was taken and none made later, however long it
//! lives and whatever is flushed or compacted meanwhile. It fetches entries in batches through
//! the engine's scan ([`minivault_core::Scan`]) over the snapshot's MemTables and tables, each
//! batch resuming just past the last key fetched on its side; the front and the back meet in
//! the middle without returning a key twice. A batch takes the engine's lock while the
//! snapshot's MemTable is still the engine's active one, and no lock once it reads a copy.
//!
//! The first batch on a side is small (a seek and a few entries cost little); later ones grow,
//! and read each SSTable ahead in chunks outside the page cache, so a long scan is sequential
//! I/O and leaves the hot set of the page and row caches alone (the row cache is never touched
//! by a scan).
//!
//! Memory: a batch holds at most [`MAX_BATCH`] entries, and the read-ahead windows take
//! [`READ_AHEAD_PER_TABLE`] per SSTable, at most [`MAX_READ_AHEAD`] in all, while a batch is
//! fetched; the iterator's snapshot may hold up to two MemTable copies while it lives
//! ([`Db::snapshot`]).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use minivault_core::{KeyRange, Scan, Storage};

use crate::{Db, Error, Snapshot};

/// Entries of the first batch on each side.
pub const FIRST_BATCH: usize = 16;
/// Entries of a batch at most (batches double up to this).
pub const MAX_BATCH: usize = 1024;
/// Read-ahead per SSTable for batches after the first.
pub const READ_AHEAD_PER_TABLE: usize = 64 << 10;
/// Read-ahead for all SSTables together, at most.
pub const MAX_READ_AHEAD: usize = 1 << 20;

/// An entry: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The range an iterator walks, owned.
#[derive(Debug, Clone)]
enum Bounds {
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
    Prefix(Vec<u8>),
}

impl Bounds {
    fn key_range(&self) -> KeyRange<'_> {
        fn b(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
            match b {
                Bound::Included(k) => Bound::Included(k.as_slice()),
                Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            }
        }
        match self {
            Bounds::Range(s, e) => KeyRange::new(b(s), b(e)),
            Bounds::Prefix(p) => KeyRange::prefix(p),
        }
    }
}

/// One side's state: what was fetched and not yet returned, and how far fetching got.
#[derive(Debug, Default)]
struct Side {
    /// Entries fetched, in this side's order (front: ascending; back: descending).
    buffered: VecDeque<Entry>,
    /// The last key fetched on this side: the next fetch resumes past it.
    mark: Option<Vec<u8>>,
    /// Nothing is left to fetch on this side (up to the other side's mark).
    done: bool,
    /// Entries to ask for next.
    batch: usize,
}

/// What an iterator reads: a snapshot the caller holds, or its own, taken when it was made
/// from a [`Db`].
#[derive(Debug)]
pub(crate) enum Source<'a> {
    Snapshot(&'a Snapshot),
    Own(Box<Snapshot>, PhantomData<&'a Db>),
    /// Taking its snapshot failed: the error, for the first `next`.
    Failed(Option<Error>),
}

impl<'a> From<&'a Db> for Source<'a> {
    fn from(db: &'a Db) -> Self {
        match db.snapshot() {
            Ok(s) => Source::Own(Box::new(s), PhantomData),
            Err(e) => Source::Failed(Some(e)),
        }
    }
}

impl<'a> From<&'a Snapshot> for Source<'a> {
    fn from(snapshot: &'a Snapshot) -> Self {
        Source::Snapshot(snapshot)
    }
}

/// A double-ended iterator over the entries of a range, in key order: from [`Db::range`] and
/// [`Db::prefix`], or [`Snapshot::range`] and [`Snapshot::prefix`]. Yields `Err` once if the
/// engine fails (a damaged table, an I/O error), then ends.
#[derive(Debug)]
pub struct Range<'db> {
    db: Source<'db>,
    bounds: Bounds,
    front: Side,
    back: Side,
    keys_only: bool,
    failed: bool,
}

impl<'db> Range<'db> {
    pub(crate) fn new<K: AsRef<[u8]>, R: RangeBounds<K>>(db: impl Into<Source<'db>>, range: R) -> Self {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let bounds = Bounds::Range(own(range.start_bound()), own(range.end_bound()));
        Range::with_bounds(db.into(), bounds)
    }

    pub(crate) fn prefix(db: impl Into<Source<'db>>, prefix: &[u8]) -> Self {
        Range::with_bounds(db.into(), Bounds::Prefix(prefix.to_vec()))
    }

    fn with_bounds(db: Source<'db>, bounds: Bounds) -> Self {
        let side = || Side { batch: FIRST_BATCH, ..Side::default() };
        Range { db, bounds, front: side(), back: side(), keys_only: false, failed: false }
    }

    /// Fetches the next batch on one side (`reverse`: the back).
    fn fetch(&mut self, reverse: bool) -> Result<(), Error> {
        let (this, other) =
            if reverse { (&mut self.back, &self.front) } else { (&mut self.front, &self.back) };
        let mut range = self.bounds.key_range();
        // Past what either side fetched already.
        for (mark, after) in [(&this.mark, !reverse), (&other.mark, reverse)] {
            if let Some(m) = mark {
                range = if after { range.after(m) } else { range.before(m) };
            }
        }
        let read_ahead = this.batch > FIRST_BATCH;
        let snapshot: &Snapshot = match &mut self.db {
            Source::Snapshot(s) => s,
            Source::Own(s, _) => s,
            Source::Failed(e) => {
                return Err(e.take().unwrap_or(Error::SnapshotUnavailable { generation: 0 }))
            }
        };
        let fetched = snapshot.scan_batch(range, reverse, this.batch, self.keys_only, read_ahead)?;
        if fetched.len() < this.batch {
            this.done = true;
        }
        this.batch = (this.batch * 2).min(MAX_BATCH);
        if let Some((k, _)) = fetched.last() {
            this.mark = Some(k.clone());
        }
        this.buffered.extend(fetched);
        Ok(())
    }

    /// The next entry on one side: its own buffer, a fetch, or, once its side is done, what the
    /// other side fetched and has not returned.
    fn step(&mut self, reverse: bool) -> Option<Result<Entry, Error>> {
        if self.failed {
            return None;
        }
        loop {
            let this = if reverse { &mut self.back } else { &mut self.front };
            if let Some(e) = this.buffered.pop_front() {
                return Some(Ok(e));
            }
            if this.done {
                let other = if reverse { &mut self.front } else { &mut self.back };
                return other.buffered.pop_back().map(Ok);
            }
            if let Err(e) = self.fetch(reverse) {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

impl Iterator for Range<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl std::iter::FusedIterator for Range<'_> {}

/// A double-ended iterator over the keys of a range, in order: from [`Db::keys`]. Values are
/// not read.
#[derive(Debug)]
pub struct Keys<'db>(Range<'db>);

impl<'db> Keys<'db> {
    pub(crate) fn new(mut range: Range<'db>) -> Self {
        range.keys_only = true;
        Keys(range)
    }
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|r| r.map(|(k, _)| k))
    }
}

impl DoubleEndedIterator for Keys<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|r| r.map(|(k, _)| k))
    }
}

impl std::iter::FusedIterator for Keys<'_> {}

/// The read-ahead windows' bytes for a batch over `tables` tables.
pub(crate) fn read_ahead_bytes(tables: usize, read_ahead: bool) -> usize {
    if read_ahead {
        (tables * READ_AHEAD_PER_TABLE).min(MAX_READ_AHEAD)
    } else {
        0
    }
}

/// Up to `limit` entries of `scan`, in its order; with `keys_only`, values come back empty.
pub(crate) fn collect_batch<S: Storage<Error = std::io::Error>, M: AsRef<[u8]> + AsMut<[u8]>>(
    mut scan: Scan<'_, S, M>,
    limit: usize,
    keys_only: bool,
) -> Result<Vec<Entry>, Error> {
    let (mut k, mut v) = (vec![0u8; 256], vec![0u8; if keys_only { 0 } else { 4096 }]);
    let mut out = Vec::with_capacity(limit.min(64));
    while out.len() < limit {
        let step = if keys_only { scan.next_key(&mut k) } else { scan.next(&mut k, &mut v) };
        match step {
            Ok(Some((kl, vl))) => {
                let value = if keys_only { Vec::new() } else { v[..vl].to_vec() };
                out.push((k[..kl].to_vec(), value));
            }
            Ok(None) => break,
            Err(minivault_core::Error::BufferTooSmall { needed }) => {
                // The scan stays where it is: grow whichever buffer was short, then retry.
                k.resize(k.len().max(needed), 0);
                if !keys_only {
                    v.resize(v.len().max(needed), 0);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
