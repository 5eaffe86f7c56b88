//! A scan's cursor over one SSTable: its records in key order, forward or backward, each read
//! through its checksum ([`crate::record::EntryReader`]).
//!
//! The cursor keeps the current record's key in a slot of the caller's key buffer (as long as
//! the table's longest key, from its footer), its position and its header. Seeking is a binary
//! search over the fences, then over the run of records they point to; moving forward follows
//! the records, which lie back to back; moving backward reads the index.
//!
//! With a read-ahead window (a share of the scan buffer beyond the key slots), the records the
//! scan walks through are read in large chunks with [`Storage::read_through`], which keeps them
//! out of the storage's read cache; every record is still checked against its checksum.

use embedded_io::{ErrorType, Read, Seek, SeekFrom};

use crate::entry::{EntryHeader, EntryLayout};
use crate::error::{Corruption, Error, ReadResultExt};
use crate::io::{read_exact_at, read_u32_at, ReadError};
use crate::limits::MAX_KEY_LEN;
use crate::names::FileKind;
use crate::record::EntryReader;
use crate::sstable::{Footer, Table, FENCE_STRIDE};
use crate::storage::Storage;

use super::range::KeyRange;

/// The bytes of key slot a table's cursor needs: its longest key.
pub(crate) fn slot_len(footer: &Footer) -> usize {
    if footer.entry_count == 0 {
        0
    } else if footer.max_key_len == 0 {
        MAX_KEY_LEN
    } else {
        usize::from(footer.max_key_len).min(MAX_KEY_LEN)
    }
}

/// The smallest read-ahead window worth having: a few records.
pub(crate) const MIN_WINDOW: usize = 1024;

/// Which part of a table a window holds.
#[derive(Clone, Copy, Default)]
struct WindowState {
    start: u64,
    filled: usize,
}

/// A cursor over one table.
#[derive(Clone, Copy, Default)]
pub(crate) struct TableCursor {
    /// Where its key slot lies in the scan's key buffer.
    pub(crate) slot: (usize, usize),
    /// Where its read-ahead window lies in the scan's window buffer (length 0: none).
    pub(crate) window: (usize, usize),
    held: WindowState,
    /// The current record's index; meaningful while `valid`.
    pos: u32,
    valid: bool,
    offset: u64,
    record_len: u64,
    key_len: usize,
    value_len: usize,
    pub(crate) header: Option<EntryHeader>,
    /// The table may hold keys of the range but is not positioned yet: the scan positions it
    /// once its key bounds say it may hold the next key ([`super::Scan`]'s `settle`).
    pending: bool,
    /// An advance failed: the key slot may hold part of the next record's key, while the rest
    /// still describes the current record, so the advance is to be made again (the scan does
    /// so before it reads any key) and the key is not to be read until then.
    advancing: bool,
}

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

impl TableCursor {
    /// A cursor whose key slot is `len` bytes at `at` of the key buffer, not yet positioned.
    pub(crate) fn with_slot(at: usize, len: usize) -> Self {
        TableCursor { slot: (at, len), ..TableCursor::default() }
    }

    /// A cursor over a table the scan positions later, when it may hold the next key.
    pub(crate) fn pending(self) -> Self {
        TableCursor { pending: true, valid: false, ..self }
    }

    /// True while the cursor is on a record.
    pub(crate) fn is_valid(&self) -> bool {
        self.valid
    }

