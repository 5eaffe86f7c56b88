//! `minivault-bench-outbox`: MiniVaultDB's outbox against the same outbox on SQLite, in one run.
//!
//! The peer is what gateways build today: SQLite in WAL mode with `synchronous=FULL`, a table
//! with an autoincrement key for the records and a table of cursors, through `rusqlite` (SQLite
//! compiled in). Both are durable at every commit: MiniVaultDB with `Durability::Always` (an
//! `fdatasync` per append or batch), SQLite with `synchronous=FULL` (a sync of its WAL per
//! transaction). Records are 100-byte readings on one stream.
//!
//! Workloads, each on a fresh directory, engines interleaved and their order alternated per
//! round; the report gives the median of the rounds:
//!
//! - `append, durable each`: one append per commit, from one thread, and from four threads at
//!   once (each call durable before it returns; MiniVaultDB's outbox commits the appends that
//!   arrive together in one write, SQLite serialises its writers);
//! - `append, durable per 1,000`: batches of 1,000 appends, one commit each;
//! - `consume`: read 64 records after the cursor, acknowledge them (store the cursor, trim),
//!   until the stream is empty: what a forwarder costs the store, without a network;
//! - `drain to the broker` (MiniVaultDB): the forwarder (`minivault::forward`) publishing every
//!   record to a local Mosquitto with QoS 1, cursor stored after the PUBACKs, until drained;
//! - `space under a cap`: ten times the cap appended in batches of 100 while nothing is
//!   acknowledged: MiniVaultDB with `max_bytes` and `WhenFull::DropOldest` (and MemTables of a
//!   sixteenth of the cap, the smallest a cap takes), the files sampled every batch; the peer
//!   keeps as many rows as fit the cap by deleting the oldest (what a gateway has to do by
//!   hand), its database and WAL files sampled the same way; at the end, the records each
//!   engine still holds.
//!
//! Each round's figures go to stderr as they are measured; the table on stdout has the medians.
//!
//! `cargo run --release -p minivault-bench-outbox -- --help` lists the options;
//! `scripts/bench-outbox.sh` runs it as `docs/BENCHMARKS.md` quotes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use minivault::forward::{ForwardOptions, Forwarder};
use minivault::outbox::Outbox;
use minivault::{Durability, Options, WhenFull};
use rusqlite::{params, Connection};

const USAGE: &str = "\
minivault-bench-outbox: MiniVaultDB's outbox against the same outbox on SQLite

USAGE: minivault-bench-outbox [OPTIONS]

  --dir DIR            scratch directory (default target/bench-outbox; on the disk to measure)
  --rounds R           rounds, engines interleaved; medians are reported (default 3)
  --sync-records N     appends of the durable-each workload (default 3000)
  --records N          records of the batch, consume and drain workloads (default 200000)
  --cap-mib M          the space cap (default 4); ten times it is written
  --no-drain           skip the drain to Mosquitto
  --fleet K            also drain K gateways' outboxes (forwarders in this process, --records
                       split among them) into the one broker at once: its aggregate rate
  -h, --help           this text
";

const STREAM: &[u8] = b"telemetry";
const VALUE_LEN: usize = 100;

#[derive(Debug, Clone)]
struct Args {
    dir: PathBuf,
    rounds: usize,
    sync_records: u64,
    records: u64,
    cap: u64,
    drain: bool,
    fleet: u64,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        dir: PathBuf::from("target/bench-outbox"),
        rounds: 3,
        sync_records: 3000,
        records: 200_000,
        cap: 4 << 20,
        drain: true,
        fleet: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number =
            |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--dir" => a.dir = PathBuf::from(value("--dir")?),
            "--rounds" => a.rounds = number("--rounds", value("--rounds")?)?.max(1) as usize,
            "--sync-records" => a.sync_records = number("--sync-records", value("--sync-records")?)?.max(1),
            "--records" => a.records = number("--records", value("--records")?)?.max(1000),
            "--cap-mib" => a.cap = number("--cap-mib", value("--cap-mib")?)?.max(1) << 20,
            "--no-drain" => a.drain = false,
            "--fleet" => a.fleet = number("--fleet", value("--fleet")?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(a))
}

