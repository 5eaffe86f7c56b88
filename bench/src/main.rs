//! `minivault-bench`: db_bench's workloads over MiniVaultDB, its peers and the raw device, with
//! one Markdown report and PNG charts.
//!
//! The parent process runs nothing itself: for every scale, round and engine (engines interleaved,
//! their order rotated each round) it re-executes this binary with `--single-engine`, so that each
//! engine's peak RSS and I/O counters are its own and one engine's caches or background threads
//! cannot slow the next. It collects the children's rows, takes per-metric medians over the
//! rounds, and writes `results.tsv`, the charts and the generated part of the Markdown report.
//!
//! Modules: [`keys`] (key space, values, orders), [`engines`] (the [`engines::Engine`] trait and
//! one implementation per engine), [`workloads`] (the workloads, inside a child), [`sstables`]
//! (reads against the number of SSTables), [`metrics`] (`/proc`, disk usage, latency), [`row`]
//! (one measurement), [`report`] (medians and Markdown), [`charts`] (PNG).

mod aims;
mod charts;
mod concurrent;
mod engines;
mod keys;
mod metrics;
mod report;
mod row;
mod sstables;
mod workloads;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use keys::KeySpace;
use row::Row;

const USAGE: &str = "\
minivault-bench: db_bench-style workloads for MiniVaultDB and its peers

USAGE: minivault-bench [OPTIONS]

  --keys N[,N...]        key counts, one scale each (default 100000)
  --key-size B           bytes per key (default 16)
  --value-size B         bytes per value (default 100)
  --seed S               seed of key orders and values (default 42)
  --dir DIR              scratch directory for the databases (default target/bench-data)
  --engines LIST         comma-separated, from: minivault,fjall,redb,sled,rocksdb,rawfile,rawprealloc
                         (default: every compiled-in engine), and the opt-in MiniVaultDB variants
                         minivault-walpre64k and minivault-walpre0 (WAL preallocated in 64 KiB
                         steps, or not at all), minivault-inline (compactions inside writes,
                         no background threads), minivault-bigcache (a 192 MiB page cache
                         and no row cache: about the memory redb takes at 10^6 keys) and
                         minivault-lowpriority (compaction threads 10 nice levels down)
  --workloads LIST       comma-separated, from: fillseq,fillrandom,overwrite,readrandom,readmissing,
                         readhot,mixed,deleterandom,readseq,readreverse,seekrandom,prefix100,
                         fillsync,fillbatch,reopen, and on one shared handle fillsync1,fillsync4,
                         fillsync16 (durable puts by 1/4/16 threads) and readwhilewriting (4 reader
                         threads, 1 writer) (default: all)
  --rounds R             rounds per scale; medians are reported (default 3)
  --large-scale N        scales of N keys or more run --large-rounds rounds of --large-engines only
                         (default: off), so that 10^7 keys fits in an afternoon
  --large-rounds R       rounds at large scales (default 1)
  --large-engines LIST   engines at large scales (default: all of --engines)
  --large-workloads LIST workloads at large scales (default: all of --workloads)
  --memtable-mib M       write buffer of every engine, MiB (default 4, MiniVaultDB's default)
  --reads N              gets per read workload and ops of `mixed` (default: the key count)
  --max-secs S           time cap of each read and scan workload, `mixed` and `fillsync` (default 10)
  --sync-ops N           cap on fillsync's puts (default 20000; it does keys/10 at most)
  --write-rate N         cap on readwhilewriting's writer, puts per second (default 0: as fast
                         as it can), to compare reads at one write rate (db_bench's
                         --benchmark_write_rate_limit)
  --reopen-keys N        keys left in the WAL for `reopen` (default 100000)
  --sstables MAX         also sweep MiniVaultDB reads against 1..MAX SSTables (0 = off; default 128)
  --sst-keys N           keys per SSTable in the sweep (default 4000)
  --out DIR              results.tsv and PNG charts (default docs/bench)
  --doc FILE             Markdown file whose generated block is replaced (default docs/BENCHMARKS.md)
  --label TEXT           names the run in the report (default: none)
  --report-only          rebuild the report and charts from DIR/results.tsv without running
  --ab-report DIR        compare two builds run side by side (scripts/bench.sh --ab): reads
                         DIR/base.tsv and DIR/main.tsv, writes the comparison into --doc's
                         generated block (default DIR/README.md); --label names the builds
                         (BASE,MAIN; default base,main)
  -h, --help             this text
