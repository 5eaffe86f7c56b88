//! The command line: `minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]`.
//!
//! The first argument that is not an option is DIR; every argument after it is the command and
//! its arguments, taken literally (even one that starts with `-`), each as one token, as a shell
//! split them: `minivault db put "my key" "a b"`. Options go before DIR. `--` ends the options
//! (for a DIR that starts with `-`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use minivault::options::{SizeLimit, CACHE_BYTES, MEMTABLE_BYTES, ROW_CACHE_BYTES, WAL_PREALLOCATION_BYTES};
use minivault::repl::{human_bytes, COMMANDS};
use minivault::{Durability, Options};

/// The directory used when none is given.
pub const DEFAULT_DIR: &str = "minivault-data";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Open DIR and run a command or a session.
    Run(Args),
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// The arguments of a run.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub dir: PathBuf,
    /// True when DIR was given (false: [`DEFAULT_DIR`]).
    pub dir_given: bool,
    pub options: Options,
    /// `--strict`: stop a piped session at the first `ERR`.
    pub strict: bool,
    /// The one-shot command's words; empty for a session.
    pub command: Vec<OsString>,
}

/// Parses the arguments (without the program name).
///
/// # Errors
///
/// A message for the user (the binary prints it with the usage line and exits with 2).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = Options::default();
    let mut strict = false;
    let mut dir = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Request::Help),
            Short('V') | Long("version") => return Ok(Request::Version),
            Long("strict") => strict = true,
            Long("read-only") => options.read_only = true,
            Long("sync") => options.durability = parse_sync(&text_value(&mut parser, "--sync")?)?,
            Long("memtable-bytes") => {
                options.memtable_bytes = size_option(&mut parser, "--memtable-bytes", MEMTABLE_BYTES)?;
            }
            Long("cache-bytes") => {
                options.cache_bytes = size_option(&mut parser, "--cache-bytes", CACHE_BYTES)?;
            }
            Long("row-cache-bytes") => {
                options.row_cache_bytes = size_option(&mut parser, "--row-cache-bytes", ROW_CACHE_BYTES)?;
            }
            Long("wal-preallocation-bytes") => {
                let flag = "--wal-preallocation-bytes";
                let step = size_option(&mut parser, flag, WAL_PREALLOCATION_BYTES)?;
                options.wal_preallocation_bytes = Some(step as u64);
            }
            Value(value) => {
                dir = Some(PathBuf::from(value));
                break;
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let command: Vec<OsString> = parser.raw_args().map_err(|e| e.to_string())?.collect();
    let dir_given = dir.is_some();
    let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    Ok(Request::Run(Args { dir, dir_given, options, strict, command }))
}

fn text_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    value.into_string().map_err(|v| format!("{flag}: {v:?} is not valid text"))
}

fn size_option(parser: &mut lexopt::Parser, flag: &str, limit: SizeLimit) -> Result<usize, String> {
    let text = text_value(parser, flag)?;
    let bytes = parse_size(&text).map_err(|why| format!("{flag} {text}: {why}"))?;
    limit.check(bytes).map_err(|_| {
        format!(
            "{flag} {text} is out of range: it must be {} to {} ({} ..= {} bytes)",
            human_bytes(limit.min),
            human_bytes(limit.max),
            limit.min,
            limit.max
        )
    })
}

/// A size: digits, then optionally `K`, `M` or `G` (or `KiB`, `MiB`, `GiB`, any case), powers of
/// 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(String::from("expected a number of bytes, optionally with K, M or G (64K, 4M, 1G)")),
    };
    let value: u64 = number.parse().map_err(|_| String::from("expected a number of bytes (64K, 4M, 1G)"))?;
    value.checked_mul(1 << shift).ok_or_else(|| String::from("too large"))
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

/// The usage line, printed with argument errors.
pub const USAGE: &str = "usage: minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]  (minivault --help for more)";

