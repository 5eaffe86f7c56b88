//! The database handle, [`minivault_db`]: open with options, put, put with a TTL, get (into the
//! caller's buffer, or allocated), TTL, delete, sync, flush, stats, close.

use std::ffi::{c_char, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use minivault_posix::options::{CACHE_BYTES, MEMTABLE_BYTES, ROW_CACHE_BYTES, WAL_PREALLOCATION_BYTES};
use minivault_posix::{Db, Durability, Options, Ttl, WhenFull};

use crate::args::{bytes, reference, Buffer, Out};
use crate::status::*;

/// An open database: the Rust `Db` (`Send + Sync`, every call `&self`) behind a read-write
/// lock that every call takes shared, so calls on one handle from several threads run in
/// parallel; only `minivault_close` takes it exclusively, to take the `Db` out. Iterators share
/// it, and see `None` once it is closed.
pub(crate) type Shared = Arc<RwLock<Option<Db>>>;

/// An open database. Opaque: made by `minivault_open`, released by `minivault_close`.
///
/// Thread safety: a handle may be shared by threads, and their calls run in parallel (gets beside
/// a writer; concurrent durable writes share one `fdatasync`). `minivault_close` must not race
/// with other calls on the same handle.
pub struct minivault_db {
    pub(crate) shared: Shared,
}

/// Runs `f` on the open database behind `shared`.
pub(crate) fn with_db<T>(shared: &Shared, f: impl FnOnce(&Db) -> Result<T, Failure>) -> Result<T, Failure> {
    let guard = shared.read().map_err(|_| {
        Failure::new(MINIVAULT_ERR_PANIC, "an earlier call panicked while using this handle: close it")
    })?;
    match guard.as_ref() {
        Some(db) => f(db),
        None => Err(Failure::new(MINIVAULT_ERR_CLOSED, "the database handle was closed")),
    }
}

/// The handle at `db`.
///
/// # Safety
/// `db` is NULL or a handle from `minivault_open` not yet closed.
unsafe fn handle<'a>(db: *const minivault_db) -> Result<&'a minivault_db, Failure> {
    // SAFETY: this function's contract.
    unsafe { reference(db, "db") }
}

/// Durability: every write is `fdatasync`ed before it returns (the default).
pub const MINIVAULT_DURABILITY_ALWAYS: u32 = 0;
/// Durability: every `durability_every_n`-th write syncs.
pub const MINIVAULT_DURABILITY_EVERY_N: u32 = 1;
/// Durability: the first write at least `durability_period_ms` after the last sync syncs.
pub const MINIVAULT_DURABILITY_PERIODIC: u32 = 2;
/// Durability: only `minivault_sync`, `minivault_flush` and close sync (and a finished MemTable flush makes its writes durable).
pub const MINIVAULT_DURABILITY_MANUAL: u32 = 3;

/// When full (`max_bytes`, or the file system): writes that add data fail with
/// `MINIVAULT_ERR_FULL` until deletes make room (the default).
pub const MINIVAULT_WHEN_FULL_REFUSE_WRITES: u32 = 0;
/// When full: the oldest SSTables are dropped whole (a FIFO buffer of the newest data);
/// `minivault_stats` counts what was dropped.
pub const MINIVAULT_WHEN_FULL_DROP_OLDEST: u32 = 1;

/// Options of `minivault_open`. Fill it with `minivault_options_init` (the defaults), then
/// change what you need: the struct may grow fields at the end in later versions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct minivault_options {
    /// One of the `MINIVAULT_DURABILITY_*` modes (default `MINIVAULT_DURABILITY_ALWAYS`).
    pub durability: u32,
    /// For `MINIVAULT_DURABILITY_EVERY_N`: sync every this many writes (0 counts as 1).
    pub durability_every_n: u32,
    /// For `MINIVAULT_DURABILITY_PERIODIC`: the interval in milliseconds.
    pub durability_period_ms: u64,
    /// Bytes of each of the two MemTables: 512 B ..= 1 GiB (default 4 MiB).
    pub memtable_bytes: u64,
    /// Bytes of the SSTable page cache: 0 ..= 16 GiB (default 8 MiB).
    pub cache_bytes: u64,
    /// Bytes of the row cache: 0 ..= 16 GiB (default 4 MiB).
    pub row_cache_bytes: u64,
    /// How far ahead of its records the WAL is extended: -1 for the default (a quarter
    /// MemTable, at most 1 MiB), 0 for never, else 1 ..= 1 GiB.
    pub wal_preallocation_bytes: i64,
    /// Non-zero: open read-only (no lock, nothing written; writes fail with
    /// `MINIVAULT_ERR_READ_ONLY`).
    pub read_only: u8,
    /// The most bytes the database's files may take (0: no cap, the default); at least a few
    /// MemTables (`MINIVAULT_ERR_INVALID_OPTION` names the smallest).
    pub max_bytes: u64,
    /// What happens at `max_bytes` or when the disk is full: one of the
    /// `MINIVAULT_WHEN_FULL_*` modes (default `MINIVAULT_WHEN_FULL_REFUSE_WRITES`).
    pub when_full: u32,
}

