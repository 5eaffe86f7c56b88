//! [`Db`]: an open database directory, the engine over [`PosixStorage`] with the row cache in
//! front of its reads, the durability modes (applied here, with group commit) and the
//! directory lock.
//!
//! # Sharing one handle between threads
//! `Db` is `Send + Sync` and every method takes `&self`; share it as `Arc<Db>`. Inside:
//!
//! ```text
//!  Db ─ state: Mutex ─ the engine (MemTables, WAL, SSTables), its read buffer, the ticket count
//!     ─ rows:  Mutex ─ the row cache (shared, weakly, with the background threads' nudge)
//!     ─ commit       ─ the group-commit hand-off (crate::group_commit)
//!     ─ (in state)   ─ the flush thread's and compaction workers' writer side
//!                      (crate::background, crate::flusher)
//! ```
//!
//! - A **write** takes the engine's lock to append its WAL record (handed to the OS, not
//!   synced) and apply it to the MemTable, and removes its keys from the row cache under that
//!   lock. When its durability mode wants it durable now ([`Durability::Always`]; the write
//!   that makes an `EveryN` count or a `Periodic` interval due), it then waits, without the
//!   lock, for a sync that covers it: the **group commit** of `group_commit` (a private module). One
//!   leader syncs the WAL file through a descriptor of its own
//!   ([`crate::storage::WalSyncHandle`]) while the others wait, so concurrent writers share one
//!   `fdatasync`, and readers and other writers keep the engine's lock meanwhile.
//!   With [`Durability::Always`] writes go through the **write group** first
//!   (`group_commit::WriteQueue`, [`crate::op`]): each queues its op, and the first writer to
//!   find no leader writes the queue as one WAL record (one batch, in arrival order) under one
//!   lock section, syncs it once and hands each writer its result; writes arriving meanwhile
//!   form the next group. So concurrent durable writes share the record as well as the sync.
//! - A **get** looks in the row cache (its own lock only), then takes the engine's lock for the
//!   MemTables only (and, when a background thread reported and could not take the lock
//!   itself, installs the report first, as a write would; not under `max_bytes`). When they
//!   answer, it caches the row before letting the lock go. When they know nothing of the key, it takes a view of the live tables (`crate::view`, a
//!   shared `Arc`, rebuilt only after a flush, a compaction's install or an eviction) and the
//!   row cache's stamp of the key, lets the lock go, and probes the tables through the view's
//!   descriptors (the page cache has its own lock). Its answer is cached only if no write of
//!   the key (nor a clear of the cache) came meanwhile; a write removes its keys from the cache
//!   and changes their stamps under the engine's lock, so a value older than a write is never
//!   cached after it. A table that a compaction or an eviction removes stays readable through
//!   a view that holds it; its disk space is freed when the last such get ends.
//! - **Compactions** run on background threads ([`Options::background_threads`], default 2;
//!   `crate::background`): what they finish is installed under the engine's lock, and what
//!   is due next handed out, by the next write, or at once by the thread that finished it
//!   when the lock is free (else by the next get or snapshot that takes it: a report raises a
//!   flag they look at), so a database no longer written still ends its compactions; their
//!   merges run without the lock. Under [`Options::max_bytes`] only writes (and `flush`,
//!   `sync`, `close`) install, as before: the directory is under the cap after each call, so
//!   it changes only within one, and an install there can rename a table in and sync the
//!   directory, which a read should not wait for. A write held back at
//!   [`Options::slowdown_tables`] / [`Options::stop_tables`] waits with the lock let go.
//! - **Flushes** run on the flush thread (with any background thread; `crate::flusher`): the
//!   write that fills the active MemTable freezes it and starts the next WAL; in the same
//!   lock section the frozen MemTable is copied to the flush thread, which writes the SSTable
//!   without the lock; it is installed as a compaction is. The frozen MemTable answers reads
//!   until then. A write that fills the next MemTable first gets `FlushPending` from the engine
//!   (nothing logged) and waits for the flush with the lock let go, then runs again; before
//!   that, from three quarters of the active MemTable on, each write sleeps
//!   [`crate::FLUSH_PACE`] while the flush runs, so that a slow flush makes many short waits
//!   rather than one long one.
//! - What still runs under the engine's lock: the append and MemTable insert of each write, a
//!   MemTable rotation (the new WAL's creation and the copy for the flush thread: the frozen
//!   MemTable is sealed, not sorted, and the flush thread sorts its copy; the first snapshot or
//!   iterator that reads it sorts the engine's table once; the old WAL is left to the next
//!   sync), a flush's and a compaction's install
//!   (rename, directory sync, removals), inline flushes and compactions when
//!   `background_threads` is 0, [`Db::flush`], the MemTable lookup of a get that misses the
//!   row cache (and taking its view of the tables), and each batch of an iterator
//!   ([`crate::scan`]). Never a group commit's `fdatasync`, a background flush's or merge's
//!   writing, a write's wait at the thresholds or for a flush, or a get's SSTable probes.
//!
//! - A **snapshot** ([`Db::snapshot`], `crate::snapshot`; every iterator takes one) pins a point
//!   in the active MemTable and keeps the table view of that moment, O(1) under the engine's
//!   lock (but for the first one after a rotation: `crate::pins`); its reads take the lock
//!   only for the active MemTable, while its generation is still
//!   the active one (`crate::pins` keeps the copies of generations rotated away).
//!
//! Visibility: a write is visible to reads from the moment its call takes the engine's lock
//! for it, before it is durable; every read that starts after a write returned sees it (or a
//! newer value). If the sync then fails, the write's call fails, the database is poisoned, and
//! reads may still see the write: its record reached the OS, and whether it reached the device
//! is unknown (the same holds for the unsynced writes of the relaxed modes).

use std::fmt;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use minivault_core::names::{file_name, FileKind};
use minivault_core::sstable::ReadCounters;
use minivault_core::MemGet;

use crate::background::{Background, BackgroundStats, Pressure, FLUSH_PACE, SLOWDOWN};
use crate::engine::{now_millis, open_engine, Engine};
use crate::flusher::FlushHook;
use crate::group_commit::{GroupCommit, WriteQueue, MAX_GROUP_BYTES, MAX_GROUP_ITEMS};
use crate::lock::DirLock;
use crate::op::{self, Op};
use crate::pins::Pins;
use crate::resident::{IndexStats, ResidentIndexes};
use crate::row_cache::{RowCache, RowCacheStats};
use crate::scan::{Entry, Keys, Range};
use crate::storage::PosixStorage;
use crate::view::{TableView, ValueExpiringAt};
use crate::{Durability, Error, Options, Snapshot, Stats, TableInfo, WriteBatch};

/// How long a write held at [`Options::stop_tables`] waits for a worker's report before it
/// looks again (a wake-up can be missed; see [`Background::reported`]).
const REPORT_POLL: Duration = Duration::from_millis(5);

