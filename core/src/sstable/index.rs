//! Where a table lookup ([`super::probe_with`]) finds a table's filter and fences: the
//! [`TableIndex`] trait, read from the file as the lookup goes ([`StoredIndex`], what the engine
//! itself uses: no memory beyond the lookup's stack), or held in memory, loaded and checked once
//! ([`ResidentIndex`], over buffers a host with memory to spare gives it).
//!
//! A resident index is held in two parts, each in its own buffer, so that a host short of memory
//! can hold the part every lookup needs (the filter: asked by every probe of the table) without
//! the part only a lookup that finds the key needs (the fences):
//!
//! ```text
//! fences: [ run starts: fence_count × u32 LE, the data offset of each fence's record (the      ]
//!         [             index entries 0, 16, 32, ...): with the data's end, the bytes of each  ]
//!         [             run of records                                                         ]
//!         [ fences    : the fence section as stored (fence_count × u32 LE key offset, then the ]
//!         [             keys)                                                                  ]
//!         [ guide     : ⌈fence_count / GUIDE_STRIDE⌉ × u64 BE, the head of every GUIDE_STRIDE-th ]
//!         [             fence key (its 8 bytes after the prefix all fence keys share, zero-    ]
//!         [             padded), then that prefix's length, u32 LE; made by the load, not read ]
//! filter: [ the filter as stored (64-byte blocks, each its CRC-32C and its bits)               ]
//! ```
//!
//! [`ResidentIndex::load_fences`] reads the index and fence sections through `index_crc`,
//! [`ResidentIndex::load_filter`] every filter block through its own CRC, as a lookup from
//! storage would; lookups through the resident parts then read neither again, and read each
//! run of records whole, once ([`Run::bytes`]). A part not held is read from storage.
//!
//! The guide is what a lookup's search over the fences starts with: a binary search over its
//! dense array of 8-byte heads (a few KiB per table, which stays in the CPU's caches) narrows
//! the fences that can hold the key to fewer than [`GUIDE_STRIDE`], and only those are
//! compared whole. Without it every step of the search reads a key offset and a key in two
//! other places of a section of megabytes, each a likely cache miss. Heads keep the fences'
//! order (a head below the key's means a fence below the key, a head above it a fence above
//! it), so equal heads only widen the range searched; a key without the shared prefix is
//! searched over all the fences.
//!
//! Memory: fences `fence_count × 8 + Σ(2 + fence key length)` bytes per table, about
//! `(10 + key length) / 16` bytes per key, plus the guide's `8 × ⌈fence_count / 32⌉ + 4`;
//! filter `filter_len`, 1.25 bytes per key (10 bits).
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use core::cmp::Ordering;

use embedded_io::{Read, Seek};

use super::footer::Footer;
use super::table::{fence_range, may_contain};
use super::FENCE_STRIDE;
use crate::error::Corruption;
use crate::filter::{self, BLOCK_LEN};
use crate::io::{read_exact_at, ReadError};
use crate::record::Checksum;

/// Fences per head of a resident index's guide (see the module docs): a memory-only layout,
/// not part of the file format.
pub const GUIDE_STRIDE: u32 = 32;

/// Bytes of the guide of `fence_count` fences: the heads and the shared prefix's length.
fn guide_len(fence_count: u32) -> usize {
    fence_count.div_ceil(GUIDE_STRIDE) as usize * 8 + 4
}

/// The head of `key` after its first `prefix` bytes: the next 8 bytes, zero-padded, read as a
/// big-endian number, so heads compare as the keys' bytes do.
fn head(key: &[u8], prefix: usize) -> u64 {
    let mut word = [0u8; 8];
    let tail = key.get(prefix..).unwrap_or(&[]);
    let n = tail.len().min(8);
    if let (Some(dst), Some(src)) = (word.get_mut(..n), tail.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(word)
}

/// The first `j` in `lo..hi` for which `is_before(j)` is false, `is_before` holding for a prefix
/// of the range (a binary search); `None` when `is_before` answers `None`.
fn partition_point(mut lo: usize, mut hi: usize, is_before: impl Fn(usize) -> Option<bool>) -> Option<usize> {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match is_before(mid)? {
            true => lo = mid + 1,
            false => hi = mid,
        }
    }
    Some(lo)
}

