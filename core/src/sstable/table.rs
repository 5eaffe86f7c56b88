//! Reading a table: [`Table`], an open SSTable file with its checked footer, and the point
//! lookup every read of the engine goes through ([`probe_with`], [`probe`] over the
//! [`StoredIndex`]): the filter, then a binary search over the fences, then over the run of
//! records they point to, streamed from storage record by record or, when the
//! [`TableIndex`] knows the run's bytes and the caller's run buffer holds them, read in one go
//! and searched in memory. [`ProbeTable`]: a table as a get over several tables probes it.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use core::cmp::Ordering;

use embedded_io::{Read, Seek};

use super::bounds::{read_bounds, KeyBounds};
use super::footer::{self, Footer};
use super::index::{Run, StoredIndex, TableIndex};
use super::FENCE_STRIDE;
use crate::error::{Corruption, Error, ReadResultExt, ResultExt};
use crate::filter::{self, BLOCK_LEN};
use crate::io::{read_exact_at, read_u32_at, ReadError};
use crate::names::{file_name, FileKind};
use crate::record::{EntryReader, RecordHeader, RecordReader, HEADER_LEN, PIECE_LEN};
use crate::storage::Storage;

/// The result of a point lookup in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Lookup {
    /// The table has no entry for the key.
    Absent,
    /// The table's entry for the key. The value was copied to the caller's buffer when
    /// `value_len` fits in it.
    Found {
        /// Value length.
        value_len: usize,
        /// The entry is a delete.
        tombstone: bool,
        /// The entry's expiry.
        expires_at: Option<u64>,
    },
}

/// A lookup's answer and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Probe {
    /// The answer.
    pub lookup: Lookup,
    /// False when the table's filter ruled the key out without a search.
    pub searched: bool,
}

/// A point lookup as the engine makes it in one table: asks the filter about the key whose
/// [`filter::key_hash`] is `hash`, and searches the table unless the filter rules the key out.
/// A found value is copied into `out` when it fits.
pub fn probe<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
    hash: u64,
    out: &mut [u8],
) -> Result<Probe, ReadError<IO::Error>> {
    probe_with(io, footer, &StoredIndex, key, hash, out, &mut [])
}

/// [`probe`] with the filter and fences found through `index`. When the index knows the bytes
/// of the run of records that can hold the key and `run_buf` holds them, they are read in one
/// go and searched in memory; otherwise streamed record by record. Either way each record the
/// search compares is checked against its checksum.
pub fn probe_with<IO: Read + Seek, X: TableIndex>(
    io: &mut IO,
    footer: &Footer,
    index: &X,
    key: &[u8],
    hash: u64,
    out: &mut [u8],
    run_buf: &mut [u8],
) -> Result<Probe, ReadError<IO::Error>> {
    let searched = index.may_contain(io, footer, hash)?;
    let lookup = match searched {
        true => match index.run_of(io, footer, key)? {
            Some(run) => search_run(io, footer, run, key, out, run_buf)?,
            None => Lookup::Absent,
        },
        false => Lookup::Absent,
    };
    // The table's own entries are newer than its range deletes (a flush or a compaction leaves
    // out what a newer range delete covers), which hide only older tables' entries.
    if lookup == Lookup::Absent && footer.range_count > 0 && ranges_cover(io, footer, key)? {
        return Ok(Probe { lookup: DELETED, searched });
    }
    Ok(Probe { lookup, searched })
}

/// What a lookup answers for a key a range delete covers: deleted, like a tombstone.
const DELETED: Lookup = Lookup::Found { value_len: 0, tombstone: true, expires_at: None };

/// True when one of the table's range deletes covers `key`. Each range delete read is checked
/// against its checksum.
pub fn ranges_cover<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
) -> Result<bool, ReadError<IO::Error>> {
    let mut at = footer.ranges_offset;
    for _ in 0..footer.range_count {
        let (covers, len) = range_covers(io, at, footer.index_offset, key)?;
        if covers {
            return Ok(true);
        }
        at += len;
    }
    Ok(false)
}

/// Which key of a range delete a piece of its record belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeKey {
    Start,
    End,
}

