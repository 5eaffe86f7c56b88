//! The storage seam: what the engine needs from a file system, and nothing more.
//!
//! The engine names its own files (see [`crate::FileName`]) and keeps them open as owned
//! handles ([`Storage::File`]); byte I/O on a handle goes through a short-lived view
//! ([`Storage::Io`]) that implements `embedded_io`'s `Read`, `Write` and `Seek`. That split lets
//! an in-memory storage without `alloc` hand out many open files that all live in one buffer,
//! while a POSIX storage simply lends out `&mut` to its file descriptor.
//!
//! # Durability contract
//! An implementation promises exactly this, and the engine relies on nothing more:
//! - Bytes written through [`Storage::Io`] may sit in a volatile cache until
//!   [`Storage::sync`] returns `Ok` for that file; after that, the file's contents *and length*
//!   survive a power cut.
//! - `Write::flush` on an [`Storage::Io`] hands buffered bytes to the operating system (they then
//!   survive the death of the process, not a power cut). Stores without that distinction may treat
//!   it as a no-op.
//! - [`Storage::create`], [`Storage::rename`] and [`Storage::remove`] change the directory; such a
//!   change survives a power cut only after [`Storage::sync_dir`] returns `Ok`.
//! - [`Storage::rename`] replaces `to` atomically when it exists.
//! - An error from [`Storage::sync`] or [`Storage::sync_dir`] means the data may or may not be on
//!   the device. The engine never retries it into a success: it poisons the database instead.
//! - [`Storage::preallocate`] is a change to the file like a write: the new length and its zeros
//!   are durable after the next [`Storage::sync`] of the file, and before that a power cut may
//!   leave the old length, the new one, or any length between, the added bytes reading as zeros.
//!   The engine never relies on an extension having happened (doing nothing is a correct
//!   implementation, and the default); it relies only on the extension never changing a byte
//!   below the old length and never adding anything but zeros.

use embedded_io::{ErrorType, Read, Seek, Write};

/// A flat directory of named files.
pub trait Storage {
    /// The storage's own error type, carried inside [`crate::Error::Storage`].
    type Error: embedded_io::Error;

    /// An open file, owned by the engine while it uses the file.
    type File;

    /// A borrowed byte-level view of an open file.
    type Io<'a>: Read + Write + Seek + ErrorType<Error = Self::Error>
    where
        Self: 'a;

    /// Creates `name` empty (truncating it if it exists) and opens it for reading and writing.
    fn create(&mut self, name: &str) -> Result<Self::File, Self::Error>;

    /// Opens the existing file `name` for reading and writing.
    ///
    /// A missing file is an error whose `kind()` is `ErrorKind::NotFound`.
    fn open(&mut self, name: &str) -> Result<Self::File, Self::Error>;

    /// Borrows an open file for reading, writing and seeking.
    fn io<'a>(&'a mut self, file: &'a mut Self::File) -> Self::Io<'a>;

    /// The file's current length in bytes, including bytes not yet synced.
    fn len(&mut self, file: &mut Self::File) -> Result<u64, Self::Error>;

    /// Cuts the file to `len` bytes (used to drop a torn WAL tail).
    fn truncate(&mut self, file: &mut Self::File, len: u64) -> Result<(), Self::Error>;

    /// Extends the file with zero bytes to at least `len` bytes, so that later writes below `len`
    /// do not change the file's size (and a sync after them has no size to persist). A file
    /// already `len` bytes or longer is left alone; bytes below the current length never change.
    ///
    /// A hint: an implementation may extend less than asked or not at all (the default does
    /// nothing), since the engine tracks where its data ends itself. An error means the file may
    /// have been extended by zeros part of the way.
    fn preallocate(&mut self, file: &mut Self::File, len: u64) -> Result<(), Self::Error> {
        let _ = (file, len);
        Ok(())
    }

    /// True when `error` means the storage has no room left (ENOSPC, a quota, a full flash
    /// partition): the engine then fails the write with [`crate::Error::Full`], or evicts with
    /// [`crate::WhenFull::DropOldest`], rather than poisoning the database, wherever the failed
    /// call left nothing it depends on. The default: `error.kind()` is
    /// `embedded_io::ErrorKind::OutOfMemory` (what [`crate::MemStorage`] reports).
    fn is_full(&self, error: &Self::Error) -> bool {
        embedded_io::Error::kind(error) == embedded_io::ErrorKind::OutOfMemory
    }

    /// The most files the storage holds at once, when it has such a limit (a flash partition per
    /// file): the compaction policy then keeps the tables to half of them, the rest for the WALs
    /// and the tables being written ([`crate::compaction::table_limit`]). The default: no limit.
    fn max_files(&self) -> Option<usize> {
        None
    }

    /// Reads up to `buf.len()` bytes at `pos` for a sequential scan; returns how many (fewer at
    /// the end of the file). A hint, like [`Storage::preallocate`]: bytes read this way will not be
    /// read again soon, so a read cache should not keep them (a scan must not push the hot set
    /// out). The default is an ordinary read.
    fn read_through(
        &mut self,
        file: &mut Self::File,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize, Self::Error> {
        crate::io::read_at(&mut self.io(file), pos, buf)
    }

    /// Makes the file's contents and length durable (`fdatasync` on POSIX).
    fn sync(&mut self, file: &mut Self::File) -> Result<(), Self::Error>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Self::Error>;

    /// Removes `name`. Removing a missing file is an error of kind `NotFound`.
    fn remove(&mut self, name: &str) -> Result<(), Self::Error>;

    /// Removes `name`, a file nothing waits for the removal of: a table a compaction replaced,
    /// or a WAL whose writes a flush put in a durable table (whose `wal_covered` names it).
    /// The database never uses the name again,
    /// never syncs the directory for this removal, and open removes such a file should it still
    /// be there (or come back after a power cut). So a storage may remove it later, off the
    /// caller's path (the POSIX storage hands it to a thread of its own while background threads
    /// run: unlinking a large file can take tens of milliseconds). The default removes it now.
    fn remove_obsolete(&mut self, name: &str) -> Result<(), Self::Error> {
        self.remove(name)
    }

    /// Closes `file`, which the database will not use again: a table a compaction replaced,
    /// whose name went to [`Storage::remove_obsolete`] first (or, for the run's newest table,
    /// was taken over by the output's rename). The last close of a removed file
    /// is where a file system frees its blocks (tens of milliseconds for a large table), so a
    /// storage may close it later, off the caller's path, as it may remove it later. Nothing is
    /// read or written through `file` any more. The default closes it now.
    fn retire(&mut self, file: Self::File) {
        drop(file);
    }

    /// Makes every earlier create, rename and remove durable (`fsync` of the directory on POSIX).
    fn sync_dir(&mut self) -> Result<(), Self::Error>;

    /// Calls `visit` once with the name of every file in the directory, in no particular order.
    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), Self::Error>;
}
