//! `SIGKILL` of a process whose writer threads share one `Arc<Db>` loses no acknowledged write,
//! in every durability mode, and leaves each thread's writes a prefix of its program (what was
//! acknowledged, plus perhaps the one write it had in flight).
//!
//! The child is this test binary again (`child_writers`, which does nothing unless
//! `MINIVAULT_KILL9_CHILD` names a directory): four threads, each running its own deterministic
//! program of puts, deletes and two-key batches over its own keys, printing `ack THREAD OP` after
//! each call returns `Ok`. The parent reads acknowledgements for a random while (sometimes none:
//! the kill then lands during open and recovery), kills the child with `SIGKILL`, reads what
//! the pipe still holds (printed before the kill: acknowledged too), reopens the directory, and
//! checks every thread's keys against its program: the state after its acknowledged ops, or
//! after one more. 4 KiB MemTables, so kills land in rotations, flushes and compactions too.
//! Earlier cycles' keys are checked again after every kill. `MINIVAULT_KILL9_CYCLES=<n>` sets
//! the number of cycles (default 60), `MINIVAULT_SEED=<n>` the seed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use minivault::{Db, Durability, Options, WriteBatch};

const THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 12;
const MEMTABLE: usize = 4096;

/// One step of a thread's program.
#[derive(Debug, Clone)]
enum Op {
    Put(String, String),
    Delete(String),
    Batch(Vec<(String, String)>),
}

