//! Statistics: [`Stats`], the engine's counters and sizes as [`crate::Db::stats`] reports them.
//! The counters are kept by the parts that do the work; `Db` gathers them here.

pub use crate::sstable::TableInfo;

/// A snapshot of the engine's counters and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Keys in the active MemTable.
    pub memtable_keys: usize,
    /// Keys the active MemTable holds before it must rotate.
    pub memtable_key_capacity: usize,
    /// Arena bytes used in the active MemTable.
    pub memtable_bytes: usize,
    /// Arena bytes of one MemTable.
    pub memtable_capacity_bytes: usize,
    /// Keys in the immutable MemTable waiting to be flushed.
    pub immutable_keys: usize,
    /// SSTables on storage.
    pub tables: usize,
    /// Bytes of all SSTables.
    pub table_bytes: u64,
    /// Bytes of records in all live WAL files (up to their logical ends: file headers and
    /// preallocated zero tails are not counted).
    pub wal_bytes: u64,
    /// MemTables written out as SSTables since open.
    pub flushes: u64,
    /// Torn WAL tails (damaged, unsynced records at the end of the newest WAL) cut off during
    /// open, and WALs whose records were all unsynced set aside whole (a spare WAL taken by a
    /// rotation, whose rewritten header a power cut lost or tore: `minivault_core::wal::spare`).
    /// A zero tail, the unused preallocated end of a WAL, is a clean end and not counted.
    pub torn_tails_truncated: u64,
    /// WALs left unreplayed by open (and removed, unless read-only) because the WAL before them lost records they
    /// followed: a power cut took the unsynced end of a WAL that a rotation had left to the next
    /// sync, so the writes after it (none of them synced) cannot come back either.
    pub wals_dropped: u64,
    /// Rotations since open that started a spare WAL prepared ahead ([`crate::Db::prepare_spare_wal`],
    /// [`crate::Db::plan_spare_wal`]) instead of creating and syncing a new one.
    pub spare_wals_taken: u64,
    /// A spare WAL is kept for the next rotation (its file, `<id>.wal`, is in the directory
    /// beside the current WAL: `minivault_core::wal::spare`).
    pub spare_wal_ready: bool,
    /// SSTable searches performed by `get` since open (read amplification = this / gets): the
    /// lookups a table's filter did not rule out.
    pub table_probes: u64,
    /// SSTable lookups a table's Bloom filter (or its key bounds) answered "absent" without a
    /// search, since open.
    pub filter_skips: u64,
    /// Calls to `get` since open.
    pub gets: u64,
    /// Compactions (merges of SSTables) since open.
    pub compactions: u64,
    /// Bytes the database's files take: SSTables, and WAL files with their headers and
    /// preallocated tails. What counts against [`crate::Config::max_bytes`].
    pub file_bytes: u64,
    /// The cap on `file_bytes` ([`crate::Config::max_bytes`]), if any.
    pub max_bytes: Option<u64>,
    /// SSTables removed whole to stay under the cap or make room ([`crate::WhenFull::DropOldest`])
    /// since open.
    pub evicted_tables: u64,
    /// Entries (tombstones included) in the evicted tables: keys whose data was dropped, some
    /// of which may have had newer versions elsewhere.
    pub evicted_entries: u64,
    /// Bytes of the evicted tables.
    pub evicted_bytes: u64,
    /// Writes refused with [`crate::Error::Full`] since open.
    pub full_refusals: u64,
    /// Compactions given up since open because the storage was full (their temporary output
    /// removed, the tables left as they were).
    pub compactions_skipped_for_space: u64,
    /// Compactions planned to run apart from the database ([`crate::CompactionMode::External`])
    /// and not yet installed, failed or abandoned.
    pub compactions_running: usize,
    /// Writes that finished a compaction whole since open because the table limit was reached
    /// before its steps completed it ([`crate::CompactionMode::Stepped`]: the steps fell behind
    /// the flushes); 0 when every write stayed within the bound.
    pub compaction_overruns: u64,
    /// SSTables removed whole since open because every entry in them had expired (no merge
    /// needed: see `Footer::latest_expiry`), and the bytes they took.
    pub expired_tables: u64,
    /// Bytes of the tables counted in `expired_tables`.
    pub expired_bytes: u64,
}
