//! Write-ahead log: every write is appended here as a framed record before the MemTable sees it.
//!
//! A WAL file is records ([`crate::record`]) back to back, each holding one entry
//! ([`crate::entry`]) or a write batch, followed by zero bytes up to the end of the file; there is
//! no file header. Files are named `<id>.wal` (16 hex digits) and replayed in id order.
//!
//! ```text
//! 0                                  logical end                      file length
//! [ record | record | ... | record ][ 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ]
//!   header(8) payload                 the preallocated, unused tail
//! ```
//!
//! # Preallocation
//! The writer extends the file with zeros ahead of itself, in chunks of [`preallocation_chunk`]
//! bytes ([`crate::Storage::preallocate`]), so that appending a record and syncing it does not
//! change the file's size: the sync then has no size to persist (on ext4, no journal commit).
//! The engine keeps the logical end itself and never appends at `Storage::len`.
//!
//! # Zero tails, torn tails and corruption
//! On open, replay stops at the first record that fails its checks, at offset `p`, and asks:
//! 1. Is every byte from `p` to the end of the file zero ([`zeros_to_end`])? Then `p` is the clean
//!    end of the WAL (a record header is never zero: its length is at least 1), in any WAL,
//!    newest or older.
//! 2. Otherwise, is there any whole, checksum-valid record starting anywhere after `p`
//!    ([`valid_record_after`])? If not, the damage is a torn tail: in the newest WAL the file is
//!    cut to `p` (and synced) before anything is appended. If there is, damage sits in front of
//!    valid data, which no crash produces: replay fails with
//!    [`crate::Corruption::WalRecordBeforeValidData`] and nothing is skipped.

use embedded_io::{Read, Seek, Write};

use crate::entry;
use crate::error::Corruption;
use crate::io::{read_at, write_at};
use crate::record::{Checksum, RecordHeader, HEADER_LEN, MAX_RECORD_LEN};

/// The granule of WAL preallocation: file systems allocate in blocks of this size.
pub const PREALLOCATION_GRANULE: u64 = 4096;

/// The largest WAL preallocation chunk: 1 MiB.
pub const MAX_PREALLOCATION_CHUNK: u64 = 1 << 20;

/// How far ahead of the writer a WAL is extended, for MemTables of `memtable_bytes`: a quarter
/// of a MemTable, rounded up to [`PREALLOCATION_GRANULE`], at most [`MAX_PREALLOCATION_CHUNK`].
///
/// A WAL holds about one MemTable's worth of records before rotation, so a chunk of a quarter
/// MemTable extends each WAL about four times and leaves at most a quarter MemTable of unused
/// zeros behind it; 1 MiB chunks cost one extension per about 8,000 records of 128 bytes.
pub fn preallocation_chunk(memtable_bytes: usize) -> u64 {
    let quarter = (memtable_bytes / 4) as u64;
    let rounded = quarter.div_ceil(PREALLOCATION_GRANULE).saturating_mul(PREALLOCATION_GRANULE);
    rounded.clamp(PREALLOCATION_GRANULE, MAX_PREALLOCATION_CHUNK)
}

/// Where to extend a WAL to when a record must end at `needed`: the next multiple of `chunk`
/// at or after `needed`.
pub fn preallocation_end(needed: u64, chunk: u64) -> u64 {
    let chunk = chunk.max(1);
    needed.div_ceil(chunk).saturating_mul(chunk)
}

/// Appends one record whose payload is the concatenation of `parts` at `end`, and hands it to
/// the operating system (`flush`), so that it survives the death of the process; returns the
/// new end. Durability against power loss needs [`crate::Storage::sync`] on top.
pub fn append<IO: Write + Seek>(io: &mut IO, end: u64, parts: &[&[u8]]) -> Result<u64, IO::Error> {
    let header = RecordHeader::for_payload(parts).encode();
    let mut all: [&[u8]; 4] = [&header, &[], &[], &[]];
    let n = parts.len().min(3);
    all[1..1 + n].copy_from_slice(&parts[..n]);
    let end = write_at(io, end, &all[..1 + n])?;
    io.flush()?;
    Ok(end)
}

/// What lies at a replay position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Next {
    /// A record header declaring a plausible payload length that fits in the file, and the
    /// first bytes of its payload (zeros past a short payload).
    Record(RecordHeader, [u8; 4]),
    /// The end of the file, exactly.
    End,
    /// Something that is not a whole record: the start of a torn tail, or corruption.
    Damaged,
}

