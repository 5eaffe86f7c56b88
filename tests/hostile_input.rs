//! Hostile input: each is answered with a clear error, and nothing already stored is lost.
//!
//! - Limits through the engine (on a [`FaultStorage`]): oversized keys and values, empty keys
//!   (rejected with `Error::EmptyKey`: the format reserves key length 0), expiries at or before
//!   now, a key too long for a small MemTable budget, a database at the table limit.
//! - The REPL through the real `minivault` binary: unknown commands, unterminated quotes, NUL
//!   bytes, invalid UTF-8, an overlong line, bad TTLs, oversized and empty keys.
//! - The database directory: zero-byte, truncated and random files named like tables or WALs,
//!   unrelated files and directories.
//! - The environment: a read-only directory (a read-only bind mount), a permission-denied
//!   directory (the binary run as `nobody` with `setpriv`: root bypasses permission bits), a full
//!   disk (a 256 KiB tmpfs; the same with `FaultStorage`'s capacity when mounting is not
//!   possible), and a second process on a locked directory.
//!
//! - The fuzz targets' checks (`minivault_suite::fault::targets`, the bodies of the libFuzzer
//!   targets in `fuzz/`): every input saved under `fuzz/regressions/<target>/` (crashes found by
//!   `scripts/fuzz.sh`, kept after the fix), hand-made edge cases, and a few hundred
//!   pseudo-random inputs per target.
//! - Property tests (proptest, stable toolchain) of every decoder that reads bytes from disk or
//!   from a user: record framing, entry encoding, WAL replay, SSTable open and lookup, the REPL's
//!   line parser. Arbitrary bytes never panic and give only clean errors; valid data round trips;
//!   a WAL cut at any byte replays exactly its whole records; garbage after a valid WAL is cut
//!   off as a torn tail, zeros after it are its clean end; a flipped bit in an SSTable gives an
//!   error or the right answer, never a wrong one. `PROPTEST_CASES=<n>` runs more cases; failing
//!   cases are saved in `tests/hostile_input.proptest-regressions` and replayed first.
//!
//! (Merged from `hostile_input.rs`, `hostile_fuzz_inputs.rs` and `proptest_decoders.rs`.) The
//! checks that call the engine's format modules (`record`, `entry`, `sstable`) live in
//! `fault::targets`, the one place the test suite does.
//!
//! Tests that need root or `mount` say so on stderr and pass when they cannot run.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{core_get as get, minivault_bin, open_core, serial, wal_record_starts, FaultDb as TestDb};
use minivault::repl::{format_value, parse_line, Command as ReplCommand};
use minivault::{Db, Durability, Options};
use minivault_core::{Error, SyncPolicy, MAX_KEY_LEN};
use minivault_suite::fault::{targets, FaultError, FaultStorage, ManualClock, Rng};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

mod common;

fn open_fault(storage: &FaultStorage, mem: usize) -> Result<TestDb, Error<FaultError>> {
    common::open_fault(storage, mem, SyncPolicy::EveryWrite)
}

/// Runs `minivault DIR` with `script` on stdin; returns (stdout, stderr, exit code).
fn run_repl(dir: &Path, script: &[u8]) -> (String, String, Option<i32>) {
    let mut child = Command::new(minivault_bin())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minivault");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&script);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn posix_open(dir: &Path) -> Result<Db, minivault::Error> {
    Db::open_with(dir, common::options(64 * 1024, Durability::Always))
}

/// A small database with data in SSTables and in the WAL; returns what it holds.
fn populate(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = posix_open(dir).expect("open");
    let mut want = BTreeMap::new();
    for i in 0..50u32 {
        let (k, v) = (format!("key{i:03}").into_bytes(), format!("value-{i}").repeat(3).into_bytes());
        db.put(&k, &v).expect("put");
        want.insert(k, v);
        if i == 24 {
            db.flush().expect("flush");
        }
    }
    want
}

fn assert_holds(dir: &Path, want: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let db = posix_open(dir).expect("open");
    for (k, v) in want {
        assert_eq!(db.get(k).expect("get").as_ref(), Some(v), "key {}", String::from_utf8_lossy(k));
    }
}

// ---------------------------------------------------------------------------------------------
// Limits, through the engine.

