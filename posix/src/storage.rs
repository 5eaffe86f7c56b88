//! [`PosixStorage`]: the engine's [`Storage`] as one directory of files, driven through `libc`.
//!
//! The storage owns a directory file descriptor and resolves every name relative to it
//! (`openat`, `renameat`, `unlinkat`), so a file name can never escape the directory. Each open
//! file is a [`PosixFile`]: a file descriptor, a logical position and a small write buffer.
//!
//! # Buffering and durability
//! - [`Write::write`] appends to an in-memory buffer (at most [`WRITE_BUFFER_CAPACITY`] bytes), so
//!   the small pieces of one record reach the OS in one `pwrite`.
//! - [`Write::flush`], [`Read::read`], [`Seek::seek`], [`Storage::len`], [`Storage::truncate`],
//!   [`Storage::preallocate`] and [`Storage::sync`] first hand the buffer to the OS with `pwrite`;
//!   after that the bytes survive the death of the process.
//! - [`Storage::sync`] then calls `fdatasync` (plain `fsync` on unixes other than Linux and
//!   Android); after it returns `Ok`, contents and length survive a power cut.
//! - [`Storage::sync_dir`] calls `fsync` on the directory, making earlier creates, renames and
//!   removes durable.
//! - [`Storage::preallocate`] extends a file with `fallocate` (mode 0) on Linux and Android, and
//!   does nothing elsewhere or where the file system lacks it. Appends below the new length then
//!   change no file size, so their `fdatasync` commits no size change to the journal; on ext4 the
//!   new blocks are *unwritten* extents, and the first write into each 4 KiB block still costs a
//!   small journal commit (about one sync in 32 for 128-byte records). Writing zeros instead was
//!   measured and rejected: left in the page cache, zero pages form large folios that every small
//!   append re-dirties whole (device writes 15× larger); synced and dropped, they cost a
//!   `fdatasync` per chunk that halved buffered writes (`docs/BENCHMARKS.md`).
//! - A failed `fsync`/`fdatasync` is returned as is and never retried: after such an error the
//!   kernel may already have dropped the dirty pages, so a retry could report a false success.

use crate::cache::{FileKey, PageCache, PAGE_SIZE};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::Storage;

/// Default size of the read cache shared by a directory's files: 8 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;

/// The most bytes a [`PosixFile`] keeps buffered; a write that would exceed it first hands the
/// buffer to the OS.
pub const WRITE_BUFFER_CAPACITY: usize = 64 * 1024;

/// Permission bits for files the storage creates (before the process umask).
const FILE_MODE: libc::c_uint = 0o644;

/// A flat directory of files on a POSIX file system.
#[derive(Debug)]
pub struct PosixStorage {
    /// The directory, as given to [`PosixStorage::open_dir`].
    path: PathBuf,
    /// The directory itself, opened `O_RDONLY | O_DIRECTORY | O_CLOEXEC`; every name resolves
    /// against it.
    dir: OwnedFd,
    /// Pages read from this directory's files, shared by every open file.
    cache: Arc<Mutex<PageCache>>,
}

impl PosixStorage {
    /// Opens the directory at `path`, creating it (and any missing parents) first.
    ///
    /// Each directory created here is made durable by an `fsync` of its parent directory.
    pub fn open_dir(path: &Path) -> io::Result<Self> {
        Self::open_dir_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`PosixStorage::open_dir`], with a read cache of `cache_bytes` (0 disables it).
    pub fn open_dir_with_cache(path: &Path, cache_bytes: usize) -> io::Result<Self> {
        create_dir_durably(path)?;
        // std opens with O_CLOEXEC; with read-only access and O_DIRECTORY these are exactly the
        // flags we want, without an `unsafe` block.
        let dir = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(path)?;
        let cache = Arc::new(Mutex::new(PageCache::new(cache_bytes)));
        Ok(Self { path: path.to_path_buf(), dir: OwnedFd::from(dir), cache })
    }

