//! The command language: a line of bytes in, a [`Command`] or a [`ParseError`] out.
//!
//! [`COMMANDS`] is the language's one table: each command's name, syntax and what it does,
//! which `help` prints and the parser's arity errors quote.

use std::fmt;

use super::format::quote_for_error;

/// The longest line (in bytes, without its `\n` or `\r\n`) the REPL accepts: 4 MiB.
///
/// [`run`](fn@super::run) never buffers more than this (plus one byte) of a longer line: it replies
/// `ERR line too long` and discards the rest of that line as it reads it.
pub const MAX_LINE_LEN: usize = 4 * 1024 * 1024;

/// The largest `EX SECONDS`: 4294967295 (about 136 years).
pub const MAX_TTL_SECS: u64 = u32::MAX as u64;

/// The largest `PX MILLISECONDS`: the same span as [`MAX_TTL_SECS`].
pub const MAX_TTL_MILLIS: u64 = MAX_TTL_SECS * 1000;

/// A command of the language, as `help` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// The name (commands are case-insensitive).
    pub name: &'static str,
    /// Other names for the same command.
    pub aliases: &'static [&'static str],
    /// The syntax, e.g. `get KEY`.
    pub usage: &'static str,
    /// What it does and what it prints, in one line.
    pub summary: &'static str,
}

/// Every command: what `help COMMAND` prints, in the order `help` lists them.
pub const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "put",
        aliases: &["set"],
        usage: "put KEY VALUE [EX SECONDS | PX MILLISECONDS]",
        summary: "stores VALUE under KEY, expiring after SECONDS (1..=4294967295) or MILLISECONDS \
                  when given; prints OK (set is the same command)",
    },
    CommandInfo {
        name: "get",
        aliases: &[],
        usage: "get KEY",
        summary: "prints the value of KEY, or (nil) when it is absent, deleted or expired",
    },
    CommandInfo {
        name: "mget",
        aliases: &[],
        usage: "mget KEY [KEY ...]",
        summary: "prints the values of the KEYs on one line, separated by spaces, (nil) for each \
                  absent one",
    },
    CommandInfo {
        name: "exists",
        aliases: &[],
        usage: "exists KEY [KEY ...]",
        summary: "prints how many of the KEYs are present (1 or 0 for one key)",
    },
    CommandInfo {
        name: "ttl",
        aliases: &[],
        usage: "ttl KEY",
        summary: "prints the seconds KEY has left to live (rounded), -1 when it never expires, \
                  -2 when it is absent",
    },
    CommandInfo { name: "pttl", aliases: &[], usage: "pttl KEY", summary: "like ttl, in milliseconds" },
    CommandInfo {
        name: "del",
        aliases: &[],
        usage: "del KEY [KEY ...]",
        summary: "deletes the KEYs, all or none (one WAL record); prints OK, whether or not they \
                  existed",
    },
    CommandInfo {
        name: "scan",
        aliases: &[],
        usage: "scan START END [LIMIT N] [REV]",
        summary: "prints the entries from START (inclusive) to END (exclusive) in key order, one \
                  KEY VALUE line each (quoted as input would need them), then (N keys); - and + \
                  are open ends (\"-\" quoted is the key -); REV: from the end down",
    },
    CommandInfo {
        name: "prefix",
        aliases: &[],
        usage: "prefix PREFIX [LIMIT N] [REV]",
        summary: "prints the entries whose key starts with PREFIX, as scan does",
    },
    CommandInfo {
        name: "count",
        aliases: &[],
        usage: "count [START END]",
        summary: "prints how many keys there are (from START, inclusive, to END, exclusive; - and \
                  + are open ends)",
    },
    CommandInfo {
        name: "append",
        aliases: &[],
        usage: "append STREAM VALUE",
        summary: "appends VALUE to the outbox stream STREAM; prints its sequence number (1, 2, ... per \
                  stream)",
    },
    CommandInfo {
        name: "read",
        aliases: &[],
        usage: "read STREAM FROM [LIMIT N]",
        summary: "prints the records of STREAM from sequence number FROM on, one SEQ VALUE line each \
                  (quoted as input would need them), then (N records)",
    },
    CommandInfo {
        name: "ack",
        aliases: &[],
        usage: "ack STREAM CONSUMER SEQ",
        summary: "stores CONSUMER's cursor at SEQ (every record up to it is done) and trims what every \
                  consumer has acknowledged, in one atomic write; prints the cursor (it never moves back)",
    },
    CommandInfo {
        name: "lag",
        aliases: &[],
        usage: "lag STREAM",
        summary: "prints STREAM's oldest and newest seq, records and bytes, then one line per consumer \
                  (its cursor, lag and records evicted before it acknowledged them), then (N consumers)",
    },
    CommandInfo {
        name: "flush",
        aliases: &[],
        usage: "flush",
        summary: "writes the MemTables out as an SSTable; prints OK",
    },
    CommandInfo {
        name: "sync",
        aliases: &[],
        usage: "sync",
        summary: "makes every write so far durable; prints OK",
    },
    CommandInfo {
        name: "stats",
        aliases: &[],
        usage: "stats",
        summary: "prints the counters and sizes on one line of name=value pairs",
    },
    CommandInfo {
        name: "info",
        aliases: &[],
        usage: "info",
        summary: "prints the same, readable: several lines, a # line per section, ending with an \
                  empty line",
    },
    CommandInfo {
        name: "help",
        aliases: &[],
        usage: "help [COMMAND]",
        summary: "prints every command on one line, or what COMMAND does",
    },
    CommandInfo {
        name: "quit",
        aliases: &["exit"],
        usage: "quit",
        summary: "leaves (prints nothing); so does the end of input (Ctrl-D)",
    },
];

