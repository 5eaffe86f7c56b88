//! Recovery: [`Db::open`], which rebuilds the engine's state from what is on storage.
//!
//! 1. The table set ([`Version::recover`]): open and check every SSTable, finish what a crashed
//!    flush or compaction left (remove `*.tmp`, replaced tables, covered WALs).
//! 2. Replay the WALs no table covers, in id order, into the active MemTable ([`WalReader`]
//!    decides where each WAL ends: a clean end, a cut unsynced tail, or corruption). A MemTable
//!    that fills during replay is written out as an SSTable. An older WAL may end in an unsynced
//!    tail only when the WAL after it allows it ([`wal::replay::successor_of`]); when it ends
//!    before the end that WAL's header names, the later WALs are removed, not replayed: their
//!    writes followed lost ones (see [`crate::wal`], "predecessor").
//! 3. Continue the newest WAL at its logical end ([`Wal::adopt`]), or start one; write out the
//!    MemTable when its entries came from several WALs (or from a WAL of format 1), so that no
//!    more than the current and the immutable MemTable's WALs ever exist.
//! 4. Sync the adopted WAL as soon as it is adopted (replayed records may have reached only the
//!    page cache before the crash, and it may become an older WAL that nothing else syncs), and
//!    the directory before any new write is acknowledged.
//!
//! Read-only ([`Config::read_only`]): nothing is removed, cut, written or synced; replay fills
//! the two MemTables in turn, and a WAL or table that a writer in another process retires while
//! this runs (a storage error of kind `NotFound`) makes the whole open start over. A storage
//! can spare it that race by serving the open from files it holds open (the POSIX crate's
//! `PosixStorage::hold_files`): a busy writer retires a file every few milliseconds, and an open
//! that reads hundreds of tables may lose every one of its attempts. What it serves must be the
//! directory as it was at one moment (the writer keeps every such state recoverable), with no
//! older version of a name a compaction has since renamed over.

use embedded_io::{Error as _, ErrorKind};

use crate::db::{Counters, Db, Result};
use crate::error::{Error, ResultExt};
use crate::log::{event, warn_event};
use crate::memtable::bytes_needed;
use crate::memtables::MemTables;
use crate::names::{file_name, FileKind};
use crate::options::{Clock, Config};
use crate::storage::Storage;
use crate::version::Version;
use crate::wal::{self, OldWal, Wal, WalReader, Wals};

/// How many times a read-only open starts over when a file it needs is retired under it.
const READ_ONLY_ATTEMPTS: usize = 16;

