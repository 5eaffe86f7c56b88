//! The outbox: named streams of records with strictly increasing sequence numbers, consumer
//! cursors stored durably, and trimming of what every consumer has acknowledged. It is what a
//! store-and-forward agent keeps on the device: the application appends readings while the
//! uplink is down, and a forwarder ([`crate::forward`], with the `mqtt` feature) drains them
//! when it is up.
//!
//! ```
//! use minivault::outbox::Outbox;
//! # let tmp = tempfile::tempdir()?;
//! let outbox = Outbox::open(tmp.path(), minivault::Options::default())?;
//! let first = outbox.append(b"telemetry", b"21.5")?;           // 1 on a new stream
//! outbox.append(b"telemetry", b"21.7")?;
//! let records = outbox.read(b"telemetry", first, 100)?;          // in seq order
//! assert_eq!(records[1].value, b"21.7");
//! outbox.ack(b"telemetry", b"uplink", records[1].seq)?;          // durable, atomic
//! assert_eq!(outbox.stats(b"telemetry")?.consumers[0].lag, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **Sequence numbers** start at 1 and are strictly increasing per stream, also across
//!   reopens: the next one is found by a reverse seek of the stream's records and its cursors
//!   (a stream whose records are all trimmed continues above its cursors), and above the head
//!   stored by the last acknowledgement when a space cap evicted every key a stream had. A
//!   stream that lost every key to the cap and has no stored head (never acknowledged, or
//!   left out of the [`key::MAX_HEADS`] heads kept) has nothing left to continue from: after a reopen its seqs start at 1 again. So does a
//!   panic in an outbox call (a bug), after which the counters are loaded again the same way.
//! - **Appends** are durable per the database's [`crate::Durability`]: on return with
//!   `Always`; up to the next sync otherwise. A power cut in a relaxed mode takes the newest
//!   unsynced appends, and their seqs are handed out again. The forwarder therefore syncs
//!   before it sends anything, so a record a receiver has seen is never taken back.
//! - **Acknowledgements** ([`Outbox::ack`]) store the consumer's cursor, and trim the records
//!   below every consumer's cursor, in one atomic write batch, durable per the mode. A cursor
//!   only moves forward. The trim is one range delete, made once 1,024 records are below every
//!   cursor ([`Outbox::with_trim_step`]): the engine flushes its MemTable after 32 range
//!   deletes, so one per acknowledgement would flush every 32 acknowledgements.
//! - **Delivery** through a consumer that acknowledges after the receiver has a record (the
//!   forwarder: after the broker's `PUBACK`) is *at least once*: after a crash, the records
//!   after the stored cursor are read and sent again. Receivers drop duplicates by `seq`:
//!   keep the highest seq seen per stream and ignore anything at or below it, where every hop
//!   keeps order (a shared subscription or several partitions do not: keep the set of seqs seen).
//! - **Eviction**: a space cap on the database can drop records nobody has acknowledged.
//!   [`Outbox::stats`] counts them per consumer ([`ConsumerStats::evicted_before_ack`]), from
//!   the gap between a cursor and the oldest record left.
//!
//! # Keys
//!
//! The outbox keeps its keys in the database under the prefix `FF 6F 62` (see [`key`] and
//! `docs/FORMAT.md`); an application may use any other key beside it.
//!
//! # Threads
//!
//! [`Outbox`] is a cheap `Clone` over a [`SharedDb`] (`Arc<Db>`): the application's writers
//! and a forwarder thread each hold a clone, and the application uses the same handle for its
//! own keys ([`Outbox::db`]) without waiting for the outbox. The outbox's sequence counters
//! and cursors sit behind one lock of its own, held for one outbox operation (one group of
//! appends with its sync, one batch of reads, one acknowledgement) and no longer; the
//! database's own calls take no lock of the outbox's. [`Streams`] is the same without the
//! lock, over any [`Store`].

mod group;
pub mod key;
pub mod store;
mod streams;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use store::{Store, Write};
pub use streams::{Streams, TRIM_STEP};

use crate::{Db, Error, Options};

/// A database handle shared between threads: [`Db`] is `Send + Sync`.
pub type SharedDb = Arc<Db>;

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its bytes, as appended.
    pub value: Vec<u8>,
}

/// A consumer's position on a stream: [`StreamStats::consumers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The consumer's name.
    pub name: Vec<u8>,
    /// The last seq it acknowledged.
    pub acked: u64,
    /// Seqs handed out after `acked`: how far behind the newest record it is.
    pub lag: u64,
    /// Records it never acknowledged because a space cap evicted them first: counted in its
    /// cursor when it acknowledged past them, plus those missing above its cursor now.
    pub evicted_before_ack: u64,
}

