//! One database directory, one writer: while a handle (in this process or another) has it open,
//! a second open fails with `Error::Locked` ("database is locked"), without touching the data;
//! once the first handle is gone, open succeeds.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use minivault::{Db, Error};

fn expect_locked(result: Result<Db, Error>, dir: &std::path::Path) {
    match result {
        Err(e @ Error::Locked { .. }) => {
            let Error::Locked { dir: reported } = &e else { unreachable!() };
            assert_eq!(reported, dir);
            let text = e.to_string();
            assert!(text.contains("database is locked"), "{text}");
            assert!(text.contains(&dir.display().to_string()), "{text}");
            assert!(!e.is_corruption());
        }
        Err(e) => panic!("expected Error::Locked, got {e} ({e:?})"),
        Ok(_) => panic!("a second handle opened a directory that is in use"),
    }
}

#[test]
fn second_open_in_the_same_process_is_locked_until_the_first_is_dropped() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let first = Db::open(dir.path()).unwrap();
    first.put(b"k", b"first").unwrap();

    expect_locked(Db::open(dir.path()), dir.path());
    expect_locked(Db::open(dir.path()), dir.path());

    // The failed opens did not disturb the first handle.
    first.put(b"k2", b"still writable").unwrap();
    assert_eq!(first.get(b"k").unwrap().as_deref(), Some(&b"first"[..]));
    drop(first);

    let second = Db::open(dir.path()).unwrap();
    assert_eq!(second.get(b"k").unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(second.get(b"k2").unwrap().as_deref(), Some(&b"still writable"[..]));
}

#[test]
fn binary_on_a_locked_directory_reports_it_and_exits_nonzero() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(b"k", b"v").unwrap();

    let out = Command::new(common::minivault_bin())
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            // A command that would change the data if the binary got in.
            let _ = child.stdin.take().unwrap().write_all(b"del k\nput k other\n");
            child.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success(), "status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database is locked"), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(db);

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn library_open_while_the_binary_holds_the_directory_is_locked() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::minivault_bin())
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"put from binary\n").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "OK\n", "the binary did not open the database");

    expect_locked(Db::open(dir.path()), dir.path());

    drop(stdin); // end of input: the binary exits cleanly and releases the lock
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"from").unwrap().as_deref(), Some(&b"binary"[..]));
}

#[test]
fn a_killed_holder_releases_the_lock() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::minivault_bin())
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"put k v\n").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "OK\n");
    expect_locked(Db::open(dir.path()), dir.path());

    child.kill().unwrap();
    child.wait().unwrap();
    // The LOCK file stays behind; only the lock on it matters.
    assert!(dir.path().join("LOCK").exists());
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
