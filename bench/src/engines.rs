//! One trait, [`Engine`], and one implementation per engine: MiniVaultDB, the peers behind cargo
//! features (fjall, redb, sled, RocksDB) and the raw-file baselines.
//!
//! Every workload asks for one of two durability modes, and each engine maps them onto its own
//! knobs (the table is repeated in `docs/BENCHMARKS.md`):
//!
//! | mode | minivault | fjall | redb | sled | rocksdb | rawfile |
//! |---|---|---|---|---|---|---|
//! | [`Mode::Relaxed`]: durable at [`Engine::sync`] | `Durability::Manual`, `sync()` | `insert` (journal handed to the OS per write), `persist(SyncData)` | one transaction per write with `Durability::None`, an empty `Immediate` commit | `insert`, `flush()` | `put` (WAL on, no sync), `flush_wal(true)` | buffered `write`, `fdatasync` |
//! | [`Mode::EveryWrite`]: durable when `put` returns | `Durability::Always` | `insert` + `persist(SyncData)` | `Durability::Immediate` per write | `insert` + `flush()` | `WriteOptions::set_sync(true)` | `write` + `fdatasync` |
//! | [`Engine::write_batch`] (`durable`) | `WriteBatch` (one WAL record) + `sync()` | `WriteBatch` with `SyncData` | one `Immediate` transaction | `Batch` + `flush()` | `WriteBatch`, sync | writes + `fdatasync` |

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What an engine call can fail with: a message (the benchmark only reports it).
pub type Result<T> = std::result::Result<T, String>;

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// When writes must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writes reach the OS before `put` returns where the engine does that, and are durable only
    /// after [`Engine::sync`].
    Relaxed,
    /// Each write is durable (on the device) before `put` / `delete` returns.
    EveryWrite,
}

/// How to open an engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Durability mode.
    pub mode: Mode,
    /// Write buffer (MemTable) size for engines that have one: MiniVaultDB's two MemTables,
    /// fjall's memtable, RocksDB's write buffer.
    pub memtable_bytes: usize,
}

/// MiniVaultDB's own counters, read before and after a workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    /// SSTables on disk.
    pub tables: u64,
    /// Calls to `get` (MiniVaultDB: those the row cache answered and those it passed on).
    pub gets: u64,
    /// Calls to `get` the row cache answered.
    pub row_cache_hits: u64,
    /// SSTable lookups made by those gets.
    pub table_probes: u64,
    /// Compactions (merges of SSTables).
    pub compactions: u64,
    /// MiniVaultDB's background counters: writes held at the thresholds or for a flush.
    pub background: Option<minivault::BackgroundStats>,
    /// MiniVaultDB's rotations into a spare WAL made ahead (no sync on the writer's path), and
    /// its flushes (each follows a rotation).
    pub spare_wals_taken: u64,
    pub flushes: u64,
}

/// What a scan hands each entry to: its key and value; `false` stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// What an engine without ordered reads answers a scan with (the raw baselines: a hash index).
pub const NO_ORDERED_READS: &str = "no ordered reads (a hash index)";

/// Drives an engine's own iterator of `(key, value)` results through `visit`, at most `limit`
/// entries; returns how many entries `visit` saw.
fn visit_items<K, V, E>(
    items: impl Iterator<Item = std::result::Result<(K, V), E>>,
    limit: u64,
    visit: &mut Visit<'_>,
) -> Result<u64>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut seen = 0u64;
    for item in items {
        if seen >= limit {
            break;
        }
        let (k, v) = item.map_err(err("scan"))?;
        seen += 1;
        if !visit(k.as_ref(), v.as_ref()) {
            break;
        }
    }
    Ok(seen)
}

/// The smallest key above every key that starts with `prefix` (`None`: no such key, the
/// prefix is empty or all `0xFF`): the upper bound of a prefix scan for engines that have no
/// prefix iterator of their own.
#[cfg(any(feature = "redb", feature = "rocksdb"))]
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key-value engine as the workloads see it.
pub trait Engine {
    /// Stores `value` under `key` (durable on return in [`Mode::EveryWrite`]).
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// The length of the value of `key`, or `None` when absent.
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>>;
    /// Deletes `key` (durable on return in [`Mode::EveryWrite`]).
    fn delete(&mut self, key: &[u8]) -> Result<()>;
    /// Applies `items` (atomically where the engine can); durable on return when `durable`.
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> Result<()>;
    /// Engine counters, where the engine has them.
    fn stats(&self) -> Option<EngineStats> {
        None
    }
    /// Ordered reads: visits up to `limit` entries in key order through the engine's own
    /// iterator, from `start` up (ascending) or, when `reverse`, from `start` down (descending:
    /// `start` then bounds the keys from above); returns how many entries `visit` saw.
    /// Engines without ordered reads answer [`NO_ORDERED_READS`] (the default).
    fn scan(&mut self, start: Bound<&[u8]>, limit: u64, reverse: bool, visit: &mut Visit<'_>) -> Result<u64> {
        let _ = (start, limit, reverse, visit);
        Err(NO_ORDERED_READS.into())
    }
    /// Ordered reads: visits every entry whose key starts with `prefix`, in key order, through
    /// the engine's own prefix iterator; returns how many entries `visit` saw.
    fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
        let _ = (prefix, visit);
        Err(NO_ORDERED_READS.into())
    }
    /// The most memory the engine's configuration lets it hold while a scan of entries of
    /// `entry_bytes` (key + value) runs, where the engine states such a bound (MiniVaultDB).
    fn memory_budget(&self, entry_bytes: u64) -> Option<u64> {
        let _ = entry_bytes;
        None
    }
    /// The most memory the engine's configuration lets it hold while one thread puts and gets
    /// entries of `entry_bytes`, where the engine states such a bound (MiniVaultDB).
    fn handle_bound(&self, entry_bytes: u64) -> Option<u64> {
        let _ = entry_bytes;
        None
    }
}

