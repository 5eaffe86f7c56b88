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
//! [`Storage`] that only reads; so is a snapshot's scan. Each table of a view probes through
//! its resident index ([`crate::resident`]: filter, fences or both in memory, the run of records
//! read in one go into the reading thread's run buffer) as far as the budget holds it, from
//! storage otherwise. Before the lookup a get asks every resident filter at once
//! ([`TableView::ruled_out`]), so that their memory fetches overlap, and the probes of the tables
//! they ruled out read nothing.
//!
//! Memory per reading thread (kept for the thread's life, [`ReadBuffers`]): a run buffer of
//! [`RUN_BUFFER_BYTES`] (a run larger than that is streamed from storage record by record) and
//! a value buffer as large as the largest value the thread read from the tables.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::io::ReadError;
use minivault_core::sstable::{
    key_prefix, probe_with, Footer, KeyBounds, Lookup, Probe, ProbeTable, ReadCounters, Table,
};
use minivault_core::{Storage, ValueWithExpiry};

use crate::engine::Engine;
use crate::resident::{IndexSlot, ResidentIndexes, TableIdentity};
use crate::storage::FileReader;
use crate::Error;

/// Bytes of each reading thread's run buffer: a run of 16 records of up to about 1 KiB each is
/// read in one go; a larger one is streamed from storage.
pub(crate) const RUN_BUFFER_BYTES: usize = 16 << 10;

/// A reading thread's buffers, kept for its life: no allocation per get but the value returned.
struct ReadBuffers {
    /// Where a probe reads a run of records whole.
    run: Vec<u8>,
    /// Where the tables' value is copied, as large as the largest value this thread read.
    value: Vec<u8>,
}

thread_local! {
    static READ_BUFFERS: RefCell<ReadBuffers> = const { RefCell::new(ReadBuffers { run: Vec::new(), value: Vec::new() }) };
}

/// A value read from the tables and its expiry in the engine's clock (ms since the epoch).
pub(crate) type ValueExpiringAt = (Vec<u8>, Option<u64>);

/// One live table of a view.
struct ViewTable {
    id: u64,
    footer: Footer,
    bytes: u64,
    /// The prefixes of its least and greatest keys: a get skips it when they rule the key out.
    bounds: KeyBounds,
    file: FileReader,
    /// Its resident index, shared with the other views of the table.
    index: Arc<IndexSlot>,
    /// Its place in the view (oldest first): its bit in [`ViewStorage::ruled_out`], counted
    /// from [`ViewStorage::ruled_out_from`].
    pos: usize,
}

/// The live tables at one moment, readable from any thread without the engine.
pub(crate) struct TableView {
    /// The engine's [`minivault_core::Db::table_set_changes`] when the view was taken.
    changes: u64,
    /// Oldest first, as the engine keeps them.
    tables: Vec<ViewTable>,
}

impl TableView {
    /// The engine's live tables now (call it under the engine's lock), each with its slot in
    /// `indexes` (nothing is loaded here: the first get that probes a table loads its index).
    pub(crate) fn of(engine: &Engine, indexes: &mut ResidentIndexes) -> TableView {
        let live = engine.live_tables();
        let readers: Vec<FileReader> = live.iter().map(|t| t.file_ref().reader()).collect();
        let slots = indexes.slots(live.iter().zip(&readers).map(|(t, file)| TableIdentity {
            id: t.id(),
            file: file.file_key(),
            bytes: t.bytes(),
            footer: *t.footer(),
        }));
        let tables = live
            .iter()
            .zip(readers)
            .zip(slots)
            .enumerate()
            .map(|(pos, ((t, file), index))| ViewTable {
                id: t.id(),
                footer: *t.footer(),
                bytes: t.bytes(),
                bounds: t.bounds(),
                file,
                index,
                pos,
            })
            .collect();
        TableView { changes: engine.table_set_changes(), tables }
    }

    /// True when the engine's table set is still the one this view shows.
    pub(crate) fn is_current(&self, engine: &Engine) -> bool {
        self.changes == engine.table_set_changes()
    }

