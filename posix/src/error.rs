//! [`Error`]: every way a [`crate::Db`] call can fail.
//!
//! `Display` gives the whole message, the OS error's included (`cannot open db: Permission
//! denied (os error 13)`), so a plain `{}` tells the user why. The error therefore has no
//! [`std::error::Error::source`]: a printer that walks the chain (`anyhow`'s `{:#}`) shows each
//! cause once. The `io::Error` itself is in the variant, for code that needs it
//! ([`Error::Open`]'s `source`, [`Error::Engine`] with [`minivault_core::Error::Storage`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use minivault_core::BatchError;

use crate::repl::human_bytes;

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
    /// A size in [`crate::Options`] is outside its documented range ([`crate::SizeLimit`]).
    InvalidOption {
        /// The option's field name, e.g. `memtable_bytes`.
        option: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// The engine reported an error (storage I/O, corruption, limits, poisoning). At open,
    /// [`minivault_core::Error::MemTableTooSmall`] means the database holds a record written
    /// with larger MemTables than these: reopen it with MemTables of `needed` bytes; nothing is
    /// lost.
    Engine(minivault_core::Error<io::Error>),
    /// An entry could not be added to a [`crate::WriteBatch`].
    Batch(BatchError),
    /// An outbox call was refused ([`crate::outbox`]): a bad name, an acknowledgement beyond
    /// the newest record, a foreign key in the outbox's key space.
    Outbox(crate::outbox::OutboxError),
    /// A snapshot's (or an iterator's) MemTable generation is no longer in the engine and no
    /// copy of it was kept (`crate::pins`): not expected to happen; reported instead of an answer
    /// from another moment.
    SnapshotUnavailable {
        /// The MemTable generation the snapshot pinned.
        generation: u64,
    },
    /// The thread that took this write into its write group (with [`crate::Durability::Always`],
    /// concurrent writes go to the WAL together) panicked, or gave no answer for it: whether the
    /// write was stored is unknown. Not expected to happen; reported instead of waiting for good.
    WriteAbandoned,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Locked { dir } => {
                write!(f, "database is locked: {} is in use by another process", dir.display())
            }
            Error::Open { dir, source } => write!(f, "cannot open {}: {source}", dir.display()),
            Error::InvalidOption { option, value, min, max } => write!(
                f,
                "{option} = {value} is out of range: it must be {min} ..= {max} ({} to {})",
                human_bytes(*min),
                human_bytes(*max)
            ),
            Error::Engine(e) => e.fmt(f),
            Error::Batch(e) => e.fmt(f),
            Error::Outbox(e) => e.fmt(f),
            Error::SnapshotUnavailable { generation } => {
                write!(f, "the MemTable generation {generation} a snapshot reads is no longer held")
            }
            Error::WriteAbandoned => f.write_str(
                "the thread writing this write's group gave no answer for it: whether it was stored is unknown",
            ),
        }
    }
}

/// No source: the message already says everything (see the module docs).
impl std::error::Error for Error {}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Self {
        Error::Batch(e)
    }
}

impl From<crate::outbox::OutboxError> for Error {
    fn from(e: crate::outbox::OutboxError) -> Self {
        Error::Outbox(e)
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

    /// A copy of this error, for one failure reported to several callers (the writers of one
    /// group). `io::Error` is not `Clone`: an OS error is copied by its code, another by its
    /// kind and message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Locked { dir } => Error::Locked { dir: dir.clone() },
            Error::Open { dir, source } => Error::Open { dir: dir.clone(), source: copy_io(source) },
            Error::InvalidOption { option, value, min, max } => {
                Error::InvalidOption { option, value: *value, min: *min, max: *max }
            }
            Error::Engine(e) => Error::Engine(e.copy_with(copy_io)),
            Error::Batch(e) => Error::Batch(*e),
            Error::Outbox(e) => Error::Outbox(e.clone()),
            Error::SnapshotUnavailable { generation } => {
                Error::SnapshotUnavailable { generation: *generation }
            }
            Error::WriteAbandoned => Error::WriteAbandoned,
        }
    }
}

/// A copy of `e`: the same OS error, or the same kind and message.
fn copy_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
