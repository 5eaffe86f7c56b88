//! The libc calls of the POSIX storage, each wrapped once: every `unsafe` block of the storage
//! lives here, beside its `SAFETY` argument, and a call that a signal can interrupt is retried
//! by the one helper [`retry_on_eintr`].
//!
//! `fsync` and `fdatasync` are deliberately not retried (see the [`super`] module docs): after a
//! failed sync the kernel may have dropped the dirty pages, so a retry could report a false
//! success.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::page_cache::FileKey;

/// Permission bits for files the storage creates (before the process umask).
const FILE_MODE: libc::c_uint = 0o644;

/// Calls `call` until it returns something other than a failure with `EINTR`.
///
/// `call` follows the libc convention: a negative result is a failure whose reason is in
/// `errno`. Returns the first non-negative result, or the first failure that is not `EINTR`.
pub(crate) fn retry_on_eintr<T: PartialOrd + Default>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let result = call();
        if result >= T::default() {
            return Ok(result);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A libc call's `0` / `-1` result as an `io::Result`, without retrying.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `openat(dir, name, flags | O_CLOEXEC, 0644)`.
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let fd = retry_on_eintr(|| {
        // SAFETY: `dir` is an open directory fd borrowed for the whole call, `name` is a
        // NUL-terminated string that outlives the call, and the variadic mode argument is the
        // `c_uint` that `openat` reads when `O_CREAT` is set.
        unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, FILE_MODE) }
    })?;
    // SAFETY: `openat` just returned this descriptor, so it is open and nothing else owns it;
    // the `OwnedFd` becomes its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat` of an open file.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor borrowed for the whole call, and `stat` points to
    // writable memory the size of a `libc::stat`.
    check(unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) })?;
    // SAFETY: `fstat` returned 0, so it filled in the whole `stat` structure.
    Ok(unsafe { stat.assume_init() })
}

/// `fstatat(dir, name)`: the status of the file `name` in `dir`, following no open handle.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is an open directory fd borrowed for the whole call, `name` is a
    // NUL-terminated string that outlives the call, and `stat` points to writable memory the
    // size of a `libc::stat`.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), 0) })?;
    // SAFETY: `fstatat` returned 0, so it filled in the whole `stat` structure.
    Ok(unsafe { stat.assume_init() })
}

/// The size in bytes a `stat` reports.
pub(crate) fn size_from_stat(stat: &libc::stat) -> io::Result<u64> {
    u64::try_from(stat.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative file size from stat"))
}

/// The size of an open file.
pub(crate) fn fstat_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    size_from_stat(&fstat(fd)?)
}

/// The identity (device, inode) of an open file: the page cache keys pages by it.
pub(crate) fn fstat_key(fd: BorrowedFd<'_>) -> io::Result<FileKey> {
    let stat = fstat(fd)?;
    // `dev_t` and `ino_t` are narrower than 64 bits on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

/// One `pread` at `offset` (retried when a signal interrupts it); returns the bytes read, 0 at
/// the end of the file.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let at = to_off_t(offset)?;
    let n = retry_on_eintr(|| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and `fd` is
        // an open descriptor borrowed for the whole call.
        unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), at) }
    })?;
    // Non-negative, and at most `buf.len()`.
    Ok(n.unsigned_abs())
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        match pread(fd, rest, offset.saturating_add(done as u64))? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Writes all of `buf` at `offset` with `pwrite`, retrying on `EINTR` and short writes.
///
/// Returns how many bytes reached the OS, and the first error if it stopped early.
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> (usize, io::Result<()>) {
    let mut written = 0;
    while let Some(rest) = buf.get(written..).filter(|rest| !rest.is_empty()) {
        let at = match to_off_t(offset.saturating_add(written as u64)) {
            Ok(at) => at,
            Err(err) => return (written, Err(err)),
        };
        let n = retry_on_eintr(|| {
            // SAFETY: `rest` is valid for reads of `rest.len()` bytes for the whole call, and
            // `fd` is an open descriptor borrowed for the whole call.
            unsafe { libc::pwrite(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), at) }
        });
        match n {
            Ok(0) => {
                let err = io::Error::new(io::ErrorKind::WriteZero, "pwrite wrote no bytes");
                return (written, Err(err));
            }
            Ok(n) => written = written.saturating_add(n.unsigned_abs().min(rest.len())),
            Err(err) => return (written, Err(err)),
        }
    }
    (written, Ok(()))
}

