//! Write batches, [`minivault_batch`]: puts and deletes gathered by the caller and applied
//! atomically by `minivault_batch_commit` (one WAL record; after a crash, all or none).

use minivault_core::entry::{self, Item};
use minivault_core::limits::MAX_BATCH_LEN;
use minivault_posix::{now_millis, BatchError, WriteBatch};

use crate::args::{bytes, reference, Out};
use crate::db::{minivault_db, with_db};
use crate::status::*;

/// A write batch. Opaque: made by `minivault_batch_new`, freed by `minivault_batch_free`. Its
/// buffer grows as entries are added, up to the largest batch the engine takes (4 MiB
/// encoded; a database with small MemTables takes less, and says so at commit).
pub struct minivault_batch {
    batch: WriteBatch,
    /// Bytes of `batch`'s buffer.
    capacity: usize,
}

/// Bytes a new batch's buffer starts with.
const FIRST_CAPACITY: usize = 4 << 10;

impl minivault_batch {
    fn new() -> Self {
        minivault_batch { batch: WriteBatch::new(vec![0; FIRST_CAPACITY]), capacity: FIRST_CAPACITY }
    }

    /// Adds an entry with `add`, growing the buffer (and adding again) while it is full.
    fn add(&mut self, add: impl Fn(&mut WriteBatch) -> Result<(), BatchError>) -> Result<(), Failure> {
        loop {
            match add(&mut self.batch) {
                Err(BatchError::Full) if self.grow() => continue,
                Err(BatchError::Full) => {
                    return Err(Failure::new(
                        MINIVAULT_ERR_TOO_LARGE,
                        format!(
                        "write batch is full ({} entries; at most 65535 entries and {MAX_BATCH_LEN} bytes)",
                        self.batch.len()
                    ),
                    ))
                }
                other => return Ok(other?),
            }
        }
    }

    /// Doubles the buffer and re-adds every entry; false when it is at its largest already.
    fn grow(&mut self) -> bool {
        if self.batch.len() >= usize::from(u16::MAX) || self.capacity >= MAX_BATCH_LEN {
            return false;
        }
        let capacity = (self.capacity * 2).min(MAX_BATCH_LEN);
        let mut grown = WriteBatch::new(vec![0; capacity]);
        for item in self.batch.entries() {
            // Every item was encoded by this batch's own methods, so it decodes and fits.
            let Some(item) = item.ok().and_then(|payload| entry::decode_item(payload).ok()) else {
                return false;
            };
            let added = match item {
                Item::Range(r) => grown.delete_range(r.start, r.end),
                Item::Point(e) => match (e.tombstone, e.expires_at) {
                    (true, _) => grown.delete(e.key),
                    (false, None) => grown.put(e.key, e.value),
                    (false, Some(at)) => grown.put_expiring(e.key, e.value, at),
                },
            };
            if added.is_err() {
                return false;
            }
        }
        self.batch = grown;
        self.capacity = capacity;
        true
    }
}

/// The batch at `batch`.
///
/// # Safety
/// `batch` is NULL or a batch from `minivault_batch_new` not yet freed, not used by another
/// thread during the call.
unsafe fn batch_mut<'a>(batch: *mut minivault_batch) -> Result<&'a mut minivault_batch, Failure> {
    // SAFETY: this function's contract: NULL or a live batch that only this call uses.
    unsafe { batch.as_mut() }.ok_or_else(|| Failure::invalid("batch is NULL"))
}

/// Makes an empty batch and stores it in `*batch`.
///
/// # Safety
/// `batch` is NULL (an error) or points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_new(batch: *mut *mut minivault_batch) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        let mut out = unsafe { Out::new(batch, "batch") }?;
        out.write(Box::into_raw(Box::new(minivault_batch::new())));
        Ok(MINIVAULT_OK)
    })
}

/// Adds a put of `value` under `key` to the batch. Key and value are checked here
/// (`MINIVAULT_ERR_INVALID_ARGUMENT` for an empty key, `MINIVAULT_ERR_TOO_LARGE`).
///
/// # Safety
/// `batch` is NULL or a live batch; `key` points to `key_len` bytes and `value` to `value_len`
/// bytes (each NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_put(
    batch: *mut minivault_batch,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (b, key, value) =
            unsafe { (batch_mut(batch)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?) };
        b.add(|wb| wb.put(key, value))?;
        Ok(MINIVAULT_OK)
    })
}

/// Adds a put that expires `ttl_ms` milliseconds (at least 1) from now (from this call, not
/// from the commit).
///
/// # Safety
/// As `minivault_batch_put`.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_put_with_ttl(
    batch: *mut minivault_batch,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (b, key, value) =
            unsafe { (batch_mut(batch)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?) };
        if ttl_ms == 0 {
            return Err(Failure::invalid("a TTL must be at least 1 ms"));
        }
        let expires_at = now_millis().saturating_add(ttl_ms);
        b.add(|wb| wb.put_expiring(key, value, expires_at))?;
        Ok(MINIVAULT_OK)
    })
}

