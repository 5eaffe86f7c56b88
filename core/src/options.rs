//! Options: what the caller decides when opening a database — its clock, when the WAL is
//! synced, how far the WAL is extended ahead of the writer, whether anything may be written, and
//! how much storage it may take and what happens when that runs out.

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
    /// The most bytes the database's files (SSTables and WALs, preallocated tails included) may
    /// hold after each call; `None` (the default): no cap but the storage's own size. What
    /// happens at the cap is [`Config::when_full`]; see [`crate::space`] for what counts and the
    /// room a flush or a compaction takes on top. At least [`crate::space::min_max_bytes`] of
    /// the MemTable size, or the open fails with [`crate::Error::MaxBytesTooSmall`].
    pub max_bytes: Option<u64>,
    /// What happens when the cap ([`Config::max_bytes`]) is reached or the storage itself is
    /// full. Default [`WhenFull::RefuseWrites`]: data is dropped only when the caller asks for it.
    pub when_full: WhenFull,
    /// When compactions run. Default [`CompactionMode::Inline`].
    pub compaction: CompactionMode,
}

/// When compactions (merges of SSTables) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CompactionMode {
    /// Whole compactions, in the write whose flush calls for one (and in [`crate::Db::flush`]
    /// and at open), with the idle MemTable's buffer as scratch memory. The default: nothing
    /// else to call, no memory beyond the two MemTables; the write that triggers a compaction
    /// waits for all of it.
    #[default]
    Inline,
    /// The caller runs them, apart from the database: [`crate::Db::plan_compaction`], then
    /// [`crate::compaction::execute`] (or [`crate::compaction::Execution`], in steps) on a
    /// storage handle of its own, perhaps on another thread, then
    /// [`crate::Db::install_compaction`]; or, without threads, [`crate::Db::maintain`] in
    /// bounded steps (a little after each write: [`crate::compaction::steps`]). The engine
    /// compacts by itself only when the table limit forces it
    /// ([`crate::compaction::table_limit`]). What the POSIX crate's background thread uses.
    External,
    /// Compactions in bounded steps, in the writes themselves, for a device without threads:
    /// a flush that makes a compaction due starts it, and every write (put, delete, batch,
    /// range delete) advances it by `budget × (1 + d)` units of merge work, where `d` is the
    /// flushes since it started (its debt) up to [`crate::compaction::steps::MAX_DEBT`] (3), so
    /// at most `4 × budget` units; it is installed in
    /// the write that completes it. [`crate::Db::step_compaction`] advances it when the device
    /// is idle. Needs scratch memory of its own that stays with the compaction from one write
    /// to the next ([`crate::Db::set_compaction_scratch`]); until it is given, compactions run
    /// whole, as [`CompactionMode::Inline`]. What one write then costs at most, and the one case
    /// in which a write still finishes a compaction: [`crate::compaction::steps`].
    Stepped {
        /// Units of merge work per write when the compaction is not behind (a unit: one key
        /// merged, or one record of the output read back); at least 1.
        budget: u32,
    },
}

/// What the database does when its space runs out: at [`Config::max_bytes`], or when the
/// storage reports itself full ([`crate::Storage::is_full`], ENOSPC on a file system). Neither
/// poisons the database; reads go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WhenFull {
    /// Writes that add data fail with [`crate::Error::Full`] (nothing of them is stored) until
    /// deletes and compaction make room; deletes and range deletes are still taken.
    #[default]
    RefuseWrites,
    /// The oldest SSTables are removed whole, oldest first, until the data fits (the newest
    /// table always stays): a FIFO buffer that keeps the most recent data. What was dropped is
    /// counted in [`crate::Stats`] (`evicted_tables`, `evicted_entries`, `evicted_bytes`).
    DropOldest,
}

impl Default for Config {
    fn default() -> Self {
        Config::with_sync(SyncPolicy::EveryWrite)
    }
}

impl Config {
    /// The default configuration with `sync` as its sync policy.
    pub const fn with_sync(sync: SyncPolicy) -> Self {
        Config {
            sync,
            wal_preallocation: None,
            read_only: false,
            max_bytes: None,
            when_full: WhenFull::RefuseWrites,
            compaction: CompactionMode::Inline,
        }
    }
}
