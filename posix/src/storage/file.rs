//! [`PosixFile`]: one open file of a [`super::PosixStorage`], a file descriptor with a logical
//! position, a small write buffer and reads through the directory's page cache; and
//! [`FileReader`], a read-only share of one for positioned reads from any thread.
//!
//! The buffering and durability rules are in the [`super`] module docs; the libc calls are in
//! [`super::sys`].

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};

use super::sys::{self, checked_end, invalid_input, to_off_t};
use crate::page_cache::{FileKey, PageCache, PAGE_SIZE};

/// The most bytes a [`PosixFile`] keeps buffered; a write that would exceed it first hands the
/// buffer to the OS.
pub const WRITE_BUFFER_CAPACITY: usize = 64 * 1024;

/// Bytes written to a file between two starts of its writeback ([`sys::start_writeback`]): a
/// table being written (a compaction's output can be hundreds of megabytes) never has more than
/// this much dirty in the OS before its own sync, so that a WAL's or a flushed table's
/// `fdatasync` meanwhile does not wait behind it.
pub const WRITEBACK_STEP: u64 = 1 << 20;

/// Bytes of a WAL that a [`PosixFile`] with mapped appends (a WAL's, on Linux and Android file
/// systems that allocate at `fallocate`) keeps mapped at a time: appends are copied into a window of the file this large, moved along
/// as they pass its end (one `munmap` and `mmap` per window). The pages touched count in the
/// process's RSS: at most this much per WAL open for writing (the current one and, until it is
/// synced or retired, the one before it).
pub const MAP_WINDOW: u64 = 128 * 1024;

/// Bytes of each of the two windows of a [`PosixFile`] with read-ahead
/// ([`PosixFile::read_ahead`]): a compaction worker's input tables, each read from start to end a
/// few dozen bytes at a time in two streams, the record offsets and the records (at most 16
/// inputs: 512 KiB per worker, beside its page cache).
pub const READ_AHEAD_BYTES: usize = 16 * 1024;

/// A file's appends through a shared mapping ([`PosixFile::with_mapped_appends`]): whether they
/// are on, the window of the file mapped, and the file's size as last seen for a mapping. Only
/// on Linux and Android ([`sys::SharedMap`]); empty elsewhere.
#[derive(Default)]
struct MappedAppends {
    /// Writes within the file's size are copied into the mapping.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    on: bool,
    /// The window mapped, once a write was copied through it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    map: Option<sys::SharedMap>,
    /// The file's size when last looked at for a mapping; `None`: look again (it may have grown
    /// by a preallocation, or shrunk by a truncate).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    room: Option<u64>,
}

impl MappedAppends {
    fn enable(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.on = true;
        }
    }

    fn forget_size(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.room = None;
        }
    }

    /// Drops the window and forgets the size: the file may shrink next.
    fn unmap(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.map = None;
            self.room = None;
        }
    }
}

/// An open file of a [`PosixStorage`](super::PosixStorage): a descriptor, a logical position and a write buffer.
///
/// Reads and writes go through `pread`/`pwrite` at the logical position (a WAL's appends within
/// its preallocated size, on Linux: through a shared mapping of [`MAP_WINDOW`] bytes),
/// so the kernel's file offset is never used. Bytes written but not yet flushed are handed to the OS by
/// [`Write::flush`], by any read, seek, `len`, `truncate` or `sync`, and (best effort, errors
/// ignored) when the file is dropped.
pub struct PosixFile {
    /// The open file, shared with the [`FileReader`]s made of it: it is closed when the last of
    /// them and the file are dropped.
    pub(super) fd: Arc<OwnedFd>,
    /// The logical position: where the next read or write happens.
    pos: u64,
    /// Bytes written but not yet handed to the OS; never more than [`WRITE_BUFFER_CAPACITY`].
    wbuf: Vec<u8>,
    /// The file offset of `wbuf[0]`. While `wbuf` is not empty, `wbuf_start + wbuf.len() == pos`.
    wbuf_start: u64,
    /// Device and inode: the file's identity in the page cache.
    pub(super) key: FileKey,
    /// The storage's read cache; every write through this handle invalidates what it changes.
    cache: Arc<Mutex<PageCache>>,
    /// The end of the bytes whose writeback was last started ([`WRITEBACK_STEP`]).
    writeback_from: u64,
    /// Writeback is started every [`WRITEBACK_STEP`]; `false` for a WAL that no sync is due to
    /// ([`PosixFile::without_writeback_hints`]).
    hints_writeback: bool,
    /// Appends through a shared mapping of the file ([`PosixFile::with_mapped_appends`]).
    mapped: MappedAppends,
    /// The page cache has room (its capacity is fixed when the storage opens): read once here
    /// rather than under its lock on every read.
    cached: bool,
    /// Reads served from windows of the handle's own ([`PosixFile::read_ahead`]); `None`: every
    /// read goes through the page cache.
    ahead: Option<ReadAhead>,
}

/// The read-ahead of one handle: two [`Window`]s, and a count of the reads it was asked for.
#[derive(Default)]
struct ReadAhead {
    windows: [Window; 2],
    reads: u64,
}

