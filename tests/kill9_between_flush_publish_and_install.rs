//! `SIGKILL` after the flush thread made its table live and before the engine installed it
//! loses nothing and replays nothing twice.
//!
//! The flush thread publishes its own table (`flush::publish`: sync, rename `<id>.tmp` to
//! `<id>.sst`, directory sync); the engine installs it (opens it, retires the WALs it covers)
//! when the thread's nudge finds the engine's lock free, or at the next call; with installs held
//! (`Db::hold_background_installs`), only at the next write. A process killed in between leaves
//! the table live on disk beside the WALs its footer's `wal_covered` names: open must read the
//! table, remove those WALs, and replay only the newer one.
//!
//! The child is this test binary again (`child_publishes_a_flush_then_waits`, which does
//! nothing unless `MINIVAULT_PUBLISH_CHILD` names a directory): it writes a deterministic
//! program (installs held) of puts, overwrites and deletes with `Durability::Always` until one write freezes
//! the active MemTable (the flush is then handed to the thread), makes no further call to the
//! `Db` (so nothing collects the report), waits until `<id>.sst` is in the directory and no
//! `<id>.tmp` is, prints how many writes were acknowledged, and sleeps. The parent checks that
//! the directory holds the published table and both WALs (the install has not run), kills the
//! child, reopens and checks every acknowledged write, the table set, and the WALs.

mod common;

use common::child;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Durability, Options};

const MEMTABLE: usize = 16 << 10;
const CHILD_ENV: &str = "MINIVAULT_PUBLISH_CHILD";

fn options() -> Options {
    Options { background_threads: 1, ..common::options(MEMTABLE, Durability::Always) }
}

/// The child: writes until a write freezes the MemTable, waits for the flush thread to publish
/// the table, reports, and waits to be killed. A no-op unless `MINIVAULT_PUBLISH_CHILD` is set.
#[test]
fn child_publishes_a_flush_then_waits() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let db = Db::open_with(dir, options()).unwrap();
    db.hold_background_installs(true);
    let mut n = 0;
    // The frozen MemTable stays until the install; the write that froze it made it non-empty.
    while db.stats().immutable_keys == 0 {
        child::apply(&db, n).expect("child: write");
        n += 1;
        assert!(n < 100_000, "child: no write froze the MemTable");
    }
    // From here on no call that collects the flush thread's report (stats and file listing only).
    let start = Instant::now();
    while common::file_ids(dir, "sst").is_empty() || !common::file_ids(dir, "tmp").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "child: the flush thread never published its table"
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(db.stats().tables, 0, "child: the table was installed");
    assert_eq!(db.background_stats().flushes, 0, "child: the table was installed");
    child::report_and_wait(n);
}

#[test]
fn kill9_after_a_flush_is_published_and_before_it_is_installed_loses_nothing_and_replays_nothing_twice() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let (child, acked) = child::spawn_until_published("child_publishes_a_flush_then_waits", CHILD_ENV, &dir);
    let Some(acked) = acked else { panic!("the child ended before the flush thread published its table") };
    // The state at the kill: the table live, the WAL it covers and the new one both still there.
    let tables = common::file_ids(&dir, "sst");
    let wals = common::file_ids(&dir, "wal");
    assert_eq!(tables.len(), 1, "one published table: {tables:?}");
    assert_eq!(wals.len(), 2, "the covered WAL and the current one: {wals:?}");
    assert!(common::file_ids(&dir, "tmp").is_empty());
    child::kill(child);

    let db = Db::open_with(&dir, options()).unwrap();
    for (k, want) in child::model(acked) {
        let got = db.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got, want, "acknowledged key {k} ({acked} writes acknowledged)");
    }
    let live: Vec<u64> = db.tables().iter().map(|t| t.id).collect();
    assert_eq!(live, tables, "the published table is the one live table");
    assert_eq!(
        common::file_ids(&dir, "wal"),
        wals[1..],
        "the WAL the table covers was removed, the newer one kept"
    );
    let stats = db.stats();
    // Only the newer WAL replayed: the write that froze the MemTable went to it. Replaying the
    // covered one too would bring its writes back into the MemTable (or flush a second table).
    assert_eq!(stats.memtable_keys, 1, "only the write logged after the rotation replayed");
    assert_eq!(stats.flushes, 0);
    assert_eq!(stats.tables, 1);
    db.close().unwrap();
}
