//! The merge: a k-way merge of adjacent SSTables into one, streaming records from the inputs to
//! the output without loading them.
//!
//! Each input has a cursor whose current key is held in a slot of scratch memory (as many bytes
//! as the inputs' longest key, recorded in their footers, per input, plus one slot for the last
//! key written; borrowed from the idle MemTable), and records are copied piece by piece with
//! their checksums verified on the way ([`crate::record::EntryReader`]); a record the merge
//! drops (shadowed, covered by a range delete, dead) is read through its checksum too, so damage
//! anywhere in the inputs' records is reported, not dropped with them. The rest of the scratch
//! holds the output's Bloom filter ([`crate::filter`]), sized for the inputs' entry count at
//! 10 bits per key, and built a window at a time, with a pass over the output per window after
//! the first, when it does not fit ([`Merge`]). On equal keys the newest input wins and the others are skipped.
//! With `drop_dead_at`, tombstones and entries expired then are left out (the caller says so
//! only when the run includes the oldest table, so nothing older can hide behind them).

use crate::entry::is_dead;
use crate::error::{corrupted, Corruption, Error, ReadResultExt, ResultExt};
use crate::filter::BLOCK_LEN;
use crate::filter::{self, FilterBuilder};
use crate::io::{read_exact_at, read_u32_at, write_at};
use crate::limits::{MAX_FILTER_WINDOWS, MAX_KEY_LEN, MAX_MERGE};
use crate::names::{file_name, FileKind, FileName};
use crate::record::{EntryReader, RecordHeader, HEADER_LEN};
use crate::sstable::{
    range_vs_key, ranges_cover, read_range, Finish, Footer, ReadBack, SsTableBuilder, Table,
};
use crate::storage::Storage;

/// Where a merge is in one input: 24 bytes on a 32-bit target (the merge holds
/// [`MAX_MERGE`] of them, and a database in [`crate::CompactionMode::Stepped`] holds its merge).
#[derive(Default, Clone, Copy)]
struct Cursor {
    /// The expiry of the current entry (`has_expiry`), in the clock's units.
    expires_at: u64,
    /// The index of the next record.
    next: u32,
    /// Where the current record starts (an index entry: a `u32`).
    offset: u32,
    key_len: u32,
    done: bool,
    tombstone: bool,
    has_expiry: bool,
}

impl Cursor {
    fn offset(&self) -> u64 {
        u64::from(self.offset)
    }

    fn key_len(&self) -> usize {
        self.key_len as usize
    }

    fn expires_at(&self) -> Option<u64> {
        self.has_expiry.then_some(self.expires_at)
    }
}

/// Bytes of scratch per key slot for merging tables with these footers: their longest key (range
/// deletes' keys included).
pub fn slot_len<'a>(footers: impl Iterator<Item = &'a Footer>) -> usize {
    footers
        .filter(|f| f.entry_count > 0 || f.range_count > 0)
        .map(|f| if f.max_key_len == 0 { MAX_KEY_LEN } else { (f.max_key_len as usize).min(MAX_KEY_LEN) })
        .max()
        .unwrap_or(1)
}

/// What a merge writes besides its records.
pub struct Output<'a, F> {
    /// The output file, empty when the merge starts.
    pub file: &'a mut F,
    /// A second handle on the same file, to read back what was written.
    pub reader: &'a mut F,
    /// The output's name, for errors in what is read back.
    pub name: &'a FileName,
    /// The output footer's `wal_covered`.
    pub wal_covered: u64,
    /// The output footer's `replaces_from`.
    pub replaces_from: u64,
}

