//! The compaction policy: which tables to merge, decided from their sizes alone.
//!
//! Size-ratio tiering. Walking from the newest table to the oldest, the tables fall into
//! *tiers*: a table joins the tier of the newer ones next to it while it is less than
//! [`TIER_RATIO`] times the smallest of them; a table that large starts the next, older tier.
//! A tier of at least [`TIER_WIDTH`] tables is merged into one table (the newest such tier
//! first), which usually starts a tier [`TIER_WIDTH`] times larger. Tables then form a counter
//! in base [`TIER_WIDTH`]: at most about `(TIER_WIDTH - 1) × log8(data / MemTable size) +
//! TIER_WIDTH` tables, and each entry is rewritten about log8(data / MemTable size) times (the
//! binary size-tiered policy before it: log2, about three times as often).
//!
//! A merge needs neither the newest nor the oldest table: a tier in the middle of the tables is
//! merged where it lies ([`crate::version::Version::replace_run`] keeps the lineage rule, since
//! its tables are adjacent). Dead entries are dropped only by a run that starts at the oldest
//! table (the caller decides that from the index returned): deleted and overwritten data in the
//! oldest tier is reclaimed when that tier fills, so space held by dead entries can reach about
//! [`TIER_WIDTH`] times the live data in the worst case (under a cap, `WhenFull` bounds it).
//!
//! Near the table limit ([`super::table_limit`]: [`crate::limits::MAX_TABLES`], or fewer on a
//! storage with few files) the caller forces a merge of the newest tables whatever their tiers.
//!
//! Not done here: *trivial moves*. A table that overlaps nothing could be kept as it is rather
//! than merged (sequential keys would then be written once), but only in a table set that holds
//! runs of many non-overlapping tables: more than [`crate::limits::MAX_TABLES`] slots, the key
//! bounds of each table at hand for reads, and a lineage in which one compaction may leave
//! several outputs. The table set is one sequence of tables ordered by age, each the merge of an
//! interval of ids ([`crate::version`]); with at most 32 of them, every flushed table must
//! eventually be merged.

use crate::limits::MAX_MERGE;

/// Tables of one tier merged at once (unless forced by the table limit or a byte limit).
pub const TIER_WIDTH: usize = 8;

/// A table at least this many times larger than the smallest table of the newer tier next to it
/// starts an older tier.
pub const TIER_RATIO: u64 = 4;

/// Fewest tables merged at once when nothing forces a merge.
pub const MIN_MERGE: usize = TIER_WIDTH;

/// Chooses the run of adjacent tables to merge, given table sizes oldest first; returns the
/// run `start..end` (indices into `sizes`), at most `max_inputs` tables holding at most
/// `max_bytes` in all. `force` merges the newest `max_inputs` (at least two) even when the
/// policy would wait (used when the table limit is near).
pub fn pick(sizes: &[u64], max_inputs: usize, max_bytes: u64, force: bool) -> Option<(usize, usize)> {
    let n = sizes.len();
    let max_inputs = max_inputs.min(MAX_MERGE);
    if max_inputs < 2 {
        return None;
    }
    if force {
        return newest_within(sizes, 0, n, max_inputs, max_bytes, 2);
    }
    // With little scratch memory, merge fewer tables rather than none.
    let width = TIER_WIDTH.min(max_inputs);
    let mut end = n;
    while end > 0 {
        let mut start = end - 1;
        let mut least = sizes.get(start).copied().unwrap_or(0);
        while let Some(&s) = start.checked_sub(1).and_then(|i| sizes.get(i)) {
            if s >= least.saturating_mul(TIER_RATIO) {
                break;
            }
            least = least.min(s);
            start -= 1;
        }
        if end - start >= width {
            // A tier larger than the byte limit: its newest tables that fit, if they hold over
            // half of the limit (their output is then too large to be merged again under it,
            // so no table is rewritten forever).
            let sum: u64 = sizes.get(start..end).map_or(0, |t| t.iter().sum());
            if sum <= max_bytes {
                return Some((end - (end - start).min(max_inputs), end));
            }
            if let Some(run) = newest_within(sizes, start, end, max_inputs, max_bytes, 2) {
                let held: u64 = sizes.get(run.0..run.1).map_or(0, |t| t.iter().sum());
                if held * 2 > max_bytes {
                    return Some(run);
                }
            }
        }
        end = start;
    }
    None
}

