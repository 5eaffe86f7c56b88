//! Flush: writing a sealed (frozen) MemTable out as a new SSTable.
//!
//! The table is written as `<id>.tmp` from the MemTable's sorted entries (a rotation only seals
//! it: [`crate::memtable::MemTable::flush_parts`] sorts it here), with the filter built in the
//! MemTable's spare slots, then the table set ([`crate::version::Version::add`]) makes it
//! live. With no older table, nothing can hide behind a tombstone or an expired entry, so those
//! are left out.
//!
//! Inline ([`write_table`], in the write that rotates) all three steps run in one call. Apart
//! from the database (the POSIX flush thread) they are split: [`crate::Db::plan_flush`] decides
//! a [`FlushPlan`] under the database, [`write_temp`] writes `<id>.tmp` from a copy of the frozen
//! MemTable ([`crate::Db::copy_immutable`]) on a storage handle of its own, and
//! [`crate::Db::install_flush`] makes it live ([`crate::Db::fail_flush`],
//! [`crate::Db::abandon_flush`] otherwise). The runner may also [`publish`] the table itself
//! (sync, rename to `<id>.sst`, directory sync) before it reports, so that the install, under
//! the database, only adds the table to the set and retires the WALs, or only sync it
//! ([`sync_temp`]), leaving the rename to the install. [`Flushed::state`] says which: the table
//! is synced once, before its rename, on every path.
//!
//! Crash safety: before the rename, a crash leaves at most the `.tmp`, which open removes, and
//! the WALs still hold every entry. After it, the table is live on disk whether or not it was
//! installed: its footer's `wal_covered` names the WALs it holds, which open then skips and
//! removes, exactly as after an install. A published table the database never installs (it was
//! poisoned, or the plan abandoned) stays, and is read at the next open: its entries are those of
//! the WALs it covers, which the database has not retired, and its id is larger than those of
//! every table holding older entries.

use crate::entry::RangeDelete;
use crate::entry::{self, is_dead};
use crate::error::{Error, ResultExt};
use crate::limits::MAX_MEMTABLE_RANGES;
use crate::memtable::{MemTable, Sorted};
use crate::names::{file_name, FileKind, FileName};
use crate::space::{discard_if_full, no_space};
use crate::sstable::{Footer, ReadBack, SsTableBuilder};
use crate::storage::Storage;
pub use crate::version::TableState;
use crate::version::Version;

/// A flush decided under the database ([`crate::Db::plan_flush`]) and run apart from it: the
/// table's id, the newest WAL its entries came from, and whether dead entries may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPlan {
    /// The new table's id: `<id>.tmp` while it is written, `<id>.sst` once installed.
    pub id: u64,
    /// The newest WAL the MemTable's entries came from: the WALs up to it are retired once the
    /// table is live.
    pub covered: u64,
    /// With no older table, nothing can hide behind a tombstone or an expired entry: the clock
    /// time at which dead entries (and range deletes) are left out; `None` to keep them.
    pub drop_dead_at: Option<u64>,
}

impl FlushPlan {
    /// The name of the table while it is written.
    pub fn temp_name(&self) -> FileName {
        file_name(FileKind::TempTable, self.id)
    }
}

/// A table written as `<id>.tmp` ([`write_temp`]): its file and footer.
pub type TempTable<F> = (F, Footer);

/// A flush's output, written as `<id>.tmp` ([`write_temp`]), to be made live by
/// [`crate::Db::install_flush`]; `table` is `None` when every entry was dead (nothing written).
pub struct Flushed<F> {
    /// The flush this is the output of.
    pub plan: FlushPlan,
    /// The table and its footer: `<id>.tmp`, or `<id>.sst` once [`TableState::Published`].
    pub table: Option<TempTable<F>>,
    /// How far the runner took the table: only written ([`write_temp`]), synced as well
    /// ([`sync_temp`]), or made durable and live as `<id>.sst` ([`publish`]). The install does
    /// the rest, so the table is synced once.
    pub state: TableState,
}

