//! # minivault-core
//!
//! The storage engine of MiniVaultDB: an LSM key-value store that runs unchanged on a
//! microcontroller and on Linux. `#![no_std]`, no `alloc`, no `unsafe`: every byte of memory it
//! uses is handed in by the caller ([`Db::open`] takes the MemTable buffers), and every file it
//! touches goes through the [`Storage`] trait.
//!
//! ```text
//! put/delete ──► WAL (<id>.wal, framed records) ──► active MemTable (hash, arena)
//!                                                        │ full: freeze, new WAL
//!                                                        ▼
//!                                               immutable MemTable ──► SSTable (<id>.sst)
//! get ──► active MemTable ──► immutable MemTable ──► SSTables, newest to oldest
//! ```
//!
//! Modules, one concept each: [`arena`], [`memtable`], [`compaction`], [`record`] (framing), [`entry`]
//! (payload encoding), [`wal`], [`sstable`], [`filter`] (the SSTable's Bloom filter), [`storage`] (the seam), [`mem_storage`]
//! (in-memory storage), [`db`] (the engine), [`error`]. Byte layouts are in `docs/FORMAT.md`.
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
pub mod io;
pub mod log;
pub mod mem_storage;
pub mod memtable;
pub mod names;
pub mod record;
pub mod sstable;
pub mod storage;
pub mod wal;

pub use batch::{BatchError, WriteBatch};
pub use db::{Clock, Config, Db, Stats, SyncPolicy, TableInfo};
pub use error::{Corruption, Error};
pub use mem_storage::{MemError, MemFile, MemStorage};
pub use names::FileName;
pub use storage::Storage;

/// The longest key, in bytes. Keys must also be at least one byte long.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest value, in bytes (a MemTable buffer smaller than this lowers the limit further:
/// an entry must fit in one MemTable arena).
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// The most SSTables one database holds. Compaction keeps the count near
/// log2(data / MemTable size) + 4 (and merges early as the limit nears), so 32 covers a
/// 10^7-key database with 4 MiB MemTables; the list lives inside [`Db`], 72 bytes per slot on
/// 32-bit targets, so this bounds the engine's RAM too. A flush beyond it fails with
/// [`Error::TooManyTables`].
pub const MAX_TABLES: usize = 32;

/// The most WAL files one database may hold on open.
pub const MAX_WALS: usize = 8;
