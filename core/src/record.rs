//! Record framing: the unit in which the WAL and SSTables store entries.
//!
//! ```text
//! offset  size  field
//! 0       4     length   u32 LE, bytes of payload, 1..=MAX_RECORD_LEN
//! 4       4     crc      u32 LE, CRC-32C (Castagnoli) of the payload
//! 8       len   payload
//! ```
//!
//! This module owns the header, the checksum, decoding of a record held in a byte slice, and
//! the one way the engine reads a record it does not hold in memory: [`RecordReader`] streams it
//! through its checksum in pieces ([`EntryReader`] adds where the entry's key and value lie).
//! SSTable lookups, compaction, the SSTable builder's read-back and WAL validation all read
//! records through them. Decoding never panics: every length is checked before it is used.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use embedded_io::{Read, Seek};

use crate::entry::EntryLayout;
use crate::error::Corruption;
use crate::io::{read_at, read_exact_at, ReadError};
pub use crate::limits::MAX_RECORD_LEN;

/// Bytes in a record header.
pub const HEADER_LEN: usize = 8;

/// Payload bytes a [`RecordReader`] reads per step: most entries of a few dozen bytes come
/// whole with their header in one read.
pub const PIECE_LEN: usize = 128;

/// An incremental CRC-32C, for payloads written or read in pieces. Table-driven by default;
/// with the `hardware-crc` feature the CPU's CRC-32C instruction where it has one (about 2× faster
/// on a 130-byte record, 4.7× on a 4 KiB page, on x86-64 with SSE 4.2), same results.
pub struct Checksum(crc_impl::State);

impl Checksum {
    /// A fresh checksum.
    pub fn new() -> Self {
        Checksum(crc_impl::start())
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        crc_impl::feed(&mut self.0, bytes);
    }

    /// The checksum of everything fed.
    pub fn finish(self) -> u32 {
        crc_impl::end(self.0)
    }
}

/// The table-driven CRC-32C: a 16-way sliced table (16 KiB of flash) where memory is cheap, a
/// 1 KiB table on small targets.
#[cfg(not(feature = "hardware-crc"))]
mod crc_impl {
    #[cfg(target_pointer_width = "64")]
    type Table = crc::Table<16>;
    #[cfg(not(target_pointer_width = "64"))]
    type Table = crc::Table<1>;

    static CRC32C: crc::Crc<u32, Table> = crc::Crc::<u32, Table>::new(&crc::CRC_32_ISCSI);

    pub type State = crc::Digest<'static, u32, Table>;

    pub fn start() -> State {
        CRC32C.digest()
    }

    pub fn feed(state: &mut State, bytes: &[u8]) {
        state.update(bytes);
    }

    pub fn end(state: State) -> u32 {
        state.finalize()
    }
}

/// CRC-32C through the CPU's instruction, chosen at run time by the `crc32c` crate: the state
/// is the finished CRC of what was fed so far, which `crc32c_append` goes on from.
#[cfg(feature = "hardware-crc")]
mod crc_impl {
    pub type State = u32;

    pub fn start() -> State {
        0
    }

    pub fn feed(state: &mut State, bytes: &[u8]) {
        *state = crc32c::crc32c_append(*state, bytes);
    }

    pub fn end(state: State) -> u32 {
        state
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32C of the concatenation of `parts`.
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut c = Checksum::new();
    for p in parts {
        c.update(p);
    }
    c.finish()
}

/// The 8-byte header in front of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// CRC-32C of the payload.
    pub crc: u32,
}

impl RecordHeader {
    /// The header for a payload made of `parts`, in order.
    pub fn for_payload(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        RecordHeader { len: u32::try_from(len).unwrap_or(u32::MAX), crc: crc32c(parts) }
    }

    /// Encodes to the on-disk bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let (len, crc) = b.split_at_mut(4);
        len.copy_from_slice(&self.len.to_le_bytes());
        crc.copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Decodes the on-disk bytes (any 8 bytes decode; [`RecordHeader::payload_len`] validates).
    pub fn decode(b: [u8; HEADER_LEN]) -> Self {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = b;
        RecordHeader { len: u32::from_le_bytes([l0, l1, l2, l3]), crc: u32::from_le_bytes([c0, c1, c2, c3]) }
    }

    /// The payload length, if it is within `1..=MAX_RECORD_LEN`.
    pub fn payload_len(&self) -> Result<usize, Corruption> {
        let len = self.len as usize;
        if len == 0 || len > MAX_RECORD_LEN {
            Err(Corruption::BadLength(self.len))
        } else {
            Ok(len)
        }
    }