/// Makes the table [`write_temp`] wrote durable, still as `<plan.id>.tmp`: for a runner that
/// must not make it live itself (the install renames it: [`TableState::Synced`]). A storage out
/// of space is [`Error::Full`] (the `.tmp` left for the runner to remove, the flush may be
/// planned again).
pub fn sync_temp<S: Storage>(storage: &mut S, file: &mut S::File) -> Result<(), Error<S::Error>> {
    storage.sync(file).map_err(|e| no_space(storage, e))
}

/// Makes the table [`write_temp`] wrote durable and live as `<plan.id>.sst`: syncs the file,
/// renames it, syncs the directory (what the install would do under the database). From then on
/// a crash leaves the table live, covering the WALs its footer names (see the module's *Crash
/// safety*). A storage out of space while the file is synced is [`Error::Full`] (the file is
/// still `<id>.tmp`, for the runner to remove, and the flush may be planned again); a failure of
/// the rename or the directory sync is a storage error, never `Full`, since the table may be live.
pub fn publish<S: Storage>(
    storage: &mut S,
    plan: &FlushPlan,
    mut file: S::File,
) -> Result<S::File, Error<S::Error>> {
    sync_temp(storage, &mut file)?;
    crate::version::make_live(storage, plan.id)?;
    Ok(file)
}

/// Writes the sealed MemTable `mem` (sorting it first), whose entries are all from WALs up to
/// `covered`, as a new
/// SSTable; `now` decides what is dead. Writes nothing if every entry is dead. Returns whether
/// a table was written (and made live).
pub fn write_table<S: Storage, M: AsRef<[u8]> + AsMut<[u8]>>(
    storage: &mut S,
    version: &mut Version<S::File>,
    mem: &mut MemTable<M>,
    covered: u64,
    now: u64,
) -> Result<bool, Error<S::Error>> {
    if version.is_full() {
        return Err(Error::TooManyTables);
    }
    if !mem.is_sealed() {
        return Ok(false);
    }
    let plan = FlushPlan { id: version.new_id(), covered, drop_dead_at: version.is_empty().then_some(now) };
    match write_temp(storage, &plan, mem)? {
        Some((file, footer)) => {
            version.add(storage, plan.id, file, footer, TableState::Written).map(|()| true)
        }
        None => Ok(false),
    }
}

/// Writes the sealed MemTable `mem` (sorting it first) as the table `<plan.id>.tmp`, not yet
/// live and not synced
/// (the install's `Version::add` syncs it, or the runner syncs ([`sync_temp`]) or [`publish`]es
/// it first, off the lock);
/// `None` (and no file left) when there was nothing to write. On a full
/// storage the file is removed and the error is [`Error::Full`]; after another failure the
/// `.tmp` may be left, for the caller or the next open to remove.
pub fn write_temp<S: Storage, M: AsRef<[u8]> + AsMut<[u8]>>(
    storage: &mut S,
    plan: &FlushPlan,
    mem: &mut MemTable<M>,
) -> Result<Option<TempTable<S::File>>, Error<S::Error>> {
    let Some((sorted, filter)) = mem.flush_parts() else { return Ok(None) };
    let mut source = Source { sorted, drop_dead_at: plan.drop_dead_at, next: 0, slot: 0 };
    let tmp = plan.temp_name();
    let mut file = storage.create(&tmp).map_err(|e| no_space(storage, e))?;
    let written = write_contents(storage, &mut file, &mut source, filter, plan.covered, plan.id, &tmp);
    match written {
        Ok(Some(footer)) => Ok(Some((file, footer))),
        Ok(None) => {
            drop(file);
            storage.remove(&tmp).storage().map(|()| None)
        }
        Err(e) => {
            drop(file);
            Err(discard_if_full(storage, &tmp, e))
        }
    }
}

