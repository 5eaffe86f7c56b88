//! Compaction: merging the newest adjacent SSTables into one, so that the number of tables, the
//! probes per `get`, and the space held by overwritten, deleted and expired entries stay bounded.
//!
//! Three files, one step each: [`policy`] chooses the tables (from their sizes alone), [`merge`](mod@merge)
//! writes their merged contents as one table, and [`run`] (here) carries a compaction out: it asks
//! the policy, merges into `<id>.tmp`, and has the table set ([`crate::version::Version`]) make
//! the output live in place of its inputs. The scratch memory is the idle MemTable's buffer.
//!
//! # Crash safety
//! The output is written as `<newest input id>.tmp`, synced, and renamed over the newest input;
//! its footer says `replaces_from` = the oldest input's id. Only then are the older inputs
//! removed. A crash before the rename leaves a `.tmp` that open removes; a crash after it leaves
//! older inputs that open recognises as replaced (their id lies in `[replaces_from, id)` of a
//! newer table) and removes, so a dropped tombstone can never let an old value resurface.

pub mod merge;
pub mod policy;

pub use merge::{merge, slot_len, Output};
pub use policy::{pick, MIN_MERGE};

use heapless::Vec;

use crate::error::Error;
use crate::limits::{MAX_MERGE_BYTES, MAX_TABLES};
use crate::names::{file_name, FileKind};
use crate::space::{discard_if_full, no_space};
use crate::storage::Storage;
use crate::version::Version;

/// Merges the newest tables when the policy ([`pick`]) asks for it, using `scratch` (the idle
/// MemTable's buffer); `now` is the time at which tombstones and expired entries may be dropped
/// (when the run includes the oldest table); `merge_limit` caps the bytes of the inputs (see
/// [`crate::space::Space::merge_limit`]). Returns whether a compaction ran. On a full storage
/// the output's temporary file is removed and the error is [`Error::Full`]: the tables are as
/// they were.
pub fn run<S: Storage>(
    storage: &mut S,
    version: &mut Version<S::File>,
    scratch: &mut [u8],
    now: u64,
    merge_limit: Option<u64>,
) -> Result<bool, Error<S::Error>> {
    let slot = slot_len(version.tables().iter().map(|t| t.footer()));
    // A merge holds a key slot per input and one more; merging range deletes, at least
    // `RANGE_SLOTS` in all.
    let slots = scratch.len() / slot;
    if version.tables().iter().any(|t| t.footer().range_count > 0) && slots < merge::RANGE_SLOTS {
        return Ok(false);
    }
    let max_inputs = slots.saturating_sub(1);
    if max_inputs < 2 {
        return Ok(false);
    }
    let mut sizes: Vec<u64, MAX_TABLES> = Vec::new();
    for t in version.tables() {
        let _ = sizes.push(t.bytes());
    }
    let force = version.len() + 1 >= MAX_TABLES;
    let max_bytes = merge_limit.map_or(MAX_MERGE_BYTES, |m| m.min(MAX_MERGE_BYTES));
    let Some(start) = pick(&sizes, max_inputs, max_bytes, force) else { return Ok(false) };
    compact(storage, version, start, scratch, now)?;
    Ok(true)
}

/// Merges tables `start..` into one that takes the newest input's id.
fn compact<S: Storage>(
    storage: &mut S,
    version: &mut Version<S::File>,
    start: usize,
    scratch: &mut [u8],
    now: u64,
) -> Result<(), Error<S::Error>> {
    let inputs = version.tables().get(start..).unwrap_or(&[]);
    let (Some(oldest), Some(newest)) = (inputs.first(), inputs.last()) else { return Ok(()) };
    let replaces_from = oldest.footer().replaces_from;
    let id = newest.id();
    let wal_covered = inputs.iter().map(|t| t.footer().wal_covered).max().unwrap_or(0);
    // Nothing older than the oldest table can hide behind a tombstone or an expired entry.
    let drop_dead_at = (start == 0).then_some(now);
    let tmp = file_name(FileKind::TempTable, id);
    let mut out = storage.create(&tmp).map_err(|e| no_space(storage, e))?;
    let mut reader = match storage.open(&tmp) {
        Ok(r) => r,
        Err(e) => {
            drop(out);
            return Err(discard_if_full(storage, &tmp, Error::Storage(e)));
        }
    };
    let inputs = version.tables_mut().get_mut(start..).unwrap_or(&mut []);
    let output = Output { file: &mut out, reader: &mut reader, name: &tmp, wal_covered, replaces_from };
    let merged = merge(storage, inputs, output, scratch, drop_dead_at);
    drop(reader);
    match merged {
        Ok(footer) => version.replace(storage, start, out, footer),
        Err(e) => {
            drop(out);
            Err(discard_if_full(storage, &tmp, e))
        }
    }
}
