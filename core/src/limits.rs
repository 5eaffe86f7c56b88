//! Limits: every fixed bound of the engine and the formats, in one place, with the checks that
//! keep them consistent with each other.
//!
//! Lower modules (record framing, entries, batches, the WAL) take their bounds from here rather
//! than from the crate root, so the dependency arrows point one way.

/// The longest key, in bytes. Keys must also be at least one byte long.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest value, in bytes (a MemTable buffer smaller than this lowers the limit further:
/// an entry must fit in one MemTable arena).
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// Bytes an entry adds to its key and value: kind, key length and an optional expiry
/// ([`crate::entry`]).
pub const ENTRY_MAX_OVERHEAD: usize = 11;

/// The largest entry payload: what one SSTable record holds.
pub const MAX_ENTRY_LEN: usize = ENTRY_MAX_OVERHEAD + MAX_KEY_LEN + MAX_VALUE_LEN;

/// The largest encoded [`crate::WriteBatch`]: 4 MiB. A batch is one WAL record; a larger one is
/// refused with [`crate::Error::BatchTooLarge`] (and a MemTable smaller than the batch lowers the
/// limit further).
pub const MAX_BATCH_LEN: usize = 4 << 20;

/// The largest payload a record of either file kind may declare: the largest WAL record (a
/// batch and its watermark, [`crate::wal`]). A header declaring more is damage.
pub const MAX_RECORD_LEN: usize = MAX_BATCH_LEN + 4;

/// The most SSTables one database holds. The tiered policy keeps the count near
/// 7 × log8(data / MemTable size) + 8 (and merges early as the limit nears), so 32 covers a
/// 10^8-key database with 4 MiB MemTables; the list lives inside [`crate::Db`], 72 bytes per slot
/// on 32-bit targets, so this bounds the engine's RAM too. A flush beyond it fails with
/// [`crate::Error::TooManyTables`], as does an open of a directory with more live tables
/// (replaced tables a crash left do not count).
///
/// With the `many-tables` feature (hosts with memory and file descriptors to spare: the POSIX
/// crate), 512: tables that overlap no other are then kept as they are rather than merged
/// (*trivial moves*, [`crate::compaction::policy`]), so sequentially written keys are written
/// once, and a table set of sequential data holds one table per flush up to
/// [`CROWDED_TABLES`].
#[cfg(not(feature = "many-tables"))]
pub const MAX_TABLES: usize = 32;
/// See above: the limit with the `many-tables` feature.
#[cfg(feature = "many-tables")]
pub const MAX_TABLES: usize = 512;

/// Past this many tables the policy, when no tier of runs is due, tiers the tables one by one
/// (tables that overlap nothing are then merged too), so that the table limit is never reached
/// by them; without `many-tables`, [`MAX_TABLES`] (the force near the limit does it).
#[cfg(not(feature = "many-tables"))]
pub const CROWDED_TABLES: usize = MAX_TABLES;
/// See above: with `many-tables`, three quarters of [`MAX_TABLES`].
#[cfg(feature = "many-tables")]
pub const CROWDED_TABLES: usize = MAX_TABLES / 4 * 3;

/// Bytes of a key kept for a table's key bounds ([`crate::sstable::KeyBounds`]): 16 with
/// `many-tables`; none without (a microcontroller's table list stays as it was: no bounds, no
/// trivial moves).
#[cfg(feature = "many-tables")]
pub const BOUND_BYTES: usize = 16;
/// See above: without `many-tables`.
#[cfg(not(feature = "many-tables"))]
pub const BOUND_BYTES: usize = 0;

/// The most range deletes one MemTable holds; the next one rotates it (writes it out).
pub const MAX_MEMTABLE_RANGES: usize = 32;

/// The most WAL files still to replay (not yet covered by a table) one database may hold on
/// open; covered WALs a crash left beside them are removed however many.
pub const MAX_WALS: usize = 8;

/// The most tables one compaction merges.
pub const MAX_MERGE: usize = 16;

/// The most compactions running at once apart from the database
/// ([`crate::CompactionMode::External`]), each on its own run of tables.
pub const MAX_RUNNING: usize = 4;

/// The most windows a compaction builds its output's filter in: a filter larger than its scratch
/// memory is built one scratch-sized window at a time, each window after the first by one more
/// pass over the output's records ([`crate::compaction::merge::Merge`]). Past this many windows the
/// filter gets fewer bits per key instead of more passes.
pub const MAX_FILTER_WINDOWS: usize = 8;

/// The most bytes of input one compaction merges: the output must keep its offsets within `u32`.
pub const MAX_MERGE_BYTES: u64 = 3 << 30;

const _: () = assert!(MAX_KEY_LEN <= u16::MAX as usize, "entry and fence keys store their length in a u16");
const _: () = assert!(MAX_ENTRY_LEN <= MAX_RECORD_LEN, "an SSTable record is a record");
const _: () = assert!(MAX_RECORD_LEN < u32::MAX as usize, "record lengths are u32");
const _: () = assert!(MAX_MERGE <= MAX_TABLES);
const _: () = assert!(CROWDED_TABLES <= MAX_TABLES);
const _: () = assert!(MAX_MERGE_BYTES < u32::MAX as u64, "SSTable offsets are u32");
