//! MemTable: a fixed-capacity open-addressing hash table whose keys and values live in an arena.
//!
//! One caller-provided buffer holds everything:
//!
//! ```text
//! [ slot table: slots × 8 bytes ][ arena: items of `u32 len | entry payload` ]
//! slot = hash u32 LE | arena offset + 1 u32 LE   (offset 0 = empty slot)
//! frozen slot's first u32: VERSION_FLAG (bit 31) | tag (bits 30..0)
//! ```
//! `slots` is the largest power of two with `slots × 64 ≤ buffer length`, so an eighth of the
//! buffer indexes the other seven eighths. Entries are stored in the same encoding as WAL and
//! SSTable payloads ([`crate::entry`]), so a flush copies bytes without re-encoding.
//!
//! A table is *active* (hash lookups, linear probing, load factor at most 3/4) until
//! [`MemTable::seal`] makes it *immutable*: it takes no more writes and still answers lookups
//! through its hash slots (O(1): what a rotation does under the engine's lock). Its order is made
//! when something needs it: [`MemTable::freeze`] sorts its slots by key (a flush does, through
//! [`MemTable::flush_parts`], on its own copy when it runs on another thread; a scan does);
//! from then on it answers lookups by binary search, and [`MemTable::sorted`] yields its entries
//! in key order for a flush.
//! Frozen, a slot's first u32 no longer holds the key's hash but, beside [`VERSION_FLAG`], its
//! *tag* in the low 31 bits: the four key bytes after the prefix every key of the table shares
//! (zero-padded, big-endian), shifted right by one. The flag keeps its bit because
//! [`MemTable::offsets`] and the version lookups tell newest entries from versions by it; the
//! tag gives up its lowest bit so that the slot stays 8 bytes. Of two keys with the shared
//! prefix, the one with the smaller tag is the smaller key (equal tags say nothing), so the
//! binary searches of a frozen table (the newest entries for [`MemTable::get`], the versions
//! for the lookups as of a point) compare tags in the slot table and reach into the arena only
//! on equal tags.
//! Overwriting a key appends the new entry and repoints the slot; the old bytes stay in the
//! arena until [`MemTable::reset`].
//!
//! # Versions kept for snapshots
//! Items are only appended, so an arena offset orders the writes of one MemTable: a *point*
//! (the arena bytes in use at some moment, [`MemTable::pin`]) separates the items written before
//! it (offset below the point) from those written after. A reader "as of" a point sees, for
//! each key, its newest entry below the point, and the range deletes below it
//! ([`MemTable::lookup_as_of`]). The table keeps one watermark, the highest point pinned: an
//! overwrite that displaces an entry below it keeps that entry in a *version slot* (its hash
//! with [`VERSION_FLAG`] set) further along the key's probe sequence, so the key's first slot
//! always holds its newest entry. Version slots count against [`MemTable::key_capacity`] (the
//! table fills earlier and is flushed: bounded). [`MemTable::freeze`] sorts the newest entries
//! first (`slots[..len]`, in key order, what a flush writes) and the versions after them, by
//! key and newest first. Without a pin (WAL replay, a database nobody snapshots) there are no
//! version slots.

use core::cmp::Ordering;

use crate::arena::{self, Arena, ITEM_HEADER_LEN};
use crate::batch;
use crate::entry::{self, Entry, EntryHeader, Item, RangeDelete};
use crate::error::Corruption;
use crate::filter::{self, FilterBuilder};
use crate::limits::MAX_MEMTABLE_RANGES;

/// Bytes per hash slot.
pub const SLOT_LEN: usize = 8;

/// The smallest buffer a MemTable accepts.
pub const MIN_MEMTABLE_BYTES: usize = 512;

/// The bit of a slot's hash that marks a version slot (an older entry of a key kept for a
/// pinned point); the hash of a key never has it.
pub const VERSION_FLAG: u32 = 1 << 31;

/// The point that sees everything a MemTable holds: its newest entries.
pub const NEWEST: u32 = u32::MAX;

type Slot = [u8; SLOT_LEN];

/// What a MemTable says of a key ([`MemTable::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemLookup<'a> {
    /// Its newest entry (a tombstone or an expired entry included).
    Found(Entry<'a>),
    /// A range delete covers the key, written after any entry of it here.
    Deleted,
    /// Nothing of the key here.
    Absent,
}

/// The MemTable cannot take this entry without a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The entries of a frozen MemTable in key order, and its range deletes.
#[derive(Clone, Copy)]
pub struct Sorted<'a> {
    slots: &'a [Slot],
    arena: &'a [u8],
    ranges: &'a [u32],
}

impl<'a> Sorted<'a> {
    /// The payloads, in ascending key order.
    pub fn iter(self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.slots.iter().filter_map(move |s| arena::item(self.arena, slot_offset(s)?))
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The payload of the `i`-th entry in key order.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        arena::item(self.arena, slot_offset(self.slots.get(i)?)?)
    }

    /// The payload of the `i`-th entry in key order, unless a range delete written after it
    /// (in this MemTable) covers its key: then `Some(None)`.
    pub fn live(&self, i: usize) -> Option<Option<&'a [u8]>> {
        let at = slot_offset(self.slots.get(i)?)?;
        let payload = arena::item(self.arena, at)?;
        let key = entry::decode(payload).ok()?.key;
        let covered = self.ranges().any(|(o, r)| o > at && r.covers(key));
        Some((!covered).then_some(payload))
    }

    /// The range deletes, oldest first, with their arena offsets.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, RangeDelete<'a>)> + 'a {
        let arena = self.arena;
        self.ranges.iter().filter_map(move |&o| Some((o, entry::decode_range(arena::item(arena, o)?).ok()?)))
    }
}

/// A MemTable over the buffer `M` (a `Vec<u8>`, a `&'static mut [u8]`, ...).
pub struct MemTable<M> {
    mem: M,
    slots: usize,
    arena_used: usize,
    count: usize,
    /// Takes no more writes ([`MemTable::seal`], or frozen).
    sealed: bool,
    /// Sorted ([`MemTable::freeze`]; implies `sealed`).
    frozen: bool,
    /// Counts changes (inserts, seals, freezes, resets): see [`MemTable::changes`].
    changes: u64,
    /// Counts freezes and resets: see [`MemTable::epoch`].
    epoch: u32,
    /// The longest key held (0 when empty), range deletes' keys included.
    max_key_len: usize,
    /// The arena offsets of the range deletes held, oldest first.
    ranges: heapless::Vec<u32, MAX_MEMTABLE_RANGES>,
    /// Version slots in use (older entries kept for pinned points).
    versions: usize,
    /// The highest point pinned ([`MemTable::pin`]): an overwrite keeps an entry below it.
    watermark: u32,
    /// Frozen: the length of the prefix every key shares, after which the slots' tags start.
    shared_prefix: usize,
}

