//! `SIGKILL` of the `minivault` process loses no acknowledged write, in every durability mode
//! (the modes only decide what a *power cut* may take; `minivault::Durability` says so): a
//! command whose `OK` was read is there after the next open, and commands sent but not yet
//! acknowledged are there as a prefix (a write in flight is all there or not at all). Two
//! drivers of the real binary:
//!
//! - **Lock-step** (`kill9_loses_no_acknowledged_write_with_sync_*`, one per mode): each cycle
//!   spawns `minivault` on one directory (4 KiB MemTables), sends puts and deletes one at a time
//!   reading each `OK`, sometimes sends one more without reading its reply, kills the process and
//!   reopens the directory through the library: every acknowledged key reads as acknowledged,
//!   the in-flight one as before or after.
//! - **Random moments** (`sigkill_at_random_moments_loses_no_acknowledged_write`, the former
//!   `kill9_loop`): hundreds of cycles on one directory with 2 KiB MemTables (so kills land in
//!   rotations, flushes, compactions and recovery too), a random script of `put`, `del`, `flush`
//!   and `sync` piped in at once, replies read for a random time (sometimes none: the kill then
//!   lands while the database opens and recovers), the mode rotating through all four. The
//!   recovered contents must be the state after every acknowledged command plus a prefix of
//!   the rest. `MINIVAULT_SOAK=<seconds>` runs cycles for that long instead of the default
//!   count; `MINIVAULT_KILL9_CYCLES=<n>` sets the count; `MINIVAULT_SEED=<n>` the seed. A
//!   failure prints the seed and keeps a copy of the directory.
//!
//! All tests here take `common::serial()`: a child spawned by one test briefly inherits the
//! `LOCK` descriptor of a database another test is reopening.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{minivault_bin, Rng};
use minivault::{Db, Durability, Options};

/// A command of the REPL's, as the tests send and model it.
#[derive(Debug, Clone)]
enum Cmd {
    Put(String, String),
    Del(String),
    Flush,
    Sync,
}

impl Cmd {
    /// The command line, without its newline.
    fn line(&self) -> String {
        match self {
            Cmd::Put(k, v) => format!("put {k} {v}"),
            Cmd::Del(k) => format!("del {k}"),
            Cmd::Flush => "flush".into(),
            Cmd::Sync => "sync".into(),
        }
    }

    /// The key a put or delete writes.
    fn key(&self) -> &str {
        match self {
            Cmd::Put(k, _) | Cmd::Del(k) => k,
            Cmd::Flush | Cmd::Sync => "",
        }
    }

    /// What the key reads as after this command (a put or delete).
    fn result(&self) -> Option<String> {
        match self {
            Cmd::Put(_, v) => Some(v.clone()),
            Cmd::Del(_) | Cmd::Flush | Cmd::Sync => None,
        }
    }

