//! `minivault forward` as a user runs it: arguments checked before anything is opened (exit 2),
//! `--ingest-stdin` with `--until-drained` as a whole agent (lines in, messages out, exit 0),
//! `SIGINT` and `SIGTERM` stopping it cleanly (the cursor stored, exit 0; exit 1 when
//! `--until-drained` had not drained), progress lines while the broker is away, and a line of
//! input too long to store (reported, the others stored, exit 1). The broker is a real
//! Mosquitto (`minivault_suite::mosquitto`); the tests that need one say so and pass without it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::minivault_in;
use common::minivault_bin;
use minivault::outbox::Outbox;
use minivault::Options;
use minivault_suite::mosquitto::{broker_or_skip, free_port, Subscriber};

/// A child killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn forward(cwd: &std::path::Path, args: &[&str]) -> Running {
    Running(
        Command::new(minivault_bin())
            .current_dir(cwd)
            .arg("forward")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn minivault forward"),
    )
}

/// Waits up to 20 s for the child to exit; its code (-1: a signal) and stderr.
fn finish(mut child: Running) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "minivault forward did not exit in 20 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// Reads the child's stderr until a line containing `what` (20 s at most); the lines read.
fn wait_for_line(child: &mut Running, what: &str) -> Vec<String> {
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            let done = line.contains(what);
            lines.push(line);
            if done {
                // The rest of stderr, for the caller's later checks, goes through a pipe again.
                let (r, w) = pipe();
                std::thread::spawn(move || {
                    let mut w = w;
                    while let Ok(line) = rx.recv() {
                        if writeln!(w, "{line}").is_err() {
                            return;
                        }
                    }
                });
                child.0.stderr = Some(r);
                return lines;
            }
        }
    }
    panic!("no line with {what:?} in 20 s; got {lines:#?}");
}

/// A pipe as a `ChildStderr` stand-in: what `finish` reads.
fn pipe() -> (std::process::ChildStderr, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors that we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY: fds[0] and fds[1] are fresh descriptors owned by nothing else.
    unsafe {
        (
            std::process::ChildStderr::from(std::os::fd::OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn bad_arguments_exit_2_before_anything_is_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["forward", "db", "--mqtt", "127.0.0.1:1883", "--topic", "t"], "forward needs --stream NAME"),
        (&["forward", "db", "--stream", "s", "--topic", "t"], "forward needs --mqtt HOST:PORT"),
        (&["forward", "db", "--stream", "s", "--mqtt", "h"], "forward needs --topic TOPIC"),
        (&["forward", "--stream", "s", "--mqtt", "h", "--topic", "t"], "forward needs DIR"),
        (&["forward", "db", "--stream", "s", "--mqtt", "h", "--topic", "a/#"], "holds a wildcard"),
        (
            &["forward", "db", "--stream", "s", "--mqtt", "h", "--topic", "t", "--qos", "2"],
            "QoS 2 is not supported",
        ),
        (&["forward", "db", "--stream", "s", "--mqtt", "h:0", "--topic", "t"], "the port must be 1 to 65535"),
        (
            &["forward", "db", "--stream", "s", "--mqtt", "h:99999", "--topic", "t"],
            "the port must be 1 to 65535",
        ),
        (&["forward", "db", "--stream", "s", "--mqtt", "::1", "--topic", "t"], "IPv6 address in brackets"),
        (
            &["forward", "db", "--stream", "", "--mqtt", "h", "--topic", "t"],
            "--stream: a name of 1 to 255 bytes",
        ),
        (
            &["--read-only", "forward", "db", "--stream", "s", "--mqtt", "h", "--topic", "t"],
            "--read-only does not go",
        ),
        (
            &["forward", "db", "--stream", "s", "--mqtt", "h", "--topic", "t", "--frobnicate"],
            "invalid option '--frobnicate'",
        ),
        (&["forward", "db", "extra", "--stream", "s", "--mqtt", "h", "--topic", "t"], "unexpected argument"),
        (
            &["forward", "db", "--stream", "s", "--mqtt", "h", "--topic", "t", "--sync", "often"],
            "invalid --sync value",
        ),
    ];
    for (args, message) in cases {
        let ran = minivault_in(tmp.path(), *args, "");
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(message), "{args:?}: expected {message:?} in {}", ran.stderr);
        assert!(ran.stderr.contains("minivault forward --help"), "{args:?}: the usage line: {}", ran.stderr);
        assert!(!tmp.path().join("db").exists(), "{args:?} created the database");
    }
    let help = minivault_in(tmp.path(), ["forward", "--help"], "");
    assert_eq!(help.code, 0);
    for word in ["--stream", "--mqtt", "--topic", "--qos", "--until-drained", "--ingest-stdin", "seq"] {
        assert!(help.stdout.contains(word), "forward --help lacks {word}");
    }
}

