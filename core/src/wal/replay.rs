//! Replay: reading a WAL back on open, and deciding what its end is.
//!
//! [`WalReader`] hands out the WAL's records one at a time; the caller (recovery) decides where
//! each goes. Replay stops at the first record that is not whole and valid, at offset `d`, and
//! this module decides what that is:
//! 1. Every byte from `d` to the end of the file is zero: the **clean end** (the unused,
//!    preallocated tail), in any WAL, newest or older.
//! 2. A valid record lies after `d` whose watermark is past `d` (format 1: any valid record after
//!    `d`, of either format: format-2 records in a file without a header mean a damaged header):
//!    the damaged bytes had been synced, so this is **corruption**
//!    ([`Corruption::WalRecordBeforeValidData`]), reported, nothing skipped.
//! 3. Otherwise, in a WAL whose tail may be unsynced, the damage is the **unsynced tail**:
//!    writes a power cut took in part, in any pattern. The file is cut to `d` (and synced)
//!    before anything is appended, so what survives is a prefix of the writes. Read-only, the
//!    WAL simply ends at `d`. A tail may be unsynced in the newest WAL, and in an older WAL
//!    when the WAL after it names it as its predecessor and shows no sync of its own
//!    ([`successor_of`]; the recovery then drops the later WALs if this one ends early).
//! 4. In any other older WAL, which a sync covered whole before the next one was synced (or, in
//!    format 2, before the next one was created), any other damage is corruption too
//!    (`Truncated` when nothing valid follows).
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use embedded_io::{Read, Seek};

use super::{
    check_body, decode_header, header_len, plausible_body, Link, FILE_HEADER_LEN, MAGIC, V2_HEADER_LEN,
    VERSION, WATERMARK_LEN,
};
use crate::batch;
use crate::error::{corrupted, Corruption, Error, ReadResultExt, ResultExt};
use crate::io::{read_at, read_exact_at};
use crate::log::event;
use crate::names::{file_name, FileKind};
use crate::record::{Checksum, RecordHeader, RecordReader, HEADER_LEN};
use crate::storage::Storage;

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

/// What replaying one WAL found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Where the records start: the header's length (0: no header, format 1 or a header a power
    /// cut tore before any record was appended).
    pub start: u64,
    /// The logical end: the length of the valid prefix (header included).
    pub len: u64,
    /// The file's length after replay (the logical end plus its zero tail, if it has one).
    pub file_len: u64,
    /// True when a damaged, unsynced tail was cut off.
    pub torn_tail_cut: bool,
}

/// The record replay is at: the length of its body (the entry or batch, without the watermark)
/// and how many keys it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Bytes of the entry or batch.
    pub len: usize,
    /// Keys it writes (1 for an entry).
    pub keys: usize,
}

/// Reads one WAL on open; see the [module documentation](self).
pub struct WalReader<F> {
    id: u64,
    file: F,
    /// The file's length.
    end: u64,
    /// Where the record replay is at starts.
    pos: u64,
    /// The format: 1 (no header), 2 or 3.
    version: u16,
    /// The predecessor a format-3 header names.
    link: Option<Link>,
    /// The record at `pos`, once [`WalReader::next`] found it.
    head: Option<(RecordHeader, usize)>,
    /// The last record [`WalReader::read`] accepted: where it starts, its header and length.
    last: Option<(u64, RecordHeader, usize)>,
    /// The WAL may end in an unsynced tail (see the [module documentation](self)).
    tail_may_be_unsynced: bool,
    read_only: bool,
    done: Option<Replayed>,
}

