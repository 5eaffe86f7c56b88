//! Options: what the caller decides when opening a database — its clock, when the WAL is
//! synced, how far the WAL is extended ahead of the writer, and whether anything may be written.

/// The source of "now" for TTLs, in whatever unit the caller's expiry times use.
pub trait Clock {
    /// The current time.
    fn now(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now(&mut self) -> u64 {
        self()
    }
}

/// When the WAL is synced, which decides what a power cut can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyncPolicy {
    /// Sync after every write, before it is acknowledged. A power cut loses nothing acknowledged.
    EveryWrite,
    /// Sync after every `n`-th write (and on [`crate::Db::sync`], rotation and close). A power cut
    /// can lose the last `n - 1` acknowledged writes.
    EveryN(u32),
    /// Sync only on [`crate::Db::sync`], rotation and close. A power cut can lose every write since.
    Manual,
}

/// Options for [`crate::Db::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// When writes become durable. Default [`SyncPolicy::EveryWrite`].
    pub sync: SyncPolicy,
    /// How far ahead of the writer the WAL file is extended with zeros
    /// ([`crate::Storage::preallocate`]), so that a sync has no file size to commit. `None` (the
    /// default): a quarter of a MemTable, rounded up to 4 KiB, at most 1 MiB
    /// ([`crate::wal::preallocation_chunk`]); `Some(0)`: never extended (the WAL grows with its
    /// records); `Some(n)`: `n` rounded up to 4 KiB. It is also about the most a fresh database's
    /// WAL occupies on disk beyond its records.
    pub wal_preallocation: Option<u64>,
    /// Open without writing anything: no recovery that changes files (a torn WAL tail is just
    /// the end, leftovers of interrupted flushes and compactions are ignored rather than
    /// removed), no new WAL, and every write call fails with [`crate::Error::ReadOnly`]. The
    /// state seen is the one on storage when it was opened. Default `false`.
    pub read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::with_sync(SyncPolicy::EveryWrite)
    }
}

impl Config {
    /// The default configuration with `sync` as its sync policy.
    pub const fn with_sync(sync: SyncPolicy) -> Self {
        Config { sync, wal_preallocation: None, read_only: false }
    }
}