impl From<&Options> for minivault_options {
    fn from(o: &Options) -> Self {
        let (durability, every_n, period) = match o.durability {
            Durability::Always => (MINIVAULT_DURABILITY_ALWAYS, 0, 0),
            Durability::EveryN(n) => (MINIVAULT_DURABILITY_EVERY_N, n, 0),
            Durability::Periodic(t) => {
                (MINIVAULT_DURABILITY_PERIODIC, 0, u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            }
            Durability::Manual => (MINIVAULT_DURABILITY_MANUAL, 0, 0),
        };
        minivault_options {
            durability,
            durability_every_n: every_n,
            durability_period_ms: period,
            memtable_bytes: o.memtable_bytes as u64,
            cache_bytes: o.cache_bytes as u64,
            row_cache_bytes: o.row_cache_bytes as u64,
            wal_preallocation_bytes: o
                .wal_preallocation_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            read_only: u8::from(o.read_only),
            max_bytes: o.max_bytes.unwrap_or(0),
            when_full: match o.when_full {
                WhenFull::DropOldest => MINIVAULT_WHEN_FULL_DROP_OLDEST,
                _ => MINIVAULT_WHEN_FULL_REFUSE_WRITES,
            },
        }
    }
}

impl minivault_options {
    /// The Rust API's options, checked.
    fn to_options(self) -> Result<Options, Failure> {
        let o = &self;
        let durability = match o.durability {
            MINIVAULT_DURABILITY_ALWAYS => Durability::Always,
            MINIVAULT_DURABILITY_EVERY_N => Durability::EveryN(o.durability_every_n.max(1)),
            MINIVAULT_DURABILITY_PERIODIC => {
                Durability::Periodic(Duration::from_millis(o.durability_period_ms))
            }
            MINIVAULT_DURABILITY_MANUAL => Durability::Manual,
            other => return Err(Failure::invalid(format!("unknown durability mode {other}"))),
        };
        let wal_preallocation_bytes = match o.wal_preallocation_bytes {
            -1 => None,
            n => Some(WAL_PREALLOCATION_BYTES.check(u64::try_from(n).unwrap_or(u64::MAX))? as u64),
        };
        let when_full = match o.when_full {
            MINIVAULT_WHEN_FULL_REFUSE_WRITES => WhenFull::RefuseWrites,
            MINIVAULT_WHEN_FULL_DROP_OLDEST => WhenFull::DropOldest,
            other => return Err(Failure::invalid(format!("unknown when_full mode {other}"))),
        };
        // `..Options::default()`: an option added to the Rust API later keeps its default here
        // instead of breaking this build.
        #[allow(clippy::needless_update)]
        Ok(Options {
            durability,
            memtable_bytes: MEMTABLE_BYTES.check(o.memtable_bytes)?,
            cache_bytes: CACHE_BYTES.check(o.cache_bytes)?,
            row_cache_bytes: ROW_CACHE_BYTES.check(o.row_cache_bytes)?,
            wal_preallocation_bytes,
            read_only: o.read_only != 0,
            max_bytes: (o.max_bytes != 0).then_some(o.max_bytes),
            when_full,
            ..Options::default()
        })
    }
}

/// Fills `*options` with the defaults: durability always, 4 MiB MemTables, an 8 MiB page cache,
/// a 4 MiB row cache, the default WAL preallocation, read-write, no size cap.
///
/// # Safety
/// `options` is NULL (an error) or points to a `minivault_options` to write.
#[no_mangle]
pub unsafe extern "C" fn minivault_options_init(options: *mut minivault_options) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        let mut out = unsafe { Out::new(options, "options") }?;
        out.write(minivault_options::from(&Options::default()));
        Ok(MINIVAULT_OK)
    })
}

