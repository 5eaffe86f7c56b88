//! SSTable: an immutable file of entries sorted by key, written once from a frozen MemTable.
//!
//! ```text
//! [ data  : entry records (u32 len | u32 crc32c | entry payload), ascending key order ]
//! [ index : entry_count × u32 LE, the offset of each record in the data section        ]
//! [ fences: the key of every FENCE_STRIDE-th record (records 0, 16, 32, ...):           ]
//! [         fence_count × u32 LE offset of each fence key, relative to the keys' start, ]
//! [         then the keys, each u16 LE key_len | key                                    ]
//! [ filter: filter_len bytes, a blocked Bloom filter of the keys (crate::filter); may be empty ]
//! [ footer: 56 bytes                                                                    ]
//!   0  magic         8  b"MVSSTBL1"
//!   8  version       u16 = 2 (version 1: no fences and no filter; still read)
//!   10 flags         u16 = 0 (reserved)
//!   12 entry_count   u32
//!   16 index_offset  u64 (= length of the data section)
//!   24 index_crc     u32  CRC-32C of the index and fence sections
//!   28 filter_len    u32  bytes of filter, a multiple of 64 (0 = no filter)
//!   32 wal_covered   u64  every WAL with id <= this is fully contained in SSTables
//!   40 replaces_from u64  this table replaces every table with an id in [replaces_from, own id)
//!   48 max_key_len   u16  longest key in the table (sizes compaction's scratch memory)
//!   50 reserved      u16 = 0
//!   52 footer_crc    u32  CRC-32C of footer bytes 0..52
//! ```
//!
//! Every byte a lookup trusts is checksummed: the footer by its own CRC, the index and the
//! fences by `index_crc` (checked when the table is opened), each filter block by its own CRC (checked on
//! every query), each record by its header CRC (checked on every probe, while the key is
//! compared, by streaming the record through a 128-byte buffer). A lookup therefore never loads
//! the file, and a flipped bit yields [`crate::Corruption`], never a wrong value.
//!
//! A lookup first asks the filter (one 64-byte read): a key it rules out costs no search. Then a
//! binary search over the fences, a compact section that stays in a read cache, picks the run of
//! [`FENCE_STRIDE`] records that can hold the key, and a binary search over that run (a few
//! hundred bytes of data, usually one page) finds it.

use core::cmp::Ordering;

use embedded_io::{Read, Seek, Write};

use crate::entry::{EntryHeader, ENTRY_MAX_OVERHEAD};
use crate::error::Corruption;
use crate::filter::{self, BLOCK_LEN};
use crate::io::{read_at, read_exact_at, read_u32_at, write_at, ReadError};
use crate::record::{crc32c, Checksum, RecordHeader, HEADER_LEN};

/// The footer's magic number.
pub const MAGIC: [u8; 8] = *b"MVSSTBL1";
/// The format version this build writes (it also reads version 1, which has no filter).
pub const VERSION: u16 = 2;
/// Bytes in the footer.
pub const FOOTER_LEN: usize = 56;
/// Records per fence: the fence section holds the key of every `FENCE_STRIDE`-th record.
pub const FENCE_STRIDE: u32 = 16;

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
}

impl Footer {
    /// Encodes the footer.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.entry_count.to_le_bytes());
        b[16..24].copy_from_slice(&self.index_offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.index_crc.to_le_bytes());
        b[28..32].copy_from_slice(&self.filter_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.wal_covered.to_le_bytes());
        b[40..48].copy_from_slice(&self.replaces_from.to_le_bytes());
        b[48..50].copy_from_slice(&self.max_key_len.to_le_bytes());
        let crc = crc32c(&[&b[..52]]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks the footer found at offset `footer_at` of its file; `Err` says what is
    /// wrong with it.
    pub fn decode(b: &[u8; FOOTER_LEN], footer_at: u64) -> Result<Self, Corruption> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u32_at(i) as u64) | ((u32_at(i + 4) as u64) << 32);
        if b[0..8] != MAGIC {
            return Err(Corruption::BadMagic);
        }
        let (expected, got) = (u32_at(52), crc32c(&[&b[..52]]));
        if expected != got {
            return Err(Corruption::ChecksumMismatch { expected, got });
        }
        let version = u16_at(8);
        let filter_len = u32_at(28);
        let known = match version {
            1 => filter_len == 0,
            VERSION => filter_len.is_multiple_of(BLOCK_LEN as u32),
            _ => false,
        };
        if !known || u16_at(10) != 0 || u16_at(50) != 0 {
            return Err(Corruption::UnsupportedVersion(version));
        }
        Ok(Footer {
            version,
            entry_count: u32_at(12),
            index_offset: u64_at(16),
            index_crc: u32_at(24),
            wal_covered: u64_at(32),
            replaces_from: u64_at(40),
            max_key_len: u16_at(48),
            filter_len,
            filter_offset: footer_at.checked_sub(filter_len as u64).ok_or(Corruption::BadLayout)?,
        })
    }

    /// Where the fence section starts (= where the index ends).
    pub fn fence_offset(&self) -> u64 {
        self.index_offset.saturating_add(self.entry_count as u64 * 4)
    }

    /// Fences in the table: one per [`FENCE_STRIDE`] entries (none in version 1).
    pub fn fence_count(&self) -> u32 {
        if self.version >= 2 {
            fence_count(self.entry_count)
        } else {
            0
        }
    }
}

