//! The table set: which SSTables are live, the file-id counter, and the lineage rules that let
//! open finish what a crash interrupted.
//!
//! [`Version`] owns the live tables (oldest first), the next file id (WALs and tables share one
//! counter, so ids order files by age), and the only way a table becomes live or stops being
//! live in the set: [`Version::add`] after a flush, [`Version::replace_run`] after a compaction,
//! both through one atomic publication (`finish_publish`: sync the file, rename `<id>.tmp` to
//! `<id>.sst`, sync the directory), or after it when whoever ran the flush or the merge made it
//! already ([`TableState`]: the disk is then as after the install's rename, which the lineage
//! below makes safe).
//!
//! # Lineage
//! Two footer fields make the table set recoverable from the directory alone, without a
//! manifest:
//! - `wal_covered`: every WAL with an id up to this one is wholly in SSTables. A WAL that a live
//!   table covers is left over from a flush that stopped before removing it; open removes it.
//! - `replaces_from`: a compacted table replaces every table with an id in
//!   `[replaces_from, own id)`. Such a table still in the directory is left over from a compaction
//!   that stopped before removing its inputs; open removes it (it could resurrect values the
//!   compaction dropped tombstones for).
//!
//! Removals need no directory sync of their own: a removal lost to a power cut leaves a file
//! that these rules remove again, however many such files come back ([`Version::recover`] finds
//! the live tables by their lineage, so replaced ones take no place in the table list).

use heapless::Vec;

use crate::error::{Error, ReadResultExt, ResultExt};
use crate::limits::{BOUND_BYTES, MAX_TABLES, MAX_WALS};
use crate::log::event;
use crate::names::{file_name, parse_name, FileKind, FileName};
use crate::sstable::bounds::read_bounds;
use crate::sstable::{
    key_prefix, Footer, KeyBounds, KeyPrefix, Lookup, ProbeTable, ReadCounters, Table, TableInfo,
};
use crate::storage::Storage;

/// The live SSTables and the file-id counter.
pub struct Version<F> {
    tables: Vec<Table<F>, MAX_TABLES>,
    next_id: u64,
    /// Changes of the table set since open ([`Version::changes`]).
    changes: u64,
    /// Runs among the tables ([`Version::runs`]), counted at each change.
    runs: usize,
}

/// How far a flush's or a compaction's table was taken before [`Version::add`] or
/// [`Version::replace_run`]: what is left for them to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    /// `<id>.tmp`, written and not synced: `add` syncs it, renames it to `<id>.sst` and syncs
    /// the directory.
    Written,
    /// `<id>.tmp`, written and synced (`flush::sync_temp`): `add` renames it and syncs the
    /// directory.
    Synced,
    /// `<id>.sst`, synced and live (`flush::publish`): `add` only adds it to the set.
    Published,
}

impl TableState {
    /// The name table `id`'s file has in this state: `<id>.sst` once published, `<id>.tmp`
    /// before.
    pub fn file_name(self, id: u64) -> FileName {
        match self {
            TableState::Published => file_name(FileKind::Table, id),
            TableState::Written | TableState::Synced => file_name(FileKind::TempTable, id),
        }
    }
}

/// What [`Version::recover`] found besides the tables.
pub struct Recovered {
    /// The WALs no table covers, in id order: they hold writes still to replay.
    pub wals: Vec<u64, MAX_WALS>,
}

type Result<T, S> = core::result::Result<T, Error<<S as Storage>::Error>>;

impl<F> Version<F> {
    /// No tables; ids start at 1.
    pub fn empty() -> Self {
        Version { tables: Vec::new(), next_id: 1, changes: 0, runs: 0 }
    }