/// Opens (creating if missing, unless read-only) the database in the directory `dir` and
/// stores its handle in `*db` (NULL on failure). `options` NULL means the defaults.
///
/// Errors: `MINIVAULT_ERR_LOCKED` (another process has it open), `MINIVAULT_ERR_IO`,
/// `MINIVAULT_ERR_INVALID_OPTION` (a size out of range; checked before anything is created),
/// `MINIVAULT_ERR_CORRUPTED`, `MINIVAULT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string; `options` is NULL or points to a
/// `minivault_options`; `db` is NULL or points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn minivault_open(
    dir: *const c_char,
    options: *const minivault_options,
    db: *mut *mut minivault_db,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        let mut out = unsafe { Out::new(db, "db") }?;
        out.write(std::ptr::null_mut());
        if dir.is_null() {
            return Err(Failure::invalid("dir is NULL"));
        }
        // SAFETY: dir is a non-NULL NUL-terminated string (this function's contract).
        let dir = OsStr::from_bytes(unsafe { CStr::from_ptr(dir) }.to_bytes());
        let options = if options.is_null() {
            Options::default()
        } else {
            // SAFETY: non-NULL, and points to a minivault_options (this function's contract).
            unsafe { reference(options, "options") }?.to_options()?
        };
        let opened = Db::open_with(dir, options)?;
        let handle = Box::new(minivault_db { shared: Arc::new(RwLock::new(Some(opened))) });
        out.write(Box::into_raw(handle));
        Ok(MINIVAULT_OK)
    })
}

/// Closes the database and frees the handle (whatever the result): makes every acknowledged
/// write durable and reports whether that worked (`MINIVAULT_ERR_IO`, or
/// `MINIVAULT_ERR_POISONED` when an earlier write failed), then releases the files and the
/// lock. Iterators still open on it return `MINIVAULT_ERR_CLOSED` from then on.
///
/// # Safety
/// `db` is NULL (an error) or a handle from `minivault_open`, not yet closed, that no other
/// thread is using; it is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn minivault_close(db: *mut minivault_db) -> minivault_status {
    guard(|| {
        if db.is_null() {
            return Err(Failure::invalid("db is NULL"));
        }
        // SAFETY: a handle from minivault_open (Box::into_raw), not yet closed: ours to free.
        let handle = unsafe { Box::from_raw(db) };
        // A lock poisoned by a panic still holds the Db: close it all the same.
        let taken = handle.shared.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match taken {
            Some(db) => db.close()?,
            None => return Err(Failure::new(MINIVAULT_ERR_CLOSED, "the database handle was closed")),
        }
        Ok(MINIVAULT_OK)
    })
}

