//! The crate's one error type, [`Error`], generic over the storage's own error, and the one
//! place where lower-level failures (a storage call's error, a format reader's [`ReadError`])
//! become an [`Error`].

use core::fmt;

use crate::log::warn_event;
use crate::names::{file_name, FileKind, FileName};

/// What exactly was wrong with bytes read back from storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Corruption {
    /// A record's or a table section's CRC-32C did not match its bytes.
    ChecksumMismatch {
        /// The checksum stored on disk.
        expected: u32,
        /// The checksum of the bytes actually read.
        got: u32,
    },
    /// A record header declared a length outside `1..=MAX_RECORD_LEN`.
    BadLength(u32),
    /// The file ended inside a structure that must be whole.
    Truncated,
    /// An SSTable footer or a WAL header did not start with its magic number.
    BadMagic,
    /// An SSTable or a WAL was written by a format version this build does not read.
    UnsupportedVersion(u16),
    /// A checksummed record decoded to an impossible entry (unknown kind, lengths that disagree).
    BadEntry,
    /// SSTable keys were not strictly ascending, or an index offset pointed outside the data.
    BadLayout,
    /// A WAL record failed its checks and valid records follow it that prove it had been synced
    /// (their watermark lies past it; in a WAL of format 1, any valid record): not a torn tail.
    WalRecordBeforeValidData,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::ChecksumMismatch { expected, got } => {
                write!(f, "checksum mismatch (stored {expected:#010x}, computed {got:#010x})")
            }
            Corruption::BadLength(len) => write!(f, "record length {len} out of range"),
            Corruption::Truncated => f.write_str("file ends inside a structure"),
            Corruption::BadMagic => f.write_str("bad magic number"),
            Corruption::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Corruption::BadEntry => f.write_str("malformed entry"),
            Corruption::BadLayout => f.write_str("keys out of order or offset out of range"),
            Corruption::WalRecordBeforeValidData => {
                f.write_str("damaged WAL record followed by valid records")
            }
        }
    }
}

/// A failure while reading a file format: the storage failed, or the bytes are wrong.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReadError<E> {
    /// The storage failed.
    Io(E),
    /// The bytes at `offset` are damaged.
    Corrupt {
        /// Where the damaged structure starts.
        offset: u64,
        /// What is wrong with it.
        kind: Corruption,
    },
}

impl<E> From<E> for ReadError<E> {
    fn from(e: E) -> Self {
        ReadError::Io(e)
    }
}

