//! The WAL writer: [`Wal`] owns the current WAL file, its logical end, how far it has been
//! extended, its durable end (the watermark stamped on each new record) and the count of writes
//! not yet synced. [`Wals`] adds the older WAL files that a MemTable still needs, rotation from
//! one WAL to the next, and the sync policy.
//!
//! # Rotation does not sync
//! Rotation creates the next WAL (its header names the old one and the old one's end, see
//! [`super::Link`]) and leaves the old WAL's unsynced records as they are: the old WAL is kept
//! open as the *unsynced predecessor*. Every sync of the current WAL, the engine's own
//! ([`Wals::sync`], a policy's) or a host's ([`Wals::sync_targets`]), syncs the predecessor
//! first, so no record of the new WAL is ever durable (and no watermark past its header is ever
//! written) while a record before it could still be lost. A flush that retires the predecessor
//! makes its sync unnecessary: its writes are in a durable table.
//!
//! # Syncs made outside the engine
//! A host that shares the engine between threads may sync the WAL without holding the engine
//! (group commit: one `fdatasync` for many writers, while readers go on). It takes a
//! [`SyncTarget`] ([`Wal::sync_target`]: the WAL, the end of its records and the writes appended
//! so far), syncs that WAL's file through a handle of its own, and reports back with
//! [`Wal::note_synced`]. The durable end moves only to what such a sync covered, so the
//! watermark of every later record stays true; records appended while the sync ran carry the
//! older watermark, which claims less than was synced (weaker evidence, never false).
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use heapless::Vec;

use super::{append_with_prefix, file_header, preallocation_end, watermark, Link, Replayed, Spare};
use crate::error::{Error, ResultExt};
use crate::io::write_at;
use crate::limits::MAX_WALS;
use crate::log::event;
use crate::names::{file_name, FileKind};
use crate::options::SyncPolicy;
use crate::space::no_space;
use crate::storage::Storage;

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

/// The WAL that takes new writes.
pub struct Wal<F> {
    id: u64,
    file: F,
    /// Where the records start: the header's length.
    start: u64,
    /// The logical end: where the next record goes. Bytes from here to the end of the file are
    /// zeros (the preallocated tail).
    len: u64,
    /// The length the file was last extended to, or found with at open; a record ending at or
    /// below it does not change the file's size.
    allocated: u64,
    /// The end of the records the last completed sync covered: the watermark of new records.
    durable: u64,
    /// User writes appended to this WAL.
    written: u64,
    /// Of those, the writes a completed sync covered.
    synced_writes: u64,
    /// How far ahead the file is extended (0: never).
    chunk: u64,
    /// A record cut off again (out of space part way) since the last sync: the cut is not
    /// durable, so a power cut may bring bytes past `len` back; the WAL counts as unsynced until
    /// a sync (and a rotation names it, so replay may cut those bytes off again).
    unsynced_cut: bool,
    /// A spare's header, written over by the rotation that took it ([`super::spare`]), not yet
    /// synced: the WAL counts as unsynced until a sync, as for `unsynced_cut`.
    header_unsynced: bool,
}

impl<F> Wal<F> {
    /// Creates WAL `id` following `link` (see [`Link`]): writes its header, syncs it and the
    /// directory, so that no record is ever appended to a WAL whose name or header a power cut
    /// could take.
    ///
    /// On a full storage ([`Storage::is_full`]) the file is removed again (durably) and the
    /// error is [`Error::Full`]: no record was ever in it.
    pub fn create<S: Storage<File = F>>(
        storage: &mut S,
        id: u64,
        chunk: u64,
        link: Option<Link>,
    ) -> Result<Self, S> {
        let name = file_name(FileKind::Wal, id);
        let file = storage.create(&name).map_err(|e| no_space(storage, e))?;
        let mut wal = Wal {
            id,
            file,
            start: 0,
            len: 0,
            allocated: 0,
            durable: 0,
            written: 0,
            synced_writes: 0,
            chunk,
            unsynced_cut: false,
            header_unsynced: false,
        };
        if let Err(e) = wal.write_header(storage, link) {
            let Error::Storage(e) = e else { return Err(e) };
            if !storage.is_full(&e) {
                return Err(Error::Storage(e));
            }
            // The removal must be durable before anything more is appended to the current WAL:
            // a new WAL that came back after a power cut would make it an older WAL, whose
            // unsynced tail would then read as corruption.
            drop(wal);
            storage.remove(&name).storage()?;
            storage.sync_dir().storage()?;
            return Err(Error::Full);
        }
        storage.sync_dir().storage()?;
        Ok(wal)
    }

