//! [`Error`]: every way a [`crate::Db`] call can fail.

use std::fmt;
use std::io;
use std::path::PathBuf;

use minivault_core::BatchError;

/// Every way a [`crate::Db`] call can fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another handle) has the database open.
    Locked {
        /// The database directory.
        dir: PathBuf,
    },
    /// The directory could not be created, opened or locked.
    Open {
        /// The database directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The engine reported an error (storage I/O, corruption, limits, poisoning).
    Engine(minivault_core::Error<io::Error>),
    /// An entry could not be added to a [`crate::WriteBatch`].
    Batch(BatchError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Locked { dir } => {
                write!(f, "database is locked: {} is in use by another process", dir.display())
            }
            Error::Open { dir, source } => write!(f, "cannot open {}: {source}", dir.display()),
            Error::Engine(e) => e.fmt(f),
            Error::Batch(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Open { source, .. } => Some(source),
            Error::Engine(minivault_core::Error::Storage(e)) => Some(e),
            _ => None,
        }
    }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Self {
        Error::Batch(e)
    }
}

impl From<minivault_core::Error<io::Error>> for Error {
    fn from(e: minivault_core::Error<io::Error>) -> Self {
        Error::Engine(e)
    }
}

impl Error {
    /// True when the error reports damaged data on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Engine(e) if e.is_corruption())
    }
}
