//! Entry encoding: the payload of every WAL record and every SSTable record.
//!
//! ```text
//! offset  size     field
//! 0       1        kind: 1 = put, 2 = delete (tombstone), 3 = put with expiry
//!                  (4 = a write batch, WAL only: see [`crate::batch`]; 5 = a range delete, below)
//! 1       2        key length, u16 LE, 1..=MAX_KEY_LEN
//! 3       8        expires_at, u64 LE (kind 3 only): absolute time in the caller's clock units
//! 3 or 11 key_len  key
//! ...     rest     value (empty for a tombstone)
//! ```
//! The value length is what remains of the record payload.
//!
//! A **range delete** (kind 5) deletes every key from `start` (inclusive) to `end` (exclusive):
//!
//! ```text
//! 0       1        kind = 5
//! 1       2        start length, u16 LE, 1..=MAX_KEY_LEN
//! 3       len      start
//! ...     rest     end: 1..=MAX_KEY_LEN bytes, greater than start
//! ```
//! It is an *item* of its own ([`Item::Range`]), not an entry: it has no key of its own to be
//! looked up by, and hides older entries of every key in its range.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::error::Corruption;
pub use crate::limits::ENTRY_MAX_OVERHEAD;
use crate::limits::MAX_KEY_LEN;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_PUT_EXPIRING: u8 = 3;
/// The kind byte of a WAL record holding a [`crate::batch::WriteBatch`] (never in an SSTable).
pub const KIND_BATCH: u8 = 4;
/// The kind byte of a range delete.
pub const KIND_DELETE_RANGE: u8 = 5;

/// A range delete: every key from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RangeDelete<'a> {
    /// The first key deleted.
    pub start: &'a [u8],
    /// The first key past the range.
    pub end: &'a [u8],
}

impl RangeDelete<'_> {
    /// True when `key` lies in the range.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.start <= key && key < self.end
    }
}

/// What a payload of the WAL or the MemTable holds: one entry, or one range delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Item<'a> {
    /// A put, delete or expiring put of one key.
    Point(Entry<'a>),
    /// A range delete.
    Range(RangeDelete<'a>),
}

/// The header of a range delete from `start` (its first three bytes); the payload is the header,
/// `start`, then `end`.
pub fn range_header(start_len: usize) -> [u8; 3] {
    let len = u16::try_from(start_len).unwrap_or(u16::MAX).to_le_bytes();
    [KIND_DELETE_RANGE, len[0], len[1]]
}

/// Bytes of a range delete's payload.
pub fn range_payload_len(start: &[u8], end: &[u8]) -> usize {
    3 + start.len() + end.len()
}

/// True when `start..end` is a range a range delete may hold: both keys valid, `start < end`.
pub fn valid_range(start: &[u8], end: &[u8]) -> bool {
    let key_ok = |k: &[u8]| !k.is_empty() && k.len() <= MAX_KEY_LEN;
    key_ok(start) && key_ok(end) && start < end
}

/// Decodes a range delete's payload; `Err` when it is not a valid one.
pub fn decode_range(payload: &[u8]) -> Result<RangeDelete<'_>, Corruption> {
    let (start_len, rest) = match payload {
        [KIND_DELETE_RANGE, a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        _ => return Err(Corruption::BadEntry),
    };
    if rest.len() < start_len {
        return Err(Corruption::BadEntry);
    }
    let (start, end) = rest.split_at(start_len);
    if !valid_range(start, end) {
        return Err(Corruption::BadEntry);
    }
    Ok(RangeDelete { start, end })
}

/// Decodes a payload that may be an entry or a range delete.
pub fn decode_item(payload: &[u8]) -> Result<Item<'_>, Corruption> {
    match payload.first() {
        Some(&KIND_DELETE_RANGE) => decode_range(payload).map(Item::Range),
        _ => decode(payload).map(Item::Point),
    }
}

