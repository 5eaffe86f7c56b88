//! The forwarder (`minivault::forward`, a thread over the application's outbox) against a real
//! Mosquitto broker (`minivault_suite::mosquitto`: started on 127.0.0.1 on a free port, stopped
//! after), with a subscriber on a persistent session recording what arrives:
//!
//! - records appended while the broker is down arrive once it is up, in order, each once;
//! - the broker killed (`SIGKILL`) and restarted several times mid-drain: every record arrives at
//!   least once, the first arrivals in seq order, and a record arrives twice only after a kill
//!   and only when it was not yet acknowledged when the broker died;
//! - a space of records appended by the application while the forwarder drains, from another
//!   thread of the same process.
//!
//! Without Mosquitto these tests say so and pass (`scripts/mosquitto.sh` installs it; `.ci/run`
//! installs it and runs them with `MINIVAULT_REQUIRE_MOSQUITTO=1`).

use std::time::{Duration, Instant};

use minivault::forward::{ForwardOptions, Forwarder};
use minivault::outbox::Outbox;
use minivault::{Durability, Options};
use minivault_suite::mosquitto::{broker_or_skip, Broker, Message, Subscriber};

const WAIT: Duration = Duration::from_secs(60);

fn options() -> Options {
    Options { durability: Durability::Always, ..Options::default() }
}

fn forward_options(broker: &Broker, topic: &str) -> ForwardOptions {
    let mut o = ForwardOptions::new("telemetry", "127.0.0.1", broker.port(), topic);
    o.min_backoff = Duration::from_millis(20);
    o.max_backoff = Duration::from_millis(200);
    o
}

fn value(seq: u64) -> Vec<u8> {
    format!("reading {seq}").into_bytes()
}

/// Every seq of 1..=n arrived, with the right payload; the first arrival of each seq in order.
fn check_all_arrived_in_order(got: &[Message], n: u64) {
    let mut max = 0;
    for m in got {
        let seq = m.seq.expect("every message carries its seq");
        assert_eq!(m.payload, value(seq), "payload of seq {seq}");
        assert_eq!(m.stream.as_deref(), Some("telemetry"));
        if seq > max {
            assert_eq!(seq, max + 1, "seq {seq} arrived before seq {}", max + 1);
            max = seq;
        }
    }
    assert_eq!(max, n, "{} messages arrived, up to seq {max} of {n}", got.len());
}

