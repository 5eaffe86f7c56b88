//! The language's one table: [`COMMANDS`], each command's name, aliases, syntax and what it
//! does and prints. `help` and `minivault --help` print it, `help COMMAND` one row, and the
//! parser quotes a row's usage when a command has the wrong arguments.

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
        name: "delrange",
        aliases: &[],
        usage: "delrange START END",
        summary: "deletes every key from START (inclusive) to END (exclusive) in one write (a range \
                  tombstone: O(1) whatever the keys); prints OK",
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
