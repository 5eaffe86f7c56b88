//! Model-based power-cut testing: random operations against the engine on a [`FaultStorage`],
//! checked against a [`History`] of what was acknowledged.
//!
//! Each seed opens a database with a small MemTable (so rotations and flushes are frequent) and
//! runs a few hundred random steps: put, delete, put with TTL, clock moves, reads, flush, sync,
//! clean close and reopen, process crash and reopen, power cut and reopen, injected I/O errors
//! and out-of-space, a full disk, and invalid requests. After every restart the recovered
//! contents must be the state after some prefix of the writes that reaches every durable one
//! (every acknowledged one after a process crash), a write that failed is all there or not at
//! all, keys never written stay absent, and the database opens.
//!
//! The device keeps unsynced data by one of two power-cut models (`minivault_suite::fault::
//! power_cut`): the **wide** one (any subset of the changed sectors or pages, each old, new or
//! torn; the default) and the **narrow** one (a torn prefix of the change, the model before
//! issue 15). `EveryWrite` runs the wide model. The relaxed policies (`EveryN`, `Manual`) run
//! the narrow model and, in two more tests, the wide one: before the WAL watermark fix of issue
//! 15 a later unsynced WAL write that survived an earlier lost one made the database refuse to
//! open (`WalRecordBeforeValidData`). One more test syncs the WAL outside the engine, as the
//! POSIX group commit's leader does, with other writes, flushes and compactions between taking
//! what a sync covers and reporting it (`group_commit_syncs_outside_the_engine_lose_no_acknowledged_write`).
//!
//! - `MINIVAULT_SEED=<n>` runs only seed `n` of each test, tracing the storage calls.
//! - `MINIVAULT_SOAK=<seconds>` runs fresh seeds for that long per test instead of the default
//!   count (see `scripts/soak.sh`), and counts every failing seed instead of stopping at five.
//! - `MINIVAULT_SEEDS=<n>` changes the default count.
//!
//! The summary line of each test counts power cuts and failures by kind: refusals to open,
//! writes lost that the mode promised durable, states that are not a prefix of the writes.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use minivault_core::compaction::{Execution, Maintenance, Plan};
use minivault_core::flush::{self, FlushPlan, Flushed, TableState};
use minivault_core::memtable::MemTable;
use minivault_core::names::{file_name, FileKind};
use minivault_core::wal::{self, Spare, SyncTarget};
use minivault_core::{CompactionMode, Config, Db, Error, Storage, SyncPolicy, MAX_KEY_LEN};
use minivault_suite::fault::{
    show, visible, FaultConfig, FaultError, FaultFile, FaultKind, FaultStorage, History, ManualClock,
    Mismatch, MismatchKind, ModelOp, PowerCutModel, Rng,
};

use common::{read_keys, FaultDb as TestDb};

type DbError = Error<FaultError>;

/// Totals over all seeds of one test, printed at the end (the figures in RELIABILITY.md).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Syncs made outside the engine whose every report counted ([`Mode::GroupCommit`]).
    host_syncs: u64,
    /// Reports of such syncs that did not count (the engine synced instead).
    host_syncs_not_counted: u64,
    /// Syncs whose two WALs were reported out of order, the current one first.
    host_syncs_out_of_order: u64,
    /// Syncs of two WALs (a rotation's predecessor, then the current one) reported in order.
    host_syncs_of_two_wals: u64,
    /// Reports in order that did not count: the WAL was rotated or retired meanwhile.
    host_syncs_not_counted_in_order: u64,
    seeds: u64,
    steps: u64,
    acked_writes: u64,
    power_cuts: u64,
    crashes: u64,
    clean_reopens: u64,
    injected_errors: u64,
    failed_opens: u64,
    /// Writes, flushes and syncs refused with `Error::Full` (out of space, nothing stored).
    full: u64,
    torn_files: u64,
    /// WALs open dropped because their predecessor lost records they followed (`Stats::wals_dropped`).
    wals_dropped: u64,
    scattered_files: u64,
    holes: u64,
    dir_ops_dropped: u64,
    storage_calls: u64,
    /// Compactions completed by `Db::maintain` (Mode::Maintained) or by writes (Mode::Stepped).
    maintained_compactions: u64,
    /// Spare WALs prepared ahead (inline, or apart in `Background` and `GroupCommit`), those a
    /// rotation took, and those handed back after a rotation went on without them.
    spares_prepared: u64,
    spares_taken: u64,
    spares_stale: u64,
    /// Flushes installed apart from the engine, and writes refused with `FlushPending` (mode
    /// `Background`).
    installed_flushes: u64,
    flush_pending: u64,
    /// Flushes whose table the runner made live before the install (`flush::publish`).
    published_flushes: u64,
    /// Flushes whose table the runner only synced before the install (`flush::sync_temp`, as
    /// the POSIX flush thread does under `max_bytes`).
    synced_flushes: u64,
    /// Tables the engine removed whole because every entry in them had expired.
    expired_tables: u64,
    /// Failing seeds, by what failed first.
    refusals: u64,
    lost_durable: u64,
    not_prefix: u64,
    other_failures: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.seeds += o.seeds;
        self.steps += o.steps;
        self.acked_writes += o.acked_writes;
        self.power_cuts += o.power_cuts;
        self.crashes += o.crashes;
        self.clean_reopens += o.clean_reopens;
        self.injected_errors += o.injected_errors;
        self.failed_opens += o.failed_opens;
        self.full += o.full;
        self.torn_files += o.torn_files;
        self.wals_dropped += o.wals_dropped;
        self.scattered_files += o.scattered_files;
        self.holes += o.holes;
        self.refusals += o.refusals;
        self.lost_durable += o.lost_durable;
        self.not_prefix += o.not_prefix;
        self.other_failures += o.other_failures;
        self.dir_ops_dropped += o.dir_ops_dropped;
        self.storage_calls += o.storage_calls;
        self.maintained_compactions += o.maintained_compactions;
        self.spares_prepared += o.spares_prepared;
        self.spares_taken += o.spares_taken;
        self.spares_stale += o.spares_stale;
        self.installed_flushes += o.installed_flushes;
        self.flush_pending += o.flush_pending;
        self.published_flushes += o.published_flushes;
        self.synced_flushes += o.synced_flushes;
        self.expired_tables += o.expired_tables;
        self.host_syncs += o.host_syncs;
        self.host_syncs_not_counted += o.host_syncs_not_counted;
        self.host_syncs_out_of_order += o.host_syncs_out_of_order;
        self.host_syncs_of_two_wals += o.host_syncs_of_two_wals;
        self.host_syncs_not_counted_in_order += o.host_syncs_not_counted_in_order;
    }
}

