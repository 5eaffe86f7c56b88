//! Helpers shared by the end-to-end tests: the `minivault` binary, the files in a database
//! directory, and a small deterministic random number generator.
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod cli;
pub mod tmux;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

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

/// The `<id>.wal` files in `dir`, oldest first.
pub fn wal_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "wal")
}

/// The `<id>.sst` files in `dir`, oldest first.
pub fn sst_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "sst")
}

/// Bytes of the WAL file header: 8 in format 2 (`MVWL`, version, reserved), none in format 1.
/// The one place besides `core/src/wal/` that knows the WAL's layout.
pub fn wal_header_len(wal: &[u8]) -> usize {
    if wal.starts_with(b"MVWL") {
        8
    } else {
        0
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
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy directory");
    for e in fs::read_dir(from).expect("read directory") {
        let e = e.expect("directory entry");
        if e.file_type().expect("file type").is_file() {
            fs::copy(e.path(), to.join(e.file_name())).expect("copy file");
        }
    }
}

/// SplitMix64: a tiny deterministic generator, so every run of a test does the same thing.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