    /// True until a cursor made by [`TableCursor::pending`] is positioned.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending
    }

    /// Gives the cursor the read-ahead window of `len` bytes at `at` of the window buffer.
    pub(crate) fn with_window(self, at: usize, len: usize) -> Self {
        TableCursor { window: (at, len), ..self }
    }

    /// The current key, in `slot` (the cursor's slot of the key buffer).
    pub(crate) fn key<'s>(&self, slot: &'s [u8]) -> Option<&'s [u8]> {
        if self.valid {
            slot.get(..self.key_len)
        } else {
            None
        }
    }

    /// The current record's value length.
    pub(crate) fn value_len(&self) -> usize {
        self.value_len
    }

    /// Moves to the first record of `range` (`reverse`: the last).
    pub(crate) fn seek<S: Storage>(
        &mut self,
        storage: &mut S,
        table: &mut Table<S::File>,
        slot: &mut [u8],
        window: &mut [u8],
        range: &KeyRange<'_>,
        reverse: bool,
    ) -> Result<(), S> {
        let i = if reverse {
            partition(storage, table, slot, |k| range.after_end(k))?.checked_sub(1)
        } else {
            Some(partition(storage, table, slot, |k| !range.before_start(k))?)
        };
        self.load(storage, table, slot, window, i, reverse)?;
        // Only once positioned: a seek that failed leaves the cursor pending, so that a scan
        // asked again seeks it again rather than passing its table over.
        self.pending = false;
        Ok(())
    }

    /// True when an advance failed and is to be made again ([`TableCursor::advance`]).
    pub(crate) fn is_advancing(&self) -> bool {
        self.advancing
    }

    /// Moves past the current record. When it fails, the cursor stays on the current record
    /// but its key is no longer in the slot ([`TableCursor::is_advancing`]): the advance can be
    /// made again.
    pub(crate) fn advance<S: Storage>(
        &mut self,
        storage: &mut S,
        table: &mut Table<S::File>,
        slot: &mut [u8],
        window: &mut [u8],
        reverse: bool,
    ) -> Result<(), S> {
        let moved = if !self.valid {
            Ok(())
        } else if reverse {
            self.load(storage, table, slot, window, self.pos.checked_sub(1), true)
        } else if self.pos + 1 >= table.footer().entry_count {
            self.valid = false;
            Ok(())
        } else {
            // Records lie back to back: the next one starts where this one ends.
            let offset = self.offset + self.record_len;
            self.read_key_at(storage, table, slot, window, self.pos + 1, offset, false)
        };
        self.advancing = moved.is_err();
        moved
    }

    /// Loads record `i` (none: past either end).
    fn load<S: Storage>(
        &mut self,
        storage: &mut S,
        table: &mut Table<S::File>,
        slot: &mut [u8],
        window: &mut [u8],
        i: Option<u32>,
        reverse: bool,
    ) -> Result<(), S> {
        let footer = *table.footer();
        let Some(i) = i.filter(|&i| i < footer.entry_count) else {
            self.valid = false;
            return Ok(());
        };
        let id = table.id();
        let offset = read_u32_at(&mut storage.io(table.file()), footer.index_offset + u64::from(i) * 4)
            .in_file(FileKind::Table, id)?;
        self.read_key_at(storage, table, slot, window, i, u64::from(offset), reverse)
    }

    #[allow(clippy::too_many_arguments)]
    fn read_key_at<S: Storage>(
        &mut self,
        storage: &mut S,
        table: &mut Table<S::File>,
        slot: &mut [u8],
        window: &mut [u8],
        i: u32,
        offset: u64,
        reverse: bool,
    ) -> Result<(), S> {
        let (id, data_end) = (table.id(), table.footer().index_offset);
        let io = &mut WindowIo::new(storage, table.file(), window, &mut self.held, data_end, reverse);
        let (layout, record_len) = read_key(io, offset, data_end, slot).in_file(FileKind::Table, id)?;
        *self = TableCursor {
            slot: self.slot,
            window: self.window,
            held: self.held,
            pos: i,
            valid: true,
            offset,
            record_len,
            key_len: layout.header.key_len,
            value_len: layout.value_len(),
            header: Some(layout.header),
            pending: false,
            advancing: false,
        };
        Ok(())
    }

    /// Copies the current record's value into `out` (which must hold it), reading the record
    /// through its checksum again.
    pub(crate) fn read_value<S: Storage>(
        &mut self,
        storage: &mut S,
        table: &mut Table<S::File>,
        window: &mut [u8],
        out: &mut [u8],
        reverse: bool,
    ) -> Result<usize, S> {
        let (id, data_end) = (table.id(), table.footer().index_offset);
        let io = &mut WindowIo::new(storage, table.file(), window, &mut self.held, data_end, reverse);
        read_value(io, self.offset, data_end, out).in_file(FileKind::Table, id)
    }
}

/// Reads the key of the record at `offset` into `slot` through the record's checksum; returns
/// the entry's layout and the record's length.
fn read_key<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    data_end: u64,
    slot: &mut [u8],
) -> core::result::Result<(EntryLayout, u64), ReadError<IO::Error>> {
    let bad = || ReadError::Corrupt { offset, kind: Corruption::BadEntry };
    let mut reader = EntryReader::start(io, offset, data_end)?;
    let record_len = reader.record_len() as u64;
    while let Some(piece) = reader.next(io)? {
        if let Some((at, part)) = piece.key() {
            // A key longer than the footer's longest is damage.
            slot.get_mut(at..at + part.len()).ok_or_else(bad)?.copy_from_slice(part);
        }
    }
    Ok((reader.finish(io)?, record_len))
}

/// Reads the value of the record at `offset` into `out` through the record's checksum.
fn read_value<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    data_end: u64,
    out: &mut [u8],
) -> core::result::Result<usize, ReadError<IO::Error>> {
    let mut reader = EntryReader::start(io, offset, data_end)?;
    while let Some(piece) = reader.next(io)? {
        if let Some((at, part)) = piece.value() {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
        }
    }
    Ok(reader.finish(io)?.value_len())
}