/// What [`Db::append_with`] returns: the ticket a sync must cover before the write returns
/// (`None`: no sync due), or why nothing of the write was logged.
type Appended = Result<Option<u64>, NotWritten>;

/// Why [`Db::append_with`] logged nothing (but for a refusal that poisoned the engine: a write
/// that failed after its record).
#[derive(Debug)]
enum NotWritten {
    /// The engine's answer to the write.
    Refused(Error),
    /// A background failure the call found before it wrote (when admitted, or while it waited
    /// for a flush): the next call's to report had the call not come.
    Background(Error),
}

impl From<NotWritten> for Error {
    fn from(e: NotWritten) -> Self {
        match e {
            NotWritten::Refused(e) | NotWritten::Background(e) => e,
        }
    }
}

/// What [`Db::write_group_counts`] reports.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteGroupCounts {
    /// Writes that went through the write group since open.
    pub writes: u64,
    /// Groups that carried them (one leader's write each).
    pub groups: u64,
    /// Writes queued now, waiting for a leader.
    pub queued: usize,
    /// WAL records appended since open, by every write (a group's batch is one).
    pub records: u64,
}

/// The first size of a get's buffer for a value read from the tables.
pub(crate) const VALUE_LEN_HINT: usize = 256;

/// A value and when it expires (`None`: never), from [`Db::get_with_expiry`].
pub type ValueWithExpiry = (Vec<u8>, Option<SystemTime>);

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

/// What a failed WAL sync reports to every writer it was to cover: the OS error, kept so that
/// each of them gets an `io::Error` of its own.
#[derive(Debug, Clone)]
struct SyncFailure {
    kind: io::ErrorKind,
    code: Option<i32>,
    message: String,
}

impl SyncFailure {
    fn new(e: &io::Error) -> Self {
        SyncFailure { kind: e.kind(), code: e.raw_os_error(), message: e.to_string() }
    }

    /// A failed sync through the engine: its storage error as it is, any other by its message.
    fn from_engine(e: minivault_core::Error<io::Error>) -> Self {
        match e {
            minivault_core::Error::Storage(e) => Self::new(&e),
            e => Self::new(&io::Error::other(e.to_string())),
        }
    }

    fn to_error(&self) -> Error {
        let io = match self.code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        };
        Error::Engine(minivault_core::Error::Storage(io))
    }
}

/// Called by a group commit's leader, with no lock held, instead of syncing the WAL: for tests
/// that fail a sync or hold one in progress ([`Db::set_wal_sync_hook`]).
#[doc(hidden)]
pub type WalSyncHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Called by a get that reads the tables, after it let the engine's lock go and before it reads
/// them: for tests that hold a get there ([`Db::set_get_hook`]).
#[doc(hidden)]
pub type GetHook = Arc<dyn Fn() + Send + Sync>;

/// The engine and what is used only under its lock.
pub(crate) struct State {
    pub(crate) engine: Engine,
    /// Values read by gets, resized to the largest.
    buf: Vec<u8>,
    /// The engine's `evicted_tables` when the row cache last heard of it.
    evicted_seen: u64,
    /// WAL records appended since open: the group commit's ticket of the newest.
    appended: u64,
    /// When the WAL was last synced (for [`Durability::Periodic`]).
    last_sync: Instant,
    /// The ticket of the last write that asked for a sync ([`Durability::EveryN`]), and when it
    /// asked ([`Durability::Periodic`]).
    sync_asked: u64,
    sync_asked_at: Instant,
    sync_hook: Option<WalSyncHook>,
    /// The compaction threads ([`Options::background_threads`]); none read-only or with 0.
    background: Option<Background>,
    /// The live tables as gets read them without this lock: taken by the first get that needs
    /// it after the table set changed, let go when the set changes ([`Db::forget_evicted`]).
    view: Option<Arc<TableView>>,
    /// The live tables' resident indexes, which views share ([`Options::index_bytes`]).
    indexes: ResidentIndexes,
    /// Called by a get between letting this lock go and reading the tables (tests).
    get_hook: Option<GetHook>,
    /// The MemTable generations live snapshots and iterators read ([`Pins`]).
    pub(crate) pins: Pins,
}

/// An open database directory.
///
/// `Send + Sync`, every method `&self`: share one handle between threads as `Arc<Db>` (see the
/// module docs for what runs in parallel, and the `group_commit` module for how concurrent
/// durable writers share one `fdatasync`).
///
/// ```
/// use std::sync::Arc;
/// # let tmp = tempfile::tempdir()?;
/// let db = Arc::new(minivault::Db::open(tmp.path())?);
/// let writers: Vec<_> = (0..4)
///     .map(|t| {
///         let db = Arc::clone(&db);
///         std::thread::spawn(move || {
///             for i in 0..10 {
///                 // Durable on return; the four threads' writes share fdatasyncs.
///                 db.put(format!("t{t}/{i}").as_bytes(), b"v").unwrap();
///             }
///         })
///     })
///     .collect();
/// for w in writers {
///     w.join().unwrap();
/// }
/// assert_eq!(db.count(&b"t"[..]..&b"u"[..])?, 40);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Close it with [`Db::close`] to learn whether the final sync succeeded; dropping it syncs too,
/// but can only ignore a failure.
pub struct Db {
    /// Shared with the snapshots (weakly): they read the active MemTable under this lock.
    state: Arc<Mutex<State>>,
    /// Rows read recently. Every write removes its keys from here (under the engine's lock)
    /// before it reaches the engine; a get caches what the MemTables returned before it lets
    /// the engine's lock go, and what the tables returned only if the key's stamp, taken under
    /// that lock, is unchanged: a cached row is always what the engine would return.
    rows: Arc<Mutex<RowCache>>,
    /// False when the row cache is disabled: gets then skip its lock.
    rows_enabled: bool,
    /// Table searches and filter skips of gets that read a [`TableView`] (the engine counts
    /// the rest): added to [`Db::stats`].
    table_probes: AtomicU64,
    filter_skips: AtomicU64,
    /// The size of the buffer a get reads the tables into: the largest value read so far
    /// (at least [`VALUE_LEN_HINT`]).
    value_len_hint: AtomicUsize,
    /// Durable writes wait here for a sync that covers them.
    commit: GroupCommit<SyncFailure>,
    /// With [`Durability::Always`] (and writable), writes queue here to be written in groups:
    /// one WAL record for the writes that arrive together ([`crate::op`]).
    group: Option<WriteQueue<Op<'static>, Result<(), Error>>>,
    options: Options,
    read_only: bool,
    /// Set by [`Db::close`], which has done the final sync that drop would do.
    closed: bool,
    // Dropped after `state` (fields drop in order), so the lock outlives every file handle.
    // None when read-only: a reader takes no lock.
    _lock: Option<DirLock>,
    dir: PathBuf,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("poisoned", &self.is_poisoned())
            .field("stats", &self.stats())
            .field("row_cache", &self.row_cache_stats())
            .finish_non_exhaustive()
    }
}

