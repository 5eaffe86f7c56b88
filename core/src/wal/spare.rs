//! Spare WALs: the next WAL file, made ready before the rotation that will start it.
//!
//! Starting a WAL costs two syncs ([`super::Wal::create`]: its header, then the directory that
//! names it), and a rotation runs on the path of the write that filled the MemTable. A device
//! that stalls a sync for half a second stalls that write as long. A spare takes both syncs off
//! that path: while WAL `P` takes writes, [`prepare`] creates `<id>.wal` with a header that names
//! `P` with the end [`SPARE_END`] ("not taken yet"), extends it by one preallocation chunk, and
//! syncs the file and the directory. The host's flush thread does this apart from the database
//! ([`crate::Db::plan_spare_wal`] .. [`crate::Db::install_spare_wal`]), a single-threaded host
//! in its idle time ([`crate::Db::prepare_spare_wal`]). The rotation that leaves `P` then
//! *takes* the spare ([`super::Wals::rotate_to_spare`]): it opens the file and writes over its
//! header what [`super::Wal::create`] would have written (`P` and its end when `P` holds
//! unsynced records, else no predecessor), and syncs nothing. The rewritten header reaches the
//! disk with the new WAL's first sync, which syncs `P` first; until then the new WAL counts as
//! unsynced, so a rotation away from it names it as its predecessor.
//!
//! A spare is a WAL in every other way: `<id>.wal`, its id taken from the counter tables share
//! ([`crate::version::Version::new_id`]) when it is planned. Only a spare naming the current WAL
//! is ever handed to the database; one that a rotation made stale meanwhile (the rotation found
//! none ready and created a WAL itself) is removed when it is handed back. Under
//! [`crate::Config::max_bytes`] none is planned: a file must not be in the directory before the
//! engine counts it against the cap.
//!
//! # What a power cut leaves, and what open makes of it ([`set_aside`], before replay)
//! Writing over synced bytes (the header) is the one thing no other file of the engine does, and
//! a power cut may keep the old header, the new one, or a mix of the two (the first eight bytes,
//! magic and version, are the same in both). Open reads each WAL's header first:
//! - **A spare never taken**: its header names its predecessor with [`SPARE_END`], and no WAL
//!   after it names it (or it is the newest). It never held a synced write (a sync of it would
//!   have made a rewritten header durable): removed, not replayed. This also covers a spare
//!   taken whose rewritten header was lost, when no WAL follows it, and a stale one (the WAL
//!   after it names the spare's predecessor, not the spare).
//! - **A spare taken, its rewritten header lost, and a later WAL naming it**: replay's
//!   predecessor rule applies as written ([`super::replay::successor_of`]): the spare's own
//!   predecessor ends before [`SPARE_END`], so the spare and every later WAL are dropped; a later
//!   WAL's first sync would have synced the spare first, so none of them held a synced write.
//! - **A header torn by the rewrite**: its checksum fails, and it is the start of a rewritten
//!   header followed by the rest of the spare's, as a write cut at a byte leaves it (the first
//!   eight bytes intact, the predecessor's id kept or zeroed, the reserved bytes zero). If no
//!   record of that WAL or of any later one shows a sync (a watermark past its header), nothing
//!   since the rewrite was synced: that WAL and every later one are removed, and the WAL before
//!   it becomes the newest (its unsynced tail may then be cut, as any newest WAL's). If one
//!   does, or the damage fits no such cut, the header had been synced: replay reports the
//!   corruption.
//!
//! A spare is made under `<id>.tmp` (which open removes) and renamed to `<id>.wal` once synced
//! ([`create`]): another thread's directory sync can make a name durable at any moment, and a
//! `.wal` name never comes back with a header that was not synced.
//!
//! A build without spares reads all of this safely: it drops an untaken spare as a WAL after a
//! lost tail (counted in `wals_dropped`), and reports a torn rewritten header as corruption.
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use heapless::Vec;

use super::replay::{read_header, shows_a_sync, zeros_to_end, Header};
use super::{file_header, Link, FILE_HEADER_LEN, VERSION};
use crate::error::{Error, ResultExt};
use crate::io::{read_at, write_at};
use crate::limits::MAX_WALS;
use crate::log::{event, warn_event};
use crate::names::{file_name, FileKind};
use crate::space::no_space;
use crate::storage::Storage;

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

