//! The firmware's application, free of any board: a telemetry logger on MiniVaultDB.
//!
//! [`run`] gets every byte the engine may use as four caller-owned buffers (the board crate
//! takes them from static RAM once, at boot) and then, with compactions in steps inside the
//! writes (no write does a whole compaction; the run fails if one had to):
//! 1. writes [`ROUNDS`] rounds of readings from [`SENSORS`] sensors (4-byte keys, 8-byte values),
//!    so most writes overwrite an older reading and compaction has to keep storage bounded; it
//!    also deletes sensors (some for good, some re-added later) and raises alarms with a TTL;
//! 2. flushes, drops the engine and reopens it on the same storage (a reboot that keeps the
//!    "flash"), and checks every key: latest value, deleted keys absent, expired alarms absent;
//! 3. writes one more round without a flush, reboots again, and checks that WAL recovery
//!    brought every reading back.
//!
//! Any difference is a [`Failure`]; the board exits with a failure code.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

use core::cell::Cell;

use heapless::Vec;
use minivault_core::{
    CompactionMode, Config, Db, Error, FileName, MemError, MemStorage, Stats, Storage, SyncPolicy,
};

#[cfg(all(target_arch = "arm", target_os = "none"))]
pub mod stack;

/// Bytes of each of the engine's two MemTables: 48 keys and a 3,584-byte arena each. A whole
/// compaction (at open) borrows the idle one as scratch; the stepped ones have their own
/// ([`SCRATCH_BYTES`]).
pub const MEMTABLE_BYTES: usize = 4 * 1024;
/// Files the storage holds at once: 2 WALs + SSTables + 1 temporary table during a flush or
/// compaction. This workload never has more than 6 (counted at every file creation, on the
/// host), so 7 leaves one spare.
pub const STORAGE_FILES: usize = 7;
/// Bytes of each file's region. The largest file is a WAL that covers a full MemTable: a WAL
/// record of an entry of `e` bytes takes 8 framing + 4 watermark + `e` bytes where the arena
/// spends 4 + `e`, and the file starts with an 8-byte header, so it reaches
/// 8 + 3,584 × (12 + `e`)/(4 + `e`) bytes. The puts here are 15 bytes (4-byte key, 8-byte value):
/// 5,101 B at most; 5,092 B measured. (WAL format 1, with neither the header nor the watermark,
/// needed 4,332 B and fitted in 4.5 KiB regions; 8 of them did not fit format 2. Seven 5 KiB
/// regions take 1 KiB less than eight of 4.5 KiB, which goes to the stack.)
pub const FILE_BYTES: usize = 5120;
/// The storage ("flash", here in RAM): `STORAGE_FILES` regions of `FILE_BYTES`.
pub const STORAGE_BYTES: usize = STORAGE_FILES * FILE_BYTES;
/// Scratch memory of the compactions, which run a step in each write
/// ([`CompactionMode::Stepped`], given by `Db::set_compaction_scratch`): a key slot per merged
/// table and one more (4-byte keys: at most 68 bytes), the rest a window of the output's filter
/// (10 bits per key: about 100 bytes for the 80 keys of a merge here).
pub const SCRATCH_BYTES: usize = 256;
/// Everything the engine gets from the caller: two MemTables, the compactions' scratch and the
/// storage buffer.
pub const ENGINE_RAM_BYTES: usize = 2 * MEMTABLE_BYTES + SCRATCH_BYTES + STORAGE_BYTES;

/// Sensors sampled each round; each one's key is its id (4 bytes, big-endian).
pub const SENSORS: u32 = 32;
/// Rounds of readings written before the first reboot.
pub const ROUNDS: u32 = 100;
/// Clock ticks per round (the engine's TTL unit).
pub const TICKS_PER_ROUND: u64 = 10;
/// Alarms raised (one every `ROUNDS / ALARMS` rounds), each expiring [`ALARM_TTL`] ticks later.
pub const ALARMS: u32 = 5;
/// Lifetime of an alarm, in ticks.
pub const ALARM_TTL: u64 = 300;

const ALARM_KEY_BASE: u32 = 0xA1A2_0000;

/// The flash of this board: a `MemStorage` over a slice of static RAM.
pub type Flash<'a> = MemStorage<&'a mut [u8], STORAGE_FILES>;

