#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::run::read_line_bounded;
use super::*;
use crate::Ttl;
use std::collections::HashMap;
use std::io;
use std::io::{BufReader, Cursor, Read};
use std::time::Duration;

/// A map-backed backend that records TTLs and can be told to fail every call.
#[derive(Default)]
struct MapBackend {
    map: HashMap<Vec<u8>, Vec<u8>>,
    ttls: HashMap<Vec<u8>, Duration>,
    fail: bool,
    flushes: usize,
    syncs: usize,
    /// Outbox streams: records in order, and cursors.
    streams: HashMap<Vec<u8>, Vec<crate::outbox::Record>>,
    cursors: HashMap<(Vec<u8>, Vec<u8>), u64>,
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
    fn put(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), String> {
        self.check()?;
        self.map.insert(key.to_vec(), value.to_vec());
        match ttl {
            Some(ttl) => self.ttls.insert(key.to_vec(), ttl),
            None => self.ttls.remove(key),
        };
        Ok(())
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.check()?;
        Ok(self.map.get(key).cloned())
    }
    fn ttl(&mut self, key: &[u8]) -> Result<Ttl, String> {
        self.check()?;
        Ok(match (self.map.contains_key(key), self.ttls.get(key)) {
            (false, _) => Ttl::NoKey,
            (true, None) => Ttl::NoExpiry,
            (true, Some(&ttl)) => Ttl::ExpiresIn(ttl),
        })
    }
    fn delete(&mut self, keys: &[Vec<u8>]) -> Result<(), String> {
        self.check()?;
        for key in keys {
            self.map.remove(key);
            self.ttls.remove(key);
        }
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
    fn info(&mut self) -> Result<String, String> {
        self.check()?;
        Ok(format!("# map\nkeys {}\n# disk\nflushes {}\n\n", self.map.len(), self.flushes))
    }
    fn scan(&mut self, q: &ScanQuery<'_>) -> Result<Vec<crate::scan::Entry>, String> {
        self.check()?;
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = self
            .map
            .iter()
            .filter(|(k, _)| match q.prefix {
                Some(p) => k.starts_with(p),
                None => q.start.is_none_or(|s| k.as_slice() >= s) && q.end.is_none_or(|e| k.as_slice() < e),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        if q.reverse {
            all.reverse();
        }
        all.truncate(usize::try_from(q.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX));
        Ok(all)
    }
    fn count(&mut self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<u64, String> {
        let q = ScanQuery { start, end, prefix: None, limit: None, reverse: false };
        Ok(self.scan(&q)?.len() as u64)
    }
    fn append(&mut self, stream: &[u8], value: &[u8]) -> Result<u64, String> {
        self.check()?;
        let records = self.streams.entry(stream.to_vec()).or_default();
        let seq = records.len() as u64 + 1;
        records.push(crate::outbox::Record { seq, value: value.to_vec() });
        Ok(seq)
    }
    fn read(
        &mut self,
        stream: &[u8],
        from: u64,
        limit: Option<u64>,
    ) -> Result<Vec<crate::outbox::Record>, String> {
        self.check()?;
        let all = self.streams.get(stream).cloned().unwrap_or_default();
        let limit = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        Ok(all.into_iter().filter(|r| r.seq >= from).take(limit).collect())
    }
    fn ack(&mut self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, String> {
        self.check()?;
        let cursor = self.cursors.entry((stream.to_vec(), consumer.to_vec())).or_default();
        *cursor = (*cursor).max(seq);
        Ok(*cursor)
    }
    fn lag(&mut self, stream: &[u8]) -> Result<crate::outbox::StreamStats, String> {
        self.check()?;
        let records = self.streams.get(stream).cloned().unwrap_or_default();
        let newest = records.len() as u64;
        let mut consumers: Vec<crate::outbox::ConsumerStats> = self
            .cursors
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|((_, c), &acked)| crate::outbox::ConsumerStats {
                name: c.clone(),
                acked,
                lag: newest - acked,
                evicted_before_ack: 0,
            })
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(crate::outbox::StreamStats {
            stream: stream.to_vec(),
            oldest: records.first().map(|r| r.seq),
            newest: records.last().map(|r| r.seq),
            next_seq: newest + 1,
            records: newest,
            bytes: records.iter().map(|r| r.value.len() as u64).sum(),
            consumers,
            evicted_before_ack: 0,
        })
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
    let script = b"put a 1\r\nput b \"two words\"\nget b\nbogus\nflush\nsync\nstats\nhelp\nget \"\"\ndel a";
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
    let out = run_script_with(&mut backend, b"put \"my key\" 'a \"quoted\" value'\nget 'my key'\n", false);
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
        "help put get",
        "sync now",
    ] {
        assert!(matches!(parse(line), Err(ParseError::WrongArity { .. })), "{line}");
    }
    let shown = parse("put k hello world").unwrap_err().to_string();
    assert!(shown.contains("usage: put KEY VALUE [EX SECONDS | PX MILLISECONDS]"), "{shown}");
    assert!(shown.contains("quote values that contain spaces"), "{shown}");
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
    assert_eq!(backend.ttls.get(&b"k"[..]), Some(&Duration::from_secs(60)));
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
        assert_eq!(parse(&line), Ok(Some(put(b"k", &value, None))), "value {value:?} printed as {printed}");
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
    assert_eq!(parse("Del k"), Ok(Some(Command::Del { keys: vec![b"k".to_vec()] })));
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
        "put KEY VALUE [EX SECONDS | PX MILLISECONDS]",
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

#[test]
fn scan_prefix_and_count_print_one_line_per_entry_then_the_count() {
    let mut b = MapBackend::default();
    for (k, v) in [("a", "1"), ("b c", "2"), ("b-", "x y"), ("c", "3"), ("-", "dash")] {
        b.put(k.as_bytes(), v.as_bytes(), None).unwrap();
    }
    let out = |b: &mut MapBackend, line: &str| reply_to_line(b, Ok(line.as_bytes())).unwrap().printed();
    assert_eq!(out(&mut b, "scan - +"), "- dash\na 1\n\"b c\" 2\nb- \"x y\"\nc 3\n(5 keys)");
    assert_eq!(out(&mut b, "scan a c"), "a 1\n\"b c\" 2\nb- \"x y\"\n(3 keys)");
    assert_eq!(out(&mut b, "scan a + LIMIT 2 REV"), "c 3\nb- \"x y\"\n(2 keys)");
    assert_eq!(out(&mut b, "scan a + rev limit 1"), "c 3\n(1 key)");
    // A quoted "-" is the key -, not an open end.
    assert_eq!(out(&mut b, "scan \"-\" a"), "- dash\n(1 key)");
    assert_eq!(out(&mut b, "prefix b"), "\"b c\" 2\nb- \"x y\"\n(2 keys)");
    assert_eq!(out(&mut b, "prefix zz"), "(0 keys)");
    assert_eq!(out(&mut b, "count"), "5");
    assert_eq!(out(&mut b, "count b +"), "3");
    for bad in [
        "scan a",
        "scan a b c",
        "scan a b LIMIT",
        "scan a b LIMIT 0",
        "scan a b LIMIT x",
        "prefix",
        "count a",
    ] {
        assert!(out(&mut b, bad).starts_with("ERR "), "{bad}: {}", out(&mut b, bad));
    }
    b.fail = true;
    assert_eq!(out(&mut b, "scan - +"), "ERR disk on fire");
}