/// The end a spare's header names its predecessor with until a rotation takes it: no WAL ends
/// there, so replay reads the predecessor as ending before it.
pub const SPARE_END: u64 = u64::MAX;

/// A spare WAL: planned ([`crate::Db::plan_spare_wal`]), then prepared ([`prepare`]) and handed
/// to the database, which starts it at the rotation that leaves `predecessor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spare {
    /// Its id: the file is `<id>.wal`.
    pub id: u64,
    /// The WAL that is current while it waits: the one its header names.
    pub predecessor: u64,
    /// How far it is extended ahead ([`super::chunk_for`]; 0: not at all).
    pub chunk: u64,
}

impl Spare {
    /// Bytes its file takes: the header, and the preallocated chunk when there is one.
    pub fn file_bytes(&self) -> u64 {
        self.chunk.max(FILE_HEADER_LEN)
    }
}

/// Creates `spare`'s file: a header naming its predecessor with [`SPARE_END`], extended by one
/// chunk of zeros, the file and then the directory synced. On failure the file is removed again
/// (not durably: a spare left behind is set aside by the next open); a full storage gives
/// [`Error::Full`].
pub fn prepare<S: Storage>(storage: &mut S, spare: &Spare) -> Result<(), S> {
    create(storage, spare)?;
    storage.sync_dir().storage().inspect_err(|_| {
        let _ = storage.remove(&file_name(FileKind::Wal, spare.id));
    })
}

/// [`prepare`] without the directory sync, for a caller that syncs the directory itself before
/// it hands the spare over (the POSIX flush thread makes the spare beside a table, and the
/// table's publish syncs the directory for both names).
///
/// The file is made under the temporary name `<id>.tmp` (which open removes) and renamed to
/// `<id>.wal` only once its header and extension are synced: another thread's directory sync
/// in between (a rotation's, a merge's publish) can make a name durable, and a `.wal` name must
/// never come back with a header that was not synced.
pub fn create<S: Storage>(storage: &mut S, spare: &Spare) -> Result<(), S> {
    let (tmp, name) = (file_name(FileKind::TempTable, spare.id), file_name(FileKind::Wal, spare.id));
    let mut file = storage.create(&tmp).map_err(|e| no_space(storage, e))?;
    let header = file_header(Some(Link { id: spare.predecessor, end: SPARE_END }));
    let written = (|| {
        let written = {
            let io = &mut storage.io(&mut file);
            write_at(io, 0, &[&header]).and_then(|_| embedded_io::Write::flush(io))
        };
        written.map_err(|e| no_space(storage, e))?;
        if spare.chunk > 0 {
            storage.preallocate(&mut file, spare.chunk).map_err(|e| no_space(storage, e))?;
        }
        storage.sync(&mut file).storage()
    })();
    drop(file);
    let renamed = written.and_then(|()| storage.rename(&tmp, &name).storage());
    if renamed.is_err() {
        let _ = storage.remove(&tmp);
    }
    renamed
}

/// The header a WAL's file starts with, as [`set_aside`] classes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A spare's header: it names `predecessor` with [`SPARE_END`]. `records`: anything but
    /// zeros follows it (writes of a rotation into it that no sync covered).
    Spare { records: bool },
    /// A spare's header whose rewrite was cut part way ([`torn_rewrite`]).
    Torn,
    /// Anything else: replay decides.
    Other,
}

/// Reads WAL `id`'s header: its kind and the predecessor it names. `before`: the WAL listed
/// before it, if any (a torn rewrite's predecessor, when the header no longer says it whole).
fn classify<S: Storage>(storage: &mut S, id: u64, before: Option<u64>) -> Result<(Kind, Option<Link>), S> {
    let mut file = storage.open(&file_name(FileKind::Wal, id)).storage()?;
    let end = storage.len(&mut file).storage()?;
    let io = &mut storage.io(&mut file);
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    let got = read_at(io, 0, &mut h).storage()?;
    Ok(match read_header(&h, got) {
        Header::Valid { version: VERSION, link: Some(link) } if link.end == SPARE_END => {
            // A spare's header over a record that shows a sync: written by a build that adopted
            // the WAL as it was (this one rewrites the header first); it holds synced writes.
            // Zeros to the end (a spare never taken, its chunk as preallocated) show none: the
            // scan for a sync, which tries every offset, is left for a spare with records.
            let records = !zeros_to_end(io, FILE_HEADER_LEN, end).storage()?;
            if records && shows_a_sync(io, FILE_HEADER_LEN, end).storage()? {
                (Kind::Other, Some(link))
            } else {
                (Kind::Spare { records }, Some(link))
            }
        }
        Header::Valid { link, .. } => (Kind::Other, link),
        Header::Torn if got == h.len() && torn_rewrite(&h, before) => (Kind::Torn, None),
        Header::Torn | Header::None | Header::Unsupported(_) => (Kind::Other, None),
    })
}

