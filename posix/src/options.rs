//! [`Options`] of a [`crate::Db`], its [`Durability`] modes, and the range of every size option
//! ([`SizeLimit`]): [`crate::Db::open_with`] checks them before allocating anything.

use std::time::Duration;

use crate::{row_cache, storage, Error, WhenFull};

/// When a write is durable: what a power cut can take. A `kill -9` takes nothing in any mode:
/// every write reaches the operating system before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The default: a put or delete returns only after its WAL record is on the device
    /// (`fdatasync`). A power cut loses nothing that was acknowledged.
    Always,
    /// Sync every `n` writes: a power cut can lose up to the last `n - 1` acknowledged writes.
    EveryN(u32),
    /// Sync on the first write at least this long after the previous sync, and on
    /// [`crate::Db::sync`], [`crate::Db::flush`], [`crate::Db::close`] and drop. A power cut can
    /// lose the writes made since the last sync: those of the last interval, or, if writing then
    /// paused, everything since the last sync.
    Periodic(Duration),
    /// Sync only on [`crate::Db::sync`], [`crate::Db::flush`], [`crate::Db::close`] and drop.
    /// A power cut can lose the writes made since the last of these, but for those a finished
    /// MemTable flush has put in a (synced) SSTable. The WAL's pages are left to the kernel's
    /// writeback (none is started as the WAL grows, as in the other modes): a WAL whose MemTable
    /// is flushed before the kernel writes it back (on Linux, pages dirty for 30 seconds) is
    /// removed without ever reaching the device, which spares a flash device about one write of
    /// every byte put.
    Manual,
}

