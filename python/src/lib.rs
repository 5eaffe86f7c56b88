//! The `minivault` Python module (PyO3, abi3: one wheel for CPython 3.9 and later): the
//! [`minivault_posix::Db`] as a Pythonic object. See `python/README.md` and the module's
//! docstring (`help(minivault)`).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod batch;
mod db;
mod errors;
mod iter;

use pyo3::prelude::*;

/// MiniVaultDB: an embedded, durable, sorted key-value store (an LSM tree) for feature caches,
/// experiment metadata and telemetry buffers. One process opens a database directory at a
/// time (others get minivault.Locked, or open it read_only=True).
///
///     import minivault
///     with minivault.open("features", durability="always") as db:
///         db[b"user/42/embedding"] = vector.tobytes()
///         db.put(b"session/abc", b"token", ttl=60)     # expires in 60 s
///         v = db[b"user/42/embedding"]                 # KeyError when absent
///         v = db.get(b"user/7/embedding", None)        # or a default
///         b"user/42/embedding" in db                   # True
///         del db[b"session/abc"]                        # KeyError when absent
///         for key, value in db.prefix(b"user/"):       # in key order
///             ...
///         for key, value in db.range(b"a", b"m", reverse=True):
///             ...
///         with db.batch() as b:                        # all or nothing
///             b.put(b"run/7/status", b"done")
///             b.delete(b"queue/7")
///         db.stats()["tables"]
///
/// Keys (1 to 1024 bytes) and values (up to 1 MiB) are bytes; bytearray and memoryview are
/// accepted; str is refused (TypeError): encode it. Values come back as bytes.
///
/// Exceptions: minivault.Error and its subclasses Corrupted, Locked, Full, ReadOnly, Poisoned
/// and Closed for what the database reports; ValueError for arguments out of range (an empty
/// or too long key, a too large value or batch, ttl <= 0, options); TypeError for non-bytes
/// keys and values; KeyError from db[key] and del db[key].
///
/// Threads: a Db may be shared by threads; calls run in parallel and release the GIL while
/// they do I/O.
#[pymodule]
#[pyo3(name = "minivault")]
fn minivault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(db::open, m)?)?;
    m.add_class::<db::PyDb>()?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<iter::RangeIter>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_KEY_LEN", minivault_posix::MAX_KEY_LEN)?;
    m.add("MAX_VALUE_LEN", minivault_posix::MAX_VALUE_LEN)?;
    Ok(())
}