/// Every way a [`crate::Db`] operation can fail.
///
/// `E` is the storage's own error type ([`crate::Storage::Error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The storage failed; its error is carried unchanged.
    Storage(E),
    /// Bytes on storage failed a check. Nothing was skipped: the operation stopped here.
    Corrupted {
        /// The damaged file.
        file: FileName,
        /// Byte offset in that file where the damaged structure starts.
        offset: u64,
        /// What was wrong.
        kind: Corruption,
    },
    /// Keys must hold at least one byte.
    EmptyKey,
    /// The key is longer than [`crate::MAX_KEY_LEN`].
    KeyTooLarge {
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than [`crate::MAX_VALUE_LEN`], or the entry cannot fit in one MemTable
    /// arena of this database's memory budget.
    ValueTooLarge {
        /// Length given.
        len: usize,
        /// The largest value this database accepts with this key length.
        max: usize,
    },
    /// A write batch larger than one MemTable can take (bytes, or keys).
    BatchTooLarge {
        /// Encoded bytes of the batch.
        len: usize,
        /// The most bytes a batch may take with this memory budget.
        max: usize,
    },
    /// An expiry at or before the current time, which would store an already-dead entry.
    InvalidTtl,
    /// A range delete whose end is not after its start.
    EmptyRange,
    /// The caller's buffer cannot hold the value; `needed` bytes are required.
    BufferTooSmall {
        /// The value's length.
        needed: usize,
    },
    /// The database already holds [`crate::limits::MAX_TABLES`] SSTables (on open: the
    /// directory holds more live ones; replaced tables a crash left beside them do not count).
    TooManyTables,
    /// The directory holds more than [`crate::limits::MAX_WALS`] WAL files still to replay
    /// (WALs the tables already cover do not count).
    TooManyWals,
    /// The memory given to [`crate::Db::open`] is too small for the configuration.
    InsufficientMemory {
        /// Bytes required.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// Existing data needs larger MemTables than were given: a WAL record (one entry or one
    /// write batch) does not fit in a MemTable buffer of `given` bytes; buffers of `needed` bytes
    /// hold it. Open with MemTables at least that large (the size the data was written with).
    MemTableTooSmall {
        /// The WAL that holds the record.
        file: FileName,
        /// The smallest MemTable buffer, in bytes, that holds the record.
        needed: usize,
        /// The MemTable buffer given, in bytes.
        given: usize,
    },
    /// An earlier write or sync failed, so what is on storage is unknown; reopen the database.
    Poisoned,
    /// No room for this write: the database is at [`crate::Config::max_bytes`] with
    /// [`crate::WhenFull::RefuseWrites`], or the storage is full ([`crate::Storage::is_full`])
    /// and nothing could be evicted. Nothing of the write was stored, and the database is not
    /// poisoned: reads go on, and writes succeed again once there is room (deletes, compaction,
    /// eviction, or space freed on the storage).
    Full,
    /// Both MemTables are busy: the active one is full and the other is still being written
    /// out by a flush the caller runs apart from the database ([`crate::Db::plan_flush`]).
    /// Nothing of the write was stored (it was refused before its WAL record) and the database
    /// is not poisoned: install the flush ([`crate::Db::install_flush`]), then write again.
    FlushPending,
    /// [`crate::Config::max_bytes`] is below what the database needs to work within it with
    /// these MemTables ([`crate::space::min_max_bytes`]).
    MaxBytesTooSmall {
        /// The least cap, in bytes.
        needed: u64,
        /// The cap given.
        given: u64,
    },
    /// The database was opened read-only ([`crate::Config::read_only`]).
    ReadOnly,
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Storage(e) => write!(f, "storage error: {e}"),
            Error::Corrupted { file, offset, kind } => {
                write!(f, "corruption in {} at offset {offset}: {kind}", file.as_str())
            }
            Error::EmptyKey => f.write_str("empty key"),
            Error::KeyTooLarge { len, max } => write!(f, "key of {len} bytes exceeds {max}"),
            Error::ValueTooLarge { len, max } => write!(f, "value of {len} bytes exceeds {max}"),
            Error::BatchTooLarge { len, max } => {
                write!(f, "write batch of {len} bytes exceeds {max} (or has more keys than a MemTable holds)")
            }
            Error::InvalidTtl => f.write_str("expiry time is not in the future"),
            Error::EmptyRange => f.write_str("range delete whose end is not after its start"),
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::TooManyTables => write!(f, "too many SSTables (max {})", crate::limits::MAX_TABLES),
            Error::TooManyWals => write!(f, "too many WAL files (max {})", crate::limits::MAX_WALS),
            Error::InsufficientMemory { needed, given } => {
                write!(f, "memory budget of {given} bytes is below the {needed} required")
            }
            Error::MemTableTooSmall { file, needed, given } => write!(
                f,
                "{} holds a record that needs MemTables of at least {needed} bytes; {given} bytes were given",
                file.as_str()
            ),
            Error::Poisoned => f.write_str("an earlier write or sync failed; reopen the database"),
            Error::Full => f.write_str("no space: the database is at its size cap or the storage is full"),
            Error::FlushPending => f.write_str("both MemTables are busy: a flush is still running"),
            Error::MaxBytesTooSmall { needed, given } => {
                write!(f, "max_bytes of {given} is below the {needed} these MemTables need")
            }
            Error::ReadOnly => f.write_str("the database is open read-only"),
        }
    }
}

/// `Display` already includes the storage's error, so `source()` is `None`: an error chain
/// printed whole (anyhow's `{:#}`) says it once.
impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {}

