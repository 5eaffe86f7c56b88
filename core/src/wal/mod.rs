//! Write-ahead log: every write is appended here as a framed record before the MemTable sees it.
//!
//! This folder owns the WAL: its format (here), the writer that appends to the current WAL and
//! syncs it by the policy ([`writer`]), and replay on open, which decides what a damaged record
//! is ([`replay`]).
//!
//! # Format (version 3)
//! ```text
//! 0      32                                  logical end                     file length
//! [header][ record | record | ... | record ][ 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ]
//!                                           the preallocated, unused tail
//!
//! header  = "MVWL" | u16 version = 3 | u16 0 | u64 predecessor id | u64 predecessor end
//!           | u32 crc | u32 0                   (crc: CRC-32C of the first 24 bytes)
//! record  = u32 len | u32 crc | payload           (crate::record framing; crc covers the payload)
//! payload = u32 watermark | entry or write batch  (crate::entry, crate::batch)
//! ```
//! The **watermark** is the WAL's durable end when the record was written: the end of the last
//! record a completed sync covered (the header's end when nothing was synced yet). A valid
//! record therefore proves that every byte below its watermark reached the disk. That is how
//! replay tells the two kinds of damage apart from what is on disk (see [`replay`]):
//! - damage *below* a later record's watermark hit bytes that were synced: corruption;
//! - damage at or above every later watermark hit bytes that were never synced: the unsynced
//!   tail of a relaxed durability mode, which a power cut may return as any mix of old, new,
//!   zero and torn pieces, in any order. The WAL is cut there, and what comes back is a prefix of
//!   the writes.
//!
//! The **predecessor** ([`Link`]) is the WAL that was current when this one was created by a
//! rotation, and the logical end of its records then (id 0: none, a WAL started on open).
//! Rotation does not sync the predecessor (that would put a sync of up to a MemTable of records
//! on the path of the write that fills the MemTable); instead, the first sync of the new WAL
//! syncs the predecessor first ([`writer`]). So a new WAL none of whose records shows a sync
//! (no watermark past its header) may follow a predecessor whose tail a power cut took; replay
//! then cuts the predecessor like a newest WAL and, when it ends before the end the link names,
//! drops the new WAL and every later one: their writes followed lost ones, and none of them had
//! been synced. Once a record of the new WAL shows a sync, the predecessor is held to be whole.
//!
//! Format 2 has an 8-byte header (`"MVWL" | u16 2 | u16 0`) and no predecessor: the rotation
//! that ended a format-2 WAL synced it whole. It is still replayed and appended to.
//! Format 1 (before the watermark) has no header (a file whose first four bytes are not `MVWL`):
//! records of `entry or batch` payloads. It is still replayed, by the old rule (any valid record
//! after damage makes the damage corruption); the engine never appends to it: a format-1 WAL that
//! holds records is flushed to an SSTable on open, and an empty one is given a header.
//! Files are named `<id>.wal` (16 hex digits) and replayed in id order.
//!
//! # Preallocation
//! The writer extends the file with zeros ahead of itself, in chunks of [`preallocation_chunk`]
//! bytes ([`crate::Storage::preallocate`]), so that appending a record and syncing it does not
//! change the file's size: the sync then has no size to persist (on ext4, no journal commit).
//! The engine keeps the logical end itself and never appends at `Storage::len`. Zeros after the
//! last record are the WAL's clean end: a record header is never zero (its length is at least 1).
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod replay;
pub mod spare;
pub mod writer;

pub use replay::{RecordHead, Replayed, WalReader};
pub use spare::Spare;
pub use writer::{OldWal, SyncTarget, Wal, Wals};

use embedded_io::{Seek, Write};

use crate::batch;
use crate::entry;
use crate::error::Corruption;
use crate::io::write_at;
use crate::record::{crc32c, Checksum, RecordHeader, HEADER_LEN};