impl<S, C, M> Db<S, C, M>
where
    S: Storage,
    C: Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    /// Opens the database kept in `storage`, recovering whatever a crash left behind.
    ///
    /// `memtables` are the two MemTable buffers (each at least
    /// [`crate::memtable::MIN_MEMTABLE_BYTES`]); their size bounds the largest entry and how much
    /// is written per SSTable.
    pub fn open(storage: S, clock: C, memtables: [M; 2], config: Config) -> Result<Self, S> {
        let mems = MemTables::new(memtables).map_err(|given| Error::InsufficientMemory {
            needed: crate::memtable::MIN_MEMTABLE_BYTES,
            given,
        })?;
        let space = crate::space::Space::new(&config, mems.buffer_len())?;
        let version = Version::empty();
        let mut db = Db {
            storage,
            clock,
            config,
            mems,
            wals: Wals::default(),
            version,
            poisoned: false,
            refused_by_host: false,
            counters: Counters::default(),
            order: None,
            space,
            running: heapless::Vec::new(),
            stepped: None,
            stepped_scratch: None,
            flushing: None,
            spare_planned: None,
        };
        let mut attempt = 1;
        loop {
            match db.recover() {
                Err(Error::Storage(e))
                    if config.read_only
                        && e.kind() == ErrorKind::NotFound
                        && attempt < READ_ONLY_ATTEMPTS =>
                {
                    attempt += 1;
                    db.mems.clear();
                    db.counters = Counters::default();
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(db),
            }
        }
    }

    fn recover(&mut self) -> Result<(), S> {
        let read_only = self.config.read_only;
        let mut found = self.version.recover(&mut self.storage, read_only)?;
        // Spare WALs never taken, or taken and never synced (see `wal::spare`): unsynced records
        // set aside with them count as a torn tail.
        self.counters.torn_tails_truncated +=
            wal::spare::set_aside(&mut self.storage, &mut found.wals, read_only)?;
        // A database left at the table limit (small MemTables, an older build) must make room
        // before replay may flush.
        if !read_only {
            self.drop_expired_tables(false)?;
            self.maybe_compact()?;
            // A smaller cap than the data was written with: drop the oldest data before replay.
            self.enforce_cap()?;
        }
        let chunk = wal::chunk_for(self.config.wal_preallocation, self.mems.active().arena_capacity());
        let mut wals: Wals<S::File> = Wals::default();
        let mut flush_needed = false;
        // WALs past `kept` followed writes a power cut took from their predecessor: not replayed.
        let mut kept = found.wals.len();
        let mut i = 0;
        while i < kept {
            let Some(&id) = found.wals.get(i) else { break };
            let mut newest = i + 1 == kept;
            // What the next WAL allows of this one's tail (see `wal::replay::successor_of`).
            let allowance = match found.wals.get(i + 1) {
                Some(&next) if !newest => {
                    wal::replay::successor_of(&mut self.storage, next, id, i + 2 == kept)?
                }
                _ => None,
            };
            let mut reader =
                WalReader::open(&mut self.storage, id, newest || allowance.is_some(), read_only)?;
            self.replay(&mut reader)?;
            let version = reader.version();
            let spare_header = reader.link().is_some_and(|l| l.end == wal::spare::SPARE_END);
            let (mut file, end) = reader.finish();
            if end.torn_tail_cut {
                self.counters.torn_tails_truncated += 1;
            }
            event!("recovery: replayed WAL {=u64} ({=u64} bytes)", id, end.len);
            if let Some(Some(link_end)) = allowance {
                if end.len > link_end {
                    // Records past the end the successor was created after: nothing appends to
                    // a WAL once it is rotated away.
                    return Err(crate::error::corrupted(
                        file_name(FileKind::Wal, id),
                        link_end,
                        crate::error::Corruption::BadLayout,
                    ));
                }
                if end.len < link_end {
                    // This WAL lost records its successor was created after: the later WALs'
                    // writes followed lost ones, and none of them was synced. They go, durably
                    // (the directory is synced before open returns), before anything is appended.
                    warn_event!(
                        "recovery: WAL {=u64} ends at {=u64} before {=u64}, where its successor began: the later WALs are dropped",
                        id,
                        end.len,
                        link_end
                    );
                    if !read_only {
                        for &later in found.wals.get(i + 1..).unwrap_or(&[]) {
                            self.storage.remove(&file_name(FileKind::Wal, later)).storage()?;
                        }
                    }
                    let dropped = found.wals.len() - (i + 1);
                    self.counters.wals_dropped += dropped as u64;
                    kept = i + 1;
                    newest = true;
                }
            }
            let record_bytes = end.len.saturating_sub(end.start);
            if newest && !read_only && (version >= 2 || record_bytes == 0) {
                // Appends continue at the logical end, over the zero tail (if any), which stays
                // preallocated: it reads as the clean end until records overwrite it.
                wals.set_current(Wal::adopt(&mut self.storage, id, file, end, chunk, spare_header)?);
            } else {
                if !read_only {
                    // Its records may have reached only the page cache before the crash (a
                    // rotation leaves the old WAL unsynced): synced before anything newer is.
                    self.storage.sync(&mut file).storage()?;
                }
                wals.push_older(OldWal { id, record_bytes, file_bytes: end.file_len })?;
                // Format-1 WALs are never appended to: their entries go to an SSTable.
                flush_needed |= newest && !read_only;
            }
            i += 1;
        }
        self.wals = wals;
        if read_only {
            return Ok(());
        }
        if !self.wals.has_current() {
            let id = self.version.new_id();
            self.wals.set_current(Wal::create(&mut self.storage, id, chunk, None)?);
        }
        // Entries from several WALs now share one MemTable: write them out, so that no more than
        // two WAL files (current and immutable) ever exist.
        if flush_needed || self.wals.has_older() {
            match self.flush() {
                // A full storage must not keep the database from opening: the MemTable keeps
                // the entries of every WAL, and the next rotation writes them out (and removes
                // the WALs) once there is room.
                Err(Error::Full) => {
                    warn_event!("recovery: no space to flush the replayed WALs");
                }
                other => other?,
            }
        }
        // The WAL's contents were synced when it was adopted (or created), but its directory
        // entry may never have been: make it durable before any new write is acknowledged.
        self.storage.sync_dir().storage()
    }

    /// Replays one WAL into the MemTables.
    fn replay(&mut self, reader: &mut WalReader<S::File>) -> Result<(), S> {
        let id = reader.id();
        let too_small = |mems: &MemTables<M>, len: usize, keys: usize| Error::MemTableTooSmall {
            file: file_name(FileKind::Wal, id),
            needed: bytes_needed(len, keys),
            given: mems.buffer_len(),
        };
        while let Some(head) = reader.next(&mut self.storage)? {
            if head.len > self.mems.active().max_payload() {
                // Either a valid record written with larger MemTables, or a damaged length.
                if !reader.current_is_valid(&mut self.storage)? {
                    reader.reject(&mut self.storage)?;
                    break;
                }
                return Err(too_small(&self.mems, head.len, 1));
            }
            if !self.mems.active().fits_items(head.len, 0, 0) {
                self.make_room_during_replay(id)?;
            }
            let Some((offset, dst)) = self.mems.active_mut().reserve(head.len) else {
                return Err(too_small(&self.mems, head.len, 1));
            };
            if !reader.read(&mut self.storage, dst)? {
                break;
            }
            // What the record writes decides whether it fits: the MemTable may have to go out
            // first, and the record be read again into the next one.
            let (mut offset, mut counts) = (offset, (0, 0));
            if let Some(payload) = self.mems.active().reserved(offset) {
                counts = crate::memtable::item_counts(payload)
                    .map_err(|kind| crate::error::corrupted(file_name(FileKind::Wal, id), 0, kind))?;
            }
            let (keys, ranges) = counts;
            if keys > self.mems.active().key_capacity() {
                return Err(too_small(&self.mems, head.len, keys));
            }
            if !self.mems.active().fits_items(head.len, keys, ranges) {
                self.make_room_during_replay(id)?;
                let Some((again, dst)) = self.mems.active_mut().reserve(head.len) else {
                    return Err(too_small(&self.mems, head.len, keys));
                };
                if !reader.reread(&mut self.storage, dst)? {
                    return Err(crate::error::corrupted(
                        file_name(FileKind::Wal, id),
                        0,
                        crate::error::Corruption::Truncated,
                    ));
                }
                offset = again;
            }
            if let Err(kind) = self.mems.active_mut().commit_reserved(offset) {
                // The record passed its checks, so this cannot happen; refuse rather than guess.
                return Err(crate::error::corrupted(file_name(FileKind::Wal, id), 0, kind));
            }
        }
        Ok(())
    }

    /// The active MemTable is full in the middle of replaying WAL `id`: it becomes the immutable
    /// MemTable (holding the WALs before this one), as it was before the crash. Only when the
    /// immutable one is taken already is it written out first (writing), which needs room on
    /// the storage; read-only, that means the WALs were written with larger MemTables.
    fn make_room_during_replay(&mut self, id: u64) -> Result<(), S> {
        if self.mems.immutable_wal().is_some() {
            if self.config.read_only {
                let arenas = 2 * self.mems.active().arena_capacity();
                return Err(Error::InsufficientMemory { needed: arenas + 1, given: arenas });
            }
            self.flush_immutable()?;
        }
        self.mems.rotate(id - 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read_exact_at;
    use crate::mem_storage::MemStorage;
    use crate::options::SyncPolicy;
    use std::vec::Vec;

    type Mem = MemStorage<Vec<u8>, 16>;

    fn snapshot(s: &mut Mem) -> Vec<(std::string::String, Vec<u8>)> {
        let mut names = Vec::new();
        s.list(&mut |n| names.push(std::string::String::from(n))).unwrap();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let mut f = s.open(&n).unwrap();
                let len = s.len(&mut f).unwrap() as usize;
                let mut b = std::vec![0u8; len];
                read_exact_at(&mut s.io(&mut f), 0, &mut b).unwrap();
                (n, b)
            })
            .collect()
    }

    fn wal_names(s: &mut Mem) -> Vec<std::string::String> {
        let mut names = Vec::new();
        s.list(&mut |n| {
            if n.ends_with(".wal") {
                names.push(std::string::String::from(n))
            }
        })
        .unwrap();
        names.sort();
        names
    }

    /// A database whose last write rotated the WAL, then `after` more keys in the new WAL, with
    /// `sync_between` a sync (of both WALs) before the last of them; closed. Returns the storage,
    /// the keys written before the rotation, and the syncs the rotating write made.
    fn rotated(after: u32, sync_between: bool) -> (Mem, u32, u64) {
        rotated_with(after, sync_between, &[1; 24])
    }

    /// [`rotated`], with `value` for the keys written after the rotation.
    fn rotated_with(after: u32, sync_between: bool, value: &[u8]) -> (Mem, u32, u64) {
        let config = Config::with_sync(SyncPolicy::Manual);
        let mems = [std::vec![0u8; 2048], std::vec![0u8; 2048]];
        let mut db = Db::open(Mem::new(std::vec![0; 1 << 20]), || 0, mems, config).unwrap();
        let mut i = 0u32;
        let rotating_syncs = loop {
            let syncs = db.storage().syncs;
            db.put(&i.to_be_bytes(), &[i as u8; 24]).unwrap();
            i += 1;
            if db.stats().immutable_keys > 0 {
                break db.storage().syncs - syncs;
            }
        };
        let before = i - 1;
        for k in 0..after {
            if sync_between && k + 1 == after {
                db.sync().unwrap();
            }
            db.put(&(i + k).to_be_bytes(), value).unwrap();
        }
        let (storage, closed) = db.close();
        closed.unwrap();
        (storage, before, rotating_syncs)
    }

    /// Damages the last record of the older of the two WALs, as a power cut may have left it.
    fn tear_predecessor(s: &mut Mem) {
        let names = wal_names(s);
        assert_eq!(names.len(), 2, "{names:?}");
        let mut f = s.open(&names[0]).unwrap();
        let len = s.len(&mut f).unwrap();
        let mut bytes = std::vec![0u8; len as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut bytes).unwrap();
        let last = bytes.iter().rposition(|&b| b != 0).unwrap() as u64;
        crate::io::write_at(&mut s.io(&mut f), last, &[&[0x5a]]).unwrap();
    }

    type MemDb = Db<Mem, fn() -> u64, Vec<u8>>;

    fn reopen(s: Mem) -> Result<MemDb, Mem> {
        let mems = [std::vec![0u8; 2048], std::vec![0u8; 2048]];
        Db::open(s, (|| 0) as fn() -> u64, mems, Config::with_sync(SyncPolicy::Manual))
    }

    #[test]
    fn rotation_leaves_the_old_wal_unsynced_and_a_torn_predecessor_drops_the_wals_after_it() {
        let (mut storage, before, rotating_syncs) = rotated(3, false);
        // The new WAL's header only (the directory sync is counted apart): not the old WAL.
        assert_eq!(rotating_syncs, 1);
        tear_predecessor(&mut storage);
        let mut db = reopen(storage).unwrap();
        let stats = db.stats();
        assert_eq!((stats.wals_dropped, stats.torn_tails_truncated), (1, 1), "{stats:?}");
        let mut buf = [0u8; 64];
        // The torn record was the last before the rotation; everything before it is there, and
        // nothing written after it.
        for k in 0..before - 1 {
            assert_eq!(db.get(&k.to_be_bytes(), &mut buf).unwrap(), Some(&[k as u8; 24][..]), "key {k}");
        }
        for k in before - 1..before + 3 {
            assert_eq!(db.get(&k.to_be_bytes(), &mut buf).unwrap(), None, "key {k}");
        }
        // The dropped WAL is gone and writes go on.
        db.put(b"next", b"v").unwrap();
        assert_eq!(db.get(b"next", &mut buf).unwrap(), Some(&b"v"[..]));
    }

    #[test]
    fn a_value_holding_a_framed_record_is_no_proof_of_a_sync() {
        // A value that is itself a whole, checksum-valid WAL record whose watermark (33) lies
        // past the new WAL's header: only the record chain counts as evidence.
        let h = crate::entry::EntryHeader { tombstone: false, key_len: 1, expires_at: None };
        let (hb, hn) = h.encode();
        let payload = [&33u32.to_le_bytes()[..], &hb[..hn], b"k", b"vv"].concat();
        let crc = crate::record::crc32c(&[&payload]);
        let header = crate::record::RecordHeader { len: payload.len() as u32, crc }.encode();
        let value = [&header[..], &payload].concat();
        let (mut storage, before, _) = rotated_with(3, false, &value);
        tear_predecessor(&mut storage);
        let mut db = reopen(storage).unwrap();
        assert_eq!(db.stats().wals_dropped, 1);
        let mut buf = [0u8; 64];
        assert_eq!(db.get(&before.to_be_bytes(), &mut buf).unwrap(), None);
    }

    #[test]
    fn a_damaged_predecessor_is_corruption_once_the_wal_after_it_shows_a_sync() {
        let (mut storage, _, _) = rotated(3, true);
        tear_predecessor(&mut storage);
        match reopen(storage) {
            Err(Error::Corrupted { kind, .. }) => assert_eq!(kind, crate::Corruption::Truncated),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_format_2_wal_is_replayed_and_appended_to() {
        let mut s = Mem::new(std::vec![0; 1 << 20]);
        let mut f = s.create("0000000000000001.wal").unwrap();
        let mut end =
            crate::io::write_at(&mut s.io(&mut f), 0, &[b"MVWL", &2u16.to_le_bytes(), &[0, 0]]).unwrap();
        for k in 0..5u8 {
            let h = crate::entry::EntryHeader { tombstone: false, key_len: 1, expires_at: None };
            let (hb, hn) = h.encode();
            let body: [&[u8]; 3] = [&hb[..hn], &[k], b"old"];
            end = wal::append_with_prefix(&mut s.io(&mut f), end, &wal::watermark(8), &body).unwrap();
        }
        let mut db = reopen(s).unwrap();
        db.put(&[9], b"new").unwrap();
        let (s, closed) = db.close();
        closed.unwrap();
        let mut db = reopen(s).unwrap();
        let mut buf = [0u8; 16];
        for k in 0..5u8 {
            assert_eq!(db.get(&[k], &mut buf).unwrap(), Some(&b"old"[..]), "key {k}");
        }
        assert_eq!(db.get(&[9], &mut buf).unwrap(), Some(&b"new"[..]));
        assert_eq!(db.stats().torn_tails_truncated, 0);
    }

    #[test]
    fn read_only_open_sees_tables_and_both_wals_and_changes_nothing() {
        let mut db = Db::open(
            Mem::new(std::vec![0; 1 << 20]),
            || 0,
            [std::vec![0u8; 2048], std::vec![0u8; 2048]],
            Config::default(),
        )
        .unwrap();
        let mut i = 0u32;
        // Tables, then an immutable MemTable's WAL and the current one.
        while db.stats().flushes < 2 || db.stats().immutable_keys == 0 || db.stats().memtable_keys < 3 {
            db.put(&i.to_be_bytes(), &[i as u8; 24]).unwrap();
            i += 1;
        }
        let (mut storage, closed) = db.close();
        closed.unwrap();
        // A torn tail on the newest WAL: a read-only open must not cut it.
        let mut newest = None;
        storage
            .list(&mut |n| {
                if n.ends_with(".wal") {
                    newest = Some(std::string::String::from(n))
                }
            })
            .unwrap();
        let newest = newest.unwrap();
        let mut f = storage.open(&newest).unwrap();
        let end = storage.len(&mut f).unwrap();
        crate::io::write_at(&mut storage.io(&mut f), end, &[&[9, 0, 0, 0, 1, 2]]).unwrap();
        let before = snapshot(&mut storage);
        let (syncs, dir_syncs) = (storage.syncs, storage.dir_syncs);

        let config = Config { read_only: true, ..Config::default() };
        let mut db = Db::open(storage, || 0, [std::vec![0u8; 2048], std::vec![0u8; 2048]], config).unwrap();
        assert!(db.is_read_only());
        let mut buf = [0u8; 64];
        for k in 0..i {
            assert_eq!(db.get(&k.to_be_bytes(), &mut buf).unwrap(), Some(&[k as u8; 24][..]), "key {k}");
        }
        assert_eq!(db.put(b"x", b"y"), Err(Error::ReadOnly));
        assert_eq!(db.delete(b"x"), Err(Error::ReadOnly));
        assert_eq!(db.flush(), Err(Error::ReadOnly));
        assert_eq!(db.sync(), Err(Error::ReadOnly));
        assert!(!db.is_poisoned(), "a refused write is not a failed one");
        let (mut storage, closed) = db.close();
        closed.unwrap();
        assert_eq!((storage.syncs, storage.dir_syncs), (syncs, dir_syncs), "a read-only open synced");
        assert_eq!(snapshot(&mut storage), before, "a read-only open changed the files");
        // And a writable open then cuts the torn tail and keeps everything.
        let mut db = Db::open(
            storage,
            || 0,
            [std::vec![0u8; 2048], std::vec![0u8; 2048]],
            Config::with_sync(SyncPolicy::Manual),
        )
        .unwrap();
        assert_eq!(db.stats().torn_tails_truncated, 1);
        assert_eq!(db.get(&(i - 1).to_be_bytes(), &mut buf).unwrap(), Some(&[(i - 1) as u8; 24][..]));
    }
}
