//! Workloads with several threads on one shared handle per engine: [`SharedEngine`], one
//! implementation per engine that can be shared between threads, and the workloads.
//!
//! | workload | directory | what is timed |
//! |---|---|---|
//! | fillsync1, fillsync4, fillsync16 | `syncN/` (fresh) | 1, 4 or 16 threads putting the keys (thread `j` takes every `N`-th of a random order), **each put durable before that thread's next** ([`Mode::EveryWrite`]); wall time until every thread is done, at most `max_secs` |
//! | readwhilewriting | `rww/` (filled first, untimed: `n` puts and a sync) | 4 threads getting random present keys for `max_secs` while 1 thread overwrites random keys ([`Mode::Relaxed`]) as fast as it can, or at most `--write-rate` puts per second; reads per second of wall time (the writer's rate is in the note) |
//!
//! Durable writes map onto each engine's knobs as in [`crate::engines`]: MiniVaultDB's
//! `Durability::Always` (group commit), fjall's `insert` + `persist(SyncData)`, redb's
//! `Durability::Immediate` transaction per put, sled's `insert` + `flush()`, RocksDB's
//! `WriteOptions::set_sync(true)`. The raw-file baselines have no shared handle (n/a).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::engines::{EngineOptions, Mode, Result};
use crate::keys::Rng;
use crate::metrics::{self, Latency};
use crate::row::Row;
use crate::workloads::ChildConfig;

/// Reader threads of `readwhilewriting`.
const READERS: usize = 4;

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// An engine handle shared by threads.
pub trait SharedEngine: Send + Sync {
    /// Stores `value` under `key` (durable on return in [`Mode::EveryWrite`]).
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// A reader for one thread (engines whose reads need per-thread state keep it there).
    fn reader(&self) -> Result<Box<dyn SharedReader + '_>>;
    /// Makes every write so far durable.
    fn sync(&self) -> Result<()>;
    /// For the note of a durable fill: how the writes reached the log, when the engine says.
    fn commit_note(&self) -> Option<String> {
        None
    }
    /// The most memory the engine's configuration lets it hold with `readers` threads reading
    /// entries of `entry_bytes`, where the engine states such a bound (MiniVaultDB).
    fn memory_bound(&self, entry_bytes: u64, readers: u64) -> Option<u64> {
        let _ = (entry_bytes, readers);
        None
    }
}

/// One thread's reads.
pub trait SharedReader {
    /// The length of the value of `key`, or `None` when absent.
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>>;
}

/// Opens engine `name` in `dir` as a shared handle.
fn open(name: &str, dir: &Path, opts: EngineOptions) -> Result<Arc<dyn SharedEngine>> {
    fs::create_dir_all(dir).map_err(err("create dir"))?;
    match name {
        name if let Some(options) = crate::engines::minivault_options(name, opts) => {
            Ok(Arc::new(MiniVault(minivault::Db::open_with(dir, options).map_err(err("open"))?)))
        }
        #[cfg(feature = "fjall")]
        "fjall" => Ok(Arc::new(peers::Fjall::open(dir, opts)?)),
        #[cfg(feature = "redb")]
        "redb" => Ok(Arc::new(peers::Redb::open(dir, opts)?)),
        #[cfg(feature = "sled")]
        "sled" => Ok(Arc::new(peers::Sled::open(dir, opts)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Arc::new(peers::Rocks::open(dir, opts)?)),
        "rawfile" | "rawprealloc" => Err("no shared handle (a single-threaded baseline)".into()),
        _ => Err(format!("engine {name} has no shared handle here")),
    }
}

/// MiniVaultDB: one `minivault::Db` (`Send + Sync`, `&self` methods), opened with the options
/// of its variant ([`crate::engines::minivault_options`]).
struct MiniVault(minivault::Db);

impl SharedEngine for MiniVault {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0.put(key, value).map_err(err("put"))
    }
    fn reader(&self) -> Result<Box<dyn SharedReader + '_>> {
        Ok(Box::new(self))
    }
    fn sync(&self) -> Result<()> {
        self.0.sync().map_err(err("sync"))
    }
    fn commit_note(&self) -> Option<String> {
        let group = self.0.write_group_counts();
        let (syncs, _) = self.0.group_commit_counts();
        Some(format!("{} WAL records, {syncs} syncs", group.records))
    }
    fn memory_bound(&self, entry_bytes: u64, readers: u64) -> Option<u64> {
        Some(crate::engines::minivault_bound(&self.0, entry_bytes, readers))
    }
}