/// The first four bytes of a WAL of format 2 and later.
pub const MAGIC: [u8; 4] = *b"MVWL";
/// The WAL format this build writes.
pub const VERSION: u16 = 3;
/// Bytes of the file header this build writes (format 3).
pub const FILE_HEADER_LEN: u64 = 32;
/// Bytes of a format-2 file header.
pub const V2_HEADER_LEN: u64 = 8;

/// Where the records of a WAL of format `version` start: after its header.
pub fn header_len(version: u16) -> u64 {
    match version {
        0 | 1 => 0,
        2 => V2_HEADER_LEN,
        _ => FILE_HEADER_LEN,
    }
}

/// A WAL's predecessor: the WAL that was current when a rotation created it, and the logical
/// end of that WAL's records then (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The predecessor's id.
    pub id: u64,
    /// Its logical end (header included) when this WAL was created.
    pub end: u64,
}
/// Bytes of the watermark at the front of every record's payload (format 2): a `u32`, so a WAL
/// past 4 GiB stamps `u32::MAX` (claiming less was synced than was: weaker evidence, never false).
pub const WATERMARK_LEN: usize = 4;

/// The watermark a record carries when the WAL's durable end is `durable`.
pub fn watermark(durable: u64) -> [u8; WATERMARK_LEN] {
    u32::try_from(durable).unwrap_or(u32::MAX).to_le_bytes()
}

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

/// The chunk a [`crate::Config::wal_preallocation`] setting gives, for MemTables of
/// `memtable_bytes`: 0 means none.
pub fn chunk_for(setting: Option<u64>, memtable_bytes: usize) -> u64 {
    match setting {
        None => preallocation_chunk(memtable_bytes),
        Some(n) => n.div_ceil(PREALLOCATION_GRANULE).saturating_mul(PREALLOCATION_GRANULE),
    }
}

/// Where to extend a WAL to when a record must end at `needed`: the next multiple of `chunk`
/// at or after `needed`.
pub fn preallocation_end(needed: u64, chunk: u64) -> u64 {
    let chunk = chunk.max(1);
    needed.div_ceil(chunk).saturating_mul(chunk)
}

/// The file header of a format-3 WAL following `link` (none: a WAL started on open).
pub fn file_header(link: Option<Link>) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    let link = link.unwrap_or(Link { id: 0, end: 0 });
    let fields: [&[u8]; 5] =
        [&MAGIC, &VERSION.to_le_bytes(), &[0, 0], &link.id.to_le_bytes(), &link.end.to_le_bytes()];
    let mut at = 0;
    for f in fields {
        if let Some(dst) = h.get_mut(at..at + f.len()) {
            dst.copy_from_slice(f);
        }
        at += f.len();
    }
    let crc = crc32c(&[h.get(..at).unwrap_or(&[])]);
    if let Some(dst) = h.get_mut(at..at + 4) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    h
}

/// Decodes a format-3 header: `Ok(link)` (`None`: no predecessor), or `Err(BadLayout)` when its
/// checksum or reserved bytes are wrong (a header a power cut tore while it was written, or
/// damage).
pub fn decode_header(h: &[u8; FILE_HEADER_LEN as usize]) -> Result<Option<Link>, Corruption> {
    let u64_at = |at: usize| h.get(at..at + 8).and_then(|b| b.first_chunk()).map(|b| u64::from_le_bytes(*b));
    let u32_at = |at: usize| h.get(at..at + 4).and_then(|b| b.first_chunk()).map(|b| u32::from_le_bytes(*b));
    let crc = crc32c(&[h.get(..24).unwrap_or(&[])]);
    if u32_at(24) != Some(crc) || u32_at(28) != Some(0) || h.get(6..8) != Some(&[0, 0]) {
        return Err(Corruption::BadLayout);
    }
    match (u64_at(8), u64_at(16)) {
        (Some(0), _) => Ok(None),
        (Some(id), Some(end)) => Ok(Some(Link { id, end })),
        _ => Err(Corruption::BadLayout),
    }
}

