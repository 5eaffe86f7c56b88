//! `minivault forward DIR --stream S --mqtt HOST:PORT --topic T [OPTIONS]`: drains a stream of
//! the database in DIR to an MQTT broker ([`minivault::forward`]), optionally appending each
//! line of standard input to it first (`--ingest-stdin`, so `sensor-reader | minivault forward
//! ...` is a whole store-and-forward agent).
//!
//! Everything it says goes to standard error, one line each: where it starts, a progress line
//! every `--progress-secs` (records/s, lag, the broker's state), each lost connection, and how it
//! ended. It runs until `SIGINT` or `SIGTERM` (a second one exits at once), or with
//! `--until-drained` until nothing is left to send (after standard input ended, with
//! `--ingest-stdin`). Exit status: 0 drained or stopped by a signal, 1 a runtime failure (the
//! database; a line of input it could not store; interrupted before drained with
//! `--until-drained`), 2 bad arguments.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use minivault::forward::{ForwardError, ForwardOptions, Forwarder, Progress, Qos};
use minivault::outbox::Outbox;
use minivault::repl::{format_value, human_count};
use minivault::MAX_VALUE_LEN;

use crate::args::ForwardArgs;
use crate::err;

/// The signal that asked us to stop (0: none yet).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    if SIGNALLED.swap(signal, Ordering::SeqCst) != 0 {
        // A second signal while stopping: leave now (the cursor is where it was last stored).
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and calls _exit.
        unsafe { libc::signal(signal, handler) };
    }
}

/// What the stdin reader did.
#[derive(Debug, Default)]
struct Ingested {
    lines: u64,
    refused: u64,
    error: Option<String>,
}

