//! `minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]`: the MiniVaultDB command line.
//!
//! Opens the database in DIR (default `./minivault-data`, created if missing), then:
//! - with a COMMAND, runs it once, prints its reply and exits 0, or 1 after an `ERR` reply;
//! - on a terminal, runs the REPL with a line editor ([`terminal`]);
//! - otherwise reads commands from standard input, one reply line per command, going on after
//!   `ERR` unless `--strict`.
//!
//! `minivault forward DIR --stream S --mqtt HOST:PORT --topic T ...` drains a stream to an MQTT
//! broker instead ([`forward`]).
//!
//! When the database cannot be opened the reason goes to stderr and the exit code is 1; bad
//! arguments exit with 2. `minivault --help` lists everything.

mod args;
mod editor;
mod forward;
mod keys;
mod terminal;

use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

use minivault::repl::{self, Reply, Settings};
use minivault::{Db, EngineError, Error};

use args::{Args, Request, USAGE};

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => args,
        Ok(Request::Help) => {
            out(&args::help());
            return ExitCode::SUCCESS;
        }
        Ok(Request::Version) => {
            out(&format!("minivault {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Ok(Request::Forward(args)) => return forward::run(args),
        Ok(Request::ForwardHelp) => {
            out(&args::forward_help());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            err(&format!("minivault: {e}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    if args.command.is_empty() {
        session(&args)
    } else {
        one_shot(args)
    }
}

/// `minivault DIR COMMAND ARG...`: one command, its reply, exit 0 (or 1 after `ERR`).
fn one_shot(args: Args) -> ExitCode {
    let words: Vec<Vec<u8>> = args.command.iter().cloned().map(OsStringExt::into_vec).collect();
    let command = match repl::parse_tokens(words) {
        Ok(Some(command)) => command,
        Ok(None) => return ExitCode::from(2),
        Err(e) => {
            // Nothing is opened (or created) for a command that does not parse.
            out(&format!("ERR {e}"));
            if !args.dir.exists() && repl::command_info(args.dir.as_os_str().as_encoded_bytes()).is_some() {
                err(&format!(
                    "minivault: note: {:?} was taken as the database directory; it comes first: \
                     minivault DIR COMMAND ...",
                    args.dir
                ));
            }
            return ExitCode::from(1);
        }
    };
    let Some(db) = open(&args) else { return ExitCode::from(1) };
    let mut session = repl::Session::new(db);
    let reply = repl::respond(&mut session, command);
    if reply != Reply::Quit {
        let mut out = io::stdout().lock();
        let printed = writeln!(out, "{}", reply.printed()).and_then(|()| out.flush());
        if let Err(e) = printed.filter_broken_pipe() {
            err(&format!("minivault: {e}"));
            return ExitCode::from(1);
        }
    }
    match (close(session.into_db()), reply.is_error()) {
        (true, false) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// `minivault [DIR]`: the REPL on a terminal, or a script from standard input.
fn session(args: &Args) -> ExitCode {
    let Some(db) = open(args) else { return ExitCode::from(1) };
    let mut db = repl::Session::new(db);
    let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
    let result = if terminal {
        match terminal::TerminalLines::open() {
            Ok(mut lines) => repl::run_lines(&mut lines, io::stdout().lock(), &mut db, Settings::default()),
            // No usable terminal after all: the plain loop, with a prompt.
            Err(_) => repl::run_reader(
                io::stdin().lock(),
                io::stdout().lock(),
                &mut db,
                Settings { prompt: true, strict: false },
            ),
        }
    } else {
        let settings = Settings { prompt: false, strict: args.strict };
        repl::run_reader(io::stdin().lock(), io::stdout().lock(), &mut db, settings)
    };
    let closed = close(db.into_db());
    match result.filter_broken_pipe() {
        Ok(outcome) if closed && !outcome.is_some_and(|o| o.stopped_at_error) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            err(&format!("minivault: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Opens the database, or says why not on stderr.
fn open(args: &Args) -> Option<Db> {
    match Db::open_with(&args.dir, args.options) {
        Ok(db) => Some(db),
        Err(Error::Engine(EngineError::MemTableTooSmall { file, needed, .. })) => {
            let typed = args.options.memtable_bytes;
            err(&format!(
                "minivault: cannot open {}: its {} holds a record larger than a MemTable of \
                 --memtable-bytes {typed} ({}) takes; nothing is lost: run with --memtable-bytes \
                 {needed} ({}) or more",
                args.dir.display(),
                file.as_str(),
                repl::human_bytes(typed as u64),
                repl::human_bytes(needed as u64),
            ));
            None
        }
        Err(e) => {
            err(&format!("minivault: {e}"));
            None
        }
    }
}

/// Closes the database: the final sync that makes relaxed-durability writes durable. Says on
/// stderr when it failed.
fn close(db: Db) -> bool {
    match db.close() {
        Ok(()) => true,
        Err(e) => {
            err(&format!("minivault: final sync failed: {e}"));
            false
        }
    }
}

/// Prints `text` and a line break on standard output. A reader that went away
/// (`minivault --help | head`) is not an error, and never a panic.
fn out(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

/// Prints `text` and a line break on standard error, ignoring a failure to (nowhere else to say).
fn err(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// A reader of our output that went away (`minivault ... | head -1`) is not an error.
trait FilterBrokenPipe<T> {
    fn filter_broken_pipe(self) -> io::Result<Option<T>>;
}

impl<T> FilterBrokenPipe<T> for io::Result<T> {
    fn filter_broken_pipe(self) -> io::Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(None),
            Err(e) => Err(e),
        }
    }
}
