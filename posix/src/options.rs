//! [`Options`] of a [`crate::Db`] and its [`Durability`] modes.

use std::time::Duration;

use crate::{row_cache, storage};

/// When a write is durable: what a power cut can take. A `kill -9` takes nothing in any mode:
/// every write reaches the operating system before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The default: a put or delete returns only after its WAL record is on the device
    /// (`fdatasync`). A power cut loses nothing that was acknowledged.
    Always,
    /// Sync every `n` writes: a power cut can lose up to the last `n - 1` acknowledged writes.
    EveryN(u32),
    /// Sync on the first write at least this long after the previous sync, and on [`crate::Db::sync`],
    /// [`crate::Db::flush`] and drop. A power cut can lose the writes made since the last sync: those
    /// of the last interval, or, if writing then paused, everything since the last sync.
    Periodic(Duration),
    /// Sync only on [`crate::Db::sync`], [`crate::Db::flush`], MemTable rotation and drop.
    Manual,
}

/// Options for [`crate::Db::open_with`].
///
/// Memory: a [`crate::Db`] holds at most `2 × memtable_bytes + cache_bytes + row_cache_bytes` plus a
/// small fixed overhead (a read buffer as large as the largest value read, the SSTable list,
/// file handles). With the defaults: 2 × 4 + 8 + 4 = 20 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Bytes of each of the two MemTables (so the engine's memory is twice this). Bounds the
    /// largest entry and the size of each SSTable. Default 4 MiB.
    pub memtable_bytes: usize,
    /// When writes become durable. Default [`Durability::Always`].
    pub durability: Durability,
    /// Bytes of SSTable pages kept in memory for reads (0: none). Default 8 MiB.
    pub cache_bytes: usize,
    /// Bytes of recently read rows (key → value) kept in memory, so that a hot key is read
    /// without searching the SSTables (0: none). A row is charged twice its key, its value and
    /// [`row_cache::ENTRY_OVERHEAD`] (170 on 64-bit targets) bytes for its allocations and its places in the
    /// cache's index. Default 4 MiB ([`row_cache::DEFAULT_ROW_CACHE_BYTES`]).
    pub row_cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_bytes: 4 << 20,
            durability: Durability::Always,
            cache_bytes: storage::DEFAULT_CACHE_BYTES,
            row_cache_bytes: row_cache::DEFAULT_ROW_CACHE_BYTES,
        }
    }
}
