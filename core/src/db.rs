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
//!   [`SyncPolicy::EveryWrite`] it is synced before the call returns. The WAL is extended with
//!   zeros ahead of the writer ([`wal::preallocation_chunk`]), so that a sync has no file size to
//!   persist; the engine appends at the WAL's logical end, which it keeps itself.
//! - Rotation, when the active MemTable is full: flush the immutable MemTable if there is one,
//!   sync the current WAL, create the next WAL and sync the directory, freeze the active table.
//! - Flush: write `<id>.tmp`, sync it, rename it to `<id>.sst`, sync the directory; only then
//!   remove the WALs the table covers (recorded in its footer as `wal_covered`; a removal lost
//!   to a power cut is redone by open, so it needs no directory sync).
//! - Open: remove `*.tmp`; open and check every SSTable; remove WALs some table covers; replay
//!   the rest in id order (a zero tail is a clean end; a torn tail of the newest is truncated);
//!   append to the newest at its logical end, keeping its preallocated zero tail.
//!
//! # Failure
//! A storage error during a write, sync, flush or rotation poisons the database: later writes
//! fail with [`Error::Poisoned`] until it is reopened, because the state on storage is unknown
//! and a failed sync must never be retried into a false success. Reads keep working.

use heapless::Vec;

use crate::batch::{self, WriteBatch};
use crate::compaction::{self, Input};
use crate::entry::{self, Entry, EntryHeader};
use crate::error::{Corruption, Error};
use crate::filter;
use crate::io::{read_exact_at, ReadError};
use crate::log::{event, warn_event};
use crate::memtable::{MemTable, MIN_MEMTABLE_BYTES};
use crate::names::{file_name, parse_name, FileKind, FileName};
use crate::record::HEADER_LEN;
use crate::sstable::{self, Footer, Lookup, SsTableBuilder, FENCE_STRIDE};
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
    /// Bytes of records in all live WAL files (up to their logical ends: preallocated zero
    /// tails are not counted).
    pub wal_bytes: u64,
    /// MemTables written out as SSTables since open.
    pub flushes: u64,
    /// Torn WAL tails (a damaged last record) cut off during open. A zero tail, the unused
    /// preallocated end of a WAL, is a clean end and not counted.
    pub torn_tails_truncated: u64,
    /// SSTable searches performed by `get` since open (read amplification = this / gets): the
    /// lookups a table's filter did not rule out.
    pub table_probes: u64,
    /// SSTable lookups a table's Bloom filter answered "absent" without a search, since open.
    pub filter_skips: u64,
    /// Calls to `get` since open.
    pub gets: u64,
    /// Compactions (merges of SSTables) since open.
    pub compactions: u64,
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
    /// The logical end: where the next record goes. Bytes from here to the end of the file are
    /// zeros (the preallocated tail).
    len: u64,
    /// The length the file was last extended to ([`Storage::preallocate`]), or found with at
    /// open; a record ending at or below it does not change the file's size.
    allocated: u64,
    unsynced: u32,
}

/// What replaying one WAL found.
struct Replayed {
    /// The logical end: the length of the valid prefix of records.
    len: u64,
    /// The file's length after replay (the logical end plus its zero tail, if it has one).
    file_len: u64,
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
        ReadError::Corrupt { offset, kind } => {
            warn_event!("corruption: {=str} at offset {=u64}: {}", file.as_str(), offset, kind);
            Error::Corrupted { file, offset, kind }
        }
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
        let too_small =
            |m: M| Error::InsufficientMemory { needed: MIN_MEMTABLE_BYTES, given: m.as_ref().len() };
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

