//! The `minivault` REPL: the command language, its parser, reply formatting and the line loop.
//!
//! This module owns everything between the user's keystrokes and the database calls, and nothing
//! about the database itself: the loop talks to a [`ReplBackend`], so tests (and the binary) can
//! plug in anything that stores bytes.
//!
//! - [`parse_line`] is pure: one line of bytes in, a [`Command`] (or `None` for a blank line) or a
//!   [`ParseError`] out. It never panics, whatever the input.
//! - [`format_value`] prints a stored value so that it can be pasted back as input.
//! - [`execute`] runs one [`Command`] against a backend and returns exactly one reply line.
//! - [`run`] is the loop, generic over [`BufRead`] / [`Write`], so tests pipe scripts through it.
//!
//! # Language
//!
//! ```text
//! put KEY VALUE [EX SECONDS]   store VALUE under KEY, optionally expiring after SECONDS (1..=4294967295)
//! get KEY                      print the value, or (nil)
//! del KEY                      delete KEY
//! flush                        flush the memtable to a table file
//! sync                         make everything written so far durable
//! stats                        print one line of statistics
//! help                         print the one-line command summary
//! quit | exit                  leave (prints nothing)
//! ```
//!
//! Command names and the `EX` keyword are case-insensitive. Tokens are separated by ASCII
//! whitespace. A token is one of:
//!
//! - bare: any run of non-whitespace bytes, taken literally (a backslash is just a backslash);
//! - double-quoted: `"..."`, may contain spaces and the escapes `\"` `\\` `\n` `\r` `\t` `\0` and
//!   `\xHH` (any byte), so keys and values can be arbitrary bytes;
//! - single-quoted: `'...'`, taken literally, no escapes.
//!
//! `""` and `''` are valid, empty tokens. A quote character may only *start* a token, and a
//! closing quote must be followed by whitespace or the end of the line: `a"b"`, `"a"b` and `it's`
//! are errors ([`ParseError::QuoteInsideToken`]) rather than being concatenated, so what a line
//! means is never a surprise (write `"it's"` instead).
//!
//! Raw input must be valid UTF-8 and must not contain ASCII control bytes other than whitespace
//! between tokens (inside quotes even a tab must be written `\t`); bytes that are not text are
//! written with `\xHH`. A line longer than [`MAX_LINE_LEN`] bytes is rejected.
//!
//! # Replies
//!
//! Every non-blank line gets exactly one reply line: `OK`, a value (see [`format_value`]),
//! `(nil)`, the stats line, the help line, or `ERR <reason>` for a parse or backend error, after
//! which the loop carries on. `quit` / `exit` print nothing and end the loop, as does end of input.

use std::fmt;
use std::io::{self, BufRead, Write};

/// The longest line (in bytes, without its `\n` or `\r\n`) the REPL accepts: 4 MiB.
///
/// [`run`] never buffers more than this (plus one byte) of a longer line: it replies
/// `ERR line too long` and discards the rest of that line as it reads it.
pub const MAX_LINE_LEN: usize = 4 * 1024 * 1024;

/// The reply to `help`: every command with its syntax, on one line.
pub const HELP: &str = "commands: put KEY VALUE [EX SECONDS] | get KEY | del KEY | flush | sync \
     | stats | help | quit | exit; quote tokens with \"...\" (escapes \\\" \\\\ \\n \\r \\t \\0 \\xHH) \
     or '...' (literal)";

/// How many bytes of an offending token an error message quotes before eliding the rest.
const MAX_QUOTED_IN_ERROR: usize = 32;

const PUT_USAGE: &str = "put KEY VALUE [EX SECONDS] (quote values that contain spaces)";
const GET_USAGE: &str = "get KEY";
const DEL_USAGE: &str = "del KEY";

/// One parsed REPL command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `put KEY VALUE [EX SECONDS]`.
    Put {
        /// The key, as bytes.
        key: Vec<u8>,
        /// The value, as bytes.
        value: Vec<u8>,
        /// Time to live in seconds (1..=4294967295), when `EX SECONDS` was given.
        ttl_secs: Option<u64>,
    },
    /// `get KEY`.
    Get {
        /// The key, as bytes.
        key: Vec<u8>,
    },
    /// `del KEY`.
    Del {
        /// The key, as bytes.
        key: Vec<u8>,
    },
    /// `flush`: write the memtable out.
    Flush,
    /// `sync`: make all writes so far durable.
    Sync,
    /// `stats`: one line of statistics.
    Stats,
    /// `help`: the one-line command summary.
    Help,
    /// `quit` or `exit`.
    Quit,
}

