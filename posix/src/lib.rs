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
//! Modules: [`storage`] (files through libc), [`page_cache`] (the read cache of file pages),
//! [`row_cache`] (the cache of recently read rows), [`lock`] (the `LOCK` file), [`repl`] (the
//! command language), and the [`Db`] handle in this file.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod page_cache;
pub mod lock;
pub mod repl;
pub mod row_cache;
pub mod storage;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use minivault_core::{BatchError, Corruption, Stats, TableInfo, MAX_KEY_LEN, MAX_VALUE_LEN};
pub use row_cache::RowCacheStats;

/// A batch of puts and deletes applied atomically by [`Db::write_batch`], encoded into a
/// buffer whose length bounds it: `WriteBatch::new(vec![0; 64 * 1024])`.
pub type WriteBatch = minivault_core::WriteBatch<Vec<u8>>;

use lock::DirLock;
use row_cache::RowCache;
use storage::PosixStorage;

/// When a write is durable: what a power cut can take. A `kill -9` takes nothing in any mode:
/// every write reaches the operating system before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The default: a put or delete returns only after its WAL record is on the device
    /// (`fdatasync`). A power cut loses nothing that was acknowledged.
    Always,
    /// Sync every `n` writes: a power cut can lose up to the last `n - 1` acknowledged writes.
    EveryN(u32),
    /// Sync on the first write at least this long after the previous sync, and on [`Db::sync`],
    /// [`Db::flush`] and drop. A power cut can lose the writes made since the last sync: those
    /// of the last interval, or, if writing then paused, everything since the last sync.
    Periodic(Duration),
    /// Sync only on [`Db::sync`], [`Db::flush`], MemTable rotation and drop.
    Manual,
}

/// Options for [`Db::open_with`].
///
/// Memory: a [`Db`] holds at most `2 × memtable_bytes + cache_bytes + row_cache_bytes` plus a
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

/// Every way a [`Db`] call can fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another handle) has the database open.
    Locked {
        /// The database directory.
        dir: PathBuf,
    },
    /// The directory could not be created, opened or locked.
    Open {
        /// The database directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The engine reported an error (storage I/O, corruption, limits, poisoning).
    Engine(minivault_core::Error<io::Error>),
    /// An entry could not be added to a [`WriteBatch`].
    Batch(BatchError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Locked { dir } => {
                write!(f, "database is locked: {} is in use by another process", dir.display())
            }
            Error::Open { dir, source } => write!(f, "cannot open {}: {source}", dir.display()),
            Error::Engine(e) => e.fmt(f),
            Error::Batch(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Open { source, .. } => Some(source),
            Error::Engine(minivault_core::Error::Storage(e)) => Some(e),
            _ => None,
        }
    }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Self {
        Error::Batch(e)
    }
}

impl From<minivault_core::Error<io::Error>> for Error {
    fn from(e: minivault_core::Error<io::Error>) -> Self {
        Error::Engine(e)
    }
}

impl Error {
    /// True when the error reports damaged data on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Engine(e) if e.is_corruption())
    }
}

/// Milliseconds since the Unix epoch: the time base of TTLs on POSIX.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

type Engine = minivault_core::Db<PosixStorage, fn() -> u64, Vec<u8>>;

/// An open database directory.
pub struct Db {
    engine: Engine,
    durability: Durability,
    last_sync: Instant,
    buf: Vec<u8>,
    /// Rows read recently. Every write removes its keys from here before it reaches the engine,
    /// so a cached row is always what the engine would return.
    rows: RowCache,
    // Dropped after `engine` (fields drop in order), so the lock outlives every file handle.
    _lock: DirLock,
    dir: PathBuf,
}