/// Reads the record header at `pos` of a WAL `end` bytes long.
pub fn next<IO: Read + Seek>(io: &mut IO, pos: u64, end: u64) -> Result<Next, IO::Error> {
    if pos >= end {
        return Ok(Next::End);
    }
    let mut b = [0u8; HEADER_LEN + 4];
    if read_at(io, pos, &mut b)? < HEADER_LEN {
        return Ok(Next::Damaged);
    }
    let [h0, h1, h2, h3, h4, h5, h6, h7, p0, p1, p2, p3] = b;
    let header = RecordHeader::decode([h0, h1, h2, h3, h4, h5, h6, h7]);
    match header.payload_len() {
        Ok(len) if pos + (HEADER_LEN + len) as u64 <= end => Ok(Next::Record(header, [p0, p1, p2, p3])),
        _ => Ok(Next::Damaged),
    }
}

/// Checks a payload read for `header`: its checksum, then that it decodes as an entry.
pub fn check_payload(header: &RecordHeader, payload: &[u8]) -> Result<(), Corruption> {
    header.verify(payload)?;
    match crate::batch::declared_count(payload) {
        None => entry::decode(payload).map(|_| ()),
        Some(n) => {
            let mut seen = 0;
            for item in crate::batch::Items::of(payload) {
                entry::decode(item.map_err(|()| Corruption::BadEntry)?)?;
                seen += 1;
            }
            if seen == n {
                Ok(())
            } else {
                Err(Corruption::BadEntry)
            }
        }
    }
}

/// True when every byte of `from..end` is zero (also when the range is empty): the unused,
/// preallocated tail of a WAL, which is its clean end.
pub fn zeros_to_end<IO: Read + Seek>(io: &mut IO, from: u64, end: u64) -> Result<bool, IO::Error> {
    let mut window = [0u8; 256];
    let mut pos = from;
    while pos < end {
        let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(window.len());
        let got = read_at(io, pos, &mut window[..want])?;
        if window[..got].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if got < want {
            // The file is shorter than `end`: nothing more to read.
            break;
        }
        pos += got as u64;
    }
    Ok(true)
}

/// The offset of the first whole, valid record starting after `from`, if any.
///
/// Used only when replay has met a damaged record, to tell a torn tail from corruption.
pub fn valid_record_after<IO: Read + Seek>(
    io: &mut IO,
    from: u64,
    end: u64,
) -> Result<Option<u64>, IO::Error> {
    let mut window = [0u8; 256];
    let mut base = from + 1;
    while base + HEADER_LEN as u64 <= end {
        let got = read_at(io, base, &mut window)?;
        if got < HEADER_LEN {
            break;
        }
        let last = got - HEADER_LEN;
        for i in 0..=last {
            let h: [u8; HEADER_LEN] = match window[i..i + HEADER_LEN].try_into() {
                Ok(h) => h,
                Err(_) => continue,
            };
            let header = RecordHeader::decode(h);
            let pos = base + i as u64;
            let Ok(len) = header.payload_len() else { continue };
            if pos + (HEADER_LEN + len) as u64 > end || len < 3 {
                continue;
            }
            if record_is_valid(io, pos, &header, len)? {
                return Ok(Some(pos));
            }
        }
        base += (last + 1) as u64;
    }
    Ok(None)
}

