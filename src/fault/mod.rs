//! The test support shared by `tests/`, the fuzz targets and the benchmark: a device that loses
//! power, the model of acknowledged writes, and the small tools around them.
//!
//! | module | owns |
//! |---|---|
//! | [`storage`] | [`FaultStorage`]: the device model (page cache vs medium, volatile directory, injected errors, capacity, bit flips) |
//! | [`power_cut`] | what a power cut keeps of a file's unsynced change: the narrow model (a torn prefix) and the wide one (sectors or pages in any subset) |
//! | [`model`] | [`History`], [`ModelOp`], [`KvState`], [`visible`]: what a recovered database must hold, and the one way a test writes a [`ModelOp`] to a `Db` |
//! | [`rng`] | [`Rng`]: the one seeded generator |
//! | [`clock`] | [`ManualClock`]: time moved by hand |
//! | [`mem_cursor`] | [`MemCursor`]: an in-memory file for the format readers |
//! | [`targets`] | the fuzz target bodies, replayed by `cargo test` |
//!
//! Everything public is re-exported here, so `minivault_suite::fault::FaultStorage` (and so on)
//! is the path to use. `docs/RELIABILITY.md` lists the tests built on these.

pub mod clock;
pub mod mem_cursor;
pub mod model;
pub mod power_cut;
pub mod rng;
pub mod storage;
pub mod targets;

pub use clock::ManualClock;
pub use mem_cursor::MemCursor;
pub use model::{show, visible, History, KvState, Mismatch, MismatchKind, ModelOp};
pub use power_cut::{Granularity, PowerCutModel};
pub use rng::Rng;
pub use storage::{Call, FaultConfig, FaultError, FaultFile, FaultIo, FaultKind, FaultStats, FaultStorage};