/// A decoded entry, borrowing the payload it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value; empty for a tombstone.
    pub value: &'a [u8],
    /// True when this entry records a delete.
    pub tombstone: bool,
    /// When the entry stops being visible, if ever.
    pub expires_at: Option<u64>,
}

/// True when an entry that expires at `expires_at` has expired at time `now`: from its expiry
/// time on (inclusive). The one expiry rule: reads, flushes, compaction and caches above the
/// engine all ask this.
pub fn is_expired(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_some_and(|t| t <= now)
}

/// True when an entry hides its key at time `now`: a tombstone, or expired.
pub fn is_dead(tombstone: bool, expires_at: Option<u64>, now: u64) -> bool {
    tombstone || is_expired(expires_at, now)
}

impl Entry<'_> {
    /// True when the entry hides the key at time `now`: a tombstone, or expired.
    pub fn is_dead_at(&self, now: u64) -> bool {
        is_dead(self.tombstone, self.expires_at, now)
    }
}

/// The fixed-size front of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EntryHeader {
    /// True for a tombstone.
    pub tombstone: bool,
    /// Key length.
    pub key_len: usize,
    /// Expiry, if any.
    pub expires_at: Option<u64>,
}

impl EntryHeader {
    /// True when the entry hides its key at time `now`: a tombstone, or expired.
    pub fn is_dead_at(&self, now: u64) -> bool {
        is_dead(self.tombstone, self.expires_at, now)
    }

    /// When the entry stops being alive: its expiry; `None` for an entry
    /// that never expires and for a tombstone (which hides older entries of its key for good).
    pub fn expiry(&self) -> Option<u64> {
        if self.tombstone {
            None
        } else {
            self.expires_at
        }
    }

    /// Bytes this header occupies when encoded.
    pub fn encoded_len(&self) -> usize {
        if self.expires_at.is_some() {
            ENTRY_MAX_OVERHEAD
        } else {
            3
        }
    }

    /// Encodes into a fixed buffer; returns the buffer and how much of it is used.
    /// `key_len` must already be validated against [`MAX_KEY_LEN`].
    pub fn encode(&self) -> ([u8; ENTRY_MAX_OVERHEAD], usize) {
        let mut b = [0u8; ENTRY_MAX_OVERHEAD];
        let kind = match (self.tombstone, self.expires_at) {
            (true, _) => KIND_DELETE,
            (false, None) => KIND_PUT,
            (false, Some(_)) => KIND_PUT_EXPIRING,
        };
        let key_len = u16::try_from(self.key_len).unwrap_or(u16::MAX).to_le_bytes();
        b[0] = kind;
        b[1] = key_len[0];
        b[2] = key_len[1];
        if let (false, Some(t)) = (self.tombstone, self.expires_at) {
            b[3..11].copy_from_slice(&t.to_le_bytes());
            (b, ENTRY_MAX_OVERHEAD)
        } else {
            (b, 3)
        }
    }

    /// Decodes the header at the front of `bytes` (which may be longer than the header).
    pub fn decode(bytes: &[u8]) -> Result<Self, Corruption> {
        let (&kind, rest) = bytes.split_first().ok_or(Corruption::BadEntry)?;
        let key_len = match rest {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            _ => return Err(Corruption::BadEntry),
        };
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(Corruption::BadEntry);
        }
        let (tombstone, expires_at) = match kind {
            KIND_PUT => (false, None),
            KIND_DELETE => (true, None),
            KIND_PUT_EXPIRING => {
                let t: [u8; 8] =
                    bytes.get(3..11).and_then(|s| s.try_into().ok()).ok_or(Corruption::BadEntry)?;
                (false, Some(u64::from_le_bytes(t)))
            }
            _ => return Err(Corruption::BadEntry),
        };
        Ok(EntryHeader { tombstone, key_len, expires_at })
    }
}