/// `ftruncate`: sets the file's length.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = to_off_t(len)?;
    // SAFETY: `fd` is an open descriptor borrowed for the whole call.
    retry_on_eintr(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// Makes the file's data and length durable: `fdatasync` where it exists, else `fsync`.
/// Never retried: see the module documentation.
pub(crate) fn sync_data(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `fd` is an open descriptor borrowed for the whole call.
    let rc = unsafe { libc::fdatasync(fd.as_raw_fd()) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `fd` is an open descriptor borrowed for the whole call.
    let rc = unsafe { libc::fsync(fd.as_raw_fd()) };
    check(rc)
}

/// Starts the writeback of the file's dirty pages in `offset..offset + len` without waiting for
/// it (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere). Durability is not
/// changed: a hint that keeps a large write from leaving hundreds of megabytes dirty for the next
/// `fdatasync` (this file's or, through the file system's journal, another's) to wait for.
pub(crate) fn start_writeback(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // `off64_t` on every Linux target (`off_t` is 32 bits on 32-bit ARM).
        let too_far = || invalid_input("writeback range past the largest file offset");
        let offset = libc::off64_t::try_from(offset).map_err(|_| too_far())?;
        let len = libc::off64_t::try_from(len).map_err(|_| too_far())?;
        // SAFETY: `fd` is an open descriptor borrowed for the whole call; the call takes no
        // pointers.
        check(unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (fd, offset, len);
        Ok(())
    }
}

/// A shared mapping of part of a file, for reading and writing: its pages are the kernel's page
/// cache of the file, so bytes copied in have reached the OS just as a `pwrite` hands them over
/// (they outlive the process, and an `fsync` or `fdatasync` of the file writes them), without a
/// system call. Linux and Android only, where those syncs cover a shared mapping's pages.
///
/// Touching a page of a mapping past the end of its file raises `SIGBUS`, which ends the process.
/// A `SharedMap` is therefore made only within the file's size, and its owner must drop it before
/// the file can shrink: [`super::PosixFile`] drops it before every truncate (a create with
/// `O_TRUNC`, the other way, makes a new handle, which has no mapping), and no other process
/// writes in a database's locked directory. A fault the file system cannot serve raises `SIGBUS`
/// too, where a `pwrite` would have returned the error: space it would allocate on a write fault
/// (copy-on-write file systems such as btrfs, emulated preallocation), which is why only
/// [`maps_safely`] file systems are mapped, whose preallocated blocks are allocated already; and
/// on those, a file system that shut down after an error, or a page the device fails to read
/// back. The process then ends instead of refusing writes (nothing acknowledged is lost).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) struct SharedMap {
    ptr: std::ptr::NonNull<u8>,
    /// The file offset of the first mapped byte (a multiple of [`os_page_size`]).
    start: u64,
    len: usize,
}

// SAFETY: the mapping is memory that this value alone owns (its address is never handed out), so
// moving it to another thread moves that ownership, as for a `Vec`.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe impl Send for SharedMap {}

// SAFETY: through `&SharedMap` only its start and length are read; the mapped bytes are written
// through `&mut self` alone.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe impl Sync for SharedMap {}

/// True when `fd`'s file system allocates a preallocated file's blocks at `fallocate`, so that a
/// write fault in a [`SharedMap`] of them allocates nothing and cannot fail for want of space:
/// ext2/3/4, XFS and tmpfs (`fstatfs`). Any other (or a failed `fstatfs`): `false`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn maps_safely(fd: BorrowedFd<'_>) -> bool {
    const EXT4: i64 = 0xef53;
    const XFS: i64 = 0x5846_5342;
    const TMPFS: i64 = 0x0102_1994;
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `fd` is an open descriptor borrowed for the whole call, and `st` is valid for
    // writes of one `statfs`, which the call fills on success.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `fstatfs` returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field's type differs between targets (a signed or unsigned word); the magic numbers
    // compared are all positive and below 2^31, so a sign-extending cast compares them right.
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    matches!(kind, EXT4 | XFS | TMPFS)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl SharedMap {
    /// Maps `len` bytes (at least 1) of `fd` from `start`, a multiple of [`os_page_size`]; the
    /// file must be at least `start + len` bytes long, and stay so while the map lives.
    pub(crate) fn new(fd: BorrowedFd<'_>, start: u64, len: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(start).map_err(|_| invalid_input("map offset past off_t"))?;
        if len == 0 || !start.is_multiple_of(os_page_size()) {
            return Err(invalid_input("an empty map, or one that does not start at a page"));
        }
        // SAFETY: a new mapping at an address the kernel chooses (the hint is null, no
        // MAP_FIXED), so no memory of the process is replaced; `fd` is an open descriptor
        // borrowed for the whole call, and the call keeps its own reference to the file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedMap { ptr, start, len })
    }

    /// True when the file bytes `from..to` are all mapped.
    pub(crate) fn holds(&self, from: u64, to: u64) -> bool {
        self.start <= from && from <= to && to <= self.start + self.len as u64
    }

    /// Copies `bytes` to file offset `at`; `false` (nothing copied) when the map does not hold
    /// all of `at..at + bytes.len()`.
    pub(crate) fn copy_in(&mut self, at: u64, bytes: &[u8]) -> bool {
        let Some(to) = at.checked_add(bytes.len() as u64) else { return false };
        if !self.holds(at, to) {
            return false;
        }
        // `at - start` is below `len`, a usize.
        let offset = (at - self.start) as usize;
        // SAFETY: `offset + bytes.len() <= len` (checked above), so the destination lies within
        // the mapping, which is valid for writes of `len` bytes while `self` lives and lies
        // within the file (made within its size, which does not shrink while it lives: see the
        // type's documentation), so no access faults; `bytes` cannot overlap it, as the
        // mapping's address is never handed out.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) };
        true
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly a mapping `mmap` made and nothing unmapped since,
        // and no reference into it outlives `self`. A failure (only for bad arguments) leaves
        // the pages mapped: nothing to undo.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The size of the operating system's memory pages (`sysconf(_SC_PAGESIZE)`, read once; 4 KiB
/// when it cannot be read): the unit of a [`SharedMap`]'s offset.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn os_page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: `sysconf` only reads its integer argument.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|n| n.is_power_of_two()).unwrap_or(4096)
    })
}

