//! The stack's high-water mark, read from the paint left by cortex-m-rt's `paint-stack` feature.
//!
//! At reset, cortex-m-rt fills the RAM between `_stack_end` (the end of `.bss`/`.uninit`) and
//! `_stack_start` (the top of RAM) with [`PAINT`]. The stack grows down from the top; the lowest
//! word that no longer holds the paint is as deep as it ever went. Nothing guards the bottom: a
//! stack that outgrows the region runs silently into `.bss` (the engine's buffers), so
//! [`Usage::overflowed`] is the check to keep.

/// The word cortex-m-rt paints the stack with (`cortex_m_rt::STACK_PAINT_VALUE`).
pub const PAINT: u32 = 0xCCCC_CCCC;

/// Stack use measured by [`usage`].
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Usage {
    /// Bytes between the end of static RAM and the top of RAM.
    pub region: usize,
    /// Bytes ever written below the top of RAM.
    pub high_water: usize,
}

impl Usage {
    /// True when no painted word is left: the stack may have run into static RAM.
    pub fn overflowed(&self) -> bool {
        self.high_water >= self.region
    }
}

extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// Scans the painted region from the bottom for the first word that lost its paint.
pub fn usage() -> Usage {
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: `_stack_end.._stack_start` is RAM that cortex-m-rt's linker script reserves for
        // the stack; `addr` is 4-aligned (the script asserts both ends are) and inside it. A
        // volatile read of a `u32` there has no side effects; no reference to it is created.
        #[allow(unsafe_code)]
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != PAINT {
            break;
        }
        addr += 4;
    }
    Usage { region: top - bottom, high_water: top - addr }
}