/// The engines this binary knows, in report order.
pub const ALL: &[&str] = &[
    "minivault",
    "minivault-walpre64k",
    "minivault-walpre0",
    "minivault-inline",
    "minivault-bigcache",
    "minivault-lowpriority",
    "fjall",
    "redb",
    "sled",
    "rocksdb",
    "rawfile",
    "rawprealloc",
];

/// MiniVaultDB with another WAL preallocation step (`Options::wal_preallocation_bytes`) than
/// the default (a quarter MemTable, at most 1 MiB): 64 KiB, and off. Run only when named in
/// `--engines`, to measure what the step costs durable writes (`docs/BENCHMARKS.md`).
pub const VARIANTS: &[(&str, u64)] = &[("minivault-walpre64k", 64 << 10), ("minivault-walpre0", 0)];

/// MiniVaultDB with every compaction inside the write that calls for it
/// (`Options::background_threads` = 0), as before background compaction: opt-in, to measure
/// what the background threads change (`docs/BENCHMARKS.md`).
pub const INLINE: &str = "minivault-inline";

/// MiniVaultDB with read caches about as large as the memory redb takes for the same reads
/// (issue 12's aim: redb's read rate "when MiniVaultDB's caches are given the memory redb uses
/// in the same run"; redb's peak RSS in readrandom at 10^6 was 237 MiB on `615b492`): a page
/// cache of 192 MiB (every SSTable page of 10^6 keys of 116 bytes, with room) and no row cache,
/// so `Options::memory_bytes` is 244 MiB with the default index budget. Opt-in. (Until
/// 2026-12-04: 144 MiB of pages and a 48 MiB row cache; uniformly random gets over far more rows
/// than that row cache holds hit it 19% of the time, and its lookups cost more than its hits
/// saved: the same memory as pages alone read 1.13× faster, docs/BENCHMARKS.md.)
pub const BIG_CACHES: &str = "minivault-bigcache";

/// MiniVaultDB with its compaction threads 10 nice levels below the process
/// (`Options::compaction_nice` = 10; the default is 0): opt-in, to measure what the lower
/// priority changes for the slowest puts and the rates (`docs/BENCHMARKS.md`).
pub const LOW_PRIORITY: &str = "minivault-lowpriority";

/// [`LOW_PRIORITY`]'s `compaction_nice`.
pub const LOW_PRIORITY_NICE: u8 = 10;

/// The page cache and row cache of [`BIG_CACHES`].
pub const BIG_CACHE_BYTES: (usize, usize) = (192 << 20, 0);

/// True for an engine that runs only when `--engines` names it.
pub fn opt_in(name: &str) -> bool {
    name == INLINE
        || name == BIG_CACHES
        || name == LOW_PRIORITY
        || VARIANTS.iter().any(|(variant, _)| *variant == name)
}

/// True when `name` was compiled in.
pub fn available(name: &str) -> bool {
    match name {
        "minivault" | "rawfile" | "rawprealloc" => true,
        name if opt_in(name) => true,
        "fjall" => cfg!(feature = "fjall"),
        "redb" => cfg!(feature = "redb"),
        "sled" => cfg!(feature = "sled"),
        "rocksdb" => cfg!(feature = "rocksdb"),
        _ => false,
    }
}