/// Appends one record whose payload is the concatenation of `parts` at `end`, and hands it to
/// the operating system (`flush`), so that it survives the death of the process; returns the
/// new end. Durability against power loss needs [`crate::Storage::sync`] on top.
pub fn append<IO: Write + Seek>(io: &mut IO, end: u64, parts: &[&[u8]]) -> Result<u64, IO::Error> {
    append_with_prefix(io, end, &[], parts)
}

/// [`append`] of a payload made of `prefix` (a format-2 record's watermark) and then `parts`.
pub fn append_with_prefix<IO: Write + Seek>(
    io: &mut IO,
    end: u64,
    prefix: &[u8],
    parts: &[&[u8]],
) -> Result<u64, IO::Error> {
    let len = prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    // A small record is assembled whole: one checksum pass and one write.
    let mut small = [0u8; SMALL_RECORD];
    if let Some(record) = small.get_mut(..HEADER_LEN + len) {
        let (header, payload) = record.split_at_mut(HEADER_LEN);
        let mut rest = &mut *payload;
        for p in core::iter::once(&prefix).chain(parts) {
            let Some((dst, tail)) = rest.split_at_mut_checked(p.len()) else { break };
            dst.copy_from_slice(p);
            rest = tail;
        }
        let crc = crc32c(&[payload]);
        header.copy_from_slice(&RecordHeader { len: u32::try_from(len).unwrap_or(u32::MAX), crc }.encode());
        let end = write_at(io, end, &[record])?;
        io.flush()?;
        return Ok(end);
    }
    let mut crc = Checksum::new();
    crc.update(prefix);
    for p in parts {
        crc.update(p);
    }
    let header = RecordHeader { len: u32::try_from(len).unwrap_or(u32::MAX), crc: crc.finish() }.encode();
    let end = write_at(io, end, &[&header, prefix])?;
    let end = write_at(io, end, parts)?;
    io.flush()?;
    Ok(end)
}

/// Records up to this many bytes (header included) are assembled on the stack and written whole.
const SMALL_RECORD: usize = 256;