#[test]
fn oversized_keys_and_values_are_rejected_and_nothing_is_lost() {
    let storage = FaultStorage::new(0);
    let mem = 64 * 1024;
    let mut db = open_fault(&storage, mem).expect("open");
    db.put(b"keep", b"me").unwrap();
    let long_key = vec![b'k'; MAX_KEY_LEN + 1];
    assert_eq!(db.put(&long_key, b"v"), Err(Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN }));
    assert_eq!(db.delete(&long_key), Err(Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN }));
    let mut buf = [0u8; 8];
    assert!(matches!(db.get(&long_key, &mut buf), Err(Error::KeyTooLarge { .. })));
    // The largest key is fine.
    db.put(&vec![b'k'; MAX_KEY_LEN], b"max key").unwrap();
    // A value beyond what one MemTable holds is refused with the limit, which itself is accepted.
    let Err(Error::ValueTooLarge { len, max }) = db.put(b"big", &vec![1u8; mem]) else {
        panic!("oversized value accepted")
    };
    assert_eq!(len, mem);
    assert!(max > mem / 2 && max < mem, "max {max}");
    db.put(b"big", &vec![2u8; max]).expect("a value of exactly the limit");
    assert_eq!(
        db.put(b"big2", &vec![2u8; max + 1]),
        Err(Error::ValueTooLarge { len: max + 1, max: max - 1 })
    );
    assert!(!db.is_poisoned(), "a rejected request must not poison the database");
    drop(db);
    let mut db = open_fault(&storage, mem).expect("reopen");
    assert_eq!(get(&mut db, b"keep").as_deref(), Some(&b"me"[..]));
    assert_eq!(get(&mut db, b"big").map(|v| v.len()), Some(max));
    assert_eq!(get(&mut db, &vec![b'k'; MAX_KEY_LEN]).as_deref(), Some(&b"max key"[..]));
}

#[test]
fn empty_keys_are_rejected_everywhere() {
    let storage = FaultStorage::new(0);
    let mut db = open_fault(&storage, 4096).expect("open");
    assert_eq!(db.put(b"", b"v"), Err(Error::EmptyKey));
    assert_eq!(db.put_expiring(b"", b"v", 5_000), Err(Error::EmptyKey));
    assert_eq!(db.delete(b""), Err(Error::EmptyKey));
    assert!(matches!(db.get(b"", &mut [0u8; 4]), Err(Error::EmptyKey)));
    assert!(!db.is_poisoned());
    db.put(b"k", b"v").expect("the database goes on");
}

#[test]
fn expiry_at_or_before_now_is_rejected() {
    let storage = FaultStorage::new(0);
    let clock = ManualClock::new(1_000);
    let mut db = open_core(storage.clone(), &clock, 4096, SyncPolicy::EveryWrite).expect("open");
    assert_eq!(db.put_expiring(b"k", b"v", 1_000), Err(Error::InvalidTtl));
    assert_eq!(db.put_expiring(b"k", b"v", 0), Err(Error::InvalidTtl));
    db.put_expiring(b"k", b"v", u64::MAX).expect("the far future is fine");
    db.put_expiring(b"j", b"v", 1_001).expect("one tick ahead");
    clock.advance(1);
    assert_eq!(get(&mut db, b"j"), None, "expired at its time");
    assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"v"[..]));
    assert!(!db.is_poisoned());
}

/// Regression (found by this file, fixed in the engine): with a 512-byte MemTable (the minimum)
/// a 1 KiB key passed the key check and an empty value the value check (`max_value` saturated
/// to 0); the record was synced to the WAL, the MemTable insert failed, the call returned
/// `Error::Poisoned`, and every later open failed with `InsufficientMemory`.
#[test]
fn key_too_long_for_the_memtable_is_rejected_cleanly_and_the_database_still_opens() {
    let storage = FaultStorage::new(0);
    let mut db = open_fault(&storage, 512).expect("open");
    db.put(b"a", b"1").unwrap();
    let r = db.put(&vec![b'k'; MAX_KEY_LEN], b"");
    assert!(
        matches!(r, Err(Error::ValueTooLarge { .. } | Error::KeyTooLarge { .. })),
        "expected a size error, got {r:?} (poisoned: {})",
        db.is_poisoned()
    );
    assert!(!db.is_poisoned(), "a rejected request must not poison the database");
    drop(db);
    let mut db = open_fault(&storage, 512).expect("the database must still open with its own memory budget");
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"1"[..]));
}