/// Locks `m`; a poisoned lock (a panic while it was held) still guards the data: a panic in
/// this crate is a bug to fix, not a state to hide behind a second panic. For the engine's
/// state, [`lock_state`].
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Locks the engine's state. A lock poisoned by a panic while it was held still guards the
/// state, but the panic may have stopped a change to it halfway: the engine refuses writes
/// from then on ([`minivault_core::Error::Poisoned`], as after a failed write) and reads go on.
pub(crate) fn lock_state(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| refusing_writes(poisoned.into_inner()))
}

/// [`lock_state`] for a wait on a condition variable of the engine's state, for at most
/// `timeout`.
pub(crate) fn wait_state<'a>(
    reported: &Condvar,
    guard: MutexGuard<'a, State>,
    timeout: Duration,
) -> MutexGuard<'a, State> {
    match reported.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => refusing_writes(poisoned.into_inner().0),
    }
}

/// The guard of an engine's state whose lock a panic poisoned: the engine refuses writes.
fn refusing_writes(mut guard: MutexGuard<'_, State>) -> MutexGuard<'_, State> {
    guard.engine.refuse_writes();
    guard
}

impl Db {
    /// Opens (creating if missing) the database in `dir` with default [`Options`].
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # std::env::set_current_dir(tmp.path())?;
    /// let db = minivault::Db::open("telemetry-data")?; // relative to the working directory
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
    /// let db = Db::open_with(tmp.path().join("db"), options)?;
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
        // No sync is due in `Manual`: a WAL retired by its flush before the kernel writes it
        // back need never reach the device (in the other modes a sync writes it anyway).
        let storage = match options.durability {
            Durability::Manual => storage.without_wal_writeback(),
            _ => storage,
        };
        let storage = if options.map_wal_appends { storage } else { storage.without_mapped_wals() };
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
            _ => {
                let bg = Background::start(&mut engine, &options);
                Some(bg.map_err(|source| Error::Open { dir: dir.clone(), source })?)
            }
        };
        let db = Db::new(engine, options, Some(lock), dir)?;
        {
            let mut guard = db.state();
            let state = &mut *guard;
            state.background = background;
            // Compactions a database opened with many tables is due for start now.
            if let Some(bg) = &mut state.background {
                // Under a cap the directory must be under it after each call: an install (a
                // table renamed in before an eviction) is made by a call, never between calls.
                if db.options.max_bytes.is_none() {
                    let (shared, rows) =
                        (Arc::downgrade(&db.state), db.rows_enabled.then(|| Arc::downgrade(&db.rows)));
                    bg.set_nudge(Box::new(move || nudge(&shared, rows.as_ref())));
                }
                bg.after_write(&mut state.engine)?;
            }
        }
        Ok(db)
    }

    /// [`Options::read_only`]: no directory created, no lock, nothing written. A writer beside
    /// it may retire files (a WAL a flush covered, tables a compaction merged) at any moment, so
    /// the storage first holds every WAL and table open ([`PosixStorage::hold_files`]) and the
    /// engine opens from those alone; then the files it did not keep are let go. Once open, the
    /// handle holds every file it reads open, so later removals cannot touch what it sees.
    fn open_read_only(dir: PathBuf, options: Options) -> Result<Db, Error> {
        let mut storage = PosixStorage::open_dir_read_only(&dir, options.cache_bytes)
            .map_err(|source| Error::Open { dir: dir.clone(), source })?;
        storage.hold_files().map_err(|source| Error::Open { dir: dir.clone(), source })?;
        let mut engine = open_engine(storage, &options)?;
        engine.storage().release_files();
        Db::new(engine, options, None, dir)
    }

    fn new(mut engine: Engine, options: Options, lock: Option<DirLock>, dir: PathBuf) -> Result<Db, Error> {
        // Scans keep the active MemTable's keys in order here: 4 bytes per key it can hold.
        engine.set_scan_order_buffer(vec![0u8; engine.stats().memtable_key_capacity * 4]);
        let read_only = engine.is_read_only();
        let rows = RowCache::new(options.row_cache_bytes);
        let pins = Pins::new()?;
        let group = (options.durability == Durability::Always && !read_only).then(|| {
            let stats = engine.stats();
            let writes = MAX_GROUP_ITEMS.min(stats.memtable_key_capacity / 2);
            WriteQueue::new(writes, MAX_GROUP_BYTES.min(stats.memtable_capacity_bytes / 2))
        });
        Ok(Db {
            state: Arc::new(Mutex::new(State {
                engine,
                buf: vec![0u8; 4096],
                evicted_seen: 0,
                appended: 0,
                last_sync: Instant::now(),
                sync_asked: 0,
                sync_asked_at: Instant::now(),
                sync_hook: None,
                background: None,
                view: None,
                indexes: ResidentIndexes::new(options.index_bytes),
                get_hook: None,
                pins,
            })),
            table_probes: AtomicU64::new(0),
            filter_skips: AtomicU64::new(0),
            value_len_hint: AtomicUsize::new(VALUE_LEN_HINT),
            rows_enabled: !rows.is_disabled(),
            rows: Arc::new(Mutex::new(rows)),
            commit: GroupCommit::new(),
            group,
            options,
            read_only,
            closed: false,
            _lock: lock,
            dir,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    fn rows(&self) -> MutexGuard<'_, RowCache> {
        lock(&self.rows)
    }

    /// True when opened with [`Options::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `op`, then waits for a sync when the durability mode wants one now. With
    /// [`Durability::Always`] through the write group: the op is queued, and whichever writer
    /// leads writes it with the others queued beside it and syncs them ([`Db::write_group`]).
    fn write(&self, op: Op<'_>) -> Result<(), Error> {
        match &self.group {
            Some(group) => {
                let op = op.to_owned();
                let cost = op.cost();
                group.join(op, cost, |ops| self.write_group(&ops)).unwrap_or(Err(Error::WriteAbandoned))
            }
            None => match self.append_with(|rows| op.forget(rows), |e| op.apply(e))? {
                Some(ticket) => self.sync_through(ticket, 1),
                None => Ok(()),
            },
        }
    }

    /// A write group's leader's work: the group's writes appended ([`Db::append_group`]), then
    /// one sync through the group commit that covers them all; one result per write. The next
    /// group queues meanwhile, so under load a group holds the writes that arrived during the
    /// previous one's sync.
    fn write_group(&self, ops: &[Op<'static>]) -> Vec<Result<(), Error>> {
        let appended = self.append_group(ops);
        let due: Vec<u64> = appended.iter().filter_map(|a| a.as_ref().ok().copied().flatten()).collect();
        let synced = match due.iter().max() {
            Some(&ticket) => self.sync_through(ticket, due.len() as u64),
            None => Ok(()),
        };
        appended
            .into_iter()
            .map(|a| match a {
                Ok(Some(_)) => synced.as_ref().map_err(Error::duplicate).copied(),
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            })
            .collect()
    }

    /// Appends a write group's ops: as one write batch (one WAL record), or each alone when the
    /// group is one op, when the ops do not make one batch, or when the engine refused the
    /// batch and is not poisoned (then nothing of it was logged: [`NotWritten`]): then each
    /// gets the answer it gets alone. One result per op.
    fn append_group(&self, ops: &[Op<'static>]) -> Vec<Appended> {
        let alone = |op: &Op<'_>| self.append_with(|rows| op.forget(rows), |e| op.apply(e));
        if let [op] = ops {
            return vec![alone(op)];
        }
        if let Some(mut batch) = op::combine(ops) {
            let ttl = ops.iter().any(Op::has_ttl);
            let mut forgiven = false;
            let written = self.append_with(
                |rows| ops.iter().for_each(|op| op.forget(rows)),
                |engine| {
                    // Under the engine's lock, after any wait of this leader's: a TTL counts from
                    // here, as a write alone counts it from the engine's call.
                    if ttl {
                        if let Some(now) = op::combine(ops) {
                            batch = now;
                        }
                    }
                    let written = engine.write_batch(&batch);
                    // Refused for want of space: each op alone below counts its own refusal.
                    if matches!(written, Err(minivault_core::Error::Full)) && !engine.is_poisoned() {
                        engine.forgive_refusal();
                        forgiven = true;
                    }
                    written
                },
            );
            match written {
                Ok(ticket) => return ops.iter().map(|_| Ok(ticket)).collect(),
                // A background failure found before the write, or a write that poisoned the
                // engine: every op fails with it (none was written; alone, they would have
                // found the same failure, or the poisoned engine).
                Err(NotWritten::Background(e)) => {
                    return ops.iter().map(|_| Err(NotWritten::Background(e.duplicate()))).collect()
                }
                // Refused for want of space, the refusal taken back: each op alone counts its own
                // (should the engine be poisoned meanwhile, each gets `Poisoned`).
                Err(NotWritten::Refused(_)) if forgiven => {}
                Err(NotWritten::Refused(e)) if self.is_poisoned() => {
                    return ops.iter().map(|_| Err(NotWritten::Refused(e.duplicate()))).collect()
                }
                // Refused before its record, the engine not poisoned: nothing was logged.
                Err(NotWritten::Refused(_)) => {}
            }
        }
        ops.iter().map(alone).collect()
    }

    /// Runs one engine write under the engine's lock, `forget` first (it removes the write's
    /// keys from the row cache), and returns the ticket a sync must cover before the write
    /// returns, when the durability mode wants one now.
    ///
    /// When the write fills the active MemTable while the previous one is still being flushed
    /// (the engine answers [`minivault_core::Error::FlushPending`], having logged nothing), it
    /// waits for that flush with the lock let go, installs it, and runs again once admitted
    /// again (the table installed counts toward the slowdown and stop thresholds).
    fn append_with(
        &self,
        mut forget: impl FnMut(&mut RowCache),
        mut write: impl FnMut(&mut Engine) -> Result<(), minivault_core::Error<std::io::Error>>,
    ) -> Appended {
        let mut guard = self.admit().map_err(NotWritten::Background)?;
        let mut waiting: Option<Instant> = None;
        let written = loop {
            let state = &mut *guard;
            state.pins.release_unused(&mut state.engine);
            if self.rows_enabled {
                forget(&mut self.rows());
            }
            let written = write(&mut state.engine).map_err(Error::from);
            let (Err(Error::Engine(minivault_core::Error::FlushPending)), Some(_)) =
                (&written, &mut state.background)
            else {
                break written.map_err(NotWritten::Refused);
            };
            waiting.get_or_insert_with(Instant::now);
            // Wait for the flush with the lock let go. Each turn collects what the threads
            // reported (the flush may be installed here, or meanwhile by the flush thread's
            // nudge or a get), so a failure a nudge picked up ends this write with its own
            // error rather than `Poisoned`.
            let collected = loop {
                let state = &mut *guard;
                let collected = match &mut state.background {
                    Some(bg) => bg.collect(&mut state.engine),
                    None => break Ok(()),
                };
                self.forget_evicted(state);
                match &state.background {
                    Some(bg) if collected.is_ok() && bg.flush_running() => {
                        let reported = bg.reported();
                        guard = wait_state(&reported, guard, REPORT_POLL);
                    }
                    _ => break collected,
                }
            };
            if let Err(e) = collected {
                break Err(NotWritten::Background(e));
            }
            let state = &mut *guard;
            let Some(bg) = &mut state.background else { break written.map_err(NotWritten::Refused) };
            // Installed (or given up: then the next rotation flushes inline). The installed
            // table may have brought the tables to the thresholds: the write is admitted
            // again, as a new one would be.
            bg.schedule_flush(&mut state.engine);
            // The wait for the flush ends here; a wait at the thresholds is counted apart.
            if let Some(started) = waiting.take() {
                bg.note_flush_wait(started.elapsed());
            }
            drop(guard);
            guard = self.admit().map_err(NotWritten::Background)?;
        };
        let state = &mut *guard;
        // A rotation froze the active MemTable: a snapshot of it reads a copy from now on.
        state.pins.after_change(&mut state.engine);
        if let (Some(started), Some(bg)) = (waiting, &mut state.background) {
            bg.note_flush_wait(started.elapsed());
        }
        let scheduled = match &mut state.background {
            Some(bg) if written.is_ok() => bg.after_write(&mut state.engine),
            _ => Ok(()),
        };
        // Also after a failed write: eviction may have run before it gave up (and an
        // installed compaction may have evicted too).
        self.forget_evicted(state);
        written?;
        state.appended += 1;
        if let (Err(e), Some(bg)) = (scheduled, &mut state.background) {
            // The write is logged and applied: it stands (and is synced as any other). The
            // failure the threads reported is the next call's to return, as when a get or a
            // nudge finds it; so an error from here means nothing of the write was logged, but
            // for a refusal that poisoned the engine.
            bg.hold_error(e);
        }
        // Counted from the last sync asked for, not the last one finished: writes that
        // arrive while a due sync runs are not due again (they would sync twice in a row).
        let due = match self.options.durability {
            Durability::Always => true,
            Durability::EveryN(n) => {
                state.engine.wal_unsynced() >= n.max(1)
                    && state.appended - state.sync_asked >= u64::from(n.max(1))
            }
            Durability::Periodic(every) => {
                state.last_sync.elapsed() >= every && state.sync_asked_at.elapsed() >= every
            }
            Durability::Manual => false,
        };
        if due {
            state.sync_asked = state.appended;
            state.sync_asked_at = Instant::now();
        }
        Ok(due.then_some(state.appended))
    }

    /// The engine's lock for a write, once the background compactions let it in: installs what
    /// the workers finished (returning a background failure, which has poisoned the engine),
    /// then holds the write back while the tables are at the thresholds: at
    /// [`Options::slowdown_tables`] it sleeps [`SLOWDOWN`] once, at [`Options::stop_tables`] it
    /// waits for compactions until the tables are below it; below the thresholds, it sleeps
    /// [`FLUSH_PACE`] once when the active MemTable is three quarters full while the previous
    /// one is still being flushed. Every wait lets the lock go, so reads and group commits go on
    /// meanwhile. Without background threads: the lock, at once.
    fn admit(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut guard = self.state();
        let mut slept = false;
        let mut paced = false;
        let mut stopped: Option<Instant> = None;
        let admitted = loop {
            let state = &mut *guard;
            let Some(bg) = &mut state.background else { break Ok(()) };
            let collected = bg.collect(&mut state.engine);
            self.forget_evicted(state);
            if let Err(e) = collected {
                break Err(e);
            }
            let Some(bg) = &mut state.background else { break Ok(()) };
            match bg.pressure(&state.engine) {
                Pressure::Stop => {
                    match bg.press(&mut state.engine) {
                        Ok(true) => {}
                        // Nothing runs and nothing can be planned: the write goes ahead.
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                    stopped.get_or_insert_with(Instant::now);
                    let reported = bg.reported();
                    guard = wait_state(&reported, guard, REPORT_POLL);
                }
                Pressure::Slow if !slept && stopped.is_none() => {
                    guard = self.sleep_unlocked(guard, SLOWDOWN);
                    slept = true;
                    if let Some(bg) = &mut guard.background {
                        bg.note_stall(Pressure::Slow, SLOWDOWN);
                    }
                }
                // Below the thresholds only: a write that slept or waited for them goes on.
                Pressure::None
                    if !paced && !slept && stopped.is_none() && bg.pace_for_flush(&state.engine) =>
                {
                    let started = Instant::now();
                    guard = self.sleep_unlocked(guard, FLUSH_PACE);
                    paced = true;
                    if let Some(bg) = &mut guard.background {
                        bg.note_paced(started.elapsed());
                    }
                }
                Pressure::Slow | Pressure::None => break Ok(()),
            }
        };
        if let (Some(started), Some(bg)) = (stopped, &mut guard.background) {
            bg.note_stall(Pressure::Stop, started.elapsed());
        }
        admitted.map(|()| guard)
    }

    /// Sleeps `time` with the engine's lock let go (reads and group commits go on), and takes
    /// it again: [`Db::admit`]'s slowdown and pacing sleeps.
    fn sleep_unlocked<'a>(&'a self, guard: MutexGuard<'a, State>, time: Duration) -> MutexGuard<'a, State> {
        drop(guard);
        thread::sleep(time);
        self.state()
    }

    /// Returns once a sync covers every WAL record up to `ticket`: the group commit.
    /// `writers`: the writes it acknowledges (a write group's), for the counts.
    fn sync_through(&self, ticket: u64, writers: u64) -> Result<(), Error> {
        self.commit.wait_durable(ticket, writers, || self.lead_sync()).map_err(|f| f.to_error())
    }

    /// The group commit leader's sync: what the WAL holds now, synced with no lock held, then
    /// reported to the engine. Returns the ticket it covered. When the current WAL was rotated
    /// from a WAL that is not synced yet (rotation leaves that to the next sync), that WAL is
    /// synced and reported first, as the engine requires.
    fn lead_sync(&self) -> Result<u64, SyncFailure> {
        let (targets, ticket, hook) = {
            let mut state = self.state();
            let ticket = state.appended;
            if state.engine.wal_unsynced() == 0 {
                // Synced already: by a flush, or a sync that ended since.
                return Ok(ticket);
            }
            let mut targets = Vec::with_capacity(2);
            for target in state.engine.wal_sync_targets().into_iter().flatten() {
                let name = file_name(FileKind::Wal, target.wal);
                let handle = state.engine.storage().wal_sync_handle(name.as_str());
                if handle.is_none() && state.sync_hook.is_none() {
                    // No descriptor of its own for this WAL: sync through the engine, under its
                    // lock (the engine syncs the older WAL first itself).
                    state.engine.sync().map_err(SyncFailure::from_engine)?;
                    state.last_sync = Instant::now();
                    return Ok(ticket);
                }
                targets.push((target, handle));
            }
            (targets, ticket, state.sync_hook.clone())
        };
        for (target, handle) in targets {
            let outcome = match (&hook, handle) {
                (Some(hook), _) => hook(),
                (None, Some(handle)) => handle.sync_data(),
                (None, None) => Ok(()),
            };
            let failure = outcome.as_ref().err().map(SyncFailure::new);
            let mut state = self.state();
            let noted = state.engine.wal_synced(target, outcome);
            match (failure, noted) {
                (None, Ok(true)) => {}
                // Flushed or rotated away meanwhile (a flush retired the older WAL: its writes
                // are in a durable table), or out of order: the engine syncs what is left itself.
                (None, Ok(false)) => {
                    state.engine.sync().map_err(SyncFailure::from_engine)?;
                    // That sync covered everything appended so far, the ticket included.
                    break;
                }
                (Some(f), _) => return Err(f),
                (None, Err(e)) => return Err(SyncFailure::from_engine(e)),
            }
        }
        self.state().last_sync = Instant::now();
        Ok(ticket)
    }

    /// Empties the row cache when the engine has evicted tables ([`crate::WhenFull::DropOldest`]) since
    /// the last look: their rows must read as absent, and the cache cannot tell which they were.
    /// Lets the view of the tables go when the set changed (a flush, a compaction's install, an
    /// eviction), so that a removed table's disk space is freed once the gets reading it end
    /// (and the reaper has dropped the view, when one runs: `drop_stale_view`).
    fn forget_evicted(&self, state: &mut State) {
        forget_evicted(state, self.rows_enabled.then_some(&*self.rows));
    }

    /// Installs what the background threads reported, when a report waits: for calls that
    /// take the engine's lock but do not write (gets, snapshots), so that reads after the
    /// last write do not search a frozen MemTable and more tables than the compactions left.
    fn settle(&self, state: &mut State) {
        // Under a cap an install may rename a table in and sync the directory: left to writes.
        if self.options.max_bytes.is_none() {
            settle(state, self.rows_enabled.then_some(&*self.rows));
        }
    }

    // Every write removes its keys from the row cache (changing their stamps) under the
    // engine's lock, before calling the engine: a get that missed the cache caches what the
    // MemTables returned under that lock, and what the tables returned only with an unchanged
    // stamp, so nothing stale can be cached in between, and whatever the write does or fails
    // to do (an error, a poisoned engine, a write that reached the WAL but not the MemTable),
    // the next get of those keys asks the engine.

    /// Stores `value` under `key`. Durable on return with [`Durability::Always`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.write(Op::Put { key: key.into(), value: value.into() })
    }

    /// Stores `value` under `key` for `ttl` (at least 1 ms) from when the write is applied;
    /// afterwards the key reads as absent. A write that waited for the lock or for a flush still
    /// gets its whole TTL.
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<(), Error> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.write(Op::PutWithTtl { key: key.into(), value: value.into(), ttl_ms })
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.write(Op::Delete { key: key.into() })
    }

    /// Deletes every key from `start` (inclusive) to `end` (exclusive), atomically and with one
    /// WAL record however many keys the range holds (durable on return with
    /// [`Durability::Always`]). Older values in the range read as absent at once; compaction
    /// reclaims their space. Also in a batch: [`WriteBatch::delete_range`].
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let db = minivault::Db::open(tmp.path())?;
    /// for i in 0..100u32 {
    ///     db.put(format!("log/{i:04}").as_bytes(), b"...")?;
    /// }
    /// db.delete_range(b"log/0000", b"log/0090")?; // keeps the newest ten
    /// assert_eq!(db.count(&b"log/"[..]..&b"log0"[..])?, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<(), Error> {
        // The row cache is keyed by key, not by order: the op forgets it all.
        self.write(Op::DeleteRange { start: start.into(), end: end.into() })
    }

    /// Applies every entry of `batch` atomically (after a crash: all or none), with one WAL
    /// write and, with [`Durability::Always`], one `fdatasync` for the whole batch.
    pub fn write_batch(&self, batch: &WriteBatch) -> Result<(), Error> {
        self.write(Op::Batch(std::borrow::Cow::Borrowed(batch)))
    }

    /// The value of `key`, or `None` when absent, deleted or expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get_expiring_at(key)?.map(|(value, _)| value))
    }

    /// The value of `key` and when it expires (`None`: never), or `None` when the key is absent,
    /// deleted or expired.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let db = minivault::Db::open(tmp.path())?;
    /// use std::time::{Duration, SystemTime};
    /// db.put_with_ttl(b"session", b"token", Duration::from_secs(60))?;
    /// let (value, expires) = db.get_with_expiry(b"session")?.expect("just written");
    /// assert_eq!(value, b"token");
    /// assert!(expires.expect("has a TTL") > SystemTime::now());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with_expiry(&self, key: &[u8]) -> Result<Option<ValueWithExpiry>, Error> {
        Ok(self
            .get_expiring_at(key)?
            .map(|(value, at)| (value, at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))))
    }

    /// How long `key` has left to live, as redis' `TTL` reports it: absent, never expiring, or
    /// the time left.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let db = minivault::Db::open(tmp.path())?;
    /// use minivault::Ttl;
    /// db.put(b"forever", b"1")?;
    /// assert_eq!(db.ttl(b"forever")?, Ttl::NoExpiry);
    /// assert_eq!(db.ttl(b"never-written")?, Ttl::NoKey);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ttl(&self, key: &[u8]) -> Result<Ttl, Error> {
        Ok(match self.get_expiring_at(key)? {
            None => Ttl::NoKey,
            Some((_, None)) => Ttl::NoExpiry,
            Some((_, Some(at))) => Ttl::ExpiresIn(Duration::from_millis(at.saturating_sub(now_millis()))),
        })
    }

    /// The value of `key` and its expiry in the engine's clock (ms since the epoch): from the
    /// row cache, or from the engine (and then cached).
    ///
    /// Under the engine's lock: the MemTables' answer (cached there, as a write cannot come
    /// between), or when they know nothing of the key, the view of the live tables and the
    /// row cache's [`Stamp`](crate::row_cache::Stamp) of the key. Without it: the tables,
    /// through the view; the answer is cached only if no write of the key came meanwhile.
    fn get_expiring_at(&self, key: &[u8]) -> Result<Option<ValueExpiringAt>, Error> {
        if self.rows_enabled {
            if let Some((value, expires_at)) = self.rows().get_row(key, now_millis) {
                return Ok(Some((value.to_vec(), expires_at)));
            }
        }
        let now = now_millis();
        let (view, stamp, hook) = {
            let mut guard = self.state();
            let state = &mut *guard;
            self.settle(state);
            loop {
                match state.engine.get_from_memtables(key, &mut state.buf, now) {
                    Ok(MemGet::Found(value, expires_at)) => {
                        if self.rows_enabled {
                            self.rows().offer(key, value, expires_at);
                        }
                        return Ok(Some((value.to_vec(), expires_at)));
                    }
                    Ok(MemGet::Gone) => return Ok(None),
                    Ok(MemGet::InTables(_)) => break,
                    Err(minivault_core::Error::BufferTooSmall { needed }) => state.buf.resize(needed, 0),
                    Err(e) => return Err(e.into()),
                }
            }
            let stamp = self.rows_enabled.then(|| self.rows().stamp(key));
            (current_view(state), stamp, state.get_hook.clone())
        };
        if let Some(hook) = hook {
            hook();
        }
        let mut counters = ReadCounters::default();
        let read = view.read(key, now, &self.value_len_hint, &mut counters);
        if counters.table_probes > 0 {
            self.table_probes.fetch_add(counters.table_probes, Ordering::Relaxed);
        }
        if counters.filter_skips > 0 {
            self.filter_skips.fetch_add(counters.filter_skips, Ordering::Relaxed);
        }
        let found = read?;
        if let (Some((value, expires_at)), Some(stamp)) = (&found, stamp) {
            self.rows().offer_if_unchanged(key, stamp, value, *expires_at);
        }
        Ok(found)
    }

    /// The entries of `range`, in key order: a double-ended iterator (`.rev()` walks it from
    /// the last key down). Any range of anything that is `AsRef<[u8]>`: `..`, `a..b`, `a..=b`,
    /// `(Bound::Excluded(a), Bound::Unbounded)`.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # let db = minivault::Db::open(tmp.path())?;
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
    /// It reads a [`crate::Snapshot`] taken when it is made (O(1) under the engine's lock): it
    /// sees exactly the writes acknowledged before its creation and none made later, however
    /// long it lives. It reads in batches (see [`crate::scan`] for the memory a batch takes);
    /// while it lives it may hold up to two MemTable copies (2 ×
    /// [`crate::Options::memtable_bytes`], shared with the snapshots of the same MemTables: see
    /// [`Db::snapshot`]). A damaged table or an I/O error ends it with one `Err`.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Range<'_> {
        Range::new(self, range)
    }

    /// The entries whose key starts with `prefix`, in key order (double-ended, like
    /// [`Db::range`]). An empty prefix is every key; a prefix of `0xFF` bytes has no upper bound
    /// to compute, and is handled.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range<'_> {
        Range::prefix(self, prefix.as_ref())
    }

    /// The keys of `range`, in order, without reading the values (double-ended).
    pub fn keys<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Keys<'_> {
        Keys::new(Range::new(self, range))
    }

    /// The entry with the smallest key, if any.
    pub fn first(&self) -> Result<Option<Entry>, Error> {
        self.range::<&[u8], _>(..).next().transpose()
    }

    /// The entry with the largest key, if any.
    pub fn last(&self) -> Result<Option<Entry>, Error> {
        self.range::<&[u8], _>(..).next_back().transpose()
    }

    /// How many live keys `range` holds (values are not read).
    pub fn count<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<u64, Error> {
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
    pub fn page_cache_counts(&self) -> (u64, u64) {
        self.state().engine.storage().page_cache_counts()
    }

    /// Runs `f` on the engine under its lock: the scans of [`crate::scan`].
    pub(crate) fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        f(&mut self.state().engine)
    }

    /// Makes every acknowledged write durable. Concurrent calls, and durable writes made
    /// meanwhile, share one `fdatasync` (the group commit); readers are not held up by it.
    pub fn sync(&self) -> Result<(), Error> {
        let ticket = {
            let mut guard = self.state();
            let state = &mut *guard;
            if let Some(bg) = &mut state.background {
                let collected = bg.collect(&mut state.engine);
                self.forget_evicted(state);
                collected?;
            }
            if state.engine.is_poisoned() || self.read_only {
                // The engine's own answer: Poisoned after a failure, ReadOnly, or (writes
                // refused after a panic under the lock) a sync of the WAL.
                state.engine.sync()?;
            }
            state.appended
        };
        self.sync_through(ticket, 0)
    }

    /// Writes the MemTables to SSTables and retires the WAL. A flush running on the flush
    /// thread is waited for (the engine's lock let go) and installed first; the rest is
    /// written in this call. When it returns, the WALs it retired and the tables earlier
    /// compactions replaced are gone from the directory ([`Db::settle_removals`]).
    pub fn flush(&self) -> Result<(), Error> {
        {
            let mut guard = self.flush_thread_idle()?;
            self.flush_locked(&mut guard)?;
        }
        self.settle_removals();
        Ok(())
    }

    /// Returns once the files the database no longer needs are gone from the directory: the
    /// tables compactions replaced and the WALs flushes made obsolete. With background threads
    /// (and no `max_bytes`) they are unlinked and closed by a thread of their own, off the
    /// engine's lock, a few milliseconds after the change that made them obsolete (the file
    /// system frees a large file's blocks then); until then a directory listing still shows
    /// them. Writes go on meanwhile. For a caller that inspects the directory or measures its
    /// size; [`Db::flush`] and [`Db::close`] wait for it too.
    pub fn settle_removals(&self) {
        let settler = self.state().background.as_ref().and_then(Background::removals_settler);
        // With the engine's lock let go: the unlinks waited for take tens of milliseconds.
        if let Some(settler) = settler {
            settler.settle();
        }
    }

    /// The engine's lock once no flush runs on the flush thread: a running one is waited for
    /// (the lock let go meanwhile) and installed.
    fn flush_thread_idle(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut guard = self.state();
        loop {
            let state = &mut *guard;
            let Some(bg) = &mut state.background else { break };
            let collected = bg.collect(&mut state.engine);
            self.forget_evicted(state);
            collected?;
            let Some(bg) = &mut state.background else { break };
            if !bg.flush_running() {
                break;
            }
            let reported = bg.reported();
            guard = wait_state(&reported, guard, REPORT_POLL);
        }
        Ok(guard)
    }

    /// Pins the present for a [`crate::Snapshot`] in one section under the engine's lock: a
    /// point in the active MemTable (and the copy of the one waiting for a flush), the view of
    /// the live tables, and the clock then.
    pub(crate) fn pin(&self) -> Result<Snapshot, Error> {
        let mut guard = self.state();
        let state = &mut *guard;
        self.settle(state);
        let pinned = state.pins.pin(&mut state.engine)?;
        Ok(Snapshot::new(Arc::downgrade(&self.state), pinned, current_view(state), now_millis()))
    }

    /// [`Db::flush`] under the engine's lock.
    fn flush_locked(&self, state: &mut State) -> Result<(), Error> {
        // The flush freezes and writes the active MemTable in one call: a snapshot of it keeps
        // a copy made first, if the flush did rotate it away.
        let copy = state.pins.copy_active(&state.engine);
        let flushed = state.engine.flush().map_err(Error::from);
        state.pins.after_flush(&mut state.engine, copy);
        let scheduled = match &mut state.background {
            Some(bg) => bg.after_write(&mut state.engine),
            None => Ok(()),
        };
        self.forget_evicted(state);
        flushed?;
        scheduled?;
        state.last_sync = Instant::now();
        Ok(())
    }

    /// Counters and sizes of the engine. Its `gets` and `table_probes` count only the gets the
    /// row cache did not answer; see [`Db::row_cache_stats`].
    pub fn stats(&self) -> Stats {
        let mut stats = self.state().engine.stats();
        stats.table_probes += self.table_probes.load(Ordering::Relaxed);
        stats.filter_skips += self.filter_skips.load(Ordering::Relaxed);
        stats
    }

    /// What the background compaction threads have done since open, and how long writes waited
    /// for them ([`Options::slowdown_tables`], [`Options::stop_tables`]); all zero without them.
    pub fn background_stats(&self) -> BackgroundStats {
        self.state().background.as_ref().map(Background::stats).unwrap_or_default()
    }

    /// Makes the compaction threads wait before each step of their merges (`true`) or go on
    /// (`false`): for tests that need a merge to stay in progress. A paused merge still gives
    /// up at close.
    #[doc(hidden)]
    pub fn pause_background(&self, paused: bool) {
        if let Some(bg) = &self.state().background {
            bg.pause(paused);
        }
    }

    /// Makes what the background threads report wait for the next write, flush, sync or close
    /// to install it (`true`), or lets the threads, gets and snapshots install it at once again
    /// (`false`, the default): for tests that need a thread's finished work left uninstalled.
    #[doc(hidden)]
    pub fn hold_background_installs(&self, held: bool) {
        if let Some(bg) = &mut self.state().background {
            bg.hold_installs(held);
        }
    }

    /// What the SSTables' resident indexes hold ([`Options::index_bytes`]): loaded bytes
    /// (never above the budget), tables whose fences and whose filters are resident, loads
    /// refused for want of room.
    pub fn index_stats(&self) -> IndexStats {
        self.state().indexes.stats()
    }

    /// Counters and sizes of the row cache ([`Options::row_cache_bytes`]).
    pub fn row_cache_stats(&self) -> RowCacheStats {
        self.rows().stats()
    }

    /// Syncs the group commit ran, and durable writes acknowledged after one of them: their
    /// ratio is how many writes shared each `fdatasync` (for tests and benchmarks).
    #[doc(hidden)]
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.commit.counts()
    }

    /// The write group's counts ([`Durability::Always`]; zero otherwise), for tests and
    /// benchmarks.
    #[doc(hidden)]
    pub fn write_group_counts(&self) -> WriteGroupCounts {
        let (writes, groups) = self.group.as_ref().map_or((0, 0), WriteQueue::counts);
        let queued = self.group.as_ref().map_or(0, WriteQueue::queued);
        WriteGroupCounts { writes, groups, queued, records: self.state().appended }
    }

    /// Makes a group commit's leader call `hook` instead of syncing the WAL (`None`: sync
    /// again), with no lock held: for tests that fail a sync or hold one in progress.
    #[doc(hidden)]
    pub fn set_wal_sync_hook(&self, hook: Option<WalSyncHook>) {
        self.state().sync_hook = hook;
    }

    /// Makes the flush thread call `hook` before it writes each table, with no lock held (an
    /// `Err` fails that flush with it; `None`: no hook): for tests that hold a flush in progress
    /// or fail one. No effect without background threads.
    #[doc(hidden)]
    pub fn set_flush_hook(&self, hook: Option<FlushHook>) {
        if let Some(bg) = &mut self.state().background {
            bg.set_flush_hook(hook);
        }
    }

    /// Makes every get that reads the tables call `hook` after it let the engine's lock go and
    /// before it reads them (`None`: no hook): for tests that hold a get there.
    #[doc(hidden)]
    pub fn set_get_hook(&self, hook: Option<GetHook>) {
        self.state().get_hook = hook;
    }

    /// The SSTables, oldest first.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.state().engine.tables().collect()
    }

    /// True once a failed write or sync, or a panic while a thread held the handle's lock, has
    /// made the database refuse writes until reopened.
    pub fn is_poisoned(&self) -> bool {
        self.state().engine.is_poisoned()
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
    /// sync failed (what was acknowledged since the last good sync may then be lost). After a
    /// panic under the handle's lock (writes refused, no failure) the final sync still runs.
    pub fn close(mut self) -> Result<(), Error> {
        let stopped = self.stop_background();
        let synced = if self.is_read_only() { Ok(()) } else { self.final_sync() };
        self.closed = true;
        stopped?;
        synced.map_err(Error::from)
    }

    /// Stops the compaction threads: a merge in progress is given up (its `.tmp` removed),
    /// complete ones are installed; the threads are joined. Returns a background failure. Only
    /// from close and drop, when the handle is ours alone.
    fn stop_background(&mut self) -> Result<(), Error> {
        let mut guard = lock_state(&self.state);
        let state = &mut *guard;
        // Snapshots that outlive the handle read copies from now on.
        state.pins.keep_active(&state.engine);
        match state.background.take() {
            Some(mut bg) => {
                let stopped = bg.shut_down(&mut state.engine);
                let evicted = state.engine.evicted_tables();
                if evicted != state.evicted_seen {
                    state.evicted_seen = evicted;
                    lock(&self.rows).clear();
                }
                stopped
            }
            None => Ok(()),
        }
    }

    /// The sync of close and drop: through the engine, which is ours alone by now.
    fn final_sync(&mut self) -> Result<(), minivault_core::Error<io::Error>> {
        lock_state(&self.state).engine.sync()
    }
}

