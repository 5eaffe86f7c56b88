//! FaultStorage: a [`Storage`] that models a real device, for crash and error tests.
//!
//! The engine's durability contract (`core/src/storage.rs`) promises only what `sync` and
//! `sync_dir` make durable. [`FaultStorage`] keeps, per file, the bytes the process sees (the
//! page cache) apart from the bytes on the medium, and keeps the directory the process sees apart
//! from the directory on the medium, so a test can cut the power at any moment and see exactly
//! what a device may hand back. It also fails the Nth call on purpose, runs out of space, and
//! flips bits.
//!
//! # The device model
//!
//! ```text
//!             process view (volatile)          medium (durable)
//! file data   Inode::data                      Inode::durable      ← Storage::sync copies
//! directory   State::dir  + State::pending     State::durable_dir  ← Storage::sync_dir applies
//! ```
//!
//! - **Writes** change `data` only. `Storage::sync` makes `durable = data` for that file
//!   (contents and length). `Write::flush` changes nothing: the bytes already survive the death
//!   of the process, which is what dropping a `Db` without a power cut simulates.
//! - **Preallocation** (`Storage::preallocate`) appends zeros to `data`: an unsynced change like a
//!   write, so a power cut keeps none, all, or any prefix of the extension (a torn extension; the
//!   wide model also any length between), and a record later written inside it can be torn with
//!   zeros after the cut (or, wide, lose any of its sectors or pages). It counts as a
//!   call, can be failed like any other (a failing one may have extended part of the way first),
//!   and needs space under a capacity limit (extending as far as it fits, then out of space).
//! - **Directory operations** (`create` of a new name, `rename`, `remove`) change the process
//!   view at once and are queued in `pending`; `sync_dir` applies the whole queue to the medium.
//!   `create` of an existing name truncates that file's data (a data change, not a directory one).
//! - **Power cut** ([`FaultStorage::power_cut`]):
//!   1. Directory: each pending operation is kept or dropped, with one rule that any real file
//!      system obeys: an operation that touches a name (a rename touches two) is kept only if every
//!      earlier pending operation on one of its names was kept. So a rename is atomic, an
//!      operation never survives without the create it depends on, and operations on unrelated
//!      names survive in any combination (journaling file systems keep a prefix, which is one of
//!      the combinations; FAT on an SD card may keep any). Per cut the mode is drawn: keep all,
//!      keep none, keep a prefix, or an independent choice per operation within the rule.
//!   2. Files: a file reachable from the resulting directory keeps its durable bytes plus, when it
//!      has unsynced changes, what [`super::power_cut`] draws (table there). The **narrow** model
//!      keeps none of them, all of them, or the new contents cut at any byte at or after the
//!      first changed byte (a torn write), optionally followed by the old bytes past the cut when
//!      the old file was longer (the size change not persisted); with
//!      [`FaultConfig::zero_fill`], part of the kept unsynced range may read as zeros (the size
//!      reached the medium, the data blocks did not). The **wide** model (the default) adds any
//!      subset of the changed 512-byte sectors or 4 KiB pages (the unit drawn per cut), each
//!      old, new or torn, at any length between the old and the new: a later unsynced write can
//!      survive while an earlier one is lost. Unreachable files are gone.
//!   3. Every open handle becomes stale: the engine must be dropped and reopened.
//! - **Failed sync**: the data may or may not be on the medium: a random prefix of the unsynced
//!   change becomes durable. With [`FaultConfig::failed_sync_loses_pages`] the rest behaves as on
//!   Linux after a writeback error ("fsyncgate"): those pages are marked clean without being
//!   written, so a later, successful sync does not write them either.
//! - **Injected errors** ([`FaultStorage::fail_at`]): every storage call (each trait method and
//!   each `read` / `write` / `seek` / `flush` on an [`FaultIo`]) is numbered from 1; the chosen
//!   call fails with an I/O error or out-of-space, once or from then on
//!   ([`FaultStorage::fail_next`] counts only calls of one kind). A planned fault outlives power
//!   cuts until it fires or [`FaultStorage::clear_faults`]. A failing `write` first writes a
//!   random prefix of its buffer (a short write), and a failing `sync_dir` may have applied a
//!   prefix of the pending operations; [`FaultConfig::partial_failures`] off makes failing calls
//!   do nothing. [`FaultStorage::unobserved`] runs a test's own checks without counting them.
//! - **Out of space** ([`FaultStorage::set_capacity`]): the bytes of all files may not exceed the
//!   capacity; a write that would is cut short, and the next one fails with [`FaultError::NoSpace`].
//! - **Bit flips** ([`FaultStorage::flip_bit`], [`FaultStorage::flip_random_bit`]): a bit of the
//!   medium (and of the page cache) changes.
//!
//! A `FaultStorage` is a cheap handle to shared state: clone it before handing it to
//! [`minivault_core::Db::open`], and keep the clone to cut power, inject faults or inspect
//! while (or after) the engine runs. [`FaultStorage::fork`] makes an independent deep copy.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::Storage;

use super::power_cut::{self, Granularity, Outcome, PowerCutModel, Rules};
use super::rng::Rng;

