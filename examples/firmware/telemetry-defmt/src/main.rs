//! The telemetry firmware built with `minivault-core`'s `defmt` feature: the engine's events
//! (flush, WAL rotation, compaction, recovery, corruption) and the report go out as defmt frames
//! on semihosting stdout. Decode them on the host:
//! `qemu-system-arm ... -kernel <elf> | defmt-print -e <elf>`.
#![no_std]
#![no_main]

use cortex_m::singleton;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use defmt_semihosting as _; // the global defmt logger: semihosting stdout
use panic_semihosting as _;

use app::{
    DB_BYTES, ENGINE_RAM_BYTES, MEMTABLE_BYTES, OPEN_STACK_LOWER_BOUND, SCRATCH_BYTES, STORAGE_BYTES,
    STORAGE_FILES,
};

/// The board this image was linked for (`MINIVAULT_BOARD` at build time).
const BOARD: &str = env!("MINIVAULT_BOARD");

#[entry]
fn main() -> ! {
    let flash = singleton!(FLASH: [u8; STORAGE_BYTES] = [0; STORAGE_BYTES]).unwrap();
    let mem_a = singleton!(MEM_A: [u8; MEMTABLE_BYTES] = [0; MEMTABLE_BYTES]).unwrap();
    let mem_b = singleton!(MEM_B: [u8; MEMTABLE_BYTES] = [0; MEMTABLE_BYTES]).unwrap();
    let scratch = singleton!(SCRATCH: [u8; SCRATCH_BYTES] = [0; SCRATCH_BYTES]).unwrap();

    defmt::println!(
        "minivault firmware (defmt) on {=str}: engine RAM {=usize} B = 2 x {=usize} B MemTables + {=usize} B compaction scratch + {=usize} B storage ({=usize} files); Db value {=usize} B",
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
        defmt::println!(
            "FAIL: stack region {=usize} B < {=usize} B (2 x the Db value), the least Db::open needs: it would overflow",
            region,
            OPEN_STACK_LOWER_BOUND
        );
        exit(false);
    }

    let result = app::run(flash, mem_a, mem_b, scratch);
    let stack = app::stack::usage();
    defmt::println!("stack: high-water {=usize} B of {=usize} B", stack.high_water, stack.region);
    match result {
        Ok(_) if stack.overflowed() => defmt::println!("FAIL: the stack ran into static RAM"),
        Ok(r) => {
            defmt::println!("{}", r);
            defmt::println!("PASS");
            exit(true);
        }
        Err(f) => defmt::println!("FAIL: {}", f),
    }
    exit(false)
}

fn exit(success: bool) -> ! {
    debug::exit(if success { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}
