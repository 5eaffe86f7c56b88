//! What a fresh database holding three keys takes on disk, and how `wal_preallocation_bytes`
//! (`--wal-preallocation-bytes`) lowers it: the WAL is extended ahead of the writer, 896 KiB at
//! a time with the default 4 MiB MemTables; 64 KiB steps take 64 KiB; off, one 4 KiB block.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use minivault::{Db, Options};

/// Bytes allocated to the directory's files, as `du` counts them.
fn allocated(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().blocks() * 512).sum()
}

fn three_keys(dir: &Path, wal_preallocation_bytes: Option<u64>) -> u64 {
    let db = Db::open_with(dir, Options { wal_preallocation_bytes, ..Options::default() }).unwrap();
    for (k, v) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
        db.put(k, v).unwrap();
    }
    db.close().unwrap();
    let db = Db::open_with(dir, Options { wal_preallocation_bytes, ..Options::default() }).unwrap();
    assert_eq!(db.get(b"c").unwrap().as_deref(), Some(&b"3"[..]), "{wal_preallocation_bytes:?}");
    db.close().unwrap();
    allocated(dir)
}

#[test]
fn the_wal_preallocation_step_bounds_a_fresh_database_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let default = three_keys(&tmp.path().join("default"), None);
    let small = three_keys(&tmp.path().join("small"), Some(64 << 10));
    let off = three_keys(&tmp.path().join("off"), Some(0));
    // File systems without fallocate allocate as written: then all three are small.
    if default < 896 << 10 {
        eprintln!("SKIPPED: this file system does not preallocate ({default} bytes with the default step)");
        return;
    }
    assert!(default < (896 + 16) << 10, "default: {default} bytes");
    assert!(((64 << 10)..(80 << 10)).contains(&small), "64 KiB steps: {small} bytes");
    assert!(off <= 16 << 10, "off: {off} bytes");
}

#[test]
fn the_binary_takes_the_step_as_an_option() {
    let cwd = tempfile::tempdir().unwrap();
    let ran = common::cli::minivault_in(
        cwd.path(),
        ["--wal-preallocation-bytes", "0", "db"],
        "put a 1\nput b 2\nput c 3\n",
    );
    assert_eq!((ran.stdout.as_str(), ran.code), ("OK\nOK\nOK\n", 0), "{}", ran.stderr);
    assert!(allocated(&cwd.path().join("db")) <= 16 << 10);
    let info = common::cli::minivault_in(cwd.path(), ["--wal-preallocation-bytes", "0", "db", "info"], "");
    assert!(info.stdout.contains("wal step   off"), "{}", info.stdout);
}