/// Why a line could not be parsed. `Display` gives a short reason, without the `ERR` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The first token is not a command name. Holds the name as printed by [`format_value`]
    /// (so it is always one line), cut to a few dozen bytes.
    UnknownCommand(String),
    /// A known command with the wrong number of arguments.
    WrongArity {
        /// The command's name, lowercase.
        command: &'static str,
        /// Its syntax.
        usage: &'static str,
    },
    /// A `"` or `'` token without its closing quote.
    UnterminatedQuote,
    /// A backslash escape the parser does not know, or `\x` not followed by two hex digits.
    /// Holds the escape as written, e.g. `\q` or `\xZ`.
    InvalidEscape(String),
    /// A quote in the middle of a token, or text right after a closing quote (`a"b"`, `"a"b`).
    QuoteInsideToken,
    /// `put` with something other than `EX SECONDS` where SECONDS is an integer in
    /// 1..=4294967295. Holds the offending SECONDS (as printed by [`format_value`]), or `None`
    /// when it was missing.
    InvalidTtl(Option<String>),
    /// The line is not valid UTF-8 outside escapes.
    NotUtf8,
    /// A raw ASCII control byte (such as NUL) where it is not allowed.
    ControlByte(u8),
    /// The line is longer than [`MAX_LINE_LEN`].
    LineTooLong,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCommand(name) => write!(f, "unknown command {name} (type help)"),
            Self::WrongArity { command, usage } => {
                write!(f, "wrong number of arguments for {command}; usage: {usage}")
            }
            Self::UnterminatedQuote => f.write_str("unterminated quote"),
            Self::InvalidEscape(escape) => {
                write!(f, "invalid escape {escape}; use \\\" \\\\ \\n \\r \\t \\0 or \\xHH")
            }
            Self::QuoteInsideToken => {
                f.write_str("quote inside a token; quote the whole token instead, e.g. \"it's\" not it's")
            }
            Self::InvalidTtl(Some(given)) => {
                write!(f, "invalid TTL {given}; EX SECONDS needs an integer from 1 to 4294967295")
            }
            Self::InvalidTtl(None) => {
                f.write_str("invalid TTL: EX needs SECONDS, an integer from 1 to 4294967295")
            }
            Self::NotUtf8 => f.write_str("input is not valid UTF-8; use \\xHH escapes for bytes"),
            Self::ControlByte(byte) => {
                write!(f, "raw control byte 0x{byte:02X} in input; use \\xHH escapes (or \\n \\r \\t \\0)")
            }
            Self::LineTooLong => f.write_str("line too long"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one line (without its line terminator) into a command.
///
/// Returns `Ok(None)` for a blank or whitespace-only line. Never panics.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong with the line.
pub fn parse_line(line: &[u8]) -> Result<Option<Command>, ParseError> {
    if line.len() > MAX_LINE_LEN {
        return Err(ParseError::LineTooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let tokens = tokenize(text)?;
    let mut args = tokens.into_iter();
    let Some(name) = args.next() else {
        return Ok(None);
    };
    let args: Vec<Vec<u8>> = args.collect();
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());

    let command = if is("put") {
        parse_put(args)?
    } else if is("get") {
        Command::Get { key: one_arg(args, "get", GET_USAGE)? }
    } else if is("del") {
        Command::Del { key: one_arg(args, "del", DEL_USAGE)? }
    } else if is("flush") {
        no_args(&args, "flush", Command::Flush)?
    } else if is("sync") {
        no_args(&args, "sync", Command::Sync)?
    } else if is("stats") {
        no_args(&args, "stats", Command::Stats)?
    } else if is("help") {
        no_args(&args, "help", Command::Help)?
    } else if is("quit") {
        no_args(&args, "quit", Command::Quit)?
    } else if is("exit") {
        no_args(&args, "exit", Command::Quit)?
    } else {
        return Err(ParseError::UnknownCommand(quote_for_error(&name)));
    };
    Ok(Some(command))
}

fn parse_put(args: Vec<Vec<u8>>) -> Result<Command, ParseError> {
    let arity = ParseError::WrongArity { command: "put", usage: PUT_USAGE };
    let mut args = args.into_iter();
    let (Some(key), Some(value)) = (args.next(), args.next()) else {
        return Err(arity);
    };
    let ttl_secs = match (args.next(), args.next(), args.next()) {
        (None, _, _) => None,
        (Some(keyword), seconds, None) if keyword.eq_ignore_ascii_case(b"ex") => match seconds {
            None => return Err(ParseError::InvalidTtl(None)),
            Some(seconds) => Some(
                parse_ttl(&seconds).ok_or_else(|| ParseError::InvalidTtl(Some(quote_for_error(&seconds))))?,
            ),
        },
        // `put k hello world` (forgot the quotes) or `put k v EX 10 extra`.
        _ => return Err(arity),
    };
    Ok(Command::Put { key, value, ttl_secs })
}

/// SECONDS: ASCII digits only (no sign), value in `1..=u32::MAX`.
fn parse_ttl(seconds: &[u8]) -> Option<u64> {
    if seconds.is_empty() || !seconds.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(seconds).ok()?;
    let value: u64 = text.parse().ok()?;
    (1..=u64::from(u32::MAX)).contains(&value).then_some(value)
}

fn one_arg(args: Vec<Vec<u8>>, command: &'static str, usage: &'static str) -> Result<Vec<u8>, ParseError> {
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(arg), None) => Ok(arg),
        _ => Err(ParseError::WrongArity { command, usage }),
    }
}