    /// Reads the table set from the directory into `self` (whatever it held is dropped) and
    /// finishes what a crash interrupted: removes tables being written (`*.tmp`), tables a
    /// compacted table replaces, and WALs the tables cover. With `read_only`, nothing is removed:
    /// such files are only left out.
    ///
    /// The live tables are found by their lineage, newest first, so that however many replaced
    /// tables a crash left beside them (a kill -9 with unlinks queued, a power cut undoing the
    /// removals since the last directory sync) only the live ones take a place in the table
    /// list: the newest table is live (only a newer table can replace one); below the ids it
    /// replaces, the newest table left is live too; and so on. Every table passed over lies
    /// inside a live table's interval. When the table files fit the list (the usual case) they
    /// are all opened from one listing and those a newer one replaces are left out; past that,
    /// the walk takes one listing per live table (`Version::find_live`). Of the WALs, the
    /// newest [`MAX_WALS`] are kept and every older one must be covered by the tables
    /// ([`Error::TooManyWals`] otherwise).
    ///
    /// It fills `self` in place rather than returning a new `Version`: the table list is most of
    /// a `Db` (3 KiB on a 32-bit target), and built here and returned it took a frame of three
    /// copies (10,400 B on thumbv7m) plus one more in the caller, on the deepest stack path of
    /// `Db::open`.
    pub fn recover<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        read_only: bool,
    ) -> Result<Recovered, S> {
        self.tables.clear();
        self.next_id = 1;
        self.changes += 1;
        if !read_only {
            remove_temp_files(storage)?;
        }
        let mut wal_ids: Vec<u64, MAX_WALS> = Vec::new();
        let mut table_ids: Vec<u64, MAX_TABLES> = Vec::new();
        let (mut wals_seen, mut tables_seen) = (0usize, 0usize);
        let mut max_id = 0;
        storage
            .list(&mut |name| {
                let Some((kind, id)) = parse_name(name) else { return };
                max_id = max_id.max(id);
                match kind {
                    FileKind::Wal => {
                        wals_seen += 1;
                        keep_newest(&mut wal_ids, id);
                    }
                    FileKind::Table => {
                        tables_seen += 1;
                        let _ = table_ids.push(id);
                    }
                    FileKind::TempTable => {}
                }
            })
            .storage()?;
        wal_ids.sort_unstable();
        self.next_id = max_id + 1;

        let covered = if tables_seen <= MAX_TABLES {
            // Every table from the one listing, the replaced ones too: beside a writer (a
            // read-only open) a table it replaced since is a table that is gone when opened, and
            // the open starts over (`crate::recovery`).
            table_ids.sort_unstable();
            for &id in &table_ids {
                // Cannot fail: table_ids has the same capacity.
                let _ = self.tables.push(Table::open(storage, id)?);
            }
            let covered = self.wal_covered();
            let stale = self.replaced_tables();
            self.tables.retain(|t| !stale.contains(&t.id()));
            covered
        } else {
            self.find_live(storage, read_only)?;
            self.tables.reverse();
            self.wal_covered()
        };
        if wals_seen > wal_ids.len() {
            let floor = wal_ids.first().copied().unwrap_or(0);
            let mut uncovered = false;
            storage
                .list(&mut |name| {
                    if let Some((FileKind::Wal, id)) = parse_name(name) {
                        uncovered |= id < floor && id > covered;
                    }
                })
                .storage()?;
            if uncovered {
                return Err(Error::TooManyWals);
            }
        }
        let replaced = tables_seen - self.tables.len();
        let covered_wals = wals_seen - wal_ids.iter().filter(|&&id| id > covered).count();
        if !read_only && (replaced > 0 || covered_wals > 0) {
            // The removals below rely on newer tables, which a run whose directory sync failed
            // may have renamed into place without making the rename durable. Sync the directory
            // first: otherwise a power cut could keep a removal and drop the rename that made it
            // safe.
            storage.sync_dir().storage()?;
            let live = &self.tables;
            remove_each(storage, FileKind::Table, replaced, |id| live.iter().all(|t| t.id() != id))?;
            remove_each(storage, FileKind::Wal, covered_wals, |id| id <= covered)?;
            storage.sync_dir().storage()?;
        }
        wal_ids.retain(|&id| id > covered);
        self.runs = count_runs(&self.tables);
        Ok(Recovered { wals: wal_ids })
    }

    /// Tables that a newer, compacted table replaces.
    fn replaced_tables(&self) -> Vec<u64, MAX_TABLES> {
        let mut stale = Vec::new();
        for t in &self.tables {
            if self.tables.iter().any(|u| u.footer().replaces_from <= t.id() && t.id() < u.id()) {
                let _ = stale.push(t.id());
            }
        }
        stale
    }

    /// Opens table `id`, which the lineage says is live, into the list (newest first until
    /// `recover` turns it); returns the id below which the next live table lies.
    fn open_live<S: Storage<File = F>>(&mut self, storage: &mut S, id: u64) -> Result<u64, S> {
        let table = Table::open(storage, id)?;
        let below = table.footer().replaces_from.min(id);
        self.tables.push(table).map_err(|_| Error::TooManyTables)?;
        Ok(below)
    }

    /// The live tables of a directory holding more table files than the list: one listing per
    /// live table, each finding the newest table below the ids the last one replaces. A
    /// read-only open (a writer may be replacing tables meanwhile) checks that the table files
    /// are the same ones after the walk as before it, and walks again if not; a directory that
    /// changes under [`READ_ONLY_WALKS`] walks is [`Error::TooManyTables`].
    fn find_live<S: Storage<File = F>>(&mut self, storage: &mut S, read_only: bool) -> Result<(), S> {
        for _ in 0..READ_ONLY_WALKS {
            self.tables.clear();
            let before = table_files(storage)?;
            let mut below = u64::MAX;
            loop {
                let mut newest: Option<u64> = None;
                storage
                    .list(&mut |name| {
                        if let Some((FileKind::Table, id)) = parse_name(name) {
                            if id < below && newest.is_none_or(|n| id > n) {
                                newest = Some(id);
                            }
                        }
                    })
                    .storage()?;
                let Some(id) = newest else { break };
                below = self.open_live(storage, id)?;
            }
            if !read_only || table_files(storage)? == before {
                return Ok(());
            }
        }
        Err(Error::TooManyTables)
    }

    /// A new file id, for a WAL or a table.
    pub fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The live tables, oldest first.
    pub fn tables(&self) -> &[Table<F>] {
        &self.tables
    }

    /// The live tables, oldest first, for reading.
    pub fn tables_mut(&mut self) -> &mut [Table<F>] {
        &mut self.tables
    }

    /// What [`crate::Db::tables`] reports.
    pub fn infos(&self) -> impl Iterator<Item = TableInfo> + '_ {
        self.tables.iter().map(Table::info)
    }

    /// Live tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// True when no table is live.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// True when no further table can become live without a compaction.
    pub fn is_full(&self) -> bool {
        self.tables.is_full()
    }

    /// Bytes of all live tables.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(Table::bytes).sum()
    }

    /// The newest WAL id whose writes are all in live tables (0: none).
    pub fn wal_covered(&self) -> u64 {
        self.tables.iter().map(|t| t.footer().wal_covered).max().unwrap_or(0)
    }

    /// How many times the set of live tables has changed (a table added, tables replaced by
    /// a compaction's output, the oldest evicted, the set read again by `recover`): equal
    /// counts, the same tables.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The runs by age among the live tables (`count_runs`): what a host's write throttle
    /// counts ([`crate::Db::compaction_backlog`]).
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Counts a change of the table set.
    fn changed(&mut self) {
        self.changes += 1;
        self.runs = count_runs(&self.tables);
    }

    /// Looks `key` up in the tables, newest first: the newest table's entry for it, if any.
    pub fn get<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        key: &[u8],
        out: &mut [u8],
        counters: &mut ReadCounters,
    ) -> Result<Lookup, S> {
        lookup(storage, self.tables.iter_mut(), key, out, counters)
    }

    /// Makes the table just written by a flush live as `<id>.sst` and adds it to the set,
    /// doing what `state` says is left: sync, rename and directory sync ([`TableState::Written`]),
    /// rename and directory sync ([`TableState::Synced`]), nothing ([`TableState::Published`]).
    /// The file is synced exactly once on every path, always before the rename.
    pub fn add<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        id: u64,
        mut file: F,
        footer: Footer,
        state: TableState,
    ) -> Result<(), S> {
        if self.tables.is_full() {
            return Err(Error::TooManyTables);
        }
        let bounds = bounds_of(storage, &mut file, &footer, id)?;
        let (file, bytes) = finish_publish(storage, file, id, state)?;
        let _ = self.tables.push(Table::new(id, file, footer, bytes).with_bounds(bounds));
        self.changed();
        Ok(())
    }

    /// Makes the table just written by a compaction of the `count` tables from index `start`
    /// live in their place: it takes the newest input's id (`<id>.tmp` renamed over
    /// `<id>.sst`, or already renamed by whoever ran the merge: `state` says what is left, as
    /// for [`Version::add`]), then the older inputs are removed. The run need not be the newest: tables
    /// flushed since the compaction was planned have larger ids, so the output's
    /// `[replaces_from, id)` still names exactly its inputs (`docs/FORMAT.md`, *Lineage*).
    pub fn replace_run<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        start: usize,
        count: usize,
        mut file: F,
        footer: Footer,
        state: TableState,
    ) -> Result<(), S> {
        let end = start + count;
        let Some(id) = self.tables.get(start..end).and_then(|run| run.last()).map(Table::id) else {
            return Ok(());
        };
        let bounds = bounds_of(storage, &mut file, &footer, id)?;
        let (file, bytes) = finish_publish(storage, file, id, state)?;
        // From here on the set differs from what it was, whatever fails below.
        self.changes += 1;
        // No directory sync for these removals: an input that comes back after a power cut has
        // an id in the durable output's `[replaces_from, id)`, and open removes it again.
        for t in self.tables.get(start..end - 1).unwrap_or(&[]) {
            storage.remove_obsolete(&file_name(FileKind::Table, t.id())).storage()?;
        }
        // The inputs' files are closed by the storage, which may do it off this path: the last
        // close of a removed file frees its blocks.
        for _ in start..end - 1 {
            storage.retire(self.tables.remove(start).into_file());
        }
        if let Some(slot) = self.tables.get_mut(start) {
            let newest = core::mem::replace(slot, Table::new(id, file, footer, bytes).with_bounds(bounds));
            storage.retire(newest.into_file());
        }
        self.runs = count_runs(&self.tables);
        event!("compaction: {=usize} tables merged into SSTable {=u64} ({=u64} bytes)", count, id, bytes);
        Ok(())
    }

    /// The index of the live table `id`, if it is live.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.tables.iter().position(|t| t.id() == id)
    }
}

