//! Power cuts under the outbox (`minivault::outbox::Streams`), run on the core engine over the
//! device model (`minivault_suite::fault::FaultStorage`) through the outbox's `Store` trait.
//!
//! Each seed runs a few hundred random steps on small MemTables (so range deletes, flushes and
//! compactions come often): appends, batches of appends to a stream and group commits' writes
//! (records of both streams in one batch), a "forwarder" step
//! (sync first in a relaxed mode, as the forwarder does, then read after a consumer's cursor:
//! the records read count as published), acknowledgements by three consumers (of what was read,
//! below the cursor, beyond the newest), consumers removed, syncs, flushes, process crashes,
//! power cuts and clean reopens. Every write the outbox makes goes through the test's store,
//! which logs it in a `History` (the engine's crash model), so after each restart:
//!
//! - the database holds the state after a prefix of the outbox's writes that reaches every write
//!   the durability mode promised (after a crash without a power cut: every acknowledged one).
//!   An acknowledgement is one write (cursor, heads and trim together), so it is all there or
//!   not at all;
//! - every cursor is at least what the mode promised: the last acknowledgement before the last
//!   sync (every acknowledgement with `EveryWrite`), and never above what was acknowledged;
//! - no seq is handed out again that a consumer read (published): the next append gets a seq
//!   above every published one, and a read from a cursor returns the records after it in order.
//!
//! `MINIVAULT_SEED=<n>` runs one seed; `MINIVAULT_SEEDS=<n>` sets the count (default 40 per
//! mode).

mod common;

use std::collections::HashMap;

use common::{open_core, FaultDb};
use minivault::outbox::store::{KeyBounds, Store, Visit, Write};
use minivault::outbox::{key, Streams};
use minivault::{EngineError, Error};
use minivault_core::{KeyRange, SyncPolicy};
use minivault_suite::fault::{FaultConfig, FaultStorage, History, ManualClock, ModelOp, PowerCutModel, Rng};

const STREAMS: [&[u8]; 2] = [b"telemetry", b"alarms"];
const CONSUMERS: [&[u8]; 3] = [b"mqtt", b"audit", b"late"];

fn storage_error(e: impl std::fmt::Debug) -> Error {
    Error::Engine(EngineError::Storage(std::io::Error::other(format!("{e:?}"))))
}

/// The core engine as the outbox's store, logging every write in the crash model.
struct CoreStore<'a> {
    db: &'a mut FaultDb,
    hist: &'a mut History,
    policy: SyncPolicy,
}

impl Store for CoreStore<'_> {
    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), Error> {
        let one = |w: &Write<'_>| match *w {
            Write::Put(k, v) => ModelOp::Put { key: k.to_vec(), value: v.to_vec(), expires_at: None },
            Write::Delete(k) => ModelOp::Delete { key: k.to_vec() },
            Write::DeleteRange(s, e) => ModelOp::DeleteRange { start: s.to_vec(), end: e.to_vec() },
        };
        let op = match writes {
            [w] => one(w),
            several => ModelOp::Batch(several.iter().map(one).collect()),
        };
        match op.write_to(self.db, 256 * 1024).expect("a batch the test can build") {
            Ok(()) => {
                self.hist.ack(op);
                match self.policy {
                    SyncPolicy::EveryWrite => self.hist.mark_durable(),
                    SyncPolicy::EveryN(n) => self.hist.mark_durable_but_last(n as usize - 1),
                    SyncPolicy::Manual => {}
                }
                Ok(())
            }
            Err(e) => {
                self.hist.set_inflight(op);
                Err(storage_error(e))
            }
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = vec![0u8; 64 * 1024];
        Ok(self.db.get(key, &mut buf).map_err(storage_error)?.map(<[u8]>::to_vec))
    }

    fn seek(&mut self, range: KeyBounds<'_>, reverse: bool) -> Result<Option<Vec<u8>>, Error> {
        let mut keys = vec![0u8; self.db.scan_key_bytes()];
        let mut scan =
            self.db.scan(KeyRange::new(range.0, range.1), reverse, &mut keys).map_err(storage_error)?;
        let mut k = vec![0u8; 2048];
        Ok(scan.next_key(&mut k).map_err(storage_error)?.map(|(kl, _)| k[..kl].to_vec()))
    }

    fn for_each(&mut self, range: KeyBounds<'_>, f: &mut Visit<'_>) -> Result<(), Error> {
        let mut keys = vec![0u8; self.db.scan_key_bytes()];
        let mut scan =
            self.db.scan(KeyRange::new(range.0, range.1), false, &mut keys).map_err(storage_error)?;
        let (mut k, mut v) = (vec![0u8; 2048], vec![0u8; 64 * 1024]);
        while let Some((kl, vl)) = scan.next(&mut k, &mut v).map_err(storage_error)? {
            f(&k[..kl], &v[..vl])?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        self.db.sync().map_err(storage_error)?;
        self.hist.mark_durable();
        Ok(())
    }
}

