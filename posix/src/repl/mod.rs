//! The `minivault` REPL: the command language, its parser, reply formatting and the line loop.
//!
//! This module owns everything between the user's keystrokes and the database calls, and nothing
//! about the database itself: the loop talks to a [`ReplBackend`], so tests (and the binary) can
//! plug in anything that stores bytes.
//!
//! - [`parse_line`] is pure: one line of bytes in, a [`Command`] (or `None` for a blank line) or a
//!   [`ParseError`] out. It never panics, whatever the input. [`parse_tokens`] does the same for
//!   words already split (a one-shot command's arguments).
//! - [`format_value`] prints a stored value so that it can be pasted back as input.
//! - [`respond`] runs one [`Command`] against a backend and returns its [`Reply`].
//! - [`run_lines`] is the one loop, over any [`LineSource`]: [`run`](fn@run) and [`run_reader`]
//!   over a [`BufRead`](std::io::BufRead) (pipes, files, tests), the binary's terminal editor
//!   over the keyboard.
//!
//! # Language
//!
//! [`COMMANDS`] lists every command with its syntax and reply; `help` prints them on one line,
//! `help COMMAND` one of them:
//!
//! ```text
//! put KEY VALUE [EX SECONDS | PX MILLISECONDS]   (set: the same) store VALUE, optionally expiring
//! get KEY | mget KEY... | exists KEY...         read
//! ttl KEY | pttl KEY                            time left: -1 never expires, -2 absent
//! del KEY...                                    delete, all or none
//! flush | sync | stats | info | help [COMMAND] | quit | exit
//! ```
//!
//! Command names and the `EX` / `PX` keywords are case-insensitive. Tokens are separated by ASCII
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
//! Every non-blank line gets exactly one reply line — `OK`, a value (see [`format_value`]),
//! `(nil)`, values separated by spaces (mget), a number (exists, ttl), the stats line, the help
//! line, or `ERR <reason>` for a parse or backend error, after which the loop carries on (or,
//! with [`Settings::strict`], stops) — except `info`, whose reply is several lines ending with an
//! empty one. `quit` / `exit` print nothing and end the loop, as does end of input.
//!
//! # Files of this module
//! - `parse`: the language (tokens, quotes, escapes) and [`Command`];
//! - `format`: how values and keys are printed ([`format_value`]);
//! - `run`: [`ReplBackend`], [`respond`] (one command, one reply) and the loop [`run_lines`];
//! - `db`: [`ReplBackend`] for [`crate::Db`], with the `stats` line and the `info` report.

mod db;
mod format;
mod parse;
mod run;
#[cfg(test)]
mod tests;

pub use db::Session;
pub use format::{format_value, human_bytes, human_count};
pub use parse::{
    command_info, parse_line, parse_tokens, Command, CommandInfo, ParseError, COMMANDS, MAX_LINE_LEN,
    MAX_TTL_MILLIS, MAX_TTL_SECS,
};
pub use run::{
    execute, reply_to_line, respond, run, run_lines, run_reader, LineRead, LineSource, Outcome, ReplBackend,
    Reply, ScanQuery, Settings, HELP,
};