impl<F> Version<F> {
    /// Removes every table in which nothing is alive at `now`
    /// ([`crate::sstable::Footer::all_expired_at`]: each entry has a TTL, the latest has passed)
    /// and whose keys no older table can hold (its key bounds lie outside all of theirs, so no
    /// older entry of its keys can show once it is gone; without `many-tables`, only tables from
    /// the oldest on qualify), unless `busy` says a compaction is merging it. The newest table
    /// always stays (it names the WALs the tables cover). Returns the tables and bytes removed.
    ///
    /// A removed table's file goes to [`Storage::remove_obsolete`] without a directory sync:
    /// should it come back after a power cut, everything in it has still expired, it still lies
    /// over no older table's keys, and open removes it again. A compaction's output is the one
    /// exception: the inputs it replaced were removed without a sync too, and may still be on
    /// storage (or come back), with nothing left to name them as replaced once the output is
    /// gone; so before an output is removed, every table file its `[replaces_from, id)` names is
    /// removed and the directory synced. With `at_once` (space is wanted now: a write failed
    /// for want of it), files are removed and closed in the call, as [`Version::evict_oldest`]
    /// does, not left to the storage to do later.
    pub fn drop_expired<S: Storage<File = F>>(
        &mut self,
        storage: &mut S,
        now: u64,
        busy: impl Fn(u64) -> bool,
        at_once: bool,
    ) -> Result<(u64, u64), S> {
        if self.expired_output(now, &busy) {
            // Every table file a live table replaces, then a sync: none of them can come back.
            let tables = &self.tables;
            remove_each(storage, FileKind::Table, usize::MAX, |id| {
                tables.iter().any(|t| t.footer().replaces_from <= id && id < t.id())
            })?;
            storage.sync_dir().storage()?;
        }
        let (mut tables, mut bytes) = (0u64, 0u64);
        let mut walk = ExpiryWalk { now, busy, older: None };
        let mut i = 0;
        while i + 1 < self.tables.len() {
            let Some(t) = self.tables.get(i) else { break };
            if walk.goes(t) {
                let table = self.tables.remove(i);
                self.changed();
                let info = table.info();
                let name = file_name(FileKind::Table, info.id);
                if at_once {
                    drop(table);
                    storage.remove(&name).storage()?;
                } else {
                    storage.remove_obsolete(&name).storage()?;
                    // Its last close may free its blocks: the storage may do it off this path.
                    storage.retire(table.into_file());
                }
                event!(
                    "expiry: SSTable {=u64} removed, every entry expired ({=u64} bytes)",
                    info.id,
                    info.bytes
                );
                tables += 1;
                bytes += info.bytes;
            } else {
                i += 1;
            }
        }
        Ok((tables, bytes))
    }