/// Fences a table of `entries` entries has.
pub fn fence_count(entries: u32) -> u32 {
    entries.div_ceil(FENCE_STRIDE)
}

/// Opens a table of `file_len` bytes: reads and checks the footer and the whole index.
pub fn open<IO: Read + Seek>(io: &mut IO, file_len: u64) -> Result<Footer, ReadError<IO::Error>> {
    let footer_at = file_len
        .checked_sub(FOOTER_LEN as u64)
        .ok_or(ReadError::Corrupt { offset: 0, kind: Corruption::Truncated })?;
    let mut fb = [0u8; FOOTER_LEN];
    read_exact_at(io, footer_at, &mut fb)?;
    let footer =
        Footer::decode(&fb, footer_at).map_err(|kind| ReadError::Corrupt { offset: footer_at, kind })?;
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
        let n = ((index_end - pos) as usize).min(chunk.len());
        read_exact_at(io, pos, &mut chunk[..n])?;
        crc.update(&chunk[..n]);
        pos += n as u64;
    }
    let got = crc.finish();
    if got != footer.index_crc {
        return Err(ReadError::Corrupt {
            offset: footer.index_offset,
            kind: Corruption::ChecksumMismatch { expected: footer.index_crc, got },
        });
    }
    Ok(footer)
}

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
/// records they point to, copying a found value into `out`. Does not consult the filter: see
/// [`may_contain`] and [`lookup`].
pub fn get<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
    out: &mut [u8],
) -> Result<Lookup, ReadError<IO::Error>> {
    let Some((mut lo, mut hi)) = fence_range(io, footer, key)? else { return Ok(Lookup::Absent) };
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let offset = read_u32_at(io, footer.index_offset + mid as u64 * 4)? as u64;
        let probe = scan(io, offset, footer.index_offset, key, out)?;
        match probe.ord {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => {
                return Ok(Lookup::Found {
                    value_len: probe.value_len,
                    tombstone: probe.header.tombstone,
                    expires_at: probe.header.expires_at,
                })
            }
        }
    }
    Ok(Lookup::Absent)
}

/// A point lookup as `Db::get` makes it in one table: the filter, then the binary search.
pub fn lookup<IO: Read + Seek>(
    io: &mut IO,
    footer: &Footer,
    key: &[u8],
    out: &mut [u8],
) -> Result<Lookup, ReadError<IO::Error>> {
    if !may_contain(io, footer, filter::key_hash(key))? {
        return Ok(Lookup::Absent);
    }
    get(io, footer, key, out)
}

/// Bytes of a record examined per read while probing.
const SCAN_CHUNK: usize = 128;

/// The run of entries `[lo, hi)` that holds `key` if the table does, from the fences; `None`
/// when `key` sorts before the table's first key. Version-1 tables: every entry.
fn fence_range<IO: Read + Seek>(
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
    let mut buf = [0u8; 2 + SCAN_CHUNK];
    let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    read_exact_at(io, at, &mut buf[..n])?;
    let len = u16::from_le_bytes([buf[0], buf[1]]) as usize;
    if len == 0 || (2 + len) as u64 > room {
        return Err(ReadError::Corrupt { offset: at, kind: Corruption::BadLayout });
    }
    let mut done = (n - 2).min(len);
    let mut ord = compare_piece(&buf[2..2 + done], key, 0);
    while ord == Ordering::Equal && done < len {
        let m = (len - done).min(SCAN_CHUNK);
        read_exact_at(io, at + (2 + done) as u64, &mut buf[..m])?;
        ord = compare_piece(&buf[..m], key, done);
        done += m;
    }
    Ok(if ord == Ordering::Equal && len < key.len() { Ordering::Less } else { ord })
}

