//! Writing a table: [`SsTableBuilder`] takes records in ascending key order and, at
//! [`SsTableBuilder::finish`], writes the index, the fences, the filter and the footer.
//!
//! The builder holds no memory per entry: the index and the fences are written in passes of
//! their own, after the data, from what a [`ReadBack`] tells it about the records just written
//! (a MemTable answers from memory; a compaction reads its output back, checking checksums). The
//! passes, and the fence stride, are the builder's business: its callers only add records.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use super::footer::Footer;
use super::{fence_count, FENCE_STRIDE, VERSION, VERSION_RANGES};
use crate::entry::EntryHeader;
use crate::error::{Corruption, Error, ResultExt};
use crate::filter::BLOCK_LEN;
use crate::io::write_at;
use crate::names::FileName;
use crate::record::{Checksum, RecordHeader, HEADER_LEN};
use crate::storage::Storage;

/// What the builder asks, after the data section is written, about the records in it.
pub trait ReadBack<S: Storage> {
    /// The payload length of record `i` (0-based, in the order the records were added).
    fn payload_len(&mut self, storage: &mut S, i: u32) -> Result<usize, Error<S::Error>>;

    /// The key of record `i`. Asked for some records, in ascending order, in one or more rounds.
    fn key(&mut self, storage: &mut S, i: u32) -> Result<&[u8], Error<S::Error>>;
}

/// Writes one SSTable into an empty file.
#[derive(Debug, Default)]
pub struct SsTableBuilder {
    data_len: u64,
    count: u32,
    max_key_len: u16,
    /// Where the range deletes start (the end of the entry records), once one was added.
    ranges_offset: Option<u64>,
    range_count: u16,
    /// The latest expiry of the entries added, if any has one ([`Footer::expires`]).
    latest_expiry: Option<u64>,
    /// Some entry added has none (a tombstone counts as one without): no
    /// [`Footer::latest_expiry`].
    some_never_expires: bool,
}

impl SsTableBuilder {
    /// A builder for an empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Range deletes added so far.
    pub fn range_count(&self) -> u16 {
        self.range_count
    }

    /// Bytes of records written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Appends one record holding the entry `payload`; keys must ascend.
    pub fn add<S: Storage>(
        &mut self,
        storage: &mut S,
        file: &mut S::File,
        payload: &[u8],
    ) -> Result<(), S::Error> {
        let h = RecordHeader::for_payload(&[payload]).encode();
        self.data_len = write_at(&mut storage.io(file), self.data_len, &[&h, payload])?;
        let header = EntryHeader::decode(payload);
        self.end_record(header.map_or(0, |h| h.key_len), header.ok().and_then(|h| h.expiry()));
        Ok(())
    }