/// Streams the range delete at `offset` (ending by `limit`) through its checksum, handing each
/// piece of its start and end keys to `visit` with the position of the piece in that key; returns
/// the keys' lengths and the record's length. Nothing of the range is held in memory.
fn visit_range<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    limit: u64,
    mut visit: impl FnMut(RangeKey, usize, &[u8]) -> Result<(), ReadError<IO::Error>>,
) -> Result<(usize, usize, u64), ReadError<IO::Error>> {
    let bad = || ReadError::Corrupt { offset, kind: Corruption::BadEntry };
    let mut reader = RecordReader::start(io, offset, limit)?;
    let len = reader.payload_len();
    let record_len = (crate::record::HEADER_LEN + len) as u64;
    let mut start_len = None;
    while let Some((at, piece)) = reader.next(io)? {
        let s = match start_len {
            Some(s) => s,
            None => match piece {
                [crate::entry::KIND_DELETE_RANGE, a, b, ..] => {
                    *start_len.insert(usize::from(u16::from_le_bytes([*a, *b])))
                }
                _ => return Err(bad()),
            },
        };
        // The start is at payload positions 3..3 + s, the end after it.
        for (from, to, which) in [(3, 3 + s, RangeKey::Start), (3 + s, len, RangeKey::End)] {
            let (a, b) = (from.max(at), to.min(at + piece.len()));
            if a < b {
                visit(which, a - from, piece.get(a - at..b - at).ok_or_else(bad)?)?;
            }
        }
    }
    reader.finish(io)?;
    let s = start_len.ok_or_else(bad)?;
    let e = len.checked_sub(3 + s).filter(|&e| e > 0 && s > 0).ok_or_else(bad)?;
    Ok((s, e, record_len))
}

/// Reads the range delete at `offset` (ending by `limit`) through its checksum into `start` and
/// `end`; returns their lengths and the record's length. A key longer than its buffer is damage.
pub fn read_range<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    limit: u64,
    start: &mut [u8],
    end: &mut [u8],
) -> Result<(usize, usize, u64), ReadError<IO::Error>> {
    let bad = || ReadError::Corrupt { offset, kind: Corruption::BadEntry };
    visit_range(io, offset, limit, |which, at, piece| {
        let dst = if which == RangeKey::Start { &mut *start } else { &mut *end };
        dst.get_mut(at..at + piece.len()).ok_or_else(bad)?.copy_from_slice(piece);
        Ok(())
    })
}

/// Reads the range delete at `offset` (ending by `limit`) through its checksum; returns whether
/// it covers `key`, and the record's length.
fn range_covers<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    limit: u64,
    key: &[u8],
) -> Result<(bool, u64), ReadError<IO::Error>> {
    let (vs_start, vs_end, len) = range_vs_key(io, offset, limit, key)?;
    // start <= key < end.
    Ok((vs_start != Ordering::Greater && vs_end == Ordering::Greater, len))
}

/// Reads the range delete at `offset` (ending by `limit`) through its checksum, comparing its
/// start and its end with `key` as it goes; returns how the start and the end compare with
/// `key`, and the record's length. Nothing of the range is held in memory.
pub fn range_vs_key<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    limit: u64,
    key: &[u8],
) -> Result<(Ordering, Ordering, u64), ReadError<IO::Error>> {
    let (mut vs_start, mut vs_end) = (Ordering::Equal, Ordering::Equal);
    let (s, end_len, record_len) = visit_range(io, offset, limit, |which, at, piece| {
        let ord = if which == RangeKey::Start { &mut vs_start } else { &mut vs_end };
        if *ord == Ordering::Equal {
            *ord = compare_piece(piece, key, at);
        }
        Ok(())
    })?;
    let whole = |ord: Ordering, stored: usize| {
        if ord == Ordering::Equal && stored < key.len() {
            Ordering::Less
        } else {
            ord
        }
    };
    Ok((whole(vs_start, s), whole(vs_end, end_len), record_len))
}

/// [`probe`], hashing the key itself and keeping only the answer.
pub fn lookup<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
    out: &mut [u8],
) -> Result<Lookup, ReadError<IO::Error>> {
    Ok(probe(io, footer, key, filter::key_hash(key), out)?.lookup)
}

/// Asks the table's filter about the key whose [`filter::key_hash`] is `hash`: `false` when the
/// table certainly lacks it, `true` when it may hold it (or has no filter).
pub fn may_contain<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    hash: u64,
) -> Result<bool, ReadError<IO::Error>> {
    let blocks = footer.filter_len as usize / BLOCK_LEN;
    if blocks == 0 {
        return Ok(true);
    }
    let at = footer.filter_offset + (filter::block_of(hash, blocks) * BLOCK_LEN) as u64;
    let mut block = [0u8; BLOCK_LEN];
    read_exact_at(io, at, &mut block)?;
    filter::may_contain(&block, hash).map_err(|kind| ReadError::Corrupt { offset: at, kind })
}

