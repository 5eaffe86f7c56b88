//! Running commands: [`ReplBackend`], [`execute`] (one command, one reply) and the loop [`run`].

use std::fmt;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use super::format::{format_value, one_line};
use super::parse::{command_info, parse_line, Command, ParseError, MAX_LINE_LEN};
use crate::outbox::{Record, StreamStats};
use crate::scan::Entry;
use crate::Ttl;

/// The reply to `help`: every command with its syntax, on one line.
pub const HELP: &str = "commands: put KEY VALUE [EX SECONDS | PX MILLISECONDS] (set = put) | get KEY \
     | mget KEY... | exists KEY... | ttl KEY | pttl KEY | del KEY... | scan START END [LIMIT N] [REV] \
     | prefix PREFIX [LIMIT N] [REV] | count [START END] | append STREAM VALUE \
     | read STREAM FROM [LIMIT N] | ack STREAM CONSUMER SEQ | lag STREAM | flush | sync | stats | info \
     | help [COMMAND] | quit | exit; quote tokens with \"...\" (escapes \\\" \\\\ \\n \\r \\t \\0 \\xHH) \
     or '...' (literal)";

/// What the REPL needs from a database. The binary implements it for [`crate::Db`]; tests use
/// a map.
pub trait ReplBackend {
    /// The backend's error, printed after `ERR `.
    type Error: fmt::Display;
    /// Stores `value` under `key`, expiring after `ttl` when given.
    fn put(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Self::Error>;
    /// Reads the value under `key`, `None` when absent (or expired).
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// How long `key` has left to live.
    fn ttl(&mut self, key: &[u8]) -> Result<Ttl, Self::Error>;
    /// Deletes every key of `keys`, all or none (not an error when absent).
    fn delete(&mut self, keys: &[Vec<u8>]) -> Result<(), Self::Error>;
    /// Flushes the memtable.
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// Makes all writes so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// One line of statistics (line breaks are replaced with spaces when printed).
    fn stats(&mut self) -> Result<String, Self::Error>;
    /// The statistics for people: lines of text, `# section` lines between groups.
    fn info(&mut self) -> Result<String, Self::Error>;
    /// Up to `limit` entries of the keys from `start` (inclusive, `None`: the first) to `end`
    /// (exclusive, `None`: past the last) — or of the keys starting with `prefix`, when given —
    /// in key order (`reverse`: descending).
    fn scan(&mut self, query: &ScanQuery<'_>) -> Result<Vec<Entry>, Self::Error>;
    /// How many keys lie from `start` (inclusive) to `end` (exclusive).
    fn count(&mut self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<u64, Self::Error>;
    /// Appends `value` to the outbox stream `stream`; returns its seq.
    fn append(&mut self, stream: &[u8], value: &[u8]) -> Result<u64, Self::Error>;
    /// Up to `limit` records of `stream` from seq `from` on, in order.
    fn read(&mut self, stream: &[u8], from: u64, limit: Option<u64>) -> Result<Vec<Record>, Self::Error>;
    /// Stores `consumer`'s cursor on `stream` at `seq` (it never moves back); returns it.
    fn ack(&mut self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, Self::Error>;
    /// `stream`'s records and its consumers' positions.
    fn lag(&mut self, stream: &[u8]) -> Result<StreamStats, Self::Error>;
}

/// What a `scan` or `prefix` command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanQuery<'q> {
    /// The first key (inclusive); `None`: from the first key.
    pub start: Option<&'q [u8]>,
    /// The key after the last (exclusive); `None`: to the last key.
    pub end: Option<&'q [u8]>,
    /// Only keys that start with this (then `start` and `end` are `None`).
    pub prefix: Option<&'q [u8]>,
    /// At most this many entries.
    pub limit: Option<u64>,
    /// From the end down.
    pub reverse: bool,
}

/// One command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// What to print: one line, or for `info` several lines ending with an empty one.
    Text(String),
    /// Printed as `ERR <reason>`, on one line.
    Error(String),
    /// `quit`: prints nothing and ends the session.
    Quit,
}

impl Reply {
    /// True for [`Reply::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The reply as printed, without its final line break; empty for [`Reply::Quit`].
    pub fn printed(&self) -> String {
        match self {
            Reply::Text(text) => text.clone(),
            Reply::Error(reason) => format!("ERR {reason}"),
            Reply::Quit => String::new(),
        }
    }
}

/// Runs one command against `backend` and returns its reply.
///
/// Replies: `OK` for put / del / flush / sync; the value through [`format_value`] or `(nil)`
/// for get; the values on one line, separated by spaces, for mget; a count for exists; seconds
/// (or milliseconds) for ttl (pttl), `-1` for no expiry and `-2` for an absent key; the
/// backend's stats line; its info lines followed by an empty line; [`HELP`] or one command's
/// usage and summary; an error when the backend fails. Nothing but `info` spans lines: line
/// breaks in a backend's message become spaces.
pub fn respond<B: ReplBackend>(backend: &mut B, cmd: Command) -> Reply {
    fn reply<E: fmt::Display>(result: Result<String, E>) -> Reply {
        match result {
            Ok(text) => Reply::Text(one_line(&text)),
            Err(e) => Reply::Error(one_line(&e.to_string())),
        }
    }
    let ok = |()| String::from("OK");
    let value_or_nil =
        |found: Option<Vec<u8>>| found.map_or_else(|| String::from("(nil)"), |v| format_value(&v));
    match cmd {
        Command::Put { key, value, ttl_secs } => {
            reply(backend.put(&key, &value, ttl_secs.map(Duration::from_secs)).map(ok))
        }
        Command::PutMillis { key, value, ttl_millis } => {
            reply(backend.put(&key, &value, Some(Duration::from_millis(ttl_millis))).map(ok))
        }
        Command::Get { key } => reply(backend.get(&key).map(value_or_nil)),
        Command::MGet { keys } => {
            let mut values = Vec::with_capacity(keys.len());
            for key in &keys {
                match backend.get(key) {
                    Ok(found) => values.push(value_or_nil(found)),
                    Err(e) => return reply::<B::Error>(Err(e)),
                }
            }
            Reply::Text(values.join(" "))
        }
        Command::Exists { keys } => {
            let mut present = 0u64;
            for key in &keys {
                match backend.get(key) {
                    Ok(found) => present += u64::from(found.is_some()),
                    Err(e) => return reply::<B::Error>(Err(e)),
                }
            }
            Reply::Text(present.to_string())
        }
        Command::Ttl { key, millis } => reply(backend.ttl(&key).map(|ttl| match ttl {
            Ttl::NoKey => String::from("-2"),
            Ttl::NoExpiry => String::from("-1"),
            Ttl::ExpiresIn(left) if millis => left.as_millis().to_string(),
            // Rounded to the nearest second, as redis does.
            Ttl::ExpiresIn(left) => (left.as_millis().saturating_add(500) / 1000).to_string(),
        })),
        Command::Del { keys } => reply(backend.delete(&keys).map(ok)),
        Command::Scan { start, end, limit, reverse } => {
            let query =
                ScanQuery { start: start.as_deref(), end: end.as_deref(), prefix: None, limit, reverse };
            scan_reply(backend.scan(&query))
        }
        Command::Prefix { prefix, limit, reverse } => {
            let query = ScanQuery { start: None, end: None, prefix: Some(&prefix), limit, reverse };
            scan_reply(backend.scan(&query))
        }
        Command::Count { start, end } => {
            reply(backend.count(start.as_deref(), end.as_deref()).map(|n| n.to_string()))
        }
        Command::Append { stream, value } => {
            reply(backend.append(&stream, &value).map(|seq| seq.to_string()))
        }
        Command::Read { stream, from, limit } => match backend.read(&stream, from, limit) {
            Ok(records) => {
                let mut text = String::new();
                for r in &records {
                    text.push_str(&format!("{} {}\n", r.seq, format_value(&r.value)));
                }
                let n = records.len();
                text.push_str(&format!("({n} {})", if n == 1 { "record" } else { "records" }));
                Reply::Text(text)
            }
            Err(e) => Reply::Error(one_line(&e.to_string())),
        },
        Command::Ack { stream, consumer, seq } => {
            reply(backend.ack(&stream, &consumer, seq).map(|cursor| cursor.to_string()))
        }
        Command::Lag { stream } => match backend.lag(&stream) {
            Ok(stats) => Reply::Text(lag_reply(&stats)),
            Err(e) => Reply::Error(one_line(&e.to_string())),
        },
        Command::Flush => reply(backend.flush().map(ok)),
        Command::Sync => reply(backend.sync().map(ok)),
        Command::Stats => reply(backend.stats()),
        Command::Info => match backend.info() {
            // The empty line ends the reply, so a script knows where it stops.
            Ok(text) => Reply::Text(format!("{}\n", text.trim_end())),
            Err(e) => Reply::Error(one_line(&e.to_string())),
        },
        Command::Help => Reply::Text(String::from(HELP)),
        Command::HelpOn { command } => match command_info(&command) {
            Some(info) => Reply::Text(format!("{}: {}", info.usage, info.summary)),
            None => Reply::Error(ParseError::UnknownCommand(format_value(&command)).to_string()),
        },
        Command::Quit => Reply::Quit,
    }
}

/// The reply to `lag`: the stream's line, a line per consumer, then `(N consumers)`.
fn lag_reply(s: &StreamStats) -> String {
    let seq = |s: Option<u64>| s.map_or_else(|| String::from("-"), |s| s.to_string());
    let mut text = format!(
        "stream {} oldest={} newest={} next={} records={} bytes={} evicted_before_ack={}\n",
        format_value(&s.stream),
        seq(s.oldest),
        seq(s.newest),
        s.next_seq,
        s.records,
        s.bytes,
        s.evicted_before_ack
    );
    for c in &s.consumers {
        text.push_str(&format!(
            "consumer {} cursor={} lag={} evicted_before_ack={}\n",
            format_value(&c.name),
            c.acked,
            c.lag,
            c.evicted_before_ack
        ));
    }
    let n = s.consumers.len();
    text.push_str(&format!("({n} {})", if n == 1 { "consumer" } else { "consumers" }));
    text
}

/// The reply to a scan: a `KEY VALUE` line per entry, each quoted as the REPL reads it back, then
/// `(N keys)`, which ends the reply (a script reads up to it).
fn scan_reply<E: fmt::Display>(result: Result<Vec<Entry>, E>) -> Reply {
    match result {
        Ok(entries) => {
            let mut text = String::new();
            for (k, v) in &entries {
                text.push_str(&format_value(k));
                text.push(' ');
                text.push_str(&format_value(v));
                text.push('\n');
            }
            let n = entries.len();
            text.push_str(&format!("({n} {})", if n == 1 { "key" } else { "keys" }));
            Reply::Text(text)
        }
        Err(e) => Reply::Error(one_line(&e.to_string())),
    }
}

/// Runs one command and returns its reply as printed (without a final line break) and whether
/// to quit: [`respond`], printed.
pub fn execute<B: ReplBackend>(backend: &mut B, cmd: Command) -> (String, bool) {
    let reply = respond(backend, cmd);
    (reply.printed(), reply == Reply::Quit)
}

/// The reply to one line of input (`None` for a blank line): what the loop prints for it.
pub fn reply_to_line<B: ReplBackend>(backend: &mut B, line: Result<&[u8], ParseError>) -> Option<Reply> {
    match line.and_then(parse_line) {
        Ok(None) => None,
        Ok(Some(cmd)) => Some(respond(backend, cmd)),
        Err(e) => Some(Reply::Error(e.to_string())),
    }
}

/// Reads commands from `input` and writes one reply line per non-blank line to `output`.
///
/// Lines are read as bytes and may end in `\n` or `\r\n` (or the end of input). Blank lines print
/// nothing; parse errors and backend errors print `ERR <reason>` and the loop continues; a line
/// longer than [`MAX_LINE_LEN`] prints `ERR line too long` and is discarded without being
/// buffered. When `prompt` is true, `> ` is written (and flushed) before each read. Output is
/// flushed after every reply. Stops at end of input or on `quit` / `exit`.
///
/// # Errors
///
/// Only I/O errors from reading `input` or writing `output`; parse and backend errors are replies.
pub fn run<R: BufRead, W: Write, B: ReplBackend>(
    input: R,
    output: W,
    backend: &mut B,
    prompt: bool,
) -> io::Result<()> {
    run_reader(input, output, backend, Settings { prompt, strict: false }).map(drop)
}

/// [`run`] with [`Settings`] (`--strict`), reporting how the session ended.
///
/// # Errors
///
/// Only I/O errors from reading `input` or writing `output`.
pub fn run_reader<R: BufRead, W: Write, B: ReplBackend>(
    input: R,
    output: W,
    backend: &mut B,
    settings: Settings,
) -> io::Result<Outcome> {
    run_lines(&mut ReaderLines(input), output, backend, settings)
}

/// How [`run_lines`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Write `> ` (and flush) before each read.
    pub prompt: bool,
    /// Stop at the first `ERR` reply (`minivault --strict`).
    pub strict: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// `ERR` replies printed.
    pub errors: u64,
    /// True when [`Settings::strict`] stopped the session at an `ERR`.
    pub stopped_at_error: bool,
}

/// Where the loop's lines come from: a reader ([`run`]), or a terminal's line editor (the
/// binary's).
pub trait LineSource {
    /// Reads the next line, without its line terminator, into `line` (cleared first).
    ///
    /// A source must not buffer more than [`MAX_LINE_LEN`] (plus a little) of a longer line: it
    /// returns [`LineRead::TooLong`] instead.
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<LineRead>;
}

/// A [`LineSource`] over a [`BufRead`]: lines end in `\n` or `\r\n`.
struct ReaderLines<R>(R);

impl<R: BufRead> LineSource for ReaderLines<R> {
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<LineRead> {
        read_line_bounded(&mut self.0, line, MAX_LINE_LEN)
    }
}

/// The loop: reads lines from `source` until its end, `quit` or (strict) the first `ERR`, and
/// writes each non-blank line's reply to `output`, flushed after each. Used by [`run`] and by
/// the binary's terminal front end.
///
/// # Errors
///
/// Only I/O errors from reading `source` or writing `output`.
pub fn run_lines<S: LineSource + ?Sized, W: Write, B: ReplBackend>(
    source: &mut S,
    mut output: W,
    backend: &mut B,
    settings: Settings,
) -> io::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut line = Vec::new();
    loop {
        if settings.prompt {
            output.write_all(b"> ")?;
            output.flush()?;
        }
        let read = match source.read_line(&mut line)? {
            LineRead::Eof => return Ok(outcome),
            LineRead::TooLong => Err(ParseError::LineTooLong),
            LineRead::Line => Ok(line.as_slice()),
        };
        let Some(reply) = reply_to_line(backend, read) else { continue };
        if reply == Reply::Quit {
            return Ok(outcome);
        }
        output.write_all(reply.printed().as_bytes())?;
        output.write_all(b"\n")?;
        output.flush()?;
        if reply.is_error() {
            outcome.errors += 1;
            if settings.strict {
                outcome.stopped_at_error = true;
                return Ok(outcome);
            }
        }
    }
}

/// What a [`LineSource`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// End of input before any byte of a new line.
    Eof,
    /// A line is in the buffer, without its `\n` / `\r\n`.
    Line,
    /// The line was longer than the limit; it has been consumed and the buffer holds nothing.
    TooLong,
}

/// Reads one line into `line` (cleared first), keeping at most `max + 1` bytes of it: the rest of
/// a longer line is consumed from `input`'s buffer and dropped.
pub(super) fn read_line_bounded<R: BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if !read_any {
                return Ok(LineRead::Eof);
            }
            break;
        }
        read_any = true;
        let (chunk, consumed, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (available.get(..newline).unwrap_or_default(), newline + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            // `max + 1` leaves room for the `\r` of a `\r\n` line of exactly `max` bytes.
            if line.len().saturating_add(chunk.len()) > max.saturating_add(1) {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(consumed);
        if ended {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if too_long || line.len() > max {
        line.clear();
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}
