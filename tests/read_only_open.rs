//! A read-only open (`Options::read_only`, `minivault --read-only`) writes nothing and takes no
//! lock: it works on a directory the process cannot write and while another process writes, sees
//! the database as it was when it opened (a consistent state, even when a writer retires a file
//! under it: the open starts again), leaves a torn WAL tail alone (it is just the end), and
//! refuses writes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use minivault::{Db, Durability, EngineError, Error, Options};

fn read_only() -> Options {
    Options { read_only: true, ..Options::default() }
}

/// Every file of `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (e.file_name().into_string().unwrap(), (fs::read(e.path()).unwrap(), meta.modified().unwrap()))
        })
        .collect()
}

#[test]
fn a_read_only_open_changes_no_byte_leaves_a_torn_tail_and_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open_with(&dir, Options { memtable_bytes: 64 << 10, ..Options::default() }).unwrap();
    for i in 0..300u32 {
        db.put(format!("key{i:04}").as_bytes(), &[b'v'; 100]).unwrap();
    }
    db.flush().unwrap();
    db.put(b"in-the-wal", b"1").unwrap();
    db.close().unwrap();
    // A torn tail: half a record's worth of bytes where the next record would start.
    let wal = common::wal_files(&dir).pop().expect("a WAL");
    let mut bytes = fs::read(&wal).unwrap();
    let end = common::wal_logical_len(&bytes);
    bytes[end..end + 12].copy_from_slice(&[0x40, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01, b't', b'o', b'r', b'n']);
    fs::write(&wal, &bytes).unwrap();
    fs::remove_file(dir.join("LOCK")).unwrap();
    let before = snapshot(&dir);

    let ro = Db::open_with(&dir, read_only()).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.get(b"key0299").unwrap().as_deref(), Some(&[b'v'; 100][..]), "from an SSTable");
    assert_eq!(ro.get(b"in-the-wal").unwrap().as_deref(), Some(&b"1"[..]), "from the WAL");
    for refused in [ro.put(b"k", b"v"), ro.delete(b"key0001"), ro.flush(), ro.sync()] {
        assert!(matches!(refused, Err(Error::Engine(EngineError::ReadOnly))), "{refused:?}");
    }
    assert!(!ro.is_poisoned(), "a refused write does not poison the handle");
    assert_eq!(ro.get(b"key0001").unwrap().as_deref(), Some(&[b'v'; 100][..]));
    ro.close().unwrap();
    assert_eq!(snapshot(&dir), before, "no file created, changed, cut or touched; no LOCK");

    // A writable open then cuts the torn tail, and everything is there.
    let db = Db::open(&dir).unwrap();
    assert_eq!(db.get(b"in-the-wal").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(fs::read(&wal).unwrap() != bytes, "the writer cut the tail the reader left");
}

#[test]
fn a_read_only_open_of_a_missing_directory_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    match Db::open_with(&missing, read_only()) {
        Err(Error::Open { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected Open/NotFound, got {other:?}"),
    }
    assert!(!missing.exists());
}

/// Keys are written in order, each handed to the OS before the next, by a writer whose small
/// MemTables flush and compact all the time (so WALs and tables are retired under the readers). Every read-only open sees a prefix of them
/// that includes every key acknowledged before it began: a consistent state as of its open,
/// however often the writer retired files under it.
#[test]
fn read_only_opens_beside_a_busy_writer_see_a_consistent_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let key = |i: u64| format!("key{i:06}").into_bytes();
    let options = Options { memtable_bytes: 4096, durability: Durability::Manual, ..Options::default() };
    let writer = Db::open_with(&dir, options).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                writer.put(&key(i), &[b'x'; 40]).unwrap();
                i += 1;
                acked.store(i, Ordering::Release);
            }
            writer.close().unwrap();
            i
        })
    };
    let mut rng = common::Rng::new(7);
    for open in 0..100 {
        let before = acked.load(Ordering::Acquire);
        let mut ro = Db::open_with(&dir, Options { memtable_bytes: 4096, ..read_only() }).unwrap();
        let after = acked.load(Ordering::Acquire);
        let present = |ro: &mut Db, i: u64| ro.get(&key(i)).unwrap().is_some();
        // Everything acknowledged before the open is there (a sample of it, and the last key).
        let sample: Vec<u64> =
            if before == 0 { Vec::new() } else { (0..20).map(|_| rng.below(before)).collect() };
        for i in sample.into_iter().chain(before.checked_sub(1)) {
            assert!(
                present(&mut ro, i),
                "open {open}: key {i} of the {before} acknowledged before it is missing"
            );
        }
        // Then a prefix: present up to some key, absent from there on.
        let visible = (before..=after).find(|&i| !present(&mut ro, i)).unwrap_or(after + 1);
        for i in visible..visible + 50 {
            assert!(!present(&mut ro, i), "open {open}: key {i} visible after a gap at {visible}");
        }
        // What it saw does not change while the writer goes on.
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(!present(&mut ro, visible) && (visible == 0 || present(&mut ro, visible - 1)));
    }
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    assert!(written > 100, "the writer made progress: {written} keys");
    let tables = common::sst_files(&dir).len();
    assert!(tables > 0, "the writer flushed while the readers opened");
}

#[test]
fn the_binary_reads_a_directory_it_cannot_write_while_another_process_holds_it() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir).unwrap();
    db.put(b"key1", b"value1").unwrap();
    // The writer keeps the database open (and locked) while the reader runs.
    let as_nobody = is_root() && has_setpriv();
    if as_nobody {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    } else {
        eprintln!("not root (or no setpriv): the reader runs as this user, on a writable directory");
    }
    let run = |args: &[&str], input: &str| {
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(common::minivault_bin());
            c
        } else {
            Command::new(common::minivault_bin())
        };
        cmd.current_dir(tmp.path()).args(args);
        common::cli::run(&mut cmd, input)
    };
    let writable = run(&["db", "get", "key1"], "");
    assert_eq!(writable.code, 1, "the writer holds the lock: {}", writable.stderr);
    let ran = run(&["--read-only", "db", "get", "key1"], "");
    assert_eq!((ran.stdout.as_str(), ran.code), ("value1\n", 0), "{}", ran.stderr);
    let ran = run(&["--read-only", "db"], "get key1\nput key2 v\nmget key1 key2\ninfo\n");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        ["value1", "ERR the database is open read-only", "value1 (nil)"],
        "{}",
        ran.stderr
    );
    assert!(lines.iter().any(|l| l.starts_with("mode       read-only")), "{}", ran.stdout);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // A write after the reader opened is not seen by it, and is by the next one.
    db.put(b"key2", b"value2").unwrap();
    let ran = run(&["--read-only", "db", "get", "key2"], "");
    assert_eq!((ran.stdout.as_str(), ran.code), ("value2\n", 0), "{}", ran.stderr);
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn has_setpriv() -> bool {
    Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success())
}