/// One seed's run.
struct Run {
    rng: Rng,
    storage: FaultStorage,
    clock: ManualClock,
    policy: SyncPolicy,
    mem: usize,
    db: Option<FaultDb>,
    streams: Streams,
    hist: History,
    /// Per (stream, consumer): the cursor the mode promised durable (0: none), then every value
    /// it took since (0: removed), the last one what a live database shows. A power cut may
    /// leave any of them (the writes are a log, and a prefix of it survives), a crash the last.
    cursors: HashMap<(Vec<u8>, Vec<u8>), Vec<u64>>,
    /// Per stream: the highest seq a consumer read (published).
    published: HashMap<Vec<u8>, u64>,
    /// Per stream: the highest seq ever handed out (the keys to read back).
    highest: HashMap<Vec<u8>, u64>,
    serial: u32,
    /// The outbox's trim step: 1, 9 or 17 records, by seed.
    trim_step: u64,
    log: Vec<String>,
    power_cuts: u64,
}

impl Run {
    fn new(seed: u64, policy: SyncPolicy, model: PowerCutModel) -> Run {
        let mut rng = Rng::new(seed);
        let config = FaultConfig { power_cut: model, ..FaultConfig::default() };
        let storage = FaultStorage::with_config(rng.next_u64(), config);
        let mem = [4096, 8192, 16384][rng.below(3) as usize];
        let mut run = Run {
            rng,
            storage,
            clock: ManualClock::new(1_000),
            policy,
            mem,
            db: None,
            streams: Streams::new().with_trim_step(1 + seed % 3 * 8),
            trim_step: 1 + seed % 3 * 8,
            hist: History::new(),
            cursors: HashMap::new(),
            published: HashMap::new(),
            highest: HashMap::new(),
            serial: 0,
            log: Vec::new(),
            power_cuts: 0,
        };
        run.db = Some(open_core(run.storage.clone(), &run.clock, mem, policy).expect("fresh open"));
        run
    }

