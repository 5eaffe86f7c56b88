//! The forwarder (`minivault::forward`, a thread over the application's outbox) against a real
//! Mosquitto broker (`minivault_suite::mosquitto`: started on 127.0.0.1 on a free port, stopped
//! after), with a subscriber on a persistent session recording what arrives:
//!
//! - records appended while the broker is down arrive once it is up, in order, each once;
//! - the broker stopped (`SIGTERM`) and restarted three times mid-drain: every record arrives at
//!   least once, the first arrivals in seq order, and the forwarder sends a record twice only
//!   after an outage and only when the broker had not acknowledged it;
//! - the same with the broker killed (`SIGKILL`): the same, except that Mosquitto loses what it
//!   had acknowledged and not yet delivered when it died (its persistence is a snapshot every
//!   second); the test checks that every record missing is one the broker had acknowledged;
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
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
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

/// How the broker goes away mid-drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// `SIGKILL`: Mosquitto loses what it held only in memory (its persistence is a snapshot
    /// every second), acknowledged or not.
    Kill,
    /// `SIGTERM`: Mosquitto saves its state and stops.
    Stop,
}

/// What one outage looked like from the test.
#[derive(Debug)]
struct Seen {
    /// Messages received when the broker went away.
    arrived: usize,
    /// The highest seq received by then.
    arrived_max: u64,
    /// The forwarder's stored cursor once it noticed: every record the broker acknowledged.
    acked: u64,
}

/// Drains 6,000 records while the broker goes away three times, and checks what arrived.
fn outages_mid_drain(test: &str, outage: Outage) {
    let Some(mut broker) = broker_or_skip(test) else { return };
    let topic = format!("t/{test}");
    let sub = Subscriber::start(broker.port(), test, &topic);
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
    let forwarder = Forwarder::spawn(outbox.clone(), forward_options(&broker, &topic)).unwrap();
    let mut seen = Vec::new();
    for k in 1..=3u64 {
        let target = N * k / 4;
        let deadline = Instant::now() + WAIT;
        while forwarder.progress().cursor < target {
            assert!(Instant::now() < deadline, "outage {k}: stuck at {:?}", forwarder.progress());
            std::thread::sleep(Duration::from_millis(1));
        }
        let disconnects = forwarder.progress().disconnects;
        let received = sub.received();
        let arrived_max = received.iter().filter_map(|m| m.seq).max().unwrap_or(0);
        match outage {
            Outage::Kill => broker.kill(),
            Outage::Stop => broker.stop(),
        }
        let deadline = Instant::now() + WAIT;
        while forwarder.progress().disconnects == disconnects {
            assert!(Instant::now() < deadline, "the forwarder never noticed outage {k}");
            std::thread::sleep(Duration::from_millis(1));
        }
        seen.push(Seen { arrived: received.len(), arrived_max, acked: forwarder.progress().cursor });
        std::thread::sleep(Duration::from_millis(150));
        broker.restart().unwrap();
    }
    wait_drained(&forwarder, "after three outages");
    let mut got = sub.wait_for(WAIT, |m| m.iter().filter_map(|m| m.seq).max() == Some(N));
    std::thread::sleep(Duration::from_millis(300));
    got.extend(sub.received().into_iter().skip(got.len()));
    // First arrivals in seq order; payloads right.
    let mut max = 0;
    let mut arrived = std::collections::HashSet::new();
    for m in &got {
        let seq = m.seq.expect("every message carries its seq");
        assert_eq!(m.payload, value(seq), "payload of seq {seq}");
        if seq > max {
            max = seq;
        } else {
            assert!(arrived.contains(&seq), "seq {seq} arrived after seq {max}, out of order");
        }
        arrived.insert(seq);
    }
    // Lost: only records the broker had acknowledged when it was killed and had not delivered.
    let lost: Vec<u64> = (1..=N).filter(|s| !arrived.contains(s)).collect();
    for &m in &lost {
        assert!(
            outage == Outage::Kill && seen.iter().any(|o| o.arrived_max < m && m <= o.acked),
            "seq {m} never arrived, and the broker had not acknowledged it before an outage: {seen:?}"
        );
    }
    // Sent twice by the forwarder (not the broker's own resend, flagged DUP): only after an
    // outage, and only records not yet acknowledged when the broker went away.
    let mut first = std::collections::HashSet::new();
    for (i, m) in got.iter().enumerate() {
        let seq = m.seq.unwrap_or(0);
        if !first.insert(seq) && !m.dup {
            let Some(o) = seen.iter().rev().find(|o| o.arrived <= i) else {
                panic!("seq {seq} arrived twice before the broker ever went away")
            };
            assert!(seq > o.acked, "seq {seq} was acknowledged (cursor {}) yet sent again", o.acked);
        }
    }
    let progress = forwarder.stop().unwrap();
    assert_eq!(progress.cursor, N);
    assert!(progress.disconnects >= 3, "{progress:?}");
    eprintln!(
        "{test}: {} messages for {N} records over 3 outages ({outage:?}); {} acknowledged by the broker and lost with it",
        got.len(),
        lost.len()
    );
}

#[test]
fn the_broker_stopped_and_restarted_mid_drain_loses_nothing() {
    outages_mid_drain("broker_stopped_mid_drain", Outage::Stop);
}

/// Mosquitto killed with `SIGKILL` loses what it had acknowledged and not yet delivered (its
/// persistence is a snapshot, not a log): the forwarder cannot know, and the test checks that
/// nothing else is lost.
#[test]
fn the_broker_killed_and_restarted_mid_drain_loses_only_what_it_had_acknowledged() {
    outages_mid_drain("broker_killed_mid_drain", Outage::Kill);
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
                    outbox.db().put(b"latest", &value(seq)).unwrap();
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
    assert_eq!(outbox.db().get(b"latest").unwrap(), Some(value(N)));
}