fn reading(seq: u64) -> Vec<u8> {
    let mut v = format!("{{\"sensor\":{},\"seq\":{seq},\"temp\":{}.{}}}", seq % 16, 20 + seq % 7, seq % 10)
        .into_bytes();
    v.resize(VALUE_LEN, b' ');
    v
}

/// An outbox under test.
trait Peer {
    fn append(&mut self, value: &[u8]) -> u64;
    fn append_batch(&mut self, values: &[Vec<u8>]);
    /// Reads up to `limit` records after the cursor and acknowledges them; how many.
    fn consume(&mut self, limit: usize) -> usize;
    /// Bytes its files take.
    fn file_bytes(&self) -> u64;
    /// Records it holds (not yet trimmed, evicted or deleted).
    fn records(&self) -> u64;
    /// What the engine did meanwhile, for the per-round log.
    fn note(&self) -> String {
        String::new()
    }
}

struct MiniVault {
    outbox: Outbox,
}

impl MiniVault {
    fn open(dir: &Path, cap: Option<u64>) -> MiniVault {
        let options = Options {
            durability: Durability::Always,
            // A cap must hold 16 MemTables: under one, MemTables of a sixteenth of it.
            memtable_bytes: cap.map_or(4 << 20, |c| (c / 16) as usize),
            max_bytes: cap,
            when_full: if cap.is_some() { WhenFull::DropOldest } else { WhenFull::RefuseWrites },
            ..Options::default()
        };
        MiniVault { outbox: Outbox::open(dir, options).expect("open MiniVaultDB") }
    }
}

impl Peer for MiniVault {
    fn append(&mut self, value: &[u8]) -> u64 {
        self.outbox.append(STREAM, value).expect("append")
    }
    fn append_batch(&mut self, values: &[Vec<u8>]) {
        self.outbox.append_batch(STREAM, values).expect("append_batch");
    }
    fn consume(&mut self, limit: usize) -> usize {
        let from = self.outbox.cursor(STREAM, b"bench").expect("cursor") + 1;
        let records = self.outbox.read_bounded(STREAM, from, limit, 1 << 20).expect("read");
        if let Some(last) = records.last() {
            self.outbox.ack(STREAM, b"bench", last.seq).expect("ack");
        }
        records.len()
    }
    fn file_bytes(&self) -> u64 {
        self.outbox.db().stats().file_bytes
    }
    fn records(&self) -> u64 {
        self.outbox.stats(STREAM).expect("stats").records
    }
    fn note(&self) -> String {
        let s = self.outbox.db().stats();
        format!(" (flushes {}, compactions {})", s.flushes, s.compactions)
    }
}

struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// Rows kept at most (the space workload), deleting the oldest.
    max_rows: Option<u64>,
}

impl Sqlite {
    fn open(dir: &Path, max_rows: Option<u64>) -> Sqlite {
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join("outbox.sqlite");
        let conn = Connection::open(&path).expect("open SQLite");
        conn.pragma_update(None, "journal_mode", "WAL").expect("WAL");
        conn.pragma_update(None, "synchronous", "FULL").expect("synchronous");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, payload BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS cursors (stream TEXT NOT NULL, consumer TEXT NOT NULL, acked INTEGER NOT NULL, PRIMARY KEY (stream, consumer));",
        )
        .expect("schema");
        Sqlite { conn, path, max_rows }
    }

    fn insert(&self, value: &[u8]) -> u64 {
        let mut st = self
            .conn
            .prepare_cached("INSERT INTO outbox (stream, payload) VALUES (?1, ?2)")
            .expect("prepare");
        st.execute(params!["telemetry", value]).expect("insert");
        self.conn.last_insert_rowid() as u64
    }

    fn enforce_rows(&self) {
        if let Some(max) = self.max_rows {
            let mut st = self
                .conn
                .prepare_cached("DELETE FROM outbox WHERE seq <= (SELECT MAX(seq) FROM outbox) - ?1")
                .expect("prepare");
            st.execute(params![max as i64]).expect("delete oldest");
        }
    }
}