impl SharedReader for &MiniVault {
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.0.get(key).map_err(err("get"))?.map(|v| v.len()))
    }
}

#[cfg(any(feature = "fjall", feature = "redb", feature = "sled", feature = "rocksdb"))]
mod peers {
    #[allow(unused_imports)]
    use super::{err, EngineOptions, Mode, Result, SharedEngine, SharedReader};
    #[allow(unused_imports)]
    use std::path::Path;

    /// fjall: one keyspace, memtable sized like MiniVaultDB's; durable puts `persist(SyncData)`.
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
    }

    #[cfg(feature = "fjall")]
    impl SharedEngine for Fjall {
        fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.ks.insert(key, value).map_err(err("insert"))?;
            if self.mode == Mode::EveryWrite {
                self.db.persist(fjall::PersistMode::SyncData).map_err(err("persist"))?;
            }
            Ok(())
        }
        fn reader(&self) -> Result<Box<dyn SharedReader + '_>> {
            Ok(Box::new(self))
        }
        fn sync(&self) -> Result<()> {
            self.db.persist(fjall::PersistMode::SyncData).map_err(err("persist"))
        }
    }

    #[cfg(feature = "fjall")]
    impl SharedReader for &Fjall {
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.ks.get(key).map_err(err("get"))?.map(|v| v.len()))
        }
    }

    #[cfg(feature = "redb")]
    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

    /// redb: a write transaction per put (`Immediate` when durable, `None` when relaxed);
    /// concurrent writers queue for redb's single writer.
    #[cfg(feature = "redb")]
    pub struct Redb {
        db: redb::Database,
        mode: Mode,
    }

    #[cfg(feature = "redb")]
    impl Redb {
        pub fn open(dir: &Path, opts: EngineOptions) -> Result<Self> {
            let db = redb::Database::create(dir.join("bench.redb")).map_err(err("open"))?;
            let tx = db.begin_write().map_err(err("begin_write"))?;
            tx.open_table(TABLE).map_err(err("open_table"))?;
            tx.commit().map_err(err("commit"))?;
            Ok(Redb { db, mode: opts.mode })
        }

        fn commit(&self, durable: bool, kv: Option<(&[u8], &[u8])>) -> Result<()> {
            let mut tx = self.db.begin_write().map_err(err("begin_write"))?;
            let d = if durable { redb::Durability::Immediate } else { redb::Durability::None };
            tx.set_durability(d).map_err(err("durability"))?;
            if let Some((k, v)) = kv {
                let mut t = tx.open_table(TABLE).map_err(err("open_table"))?;
                t.insert(k, v).map_err(err("insert"))?;
            }
            tx.commit().map_err(err("commit"))
        }
    }

    #[cfg(feature = "redb")]
    impl SharedEngine for Redb {
        fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.commit(self.mode == Mode::EveryWrite, Some((key, value)))
        }
        fn reader(&self) -> Result<Box<dyn SharedReader + '_>> {
            Ok(Box::new(RedbReader { db: &self.db, table: None, gets: 0 }))
        }
        fn sync(&self) -> Result<()> {
            self.commit(true, None)
        }
    }

    /// A redb reader thread: a read transaction, renewed every 1,000 gets so that it sees the
    /// writer's commits (one per get would cost redb a transaction per read).
    #[cfg(feature = "redb")]
    struct RedbReader<'a> {
        db: &'a redb::Database,
        table: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
        gets: u64,
    }

    #[cfg(feature = "redb")]
    impl SharedReader for RedbReader<'_> {
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            self.gets += 1;
            if self.table.is_none() || self.gets.is_multiple_of(1000) {
                use redb::ReadableDatabase;
                let tx = self.db.begin_read().map_err(err("begin_read"))?;
                self.table = Some(tx.open_table(TABLE).map_err(err("open_table"))?);
            }
            let Some(t) = self.table.as_ref() else { return Ok(None) };
            Ok(t.get(key).map_err(err("get"))?.map(|g| g.value().len()))
        }
    }

    /// sled 0.34: `insert`, and `flush()` when durable (not a reliable durability point: sled
    /// issue 1351).
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
    }

    #[cfg(feature = "sled")]
    impl SharedEngine for Sled {
        fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.db.insert(key, value).map_err(err("insert"))?;
            if self.mode == Mode::EveryWrite {
                self.db.flush().map_err(err("flush"))?;
            }
            Ok(())
        }
        fn reader(&self) -> Result<Box<dyn SharedReader + '_>> {
            Ok(Box::new(self))
        }
        fn sync(&self) -> Result<()> {
            self.db.flush().map(drop).map_err(err("flush"))
        }
    }

    #[cfg(feature = "sled")]
    impl SharedReader for &Sled {
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get(key).map_err(err("get"))?.map(|v| v.len()))
        }
    }

    /// RocksDB: `put_opt` with `set_sync(true)` when durable (RocksDB groups concurrent
    /// writers' WAL writes and syncs itself).
    #[cfg(feature = "rocksdb")]
    pub struct Rocks {
        db: rocksdb::DB,
        write: rocksdb::WriteOptions,
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
            Ok(Rocks { db, write })
        }
    }

    #[cfg(feature = "rocksdb")]
    impl SharedEngine for Rocks {
        fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.db.put_opt(key, value, &self.write).map_err(err("put"))
        }
        fn reader(&self) -> Result<Box<dyn SharedReader + '_>> {
            Ok(Box::new(self))
        }
        fn sync(&self) -> Result<()> {
            self.db.flush_wal(true).map_err(err("flush_wal"))
        }
    }

    #[cfg(feature = "rocksdb")]
    impl SharedReader for &Rocks {
        fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get_pinned(key).map_err(err("get"))?.map(|v| v.len()))
        }
    }
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))
}

