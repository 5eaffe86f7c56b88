//! Compaction: merging the newest adjacent SSTables into one, so that the number of tables, the
//! probes per `get`, and the space held by overwritten, deleted and expired entries stay bounded.
//!
//! # Policy ([`pick`])
//! Size-tiered, like RocksDB's universal compaction: starting from the newest table, take the
//! next older one while it is no larger than everything taken so far (the two newest always
//! qualify); merge when that run has at least [`MIN_MERGE`] tables. Tables then form a binary
//! counter of sizes: about log2(data / MemTable size) + [`MIN_MERGE`] tables, and each entry
//! is rewritten about log2(data / MemTable size) times.
//!
//! # Merge ([`merge`])
//! A k-way merge that streams records from the inputs to the output without loading them: each
//! input has a cursor whose current key is held in a slot of scratch memory (as many bytes as the
//! inputs' longest key, recorded in their footers, per input, plus one slot for the last key
//! written; borrowed from the idle MemTable),
//! and records are copied through a 256-byte buffer with their checksums verified on the way.
//! The rest of the scratch holds the output's Bloom filter ([`crate::filter`]), sized for the
//! inputs' entry count when it fits and smaller otherwise.
//! On equal keys the newest input wins and the others are skipped. When the run includes the
//! oldest table nothing older can hide behind a tombstone or an expired entry, so those are
//! dropped.
//!
//! # Crash safety
//! The output is written as `<newest input id>.tmp`, synced, and renamed over the newest input;
//! its footer says `replaces_from` = the oldest input's id. Only then are the older inputs
//! removed. A crash before the rename leaves a `.tmp` that open removes; a crash after it leaves
//! older inputs that open recognises as replaced (their id lies in `[replaces_from, id)` of a
//! newer table) and removes, so a dropped tombstone can never let an old value resurface.

use embedded_io::Write;

use crate::entry::{EntryHeader, ENTRY_MAX_OVERHEAD};
use crate::error::{Corruption, Error};
use crate::filter::{self, FilterBuilder};
use crate::io::{read_exact_at, read_u32_at, ReadError};
use crate::names::FileName;
use crate::record::{Checksum, RecordHeader, HEADER_LEN};
use crate::sstable::{Footer, SsTableBuilder, FENCE_STRIDE};
use crate::storage::Storage;
use crate::MAX_KEY_LEN;

/// Fewest tables merged at once (unless forced by the table limit).
pub const MIN_MERGE: usize = 4;
/// Most tables merged at once.
pub const MAX_MERGE: usize = 16;
/// Most bytes of input merged at once: the output must keep its offsets within `u32`.
pub const MAX_MERGE_BYTES: u64 = 3 << 30;

/// Chooses the run of newest tables to merge, given table sizes oldest first; returns the index
/// of the oldest table of the run. `force` merges the newest `max_inputs` even when the policy
/// would wait (used when the table limit is near).
pub fn pick(sizes: &[u64], max_inputs: usize, force: bool) -> Option<usize> {
    let n = sizes.len();
    let max_inputs = max_inputs.min(MAX_MERGE);
    let mut start = n;
    let mut sum = 0u64;
    while start > 0 && n - start < max_inputs {
        let s = sizes[start - 1];
        if (n - start >= 2 && s > sum && !force) || sum + s > MAX_MERGE_BYTES {
            break;
        }
        sum += s;
        start -= 1;
    }
    let taken = n - start;
    // With little scratch memory, merge fewer tables rather than none.
    let min_merge = MIN_MERGE.min(max_inputs).max(2);
    (taken >= min_merge || (force && taken >= 2)).then_some(start)
}

/// One table being merged.
pub struct Input<'a, F> {
    /// Its open file.
    pub file: &'a mut F,
    /// Its footer.
    pub footer: Footer,
    /// Its name, for error reports.
    pub name: FileName,
}

#[derive(Default, Clone, Copy)]
struct Cursor {
    next: u32,
    done: bool,
    offset: u64,
    payload_len: usize,
    key_len: usize,
    tombstone: bool,
    expires_at: Option<u64>,
}

fn key_of<'s>(scratch: &'s [u8], sl: usize, i: usize, c: &Cursor) -> &'s [u8] {
    &scratch[i * sl..i * sl + c.key_len]
}

/// Bytes of scratch per key slot for merging `inputs`: their longest key.
pub fn slot_len<'a>(footers: impl Iterator<Item = &'a Footer>) -> usize {
    footers
        .filter(|f| f.entry_count > 0)
        .map(|f| if f.max_key_len == 0 { MAX_KEY_LEN } else { (f.max_key_len as usize).min(MAX_KEY_LEN) })
        .max()
        .unwrap_or(1)
}