/// The storage calls, as counted and as named in errors and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `Storage::create`.
    Create,
    /// `Storage::open`.
    Open,
    /// `Storage::len`.
    Len,
    /// `Storage::truncate`.
    Truncate,
    /// `Storage::preallocate`.
    Preallocate,
    /// `Storage::sync`.
    Sync,
    /// `Storage::rename`.
    Rename,
    /// `Storage::remove`.
    Remove,
    /// `Storage::sync_dir`.
    SyncDir,
    /// `Storage::list`.
    List,
    /// `Read::read` on a [`FaultIo`].
    Read,
    /// `Write::write` on a [`FaultIo`].
    Write,
    /// `Seek::seek` on a [`FaultIo`].
    Seek,
    /// `Write::flush` on a [`FaultIo`].
    Flush,
}

/// What an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// An I/O error (EIO).
    Io,
    /// The device is full (ENOSPC).
    NoSpace,
}

/// Why a [`FaultStorage`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// No file by that name.
    NotFound,
    /// An injected I/O error at storage call number `call`.
    Injected {
        /// The call's number (1-based, counted since the storage was made).
        call: u64,
        /// Which call it was.
        op: Call,
    },
    /// Out of space: the capacity is reached, or an injected out-of-space fault.
    NoSpace,
    /// The handle predates a power cut, or its file is gone.
    StaleHandle,
    /// A seek before the start of the file.
    InvalidSeek,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::NotFound => f.write_str("file not found"),
            FaultError::Injected { call, op } => write!(f, "injected I/O error at call {call} ({op:?})"),
            FaultError::NoSpace => f.write_str("no space left on device"),
            FaultError::StaleHandle => f.write_str("stale file handle"),
            FaultError::InvalidSeek => f.write_str("seek before start of file"),
        }
    }
}

impl std::error::Error for FaultError {}

impl embedded_io::Error for FaultError {
    fn kind(&self) -> ErrorKind {
        match self {
            FaultError::NotFound => ErrorKind::NotFound,
            FaultError::NoSpace => ErrorKind::OutOfMemory,
            FaultError::InvalidSeek => ErrorKind::InvalidInput,
            FaultError::Injected { .. } | FaultError::StaleHandle => ErrorKind::Other,
        }
    }
}

/// Behaviour switches of the device model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultConfig {
    /// A power cut may keep part of an unsynced file change (a torn write). Off: all or nothing.
    pub torn_writes: bool,
    /// A power cut may leave zeros where unsynced appended bytes were (size persisted, data not).
    pub zero_fill: bool,
    /// How a power cut keeps a file's unsynced change: [`PowerCutModel::Wide`] (the default:
    /// any subset of sectors or pages, see [`super::power_cut`]) or [`PowerCutModel::Narrow`]
    /// (a torn prefix, the model before issue 15; [`FaultConfig::narrow`]).
    pub power_cut: PowerCutModel,
    /// A power cut may drop unsynced directory operations (and keep some but not others).
    pub lose_dir_ops: bool,
    /// After a failed sync, the pages it failed to write are never written (Linux "fsyncgate").
    pub failed_sync_loses_pages: bool,
    /// A failed `write`, `sync` or `sync_dir` may have done part of its work first (a short
    /// write, a prefix of the data or of the directory operations made durable). Off: nothing.
    pub partial_failures: bool,
    /// A failed `read` may have filled part or all of its buffer first (a driver that read
    /// some sectors, then failed): the caller must not take the buffer as it was. Off: a failed
    /// read leaves the buffer as it was.
    pub partial_reads: bool,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            torn_writes: true,
            zero_fill: true,
            power_cut: PowerCutModel::Wide,
            lose_dir_ops: true,
            failed_sync_loses_pages: false,
            partial_failures: true,
            partial_reads: true,
        }
    }
}

impl FaultConfig {
    /// The default switches with the narrow power-cut model: what survives of a file's unsynced
    /// change is a prefix of it (the model before issue 15).
    pub fn narrow() -> Self {
        FaultConfig { power_cut: PowerCutModel::Narrow, ..FaultConfig::default() }
    }
}

/// Counters, for the figures in `docs/RELIABILITY.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Storage calls made.
    pub calls: u64,
    /// Successful `sync` calls.
    pub syncs: u64,
    /// Successful `sync_dir` calls.
    pub dir_syncs: u64,
    /// Power cuts simulated.
    pub power_cuts: u64,
    /// Errors injected by [`FaultStorage::fail_at`].
    pub injected: u64,
    /// Files left with a torn (partial) unsynced change by a power cut: a prefix of it.
    pub torn_files: u64,
    /// Files whose unsynced change a power cut kept unit by unit (wide model).
    pub scattered_files: u64,
    /// Of those, files left with a hole: new bytes of a changed unit lost before a later one's kept.
    pub holes: u64,
    /// Unsynced directory operations dropped by power cuts.
    pub dir_ops_dropped: u64,
    /// Unsynced directory operations kept by power cuts.
    pub dir_ops_kept: u64,
    /// Bits flipped.
    pub bit_flips: u64,
}

#[derive(Debug, Clone)]
struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What the medium holds.
    durable: Vec<u8>,
    /// Byte ranges whose write-back failed: clean in the page cache but never written, so no
    /// later sync writes them unless the process writes them again (fsyncgate).
    lost: Vec<(usize, usize)>,
}