impl<F> WalReader<F> {
    /// Opens WAL `id` for replay; `tail_may_be_unsynced` says whether its tail may be unsynced
    /// (the newest WAL, or an older one its successor allows, [`successor_of`]), `read_only`
    /// that nothing may be changed.
    pub fn open<S: Storage<File = F>>(
        storage: &mut S,
        id: u64,
        tail_may_be_unsynced: bool,
        read_only: bool,
    ) -> Result<Self, S> {
        let mut file = storage.open(&file_name(FileKind::Wal, id)).storage()?;
        let end = storage.len(&mut file).storage()?;
        let mut h = [0u8; FILE_HEADER_LEN as usize];
        let got = read_at(&mut storage.io(&mut file), 0, &mut h).storage()?;
        let mut reader = WalReader {
            id,
            file,
            end,
            pos: 0,
            version: 1,
            link: None,
            head: None,
            last: None,
            tail_may_be_unsynced,
            read_only,
            done: None,
        };
        match read_header(&h, got) {
            Header::None => {}
            Header::Torn => {
                // A header cut short or torn: it was being written when the power went, and is
                // synced before any record is appended, so this WAL held no record, unless
                // records follow, which makes it corruption (see `end_at`).
                reader.end_at(storage, 0)?;
            }
            Header::Unsupported(version) => {
                return Err(corrupted(
                    file_name(FileKind::Wal, id),
                    0,
                    Corruption::UnsupportedVersion(version),
                ));
            }
            Header::Valid { version, link } => {
                reader.version = version;
                reader.link = link;
                reader.pos = header_len(version);
            }
        }
        Ok(reader)
    }

    /// The WAL's format: 1, 2 or 3.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The predecessor its header names (format 3).
    pub fn link(&self) -> Option<Link> {
        self.link
    }