struct Run {
    rng: Rng,
    storage: FaultStorage,
    clock: ManualClock,
    policy: SyncPolicy,
    mem: usize,
    db: Option<TestDb>,
    hist: History,
    keys: Vec<Vec<u8>>,
    never_written: Vec<Vec<u8>>,
    poisoned: bool,
    persistent_fault: bool,
    /// Serial number of the last value made.
    serial: u64,
    recent: VecDeque<String>,
    counts: Counts,
    /// What broke, when a restart failed: the database refused to open, or its state broke a
    /// rule of the model (anything else is counted as another failure).
    broken: Option<Broken>,
    /// Compactions run apart from the engine ([`CompactionMode::External`]): planned, stepped
    /// and installed between the other steps, on another handle of the same storage.
    external: bool,
    execs: Vec<Exec>,
    /// Compactions advanced by `Db::maintain` in small budgets between the other steps (with
    /// `external`), as a microcontroller's main loop would.
    maintained: bool,
    maintenance: Option<Maintenance<FaultFile, Vec<u8>>>,
    /// Compactions in steps inside the writes ([`CompactionMode::Stepped`]), with a budget and
    /// scratch memory drawn at each open.
    stepped: bool,
    /// Flushes run apart from the engine (`Db::plan_flush`, `flush::write_temp`,
    /// `Db::install_flush`) between the other steps, as the POSIX flush thread runs them.
    flushes: bool,
    flush: Option<PendingFlush>,
    /// Most plain puts and deletes are puts with a TTL ([`Mode::ExternalTtl`]).
    ttl_heavy: bool,
    /// The WAL is synced by the test, outside the engine ([`Mode::GroupCommit`]).
    group_commit: bool,
    host_sync: Option<HostSync>,
    /// A spare WAL prepared apart from the engine (with `flushes`): planned, and how far it is:
    /// 0 planned, 1 its file made and renamed into place (`wal::spare::create`), 2 the directory
    /// synced too (the POSIX flush thread leaves that to its table's publish).
    spare: Option<(Spare, u8)>,
}

/// A sync made outside the engine, as the POSIX group commit's leader makes it: what it must
/// cover, taken under the engine ([`Db::wal_sync_targets`]), each WAL file with a handle of its
/// own, and the writes logged by then. (POSIX opens a WAL's second descriptor when the WAL is
/// created, this model when the targets are taken; the fault storage keeps one state per file,
/// so the handle is a second name for the same file, not a descriptor with errors of its own.)
struct HostSync {
    targets: VecDeque<(SyncTarget, FaultFile)>,
    covers: usize,
    /// Its two WALs are reported current first.
    out_of_order: bool,
}

/// A flush run apart from the engine: its plan, the copy of the frozen MemTable, and once
/// written, its output (`Some(None)`: nothing to write).
struct PendingFlush {
    plan: FlushPlan,
    mem: MemTable<Vec<u8>>,
    table: Option<Option<flush::TempTable<FaultFile>>>,
    /// How far the runner took the table: synced (`flush::sync_temp`) or made live
    /// (`flush::publish`), as the POSIX flush thread does under `max_bytes` and without.
    state: TableState,
}

/// Who runs the compactions in a run of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The engine, inside the write whose flush calls for one.
    Inline,
    /// The test, through `plan_compaction`, `Execution` and `install_compaction`.
    External,
    /// `Db::maintain`.
    Maintained,
    /// The engine, a step in each write ([`CompactionMode::Stepped`]).
    Stepped,
    /// The test, as for `External`, and the flushes too (`plan_flush`, `write_temp`,
    /// `install_flush`): what the POSIX background threads do.
    Background,
    /// As `External`, with nearly every write a put with a TTL: tables all of whose entries
    /// expire, merged or removed whole once expired (a merge's output only with its inputs).
    ExternalTtl,
    /// As `Background`, with the engine's policy `Manual` and the WAL synced by the test as the
    /// POSIX group commit's leader syncs it: the targets taken in one step, each file synced
    /// and reported in later ones ([`Db::wal_synced`]), with the other steps (writes that
    /// rotate the WAL, flushes that retire it, compactions, crashes, power cuts, faults) in
    /// between; once every report counts, the writes logged when the targets were taken are
    /// durable. A report that does not count makes the engine sync, as the leader does.
    GroupCommit,
}

/// A compaction being run apart from the engine, with its scratch memory.
struct Exec {
    exec: Execution<FaultFile>,
    scratch: Vec<u8>,
    done: bool,
}

/// How a restart failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    RefusedToOpen,
    Model(MismatchKind),
}

const MEM_SIZES: [usize; 5] = [512, 640, 1024, 2048, 4096];

impl Run {
    fn new(seed: u64, policy: SyncPolicy, model: PowerCutModel, trace: bool, mode: Mode) -> Self {
        let mut rng = Rng::new(seed);
        let config = FaultConfig { power_cut: model, ..FaultConfig::default() };
        let storage = FaultStorage::with_config(rng.next_u64(), config);
        storage.set_trace(trace);
        let mem = MEM_SIZES[rng.below(MEM_SIZES.len() as u64) as usize];
        let mut keys: Vec<Vec<u8>> = (0..rng.range(4, 24)).map(|i| format!("k{i:02}").into_bytes()).collect();
        keys.push(vec![b'L'; 120]);
        keys.push([b"bin\x00\xff".as_slice(), &[7; 40]].concat());
        let never_written = vec![b"never".to_vec(), b"k99".to_vec(), vec![b'L'; 121]];
        Run {
            rng,
            storage,
            clock: ManualClock::new(1_000),
            policy,
            mem,
            db: None,
            hist: History::new(),
            keys,
            never_written,
            poisoned: false,
            persistent_fault: false,
            serial: 0,
            recent: VecDeque::new(),
            counts: Counts { seeds: 1, ..Counts::default() },
            broken: None,
            external: matches!(
                mode,
                Mode::External | Mode::Maintained | Mode::Background | Mode::ExternalTtl | Mode::GroupCommit
            ),
            execs: Vec::new(),
            maintained: mode == Mode::Maintained,
            maintenance: None,
            stepped: mode == Mode::Stepped,
            flushes: matches!(mode, Mode::Background | Mode::GroupCommit),
            flush: None,
            ttl_heavy: mode == Mode::ExternalTtl,
            group_commit: mode == Mode::GroupCommit,
            host_sync: None,
            spare: None,
        }
    }

    fn note(&mut self, what: String) {
        if self.recent.len() >= 40 {
            self.recent.pop_front();
        }
        self.recent.push_back(what);
    }

    fn open(&mut self) -> Result<TestDb, DbError> {
        let compaction = if self.stepped {
            CompactionMode::Stepped { budget: 1 + self.rng.below(16) as u32 }
        } else if self.external {
            CompactionMode::External
        } else {
            CompactionMode::Inline
        };
        let scratch = [256, 1024, 4096][self.rng.below(3) as usize];
        let config = Config { compaction, ..Config::with_sync(self.policy) };
        let mut db = Db::open(
            self.storage.clone(),
            self.clock.clone(),
            [vec![0u8; self.mem], vec![0u8; self.mem]],
            config,
        )?;
        if self.stepped {
            self.note(format!("open: {compaction:?}, {scratch} B of scratch"));
            db.set_compaction_scratch(vec![0u8; scratch]);
        }
        self.counts.wals_dropped += db.stats().wals_dropped;
        Ok(db)
    }

