//! A table's key bounds: the first [`BOUND_BYTES`] bytes of its least and greatest keys, read
//! when the table is opened or published and kept with it ([`super::Table::bounds`]).
//!
//! A key's *prefix* ([`key_prefix`]) is its first [`BOUND_BYTES`] bytes, zero-padded, as a
//! number. Truncating and padding keep the keys' order, though not strictly (keys that share
//! their first bytes share a prefix): `x <= y` gives `prefix(x) <= prefix(y)`, so
//! `prefix(x) < prefix(y)` proves `x < y`. Bounds only ever rule out with strict comparisons, so
//! they are never wrong, only sometimes unable to tell:
//! - a lookup skips a table whose bounds cannot hold the key ([`KeyBounds::may_hold`]);
//! - the compaction policy keeps, as one *run*, adjacent tables that overlap no other live table
//!   ([`crate::version::run_flags`]), and merges runs rather than tables
//!   ([`crate::compaction::policy`]).
//!
//! A table with range deletes, or without entries, gets [`KeyBounds::ALL`] (its deletes hide keys
//! of older tables outside its own entries' span). Without the `many-tables` feature a prefix is a
//! zero-sized [`KeyPrefix`] whose comparisons are all equal: every table's bounds are
//! [`KeyBounds::ALL`] and nothing is read.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use embedded_io::{Read, Seek};

use super::Footer;
use crate::io::{read_u32_at, ReadError};
use crate::limits::BOUND_BYTES;
use crate::record::EntryReader;

/// A key's first [`BOUND_BYTES`] bytes, zero-padded, read as a big-endian number.
#[cfg(feature = "many-tables")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPrefix(u128);
/// Without `many-tables`: nothing (every prefix equal, and no bytes in a table's bounds).
#[cfg(not(feature = "many-tables"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPrefix;

#[cfg(feature = "many-tables")]
const _: () = assert!(BOUND_BYTES == core::mem::size_of::<KeyPrefix>());
// Without the feature a table's bounds take no memory (a microcontroller's table list).
#[cfg(not(feature = "many-tables"))]
const _: () = assert!(core::mem::size_of::<KeyBounds>() == 0);

/// The least and greatest prefixes.
#[cfg(feature = "many-tables")]
pub const PREFIX_MIN_MAX: (KeyPrefix, KeyPrefix) = (KeyPrefix(u128::MIN), KeyPrefix(u128::MAX));
/// The least and greatest prefixes.
#[cfg(not(feature = "many-tables"))]
pub const PREFIX_MIN_MAX: (KeyPrefix, KeyPrefix) = (KeyPrefix, KeyPrefix);

/// The prefix of `key` (see the [module documentation](self)).
pub fn key_prefix(key: &[u8]) -> KeyPrefix {
    padded(key.get(..BOUND_BYTES).unwrap_or(key), 0)
}

/// The greatest prefix of a key that starts with `head`: `head`'s first [`BOUND_BYTES`] bytes,
/// padded with `0xFF`.
pub fn prefix_ceiling(head: &[u8]) -> KeyPrefix {
    padded(head.get(..BOUND_BYTES).unwrap_or(head), 0xFF)
}

/// `head` (at most [`BOUND_BYTES`] bytes) padded with `fill` to a prefix.
#[cfg(feature = "many-tables")]
fn padded(head: &[u8], fill: u8) -> KeyPrefix {
    let mut b = [fill; BOUND_BYTES];
    if let Some(dst) = b.get_mut(..head.len()) {
        dst.copy_from_slice(head);
    }
    KeyPrefix(u128::from_be_bytes(b))
}

#[cfg(not(feature = "many-tables"))]
fn padded(_head: &[u8], _fill: u8) -> KeyPrefix {
    KeyPrefix
}

/// The prefixes of a table's least and greatest keys (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBounds {
    lo: KeyPrefix,
    hi: KeyPrefix,
}

impl KeyBounds {
    /// Bounds that rule nothing out.
    pub const ALL: KeyBounds = KeyBounds { lo: PREFIX_MIN_MAX.0, hi: PREFIX_MIN_MAX.1 };

    /// The bounds of a table whose least key is `least` and greatest `greatest`.
    #[cfg(test)]
    pub fn of_keys(least: &[u8], greatest: &[u8]) -> Self {
        KeyBounds { lo: key_prefix(least), hi: key_prefix(greatest) }
    }