/// Merges `inputs` (oldest first) into `out`, all at once. `scratch` must hold
/// `(inputs.len() + 1) * slot_len` bytes, where [`slot_len`] is the inputs' longest key. With
/// `drop_dead_at = Some(now)`, tombstones and entries expired at `now` are left out.
pub fn merge<S: Storage>(
    storage: &mut S,
    inputs: &mut [Table<S::File>],
    out: Output<'_, S::File>,
    scratch: &mut [u8],
    drop_dead_at: Option<u64>,
) -> Result<Footer, Error<S::Error>> {
    let mut m = Merge::start(storage, inputs, scratch, drop_dead_at)?;
    loop {
        let o = Output { file: &mut *out.file, reader: &mut *out.reader, ..out };
        if let Some(footer) = m.step(storage, inputs, o, scratch, u32::MAX)? {
            return Ok(footer);
        }
    }
}

/// Where a merge is: the records being merged, then the end of the table.
enum Phase {
    /// Entries are being merged; range deletes (if kept) follow them in the same step.
    Entries(SsTableBuilder),
    /// Index and fences: the builder's [`Finish`], and where the read-back of the output is
    /// (the offset of the next record of the length pass; the last fence key's length).
    Finishing { finish: Finish, pos: u64, prev_len: Option<usize> },
    /// Index and fences written, and the filter's windows before `lo`: the pass that builds the
    /// window from `lo` is at entry record `i`, at offset `pos`.
    Filter { finish: Finish, lo: usize, i: u32, pos: u64 },
    /// The footer was written.
    Sealed,
}

/// A merge in progress, run in steps of bounded work ([`Merge::step`]).
///
/// It holds no memory of its own beyond this value (a cursor per input, about 40 bytes each):
/// the key slots and the output's filter live in the caller's scratch memory, and the inputs and
/// the output stay with the caller. Between steps the caller may do anything else with its
/// storage, as long as every step is given the same inputs, output and scratch bytes, unchanged.
///
/// Work per step: up to `budget` keys merged (for each, every input record of that key read
/// through its checksum once: the newest copied, the others, which it shadows, verified and
/// dropped; plus the next record's header and key from each of those inputs; a record is at
/// most one MemTable's largest entry), or up to `budget`
/// index entries or fence keys read back and written, or up to `budget` of the output's records
/// read back (checksums verified) for a window of its filter. Three parts are not split: the
/// union of the inputs' range deletes (written in the step that merges the last entry; at most
/// the inputs' `range_count` in all), the checksums and the write of one filter window (at most
/// the scratch memory), and the footer.
///
/// The filter: [`filter::BITS_PER_KEY`] bits per input entry ([`filter_blocks`]). The scratch
/// after the key slots holds one window of it; the first window is built as the records are
/// merged, each further one by a pass over the output's records after its index and fences are
/// written (at most [`MAX_FILTER_WINDOWS`] windows in all: a filter larger than that gets fewer
/// bits per key). With 4 MiB of scratch, one window covers about 3.3 million keys.
pub struct Merge {
    k: usize,
    sl: usize,
    keep_ranges: bool,
    drop_dead_at: Option<u64>,
    /// Bytes of scratch used by key slots; the filter follows them.
    slots_len: usize,
    /// Blocks of the output's filter (0: none); the scratch after the key slots holds a window
    /// of it at a time ([`FilterBuilder::window`]).
    filter_blocks: usize,
    cursors: [Cursor; MAX_MERGE],
    /// Length of the last key written, held in slot k.
    last: Option<usize>,
    phase: Phase,
}