/// Reads after which a window that served none of them may be refilled for another stream:
/// one filled for a read that no read continued (a footer, a fence) is given back this way.
const IDLE_READS: u64 = 64;

/// How far past a window's end a read may start and still continue the window's stream (a
/// record whose value a merge did not need to read, between two it did).
const STREAM_GAP: u64 = 4096;

/// [`READ_AHEAD_BYTES`] of a file read with one `pread`, private to one handle: reads inside it
/// take no lock and no page-cache lookup. Only for files nothing else writes while the handle
/// reads them (a table, which is never changed once written); writes and cuts through the
/// handle itself empty it.
#[derive(Default)]
struct Window {
    /// Empty until first filled (a handle that is never read costs nothing).
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    start: u64,
    /// Bytes of `buf` read from the file.
    len: usize,
    /// When it last served a read ([`ReadAhead::reads`] then).
    used: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    fn holds(&self, pos: u64) -> bool {
        self.start <= pos && pos < self.end()
    }
}

impl PosixFile {
    pub(super) fn new(fd: OwnedFd, key: FileKey, cache: Arc<Mutex<PageCache>>) -> Self {
        let cached = !lock(&cache).is_disabled();
        Self {
            fd: Arc::new(fd),
            pos: 0,
            wbuf: Vec::new(),
            wbuf_start: 0,
            key,
            cache,
            writeback_from: 0,
            hints_writeback: true,
            mapped: MappedAppends::default(),
            cached,
            ahead: None,
        }
    }

    /// This handle, never starting the writeback of what it writes: the kernel writes its dirty
    /// pages back when it chooses (after about 30 seconds on Linux) or when the file is synced.
    /// For a WAL of a database that syncs only when asked (`Durability::Manual`): a WAL that a
    /// flush retires first is removed with its pages still dirty, and they never reach the
    /// device.
    pub(super) fn without_writeback_hints(mut self) -> Self {
        self.hints_writeback = false;
        self
    }

    /// This handle, copying what it writes within the file's size into a shared mapping of the
    /// file ([`MAP_WINDOW`] at a time) instead of handing it over with `pwrite`: for a WAL, whose
    /// every record must reach the OS before its write returns (so that it survives the death of
    /// the process) and whose records are appended into a tail the engine preallocated. A record
    /// copied into the mapping is in the kernel's page cache as a `pwrite` would have put it, and
    /// `fdatasync` of the file writes it; the system call per record (a quarter of a buffered
    /// writer's time in `fillseq`) is gone. Writes past the file's size (a WAL's header, a WAL
    /// without preallocation) and anywhere the mapping cannot be made go through `pwrite` as
    /// before. Linux and Android only ([`sys::SharedMap`]); elsewhere this changes nothing.
    pub(super) fn with_mapped_appends(mut self) -> Self {
        self.mapped.enable();
        self
    }