/// Opens (creating if needed) engine `name` in `dir`.
pub fn open(name: &str, dir: &Path, opts: EngineOptions) -> Result<Box<dyn Engine>> {
    fs::create_dir_all(dir).map_err(err("create dir"))?;
    match name {
        name if minivault_options(name, opts).is_some() => Ok(Box::new(MiniVault::open(dir, name, opts)?)),
        "rawfile" => Ok(Box::new(RawFile::open(dir, opts, false)?)),
        "rawprealloc" => Ok(Box::new(RawFile::open(dir, opts, true)?)),
        #[cfg(feature = "fjall")]
        "fjall" => Ok(Box::new(peers::Fjall::open(dir, opts)?)),
        #[cfg(feature = "redb")]
        "redb" => Ok(Box::new(peers::Redb::open(dir, opts)?)),
        #[cfg(feature = "sled")]
        "sled" => Ok(Box::new(peers::Sled::open(dir, opts)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(peers::Rocks::open(dir, opts)?)),
        _ => Err(format!("engine {name} is not compiled in (cargo feature)")),
    }
}

// ---------------------------------------------------------------------------------------------
// MiniVaultDB

/// MiniVaultDB through `minivault::Db`.
pub struct MiniVault {
    db: minivault::Db,
    batch: minivault::WriteBatch,
}

/// The memory the README states a MiniVaultDB handle holds at most, for `readers` threads
/// reading entries of `entry_bytes` (the largest value read is at most that): the MemTables, the
/// merge scratch of each compaction thread, the flush thread's copy, the caches and the index
/// budget (`Options::memory_bytes`); the scan order buffer (4 B per key a MemTable can hold);
/// the fixed overhead (a read buffer as large as the largest value, the SSTable list, about 150
/// KiB at most; the WALs' mapped windows, 2 × 128 KiB; per compaction thread a 512 KiB page cache and at most 512 KiB of read-ahead;
/// the flush thread's 64 KiB page cache); and per reading thread a 16 KiB run buffer, a 16 KiB
/// block and a value buffer.
pub fn minivault_bound(db: &minivault::Db, entry_bytes: u64, readers: u64) -> u64 {
    let options = db.options();
    let threads = options.background_threads as u64;
    let fixed =
        entry_bytes + 150 * 1024 + 256 * 1024 + threads * (1 << 20) + if threads > 0 { 64 * 1024 } else { 0 };
    options.memory_bytes()
        + 4 * db.stats().memtable_key_capacity as u64
        + fixed
        + readers * (32 * 1024 + entry_bytes)
}

/// The `minivault::Options` of MiniVaultDB engine `name` (`minivault` or one of its opt-in
/// variants) for `opts`; `None` for another engine. The one place each variant's settings are
/// written down: the single-handle workloads ([`open`]) and the shared-handle ones
/// (`crate::concurrent`) open them alike.
pub fn minivault_options(name: &str, opts: EngineOptions) -> Option<minivault::Options> {
    let durability = match opts.mode {
        Mode::Relaxed => minivault::Durability::Manual,
        Mode::EveryWrite => minivault::Durability::Always,
    };
    // Read caches, spelled out so that a change of default shows up here. Every engine keeps
    // its default caches (docs/BENCHMARKS.md, "Engines and durability"), and MiniVaultDB's
    // together stay below each peer's: 8 MiB of SSTable pages + 4 MiB of rows = 12 MiB,
    // against fjall's 32 MiB block cache (fjall 3.1 `Config` default), RocksDB's 32 MiB
    // block cache (its default when none is configured), and redb's and sled's in-process
    // caches of up to 1 GiB (their defaults).
    let mut options = minivault::Options {
        memtable_bytes: opts.memtable_bytes,
        durability,
        cache_bytes: minivault::storage::DEFAULT_CACHE_BYTES,
        row_cache_bytes: minivault::row_cache::DEFAULT_ROW_CACHE_BYTES,
        ..minivault::Options::DEFAULT
    };
    match name {
        "minivault" => {}
        INLINE => options.background_threads = 0,
        BIG_CACHES => (options.cache_bytes, options.row_cache_bytes) = BIG_CACHE_BYTES,
        LOW_PRIORITY => options.compaction_nice = LOW_PRIORITY_NICE,
        variant => {
            let (_, step) = VARIANTS.iter().find(|(v, _)| *v == variant)?;
            options.wal_preallocation_bytes = Some(*step);
        }
    }
    Some(options)
}

impl MiniVault {
    /// Opens MiniVaultDB engine `name` ([`minivault_options`]).
    fn open(dir: &Path, name: &str, opts: EngineOptions) -> Result<Self> {
        let options = minivault_options(name, opts).ok_or_else(|| format!("{name} is not MiniVaultDB"))?;
        let db = minivault::Db::open_with(dir, options).map_err(err("open"))?;
        Ok(MiniVault { db, batch: minivault::WriteBatch::new(vec![0u8; 512 << 10]) })
    }
}

impl Engine for MiniVault {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put(key, value).map_err(err("put"))
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get(key).map_err(err("get"))?.map(|v| v.len()))
    }
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.db.delete(key).map_err(err("delete"))
    }
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
        // One WAL record for the whole batch (`minivault::WriteBatch`), then one sync.
        self.batch.clear();
        for (k, v) in items {
            self.batch.put(k, v).map_err(err("batch"))?;
        }
        self.db.write_batch(&self.batch).map_err(err("write_batch"))?;
        if durable {
            self.db.sync().map_err(err("sync"))?;
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        self.db.sync().map_err(err("sync"))
    }
    fn scan(&mut self, start: Bound<&[u8]>, limit: u64, reverse: bool, visit: &mut Visit<'_>) -> Result<u64> {
        // `Db::range`: a double-ended iterator of owned entries, fetched in growing batches.
        if reverse {
            visit_items(self.db.range::<&[u8], _>((Bound::Unbounded, start)).rev(), limit, visit)
        } else {
            visit_items(self.db.range::<&[u8], _>((start, Bound::Unbounded)), limit, visit)
        }
    }
    fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
        visit_items(self.db.prefix(prefix), u64::MAX, visit)
    }
    fn memory_budget(&self, entry_bytes: u64) -> Option<u64> {
        // While a scan runs: its read-ahead and one batch of owned entries (two `Vec`s each:
        // 24 B headers and about 16 B of allocator overhead apiece).
        let scan_batch = minivault::scan::MAX_BATCH as u64 * (entry_bytes + 2 * (24 + 16));
        Some(minivault_bound(&self.db, entry_bytes, 1) + minivault::scan::MAX_READ_AHEAD as u64 + scan_batch)
    }
    fn handle_bound(&self, entry_bytes: u64) -> Option<u64> {
        Some(minivault_bound(&self.db, entry_bytes, 1))
    }
    fn stats(&self) -> Option<EngineStats> {
        let s = self.db.stats();
        let rows = self.db.row_cache_stats();
        Some(EngineStats {
            tables: s.tables as u64,
            // The engine counts only the gets the row cache passed on.
            gets: s.gets + rows.hits,
            row_cache_hits: rows.hits,
            table_probes: s.table_probes,
            compactions: s.compactions,
            background: Some(self.db.background_stats()),
            spare_wals_taken: s.spare_wals_taken,
            flushes: s.flushes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The raw device: a log file and an in-memory hash index (a minimal Bitcask), the floor under
// any engine that logs every write.

const RAW_BUFFER: usize = 64 * 1024;
const PREALLOC_CHUNK: u64 = 16 << 20;

/// A log of `[key_len u16][value_len u32][key][value]` records (value_len `u32::MAX` = delete)
/// with a `HashMap` from key to value position. `prealloc` first extends the file with written
/// zeros, chunk by chunk, so `fdatasync` has no file size to persist (the write path of a
/// preallocated journal).
pub struct RawFile {
    file: File,
    mode: Mode,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    index: HashMap<Vec<u8>, (u64, u32)>,
    prealloc: bool,
    /// End of the zero-filled, synced region (when `prealloc`).
    allocated: u64,
}

impl RawFile {
    fn open(dir: &Path, opts: EngineOptions, prealloc: bool) -> Result<Self> {
        let path = dir.join("raw.log");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err("open"))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(err("read"))?;
        // Recovery: replay records up to the first incomplete one (or the zero fill).
        let mut index = HashMap::new();
        let mut pos = 0usize;
        while let Some(h) = data.get(pos..pos + 6) {
            let kl = u16::from_le_bytes([h[0], h[1]]) as usize;
            let vl = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
            if kl == 0 {
                break;
            }
            let vlen = if vl == u32::MAX { 0 } else { vl as usize };
            let end = pos + 6 + kl + vlen;
            if end > data.len() {
                break;
            }
            let key = data[pos + 6..pos + 6 + kl].to_vec();
            if vl == u32::MAX {
                index.remove(&key);
            } else {
                index.insert(key, ((pos + 6 + kl) as u64, vl));
            }
            pos = end;
        }
        let allocated = data.len() as u64;
        let mut raw = RawFile {
            file,
            mode: opts.mode,
            buf: Vec::with_capacity(RAW_BUFFER),
            buf_at: pos as u64,
            index,
            prealloc,
            allocated,
        };
        if prealloc {
            // The first chunk is written at open, outside the timed part, as a journal would
            // be prepared before its first commit.
            raw.preallocate(pos as u64 + 1)?;
        }
        Ok(raw)
    }

    /// Extends the zero-filled, synced region to cover `end` (in whole chunks).
    fn preallocate(&mut self, end: u64) -> Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let zeros = vec![0u8; PREALLOC_CHUNK as usize];
        let upto = end.div_ceil(PREALLOC_CHUNK) * PREALLOC_CHUNK;
        let mut at = self.allocated;
        while at < upto {
            let n = ((upto - at) as usize).min(zeros.len());
            self.file.write_all_at(&zeros[..n], at).map_err(err("prealloc"))?;
            at += n as u64;
        }
        self.file.sync_all().map_err(err("prealloc sync"))?;
        // Drop the zero pages from the page cache: left there as large folios, each small write
        // would re-dirty (and be accounted as) a whole folio. A journal file preallocated in an
        // earlier run would not be cached either.
        let len = libc::off_t::try_from(upto - self.allocated).unwrap_or(0);
        let start = libc::off_t::try_from(self.allocated).unwrap_or(0);
        // SAFETY: `posix_fadvise` only reads its arguments; the descriptor is open for `self`'s life.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                start,
                len,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        self.allocated = upto;
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.buf_at + self.buf.len() as u64;
        if self.prealloc {
            self.preallocate(end)?;
        }
        self.file.write_all_at(&self.buf, self.buf_at).map_err(err("write"))?;
        self.buf_at = end;
        self.buf.clear();
        Ok(())
    }

    fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let vl = value.map_or(u32::MAX, |v| v.len() as u32);
        let rec_len = 6 + key.len() + value.map_or(0, <[u8]>::len);
        if self.buf.len() + rec_len > RAW_BUFFER {
            self.flush_buf()?;
        }
        let value_at = self.buf_at + self.buf.len() as u64 + 6 + key.len() as u64;
        self.buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&vl.to_le_bytes());
        self.buf.extend_from_slice(key);
        match value {
            Some(v) => {
                self.buf.extend_from_slice(v);
                self.index.insert(key.to_vec(), (value_at, vl));
            }
            None => {
                self.index.remove(key);
            }
        }
        Ok(())
    }

    fn sync_data(&mut self) -> Result<()> {
        self.flush_buf()?;
        self.file.sync_data().map_err(err("fdatasync"))
    }
}

