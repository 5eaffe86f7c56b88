//! The db_bench workloads, run against one engine inside one child process, and the row each
//! one reports.
//!
//! Order inside a child (each engine gets the same sequence, the same keys and the same values):
//!
//! | workload | directory | what is timed |
//! |---|---|---|
//! | fillseq | `seq/` (fresh) | `n` puts in key order, then `sync` |
//! | fillrandom | `main/` (fresh) | `n` puts in a random order, then `sync` |
//! | overwrite | `main/` | `n` puts of new values in another random order, then `sync` |
//! | readrandom | `main/` | gets of random present keys |
//! | readmissing | `main/` | gets of random absent keys (they sort between present ones) |
//! | readhot | `main/` | gets of random keys from a hot set of 1 % of the keys |
//! | mixed | `main/` | 90 % gets, 10 % puts (overwrites) of random keys, then `sync` |
//! | deleterandom | `main/` | deletes of a random half of the keys, then `sync` |
//! | readseq | `scan/` | every entry (key and value) in key order, through the engine's iterator |
//! | readreverse | `scan/` | the same from the last key down |
//! | seekrandom | `scan/` | a seek to a random present key, then 10 nexts (db_bench `--seek_nexts=10`): 11 entries |
//! | prefix100 | `scan/` | a prefix scan of a random group of 100 keys (the engine's prefix iterator) |
//! | fillsync | `sync/` (fresh) | puts each durable before the next ([`Mode::EveryWrite`]) |
//! | fillbatch | `batch/` (fresh) | `n` puts in batches of 1,000, each batch durable on return |
//! | reopen | `reopen/` (fresh) | a grandchild writes keys, syncs and exits without closing (as if it crashed right after a durable sync: everything is in the WAL); timed: open + one get |
//! | fillsync1/4/16, readwhilewriting | | several threads on one shared handle: see [`crate::concurrent`] |
//!
//! Keys and values of a chunk of 1,000 operations are generated before the chunk's clock starts,
//! so generation is not timed. Reads, `mixed`, `fillsync` and the scans stop at `max_secs`.
//!
//! The scan workloads share `scan/`, filled first (not timed, not reported) with the `n` dense
//! keys `0..n` ([`KeySpace::dense_key`]) in a random order and synced, so that a prefix of the
//! first `key_size - 2` bytes holds exactly 100 keys. Engines without ordered reads (the raw
//! baselines) report them n/a without filling.

use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::engines::{self, Engine, EngineOptions, Mode};
use crate::keys::{KeySpace, Rng};
use crate::metrics::{self, Latency, ProcIo};
use crate::row::Row;

/// All workloads, in the order a child runs them.
pub const ALL: &[&str] = &[
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "readmissing",
    "readhot",
    "mixed",
    "deleterandom",
    "readseq",
    "readreverse",
    "seekrandom",
    "prefix100",
    "fillsync",
    "fillbatch",
    "reopen",
    "fillsync1",
    "fillsync4",
    "fillsync16",
    "readwhilewriting",
];

/// Operations per generated (untimed) chunk, and per durable batch in `fillbatch`.
const CHUNK: usize = 1000;

/// The scan workloads, in the order a child runs them (all in `scan/`).
pub const SCANS: &[&str] = &["readseq", "readreverse", "seekrandom", "prefix100"];

/// Entries a `seekrandom` operation reads: the one sought, then 10 nexts.
const SEEK_ENTRIES: u64 = 11;

/// Everything one child needs.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// Engine name.
    pub engine: String,
    /// Keys, sizes and seed.
    pub ks: KeySpace,
    /// This child's own directory (removed first).
    pub dir: PathBuf,
    /// Round number (reported only).
    pub round: u32,
    /// Write buffer size handed to every engine.
    pub memtable_bytes: usize,
    /// Gets per read workload (and operations of `mixed`), before the time cap.
    pub reads: u64,
    /// Time cap of reads, `mixed` and `fillsync`.
    pub max_secs: f64,
    /// Operations of `fillsync` before the time cap.
    pub sync_ops: u64,
    /// Puts per second `readwhilewriting`'s writer may do (0: as many as it can).
    pub write_rate: u64,
    /// Keys the `reopen` writer leaves in the WAL.
    pub reopen_keys: u64,
    /// Workloads to run (a subset of [`ALL`]).
    pub workloads: Vec<String>,
}

impl ChildConfig {
    fn wants(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }

    fn options(&self, mode: Mode) -> EngineOptions {
        EngineOptions { mode, memtable_bytes: self.memtable_bytes }
    }
}

/// What a workload function returns: operations done, time spent in them, user bytes moved, and
/// a remark for the report.
struct Outcome {
    ops: u64,
    busy: Duration,
    user_bytes: u64,
    note: String,
}