/// Regression (found by this file and the random-moments test of `tests/kill9_loses_no_acknowledged_write.rs`, fixed in the engine): MemTables
/// under 3 KiB gave compaction no scratch space (it reserved 3 × MAX_KEY_LEN), so every flush
/// added a table; at MAX_TABLES (then 256) the next flush failed with `TooManyTables` and poisoned the
/// database, and from then on `Db::open` failed with `TooManyTables` whatever the MemTable
/// size, because open flushed the replayed WALs before it could compact.
#[test]
fn database_at_the_table_limit_still_opens_and_takes_writes() {
    let storage = FaultStorage::new(0);
    let mut db = open_fault(&storage, 2048).expect("open");
    let mut refused = None;
    for i in 0..300u32 {
        let step = db.put(format!("k{}", i % 7).as_bytes(), b"v").and_then(|()| db.flush());
        if let Err(e) = step {
            refused = Some((i, e, db.stats().tables));
            break;
        }
    }
    drop(db);
    let reopened = open_fault(&storage, 8192).map(|_| ());
    assert!(
        refused.is_none() && reopened.is_ok(),
        "writes refused after {refused:?} (i, error, tables); reopen with 8 KiB MemTables: {reopened:?}"
    );
}

#[test]
fn full_fault_storage_refuses_writes_and_loses_nothing() {
    let storage = FaultStorage::new(0);
    let mut db = open_fault(&storage, 2048).expect("open");
    storage.set_capacity(Some(6_000));
    let mut acked = BTreeMap::new();
    let mut err = None;
    for i in 0..10_000u32 {
        let (k, v) = (format!("k{:03}", i % 150).into_bytes(), format!("value {i}").into_bytes());
        match db.put(&k, &v) {
            Ok(()) => {
                acked.insert(k, v);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("the device fills up");
    assert_eq!(err, Error::Full, "a clear out-of-space error");
    assert!(!db.is_poisoned(), "out of space is not poisoning: nothing of the write was stored");
    assert_eq!(db.put(b"x", b"y"), Err(Error::Full), "still full");
    for (k, v) in &acked {
        assert_eq!(get(&mut db, k).as_ref(), Some(v), "reads go on");
    }
    drop(db);
    storage.power_cut_lose_all();
    // Still full: the database opens (recovery skips the flush it has no room for) and holds
    // every acknowledged write.
    let mut db = open_fault(&storage, 2048).expect("open on a full device");
    for (k, v) in &acked {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
    drop(db);
    // With room again, everything acknowledged is there and writes go on.
    storage.set_capacity(None);
    let mut db = open_fault(&storage, 2048).expect("open once there is room");
    for (k, v) in &acked {
        assert_eq!(get(&mut db, k).as_ref(), Some(v));
    }
    db.put(b"x", b"y").expect("writes once there is room");
}

// ---------------------------------------------------------------------------------------------
// The REPL, through the binary.

#[test]
fn repl_answers_hostile_lines_with_errors_and_goes_on() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut script: Vec<u8> = Vec::new();
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let lines: Vec<Vec<u8>> = vec![
        b"put good value".to_vec(),
        b"frobnicate x".to_vec(),
        b"put k \"unterminated".to_vec(),
        b"put k 'also unterminated".to_vec(),
        b"put k v\x00".to_vec(),
        b"put k \xff\xfe".to_vec(),
        b"put \"\" empty-key".to_vec(),
        format!("put {long_key} v").into_bytes(),
        b"put k v EX 0".to_vec(),
        b"put k v EX -5".to_vec(),
        b"put k v EX 99999999999".to_vec(),
        b"put k v EX".to_vec(),
        b"get".to_vec(),
        b"del".to_vec(),
        b"put a\"b\" v".to_vec(),
        b"get \"\\q\"".to_vec(),
        vec![b'x'; 5 * 1024 * 1024],
        b"put good2 \"two words\"\r".to_vec(),
        b"get good".to_vec(),
        b"get good2".to_vec(),
        b"get k".to_vec(),
    ];
    for l in &lines {
        script.extend_from_slice(l);
        script.push(b'\n');
    }
    let (out, err, code) = run_repl(&dir, &script);
    assert_eq!(code, Some(0), "stderr: {err}");
    let replies: Vec<&str> = out.lines().collect();
    let expected_prefixes = [
        "OK",
        "ERR unknown command frobnicate",
        "ERR unterminated quote",
        "ERR unterminated quote",
        "ERR raw control byte 0x00",
        "ERR input is not valid UTF-8",
        "ERR empty key",
        "ERR key of 1025 bytes exceeds 1024",
        "ERR invalid TTL 0",
        "ERR invalid TTL -5",
        "ERR invalid TTL 99999999999",
        "ERR invalid TTL",
        "ERR wrong number of arguments for get",
        "ERR wrong number of arguments for del",
        "ERR quote inside a token",
        "ERR invalid escape \\q",
        "ERR line too long",
        "OK",
        "value",
        "\"two words\"",
        "(nil)",
    ];
    assert_eq!(replies.len(), expected_prefixes.len(), "one reply per line:\n{out}");
    for (got, want) in replies.iter().zip(expected_prefixes) {
        assert!(got.starts_with(want), "reply {got:?} does not start with {want:?}");
    }
    let db = posix_open(&dir).expect("reopen");
    assert_eq!(db.get(b"good").unwrap().as_deref(), Some(&b"value"[..]));
    assert_eq!(db.get(b"good2").unwrap().as_deref(), Some(&b"two words"[..]));
    assert_eq!(db.get(b"k").unwrap(), None, "no hostile line stored anything");
}

// ---------------------------------------------------------------------------------------------
// The database directory.

#[test]
fn stray_and_truncated_files_give_clear_errors_and_lose_nothing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let want = populate(&dir);
    let table = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table");
    let table_bytes = fs::read(&table).unwrap();

    // Files that are not the engine's are left alone.
    fs::write(dir.join("notes.txt"), b"hello").unwrap();
    fs::write(dir.join("1.wal"), b"short name").unwrap();
    fs::write(dir.join("000000000000000G.sst"), b"not hex").unwrap();
    fs::create_dir(dir.join("00000000000000aa.sst")).unwrap();
    assert_holds(&dir, &want);
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"hello", "unrelated files untouched");
    assert!(dir.join("00000000000000aa.sst").is_dir());

    // A leftover temporary table is an interrupted flush: removed on open.
    fs::write(dir.join("00000000000000f0.tmp"), b"half a table").unwrap();
    assert_holds(&dir, &want);
    assert!(!dir.join("00000000000000f0.tmp").exists());

    // Damaged files named like tables: open refuses with a corruption error naming the file,
    // removes nothing, and once the file is moved away everything is there.
    let cases: [(&str, Vec<u8>); 3] = [
        ("00000000000000f1.sst", Vec::new()),
        ("00000000000000f2.sst", table_bytes[..table_bytes.len() / 2].to_vec()),
        ("00000000000000f3.sst", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
    ];
    for (name, bytes) in cases {
        fs::write(dir.join(name), &bytes).unwrap();
        let err = posix_open(&dir)
            .err()
            .unwrap_or_else(|| panic!("{name} ({} bytes) was accepted as a table", bytes.len()));
        assert!(err.is_corruption(), "{name}: {err}");
        assert!(err.to_string().contains(name), "the error names the file: {err}");
        fs::remove_file(dir.join(name)).unwrap();
        assert_holds(&dir, &want);
    }

    // Random bytes named like a WAL: a newer one reads as a torn tail (cut to nothing), an older
    // one as corruption. Either way the stored data is intact.
    for name in ["00000000000000f4.wal", "0000000000000000.wal"] {
        fs::write(dir.join(name), (0..300u32).map(|i| (i * 31 % 256) as u8).collect::<Vec<u8>>()).unwrap();
        match posix_open(&dir) {
            Ok(db) => drop(db),
            Err(e) => assert!(e.is_corruption(), "{name}: {e}"),
        }
        let _ = fs::remove_file(dir.join(name));
        assert_holds(&dir, &want);
    }
}

// ---------------------------------------------------------------------------------------------
// The environment.

/// A mount that is undone when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], target: &Path) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(args)
            .arg(target)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(target.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_directory_gives_a_clear_error_and_loses_nothing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let want = populate(&dir);
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let Some(bind) = Mount::new(&["--bind", dir.to_str().unwrap()], &ro) else {
        eprintln!("read_only_directory: cannot bind-mount here (not root?); skipped");
        return;
    };
    let remounted =
        Command::new("mount").args(["-o", "remount,bind,ro"]).arg(&ro).status().is_ok_and(|s| s.success());
    assert!(remounted, "remount read-only");
    let err = posix_open(&ro).expect_err("a read-only directory cannot be opened for writing");
    let msg = err.to_string();
    assert!(msg.contains("Read-only file system") && msg.contains("ro"), "{msg}");
    // Through the binary: a one-line reason and exit code 1.
    let (out, stderr, code) = run_repl(&ro, b"get key001\n");
    assert_eq!((out.as_str(), code), ("", Some(1)), "stderr: {stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    drop(bind);
    assert_holds(&dir, &want);
}

#[test]
fn permission_denied_directory_gives_a_clear_error() {
    let _serial = serial();
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !is_root || !has_setpriv {
        eprintln!("permission_denied_directory: needs root and setpriv to drop to nobody; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let want = populate(&dir);
    // Root bypasses permission bits, so the binary runs as nobody; the directory stays root's.
    fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(minivault_bin())
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run minivault as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("Permission denied") && stderr.contains("cannot open"), "{stderr}");
    assert_holds(&dir, &want);
}

#[test]
fn full_disk_refuses_writes_and_loses_nothing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let Some(mount) = Mount::new(&["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &mnt) else {
        eprintln!("full_disk: cannot mount a tmpfs here; covered by full_fault_storage_refuses_writes_and_loses_nothing");
        return;
    };
    let dir = mnt.join("db");
    let opts = Options { memtable_bytes: 16 * 1024, durability: Durability::Always, ..Options::default() };
    let db = Db::open_with(&dir, opts).expect("open");
    let mut acked = BTreeMap::new();
    let mut failure = None;
    for i in 0..100_000u32 {
        let (k, v) = (format!("key{:04}", i % 3000).into_bytes(), vec![b'v'; 200]);
        match db.put(&k, &v) {
            Ok(()) => {
                acked.insert(k, v);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 256 KiB tmpfs fills up");
    assert!(matches!(failure, minivault::Error::Engine(minivault::EngineError::Full)), "{failure}");
    assert!(failure.to_string().contains("no space"), "{failure}");
    assert!(!db.is_poisoned(), "ENOSPC is not poisoning: nothing of the write was stored");
    // A smaller write may still fit where the failed one did not; it fails the same way or works.
    match db.put(b"more", b"data") {
        Ok(()) => {
            acked.insert(b"more".to_vec(), b"data".to_vec());
        }
        Err(minivault::Error::Engine(minivault::EngineError::Full)) => {}
        Err(e) => panic!("a write on a full disk: {e}"),
    }
    for (k, v) in acked.iter().take(50) {
        assert_eq!(db.get(k).expect("reads go on").as_ref(), Some(v));
    }
    drop(db);
    // Still full: the database opens (recovery skips a flush it has no room for) and holds every
    // acknowledged write.
    let db = Db::open_with(&dir, opts).expect("open on a full disk");
    for (k, v) in &acked {
        assert_eq!(db.get(k).expect("get").as_ref(), Some(v), "key {}", String::from_utf8_lossy(k));
    }
    drop(db);
    let full_open = "opened";
    // Room again: every acknowledged write is there, and writes go on.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=2m"])
        .arg(&mount.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "grow the tmpfs");
    let db = Db::open_with(&dir, opts).expect("open once there is room");
    for (k, v) in &acked {
        assert_eq!(db.get(k).expect("get").as_ref(), Some(v), "key {}", String::from_utf8_lossy(k));
    }
    db.put(b"more", b"data").expect("writes once there is room");
    eprintln!(
        "full_disk: {} writes acknowledged before ENOSPC ({failure}); open while full: {full_open}",
        acked.len()
    );
}

#[test]
fn second_process_on_a_locked_directory_is_refused() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut first = Command::new(minivault_bin())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(b"put a 1\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = first.stdout.take().unwrap();
    let mut ok = [0u8; 3];
    stdout.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK\n", "the first process holds the database");

    let (out, err, code) = run_repl(&dir, b"put b 2\n");
    assert_eq!((out.as_str(), code), ("", Some(1)));
    assert!(err.contains("database is locked") && err.contains("in use by another process"), "{err}");
    match posix_open(&dir) {
        Err(minivault::Error::Locked { .. }) => {}
        Err(e) => panic!("expected Error::Locked, got {e}"),
        Ok(_) => panic!("a second handle opened a locked database"),
    }

    drop(stdin); // end of input: the first process exits cleanly and releases the lock
    assert!(first.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(10));
    let db = posix_open(&dir).expect("open after the first process left");
    assert_eq!(db.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get(b"b").unwrap(), None);
}

/// File names are bytes on disk too: a stray file whose name parses as id 0 or the largest id
/// must not make open underflow or overflow its id arithmetic.
#[test]
fn stray_files_named_with_extreme_ids_do_not_break_open() {
    let _serial = serial(); // drops and reopens: see serial()
    for name in
        ["0000000000000000.wal", "ffffffffffffffff.sst", "ffffffffffffffff.wal", "8000000000000000.tmp"]
    {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.put(b"k", b"v").unwrap();
        }
        std::fs::write(dir.path().join(name), b"\x05\x00\x00\x00garbage").unwrap();
        let db = Db::open(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]), "{name}");
        db.put(b"k2", b"v2").unwrap();
        assert!(dir.path().join(name).exists(), "{name}: a foreign file is left alone");
    }
}

// ---------------------------------------------------------------------------------------------
// The fuzz targets' checks, in the normal `cargo test`.

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("record_decode", targets::record_decode),
    ("wal_replay", targets::wal_replay),
    ("sstable_lookup", targets::sstable_lookup),
    ("repl_parse", targets::repl_parse),
    ("ops", targets::ops),
    ("scan_merge", targets::scan_merge),
];

#[test]
fn saved_fuzz_inputs_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let Ok(entries) = fs::read_dir(root.join(name)) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let data = fs::read(&path).expect("read saved input");
            eprintln!("replaying {}", path.display());
            target(&data);
            replayed += 1;
        }
    }
    eprintln!("{replayed} saved fuzz inputs replayed");
}

