//! Running commands: [`ReplBackend`], [`execute`] (one command, one reply) and the loop [`run`].

use std::fmt;
use std::io::{self, BufRead, Write};

use super::format::{format_value, one_line};
use super::parse::{parse_line, Command, ParseError, MAX_LINE_LEN};

/// The reply to `help`: every command with its syntax, on one line.
pub const HELP: &str = "commands: put KEY VALUE [EX SECONDS] | get KEY | del KEY | flush | sync \
     | stats | help | quit | exit; quote tokens with \"...\" (escapes \\\" \\\\ \\n \\r \\t \\0 \\xHH) \
     or '...' (literal)";

/// What the REPL needs from a database. The binary implements it for `Db`; tests use a map.
pub trait ReplBackend {
    /// The backend's error, printed after `ERR `.
    type Error: fmt::Display;
    /// Stores `value` under `key`, expiring after `ttl_secs` seconds when given.
    fn put(&mut self, key: &[u8], value: &[u8], ttl_secs: Option<u64>) -> Result<(), Self::Error>;
    /// Reads the value under `key`, `None` when absent (or expired).
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Deletes `key` (not an error when absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), Self::Error>;
    /// Flushes the memtable.
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// Makes all writes so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// One line of statistics (line breaks are replaced with spaces when printed).
    fn stats(&mut self) -> Result<String, Self::Error>;
}

/// Runs one command and returns its reply line (without a trailing newline) and whether to quit.
///
/// Replies: `OK` for put / del / flush / sync; the value through [`format_value`] or `(nil)` for
/// get; the backend's stats line; [`HELP`]; `ERR <error>` when the backend fails. `Quit` returns
/// an empty reply and `true`: quitting prints nothing.
pub fn execute<B: ReplBackend>(backend: &mut B, cmd: Command) -> (String, bool) {
    fn ok_or_err<E: fmt::Display>(result: Result<String, E>) -> String {
        match result {
            Ok(reply) => one_line(&reply),
            Err(e) => format!("ERR {}", one_line(&e.to_string())),
        }
    }
    let ok = |()| String::from("OK");
    let reply = match cmd {
        Command::Put { key, value, ttl_secs } => ok_or_err(backend.put(&key, &value, ttl_secs).map(ok)),
        Command::Get { key } => ok_or_err(backend.get(&key).map(|found| match found {
            Some(value) => format_value(&value),
            None => String::from("(nil)"),
        })),
        Command::Del { key } => ok_or_err(backend.delete(&key).map(ok)),
        Command::Flush => ok_or_err(backend.flush().map(ok)),
        Command::Sync => ok_or_err(backend.sync().map(ok)),
        Command::Stats => ok_or_err(backend.stats()),
        Command::Help => String::from(HELP),
        Command::Quit => return (String::new(), true),
    };
    (reply, false)
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
    run_lines(&mut ReaderLines(input), output, backend, prompt)
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

/// The loop: reads lines from `source` until its end or `quit`, and writes each non-blank
/// line's one reply to `output` (flushed after each). With `prompt`, writes `> ` before each
/// read. Used by [`run`] and by the binary's terminal front end.
///
/// # Errors
///
/// Only I/O errors from reading `source` or writing `output`.
pub fn run_lines<S: LineSource + ?Sized, W: Write, B: ReplBackend>(
    source: &mut S,
    mut output: W,
    backend: &mut B,
    prompt: bool,
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        if prompt {
            output.write_all(b"> ")?;
            output.flush()?;
        }
        let parsed = match source.read_line(&mut line)? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => Err(ParseError::LineTooLong),
            LineRead::Line => parse_line(&line),
        };
        let reply = match parsed {
            Ok(None) => continue,
            Ok(Some(cmd)) => match execute(backend, cmd) {
                (_, true) => return Ok(()),
                (reply, false) => reply,
            },
            Err(e) => format!("ERR {e}"),
        };
        output.write_all(reply.as_bytes())?;
        output.write_all(b"\n")?;
        output.flush()?;
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