/// Key and value buffers for one chunk.
struct Chunk {
    items: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Chunk {
    fn new() -> Self {
        Chunk { items: (0..CHUNK).map(|_| (Vec::new(), Vec::new())).collect() }
    }
}

/// The process's RSS (KiB) before a handle is opened, what an earlier handle freed given back
/// first: subtracted from a workload's peak, it leaves the handle's own memory.
pub(crate) fn rss_before_open() -> u64 {
    metrics::reset_peak_rss();
    metrics::rss_kib()
}

/// Records on a row that measured something the handle's stated memory bound (bytes, where the
/// engine states one) and the RSS before the handle was opened.
pub(crate) fn note_bound(row: &mut Row, base_rss: u64, bound: Option<u64>) {
    if let (Some(b), true) = (bound, row.error.is_empty()) {
        row.base_rss_kib = Some(base_rss);
        row.budget_kib = Some(b.div_ceil(1024));
    }
}

/// Measures one workload: resets the peak RSS, snapshots `/proc/self/io`, runs `f`, and builds
/// the row.
fn measure_raw(
    cfg: &ChildConfig,
    name: &str,
    dir: &Path,
    live_bytes: Option<u64>,
    f: impl FnOnce(&mut Latency) -> Result<Outcome, String>,
) -> Row {
    metrics::reset_peak_rss();
    let io0 = ProcIo::now();
    let mut lat = Latency::new();
    let result = f(&mut lat);
    let io = ProcIo::now().since(&io0);
    let rss = metrics::peak_rss_kib();
    let mut row = Row::new(&cfg.engine, cfg.ks.n, name, cfg.round);
    match result {
        Ok(o) => {
            row.ops = o.ops;
            row.secs = o.busy.as_secs_f64();
            row.user_bytes = o.user_bytes;
            row.p50_ns = lat.quantile(0.50);
            row.p99_ns = lat.quantile(0.99);
            row.p999_ns = lat.quantile(0.999);
            row.max_ns = lat.max();
            row.dev_bytes = io.device_bytes();
            row.wchar = io.wchar;
            row.syscr = io.syscr;
            row.syscw = io.syscw;
            row.live_bytes = live_bytes.unwrap_or(0);
            row.disk_bytes = if live_bytes.is_some() { metrics::disk_bytes(dir) } else { 0 };
            row.rss_kib = rss;
            row.note = o.note;
        }
        Err(e) => row.error = e,
    }
    row
}

/// [`measure_raw`] around an open engine, adding its counters (tables, probes per get).
fn measure(
    cfg: &ChildConfig,
    name: &str,
    e: &mut dyn Engine,
    dir: &Path,
    live_bytes: Option<u64>,
    f: impl FnOnce(&mut Latency, &mut dyn Engine) -> Result<Outcome, String>,
) -> Row {
    let s0 = e.stats();
    let mut row = measure_raw(cfg, name, dir, live_bytes, |lat| f(lat, &mut *e));
    if let (Some(s0), Some(s1)) = (s0, e.stats()) {
        row.tables = Some(s1.tables);
        let gets = s1.gets.saturating_sub(s0.gets);
        if gets > 0 {
            row.probes_per_get = Some(s1.table_probes.saturating_sub(s0.table_probes) as f64 / gets as f64);
            let hits = s1.row_cache_hits.saturating_sub(s0.row_cache_hits);
            let sep = if row.note.is_empty() { "" } else { "; " };
            row.note = format!("{}{sep}row cache {:.0}% hits", row.note, 100.0 * hits as f64 / gets as f64);
        }
        let (flushes, spares) =
            (s1.flushes.saturating_sub(s0.flushes), s1.spare_wals_taken.saturating_sub(s0.spare_wals_taken));
        if flushes > 0 {
            let sep = if row.note.is_empty() { "" } else { "; " };
            row.note = format!("{}{sep}{spares} rotations into a spare WAL ({flushes} flushes)", row.note);
        }
        let merges = s1.compactions.saturating_sub(s0.compactions);
        if merges > 0 {
            let sep = if row.note.is_empty() { "" } else { "; " };
            row.note = format!("{}{sep}{merges} compactions", row.note);
        }
        if let (Some(b0), Some(b1)) = (s0.background, s1.background) {
            let stalls = stall_note(&b0, &b1);
            if !stalls.is_empty() {
                let sep = if row.note.is_empty() { "" } else { "; " };
                row.note = format!("{}{sep}{stalls}", row.note);
            }
        }
    }
    row
}

/// What held MiniVaultDB's writes back during a workload (the waits that make its slowest puts):
/// writes held at `stop_tables` and writes that waited for a flush, with their total and
/// longest waits (the longest since the database was opened), the writes slowed 1 ms, and the
/// time the merges paused for flushes.
fn stall_note(b0: &minivault::BackgroundStats, b1: &minivault::BackgroundStats) -> String {
    let mut parts = vec![];
    let mut waits = |what: &str, count: u64, time: std::time::Duration, longest: std::time::Duration| {
        if count > 0 {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            parts.push(format!("{count} {what} ({:.0} ms, longest {:.0} ms)", ms(time), ms(longest)));
        }
    };
    waits(
        "writes held at stop_tables",
        b1.stopped_writes.saturating_sub(b0.stopped_writes),
        b1.stopped_time.saturating_sub(b0.stopped_time),
        b1.longest_stop,
    );
    waits(
        "flush waits",
        b1.flush_waits.saturating_sub(b0.flush_waits),
        b1.flush_wait_time.saturating_sub(b0.flush_wait_time),
        b1.longest_flush_wait,
    );
    let slowed = b1.slowed_writes.saturating_sub(b0.slowed_writes);
    if slowed > 0 {
        parts.push(format!("{slowed} writes slowed 1 ms"));
    }
    let paced = b1.paced_writes.saturating_sub(b0.paced_writes);
    if paced > 0 {
        parts.push(format!("{paced} writes paced for a flush"));
    }
    let gave_way = b1.merges_gave_way.saturating_sub(b0.merges_gave_way);
    if !gave_way.is_zero() {
        parts.push(format!("merges gave way to flushes {:.0} ms", gave_way.as_secs_f64() * 1e3));
    }
    parts.join("; ")
}

/// Puts (or deletes, when `value_gen` is `None`) the keys `ids(0..count)`, timing each.
fn timed_writes(
    e: &mut dyn Engine,
    ks: &KeySpace,
    count: u64,
    ids: impl Fn(u64) -> u64,
    value_gen: Option<u64>,
    lat: &mut Latency,
    deadline: Option<Instant>,
) -> Result<(u64, Duration), String> {
    let mut chunk = Chunk::new();
    let mut busy = Duration::ZERO;
    let mut done = 0u64;
    while done < count {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = (count - done).min(CHUNK as u64) as usize;
        for (j, (k, v)) in chunk.items.iter_mut().take(n).enumerate() {
            let id = ids(done + j as u64);
            ks.key(id, k);
            if let Some(g) = value_gen {
                ks.value(id, g, v);
            }
        }
        let t0 = Instant::now();
        for (k, v) in chunk.items.iter().take(n) {
            lat.start();
            match value_gen {
                Some(_) => e.put(k, v)?,
                None => e.delete(k)?,
            }
            lat.stop();
        }
        busy += t0.elapsed();
        done += n as u64;
    }
    Ok((done, busy))
}

/// Times `sync` and adds it to `busy`.
fn timed_sync(e: &mut dyn Engine, busy: &mut Duration) -> Result<(), String> {
    let t0 = Instant::now();
    e.sync()?;
    *busy += t0.elapsed();
    Ok(())
}

/// Gets `count` keys, key `i` written by `key(i, buf)`; returns (ops, time, found, value bytes).
fn timed_reads(
    e: &mut dyn Engine,
    count: u64,
    mut key: impl FnMut(u64, &mut Vec<u8>),
    lat: &mut Latency,
    deadline: Instant,
) -> Result<(u64, Duration, u64, u64), String> {
    let mut keys: Vec<Vec<u8>> = (0..CHUNK).map(|_| Vec::new()).collect();
    let (mut busy, mut done, mut found, mut bytes) = (Duration::ZERO, 0u64, 0u64, 0u64);
    while done < count && Instant::now() < deadline {
        let n = (count - done).min(CHUNK as u64) as usize;
        for (j, k) in keys.iter_mut().take(n).enumerate() {
            key(done + j as u64, k);
        }
        let t0 = Instant::now();
        for k in keys.iter().take(n) {
            lat.start();
            let got = e.get(k)?;
            lat.stop();
            if let Some(len) = got {
                found += 1;
                bytes += (k.len() + len) as u64;
            }
        }
        busy += t0.elapsed();
        done += n as u64;
    }
    Ok((done, busy, found, bytes))
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))
}

