//! Helpers shared by the end-to-end tests: the `minivault` binary, the files in a database
//! directory, the WAL's layout (the one place the tests know it), and the random number
//! generator (`minivault_suite::fault::Rng`, re-exported).
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod cli;
pub mod tmux;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use minivault::{Durability, Options};
use minivault_core::{Clock, Config, Db, MemStorage, Storage, SyncPolicy};
pub use minivault_suite::fault::Rng;
use minivault_suite::fault::{show, FaultError, FaultStorage, ManualClock};

// ---------------------------------------------------------------------------------------------
// Opening and reading databases.

/// The core engine on the device model, with a manual clock.
pub type FaultDb = Db<FaultStorage, ManualClock, Vec<u8>>;

/// The in-memory storage of the core tests: 64 files.
pub type Mem = MemStorage<Vec<u8>, 64>;

/// The core engine on [`Mem`], with a manual clock (the firmware configuration).
pub type MemDb = Db<Mem, ManualClock, Vec<u8>>;

/// Opens the core engine on `storage`: two MemTables of `mem` bytes, `clock`, `sync`.
pub fn open_core<S: Storage>(
    storage: S,
    clock: &ManualClock,
    mem: usize,
    sync: SyncPolicy,
) -> Result<Db<S, ManualClock, Vec<u8>>, minivault_core::Error<S::Error>> {
    Db::open(storage, clock.clone(), [vec![0u8; mem], vec![0u8; mem]], Config::with_sync(sync))
}

/// Opens the core engine on (a handle to) `storage` with the clock at 1,000.
pub fn open_fault(
    storage: &FaultStorage,
    mem: usize,
    sync: SyncPolicy,
) -> Result<FaultDb, minivault_core::Error<FaultError>> {
    open_core(storage.clone(), &ManualClock::new(1_000), mem, sync)
}

/// A fresh [`Mem`] of 32 KiB per file.
pub fn mem_storage() -> Mem {
    MemStorage::new(vec![0; 64 * 32 * 1024])
}

/// Closes a core database cleanly (syncing its WAL) and gives its storage back.
pub fn close_core<S: Storage, C: Clock, M: AsRef<[u8]> + AsMut<[u8]>>(db: Db<S, C, M>) -> S {
    let (storage, closed) = db.close();
    closed.unwrap_or_else(|e| panic!("close: {e}"));
    storage
}

/// `key`'s value in a core database (values up to 64 KiB); a read error fails the test.
pub fn core_get<S: Storage, C: Clock, M: AsRef<[u8]> + AsMut<[u8]>>(
    db: &mut Db<S, C, M>,
    key: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    db.get(key, &mut buf).unwrap_or_else(|e| panic!("get {}: {e}", show(key))).map(<[u8]>::to_vec)
}

/// The values of `keys` in a core database (absent keys left out), and `Err` naming the key
/// whose read failed or, for `absent`, a key that is present.
pub fn read_keys<S: Storage, C: Clock, M: AsRef<[u8]> + AsMut<[u8]>>(
    db: &mut Db<S, C, M>,
    keys: &[Vec<u8>],
    absent: &[&[u8]],
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = BTreeMap::new();
    for key in keys {
        match db.get(key, &mut buf) {
            Ok(Some(v)) => {
                out.insert(key.clone(), v.to_vec());
            }
            Ok(None) => {}
            Err(e) => return Err(format!("get {} failed: {e:?}", show(key))),
        }
    }
    for key in absent {
        match db.get(key, &mut buf) {
            Ok(None) => {}
            other => return Err(format!("never-written key {} reads {other:?}", show(key))),
        }
    }
    Ok(out)
}

/// `i` scattered over the `u32`s (a bijection): keys numbered by it in the order they are written
/// land all over the key space, so that every flushed table overlaps the others and the policy
/// merges them as it merges random writes. Sequential keys flush into tables that overlap
/// nothing, which the policy keeps as they are (`minivault_core::compaction::policy`).
pub fn scattered(i: u32) -> u32 {
    i.wrapping_mul(0x9E37_79B1)
}

/// POSIX options: MemTables of `memtable_bytes`, `durability`, the rest default.
pub fn options(memtable_bytes: usize, durability: Durability) -> Options {
    Options { memtable_bytes, durability, ..Options::default() }
}

/// `key`'s value in a POSIX database; a read error fails the test.
pub fn get(db: &mut minivault::Db, key: &[u8]) -> Option<Vec<u8>> {
    db.get(key).unwrap_or_else(|e| panic!("get {}: {e}", show(key)))
}

/// The `minivault` binary, built once per test binary.
///
/// `CARGO_BIN_EXE_minivault` exists only for tests of the `minivault` package itself, so this
/// asks Cargo to build the binary with the same profile as the running test and returns its
/// path under the workspace target directory.
pub fn minivault_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_minivault)
}

fn build_minivault() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_relative() { workspace.join(d) } else { d })
        .unwrap_or_else(|| workspace.join("target"));
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", "minivault", "--bin", "minivault"])
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build for the minivault binary");
    assert!(
        out.status.success(),
        "cargo build -p minivault --bin minivault failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir
        .join(if release { "release" } else { "debug" })
        .join(format!("minivault{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "built binary not found at {}", bin.display());
    bin
}

/// Holds the tests of one test binary that must not overlap.
///
/// The directory lock is a `flock` on `LOCK`. While any thread of the test process spawns a
/// child, the child briefly shares every open descriptor (until its `exec` closes them), so a
/// lock just released by a dropped `Db` can still be held for that instant and a reopen fails
/// with `Error::Locked`. Tests that drop, reopen and spawn take this guard to run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The files in `dir` whose names end in `.{ext}`, sorted by name (so by id: oldest first).
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read database directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The ids of the files in `dir` whose names end in `.{ext}` (`<id>` is 16 hex digits), oldest
/// first; for `wal`, those of [`wal_files`] (no spare).
#[allow(dead_code)]
pub fn file_ids(dir: &Path, ext: &str) -> Vec<u64> {
    let files = if ext == "wal" { wal_files(dir) } else { files_with_ext(dir, ext) };
    files
        .iter()
        .map(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).expect("file name");
            u64::from_str_radix(stem, 16).unwrap_or_else(|_| panic!("not a file id: {stem}"))
        })
        .collect()
}

