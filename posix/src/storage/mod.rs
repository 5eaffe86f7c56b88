//! [`PosixStorage`]: the engine's [`Storage`] as one directory of files, driven through `libc`.
//!
//! The storage owns a directory file descriptor and resolves every name relative to it
//! (`openat`, `renameat`, `unlinkat`), so a file name can never escape the directory. Each open
//! file is a [`PosixFile`]: a file descriptor, a logical position and a small write buffer.
//!
//! # Buffering and durability
//! - [`Write::write`](embedded_io::Write::write) appends to an in-memory buffer (at most [`WRITE_BUFFER_CAPACITY`] bytes), so
//!   the small pieces of one record reach the OS in one `pwrite`. A WAL's writes within its
//!   preallocated size are copied into a shared mapping of the file instead, on Linux and
//!   Android file systems that allocate at `fallocate` ([`PosixFile`]'s mapped appends): they
//!   reach the OS (its page cache) with the copy, and `fdatasync` writes them as any page.
//! - [`Write::flush`](embedded_io::Write::flush), [`Read::read`](embedded_io::Read::read), [`Seek::seek`](embedded_io::Seek::seek), [`Storage::len`], [`Storage::truncate`],
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
//!
//! # Files of this module
//! - this file: [`PosixStorage`], the directory (names, creation, listing, renames, removal);
//! - [`file`]: [`PosixFile`], an open file with its write buffer and cached reads;
//! - `sys`: every libc call, each wrapped once, with the one `EINTR` retry helper.

mod file;
mod reaper;
mod sys;

pub use file::{FileReader, PosixFile, MAP_WINDOW, WRITE_BUFFER_CAPACITY};

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minivault_core::names::{parse_name, FileKind};
use minivault_core::Storage;

use crate::page_cache::PageCache;
use file::lock;
pub(crate) use reaper::{Reaper, RemovalQueue, Settler};
pub(crate) use sys::flock_exclusive_now;

/// Fewer WAL unlinks than this queued at the reaper, and an obsolete WAL goes to it too (else
/// it is unlinked in the call): the obsolete WALs a crash leaves in the directory stay few.
/// Open removes any number of them (core `Version::recover` keeps the newest
/// [`minivault_core::MAX_WALS`] WALs and needs every older one covered, which an obsolete WAL
/// is); the bound keeps the reaper's backlog, and what a crash leaves to list and remove, small.
const MAX_QUEUED_WAL_UNLINKS: usize = 2;

/// Listings [`PosixStorage::hold_files`] takes at most before giving up on a directory that
/// changes under every one of them (each takes microseconds; a writer's flush, milliseconds).
const HOLD_LISTINGS: usize = 1000;

/// Default size of the read cache shared by a directory's files: 8 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;

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
    /// Opened with [`PosixStorage::open_dir_read_only`]: files are opened `O_RDONLY`, and every
    /// call that would change the directory or a file fails.
    read_only: bool,
    /// A second descriptor of the WAL files created or opened last and the one before it (newest
    /// first), for syncs made outside the engine ([`PosixStorage::wal_sync_handle`]).
    wal_handles: [Option<(String, WalSyncHandle)>; 2],
    /// Keeps `wal_handles` (the engine's storage); a second handle does not: the flush thread
    /// creates spare WALs ([`minivault_core::wal::spare`]) that the engine opens itself.
    keeps_wal_handles: bool,
    /// Where [`Storage::remove_obsolete`] sends its names while a [`Reaper`] runs (the engine's
    /// storage, with background threads); `None`: they are unlinked at once.
    removals: Option<RemovalQueue>,
    /// Tables opened get read-ahead windows ([`PosixStorage::with_read_ahead`]).
    read_ahead: bool,
    /// WALs created or opened start their writeback as they grow; `false`:
    /// [`PosixStorage::without_wal_writeback`].
    wal_writeback: bool,
    /// WALs opened or created here append through a shared mapping: a writable storage on a
    /// file system where a write fault cannot fail for want of space ([`sys::maps_safely`] of
    /// the directory, asked once at open: every file of the storage is on its file system).
    maps_wals: bool,
    /// [`Storage::max_files`]: what the process's limit on open files leaves the database, read
    /// once when the storage is opened.
    max_files: Option<usize>,
    /// While a read-only open runs ([`PosixStorage::hold_files`]): the WALs and tables held
    /// open by name, which [`Storage::list`] and [`Storage::open`] then serve instead of the
    /// directory.
    held: Option<BTreeMap<String, PosixFile>>,
}