        // Tables that a compacted table replaces are left over from a compaction that stopped
        // before removing its inputs.
        let mut stale: Vec<u64, MAX_TABLES> = Vec::new();
        for t in &tables {
            if tables.iter().any(|u| u.footer.replaces_from <= t.id && t.id < u.id) {
                let _ = stale.push(t.id);
            }
        }
        // The removals below rely on newer tables, which a run whose directory sync failed may
        // have renamed into place without making the rename durable. Sync the directory first:
        // otherwise a power cut could keep a removal and drop the rename that made it safe.
        if !stale.is_empty() || wal_ids.iter().any(|&id| id <= covered) {
            storage.sync_dir().map_err(Error::Storage)?;
        }
        if !stale.is_empty() {
            tables.retain(|t| !stale.contains(&t.id));
            for &id in &stale {
                storage.remove(&file_name(FileKind::Table, id)).map_err(Error::Storage)?;
            }
            storage.sync_dir().map_err(Error::Storage)?;
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
                allocated: 0,
                unsynced: 0,
            },
            None => {
                let id = next_id;
                next_id += 1;
                let file = storage.create(&file_name(FileKind::Wal, id)).map_err(Error::Storage)?;
                storage.sync_dir().map_err(Error::Storage)?;
                Wal { id, file, len: 0, allocated: 0, unsynced: 0 }
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
        // A database left at the table limit (small MemTables, an older build) must make room
        // before replay may flush.
        db.maybe_compact()?;
        for (i, &id) in wal_ids.iter().enumerate() {
            let newest = i + 1 == wal_ids.len();
            let Replayed { len, file_len } = db.replay(id, newest)?;
            event!("recovery: replayed WAL {=u64} ({=u64} bytes)", id, len);
            if newest {
                // Appends continue at the logical end, over the zero tail (if any), which stays
                // preallocated: it reads as the clean end until records overwrite it.
                db.wal.len = len;
                db.wal.allocated = file_len;
            } else {
                let _ = db.old_wals.push(OldWal { id, len });
            }
        }
        // Entries from several WALs now share one MemTable: write them out, so that no more
        // than two WAL files (current and immutable) ever exist.
        if !db.old_wals.is_empty() {
            db.flush()?;
        }
        // Replayed records may have reached only the page cache before a crash, and the WAL's
        // directory entry may never have been synced: make both durable before any new write
        // is acknowledged (the sync counters start from zero).
        db.storage.sync(&mut db.wal.file).map_err(Error::Storage)?;
        db.storage.sync_dir().map_err(Error::Storage)?;
        Ok(db)
    }