/// Compares `stored`, the bytes at position `pos` of a stored key, with the same positions of `key`.
fn compare_piece(stored: &[u8], key: &[u8], pos: usize) -> Ordering {
    let wanted = key.get(pos..).unwrap_or(&[]);
    let m = stored.len().min(wanted.len());
    match stored[..m].cmp(&wanted[..m]) {
        Ordering::Equal if stored.len() > wanted.len() => Ordering::Greater,
        o => o,
    }
}

struct Probe {
    ord: Ordering,
    header: EntryHeader,
    value_len: usize,
}

/// Streams the record at `offset` through its checksum while comparing its key with `key`;
/// when the keys are equal and the value fits, copies the value into `out`.
fn scan<IO: Read + Seek>(
    io: &mut IO,
    offset: u64,
    data_end: u64,
    key: &[u8],
    out: &mut [u8],
) -> Result<Probe, ReadError<IO::Error>> {
    let bad = |kind| ReadError::Corrupt { offset, kind };
    // One read fetches the header and, for typical entries, the whole payload.
    let mut first = [0u8; HEADER_LEN + SCAN_CHUNK];
    let got = read_at(io, offset, &mut first)?;
    let hb: [u8; HEADER_LEN] = match first.get(..HEADER_LEN) {
        Some(h) if got >= HEADER_LEN => h.try_into().map_err(|_| bad(Corruption::Truncated))?,
        _ => return Err(bad(Corruption::Truncated)),
    };
    let rh = RecordHeader::decode(hb);
    let len = rh.payload_len().map_err(bad)?;
    if offset + (HEADER_LEN + len) as u64 > data_end {
        return Err(bad(Corruption::BadLayout));
    }
    let mut crc = Checksum::new();
    let mut chunk = [0u8; SCAN_CHUNK];
    let mut header: Option<EntryHeader> = None;
    let (mut key_start, mut key_end) = (0usize, 0usize);
    let mut ord = Ordering::Equal;
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(chunk.len());
        if done == 0 && got >= HEADER_LEN + n {
            chunk[..n].copy_from_slice(&first[HEADER_LEN..HEADER_LEN + n]);
        } else {
            read_exact_at(io, offset + (HEADER_LEN + done) as u64, &mut chunk[..n])?;
        }
        let bytes = &chunk[..n];
        crc.update(bytes);
        if done == 0 {
            // The chunk is at least ENTRY_MAX_OVERHEAD long unless the payload is shorter.
            debug_assert!(chunk.len() >= ENTRY_MAX_OVERHEAD);
            if let Ok(h) = EntryHeader::decode(bytes) {
                key_start = h.encoded_len();
                key_end = key_start + h.key_len;
                header = Some(h);
            }
        }
        if header.is_some() {
            // Compare the part of the stored key inside this chunk.
            let (a, b) = (key_start.max(done), key_end.min(done + n));
            if a < b && ord == Ordering::Equal {
                let stored = &bytes[a - done..b - done];
                let (ka, kb) = ((a - key_start).min(key.len()), (b - key_start).min(key.len()));
                let wanted = &key[ka..kb];
                ord = stored[..wanted.len()].cmp(wanted);
                if ord == Ordering::Equal && wanted.len() < stored.len() {
                    ord = Ordering::Greater; // the stored key is longer than the one sought
                }
            }
            // Copy the part of the value inside this chunk, once the whole key matched.
            let (a, b) = (key_end.max(done), done + n);
            let value_len = len.saturating_sub(key_end);
            if a < b && ord == Ordering::Equal && key_end - key_start == key.len() && value_len <= out.len() {
                out[a - key_end..b - key_end].copy_from_slice(&bytes[a - done..b - done]);
            }
        }
        done += n;
    }
    let got = crc.finish();
    if got != rh.crc {
        return Err(bad(Corruption::ChecksumMismatch { expected: rh.crc, got }));
    }
    let header = header.ok_or(bad(Corruption::BadEntry))?;
    if key_end > len {
        return Err(bad(Corruption::BadEntry));
    }
    let value_len = len - key_end;
    if header.tombstone && value_len != 0 {
        return Err(bad(Corruption::BadEntry));
    }
    if ord == Ordering::Equal && key_end - key_start < key.len() {
        ord = Ordering::Less; // the stored key is a proper prefix of the one sought
    }
    Ok(Probe { ord, header, value_len })
}