";

/// Parsed command line.
#[derive(Debug, Clone)]
struct Args {
    keys: Vec<u64>,
    key_size: usize,
    value_size: usize,
    seed: u64,
    dir: PathBuf,
    engines: Vec<String>,
    workloads: Vec<String>,
    rounds: u32,
    large_scale: u64,
    large_rounds: u32,
    large_engines: Option<Vec<String>>,
    large_workloads: Option<Vec<String>>,
    memtable_bytes: usize,
    reads: Option<u64>,
    max_secs: f64,
    sync_ops: u64,
    write_rate: u64,
    reopen_keys: u64,
    sst_tables: u64,
    sst_keys: u64,
    out: PathBuf,
    doc: PathBuf,
    label: String,
    report_only: bool,
    ab_report: Option<PathBuf>,
    doc_given: bool,
    // Internal (child processes).
    single_engine: Option<String>,
    reopen_writer: Option<String>,
    sstable_sweep: bool,
    round: u32,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            keys: vec![100_000],
            key_size: 16,
            value_size: 100,
            seed: 42,
            dir: PathBuf::from("target/bench-data"),
            engines: engines::ALL
                .iter()
                .filter(|e| engines::available(e) && !engines::opt_in(e))
                .map(|s| s.to_string())
                .collect(),
            workloads: workloads::ALL.iter().map(|s| s.to_string()).collect(),
            rounds: 3,
            large_scale: u64::MAX,
            large_rounds: 1,
            large_engines: None,
            large_workloads: None,
            memtable_bytes: 4 << 20,
            reads: None,
            max_secs: 10.0,
            sync_ops: 20_000,
            write_rate: 0,
            reopen_keys: 100_000,
            sst_tables: 128,
            sst_keys: 4000,
            out: PathBuf::from("docs/bench"),
            doc: PathBuf::from("docs/BENCHMARKS.md"),
            label: String::new(),
            report_only: false,
            ab_report: None,
            doc_given: false,
            single_engine: None,
            reopen_writer: None,
            sstable_sweep: false,
            round: 0,
        }
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("keys") => {
                let v: String = p.value()?.parse()?;
                a.keys = v
                    .split(',')
                    .map(|x| x.trim().replace('_', "").parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--keys: {e}"))?;
            }
            Long("key-size") => a.key_size = p.value()?.parse()?,
            Long("value-size") => a.value_size = p.value()?.parse()?,
            Long("seed") => a.seed = p.value()?.parse()?,
            Long("dir") => a.dir = p.value()?.into(),
            Long("engines") => a.engines = list(&p.value()?.parse::<String>()?),
            Long("workloads") => a.workloads = list(&p.value()?.parse::<String>()?),
            Long("rounds") => a.rounds = p.value()?.parse()?,
            Long("large-scale") => {
                let v: String = p.value()?.parse()?;
                a.large_scale = v.replace('_', "").parse().map_err(|e| format!("--large-scale: {e}"))?;
            }
            Long("large-rounds") => a.large_rounds = p.value()?.parse()?,
            Long("large-engines") => a.large_engines = Some(list(&p.value()?.parse::<String>()?)),
            Long("large-workloads") => a.large_workloads = Some(list(&p.value()?.parse::<String>()?)),
            Long("memtable-mib") => a.memtable_bytes = p.value()?.parse::<usize>()? << 20,
            Long("memtable-bytes") => a.memtable_bytes = p.value()?.parse()?,
            Long("reads") => a.reads = Some(p.value()?.parse()?),
            Long("max-secs") => a.max_secs = p.value()?.parse()?,
            Long("sync-ops") => a.sync_ops = p.value()?.parse()?,
            Long("write-rate") => a.write_rate = p.value()?.parse()?,
            Long("reopen-keys") => a.reopen_keys = p.value()?.parse()?,
            Long("sstables") => a.sst_tables = p.value()?.parse()?,
            Long("sst-keys") => a.sst_keys = p.value()?.parse()?,
            Long("out") => a.out = p.value()?.into(),
            Long("doc") => {
                a.doc = p.value()?.into();
                a.doc_given = true;
            }
            Long("label") => a.label = p.value()?.parse()?,
            Long("report-only") => a.report_only = true,
            Long("ab-report") => a.ab_report = Some(p.value()?.into()),
            Long("single-engine") => a.single_engine = Some(p.value()?.parse()?),
            Long("reopen-writer") => a.reopen_writer = Some(p.value()?.parse()?),
            Long("sstable-sweep") => a.sstable_sweep = true,
            Long("round") => a.round = p.value()?.parse()?,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if a.keys.is_empty() || a.keys.contains(&0) {
        return Err("--keys must be positive".into());
    }
    if a.key_size < 8 || a.key_size > 1024 {
        return Err("--key-size must be 8..=1024 (keys are zero-padded decimal numbers)".into());
    }
    for w in a.workloads.iter().chain(a.large_workloads.iter().flatten()) {
        if !workloads::ALL.contains(&w.as_str()) {
            return Err(format!("unknown workload {w}").into());
        }
    }
    for e in a.engines.iter().chain(a.large_engines.iter().flatten()) {
        if !engines::ALL.contains(&e.as_str()) {
            return Err(format!("unknown engine {e}").into());
        }
    }
    Ok(a)
}

