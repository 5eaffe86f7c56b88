//! `minivault.Db`: the Rust [`minivault_posix::Db`] behind a mutex, every call made with the
//! interpreter detached (the GIL released) while it locks the mutex and does its I/O.

use std::borrow::Cow;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use minivault_posix::{Db, Durability, Options, Ttl, WhenFull};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use crate::batch::Batch;
use crate::errors::{closed, to_py};
use crate::iter::{Bounds, RangeIter};

/// The bytes of a key or value: `bytes` (borrowed, not copied), `bytearray` or `memoryview`
/// (copied). `str` is refused: encode it, so that what is stored is what you chose.
pub(crate) fn as_bytes<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be bytes, not str: encode it first, e.g. {what}.encode()"
        )));
    }
    if obj.get_type().name().is_ok_and(|n| n == "memoryview") {
        let bytes = obj.call_method0("tobytes")?;
        let bytes = bytes.cast::<PyBytes>()?;
        return Ok(Cow::Owned(bytes.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
    )))
}

/// A TTL in seconds (int or float, > 0), as a `Duration` of at least 1 ms.
pub(crate) fn ttl_duration(ttl: f64) -> PyResult<Duration> {
    if !ttl.is_finite() || ttl <= 0.0 {
        return Err(PyValueError::new_err(format!("ttl must be a positive number of seconds, not {ttl}")));
    }
    Ok(Duration::try_from_secs_f64(ttl).unwrap_or(Duration::MAX).max(Duration::from_millis(1)))
}

/// `"always"`, `"manual"`, `"every:N"` or `"periodic:MS"` (as the `minivault` command line's
/// `--sync`).
fn parse_durability(s: &str) -> PyResult<Durability> {
    let bad = || {
        PyValueError::new_err(format!(
            "durability must be \"always\", \"manual\", \"every:N\" or \"periodic:MS\", not {s:?}"
        ))
    };
    match s.split_once(':') {
        None if s == "always" => Ok(Durability::Always),
        None if s == "manual" => Ok(Durability::Manual),
        Some(("every", n)) => {
            n.parse::<u32>().ok().filter(|n| *n > 0).map(Durability::EveryN).ok_or_else(bad)
        }
        Some(("periodic", ms)) => {
            ms.parse::<u64>().ok().map(|ms| Durability::Periodic(Duration::from_millis(ms))).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// An open MiniVaultDB database: a sorted, durable map of bytes to bytes in a directory.
///
/// Make one with ``minivault.open(path, ...)`` and use it as a context manager (``with ... as
/// db:``), which closes it. Keys (1 to 1024 bytes) and values (up to 1 MiB) are ``bytes``
/// (``bytearray`` and ``memoryview`` are taken too; ``str`` is refused with TypeError: encode
/// it). Keys are kept in byte order, so ``range`` and ``prefix`` iterate in order.
///
/// Thread safety: a Db may be shared by threads. Its calls run in parallel (gets beside a writer;
/// concurrent durable writes share one sync), each with the GIL released while it does its I/O,
/// so other Python threads run meanwhile; close() waits for the calls in progress.
#[pyclass(frozen, module = "minivault", name = "Db")]
pub struct PyDb {
    db: RwLock<Option<Db>>,
    path: String,
    read_only: bool,
}

impl Drop for PyDb {
    /// A Db dropped without close(): the engine's own close (joining its compaction threads, the
    /// final sync) runs with the GIL released, as every other call does.
    fn drop(&mut self) {
        let db = self.db.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(db) = db {
            Python::attach(|py| py.detach(|| drop(db)));
        }
    }
}

impl PyDb {
    /// The database, shared with the other calls in progress (`None` once closed).
    fn read(&self) -> RwLockReadGuard<'_, Option<Db>> {
        // A panic while the lock was held leaves the Db as it was between two engine calls;
        // the engine's own state is checked by the engine, so the Db stays usable.
        self.db.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The database alone, once the calls in progress are done: for close.
    fn write(&self) -> RwLockWriteGuard<'_, Option<Db>> {
        self.db.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the open database with the GIL released; its error becomes an exception.
    pub(crate) fn with_db<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Db) -> Result<T, minivault_posix::Error> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let guard = self.read();
            let db = guard.as_ref().ok_or_else(closed)?;
            f(db).map_err(to_py)
        })
    }
}