fn wait_drained(forwarder: &Forwarder, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !forwarder.drained().unwrap() {
        assert!(Instant::now() < deadline, "{what}: not drained in {WAIT:?}: {:?}", forwarder.progress());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn records_appended_while_the_broker_is_down_arrive_when_it_comes_up() {
    let Some(mut broker) = broker_or_skip("records_appended_while_the_broker_is_down") else { return };
    let sub = Subscriber::start(broker.port(), "sub-down", "t/down");
    broker.stop(); // SIGTERM: the subscriber's session is saved and comes back with the broker
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap();
    let forwarder = Forwarder::spawn(outbox.clone(), forward_options(&broker, "t/down")).unwrap();
    const N: u64 = 500;
    for seq in 1..=N {
        assert_eq!(outbox.append(b"telemetry", &value(seq)).unwrap(), seq);
    }
    let deadline = Instant::now() + WAIT;
    while forwarder.progress().disconnects < 2 {
        assert!(Instant::now() < deadline, "the forwarder never tried the broker");
        std::thread::sleep(Duration::from_millis(10));
    }
    let p = forwarder.progress();
    assert_eq!((p.cursor, p.connected, p.forwarded), (0, false, 0), "nothing sent while down: {p:?}");
    assert!(p.last_error.as_deref().unwrap_or("").contains("refused"), "{p:?}");
    assert_eq!(outbox.stats(b"telemetry").unwrap().records, N, "kept while the broker is away");
    broker.restart().unwrap();
    wait_drained(&forwarder, "after the broker came up");
    let got = sub.wait_for(WAIT, |m| m.len() as u64 >= N);
    check_all_arrived_in_order(&got, N);
    assert_eq!(got.len() as u64, N, "no duplicates: nothing crashed while messages were in flight");
    let progress = forwarder.stop().unwrap();
    assert_eq!((progress.cursor, progress.forwarded), (N, N));
    assert_eq!(outbox.stats(b"telemetry").unwrap().records, 0, "trimmed once acknowledged");
}

#[test]
fn the_broker_killed_and_restarted_mid_drain_loses_nothing() {
    let Some(mut broker) = broker_or_skip("the_broker_killed_and_restarted_mid_drain") else { return };
    let sub = Subscriber::start(broker.port(), "sub-kill", "t/kill");
    // The subscription must be in the broker's persistence file before it is killed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.dir().join("mosquitto.db").exists() {
        assert!(Instant::now() < deadline, "mosquitto never saved its state");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap();
    const N: u64 = 6_000;
    let values: Vec<Vec<u8>> = (1..=N).map(value).collect();
    for chunk in values.chunks(1000) {
        outbox.append_batch(b"telemetry", chunk).unwrap();
    }
    let forwarder = Forwarder::spawn(outbox.clone(), forward_options(&broker, "t/kill")).unwrap();
    // (arrivals before the kill, the stored cursor when the broker died)
    let mut kills = Vec::new();
    for k in 1..=3u64 {
        let target = N * k / 4;
        let deadline = Instant::now() + WAIT;
        while forwarder.progress().cursor < target {
            assert!(Instant::now() < deadline, "kill {k}: stuck at {:?}", forwarder.progress());
            std::thread::sleep(Duration::from_millis(1));
        }
        let arrived = sub.count();
        broker.kill();
        kills.push((arrived, forwarder.progress().cursor));
        std::thread::sleep(Duration::from_millis(150));
        broker.restart().unwrap();
    }
    wait_drained(&forwarder, "after three kills");
    let got = sub.wait_for(WAIT, |m| m.iter().filter_map(|m| m.seq).max() == Some(N));
    check_all_arrived_in_order(&got, N);
    // Duplicates: only after a kill, and only of records not yet acknowledged when it died.
    let mut seen = std::collections::HashSet::new();
    for (i, m) in got.iter().enumerate() {
        let seq = m.seq.unwrap();
        if !seen.insert(seq) {
            let kill = kills.iter().rposition(|&(arrived, _)| arrived <= i);
            let Some(kill) = kill else {
                panic!("seq {seq} arrived twice before the broker was ever killed")
            };
            let cursor_at_kill = kills[kill].1;
            assert!(
                seq > cursor_at_kill,
                "seq {seq} was acknowledged (cursor {cursor_at_kill}) yet sent again"
            );
        }
    }
    let progress = forwarder.stop().unwrap();
    assert_eq!(progress.cursor, N);
    assert!(progress.disconnects >= 3, "{progress:?}");
    eprintln!("{} messages for {N} records over 3 broker kills", got.len());
}

#[test]
fn the_application_appends_from_its_threads_while_the_forwarder_drains() {
    let Some(broker) = broker_or_skip("the_application_appends_while_the_forwarder_drains") else { return };
    let sub = Subscriber::start(broker.port(), "sub-live", "t/live");
    let tmp = tempfile::tempdir().unwrap();
    let outbox =
        Outbox::open(tmp.path(), Options { durability: Durability::EveryN(16), ..options() }).unwrap();
    let forwarder = Forwarder::spawn(outbox.clone(), forward_options(&broker, "t/live")).unwrap();
    const N: u64 = 3_000;
    let writer = {
        let outbox = outbox.clone();
        std::thread::spawn(move || {
            for seq in 1..=N {
                assert_eq!(outbox.append(b"telemetry", &value(seq)).unwrap(), seq);
                // The application's other keys, beside the outbox's.
                if seq % 100 == 0 {
                    outbox.db().lock().unwrap().put(b"latest", &value(seq)).unwrap();
                }
            }
        })
    };
    writer.join().unwrap();
    wait_drained(&forwarder, "live appends");
    let got = sub.wait_for(WAIT, |m| m.len() as u64 >= N);
    check_all_arrived_in_order(&got, N);
    assert_eq!(got.len() as u64, N);
    forwarder.stop().unwrap();
    assert_eq!(outbox.db().lock().unwrap().get(b"latest").unwrap(), Some(value(N)));
}