impl Op {
    fn apply(&self, state: &mut BTreeMap<String, String>) {
        match self {
            Op::Put(k, v) => {
                state.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                state.remove(k);
            }
            Op::Batch(items) => {
                for (k, v) in items {
                    state.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Thread `t`'s program in `cycle`: the same in the child and the parent.
struct Program {
    rng: Rng,
    cycle: u64,
    t: u64,
    i: u64,
}

impl Program {
    fn new(seed: u64, cycle: u64, t: u64) -> Self {
        Program { rng: Rng::new(seed ^ (cycle << 8) ^ t), cycle, t, i: 0 }
    }

    fn key(&mut self) -> String {
        format!("c{:03}t{}k{:02}", self.cycle, self.t, self.rng.below(KEYS_PER_THREAD))
    }

    fn value(&mut self) -> String {
        let pad = if self.rng.chance(1, 10) { self.rng.range(200, 900) } else { self.rng.below(40) };
        format!("c{}t{}i{}{}", self.cycle, self.t, self.i, "x".repeat(pad as usize))
    }

    fn next_op(&mut self) -> Op {
        let op = match self.rng.below(100) {
            0..=14 => Op::Delete(self.key()),
            15..=29 => {
                let (a, b) = (self.key(), self.key());
                let (va, vb) = (self.value(), self.value());
                Op::Batch(vec![(a, va), (b, vb)])
            }
            _ => {
                let k = self.key();
                Op::Put(k, self.value())
            }
        };
        self.i += 1;
        op
    }
}

fn durability(cycle: u64) -> (&'static str, Durability) {
    match cycle % 4 {
        0 => ("always", Durability::Always),
        1 => ("every:4", Durability::EveryN(4)),
        2 => ("manual", Durability::Manual),
        _ => ("periodic:5", Durability::Periodic(Duration::from_millis(5))),
    }
}

fn options(mode: Durability) -> Options {
    Options { memtable_bytes: MEMTABLE, durability: mode, ..Options::default() }
}

/// The child: runs only when the parent sets `MINIVAULT_KILL9_CHILD`; writes until killed.
#[test]
fn child_writers() {
    let Ok(dir) = std::env::var("MINIVAULT_KILL9_CHILD") else { return };
    let var = |name: &str| -> u64 { std::env::var(name).unwrap().parse().unwrap() };
    let (seed, cycle) = (var("MINIVAULT_KILL9_SEED"), var("MINIVAULT_KILL9_CYCLE"));
    let db = Arc::new(Db::open_with(&dir, options(durability(cycle).1)).expect("child: open"));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, out) = (db.clone(), out.clone());
            thread::spawn(move || {
                let mut program = Program::new(seed, cycle, t);
                loop {
                    let i = program.i;
                    match program.next_op() {
                        Op::Put(k, v) => db.put(k.as_bytes(), v.as_bytes()),
                        Op::Delete(k) => db.delete(k.as_bytes()),
                        Op::Batch(items) => {
                            let mut batch = WriteBatch::new(vec![0; 4096]);
                            for (k, v) in &items {
                                batch.put(k.as_bytes(), v.as_bytes()).unwrap();
                            }
                            db.write_batch(&batch)
                        }
                    }
                    .expect("child: write");
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ack {t} {i}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// One cycle: spawn, read acknowledgements, kill, reopen, check. Adds the cycle's recovered
/// state to `model`.
fn cycle(dir: &Path, seed: u64, c: u64, rng: &mut Rng, model: &mut BTreeMap<String, String>) -> (u64, u64) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_writers", "--nocapture", "--test-threads=1"])
        .env("MINIVAULT_KILL9_CHILD", dir)
        .env("MINIVAULT_KILL9_SEED", seed.to_string())
        .env("MINIVAULT_KILL9_CYCLE", c.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The first acknowledgement shares its line with libtest's `test child_writers ... `
            // (printed, without a newline, before the test runs): look for it anywhere.
            let Some(at) = line.find("ack ") else { continue };
            let mut parts = line.get(at..).unwrap_or_default().split_whitespace();
            parts.next();
            let t = parts.next().and_then(|x| x.parse().ok()).unwrap();
            let i = parts.next().and_then(|x| x.parse().ok()).unwrap();
            if tx.send((t, i)).is_err() {
                break;
            }
        }
    });
    let wait = match rng.below(10) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(rng.below(5000)),
        _ => Duration::from_millis(rng.range(10, 150)),
    };
    thread::sleep(wait);
    child.kill().unwrap();
    child.wait().unwrap();
    // Acknowledgements still in the pipe were printed before the kill: they count.
    reader.join().unwrap();
    let mut acked: Vec<Option<u64>> = vec![None; THREADS as usize];
    for (t, i) in rx.try_iter() {
        let last = &mut acked[t as usize];
        assert!(last.is_none_or(|l| i == l + 1), "thread {t}: ack {i} after {last:?}");
        *last = Some(i);
    }
    let (name, mode) = durability(c);
    let db = Db::open_with(dir, options(mode)).unwrap_or_else(|e| panic!("cycle {c}: reopen failed: {e}"));
    for (k, v) in model.iter() {
        let got = db.get(k.as_bytes()).unwrap();
        assert_eq!(got.as_deref(), Some(v.as_bytes()), "cycle {c} ({name}): key {k} of an earlier cycle");
    }
    let (mut total, mut in_flight_applied) = (0, 0);
    for t in 0..THREADS {
        let mut program = Program::new(seed, c, t);
        let mut state = BTreeMap::new();
        let n = acked[t as usize].map_or(0, |i| i + 1);
        for _ in 0..n {
            program.next_op().apply(&mut state);
        }
        let mut one_more = state.clone();
        program.next_op().apply(&mut one_more);
        let mut got = BTreeMap::new();
        for j in 0..KEYS_PER_THREAD {
            let k = format!("c{c:03}t{t}k{j:02}");
            if let Some(v) = db.get(k.as_bytes()).unwrap() {
                got.insert(k, String::from_utf8(v).unwrap());
            }
        }
        if got == one_more && got != state {
            in_flight_applied += 1;
        }
        assert!(
            got == state || got == one_more,
            "cycle {c} ({name}), thread {t}: recovered keys are neither the {n} acknowledged ops' state nor that plus the op in flight\n  acknowledged: {state:?}\n  recovered:    {got:?}"
        );
        model.extend(got);
        total += n;
    }
    db.close().unwrap();
    (total, in_flight_applied)
}

#[test]
fn kill9_with_concurrent_writers_loses_no_acknowledged_write() {
    if std::env::var("MINIVAULT_KILL9_CHILD").is_ok() {
        return;
    }
    let _serial = common::serial();
    let cycles: u64 = std::env::var("MINIVAULT_KILL9_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let seed: u64 = std::env::var("MINIVAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0xc0cc);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut rng = Rng::new(seed);
    let mut model = BTreeMap::new();
    let start = Instant::now();
    let (mut acked, mut applied) = (0, 0);
    for c in 0..cycles {
        let (a, f) = cycle(&dir, seed, c, &mut rng, &mut model);
        acked += a;
        applied += f;
    }
    eprintln!(
        "kill9 with {THREADS} writer threads: {cycles} SIGKILLs, {acked} acknowledged writes checked (0 lost), \
         {applied} in-flight writes found applied, {} keys live, {:.1} s",
        model.len(),
        start.elapsed().as_secs_f64()
    );
}
