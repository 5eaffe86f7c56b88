//! Terminal input bytes to keys: control characters, escape sequences (arrows, Home/End,
//! Delete, Alt-letters), UTF-8 characters, and bracketed paste, inside which every byte is
//! text and a line break is a line of its own. Pure: no I/O.

/// One key, or a paste's line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character to insert (typed, or pasted: then possibly a control character).
    Char(char),
    /// Enter, or a line break inside a paste.
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    Up,
    Down,
    WordLeft,
    WordRight,
    /// Ctrl-W or Alt-Backspace.
    DeleteWordBefore,
    /// Ctrl-K.
    KillToEnd,
    /// Ctrl-U.
    KillToStart,
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-D.
    EndOfInput,
    /// Ctrl-L.
    ClearScreen,
    /// Ctrl-Z.
    Suspend,
    /// A key or sequence that does nothing here.
    Ignored,
}

/// What [`Decoder::decode`] found at the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A key, and how many bytes it took.
    Key(Key, usize),
    /// The bytes so far start a sequence that needs more (or, for a lone ESC, a pause).
    Incomplete,
}

/// The decoder's state between keys: whether a bracketed paste is going on.
#[derive(Debug, Default)]
pub struct Decoder {
    in_paste: bool,
    /// Inside a paste, the last line break was `\r`: a `\n` right after it ends no new line.
    after_cr: bool,
}

const PASTE_END: &[u8] = b"\x1b[201~";

impl Decoder {
    /// Decodes the key at the front of `input` (not empty). With `final_bytes`, nothing more
    /// will come soon (a pause in the input): an ESC with nothing after it is the Escape key,
    /// and a broken sequence is dropped, rather than waiting.
    pub fn decode(&mut self, input: &[u8], final_bytes: bool) -> Decoded {
        let decoded = if self.in_paste { self.pasted(input) } else { self.typed(input) };
        match decoded {
            Decoded::Incomplete if final_bytes => Decoded::Key(Key::Ignored, input.len().max(1)),
            decoded => decoded,
        }
    }

    fn pasted(&mut self, input: &[u8]) -> Decoded {
        let after_cr = std::mem::take(&mut self.after_cr);
        match input {
            [] => Decoded::Incomplete,
            [b'\x1b', ..] if input.starts_with(PASTE_END) => {
                self.in_paste = false;
                Decoded::Key(Key::Ignored, PASTE_END.len())
            }
            [b'\x1b', ..] if PASTE_END.starts_with(input) => {
                self.after_cr = after_cr;
                Decoded::Incomplete
            }
            [b'\n', ..] if after_cr => Decoded::Key(Key::Ignored, 1),
            [b'\r', ..] => {
                self.after_cr = true;
                Decoded::Key(Key::Enter, 1)
            }
            [b'\n', ..] => Decoded::Key(Key::Enter, 1),
            _ => utf8_char(input),
        }
    }

    fn typed(&mut self, input: &[u8]) -> Decoded {
        let Some(&first) = input.first() else { return Decoded::Incomplete };
        let key = match first {
            b'\r' | b'\n' => Key::Enter,
            0x7F | 0x08 => Key::Backspace,
            0x01 => Key::Home,
            0x02 => Key::Left,
            0x03 => Key::Interrupt,
            0x04 => Key::EndOfInput,
            0x05 => Key::End,
            0x06 => Key::Right,
            b'\t' => Key::Char(' '),
            0x0B => Key::KillToEnd,
            0x0C => Key::ClearScreen,
            0x0E => Key::Down,
            0x10 => Key::Up,
            0x15 => Key::KillToStart,
            0x17 => Key::DeleteWordBefore,
            0x1A => Key::Suspend,
            0x1B => return self.escape(input),
            b if b < 0x20 => Key::Ignored,
            _ => return utf8_char(input),
        };
        Decoded::Key(key, 1)
    }

