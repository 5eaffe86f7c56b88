//! Support shared by the top-level `tests/` and `examples/` of MiniVaultDB.
//!
//! The engine lives in `core/` (`minivault-core`) and the POSIX adapter in `posix/`
//! (`minivault`); this package exists so that `cargo test` at the root builds and runs the
//! end-to-end tests and examples against both.

pub use minivault;
pub use minivault_core;

pub mod fault;
pub mod mosquitto;