/// What a stream holds: [`Outbox::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream's name.
    pub stream: Vec<u8>,
    /// The oldest record's seq, if any record is left.
    pub oldest: Option<u64>,
    /// The newest record's seq, if any record is left.
    pub newest: Option<u64>,
    /// The seq the next append gets.
    pub next_seq: u64,
    /// Records held.
    pub records: u64,
    /// Bytes of their keys and values.
    pub bytes: u64,
    /// Every consumer with a cursor, in name order.
    pub consumers: Vec<ConsumerStats>,
    /// Records evicted before every consumer acknowledged them: the most any consumer lost.
    pub evicted_before_ack: u64,
}

/// Why an outbox call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxError {
    /// A stream or consumer name is empty or longer than [`key::MAX_NAME_LEN`] bytes.
    InvalidName {
        /// `stream` or `consumer`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// An acknowledgement of a seq the stream has not handed out yet.
    AckBeyondNewest {
        /// The seq acknowledged.
        seq: u64,
        /// The newest seq of the stream (0: none).
        newest: u64,
    },
    /// A key under the outbox's prefix that the outbox did not write (or a damaged value).
    ForeignKey {
        /// The key.
        key: Vec<u8>,
    },
    /// A stream has handed out seq `u64::MAX`.
    SeqExhausted,
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::InvalidName { what, len: 0 } => write!(f, "empty {what} name"),
            OutboxError::InvalidName { what, len } => {
                write!(f, "{what} name of {len} bytes: at most {} bytes", key::MAX_NAME_LEN)
            }
            OutboxError::AckBeyondNewest { seq, newest } => {
                write!(f, "cannot acknowledge seq {seq}: the stream's newest seq is {newest}")
            }
            OutboxError::ForeignKey { key } => write!(
                f,
                "key {} is in the outbox's key space (prefix \\xFFob) but was not written by it",
                crate::repl::format_value(key)
            ),
            OutboxError::SeqExhausted => f.write_str("the stream has used every sequence number"),
        }
    }
}

impl std::error::Error for OutboxError {}

/// Streams of records with consumer cursors over a [`SharedDb`]; see the [module docs](self).
///
/// `Clone` gives another handle to the same outbox (the same database and the same sequence
/// counters): give one to each thread. Make one `Outbox` per database and clone it; a second
/// one made with [`Outbox::new`] over the same database would hand out the same seqs.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: SharedDb,
    streams: Arc<Mutex<Streams>>,
    group: Arc<group::Group>,
}

impl Outbox {
    /// An outbox over a database shared with the rest of the application.
    pub fn new(db: SharedDb) -> Outbox {
        Outbox { db, streams: Arc::new(Mutex::new(Streams::new())), group: Arc::default() }
    }

    /// Deletes the records every consumer has acknowledged once there are `step` of them
    /// (default [`TRIM_STEP`], 1,024; 1: at every acknowledgement): see
    /// [`Streams::with_trim_step`]. Call it on a new outbox, before cloning it.
    pub fn with_trim_step(self, step: u64) -> Outbox {
        let streams = std::mem::take(&mut *self.lock_streams());
        Outbox { db: self.db, streams: Arc::new(Mutex::new(streams.with_trim_step(step))), group: self.group }
    }

