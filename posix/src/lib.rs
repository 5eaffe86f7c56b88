//! # minivault
//!
//! MiniVaultDB on Linux and other POSIX systems: the [`minivault_core`] engine over files in a
//! directory, with a correct fsync discipline, a lock against a second process, and the
//! `minivault` REPL.
//!
//! ```no_run
//! let mut db = minivault::Db::open("telemetry-data")?;
//! db.put(b"sensor/1", b"21.5")?;
//! assert_eq!(db.get(b"sensor/1")?.as_deref(), Some(&b"21.5"[..]));
//! # Ok::<(), minivault::Error>(())
//! ```
//!
//! Modules: [`db`] (the [`Db`] handle), [`options`], [`error`], [`storage`] (files through
//! libc), [`page_cache`] (the read cache of file pages), [`row_cache`] (the cache of recently
//! read rows), [`lock`] (the `LOCK` file), [`repl`] (the command language).
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod db;
pub mod error;
pub mod lock;
pub mod options;
pub mod page_cache;
pub mod repl;
pub mod row_cache;
pub mod storage;

pub use db::{now_millis, Db, Ttl, ValueWithExpiry};
pub use error::Error;
pub use minivault_core::{BatchError, Corruption, Stats, TableInfo, MAX_KEY_LEN, MAX_VALUE_LEN};
pub use options::{Durability, Options, SizeLimit};
pub use row_cache::RowCacheStats;

/// A batch of puts and deletes applied atomically by [`Db::write_batch`], encoded into a
/// buffer whose length bounds it: `WriteBatch::new(vec![0; 64 * 1024])`.
pub type WriteBatch = minivault_core::WriteBatch<Vec<u8>>;