    /// Continues WAL `id` after replay: its records start at `end.start` and end at `end.len`
    /// in a file `end.file_len` bytes long. A WAL with no header yet (an empty or all-zero file,
    /// or a header a power cut tore) is given one, naming no predecessor; so is one whose
    /// header is still a spare's (`spare_header`: a spare taken by a rotation whose rewritten
    /// header a power cut lost, [`super::spare`]), or the next open would set it aside. The file is
    /// synced first: what replay read may have reached only the page cache before a crash, and
    /// this WAL may become an older one (by rotation, or when the open goes on to flush) that
    /// nothing else would sync, whose unsynced tail a power cut could then damage.
    pub fn adopt<S: Storage<File = F>>(
        storage: &mut S,
        id: u64,
        file: F,
        end: Replayed,
        chunk: u64,
        spare_header: bool,
    ) -> Result<Self, S> {
        let mut wal = Wal {
            id,
            file,
            start: end.start,
            len: end.len,
            allocated: end.file_len,
            durable: end.len,
            written: 0,
            synced_writes: 0,
            chunk,
            unsynced_cut: false,
            header_unsynced: false,
        };
        if end.start == 0 {
            wal.write_header(storage, None)?;
        } else {
            if spare_header {
                let io = &mut storage.io(&mut wal.file);
                write_at(io, 0, &[&file_header(None)]).storage()?;
                embedded_io::Write::flush(io).storage()?;
            }
            wal.sync(storage)?;
        }
        Ok(wal)
    }

    /// Writes the header at the start of an empty (or all-zero) file and syncs it.
    fn write_header<S: Storage<File = F>>(&mut self, storage: &mut S, link: Option<Link>) -> Result<(), S> {
        let end = {
            let io = &mut storage.io(&mut self.file);
            let end = write_at(io, 0, &[&file_header(link)]).storage()?;
            embedded_io::Write::flush(io).storage()?;
            end
        };
        storage.sync(&mut self.file).storage()?;
        self.start = end;
        self.len = end;
        self.allocated = self.allocated.max(end);
        self.durable = end;
        Ok(())
    }

    /// The WAL's id (its file is `<id>.wal`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes of records (the logical end, without the header).
    pub fn record_bytes(&self) -> u64 {
        self.len.saturating_sub(self.start)
    }

    /// The logical end: where the next record goes (header included).
    pub fn end(&self) -> u64 {
        self.len
    }

    /// True when records past the last completed sync exist.
    fn has_unsynced(&self) -> bool {
        self.durable < self.len
            || self.synced_writes < self.written
            || self.unsynced_cut
            || self.header_unsynced
    }

    /// User writes appended since the last sync.
    pub fn unsynced(&self) -> u32 {
        u32::try_from(self.written - self.synced_writes).unwrap_or(u32::MAX)
    }

    /// What a sync started now would cover: this WAL, the end of its records, and the writes
    /// appended so far. Every record below `end` has been handed to the operating system.
    pub fn sync_target(&self) -> SyncTarget {
        SyncTarget { wal: self.id, end: self.len, writes: self.written }
    }

