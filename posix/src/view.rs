//! [`TableView`]: the live SSTables as reads see them without the engine's lock, owned by
//! whoever holds it (a get in progress, the [`crate::Db`]'s current view, a snapshot).
//!
//! A view is taken under the engine's lock and read after it is let go:
//!
//! ```text
//!  engine lock { MemTables say "ask the tables" → Arc<TableView> (rebuilt only when
//!                Engine::table_set_changes moved: a flush, a compaction's install, an eviction) }
//!  no lock     { minivault_core::get_from_tables over the view's tables, through ViewStorage }
//! ```
//!
//! It holds, per table (oldest first), the id, the footer, the size and a [`FileReader`]: a
//! share of the engine's own descriptor of the file, read through the directory's page cache
//! (its own lock) or `pread`. Tables never change once live, and on POSIX a file removed from
//! the directory (a compaction's input, an evicted table) stays readable through a descriptor
//! opened before: a view reads the same bytes however long it lives, and the file's disk space
//! is freed when the last view holding it is dropped.
//!
//! The lookup is the engine's own ([`minivault_core::get_from_tables`]: newest table first, a
//! table's range deletes over older tables, the expiry rule), run over [`ViewStorage`], a
//! [`Storage`] that only reads; so is a snapshot's scan.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::sstable::{Footer, ReadCounters, Table};
use minivault_core::{Storage, ValueWithExpiry};

use crate::engine::Engine;
use crate::storage::FileReader;
use crate::Error;

/// A value read from the tables and its expiry in the engine's clock (ms since the epoch).
pub(crate) type ValueExpiringAt = (Vec<u8>, Option<u64>);

/// One live table of a view.
struct ViewTable {
    id: u64,
    footer: Footer,
    bytes: u64,
    file: FileReader,
}

/// The live tables at one moment, readable from any thread without the engine.
pub(crate) struct TableView {
    /// The engine's [`minivault_core::Db::table_set_changes`] when the view was taken.
    changes: u64,
    /// Oldest first, as the engine keeps them.
    tables: Vec<ViewTable>,
}

impl TableView {
    /// The engine's live tables now (call it under the engine's lock).
    pub(crate) fn of(engine: &Engine) -> TableView {
        let tables = engine
            .live_tables()
            .iter()
            .map(|t| ViewTable {
                id: t.id(),
                footer: *t.footer(),
                bytes: t.bytes(),
                file: t.file_ref().reader(),
            })
            .collect();
        TableView { changes: engine.table_set_changes(), tables }
    }

    /// True when the engine's table set is still the one this view shows.
    pub(crate) fn is_current(&self, engine: &Engine) -> bool {
        self.changes == engine.table_set_changes()
    }

    /// The tables as the engine's lookup and scan take them: each a [`Table`] over a
    /// [`ViewFile`] of this view.
    pub(crate) fn tables(&self) -> Vec<Table<ViewFile<'_>>> {
        self.tables.iter().map(|t| Table::new(t.id, ViewFile(&t.file), t.footer, t.bytes)).collect()
    }

    /// The tables' answer for `key` at time `now` ([`minivault_core::get_from_tables`]): the
    /// value copied into `buf` and its expiry, or `None` when absent, deleted or expired.
    /// Damage is [`minivault_core::Error::Corrupted`] naming the table, as from the engine.
    pub(crate) fn get<'b>(
        &self,
        key: &[u8],
        buf: &'b mut [u8],
        now: u64,
        counters: &mut ReadCounters,
    ) -> Result<Option<ValueWithExpiry<'b>>, minivault_core::Error<io::Error>> {
        let mut tables = self.tables();
        minivault_core::get_from_tables(&mut ViewStorage::new(), &mut tables, key, buf, now, counters)
    }

    /// [`TableView::get`] into a buffer of its own, first as large as `len_hint` says (raised
    /// to the largest value read): the value, sized to fit, and its expiry.
    pub(crate) fn read(
        &self,
        key: &[u8],
        now: u64,
        len_hint: &AtomicUsize,
        counters: &mut ReadCounters,
    ) -> Result<Option<ValueExpiringAt>, Error> {
        let mut buf = vec![0u8; len_hint.load(Ordering::Relaxed)];
        loop {
            match self.get(key, &mut buf, now, counters) {
                Ok(Some((value, expires_at))) => {
                    let len = value.len();
                    if buf.len() > 2 * len + 64 {
                        // Much shorter than the buffer: a Vec of its own size.
                        return Ok(Some((buf[..len].to_vec(), expires_at)));
                    }
                    buf.truncate(len);
                    return Ok(Some((buf, expires_at)));
                }
                Ok(None) => return Ok(None),
                Err(minivault_core::Error::BufferTooSmall { needed }) => {
                    len_hint.fetch_max(needed, Ordering::Relaxed);
                    buf.resize(needed, 0);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The number of tables.
    pub(crate) fn len(&self) -> usize {
        self.tables.len()
    }
}

/// A table's file in a view: what [`ViewStorage`] reads.
pub(crate) struct ViewFile<'v>(&'v FileReader);

/// The [`Storage`] the engine's lookup and scan run over to read a [`TableView`]: reads only,
/// through each table's [`FileReader`]; every call that would change something fails with
/// [`io::ErrorKind::PermissionDenied`] (the lookup and the scan make none).
pub(crate) struct ViewStorage<'v>(PhantomData<&'v FileReader>);

impl ViewStorage<'_> {
    pub(crate) fn new() -> Self {
        ViewStorage(PhantomData)
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "a view of the tables only reads")
}

impl<'v> Storage for ViewStorage<'v> {
    type Error = io::Error;
    type File = ViewFile<'v>;
    type Io<'a>
        = ViewIo<'a>
    where
        Self: 'a;

    fn create(&mut self, _name: &str) -> io::Result<ViewFile<'v>> {
        Err(read_only())
    }

    fn open(&mut self, _name: &str) -> io::Result<ViewFile<'v>> {
        Err(read_only())
    }

    fn io<'a>(&'a mut self, file: &'a mut ViewFile<'v>) -> ViewIo<'a> {
        ViewIo { file: file.0, pos: 0 }
    }

    fn len(&mut self, file: &mut ViewFile<'v>) -> io::Result<u64> {
        file.0.file_len()
    }

    fn truncate(&mut self, _file: &mut ViewFile<'v>, _len: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn read_through(&mut self, file: &mut ViewFile<'v>, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        file.0.read_through(pos, buf)
    }

    fn sync(&mut self, _file: &mut ViewFile<'v>) -> io::Result<()> {
        Err(read_only())
    }

    fn rename(&mut self, _from: &str, _to: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn remove(&mut self, _name: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        Err(read_only())
    }

    fn list(&mut self, _visit: &mut dyn FnMut(&str)) -> io::Result<()> {
        Err(read_only())
    }
}

/// A position in a [`ViewFile`]: what the engine's lookup reads through.
pub(crate) struct ViewIo<'a> {
    file: &'a FileReader,
    pos: u64,
}

impl ErrorType for ViewIo<'_> {
    type Error = io::Error;
}

impl Read for ViewIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ViewIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => self.file.file_len()?.checked_add_signed(delta),
        };
        let target =
            target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        self.pos = target;
        Ok(target)
    }
}

impl Write for ViewIo<'_> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(read_only())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
