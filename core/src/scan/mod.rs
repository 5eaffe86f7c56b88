//! Ordered scans: the keys of a [`KeyRange`] in byte order, forward or in reverse, merged from
//! the active MemTable, the immutable MemTable and every SSTable; the newest version of a key
//! wins, and tombstones and entries expired at the scan's `now` (read once, when it starts) are
//! skipped. A scan allocates nothing.
//!
//! # Memory
//! A scan takes, from the caller:
//! - a key buffer of [`crate::Db::scan_key_bytes`] bytes: one slot per SSTable as long as that
//!   table's longest key (from its footer), and one as long as the longest key anywhere (the key
//!   being returned) — with 16-byte keys and 10 tables, 176 bytes. Whatever the buffer holds
//!   beyond that is shared out among the SSTables as read-ahead windows (each at least
//!   1 KiB to count): a table's records are then read in chunks of its window, outside the
//!   storage's read cache ([`crate::Storage::read_through`]), so a long scan is sequential I/O
//!   and does not push the hot set out of the cache;
//! - for the active MemTable, which is a hash table, an order buffer given to the database once
//!   ([`crate::Db::set_scan_order_buffer`]): 4 bytes per key, at most the MemTable's key capacity
//!   (3/64 of a MemTable buffer). The first scan sorts the active MemTable's keys into it
//!   (O(n log n)); the order is kept while the MemTable does not change, and a scan after writes
//!   merges the entries they added into it (`OrderCache`: O(k log n) comparisons and a pass of
//!   moves for k ≤ 64 new entries), sorting whole again only after a rotation, a larger burst of
//!   writes, or when the buffer is too full to merge in. Without it (or with less room than the MemTable holds keys), the scan
//!   chooses the next key among all of them at every step instead: O(n) per step, no memory;
//! - its own state on the stack: about 50 bytes per SSTable (its cursor, and its place in the
//!   list of positioned cursors).
//!
//! # Resuming
//! A [`Scan`] borrows the database. To scan in bounded steps with writes in between (a
//! microcontroller's loop), keep the last key returned, drop the scan, write, and start a new
//! scan over `range.after(last)` (reverse: `range.before(last)`): it sees every key of the range
//! past `last` as it is then, through flushes and compactions, and nothing is skipped or
//! repeated (but keys written meanwhile).
//!
//! Files: [`range`] (the bounds), `mem_cursor` (one MemTable in order), `table_cursor` (one
//! SSTable in order), and the merge (here).

pub mod range;

mod mem_cursor;
mod table_cursor;

pub use range::KeyRange;

use heapless::Vec;

use crate::entry::is_dead;
use crate::error::{Error, ReadResultExt};
use crate::limits::MAX_TABLES;
use crate::memtable::MemTable;
use crate::sstable::{key_prefix, KeyPrefix, Table};
use crate::storage::Storage;
use mem_cursor::MemCursor;
use table_cursor::TableCursor;

/// The active MemTable's keys in order, kept by the [`crate::Db`] between scans in a buffer the
/// caller gave it ([`crate::Db::set_scan_order_buffer`]): 4 bytes per key, little-endian
/// offsets, valid while the MemTable it was sorted from does not change.
///
/// When the MemTable only grew since (the same [`MemTable::epoch`]: writes, no rotation), the
/// order is brought up to date instead of sorted again: the entries written since (at most
/// [`MAX_MERGED`]) are sorted among themselves and put in place by binary search, each one
/// replacing its key's older entry. A scan right after a write then costs O(k log n) key
/// comparisons and one pass of moves, not a sort of the whole MemTable (milliseconds at tens of
/// thousands of keys).
pub(crate) struct OrderCache<M> {
    buf: M,
    len: usize,
    /// (which MemTable, its change count) when ordered; `None`: not ordered.
    stamp: Option<(usize, u64)>,
    /// The MemTable's epoch and arena length when ordered: what the next update may build on.
    base: Option<(u32, usize)>,
}

/// The most entries written since the last order that are merged into it; more, and the
/// MemTable is sorted again (the cost of that is then shared by as many writes).
pub(crate) const MAX_MERGED: usize = 64;

impl<M: AsRef<[u8]> + AsMut<[u8]>> OrderCache<M> {
    /// An empty cache over `buf` (its length / 4: the most keys it can order).
    pub(crate) fn new(buf: M) -> Self {
        OrderCache { buf, len: 0, stamp: None, base: None }
    }

