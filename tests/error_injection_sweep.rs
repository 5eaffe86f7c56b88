//! Error injection at every storage call of a representative workload (the "sweep of N" of
//! esp-nvs and littlefs).
//!
//! The workload (puts, deletes, overwrites, TTL puts, rotations and flushes with 512-byte
//! MemTables, compactions, a clean close, a crash, a torn WAL tail, a leftover `.tmp`, reopens)
//! is first run without faults to count its storage calls, T. Then, for every N in 1..=T, it is
//! run again on a fresh device whose call N fails (with EIO, and again with ENOSPC). Checked:
//! - the call that met the error returns an error (an operation that returns `Ok` although its
//!   storage call failed must not exist: no failed sync is retried into a success);
//! - after a failed write, flush or sync the database refuses writes with `Error::Poisoned`
//!   until reopened, and reads still answer from the acknowledged state;
//! - except when the failure was ENOSPC where nothing depends on the failed call: the write
//!   fails with `Error::Full`, nothing of it is stored (it is not in flight: it must be absent
//!   live and after every reopen), the database is not poisoned and the workload goes on with
//!   it; a compaction that met ENOSPC is skipped (counted in `Stats`) and the write that ran it
//!   succeeds; an open that meets it skips that compaction, or the flush of the replayed WALs,
//!   and succeeds;
//! - at the failure point, the device as it is (process crash), after a random power cut, and
//!   after a power cut that loses everything unsynced, each reopens and holds every acknowledged
//!   write (the failed write all or nothing), and nothing else;
//! - the workload then goes on (reopening when it says so) and the final state checks out too.
//!
//! `MINIVAULT_SOAK=<seconds>` repeats the sweep with other seeds (other power-cut choices and
//! partial failures) until the time is up.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minivault_core::{Error, SyncPolicy};
use minivault_suite::fault::{
    visible, Call, FaultError, FaultKind, FaultStorage, History, ManualClock, ModelOp, Rng,
};

use common::{open_core, read_keys, FaultDb as TestDb};

/// 3 KiB MemTables: small enough to rotate often, the smallest that compacts.
const MEM: usize = 3072;

#[derive(Default, Debug, Clone, Copy)]
struct Figures {
    runs: u64,
    injected: u64,
    recoveries_checked: u64,
    power_cuts: u64,
    flushes: u64,
    compactions: u64,
    /// Writes and flushes that failed with `Error::Full` (nothing stored, not poisoned).
    full: u64,
}

struct Sweep {
    storage: FaultStorage,
    clock: ManualClock,
    db: Option<TestDb>,
    hist: History,
    poisoned: bool,
    keys: Vec<Vec<u8>>,
    rng: Rng,
    /// Set once the planned fault has fired; checks at the failure point then run once.
    fired: bool,
    check_after_failure: bool,
    figures: Figures,
    log: Vec<String>,
    /// The kind of fault injected.
    kind: FaultKind,
}

fn open_db(storage: &FaultStorage, clock: &ManualClock) -> Result<TestDb, Error<FaultError>> {
    open_core(storage.clone(), clock, MEM, SyncPolicy::EveryWrite)
}

fn read_all(db: &mut TestDb, keys: &[Vec<u8>]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    read_keys(db, keys, &[b"never-written"])
}

impl Sweep {
    /// Drops the engine, keeping its counters.
    fn retire_db(&mut self) {
        if let Some(db) = self.db.take() {
            self.figures.flushes += db.stats().flushes;
            self.figures.compactions += db.stats().compactions;
        }
    }

    fn new(seed: u64, kind: FaultKind) -> Self {
        let storage = FaultStorage::new(seed);
        Sweep {
            storage,
            clock: ManualClock::new(100),
            db: None,
            hist: History::new(),
            poisoned: false,
            keys: (0..13).map(|i| format!("key-{i:02}").into_bytes()).collect(),
            rng: Rng::new(seed ^ 0xE77),
            fired: false,
            check_after_failure: false,
            figures: Figures::default(),
            log: Vec::new(),
            kind,
        }
    }

    /// After the planned fault fired: reopen copies of the device as it is, after a random power
    /// cut and after losing everything unsynced, and check each against the model.
    fn check_failure_point(&mut self) -> Result<(), String> {
        if !self.fired || !self.check_after_failure {
            return Ok(());
        }
        self.check_after_failure = false;
        for mode in 0..3 {
            let fork = self.storage.fork();
            fork.clear_faults();
            let power_cut = mode > 0;
            match mode {
                1 => fork.power_cut(&mut self.rng),
                2 => fork.power_cut_lose_all(),
                _ => {}
            }
            if power_cut {
                self.figures.power_cuts += 1;
            }
            let mut db = open_db(&fork, &self.clock)
                .map_err(|e| format!("reopen after failure (mode {mode}): {e:?}"))?;
            let got = read_all(&mut db, &self.keys)?;
            let mut h = self.hist.clone();
            h.check_recovered(&got, self.clock.get(), power_cut)
                .map_err(|e| format!("after failure (mode {mode}): {e}"))?;
            self.figures.recoveries_checked += 1;
        }
        Ok(())
    }