    /// The tables as the engine's scan takes them: each a [`Table`] over a [`ViewFile`] of
    /// this view.
    pub(crate) fn tables(&self) -> Vec<Table<ViewFile<'_>>> {
        self.tables
            .iter()
            .map(|t| Table::new(t.id, ViewFile(&t.file), t.footer, t.bytes).with_bounds(t.bounds))
            .collect()
    }

    /// The tables' answer for `key` at time `now` ([`minivault_core::get_from_tables`]): the
    /// value copied into `buf` and its expiry, or `None` when absent, deleted or expired.
    /// Damage is [`minivault_core::Error::Corrupted`] naming the table, as from the engine.
    /// Each table's probe reads its run of records whole into `run` when it fits.
    pub(crate) fn get<'b>(
        &self,
        key: &[u8],
        buf: &'b mut [u8],
        run: &mut [u8],
        now: u64,
        counters: &mut ReadCounters,
    ) -> Result<Option<ValueWithExpiry<'b>>, minivault_core::Error<io::Error>> {
        let ruled_out_from = self.ruled_out_from();
        let ruled_out = self.ruled_out(key, ruled_out_from);
        let mut storage = ViewStorage { run, ruled_out, ruled_out_from };
        minivault_core::get_from_tables(&mut storage, self.tables.iter(), key, buf, now, counters)
    }

    /// The first table [`TableView::ruled_out`] asks about: the newest 64 are asked (a lookup
    /// probes the newest first).
    fn ruled_out_from(&self) -> usize {
        self.tables.len().saturating_sub(64)
    }

    /// The tables (a bit per [`ViewTable::pos`] from `from`, the newest 64) whose resident filter
    /// rules `key` out, asked all at once before the lookup probes the tables one by one: the
    /// questions do not wait on each other, so the memory fetches of a dozen filter blocks (a
    /// large table's are rarely in the CPU's caches) overlap instead of following one another. A
    /// table with range deletes is left to its probe, which asks them when the filter rules the
    /// key out.
    fn ruled_out(&self, key: &[u8], from: usize) -> u64 {
        let hash = minivault_core::filter::key_hash(key);
        let prefix = key_prefix(key);
        let mut out = 0u64;
        for table in self.tables.iter().skip(from) {
            // A table whose bounds rule the key out is passed over by the lookup itself.
            if table.bounds.may_hold(prefix) && table.footer.range_count == 0 && table.index.rules_out(hash) {
                out |= 1 << (table.pos - from);
            }
        }
        out
    }

    /// [`TableView::get`] through the calling thread's buffers (the value buffer first as
    /// large as `len_hint` says, raised to the largest value read): the value, copied out at
    /// its size, and its expiry.
    pub(crate) fn read(
        &self,
        key: &[u8],
        now: u64,
        len_hint: &AtomicUsize,
        counters: &mut ReadCounters,
    ) -> Result<Option<ValueExpiringAt>, Error> {
        READ_BUFFERS.with_borrow_mut(|ReadBuffers { run, value }| {
            if run.len() < RUN_BUFFER_BYTES {
                run.resize(RUN_BUFFER_BYTES, 0);
            }
            let hint = len_hint.load(Ordering::Relaxed);
            if value.len() < hint {
                value.resize(hint, 0);
            }
            loop {
                match self.get(key, value, run, now, counters) {
                    Ok(Some((found, expires_at))) => return Ok(Some((found.to_vec(), expires_at))),
                    Ok(None) => return Ok(None),
                    Err(minivault_core::Error::BufferTooSmall { needed }) => {
                        len_hint.fetch_max(needed, Ordering::Relaxed);
                        value.resize(needed, 0);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    /// The number of tables.
    pub(crate) fn len(&self) -> usize {
        self.tables.len()
    }
}

/// A table of a view as the engine's lookup probes it: through its resident index when loaded
/// (or loadable now), from storage otherwise.
impl<'v> ProbeTable<ViewStorage<'v>> for &'v ViewTable {
    fn id(&self) -> u64 {
        self.id
    }

    fn bounds(&self) -> KeyBounds {
        self.bounds
    }

    fn probe(
        &mut self,
        storage: &mut ViewStorage<'v>,
        key: &[u8],
        hash: u64,
        out: &mut [u8],
    ) -> Result<Probe, ReadError<io::Error>> {
        let table: &'v ViewTable = self;
        let bit = table.pos.checked_sub(storage.ruled_out_from).filter(|&b| b < 64);
        if bit.is_some_and(|b| storage.ruled_out & (1 << b) != 0) {
            // Its resident filter, asked before the lookup, ruled the key out (`probe_with`
            // would answer the same without reading anything).
            return Ok(Probe { lookup: Lookup::Absent, searched: false });
        }
        let io = &mut ViewIo { file: &table.file, pos: 0 };
        let index = table.index.get_or_load(io, &table.footer)?;
        probe_with(io, &table.footer, &index, key, hash, out, storage.run)
    }
}

/// A table's file in a view: what [`ViewStorage`] reads.
pub(crate) struct ViewFile<'v>(&'v FileReader);

/// The [`Storage`] the engine's lookup and scan run over to read a [`TableView`]: reads only,
/// through each table's [`FileReader`]; every call that would change something fails with
/// [`io::ErrorKind::PermissionDenied`] (the lookup and the scan make none). A get's holds the
/// run buffer its probes read runs of records into.
pub(crate) struct ViewStorage<'v> {
    run: &'v mut [u8],
    /// The tables whose resident filter ruled the key of the get out ([`TableView::ruled_out`]).
    ruled_out: u64,
    /// The view position of the table `ruled_out`'s bit 0 stands for.
    ruled_out_from: usize,
}

impl ViewStorage<'_> {
    /// For a scan, which reads no runs whole.
    pub(crate) fn new() -> Self {
        ViewStorage { run: &mut [], ruled_out: 0, ruled_out_from: 0 }
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