    /// Records that a sync of this WAL's file, started after `target` was taken, has completed:
    /// the durable end (the watermark of later records) moves up to `target.end`, and the writes
    /// it covered no longer count as unsynced. A target of another WAL or one older than what is
    /// already durable changes nothing.
    pub fn note_synced(&mut self, target: SyncTarget) {
        if target.wal != self.id {
            return;
        }
        self.durable = self.durable.max(target.end.min(self.len));
        self.synced_writes = self.synced_writes.max(target.writes.min(self.written));
        // Every target of this WAL was taken while it was current or the unsynced predecessor,
        // so after the rotation that rewrote its header: the sync covered the header too.
        self.header_unsynced = false;
    }

    /// Bytes the file takes: its header, records and preallocated zero tail.
    pub fn file_bytes(&self) -> u64 {
        self.len.max(self.allocated)
    }

    /// Appends one record of `body` (an entry's parts, or a batch) carrying `writes` user writes,
    /// extending the file first when the record would end past its extension. The record is
    /// handed to the operating system before this returns; [`Wals::append`] applies the policy.
    pub fn append<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        body: &[&[u8]],
        writes: u32,
    ) -> Result<(), S> {
        let watermark = watermark(self.durable);
        let record_len = (crate::record::HEADER_LEN + watermark.len()) as u64
            + body.iter().map(|p| p.len() as u64).sum::<u64>();
        let needed = self.len + record_len;
        if self.chunk > 0 && needed > self.allocated {
            // Extend ahead of the writer, so that this record's sync (and the next chunk's worth
            // of them) has no file size to persist. Nothing of the record is written yet if it
            // fails.
            let target = preallocation_end(needed, self.chunk);
            storage.preallocate(&mut self.file, target).map_err(|e| no_space(storage, e))?;
            self.allocated = target;
        }
        let appended = append_with_prefix(&mut storage.io(&mut self.file), self.len, &watermark, body);
        match appended {
            Ok(end) => self.len = end,
            Err(e) if storage.is_full(&e) => {
                // Out of space part way through the record: cut it off again, so that the next
                // record starts where this one did and nothing of it can be replayed.
                storage.truncate(&mut self.file, self.len).storage()?;
                self.allocated = self.len;
                self.unsynced_cut = true;
                return Err(Error::Full);
            }
            Err(e) => return Err(Error::Storage(e)),
        }
        self.written += u64::from(writes);
        Ok(())
    }

    /// Makes every record appended so far durable; later records carry the new watermark. Only
    /// through [`Wals`], which syncs an unsynced predecessor first.
    pub(super) fn sync<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<(), S> {
        storage.sync(&mut self.file).storage()?;
        self.durable = self.len;
        self.synced_writes = self.written;
        self.unsynced_cut = false;
        self.header_unsynced = false;
        Ok(())
    }

    /// Starts the prepared `spare` ([`super::spare`]) as a WAL following `link`: opens its file
    /// and writes its header over the spare's, without a sync (the WAL counts as unsynced until
    /// its first one).
    fn take_spare<S: Storage<File = F>>(
        storage: &mut S,
        spare: &Spare,
        link: Option<Link>,
    ) -> Result<Self, S> {
        let mut file = storage.open(&file_name(FileKind::Wal, spare.id)).storage()?;
        let allocated = storage.len(&mut file).storage()?;
        let end = {
            let io = &mut storage.io(&mut file);
            let end = write_at(io, 0, &[&file_header(link)]).storage()?;
            embedded_io::Write::flush(io).storage()?;
            end
        };
        Ok(Wal {
            id: spare.id,
            file,
            start: end,
            len: end,
            allocated: allocated.max(end),
            durable: end,
            written: 0,
            synced_writes: 0,
            chunk: spare.chunk,
            unsynced_cut: false,
            header_unsynced: true,
        })
    }
}

/// What a sync of the current WAL made outside the engine covers ([`Wal::sync_target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTarget {
    /// The WAL's id.
    pub wal: u64,
    /// The end of its records when the target was taken.
    pub end: u64,
    /// The user writes appended to it by then.
    pub writes: u64,
}