/// Stores `value` under `key` (1 ..= 1024 bytes; the value 0 ..= 1 MiB). Durable on return
/// with `MINIVAULT_DURABILITY_ALWAYS`.
///
/// # Safety
/// `db` is NULL or an open handle; `key` points to `key_len` bytes (NULL only with length 0),
/// `value` to `value_len` bytes (NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_put(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key, value) =
            unsafe { (handle(db)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?) };
        with_db(&h.shared, |db| Ok(db.put(key, value)?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Stores `value` under `key` for `ttl_ms` milliseconds (at least 1); afterwards the key reads
/// as absent.
///
/// # Safety
/// As `minivault_put`.
#[no_mangle]
pub unsafe extern "C" fn minivault_put_with_ttl(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key, value) =
            unsafe { (handle(db)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?) };
        if ttl_ms == 0 {
            return Err(Failure::invalid("a TTL must be at least 1 ms"));
        }
        with_db(&h.shared, |db| Ok(db.put_with_ttl(key, value, Duration::from_millis(ttl_ms))?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Deletes `key` (`MINIVAULT_OK` whether or not it existed).
///
/// # Safety
/// `db` is NULL or an open handle; `key` points to `key_len` bytes (NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_delete(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key) = unsafe { (handle(db)?, bytes(key, key_len, "key")?) };
        with_db(&h.shared, |db| Ok(db.delete(key)?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Deletes every key from `start` (inclusive) to `end` (exclusive) with one record, however
/// many keys the range holds (`MINIVAULT_ERR_INVALID_ARGUMENT` when `end` is not after `start`
/// or a key is empty).
///
/// # Safety
/// `db` is NULL or an open handle; `start` points to `start_len` bytes and `end` to `end_len`
/// bytes (each NULL only with length 0).
#[no_mangle]
pub unsafe extern "C" fn minivault_delete_range(
    db: *mut minivault_db,
    start: *const u8,
    start_len: usize,
    end: *const u8,
    end_len: usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, start, end) =
            unsafe { (handle(db)?, bytes(start, start_len, "start")?, bytes(end, end_len, "end")?) };
        with_db(&h.shared, |db| Ok(db.delete_range(start, end)?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Reads the value of `key` into `buf` (`buf_len` bytes) and its length into `*value_len`.
///
/// Returns `MINIVAULT_OK`, `MINIVAULT_NOT_FOUND` (`*value_len` = 0), or
/// `MINIVAULT_ERR_BUFFER_TOO_SMALL` with the value's length in `*value_len` and `buf` untouched:
/// call again with a buffer that large (`buf` NULL with `buf_len` 0 asks for the length alone).
///
/// # Safety
/// `db` is NULL or an open handle; `key` points to `key_len` bytes (NULL only with length 0);
/// `buf` to `buf_len` writable bytes (NULL only with length 0); `value_len` is NULL (an
/// error) or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn minivault_get(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    buf_len: usize,
    value_len: *mut usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key, mut buf, mut len) = unsafe {
            (
                handle(db)?,
                bytes(key, key_len, "key")?,
                Buffer::new(buf, buf_len, "buf")?,
                Out::new(value_len, "value_len")?,
            )
        };
        len.write(0);
        with_db(&h.shared, |db| {
            // The row cache hands back an owned copy; copying it again costs a memcpy, not a
            // second lookup.
            let Some(value) = db.get(key)? else { return Ok(MINIVAULT_NOT_FOUND) };
            len.write(value.len());
            if buf.fill(&value) {
                Ok(MINIVAULT_OK)
            } else {
                Err(Failure::new(
                    MINIVAULT_ERR_BUFFER_TOO_SMALL,
                    format!("the value has {} bytes; the buffer holds {buf_len}", value.len()),
                ))
            }
        })
    })
}

/// Reads the value of `key` into a new buffer: `*value` (free it with `minivault_free`) and
/// `*value_len`. Returns `MINIVAULT_OK` or `MINIVAULT_NOT_FOUND` (`*value` NULL, `*value_len`
/// 0). An empty value is a non-NULL pointer with length 0.
///
/// # Safety
/// `db` is NULL or an open handle; `key` points to `key_len` bytes (NULL only with length 0);
/// `value` and `value_len` are NULL (an error) or point to writable storage.
#[no_mangle]
pub unsafe extern "C" fn minivault_get_alloc(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
    value: *mut *mut u8,
    value_len: *mut usize,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key, mut out, mut len) = unsafe {
            (
                handle(db)?,
                bytes(key, key_len, "key")?,
                Out::new(value, "value")?,
                Out::new(value_len, "value_len")?,
            )
        };
        out.write(std::ptr::null_mut());
        len.write(0);
        let Some(found) = with_db(&h.shared, |db| Ok(db.get(key)?))? else { return Ok(MINIVAULT_NOT_FOUND) };
        // malloc, so that C code may also release it with free().
        // SAFETY: malloc has no preconditions; at least 1 byte so that an empty value is not NULL.
        let ptr = unsafe { libc::malloc(found.len().max(1)) }.cast::<u8>();
        if ptr.is_null() {
            return Err(Failure::new(MINIVAULT_ERR_IO, format!("out of memory for {} bytes", found.len())));
        }
        // SAFETY: ptr is a fresh allocation of at least found.len() bytes, disjoint from found.
        unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), ptr, found.len()) };
        out.write(ptr);
        len.write(found.len());
        Ok(MINIVAULT_OK)
    })
}

