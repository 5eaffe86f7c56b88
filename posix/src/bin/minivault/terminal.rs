//! The REPL at a terminal: raw mode, bracketed paste, the history file, and a
//! [`LineSource`] that hands the shared loop one edited line at a time.
//!
//! Behaves like `redis-cli` and `sqlite3`:
//! - input is read in raw mode for the whole session and kept in one buffer, so lines typed
//!   ahead or pasted (several at once, with or without bracketed paste) each run, in order;
//!   a line break inside a paste ends a line as Enter does;
//! - the line is redrawn once per read of input, on one row that scrolls sideways: pasting a
//!   long value costs a screen's width of drawing, not the value's length per character;
//! - history: Up/Down, kept in `~/.minivault_history` (mode 0600; off without `HOME`);
//! - Ctrl-C clears the line (on an empty line it says how to leave), Ctrl-D on an empty line
//!   or `quit` leaves, Ctrl-L clears the screen, Ctrl-Z suspends.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use minivault::repl::{LineRead, LineSource, MAX_LINE_LEN};

use crate::editor::{Editor, History, HISTORY_LINES};
use crate::keys::{Decoded, Decoder, Key};

/// The prompt.
const PROMPT: &str = "> ";

/// Said when Ctrl-C is pressed on an empty line.
pub const HOW_TO_QUIT: &str = "(to leave, type quit or press Ctrl-D)";

/// How long a lone ESC waits for the rest of a sequence, in milliseconds.
const ESCAPE_WAIT_MS: libc::c_int = 50;

/// Standard input in raw mode, until dropped (which restores the mode it found).
struct RawMode {
    fd: BorrowedFd<'static>,
    original: libc::termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'static>) -> io::Result<RawMode> {
        let original = get_mode(fd)?;
        let mut raw = original;
        // No echo, no line buffering, no signals from keys (Ctrl-C, Ctrl-Z come as bytes), no
        // CR to NL translation, no flow control. Output processing stays on, so "\n" still
        // starts a new line at column 0.
        raw.c_iflag &= !(libc::BRKINT | libc::ICRNL | libc::INPCK | libc::ISTRIP | libc::IXON);
        raw.c_lflag &= !(libc::ECHO | libc::ICANON | libc::IEXTEN | libc::ISIG);
        raw.c_cflag |= libc::CS8;
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // TCSANOW, not TCSAFLUSH: input typed before the switch is kept.
        set_mode(fd, &raw)?;
        Ok(RawMode { fd, original })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = set_mode(self.fd, &self.original);
    }
}

fn get_mode(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    let mut mode = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: `fd` is open for the whole call and `mode` points to writable memory the size of a
    // `termios`.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), mode.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `tcgetattr` returned 0, so it filled in the whole structure.
    Ok(unsafe { mode.assume_init() })
}

fn set_mode(fd: BorrowedFd<'_>, mode: &libc::termios) -> io::Result<()> {
    // SAFETY: `fd` is open for the whole call and `mode` is a valid `termios`.
    if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's width in columns (80 when it cannot say).
fn columns(fd: BorrowedFd<'_>) -> usize {
    let mut size = std::mem::MaybeUninit::<libc::winsize>::zeroed();
    // SAFETY: `fd` is open for the whole call and `size` points to writable memory the size of
    // a `winsize`, which TIOCGWINSZ fills.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, size.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by the ioctl when it succeeded.
    let size = unsafe { size.assume_init() };
    if rc == 0 && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// Whether input arrives on `fd` within `timeout_ms`.
fn input_within(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> bool {
    let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `poll` is one valid `pollfd` for the whole call.
    unsafe { libc::poll(&mut poll, 1, timeout_ms) > 0 }
}

/// One `read` from `fd` into `buf`, retried when a signal interrupts it.
fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes and `fd` is open for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The history file: `$HOME/.minivault_history`, or none without a `HOME`.
fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".minivault_history"))
}

/// Lines typed at the terminal: a [`LineSource`] for [`minivault::repl::run_lines`].
pub struct TerminalLines {
    stdin: BorrowedFd<'static>,
    out: io::Stdout,
    _raw: RawMode,
    /// Bytes read and not decoded yet.
    input: Vec<u8>,
    decoder: Decoder,
    editor: Editor,
    history_file: Option<PathBuf>,
}

impl TerminalLines {
    /// Puts the terminal in raw mode (restored on drop) with bracketed paste on, and loads the
    /// history.
    pub fn open() -> io::Result<TerminalLines> {
        // SAFETY: file descriptor 0 is standard input, open for the whole life of the process
        // (nothing in this program closes it), so borrowing it for 'static is sound.
        let stdin: BorrowedFd<'static> = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        let raw = RawMode::enter(stdin)?;
        let history_file = history_path();
        let history = history_file.as_ref().map(load_history).unwrap_or_default();
        let mut out = io::stdout();
        out.write_all(b"\x1b[?2004h")?;
        out.flush()?;
        Ok(TerminalLines {
            stdin,
            out,
            _raw: raw,
            input: Vec::new(),
            decoder: Decoder::default(),
            editor: Editor::new(MAX_LINE_LEN, history),
            history_file,
        })
    }