    /// The buffer.
    pub(crate) fn into_buffer(self) -> M {
        self.buf
    }

    /// Makes it hold the order of `mem` (MemTable number `which`), sorting only if it holds
    /// something else, merging what was written since when it holds an earlier order of the
    /// same MemTable; `None` when the buffer is too small.
    pub(crate) fn update<T: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        which: usize,
        mem: &MemTable<T>,
    ) -> Option<Offsets<'_>> {
        let stamp = (which, mem.changes());
        if self.stamp != Some(stamp) {
            let grown = self.stamp.is_some_and(|(w, _)| w == which)
                && self.base.is_some_and(|(epoch, used)| epoch == mem.epoch() && used <= mem.arena_used());
            let since = self.base.map_or(0, |(_, used)| used);
            self.stamp = None;
            self.base = None;
            let (words, _) = self.buf.as_mut().as_chunks_mut::<4>();
            self.len = match grown.then(|| merge_new_entries(words, self.len, mem, since)).flatten() {
                Some(len) => len,
                None => mem.sort_offsets_into(words)?,
            };
            self.stamp = Some(stamp);
            self.base = Some((mem.epoch(), mem.arena_used()));
        }
        Some(Offsets(self.buf.as_ref().as_chunks::<4>().0.get(..self.len)?))
    }
}

/// Merges the newest entries of `mem` at arena offsets from `since` on into `words[..len]`,
/// which holds `mem`'s order as it was when its arena ended at `since`: each such entry goes to
/// its key's place, replacing the key's older entry there. Returns the new length, or `None`
/// (the order then is to be sorted whole) when more than [`MAX_MERGED`] entries are new or the
/// buffer cannot hold the merge.
fn merge_new_entries<T: AsRef<[u8]> + AsMut<[u8]>>(
    words: &mut [[u8; 4]],
    len: usize,
    mem: &MemTable<T>,
    since: usize,
) -> Option<usize> {
    let mut new: heapless::Vec<u32, MAX_MERGED> = heapless::Vec::new();
    for offset in mem.offsets().filter(|&o| o as usize >= since) {
        new.push(offset).ok()?;
    }
    let key_of = |o: u32| mem.entry_at(o).map(|e| e.key);
    new.sort_unstable_by(|&a, &b| key_of(a).cmp(&key_of(b)));
    let total = len.checked_add(new.len())?;
    if total > words.len() {
        return None;
    }
    // From the largest new key down: the older entries above its place move up past it.
    // `end`: the older entries not moved yet are `words[..end]`; `top`: the merged order is
    // `words[top..total]`.
    let (mut end, mut top, mut replaced) = (len, total, 0);
    for &offset in new.iter().rev() {
        let key = key_of(offset);
        let older = words.get(..end)?;
        let at = older.partition_point(|w| key_of(u32::from_le_bytes(*w)) < key);
        let same = older.get(at).is_some_and(|w| key_of(u32::from_le_bytes(*w)) == key);
        let above = if same { at + 1 } else { at };
        let moved = end - above;
        words.copy_within(above..end, top - moved);
        top -= moved + 1;
        *words.get_mut(top)? = offset.to_le_bytes();
        end = at;
        replaced += usize::from(same);
    }
    // What is left of the older entries goes right below the merged ones, and the whole order
    // to the front (it is shorter by the keys that were replaced).
    words.copy_within(..end, top - end);
    words.copy_within(replaced..total, 0);
    Some(total - replaced)
}

/// Arena offsets in key order, as [`OrderCache`] keeps them.
#[derive(Clone, Copy)]
pub(crate) struct Offsets<'a>(&'a [[u8; 4]]);

impl Offsets<'_> {
    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `i`-th.
    pub(crate) fn get(&self, i: usize) -> Option<u32> {
        self.0.get(i).map(|b| u32::from_le_bytes(*b))
    }
}

/// What [`Scan::next`] returns: the lengths of the key and the value it copied out.
pub type Lengths = (usize, usize);

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

/// The sources of a scan, newest first: the active MemTable, the immutable one, then the tables
/// newest to oldest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Mem(usize),
    Table(usize),
}

