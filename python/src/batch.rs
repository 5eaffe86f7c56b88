//! `minivault.Batch`: puts and deletes gathered in Python and applied atomically.

use std::sync::{Mutex, MutexGuard};

use minivault_core::batch::BATCH_HEADER_LEN;
use minivault_core::entry::{payload_len, range_payload_len, EntryHeader};
use minivault_core::limits::MAX_BATCH_LEN;
use minivault_posix::{now_millis, WriteBatch, MAX_KEY_LEN, MAX_VALUE_LEN};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::db::{as_bytes, ttl_duration, PyDb};

/// One entry of a batch: key, value (empty for a delete; the end key for a range delete),
/// tombstone, expiry (ms since epoch), range delete.
struct Op {
    key: Vec<u8>,
    value: Vec<u8>,
    tombstone: bool,
    expires_at: Option<u64>,
    range: bool,
}

/// What a batch holds, and its encoded size.
#[derive(Default)]
struct Ops {
    ops: Vec<Op>,
    /// Bytes the batch takes encoded.
    encoded: usize,
}

/// A write batch: ``with db.batch() as b:`` ... ``b.put(k, v)``, ``b.delete(k)``. Leaving the
/// block without an exception applies every entry atomically (one WAL record, one fdatasync
/// with durability="always"; after a crash all or none); leaving it with an exception applies
/// nothing. Within a batch a later entry for a key wins. commit() applies it explicitly.
///
/// A batch holds at most 65,535 entries and 4 MiB encoded (a database with small MemTables
/// takes less, and commit() raises ValueError); keys and values are checked as they are
/// added.
#[pyclass(frozen, module = "minivault", name = "Batch")]
pub struct Batch {
    db: Py<PyDb>,
    ops: Mutex<Ops>,
}

impl Batch {
    pub(crate) fn new(db: Py<PyDb>) -> Self {
        Batch { db, ops: Mutex::new(Ops::default()) }
    }

    // Held only briefly and never while the GIL is released.
    fn ops(&self) -> MutexGuard<'_, Ops> {
        self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts entries a failed commit took back in front of any added since.
    fn restore(&self, taken: Ops) {
        let mut ops = self.ops();
        let since = std::mem::replace(&mut *ops, taken);
        if !since.ops.is_empty() {
            ops.encoded += since.encoded - BATCH_HEADER_LEN;
            ops.ops.extend(since.ops);
        }
    }

    fn add(&self, op: Op) -> PyResult<()> {
        let keys: &[&[u8]] = if op.range { &[&op.key, &op.value] } else { &[&op.key] };
        for key in keys {
            if key.is_empty() {
                return Err(PyValueError::new_err("empty key"));
            }
            if key.len() > MAX_KEY_LEN {
                return Err(PyValueError::new_err(format!(
                    "key of {} bytes exceeds {MAX_KEY_LEN}",
                    key.len()
                )));
            }
        }
        if op.range && op.key >= op.value {
            return Err(PyValueError::new_err("range delete whose end is not after its start"));
        }
        if !op.range && op.value.len() > MAX_VALUE_LEN {
            return Err(PyValueError::new_err(format!(
                "value of {} bytes exceeds {MAX_VALUE_LEN}",
                op.value.len()
            )));
        }
        let size = if op.range {
            4 + range_payload_len(&op.key, &op.value)
        } else {
            let header =
                EntryHeader { tombstone: op.tombstone, key_len: op.key.len(), expires_at: op.expires_at };
            4 + payload_len(&header, op.value.len())
        };
        let mut ops = self.ops();
        let encoded = if ops.ops.is_empty() { BATCH_HEADER_LEN } else { ops.encoded };
        if ops.ops.len() >= usize::from(u16::MAX) || encoded + size > MAX_BATCH_LEN {
            return Err(PyValueError::new_err(format!(
                "write batch is full ({} entries, {encoded} bytes; at most 65535 entries and {MAX_BATCH_LEN} bytes)",
                ops.ops.len()
            )));
        }
        ops.encoded = encoded + size;
        ops.ops.push(op);
        Ok(())
    }
}

#[pymethods]
impl Batch {
    /// Adds a put; with ttl (seconds > 0) it expires that long after this call.
    #[pyo3(signature = (key, value, ttl = None))]
    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let expires_at = ttl
            .map(ttl_duration)
            .transpose()?
            .map(|d| now_millis().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        self.add(Op {
            key: as_bytes(key, "key")?.into_owned(),
            value: as_bytes(value, "value")?.into_owned(),
            tombstone: false,
            expires_at,
            range: false,
        })
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(key, value, None)
    }

    /// Adds a delete.
    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.add(Op {
            key: as_bytes(key, "key")?.into_owned(),
            value: Vec::new(),
            tombstone: true,
            expires_at: None,
            range: false,
        })
    }

    /// Adds a delete of every key from start (inclusive) to end (exclusive): one entry however
    /// many keys the range holds (a batch may hold up to 32 of them; commit() raises ValueError
    /// beyond).
    fn delete_range(&self, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>) -> PyResult<()> {
        self.add(Op {
            key: as_bytes(start, "start")?.into_owned(),
            value: as_bytes(end, "end")?.into_owned(),
            tombstone: true,
            expires_at: None,
            range: true,
        })
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.delete(key)
    }

    /// Entries in the batch.
    fn __len__(&self) -> usize {
        self.ops().ops.len()
    }

    /// Removes every entry.
    fn clear(&self) {
        *self.ops() = Ops::default();
    }

    /// Applies every entry atomically, then empties the batch. Raises as a write does
    /// (ValueError when the batch is too large for this database's MemTables: then nothing
    /// is applied, and the batch keeps its entries).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        // Taken out under the lock, so that an entry another thread adds while the write runs
        // stays for the next commit instead of being cleared unwritten.
        let taken = std::mem::take(&mut *self.ops());
        if taken.ops.is_empty() {
            return Ok(());
        }
        let written = encode(&taken).and_then(|batch| self.db.get().with_db(py, |db| db.write_batch(&batch)));
        if written.is_err() {
            self.restore(taken);
        }
        written
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Commits when the block ended without an exception; discards the entries when it raised.
    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match exc_type {
            Some(t) if !t.is_none() => self.clear(),
            _ => self.commit(py)?,
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<minivault.Batch of {} entries>", self.ops().ops.len())
    }
}

/// The entries as one engine batch.
fn encode(ops: &Ops) -> PyResult<WriteBatch> {
    let mut batch = WriteBatch::new(vec![0; ops.encoded]);
    for op in &ops.ops {
        let added = match (op.tombstone, op.expires_at) {
            _ if op.range => batch.delete_range(&op.key, &op.value),
            (true, _) => batch.delete(&op.key),
            (false, None) => batch.put(&op.key, &op.value),
            (false, Some(at)) => batch.put_expiring(&op.key, &op.value, at),
        };
        added.map_err(|e| PyValueError::new_err(e.to_string()))?;
    }
    Ok(batch)
}