/// Opens (creating it if missing) the database in the directory ``path`` and returns a Db.
///
/// durability: when a write is durable. ``"always"`` (each write is fdatasync'ed before it
/// returns), ``"every:N"`` (every N-th write syncs), ``"periodic:MS"`` (the first write MS
/// milliseconds after the last sync syncs) or ``"manual"`` (``sync()``, ``flush()`` and
/// ``close()`` sync). A process crash loses nothing in any mode; a power cut loses what was
/// not synced.
///
/// Memory: at most (2 + background threads + 1) x memtable_bytes + cache_bytes +
/// row_cache_bytes + the SSTable index budget (32 MiB, filters first) plus a little; 64 MiB
/// with the defaults (the Rust ``Options`` doc says more). memtable_bytes is 512 B to 1 GiB and
/// bounds the largest entry.
///
/// read_only: open without writing anything (no lock, works beside a writer in another
/// process; writes raise ReadOnly).
///
/// max_bytes: a cap on the database's files (at least 16 x memtable_bytes); when_full: what
/// happens at the cap or when the disk is full: ``"refuse_writes"`` (writes raise Full until
/// deletes make room) or ``"drop_oldest"`` (the oldest SSTables are dropped whole: a buffer of
/// the newest data).
///
/// Raises Locked when another process has it open, ValueError for an option out of range,
/// Corrupted for damaged data, Error for I/O errors.
#[pyfunction]
#[pyo3(signature = (path, durability = "always", *, memtable_bytes = None, cache_bytes = None, row_cache_bytes = None, wal_preallocation_bytes = None, read_only = false, max_bytes = None, when_full = "refuse_writes"))]
#[allow(clippy::too_many_arguments)]
pub fn open(
    py: Python<'_>,
    path: std::path::PathBuf,
    durability: &str,
    memtable_bytes: Option<usize>,
    cache_bytes: Option<usize>,
    row_cache_bytes: Option<usize>,
    wal_preallocation_bytes: Option<u64>,
    read_only: bool,
    max_bytes: Option<u64>,
    when_full: &str,
) -> PyResult<PyDb> {
    let defaults = Options::default();
    let when_full = match when_full {
        "refuse_writes" => WhenFull::RefuseWrites,
        "drop_oldest" => WhenFull::DropOldest,
        other => {
            return Err(PyValueError::new_err(format!(
                "when_full must be \"refuse_writes\" or \"drop_oldest\", not {other:?}"
            )))
        }
    };
    // `..defaults`: an option added to the Rust API later keeps its default here instead of
    // breaking this build.
    #[allow(clippy::needless_update)]
    let options = Options {
        durability: parse_durability(durability)?,
        memtable_bytes: memtable_bytes.unwrap_or(defaults.memtable_bytes),
        cache_bytes: cache_bytes.unwrap_or(defaults.cache_bytes),
        row_cache_bytes: row_cache_bytes.unwrap_or(defaults.row_cache_bytes),
        wal_preallocation_bytes,
        read_only,
        max_bytes,
        when_full,
        ..defaults
    };
    let shown = path.display().to_string();
    let db = py.detach(|| Db::open_with(&path, options)).map_err(to_py)?;
    Ok(PyDb { db: RwLock::new(Some(db)), path: shown, read_only })
}