fn no_args(args: &[Vec<u8>], command: &'static str, parsed: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(parsed)
    } else {
        Err(ParseError::WrongArity { command, usage: command })
    }
}

/// A raw ASCII control byte (whitespace included); these never appear unescaped inside a token.
fn is_control_byte(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7F
}

fn is_separator(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// Splits a line into tokens, undoing quotes and escapes. See the module docs for the rules.
fn tokenize(text: &str) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|&c| is_separator(c)).is_some() {}
        let Some(first) = chars.next() else {
            return Ok(tokens);
        };
        let token = match first {
            '"' => double_quoted(&mut chars)?,
            '\'' => single_quoted(&mut chars)?,
            first => {
                let mut token = Vec::new();
                let mut c = first;
                loop {
                    check_char(c)?;
                    if c == '"' || c == '\'' {
                        return Err(ParseError::QuoteInsideToken);
                    }
                    push_char(&mut token, c);
                    match chars.next_if(|&c| !is_separator(c)) {
                        Some(next) => c = next,
                        None => break,
                    }
                }
                token
            }
        };
        // A closing quote must end the token.
        if let Some(&after) = chars.peek() {
            if !is_separator(after) {
                check_char(after)?;
                return Err(ParseError::QuoteInsideToken);
            }
        }
        tokens.push(token);
    }
}

fn check_char(c: char) -> Result<(), ParseError> {
    match u8::try_from(c) {
        Ok(byte) if is_control_byte(byte) => Err(ParseError::ControlByte(byte)),
        _ => Ok(()),
    }
}

fn push_char(token: &mut Vec<u8>, c: char) {
    let mut utf8 = [0u8; 4];
    token.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
}

/// The rest of a `"` token, after the opening quote, up to and including the closing quote.
fn double_quoted(chars: &mut impl Iterator<Item = char>) -> Result<Vec<u8>, ParseError> {
    let mut token = Vec::new();
    loop {
        let c = chars.next().ok_or(ParseError::UnterminatedQuote)?;
        check_char(c)?;
        match c {
            '"' => return Ok(token),
            '\\' => {
                let escape = chars.next().ok_or(ParseError::UnterminatedQuote)?;
                check_char(escape)?;
                match escape {
                    '"' => token.push(b'"'),
                    '\\' => token.push(b'\\'),
                    'n' => token.push(b'\n'),
                    'r' => token.push(b'\r'),
                    't' => token.push(b'\t'),
                    '0' => token.push(0),
                    'x' => token.push(hex_escape(chars)?),
                    other => return Err(ParseError::InvalidEscape(format!("\\{other}"))),
                }
            }
            c => push_char(&mut token, c),
        }
    }
}