/// Writes the entries, the range deletes (when older tables exist) and the index, filter and
/// footer to the temporary table; `None` when there was nothing to write.
fn write_contents<S: Storage>(
    storage: &mut S,
    file: &mut S::File,
    source: &mut Source<'_>,
    filter: &[u8],
    covered: u64,
    id: u64,
    tmp: &FileName,
) -> Result<Option<Footer>, Error<S::Error>> {
    let mut builder = SsTableBuilder::new();
    let mut i = 0;
    while let Some(payload) = source.nth(i) {
        builder.add(storage, file, payload).storage()?;
        i += 1;
    }
    // Range deletes hide older tables' entries: with no older table, they have nothing to hide.
    if source.drop_dead_at.is_none() {
        write_ranges(storage, file, &mut builder, source.sorted)?;
    }
    if builder.count() == 0 && builder.range_count() == 0 {
        return Ok(None);
    }
    // The filter holds every key, dead ones too: a superset only adds false positives.
    builder.finish(storage, file, source, filter, covered, id, tmp).map(Some)
}

/// Writes the MemTable's range deletes in start order, overlapping ones merged, as an SSTable's
/// range deletes must be.
fn write_ranges<S: Storage>(
    storage: &mut S,
    file: &mut S::File,
    builder: &mut SsTableBuilder,
    sorted: Sorted<'_>,
) -> Result<(), Error<S::Error>> {
    let mut ranges: heapless::Vec<RangeDelete<'_>, MAX_MEMTABLE_RANGES> =
        sorted.ranges().map(|(_, r)| r).collect();
    ranges.sort_unstable_by(|a, b| a.start.cmp(b.start));
    let mut merged: Option<RangeDelete<'_>> = None;
    for r in ranges.iter().copied().chain(core::iter::once(RangeDelete { start: &[], end: &[] })) {
        let last = r.start.is_empty();
        match merged {
            Some(m) if !last && r.start <= m.end => {
                merged = Some(RangeDelete { start: m.start, end: m.end.max(r.end) })
            }
            _ => {
                if let Some(m) = merged {
                    builder
                        .add_range(storage, file, m.start, m.end)
                        .storage()?
                        .ok_or(Error::TooManyTables)?;
                }
                merged = Some(r);
            }
        }
    }
    Ok(())
}

/// The entries a flush writes (the live ones, when dead ones are dropped), by their index among
/// those: for the data, and again for the builder's read-back.
struct Source<'a> {
    sorted: Sorted<'a>,
    drop_dead_at: Option<u64>,
    /// The index of the next entry written, and the slot to look at for it.
    next: u32,
    slot: usize,
}

impl<'a> Source<'a> {
    /// The `i`-th entry written. Indices ascend; a smaller one starts over.
    fn nth(&mut self, i: u32) -> Option<&'a [u8]> {
        if i < self.next {
            (self.next, self.slot) = (0, 0);
        }
        while self.slot < self.sorted.len() {
            // An entry a range delete written after it (in this MemTable) covers is left out.
            let payload = self.sorted.live(self.slot).flatten();
            self.slot += 1;
            let Some(payload) = payload else { continue };
            let dead = self.drop_dead_at.is_some_and(|now| {
                entry::decode(payload).is_ok_and(|e| is_dead(e.tombstone, e.expires_at, now))
            });
            if dead {
                continue;
            }
            self.next += 1;
            if self.next - 1 == i {
                return Some(payload);
            }
        }
        None
    }
}

impl<S: Storage> ReadBack<S> for Source<'_> {
    fn payload_len(&mut self, _: &mut S, i: u32) -> Result<usize, Error<S::Error>> {
        self.nth(i).map(<[u8]>::len).ok_or(Error::Poisoned)
    }

    fn key(&mut self, _: &mut S, i: u32) -> Result<&[u8], Error<S::Error>> {
        // MemTable payloads were decoded when they were inserted.
        self.nth(i).and_then(|p| entry::decode(p).ok()).map(|e| e.key).ok_or(Error::Poisoned)
    }
}
