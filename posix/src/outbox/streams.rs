//! [`Streams`]: the outbox's operations on a store the caller holds (a `&mut Db`, or any
//! [`Store`]), and what they keep in memory per stream: its next sequence number, its cursors, and how far it is trimmed.
//!
//! The steady path — append, read, acknowledge — uses point reads and writes only, no scan:
//! a scan used to sort the active MemTable's keys whenever it changed since the last scan
//! (O(n log n) in its keys), and the forwarder writes (acknowledges) between any two reads.
//! (Since the core merges what writes added into the kept order, a scan after a few writes is
//! cheap: reading a batch with one scan may now pay off; not built yet.) Records are
//! read by their keys, seq after seq (the seqs of a stream are dense); a scan runs only to find
//! where a stream starts, to step over a gap (records evicted by a space cap), to load a
//! stream's cursors once, and for [`Streams::stats`].

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};

use super::key;
use super::store::{Store, Write};
use super::{ConsumerStats, OutboxError, Record, StreamStats};
use crate::Error;

/// The default trim step ([`Streams::with_trim_step`]): records acknowledged by every consumer
/// are deleted once there are 1,024 of them.
pub const TRIM_STEP: u64 = 1024;

/// What [`Streams`] knows of one stream.
#[derive(Debug, Default)]
struct Stream {
    /// The seq the next append gets.
    next: u64,
    /// Consumer → (acked, evicted), as stored.
    cursors: BTreeMap<Vec<u8>, (u64, u64)>,
    /// Every record below this seq is deleted (`None`: not known yet).
    trimmed: Option<u64>,
}

/// The outbox's operations over a database the caller holds, and what they keep in memory of
/// every stream touched so far (loaded once per stream, then kept up to date here).
///
/// [`super::Outbox`] wraps one of these and a shared [`crate::Db`] for threads; the REPL uses one
/// directly. Keep one `Streams` per database, and write the outbox's keys only through it: two
/// of them would each hand out the same next seq.
#[derive(Debug, Default)]
pub struct Streams {
    streams: HashMap<Vec<u8>, Stream>,
    /// The heads key as stored (see [`key`]), once read.
    stored_heads: Option<Vec<(Vec<u8>, u64)>>,
    /// Streams in the order this handle last acknowledged on them (most recent last): which
    /// heads to keep when there are more than [`key::MAX_HEADS`].
    touched: Vec<Vec<u8>>,
    /// Trim once this many records are acknowledged by every consumer (0: the default).
    trim_step: u64,
}

/// One write of an acknowledgement's batch, owned.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Every key from the first (inclusive) to the second (exclusive).
    DeleteRange(Vec<u8>, Vec<u8>),
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

/// True for an error that a write's own contents caused (too large), not the database's state.
fn refused_for_itself(e: &Error) -> bool {
    use minivault_core::Error as E;
    matches!(
        e,
        Error::Batch(_)
            | Error::Engine(E::ValueTooLarge { .. } | E::KeyTooLarge { .. } | E::BatchTooLarge { .. })
    )
}

/// Writes `ops` as one batch: atomic, durable per the durability mode.
fn write_ops<S: Store + ?Sized>(db: &mut S, ops: &[Op]) -> Result<(), Error> {
    let writes: Vec<Write<'_>> = ops
        .iter()
        .map(|op| match op {
            Op::Put(k, v) => Write::Put(k, v),
            Op::Delete(k) => Write::Delete(k),
            Op::DeleteRange(start, end) => Write::DeleteRange(start, end),
        })
        .collect();
    db.write(&writes)
}

/// The last key of `stream`'s records from `from` on (`reverse`), or the first.
fn seek_record<S: Store + ?Sized>(
    db: &mut S,
    stream: &[u8],
    from: u64,
    reverse: bool,
) -> Result<Option<u64>, Error> {
    let (start, end) = (key::record(stream, from), key::record(stream, u64::MAX));
    let prefix_len = key::record_prefix(stream).len();
    match db.seek((Bound::Included(&start), Bound::Included(&end)), reverse)? {
        Some(k) => Ok(Some(key::record_seq(&k, prefix_len).ok_or_else(|| foreign(&k))?)),
        None => Ok(None),
    }
}