    /// The directory this storage works in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size in bytes of the file `name`, looked up by name (for statistics).
    ///
    /// Bytes still buffered in an open [`PosixFile`] are not counted.
    pub fn file_size(&mut self, name: &str) -> io::Result<u64> {
        let name = file_name(name)?;
        let mut stat = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `self.dir` is an open directory fd for the lifetime of `self`, `name` is a
        // NUL-terminated string that outlives the call, and `stat` points to writable memory the
        // size of a `libc::stat`.
        let rc = unsafe { libc::fstatat(self.dir.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fstatat` returned 0, so it filled in the whole `stat` structure.
        let stat = unsafe { stat.assume_init() };
        size_from_stat(&stat)
    }

    /// Opens `name` relative to the directory with `flags` (plus `O_CLOEXEC`).
    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<PosixFile> {
        let name = file_name(name)?;
        loop {
            // SAFETY: `self.dir` is an open directory fd for the lifetime of `self`, `name` is a
            // NUL-terminated string that outlives the call, and the variadic mode argument is the
            // `c_uint` that `openat` reads when `O_CREAT` is set.
            let fd = unsafe {
                libc::openat(self.dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, FILE_MODE)
            };
            if fd >= 0 {
                // SAFETY: `openat` just returned this descriptor, so it is open and nothing else
                // owns it; the `OwnedFd` becomes its only owner.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let key = fstat_key(&fd)?;
                if flags & libc::O_TRUNC != 0 {
                    // A new file may reuse the inode number of a removed one.
                    lock(&self.cache).forget(key);
                }
                return Ok(PosixFile::new(fd, key, Arc::clone(&self.cache)));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Storage for PosixStorage {
    type Error = io::Error;
    type File = PosixFile;
    type Io<'a> = &'a mut PosixFile;

    fn create(&mut self, name: &str) -> io::Result<PosixFile> {
        self.open_at(name, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC)
    }

    fn open(&mut self, name: &str) -> io::Result<PosixFile> {
        self.open_at(name, libc::O_RDWR)
    }

    fn io<'a>(&'a mut self, file: &'a mut PosixFile) -> &'a mut PosixFile {
        file
    }

    fn len(&mut self, file: &mut PosixFile) -> io::Result<u64> {
        file.flush_buffer()?;
        fstat_size(&file.fd)
    }

    fn truncate(&mut self, file: &mut PosixFile, len: u64) -> io::Result<()> {
        file.flush_buffer()?;
        lock(&self.cache).forget(file.key);
        let len = to_off_t(len)?;
        loop {
            // SAFETY: `file.fd` is an open descriptor owned by `file` for the whole call.
            if unsafe { libc::ftruncate(file.fd.as_raw_fd(), len) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn preallocate(&mut self, file: &mut PosixFile, len: u64) -> io::Result<()> {
        // Buffered bytes land first, so the extension starts past them.
        file.flush_buffer()?;
        let size = fstat_size(&file.fd)?;
        if len <= size {
            return Ok(());
        }
        let result = allocate(file.fd.as_raw_fd(), size, len);
        // The page that held the old end of the file may be cached shorter than the file now is
        // (also after a failure: the extension may have happened part of the way).
        lock(&self.cache).invalidate(file.key, size, len);
        result
    }

    fn sync(&mut self, file: &mut PosixFile) -> io::Result<()> {
        file.flush_buffer()?;
        sync_data(file.fd.as_raw_fd())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let from = file_name(from)?;
        let to = file_name(to)?;
        let dir = self.dir.as_raw_fd();
        // SAFETY: `dir` is an open directory fd for the lifetime of `self`, and `from` and `to`
        // are NUL-terminated strings that outlive the call.
        let rc = unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let name = file_name(name)?;
        // SAFETY: `self.dir` is an open directory fd for the lifetime of `self`, and `name` is a
        // NUL-terminated string that outlives the call.
        let rc = unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        // SAFETY: `self.dir` is an open directory fd for the lifetime of `self`.
        if unsafe { libc::fsync(self.dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> io::Result<()> {
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // The engine only creates ASCII names; anything else is not ours.
            if let Some(name) = entry.file_name().to_str() {
                visit(name);
            }
        }
        Ok(())
    }
}

/// An open file of a [`PosixStorage`]: a descriptor, a logical position and a write buffer.
///
/// Reads and writes go through `pread`/`pwrite` at the logical position, so the kernel's file
/// offset is never used. Bytes written but not yet flushed are handed to the OS by
/// [`Write::flush`], by any read, seek, `len`, `truncate` or `sync`, and (best effort, errors
/// ignored) when the file is dropped.
pub struct PosixFile {
    /// The open file.
    fd: OwnedFd,
    /// The logical position: where the next read or write happens.
    pos: u64,
    /// Bytes written but not yet handed to the OS; never more than [`WRITE_BUFFER_CAPACITY`].
    wbuf: Vec<u8>,
    /// The file offset of `wbuf[0]`. While `wbuf` is not empty, `wbuf_start + wbuf.len() == pos`.
    wbuf_start: u64,
    /// Device and inode: the file's identity in the page cache.
    key: FileKey,
    /// The storage's read cache; every write through this handle invalidates what it changes.
    cache: Arc<Mutex<PageCache>>,
}

impl PosixFile {
    fn new(fd: OwnedFd, key: FileKey, cache: Arc<Mutex<PageCache>>) -> Self {
        Self { fd, pos: 0, wbuf: Vec::new(), wbuf_start: 0, key, cache }
    }

    /// Reads at `self.pos` through the page cache: whole pages are read and kept, and `buf` is
    /// filled from them up to the end of the file.
    fn read_cached(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut cache = lock(&self.cache);
        let mut done = 0;
        while done < buf.len() {
            let at = self.pos + done as u64;
            let (page, within) = (at / PAGE_SIZE as u64, (at % PAGE_SIZE as u64) as usize);
            let avail = match cache.get(self.key, page) {
                Some(data) => copy_from(data, within, &mut buf[done..]),
                None => {
                    let mut data = [0u8; PAGE_SIZE];
                    let n = pread_full(&self.fd, &mut data, page * PAGE_SIZE as u64)?;
                    cache.insert(self.key, page, &data[..n]);
                    copy_from(&data[..n], within, &mut buf[done..])
                }
            };
            if avail == 0 {
                break; // end of file
            }
            done += avail;
        }
        self.pos = checked_end(self.pos, done)?;
        Ok(done)
    }

    /// Writes the buffer out with `pwrite`, retrying on `EINTR` and short writes.
    ///
    /// On error, the bytes that did reach the OS leave the buffer and the rest stay in it.
    fn flush_buffer(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (written, result) = pwrite_all(self.fd.as_raw_fd(), &self.wbuf, self.wbuf_start);
        lock(&self.cache).invalidate(self.key, self.wbuf_start, self.wbuf_start + written as u64);
        self.wbuf.drain(..written);
        // `written` is at most `wbuf.len()`, whose end offset was checked to fit in `off_t`.
        self.wbuf_start = self.wbuf_start.saturating_add(written as u64);
        result
    }
}

impl fmt::Debug for PosixFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixFile")
            .field("fd", &self.fd)
            .field("pos", &self.pos)
            .field("buffered", &self.wbuf.len())
            .finish()
    }
}

impl Drop for PosixFile {
    fn drop(&mut self) {
        // Best effort: a caller that cares about errors flushes or syncs before dropping.
        let _ = self.flush_buffer();
    }
}

impl ErrorType for PosixFile {
    type Error = io::Error;
}

impl Read for PosixFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.flush_buffer()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if !lock(&self.cache).is_disabled() {
            return self.read_cached(buf);
        }
        let n = pread_once(&self.fd, buf, self.pos)?;
        self.pos = checked_end(self.pos, n)?;
        Ok(n)
    }
}

impl Write for PosixFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = checked_end(self.pos, buf.len())?;
        let contiguous = self.wbuf_start.checked_add(self.wbuf.len() as u64) == Some(self.pos);
        if !self.wbuf.is_empty()
            && (!contiguous || self.wbuf.len().saturating_add(buf.len()) > WRITE_BUFFER_CAPACITY)
        {
            self.flush_buffer()?;
        }
        if buf.len() > WRITE_BUFFER_CAPACITY {
            // Too big to buffer: it goes out in one `pwrite` of its own.
            let (written, result) = pwrite_all(self.fd.as_raw_fd(), buf, self.pos);
            lock(&self.cache).invalidate(self.key, self.pos, self.pos + written as u64);
            result?;
        } else {
            if self.wbuf.is_empty() {
                self.wbuf_start = self.pos;
            }
            self.wbuf.extend_from_slice(buf);
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer()
    }
}

impl Seek for PosixFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        // Moving the position needs no flush: a write that is not contiguous with the buffer
        // flushes it, and a read flushes first. Only the end of file must include the buffer.
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => {
                self.flush_buffer()?;
                fstat_size(&self.fd)?.checked_add_signed(delta)
            }
        };
        match target {
            Some(target) if to_off_t(target).is_ok() => {
                self.pos = target;
                Ok(target)
            }
            _ => Err(invalid_input("seek to a negative position or past the largest file offset")),
        }
    }
}

/// Checks a file name the engine asked for and turns it into a C string.
///
/// Names must be a single path component: not empty, not `.` or `..`, without `/` or NUL.
fn file_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid file name {name:?}: must be one path component without '/' or NUL"),
        ));
    }
    CString::new(name).map_err(|_| invalid_input("file name contains NUL"))
}

/// Creates `path` and any missing ancestors, `fsync`ing each new directory's parent.
fn create_dir_durably(path: &Path) -> io::Result<()> {
    // Missing directories, innermost first.
    let mut missing = Vec::new();
    // `Path::parent` of a one-part relative path ("rel") is `Some("")`: the current directory,
    // which exists; `mkdir("")` would fail with ENOENT.
    let mut current = Some(path).filter(|p| !p.as_os_str().is_empty());
    while let Some(dir) = current {
        match fs::metadata(dir) {
            // Exists (if it is not a directory, opening it with O_DIRECTORY reports that).
            Ok(_) => break,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                missing.push(dir);
                current = dir.parent().filter(|p| !p.as_os_str().is_empty());
            }
            Err(err) => return Err(err),
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Created concurrently; its entry still needs to be made durable.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Writes all of `buf` at `offset` with `pwrite`, retrying on `EINTR` and short writes.
///
/// Returns how many bytes reached the OS, and the first error if it stopped early.
fn pwrite_all(fd: RawFd, buf: &[u8], offset: u64) -> (usize, io::Result<()>) {
    let mut written = 0;
    while let Some(rest) = buf.get(written..).filter(|rest| !rest.is_empty()) {
        let offset = match to_off_t(offset.saturating_add(written as u64)) {
            Ok(offset) => offset,
            Err(err) => return (written, Err(err)),
        };
        // SAFETY: `rest` is valid for reads of `rest.len()` bytes for the whole call, and `fd` is
        // an open descriptor that the caller owns for the whole call.
        let n = unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), offset) };
        match usize::try_from(n) {
            Ok(0) => {
                let err = io::Error::new(io::ErrorKind::WriteZero, "pwrite wrote no bytes");
                return (written, Err(err));
            }
            Ok(n) => written = written.saturating_add(n.min(rest.len())),
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return (written, Err(err));
                }
            }
        }
    }
    (written, Ok(()))
}

/// Makes the file's data and length durable: `fdatasync` where it exists, else `fsync`.
/// Never retried: see the module documentation.
fn sync_data(fd: RawFd) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `fd` is an open descriptor that the caller owns for the whole call.
    let rc = unsafe { libc::fdatasync(fd) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `fd` is an open descriptor that the caller owns for the whole call.
    let rc = unsafe { libc::fsync(fd) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Extends the file from `size` to `len` bytes with `fallocate` (mode 0: allocate and change the
/// size; the new range reads as zeros). Where the file system or the OS has no `fallocate`, does
/// nothing: [`Storage::preallocate`] is a hint, and appends then grow the file as they would
/// without it.
fn allocate(fd: RawFd, size: u64, len: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let (offset, span) = (to_off_t(size)?, to_off_t(len.saturating_sub(size))?);
        loop {
            // SAFETY: `fd` is an open descriptor that the caller owns for the whole call, and
            // `fallocate` only reads its integer arguments.
            if unsafe { libc::fallocate(fd, 0, offset, span) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EOPNOTSUPP | libc::ENOSYS) => return Ok(()),
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (fd, size, len);
        Ok(())
    }
}

/// `fstat` of an open file.
fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor borrowed for the whole call, and `stat` points to
    // writable memory the size of a `libc::stat`.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fstat` returned 0, so it filled in the whole `stat` structure.
    Ok(unsafe { stat.assume_init() })
}

/// The identity (device, inode) of an open file: the read cache keys pages by it.
fn fstat_key(fd: &OwnedFd) -> io::Result<FileKey> {
    let stat = fstat(fd)?;
    // `dev_t` and `ino_t` are narrower than 64 bits on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

/// One `pread` at `offset` (retried when a signal interrupts it); returns the bytes read, 0 at
/// the end of the file.
fn pread_once(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let at = to_off_t(offset)?;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and `fd` is
        // an open descriptor borrowed for the whole call.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), at) };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
fn pread_full(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match pread_once(fd, &mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Copies what `page` holds from `within` into `dst`; returns the bytes copied.
fn copy_from(page: &[u8], within: usize, dst: &mut [u8]) -> usize {
    let src = page.get(within..).unwrap_or(&[]);
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

/// Locks the cache; a poisoned lock (a panic elsewhere while holding it) still guards valid data.
fn lock(cache: &Mutex<PageCache>) -> std::sync::MutexGuard<'_, PageCache> {
    cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fstat_size(fd: &OwnedFd) -> io::Result<u64> {
    size_from_stat(&fstat(fd)?)
}

fn size_from_stat(stat: &libc::stat) -> io::Result<u64> {
    u64::try_from(stat.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative file size from stat"))
}

/// `pos + len`, as long as the result is still a valid file offset.
fn checked_end(pos: u64, len: usize) -> io::Result<u64> {
    pos.checked_add(len as u64)
        .filter(|end| to_off_t(*end).is_ok())
        .ok_or_else(|| invalid_input("file position past the largest file offset"))
}

fn to_off_t(pos: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(pos).map_err(|_| invalid_input("file offset does not fit in off_t"))
}

fn invalid_input(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn storage() -> (tempfile::TempDir, PosixStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::open_dir(dir.path()).unwrap();
        (dir, storage)
    }

    /// Reads the whole file from the start through the storage's own I/O view.
    fn read_all<S: Storage>(storage: &mut S, file: &mut S::File) -> Vec<u8> {
        let mut io = storage.io(file);
        io.seek(SeekFrom::Start(0)).unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            let n = io.read(&mut chunk).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn written_bytes_read_back_after_flush() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("wal-1").unwrap();
        {
            let io = storage.io(&mut file);
            io.write_all(b"hello ").unwrap();
            io.write_all(b"world").unwrap();
            io.flush().unwrap();
        }
        // Flushed bytes are visible to anyone reading the file, not just this handle.
        assert_eq!(fs::read(dir.path().join("wal-1")).unwrap(), b"hello world");
        assert_eq!(read_all(&mut storage, &mut file), b"hello world");
    }

    #[test]
    fn small_writes_stay_buffered_until_flush() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"abc").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"");
        file.flush().unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"abc");
    }

    #[test]
    fn read_sees_buffered_writes_without_explicit_flush() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"abcdef").unwrap();
        file.seek(SeekFrom::Start(2)).unwrap();
        let mut buf = [0u8; 3];
        file.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"cde");
        assert_eq!(file.seek(SeekFrom::Current(0)).unwrap(), 5);
    }

    #[test]
    fn seek_end_reports_length_including_buffered_writes() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(&[7u8; 100]).unwrap();
        assert_eq!(file.seek(SeekFrom::End(0)).unwrap(), 100);
        assert_eq!(file.seek(SeekFrom::End(-10)).unwrap(), 90);
    }

    #[test]
    fn len_includes_buffered_writes() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        storage.io(&mut file).write_all(&[1u8; 33]).unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 33);
    }

    #[test]
    fn negative_seek_is_invalid_input_not_a_panic() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"abc").unwrap();
        for pos in [SeekFrom::End(-4), SeekFrom::Current(-4), SeekFrom::Start(u64::MAX)] {
            let err = file.seek(pos).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{pos:?}");
        }
        file.seek(SeekFrom::Start(1)).unwrap();
        let err = file.seek(SeekFrom::Current(i64::MAX)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A failed seek leaves the position alone.
        assert_eq!(file.seek(SeekFrom::Current(0)).unwrap(), 1);
    }

    #[test]
    fn seek_then_write_overwrites_in_place() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"0123456789").unwrap();
        file.seek(SeekFrom::Start(3)).unwrap();
        file.write_all(b"abc").unwrap();
        assert_eq!(read_all(&mut storage, &mut file), b"012abc6789");
    }

    #[test]
    fn buffer_is_written_out_once_it_would_exceed_64_kib() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        let piece = [0xA5u8; 1000];
        for _ in 0..100 {
            file.write_all(&piece).unwrap();
            assert!(file.wbuf.len() <= WRITE_BUFFER_CAPACITY);
        }
        let on_disk = fs::metadata(dir.path().join("f")).unwrap().len();
        assert!(on_disk >= 64_000, "only {on_disk} bytes reached the OS");
        assert_eq!(storage.len(&mut file).unwrap(), 100_000);
    }

    #[test]
    fn write_larger_than_buffer_goes_straight_to_the_file() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(b"head").unwrap();
        file.write_all(&big).unwrap();
        assert!(file.wbuf.is_empty());
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), expected);
    }

    #[test]
    fn drop_flushes_pending_writes() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"pending").unwrap();
        drop(file);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"pending");
    }

    #[test]
    fn truncate_cuts_file() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(b"0123456789").unwrap();
        storage.truncate(&mut file, 4).unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 4);
        assert_eq!(read_all(&mut storage, &mut file), b"0123");
    }

    #[test]
    fn create_truncates_existing_file() {
        let (dir, mut storage) = storage();
        fs::write(dir.path().join("f"), b"old contents").unwrap();
        let mut file = storage.create("f").unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 0);
    }

    #[test]
    fn open_reads_existing_file() {
        let (dir, mut storage) = storage();
        fs::write(dir.path().join("f"), b"existing").unwrap();
        let mut file = storage.open("f").unwrap();
        assert_eq!(read_all(&mut storage, &mut file), b"existing");
    }

    #[test]
    fn open_missing_file_is_not_found() {
        let (_dir, mut storage) = storage();
        let err = storage.open("missing").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(embedded_io::Error::kind(&err), embedded_io::ErrorKind::NotFound);
    }

    #[test]
    fn rename_replaces_existing_target() {
        let (dir, mut storage) = storage();
        let mut new = storage.create("MANIFEST.tmp").unwrap();
        new.write_all(b"new").unwrap();
        storage.sync(&mut new).unwrap();
        let mut old = storage.create("MANIFEST").unwrap();
        old.write_all(b"old").unwrap();
        old.flush().unwrap();
        storage.rename("MANIFEST.tmp", "MANIFEST").unwrap();
        storage.sync_dir().unwrap();
        assert_eq!(fs::read(dir.path().join("MANIFEST")).unwrap(), b"new");
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }

    #[test]
    fn rename_missing_file_is_not_found() {
        let (_dir, mut storage) = storage();
        let err = storage.rename("missing", "other").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn remove_deletes_file() {
        let (dir, mut storage) = storage();
        drop(storage.create("f").unwrap());
        storage.remove("f").unwrap();
        assert!(!dir.path().join("f").exists());
    }

    #[test]
    fn remove_missing_file_is_not_found() {
        let (_dir, mut storage) = storage();
        let err = storage.remove("missing").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn list_returns_created_files() {
        let (dir, mut storage) = storage();
        for name in ["a.sst", "b.sst", "wal-3"] {
            drop(storage.create(name).unwrap());
        }
        fs::create_dir(dir.path().join("subdir")).unwrap();
        let mut names = Vec::new();
        storage.list(&mut |name| names.push(name.to_owned())).unwrap();
        names.sort();
        assert_eq!(names, ["a.sst", "b.sst", "wal-3"]);
    }

    #[test]
    fn invalid_file_names_are_rejected() {
        let (_dir, mut storage) = storage();
        for name in ["", ".", "..", "a/b", "/abs", "../escape", "nul\0byte"] {
            let kind = |r: io::Result<PosixFile>| r.unwrap_err().kind();
            assert_eq!(kind(storage.create(name)), io::ErrorKind::InvalidInput, "{name:?}");
            assert_eq!(kind(storage.open(name)), io::ErrorKind::InvalidInput, "{name:?}");
            let err = storage.remove(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            let err = storage.rename("ok", name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            let err = storage.file_size(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }

    #[test]
    fn sync_persists_data_visible_to_a_fresh_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut storage = PosixStorage::open_dir(dir.path()).unwrap();
            let mut file = storage.create("wal-1").unwrap();
            storage.io(&mut file).write_all(b"durable record").unwrap();
            storage.sync(&mut file).unwrap();
            storage.sync_dir().unwrap();
        }
        let mut storage = PosixStorage::open_dir(dir.path()).unwrap();
        let mut file = storage.open("wal-1").unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 14);
        assert_eq!(read_all(&mut storage, &mut file), b"durable record");
    }

    #[test]
    fn open_dir_creates_missing_directories() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a").join("b").join("db");
        let mut storage = PosixStorage::open_dir(&path).unwrap();
        assert!(path.is_dir());
        assert_eq!(storage.path(), path);
        drop(storage.create("f").unwrap());
        assert!(path.join("f").is_file());
    }

    #[test]
    fn open_dir_on_a_regular_file_fails() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("file");
        fs::write(&path, b"x").unwrap();
        assert!(PosixStorage::open_dir(&path).is_err());
    }

    #[test]
    fn file_size_reports_size_by_name() {
        let (_dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        file.write_all(&[0u8; 1234]).unwrap();
        file.flush().unwrap();
        assert_eq!(storage.file_size("f").unwrap(), 1234);
        let err = storage.file_size("missing").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn cached_reads_see_writes_made_through_another_handle() {
        let (_dir, mut storage) = storage();
        let mut a = storage.create("f").unwrap();
        a.write_all(&[1u8; 10_000]).unwrap();
        storage.sync(&mut a).unwrap();
        let mut b = storage.open("f").unwrap();
        assert_eq!(read_all(&mut storage, &mut b), vec![1u8; 10_000]);
        a.seek(SeekFrom::Start(5000)).unwrap();
        a.write_all(&[2u8; 10]).unwrap();
        a.flush().unwrap();
        let got = read_all(&mut storage, &mut b);
        assert_eq!(&got[4995..5015], &[[1u8; 5], [2u8; 5], [2u8; 5], [1u8; 5]].concat()[..]);
        storage.truncate(&mut a, 100).unwrap();
        assert_eq!(read_all(&mut storage, &mut b), vec![1u8; 100]);
    }

    #[test]
    fn a_new_file_never_serves_pages_cached_for_a_removed_one() {
        let (_dir, mut storage) = storage();
        for round in 0..20u8 {
            let mut f = storage.create("f").unwrap();
            f.write_all(&[round; 5000]).unwrap();
            storage.sync(&mut f).unwrap();
            let mut r = storage.open("f").unwrap();
            assert_eq!(read_all(&mut storage, &mut r), vec![round; 5000], "round {round}");
            storage.remove("f").unwrap();
        }
    }

    #[test]
    fn reads_with_the_cache_disabled_match_cached_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut plain = PosixStorage::open_dir_with_cache(dir.path(), 0).unwrap();
        let mut cached = PosixStorage::open_dir(dir.path()).unwrap();
        let mut f = plain.create("f").unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        plain.sync(&mut f).unwrap();
        let mut g = cached.open("f").unwrap();
        for (at, len) in [(0, 1), (4095, 2), (4096, 4096), (12_000, 9000), (19_999, 5)] {
            let mut buf = vec![0u8; len];
            g.seek(SeekFrom::Start(at)).unwrap();
            let n = read_up_to(&mut g, &mut buf);
            let end = (at as usize + len).min(data.len());
            assert_eq!(&buf[..n], &data[at as usize..end], "at {at} len {len}");
        }
    }

    #[test]
    fn preallocate_extends_with_zeros_keeps_buffered_bytes_and_never_shrinks() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        // Still in the write buffer when the extension comes: it must land first.
        file.write_all(b"records").unwrap();
        storage.preallocate(&mut file, 100_000).unwrap();
        let on_disk = fs::read(dir.path().join("f")).unwrap();
        assert_eq!(on_disk.len(), 100_000);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Allocated blocks (fallocate), not a hole (as `ftruncate` would leave).
            use std::os::unix::fs::MetadataExt;
            let blocks = fs::metadata(dir.path().join("f")).unwrap().blocks();
            assert!(blocks * 512 >= 100_000, "only {blocks} blocks of 512 bytes allocated");
        }
        assert_eq!(&on_disk[..7], b"records");
        assert!(on_disk[7..].iter().all(|&b| b == 0));
        storage.preallocate(&mut file, 10).unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 100_000, "a shorter length leaves the file alone");
        // Writing inside the extension does not change the size.
        file.write_all(b" and more").unwrap();
        storage.sync(&mut file).unwrap();
        assert_eq!(storage.len(&mut file).unwrap(), 100_000);
        assert_eq!(&read_all(&mut storage, &mut file)[..16], b"records and more");
    }

    #[test]
    fn cached_reads_see_a_preallocated_extension() {
        let (_dir, mut storage) = storage();
        let mut a = storage.create("f").unwrap();
        a.write_all(&[7u8; 5000]).unwrap();
        storage.sync(&mut a).unwrap();
        let mut b = storage.open("f").unwrap();
        // Caches the short last page (bytes 4096..5000).
        assert_eq!(read_all(&mut storage, &mut b).len(), 5000);
        storage.preallocate(&mut a, 9000).unwrap();
        let got = read_all(&mut storage, &mut b);
        assert_eq!(got.len(), 9000, "a stale short page would end the file at 5000");
        assert!(got[..5000].iter().all(|&x| x == 7) && got[5000..].iter().all(|&x| x == 0));
    }

    fn read_up_to(f: &mut PosixFile, buf: &mut [u8]) -> usize {
        let mut done = 0;
        loop {
            let n = f.read(&mut buf[done..]).unwrap();
            if n == 0 || done + n == buf.len() {
                return done + n;
            }
            done += n;
        }
    }
}