/// The view of the engine's live tables: the one `state` keeps while the table set is
/// unchanged, else a new one (kept from now on).
fn current_view(state: &mut State) -> Arc<TableView> {
    drop_stale_view(state);
    let view = state.view.get_or_insert_with(|| Arc::new(TableView::of(&state.engine, &mut state.indexes)));
    Arc::clone(view)
}

/// Lets the kept view of the tables go when the table set changed since it was taken. It may
/// hold the last descriptors of tables a compaction removed, whose close frees their blocks:
/// it is dropped on the storage's reaper thread when one runs, not under the engine's lock.
fn drop_stale_view(state: &mut State) {
    if state.view.as_ref().is_some_and(|v| !v.is_current(&state.engine)) {
        if let Some(view) = state.view.take() {
            state.engine.storage().drop_later(view);
        }
    }
}

/// Lets the stale view go and, when tables were evicted since the row cache last heard of it,
/// empties the row cache (`rows`: `None` when it is disabled).
fn forget_evicted(state: &mut State, rows: Option<&Mutex<RowCache>>) {
    drop_stale_view(state);
    let evicted = state.engine.evicted_tables();
    if evicted != state.evicted_seen {
        state.evicted_seen = evicted;
        if let Some(rows) = rows {
            lock(rows).clear();
        }
    }
}