/// An older WAL still needed by a MemTable: its id and its bytes of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldWal {
    /// The WAL's id.
    pub id: u64,
    /// Bytes of records in it.
    pub record_bytes: u64,
    /// Bytes the file takes (header, records, zero tail).
    pub file_bytes: u64,
}

/// The WAL files: the current one (none when the database is read-only) and the older ones whose
/// writes are not yet in SSTables.
pub struct Wals<F> {
    current: Option<Wal<F>>,
    /// The WAL the current one was rotated from, while records of it are not known durable:
    /// synced before the current WAL is (see the [module documentation](self)).
    unsynced_predecessor: Option<Wal<F>>,
    older: Vec<OldWal, MAX_WALS>,
    /// The spare WAL ready for the next rotation ([`super::spare`]): it names the current WAL.
    spare: Option<Spare>,
}

impl<F> Default for Wals<F> {
    fn default() -> Self {
        Wals { current: None, unsynced_predecessor: None, older: Vec::new(), spare: None }
    }
}

impl<F> Wals<F> {
    /// The WAL that takes writes, if any.
    pub fn current(&mut self) -> Option<&mut Wal<F>> {
        self.current.as_mut()
    }

    /// The WAL that takes writes, if any, to look at.
    pub fn current_ref(&self) -> Option<&Wal<F>> {
        self.current.as_ref()
    }

    /// True when a WAL takes writes.
    pub fn has_current(&self) -> bool {
        self.current.is_some()
    }

    /// Makes `wal` the WAL that takes writes.
    pub fn set_current(&mut self, wal: Wal<F>) {
        self.current = Some(wal);
    }

    /// Records an older WAL (found on open) whose writes are in a MemTable.
    pub fn push_older<E>(&mut self, old: OldWal) -> core::result::Result<(), Error<E>> {
        self.older.push(old).map_err(|_| Error::TooManyWals)
    }

    /// True when older WALs are waiting to be retired.
    pub fn has_older(&self) -> bool {
        !self.older.is_empty()
    }

    /// Bytes of records in every live WAL.
    pub fn record_bytes(&self) -> u64 {
        self.current.as_ref().map_or(0, Wal::record_bytes)
            + self.older.iter().map(|w| w.record_bytes).sum::<u64>()
    }

    /// How far ahead the current WAL is extended (0: never, or no current WAL).
    pub fn chunk(&self) -> u64 {
        self.current.as_ref().map_or(0, |w| w.chunk)
    }

    /// Bytes every live WAL file takes (headers and preallocated tails included), the spare's too.
    pub fn file_bytes(&self) -> u64 {
        self.current.as_ref().map_or(0, Wal::file_bytes)
            + self.older.iter().map(|w| w.file_bytes).sum::<u64>()
            + self.spare.as_ref().map_or(0, Spare::file_bytes)
    }

    /// The spare WAL ready for the next rotation, if any.
    pub fn spare(&self) -> Option<Spare> {
        self.spare
    }

    /// Keeps `spare` (prepared: its file synced, naming the current WAL) for the next rotation.
    /// `false` (nothing kept) when it does not name the current WAL or a spare is kept already.
    pub fn set_spare(&mut self, spare: Spare) -> bool {
        let fits = self.spare.is_none() && self.current.as_ref().is_some_and(|w| w.id == spare.predecessor);
        if fits {
            self.spare = Some(spare);
        }
        fits
    }

    /// Lets the kept spare go, if any, and returns it (its file stays: the caller removes it).
    pub fn take_spare(&mut self) -> Option<Spare> {
        self.spare.take()
    }

    /// User writes not yet synced: in the current WAL and its unsynced predecessor.
    pub fn unsynced(&self) -> u32 {
        let predecessor = self.unsynced_predecessor.as_ref().map_or(0, Wal::unsynced);
        self.current.as_ref().map_or(0, Wal::unsynced).saturating_add(predecessor)
    }

