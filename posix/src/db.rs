//! [`Db`]: an open database directory, the engine over [`PosixStorage`] with the row cache in
//! front of its reads, the durability modes the engine does not know ([`Durability::Periodic`])
//! and the directory lock.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::lock::DirLock;
use crate::repl;
use crate::row_cache::{RowCache, RowCacheStats};
use crate::storage::PosixStorage;
use crate::{Durability, Error, Options, Stats, TableInfo, WriteBatch};

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
