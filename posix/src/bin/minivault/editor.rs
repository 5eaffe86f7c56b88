//! The line being edited at the terminal: its text, the cursor, the history, and what part of
//! it fits on the screen. Pure state: no I/O, so every key's effect is unit-tested.
//!
//! The line is drawn on one screen row that scrolls sideways (as linenoise does), so drawing
//! costs the width of the terminal however long the line is: a pasted value of megabytes is
//! drawn once per read of input, never once per character.

use unicode_width::UnicodeWidthChar;

/// Lines kept in the history (in memory and in the history file).
pub const HISTORY_LINES: usize = 1000;

/// Lines longer than this (bytes) are not kept in the history: a pasted megabyte value would
/// otherwise be kept a thousand times over. The history holds at most
/// `HISTORY_LINES × MAX_HISTORY_LINE` = 4 MiB.
pub const MAX_HISTORY_LINE: usize = 4096;

/// The recently entered lines, oldest first.
#[derive(Debug, Default)]
pub struct History {
    lines: Vec<String>,
}

impl History {
    /// The history holding the last [`HISTORY_LINES`] of `lines` that it would keep.
    pub fn from_lines<I: IntoIterator<Item = String>>(lines: I) -> Self {
        let mut history = History::default();
        for line in lines {
            history.add(&line);
        }
        history
    }

