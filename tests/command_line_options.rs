//! The binary's own arguments: `--version`; `--help` lists every option with its default and
//! range, and every command; a size out of range (or not a size) is a clear error with exit 2
//! before anything is allocated or created; an open refused because the database holds a
//! record larger than the MemTables given says so with the size typed and the size that works.

mod common;

use common::cli::minivault_in;

#[test]
fn version_and_help() {
    let cwd = tempfile::tempdir().unwrap();
    let ran = minivault_in(cwd.path(), ["--version"], "");
    assert_eq!(
        (ran.stdout.as_str(), ran.code),
        (format!("minivault {}\n", env!("CARGO_PKG_VERSION")).as_str(), 0)
    );
    let ran = minivault_in(cwd.path(), ["--help"], "");
    assert_eq!(ran.code, 0);
    let help = ran.stdout;
    for expected in [
        "usage: minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]",
        "default ./minivault-data",
        "--sync MODE",
        "always (default",
        "--memtable-bytes SIZE    each of the two MemTables (default 4 MiB; 512 B to 1 GiB)",
        "--cache-bytes SIZE       SSTable page cache (default 8 MiB",
        "--row-cache-bytes SIZE   row cache (default 4 MiB",
        "--strict",
        "--version",
        "~/.minivault_history",
        "Exit status",
    ] {
        assert!(help.contains(expected), "--help lacks {expected:?}:\n{help}");
    }
    for command in [
        "put KEY VALUE [EX SECONDS | PX MILLISECONDS]",
        "mget KEY [KEY ...]",
        "ttl KEY",
        "info",
        "help [COMMAND]",
    ] {
        assert!(help.contains(command), "--help lacks the command {command:?}");
    }
    assert!(std::fs::read_dir(cwd.path()).unwrap().next().is_none(), "--help and --version create nothing");
}

#[test]
fn sizes_out_of_range_exit_2_with_the_range_and_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let cases = [
        ("--memtable-bytes", "100000000000000", "512 B to 1 GiB"),
        ("--memtable-bytes", "0", "512 B to 1 GiB"),
        ("--memtable-bytes", "2G", "512 B to 1 GiB"),
        ("--cache-bytes", "100000000000000", "0 B to 16 GiB"),
        ("--row-cache-bytes", "17G", "0 B to 16 GiB"),
    ];
    for (flag, value, range) in cases {
        let ran = minivault_in(cwd.path(), [flag, value, "db"], "put a 1\n");
        assert_eq!((ran.code, ran.stdout.as_str()), (2, ""), "{flag} {value}: {}", ran.stderr);
        let first = ran.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("minivault: {flag} {value} is out of range: it must be {range}")),
            "{first}"
        );
        assert!(ran.stderr.contains("usage:"), "{}", ran.stderr);
    }
    for (flag, value) in
        [("--memtable-bytes", "4 MiB"), ("--cache-bytes", "1.5M"), ("--row-cache-bytes", "-1")]
    {
        let ran = minivault_in(cwd.path(), [flag, value, "db"], "");
        assert_eq!(ran.code, 2, "{flag} {value}");
        assert!(
            ran.stderr.contains(&format!("{flag} {value}: expected a number of bytes")),
            "{}",
            ran.stderr
        );
    }
    assert!(!cwd.path().join("db").exists(), "nothing is created for bad arguments");
    let ran = minivault_in(
        cwd.path(),
        ["--memtable-bytes", "64K", "--cache-bytes", "0", "db", "put", "a", "1"],
        "",
    );
    assert_eq!((ran.stdout.as_str(), ran.code), ("OK\n", 0), "{}", ran.stderr);
}

#[test]
fn an_open_refused_by_a_large_record_names_the_size_typed_and_the_size_needed() {
    let cwd = tempfile::tempdir().unwrap();
    let value = "v".repeat(100_000);
    let ran = minivault_in(cwd.path(), ["db", "put", "big", value.as_str()], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = minivault_in(cwd.path(), ["--memtable-bytes", "64K", "db", "get", "big"], "");
    assert_eq!((ran.code, ran.stdout.as_str()), (1, ""));
    let message = ran.stderr.trim_end();
    assert!(
        message.starts_with("minivault: cannot open db: its ")
            && message.contains(".wal holds a record larger"),
        "{message}"
    );
    assert!(message.contains("--memtable-bytes 65536 (64 KiB)"), "{message}");
    // The size it names opens the database, and nothing was lost.
    let needed = message.rsplit("--memtable-bytes ").next().unwrap().split(' ').next().unwrap();
    let ran = minivault_in(cwd.path(), ["--memtable-bytes", needed, "db", "get", "big"], "");
    assert_eq!((ran.code, ran.stdout.trim_end()), (0, value.as_str()), "{}", ran.stderr);
}

#[test]
fn output_into_a_closed_pipe_is_no_panic() {
    // `minivault --help | head -1` once panicked with "failed printing to stdout".
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["--version"], &["db", "get", "k"], &["db", "frobnicate"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(common::minivault_bin())
            .current_dir(cwd.path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let want = if args[..] == ["db", "frobnicate"] { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {stderr}");
    }
}
