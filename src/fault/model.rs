//! The model of acknowledged writes that every crash test checks a recovered database against.
//!
//! [`ModelOp`] is one write as a test issues it (put, put with expiry, delete, atomic batch);
//! [`KvState`] the full contents of a database in the model, and [`visible`] what reads show of
//! it at a time. [`History`] is the log of acknowledged writes with the point up to which they are
//! durable: after a restart, the recovered state must be the state after some prefix of that
//! log reaching every durable write. [`ModelOp::write_to`] is the one place that issues a model
//! write to a [`minivault_core::Db`].

use std::collections::{BTreeMap, BTreeSet};

use minivault_core::{Clock, Db, Error, Storage, WriteBatch};

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
    /// A range delete: every key from `start` (inclusive) to `end` (exclusive).
    DeleteRange {
        /// The first key deleted.
        start: Vec<u8>,
        /// The first key past the range.
        end: Vec<u8>,
    },
    /// A write batch: its puts, deletes and range deletes, applied in order and atomically.
    Batch(Vec<ModelOp>),
}

impl ModelOp {
    /// The key written (the first one, for a batch; empty for an empty batch).
    pub fn key(&self) -> &[u8] {
        match self {
            ModelOp::Put { key, .. } | ModelOp::Delete { key } => key,
            ModelOp::DeleteRange { start, .. } => start,
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

    /// Issues this write to `db`: a put (with expiry when it has one), a delete, or a write
    /// batch built in a buffer of `batch_bytes`. The outer error is the test's own mistake (a
    /// nested batch, a batch entry its buffer cannot hold); the inner result is the engine's
    /// answer, for the test to judge.
    pub fn write_to<S, C, M>(
        &self,
        db: &mut Db<S, C, M>,
        batch_bytes: usize,
    ) -> Result<Result<(), Error<S::Error>>, String>
    where
        S: Storage,
        C: Clock,
        M: AsRef<[u8]> + AsMut<[u8]>,
    {
        Ok(match self {
            ModelOp::Put { key, value, expires_at: None } => db.put(key, value),
            ModelOp::Put { key, value, expires_at: Some(t) } => db.put_expiring(key, value, *t),
            ModelOp::Delete { key } => db.delete(key),
            ModelOp::DeleteRange { start, end } => db.delete_range(start, end),
            ModelOp::Batch(ops) => {
                let mut batch = WriteBatch::new(vec![0u8; batch_bytes]);
                for op in ops {
                    let added = match op {
                        ModelOp::Put { key, value, expires_at: None } => batch.put(key, value),
                        ModelOp::Put { key, value, expires_at: Some(t) } => {
                            batch.put_expiring(key, value, *t)
                        }
                        ModelOp::Delete { key } => batch.delete(key),
                        ModelOp::DeleteRange { start, end } => batch.delete_range(start, end),
                        ModelOp::Batch(_) => return Err("nested batch".into()),
                    };
                    added.map_err(|e| format!("batch add: {e}"))?;
                }
                db.write_batch(&batch)
            }
        })
    }

    fn apply(&self, state: &mut KvState) {
        match self {
            ModelOp::Put { key, value, expires_at } => {
                state.insert(key.clone(), (value.clone(), *expires_at));
            }
            ModelOp::Delete { key } => {
                state.remove(key);
            }
            ModelOp::DeleteRange { start, end } => {
                state.retain(|k, _| !(start <= k && k < end));
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

    /// The first `n` writes logged are durable (a sync that covered them completed: the group
    /// commit's, whose targets were taken when `n` writes were logged). Never moves back.
    pub fn mark_durable_through(&mut self, n: usize) {
        self.durable_upto = self.durable_upto.max(n.min(self.log.len()));
    }

    /// Writes logged since the model's base (the count [`History::mark_durable_through`] takes).
    pub fn logged(&self) -> usize {
        self.log.len()
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
    /// crash (nothing acknowledged may be lost). The error says which rule was broken.
    pub fn check_recovered(
        &mut self,
        recovered: &BTreeMap<Vec<u8>, Vec<u8>>,
        now: u64,
        power_cut: bool,
    ) -> Result<(), Mismatch> {
        let lo = if power_cut { self.durable_upto } else { self.log.len() };
        let mut state = self.base.clone();
        let (mut found, mut shorter) = (None, false);
        let writes = self.log.iter().map(|(op, _)| op).chain(self.inflight.as_ref());
        for (k, op) in std::iter::once(None).chain(writes.map(Some)).enumerate() {
            if let Some(op) = op {
                op.apply(&mut state);
            }
            if &visible(&state, now) == recovered {
                if k >= lo {
                    found = Some((k, state.clone()));
                } else {
                    shorter = true;
                }
            }
        }
        let Some((k, state)) = found else {
            let want = visible(&self.current(), now);
            let mut diff = Vec::new();
            for key in want.keys().chain(recovered.keys()).collect::<BTreeSet<_>>() {
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
            let (kind, what) = if shorter {
                (MismatchKind::LostDurable, "recovered state is a prefix that lost durable writes")
            } else {
                (MismatchKind::NotAPrefix, "recovered state matches no prefix of the writes")
            };
            let message = format!(
                "{what} (power_cut={power_cut}, durable {} of {} logged writes, in flight {:?}):\n{}",
                self.durable_upto,
                self.log.len(),
                self.inflight,
                diff.join("\n")
            );
            return Err(Mismatch { kind, message });
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

/// Which rule a recovered state broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// The state after some prefix of the writes, but one that stops before a write the mode
    /// promised durable (or, after a process crash, before an acknowledged one).
    LostDurable,
    /// Not the state after any prefix of the writes: a later write survived an earlier lost one,
    /// a value appeared that was never written, or a key vanished that no prefix removes.
    NotAPrefix,
}

/// A recovered state that [`History::check_recovered`] refused: which rule, and a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The rule broken.
    pub kind: MismatchKind,
    /// What was expected and what was found, key by key.
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Mismatch {}

impl From<Mismatch> for String {
    fn from(m: Mismatch) -> String {
        m.message
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