impl Engine for RawFile {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.append(key, Some(value))?;
        if self.mode == Mode::EveryWrite {
            self.sync_data()?;
        }
        Ok(())
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let Some(&(at, len)) = self.index.get(key) else { return Ok(None) };
        if at + len as u64 > self.buf_at {
            self.flush_buf()?;
        }
        let mut v = vec![0u8; len as usize];
        self.file.read_exact_at(&mut v, at).map_err(err("pread"))?;
        Ok(Some(v.len()))
    }
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.append(key, None)?;
        if self.mode == Mode::EveryWrite {
            self.sync_data()?;
        }
        Ok(())
    }
    fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
        for (k, v) in items {
            self.append(k, Some(v))?;
        }
        if durable {
            self.sync_data()?;
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        self.sync_data()
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        let _ = self.flush_buf();
        let _ = self.file.flush();
    }
}

// ---------------------------------------------------------------------------------------------
// The peers.

#[cfg(any(feature = "fjall", feature = "redb", feature = "sled", feature = "rocksdb"))]
mod peers {
    #[allow(unused_imports)]
    use super::{err, visit_items, Engine, EngineOptions, Mode, Result, Visit};
    #[allow(unused_imports)]
    use std::ops::Bound;
    #[allow(unused_imports)]
    use std::path::Path;