impl Db {
    /// Opens (creating if missing) the database in `dir` with default [`Options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Db, Error> {
        Db::open_with(dir, Options::default())
    }

    /// Opens (creating if missing) the database in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Db, Error> {
        let dir = dir.as_ref().to_path_buf();
        let open_err = |source| Error::Open { dir: dir.clone(), source };
        let storage = PosixStorage::open_dir_with_cache(&dir, options.cache_bytes).map_err(open_err)?;
        let lock = DirLock::acquire(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::Locked { dir: dir.clone() }
            } else {
                open_err(e)
            }
        })?;
        let sync = match options.durability {
            Durability::Always => minivault_core::SyncPolicy::EveryWrite,
            Durability::EveryN(n) => minivault_core::SyncPolicy::EveryN(n.max(1)),
            Durability::Periodic(_) | Durability::Manual => minivault_core::SyncPolicy::Manual,
        };
        let bytes = options.memtable_bytes;
        let engine = Engine::open(
            storage,
            now_millis as fn() -> u64,
            [vec![0u8; bytes], vec![0u8; bytes]],
            minivault_core::Config { sync },
        )?;
        Ok(Db {
            engine,
            durability: options.durability,
            last_sync: Instant::now(),
            buf: vec![0u8; 4096],
            rows: RowCache::new(options.row_cache_bytes),
            _lock: lock,
            dir,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn after_write(&mut self) -> Result<(), Error> {
        if let Durability::Periodic(every) = self.durability {
            if self.last_sync.elapsed() >= every {
                self.sync()?;
            }
        }
        Ok(())
    }

    // Every write removes its keys from the row cache before calling the engine: nothing can
    // read in between (`&mut self`), and whatever the write does or fails to do (an error, a
    // poisoned engine, a write that reached the WAL but not the MemTable), the next get of those
    // keys asks the engine.

    /// Stores `value` under `key`. Durable on return with [`Durability::Always`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.rows.remove(key);
        self.engine.put(key, value)?;
        self.after_write()
    }

    /// Stores `value` under `key` for `ttl`; afterwards the key reads as absent.
    pub fn put_with_ttl(&mut self, key: &[u8], value: &[u8], ttl: Duration) -> Result<(), Error> {
        self.rows.remove(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_at = now_millis().saturating_add(ms.max(1));
        self.engine.put_expiring(key, value, expires_at)?;
        self.after_write()
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        self.rows.remove(key);
        self.engine.delete(key)?;
        self.after_write()
    }

    /// Applies every entry of `batch` atomically (after a crash: all or none), with one WAL
    /// write and, with [`Durability::Always`], one `fdatasync` for the whole batch.
    pub fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        self.forget_batch(batch);
        self.engine.write_batch(batch)?;
        self.after_write()
    }

    /// Removes every key of `batch` from the row cache; everything, should an entry not decode
    /// (a batch built through [`WriteBatch`]'s methods always does).
    fn forget_batch(&mut self, batch: &WriteBatch) {
        if self.rows.is_empty() {
            return;
        }
        for item in batch.entries() {
            match item.ok().and_then(|payload| minivault_core::entry::decode(payload).ok()) {
                Some(entry) => self.rows.remove(entry.key),
                None => {
                    self.rows.clear();
                    return;
                }
            }
        }
    }

    /// The value of `key`, or `None` when absent, deleted or expired.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(value) = self.rows.get(key, now_millis) {
            return Ok(Some(value.to_vec()));
        }
        loop {
            match self.engine.get_with_expiry(key, &mut self.buf) {
                Ok(Some((value, expires_at))) => {
                    self.rows.insert(key, value, expires_at);
                    return Ok(Some(value.to_vec()));
                }
                Ok(None) => return Ok(None),
                Err(minivault_core::Error::BufferTooSmall { needed }) => self.buf.resize(needed, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes every acknowledged write durable.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.engine.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Writes the MemTables to SSTables and retires the WAL.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.engine.flush()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Counters and sizes of the engine. Its `gets` and `table_probes` count only the gets the
    /// row cache did not answer; see [`Db::row_cache_stats`].
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Counters and sizes of the row cache ([`Options::row_cache_bytes`]).
    pub fn row_cache_stats(&self) -> RowCacheStats {
        self.rows.stats()
    }

    /// The SSTables, oldest first.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.engine.tables().collect()
    }

    /// True once a failed write or sync has made the database refuse writes until reopened.
    pub fn is_poisoned(&self) -> bool {
        self.engine.is_poisoned()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Relaxed modes: a clean close makes everything durable. Errors cannot be reported here.
        let _ = self.engine.sync();
    }
}

impl repl::ReplBackend for Db {
    type Error = Error;

    fn put(&mut self, key: &[u8], value: &[u8], ttl_secs: Option<u64>) -> Result<(), Error> {
        match ttl_secs {
            Some(s) => self.put_with_ttl(key, value, Duration::from_secs(s)),
            None => Db::put(self, key, value),
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Db::get(self, key)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        Db::delete(self, key)
    }

    fn flush(&mut self) -> Result<(), Error> {
        Db::flush(self)
    }

    fn sync(&mut self) -> Result<(), Error> {
        Db::sync(self)
    }

    fn stats(&mut self) -> Result<String, Error> {
        let s = Db::stats(self);
        let r = self.rows.stats();
        let sizes: Vec<String> = self.engine.tables().map(|t| t.bytes.to_string()).collect();
        Ok(format!(
            "memtable_keys={}/{} memtable_bytes={}/{} immutable_keys={} sstables={} sstable_bytes={} sstable_sizes=[{}] wal_bytes={} flushes={} row_cache_hits={} row_cache_misses={} row_cache_rows={} row_cache_bytes={}/{}",
            s.memtable_keys,
            s.memtable_key_capacity,
            s.memtable_bytes,
            s.memtable_capacity_bytes,
            s.immutable_keys,
            s.tables,
            s.table_bytes,
            sizes.join(","),
            s.wal_bytes,
            s.flushes,
            r.hits,
            r.misses,
            r.rows,
            r.bytes,
            r.capacity_bytes,
        ))
    }
}
