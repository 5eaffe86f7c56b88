//! # MiniVaultDB's C API
//!
//! `libminivault.so` and `libminivault.a`, declared by `capi/include/minivault.h` (generated
//! from this crate by cbindgen; `tests/header_is_current.rs` fails when the committed header
//! differs from what the code declares). Every function is `minivault_*`, and every call:
//!
//! - returns a [`minivault_status`]: [`MINIVAULT_OK`], a non-negative outcome
//!   ([`MINIVAULT_NOT_FOUND`], [`MINIVAULT_DONE`]) or a negative error code whose message
//!   [`minivault_last_error`] gives (a thread-local string);
//! - checks its pointers and lengths: NULL where a value is needed, or a length with a NULL
//!   buffer, is [`MINIVAULT_ERR_INVALID_ARGUMENT`], never a crash;
//! - catches panics: none unwinds into C; one becomes [`MINIVAULT_ERR_PANIC`].
//!
//! Objects: [`minivault_db`] (a handle, usable from several threads: its calls run one at a
//! time), [`minivault_batch`] (puts and deletes applied atomically), [`minivault_iter`] (a
//! double-ended iterator over a range or prefix, which does not lock the handle between
//! calls). See the README's "C" section for building, linking and an example.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
// The C names (`minivault_db`, `minivault_status`) are the API: the header uses them as they are.
#![allow(non_camel_case_types)]

mod args;
mod batch;
mod db;
mod iter;
mod status;

pub use batch::*;
pub use db::*;
pub use iter::*;
pub use status::*;