/// Why the run failed.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// The engine returned an error.
    Engine {
        /// What the app was doing.
        step: &'static str,
        /// The engine's error.
        error: Error<MemError>,
    },
    /// A key read back wrong (`found` is the round number read, `None` when absent).
    Value {
        /// Which check.
        step: &'static str,
        /// The key, as a `u32`.
        key: u32,
        /// The round the reading should come from (`None`: must be absent).
        expected: Option<u32>,
        /// What was read (`None`: absent).
        found: Option<u32>,
    },
    /// An engine statistic broke an expectation.
    Check(&'static str),
}

/// What a successful run did, for the board to print.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Report {
    /// `put`s, `put_expiring`s and `delete`s issued, all phases.
    pub writes: u32,
    /// Keys checked after each reboot (every sensor and alarm, twice).
    pub verified: u32,
    /// Engine counters at the end of phase 1, before the flush.
    pub after_writes: Stats,
    /// Files on storage after the flush and close.
    pub files: usize,
    /// Bytes in those files.
    pub stored_bytes: usize,
    /// The largest file seen at a check point, against the `FILE_BYTES` limit.
    pub largest_file: usize,
    /// Engine counters after the last reboot's checks.
    pub after_reboot: Stats,
}

/// Bytes of the engine's `Db` value itself (held on the caller's stack, or wherever the caller
/// puts it), on the target this is compiled for.
pub const DB_BYTES: usize = core::mem::size_of::<Db<Flash<'static>, fn() -> u64, &'static mut [u8]>>();

/// A lower bound on the stack `Db::open` needs: while it recovers, the stack holds two
/// `Db`-sized values (the `Db` it recovers, and the caller's result it then moves it into); a
/// caller that moves the `Db` out of the `Result` again adds a third. Measured on thumbv7m: a
/// 4,168-byte `Db` and a 9,296-byte frame for each phase below, which LTO inlines `Db::open`
/// into. (At core 36013f4, a 19,128-byte `Db` and 61,952-byte frames.) A board checks this before
/// it starts, rather than let the stack run silently into the engine's buffers.
pub const OPEN_STACK_LOWER_BOUND: usize = 2 * DB_BYTES;

/// One reading: the round it was taken in, and a value in milli-degrees.
fn reading(sensor: u32, round: u32) -> [u8; 8] {
    let milli_c = 20_000 + sensor * 100 + (round * 7) % 1000;
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&round.to_le_bytes());
    v[4..].copy_from_slice(&milli_c.to_le_bytes());
    v
}

/// Sensors decommissioned at round 40: deleted, never written again.
fn retired(sensor: u32) -> bool {
    sensor % 8 == 5
}

/// Sensors deleted at round 20 and replaced (written again) from round 30.
fn replaced(sensor: u32) -> bool {
    sensor % 8 == 2
}

/// Whether `sensor` is written in `round`.
fn writes_in(sensor: u32, round: u32) -> bool {
    !(retired(sensor) && round >= 40) && !(replaced(sensor) && (20..30).contains(&round))
}

/// The round at which alarm `n` is raised.
fn alarm_round(n: u32) -> u32 {
    n * (ROUNDS / ALARMS)
}

fn engine(step: &'static str) -> impl FnOnce(Error<MemError>) -> Failure {
    move |error| Failure::Engine { step, error }
}

/// Runs the three phases on the given memory; see the crate docs.
///
/// Each phase is its own function (not inlined) that owns one `Db` value, so the stack holds
/// one engine at a time; `Db::open` is the deepest call (see `docs/TARGETS.md`). A phase keeps
/// the `Db` in the `Result` that `Db::open` returned and borrows it there (`as_mut`), and hands
/// that `Result` to [`close`]: every move of a `Db` (4 KiB here) is a copy on the stack, and
/// `let db = Db::open(..)?` and `db.close()` in the phase would each add one to its frame.
pub fn run(
    flash: &mut [u8],
    mem_a: &mut [u8],
    mem_b: &mut [u8],
    scratch: &mut [u8],
) -> Result<Report, Failure> {
    if flash.len() != STORAGE_BYTES {
        return Err(Failure::Check("storage buffer is not STORAGE_BYTES long"));
    }
    // The engine's clock: a tick counter the app advances each round (a board would read an RTC).
    let now = Cell::new(0u64);
    let mut report = Report {
        writes: 0,
        verified: 0,
        after_writes: Stats::default(),
        files: 0,
        stored_bytes: 0,
        largest_file: 0,
        after_reboot: Stats::default(),
    };
    let mem = [&mut *mem_a, &mut *mem_b];
    let storage = write_readings(MemStorage::new(flash), &now, mem, &mut *scratch, &mut report)?;
    now.set(u64::from(ROUNDS) * TICKS_PER_ROUND);
    let storage = reboot_and_check(storage, &now, [&mut *mem_a, &mut *mem_b], scratch, &mut report)?;
    recover_wal_and_check(storage, &now, [mem_a, mem_b], &mut report)?;
    Ok(report)
}

