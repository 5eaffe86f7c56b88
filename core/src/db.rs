//! Db: the engine. Owns the write path (WAL → MemTable → flush → SSTable), the read path
//! (MemTable → immutable MemTable → SSTables newest to oldest), recovery on open, and WAL
//! rotation.
//!
//! # Memory
//! Two MemTable buffers come from the caller ([`Db::open`]); nothing else is allocated. While
//! one table takes writes, the other is either empty or *immutable*: frozen, still answering
//! reads, waiting to be written out as an SSTable at the next rotation (or [`Db::flush`]).
//!
//! # Files and their lifecycle
//! - Every write goes to the current WAL (`<id>.wal`) before the MemTable; with
//!   [`SyncPolicy::EveryWrite`] it is synced before the call returns.
//! - Rotation, when the active MemTable is full: flush the immutable MemTable if there is one,
//!   sync the current WAL, create the next WAL and sync the directory, freeze the active table.
//! - Flush: write `<id>.tmp`, sync it, rename it to `<id>.sst`, sync the directory; only then
//!   remove the WALs the table covers (recorded in its footer as `wal_covered`) and sync the
//!   directory again.
//! - Open: remove `*.tmp`; open and check every SSTable; remove WALs some table covers; replay
//!   the rest in id order (truncating a torn tail of the newest); append to the newest.
//!
//! # Failure
//! A storage error during a write, sync, flush or rotation poisons the database: later writes
//! fail with [`Error::Poisoned`] until it is reopened, because the state on storage is unknown
//! and a failed sync must never be retried into a false success. Reads keep working.

use heapless::Vec;

use crate::entry::{self, Entry, EntryHeader};
use crate::error::{Corruption, Error};
use crate::io::{read_exact_at, ReadError};
use crate::memtable::{MemTable, MIN_MEMTABLE_BYTES};
use crate::names::{file_name, parse_name, FileKind, FileName};
use crate::record::HEADER_LEN;
use crate::sstable::{self, Footer, Lookup, SsTableBuilder};
use crate::storage::Storage;
use crate::wal::{self, Next};
use crate::{MAX_KEY_LEN, MAX_TABLES, MAX_VALUE_LEN, MAX_WALS};

/// The source of "now" for TTLs, in whatever unit the caller's expiry times use.
pub trait Clock {
    /// The current time.
    fn now(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now(&mut self) -> u64 {
        self()
    }
}

/// When the WAL is synced, which decides what a power cut can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyncPolicy {
    /// Sync after every write, before it is acknowledged. A power cut loses nothing acknowledged.
    EveryWrite,
    /// Sync after every `n`-th write (and on [`Db::sync`], rotation and close). A power cut can
    /// lose the last `n - 1` acknowledged writes.
    EveryN(u32),
    /// Sync only on [`Db::sync`], rotation and close. A power cut can lose every write since.
    Manual,
}

/// Options for [`Db::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// When writes become durable.
    pub sync: SyncPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config { sync: SyncPolicy::EveryWrite }
    }
}

/// A snapshot of the engine's counters and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Keys in the active MemTable.
    pub memtable_keys: usize,
    /// Keys the active MemTable holds before it must rotate.
    pub memtable_key_capacity: usize,
    /// Arena bytes used in the active MemTable.
    pub memtable_bytes: usize,
    /// Arena bytes of one MemTable.
    pub memtable_capacity_bytes: usize,
    /// Keys in the immutable MemTable waiting to be flushed.
    pub immutable_keys: usize,
    /// SSTables on storage.
    pub tables: usize,
    /// Bytes of all SSTables.
    pub table_bytes: u64,
    /// Bytes of all live WAL files.
    pub wal_bytes: u64,
    /// MemTables written out as SSTables since open.
    pub flushes: u64,
    /// Torn WAL tails cut off during open.
    pub torn_tails_truncated: u64,
    /// SSTable lookups performed by `get` since open (read amplification = this / gets).
    pub table_probes: u64,
    /// Calls to `get` since open.
    pub gets: u64,
}

/// One SSTable as reported by [`Db::tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TableInfo {
    /// File id (the table is `<id>.sst`).
    pub id: u64,
    /// Entries, tombstones included.
    pub entries: u32,
    /// File size in bytes.
    pub bytes: u64,
}

struct Table<F> {
    id: u64,
    file: F,
    footer: Footer,
    bytes: u64,
}

struct Wal<F> {
    id: u64,
    file: F,
    len: u64,
    unsynced: u32,
}