    /// True when [`Version::drop_expired`] would remove a compaction's output (a table that
    /// replaces others: `replaces_from` below its own id).
    fn expired_output(&self, now: u64, busy: &impl Fn(u64) -> bool) -> bool {
        let mut walk = ExpiryWalk { now, busy, older: None };
        let mut all_but_newest = self.tables.iter().take(self.tables.len().saturating_sub(1));
        all_but_newest.any(|t| walk.goes(t) && t.footer().replaces_from < t.id())
    }

    /// Removes the oldest table, file and all, to make room ([`crate::WhenFull::DropOldest`]);
    /// the newest table always stays (it names the WALs the tables cover). The directory is
    /// synced: the removal must be durable before a compaction treats the next table as the
    /// oldest and drops tombstones that hid the removed table's values. Returns what was
    /// removed, or `None` when only one table is left.
    pub fn evict_oldest<S: Storage<File = F>>(&mut self, storage: &mut S) -> Result<Option<TableInfo>, S> {
        if self.tables.len() < 2 {
            return Ok(None);
        }
        let table = self.tables.remove(0);
        self.changed();
        let info = table.info();
        drop(table);
        storage.remove(&file_name(FileKind::Table, info.id)).storage()?;
        storage.sync_dir().storage()?;
        event!(
            "eviction: SSTable {=u64} removed ({=u32} entries, {=u64} bytes)",
            info.id,
            info.entries,
            info.bytes
        );
        Ok(Some(info))
    }
}