impl Inode {
    fn new() -> Self {
        Inode { data: Vec::new(), durable: Vec::new(), lost: Vec::new() }
    }

    /// `data` as a sync would write it: the lost ranges keep the medium's old bytes (or zeros).
    fn as_synced(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        for &(a, b) in &self.lost {
            for i in a..b.min(out.len()) {
                out[i] = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Create { name: String, ino: u64 },
    Rename { from: String, to: String, ino: u64 },
    Remove { name: String },
}

impl DirOp {
    fn names(&self) -> Vec<&str> {
        match self {
            DirOp::Create { name, .. } | DirOp::Remove { name } => vec![name],
            DirOp::Rename { from, to, .. } => vec![from, to],
        }
    }

    fn apply(&self, dir: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Create { name, ino } => {
                dir.insert(name.clone(), *ino);
            }
            DirOp::Rename { from, to, ino } => {
                dir.remove(from);
                dir.insert(to.clone(), *ino);
            }
            DirOp::Remove { name } => {
                dir.remove(name);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FaultPlan {
    /// The call number to fail; with `only`, the number among calls of that kind.
    at: u64,
    kind: FaultKind,
    persistent: bool,
    only: Option<Call>,
}

#[derive(Debug, Clone)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    dir: BTreeMap<String, u64>,
    durable_dir: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
    epoch: u64,
    plan: Option<FaultPlan>,
    capacity: Option<usize>,
    config: FaultConfig,
    rng: Rng,
    stats: FaultStats,
    trace: Option<Vec<String>>,
    /// While set, calls are neither counted nor failed (a test's own checks).
    paused: bool,
    /// The kind of every counted call, when recording.
    recorded: Option<Vec<Call>>,
}

const TRACE_KEEP: usize = 400;

impl State {
    /// Counts one call and fails it if the plan says so.
    fn tick(&mut self, op: Call) -> Result<(), FaultError> {
        if self.paused {
            return Ok(());
        }
        self.stats.calls += 1;
        if let Some(kinds) = self.recorded.as_mut() {
            kinds.push(op);
        }
        let n = self.stats.calls;
        if let Some(plan) = self.plan.as_mut() {
            let counted = match plan.only {
                None => n,
                Some(kind) if kind == op => {
                    plan.at -= 1;
                    if plan.at == 0 {
                        n
                    } else {
                        0
                    }
                }
                Some(_) => 0,
            };
            let at = if plan.only.is_some() { n } else { plan.at };
            let plan = *plan;
            if counted != 0 && (counted == at || (plan.persistent && counted > at)) {
                if !plan.persistent {
                    self.plan = None;
                }
                self.stats.injected += 1;
                self.log(format_args!("#{n} {op:?} -> injected {:?}", plan.kind));
                return Err(match plan.kind {
                    FaultKind::Io => FaultError::Injected { call: n, op },
                    FaultKind::NoSpace => FaultError::NoSpace,
                });
            }
        }
        Ok(())
    }

    fn log(&mut self, what: fmt::Arguments<'_>) {
        if let Some(t) = self.trace.as_mut() {
            if t.len() >= TRACE_KEEP {
                t.drain(..TRACE_KEEP / 2);
            }
            t.push(what.to_string());
        }
    }

    fn inode(&mut self, file: &FaultFile) -> Result<&mut Inode, FaultError> {
        if file.epoch != self.epoch {
            return Err(FaultError::StaleHandle);
        }
        self.inodes.get_mut(&file.ino).ok_or(FaultError::StaleHandle)
    }

    fn used_bytes(&self) -> usize {
        let live: HashSet<u64> = self.dir.values().copied().collect();
        live.iter().filter_map(|i| self.inodes.get(i)).map(|f| f.data.len()).sum()
    }

    fn sync_inode(&mut self, ino: u64) {
        if let Some(f) = self.inodes.get_mut(&ino) {
            f.durable = f.as_synced();
        }
    }

    fn power_cut(&mut self, rng: &mut Rng) {
        let n = self.pending.len();
        // 0: keep all, 1: keep none, 2: keep a prefix, 3: independent choices within the rule.
        let mode = if self.config.lose_dir_ops { rng.below(4) } else { 0 };
        let prefix = rng.range(0, n as u64) as usize;
        let mut dropped: HashSet<String> = HashSet::new();
        let mut dir = self.durable_dir.clone();
        for (i, op) in self.pending.iter().enumerate() {
            let blocked = op.names().iter().any(|n| dropped.contains(*n));
            let keep = !blocked
                && match mode {
                    0 => true,
                    1 => false,
                    2 => i < prefix,
                    _ => rng.chance(1, 2),
                };
            if keep {
                op.apply(&mut dir);
                self.stats.dir_ops_kept += 1;
            } else {
                dropped.extend(op.names().into_iter().map(String::from));
                self.stats.dir_ops_dropped += 1;
            }
        }
        let live: HashSet<u64> = dir.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        let mut torn = 0;
        let mut inos: Vec<u64> = live.into_iter().collect();
        inos.sort_unstable();
        let rules = Rules {
            model: self.config.power_cut,
            torn_writes: self.config.torn_writes,
            zero_fill: self.config.zero_fill,
        };
        // The unit of this cut (the narrow model draws nothing, so its seeds replay as before).
        let unit = match rules.model {
            PowerCutModel::Wide => Granularity::draw(rng),
            PowerCutModel::Narrow => Granularity::Page,
        };
        for ino in inos {
            let Some(f) = self.inodes.get_mut(&ino) else { continue };
            let (result, outcome) = power_cut::persist(&f.durable, &f.as_synced(), rules, unit, rng);
            match outcome {
                Outcome::TornPrefix => torn += 1,
                Outcome::Scattered { hole } => {
                    self.stats.scattered_files += 1;
                    self.stats.holes += u64::from(hole);
                }
                Outcome::Unchanged | Outcome::None | Outcome::All => {}
            }
            f.data = result.clone();
            f.durable = result;
            f.lost.clear();
        }
        self.stats.torn_files += torn;
        self.stats.power_cuts += 1;
        self.dir = dir.clone();
        self.durable_dir = dir;
        self.pending.clear();
        self.epoch += 1;
        let msg = format!("POWER CUT (dir mode {mode}, {n} pending ops, {torn} torn files, {unit:?} units)");
        self.log(format_args!("{msg}"));
    }
}

/// A storage that models a device which can lose power, fail calls, fill up and flip bits.
///
/// Clones share one device; see the [module documentation](self) for the model.
#[derive(Debug, Clone)]
pub struct FaultStorage {
    st: Rc<RefCell<State>>,
}

/// An open [`FaultStorage`] file: an inode, the power cycle it was opened in, and a position.
#[derive(Debug)]
pub struct FaultFile {
    ino: u64,
    epoch: u64,
    pos: u64,
}

/// Byte I/O on a [`FaultFile`].
pub struct FaultIo<'a> {
    st: &'a RefCell<State>,
    file: &'a mut FaultFile,
}

impl Default for FaultStorage {
    fn default() -> Self {
        Self::new(0)
    }
}

impl FaultStorage {
    /// An empty device; `seed` drives the random choices of failed writes and syncs.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, FaultConfig::default())
    }

    /// An empty device with the given model switches.
    pub fn with_config(seed: u64, config: FaultConfig) -> Self {
        FaultStorage {
            st: Rc::new(RefCell::new(State {
                inodes: HashMap::new(),
                next_ino: 1,
                dir: BTreeMap::new(),
                durable_dir: BTreeMap::new(),
                pending: Vec::new(),
                epoch: 0,
                plan: None,
                capacity: None,
                config,
                rng: Rng::new(seed),
                stats: FaultStats::default(),
                trace: None,
                paused: false,
                recorded: None,
            })),
        }
    }

    /// An independent deep copy of the device in its current state (open handles stay with the
    /// original; use the copy after dropping the engine, or cut its power first).
    pub fn fork(&self) -> FaultStorage {
        FaultStorage { st: Rc::new(RefCell::new(self.st.borrow().clone())) }
    }

    /// Cuts the power: see the module documentation for what survives. Open handles go stale.
    pub fn power_cut(&self, rng: &mut Rng) {
        self.st.borrow_mut().power_cut(rng);
    }

    /// Cuts the power in the worst way: every unsynced byte and directory operation is lost.
    pub fn power_cut_lose_all(&self) {
        let mut st = self.st.borrow_mut();
        st.stats.dir_ops_dropped += st.pending.len() as u64;
        st.pending.clear();
        let dir = st.durable_dir.clone();
        let live: HashSet<u64> = dir.values().copied().collect();
        st.inodes.retain(|ino, _| live.contains(ino));
        for f in st.inodes.values_mut() {
            f.data = f.durable.clone();
            f.lost.clear();
        }
        st.dir = dir;
        st.epoch += 1;
        st.stats.power_cuts += 1;
        st.log(format_args!("POWER CUT (everything unsynced lost)"));
    }

    /// Makes storage call number `at` (counted from the device's creation, 1-based; see
    /// [`FaultStorage::calls`]) fail with `kind`; with `persistent`, every later call fails too.
    pub fn fail_at(&self, at: u64, kind: FaultKind, persistent: bool) {
        self.st.borrow_mut().plan = Some(FaultPlan { at, kind, persistent, only: None });
    }

    /// Makes the next call of kind `op` fail with `kind` (once).
    pub fn fail_next(&self, op: Call, kind: FaultKind) {
        self.fail_nth(op, 1, kind);
    }

    /// Makes the `n`-th call of kind `op` from now (1 = the next one) fail with `kind` (once).
    pub fn fail_nth(&self, op: Call, n: u64, kind: FaultKind) {
        self.st.borrow_mut().plan = Some(FaultPlan { at: n.max(1), kind, persistent: false, only: Some(op) });
    }

    /// Makes the `n`-th call from now (1 = the next one) fail.
    pub fn fail_in(&self, n: u64, kind: FaultKind, persistent: bool) {
        let at = self.calls() + n.max(1);
        self.fail_at(at, kind, persistent);
    }

    /// Runs `f` with call counting and fault injection suspended: for a test's own checks,
    /// which should neither shift the numbering of the workload's calls nor meet its faults.
    pub fn unobserved<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = std::mem::replace(&mut self.st.borrow_mut().paused, true);
        let out = f();
        self.st.borrow_mut().paused = was;
        out
    }

    /// Starts (or stops) recording the kind of every counted call.
    pub fn record_calls(&self, on: bool) {
        self.st.borrow_mut().recorded = if on { Some(Vec::new()) } else { None };
    }

    /// The kinds of the calls recorded so far: entry `i` is call number `i + 1`.
    pub fn recorded_calls(&self) -> Vec<Call> {
        self.st.borrow().recorded.clone().unwrap_or_default()
    }

    /// Cancels a planned fault.
    pub fn clear_faults(&self) {
        self.st.borrow_mut().plan = None;
    }

    /// True while a planned fault has not fired yet (or is persistent).
    pub fn fault_pending(&self) -> bool {
        self.st.borrow().plan.is_some()
    }

    /// Limits the bytes of all files to `bytes` (`None`: unlimited).
    pub fn set_capacity(&self, bytes: Option<usize>) {
        self.st.borrow_mut().capacity = bytes;
    }

    /// Storage calls made so far.
    pub fn calls(&self) -> u64 {
        self.st.borrow().stats.calls
    }

    /// The counters.
    pub fn stats(&self) -> FaultStats {
        self.st.borrow().stats
    }

    /// Changes the model switches.
    pub fn set_config(&self, config: FaultConfig) {
        self.st.borrow_mut().config = config;
    }

    /// Starts (or stops) keeping the last few hundred calls as text, for failure reports.
    pub fn set_trace(&self, on: bool) {
        self.st.borrow_mut().trace = if on { Some(Vec::new()) } else { None };
    }

    /// The kept trace, oldest first.
    pub fn trace(&self) -> Vec<String> {
        self.st.borrow().trace.clone().unwrap_or_default()
    }

    /// Names in the directory the process sees, sorted.
    pub fn names(&self) -> Vec<String> {
        self.st.borrow().dir.keys().cloned().collect()
    }

    /// The bytes of `name` as the process sees them.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.st.borrow();
        st.dir.get(name).and_then(|i| st.inodes.get(i)).map(|f| f.data.clone())
    }

    /// Creates or replaces `name` with `bytes`, durably (file and directory entry), as if it had
    /// been put there before the test started (stray files, damaged tables, ...).
    pub fn write_file(&self, name: &str, bytes: &[u8]) {
        let mut st = self.st.borrow_mut();
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(ino, Inode { data: bytes.to_vec(), durable: bytes.to_vec(), lost: Vec::new() });
        st.dir.insert(name.to_string(), ino);
        st.durable_dir.insert(name.to_string(), ino);
    }

    /// Removes `name` durably, as if by hand.
    pub fn delete_file(&self, name: &str) {
        let mut st = self.st.borrow_mut();
        st.dir.remove(name);
        st.durable_dir.remove(name);
    }

    /// Flips bit `bit` (0..8) of byte `offset` of `name`, on the medium and in the page cache.
    /// Returns false when the file or the byte does not exist.
    pub fn flip_bit(&self, name: &str, offset: usize, bit: u8) -> bool {
        let mut st = self.st.borrow_mut();
        let Some(&ino) = st.dir.get(name) else { return false };
        let Some(f) = st.inodes.get_mut(&ino) else { return false };
        let mask = 1u8 << (bit % 8);
        let mut hit = false;
        if let Some(b) = f.data.get_mut(offset) {
            *b ^= mask;
            hit = true;
        }
        if let Some(b) = f.durable.get_mut(offset) {
            *b ^= mask;
            hit = true;
        }
        if hit {
            st.stats.bit_flips += 1;
        }
        hit
    }

    /// Flips one random bit of one non-empty file whose name `filter` accepts; returns the file,
    /// the byte offset and the bit, or `None` when there is no such file.
    pub fn flip_random_bit(
        &self,
        rng: &mut Rng,
        filter: impl Fn(&str) -> bool,
    ) -> Option<(String, usize, u8)> {
        let candidates: Vec<(String, usize)> = {
            let st = self.st.borrow();
            st.dir
                .iter()
                .filter(|(n, _)| filter(n))
                .filter_map(|(n, i)| st.inodes.get(i).map(|f| (n.clone(), f.data.len())))
                .filter(|(_, len)| *len > 0)
                .collect()
        };
        if candidates.is_empty() {
            return None;
        }
        let (name, len) = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let offset = rng.below(len as u64) as usize;
        let bit = rng.below(8) as u8;
        self.flip_bit(&name, offset, bit);
        Some((name, offset, bit))
    }
}

impl Storage for FaultStorage {
    type Error = FaultError;
    type File = FaultFile;
    type Io<'a>
        = FaultIo<'a>
    where
        Self: 'a;