/// Frees a value from `minivault_get_alloc` (the C library's `free` does the same). NULL is
/// ignored.
///
/// # Safety
/// `value` is NULL or a pointer from `minivault_get_alloc` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn minivault_free(value: *mut c_void) {
    // SAFETY: NULL or a malloc'd pointer not yet freed (this function's contract); free cannot
    // unwind.
    unsafe { libc::free(value) }
}

/// How long `key` has left to live: `*ttl_ms` = the milliseconds left, or -1 when it never
/// expires. Returns `MINIVAULT_OK`, or `MINIVAULT_NOT_FOUND` when the key is absent.
///
/// # Safety
/// `db` is NULL or an open handle; `key` points to `key_len` bytes (NULL only with length 0);
/// `ttl_ms` is NULL (an error) or points to a writable `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn minivault_ttl(
    db: *mut minivault_db,
    key: *const u8,
    key_len: usize,
    ttl_ms: *mut i64,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, key, mut out) =
            unsafe { (handle(db)?, bytes(key, key_len, "key")?, Out::new(ttl_ms, "ttl_ms")?) };
        out.write(-1);
        match with_db(&h.shared, |db| Ok(db.ttl(key)?))? {
            Ttl::NoKey => return Ok(MINIVAULT_NOT_FOUND),
            Ttl::NoExpiry => {}
            Ttl::ExpiresIn(left) => out.write(i64::try_from(left.as_millis()).unwrap_or(i64::MAX)),
        }
        Ok(MINIVAULT_OK)
    })
}

/// Makes every acknowledged write durable.
///
/// # Safety
/// `db` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn minivault_sync(db: *mut minivault_db) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        let h = unsafe { handle(db) }?;
        with_db(&h.shared, |db| Ok(db.sync()?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Writes the MemTables to SSTables and retires the WAL.
///
/// # Safety
/// `db` is NULL or an open handle.
#[no_mangle]
pub unsafe extern "C" fn minivault_flush(db: *mut minivault_db) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract.
        let h = unsafe { handle(db) }?;
        with_db(&h.shared, |db| Ok(db.flush()?))?;
        Ok(MINIVAULT_OK)
    })
}