/// A frozen slot's tag for `key`, whose first `shared` bytes every key of the table shares: the
/// next four bytes, zero-padded, big-endian, shifted right by one (bit 31 is
/// [`VERSION_FLAG`]'s). Of two keys with that prefix, the one with the smaller tag is the
/// smaller key; equal tags say nothing.
fn key_tag(key: &[u8], shared: usize) -> u32 {
    let mut t = [0u8; 4];
    let rest = key.get(shared..).unwrap_or(&[]);
    for (d, b) in t.iter_mut().zip(rest) {
        *d = *b;
    }
    u32::from_be_bytes(t) >> 1
}

/// A frozen slot's tag (its first u32 without [`VERSION_FLAG`]).
fn slot_tag(slot: &Slot) -> u32 {
    slot_hash(slot) & !VERSION_FLAG
}

/// How a frozen slot's key compares with `key`, whose tag is `tag` (see
/// [`MemTable::search_tag`]): by the tags, and by the key bytes in the arena when they are equal
/// or `key` has none. A slot whose entry does not decode is less.
fn frozen_cmp(arena: &[u8], slot: &Slot, key: &[u8], tag: Option<u32>) -> Ordering {
    let full =
        || slot_offset(slot).and_then(|o| entry_at(arena, o)).map_or(Ordering::Less, |e| e.key.cmp(key));
    match tag.map(|t| slot_tag(slot).cmp(&t)) {
        Some(Ordering::Equal) | None => full(),
        Some(decided) => decided,
    }
}

/// The length of the prefix two keys share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn hash(key: &[u8]) -> u32 {
    // FNV-1a: short keys, no allocation, good enough spread for linear probing.
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h & !VERSION_FLAG
}

fn slot_offset(slot: &Slot) -> Option<u32> {
    let [_, _, _, _, o0, o1, o2, o3] = *slot;
    u32::from_le_bytes([o0, o1, o2, o3]).checked_sub(1)
}

fn slot_hash(slot: &Slot) -> u32 {
    let [h0, h1, h2, h3, ..] = *slot;
    u32::from_le_bytes([h0, h1, h2, h3])
}

fn make_slot(hash: u32, offset: u32) -> Slot {
    let mut s = [0u8; SLOT_LEN];
    s[..4].copy_from_slice(&hash.to_le_bytes());
    s[4..].copy_from_slice(&offset.wrapping_add(1).to_le_bytes());
    s
}

fn entry_at(arena: &[u8], offset: u32) -> Option<Entry<'_>> {
    entry::decode(arena::item(arena, offset)?).ok()
}

impl<M: AsRef<[u8]> + AsMut<[u8]>> MemTable<M> {
    /// A MemTable over `mem`, or `Err(mem)` if it is smaller than [`MIN_MEMTABLE_BYTES`].
    pub fn new(mut mem: M) -> Result<Self, M> {
        let len = mem.as_ref().len();
        if len < MIN_MEMTABLE_BYTES {
            return Err(mem);
        }
        let slots = prev_power_of_two(len / 64);
        mem.as_mut()[..slots * SLOT_LEN].fill(0);
        Ok(MemTable {
            mem,
            slots,
            arena_used: 0,
            count: 0,
            sealed: false,
            frozen: false,
            changes: 0,
            epoch: 0,
            max_key_len: 0,
            ranges: heapless::Vec::new(),
            versions: 0,
            watermark: 0,
            shared_prefix: 0,
        })
    }

    fn parts(&self) -> (&[Slot], &[u8]) {
        let (s, a) = self.mem.as_ref().split_at(self.slots * SLOT_LEN);
        (s.as_chunks::<SLOT_LEN>().0, a)
    }

    fn parts_mut(&mut self) -> (&mut [Slot], Arena<'_>) {
        let (s, a) = self.mem.as_mut().split_at_mut(self.slots * SLOT_LEN);
        (s.as_chunks_mut::<SLOT_LEN>().0, Arena::new(a, &mut self.arena_used))
    }

    /// Bytes of the buffer the table lives in.
    pub fn buffer_len(&self) -> usize {
        self.mem.as_ref().len()
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is held: no key and no range delete.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.ranges.is_empty()
    }

    /// True once [`MemTable::freeze`] has run (and until [`MemTable::reset`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// True once the table takes no more writes ([`MemTable::seal`], [`MemTable::freeze`]).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Arena bytes in use, including overwritten entries.
    pub fn arena_used(&self) -> usize {
        self.arena_used
    }

    /// Arena bytes in all.
    pub fn arena_capacity(&self) -> usize {
        self.mem.as_ref().len() - self.slots * SLOT_LEN
    }

    /// The most slots this table fills before it must be flushed: one per distinct key, and
    /// one per older version kept for a pinned point.
    pub fn key_capacity(&self) -> usize {
        self.slots / 4 * 3
    }

    /// Slots in use: distinct keys and kept versions.
    pub fn used_slots(&self) -> usize {
        self.count + self.versions
    }

    /// Older versions kept for pinned points.
    pub fn versions(&self) -> usize {
        self.versions
    }

    /// Forgets every pinned point (no reader of one is left): overwrites keep no version from
    /// now on; those kept stay until the table is reset.
    pub fn unpin(&mut self) {
        self.watermark = 0;
    }

    /// Pins the present as a point (the arena bytes in use) and returns it: from now on an
    /// overwrite keeps the entry a reader as of this point sees. Nothing on a sealed table,
    /// which changes no more.
    pub fn pin(&mut self) -> u32 {
        let point = u32::try_from(self.arena_used).unwrap_or(NEWEST - 1);
        if !self.sealed {
            self.watermark = self.watermark.max(point);
        }
        point
    }

    /// The largest entry payload that fits in an empty table.
    pub fn max_payload(&self) -> usize {
        self.arena_capacity().saturating_sub(ITEM_HEADER_LEN)
    }

