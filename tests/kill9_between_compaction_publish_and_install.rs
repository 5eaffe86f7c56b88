//! `SIGKILL` after a compaction worker made its output live and before the engine installed it
//! loses nothing and leaves no input behind.
//!
//! With background threads and no `max_bytes`, the worker renames its output over the newest
//! input's `<id>.sst` and syncs the directory itself; the engine installs it (changes the table
//! set, hands the older inputs to the reaper) when the worker's nudge finds the engine's lock
//! free, or at the next call; with installs held (`Db::hold_background_installs`, as the child
//! does), only at the next write. A
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

use common::child;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, Options};

const MEMTABLE: usize = 8 << 10;
const CHILD_ENV: &str = "MINIVAULT_COMPACTION_CHILD";

fn options() -> Options {
    Options { background_threads: 1, ..common::options(MEMTABLE, Durability::Always) }
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
    db.hold_background_installs(true);
    let mut n = 0;
    // The tables as they were before the write that started the compaction: the worker may
    // publish before the next look at the directory.
    let mut before = inodes(dir);
    while db.background_stats().started == 0 {
        before = inodes(dir);
        child::apply(&db, n).expect("child: write");
        n += 1;
        assert!(n < 200_000, "child: no compaction was started");
    }
    // From here on no call that collects the worker's report (file listing only).
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
    child::report_and_wait(n);
}

#[test]
fn kill9_after_a_compaction_is_published_and_before_it_is_installed_loses_nothing_and_keeps_no_input() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let (child, acked) =
        child::spawn_until_published("child_publishes_a_compaction_then_waits", CHILD_ENV, &dir);
    let Some(acked) = acked else { panic!("the child ended before the worker published its output") };
    let at_kill = common::file_ids(&dir, "sst");
    child::kill(child);

    let db = Db::open_with(&dir, options()).unwrap();
    for (k, want) in child::model(acked) {
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