    /// Draws the prompt and the visible part of the line, and puts the cursor in place.
    fn draw(&mut self) -> io::Result<()> {
        let (shown, cursor) = self.editor.view(columns(self.stdin).saturating_sub(PROMPT.len()));
        let mut frame = Vec::with_capacity(shown.len() + 16);
        frame.extend_from_slice(b"\r");
        frame.extend_from_slice(PROMPT.as_bytes());
        frame.extend_from_slice(shown.as_bytes());
        frame.extend_from_slice(b"\x1b[K\r");
        let column = PROMPT.len() + cursor;
        if column > 0 {
            frame.extend_from_slice(format!("\x1b[{column}C").as_bytes());
        }
        self.out.write_all(&frame)?;
        self.out.flush()
    }

    /// Ends the row of a finished line: the prompt and the line's start (the command and its
    /// key, however long the value), `after`, and a new row.
    fn finish_row(&mut self, after: &str) -> io::Result<()> {
        self.editor.home();
        let room = columns(self.stdin).saturating_sub(PROMPT.len() + after.chars().count());
        let (start, _) = self.editor.view(room);
        let row = format!("\r{PROMPT}{start}\x1b[K{after}\n");
        self.out.write_all(row.as_bytes())?;
        self.out.flush()
    }

    /// Reads more input into the buffer; false at the end of input.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        let n = read_some(self.stdin, &mut chunk)?;
        self.input.extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n > 0)
    }

    /// The next key from the buffered input; `None` when the buffer holds no whole key.
    fn next_key(&mut self) -> Option<Key> {
        if self.input.is_empty() {
            return None;
        }
        // A sequence cut short by a pause (a lone ESC) is decoded as it is.
        let mut decoded = self.decoder.decode(&self.input, false);
        if decoded == Decoded::Incomplete && !input_within(self.stdin, ESCAPE_WAIT_MS) {
            decoded = self.decoder.decode(&self.input, true);
        }
        match decoded {
            Decoded::Key(key, n) => {
                self.input.drain(..n.min(self.input.len()));
                Some(key)
            }
            Decoded::Incomplete => None,
        }
    }

    /// Keeps `line` in the history, and in the history file when the history took it.
    fn remember(&mut self, line: &str) {
        if self.editor.history.add(line) {
            if let Some(path) = &self.history_file {
                append_history(path, line);
            }
        }
    }

    fn suspend(&mut self) -> io::Result<()> {
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        let raw = get_mode(self.stdin)?;
        set_mode(self.stdin, &self._raw.original)?;
        // SAFETY: raising a signal in this process; SIGTSTP stops it until SIGCONT.
        unsafe { libc::raise(libc::SIGTSTP) };
        set_mode(self.stdin, &raw)
    }
}

impl LineSource for TerminalLines {
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<LineRead> {
        line.clear();
        self.editor.clear();
        self.draw()?;
        loop {
            while let Some(key) = self.next_key() {
                match key {
                    Key::Enter => {
                        self.finish_row("")?;
                        let (text, too_long) = self.editor.submit();
                        if too_long {
                            return Ok(LineRead::TooLong);
                        }
                        self.remember(&text);
                        line.extend_from_slice(text.as_bytes());
                        return Ok(LineRead::Line);
                    }
                    Key::EndOfInput if self.editor.line().is_empty() => {
                        self.finish_row("")?;
                        return Ok(LineRead::Eof);
                    }
                    Key::EndOfInput | Key::Delete => self.editor.delete(),
                    Key::Interrupt => {
                        let empty = self.editor.line().is_empty();
                        self.finish_row(if empty { HOW_TO_QUIT } else { "^C" })?;
                        self.editor.clear();
                    }
                    Key::Char(c) => self.editor.insert(c),
                    Key::Backspace => self.editor.backspace(),
                    Key::Left => self.editor.left(),
                    Key::Right => self.editor.right(),
                    Key::Home => self.editor.home(),
                    Key::End => self.editor.end(),
                    Key::Up => self.editor.history_prev(),
                    Key::Down => self.editor.history_next(),
                    Key::WordLeft => self.editor.word_left(),
                    Key::WordRight => self.editor.word_right(),
                    Key::DeleteWordBefore => self.editor.delete_word_before(),
                    Key::KillToEnd => self.editor.kill_to_end(),
                    Key::KillToStart => self.editor.kill_to_start(),
                    Key::ClearScreen => {
                        self.out.write_all(b"\x1b[H\x1b[2J")?;
                    }
                    Key::Suspend => self.suspend()?,
                    Key::Ignored => {}
                }
            }
            // Everything read so far is applied: draw once, then wait for more.
            self.draw()?;
            if !self.fill()? {
                self.finish_row("")?;
                return Ok(LineRead::Eof);
            }
        }
    }
}

impl Drop for TerminalLines {
    fn drop(&mut self) {
        let _ = self.out.write_all(b"\x1b[?2004l");
        let _ = self.out.flush();
    }
}

/// The history file's lines (the last [`HISTORY_LINES`] kept); rewritten shorter when it has
/// grown past twice that. Unreadable or missing: no history.
fn load_history(path: &PathBuf) -> History {
    let Ok(text) = fs::read(path) else { return History::default() };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let history = History::from_lines(all.iter().map(|l| (*l).to_owned()));
    if all.len() > 2 * HISTORY_LINES {
        let mut kept = history.lines().join("\n");
        kept.push('\n');
        let tmp = path.with_extension("tmp");
        if write_private(&tmp, kept.as_bytes(), false).is_ok() {
            let _ = fs::rename(&tmp, path);
        }
    }
    history
}

/// Appends one line to the history file (created with mode 0600: values may be secrets).
/// Failures are ignored: history is a convenience.
fn append_history(path: &PathBuf, line: &str) {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    let _ = write_private(path, &bytes, true);
}

fn write_private(path: &PathBuf, bytes: &[u8], append: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