    /// True when a new key with a payload of `payload_len` bytes fits without a flush.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.fits_many(payload_len, 1)
    }

    /// True when `keys` new keys in one item of `payload_len` bytes fit without a flush.
    pub fn fits_many(&self, payload_len: usize, keys: usize) -> bool {
        self.fits_items(payload_len, keys, 0)
    }

    /// True when one item of `payload_len` bytes holding `keys` entries and `ranges` range
    /// deletes fits without a flush.
    pub fn fits_items(&self, payload_len: usize, keys: usize, ranges: usize) -> bool {
        !self.sealed
            && self.used_slots() + keys <= self.key_capacity()
            && self.ranges.len() + ranges <= MAX_MEMTABLE_RANGES
            && self.arena_capacity() - self.arena_used >= ITEM_HEADER_LEN + payload_len
    }

    /// True when the table is full enough that the engine should flush it now.
    pub fn needs_flush(&self) -> bool {
        self.used_slots() >= self.key_capacity()
            || (self.arena_capacity() - self.arena_used) < self.arena_capacity() / 16
    }

    /// Finds `key`'s slot index (`Ok`) or the empty slot where it would go (`Err`).
    fn probe(&self, key: &[u8], h: u32) -> Result<usize, usize> {
        let (slots, arena) = self.parts();
        let mask = self.slots - 1;
        let mut i = h as usize & mask;
        // At most 3/4 of the slots are used, so an empty slot is always reached.
        for _ in 0..self.slots {
            let slot = slots[i];
            match slot_offset(&slot) {
                None => return Err(i),
                Some(off) if slot_hash(&slot) == h => {
                    if entry_at(arena, off).is_some_and(|e| e.key == key) {
                        return Ok(i);
                    }
                }
                Some(_) => {}
            }
            i = (i + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// Stores an entry (put, tombstone or expiring put), replacing any older entry for its key.
    pub fn insert(&mut self, header: &EntryHeader, key: &[u8], value: &[u8]) -> Result<(), Full> {
        let (hb, hn) = header.encode();
        let len = entry::payload_len(header, value.len());
        if !self.fits(len) {
            // An overwrite needs no new slot (unless it keeps a version), but still needs arena
            // room.
            let room = self.arena_capacity() - self.arena_used >= ITEM_HEADER_LEN + len;
            let keeps_version = match self.probe(key, hash(key)) {
                Ok(i) => self.parts().0.get(i).and_then(slot_offset).is_none_or(|o| o < self.watermark),
                Err(_) => true,
            };
            if self.sealed || !room || keeps_version {
                return Err(Full);
            }
        }
        let offset = {
            let (_, mut arena) = self.parts_mut();
            arena.alloc(&[&hb[..hn], key, value]).ok_or(Full)?
        };
        self.index_item(offset).map_err(|_| Full)
    }

    /// Stores a range delete from `start` (inclusive) to `end` (exclusive).
    pub fn insert_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), Full> {
        if !self.fits_items(entry::range_payload_len(start, end), 0, 1) {
            return Err(Full);
        }
        let offset = {
            let (_, mut arena) = self.parts_mut();
            arena.alloc(&[&entry::range_header(start.len()), start, end]).ok_or(Full)?
        };
        self.note_range(offset, start.len().max(end.len())).map_err(|_| Full)
    }

    fn note_range(&mut self, offset: u32, key_len: usize) -> Result<(), Corruption> {
        self.ranges.push(offset).map_err(|_| Corruption::BadEntry)?;
        self.changes += 1;
        self.max_key_len = self.max_key_len.max(key_len);
        Ok(())
    }

    /// Stores the entries of an encoded [`crate::batch::WriteBatch`] as one arena item.
    pub fn insert_batch(&mut self, payload: &[u8]) -> Result<(), Full> {
        let (offset, dst) = self.reserve(payload.len()).ok_or(Full)?;
        dst.copy_from_slice(payload);
        self.commit_reserved(offset).map_err(|_| Full)
    }

    /// Space for a payload of `len` bytes read straight from storage (WAL replay); the entry is
    /// kept only if [`MemTable::commit_reserved`] accepts it. The caller checks key room first
    /// ([`MemTable::fits_many`]).
    pub fn reserve(&mut self, len: usize) -> Option<(u32, &mut [u8])> {
        if self.sealed {
            return None;
        }
        let (_, mut arena) = self.parts_mut();
        let (offset, _) = arena.reserve(len)?;
        // The arena view borrows `self.mem`; re-derive the slice from the offset to return it.
        let start = self.slots * SLOT_LEN + offset as usize + ITEM_HEADER_LEN;
        let bytes = self.mem.as_mut().get_mut(start..start + len)?;
        Some((offset, bytes))
    }

    /// The payload reserved (not yet committed) at `offset`.
    pub fn reserved(&self, offset: u32) -> Option<&[u8]> {
        arena::item(self.parts().1, offset)
    }

    /// Indexes the payload reserved at `offset`: one entry, or every entry of a write batch.
    /// A payload that does not decode is refused as a whole and nothing of it is indexed.
    pub fn commit_reserved(&mut self, offset: u32) -> Result<(), Corruption> {
        let (is_batch, items, keys, ranges) = {
            let (_, arena) = self.parts();
            let payload = arena::item(arena, offset).ok_or(Corruption::BadEntry)?;
            let (keys, ranges) = item_counts(payload)?;
            (batch::declared_count(payload).is_some(), keys + ranges, keys, ranges)
        };
        if self.used_slots() + keys > self.key_capacity() || self.ranges.len() + ranges > MAX_MEMTABLE_RANGES
        {
            return Err(Corruption::BadEntry);
        }
        let (_, mut arena) = self.parts_mut();
        arena.commit(offset);
        if !is_batch {
            return self.index_any(offset);
        }
        // Items start after the item header and the batch header, one after another.
        let mut at = offset as usize + ITEM_HEADER_LEN + batch::BATCH_HEADER_LEN;
        for _ in 0..items {
            let item_offset = u32::try_from(at).map_err(|_| Corruption::BadEntry)?;
            let len = {
                let (_, arena) = self.parts();
                arena::item(arena, item_offset).ok_or(Corruption::BadEntry)?.len()
            };
            self.index_any(item_offset)?;
            at += ITEM_HEADER_LEN + len;
        }
        Ok(())
    }

    /// Indexes the item at `offset`: an entry in the hash table, a range delete in the list.
    fn index_any(&mut self, offset: u32) -> Result<(), Corruption> {
        let range_key_len = {
            let (_, arena) = self.parts();
            match entry::decode_item(arena::item(arena, offset).ok_or(Corruption::BadEntry)?)? {
                Item::Range(r) => Some(r.start.len().max(r.end.len())),
                Item::Point(_) => None,
            }
        };
        match range_key_len {
            Some(n) => self.note_range(offset, n),
            None => self.index_item(offset),
        }
    }

    /// Points the slot of the item's key at the item (adding the key if it is new). An entry it
    /// displaces that a pinned point sees moves to a version slot: the first empty slot further
    /// along the probe sequence.
    fn index_item(&mut self, offset: u32) -> Result<(), Corruption> {
        let (h, pos, key_len) = {
            let (_, arena) = self.parts();
            let e = entry_at(arena, offset).ok_or(Corruption::BadEntry)?;
            let h = hash(e.key);
            (h, self.probe(e.key, h), e.key.len())
        };
        let displaced = match pos {
            Ok(i) => self.parts().0.get(i).and_then(slot_offset).filter(|&o| o < self.watermark),
            Err(_) => None,
        };
        if (pos.is_err() || displaced.is_some()) && self.used_slots() >= self.key_capacity() {
            return Err(Corruption::BadEntry);
        }
        let mask = self.slots - 1;
        let (slots, _) = self.parts_mut();
        let i = match pos {
            Ok(i) | Err(i) => i,
        };
        let slot = slots.get_mut(i).ok_or(Corruption::BadEntry)?;
        *slot = make_slot(h, offset);
        if let Some(old) = displaced {
            // At most 3/4 of the slots are used, so an empty slot is always reached.
            let mut j = (i + 1) & mask;
            while slots.get(j).and_then(slot_offset).is_some() {
                j = (j + 1) & mask;
            }
            let free = slots.get_mut(j).ok_or(Corruption::BadEntry)?;
            *free = make_slot(h | VERSION_FLAG, old);
            self.versions += 1;
        }
        if pos.is_err() {
            self.count += 1;
        }
        self.changes += 1;
        self.max_key_len = self.max_key_len.max(key_len);
        Ok(())
    }

    /// The newest entry for `key`, including tombstones and expired entries (range deletes are
    /// not looked at: see [`MemTable::lookup`]).
    pub fn get(&self, key: &[u8]) -> Option<Entry<'_>> {
        self.get_at(key).map(|(_, e)| e)
    }

    /// What this table says of `key`: its newest entry, unless a range delete written after it
    /// covers it; a covering range delete when it holds no entry of the key; or nothing.
    pub fn lookup(&self, key: &[u8]) -> MemLookup<'_> {
        self.lookup_as_of(key, NEWEST)
    }

    /// [`MemTable::lookup`] as a reader pinned at `point` sees it: the newest entry below the
    /// point, and the range deletes below it. [`NEWEST`] sees everything; a point this table
    /// did not pin sees what was below it, as far as the table kept it.
    pub fn lookup_as_of(&self, key: &[u8], point: u32) -> MemLookup<'_> {
        match self.get_at_as_of(key, point) {
            Some((at, _)) if self.range_covers_as_of(key, Some(at), point) => MemLookup::Deleted,
            Some((_, e)) => MemLookup::Found(e),
            None if self.range_covers_as_of(key, None, point) => MemLookup::Deleted,
            None => MemLookup::Absent,
        }
    }

    /// True when a range delete held here covers `key` (with `after`: one written after the
    /// item at that arena offset).
    pub fn range_covers(&self, key: &[u8], after: Option<u32>) -> bool {
        self.range_covers_as_of(key, after, NEWEST)
    }

    /// [`MemTable::range_covers`] among the range deletes written before `point`.
    pub fn range_covers_as_of(&self, key: &[u8], after: Option<u32>, point: u32) -> bool {
        self.ranges().any(|(at, r)| at < point && after.is_none_or(|a| at > a) && r.covers(key))
    }

    /// The newest entry for `key` below `point` and its arena offset.
    pub fn get_at_as_of(&self, key: &[u8], point: u32) -> Option<(u32, Entry<'_>)> {
        let (at, e) = self.get_at(key)?;
        if at < point {
            return Some((at, e));
        }
        let at = self.older_version(key, point)?;
        Some((at, self.entry_at(at)?))
    }

    /// The offset of the entry a reader at `point` sees of the key whose newest entry is at
    /// `newest`: that one if below the point, else the newest kept version below it; `None`
    /// when the key had no entry before the point.
    pub fn visible_at(&self, newest: u32, point: u32) -> Option<u32> {
        if newest < point {
            return Some(newest);
        }
        self.older_version(self.entry_at(newest)?.key, point)
    }

    /// The newest kept version of `key` below `point`.
    fn older_version(&self, key: &[u8], point: u32) -> Option<u32> {
        if self.versions == 0 {
            return None;
        }
        let (slots, arena) = self.parts();
        let is_key = |s: &Slot| slot_offset(s).and_then(|o| entry_at(arena, o)).is_some_and(|e| e.key == key);
        if self.frozen {
            // Versions follow the newest entries, by key, newest first.
            let region = slots.get(self.count..self.count + self.versions)?;
            let tag = self.search_tag(slots, arena, key);
            let first = region.partition_point(|s| frozen_cmp(arena, s, key, tag) == Ordering::Less);
            return region
                .get(first..)?
                .iter()
                .take_while(|s| is_key(s))
                .filter_map(slot_offset)
                .find(|&o| o < point);
        }
        let h = hash(key) | VERSION_FLAG;
        let mask = self.slots - 1;
        let mut i = (h & !VERSION_FLAG) as usize & mask;
        let mut best: Option<u32> = None;
        for _ in 0..self.slots {
            let slot = slots.get(i)?;
            let Some(off) = slot_offset(slot) else { break };
            if slot_hash(slot) == h && off < point && best.is_none_or(|b| off > b) && is_key(slot) {
                best = Some(off);
            }
            i = (i + 1) & mask;
        }
        best
    }

    /// The range deletes held, oldest first, with their arena offsets.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, RangeDelete<'_>)> + '_ {
        let arena = self.parts().1;
        self.ranges.iter().filter_map(move |&o| Some((o, entry::decode_range(arena::item(arena, o)?).ok()?)))
    }

    /// Range deletes held.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The newest entry for `key` and its arena offset.
    pub fn get_at(&self, key: &[u8]) -> Option<(u32, Entry<'_>)> {
        let (slots, arena) = self.parts();
        let i = if self.frozen {
            let tag = self.search_tag(slots, arena, key);
            slots.get(..self.count)?.binary_search_by(|s| frozen_cmp(arena, s, key, tag)).ok()?
        } else {
            self.probe(key, hash(key)).ok()?
        };
        let at = slot_offset(slots.get(i)?)?;
        Some((at, entry_at(arena, at)?))
    }

    /// The tag `key` would have in this frozen table: `None` when it lacks the prefix every
    /// key here shares (then only the key bytes compare it with a slot's).
    fn search_tag(&self, slots: &[Slot], arena: &[u8], key: &[u8]) -> Option<u32> {
        let shared = self.shared_prefix;
        if shared > 0 {
            let first = slots.first().and_then(slot_offset).and_then(|o| entry_at(arena, o))?;
            if first.key.get(..shared) != key.get(..shared) {
                return None;
            }
        }
        Some(key_tag(key, shared))
    }

    /// Makes the table immutable without sorting it: it takes no more writes, and answers
    /// lookups through its hash slots as before. O(1).
    pub fn seal(&mut self) {
        if !self.sealed {
            self.sealed = true;
            self.changes += 1;
        }
    }

    /// Makes the table immutable and sorts its entries by key, for a flush and for scans (a few
    /// milliseconds for a full 4 MiB table: an unsorted sealed table is sorted where a flush or a
    /// scan needs it, not in the rotation).
    pub fn freeze(&mut self) {
        if self.frozen {
            return;
        }
        self.sealed = true;
        let (slots, arena) = {
            let (s, a) = self.mem.as_mut().split_at_mut(self.slots * SLOT_LEN);
            (s.as_chunks_mut::<SLOT_LEN>().0, &*a)
        };
        // Move the used slots to the front, then order them: the newest entries by key, then
        // the versions by key, newest first.
        let mut used = 0;
        for i in 0..slots.len() {
            if slot_offset(&slots[i]).is_some() {
                slots.swap(used, i);
                used += 1;
            }
        }
        // The prefix every key shares, then each slot's tag (the version flag kept): the tags
        // order the slots before any key is read, so the sort decodes entries only where two
        // tags tie (keys alike in their first bytes after the prefix, or versions of one key).
        let key_of = |s: &Slot| slot_offset(s).and_then(|o| entry_at(arena, o)).map_or(&[][..], |e| e.key);
        let first = slots[..used].first().map_or(&[][..], key_of);
        let shared =
            slots[..used].iter().map(|s| common_prefix(first, key_of(s))).min().unwrap_or(first.len());
        for slot in &mut slots[..used] {
            let tag = (slot_hash(slot) & VERSION_FLAG) | key_tag(key_of(slot), shared);
            slot[..4].copy_from_slice(&tag.to_le_bytes());
        }
        let order = |s: &Slot| {
            let off = slot_offset(s);
            let key = off.and_then(|o| entry_at(arena, o)).map(|e| e.key);
            (key, core::cmp::Reverse(off))
        };
        // By tag alone first (in the slots: no arena reads), then each run of equal tags by key:
        // entries are decoded only for comparisons inside a run.
        let used = &mut slots[..used];
        used.sort_unstable_by_key(slot_hash);
        for run in used.chunk_by_mut(|a, b| slot_hash(a) == slot_hash(b)).filter(|run| run.len() > 1) {
            run.sort_unstable_by(|a, b| order(a).cmp(&order(b)));
        }
        self.shared_prefix = shared;
        self.frozen = true;
        self.changes += 1;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// A count of the changes made to the table (each insert, seal, freeze and reset adds one):
    /// equal counts of the same table mean the same contents.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// A count of the table's freezes and resets. While it stays the same the table only
    /// grows: every entry written since an earlier look has an arena offset at or past
    /// [`MemTable::arena_used`] as it was then, and no key loses its entry.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The longest key held.
    pub fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    /// The entry whose item is at `offset` in the arena (an offset from [`MemTable::offsets`]).
    pub fn entry_at(&self, offset: u32) -> Option<Entry<'_>> {
        entry_at(self.parts().1, offset)
    }

    /// The arena offsets of the newest entry of every key: in key order once frozen, in no
    /// particular order before.
    pub fn offsets(&self) -> impl Iterator<Item = u32> + '_ {
        let (slots, _) = self.parts();
        let used = if self.frozen { slots.get(..self.count).unwrap_or(&[]) } else { slots };
        used.iter().filter(|s| slot_hash(s) & VERSION_FLAG == 0).filter_map(slot_offset)
    }

    /// The offset of the `i`-th entry in key order of a frozen table.
    pub fn sorted_offset(&self, i: usize) -> Option<u32> {
        if !self.frozen || i >= self.count {
            return None;
        }
        slot_offset(self.parts().0.get(i)?)
    }

    /// Writes the offsets of the newest entry of every key into `out` in key order (each a
    /// little-endian `u32`); returns how many, or `None` when `out` is too small. O(n log n) in
    /// the keys held.
    pub fn sort_offsets_into(&self, out: &mut [[u8; 4]]) -> Option<usize> {
        let n = self.count;
        let dst = out.get_mut(..n)?;
        for (d, o) in dst.iter_mut().zip(self.offsets()) {
            *d = o.to_le_bytes();
        }
        if !self.frozen {
            let arena = self.parts().1;
            let key_of = |o: &[u8; 4]| entry_at(arena, u32::from_le_bytes(*o)).map(|e| e.key);
            dst.sort_unstable_by(|a, b| key_of(a).cmp(&key_of(b)));
        }
        Some(n)
    }

    /// The payloads of a frozen table in ascending key order (nothing if not frozen).
    pub fn sorted(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let (slots, arena) = self.parts();
        let n = if self.frozen { self.count } else { 0 };
        Sorted { slots: &slots[..n], arena, ranges: &self.ranges }.iter()
    }

    /// What a flush writes: a frozen table's entries in key order, and the [`crate::filter`] of
    /// its keys, built in the free tail of its slot table (at least a quarter of the slots are
    /// free: over 20 bits per key; empty when there is no room for a block). Kept versions are
    /// not written. Sorts a sealed table first ([`MemTable::freeze`]); `None` when the table is
    /// not sealed.
    pub fn flush_parts(&mut self) -> Option<(Sorted<'_>, &[u8])> {
        if !self.sealed {
            return None;
        }
        self.freeze();
        let (slots, arena) = self.mem.as_mut().split_at_mut(self.slots * SLOT_LEN);
        let (used, free) = slots.split_at_mut((self.count + self.versions) * SLOT_LEN);
        let used = used.as_chunks::<SLOT_LEN>().0.get(..self.count).unwrap_or(&[]);
        let arena = &*arena;
        let filter = match FilterBuilder::new(free, self.count) {
            Some(mut builder) => {
                for s in used {
                    if let Some(e) = slot_offset(s).and_then(|o| entry_at(arena, o)) {
                        builder.add(filter::key_hash(e.key));
                    }
                }
                builder.finish()
            }
            None => &[],
        };
        Some((Sorted { slots: used, arena, ranges: &self.ranges }, filter))
    }

    /// A copy of this sealed table in `buf` (of the same length as this table's buffer), as it
    /// is (sorted or not): its slot table and the arena bytes in use, so the copy answers and
    /// flushes exactly as this one does. A memcpy. `Err(buf)` when this table is not sealed or
    /// the lengths differ. For a flush run apart from the database
    /// ([`crate::Db::copy_immutable`]): the copy is the flusher's own, which
    /// [`MemTable::flush_parts`] sorts and builds its filter in, off the engine's lock, while
    /// this one keeps answering reads.
    pub fn sealed_copy<N: AsRef<[u8]> + AsMut<[u8]>>(&self, buf: N) -> Result<MemTable<N>, N> {
        if !self.sealed {
            return Err(buf);
        }
        self.copy_into(buf)
    }

    /// A copy of this table, active, sealed or frozen, in `buf` (of the same length as this
    /// table's buffer), frozen: what a reader pinned in this table reads once the table itself
    /// is flushed or dropped. A memcpy of the used bytes, and a sort of the copy's slots when
    /// this table is not frozen (active or sealed). `Err(buf)` when the lengths differ.
    pub fn copy_frozen<N: AsRef<[u8]> + AsMut<[u8]>>(&self, buf: N) -> Result<MemTable<N>, N> {
        let mut copy = self.copy_into(buf)?;
        copy.freeze();
        Ok(copy)
    }

    /// This table's used bytes and state copied into `buf` (of the same length), unchanged.
    fn copy_into<N: AsRef<[u8]> + AsMut<[u8]>>(&self, mut buf: N) -> Result<MemTable<N>, N> {
        let n = self.slots * SLOT_LEN + self.arena_used;
        if buf.as_ref().len() != self.buffer_len() {
            return Err(buf);
        }
        match (buf.as_mut().get_mut(..n), self.mem.as_ref().get(..n)) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            _ => return Err(buf),
        }
        Ok(MemTable {
            mem: buf,
            slots: self.slots,
            arena_used: self.arena_used,
            count: self.count,
            sealed: self.sealed,
            frozen: self.frozen,
            changes: 0,
            epoch: 0,
            max_key_len: self.max_key_len,
            ranges: self.ranges.clone(),
            versions: self.versions,
            watermark: self.watermark,
            shared_prefix: self.shared_prefix,
        })
    }

    /// The buffer back.
    pub fn into_buffer(self) -> M {
        self.mem
    }

    /// The whole buffer as scratch memory, while the table is empty and active (compaction
    /// borrows the idle MemTable this way). Call [`MemTable::reset`] afterwards.
    pub fn scratch(&mut self) -> Option<&mut [u8]> {
        if self.is_empty() && !self.sealed {
            Some(self.mem.as_mut())
        } else {
            None
        }
    }

    /// Empties the table (after a flush) and makes it active again.
    pub fn reset(&mut self) {
        let n = self.slots * SLOT_LEN;
        self.mem.as_mut()[..n].fill(0);
        self.arena_used = 0;
        self.count = 0;
        self.sealed = false;
        self.frozen = false;
        self.changes += 1;
        self.epoch = self.epoch.wrapping_add(1);
        self.max_key_len = 0;
        self.ranges.clear();
        self.versions = 0;
        self.watermark = 0;
        self.shared_prefix = 0;
    }
}

