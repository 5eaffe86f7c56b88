//! [`Streams`]: the outbox's operations on a [`Db`] the caller holds (`&mut Db`), with the one
//! piece of state they keep in memory: each stream's next sequence number.

use std::collections::HashMap;
use std::ops::{Bound, Range};

use super::key;
use super::{ConsumerStats, OutboxError, Record, StreamStats};
use crate::{Db, Error, WriteBatch};

/// Records a stopgap trim deletes in one acknowledgement at most (see [`trim`]); what is left
/// goes with the next acknowledgement.
pub const TRIM_CHUNK: usize = 10_000;

/// The outbox's operations over a database the caller holds, and the next sequence number of
/// every stream touched so far (found once per stream by a reverse seek, then kept here).
///
/// [`super::Outbox`] wraps one of these and a shared [`Db`] for threads; the REPL uses one
/// directly. Keep one `Streams` per database: two of them would each hand out the same next
/// seq.
#[derive(Debug, Default)]
pub struct Streams {
    /// Next seq of each stream, once known.
    next: HashMap<Vec<u8>, u64>,
    /// Per stream, a seq below which every record has been trimmed (deleted) by this handle:
    /// where the stopgap trim's scan starts, so it does not walk its own earlier deletes.
    trimmed: HashMap<Vec<u8>, u64>,
    /// What the batch being built trims up to, recorded in `trimmed` once it is written.
    pending_trim: Option<(Vec<u8>, u64)>,
    /// The heads key as stored (see [`key`]), once read.
    stored_heads: Option<Vec<(Vec<u8>, u64)>>,
    /// Streams in the order this handle last touched them (most recent last): which heads to
    /// keep when there are more than [`key::MAX_HEADS`].
    touched: Vec<Vec<u8>>,
}

/// One write of an acknowledgement's batch.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Checks a stream or consumer name: 1 ..= [`key::MAX_NAME_LEN`] bytes.
fn check_name(what: &'static str, name: &[u8]) -> Result<(), Error> {
    if name.is_empty() || name.len() > key::MAX_NAME_LEN {
        return Err(Error::Outbox(OutboxError::InvalidName { what, len: name.len() }));
    }
    Ok(())
}

/// A key in the outbox's namespace that does not decode: written by something else.
fn foreign(key: &[u8]) -> Error {
    Error::Outbox(OutboxError::ForeignKey { key: key.to_vec() })
}

/// `stream`'s record keys from `from` on.
fn records_from(stream: &[u8], from: u64) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Included(key::record(stream, from)), Bound::Included(key::record(stream, u64::MAX)))
}

/// Writes `ops` as one batch: atomic, one WAL record, durable per the durability mode.
fn write_batch(db: &mut Db, ops: &[Op]) -> Result<(), Error> {
    let bytes = 4 + ops
        .iter()
        .map(|op| match op {
            Op::Put(k, v) => 16 + k.len() + v.len(),
            Op::Delete(k) => 16 + k.len(),
        })
        .sum::<usize>();
    let mut batch = WriteBatch::new(vec![0u8; bytes]);
    for op in ops {
        match op {
            Op::Put(k, v) => batch.put(k, v)?,
            Op::Delete(k) => batch.delete(k)?,
        }
    }
    db.write_batch(&batch)
}

impl Streams {
    /// No stream known yet.
    pub fn new() -> Streams {
        Streams::default()
    }

    /// Removes `stream`'s records with a seq below `below`, as writes of the acknowledgement's
    /// batch.
    ///
    /// The one place that trims. Until the engine has range deletes (issue 13, the lead's part)
    /// it deletes each record still present, at most [`TRIM_CHUNK`] per call (the rest go with
    /// a later acknowledgement; a record below every cursor is never read again, so leaving it
    /// a little longer costs only space). With `WriteBatch::delete_range` its body becomes one
    /// line, `ops.push(Op::DeleteRange(key::record(stream, 0), key::record(stream, below)))`,
    /// and `trimmed` goes.
    fn trim(&mut self, db: &mut Db, ops: &mut Vec<Op>, stream: &[u8], below: u64) -> Result<(), Error> {
        let from = self.trimmed.get(stream).copied().unwrap_or(0);
        if from >= below {
            return Ok(());
        }
        let range = (Bound::Included(key::record(stream, from)), Bound::Excluded(key::record(stream, below)));
        let mut reached = below;
        let prefix_len = key::record_prefix(stream).len();
        for (i, k) in db.keys(range).enumerate() {
            let k = k?;
            if i == TRIM_CHUNK {
                reached = key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?;
                break;
            }
            ops.push(Op::Delete(k));
        }
        self.pending_trim = Some((stream.to_vec(), reached));
        Ok(())
    }