#[test]
fn hand_made_edge_cases() {
    let huge_len = [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0, 1, 2, 3];
    let zero_len = [0u8; 16];
    // kind put, key "k", value "v", framed.
    let one_record = targets::frame(&[1u8, 1, 0, b'k', b'v']);
    let mut twice = one_record.clone();
    twice.extend_from_slice(&one_record);
    let mut damaged_middle = twice.clone();
    damaged_middle[one_record.len() - 1] ^= 1;
    let footer_only = {
        let mut b = b"MVSSTBL1".to_vec();
        b.resize(48, 0);
        b
    };
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        huge_len.to_vec(),
        zero_len.to_vec(),
        one_record.clone(),
        [&[0u8][..], &one_record].concat(),
        [&[3u8][..], &twice].concat(),
        [&[0u8][..], &damaged_middle].concat(),
        [&[1u8][..], &damaged_middle].concat(),
        [&[0u8][..], &footer_only, b"k"].concat(),
        [&[1u8][..], &[7u8; 200][..]].concat(),
        b"put \"\\xff\\x00\" 'v' EX 4294967295".to_vec(),
        b"put k \"\xc3\x28\"".to_vec(),
        [&[5u8][..], &[0u8, 1, 9, 1, 7, 0, 8, 0, 9, 0, 6, 1][..]].concat(),
    ];
    for (name, target) in TARGETS {
        for input in &inputs {
            eprintln!("{name}: {} bytes", input.len());
            target(input);
        }
    }
}