/// The run of entries a lookup searches for a key: entries `first..end`, which hold the key if
/// the table does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The run's first entry.
    pub first: u32,
    /// One past the run's last entry.
    pub end: u32,
    /// The data bytes `start..end` the run's records fill, when the index knows them without a
    /// read: the lookup then reads them in one go when its run buffer holds them.
    pub bytes: Option<(u64, u64)>,
}

/// Where a lookup finds a table's filter and fences.
pub trait TableIndex {
    /// Asks the table's filter about the key whose [`filter::key_hash`] is `hash`: `false` when
    /// the table certainly lacks it, `true` when it may hold it (or has no filter).
    fn may_contain<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        hash: u64,
    ) -> Result<bool, ReadError<IO::Error>>;

    /// The run of entries that holds `key` if the table does; `None` when `key` sorts before
    /// the table's first key.
    fn run_of<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        key: &[u8],
    ) -> Result<Option<Run>, ReadError<IO::Error>>;
}

/// The filter and fences read from the table's file at each lookup: a filter block (checked
/// against its CRC each time) and a binary search that reads each fence it compares.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoredIndex;

impl TableIndex for StoredIndex {
    fn may_contain<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        hash: u64,
    ) -> Result<bool, ReadError<IO::Error>> {
        may_contain(io, footer, hash)
    }

    fn run_of<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        key: &[u8],
    ) -> Result<Option<Run>, ReadError<IO::Error>> {
        Ok(fence_range(io, footer, key)?.map(|(first, end)| Run { first, end, bytes: None }))
    }
}

/// A table's run starts and fences, or its filter, or both, held in memory (see the module docs
/// for the two parts), over buffers [`ResidentIndex::load_fences`] and
/// [`ResidentIndex::load_filter`] filled and checked; a part not held is read from storage at
/// each lookup, as [`StoredIndex`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct ResidentIndex<'a> {
    fences: Option<Fences<'a>>,
    filter: Option<&'a [u8]>,
}

/// The resident run starts, fences and guide of a table.
#[derive(Debug, Clone, Copy)]
struct Fences<'a> {
    starts: &'a [u8],
    fences: &'a [u8],
    /// The heads, then the shared prefix's length (empty when not given: no guide).
    guide: &'a [u8],
    fence_count: u32,
    data_end: u64,
}

impl<'a> ResidentIndex<'a> {
    /// The bytes the run starts and fences of the table sealed by `footer` take in memory;
    /// `None` for a table without fences (format version 1), whose fences are read from storage.
    pub fn fences_len(footer: &Footer) -> Option<usize> {
        let n = footer.fence_count();
        if n == 0 {
            return None;
        }
        let stored = usize::try_from(Self::fence_section_len(footer)?).ok()?;
        (n as usize).checked_mul(4)?.checked_add(stored)?.checked_add(guide_len(n))
    }

    /// Bytes of the fence section as stored.
    fn fence_section_len(footer: &Footer) -> Option<u64> {
        footer.filter_offset.checked_sub(footer.fence_offset())
    }

    /// The bytes the filter of the table sealed by `footer` takes in memory; `None` for a table
    /// without a filter.
    pub fn filter_len(footer: &Footer) -> Option<usize> {
        let len = footer.filter_len as usize;
        (len >= BLOCK_LEN).then_some(len)
    }