    /// The prefix of the least key.
    pub fn least(&self) -> KeyPrefix {
        self.lo
    }

    /// The prefix of the greatest key.
    pub fn greatest(&self) -> KeyPrefix {
        self.hi
    }

    /// The least bounds holding both.
    pub fn union(&self, other: &KeyBounds) -> KeyBounds {
        KeyBounds { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi) }
    }

    /// False only when no key with prefix `key` lies within the bounds.
    pub fn may_hold(&self, key: KeyPrefix) -> bool {
        self.lo <= key && key <= self.hi
    }

    /// False only when no key with a prefix from `lo` to `hi` lies within the bounds.
    pub fn may_meet(&self, lo: KeyPrefix, hi: KeyPrefix) -> bool {
        self.lo <= hi && lo <= self.hi
    }
}

/// Reads the bounds of the table `footer` seals from its first and last records (through their
/// checksums). [`KeyBounds::ALL`] for a table with range deletes or without entries, for one
/// whose first or last record is damaged (its lookups report that), and without `many-tables`,
/// where nothing is read.
pub fn read_bounds<IO: Read + Seek>(io: &mut IO, footer: &Footer) -> Result<KeyBounds, ReadError<IO::Error>> {
    let Some(last) = footer.entry_count.checked_sub(1) else { return Ok(KeyBounds::ALL) };
    if BOUND_BYTES == 0 || footer.range_count > 0 {
        return Ok(KeyBounds::ALL);
    }
    let mut prefix = |index: u32| -> Result<KeyPrefix, ReadError<IO::Error>> {
        let offset = read_u32_at(io, footer.index_offset + u64::from(index) * 4)?;
        let mut head = [0u8; BOUND_BYTES];
        let mut reader = EntryReader::start(io, u64::from(offset), footer.index_offset)?;
        while let Some(piece) = reader.next(io)? {
            if let Some((at, part)) = piece.key() {
                for (i, &b) in part.iter().enumerate() {
                    if let Some(slot) = head.get_mut(at + i) {
                        *slot = b;
                    }
                }
            }
        }
        let layout = reader.finish(io)?;
        // A key longer than the head: its first BOUND_BYTES bytes.
        Ok(padded(head.get(..layout.header.key_len).unwrap_or(&head), 0))
    };
    match (prefix(0), prefix(last)) {
        (Ok(lo), Ok(hi)) => Ok(KeyBounds { lo, hi }),
        // A damaged first or last record: bounds that rule nothing out, so that a lookup of its
        // key still reads it and reports the damage (`Corrupted`), as without bounds; the table
        // stays open for its other keys.
        (Err(ReadError::Corrupt { .. }), _) | (_, Err(ReadError::Corrupt { .. })) => Ok(KeyBounds::ALL),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[cfg(all(test, feature = "many-tables"))]
mod tests {
    use super::*;

    #[test]
    fn prefixes_keep_the_order_of_keys_and_rule_out_only_keys_outside() {
        let keys: [&[u8]; 9] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefghijklmnop",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnopr",
            b"b",
        ];
        for x in keys {
            for y in keys {
                if x <= y {
                    assert!(key_prefix(x) <= key_prefix(y), "{x:?} {y:?}");
                }
            }
        }
        let b = KeyBounds::of_keys(b"abcdefghijklmnopq", b"abcdefghijklmnopr");
        // A 17-byte key outside the table shares its prefix: not ruled out, never wrongly.
        assert!(b.may_hold(key_prefix(b"abcdefghijklmnopz")));
        assert!(!b.may_hold(key_prefix(b"a")));
        assert!(!b.may_hold(key_prefix(b"b")));
        let high = KeyBounds::of_keys(b"b", b"c");
        assert!(KeyBounds::ALL.may_hold(key_prefix(b"zz")) && KeyBounds::ALL.may_hold(key_prefix(b"")));
        assert!(
            high.may_meet(key_prefix(b"a"), key_prefix(b"b"))
                && !high.may_meet(key_prefix(b"0"), key_prefix(b"a"))
        );
        // Every key that starts with a head lies at or below the head's ceiling.
        for key in [&b"ab"[..], b"ab\xff\xff", b"abcdefghijklmnopqrstuvwxyz"] {
            assert!(key_prefix(key) <= prefix_ceiling(b"ab"), "{key:?}");
        }
        assert!(key_prefix(b"ac") > prefix_ceiling(b"ab"));
    }
}