    /// The seq the next record of `stream` gets: one above the newest record, every cursor
    /// and, for a stream with no key left at all, the high-water mark (see [`key`]).
    fn next_seq(&mut self, db: &mut Db, stream: &[u8]) -> Result<u64, Error> {
        if let Some(&next) = self.next.get(stream) {
            return Ok(next);
        }
        let prefix_len = key::record_prefix(stream).len();
        let newest = match db.keys(records_from(stream, 0)).next_back().transpose()? {
            Some(k) => Some(key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?),
            None => None,
        };
        let cursors = cursors(db, stream)?;
        let acked = cursors.iter().map(|c| c.1).max();
        let floor = match (newest, acked) {
            // No key of its own left: its head as the last acknowledgement stored it, if any.
            (None, None) => {
                self.stored_heads(db)?.iter().find(|(name, _)| name == stream).map_or(0, |&(_, head)| head)
            }
            (a, b) => a.max(b).unwrap_or(0),
        };
        let next = floor.checked_add(1).ok_or(Error::Outbox(OutboxError::SeqExhausted))?;
        self.next.insert(stream.to_vec(), next);
        Ok(next)
    }

    /// The newest seq `stream` has handed out (0: none yet).
    pub fn newest(&mut self, db: &mut Db, stream: &[u8]) -> Result<u64, Error> {
        check_name("stream", stream)?;
        Ok(self.next_seq(db, stream)? - 1)
    }

    /// Appends `value` to `stream`; returns its seq. See [`super::Outbox::append`].
    pub fn append(&mut self, db: &mut Db, stream: &[u8], value: &[u8]) -> Result<u64, Error> {
        check_name("stream", stream)?;
        let seq = self.next_seq(db, stream)?;
        match db.put(&key::record(stream, seq), value) {
            Ok(()) => {
                self.next.insert(stream.to_vec(), seq + 1);
                Ok(seq)
            }
            Err(e) => {
                // Whatever reached the database, the next append asks it again.
                self.next.remove(stream);
                Err(e)
            }
        }
    }

    /// Appends every value of `values` to `stream` in one atomic batch; returns their seqs.
    /// See [`super::Outbox::append_batch`].
    pub fn append_batch<V: AsRef<[u8]>>(
        &mut self,
        db: &mut Db,
        stream: &[u8],
        values: &[V],
    ) -> Result<Range<u64>, Error> {
        check_name("stream", stream)?;
        let first = self.next_seq(db, stream)?;
        if values.is_empty() {
            return Ok(first..first);
        }
        let key_len = key::record(stream, 0).len();
        let bytes = 4 + values.iter().map(|v| 16 + key_len + v.as_ref().len()).sum::<usize>();
        let mut batch = WriteBatch::new(vec![0u8; bytes]);
        let mut seq = first;
        for v in values {
            batch.put(&key::record(stream, seq), v.as_ref())?;
            seq += 1;
        }
        match db.write_batch(&batch) {
            Ok(()) => {
                self.next.insert(stream.to_vec(), seq);
                Ok(first..seq)
            }
            Err(e) => {
                self.next.remove(stream);
                Err(e)
            }
        }
    }

