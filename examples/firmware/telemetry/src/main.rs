//! MiniVaultDB on a Cortex-M3: the board half of the telemetry example.
//!
//! Takes the engine's memory from static RAM once ([`cortex_m::singleton!`], no `unsafe` here),
//! runs [`app::run`], prints the report and the stack's high-water mark through semihosting,
//! and exits QEMU with `EXIT_SUCCESS` only when every check passed (`EXIT_FAILURE`, or a panic
//! through panic-semihosting, otherwise).
#![no_std]
#![no_main]

use cortex_m::singleton;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _; // a panic prints its message and exits with a failure code

use app::{
    DB_BYTES, ENGINE_RAM_BYTES, MEMTABLE_BYTES, OPEN_STACK_LOWER_BOUND, SCRATCH_BYTES, STORAGE_BYTES,
    STORAGE_FILES,
};

/// The board this image was linked for (`MINIVAULT_BOARD` at build time).
const BOARD: &str = env!("MINIVAULT_BOARD");

#[entry]
fn main() -> ! {
    // `singleton!` hands out each static buffer once; `None` (never here) would mean a second call.
    let flash = singleton!(FLASH: [u8; STORAGE_BYTES] = [0; STORAGE_BYTES]).unwrap();
    let mem_a = singleton!(MEM_A: [u8; MEMTABLE_BYTES] = [0; MEMTABLE_BYTES]).unwrap();
    let mem_b = singleton!(MEM_B: [u8; MEMTABLE_BYTES] = [0; MEMTABLE_BYTES]).unwrap();
    let scratch = singleton!(SCRATCH: [u8; SCRATCH_BYTES] = [0; SCRATCH_BYTES]).unwrap();

    hprintln!(
        "minivault firmware on {}: engine RAM {} B = 2 x {} B MemTables + {} B compaction scratch + {} B storage ({} files); Db value {} B",
        BOARD,
        ENGINE_RAM_BYTES,
        MEMTABLE_BYTES,
        SCRATCH_BYTES,
        STORAGE_BYTES,
        STORAGE_FILES,
        DB_BYTES
    );
    let region = app::stack::usage().region;
    if region < OPEN_STACK_LOWER_BOUND {
        hprintln!(
            "FAIL: stack region {} B < {} B (2 x the Db value), the least Db::open needs: it would overflow",
            region,
            OPEN_STACK_LOWER_BOUND
        );
        exit(false);
    }

    let result = app::run(flash, mem_a, mem_b, scratch);
    let stack = app::stack::usage();
    hprintln!("stack: high-water {} B of {} B", stack.high_water, stack.region);
    match result {
        Ok(_) if stack.overflowed() => hprintln!("FAIL: the stack ran into static RAM"),
        Ok(r) => {
            hprintln!(
                "wrote {} records; {} flushes, {} compactions, {} tables ({} B) before the flush",
                r.writes,
                r.after_writes.flushes,
                r.after_writes.compactions,
                r.after_writes.tables,
                r.after_writes.table_bytes
            );
            hprintln!(
                "storage after close: {} files, {} B; largest file seen {} B of {} B",
                r.files,
                r.stored_bytes,
                r.largest_file,
                STORAGE_BYTES / STORAGE_FILES
            );
            hprintln!("after 2 reboots: {} keys verified; {:?}", r.verified, r.after_reboot);
            hprintln!("PASS");
            exit(true);
        }
        Err(f) => hprintln!("FAIL: {:?}", f),
    }
    exit(false)
}

fn exit(success: bool) -> ! {
    debug::exit(if success { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}