/// A descriptor of a WAL file of its own, opened when the engine created or opened the file
/// (before any record was written through this storage), for `fdatasync` by a thread that does
/// not hold the engine: the group commit of [`crate::Db`].
///
/// It is a separate open of the file, not a `dup`: the kernel reports a write-back error to
/// every open file description that was open when it happened, so a failure seen here is seen
/// by the engine's own descriptor too (and the other way round), and neither can consume the
/// other's report and turn a later sync into a false success.
#[derive(Debug, Clone)]
pub struct WalSyncHandle(Arc<OwnedFd>);

impl WalSyncHandle {
    /// `fdatasync` (`fsync` on unixes other than Linux and Android): everything handed to the
    /// OS for this file before the call is durable when it returns `Ok`.
    pub fn sync_data(&self) -> io::Result<()> {
        sys::sync_data(self.0.as_fd())
    }
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
        Self::open_existing(path, cache_bytes, false)
    }

    /// Opens the existing directory at `path` for reading only: nothing is created, files are
    /// opened `O_RDONLY`, and creating, truncating, extending, syncing, renaming or removing
    /// fails with [`io::ErrorKind::PermissionDenied`]. Works without write permission.
    pub fn open_dir_read_only(path: &Path, cache_bytes: usize) -> io::Result<Self> {
        Self::open_existing(path, cache_bytes, true)
    }

    fn open_existing(path: &Path, cache_bytes: usize, read_only: bool) -> io::Result<Self> {
        // std opens with O_CLOEXEC; with read-only access and O_DIRECTORY these are exactly the
        // flags we want, without an `unsafe` block.
        let dir = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(path)?;
        let cache = Arc::new(Mutex::new(PageCache::new(cache_bytes)));
        let dir = OwnedFd::from(dir);
        let maps_wals = !read_only && maps_safely(&dir);
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            cache,
            read_only,
            wal_handles: [None, None],
            keeps_wal_handles: true,
            removals: None,
            read_ahead: false,
            wal_writeback: true,
            maps_wals,
            max_files: files_for_the_database(),
            held: None,
        })
    }

    /// The second descriptor of WAL file `name` ([`WalSyncHandle`]), if it is one of the two
    /// WALs this storage created or opened last.
    pub fn wal_sync_handle(&self, name: &str) -> Option<WalSyncHandle> {
        self.wal_handles.iter().flatten().find(|(n, _)| n == name).map(|(_, h)| h.clone())
    }

    /// After the engine created or opened `name`: a WAL gets its second descriptor now, before
    /// anything is written to it through this storage. Best effort: without one, the group
    /// commit syncs through the engine.
    fn remember_wal(&mut self, name: &str) {
        if self.read_only || !self.keeps_wal_handles || !name.ends_with(".wal") {
            return;
        }
        // The WAL before it keeps its handle: a rotation leaves it to the next sync.
        let [newest, previous] = &mut self.wal_handles;
        // (A WAL created and removed again, out of space, left its slot empty: the one before
        // it stays.)
        let before = newest.take().or_else(|| previous.take());
        *previous = before.filter(|(n, _)| n != name);
        *newest = file_name(name)
            .and_then(|c| sys::open_at(self.dir.as_fd(), &c, libc::O_RDWR))
            .ok()
            .map(|fd| (name.to_owned(), WalSyncHandle(Arc::new(fd))));
    }

    /// A second handle on the same directory, for another thread, with a read cache of its own
    /// of `cache_bytes` (the background compaction of [`crate::Db`] runs on one: its merges read
    /// every input page once, and must not push the hot set out of the reads' cache). Its own
    /// directory descriptor (a `dup`), the same read-only flag.
    ///
    /// Pages are keyed by device and inode, and a file's writes invalidate only the cache of
    /// the handle that wrote it: a file written through one handle must be opened through the
    /// other with [`PosixStorage::open_fresh`], and [`PosixStorage::clear_cache`] forgets what
    /// a cache may hold of files removed since (their inode numbers are reused).
    pub fn second_handle(&self, cache_bytes: usize) -> io::Result<Self> {
        Ok(Self {
            path: self.path.clone(),
            dir: self.dir.try_clone()?,
            cache: Arc::new(Mutex::new(PageCache::new(cache_bytes))),
            read_only: self.read_only,
            // Compaction workers write tables, never a WAL; the flush thread makes spare WALs,
            // which the engine opens (and keeps a sync descriptor of) when a rotation takes one.
            wal_handles: [None, None],
            keeps_wal_handles: false,
            removals: None,
            read_ahead: false,
            wal_writeback: self.wal_writeback,
            maps_wals: self.maps_wals,
            max_files: self.max_files,
            held: None,
        })
    }

    /// This storage, with read-ahead windows ([`file::READ_AHEAD_BYTES`]) on every table
    /// (`<id>.sst`) it opens: reads are served from them, with one `pread` per window and
    /// neither the page cache's lock nor a lookup per read. For a compaction worker, whose
    /// input tables are read once from start to end. Only tables: a table never changes once
    /// its name is given (by the rename that publishes it), so what a window holds cannot go
    /// stale; the output's `<id>.tmp`, read back through a second handle while the first one
    /// writes it, goes through the page cache, which writes invalidate.
    pub(crate) fn with_read_ahead(mut self) -> Self {
        self.read_ahead = true;
        self
    }

    /// This storage, leaving the writeback of the WALs it creates or opens to the kernel (no
    /// [`sys::start_writeback`] every [`file::WRITEBACK_STEP`]): for a database that syncs only
    /// when asked (`Durability::Manual`). Its WALs then reach the device when the kernel's
    /// writeback takes them (on Linux, pages dirty for 30 seconds) or a sync asks; a WAL that a
    /// flush retires before either is removed with its pages still dirty, and its bytes are
    /// never written to the device (`/proc/self/io` counts them as cancelled). Where syncs are
    /// due anyway (the other modes), starting the writeback early only spreads the same device
    /// writes out, so that a sync has less left to wait for.
    pub(crate) fn without_wal_writeback(mut self) -> Self {
        self.wal_writeback = false;
        self
    }

    /// A storage whose WALs append with `pwrite` only, never through a mapping
    /// ([`crate::Options::map_wal_appends`] off).
    pub(crate) fn without_mapped_wals(mut self) -> Self {
        self.maps_wals = false;
        self
    }

    /// A descriptor of the directory, for a thread that unlinks in it ([`Reaper::start`]).
    pub(crate) fn dir_handle(&self) -> io::Result<OwnedFd> {
        self.dir.try_clone()
    }

    /// Sends the names of [`Storage::remove_obsolete`], the files of [`Storage::retire`] and
    /// what [`PosixStorage::drop_later`] is given to `queue` from now on (`None`: unlinks,
    /// closes and drops them at once again).
    pub(crate) fn set_removals(&mut self, queue: Option<RemovalQueue>) {
        self.removals = queue;
    }

    /// Lets the sync descriptor of WAL `name` go, if it is kept: a removed WAL's descriptor
    /// would hold the file's blocks.
    fn forget_wal_handle(&mut self, name: &str) {
        for slot in &mut self.wal_handles {
            if slot.as_ref().is_some_and(|(n, _)| n == name) {
                *slot = None;
            }
        }
    }

    /// Drops `value` on the reaper's thread while a [`RemovalQueue`] is attached (after the
    /// removals queued before it), here and now otherwise: for what may hold the last
    /// descriptor of a removed table, whose close frees the table's blocks.
    pub(crate) fn drop_later<T: Send + 'static>(&self, value: T) {
        match &self.removals {
            Some(queue) => queue.drop_later(value),
            None => drop(value),
        }
    }

    /// Opens the existing file `name` after dropping any page this storage's cache holds for
    /// its inode: for a file written through another handle ([`PosixStorage::second_handle`]).
    pub fn open_fresh(&mut self, name: &str) -> io::Result<PosixFile> {
        let file = self.open(name)?;
        lock(&self.cache).forget(file.key);
        Ok(file)
    }

    /// Holds every WAL and table of the directory open, for an open beside a writer that
    /// flushes and compacts meanwhile: from now until [`PosixStorage::release_files`],
    /// [`Storage::list`] lists the held files and [`Storage::open`] opens only them, so the
    /// engine's open reads one set of files however many the writer retires meanwhile.
    ///
    /// The set held is the directory as one listing saw it, taken once two listings in a row
    /// agree (the same names, each on the same inode) and every file in them is open. Each
    /// listing opens, in id order, what it shows that is not held as shown: a new name, or a
    /// name renamed over since (a compaction's output takes its newest input's name). Files
    /// opened and then removed are let go at the end. The writer keeps the directory
    /// recoverable at every moment (what a crash would leave: a WAL is removed only once a
    /// table holds its records, a table only once its replacement is in place), so the set is a
    /// state the engine opens as a prefix of the writer's history that holds every write
    /// acknowledged before the open began. A spare WAL not yet taken when its header is read
    /// between the two listings is left out: it holds nothing at that moment, and a rotation
    /// that takes it afterwards belongs to the writer's later history. A directory that never stays the same for two
    /// listings in a row ([`HOLD_LISTINGS`] of them, each taking microseconds where a busy
    /// writer's flushes are milliseconds apart) is [`io::ErrorKind::TimedOut`].
    pub(crate) fn hold_files(&mut self) -> io::Result<()> {
        self.held = None;
        // Each held file with the inode number its listing showed for the name.
        let mut held: BTreeMap<String, (u64, PosixFile)> = BTreeMap::new();
        let mut previous: Option<Vec<(String, u64)>> = None;
        // The WALs that were spares not yet taken ([`minivault_core::wal::spare`]) when their
        // headers were read, between the previous listing and this one.
        let mut spares: Vec<String> = Vec::new();
        for _ in 0..HOLD_LISTINGS {
            let listing = match self.engine_files() {
                Ok(listing) => listing,
                // An entry removed while it was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    previous = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut opened_all = true;
            for (name, ino) in &listing {
                if held.get(name).is_some_and(|(held_ino, _)| held_ino == ino) {
                    continue;
                }
                match self.open_at(name, libc::O_RDONLY) {
                    Ok(file) => {
                        held.insert(name.clone(), (*ino, file));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        held.remove(name);
                        opened_all = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            if opened_all && previous.as_ref() == Some(&listing) {
                held.retain(|name, _| listing.binary_search_by(|(n, _)| n.as_str().cmp(name)).is_ok());
                // A spare holds nothing at the moment the listings agree on; taken later, it
                // would hold writes of a rotation after that moment (and the MemTable before
                // it could be past what the open can replay).
                held.retain(|name, _| !spares.contains(name));
                self.held = Some(held.into_iter().map(|(name, (_, file))| (name, file)).collect());
                return Ok(());
            }
            spares = held
                .iter()
                .filter(|(name, (_, file))| name.ends_with(".wal") && is_untaken_spare(file))
                .map(|(name, _)| name.clone())
                .collect();
            previous = Some(listing);
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the directory changed between each two of {HOLD_LISTINGS} listings"),
        ))
    }

    /// The WALs and tables of the directory, with the inode number of each (from the listing
    /// itself), sorted by name: by kind and id, since names are fixed-width ids.
    fn engine_files(&self) -> io::Result<Vec<(String, u64)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if matches!(parse_name(&name), Some((FileKind::Wal | FileKind::Table, _))) {
                files.push((name, entry.ino()));
            }
        }
        files.sort_unstable();
        Ok(files)
    }

    /// Ends [`PosixStorage::hold_files`]: the files the engine did not open are closed, and
    /// listing and opening go to the directory again.
    pub(crate) fn release_files(&mut self) {
        self.held = None;
    }

    /// Drops every page of the read cache.
    pub fn clear_cache(&mut self) {
        lock(&self.cache).clear();
    }

    /// True when opened with [`PosixStorage::open_dir_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Fails when the storage is read-only: the guard of every call that changes something.
    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "the storage is open read-only"))
        } else {
            Ok(())
        }
    }

    /// The read cache's counters: pages found in it, and pages read into it.
    pub fn page_cache_counts(&self) -> (u64, u64) {
        let cache = lock(&self.cache);
        (cache.hits, cache.misses)
    }

    /// Reads that missed the full read cache and were read past it, their pages not admitted
    /// ([`crate::page_cache::PageCache::admits`]).
    pub fn page_cache_declined(&self) -> u64 {
        lock(&self.cache).declined
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
        sys::size_from_stat(&sys::stat_at(self.dir.as_fd(), &name)?)
    }

    /// Opens `name` relative to the directory with `flags` (plus `O_CLOEXEC`); a WAL of a
    /// storage [`PosixStorage::without_wal_writeback`] starts no writeback, and one of a
    /// storage that maps WALs appends through a mapping.
    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<PosixFile> {
        let c_name = file_name(name)?;
        let fd = sys::open_at(self.dir.as_fd(), &c_name, flags)?;
        let key = sys::fstat_key(fd.as_fd())?;
        if flags & libc::O_TRUNC != 0 || self.read_only {
            // A new file may reuse the inode number of a removed one; and a read-only handle
            // beside a writer sees none of the writer's removals, so what it cached under this
            // inode (in an open that started over) may be another file's.
            lock(&self.cache).forget(key);
        }
        let file = PosixFile::new(fd, key, Arc::clone(&self.cache));
        if !matches!(parse_name(name), Some((FileKind::Wal, _))) {
            return Ok(file);
        }
        // A WAL, appended to by every write: its writeback left to the kernel without
        // `wal_writeback`, its appends through a mapping of its preallocated tail with
        // `maps_wals`.
        let file = if self.wal_writeback { file } else { file.without_writeback_hints() };
        Ok(if self.maps_wals { file.with_mapped_appends() } else { file })
    }
}