/// True when the record at `pos` with this header is whole, checksum-valid and an entry,
/// verified by streaming it (nothing is held in memory).
pub fn record_is_valid<IO: Read + Seek>(
    io: &mut IO,
    pos: u64,
    header: &RecordHeader,
    len: usize,
) -> Result<bool, IO::Error> {
    debug_assert!(len <= MAX_RECORD_LEN);
    let mut crc = Checksum::new();
    let mut chunk = [0u8; 64];
    let mut first = [0u8; entry::ENTRY_MAX_OVERHEAD];
    let mut first_len = 0;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        if read_at(io, pos + (HEADER_LEN + done) as u64, &mut chunk[..n])? < n {
            return Ok(false);
        }
        if done == 0 {
            first_len = n.min(first.len());
            first[..first_len].copy_from_slice(&chunk[..first_len]);
        }
        crc.update(&chunk[..n]);
        done += n;
    }
    let head = &first[..first_len];
    let plausible = entry::EntryHeader::decode(head).is_ok() || crate::batch::declared_count(head).is_some();
    Ok(crc.finish() == header.crc && plausible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryHeader;

    /// A growable in-memory file for format tests.
    struct Cursor {
        data: Vec<u8>,
        pos: usize,
    }
    impl embedded_io::ErrorType for Cursor {
        type Error = core::convert::Infallible;
    }
    impl Read for Cursor {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let src = self.data.get(self.pos..).unwrap_or(&[]);
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            self.pos += n;
            Ok(n)
        }
    }
    impl Write for Cursor {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            let end = self.pos + buf.len();
            if self.data.len() < end {
                self.data.resize(end, 0);
            }
            self.data[self.pos..end].copy_from_slice(buf);
            self.pos = end;
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    impl Seek for Cursor {
        fn seek(&mut self, pos: embedded_io::SeekFrom) -> Result<u64, Self::Error> {
            if let embedded_io::SeekFrom::Start(p) = pos {
                self.pos = p as usize;
            }
            Ok(self.pos as u64)
        }
    }

    fn wal_with(keys: &[&[u8]]) -> (Cursor, Vec<u64>) {
        let mut c = Cursor { data: vec![], pos: 0 };
        let mut starts = vec![];
        let mut end = 0;
        for k in keys {
            starts.push(end);
            let h = EntryHeader { tombstone: false, key_len: k.len(), expires_at: None };
            let (hb, hn) = h.encode();
            end = append(&mut c, end, &[&hb[..hn], k, b"value"]).unwrap();
        }
        (c, starts)
    }

    #[test]
    fn appended_records_are_read_back_in_order() {
        let (mut c, starts) = wal_with(&[b"a", b"bb", b"ccc"]);
        let end = c.data.len() as u64;
        let mut pos = 0;
        let mut seen = 0;
        while let Next::Record(h, _) = next(&mut c, pos, end).unwrap() {
            assert_eq!(pos, starts[seen]);
            let s = pos as usize + HEADER_LEN;
            check_payload(&h, &c.data[s..s + h.len as usize]).unwrap();
            pos += (HEADER_LEN + h.len as usize) as u64;
            seen += 1;
        }
        assert_eq!(seen, 3);
        assert_eq!(next(&mut c, pos, end).unwrap(), Next::End);
    }

    #[test]
    fn torn_tail_has_no_valid_record_after_it() {
        let (mut c, starts) = wal_with(&[b"a", b"bb", b"ccc"]);
        for cut in starts[2] + 1..c.data.len() as u64 {
            c.data.truncate(cut as usize);
            assert_eq!(next(&mut c, starts[2], cut).unwrap(), Next::Damaged);
            assert_eq!(valid_record_after(&mut c, starts[2], cut).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn damaged_middle_record_is_followed_by_a_valid_one() {
        let (mut c, starts) = wal_with(&[b"a", b"bb", b"ccc"]);
        let end = c.data.len() as u64;
        c.data[starts[1] as usize + HEADER_LEN + 1] ^= 0x40;
        let h = match next(&mut c, starts[1], end).unwrap() {
            Next::Record(h, _) => h,
            other => panic!("{other:?}"),
        };
        let s = starts[1] as usize + HEADER_LEN;
        assert!(check_payload(&h, &c.data[s..s + h.len as usize]).is_err());
        assert_eq!(valid_record_after(&mut c, starts[1], end).unwrap(), Some(starts[2]));
    }

    #[test]
    fn zero_tail_after_the_records_is_all_zeros_and_damage_in_it_is_not() {
        let (mut c, _) = wal_with(&[b"a", b"bb"]);
        let good = c.data.len() as u64;
        c.data.resize(good as usize + 3000, 0);
        let end = c.data.len() as u64;
        assert!(zeros_to_end(&mut c, good, end).unwrap());
        assert!(zeros_to_end(&mut c, end, end).unwrap(), "an empty tail is a clean end too");
        assert!(!zeros_to_end(&mut c, 0, end).unwrap(), "records are not zeros");
        for at in [good, good + 255, good + 256, end - 1] {
            c.data[at as usize] = 1;
            assert!(!zeros_to_end(&mut c, good, end).unwrap(), "non-zero byte at {at}");
            c.data[at as usize] = 0;
        }
    }

    #[test]
    fn preallocation_chunks_are_whole_blocks_scaled_to_the_memtable() {
        assert_eq!(preallocation_chunk(512), PREALLOCATION_GRANULE);
        assert_eq!(preallocation_chunk(64 << 10), 16 << 10);
        assert_eq!(preallocation_chunk(4 << 20), 1 << 20);
        assert_eq!(preallocation_chunk(64 << 20), MAX_PREALLOCATION_CHUNK);
        assert_eq!(preallocation_chunk(100_000) % PREALLOCATION_GRANULE, 0);
        assert_eq!(preallocation_end(1, 4096), 4096);
        assert_eq!(preallocation_end(4096, 4096), 4096);
        assert_eq!(preallocation_end(4097, 4096), 8192);
        assert_eq!(preallocation_end(3 << 20, 1 << 20), 3 << 20);
    }

    #[test]
    fn zero_filled_tail_is_not_a_record() {
        let (mut c, _) = wal_with(&[b"a"]);
        let good = c.data.len() as u64;
        c.data.resize(good as usize + 4096, 0);
        let end = c.data.len() as u64;
        assert_eq!(next(&mut c, good, end).unwrap(), Next::Damaged);
        assert_eq!(valid_record_after(&mut c, good, end).unwrap(), None);
    }
}
