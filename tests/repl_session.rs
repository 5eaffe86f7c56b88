//! The `minivault` binary as a script interpreter: commands piped on stdin get exactly one reply
//! line each on stdout, with no prompt, and errors never end the session.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the binary on `dir` with `script` as its whole standard input.
fn run(dir: &Path, script: &str) -> Output {
    run_args(&[dir.as_os_str()], script)
}

fn run_args(args: &[&std::ffi::OsStr], script: &str) -> Output {
    let mut child = Command::new(common::minivault_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minivault");
    let mut stdin = child.stdin.take().expect("stdin");
    // The binary may exit before reading everything (quit); a broken pipe is fine then.
    let _ = stdin.write_all(script.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("wait for minivault")
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).expect("stdout is UTF-8")
}

/// Runs `script` and checks a clean exit with nothing on stderr; returns stdout.
fn session(dir: &Path, script: &str) -> String {
    let out = run(dir, script);
    assert!(
        out.status.success(),
        "minivault exited with {:?}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    stdout(&out).to_owned()
}

#[test]
fn put_then_get_prints_ok_then_the_value() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(session(dir.path(), "put a 1\nget a\n"), "OK\n1\n");
}

#[test]
fn readme_session_put_get_del_get() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "put key1 value1\nget key1\ndel key1\nget key1\n");
    assert_eq!(out, "OK\nvalue1\nOK\n(nil)\n");
}

#[test]
fn values_persist_across_sessions() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(session(dir.path(), "put a 1\nput b 2\ndel b\n"), "OK\nOK\nOK\n");
    assert_eq!(session(dir.path(), "get a\nget b\nget never\n"), "1\n(nil)\n(nil)\n");
}

#[test]
fn no_prompt_and_blank_lines_print_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "\n   \nput a 1\n\n\t\nget a\n\n");
    assert_eq!(out, "OK\n1\n");
    assert!(!out.contains('>'), "a prompt was printed: {out:?}");
}

#[test]
fn crlf_lines_and_missing_final_newline_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(session(dir.path(), "put a 1\r\nget a\r\nget a"), "OK\n1\n1\n");
}

#[test]
fn ex_ttl_value_is_visible_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "put t v EX 1\nput keep k ex 3600\nget t\nget keep\n");
    assert_eq!(out, "OK\nOK\nv\nk\n");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(session(dir.path(), "get t\nget keep\n"), "(nil)\nk\n");
}

#[test]
fn invalid_ex_ttl_is_one_err_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = "put t v EX 0\nput t v EX -1\nput t v EX abc\nput t v EX\nput t v EX 4294967296\nget t\n";
    let out = session(dir.path(), script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    for line in &lines[..5] {
        assert!(line.starts_with("ERR "), "{line}");
    }
    assert_eq!(lines[5], "(nil)");
}

#[test]
fn quoted_keys_and_values_with_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let script = "put \"my key\" \"hello world\"\nget \"my key\"\nget 'my key'\nget my\n\
                  put 'single quoted' 'a \\n b'\nget \"single quoted\"\n";
    let out = session(dir.path(), script);
    assert_eq!(
        out, "OK\n\"hello world\"\n\"hello world\"\n(nil)\nOK\n\"a \\\\n b\"\n",
        "single quotes are literal, so the backslash is stored and printed escaped"
    );
}

#[test]
fn binary_bytes_round_trip_through_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let script = "put \"\\x00\\xff\" \"a\\tb\\x00\"\nget \"\\x00\\xFF\"\nput e \"\"\nget e\n";
    let out = session(dir.path(), script);
    assert_eq!(out, "OK\n\"a\\tb\\0\"\nOK\n\"\"\n");
}

#[test]
fn flush_then_stats_reports_one_sstable_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "stats\nput a 1\nflush\nstats\nget a\nsync\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].contains("sstables=0"), "{}", lines[0]);
    assert_eq!(lines[1], "OK");
    assert_eq!(lines[2], "OK");
    assert!(lines[3].contains("sstables=1 "), "{}", lines[3]);
    assert!(lines[3].contains("flushes="), "{}", lines[3]);
    assert_eq!(lines[4], "1");
    assert_eq!(lines[5], "OK");
    assert_eq!(common::sst_files(dir.path()).len(), 1);
}

#[test]
fn help_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "help\nHELP\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], lines[1], "command names are case-insensitive");
    for cmd in ["put", "get", "del", "flush", "stats", "quit"] {
        assert!(lines[0].contains(cmd), "help does not mention {cmd}: {}", lines[0]);
    }
}

#[test]
fn bad_commands_print_one_err_line_and_the_session_continues() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        "bogus",
        "put onlykey",
        "put k hello world",
        "get",
        "get a b",
        "del",
        "flush now",
        "put \"unterminated",
        "put a\"b\" v",
        "put \"\\q\" v",
        "put \"\" v",
    ];
    let mut script = String::new();
    for (i, b) in bad.iter().enumerate() {
        script.push_str(b);
        script.push('\n');
        script.push_str(&format!("put k{i} v{i}\nget k{i}\n"));
    }
    let out = session(dir.path(), &script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), bad.len() * 3, "{out}");
    for (i, b) in bad.iter().enumerate() {
        let err = lines[i * 3];
        assert!(err.starts_with("ERR "), "{b:?} gave {err:?}");
        assert_eq!(lines[i * 3 + 1], "OK", "after {b:?}");
        assert_eq!(lines[i * 3 + 2], format!("v{i}"), "after {b:?}");
    }
}

#[test]
fn quit_ends_the_session_silently() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(session(dir.path(), "put a 1\nquit\nget a\n"), "OK\n");
    assert_eq!(session(dir.path(), "exit\nget a\n"), "");
    assert_eq!(session(dir.path(), "get a\n"), "1\n");
}

#[test]
fn a_regular_file_as_the_directory_exits_nonzero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let out = run(&file, "put a 1\n");
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("minivault: "), "stderr: {err}");
    assert!(err.contains("not-a-dir"), "stderr does not name the path: {err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file was modified");
}

#[test]
fn bad_arguments_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_args(&["--sync".as_ref(), "sometimes".as_ref(), dir.path().as_os_str()], "");
    assert_eq!(out.status.code(), Some(2), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

#[test]
fn stats_reports_the_row_cache_counters() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(dir.path(), "put a 1\nget a\nget a\nget a\nstats\n");
    let stats = out.lines().nth(4).unwrap_or_default();
    assert!(stats.contains(" row_cache_hits=2 row_cache_misses=1 row_cache_rows=1 "), "{stats}");
    assert!(stats.contains(&format!("/{}", minivault::row_cache::DEFAULT_ROW_CACHE_BYTES)), "{stats}");
}