    /// Up to `limit` records of `stream` from seq `from` on, in order, stopping early once they
    /// hold `max_bytes` of values (always at least one record when there is one).
    pub fn read(
        &mut self,
        db: &mut Db,
        stream: &[u8],
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, Error> {
        check_name("stream", stream)?;
        let prefix_len = key::record_prefix(stream).len();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if limit == 0 {
            return Ok(out);
        }
        for entry in db.range(records_from(stream, from)) {
            let (k, value) = entry?;
            let seq = key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?;
            bytes = bytes.saturating_add(value.len());
            out.push(Record { seq, value });
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// `consumer`'s cursor on `stream`: the last seq it acknowledged (0: none yet, or no
    /// cursor).
    pub fn cursor(&mut self, db: &mut Db, stream: &[u8], consumer: &[u8]) -> Result<u64, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        Ok(match db.get(&key::cursor(stream, consumer))? {
            Some(v) => key::decode_cursor(&v).ok_or_else(|| foreign(&key::cursor(stream, consumer)))?.0,
            None => 0,
        })
    }

    /// Acknowledges every record of `stream` up to and including `seq` for `consumer`; returns
    /// the consumer's cursor. See [`super::Outbox::ack`].
    pub fn ack(&mut self, db: &mut Db, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        let newest = self.next_seq(db, stream)? - 1;
        if seq > newest {
            return Err(Error::Outbox(OutboxError::AckBeyondNewest { seq, newest }));
        }
        let mut all = cursors(db, stream)?;
        let mine = all.iter().position(|c| c.0 == consumer);
        let (acked, evicted) = match mine.and_then(|i| all.get(i)) {
            Some(&(_, acked, _)) if seq <= acked => return Ok(acked),
            Some(&(_, acked, evicted)) => (acked, evicted),
            // A new consumer starts where the stream starts: nothing below its oldest record
            // was ever this consumer's to lose, so its cursor is at least just below it.
            None => {
                let start = self.first_from(db, stream, 0)?.map_or(newest, |first| first.saturating_sub(1));
                (start, 0)
            }
        };
        let seq = seq.max(acked);
        // Records between the cursor and `seq` that are gone were evicted before this consumer
        // acknowledged them: nothing above a cursor is ever trimmed.
        let missing = match self.first_from(db, stream, acked.saturating_add(1))? {
            Some(first) => first.saturating_sub(1).min(seq).saturating_sub(acked),
            None => seq.saturating_sub(acked),
        };
        let evicted = evicted.saturating_add(missing);
        match mine.and_then(|i| all.get_mut(i)) {
            Some(c) => c.1 = seq,
            None => all.push((consumer.to_vec(), seq, evicted)),
        }
        let below_all = all.iter().map(|c| c.1).min().unwrap_or(0);
        let mut ops = vec![
            Op::Put(key::cursor(stream, consumer), key::cursor_value(seq, evicted).to_vec()),
            self.heads_op(db, stream)?,
        ];
        self.trim(db, &mut ops, stream, below_all.saturating_add(1))?;
        self.write(db, &ops)?;
        Ok(seq)
    }

    /// Forgets `consumer`'s cursor on `stream`, so that it no longer holds records back; the
    /// records below every remaining cursor are trimmed. Returns whether it had a cursor.
    pub fn remove_consumer(&mut self, db: &mut Db, stream: &[u8], consumer: &[u8]) -> Result<bool, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        let all = cursors(db, stream)?;
        if !all.iter().any(|c| c.0 == consumer) {
            return Ok(false);
        }
        // The stream's next seq is known before its last cursor goes.
        self.next_seq(db, stream)?;
        let mut ops = vec![Op::Delete(key::cursor(stream, consumer)), self.heads_op(db, stream)?];
        if let Some(min) = all.iter().filter(|c| c.0 != consumer).map(|c| c.1).min() {
            self.trim(db, &mut ops, stream, min.saturating_add(1))?;
        }
        self.write(db, &ops)?;
        Ok(true)
    }

    /// Writes an acknowledgement's `ops` as one batch, then notes how far it trimmed.
    fn write(&mut self, db: &mut Db, ops: &[Op]) -> Result<(), Error> {
        let trimmed = self.pending_trim.take();
        if let Err(e) = write_batch(db, ops) {
            // What the heads key holds is no longer known.
            self.stored_heads = None;
            return Err(e);
        }
        if let Some((stream, below)) = trimmed {
            self.trimmed.insert(stream, below);
        }
        Ok(())
    }

    /// The seq of `stream`'s first record at or after `from`, if any.
    fn first_from(&self, db: &mut Db, stream: &[u8], from: u64) -> Result<Option<u64>, Error> {
        let from = from.max(self.trimmed.get(stream).copied().unwrap_or(0));
        let prefix_len = key::record_prefix(stream).len();
        match db.keys(records_from(stream, from)).next().transpose()? {
            Some(k) => Ok(Some(key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?)),
            None => Ok(None),
        }
    }

    /// The heads key as stored.
    fn stored_heads(&mut self, db: &mut Db) -> Result<&[(Vec<u8>, u64)], Error> {
        if self.stored_heads.is_none() {
            let heads = match db.get(&key::heads())? {
                Some(v) => key::decode_heads(&v).ok_or_else(|| foreign(&key::heads()))?,
                None => Vec::new(),
            };
            self.stored_heads = Some(heads);
        }
        Ok(self.stored_heads.as_deref().unwrap_or_default())
    }

    /// The write of the heads key for an acknowledgement on `stream`: every stream's newest
    /// seq this handle knows, merged with what was stored, at most [`key::MAX_HEADS`] of them
    /// (those touched least recently by this handle go first).
    fn heads_op(&mut self, db: &mut Db, stream: &[u8]) -> Result<Op, Error> {
        self.touched.retain(|s| s != stream);
        self.touched.push(stream.to_vec());
        let mut heads: std::collections::BTreeMap<Vec<u8>, u64> =
            self.stored_heads(db)?.iter().cloned().collect();
        for (name, next) in &self.next {
            let head = heads.entry(name.clone()).or_insert(0);
            *head = (*head).max(next.saturating_sub(1));
        }
        while heads.len() > key::MAX_HEADS {
            let drop =
                heads.keys().find(|k| !self.touched.contains(k)).or_else(|| self.touched.first()).cloned();
            match drop {
                Some(name) => {
                    heads.remove(&name);
                    self.touched.retain(|s| *s != name);
                }
                None => break,
            }
        }
        let value = key::encode_heads(heads.iter().map(|(k, v)| (k.as_slice(), *v)));
        self.stored_heads = Some(heads.into_iter().collect());
        Ok(Op::Put(key::heads(), value))
    }

    /// What `stream` holds: oldest and newest seq, records, bytes, and each consumer's cursor,
    /// lag and evictions. Reads every record of the stream (keys and values).
    pub fn stats(&mut self, db: &mut Db, stream: &[u8]) -> Result<StreamStats, Error> {
        check_name("stream", stream)?;
        let newest_seq = self.next_seq(db, stream)? - 1;
        let prefix_len = key::record_prefix(stream).len();
        let (mut oldest, mut newest, mut records, mut bytes) = (None, None, 0u64, 0u64);
        for entry in db.range(records_from(stream, 0)) {
            let (k, v) = entry?;
            let seq = key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?;
            oldest = oldest.or(Some(seq));
            newest = Some(seq);
            records += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        let mut consumers = Vec::new();
        for (name, acked, evicted) in cursors(db, stream)? {
            // Records above the cursor that are gone were evicted before it acknowledged them.
            let next_present = match oldest {
                Some(o) if o > acked => o,
                Some(_) => self.first_from(db, stream, acked.saturating_add(1))?.unwrap_or(newest_seq + 1),
                None => newest_seq + 1,
            };
            let gap = next_present.saturating_sub(1).saturating_sub(acked);
            consumers.push(ConsumerStats {
                name,
                acked,
                lag: newest_seq.saturating_sub(acked),
                evicted_before_ack: evicted.saturating_add(gap),
            });
        }
        let evicted_before_ack = consumers.iter().map(|c| c.evicted_before_ack).max().unwrap_or(0);
        Ok(StreamStats {
            stream: stream.to_vec(),
            oldest,
            newest,
            next_seq: newest_seq + 1,
            records,
            bytes,
            consumers,
            evicted_before_ack,
        })
    }

    /// The streams with a key in the database (records or cursors), in key order.
    pub fn streams(&mut self, db: &mut Db) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        let mut from = Bound::Excluded(key::heads());
        loop {
            let upper = Bound::Excluded(b"\xFFoc".to_vec());
            let Some(k) = db.keys((from, upper)).next().transpose()? else { return Ok(out) };
            let (name, _) = key::split_stream(&k).ok_or_else(|| foreign(&k))?;
            let mut past = key::stream_prefix(name);
            past.push(0xFF);
            out.push(name.to_vec());
            from = Bound::Excluded(past);
        }
    }
}

/// Every cursor of `stream`: consumer, acked, evicted.
fn cursors(db: &mut Db, stream: &[u8]) -> Result<Vec<(Vec<u8>, u64, u64)>, Error> {
    let prefix = key::cursor_prefix(stream);
    let mut out = Vec::new();
    for entry in db.prefix(&prefix) {
        let (k, v) = entry?;
        let (acked, evicted) = key::decode_cursor(&v).ok_or_else(|| foreign(&k))?;
        let name = k.get(prefix.len()..).unwrap_or_default().to_vec();
        out.push((name, acked, evicted));
    }
    Ok(out)
}