/// Every cursor of `stream` as stored: consumer → (acked, evicted).
fn load_cursors<S: Store + ?Sized>(
    db: &mut S,
    stream: &[u8],
) -> Result<BTreeMap<Vec<u8>, (u64, u64)>, Error> {
    let prefix = key::cursor_prefix(stream);
    let mut end = key::stream_prefix(stream);
    end.push(0x03);
    let mut out = BTreeMap::new();
    db.for_each((Bound::Included(&prefix), Bound::Excluded(&end)), &mut |k, v| {
        let cursor = key::decode_cursor(v).ok_or_else(|| foreign(k))?;
        out.insert(k.get(prefix.len()..).unwrap_or_default().to_vec(), cursor);
        Ok(())
    })?;
    Ok(out)
}

/// The seq of `stream`'s first record at or after `from`, if any (a scan).
fn first_from<S: Store + ?Sized>(db: &mut S, stream: &[u8], from: u64) -> Result<Option<u64>, Error> {
    seek_record(db, stream, from, false)
}

impl Streams {
    /// No stream known yet.
    pub fn new() -> Streams {
        Streams::default()
    }

    /// Deletes the records every consumer has acknowledged once there are `step` of them (1:
    /// at every acknowledgement that moves the slowest cursor), in one range delete that goes
    /// in the acknowledgement's batch. The default, [`TRIM_STEP`], keeps range deletes rare:
    /// the engine's MemTable holds 32 of them before it must be flushed, and a range delete
    /// empties the row cache. Until then the acknowledged records stay on disk, unread.
    pub fn with_trim_step(mut self, step: u64) -> Streams {
        self.trim_step = step.max(1);
        self
    }

    /// Forgets everything loaded from the database (each stream is loaded again when next
    /// used), keeping the trim step: for a cache a panic may have left halfway through a change.
    pub fn forget_all(&mut self) {
        *self = Streams { trim_step: self.trim_step, ..Streams::default() };
    }

    /// What this handle knows of `stream`, loaded from the database the first time: its next
    /// seq is one above its newest record (a reverse seek), above every cursor, and, when it
    /// has no key left at all, above the head the last acknowledgement stored for it.
    fn stream<S: Store + ?Sized>(&mut self, db: &mut S, stream: &[u8]) -> Result<&mut Stream, Error> {
        if !self.streams.contains_key(stream) {
            let newest = seek_record(db, stream, 0, true)?;
            let cursors = load_cursors(db, stream)?;
            let acked = cursors.values().map(|c| c.0).max();
            let floor = match (newest, acked) {
                (None, None) => self
                    .stored_heads(db)?
                    .iter()
                    .find(|(name, _)| name == stream)
                    .map_or(0, |&(_, head)| head),
                (a, b) => a.max(b).unwrap_or(0),
            };
            let next = floor.checked_add(1).ok_or(Error::Outbox(OutboxError::SeqExhausted))?;
            self.streams.insert(stream.to_vec(), Stream { next, cursors, trimmed: None });
        }
        self.streams.get_mut(stream).ok_or_else(|| foreign(stream))
    }

    /// Forgets what this handle knows of `stream` (after a failed write: what reached the
    /// database is read again next time).
    fn forget(&mut self, stream: &[u8]) {
        self.streams.remove(stream);
        self.stored_heads = None;
    }

    /// The newest seq `stream` has handed out (0: none yet).
    pub fn newest<S: Store + ?Sized>(&mut self, db: &mut S, stream: &[u8]) -> Result<u64, Error> {
        check_name("stream", stream)?;
        Ok(self.stream(db, stream)?.next - 1)
    }

