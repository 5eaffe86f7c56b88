//! An edge telemetry buffer on Linux: sensor readings kept for a limited time (TTL), flushed to
//! SSTables, and read back after the process "restarts" (a reopen of the same directory).
//!
//! Run it with `cargo run --example telemetry_buffer [DIR]` (default: a fresh temporary
//! directory). `cargo test` runs it too, through the test at the bottom.

use std::time::Duration;

use minivault::{Db, Durability, Options};

/// One reading per sensor per tick, as `sensor/<id>/<tick>` → little-endian f32.
fn reading_key(sensor: u32, tick: u32) -> Vec<u8> {
    format!("sensor/{sensor:02}/{tick:06}").into_bytes()
}

fn reading_value(sensor: u32, tick: u32) -> f32 {
    20.0 + sensor as f32 + (tick % 10) as f32 / 10.0
}

fn run(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    const SENSORS: u32 = 8;
    const TICKS: u32 = 500;
    // A gateway samples fast: sync every 64 writes, and explicitly before "shutdown".
    let options =
        Options { memtable_bytes: 64 * 1024, durability: Durability::EveryN(64), ..Options::default() };
    {
        let db = Db::open_with(dir, options)?;
        for tick in 0..TICKS {
            for sensor in 0..SENSORS {
                let v = reading_value(sensor, tick).to_le_bytes();
                // Readings are only useful for an hour; the latest value per sensor forever.
                db.put_with_ttl(&reading_key(sensor, tick), &v, Duration::from_secs(3600))?;
                db.put(format!("latest/{sensor:02}").as_bytes(), &v)?;
            }
        }
        // A short-lived alarm that expires before we read it back.
        db.put_with_ttl(b"alarm/overheat", b"1", Duration::from_millis(50))?;
        db.flush()?;
        let s = db.stats();
        println!(
            "wrote {} readings: {} SSTables ({} bytes), {} flushes",
            SENSORS * TICKS,
            s.tables,
            s.table_bytes,
            s.flushes
        );
    } // dropped: as if the process stopped

    std::thread::sleep(Duration::from_millis(60));
    let db = Db::open_with(dir, options)?;
    for sensor in 0..SENSORS {
        for tick in (0..TICKS).step_by(7) {
            let got = db.get(&reading_key(sensor, tick))?.ok_or("reading lost")?;
            let v = f32::from_le_bytes(got.as_slice().try_into()?);
            assert_eq!(v, reading_value(sensor, tick));
        }
        let latest = db.get(format!("latest/{sensor:02}").as_bytes())?.ok_or("latest lost")?;
        assert_eq!(latest, reading_value(sensor, TICKS - 1).to_le_bytes());
    }
    assert_eq!(db.get(b"alarm/overheat")?, None, "the alarm expired");
    println!("reopened: every reading checked, the expired alarm is gone");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args_os().nth(1) {
        Some(dir) => run(std::path::Path::new(&dir)),
        None => {
            let tmp = tempfile::tempdir()?;
            run(tmp.path())
        }
    }
}

#[test]
fn telemetry_buffer_example_runs_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path()).unwrap();
}