    /// fjall: one keyspace; its memtable sized like MiniVaultDB's.
    #[cfg(feature = "fjall")]
    pub struct Fjall {
        db: fjall::Database,
        ks: fjall::Keyspace,
        mode: Mode,
    }

    #[cfg(feature = "fjall")]
    impl Fjall {
        pub fn open(dir: &Path, opts: EngineOptions) -> Result<Self> {
            let db = fjall::Database::builder(dir).open().map_err(err("open"))?;
            let bytes = opts.memtable_bytes as u64;
            let ks = db
                .keyspace("bench", || fjall::KeyspaceCreateOptions::default().max_memtable_size(bytes))
                .map_err(err("keyspace"))?;
            Ok(Fjall { db, ks, mode: opts.mode })
        }
        fn after_write(&mut self) -> Result<()> {
            if self.mode == Mode::EveryWrite {
                self.db.persist(fjall::PersistMode::SyncData).map_err(err("persist"))?;
            }
            Ok(())
        }
    }

    #[cfg(feature = "fjall")]
    impl Engine for Fjall {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.ks.insert(key, value).map_err(err("insert"))?;
            self.after_write()
        }
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.ks.get(key).map_err(err("get"))?.map(|v| v.len()))
        }
        fn delete(&mut self, key: &[u8]) -> Result<()> {
            self.ks.remove(key).map_err(err("remove"))?;
            self.after_write()
        }
        fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            let mut b = self.db.batch();
            if durable {
                b = b.durability(Some(fjall::PersistMode::SyncData));
            }
            for (k, v) in items {
                b.insert(&self.ks, k.as_slice(), v.as_slice());
            }
            b.commit().map_err(err("batch"))
        }
        fn sync(&mut self) -> Result<()> {
            self.db.persist(fjall::PersistMode::SyncData).map_err(err("persist"))
        }
        fn scan(
            &mut self,
            start: Bound<&[u8]>,
            limit: u64,
            reverse: bool,
            visit: &mut Visit<'_>,
        ) -> Result<u64> {
            // `Keyspace::range`: guards, each read out with `into_inner`.
            if reverse {
                let items = self.ks.range::<&[u8], _>((Bound::Unbounded, start)).rev();
                visit_items(items.map(fjall::Guard::into_inner), limit, visit)
            } else {
                let items = self.ks.range::<&[u8], _>((start, Bound::Unbounded));
                visit_items(items.map(fjall::Guard::into_inner), limit, visit)
            }
        }
        fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
            visit_items(self.ks.prefix(prefix).map(fjall::Guard::into_inner), u64::MAX, visit)
        }
    }

    #[cfg(feature = "redb")]
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

    /// redb: one file, one table; a write transaction per write, a cached read transaction for
    /// reads (dropped at the next write so reads see it).
    #[cfg(feature = "redb")]
    pub struct Redb {
        db: redb::Database,
        mode: Mode,
        read: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
    }

    #[cfg(feature = "redb")]
    impl Redb {
        pub fn open(dir: &Path, opts: EngineOptions) -> Result<Self> {
            let db = redb::Database::create(dir.join("bench.redb")).map_err(err("open"))?;
            let tx = db.begin_write().map_err(err("begin_write"))?;
            tx.open_table(TABLE).map_err(err("open_table"))?;
            tx.commit().map_err(err("commit"))?;
            Ok(Redb { db, mode: opts.mode, read: None })
        }
        /// The table of the cached read transaction (begun after the last write).
        fn table(&mut self) -> Result<&redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
            if self.read.is_none() {
                use redb::ReadableDatabase;
                let tx = self.db.begin_read().map_err(err("begin_read"))?;
                self.read = Some(tx.open_table(TABLE).map_err(err("open_table"))?);
            }
            self.read.as_ref().ok_or_else(|| "no read transaction".to_string())
        }
        fn write<F>(&mut self, durable: bool, f: F) -> Result<()>
        where
            F: FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<()>,
        {
            self.read = None;
            let mut tx = self.db.begin_write().map_err(err("begin_write"))?;
            let d = if durable { redb::Durability::Immediate } else { redb::Durability::None };
            tx.set_durability(d).map_err(err("durability"))?;
            {
                let mut t = tx.open_table(TABLE).map_err(err("open_table"))?;
                f(&mut t)?;
            }
            tx.commit().map_err(err("commit"))
        }
    }

    #[cfg(feature = "redb")]
    impl Engine for Redb {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            let durable = self.mode == Mode::EveryWrite;
            self.write(durable, |t| t.insert(key, value).map(drop).map_err(err("insert")))
        }
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            let t = self.table()?;
            Ok(t.get(key).map_err(err("get"))?.map(|g| g.value().len()))
        }
        fn delete(&mut self, key: &[u8]) -> Result<()> {
            let durable = self.mode == Mode::EveryWrite;
            self.write(durable, |t| t.remove(key).map(drop).map_err(err("remove")))
        }
        fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            self.write(durable, |t| {
                for (k, v) in items {
                    t.insert(k.as_slice(), v.as_slice()).map_err(err("insert"))?;
                }
                Ok(())
            })
        }
        fn sync(&mut self) -> Result<()> {
            self.write(true, |_| Ok(()))
        }
        fn scan(
            &mut self,
            start: Bound<&[u8]>,
            limit: u64,
            reverse: bool,
            visit: &mut Visit<'_>,
        ) -> Result<u64> {
            // `ReadOnlyTable::range` on the cached read transaction: access guards, read in place.
            let t = self.table()?;
            let bounds = if reverse { (Bound::Unbounded, start) } else { (start, Bound::Unbounded) };
            let range = t.range::<&[u8]>(bounds).map_err(err("range"))?;
            if reverse {
                visit_guards(range.rev(), limit, visit)
            } else {
                visit_guards(range, limit, visit)
            }
        }
        fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
            // redb has no prefix iterator: the range [prefix, the prefix's successor).
            let t = self.table()?;
            let end = super::prefix_end(prefix);
            let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let range = t.range::<&[u8]>((Bound::Included(prefix), upper)).map_err(err("range"))?;
            visit_guards(range, u64::MAX, visit)
        }
    }

    #[cfg(feature = "redb")]
    type RedbGuard = redb::AccessGuard<'static, &'static [u8]>;

    /// [`super::visit_items`] for redb's guards, whose bytes are borrowed from the guard.
    #[cfg(feature = "redb")]
    fn visit_guards(
        items: impl Iterator<Item = std::result::Result<(RedbGuard, RedbGuard), redb::StorageError>>,
        limit: u64,
        visit: &mut Visit<'_>,
    ) -> Result<u64> {
        let mut seen = 0u64;
        for item in items {
            if seen >= limit {
                break;
            }
            let (k, v) = item.map_err(err("scan"))?;
            seen += 1;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(seen)
    }

    /// sled 0.34 with its defaults. Its `flush` is not a reliable durability point (sled issue
    /// 1351), so its durable-write figures are not comparable.
    #[cfg(feature = "sled")]
    pub struct Sled {
        db: sled::Db,
        mode: Mode,
    }

    #[cfg(feature = "sled")]
    impl Sled {
        pub fn open(dir: &Path, opts: EngineOptions) -> Result<Self> {
            let db = sled::Config::new().path(dir).open().map_err(err("open"))?;
            Ok(Sled { db, mode: opts.mode })
        }
        fn after_write(&mut self) -> Result<()> {
            if self.mode == Mode::EveryWrite {
                self.db.flush().map_err(err("flush"))?;
            }
            Ok(())
        }
    }

    #[cfg(feature = "sled")]
    impl Engine for Sled {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.db.insert(key, value).map_err(err("insert"))?;
            self.after_write()
        }
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get(key).map_err(err("get"))?.map(|v| v.len()))
        }
        fn delete(&mut self, key: &[u8]) -> Result<()> {
            self.db.remove(key).map_err(err("remove"))?;
            self.after_write()
        }
        fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            let mut b = sled::Batch::default();
            for (k, v) in items {
                b.insert(k.as_slice(), v.as_slice());
            }
            self.db.apply_batch(b).map_err(err("batch"))?;
            if durable {
                self.db.flush().map_err(err("flush"))?;
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            self.db.flush().map(drop).map_err(err("flush"))
        }
        fn scan(
            &mut self,
            start: Bound<&[u8]>,
            limit: u64,
            reverse: bool,
            visit: &mut Visit<'_>,
        ) -> Result<u64> {
            // `Tree::range`: a double-ended iterator of `IVec` pairs.
            if reverse {
                visit_items(self.db.range::<&[u8], _>((Bound::Unbounded, start)).rev(), limit, visit)
            } else {
                visit_items(self.db.range::<&[u8], _>((start, Bound::Unbounded)), limit, visit)
            }
        }
        fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
            visit_items(self.db.scan_prefix(prefix), u64::MAX, visit)
        }
    }

    /// RocksDB through the `rocksdb` crate: write buffer sized like MiniVaultDB's MemTable, LZ4
    /// like fjall, everything else default.
    #[cfg(feature = "rocksdb")]
    pub struct Rocks {
        db: rocksdb::DB,
        write: rocksdb::WriteOptions,
        sync: rocksdb::WriteOptions,
    }

    #[cfg(feature = "rocksdb")]
    impl Rocks {
        pub fn open(dir: &Path, opts: EngineOptions) -> Result<Self> {
            let mut o = rocksdb::Options::default();
            o.create_if_missing(true);
            o.set_write_buffer_size(opts.memtable_bytes);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            let db = rocksdb::DB::open(&o, dir).map_err(err("open"))?;
            let mut write = rocksdb::WriteOptions::default();
            write.set_sync(opts.mode == Mode::EveryWrite);
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            Ok(Rocks { db, write, sync })
        }
    }

    #[cfg(feature = "rocksdb")]
    impl Engine for Rocks {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.db.put_opt(key, value, &self.write).map_err(err("put"))
        }
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get_pinned(key).map_err(err("get"))?.map(|v| v.len()))
        }
        fn delete(&mut self, key: &[u8]) -> Result<()> {
            self.db.delete_opt(key, &self.write).map_err(err("delete"))
        }
        fn write_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)], durable: bool) -> Result<()> {
            let mut b = rocksdb::WriteBatch::default();
            for (k, v) in items {
                b.put(k, v);
            }
            let wo = if durable { &self.sync } else { &self.write };
            self.db.write_opt(b, wo).map_err(err("write"))
        }
        fn sync(&mut self) -> Result<()> {
            self.db.flush_wal(true).map_err(err("flush_wal"))
        }
        fn scan(
            &mut self,
            start: Bound<&[u8]>,
            limit: u64,
            reverse: bool,
            visit: &mut Visit<'_>,
        ) -> Result<u64> {
            // The raw iterator (db_bench's): a seek, then `next` / `prev`, key and value
            // borrowed from the iterator.
            let mut it = self.db.raw_iterator();
            let skip = match (start, reverse) {
                (Bound::Unbounded, false) => {
                    it.seek_to_first();
                    None
                }
                (Bound::Unbounded, true) => {
                    it.seek_to_last();
                    None
                }
                (Bound::Included(k), false) | (Bound::Excluded(k), false) => {
                    it.seek(k);
                    matches!(start, Bound::Excluded(_)).then_some(k)
                }
                (Bound::Included(k), true) | (Bound::Excluded(k), true) => {
                    it.seek_for_prev(k);
                    matches!(start, Bound::Excluded(_)).then_some(k)
                }
            };
            if let (Some(k), Some(at)) = (skip, it.key()) {
                if at == k {
                    step(&mut it, reverse);
                }
            }
            let mut seen = 0u64;
            while seen < limit {
                let Some((k, v)) = it.item() else { break };
                seen += 1;
                if !visit(k, v) {
                    break;
                }
                step(&mut it, reverse);
            }
            it.status().map_err(err("iterator"))?;
            Ok(seen)
        }
        fn prefix(&mut self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<u64> {
            // No prefix extractor is configured (`prefix_iterator` would need one): a raw
            // iterator bounded above by the prefix's successor (`iterate_upper_bound`).
            let mut opts = rocksdb::ReadOptions::default();
            if let Some(end) = super::prefix_end(prefix) {
                opts.set_iterate_upper_bound(end);
            }
            let mut it = self.db.raw_iterator_opt(opts);
            it.seek(prefix);
            let mut seen = 0u64;
            while let Some((k, v)) = it.item() {
                seen += 1;
                if !visit(k, v) {
                    break;
                }
                it.next();
            }
            it.status().map_err(err("iterator"))?;
            Ok(seen)
        }
    }

    #[cfg(feature = "rocksdb")]
    fn step(it: &mut rocksdb::DBRawIterator<'_>, reverse: bool) {
        if reverse {
            it.prev();
        } else {
            it.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySpace;

    /// Every engine compiled in answers the scan workloads' questions alike.
    #[test]
    fn engines_scan_alike() {
        let ks = KeySpace { n: 250, key_size: 16, value_size: 8, seed: 3 };
        let key = |i: u64| {
            let mut k = Vec::new();
            ks.dense_key(i, &mut k);
            k
        };
        let base = std::env::temp_dir().join(format!("minivault-bench-scan-test-{}", std::process::id()));
        for name in ALL.iter().filter(|n| available(n) && !opt_in(n)) {
            let dir = base.join(name);
            let _ = fs::remove_dir_all(&dir);
            // Small write buffers: MiniVaultDB flushes and compacts, so scans read SSTables and MemTables.
            let opts = EngineOptions { mode: Mode::Relaxed, memtable_bytes: 4 << 10 };
            let mut e = open(name, &dir, opts).unwrap();
            let perm = ks.permutation(1);
            let mut v = Vec::new();
            for i in 0..ks.n {
                let id = perm.at(i);
                ks.value(id, 0, &mut v);
                e.put(&key(id), &v).unwrap();
            }
            e.sync().unwrap();
            if *name == "minivault" {
                assert!(e.stats().is_some_and(|s| s.tables >= 1), "the scans should read SSTables");
            }
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut collect = |k: &[u8], _: &[u8]| {
                got.push(k.to_vec());
                true
            };
            let scan = e.scan(Bound::Unbounded, 3, false, &mut collect);
            if name.starts_with("raw") {
                assert_eq!(scan, Err(NO_ORDERED_READS.to_string()), "{name}");
                assert!(e.prefix(b"0", &mut |_, _| true).is_err(), "{name}");
                continue;
            }
            assert_eq!(scan, Ok(3), "{name}");
            assert_eq!(got, vec![key(0), key(1), key(2)], "{name}");
            let mut all = Vec::new();
            let n = e
                .scan(Bound::Unbounded, u64::MAX, true, &mut |k, _| {
                    all.push(k.to_vec());
                    true
                })
                .unwrap();
            assert_eq!(n, ks.n, "{name}");
            assert_eq!(all, (0..ks.n).rev().map(key).collect::<Vec<_>>(), "{name}");
            let mut seek = Vec::new();
            let n = e
                .scan(Bound::Included(&key(100)), 11, false, &mut |k, _| {
                    seek.push(k.to_vec());
                    true
                })
                .unwrap();
            assert_eq!((n, seek), (11, (100..111).map(key).collect::<Vec<_>>()), "{name}");
            let mut around = Vec::new();
            e.scan(Bound::Excluded(&key(100)), 2, false, &mut |k, _| {
                around.push(k.to_vec());
                true
            })
            .unwrap();
            e.scan(Bound::Excluded(&key(100)), 2, true, &mut |k, _| {
                around.push(k.to_vec());
                true
            })
            .unwrap();
            assert_eq!(around, vec![key(101), key(102), key(99), key(98)], "{name}");
            let mut p = Vec::new();
            let expected = ks.group_prefix(1, &mut p);
            let mut in_group = Vec::new();
            let n = e
                .prefix(&p, &mut |k, _| {
                    in_group.push(k.to_vec());
                    true
                })
                .unwrap();
            assert_eq!(n, expected, "{name}");
            assert_eq!(in_group, (100..200).map(key).collect::<Vec<_>>(), "{name}");
            let stopped = e.scan(Bound::Unbounded, u64::MAX, false, &mut |_, _| false).unwrap();
            assert_eq!(stopped, 1, "{name}: a visit that returns false stops the scan");
            drop(e);
            let _ = fs::remove_dir_all(&dir);
        }
        let _ = fs::remove_dir_all(&base);
    }

    #[cfg(any(feature = "redb", feature = "rocksdb"))]
    #[test]
    fn prefix_end_is_the_successor() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