#[test]
fn pseudo_random_inputs_do_not_break_the_targets() {
    let mut rng = Rng::new(0xF022);
    for (name, target) in TARGETS {
        let runs = if name == "ops" || name == "scan_merge" { 60 } else { 300 };
        for _ in 0..runs {
            let len = rng.below(600) as usize;
            let data = rng.bytes(len);
            target(&data);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests of the decoders.

const WAL: &str = "0000000000000001.wal";
const MEM: usize = 64 * 1024;

fn open(storage: &FaultStorage) -> Result<TestDb, Error<FaultError>> {
    open_core(storage.clone(), &ManualClock::new(10), MEM, SyncPolicy::EveryWrite)
}

/// A write for the generated workloads: key index, value (None = delete).
fn op() -> impl Strategy<Value = (u8, Option<Vec<u8>>)> {
    (0u8..12, prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..80)))
}

fn key(i: u8) -> Vec<u8> {
    format!("key{i}").into_bytes()
}

/// Runs `ops` through a fresh database and returns its WAL bytes (with their preallocated zero
/// tail) and the expected contents.
/// Key → value: what a database holds.
type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

fn wal_of(ops: &[(u8, Option<Vec<u8>>)]) -> (Vec<u8>, Vec<Contents>) {
    let storage = FaultStorage::new(0);
    let mut db = open(&storage).expect("open");
    let mut states = vec![BTreeMap::new()];
    let mut state = BTreeMap::new();
    for (k, v) in ops {
        match v {
            Some(v) => {
                db.put(&key(*k), v).expect("put");
                state.insert(key(*k), v.clone());
            }
            None => {
                db.delete(&key(*k)).expect("delete");
                state.remove(&key(*k));
            }
        }
        states.push(state.clone());
    }
    drop(db);
    let wal = storage.names().into_iter().find(|n| n.ends_with(".wal")).expect("a WAL");
    (storage.read_file(&wal).expect("WAL bytes"), states)
}

fn contents(db: &mut TestDb) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    (0u8..12).filter_map(|i| db.get(&key(i), &mut buf).expect("get").map(|v| (key(i), v.to_vec()))).collect()
}