/// The newest tables of `sizes[start..end]`, at most `max_inputs` of them and `max_bytes` in all;
/// `None` when that is fewer than `least` tables.
fn newest_within(
    sizes: &[u64],
    start: usize,
    end: usize,
    max_inputs: usize,
    max_bytes: u64,
    least: usize,
) -> Option<(usize, usize)> {
    let mut from = end;
    let mut sum = 0u64;
    while from > start && end - from < max_inputs {
        let s = *sizes.get(from - 1)?;
        if sum.saturating_add(s) > max_bytes {
            break;
        }
        sum += s;
        from -= 1;
    }
    (end - from >= least).then_some((from, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_MERGE_BYTES, MAX_TABLES};

    /// Flushes `flushes` tables of size 1 and compacts as the policy says after each (all due
    /// merges, as a writer and its background workers would); returns the bytes written per byte
    /// flushed (flushes included), the most tables seen, and the final sizes.
    fn simulate(flushes: usize, max_inputs: usize, max_bytes: u64) -> (f64, usize, Vec<u64>) {
        let mut sizes: Vec<u64> = vec![];
        let (mut written, mut most) = (0u64, 0);
        for _ in 0..flushes {
            sizes.push(1);
            written += 1;
            loop {
                let force = sizes.len() + 1 >= MAX_TABLES;
                let Some((start, end)) = pick(&sizes, max_inputs, max_bytes, force) else { break };
                let merged: u64 = sizes[start..end].iter().sum();
                assert!(end - start >= 2 && end - start <= max_inputs.min(MAX_MERGE));
                assert!(merged <= max_bytes);
                written += merged;
                sizes.splice(start..end, [merged]);
            }
            most = most.max(sizes.len());
        }
        assert_eq!(sizes.iter().sum::<u64>(), flushes as u64);
        (written as f64 / flushes as f64, most, sizes)
    }

    #[test]
    fn a_tier_is_merged_once_it_holds_tier_width_tables() {
        assert_eq!(pick(&[10; 8], 16, MAX_MERGE_BYTES, false), Some((0, 8)));
        assert_eq!(pick(&[10; 7], 16, MAX_MERGE_BYTES, false), None);
        // Similar sizes form one tier.
        assert_eq!(pick(&[12, 9, 10, 11, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some((0, 8)));
    }

    #[test]
    fn a_much_larger_older_table_starts_another_tier() {
        assert_eq!(pick(&[80, 10, 10, 10, 10, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some((1, 9)));
        assert_eq!(pick(&[80, 10, 10, 10, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), None);
        // A full tier in the middle is merged where it lies, newer small tables left alone.
        let mut sizes = vec![640, 80, 80, 80, 80, 80, 80, 80, 80, 10, 10, 10];
        assert_eq!(pick(&sizes, 16, MAX_MERGE_BYTES, false), Some((1, 9)));
        sizes.truncate(9);
        sizes.extend([10; 8]);
        assert_eq!(pick(&sizes, 16, MAX_MERGE_BYTES, false), Some((9, 17)), "the newest full tier first");
    }

    #[test]
    fn each_entry_is_rewritten_about_log8_times_and_tables_stay_few() {
        // 32 flushes (10^6 keys of 116 B with 4 MiB MemTables), 290 (10^7), 2900.
        for (flushes, most_written, most_tables) in [(32, 2.1, 12), (290, 3.0, 20), (2900, 4.0, 27)] {
            let (written, most, sizes) = simulate(flushes, 16, MAX_MERGE_BYTES);
            assert!(written <= most_written, "{flushes}: {written} bytes written per byte flushed");
            assert!(most <= most_tables, "{flushes}: {most} tables at once: {sizes:?}");
        }
    }

    #[test]
    fn a_byte_limit_merges_the_newest_tables_of_a_tier_that_fit_when_they_hold_over_half_of_it() {
        let tier = [30u64; 8];
        assert_eq!(pick(&tier, 16, 100, false), Some((5, 8)), "90 of 100");
        assert_eq!(pick(&tier, 16, 1000, false), Some((0, 8)));
        // Two tables over the limit together are left alone.
        assert_eq!(pick(&[60; 8], 16, 100, false), None);
        // Under a limit, tables end up between half of it and all of it, and stay few.
        let (_, most, sizes) = simulate(1000, 16, 100);
        assert!(most <= 31, "{most} tables");
        assert!(sizes.iter().all(|&s| s <= 100));
        let big = sizes.iter().filter(|&&s| s > 50).count();
        assert!(big * 2 >= sizes.len(), "most tables hold over half the limit: {sizes:?}");
    }

    #[test]
    fn input_count_is_capped_and_force_takes_two() {
        assert_eq!(pick(&[1; 10], 3, MAX_MERGE_BYTES, false), Some((7, 10)));
        assert_eq!(pick(&[1; 10], 1, MAX_MERGE_BYTES, false), None);
        assert_eq!(pick(&[1; 10], 16, MAX_MERGE_BYTES, false), Some((0, 10)));
        assert_eq!(pick(&[100, 1], 4, MAX_MERGE_BYTES, true), Some((0, 2)));
        assert_eq!(pick(&[100, 1], 4, 50, true), None);
        // With few inputs allowed the table count still stays bounded.
        let (_, most, _) = simulate(2000, 3, MAX_MERGE_BYTES);
        assert!(most < MAX_TABLES, "{most} tables");
    }
}