/// Merges `inputs` (oldest first) into `out`, an empty file (`reader` is a second handle on the
/// same file). `scratch` must hold `(inputs.len() + 1) * slot_len` bytes, where
/// [`slot_len`] is the inputs' longest key. With
/// `drop_dead_at = Some(now)`, tombstones and entries expired at `now` are left out.
#[allow(clippy::too_many_arguments)]
pub fn merge<S: Storage>(
    storage: &mut S,
    inputs: &mut [Input<'_, S::File>],
    out: &mut S::File,
    reader: &mut S::File,
    scratch: &mut [u8],
    drop_dead_at: Option<u64>,
    wal_covered: u64,
    replaces_from: u64,
) -> Result<Footer, Error<S::Error>> {
    let k = inputs.len();
    let sl = slot_len(inputs.iter().map(|i| &i.footer));
    if k > MAX_MERGE || scratch.len() < (k + 1) * sl {
        return Err(Error::InsufficientMemory { needed: (k + 1) * sl, given: scratch.len() });
    }
    // Key slots first; the rest of the scratch holds the output's filter.
    let (scratch, filter_mem) = scratch.split_at_mut((k + 1) * sl);
    let keys = inputs.iter().fold(0usize, |n, i| n.saturating_add(i.footer.entry_count as usize));
    let mut filter = FilterBuilder::new(filter_mem, keys);
    let mut cursors = [Cursor::default(); MAX_MERGE];
    for i in 0..k {
        load(storage, &mut inputs[i], &mut cursors[i], &mut scratch[i * sl..(i + 1) * sl])?;
    }
    let mut builder = SsTableBuilder::new();
    let mut last: Option<usize> = None; // length of the last key written, held in slot k
    loop {
        // The smallest current key; on equal keys the newest input wins.
        let mut winner: Option<usize> = None;
        for i in 0..k {
            if cursors[i].done {
                continue;
            }
            winner = match winner {
                Some(w) if key_of(scratch, sl, i, &cursors[i]) > key_of(scratch, sl, w, &cursors[w]) => {
                    Some(w)
                }
                _ => Some(i),
            };
        }
        let Some(w) = winner else { break };
        let c = cursors[w];
        let (head, tail) = scratch.split_at_mut(k * sl);
        let key = &head[w * sl..w * sl + c.key_len];
        if let Some(l) = last {
            if key <= &tail[..l] {
                return Err(Error::Corrupted {
                    file: inputs[w].name.clone(),
                    offset: c.offset,
                    kind: Corruption::BadLayout,
                });
            }
        }
        tail[..c.key_len].copy_from_slice(key);
        last = Some(c.key_len);

        let dead = drop_dead_at.is_some_and(|now| c.tombstone || c.expires_at.is_some_and(|t| t <= now));
        if !dead {
            copy_record(storage, &mut inputs[w], &c, out, &mut builder, &tail[..c.key_len])?;
            if let Some(f) = filter.as_mut() {
                f.add(filter::key_hash(&tail[..c.key_len]));
            }
        }
        // Move every cursor sitting on this key past it (the winner and the entries it shadows).
        for i in 0..k {
            let on_key = !cursors[i].done && {
                let (head, tail) = scratch.split_at(k * sl);
                head[i * sl..i * sl + cursors[i].key_len] == tail[..c.key_len]
            };
            if on_key {
                load(storage, &mut inputs[i], &mut cursors[i], &mut scratch[i * sl..(i + 1) * sl])?;
            }
        }
    }

    // Pass 2: the index, from the record lengths in the data just written.
    storage.io(out).flush().map_err(Error::Storage)?;
    let data_len = builder.data_len();
    let mut pos = 0u64;
    while pos < data_len {
        let mut hb = [0u8; HEADER_LEN];
        read_exact_at(&mut storage.io(reader), pos, &mut hb).map_err(|e| match e {
            ReadError::Io(e) => Error::Storage(e),
            ReadError::Corrupt { offset, kind } => Error::Corrupted { file: FileName::new(), offset, kind },
        })?;
        let len = RecordHeader::decode(hb).len as usize;
        builder.add_index_len(&mut storage.io(out), len).map_err(Error::Storage)?;
        pos += (HEADER_LEN + len) as u64;
    }
    // Passes 3 and 4: the fences, from the keys of every FENCE_STRIDE-th record just written.
    // Each key is read back with its record's checksum verified, and pass 4 checks that the keys
    // ascend and that their lengths add up to pass 3's: the fences are sealed by `index_crc`, so a
    // misread here must be an error now, not a key that later reads as absent.
    storage.io(out).flush().map_err(Error::Storage)?;
    let count = builder.count();
    let misread =
        || Error::Corrupted { file: FileName::new(), offset: data_len, kind: Corruption::BadLayout };
    // Slot 0 keeps the previous fence key; the slots after it hold the current one.
    let (prev, rest) = scratch.split_at_mut(sl);
    let slot_len = sl.min(rest.len());
    let slot = &mut rest[..slot_len];
    for i in (0..count).step_by(FENCE_STRIDE as usize) {
        let n = output_key(storage, reader, data_len, i, slot)?;
        builder.add_fence_len(&mut storage.io(out), n).map_err(Error::Storage)?;
    }
    let mut prev_len: Option<usize> = None;
    for i in (0..count).step_by(FENCE_STRIDE as usize) {
        let n = output_key(storage, reader, data_len, i, slot)?;
        if prev_len.is_some_and(|p| prev[..p] >= slot[..n]) {
            return Err(misread());
        }
        builder.add_fence_key(&mut storage.io(out), &slot[..n]).map_err(Error::Storage)?;
        prev[..n].copy_from_slice(&slot[..n]);
        prev_len = Some(n);
    }
    if !builder.fences_complete() {
        return Err(misread());
    }
    let filter = filter.map_or(&[][..], FilterBuilder::finish);
    builder.finish(&mut storage.io(out), filter, wal_covered, replaces_from).map_err(Error::Storage)
}

/// Reads the key of record `i` of the output being written (whose data section is `data_len`
/// bytes, followed by its index) into `slot`, verifying the record's checksum; returns the key's
/// length.
fn output_key<S: Storage>(
    storage: &mut S,
    reader: &mut S::File,
    data_len: u64,
    i: u32,
    slot: &mut [u8],
) -> Result<usize, Error<S::Error>> {
    let name = FileName::new();
    let err = to_error(&name);
    let io = &mut storage.io(reader);
    let offset = read_u32_at(io, data_len + i as u64 * 4).map_err(&err)? as u64;
    let bad = |kind| Error::Corrupted { file: FileName::new(), offset, kind };
    let mut hb = [0u8; HEADER_LEN];
    read_exact_at(io, offset, &mut hb).map_err(&err)?;
    let rh = RecordHeader::decode(hb);
    let len = rh.payload_len().map_err(bad)?;
    let mut crc = Checksum::new();
    let mut buf = [0u8; 128];
    let (mut key_start, mut key_len) = (0, 0);
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        read_exact_at(io, offset + (HEADER_LEN + done) as u64, &mut buf[..n]).map_err(&err)?;
        crc.update(&buf[..n]);
        if done == 0 {
            let h = EntryHeader::decode(&buf[..n]).map_err(bad)?;
            (key_start, key_len) = (h.encoded_len(), h.key_len);
            if key_start + key_len > len || key_len > slot.len() {
                return Err(bad(Corruption::BadEntry));
            }
        }
        // The part of the key inside this chunk.
        let (a, b) = (key_start.max(done), (key_start + key_len).min(done + n));
        if a < b {
            slot[a - key_start..b - key_start].copy_from_slice(&buf[a - done..b - done]);
        }
        done += n;
    }
    let got = crc.finish();
    if got != rh.crc {
        return Err(bad(Corruption::ChecksumMismatch { expected: rh.crc, got }));
    }
    Ok(key_len)
}

