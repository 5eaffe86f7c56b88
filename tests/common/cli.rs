//! Running the `minivault` binary as a user does: arguments, standard input, a working
//! directory and environment, and what comes back.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
}

/// Runs `minivault ARGS` in `cwd` with `stdin` as its whole standard input.
pub fn minivault_in<I, S>(cwd: &Path, args: I, stdin: &str) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(super::minivault_bin());
    cmd.current_dir(cwd).args(args);
    run(&mut cmd, stdin)
}

/// Runs `cmd` with `stdin` as its whole standard input.
pub fn run(cmd: &mut Command, stdin: &str) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minivault");
    let mut input = child.stdin.take().expect("stdin");
    // The binary may exit before reading everything (quit, --strict); a broken pipe is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for minivault");
    Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}
