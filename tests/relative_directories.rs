//! The README's first command, as a new user types it: the binary with no directory (it creates
//! `./minivault-data`), or with a relative one, run from a fresh working directory. Every other
//! test uses an absolute temporary directory, which hid that `minivault rel` failed to create
//! `rel` (`Path::parent` of a one-part relative path is `""`, and `mkdir("")` fails).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `minivault [dir]` in `cwd` with `script` on stdin; returns stdout, stderr and the status.
fn run_in(cwd: &Path, dir: Option<&str>, script: &str) -> (String, String, i32) {
    let mut cmd = Command::new(common::minivault_bin());
    cmd.current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.arg(d);
    }
    let mut child = cmd.spawn().expect("spawn minivault");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write script");
    let out = child.wait_with_output().expect("wait for minivault");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn binary_without_a_directory_creates_minivault_data_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let (out, err, code) = run_in(cwd.path(), None, "put a 1\nget a\n");
    assert_eq!((out.as_str(), err.as_str(), code), ("OK\n1\n", "", 0));
    assert!(cwd.path().join("minivault-data").is_dir());
    // And the data is there on the next start.
    let (out, _, code) = run_in(cwd.path(), None, "get a\n");
    assert_eq!((out.as_str(), code), ("1\n", 0));
}

#[test]
fn relative_directories_of_one_or_more_parts_are_created() {
    let cwd = tempfile::tempdir().unwrap();
    for dir in ["rel", "a/b/c", "./x", "./y/z", "rel/"] {
        let (out, err, code) = run_in(cwd.path(), Some(dir), "put k v\nget k\n");
        assert_eq!((out.as_str(), err.as_str(), code), ("OK\nv\n", "", 0), "minivault {dir}");
        assert!(cwd.path().join(dir).is_dir(), "{dir} was not created");
    }
}

#[test]
fn library_open_with_a_relative_path_creates_the_directory() {
    // The README's library snippet, literally, from a fresh working directory. Changing the
    // working directory is process-wide: the other tests of this file use absolute paths only.
    let cwd = tempfile::tempdir().unwrap();
    std::env::set_current_dir(cwd.path()).unwrap();
    let db = minivault::Db::open("telemetry-data").unwrap();
    db.put(b"sensor/1", b"21.5").unwrap();
    assert_eq!(db.get(b"sensor/1").unwrap().as_deref(), Some(&b"21.5"[..]));
    drop(db);
    assert!(cwd.path().join("telemetry-data").is_dir());
}