fn na(cfg: &ChildConfig, name: &str, why: &str) -> Row {
    let mut row = Row::new(&cfg.engine, cfg.ks.n, name, cfg.round);
    row.error = why.to_string();
    row
}

/// Runs the configured workloads for one engine and returns their rows.
pub fn run_child(cfg: &ChildConfig) -> Vec<Row> {
    let mut rows = Vec::new();
    if cfg.engine == "rawprealloc" {
        // The preallocated log only matters where every write or batch is synced.
        let durable = ["fillsync", "fillbatch"];
        for w in cfg.workloads.iter().filter(|w| !durable.contains(&w.as_str())) {
            rows.push(na(cfg, w, "durable-write baseline only"));
        }
        let cfg = ChildConfig {
            workloads: cfg.workloads.iter().filter(|w| durable.contains(&w.as_str())).cloned().collect(),
            ..cfg.clone()
        };
        for mut r in run_child_inner(&cfg) {
            let sep = if r.note.is_empty() { "" } else { "; " };
            r.note =
                format!("{}{sep}log preallocated in 16 MiB chunks, so space amp is not meaningful", r.note);
            rows.push(r);
        }
        return rows;
    }
    rows.extend(run_child_inner(cfg));
    rows
}

fn run_child_inner(cfg: &ChildConfig) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Err(e) = fresh_dir(&cfg.dir) {
        rows.push(na(cfg, "open", &e));
        return rows;
    }
    let ks = &cfg.ks;
    let n = ks.n;
    let entry = ks.entry_bytes();
    let secs = Duration::from_secs_f64(cfg.max_secs);

    // fillseq, in its own directory.
    if cfg.wants("fillseq") {
        let dir = cfg.dir.join("seq");
        let base_rss = rss_before_open();
        let row = match fresh_dir(&dir)
            .and_then(|_| engines::open(&cfg.engine, &dir, cfg.options(Mode::Relaxed)))
        {
            Ok(mut e) => {
                let mut row = measure(cfg, "fillseq", e.as_mut(), &dir, Some(n * entry), |lat, e| {
                    let (ops, mut busy) = timed_writes(e, ks, n, |i| i, Some(0), lat, None)?;
                    timed_sync(e, &mut busy)?;
                    Ok(Outcome { ops, busy, user_bytes: ops * entry, note: String::new() })
                });
                note_bound(&mut row, base_rss, e.handle_bound(entry));
                drop(e);
                row
            }
            Err(err) => na(cfg, "fillseq", &err),
        };
        rows.push(row);
        let _ = fs::remove_dir_all(&dir);
    }

    // The main database: fill, overwrite, reads, mix, deletes.
    let main_workloads =
        ["fillrandom", "overwrite", "readrandom", "readmissing", "readhot", "mixed", "deleterandom"];
    if main_workloads.iter().any(|w| cfg.wants(w)) {
        let dir = cfg.dir.join("main");
        let base_rss = rss_before_open();
        match fresh_dir(&dir).and_then(|_| engines::open(&cfg.engine, &dir, cfg.options(Mode::Relaxed))) {
            Ok(mut e) => {
                let first = rows.len();
                run_main(cfg, e.as_mut(), &dir, &mut rows);
                let bound = e.handle_bound(entry);
                for row in rows.iter_mut().skip(first) {
                    note_bound(row, base_rss, bound);
                }
                drop(e);
            }
            Err(err) => {
                for w in main_workloads.iter().filter(|w| cfg.wants(w)) {
                    rows.push(na(cfg, w, &err));
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    // The scan workloads, in their own database of dense keys.
    if SCANS.iter().any(|w| cfg.wants(w)) {
        let dir = cfg.dir.join("scan");
        let base_rss = rss_before_open();
        match fresh_dir(&dir).and_then(|_| engines::open(&cfg.engine, &dir, cfg.options(Mode::Relaxed))) {
            Ok(mut e) => {
                run_scans(cfg, e.as_mut(), &dir, base_rss, &mut rows);
                drop(e);
            }
            Err(err) => {
                for w in SCANS.iter().filter(|w| cfg.wants(w)) {
                    rows.push(na(cfg, w, &err));
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    // fillsync: each write durable before the next.
    if cfg.wants("fillsync") {
        let dir = cfg.dir.join("sync");
        let count = (n / 10).clamp(1, cfg.sync_ops.max(1));
        let row = match fresh_dir(&dir)
            .and_then(|_| engines::open(&cfg.engine, &dir, cfg.options(Mode::EveryWrite)))
        {
            Ok(mut e) => {
                let perm = ks.permutation(1);
                let deadline = Instant::now() + secs;
                let mut row = measure(cfg, "fillsync", e.as_mut(), &dir, None, |lat, e| {
                    let (ops, busy) =
                        timed_writes(e, ks, count, |i| perm.at(i), Some(0), lat, Some(deadline))?;
                    Ok(Outcome { ops, busy, user_bytes: ops * entry, note: format!("{ops} durable puts") })
                });
                row.live_bytes = row.ops * entry;
                row.disk_bytes = metrics::disk_bytes(&dir);
                drop(e);
                row
            }
            Err(err) => na(cfg, "fillsync", &err),
        };
        rows.push(row);
        let _ = fs::remove_dir_all(&dir);
    }

    // fillbatch: batches of 1,000, each durable on return.
    if cfg.wants("fillbatch") {
        let dir = cfg.dir.join("batch");
        let row = match fresh_dir(&dir)
            .and_then(|_| engines::open(&cfg.engine, &dir, cfg.options(Mode::Relaxed)))
        {
            Ok(mut e) => {
                let perm = ks.permutation(1);
                let row = measure(cfg, "fillbatch", e.as_mut(), &dir, Some(n * entry), |lat, e| {
                    let mut chunk = Chunk::new();
                    let (mut done, mut busy) = (0u64, Duration::ZERO);
                    while done < n {
                        let m = (n - done).min(CHUNK as u64) as usize;
                        chunk.items.truncate(m);
                        for (j, (k, v)) in chunk.items.iter_mut().enumerate() {
                            let id = perm.at(done + j as u64);
                            ks.key(id, k);
                            ks.value(id, 0, v);
                        }
                        let t0 = Instant::now();
                        e.write_batch(&chunk.items, true)?;
                        let dt = t0.elapsed();
                        lat.record(dt.as_nanos() as u64);
                        busy += dt;
                        done += m as u64;
                    }
                    Ok(Outcome {
                        ops: done,
                        busy,
                        user_bytes: done * entry,
                        note: "latency per 1,000-put batch".into(),
                    })
                });
                drop(e);
                row
            }
            Err(err) => na(cfg, "fillbatch", &err),
        };
        rows.push(row);
        let _ = fs::remove_dir_all(&dir);
    }

    if cfg.wants("reopen") {
        rows.push(reopen(cfg));
    }
    rows.extend(crate::concurrent::run(cfg));
    let _ = fs::remove_dir_all(&cfg.dir);
    rows
}

fn run_main(cfg: &ChildConfig, e: &mut dyn Engine, dir: &Path, rows: &mut Vec<Row>) {
    let ks = &cfg.ks;
    let n = ks.n;
    let entry = ks.entry_bytes();
    let secs = Duration::from_secs_f64(cfg.max_secs);
    let mut rng = Rng::new(ks.seed ^ 0x5EED);
    // The state the read workloads need: a failed fill makes them n/a.
    let mut broken: Option<String> = None;

    // fillrandom always runs when any main workload does: the others need its data.
    write_pass(cfg, "fillrandom", 1, 0, e, dir, rows, &mut broken);
    if !cfg.wants("fillrandom") {
        rows.pop();
    }
    if cfg.wants("overwrite") {
        write_pass(cfg, "overwrite", 2, 1, e, dir, rows, &mut broken);
    }

    let reads = cfg.reads.max(1);
    let read_workloads: [(&str, u8); 3] = [("readrandom", 0), ("readmissing", 1), ("readhot", 2)];
    for (name, kind) in read_workloads {
        if !cfg.wants(name) {
            continue;
        }
        if let Some(why) = broken.as_ref() {
            rows.push(na(cfg, name, why));
            continue;
        }
        let hot = (n / 100).max(1);
        let hot_perm = ks.permutation(1);
        let mut picks = Rng::new(ks.seed ^ kind as u64 ^ 0xAB);
        let deadline = Instant::now() + secs;
        let row = measure(cfg, name, e, dir, None, |lat, e| {
            let (ops, busy, found, bytes) = timed_reads(
                e,
                reads,
                |_, k| match kind {
                    0 => ks.key(picks.below(n), k),
                    1 => ks.missing_key(picks.below(n), k),
                    _ => ks.key(hot_perm.at(picks.below(hot)), k),
                },
                lat,
                deadline,
            )?;
            let expected = if kind == 1 { 0 } else { ops };
            if found != expected {
                return Err(format!(
                    "wrong answers: {found} of {ops} gets found a value, expected {expected}"
                ));
            }
            let user_bytes = if kind == 1 { ops * ks.key_size as u64 } else { bytes };
            let note = if kind == 2 { format!("hot set {hot} keys") } else { String::new() };
            Ok(Outcome { ops, busy, user_bytes, note })
        });
        rows.push(row);
    }

    if cfg.wants("mixed") {
        if let Some(why) = broken.as_ref() {
            rows.push(na(cfg, "mixed", why));
        } else {
            let deadline = Instant::now() + secs;
            let row = measure(cfg, "mixed", e, dir, Some(n * entry), |lat, e| {
                let mut chunk = Chunk::new();
                let mut is_write = vec![false; CHUNK];
                let (mut done, mut busy, mut bytes, mut writes) = (0u64, Duration::ZERO, 0u64, 0u64);
                while done < reads && Instant::now() < deadline {
                    let m = (reads - done).min(CHUNK as u64) as usize;
                    for ((k, v), w) in chunk.items.iter_mut().zip(is_write.iter_mut()).take(m) {
                        let id = rng.below(n);
                        ks.key(id, k);
                        *w = rng.below(10) == 0;
                        if *w {
                            ks.value(id, 2, v);
                        }
                    }
                    let t0 = Instant::now();
                    for ((k, v), &w) in chunk.items.iter().zip(is_write.iter()).take(m) {
                        lat.start();
                        if w {
                            e.put(k, v)?;
                        } else if e.get(k)?.is_none() {
                            return Err("mixed: a present key read as absent".into());
                        }
                        lat.stop();
                        bytes += entry;
                        writes += u64::from(w);
                    }
                    busy += t0.elapsed();
                    done += m as u64;
                }
                timed_sync(e, &mut busy)?;
                Ok(Outcome { ops: done, busy, user_bytes: bytes, note: format!("{writes} puts") })
            });
            rows.push(row);
        }
    }

    if cfg.wants("deleterandom") {
        if let Some(why) = broken.as_ref() {
            rows.push(na(cfg, "deleterandom", why));
        } else {
            let half = n / 2;
            let perm = ks.permutation(4);
            let row = measure(cfg, "deleterandom", e, dir, Some((n - half) * entry), |lat, e| {
                let (ops, mut busy) = timed_writes(e, ks, half, |i| perm.at(i), None, lat, None)?;
                timed_sync(e, &mut busy)?;
                Ok(Outcome { ops, busy, user_bytes: ops * ks.key_size as u64, note: "half the keys".into() })
            });
            rows.push(row);
        }
    }
}

/// Checks the order of the entries a scan visits and counts them and their bytes; every engine
/// pays the same for it.
struct Seen {
    /// The first key.
    first: Vec<u8>,
    /// The previous key.
    last: Vec<u8>,
    /// Entries seen.
    entries: u64,
    /// Key and value bytes seen.
    bytes: u64,
    /// The first entry out of order, if any.
    disorder: Option<String>,
}

impl Seen {
    fn new() -> Self {
        Seen { first: Vec::new(), last: Vec::with_capacity(64), entries: 0, bytes: 0, disorder: None }
    }

    /// Forgets what was seen, keeping the buffers.
    fn reset(&mut self) {
        self.first.clear();
        self.last.clear();
        self.entries = 0;
        self.bytes = 0;
        self.disorder = None;
    }

    /// Records one entry of a scan in `reverse` order or not.
    #[inline]
    fn entry(&mut self, k: &[u8], v: &[u8], reverse: bool) {
        if self.entries == 0 {
            self.first.extend_from_slice(k);
        } else if self.disorder.is_none() {
            let ordered = if reverse { k < self.last.as_slice() } else { k > self.last.as_slice() };
            if !ordered {
                self.disorder = Some(format!(
                    "{} after {}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(&self.last)
                ));
            }
        }
        self.last.clear();
        self.last.extend_from_slice(k);
        self.entries += 1;
        self.bytes += (k.len() + v.len()) as u64;
    }
}

/// Fills `scan/` with the dense keys (not timed), then runs the scan workloads over it.
fn run_scans(cfg: &ChildConfig, e: &mut dyn Engine, dir: &Path, base_rss: u64, rows: &mut Vec<Row>) {
    let ks = &cfg.ks;
    let n = ks.n;
    let wanted: Vec<&str> = SCANS.iter().copied().filter(|w| cfg.wants(w)).collect();
    // An engine without ordered reads says so on an empty scan: n/a, and no fill.
    if let Err(why) = e.scan(Bound::Unbounded, 1, false, &mut |_, _| true) {
        for w in wanted {
            rows.push(na(cfg, w, &why));
        }
        return;
    }
    let fill = (|| -> Result<(), String> {
        let perm = ks.permutation(1);
        let mut chunk = Chunk::new();
        let mut done = 0u64;
        while done < n {
            let m = (n - done).min(CHUNK as u64) as usize;
            for (j, (k, v)) in chunk.items.iter_mut().take(m).enumerate() {
                let id = perm.at(done + j as u64);
                ks.dense_key(id, k);
                ks.value(id, 0, v);
            }
            for (k, v) in chunk.items.iter().take(m) {
                e.put(k, v)?;
            }
            done += m as u64;
        }
        e.sync()
    })();
    if let Err(why) = fill {
        for w in wanted {
            rows.push(na(cfg, w, &format!("filling the scan database failed: {why}")));
        }
        return;
    }
    let budget = e.memory_budget(ks.entry_bytes());
    let secs = Duration::from_secs_f64(cfg.max_secs);
    let reads = cfg.reads.max(1);
    for w in wanted {
        let deadline = Instant::now() + secs;
        let mut row = match w {
            "readseq" | "readreverse" => {
                let reverse = w == "readreverse";
                measure(cfg, w, e, dir, None, |lat, e| {
                    let mut seen = Seen::new();
                    let mut stopped = false;
                    let t0 = Instant::now();
                    let mut mark = t0;
                    let visited = e.scan(Bound::Unbounded, reads, reverse, &mut |k, v| {
                        seen.entry(k, v, reverse);
                        // The clock every 1,000 entries: the latency columns are per 1,000.
                        if seen.entries.is_multiple_of(CHUNK as u64) {
                            let now = Instant::now();
                            lat.record(now.duration_since(mark).as_nanos() as u64);
                            mark = now;
                            if now >= deadline {
                                stopped = true;
                                return false;
                            }
                        }
                        true
                    })?;
                    let busy = t0.elapsed();
                    if let Some(d) = seen.disorder {
                        return Err(format!("out of order: {d}"));
                    }
                    let expected = reads.min(n);
                    if !stopped && (visited != expected || seen.entries != expected) {
                        return Err(format!("scanned {} entries, expected {expected}", seen.entries));
                    }
                    let mut first = Vec::new();
                    ks.dense_key(if reverse { n - 1 } else { 0 }, &mut first);
                    if seen.first != first {
                        return Err(format!("the scan began at {}", String::from_utf8_lossy(&seen.first)));
                    }
                    let cap = if stopped { "; stopped at the time cap" } else { "" };
                    let note = format!("entries/s; latency per 1,000 entries{cap}");
                    Ok(Outcome { ops: seen.entries, busy, user_bytes: seen.bytes, note })
                })
            }
            "seekrandom" => {
                let mut picks = Rng::new(ks.seed ^ 0x5EE4);
                measure(cfg, w, e, dir, None, |lat, e| {
                    let mut keys: Vec<(u64, Vec<u8>)> = (0..CHUNK).map(|_| (0, Vec::new())).collect();
                    let (mut busy, mut done, mut bytes) = (Duration::ZERO, 0u64, 0u64);
                    let mut seen = Seen::new();
                    while done < reads && Instant::now() < deadline {
                        let m = (reads - done).min(CHUNK as u64) as usize;
                        for (id, k) in keys.iter_mut().take(m) {
                            *id = picks.below(n);
                            ks.dense_key(*id, k);
                        }
                        let t0 = Instant::now();
                        for (id, k) in keys.iter().take(m) {
                            seen.reset();
                            lat.start();
                            e.scan(Bound::Included(k), SEEK_ENTRIES, false, &mut |key, v| {
                                seen.entry(key, v, false);
                                true
                            })?;
                            lat.stop();
                            let expected = SEEK_ENTRIES.min(n - id);
                            if seen.first != *k || seen.entries != expected || seen.disorder.is_some() {
                                return Err(format!(
                                    "seek to {}: {} entries from {} (expected {expected} from the key sought)",
                                    String::from_utf8_lossy(k),
                                    seen.entries,
                                    String::from_utf8_lossy(&seen.first)
                                ));
                            }
                            bytes += seen.bytes;
                        }
                        busy += t0.elapsed();
                        done += m as u64;
                    }
                    Ok(Outcome {
                        ops: done,
                        busy,
                        user_bytes: bytes,
                        note: format!("seeks/s; each a seek and {} nexts", SEEK_ENTRIES - 1),
                    })
                })
            }
            _ => {
                let mut picks = Rng::new(ks.seed ^ 0x9F1C);
                let groups = ks.groups();
                measure(cfg, w, e, dir, None, |lat, e| {
                    let mut prefixes: Vec<(u64, Vec<u8>)> = (0..CHUNK).map(|_| (0, Vec::new())).collect();
                    let (mut busy, mut done, mut bytes) = (Duration::ZERO, 0u64, 0u64);
                    let mut seen = Seen::new();
                    while done < reads && Instant::now() < deadline {
                        let m = (reads - done).min(CHUNK as u64) as usize;
                        for (expected, p) in prefixes.iter_mut().take(m) {
                            *expected = ks.group_prefix(picks.below(groups), p);
                        }
                        let t0 = Instant::now();
                        for (expected, p) in prefixes.iter().take(m) {
                            seen.reset();
                            lat.start();
                            e.prefix(p, &mut |k, v| {
                                seen.entry(k, v, false);
                                true
                            })?;
                            lat.stop();
                            if seen.entries != *expected || seen.disorder.is_some() {
                                return Err(format!(
                                    "prefix {}: {} entries, expected {expected}",
                                    String::from_utf8_lossy(p),
                                    seen.entries
                                ));
                            }
                            bytes += seen.bytes;
                        }
                        busy += t0.elapsed();
                        done += m as u64;
                    }
                    Ok(Outcome {
                        ops: done,
                        busy,
                        user_bytes: bytes,
                        note: format!("scans/s; {} keys per prefix", 100.min(n)),
                    })
                })
            }
        };
        row.base_rss_kib = Some(base_rss);
        row.budget_kib = budget.map(|b| b.div_ceil(1024));
        rows.push(row);
    }
}

/// One full write pass over the main database (fillrandom, overwrite); a failure makes the
/// workloads after it n/a.
#[allow(clippy::too_many_arguments)]
fn write_pass(
    cfg: &ChildConfig,
    name: &str,
    salt: u64,
    generation: u64,
    e: &mut dyn Engine,
    dir: &Path,
    rows: &mut Vec<Row>,
    broken: &mut Option<String>,
) {
    if let Some(why) = broken.as_ref() {
        rows.push(na(cfg, name, why));
        return;
    }
    let ks = &cfg.ks;
    let entry = ks.entry_bytes();
    let perm = ks.permutation(salt);
    let row = measure(cfg, name, e, dir, Some(ks.n * entry), |lat, e| {
        let (ops, mut busy) = timed_writes(e, ks, ks.n, |i| perm.at(i), Some(generation), lat, None)?;
        timed_sync(e, &mut busy)?;
        Ok(Outcome { ops, busy, user_bytes: ops * entry, note: String::new() })
    });
    if !row.error.is_empty() {
        *broken = Some(format!("{name} failed: {}", row.error));
    }
    rows.push(row);
}

/// `reopen`: a grandchild leaves `reopen_keys` keys in the WAL and exits without closing; this
/// child times the open and one get.
fn reopen(cfg: &ChildConfig) -> Row {
    let dir = cfg.dir.join("reopen");
    if let Err(e) = fresh_dir(&dir) {
        return na(cfg, "reopen", &e);
    }
    let keys = cfg.reopen_keys.min(cfg.ks.n).max(1);
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return na(cfg, "reopen", &format!("current_exe: {e}")),
    };
    let status = Command::new(exe)
        .arg("--reopen-writer")
        .arg(&cfg.engine)
        .arg("--dir")
        .arg(&dir)
        .args(["--keys", &keys.to_string()])
        .args(["--key-size", &cfg.ks.key_size.to_string()])
        .args(["--value-size", &cfg.ks.value_size.to_string()])
        .args(["--seed", &cfg.ks.seed.to_string()])
        .args(["--memtable-bytes", &cfg.memtable_bytes.to_string()])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return na(cfg, "reopen", &format!("writer exited with {s}")),
        Err(e) => return na(cfg, "reopen", &format!("writer: {e}")),
    }
    let disk = metrics::disk_bytes(&dir);
    let mut opened: Option<Box<dyn Engine>> = None;
    let mut row = measure_raw(cfg, "reopen", &dir, None, |lat| {
        let t0 = Instant::now();
        let mut e = engines::open(&cfg.engine, &dir, cfg.options(Mode::Relaxed))?;
        let mut k = Vec::new();
        cfg.ks.key(keys - 1, &mut k);
        let found = e.get(&k)?;
        let dt = t0.elapsed();
        lat.record(dt.as_nanos() as u64);
        if found.is_none() {
            return Err("reopen: the last written key is missing".into());
        }
        opened = Some(e);
        Ok(Outcome {
            ops: 1,
            busy: dt,
            user_bytes: 0,
            note: format!("{keys} keys left by a writer that exited without closing"),
        })
    });
    if let Some(s) = opened.as_ref().and_then(|e| e.stats()) {
        row.tables = Some(s.tables);
    }
    row.disk_bytes = disk;
    drop(opened);
    let _ = fs::remove_dir_all(&dir);
    row
}

/// The `reopen` writer: puts `ks.n` keys, syncs, and exits without dropping the engine (no
/// clean close: what a crash right after the sync leaves behind).
pub fn reopen_writer(engine: &str, dir: &Path, ks: &KeySpace, memtable_bytes: usize) -> Result<(), String> {
    let mut e = engines::open(engine, dir, EngineOptions { mode: Mode::Relaxed, memtable_bytes })?;
    let mut lat = Latency::new();
    let perm = ks.permutation(1);
    // Keys 0..n in a random order, and key n-1 last so the reader can check it.
    let last = ks.n - 1;
    let ids = |i: u64| {
        if i + 1 == ks.n {
            last
        } else {
            let p = perm.at(i);
            if p == last {
                perm.at(ks.n - 1)
            } else {
                p
            }
        }
    };
    timed_writes(e.as_mut(), ks, ks.n, ids, Some(0), &mut lat, None)?;
    e.sync()?;
    std::mem::forget(e);
    std::process::exit(0);
}