    /// Replays WAL `id` into the active MemTable; returns the length of its valid prefix and of
    /// the file.
    fn replay(&mut self, id: u64, newest: bool) -> Result<Replayed, S> {
        let name = file_name(FileKind::Wal, id);
        let mut file = self.storage.open(&name).map_err(Error::Storage)?;
        let end = self.storage.len(&mut file).map_err(Error::Storage)?;
        let mut pos = 0u64;
        loop {
            let next = wal::next(&mut self.storage.io(&mut file), pos, end).map_err(Error::Storage)?;
            let (header, head) = match next {
                Next::End => return Ok(Replayed { len: pos, file_len: end }),
                Next::Damaged => break,
                Next::Record(h, head) => (h, head),
            };
            let len = header.len as usize;
            let keys = batch::declared_count(&head).unwrap_or(1);
            let active = self.active;
            if len > self.mem[active].max_payload() || keys > self.mem[active].key_capacity() {
                // Either a valid entry written with larger MemTables, or a damaged length.
                let valid = wal::record_is_valid(&mut self.storage.io(&mut file), pos, &header, len)
                    .map_err(Error::Storage)?;
                if !valid {
                    break;
                }
                return Err(Error::InsufficientMemory {
                    needed: len + HEADER_LEN,
                    given: self.mem[active].arena_capacity(),
                });
            }
            if !self.mem[active].fits_many(len, keys) {
                // The WALs before this one are then wholly in SSTables; this one is not yet.
                self.mem[active].freeze();
                self.write_table(active, id - 1)?;
                self.mem[active].reset();
                self.maybe_compact()?;
            }
            let Some((offset, dst)) = self.mem[active].reserve(len) else {
                return Err(Error::InsufficientMemory {
                    needed: len,
                    given: self.mem[active].arena_capacity(),
                });
            };
            read_exact_at(&mut self.storage.io(&mut file), pos + HEADER_LEN as u64, dst)
                .map_err(corrupted(name.clone()))?;
            if wal::check_payload(&header, dst).is_err() {
                break;
            }
            self.mem[active].commit_reserved(offset).map_err(|kind| Error::Corrupted {
                file: name.clone(),
                offset: pos,
                kind,
            })?;
            pos += (HEADER_LEN + len) as u64;
        }

        // Zeros from `pos` to the end of the file are the unused preallocated tail: the clean
        // end of any WAL (no record starts with a zero length).
        if wal::zeros_to_end(&mut self.storage.io(&mut file), pos, end).map_err(Error::Storage)? {
            return Ok(Replayed { len: pos, file_len: end });
        }
        // A record at `pos` failed its checks: a torn tail, or corruption?
        let after =
            wal::valid_record_after(&mut self.storage.io(&mut file), pos, end).map_err(Error::Storage)?;
        if after.is_some() || !newest {
            let kind =
                if after.is_some() { Corruption::WalRecordBeforeValidData } else { Corruption::Truncated };
            return Err(Error::Corrupted { file: name, offset: pos, kind });
        }
        self.storage.truncate(&mut file, pos).map_err(Error::Storage)?;
        self.storage.sync(&mut file).map_err(Error::Storage)?;
        self.stats.torn_tails_truncated += 1;
        event!("recovery: torn tail of WAL {=u64} cut at offset {=u64} (was {=u64} bytes)", id, pos, end);
        Ok(Replayed { len: pos, file_len: pos })
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
                for p in mem.sorted().filter(keep).step_by(FENCE_STRIDE as usize) {
                    builder.add_fence_len(&mut io, entry_key(p).len()).map_err(Error::Storage)?;
                }
                for p in mem.sorted().filter(keep).step_by(FENCE_STRIDE as usize) {
                    builder.add_fence_key(&mut io, entry_key(p)).map_err(Error::Storage)?;
                }
                // The filter holds every key, dead ones too: a superset only adds false positives.
                let filter = self.mem[idx].build_filter().unwrap_or(&[]);
                Some(builder.finish(&mut io, filter, covered, id).map_err(Error::Storage)?)
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
        event!("flush: MemTable written as SSTable {=u64}, WALs up to {=u64} retired", id, covered);

        // No directory sync for these removals: a WAL that comes back after a power cut is one
        // the durable table's `wal_covered` names, and open removes it again.
        for w in self.old_wals.iter().filter(|w| w.id <= covered) {
            self.storage.remove(&file_name(FileKind::Wal, w.id)).map_err(Error::Storage)?;
        }
        self.old_wals.retain(|w| w.id > covered);
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

    /// Applies every entry of `batch` atomically: after a crash, all of them or none are there.
    /// One WAL record, and with [`SyncPolicy::EveryWrite`] one sync, for the whole batch.
    pub fn write_batch<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, batch: &WriteBatch<B>) -> Result<(), S> {
        self.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        // Entries were validated as they were added; only expiry depends on "now".
        let expired = batch
            .entries()
            .filter_map(|item| item.ok().and_then(|p| entry::decode(p).ok()))
            .any(|e| e.expires_at.is_some_and(|t| t <= now));
        if expired {
            return Err(Error::InvalidTtl);
        }
        let payload = batch.payload();
        let keys = batch.len();
        let max = self.mem[0].max_payload().min(self.mem[1].max_payload());
        let max_keys = self.mem[0].key_capacity().min(self.mem[1].key_capacity());
        if payload.len() > max || keys > max_keys {
            return Err(Error::BatchTooLarge { len: payload.len(), max });
        }
        if !self.mem[self.active].fits_many(payload.len(), keys) {
            self.rotate()?;
        }
        self.append_to_wal(&[payload], keys as u32)?;
        if self.mem[self.active].insert_batch(payload).is_err() {
            self.poisoned = true;
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Appends one record to the WAL and syncs it when the policy says so; `writes` is how many
    /// user writes it carries.
    fn append_to_wal(&mut self, parts: &[&[u8]], writes: u32) -> Result<(), S> {
        let record_len = HEADER_LEN as u64 + parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let needed = self.wal.len + record_len;
        if needed > self.wal.allocated {
            // Extend ahead of the writer, so that this record's sync (and the next chunk's
            // worth of them) has no file size to persist. Failure poisons like a failed write
            // (nothing of the record is written yet): the file may be extended part of the way, the
            // device may be failing, and a storage error is never guessed into a success.
            let chunk = wal::preallocation_chunk(self.mem[self.active].arena_capacity());
            let target = wal::preallocation_end(needed, chunk);
            if let Err(e) = self.storage.preallocate(&mut self.wal.file, target) {
                self.poisoned = true;
                return Err(Error::Storage(e));
            }
            self.wal.allocated = target;
        }
        let appended = wal::append(&mut self.storage.io(&mut self.wal.file), self.wal.len, parts);
        match appended {
            Ok(end) => self.wal.len = end,
            Err(e) => {
                self.poisoned = true;
                return Err(Error::Storage(e));
            }
        }
        self.wal.unsynced = self.wal.unsynced.saturating_add(writes);
        let due = match self.config.sync {
            SyncPolicy::EveryWrite => true,
            SyncPolicy::EveryN(n) => self.wal.unsynced >= n,
            SyncPolicy::Manual => false,
        };
        if due {
            self.sync_wal()?;
        }
        Ok(())
    }

    fn write(&mut self, header: EntryHeader, key: &[u8], value: &[u8]) -> Result<(), S> {
        self.check_writable()?;
        Self::check_key(key)?;
        // The entry must fit in either MemTable, or it could be logged and then not applied.
        let max_payload = self.mem[0].max_payload().min(self.mem[1].max_payload());
        let room = max_payload.saturating_sub(header.encoded_len());
        if key.len() > room {
            return Err(Error::KeyTooLarge { len: key.len(), max: room });
        }
        let max_value = MAX_VALUE_LEN.min(room - key.len());
        if value.len() > max_value {
            return Err(Error::ValueTooLarge { len: value.len(), max: max_value });
        }
        let len = entry::payload_len(&header, value.len());
        if !self.mem[self.active].fits(len) {
            self.rotate()?;
        }
        let (hb, hn) = header.encode();
        self.append_to_wal(&[&hb[..hn], key, value], 1)?;
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
        // The old WAL must be durable before records follow in the new one; with every write
        // synced (or nothing written since the last sync) it already is.
        if self.wal.unsynced > 0 {
            self.sync_wal()?;
        }
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
        // The old WAL keeps its zero tail: a zero tail is a clean end for any WAL, and the file
        // is removed at the next flush; cutting it would cost a truncate on this write's path.
        let old = core::mem::replace(&mut self.wal, Wal { id, file, len: 0, allocated: 0, unsynced: 0 });
        if self.old_wals.push(OldWal { id: old.id, len: old.len }).is_err() {
            self.poisoned = true;
            return Err(Error::TooManyWals);
        }
        self.mem[self.active].freeze();
        self.imm_wal = Some(old.id);
        self.active ^= 1;
        event!("rotation: WAL {=u64} closed, WAL {=u64} started", old.id, id);
        Ok(())
    }

    fn flush_immutable(&mut self) -> Result<(), S> {
        let Some(covered) = self.imm_wal else { return Ok(()) };
        let idx = self.active ^ 1;
        self.write_table(idx, covered)?;
        self.mem[idx].reset();
        self.imm_wal = None;
        self.maybe_compact()
    }

    /// Merges the newest tables when the policy ([`compaction::pick`]) asks for it, using the
    /// idle MemTable's buffer as scratch.
    fn maybe_compact(&mut self) -> Result<(), S> {
        let scratch_idx = self.active ^ 1;
        let slot = compaction::slot_len(self.tables.iter().map(|t| &t.footer));
        let max_inputs = match self.mem[scratch_idx].scratch() {
            Some(s) => (s.len() / slot).saturating_sub(1),
            None => return Ok(()),
        };
        if max_inputs < 2 {
            return Ok(());
        }
        let mut sizes: Vec<u64, MAX_TABLES> = Vec::new();
        for t in &self.tables {
            let _ = sizes.push(t.bytes);
        }
        let force = self.tables.len() + 1 >= MAX_TABLES;
        let Some(start) = compaction::pick(&sizes, max_inputs, force) else { return Ok(()) };
        let result = self.compact(start, scratch_idx);
        self.mem[scratch_idx].reset();
        if result.is_err() {
            warn_event!("compaction failed; writes refused until reopen");
            self.poisoned = true;
        }
        result
    }

    /// Merges tables `start..` into one that takes the newest input's id.
    fn compact(&mut self, start: usize, scratch_idx: usize) -> Result<(), S> {
        let Some(newest) = self.tables.last().map(|t| t.id) else { return Ok(()) };
        let Some(replaces_from) = self.tables.get(start).map(|t| t.footer.replaces_from) else {
            return Ok(());
        };
        let wal_covered = self.tables[start..].iter().map(|t| t.footer.wal_covered).max().unwrap_or(0);
        let drop_dead_at = if start == 0 { Some(self.clock.now()) } else { None };
        let tmp = file_name(FileKind::TempTable, newest);
        let fin = file_name(FileKind::Table, newest);
        let storage = &mut self.storage;
        let mut out = storage.create(&tmp).map_err(Error::Storage)?;
        let mut reader = storage.open(&tmp).map_err(Error::Storage)?;
        let scratch = self.mem[scratch_idx].scratch().ok_or(Error::Poisoned)?;
        let mut inputs: Vec<Input<'_, S::File>, { compaction::MAX_MERGE }> = Vec::new();
        for t in self.tables[start..].iter_mut() {
            let input = Input { file: &mut t.file, footer: t.footer, name: file_name(FileKind::Table, t.id) };
            if inputs.push(input).is_err() {
                return Err(Error::TooManyTables);
            }
        }
        let footer = compaction::merge(
            storage,
            &mut inputs,
            &mut out,
            &mut reader,
            scratch,
            drop_dead_at,
            wal_covered,
            replaces_from,
        )?;
        drop(inputs);
        drop(reader);
        storage.sync(&mut out).map_err(Error::Storage)?;
        let bytes = storage.len(&mut out).map_err(Error::Storage)?;
        storage.rename(&tmp, &fin).map_err(Error::Storage)?;
        storage.sync_dir().map_err(Error::Storage)?;
        let n = self.tables.len();
        // No directory sync for these removals: an input that comes back after a power cut has
        // an id in the durable output's `[replaces_from, id)`, and open removes it again.
        for t in &self.tables[start..n - 1] {
            storage.remove(&file_name(FileKind::Table, t.id)).map_err(Error::Storage)?;
        }
        self.tables.truncate(start);
        let _ = self.tables.push(Table { id: newest, file: out, footer, bytes });
        self.stats.compactions += 1;
        event!(
            "compaction: {=usize} tables merged into SSTable {=u64} ({=u64} bytes)",
            n - start,
            newest,
            bytes
        );
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
        Ok(self.get_with_expiry(key, buf)?.map(|(value, _)| value))
    }

    /// [`Db::get`], also returning when the value expires (`None`: never), in the clock's units:
    /// from that time on the key reads as absent. For caches above the engine.
    pub fn get_with_expiry<'b>(
        &mut self,
        key: &[u8],
        buf: &'b mut [u8],
    ) -> Result<Option<ValueWithExpiry<'b>>, S> {
        Self::check_key(key)?;
        self.stats.gets += 1;
        let now = self.clock.now();
        for idx in [self.active, self.active ^ 1] {
            if let Some(e) = self.mem[idx].get(key) {
                return Ok(copy_out(&e, now, buf)?.map(|v| (v, e.expires_at)));
            }
        }
        let hash = filter::key_hash(key);
        for t in self.tables.iter_mut().rev() {
            let io = &mut self.storage.io(&mut t.file);
            if !sstable::may_contain(io, &t.footer, hash)
                .map_err(corrupted(file_name(FileKind::Table, t.id)))?
            {
                self.stats.filter_skips += 1;
                continue;
            }
            self.stats.table_probes += 1;
            let found =
                sstable::get(io, &t.footer, key, buf).map_err(corrupted(file_name(FileKind::Table, t.id)))?;
            if let Lookup::Found { value_len, tombstone, expires_at } = found {
                if tombstone || expires_at.is_some_and(|t| t <= now) {
                    return Ok(None);
                }
                return match buf.get(..value_len) {
                    Some(v) => Ok(Some((v, expires_at))),
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

    /// Syncs outstanding writes and gives the storage back, with the outcome of that sync
    /// (the storage is returned even when the sync failed, so its contents can still be reached).
    pub fn close(mut self) -> (S, Result<(), S>) {
        let synced = if self.poisoned {
            Err(Error::Poisoned)
        } else if self.wal.unsynced > 0 {
            self.sync_wal()
        } else {
            Ok(())
        };
        (self.storage, synced)
    }

    /// The storage, for inspection.
    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }
}

/// The key of a MemTable payload (always well formed: the MemTable decoded it on insert).
fn entry_key(payload: &[u8]) -> &[u8] {
    entry::decode(payload).map_or(&[][..], |e| e.key)
}

/// A value read by [`Db::get_with_expiry`], and when it expires (`None`: never).
pub type ValueWithExpiry<'b> = (&'b [u8], Option<u64>);

fn copy_out<'b, E>(
    e: &Entry<'_>,
    now: u64,
    buf: &'b mut [u8],
) -> core::result::Result<Option<&'b [u8]>, Error<E>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;
    use crate::mem_storage::{MemError, MemStorage};
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::vec::Vec;