/// Looks `key` up in `tables` (oldest first), newest first: the newest table's entry for it
/// (a range delete covering it counts as a delete), if any. Tables whose key bounds rule the
/// key out are passed over. Every table lookup of the engine, over its own table set
/// ([`Version::get`]) or a host's view of it ([`crate::db::get_from_tables`]).
pub fn lookup<S: Storage, T: ProbeTable<S>>(
    storage: &mut S,
    tables: impl DoubleEndedIterator<Item = T>,
    key: &[u8],
    out: &mut [u8],
    counters: &mut ReadCounters,
) -> Result<Lookup, S> {
    let hash = crate::filter::key_hash(key);
    let prefix = key_prefix(key);
    for mut t in tables.rev() {
        if !t.bounds().may_hold(prefix) {
            // Ruled out without a search, as by a filter.
            counters.filter_skips += 1;
            continue;
        }
        let p = t.probe(storage, key, hash, out).in_file(FileKind::Table, t.id())?;
        counters.count(p);
        if let Lookup::Found { .. } = p.lookup {
            return Ok(p.lookup);
        }
    }
    Ok(Lookup::Absent)
}

/// Which of `tables` (oldest first) continue the run of the table before them. A table is
/// *apart* when its key bounds ([`KeyBounds`]) are disjoint from every other live table's (no
/// other table holds any of its keys, so it hides nothing and nothing in it is hidden) and it
/// may stay as written (`may_stay_as_written`: it does not mix entries with and without a TTL).
/// Adjacent tables that are apart form a *run* (sequentially written keys flush into such
/// tables); every other table is a run of its own, and so is every table without
/// `many-tables` (no bounds).
/// What the compaction policy merges ([`crate::compaction::policy`]).
pub fn run_flags<F>(tables: &[Table<F>]) -> Vec<bool, MAX_TABLES> {
    let apart = apart(tables);
    let mut flags: Vec<bool, MAX_TABLES> = Vec::new();
    let mut previous = false;
    for &a in &apart {
        let _ = flags.push(a && previous);
        previous = a;
    }
    flags
}