    /// The WAL's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn prefix_len(&self) -> usize {
        if self.version >= 2 {
            WATERMARK_LEN
        } else {
            0
        }
    }

    /// The next record, or `None` at the end of the WAL (after deciding what the end is: this
    /// fails with [`Error::Corrupted`] when the end is damage that is not an unsynced tail).
    pub fn next<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<Option<RecordHead>, S> {
        if self.done.is_some() {
            return Ok(None);
        }
        let (pos, end, prefix) = (self.pos, self.end, self.prefix_len());
        if pos >= end {
            self.done = Some(Replayed {
                start: header_len(self.version),
                len: pos,
                file_len: end,
                torn_tail_cut: false,
            });
            return Ok(None);
        }
        let mut b = [0u8; HEADER_LEN + WATERMARK_LEN + 4];
        let got = read_at(&mut storage.io(&mut self.file), pos, &mut b).storage()?;
        let header = b.first_chunk().map(|h| RecordHeader::decode(*h));
        let plausible = match header.map(|h| h.payload_len()) {
            Some(Ok(len)) if got >= HEADER_LEN && len > prefix && pos + (HEADER_LEN + len) as u64 <= end => {
                Some(len)
            }
            _ => None,
        };
        let (Some(header), Some(len)) = (header, plausible) else {
            self.end_at(storage, pos)?;
            return Ok(None);
        };
        let body_head = b.get(HEADER_LEN + prefix..).unwrap_or(&[]);
        let body_len = len - prefix;
        let keys = batch::declared_count(body_head.get(..body_len.min(4)).unwrap_or(&[])).unwrap_or(1);
        self.head = Some((header, len));
        Ok(Some(RecordHead { len: body_len, keys }))
    }

    /// Reads the body of the record [`WalReader::next`] returned into `dst` (exactly its length)
    /// and checks it: its checksum, its watermark, and that it is an entry or a batch. `Ok(true)`:
    /// valid, and replay moves past it. `Ok(false)`: damaged, and replay ends there (as
    /// [`WalReader::next`] would at damage).
    pub fn read<S: Storage<File = F>>(&mut self, storage: &mut S, dst: &mut [u8]) -> Result<bool, S> {
        let Some((header, len)) = self.head.take() else { return Ok(false) };
        let pos = self.pos;
        let valid = self.read_record(storage, pos, header, dst)?;
        if valid {
            self.last = Some((pos, header, len));
            self.pos = pos + (HEADER_LEN + len) as u64;
        } else {
            self.end_at(storage, pos)?;
        }
        Ok(valid)
    }

    /// Reads the body of the record [`WalReader::read`] last accepted into `dst` again (after
    /// the MemTable it was read into had to be written out first).
    pub fn reread<S: Storage<File = F>>(&mut self, storage: &mut S, dst: &mut [u8]) -> Result<bool, S> {
        let Some((pos, header, _)) = self.last else { return Ok(false) };
        self.read_record(storage, pos, header, dst)
    }

    /// Reads the body of the record at `pos` into `dst` and checks it.
    fn read_record<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        pos: u64,
        header: RecordHeader,
        dst: &mut [u8],
    ) -> Result<bool, S> {
        let (id, version, prefix) = (self.id, self.version, self.prefix_len());
        let mut crc = Checksum::new();
        let mut valid = true;
        let body_at = pos + HEADER_LEN as u64;
        {
            let io = &mut storage.io(&mut self.file);
            if version >= 2 {
                let mut w = [0u8; WATERMARK_LEN];
                read_exact_at(io, body_at, &mut w).in_file(FileKind::Wal, id)?;
                crc.update(&w);
                valid &= u64::from(u32::from_le_bytes(w)) <= pos;
            }
            read_exact_at(io, body_at + prefix as u64, dst).in_file(FileKind::Wal, id)?;
        }
        crc.update(dst);
        Ok(valid && crc.finish() == header.crc && check_body(dst).is_ok())
    }

    /// True when the record [`WalReader::next`] returned is whole and valid, checked by
    /// streaming it (for a record too large to read into memory).
    pub fn current_is_valid<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<bool, S> {
        let version = self.version;
        Ok(record_proof(&mut storage.io(&mut self.file), self.pos, self.end, version).storage()?.is_some())
    }

    /// Ends replay at the record [`WalReader::next`] returned, as damage.
    pub fn reject<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<(), S> {
        self.head = None;
        self.end_at(storage, self.pos)
    }

    /// The file and what replay found; call after [`WalReader::next`] returned `None`.
    pub fn finish(self) -> (F, Replayed) {
        let start = header_len(self.version);
        let end =
            self.done.unwrap_or(Replayed { start, len: self.pos, file_len: self.end, torn_tail_cut: false });
        (self.file, end)
    }

    /// Decides what the damage (or end) at `d` is; see the module documentation.
    fn end_at<S: Storage<File = F>>(&mut self, storage: &mut S, d: u64) -> Result<(), S> {
        let (end, version) = (self.end, self.version);
        // A WAL ended in its header (d = 0) has none: appends start with a new one.
        let start = if d == 0 { 0 } else { header_len(version) };
        let proof = {
            let io = &mut storage.io(&mut self.file);
            if zeros_to_end(io, d, end).storage()? {
                self.done = Some(Replayed { start, len: d, file_len: end, torn_tail_cut: false });
                return Ok(());
            }
            let proof = proof_after(io, d, end, version).storage()?;
            if version >= 2 {
                proof
            } else {
                // Without a valid header the file is read as format 1; records of format 2 after
                // the damage mean the header itself was damaged: their watermarks (at least 8)
                // prove the damage was synced.
                proof.max(proof_after(io, d, end, VERSION).storage()?)
            }
        };
        if proof.is_some_and(|w| w > d) || (!self.tail_may_be_unsynced && proof.is_some()) {
            return Err(corrupted(
                file_name(FileKind::Wal, self.id),
                d,
                Corruption::WalRecordBeforeValidData,
            ));
        }
        if !self.tail_may_be_unsynced {
            return Err(corrupted(file_name(FileKind::Wal, self.id), d, Corruption::Truncated));
        }
        if self.read_only {
            self.done = Some(Replayed { start, len: d, file_len: self.end, torn_tail_cut: false });
            return Ok(());
        }
        storage.truncate(&mut self.file, d).storage()?;
        storage.sync(&mut self.file).storage()?;
        event!(
            "recovery: torn tail of WAL {=u64} cut at offset {=u64} (was {=u64} bytes)",
            self.id,
            d,
            self.end
        );
        self.done = Some(Replayed { start, len: d, file_len: d, torn_tail_cut: true });
        Ok(())
    }
}