/// Checks that a record's payload (after the watermark, in format 2) is an entry or a range
/// delete, or a write batch whose every item is one and whose count is right.
pub fn check_body(body: &[u8]) -> Result<(), Corruption> {
    match batch::declared_count(body) {
        None => entry::decode_item(body).map(|_| ()),
        Some(n) => {
            let mut seen = 0;
            for item in batch::Items::of(body) {
                entry::decode_item(item.map_err(|()| Corruption::BadEntry)?)?;
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

/// True when `head`, the first bytes of a record's body, can start an entry, a range delete or a
/// batch.
pub fn plausible_body(head: &[u8]) -> bool {
    entry::EntryHeader::decode(head).is_ok()
        || batch::declared_count(head).is_some()
        || head.first() == Some(&entry::KIND_DELETE_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryHeader;
    use crate::error::Error;
    use crate::io::{read_exact_at, write_at};
    use crate::mem_storage::{MemFile, MemStorage};
    use crate::options::SyncPolicy;
    use crate::record::{self, HEADER_LEN};
    use crate::storage::Storage;

    type Mem = MemStorage<Vec<u8>, 4>;

    fn entry(key: &[u8]) -> Vec<u8> {
        let (hb, hn) = EntryHeader { tombstone: false, key_len: key.len(), expires_at: None }.encode();
        [&hb[..hn], key, b"value"].concat()
    }

    /// A WAL (id 1) with one record per key; `sync_after` keys are synced, the rest are not.
    /// Returns the storage and where each record starts.
    fn wal_with(keys: &[&[u8]], sync_after: usize, chunk: u64) -> (Mem, Vec<u64>) {
        let mut s = Mem::new(vec![0; 1 << 16]);
        let mut wal = Wal::create(&mut s, 1, chunk, None).unwrap();
        let mut starts = vec![];
        for (i, k) in keys.iter().enumerate() {
            starts.push(FILE_HEADER_LEN + wal.record_bytes());
            wal.append(&mut s, &[&entry(k)], 1).unwrap();
            if i + 1 == sync_after {
                wal.sync(&mut s).unwrap();
            }
        }
        (s, starts)
    }

    /// Replays WAL 1: the keys of the records replayed, and how it ended.
    fn replay(s: &mut Mem, newest: bool) -> Result<(Vec<Vec<u8>>, Replayed), Error<crate::MemError>> {
        let mut r = WalReader::open(s, 1, newest, false)?;
        let mut keys = vec![];
        while let Some(head) = r.next(s)? {
            let mut body = vec![0u8; head.len];
            if !r.read(s, &mut body)? {
                break;
            }
            keys.push(crate::entry::decode(&body).unwrap().key.to_vec());
        }
        Ok((keys, r.finish().1))
    }

    fn file(s: &mut Mem) -> MemFile {
        s.open("0000000000000001.wal").unwrap()
    }

    fn overwrite(s: &mut Mem, at: u64, bytes: &[u8]) {
        let mut f = file(s);
        write_at(&mut s.io(&mut f), at, &[bytes]).unwrap();
    }

    #[test]
    fn append_writes_every_part_of_a_record() {
        // Four parts: the writer's watermark, an entry header, a key and a value.
        let mut s = Mem::new(vec![0; 4096]);
        let mut f = s.create("x").unwrap();
        let end = append(&mut s.io(&mut f), 0, &[b"wwww", b"h", b"key", b"value"]).unwrap();
        assert_eq!(end, (HEADER_LEN + 13) as u64);
        let mut bytes = vec![0u8; end as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut bytes).unwrap();
        let (payload, used) = record::decode(&bytes).unwrap();
        assert_eq!((payload, used), (&b"wwwwhkeyvalue"[..], end as usize));
    }

    #[test]
    fn appended_records_are_replayed_in_order_and_a_zero_tail_is_a_clean_end() {
        let (mut s, starts) = wal_with(&[b"a", b"bb", b"ccc"], 3, 0);
        // MemStorage does not preallocate: write the zeros an extension would have added.
        let records_end = read_all(&mut s).len() as u64;
        overwrite(&mut s, records_end, &[0u8; 4096]);
        let (keys, end) = replay(&mut s, true).unwrap();
        assert_eq!(keys, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(starts[0], FILE_HEADER_LEN);
        assert_eq!((end.len, end.file_len, end.torn_tail_cut), (records_end, records_end + 4096, false));
        let mut f = file(&mut s);
        assert_eq!(s.len(&mut f).unwrap(), records_end + 4096, "the zeros stay");
    }

    #[test]
    fn a_hole_in_the_unsynced_tail_cuts_the_wal_before_it() {
        // a, b synced; c, d not. A power cut kept d's bytes but not c's.
        let (mut s, starts) = wal_with(&[b"a", b"b", b"c", b"d"], 2, 0);
        let c_len = (starts[3] - starts[2]) as usize;
        overwrite(&mut s, starts[2], &vec![0u8; c_len]);
        let (keys, end) = replay(&mut s, true).unwrap();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()], "d must not survive without c");
        assert!(end.torn_tail_cut);
        assert_eq!(end.len, starts[2]);
        let mut f = file(&mut s);
        assert_eq!(s.len(&mut f).unwrap(), starts[2], "cut before new appends");
    }

    #[test]
    fn damage_below_a_later_records_watermark_is_corruption() {
        // a, b synced; c written after the sync carries b's end as its watermark.
        let (mut s, starts) = wal_with(&[b"a", b"b", b"c"], 2, 0);
        overwrite(&mut s, starts[1] + HEADER_LEN as u64 + 9, b"X");
        match replay(&mut s, true) {
            Err(Error::Corrupted { offset, kind, .. }) => {
                assert_eq!((offset, kind), (starts[1], crate::Corruption::WalRecordBeforeValidData))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damage_in_an_older_wal_is_corruption_even_without_valid_data_after_it() {
        let (mut s, starts) = wal_with(&[b"a", b"b"], 2, 0);
        overwrite(&mut s, starts[1] + 3, b"X");
        assert!(matches!(
            replay(&mut s, false),
            Err(Error::Corrupted { kind: crate::Corruption::Truncated, .. })
        ));
        let (keys, end) = replay(&mut s, true).unwrap();
        assert_eq!((keys.len(), end.torn_tail_cut), (1, true), "the newest WAL's torn tail is cut");
    }

    #[test]
    fn a_record_cut_off_at_a_full_disk_keeps_the_wal_unsynced_until_a_sync() {
        // Files of 512 bytes: the second record cannot fit and is cut off again.
        let mut s = Mem::new(vec![0; 4 * 512]);
        let mut wals = Wals::default();
        wals.set_current(Wal::create(&mut s, 1, 0, None).unwrap());
        wals.append(&mut s, &[&entry(b"a")], 1, SyncPolicy::EveryWrite).unwrap();
        assert_eq!(wals.sync_targets()[1].map(|t| t.writes), Some(1));
        let end = wals.current_ref().unwrap().end();
        assert_eq!(wals.append(&mut s, &[&[7u8; 600]], 1, SyncPolicy::Manual), Err(Error::Full));
        assert_eq!(wals.current_ref().unwrap().end(), end);
        // The cut is not durable: the rotation names the WAL, and the next sync covers it.
        wals.rotate(&mut s, 2).unwrap();
        assert_eq!(wals.sync_targets()[0].map(|t| t.wal), Some(1));
        let mut f = s.open("0000000000000002.wal").unwrap();
        let mut h = [0u8; FILE_HEADER_LEN as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut h).unwrap();
        assert_eq!(decode_header(&h), Ok(Some(Link { id: 1, end })));
        wals.sync(&mut s).unwrap();
        assert_eq!(wals.sync_targets()[0], None);
    }

    #[test]
    fn a_format_1_wal_without_header_is_replayed_by_the_old_rule() {
        let mut s = Mem::new(vec![0; 1 << 16]);
        let mut f = s.create("0000000000000001.wal").unwrap();
        let mut end = 0;
        let mut starts = vec![];
        for k in [&b"a"[..], b"b", b"c"] {
            starts.push(end);
            end = append(&mut s.io(&mut f), end, &[&entry(k)]).unwrap();
        }
        let (keys, r) = replay(&mut s, true).unwrap();
        assert_eq!((keys.len(), r.len), (3, end));
        // Damage followed by any valid record is corruption in format 1.
        overwrite(&mut s, starts[1] + HEADER_LEN as u64, b"\x09");
        assert!(matches!(
            replay(&mut s, true),
            Err(Error::Corrupted { kind: crate::Corruption::WalRecordBeforeValidData, .. })
        ));
    }

    #[test]
    fn torn_tails_are_cut_at_every_length() {
        let (mut s0, starts) = wal_with(&[b"a", b"bb", b"ccc"], 3, 0);
        let whole = read_all(&mut s0);
        let full = starts[2] + (HEADER_LEN + WATERMARK_LEN + entry(b"ccc").len()) as u64;
        assert_eq!(whole.len() as u64, full);
        for cut in starts[2] + 1..full {
            let mut s = Mem::new(vec![0; 1 << 16]);
            let mut src = whole.clone();
            let mut f = s.create("0000000000000001.wal").unwrap();
            src.truncate(cut as usize);
            write_at(&mut s.io(&mut f), 0, &[&src]).unwrap();
            let (keys, end) = replay(&mut s, true).unwrap();
            assert_eq!((keys.len(), end.len, end.torn_tail_cut), (2, starts[2], true), "cut at {cut}");
        }
    }

    fn read_all(s: &mut Mem) -> Vec<u8> {
        let mut f = file(s);
        let len = s.len(&mut f).unwrap() as usize;
        let mut b = vec![0u8; len];
        read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
        b
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
        assert_eq!(
            (chunk_for(Some(0), 4 << 20), chunk_for(Some(1), 1), chunk_for(None, 4 << 20)),
            (0, 4096, 1 << 20)
        );
    }
}