#[test]
fn a_pipe_into_forward_is_a_store_and_forward_agent() {
    let Some(broker) = broker_or_skip("a_pipe_into_forward_is_a_store_and_forward_agent") else { return };
    let sub = Subscriber::start(broker.port(), "sub-pipe", "site/+/readings");
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Running(
        Command::new(minivault_bin())
            .current_dir(tmp.path())
            .args(["forward", "gw", "--stream", "readings", "--mqtt", &broker.address()])
            .args(["--topic", "site/7/readings", "--ingest-stdin", "--until-drained"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut input = agent.0.stdin.take().unwrap();
    for i in 1..=2500 {
        writeln!(input, "t={i} temp=21.{}", i % 10).unwrap();
    }
    writeln!(input, "last line without a newline at the end is a record too\r").unwrap();
    write!(input, "truly last").unwrap();
    drop(input);
    let (code, stderr) = finish(agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("appending standard input"), "{stderr}");
    assert!(
        stderr.contains("drained: 2,502 records acknowledged by the broker this run, cursor 2502 of 2502"),
        "{stderr}"
    );
    let got = sub.wait_for(Duration::from_secs(20), |m| m.len() >= 2502);
    assert_eq!(got.len(), 2502, "each line once");
    for (i, m) in got.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(m.seq, Some(seq));
        assert_eq!(m.stream.as_deref(), Some("readings"));
        assert_eq!(m.topic, "site/7/readings");
        let want = match seq {
            2501 => "last line without a newline at the end is a record too".to_string(),
            2502 => "truly last".to_string(),
            _ => format!("t={seq} temp=21.{}", seq % 10),
        };
        assert_eq!(String::from_utf8_lossy(&m.payload), want);
    }
    // The REPL sees what the agent stored: the consumer's cursor, nothing left to send.
    let lag = minivault_in(tmp.path(), ["gw", "lag", "readings"], "");
    assert!(lag.stdout.contains("consumer mqtt cursor=2502 lag=0"), "{}", lag.stdout);
}

#[test]
fn sigint_and_sigterm_stop_it_cleanly_while_the_broker_is_away() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port().unwrap().to_string();
    let address = format!("127.0.0.1:{port}");
    {
        let outbox = Outbox::open(tmp.path().join("gw"), Options::default()).unwrap();
        outbox.append_batch(b"s", &[b"a", b"b", b"c"]).unwrap();
    }
    for (signal, until_drained, code) in
        [(libc::SIGINT, false, 0), (libc::SIGTERM, false, 0), (libc::SIGINT, true, 1)]
    {
        let mut args = vec!["gw", "--stream", "s", "--mqtt", &address, "--topic", "t"];
        if until_drained {
            args.push("--until-drained");
        }
        let mut child = forward(tmp.path(), &args);
        let lines = wait_for_line(&mut child, "broker unreachable");
        assert!(lines.iter().any(|l| l.contains("Connection refused")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("cursor 0 of 3 (lag 3)")), "{lines:#?}");
        let pid = i32::try_from(child.0.id()).unwrap();
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(pid, signal) };
        let (got, stderr) = finish(child);
        assert_eq!(got, code, "signal {signal}, --until-drained {until_drained}: {stderr}");
        assert!(stderr.contains("stopped by a signal: 0 records acknowledged"), "{stderr}");
        if until_drained {
            assert!(stderr.contains("interrupted before the stream was drained"), "{stderr}");
        }
        // It let go of the database: another process opens it.
        let lag = minivault_in(tmp.path(), ["gw", "lag", "s"], "");
        assert_eq!(lag.code, 0, "{}", lag.stderr);
        assert!(lag.stdout.contains("records=3"), "{}", lag.stdout);
    }
}

#[test]
fn a_line_too_long_to_store_is_reported_and_the_others_are_stored() {
    let Some(broker) = broker_or_skip("a_line_too_long_to_store") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Running(
        Command::new(minivault_bin())
            .current_dir(tmp.path())
            .args(["forward", "gw", "--stream", "s", "--mqtt", &broker.address(), "--topic", "t"])
            .args(["--ingest-stdin", "--until-drained"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut input = child.0.stdin.take().unwrap();
    let long = "x".repeat(minivault::MAX_VALUE_LEN + 10);
    let writer = std::thread::spawn(move || {
        writeln!(input, "before").unwrap();
        writeln!(input, "{long}").unwrap();
        writeln!(input, "after").unwrap();
    });
    writer.join().unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 2 of standard input has 1048586 bytes or more"), "{stderr}");
    assert!(stderr.contains("1 lines of standard input were not stored"), "{stderr}");
    assert!(stderr.contains("drained: 2 records"), "{stderr}");
}