/// The two hex digits after `\x`.
fn hex_escape(chars: &mut impl Iterator<Item = char>) -> Result<u8, ParseError> {
    let mut written = String::from("\\x");
    let mut value = 0u32;
    for _ in 0..2 {
        let c = chars.next().ok_or_else(|| ParseError::InvalidEscape(written.clone()))?;
        check_char(c)?;
        written.push(c);
        let digit = c.to_digit(16).ok_or_else(|| ParseError::InvalidEscape(written.clone()))?;
        value = value * 16 + digit;
    }
    // Two hex digits are at most 0xFF, so this never fails.
    u8::try_from(value).map_err(|_| ParseError::InvalidEscape(written))
}

/// The rest of a `'` token, after the opening quote, up to and including the closing quote.
fn single_quoted(chars: &mut impl Iterator<Item = char>) -> Result<Vec<u8>, ParseError> {
    let mut token = Vec::new();
    loop {
        let c = chars.next().ok_or(ParseError::UnterminatedQuote)?;
        check_char(c)?;
        if c == '\'' {
            return Ok(token);
        }
        push_char(&mut token, c);
    }
}

/// Formats a value (or key) for printing so that it can be pasted back as one input token.
///
/// Printed as-is when it is non-empty valid UTF-8 with no control characters, no whitespace, no
/// `"` or `'`, and is not exactly `(nil)`. Otherwise it is printed double-quoted, with `"` and `\`
/// escaped, `\n` `\r` `\t` `\0` for those bytes, and `\xHH` for every other control character,
/// non-space whitespace character and byte that is not UTF-8; so for any bytes `v`,
/// `parse_line(b"get " + format_value(v))` gives back key `v`.
#[must_use]
pub fn format_value(v: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(v) {
        let plain = !text.is_empty()
            && text != "(nil)"
            && !text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\'');
        if plain {
            return text.to_owned();
        }
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    let mut utf8 = [0u8; 4];
                    for &byte in c.encode_utf8(&mut utf8).as_bytes() {
                        push_hex_escape(&mut out, byte);
                    }
                }
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_hex_escape(&mut out, byte);
        }
    }
    out.push('"');
    out
}

fn push_hex_escape(out: &mut String, byte: u8) {
    use fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{byte:02X}");
}

/// A user-supplied token for an error message: formatted, and cut short if long.
fn quote_for_error(token: &[u8]) -> String {
    match token.get(..MAX_QUOTED_IN_ERROR) {
        Some(head) if token.len() > MAX_QUOTED_IN_ERROR => format!("{}...", format_value(head)),
        _ => format_value(token),
    }
}

/// Replaces control characters (line breaks included) with spaces so a reply stays on one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

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
    mut input: R,
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
        let parsed = match read_line_bounded(&mut input, &mut line, MAX_LINE_LEN)? {
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

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// End of input before any byte of a new line.
    Eof,
    /// A line is in the buffer, without its `\n` / `\r\n`.
    Line,
    /// The line was longer than the limit; it has been consumed and the buffer holds nothing.
    TooLong,
}