    type Mem = MemStorage<Vec<u8>, 64>;
    type TestDb = Db<Mem, Box<dyn FnMut() -> u64>, Vec<u8>>;

    fn clock(t: &Rc<Cell<u64>>) -> Box<dyn FnMut() -> u64> {
        let t = t.clone();
        Box::new(move || t.get())
    }

    fn open(storage: Mem, t: &Rc<Cell<u64>>, mem: usize) -> TestDb {
        Db::open(storage, clock(t), [vec![0; mem], vec![0; mem]], Config::default()).unwrap()
    }

    fn get(db: &mut TestDb, key: &[u8]) -> Option<Vec<u8>> {
        let mut buf = [0u8; 512];
        db.get(key, &mut buf).unwrap().map(<[u8]>::to_vec)
    }

    fn files(db: &mut TestDb, ext: &str) -> usize {
        let mut n = 0;
        db.storage().list(&mut |name| n += usize::from(name.ends_with(ext))).unwrap();
        n
    }

    #[test]
    fn writes_survive_close_and_reopen_from_wal_and_tables() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        for i in 0..300u32 {
            db.put(&i.to_be_bytes(), &[i as u8; 20]).unwrap();
        }
        assert!(db.stats().tables > 0, "small MemTables must have been flushed");
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 2048);
        for i in 0..300u32 {
            assert_eq!(get(&mut db, &i.to_be_bytes()), Some(vec![i as u8; 20]), "key {i}");
        }
    }

    #[test]
    fn tombstone_in_memtable_and_in_table_hides_older_table_value() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"k", b"old").unwrap();
        db.flush().unwrap();
        db.delete(b"k").unwrap();
        assert_eq!(get(&mut db, b"k"), None);
        db.flush().unwrap();
        assert_eq!(db.stats().tables, 2);
        assert_eq!(get(&mut db, b"k"), None);
    }

    #[test]
    fn expired_entries_read_as_absent_everywhere() {
        let t = Rc::new(Cell::new(100));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"k", b"forever").unwrap();
        db.flush().unwrap();
        db.put_expiring(b"k", b"brief", 200).unwrap();
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
        db.flush().unwrap();
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"brief"[..]));
        t.set(200);
        assert_eq!(get(&mut db, b"k"), None, "expired entry hides the older value");
        assert_eq!(db.put_expiring(b"x", b"v", 200), Err(Error::InvalidTtl));
    }

    #[test]
    fn flush_retires_wals_and_rotation_keeps_at_most_two() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 1024);
        for i in 0..200u32 {
            db.put(&i.to_le_bytes(), b"0123456789").unwrap();
            assert!(files(&mut db, ".wal") <= 2);
        }
        db.flush().unwrap();
        assert_eq!(files(&mut db, ".wal"), 1);
        assert_eq!(db.stats().wal_bytes, 0);
    }

    #[test]
    fn filters_rule_out_tables_without_a_search_and_never_hide_a_key() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        for i in 0..3000u32 {
            db.put(format!("present{i}").as_bytes(), &i.to_le_bytes()).unwrap();
        }
        db.flush().unwrap();
        let s0 = db.stats();
        assert!(s0.tables >= 2 && s0.compactions > 0, "flushed and compacted tables: {s0:?}");
        for i in 0..3000u32 {
            assert_eq!(get(&mut db, format!("present{i}").as_bytes()), Some(i.to_le_bytes().to_vec()));
        }
        let s1 = db.stats();
        // Each present key is searched for in about one table, not in every table.
        let searches = s1.table_probes - s0.table_probes;
        assert!(searches < 3000 * 11 / 10, "{searches} searches for 3000 present keys, {} tables", s1.tables);
        for i in 0..3000u32 {
            assert_eq!(get(&mut db, format!("absent{i}").as_bytes()), None);
        }
        let s2 = db.stats();
        let (searched, skipped) = (s2.table_probes - s1.table_probes, s2.filter_skips - s1.filter_skips);
        let lookups = 3000 * s2.tables as u64;
        assert_eq!(searched + skipped, lookups);
        assert!(searched * 20 < lookups, "filters let {searched} of {lookups} lookups through");
    }

    #[test]
    fn compaction_keeps_latest_values_and_drops_dead_entries() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        let mut model = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..6000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % 700).into_bytes();
            if x.is_multiple_of(5) {
                db.delete(&key).unwrap();
                model.remove(&key);
            } else {
                let v = format!("v{step}").into_bytes();
                db.put(&key, &v).unwrap();
                model.insert(key, v);
            }
        }
        let s = db.stats();
        assert!(s.compactions > 0, "{s:?}");
        assert!(s.tables <= 20, "{s:?}");
        for i in 0..700 {
            let key = format!("k{i}").into_bytes();
            assert_eq!(get(&mut db, &key), model.get(&key).cloned(), "key {i}");
        }
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 8192);
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
    }

    #[test]
    fn open_removes_inputs_a_finished_compaction_replaced() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 4 << 20]), &t, 8192);
        db.put(b"gone", b"old").unwrap();
        db.flush().unwrap();
        // Keep a copy of the oldest table, as if the compaction had crashed before removing it.
        let oldest = db.tables().next().unwrap().id;
        let name = file_name(FileKind::Table, oldest);
        let copy = {
            let s = db.storage();
            let mut f = s.open(&name).unwrap();
            let len = s.len(&mut f).unwrap() as usize;
            let mut b = vec![0; len];
            read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
            b
        };
        db.delete(b"gone").unwrap();
        for i in 0..3u32 {
            db.put(&i.to_be_bytes(), b"x").unwrap();
            db.flush().unwrap();
        }
        assert!(db.stats().compactions > 0);
        assert_eq!(get(&mut db, b"gone"), None);
        let (mut storage, closed) = db.close();
        closed.unwrap();
        let mut f = storage.create(&name).unwrap();
        embedded_io::Write::write_all(&mut storage.io(&mut f), &copy).unwrap();
        let mut db = open(storage, &t, 8192);
        assert_eq!(get(&mut db, b"gone"), None, "a replaced table must not resurrect a deleted key");
        assert_eq!(files(&mut db, ".sst"), 1);
    }

    #[test]
    fn failed_sync_poisons_writes_but_not_reads() {
        struct FailingSync(Mem, bool);
        impl Storage for FailingSync {
            type Error = MemError;
            type File = crate::mem_storage::MemFile;
            type Io<'a> = crate::mem_storage::MemIo<'a>;
            fn create(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
                self.0.create(n)
            }
            fn open(&mut self, n: &str) -> core::result::Result<Self::File, MemError> {
                self.0.open(n)
            }
            fn io<'a>(&'a mut self, f: &'a mut Self::File) -> Self::Io<'a> {
                self.0.io(f)
            }
            fn len(&mut self, f: &mut Self::File) -> core::result::Result<u64, MemError> {
                self.0.len(f)
            }
            fn truncate(&mut self, f: &mut Self::File, l: u64) -> core::result::Result<(), MemError> {
                self.0.truncate(f, l)
            }
            fn sync(&mut self, f: &mut Self::File) -> core::result::Result<(), MemError> {
                if self.1 {
                    Err(MemError::Full)
                } else {
                    self.0.sync(f)
                }
            }
            fn rename(&mut self, a: &str, b: &str) -> core::result::Result<(), MemError> {
                self.0.rename(a, b)
            }
            fn remove(&mut self, n: &str) -> core::result::Result<(), MemError> {
                self.0.remove(n)
            }
            fn sync_dir(&mut self) -> core::result::Result<(), MemError> {
                self.0.sync_dir()
            }
            fn list(&mut self, v: &mut dyn FnMut(&str)) -> core::result::Result<(), MemError> {
                self.0.list(v)
            }
        }
        let mut db = Db::open(
            FailingSync(Mem::new(vec![0; 1 << 16]), false),
            || 0,
            [vec![0; 1024], vec![0; 1024]],
            Config::default(),
        )
        .unwrap();
        db.put(b"a", b"1").unwrap();
        db.storage().1 = true;
        assert_eq!(db.put(b"b", b"2"), Err(Error::Storage(MemError::Full)));
        db.storage().1 = false;
        assert_eq!(db.put(b"c", b"3"), Err(Error::Poisoned), "no retry into a false success");
        assert_eq!(db.sync(), Err(Error::Poisoned));
        let mut buf = [0u8; 8];
        assert_eq!(db.get(b"a", &mut buf).unwrap(), Some(&b"1"[..]));
    }

    #[test]
    fn rotation_adds_no_wal_sync_when_every_write_is_already_synced() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        let mut i = 0u32;
        loop {
            let before = db.storage().syncs;
            db.put(&i.to_be_bytes(), &[0; 30]).unwrap();
            i += 1;
            if db.stats().immutable_keys > 0 {
                // This write rotated (no immutable table to flush yet): one sync, its own.
                assert_eq!(db.storage().syncs - before, 1);
                break;
            }
            assert_eq!(db.storage().syncs - before, 1);
        }
    }

    #[test]
    fn write_batch_applies_all_entries_and_later_entries_win() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"gone", b"x").unwrap();
        let mut b = WriteBatch::new(vec![0u8; 1024]);
        b.put(b"a", b"1").unwrap();
        b.put(b"a", b"2").unwrap();
        b.delete(b"gone").unwrap();
        b.put(b"c", b"3").unwrap();
        db.write_batch(&b).unwrap();
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"gone"), None);
        // Replayed from the WAL after a reopen, then from an SSTable after a flush.
        let (storage, closed) = db.close();
        closed.unwrap();
        let mut db = open(storage, &t, 4096);
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"c").as_deref(), Some(&b"3"[..]));
        db.flush().unwrap();
        assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&mut db, b"gone"), None);
    }

    #[test]
    fn torn_batch_is_absent_as_a_whole() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 4096);
        db.put(b"before", b"1").unwrap();
        let mut b = WriteBatch::new(vec![0u8; 1024]);
        for i in 0..10u8 {
            b.put(&[b'k', i], &[i; 20]).unwrap();
        }
        db.write_batch(&b).unwrap();
        let wal_len = db.stats().wal_bytes;
        let (mut storage, closed) = db.close();
        closed.unwrap();
        // Cut the WAL one byte short of the end of the batch record.
        let name = {
            let mut n = None;
            storage
                .list(&mut |f| {
                    if f.ends_with(".wal") {
                        n = Some(f.to_string())
                    }
                })
                .unwrap();
            n.unwrap()
        };
        let mut f = storage.open(&name).unwrap();
        let first = wal_len - (b.payload().len() + HEADER_LEN) as u64;
        storage.truncate(&mut f, wal_len - 1).unwrap();
        let mut db = open(storage, &t, 4096);
        assert_eq!(db.stats().torn_tails_truncated, 1);
        assert_eq!(get(&mut db, b"before").as_deref(), Some(&b"1"[..]));
        for i in 0..10u8 {
            assert_eq!(get(&mut db, &[b'k', i]), None, "no part of a torn batch survives");
        }
        assert_eq!(db.stats().wal_bytes, first);
    }

    #[test]
    fn oversized_batch_is_refused_and_rotation_makes_room_for_the_rest() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        let mut big = WriteBatch::new(vec![0u8; 8192]);
        for i in 0..100u32 {
            big.put(&i.to_be_bytes(), &[0; 40]).unwrap();
        }
        assert!(matches!(db.write_batch(&big), Err(Error::BatchTooLarge { .. })));
        assert!(!db.is_poisoned());
        let mut model = BTreeMap::new();
        for round in 0..50u32 {
            let mut b = WriteBatch::new(vec![0u8; 512]);
            for j in 0..5u32 {
                let k = (round * 3 + j).to_be_bytes();
                b.put(&k, &round.to_le_bytes()).unwrap();
                model.insert(k.to_vec(), round.to_le_bytes().to_vec());
            }
            db.write_batch(&b).unwrap();
        }
        assert!(db.stats().flushes > 0);
        for (k, v) in &model {
            assert_eq!(get(&mut db, k).as_ref(), Some(v));
        }
    }

    #[test]
    fn limits_are_enforced_with_errors() {
        let t = Rc::new(Cell::new(0));
        let mut db = open(Mem::new(vec![0; 1 << 20]), &t, 2048);
        assert_eq!(db.put(b"", b"v"), Err(Error::EmptyKey));
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        assert_eq!(db.put(&long, b"v"), Err(Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN }));
        assert!(matches!(db.put(b"k", &[0; 4096]), Err(Error::ValueTooLarge { len: 4096, .. })));
        db.put(b"k", &[7; 300]).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(db.get(b"k", &mut small), Err(Error::BufferTooSmall { needed: 300 }));
        assert!(matches!(
            Db::open(Mem::new(vec![0; 4096]), || 0, [vec![0; 100], vec![0; 100]], Config::default()),
            Err(Error::InsufficientMemory { .. })
        ));
    }
}