impl Merge {
    /// Starts merging `inputs` (oldest first): checks that `scratch` holds the key slots
    /// (`(inputs.len() + 1) * slot_len` bytes, at least [`RANGE_SLOTS`] slots when range
    /// deletes are kept), clears the filter in the rest, and reads each input's first key.
    pub fn start<S: Storage>(
        storage: &mut S,
        inputs: &mut [Table<S::File>],
        scratch: &mut [u8],
        drop_dead_at: Option<u64>,
    ) -> Result<Self, Error<S::Error>> {
        let k = inputs.len();
        let sl = slot_len(inputs.iter().map(|t| t.footer()));
        // Range deletes are kept unless nothing older than the inputs exists. Their merge comes
        // after the entries', in the same key slots: it needs four.
        let keep_ranges = drop_dead_at.is_none() && inputs.iter().any(|t| t.footer().range_count > 0);
        let slots = if keep_ranges { (k + 1).max(RANGE_SLOTS) } else { k + 1 };
        let needed = slots * sl;
        if k > MAX_MERGE || scratch.len() < needed {
            return Err(Error::InsufficientMemory { needed, given: scratch.len() });
        }
        // Key slots first; the rest holds the output's filter.
        let (scratch, filter_mem) = scratch.split_at_mut(needed);
        let keys = inputs.iter().fold(0usize, |n, t| n.saturating_add(t.footer().entry_count as usize));
        let filter_blocks = filter_blocks(keys, filter_mem.len());
        // The first window is built as the records are merged: cleared here, whatever the
        // scratch held before (a worker reuses its scratch from one compaction to the next).
        let _ = FilterBuilder::window(filter_mem, filter_blocks, 0);
        let mut cursors = [Cursor::default(); MAX_MERGE];
        for (i, (t, c)) in inputs.iter_mut().zip(cursors.iter_mut()).enumerate() {
            load(storage, t, c, &mut scratch[i * sl..(i + 1) * sl])?;
        }
        Ok(Merge {
            k,
            sl,
            keep_ranges,
            drop_dead_at,
            slots_len: needed,
            filter_blocks,
            cursors,
            last: None,
            phase: Phase::Entries(SsTableBuilder::new()),
        })
    }

    /// Advances the merge by up to `budget` records (see the type's docs; at least one);
    /// returns the output's footer once the table is complete (the caller then syncs it).
    /// `inputs`, `out` and `scratch` must be those of every earlier step.
    pub fn step<S: Storage>(
        &mut self,
        storage: &mut S,
        inputs: &mut [Table<S::File>],
        out: Output<'_, S::File>,
        scratch: &mut [u8],
        budget: u32,
    ) -> Result<Option<Footer>, Error<S::Error>> {
        if inputs.len() != self.k || scratch.len() < self.slots_len {
            return Err(Error::InsufficientMemory { needed: self.slots_len, given: scratch.len() });
        }
        let (slots, filter_mem) = scratch.split_at_mut(self.slots_len);
        let mut left = budget.max(1);
        if let Phase::Entries(builder) = &mut self.phase {
            // The first window of the filter is built as the records are merged.
            let mut filter = FilterBuilder::resume(filter_mem, self.filter_blocks, 0);
            let more = merge_entries(
                storage,
                inputs,
                out.file,
                builder,
                filter.as_mut(),
                slots,
                (self.sl, self.drop_dead_at),
                (&mut self.cursors, &mut self.last),
                &mut left,
            )?;
            if more {
                return Ok(None);
            }
            if self.keep_ranges {
                merge_ranges(storage, inputs, out.file, builder, slots, self.sl)?;
            }
            let builder = core::mem::take(builder);
            self.phase = Phase::Finishing { finish: builder.into_finish(), pos: 0, prev_len: None };
        }
        if let Phase::Filter { .. } = self.phase {
            return self.filter_passes(storage, out, slots, filter_mem, left);
        }
        let sl = self.sl;
        let Phase::Finishing { finish, pos, prev_len } = &mut self.phase else { return Ok(None) };
        // The builder reads the output back for its index and fences: two key slots.
        let (prev, rest) = slots.split_at_mut(sl);
        let mut readback = OutputReadBack {
            reader: out.reader,
            name: out.name,
            data_len: finish.data_len(),
            pos: *pos,
            prev,
            prev_len: *prev_len,
            cur: rest.get_mut(..sl).unwrap_or(&mut []),
        };
        let done = finish.step(storage, out.file, &mut readback, left, out.name)?;
        (*pos, *prev_len) = (readback.pos, readback.prev_len);
        if !done {
            return Ok(None);
        }
        let Phase::Finishing { finish, .. } = core::mem::replace(&mut self.phase, Phase::Sealed) else {
            return Ok(None);
        };
        if finish.count() == 0 || self.filter_blocks == 0 {
            return finish.seal(storage, out.file, &[], out.wal_covered, out.replaces_from).map(Some);
        }
        // The first window, built during the merge, goes out; the others are built by passes
        // over the output's records.
        let first =
            FilterBuilder::resume(filter_mem, self.filter_blocks, 0).map_or(&[][..], FilterBuilder::finish);
        write_at(&mut storage.io(out.file), finish.filter_offset(), &[first]).storage()?;
        self.phase = Phase::Filter { finish, lo: first.len() / BLOCK_LEN, i: 0, pos: 0 };
        Ok(None)
    }

