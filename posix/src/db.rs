//! [`Db`]: an open database directory, the engine over [`PosixStorage`] with the row cache in
//! front of its reads, the durability modes the engine does not know ([`Durability::Periodic`])
//! and the directory lock.

use std::fmt;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::background::{Background, BackgroundStats};
use crate::lock::DirLock;
use crate::row_cache::{RowCache, RowCacheStats};
use crate::scan::{Entry, Keys, Range};
use crate::storage::PosixStorage;
use crate::{Durability, Error, Options, Stats, TableInfo, WriteBatch};

/// Milliseconds since the Unix epoch: the time base of TTLs on POSIX.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) type Engine = minivault_core::Db<PosixStorage, fn() -> u64, Vec<u8>>;

/// Opens the engine over `storage` with `options`' durability, WAL step and read-only flag.
fn open_engine(storage: PosixStorage, options: &Options) -> Result<Engine, Error> {
    let sync = match options.durability {
        Durability::Always => minivault_core::SyncPolicy::EveryWrite,
        Durability::EveryN(n) => minivault_core::SyncPolicy::EveryN(n.max(1)),
        Durability::Periodic(_) | Durability::Manual => minivault_core::SyncPolicy::Manual,
    };
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

/// A value and when it expires (`None`: never), from [`Db::get_with_expiry`].
pub type ValueWithExpiry = (Vec<u8>, Option<SystemTime>);

/// A value and its expiry in the engine's clock (ms since the epoch).
type ValueExpiringAt = (Vec<u8>, Option<u64>);

/// How long a key has left to live: [`Db::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key is absent (never written, deleted or expired). The REPL prints `-2`.
    NoKey,
    /// The key is present and never expires. The REPL prints `-1`.
    NoExpiry,
    /// The key is present and expires after this long.
    ExpiresIn(Duration),
}