    /// Appends the range delete `start..end`, after every entry record; range deletes must ascend
    /// by start and not overlap. `None` when the table already holds [`u16::MAX`] of them.
    pub fn add_range<S: Storage>(
        &mut self,
        storage: &mut S,
        file: &mut S::File,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<()>, S::Error> {
        let Some(count) = self.range_count.checked_add(1) else { return Ok(None) };
        self.ranges_offset.get_or_insert(self.data_len);
        let parts: [&[u8]; 3] = [&crate::entry::range_header(start.len()), start, end];
        let h = RecordHeader::for_payload(&parts).encode();
        let io = &mut storage.io(file);
        self.data_len = write_at(io, self.data_len, &[&h])?;
        self.data_len = write_at(io, self.data_len, &parts)?;
        self.range_count = count;
        let longest = u16::try_from(start.len().max(end.len())).unwrap_or(u16::MAX);
        self.max_key_len = self.max_key_len.max(longest);
        Ok(Some(()))
    }

    /// Appends bytes of a record copied verbatim in pieces (its header, then its payload).
    pub fn add_raw<S: Storage>(
        &mut self,
        storage: &mut S,
        file: &mut S::File,
        bytes: &[u8],
    ) -> Result<(), S::Error> {
        self.data_len = write_at(&mut storage.io(file), self.data_len, &[bytes])?;
        Ok(())
    }

    /// The record copied with [`Self::add_raw`], whose key is `key_len` bytes long and whose
    /// entry expires at `expiry` (`None`: never, or a tombstone: [`EntryHeader::expiry`]), is
    /// complete.
    pub fn end_record(&mut self, key_len: usize, expiry: Option<u64>) {
        self.count += 1;
        match expiry {
            Some(at) => self.latest_expiry = Some(self.latest_expiry.map_or(at, |l| l.max(at))),
            None => self.some_never_expires = true,
        }
        self.max_key_len = self.max_key_len.max(u16::try_from(key_len).unwrap_or(u16::MAX));
    }

    /// Writes the index and the fences from what `records` says of the records added, then
    /// `filter` (a sealed [`crate::filter::FilterBuilder`]'s bytes, or empty for none) and the
    /// footer. The caller then syncs the file. `name` names the file in errors.
    ///
    /// What `records` says is checked against what was written: the record lengths must add up
    /// to the data written, and each round of fence keys must give the same lengths. A mismatch
    /// (a misread) is [`Corruption::BadLayout`]: the index and fences are sealed by a checksum,
    /// so a wrong one must fail now, not make a key read as absent later.
    ///
    /// All at once; [`SsTableBuilder::into_finish`] does the same in steps of bounded work.
    #[allow(clippy::too_many_arguments)]
    pub fn finish<S: Storage, R: ReadBack<S>>(
        self,
        storage: &mut S,
        file: &mut S::File,
        records: &mut R,
        filter: &[u8],
        wal_covered: u64,
        replaces_from: u64,
        name: &FileName,
    ) -> Result<Footer, Error<S::Error>> {
        let mut finish = self.into_finish();
        while !finish.step(storage, file, records, u32::MAX, name)? {}
        finish.seal(storage, file, filter, wal_covered, replaces_from)
    }

    /// The data is complete: what is left (the index, the fences, the filter and the footer) as
    /// a [`Finish`] to run in steps.
    pub fn into_finish(self) -> Finish {
        Finish {
            pos: self.data_len,
            b: self,
            pass: Pass::Index,
            i: 0,
            sum: 0,
            keys_len: 0,
            crc: Checksum::new(),
        }
    }
}

/// Which section a [`Finish`] is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The index: one offset per record (`sum`: the data offset reached).
    Index,
    /// The fence key offsets (`sum`: the bytes of fence keys so far).
    FenceOffsets,
    /// The fence keys (`sum`: the bytes written so far, checked against `keys_len`).
    FenceKeys,
    /// Index and fences written; the filter and the footer remain ([`Finish::seal`]).
    Sealing,
}

/// The end of an [`SsTableBuilder`]'s table, written in steps: the index, the fence offsets and
/// the fence keys (each step asks its [`ReadBack`] about at most a given number of records),
/// then [`Finish::seal`] writes the filter and the footer. Plain data: it can wait between steps
/// while other files are written, as long as nothing else writes this one.
pub struct Finish {
    b: SsTableBuilder,
    pass: Pass,
    /// The next record the current pass asks about.
    i: u32,
    sum: u64,
    keys_len: u64,
    /// Where the next byte of the index or the fences goes.
    pos: u64,
    crc: Checksum,
}

impl Finish {
    /// Bytes of records (entries and range deletes) in the table: where the index starts.
    pub fn data_len(&self) -> u64 {
        self.b.data_len
    }

    /// Writes up to `budget` more index entries or fence keys (at least one); `true` once the
    /// index and the fences are complete and [`Finish::seal`] is due. Errors as
    /// [`SsTableBuilder::finish`].
    pub fn step<S: Storage, R: ReadBack<S>>(
        &mut self,
        storage: &mut S,
        file: &mut S::File,
        records: &mut R,
        budget: u32,
        name: &FileName,
    ) -> Result<bool, Error<S::Error>> {
        let data_len = self.b.data_len;
        let misread =
            || Error::Corrupted { file: name.clone(), offset: data_len, kind: Corruption::BadLayout };
        let count = self.b.count;
        let mut left = budget.max(1);
        while left > 0 {
            match self.pass {
                Pass::Index => {
                    if self.i == 0 {
                        // What a read-back reads must have reached the file.
                        embedded_io::Write::flush(&mut storage.io(file)).storage()?;
                    }
                    if self.i == count {
                        // The index covers the entry records, which come before the range deletes.
                        if self.sum != self.b.ranges_offset.unwrap_or(data_len) {
                            return Err(misread());
                        }
                        self.next_pass(Pass::FenceOffsets);
                        // A read-back of fence keys reads the index just written.
                        embedded_io::Write::flush(&mut storage.io(file)).storage()?;
                        continue;
                    }
                    let len = records.payload_len(storage, self.i)?;
                    let at = u32::try_from(self.sum).map_err(|_| misread())?;
                    self.write(storage, file, &[&at.to_le_bytes()])?;
                    self.sum += (HEADER_LEN + len) as u64;
                    self.i += 1;
                }
                Pass::FenceOffsets => {
                    if self.i >= count {
                        self.keys_len = self.sum;
                        self.next_pass(Pass::FenceKeys);
                        continue;
                    }
                    let key_len = records.key(storage, self.i)?.len();
                    let at = u32::try_from(self.sum).map_err(|_| misread())?;
                    self.write(storage, file, &[&at.to_le_bytes()])?;
                    self.sum += 2 + key_len as u64;
                    self.i += FENCE_STRIDE;
                }
                Pass::FenceKeys => {
                    if self.i >= count {
                        if self.sum != self.keys_len {
                            return Err(misread());
                        }
                        self.pass = Pass::Sealing;
                        continue;
                    }
                    let key = records.key(storage, self.i)?;
                    let len = u16::try_from(key.len()).map_err(|_| misread())?;
                    let key_len = key.len() as u64;
                    // `key` borrows `records`; copy nothing, write it now.
                    for p in [&len.to_le_bytes()[..], key] {
                        self.crc.update(p);
                    }
                    self.pos =
                        write_at(&mut storage.io(file), self.pos, &[&len.to_le_bytes(), key]).storage()?;
                    self.sum += 2 + key_len;
                    self.i += FENCE_STRIDE;
                }
                Pass::Sealing => return Ok(true),
            }
            left -= 1;
        }
        Ok(self.pass == Pass::Sealing)
    }

