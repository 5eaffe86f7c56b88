//! Checks of what a C caller passes: every pointer is checked for NULL and every length for
//! what a buffer can hold before a slice or reference is made of it.

use std::ptr::NonNull;
use std::slice;

use crate::status::Failure;

/// The `len` bytes at `ptr` (`what` names the argument in the error). `ptr` may be NULL only
/// when `len` is 0.
///
/// # Safety
/// When `len` > 0 and `ptr` is not NULL, `ptr` must point to `len` readable bytes that stay
/// unchanged while the slice lives.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("{what}'s length {len} is larger than any buffer")));
    }
    // SAFETY: ptr is non-NULL and, by this function's contract, valid for len bytes; len fits
    // in an isize, as slice::from_raw_parts requires.
    Ok(unsafe { slice::from_raw_parts(ptr, len) })
}

/// A caller's output buffer of `cap` bytes at `ptr` (NULL only when `cap` is 0), checked;
/// [`Buffer::fill`] copies into it without ever reading it (it may be uninitialised).
pub(crate) struct Buffer {
    ptr: *mut u8,
    cap: usize,
}

impl Buffer {
    /// # Safety
    /// When `cap` > 0 and `ptr` is not NULL, `ptr` must be valid for writing `cap` bytes while
    /// the `Buffer` lives, and not overlap any slice given to [`Buffer::fill`].
    pub(crate) unsafe fn new(ptr: *mut u8, cap: usize, what: &str) -> Result<Self, Failure> {
        if cap > 0 && ptr.is_null() {
            return Err(Failure::invalid(format!("{what} is NULL but its length is {cap}")));
        }
        if cap > isize::MAX as usize {
            return Err(Failure::invalid(format!("{what}'s length {cap} is larger than any buffer")));
        }
        Ok(Buffer { ptr, cap })
    }

    /// Copies `data` to the start of the buffer when it fits; false (nothing written) when not.
    pub(crate) fn fill(&mut self, data: &[u8]) -> bool {
        if data.len() > self.cap {
            return false;
        }
        if !data.is_empty() {
            // SAFETY: Buffer::new's contract: ptr is valid for cap >= data.len() bytes of
            // writes and does not overlap data; data.len() > 0 means cap > 0, so ptr is not NULL.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, data.len()) };
        }
        true
    }
}

/// `*ptr`, or an error when `ptr` is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a valid, initialised `T` that is not written while the
/// reference lives.
pub(crate) unsafe fn reference<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: by this function's contract, a non-NULL ptr points to a valid T.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// A checked out-parameter: a non-NULL pointer the call writes its result through.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// `ptr` as an out-parameter, or an error when it is NULL.
    ///
    /// # Safety
    /// A non-NULL `ptr` must be aligned and valid for writing a `T` while the `Out` lives (what
    /// it points to may be uninitialised: it is only written, never read).
    pub(crate) unsafe fn new(ptr: *mut T, what: &str) -> Result<Self, Failure> {
        NonNull::new(ptr).map(Out).ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
    }

    /// Stores `value` (without reading or dropping what was there).
    pub(crate) fn write(&mut self, value: T) {
        // SAFETY: Out::new's contract: the pointer is aligned and valid for writes.
        unsafe { self.0.as_ptr().write(value) }
    }
}