/// A scan in progress; see the [module documentation](self).
pub struct Scan<'a, S: Storage, M> {
    storage: &'a mut S,
    tables: &'a mut [Table<S::File>],
    mems: [MemCursor<'a, M>; 2],
    cursors: Vec<TableCursor, MAX_TABLES>,
    /// The positioned cursors that still have a key, newest table first: the only table
    /// sources a step looks at.
    active: Vec<u16, MAX_TABLES>,
    /// The least key prefix (reverse: greatest) a pending table may start with, if any table
    /// is pending ([`Scan::settle`]).
    pending_edge: Option<KeyPrefix>,
    /// The sources are still to move past the key in the `current` slot (returned or passed
    /// over by the last step): done at the start of the next step.
    advance_due: bool,
    /// Table key slots, then the slot of the key being returned.
    keys: &'a mut [u8],
    /// The tables' read-ahead windows (the rest of the caller's buffer).
    windows: &'a mut [u8],
    /// Where the slot of the key being returned starts in `keys`, and its length.
    current_at: usize,
    current_cap: usize,
    /// The length of the key in it.
    current_len: usize,
    range: KeyRange<'a>,
    reverse: bool,
    now: u64,
}

impl<'a, S: Storage, M: AsRef<[u8]> + AsMut<[u8]>> Scan<'a, S, M> {
    /// Starts a scan of `range` over `tables` (oldest first) and `mems` (the newer MemTable
    /// first), each read as of its point in `points` ([`crate::memtable::NEWEST`]: all of it),
    /// apart from a [`crate::Db`]: for a host reading its own view of the tables (a snapshot,
    /// with MemTables it holds, empty or frozen). `keys`: at least [`key_bytes`] of these
    /// sources, the rest read-ahead windows. The same merge as [`crate::Db::scan`]: newest
    /// source wins, range deletes and expiry at `now` applied.
    #[allow(clippy::too_many_arguments)]
    pub fn over(
        storage: &'a mut S,
        tables: &'a mut [Table<S::File>],
        mems: [&'a MemTable<M>; 2],
        points: [u32; 2],
        keys: &'a mut [u8],
        range: KeyRange<'a>,
        reverse: bool,
        now: u64,
    ) -> Result<Self, S> {
        Self::start(storage, tables, mems, points, None, keys, range, reverse, now)
    }

    /// Positions the MemTables at the first key of `range` (`reverse`: the last); the tables
    /// are positioned by the steps, each when it may hold the next key (`settle`), so a table's
    /// read errors come from [`Scan::next`]. A step that failed is made again when the scan is
    /// asked again (a table whose seek failed stays pending, one whose advance failed is
    /// advanced again).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        storage: &'a mut S,
        tables: &'a mut [Table<S::File>],
        mems: [&'a MemTable<M>; 2],
        points: [u32; 2],
        active_order: Option<Offsets<'a>>,
        keys: &'a mut [u8],
        range: KeyRange<'a>,
        reverse: bool,
        now: u64,
    ) -> Result<Self, S> {
        let needed = key_bytes(tables.iter(), mems);
        if keys.len() < needed {
            return Err(Error::InsufficientMemory { needed, given: keys.len() });
        }
        // What lies beyond the key slots is shared out as read-ahead windows among the tables
        // that may hold keys of the range, which are positioned only when they may hold the next
        // key (`settle`); the others never are (their cursors stay past the end).
        let (keys, windows) = keys.split_at_mut(needed);
        let (lo, hi) = range.prefix_span();
        let meets = |t: &Table<S::File>| t.bounds().may_meet(lo, hi);
        let sharing = tables.iter().filter(|t| meets(t)).count();
        let share = windows.len().checked_div(sharing).unwrap_or(0);
        let share = if share >= table_cursor::MIN_WINDOW { share } else { 0 };
        let mut cursors: Vec<TableCursor, MAX_TABLES> = Vec::new();
        let (mut at, mut shared) = (0, 0);
        for t in tables.iter() {
            let n = table_cursor::slot_len(t.footer());
            let cursor = TableCursor::with_slot(at, n);
            // A table the range does not meet keeps a cursor that is never positioned: past the
            // end from the start.
            let cursor = if meets(t) {
                shared += 1;
                cursor.with_window((shared - 1) * share, share).pending()
            } else {
                cursor
            };
            let _ = cursors.push(cursor);
            at += n;
        }
        let [active, immutable] = mems;
        let [active_point, immutable_point] = points;
        let mut mems = [
            MemCursor::new(active, active_order, active_point),
            MemCursor::new(immutable, None, immutable_point),
        ];
        for m in &mut mems {
            m.seek(&range, reverse);
        }
        let current_cap = needed - at;
        let mut scan = Scan {
            storage,
            tables,
            mems,
            cursors,
            active: Vec::new(),
            pending_edge: None,
            advance_due: false,
            keys,
            windows,
            current_at: at,
            current_cap,
            current_len: 0,
            range,
            reverse,
            now,
        };
        scan.pending_edge = scan.first_pending().map(|(_, edge)| edge);
        Ok(scan)
    }

    /// The pending table that starts first (reverse: ends last), and where.
    fn first_pending(&self) -> Option<(usize, KeyPrefix)> {
        let reverse = self.reverse;
        let mut first: Option<(usize, KeyPrefix)> = None;
        for (i, (c, t)) in self.cursors.iter().zip(self.tables.iter()).enumerate() {
            if !c.is_pending() {
                continue;
            }
            let edge = self.edge(t);
            if first.is_none_or(|(_, e)| if reverse { edge > e } else { edge < e }) {
                first = Some((i, edge));
            }
        }
        first
    }

    /// The current key of `source`.
    fn key_of(&self, source: Source) -> Option<&[u8]> {
        match source {
            Source::Mem(i) => self.mems.get(i)?.entry().map(|e| e.key),
            Source::Table(i) => {
                let c = self.cursors.get(i)?;
                c.key(self.keys.get(c.slot.0..c.slot.0 + c.slot.1)?)
            }
        }
    }

    /// The source holding the next key (newest source on ties), if any key is left in range.
    fn winner(&self) -> Option<Source> {
        let (s, k) = self.best()?;
        let outside = if self.reverse { self.range.before_start(k) } else { self.range.after_end(k) };
        (!outside).then_some(s)
    }

    /// The positioned source holding the least key (reverse: the greatest; the newest source on
    /// ties), and that key, in range or not.
    fn best(&self) -> Option<(Source, &[u8])> {
        let tables = self.active.iter().map(|&i| Source::Table(usize::from(i)));
        let sources = (0..2).map(Source::Mem).chain(tables);
        let mut best: Option<(Source, &[u8])> = None;
        for s in sources {
            let Some(k) = self.key_of(s) else { continue };
            let better = match best {
                None => true,
                Some((_, b)) if self.reverse => k > b,
                Some((_, b)) => k < b,
            };
            if better {
                best = Some((s, k));
            }
        }
        best
    }

    /// Positions every pending table that may hold the next key: one whose least key prefix
    /// (reverse: greatest) is not past the best key of the positioned sources (all such tables
    /// in one pass), until none is left that may; with no key at all, the table that starts
    /// first. A table of many that overlap nothing (sequential keys) is so
    /// positioned only when the scan reaches it: a scan from a key reads the table that holds
    /// it and the next ones it walks into, not every table above it. Bounds rule out with
    /// strict comparisons only, so no table that may hold a key before the best one is left.
    fn settle(&mut self) -> Result<(), S> {
        let reverse = self.reverse;
        let comes_first =
            |edge: KeyPrefix, best: KeyPrefix| if reverse { edge >= best } else { edge <= best };
        while let Some(edge) = self.pending_edge {
            match self.best().map(|(_, k)| key_prefix(k)) {
                Some(best) if !comes_first(edge, best) => return Ok(()),
                // Every pending table that may come first, in one pass (positioning one may
                // lower the best key, which leaves the others merely positioned early).
                Some(best) => {
                    for i in 0..self.cursors.len() {
                        let pending = self.cursors.get(i).is_some_and(TableCursor::is_pending);
                        if pending && self.tables.get(i).is_some_and(|t| comes_first(self.edge(t), best)) {
                            self.position(i)?;
                        }
                    }
                }
                // No key yet: the table that starts first.
                None => match self.first_pending() {
                    Some((i, _)) => self.position(i)?,
                    None => break,
                },
            }
            self.pending_edge = self.first_pending().map(|(_, edge)| edge);
        }
        self.pending_edge = None;
        Ok(())
    }

    /// Where a table starts for this scan: the prefix of its least key (reverse: greatest).
    fn edge(&self, t: &Table<S::File>) -> KeyPrefix {
        let b = t.bounds();
        if self.reverse {
            b.greatest()
        } else {
            b.least()
        }
    }

    /// Positions pending cursor `i` at the range's first key (reverse: last) and, when it has
    /// one, makes it active.
    fn position(&mut self, i: usize) -> Result<(), S> {
        let reverse = self.reverse;
        let (Some(c), Some(t)) = (self.cursors.get_mut(i), self.tables.get_mut(i)) else { return Ok(()) };
        let slot = self.keys.get_mut(c.slot.0..c.slot.0 + c.slot.1).unwrap_or(&mut []);
        let window = self.windows.get_mut(c.window.0..c.window.0 + c.window.1).unwrap_or(&mut []);
        c.seek(self.storage, t, slot, window, &self.range, reverse)?;
        if c.is_valid() {
            // Newest (highest index) first.
            let at = self.active.iter().position(|&a| usize::from(a) < i).unwrap_or(self.active.len());
            let _ = self.active.insert(at, i as u16);
        }
        Ok(())
    }

    /// Moves every source whose current key is the key in the `current` slot past it (and
    /// every table whose advance failed before: it was on that key). Made again after an
    /// error, it moves only what the failed call did not.
    fn advance_past_current(&mut self) -> Result<(), S> {
        let (at, n) = (self.current_at, self.current_len);
        let reverse = self.reverse;
        for m in &mut self.mems {
            let key = self.keys.get(at..at + n).unwrap_or(&[]);
            if m.entry().is_some_and(|e| e.key == key) {
                m.advance(reverse);
            }
        }
        for &i in &self.active {
            let i = usize::from(i);
            let (Some(c), Some(t)) = (self.cursors.get_mut(i), self.tables.get_mut(i)) else { continue };
            let (head, tail) = self.keys.split_at_mut(at);
            let key = tail.get(..n).unwrap_or(&[]);
            let slot = head.get_mut(c.slot.0..c.slot.0 + c.slot.1).unwrap_or(&mut []);
            if c.is_advancing() || c.key(slot).is_some_and(|k| k == key) {
                let window = self.windows.get_mut(c.window.0..c.window.0 + c.window.1).unwrap_or(&mut []);
                c.advance(self.storage, t, slot, window, reverse)?;
            }
        }
        let cursors = &self.cursors;
        self.active.retain(|&i| cursors.get(usize::from(i)).is_some_and(TableCursor::is_valid));
        Ok(())
    }

    /// The next live entry: copies its key and value into `key` and `value` and returns their
    /// lengths; `None` at the end of the range. When a buffer is too small,
    /// [`Error::BufferTooSmall`] says how large it must be and the scan stays where it is. After
    /// any other error (a read that failed, damage) it stays where it was too: asked again, it
    /// makes the failed step again, and returns every entry once and nothing a newer write hid
    /// (`tests/scan_after_a_read_error.rs` fails every storage call of a scan in turn).
    pub fn next(&mut self, key: &mut [u8], value: &mut [u8]) -> Result<Option<Lengths>, S> {
        self.step(key, Some(value))
    }

    /// [`Scan::next`] for the key alone: the value is not read (its length is returned).
    pub fn next_key(&mut self, key: &mut [u8]) -> Result<Option<Lengths>, S> {
        self.step(key, None)
    }

    fn step(&mut self, key: &mut [u8], mut value: Option<&mut [u8]>) -> Result<Option<Lengths>, S> {
        loop {
            // The sources move past the key returned (or passed over) last at the start of the
            // next step, not before returning it: an error while they move is then returned
            // before anything else and leaves the step to be made again, so a scan asked again
            // after any error goes on from where it was (a source moved past the key and one
            // not would otherwise let the older one's entry through).
            if self.advance_due {
                self.advance_past_current()?;
                self.advance_due = false;
            }
            self.settle()?;
            let Some(source) = self.winner() else { return Ok(None) };
            // The winner's key goes to the `current` slot, for comparisons while sources move.
            let (at, slot_len) = (self.current_at, self.current_cap);
            let (dead, value_len, key_len) = {
                let k = self.key_of(source).unwrap_or(&[]);
                let key_len = k.len();
                let (dead, value_len) = match source {
                    Source::Mem(i) => {
                        let e = self.mems.get(i).and_then(MemCursor::entry);
                        let dead = e.is_none_or(|e| e.is_dead_at(self.now));
                        (dead, e.map_or(0, |e| e.value.len()))
                    }
                    Source::Table(i) => {
                        let c = self.cursors.get(i);
                        let h = c.and_then(|c| c.header);
                        let dead = h.is_none_or(|h| is_dead(h.tombstone, h.expires_at, self.now));
                        (dead, c.map_or(0, TableCursor::value_len))
                    }
                };
                (dead, value_len, key_len)
            };
            if key_len > slot_len {
                return Err(Error::InsufficientMemory { needed: at + key_len, given: self.keys.len() });
            }
            self.copy_key_to_current(source);
            let dead = dead || self.hidden_by_range(source)?;
            if dead {
                self.advance_due = true;
                continue;
            }
            if key.len() < key_len {
                return Err(Error::BufferTooSmall { needed: key_len });
            }
            if let Some(value) = value.as_deref_mut() {
                let dst = value.get_mut(..value_len).ok_or(Error::BufferTooSmall { needed: value_len })?;
                match source {
                    Source::Mem(i) => {
                        let v = self.mems.get(i).and_then(MemCursor::entry).map_or(&[][..], |e| e.value);
                        if let Some(src) = v.get(..value_len) {
                            dst.copy_from_slice(src);
                        }
                    }
                    Source::Table(i) => {
                        let (Some(c), Some(t)) = (self.cursors.get_mut(i), self.tables.get_mut(i)) else {
                            return Ok(None);
                        };
                        let window =
                            self.windows.get_mut(c.window.0..c.window.0 + c.window.1).unwrap_or(&mut []);
                        c.read_value(self.storage, t, window, dst, self.reverse)?;
                    }
                }
            }
            if let (Some(dst), Some(src)) = (key.get_mut(..key_len), self.keys.get(at..at + key_len)) {
                dst.copy_from_slice(src);
            }
            self.advance_due = true;
            return Ok(Some((key_len, value_len)));
        }
    }

    /// True when a range delete newer than `source`'s current entry covers its key (the key in
    /// the `current` slot): one of a newer source, or of the same MemTable written after it. A
    /// table's range deletes hide only older tables' entries.
    fn hidden_by_range(&mut self, source: Source) -> Result<bool, S> {
        let key = self.keys.get(self.current_at..self.current_at + self.current_len).unwrap_or(&[]);
        let newer_tables = match source {
            Source::Mem(i) => {
                // The MemTables before `i` are newer (the active one first).
                let newer_mem = self.mems.iter().take(i).any(|m| m.range_covers(key, false));
                return Ok(newer_mem || self.mems.get(i).is_some_and(|m| m.range_covers(key, true)));
            }
            Source::Table(t) => {
                if self.mems.iter().any(|m| m.range_covers(key, false)) {
                    return Ok(true);
                }
                t + 1
            }
        };
        for table in self.tables.iter_mut().skip(newer_tables) {
            let footer = *table.footer();
            if footer.range_count > 0 {
                let id = table.id();
                let io = &mut self.storage.io(table.file());
                if crate::sstable::ranges_cover(io, &footer, key)
                    .in_file(crate::names::FileKind::Table, id)?
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Copies `source`'s current key into the `current` slot and sets its length there.
    fn copy_key_to_current(&mut self, source: Source) {
        let (at, cap) = (self.current_at, self.current_cap);
        let (head, tail) = self.keys.split_at_mut(at);
        let src: &[u8] = match source {
            Source::Mem(i) => self.mems.get(i).and_then(MemCursor::entry).map_or(&[], |e| e.key),
            Source::Table(i) => match self.cursors.get(i) {
                Some(c) => c.key(head.get(c.slot.0..c.slot.0 + c.slot.1).unwrap_or(&[])).unwrap_or(&[]),
                None => &[],
            },
        };
        let n = src.len().min(cap);
        if let (Some(dst), Some(src)) = (tail.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.current_len = n;
    }
}

/// The key buffer a scan over these tables and MemTables needs ([`Scan::over`]).
pub fn key_bytes<'t, F: 't, M: AsRef<[u8]> + AsMut<[u8]>>(
    tables: impl Iterator<Item = &'t Table<F>>,
    mems: [&MemTable<M>; 2],
) -> usize {
    let mut sum = 0;
    let mut longest = mems[0].max_key_len().max(mems[1].max_key_len());
    for t in tables {
        let n = table_cursor::slot_len(t.footer());
        sum += n;
        longest = longest.max(n);
    }
    sum + longest
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::entry::EntryHeader;

    fn put<T: AsRef<[u8]> + AsMut<[u8]>>(m: &mut MemTable<T>, key: &[u8], tombstone: bool) -> bool {
        let header = EntryHeader { tombstone, key_len: key.len(), expires_at: None };
        m.insert(&header, key, if tombstone { b"" } else { b"value" }).is_ok()
    }

    /// The order a whole sort gives.
    fn sorted<T: AsRef<[u8]> + AsMut<[u8]>>(m: &MemTable<T>) -> Vec<u32> {
        let mut words = vec![[0u8; 4]; m.key_capacity()];
        let n = m.sort_offsets_into(&mut words).unwrap();
        words[..n].iter().map(|w| u32::from_le_bytes(*w)).collect()
    }

    #[test]
    fn an_order_brought_up_to_date_after_writes_equals_a_whole_sort() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut m = MemTable::new(vec![0u8; 1 << 20]).unwrap();
        let mut order = OrderCache::new(vec![0u8; m.key_capacity() * 4]);
        let (mut merged, mut rounds) = (0, 0);
        while rounds < 400 {
            // Bursts of new keys, overwrites and deletes; now and then a pin (kept versions)
            // or a rotation (freeze and reset: the order must be sorted again).
            let burst = next() % 80;
            for _ in 0..burst {
                let key = format!("k{:05}", next() % 3000);
                if !put(&mut m, key.as_bytes(), next().is_multiple_of(7)) {
                    m.freeze();
                    m.reset();
                }
            }
            match next() % 40 {
                0 => {
                    m.freeze();
                    m.reset();
                }
                1 => {
                    m.pin();
                }
                // A range delete (no point entry) and a batch (one arena item, its entries
                // inside it, a key twice).
                2 => {
                    let _ = m.insert_range(b"k01000", b"k01010");
                }
                3 => {
                    let mut batch = crate::batch::WriteBatch::new(vec![0u8; 512]);
                    for _ in 0..5 {
                        let key = format!("k{:05}", next() % 3000);
                        batch.put(key.as_bytes(), b"batched").unwrap();
                    }
                    batch.put(b"k00007", b"twice").unwrap();
                    batch.put(b"k00007", b"thrice").unwrap();
                    let _ = m.insert_batch(batch.payload());
                }
                _ => {}
            }
            let before = order.base;
            let got: Vec<u32> = {
                let offsets = order.update(0, &m).unwrap();
                (0..offsets.len()).map(|i| offsets.get(i).unwrap()).collect()
            };
            assert_eq!(got, sorted(&m), "round {rounds}, burst {burst}");
            if before.is_some_and(|(epoch, _)| epoch == m.epoch()) && burst as usize <= MAX_MERGED {
                merged += 1;
            }
            rounds += 1;
        }
        assert!(merged > 100, "the merge ran in {merged} rounds of {rounds}");
    }

    #[test]
    fn merging_new_entries_replaces_the_older_entries_of_their_keys() {
        let mut m = MemTable::new(vec![0u8; 1 << 14]).unwrap();
        for k in [&b"b"[..], b"d", b"f"] {
            assert!(put(&mut m, k, false));
        }
        let mut words = vec![[0u8; 4]; m.key_capacity()];
        let len = m.sort_offsets_into(&mut words).unwrap();
        let since = m.arena_used();
        // Before the first, between, equal to the last, after the last.
        for k in [&b"a"[..], b"c", b"f", b"g", b"d"] {
            assert!(put(&mut m, k, false));
        }
        let len = merge_new_entries(&mut words, len, &m, since).unwrap();
        let got: Vec<u32> = words[..len].iter().map(|w| u32::from_le_bytes(*w)).collect();
        assert_eq!(got, sorted(&m));
        let keys: Vec<&[u8]> = got.iter().map(|&o| m.entry_at(o).unwrap().key).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c", b"d", b"f", b"g"]);
        // Too many new entries, or too small a buffer: sorted whole instead.
        let since = m.arena_used();
        for i in 0..=MAX_MERGED {
            assert!(put(&mut m, format!("z{i:03}").as_bytes(), false));
        }
        assert_eq!(merge_new_entries(&mut words, len, &m, since), None);
        let len = m.sort_offsets_into(&mut words).unwrap();
        let since = m.arena_used();
        assert!(put(&mut m, b"new", false));
        assert_eq!(merge_new_entries(&mut words[..len], len, &m, since), None);
        assert_eq!(merge_new_entries(&mut words, len, &m, since), Some(len + 1));
    }
}