    fn with_store<R>(&mut self, f: impl FnOnce(&mut Streams, &mut CoreStore<'_>) -> R) -> R {
        let db = self.db.as_mut().expect("open");
        let mut store = CoreStore { db, hist: &mut self.hist, policy: self.policy };
        f(&mut self.streams, &mut store)
    }

    fn value(&mut self) -> Vec<u8> {
        self.serial += 1;
        let len = self.rng.range(4, 200) as usize;
        let serial = self.serial.to_le_bytes();
        (0..len).map(|i| serial.get(i).copied().unwrap_or(i as u8)).collect()
    }

    fn step(&mut self) -> Result<(), String> {
        let stream = STREAMS[self.rng.below(2) as usize];
        let consumer = CONSUMERS[self.rng.below(3) as usize];
        let pick = self.rng.below(100);
        match pick {
            0..=32 => {
                let v = self.value();
                let seq =
                    self.with_store(|s, db| s.append(db, stream, &v)).map_err(|e| format!("append: {e}"))?;
                self.log.push(format!("append {} -> {seq}", String::from_utf8_lossy(stream)));
                let h = self.highest.entry(stream.to_vec()).or_default();
                *h = (*h).max(seq);
            }
            33..=34 => {
                // A group commit's write: records of both streams in one batch.
                let n = self.rng.range(1, 6) as usize;
                let owned: Vec<(&[u8], Vec<u8>)> =
                    (0..n).map(|_| (STREAMS[self.rng.below(2) as usize], self.value())).collect();
                let records: Vec<(&[u8], &[u8])> = owned.iter().map(|(s, v)| (*s, v.as_slice())).collect();
                let seqs = self.with_store(|s, db| s.append_many(db, &records));
                self.log.push(format!("append_many {n} -> {seqs:?}"));
                for ((stream, _), seq) in owned.iter().zip(seqs) {
                    let seq = seq.map_err(|e| format!("append_many: {e}"))?;
                    let h = self.highest.entry(stream.to_vec()).or_default();
                    *h = (*h).max(seq);
                }
            }
            35..=44 => {
                let n = self.rng.range(2, 12) as usize;
                let values: Vec<Vec<u8>> = (0..n).map(|_| self.value()).collect();
                let seqs = self
                    .with_store(|s, db| s.append_batch(db, stream, &values))
                    .map_err(|e| format!("batch: {e}"))?;
                self.log.push(format!("append_batch {} -> {seqs:?}", String::from_utf8_lossy(stream)));
                let h = self.highest.entry(stream.to_vec()).or_default();
                *h = (*h).max(seqs.end - 1);
            }
            45..=69 => {
                // The forwarder: sync in a relaxed mode, read after the cursor, acknowledge some.
                let relaxed = self.policy != SyncPolicy::EveryWrite;
                let limit = self.rng.range(1, 20) as usize;
                let read = self.with_store(|s, db| {
                    if relaxed {
                        db.sync()?;
                    }
                    let from = s.cursor(db, stream, consumer)? + 1;
                    s.read(db, stream, from, limit, usize::MAX)
                });
                let read = read.map_err(|e| format!("read: {e}"))?;
                self.check_in_order(stream, consumer, &read)?;
                if let Some(last) = read.last() {
                    let p = self.published.entry(stream.to_vec()).or_default();
                    *p = (*p).max(last.seq);
                    let upto = read[self.rng.below(read.len() as u64) as usize].seq;
                    self.ack(stream, consumer, upto)?;
                }
            }
            70..=74 => {
                let newest = self.with_store(|s, db| s.newest(db, stream)).map_err(|e| e.to_string())?;
                let seq = self.rng.below(newest + 3);
                self.ack(stream, consumer, seq)?;
            }
            75..=76 => {
                let had = self
                    .with_store(|s, db| s.remove_consumer(db, stream, consumer))
                    .map_err(|e| format!("remove_consumer: {e}"))?;
                self.log.push(format!("remove {} -> {had}", String::from_utf8_lossy(consumer)));
                self.took(stream, consumer, 0);
            }
            77..=81 => {
                self.with_store(|_, db| db.sync()).map_err(|e| format!("sync: {e}"))?;
                self.promise_all();
                self.log.push("sync".into());
            }
            82..=84 => {
                let db = self.db.as_mut().expect("open");
                db.flush().map_err(|e| format!("flush: {e:?}"))?;
                self.hist.mark_durable();
                self.promise_all();
                self.log.push("flush".into());
            }
            85..=88 => self.restart(false, "crash")?,
            89..=96 => self.restart(true, "power cut")?,
            _ => {
                let db = self.db.take().expect("open");
                let (_, closed) = db.close();
                closed.map_err(|e| format!("close: {e:?}"))?;
                self.hist.mark_durable();
                self.promise_all();
                self.restart(false, "clean reopen")?;
            }
        }
        Ok(())
    }

    fn ack(&mut self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<(), String> {
        let result = self.with_store(|s, db| s.ack(db, stream, consumer, seq));
        self.log.push(format!(
            "ack {} {} {seq} -> {result:?}",
            String::from_utf8_lossy(stream),
            String::from_utf8_lossy(consumer)
        ));
        match result {
            Ok(cursor) => {
                self.took(stream, consumer, cursor);
                Ok(())
            }
            Err(Error::Outbox(minivault::outbox::OutboxError::AckBeyondNewest { .. })) => Ok(()),
            Err(e) => Err(format!("ack: {e}")),
        }
    }

    /// A cursor took a value (an acknowledgement, or 0: removed); with `EveryWrite` it is
    /// durable at once.
    fn took(&mut self, stream: &[u8], consumer: &[u8], value: u64) {
        let values = self.cursors.entry((stream.to_vec(), consumer.to_vec())).or_insert_with(|| vec![0]);
        values.push(value);
        if self.policy == SyncPolicy::EveryWrite {
            values.drain(..values.len() - 1);
        }
    }

    /// Every cursor's live value is durable now.
    fn promise_all(&mut self) {
        for values in self.cursors.values_mut() {
            values.drain(..values.len() - 1);
        }
    }

    /// Records read after a cursor come in seq order, without gaps.
    fn check_in_order(
        &self,
        stream: &[u8],
        consumer: &[u8],
        read: &[minivault::outbox::Record],
    ) -> Result<(), String> {
        for w in read.windows(2) {
            if w[1].seq != w[0].seq + 1 {
                return Err(format!(
                    "{} after {}'s cursor: seq {} then {}",
                    String::from_utf8_lossy(stream),
                    String::from_utf8_lossy(consumer),
                    w[0].seq,
                    w[1].seq
                ));
            }
        }
        Ok(())
    }

    /// Every key the outbox may have written.
    fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys = vec![key::heads()];
        for stream in STREAMS {
            let highest = self.highest.get(stream).copied().unwrap_or(0);
            keys.extend((0..=highest + 2).map(|seq| key::record(stream, seq)));
            keys.extend(CONSUMERS.iter().map(|c| key::cursor(stream, c)));
        }
        keys
    }

    fn restart(&mut self, power_cut: bool, what: &str) -> Result<(), String> {
        self.log.push(what.into());
        drop(self.db.take());
        if power_cut {
            self.storage.power_cut(&mut self.rng);
            self.power_cuts += 1;
        }
        let mut db = open_core(self.storage.clone(), &self.clock, self.mem, self.policy)
            .map_err(|e| format!("the database does not open after a {what}: {e:?}"))?;
        let keys = self.keys();
        let recovered = common::read_keys(&mut db, &keys, &[]).map_err(|e| format!("read back: {e}"))?;
        self.db = Some(db);
        self.hist.check_recovered(&recovered, self.clock.get(), power_cut).map_err(|m| m.message)?;
        // The outbox's view, afresh.
        self.streams = Streams::new().with_trim_step(self.trim_step);
        for stream in STREAMS {
            for consumer in CONSUMERS {
                let k = (stream.to_vec(), consumer.to_vec());
                let cursor = self
                    .with_store(|s, db| s.cursor(db, stream, consumer))
                    .map_err(|e| format!("cursor: {e}"))?;
                let values = self.cursors.get(&k).cloned().unwrap_or_else(|| vec![0]);
                let live = values.last().copied().unwrap_or(0);
                let allowed = if power_cut { values.contains(&cursor) } else { cursor == live };
                if !allowed {
                    return Err(format!(
                        "after a {what}: cursor of {}/{} is {cursor}; since the last durable point it was \
                         {values:?}",
                        String::from_utf8_lossy(stream),
                        String::from_utf8_lossy(consumer)
                    ));
                }
                // What survived is the outbox's truth from here on.
                self.cursors.insert(k, vec![cursor]);
                // Nothing above a cursor is ever trimmed: every record after it is there.
                let from = cursor + 1;
                let read = self.with_store(|s, db| s.read(db, stream, from, usize::MAX, usize::MAX));
                let read = read.map_err(|e| format!("read: {e}"))?;
                self.check_in_order(stream, consumer, &read)?;
                let newest = self.with_store(|s, db| s.newest(db, stream)).map_err(|e| e.to_string())?;
                let first = read.first().map(|r| r.seq);
                if cursor > 0 && newest > cursor && first != Some(cursor + 1) {
                    return Err(format!(
                        "after a {what}: {}/{}'s cursor is {cursor} and the newest seq {newest}, but the \
                         records after the cursor start at {first:?}: records it had not acknowledged are gone",
                        String::from_utf8_lossy(stream),
                        String::from_utf8_lossy(consumer)
                    ));
                }
                if read.last().is_some_and(|r| r.seq != newest) {
                    return Err(format!("after a {what}: the newest record is not seq {newest}"));
                }
            }
            let newest = self.with_store(|s, db| s.newest(db, stream)).map_err(|e| e.to_string())?;
            let published = self.published.get(stream).copied().unwrap_or(0);
            if newest < published {
                return Err(format!(
                    "after a {what}: {}'s newest seq is {newest} but seq {published} was read by a consumer: \
                     it would be handed out again",
                    String::from_utf8_lossy(stream)
                ));
            }
        }
        Ok(())
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("MINIVAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("MINIVAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    (1..=n).collect()
}

fn run_mode(policy: SyncPolicy, model: PowerCutModel) {
    let (mut power_cuts, mut steps) = (0, 0);
    for seed in seeds() {
        let mut run = Run::new(seed, policy, model);
        for _ in 0..300 {
            steps += 1;
            if let Err(e) = run.step() {
                let tail: Vec<&String> = run.log.iter().rev().take(25).collect();
                panic!("seed {seed} ({policy:?}): {e}\nlast steps, newest first:\n{tail:#?}");
            }
        }
        power_cuts += run.power_cuts;
    }
    eprintln!("{policy:?}: {steps} steps, {power_cuts} power cuts, no acknowledged cursor or record lost");
}

#[test]
fn cursors_and_records_survive_power_cuts_with_every_write_durable() {
    run_mode(SyncPolicy::EveryWrite, PowerCutModel::Wide);
}

#[test]
fn cursors_and_records_survive_power_cuts_with_every_4th_write_durable() {
    run_mode(SyncPolicy::EveryN(4), PowerCutModel::Narrow);
}

#[test]
fn cursors_and_records_survive_power_cuts_with_manual_syncs() {
    run_mode(SyncPolicy::Manual, PowerCutModel::Narrow);
}
