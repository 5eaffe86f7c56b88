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
        self.end_record(EntryHeader::decode(payload).map_or(0, |h| h.key_len));
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

    /// The record copied with [`Self::add_raw`], whose key is `key_len` bytes long, is complete.
    pub fn end_record(&mut self, key_len: usize) {
        self.count += 1;
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
        let misread =
            || Error::Corrupted { file: name.clone(), offset: self.data_len, kind: Corruption::BadLayout };
        // The index covers the entry records, which come before the range deletes.
        let points_end = self.ranges_offset.unwrap_or(self.data_len);
        let mut crc = Checksum::new();
        let mut pos = self.data_len;
        let mut write =
            |storage: &mut S, file: &mut S::File, parts: &[&[u8]]| -> Result<(), Error<S::Error>> {
                for p in parts {
                    crc.update(p);
                }
                pos = write_at(&mut storage.io(file), pos, parts).storage()?;
                Ok(())
            };
        // What a read-back reads must have reached the file.
        embedded_io::Write::flush(&mut storage.io(file)).storage()?;

        // The index: the offset of every record.
        let mut offset = 0u64;
        for i in 0..self.count {
            let len = records.payload_len(storage, i)?;
            let at = u32::try_from(offset).map_err(|_| misread())?;
            write(storage, file, &[&at.to_le_bytes()])?;
            offset += (HEADER_LEN + len) as u64;
        }
        if offset != points_end {
            return Err(misread());
        }
        // A read-back of fence keys reads the index just written.
        embedded_io::Write::flush(&mut storage.io(file)).storage()?;
        // The fences: the offset of every fence key, then the keys (length-prefixed).
        let fences = fence_count(self.count);
        let mut keys_len = 0u64;
        for i in (0..self.count).step_by(FENCE_STRIDE as usize) {
            let key_len = records.key(storage, i)?.len();
            let at = u32::try_from(keys_len).map_err(|_| misread())?;
            write(storage, file, &[&at.to_le_bytes()])?;
            keys_len += 2 + key_len as u64;
        }
        let mut written = 0u64;
        for i in (0..self.count).step_by(FENCE_STRIDE as usize) {
            let key = records.key(storage, i)?;
            let len = u16::try_from(key.len()).map_err(|_| misread())?;
            let (len_bytes, key_len) = (len.to_le_bytes(), key.len() as u64);
            // `key` borrows `records`; copy nothing, write it now.
            write(storage, file, &[&len_bytes, key])?;
            written += 2 + key_len;
        }
        if written != keys_len {
            return Err(misread());
        }
        let index_crc = crc.finish();
        let filter_offset = self.data_len + self.count as u64 * 4 + fences as u64 * 4 + keys_len;
        // A filter whose length the footer cannot state, or not made of whole blocks, is left out.
        let whole = filter.len().is_multiple_of(BLOCK_LEN) && u32::try_from(filter.len()).is_ok();
        let filter = if whole && self.count > 0 { filter } else { &[] };
        let footer = Footer {
            version: if self.range_count > 0 { VERSION_RANGES } else { VERSION },
            entry_count: self.count,
            index_offset: self.data_len,
            index_crc,
            wal_covered,
            replaces_from,
            max_key_len: self.max_key_len,
            filter_len: filter.len() as u32,
            filter_offset,
            range_count: self.range_count,
            ranges_offset: points_end,
        };
        write_at(&mut storage.io(file), filter_offset, &[filter, &footer.encode()]).storage()?;
        Ok(footer)
    }
}
