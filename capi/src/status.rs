//! Status codes, the thread-local last error message, and [`guard`]: the one place where a
//! call's result (or a panic) becomes a status code.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use minivault_posix::{BatchError, EngineError, Error};

/// What every `minivault_*` call returns: `MINIVAULT_OK` (0), a non-negative outcome
/// (`MINIVAULT_NOT_FOUND`, `MINIVAULT_DONE`) or a negative error code (`MINIVAULT_ERR_*`),
/// whose message `minivault_last_error()` gives.
pub type minivault_status = i32;

/// The call succeeded.
pub const MINIVAULT_OK: minivault_status = 0;
/// A get or TTL lookup found no live key (never written, deleted or expired). Not an error.
pub const MINIVAULT_NOT_FOUND: minivault_status = 1;
/// An iterator has no more entries in this direction. Not an error.
pub const MINIVAULT_DONE: minivault_status = 2;
/// A NULL pointer, a length that no buffer can have, an empty key, a TTL of 0, a range whose
/// end is not after its start, an unknown durability or when-full mode.
pub const MINIVAULT_ERR_INVALID_ARGUMENT: minivault_status = -1;
/// `minivault_get`'s buffer is too short: the value's length is in `*value_len`.
pub const MINIVAULT_ERR_BUFFER_TOO_SMALL: minivault_status = -2;
/// A key (over 1024 bytes), a value (over 1 MiB, or too large for one MemTable) or a batch
/// (over what one MemTable takes) is too large.
pub const MINIVAULT_ERR_TOO_LARGE: minivault_status = -3;
/// An option is out of its range, or the MemTables are too small for a record the database
/// holds (the message says which size opens it).
pub const MINIVAULT_ERR_INVALID_OPTION: minivault_status = -4;
/// Another process (or handle) has the database open.
pub const MINIVAULT_ERR_LOCKED: minivault_status = -5;
/// An I/O error (the message names the OS error).
pub const MINIVAULT_ERR_IO: minivault_status = -6;
/// No space: the database is at its size cap (`max_bytes`, with
/// `MINIVAULT_WHEN_FULL_REFUSE_WRITES`), the file system is full (`ENOSPC`, `EDQUOT`, `EFBIG`),
/// or the database holds as many SSTables or WAL files as it can. Deletes are still taken.
pub const MINIVAULT_ERR_FULL: minivault_status = -7;
/// Data on disk failed a check (the message names the file and offset). Nothing was skipped.
pub const MINIVAULT_ERR_CORRUPTED: minivault_status = -8;
/// A write, flush or sync on a handle opened read-only.
pub const MINIVAULT_ERR_READ_ONLY: minivault_status = -9;
/// An earlier write or sync failed: the handle refuses writes until the database is reopened.
pub const MINIVAULT_ERR_POISONED: minivault_status = -10;
/// The handle behind an iterator was closed.
pub const MINIVAULT_ERR_CLOSED: minivault_status = -11;
/// An internal error (a Rust panic, caught at the boundary). The handle may be unusable.
pub const MINIVAULT_ERR_PANIC: minivault_status = -12;
/// An iterator's snapshot can no longer be read: the MemTable it pinned is gone and no copy of
/// it was kept. Not expected to happen; returned instead of an answer from another moment. It
/// does not poison the handle.
pub const MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE: minivault_status = -13;

/// A failed call: its status code and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: minivault_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: minivault_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(MINIVAULT_ERR_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::new(status_of(&e), e.to_string())
    }
}

impl From<BatchError> for Failure {
    fn from(e: BatchError) -> Self {
        Failure::from(Error::Batch(e))
    }
}

/// The status code of an error of the Rust API.
pub(crate) fn status_of(e: &Error) -> minivault_status {
    match e {
        Error::Locked { .. } => MINIVAULT_ERR_LOCKED,
        Error::Open { source, .. } => io_status(source),
        Error::InvalidOption { .. } => MINIVAULT_ERR_INVALID_OPTION,
        Error::Engine(e) => match e {
            EngineError::Storage(io) => io_status(io),
            EngineError::Corrupted { .. } => MINIVAULT_ERR_CORRUPTED,
            EngineError::EmptyKey | EngineError::InvalidTtl | EngineError::EmptyRange => {
                MINIVAULT_ERR_INVALID_ARGUMENT
            }
            EngineError::KeyTooLarge { .. }
            | EngineError::ValueTooLarge { .. }
            | EngineError::BatchTooLarge { .. } => MINIVAULT_ERR_TOO_LARGE,
            EngineError::BufferTooSmall { .. } => MINIVAULT_ERR_BUFFER_TOO_SMALL,
            EngineError::Full | EngineError::TooManyTables | EngineError::TooManyWals => MINIVAULT_ERR_FULL,
            EngineError::InsufficientMemory { .. }
            | EngineError::MemTableTooSmall { .. }
            | EngineError::MaxBytesTooSmall { .. } => MINIVAULT_ERR_INVALID_OPTION,
            EngineError::Poisoned => MINIVAULT_ERR_POISONED,
            EngineError::ReadOnly => MINIVAULT_ERR_READ_ONLY,
            _ => MINIVAULT_ERR_IO,
        },
        Error::Batch(BatchError::EmptyKey | BatchError::EmptyRange) => MINIVAULT_ERR_INVALID_ARGUMENT,
        Error::Batch(_) => MINIVAULT_ERR_TOO_LARGE,
        Error::SnapshotUnavailable { .. } => MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE,
        _ => MINIVAULT_ERR_IO,
    }
}