    /// Builds and writes the windows of the output's filter after the first, one pass over the
    /// output's entry records per window (each record's checksum verified), up to `left`
    /// records in this step; then seals the table.
    fn filter_passes<S: Storage>(
        &mut self,
        storage: &mut S,
        out: Output<'_, S::File>,
        slots: &mut [u8],
        filter_mem: &mut [u8],
        mut left: u32,
    ) -> Result<Option<Footer>, Error<S::Error>> {
        let total = self.filter_blocks;
        let given = slots.len() + filter_mem.len();
        let key_slot = slots.get_mut(..self.sl).unwrap_or(&mut []);
        loop {
            let Phase::Filter { finish, lo, i, pos } = &mut self.phase else { return Ok(None) };
            if *lo >= total {
                break;
            }
            let window = if *i == 0 {
                FilterBuilder::window(filter_mem, total, *lo)
            } else {
                FilterBuilder::resume(filter_mem, total, *lo)
            };
            // The scratch held a window when the merge started: it is the same scratch.
            let mut window = window.ok_or(Error::InsufficientMemory { needed: given + BLOCK_LEN, given })?;
            let data_len = finish.data_len();
            while *i < finish.count() {
                if left == 0 {
                    return Ok(None);
                }
                left -= 1;
                let (key_len, record_len) =
                    read_key(storage, out.reader, out.name, *pos, data_len, key_slot)?;
                if let Some(key) = key_slot.get(..key_len) {
                    window.add(filter::key_hash(key));
                }
                *pos += record_len as u64;
                *i += 1;
            }
            let bytes = window.finish();
            let at = finish.filter_offset() + (*lo * BLOCK_LEN) as u64;
            write_at(&mut storage.io(out.file), at, &[bytes]).storage()?;
            *lo += bytes.len() / BLOCK_LEN;
            (*i, *pos) = (0, 0);
        }
        let Phase::Filter { finish, .. } = core::mem::replace(&mut self.phase, Phase::Sealed) else {
            return Ok(None);
        };
        let filter_len = u32::try_from(total * BLOCK_LEN).unwrap_or(0);
        finish.seal_after_filter(storage, out.file, filter_len, out.wal_covered, out.replaces_from).map(Some)
    }
}

/// Blocks of the filter of a merge's output for `keys` keys, given `mem` bytes of scratch for
/// it: [`filter::blocks_for`]`(keys)` ([`filter::BITS_PER_KEY`] bits per key, at any table
/// size), built [`MAX_FILTER_WINDOWS`] windows of `mem` at most; fewer blocks when even that is
/// not enough. 0 when `mem` holds no block.
pub fn filter_blocks(keys: usize, mem: usize) -> usize {
    let window = mem / BLOCK_LEN;
    let most = window.saturating_mul(MAX_FILTER_WINDOWS).min(u32::MAX as usize / BLOCK_LEN);
    filter::blocks_for(keys).min(most)
}

