//! Copies the board's memory layout to `OUT_DIR/memory.x`, which cortex-m-rt's `link.x` includes.
//!
//! `MINIVAULT_BOARD` picks the board: `lm3s6965` (the default; `../memory/lm3s6965.x`: 256 KiB
//! flash, 64 KiB RAM) or `netduino2` (`../memory/netduino2.x`: STM32F205, 1 MiB flash, 128 KiB
//! RAM). The layouts live in `memory/`, not as `memory.x` in the workspace root: the linker looks
//! in its working directory (the workspace root) before the search path, so a root `memory.x`
//! would win over the board chosen here.
use std::{env, fs, path::PathBuf};

fn main() {
    let board = env::var("MINIVAULT_BOARD").unwrap_or_else(|_| "lm3s6965".into());
    let layout = match board.as_str() {
        "lm3s6965" => "../memory/lm3s6965.x",
        "netduino2" => "../memory/netduino2.x",
        other => panic!("MINIVAULT_BOARD={other}: expected lm3s6965 or netduino2"),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(layout, out.join("memory.x")).expect("copy the memory layout");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-env=MINIVAULT_BOARD={board}");
    println!("cargo:rerun-if-env-changed=MINIVAULT_BOARD");
    println!("cargo:rerun-if-changed=../memory");
    // Only this binary links defmt; its linker script places the interned strings.
    println!("cargo:rustc-link-arg=-Tdefmt.x");
}