    /// Checks `payload` against the stored checksum.
    pub fn verify(&self, payload: &[u8]) -> Result<(), Corruption> {
        let got = crc32c(&[payload]);
        if got == self.crc {
            Ok(())
        } else {
            Err(Corruption::ChecksumMismatch { expected: self.crc, got })
        }
    }
}

/// Why a byte slice did not start with a whole, valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The slice ends before the record does (a torn write looks like this).
    Incomplete,
    /// The record is damaged.
    Corrupt(Corruption),
}

/// Decodes the record at the front of `bytes`: its payload and the bytes it occupies.
pub fn decode(bytes: &[u8]) -> Result<(&[u8], usize), FrameError> {
    let header: [u8; HEADER_LEN] =
        bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(FrameError::Incomplete)?;
    let header = RecordHeader::decode(header);
    let len = header.payload_len().map_err(FrameError::Corrupt)?;
    let end = HEADER_LEN + len;
    let payload = bytes.get(HEADER_LEN..end).ok_or(FrameError::Incomplete)?;
    header.verify(payload).map_err(FrameError::Corrupt)?;
    Ok((payload, end))
}

/// Writes the record for `parts` into `out`; returns the bytes used, or `None` if `out` is short.
pub fn encode_into(parts: &[&[u8]], out: &mut [u8]) -> Option<usize> {
    let header = RecordHeader::for_payload(parts);
    let total = HEADER_LEN + header.len as usize;
    let dst = out.get_mut(..total)?;
    let (h, mut rest) = dst.split_at_mut(HEADER_LEN);
    h.copy_from_slice(&header.encode());
    for p in parts {
        let (d, r) = rest.split_at_mut(p.len());
        d.copy_from_slice(p);
        rest = r;
    }
    Some(total)
}

/// A piece of a payload and its position in the payload, or `None` at the end.
pub type PieceResult<'a, E> = Result<Option<(usize, &'a [u8])>, ReadError<E>>;

/// Reads one record from storage in pieces of at most [`PIECE_LEN`] bytes, feeding each through
/// the checksum; [`RecordReader::finish`] then says whether the record is intact. Nothing of a
/// record read this way may be trusted before `finish` returns `Ok`.
///
/// The header and the first piece of the payload come in one read. A reader made
/// [`RecordReader::unverified`] skips the checksum (for a caller that checks the record when it
/// reads it again); its `finish` reads the record again, verifying it.
pub struct RecordReader {
    offset: u64,
    limit: u64,
    /// False: pieces are not fed through the checksum.
    verify: bool,
    header: RecordHeader,
    len: usize,
    done: usize,
    crc: Checksum,
    buf: [u8; HEADER_LEN + PIECE_LEN],
    /// Payload bytes already in `buf` (from the first read) and not yet handed out.
    buffered: usize,
}

impl RecordReader {
    /// Reads the header of the record at `offset`, which must end at or before `limit`: a record
    /// that does not is [`Corruption::BadLayout`], a header cut short [`Corruption::Truncated`], a
    /// length out of range [`Corruption::BadLength`], all at `offset`.
    pub fn start<IO: Read + Seek>(
        io: &mut IO,
        offset: u64,
        limit: u64,
    ) -> Result<Self, ReadError<IO::Error>> {
        let bad = |kind| ReadError::Corrupt { offset, kind };
        let mut buf = [0u8; HEADER_LEN + PIECE_LEN];
        let room = usize::try_from(limit.saturating_sub(offset)).unwrap_or(usize::MAX).min(buf.len());
        let got = read_at(io, offset, buf.get_mut(..room).unwrap_or(&mut []))?;
        let hb: [u8; HEADER_LEN] = match buf.first_chunk() {
            Some(h) if got >= HEADER_LEN => *h,
            _ => return Err(bad(Corruption::Truncated)),
        };
        let header = RecordHeader::decode(hb);
        let len = header.payload_len().map_err(bad)?;
        if offset.saturating_add((HEADER_LEN + len) as u64) > limit {
            return Err(bad(Corruption::BadLayout));
        }
        let buffered = (got - HEADER_LEN).min(len);
        Ok(RecordReader {
            offset,
            limit,
            verify: true,
            header,
            len,
            done: 0,
            crc: Checksum::new(),
            buf,
            buffered,
        })
    }

    /// This reader, handing out pieces without checksumming them: nothing it hands out is
    /// verified. For a caller that reads and verifies the record again before trusting it.
    pub fn unverified(self) -> Self {
        RecordReader { verify: false, ..self }
    }

    /// Where the record starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The record's header (its checksum not yet verified).
    pub fn header(&self) -> RecordHeader {
        self.header
    }

    /// The payload's length.
    pub fn payload_len(&self) -> usize {
        self.len
    }