/// True when every byte of `from..end` is zero (also when the range is empty): the unused,
/// preallocated tail of a WAL, which is its clean end.
pub fn zeros_to_end<IO: Read + Seek>(
    io: &mut IO,
    from: u64,
    end: u64,
) -> core::result::Result<bool, IO::Error> {
    let mut window = [0u8; 256];
    let mut pos = from;
    while pos < end {
        let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(window.len());
        let piece = window.get_mut(..want).unwrap_or(&mut []);
        let got = read_at(io, pos, piece)?;
        if piece.get(..got).unwrap_or(&[]).iter().any(|&b| b != 0) {
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

/// What the valid records after damage at `from` prove: the highest watermark among them
/// (format 2), or `u64::MAX` if there is any (format 1, where any valid record is proof);
/// `None` when no whole, valid record starts after `from`.
pub fn proof_after<IO: Read + Seek>(
    io: &mut IO,
    from: u64,
    end: u64,
    version: u16,
) -> core::result::Result<Option<u64>, IO::Error> {
    let mut proof: Option<u64> = None;
    let mut window = [0u8; 256];
    let mut base = from + 1;
    while base + HEADER_LEN as u64 <= end {
        let got = read_at(io, base, &mut window)?;
        if got < HEADER_LEN {
            break;
        }
        let last = got - HEADER_LEN;
        for i in 0..=last {
            let Some(h) = window.get(i..i + HEADER_LEN).and_then(|h| h.first_chunk()) else { continue };
            let header = RecordHeader::decode(*h);
            let q = base + i as u64;
            let Ok(len) = header.payload_len() else { continue };
            if q + (HEADER_LEN + len) as u64 > end {
                continue;
            }
            if let Some(w) = record_proof(io, q, end, version)? {
                if version < 2 {
                    return Ok(Some(u64::MAX));
                }
                proof = Some(proof.map_or(w, |p| p.max(w)));
            }
        }
        base += (last + 1) as u64;
    }
    Ok(proof)
}

/// The watermark of the record at `pos` if it is whole and valid (format 1: 0), `None` if not;
/// checked by streaming it through its checksum.
fn record_proof<IO: Read + Seek>(
    io: &mut IO,
    pos: u64,
    end: u64,
    version: u16,
) -> core::result::Result<Option<u64>, IO::Error> {
    let prefix = if version >= 2 { WATERMARK_LEN } else { 0 };
    // The cheap checks first: a plausible watermark and body head, before any checksum.
    let mut head = [0u8; HEADER_LEN + WATERMARK_LEN + 4];
    let got = read_at(io, pos, &mut head)?;
    let Some(body_head) = head.get(HEADER_LEN + prefix..got) else { return Ok(None) };
    let watermark = match head.get(HEADER_LEN..HEADER_LEN + WATERMARK_LEN).and_then(|w| w.first_chunk()) {
        Some(w) if version >= 2 => u64::from(u32::from_le_bytes(*w)),
        _ => 0,
    };
    let min_len = prefix + 3;
    let len = head.first_chunk().map(|h| RecordHeader::decode(*h)).and_then(|h| h.payload_len().ok());
    if len.is_none_or(|l| l < min_len)
        || (version >= 2 && !(V2_HEADER_LEN..=pos).contains(&watermark))
        || !plausible_body(body_head)
    {
        return Ok(None);
    }
    let reader = match RecordReader::start(io, pos, end) {
        Ok(r) => r,
        Err(crate::io::ReadError::Io(e)) => return Err(e),
        Err(crate::io::ReadError::Corrupt { .. }) => return Ok(None),
    };
    match reader.finish(io) {
        Ok(_) => Ok(Some(watermark)),
        Err(crate::io::ReadError::Io(e)) => Err(e),
        Err(crate::io::ReadError::Corrupt { .. }) => Ok(None),
    }
}

/// What the first bytes of a WAL say it is.
pub(super) enum Header {
    /// No header: format 1 (or a file whose header never reached the disk).
    None,
    /// A header that was being written when the power went.
    Torn,
    /// A format this build does not read.
    Unsupported(u16),
    /// A whole header of format 2 or 3 (with its predecessor).
    Valid { version: u16, link: Option<Link> },
}

/// Reads the header from the first `got` bytes of `h`.
pub(super) fn read_header(h: &[u8; FILE_HEADER_LEN as usize], got: usize) -> Header {
    if !h.starts_with(&MAGIC) {
        return Header::None;
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    let len = header_len(version);
    match version {
        // A version never reads 0: the rest of the header was not written yet.
        _ if got < 6 || version == 0 => Header::Torn,
        2 if got >= len as usize && h[6..8] == [0, 0] => Header::Valid { version, link: None },
        VERSION if got < len as usize => Header::Torn,
        VERSION => match decode_header(h) {
            Ok(link) => Header::Valid { version, link },
            Err(_) => Header::Torn,
        },
        // A format-2 header cut short is torn; other bytes in its reserved field, or another
        // version, are a format this build does not know.
        2 if got < len as usize => Header::Torn,
        _ => Header::Unsupported(version),
    }
}

/// What WAL `id` (the successor of WAL `predecessor` in id order; `last`: the newest WAL found)
/// allows of its predecessor: `Some(link end)` when the predecessor's tail may be unsynced,
/// `None` when it must be whole. It may be unsynced when this WAL was created by a rotation that
/// left the predecessor unsynced (its header names it, [`Link`]) and none of its records shows a
/// sync (a sync of it syncs the predecessor first, so a watermark past its header proves the
/// predecessor whole); or when this WAL is the newest, its header is missing or torn and it
/// holds no record at all: it was being created when the power went (the end is then `None`).
///
/// The records are walked in order from the header, so a value that happens to hold a framed
/// record is never taken for evidence; only past the first damaged record are the bytes
/// searched, by the rule replay applies to damage ([`proof_after`]).
pub fn successor_of<S: Storage>(
    storage: &mut S,
    id: u64,
    predecessor: u64,
    last: bool,
) -> Result<Option<Option<u64>>, S> {
    let mut file = storage.open(&file_name(FileKind::Wal, id)).storage()?;
    let end = storage.len(&mut file).storage()?;
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    let io = &mut storage.io(&mut file);
    let got = read_at(io, 0, &mut h).storage()?;
    match read_header(&h, got) {
        Header::Valid { version: VERSION, link: Some(link) } if link.id == predecessor => {
            let start = header_len(VERSION);
            let synced = shows_a_sync(io, start, end).storage()?;
            Ok((!synced).then_some(Some(link.end)))
        }
        Header::None | Header::Torn if last => {
            let any_record = !zeros_to_end(io, 0, end).storage()?
                && (record_proof(io, 0, end, 1).storage()?.is_some()
                    || proof_after(io, 0, end, 1).storage()?.is_some()
                    || proof_after(io, 0, end, VERSION).storage()?.is_some());
            Ok((!any_record).then_some(None))
        }
        _ => Ok(None),
    }
}

/// True when a record of the format-3 WAL whose records start at `start` carries a watermark
/// past `start`: one of the chain of whole records from `start`, or, after the first damaged
/// one, any whole record ([`proof_after`]).
pub(super) fn shows_a_sync<IO: Read + Seek>(
    io: &mut IO,
    start: u64,
    end: u64,
) -> core::result::Result<bool, IO::Error> {
    let mut pos = start;
    while let Some(watermark) = record_proof(io, pos, end, VERSION)? {
        if watermark > start {
            return Ok(true);
        }
        let mut h = [0u8; HEADER_LEN];
        if read_at(io, pos, &mut h)? < HEADER_LEN {
            break;
        }
        let Ok(len) = RecordHeader::decode(h).payload_len() else { break };
        pos += (HEADER_LEN + len) as u64;
    }
    Ok(proof_after(io, pos, end, VERSION)?.is_some_and(|w| w > start))
}