    /// An escape sequence: CSI (`ESC [`), SS3 (`ESC O`) or Alt plus a key.
    fn escape(&mut self, input: &[u8]) -> Decoded {
        match input.get(1) {
            None => Decoded::Incomplete,
            Some(b'[') => self.csi(input),
            Some(b'O') => match input.get(2) {
                None => Decoded::Incomplete,
                Some(&last) => Decoded::Key(cursor_key(last), 3),
            },
            Some(b'b' | b'B') => Decoded::Key(Key::WordLeft, 2),
            Some(b'f' | b'F') => Decoded::Key(Key::WordRight, 2),
            Some(0x7F | 0x08) => Decoded::Key(Key::DeleteWordBefore, 2),
            // Another ESC: this one stood alone.
            Some(0x1B) => Decoded::Key(Key::Ignored, 1),
            Some(_) => Decoded::Key(Key::Ignored, 2),
        }
    }

    /// `ESC [ parameters intermediates final`.
    fn csi(&mut self, input: &[u8]) -> Decoded {
        let body = input.get(2..).unwrap_or_default();
        let Some(end) = body.iter().position(|b| (0x40..=0x7E).contains(b)) else {
            // Parameters (0x30..=0x3F) and intermediates (0x20..=0x2F) only, so far.
            return if body.iter().all(|b| (0x20..=0x3F).contains(b)) && body.len() < 32 {
                Decoded::Incomplete
            } else {
                Decoded::Key(Key::Ignored, input.len())
            };
        };
        let params = body.get(..end).unwrap_or_default();
        let last = body.get(end).copied().unwrap_or(0);
        let len = 2 + end + 1;
        let key = match (params, last) {
            (b"200", b'~') => {
                self.in_paste = true;
                Key::Ignored
            }
            (b"1" | b"7", b'~') => Key::Home,
            (b"4" | b"8", b'~') => Key::End,
            (b"3", b'~') => Key::Delete,
            // Ctrl (5) or Alt (3) with an arrow: by words.
            (b"1;5" | b"1;3", b'D') => Key::WordLeft,
            (b"1;5" | b"1;3", b'C') => Key::WordRight,
            (b"", last) => cursor_key(last),
            _ => Key::Ignored,
        };
        Decoded::Key(key, len)
    }
}

/// The key of an arrow, Home or End sequence's last byte.
fn cursor_key(last: u8) -> Key {
    match last {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => Key::Ignored,
    }
}