    /// Appends one record to the current WAL ([`Wal::append`]), then syncs when `policy` says so
    /// ([`Wals::sync`]).
    pub fn append<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        body: &[&[u8]],
        writes: u32,
        policy: SyncPolicy,
    ) -> Result<(), S> {
        let Some(current) = self.current.as_mut() else { return Err(Error::ReadOnly) };
        current.append(storage, body, writes)?;
        let due = match policy {
            SyncPolicy::EveryWrite => true,
            // The predecessor's unsynced writes count too (`Wals::unsynced`): a power cut that
            // takes them takes this WAL's writes with them.
            SyncPolicy::EveryN(n) => self.unsynced() >= n,
            SyncPolicy::Manual => false,
        };
        if due {
            self.sync(storage)?;
        }
        Ok(())
    }

    /// Makes every record appended so far durable: the unsynced predecessor's first, then the
    /// current WAL's. Nothing is synced when nothing is unsynced.
    pub fn sync<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<(), S> {
        self.sync_predecessor(storage)?;
        match self.current.as_mut() {
            Some(wal) if wal.has_unsynced() => wal.sync(storage),
            _ => Ok(()),
        }
    }

    /// Syncs the unsynced predecessor, if any, and lets it go.
    fn sync_predecessor<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<(), S> {
        if let Some(p) = self.unsynced_predecessor.as_mut() {
            p.sync(storage)?;
            self.unsynced_predecessor = None;
        }
        Ok(())
    }

    /// What a sync made outside the engine must cover, in order: the unsynced predecessor (if
    /// any: its file is synced first, and reported first), then the current WAL. `None` for
    /// the current one when read-only.
    pub fn sync_targets(&self) -> [Option<SyncTarget>; 2] {
        [
            self.unsynced_predecessor.as_ref().map(Wal::sync_target),
            self.current.as_ref().map(Wal::sync_target),
        ]
    }

    /// Records that a sync made outside the engine completed ([`Wal::note_synced`]), of the
    /// current WAL or of its unsynced predecessor; a predecessor synced to its end is let go.
    /// A sync of the current WAL reported while the predecessor still waits for its own counts
    /// for nothing: the current WAL's watermark must never claim a sync before the
    /// predecessor's (replay reads such a claim as proof that the predecessor is whole).
    /// Returns whether the report counted.
    pub fn note_synced(&mut self, target: SyncTarget) -> bool {
        if let Some(p) = self.unsynced_predecessor.as_mut() {
            if target.wal == p.id {
                p.note_synced(target);
                if !p.has_unsynced() {
                    self.unsynced_predecessor = None;
                }
                return true;
            }
            return false;
        }
        match self.current.as_mut() {
            Some(wal) if wal.id == target.wal => {
                wal.note_synced(target);
                true
            }
            _ => false,
        }
    }

    /// Starts WAL `id` without syncing the current one: when the current WAL holds unsynced
    /// records, the new header names it and its end, and it becomes the unsynced predecessor (see the
    /// [module documentation](self)). Returns the id of the WAL it replaced, which now belongs to
    /// the immutable MemTable.
    pub fn rotate<S: Storage<File = F>>(&mut self, storage: &mut S, id: u64) -> Result<u64, S> {
        if self.current.is_none() {
            return Err(Error::ReadOnly);
        }
        if self.older.is_full() {
            return Err(Error::TooManyWals);
        }
        // At most one predecessor waits for its sync (the engine flushes the immutable
        // MemTable, which retires it, before it rotates again); should one still wait, it is
        // synced here, so that the chain of unsynced WALs stays one long.
        self.sync_predecessor(storage)?;
        let link = self.link_to_current()?;
        let chunk = self.chunk();
        let new = Wal::create(storage, id, chunk, link)?;
        // A spare names the WAL it follows, which is current no more: the next open sets it
        // aside should this removal fail.
        if let Some(stale) = self.spare.take() {
            let _ = storage.remove_obsolete(&file_name(FileKind::Wal, stale.id));
        }
        Ok(self.start(new))
    }

    /// [`Wals::rotate`] into the kept spare ([`super::spare`]) instead of a new file: its header
    /// is written over, and nothing is synced (not even the directory: the spare's name is
    /// durable already). `Ok(None)`, nothing changed, when no spare is kept.
    pub fn rotate_to_spare<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<Option<u64>, S> {
        let Some(spare) = self.spare else { return Ok(None) };
        if self.current.as_ref().is_none_or(|w| w.id != spare.predecessor) {
            return Ok(None);
        }
        if self.older.is_full() {
            return Err(Error::TooManyWals);
        }
        self.sync_predecessor(storage)?;
        let link = self.link_to_current()?;
        let new = Wal::take_spare(storage, &spare, link)?;
        self.spare = None;
        event!("rotation: spare WAL {=u64} taken", spare.id);
        Ok(Some(self.start(new)))
    }

    /// What the header of the WAL after the current one names: the current WAL and its end when
    /// it holds unsynced records; none when it is whole, which keeps it held to be whole
    /// (damage to it is corruption, never a tail to cut).
    fn link_to_current<E>(&self) -> core::result::Result<Option<Link>, Error<E>> {
        let Some(current) = self.current.as_ref() else { return Err(Error::ReadOnly) };
        Ok(current.has_unsynced().then_some(Link { id: current.id, end: current.len }))
    }

    /// Makes `new` the current WAL; the one it replaces becomes an older WAL (and the unsynced
    /// predecessor when it holds unsynced records). Returns the replaced WAL's id.
    fn start(&mut self, new: Wal<F>) -> u64 {
        let Some(current) = self.current.as_mut() else {
            self.current = Some(new);
            return 0;
        };
        // The old WAL keeps its zero tail: a zero tail is a clean end for any WAL, and the file
        // is removed at the next flush; cutting it would cost a truncate on this write's path.
        let old = core::mem::replace(current, new);
        let _ = self.older.push(OldWal {
            id: old.id,
            record_bytes: old.record_bytes(),
            file_bytes: old.file_bytes(),
        });
        event!("rotation: WAL {=u64} closed, WAL {=u64} started", old.id, current.id);
        let old_id = old.id;
        if old.has_unsynced() {
            self.unsynced_predecessor = Some(old);
        }
        old_id
    }

    /// Removes the older WALs whose writes are all in SSTables: those up to `covered`.
    ///
    /// No directory sync: a WAL that comes back after a power cut is one the durable table's
    /// `wal_covered` names, and open removes it again.
    /// An unsynced predecessor among them needs no sync any more when `in_table`: its writes
    /// are in a durable table, whose `wal_covered` makes open remove the WAL should it come
    /// back. When the flush wrote no table (every entry was dead), nothing names the WAL, and a
    /// removal a power cut undoes would bring it back: it is synced first, so that it comes back
    /// whole and replays to the same (dead) entries, never as a torn predecessor that drops the
    /// newer WAL's writes while its own last writes are lost.
    pub fn retire<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        covered: u64,
        in_table: bool,
    ) -> Result<(), S> {
        if let Some(p) = self.unsynced_predecessor.as_mut().filter(|p| p.id <= covered) {
            if !in_table {
                p.sync(storage)?;
            }
            self.unsynced_predecessor = None;
        }
        // Covered by the flush's durable table: never named again, and open removes such a WAL
        // should it come back, so the storage may unlink it off this path
        // ([`Storage::remove_obsolete`]). Without a table, open would replay it: it goes now,
        // before a rotation can add a WAL beside it (a read-only open replays every WAL it finds
        // in two MemTables).
        for w in self.older.iter().filter(|w| w.id <= covered) {
            let name = file_name(FileKind::Wal, w.id);
            if in_table {
                storage.remove_obsolete(&name).storage()?;
            } else {
                storage.remove(&name).storage()?;
            }
        }
        self.older.retain(|w| w.id > covered);
        Ok(())
    }
}