/// Options for [`crate::Db::open_with`].
///
/// Memory: a [`crate::Db`] holds at most `(2 + background_threads + 1) × memtable_bytes +
/// cache_bytes + row_cache_bytes + index_bytes` with background threads (the two MemTables, a
/// merge scratch per compaction thread, and the flush thread's copy of the frozen MemTable),
/// `2 × memtable_bytes + ...` without, plus a small fixed overhead (a read buffer as large as
/// the largest value read; per thread that has read the SSTables, a 16 KiB run buffer and a
/// value buffer as large as the largest value it read; the SSTable list and its file handles,
/// shared with gets in progress, which keep the files of tables a compaction removed meanwhile
/// open until they end; the row cache's 2 KiB of write stamps; the WALs' mapped windows, at most
/// 2 × 128 KiB ([`crate::storage::MAP_WINDOW`]); per compaction thread a 512 KiB
/// page cache and, while it merges, two 16 KiB read-ahead windows per input table, at most 512
/// KiB; the flush thread's 64 KiB page cache). With the defaults: 5 × 4 + 8 +
/// 4 + 32 = 64 MiB. Each size has a documented range ([`MEMTABLE_BYTES`], [`CACHE_BYTES`],
/// [`ROW_CACHE_BYTES`], [`INDEX_BYTES`]); a value outside it is an [`Error::InvalidOption`],
/// reported before anything is allocated or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Bytes of each of the two MemTables (so the engine's memory is twice this). Bounds the
    /// largest entry and the size of each SSTable. Default 4 MiB; 512 B ..= 1 GiB.
    pub memtable_bytes: usize,
    /// When writes become durable. Default [`Durability::Always`].
    pub durability: Durability,
    /// Bytes of SSTable pages kept in memory for reads (0: none). Default 8 MiB; at most 16 GiB.
    pub cache_bytes: usize,
    /// Bytes of recently read rows (key → value) kept in memory, so that a hot key is read
    /// without searching the SSTables (0: none). A row is charged its key, its value and
    /// [`crate::ROW_CACHE_ENTRY_OVERHEAD`] (120 on 64-bit targets) bytes for its allocation and
    /// its places in the slot vector and the index. Default 4 MiB ([`crate::DEFAULT_ROW_CACHE_BYTES`]); at
    /// most 16 GiB.
    pub row_cache_bytes: usize,
    /// Bytes of SSTable filters, fences and run starts held in memory for gets (0: none), so
    /// that a get probes a table with no read but the one of its run of 16 records: 1.25 bytes
    /// per key (10 bits) for the filter and about `(10 + key length) / 16` for the fences and run
    /// starts; 2.9 bytes per key of 16 bytes (2.8 MiB measured for 10^6 such keys in 6 tables),
    /// so the default holds the whole indexes of about 11 million such keys. A table's filter and
    /// its fences are loaded apart by the first get that probes it, each if the budget has room,
    /// **filters first**: fences only into room the filters of every live table leave, so a
    /// budget short of everything still answers most missing keys without a read. A part that
    /// does not fit is read from storage (correct, slower). [`crate::Db::index_stats`] says what
    /// is loaded. Default 32 MiB ([`DEFAULT_INDEX_BYTES`]); at most 16 GiB.
    pub index_bytes: usize,
    /// How far ahead of the writer the WAL file is extended (`fallocate`), so that a durable
    /// write's `fdatasync` has no file size to commit. `None` (the default): a quarter of a
    /// MemTable's arena, rounded up to 4 KiB, at most 1 MiB (896 KiB with the default
    /// MemTables); `Some(0)`: never extended, the WAL grows with its records; `Some(n)`: `n`
    /// rounded up to 4 KiB, at most 1 GiB. This is also about what a fresh database takes on
    /// disk beyond its records: 896 KiB by default, 64 KiB with `Some(64 << 10)`, 4 KiB with
    /// `Some(0)`; `docs/BENCHMARKS.md` measures what each costs durable writes.
    pub wal_preallocation_bytes: Option<u64>,
    /// Open without writing anything: no directory is created, no lock is taken, every file is
    /// opened read-only, recovery changes nothing (a torn WAL tail is just the end, not cut;
    /// leftovers of an interrupted flush or compaction are left alone), and every write,
    /// `flush` and `sync` fails with [`crate::EngineError::ReadOnly`]. It works on a directory
    /// the process may not write to, and while another process has the database open for
    /// writing. The handle sees the database as it was when it opened: every SSTable then
    /// present and every WAL record then written (handed to the OS), and nothing written since
    /// (open again to see newer writes). Default `false`.
    pub read_only: bool,
    /// The most bytes the database's files may take on disk (SSTables and WAL files,
    /// preallocated tails included), checked after every write; `None` (the default): no cap
    /// but the disk's. At least 16 × `memtable_bytes` (64 MiB with the default MemTables). What
    /// happens at the cap is [`Options::when_full`]. A compaction's output file may add up to
    /// an eighth of the cap for a moment with [`WhenFull::DropOldest`] (up to the size of the
    /// tables it merges with [`WhenFull::RefuseWrites`]), and up to
    /// [`Options::background_threads`] compactions run at once, beside a flush's table of up to
    /// one MemTable: leave that much free beyond the cap.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// # std::env::set_current_dir(tmp.path())?;
    /// let options = minivault::Options {
    ///     max_bytes: Some(256 << 20),                  // 256 MiB of files at most
    ///     when_full: minivault::WhenFull::DropOldest,  // keep the newest data
    ///     ..Default::default()
    /// };
    /// let db = minivault::Db::open_with("telemetry-data", options)?;
    /// db.delete_range(b"log/2026-01", b"log/2026-06")?;   // one record, however many keys
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub max_bytes: Option<u64>,
    /// What happens at `max_bytes`, and when the disk is full (ENOSPC, EDQUOT): refuse writes
    /// with [`minivault_core::Error::Full`] ([`WhenFull::RefuseWrites`], the default), or drop
    /// the oldest SSTables whole ([`WhenFull::DropOldest`], a FIFO buffer; `Stats` counts what
    /// was dropped). Neither poisons the database, and reads go on.
    pub when_full: WhenFull,
    /// Threads that run compactions in the background (0 ..= 4, default 2): a write then waits
    /// for a compaction only when the tables reach [`Options::stop_tables`], never because a
    /// compaction is due. Each holds `memtable_bytes` of scratch memory for its merges. With any
    /// (and not read-only), one more thread flushes the frozen MemTable: the write that fills
    /// the active MemTable only seals it (no sort) and starts the next WAL, and the flush thread
    /// copies the sealed one (`memtable_bytes` more memory, held from open) and writes it as an
    /// SSTable. A write waits for a flush only when it fills the next MemTable before the
    /// previous flush is installed (the disk is slower than the writes): the stop condition of
    /// the flush, counted in [`crate::BackgroundStats::flush_waits`]; before that, each write
    /// into the last quarter of the active MemTable sleeps [`crate::FLUSH_PACE`] (50 µs) while
    /// the flush runs ([`crate::BackgroundStats::paced_writes`]). 0: every flush and
    /// compaction runs inside the write whose rotation calls for it, as the engine does on a
    /// microcontroller (the write waits for all of it: seconds for a merge of gigabytes).
    pub background_threads: usize,
    /// With background compaction, a write first sleeps [`crate::SLOWDOWN`] (1 ms) while the
    /// compaction backlog ([`minivault_core::Db::compaction_backlog`]) is at least this: flushes
    /// are outrunning the compactions, and the writer gives them time. The backlog counts the
    /// SSTables, except that tables which overlap no other and do not mix entries with and
    /// without a TTL (sequential keys, kept as flushed) count once together, and every table past
    /// [`minivault_core::limits::CROWDED_TABLES`] (384) counts again. Default 20; below
    /// [`Options::stop_tables`].
    pub slowdown_tables: usize,
    /// With background compaction, a write waits for compactions to finish while the compaction
    /// backlog (see [`Options::slowdown_tables`]) is at least this, so that the engine's limit
    /// ([`minivault_core::MAX_TABLES`], 512) is never reached. Default 26; at most 126.
    pub stop_tables: usize,
    /// How much lower the CPU priority of the compaction threads is than the process's: their
    /// nice value is raised by this much (0 ..= 19, default 0: the process's priority; on Linux,
    /// where the nice value belongs to a thread; ignored elsewhere). On a machine with few cores
    /// a merge takes its share of a core from the writer and the readers, whose CPU work under
    /// the engine's lock can then wait for the scheduler behind two merges. With 10, on two
    /// cores, 10^7 random puts had 4–9 puts over 15 ms where the default had 19–21 (measured
    /// while a rotation still sorted the MemTable under the lock), but the bench's slowest put
    /// did not change and its 99.9th percentile rose by about a third (docs/BENCHMARKS.md):
    /// opt-in, for a writer whose long stalls matter more. Merges still get every idle cycle, and a writer
    /// that outruns them is held at [`Options::slowdown_tables`] and [`Options::stop_tables`],
    /// where it sleeps and leaves them the CPU. The flush thread keeps the process's priority:
    /// a write that fills the next MemTable waits for it.
    pub compaction_nice: u8,
    /// Whether a WAL record reaches the OS through a shared mapping of the WAL's preallocated
    /// tail (`true`, the default: a copy into the file's page cache, no system call per write;
    /// only on Linux and Android, and only on file systems that allocate a file's blocks when
    /// it is preallocated: ext2/3/4, XFS, tmpfs) or through one `pwrite` per record (`false`;
    /// always so elsewhere). Nothing acknowledged is lost either way. What `false` changes is a
    /// disk that fails: a WAL page the device cannot read back, or a file system shut down
    /// after an error, makes a mapped write end the process (`SIGBUS`) where a `pwrite` returns
    /// the error and the database refuses writes (`Poisoned`) while reads go on. It costs
    /// writes: fillseq at about half the rate at 10^6 and 10^7 keys (docs/BENCHMARKS.md, "WAL
    /// appends through a shared mapping"); and saves the WALs' mapped windows, 256 KiB.
    pub map_wal_appends: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options::DEFAULT
    }
}