/// `MINIVAULT_ERR_FULL` for the OS errors that mean "no space", `MINIVAULT_ERR_IO` otherwise.
fn io_status(e: &io::Error) -> minivault_status {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => MINIVAULT_ERR_FULL,
        _ => MINIVAULT_ERR_IO,
    }
}

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL (paths come from C strings), but a CString must not either.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // try_with: after this thread's destructors ran (a C thread-exit hook calling us) there is
    // no slot left, and a panic here would be outside catch_unwind.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// Runs the body of a `minivault_*` call: its `Ok` status is returned as is; a [`Failure`]
/// becomes its status code and the thread's last error; a panic is caught (it never unwinds
/// into C) and becomes [`MINIVAULT_ERR_PANIC`].
pub(crate) fn guard(body: impl FnOnce() -> Result<minivault_status, Failure>) -> minivault_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_string());
            set_last_error(&format!("internal error (a panic, caught at the C boundary): {what}"));
            MINIVAULT_ERR_PANIC
        }
    }
}

/// The message of the last call on this thread that returned an error (negative status): a
/// NUL-terminated string owned by the library, valid until the next failing call on this
/// thread. An empty string when no call has failed on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn minivault_last_error() -> *const c_char {
    // Reading a thread-local cannot panic here except after the thread's destructors ran; then
    // (and only then) the static empty string is returned.
    LAST_ERROR.try_with(|last| last.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// The name of a status code, e.g. `"MINIVAULT_ERR_LOCKED"`, as a static string
/// (`"MINIVAULT_UNKNOWN_STATUS"` for a value that is none of them). Never NULL.
#[no_mangle]
pub extern "C" fn minivault_status_name(status: minivault_status) -> *const c_char {
    let name = match status {
        MINIVAULT_OK => c"MINIVAULT_OK",
        MINIVAULT_NOT_FOUND => c"MINIVAULT_NOT_FOUND",
        MINIVAULT_DONE => c"MINIVAULT_DONE",
        MINIVAULT_ERR_INVALID_ARGUMENT => c"MINIVAULT_ERR_INVALID_ARGUMENT",
        MINIVAULT_ERR_BUFFER_TOO_SMALL => c"MINIVAULT_ERR_BUFFER_TOO_SMALL",
        MINIVAULT_ERR_TOO_LARGE => c"MINIVAULT_ERR_TOO_LARGE",
        MINIVAULT_ERR_INVALID_OPTION => c"MINIVAULT_ERR_INVALID_OPTION",
        MINIVAULT_ERR_LOCKED => c"MINIVAULT_ERR_LOCKED",
        MINIVAULT_ERR_IO => c"MINIVAULT_ERR_IO",
        MINIVAULT_ERR_FULL => c"MINIVAULT_ERR_FULL",
        MINIVAULT_ERR_CORRUPTED => c"MINIVAULT_ERR_CORRUPTED",
        MINIVAULT_ERR_READ_ONLY => c"MINIVAULT_ERR_READ_ONLY",
        MINIVAULT_ERR_POISONED => c"MINIVAULT_ERR_POISONED",
        MINIVAULT_ERR_CLOSED => c"MINIVAULT_ERR_CLOSED",
        MINIVAULT_ERR_PANIC => c"MINIVAULT_ERR_PANIC",
        MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE => c"MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE",
        _ => c"MINIVAULT_UNKNOWN_STATUS",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last_error() -> String {
        // SAFETY: minivault_last_error returns a valid NUL-terminated string, never NULL.
        unsafe { CStr::from_ptr(minivault_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom {}", 7));
        assert_eq!(status, MINIVAULT_ERR_PANIC);
        assert!(last_error().contains("boom 7"), "{}", last_error());
        let status = guard(|| panic!("static"));
        assert_eq!(status, MINIVAULT_ERR_PANIC);
        assert!(last_error().contains("static"));
    }

    #[test]
    fn a_failure_sets_the_message_of_this_thread_only() {
        assert_eq!(guard(|| Err(Failure::invalid("bad \0 input"))), MINIVAULT_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "bad \\0 input");
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
        assert_eq!(guard(|| Ok(MINIVAULT_NOT_FOUND)), MINIVAULT_NOT_FOUND);
        assert_eq!(last_error(), "bad \\0 input", "a call that did not fail keeps the last message");
    }

    #[test]
    fn errors_map_to_their_codes() {
        let enospc = Error::Engine(EngineError::Storage(io::Error::from_raw_os_error(libc::ENOSPC)));
        assert_eq!(status_of(&enospc), MINIVAULT_ERR_FULL);
        let eio = Error::Engine(EngineError::Storage(io::Error::from_raw_os_error(libc::EIO)));
        assert_eq!(status_of(&eio), MINIVAULT_ERR_IO);
        assert_eq!(status_of(&Error::Engine(EngineError::ReadOnly)), MINIVAULT_ERR_READ_ONLY);
        assert_eq!(status_of(&Error::Engine(EngineError::Poisoned)), MINIVAULT_ERR_POISONED);
        assert_eq!(status_of(&Error::Engine(EngineError::Full)), MINIVAULT_ERR_FULL);
        assert_eq!(status_of(&Error::Engine(EngineError::EmptyRange)), MINIVAULT_ERR_INVALID_ARGUMENT);
        assert_eq!(status_of(&Error::Batch(BatchError::Full)), MINIVAULT_ERR_TOO_LARGE);
        assert_eq!(status_of(&Error::Locked { dir: "d".into() }), MINIVAULT_ERR_LOCKED);
        assert_eq!(
            status_of(&Error::SnapshotUnavailable { generation: 3 }),
            MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE
        );
    }

    #[test]
    fn every_status_has_a_name() {
        for status in MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE..=MINIVAULT_DONE {
            // SAFETY: minivault_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(minivault_status_name(status)) }.to_str().unwrap();
            assert!(name.starts_with("MINIVAULT_") && name != "MINIVAULT_UNKNOWN_STATUS", "{status}");
        }
    }
}
