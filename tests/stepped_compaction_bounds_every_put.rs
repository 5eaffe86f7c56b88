//! Compaction in bounded steps inside the writes (`CompactionMode::Stepped`, issue 12): over a
//! long fill with many compactions, no single put reads and writes more than the bound
//! `core/src/compaction/steps.rs` states (a flush, a start, one step of `4 × budget` units and an
//! install); the same fill with `CompactionMode::Inline` passes that bound, since its worst put
//! runs a whole compaction. Work is counted in bytes read and written, syncs and renames on an
//! in-memory storage (never time: the machine is shared).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::mem_storage::MemIo;
use minivault_core::{CompactionMode, Config, Db, MemError, MemFile, Storage, SyncPolicy};
use minivault_suite::fault::ManualClock;

use common::Mem;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Work {
    read: u64,
    written: u64,
    syncs: u64,
    renames: u64,
}

/// `Mem`, counting what goes through it.
struct Counting {
    inner: Mem,
    work: Rc<RefCell<Work>>,
}

struct CountingIo<'a> {
    inner: MemIo<'a>,
    work: Rc<RefCell<Work>>,
}

impl ErrorType for CountingIo<'_> {
    type Error = MemError;
}

impl Read for CountingIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, MemError> {
        let n = self.inner.read(buf)?;
        self.work.borrow_mut().read += n as u64;
        Ok(n)
    }
}

impl Write for CountingIo<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, MemError> {
        let n = self.inner.write(buf)?;
        self.work.borrow_mut().written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), MemError> {
        self.inner.flush()
    }
}

impl Seek for CountingIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, MemError> {
        self.inner.seek(pos)
    }
}

impl Storage for Counting {
    type Error = MemError;
    type File = MemFile;
    type Io<'a> = CountingIo<'a>;

    fn create(&mut self, name: &str) -> Result<MemFile, MemError> {
        self.inner.create(name)
    }
    fn open(&mut self, name: &str) -> Result<MemFile, MemError> {
        self.inner.open(name)
    }
    fn io<'a>(&'a mut self, file: &'a mut MemFile) -> CountingIo<'a> {
        CountingIo { inner: self.inner.io(file), work: self.work.clone() }
    }
    fn len(&mut self, file: &mut MemFile) -> Result<u64, MemError> {
        self.inner.len(file)
    }
    fn truncate(&mut self, file: &mut MemFile, len: u64) -> Result<(), MemError> {
        self.inner.truncate(file, len)
    }
    fn max_files(&self) -> Option<usize> {
        self.inner.max_files()
    }
    fn sync(&mut self, file: &mut MemFile) -> Result<(), MemError> {
        self.work.borrow_mut().syncs += 1;
        self.inner.sync(file)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), MemError> {
        self.work.borrow_mut().renames += 1;
        self.inner.rename(from, to)
    }
    fn remove(&mut self, name: &str) -> Result<(), MemError> {
        self.inner.remove(name)
    }
    fn sync_dir(&mut self) -> Result<(), MemError> {
        self.work.borrow_mut().syncs += 1;
        self.inner.sync_dir()
    }
    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), MemError> {
        self.inner.list(visit)
    }
}

const PUTS: u32 = 24_000;
const MEM: usize = 4096;
const SCRATCH: usize = 4096;
const BUDGET: u32 = 32;
const VALUE: usize = 24;

/// The `i`-th key written: a permutation of `0..PUTS`, scattered.
fn key(i: u32) -> [u8; 4] {
    ((u64::from(i) * 2_654_435_761 % u64::from(PUTS)) as u32).to_be_bytes()
}