impl Peer for Sqlite {
    fn append(&mut self, value: &[u8]) -> u64 {
        self.insert(value)
    }
    fn append_batch(&mut self, values: &[Vec<u8>]) {
        self.conn.execute_batch("BEGIN").expect("begin");
        for v in values {
            self.insert(v);
        }
        self.enforce_rows();
        self.conn.execute_batch("COMMIT").expect("commit");
    }
    fn consume(&mut self, limit: usize) -> usize {
        let acked: i64 = self
            .conn
            .query_row(
                "SELECT acked FROM cursors WHERE stream = 'telemetry' AND consumer = 'bench'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, payload FROM outbox WHERE stream = 'telemetry' AND seq > ?1 ORDER BY seq LIMIT ?2")
            .expect("prepare");
        let rows: Vec<(i64, Vec<u8>)> = st
            .query_map(params![acked, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("select")
            .collect::<Result<_, _>>()
            .expect("rows");
        drop(st);
        if let Some(&(last, _)) = rows.last() {
            self.conn.execute_batch("BEGIN").expect("begin");
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO cursors (stream, consumer, acked) VALUES ('telemetry', 'bench', ?1)",
                    params![last],
                )
                .expect("cursor");
            self.conn
                .execute("DELETE FROM outbox WHERE stream = 'telemetry' AND seq <= ?1", params![last])
                .expect("trim");
            self.conn.execute_batch("COMMIT").expect("commit");
        }
        rows.len()
    }
    fn file_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum()
    }
    fn records(&self) -> u64 {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)).expect("count");
        n as u64
    }
}

/// What one workload measured for one engine in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    per_sec: f64,
    /// Appends per write (MiniVaultDB's group commit).
    per_write: f64,
    peak_bytes: u64,
    end_bytes: u64,
    /// Records appended and held at the end (the space workload).
    appended: u64,
    end_records: u64,
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn open(engine: &str, dir: &Path, cap: Option<u64>) -> Box<dyn Peer> {
    match engine {
        "MiniVaultDB" => Box::new(MiniVault::open(dir, cap)),
        _ => Box::new(Sqlite::open(dir, cap.map(|c| c / (VALUE_LEN as u64 + 40)))),
    }
}

/// `n` durable appends from `threads` threads at once (each its own connection for SQLite, a
/// clone of the outbox for MiniVaultDB).
fn append_each_threads(engine: &str, dir: &Path, n: u64, threads: u64) -> Measure {
    let d = fresh(dir, "each-threads");
    let per = n / threads;
    let start = Instant::now();
    if engine == "MiniVaultDB" {
        let outbox = MiniVault::open(&d, None).outbox;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        outbox.append(STREAM, &reading(t * per + i)).expect("append");
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().expect("writer"));
        let (appends, writes) = outbox.group_commit_counts();
        let per_sec = (per * threads) as f64 / start.elapsed().as_secs_f64();
        return Measure { per_sec, per_write: appends as f64 / writes.max(1) as f64, ..Measure::default() };
    } else {
        drop(Sqlite::open(&d, None));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let peer = Sqlite::open(&d, None);
                    peer.conn.busy_timeout(Duration::from_secs(60)).expect("busy_timeout");
                    for i in 0..per {
                        peer.insert(&reading(t * per + i));
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().expect("writer"));
    }
    Measure { per_sec: (per * threads) as f64 / start.elapsed().as_secs_f64(), ..Measure::default() }
}

fn append_each(engine: &str, dir: &Path, n: u64) -> Measure {
    let mut peer = open(engine, &fresh(dir, "each"), None);
    let start = Instant::now();
    for seq in 1..=n {
        peer.append(&reading(seq));
    }
    Measure { per_sec: n as f64 / start.elapsed().as_secs_f64(), ..Measure::default() }
}

/// Appends `n` in batches of 1,000 (measured), then consumes them all (measured); what the
/// engine did meanwhile ([`Peer::note`]).
fn batch_then_consume(engine: &str, dir: &Path, n: u64) -> (Measure, Measure, String) {
    let mut peer = open(engine, &fresh(dir, "batch"), None);
    let start = Instant::now();
    let mut seq = 0;
    while seq < n {
        let values: Vec<Vec<u8>> = (seq + 1..=(seq + 1000).min(n)).map(reading).collect();
        seq += values.len() as u64;
        peer.append_batch(&values);
    }
    let batch = Measure { per_sec: n as f64 / start.elapsed().as_secs_f64(), ..Measure::default() };
    let start = Instant::now();
    let mut consumed = 0;
    loop {
        let got = peer.consume(64);
        if got == 0 {
            break;
        }
        consumed += got as u64;
    }
    assert_eq!(consumed, n, "{engine} consumed {consumed} of {n}");
    let consume = Measure { per_sec: n as f64 / start.elapsed().as_secs_f64(), ..Measure::default() };
    (batch, consume, peer.note())
}

