//! The REPL over a [`Db`]: [`ReplBackend`] for the handle, with the `stats` line and the
//! readable `info` report, and [`Session`]: the same, keeping the outbox's per-stream state
//! between commands (what the binary uses).

use std::fmt::Write as _;
use std::ops::Bound;
use std::time::Duration;

use super::format::{human_bytes, human_count};
use super::run::{ReplBackend, ScanQuery};
use crate::outbox::{Record, StreamStats, Streams};
use crate::{Db, Error, Ttl, WriteBatch};

impl ReplBackend for Db {
    type Error = Error;

    fn put(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        match ttl {
            Some(ttl) => self.put_with_ttl(key, value, ttl),
            None => Db::put(self, key, value),
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Db::get(self, key)
    }

    fn ttl(&mut self, key: &[u8]) -> Result<Ttl, Error> {
        Db::ttl(self, key)
    }

    fn delete(&mut self, keys: &[Vec<u8>]) -> Result<(), Error> {
        match keys {
            [key] => Db::delete(self, key),
            keys => {
                // All or none: one batch, one WAL record. Its buffer is what the entries need.
                let bytes = keys.iter().map(|k| k.len() + 16).sum::<usize>() + 16;
                let mut batch = WriteBatch::new(vec![0u8; bytes]);
                for key in keys {
                    batch.delete(key)?;
                }
                self.write_batch(&batch)
            }
        }
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), Error> {
        Db::delete_range(self, start, end)
    }

    fn flush(&mut self) -> Result<(), Error> {
        Db::flush(self)
    }

    fn sync(&mut self) -> Result<(), Error> {
        Db::sync(self)
    }

    fn stats(&mut self) -> Result<String, Error> {
        let s = Db::stats(self);
        let r = self.row_cache_stats();
        let b = self.background_stats();
        let sizes: Vec<String> = self.tables().iter().map(|t| t.bytes.to_string()).collect();
        Ok(format!(
            "memtable_keys={}/{} memtable_bytes={}/{} immutable_keys={} sstables={} sstable_bytes={} sstable_sizes=[{}] wal_bytes={} flushes={} row_cache_hits={} row_cache_misses={} row_cache_rows={} row_cache_bytes={}/{} flush_waits={} paced_writes={} slowed_writes={} stopped_writes={} stalled_ms={}",
            s.memtable_keys,
            s.memtable_key_capacity,
            s.memtable_bytes,
            s.memtable_capacity_bytes,
            s.immutable_keys,
            s.tables,
            s.table_bytes,
            sizes.join(","),
            s.wal_bytes,
            s.flushes,
            r.hits,
            r.misses,
            r.rows,
            r.bytes,
            r.capacity_bytes,
            b.flush_waits,
            b.paced_writes,
            b.slowed_writes,
            b.stopped_writes,
            b.stalled.as_millis(),
        ))
    }

    fn scan(&mut self, q: &ScanQuery<'_>) -> Result<Vec<crate::scan::Entry>, Error> {
        let limit = usize::try_from(q.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        let range = match q.prefix {
            Some(p) => Db::prefix(self, p),
            None => Db::range::<&[u8], _>(self, (bound(q.start, true), bound(q.end, false))),
        };
        if q.reverse {
            range.rev().take(limit).collect()
        } else {
            range.take(limit).collect()
        }
    }

    fn count(&mut self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<u64, Error> {
        Db::count::<&[u8], _>(self, (bound(start, true), bound(end, false)))
    }

    // Each outbox command loads the stream afresh (a reverse seek for its next seq, a scan of
    // its cursors): [`Session`] keeps them between commands.
    fn append(&mut self, stream: &[u8], value: &[u8]) -> Result<u64, Error> {
        Streams::new().append(self, stream, value)
    }

    fn read(&mut self, stream: &[u8], from: u64, limit: Option<u64>) -> Result<Vec<Record>, Error> {
        let limit = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        Streams::new().read(self, stream, from, limit, usize::MAX)
    }

    fn ack(&mut self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, Error> {
        Streams::new().with_trim_step(1).ack(self, stream, consumer, seq)
    }

    fn lag(&mut self, stream: &[u8]) -> Result<StreamStats, Error> {
        Streams::new().stats(self, stream)
    }

    fn info(&mut self) -> Result<String, Error> {
        let s = Db::stats(self);
        let r = self.row_cache_stats();
        let o = *self.options();
        let keys = |n: usize| counted(n as u64, "key");
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# database");
        let _ = writeln!(out, "dir        {}", self.path().display());
        if self.is_read_only() {
            let _ = writeln!(out, "mode       read-only: the database as it was when opened; writes refused");
        } else {
            let _ = writeln!(out, "durability {:?}", o.durability);
        }
        let threads = if o.read_only { 0 } else { o.background_threads };
        let _ = writeln!(
            out,
            "memory     at most {} (2 MemTables of {}, {} merge buffers and {} flush copy as large, page cache {}, row cache {}, table indexes {})",
            human_bytes(o.memory_bytes()),
            human_bytes(o.memtable_bytes as u64),
            threads,
            usize::from(threads > 0),
            human_bytes(o.cache_bytes as u64),
            human_bytes(o.row_cache_bytes as u64),
            human_bytes(o.index_bytes as u64),
        );
        let _ = writeln!(out, "disk       {}", disk_usage(self));
        let when_full = match o.when_full {
            crate::WhenFull::RefuseWrites => "writes refused",
            crate::WhenFull::DropOldest => "oldest tables dropped",
        };
        match o.max_bytes {
            Some(cap) => {
                let _ = writeln!(
                    out,
                    "space      {} of a {} cap, {when_full} when full; {} full refusals",
                    human_bytes(s.file_bytes),
                    human_bytes(cap),
                    human_count(s.full_refusals),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "space      {}, no cap; a full disk: {when_full}; {} full refusals",
                    human_bytes(s.file_bytes),
                    human_count(s.full_refusals),
                );
            }
        }
        if s.evicted_tables > 0 {
            let _ = writeln!(
                out,
                "evicted    {} tables, {} entries, {} (oldest first, to stay under the cap)",
                human_count(s.evicted_tables),
                human_count(s.evicted_entries),
                human_bytes(s.evicted_bytes),
            );
        }
        if s.expired_tables > 0 {
            let _ = writeln!(
                out,
                "expired    {} tables, {} (removed whole: every entry's TTL had passed)",
                human_count(s.expired_tables),
                human_bytes(s.expired_bytes),
            );
        }
        let step = minivault_core::wal::chunk_for(o.wal_preallocation_bytes, s.memtable_capacity_bytes);
        let _ = writeln!(
            out,
            "wal step   {} (the WAL is extended this far ahead of its records)",
            if step == 0 { String::from("off") } else { human_bytes(step) }
        );
        let _ = writeln!(out, "# memtable");
        let _ = writeln!(
            out,
            "active     {} of {}, {} (holds {})",
            human_bytes(s.memtable_bytes as u64),
            human_bytes(s.memtable_capacity_bytes as u64),
            keys(s.memtable_keys),
            keys(s.memtable_key_capacity),
        );
        let _ = writeln!(out, "immutable  {}", keys(s.immutable_keys));
        let _ = writeln!(out, "wal        {} of records", human_bytes(s.wal_bytes));
        let _ = writeln!(out, "# sstables");
        let _ = writeln!(out, "tables     {}, {}", s.tables, human_bytes(s.table_bytes));
        let _ = writeln!(out, "flushes    {}", s.flushes);
        let _ = writeln!(out, "compactions {}", s.compactions);
        let _ = writeln!(out, "# reads");
        let _ = writeln!(
            out,
            "row cache  {}, {} of {}; {} hits, {} misses, {} not cached (read once while full)",
            counted(r.rows as u64, "row"),
            human_bytes(r.bytes as u64),
            human_bytes(r.capacity_bytes as u64),
            human_count(r.hits),
            human_count(r.misses),
            human_count(r.declined),
        );
        let ix = self.index_stats();
        let _ = writeln!(
            out,
            "indexes    {} of {} tables resident ({} filters), {} of {}; {} loads refused for room",
            ix.resident_tables,
            s.tables,
            ix.resident_filters,
            human_bytes(ix.resident_bytes as u64),
            human_bytes(ix.budget_bytes as u64),
            human_count(ix.refused_loads),
        );
        let _ = writeln!(
            out,
            "engine     {} gets, {} SSTable probes, {} skipped by filters",
            human_count(s.gets),
            human_count(s.table_probes),
            human_count(s.filter_skips),
        );
        if self.is_poisoned() {
            let _ = writeln!(out, "# state");
            let _ = writeln!(out, "poisoned   a write or sync failed: writes are refused until reopened");
        }
        Ok(out)
    }
}

/// The REPL over a [`Db`] that keeps the outbox's per-stream state ([`Streams`]) between
/// commands, so that a script of appends finds each stream's next seq once, not once per
/// command (a reverse seek, which sorts the active MemTable after every write). The binary
/// runs its sessions and one-shot commands through it.
#[derive(Debug)]
pub struct Session {
    db: Db,
    streams: Streams,
}

impl Session {
    /// A session over `db`.
    pub fn new(db: Db) -> Session {
        // A REPL's acknowledgements are few: each trims what it can at once.
        Session { db, streams: Streams::new().with_trim_step(1) }
    }

    /// The database back, to close it.
    pub fn into_db(self) -> Db {
        self.db
    }
}

impl ReplBackend for Session {
    type Error = Error;

    fn put(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        ReplBackend::put(&mut self.db, key, value, ttl)
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Db::get(&self.db, key)
    }
    fn ttl(&mut self, key: &[u8]) -> Result<Ttl, Error> {
        Db::ttl(&self.db, key)
    }
    fn delete(&mut self, keys: &[Vec<u8>]) -> Result<(), Error> {
        ReplBackend::delete(&mut self.db, keys)
    }
    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), Error> {
        Db::delete_range(&self.db, start, end)
    }
    fn flush(&mut self) -> Result<(), Error> {
        Db::flush(&self.db)
    }
    fn sync(&mut self) -> Result<(), Error> {
        Db::sync(&self.db)
    }
    fn stats(&mut self) -> Result<String, Error> {
        ReplBackend::stats(&mut self.db)
    }
    fn info(&mut self) -> Result<String, Error> {
        ReplBackend::info(&mut self.db)
    }
    fn scan(&mut self, query: &ScanQuery<'_>) -> Result<Vec<crate::scan::Entry>, Error> {
        ReplBackend::scan(&mut self.db, query)
    }
    fn count(&mut self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<u64, Error> {
        ReplBackend::count(&mut self.db, start, end)
    }
    fn append(&mut self, stream: &[u8], value: &[u8]) -> Result<u64, Error> {
        self.streams.append(&mut self.db, stream, value)
    }
    fn read(&mut self, stream: &[u8], from: u64, limit: Option<u64>) -> Result<Vec<Record>, Error> {
        let limit = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        self.streams.read(&mut self.db, stream, from, limit, usize::MAX)
    }
    fn ack(&mut self, stream: &[u8], consumer: &[u8], seq: u64) -> Result<u64, Error> {
        self.streams.ack(&mut self.db, stream, consumer, seq)
    }
    fn lag(&mut self, stream: &[u8]) -> Result<StreamStats, Error> {
        self.streams.stats(&mut self.db, stream)
    }
}

/// `1 key`, `49,152 keys`.
/// A scan bound: START is inclusive, END exclusive, `None` open.
fn bound(key: Option<&[u8]>, start: bool) -> Bound<&[u8]> {
    match key {
        None => Bound::Unbounded,
        Some(k) if start => Bound::Included(k),
        Some(k) => Bound::Excluded(k),
    }
}

fn counted(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", human_count(n), if n == 1 { "" } else { "s" })
}

/// What the directory's files take on disk (allocated blocks, as `du` counts them), and how
/// many there are; `unknown` when the directory cannot be listed.
fn disk_usage(db: &Db) -> String {
    use std::os::unix::fs::MetadataExt;
    // Files the database no longer needs are unlinked by a thread of their own: not counted.
    db.settle_removals();
    let Ok(entries) = std::fs::read_dir(db.path()) else {
        return String::from("unknown");
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    for meta in entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()) {
        files += 1;
        bytes += meta.blocks().saturating_mul(512);
    }
    format!("{} in {}", human_bytes(bytes), counted(files, "file"))
}
