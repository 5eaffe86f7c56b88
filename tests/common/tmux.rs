//! A real terminal for the REPL: a tmux server of its own (one socket per session), keys sent
//! with `send-keys`, text pasted with `paste-buffer` (bracketed with `-p`, as a terminal does
//! when the application asked for it), and the screen read back with `capture-pane`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when a `tmux` binary runs here. Tests that need one print why they skip when not.
pub fn available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// One tmux server running one program in an 100×30 terminal; killed on drop.
pub struct Tmux {
    socket: String,
    /// The server's socket file, removed on drop (tmux leaves it behind when killed).
    socket_path: Option<std::path::PathBuf>,
}

impl Tmux {
    /// Starts `program` (a shell command line) in `cwd` with `env` set, in a fresh server.
    pub fn start(cwd: &Path, env: &[(&str, &str)], program: &str) -> Tmux {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let socket =
            format!("minivault-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut tmux = Tmux { socket, socket_path: None };
        let mut cmd = Command::new("tmux");
        cmd.args([
            "-L",
            &tmux.socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
        ])
        .arg("-c")
        .arg(cwd);
        for (name, value) in env {
            cmd.args(["-e", &format!("{name}={value}")]);
        }
        cmd.arg(program);
        let out = cmd.output().expect("run tmux");
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        let path = tmux.tmux(&["display-message", "-p", "#{socket_path}"]).stdout;
        tmux.socket_path = Some(String::from_utf8_lossy(&path).trim().into());
        tmux
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Types `text` as keys, literally (`\r` is Enter).
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Presses named keys (`C-c`, `Up`, `Enter`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Pastes `text` as a terminal does: all at once, bracketed when `bracketed` (and the
    /// program enabled bracketed paste), else as if typed very fast. The bytes go as they are
    /// (`-r`: tmux does not turn `\n` into `\r`), so a test chooses its line breaks.
    pub fn paste(&self, text: &str, bracketed: bool) {
        let file = tempfile::NamedTempFile::new().expect("paste file");
        std::fs::write(file.path(), text).expect("write paste file");
        let path = file.path().to_str().expect("UTF-8 path");
        self.tmux(&["load-buffer", "-b", "paste", path]);
        let mut args = vec!["paste-buffer", "-d", "-r", "-b", "paste", "-t", "t"];
        if bracketed {
            args.push("-p");
        }
        self.tmux(&args);
    }

    /// The screen's text, trailing blank lines dropped.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Waits (up to `timeout`) until `done` holds for the screen; returns the screen and how
    /// long it took. Panics with the screen when it never does.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return (screen, start.elapsed());
            }
            assert!(start.elapsed() < timeout, "gave up after {timeout:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the program still runs in the terminal.
    pub fn running(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "t"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