/// Adds a delete of `key` to the batch.
///
/// # Safety
/// `batch` is NULL or a live batch; `key` points to `key_len` bytes (NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_delete(
    batch: *mut minivault_batch,
    key: *const u8,
    key_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (b, key) = unsafe { (batch_mut(batch)?, bytes(key, key_len, "key")?) };
        b.add(|wb| wb.delete(key))?;
        Ok(MINIVAULT_OK)
    })
}

/// Adds a delete of every key from `start` (inclusive) to `end` (exclusive): one entry however
/// many keys the range holds (a batch may hold up to 32 range deletes before the commit
/// refuses it with `MINIVAULT_ERR_TOO_LARGE`).
///
/// # Safety
/// `batch` is NULL or a live batch; `start` points to `start_len` bytes and `end` to `end_len`
/// bytes (each NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_delete_range(
    batch: *mut minivault_batch,
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (b, start, end) =
            unsafe { (batch_mut(batch)?, bytes(start, start_len, "start")?, bytes(end, end_len, "end")?) };
        b.add(|wb| wb.delete_range(start, end))?;
        Ok(MINIVAULT_OK)
    })
}

/// Stores the number of entries in the batch in `*count`.
///
/// # Safety
/// `batch` is NULL or a live batch; `count` is NULL (an error) or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_count(
    batch: *const minivault_batch,
    count: *mut usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (b, mut out) = unsafe { (reference(batch, "batch")?, Out::new(count, "count")?) };
        out.write(b.batch.len());
        Ok(MINIVAULT_OK)
    })
}

/// Removes every entry (the batch can be filled again).
///
/// # Safety
/// `batch` is NULL or a live batch.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_clear(batch: *mut minivault_batch) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        unsafe { batch_mut(batch) }?.batch.clear();
        Ok(MINIVAULT_OK)
    })
}

/// Applies every entry of the batch to the database atomically: one WAL record and, with
/// `MINIVAULT_DURABILITY_ALWAYS`, one `fdatasync`. Within the batch a later entry for a key
/// wins. The batch is left as it is (clear or free it). An empty batch writes nothing.
///
/// # Safety
/// `db` is NULL or an open handle; `batch` is NULL or a live batch.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_commit(
    db: *mut minivault_db,
    batch: *const minivault_batch,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, b) = unsafe { (reference(db, "db")?, reference(batch, "batch")?) };
        if b.batch.is_empty() {
            return Ok(MINIVAULT_OK);
        }
        with_db(&h.shared, |db| Ok(db.write_batch(&b.batch)?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Frees a batch (without applying it). NULL is ignored.
///
/// # Safety
/// `batch` is NULL or a batch from `minivault_batch_new` not yet freed; invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn minivault_batch_free(batch: *mut minivault_batch) {
    if !batch.is_null() {
        // Dropping a Vec cannot panic; nothing to catch.
        // SAFETY: a pointer from Box::into_raw in minivault_batch_new, not yet freed.
        drop(unsafe { Box::from_raw(batch) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_grows_and_keeps_every_entry_in_order() {
        let mut b = minivault_batch::new();
        for i in 0..2000u32 {
            let key = format!("key{i:05}");
            match i % 3 {
                0 => b.add(|wb| wb.put(key.as_bytes(), &[7u8; 100])).unwrap(),
                1 => b.add(|wb| wb.delete(key.as_bytes())).unwrap(),
                _ => b.add(|wb| wb.put_expiring(key.as_bytes(), b"t", 99)).unwrap(),
            }
            if i % 100 == 0 {
                b.add(|wb| wb.delete_range(key.as_bytes(), b"zzz")).unwrap();
            }
        }
        assert_eq!(b.batch.len(), 2020);
        assert!(b.batch.payload().len() > FIRST_CAPACITY);
        let mut items = b.batch.entries().map(|item| entry::decode_item(item.unwrap()).unwrap());
        for i in 0..2000 {
            let key = format!("key{i:05}");
            let Some(Item::Point(e)) = items.next() else { panic!("entry {i}") };
            assert_eq!(e.key, key.as_bytes());
            assert_eq!(e.tombstone, i % 3 == 1);
            assert_eq!(e.expires_at, (i % 3 == 2).then_some(99));
            if i % 100 == 0 {
                let Some(Item::Range(r)) = items.next() else { panic!("range after {i}") };
                assert_eq!((r.start, r.end), (key.as_bytes(), &b"zzz"[..]));
            }
        }
    }

    #[test]
    fn a_batch_stops_growing_at_the_largest_record() {
        let mut b = minivault_batch::new();
        let value = vec![1u8; 1 << 20];
        let mut added = 0;
        let err = loop {
            match b.add(|wb| wb.put(format!("k{added}").as_bytes(), &value)) {
                Ok(()) => added += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.status, MINIVAULT_ERR_TOO_LARGE);
        assert_eq!(added, 3, "three 1 MiB values fit in a 4 MiB record, a fourth does not");
    }
}
