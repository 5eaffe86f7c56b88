//! A child process that is this test binary again, for tests that kill (`SIGKILL`) a process at
//! a chosen point: the child runs a deterministic program of writes ([`op`], [`apply`]), says
//! how many were acknowledged on a line `published N`, and waits to be killed; the parent reads
//! that line ([`spawn_until_published`]) and checks the reopened database against [`model`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use minivault::{Db, Error};

fn key(j: u32) -> String {
    format!("k{j:06}")
}

/// Write `i` of the program: a put of a new key, an overwrite of an older one, or a delete.
pub enum Op {
    Put(String, String),
    Delete(String),
}

/// Write `i` of the program.
pub fn op(i: u32) -> Op {
    let value = |i: u32| format!("v{i:06}-{}", "x".repeat(60));
    match i {
        i if i % 9 == 8 => Op::Delete(key(i - 4)),
        i if i % 5 == 4 => Op::Put(key(i / 2), value(i)),
        i => Op::Put(key(i), value(i)),
    }
}

/// Runs write `i` of the program on `db`.
pub fn apply(db: &Db, i: u32) -> Result<(), Error> {
    match op(i) {
        Op::Put(k, v) => db.put(k.as_bytes(), v.as_bytes()),
        Op::Delete(k) => db.delete(k.as_bytes()),
    }
}

/// What every key touched by the first `n` writes reads as after them.
pub fn model(n: u32) -> BTreeMap<String, Option<String>> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        match op(i) {
            Op::Put(k, v) => m.insert(k, Some(v)),
            Op::Delete(k) => m.insert(k, None),
        };
    }
    m
}

/// The child's last words: `n` writes acknowledged; then it sleeps until killed.
pub fn report_and_wait(n: u32) -> ! {
    println!("\npublished {n}");
    loop {
        thread::sleep(Duration::from_secs(60));
    }
}

/// Starts this test binary again running only `test`, with `env` set to `dir`, and reads its
/// output up to the line `published N`: the child and `N`, or `None` (the child killed and
/// reaped) when it ended first.
pub fn spawn_until_published(test: &str, env: &str, dir: &Path) -> (Child, Option<u32>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("published ") {
            return (child, Some(n.trim().parse::<u32>().unwrap()));
        }
    }
    let _ = child.kill();
    child.wait().unwrap();
    (child, None)
}

/// Kills the child and checks it did not exit on its own.
pub fn kill(mut child: Child) {
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "the child exited instead of being killed");
}
