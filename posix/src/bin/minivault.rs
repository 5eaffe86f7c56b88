//! `minivault [OPTIONS] [DIR]`: opens the database in DIR (default `./minivault-data`, created
//! if missing) and runs the REPL on standard input. The `> ` prompt and line editing appear
//! only when standard input is a terminal, so piped scripts get exactly one reply line per
//! command. When the database cannot be opened, the reason goes to stderr and the exit code
//! is 1; bad arguments exit with 2.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use minivault::repl::{self, LineRead, LineSource, ReplBackend};
use minivault::{Db, Durability, Options};

const USAGE: &str = "usage: minivault [--sync always|every:N|periodic:MS|manual] [--memtable-bytes N] [DIR]

Opens the MiniVaultDB database in DIR (default ./minivault-data, created if missing) and reads
commands from standard input; type `help` for the command list.";

struct Args {
    dir: PathBuf,
    options: Options,
}

fn parse_sync(s: &str) -> Result<Durability, String> {
    let bad = || format!("invalid --sync value {s:?}: expected always, every:N, periodic:MS or manual");
    match s.split_once(':') {
        None if s == "always" => Ok(Durability::Always),
        None if s == "manual" => Ok(Durability::Manual),
        Some(("every", n)) => n.parse().ok().filter(|&n| n > 0).map(Durability::EveryN).ok_or_else(bad),
        Some(("periodic", ms)) => ms
            .parse()
            .ok()
            .filter(|&ms| ms > 0)
            .map(|ms| Durability::Periodic(Duration::from_millis(ms)))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn parse_args() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut dir = None;
    let mut options = Options::default();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("sync") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                options.durability = parse_sync(&v.string().map_err(|e| e.to_string())?)?;
            }
            Long("memtable-bytes") => {
                let v: usize = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("--memtable-bytes: {e}"))?;
                options.memtable_bytes = v;
            }
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(Args { dir: dir.unwrap_or_else(|| PathBuf::from("minivault-data")), options }))
}

/// Lines typed at a terminal, through the line editor (which draws its own `> ` prompt).
struct EditorLines(rustyline::DefaultEditor);

impl LineSource for EditorLines {
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<LineRead> {
        loop {
            match self.0.readline("> ") {
                Ok(text) => {
                    let _ = self.0.add_history_entry(text.as_str());
                    line.clear();
                    line.extend_from_slice(text.as_bytes());
                    return Ok(LineRead::Line);
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(rustyline::error::ReadlineError::Eof) => return Ok(LineRead::Eof),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }
}

fn interactive(db: &mut Db) -> io::Result<()> {
    match rustyline::DefaultEditor::new() {
        Ok(editor) => repl::run_lines(&mut EditorLines(editor), io::stdout().lock(), db, false),
        // No usable terminal after all: fall back to the plain loop.
        Err(_) => repl::run(io::stdin().lock(), io::stdout().lock(), db, true),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("minivault: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut db = match Db::open_with(&args.dir, args.options) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("minivault: {e}");
            return ExitCode::from(1);
        }
    };
    let stdin = io::stdin();
    let result = if stdin.is_terminal() {
        interactive(&mut db)
    } else {
        repl::run(stdin.lock(), io::stdout().lock(), &mut db, false)
    };
    // Make relaxed-durability writes durable before a clean exit, and say if that failed.
    if let Err(e) = ReplBackend::sync(&mut db) {
        eprintln!("minivault: final sync failed: {e}");
        return ExitCode::from(1);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minivault: {e}");
            ExitCode::from(1)
        }
    }
}