    /// Reads the run starts and fences of the table sealed by `footer` into `buf` (exactly
    /// [`ResidentIndex::fences_len`] bytes), checking the index and fence sections against
    /// `index_crc`. Damage is [`ReadError::Corrupt`].
    pub fn load_fences<IO: Read + Seek>(
        io: &mut IO,
        footer: &Footer,
        buf: &mut [u8],
    ) -> Result<(), ReadError<IO::Error>> {
        let at = footer.index_offset;
        let bad = || ReadError::Corrupt { offset: at, kind: Corruption::BadLayout };
        if Self::fences_len(footer) != Some(buf.len()) {
            return Err(bad());
        }
        let n = footer.fence_count() as usize;
        let stored = Self::fence_section_len(footer).and_then(|l| usize::try_from(l).ok()).ok_or_else(bad)?;
        let (starts, rest) = buf.split_at_mut_checked(n * 4).ok_or_else(bad)?;
        let (fences, guide) = rest.split_at_mut_checked(stored).ok_or_else(bad)?;
        // The index: streamed through the checksum, every FENCE_STRIDE-th entry kept.
        let mut crc = Checksum::new();
        let mut chunk = [0u8; 256];
        let index_len = u64::from(footer.entry_count) * 4;
        let mut done = 0u64;
        while done < index_len {
            let m = usize::try_from(index_len - done).unwrap_or(usize::MAX).min(chunk.len());
            let piece = chunk.get_mut(..m).ok_or_else(bad)?;
            read_exact_at(io, footer.index_offset + done, piece)?;
            crc.update(piece);
            for (i, entry) in piece.chunks_exact(4).enumerate() {
                let entry_no = done / 4 + i as u64;
                if entry_no.is_multiple_of(u64::from(FENCE_STRIDE)) {
                    let at = (entry_no / u64::from(FENCE_STRIDE)) as usize * 4;
                    starts.get_mut(at..at + 4).ok_or_else(bad)?.copy_from_slice(entry);
                }
            }
            done += m as u64;
        }
        read_exact_at(io, footer.fence_offset(), fences)?;
        crc.update(fences);
        let got = crc.finish();
        if got != footer.index_crc {
            return Err(ReadError::Corrupt {
                offset: footer.index_offset,
                kind: Corruption::ChecksumMismatch { expected: footer.index_crc, got },
            });
        }
        let checked = Fences { starts, fences, guide: &[], fence_count: n as u32, data_end: 0 };
        checked
            .make_guide(guide)
            .ok_or(ReadError::Corrupt { offset: footer.fence_offset(), kind: Corruption::BadLayout })
    }

    /// Reads the filter of the table sealed by `footer` into `buf` (exactly
    /// [`ResidentIndex::filter_len`] bytes), checking each block against its CRC. Damage is
    /// [`ReadError::Corrupt`].
    pub fn load_filter<IO: Read + Seek>(
        io: &mut IO,
        footer: &Footer,
        buf: &mut [u8],
    ) -> Result<(), ReadError<IO::Error>> {
        if Self::filter_len(footer) != Some(buf.len()) {
            return Err(ReadError::Corrupt { offset: footer.filter_offset, kind: Corruption::BadLayout });
        }
        read_exact_at(io, footer.filter_offset, buf)?;
        for (i, block) in buf.chunks(BLOCK_LEN).enumerate() {
            let offset = footer.filter_offset + (i * BLOCK_LEN) as u64;
            filter::check_block(block).map_err(|kind| ReadError::Corrupt { offset, kind })?;
        }
        Ok(())
    }

    /// The index of the table sealed by `footer` with the parts given in memory: `fences` as
    /// [`ResidentIndex::load_fences`] filled it, `filter` as [`ResidentIndex::load_filter`] did
    /// (nothing is checked again; bytes that were not so loaded give wrong runs, a wrong filter
    /// answer or [`ReadError::Corrupt`], never a panic). A part given as `None` is read from
    /// storage at each lookup.
    pub fn over(footer: &Footer, fences: Option<&'a [u8]>, filter: Option<&'a [u8]>) -> ResidentIndex<'a> {
        let fences = fences.map(|buf| {
            let n = footer.fence_count();
            let (starts, rest) = buf.split_at(buf.len().min(n as usize * 4));
            let stored = Self::fence_section_len(footer).and_then(|l| usize::try_from(l).ok());
            let (fences, guide) = rest.split_at(stored.unwrap_or(usize::MAX).min(rest.len()));
            Fences { starts, fences, guide, fence_count: n, data_end: footer.ranges_offset }
        });
        ResidentIndex { fences, filter }
    }
}