/// The command named `name` (any case, aliases included).
pub fn command_info(name: &[u8]) -> Option<&'static CommandInfo> {
    COMMANDS.iter().find(|c| {
        name.eq_ignore_ascii_case(c.name.as_bytes())
            || c.aliases.iter().any(|alias| name.eq_ignore_ascii_case(alias.as_bytes()))
    })
}

/// One parsed REPL command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `put KEY VALUE [EX SECONDS]` (or `set ...`).
    Put {
        /// The key, as bytes.
        key: Vec<u8>,
        /// The value, as bytes.
        value: Vec<u8>,
        /// Time to live in seconds (1..=4294967295), when `EX SECONDS` was given.
        ttl_secs: Option<u64>,
    },
    /// `put KEY VALUE PX MILLISECONDS` (or `set ...`).
    PutMillis {
        /// The key, as bytes.
        key: Vec<u8>,
        /// The value, as bytes.
        value: Vec<u8>,
        /// Time to live in milliseconds (1..=[`MAX_TTL_MILLIS`]).
        ttl_millis: u64,
    },
    /// `get KEY`.
    Get {
        /// The key, as bytes.
        key: Vec<u8>,
    },
    /// `mget KEY [KEY ...]`.
    MGet {
        /// The keys, at least one.
        keys: Vec<Vec<u8>>,
    },
    /// `exists KEY [KEY ...]`.
    Exists {
        /// The keys, at least one.
        keys: Vec<Vec<u8>>,
    },
    /// `ttl KEY` (`millis: false`) or `pttl KEY` (`millis: true`).
    Ttl {
        /// The key, as bytes.
        key: Vec<u8>,
        /// Reply in milliseconds rather than seconds.
        millis: bool,
    },
    /// `del KEY [KEY ...]`.
    Del {
        /// The keys, at least one.
        keys: Vec<Vec<u8>>,
    },
    /// `scan START END [LIMIT N] [REV]`: the entries from START (inclusive) to END (exclusive).
    Scan {
        /// The first key, `None` for `-` (from the first key).
        start: Option<Vec<u8>>,
        /// The key after the last, `None` for `+` (to the last key).
        end: Option<Vec<u8>>,
        /// At most this many entries.
        limit: Option<u64>,
        /// From the end down.
        reverse: bool,
    },
    /// `prefix PREFIX [LIMIT N] [REV]`: the entries whose key starts with PREFIX.
    Prefix {
        /// The prefix (may be empty: every key).
        prefix: Vec<u8>,
        /// At most this many entries.
        limit: Option<u64>,
        /// From the end down.
        reverse: bool,
    },
    /// `count [START END]`: how many keys (between START and END).
    Count {
        /// The first key, `None` for `-` or no bounds.
        start: Option<Vec<u8>>,
        /// The key after the last, `None` for `+` or no bounds.
        end: Option<Vec<u8>>,
    },
    /// `append STREAM VALUE`: append a record to an outbox stream.
    Append {
        /// The stream's name.
        stream: Vec<u8>,
        /// The record.
        value: Vec<u8>,
    },
    /// `read STREAM FROM [LIMIT N]`: records of a stream from a seq on.
    Read {
        /// The stream's name.
        stream: Vec<u8>,
        /// The first seq.
        from: u64,
        /// At most this many records.
        limit: Option<u64>,
    },
    /// `ack STREAM CONSUMER SEQ`: store a consumer's cursor.
    Ack {
        /// The stream's name.
        stream: Vec<u8>,
        /// The consumer's name.
        consumer: Vec<u8>,
        /// The last seq it is done with.
        seq: u64,
    },
    /// `lag STREAM`: a stream's records and its consumers' positions.
    Lag {
        /// The stream's name.
        stream: Vec<u8>,
    },
    /// `flush`: write the memtable out.
    Flush,
    /// `sync`: make all writes so far durable.
    Sync,
    /// `stats`: one line of statistics.
    Stats,
    /// `info`: the statistics, several readable lines.
    Info,
    /// `help`: the one-line command summary.
    Help,
    /// `help COMMAND`: what one command does.
    HelpOn {
        /// The command asked about, as typed.
        command: Vec<u8>,
    },
    /// `quit` or `exit`.
    Quit,
}

