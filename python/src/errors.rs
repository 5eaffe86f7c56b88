//! The exception hierarchy and the one place where a Rust error becomes a Python exception.
//!
//! ```text
//! Exception
//! └── minivault.Error            every database failure (I/O errors among them)
//!     ├── Corrupted              data on disk failed a check (file and offset in the message)
//!     ├── Locked                 another process (or handle) has the database open
//!     ├── Full                   at max_bytes (when_full="refuse_writes"), no space left on the
//!     │                          disk (ENOSPC, EDQUOT, EFBIG), or the SSTable/WAL limit
//!     ├── ReadOnly               a write, flush or sync on a read-only handle
//!     ├── Poisoned               an earlier write or sync failed: reopen the database
//!     └── Closed                 the database was closed
//! ValueError                     an empty key, a key/value/batch too large, a TTL <= 0, an
//!                                option out of range (what the caller passed, not the database)
//! TypeError                      a key or value that is not bytes, bytearray or memoryview
//! KeyError                       db[key] or del db[key] of an absent key
//! ```

use std::io;

use minivault_posix::{BatchError, EngineError, Error};

use exc::{Closed, Corrupted, Full, Locked, Poisoned, ReadOnly};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The exception classes (in their own module, so that the base class can be called `Error`
/// as Python sees it).
pub(crate) mod exc {
    use pyo3::create_exception;
    use pyo3::exceptions::PyException;

    create_exception!(minivault, Error, PyException, "Base class of every MiniVaultDB failure.");
    create_exception!(
        minivault,
        Corrupted,
        Error,
        "Data on disk failed a check (the message names the file and offset). Nothing was skipped."
    );
    create_exception!(minivault, Locked, Error, "Another process (or handle) has the database open.");
    create_exception!(
        minivault,
        Full,
        Error,
        "No space: the database is at its max_bytes cap (when_full=\"refuse_writes\"), the file system is full, or the database holds as many SSTables or WAL files as it can. Deletes are still taken."
    );
    create_exception!(minivault, ReadOnly, Error, "A write, flush or sync on a read-only handle.");
    create_exception!(
        minivault,
        Poisoned,
        Error,
        "An earlier write or sync failed: the handle refuses writes until the database is reopened."
    );
    create_exception!(minivault, Closed, Error, "The database (or the batch's database) was closed.");
}

/// The Python exception for an error of the Rust API.
pub(crate) fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Locked { .. } => Locked::new_err(message),
        Error::Open { source, .. } => io_error(&source, message),
        Error::InvalidOption { .. } => PyValueError::new_err(message),
        Error::Engine(engine) => match engine {
            EngineError::Storage(source) => io_error(&source, message),
            EngineError::Corrupted { .. } => Corrupted::new_err(message),
            EngineError::EmptyKey
            | EngineError::InvalidTtl
            | EngineError::EmptyRange
            | EngineError::MaxBytesTooSmall { .. }
            | EngineError::KeyTooLarge { .. }
            | EngineError::ValueTooLarge { .. }
            | EngineError::BatchTooLarge { .. }
            | EngineError::InsufficientMemory { .. }
            | EngineError::MemTableTooSmall { .. } => PyValueError::new_err(message),
            EngineError::Full | EngineError::TooManyTables | EngineError::TooManyWals => {
                Full::new_err(message)
            }
            EngineError::Poisoned => Poisoned::new_err(message),
            EngineError::ReadOnly => ReadOnly::new_err(message),
            _ => exc::Error::new_err(message),
        },
        Error::Batch(BatchError::Full) => PyValueError::new_err(message),
        Error::Batch(_) => PyValueError::new_err(message),
        _ => exc::Error::new_err(message),
    }
}

/// `Full` for the OS errors that mean "no space", `minivault.Error` for the others.
fn io_error(e: &io::Error, message: String) -> PyErr {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => Full::new_err(message),
        _ => exc::Error::new_err(message),
    }
}

/// `Closed`, for a call on a closed database.
pub(crate) fn closed() -> PyErr {
    Closed::new_err("the database is closed")
}

/// Registers the exceptions in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<exc::Error>())?;
    m.add("Corrupted", py.get_type::<Corrupted>())?;
    m.add("Locked", py.get_type::<Locked>())?;
    m.add("Full", py.get_type::<Full>())?;
    m.add("ReadOnly", py.get_type::<ReadOnly>())?;
    m.add("Poisoned", py.get_type::<Poisoned>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    Ok(())
}
