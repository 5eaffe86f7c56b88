//! The SSTable footer: the last [`FOOTER_LEN`] bytes of a table, which say where every section
//! lies and what the table replaces; and [`open`], which checks it and the sections it seals.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use embedded_io::{Read, Seek};

use super::{fence_count, FOOTER_LEN, MAGIC, VERSION, VERSION_RANGES};
use crate::error::Corruption;
use crate::filter::BLOCK_LEN;
use crate::io::{read_exact_at, read_u32_at, ReadError};
use crate::record::{crc32c, Checksum, RecordHeader, HEADER_LEN};

/// What an opened table's footer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Footer {
    /// Format version (1 or 2).
    pub version: u16,
    /// Entries in the table.
    pub entry_count: u32,
    /// Offset of the index section (= bytes of data).
    pub index_offset: u64,
    /// CRC-32C of the index section.
    pub index_crc: u32,
    /// Every WAL with an id up to this one is fully contained in SSTables.
    pub wal_covered: u64,
    /// This table replaces (is the compacted form of) every table with an id from this one up to
    /// its own; for a table written by a flush, its own id.
    pub replaces_from: u64,
    /// The longest key in the table.
    pub max_key_len: u16,
    /// Bytes of Bloom filter before the footer (0: none).
    pub filter_len: u32,
    /// Where the filter starts (= where the fences end): not stored, but derived from the
    /// footer's position in the file and `filter_len`.
    pub filter_offset: u64,
    /// Range deletes in the table (version 3; 0 before).
    pub range_count: u16,
    /// Where the range deletes start: after the last entry record, before the index. Not
    /// stored: derived when the table is opened (equal to `index_offset` when there are none).
    pub ranges_offset: u64,
    /// Some entry of the table has an expiry (a TTL): flag [`FLAG_EXPIRES`]. Tables written
    /// before the flag existed read as `false`.
    pub expires: bool,
    /// When every entry of the table has an expiry (no entry without a TTL, no tombstone, no
    /// range delete): the latest of them, in the clock's units; from then on nothing in the
    /// table is alive ([`Footer::all_expired_at`]). Stored in the [`TRAILER_LEN`] bytes before the
    /// footer, flag [`FLAG_LATEST_EXPIRY`]; 0 otherwise and for tables written before it
    /// ([`Footer::latest_expiry`] reads it as an `Option`).
    ///
    /// Kept as a plain `u64` (0: not every entry expires; an expiry is never 0, as it lies after
    /// the clock's reading when written) rather than an `Option`: a footer is part of every table
    /// the engine holds, and 8 more bytes each grew a microcontroller's deepest stack (open,
    /// whose table list is built in place) past what the firmware leaves it.
    pub all_expire_by: u64,
}

/// Bytes of the trailer a table with [`Footer::latest_expiry`] has between its filter and its
/// footer: the latest expiry (u64) and the CRC-32C of those 8 bytes (u32), little-endian. Its
/// own checksum, not the footer's: a build that predates the flag then reads an intact footer
/// with an unknown flag ([`Corruption::UnsupportedVersion`]), not a damaged one.
pub const TRAILER_LEN: usize = 12;

/// Footer flag (bytes 10..12): some entry of the table has an expiry. The compaction policy
/// keeps a table as written (a trivial move) only when it has none, so that expired entries
/// are reclaimed by merges ([`crate::version::run_flags`]).
pub const FLAG_EXPIRES: u16 = 1;

/// Footer flag (bytes 10..12): every entry of the table expires, and the [`TRAILER_LEN`] bytes
/// before the footer hold the latest expiry ([`Footer::latest_expiry`]). A table all of whose
/// entries have expired is removed whole rather than merged ([`crate::Db`]).
pub const FLAG_LATEST_EXPIRY: u16 = 2;

