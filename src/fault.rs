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
//!   write, so a power cut keeps none, all, or any prefix of the extension (a torn extension),
//!   and a record later written inside it can be torn with zeros after the cut. It counts as a
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
//!      has unsynced changes, one of: none of them; all of them; or the new contents cut at any
//!      byte at or after the first changed byte (a torn write), optionally followed by the old
//!      bytes past the cut when the old file was longer (the size change not persisted). With
//!      [`FaultConfig::zero_fill`], part of the kept unsynced range may instead read as zeros
//!      (the size reached the medium, the data blocks did not). Unreachable files are gone.
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
//!
//! # Also here
//! [`History`] (the model of acknowledged and durable writes the crash tests check against),
//! [`ManualClock`], [`Rng`], [`MemCursor`] (an in-memory file for the format readers), and
//! [`targets`] (the fuzz target bodies, shared with `cargo test`). `docs/RELIABILITY.md` lists
//! the tests built on them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};
use minivault_core::{Clock, Storage};

/// A small deterministic random number generator (SplitMix64), so every test is a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A clock the test moves by hand; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Rc<Cell<u64>>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: u64) -> Self {
        ManualClock(Rc::new(Cell::new(now)))
    }

    /// The current time.
    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: u64) {
        self.0.set(self.0.get().saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now(&mut self) -> u64 {
        self.0.get()
    }
}

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
    /// A power cut may drop unsynced directory operations (and keep some but not others).
    pub lose_dir_ops: bool,
    /// After a failed sync, the pages it failed to write are never written (Linux "fsyncgate").
    pub failed_sync_loses_pages: bool,
    /// A failed `write`, `sync` or `sync_dir` may have done part of its work first (a short
    /// write, a prefix of the data or of the directory operations made durable). Off: nothing.
    pub partial_failures: bool,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            torn_writes: true,
            zero_fill: true,
            lose_dir_ops: true,
            failed_sync_loses_pages: false,
            partial_failures: true,
        }
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
    /// Files left with a torn (partial) unsynced change by a power cut.
    pub torn_files: u64,
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
        for ino in inos {
            let Some(f) = self.inodes.get_mut(&ino) else { continue };
            let new = f.as_synced();
            let result = if new == f.durable {
                new
            } else {
                match rng.below(if self.config.torn_writes { 4 } else { 2 }) {
                    0 => f.durable.clone(),
                    1 => new,
                    _ => {
                        torn += 1;
                        let first_diff = f.durable.iter().zip(&new).take_while(|(a, b)| a == b).count();
                        let cut = rng.range(first_diff as u64, new.len() as u64) as usize;
                        let mut out = new[..cut].to_vec();
                        // Past the cut the medium keeps its old bytes, unless the file was cut
                        // shorter and that size change reached the medium.
                        let shrunk = new.len() < f.durable.len() && rng.chance(1, 2);
                        if cut < f.durable.len() && !shrunk {
                            out.extend_from_slice(&f.durable[cut..]);
                        }
                        if self.config.zero_fill && cut > f.durable.len() && rng.chance(1, 4) {
                            // The size made it, some data blocks did not.
                            let from = rng.range(f.durable.len().max(first_diff) as u64, cut as u64) as usize;
                            out[from..cut].fill(0);
                        }
                        out
                    }
                }
            };
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
        let msg = format!("POWER CUT (dir mode {mode}, {n} pending ops, {torn} torn files)");
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
        st.tick(Call::Read)?;
        let pos = self.file.pos as usize;
        let f = st.inode(self.file)?;
        let src = f.data.get(pos..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
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

/// A growable in-memory file for the format readers (`sstable::open`, `wal::next`, ...): reads,
/// writes and seeks over a `Vec<u8>`, and never fails.
#[derive(Debug, Clone, Default)]
pub struct MemCursor {
    /// The file's bytes.
    pub data: Vec<u8>,
    /// The position of the next read or write.
    pub pos: u64,
}

impl MemCursor {
    /// A file holding `data`, positioned at its start.
    pub fn new(data: Vec<u8>) -> Self {
        MemCursor { data, pos: 0 }
    }
}

impl ErrorType for MemCursor {
    type Error = core::convert::Infallible;
}

impl Read for MemCursor {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let src = usize::try_from(self.pos).ok().and_then(|p| self.data.get(p..)).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for MemCursor {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let pos = self.pos as usize;
        let end = pos + buf.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[pos..end].copy_from_slice(buf);
        self.pos = end as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl Seek for MemCursor {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, Self::Error> {
        let len = self.data.len() as i128;
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        self.pos = new.clamp(0, u64::MAX as i128) as u64;
        Ok(self.pos)
    }
}

/// One write as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOp {
    /// A put, with its expiry when it has one.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Absolute expiry in clock units.
        expires_at: Option<u64>,
    },
    /// A delete.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// A write batch: its puts and deletes, applied in order and atomically.
    Batch(Vec<ModelOp>),
}

impl ModelOp {
    /// The key written (the first one, for a batch; empty for an empty batch).
    pub fn key(&self) -> &[u8] {
        match self {
            ModelOp::Put { key, .. } | ModelOp::Delete { key } => key,
            ModelOp::Batch(ops) => ops.first().map_or(&[], ModelOp::key),
        }
    }

    /// How many user writes this is (the engine's `EveryN` counter counts a batch's entries).
    pub fn writes(&self) -> usize {
        match self {
            ModelOp::Batch(ops) => ops.iter().map(ModelOp::writes).sum(),
            _ => 1,
        }
    }

    fn apply(&self, state: &mut KvState) {
        match self {
            ModelOp::Put { key, value, expires_at } => {
                state.insert(key.clone(), (value.clone(), *expires_at));
            }
            ModelOp::Delete { key } => {
                state.remove(key);
            }
            ModelOp::Batch(ops) => {
                for op in ops {
                    op.apply(state);
                }
            }
        }
    }
}

/// Key → (value, expiry): the full contents of a database in the model.
pub type KvState = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// What a reader sees in `state` at time `now`: expired entries are absent.
pub fn visible(state: &KvState, now: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state
        .iter()
        .filter(|(_, (_, exp))| exp.is_none_or(|t| t > now))
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

/// The model of what a database must hold: the writes it acknowledged, in order, and how many
/// of them are guaranteed durable.
///
/// Writes reach the WAL in order and a power cut keeps a prefix of it, so the state recovered
/// after a power cut must be the state after some prefix of the writes: at least the durable
/// ones, at most every acknowledged one plus the one in flight (the write that failed). After a
/// process crash without a power cut, every acknowledged write must be there.
///
/// The model sees only what reads show. Give every put a distinct non-empty value (or an empty
/// value without expiry): two puts of one value with different expiries read alike until the
/// first expires, and after a power cut the model could not tell which of them survived.
#[derive(Debug, Clone, Default)]
pub struct History {
    base: KvState,
    /// Writes since `base`; `true` for acknowledged ones, `false` for an in-flight write that a
    /// restart showed had landed.
    log: Vec<(ModelOp, bool)>,
    durable_upto: usize,
    inflight: Option<ModelOp>,
}

impl History {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an acknowledged write.
    pub fn ack(&mut self, op: ModelOp) {
        self.log.push((op, true));
    }

    /// Records the write whose call failed: it may or may not have landed.
    pub fn set_inflight(&mut self, op: ModelOp) {
        self.inflight = Some(op);
    }

    /// The write in flight, if any.
    pub fn inflight(&self) -> Option<&ModelOp> {
        self.inflight.as_ref()
    }

    /// Every write so far is durable (after a successful sync, flush or close).
    pub fn mark_durable(&mut self) {
        self.durable_upto = self.log.len();
    }

    /// Every write but the last `n` acknowledged ones is durable (`SyncPolicy::EveryN(n + 1)`).
    /// A batch of k entries counts as k writes, and is durable as a whole or not at all.
    pub fn mark_durable_but_last(&mut self, n: usize) {
        let mut weight = 0;
        let mut upto = self.log.len();
        for i in (0..self.log.len()).rev() {
            let (op, acked) = &self.log[i];
            let w = if *acked { op.writes() } else { 0 };
            if weight + w > n {
                break;
            }
            weight += w;
            upto = i;
        }
        self.durable_upto = self.durable_upto.max(upto);
    }

    /// Acknowledged writes not yet known durable.
    pub fn undurable(&self) -> usize {
        self.log.len() - self.durable_upto
    }

    /// The state with every logged write applied: what a live database must show.
    pub fn current(&self) -> KvState {
        let mut s = self.base.clone();
        for (op, _) in &self.log {
            op.apply(&mut s);
        }
        s
    }

    /// Checks the state a restarted database shows (`recovered`, read at time `now`) and, when it
    /// is allowed, makes it the model's new starting point. `power_cut` says whether the restart
    /// followed a power cut (a prefix down to the durable writes may be lost) or only a process
    /// crash (nothing acknowledged may be lost).
    pub fn check_recovered(
        &mut self,
        recovered: &BTreeMap<Vec<u8>, Vec<u8>>,
        now: u64,
        power_cut: bool,
    ) -> Result<(), String> {
        let lo = if power_cut { self.durable_upto } else { self.log.len() };
        let mut state = self.base.clone();
        let mut found = None;
        let total = self.log.len() + usize::from(self.inflight.is_some());
        for k in 0..=total {
            if k > 0 {
                let op = match self.log.get(k - 1) {
                    Some((op, _)) => op,
                    None => self.inflight.as_ref().ok_or("no in-flight write")?,
                };
                op.apply(&mut state);
            }
            if k >= lo && &visible(&state, now) == recovered {
                found = Some((k, state.clone()));
            }
        }
        let Some((k, state)) = found else {
            let want = visible(&self.current(), now);
            let mut diff = Vec::new();
            for key in want.keys().chain(recovered.keys()).collect::<std::collections::BTreeSet<_>>() {
                let (a, b) = (want.get(key), recovered.get(key));
                if a != b {
                    diff.push(format!(
                        "  key {}: model (all acked) {:?}, recovered {:?}",
                        show(key),
                        a.map(|v| show(v)),
                        b.map(|v| show(v))
                    ));
                }
            }
            return Err(format!(
                "recovered state matches no allowed prefix (power_cut={power_cut}, durable {} of {} \
                 logged writes, in flight {:?}):\n{}",
                self.durable_upto,
                self.log.len(),
                self.inflight,
                diff.join("\n")
            ));
        };
        if power_cut {
            // What survived a power cut is on the medium: it is the new durable base.
            self.base = state;
            self.log.clear();
            self.durable_upto = 0;
        } else if k > self.log.len() {
            if let Some(op) = self.inflight.take() {
                self.log.push((op, false));
            }
        }
        self.inflight = None;
        Ok(())
    }
}

/// Bytes for a failure message: text as is, anything else escaped, long runs shortened.
pub fn show(bytes: &[u8]) -> String {
    let s: String = bytes.escape_ascii().to_string();
    if s.len() > 48 {
        format!("{}..({} bytes)", &s[..40], bytes.len())
    } else {
        s
    }
}

/// The bodies of the fuzz targets in `fuzz/fuzz_targets/`, here so that `cargo test` can replay
/// saved inputs through exactly the same checks (`tests/hostile_fuzz_inputs.rs`). Each panics
/// when the engine misbehaves on `data`, and returns normally otherwise.
pub mod targets {
    use std::collections::BTreeMap;

    use minivault_core::record::{self, HEADER_LEN};
    use minivault_core::sstable::{self, Lookup};
    use minivault_core::{entry, Config, Db, Error, SyncPolicy};

    use super::{visible, FaultStorage, History, ManualClock, MemCursor, ModelOp, Rng};

    type FuzzDb = Db<FaultStorage, ManualClock, Vec<u8>>;

    fn open_db(
        storage: &FaultStorage,
        mem: usize,
        sync: SyncPolicy,
    ) -> Result<FuzzDb, Error<super::FaultError>> {
        FuzzDb::open(
            storage.clone(),
            ManualClock::new(1_000),
            [vec![0u8; mem], vec![0u8; mem]],
            Config::with_sync(sync),
        )
    }

    /// Record framing and entry decoding of arbitrary bytes.
    pub fn record_decode(data: &[u8]) {
        if let Ok((payload, used)) = record::decode(data) {
            assert_eq!(used, HEADER_LEN + payload.len());
            assert_eq!(record::crc32c(&[payload]).to_le_bytes(), data[4..8]);
            if let Ok(e) = entry::decode(payload) {
                assert!(!e.key.is_empty() && e.key.len() <= minivault_core::MAX_KEY_LEN);
                assert!(!e.tombstone || e.value.is_empty());
            }
        }
        let _ = entry::decode(data);
    }

    /// WAL replay: the first byte splits the rest into one or two WAL files; the database must
    /// open (and take a write) or report corruption or a memory shortfall.
    pub fn wal_replay(data: &[u8]) {
        let Some((&first, rest)) = data.split_first() else { return };
        let storage = FaultStorage::new(0);
        let split = (first as usize * rest.len() / 255).min(rest.len());
        if first & 1 == 1 {
            storage.write_file("0000000000000001.wal", &rest[..split]);
            storage.write_file("0000000000000002.wal", &rest[split..]);
        } else {
            storage.write_file("0000000000000001.wal", rest);
        }
        let mem = if first & 2 == 2 { 512 } else { 4096 };
        match open_db(&storage, mem, SyncPolicy::EveryWrite) {
            Ok(mut db) => {
                let mut buf = vec![0u8; 8192];
                for k in [&b"k"[..], b"key", b"\x00"] {
                    let _ = db.get(k, &mut buf);
                }
                db.put(b"after", b"replay").expect("a recovered database takes writes");
                drop(db);
                let mut db = open_db(&storage, mem, SyncPolicy::EveryWrite).expect("reopen after recovery");
                assert_eq!(
                    db.get(b"after", &mut buf).expect("get").map(<[u8]>::to_vec),
                    Some(b"replay".to_vec())
                );
            }
            Err(Error::Corrupted { .. } | Error::InsufficientMemory { .. }) => {}
            Err(e) => panic!("WAL replay failed with {e:?}"),
        }
    }

    /// SSTable open and lookup. First byte even: the rest is a table and its last byte a key
    /// length. Odd: the rest describes entries; a real table is written with them, bytes of it
    /// are flipped where the input says, and every lookup must give an error or the right answer.
    pub fn sstable_lookup(data: &[u8]) {
        let Some((&first, rest)) = data.split_first() else { return };
        if first & 1 == 0 {
            let klen = rest.last().map_or(1, |&b| (b as usize % 16) + 1).min(rest.len());
            let (table, key) = rest.split_at(rest.len() - klen);
            let mut io = MemCursor::new(table.to_vec());
            if let Ok(footer) = sstable::open(&mut io, table.len() as u64) {
                let mut out = [0u8; 64];
                let _ = sstable::lookup(&mut io, &footer, key, &mut out);
                let _ = sstable::lookup(&mut io, &footer, b"k", &mut out);
            }
            return;
        }
        let half = rest.len() / 2;
        let (entries, flips) = rest.split_at(half);
        let storage = FaultStorage::new(0);
        let mut db = open_db(&storage, 64 * 1024, SyncPolicy::Manual).expect("open");
        let mut state: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for chunk in entries.chunks(4) {
            let key = vec![b'k', chunk[0] % 32];
            if chunk.len() > 1 && chunk[1] % 5 == 0 {
                db.delete(&key).expect("delete");
                state.insert(key, None);
            } else {
                let value = chunk.get(1..).unwrap_or(&[]).repeat(chunk.get(2).map_or(1, |&n| n as usize % 9));
                db.put(&key, &value).expect("put");
                state.insert(key, Some(value));
            }
        }
        db.flush().expect("flush");
        drop(db);
        let Some(name) = storage.names().into_iter().find(|n| n.ends_with(".sst")) else { return };
        let mut table = storage.read_file(&name).expect("table");
        for pair in flips.chunks(3) {
            if let [a, b, x] = *pair {
                let i = (a as usize) << 8 | b as usize;
                let len = table.len();
                table[i % len] ^= x;
            }
        }
        let mut io = MemCursor::new(table.clone());
        let Ok(footer) = sstable::open(&mut io, table.len() as u64) else { return };
        let mut out = vec![0u8; 4096];
        for (key, want) in &state {
            match sstable::lookup(&mut io, &footer, key, &mut out) {
                Err(_) => {}
                Ok(Lookup::Found { value_len, tombstone: false, .. }) => {
                    assert_eq!(Some(&out[..value_len]), want.as_deref(), "wrong value for {key:?}");
                }
                Ok(Lookup::Found { tombstone: true, .. } | Lookup::Absent) => {
                    assert!(want.is_none(), "damage hid {key:?}");
                }
            }
        }
    }

    /// The REPL's line parser: never panics, and a parsed `put` prints back to the same command.
    pub fn repl_parse(data: &[u8]) {
        use minivault::repl::{format_value, parse_line, Command};
        if let Ok(Some(Command::Put { key, value, ttl_secs })) = parse_line(data) {
            let mut line = format!("put {} {}", format_value(&key), format_value(&value));
            if let Some(t) = ttl_secs {
                line.push_str(&format!(" EX {t}"));
            }
            assert_eq!(parse_line(line.as_bytes()), Ok(Some(Command::Put { key, value, ttl_secs })));
        }
    }

    /// Operations against a database on a [`FaultStorage`], checked against a [`History`]:
    /// each input byte pair is one step (put, delete, TTL put, clock, get, flush, sync, crash,
    /// power cut). `EveryWrite`: nothing acknowledged may be lost.
    pub fn ops(data: &[u8]) {
        let Some((&seed, rest)) = data.split_first() else { return };
        let storage = FaultStorage::new(u64::from(seed));
        let clock = ManualClock::new(1_000);
        let mut rng = Rng::new(u64::from(seed));
        let mem = [512, 1024, 4096][seed as usize % 3];
        let open = |s: &FaultStorage| {
            FuzzDb::open(
                s.clone(),
                clock.clone(),
                [vec![0u8; mem], vec![0u8; mem]],
                Config::with_sync(SyncPolicy::EveryWrite),
            )
        };
        let mut db = Some(open(&storage).expect("open"));
        let mut hist = History::new();
        let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'k', i]).collect();
        let mut buf = vec![0u8; 8192];
        let check = |db: &mut FuzzDb, hist: &mut History, buf: &mut Vec<u8>, power_cut: bool, now: u64| {
            let mut got = BTreeMap::new();
            for k in &keys {
                if let Some(v) = db.get(k, buf).expect("get after reopen") {
                    got.insert(k.clone(), v.to_vec());
                }
            }
            if let Err(e) = hist.check_recovered(&got, now, power_cut) {
                panic!("{e}");
            }
        };
        for pair in rest.chunks(2) {
            let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
            let key = keys[arg as usize % keys.len()].clone();
            let d = db.as_mut().expect("open");
            match op % 10 {
                0..=2 => {
                    let value = vec![arg; (op as usize / 10) * 3];
                    d.put(&key, &value).expect("put");
                    hist.ack(ModelOp::Put { key, value, expires_at: None });
                    hist.mark_durable();
                }
                3 => {
                    d.delete(&key).expect("delete");
                    hist.ack(ModelOp::Delete { key });
                    hist.mark_durable();
                }
                4 => {
                    // A distinct value per TTL put (see History).
                    let t = clock.get() + u64::from(arg % 50) + 1;
                    let value = format!("ttl{t}-{}", rng.next_u64()).into_bytes();
                    d.put_expiring(&key, &value, t).expect("put_expiring");
                    hist.ack(ModelOp::Put { key, value, expires_at: Some(t) });
                    hist.mark_durable();
                }
                5 if op >= 200 => {
                    // An atomic batch of up to four writes (distinct values, see History).
                    let mut batch = minivault_core::WriteBatch::new(vec![0u8; 1024]);
                    let mut ops = Vec::new();
                    for j in 0..(arg % 4 + 1) {
                        let key = keys[(arg as usize + j as usize * 3) % keys.len()].clone();
                        if j == 2 {
                            batch.delete(&key).expect("batch delete");
                            ops.push(ModelOp::Delete { key });
                        } else {
                            let value = format!("b{}-{j}", rng.next_u64()).into_bytes();
                            batch.put(&key, &value).expect("batch put");
                            ops.push(ModelOp::Put { key, value, expires_at: None });
                        }
                    }
                    d.write_batch(&batch).expect("write_batch");
                    hist.ack(ModelOp::Batch(ops));
                    hist.mark_durable();
                }
                5 => clock.advance(u64::from(arg % 30)),
                6 => {
                    let want = visible(&hist.current(), clock.get()).get(&key).cloned();
                    let got = d.get(&key, &mut buf).expect("get").map(<[u8]>::to_vec);
                    assert_eq!(got, want, "live get {key:?}");
                }
                7 => d.flush().expect("flush"),
                8 | 9 => {
                    let power_cut = op % 10 == 9;
                    drop(db.take());
                    if power_cut {
                        storage.power_cut(&mut rng);
                    }
                    let mut d = open(&storage).expect("reopen");
                    check(&mut d, &mut hist, &mut buf, power_cut, clock.get());
                    db = Some(d);
                }
                _ => unreachable!(),
            }
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