/// Runs `minivault forward`; see the module docs.
pub fn run(args: ForwardArgs) -> ExitCode {
    install_signal_handlers();
    let outbox = match Outbox::open(&args.dir, args.options) {
        Ok(outbox) => outbox,
        Err(e) => {
            err(&format!("minivault: {e}"));
            return ExitCode::from(1);
        }
    };
    let mut options = ForwardOptions::new(&args.stream, &args.host, args.port, &args.topic);
    options.qos = if args.qos == 0 { Qos::AtMostOnce } else { Qos::AtLeastOnce };
    options.consumer = args.consumer.clone();
    if let Some(id) = &args.client_id {
        options.client_id = id.clone();
    }
    let forwarder = match Forwarder::spawn(outbox.clone(), options) {
        Ok(f) => f,
        Err(e) => {
            err(&format!("minivault forward: {e}"));
            return ExitCode::from(if matches!(e, ForwardError::InvalidOption(_)) { 2 } else { 1 });
        }
    };
    let stream = format_value(&args.stream);
    let start = forwarder.progress();
    say(&format!(
        "[forward] stream {stream} after seq {} (newest {}) to {}:{} topic {}, QoS {}, consumer {}{}",
        start.cursor,
        start.newest,
        args.host,
        args.port,
        args.topic,
        args.qos,
        format_value(&args.consumer),
        if args.ingest_stdin { ", appending standard input" } else { "" },
    ));
    let ingest = args.ingest_stdin.then(|| {
        let (outbox, stream) = (outbox.clone(), args.stream.clone());
        let batch_bytes = (args.options.memtable_bytes / 4).clamp(1, 1 << 20);
        thread::spawn(move || ingest(&outbox, &stream, batch_bytes))
    });
    let every = Duration::from_secs(args.progress_secs);
    let (mut last_line, mut disconnects) = (Instant::now(), 0);
    // No line yet: the first comes after one interval whatever the state.
    let mut last_state = (u64::MAX, u64::MAX, false);
    let outcome = loop {
        thread::sleep(Duration::from_millis(20));
        if SIGNALLED.load(Ordering::SeqCst) != 0 {
            break Outcome::Signalled;
        }
        if forwarder.is_finished() {
            break Outcome::Failed;
        }
        let p = forwarder.progress();
        if p.disconnects > disconnects {
            disconnects = p.disconnects;
            let why = p.last_error.as_deref().unwrap_or("the connection ended");
            say(&format!("[forward] {why}; reconnecting"));
        }
        // A line every interval while anything moves; when nothing does, every ten.
        let state = (p.cursor, p.newest, p.connected);
        let quiet = state == last_state && last_line.elapsed() < every * 10;
        if !every.is_zero() && last_line.elapsed() >= every && !quiet {
            let since = if last_state.0 == u64::MAX { start.cursor } else { last_state.0 };
            let rate = p.cursor.saturating_sub(since) as f64 / last_line.elapsed().as_secs_f64();
            say(&progress_line(&p, rate));
            (last_line, last_state) = (Instant::now(), state);
        }
        let ingested = ingest.as_ref().is_none_or(|t| t.is_finished());
        if args.until_drained && ingested {
            match forwarder.drained() {
                Ok(true) => break Outcome::Drained,
                Ok(false) => {}
                Err(e) => {
                    err(&format!("minivault forward: {e}"));
                    break Outcome::Failed;
                }
            }
        }
    };
    let mut code = 0u8;
    let stopped = forwarder.stop();
    let ingested = match ingest {
        Some(t) if t.is_finished() => t.join().ok(),
        _ => None,
    };
    match &stopped {
        Ok(p) => {
            let how = match outcome {
                Outcome::Drained => "drained",
                Outcome::Signalled => "stopped by a signal",
                Outcome::Failed => "stopped",
            };
            say(&format!(
                "[forward] {how}: {} records acknowledged by the broker this run, cursor {} of {} (lag {}){}",
                human_count(p.cursor.saturating_sub(p.started_after)),
                p.cursor,
                p.newest,
                p.lag(),
                if p.skipped > 0 {
                    format!(", {} evicted before they were sent", human_count(p.skipped))
                } else {
                    String::new()
                }
            ));
            if args.until_drained && outcome != Outcome::Drained {
                err("minivault forward: interrupted before the stream was drained");
                code = 1;
            }
        }
        Err(e) => {
            err(&format!("minivault forward: {e}"));
            code = 1;
        }
    }
    if let Some(i) = &ingested {
        if let Some(e) = &i.error {
            err(&format!("minivault forward: standard input: {e}"));
            code = 1;
        }
        if i.refused > 0 {
            err(&format!("minivault forward: {} lines of standard input were not stored", i.refused));
            code = 1;
        }
    }
    // The final sync. The stdin reader may still be blocked in a read: exit while the outbox is
    // held, so it cannot append after the sync.
    outbox.sync_then(|synced| {
        if let Err(e) = synced {
            err(&format!("minivault: final sync failed: {e}"));
            code = 1;
        }
        let _ = io::stderr().flush();
        std::process::exit(i32::from(code));
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Drained,
    Signalled,
    Failed,
}

fn progress_line(p: &Progress, rate: f64) -> String {
    format!(
        "[forward] cursor {} of {} (lag {}), {} records/s, broker {}",
        p.cursor,
        p.newest,
        human_count(p.lag()),
        human_count(rate.round() as u64),
        if p.connected { "connected" } else { "unreachable" },
    )
}

/// A line on standard error; a closed stderr is ignored.
fn say(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Lines of input held for one batch at most.
const BATCH_LINES: usize = 1000;

/// Appends each line of standard input (without its `\n` or `\r\n`) to `stream`: the lines
/// that have already arrived together go in one batch (one sync), up to [`BATCH_LINES`] and
/// `batch_bytes`. A line longer than [`MAX_VALUE_LEN`] is reported and skipped.
fn ingest(outbox: &Outbox, stream: &[u8], batch_bytes: usize) -> Ingested {
    let mut input = BufReader::with_capacity(64 << 10, io::stdin());
    let mut report = Ingested::default();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    loop {
        let line = match read_line(&mut input) {
            Ok(InputLine::Eof) => break,
            Ok(InputLine::TooLong(len)) => {
                report.refused += 1;
                say(&format!(
                    "[forward] line {} of standard input has {len} bytes or more, over the {} limit: not stored",
                    report.lines + report.refused,
                    minivault::repl::human_bytes(MAX_VALUE_LEN as u64)
                ));
                continue;
            }
            Ok(InputLine::Text(line)) => line,
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        };
        bytes += line.len();
        batch.push(line);
        let more_waiting = input.buffer().contains(&b'\n');
        if batch.len() >= BATCH_LINES || bytes >= batch_bytes || !more_waiting {
            if let Err(e) = store(outbox, stream, &batch) {
                report.error = Some(e.to_string());
                return report;
            }
            report.lines += batch.len() as u64;
            batch.clear();
            bytes = 0;
        }
    }
    if let Err(e) = store(outbox, stream, &batch) {
        report.error = Some(e.to_string());
    } else {
        report.lines += batch.len() as u64;
    }
    report
}

fn store(outbox: &Outbox, stream: &[u8], batch: &[Vec<u8>]) -> Result<(), minivault::Error> {
    match batch {
        [] => Ok(()),
        [one] => outbox.append(stream, one).map(drop),
        many => outbox.append_batch(stream, many).map(drop),
    }
}

enum InputLine {
    Eof,
    Text(Vec<u8>),
    /// Longer than a value may be (at least this many bytes); consumed and dropped.
    TooLong(usize),
}

/// One line, holding at most [`MAX_VALUE_LEN`] + 2 bytes of it in memory.
fn read_line(input: &mut impl BufRead) -> io::Result<InputLine> {
    let mut line = Vec::new();
    let limit = (MAX_VALUE_LEN + 2) as u64;
    let n = input.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(InputLine::Eof);
    }
    if line.last() != Some(&b'\n') && n as u64 == limit {
        // Too long: drop the rest of it.
        let mut dropped = n;
        loop {
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    input.consume(i + 1);
                    dropped += i;
                    break;
                }
                None => {
                    let len = buf.len();
                    input.consume(len);
                    dropped += len;
                }
            }
        }
        return Ok(InputLine::TooLong(dropped));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_VALUE_LEN {
        return Ok(InputLine::TooLong(line.len()));
    }
    Ok(InputLine::Text(line))
}