/// Reads the key of the entry record at `pos` of the output into `key_slot`, verifying the
/// record's checksum; returns the key's length and the record's length.
fn read_key<S: Storage>(
    storage: &mut S,
    reader: &mut S::File,
    name: &FileName,
    pos: u64,
    data_len: u64,
    key_slot: &mut [u8],
) -> Result<(usize, usize), Error<S::Error>> {
    let io = &mut storage.io(reader);
    let bad = |kind| corrupted(name.clone(), pos, kind);
    let mut reader = EntryReader::start(io, pos, data_len).in_named(name)?;
    let record_len = reader.record_len();
    while let Some(piece) = reader.next(io).in_named(name)? {
        if let Some((at, part)) = piece.key() {
            key_slot
                .get_mut(at..at + part.len())
                .ok_or_else(|| bad(Corruption::BadEntry))?
                .copy_from_slice(part);
        }
    }
    let key_len = reader.finish(io).in_named(name)?.header.key_len;
    Ok((key_len, record_len))
}

/// Merges entries until `left` runs out (`true`: more remain) or every cursor is done.
#[allow(clippy::too_many_arguments)]
fn merge_entries<S: Storage>(
    storage: &mut S,
    inputs: &mut [Table<S::File>],
    out: &mut S::File,
    builder: &mut SsTableBuilder,
    mut filter: Option<&mut FilterBuilder<'_>>,
    scratch: &mut [u8],
    (sl, drop_dead_at): (usize, Option<u64>),
    (cursors, last): (&mut [Cursor; MAX_MERGE], &mut Option<usize>),
    left: &mut u32,
) -> Result<bool, Error<S::Error>> {
    let k = inputs.len();
    loop {
        // The smallest current key; on equal keys the newest input wins.
        let mut winner: Option<usize> = None;
        for i in 0..k {
            if cursors[i].done {
                continue;
            }
            let key_i = &scratch[i * sl..i * sl + cursors[i].key_len()];
            winner = match winner {
                Some(w) if key_i > &scratch[w * sl..w * sl + cursors[w].key_len()] => Some(w),
                _ => Some(i),
            };
        }
        let Some(w) = winner else { return Ok(false) };
        if *left == 0 {
            return Ok(true);
        }
        *left -= 1;
        let c = cursors[w];
        let (head, tail) = scratch.split_at_mut(k * sl);
        let key = &head[w * sl..w * sl + c.key_len()];
        if let Some(l) = *last {
            if key <= &tail[..l] {
                return Err(corrupted(
                    file_name(FileKind::Table, inputs[w].id()),
                    c.offset(),
                    Corruption::BadLayout,
                ));
            }
        }
        tail[..c.key_len()].copy_from_slice(key);
        *last = Some(c.key_len());

        let dead = drop_dead_at.is_some_and(|now| is_dead(c.tombstone, c.expires_at(), now));
        let copied = !dead && !covered_by_newer(storage, inputs, w, &tail[..c.key_len()])?;
        if copied {
            copy_record(storage, &mut inputs[w], &c, out, builder, &tail[..c.key_len()])?;
            if let Some(f) = filter.as_mut() {
                f.add(filter::key_hash(&tail[..c.key_len()]));
            }
        }
        // Move every cursor sitting on this key past it (the winner and the entries it shadows),
        // verifying each record that was not copied (copying verified the one that was).
        for i in 0..k {
            let (head, tail) = scratch.split_at_mut(k * sl);
            let key = &tail[..c.key_len()];
            if cursors[i].done || head[i * sl..i * sl + cursors[i].key_len()] != *key {
                continue;
            }
            if i != w || !copied {
                verify_record(storage, &mut inputs[i], &cursors[i], key)?;
            }
            load(storage, &mut inputs[i], &mut cursors[i], &mut head[i * sl..(i + 1) * sl])?;
        }
    }
}

