//! # minivault-core
//!
//! The storage engine of MiniVaultDB: an LSM key-value store that runs unchanged on a
//! microcontroller and on Linux. `#![no_std]`, no `alloc`, no `unsafe`: every byte of memory it
//! uses is handed in by the caller ([`Db::open`] takes the MemTable buffers), and every file it
//! touches goes through the [`Storage`] trait.
//!
//! ```text
//! put/delete ──► WAL (<id>.wal, framed records) ──► active MemTable (hash, arena)
//!                                                        │ full: seal, new WAL
//!                                                        ▼
//!                                               immutable MemTable ──► SSTable (<id>.sst)
//! get ──► active MemTable ──► immutable MemTable ──► SSTables, newest to oldest
//! ```
//!
//! Modules, one concept each (the map, with who owns which state: `docs/ARCHITECTURE.md`):
//! - the handle: [`db`] (routes calls, poisons on failure), [`recovery`] (open), [`options`],
//!   [`stats`], [`error`], [`limits`];
//! - memory: [`arena`], [`memtable`] (one hash MemTable), [`memtables`] (active and immutable);
//! - the log: [`wal`] (format, [`wal::writer`], [`wal::replay`]);
//! - ordered reads: [`scan`] (ranges and prefixes, forward and reverse, over every source);
//! - tables: [`sstable`] (format, [`sstable::builder`], [`sstable::table`]), [`filter`],
//!   [`flush`], [`version`] (the live table set and its lineage), [`compaction`] (policy, merge,
//!   run);
//! - encodings: [`record`] (framing and the checked record stream), [`entry`], [`batch`],
//!   [`names`];
//! - the seam: [`storage`], [`io`], [`mem_storage`] (in-memory storage).
//!
//! # The worst write
//! How much one write may do is [`Config::compaction`]'s choice. [`CompactionMode::Inline`]
//! (the default: nothing else to give) runs a whole compaction in the write whose flush calls
//! for one, so the worst write grows with the data. [`CompactionMode::Stepped`] (for a device
//! without threads; give it scratch memory with [`Db::set_compaction_scratch`]) bounds every
//! write: its WAL record, at most one MemTable flush, at most `4 × budget` units of merge work
//! (each about two record reads and one record write), and at most one compaction's start and
//! install (a sync, a rename, a directory sync), whatever the size of the database, as long as
//! the steps keep up with the flushes; the bound in bytes, and the one exception (counted in
//! [`Stats::compaction_overruns`]), are in [`compaction::steps`]. [`CompactionMode::External`]
//! leaves compactions to the caller (threads on POSIX, or [`Db::maintain`]).
//!
//! Byte layouts are in `docs/FORMAT.md`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod arena;
pub mod batch;
pub mod compaction;
pub mod db;
pub mod entry;
pub mod error;
pub mod filter;
pub mod flush;
pub mod io;
pub mod limits;
pub(crate) mod log;
pub mod mem_storage;
pub mod memtable;
pub mod memtables;
pub mod names;
pub mod options;
pub mod record;
pub mod recovery;
pub mod scan;
pub mod space;
pub mod sstable;
pub mod stats;
pub mod storage;
pub mod version;
pub mod wal;

pub use batch::{BatchError, WriteBatch};
pub use db::{get_from_tables, Db, MemGet, ValueWithExpiry};
pub use error::{Corruption, Error};
pub use limits::{MAX_KEY_LEN, MAX_TABLES, MAX_VALUE_LEN, MAX_WALS};
pub use mem_storage::{MemError, MemFile, MemStorage};
pub use names::FileName;
pub use options::{Clock, CompactionMode, Config, SyncPolicy, WhenFull};
pub use scan::{KeyRange, Scan};
pub use stats::{Stats, TableInfo};
pub use storage::Storage;