/// Which of `tables` are apart (see [`run_flags`]): sorted by their least key prefix, a table is
/// apart when it starts after every table before it ends and ends before the next one starts.
fn apart<F>(tables: &[Table<F>]) -> Vec<bool, MAX_TABLES> {
    let mut apart: Vec<bool, MAX_TABLES> = Vec::new();
    for _ in tables {
        let _ = apart.push(false);
    }
    if BOUND_BYTES == 0 || tables.len() < 2 {
        return apart;
    }
    let bounds = |i: u16| tables.get(usize::from(i)).map_or(KeyBounds::ALL, Table::bounds);
    let mut order: Vec<u16, MAX_TABLES> = Vec::new();
    for i in 0..tables.len() {
        let _ = order.push(i as u16);
    }
    order.sort_unstable_by_key(|&i| bounds(i).least());
    let mut reach: Option<KeyPrefix> = None;
    for (pos, &i) in order.iter().enumerate() {
        let b = bounds(i);
        let after_earlier = reach.is_none_or(|r| r < b.least());
        let before_next = order.get(pos + 1).is_none_or(|&j| b.greatest() < bounds(j).least());
        let keepable = tables.get(usize::from(i)).is_some_and(may_stay_as_written);
        if let Some(slot) = apart.get_mut(usize::from(i)) {
            *slot = after_earlier && before_next && keepable;
        }
        reach = Some(reach.map_or(b.greatest(), |r| r.max(b.greatest())));
    }
    apart
}

/// True when `table` may be kept as written, its bounds permitting: none of its entries expires
/// ([`crate::sstable::Footer::expires`]), or every one does
/// ([`crate::sstable::Footer::latest_expiry`]: the table is removed whole once the latest has
/// passed, [`Version::drop_expired`]). A table mixing entries with and without a TTL is merged
/// as its tier comes: kept, it would hold the expired ones for as long as the others live, since
/// only a merge drops them.
fn may_stay_as_written<F>(table: &Table<F>) -> bool {
    !table.footer().expires || table.footer().latest_expiry().is_some()
}

/// The tables [`Version::drop_expired`] removes, decided oldest first: the walk keeps the union
/// of the key bounds of the older tables that stay.
struct ExpiryWalk<B> {
    now: u64,
    /// True for a table a compaction merges.
    busy: B,
    older: Option<KeyBounds>,
}

impl<B: Fn(u64) -> bool> ExpiryWalk<B> {
    /// True when `table`, the next oldest, goes: nothing in it is alive at `now`, no compaction
    /// merges it, and its key bounds lie outside those of every older table that stays (so no
    /// older value of its keys can read again). Otherwise it stays, and its bounds join them.
    fn goes<F>(&mut self, table: &Table<F>) -> bool {
        let b = table.bounds();
        let alone = self.older.is_none_or(|h| b.greatest() < h.least() || h.greatest() < b.least());
        if alone && table.footer().all_expired_at(self.now) && !(self.busy)(table.id()) {
            return true;
        }
        self.older = Some(self.older.map_or(b, |h| h.union(&b)));
        false
    }
}

/// How many *runs by age* `tables` (oldest first) form: a table continues the run of the one
/// before it when its key bounds lie wholly outside those of every older table (below or above
/// all of them: an ascending or descending sequence). Unlike [`run_flags`], a newer table never
/// changes how the older ones count, so the count grows by at most one per flush and falls as
/// merges remove tables; it is what a host's write throttle counts ([`Version::runs`]), while
/// the policy merges older tables a newer one overlaps. A table of entries that expire neither
/// continues a run nor is continued (as the policy merges it: [`run_flags`]).
fn count_runs<F>(tables: &[Table<F>]) -> usize {
    let mut hull: Option<KeyBounds> = None;
    let mut runs = 0;
    let mut previous_keepable = false;
    for t in tables {
        let b = t.bounds();
        let keepable = may_stay_as_written(t);
        let outside = hull.is_some_and(|h| b.greatest() < h.least() || h.greatest() < b.least());
        if !(outside && keepable && previous_keepable) {
            runs += 1;
        }
        previous_keepable = keepable;
        hull = Some(hull.map_or(b, |h| h.union(&b)));
    }
    runs
}

/// The key bounds of table `id`, just written into `file` and sealed by `footer`, read before it
/// is published: a table is never live without them.
fn bounds_of<S: Storage>(
    storage: &mut S,
    file: &mut S::File,
    footer: &Footer,
    id: u64,
) -> Result<KeyBounds, S> {
    read_bounds(&mut storage.io(file), footer).in_file(FileKind::Table, id)
}