    /// Copies `buf` to the file at the position through the mapping, made or moved first when it
    /// does not hold those bytes. `false` (nothing written) when they are not all within the
    /// file's size as last seen, do not fit one window, or the mapping cannot be made (then
    /// this handle stops trying): the caller writes them as any file's.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn write_mapped(&mut self, buf: &[u8]) -> io::Result<bool> {
        let end = checked_end(self.pos, buf.len())?;
        if !self.mapped.map.as_ref().is_some_and(|m| m.holds(self.pos, end)) {
            self.mapped.map = None;
            let page = sys::os_page_size();
            let start = self.pos / page * page;
            if end - start > MAP_WINDOW {
                return Ok(false);
            }
            let size = match self.mapped.room {
                Some(size) => size,
                None => {
                    self.flush_buffer()?;
                    sys::fstat_size(self.fd.as_fd())?
                }
            };
            self.mapped.room = Some(size);
            if end > size {
                return Ok(false);
            }
            // `size - start` is at least `end - start` > 0 here; at most MAP_WINDOW fits a usize.
            let len = (size - start).min(MAP_WINDOW) as usize;
            match sys::SharedMap::new(self.fd.as_fd(), start, len) {
                Ok(map) => self.mapped.map = Some(map),
                Err(_) => {
                    self.mapped.on = false;
                    return Ok(false);
                }
            }
        }
        // Bytes an earlier write left in the buffer (written as any file's) reach the OS first.
        self.flush_buffer()?;
        let copied = self.mapped.map.as_mut().is_some_and(|m| m.copy_in(self.pos, buf));
        if copied {
            lock(&self.cache).invalidate(self.key, self.pos, end);
            self.drop_read_ahead();
            self.pos = end;
            self.note_written(end);
        }
        Ok(copied)
    }

    /// Forgets the file's size as last seen for a mapping (it grew: a preallocation).
    pub(super) fn forget_size(&mut self) {
        self.mapped.forget_size();
    }

    /// Another handle on the same open file, at offset 0 with empty buffers: for a file a
    /// read-only storage holds open ([`super::PosixStorage::hold_files`]) and the engine opens
    /// (it may open a file more than once: a WAL is read by its predecessor's check, then
    /// replayed).
    pub(super) fn another_handle(&self) -> Self {
        Self {
            fd: Arc::clone(&self.fd),
            pos: 0,
            wbuf: Vec::new(),
            wbuf_start: 0,
            key: self.key,
            cache: Arc::clone(&self.cache),
            writeback_from: 0,
            hints_writeback: self.hints_writeback,
            mapped: MappedAppends::default(),
            cached: self.cached,
            ahead: None,
        }
    }

    /// Serves reads smaller than [`READ_AHEAD_BYTES`] from two windows of that size of the
    /// handle's own, each read with one `pread`, instead of through the page cache: for a handle
    /// that reads a file from start to end in two interleaved forward streams (a merge reads an
    /// input's record offsets and its records), and that nothing writes meanwhile through
    /// another handle: a compaction's input tables. Reads of a third stream (an input's range
    /// deletes, walked again from their start for each key of an older input) go through the
    /// page cache, not through the windows.
    pub(super) fn read_ahead(mut self) -> Self {
        self.ahead = Some(Default::default());
        self
    }

    /// Forgets what the read-ahead windows hold (a write or a cut through this handle).
    fn drop_read_ahead(&mut self) {
        for w in self.ahead.iter_mut().flat_map(|a| &mut a.windows) {
            w.len = 0;
        }
    }

    /// Serves a read at `self.pos` from a read-ahead window: the one that holds `pos`, or else
    /// one refilled from `pos`: the window whose stream the read continues (it starts at most
    /// [`STREAM_GAP`] past its end), else one that is empty or served none of the last
    /// [`IDLE_READS`] reads. `None` (the page cache serves the read) when the handle has no
    /// windows, the read is as large as one, or both windows serve other streams.
    fn read_from_window(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(ahead) = &mut self.ahead else { return Ok(None) };
        if buf.len() >= READ_AHEAD_BYTES {
            return Ok(None);
        }
        ahead.reads += 1;
        let (pos, now) = (self.pos, ahead.reads);
        let windows = &mut ahead.windows;
        let i = match windows.iter().position(|w| w.holds(pos)) {
            Some(i) => i,
            None => {
                let continues = |w: &Window| w.len > 0 && w.start <= pos && pos - w.end() <= STREAM_GAP;
                let free = |w: &Window| w.len == 0 || now - w.used > IDLE_READS;
                let Some(i) = windows.iter().position(continues).or_else(|| windows.iter().position(free))
                else {
                    return Ok(None);
                };
                let Some(w) = windows.get_mut(i) else { return Ok(None) };
                if w.buf.is_empty() {
                    w.buf = vec![0; READ_AHEAD_BYTES];
                }
                w.len = 0;
                let n = sys::pread_full(self.fd.as_fd(), &mut w.buf, pos)?;
                (w.start, w.len) = (pos, n);
                i
            }
        };
        let Some(w) = windows.get_mut(i) else { return Ok(None) };
        w.used = now;
        let within = usize::try_from(pos - w.start).unwrap_or(usize::MAX);
        Ok(Some(copy_from(w.buf.get(..w.len).unwrap_or_default(), within, buf)))
    }

    /// A read-only share of this file (its descriptor and the storage's page cache) for reads
    /// from any thread, at positions of their own. Bytes this handle still buffers are not
    /// seen through it (a table is synced, its buffer empty, before it is live). The descriptor
    /// stays open while the reader lives, after this file is dropped and after the file is
    /// removed from the directory.
    pub fn reader(&self) -> FileReader {
        FileReader {
            fd: Arc::clone(&self.fd),
            key: self.key,
            cache: Arc::clone(&self.cache),
            cached: self.cached,
        }
    }

    /// Reads at `self.pos` through the page cache.
    fn read_cached(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let done = read_cached_at(self.fd.as_fd(), self.key, &self.cache, self.pos, buf)?;
        self.pos = checked_end(self.pos, done)?;
        Ok(done)
    }

    /// Drops buffered bytes at or past file offset `len` (a truncate to `len` is coming).
    pub(super) fn discard_buffered_from(&mut self, len: u64) {
        self.drop_read_ahead();
        // A mapping must never reach past the file's end (touching it would raise SIGBUS).
        self.mapped.unmap();
        let keep = len.saturating_sub(self.wbuf_start);
        if keep < self.wbuf.len() as u64 {
            // `keep` is below `wbuf.len()`, a usize.
            self.wbuf.truncate(keep as usize);
        }
    }

    /// Writes the buffer out with `pwrite`, retrying on `EINTR` and short writes.
    ///
    /// On error, the bytes that did reach the OS leave the buffer and the rest stay in it.
    pub(super) fn flush_buffer(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (written, result) = sys::pwrite_all(self.fd.as_fd(), &self.wbuf, self.wbuf_start);
        lock(&self.cache).invalidate(self.key, self.wbuf_start, self.wbuf_start + written as u64);
        self.drop_read_ahead();
        self.wbuf.drain(..written);
        // `written` is at most `wbuf.len()`, whose end offset was checked to fit in `off_t`.
        self.wbuf_start = self.wbuf_start.saturating_add(written as u64);
        self.note_written(self.wbuf_start);
        result
    }

    /// After bytes up to `end` reached the OS: starts their writeback once [`WRITEBACK_STEP`]
    /// bytes have accumulated since the last start (sequential writers: tables, WALs). A hint
    /// only: its failure (a file system without it) is ignored, durability comes from `sync`.
    fn note_written(&mut self, end: u64) {
        if !self.hints_writeback {
            return;
        }
        if end < self.writeback_from {
            // Written before the last start (a rewrite, or a truncate and refill): start over.
            self.writeback_from = end;
        } else if end - self.writeback_from >= WRITEBACK_STEP {
            let _ = sys::start_writeback(self.fd.as_fd(), self.writeback_from, end - self.writeback_from);
            self.writeback_from = end;
        }
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
        if let Some(n) = self.read_from_window(buf)? {
            self.pos = checked_end(self.pos, n)?;
            return Ok(n);
        }
        if self.cached {
            return self.read_cached(buf);
        }
        let n = sys::pread(self.fd.as_fd(), buf, self.pos)?;
        self.pos = checked_end(self.pos, n)?;
        Ok(n)
    }
}

