//! README.md's commands work as written for a new user: every `$ ` line of its ```` ```console ````
//! blocks runs, in order, in one fresh working directory (so `./minivault-data`, `db` and
//! `tbdata` are created there, relative to it), with the lines typed at it (`> `) as its input,
//! and prints what the README shows. The library snippets are doctests (the crate's first, and
//! `Options::max_bytes`'s).
//!
//! Commands run with `sh -c` as written, with two substitutions for running inside the test:
//! `cargo run` / `cargo install` get `--manifest-path` / an absolute `--path` to this
//! repository (a user runs them from its root) and `cargo install` installs under a temporary
//! `--root`, whose `bin` is first on `PATH` (as `~/.cargo/bin` is for a user). `HOME` is a
//! temporary directory. In the expected output a line `...` stands for any lines, and a line
//! ending in ` ...` for any line that starts with what precedes it.
//!
//! `cargo test`, the README's other command, is what runs this; the build scripts and bench
//! commands further down are run by `.ci/run`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `$ ` command of a console block: the command, its input, the output shown.
#[derive(Debug)]
struct Step {
    command: String,
    input: Vec<String>,
    output: Vec<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("read README.md")
}

/// The steps of every ```` ```console ```` block, in order.
fn console_steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in readme.lines() {
        if !in_console {
            in_console = line.trim_end() == "```console";
            continue;
        }
        if line.starts_with("```") {
            in_console = false;
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step { command: command.to_owned(), input: Vec::new(), output: Vec::new() });
        } else if let Some(step) = steps.last_mut() {
            match line.strip_prefix("> ") {
                Some(typed) => step.input.push(typed.to_owned()),
                None => step.output.push(line.to_owned()),
            }
        }
    }
    steps
}

/// True when `got` is what `want` shows (with `...` wildcards; see the module docs).
fn matches(want: &[String], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w == "..." => (0..=got.len()).any(|skip| matches(rest, &got[skip..])),
        Some((w, rest)) => match got.split_first() {
            Some((g, got_rest)) => {
                let line_ok = match w.strip_suffix(" ...") {
                    Some(prefix) => g.starts_with(prefix),
                    None => w == g,
                };
                line_ok && matches(rest, got_rest)
            }
            None => false,
        },
    }
}

/// The command as the test runs it (see the module docs).
fn as_run(command: &str, install_root: &Path) -> String {
    let repo = repo();
    if let Some(rest) = command.strip_prefix("cargo run ") {
        return format!("cargo run --manifest-path '{}' {rest}", repo.join("Cargo.toml").display());
    }
    if let Some(rest) = command.strip_prefix("cargo install ") {
        let rest = rest.replace("--path posix", &format!("--path '{}'", repo.join("posix").display()));
        return format!("cargo install --root '{}' --quiet {rest}", install_root.display());
    }
    command.to_owned()
}

#[test]
fn every_console_command_in_the_readme_runs_as_written() {
    let steps = console_steps(&readme());
    assert!(steps.len() >= 10, "found only {} commands in README.md's console blocks", steps.len());
    for first in ["cargo run --release --bin minivault", "cargo install --locked --path posix"] {
        assert!(steps.iter().any(|s| s.command == first), "README.md no longer shows `{first}`");
    }
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let install_root = tempfile::tempdir().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let path = std::env::join_paths(
        std::iter::once(install_root.path().join("bin"))
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    for step in &steps {
        let mut cmd = Command::new("sh");
        cmd.current_dir(cwd.path())
            .args(["-c", &as_run(&step.command, install_root.path())])
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("TERM");
        let input: String = step.input.iter().map(|l| format!("{l}\n")).collect();
        let ran = common::cli::run(&mut cmd, &input);
        let got: Vec<&str> = ran.stdout.lines().collect();
        assert!(
            matches(&step.output, &got),
            "README: `$ {}`\nshows:\n{}\nprinted:\n{}\nstderr:\n{}",
            step.command,
            step.output.join("\n"),
            ran.stdout,
            ran.stderr
        );
        let shows_its_status = step.command.contains("$?");
        assert!(
            shows_its_status || ran.code == 0,
            "`$ {}` exited {}: {}",
            step.command,
            ran.code,
            ran.stderr
        );
    }
    assert!(cwd.path().join("minivault-data").is_dir(), "the first command created ./minivault-data");
    assert!(cwd.path().join("tbdata").is_dir(), "the example wrote to the relative directory tbdata");
}

#[test]
fn the_readme_library_snippets_are_doctests() {
    let readme = readme();
    // The first ```rust block of the README (the crate's first doctest), the bounded-space one
    // (`Options::max_bytes`'s), the store-and-forward one (the forward module's) and the
    // snapshot one (`Db::snapshot`'s), with the file whose doc comments run each.
    let blocks: Vec<&str> =
        readme.split("```rust\n").skip(1).map(|b| &b[..b.find("```").expect("the block's end")]).collect();
    let space = blocks.iter().find(|b| b.contains("max_bytes")).expect("the bounded-space snippet");
    let forward =
        blocks.iter().find(|b| b.contains("Forwarder::spawn")).expect("the store-and-forward snippet");
    let snapshot = blocks.iter().find(|b| b.contains("db.snapshot()")).expect("the snapshot snippet");
    for (snippet, home) in [
        (blocks[0], "posix/src/lib.rs"),
        (*space, "posix/src/options.rs"),
        (*forward, "posix/src/forward/mod.rs"),
        (*snapshot, "posix/src/snapshot.rs"),
    ] {
        let text = std::fs::read_to_string(repo().join(home)).unwrap();
        let doc: Vec<&str> = text
            .lines()
            .map(str::trim_start)
            .filter_map(|l| {
                l.strip_prefix("//! ")
                    .or(l.strip_prefix("//!"))
                    .or(l.strip_prefix("/// "))
                    .or(l.strip_prefix("///"))
            })
            .collect();
        let mut at = 0;
        for line in snippet.lines() {
            match doc[at..].iter().position(|d| *d == line) {
                Some(i) => at += i + 1,
                None => panic!("README's library snippet line {line:?} is not in {home}'s doctest"),
            }
        }
    }
}

#[test]
fn the_wildcards_match_what_they_say() {
    let want = |lines: &[&str]| lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&want(&["a", "...", "z"]), &["a", "b", "c", "z"]));
    assert!(matches(&want(&["a", "..."]), &["a"]));
    assert!(matches(&want(&["wrote 4000 readings: ..."]), &["wrote 4000 readings: 3 SSTables"]));
    assert!(!matches(&want(&["a", "z"]), &["a", "b", "z"]));
    assert!(!matches(&want(&["a"]), &["a", "b"]));
    assert!(!matches(&want(&["wrote 5 ..."]), &["wrote 4000"]));
}

mod common;