/// An open database directory.
///
/// Close it with [`Db::close`] to learn whether the final sync succeeded; dropping it syncs too,
/// but can only ignore a failure.
pub struct Db {
    engine: Engine,
    options: Options,
    last_sync: Instant,
    buf: Vec<u8>,
    /// Rows read recently. Every write removes its keys from here before it reaches the engine,
    /// so a cached row is always what the engine would return.
    rows: RowCache,
    /// Set by [`Db::close`], which has done the final sync that drop would do.
    closed: bool,
    /// The engine's `evicted_tables` when the row cache last heard of it.
    evicted_seen: u64,
    /// The compaction threads ([`Options::background_threads`]); none read-only or with 0.
    background: Option<Background>,
    // Dropped after `engine` (fields drop in order), so the lock outlives every file handle.
    // None when read-only: a reader takes no lock.
    _lock: Option<DirLock>,
    dir: PathBuf,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("poisoned", &self.engine.is_poisoned())
            .field("stats", &self.engine.stats())
            .field("row_cache", &self.rows.stats())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating if missing) the database in `dir` with default [`Options`].
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # std::env::set_current_dir(tmp.path())?;
    /// let mut db = minivault::Db::open("telemetry-data")?; // relative to the working directory
    /// db.put(b"sensor/1", b"21.5")?;
    /// assert_eq!(db.get(b"sensor/1")?.as_deref(), Some(&b"21.5"[..]));
    /// db.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] when another handle has it open, [`Error::Open`] when the directory
    /// cannot be created or opened, [`Error::Engine`] when recovery fails (corruption, I/O).
    pub fn open(dir: impl AsRef<Path>) -> Result<Db, Error> {
        Db::open_with(dir, Options::default())
    }

    /// Opens (creating if missing) the database in `dir`.
    ///
    /// ```
    /// use minivault::{Db, Durability, Options};
    /// # let tmp = tempfile::tempdir()?;
    /// let options = Options {
    ///     memtable_bytes: 64 << 10,
    ///     durability: Durability::EveryN(64),
    ///     ..Options::default()
    /// };
    /// let mut db = Db::open_with(tmp.path().join("db"), options)?;
    /// db.put(b"k", b"v")?;
    /// db.close()?; // syncs what EveryN left unsynced, and says if that failed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Db::open`]; also [`Error::InvalidOption`] for a size above its range (checked before
    /// anything is allocated or created), [`minivault_core::Error::InsufficientMemory`] for
    /// MemTables below the engine's minimum, and [`minivault_core::Error::MemTableTooSmall`]
    /// for MemTables too small for a record the database holds (see [`Error::Engine`]).
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Db, Error> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let open_err = |source| Error::Open { dir: dir.clone(), source };
        if options.read_only {
            return Db::open_read_only(dir, options);
        }
        let storage = PosixStorage::open_dir_with_cache(&dir, options.cache_bytes).map_err(open_err)?;
        let lock = DirLock::acquire(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::Locked { dir: dir.clone() }
            } else {
                open_err(e)
            }
        })?;
        let mut engine = open_engine(storage, &options)?;
        let background = match options.background_threads {
            0 => None,
            n => {
                let bg = Background::start(
                    &mut engine,
                    n,
                    options.memtable_bytes,
                    options.slowdown_tables,
                    options.stop_tables,
                );
                Some(bg.map_err(|source| Error::Open { dir: dir.clone(), source })?)
            }
        };
        let mut db = Db::new(engine, options, Some(lock), dir);
        db.background = background;
        // Compactions a database opened with many tables is due for start now.
        if let Some(bg) = &mut db.background {
            bg.after_write(&mut db.engine)?;
        }
        Ok(db)
    }

    /// [`Options::read_only`]: no directory created, no lock, nothing written. A writer may
    /// retire a file (a WAL a flush covered, tables a compaction merged) between the engine
    /// listing the directory and opening the file: the engine then starts its open again
    /// ([`minivault_core::Config::read_only`]). Once open, the handle holds every file it reads
    /// open, so later removals cannot touch what it sees.
    fn open_read_only(dir: PathBuf, options: Options) -> Result<Db, Error> {
        let storage = PosixStorage::open_dir_read_only(&dir, options.cache_bytes)
            .map_err(|source| Error::Open { dir: dir.clone(), source })?;
        let engine = open_engine(storage, &options)?;
        Ok(Db::new(engine, options, None, dir))
    }

    fn new(mut engine: Engine, options: Options, lock: Option<DirLock>, dir: PathBuf) -> Db {
        // Scans keep the active MemTable's keys in order here: 4 bytes per key it can hold.
        engine.set_scan_order_buffer(vec![0u8; engine.stats().memtable_key_capacity * 4]);
        Db {
            engine,
            options,
            last_sync: Instant::now(),
            buf: vec![0u8; 4096],
            rows: RowCache::new(options.row_cache_bytes),
            closed: false,
            evicted_seen: 0,
            background: None,
            _lock: lock,
            dir,
        }
    }

    /// True when opened with [`Options::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.engine.is_read_only()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Runs one engine write, then the row cache and periodic-sync bookkeeping every write needs.
    fn write_with(
        &mut self,
        write: impl FnOnce(&mut Engine) -> Result<(), minivault_core::Error<std::io::Error>>,
    ) -> Result<(), Error> {
        let admitted = match &mut self.background {
            Some(bg) => bg.before_write(&mut self.engine),
            None => Ok(()),
        };
        let written = admitted.and_then(|()| write(&mut self.engine).map_err(Error::from));
        let scheduled = match &mut self.background {
            Some(bg) if written.is_ok() => bg.after_write(&mut self.engine),
            _ => Ok(()),
        };
        // Also after a failed write: eviction may have run before it gave up (and an installed
        // compaction may have evicted too).
        self.forget_evicted();
        written?;
        scheduled?;
        self.after_write()
    }

    /// Empties the row cache when the engine has evicted tables ([`crate::WhenFull::DropOldest`]) since
    /// the last look: their rows must read as absent, and the cache cannot tell which they were.
    fn forget_evicted(&mut self) {
        let evicted = self.engine.stats().evicted_tables;
        if evicted != self.evicted_seen {
            self.evicted_seen = evicted;
            self.rows.clear();
        }
    }

    fn after_write(&mut self) -> Result<(), Error> {
        if let Durability::Periodic(every) = self.options.durability {
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
        self.write_with(|e| e.put(key, value))
    }

    /// Stores `value` under `key` for `ttl`; afterwards the key reads as absent.
    pub fn put_with_ttl(&mut self, key: &[u8], value: &[u8], ttl: Duration) -> Result<(), Error> {
        self.rows.remove(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_at = now_millis().saturating_add(ms.max(1));
        self.write_with(|e| e.put_expiring(key, value, expires_at))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        self.rows.remove(key);
        self.write_with(|e| e.delete(key))
    }

    /// Deletes every key from `start` (inclusive) to `end` (exclusive), atomically and with one
    /// WAL record however many keys the range holds (durable on return with
    /// [`Durability::Always`]). Older values in the range read as absent at once; compaction
    /// reclaims their space. Also in a batch: [`WriteBatch::delete_range`].
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let mut db = minivault::Db::open(tmp.path())?;
    /// for i in 0..100u32 {
    ///     db.put(format!("log/{i:04}").as_bytes(), b"...")?;
    /// }
    /// db.delete_range(b"log/0000", b"log/0090")?; // keeps the newest ten
    /// assert_eq!(db.count(&b"log/"[..]..&b"log0"[..])?, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), Error> {
        // The row cache is keyed by key, not by order: forget it all.
        self.rows.clear();
        self.write_with(|e| e.delete_range(start, end))
    }

    /// Applies every entry of `batch` atomically (after a crash: all or none), with one WAL
    /// write and, with [`Durability::Always`], one `fdatasync` for the whole batch.
    pub fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        self.forget_batch(batch);
        self.write_with(|e| e.write_batch(batch))
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
        Ok(self.get_expiring_at(key)?.map(|(value, _)| value))
    }

    /// The value of `key` and when it expires (`None`: never), or `None` when the key is absent,
    /// deleted or expired.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let mut db = minivault::Db::open(tmp.path())?;
    /// use std::time::{Duration, SystemTime};
    /// db.put_with_ttl(b"session", b"token", Duration::from_secs(60))?;
    /// let (value, expires) = db.get_with_expiry(b"session")?.expect("just written");
    /// assert_eq!(value, b"token");
    /// assert!(expires.expect("has a TTL") > SystemTime::now());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with_expiry(&mut self, key: &[u8]) -> Result<Option<ValueWithExpiry>, Error> {
        Ok(self
            .get_expiring_at(key)?
            .map(|(value, at)| (value, at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))))
    }

    /// How long `key` has left to live, as redis' `TTL` reports it: absent, never expiring, or
    /// the time left.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let mut db = minivault::Db::open(tmp.path())?;
    /// use minivault::Ttl;
    /// db.put(b"forever", b"1")?;
    /// assert_eq!(db.ttl(b"forever")?, Ttl::NoExpiry);
    /// assert_eq!(db.ttl(b"never-written")?, Ttl::NoKey);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ttl(&mut self, key: &[u8]) -> Result<Ttl, Error> {
        Ok(match self.get_expiring_at(key)? {
            None => Ttl::NoKey,
            Some((_, None)) => Ttl::NoExpiry,
            Some((_, Some(at))) => Ttl::ExpiresIn(Duration::from_millis(at.saturating_sub(now_millis()))),
        })
    }

    /// The value of `key` and its expiry in the engine's clock (ms since the epoch): from the
    /// row cache, or from the engine (and then cached).
    fn get_expiring_at(&mut self, key: &[u8]) -> Result<Option<ValueExpiringAt>, Error> {
        if let Some((value, expires_at)) = self.rows.get_row(key, now_millis) {
            return Ok(Some((value.to_vec(), expires_at)));
        }
        loop {
            match self.engine.get_with_expiry(key, &mut self.buf) {
                Ok(Some((value, expires_at))) => {
                    self.rows.insert(key, value, expires_at);
                    return Ok(Some((value.to_vec(), expires_at)));
                }
                Ok(None) => return Ok(None),
                Err(minivault_core::Error::BufferTooSmall { needed }) => self.buf.resize(needed, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The entries of `range`, in key order: a double-ended iterator (`.rev()` walks it from
    /// the last key down). Any range of anything that is `AsRef<[u8]>`: `..`, `a..b`, `a..=b`,
    /// `(Bound::Excluded(a), Bound::Unbounded)`.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let mut db = minivault::Db::open(tmp.path())?;
    /// for (k, v) in [("s1/0003", "21.5"), ("s1/0001", "21.1"), ("s2/0001", "19.0"), ("s1/0002", "21.3")] {
    ///     db.put(k.as_bytes(), v.as_bytes())?;
    /// }
    /// let some: Vec<(Vec<u8>, Vec<u8>)> = db.range("s1/0002"..="s2/0001").collect::<Result<_, _>>()?;
    /// assert_eq!(some.len(), 3);
    /// assert_eq!(some[0].0, b"s1/0002");
    /// let newest = db.prefix("s1/").next_back().transpose()?;
    /// assert_eq!(newest.map(|(k, _)| k), Some(b"s1/0003".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The iterator borrows the database: nothing writes while it lives, so it sees one state.
    /// It reads in batches (see [`crate::scan`] for the memory it takes). A damaged table or an
    /// I/O error ends it with one `Err`.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&mut self, range: R) -> Range<'_> {
        Range::new(self, range)
    }

    /// The entries whose key starts with `prefix`, in key order (double-ended, like
    /// [`Db::range`]). An empty prefix is every key; a prefix of `0xFF` bytes has no upper bound
    /// to compute, and is handled.
    pub fn prefix(&mut self, prefix: impl AsRef<[u8]>) -> Range<'_> {
        Range::prefix(self, prefix.as_ref())
    }

    /// The keys of `range`, in order, without reading the values (double-ended).
    pub fn keys<K: AsRef<[u8]>, R: RangeBounds<K>>(&mut self, range: R) -> Keys<'_> {
        Keys::new(Range::new(self, range))
    }

    /// The entry with the smallest key, if any.
    pub fn first(&mut self) -> Result<Option<Entry>, Error> {
        self.range::<&[u8], _>(..).next().transpose()
    }

    /// The entry with the largest key, if any.
    pub fn last(&mut self) -> Result<Option<Entry>, Error> {
        self.range::<&[u8], _>(..).next_back().transpose()
    }

    /// How many live keys `range` holds (values are not read).
    pub fn count<K: AsRef<[u8]>, R: RangeBounds<K>>(&mut self, range: R) -> Result<u64, Error> {
        let mut n = 0;
        for k in self.keys(range) {
            k?;
            n += 1;
        }
        Ok(n)
    }

    /// The page cache's counters: pages found in it, and pages read into it (for tests of what
    /// a scan leaves in the cache).
    #[doc(hidden)]
    pub fn page_cache_counts(&mut self) -> (u64, u64) {
        self.engine.storage().page_cache_counts()
    }

    /// The engine, for the scans of [`crate::scan`].
    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Makes every acknowledged write durable.
    pub fn sync(&mut self) -> Result<(), Error> {
        if let Some(bg) = &mut self.background {
            let collected = bg.collect(&mut self.engine);
            self.forget_evicted();
            collected?;
        }
        self.engine.sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Writes the MemTables to SSTables and retires the WAL.
    pub fn flush(&mut self) -> Result<(), Error> {
        let flushed = self.engine.flush().map_err(Error::from);
        let scheduled = match &mut self.background {
            Some(bg) => bg.after_write(&mut self.engine),
            None => Ok(()),
        };
        self.forget_evicted();
        flushed?;
        scheduled?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Counters and sizes of the engine. Its `gets` and `table_probes` count only the gets the
    /// row cache did not answer; see [`Db::row_cache_stats`].
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// What the background compaction threads have done since open, and how long writes waited
    /// for them ([`Options::slowdown_tables`], [`Options::stop_tables`]); all zero without them.
    pub fn background_stats(&self) -> BackgroundStats {
        self.background.as_ref().map(Background::stats).unwrap_or_default()
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

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Closes the database: makes every acknowledged write durable (what drop does too) and
    /// reports whether that worked, then releases the files and the directory lock.
    ///
    /// # Errors
    ///
    /// The final sync's error, or [`minivault_core::Error::Poisoned`] when an earlier write or
    /// sync failed (what was acknowledged since the last good sync may then be lost).
    pub fn close(mut self) -> Result<(), Error> {
        let stopped = self.stop_background();
        let synced = if self.is_read_only() { Ok(()) } else { self.engine.sync() };
        self.closed = true;
        stopped?;
        synced.map_err(Error::from)
    }

    /// Stops the compaction threads: a merge in progress is given up (its `.tmp` removed),
    /// complete ones are installed; the threads are joined. Returns a background failure.
    fn stop_background(&mut self) -> Result<(), Error> {
        match self.background.take() {
            Some(mut bg) => {
                let stopped = bg.shut_down(&mut self.engine);
                self.forget_evicted();
                stopped
            }
            None => Ok(()),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Joins the compaction threads before any file handle or the lock goes.
        let _ = self.stop_background();
        if !self.closed && !self.is_read_only() {
            // Relaxed modes: a clean close makes everything durable. Errors cannot be reported
            // here; `close` reports them.
            let _ = self.engine.sync();
        }
    }
}