/// How many entries and how many range deletes a payload (one item, or a write batch) holds;
/// `Err` when an item does not decode or a batch's count is wrong.
pub fn item_counts(payload: &[u8]) -> Result<(usize, usize), Corruption> {
    let tally = |item: &[u8]| -> Result<(usize, usize), Corruption> {
        Ok(match entry::decode_item(item)? {
            Item::Point(_) => (1, 0),
            Item::Range(_) => (0, 1),
        })
    };
    match batch::declared_count(payload) {
        Some(n) => {
            let (mut seen, mut keys, mut ranges) = (0, 0, 0);
            for item in batch::Items::of(payload) {
                let (k, r) = tally(item.map_err(|()| Corruption::BadEntry)?)?;
                (keys, ranges) = (keys + k, ranges + r);
                seen += 1;
            }
            if seen == n {
                Ok((keys, ranges))
            } else {
                Err(Corruption::BadEntry)
            }
        }
        None => tally(payload),
    }
}

/// The smallest MemTable buffer (in steps of 64 bytes) that takes one item of `payload_len`
/// bytes writing `keys` keys, when empty: for telling a user how much memory existing data needs.
pub fn bytes_needed(payload_len: usize, keys: usize) -> usize {
    let fits = |b: usize| {
        let slots = prev_power_of_two(b / 64);
        let arena = b - slots * SLOT_LEN;
        arena >= ITEM_HEADER_LEN + payload_len && slots / 4 * 3 >= keys
    };
    let mut b = MIN_MEMTABLE_BYTES.max(payload_len.div_ceil(64) * 64);
    while !fits(b) && b < usize::MAX / 2 {
        b += 64;
    }
    b
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &[u8]) -> EntryHeader {
        EntryHeader { tombstone: false, key_len: k.len(), expires_at: None }
    }

    #[test]
    fn put_get_and_overwrite() {
        let mut m = MemTable::new(vec![0u8; 4096]).unwrap();
        m.insert(&put(b"a"), b"a", b"1").unwrap();
        m.insert(&put(b"b"), b"b", b"2").unwrap();
        m.insert(&put(b"a"), b"a", b"3").unwrap();
        assert_eq!(m.get(b"a").unwrap().value, b"3");
        assert_eq!(m.get(b"b").unwrap().value, b"2");
        assert!(m.get(b"c").is_none());
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_frozen_table_finds_every_key_and_version_and_no_other_through_its_tags() {
        // Keys over a tiny alphabet (zero bytes, bytes one bit apart so that tags tie, prefixes
        // of one another, lengths around the four tag bytes), with and without a long prefix
        // they all share, overwritten across pinned points so that version slots of one key
        // sit side by side; every lookup checked against a model, newest and as of each point.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let word = |prefix: &[u8], next: &mut dyn FnMut() -> u64| {
            let len = 1 + next() as usize % 7;
            let mut k = prefix.to_vec();
            k.extend((0..len).map(|_| [0u8, 1, b'a', 0x80, 0xfe, 0xff][next() as usize % 6]));
            k
        };
        for prefix in [&b""[..], b"sensor/0042/"] {
            for round in 0..30 {
                let mut m = MemTable::new(vec![0u8; 32 << 10]).unwrap();
                let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
                let mut points = Vec::new();
                for i in 0..200u32 {
                    // Rewrites of a few keys make the versions; new keys the rest.
                    let k = match model.keys().nth(next() as usize % 4) {
                        Some(old) if next() % 3 == 0 => old.clone(),
                        _ => word(prefix, &mut next),
                    };
                    let v = i.to_le_bytes();
                    if m.insert(&put(&k), &k, &v).is_err() {
                        break;
                    }
                    model.insert(k, v.to_vec());
                    if next() % 16 == 0 {
                        points.push((m.pin(), model.clone()));
                    }
                }
                // Frozen in place, a frozen copy of the same table while it was active, and a
                // copy of it sealed (as a rotation leaves it): unsorted, answering by its hash.
                let copy = m.copy_frozen(vec![0u8; 32 << 10]).unwrap();
                m.seal();
                assert!(m.insert(&put(b"late"), b"late", b"v").is_err(), "a sealed table takes no writes");
                let mut sealed = m.sealed_copy(vec![0u8; 32 << 10]).ok().unwrap();
                m.freeze();
                assert!(sealed.is_sealed() && !sealed.is_frozen() && m.is_frozen());
                assert!(m.versions() > 0 || points.is_empty(), "round {round}");
                let mut probes: Vec<Vec<u8>> = model.keys().cloned().collect();
                probes.extend((0..300).map(|_| word(prefix, &mut next)));
                probes.extend(
                    [
                        &b""[..],
                        b"a",
                        b"sensor/",
                        b"sensor/0042/",
                        b"sensor/0042/\xff\xff\xff\xff\xff\xff\xff\xff",
                        b"zzz",
                    ]
                    .map(|k| k.to_vec()),
                );
                for t in [&m, &copy, &sealed] {
                    for k in &probes {
                        assert_eq!(t.get(k).map(|e| e.value), model.get(k).map(|v| &v[..]), "{k:?}");
                        for (point, seen) in &points {
                            assert_eq!(
                                value_as_of(t, k, *point).as_ref(),
                                seen.get(k),
                                "{k:?} as of {point}"
                            );
                        }
                    }
                }
                // A flush of the sealed copy sorts it: the same entries in the same order.
                let in_place: Vec<Vec<u8>> = m.sorted().map(<[u8]>::to_vec).collect();
                let (order, _) = sealed.flush_parts().unwrap();
                assert_eq!(order.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), in_place);
                assert!(sealed.is_frozen() && in_place.len() == model.len());
            }
        }
    }

    #[test]
    fn tombstone_and_expiry_are_kept_as_entries() {
        let mut m = MemTable::new(vec![0u8; 4096]).unwrap();
        m.insert(&put(b"k"), b"k", b"v").unwrap();
        let del = EntryHeader { tombstone: true, key_len: 1, expires_at: None };
        m.insert(&del, b"k", b"").unwrap();
        assert!(m.get(b"k").unwrap().tombstone);
        let ttl = EntryHeader { tombstone: false, key_len: 1, expires_at: Some(50) };
        m.insert(&ttl, b"t", b"x").unwrap();
        let e = m.get(b"t").unwrap();
        assert!(!e.is_dead_at(49) && e.is_dead_at(50));
    }

    #[test]
    fn full_table_refuses_new_keys_but_reports_it() {
        let mut m = MemTable::new(vec![0u8; 512]).unwrap();
        let mut n = 0u32;
        loop {
            let k = n.to_be_bytes();
            match m.insert(&put(&k), &k, b"value") {
                Ok(()) => n += 1,
                Err(Full) => break,
            }
        }
        assert!(n > 0);
        assert!(m.needs_flush());
        for i in 0..n {
            assert_eq!(m.get(&i.to_be_bytes()).unwrap().value, b"value");
        }
    }

    #[test]
    fn key_capacity_is_three_quarters_of_slots() {
        let mut m = MemTable::new(vec![0u8; 64 * 64]).unwrap();
        assert_eq!(m.key_capacity(), 48);
        for i in 0..48u32 {
            m.insert(&put(&i.to_be_bytes()), &i.to_be_bytes(), b"").unwrap();
        }
        assert_eq!(m.insert(&put(b"new!"), b"new!", b""), Err(Full));
        // Overwriting an existing key still works while arena room remains.
        m.insert(&put(&0u32.to_be_bytes()), &0u32.to_be_bytes(), b"x").unwrap();
    }

    #[test]
    fn frozen_table_yields_sorted_entries_and_still_answers_gets() {
        let mut m = MemTable::new(vec![0u8; 8192]).unwrap();
        for k in [&b"pear"[..], b"apple", b"zucchini", b"fig", b"apple"] {
            m.insert(&put(k), k, k).unwrap();
        }
        m.freeze();
        let keys: Vec<&[u8]> = m.sorted().map(|p| entry::decode(p).unwrap().key).collect();
        assert_eq!(keys, [&b"apple"[..], b"fig", b"pear", b"zucchini"]);
        assert_eq!(m.get(b"fig").unwrap().value, b"fig");
        assert!(m.get(b"kiwi").is_none());
        assert_eq!(m.insert(&put(b"x"), b"x", b""), Err(Full));
        m.reset();
        assert!(m.is_empty() && m.get(b"fig").is_none());
        m.insert(&put(b"x"), b"x", b"").unwrap();
    }

    #[test]
    fn reserved_payload_is_indexed_on_commit() {
        let mut m = MemTable::new(vec![0u8; 4096]).unwrap();
        let h = put(b"key");
        let (hb, hn) = h.encode();
        let len = entry::payload_len(&h, 3);
        let (off, dst) = m.reserve(len).unwrap();
        dst[..hn].copy_from_slice(&hb[..hn]);
        dst[hn..hn + 3].copy_from_slice(b"key");
        dst[hn + 3..].copy_from_slice(b"val");
        m.commit_reserved(off).unwrap();
        assert_eq!(m.get(b"key").unwrap().value, b"val");
        // A reserved payload that does not decode is refused and not indexed.
        let (off, dst) = m.reserve(4).unwrap();
        dst.copy_from_slice(&[9, 9, 9, 9]);
        assert!(m.commit_reserved(off).is_err());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn bytes_needed_is_the_smallest_buffer_that_takes_the_item() {
        for (payload, keys) in [(10, 1), (300, 1), (5000, 1), (100, 40), (1 << 20, 1)] {
            let b = bytes_needed(payload, keys);
            let m = MemTable::new(vec![0u8; b]).unwrap();
            assert!(m.max_payload() >= payload && m.key_capacity() >= keys, "{payload} {keys}: {b}");
            if b > MIN_MEMTABLE_BYTES {
                let smaller = MemTable::new(vec![0u8; b - 64]).unwrap();
                assert!(
                    smaller.max_payload() < payload || smaller.key_capacity() < keys,
                    "{payload} {keys}: {b}"
                );
            }
        }
    }

    #[test]
    fn too_small_buffer_is_refused() {
        assert!(MemTable::new(vec![0u8; 100]).is_err());
    }

    fn value_as_of(m: &MemTable<Vec<u8>>, k: &[u8], point: u32) -> Option<Vec<u8>> {
        match m.lookup_as_of(k, point) {
            MemLookup::Found(e) if !e.tombstone => Some(e.value.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn a_pinned_point_sees_the_entries_written_before_it_after_overwrites_deletes_and_range_deletes() {
        let mut m = MemTable::new(vec![0u8; 8192]).unwrap();
        m.insert(&put(b"a"), b"a", b"1").unwrap();
        m.insert(&put(b"b"), b"b", b"1").unwrap();
        m.insert(&put(b"c"), b"c", b"1").unwrap();
        let p1 = m.pin();
        m.insert(&put(b"a"), b"a", b"2").unwrap();
        m.insert(&EntryHeader { tombstone: true, key_len: 1, expires_at: None }, b"b", b"").unwrap();
        m.insert_range(b"c", b"d").unwrap();
        m.insert(&put(b"n"), b"n", b"new").unwrap();
        let p2 = m.pin();
        m.insert(&put(b"a"), b"a", b"3").unwrap();
        for frozen in [false, true] {
            if frozen {
                m.freeze();
            }
            assert_eq!(value_as_of(&m, b"a", p1).as_deref(), Some(&b"1"[..]), "frozen {frozen}");
            assert_eq!(value_as_of(&m, b"b", p1).as_deref(), Some(&b"1"[..]));
            assert_eq!(value_as_of(&m, b"c", p1).as_deref(), Some(&b"1"[..]));
            assert_eq!(m.lookup_as_of(b"n", p1), MemLookup::Absent);
            assert_eq!(value_as_of(&m, b"a", p2).as_deref(), Some(&b"2"[..]));
            assert!(value_as_of(&m, b"b", p2).is_none());
            assert_eq!(m.lookup_as_of(b"c", p2), MemLookup::Deleted);
            assert_eq!(value_as_of(&m, b"n", p2).as_deref(), Some(&b"new"[..]));
            assert_eq!(value_as_of(&m, b"a", NEWEST).as_deref(), Some(&b"3"[..]));
            assert_eq!(m.get(b"a").unwrap().value, b"3");
            // Nothing before the first write.
            assert_eq!(m.lookup_as_of(b"a", 0), MemLookup::Absent);
        }
    }

    #[test]
    fn versions_are_kept_only_for_a_pinned_point_and_count_against_capacity() {
        let mut m = MemTable::new(vec![0u8; 64 * 64]).unwrap();
        assert_eq!(m.key_capacity(), 48);
        m.insert(&put(b"k"), b"k", b"0").unwrap();
        m.insert(&put(b"k"), b"k", b"1").unwrap();
        assert_eq!((m.len(), m.versions(), m.used_slots()), (1, 0, 1));
        m.pin();
        m.insert(&put(b"k"), b"k", b"2").unwrap();
        // The entry displaced was below the point: kept. The next one was not.
        m.insert(&put(b"k"), b"k", b"3").unwrap();
        assert_eq!((m.len(), m.versions(), m.used_slots()), (1, 1, 2));
        let mut n = 0u32;
        while m.fits(1) {
            let k = n.to_be_bytes();
            m.insert(&put(&k), &k, b"").unwrap();
            n += 1;
        }
        assert_eq!(n, 46);
        assert_eq!(m.used_slots(), 48);
        assert!(m.needs_flush());
        // An overwrite that would keep a version finds no slot: refused, nothing changed.
        m.pin();
        assert_eq!(m.insert(&put(b"k"), b"k", b"4"), Err(Full));
        assert_eq!(m.get(b"k").unwrap().value, b"3");
    }

    #[test]
    fn freeze_sorts_newest_entries_first_and_a_flush_writes_only_them() {
        let mut m = MemTable::new(vec![0u8; 8192]).unwrap();
        for k in [&b"pear"[..], b"apple", b"fig"] {
            m.insert(&put(k), k, b"old").unwrap();
        }
        let p = m.pin();
        for k in [&b"fig"[..], b"apple", b"kiwi"] {
            m.insert(&put(k), k, b"new").unwrap();
        }
        m.pin();
        m.insert(&put(b"apple"), b"apple", b"newest").unwrap();
        assert_eq!(m.versions(), 3);
        m.freeze();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = m
            .sorted()
            .map(|p| entry::decode(p).unwrap())
            .map(|e| (e.key.to_vec(), e.value.to_vec()))
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            [("apple", "newest"), ("fig", "new"), ("kiwi", "new"), ("pear", "old")]
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
        assert_eq!(entries, want);
        let (sorted, filter) = m.flush_parts().unwrap();
        assert_eq!(sorted.len(), 4);
        assert!(!filter.is_empty());
        // The filter was built past the versions: they still answer.
        assert_eq!(value_as_of(&m, b"apple", p).as_deref(), Some(&b"old"[..]));
        assert_eq!(value_as_of(&m, b"fig", p).as_deref(), Some(&b"old"[..]));
        assert_eq!(m.lookup_as_of(b"kiwi", p), MemLookup::Absent);
        // A frozen copy of an active table answers the same.
        let mut a = MemTable::new(vec![0u8; 8192]).unwrap();
        a.insert(&put(b"x"), b"x", b"1").unwrap();
        let q = a.pin();
        a.insert(&put(b"x"), b"x", b"2").unwrap();
        let copy = a.copy_frozen(vec![0u8; 8192]).unwrap();
        assert!(copy.is_frozen() && !a.is_frozen());
        assert_eq!(value_as_of(&copy, b"x", q).as_deref(), Some(&b"1"[..]));
        assert_eq!(copy.get(b"x").unwrap().value, b"2");
    }

    #[test]
    fn any_point_and_any_offset_answer_without_a_panic_after_a_reset_too() {
        let mut m = MemTable::new(vec![0u8; 4096]).unwrap();
        m.insert(&put(b"a"), b"a", b"1").unwrap();
        let p = m.pin();
        m.insert(&put(b"a"), b"a", b"2").unwrap();
        m.reset();
        // A point of the dropped generation: the table holds nothing below it.
        assert_eq!(m.lookup_as_of(b"a", p), MemLookup::Absent);
        assert_eq!(m.versions(), 0);
        m.insert(&put(b"b"), b"b", b"1").unwrap();
        m.pin();
        m.insert(&put(b"b"), b"b", b"2").unwrap();
        for frozen in [false, true] {
            if frozen {
                m.freeze();
            }
            for point in [0, 1, p, 4095, 1 << 20, NEWEST - 1, NEWEST] {
                let _ = m.lookup_as_of(b"b", point);
                let _ = m.lookup_as_of(b"zz", point);
                for offset in [0, 3, 17, 4000, NEWEST] {
                    let _ = m.visible_at(offset, point);
                }
            }
        }
    }

    #[test]
    fn many_keys_with_colliding_probes_are_all_found() {
        let mut m = MemTable::new(vec![0u8; 1 << 16]).unwrap();
        let cap = m.key_capacity() as u32;
        for i in 0..cap {
            let k = i.to_le_bytes();
            m.insert(&put(&k), &k, &k).unwrap();
        }
        for i in 0..cap {
            assert_eq!(m.get(&i.to_le_bytes()).unwrap().value, i.to_le_bytes());
        }
    }
}