impl<E> Error<E> {
    /// True for [`Error::Corrupted`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupted { .. })
    }

    /// A copy of this error, its storage error (if it is one) made by `storage`: for a host
    /// that reports one failure to several callers when `E` cannot be cloned (an `io::Error`).
    pub fn copy_with<F>(&self, storage: impl FnOnce(&E) -> F) -> Error<F> {
        match self {
            Error::Storage(e) => Error::Storage(storage(e)),
            Error::Corrupted { file, offset, kind } => {
                Error::Corrupted { file: file.clone(), offset: *offset, kind: *kind }
            }
            Error::EmptyKey => Error::EmptyKey,
            Error::KeyTooLarge { len, max } => Error::KeyTooLarge { len: *len, max: *max },
            Error::ValueTooLarge { len, max } => Error::ValueTooLarge { len: *len, max: *max },
            Error::BatchTooLarge { len, max } => Error::BatchTooLarge { len: *len, max: *max },
            Error::InvalidTtl => Error::InvalidTtl,
            Error::EmptyRange => Error::EmptyRange,
            Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed: *needed },
            Error::TooManyTables => Error::TooManyTables,
            Error::TooManyWals => Error::TooManyWals,
            Error::InsufficientMemory { needed, given } => {
                Error::InsufficientMemory { needed: *needed, given: *given }
            }
            Error::MemTableTooSmall { file, needed, given } => {
                Error::MemTableTooSmall { file: file.clone(), needed: *needed, given: *given }
            }
            Error::Poisoned => Error::Poisoned,
            Error::Full => Error::Full,
            Error::FlushPending => Error::FlushPending,
            Error::MaxBytesTooSmall { needed, given } => {
                Error::MaxBytesTooSmall { needed: *needed, given: *given }
            }
            Error::ReadOnly => Error::ReadOnly,
        }
    }
}

impl<E> ReadError<E> {
    /// The [`Error`] for this failure while reading file `id` of `kind`. The file's name is made
    /// only here, when something failed.
    pub fn in_file(self, kind: FileKind, id: u64) -> Error<E> {
        match self {
            ReadError::Io(e) => Error::Storage(e),
            ReadError::Corrupt { offset, kind: what } => corrupted(file_name(kind, id), offset, what),
        }
    }

    /// The [`Error`] for this failure while reading the file `name`.
    pub fn in_named(self, name: &FileName) -> Error<E> {
        match self {
            ReadError::Io(e) => Error::Storage(e),
            ReadError::Corrupt { offset, kind } => corrupted(name.clone(), offset, kind),
        }
    }
}

/// [`Error::Corrupted`]: `file` is damaged at `offset`.
pub fn corrupted<E>(file: FileName, offset: u64, kind: Corruption) -> Error<E> {
    warn_event!("corruption: {=str} at offset {=u64}: {}", file.as_str(), offset, kind);
    Error::Corrupted { file, offset, kind }
}

/// `?` for storage calls and format readers inside the engine: the conversions above, as methods.
pub(crate) trait ResultExt<T, E> {
    /// A storage call's error becomes [`Error::Storage`].
    fn storage(self) -> Result<T, Error<E>>;
}

impl<T, E> ResultExt<T, E> for Result<T, E> {
    fn storage(self) -> Result<T, Error<E>> {
        self.map_err(Error::Storage)
    }
}

/// `?` for format readers: see [`ReadError::in_file`] and [`ReadError::in_named`].
pub(crate) trait ReadResultExt<T, E> {
    /// The failure of reading file `id` of `kind`.
    fn in_file(self, kind: FileKind, id: u64) -> Result<T, Error<E>>;
    /// The failure of reading the file `name`.
    fn in_named(self, name: &FileName) -> Result<T, Error<E>>;
}

impl<T, E> ReadResultExt<T, E> for Result<T, ReadError<E>> {
    fn in_file(self, kind: FileKind, id: u64) -> Result<T, Error<E>> {
        self.map_err(|e| e.in_file(kind, id))
    }
    fn in_named(self, name: &FileName) -> Result<T, Error<E>> {
        self.map_err(|e| e.in_named(name))
    }
}