/// Why a line could not be parsed. `Display` gives a short reason, without the `ERR` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The first token is not a command name. Holds the name as printed by
    /// [`super::format_value`] (so it is always one line), cut to a few dozen bytes.
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
    /// 1..=4294967295. Holds the offending SECONDS (as printed by [`super::format_value`]), or
    /// `None` when it was missing.
    InvalidTtl(Option<String>),
    /// `put ... PX MILLISECONDS` where MILLISECONDS is not an integer in 1..=[`MAX_TTL_MILLIS`].
    /// Holds the offending MILLISECONDS, or `None` when it was missing.
    InvalidTtlMillis(Option<String>),
    /// `LIMIT N` of a scan where N is not an integer of at least 1. Holds the offending N, or
    /// `None` when it was missing.
    InvalidLimit(Option<String>),
    /// A sequence number (`read`'s FROM, `ack`'s SEQ) that is not an integer from 0 to
    /// 18446744073709551615. Holds it as given.
    InvalidSeq(String),
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
                write!(f, "wrong number of arguments for {command}; usage: {usage}")?;
                if *command == "put" {
                    f.write_str(" (quote values that contain spaces)")?;
                }
                Ok(())
            }
            Self::UnterminatedQuote => f.write_str("unterminated quote"),
            Self::InvalidEscape(escape) => {
                write!(f, "invalid escape {escape}; use \\\" \\\\ \\n \\r \\t \\0 or \\xHH")
            }
            Self::QuoteInsideToken => {
                f.write_str("quote inside a token; quote the whole token instead, e.g. \"it's\" not it's")
            }
            Self::InvalidTtl(Some(given)) => {
                write!(f, "invalid TTL {given}; EX SECONDS needs an integer from 1 to {MAX_TTL_SECS}")
            }
            Self::InvalidTtl(None) => {
                write!(f, "invalid TTL: EX needs SECONDS, an integer from 1 to {MAX_TTL_SECS}")
            }
            Self::InvalidTtlMillis(Some(given)) => {
                write!(f, "invalid TTL {given}; PX MILLISECONDS needs an integer from 1 to {MAX_TTL_MILLIS}")
            }
            Self::InvalidTtlMillis(None) => {
                write!(f, "invalid TTL: PX needs MILLISECONDS, an integer from 1 to {MAX_TTL_MILLIS}")
            }
            Self::InvalidLimit(Some(given)) => {
                write!(f, "invalid LIMIT {given}; LIMIT N needs an integer of at least 1")
            }
            Self::InvalidLimit(None) => f.write_str("invalid LIMIT: LIMIT needs N, an integer of at least 1"),
            Self::InvalidSeq(given) => {
                write!(f, "invalid sequence number {given}; expected an integer from 0 to {}", u64::MAX)
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
    parse_marked(tokenize(text)?)
}

/// Parses a command already split into tokens (quotes and escapes undone), as a shell hands
/// over the words of `minivault DIR get "my key"`: the first token is the command's name.
///
/// Returns `Ok(None)` for no tokens. Never panics.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong with the command.
pub fn parse_tokens(tokens: Vec<Vec<u8>>) -> Result<Option<Command>, ParseError> {
    parse_marked(tokens.into_iter().map(|t| (t, false)).collect())
}

