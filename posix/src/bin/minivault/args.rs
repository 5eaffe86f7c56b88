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

use minivault::options::{
    SizeLimit, CACHE_BYTES, INDEX_BYTES, MEMTABLE_BYTES, ROW_CACHE_BYTES, WAL_PREALLOCATION_BYTES,
};
use minivault::repl::{human_bytes, COMMANDS};
use minivault::{Durability, Options, WhenFull};

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
    /// `minivault forward DIR ...`: drain a stream to an MQTT broker.
    Forward(ForwardArgs),
    /// `minivault forward --help`.
    ForwardHelp,
}

/// The arguments of `minivault forward`.
#[derive(Debug, PartialEq, Eq)]
pub struct ForwardArgs {
    pub dir: PathBuf,
    pub options: Options,
    pub stream: Vec<u8>,
    pub host: String,
    pub port: u16,
    pub topic: String,
    /// QoS 0 or 1.
    pub qos: u8,
    pub consumer: Vec<u8>,
    pub client_id: Option<String>,
    /// `--until-drained`: exit 0 once nothing is left to send.
    pub until_drained: bool,
    /// `--ingest-stdin`: append each line of standard input to the stream.
    pub ingest_stdin: bool,
    /// Seconds between progress lines; 0: none.
    pub progress_secs: u64,
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
            Value(value) if value == "forward" => return parse_forward(&mut parser, options),
            Value(value) => {
                dir = Some(PathBuf::from(value));
                break;
            }
            Long(name) => {
                let name = name.to_owned();
                if !database_option(&mut parser, &name, &mut options)? {
                    return Err(format!("invalid option '--{name}'"));
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    check_max_bytes(&options)?;
    let command: Vec<OsString> = parser.raw_args().map_err(|e| e.to_string())?.collect();
    let dir_given = dir.is_some();
    let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    Ok(Request::Run(Args { dir, dir_given, options, strict, command }))
}

/// Applies an option of the database (`--sync`, `--memtable-bytes`, ...; `long` without its
/// dashes) to `options`; false when it is not one.
fn database_option(parser: &mut lexopt::Parser, long: &str, options: &mut Options) -> Result<bool, String> {
    match long {
        "read-only" => options.read_only = true,
        "no-wal-mapping" => options.map_wal_appends = false,
        "sync" => options.durability = parse_sync(&text_value(parser, "--sync")?)?,
        "memtable-bytes" => {
            options.memtable_bytes = size_option(parser, "--memtable-bytes", MEMTABLE_BYTES)?;
        }
        "cache-bytes" => {
            options.cache_bytes = size_option(parser, "--cache-bytes", CACHE_BYTES)?;
        }
        "row-cache-bytes" => {
            options.row_cache_bytes = size_option(parser, "--row-cache-bytes", ROW_CACHE_BYTES)?;
        }
        "index-bytes" => {
            options.index_bytes = size_option(parser, "--index-bytes", INDEX_BYTES)?;
        }
        "max-bytes" => {
            let text = text_value(parser, "--max-bytes")?;
            let cap = parse_size(&text).map_err(|why| format!("--max-bytes {text}: {why}"))?;
            options.max_bytes = Some(cap);
        }
        "when-full" => {
            options.when_full = match text_value(parser, "--when-full")?.as_str() {
                "refuse" => WhenFull::RefuseWrites,
                "drop-oldest" => WhenFull::DropOldest,
                other => {
                    return Err(format!(
                        "invalid --when-full value {other:?}: expected refuse or drop-oldest"
                    ))
                }
            };
        }
        "wal-preallocation-bytes" => {
            let flag = "--wal-preallocation-bytes";
            let step = size_option(parser, flag, WAL_PREALLOCATION_BYTES)?;
            options.wal_preallocation_bytes = Some(step as u64);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `--max-bytes` against the least cap the MemTables need (checked once every option is known,
/// as `--memtable-bytes` may come after it).
fn check_max_bytes(options: &Options) -> Result<(), String> {
    let Some(cap) = options.max_bytes else { return Ok(()) };
    let min = minivault_core::space::min_max_bytes(options.memtable_bytes);
    if cap < min {
        return Err(format!(
            "--max-bytes {} is below the {} ({min} bytes) that MemTables of {} need (16 x --memtable-bytes)",
            human_bytes(cap),
            human_bytes(min),
            human_bytes(options.memtable_bytes as u64),
        ));
    }
    Ok(())
}

/// `forward DIR --stream S --mqtt HOST:PORT --topic T [OPTIONS]`, after the word `forward`.
/// The database's options may come before `forward` or among these.
fn parse_forward(parser: &mut lexopt::Parser, mut options: Options) -> Result<Request, String> {
    use lexopt::prelude::*;
    let (mut dir, mut stream, mut mqtt, mut topic) = (None, None, None, None);
    let (mut qos, mut consumer, mut client_id) = (1u8, b"mqtt".to_vec(), None);
    let (mut until_drained, mut ingest_stdin, mut progress_secs) = (false, false, 1u64);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Request::ForwardHelp),
            Long("stream") => stream = Some(name_value(parser, "--stream")?),
            Long("consumer") => consumer = name_value(parser, "--consumer")?,
            Long("mqtt") => mqtt = Some(parse_host_port(&text_value(parser, "--mqtt")?)?),
            Long("topic") => {
                let t = text_value(parser, "--topic")?;
                minivault::forward::check_topic(&t).map_err(|why| format!("--topic: {why}"))?;
                topic = Some(t);
            }
            Long("qos") => {
                qos = match text_value(parser, "--qos")?.as_str() {
                    "0" => 0,
                    "1" => 1,
                    other => return Err(format!("--qos {other}: expected 0 or 1 (QoS 2 is not supported)")),
                };
            }
            Long("client-id") => {
                let id = text_value(parser, "--client-id")?;
                if id.is_empty() || id.len() > 65_535 {
                    return Err(String::from("--client-id: 1 to 65535 bytes"));
                }
                client_id = Some(id);
            }
            Long("until-drained") => until_drained = true,
            Long("ingest-stdin") => ingest_stdin = true,
            Long("progress-secs") => {
                let text = text_value(parser, "--progress-secs")?;
                progress_secs = text
                    .parse()
                    .ok()
                    .filter(|&s| s <= 86_400)
                    .ok_or_else(|| format!("--progress-secs {text}: expected 0 (off) to 86400"))?;
            }
            Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
            Long(name) => {
                let name = name.to_owned();
                if !database_option(parser, &name, &mut options)? {
                    return Err(format!("invalid option '--{name}'"));
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    check_max_bytes(&options)?;
    if options.read_only {
        return Err(String::from("forward writes its cursor: --read-only does not go with it"));
    }
    let missing = |what: &str| format!("forward needs {what} (minivault forward --help)");
    let (host, port) = mqtt.ok_or_else(|| missing("--mqtt HOST:PORT"))?;
    Ok(Request::Forward(ForwardArgs {
        dir: dir.ok_or_else(|| missing("DIR"))?,
        options,
        stream: stream.ok_or_else(|| missing("--stream NAME"))?,
        host,
        port,
        topic: topic.ok_or_else(|| missing("--topic TOPIC"))?,
        qos,
        consumer,
        client_id,
        until_drained,
        ingest_stdin,
        progress_secs,
    }))
}

/// A stream or consumer name: 1 ..= 255 bytes (any bytes the shell can pass).
fn name_value(parser: &mut lexopt::Parser, flag: &str) -> Result<Vec<u8>, String> {
    use std::os::unix::ffi::OsStringExt;
    let name = parser.value().map_err(|e| e.to_string())?.into_vec();
    if name.is_empty() || name.len() > minivault::outbox::key::MAX_NAME_LEN {
        return Err(format!("{flag}: a name of 1 to 255 bytes"));
    }
    Ok(name)
}

/// `HOST:PORT` or `HOST` (port 1883); an IPv6 address in brackets: `[::1]:1883`.
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("--mqtt {text:?}: {why}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected :PORT after ]"))?),
        };
        (format!("[{addr}]"), port)
    } else {
        match text.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("write an IPv6 address in brackets: [::1]:1883"))
            }
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (text.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("expected HOST:PORT, e.g. 127.0.0.1:1883"));
    }
    let port = match port {
        None => 1883,
        Some(p) => p.parse().ok().filter(|&p| p > 0).ok_or_else(|| bad("the port must be 1 to 65535"))?,
    };
    Ok((host, port))
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
pub const USAGE: &str = "usage: minivault [OPTIONS] [DIR [COMMAND [ARG ...]]]  (minivault --help for more)
       minivault [OPTIONS] forward DIR --stream S --mqtt HOST:PORT --topic T [...]  (minivault forward --help)";

/// `minivault forward --help`.
pub fn forward_help() -> String {
    String::from(
        "minivault forward: drain a stream of the database to an MQTT broker (store and forward)

usage: minivault [OPTIONS] forward DIR --stream NAME --mqtt HOST:PORT --topic TOPIC [OPTIONS]

Opens the database in DIR (created if missing) and publishes each record of the stream after
the consumer's cursor as one MQTT 5 message to TOPIC: the payload is the record, the user
property `seq` its sequence number (and `stream` the stream's name). The cursor moves only
after the broker's PUBACK (QoS 1), and records below every consumer's cursor are trimmed.
When the broker goes away it reconnects (100 ms, doubling to 5 s) and sends again what was
not acknowledged: delivery is at least once; receivers drop duplicates by seq.

  --stream NAME         the stream to drain (1 to 255 bytes)
  --mqtt HOST[:PORT]    the broker (port 1883 when not given; IPv6 as [::1]:1883)
  --topic TOPIC         where to publish (no + or # wildcards)
  --qos 0|1             1 (default): a record is done on the broker's PUBACK;
                        0: once written to the socket (a broker that goes away loses some)
  --consumer NAME       whose cursor to move (default mqtt)
  --client-id ID        MQTT client id (default minivault-PID-STREAM)
  --until-drained       exit 0 once nothing is left to send (after standard input ended,
                        with --ingest-stdin)
  --ingest-stdin        also append each line of standard input to the stream (without
                        its line break; lines that arrive together share one sync), so
                        `sensor-reader | minivault forward ...` is a complete agent
  --progress-secs N     a progress line every N seconds on stderr (default 1; 0: none)
  and the database's options (--sync, --memtable-bytes, ...: see minivault --help).

Everything it says goes to stderr. It runs until SIGINT or SIGTERM (the cursor is stored, the
connection closed; a second signal exits at once).
Exit status: 0 drained (or stopped by a signal without --until-drained); 1 a runtime failure:
the database, a line of input it could not store, interrupted before drained with
--until-drained; 2 bad arguments.",
    )
}

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
  minivault forward DIR --stream S --mqtt HOST:PORT --topic T
                                 drains a stream to an MQTT broker (minivault forward --help)
The first argument that is not an option is DIR; the words after it are the command, each
one token (quote them for your shell: minivault db put \"my key\" \"a b c\").

Options (before DIR):
  --sync MODE              when writes are durable: always (default; each write is
                           fdatasync'ed), every:N, periodic:MS or manual
  --memtable-bytes SIZE    each of the two MemTables (default {memtable}; {memtable_range});
                           bounds the largest entry
  --cache-bytes SIZE       SSTable page cache (default {cache}; 0 turns it off; up to {cache_max})
  --row-cache-bytes SIZE   row cache (default {rows}; 0 turns it off; up to {rows_max})
  --index-bytes SIZE       SSTable fences and filters kept in memory for gets (default
                           {index}; 0 turns it off; up to {index_max})
  --wal-preallocation-bytes SIZE
                           how far ahead of the writer the WAL is extended, so that a durable
                           write's fdatasync has no file size to commit (default a quarter
                           MemTable, at most 1 MiB: 896 KiB, which a fresh database takes on
                           disk; 0 turns it off; up to {walpre_max})
  --max-bytes SIZE         the most the database's files may take on disk (default: no cap;
                           at least 16 x --memtable-bytes: {cap_min} with the default)
  --when-full POLICY       at --max-bytes or on a full disk: refuse (default; writes reply
                           ERR no space: ..., reads go on) or drop-oldest (the oldest
                           SSTables are deleted whole, a FIFO buffer; stats counts them)
  --no-wal-mapping         append WAL records with pwrite, not through a shared mapping: a
                           failing disk then answers ERR instead of ending the process
                           (SIGBUS); slower writes
  --strict                 piped input: stop at the first ERR reply, exit code 1
  --read-only              open without writing anything and without the lock: works on a
                           directory you cannot write and while another process writes; sees
                           the database as it was when opened; writes reply ERR
  -h, --help               this text
  -V, --version            the version
SIZE is a number of bytes, optionally with K, M or G (KiB, MiB, GiB): 64K, 4M, 1G.
Memory: at most (2 + background threads + 1) x memtable + cache + row cache + index
({memory} with the defaults: 2 compaction threads and the flush thread's copy).

Commands (case-insensitive; type help COMMAND in the REPL):
",
        version = env!("CARGO_PKG_VERSION"),
        memtable = human_bytes(d.memtable_bytes as u64),
        memtable_range = range(MEMTABLE_BYTES),
        cache = human_bytes(d.cache_bytes as u64),
        cache_max = human_bytes(CACHE_BYTES.max),
        rows = human_bytes(d.row_cache_bytes as u64),
        rows_max = human_bytes(ROW_CACHE_BYTES.max),
        index = human_bytes(d.index_bytes as u64),
        index_max = human_bytes(INDEX_BYTES.max),
        walpre_max = human_bytes(WAL_PREALLOCATION_BYTES.max),
        memory = human_bytes(d.memory_bytes()),
        cap_min = human_bytes(minivault_core::space::min_max_bytes(d.memtable_bytes)),
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
        assert!(run(&["db"]).unwrap().options.map_wal_appends);
        assert!(!run(&["--no-wal-mapping", "db"]).unwrap().options.map_wal_appends);
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
    fn max_bytes_and_when_full_are_parsed_and_a_cap_below_the_memtables_need_is_an_error() {
        let a = run(&["--max-bytes", "64M", "--when-full", "drop-oldest", "db"]).unwrap();
        assert_eq!((a.options.max_bytes, a.options.when_full), (Some(64 << 20), WhenFull::DropOldest));
        assert_eq!(run(&["--when-full", "refuse"]).unwrap().options.when_full, WhenFull::RefuseWrites);
        assert_eq!(run(&[]).unwrap().options.max_bytes, None);
        let e = run(&["--max-bytes", "1M"]).unwrap_err();
        assert!(e.contains("--max-bytes 1 MiB is below the 64 MiB"), "{e}");
        // The MemTable size given after the cap counts.
        assert_eq!(
            run(&["--max-bytes", "1M", "--memtable-bytes", "64K"]).unwrap().options.max_bytes,
            Some(1 << 20)
        );
        assert!(run(&["--when-full", "evict"]).unwrap_err().contains("refuse or drop-oldest"));
        assert!(run(&["--max-bytes", "lots"]).unwrap_err().starts_with("--max-bytes lots:"));
    }

    #[test]
    fn help_lists_every_option_with_its_default_and_every_command() {
        let h = help();
        for word in [
            "--sync",
            "--memtable-bytes",
            "--cache-bytes",
            "--row-cache-bytes",
            "--max-bytes",
            "--when-full",
            "--strict",
            "4 MiB",
            "8 MiB",
        ] {
            assert!(h.contains(word), "{word}");
        }
        for c in COMMANDS {
            assert!(h.contains(c.usage), "{}", c.name);
        }
    }
}
