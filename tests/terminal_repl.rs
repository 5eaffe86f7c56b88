//! The REPL in a real terminal (tmux: keys sent, text pasted and the screen read back), as
//! people use redis-cli and sqlite3: lines typed ahead or pasted at once each run, in order;
//! a long pasted value does not cost seconds of redrawing; history survives the session in
//! `~/.minivault_history`; Ctrl-C on an empty line says how to leave, Ctrl-D leaves.
//!
//! Needs `tmux`; without it each test says so and passes (`.ci/run` installs it and sets
//! `MINIVAULT_REQUIRE_TMUX=1`, which makes a missing tmux a failure).

mod common;

use std::path::Path;
use std::time::Duration;

use common::tmux::{self, Tmux};

const WAIT: Duration = Duration::from_secs(20);

fn tmux_missing() -> bool {
    let missing = !tmux::available();
    assert!(
        !(missing && std::env::var_os("MINIVAULT_REQUIRE_TMUX").is_some_and(|v| v == "1")),
        "tmux is not installed, and MINIVAULT_REQUIRE_TMUX=1 (as .ci/run sets)"
    );
    if missing {
        eprintln!("SKIPPED: tmux is not installed, so the REPL cannot be tested in a terminal (apt-get install tmux)");
    }
    missing
}

/// `minivault DIR` in a terminal with `HOME` set to `home` (empty: no home); when it exits the
/// pane shows `[exit N]`.
fn start(cwd: &Path, home: &str, dir: &str) -> Tmux {
    let program = format!("'{}' '{dir}'; echo \"[exit $?]\"; sleep 600", common::minivault_bin().display());
    let term = Tmux::start(cwd, &[("HOME", home), ("TERM", "xterm")], &program);
    term.wait_for(WAIT, |s| s.starts_with('>'));
    term
}

/// The lines of the screen after the last line that starts with `marker`, inclusive.
fn from_last<'a>(screen: &'a str, marker: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().rposition(|l| l.starts_with(marker)).unwrap_or(0);
    lines[at..].to_vec()
}

#[test]
fn lines_typed_ahead_each_run_in_order() {
    if tmux_missing() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let term = start(cwd.path(), "", "db");
    // One write to the terminal: four lines arrive before the first one has run.
    term.type_text("put a 1\rput b 2\rget a\rget b\r");
    let (screen, _) = term.wait_for(WAIT, |s| s.ends_with("> get b\n2\n>"));
    assert_eq!(screen, "> put a 1\nOK\n> put b 2\nOK\n> get a\n1\n> get b\n2\n>");
}

#[test]
fn a_bracketed_paste_of_several_lines_runs_each_line_in_order() {
    if tmux_missing() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let term = start(cwd.path(), "", "db");
    // Line breaks as LF, CRLF and CR: each ends one line.
    term.paste("put c 3\nput 'd d' \"4 4\"\r\nget c\rmget c 'd d'\n", true);
    let (screen, _) = term.wait_for(WAIT, |s| s.ends_with("\"4 4\"\n>"));
    assert_eq!(screen, "> put c 3\nOK\n> put 'd d' \"4 4\"\nOK\n> get c\n3\n> mget c 'd d'\n3 \"4 4\"\n>");
    // A paste without a final line break leaves its last line to finish and run.
    term.paste("put e 5\nget", true);
    term.type_text(" e\r");
    term.wait_for(WAIT, |s| s.ends_with("> get e\n5\n>"));
}

#[test]
fn a_long_pasted_value_is_stored_whole_without_seconds_of_redrawing() {
    if tmux_missing() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let term = start(cwd.path(), "", "db");
    let value: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for (key, bracketed) in [("bracketed", true), ("typed", false)] {
        term.paste(&format!("put {key} {value}\n"), bracketed);
        let (_, took) = term.wait_for(WAIT, |s| from_last(s, &format!("> put {key} ")).get(1) == Some(&"OK"));
        // The line editor this replaced took 15 s (typed) and over 40 s (bracketed) for 100 KB.
        assert!(took < Duration::from_secs(5), "{key}: a 200 KB paste took {took:?}");
    }
    // The row shows the start of the line, not a screenful of the value.
    assert!(term.screen().contains("> put bracketed abcdefghij"), "{}", term.screen());
    term.type_text("quit\r");
    term.wait_for(WAIT, |s| s.ends_with("[exit 0]"));
    for key in ["bracketed", "typed"] {
        let got = common::cli::minivault_in(cwd.path(), ["db", "get", key], "");
        assert_eq!((got.stdout.trim_end(), got.code), (value.as_str(), 0), "{key}");
    }
}

#[test]
fn history_is_kept_across_sessions_in_the_home_directory() {
    if tmux_missing() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    {
        let term = start(cwd.path(), home_str, "db");
        term.type_text("put h 1\rget h\r");
        term.wait_for(WAIT, |s| s.ends_with("> get h\n1\n>"));
        term.keys(&["C-d"]);
        term.wait_for(WAIT, |s| s.ends_with("[exit 0]"));
    }
    let saved = std::fs::read_to_string(home.path().join(".minivault_history")).unwrap();
    assert_eq!(saved, "put h 1\nget h\n");
    let term = start(cwd.path(), home_str, "db");
    term.keys(&["Up", "Up"]);
    term.wait_for(WAIT, |s| s.ends_with("> put h 1"));
    term.keys(&["Down", "Enter"]);
    term.wait_for(WAIT, |s| s.ends_with("> get h\n1\n>"));

    // Without a home directory there is no history file, and the REPL works the same.
    let no_home = tempfile::tempdir().unwrap();
    let term = start(no_home.path(), "", "db");
    term.type_text("put n 1\rquit\r");
    term.wait_for(WAIT, |s| s.ends_with("[exit 0]"));
    let files: Vec<_> = std::fs::read_dir(no_home.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["db"], "only the database was created");
}

#[test]
fn ctrl_c_on_an_empty_line_says_how_to_leave_and_ctrl_d_leaves() {
    if tmux_missing() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let term = start(cwd.path(), "", "db");
    term.keys(&["C-c"]);
    term.wait_for(WAIT, |s| s.contains("(to leave, type quit or press Ctrl-D)"));
    // On a line with text, Ctrl-C drops the text: nothing runs.
    term.type_text("put x 1");
    term.keys(&["C-c"]);
    term.type_text("get x\r");
    let (screen, _) = term.wait_for(WAIT, |s| s.ends_with("> get x\n(nil)\n>"));
    assert!(screen.contains("> put x 1^C\n"), "{screen}");
    assert!(term.running());
    term.keys(&["C-d"]);
    term.wait_for(WAIT, |s| s.ends_with("[exit 0]"));
}