/// Whether `file` is a WAL whose header is a spare's not yet taken by a rotation
/// ([`minivault_core::wal::spare::SPARE_END`]); a file too short to tell is not.
fn is_untaken_spare(file: &PosixFile) -> bool {
    let mut h = [0u8; minivault_core::wal::FILE_HEADER_LEN as usize];
    matches!(sys::pread_full(file.fd.as_fd(), &mut h, 0), Ok(n) if n == h.len())
        && matches!(minivault_core::wal::decode_header(&h), Ok(Some(link)) if link.end == minivault_core::wal::spare::SPARE_END)
}

/// Whether WALs in the directory `dir` may append through a shared mapping
/// ([`sys::maps_safely`]; never off Linux and Android).
fn maps_safely(dir: &OwnedFd) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        sys::maps_safely(dir.as_fd())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = dir;
        false
    }
}

/// Descriptors of the process's limit on open files (`RLIMIT_NOFILE`, the soft one) kept for
/// everything but the database's files: the standard streams, sockets, the other files of the
/// program.
const FILES_KEPT_FOR_THE_PROCESS: u64 = 64;

/// How many files a database may hold open at once ([`Storage::max_files`]): the process's limit
/// on open files less [`FILES_KEPT_FOR_THE_PROCESS`] (at least 8); `None` when unlimited or
/// unknown. The engine keeps its tables to half of that (each table is an open file; the rest
/// are for the WALs, the tables being written, and a compaction's inputs opened again).
fn files_for_the_database() -> Option<usize> {
    let soft = sys::open_files_limit()?;
    usize::try_from(soft.saturating_sub(FILES_KEPT_FOR_THE_PROCESS).max(8)).ok()
}