    fn create(&mut self, name: &str) -> Result<FaultFile, FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Create)?;
        let epoch = st.epoch;
        if let Some(&ino) = st.dir.get(name) {
            if let Some(f) = st.inodes.get_mut(&ino) {
                f.data.clear();
            }
            st.log(format_args!("create {name} (truncate existing)"));
            return Ok(FaultFile { ino, epoch, pos: 0 });
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(ino, Inode::new());
        st.dir.insert(name.to_string(), ino);
        st.pending.push(DirOp::Create { name: name.to_string(), ino });
        st.log(format_args!("create {name}"));
        Ok(FaultFile { ino, epoch, pos: 0 })
    }

    fn open(&mut self, name: &str) -> Result<FaultFile, FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Open)?;
        let ino = *st.dir.get(name).ok_or(FaultError::NotFound)?;
        Ok(FaultFile { ino, epoch: st.epoch, pos: 0 })
    }

    fn io<'a>(&'a mut self, file: &'a mut FaultFile) -> FaultIo<'a> {
        FaultIo { st: &self.st, file }
    }

    fn len(&mut self, file: &mut FaultFile) -> Result<u64, FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Len)?;
        Ok(st.inode(file)?.data.len() as u64)
    }

    fn truncate(&mut self, file: &mut FaultFile, len: u64) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Truncate)?;
        let f = st.inode(file)?;
        f.data.resize(len as usize, 0);
        let len = len as usize;
        f.lost.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
        st.log(format_args!("truncate ino {} to {len}", file.ino));
        Ok(())
    }

    fn preallocate(&mut self, file: &mut FaultFile, len: u64) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let ticked = st.tick(Call::Preallocate);
        // Under a capacity limit the file grows only as far as the space allows.
        let room = match st.capacity {
            Some(cap) => cap.saturating_sub(st.used_bytes()),
            None => usize::MAX,
        };
        let partial = st.config.partial_failures;
        let mut rng = st.rng.clone();
        let f = match (ticked, st.inode(file)) {
            (Err(e), Ok(f)) => {
                // Part of the extension may have happened before the failure.
                let (old, fits) = (f.data.len(), len.min(f.data.len().saturating_add(room)));
                if partial && fits > old {
                    f.data.resize(rng.range(old as u64, fits as u64) as usize, 0);
                }
                st.rng = rng;
                return Err(e);
            }
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(f)) => f,
        };
        let old = f.data.len();
        let fits = len.min(old.saturating_add(room));
        if len <= old {
            return Ok(());
        }
        f.data.resize(fits, 0);
        st.log(format_args!("preallocate ino {} from {old} to {fits} (asked {len})", file.ino));
        if fits < len {
            return Err(FaultError::NoSpace);
        }
        Ok(())
    }

    fn sync(&mut self, file: &mut FaultFile) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        if let Err(e) = st.tick(Call::Sync) {
            // The data may or may not have reached the medium: a random prefix of the change did.
            let lose_pages = st.config.failed_sync_loses_pages;
            let partial = st.config.partial_failures;
            let mut rng = st.rng.clone();
            if let Ok(f) = st.inode(file) {
                let new = f.as_synced();
                let first_diff = f.durable.iter().zip(&new).take_while(|(a, b)| a == b).count();
                let cut = if partial {
                    rng.range(first_diff as u64, new.len() as u64) as usize
                } else {
                    first_diff
                };
                if cut < new.len() || new.len() != f.durable.len() {
                    let mut d = new[..cut].to_vec();
                    if cut < f.durable.len() {
                        d.extend_from_slice(&f.durable[cut..]);
                    }
                    f.durable = d;
                    if lose_pages && cut < new.len() {
                        f.lost.push((cut, new.len()));
                    }
                }
            }
            st.rng = rng;
            return Err(e);
        }
        st.inode(file)?;
        st.sync_inode(file.ino);
        st.stats.syncs += 1;
        st.log(format_args!("sync ino {}", file.ino));
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Rename)?;
        let ino = st.dir.remove(from).ok_or(FaultError::NotFound)?;
        st.dir.insert(to.to_string(), ino);
        st.pending.push(DirOp::Rename { from: from.to_string(), to: to.to_string(), ino });
        st.log(format_args!("rename {from} -> {to}"));
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Remove)?;
        st.dir.remove(name).ok_or(FaultError::NotFound)?;
        st.pending.push(DirOp::Remove { name: name.to_string() });
        st.log(format_args!("remove {name}"));
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        if let Err(e) = st.tick(Call::SyncDir) {
            // Some prefix of the pending operations may have reached the medium.
            let mut rng = st.rng.clone();
            let keep =
                if st.config.partial_failures { rng.range(0, st.pending.len() as u64) as usize } else { 0 };
            st.rng = rng;
            let done: Vec<DirOp> = st.pending.drain(..keep).collect();
            let mut dd = st.durable_dir.clone();
            for op in &done {
                op.apply(&mut dd);
            }
            st.durable_dir = dd;
            return Err(e);
        }
        let pending = std::mem::take(&mut st.pending);
        let mut dd = st.durable_dir.clone();
        for op in &pending {
            op.apply(&mut dd);
        }
        st.durable_dir = dd;
        st.stats.dir_syncs += 1;
        st.log(format_args!("sync_dir ({} ops)", pending.len()));
        Ok(())
    }

    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), FaultError> {
        let names: Vec<String> = {
            let mut st = self.st.borrow_mut();
            st.tick(Call::List)?;
            st.dir.keys().cloned().collect()
        };
        for n in &names {
            visit(n);
        }
        Ok(())
    }
}