/// Compactions in steps of at most 4 × 8 units of merge work per write: a merge here (every
/// table: the table limit of 7 files is 3, and a merge starts one flush before it) takes about
/// 180 units, to be done within the 48 writes that fill a MemTable.
const CONFIG: Config =
    Config { compaction: CompactionMode::Stepped { budget: 8 }, ..Config::with_sync(SyncPolicy::EveryN(16)) };

/// Phase 1: rounds of readings, deletes and expiring alarms; then flush and close.
#[inline(never)]
fn write_readings<'f, 'm>(
    storage: Flash<'f>,
    now: &Cell<u64>,
    mem: [&'m mut [u8]; 2],
    scratch: &'m mut [u8],
    report: &mut Report,
) -> Result<Flash<'f>, Failure> {
    let mut opened = Db::open(storage, || now.get(), mem, CONFIG);
    let db = opened.as_mut().map_err(|e| engine("open")(e.clone()))?;
    db.set_compaction_scratch(scratch);
    for round in 0..ROUNDS {
        now.set(u64::from(round) * TICKS_PER_ROUND);
        for sensor in 0..SENSORS {
            if writes_in(sensor, round) {
                db.put(&sensor.to_be_bytes(), &reading(sensor, round)).map_err(engine("put"))?;
                report.writes += 1;
            }
            if (retired(sensor) && round == 40) || (replaced(sensor) && round == 20) {
                db.delete(&sensor.to_be_bytes()).map_err(engine("delete"))?;
                report.writes += 1;
            }
        }
        if round % (ROUNDS / ALARMS) == 0 {
            let n = round / (ROUNDS / ALARMS);
            let expires = now.get() + ALARM_TTL;
            db.put_expiring(&(ALARM_KEY_BASE + n).to_be_bytes(), &reading(n, round), expires)
                .map_err(engine("put_expiring"))?;
            report.writes += 1;
        }
        if round % 10 == 9 {
            report.largest_file = report.largest_file.max(storage_usage(db.storage())?.2);
        }
    }
    report.after_writes = db.stats();
    if report.after_writes.flushes == 0 || report.after_writes.compactions == 0 {
        return Err(Failure::Check("expected flushes and compactions during the writes"));
    }
    if report.after_writes.compaction_overruns != 0 {
        return Err(Failure::Check("a write finished a compaction whole: the steps fell behind"));
    }
    db.flush().map_err(engine("flush"))?;
    let s = db.stats();
    if s.wal_bytes != 0 || s.memtable_keys != 0 || s.immutable_keys != 0 {
        return Err(Failure::Check("flush left entries in the WAL or a MemTable"));
    }
    let mut storage = close(opened)?;
    let (files, stored_bytes, largest) = storage_usage(&mut storage)?;
    report.files = files;
    report.stored_bytes = stored_bytes;
    report.largest_file = report.largest_file.max(largest);
    Ok(storage)
}

/// Phase 2: reboot (fresh engine state over the same storage and MemTable buffers), check every
/// key, then write one more round, synced but not flushed, and close.
#[inline(never)]
fn reboot_and_check<'f, 'm>(
    storage: Flash<'f>,
    now: &Cell<u64>,
    mem: [&'m mut [u8]; 2],
    scratch: &'m mut [u8],
    report: &mut Report,
) -> Result<Flash<'f>, Failure> {
    let mut opened = Db::open(storage, || now.get(), mem, CONFIG);
    let db = opened.as_mut().map_err(|e| engine("reopen")(e.clone()))?;
    db.set_compaction_scratch(scratch);
    if db.stats().tables == 0 || db.stats().memtable_keys != 0 {
        return Err(Failure::Check("reopen after a flush found no tables or replayed a WAL"));
    }
    report.verified += verify(db, ROUNDS - 1, "after reboot")?;
    for sensor in (0..SENSORS).filter(|&s| !retired(s)) {
        db.put(&sensor.to_be_bytes(), &reading(sensor, ROUNDS)).map_err(engine("put"))?;
        report.writes += 1;
    }
    db.sync().map_err(engine("sync"))?;
    let mut storage = close(opened)?;
    report.largest_file = report.largest_file.max(storage_usage(&mut storage)?.2);
    Ok(storage)
}

