//! Engine event logging through `defmt`, when the `defmt` feature is on; nothing at all when off.
//!
//! [`event!`](crate::log::event) takes a `defmt` format string and arguments. Without the
//! feature it expands to nothing (the arguments are not evaluated), so logging costs no code
//! and no time in builds that do not ask for it.

#[cfg(feature = "defmt")]
macro_rules! event {
    ($($arg:tt)*) => { defmt::info!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! event {
    ($($arg:tt)*) => {};
}

#[cfg(feature = "defmt")]
macro_rules! warn_event {
    ($($arg:tt)*) => { defmt::warn!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! warn_event {
    ($($arg:tt)*) => {};
}

pub(crate) use event;
pub(crate) use warn_event;
