//! `SIGKILL` after a compaction worker made its output live and before the engine installed it
//! loses nothing and leaves no input behind.
//!
//! With background threads and no `max_bytes`, the worker renames its output over the newest
//! input's `<id>.sst` and syncs the directory itself; the engine installs it (changes the table
//! set, hands the older inputs to the reaper) only at the next call that collects the report. A
//! process killed in between leaves the output live beside the older inputs, which its footer's
//! `[replaces_from, id)` names: open must read the output and remove them.
//!
//! The child is this test binary again (`child_publishes_a_compaction_then_waits`, a no-op
//! unless `MINIVAULT_COMPACTION_CHILD` names a directory): it writes a deterministic program
//! with `Durability::Always` until a compaction is handed to the worker, then makes no further
//! write (so nothing collects the report), waits until one `<id>.sst` is a new file (its inode
//! changed) and no `<id>.tmp` is left, prints how many writes were acknowledged, and sleeps.
//! The parent kills it, reopens and checks every acknowledged write and that the older inputs
//! are gone.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, Options};

const MEMTABLE: usize = 8 << 10;
const CHILD_ENV: &str = "MINIVAULT_COMPACTION_CHILD";

fn options() -> Options {
    Options { background_threads: 1, ..common::options(MEMTABLE, Durability::Always) }
}

fn key(j: u32) -> String {
    format!("k{j:06}")
}

/// Write `i` of the program: a put of a new key, an overwrite of an older one, or a delete.
enum Op {
    Put(String, String),
    Delete(String),
}

fn op(i: u32) -> Op {
    let value = |i: u32| format!("v{i:06}-{}", "x".repeat(60));
    match i {
        i if i % 9 == 8 => Op::Delete(key(i - 4)),
        i if i % 5 == 4 => Op::Put(key(i / 2), value(i)),
        i => Op::Put(key(i), value(i)),
    }
}

/// What every key touched by the first `n` writes reads as after them.
fn model(n: u32) -> BTreeMap<String, Option<String>> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        match op(i) {
            Op::Put(k, v) => m.insert(k, Some(v)),
            Op::Delete(k) => m.insert(k, None),
        };
    }
    m
}

/// The inode of each live table file, by id.
fn inodes(dir: &Path) -> HashMap<u64, u64> {
    common::file_ids(dir, "sst")
        .into_iter()
        .filter_map(|id| std::fs::metadata(dir.join(format!("{id:016x}.sst"))).ok().map(|m| (id, m.ino())))
        .collect()
}

/// The child: writes until a compaction is handed to the worker, waits for the worker to make
/// its output live, reports, and waits to be killed. A no-op unless the variable is set.
#[test]
fn child_publishes_a_compaction_then_waits() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let db = Db::open_with(dir, options()).unwrap();
    let mut n = 0;
    while db.background_stats().started == 0 {
        match op(n) {
            Op::Put(k, v) => db.put(k.as_bytes(), v.as_bytes()),
            Op::Delete(k) => db.delete(k.as_bytes()),
        }
        .expect("child: write");
        n += 1;
        assert!(n < 200_000, "child: no compaction was started");
    }
    // From here on no call that collects the worker's report (file listing only).
    let before = inodes(dir);
    let start = Instant::now();
    loop {
        let now = inodes(dir);
        let replaced = now.iter().any(|(id, ino)| before.get(id).is_some_and(|b| b != ino));
        if replaced && common::file_ids(dir, "tmp").is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "child: the worker never made its output live (tables {now:?}, .tmp {:?})",
            common::file_ids(dir, "tmp")
        );
        thread::sleep(Duration::from_millis(1));
    }
    println!("\npublished {n}");
    loop {
        thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn kill9_after_a_compaction_is_published_and_before_it_is_installed_loses_nothing_and_keeps_no_input() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_publishes_a_compaction_then_waits", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("published ") {
            acked = Some(n.trim().parse::<u32>().unwrap());
            break;
        }
    }
    let Some(acked) = acked else {
        let _ = child.kill();
        child.wait().unwrap();
        panic!("the child ended before the worker published its output");
    };
    let at_kill = common::file_ids(&dir, "sst");
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "the child exited instead of being killed");

    let db = Db::open_with(&dir, options()).unwrap();
    for (k, want) in model(acked) {
        let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got, want, "acknowledged key {k} ({acked} writes acknowledged)");
    }
    let live: Vec<u64> = db.tables().iter().map(|t| t.id).collect();
    assert!(
        live.len() + 1 < at_kill.len(),
        "the older inputs are gone: live {live:?}, at the kill {at_kill:?}"
    );
    let mut on_disk = common::file_ids(&dir, "sst");
    on_disk.sort_unstable();
    assert_eq!(on_disk, live, "the directory holds only the live tables");
    db.close().unwrap();
}