/// [`parse_tokens`] of tokens that say whether they were quoted.
fn parse_marked(tokens: Vec<Token>) -> Result<Option<Command>, ParseError> {
    let quoted: Vec<bool> = tokens.iter().skip(1).map(|(_, q)| *q).collect();
    let mut args = tokens.into_iter().map(|(t, _)| t);
    let Some(name) = args.next() else {
        return Ok(None);
    };
    let Some(info) = command_info(&name) else {
        return Err(ParseError::UnknownCommand(quote_for_error(&name)));
    };
    let args: Vec<Vec<u8>> = args.collect();
    let arity = ParseError::WrongArity { command: info.name, usage: info.usage };
    let one = |args: Vec<Vec<u8>>| -> Result<Vec<u8>, ParseError> {
        let mut args = args.into_iter();
        match (args.next(), args.next()) {
            (Some(arg), None) => Ok(arg),
            _ => Err(arity.clone()),
        }
    };
    let some = |args: Vec<Vec<u8>>| if args.is_empty() { Err(arity.clone()) } else { Ok(args) };
    let none = |command: Command| if args.is_empty() { Ok(command) } else { Err(arity.clone()) };
    let command = match info.name {
        "put" => parse_put(args, arity)?,
        "get" => Command::Get { key: one(args)? },
        "mget" => Command::MGet { keys: some(args)? },
        "exists" => Command::Exists { keys: some(args)? },
        "ttl" => Command::Ttl { key: one(args)?, millis: false },
        "pttl" => Command::Ttl { key: one(args)?, millis: true },
        "del" => Command::Del { keys: some(args)? },
        "scan" => parse_scan(args, &quoted, arity)?,
        "prefix" => {
            let (positional, limit, reverse) = scan_options(args, arity.clone())?;
            let mut positional = positional.into_iter();
            match (positional.next(), positional.next()) {
                (Some(prefix), None) => Command::Prefix { prefix, limit, reverse },
                _ => return Err(arity),
            }
        }
        "count" => match args.len() {
            0 => Command::Count { start: None, end: None },
            2 => {
                let mut args = args.into_iter();
                let (start, end) = (args.next().unwrap_or_default(), args.next().unwrap_or_default());
                Command::Count { start: open_end(start, quoted[0]), end: open_end(end, quoted[1]) }
            }
            _ => return Err(arity),
        },
        "append" | "read" | "ack" | "lag" => parse_outbox(info.name, args, arity)?,
        "flush" => none(Command::Flush)?,
        "sync" => none(Command::Sync)?,
        "stats" => none(Command::Stats)?,
        "info" => none(Command::Info)?,
        "help" => match args.len() {
            0 => Command::Help,
            _ => Command::HelpOn { command: one(args)? },
        },
        _ => none(Command::Quit)?,
    };
    Ok(Some(command))
}

fn parse_put(args: Vec<Vec<u8>>, arity: ParseError) -> Result<Command, ParseError> {
    let mut args = args.into_iter();
    let (Some(key), Some(value)) = (args.next(), args.next()) else {
        return Err(arity);
    };
    match (args.next(), args.next(), args.next()) {
        (None, _, _) => Ok(Command::Put { key, value, ttl_secs: None }),
        (Some(keyword), amount, None) if keyword.eq_ignore_ascii_case(b"ex") => {
            let amount = amount.ok_or(ParseError::InvalidTtl(None))?;
            let ttl_secs = parse_ttl(&amount, MAX_TTL_SECS)
                .ok_or_else(|| ParseError::InvalidTtl(Some(quote_for_error(&amount))))?;
            Ok(Command::Put { key, value, ttl_secs: Some(ttl_secs) })
        }
        (Some(keyword), amount, None) if keyword.eq_ignore_ascii_case(b"px") => {
            let amount = amount.ok_or(ParseError::InvalidTtlMillis(None))?;
            let ttl_millis = parse_ttl(&amount, MAX_TTL_MILLIS)
                .ok_or_else(|| ParseError::InvalidTtlMillis(Some(quote_for_error(&amount))))?;
            Ok(Command::PutMillis { key, value, ttl_millis })
        }
        // `put k hello world` (forgot the quotes) or `put k v EX 10 extra`.
        _ => Err(arity),
    }
}