impl Options {
    /// The defaults, for `const` items (`Options { memtable_bytes: 1 << 20, ..Options::DEFAULT }`).
    pub const DEFAULT: Options = Options {
        memtable_bytes: 4 << 20,
        durability: Durability::Always,
        cache_bytes: storage::DEFAULT_CACHE_BYTES,
        row_cache_bytes: row_cache::DEFAULT_ROW_CACHE_BYTES,
        index_bytes: DEFAULT_INDEX_BYTES,
        wal_preallocation_bytes: None,
        read_only: false,
        max_bytes: None,
        when_full: WhenFull::RefuseWrites,
        background_threads: 2,
        slowdown_tables: 20,
        stop_tables: 26,
        compaction_nice: 0,
        map_wal_appends: true,
    };

    /// Checks every size against its range ([`SizeLimit`]), except the MemTable's minimum, which
    /// the engine itself refuses (with [`minivault_core::Error::InsufficientMemory`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for the first size out of its range.
    pub fn validate(&self) -> Result<(), Error> {
        SizeLimit { min: 0, ..MEMTABLE_BYTES }.check(self.memtable_bytes as u64)?;
        CACHE_BYTES.check(self.cache_bytes as u64)?;
        ROW_CACHE_BYTES.check(self.row_cache_bytes as u64)?;
        INDEX_BYTES.check(self.index_bytes as u64)?;
        if let Some(step) = self.wal_preallocation_bytes {
            WAL_PREALLOCATION_BYTES.check(step)?;
        }
        BACKGROUND_THREADS.check(self.background_threads as u64)?;
        SizeLimit { name: "stop_tables", min: 2, max: STOP_TABLES_MAX }.check(self.stop_tables as u64)?;
        let slowdown_max = self.stop_tables.saturating_sub(1) as u64;
        SizeLimit { name: "slowdown_tables", min: 1, max: slowdown_max }
            .check(self.slowdown_tables as u64)?;
        COMPACTION_NICE.check(u64::from(self.compaction_nice))?;
        if let Some(cap) = self.max_bytes {
            let min = minivault_core::space::min_max_bytes(self.memtable_bytes);
            SizeLimit { name: "max_bytes", min, max: u64::MAX }.check(cap)?;
        }
        Ok(())
    }