fn u16_at(b: &[u8; FOOTER_LEN], i: usize) -> u16 {
    match b.get(i..i + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn u32_at(b: &[u8; FOOTER_LEN], i: usize) -> u32 {
    match b.get(i..i + 4) {
        Some(&[x0, x1, x2, x3]) => u32::from_le_bytes([x0, x1, x2, x3]),
        _ => 0,
    }
}

fn u64_at(b: &[u8; FOOTER_LEN], i: usize) -> u64 {
    u64::from(u32_at(b, i)) | (u64::from(u32_at(b, i + 4)) << 32)
}

impl Footer {
    /// The bytes written just before the footer: the latest expiry's trailer, when there is one.
    pub fn trailer(&self) -> Option<[u8; TRAILER_LEN]> {
        let latest = self.latest_expiry()?.to_le_bytes();
        let mut t = [0u8; TRAILER_LEN];
        let (at, crc) = t.split_at_mut(latest.len());
        at.copy_from_slice(&latest);
        crc.copy_from_slice(&crc32c(&[&latest]).to_le_bytes());
        Some(t)
    }

    /// The latest expiry of its entries when every one of them expires
    /// ([`Footer::all_expire_by`]), `None` otherwise.
    pub fn latest_expiry(&self) -> Option<u64> {
        (self.all_expire_by != 0).then_some(self.all_expire_by)
    }

    /// True when nothing in the table is alive at `now`: every entry expires, the latest of them
    /// at or before `now` ([`Footer::latest_expiry`]).
    pub fn all_expired_at(&self, now: u64) -> bool {
        self.latest_expiry().is_some_and(|latest| latest <= now)
    }

    /// Encodes the footer ([`Footer::trailer`], if any, is written before it).
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        let flags = if self.expires { FLAG_EXPIRES } else { 0 }
            | if self.latest_expiry().is_some() { FLAG_LATEST_EXPIRY } else { 0 };
        let fields: [(usize, &[u8]); 11] = [
            (0, &MAGIC),
            (8, &self.version.to_le_bytes()),
            (10, &flags.to_le_bytes()),
            (12, &self.entry_count.to_le_bytes()),
            (16, &self.index_offset.to_le_bytes()),
            (24, &self.index_crc.to_le_bytes()),
            (28, &self.filter_len.to_le_bytes()),
            (32, &self.wal_covered.to_le_bytes()),
            (40, &self.replaces_from.to_le_bytes()),
            (48, &self.max_key_len.to_le_bytes()),
            (50, &self.range_count.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let crc = crc32c(&[b.get(..52).unwrap_or(&[])]);
        if let Some(dst) = b.get_mut(52..56) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes and checks the footer found at offset `footer_at` of its file, given the
    /// [`TRAILER_LEN`] bytes before it (`before`: read only when its flags say so, zeros for a
    /// file too short to have them); `Err` says what is wrong with it.
    pub fn decode(
        b: &[u8; FOOTER_LEN],
        before: &[u8; TRAILER_LEN],
        footer_at: u64,
    ) -> Result<Self, Corruption> {
        if b.get(0..8) != Some(&MAGIC[..]) {
            return Err(Corruption::BadMagic);
        }
        let flags = u16_at(b, 10);
        let (expected, got) = (u32_at(b, 52), crc32c(&[b.get(..52).unwrap_or(&[])]));
        if expected != got {
            return Err(Corruption::ChecksumMismatch { expected, got });
        }
        let version = u16_at(b, 8);
        let filter_len = u32_at(b, 28);
        let range_count = u16_at(b, 50);
        let known = match version {
            1 => filter_len == 0 && range_count == 0,
            VERSION => filter_len.is_multiple_of(BLOCK_LEN as u32) && range_count == 0,
            VERSION_RANGES => filter_len.is_multiple_of(BLOCK_LEN as u32) && range_count > 0,
            _ => false,
        };
        let flags_known =
            if version == 1 { flags == 0 } else { flags & !(FLAG_EXPIRES | FLAG_LATEST_EXPIRY) == 0 };
        if !known || !flags_known {
            return Err(Corruption::UnsupportedVersion(version));
        }
        let latest_expiry = match flags & FLAG_LATEST_EXPIRY {
            0 => None,
            _ => {
                let (latest, crc) = before.split_at(8);
                let latest = <[u8; 8]>::try_from(latest).unwrap_or_default();
                let expected = <[u8; 4]>::try_from(crc).map_or(0, u32::from_le_bytes);
                let got = crc32c(&[&latest]);
                if expected != got {
                    return Err(Corruption::ChecksumMismatch { expected, got });
                }
                Some(u64::from_le_bytes(latest))
            }
        };
        // Every entry expires only when some does, a table with range deletes has entries that
        // never expire, and no expiry is 0.
        if latest_expiry.is_some()
            && (flags & FLAG_EXPIRES == 0 || range_count > 0 || latest_expiry == Some(0))
        {
            return Err(Corruption::BadLayout);
        }
        let trailer_len = if latest_expiry.is_some() { TRAILER_LEN as u64 } else { 0 };
        let index_offset = u64_at(b, 16);
        Ok(Footer {
            version,
            entry_count: u32_at(b, 12),
            index_offset,
            index_crc: u32_at(b, 24),
            wal_covered: u64_at(b, 32),
            replaces_from: u64_at(b, 40),
            max_key_len: u16_at(b, 48),
            filter_len,
            filter_offset: footer_at
                .checked_sub(trailer_len + filter_len as u64)
                .ok_or(Corruption::BadLayout)?,
            range_count,
            ranges_offset: index_offset,
            expires: flags & FLAG_EXPIRES != 0,
            all_expire_by: latest_expiry.unwrap_or(0),
        })
    }

    /// Where the fence section starts (= where the index ends).
    pub fn fence_offset(&self) -> u64 {
        self.index_offset.saturating_add(self.entry_count as u64 * 4)
    }

    /// Fences in the table: one per [`super::FENCE_STRIDE`] entries (none in version 1).
    pub fn fence_count(&self) -> u32 {
        if self.version >= 2 {
            fence_count(self.entry_count)
        } else {
            0
        }
    }
}

/// Opens a table of `file_len` bytes: reads and checks the footer, and the checksum of the index
/// and fence sections it seals. Every later lookup trusts those sections.
pub fn open<IO: Read + Seek>(io: &mut IO, file_len: u64) -> Result<Footer, ReadError<IO::Error>> {
    let footer_at = file_len
        .checked_sub(FOOTER_LEN as u64)
        .ok_or(ReadError::Corrupt { offset: 0, kind: Corruption::Truncated })?;
    let mut fb = [0u8; FOOTER_LEN];
    read_exact_at(io, footer_at, &mut fb)?;
    let mut before = [0u8; TRAILER_LEN];
    if u16_at(&fb, 10) & FLAG_LATEST_EXPIRY != 0 {
        let at = footer_at
            .checked_sub(TRAILER_LEN as u64)
            .ok_or(ReadError::Corrupt { offset: footer_at, kind: Corruption::BadLayout })?;
        read_exact_at(io, at, &mut before)?;
    }
    let footer = Footer::decode(&fb, &before, footer_at)
        .map_err(|kind| ReadError::Corrupt { offset: footer_at, kind })?;
    let index_len = footer.entry_count as u64 * 4;
    // The index and fence sections: checksummed together.
    let index_end = footer.filter_offset;
    let fences_len = footer.index_offset.checked_add(index_len).and_then(|e| index_end.checked_sub(e));
    let fences_ok = match fences_len {
        Some(n) if footer.version >= 2 => n >= footer.fence_count() as u64 * 4,
        Some(n) => n == 0,
        None => false,
    };
    if !fences_ok || footer.index_offset > u32::MAX as u64 {
        return Err(ReadError::Corrupt { offset: footer_at, kind: Corruption::BadLayout });
    }
    let mut crc = Checksum::new();
    let mut chunk = [0u8; 256];
    let mut pos = footer.index_offset;
    while pos < index_end {
        let n = usize::try_from(index_end - pos).unwrap_or(usize::MAX).min(chunk.len());
        let piece = chunk.get_mut(..n).unwrap_or(&mut []);
        read_exact_at(io, pos, piece)?;
        crc.update(piece);
        pos += n as u64;
    }
    let got = crc.finish();
    if got != footer.index_crc {
        return Err(ReadError::Corrupt {
            offset: footer.index_offset,
            kind: Corruption::ChecksumMismatch { expected: footer.index_crc, got },
        });
    }
    let mut footer = footer;
    if footer.range_count > 0 {
        footer.ranges_offset = ranges_offset(io, &footer)?;
    }
    Ok(footer)
}

/// Where a version-3 table's range deletes start (after its last entry record), checked: the
/// range records must fill exactly the space up to the index. Their checksums are checked when
/// they are read.
fn ranges_offset<IO: Read + Seek>(io: &mut IO, footer: &Footer) -> Result<u64, ReadError<IO::Error>> {
    let bad = ReadError::Corrupt { offset: footer.index_offset, kind: Corruption::BadLayout };
    let record_end = |io: &mut IO, at: u64| -> Result<u64, ReadError<IO::Error>> {
        let mut h = [0u8; HEADER_LEN];
        read_exact_at(io, at, &mut h)?;
        let len =
            RecordHeader::decode(h).payload_len().map_err(|kind| ReadError::Corrupt { offset: at, kind })?;
        Ok(at + (HEADER_LEN + len) as u64)
    };
    let start = match footer.entry_count.checked_sub(1) {
        None => 0,
        Some(last) => {
            let at = u64::from(read_u32_at(io, footer.index_offset + u64::from(last) * 4)?);
            record_end(io, at)?
        }
    };
    let mut at = start;
    for _ in 0..footer.range_count {
        if at >= footer.index_offset {
            return Err(bad);
        }
        at = record_end(io, at)?;
    }
    if at != footer.index_offset {
        return Err(bad);
    }
    Ok(start)
}
