//! Write-ahead log: every write is appended here as a framed record before the MemTable sees it.
//!
//! A WAL file is nothing but records ([`crate::record`]) back to back, each holding one entry
//! ([`crate::entry`]); there is no file header. Files are named `<id>.wal` (16 hex digits) and
//! replayed in id order.
//!
//! # Torn tails and corruption
//! A crash during an append leaves the last record incomplete or with a bad checksum. On open,
//! replay stops at the first record that fails its checks, at offset `p`, and then asks
//! [`valid_record_after`]: is there any whole, checksum-valid record starting anywhere after
//! `p`? If not, the damage is a torn tail: the file is cut to `p` (and synced) before anything is
//! appended. If there is, damage sits in front of valid data, which no crash produces: replay
//! fails with [`crate::Corruption::WalRecordBeforeValidData`] and nothing is skipped.

use embedded_io::{Read, Seek, Write};

use crate::entry;
use crate::error::Corruption;
use crate::io::{read_at, write_at};
use crate::record::{Checksum, RecordHeader, HEADER_LEN, MAX_RECORD_LEN};

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
    fn zero_filled_tail_is_not_a_record() {
        let (mut c, _) = wal_with(&[b"a"]);
        let good = c.data.len() as u64;
        c.data.resize(good as usize + 4096, 0);
        let end = c.data.len() as u64;
        assert_eq!(next(&mut c, good, end).unwrap(), Next::Damaged);
        assert_eq!(valid_record_after(&mut c, good, end).unwrap(), None);
    }
}
