//! Real process crashes: hundreds of `SIGKILL`s of the `minivault` binary while it writes.
//!
//! Every cycle spawns `minivault` on the same directory (small MemTables, so kills land in
//! rotations, flushes, compactions and recovery too), pipes it a random script of `put`, `del`,
//! `flush` and `sync` commands, reads `OK`s for a random time (sometimes none: the kill then lands
//! while the database opens and recovers), kills it with `SIGKILL`, and reopens the directory
//! through the `minivault` library. The REPL runs commands in order and every write reaches the
//! OS before its `OK`, so the recovered contents must be the state after every acknowledged
//! command plus some prefix of the commands sent but not yet acknowledged. That holds in every
//! durability mode (they only differ on a power cut), so the cycles rotate through all of them.
//!
//! `MINIVAULT_SOAK=<seconds>` runs cycles for that long instead of the default count;
//! `MINIVAULT_KILL9_CYCLES=<n>` sets the count. A failure prints the seed and keeps a copy of
//! the directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, Options};
use minivault_suite::fault::Rng;

mod common;
use common::minivault_bin;

// 2 KiB: rotations, flushes and compactions every few dozen commands.
const MEMTABLE: usize = 2048;
const KEYS: u64 = 40;

#[derive(Debug, Clone)]
enum Cmd {
    Put(String, String),
    Del(String),
    Flush,
    Sync,
}

impl Cmd {
    fn line(&self) -> String {
        match self {
            Cmd::Put(k, v) => format!("put {k} {v}\n"),
            Cmd::Del(k) => format!("del {k}\n"),
            Cmd::Flush => "flush\n".into(),
            Cmd::Sync => "sync\n".into(),
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
    let mut db =
        Db::open_with(dir, Options { memtable_bytes: MEMTABLE, durability: mode, ..Options::default() })
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
    let lines: Vec<String> = cmds.iter().map(Cmd::line).collect();
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
        "kill9_loop: {n} SIGKILLs survived ({during_open} before the first reply), {acked} acknowledged commands checked, {} keys live, {files} files, {:.1} s",
        state.len(),
        start.elapsed().as_secs_f64()
    );
}