/// The first record index whose key satisfies `pred` (false for a prefix of the records, then
/// true): a binary search over the fences, then over the records of one run.
fn partition<S: Storage>(
    storage: &mut S,
    table: &mut Table<S::File>,
    slot: &mut [u8],
    pred: impl Fn(&[u8]) -> bool,
) -> Result<u32, S> {
    let footer = *table.footer();
    let id = table.id();
    let io = &mut storage.io(table.file());
    let fences = footer.fence_count();
    let (mut lo, mut hi) = (0u32, footer.entry_count);
    if fences > 0 {
        // The first fence whose key satisfies `pred`: the answer lies after the fence before it.
        let (mut flo, mut fhi) = (0u32, fences);
        while flo < fhi {
            let mid = flo + (fhi - flo) / 2;
            let n = fence_key(io, &footer, mid, slot).in_file(FileKind::Table, id)?;
            if pred(slot.get(..n).unwrap_or(&[])) {
                fhi = mid;
            } else {
                flo = mid + 1;
            }
        }
        lo = match flo.checked_sub(1) {
            Some(j) => j * FENCE_STRIDE + 1,
            None => 0,
        };
        hi = flo.saturating_mul(FENCE_STRIDE).min(footer.entry_count);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let offset =
            read_u32_at(io, footer.index_offset + u64::from(mid) * 4).in_file(FileKind::Table, id)?;
        let (layout, _) =
            read_key(io, u64::from(offset), footer.index_offset, slot).in_file(FileKind::Table, id)?;
        let n = layout.header.key_len;
        if pred(slot.get(..n).unwrap_or(&[])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Reads fence `j`'s key into `slot`; returns its length. The fences were checked against
/// their checksum when the table was opened.
fn fence_key<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    j: u32,
    slot: &mut [u8],
) -> core::result::Result<usize, ReadError<IO::Error>> {
    let base = footer.fence_offset();
    let keys_at = base + u64::from(footer.fence_count()) * 4;
    let at = keys_at + u64::from(read_u32_at(io, base + u64::from(j) * 4)?);
    let bad = ReadError::Corrupt { offset: at, kind: Corruption::BadLayout };
    let mut len = [0u8; 2];
    read_exact_at(io, at, &mut len)?;
    let n = usize::from(u16::from_le_bytes(len));
    if n == 0 || at + 2 + n as u64 > footer.filter_offset {
        return Err(bad);
    }
    let dst = slot.get_mut(..n).ok_or(bad)?;
    read_exact_at(io, at + 2, dst)?;
    Ok(n)
}

/// Reads of a table's data section through a read-ahead window: a read outside what the window
/// holds refills it with one large [`Storage::read_through`] (forward: starting at the read;
/// backward: ending just past it, so that the records before it come along).
struct WindowIo<'w, S: Storage> {
    storage: &'w mut S,
    file: &'w mut S::File,
    buf: &'w mut [u8],
    held: &'w mut WindowState,
    /// Nothing past this is read (the end of the data section).
    end: u64,
    reverse: bool,
    pos: u64,
}

impl<'w, S: Storage> WindowIo<'w, S> {
    /// Reads of `file` up to `end` through `buf` (a window of at least [`MIN_WINDOW`] bytes;
    /// a smaller one is not used: reads then go to the storage as they are).
    fn new(
        storage: &'w mut S,
        file: &'w mut S::File,
        buf: &'w mut [u8],
        held: &'w mut WindowState,
        end: u64,
        reverse: bool,
    ) -> Self {
        WindowIo { storage, file, buf, held, end, reverse, pos: 0 }
    }
}

impl<S: Storage> ErrorType for WindowIo<'_, S> {
    type Error = S::Error;
}

impl<S: Storage> Read for WindowIo<'_, S> {
    fn read(&mut self, dst: &mut [u8]) -> core::result::Result<usize, S::Error> {
        if dst.is_empty() {
            return Ok(0);
        }
        if self.buf.len() < MIN_WINDOW {
            let io = &mut self.storage.io(self.file);
            io.seek(SeekFrom::Start(self.pos))?;
            let n = io.read(dst)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let held_end = self.held.start + self.held.filled as u64;
        if self.pos < self.held.start || self.pos >= held_end {
            let start = if self.reverse {
                (self.pos + dst.len() as u64).saturating_sub(self.buf.len() as u64).min(self.pos)
            } else {
                self.pos
            };
            let room =
                usize::try_from(self.end.saturating_sub(start)).unwrap_or(usize::MAX).min(self.buf.len());
            let into = self.buf.get_mut(..room).unwrap_or(&mut []);
            // Nothing held while the window refills: a read that fails part way has already
            // overwritten some of it, and a step asked again must read those bytes afresh.
            *self.held = WindowState { start, filled: 0 };
            let filled = self.storage.read_through(self.file, start, into)?;
            *self.held = WindowState { start, filled };
            if self.pos >= start + filled as u64 {
                return Ok(0);
            }
        }
        let at = usize::try_from(self.pos - self.held.start).unwrap_or(usize::MAX);
        let src = self.buf.get(at..self.held.filled).unwrap_or(&[]);
        let n = src.len().min(dst.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: Storage> Seek for WindowIo<'_, S> {
    fn seek(&mut self, to: SeekFrom) -> core::result::Result<u64, S::Error> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            SeekFrom::End(d) => self.end.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}