impl Write for PosixFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.mapped.on && self.write_mapped(buf)? {
            return Ok(buf.len());
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
            let (written, result) = sys::pwrite_all(self.fd.as_fd(), buf, self.pos);
            lock(&self.cache).invalidate(self.key, self.pos, self.pos + written as u64);
            self.drop_read_ahead();
            result?;
            self.note_written(end);
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
                sys::fstat_size(self.fd.as_fd())?.checked_add_signed(delta)
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

/// The most pages [`read_cached_at`] reads with one `pread` (16 KiB: a run of records that
/// straddles pages, or a short scan read, costs one system call).
const MAX_READ_PAGES: usize = 4;

thread_local! {
    /// Where [`read_cached_at`] reads pages that are not cached: one per thread, zeroed once.
    static READ_BLOCK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; PAGE_SIZE * MAX_READ_PAGES]);
}

/// Runs `f` on the thread's read block (on a fresh one should it be in use, or gone as the
/// thread ends).
fn with_read_block<T>(mut f: impl FnMut(&mut [u8]) -> T) -> T {
    let ran = READ_BLOCK.try_with(|cell| cell.try_borrow_mut().ok().map(|mut block| f(&mut block)));
    match ran {
        Ok(Some(done)) => done,
        _ => f(&mut vec![0; PAGE_SIZE * MAX_READ_PAGES]),
    }
}

/// Reads at `pos` of the file `fd` (`key` in the page cache) through `cache`: whole pages are
/// read and kept, and `buf` is filled from them up to the end of the file. Returns the bytes read.
///
/// The cache's lock is held only to look pages up and to store them, never across a `pread`:
/// gets on other threads go on meanwhile. The pages from the first one missing to the last one
/// `buf` needs (at most [`MAX_READ_PAGES`]) are read with one `pread` into the thread's own
/// block, and kept only when no invalidation of this file came while the lock was let go
/// ([`PageCache::unchanged_since`]). When the cache does not admit those pages
/// ([`PageCache::admits`]: it is full, the read is not small and they were not asked about a
/// short while before), the rest of `buf` is read from the file directly and nothing is cached.
fn read_cached_at(
    fd: BorrowedFd<'_>,
    key: FileKey,
    cache: &Mutex<PageCache>,
    pos: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let page_size = PAGE_SIZE as u64;
    let mut done = 0;
    while done < buf.len() {
        let last = (pos + buf.len() as u64 - 1) / page_size;
        // What the cache holds, from `done` on; then the pages to read (from the first one
        // missing to the last one `buf` needs, at most `MAX_READ_PAGES`), if admitted.
        let (generation, first, pages, admitted) = {
            let mut cache = lock(cache);
            loop {
                let at = pos + done as u64;
                let Some(data) = cache.get(key, at / page_size) else {
                    let first = at / page_size;
                    let pages =
                        usize::try_from(last - first + 1).map_or(MAX_READ_PAGES, |p| p.min(MAX_READ_PAGES));
                    let admitted = cache.admits(key, first..=first + pages as u64 - 1, buf.len() - done);
                    break (cache.generation(), first, pages, admitted);
                };
                let copied = copy_from(data, (at % page_size) as usize, &mut buf[done..]);
                done += copied;
                if copied == 0 || done == buf.len() {
                    // The end of the file, or of `buf`.
                    return Ok(done);
                }
            }
        };
        let at = pos + done as u64;
        if !admitted {
            return Ok(done + sys::pread_full(fd, &mut buf[done..], at)?);
        }
        let copied = with_read_block(|block| {
            let read = block.get_mut(..pages * PAGE_SIZE).unwrap_or_default();
            let n = sys::pread_full(fd, read, first * page_size)?;
            let read = read.get(..n).unwrap_or_default();
            {
                let mut cache = lock(cache);
                if cache.unchanged_since(key, generation) {
                    for (i, page) in (first..).zip(read.chunks(PAGE_SIZE)) {
                        cache.insert(key, i, page);
                    }
                }
            }
            io::Result::Ok(copy_from(read, (at % page_size) as usize, &mut buf[done..]))
        })?;
        if copied == 0 {
            break; // end of file
        }
        done += copied;
    }
    Ok(done)
}