#[pymethods]
impl PyDb {
    /// The database directory, as given to open().
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// True when opened with read_only=True.
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    /// True once close() was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| Ok(self.read().is_none()))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.closed(py)? {
            "closed"
        } else if self.read_only {
            "read-only"
        } else {
            "open"
        };
        Ok(format!("<minivault.Db path={:?} {state}>", self.path))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the database (also when the with-block raised).
    #[pyo3(signature = (_exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Closes the database: makes every acknowledged write durable and raises if that failed,
    /// then releases the files and the lock. Closing a closed database does nothing. Iterators
    /// and batches of a closed database raise Closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let taken = self.write().take();
            match taken {
                Some(db) => db.close().map_err(to_py),
                None => Ok(()),
            }
        })
    }

    /// Stores value under key. With ttl (seconds, int or float > 0; millisecond resolution)
    /// the key reads as absent once that time has passed. Durable on return with
    /// durability="always".
    #[pyo3(signature = (key, value, ttl = None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let (key, value) = (as_bytes(key, "key")?, as_bytes(value, "value")?);
        match ttl.map(ttl_duration).transpose()? {
            None => self.with_db(py, |db| db.put(&key, &value)),
            Some(ttl) => self.with_db(py, |db| db.put_with_ttl(&key, &value, ttl)),
        }
    }

    fn __setitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, key, value, None)
    }

    /// The value stored under key (bytes), or default when the key is absent, deleted or
    /// expired.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = as_bytes(key, "key")?;
        match self.with_db(py, |db| db.get(&key))? {
            Some(value) => Ok(PyBytes::new(py, &value).into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let k = as_bytes(key, "key")?;
        match self.with_db(py, |db| db.get(&k))? {
            Some(value) => Ok(PyBytes::new(py, &value)),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = as_bytes(key, "key")?;
        Ok(self.with_db(py, |db| db.get(&key))?.is_some())
    }

    /// Deletes key, whether or not it exists (``del db[key]`` raises KeyError when it does
    /// not).
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = as_bytes(key, "key")?;
        self.with_db(py, |db| db.delete(&key))
    }

    /// Deletes every key from start (inclusive) to end (exclusive) with one record, however
    /// many keys the range holds. ValueError when end is not after start.
    fn delete_range(&self, py: Python<'_>, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>) -> PyResult<()> {
        let (start, end) = (as_bytes(start, "start")?, as_bytes(end, "end")?);
        self.with_db(py, |db| db.delete_range(&start, &end))
    }

    /// Deletes key; KeyError when it is absent (checked and deleted under one lock).
    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = as_bytes(key, "key")?;
        let existed = self.with_db(py, |db| {
            let present = db.get(&k)?.is_some();
            if present {
                db.delete(&k)?;
            }
            Ok(present)
        })?;
        if existed {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// Seconds key has left to live (a float), or None when it never expires. KeyError when
    /// the key is absent.
    fn ttl(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let k = as_bytes(key, "key")?;
        match self.with_db(py, |db| db.ttl(&k))? {
            Ttl::NoKey => Err(PyKeyError::new_err(key.clone().unbind())),
            Ttl::NoExpiry => Ok(None),
            Ttl::ExpiresIn(left) => Ok(Some(left.as_secs_f64())),
        }
    }

    /// An iterator over the (key, value) pairs with start <= key < end, in key order
    /// (descending with reverse=True). None is an open end. The iterator reads in batches and
    /// does not lock the database between them: writes may go on while it is open; each batch
    /// sees the database as it is then (keys written behind its position are not seen).
    #[pyo3(signature = (start = None, end = None, reverse = false))]
    fn range(
        slf: &Bound<'_, Self>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<RangeIter> {
        let bounds = Bounds::range(
            start.map(|s| as_bytes(s, "start")).transpose()?.as_deref(),
            end.map(|e| as_bytes(e, "end")).transpose()?.as_deref(),
        );
        Ok(RangeIter::new(slf.clone().unbind(), bounds, reverse, false))
    }

    /// An iterator over the (key, value) pairs whose key starts with prefix, in key order
    /// (descending with reverse=True), read in batches as range() does.
    #[pyo3(signature = (prefix, reverse = false))]
    fn prefix(slf: &Bound<'_, Self>, prefix: &Bound<'_, PyAny>, reverse: bool) -> PyResult<RangeIter> {
        let bounds = Bounds::prefix(&as_bytes(prefix, "prefix")?);
        Ok(RangeIter::new(slf.clone().unbind(), bounds, reverse, false))
    }

    /// An iterator over the keys with start <= key < end, in key order (values are not read).
    #[pyo3(signature = (start = None, end = None, reverse = false))]
    fn keys(
        slf: &Bound<'_, Self>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<RangeIter> {
        let bounds = Bounds::range(
            start.map(|s| as_bytes(s, "start")).transpose()?.as_deref(),
            end.map(|e| as_bytes(e, "end")).transpose()?.as_deref(),
        );
        Ok(RangeIter::new(slf.clone().unbind(), bounds, reverse, true))
    }

    /// Iterates over every key in order (as keys()).
    fn __iter__(slf: &Bound<'_, Self>) -> RangeIter {
        RangeIter::new(slf.clone().unbind(), Bounds::range(None, None), false, true)
    }

    /// How many live keys there are with start <= key < end (reads every key of the range:
    /// O(n), so there is no len()).
    #[pyo3(signature = (start = None, end = None))]
    fn count(
        &self,
        py: Python<'_>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let bounds = Bounds::range(
            start.map(|s| as_bytes(s, "start")).transpose()?.as_deref(),
            end.map(|e| as_bytes(e, "end")).transpose()?.as_deref(),
        );
        self.with_db(py, |db| db.count(bounds.as_range()))
    }

    /// The (key, value) pair with the smallest key, or None when the database is empty.
    fn first<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let entry = self.with_db(py, |db| db.first())?;
        Ok(entry.map(|(k, v)| (PyBytes::new(py, &k), PyBytes::new(py, &v))))
    }

    /// The (key, value) pair with the largest key, or None when the database is empty.
    fn last<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let entry = self.with_db(py, |db| db.last())?;
        Ok(entry.map(|(k, v)| (PyBytes::new(py, &k), PyBytes::new(py, &v))))
    }

    /// A write batch for this database: ``with db.batch() as b: b.put(k, v); b.delete(k2)``
    /// applies every put and delete atomically when the block ends without an exception (one
    /// WAL record, one fdatasync; after a crash, all or none) and discards them when it raises.
    fn batch(slf: &Bound<'_, Self>) -> Batch {
        Batch::new(slf.clone().unbind())
    }

    /// Makes every acknowledged write durable (fdatasync).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.with_db(py, |db| db.sync())
    }

    /// Writes the MemTables to SSTables and retires the WAL.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with_db(py, |db| db.flush())
    }

    /// The engine's and the row cache's counters and sizes, as a dict of ints (max_bytes: None
    /// when there is no cap).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (s, r) = self.with_db(py, |db| Ok((db.stats(), db.row_cache_stats())))?;
        let d = PyDict::new(py);
        d.set_item("memtable_keys", s.memtable_keys)?;
        d.set_item("memtable_key_capacity", s.memtable_key_capacity)?;
        d.set_item("memtable_bytes", s.memtable_bytes)?;
        d.set_item("memtable_capacity_bytes", s.memtable_capacity_bytes)?;
        d.set_item("immutable_keys", s.immutable_keys)?;
        d.set_item("tables", s.tables)?;
        d.set_item("table_bytes", s.table_bytes)?;
        d.set_item("wal_bytes", s.wal_bytes)?;
        d.set_item("flushes", s.flushes)?;
        d.set_item("compactions", s.compactions)?;
        d.set_item("torn_tails_truncated", s.torn_tails_truncated)?;
        d.set_item("wals_dropped", s.wals_dropped)?;
        d.set_item("spare_wals_taken", s.spare_wals_taken)?;
        d.set_item("spare_wal_ready", s.spare_wal_ready)?;
        d.set_item("gets", s.gets)?;
        d.set_item("table_probes", s.table_probes)?;
        d.set_item("filter_skips", s.filter_skips)?;
        d.set_item("row_cache_hits", r.hits)?;
        d.set_item("row_cache_misses", r.misses)?;
        d.set_item("row_cache_evictions", r.evictions)?;
        d.set_item("row_cache_declined", r.declined)?;
        d.set_item("row_cache_rows", r.rows)?;
        d.set_item("row_cache_bytes", r.bytes)?;
        d.set_item("row_cache_capacity_bytes", r.capacity_bytes)?;
        d.set_item("file_bytes", s.file_bytes)?;
        d.set_item("max_bytes", s.max_bytes)?;
        d.set_item("evicted_tables", s.evicted_tables)?;
        d.set_item("evicted_entries", s.evicted_entries)?;
        d.set_item("evicted_bytes", s.evicted_bytes)?;
        d.set_item("expired_tables", s.expired_tables)?;
        d.set_item("expired_bytes", s.expired_bytes)?;
        d.set_item("full_refusals", s.full_refusals)?;
        d.set_item("compactions_skipped_for_space", s.compactions_skipped_for_space)?;
        Ok(d)
    }
}
