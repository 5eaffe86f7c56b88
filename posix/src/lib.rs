//! # minivault
//!
//! MiniVaultDB on Linux and other POSIX systems: the [`minivault_core`] engine over files in a
//! directory, with a correct fsync discipline, a lock against a second process, and the
//! `minivault` command line.
//!
//! ```
//! # let tmp = tempfile::tempdir()?;
//! # std::env::set_current_dir(tmp.path())?;
//! let db = minivault::Db::open("telemetry-data")?;
//! db.put(b"sensor/1", b"21.5")?;
//! db.put_with_ttl(b"alarm", b"overheat", std::time::Duration::from_secs(60))?;
//! assert_eq!(db.get(b"sensor/1")?.as_deref(), Some(&b"21.5"[..]));
//! db.delete(b"sensor/1")?;
//!
//! let mut batch = minivault::WriteBatch::new(vec![0; 64 * 1024]);   // atomic: all or none
//! batch.put(b"job/7", b"done")?;
//! batch.delete(b"queue/7")?;
//! db.write_batch(&batch)?;                   // one WAL record, one fdatasync
//! db.close()?;                               // the final sync, and whether it worked
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything a program needs is here, without depending on `minivault-core` as well: [`Db`]
//! and its [`Options`], [`Error`] (with the engine's errors as [`EngineError`], whose
//! corruption reports carry a [`Corruption`] and a [`FileName`]), [`WriteBatch`] and
//! [`BatchError`], [`Stats`], [`RowCacheStats`], [`TableInfo`] and [`Ttl`].
//!
//! # Features
//! - `cli` (default): the `minivault` binary and its dependencies (`lexopt`, `unicode-width`).
//!   `default-features = false` builds the library alone.
//!
//! # Threads
//! [`Db`] is `Send + Sync` with `&self` methods: share one handle as `Arc<Db>`. Durable writers
//! running at once share one `fdatasync` (group commit), and reads never wait for one. The
//! `db` module's docs say what runs under which lock; `docs/ARCHITECTURE.md` draws it.
//!
//! # Modules
//! [`options`] (sizes, their ranges, durability) is public. The others are the handle's
//! parts — `db` (the [`Db`] handle), `group_commit` (durable writers' hand-off to one
//! leader's sync), `error`, `storage` (files through libc: directory,
//! file, libc calls), `page_cache` (the read cache of file pages), `row_cache` (recently read
//! rows), `lock` (the `LOCK` file) and `repl` (the command language) — and not API:
//! `storage`, `page_cache`, `row_cache`, `lock` and `repl` stay reachable, hidden from the
//! docs, because the `minivault` binary, the repository's tests, fuzz targets and benchmarks
//! use them; they may change in any release.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod background;
mod db;
mod engine;
mod error;
mod flusher;
#[cfg(feature = "mqtt")]
pub mod forward;
mod group_commit;
mod op;
pub mod options;
pub mod outbox;
mod pins;
pub mod scan;
mod snapshot;

#[doc(hidden)]
pub mod doorkeeper;
#[doc(hidden)]
pub mod lock;
#[doc(hidden)]
pub mod page_cache;
#[doc(hidden)]
pub mod repl;
mod resident;
#[doc(hidden)]
pub mod row_cache;
#[doc(hidden)]
pub mod storage;
mod view;

pub use background::{BackgroundStats, FLUSH_GIVE_WAY, FLUSH_PACE, SLOWDOWN};
pub use db::{Db, Ttl, ValueWithExpiry, WriteGroupCounts};
pub use engine::now_millis;
pub use error::Error;
#[doc(hidden)]
pub use flusher::FlushHook;
pub use minivault_core::{
    BatchError, Corruption, FileName, Stats, TableInfo, WhenFull, MAX_KEY_LEN, MAX_VALUE_LEN,
};
pub use options::{Durability, Options, SizeLimit};
pub use resident::IndexStats;
pub use row_cache::RowCacheStats;
pub use scan::{Keys, Range};
pub use snapshot::Snapshot;

/// The engine's errors, as [`Error::Engine`] carries them: match on its variants
/// (`EngineError::Corrupted { file, offset, kind }`, `EngineError::Poisoned`, ...).
pub type EngineError = minivault_core::Error<std::io::Error>;

/// A batch of puts and deletes applied atomically by [`Db::write_batch`], encoded into a
/// buffer whose length bounds it: `WriteBatch::new(vec![0; 64 * 1024])`.
pub type WriteBatch = minivault_core::WriteBatch<Vec<u8>>;

/// Default of [`Options::cache_bytes`]: 8 MiB.
pub const DEFAULT_CACHE_BYTES: usize = storage::DEFAULT_CACHE_BYTES;

/// Default of [`Options::row_cache_bytes`]: 4 MiB.
pub const DEFAULT_ROW_CACHE_BYTES: usize = row_cache::DEFAULT_ROW_CACHE_BYTES;

/// Bytes the row cache charges each row beyond its key and its value (120 on 64-bit
/// targets): see [`Options::row_cache_bytes`].
pub const ROW_CACHE_ENTRY_OVERHEAD: usize = row_cache::ENTRY_OVERHEAD;