/// A read-only share of an open [`PosixFile`] ([`PosixFile::reader`]): its descriptor and its
/// storage's page cache. Reads are positioned (`pread`), so any number of threads read through
/// one `FileReader` at once, each at positions of its own; the page cache's own lock is the
/// only one they take. Cloning it shares the descriptor.
#[derive(Clone)]
pub struct FileReader {
    fd: Arc<OwnedFd>,
    key: FileKey,
    cache: Arc<Mutex<PageCache>>,
    /// The page cache has room (capacity is fixed when the storage opens).
    cached: bool,
}

impl fmt::Debug for FileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileReader").field("fd", &self.fd).field("cached", &self.cached).finish()
    }
}

impl FileReader {
    /// The file's identity (device and inode numbers): equal for two readers of one file.
    pub fn file_key(&self) -> FileKey {
        self.key
    }

    /// Reads up to `buf.len()` bytes at `pos`, through the page cache when it has room; returns
    /// how many (0 at or past the end of the file; a short count is not the end).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        checked_end(pos, buf.len())?;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.cached {
            read_cached_at(self.fd.as_fd(), self.key, &self.cache, pos, buf)
        } else {
            sys::pread(self.fd.as_fd(), buf, pos)
        }
    }

    /// Reads up to `buf.len()` bytes at `pos` past the page cache (a scan's chunks); returns how
    /// many, fewer only at the end of the file.
    pub fn read_through(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        sys::pread_full(self.fd.as_fd(), buf, pos)
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> io::Result<u64> {
        sys::fstat_size(self.fd.as_fd())
    }
}