    /// The next piece of the payload and its position in the payload; `None` once every byte was
    /// handed out.
    pub fn next<IO: Read + Seek>(&mut self, io: &mut IO) -> PieceResult<'_, IO::Error> {
        let at = self.done;
        let n = (self.len - at).min(PIECE_LEN);
        if n == 0 {
            return Ok(None);
        }
        let range = if self.buffered > 0 {
            let r = HEADER_LEN..HEADER_LEN + self.buffered.min(n);
            self.buffered = 0;
            r
        } else {
            let pos = self.offset + (HEADER_LEN + at) as u64;
            let dst = self
                .buf
                .get_mut(..n)
                .ok_or(ReadError::Corrupt { offset: pos, kind: Corruption::Truncated })?;
            read_exact_at(io, pos, dst)?;
            0..n
        };
        let piece = self.buf.get(range).unwrap_or(&[]);
        if self.verify {
            self.crc.update(piece);
        }
        self.done += piece.len();
        Ok(Some((at, piece)))
    }

    /// Reads whatever of the payload was not handed out yet (checksumming it).
    pub fn skip_rest<IO: Read + Seek>(&mut self, io: &mut IO) -> Result<(), ReadError<IO::Error>> {
        while self.next(io)?.is_some() {}
        Ok(())
    }

    /// Reads the rest of the payload and checks the checksum: `Ok` means every byte handed out
    /// was the record's own.
    pub fn finish<IO: Read + Seek>(mut self, io: &mut IO) -> Result<RecordHeader, ReadError<IO::Error>> {
        if !self.verify {
            return RecordReader::start(io, self.offset, self.limit)?.finish(io);
        }
        self.skip_rest(io)?;
        let got = self.crc.finish();
        if got == self.header.crc {
            Ok(self.header)
        } else {
            let kind = Corruption::ChecksumMismatch { expected: self.header.crc, got };
            Err(ReadError::Corrupt { offset: self.offset, kind })
        }
    }
}

/// A piece of an entry's payload, as [`EntryReader::next`] hands it out.
pub struct Piece<'a> {
    /// Where the piece starts in the payload.
    pub at: usize,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Where the entry's key and value lie.
    pub layout: EntryLayout,
}

impl Piece<'_> {
    /// The part of the key in this piece: where it starts in the key, and its bytes.
    pub fn key(&self) -> Option<(usize, &[u8])> {
        self.layout.key_part(self.at, self.bytes)
    }

    /// The part of the value in this piece: where it starts in the value, and its bytes.
    pub fn value(&self) -> Option<(usize, &[u8])> {
        self.layout.value_part(self.at, self.bytes)
    }
}

/// A [`RecordReader`] over a record whose payload is one entry (an SSTable record): each piece
/// comes with the entry's layout, so a reader finds the key and the value in it.
pub struct EntryReader {
    record: RecordReader,
    layout: Option<EntryLayout>,
}

impl EntryReader {
    /// Starts reading the entry record at `offset`, which must end at or before `limit`.
    pub fn start<IO: Read + Seek>(
        io: &mut IO,
        offset: u64,
        limit: u64,
    ) -> Result<Self, ReadError<IO::Error>> {
        Ok(EntryReader { record: RecordReader::start(io, offset, limit)?, layout: None })
    }

    /// [`EntryReader::start`] without the checksum: for reading an entry's header and key that
    /// the caller verifies later, when it reads the whole record again (compaction's merge orders
    /// by the key, and the copy checks the record and that key). `finish` reads it again, verified.
    pub fn start_unverified<IO: Read + Seek>(
        io: &mut IO,
        offset: u64,
        limit: u64,
    ) -> Result<Self, ReadError<IO::Error>> {
        Ok(EntryReader { record: RecordReader::start(io, offset, limit)?.unverified(), layout: None })
    }