    fn next_pass(&mut self, pass: Pass) {
        self.pass = pass;
        self.i = 0;
        self.sum = 0;
    }

    /// Writes `parts` to the index or fences, feeding them to the checksum.
    fn write<S: Storage>(
        &mut self,
        storage: &mut S,
        file: &mut S::File,
        parts: &[&[u8]],
    ) -> Result<(), Error<S::Error>> {
        for p in parts {
            self.crc.update(p);
        }
        self.pos = write_at(&mut storage.io(file), self.pos, parts).storage()?;
        Ok(())
    }

    /// Where the filter starts once the index and the fences are written ([`Finish::step`]
    /// returned `true`): a caller that writes the filter in pieces writes them from here, then
    /// calls [`Finish::seal_after_filter`].
    pub fn filter_offset(&self) -> u64 {
        self.b.data_len + self.b.count as u64 * 4 + fence_count(self.b.count) as u64 * 4 + self.keys_len
    }

    /// Entry records in the table.
    pub fn count(&self) -> u32 {
        self.b.count
    }

    /// After [`Finish::step`] returned `true`: writes `filter` (a sealed
    /// [`crate::filter::FilterBuilder`]'s bytes, or empty for none) and the footer, and returns
    /// the footer. The caller then syncs the file.
    pub fn seal<S: Storage>(
        self,
        storage: &mut S,
        file: &mut S::File,
        filter: &[u8],
        wal_covered: u64,
        replaces_from: u64,
    ) -> Result<Footer, Error<S::Error>> {
        // A filter whose length the footer cannot state, or not made of whole blocks, is left out.
        let whole = filter.len().is_multiple_of(BLOCK_LEN) && u32::try_from(filter.len()).is_ok();
        let filter = if whole && self.b.count > 0 { filter } else { &[] };
        write_at(&mut storage.io(file), self.filter_offset(), &[filter]).storage()?;
        self.seal_after_filter(storage, file, filter.len() as u32, wal_covered, replaces_from)
    }

    /// [`Finish::seal`] for a filter the caller already wrote, `filter_len` bytes from
    /// [`Finish::filter_offset`] (whole blocks; 0 for none, and 0 when the table has no
    /// entries): writes the footer after it and returns it.
    pub fn seal_after_filter<S: Storage>(
        self,
        storage: &mut S,
        file: &mut S::File,
        filter_len: u32,
        wal_covered: u64,
        replaces_from: u64,
    ) -> Result<Footer, Error<S::Error>> {
        let filter_offset = self.filter_offset();
        let b = self.b;
        let filter_len =
            if (filter_len as usize).is_multiple_of(BLOCK_LEN) && b.count > 0 { filter_len } else { 0 };
        let footer = Footer {
            version: if b.range_count > 0 { VERSION_RANGES } else { VERSION },
            entry_count: b.count,
            index_offset: b.data_len,
            index_crc: self.crc.finish(),
            wal_covered,
            replaces_from,
            max_key_len: b.max_key_len,
            filter_len,
            filter_offset,
            range_count: b.range_count,
            ranges_offset: b.ranges_offset.unwrap_or(b.data_len),
            expires: b.latest_expiry.is_some(),
            all_expire_by: match b.latest_expiry {
                Some(latest) if !b.some_never_expires && b.range_count == 0 => latest,
                _ => 0,
            },
        };
        let trailer = footer.trailer();
        let trailer = trailer.as_ref().map_or(&[][..], |t| &t[..]);
        write_at(&mut storage.io(file), filter_offset + filter_len as u64, &[trailer, &footer.encode()])
            .storage()?;
        Ok(footer)
    }
}