impl ErrorType for FaultIo<'_> {
    type Error = FaultError;
}

impl Read for FaultIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FaultError> {
        let mut st = self.st.borrow_mut();
        let pos = self.file.pos as usize;
        if let Err(e) = st.tick(Call::Read) {
            if st.config.partial_reads {
                // The file's bytes reached the buffer, all of it half the time, before the
                // failure.
                let n =
                    if st.rng.chance(1, 2) { buf.len() } else { st.rng.below(buf.len() as u64 + 1) as usize };
                if let Ok(f) = st.inode(self.file) {
                    f.read_at(pos, &mut buf[..n]);
                }
            }
            return Err(e);
        }
        let n = st.inode(self.file)?.read_at(pos, buf);
        self.file.pos += n as u64;
        Ok(n)
    }
}

impl Write for FaultIo<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, FaultError> {
        let mut st = self.st.borrow_mut();
        let pos = self.file.pos as usize;
        if let Err(e) = st.tick(Call::Write) {
            // A short write: some prefix of the buffer reached the page cache first.
            let mut rng = st.rng.clone();
            let n = if st.config.partial_failures { rng.below(buf.len() as u64 + 1) as usize } else { 0 };
            st.rng = rng;
            if let Ok(f) = st.inode(self.file) {
                f.write_at(pos, &buf[..n]);
            }
            return Err(e);
        }
        if buf.is_empty() {
            st.inode(self.file)?;
            return Ok(0);
        }
        let mut n = buf.len();
        if let Some(cap) = st.capacity {
            let old_len = st.inode(self.file)?.data.len();
            let growth = (pos + n).saturating_sub(old_len);
            let room = cap.saturating_sub(st.used_bytes());
            if growth > room {
                let can = (old_len + room).saturating_sub(pos);
                if can == 0 {
                    st.log(format_args!("write ino {} at {pos}: no space", self.file.ino));
                    return Err(FaultError::NoSpace);
                }
                n = n.min(can);
            }
        }
        let f = st.inode(self.file)?;
        f.write_at(pos, &buf[..n]);
        self.file.pos += n as u64;
        st.log(format_args!("write ino {} at {pos}: {n} bytes", self.file.ino));
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Flush)?;
        st.inode(self.file)?;
        Ok(())
    }
}