    /// True when a compaction worker may make its output live itself (rename over the newest
    /// input's `<id>.sst`, directory sync) before the engine installs it: not under
    /// `max_bytes` (a file must appear only when the engine counts it against the cap), and not
    /// with [`WhenFull::DropOldest`], which evicts tables whenever the disk is full, cap or no
    /// cap: an eviction of a running compaction's input cancels the compaction, and its output
    /// must then never become live (it would bring the evicted entries back, and take an
    /// input's name from under the engine's table of that id).
    pub(crate) fn workers_publish_outputs(&self) -> bool {
        self.max_bytes.is_none() && self.when_full != WhenFull::DropOldest
    }

    /// The most memory a handle opened with these options holds, fixed overhead aside:
    /// `(2 + background_threads + 1) × memtable_bytes + cache_bytes + row_cache_bytes +
    /// index_bytes` with background threads (the last MemTable-sized buffer is the flush
    /// thread's copy), `2 × memtable_bytes + ...` without (a read-only handle runs neither).
    pub fn memory_bytes(&self) -> u64 {
        let threads = if self.read_only { 0 } else { self.background_threads as u64 };
        let flush_copy = u64::from(threads > 0);
        (2 + threads + flush_copy) * self.memtable_bytes as u64
            + self.cache_bytes as u64
            + self.row_cache_bytes as u64
            + self.index_bytes as u64
    }
}