/// True when `h`, a header whose checksum fails, is what a rewrite of a spare's header cut off
/// part way leaves: the first bytes of the header a rotation writes, then the rest of the
/// spare's (a write torn at a byte; a device that writes sectors whole never leaves one). The
/// spare's header is known but for its predecessor (the id `h` still holds, or the WAL listed
/// before it); the rewrite keeps that id or writes 0, and any end and checksum. Damage that fits
/// no such cut (a flipped byte in a header synced long ago) is not a torn rewrite: replay
/// reports it.
fn torn_rewrite(h: &[u8; FILE_HEADER_LEN as usize], before: Option<u64>) -> bool {
    let held = h.get(8..16).and_then(|b| b.first_chunk()).map(|b| u64::from_le_bytes(*b));
    for predecessor in [held, before].into_iter().flatten().filter(|&p| p != 0) {
        let spare = file_header(Some(Link { id: predecessor, end: SPARE_END }));
        // A cut at 28 or later leaves the rewritten header whole (the reserved bytes are zero in
        // both), which reads as valid; before 9, the spare's whole.
        for cut in 9..28 {
            let (Some(new), Some(old), Some(kept)) = (h.get(8..cut.min(16)), spare.get(cut..), h.get(cut..))
            else {
                continue;
            };
            let id_written = new.iter().all(|&b| b == 0) || predecessor.to_le_bytes().starts_with(new);
            if h.get(..8) == spare.get(..8) && id_written && old == kept && h.get(28..) == Some(&[0; 4][..]) {
                return true;
            }
        }
    }
    false
}

/// True when a record of WAL `id` shows a sync: a watermark past its header.
fn wal_shows_a_sync<S: Storage>(storage: &mut S, id: u64) -> Result<bool, S> {
    let mut file = storage.open(&file_name(FileKind::Wal, id)).storage()?;
    let end = storage.len(&mut file).storage()?;
    let synced = shows_a_sync(&mut storage.io(&mut file), FILE_HEADER_LEN, end).storage()?;
    Ok(synced)
}

/// Takes out of `wals` (the WALs open found, in id order) the spares that hold no synced write,
/// by the rules of the [module documentation](self), and removes their files unless
/// `read_only`. Returns how many of those held records (writes that were never synced).
pub fn set_aside<S: Storage>(
    storage: &mut S,
    wals: &mut Vec<u64, MAX_WALS>,
    read_only: bool,
) -> Result<u64, S> {
    let mut dropped = 0;
    let mut i = wals.len();
    // The predecessor the WAL after `wals[i]` names, as its header read one step before.
    let mut newer_names: Option<u64> = None;
    while i > 0 {
        i -= 1;
        let Some(&id) = wals.get(i) else { break };
        let before = i.checked_sub(1).and_then(|b| wals.get(b)).copied();
        let (kind, link) = classify(storage, id, before)?;
        let doomed = match kind {
            Kind::Other => 0..0,
            Kind::Spare { .. } => {
                if newer_names == Some(id) {
                    // Taken; replay's predecessor rule drops it and the WALs after it.
                    0..0
                } else {
                    i..i + 1
                }
            }
            Kind::Torn => {
                let mut synced = false;
                for &later in wals.get(i..).unwrap_or(&[]) {
                    synced |= wal_shows_a_sync(storage, later)?;
                }
                if synced {
                    // A sync made the rewrite durable: this is damage, which replay reports.
                    0..0
                } else {
                    i..wals.len()
                }
            }
        };
        if doomed.is_empty() {
            newer_names = link.map(|l| l.id);
            continue;
        }
        // Set aside alone, the WAL after it still names what it named; set aside with every
        // later WAL, none is left after it.
        if doomed.end == wals.len() {
            newer_names = None;
        }
        for &gone in wals.get(doomed.clone()).unwrap_or(&[]) {
            let records = match kind {
                Kind::Spare { records } if gone == id => records,
                _ => holds_records(storage, gone)?,
            };
            if records {
                dropped += 1;
                warn_event!("recovery: WAL {=u64} held no synced write (a spare WAL's rewrite was cut off): set aside", gone);
            } else {
                event!("recovery: spare WAL {=u64}, never taken, removed", gone);
            }
            if !read_only {
                storage.remove(&file_name(FileKind::Wal, gone)).storage()?;
            }
        }
        let mut kept: Vec<u64, MAX_WALS> = Vec::new();
        for (j, &w) in wals.iter().enumerate() {
            if !doomed.contains(&j) {
                let _ = kept.push(w);
            }
        }
        *wals = kept;
    }
    Ok(dropped)
}