/// Counters and sizes of an open database, from `minivault_get_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct minivault_stats {
    /// Keys in the active MemTable.
    pub memtable_keys: u64,
    /// Keys the active MemTable holds before it must rotate.
    pub memtable_key_capacity: u64,
    /// Arena bytes used in the active MemTable.
    pub memtable_bytes: u64,
    /// Arena bytes of one MemTable.
    pub memtable_capacity_bytes: u64,
    /// Keys in the immutable MemTable waiting to be flushed.
    pub immutable_keys: u64,
    /// SSTables on disk.
    pub tables: u64,
    /// Bytes of all SSTables.
    pub table_bytes: u64,
    /// Bytes of records in the live WAL files.
    pub wal_bytes: u64,
    /// MemTables written out as SSTables since open.
    pub flushes: u64,
    /// Compactions since open.
    pub compactions: u64,
    /// Torn WAL tails cut off during open.
    pub torn_tails_truncated: u64,
    /// Gets that reached the engine (the row cache did not answer them) since open.
    pub gets: u64,
    /// SSTable searches by those gets.
    pub table_probes: u64,
    /// SSTable lookups a Bloom filter answered "absent" without a search.
    pub filter_skips: u64,
    /// Gets answered by the row cache.
    pub row_cache_hits: u64,
    /// Gets the row cache could not answer.
    pub row_cache_misses: u64,
    /// Rows the row cache dropped to make room.
    pub row_cache_evictions: u64,
    /// Rows in the row cache.
    pub row_cache_rows: u64,
    /// Bytes the row cache's rows are charged.
    pub row_cache_bytes: u64,
    /// The row cache's capacity in bytes (0: off).
    pub row_cache_capacity_bytes: u64,
    /// Bytes of every file of the database (what `max_bytes` bounds).
    pub file_bytes: u64,
    /// The size cap (0: none).
    pub max_bytes: u64,
    /// SSTables dropped whole by `MINIVAULT_WHEN_FULL_DROP_OLDEST` since open.
    pub evicted_tables: u64,
    /// Entries in those tables.
    pub evicted_entries: u64,
    /// Bytes of those tables.
    pub evicted_bytes: u64,
    /// Writes refused with `MINIVAULT_ERR_FULL` since open.
    pub full_refusals: u64,
    /// Compactions skipped because their output would not fit under the cap.
    pub compactions_skipped_for_space: u64,
}

/// Fills `*stats` with the database's counters and sizes.
///
/// # Safety
/// `db` is NULL or an open handle; `stats` is NULL (an error) or points to a writable
/// `minivault_stats`.
#[no_mangle]
pub unsafe extern "C" fn minivault_get_stats(
    db: *mut minivault_db,
    stats: *mut minivault_stats,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, mut out) = unsafe { (handle(db)?, Out::new(stats, "stats")?) };
        let (s, r) = with_db(&h.shared, |db| Ok((db.stats(), db.row_cache_stats())))?;
        out.write(minivault_stats {
            memtable_keys: s.memtable_keys as u64,
            memtable_key_capacity: s.memtable_key_capacity as u64,
            memtable_bytes: s.memtable_bytes as u64,
            memtable_capacity_bytes: s.memtable_capacity_bytes as u64,
            immutable_keys: s.immutable_keys as u64,
            tables: s.tables as u64,
            table_bytes: s.table_bytes,
            wal_bytes: s.wal_bytes,
            flushes: s.flushes,
            compactions: s.compactions,
            torn_tails_truncated: s.torn_tails_truncated,
            gets: s.gets,
            table_probes: s.table_probes,
            filter_skips: s.filter_skips,
            row_cache_hits: r.hits,
            row_cache_misses: r.misses,
            row_cache_evictions: r.evictions,
            row_cache_rows: r.rows as u64,
            row_cache_bytes: r.bytes as u64,
            row_cache_capacity_bytes: r.capacity_bytes as u64,
            file_bytes: s.file_bytes,
            max_bytes: s.max_bytes.unwrap_or(0),
            evicted_tables: s.evicted_tables,
            evicted_entries: s.evicted_entries,
            evicted_bytes: s.evicted_bytes,
            full_refusals: s.full_refusals,
            compactions_skipped_for_space: s.compactions_skipped_for_space,
        });
        Ok(MINIVAULT_OK)
    })
}