/// Decodes a whole entry payload.
pub fn decode(payload: &[u8]) -> Result<Entry<'_>, Corruption> {
    let h = EntryHeader::decode(payload)?;
    let body = payload.get(h.encoded_len()..).ok_or(Corruption::BadEntry)?;
    if body.len() < h.key_len {
        return Err(Corruption::BadEntry);
    }
    let (key, value) = body.split_at(h.key_len);
    if h.tombstone && !value.is_empty() {
        return Err(Corruption::BadEntry);
    }
    Ok(Entry { key, value, tombstone: h.tombstone, expires_at: h.expires_at })
}

/// Where the key and the value of an entry payload lie, learnt from the payload's first bytes:
/// what a reader that sees the payload in pieces ([`crate::record::EntryReader`]) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EntryLayout {
    /// The entry's header.
    pub header: EntryHeader,
    /// Where the key starts in the payload.
    pub key_start: usize,
    /// Where the key ends (and the value starts).
    pub key_end: usize,
    /// The payload's length (where the value ends).
    pub len: usize,
}

impl EntryLayout {
    /// The layout of a payload of `len` bytes whose first bytes are `first` (at least
    /// [`ENTRY_MAX_OVERHEAD`] of them, or the whole payload). Checks what the header alone can
    /// tell: the key fits in the payload, and a tombstone has no value.
    pub fn of(first: &[u8], len: usize) -> Result<Self, Corruption> {
        let header = EntryHeader::decode(first.get(..len.min(first.len())).unwrap_or(first))?;
        let key_start = header.encoded_len();
        let key_end = key_start + header.key_len;
        if key_end > len || (header.tombstone && key_end != len) {
            return Err(Corruption::BadEntry);
        }
        Ok(EntryLayout { header, key_start, key_end, len })
    }

    /// The value's length.
    pub fn value_len(&self) -> usize {
        self.len - self.key_end
    }

    /// The part of the key inside `piece`, the payload bytes from position `pos`: where that part
    /// starts in the key, and its bytes.
    pub fn key_part<'p>(&self, pos: usize, piece: &'p [u8]) -> Option<(usize, &'p [u8])> {
        part(self.key_start, self.key_end, pos, piece)
    }

    /// The part of the value inside `piece`, the payload bytes from position `pos`: where that
    /// part starts in the value, and its bytes.
    pub fn value_part<'p>(&self, pos: usize, piece: &'p [u8]) -> Option<(usize, &'p [u8])> {
        part(self.key_end, self.len, pos, piece)
    }
}

/// The bytes of `start..end` (payload positions) inside `piece`, which holds positions
/// `pos..pos + piece.len()`, with their position relative to `start`.
fn part(start: usize, end: usize, pos: usize, piece: &[u8]) -> Option<(usize, &[u8])> {
    let a = start.max(pos);
    let b = end.min(pos + piece.len());
    let bytes = piece.get(a.checked_sub(pos)?..b.checked_sub(pos)?)?;
    (a < b).then_some((a - start, bytes))
}