impl<'a> Fences<'a> {
    fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
        bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    /// Fence `i`'s key.
    fn fence(&self, i: u32) -> Option<&'a [u8]> {
        let keys = self.fence_count as usize * 4;
        let at = keys + Self::u32_at(self.fences, i as usize * 4)? as usize;
        let len = match self.fences.get(at..at + 2)? {
            [a, b] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => return None,
        };
        self.fences.get(at + 2..at + 2 + len).filter(|k| !k.is_empty())
    }

    /// Writes the guide of these fences into `guide` (exactly [`guide_len`] bytes); `None` when
    /// a fence cannot be read or `guide` has the wrong size.
    fn make_guide(&self, guide: &mut [u8]) -> Option<()> {
        if guide.len() != guide_len(self.fence_count) || self.fence_count == 0 {
            return None;
        }
        let (first, last) = (self.fence(0)?, self.fence(self.fence_count - 1)?);
        // Sorted keys between the first and the last share the prefix those two share.
        let prefix = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let (heads, len) = guide.split_at_mut(guide.len() - 4);
        for (j, dst) in heads.chunks_exact_mut(8).enumerate() {
            let fence = self.fence(u32::try_from(j).ok()?.checked_mul(GUIDE_STRIDE)?)?;
            dst.copy_from_slice(&head(fence, prefix).to_be_bytes());
        }
        len.copy_from_slice(&u32::try_from(prefix).ok()?.to_le_bytes());
        Some(())
    }

    /// Bounds `lo..hi` of the count of fences whose key is <= `key`, from the guide: `None`
    /// without a guide, or when `key` lacks the prefix the fences share.
    fn guided(&self, key: &[u8]) -> Option<(u32, u32)> {
        let (heads, len) = self.guide.split_at_checked(self.guide.len().checked_sub(4)?)?;
        let prefix = Self::u32_at(len, 0)? as usize;
        if key.get(..prefix)? != self.fence(0)?.get(..prefix)? {
            return None;
        }
        let want = head(key, prefix);
        let g = heads.len() / 8;
        let at =
            |j: usize| heads.get(j * 8..j * 8 + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        // Heads below the key's: their fences are below the key. Heads above: above it.
        let below = partition_point(0, g, |j| Some(at(j)? < want))?;
        let not_above = partition_point(below, g, |j| Some(at(j)? <= want))?;
        let stride = GUIDE_STRIDE as usize;
        let hi = (not_above * stride).min(self.fence_count as usize);
        // `lo <= hi` for a guide the load made; kept so for any bytes.
        let lo = below.checked_sub(1).map_or(0, |j| j * stride + 1).min(hi);
        Some((u32::try_from(lo).ok()?, u32::try_from(hi).ok()?))
    }

    /// The run of entries that holds `key` if the table does (see [`TableIndex::run_of`]).
    fn run_of<E>(&self, footer: &Footer, key: &[u8]) -> Result<Option<Run>, ReadError<E>> {
        let at = footer.fence_offset();
        let bad = || ReadError::Corrupt { offset: at, kind: Corruption::BadLayout };
        // Count the fences whose key is <= `key`: every fence below `lo` is, none from `hi` on.
        let (mut lo, mut hi) = self.guided(key).unwrap_or((0, self.fence_count));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.fence(mid).ok_or_else(bad)?.cmp(key) {
                Ordering::Greater => hi = mid,
                _ => lo = mid + 1,
            }
        }
        let Some(j) = lo.checked_sub(1) else { return Ok(None) };
        let first = j * FENCE_STRIDE;
        let end = first.saturating_add(FENCE_STRIDE).min(footer.entry_count);
        let start = Self::u32_at(self.starts, j as usize * 4).ok_or_else(bad)?;
        let stop = match Self::u32_at(self.starts, lo as usize * 4) {
            Some(next) if lo < self.fence_count => u64::from(next),
            _ => self.data_end,
        };
        Ok(Some(Run { first, end, bytes: Some((u64::from(start), stop)) }))
    }
}

impl TableIndex for ResidentIndex<'_> {
    fn may_contain<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        hash: u64,
    ) -> Result<bool, ReadError<IO::Error>> {
        match self.filter {
            Some(filter) => Ok(filter::filter_admits(filter, hash)),
            None => may_contain(io, footer, hash),
        }
    }

    fn run_of<IO: Read + Seek>(
        &self,
        io: &mut IO,
        footer: &Footer,
        key: &[u8],
    ) -> Result<Option<Run>, ReadError<IO::Error>> {
        match &self.fences {
            Some(fences) => fences.run_of(footer, key),
            None => StoredIndex.run_of(io, footer, key),
        }
    }
}