/// Copies what `page` holds from `within` into `dst`; returns the bytes copied.
fn copy_from(page: &[u8], within: usize, dst: &mut [u8]) -> usize {
    let src = page.get(within..).unwrap_or(&[]);
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

/// Locks the cache; a poisoned lock (a panic elsewhere while holding it) still guards valid data.
pub(super) fn lock(cache: &Mutex<PageCache>) -> MutexGuard<'_, PageCache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::storage::tests::{read_all, storage};
    use crate::storage::PosixStorage;
    use minivault_core::names::{file_name, FileKind};
    use minivault_core::Storage;
    use std::fs;

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

    /// Reads `len` bytes at `at` through `file` (a seek, then reads until done or the end).
    fn read_at(file: &mut PosixFile, at: u64, len: usize) -> Vec<u8> {
        file.seek(SeekFrom::Start(at)).unwrap();
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match file.read(&mut out[done..]).unwrap() {
                0 => break,
                n => done += n,
            }
        }
        out.truncate(done);
        out
    }

    #[test]
    fn read_ahead_serves_sequential_and_scattered_reads_as_the_file_holds_them() {
        let (dir, _) = storage();
        // Three windows and a bit: reads cross window boundaries and the end of the file.
        let data: Vec<u8> = (0..READ_AHEAD_BYTES * 3 + 1000).map(|i| (i * 31 % 251) as u8).collect();
        let name = file_name(FileKind::Table, 7);
        fs::write(dir.path().join(name.as_str()), &data).unwrap();
        for cache_bytes in [0, 1 << 20] {
            let mut storage =
                PosixStorage::open_dir_with_cache(dir.path(), cache_bytes).unwrap().with_read_ahead();
            let mut file = storage.open(&name).unwrap();
            assert!(file.ahead.is_some());
            // Sequential pieces of varied sizes, as a merge reads records.
            let (mut at, mut step) = (0usize, 1usize);
            while at < data.len() {
                let want = step.min(data.len() - at);
                assert_eq!(read_at(&mut file, at as u64, step), &data[at..at + want], "at {at}");
                at += want;
                step = step * 7 % 601 + 1;
            }
            assert!(read_at(&mut file, data.len() as u64, 10).is_empty(), "the end of the file");
            // Scattered reads (an index, a footer) and a jump back into the window.
            for at in [data.len() - 60, 5, READ_AHEAD_BYTES * 2 - 3, data.len() - 3000, 7, 8] {
                let want = 200.min(data.len() - at);
                assert_eq!(read_at(&mut file, at as u64, 200), &data[at..at + want], "at {at}");
            }
            // As a merge reads an input: a 4-byte record offset from the end part, then a record
            // from the start part (two forward streams), and a third stream that starts over
            // each time (range deletes walked again for each key), now and then a far read.
            let ranges = 30_000;
            for i in 0..3000usize {
                let slot = data.len() - 12_000 + i * 4;
                assert_eq!(read_at(&mut file, slot as u64, 4), &data[slot..slot + 4], "slot {i}");
                let record = i * 9;
                assert_eq!(read_at(&mut file, record as u64, 9), &data[record..record + 9], "record {i}");
                for r in (ranges..ranges + 40 * (i % 3)).step_by(20) {
                    assert_eq!(read_at(&mut file, r as u64, 20), &data[r..r + 20], "range {i}");
                }
                if i % 500 == 0 {
                    let far = (i * 7919) % (data.len() - 100);
                    assert_eq!(read_at(&mut file, far as u64, 100), &data[far..far + 100], "far {i}");
                }
                // The two streams keep their windows (once the windows the reads before this
                // loop took are idle); the third and the far reads take none.
                let windows = &file.ahead.as_ref().unwrap().windows;
                if i >= IDLE_READS as usize {
                    // The last byte each stream read (the first may lie in the window before).
                    assert!(windows.iter().any(|w| w.holds(slot as u64 + 3)), "slot {i}");
                    assert!(windows.iter().any(|w| w.holds(record as u64 + 8)), "record {i}");
                }
            }
            // A read larger than the window goes around it.
            assert_eq!(read_at(&mut file, 3, READ_AHEAD_BYTES + 10), &data[3..READ_AHEAD_BYTES + 13]);
        }
    }

    #[test]
    fn read_ahead_window_forgets_what_the_handle_writes_or_cuts() {
        let (dir, _) = storage();
        let name = file_name(FileKind::Table, 7);
        fs::write(dir.path().join(name.as_str()), vec![1u8; 10_000]).unwrap();
        let mut storage = PosixStorage::open_dir(dir.path()).unwrap().with_read_ahead();
        let mut file = storage.open(&name).unwrap();
        assert_eq!(read_at(&mut file, 0, 100), vec![1u8; 100]);
        // The window holds bytes 0..10000 now; a write through the handle changes some of them.
        file.seek(SeekFrom::Start(50)).unwrap();
        file.write_all(&[2u8; 10]).unwrap();
        assert_eq!(read_at(&mut file, 40, 30), [[1u8; 10], [2u8; 10], [1u8; 10]].concat());
        file.seek(SeekFrom::Start(200)).unwrap();
        file.write_all(&[3u8; 100_000]).unwrap();
        assert_eq!(read_at(&mut file, 190, 20), [[1u8; 10], [3u8; 10]].concat());
        storage.truncate(&mut file, 195).unwrap();
        assert_eq!(read_at(&mut file, 190, 20), vec![1u8; 5]);
        // Only tables get windows: not a created file, nor the output a merge reads back
        // through a second handle while the first one writes it.
        let tmp = file_name(FileKind::TempTable, 8);
        assert!(storage.create(&tmp).unwrap().ahead.is_none());
        assert!(storage.open(&tmp).unwrap().ahead.is_none());
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
    fn writeback_is_started_every_step_and_restarts_after_a_rewrite_below_it() {
        let (dir, mut storage) = storage();
        let mut file = storage.create("f").unwrap();
        let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        let mut expected = Vec::new();
        while (expected.len() as u64) < 3 * WRITEBACK_STEP {
            file.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
        }
        file.flush().unwrap();
        // Started at each step: what is left since the last start is under one step.
        assert!(file.writeback_from >= 2 * WRITEBACK_STEP, "{}", file.writeback_from);
        assert!(expected.len() as u64 - file.writeback_from < WRITEBACK_STEP);
        // A rewrite near the start moves the mark back to it; the bytes are all there.
        file.seek(SeekFrom::Start(10)).unwrap();
        file.write_all(b"rewritten").unwrap();
        file.flush().unwrap();
        assert_eq!(file.writeback_from, 19);
        expected[10..19].copy_from_slice(b"rewritten");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), expected);
    }

    #[test]
    fn a_storage_without_wal_writeback_starts_none_for_its_wals_and_still_does_for_its_tables() {
        let (dir, storage) = storage();
        let mut storage = storage.without_wal_writeback();
        let wal = file_name(FileKind::Wal, 3);
        let table = file_name(FileKind::Table, 2);
        let chunk = vec![0x5a_u8; 100_000];
        let fill = |file: &mut PosixFile| {
            while file.pos < 3 * WRITEBACK_STEP {
                file.write_all(&chunk).unwrap();
            }
            file.flush().unwrap();
        };
        let mut w = storage.create(&wal).unwrap();
        let mut t = storage.create(&table).unwrap();
        fill(&mut w);
        fill(&mut t);
        assert_eq!(w.writeback_from, 0, "a WAL's writeback was started");
        assert!(t.writeback_from >= 2 * WRITEBACK_STEP, "{}", t.writeback_from);
        // Opened again (the newest WAL on open, appended to): still none.
        drop(w);
        let mut w = storage.open(&wal).unwrap();
        w.seek(SeekFrom::End(0)).unwrap();
        fill(&mut w);
        assert_eq!(w.writeback_from, 0, "a reopened WAL's writeback was started");
        // The bytes are all there: only the hint is gone.
        let len = fs::metadata(dir.path().join(wal.as_str())).unwrap().len();
        assert_eq!(len, storage.len(&mut w).unwrap());
        assert!(len >= 3 * WRITEBACK_STEP);
        // A storage with the default starts it for WALs as for tables.
        let (_dir2, mut plain) = super::super::tests::storage();
        let mut w = plain.create(&wal).unwrap();
        fill(&mut w);
        assert!(w.writeback_from >= 2 * WRITEBACK_STEP, "{}", w.writeback_from);
    }

    /// A storage in a temporary directory and WAL `id` created in it, when the directory's file
    /// system is one whose WALs are mapped ([`sys::maps_safely`]); `None` (the test is skipped,
    /// and says so) elsewhere.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn mapped_wal(
        id: u64,
    ) -> Option<(tempfile::TempDir, PosixStorage, minivault_core::names::FileName, PosixFile)> {
        let (dir, mut storage) = storage();
        let wal = file_name(FileKind::Wal, id);
        let file = storage.create(&wal).unwrap();
        if !sys::maps_safely(file.fd.as_fd()) {
            eprintln!("skipped: the temporary directory's file system is not mapped");
            return None;
        }
        Some((dir, storage, wal, file))
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_wal_copies_appends_within_its_preallocated_size_through_a_mapping_and_the_rest_by_pwrite() {
        let Some((dir, mut storage, wal, mut file)) = mapped_wal(7) else { return };
        let mut expected = b"header: past the file's end, so written".to_vec();
        file.write_all(&expected).unwrap();
        file.flush().unwrap();
        assert!(file.mapped.map.is_none(), "a write past the end was mapped");
        // Preallocated: records land in the mapping, window after window, and reach the file.
        storage.preallocate(&mut file, 3 * MAP_WINDOW).unwrap();
        let mut n = 0u32;
        while (expected.len() as u64) < 2 * MAP_WINDOW + 1000 {
            let record: Vec<u8> = (0..141u32).map(|i| (i.wrapping_mul(7) ^ n) as u8).collect();
            file.write_all(&record).unwrap();
            file.flush().unwrap();
            expected.extend_from_slice(&record);
            n += 1;
            assert!(file.mapped.map.is_some(), "record {n} was not copied through the mapping");
        }
        assert!(file.wbuf.is_empty(), "a record went through the write buffer");
        let on_disk = fs::read(dir.path().join(wal.as_str())).unwrap();
        assert_eq!(on_disk.len() as u64, 3 * MAP_WINDOW, "the preallocated size changed");
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert!(on_disk[expected.len()..].iter().all(|&b| b == 0));
        // Read back through the handle (pread, the same pages).
        let mut back = vec![0u8; expected.len()];
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_exact(&mut back).unwrap();
        assert_eq!(back, expected);
        // Past the preallocated size: `pwrite`, and the file grows as before.
        file.seek(SeekFrom::Start(3 * MAP_WINDOW - 10)).unwrap();
        file.write_all(&[0xab; 30]).unwrap();
        file.flush().unwrap();
        assert_eq!(fs::metadata(dir.path().join(wal.as_str())).unwrap().len(), 3 * MAP_WINDOW + 20);
        // A table is never mapped.
        let mut table = storage.create(&file_name(FileKind::Table, 8)).unwrap();
        storage.preallocate(&mut table, MAP_WINDOW).unwrap();
        table.write_all(b"entries").unwrap();
        assert!(table.mapped.map.is_none() && !table.wbuf.is_empty());
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_mapped_append_lands_after_bytes_still_buffered_and_is_read_back_over_a_cached_page() {
        let Some((dir, mut storage, wal, mut file)) = mapped_wal(11) else { return };
        storage.preallocate(&mut file, MAP_WINDOW).unwrap();
        // A page read (and cached) before a mapped write overwrites part of it.
        let mut before = [0xffu8; 64];
        file.seek(SeekFrom::Start(64)).unwrap();
        file.read_exact(&mut before).unwrap();
        assert_eq!(before, [0u8; 64]);
        // Past the end: buffered, not yet handed over; then a mapped write below it.
        file.seek(SeekFrom::Start(MAP_WINDOW - 10)).unwrap();
        file.write_all(&[7u8; 30]).unwrap();
        assert!(!file.wbuf.is_empty());
        file.seek(SeekFrom::Start(100)).unwrap();
        file.write_all(&[9u8; 20]).unwrap();
        assert!(file.mapped.map.is_some() && file.wbuf.is_empty(), "the buffered bytes did not go first");
        let on_disk = fs::read(dir.path().join(wal.as_str())).unwrap();
        assert_eq!(on_disk.len() as u64, MAP_WINDOW + 20);
        assert!(on_disk[100..120].iter().all(|&b| b == 9));
        assert!(on_disk[(MAP_WINDOW - 10) as usize..].iter().all(|&b| b == 7));
        // Through the handle: the page cached before shows the mapped write.
        let mut after = [0u8; 64];
        file.seek(SeekFrom::Start(64)).unwrap();
        file.read_exact(&mut after).unwrap();
        assert_eq!(&after[..36], &[0u8; 36]);
        assert_eq!(&after[36..56], &[9u8; 20]);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_truncate_unmaps_a_wal_so_that_no_append_touches_past_its_end() {
        let Some((dir, mut storage, wal, mut file)) = mapped_wal(9) else { return };
        storage.preallocate(&mut file, MAP_WINDOW).unwrap();
        file.write_all(&[1u8; 5000]).unwrap();
        assert!(file.mapped.map.is_some());
        // Cut below the mapped window (as a full disk's cut of a record does), then append at
        // the new end and past it: a mapping kept from before would reach past the end and
        // SIGBUS; the writes go through `pwrite` instead.
        storage.truncate(&mut file, 4096).unwrap();
        assert!(file.mapped.map.is_none());
        file.seek(SeekFrom::Start(4096)).unwrap();
        file.write_all(&[2u8; 9000]).unwrap();
        file.flush().unwrap();
        let on_disk = fs::read(dir.path().join(wal.as_str())).unwrap();
        assert_eq!(on_disk.len(), 4096 + 9000);
        assert!(on_disk[..4096].iter().all(|&b| b == 1) && on_disk[4096..].iter().all(|&b| b == 2));
        // Preallocated again: mapped again.
        storage.preallocate(&mut file, 2 * MAP_WINDOW).unwrap();
        file.write_all(&[3u8; 100]).unwrap();
        assert!(file.mapped.map.is_some());
        // A read-only storage never maps (its descriptors cannot write).
        drop(file);
        let mut ro = PosixStorage::open_dir_read_only(dir.path(), 0).unwrap();
        let mut f = ro.open(&wal).unwrap();
        assert!(!f.mapped.on);
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        assert_eq!(b, [1]);
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
    fn a_read_over_cached_and_missing_pages_returns_the_files_bytes_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = PosixStorage::open_dir(dir.path()).unwrap();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 251) as u8).collect();
        fs::write(dir.path().join("f"), &data).unwrap();
        let mut f = storage.open("f").unwrap();
        // Page 2 cached, then a read from inside page 0 to inside page 8: missing pages on both
        // sides of a cached one, more of them than one `pread` takes.
        f.seek(SeekFrom::Start(2 * PAGE_SIZE as u64 + 7)).unwrap();
        read_up_to(&mut f, &mut [0u8; 10]);
        let mut buf = vec![0u8; 8 * PAGE_SIZE + 100];
        f.seek(SeekFrom::Start(100)).unwrap();
        assert_eq!(read_up_to(&mut f, &mut buf), buf.len());
        assert_eq!(buf, &data[100..100 + buf.len()]);
        // Every page it touched is cached now: the same read again is all hits.
        let (hits, misses) = storage.page_cache_counts();
        f.seek(SeekFrom::Start(100)).unwrap();
        read_up_to(&mut f, &mut buf);
        assert_eq!(buf, &data[100..100 + buf.len()]);
        assert_eq!(storage.page_cache_counts(), (hits + 9, misses));
        // A read past the end of the file stops there.
        let mut tail = vec![0u8; 3 * PAGE_SIZE];
        f.seek(SeekFrom::Start(39_000)).unwrap();
        assert_eq!(read_up_to(&mut f, &mut tail), 1000);
        assert_eq!(&tail[..1000], &data[39_000..]);
    }

    /// Once the cache is full, a read of a run's size whose pages were not asked about a short
    /// while before is read from the file past the cache; asked about again, its pages are
    /// cached; small reads are cached as before.
    #[test]
    fn a_full_cache_reads_a_run_past_itself_until_its_pages_are_asked_about_again() {
        let dir = tempfile::tempdir().unwrap();
        let pages = crate::page_cache::ADMIT_ALL_BELOW * 2;
        let mut storage = PosixStorage::open_dir_with_cache(dir.path(), pages * PAGE_SIZE).unwrap();
        let data: Vec<u8> = (0..8 * pages as u32 * PAGE_SIZE as u32).map(|i| (i * 13 % 251) as u8).collect();
        fs::write(dir.path().join("f"), &data).unwrap();
        let f = storage.open("f").unwrap().reader();
        let read = |at: usize, len: usize| {
            let mut buf = vec![0u8; len];
            assert_eq!(f.read_at(at as u64, &mut buf).unwrap(), len);
            assert_eq!(buf, &data[at..at + len], "at {at}");
        };
        // Fill every slot (a small read of each page: cached whatever admission says).
        for p in 0..pages {
            read(p * PAGE_SIZE, 8);
        }
        let counts = |s: &mut PosixStorage| {
            let (hits, misses) = s.page_cache_counts();
            (hits, misses, s.page_cache_declined())
        };
        let (hits, misses, declined) = counts(&mut storage);
        assert_eq!(declined, 0);
        // A run of 2 KiB across two pages not read before: read past the cache.
        let run = 4 * pages * PAGE_SIZE + PAGE_SIZE - 1000;
        read(run, 2048);
        assert_eq!(counts(&mut storage), (hits, misses, declined + 1));
        // Asked about again: both pages are read and cached; then it is all hits.
        read(run, 2048);
        assert_eq!(counts(&mut storage), (hits, misses + 2, declined + 1));
        read(run, 2048);
        assert_eq!(counts(&mut storage), (hits + 2, misses + 2, declined + 1));
        // A small read of a page never read is cached at once.
        read(6 * pages * PAGE_SIZE + 10, 100);
        assert_eq!(counts(&mut storage), (hits + 2, misses + 3, declined + 1));
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