/// Total payload bytes of an entry with this header and value length.
pub fn payload_len(header: &EntryHeader, value_len: usize) -> usize {
    header.encoded_len() + header.key_len + value_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(key: &[u8], value: &[u8], tombstone: bool, expires_at: Option<u64>) -> Vec<u8> {
        let h = EntryHeader { tombstone, key_len: key.len(), expires_at };
        let (hb, n) = h.encode();
        let mut v = hb[..n].to_vec();
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn put_delete_and_expiring_entries_round_trip() {
        for (k, v, t, e) in [
            (&b"k"[..], &b"v"[..], false, None),
            (b"key", b"", true, None),
            (b"sensor/1", b"21.5", false, Some(1_700_000_000)),
        ] {
            let bytes = encode(k, v, t, e);
            let d = decode(&bytes).unwrap();
            assert_eq!((d.key, d.value, d.tombstone, d.expires_at), (k, v, t, e));
        }
    }

    #[test]
    fn unknown_kind_and_bad_key_lengths_are_corruption() {
        let mut b = encode(b"abc", b"v", false, None);
        b[0] = 9;
        assert_eq!(decode(&b), Err(Corruption::BadEntry));
        let mut b = encode(b"abc", b"v", false, None);
        b[1] = 200; // key longer than the payload
        assert_eq!(decode(&b), Err(Corruption::BadEntry));
        let mut b = encode(b"abc", b"v", false, None);
        b[1] = 0; // empty key
        b[2] = 0;
        assert_eq!(decode(&b), Err(Corruption::BadEntry));
        assert_eq!(decode(&[]), Err(Corruption::BadEntry));
        assert_eq!(decode(&[3, 1, 0, 0]), Err(Corruption::BadEntry));
    }

    #[test]
    fn tombstone_with_value_is_corruption() {
        let mut b = encode(b"abc", b"", true, None);
        b.push(1);
        assert_eq!(decode(&b), Err(Corruption::BadEntry));
    }

    #[test]
    fn range_deletes_round_trip_and_bad_ones_are_corruption() {
        let payload = [&range_header(3)[..], b"abc", b"abd"].concat();
        assert_eq!(payload.len(), range_payload_len(b"abc", b"abd"));
        let r = decode_range(&payload).unwrap();
        assert_eq!((r.start, r.end), (&b"abc"[..], &b"abd"[..]));
        assert!(r.covers(b"abc") && r.covers(b"abc\xff") && !r.covers(b"abd") && !r.covers(b"ab"));
        assert_eq!(decode_item(&payload), Ok(Item::Range(r)));
        assert!(matches!(decode_item(&encode(b"k", b"v", false, None)), Ok(Item::Point(_))));
        for bad in [
            [&range_header(3)[..], b"abd", b"abc"].concat(), // end before start
            [&range_header(3)[..], b"abc", b"abc"].concat(), // empty range
            [&range_header(3)[..], b"abc"].concat(),         // no end
            [&range_header(9)[..], b"abc", b"abd"].concat(), // start longer than the payload
            [&range_header(0)[..], b"abc"].concat(),         // empty start
        ] {
            assert_eq!(decode_range(&bad), Err(Corruption::BadEntry), "{bad:?}");
        }
        assert_eq!(decode(&payload), Err(Corruption::BadEntry), "a range delete is not an entry");
    }

    #[test]
    fn layout_splits_pieces_into_key_and_value_parts() {
        let b = encode(b"key", b"value", false, Some(9));
        let l = EntryLayout::of(&b, b.len()).unwrap();
        assert_eq!((l.key_start, l.key_end, l.value_len()), (11, 14, 5));
        // Pieces of 4 bytes: the key and value come out in order, each part where it belongs.
        let (mut key, mut value) = (vec![0u8; 3], vec![0u8; 5]);
        for (i, piece) in b.chunks(4).enumerate() {
            if let Some((at, k)) = l.key_part(i * 4, piece) {
                key[at..at + k.len()].copy_from_slice(k);
            }
            if let Some((at, v)) = l.value_part(i * 4, piece) {
                value[at..at + v.len()].copy_from_slice(v);
            }
        }
        assert_eq!((&key[..], &value[..]), (&b"key"[..], &b"value"[..]));
        assert_eq!(EntryLayout::of(&b, 13), Err(Corruption::BadEntry), "key past the payload");
        let t = encode(b"k", b"", true, None);
        assert!(EntryLayout::of(&t, t.len()).is_ok());
        assert_eq!(EntryLayout::of(&t, t.len() + 1), Err(Corruption::BadEntry), "tombstone with a value");
    }

    #[test]
    fn expiry_hides_entry_from_its_time_on() {
        let b = encode(b"k", b"v", false, Some(100));
        let e = decode(&b).unwrap();
        assert!(!e.is_dead_at(99));
        assert!(e.is_dead_at(100));
    }
}
