//! The command language: a line of bytes in, a [`Command`] or a [`ParseError`] out.

use std::fmt;

use super::format::quote_for_error;

/// The longest line (in bytes, without its `\n` or `\r\n`) the REPL accepts: 4 MiB.
///
/// [`run`] never buffers more than this (plus one byte) of a longer line: it replies
/// `ERR line too long` and discards the rest of that line as it reads it.
pub const MAX_LINE_LEN: usize = 4 * 1024 * 1024;

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