/// True when a range delete of an input newer than input `w` covers `key`: the entry of `key`
/// from input `w` is older than that range delete, so it is left out.
fn covered_by_newer<S: Storage>(
    storage: &mut S,
    inputs: &mut [Table<S::File>],
    w: usize,
    key: &[u8],
) -> Result<bool, Error<S::Error>> {
    for t in inputs.iter_mut().skip(w + 1) {
        let footer = *t.footer();
        if footer.range_count > 0 {
            let id = t.id();
            if ranges_cover(&mut storage.io(t.file()), &footer, key).in_file(FileKind::Table, id)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Key slots the merge of range deletes needs: the next range (start, end) and the union being
/// built (start, end).
pub const RANGE_SLOTS: usize = 4;

/// Where one input's next range delete is.
#[derive(Default, Clone, Copy)]
struct RangeCursor {
    left: u16,
    offset: u64,
}

/// Writes the union of the inputs' range deletes to the output, in start order, overlapping ones
/// merged. Each input's range deletes are sorted by start and disjoint; the merge keeps only
/// where each input is, and reads the candidates' starts again to compare them, so it needs
/// [`RANGE_SLOTS`] key slots however many inputs there are.
fn merge_ranges<S: Storage>(
    storage: &mut S,
    inputs: &mut [Table<S::File>],
    out: &mut S::File,
    builder: &mut SsTableBuilder,
    slots: &mut [u8],
    sl: usize,
) -> Result<(), Error<S::Error>> {
    let mut cursors = [RangeCursor::default(); MAX_MERGE];
    for (t, c) in inputs.iter().zip(cursors.iter_mut()) {
        *c = RangeCursor { left: t.footer().range_count, offset: t.footer().ranges_offset };
    }
    let (next, union) = slots.split_at_mut(2 * sl);
    let (ns, ne) = next.split_at_mut(sl);
    let (us, ue) = union.split_at_mut(sl);
    let (us, ue) = (&mut us[..sl], &mut ue[..sl]);
    let mut held: Option<(usize, usize)> = None; // lengths of the union's start and end
    loop {
        // The input whose next range starts first: its range goes to `ns`/`ne`.
        let mut pick: Option<(usize, usize, usize)> = None; // input, start length, end length
        for (i, t) in inputs.iter_mut().enumerate() {
            let c = cursors[i];
            if c.left == 0 {
                continue;
            }
            let (id, limit) = (t.id(), t.footer().index_offset);
            let io = &mut storage.io(t.file());
            let earlier = match pick {
                None => true,
                Some((_, n, _)) => {
                    range_vs_key(io, c.offset, limit, &ns[..n]).in_file(FileKind::Table, id)?.0
                        == core::cmp::Ordering::Less
                }
            };
            if earlier {
                let (s, e, _) = read_range(io, c.offset, limit, ns, ne).in_file(FileKind::Table, id)?;
                pick = Some((i, s, e));
            }
        }
        let Some((p, sn, en)) = pick else { break };
        let (start, end) = (&ns[..sn], &ne[..en]);
        match held {
            Some((hs, he)) if start <= &ue[..he] => {
                if end > &ue[..he] {
                    ue[..en].copy_from_slice(end);
                    held = Some((hs, en));
                }
            }
            _ => {
                if let Some((hs, he)) = held {
                    builder
                        .add_range(storage, out, &us[..hs], &ue[..he])
                        .storage()?
                        .ok_or(Error::TooManyTables)?;
                }
                us[..sn].copy_from_slice(start);
                ue[..en].copy_from_slice(end);
                held = Some((sn, en));
            }
        }
        // Past the range just taken.
        let t = &mut inputs[p];
        let (id, limit) = (t.id(), t.footer().index_offset);
        let (_, _, len) = range_vs_key(&mut storage.io(t.file()), cursors[p].offset, limit, &[])
            .in_file(FileKind::Table, id)?;
        cursors[p] = RangeCursor { left: cursors[p].left - 1, offset: cursors[p].offset + len };
    }
    if let Some((hs, he)) = held {
        builder.add_range(storage, out, &us[..hs], &ue[..he]).storage()?.ok_or(Error::TooManyTables)?;
    }
    Ok(())
}

/// Positions `c` on the next record of `table`, with its key in `key_slot`. Reads the entry's
/// header and key only; the whole record's checksum is checked when the merge is done with it:
/// when it is copied ([`copy_record`]), or when it is dropped ([`verify_record`]).
fn load<S: Storage>(
    storage: &mut S,
    table: &mut Table<S::File>,
    c: &mut Cursor,
    key_slot: &mut [u8],
) -> Result<(), Error<S::Error>> {
    let footer = *table.footer();
    if c.next >= footer.entry_count {
        c.done = true;
        return Ok(());
    }
    let id = table.id();
    let io = &mut storage.io(table.file());
    let at = read_u32_at(io, footer.index_offset + c.next as u64 * 4).in_file(FileKind::Table, id)?;
    let offset = u64::from(at);
    // Unverified: every record is read again before the merge moves past it, by `copy_record`
    // if it is copied and by `verify_record` if it is dropped (shadowed, covered by a newer
    // range delete, or dead at the bottom); both check its checksum and that its key is the one
    // read here. Checksumming here too would double the CRC work of the records copied, most of
    // the merge's (docs/bench/refactor/callgrind.md).
    let mut reader =
        EntryReader::start_unverified(io, offset, footer.index_offset).in_file(FileKind::Table, id)?;
    let mut header = None;
    let bad = || corrupted(file_name(FileKind::Table, id), offset, Corruption::BadEntry);
    while let Some(piece) = reader.next(io).in_file(FileKind::Table, id)? {
        header = Some(piece.layout.header);
        if let Some((at, part)) = piece.key() {
            key_slot.get_mut(at..at + part.len()).ok_or_else(bad)?.copy_from_slice(part);
        }
        if piece.at + piece.bytes.len() >= piece.layout.key_end {
            break;
        }
    }
    let h = header.ok_or_else(bad)?;
    *c = Cursor {
        expires_at: h.expires_at.unwrap_or(0),
        next: c.next + 1,
        offset: at,
        key_len: u32::try_from(h.key_len).map_err(|_| bad())?,
        done: false,
        tombstone: h.tombstone,
        has_expiry: h.expires_at.is_some(),
    };
    Ok(())
}

/// Copies the record under cursor `c` to the output, verifying its checksum on the way, and that
/// its key is `key`: the key the merge ordered this record by (and put in the filter) must be the
/// key in the checksummed bytes copied, so a misread in [`load`] is corruption, not a misplaced
/// record.
fn copy_record<S: Storage>(
    storage: &mut S,
    table: &mut Table<S::File>,
    c: &Cursor,
    out: &mut S::File,
    builder: &mut SsTableBuilder,
    key: &[u8],
) -> Result<(), Error<S::Error>> {
    let id = table.id();
    let data_end = table.footer().index_offset;
    let mut reader = EntryReader::start(&mut storage.io(table.file()), c.offset(), data_end)
        .in_file(FileKind::Table, id)?;
    builder.add_raw(storage, out, &reader.header_bytes()).storage()?;
    let mut same_key = true;
    let mut expiry = None;
    loop {
        // The storage view lives for this statement only: the copy below needs the storage too.
        let next = reader.next(&mut storage.io(table.file())).in_file(FileKind::Table, id)?;
        let Some(piece) = next else { break };
        same_key &= piece.layout.header.key_len == key.len();
        expiry = piece.layout.header.expiry();
        if let Some((at, part)) = piece.key() {
            same_key &= key.get(at..at + part.len()) == Some(part);
        }
        builder.add_raw(storage, out, piece.bytes).storage()?;
    }
    reader.finish(&mut storage.io(table.file())).in_file(FileKind::Table, id)?;
    if !same_key {
        return Err(corrupted(file_name(FileKind::Table, id), c.offset(), Corruption::BadEntry));
    }
    builder.end_record(key.len(), expiry);
    Ok(())
}

/// Verifies the record under cursor `c`, which the merge drops (it is shadowed by a newer entry
/// of its key, covered by a newer range delete, or dead at the bottom): its checksum, and that
/// its key is `key`, the key the merge decided on. The decision was made on the unverified
/// header and key [`load`] read, so a damaged record is reported here rather than dropped
/// silently with its damage.
fn verify_record<S: Storage>(
    storage: &mut S,
    table: &mut Table<S::File>,
    c: &Cursor,
    key: &[u8],
) -> Result<(), Error<S::Error>> {
    let id = table.id();
    let data_end = table.footer().index_offset;
    let io = &mut storage.io(table.file());
    let mut reader = EntryReader::start(io, c.offset(), data_end).in_file(FileKind::Table, id)?;
    let mut same_key = true;
    while let Some(piece) = reader.next(io).in_file(FileKind::Table, id)? {
        same_key &= piece.layout.header.key_len == key.len();
        if let Some((at, part)) = piece.key() {
            same_key &= key.get(at..at + part.len()) == Some(part);
        }
        if piece.at + piece.bytes.len() >= piece.layout.key_end {
            break;
        }
    }
    reader.finish(io).in_file(FileKind::Table, id)?;
    if !same_key {
        return Err(corrupted(file_name(FileKind::Table, id), c.offset(), Corruption::BadEntry));
    }
    Ok(())
}

/// The merge's output read back for the builder's index and fences, through a second handle,
/// every fence key with its record's checksum verified and checked to ascend.
struct OutputReadBack<'a, F> {
    reader: &'a mut F,
    name: &'a FileName,
    data_len: u64,
    /// Where record `next` of the length pass starts.
    pos: u64,
    prev: &'a mut [u8],
    prev_len: Option<usize>,
    cur: &'a mut [u8],
}

impl<S: Storage> ReadBack<S> for OutputReadBack<'_, S::File> {
    fn payload_len(&mut self, storage: &mut S, i: u32) -> Result<usize, Error<S::Error>> {
        if i == 0 {
            self.pos = 0;
        }
        let mut hb = [0u8; HEADER_LEN];
        read_exact_at(&mut storage.io(self.reader), self.pos, &mut hb).in_named(self.name)?;
        let len = RecordHeader::decode(hb)
            .payload_len()
            .map_err(|kind| corrupted(self.name.clone(), self.pos, kind))?;
        self.pos += (HEADER_LEN + len) as u64;
        Ok(len)
    }

    fn key(&mut self, storage: &mut S, i: u32) -> Result<&[u8], Error<S::Error>> {
        if i == 0 {
            self.prev_len = None;
        }
        let name = self.name;
        let io = &mut storage.io(self.reader);
        let offset = read_u32_at(io, self.data_len + i as u64 * 4).in_named(name)? as u64;
        let bad = |kind| corrupted(name.clone(), offset, kind);
        let mut reader = EntryReader::start(io, offset, self.data_len).in_named(name)?;
        while let Some(piece) = reader.next(io).in_named(name)? {
            if let Some((at, part)) = piece.key() {
                self.cur
                    .get_mut(at..at + part.len())
                    .ok_or_else(|| bad(Corruption::BadEntry))?
                    .copy_from_slice(part);
            }
        }
        let n = reader.finish(io).in_named(name)?.header.key_len;
        let key = self.cur.get(..n).ok_or_else(|| bad(Corruption::BadEntry))?;
        if self.prev_len.is_some_and(|p| self.prev.get(..p).unwrap_or(&[]) >= key) {
            return Err(bad(Corruption::BadLayout));
        }
        if let Some(dst) = self.prev.get_mut(..n) {
            dst.copy_from_slice(key);
        }
        self.prev_len = Some(n);
        Ok(key)
    }
}