    /// Adds `line` unless it is blank, too long or the same as the last one; returns whether it
    /// was added.
    pub fn add(&mut self, line: &str) -> bool {
        if line.trim().is_empty()
            || line.len() > MAX_HISTORY_LINE
            || self.lines.last().is_some_and(|l| l == line)
        {
            return false;
        }
        if self.lines.len() == HISTORY_LINES {
            self.lines.remove(0);
        }
        self.lines.push(line.to_owned());
        true
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The editor's state for one line, plus the history it can recall.
#[derive(Debug)]
pub struct Editor {
    line: String,
    /// Byte offset of the cursor in `line`, always on a character boundary.
    cursor: usize,
    /// Byte offset of the first character drawn.
    scroll: usize,
    /// The most bytes `line` may hold; typing beyond it sets `too_long`.
    max_len: usize,
    too_long: bool,
    pub history: History,
    /// While browsing the history: the entry shown, and the line that was being typed.
    browsing: Option<(usize, String)>,
}

impl Editor {
    /// An empty editor whose lines hold at most `max_len` bytes.
    pub fn new(max_len: usize, history: History) -> Self {
        Editor {
            line: String::new(),
            cursor: 0,
            scroll: 0,
            max_len,
            too_long: false,
            history,
            browsing: None,
        }
    }

    /// The text being edited.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Starts a new, empty line.
    pub fn clear(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.scroll = 0;
        self.too_long = false;
        self.browsing = None;
    }

    /// Ends the line: returns it (empty line included) and starts a new one. The second value
    /// is true when the line was cut at the length limit.
    pub fn submit(&mut self) -> (String, bool) {
        let too_long = self.too_long;
        let line = std::mem::take(&mut self.line);
        self.clear();
        (line, too_long)
    }

    /// Inserts `c` at the cursor.
    pub fn insert(&mut self, c: char) {
        if self.line.len() + c.len_utf8() > self.max_len {
            self.too_long = true;
            return;
        }
        self.line.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(c) = self.line[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.line.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
        }
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        if let Some(c) = self.line[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        if let Some(c) = self.line[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    /// Moves the cursor to the start of the line.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves the cursor to the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.line.len();
    }

    /// Moves the cursor to the start of the word before it.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start_before(self.cursor);
    }

    /// Moves the cursor past the end of the word after it.
    pub fn word_right(&mut self) {
        let rest = &self.line[self.cursor..];
        let skipped = rest.len() - rest.trim_start().len();
        let word = rest[skipped..].find(char::is_whitespace).unwrap_or(rest.len() - skipped);
        self.cursor += skipped + word;
    }

    /// Deletes from the start of the word before the cursor to the cursor (Ctrl-W).
    pub fn delete_word_before(&mut self) {
        let start = self.word_start_before(self.cursor);
        self.line.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the cursor to the end of the line (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        self.line.truncate(self.cursor);
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.line.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Shows the previous history entry (Up).
    pub fn history_prev(&mut self) {
        let entries = self.history.lines().len();
        let shown = match self.browsing.take() {
            None if entries == 0 => return,
            None => {
                self.browsing = Some((entries - 1, self.line.clone()));
                entries - 1
            }
            Some((0, typed)) => {
                self.browsing = Some((0, typed));
                return;
            }
            Some((i, typed)) => {
                self.browsing = Some((i - 1, typed));
                i - 1
            }
        };
        self.show(self.history.lines().get(shown).cloned().unwrap_or_default());
    }

    /// Shows the next history entry, or the line being typed after the newest (Down).
    pub fn history_next(&mut self) {
        let Some((i, typed)) = self.browsing.take() else { return };
        match self.history.lines().get(i + 1).cloned() {
            Some(next) => {
                self.browsing = Some((i + 1, typed));
                self.show(next);
            }
            None => self.show(typed),
        }
    }

    fn show(&mut self, text: String) {
        self.line = text;
        self.cursor = self.line.len();
        // The old scroll offset may not even be a character boundary of the new text.
        self.scroll = 0;
        self.too_long = false;
    }

    fn word_start_before(&self, at: usize) -> usize {
        let before = self.line[..at].trim_end();
        before.rfind(char::is_whitespace).map_or(0, |i| i + 1)
    }

    /// What to draw after the prompt in `columns` columns, and the column of the cursor in it.
    ///
    /// Scrolls sideways so that the cursor stays visible; costs about `columns` characters of
    /// work whatever the length of the line.
    pub fn view(&mut self, columns: usize) -> (String, usize) {
        // The last column stays free, so the terminal never wraps the row.
        let room = columns.saturating_sub(1).max(1);
        if self.cursor < self.scroll {
            // Moving left past the edge: show some context before the cursor.
            self.scroll = self.back_from(self.cursor, room / 3);
        } else if self.width_between(self.scroll, self.cursor, room) >= room {
            // Typing or moving right past the edge: the cursor goes to the right edge.
            self.scroll = self.back_from(self.cursor, room - 1);
        }
        let mut shown = String::new();
        let mut width = 0;
        let mut cursor_column = 0;
        for (offset, c) in self.line[self.scroll..].char_indices() {
            let w = display_width(c);
            if width + w > room {
                break;
            }
            if self.scroll + offset == self.cursor {
                cursor_column = width;
            }
            push_visible(&mut shown, c);
            width += w;
        }
        if self.cursor == self.line.len() {
            cursor_column = width;
        }
        (shown, cursor_column)
    }

    /// The offset reached walking back from `at` over at most `columns` columns of characters.
    fn back_from(&self, at: usize, columns: usize) -> usize {
        let mut start = at;
        let mut width = 0;
        for c in self.line[..at].chars().rev() {
            width += display_width(c);
            if width > columns {
                break;
            }
            start -= c.len_utf8();
        }
        start
    }

    /// The display width of `line[from..to]`, counted only up to `limit`.
    fn width_between(&self, from: usize, to: usize, limit: usize) -> usize {
        let mut width = 0;
        for c in self.line[from..to].chars() {
            width += display_width(c);
            if width >= limit {
                break;
            }
        }
        width
    }
}

/// Columns a character takes on the screen: control characters are drawn as `^X` (two).
pub fn display_width(c: char) -> usize {
    if c.is_control() {
        2
    } else {
        c.width().unwrap_or(0)
    }
}

/// Appends `c` as drawn: a control character as `^` and its letter.
fn push_visible(out: &mut String, c: char) {
    if c.is_control() {
        out.push('^');
        out.push(char::from_u32((c as u32 + 0x40) & 0x7F).unwrap_or('?'));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// xorshift64 from `seed` (not 0): deterministic random numbers for the key tests, no crate.
    pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn typed(text: &str) -> Editor {
        let mut e = Editor::new(1 << 20, History::default());
        text.chars().for_each(|c| e.insert(c));
        e
    }

    #[test]
    fn typing_moving_and_deleting_edit_the_line() {
        let mut e = typed("put k v");
        e.left();
        e.backspace();
        e.insert('w');
        assert_eq!(e.line(), "put kwv");
        e.home();
        e.delete();
        e.insert('P');
        e.end();
        e.insert('!');
        assert_eq!(e.line(), "Put kwv!");
        e.word_left();
        e.delete_word_before();
        assert_eq!(e.line(), "kwv!");
        e.word_right();
        assert_eq!(e.line().len(), 4);
    }

    #[test]
    fn kills_cut_before_or_after_the_cursor() {
        let mut e = typed("get some key");
        e.word_left();
        e.kill_to_end();
        assert_eq!(e.line(), "get some ");
        e.left();
        e.kill_to_start();
        assert_eq!(e.line(), " ");
    }

    #[test]
    fn multibyte_characters_move_and_delete_whole() {
        let mut e = typed("h\u{e9}\u{4e16}");
        e.left();
        e.backspace();
        assert_eq!(e.line(), "h\u{4e16}");
        e.right();
        e.backspace();
        assert_eq!(e.line(), "h");
    }

    #[test]
    fn history_recalls_older_and_newer_lines_and_the_line_being_typed() {
        let mut e = Editor::new(100, History::from_lines(["put a 1".to_owned(), "get a".to_owned()]));
        "half".chars().for_each(|c| e.insert(c));
        e.history_prev();
        assert_eq!(e.line(), "get a");
        e.history_prev();
        assert_eq!(e.line(), "put a 1");
        e.history_prev();
        assert_eq!(e.line(), "put a 1", "stays at the oldest");
        e.history_next();
        assert_eq!(e.line(), "get a");
        e.history_next();
        assert_eq!(e.line(), "half");
    }

    #[test]
    fn history_skips_blank_repeated_and_long_lines_and_keeps_the_last_thousand() {
        let mut h = History::default();
        assert!(h.add("get a"));
        assert!(!h.add("get a"));
        assert!(!h.add("   "));
        assert!(!h.add(&"x".repeat(MAX_HISTORY_LINE + 1)));
        for i in 0..HISTORY_LINES + 5 {
            h.add(&format!("get {i}"));
        }
        assert_eq!(h.lines().len(), HISTORY_LINES);
        assert_eq!(h.lines().last().map(String::as_str), Some("get 1004"));
    }

    #[test]
    fn a_line_past_the_limit_is_cut_and_flagged() {
        let mut e = Editor::new(5, History::default());
        "123456".chars().for_each(|c| e.insert(c));
        assert_eq!(e.line(), "12345");
        let (line, too_long) = e.submit();
        assert_eq!((line.as_str(), too_long), ("12345", true));
        "ab".chars().for_each(|c| e.insert(c));
        assert_eq!(e.submit(), ("ab".to_owned(), false), "the next line starts clean");
    }

    #[test]
    fn the_view_scrolls_to_keep_the_cursor_on_screen() {
        let mut e = typed(&"abcdefghij".repeat(10));
        let (shown, column) = e.view(21);
        let line = "abcdefghij".repeat(10);
        assert_eq!(shown, line[81..]);
        assert_eq!(column, 19);
        e.home();
        let (shown, column) = e.view(21);
        assert_eq!((shown.as_str(), column), (&"abcdefghij".repeat(2)[..20], 0));
    }

    #[test]
    fn the_view_of_a_megabyte_line_is_one_screen_wide() {
        let mut e = typed(&"v".repeat(1 << 20));
        let (shown, column) = e.view(80);
        assert_eq!((shown.len(), column), (78, 78), "the cursor sits just after the last character drawn");
    }

    #[test]
    fn no_sequence_of_keys_panics_or_loses_the_cursor() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let history = History::from_lines(["\u{4e16}\u{754c} \u{e9}t\u{e9}".to_owned(), "x".repeat(300)]);
        let mut e = Editor::new(200, history);
        const CHARS: [char; 6] = ['a', ' ', '\u{e9}', '\u{4e16}', '\t', '\u{1F600}'];
        for _ in 0..200_000 {
            match next() % 16 {
                0..=5 => e.insert(CHARS[(next() % 6) as usize]),
                6 => e.backspace(),
                7 => e.delete(),
                8 => e.left(),
                9 => e.right(),
                10 => e.word_left(),
                11 => e.word_right(),
                12 => e.delete_word_before(),
                13 => match next() % 4 {
                    0 => e.kill_to_end(),
                    1 => e.kill_to_start(),
                    2 => e.home(),
                    _ => e.end(),
                },
                14 => e.history_prev(),
                _ => e.history_next(),
            }
            let width = 3 + (next() % 40) as usize;
            let (shown, column) = e.view(width);
            assert!(shown.chars().map(display_width).sum::<usize>() < width.max(2), "{shown:?} in {width}");
            assert!(column < width.max(2));
            assert!(e.line.is_char_boundary(e.cursor) && e.line.len() <= 300);
            if next().is_multiple_of(50) {
                e.submit();
            }
        }
    }

    #[test]
    fn control_characters_are_drawn_as_caret_letters() {
        let mut e = typed("a\tb");
        assert_eq!(e.view(80), ("a^Ib".to_owned(), 4));
    }
}
