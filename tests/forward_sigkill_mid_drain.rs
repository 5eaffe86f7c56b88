//! `minivault forward` killed with `SIGKILL` mid-drain, again and again, against a real Mosquitto
//! broker (started by `minivault_suite::mosquitto` on a free port of 127.0.0.1) and a subscriber
//! that records what arrives. Each cycle starts the binary on the same database, lets it run for
//! a random time (sometimes so short that the kill lands while it opens the database or
//! connects) and kills it; a last run with `--until-drained` must exit 0. The durability mode
//! rotates through `always`, `every:8` and `manual`.
//!
//! What must hold, checked on the messages in the order they arrived:
//! - every record arrives at least once, with its payload, and the first arrivals are in seq
//!   order (none lost, none reordered);
//! - each run sends exactly the records after the cursor it found, in order: so a record arrives
//!   twice only after a kill, and only if it was not yet acknowledged (it is above the cursor
//!   the next run found);
//! - the cursor never moves back, and records below it are trimmed.
//!
//! `MINIVAULT_FORWARD_KILLS=<n>` sets the number of kills (default 12); `MINIVAULT_SEED=<n>` the
//! seed. Without Mosquitto the test says so and passes (`.ci/run` installs it and runs it).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{minivault_bin, Rng};
use minivault::outbox::Outbox;
use minivault::{Durability, Options};
use minivault_suite::mosquitto::{broker_or_skip, Message, Subscriber};

const RECORDS: u64 = 20_000;

fn value(seq: u64) -> Vec<u8> {
    format!("t={seq} 21.{}", seq % 10).into_bytes()
}

/// A `minivault forward` process, killed when dropped (a failing test leaves none behind).
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path, port: u16, sync: &str, until_drained: bool) -> Forward {
    let mut cmd = Command::new(minivault_bin());
    cmd.args(["--sync", sync, "forward"])
        .arg(dir)
        .args([
            "--stream",
            "telemetry",
            "--mqtt",
            &format!("127.0.0.1:{port}"),
            "--topic",
            "site/1/telemetry",
        ])
        .args(["--progress-secs", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if until_drained {
        cmd.arg("--until-drained");
    }
    Forward(cmd.spawn().expect("spawn minivault forward"))
}

/// The stored cursor and newest seq, through a read-only handle (no forwarder runs).
fn cursor(dir: &std::path::Path) -> (u64, u64) {
    let outbox = Outbox::open(dir, Options { read_only: true, ..Options::default() }).unwrap();
    (outbox.cursor(b"telemetry", b"mqtt").unwrap(), outbox.newest(b"telemetry").unwrap())
}

/// Waits until no message has arrived for 200 ms (whatever a killed forwarder had handed to
/// the broker has been delivered); returns how many have arrived.
fn settle(sub: &Subscriber) -> usize {
    let mut count = sub.count();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(20));
        let now = sub.count();
        if now != count {
            (count, quiet_since) = (now, Instant::now());
        }
    }
    count
}

#[test]
fn sigkill_mid_drain_loses_nothing_and_resends_only_what_was_not_acknowledged() {
    let Some(broker) = broker_or_skip("sigkill_mid_drain") else { return };
    let _serial = common::serial();
    let kills: u32 = std::env::var("MINIVAULT_FORWARD_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed = std::env::var("MINIVAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng::new(seed);
    let sub = Subscriber::start(broker.port(), "sub-kill9", "site/1/telemetry");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let outbox =
            Outbox::open(&dir, Options { durability: Durability::Manual, ..Options::default() }).unwrap();
        let values: Vec<Vec<u8>> = (1..=RECORDS).map(value).collect();
        for chunk in values.chunks(2000) {
            outbox.append_batch(b"telemetry", chunk).unwrap();
        }
        outbox.sync().unwrap();
    }
    // (arrivals when the run started, the cursor it found)
    let mut runs: Vec<(usize, u64)> = Vec::new();
    let modes = ["always", "every:8", "manual"];
    for k in 0..kills {
        let arrived = settle(&sub);
        let (found, newest) = cursor(&dir);
        assert_eq!(newest, RECORDS);
        if let Some(&(_, before)) = runs.last() {
            assert!(found >= before, "run {k}: the cursor moved back from {before} to {found}");
        }
        runs.push((arrived, found));
        let mut child = spawn(&dir, broker.port(), modes[k as usize % modes.len()], false);
        if rng.below(4) != 0 {
            // Mid-drain: once this run's messages arrive, after a random number of them more.
            let more = 1 + rng.below(1500) as usize;
            let deadline = Instant::now() + Duration::from_secs(30);
            while sub.count() < arrived + more && found < RECORDS && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            // Early: while it opens the database, connects, or sends its first messages.
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
    }
    let arrived = settle(&sub);
    let (found, _) = cursor(&dir);
    runs.push((arrived, found));
    let mut last = spawn(&dir, broker.port(), "always", true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = last.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the last run did not drain in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(last.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "--until-drained exited {status}: {stderr}");
    assert!(stderr.contains("drained:"), "{stderr}");
    let got =
        sub.wait_for(Duration::from_secs(30), |m| m.iter().filter_map(|m| m.seq).max() == Some(RECORDS));
    let (found, _) = cursor(&dir);
    assert_eq!(found, RECORDS, "the last run stored the cursor at the end");
    eprintln!("runs (arrivals at start, cursor found): {runs:?}");
    check(&got, &runs);
    let outbox = Outbox::open(&dir, Options { read_only: true, ..Options::default() }).unwrap();
    let left = outbox.stats(b"telemetry").unwrap().records;
    assert!(left < minivault::outbox::TRIM_STEP, "acknowledged records are trimmed in steps: {left} left");
    let sent_twice = got.len() as u64 - RECORDS;
    eprintln!(
        "{kills} kills (seed {seed:#x}): {} messages for {RECORDS} records, {sent_twice} sent again",
        got.len()
    );
}

/// The checks of the module docs over the arrivals `got`, split into runs by `runs`.
fn check(got: &[Message], runs: &[(usize, u64)]) {
    let mut max = 0;
    for m in got {
        let seq = m.seq.expect("a seq on every message");
        assert_eq!(m.payload, value(seq), "payload of seq {seq}");
        if seq > max {
            assert_eq!(seq, max + 1, "seq {seq} arrived before seq {}", max + 1);
            max = seq;
        }
    }
    assert_eq!(max, RECORDS, "records after seq {max} never arrived");
    for (i, &(start, cursor)) in runs.iter().enumerate() {
        let end = runs.get(i + 1).map_or(got.len(), |r| r.0);
        let seqs: Vec<u64> = got[start..end].iter().filter_map(|m| m.seq).collect();
        let expected: Vec<u64> = (cursor + 1..cursor + 1 + seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "run {i} (after cursor {cursor}) sent something else than the records after it"
        );
        let seen_before = got[..start].iter().filter_map(|m| m.seq).max().unwrap_or(0);
        assert!(cursor <= seen_before, "run {i}: cursor {cursor} above what had arrived ({seen_before})");
    }
}