/// Makes the finished table durable and live as `<id>.sst` (atomically replacing a table of
/// that id if there is one), doing what `state` says is left of: sync `<id>.tmp`, rename it,
/// sync the directory. Returns the file and its size.
fn finish_publish<S: Storage>(
    storage: &mut S,
    mut file: S::File,
    id: u64,
    state: TableState,
) -> Result<(S::File, u64), S> {
    match state {
        TableState::Written => {
            storage.sync(&mut file).storage()?;
            let bytes = storage.len(&mut file).storage()?;
            make_live(storage, id)?;
            Ok((file, bytes))
        }
        TableState::Synced => {
            let bytes = storage.len(&mut file).storage()?;
            make_live(storage, id)?;
            Ok((file, bytes))
        }
        TableState::Published => {
            let bytes = storage.len(&mut file).storage()?;
            Ok((file, bytes))
        }
    }
}

/// The rename and directory sync that make a synced `<id>.tmp` live as `<id>.sst`.
pub fn make_live<S: Storage>(storage: &mut S, id: u64) -> Result<(), S> {
    storage.rename(&file_name(FileKind::TempTable, id), &file_name(FileKind::Table, id)).storage()?;
    storage.sync_dir().storage()
}

/// Keeps the `N` largest ids seen in `ids`: `id` goes in while there is room, or in place of
/// the smallest kept when it is larger.
fn keep_newest<const N: usize>(ids: &mut Vec<u64, N>, id: u64) {
    if ids.push(id).is_ok() {
        return;
    }
    let smallest = ids.iter().enumerate().min_by_key(|&(_, &kept)| kept).map(|(i, &kept)| (i, kept));
    if let Some((i, kept)) = smallest {
        if id > kept {
            if let Some(slot) = ids.get_mut(i) {
                *slot = id;
            }
        }
    }
}

/// How many times a read-only open walks the lineage of a directory with more table files than
/// the list while a writer changes them ([`Version::recover`]).
const READ_ONLY_WALKS: usize = 16;

/// What tells one set of table files from another: their count, and two sums over their ids.
fn table_files<S: Storage>(storage: &mut S) -> Result<(usize, u64, u64), S> {
    let mut seen = (0usize, 0u64, 0u64);
    storage
        .list(&mut |name| {
            if let Some((FileKind::Table, id)) = parse_name(name) {
                seen.0 += 1;
                seen.1 = seen.1.wrapping_add(id);
                seen.2 = seen.2.wrapping_add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31));
            }
        })
        .storage()?;
    Ok(seen)
}

/// Removes every file of `kind` whose id is `doomed`, a few at a time (each listing finds those
/// still there): `expected` of them, so at most `expected / 8 + 1` listings, even on a storage
/// that lists a removed file again. A file gone by the time it is removed (another thread of
/// the host, such as a POSIX reaper, removed it) counts as done. Returns how many it removed.
fn remove_each<S: Storage>(
    storage: &mut S,
    kind: FileKind,
    expected: usize,
    doomed: impl Fn(u64) -> bool,
) -> Result<usize, S> {
    let mut removed = 0;
    let mut last: Vec<u64, 8> = Vec::new();
    for _ in 0..=expected.div_ceil(8) {
        let mut batch: Vec<u64, 8> = Vec::new();
        storage
            .list(&mut |name| match parse_name(name) {
                Some((k, id)) if k == kind && doomed(id) => {
                    let _ = batch.push(id);
                }
                _ => {}
            })
            .storage()?;
        // Listed again after it was found gone: nothing this can remove.
        if batch.is_empty() || batch == last {
            break;
        }
        for &id in &batch {
            match storage.remove(&file_name(kind, id)) {
                Ok(()) => removed += 1,
                Err(e) if embedded_io::Error::kind(&e) == embedded_io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Storage(e)),
            }
        }
        last = batch;
    }
    Ok(removed)
}

/// Removes every `*.tmp`: tables whose writing a crash interrupted, never needed.
fn remove_temp_files<S: Storage>(storage: &mut S) -> Result<(), S> {
    if remove_each(storage, FileKind::TempTable, usize::MAX, |_| true)? > 0 {
        storage.sync_dir().storage()?;
    }
    Ok(())
}