impl Storage for PosixStorage {
    type Error = io::Error;
    type File = PosixFile;
    type Io<'a> = &'a mut PosixFile;

    fn max_files(&self) -> Option<usize> {
        self.max_files
    }

    fn create(&mut self, name: &str) -> io::Result<PosixFile> {
        self.writable()?;
        let file = self.open_at(name, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC)?;
        self.remember_wal(name);
        Ok(file)
    }

    fn open(&mut self, name: &str) -> io::Result<PosixFile> {
        if let Some(held) = &self.held {
            return match held.get(name) {
                // The newest WAL grows while it is read: pages cached by an earlier open of it
                // (a successor check) are read again, as a fresh open's would be. (A table never
                // changes, and `hold_files` forgot its pages when it opened it.)
                Some(file) => {
                    if matches!(parse_name(name), Some((FileKind::Wal, _))) {
                        lock(&self.cache).forget(file.key);
                    }
                    Ok(file.another_handle())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} is not among the held files"),
                )),
            };
        }
        let file = self.open_at(name, if self.read_only { libc::O_RDONLY } else { libc::O_RDWR })?;
        self.remember_wal(name);
        let table = matches!(parse_name(name), Some((FileKind::Table, _)));
        Ok(if self.read_ahead && table { file.read_ahead() } else { file })
    }

    fn io<'a>(&'a mut self, file: &'a mut PosixFile) -> &'a mut PosixFile {
        file
    }

    fn len(&mut self, file: &mut PosixFile) -> io::Result<u64> {
        file.flush_buffer()?;
        sys::fstat_size(file.fd.as_fd())
    }

    fn truncate(&mut self, file: &mut PosixFile, len: u64) -> io::Result<()> {
        self.writable()?;
        // Buffered bytes past `len` would be cut anyway, and may be what a full disk refused.
        file.discard_buffered_from(len);
        file.flush_buffer()?;
        let truncated = sys::ftruncate(file.fd.as_fd(), len);
        // After the cut: a page read meanwhile by another thread is then not kept.
        lock(&self.cache).forget(file.key);
        truncated
    }

    fn preallocate(&mut self, file: &mut PosixFile, len: u64) -> io::Result<()> {
        self.writable()?;
        // Buffered bytes land first, so the extension starts past them.
        file.flush_buffer()?;
        let size = sys::fstat_size(file.fd.as_fd())?;
        if len <= size {
            return Ok(());
        }
        let result = sys::allocate(file.fd.as_fd(), size, len);
        file.forget_size();
        // The page that held the old end of the file may be cached shorter than the file now is
        // (also after a failure: the extension may have happened part of the way).
        lock(&self.cache).invalidate(file.key, size, len);
        result
    }

    fn is_full(&self, error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::StorageFull
            || error.kind() == io::ErrorKind::QuotaExceeded
            || matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }

    fn read_through(&mut self, file: &mut PosixFile, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        // Straight from the file, past the page cache: a scan's chunks would push the hot set
        // out. Bytes this handle buffered for writing go to the OS first, so they are read.
        file.flush_buffer()?;
        sys::pread_full(file.fd.as_fd(), buf, pos)
    }

    fn sync(&mut self, file: &mut PosixFile) -> io::Result<()> {
        self.writable()?;
        file.flush_buffer()?;
        sys::sync_data(file.fd.as_fd())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.writable()?;
        sys::rename_at(self.dir.as_fd(), &file_name(from)?, &file_name(to)?)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.writable()?;
        self.forget_wal_handle(name);
        sys::unlink_at(self.dir.as_fd(), &file_name(name)?)
    }

    fn remove_obsolete(&mut self, name: &str) -> io::Result<()> {
        self.writable()?;
        self.forget_wal_handle(name);
        // One goes to the reaper only while fewer than MAX_QUEUED_WAL_UNLINKS WALs wait there,
        // so that a crash leaves few of them behind for open to remove.
        let is_wal = matches!(parse_name(name), Some((FileKind::Wal, _)));
        let queue = self.removals.as_ref().filter(|q| !is_wal || q.pending_wals() < MAX_QUEUED_WAL_UNLINKS);
        let name = file_name(name)?;
        let name = match queue {
            Some(queue) => match queue.push(name, is_wal) {
                Ok(()) => return Ok(()),
                Err(name) => name,
            },
            None => name,
        };
        sys::unlink_at(self.dir.as_fd(), &name)
    }

    fn retire(&mut self, file: PosixFile) {
        self.drop_later(file);
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        self.writable()?;
        sys::sync_dir(self.dir.as_fd())
    }

    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> io::Result<()> {
        if let Some(held) = &self.held {
            held.keys().for_each(|name| visit(name));
            return Ok(());
        }
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
    CString::new(name).map_err(|_| sys::invalid_input("file name contains NUL"))
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use embedded_io::{Read, Seek, SeekFrom, Write};

    pub(crate) fn storage() -> (tempfile::TempDir, PosixStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::open_dir(dir.path()).unwrap();
        (dir, storage)
    }

    #[test]
    fn a_read_only_handle_never_reads_a_removed_files_pages_for_a_new_file_on_its_inode() {
        let (dir, mut writer) = storage();
        let mut reader = PosixStorage::open_dir_read_only(dir.path(), 1 << 20).unwrap();
        for round in 0..20u8 {
            let mut f = writer.create("a.sst").unwrap();
            writer.io(&mut f).write_all(&[round; 3000]).unwrap();
            writer.sync(&mut f).unwrap();
            drop(f);
            // The reader caches the file's pages; the writer removes it, and the next file may
            // take its inode number.
            let mut r = reader.open("a.sst").unwrap();
            assert_eq!(read_all(&mut reader, &mut r), vec![round; 3000], "round {round}");
            drop(r);
            writer.remove("a.sst").unwrap();
        }
    }

    /// Reads the whole file from the start through the storage's own I/O view.
    pub(crate) fn read_all<S: Storage>(storage: &mut S, file: &mut S::File) -> Vec<u8> {
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
    fn held_files_are_listed_and_read_after_a_writer_removes_them_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, table) = ("0000000000000003.wal", "0000000000000002.sst");
        fs::write(dir.path().join(wal), b"records").unwrap();
        fs::write(dir.path().join(table), b"a table").unwrap();
        fs::write(dir.path().join("0000000000000004.tmp"), b"being written").unwrap();
        fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let mut ro = PosixStorage::open_dir_read_only(dir.path(), 1 << 20).unwrap();
        ro.hold_files().unwrap();
        // The writer flushes: a new table, then the WAL it covers is removed.
        fs::write(dir.path().join("0000000000000005.sst"), b"newer").unwrap();
        fs::remove_file(dir.path().join(wal)).unwrap();
        let listed = |ro: &mut PosixStorage| {
            let mut names = Vec::new();
            ro.list(&mut |n| names.push(n.to_owned())).unwrap();
            names.sort();
            names
        };
        assert_eq!(listed(&mut ro), [table, wal], "the held WAL and table only, as when held");
        for _ in 0..2 {
            let mut file = ro.open(wal).unwrap();
            assert_eq!(read_all(&mut ro, &mut file), b"records", "each open reads from the start");
        }
        let err = ro.open("0000000000000005.sst").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "a file not held is not opened");
        ro.release_files();
        assert_eq!(listed(&mut ro).len(), 4, "the directory again: {:?}", listed(&mut ro));
        assert_eq!(ro.open(wal).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_read_only_storage_reads_and_changes_nothing() {
        let (dir, mut storage) = storage();
        let mut f = storage.create("f").unwrap();
        f.write_all(b"contents").unwrap();
        storage.sync(&mut f).unwrap();
        let mut ro = PosixStorage::open_dir_read_only(dir.path(), 0).unwrap();
        assert!(ro.is_read_only());
        let mut g = ro.open("f").unwrap();
        assert_eq!(read_all(&mut ro, &mut g), b"contents");
        let denied = |r: io::Result<()>| r.unwrap_err().kind();
        assert_eq!(ro.create("new").unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.truncate(&mut g, 0)), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.preallocate(&mut g, 1 << 20)), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.sync(&mut g)), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.rename("f", "g")), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.remove("f")), io::ErrorKind::PermissionDenied);
        assert_eq!(denied(ro.sync_dir()), io::ErrorKind::PermissionDenied);
        // The descriptor itself is read-only: a write cannot reach the file.
        g.write_all(b"x").unwrap();
        assert!(g.flush().is_err());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"contents");
        let missing = PosixStorage::open_dir_read_only(&dir.path().join("missing"), 0).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(!dir.path().join("missing").exists());
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
}