fn to_error<E>(name: &FileName) -> impl Fn(ReadError<E>) -> Error<E> + '_ {
    move |e| match e {
        ReadError::Io(e) => Error::Storage(e),
        ReadError::Corrupt { offset, kind } => Error::Corrupted { file: name.clone(), offset, kind },
    }
}

/// Positions `c` on the next record of `input`, with its key in `key_slot`.
fn load<S: Storage>(
    storage: &mut S,
    input: &mut Input<'_, S::File>,
    c: &mut Cursor,
    key_slot: &mut [u8],
) -> Result<(), Error<S::Error>> {
    if c.next >= input.footer.entry_count {
        c.done = true;
        return Ok(());
    }
    let err = to_error(&input.name);
    let io = &mut storage.io(input.file);
    let index_offset = input.footer.index_offset;
    let offset = read_u32_at(io, index_offset + c.next as u64 * 4).map_err(&err)? as u64;
    let bad = |kind| Error::Corrupted { file: input.name.clone(), offset, kind };
    let mut hb = [0u8; HEADER_LEN];
    read_exact_at(io, offset, &mut hb).map_err(&err)?;
    let len = RecordHeader::decode(hb).payload_len().map_err(bad)?;
    if offset + (HEADER_LEN + len) as u64 > index_offset {
        return Err(bad(Corruption::BadLayout));
    }
    let mut eh = [0u8; ENTRY_MAX_OVERHEAD];
    let n = len.min(ENTRY_MAX_OVERHEAD);
    read_exact_at(io, offset + HEADER_LEN as u64, &mut eh[..n]).map_err(&err)?;
    let h = EntryHeader::decode(&eh[..n]).map_err(bad)?;
    let key_start = h.encoded_len();
    if key_start + h.key_len > len {
        return Err(bad(Corruption::BadEntry));
    }
    let dst = key_slot.get_mut(..h.key_len).ok_or(bad(Corruption::BadEntry))?;
    read_exact_at(io, offset + (HEADER_LEN + key_start) as u64, dst).map_err(&err)?;
    *c = Cursor {
        next: c.next + 1,
        done: false,
        offset,
        payload_len: len,
        key_len: h.key_len,
        tombstone: h.tombstone,
        expires_at: h.expires_at,
    };
    Ok(())
}