/// The `<id>.wal` files in `dir` that are the database's WALs, oldest first: every one but a
/// spare WAL waiting for the rotation that will take it ([`is_spare_wal`]), which holds no
/// record and which no count of WALs a test makes is about.
pub fn wal_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "wal").into_iter().filter(|p| !is_spare_wal(p)).collect()
}

/// Every `<id>.wal` file in `dir`, spares included, oldest first.
pub fn all_wal_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "wal")
}

/// True for a spare WAL not taken yet (`minivault_core::wal::spare`): its format-3 header names
/// its predecessor with the end `SPARE_END`; or a file shorter than a header, which only the
/// flush thread leaves, for a moment, while it makes a spare (the engine's own WALs have their
/// header before any call returns).
pub fn is_spare_wal(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else { return false };
    match bytes.get(16..24) {
        Some(end) => {
            wal_header_len(&bytes) == 32 && end == minivault_core::wal::spare::SPARE_END.to_le_bytes()
        }
        None => true,
    }
}

/// The `<id>.sst` files in `dir`, oldest first.
pub fn sst_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "sst")
}

/// Bytes of the WAL file header: 32 in format 3 (`MVWL`, version, reserved, predecessor,
/// checksum), 8 in format 2 (`MVWL`, version, reserved), none in format 1.
pub fn wal_header_len(wal: &[u8]) -> usize {
    match wal.get(..6) {
        Some([b'M', b'V', b'W', b'L', lo, hi]) => {
            minivault_core::wal::header_len(u16::from_le_bytes([*lo, *hi])) as usize
        }
        _ => 0,
    }
}

/// Where the records of the WAL bytes `wal` start, followed by where the last one ends (the
/// WAL's logical end). Records follow the file header and are followed by the preallocated zero
/// tail, whose first four bytes read as a length of 0, which no record has; parsing stops there,
/// at the end of the bytes, or before a record that does not fit.
pub fn wal_record_starts(wal: &[u8]) -> Vec<usize> {
    let mut pos = wal_header_len(wal);
    let mut starts = vec![pos];
    while let Some(h) = wal.get(pos..pos + 8) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len == 0 || pos + 8 + len > wal.len() {
            break;
        }
        pos += 8 + len;
        starts.push(pos);
    }
    starts
}

/// The logical end of the WAL bytes `wal` (see [`wal_record_starts`]), after checking that
/// nothing but zeros follows it.
pub fn wal_logical_len(wal: &[u8]) -> usize {
    let end = *wal_record_starts(wal).last().expect("at least the start");
    assert!(wal[end..].iter().all(|&b| b == 0), "the WAL holds more than records and a zero tail");
    end
}

/// The logical end of the open database's WAL: where its next record goes, from the engine's own
/// count (`Stats::wal_bytes`: the bytes of records, summed over the WALs; this checks there is
/// one) plus the WAL's file header ([`wal_header_len`]).
///
/// Tests that damage a WAL's unsynced tail note this after each write and damage the ranges
/// between, so they hold no WAL offset of their own. With [`wal_record_starts`] and
/// [`wal_logical_len`], this is the test suite's knowledge of the WAL format: a format change
/// that moves records (a file header, a per-record field) is adapted here.
pub fn wal_end(db: &minivault::Db) -> u64 {
    let wals = wal_files(db.path());
    assert_eq!(wals.len(), 1, "wal_end needs a database with one WAL: {wals:?}");
    let header = wal_header_len(&fs::read(&wals[0]).expect("read WAL")) as u64;
    header + db.stats().wal_bytes
}

/// The bytes of records in the WAL files `wals`, summed (what `Stats::wal_bytes` counts).
pub fn total_wal_record_bytes(wals: &[PathBuf]) -> u64 {
    wals.iter()
        .map(|p| {
            let bytes = fs::read(p).expect("read WAL");
            (wal_logical_len(&bytes) - wal_header_len(&bytes)) as u64
        })
        .sum()
}

/// Total size in bytes of `files`.
pub fn total_len(files: &[PathBuf]) -> u64 {
    files.iter().map(|p| fs::metadata(p).expect("stat").len()).sum()
}

/// Copies every regular file of `from` into `to` (a flat directory, as a database is).
///
/// The database may be open: a file the listing named that is gone by the time of its copy
/// (the flush thread renames the spare WAL's `<id>.tmp` to `<id>.wal`, or removes an obsolete
/// file) is left out, as a crash before it was made, or after it was removed, leaves it.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy directory");
    for e in fs::read_dir(from).expect("read directory") {
        let e = e.expect("directory entry");
        if e.file_type().expect("file type").is_file() {
            match fs::copy(e.path(), to.join(e.file_name())) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("copy {}: {err}", e.path().display()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process limits.

/// Sets the soft file size limit of this process; returns the previous one.
pub fn set_file_size_limit(bytes: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `old` is a valid rlimit to fill, and the new one is a valid value.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
        let new = libc::rlimit { rlim_cur: bytes, rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &new), 0);
    }
    old
}
