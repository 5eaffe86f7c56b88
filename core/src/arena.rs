//! Arena: bump allocation over memory the caller provides.
//!
//! Each allocation is an *item*: a `u32` LE length followed by that many bytes. Items are never
//! freed one by one; the whole arena is [`Arena::reset`] when its MemTable has been flushed.
//! Offsets are `u32`, so one arena spans at most 4 GiB.

/// Bytes in front of every item.
pub const ITEM_HEADER_LEN: usize = 4;

/// A bump allocator over a borrowed byte slice; `used` lives with the owner so the view is cheap.
pub struct Arena<'a> {
    bytes: &'a mut [u8],
    used: &'a mut usize,
}

impl<'a> Arena<'a> {
    /// A view of `bytes`, of which the first `*used` are allocated.
    pub fn new(bytes: &'a mut [u8], used: &'a mut usize) -> Self {
        Arena { bytes, used }
    }

    /// Bytes still free (an item of `n` bytes needs `n + ITEM_HEADER_LEN`).
    pub fn free(&self) -> usize {
        self.bytes.len().saturating_sub(*self.used)
    }

    /// Reserves an item of `len` bytes without committing it: returns its offset and its bytes.
    /// The item becomes permanent only through [`Arena::commit`].
    pub fn reserve(&mut self, len: usize) -> Option<(u32, &mut [u8])> {
        let start = *self.used;
        let end = start.checked_add(ITEM_HEADER_LEN)?.checked_add(len)?;
        let offset = u32::try_from(start).ok()?;
        u32::try_from(end).ok()?;
        let item = self.bytes.get_mut(start..end)?;
        let (header, body) = item.split_at_mut(ITEM_HEADER_LEN);
        header.copy_from_slice(&(len as u32).to_le_bytes());
        Some((offset, body))
    }

    /// Makes the item last reserved at `offset` permanent.
    pub fn commit(&mut self, offset: u32) {
        if let Some(len) = item_len(self.bytes, offset) {
            *self.used = offset as usize + ITEM_HEADER_LEN + len;
        }
    }

    /// Copies the concatenation of `parts` into a new item; returns its offset.
    pub fn alloc(&mut self, parts: &[&[u8]]) -> Option<u32> {
        let len = parts.iter().map(|p| p.len()).sum();
        let (offset, mut dst) = self.reserve(len)?;
        for p in parts {
            let (d, rest) = dst.split_at_mut(p.len());
            d.copy_from_slice(p);
            dst = rest;
        }
        self.commit(offset);
        Some(offset)
    }

    /// Forgets every item.
    pub fn reset(&mut self) {
        *self.used = 0;
    }
}

fn item_len(bytes: &[u8], offset: u32) -> Option<usize> {
    let start = offset as usize;
    let h: [u8; 4] = bytes.get(start..start + ITEM_HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_le_bytes(h) as usize)
}

/// The bytes of the item at `offset`, or `None` if `offset` does not lead to a whole item.
pub fn item(bytes: &[u8], offset: u32) -> Option<&[u8]> {
    let len = item_len(bytes, offset)?;
    let start = offset as usize + ITEM_HEADER_LEN;
    bytes.get(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_items_read_back_in_place() {
        let mut buf = [0u8; 64];
        let mut used = 0;
        let mut a = Arena::new(&mut buf, &mut used);
        let x = a.alloc(&[b"ab", b"cd"]).unwrap();
        let y = a.alloc(&[b"xyz"]).unwrap();
        assert_eq!(used, 4 + 4 + 4 + 3);
        assert_eq!(item(&buf, x), Some(&b"abcd"[..]));
        assert_eq!(item(&buf, y), Some(&b"xyz"[..]));
    }

    #[test]
    fn allocation_beyond_capacity_fails_and_changes_nothing() {
        let mut buf = [0u8; 16];
        let mut used = 0;
        let mut a = Arena::new(&mut buf, &mut used);
        assert!(a.alloc(&[&[7u8; 8]]).is_some());
        assert_eq!(a.free(), 4);
        assert!(a.alloc(&[b"x"]).is_none());
        assert_eq!(used, 12);
    }

    #[test]
    fn reserved_item_is_not_kept_until_committed() {
        let mut buf = [0u8; 32];
        let mut used = 0;
        let mut a = Arena::new(&mut buf, &mut used);
        let (off, body) = a.reserve(5).unwrap();
        body.copy_from_slice(b"hello");
        assert_eq!(a.free(), 32);
        a.commit(off);
        assert_eq!(a.free(), 32 - 9);
        assert_eq!(item(&buf, off), Some(&b"hello"[..]));
    }

    #[test]
    fn reset_makes_the_whole_arena_free_again() {
        let mut buf = [0u8; 16];
        let mut used = 0;
        let mut a = Arena::new(&mut buf, &mut used);
        a.alloc(&[&[1u8; 12]]).unwrap();
        a.reset();
        assert_eq!(a.free(), 16);
        assert!(a.alloc(&[&[1u8; 12]]).is_some());
    }

    #[test]
    fn item_at_bad_offset_is_none_not_a_panic() {
        let buf = [0xffu8; 8];
        assert_eq!(item(&buf, 0), None);
        assert_eq!(item(&buf, 1_000), None);
    }
}