/// `--help`: the options with their defaults and ranges, the commands, the exit codes.
pub fn help() -> String {
    let d = Options::default();
    let range = |l: SizeLimit| format!("{} to {}", human_bytes(l.min), human_bytes(l.max));
    let mut out = format!(
        "minivault {version}: the MiniVaultDB command line

usage: minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]

Opens the database in DIR (default ./{DEFAULT_DIR}, created if missing).
  minivault DIR COMMAND ARG...   runs one command, prints its reply and exits: 0, or 1
                                 after an ERR reply (like redis-cli)
  minivault [DIR]                reads commands from standard input: a line editor with
                                 history on a terminal, one reply line per command from a
                                 pipe or file
The first argument that is not an option is DIR; the words after it are the command, each
one token (quote them for your shell: minivault db put \"my key\" \"a b c\").

Options (before DIR):
  --sync MODE              when writes are durable: always (default; each write is
                           fdatasync'ed), every:N, periodic:MS or manual
  --memtable-bytes SIZE    each of the two MemTables (default {memtable}; {memtable_range});
                           bounds the largest entry
  --cache-bytes SIZE       SSTable page cache (default {cache}; 0 turns it off; up to {cache_max})
  --row-cache-bytes SIZE   row cache (default {rows}; 0 turns it off; up to {rows_max})
  --wal-preallocation-bytes SIZE
                           how far ahead of the writer the WAL is extended, so that a durable
                           write's fdatasync has no file size to commit (default a quarter
                           MemTable, at most 1 MiB: 896 KiB, which a fresh database takes on
                           disk; 0 turns it off; up to {walpre_max})
  --strict                 piped input: stop at the first ERR reply, exit code 1
  --read-only              open without writing anything and without the lock: works on a
                           directory you cannot write and while another process writes; sees
                           the database as it was when opened; writes reply ERR
  -h, --help               this text
  -V, --version            the version
SIZE is a number of bytes, optionally with K, M or G (KiB, MiB, GiB): 64K, 4M, 1G.
Memory: at most (2 + background threads) x memtable + cache + row cache ({memory} with the
defaults: 2 compaction threads).

Commands (case-insensitive; type help COMMAND in the REPL):
",
        version = env!("CARGO_PKG_VERSION"),
        memtable = human_bytes(d.memtable_bytes as u64),
        memtable_range = range(MEMTABLE_BYTES),
        cache = human_bytes(d.cache_bytes as u64),
        cache_max = human_bytes(CACHE_BYTES.max),
        rows = human_bytes(d.row_cache_bytes as u64),
        rows_max = human_bytes(ROW_CACHE_BYTES.max),
        walpre_max = human_bytes(WAL_PREALLOCATION_BYTES.max),
        memory = human_bytes(d.memory_bytes()),
    );
    for c in COMMANDS {
        let _ = writeln!(out, "  {:<45} {}", c.usage, c.summary);
    }
    out.push_str(
        "Keys and values may be quoted: \"...\" with escapes \\\" \\\\ \\n \\r \\t \\0 \\xHH, or '...' literally.

At a terminal: Up/Down recall history (kept in ~/.minivault_history), Ctrl-C clears the
line, Ctrl-D on an empty line or quit leaves. Pasted lines run one by one.

Exit status: 0 success; 1 the database could not be opened or closed cleanly, an I/O
error, or an ERR reply in one-shot mode (or with --strict); 2 bad arguments.",
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(OsString::from))? {
            Request::Run(args) => Ok(args),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn the_first_word_is_dir_and_the_rest_is_the_command() {
        assert!(run(&["--read-only", "db"]).unwrap().options.read_only);
        let a = run(&["--strict", "db", "put", "--not-an-option", "-1"]).unwrap();
        assert_eq!((a.dir, a.dir_given, a.strict), (PathBuf::from("db"), true, true));
        assert_eq!(a.command, ["put", "--not-an-option", "-1"]);
        let a = run(&[]).unwrap();
        assert_eq!((a.dir, a.dir_given, a.command.len()), (PathBuf::from(DEFAULT_DIR), false, 0));
        assert_eq!(run(&["--", "-dir"]).unwrap().dir, PathBuf::from("-dir"));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "4 M", "-1", "1.5M", "4MB", "99999999999999999999", "18446744073709551615K"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_out_of_range_are_errors_naming_the_range() {
        let e = run(&["--memtable-bytes", "100000000000000"]).unwrap_err();
        assert!(e.contains("--memtable-bytes 100000000000000 is out of range") && e.contains("1 GiB"), "{e}");
        assert!(run(&["--memtable-bytes", "0"]).unwrap_err().contains("512 B to 1 GiB"));
        assert!(run(&["--cache-bytes", "17G"]).unwrap_err().contains("--cache-bytes 17G is out of range"));
        assert!(run(&["--row-cache-bytes", "1T"]).unwrap_err().contains("--row-cache-bytes 1T"));
        assert_eq!(run(&["--cache-bytes", "0"]).unwrap().options.cache_bytes, 0);
        assert_eq!(
            run(&["--wal-preallocation-bytes", "64K"]).unwrap().options.wal_preallocation_bytes,
            Some(65536)
        );
        assert_eq!(run(&[]).unwrap().options.wal_preallocation_bytes, None);
        assert!(run(&["--wal-preallocation-bytes", "2G"]).unwrap_err().contains("0 B to 1 GiB"));
    }

    #[test]
    fn help_lists_every_option_with_its_default_and_every_command() {
        let h = help();
        for word in
            ["--sync", "--memtable-bytes", "--cache-bytes", "--row-cache-bytes", "--strict", "4 MiB", "8 MiB"]
        {
            assert!(h.contains(word), "{word}");
        }
        for c in COMMANDS {
            assert!(h.contains(c.usage), "{}", c.name);
        }
    }
}
