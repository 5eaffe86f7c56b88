//! WriteBatch: several puts and deletes applied atomically, with one WAL record and one sync.
//!
//! The batch encodes itself, in a caller-provided buffer, as the payload of one WAL record:
//!
//! ```text
//! 0  kind   u8 = 4 (batch)
//! 1  0      u8 (reserved)
//! 2  count  u16 LE, entries in the batch
//! 4  items  count × (u32 LE len | entry payload), entries in the order they were added
//! ```
//! The items have the same shape as MemTable arena items, so a replayed batch is indexed where
//! it lands in the arena. Because the whole batch is one checksummed record, recovery sees all
//! of it or none of it. Within a batch, a later entry for the same key wins.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::entry::{self, EntryHeader, KIND_BATCH};
use crate::limits::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// Bytes before the first item.
pub const BATCH_HEADER_LEN: usize = 4;

/// Why an entry was not added to a [`WriteBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BatchError {
    /// The batch's buffer has no room for the entry, or it already holds 65,535 entries.
    Full,
    /// Keys must hold at least one byte.
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`].
    KeyTooLarge,
    /// The value is longer than [`MAX_VALUE_LEN`].
    ValueTooLarge,
    /// A range delete whose end is not after its start.
    EmptyRange,
}

impl core::fmt::Display for BatchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BatchError::Full => "write batch is full",
            BatchError::EmptyKey => "empty key",
            BatchError::KeyTooLarge => "key too large",
            BatchError::ValueTooLarge => "value too large",
            BatchError::EmptyRange => "range delete whose end is not after its start",
        })
    }
}

impl core::error::Error for BatchError {}

/// A batch of writes, encoded into the buffer `B`.
#[derive(Clone)]
pub struct WriteBatch<B> {
    buf: B,
    len: usize,
    count: u16,
    ranges: u16,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> WriteBatch<B> {
    /// An empty batch over `buf` (which bounds the batch's encoded size).
    pub fn new(buf: B) -> Self {
        let mut b = WriteBatch { buf, len: 0, count: 0, ranges: 0 };
        b.clear();
        b
    }

    /// Removes every entry, keeping the buffer.
    pub fn clear(&mut self) {
        self.count = 0;
        self.ranges = 0;
        self.len = 0;
        if let Some(h) = self.buf.as_mut().get_mut(..BATCH_HEADER_LEN) {
            h.copy_from_slice(&[KIND_BATCH, 0, 0, 0]);
            self.len = BATCH_HEADER_LEN;
        }
    }

    /// Entries in the batch (range deletes included).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Range deletes in the batch.
    pub fn range_deletes(&self) -> usize {
        self.ranges as usize
    }

    /// True when the batch holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BatchError> {
        self.add(EntryHeader { tombstone: false, key_len: key.len(), expires_at: None }, key, value)
    }

    /// Adds a put that expires at `expires_at` (the database checks it is in the future).
    pub fn put_expiring(&mut self, key: &[u8], value: &[u8], expires_at: u64) -> Result<(), BatchError> {
        self.add(
            EntryHeader { tombstone: false, key_len: key.len(), expires_at: Some(expires_at) },
            key,
            value,
        )
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), BatchError> {
        self.add(EntryHeader { tombstone: true, key_len: key.len(), expires_at: None }, key, &[])
    }

    /// Adds a delete of every key from `start` (inclusive) to `end` (exclusive): one item
    /// however many keys the range holds.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), BatchError> {
        for k in [start, end] {
            if k.is_empty() {
                return Err(BatchError::EmptyKey);
            }
            if k.len() > MAX_KEY_LEN {
                return Err(BatchError::KeyTooLarge);
            }
        }
        if start >= end {
            return Err(BatchError::EmptyRange);
        }
        let ranges = self.ranges.checked_add(1).ok_or(BatchError::Full)?;
        self.push_item(&[&entry::range_header(start.len()), start, end])?;
        self.ranges = ranges;
        Ok(())
    }

    /// Appends every entry of `other` after this batch's, in their order: the two batches as
    /// one (what a host's write group makes of its writers' writes). Nothing is added when they
    /// do not fit together.
    pub fn append<C: AsRef<[u8]> + AsMut<[u8]>>(&mut self, other: &WriteBatch<C>) -> Result<(), BatchError> {
        let items = other.payload().get(BATCH_HEADER_LEN..).unwrap_or(&[]);
        let count = self.count.checked_add(other.count).ok_or(BatchError::Full)?;
        let ranges = self.ranges.checked_add(other.ranges).ok_or(BatchError::Full)?;
        let end = self.len + items.len();
        self.buf.as_mut().get_mut(self.len..end).ok_or(BatchError::Full)?.copy_from_slice(items);
        self.len = end;
        self.count = count;
        self.ranges = ranges;
        if let Some(c) = self.buf.as_mut().get_mut(2..4) {
            c.copy_from_slice(&count.to_le_bytes());
        }
        Ok(())
    }

    /// Appends one item (`u32 len | payload`, the payload made of `parts`).
    fn push_item(&mut self, parts: &[&[u8]]) -> Result<(), BatchError> {
        let count = self.count.checked_add(1).ok_or(BatchError::Full)?;
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        let end = self.len + 4 + payload_len;
        let dst = self.buf.as_mut().get_mut(self.len..end).ok_or(BatchError::Full)?;
        let (len_bytes, mut rest) = dst.split_at_mut(4);
        len_bytes.copy_from_slice(&(payload_len as u32).to_le_bytes());
        for p in parts {
            let (d, r) = rest.split_at_mut(p.len());
            d.copy_from_slice(p);
            rest = r;
        }
        self.len = end;
        self.count = count;
        if let Some(c) = self.buf.as_mut().get_mut(2..4) {
            c.copy_from_slice(&count.to_le_bytes());
        }
        Ok(())
    }

    fn add(&mut self, h: EntryHeader, key: &[u8], value: &[u8]) -> Result<(), BatchError> {
        if key.is_empty() {
            return Err(BatchError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(BatchError::KeyTooLarge);
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(BatchError::ValueTooLarge);
        }
        let (hb, hn) = h.encode();
        self.push_item(&[hb.get(..hn).ok_or(BatchError::Full)?, key, value])
    }

    /// The encoded batch: the payload of its WAL record.
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(..self.len).unwrap_or(&[])
    }

    /// The entries, in the order they were added.
    pub fn entries(&self) -> Items<'_> {
        Items { rest: self.payload().get(BATCH_HEADER_LEN..).unwrap_or(&[]) }
    }
}

/// The entry count a batch payload declares, if `payload` is a batch.
pub fn declared_count(payload_head: &[u8]) -> Option<usize> {
    match payload_head {
        [KIND_BATCH, 0, lo, hi, ..] => Some(u16::from_le_bytes([*lo, *hi]) as usize),
        _ => None,
    }
}

/// Iterator over the items of an encoded batch: `Some(Err(()))` at a malformed item.
pub struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    /// Items of the batch payload `payload` (including its 4-byte header).
    pub fn of(payload: &'a [u8]) -> Self {
        Items { rest: payload.get(BATCH_HEADER_LEN..).unwrap_or(&[]) }
    }
}

impl<'a> Iterator for Items<'a> {
    /// The entry payload and its offset from the start of the items.
    type Item = Result<&'a [u8], ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        match (rest.get(..len), rest.get(len..)) {
            (Some(item), Some(tail)) => {
                self.rest = tail;
                Some(Ok(item))
            }
            _ => {
                self.rest = &[];
                Some(Err(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_encodes_entries_in_order_with_count() {
        let mut b = WriteBatch::new([0u8; 256]);
        b.put(b"a", b"1").unwrap();
        b.delete(b"b").unwrap();
        b.put_expiring(b"c", b"3", 99).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(declared_count(b.payload()), Some(3));
        let got: Vec<_> = b.entries().map(|e| entry::decode(e.unwrap()).unwrap()).collect();
        assert_eq!(got.iter().map(|e| e.key).collect::<Vec<_>>(), [b"a", b"b", b"c"]);
        assert!(got[1].tombstone);
        assert_eq!(got[2].expires_at, Some(99));
    }

    #[test]
    fn full_batch_refuses_and_keeps_what_it_has() {
        let mut b = WriteBatch::new([0u8; 32]);
        b.put(b"key", b"value").unwrap();
        assert_eq!(b.put(b"key2", b"a much longer value"), Err(BatchError::Full));
        assert_eq!(b.len(), 1);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.put(b"", b"x"), Err(BatchError::EmptyKey));
        assert_eq!(b.put(&[1; MAX_KEY_LEN + 1], b"x"), Err(BatchError::KeyTooLarge));
    }

    #[test]
    fn appended_batches_read_as_one_in_order_and_a_misfit_adds_nothing() {
        let mut a = WriteBatch::new([0u8; 128]);
        a.put(b"a", b"1").unwrap();
        let mut b = WriteBatch::new([0u8; 64]);
        b.delete_range(b"b", b"c").unwrap();
        b.put(b"a", b"2").unwrap();
        a.append(&b).unwrap();
        assert_eq!((a.len(), a.range_deletes()), (3, 1));
        assert_eq!(declared_count(a.payload()), Some(3));
        let mut alone = WriteBatch::new([0u8; 128]);
        alone.put(b"a", b"1").unwrap();
        alone.delete_range(b"b", b"c").unwrap();
        alone.put(b"a", b"2").unwrap();
        assert_eq!(a.payload(), alone.payload(), "the same bytes as one batch of the three");
        let mut small = WriteBatch::new([0u8; 16]);
        small.put(b"z", b"9").unwrap();
        let before = small.payload().len();
        assert_eq!(small.append(&b), Err(BatchError::Full));
        assert_eq!((small.len(), small.range_deletes(), small.payload().len()), (1, 0, before));
    }

    #[test]
    fn malformed_items_are_reported() {
        let bad = [KIND_BATCH, 0, 1, 0, 200, 0, 0, 0, 1];
        assert_eq!(Items::of(&bad).next(), Some(Err(())));
        assert_eq!(Items::of(&[KIND_BATCH, 0, 0, 0, 1]).next(), Some(Err(())));
        assert_eq!(declared_count(&[1, 0, 0]), None);
    }
}
