//! The engine type every POSIX module shares — the core [`minivault_core::Db`] over
//! [`PosixStorage`] with the wall clock — and how [`crate::Db`] opens it. Its own module so
//! that the modules that drive the engine (background work, the flush thread, scans, table
//! views) depend on it, not on `db.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::PosixStorage;
use crate::{Error, Options};

/// Milliseconds since the Unix epoch: the time base of TTLs on POSIX.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The core engine over POSIX files, with the wall clock and heap MemTable buffers.
pub(crate) type Engine = minivault_core::Db<PosixStorage, fn() -> u64, Vec<u8>>;

/// Opens the engine over `storage` with `options`' WAL step and read-only flag. The engine syncs
/// only when told to: [`crate::Db`] applies the durability mode itself,
/// through the group commit.
pub(crate) fn open_engine(storage: PosixStorage, options: &Options) -> Result<Engine, Error> {
    let sync = minivault_core::SyncPolicy::Manual;
    let bytes = options.memtable_bytes;
    let config = minivault_core::Config {
        wal_preallocation: options.wal_preallocation_bytes,
        read_only: options.read_only,
        max_bytes: options.max_bytes,
        when_full: options.when_full,
        compaction: if options.background_threads > 0 && !options.read_only {
            minivault_core::CompactionMode::External
        } else {
            minivault_core::CompactionMode::Inline
        },
        ..minivault_core::Config::with_sync(sync)
    };
    Ok(Engine::open(storage, now_millis as fn() -> u64, [vec![0u8; bytes], vec![0u8; bytes]], config)?)
}