/// Every counter [`minivault_get_stat`] knows, by name, from the engine's statistics and the
/// row cache's: those of `minivault_stats` and the ones added after it (whose fields a caller
/// built against an older header would not have room for).
fn stat_by_name(name: &[u8], s: &minivault_posix::Stats, r: &minivault_posix::RowCacheStats) -> Option<u64> {
    Some(match name {
        b"memtable_keys" => s.memtable_keys as u64,
        b"memtable_key_capacity" => s.memtable_key_capacity as u64,
        b"memtable_bytes" => s.memtable_bytes as u64,
        b"memtable_capacity_bytes" => s.memtable_capacity_bytes as u64,
        b"immutable_keys" => s.immutable_keys as u64,
        b"tables" => s.tables as u64,
        b"table_bytes" => s.table_bytes,
        b"wal_bytes" => s.wal_bytes,
        b"flushes" => s.flushes,
        b"compactions" => s.compactions,
        b"torn_tails_truncated" => s.torn_tails_truncated,
        b"wals_dropped" => s.wals_dropped,
        b"gets" => s.gets,
        b"table_probes" => s.table_probes,
        b"filter_skips" => s.filter_skips,
        b"row_cache_hits" => r.hits,
        b"row_cache_misses" => r.misses,
        b"row_cache_evictions" => r.evictions,
        b"row_cache_declined" => r.declined,
        b"row_cache_rows" => r.rows as u64,
        b"row_cache_bytes" => r.bytes as u64,
        b"row_cache_capacity_bytes" => r.capacity_bytes as u64,
        b"file_bytes" => s.file_bytes,
        b"max_bytes" => s.max_bytes.unwrap_or(0),
        b"evicted_tables" => s.evicted_tables,
        b"evicted_entries" => s.evicted_entries,
        b"evicted_bytes" => s.evicted_bytes,
        b"expired_tables" => s.expired_tables,
        b"expired_bytes" => s.expired_bytes,
        b"full_refusals" => s.full_refusals,
        b"compactions_skipped_for_space" => s.compactions_skipped_for_space,
        b"compactions_running" => s.compactions_running as u64,
        b"spare_wals_taken" => s.spare_wals_taken,
        b"spare_wal_ready" => u64::from(s.spare_wal_ready),
        _ => return None,
    })
}

/// Stores in `*value` the counter or size called `name` (a NUL-terminated string): any field
/// name of `minivault_stats`, and counters added since that struct was fixed:
/// `row_cache_declined` (reads past a full row cache, not cached), `expired_tables` and
/// `expired_bytes` (SSTables removed whole once every entry in them had expired),
/// `wals_dropped`, `compactions_running`, `spare_wals_taken` (rotations that started a spare
/// WAL made ahead, syncing nothing) and `spare_wal_ready` (1 while one waits for the next
/// rotation). Unlike the struct, it can grow without changing the
/// ABI. An unknown name is `MINIVAULT_ERR_INVALID_ARGUMENT` ("unknown statistic").
///
/// # Safety
/// `db` is NULL or an open handle; `name` is NULL (an error) or a NUL-terminated string;
/// `value` is NULL (an error) or points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn minivault_get_stat(
    db: *mut minivault_db,
    name: *const c_char,
    value: *mut u64,
) -> minivault_status {
    guard(|| {
        // SAFETY: this function's contract, for each argument.
        let (h, mut out) = unsafe { (handle(db)?, Out::new(value, "value")?) };
        if name.is_null() {
            return Err(Failure::invalid("name is NULL"));
        }
        // SAFETY: name is a non-NULL NUL-terminated string (this function's contract).
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let (s, r) = with_db(&h.shared, |db| Ok((db.stats(), db.row_cache_stats())))?;
        let found = stat_by_name(name, &s, &r).ok_or_else(|| {
            Failure::invalid(format!("unknown statistic {:?}", String::from_utf8_lossy(name)))
        })?;
        out.write(found);
        Ok(MINIVAULT_OK)
    })
}

/// The library's version, e.g. `"0.1.0"`: a static string.
#[no_mangle]
pub extern "C" fn minivault_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