/// Phase 3: reboot again; WAL recovery must bring the unflushed round back.
#[inline(never)]
fn recover_wal_and_check(
    storage: Flash<'_>,
    now: &Cell<u64>,
    mem: [&mut [u8]; 2],
    report: &mut Report,
) -> Result<(), Failure> {
    let mut opened = Db::open(storage, || now.get(), mem, CONFIG);
    let db = opened.as_mut().map_err(|e| engine("reopen 2")(e.clone()))?;
    if db.stats().memtable_keys == 0 {
        return Err(Failure::Check("the unflushed round was not replayed from the WAL"));
    }
    report.verified += verify(db, ROUNDS, "after WAL recovery")?;
    report.after_reboot = db.stats();
    if report.after_reboot.torn_tails_truncated != 0 {
        return Err(Failure::Check("a clean shutdown left a torn WAL tail"));
    }
    Ok(())
}

/// Closes the engine `Db::open` returned (syncs it) and gives its storage back. Not inlined, and
/// given the `Result` itself: moving the `Db` out of it in the caller would be one more copy of
/// it in the caller's frame.
#[inline(never)]
fn close<'f, C: minivault_core::Clock>(
    opened: Result<Db<Flash<'f>, C, &mut [u8]>, Error<MemError>>,
) -> Result<Flash<'f>, Failure> {
    let (storage, closed) = opened.map_err(engine("open"))?.close();
    closed.map_err(engine("close"))?;
    Ok(storage)
}

/// Checks every sensor and alarm against what was written; `last_round` is the newest round.
fn verify<S, C, M>(db: &mut Db<S, C, M>, last_round: u32, step: &'static str) -> Result<u32, Failure>
where
    S: Storage<Error = MemError>,
    C: minivault_core::Clock,
    M: AsRef<[u8]> + AsMut<[u8]>,
{
    let mut buf = [0u8; 16];
    let mut checked = 0;
    let mut check = |db: &mut Db<S, C, M>, key: u32, expected: Option<[u8; 8]>| {
        let got = db.get(&key.to_be_bytes(), &mut buf).map_err(engine("get"))?;
        if got != expected.as_ref().map(|v| &v[..]) {
            let round_of = |v: &[u8]| v.get(..4).and_then(|r| r.try_into().ok()).map(u32::from_le_bytes);
            return Err(Failure::Value {
                step,
                key,
                expected: expected.as_ref().and_then(|v| round_of(v)),
                found: got.and_then(round_of),
            });
        }
        checked += 1;
        Ok(())
    };
    for sensor in 0..SENSORS {
        let expected = (!retired(sensor)).then(|| reading(sensor, last_round));
        check(db, sensor, expected)?;
    }
    for n in 0..ALARMS {
        let raised = u64::from(alarm_round(n)) * TICKS_PER_ROUND;
        let alive = raised + ALARM_TTL > u64::from(ROUNDS) * TICKS_PER_ROUND;
        check(db, ALARM_KEY_BASE + n, alive.then(|| reading(n, alarm_round(n))))?;
    }
    // A key never written.
    check(db, SENSORS + 1000, None)?;
    Ok(checked)
}

/// Files on storage, their total bytes and the largest one.
fn storage_usage(storage: &mut Flash<'_>) -> Result<(usize, usize, usize), Failure> {
    let mut names: Vec<FileName, STORAGE_FILES> = Vec::new();
    storage
        .list(&mut |name| {
            let _ = names.push(name.try_into().unwrap_or_default());
        })
        .map_err(|e| Failure::Engine { step: "list", error: Error::Storage(e) })?;
    let (mut total, mut largest) = (0, 0);
    for name in &names {
        let len = storage
            .open(name)
            .and_then(|mut f| storage.len(&mut f))
            .map_err(|e| Failure::Engine { step: "file length", error: Error::Storage(e) })?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        total += len;
        largest = largest.max(len);
    }
    Ok((names.len(), total, largest))
}