fn keyspace(a: &Args, n: u64) -> KeySpace {
    KeySpace { n, key_size: a.key_size, value_size: a.value_size, seed: a.seed }
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("minivault-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(engine) = &a.reopen_writer {
        let n = a.keys[0];
        return match workloads::reopen_writer(engine, &a.dir, &keyspace(&a, n), a.memtable_bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("reopen writer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(engine) = &a.single_engine {
        return child(&a, engine);
    }
    if let Some(dir) = &a.ab_report {
        return match ab_report(&a, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minivault-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if a.sstable_sweep {
        let cfg = sstables::SweepConfig {
            dir: a.dir.clone(),
            ks: keyspace(&a, 0),
            keys_per_table: a.sst_keys,
            max_tables: a.sst_tables,
            gets: a.reads.unwrap_or(20_000),
            max_secs: a.max_secs,
            round: a.round,
        };
        return match sstables::run_sweep(&cfg) {
            Ok(rows) => {
                for r in rows {
                    println!("{}", r.encode());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                let mut r = Row::new("minivault", 0, "sst-present", a.round);
                r.error = e;
                println!("{}", r.encode());
                ExitCode::SUCCESS
            }
        };
    }
    match parent(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minivault-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A child: one engine, one scale, one round, every workload; rows on standard output.
fn child(a: &Args, engine: &str) -> ExitCode {
    let n = a.keys[0];
    let cfg = workloads::ChildConfig {
        engine: engine.to_string(),
        ks: keyspace(a, n),
        dir: a.dir.clone(),
        round: a.round,
        memtable_bytes: a.memtable_bytes,
        reads: a.reads.unwrap_or(n),
        max_secs: a.max_secs,
        sync_ops: a.sync_ops,
        write_rate: a.write_rate,
        reopen_keys: a.reopen_keys,
        workloads: a.workloads.clone(),
    };
    for r in workloads::run_child(&cfg) {
        println!("{}", r.encode());
    }
    ExitCode::SUCCESS
}

/// Runs one child and collects its rows; a crash becomes n/a rows for what it did not report.
fn spawn(
    a: &Args,
    extra: &[String],
    workloads: &[String],
    expect: &[(String, String)],
    n: u64,
    round: u32,
) -> Vec<Row> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("minivault-bench"));
    let mut cmd = Command::new(exe);
    cmd.args(extra)
        .args(["--keys", &n.to_string()])
        .args(["--key-size", &a.key_size.to_string()])
        .args(["--value-size", &a.value_size.to_string()])
        .args(["--seed", &a.seed.to_string()])
        .args(["--round", &round.to_string()])
        .args(["--memtable-bytes", &a.memtable_bytes.to_string()])
        .args(["--max-secs", &a.max_secs.to_string()])
        .args(["--sync-ops", &a.sync_ops.to_string()])
        .args(["--write-rate", &a.write_rate.to_string()])
        .args(["--reopen-keys", &a.reopen_keys.to_string()])
        .args(["--sstables", &a.sst_tables.to_string()])
        .args(["--sst-keys", &a.sst_keys.to_string()])
        .args(["--workloads", &workloads.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(r) = a.reads {
        cmd.args(["--reads", &r.to_string()]);
    }
    let mut rows = Vec::new();
    let status = match cmd.spawn() {
        Ok(mut c) => {
            if let Some(out) = c.stdout.take() {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    match Row::decode(&line) {
                        Some(r) => rows.push(r),
                        None => eprintln!("{line}"),
                    }
                }
            }
            c.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
        }
        Err(e) => format!("spawn failed: {e}"),
    };
    for (engine, w) in expect {
        if !rows.iter().any(|r| &r.engine == engine && &r.workload == w) {
            let mut r = Row::new(engine, n, w, round);
            r.error = format!("child process died ({status})");
            rows.push(r);
        }
    }
    rows
}

fn parent(a: &Args) -> Result<(), String> {
    let results_path = a.out.join("results.tsv");
    std::fs::create_dir_all(&a.out).map_err(|e| format!("create {}: {e}", a.out.display()))?;
    let (meta, rows) = if a.report_only {
        report::read_results(&results_path)?
    } else {
        let started = Instant::now();
        let meta = report::Meta::collect(a.label.clone(), &a.dir, settings(a));
        let mut rows = Vec::new();
        for e in &a.engines {
            if !engines::available(e) {
                for &n in &a.keys {
                    for w in &a.workloads {
                        let mut r = Row::new(e, n, w, 0);
                        r.error = format!("not built (cargo feature `{e}` off)");
                        rows.push(r);
                    }
                }
            }
        }
        let all_engines: Vec<&String> = a.engines.iter().filter(|e| engines::available(e)).collect();
        for &n in &a.keys {
            let large = n >= a.large_scale;
            let engines: Vec<&String> = match &a.large_engines {
                Some(only) if large => all_engines.iter().copied().filter(|e| only.contains(e)).collect(),
                _ => all_engines.clone(),
            };
            let rounds = if large { a.large_rounds } else { a.rounds };
            let workloads = match &a.large_workloads {
                Some(only) if large => only,
                _ => &a.workloads,
            };
            for round in 0..rounds {
                for i in 0..engines.len() {
                    let e = engines[(i + round as usize) % engines.len()];
                    eprintln!(
                        "[{:>6.0}s] keys={n} round={} engine={e}",
                        started.elapsed().as_secs_f64(),
                        round + 1
                    );
                    let dir = a.dir.join(format!("{e}-{n}"));
                    let extra = vec![
                        "--single-engine".to_string(),
                        e.clone(),
                        "--dir".into(),
                        dir.display().to_string(),
                    ];
                    let expect: Vec<(String, String)> =
                        workloads.iter().map(|w| (e.clone(), w.clone())).collect();
                    rows.extend(spawn(a, &extra, workloads, &expect, n, round));
                }
            }
        }
        if a.sst_tables > 0 && all_engines.iter().any(|e| e.as_str() == "minivault") {
            for round in 0..a.rounds {
                eprintln!("[{:>6.0}s] sstables sweep round={}", started.elapsed().as_secs_f64(), round + 1);
                let dir = a.dir.join("sstables");
                let extra = vec!["--sstable-sweep".to_string(), "--dir".into(), dir.display().to_string()];
                rows.extend(spawn(a, &extra, &a.workloads, &[], 1, round));
            }
        }
        eprintln!("[{:>6.0}s] done", started.elapsed().as_secs_f64());
        report::write_results(&results_path, &meta, &rows)?;
        (meta, rows)
    };
    let charts = charts::draw_all(&a.out, &rows).unwrap_or_else(|e| {
        eprintln!("charts: {e}");
        Vec::new()
    });
    let md =
        report::markdown(&meta, &rows, &charts, &relative(&a.out, a.doc.parent().unwrap_or(Path::new("."))));
    report::splice_into(&a.doc, &md)?;
    eprintln!(
        "wrote {}, {} and {} charts in {}",
        a.doc.display(),
        results_path.display(),
        charts.len(),
        a.out.display()
    );
    Ok(())
}

/// `--ab-report DIR`: the two builds' rows side by side, into `--doc` (default DIR/README.md).
fn ab_report(a: &Args, dir: &Path) -> Result<(), String> {
    let (_, base) = report::read_results(&dir.join("base.tsv"))?;
    let (_, main) = report::read_results(&dir.join("main.tsv"))?;
    let labels = if a.label.is_empty() { "base,main".to_string() } else { a.label.clone() };
    let (b, m) = labels.split_once(',').unwrap_or(("base", "main"));
    let md = report::ab_markdown(b.trim(), m.trim(), &base, &main);
    let doc = if a.doc_given { a.doc.clone() } else { dir.join("README.md") };
    report::splice_into(&doc, &md)?;
    eprintln!("wrote {}", doc.display());
    Ok(())
}

/// The run's settings as (name, value) pairs for the report.
fn settings(a: &Args) -> Vec<(String, String)> {
    let mut s = vec![
        ("keys".into(), a.keys.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
        ("key / value size".into(), format!("{} B / {} B", a.key_size, a.value_size)),
        ("seed".into(), a.seed.to_string()),
        ("engines".into(), a.engines.join(", ")),
        ("rounds".into(), a.rounds.to_string()),
    ];
    if a.large_scale != u64::MAX {
        let engines = a.large_engines.as_ref().map_or("all".to_string(), |e| e.join(", "));
        let workloads = a.large_workloads.as_ref().map_or("all".to_string(), |w| w.join(", "));
        s.push((
            format!("at {} keys or more", a.large_scale),
            format!("{} round(s); engines: {engines}; workloads: {workloads}", a.large_rounds),
        ));
    }
    s.extend([
        ("write buffer (MemTable) per engine".into(), format!("{} MiB", a.memtable_bytes >> 20)),
        ("gets per read workload".into(), a.reads.map_or("= keys".to_string(), |r| r.to_string())),
        ("time cap (reads, scans, mixed, fillsync)".into(), format!("{} s", a.max_secs)),
        ("fillsync puts".into(), format!("min(keys / 10, {})", a.sync_ops)),
        (
            "readwhilewriting's writer".into(),
            if a.write_rate == 0 {
                "as fast as it can".to_string()
            } else {
                format!("at most {} puts/s", a.write_rate)
            },
        ),
        ("reopen keys".into(), format!("min(keys, {})", a.reopen_keys)),
    ]);
    if a.sst_tables > 0 {
        s.push(("SSTable sweep".into(), format!("up to {} tables of {} keys", a.sst_tables, a.sst_keys)));
    }
    s
}

/// `to` relative to `from` when `to` lies below it (for links from the report to the charts).
fn relative(to: &Path, from: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, f) = (abs(to), abs(from));
    match t.strip_prefix(&f) {
        Ok(rest) => rest.display().to_string(),
        Err(_) => t.display().to_string(),
    }
}