    /// The record's length on storage, header included.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.record.payload_len()
    }

    /// The record's header bytes, as stored.
    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        self.record.header().encode()
    }

    /// The next piece of the payload; the first one fixes the layout (a payload that does not
    /// start with a valid entry header is [`Corruption::BadEntry`]).
    pub fn next<IO: Read + Seek>(&mut self, io: &mut IO) -> Result<Option<Piece<'_>>, ReadError<IO::Error>> {
        let offset = self.record.offset();
        let len = self.record.payload_len();
        let Some((at, bytes)) = self.record.next(io)? else { return Ok(None) };
        let layout = match self.layout {
            Some(l) => l,
            None => {
                let l = EntryLayout::of(bytes, len).map_err(|kind| ReadError::Corrupt { offset, kind })?;
                *self.layout.insert(l)
            }
        };
        Ok(Some(Piece { at, bytes, layout }))
    }

    /// Reads the rest and checks the checksum; returns the entry's layout.
    pub fn finish<IO: Read + Seek>(mut self, io: &mut IO) -> Result<EntryLayout, ReadError<IO::Error>> {
        let offset = self.record.offset();
        if self.layout.is_none() {
            // Fixes the layout from the first piece.
            self.next(io)?;
        }
        self.record.finish(io)?;
        self.layout.ok_or(ReadError::Corrupt { offset, kind: Corruption::BadEntry })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_record_decodes_to_same_payload() {
        let mut buf = [0u8; 64];
        let n = encode_into(&[b"hello ", b"world"], &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 11);
        let (payload, used) = decode(&buf[..n]).unwrap();
        assert_eq!(payload, b"hello world");
        assert_eq!(used, n);
    }

    #[test]
    fn header_layout_is_length_then_crc_little_endian() {
        let mut buf = [0u8; 16];
        encode_into(&[b"abc"], &mut buf).unwrap();
        assert_eq!(&buf[..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &crc32c(&[b"abc"]).to_le_bytes());
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The catalogue check value of CRC-32C for "123456789".
        assert_eq!(crc32c(&[b"123456789"]), 0xE306_9283);
    }

    #[test]
    fn checksum_fed_in_pieces_matches_the_table_driven_crc_of_the_whole() {
        // The reference is the `crc` crate's table, whichever implementation `Checksum` uses (the
        // CPU's instruction with `hardware-crc`): records written by one build are read by the other.
        let table = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let data: std::vec::Vec<u8> =
            (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..40).chain([63, 64, 65, 130, 255, 256, 257, 599]) {
            let whole = &data[..len];
            let expected = table.checksum(whole);
            assert_eq!(crc32c(&[whole]), expected, "len {len}");
            for cut in 0..=len {
                let (a, b) = whole.split_at(cut);
                assert_eq!(crc32c(&[a, b]), expected, "len {len} cut {cut}");
                let mut c = Checksum::new();
                c.update(a);
                c.update(&[]);
                c.update(b);
                assert_eq!(c.finish(), expected, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn every_prefix_of_a_record_is_incomplete() {
        let mut buf = [0u8; 32];
        let n = encode_into(&[b"payload"], &mut buf).unwrap();
        for cut in 0..n {
            assert_eq!(decode(&buf[..cut]), Err(FrameError::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = [0u8; 32];
        let n = encode_into(&[b"some payload"], &mut buf).unwrap();
        for byte in 0..n {
            for bit in 0..8 {
                let mut copy = buf;
                copy[byte] ^= 1 << bit;
                let r = decode(&copy[..n]);
                assert!(r.is_err(), "flip at byte {byte} bit {bit} decoded as valid");
            }
        }
    }

    /// Bytes in memory as `embedded_io` storage.
    struct SliceIo<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl embedded_io::ErrorType for SliceIo<'_> {
        type Error = core::convert::Infallible;
    }

    impl Read for SliceIo<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Seek for SliceIo<'_> {
        fn seek(&mut self, pos: embedded_io::SeekFrom) -> Result<u64, Self::Error> {
            if let embedded_io::SeekFrom::Start(at) = pos {
                self.pos = at as usize;
            }
            Ok(self.pos as u64)
        }
    }

    #[test]
    fn an_unverified_reader_still_verifies_when_it_finishes() {
        let mut buf = [0u8; 600];
        let payload = [7u8; 500]; // longer than one piece
        let n = encode_into(&[&payload], &mut buf).unwrap();
        let read_all = |bytes: &[u8]| {
            let io = &mut SliceIo { bytes, pos: 0 };
            let mut reader = RecordReader::start(io, 0, bytes.len() as u64).unwrap().unverified();
            let mut got = 0;
            while let Some((_, piece)) = reader.next(io).unwrap() {
                got += piece.len();
            }
            assert_eq!(got, 500, "every piece handed out, unverified");
            reader.finish(io)
        };
        assert!(read_all(&buf[..n]).is_ok());
        for at in [HEADER_LEN, HEADER_LEN + 300, n - 1] {
            let mut bad = buf;
            bad[at] ^= 0x10;
            let r = read_all(&bad[..n]);
            assert!(
                matches!(r, Err(ReadError::Corrupt { kind: Corruption::ChecksumMismatch { .. }, .. })),
                "flip at {at}: {r:?}"
            );
        }
    }

    #[test]
    fn zero_and_oversized_lengths_are_rejected() {
        let mut h = [0u8; 8];
        assert_eq!(decode(&h), Err(FrameError::Corrupt(Corruption::BadLength(0))));
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&h), Err(FrameError::Corrupt(Corruption::BadLength(u32::MAX))));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 48];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let len = (state % 49) as usize;
            // Small lengths make the header's declared length plausible sometimes.
            buf[1] = 0;
            buf[2] = 0;
            buf[3] = 0;
            let _ = decode(&buf[..len]);
        }
    }
}