/// Whether WAL `id` holds anything but zeros after its header.
fn holds_records<S: Storage>(storage: &mut S, id: u64) -> Result<bool, S> {
    let mut file = storage.open(&file_name(FileKind::Wal, id)).storage()?;
    let end = storage.len(&mut file).storage()?;
    let zeros = zeros_to_end(&mut storage.io(&mut file), FILE_HEADER_LEN.min(end), end).storage()?;
    Ok(!zeros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read_exact_at;
    use crate::mem_storage::MemStorage;
    use crate::options::{Config, SyncPolicy};
    use crate::{Corruption, Db};
    use std::string::String;
    use std::vec::Vec as StdVec;

    type Mem = MemStorage<StdVec<u8>, 16>;
    type MemDb = Db<Mem, fn() -> u64, StdVec<u8>>;

    fn open(s: Mem) -> core::result::Result<MemDb, Error<crate::MemError>> {
        let mems = [std::vec![0u8; 2048], std::vec![0u8; 2048]];
        Db::open(s, (|| 0) as fn() -> u64, mems, Config::with_sync(SyncPolicy::Manual))
    }

    fn fresh() -> MemDb {
        open(Mem::new(std::vec![0; 1 << 20])).unwrap()
    }

    /// Puts keys from `from` on until a put rotates the WAL; returns the next key and the syncs
    /// (file, directory) the rotating put made.
    fn fill_until_rotation(db: &mut MemDb, from: u32) -> (u32, (u64, u64)) {
        let mut i = from;
        loop {
            let before = (db.storage().syncs, db.storage().dir_syncs);
            let wal = db.wal_sync_targets()[1].map(|t| t.wal);
            db.put(&i.to_be_bytes(), &[i as u8; 24]).unwrap();
            i += 1;
            if db.wal_sync_targets()[1].map(|t| t.wal) != wal {
                return (i, (db.storage().syncs - before.0, db.storage().dir_syncs - before.1));
            }
        }
    }

    fn wal_names(s: &mut Mem) -> StdVec<String> {
        let mut names = StdVec::new();
        s.list(&mut |n| {
            if n.ends_with(".wal") {
                names.push(String::from(n))
            }
        })
        .unwrap();
        names.sort();
        names
    }

    fn header_of(s: &mut Mem, id: u64) -> [u8; FILE_HEADER_LEN as usize] {
        let mut f = s.open(&file_name(FileKind::Wal, id)).unwrap();
        let mut h = [0u8; FILE_HEADER_LEN as usize];
        read_exact_at(&mut s.io(&mut f), 0, &mut h).unwrap();
        h
    }

    fn set_header(s: &mut Mem, id: u64, h: &[u8]) {
        let mut f = s.open(&file_name(FileKind::Wal, id)).unwrap();
        write_at(&mut s.io(&mut f), 0, &[h]).unwrap();
    }

    /// Asserts keys `present` are there with their values and `absent` are not.
    fn check(db: &mut MemDb, present: core::ops::Range<u32>, absent: core::ops::Range<u32>) {
        let mut buf = [0u8; 64];
        for k in present {
            assert_eq!(db.get(&k.to_be_bytes(), &mut buf).unwrap(), Some(&[k as u8; 24][..]), "key {k}");
        }
        for k in absent {
            assert_eq!(db.get(&k.to_be_bytes(), &mut buf).unwrap(), None, "key {k}");
        }
    }

    /// A database whose rotation took a spare, with keys `0..rotated` before it (in the spare's
    /// predecessor) and `rotated..end` in the spare, none of them synced; closed without the
    /// final sync's effect on the spare's header undone. Returns the storage, the spare, the
    /// spare's header as prepared, and the two key bounds.
    fn taken_spare(synced_in_spare: bool) -> (Mem, Spare, [u8; FILE_HEADER_LEN as usize], u32, u32) {
        let mut db = fresh();
        db.put(&0u32.to_be_bytes(), &[0; 24]).unwrap();
        let spare = db.plan_spare_wal().unwrap();
        prepare(db.storage(), &spare).unwrap();
        assert!(db.install_spare_wal(spare));
        let prepared = header_of(db.storage(), spare.id);
        let (rotated, _) = fill_until_rotation(&mut db, 1);
        let rotated = rotated - 1;
        for k in rotated + 1..rotated + 3 {
            db.put(&k.to_be_bytes(), &[k as u8; 24]).unwrap();
        }
        if synced_in_spare {
            db.sync().unwrap();
            db.put(&(rotated + 3).to_be_bytes(), &[(rotated + 3) as u8; 24]).unwrap();
        }
        let end = rotated + 3 + u32::from(synced_in_spare);
        let (s, closed) = db.close();
        closed.unwrap();
        (s, spare, prepared, rotated, end)
    }

    #[test]
    fn a_rotation_into_a_prepared_spare_syncs_nothing_and_every_write_comes_back() {
        let mut db = fresh();
        let (next, syncs) = fill_until_rotation(&mut db, 0);
        assert_eq!(syncs, (1, 1), "without a spare: the new WAL's header and the directory");
        assert!(db.prepare_spare_wal().unwrap());
        assert!(!db.prepare_spare_wal().unwrap(), "one spare at a time");
        let (end, syncs) = fill_until_rotation(&mut db, next);
        // The rotating put flushed the older MemTable inline (its table and directory syncs);
        // the spare's own: none.
        let mut plain = fresh();
        let (n, _) = fill_until_rotation(&mut plain, 0);
        let (_, plain_syncs) = fill_until_rotation(&mut plain, n);
        assert_eq!(
            (syncs.0 + 1, syncs.1 + 1),
            plain_syncs,
            "the spare took the header and directory syncs away"
        );
        assert_eq!(db.stats().spare_wals_taken, 1);
        let (s, closed) = db.close();
        closed.unwrap();
        let mut db = open(s).unwrap();
        check(&mut db, 0..end, end..end + 1);
        let stats = db.stats();
        assert_eq!((stats.torn_tails_truncated, stats.wals_dropped), (0, 0), "{stats:?}");
    }

    #[test]
    fn a_spare_never_taken_is_removed_on_open_and_nothing_is_lost() {
        let mut db = fresh();
        for k in 0..5u32 {
            db.put(&k.to_be_bytes(), &[k as u8; 24]).unwrap();
        }
        // Made but never handed back (a crash between the two): the file stays after close.
        let spare = db.plan_spare_wal().unwrap();
        prepare(db.storage(), &spare).unwrap();
        let (mut s, closed) = db.close();
        closed.unwrap();
        assert_eq!(wal_names(&mut s).len(), 2);
        let mut db = open(s).unwrap();
        check(&mut db, 0..5, 5..6);
        let stats = db.stats();
        assert_eq!((stats.torn_tails_truncated, stats.wals_dropped), (0, 0), "{stats:?}");
        assert!(!wal_names(db.storage()).contains(&String::from(file_name(FileKind::Wal, spare.id).as_str())));
    }

    #[test]
    fn a_spare_made_stale_by_a_rotation_is_removed_and_the_wals_around_it_replay() {
        let mut db = fresh();
        db.put(&0u32.to_be_bytes(), &[0; 24]).unwrap();
        let spare = db.plan_spare_wal().unwrap();
        prepare(db.storage(), &spare).unwrap();
        // The rotation goes on without it (a WAL of a later id), and writes go on and are synced.
        let (end, _) = fill_until_rotation(&mut db, 1);
        db.put(&end.to_be_bytes(), &[end as u8; 24]).unwrap();
        db.sync().unwrap();
        let (mut s, closed) = db.close();
        closed.unwrap();
        assert_eq!(wal_names(&mut s).len(), 3, "predecessor, stale spare, the WAL after it");
        let mut db = open(s).unwrap();
        check(&mut db, 0..end + 1, end + 1..end + 2);
        assert_eq!(db.stats().wals_dropped, 0);
        // Handed back now, it is removed rather than kept.
        let mut db2 = fresh();
        let spare = db2.plan_spare_wal().unwrap();
        prepare(db2.storage(), &spare).unwrap();
        fill_until_rotation(&mut db2, 0);
        assert!(!db2.install_spare_wal(spare));
        assert!(
            !wal_names(db2.storage()).contains(&String::from(file_name(FileKind::Wal, spare.id).as_str()))
        );
    }

    #[test]
    fn a_taken_spare_whose_rewritten_header_was_lost_gives_back_the_writes_before_it() {
        let (mut s, spare, prepared, rotated, end) = taken_spare(false);
        // The power cut kept the spare's header as prepared; its records (never synced) stayed.
        set_header(&mut s, spare.id, &prepared);
        let mut db = open(s).unwrap();
        check(&mut db, 0..rotated, rotated..end);
        // The newest WAL: set aside, its records counted as a torn tail.
        let stats = db.stats();
        assert_eq!((stats.torn_tails_truncated, stats.wals_dropped), (1, 0), "{stats:?}");
        // Writes go on, and survive the next open.
        db.put(&end.to_be_bytes(), &[end as u8; 24]).unwrap();
        let (s, closed) = db.close();
        closed.unwrap();
        let mut db = open(s).unwrap();
        check(&mut db, end..end + 1, rotated..end);
    }

    #[test]
    fn a_torn_header_rewrite_sets_the_wal_aside_when_nothing_after_it_shows_a_sync() {
        let (mut s, spare, prepared, rotated, end) = taken_spare(false);
        // Half the rewritten header, half the prepared one: the checksum fails.
        let mut torn = header_of(&mut s, spare.id);
        torn[20..].copy_from_slice(&prepared[20..]);
        assert!(super::super::decode_header(&torn).is_err());
        set_header(&mut s, spare.id, &torn);
        let mut db = open(s).unwrap();
        check(&mut db, 0..rotated, rotated..end);
        assert_eq!(db.stats().torn_tails_truncated, 1);
        assert!(!wal_names(db.storage()).contains(&String::from(file_name(FileKind::Wal, spare.id).as_str())));
    }

    #[test]
    fn a_torn_header_in_a_wal_whose_records_show_a_sync_is_corruption() {
        let (mut s, spare, prepared, _, _) = taken_spare(true);
        let mut torn = header_of(&mut s, spare.id);
        torn[20..].copy_from_slice(&prepared[20..]);
        set_header(&mut s, spare.id, &torn);
        match open(s) {
            Err(Error::Corrupted { kind, offset, .. }) => {
                assert_eq!((kind, offset), (Corruption::WalRecordBeforeValidData, 0))
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_flipped_byte_in_a_synced_header_is_corruption_and_not_a_torn_rewrite() {
        // The records show no sync (none was written after the close's), the header is durable:
        // damage to it fits no cut of a rewrite, and is reported, not taken for a lost rewrite.
        for at in [9usize, 13, 18, 22, 25] {
            let (mut s, spare, ..) = taken_spare(false);
            let mut h = header_of(&mut s, spare.id);
            h[at] ^= 0x5a;
            set_header(&mut s, spare.id, &h);
            match open(s) {
                Err(Error::Corrupted { kind, offset, .. }) => {
                    assert_eq!((kind, offset), (Corruption::WalRecordBeforeValidData, 0), "byte {at}")
                }
                other => panic!("byte {at}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn no_spare_is_planned_under_a_space_cap() {
        let mems = [std::vec![0u8; 2048], std::vec![0u8; 2048]];
        let config = Config { max_bytes: Some(1 << 20), ..Config::with_sync(SyncPolicy::Manual) };
        let mut db: MemDb =
            Db::open(Mem::new(std::vec![0; 1 << 21]), (|| 0) as fn() -> u64, mems, config).unwrap();
        assert_eq!(db.plan_spare_wal(), None);
        assert!(!db.prepare_spare_wal().unwrap());
    }
}