/// The outbox's commands: `append`, `read`, `ack`, `lag`.
fn parse_outbox(name: &str, args: Vec<Vec<u8>>, arity: ParseError) -> Result<Command, ParseError> {
    let seq = |token: &[u8]| {
        std::str::from_utf8(token)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| ParseError::InvalidSeq(quote_for_error(token)))
    };
    let mut a = args.into_iter();
    let command = match (name, a.next(), a.next(), a.next(), a.next(), a.next()) {
        ("append", Some(stream), Some(value), None, ..) => Command::Append { stream, value },
        ("read", Some(stream), Some(from), None, ..) => {
            Command::Read { stream, from: seq(&from)?, limit: None }
        }
        ("read", Some(stream), Some(from), Some(kw), Some(n), None) if kw.eq_ignore_ascii_case(b"limit") => {
            let limit =
                parse_ttl(&n, u64::MAX).ok_or_else(|| ParseError::InvalidLimit(Some(quote_for_error(&n))))?;
            Command::Read { stream, from: seq(&from)?, limit: Some(limit) }
        }
        ("read", Some(_), Some(_), Some(kw), None, None) if kw.eq_ignore_ascii_case(b"limit") => {
            return Err(ParseError::InvalidLimit(None))
        }
        ("ack", Some(stream), Some(consumer), Some(s), None, _) => {
            Command::Ack { stream, consumer, seq: seq(&s)? }
        }
        ("lag", Some(stream), None, ..) => Command::Lag { stream },
        _ => return Err(arity),
    };
    Ok(command)
}

/// `START END [LIMIT N] [REV]`.
fn parse_scan(args: Vec<Vec<u8>>, quoted: &[bool], arity: ParseError) -> Result<Command, ParseError> {
    let (positional, limit, reverse) = scan_options(args, arity.clone())?;
    let mut positional = positional.into_iter();
    match (positional.next(), positional.next(), positional.next()) {
        (Some(start), Some(end), None) => Ok(Command::Scan {
            start: open_end(start, quoted.first().copied().unwrap_or(false)),
            end: open_end(end, quoted.get(1).copied().unwrap_or(false)),
            limit,
            reverse,
        }),
        _ => Err(arity),
    }
}

/// A scan bound: `None` for a bare `-` or `+` (an open end), the key otherwise.
fn open_end(token: Vec<u8>, quoted: bool) -> Option<Vec<u8>> {
    if !quoted && (token == b"-" || token == b"+") {
        None
    } else {
        Some(token)
    }
}

/// A scan's positional arguments, its `LIMIT` and whether `REV` was given.
type ScanArgs = (Vec<Vec<u8>>, Option<u64>, bool);

/// Splits a scan's arguments into its positional ones and `LIMIT N` / `REV`, which come after
/// them, in either order.
fn scan_options(args: Vec<Vec<u8>>, arity: ParseError) -> Result<ScanArgs, ParseError> {
    let mut positional = Vec::new();
    let (mut limit, mut reverse) = (None, false);
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let options_started = limit.is_some() || reverse;
        if arg.eq_ignore_ascii_case(b"limit") && !positional.is_empty() {
            let n = args.next().ok_or(ParseError::InvalidLimit(None))?;
            let value =
                parse_ttl(&n, u64::MAX).ok_or_else(|| ParseError::InvalidLimit(Some(quote_for_error(&n))))?;
            limit = Some(value);
        } else if arg.eq_ignore_ascii_case(b"rev") && !positional.is_empty() {
            reverse = true;
        } else if options_started {
            return Err(arity);
        } else {
            positional.push(arg);
        }
    }
    Ok((positional, limit, reverse))
}

/// A TTL amount: ASCII digits only (no sign), value in `1..=max`.
fn parse_ttl(amount: &[u8], max: u64) -> Option<u64> {
    if amount.is_empty() || !amount.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(amount).ok()?;
    let value: u64 = text.parse().ok()?;
    (1..=max).contains(&value).then_some(value)
}

/// A raw ASCII control byte (whitespace included); these never appear unescaped inside a token.
fn is_control_byte(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7F
}

fn is_separator(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// A token and whether it was quoted (`"-"` is the key `-`; a bare `-` is an open end of a scan).
type Token = (Vec<u8>, bool);

/// Splits a line into tokens, undoing quotes and escapes. See the module docs for the rules.
fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|&c| is_separator(c)).is_some() {}
        let Some(first) = chars.next() else {
            return Ok(tokens);
        };
        let token = match first {
            '"' => (double_quoted(&mut chars)?, true),
            '\'' => (single_quoted(&mut chars)?, true),
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
                (token, false)
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
