//! The crate's one error type, [`Error`], generic over the storage's own error.

use core::fmt;

use crate::FileName;

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
    /// An SSTable footer did not start with the magic number.
    BadMagic,
    /// An SSTable was written by a format version this build does not read.
    UnsupportedVersion(u16),
    /// A checksummed record decoded to an impossible entry (unknown kind, lengths that disagree).
    BadEntry,
    /// SSTable keys were not strictly ascending, or an index offset pointed outside the data.
    BadLayout,
    /// A WAL record failed its checks and valid records follow it: not a torn tail.
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
    /// The caller's buffer cannot hold the value; `needed` bytes are required.
    BufferTooSmall {
        /// The value's length.
        needed: usize,
    },
    /// The database already holds [`crate::MAX_TABLES`] SSTables.
    TooManyTables,
    /// The directory holds more than [`crate::MAX_WALS`] WAL files.
    TooManyWals,
    /// The memory given to [`crate::Db::open`] is too small for the configuration.
    InsufficientMemory {
        /// Bytes required.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// An earlier write or sync failed, so what is on storage is unknown; reopen the database.
    Poisoned,
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
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::TooManyTables => write!(f, "too many SSTables (max {})", crate::MAX_TABLES),
            Error::TooManyWals => write!(f, "too many WAL files (max {})", crate::MAX_WALS),
            Error::InsufficientMemory { needed, given } => {
                write!(f, "memory budget of {given} bytes is below the {needed} required")
            }
            Error::Poisoned => f.write_str("an earlier write or sync failed; reopen the database"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {}

impl<E> Error<E> {
    /// True for [`Error::Corrupted`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupted { .. })
    }
}
