//! [`Op`]: one write call of [`crate::Db`] as a value, and how a group of them becomes one WAL
//! record.
//!
//! With [`crate::Durability::Always`], each write call queues its op in the **write group**
//! (`crate::group_commit::WriteQueue`): writers that arrive together (while another group is
//! being written) go to the engine together, as one write batch: one WAL record, then one
//! `fdatasync` through the group commit. [`combine`] makes that batch: every op's entries in
//! the queue's order, so a later write of a key wins over an earlier one, and a range delete
//! covers only what was written before it, exactly as if each had been written alone in that
//! order; a TTL counts from when the batch is made, under the engine's lock (`crate::Db`
//! makes it again there when a TTL is in it), as a write alone counts it from the engine's
//! call. A group the ops cannot make one batch of (an op a batch refuses: an empty key, an
//! empty range), or that the engine refuses before logging anything (more keys or range
//! deletes than a MemTable takes, a full database refusing its puts), is written op by op
//! instead, so that each call gets the answer it would have got alone.
//!
//! An op borrows the caller's bytes; [`Op::to_owned`] copies them for the queue (a durable
//! write waits for an `fdatasync`, far longer than the copy takes).

use std::borrow::Cow;

use minivault_core::batch::BATCH_HEADER_LEN;
use minivault_core::entry::ENTRY_MAX_OVERHEAD;

use crate::engine::{now_millis, Engine};
use crate::row_cache::RowCache;
use crate::WriteBatch;

/// Bytes an item's length takes in a batch.
const ITEM_LEN: usize = 4;

/// One write call.
pub(crate) enum Op<'a> {
    Put {
        key: Cow<'a, [u8]>,
        value: Cow<'a, [u8]>,
    },
    /// Expires `ttl_ms` (at least 1) after the write is applied.
    PutWithTtl {
        key: Cow<'a, [u8]>,
        value: Cow<'a, [u8]>,
        ttl_ms: u64,
    },
    Delete {
        key: Cow<'a, [u8]>,
    },
    DeleteRange {
        start: Cow<'a, [u8]>,
        end: Cow<'a, [u8]>,
    },
    Batch(Cow<'a, WriteBatch>),
}

impl Op<'_> {
    /// The op with its bytes copied (a batch into a buffer of its encoded length).
    pub fn to_owned(&self) -> Op<'static> {
        let own = |b: &Cow<'_, [u8]>| Cow::Owned(b.to_vec());
        match self {
            Op::Put { key, value } => Op::Put { key: own(key), value: own(value) },
            Op::PutWithTtl { key, value, ttl_ms } => {
                Op::PutWithTtl { key: own(key), value: own(value), ttl_ms: *ttl_ms }
            }
            Op::Delete { key } => Op::Delete { key: own(key) },
            Op::DeleteRange { start, end } => Op::DeleteRange { start: own(start), end: own(end) },
            Op::Batch(batch) => {
                let mut copy = WriteBatch::new(vec![0; batch.payload().len()]);
                // Cannot fail: the buffer holds the payload exactly.
                let _ = copy.append(batch);
                Op::Batch(Cow::Owned(copy))
            }
        }
    }

    /// At least the bytes the op adds to a batch ([`combine`]'s buffer; the write group's cost).
    pub fn cost(&self) -> usize {
        let entry = |key: &[u8], value: &[u8]| ITEM_LEN + ENTRY_MAX_OVERHEAD + key.len() + value.len();
        match self {
            Op::Put { key, value } | Op::PutWithTtl { key, value, .. } => entry(key, value),
            Op::Delete { key } => entry(key, &[]),
            Op::DeleteRange { start, end } => entry(start, end),
            Op::Batch(batch) => batch.payload().len().saturating_sub(BATCH_HEADER_LEN),
        }
    }

    /// True for a put with a TTL (its expiry depends on when the batch is made).
    pub fn has_ttl(&self) -> bool {
        matches!(self, Op::PutWithTtl { .. })
    }

    /// Removes the op's keys from the row cache (all of it for a range delete); under the
    /// engine's lock, before the engine is called (see [`crate::Db`]).
    pub fn forget(&self, rows: &mut RowCache) {
        match self {
            Op::Put { key, .. } | Op::PutWithTtl { key, .. } | Op::Delete { key } => rows.remove(key),
            Op::DeleteRange { .. } => rows.clear(),
            Op::Batch(batch) => forget_batch(rows, batch),
        }
    }

    /// Writes the op alone.
    pub fn apply(&self, engine: &mut Engine) -> Result<(), minivault_core::Error<std::io::Error>> {
        match self {
            Op::Put { key, value } => engine.put(key, value),
            Op::PutWithTtl { key, value, ttl_ms } => engine.put_with_ttl(key, value, *ttl_ms),
            Op::Delete { key } => engine.delete(key),
            Op::DeleteRange { start, end } => engine.delete_range(start, end),
            Op::Batch(batch) => engine.write_batch(batch),
        }
    }

    /// Adds the op's entries to `batch`; a TTL counts from `now` (the engine's clock, ms).
    fn add_to(&self, batch: &mut WriteBatch, now: u64) -> Result<(), minivault_core::BatchError> {
        match self {
            Op::Put { key, value } => batch.put(key, value),
            Op::PutWithTtl { key, value, ttl_ms } => {
                batch.put_expiring(key, value, now.saturating_add((*ttl_ms).max(1)))
            }
            Op::Delete { key } => batch.delete(key),
            Op::DeleteRange { start, end } => batch.delete_range(start, end),
            Op::Batch(other) => batch.append(other),
        }
    }
}