/// The offsets where whole records end in a valid WAL (the first: where the file header ends).
fn record_ends(wal: &[u8]) -> Vec<usize> {
    wal_record_starts(wal)
}

proptest! {
    // Failing cases are saved next to this file, and replayed first on the next run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/hostile_input.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn record_decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), small_len in any::<bool>()) {
        let mut bytes = bytes;
        if small_len && bytes.len() >= 4 {
            // Make the declared length plausible, so decoding goes past the length check.
            let len = (bytes.len() as u32).saturating_sub(targets::RECORD_HEADER_LEN as u32);
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        targets::record_decode(&bytes);
    }

    #[test]
    fn record_round_trips_and_detects_truncation_and_flips(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4), flip in any::<prop::sample::Index>()) {
        prop_assume!(parts.iter().any(|p| !p.is_empty()));
        targets::record_round_trip(&parts, flip.index(usize::MAX));
    }

    #[test]
    fn entry_decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        targets::entry_decode(&bytes);
    }

    #[test]
    fn entry_round_trips(key in prop::collection::vec(any::<u8>(), 1..40), value in prop::collection::vec(any::<u8>(), 0..40), kind in 0u8..3, t in any::<u64>()) {
        targets::entry_round_trip(&key, &value, kind, t);
    }

    #[test]
    fn wal_replay_of_arbitrary_bytes_opens_or_reports_corruption(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &bytes);
        match open(&storage) {
            Ok(mut db) => {
                let mut buf = vec![0u8; 1024];
                let _ = db.get(b"key1", &mut buf);
                db.put(b"after", b"replay").expect("the recovered database takes writes");
            }
            Err(Error::Corrupted { .. } | Error::InsufficientMemory { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn wal_cut_at_any_byte_replays_exactly_its_whole_records(ops in prop::collection::vec(op(), 1..30), cut in any::<prop::sample::Index>()) {
        let (wal, states) = wal_of(&ops);
        let cut = cut.index(wal.len() + 1);
        // A cut inside the file header leaves no record.
        let whole = record_ends(&wal).iter().filter(|&&e| e <= cut).count().saturating_sub(1);
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal[..cut]);
        let mut db = open(&storage).expect("a torn tail must not stop the database from opening");
        prop_assert_eq!(&contents(&mut db), &states[whole]);
    }

    #[test]
    fn garbage_after_a_valid_wal_is_cut_off_as_a_torn_tail(ops in prop::collection::vec(op(), 1..20), garbage in prop::collection::vec(any::<u8>(), 1..300), over_zero_tail in any::<bool>()) {
        // All-zero "garbage" is a zero tail, the clean end of a WAL (the next property).
        prop_assume!(garbage.iter().any(|&b| b != 0));
        let (mut wal, states) = wal_of(&ops);
        let good = *record_ends(&wal).last().expect("ends");
        if over_zero_tail {
            // Where a torn append into the preallocated tail leaves it: zeros follow.
            wal.resize(wal.len().max(good + garbage.len()), 0);
            wal[good..good + garbage.len()].copy_from_slice(&garbage);
        } else {
            wal.extend_from_slice(&garbage);
        }
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal);
        let mut db = open(&storage).expect("open");
        prop_assert_eq!(&contents(&mut db), states.last().expect("states"));
        prop_assert_eq!(db.stats().torn_tails_truncated, 1);
        drop(db);
        prop_assert_eq!(storage.read_file(WAL).expect("WAL").len(), good, "the torn tail is cut off");
    }

    #[test]
    fn zeros_after_a_valid_wal_are_its_clean_end_not_a_torn_tail(ops in prop::collection::vec(op(), 1..20), zeros in 0usize..5000) {
        let (wal, states) = wal_of(&ops);
        let good = *record_ends(&wal).last().expect("ends");
        let mut wal = wal[..good].to_vec();
        wal.resize(good + zeros, 0);
        let storage = FaultStorage::new(0);
        storage.write_file(WAL, &wal);
        let mut db = open(&storage).expect("open");
        prop_assert_eq!(&contents(&mut db), states.last().expect("states"));
        prop_assert_eq!(db.stats().torn_tails_truncated, 0);
        prop_assert_eq!(db.stats().wal_bytes, (good - record_ends(&wal)[0]) as u64);
        db.put(b"after", b"zero tail").expect("put");
        drop(db);
        let mut db = open(&storage).expect("reopen");
        let mut buf = [0u8; 16];
        prop_assert_eq!(db.get(b"after", &mut buf).expect("get"), Some(&b"zero tail"[..]));
        prop_assert_eq!(db.stats().torn_tails_truncated, 0);
    }

    #[test]
    fn sstable_open_and_lookup_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), key in prop::collection::vec(any::<u8>(), 1..20)) {
        targets::sstable_open_and_lookup(&bytes, &key);
    }

    #[test]
    fn sstable_with_a_flipped_bit_gives_an_error_or_the_right_answer(ops in prop::collection::vec(op(), 1..30), flip in any::<prop::sample::Index>()) {
        let storage = FaultStorage::new(0);
        let mut db = open(&storage).expect("open");
        let mut state: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &ops {
            match v {
                Some(v) => db.put(&key(*k), v).expect("put"),
                None => db.delete(&key(*k)).expect("delete"),
            }
            state.insert(key(*k), v.clone());
        }
        db.flush().expect("flush");
        drop(db);
        let Some(sst) = storage.names().into_iter().find(|n| n.ends_with(".sst")) else {
            // Only tombstones with no older table: nothing to write.
            return Ok(());
        };
        let mut bytes = storage.read_file(&sst).expect("table");
        let bit = flip.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        targets::check_damaged_table(bytes, &state);
    }

    #[test]
    fn repl_parser_never_panics(line in prop::collection::vec(prop::sample::select(b"putgetdlEX \t\"'\\x0123nrt\x00\xff\xc3\xa9\r\n".to_vec()), 0..40)) {
        let _ = parse_line(&line);
    }

    #[test]
    fn repl_parser_of_arbitrary_bytes_never_panics(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_line(&line);
    }

    #[test]
    fn repl_format_value_round_trips_through_the_parser(key in prop::collection::vec(any::<u8>(), 1..30), value in prop::collection::vec(any::<u8>(), 0..60)) {
        let line = format!("put {} {}", format_value(&key), format_value(&value));
        prop_assert_eq!(parse_line(line.as_bytes()), Ok(Some(ReplCommand::Put { key, value, ttl_secs: None })));
    }
}