    fn apply(&self, state: &mut BTreeMap<String, String>) {
        match self {
            Cmd::Put(k, v) => {
                state.insert(k.clone(), v.clone());
            }
            Cmd::Del(k) => {
                state.remove(k);
            }
            Cmd::Flush | Cmd::Sync => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lock-step: each acknowledged write checked after each kill.

/// 4 KiB MemTables: rotations and flushes every few dozen writes.
const LOCKSTEP_MEMTABLE: usize = 4096;

struct Repl {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Repl {
    fn spawn(dir: &Path, sync: &str) -> Repl {
        let mut child = Command::new(minivault_bin())
            .arg("--sync")
            .arg(sync)
            .arg("--memtable-bytes")
            .arg(LOCKSTEP_MEMTABLE.to_string())
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn minivault");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Repl { child, stdin, stdout }
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write to minivault");
        self.stdin.write_all(b"\n").expect("write to minivault");
        self.stdin.flush().expect("flush to minivault");
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("read from minivault");
        assert!(n > 0, "minivault closed stdout before replying");
        line.trim_end_matches('\n').to_owned()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap, so the lock is released.
    fn kill9(mut self) {
        self.child.kill().expect("kill minivault");
        let status = self.child.wait().expect("wait for minivault");
        assert!(!status.success(), "minivault exited normally instead of being killed");
    }
}

fn next_op(rng: &mut Rng, cycle: usize, i: usize, keys: &[String]) -> Cmd {
    let pick = rng.below(100);
    if keys.is_empty() || pick < 60 {
        let k = format!("c{cycle}k{i}");
        let v = format!("v{cycle}x{i}x{}", "p".repeat(rng.below(200) as usize));
        Cmd::Put(k, v)
    } else if pick < 85 {
        let k = keys[rng.below(keys.len() as u64) as usize].clone();
        Cmd::Put(k, format!("over{cycle}x{i}x{}", "q".repeat(rng.below(100) as usize)))
    } else {
        Cmd::Del(keys[rng.below(keys.len() as u64) as usize].clone())
    }
}

/// Runs `cycles` spawn / write / kill -9 / verify rounds on one directory.
fn kill9_cycles(sync: &str, seed: u64, cycles: usize) {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed);
    // What every key must read as: the acknowledged state.
    let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut keys: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut in_flight_kills = 0;
    let mut in_flight_applied = 0;

    for cycle in 0..cycles {
        let mut repl = Repl::spawn(dir.path(), sync);
        let acks = 1 + rng.below(60) as usize;
        for i in 0..acks {
            let op = next_op(&mut rng, cycle, i, &keys);
            repl.send(&op.line());
            let reply = repl.reply();
            assert_eq!(reply, "OK", "cycle {cycle}, `{}`", op.line());
            if !model.contains_key(op.key()) {
                keys.push(op.key().to_owned());
            }
            model.insert(op.key().to_owned(), op.result());
        }
        // Sometimes die with one more command written but its reply not yet read.
        let in_flight = rng.chance(1, 2).then(|| {
            let op = next_op(&mut rng, cycle, acks, &keys);
            repl.send(&op.line());
            if rng.chance(1, 2) {
                std::thread::sleep(Duration::from_micros(rng.below(3000)));
            }
            op
        });
        repl.kill9();

        let options = Options {
            memtable_bytes: LOCKSTEP_MEMTABLE,
            durability: Durability::Always,
            ..Options::default()
        };
        let db = Db::open_with(dir.path(), options)
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen after kill -9 failed: {e}"));
        let in_flight_key = in_flight.as_ref().map(|op| op.key().to_owned());
        for (k, want) in model.iter().filter(|(k, _)| Some(*k) != in_flight_key.as_ref()) {
            let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
            assert_eq!(
                &got, want,
                "sync {sync}, cycle {cycle}: acknowledged key {k} (acks this cycle: {acks})"
            );
        }
        if let Some(op) = in_flight {
            in_flight_kills += 1;
            let k = op.key().to_owned();
            let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
            let before = model.get(&k).cloned().flatten();
            assert!(
                got == before || got == op.result(),
                "cycle {cycle}: in-flight `{}` left {got:?}, expected {before:?} or {:?}",
                op.line(),
                op.result()
            );
            if got != before {
                in_flight_applied += 1;
            }
            if !model.contains_key(&k) {
                keys.push(k.clone());
            }
            model.insert(k, got);
        }
        drop(db);
    }
    eprintln!(
        "sync {sync}: {cycles} cycles, {} keys, {in_flight_kills} kills with a command in flight \
         ({in_flight_applied} of them applied), {:?}",
        model.len(),
        started.elapsed()
    );
}

#[test]
fn kill9_loses_no_acknowledged_write_with_sync_always() {
    kill9_cycles("always", 0x5eed_0001, 20);
}

#[test]
fn kill9_loses_no_acknowledged_write_with_sync_manual() {
    kill9_cycles("manual", 0x5eed_0002, 8);
}

#[test]
fn kill9_loses_no_acknowledged_write_with_sync_every_n() {
    kill9_cycles("every:16", 0x5eed_0003, 8);
}

#[test]
fn kill9_loses_no_acknowledged_write_with_sync_periodic() {
    kill9_cycles("periodic:1000", 0x5eed_0004, 8);
}

// ---------------------------------------------------------------------------------------------
// Random moments: scripts piped at once, the kill at any time.

/// 2 KiB: rotations, flushes and compactions every few dozen commands.
const MEMTABLE: usize = 2048;
const KEYS: u64 = 40;

fn script(rng: &mut Rng, cycle: u64, len: usize) -> Vec<Cmd> {
    (0..len)
        .map(|i| match rng.below(40) {
            0 => Cmd::Flush,
            1 => Cmd::Sync,
            2..=7 => Cmd::Del(format!("k{:02}", rng.below(KEYS))),
            _ => {
                let key = format!("k{:02}", rng.below(KEYS));
                // A unique tag, then padding: occasionally big enough to force a rotation.
                let pad = match rng.below(10) {
                    0 => rng.range(200, 1500),
                    _ => rng.below(40),
                } as usize;
                Cmd::Put(key, format!("c{cycle}i{i}{}", "x".repeat(pad)))
            }
        })
        .collect()
}

fn durability(cycle: u64) -> (&'static str, Durability) {
    match cycle % 4 {
        0 => ("always", Durability::Always),
        1 => ("every:7", Durability::EveryN(7)),
        2 => ("manual", Durability::Manual),
        _ => ("periodic:5", Durability::Periodic(Duration::from_millis(5))),
    }
}

fn read_all(dir: &Path, mode: Durability) -> Result<BTreeMap<String, String>, String> {
    let db = Db::open_with(dir, Options { memtable_bytes: MEMTABLE, durability: mode, ..Options::default() })
        .map_err(|e| format!("reopen after kill: {e}"))?;
    let mut out = BTreeMap::new();
    for i in 0..KEYS {
        let key = format!("k{i:02}");
        if let Some(v) = db.get(key.as_bytes()).map_err(|e| format!("get {key}: {e}"))? {
            let v = String::from_utf8(v).map_err(|e| format!("value of {key} not UTF-8: {e}"))?;
            out.insert(key, v);
        }
    }
    if db.get(b"never-written").map_err(|e| e.to_string())?.is_some() {
        return Err("a key never written is present".into());
    }
    Ok(out)
}

struct CycleResult {
    acked: usize,
    killed_during_open: bool,
}

fn cycle(
    bin: &Path,
    dir: &Path,
    rng: &mut Rng,
    n: u64,
    state: &mut BTreeMap<String, String>,
) -> Result<CycleResult, String> {
    let (flag, mode) = durability(n);
    let len = rng.range(5, 400) as usize;
    let cmds = script(rng, n, len);
    let mut child = Command::new(bin)
        .args(["--sync", flag, "--memtable-bytes", &MEMTABLE.to_string()])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let lines: Vec<String> = cmds.iter().map(|c| c.line() + "\n").collect();
    // The writer may block on a full pipe; it ends with an error once the child is dead.
    let writer = thread::spawn(move || {
        for l in lines {
            if stdin.write_all(l.as_bytes()).is_err() {
                break;
            }
        }
    });
    // Replies are read on their own thread so the kill can come at any moment.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let deadline = Instant::now()
        + match rng.below(10) {
            0 => Duration::ZERO,
            1 => Duration::from_micros(rng.below(3000)),
            _ => Duration::from_millis(rng.range(1, 40)),
        };
    let mut replies = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(l) => replies.push(l),
            Err(_) => break,
        }
    }
    child.kill().map_err(|e| format!("kill: {e}"))?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let _ = writer.join();
    let _ = reader.join();
    // Replies that arrived before the kill but were not read yet are acknowledged too only if we
    // saw them; the ones we did not see count as in flight, which the prefix rule allows.
    let acked = replies.len();
    for (i, r) in replies.iter().enumerate() {
        if r != "OK" {
            return Err(format!("command {:?} got {r:?}", cmds[i]));
        }
    }
    for c in &cmds[..acked] {
        c.apply(state);
    }
    let got = read_all(dir, mode)?;
    // The recovered state is the acknowledged one plus a prefix of the rest.
    let mut candidate = state.clone();
    let mut matched = (candidate == got).then_some(0);
    for (j, c) in cmds[acked..].iter().enumerate() {
        if matched.is_some() {
            break;
        }
        c.apply(&mut candidate);
        if candidate == got {
            matched = Some(j + 1);
        }
    }
    match matched {
        Some(extra) => {
            for c in &cmds[acked..acked + extra] {
                c.apply(state);
            }
        }
        None => {
            let mut diff = Vec::new();
            for k in state.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
                if state.get(k) != got.get(k) {
                    diff.push(format!("{k}: acknowledged {:?}, recovered {:?}", state.get(k), got.get(k)));
                }
            }
            return Err(format!(
                "{flag}: recovered state is not the acknowledged one plus a prefix of the {} unacknowledged commands ({acked} acknowledged, exit {status}):\n  {}",
                cmds.len() - acked,
                diff.join("\n  ")
            ));
        }
    }
    Ok(CycleResult { acked, killed_during_open: acked == 0 })
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let _serial = common::serial();
    let bin = minivault_bin();
    let soak = std::env::var("MINIVAULT_SOAK").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    let cycles: u64 =
        std::env::var("MINIVAULT_KILL9_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let seed: u64 = std::env::var("MINIVAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x9111);
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let start = Instant::now();
    let mut state = BTreeMap::new();
    let (mut n, mut acked, mut during_open) = (0u64, 0usize, 0u64);
    loop {
        let more = match soak {
            Some(d) => start.elapsed() < d,
            None => n < cycles,
        };
        if !more {
            break;
        }
        match cycle(bin, &dir, &mut rng, n, &mut state) {
            Ok(r) => {
                acked += r.acked;
                during_open += u64::from(r.killed_during_open);
            }
            Err(e) => {
                let keep = std::env::temp_dir().join(format!("minivault-kill9-failure-{seed}-{n}"));
                let _ = Command::new("cp").arg("-a").arg(&dir).arg(&keep).status();
                panic!(
                    "kill9 cycle {n} (MINIVAULT_SEED={seed}) failed: {e}\ndirectory kept at {}",
                    keep.display()
                );
            }
        }
        n += 1;
    }
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "sigkill_at_random_moments: {n} SIGKILLs survived ({during_open} before the first reply), {acked} acknowledged commands checked, {} keys live, {files} files, {:.1} s",
        state.len(),
        start.elapsed().as_secs_f64()
    );
}
