//! A scan's cursor over one MemTable: its entries in key order, forward or backward.
//!
//! A frozen MemTable is sorted already (its slots); a sealed one (a rotation's, not sorted yet) is
//! sorted by [`crate::Db::scan`] first, and a copy by `copy_frozen`. The active one is a hash
//! table: the scan
//! visits it through the offsets of its entries sorted into the database's order buffer
//! (sorted once, then kept up to date as writes add entries: `super::OrderCache`), or,
//! without one large enough, by
//! choosing the next key among all entries at every step (O(n) per step, no memory).
//!
//! A cursor reads its MemTable as of a point ([`crate::memtable::MemTable::pin`]): it walks the
//! keys in order by their newest entries, shows each key's entry below the point
//! ([`MemTable::visible_at`]) and passes over keys that had none.

use super::range::KeyRange;
use super::Offsets;
use crate::entry::Entry;
use crate::memtable::MemTable;

/// How the cursor finds the entries in order.
enum Order<'a> {
    /// Offsets in key order (the active MemTable's, from the order buffer).
    Offsets(Offsets<'a>),
    /// The frozen MemTable's own sorted slots.
    Frozen,
    /// No order: choose among all entries at each step.
    Choose,
}

/// A cursor over one MemTable.
pub(crate) struct MemCursor<'a, M> {
    mem: &'a MemTable<M>,
    order: Order<'a>,
    /// Position in `Offsets` / `Frozen` order.
    pos: usize,
    /// The current key's newest entry's offset; `None` once past the end.
    current: Option<u32>,
    /// The entry of the current key the cursor shows: the one below `point`.
    visible: Option<u32>,
    /// What the cursor sees: entries and range deletes below this arena offset.
    point: u32,
}

impl<'a, M: AsRef<[u8]> + AsMut<[u8]>> MemCursor<'a, M> {
    /// A cursor over `mem` as of `point`, which is frozen, or active with its entries' offsets
    /// in key order in `sorted` (`None`: choose at each step).
    pub(crate) fn new(mem: &'a MemTable<M>, sorted: Option<Offsets<'a>>, point: u32) -> Self {
        // A sealed table is sorted before a scan reads it (else `Choose`: O(n) per step).
        debug_assert!(mem.is_frozen() || !mem.is_sealed() || mem.is_empty());
        let order = match sorted {
            _ if mem.is_frozen() => Order::Frozen,
            Some(offsets) => Order::Offsets(offsets),
            None => Order::Choose,
        };
        MemCursor { mem, order, pos: 0, current: None, visible: None, point }
    }

    fn len(&self) -> usize {
        match self.order {
            Order::Offsets(o) => o.len(),
            Order::Frozen | Order::Choose => self.mem.len(),
        }
    }

    fn offset_at(&self, i: usize) -> Option<u32> {
        match self.order {
            Order::Offsets(o) => o.get(i),
            Order::Frozen => self.mem.sorted_offset(i),
            Order::Choose => None,
        }
    }

    fn key_at(&self, i: usize) -> Option<&'a [u8]> {
        self.offset_at(i).and_then(|o| self.mem.entry_at(o)).map(|e| e.key)
    }

    /// The first index whose key satisfies `pred` (false for a prefix of the order, then true).
    fn partition(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key_at(mid).is_none_or(&pred) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The entry with the smallest key (`reverse`: largest) for which `ok` holds.
    fn choose(&self, reverse: bool, ok: impl Fn(&[u8]) -> bool) -> Option<u32> {
        let mut best: Option<(u32, &[u8])> = None;
        for o in self.mem.offsets() {
            let Some(e) = self.mem.entry_at(o) else { continue };
            if !ok(e.key) || self.mem.visible_at(o, self.point).is_none() {
                continue;
            }
            let better = best.is_none_or(|(_, b)| if reverse { e.key > b } else { e.key < b });
            if better {
                best = Some((o, e.key));
            }
        }
        best.map(|(o, _)| o)
    }

    /// Moves to the first entry of `range` (`reverse`: the last).
    pub(crate) fn seek(&mut self, range: &KeyRange<'_>, reverse: bool) {
        if let Order::Choose = self.order {
            self.current = self.choose(reverse, |k| range.contains(k));
            self.visible = self.current.and_then(|o| self.mem.visible_at(o, self.point));
            return;
        }
        let i = if reverse {
            self.partition(|k| range.after_end(k)).checked_sub(1)
        } else {
            Some(self.partition(|k| !range.before_start(k)))
        };
        self.set(i, reverse);
    }

    /// Moves to the `i`-th key of the order, or on past keys with nothing below the point.
    fn set(&mut self, mut i: Option<usize>, reverse: bool) {
        loop {
            match i {
                Some(n) if n < self.len() => {
                    self.pos = n;
                    self.current = self.offset_at(n);
                    self.visible = self.current.and_then(|o| self.mem.visible_at(o, self.point));
                    if self.visible.is_some() || self.current.is_none() {
                        return;
                    }
                    i = if reverse { n.checked_sub(1) } else { Some(n + 1) };
                }
                _ => {
                    self.current = None;
                    self.visible = None;
                    return;
                }
            }
        }
    }

    /// True when a range delete of this MemTable covers `key` (with `newer_than_current`: one
    /// written after the current entry).
    pub(crate) fn range_covers(&self, key: &[u8], newer_than_current: bool) -> bool {
        self.mem.range_count() > 0
            && self.mem.range_covers_as_of(
                key,
                if newer_than_current { self.visible } else { None },
                self.point,
            )
    }

    /// The current entry.
    pub(crate) fn entry(&self) -> Option<Entry<'a>> {
        self.visible.and_then(|o| self.mem.entry_at(o))
    }

    /// Moves past the current entry.
    pub(crate) fn advance(&mut self, reverse: bool) {
        if let Order::Choose = self.order {
            let Some(cur) = self.entry().map(|e| e.key) else { return };
            self.current = self.choose(reverse, |k| if reverse { k < cur } else { k > cur });
            self.visible = self.current.and_then(|o| self.mem.visible_at(o, self.point));
            return;
        }
        if self.current.is_none() {
            return;
        }
        let next = if reverse { self.pos.checked_sub(1) } else { Some(self.pos + 1) };
        self.set(next, reverse);
    }
}