/// Fills `PUTS` keys in a scattered order (each written once, so a merged key has one record)
/// and returns the most work one put did, the most bytes (read + written), and the stats.
fn fill(compaction: CompactionMode) -> (Work, u64, minivault_core::Stats) {
    let work = Rc::new(RefCell::new(Work::default()));
    let storage = Counting { inner: Mem::new(vec![0; 64 << 21]), work: work.clone() };
    let config = Config { compaction, ..Config::with_sync(SyncPolicy::Manual) };
    let mut db = Db::open(storage, ManualClock::new(1), [vec![0u8; MEM], vec![0u8; MEM]], config).unwrap();
    assert!(db.set_compaction_scratch(vec![0u8; SCRATCH]).is_none());
    let (mut worst, mut most_bytes) = (Work::default(), 0);
    for i in 0..PUTS {
        let k = key(i);
        let before = *work.borrow();
        db.put(&k, &[i as u8; VALUE]).unwrap();
        let after = *work.borrow();
        let put = Work {
            read: after.read - before.read,
            written: after.written - before.written,
            syncs: after.syncs - before.syncs,
            renames: after.renames - before.renames,
        };
        most_bytes = most_bytes.max(put.read + put.written);
        worst = Work {
            read: worst.read.max(put.read),
            written: worst.written.max(put.written),
            syncs: worst.syncs.max(put.syncs),
            renames: worst.renames.max(put.renames),
        };
    }
    for i in (0..PUTS).step_by(7) {
        let k = key(i);
        assert_eq!(common::core_get(&mut db, &k), Some(vec![i as u8; VALUE]), "key {i}");
    }
    (worst, most_bytes, db.stats())
}

/// The bound of `core/src/compaction/steps.rs` for this workload. A record here is at most
/// `RECORD` bytes (8-byte header, entry header, 4-byte key, 24-byte value); a record's first
/// read is `HEAD` bytes (its header and up to 128 bytes of payload, whatever its length), and
/// each key is written once, so a merged key has one input record.
const RECORD: u64 = 64;
const HEAD: u64 = 136;
/// One unit of merge work: the record read through its checksum (its head, then the rest), the
/// next record's index entry and head; or one output record read back, with its index entry.
const UNIT_READ: u64 = HEAD + RECORD + 4 + HEAD;
/// At most `4 × budget` units per write (`MAX_DEBT` = 3).
const UNITS: u64 = 4 * BUDGET as u64;
/// A flush: a table of at most one MemTable's 48 entries read back for its index and fences and
/// for its filter (a head each, three passes at most), and written (at most two MemTables:
/// records, index, filter, footer); the next WAL's header.
const FLUSH_READ: u64 = 3 * 48 * HEAD;
const FLUSH_WRITTEN: u64 = 2 * MEM as u64;
/// The start of the next compaction: an index entry and a record head per input (at most 16).
const START_READ: u64 = 16 * (4 + HEAD);
const READ_BOUND: u64 = FLUSH_READ + START_READ + UNITS * UNIT_READ;
/// The put's WAL record, the flush, one record (or index entry, fence) written per unit, and,
/// once per compaction, a filter window (at most the scratch) and the footer.
const WRITE_BOUND: u64 = RECORD + 8 + FLUSH_WRITTEN + UNITS * RECORD + SCRATCH as u64 + 128;

#[test]
fn a_stepped_compaction_keeps_every_put_within_the_stated_bound() {
    let (inline, inline_bytes, inline_stats) = fill(CompactionMode::Inline);
    let (stepped, stepped_bytes, stepped_stats) = fill(CompactionMode::Stepped { budget: BUDGET });
    eprintln!("bound: {READ_BOUND} B read, {WRITE_BOUND} B written");
    eprintln!("worst put: inline {inline:?} ({inline_bytes} B), stepped {stepped:?} ({stepped_bytes} B)");
    eprintln!("compactions: inline {}, stepped {}", inline_stats.compactions, stepped_stats.compactions);
    assert!(stepped_stats.compactions > 20, "{stepped_stats:?}");
    assert_eq!(stepped_stats.compaction_overruns, 0, "the steps kept up: {stepped_stats:?}");
    assert!(stepped.read <= READ_BOUND && stepped.written <= WRITE_BOUND, "{stepped:?}");
    // A flush (its table, the directory, the WALs) and an install (the output, the directory).
    assert!(stepped.renames <= 2, "{stepped:?}");
    // The same fill inline: its worst put runs a whole compaction, past the bound.
    assert!(inline_bytes > READ_BOUND + WRITE_BOUND, "{inline:?}");
    assert!(inline.read > READ_BOUND, "{inline:?}");
}

/// With too small a budget the steps fall behind: a write that reaches the table limit first
/// finishes the compaction whole, and says so in `Stats::compaction_overruns`; nothing is lost.
#[test]
fn a_stepped_compaction_that_falls_behind_is_finished_whole_and_counted() {
    let (worst, _, stats) = fill(CompactionMode::Stepped { budget: 1 });
    eprintln!("budget 1: worst put {worst:?}, {stats:?}");
    assert!(stats.compaction_overruns > 0, "{stats:?}");
    assert!(stats.tables <= 32, "{stats:?}");
}
