//! Store and forward on a gateway: a sensor loop appends readings to an outbox stream while a
//! forwarder thread drains them to an MQTT broker, in the same process over one shared handle.
//! Halfway through, the broker goes away for a while: the readings pile up in the outbox and
//! reach the broker once it is back. A subscriber checks that every reading arrived, in order.
//!
//! `cargo run --example store_and_forward [DIR]` starts its own Mosquitto on a free port of
//! 127.0.0.1 (`scripts/mosquitto.sh` installs it). `cargo test` runs it too (the test at the
//! bottom), and says it skipped when Mosquitto is not installed.

use std::time::{Duration, Instant};

use minivault::forward::{ForwardOptions, Forwarder};
use minivault::outbox::Outbox;
use minivault::{Durability, Options};
use minivault_suite::mosquitto::{Broker, Subscriber};

const SENSORS: u32 = 4;
const TICKS: u32 = 500;

fn run(dir: &std::path::Path, mut broker: Broker) -> Result<(), Box<dyn std::error::Error>> {
    let subscriber = Subscriber::start(broker.port(), "dashboard", "site/7/#");
    // A gateway buffering telemetry: every append durable on return.
    let outbox = Outbox::open(dir, Options { durability: Durability::Always, ..Options::default() })?;
    let mut options = ForwardOptions::new("telemetry", "127.0.0.1", broker.port(), "site/7/telemetry");
    options.max_backoff = Duration::from_millis(500);
    let forwarder = Forwarder::spawn(outbox.clone(), options)?;

    let started = Instant::now();
    let sensor_loop = {
        let outbox = outbox.clone();
        std::thread::spawn(move || -> Result<u64, minivault::Error> {
            let mut appended = 0;
            for tick in 0..TICKS {
                let readings: Vec<String> = (0..SENSORS)
                    .map(|s| {
                        format!(
                            "sensor={s} tick={tick} temp={:.1}",
                            20.0 + s as f32 + (tick % 10) as f32 / 10.0
                        )
                    })
                    .collect();
                // One batch per tick: one sync for the four readings.
                appended += outbox.append_batch(b"telemetry", &readings)?.count() as u64;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(appended)
        })
    };
    // Halfway: the uplink fails for 600 ms.
    while outbox.newest(b"telemetry")? < u64::from(SENSORS * TICKS / 2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.stop();
    let down_at = outbox.newest(b"telemetry")?;
    std::thread::sleep(Duration::from_millis(600));
    let buffered = outbox.newest(b"telemetry")? - forwarder.progress().cursor;
    broker.restart()?;
    println!(
        "the broker was away for 600 ms from reading {down_at}: {buffered} readings waited in the outbox"
    );

    let appended = sensor_loop.join().map_err(|_| "the sensor loop panicked")??;
    while !forwarder.drained()? {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("not drained after 60 s: {:?}", forwarder.progress()).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let progress = forwarder.stop()?;
    println!(
        "sensor loop appended {appended} readings; the broker acknowledged all of them (cursor {}); {} connections failed or were lost",
        progress.cursor, progress.disconnects
    );
    let got = subscriber
        .wait_for(Duration::from_secs(20), |m| m.iter().filter_map(|m| m.seq).max() == Some(appended));
    // At least once, in order: drop duplicates by seq, as a receiver does.
    let mut next = 1;
    for m in &got {
        match m.seq {
            Some(seq) if seq == next => next += 1,
            Some(seq) if seq < next => {} // a duplicate: already seen
            other => return Err(format!("expected seq {next}, got {other:?}").into()),
        }
    }
    if next != appended + 1 {
        return Err(format!("the subscriber saw seqs up to {} of {appended}", next - 1).into());
    }
    println!(
        "the subscriber received {} messages: every reading once in seq order, {} sent again after the outage",
        got.len(),
        got.len() as u64 - appended
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if minivault_suite::mosquitto::binary().is_none() {
        return Err("this example needs Mosquitto (scripts/mosquitto.sh installs it)".into());
    }
    let broker = Broker::start()?;
    match std::env::args_os().nth(1) {
        Some(dir) => run(std::path::Path::new(&dir), broker),
        None => {
            let tmp = tempfile::tempdir()?;
            run(tmp.path(), broker)
        }
    }
}

#[test]
fn store_and_forward_example_runs_to_completion() {
    let Some(broker) = minivault_suite::mosquitto::broker_or_skip("store_and_forward example") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), broker).unwrap();
}