/// [`Db::settle`] with the row cache given (`None`: disabled).
fn settle(state: &mut State, rows: Option<&Mutex<RowCache>>) {
    let Some(bg) = &mut state.background else { return };
    if bg.report_waiting() {
        bg.settle(&mut state.engine);
        forget_evicted(state, rows);
    }
}

/// A background thread's nudge ([`crate::background::Signal`]): settles if the handle is still
/// there and its engine's lock is free; `false` when the lock is held (the thread tries again).
fn nudge(state: &Weak<Mutex<State>>, rows: Option<&Weak<Mutex<RowCache>>>) -> bool {
    let Some(shared) = state.upgrade() else { return true };
    let mut guard = match shared.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(p)) => refusing_writes(p.into_inner()),
        Err(TryLockError::WouldBlock) => return false,
    };
    let rows = rows.and_then(Weak::upgrade);
    settle(&mut guard, rows.as_deref());
    true
}

/// Removes every key of `batch` from the row cache and changes their stamps; everything,
/// should an entry not decode (a batch built through [`WriteBatch`]'s methods always does).
impl Drop for Db {
    fn drop(&mut self) {
        // Joins the compaction threads before any file handle or the lock goes.
        let _ = self.stop_background();
        if !self.closed && !self.is_read_only() {
            // Relaxed modes: a clean close makes everything durable. Errors cannot be reported
            // here; `close` reports them.
            let _ = self.final_sync();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_panic_while_the_engines_lock_is_held_makes_writes_refused_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"v").unwrap();
        let panicked = thread::scope(|s| {
            s.spawn(|| {
                let _state = db.state();
                panic!("a panic holding the engine's lock (on purpose)");
            })
            .join()
        });
        assert!(panicked.is_err());
        let refused = db.put(b"k2", b"v");
        assert!(matches!(refused, Err(Error::Engine(minivault_core::Error::Poisoned))), "{refused:?}");
        assert!(db.is_poisoned());
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(db.get(b"k2").unwrap(), None);
        // Close still syncs the WAL (what was logged before the panic stays).
        db.close().expect("a close that syncs though writes are refused");
        let db = Db::open(dir.path()).unwrap();
        assert!(!db.is_poisoned(), "a reopen starts afresh");
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
        db.put(b"k2", b"v").unwrap();
    }
}