/// Looks `key` up by binary search over the fences, then over the index entries of the run of
/// records they point to, copying a found value into `out`. Does not consult the filter.
pub fn get<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
    out: &mut [u8],
) -> Result<Lookup, ReadError<IO::Error>> {
    match StoredIndex.run_of(io, footer, key)? {
        Some(run) => search_run(io, footer, run, key, out, &mut []),
        None => Ok(Lookup::Absent),
    }
}

/// Searches `run` for `key`: read whole into `run_buf` when its bytes are known and fit, else
/// record by record from storage.
fn search_run<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    run: Run,
    key: &[u8],
    out: &mut [u8],
    run_buf: &mut [u8],
) -> Result<Lookup, ReadError<IO::Error>> {
    if let Some((start, end)) = run.bytes {
        let len = end.checked_sub(start).and_then(|n| usize::try_from(n).ok());
        let bad = ReadError::Corrupt { offset: start, kind: Corruption::BadLayout };
        let len = len.filter(|_| end <= footer.index_offset).ok_or(bad)?;
        if let Some(buf) = run_buf.get_mut(..len) {
            read_exact_at(io, start, buf)?;
            return search_loaded_run(buf, start, run.end.saturating_sub(run.first), key, out);
        }
    }
    let (mut lo, mut hi) = (run.first, run.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let offset = read_u32_at(io, footer.index_offset + mid as u64 * 4)? as u64;
        let (ord, found) = compare_record(io, offset, footer.index_offset, key, out)?;
        match ord {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(found),
        }
    }
    Ok(Lookup::Absent)
}

/// Searches the `count` records of a run read whole into `run` (from data offset `at`) for
/// `key`, by binary search; each record compared is checked against its checksum, and the
/// records' lengths must fill `run` exactly.
fn search_loaded_run<E>(
    run: &[u8],
    at: u64,
    count: u32,
    key: &[u8],
    out: &mut [u8],
) -> Result<Lookup, ReadError<E>> {
    let corrupt = |pos: usize, kind| ReadError::Corrupt { offset: at + pos as u64, kind };
    let mut starts = [0usize; FENCE_STRIDE as usize];
    let mut pos = 0;
    for i in 0..count as usize {
        *starts.get_mut(i).ok_or_else(|| corrupt(pos, Corruption::BadLayout))? = pos;
        let header = run.get(pos..pos + HEADER_LEN).and_then(|h| h.try_into().ok());
        let header = RecordHeader::decode(header.ok_or_else(|| corrupt(pos, Corruption::BadLayout))?);
        pos += HEADER_LEN + header.payload_len().map_err(|kind| corrupt(pos, kind))?;
    }
    if pos != run.len() {
        return Err(corrupt(pos.min(run.len()), Corruption::BadLayout));
    }
    let (mut lo, mut hi) = (0, count as usize);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = starts.get(mid).copied().unwrap_or_default();
        let (payload, _) = crate::record::decode(run.get(start..).unwrap_or(&[])).map_err(|e| match e {
            crate::record::FrameError::Corrupt(kind) => corrupt(start, kind),
            crate::record::FrameError::Incomplete => corrupt(start, Corruption::BadLayout),
        })?;
        let entry = crate::entry::decode(payload).map_err(|kind| corrupt(start, kind))?;
        match entry.key.cmp(key) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => {
                if let Some(dst) = out.get_mut(..entry.value.len()) {
                    dst.copy_from_slice(entry.value);
                }
                return Ok(Lookup::Found {
                    value_len: entry.value.len(),
                    tombstone: entry.tombstone,
                    expires_at: entry.expires_at,
                });
            }
        }
    }
    Ok(Lookup::Absent)
}