/// The range of one size option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// The option's field name in [`Options`].
    pub name: &'static str,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

impl SizeLimit {
    /// `value` as a `usize`, when it is in range.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when it is not.
    pub fn check(&self, value: u64) -> Result<usize, Error> {
        match usize::try_from(value) {
            Ok(fits) if (self.min..=self.max).contains(&value) => Ok(fits),
            _ => Err(Error::InvalidOption { option: self.name, value, min: self.min, max: self.max }),
        }
    }
}

/// [`Options::memtable_bytes`]: 512 B (the engine's minimum) ..= 1 GiB. The engine addresses a
/// MemTable's arena with 32-bit offsets, and two MemTables of 1 GiB already hold 2 GiB of RAM.
pub const MEMTABLE_BYTES: SizeLimit = SizeLimit {
    name: "memtable_bytes",
    min: minivault_core::memtable::MIN_MEMTABLE_BYTES as u64,
    max: 1 << 30,
};

/// [`Options::cache_bytes`]: 0 (off) ..= 16 GiB (and what a `usize` holds on 32-bit targets).
pub const CACHE_BYTES: SizeLimit = SizeLimit { name: "cache_bytes", min: 0, max: max_cache() };

/// [`Options::row_cache_bytes`]: 0 (off) ..= 16 GiB (and what a `usize` holds on 32-bit
/// targets).
pub const ROW_CACHE_BYTES: SizeLimit = SizeLimit { name: "row_cache_bytes", min: 0, max: max_cache() };

/// [`Options::index_bytes`]: 0 (off) ..= 16 GiB (and what a `usize` holds on 32-bit targets).
pub const INDEX_BYTES: SizeLimit = SizeLimit { name: "index_bytes", min: 0, max: max_cache() };

/// The default [`Options::index_bytes`]: 32 MiB, the filters and fences of about 11 million
/// keys of 16 bytes.
pub const DEFAULT_INDEX_BYTES: usize = 32 << 20;

/// [`Options::background_threads`]: 0 (compactions inline) ..= 4 (the engine's
/// [`minivault_core::limits::MAX_RUNNING`]).
pub const BACKGROUND_THREADS: SizeLimit =
    SizeLimit { name: "background_threads", min: 0, max: minivault_core::limits::MAX_RUNNING as u64 };

/// [`Options::compaction_nice`]: 0 ..= 19 (the range of a nice value's increments above 0).
pub const COMPACTION_NICE: SizeLimit = SizeLimit { name: "compaction_nice", min: 0, max: 19 };

/// The largest [`Options::stop_tables`]: a backlog below it leaves at least two of the engine's
/// table slots free past [`minivault_core::limits::CROWDED_TABLES`] (every table there counts
/// in the backlog), which a write that goes ahead may need for its flush.
pub const STOP_TABLES_MAX: u64 =
    (minivault_core::MAX_TABLES - minivault_core::limits::CROWDED_TABLES) as u64 - 2;

/// [`Options::wal_preallocation_bytes`]: 0 (off) ..= 1 GiB.
pub const WAL_PREALLOCATION_BYTES: SizeLimit =
    SizeLimit { name: "wal_preallocation_bytes", min: 0, max: 1 << 30 };

const fn max_cache() -> u64 {
    let limit: u64 = 16 << 30;
    if (usize::MAX as u64) < limit {
        usize::MAX as u64
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_publish_compaction_outputs_only_where_nothing_evicts() {
        let plain = Options::default();
        assert!(plain.workers_publish_outputs());
        let evicting = Options { when_full: WhenFull::DropOldest, ..Options::default() };
        assert!(!evicting.workers_publish_outputs(), "DropOldest evicts at a full disk, cap or no cap");
        let capped = Options { max_bytes: Some(1 << 30), ..Options::default() };
        assert!(!capped.workers_publish_outputs());
    }
}