/// The UTF-8 character at the front of `input`; U+FFFD for a byte that starts none.
fn utf8_char(input: &[u8]) -> Decoded {
    let Some(&first) = input.first() else { return Decoded::Incomplete };
    let len = match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Decoded::Key(Key::Char(char::REPLACEMENT_CHARACTER), 1),
    };
    let Some(bytes) = input.get(..len) else {
        // A truncated sequence: wait for the rest, unless what is there already cannot be one.
        let valid_so_far = input.iter().skip(1).all(|b| (0x80..=0xBF).contains(b));
        return if valid_so_far {
            Decoded::Incomplete
        } else {
            Decoded::Key(Key::Char(char::REPLACEMENT_CHARACTER), 1)
        };
    };
    match std::str::from_utf8(bytes).ok().and_then(|s| s.chars().next()) {
        Some(c) => Decoded::Key(Key::Char(c), len),
        None => Decoded::Key(Key::Char(char::REPLACEMENT_CHARACTER), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key in `input`, decoding as if it all arrived at once.
    fn keys(decoder: &mut Decoder, mut input: &[u8]) -> Vec<Key> {
        let mut out = Vec::new();
        while !input.is_empty() {
            match decoder.decode(input, true) {
                Decoded::Key(key, n) => {
                    out.push(key);
                    input = input.get(n..).unwrap_or_default();
                }
                Decoded::Incomplete => unreachable!("final bytes never wait"),
            }
        }
        out.retain(|k| *k != Key::Ignored);
        out
    }

    #[test]
    fn typed_lines_are_characters_and_enters() {
        let got = keys(&mut Decoder::default(), b"ab\rc\n");
        assert_eq!(got, [Key::Char('a'), Key::Char('b'), Key::Enter, Key::Char('c'), Key::Enter]);
    }

    #[test]
    fn escape_sequences_are_cursor_keys() {
        let got = keys(
            &mut Decoder::default(),
            b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOH\x1b[4~\x1b[3~\x1b[1;5D\x1bb\x1b\x7f",
        );
        assert_eq!(
            got,
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Delete,
                Key::WordLeft,
                Key::WordLeft,
                Key::DeleteWordBefore
            ]
        );
    }

    #[test]
    fn a_bracketed_paste_is_text_whose_line_breaks_are_lines() {
        let mut d = Decoder::default();
        let got = keys(&mut d, b"\x1b[200~p 1\r\nq\t\x1b[A\n\x1b[201~\x03");
        let want = [
            Key::Char('p'),
            Key::Char(' '),
            Key::Char('1'),
            Key::Enter,
            Key::Char('q'),
            Key::Char('\t'),
            Key::Char('\x1b'),
            Key::Char('['),
            Key::Char('A'),
            Key::Enter,
            Key::Interrupt,
        ];
        assert_eq!(got, want, "CRLF is one line break; after the paste, keys are keys again");
    }

    #[test]
    fn partial_sequences_wait_for_more_bytes() {
        let mut d = Decoder::default();
        for partial in [&b"\x1b"[..], b"\x1b[", b"\x1b[20", b"\xe4\xb8"] {
            assert_eq!(d.decode(partial, false), Decoded::Incomplete, "{partial:?}");
        }
        assert_eq!(d.decode(b"\xe4\xb8\x96", false), Decoded::Key(Key::Char('\u{4e16}'), 3));
        assert_eq!(d.decode(b"\x1b", true), Decoded::Key(Key::Ignored, 1), "a lone ESC after a pause");
        assert_eq!(d.decode(b"\xff", false), Decoded::Key(Key::Char(char::REPLACEMENT_CHARACTER), 1));
        assert_eq!(d.decode(b"\xe4x", false), Decoded::Key(Key::Char(char::REPLACEMENT_CHARACTER), 1));
    }

    #[test]
    fn any_bytes_decode_without_panicking_and_always_make_progress() {
        let mut next = crate::editor::tests::xorshift(0x9E37_79B9_7F4A_7C15);
        const BYTES: &[u8] = b"\x1b[~;O200201\r\n\x7f\x03ab\xe4\xb8\x96\xff\xc3";
        let mut d = Decoder::default();
        for _ in 0..20_000 {
            let len = 1 + (next() % 12) as usize;
            let input: Vec<u8> = (0..len).map(|_| BYTES[(next() % BYTES.len() as u64) as usize]).collect();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let final_bytes = next().is_multiple_of(2);
                match d.decode(rest, final_bytes) {
                    Decoded::Key(_, n) => {
                        assert!(n >= 1 && n <= rest.len(), "{n} of {rest:?}");
                        rest = &rest[n..];
                    }
                    Decoded::Incomplete => {
                        assert!(!final_bytes, "a pause never leaves bytes waiting: {rest:?}");
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn a_paste_end_split_across_reads_is_still_the_end() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(b"\x1b[200~", false), Decoded::Key(Key::Ignored, 6));
        assert_eq!(d.decode(b"\r", false), Decoded::Key(Key::Enter, 1));
        assert_eq!(d.decode(b"\x1b[20", false), Decoded::Incomplete);
        assert_eq!(d.decode(b"\n", false), Decoded::Key(Key::Ignored, 1), "the LF of a CRLF");
        assert_eq!(d.decode(b"\x1b[201~", false), Decoded::Key(Key::Ignored, 6));
        assert_eq!(d.decode(b"\r", false), Decoded::Key(Key::Enter, 1));
    }
}