    fn note_fault(&mut self, before: u64) {
        if self.storage.stats().injected > before {
            self.fired = true;
            self.check_after_failure = true;
            self.figures.injected += 1;
        }
    }

    fn write(&mut self, op: ModelOp) -> Result<(), String> {
        self.log.push(format!("{op:?}").chars().take(80).collect());
        let before = self.storage.stats().injected;
        let db = self.db.as_mut().ok_or("no db")?;
        let r = op.write_to(db, 4096)?;
        self.note_fault(before);
        let failed_now = self.storage.stats().injected > before;
        match r {
            Ok(()) if failed_now && !self.skipped_compaction() => {
                return Err(format!("{op:?} returned Ok although its storage call failed"))
            }
            Ok(()) if self.poisoned => return Err("write accepted on a poisoned database".into()),
            Ok(()) => {
                self.hist.ack(op);
                self.hist.mark_durable();
            }
            Err(Error::Poisoned) if self.poisoned => {}
            Err(Error::Full) => self.check_full(failed_now)?,
            Err(e @ (Error::Storage(_) | Error::TooManyTables | Error::TooManyWals)) => {
                if !failed_now {
                    return Err(format!("{op:?} failed with {e:?} but no fault fired"));
                }
                if !self.db.as_ref().is_some_and(|d| d.is_poisoned()) {
                    return Err(format!("{op:?} failed with {e:?}; the database still takes writes"));
                }
                self.poisoned = true;
                self.hist.set_inflight(op);
            }
            Err(e) => return Err(format!("{op:?}: unexpected {e:?}")),
        }
        let fired_here = self.check_after_failure;
        self.check_failure_point()?;
        if fired_here {
            // Poisoned or not, reads answer from the acknowledged state.
            self.live_check()?;
        }
        Ok(())
    }

    /// A write or flush failed with `Error::Full`: only because ENOSPC fired now, and without
    /// poisoning. Nothing of it was stored, so it is not in flight.
    fn check_full(&mut self, failed_now: bool) -> Result<(), String> {
        if !failed_now || !matches!(self.kind, FaultKind::NoSpace) {
            return Err(format!("Full without an injected ENOSPC (fault fired: {failed_now})"));
        }
        if self.poisoned || self.db.as_ref().is_some_and(|d| d.is_poisoned()) {
            return Err("Full poisoned the database".into());
        }
        self.figures.full += 1;
        Ok(())
    }

    /// True when the database gave up a compaction for want of space (then the write that ran it
    /// may succeed although a storage call failed).
    fn skipped_compaction(&self) -> bool {
        matches!(self.kind, FaultKind::NoSpace)
            && self.db.as_ref().is_some_and(|d| d.stats().compactions_skipped_for_space > 0)
    }