impl Seek for FaultIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, FaultError> {
        let mut st = self.st.borrow_mut();
        st.tick(Call::Seek)?;
        let len = st.inode(self.file)?.data.len() as i128;
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.file.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(FaultError::InvalidSeek);
        }
        self.file.pos = new as u64;
        Ok(self.file.pos)
    }
}

impl Inode {
    /// Copies the bytes at `pos` into `buf`, as many as the file holds there; returns how many.
    fn read_at(&self, pos: usize, buf: &mut [u8]) -> usize {
        let src = self.data.get(pos..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        n
    }

    /// Writes `bytes` at `pos` into the page cache; rewritten bytes are dirty again.
    fn write_at(&mut self, pos: usize, bytes: &[u8]) {
        let end = pos + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[pos..end].copy_from_slice(bytes);
        if !self.lost.is_empty() && !bytes.is_empty() {
            let mut kept = Vec::new();
            for &(a, b) in &self.lost {
                if a < pos {
                    kept.push((a, b.min(pos)));
                }
                if b > end {
                    kept.push((a.max(end), b));
                }
            }
            self.lost = kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &mut FaultStorage, f: &mut FaultFile, at: u64, bytes: &[u8]) {
        let mut io = s.io(f);
        io.seek(SeekFrom::Start(at)).unwrap();
        io.write_all(bytes).unwrap();
    }

    #[test]
    fn synced_data_and_directory_survive_every_power_cut() {
        for seed in 0..200 {
            let mut s = FaultStorage::new(seed);
            let mut f = s.create("a").unwrap();
            write(&mut s, &mut f, 0, b"durable");
            s.sync(&mut f).unwrap();
            s.sync_dir().unwrap();
            write(&mut s, &mut f, 7, b"+volatile");
            s.power_cut(&mut Rng::new(seed));
            let got = s.read_file("a").unwrap();
            assert!(got.starts_with(b"durable"), "seed {seed}: {got:?}");
            assert!(
                b"durable+volatile".starts_with(&got) || got[7..].iter().all(|&b| b == 0) || {
                    // zero-filled tail after a kept prefix
                    let kept = got.iter().skip(7).take_while(|&&b| b != 0).count();
                    b"durable+volatile".starts_with(&got[..7 + kept])
                }
            );
            assert!(s.len(&mut f).is_err(), "handles go stale");
        }
    }

    #[test]
    fn preallocation_is_an_unsynced_change_that_a_power_cut_can_tear() {
        let mut lengths = HashSet::new();
        for seed in 0..200 {
            let mut s = FaultStorage::new(seed);
            let mut f = s.create("a").unwrap();
            write(&mut s, &mut f, 0, b"records");
            s.sync(&mut f).unwrap();
            s.sync_dir().unwrap();
            s.preallocate(&mut f, 64).unwrap();
            assert_eq!(s.len(&mut f).unwrap(), 64);
            s.preallocate(&mut f, 10).unwrap();
            assert_eq!(s.len(&mut f).unwrap(), 64, "never shrinks");
            s.power_cut(&mut Rng::new(seed));
            let got = s.read_file("a").unwrap();
            assert!(got.starts_with(b"records") && got[7..].iter().all(|&b| b == 0), "seed {seed}: {got:?}");
            lengths.insert(got.len());
        }
        assert!(lengths.contains(&7) && lengths.contains(&64), "{lengths:?}");
        assert!(lengths.iter().any(|&l| 7 < l && l < 64), "no torn extension: {lengths:?}");
        // Synced, the extension survives.
        let mut s = FaultStorage::new(1);
        let mut f = s.create("a").unwrap();
        s.sync_dir().unwrap();
        s.preallocate(&mut f, 100).unwrap();
        s.sync(&mut f).unwrap();
        s.power_cut(&mut Rng::new(1));
        assert_eq!(s.read_file("a").unwrap(), vec![0u8; 100]);
    }

    #[test]
    fn preallocation_fails_like_any_call_and_respects_the_capacity() {
        let mut s = FaultStorage::new(2);
        let mut f = s.create("a").unwrap();
        s.fail_next(Call::Preallocate, FaultKind::Io);
        assert!(matches!(
            s.preallocate(&mut f, 1000),
            Err(FaultError::Injected { op: Call::Preallocate, .. })
        ));
        assert!(s.len(&mut f).unwrap() <= 1000, "a failed extension goes at most part of the way");
        let mut s = FaultStorage::new(3);
        let mut f = s.create("a").unwrap();
        s.set_capacity(Some(300));
        assert_eq!(s.preallocate(&mut f, 1000), Err(FaultError::NoSpace));
        assert_eq!(s.len(&mut f).unwrap(), 300, "extended as far as the space allows");
    }

    #[test]
    fn unsynced_create_can_vanish_and_synced_rename_cannot() {
        let mut lost = 0;
        for seed in 0..100 {
            let mut s = FaultStorage::new(seed);
            let mut f = s.create("x.tmp").unwrap();
            write(&mut s, &mut f, 0, b"t");
            s.sync(&mut f).unwrap();
            s.rename("x.tmp", "x.sst").unwrap();
            s.sync_dir().unwrap();
            s.create("y").unwrap();
            s.power_cut(&mut Rng::new(seed));
            assert_eq!(s.names().iter().filter(|n| *n == "x.sst").count(), 1);
            assert_eq!(s.read_file("x.sst").unwrap(), b"t");
            if !s.names().contains(&"y".to_string()) {
                lost += 1;
            }
        }
        assert!(lost > 10 && lost < 90, "{lost}");
    }

    #[test]
    fn rename_never_survives_without_its_create() {
        for seed in 0..300 {
            let mut s = FaultStorage::new(seed);
            let mut f = s.create("a").unwrap();
            write(&mut s, &mut f, 0, b"A");
            s.sync(&mut f).unwrap();
            s.rename("a", "b").unwrap();
            s.power_cut(&mut Rng::new(seed));
            let names = s.names();
            assert!(names.is_empty() || names == ["a"] || names == ["b"], "seed {seed}: {names:?}");
        }
    }

    #[test]
    fn nth_call_fails_once_or_for_good() {
        let mut s = FaultStorage::new(1);
        s.fail_in(2, FaultKind::Io, false);
        s.create("a").unwrap();
        assert!(matches!(s.open("a"), Err(FaultError::Injected { op: Call::Open, .. })));
        s.open("a").unwrap();
        s.fail_in(1, FaultKind::NoSpace, true);
        assert_eq!(s.open("a").err(), Some(FaultError::NoSpace));
        assert_eq!(s.open("a").err(), Some(FaultError::NoSpace));
        assert_eq!(s.stats().injected, 3);
    }

    #[test]
    fn capacity_cuts_writes_short_then_fails() {
        let mut s = FaultStorage::new(1);
        s.set_capacity(Some(10));
        let mut f = s.create("a").unwrap();
        let mut io = s.io(&mut f);
        assert_eq!(io.write(&[1; 8]).unwrap(), 8);
        assert_eq!(io.write(&[1; 8]).unwrap(), 2);
        assert_eq!(io.write(&[1; 8]), Err(FaultError::NoSpace));
    }

    #[test]
    fn failed_sync_with_lost_pages_is_not_written_by_a_later_sync() {
        let cfg = FaultConfig { failed_sync_loses_pages: true, ..FaultConfig::default() };
        let mut s = FaultStorage::with_config(3, cfg);
        let mut f = s.create("a").unwrap();
        s.sync_dir().unwrap();
        write(&mut s, &mut f, 0, b"xxxxxxxx");
        s.fail_in(1, FaultKind::Io, false);
        assert!(s.sync(&mut f).is_err());
        write(&mut s, &mut f, 8, b"yy");
        s.sync(&mut f).unwrap();
        assert_eq!(s.read_file("a").unwrap(), b"xxxxxxxxyy", "the page cache still has it");
        s.power_cut(&mut Rng::new(0));
        let got = s.read_file("a").unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(&got[8..], b"yy");
    }
}
