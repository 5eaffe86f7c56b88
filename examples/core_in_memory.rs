//! The core engine with no operating system underneath: `minivault-core` on in-memory storage,
//! with every byte of memory given to it up front, as on a microcontroller.
//!
//! Everything in `firmware_main` uses only `core` and `minivault_core`: no `std`, no allocator.
//! (The firmware build for a real Cortex-M lives in `examples/firmware/`; this one runs on the
//! host so that `cargo test` exercises the same code path.)

use core::sync::atomic::{AtomicU32, Ordering};

use minivault_core::{Config, Db, MemStorage, Storage, SyncPolicy};

/// Flash-like storage: 128 KiB cut into 8 files of 16 KiB. Each file must be able to hold the
/// largest SSTable, which after compaction holds all live data (here ~12 KiB), and there must be
/// files for two WALs, the tables and one table being written.
const STORAGE_BYTES: usize = 128 * 1024;
/// Each of the two MemTables gets 4 KiB.
const MEMTABLE_BYTES: usize = 4 * 1024;

static TICKS: AtomicU32 = AtomicU32::new(0);

/// A monotonic "RTC": a firmware would read a hardware timer here.
fn now() -> u64 {
    TICKS.fetch_add(1, Ordering::Relaxed) as u64 + 1
}

/// Writes readings, simulates a reboot by reopening from the same storage, and checks them.
/// Returns the number of readings verified.
fn firmware_main(flash: &mut [u8], mem_a: &mut [u8], mem_b: &mut [u8]) -> Result<u32, &'static str> {
    let storage: MemStorage<&mut [u8], 8> = MemStorage::new(flash);
    let config = Config::with_sync(SyncPolicy::EveryWrite);
    let mut db =
        Db::open(storage, now as fn() -> u64, [&mut *mem_a, &mut *mem_b], config).map_err(|_| "open")?;
    const N: u32 = 300;
    for i in 0..N {
        let key = i.to_be_bytes();
        let value = [i as u8; 24];
        db.put(&key, &value).map_err(|_| "put")?;
    }
    db.delete(&7u32.to_be_bytes()).map_err(|_| "delete")?;
    let (mut storage, closed) = db.close();
    closed.map_err(|_| "close")?;
    let mut files = 0;
    storage.list(&mut |_| files += 1).map_err(|_| "list")?;
    if files == 0 {
        return Err("nothing on storage");
    }

    // "Reboot": same storage, fresh engine state.
    let mut db = Db::open(storage, now as fn() -> u64, [mem_a, mem_b], config).map_err(|_| "reopen")?;
    let mut buf = [0u8; 32];
    let mut verified = 0;
    for i in 0..N {
        let got = db.get(&i.to_be_bytes(), &mut buf).map_err(|_| "get")?;
        match (i, got) {
            (7, None) => verified += 1,
            (7, Some(_)) => return Err("deleted key came back"),
            (_, Some(v)) if v == [i as u8; 24] => verified += 1,
            _ => return Err("wrong or missing value"),
        }
    }
    Ok(verified)
}

fn main() {
    let mut flash = [0u8; STORAGE_BYTES];
    let mut a = [0u8; MEMTABLE_BYTES];
    let mut b = [0u8; MEMTABLE_BYTES];
    match firmware_main(&mut flash, &mut a, &mut b) {
        Ok(n) => println!("{n} readings verified after a simulated reboot"),
        Err(e) => {
            eprintln!("failed: {e}");
            std::process::exit(1);
        }
    }
}

#[test]
fn core_in_memory_example_verifies_every_reading() {
    let mut flash = vec![0u8; STORAGE_BYTES];
    let (mut a, mut b) = (vec![0u8; MEMTABLE_BYTES], vec![0u8; MEMTABLE_BYTES]);
    assert_eq!(firmware_main(&mut flash, &mut a, &mut b), Ok(300));
}
