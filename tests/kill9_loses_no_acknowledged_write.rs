//! `kill -9` of the `minivault` process loses no acknowledged write: a put or del whose `OK`
//! was read is there after the next open, and one that was in flight when the process died
//! either happened completely or not at all. Many kill cycles on one directory, with small
//! MemTables so kills also land during rotations and flushes.
//!
//! The durability modes only decide what a *power cut* may take; the process dying must never
//! lose an acknowledged write in any mode (`minivault::Durability` says so).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use minivault::{Db, Durability, Options};

const MEMTABLE: usize = 4096;

struct Repl {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Repl {
    fn spawn(dir: &Path, sync: &str) -> Repl {
        let mut child = Command::new(common::minivault_bin())
            .arg("--sync")
            .arg(sync)
            .arg("--memtable-bytes")
            .arg(MEMTABLE.to_string())
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

#[derive(Debug, Clone)]
enum Op {
    Put(String, String),
    Del(String),
}

impl Op {
    fn line(&self) -> String {
        match self {
            Op::Put(k, v) => format!("put {k} {v}"),
            Op::Del(k) => format!("del {k}"),
        }
    }
    fn key(&self) -> &str {
        match self {
            Op::Put(k, _) | Op::Del(k) => k,
        }
    }
    fn result(&self) -> Option<String> {
        match self {
            Op::Put(_, v) => Some(v.clone()),
            Op::Del(_) => None,
        }
    }
}

fn next_op(rng: &mut Rng, cycle: usize, i: usize, keys: &[String]) -> Op {
    let pick = rng.below(100);
    if keys.is_empty() || pick < 60 {
        let k = format!("c{cycle}k{i}");
        let v = format!("v{cycle}x{i}x{}", "p".repeat(rng.below(200) as usize));
        Op::Put(k, v)
    } else if pick < 85 {
        let k = keys[rng.below(keys.len() as u64) as usize].clone();
        Op::Put(k, format!("over{cycle}x{i}x{}", "q".repeat(rng.below(100) as usize)))
    } else {
        Op::Del(keys[rng.below(keys.len() as u64) as usize].clone())
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
        let in_flight = rng.chance(50).then(|| {
            let op = next_op(&mut rng, cycle, acks, &keys);
            repl.send(&op.line());
            if rng.chance(50) {
                std::thread::sleep(Duration::from_micros(rng.below(3000)));
            }
            op
        });
        repl.kill9();

        let options =
            Options { memtable_bytes: MEMTABLE, durability: Durability::Always, ..Options::default() };
        let mut db = Db::open_with(dir.path(), options)
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
