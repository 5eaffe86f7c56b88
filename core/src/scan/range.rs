//! The keys a scan visits: [`KeyRange`], a range of keys in byte order (`memcmp`), or the keys
//! that start with a prefix.

use core::cmp::Ordering;
use core::ops::Bound;

use crate::sstable::bounds::{key_prefix, prefix_ceiling, KeyPrefix, PREFIX_MIN_MAX};

/// The upper end of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End<'k> {
    Unbounded,
    Included(&'k [u8]),
    Excluded(&'k [u8]),
    /// Every key that starts with the prefix, and every key below it: what `< successor(prefix)`
    /// would say, without computing the successor (an all-`0xFF` prefix has none).
    PrefixOf(&'k [u8]),
}

/// A range of keys, borrowed for as long as a scan over it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange<'k> {
    start: Bound<&'k [u8]>,
    end: End<'k>,
}

impl<'k> KeyRange<'k> {
    /// Every key.
    pub fn all() -> Self {
        KeyRange { start: Bound::Unbounded, end: End::Unbounded }
    }

    /// The keys from `start` to `end`.
    pub fn new(start: Bound<&'k [u8]>, end: Bound<&'k [u8]>) -> Self {
        let end = match end {
            Bound::Unbounded => End::Unbounded,
            Bound::Included(k) => End::Included(k),
            Bound::Excluded(k) => End::Excluded(k),
        };
        KeyRange { start, end }
    }

    /// The keys that start with `prefix` (every key when it is empty).
    pub fn prefix(prefix: &'k [u8]) -> Self {
        if prefix.is_empty() {
            return KeyRange::all();
        }
        KeyRange { start: Bound::Included(prefix), end: End::PrefixOf(prefix) }
    }

    /// The same range, from just after `key` on (a forward scan resuming after `key`).
    pub fn after(self, key: &'k [u8]) -> Self {
        KeyRange { start: Bound::Excluded(key), ..self }
    }

    /// The same range, up to just before `key` (a reverse scan resuming before `key`).
    pub fn before(self, key: &'k [u8]) -> Self {
        KeyRange { end: End::Excluded(key), ..self }
    }

    /// The lower bound.
    pub fn start(&self) -> Bound<&'k [u8]> {
        self.start
    }

    /// True when `key` lies below the range.
    pub fn before_start(&self, key: &[u8]) -> bool {
        match self.start {
            Bound::Unbounded => false,
            Bound::Included(s) => key < s,
            Bound::Excluded(s) => key <= s,
        }
    }

    /// True when `key` lies above the range.
    pub fn after_end(&self, key: &[u8]) -> bool {
        match self.end {
            End::Unbounded => false,
            End::Included(e) => key > e,
            End::Excluded(e) => key >= e,
            End::PrefixOf(p) => key.cmp(p) == Ordering::Greater && !key.starts_with(p),
        }
    }

    /// The least and greatest [`KeyPrefix`] of the range's keys: a table whose
    /// [`crate::sstable::KeyBounds`] do not meet them holds none of its keys.
    pub fn prefix_span(&self) -> (KeyPrefix, KeyPrefix) {
        let (least, greatest) = PREFIX_MIN_MAX;
        let lo = match self.start {
            Bound::Unbounded => least,
            Bound::Included(s) | Bound::Excluded(s) => key_prefix(s),
        };
        let hi = match self.end {
            End::Unbounded => greatest,
            End::Included(e) | End::Excluded(e) => key_prefix(e),
            End::PrefixOf(p) => prefix_ceiling(p),
        };
        (lo, hi)
    }

    /// True when `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        !self.before_start(key) && !self.after_end(key)
    }
}

impl Default for KeyRange<'_> {
    fn default() -> Self {
        KeyRange::all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_include_and_exclude_their_keys() {
        let r = KeyRange::new(Bound::Included(b"b"), Bound::Excluded(b"d"));
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        let r = KeyRange::new(Bound::Excluded(b"b"), Bound::Included(b"d"));
        assert!(!r.contains(b"b") && r.contains(b"b\0") && r.contains(b"d") && !r.contains(b"d\0"));
        assert!(KeyRange::all().contains(b"") && KeyRange::all().contains(b"\xff\xff"));
    }

    #[test]
    fn a_prefix_holds_exactly_the_keys_that_start_with_it_even_all_ff() {
        for p in [&b"ab"[..], b"a\xff", b"\xff", b"\xff\xff", b"\x00"] {
            let r = KeyRange::prefix(p);
            for k in [
                &b""[..],
                b"a",
                b"ab",
                b"ab\x00",
                b"ab\xff\xff",
                b"ac",
                b"a\xff",
                b"a\xff\x01",
                b"b",
                b"\xff",
                b"\xff\xff",
                b"\xff\xff\x00",
                b"\x00",
                b"\x00\x01",
                b"\x01",
            ] {
                assert_eq!(r.contains(k), k.starts_with(p), "prefix {p:?} key {k:?}");
            }
        }
        assert_eq!(KeyRange::prefix(b""), KeyRange::all());
    }

    #[test]
    fn resuming_excludes_the_last_key() {
        let r = KeyRange::prefix(b"k").after(b"k5");
        assert!(!r.contains(b"k5") && r.contains(b"k6") && !r.contains(b"l"));
        let r = KeyRange::prefix(b"k").before(b"k5");
        assert!(!r.contains(b"k5") && r.contains(b"k4") && !r.contains(b"j"));
    }
}