/// Copies the record under cursor `c` to the output, verifying its checksum on the way.
fn copy_record<S: Storage>(
    storage: &mut S,
    input: &mut Input<'_, S::File>,
    c: &Cursor,
    out: &mut S::File,
    builder: &mut SsTableBuilder,
    key: &[u8],
) -> Result<(), Error<S::Error>> {
    let err = to_error(&input.name);
    let mut hb = [0u8; HEADER_LEN];
    read_exact_at(&mut storage.io(input.file), c.offset, &mut hb).map_err(&err)?;
    builder.add_raw(&mut storage.io(out), &hb).map_err(Error::Storage)?;
    let mut crc = Checksum::new();
    let mut buf = [0u8; 256];
    let mut done = 0;
    // The key the merge ordered this record by (and put in the filter) must be the key in the
    // checksummed bytes copied: a misread in `load` is corruption, not a misplaced record.
    let mut key_start = usize::MAX;
    let mut same_key = true;
    while done < c.payload_len {
        let n = (c.payload_len - done).min(buf.len());
        let at = c.offset + (HEADER_LEN + done) as u64;
        read_exact_at(&mut storage.io(input.file), at, &mut buf[..n]).map_err(&err)?;
        crc.update(&buf[..n]);
        if done == 0 {
            match EntryHeader::decode(&buf[..n]) {
                Ok(h) if h.key_len == key.len() => key_start = h.encoded_len(),
                _ => same_key = false,
            }
        }
        if same_key {
            let (a, b) = (key_start.max(done), key_start.saturating_add(key.len()).min(done + n));
            if a < b && buf[a - done..b - done] != key[a - key_start..b - key_start] {
                same_key = false;
            }
        }
        builder.add_raw(&mut storage.io(out), &buf[..n]).map_err(Error::Storage)?;
        done += n;
    }
    let expected = RecordHeader::decode(hb).crc;
    let got = crc.finish();
    let kind = if got != expected {
        Some(Corruption::ChecksumMismatch { expected, got })
    } else if !same_key {
        Some(Corruption::BadEntry)
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(Error::Corrupted { file: input.name.clone(), offset: c.offset, kind });
    }
    builder.end_record(c.key_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_equal_tables_are_merged() {
        assert_eq!(pick(&[10, 10, 10, 10], 16, false), Some(0));
        assert_eq!(pick(&[10, 10, 10], 16, false), None);
    }

    #[test]
    fn a_much_larger_older_table_is_left_alone() {
        assert_eq!(pick(&[80, 10, 10, 10, 10], 16, false), Some(1));
        assert_eq!(pick(&[40, 10, 10, 10, 10], 16, false), Some(0));
    }

    #[test]
    fn table_count_stays_logarithmic_under_repeated_flushes() {
        let mut sizes: Vec<u64> = vec![];
        let mut most = 0;
        for _ in 0..1000 {
            sizes.push(1);
            while let Some(start) = pick(&sizes, 16, false) {
                let merged: u64 = sizes[start..].iter().sum();
                sizes.truncate(start);
                sizes.push(merged);
            }
            most = most.max(sizes.len());
        }
        assert_eq!(sizes.iter().sum::<u64>(), 1000);
        assert!(most <= 16, "{most} tables at once");
    }

    #[test]
    fn input_count_is_capped_and_force_takes_two() {
        assert_eq!(pick(&[1; 10], 3, false), Some(7));
        assert_eq!(pick(&[1; 10], 1, false), None);
        assert_eq!(pick(&[1; 10], 4, false), Some(6));
        assert_eq!(pick(&[100, 1], 4, true), Some(0));
    }
}