/// `fsync` of a directory: makes the creates, renames and removes in it durable. Never retried.
pub(crate) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `dir` is an open directory fd borrowed for the whole call.
    check(unsafe { libc::fsync(dir.as_raw_fd()) })
}

/// `renameat(dir, from, dir, to)`.
pub(crate) fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    let dir = dir.as_raw_fd();
    // SAFETY: `dir` is an open directory fd borrowed for the whole call, and `from` and `to` are
    // NUL-terminated strings that outlive the call.
    check(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is an open directory fd borrowed for the whole call, and `name` is a
    // NUL-terminated string that outlives the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
}

/// Extends the file from `size` to `len` bytes with `fallocate` (mode 0: allocate and change the
/// size; the new range reads as zeros). Where the file system or the OS has no `fallocate`, does
/// nothing: [`minivault_core::Storage::preallocate`] is a hint, and appends then grow the file
/// as they would without it.
pub(crate) fn allocate(fd: BorrowedFd<'_>, size: u64, len: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let (offset, span) = (to_off_t(size)?, to_off_t(len.saturating_sub(size))?);
        // SAFETY: `fd` is an open descriptor borrowed for the whole call, and `fallocate` only
        // reads its integer arguments.
        match retry_on_eintr(|| unsafe { libc::fallocate(fd.as_raw_fd(), 0, offset, span) }) {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => Ok(()),
            Err(err) => Err(err),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (fd, size, len);
        Ok(())
    }
}

/// The soft limit on the process's open files (`RLIMIT_NOFILE`); `None` when unlimited or when
/// it cannot be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable `rlimit` for the whole call, which only fills it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    // `rlim_t` is 32 bits wide on some targets (ARMv7 Linux).
    #[allow(clippy::useless_conversion)]
    u64::try_from(limit.rlim_cur).ok()
}

/// An exclusive `flock` on the open file, taken without waiting: fails with
/// [`io::ErrorKind::WouldBlock`] while another open file description holds it.
pub(crate) fn flock_exclusive_now(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor borrowed for the whole call.
    retry_on_eintr(|| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

/// `pos + len`, as long as the result is still a valid file offset.
pub(crate) fn checked_end(pos: u64, len: usize) -> io::Result<u64> {
    pos.checked_add(len as u64)
        .filter(|end| to_off_t(*end).is_ok())
        .ok_or_else(|| invalid_input("file position past the largest file offset"))
}

/// A file offset as libc's `off_t`, or an error when it does not fit.
pub(crate) fn to_off_t(pos: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(pos).map_err(|_| invalid_input("file offset does not fit in off_t"))
}

/// An [`io::ErrorKind::InvalidInput`] error with a fixed message.
pub(crate) fn invalid_input(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::cell::Cell;

    #[test]
    #[cfg(target_os = "linux")]
    fn retry_on_eintr_retries_only_interrupted_calls() {
        let calls = Cell::new(0);
        let result = retry_on_eintr(|| {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                // SAFETY: writing errno through the pointer libc gives this thread.
                unsafe { *libc::__errno_location() = libc::EINTR };
                -1
            } else {
                7
            }
        });
        assert_eq!((result.unwrap(), calls.get()), (7, 3));

        calls.set(0);
        let result = retry_on_eintr(|| {
            calls.set(calls.get() + 1);
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = libc::EBADF };
            -1isize
        });
        assert_eq!((result.unwrap_err().raw_os_error(), calls.get()), (Some(libc::EBADF), 1));
    }
}