    /// Reads keep working, poisoned or not, and show exactly the acknowledged writes.
    fn live_check(&mut self) -> Result<(), String> {
        let want = visible(&self.hist.current(), self.clock.get());
        let before = self.storage.stats().injected;
        let keys = self.keys.clone();
        let got = read_all(self.db.as_mut().ok_or("no db")?, &keys);
        self.note_fault(before);
        match got {
            Ok(got) if got == want => Ok(()),
            Ok(got) => Err(format!(
                "live reads differ from the acknowledged state:\n  want {want:?}\n  got  {got:?}"
            )),
            Err(_) if self.storage.stats().injected > before => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn flush_or_sync(&mut self, flush: bool) -> Result<(), String> {
        self.log.push(if flush { "flush" } else { "sync" }.into());
        let before = self.storage.stats().injected;
        let db = self.db.as_mut().ok_or("no db")?;
        let r = if flush { db.flush() } else { db.sync() };
        self.note_fault(before);
        let failed_now = self.storage.stats().injected > before;
        match r {
            Ok(()) if failed_now && !self.skipped_compaction() => {
                return Err("flush/sync returned Ok although its storage call failed".into())
            }
            Ok(()) if self.poisoned => return Err("flush/sync succeeded on a poisoned database".into()),
            Ok(()) => {}
            Err(Error::Poisoned) if self.poisoned => {}
            Err(Error::Full) => self.check_full(failed_now)?,
            Err(e @ (Error::Storage(_) | Error::TooManyTables)) => {
                if !failed_now || !self.db.as_ref().is_some_and(|d| d.is_poisoned()) {
                    return Err(format!("flush/sync failed with {e:?} (fault fired: {failed_now}) and the database is not poisoned"));
                }
                self.poisoned = true;
            }
            Err(e) => return Err(format!("flush/sync: unexpected {e:?}")),
        }
        self.check_failure_point()
    }

    /// Reopens; an open that meets the fault must fail cleanly, and the next open succeed.
    fn reopen(&mut self, power_cut: Option<bool>) -> Result<(), String> {
        self.log.push(format!("reopen (power cut: {power_cut:?})"));
        self.retire_db();
        self.open_and_check(power_cut)
    }

    fn open_and_check(&mut self, power_cut: Option<bool>) -> Result<(), String> {
        match power_cut {
            Some(true) => self.storage.power_cut(&mut self.rng),
            Some(false) => self.storage.power_cut_lose_all(),
            None => {}
        }
        let before = self.storage.stats().injected;
        let db = match open_db(&self.storage, &self.clock) {
            Ok(db) => {
                // Out of space, open skips a compaction or the flush of the replayed WALs
                // (counted) and succeeds: a full disk must not keep a database from opening.
                let s = db.stats();
                let skipped = matches!(self.kind, FaultKind::NoSpace)
                    && (s.compactions_skipped_for_space > 0 || s.full_refusals > 0);
                if self.storage.stats().injected > before && !skipped {
                    return Err("open returned Ok although a storage call failed".into());
                }
                self.note_fault(before);
                db
            }
            Err(e) => {
                self.note_fault(before);
                if self.storage.stats().injected == before {
                    return Err(format!("open failed without a fault: {e:?}"));
                }
                self.check_failure_point()?;
                open_db(&self.storage, &self.clock)
                    .map_err(|e| format!("second open after a failed open: {e:?}"))?
            }
        };
        self.db = Some(db);
        self.poisoned = false;
        // The check's own reads are not part of the workload: not counted, never failed.
        let keys = self.keys.clone();
        let storage = self.storage.clone();
        let db = self.db.as_mut().ok_or("no db")?;
        let got = storage.unobserved(|| read_all(db, &keys))?;
        self.hist.check_recovered(&got, self.clock.get(), power_cut.is_some())?;
        self.figures.recoveries_checked += 1;
        Ok(())
    }

    fn put(&mut self, i: usize, value: String) -> Result<(), String> {
        let key = self.keys[i % self.keys.len()].clone();
        self.write(ModelOp::Put { key, value: value.into_bytes(), expires_at: None })
    }

    fn workload(&mut self) -> Result<(), String> {
        self.open_and_check(None)?;
        // Six small tables: six flushes, and compactions once four tables are there.
        for t in 0..6 {
            for j in 0..3 {
                self.put(t * 3 + j, format!("t{t}-{j}"))?;
            }
            self.flush_or_sync(true)?;
        }
        for i in [3, 5, 8] {
            let key = self.keys[i].clone();
            self.write(ModelOp::Delete { key })?;
        }
        let now = self.clock.get();
        let key = self.keys[1].clone();
        self.write(ModelOp::Put { key, value: b"short-lived".to_vec(), expires_at: Some(now + 10) })?;
        let key = self.keys[2].clone();
        self.write(ModelOp::Put { key, value: b"long-lived".to_vec(), expires_at: Some(now + 10_000) })?;
        // An atomic batch: all of it or none of it, whatever fails.
        let batch = (0..4)
            .map(|i| match i {
                2 => ModelOp::Delete { key: self.keys[6].clone() },
                _ => ModelOp::Put {
                    key: self.keys[9 + i].clone(),
                    value: format!("batch-{i}").into_bytes(),
                    expires_at: None,
                },
            })
            .collect();
        self.write(ModelOp::Batch(batch))?;
        // Big overwrites: the MemTable fills up and rotates on its own.
        for i in 0..14 {
            self.put(i * 5, format!("big{i}-{}", "x".repeat(190)))?;
        }
        self.flush_or_sync(false)?;
        self.live_check()?;
        self.clock.advance(20);
        // A clean close, then a process crash.
        if let Some(db) = self.db.take() {
            self.figures.flushes += db.stats().flushes;
            self.figures.compactions += db.stats().compactions;
            let (_, r) = db.close();
            if r.is_err() {
                self.poisoned = true;
            }
        }
        self.reopen(None)?;
        for i in 0..5 {
            self.put(i * 3, format!("after-close-{i}"))?;
        }
        self.reopen(None)?;
        // A torn record at the WAL's logical end (over its preallocated zero tail) and a
        // leftover temporary table, as a crash leaves them. The workload's values are text, so
        // the last record ends in a non-zero byte and the zero tail starts right after it.
        let wal = self.storage.names().into_iter().filter(|n| n.ends_with(".wal")).max();
        if let Some(wal) = wal {
            let mut bytes = self.storage.read_file(&wal).unwrap_or_default();
            // The WAL's header (`MVWL`, version, reserved zero bytes, ...) may end in zeros.
            let header = common::wal_header_len(&bytes);
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1).max(header);
            let torn = [40, 0, 0, 0, 1, 2, 3, 4, 1, 5];
            bytes.resize(bytes.len().max(end + torn.len()), 0);
            bytes[end..end + torn.len()].copy_from_slice(&torn);
            self.retire_db();
            self.storage.write_file(&wal, &bytes);
            self.storage.write_file("00000000000000ff.tmp", b"half a table");
        }
        self.reopen(None)?;
        for i in 0..5 {
            self.put(i + 7, format!("z{i}"))?;
        }
        let key = self.keys[0].clone();
        self.write(ModelOp::Delete { key })?;
        self.flush_or_sync(true)?;
        self.put(1, "last".into())?;
        // Final checks: a power cut that loses everything unsynced, and a random one.
        self.reopen(Some(false))?;
        self.put(2, "after-power-cut".into())?;
        self.reopen(Some(true))?;
        Ok(())
    }
}

fn sweep(kind: FaultKind, seed: u64, figures: &mut Figures) -> Vec<String> {
    let mut clean = Sweep::new(seed, kind);
    clean.storage.record_calls(true);
    clean.workload().unwrap_or_else(|e| panic!("workload fails without faults: {e}"));
    let total = clean.storage.calls();
    let kinds = clean.storage.recorded_calls();
    eprintln!(
        "error_injection_sweep: the clean run flushed {} and compacted {} times",
        clean.figures.flushes, clean.figures.compactions
    );
    eprintln!("error_injection_sweep {kind:?} seed {seed}: the workload makes {total} storage calls");
    let mut failures = Vec::new();
    for n in 1..=total {
        // A device runs out of space only where something is written.
        let writes = matches!(
            kinds.get(n as usize - 1),
            Some(
                Call::Write
                    | Call::Flush
                    | Call::Sync
                    | Call::SyncDir
                    | Call::Create
                    | Call::Rename
                    | Call::Truncate
                    | Call::Preallocate
            )
        );
        if kind == FaultKind::NoSpace && !writes {
            continue;
        }
        let mut s = Sweep::new(seed, kind);
        s.storage.fail_at(n, kind, false);
        let mut result = s.workload();
        if result.is_ok() && s.storage.stats().injected > 0 && !s.fired {
            result =
                Err(format!("the fault fired somewhere the sweep did not observe: {:?}", s.storage.trace()));
        }
        figures.runs += 1;
        figures.injected += s.figures.injected;
        figures.recoveries_checked += s.figures.recoveries_checked;
        figures.power_cuts += s.figures.power_cuts;
        figures.full += s.figures.full;
        if let Err(e) = result {
            let last: Vec<String> = s.log.iter().rev().take(6).rev().cloned().collect();
            failures.push(format!(
                "{kind:?} at call {n} of {total} (seed {seed}): {e}\n    last ops: {}",
                last.join(" | ")
            ));
            if failures.len() >= 8 {
                break;
            }
        }
    }
    failures
}

fn run(kind: FaultKind) {
    let start = Instant::now();
    let soak = std::env::var("MINIVAULT_SOAK").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    let mut figures = Figures::default();
    let mut failures = Vec::new();
    let mut seed = 1;
    loop {
        failures.extend(sweep(kind, seed, &mut figures));
        seed += 1;
        match soak {
            Some(d) if start.elapsed() < d && failures.is_empty() => {}
            _ => break,
        }
    }
    eprintln!(
        "error_injection_sweep {kind:?}: {} runs ({} seeds), {} injected errors, {} recoveries checked, {} power cuts, {} refused with Full (not poisoned), {:.1} s",
        figures.runs,
        seed - 1,
        figures.injected,
        figures.recoveries_checked,
        figures.power_cuts,
        figures.full,
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} failing injection points:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_storage_call_failing_with_eio_loses_no_acknowledged_write() {
    run(FaultKind::Io);
}

#[test]
fn every_storage_call_failing_with_enospc_loses_no_acknowledged_write() {
    run(FaultKind::NoSpace);
}