    /// Appends `value` to `stream`; returns its seq. See [`super::Outbox::append`].
    pub fn append<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        value: &[u8],
    ) -> Result<u64, Error> {
        check_name("stream", stream)?;
        let seq = self.stream(db, stream)?.next;
        if seq == u64::MAX {
            return Err(Error::Outbox(OutboxError::SeqExhausted));
        }
        match db.write(&[Write::Put(&key::record(stream, seq), value)]) {
            Ok(()) => {
                self.stream(db, stream)?.next = seq + 1;
                Ok(seq)
            }
            Err(e) => {
                self.forget(stream);
                Err(e)
            }
        }
    }

    /// Appends every value of `values` to `stream` in one atomic batch; returns their seqs.
    /// See [`super::Outbox::append_batch`].
    pub fn append_batch<S: Store + ?Sized, V: AsRef<[u8]>>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        values: &[V],
    ) -> Result<Range<u64>, Error> {
        check_name("stream", stream)?;
        let first = self.stream(db, stream)?.next;
        if values.is_empty() {
            return Ok(first..first);
        }
        let end = u64::try_from(values.len())
            .ok()
            .and_then(|n| first.checked_add(n))
            .filter(|&end| end < u64::MAX)
            .ok_or(Error::Outbox(OutboxError::SeqExhausted))?;
        let keys: Vec<Vec<u8>> = (first..end).map(|seq| key::record(stream, seq)).collect();
        let writes: Vec<Write<'_>> =
            keys.iter().zip(values).map(|(k, v)| Write::Put(k, v.as_ref())).collect();
        match db.write(&writes) {
            Ok(()) => {
                self.stream(db, stream)?.next = end;
                Ok(first..end)
            }
            Err(e) => {
                self.forget(stream);
                Err(e)
            }
        }
    }

    /// Appends each `(stream, value)` of `records` to its stream, all in one write (one WAL
    /// record, one sync); one result per record, each stream's seqs in the order given. What
    /// the group commit of [`super::Outbox::append`] writes. A record refused for itself (a
    /// bad stream name; a value too large for a MemTable: then each record is written alone)
    /// fails alone; a write that fails fails them all.
    pub fn append_many<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        records: &[(&[u8], &[u8])],
    ) -> Vec<Result<u64, Error>> {
        let mut results: Vec<Option<Result<u64, Error>>> = Vec::with_capacity(records.len());
        let mut next: HashMap<&[u8], u64> = HashMap::new();
        let mut keys: Vec<(usize, Vec<u8>)> = Vec::with_capacity(records.len());
        for (i, &(stream, _)) in records.iter().enumerate() {
            if let Err(e) = check_name("stream", stream) {
                results.push(Some(Err(e)));
                continue;
            }
            let seq = match next.get(stream) {
                Some(&seq) => seq,
                None => match self.stream(db, stream) {
                    Ok(s) => s.next,
                    Err(e) => {
                        results.push(Some(Err(e)));
                        continue;
                    }
                },
            };
            if seq == u64::MAX {
                results.push(Some(Err(Error::Outbox(OutboxError::SeqExhausted))));
                continue;
            }
            next.insert(stream, seq + 1);
            keys.push((i, key::record(stream, seq)));
            results.push(Some(Ok(seq)));
        }
        let writes: Vec<Write<'_>> = keys.iter().map(|(i, k)| Write::Put(k, records[*i].1)).collect();
        match db.write(&writes) {
            Ok(()) => {
                for (stream, seq) in next {
                    if let Some(s) = self.streams.get_mut(stream) {
                        s.next = seq;
                    }
                }
            }
            Err(e) if writes.len() > 1 && refused_for_itself(&e) => {
                // One record may be too large for the rest to go with it: each on its own.
                for (i, _) in &keys {
                    results[*i] = Some(self.append(db, records[*i].0, records[*i].1));
                }
            }
            Err(e) => {
                for (i, _) in &keys {
                    results[*i] = Some(Err(e.duplicate()));
                }
                for stream in next.keys() {
                    self.streams.remove(*stream);
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Err(Error::Outbox(OutboxError::SeqExhausted)))).collect()
    }

    /// Up to `limit` records of `stream` from seq `from` on, in order, stopping early once they
    /// hold `max_bytes` of values (always at least one record when there is one).
    pub fn read<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, Error> {
        check_name("stream", stream)?;
        let s = self.stream(db, stream)?;
        let newest = s.next - 1;
        let mut seq = from.max(s.trimmed.unwrap_or(1)).max(1);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < limit && bytes < max_bytes && seq <= newest {
            match db.get(&key::record(stream, seq))? {
                Some(value) => {
                    bytes = bytes.saturating_add(value.len());
                    out.push(Record { seq, value });
                    seq += 1;
                }
                // A gap (trimmed, or evicted by a space cap): one scan finds where it ends.
                None => match first_from(db, stream, seq)? {
                    Some(present) if present > seq => seq = present,
                    _ => break,
                },
            }
        }
        Ok(out)
    }

    /// `consumer`'s cursor on `stream`: the last seq it acknowledged (0: none yet, or no
    /// cursor).
    pub fn cursor<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        consumer: &[u8],
    ) -> Result<u64, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        Ok(self.stream(db, stream)?.cursors.get(consumer).map_or(0, |c| c.0))
    }

    /// Acknowledges every record of `stream` up to and including `seq` for `consumer`; returns
    /// the consumer's cursor. See [`super::Outbox::ack`].
    pub fn ack<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        consumer: &[u8],
        seq: u64,
    ) -> Result<u64, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        let s = self.stream(db, stream)?;
        let newest = s.next - 1;
        if seq > newest {
            return Err(Error::Outbox(OutboxError::AckBeyondNewest { seq, newest }));
        }
        let (acked, evicted, missing) = match s.cursors.get(consumer).copied() {
            Some((acked, _)) if seq <= acked => return Ok(acked),
            Some((acked, evicted)) => {
                // Records between the cursor and `seq` that are gone were evicted before this
                // consumer acknowledged them: nothing above a cursor is ever trimmed.
                let missing = if db.get(&key::record(stream, acked + 1))?.is_some() {
                    0
                } else {
                    match first_from(db, stream, acked + 1)? {
                        Some(first) => first.saturating_sub(1).min(seq).saturating_sub(acked),
                        None => seq.saturating_sub(acked),
                    }
                };
                (acked, evicted, missing)
            }
            // A new consumer starts where the stream starts: nothing below its oldest record
            // was ever this consumer's to lose, so its cursor is at least just below it.
            None => {
                let from = s.trimmed.unwrap_or(0);
                let start = first_from(db, stream, from)?.map_or(newest, |first| first.saturating_sub(1));
                (start, 0, 0)
            }
        };
        let seq = seq.max(acked);
        let evicted = evicted.saturating_add(missing);
        let s = self.stream(db, stream)?;
        let below_all =
            s.cursors.iter().map(|(c, v)| if c == consumer { seq } else { v.0 }).min().unwrap_or(seq);
        let mut ops = vec![Op::Put(key::cursor(stream, consumer), key::cursor_value(seq, evicted).to_vec())];
        ops.push(self.heads_op(db, stream)?);
        let trimmed = self.trim(db, &mut ops, stream, below_all.min(seq).saturating_add(1))?;
        if let Err(e) = write_ops(db, &ops) {
            self.forget(stream);
            return Err(e);
        }
        let s = self.stream(db, stream)?;
        s.cursors.insert(consumer.to_vec(), (seq, evicted));
        s.trimmed = Some(trimmed);
        Ok(seq)
    }

    /// Deletes `stream`'s records with a seq below `below`, as a write of the
    /// acknowledgement's batch, when at least the trim step of them are left; returns the seq
    /// below which every record is then deleted. The one place that trims: one range delete
    /// (O(1) however many records) from the stream's first possible key.
    fn trim<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        ops: &mut Vec<Op>,
        stream: &[u8],
        below: u64,
    ) -> Result<u64, Error> {
        let step = if self.trim_step == 0 { TRIM_STEP } else { self.trim_step };
        let from = self.stream(db, stream)?.trimmed.unwrap_or(0);
        if below <= from || below - from < step {
            return Ok(from);
        }
        ops.push(Op::DeleteRange(key::record(stream, 0), key::record(stream, below)));
        Ok(below)
    }

    /// Forgets `consumer`'s cursor on `stream`, so that it no longer holds records back; the
    /// records below every remaining cursor are trimmed. Returns whether it had a cursor.
    pub fn remove_consumer<S: Store + ?Sized>(
        &mut self,
        db: &mut S,
        stream: &[u8],
        consumer: &[u8],
    ) -> Result<bool, Error> {
        check_name("stream", stream)?;
        check_name("consumer", consumer)?;
        let s = self.stream(db, stream)?;
        if !s.cursors.contains_key(consumer) {
            return Ok(false);
        }
        let below_others = s.cursors.iter().filter(|(c, _)| c.as_slice() != consumer).map(|(_, v)| v.0).min();
        let mut ops = vec![Op::Delete(key::cursor(stream, consumer)), self.heads_op(db, stream)?];
        let trimmed = match below_others {
            Some(min) => Some(self.trim(db, &mut ops, stream, min.saturating_add(1))?),
            None => None,
        };
        if let Err(e) = write_ops(db, &ops) {
            self.forget(stream);
            return Err(e);
        }
        let s = self.stream(db, stream)?;
        s.cursors.remove(consumer);
        if trimmed.is_some() {
            s.trimmed = trimmed;
        }
        Ok(true)
    }

    /// The heads key as stored.
    fn stored_heads<S: Store + ?Sized>(&mut self, db: &mut S) -> Result<&[(Vec<u8>, u64)], Error> {
        if self.stored_heads.is_none() {
            let heads = match Store::get(db, &key::heads())? {
                Some(v) => key::decode_heads(&v).ok_or_else(|| foreign(&key::heads()))?,
                None => Vec::new(),
            };
            self.stored_heads = Some(heads);
        }
        Ok(self.stored_heads.as_deref().unwrap_or_default())
    }

    /// The write of the heads key for an acknowledgement on `stream`: every stream's newest
    /// seq this handle knows, merged with what was stored, at most [`key::MAX_HEADS`] of them
    /// (those acknowledged least recently by this handle go first).
    fn heads_op<S: Store + ?Sized>(&mut self, db: &mut S, stream: &[u8]) -> Result<Op, Error> {
        self.touched.retain(|s| s != stream);
        self.touched.push(stream.to_vec());
        let mut heads: BTreeMap<Vec<u8>, u64> = self.stored_heads(db)?.iter().cloned().collect();
        for (name, s) in &self.streams {
            let head = heads.entry(name.clone()).or_insert(0);
            *head = (*head).max(s.next.saturating_sub(1));
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
    pub fn stats<S: Store + ?Sized>(&mut self, db: &mut S, stream: &[u8]) -> Result<StreamStats, Error> {
        check_name("stream", stream)?;
        let s = self.stream(db, stream)?;
        let (newest_seq, from, cursors) = (s.next - 1, s.trimmed.unwrap_or(0), s.cursors.clone());
        let prefix_len = key::record_prefix(stream).len();
        let (mut oldest, mut newest, mut records, mut bytes) = (None, None, 0u64, 0u64);
        let (start, end) = (key::record(stream, from), key::record(stream, u64::MAX));
        db.for_each((Bound::Included(&start), Bound::Included(&end)), &mut |k, v| {
            let seq = key::record_seq(k, prefix_len).ok_or_else(|| foreign(k))?;
            oldest = oldest.or(Some(seq));
            newest = Some(seq);
            records += 1;
            bytes += (k.len() + v.len()) as u64;
            Ok(())
        })?;
        let mut consumers = Vec::new();
        for (name, (acked, evicted)) in cursors {
            // Records above the cursor that are gone were evicted before it acknowledged them.
            let next_present = match oldest {
                Some(o) if o > acked => o,
                Some(_) => first_from(db, stream, acked.saturating_add(1))?.unwrap_or(newest_seq + 1),
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
    pub fn streams<S: Store + ?Sized>(&mut self, db: &mut S) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        let mut from = key::heads();
        // The first key after every key that starts with the namespace.
        let end = b"\xFFoc".to_vec();
        loop {
            let Some(k) = db.seek((Bound::Excluded(&from), Bound::Excluded(&end)), false)? else {
                return Ok(out);
            };
            let (name, _) = key::split_stream(&k).ok_or_else(|| foreign(&k))?;
            let mut past = key::stream_prefix(name);
            past.push(0xFF);
            out.push(name.to_vec());
            from = past;
        }
    }
}