/// Reads one line into `line` (cleared first), keeping at most `max + 1` bytes of it: the rest of
/// a longer line is consumed from `input`'s buffer and dropped.
fn read_line_bounded<R: BufRead>(input: &mut R, line: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufReader, Cursor, Read};

    /// A map-backed backend that records TTLs and can be told to fail every call.
    #[derive(Default)]
    struct MapBackend {
        map: HashMap<Vec<u8>, Vec<u8>>,
        ttls: HashMap<Vec<u8>, u64>,
        fail: bool,
        flushes: usize,
        syncs: usize,
    }

    impl MapBackend {
        fn check(&self) -> Result<(), String> {
            if self.fail {
                Err(String::from("disk on fire"))
            } else {
                Ok(())
            }
        }
    }

    impl ReplBackend for MapBackend {
        type Error = String;
        fn put(&mut self, key: &[u8], value: &[u8], ttl: Option<u64>) -> Result<(), String> {
            self.check()?;
            self.map.insert(key.to_vec(), value.to_vec());
            if let Some(ttl) = ttl {
                self.ttls.insert(key.to_vec(), ttl);
            }
            Ok(())
        }
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            self.check()?;
            Ok(self.map.get(key).cloned())
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), String> {
            self.check()?;
            self.map.remove(key);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), String> {
            self.check()?;
            self.flushes += 1;
            Ok(())
        }
        fn sync(&mut self) -> Result<(), String> {
            self.check()?;
            self.syncs += 1;
            Ok(())
        }
        fn stats(&mut self) -> Result<String, String> {
            self.check()?;
            Ok(format!("keys={}\nflushes={}", self.map.len(), self.flushes))
        }
    }

    fn run_script_with(backend: &mut MapBackend, script: &[u8], prompt: bool) -> String {
        let mut out = Vec::new();
        run(script, &mut out, backend, prompt).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn run_script(script: &[u8]) -> String {
        run_script_with(&mut MapBackend::default(), script, false)
    }

    fn parse(line: &str) -> Result<Option<Command>, ParseError> {
        parse_line(line.as_bytes())
    }

    fn put(key: &[u8], value: &[u8], ttl_secs: Option<u64>) -> Command {
        Command::Put { key: key.to_vec(), value: value.to_vec(), ttl_secs }
    }

    fn get(key: &[u8]) -> Command {
        Command::Get { key: key.to_vec() }
    }

    #[test]
    fn put_then_get_prints_ok_then_value() {
        let out = run_script(b"put key1 value1\nget key1\ndel key1\nget key1\n");
        assert_eq!(out, "OK\nvalue1\nOK\n(nil)\n");
    }

    #[test]
    fn piped_script_prints_one_reply_line_per_command() {
        let mut backend = MapBackend::default();
        let script =
            b"put a 1\r\nput b \"two words\"\nget b\nbogus\nflush\nsync\nstats\nhelp\nget \"\"\ndel a";
        let out = run_script_with(&mut backend, script, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 10, "{out:?}");
        assert_eq!(lines[..3], ["OK", "OK", "\"two words\""]);
        assert!(lines[3].starts_with("ERR unknown command bogus"));
        assert_eq!(lines[4..6], ["OK", "OK"]);
        assert_eq!(lines[6], "keys=2 flushes=1", "stats stay on one line");
        assert_eq!(lines[7], HELP);
        assert_eq!(lines[8..], ["(nil)", "OK"]);
        assert_eq!((backend.flushes, backend.syncs), (1, 1));
        assert!(!backend.map.contains_key(&b"a"[..]), "last line without newline ran");
    }

    #[test]
    fn quit_and_exit_stop_the_loop_and_print_nothing() {
        assert_eq!(run_script(b"put a 1\nquit\nget a\n"), "OK\n");
        assert_eq!(run_script(b"EXIT\nget a\n"), "");
        assert_eq!(parse("quit now"), Err(ParseError::WrongArity { command: "quit", usage: "quit" }));
        let (reply, quit) = execute(&mut MapBackend::default(), Command::Quit);
        assert_eq!((reply.as_str(), quit), ("", true));
    }

    #[test]
    fn quoted_key_with_spaces_round_trips() {
        let mut backend = MapBackend::default();
        let out =
            run_script_with(&mut backend, b"put \"my key\" 'a \"quoted\" value'\nget 'my key'\n", false);
        assert_eq!(out, "OK\n\"a \\\"quoted\\\" value\"\n");
        assert_eq!(backend.map.get(&b"my key"[..]).map(Vec::as_slice), Some(&b"a \"quoted\" value"[..]));
        let printed = out.lines().nth(1).unwrap();
        assert_eq!(parse(&format!("get {printed}")), Ok(Some(get(b"a \"quoted\" value"))));
    }

    #[test]
    fn escapes_decode_to_bytes() {
        assert_eq!(
            parse(r#"put "\x00\xff\xAb" "\"\\\n\r\t\0x""#),
            Ok(Some(put(&[0, 0xFF, 0xAB], b"\"\\\n\r\t\0x", None)))
        );
        assert_eq!(parse(r"put a\b 'c\n'"), Ok(Some(put(b"a\\b", b"c\\n", None))));
        assert_eq!(parse("get \"\""), Ok(Some(get(b""))));
        assert_eq!(parse("get ''"), Ok(Some(get(b""))));
        assert_eq!(parse("get \"h\u{e9}\""), Ok(Some(get("h\u{e9}".as_bytes()))));
    }

    #[test]
    fn invalid_escapes_are_errors() {
        assert_eq!(parse(r#"get "\q""#), Err(ParseError::InvalidEscape("\\q".into())));
        assert_eq!(parse(r#"get "\xZ1""#), Err(ParseError::InvalidEscape("\\xZ".into())));
        assert_eq!(parse(r#"get "\x1""#), Err(ParseError::InvalidEscape("\\x1\"".into())));
        assert_eq!(parse(r#"get "\x"#), Err(ParseError::InvalidEscape("\\x".into())));
        assert_eq!(parse(r#"get "ab\"#), Err(ParseError::UnterminatedQuote));
        let shown = parse(r#"get "\q""#).unwrap_err().to_string();
        assert!(shown.starts_with("invalid escape \\q;"), "{shown}");
    }

    #[test]
    fn adjacent_quotes_are_an_error_not_a_concatenation() {
        for line in ["get a\"b\"", "get \"a\"b", "get it's", "get 'a'\"b\"", "get \"a\"\"b\""] {
            assert_eq!(parse(line), Err(ParseError::QuoteInsideToken), "{line}");
        }
        assert_eq!(parse("get \"a\"\t"), Ok(Some(get(b"a"))));
    }

    #[test]
    fn unterminated_quote_is_an_error_and_loop_continues() {
        assert_eq!(parse("put \"abc def"), Err(ParseError::UnterminatedQuote));
        assert_eq!(parse("put 'abc"), Err(ParseError::UnterminatedQuote));
        let out = run_script(b"put \"k v\nput k v\nget k\n");
        assert_eq!(out, "ERR unterminated quote\nOK\nv\n");
    }

    #[test]
    fn unknown_command_is_an_error_and_loop_continues() {
        let out = run_script(b"frobnicate x\nput k v\nget k\n");
        assert_eq!(out, "ERR unknown command frobnicate (type help)\nOK\nv\n");
        assert_eq!(
            parse(r#""\n" x"#),
            Err(ParseError::UnknownCommand("\"\\n\"".into())),
            "the name is shown escaped, on one line"
        );
        let long = "x".repeat(1000);
        let Err(ParseError::UnknownCommand(shown)) = parse(&long) else {
            panic!("expected unknown command");
        };
        assert!(shown.len() < 40, "{shown}");
    }

    #[test]
    fn wrong_arity_names_the_usage() {
        for line in [
            "get",
            "get a b",
            "del",
            "put k",
            "put k hello world",
            "put k v EX 10 x",
            "flush x",
            "stats 1",
            "help me",
            "sync now",
        ] {
            assert!(matches!(parse(line), Err(ParseError::WrongArity { .. })), "{line}");
        }
        let shown = parse("put k hello world").unwrap_err().to_string();
        assert!(shown.contains("usage: put KEY VALUE [EX SECONDS]"), "{shown}");
    }

    #[test]
    fn nul_byte_and_invalid_utf8_are_clear_errors() {
        assert_eq!(parse_line(b"put k v\0"), Err(ParseError::ControlByte(0)));
        assert_eq!(parse_line(b"put k \"a\0b\""), Err(ParseError::ControlByte(0)));
        assert_eq!(parse_line(b"put k 'a\x1bb'"), Err(ParseError::ControlByte(0x1B)));
        assert_eq!(parse_line(b"put k \"a\tb\""), Err(ParseError::ControlByte(b'\t')));
        assert_eq!(parse_line(b"put k \"\\\x7f\""), Err(ParseError::ControlByte(0x7F)));
        assert_eq!(parse_line(b"put k \xff\xfe"), Err(ParseError::NotUtf8));
        assert_eq!(parse_line(b"put k \"\xc3\""), Err(ParseError::NotUtf8));
        let out = run_script(b"put k v\0\nput k \xff\nget k\n");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ERR raw control byte 0x00") && lines[0].contains("\\xHH"));
        assert!(lines[1].starts_with("ERR input is not valid UTF-8") && lines[1].contains("\\xHH"));
        assert_eq!(lines[2], "(nil)");
        // Escaped, the same bytes are fine.
        assert_eq!(parse(r#"put k "\0\xff""#), Ok(Some(put(b"k", &[0, 0xFF], None))));
    }

    #[test]
    fn invalid_ttl_is_rejected() {
        for seconds in ["0", "-1", "abc", "99999999999", "4294967296", "+5", "1.5", "18446744073709551616"] {
            let line = format!("put k v EX {seconds}");
            assert!(matches!(parse(&line), Err(ParseError::InvalidTtl(Some(_)))), "{line}");
        }
        assert_eq!(parse("put k v EX"), Err(ParseError::InvalidTtl(None)));
        assert_eq!(parse("put k v ex 10"), Ok(Some(put(b"k", b"v", Some(10)))));
        assert_eq!(parse("PUT k v Ex 4294967295"), Ok(Some(put(b"k", b"v", Some(4_294_967_295)))));
        assert_eq!(parse("put k v EX 007"), Ok(Some(put(b"k", b"v", Some(7)))));
        let mut backend = MapBackend::default();
        let out = run_script_with(&mut backend, b"put k v EX 0\nput k v EX 60\n", false);
        assert_eq!(out.lines().next().map(|l| l.starts_with("ERR invalid TTL 0")), Some(true));
        assert_eq!(out.lines().nth(1), Some("OK"));
        assert_eq!(backend.ttls.get(&b"k"[..]), Some(&60));
    }

    #[test]
    fn format_value_prints_plain_text_as_is() {
        assert_eq!(format_value(b"value1"), "value1");
        assert_eq!(format_value("h\u{e9}llo".as_bytes()), "h\u{e9}llo");
        assert_eq!(format_value(b"a\\b"), "a\\b");
        assert_eq!(format_value(b"(nil)"), "\"(nil)\"");
        assert_eq!(format_value(b""), "\"\"");
        assert_eq!(format_value(b"\"x"), "\"\\\"x\"");
        assert_eq!(format_value(b"'x'"), "\"'x'\"");
        assert_eq!(format_value(b"a b"), "\"a b\"");
        assert_eq!(format_value(b"\x00\xff\n"), "\"\\0\\xFF\\n\"");
        assert_eq!(format_value("\u{85}\u{a0}".as_bytes()), "\"\\xC2\\x85\\xC2\\xA0\"");
    }

    /// xorshift64: deterministic pseudo-random numbers without a crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn format_value_round_trips_arbitrary_bytes() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // Bias towards interesting bytes: quotes, backslash, whitespace, controls, UTF-8 lead bytes.
        const SPECIAL: &[u8] = b"\"'\\ \t\r\n\0x(nil)\xc3\xa9\xe2\x80\xa8\x7f\xff";
        for _ in 0..5000 {
            let len = (rng.next() % 24) as usize;
            let value: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r.is_multiple_of(2) {
                        SPECIAL[(r >> 8) as usize % SPECIAL.len()]
                    } else {
                        (r >> 8) as u8
                    }
                })
                .collect();
            let printed = format_value(&value);
            assert!(!printed.contains(|c: char| c.is_control()), "{printed:?}");
            let line = format!("put k {printed}");
            assert_eq!(
                parse(&line),
                Ok(Some(put(b"k", &value, None))),
                "value {value:?} printed as {printed}"
            );
        }
    }

    #[test]
    fn overlong_line_is_rejected_without_buffering_it() {
        // At the real limit: a 10 MiB line produced lazily, then a normal command.
        let overlong = io::repeat(b'a').take(10 * 1024 * 1024);
        let input = BufReader::new(overlong.chain(Cursor::new(&b"\nput k v\r\nget k\n"[..])));
        let mut out = Vec::new();
        run(input, &mut out, &mut MapBackend::default(), false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ERR line too long\nOK\nv\n");

        // With a small limit: the buffer never grows past it, and the rest of the line is skipped.
        let mut input = BufReader::with_capacity(
            7,
            Cursor::new(vec![b'z'; 10_000]).chain(&b"\nnext\r\nexactly16bytes!!\r\n\r\n"[..]),
        );
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut input, &mut line, 16).unwrap(), LineRead::TooLong);
        assert!(line.capacity() <= 64, "buffered {} bytes", line.capacity());
        assert_eq!(read_line_bounded(&mut input, &mut line, 16).unwrap(), LineRead::Line);
        assert_eq!(line, b"next");
        assert_eq!(read_line_bounded(&mut input, &mut line, 16).unwrap(), LineRead::Line);
        assert_eq!(line, b"exactly16bytes!!");
        assert_eq!(read_line_bounded(&mut input, &mut line, 16).unwrap(), LineRead::Line);
        assert_eq!(line, b"");
        assert_eq!(read_line_bounded(&mut input, &mut line, 16).unwrap(), LineRead::Eof);
        assert_eq!(parse_line(&vec![b' '; MAX_LINE_LEN + 1]), Err(ParseError::LineTooLong));
    }

    #[test]
    fn line_of_exactly_max_len_is_accepted() {
        let value = vec![b'v'; MAX_LINE_LEN - "put k ".len()];
        let mut script = b"put k ".to_vec();
        script.extend_from_slice(&value);
        script.extend_from_slice(b"\r\n");
        let mut backend = MapBackend::default();
        assert_eq!(run_script_with(&mut backend, &script, false), "OK\n");
        assert_eq!(backend.map.get(&b"k"[..]), Some(&value));
    }

    #[test]
    fn backend_error_prints_err_and_continues() {
        let mut backend = MapBackend { fail: true, ..MapBackend::default() };
        let out = run_script_with(&mut backend, b"put k v\nget k\ndel k\nflush\nsync\nstats\nhelp\n", false);
        let expected = "ERR disk on fire\n".repeat(6) + HELP + "\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn prompt_only_when_requested() {
        let mut backend = MapBackend::default();
        assert_eq!(run_script_with(&mut backend, b"put k v\n\nget k\n", true), "> OK\n> > v\n> ");
        assert_eq!(run_script_with(&mut backend, b"put k v\nquit\n", true), "> OK\n> ");
        assert_eq!(run_script_with(&mut backend, b"put k v\n\nget k\n", false), "OK\nv\n");
    }

    #[test]
    fn blank_lines_print_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse(" \t \r"), Ok(None));
        assert_eq!(run_script(b"\n   \n\t\r\n\r\nget k\n\n"), "(nil)\n");
    }

    #[test]
    fn commands_are_case_insensitive() {
        assert_eq!(parse("PuT k v"), Ok(Some(put(b"k", b"v", None))));
        assert_eq!(parse("GET k"), Ok(Some(get(b"k"))));
        assert_eq!(parse("Del k"), Ok(Some(Command::Del { key: b"k".to_vec() })));
        assert_eq!(parse("FLUSH"), Ok(Some(Command::Flush)));
        assert_eq!(parse("Sync"), Ok(Some(Command::Sync)));
        assert_eq!(parse("sTaTs"), Ok(Some(Command::Stats)));
        assert_eq!(parse("HELP"), Ok(Some(Command::Help)));
        assert_eq!(parse("Quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse("EXIT"), Ok(Some(Command::Quit)));
        assert_eq!(parse("  get   K  "), Ok(Some(get(b"K"))), "keys keep their case");
    }

    #[test]
    fn help_lists_every_command_on_one_line() {
        let (reply, quit) = execute(&mut MapBackend::default(), Command::Help);
        assert!(!quit && !reply.contains('\n'));
        for word in [
            "put KEY VALUE [EX SECONDS]",
            "get KEY",
            "del KEY",
            "flush",
            "sync",
            "stats",
            "help",
            "quit",
            "exit",
        ] {
            assert!(reply.contains(word), "{word}");
        }
    }

    #[test]
    fn no_input_panics() {
        let mut rng = XorShift(42);
        const ALPHABET: &[u8] = b"pugetdlxEX \t\"'\\0123nrt\x00\xff\xc3\xa9\r";
        for _ in 0..20_000 {
            let len = (rng.next() % 20) as usize;
            let line: Vec<u8> =
                (0..len).map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]).collect();
            let _ = parse_line(&line);
        }
    }
}