/// An older WAL still needed by a MemTable.
#[derive(Clone, Copy)]
struct OldWal {
    id: u64,
    len: u64,
}

/// A key-value database over storage `S`, clock `C` and MemTable buffers `M`.
pub struct Db<S: Storage, C, M> {
    storage: S,
    clock: C,
    config: Config,
    mem: [MemTable<M>; 2],
    active: usize,
    /// The newest WAL the immutable MemTable's entries came from, when there is one.
    imm_wal: Option<u64>,
    wal: Wal<S::File>,
    old_wals: Vec<OldWal, MAX_WALS>,
    tables: Vec<Table<S::File>, MAX_TABLES>,
    next_id: u64,
    poisoned: bool,
    stats: Stats,
}

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

fn corrupted<E>(file: FileName) -> impl FnOnce(ReadError<E>) -> Error<E> {
    move |e| match e {
        ReadError::Io(e) => Error::Storage(e),
        ReadError::Corrupt { offset, kind } => Error::Corrupted { file, offset, kind },
    }
}

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Opens the database kept in `storage`, recovering whatever a crash left behind.
    ///
    /// `memtables` are the two MemTable buffers (each at least [`MIN_MEMTABLE_BYTES`]); their
    /// size bounds the largest entry and how much is written per SSTable.
    pub fn open(mut storage: S, clock: C, memtables: [M; 2], config: Config) -> Result<Self, S> {
        let [m0, m1] = memtables;
        let too_small = |m: M| Error::InsufficientMemory {
            needed: MIN_MEMTABLE_BYTES,
            given: m.as_ref().len(),
        };
        let mem = [MemTable::new(m0).map_err(too_small)?, MemTable::new(m1).map_err(too_small)?];

        // Leftovers of an interrupted flush go first; they are never needed.
        remove_temp_files(&mut storage)?;

        let mut wal_ids: Vec<u64, MAX_WALS> = Vec::new();
        let mut table_ids: Vec<u64, MAX_TABLES> = Vec::new();
        let mut overflow: Option<Error<S::Error>> = None;
        let mut max_id = 0;
        storage
            .list(&mut |name| {
                let Some((kind, id)) = parse_name(name) else { return };
                max_id = max_id.max(id);
                let full = match kind {
                    FileKind::Wal => wal_ids.push(id).is_err(),
                    FileKind::Table => table_ids.push(id).is_err(),
                    FileKind::TempTable => false,
                };
                if full {
                    overflow = Some(match kind {
                        FileKind::Wal => Error::TooManyWals,
                        _ => Error::TooManyTables,
                    });
                }
            })
            .map_err(Error::Storage)?;
        if let Some(e) = overflow {
            return Err(e);
        }
        wal_ids.sort_unstable();
        table_ids.sort_unstable();

        let mut tables: Vec<Table<S::File>, MAX_TABLES> = Vec::new();
        let mut covered = 0;
        for &id in &table_ids {
            let name = file_name(FileKind::Table, id);
            let mut file = storage.open(&name).map_err(Error::Storage)?;
            let bytes = storage.len(&mut file).map_err(Error::Storage)?;
            let footer = sstable::open(&mut storage.io(&mut file), bytes).map_err(corrupted(name))?;
            covered = covered.max(footer.wal_covered);
            // Cannot fail: table_ids has the same capacity.
            let _ = tables.push(Table { id, file, footer, bytes });
        }

        // WALs that a table covers were retired by a flush that stopped before removing them.
        let mut removed = false;
        for &id in wal_ids.iter().filter(|&&id| id <= covered) {
            storage.remove(&file_name(FileKind::Wal, id)).map_err(Error::Storage)?;
            removed = true;
        }
        if removed {
            storage.sync_dir().map_err(Error::Storage)?;
        }
        wal_ids.retain(|&id| id > covered);

        // The WAL that takes new writes: the newest live one, or a new one.
        let mut next_id = max_id + 1;
        let wal = match wal_ids.last() {
            Some(&id) => Wal {
                id,
                file: storage.open(&file_name(FileKind::Wal, id)).map_err(Error::Storage)?,
                len: 0,
                unsynced: 0,
            },
            None => {
                let id = next_id;
                next_id += 1;
                let file = storage.create(&file_name(FileKind::Wal, id)).map_err(Error::Storage)?;
                storage.sync_dir().map_err(Error::Storage)?;
                Wal { id, file, len: 0, unsynced: 0 }
            }
        };

        let mut db = Db {
            storage,
            clock,
            config,
            mem,
            active: 0,
            imm_wal: None,
            wal,
            old_wals: Vec::new(),
            tables,
            next_id,
            poisoned: false,
            stats: Stats::default(),
        };
        for (i, &id) in wal_ids.iter().enumerate() {
            let newest = i + 1 == wal_ids.len();
            let len = db.replay(id, newest)?;
            if newest {
                db.wal.len = len;
            } else {
                let _ = db.old_wals.push(OldWal { id, len });
            }
        }
        Ok(db)
    }

    /// Replays WAL `id` into the active MemTable; returns the length of its valid prefix.
    fn replay(&mut self, id: u64, newest: bool) -> Result<u64, S> {
        let name = file_name(FileKind::Wal, id);
        let mut file = self.storage.open(&name).map_err(Error::Storage)?;
        let end = self.storage.len(&mut file).map_err(Error::Storage)?;
        let mut pos = 0u64;
        loop {
            let next = wal::next(&mut self.storage.io(&mut file), pos, end).map_err(Error::Storage)?;
            let header = match next {
                Next::End => return Ok(pos),
                Next::Damaged => break,
                Next::Record(h) => h,
            };
            let len = header.len as usize;
            let active = self.active;
            if len > self.mem[active].max_payload() {
                return Err(Error::InsufficientMemory {
                    needed: len + HEADER_LEN,
                    given: self.mem[active].arena_capacity(),
                });
            }
            if !self.mem[active].fits(len) {
                // The WALs before this one are then wholly in SSTables; this one is not yet.
                self.mem[active].freeze();
                self.write_table(active, id - 1)?;
                self.mem[active].reset();
            }
            let Some((offset, dst)) = self.mem[active].reserve(len) else {
                return Err(Error::InsufficientMemory { needed: len, given: self.mem[active].arena_capacity() });
            };
            read_exact_at(&mut self.storage.io(&mut file), pos + HEADER_LEN as u64, dst)
                .map_err(corrupted(name.clone()))?;
            if wal::check_payload(&header, dst).is_err() {
                break;
            }
            self.mem[active]
                .commit_reserved(offset)
                .map_err(|kind| Error::Corrupted { file: name.clone(), offset: pos, kind })?;
            pos += (HEADER_LEN + len) as u64;
        }

        // A record at `pos` failed its checks: a torn tail, or corruption?
        let after = wal::valid_record_after(&mut self.storage.io(&mut file), pos, end).map_err(Error::Storage)?;
        if after.is_some() || !newest {
            let kind = if after.is_some() { Corruption::WalRecordBeforeValidData } else { Corruption::Truncated };
            return Err(Error::Corrupted { file: name, offset: pos, kind });
        }
        self.storage.truncate(&mut file, pos).map_err(Error::Storage)?;
        self.storage.sync(&mut file).map_err(Error::Storage)?;
        self.stats.torn_tails_truncated += 1;
        Ok(pos)
    }

    /// Writes the frozen MemTable `idx` as a new SSTable, then retires the WALs up to `covered`.
    fn write_table(&mut self, idx: usize, covered: u64) -> Result<(), S> {
        let result = self.write_table_inner(idx, covered);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn write_table_inner(&mut self, idx: usize, covered: u64) -> Result<(), S> {
        if self.tables.is_full() {
            return Err(Error::TooManyTables);
        }
        // With no older table, nothing can hide behind a tombstone or an expired entry.
        let drop_dead = self.tables.is_empty();
        let now = self.clock.now();
        let keep = |p: &&[u8]| !drop_dead || entry::decode(p).map_or(true, |e| !e.is_dead_at(now));

        let id = self.next_id;
        self.next_id += 1;
        let tmp = file_name(FileKind::TempTable, id);
        let fin = file_name(FileKind::Table, id);
        let storage = &mut self.storage;
        let mut file = storage.create(&tmp).map_err(Error::Storage)?;
        let mut builder = SsTableBuilder::new();
        let footer = {
            let mut io = storage.io(&mut file);
            let mem = &self.mem[idx];
            for p in mem.sorted().filter(keep) {
                builder.add_record(&mut io, p).map_err(Error::Storage)?;
            }
            if builder.count() == 0 {
                None
            } else {
                for p in mem.sorted().filter(keep) {
                    builder.add_index(&mut io, p).map_err(Error::Storage)?;
                }
                Some(builder.finish(&mut io, covered).map_err(Error::Storage)?)
            }
        };
        match footer {
            Some(footer) => {
                storage.sync(&mut file).map_err(Error::Storage)?;
                let bytes = storage.len(&mut file).map_err(Error::Storage)?;
                storage.rename(&tmp, &fin).map_err(Error::Storage)?;
                storage.sync_dir().map_err(Error::Storage)?;
                let _ = self.tables.push(Table { id, file, footer, bytes });
            }
            None => {
                drop(file);
                storage.remove(&tmp).map_err(Error::Storage)?;
            }
        }
        self.stats.flushes += 1;

        let mut removed = false;
        for w in self.old_wals.iter().filter(|w| w.id <= covered) {
            self.storage.remove(&file_name(FileKind::Wal, w.id)).map_err(Error::Storage)?;
            removed = true;
        }
        self.old_wals.retain(|w| w.id > covered);
        if removed {
            self.storage.sync_dir().map_err(Error::Storage)?;
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), S> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn check_key(key: &[u8]) -> Result<(), S> {
        if key.is_empty() {
            Err(Error::EmptyKey)
        } else if key.len() > MAX_KEY_LEN {
            Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY_LEN })
        } else {
            Ok(())
        }
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), S> {
        self.write(EntryHeader { tombstone: false, key_len: key.len(), expires_at: None }, key, value)
    }

    /// Stores `value` under `key` until the clock reaches `expires_at` (absolute, in the clock's
    /// units); from then on the key reads as absent.
    pub fn put_expiring(&mut self, key: &[u8], value: &[u8], expires_at: u64) -> Result<(), S> {
        if expires_at <= self.clock.now() {
            return Err(Error::InvalidTtl);
        }
        let h = EntryHeader { tombstone: false, key_len: key.len(), expires_at: Some(expires_at) };
        self.write(h, key, value)
    }

    /// Deletes `key` (writes a tombstone, which hides older values in SSTables).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), S> {
        self.write(EntryHeader { tombstone: true, key_len: key.len(), expires_at: None }, key, &[])
    }

    fn write(&mut self, header: EntryHeader, key: &[u8], value: &[u8]) -> Result<(), S> {
        self.check_writable()?;
        Self::check_key(key)?;
        let max_payload = self.mem[self.active].max_payload();
        let max_value = MAX_VALUE_LEN.min(max_payload.saturating_sub(header.encoded_len() + key.len()));
        if value.len() > max_value {
            return Err(Error::ValueTooLarge { len: value.len(), max: max_value });
        }
        let len = entry::payload_len(&header, value.len());
        if !self.mem[self.active].fits(len) {
            self.rotate()?;
        }
        let (hb, hn) = header.encode();
        let appended = wal::append(&mut self.storage.io(&mut self.wal.file), self.wal.len, &[&hb[..hn], key, value]);
        match appended {
            Ok(end) => self.wal.len = end,
            Err(e) => {
                self.poisoned = true;
                return Err(Error::Storage(e));
            }
        }
        self.wal.unsynced += 1;
        let due = match self.config.sync {
            SyncPolicy::EveryWrite => true,
            SyncPolicy::EveryN(n) => self.wal.unsynced >= n,
            SyncPolicy::Manual => false,
        };
        if due {
            self.sync_wal()?;
        }
        if self.mem[self.active].insert(&header, key, value).is_err() {
            // Unreachable after the `fits` check; refuse further writes rather than diverge.
            self.poisoned = true;
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn sync_wal(&mut self) -> Result<(), S> {
        if let Err(e) = self.storage.sync(&mut self.wal.file) {
            self.poisoned = true;
            return Err(Error::Storage(e));
        }
        self.wal.unsynced = 0;
        Ok(())
    }

    /// Makes every acknowledged write durable (for [`SyncPolicy::EveryN`] and [`SyncPolicy::Manual`]).
    pub fn sync(&mut self) -> Result<(), S> {
        self.check_writable()?;
        if self.wal.unsynced > 0 {
            self.sync_wal()?;
        }
        Ok(())
    }

    /// Freezes the active MemTable and starts a new WAL, flushing the older immutable MemTable first.
    fn rotate(&mut self) -> Result<(), S> {
        if self.imm_wal.is_some() {
            self.flush_immutable()?;
        }
        self.sync_wal()?;
        let id = self.next_id;
        self.next_id += 1;
        let created = self.storage.create(&file_name(FileKind::Wal, id)).and_then(|f| {
            self.storage.sync_dir()?;
            Ok(f)
        });
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                self.poisoned = true;
                return Err(Error::Storage(e));
            }
        };
        let old = core::mem::replace(&mut self.wal, Wal { id, file, len: 0, unsynced: 0 });
        if self.old_wals.push(OldWal { id: old.id, len: old.len }).is_err() {
            self.poisoned = true;
            return Err(Error::TooManyWals);
        }
        self.mem[self.active].freeze();
        self.imm_wal = Some(old.id);
        self.active ^= 1;
        Ok(())
    }

    fn flush_immutable(&mut self) -> Result<(), S> {
        let Some(covered) = self.imm_wal else { return Ok(()) };
        let idx = self.active ^ 1;
        self.write_table(idx, covered)?;
        self.mem[idx].reset();
        self.imm_wal = None;
        Ok(())
    }

    /// Writes every MemTable entry to SSTables and retires the WALs: after this, a reopen replays
    /// nothing.
    pub fn flush(&mut self) -> Result<(), S> {
        self.check_writable()?;
        if !self.mem[self.active].is_empty() {
            self.rotate()?;
        }
        self.flush_immutable()
    }

    /// Reads the value of `key` into `buf`; returns the filled part of `buf`, or `None` when the
    /// key is absent, deleted or expired. [`Error::BufferTooSmall`] says how much room it needs.
    pub fn get<'b>(&mut self, key: &[u8], buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, S> {
        Self::check_key(key)?;
        self.stats.gets += 1;
        let now = self.clock.now();
        for idx in [self.active, self.active ^ 1] {
            if let Some(e) = self.mem[idx].get(key) {
                return copy_out(&e, now, buf);
            }
        }
        for t in self.tables.iter_mut().rev() {
            self.stats.table_probes += 1;
            let found = sstable::get(&mut self.storage.io(&mut t.file), &t.footer, key, buf)
                .map_err(corrupted(file_name(FileKind::Table, t.id)))?;
            if let Lookup::Found { value_len, tombstone, expires_at } = found {
                if tombstone || expires_at.is_some_and(|t| t <= now) {
                    return Ok(None);
                }
                return match buf.get(..value_len) {
                    Some(v) => Ok(Some(v)),
                    None => Err(Error::BufferTooSmall { needed: value_len }),
                };
            }
        }
        Ok(None)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let active = &self.mem[self.active];
        Stats {
            memtable_keys: active.len(),
            memtable_key_capacity: active.key_capacity(),
            memtable_bytes: active.arena_used(),
            memtable_capacity_bytes: active.arena_capacity(),
            immutable_keys: self.mem[self.active ^ 1].len(),
            tables: self.tables.len(),
            table_bytes: self.tables.iter().map(|t| t.bytes).sum(),
            wal_bytes: self.wal.len + self.old_wals.iter().map(|w| w.len).sum::<u64>(),
            ..self.stats
        }
    }

    /// The SSTables, oldest first.
    pub fn tables(&self) -> impl Iterator<Item = TableInfo> + '_ {
        self.tables.iter().map(|t| TableInfo { id: t.id, entries: t.footer.entry_count, bytes: t.bytes })
    }

    /// True once a failed write or sync has made the database refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Syncs outstanding writes and gives the storage back.
    pub fn close(mut self) -> core::result::Result<S, (Self, Error<S::Error>)> {
        if !self.poisoned && self.wal.unsynced > 0 {
            if let Err(e) = self.sync_wal() {
                return Err((self, e));
            }
        }
        Ok(self.storage)
    }

    /// The storage, for inspection.
    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }
}

fn copy_out<'b, E>(e: &Entry<'_>, now: u64, buf: &'b mut [u8]) -> core::result::Result<Option<&'b [u8]>, Error<E>> {
    if e.is_dead_at(now) {
        return Ok(None);
    }
    let n = e.value.len();
    let dst = buf.get_mut(..n).ok_or(Error::BufferTooSmall { needed: n })?;
    dst.copy_from_slice(e.value);
    Ok(Some(dst))
}

fn remove_temp_files<S: Storage>(storage: &mut S) -> Result<(), S> {
    let mut removed = false;
    loop {
        let mut batch: Vec<u64, 8> = Vec::new();
        storage
            .list(&mut |name| {
                if let Some((FileKind::TempTable, id)) = parse_name(name) {
                    let _ = batch.push(id);
                }
            })
            .map_err(Error::Storage)?;
        if batch.is_empty() {
            break;
        }
        for id in batch {
            storage.remove(&file_name(FileKind::TempTable, id)).map_err(Error::Storage)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir().map_err(Error::Storage)?;
    }
    Ok(())
}