    /// Opens the database in `dir` ([`Db::open_with`]) for an outbox; [`Outbox::db`] gives the
    /// handle for the application's other keys.
    ///
    /// # Errors
    ///
    /// As [`Db::open_with`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Outbox, Error> {
        Ok(Outbox::new(Arc::new(Db::open_with(dir, options)?)))
    }

    /// The shared database.
    pub fn db(&self) -> &SharedDb {
        &self.db
    }

    /// Runs `f` with the database and the sequence counters locked.
    fn with<R>(&self, f: impl FnOnce(&mut &Db, &mut Streams) -> R) -> R {
        f(&mut &*self.db, &mut self.lock_streams())
    }

    /// Locks the sequence counters. A panic while they were locked (in a write of the
    /// database, say, after its record was logged and before the counter moved past it) may
    /// have left them behind the database: they are forgotten and loaded from the database
    /// again, so that no seq is handed out twice.
    fn lock_streams(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|poisoned| {
            let mut streams = poisoned.into_inner();
            streams.forget_all();
            self.streams.clear_poison();
            streams
        })
    }

    /// Appends `value` to `stream` and returns its seq: one more than the stream's previous
    /// one (1 for a new stream). Durable on return with [`crate::Durability::Always`].
    ///
    /// Appends from several threads are committed together (group commit): those that arrive
    /// while a write is being synced go to the database in the next write, one WAL record and
    /// one sync for all of them; each call returns once its own record is durable.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`] for a stream name that is empty or over 255 bytes; the
    /// database's errors (a value over [`crate::MAX_VALUE_LEN`], I/O).
    pub fn append(&self, stream: &[u8], value: &[u8]) -> Result<u64, Error> {
        self.group.append(stream, value, |batch| {
            let records: Vec<(&[u8], &[u8])> =
                batch.iter().map(|q| (q.stream.as_slice(), q.value.as_slice())).collect();
            self.with(|db, s| s.append_many(db, &records))
        })
    }

    /// Appends every value of `values` to `stream` as one atomic write batch (one WAL record,
    /// one sync): all of them or, after a crash, none. Returns their seqs, in order.
    ///
    /// # Errors
    ///
    /// As [`Outbox::append`]; [`crate::BatchError::Full`] (as [`Error::Batch`]) for more than
    /// 65,535 values, and the engine's `BatchTooLarge` for more than 4 MiB of them (or more
    /// than a MemTable holds).
    pub fn append_batch<V: AsRef<[u8]>>(&self, stream: &[u8], values: &[V]) -> Result<Range<u64>, Error> {
        self.with(|db, s| s.append_batch(db, stream, values))
    }

    /// Up to `limit` records of `stream` with a seq of at least `from`, in seq order.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`]; the database's read errors.
    pub fn read(&self, stream: &[u8], from: u64, limit: usize) -> Result<Vec<Record>, Error> {
        self.with(|db, s| s.read(db, stream, from, limit, usize::MAX))
    }

    /// [`Outbox::read`], stopping once the records hold `max_bytes` of values (at least one
    /// record when there is one): what a forwarder reads per batch.
    ///
    /// # Errors
    ///
    /// As [`Outbox::read`].
    pub fn read_bounded(
        &self,
        stream: &[u8],
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, Error> {
        self.with(|db, s| s.read(db, stream, from, limit, max_bytes))
    }

    /// Acknowledges, for `consumer`, every record of `stream` up to and including `seq`:
    /// stores its cursor and trims the records below every consumer's cursor, in one atomic
    /// write batch, durable per the durability mode. Returns the cursor. A cursor never moves
    /// back: acknowledging a seq at or below it changes nothing. A consumer exists from its
    /// first acknowledgement on (acknowledge 0 to hold records back for it from now on) until
    /// [`Outbox::remove_consumer`].
    ///
    /// # Errors
    ///
    /// [`OutboxError::AckBeyondNewest`] for a seq the stream has not handed out;
    /// [`OutboxError::InvalidName`]; the database's errors.
    pub fn ack(&self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, Error> {
        self.with(|db, s| s.ack(db, stream, consumer, seq))
    }

    /// `consumer`'s cursor on `stream`: the last seq it acknowledged, 0 when none.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`]; the database's read errors.
    pub fn cursor(&self, stream: &[u8], consumer: &[u8]) -> Result<u64, Error> {
        self.with(|db, s| s.cursor(db, stream, consumer))
    }

    /// The newest seq `stream` has handed out (0: none).
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`]; the database's read errors.
    pub fn newest(&self, stream: &[u8]) -> Result<u64, Error> {
        self.with(|db, s| s.newest(db, stream))
    }

    /// Forgets `consumer`'s cursor on `stream` (it no longer holds records back) and trims
    /// what the remaining consumers have acknowledged. Returns whether it had a cursor.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`]; the database's errors.
    pub fn remove_consumer(&self, stream: &[u8], consumer: &[u8]) -> Result<bool, Error> {
        self.with(|db, s| s.remove_consumer(db, stream, consumer))
    }

    /// What `stream` holds and where each consumer is. Reads the whole stream (it sums the
    /// records' bytes), holding the lock meanwhile.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InvalidName`]; the database's read errors.
    pub fn stats(&self, stream: &[u8]) -> Result<StreamStats, Error> {
        self.with(|db, s| s.stats(db, stream))
    }

    /// The streams with records or cursors in the database, in key order.
    ///
    /// # Errors
    ///
    /// The database's read errors.
    pub fn streams(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.with(|db, s| s.streams(db))
    }

    /// How many [`Outbox::append`] calls this outbox (and its clones) made, and in how many
    /// writes (group commits) they went to the database.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.counts()
    }

    /// Makes every write so far durable ([`Db::sync`]).
    ///
    /// # Errors
    ///
    /// As [`Db::sync`].
    pub fn sync(&self) -> Result<(), Error> {
        self.with(|db, _| db.sync())
    }

    /// Makes every write so far durable ([`Db::sync`]), then runs `f` with the result while
    /// every other call on this outbox and its clones waits: for a process that exits after its
    /// final sync, so that no append slips in after it unsynced.
    pub fn sync_then<R>(&self, f: impl FnOnce(Result<(), Error>) -> R) -> R {
        self.with(|db, _| f(db.sync()))
    }
}