/// Writes a table in sequential passes over the same sorted payloads: records, index, fence key
/// lengths, fence keys, then filter and footer.
///
/// ```ignore
/// let mut b = SsTableBuilder::new();
/// for p in entries() { b.add_record(&mut io, p)?; }
/// for p in entries() { b.add_index(&mut io, p)?; }
/// for k in fence_keys() { b.add_fence_len(&mut io, k.len())?; }   // every FENCE_STRIDE-th key
/// for k in fence_keys() { b.add_fence_key(&mut io, k)?; }
/// b.finish(&mut io, filter_bytes, wal_covered, replaces_from)?;
/// ```
/// The index and fences are recomputed in their own passes, so the builder needs no memory per
/// entry and every write is sequential.
#[derive(Debug, Default)]
pub struct SsTableBuilder {
    data_len: u64,
    count: u32,
    index_pos: u64,
    index_count: u32,
    max_key_len: u16,
    crc: IndexCrc,
    fence_lens: u32,
    fence_keys_len: u64,
    fence_keys: u32,
    fence_keys_pos: u64,
}

#[derive(Default)]
struct IndexCrc(Option<Checksum>);

impl core::fmt::Debug for IndexCrc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IndexCrc")
    }
}

impl SsTableBuilder {
    /// A builder for an empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Pass 1: appends one entry record.
    pub fn add_record<IO: Write + Seek>(&mut self, io: &mut IO, payload: &[u8]) -> Result<(), IO::Error> {
        let h = RecordHeader::for_payload(&[payload]).encode();
        self.add_raw(io, &h)?;
        self.add_raw(io, payload)?;
        self.end_record(EntryHeader::decode(payload).map_or(0, |h| h.key_len));
        Ok(())
    }

    /// Pass 1, for records copied in pieces: appends bytes of the current record.
    pub fn add_raw<IO: Write + Seek>(&mut self, io: &mut IO, bytes: &[u8]) -> Result<(), IO::Error> {
        self.data_len = write_at(io, self.data_len, &[bytes])?;
        Ok(())
    }

    /// Pass 1, for records copied in pieces: the current record, whose key is `key_len` bytes
    /// long, is complete.
    pub fn end_record(&mut self, key_len: usize) {
        self.count += 1;
        self.max_key_len = self.max_key_len.max(u16::try_from(key_len).unwrap_or(u16::MAX));
    }

    /// Pass 2: appends the index entry for the next record, in the same order as pass 1.
    pub fn add_index<IO: Write + Seek>(&mut self, io: &mut IO, payload: &[u8]) -> Result<(), IO::Error> {
        self.add_index_len(io, payload.len())
    }

    /// Pass 2, knowing only the next record's payload length.
    pub fn add_index_len<IO: Write + Seek>(
        &mut self,
        io: &mut IO,
        payload_len: usize,
    ) -> Result<(), IO::Error> {
        let off = u32::try_from(self.index_pos).unwrap_or(u32::MAX).to_le_bytes();
        write_at(io, self.data_len + self.index_count as u64 * 4, &[&off])?;
        self.crc_update(&off);
        self.index_pos += (HEADER_LEN + payload_len) as u64;
        self.index_count += 1;
        Ok(())
    }