/// What a workload reports: operations, wall time, user bytes, latencies, a note.
struct Outcome {
    ops: u64,
    secs: f64,
    user_bytes: u64,
    lat: Latency,
    note: String,
    /// The engine's stated memory bound for the workload, bytes ([`SharedEngine::memory_bound`]).
    bound: Option<u64>,
}

/// `base_rss`: the process's RSS (KiB) before the engine was opened, after the peak was reset.
fn row(cfg: &ChildConfig, name: &str, dir: &Path, base_rss: u64, result: Result<Outcome>) -> Row {
    let mut row = Row::new(&cfg.engine, cfg.ks.n, name, cfg.round);
    match result {
        Ok(o) => {
            crate::workloads::note_bound(&mut row, base_rss, o.bound);
            row.ops = o.ops;
            row.secs = o.secs;
            row.user_bytes = o.user_bytes;
            row.p50_ns = o.lat.quantile(0.50);
            row.p99_ns = o.lat.quantile(0.99);
            row.p999_ns = o.lat.quantile(0.999);
            row.max_ns = o.lat.max();
            row.disk_bytes = metrics::disk_bytes(dir);
            row.rss_kib = metrics::peak_rss_kib();
            row.note = o.note;
        }
        Err(e) => row.error = e,
    }
    row
}

/// Runs the configured workloads of this module for one engine.
pub fn run(cfg: &ChildConfig) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, threads) in [("fillsync1", 1), ("fillsync4", 4), ("fillsync16", 16)] {
        if cfg.workloads.iter().any(|w| w == name) {
            let dir = cfg.dir.join(format!("sync{threads}"));
            let base = crate::workloads::rss_before_open();
            let result = fresh_dir(&dir).and_then(|()| fillsync(cfg, &dir, threads));
            rows.push(row(cfg, name, &dir, base, result));
            let _ = fs::remove_dir_all(&dir);
        }
    }
    if cfg.workloads.iter().any(|w| w == "readwhilewriting") {
        let dir = cfg.dir.join("rww");
        let base = crate::workloads::rss_before_open();
        let result = fresh_dir(&dir).and_then(|()| read_while_writing(cfg, &dir));
        rows.push(row(cfg, "readwhilewriting", &dir, base, result));
        let _ = fs::remove_dir_all(&dir);
    }
    rows
}

