//! Space: the database's storage budget ([`Config::max_bytes`]) and what happens when space runs
//! out ([`WhenFull`]), at the cap or on a full storage ([`Storage::is_full`]).
//!
//! [`Space`] owns the cap, the policy and the eviction counters. What counts against the cap is
//! every file the database keeps: the SSTables and the WAL files, headers and preallocated zero
//! tails included ([`Space::used`]). It is checked after each flush and compaction and at open:
//! - [`WhenFull::DropOldest`]: the oldest SSTables are removed whole, oldest first, until the
//!   files fit (the newest table stays). Compaction then writes tables of at most
//!   [`max_merge_bytes`] (an eighth of the cap), so one eviction drops at most about that much.
//! - [`WhenFull::RefuseWrites`]: puts and batches that add data fail with [`Error::Full`] while
//!   the files plus what one write can add ([`Space::write_reserve`]: two MemTables and a WAL
//!   extension) exceed the cap; deletes and range deletes are taken, and compaction reclaims what
//!   they free.
//!
//! Neither poisons the database. A storage that reports itself full is treated the same way,
//! wherever the failed call left nothing the engine depends on: a WAL extension or record write
//! (the record is cut off again), a new WAL, a flush's or a compaction's temporary table (removed
//! again). [`Error::Full`] then means "nothing of this write was stored". A failed sync, rename
//! or directory sync still poisons: what is on storage is unknown after those.
//!
//! # Peaks
//! The cap holds between calls. While a flush or compaction runs, its temporary table is there
//! as well as its inputs: up to one MemTable's table for a flush, and up to the inputs' size for a
//! compaction (at most [`max_merge_bytes`] with `DropOldest`; up to all tables with
//! `RefuseWrites`), for each compaction running at once (one at a time inline; with
//! `CompactionMode::External`, as many as the host runs). Give the storage that much room beyond
//! the cap; if it has less, the failed
//! compaction is skipped and the data stays as it was. With `RefuseWrites` the cap can also be
//! passed by the deletes taken at the cap (each a small record).

use crate::error::Error;
use crate::options::{Config, WhenFull};
use crate::sstable::TableInfo;
use crate::storage::Storage;

/// The least [`Config::max_bytes`] for MemTable buffers of `memtable_bytes`: room for the two
/// WALs a full pair of MemTables can need, a table of each, and the tables compaction keeps.
pub fn min_max_bytes(memtable_bytes: usize) -> u64 {
    16 * memtable_bytes as u64
}

/// The largest compaction (sum of its input tables) under a cap of `max_bytes` with
/// [`WhenFull::DropOldest`]: an eighth of the cap, so that eviction works in steps of at most
/// about that much.
pub fn max_merge_bytes(max_bytes: u64) -> u64 {
    max_bytes / 8
}

/// What eviction has removed since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evicted {
    /// SSTables removed.
    pub tables: u64,
    /// Entries they held (tombstones included).
    pub entries: u64,
    /// Bytes they took.
    pub bytes: u64,
}

/// The cap, the policy, and what eviction removed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Space {
    max_bytes: Option<u64>,
    when_full: WhenFull,
    evicted: Evicted,
    /// Writes refused with [`Error::Full`] since open.
    refused: u64,
}

impl Space {
    /// The budget `config` asks for, checked against MemTable buffers of `memtable_bytes`.
    pub fn new<E>(config: &Config, memtable_bytes: usize) -> Result<Self, Error<E>> {
        if let Some(given) = config.max_bytes {
            let needed = min_max_bytes(memtable_bytes);
            if given < needed {
                return Err(Error::MaxBytesTooSmall { needed, given });
            }
        }
        Ok(Space { max_bytes: config.max_bytes, when_full: config.when_full, ..Space::default() })
    }

    /// The cap, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// True when running out of space removes the oldest tables.
    pub fn evicts(&self) -> bool {
        self.when_full == WhenFull::DropOldest
    }

    /// What eviction has removed since open.
    pub fn evicted(&self) -> Evicted {
        self.evicted
    }

    /// Writes refused for want of space since open.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Counts a write refused with [`Error::Full`].
    pub fn count_refusal(&mut self) {
        self.refused += 1;
    }

    /// Takes the latest [`Space::count_refusal`] back (the write is tried again in pieces).
    pub fn forgive_refusal(&mut self) {
        self.refused = self.refused.saturating_sub(1);
    }

    /// Counts a table eviction removed.
    pub fn count_eviction(&mut self, table: TableInfo) {
        self.evicted.tables += 1;
        self.evicted.entries += u64::from(table.entries);
        self.evicted.bytes += table.bytes;
    }

    /// Bytes the database's files take: `table_bytes` of SSTables and `wal_bytes` of WAL files.
    pub fn used(table_bytes: u64, wal_bytes: u64) -> u64 {
        table_bytes.saturating_add(wal_bytes)
    }

    /// True when `used` bytes are over the cap.
    pub fn over(&self, used: u64) -> bool {
        self.max_bytes.is_some_and(|max| used > max)
    }

    /// The room a write must find under the cap with [`WhenFull::RefuseWrites`]: what one write
    /// can add to the files of a database with MemTable buffers of `memtable_bytes` and a WAL
    /// extended `wal_chunk` bytes at a time: its record, a WAL extension, and the table of a
    /// flush of the other MemTable (each at most about one MemTable buffer).
    pub fn write_reserve(memtable_bytes: usize, wal_chunk: u64) -> u64 {
        2 * memtable_bytes as u64 + wal_chunk
    }

    /// True when a write that adds data must be refused: [`WhenFull::RefuseWrites`] and `used`
    /// bytes plus `reserve` ([`Space::write_reserve`]) over the cap.
    pub fn refuses(&self, used: u64, reserve: u64) -> bool {
        self.when_full == WhenFull::RefuseWrites && self.over(used.saturating_add(reserve))
    }

    /// The most input bytes one compaction may merge: an eighth of the cap with
    /// [`WhenFull::DropOldest`], no limit of its own otherwise.
    pub fn merge_limit(&self) -> Option<u64> {
        match (self.when_full, self.max_bytes) {
            (WhenFull::DropOldest, Some(max)) => Some(max_merge_bytes(max)),
            _ => None,
        }
    }
}

/// `error` from `storage` as the engine reports it: [`Error::Full`] when the storage says it is
/// out of space, [`Error::Storage`] otherwise. Only for calls whose failure leaves nothing the
/// engine depends on (see the module docs).
pub fn no_space<S: Storage>(storage: &S, error: S::Error) -> Error<S::Error> {
    if storage.is_full(&error) {
        Error::Full
    } else {
        Error::Storage(error)
    }
}

/// The error of writing the temporary table `tmp` (a flush's or a compaction's), whose handle
/// the caller has dropped: on a full storage the file is removed and the error is
/// [`Error::Full`], since nothing depends on it; any other error is returned as it is.
pub fn discard_if_full<S: Storage>(storage: &mut S, tmp: &str, error: Error<S::Error>) -> Error<S::Error> {
    match error {
        Error::Storage(e) if storage.is_full(&e) => match storage.remove(tmp) {
            Ok(()) => Error::Full,
            Err(e) => Error::Storage(e),
        },
        other => other,
    }
}