/// The ops of a group as one write batch, in their order; `None` when they do not make one
/// (an op a batch refuses, more entries than a batch counts): then each is written alone.
pub(crate) fn combine(ops: &[Op<'_>]) -> Option<WriteBatch> {
    let len = ops.iter().fold(BATCH_HEADER_LEN, |len, op| len.saturating_add(op.cost()));
    let mut batch = WriteBatch::new(vec![0; len]);
    let now = now_millis();
    for op in ops {
        op.add_to(&mut batch, now).ok()?;
    }
    Some(batch)
}

/// Removes `batch`'s keys from the row cache (all of it when an entry does not decode as a
/// point write: a range delete).
fn forget_batch(rows: &mut RowCache, batch: &WriteBatch) {
    if rows.is_empty() {
        // Nothing to drop, but the stamps of gets in progress must change (cheap when empty).
        rows.clear();
        return;
    }
    for item in batch.entries() {
        match item.ok().and_then(|payload| minivault_core::entry::decode(payload).ok()) {
            Some(entry) => rows.remove(entry.key),
            None => {
                rows.clear();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn ops() -> Vec<Op<'static>> {
        let b = |s: &'static str| Cow::Borrowed(s.as_bytes());
        let mut batch = WriteBatch::new(vec![0; 256]);
        batch.put(b"k2", b"in a batch").unwrap();
        batch.delete_range(b"a", b"b").unwrap();
        vec![
            Op::Put { key: b("k1"), value: b("v1") },
            Op::PutWithTtl { key: b("k3"), value: b("v3"), ttl_ms: 0 },
            Op::Delete { key: b("k1") },
            Op::DeleteRange { start: b("x"), end: b("y") },
            Op::Batch(Cow::Owned(batch)),
        ]
    }

    #[test]
    fn a_combined_group_holds_each_ops_entries_in_order_within_its_cost() {
        let ops = ops();
        let batch = combine(&ops).unwrap();
        let mut expected = WriteBatch::new(vec![0; 1024]);
        expected.put(b"k1", b"v1").unwrap();
        expected.put_expiring(b"k3", b"v3", 1).unwrap(); // the expiry is checked apart
        expected.delete(b"k1").unwrap();
        expected.delete_range(b"x", b"y").unwrap();
        expected.put(b"k2", b"in a batch").unwrap();
        expected.delete_range(b"a", b"b").unwrap();
        assert_eq!((batch.len(), batch.range_deletes()), (6, 2));
        let keys = |b: &WriteBatch| -> Vec<Vec<u8>> { b.entries().map(|e| e.unwrap().to_vec()).collect() };
        let (got, want) = (keys(&batch), keys(&expected));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if i != 1 {
                assert_eq!(g, w, "entry {i}");
            }
        }
        let ttl = minivault_core::entry::decode(&got[1]).unwrap();
        assert!(
            ttl.expires_at.unwrap() >= now_millis().saturating_sub(60_000),
            "a TTL from now, at least 1 ms"
        );
        let cost: usize = ops.iter().map(Op::cost).sum();
        assert!(batch.payload().len() <= BATCH_HEADER_LEN + cost, "the cost bounds the bytes");
    }

    #[test]
    fn an_owned_op_is_the_same_write() {
        for op in ops() {
            let mut a = WriteBatch::new(vec![0; 512]);
            let mut b = WriteBatch::new(vec![0; 512]);
            op.add_to(&mut a, 7).unwrap();
            op.to_owned().add_to(&mut b, 7).unwrap();
            assert_eq!(a.payload(), b.payload());
        }
    }

    #[test]
    fn ops_a_batch_refuses_make_no_combined_group() {
        let too_long = Cow::Owned(vec![1u8; minivault_core::MAX_KEY_LEN + 1]);
        let ops =
            [Op::Put { key: Cow::Borrowed(b"k"), value: Cow::Borrowed(b"v") }, Op::Delete { key: too_long }];
        assert!(combine(&ops).is_none());
    }
}