    /// One step of the compactions run apart from the engine: plan and start one, advance one by
    /// a few records, or install one that is complete.
    fn compaction_step(&mut self) -> Result<(), String> {
        let mut storage = self.storage.clone();
        match self.rng.below(10) {
            0..=2 => {
                let scratch_len = [256, 1024, 4096, 16384][self.rng.below(4) as usize];
                let force = self.rng.chance(1, 3);
                let db = self.db.as_mut().ok_or("database is not open")?;
                let Some(plan) = db.plan_compaction(scratch_len, force) else { return Ok(()) };
                let inputs = db.compaction_inputs(&plan);
                self.note(format!("plan compaction {plan:?}"));
                let mut scratch = vec![0u8; scratch_len];
                match Execution::start(&mut storage, plan, &inputs, &mut scratch) {
                    Ok(exec) => self.execs.push(Exec { exec, scratch, done: false }),
                    Err(e) => self.compaction_failed(plan, e)?,
                }
            }
            3..=7 => {
                if self.execs.is_empty() {
                    return Ok(());
                }
                let i = self.rng.below(self.execs.len() as u64) as usize;
                let budget = self.rng.range(1, 64) as u32;
                let x = &mut self.execs[i];
                match x.exec.step(&mut storage, &mut x.scratch, budget) {
                    Ok(done) => x.done = done,
                    Err(e) => {
                        let x = self.execs.remove(i);
                        let plan = *x.exec.plan();
                        let _ = x.exec.abandon(&mut storage);
                        self.compaction_failed(plan, e)?;
                    }
                }
            }
            _ => {
                let Some(i) = self.execs.iter().position(|x| x.done) else { return Ok(()) };
                let x = self.execs.remove(i);
                let plan = *x.exec.plan();
                match x.exec.finish(&mut storage) {
                    Ok(Ok(done)) => {
                        let db = self.db.as_mut().ok_or("database is not open")?;
                        match db.install_compaction(done) {
                            Ok(installed) => self.note(format!("install {plan:?}: {installed}")),
                            Err(e) => {
                                if !self.db().is_poisoned() {
                                    return Err(format!(
                                        "install failed with {e:?} but the database takes writes"
                                    ));
                                }
                                self.note(format!("install {plan:?} -> {e:?}"));
                                self.poisoned = true;
                                self.counts.injected_errors += 1;
                            }
                        }
                    }
                    Ok(Err(_)) => return Err("a complete compaction did not finish".into()),
                    Err(e) => {
                        let _ = minivault_core::Storage::remove(&mut storage, &plan.temp_name());
                        self.compaction_failed(plan, e)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One step of the flush run apart from the engine: plan it and copy the frozen MemTable,
    /// write its table, or install it.
    fn flush_step(&mut self) -> Result<(), String> {
        let mut storage = self.storage.clone();
        let mem_len = self.mem;
        let Some(mut pending) = self.flush.take() else {
            let db = self.db.as_mut().ok_or("database is not open")?;
            let Some(plan) = db.plan_flush() else { return Ok(()) };
            let mem = db.copy_immutable(vec![0u8; mem_len]).map_err(|_| "no frozen MemTable to copy")?;
            self.note(format!("plan flush {plan:?}"));
            self.flush = Some(PendingFlush { plan, mem, table: None, state: TableState::Written });
            return Ok(());
        };
        let plan = pending.plan;
        match pending.table.take() {
            None => match flush::write_temp(&mut storage, &plan, &mut pending.mem) {
                Ok(table) => {
                    self.note(format!("flush {plan:?} written"));
                    pending.table = Some(table);
                    self.flush = Some(pending);
                }
                Err(e) => {
                    let _ = minivault_core::Storage::remove(&mut storage, &plan.temp_name());
                    self.note(format!("flush {plan:?} failed: {e:?}"));
                    self.flush_failed(&plan, e)?;
                }
            },
            // Half the time the runner publishes the table itself first, or only syncs it, as the
            // POSIX flush thread does without and under `max_bytes` (a power cut may fall between
            // that and the install).
            Some(Some((mut file, footer)))
                if pending.state == TableState::Written && self.rng.below(2) == 0 =>
            {
                // Which of the two by the table's id: the random stream stays as it was.
                let step = match plan.id % 3 {
                    0 => flush::sync_temp(&mut storage, &mut file).map(|()| (file, TableState::Synced)),
                    _ => flush::publish(&mut storage, &plan, file).map(|file| (file, TableState::Published)),
                };
                match step {
                    Ok((file, state)) => {
                        self.note(format!("flush {plan:?} {state:?}"));
                        pending.table = Some(Some((file, footer)));
                        pending.state = state;
                        match state {
                            TableState::Synced => self.counts.synced_flushes += 1,
                            _ => self.counts.published_flushes += 1,
                        }
                        self.flush = Some(pending);
                    }
                    Err(e) => {
                        let _ = minivault_core::Storage::remove(&mut storage, &plan.temp_name());
                        self.note(format!("flush {plan:?} publish failed: {e:?}"));
                        self.flush_failed(&plan, e)?;
                    }
                }
            }
            Some(table) => {
                let db = self.db();
                let state = pending.state;
                match db.install_flush(Flushed { plan, table, state }) {
                    Ok(()) => {
                        self.note(format!("install flush {plan:?}"));
                        self.counts.installed_flushes += 1;
                    }
                    Err(e) => {
                        if !db.is_poisoned() {
                            return Err(format!(
                                "flush install failed with {e:?} but the database takes writes"
                            ));
                        }
                        self.note(format!("install flush {plan:?} -> {e:?}"));
                        self.poisoned = true;
                        self.counts.injected_errors += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reports a flush that failed apart from the engine, and checks what the engine made of it.
    fn flush_failed(&mut self, plan: &FlushPlan, e: Error<FaultError>) -> Result<(), String> {
        let db = self.db();
        let reported = db.fail_flush(plan, e.clone());
        match (&e, reported) {
            (Error::Full, Ok(()) | Err(Error::Full)) if !db.is_poisoned() => self.counts.full += 1,
            (_, Err(r)) if r == e && db.is_poisoned() => {
                self.poisoned = true;
                self.counts.injected_errors += 1;
            }
            (_, r) => return Err(format!("fail_flush({e:?}) returned {r:?}")),
        }
        Ok(())
    }

    /// One step of a sync made outside the engine ([`Mode::GroupCommit`]): take what a sync
    /// now must cover, or sync the next WAL file of a sync taken before and report it.
    fn host_sync_step(&mut self) -> Result<(), String> {
        let mut storage = self.storage.clone();
        let Some(mut sync) = self.host_sync.take() else {
            if self.poisoned {
                return Ok(());
            }
            let covers = self.hist.logged();
            let db = self.db.as_mut().ok_or("database is not open")?;
            if db.wal_unsynced() == 0 {
                // What the leader concludes: a flush or an earlier sync covered every write.
                self.note("host sync: nothing unsynced".into());
                self.hist.mark_durable_through(covers);
                return Ok(());
            }
            let mut targets = VecDeque::new();
            for target in db.wal_sync_targets().into_iter().flatten() {
                match storage.open(file_name(FileKind::Wal, target.wal).as_str()) {
                    Ok(file) => targets.push_back((target, file)),
                    Err(e) => {
                        // No handle of its own: the POSIX leader syncs through the engine then.
                        self.note(format!("host sync: open of WAL {} -> {e:?}", target.wal));
                        return self.make_durable(false);
                    }
                }
            }
            let out_of_order = targets.len() == 2 && self.rng.chance(1, 2);
            if out_of_order {
                // Not what the POSIX leader does (it reports in order): a test of the core's
                // rule that the current WAL's report must not count while its predecessor
                // waits (the engine syncs instead).
                targets.swap(0, 1);
                self.counts.host_syncs_out_of_order += 1;
            } else if targets.len() == 2 {
                self.counts.host_syncs_of_two_wals += 1;
            }
            self.note(format!(
                "host sync: take {:?} ({covers} writes)",
                targets.iter().map(|t| t.0).collect::<Vec<_>>()
            ));
            self.host_sync = Some(HostSync { targets, covers, out_of_order });
            return Ok(());
        };
        let Some((target, mut file)) = sync.targets.pop_front() else { return Ok(()) };
        let outcome = storage.sync(&mut file);
        self.note(format!("host sync: {target:?} -> {outcome:?}"));
        let db = self.db.as_mut().ok_or("database is not open")?;
        match db.wal_synced(target, outcome) {
            Ok(true) if sync.targets.is_empty() => {
                self.counts.host_syncs += 1;
                self.hist.mark_durable_through(sync.covers);
            }
            Ok(true) => self.host_sync = Some(sync),
            Ok(false) => {
                // Rotated or flushed away meanwhile, or out of order: the leader has the engine
                // sync what is left.
                self.counts.host_syncs_not_counted += 1;
                if !sync.out_of_order {
                    self.counts.host_syncs_not_counted_in_order += 1;
                }
                return self.make_durable(false);
            }
            Err(e) => {
                if !db.is_poisoned() {
                    return Err(format!("a failed sync reported as {e:?} left the database taking writes"));
                }
                self.note(format!("  -> {e:?}"));
                self.poisoned = true;
                self.counts.injected_errors += 1;
            }
        }
        Ok(())
    }

    /// `Db::maintain` with a small budget, its scratch memory chosen once per process.
    fn maintain_step(&mut self) -> Result<(), String> {
        let budget = self.rng.range(1, 16) as u32;
        if self.maintenance.is_none() {
            let scratch_len = [256, 1024, 4096][self.rng.below(3) as usize];
            self.maintenance = Some(Maintenance::new(vec![0u8; scratch_len]));
        }
        let (Some(db), Some(m)) = (self.db.as_mut(), self.maintenance.as_mut()) else {
            return Err("database is not open".into());
        };
        let before = db.stats().compactions;
        let result = db.maintain(m, budget);
        self.counts.maintained_compactions += db.stats().compactions - before;
        let poisoned = db.is_poisoned();
        let running = m.running().copied();
        self.note(format!("maintain({budget}) -> {result:?}, running {running:?}"));
        match result {
            Ok(_) => Ok(()),
            Err(e) if poisoned => {
                self.note(format!("  maintain -> {e:?}"));
                self.poisoned = true;
                self.counts.injected_errors += 1;
                Ok(())
            }
            Err(e) => Err(format!("maintain failed with {e:?} but the database takes writes")),
        }
    }

    /// One step of a spare WAL for the next rotation: with `flushes`, as the POSIX flush thread
    /// makes one (plan it, make its file, or hand it back: other steps, rotations among them,
    /// and power cuts fall between), else inline (`Db::prepare_spare_wal`).
    fn spare_step(&mut self) -> Result<(), String> {
        let mut storage = self.storage.clone();
        let apart = self.flushes;
        let db = self.db.as_mut().ok_or("database is not open")?;
        let outcome = match self.spare.take() {
            None if !apart => {
                let made = db.prepare_spare_wal();
                self.counts.spares_prepared += u64::from(made == Ok(true));
                made.map(|made| format!("spare prepared inline: {made}"))
            }
            None => {
                let planned = db.plan_spare_wal();
                self.spare = planned.map(|spare| (spare, 0));
                Ok(format!("plan spare {planned:?}"))
            }
            Some((spare, 1)) => match minivault_core::Storage::sync_dir(&mut storage) {
                Ok(()) => {
                    self.spare = Some((spare, 2));
                    Ok(format!("spare {}: directory synced", spare.id))
                }
                Err(e) => {
                    let _ =
                        minivault_core::Storage::remove(&mut storage, &file_name(FileKind::Wal, spare.id));
                    let e = Error::Storage(e);
                    match db.fail_spare_wal(&spare, e.clone()) {
                        Err(r) if r == e && db.is_poisoned() => Err(r),
                        r => return Err(format!("fail_spare_wal({e:?}) returned {r:?}")),
                    }
                }
            },
            Some((spare, 0)) => match wal::spare::create(&mut storage, &spare) {
                Ok(()) => {
                    self.spare = Some((spare, 1));
                    Ok(format!("spare {} made", spare.id))
                }
                Err(e) => {
                    let failed = db.fail_spare_wal(&spare, e.clone());
                    self.note(format!("spare {} failed: {e:?}", spare.id));
                    let db = self.db();
                    match failed {
                        Ok(()) if e == Error::Full => {
                            self.counts.full += 1;
                            return Ok(());
                        }
                        Err(r) if r == e && db.is_poisoned() => Err(r),
                        r => return Err(format!("fail_spare_wal({e:?}) returned {r:?}")),
                    }
                }
            },
            Some((spare, _)) => {
                let kept = db.install_spare_wal(spare);
                self.counts.spares_prepared += u64::from(kept);
                self.counts.spares_stale += u64::from(!kept);
                Ok(format!("install spare {}: kept {kept}", spare.id))
            }
        };
        match outcome {
            Ok(what) => {
                self.note(what);
                Ok(())
            }
            Err(e) => self.poisoned_by("a spare WAL step", &e),
        }
    }

    /// A step of `what` failed with `e`, which must have poisoned the database (it refuses
    /// writes until reopened, as after any failed change); counted as an injected error hit.
    fn poisoned_by(&mut self, what: &str, e: &DbError) -> Result<(), String> {
        if !self.db().is_poisoned() {
            return Err(format!("{what} failed with {e:?} but the database still takes writes"));
        }
        self.note(format!("  {what} -> {e:?}"));
        self.poisoned = true;
        self.counts.injected_errors += 1;
        Ok(())
    }

    /// A compaction run apart from the engine failed with `e`: report it, as its runner must.
    fn compaction_failed(&mut self, plan: Plan, e: DbError) -> Result<(), String> {
        self.note(format!("compaction {plan:?} failed: {e:?}"));
        let db = self.db();
        let reported = db.fail_compaction(&plan, e.clone());
        match (&e, reported) {
            (Error::Full, Ok(())) => self.counts.full += 1,
            (_, Err(r)) if r == e && db.is_poisoned() => {
                self.poisoned = true;
                self.counts.injected_errors += 1;
            }
            (_, r) => return Err(format!("fail_compaction({e:?}) returned {r:?}")),
        }
        Ok(())
    }

    fn db(&mut self) -> &mut TestDb {
        self.db.as_mut().expect("database is open")
    }

    /// The largest value the engine must accept for `key` with this header length.
    fn max_value(&mut self, header: usize, key: &[u8]) -> usize {
        let cap = self.db().stats().memtable_capacity_bytes;
        (cap - 4).saturating_sub(header + key.len())
    }

    fn random_key(&mut self) -> Vec<u8> {
        let i = self.rng.below(self.keys.len() as u64) as usize;
        self.keys[i].clone()
    }

    /// A value: empty, or starting with a 4-byte serial number so that no two puts store equal
    /// non-empty values. (The model compares what reads show; two puts of one value with different
    /// expiries would look alike until one expires, and the model could not tell which survived.)
    fn random_value(&mut self) -> Vec<u8> {
        let len = match self.rng.below(20) {
            0 => 0,
            1..=12 => self.rng.range(4, 16),
            13..=17 => self.rng.range(16, 120),
            _ => self.rng.range(120, self.mem as u64),
        } as usize;
        self.serial += 1;
        let serial = (self.serial as u32).to_le_bytes();
        let tag = self.rng.next_u64() as u8;
        (0..len).map(|i| serial.get(i).copied().unwrap_or(tag.wrapping_add(i as u8))).collect()
    }

    /// A range delete between two of the run's keys (at least one key wide).
    fn random_range_delete(&mut self) -> ModelOp {
        let (a, mut b) = (self.random_key(), self.random_key());
        if a == b {
            b.push(0);
        }
        let (start, end) = if a < b { (a, b) } else { (b, a) };
        ModelOp::DeleteRange { start, end }
    }

    /// Reads every key the run uses, as a restarted database shows them.
    fn read_all(&mut self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
        let (keys, never) = (self.keys.clone(), self.never_written.clone());
        let never: Vec<&[u8]> = never.iter().map(Vec::as_slice).collect();
        read_keys(self.db(), &keys, &never)
    }

    /// Drops the engine (a process crash, or after a clean close), optionally cuts the power,
    /// reopens and checks the recovered contents against the model.
    fn restart(&mut self, power_cut: bool) -> Result<(), String> {
        if let Some(db) = &self.db {
            self.counts.expired_tables += db.stats().expired_tables;
            self.counts.spares_taken += db.stats().spare_wals_taken;
        }
        drop(self.db.take());
        // Compactions running apart from the engine die with the process; their `.tmp` files
        // stay for open to remove.
        self.execs.clear();
        self.maintenance = None;
        self.flush = None;
        // And a spare being prepared (its file, if made, is set aside by open).
        self.spare = None;
        // So does a sync the leader had not reported (its writers got no answer).
        self.host_sync = None;
        if self.persistent_fault {
            self.storage.clear_faults();
            self.persistent_fault = false;
        }
        let mut power_cut = power_cut;
        if power_cut {
            self.storage.power_cut(&mut self.rng);
            self.counts.power_cuts += 1;
        }
        let mut attempt = 0;
        let db = loop {
            match self.open() {
                Ok(db) => break db,
                Err(Error::Storage(FaultError::Injected { .. } | FaultError::NoSpace) | Error::Full)
                    if attempt < 3 =>
                {
                    // The open itself met a fault: it must fail cleanly, and a later open succeed.
                    self.counts.failed_opens += 1;
                    self.storage.clear_faults();
                    self.storage.set_capacity(None);
                    if self.rng.chance(1, 2) {
                        self.storage.power_cut(&mut self.rng);
                        self.counts.power_cuts += 1;
                        power_cut = true;
                    }
                    self.note(format!("open failed (attempt {attempt}), retrying (power_cut={power_cut})"));
                    attempt += 1;
                }
                Err(e) => {
                    self.broken = Some(Broken::RefusedToOpen);
                    return Err(format!("database does not open: {e:?}"));
                }
            }
        };
        self.storage.clear_faults();
        self.storage.set_capacity(None);
        self.db = Some(db);
        self.poisoned = false;
        let recovered = self.read_all()?;
        let now = self.clock.get();
        self.hist.check_recovered(&recovered, now, power_cut).map_err(|m: Mismatch| {
            self.broken = Some(Broken::Model(m.kind));
            m.message
        })
    }

    fn write(&mut self, op: ModelOp) -> Result<(), String> {
        self.note(describe(&op));
        // For a single write: its value length and the largest value the engine must accept.
        let limit = match &op {
            ModelOp::Put { key, value, expires_at } => {
                Some((value.len(), self.max_value(if expires_at.is_some() { 11 } else { 3 }, key)))
            }
            ModelOp::Delete { key } => Some((0, self.max_value(3, key))),
            ModelOp::DeleteRange { .. } | ModelOp::Batch(_) => None,
        };
        let db = self.db.as_mut().ok_or("database is not open")?;
        let before = db.stats().compactions;
        let result = op.write_to(db, 16 * 1024)?;
        if self.stepped {
            self.counts.maintained_compactions += db.stats().compactions - before;
        }
        match result {
            Ok(()) => {
                if self.poisoned {
                    return Err("a write succeeded on a poisoned database".into());
                }
                if let Some((len, max)) = limit.filter(|(len, max)| len > max) {
                    return Err(format!("value of {len} bytes accepted, limit {max}"));
                }
                self.counts.acked_writes += op.writes() as u64;
                self.hist.ack(op);
                match self.policy {
                    SyncPolicy::EveryWrite => self.hist.mark_durable(),
                    SyncPolicy::EveryN(n) => self.hist.mark_durable_but_last(n as usize - 1),
                    SyncPolicy::Manual => {}
                }
                Ok(())
            }
            Err(Error::Poisoned) if self.poisoned => Ok(()),
            Err(Error::ValueTooLarge { len, max: m })
                if limit.is_some_and(|(_, max)| len > m && m == max.min(minivault_core::MAX_VALUE_LEN)) =>
            {
                Ok(())
            }
            Err(Error::BatchTooLarge { len, max }) if matches!(op, ModelOp::Batch(_)) && len > max => Ok(()),
            // Both MemTables busy while a flush runs apart: refused before its WAL record.
            Err(Error::FlushPending) if self.flush.is_some() && !self.db().is_poisoned() => {
                self.note("  -> FlushPending (not stored)".into());
                self.counts.flush_pending += 1;
                Ok(())
            }
            // Out of space where nothing was left behind: not stored (so not in flight: it must be
            // absent after any crash), and not poisoning.
            Err(Error::Full) if !self.db().is_poisoned() => {
                self.note("  -> Full (not stored)".into());
                self.counts.full += 1;
                Ok(())
            }
            Err(e @ (Error::Storage(_) | Error::TooManyTables | Error::TooManyWals)) => {
                if !self.db().is_poisoned() {
                    return Err(format!("write failed with {e:?} but the database still takes writes"));
                }
                self.note(format!("  -> {e:?} (in flight)"));
                self.hist.set_inflight(op);
                self.poisoned = true;
                self.counts.injected_errors += 1;
                Ok(())
            }
            Err(e) => Err(format!("unexpected error {e:?} (poisoned={})", self.poisoned)),
        }
    }

    /// `flush` or `sync`: on success every write so far is durable.
    fn make_durable(&mut self, flush: bool) -> Result<(), String> {
        self.note(if flush { "flush" } else { "sync" }.into());
        let db = self.db();
        let result = if flush { db.flush() } else { db.sync() };
        match result {
            Ok(()) if self.poisoned => Err("flush/sync succeeded on a poisoned database".into()),
            Ok(()) => {
                self.hist.mark_durable();
                Ok(())
            }
            Err(Error::Poisoned) if self.poisoned => Ok(()),
            Err(Error::FlushPending) if flush && self.flush.is_some() && !self.db().is_poisoned() => {
                self.note("  -> FlushPending".into());
                Ok(())
            }
            Err(Error::Full) if !self.db().is_poisoned() => {
                self.note("  -> Full".into());
                self.counts.full += 1;
                Ok(())
            }
            Err(e @ (Error::Storage(_) | Error::TooManyTables | Error::TooManyWals)) => {
                self.poisoned_by("flush/sync", &e)
            }
            Err(e) => Err(format!("unexpected error {e:?}")),
        }
    }

    fn live_get(&mut self) -> Result<(), String> {
        let key = self.random_key();
        let want = visible(&self.hist.current(), self.clock.get()).get(&key).cloned();
        let mut buf = vec![0u8; 8192];
        match self.db().get(&key, &mut buf) {
            Ok(got) if got.map(<[u8]>::to_vec) == want => Ok(()),
            Ok(got) => Err(format!(
                "live get {}: expected {:?}, got {:?}",
                show(&key),
                want.as_deref().map(show),
                got.map(show)
            )),
            // A fault that fires during a read fails the read cleanly.
            Err(Error::Storage(FaultError::Injected { .. } | FaultError::NoSpace)) => Ok(()),
            Err(e) => Err(format!("live get {}: {e:?}", show(&key))),
        }
    }

    fn hostile(&mut self) -> Result<(), String> {
        let now = self.clock.get();
        let poisoned = self.poisoned;
        let db = self.db();
        let checks: [(&str, Result<(), DbError>, DbError); 4] = [
            ("empty key", db.put(b"", b"v"), Error::EmptyKey),
            (
                "key too large",
                db.put(&vec![b'x'; MAX_KEY_LEN + 1], b"v"),
                Error::KeyTooLarge { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN },
            ),
            ("expiry now", db.put_expiring(b"k00", b"v", now), Error::InvalidTtl),
            ("expiry past", db.put_expiring(b"k00", b"v", now.saturating_sub(1)), Error::InvalidTtl),
        ];
        for (what, got, want) in checks {
            let ok = match &got {
                Err(e) => *e == want || (poisoned && *e == Error::Poisoned),
                Ok(()) => false,
            };
            if !ok {
                return Err(format!("{what}: expected {want:?}, got {got:?}"));
            }
        }
        Ok(())
    }

    /// A put of a random key with a TTL of 1 to 119 from `now`.
    fn put_with_ttl(&mut self, now: u64) -> Result<(), String> {
        let key = self.random_key();
        let mut value = self.random_value();
        if value.is_empty() {
            // Empty values never expire (see random_value).
            value = self.random_value();
            value.resize(value.len().max(4), 0);
            value[..4].copy_from_slice(&(self.serial as u32).to_le_bytes());
        }
        let expires_at = Some(now + self.rng.range(1, 120));
        self.write(ModelOp::Put { key, value, expires_at })
    }

    fn step(&mut self) -> Result<(), String> {
        self.counts.steps += 1;
        if self.maintained && self.rng.chance(1, 2) {
            return self.maintain_step();
        }
        if self.flushes && self.rng.chance(1, 4) {
            return self.flush_step();
        }
        if self.group_commit && self.rng.chance(1, 4) {
            return self.host_sync_step();
        }
        if self.rng.chance(1, 10) {
            return self.spare_step();
        }
        if self.external && self.rng.chance(1, 3) {
            return self.compaction_step();
        }
        let now = self.clock.get();
        match self.rng.below(100) {
            0..=1 => {
                let op = self.random_range_delete();
                self.write(op)
            }
            // Most: so that merges of older plain values with newer ones that expire make
            // outputs all of whose entries expire.
            2..=30 | 35..=51 if self.ttl_heavy && self.rng.chance(5, 6) => self.put_with_ttl(now),
            2..=30 => {
                let (key, value) = (self.random_key(), self.random_value());
                self.write(ModelOp::Put { key, value, expires_at: None })
            }
            31..=34 => {
                let mut ops = Vec::new();
                for _ in 0..self.rng.range(1, 6) {
                    let key = self.random_key();
                    ops.push(match self.rng.below(5) {
                        4 => self.random_range_delete(),
                        0 => ModelOp::Delete { key },
                        1 => {
                            let mut value = self.random_value();
                            value.resize(value.len().max(4), 0);
                            value[..4].copy_from_slice(&(self.serial as u32).to_le_bytes());
                            ModelOp::Put { key, value, expires_at: Some(now + self.rng.range(1, 120)) }
                        }
                        _ => ModelOp::Put { key, value: self.random_value(), expires_at: None },
                    });
                }
                self.write(ModelOp::Batch(ops))
            }
            35..=44 => {
                let key = self.random_key();
                self.write(ModelOp::Delete { key })
            }
            45..=51 => self.put_with_ttl(now),
            52..=55 => {
                let by = self.rng.range(0, 60);
                self.note(format!("clock +{by}"));
                self.clock.advance(by);
                Ok(())
            }
            56..=65 => self.live_get(),
            66..=68 => self.make_durable(true),
            69..=72 => self.make_durable(false),
            73..=74 => {
                self.note("close + reopen".into());
                self.counts.clean_reopens += 1;
                let db = self.db.take().expect("open");
                match db.close() {
                    (_, Ok(())) if !self.poisoned => self.hist.mark_durable(),
                    (_, Ok(())) => {}
                    (_, Err(e)) => {
                        self.note(format!("  close -> {e:?}"));
                        self.poisoned = true;
                        return self.restart(true);
                    }
                }
                self.restart(false)
            }
            75..=77 => {
                self.note("crash + reopen".into());
                self.counts.crashes += 1;
                self.restart(false)
            }
            78..=85 => {
                self.note("power cut + reopen".into());
                self.restart(true)
            }
            86..=90 => {
                if !self.storage.fault_pending() {
                    let n = self.rng.range(1, 40);
                    let kind = if self.rng.chance(1, 4) { FaultKind::NoSpace } else { FaultKind::Io };
                    let persistent = self.rng.chance(1, 8);
                    self.note(format!("fault in {n} calls: {kind:?} persistent={persistent}"));
                    self.persistent_fault |= persistent;
                    self.storage.fail_in(n, kind, persistent);
                }
                Ok(())
            }
            91 => {
                let room = self.rng.range(0, 3000) as usize;
                self.note(format!("disk nearly full: {room} bytes left"));
                let used: usize = self
                    .storage
                    .names()
                    .iter()
                    .filter_map(|n| self.storage.read_file(n))
                    .map(|d| d.len())
                    .sum();
                self.storage.set_capacity(Some(used + room));
                Ok(())
            }
            92..=93 => self.hostile(),
            _ => {
                if self.poisoned {
                    // A poisoned database refuses writes until it is reopened; reopen it.
                    let cut = self.rng.chance(1, 2);
                    self.note(format!("restart poisoned db (power_cut={cut})"));
                    self.restart(cut)
                } else {
                    let key = self.random_key();
                    let value = self.random_value();
                    self.write(ModelOp::Put { key, value, expires_at: None })
                }
            }
        }
    }

    fn run(&mut self, steps: u64) -> Result<(), String> {
        let db = self.open().map_err(|e| format!("fresh open: {e:?}"))?;
        self.db = Some(db);
        for _ in 0..steps {
            self.step()?;
        }
        // Always end with a power cut and a check.
        self.note("final power cut".into());
        self.restart(true)
    }
}

fn describe(op: &ModelOp) -> String {
    match op {
        ModelOp::Put { key, value, expires_at } => {
            format!("put {} = {} ({} B) expires {expires_at:?}", show(key), show(value), value.len())
        }
        ModelOp::Delete { key } => format!("delete {}", show(key)),
        ModelOp::DeleteRange { start, end } => format!("delete_range {}..{}", show(start), show(end)),
        ModelOp::Batch(ops) => format!("batch [{}]", ops.iter().map(describe).collect::<Vec<_>>().join("; ")),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `default_seeds` seeds (or a soak, or one seed) of `policy` under the power-cut `model`;
/// panics with the failing seeds and how to reproduce them. A soak counts every failing seed
/// (by kind, in the summary line) instead of stopping after five.
fn run_model(test: &str, policy: SyncPolicy, model: PowerCutModel, default_seeds: u64, salt: u64) {
    run_model_with(test, policy, model, default_seeds, salt, Mode::Inline)
}

/// [`run_model`], with compactions run as `mode` says.
fn run_model_with(
    test: &str,
    policy: SyncPolicy,
    model: PowerCutModel,
    default_seeds: u64,
    salt: u64,
    mode: Mode,
) {
    let single = env_u64("MINIVAULT_SEED");
    let soak = env_u64("MINIVAULT_SOAK").map(Duration::from_secs);
    let start = Instant::now();
    let first = match (single, soak) {
        (Some(s), _) => s,
        (None, Some(_)) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                & 0xFFFF_FFFF
        }
        (None, None) => 0,
    };
    let count = env_u64("MINIVAULT_SEEDS").unwrap_or(default_seeds);
    let mut totals = Counts::default();
    let mut failures = Vec::new();
    let mut seed = first;
    loop {
        let done = match (single, soak) {
            (Some(_), _) => seed > first,
            (None, Some(d)) => start.elapsed() >= d,
            (None, None) => seed >= first + count,
        };
        if done || (failures.len() >= 5 && soak.is_none()) {
            break;
        }
        let mut run = Run::new(seed ^ salt, policy, model, single.is_some(), mode);
        let mut steps = 80 + run.rng.below(220);
        if mode == Mode::Maintained {
            // Long enough for tiers of eight tables to fill and be merged.
            steps *= 5;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| run.run(steps)));
        if let Some(db) = &run.db {
            run.counts.expired_tables += db.stats().expired_tables;
        }
        let fs = run.storage.stats();
        run.counts.torn_files += fs.torn_files;
        run.counts.scattered_files += fs.scattered_files;
        run.counts.holes += fs.holes;
        run.counts.dir_ops_dropped += fs.dir_ops_dropped;
        run.counts.storage_calls += fs.calls;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(msg)) => Some(msg),
            Err(panic) => {
                run.broken = None;
                Some(format!(
                    "panic: {}",
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                ))
            }
        };
        if failure.is_some() {
            match run.broken {
                Some(Broken::RefusedToOpen) => run.counts.refusals += 1,
                Some(Broken::Model(MismatchKind::LostDurable)) => run.counts.lost_durable += 1,
                Some(Broken::Model(MismatchKind::NotAPrefix)) => run.counts.not_prefix += 1,
                None => run.counts.other_failures += 1,
            }
        }
        totals.add(&run.counts);
        if let Some(msg) = failure {
            if failures.len() < 5 {
                let recent: Vec<String> = run.recent.iter().cloned().collect();
                let mut report = format!(
                    "{test}: seed {seed} FAILED ({policy:?}, {model:?} model, memtable {} B)\n{msg}\nlast steps:\n  {}\nreproduce: MINIVAULT_SEED={seed} cargo test --test model_power_cut {test} -- --include-ignored --nocapture",
                    run.mem,
                    recent.join("\n  ")
                );
                if single.is_some() {
                    report.push_str("\nstorage trace (last calls):\n  ");
                    let trace = run.storage.trace();
                    report.push_str(&trace[trace.len().saturating_sub(400)..].join("\n  "));
                }
                eprintln!("{report}\n");
            }
            failures.push(seed);
        }
        seed += 1;
    }
    eprintln!(
        "{test} ({policy:?}, {model:?} model): {} seeds, {} steps, {} acknowledged writes, {} power cuts, {} crashes, {} clean reopens, {} injected errors hit, {} refused with Full, {} failed opens retried, {} torn files, {} scattered files ({} with a hole), {} directory ops dropped, {} storage calls, {} WALs dropped after a torn predecessor, {:.1} s",
        totals.seeds,
        totals.steps,
        totals.acked_writes,
        totals.power_cuts,
        totals.crashes,
        totals.clean_reopens,
        totals.injected_errors,
        totals.full,
        totals.failed_opens,
        totals.torn_files,
        totals.scattered_files,
        totals.holes,
        totals.dir_ops_dropped,
        totals.storage_calls,
        totals.wals_dropped,
        start.elapsed().as_secs_f64()
    );
    eprintln!(
        "{test} ({policy:?}, {model:?} model): failing seeds: {} refusals to open, {} writes lost that the mode promised, {} states not a prefix, {} other failures, in {} power cuts",
        totals.refusals,
        totals.lost_durable,
        totals.not_prefix,
        totals.other_failures,
        totals.power_cuts
    );
    // A rotation leaves the old WAL to the next sync: in the relaxed policies some power cuts
    // must tear such a WAL and make open drop the WALs after it; with every write synced, none.
    if policy == SyncPolicy::EveryWrite {
        assert_eq!(totals.wals_dropped, 0, "{test}: a WAL dropped although every write was synced");
    } else if totals.seeds >= 100 {
        // (Not for one seed replayed on its own.)
        assert!(totals.wals_dropped > 0, "{test}: no power cut tore a WAL a rotation left unsynced");
    }
    eprintln!(
        "{test}: {} spare WALs prepared ahead, {} taken by a rotation, {} handed back after a rotation went on without them",
        totals.spares_prepared, totals.spares_taken, totals.spares_stale
    );
    if totals.seeds >= 100 {
        assert!(totals.spares_taken * 16 > totals.seeds, "too few rotations took a spare WAL");
    }
    if mode == Mode::Background {
        eprintln!(
            "{test}: {} flushes installed apart from the engine ({} made live by the runner first, {} synced by it first), {} writes refused with FlushPending",
            totals.installed_flushes, totals.published_flushes, totals.synced_flushes, totals.flush_pending
        );
        // About one per seed: the exact count follows the random stream, which the policy's
        // choice of compactions shifts (1,023 for 1,000 seeds before tables that overlap nothing
        // were kept, 995 after).
        assert!(totals.installed_flushes * 5 > totals.seeds * 4, "too few flushes ran apart");
        assert!(totals.published_flushes * 4 > totals.installed_flushes, "too few tables published apart");
        assert!(totals.synced_flushes * 8 > totals.installed_flushes, "too few tables synced apart");
        assert!(totals.flush_pending > 0, "no write met a running flush");
    }
    if mode == Mode::GroupCommit {
        eprintln!(
            "{test}: {} syncs made outside the engine whose reports all counted, {} of two WALs in order, {} out of order; {} reports that did not count ({} of them in order)",
            totals.host_syncs,
            totals.host_syncs_of_two_wals,
            totals.host_syncs_out_of_order,
            totals.host_syncs_not_counted,
            totals.host_syncs_not_counted_in_order
        );
        assert!(totals.host_syncs > totals.seeds, "too few syncs made outside the engine");
        assert!(totals.host_syncs_of_two_wals > 0, "no sync in order of a rotation's two WALs");
        assert!(
            totals.host_syncs_not_counted_in_order > 0,
            "no report in order met a WAL rotated or retired meanwhile"
        );
    }
    if mode == Mode::ExternalTtl {
        eprintln!("{test}: {} tables removed whole once expired", totals.expired_tables);
        assert!(totals.expired_tables > totals.seeds / 10, "too few tables expired whole");
    }
    if mode == Mode::Maintained || mode == Mode::Stepped {
        eprintln!(
            "{test}: {} compactions completed by Db::maintain or writes",
            totals.maintained_compactions
        );
        // Stepped: runs are short and a compaction lost to a crash starts again at a later flush.
        let least = if mode == Mode::Maintained { totals.seeds } else { 10 };
        assert!(totals.maintained_compactions > least, "maintain or the writes compacted too little");
    }
    let shown: Vec<u64> = failures.iter().copied().take(20).collect();
    assert!(
        failures.is_empty(),
        "{test}: {} failing seeds, first {shown:?} (see stderr above)",
        failures.len()
    );
}

#[test]
fn every_write_policy_loses_no_acknowledged_write() {
    run_model(
        "every_write_policy_loses_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        1000,
        0,
    );
}

#[test]
fn every_n_policy_loses_at_most_n_minus_one_writes() {
    run_model(
        "every_n_policy_loses_at_most_n_minus_one_writes",
        SyncPolicy::EveryN(4),
        PowerCutModel::Narrow,
        750,
        0x4E4E,
    );
}

#[test]
fn manual_policy_keeps_everything_before_the_last_sync() {
    run_model(
        "manual_policy_keeps_everything_before_the_last_sync",
        SyncPolicy::Manual,
        PowerCutModel::Narrow,
        750,
        0x3A3A,
    );
}

/// The wide model in `EveryN(4)`: unsynced sectors and pages of the last three writes come back
/// in any subset. Failed on the engine before the WAL watermark fix of issue 15 (commit 2a02bc2:
/// the database refused to open after cuts that left a hole in the unsynced tail; 5 of the first
/// 195 seeds); passes with it.
#[test]
fn every_n_policy_survives_unsynced_writes_reaching_the_disk_out_of_order() {
    run_model(
        "every_n_policy_survives_unsynced_writes_reaching_the_disk_out_of_order",
        SyncPolicy::EveryN(4),
        PowerCutModel::Wide,
        750,
        0x4E4E_5749,
    );
}

/// The wide model in `Manual`: everything written since the last sync comes back as any subset
/// of its sectors or pages. Failed before the WAL watermark fix of issue 15 like the test above
/// (5 of the first 42 seeds). With it, seed 158 failed for a while longer: recovery rotated to a
/// new WAL before it synced the WAL it adopted (`model_regressions::
/// power_cut_after_a_failed_open_leaves_the_adopted_wal_openable` holds that case); it passes.
#[test]
fn manual_policy_survives_unsynced_writes_reaching_the_disk_out_of_order() {
    run_model(
        "manual_policy_survives_unsynced_writes_reaching_the_disk_out_of_order",
        SyncPolicy::Manual,
        PowerCutModel::Wide,
        750,
        0x3A3A_5749,
    );
}

/// Compactions planned, run in steps and installed apart from the engine
/// ([`CompactionMode::External`], what the POSIX background threads do), interleaved with
/// every other step: writes and flushes add tables while a merge runs, power cuts and crashes
/// come between any two steps of it (its `.tmp` left for open), faults and a full disk hit its
/// storage calls too (a failure poisons as a failed write does; out of space only skips it).
/// The recovered contents are checked against the model after every restart, as above.
#[test]
fn external_compactions_interleaved_with_writes_lose_no_acknowledged_write() {
    run_model_with(
        "external_compactions_interleaved_with_writes_lose_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        1000,
        0xBAC6,
        Mode::External,
    );
}

/// The same with nearly every write a put with a TTL, so that tables all of whose entries
/// expire are kept, merged, and removed whole once expired (power cuts and crashes between and
/// inside every step, a merge's output removed only with the inputs it replaced): no
/// acknowledged write lost, no overwritten or expired value back.
#[test]
fn tables_removed_whole_once_expired_lose_no_acknowledged_write() {
    run_model_with(
        "tables_removed_whole_once_expired_lose_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        500,
        0x7713,
        Mode::ExternalTtl,
    );
}

/// The WAL synced outside the engine, as the POSIX group commit's leader syncs it
/// ([`Mode::GroupCommit`]): the writes acknowledged before a sync's targets were taken must
/// survive every power cut once its reports count, though other writes, rotations, flushes
/// that retire the WAL and compactions came between the targets and the sync. Half the syncs
/// of two WALs are reported out of order; with the engine's rule that such a report does not
/// count removed, seeds 1856 and 2734 fail (states not a prefix), hence 3,000 seeds.
#[test]
fn group_commit_syncs_outside_the_engine_lose_no_acknowledged_write() {
    run_model_with(
        "group_commit_syncs_outside_the_engine_lose_no_acknowledged_write",
        SyncPolicy::Manual,
        PowerCutModel::Wide,
        3000,
        0x6C6F_5550,
        Mode::GroupCommit,
    );
}

/// The same in `EveryN(4)` with the narrow model.
#[test]
fn external_compactions_in_every_n_lose_at_most_n_minus_one_writes() {
    run_model_with(
        "external_compactions_in_every_n_lose_at_most_n_minus_one_writes",
        SyncPolicy::EveryN(4),
        PowerCutModel::Narrow,
        500,
        0xBAC6_4E4E,
        Mode::External,
    );
}

/// Flushes and compactions run apart from the engine (what the POSIX flush and compaction
/// threads do), each split into its steps (plan and copy, write the `.tmp`, install) and
/// interleaved with writes that are refused with `FlushPending` while a flush runs, with power
/// cuts, crashes, faults and a full disk between and inside them: no acknowledged write lost.
#[test]
fn background_flushes_and_compactions_lose_no_acknowledged_write() {
    run_model_with(
        "background_flushes_and_compactions_lose_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        1000,
        0xF1A5,
        Mode::Background,
    );
}

/// The same in `EveryN(4)` with the narrow model.
#[test]
fn background_flushes_in_every_n_lose_at_most_n_minus_one_writes() {
    run_model_with(
        "background_flushes_in_every_n_lose_at_most_n_minus_one_writes",
        SyncPolicy::EveryN(4),
        PowerCutModel::Narrow,
        500,
        0xF1A5_4E4E,
        Mode::Background,
    );
}

/// Compactions advanced only by `Db::maintain` in budgets of 1 to 15 records between the other
/// steps (a microcontroller's main loop), with power cuts, crashes, faults and a full disk
/// between and inside them: a failed step poisons the database as a failed write does, and the
/// recovered contents match the model after every restart.
#[test]
fn maintained_compactions_lose_no_acknowledged_write() {
    run_model_with(
        "maintained_compactions_lose_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        400,
        0x3A17,
        Mode::Maintained,
    );
}

/// Compactions in steps inside the writes ([`CompactionMode::Stepped`], budgets of 1 to 16
/// units, 256 B to 4 KiB of scratch), with power cuts, crashes, faults and a full disk between
/// and inside the steps (a stepped compaction's `.tmp` is left for open): a failed step poisons
/// the database as a failed write does, and the recovered contents match the model after every
/// restart.
#[test]
fn stepped_compactions_lose_no_acknowledged_write() {
    run_model_with(
        "stepped_compactions_lose_no_acknowledged_write",
        SyncPolicy::EveryWrite,
        PowerCutModel::Wide,
        400,
        0x57E9,
        Mode::Stepped,
    );
}

/// The same in `EveryN(4)` with the narrow model.
#[test]
fn stepped_compactions_in_every_n_lose_at_most_n_minus_one_writes() {
    run_model_with(
        "stepped_compactions_in_every_n_lose_at_most_n_minus_one_writes",
        SyncPolicy::EveryN(4),
        PowerCutModel::Narrow,
        300,
        0x57E9_4E4E,
        Mode::Stepped,
    );
}