fn space(engine: &str, dir: &Path, cap: u64) -> Measure {
    let mut peer = open(engine, &fresh(dir, "space"), Some(cap));
    let (mut seq, mut peak) = (0u64, 0u64);
    while seq * VALUE_LEN as u64 <= 10 * cap {
        let values: Vec<Vec<u8>> = (seq + 1..=seq + 100).map(reading).collect();
        seq += 100;
        peer.append_batch(&values);
        peak = peak.max(peer.file_bytes());
    }
    Measure {
        peak_bytes: peak,
        end_bytes: peer.file_bytes(),
        appended: seq,
        end_records: peer.records(),
        ..Measure::default()
    }
}

fn drain(dir: &Path, n: u64, broker: &minivault_suite::mosquitto::Broker) -> Measure {
    let d = fresh(dir, "drain");
    let outbox =
        Outbox::open(&d, Options { durability: Durability::Always, ..Options::default() }).expect("open");
    let mut seq = 0;
    while seq < n {
        let values: Vec<Vec<u8>> = (seq + 1..=(seq + 1000).min(n)).map(reading).collect();
        seq += values.len() as u64;
        outbox.append_batch(STREAM, &values).expect("append");
    }
    let start = Instant::now();
    let forwarder = Forwarder::spawn(
        outbox.clone(),
        ForwardOptions::new(STREAM, "127.0.0.1", broker.port(), "bench/telemetry"),
    )
    .expect("forwarder");
    while !forwarder.drained().expect("drained") {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "not drained in 10 min: {:?}",
            forwarder.progress()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    forwarder.stop().expect("stop");
    Measure { per_sec: n as f64 / elapsed.as_secs_f64(), ..Measure::default() }
}

/// `k` gateways (an outbox and a forwarder each, in this process) drain `n` records in all into
/// one broker at once: records/s in all.
fn fleet(dir: &Path, n: u64, k: u64, broker: &minivault_suite::mosquitto::Broker) -> Measure {
    let per = n / k;
    let outboxes: Vec<Outbox> = (0..k)
        .map(|g| {
            let d = fresh(dir, &format!("fleet-{g}"));
            let outbox = Outbox::open(&d, Options { durability: Durability::Always, ..Options::default() })
                .expect("open");
            let mut seq = 0;
            while seq < per {
                let values: Vec<Vec<u8>> = (seq + 1..=(seq + 1000).min(per)).map(reading).collect();
                seq += values.len() as u64;
                outbox.append_batch(STREAM, &values).expect("append");
            }
            outbox
        })
        .collect();
    let start = Instant::now();
    let forwarders: Vec<Forwarder> = outboxes
        .iter()
        .enumerate()
        .map(|(g, o)| {
            let topic = format!("fleet/{g}/telemetry");
            let mut options = ForwardOptions::new(STREAM, "127.0.0.1", broker.port(), topic);
            options.client_id = format!("gateway-{g}");
            Forwarder::spawn(o.clone(), options).expect("forwarder")
        })
        .collect();
    for f in &forwarders {
        while !f.drained().expect("drained") {
            assert!(start.elapsed() < Duration::from_secs(900), "fleet not drained: {:?}", f.progress());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let elapsed = start.elapsed();
    for f in forwarders {
        f.stop().expect("stop");
    }
    Measure { per_sec: (per * k) as f64 / elapsed.as_secs_f64(), ..Measure::default() }
}

/// The median; of an even count, the mean of the middle two (not the upper one, which made the
/// "median" of two rounds their maximum).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("minivault-bench-outbox: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let broker = if args.drain {
        match minivault_suite::mosquitto::Broker::start() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("minivault-bench-outbox: no Mosquitto ({e}): run scripts/mosquitto.sh, or pass --no-drain");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let engines = ["MiniVaultDB", "SQLite"];
    // results[workload][engine] = one Measure per round
    let mut each: [Vec<Measure>; 2] = Default::default();
    let mut each4: [Vec<Measure>; 2] = Default::default();
    let mut batch: [Vec<Measure>; 2] = Default::default();
    let mut consume: [Vec<Measure>; 2] = Default::default();
    let mut space_m: [Vec<Measure>; 2] = Default::default();
    let mut drains = Vec::new();
    let mut fleets = Vec::new();
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for &e in &order {
            let engine = engines[e];
            eprintln!("round {}/{}: {engine}", round + 1, args.rounds);
            let one = append_each(engine, &args.dir, args.sync_records);
            let four = append_each_threads(engine, &args.dir, args.sync_records, 4);
            let (b, c, note) = batch_then_consume(engine, &args.dir, args.records);
            let s = space(engine, &args.dir, args.cap);
            // Every round's figures, so the spread behind the medians is on record.
            eprintln!(
                "  each {:.0}/s, 4 threads {:.0}/s ({:.2} per write), per 1,000 {:.0}/s, consume {:.0}/s{note}, \
                 space peak {} end {} holding {} records",
                one.per_sec,
                four.per_sec,
                four.per_write,
                b.per_sec,
                c.per_sec,
                mib(s.peak_bytes),
                mib(s.end_bytes),
                s.end_records
            );
            each[e].push(one);
            each4[e].push(four);
            batch[e].push(b);
            consume[e].push(c);
            space_m[e].push(s);
        }
        if let Some(broker) = &broker {
            let d = drain(&args.dir, args.records, broker);
            eprintln!("  drain {:.0}/s", d.per_sec);
            drains.push(d);
            if args.fleet > 0 {
                let f = fleet(&args.dir, args.records, args.fleet, broker);
                eprintln!("  fleet of {} {:.0}/s in all", args.fleet, f.per_sec);
                fleets.push(f);
            }
        }
    }
    let rate = |m: &[Measure]| median(m.iter().map(|m| m.per_sec).collect());
    println!(
        "{} rounds; {} B records; durable each: {} appends; batch, consume, drain: {} records; cap {}\n",
        args.rounds,
        VALUE_LEN,
        args.sync_records,
        args.records,
        mib(args.cap)
    );
    println!("| workload | MiniVaultDB | SQLite (WAL, synchronous=FULL) | ratio |");
    println!("|---|---|---|---|");
    for (name, m) in [
        ("append, durable each, 1 thread (appends/s)", &each),
        ("append, durable each, 4 threads (appends/s)", &each4),
        ("append, durable per 1,000 (appends/s)", &batch),
        ("consume: read 64 + ack, durable (records/s)", &consume),
    ] {
        let (a, b) = (rate(&m[0]), rate(&m[1]));
        println!("| {name} | {:.0} | {:.0} | {:.2}x |", a, b, a / b);
    }
    let per_write = median(each4[0].iter().map(|m| m.per_write).collect());
    println!("| appends per write, 4 threads (group commit) | {per_write:.2} | 1 | – |");
    if !drains.is_empty() {
        println!(
            "| drain to the local Mosquitto, QoS 1, cursor after PUBACK (records/s) | {:.0} | – | – |",
            rate(&drains)
        );
    }
    if !fleets.is_empty() {
        println!(
            "| drain of {} gateways at once into one Mosquitto, in all (records/s) | {:.0} | – | – |",
            args.fleet,
            rate(&fleets)
        );
    }
    let peak = |m: &[Measure]| m.iter().map(|m| m.peak_bytes).max().unwrap_or(0);
    let end = |m: &[Measure]| m.iter().map(|m| m.end_bytes).max().unwrap_or(0);
    println!(
        "| space: 10x the cap of {} appended (peak / at the end) | {} / {} | {} / {} (oldest rows deleted by hand) | – |",
        mib(args.cap),
        mib(peak(&space_m[0])),
        mib(end(&space_m[0])),
        mib(peak(&space_m[1])),
        mib(end(&space_m[1]))
    );
    let kept = |m: &[Measure]| median(m.iter().map(|m| m.end_records as f64).collect());
    println!(
        "| space: records held at the end, of {} appended | {:.0} | {:.0} | {:.2}x |",
        space_m[0].first().map_or(0, |m| m.appended),
        kept(&space_m[0]),
        kept(&space_m[1]),
        kept(&space_m[0]) / kept(&space_m[1])
    );
    ExitCode::SUCCESS
}