/// `threads` threads putting the key space, each put durable on return.
fn fillsync(cfg: &ChildConfig, dir: &Path, threads: u64) -> Result<Outcome> {
    let opts = EngineOptions { mode: Mode::EveryWrite, memtable_bytes: cfg.memtable_bytes };
    let engine = open(&cfg.engine, dir, opts)?;
    let ks = &cfg.ks;
    let perm = ks.permutation(1);
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.max_secs);
    let t0 = Instant::now();
    let results: Vec<Result<(u64, Latency)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|j| {
                let (engine, perm) = (&engine, &perm);
                s.spawn(move || -> Result<(u64, Latency)> {
                    let (mut k, mut v) = (Vec::new(), Vec::new());
                    let mut lat = Latency::new();
                    let mut done = 0u64;
                    let mut i = j;
                    while i < ks.n {
                        // The clock is read once per 64 puts, and key generation is not timed.
                        if done.is_multiple_of(64) && Instant::now() >= deadline {
                            break;
                        }
                        let id = perm.at(i);
                        ks.key(id, &mut k);
                        ks.value(id, 0, &mut v);
                        lat.start();
                        engine.put(&k, &v)?;
                        lat.stop();
                        done += 1;
                        i += threads;
                    }
                    Ok((done, lat))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a writer panicked".into()))).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut lat = Latency::new();
    let mut ops = 0;
    for r in results {
        let (done, l) = r?;
        ops += done;
        lat.merge(&l);
    }
    let entry = ks.entry_bytes();
    Ok(Outcome {
        ops,
        secs,
        user_bytes: ops * entry,
        lat,
        note: match engine.commit_note() {
            Some(commits) => format!("{ops} durable puts by {threads} threads; {commits}"),
            None => format!("{ops} durable puts by {threads} threads"),
        },
        // Each writer thread reads nothing but is a thread of the handle's like a reader.
        bound: engine.memory_bound(entry, 0),
    })
}

/// 4 readers of random present keys for `max_secs`, while one writer overwrites random keys.
fn read_while_writing(cfg: &ChildConfig, dir: &Path) -> Result<Outcome> {
    let opts = EngineOptions { mode: Mode::Relaxed, memtable_bytes: cfg.memtable_bytes };
    let engine = open(&cfg.engine, dir, opts)?;
    let ks = &cfg.ks;
    // The fill: every key once, in a random order, then a sync (untimed).
    let perm = ks.permutation(1);
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for i in 0..ks.n {
        let id = perm.at(i);
        ks.key(id, &mut k);
        ks.value(id, 0, &mut v);
        engine.put(&k, &v)?;
    }
    engine.sync()?;
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let secs = Duration::from_secs_f64(cfg.max_secs);
    let rate = cfg.write_rate;
    let t0 = Instant::now();
    let (reads, write_result) = thread::scope(|s| {
        let (engine, stop, writes) = (&engine, &stop, &writes);
        let writer = s.spawn(move || -> Result<()> {
            let mut rng = Rng::new(ks.seed ^ 0x3717e);
            let (mut k, mut v) = (Vec::new(), Vec::new());
            let mut generation = 1;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100 {
                    let id = rng.below(ks.n);
                    ks.key(id, &mut k);
                    ks.value(id, generation, &mut v);
                    engine.put(&k, &v)?;
                }
                generation += 1;
                let written = writes.fetch_add(100, Ordering::Relaxed) + 100;
                if rate > 0 {
                    // Paced: the next hundred puts wait for their time.
                    let due = Duration::from_secs_f64(written as f64 / rate as f64);
                    while let Some(wait) = due.checked_sub(t0.elapsed()) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        thread::sleep(wait.min(Duration::from_millis(20)));
                    }
                }
            }
            Ok(())
        });
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                s.spawn(move || -> Result<(u64, u64, Latency)> {
                    let mut reader = engine.reader()?;
                    let mut rng = Rng::new(ks.seed ^ 0xbeef ^ r as u64);
                    let mut lat = Latency::new();
                    let mut keys: Vec<Vec<u8>> = (0..1000).map(|_| Vec::new()).collect();
                    let (mut done, mut bytes) = (0u64, 0u64);
                    while t0.elapsed() < secs {
                        for k in keys.iter_mut() {
                            ks.key(rng.below(ks.n), k);
                        }
                        for k in &keys {
                            lat.start();
                            let got = reader.get(k)?;
                            lat.stop();
                            let len = got.ok_or("readwhilewriting: a present key read as absent")?;
                            bytes += (k.len() + len) as u64;
                        }
                        done += keys.len() as u64;
                    }
                    Ok((done, bytes, lat))
                })
            })
            .collect();
        let reads: Vec<_> = readers
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err("a reader panicked".into())))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let w = writer.join().unwrap_or_else(|_| Err("the writer panicked".into()));
        (reads, w)
    });
    let secs = t0.elapsed().as_secs_f64();
    write_result?;
    let mut lat = Latency::new();
    let (mut ops, mut bytes) = (0, 0);
    for r in reads {
        let (done, b, l) = r?;
        ops += done;
        bytes += b;
        lat.merge(&l);
    }
    let written = writes.load(Ordering::Relaxed);
    Ok(Outcome {
        ops,
        secs,
        user_bytes: bytes,
        lat,
        note: format!(
            "{READERS} readers; the writer's overwrites: {:.0}/s{}",
            written as f64 / secs,
            if rate > 0 { format!(" (at most {rate}/s)") } else { String::new() }
        ),
        bound: engine.memory_bound(ks.entry_bytes(), READERS as u64),
    })
}