/// The run of entries `[lo, hi)` that holds `key` if the table does, from the fences; `None`
/// when `key` sorts before the table's first key. Version-1 tables: every entry.
pub(super) fn fence_range<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
) -> Result<Option<(u32, u32)>, ReadError<IO::Error>> {
    let n = footer.fence_count();
    if n == 0 {
        return Ok(Some((0, footer.entry_count)));
    }
    let base = footer.fence_offset();
    let keys_at = base + n as u64 * 4;
    // Count the fences whose key is <= `key`.
    let (mut lo, mut hi) = (0u32, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = keys_at + read_u32_at(io, base + mid as u64 * 4)? as u64;
        match compare_fence(io, at, footer.filter_offset, key)? {
            Ordering::Greater => hi = mid,
            _ => lo = mid + 1,
        }
    }
    let Some(j) = lo.checked_sub(1) else { return Ok(None) };
    let start = j * FENCE_STRIDE;
    Ok(Some((start, start.saturating_add(FENCE_STRIDE).min(footer.entry_count))))
}

/// Compares the fence key stored at `at` (before `end`, the end of the fence section) with `key`.
fn compare_fence<IO: Read + Seek>(
    io: &mut IO,
    at: u64,
    end: u64,
    key: &[u8],
) -> Result<Ordering, ReadError<IO::Error>> {
    let bad = ReadError::Corrupt { offset: at, kind: Corruption::BadLayout };
    let room = end.checked_sub(at).filter(|&r| r >= 3).ok_or(bad)?;
    // One read fetches the length and, for typical keys, the whole key.
    let mut buf = [0u8; 2 + PIECE_LEN];
    let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    let first = buf.get_mut(..n).unwrap_or(&mut []);
    read_exact_at(io, at, first)?;
    let len = match first {
        [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
        _ => 0,
    };
    if len == 0 || (2 + len) as u64 > room {
        return Err(ReadError::Corrupt { offset: at, kind: Corruption::BadLayout });
    }
    let mut done = (n - 2).min(len);
    let mut ord = compare_piece(first.get(2..2 + done).unwrap_or(&[]), key, 0);
    while ord == Ordering::Equal && done < len {
        let m = (len - done).min(PIECE_LEN);
        let piece = buf.get_mut(..m).unwrap_or(&mut []);
        read_exact_at(io, at + (2 + done) as u64, piece)?;
        ord = compare_piece(piece, key, done);
        done += m;
    }
    Ok(if ord == Ordering::Equal && len < key.len() { Ordering::Less } else { ord })
}

/// Compares `stored`, the bytes at position `pos` of a stored key, with the same positions of `key`.
fn compare_piece(stored: &[u8], key: &[u8], pos: usize) -> Ordering {
    let wanted = key.get(pos..).unwrap_or(&[]);
    let m = stored.len().min(wanted.len());
    match stored.get(..m).cmp(&wanted.get(..m)) {
        Ordering::Equal if stored.len() > wanted.len() => Ordering::Greater,
        o => o,
    }
}

/// Reads the record at `offset` through its checksum while comparing its key with `key`; when
/// the keys are equal and the value fits, copies the value into `out`. Returns how the stored
/// key compares with `key`, and the lookup's answer should they be equal.
fn compare_record<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    data_end: u64,
    key: &[u8],
    out: &mut [u8],
) -> Result<(Ordering, Lookup), ReadError<IO::Error>> {
    let mut reader = EntryReader::start(io, offset, data_end)?;
    let mut ord = Ordering::Equal;
    while let Some(piece) = reader.next(io)? {
        if let Some((at, stored)) = piece.key() {
            if ord == Ordering::Equal {
                ord = compare_piece(stored, key, at);
            }
        }
        let same_len = piece.layout.header.key_len == key.len();
        if ord == Ordering::Equal && same_len && piece.layout.value_len() <= out.len() {
            if let Some((at, value)) = piece.value() {
                if let Some(dst) = out.get_mut(at..at + value.len()) {
                    dst.copy_from_slice(value);
                }
            }
        }
    }
    let layout = reader.finish(io)?;
    if ord == Ordering::Equal && layout.header.key_len < key.len() {
        ord = Ordering::Less; // the stored key is a proper prefix of the one sought
    }
    let found = Lookup::Found {
        value_len: layout.value_len(),
        tombstone: layout.header.tombstone,
        expires_at: layout.header.expires_at,
    };
    Ok((ord, found))
}

/// One SSTable as reported by [`crate::Db::tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TableInfo {
    /// File id (the table is `<id>.sst`).
    pub id: u64,
    /// Entries, tombstones included.
    pub entries: u32,
    /// File size in bytes.
    pub bytes: u64,
}

/// Lookups made in tables, and what they cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadCounters {
    /// Table searches (lookups the filter did not rule out).
    pub table_probes: u64,
    /// Lookups a filter (or the table's key bounds) answered "absent" without a search.
    pub filter_skips: u64,
}