    /// Bytes of data written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    fn crc_update(&mut self, bytes: &[u8]) {
        self.crc.0.get_or_insert_with(Checksum::new).update(bytes);
    }

    /// Pass 3: the length of the next fence key (the key of entries 0, [`FENCE_STRIDE`], ...).
    pub fn add_fence_len<IO: Write + Seek>(&mut self, io: &mut IO, key_len: usize) -> Result<(), IO::Error> {
        let base = self.data_len + self.count as u64 * 4;
        let off = u32::try_from(self.fence_keys_len).unwrap_or(u32::MAX).to_le_bytes();
        write_at(io, base + self.fence_lens as u64 * 4, &[&off])?;
        self.crc_update(&off);
        self.fence_lens += 1;
        self.fence_keys_len += 2 + key_len as u64;
        Ok(())
    }

    /// Pass 4: the next fence key, in the same order as pass 3.
    pub fn add_fence_key<IO: Write + Seek>(&mut self, io: &mut IO, key: &[u8]) -> Result<(), IO::Error> {
        let base = self.data_len + self.count as u64 * 4 + self.fence_lens as u64 * 4;
        let len = u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes();
        write_at(io, base + self.fence_keys_pos, &[&len, key])?;
        self.crc_update(&len);
        self.crc_update(key);
        self.fence_keys += 1;
        self.fence_keys_pos += 2 + key.len() as u64;
        Ok(())
    }

    /// True when every record has its index entry and every fence its length and its key, the
    /// keys' lengths adding up to those given in pass 3: the table is ready for [`Self::finish`].
    pub fn fences_complete(&self) -> bool {
        self.index_count == self.count
            && self.fence_lens == fence_count(self.count)
            && self.fence_keys == self.fence_lens
            && self.fence_keys_pos == self.fence_keys_len
    }

    /// Last pass: writes `filter` (a sealed [`filter::FilterBuilder`]'s bytes, or empty for none)
    /// and the footer. The caller then syncs the file.
    pub fn finish<IO: Write + Seek>(
        mut self,
        io: &mut IO,
        filter: &[u8],
        wal_covered: u64,
        replaces_from: u64,
    ) -> Result<Footer, IO::Error> {
        let index_crc = self.crc.0.take().map_or(crc32c(&[]), Checksum::finish);
        // A filter whose length the footer cannot state, or not made of whole blocks, is left out.
        debug_assert!(self.fences_complete(), "index and fences written in full");
        let whole = filter.len().is_multiple_of(BLOCK_LEN) && u32::try_from(filter.len()).is_ok();
        let filter = if whole && self.count > 0 { filter } else { &[] };
        let filter_offset =
            self.data_len + self.count as u64 * 4 + self.fence_lens as u64 * 4 + self.fence_keys_pos;
        let footer = Footer {
            version: VERSION,
            entry_count: self.count,
            index_offset: self.data_len,
            index_crc,
            wal_covered,
            replaces_from,
            max_key_len: self.max_key_len,
            filter_len: filter.len() as u32,
            filter_offset,
        };
        write_at(io, filter_offset, &[filter, &footer.encode()])?;
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryHeader;
    use crate::mem_storage::MemStorage;
    use crate::storage::Storage;

    type Mem = MemStorage<Vec<u8>, 2>;

    fn payload(key: &[u8], value: &[u8], tombstone: bool) -> Vec<u8> {
        let h = EntryHeader { tombstone, key_len: key.len(), expires_at: None };
        let (hb, n) = h.encode();
        [&hb[..n], key, value].concat()
    }

    /// Writes a table of `(key, value)` (value `None` = tombstone), keys ascending.
    fn build(entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> (Mem, crate::mem_storage::MemFile, Footer) {
        let mut s = Mem::new(vec![0; 1 << 20]);
        let mut f = s.create("t.sst").unwrap();
        let payloads: Vec<Vec<u8>> =
            entries.iter().map(|(k, v)| payload(k, v.as_deref().unwrap_or(&[]), v.is_none())).collect();
        let mut b = SsTableBuilder::new();
        let mut io = s.io(&mut f);
        for p in &payloads {
            b.add_record(&mut io, p).unwrap();
        }
        for p in &payloads {
            b.add_index(&mut io, p).unwrap();
        }
        for (k, _) in entries.iter().step_by(FENCE_STRIDE as usize) {
            b.add_fence_len(&mut io, k.len()).unwrap();
        }
        for (k, _) in entries.iter().step_by(FENCE_STRIDE as usize) {
            b.add_fence_key(&mut io, k).unwrap();
        }
        let mut filter_mem = vec![0u8; 4096];
        let filter = match filter::FilterBuilder::new(&mut filter_mem, entries.len()) {
            Some(mut fb) => {
                entries.iter().for_each(|(k, _)| fb.add(filter::key_hash(k)));
                fb.finish()
            }
            None => &[],
        };
        let footer = b.finish(&mut io, filter, 7, 3).unwrap();
        (s, f, footer)
    }

    fn entries(n: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..n)
            .map(|i| {
                let k = format!("key{:05}", i * 2).into_bytes();
                let v = if i % 7 == 3 {
                    None
                } else {
                    Some(format!("value-{i}").repeat(1 + i as usize % 9).into_bytes())
                };
                (k, v)
            })
            .collect()
    }

    #[test]
    fn every_key_is_found_and_gaps_are_absent() {
        let es = entries(300);
        let (mut s, mut f, footer) = build(&es);
        let len = s.len(&mut f).unwrap();
        assert_eq!(open(&mut s.io(&mut f), len).unwrap(), footer);
        assert_eq!((footer.entry_count, footer.wal_covered, footer.replaces_from), (300, 7, 3));
        let mut out = [0u8; 256];
        for (i, (k, v)) in es.iter().enumerate() {
            let got = lookup(&mut s.io(&mut f), &footer, k, &mut out).unwrap();
            match (got, v) {
                (Lookup::Found { value_len, tombstone: false, .. }, Some(v)) => {
                    assert_eq!(&out[..value_len], &v[..])
                }
                (Lookup::Found { tombstone: true, value_len: 0, .. }, None) => {}
                other => panic!("entry {i}: {other:?}"),
            }
            // Keys between and around stored ones are absent.
            let gap = format!("key{:05}", i * 2 + 1).into_bytes();
            assert_eq!(lookup(&mut s.io(&mut f), &footer, &gap, &mut out).unwrap(), Lookup::Absent);
        }
        for k in [&b"a"[..], b"key", b"key0", b"zzz", b"key00000\0"] {
            assert_eq!(lookup(&mut s.io(&mut f), &footer, k, &mut out).unwrap(), Lookup::Absent, "{k:?}");
        }
    }

    #[test]
    fn version_1_tables_without_fences_or_filter_are_still_read() {
        let es = entries(100);
        let mut s = Mem::new(vec![0; 1 << 20]);
        let mut f = s.create("t.sst").unwrap();
        let mut io = s.io(&mut f);
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (k, v) in &es {
            let p = payload(k, v.as_deref().unwrap_or(&[]), v.is_none());
            index.extend_from_slice(&(data.len() as u32).to_le_bytes());
            data.extend_from_slice(&RecordHeader::for_payload(&[&p]).encode());
            data.extend_from_slice(&p);
        }
        let v1 = Footer {
            version: 1,
            entry_count: es.len() as u32,
            index_offset: data.len() as u64,
            index_crc: crc32c(&[&index]),
            wal_covered: 1,
            replaces_from: 1,
            max_key_len: 8,
            filter_len: 0,
            filter_offset: (data.len() + index.len()) as u64,
        };
        write_at(&mut io, 0, &[&data, &index, &v1.encode()]).unwrap();
        let len = (data.len() + index.len() + FOOTER_LEN) as u64;
        let footer = open(&mut io, len).unwrap();
        assert_eq!((footer, footer.fence_count()), (v1, 0));
        let mut out = [0u8; 256];
        for (k, v) in &es {
            let got = lookup(&mut io, &footer, k, &mut out).unwrap();
            match (got, v) {
                (Lookup::Found { value_len, tombstone: false, .. }, Some(v)) => {
                    assert_eq!(&out[..value_len], &v[..])
                }
                (Lookup::Found { tombstone: true, .. }, None) => {}
                other => panic!("{k:?}: {other:?}"),
            }
        }
        assert_eq!(lookup(&mut io, &footer, b"key00001", &mut out).unwrap(), Lookup::Absent);
    }

    #[test]
    fn a_builder_whose_fence_passes_disagree_is_not_complete() {
        let p = payload(b"key", b"value", false);
        for (fence_key, complete) in [(&b"key"[..], true), (b"keyX", false), (b"ke", false)] {
            let mut s = Mem::new(vec![0; 1 << 16]);
            let mut f = s.create("t.sst").unwrap();
            let mut io = s.io(&mut f);
            let mut b = SsTableBuilder::new();
            b.add_record(&mut io, &p).unwrap();
            assert!(!b.fences_complete(), "no index yet");
            b.add_index(&mut io, &p).unwrap();
            b.add_fence_len(&mut io, 3).unwrap();
            assert!(!b.fences_complete(), "no fence key yet");
            b.add_fence_key(&mut io, fence_key).unwrap();
            assert_eq!(b.fences_complete(), complete, "pass 3 announced 3 bytes, pass 4 wrote {fence_key:?}");
        }
    }

    #[test]
    fn value_larger_than_buffer_reports_its_length_without_copying() {
        let es = vec![(b"k".to_vec(), Some(vec![9u8; 100]))];
        let (mut s, mut f, footer) = build(&es);
        let mut out = [0u8; 10];
        let got = lookup(&mut s.io(&mut f), &footer, b"k", &mut out).unwrap();
        assert!(matches!(got, Lookup::Found { value_len: 100, .. }));
        assert_eq!(out, [0u8; 10]);
    }

    #[test]
    fn every_flipped_byte_gives_an_error_or_the_right_answer_never_a_wrong_value() {
        // Three fences and a filter block, so flips land in every section.
        let es = entries(40);
        let (s, f, _) = build(&es);
        let len = {
            let mut s = s;
            let mut f = f;
            let len = s.len(&mut f).unwrap() as usize;
            let mut bytes = vec![0u8; len];
            crate::io::read_exact_at(&mut s.io(&mut f), 0, &mut bytes).unwrap();
            (bytes, len)
        };
        let (bytes, len) = len;
        let mut out = [0u8; 256];
        for pos in 0..len {
            for flip in [0x01u8, 0x80] {
                let mut m = Mem::new(vec![0; 1 << 16]);
                let mut g = m.create("t.sst").unwrap();
                let mut copy = bytes.clone();
                copy[pos] ^= flip;
                embedded_io::Write::write_all(&mut m.io(&mut g), &copy).unwrap();
                let footer = match open(&mut m.io(&mut g), len as u64) {
                    Ok(f) => f,
                    Err(ReadError::Corrupt { .. }) => continue,
                    Err(e) => panic!("{e:?}"),
                };
                for (k, v) in &es {
                    match lookup(&mut m.io(&mut g), &footer, k, &mut out) {
                        Err(ReadError::Corrupt { .. }) => {}
                        Ok(Lookup::Found { value_len, tombstone, .. }) => match v {
                            Some(v) => {
                                assert!(!tombstone && out[..value_len] == v[..], "wrong value, flip at {pos}")
                            }
                            None => assert!(tombstone, "flip at {pos}"),
                        },
                        other => panic!("flip at {pos} for {k:?}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_tiny_files_are_corruption_not_panics() {
        let es = entries(5);
        let (mut s, mut f, _) = build(&es);
        let len = s.len(&mut f).unwrap();
        for cut in [0, 1, 10, FOOTER_LEN as u64 - 1, FOOTER_LEN as u64, len - 1] {
            s.truncate(&mut f, cut).unwrap();
            assert!(matches!(open(&mut s.io(&mut f), cut), Err(ReadError::Corrupt { .. })), "cut {cut}");
        }
    }

    #[test]
    fn footer_rejects_unknown_version_and_reserved_bits() {
        let f = Footer {
            version: VERSION,
            entry_count: 1,
            index_offset: 2,
            index_crc: 3,
            wal_covered: 4,
            replaces_from: 5,
            max_key_len: 6,
            filter_len: 64,
            filter_offset: 1000 - 64,
        };
        let b = f.encode();
        assert_eq!(Footer::decode(&b, 1000), Ok(f));
        let patched = |at: usize, bytes: &[u8]| {
            let mut c = b;
            c[at..at + bytes.len()].copy_from_slice(bytes);
            let crc = crc32c(&[&c[..52]]);
            c[52..56].copy_from_slice(&crc.to_le_bytes());
            Footer::decode(&c, 1000)
        };
        assert_eq!(patched(8, &3u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(3)));
        // Version 1 tables have no filter; version 2 filters are whole 64-byte blocks.
        assert_eq!(patched(8, &1u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(1)));
        assert_eq!(patched(28, &65u32.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        assert_eq!(patched(10, &1u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        let v1 = Footer { version: 1, filter_len: 0, filter_offset: 1000, ..f };
        let b1 = v1.encode();
        assert_eq!(Footer::decode(&b1, 1000), Ok(v1), "a version 1 footer (no filter) is still read");
        let mut magic = b;
        magic[0] ^= 1;
        assert_eq!(Footer::decode(&magic, 1000), Err(Corruption::BadMagic));
    }
}