/// An open SSTable: its file, its checked footer and its size. Owned by the table set
/// ([`crate::version::Version`]).
pub struct Table<F> {
    id: u64,
    file: F,
    footer: Footer,
    bytes: u64,
    bounds: KeyBounds,
}

impl<F> Table<F> {
    /// Opens table `id` and checks its footer, index and fences; reads its key bounds.
    pub fn open<S: Storage<File = F>>(storage: &mut S, id: u64) -> Result<Self, Error<S::Error>> {
        let mut file = storage.open(&file_name(FileKind::Table, id)).storage()?;
        let bytes = storage.len(&mut file).storage()?;
        let (footer, bounds) = {
            let io = &mut storage.io(&mut file);
            let footer = footer::open(io, bytes).in_file(FileKind::Table, id)?;
            (footer, read_bounds(io, &footer).in_file(FileKind::Table, id)?)
        };
        Ok(Table { id, file, footer, bytes, bounds })
    }

    /// A table just written: `file` holds `bytes` bytes sealed by `footer`. Its bounds are
    /// [`KeyBounds::ALL`] (they rule nothing out) unless given by [`Table::with_bounds`]: the
    /// table set reads them before it publishes a table ([`crate::version::Version::add`]).
    pub fn new(id: u64, file: F, footer: Footer, bytes: u64) -> Self {
        Table { id, file, footer, bytes, bounds: KeyBounds::ALL }
    }

    /// The table with key bounds known already (a host's copy of an engine's table).
    pub fn with_bounds(self, bounds: KeyBounds) -> Self {
        Table { bounds, ..self }
    }

    /// The prefixes of the table's least and greatest keys ([`KeyBounds`]).
    pub fn bounds(&self) -> KeyBounds {
        self.bounds
    }

    /// The table's id (its file is `<id>.sst`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The table's footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The open file.
    pub fn file(&mut self) -> &mut F {
        &mut self.file
    }

    /// The open file, shared: for a host that reads it through a handle of its own.
    pub fn file_ref(&self) -> &F {
        &self.file
    }

    /// The open file, the table let go: to close it ([`Storage::retire`]).
    pub fn into_file(self) -> F {
        self.file
    }

    /// What [`crate::Db::tables`] reports of it.
    pub fn info(&self) -> TableInfo {
        TableInfo { id: self.id, entries: self.footer.entry_count, bytes: self.bytes }
    }

    /// Looks `key` (whose [`filter::key_hash`] is `hash`) up, counting the cost in `counters`.
    pub fn get<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
        counters: &mut ReadCounters,
    ) -> Result<Lookup, Error<S::Error>> {
        let id = self.id;
        let p =
            ProbeTable::<S>::probe(&mut &mut *self, storage, key, hash, out).in_file(FileKind::Table, id)?;
        counters.count(p);
        Ok(p.lookup)
    }
}

impl ReadCounters {
    /// Counts one table's probe: a search, or a filter's "absent".
    pub fn count(&mut self, p: Probe) {
        if p.searched {
            self.table_probes += 1;
        } else {
            self.filter_skips += 1;
        }
    }
}

/// A table as a get over several tables ([`crate::get_from_tables`]) probes it: the engine's
/// own [`Table`]s read their filter and fences from storage; a host may give each table a
/// [`TableIndex`] of its own (a [`super::ResidentIndex`]) and a run buffer, and probe it with
/// [`probe_with`].
pub trait ProbeTable<S: Storage> {
    /// The table's id (its file is `<id>.sst`), naming it in errors.
    fn id(&self) -> u64;

    /// The table's key bounds: a lookup skips the table when they rule its key out.
    fn bounds(&self) -> KeyBounds;

    /// Looks `key` (whose [`filter::key_hash`] is `hash`) up, copying a found value into `out`
    /// when it fits.
    fn probe(
        &mut self,
        storage: &mut S,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
    ) -> Result<Probe, ReadError<S::Error>>;
}

impl<S: Storage> ProbeTable<S> for &mut Table<S::File> {
    fn id(&self) -> u64 {
        self.id
    }

    fn bounds(&self) -> KeyBounds {
        self.bounds
    }

    fn probe(
        &mut self,
        storage: &mut S,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
    ) -> Result<Probe, ReadError<S::Error>> {
        probe(&mut storage.io(&mut self.file), &self.footer, key, hash, out)
    }
}
