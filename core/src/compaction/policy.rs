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
//! # Runs and trivial moves
//! The tiers are made of *runs*, not tables: a run is a sequence of adjacent tables each of which
//! overlaps no other live table ([`crate::version::run_flags`], from the prefixes of each table's
//! least and greatest keys); every other table is a run of its own. Sequentially written keys
//! flush into tables that overlap nothing, so they form one run, which never fills a tier by
//! itself: such tables are kept as they were flushed (a *trivial move*: never rewritten), and
//! sequential keys are written once. A table that overlaps nothing holds no key another table
//! holds, so keeping it keeps no overwritten or deleted entry alive; once a newer write overlaps
//! it (an overwrite, a delete, a range delete: a table with range deletes overlaps every table),
//! it is a run of its own again and merged as before. A table whose entries all expire (its
//! footer's [`crate::sstable::Footer::latest_expiry`]) is kept so too, and removed whole once the
//! latest has passed ([`crate::version::Version::drop_expired`]); one that mixes entries with and
//! without an expiry ([`crate::sstable::Footer::expires`] without the latest) is never kept so:
//! it is merged as its tiers come, so that the merges that start at the oldest table drop what
//! expired (kept, it would hold its expired entries as long as the others live). A merge takes whole
//! runs (each one's tables adjacent, so the lineage rule holds), at most `max_inputs` tables.
//!
//! A run weighs in the tiers as its largest table, so that a run of many small flushes tiers with
//! tables of their size (as the same flushes would, had they overlapped) rather than standing
//! apart as one large table that nothing merges with.
//!
//! Tables kept so take slots: past the crowding point ([`crate::limits::CROWDED_TABLES`], or
//! three quarters of a storage's table limit) the policy, when no tier of runs is due, tiers the
//! tables one by one (every table a run of its own), so the limit is never reached by them.
//!
//! Without the `many-tables` feature (a microcontroller: 32 tables, no key bounds) every table is
//! a run of its own and the policy is the size-ratio tiering above.

use crate::limits::MAX_MERGE;

/// Tables of one tier merged at once (unless forced by the table limit or a byte limit).
pub const TIER_WIDTH: usize = 8;

/// A table at least this many times larger than the smallest table of the newer tier next to it
/// starts an older tier.
pub const TIER_RATIO: u64 = 4;

/// Fewest tables merged at once when nothing forces a merge.
pub const MIN_MERGE: usize = TIER_WIDTH;

/// Chooses the tables to merge, given table sizes oldest first and, for each, whether it
/// continues the run of the table before it (`joins`; all `false`: every table its own run);
/// returns the tables `start..end` (indices into `sizes`), at most `max_inputs` of them holding
/// at most `max_bytes` in all. `force` merges the newest `max_inputs` (at least two) even when the
/// policy would wait (used when the table limit is near); `crowded` (past the crowding point,
/// [`super::crowded_tables`]) tiers the tables one by one when no tier of runs is due.
pub fn pick(
    sizes: &[u64],
    joins: &[bool],
    max_inputs: usize,
    max_bytes: u64,
    force: bool,
    crowded: bool,
) -> Option<(usize, usize)> {
    let n = sizes.len();
    let max_inputs = max_inputs.min(MAX_MERGE);
    if max_inputs < 2 {
        return None;
    }
    if force {
        let tables = Runs { sizes, joins: &[] };
        return tables.newest_within(0, n, max_inputs, max_bytes).map(|(from, _)| (from, n));
    }
    let runs = Runs { sizes, joins };
    // With little scratch memory, merge fewer runs rather than none.
    let width = TIER_WIDTH.min(max_inputs);
    let mut end = n;
    while let Some((mut start, _, mut least)) = runs.before(end) {
        let mut count = 1;
        while let Some((from, _, weight)) = runs.before(start) {
            if weight >= least.saturating_mul(TIER_RATIO) {
                break;
            }
            least = least.min(weight);
            start = from;
            count += 1;
        }
        if count >= width {
            let sum: u64 = sizes.get(start..end).map_or(0, |t| t.iter().sum());
            if sum <= max_bytes {
                // More tables than one merge takes: its oldest runs, so that the newer ones
                // (no larger) tier with the flushes that follow rather than being left behind
                // a table many times their size.
                if let Some(to) = runs.oldest_within(start, end, max_inputs) {
                    return Some((start, to));
                }
                // Runs too long to be merged whole (more tables than one merge takes) between
                // the tier's other runs: its newest tables, runs cut, as if each were a run of
                // its own (without this, tables that overlap keep adding to the tier behind
                // runs that no merge can take).
                return Some((end - (end - start).min(max_inputs), end));
            }
            // A tier larger than the byte limit: its newest runs that fit, if they hold over
            // half of the limit (their output is then too large to be merged again under it,
            // so no table is rewritten forever).
            if let Some((from, held)) = runs.newest_within(start, end, max_inputs, max_bytes) {
                if held * 2 > max_bytes {
                    return Some((from, end));
                }
            }
        }
        end = start;
    }
    if crowded {
        // Every table a run of its own: the tiering of tables, which keeps the count bounded
        // at the cost of rewriting them.
        return pick(sizes, &[], max_inputs, max_bytes, false, false);
    }
    None
}

/// The runs of a table list, walked from the newest.
struct Runs<'a> {
    sizes: &'a [u64],
    joins: &'a [bool],
}

impl Runs<'_> {
    /// The run that ends before table `end`: where it starts, its bytes, and its weight in the
    /// tiers (its largest table: a run of many small flushes tiers with tables of their size,
    /// not with tables as large as all of them); `None` at 0.
    fn before(&self, end: usize) -> Option<(usize, u64, u64)> {
        let mut start = end.checked_sub(1)?;
        let mut bytes = *self.sizes.get(start)?;
        let mut weight = bytes;
        while self.joins.get(start).copied().unwrap_or(false) && start > 0 {
            start -= 1;
            let size = self.sizes.get(start).copied().unwrap_or(0);
            bytes = bytes.saturating_add(size);
            weight = weight.max(size);
        }
        Some((start, bytes, weight))
    }

    /// The oldest whole runs of tables `start..end`, at least two, at most `max_inputs` tables:
    /// where they end.
    fn oldest_within(&self, start: usize, end: usize, max_inputs: usize) -> Option<usize> {
        let (mut to, mut count) = (start, 0);
        while to < end {
            let next = self.after(to, end);
            if next - start > max_inputs {
                break;
            }
            (to, count) = (next, count + 1);
        }
        (count >= 2).then_some(to)
    }

    /// Where the run that starts at table `start` ends (at most `end`).
    fn after(&self, start: usize, end: usize) -> usize {
        let mut next = start + 1;
        while next < end && self.joins.get(next).copied().unwrap_or(false) {
            next += 1;
        }
        next
    }

    /// The newest whole runs of tables `start..end`, at least two, at most `max_inputs` tables
    /// and `max_bytes` in all: where they start, and their bytes.
    fn newest_within(
        &self,
        start: usize,
        end: usize,
        max_inputs: usize,
        max_bytes: u64,
    ) -> Option<(usize, u64)> {
        let (mut from, mut held, mut count) = (end, 0u64, 0);
        while from > start {
            let Some((s, bytes, _)) = self.before(from) else { break };
            if end - s > max_inputs || held.saturating_add(bytes) > max_bytes {
                break;
            }
            (from, held, count) = (s, held + bytes, count + 1);
        }
        (count >= 2).then_some((from, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_MERGE_BYTES, MAX_TABLES};

    /// [`pick`] with every table a run of its own and no crowding: the size-ratio tiering alone.
    fn pick_tables(sizes: &[u64], max_inputs: usize, max_bytes: u64, force: bool) -> Option<(usize, usize)> {
        pick(sizes, &vec![false; sizes.len()], max_inputs, max_bytes, force, false)
    }

    #[cfg(feature = "many-tables")]
    /// Whether each table (its keys from `.0` to `.1`) continues the run before it, as
    /// `crate::version::run_flags` decides from key bounds: it and the table before it overlap
    /// no other table.
    fn joins_of(spans: &[(u64, u64)]) -> Vec<bool> {
        let apart: Vec<bool> = (0..spans.len())
            .map(|i| (0..spans.len()).all(|j| j == i || spans[j].1 < spans[i].0 || spans[i].1 < spans[j].0))
            .collect();
        (0..spans.len()).map(|i| i > 0 && apart[i] && apart[i - 1]).collect()
    }

    #[cfg(feature = "many-tables")]
    /// A simulated table: its size, and its least and greatest keys.
    type Shape = (u64, (u64, u64));

    #[cfg(feature = "many-tables")]
    /// Flushes `flushes` tables of size 1, the `i`th holding keys `span(i)`, and compacts as the
    /// policy says after each (runs from the spans, crowded past `crowded` tables); returns the
    /// bytes written per byte flushed (flushes included), the most tables seen, and the final
    /// tables.
    fn simulate_spans(
        flushes: u64,
        span: impl Fn(u64) -> (u64, u64),
        crowded: usize,
    ) -> (f64, usize, Vec<Shape>) {
        let mut tables: Vec<Shape> = vec![];
        let (mut written, mut most) = (0u64, 0);
        for i in 0..flushes {
            tables.push((1, span(i)));
            written += 1;
            loop {
                let sizes: Vec<u64> = tables.iter().map(|t| t.0).collect();
                let spans: Vec<(u64, u64)> = tables.iter().map(|t| t.1).collect();
                let force = tables.len() + 1 >= MAX_TABLES;
                let picked =
                    pick(&sizes, &joins_of(&spans), 16, MAX_MERGE_BYTES, force, tables.len() >= crowded);
                let Some((start, end)) = picked else { break };
                let merged: u64 = sizes[start..end].iter().sum();
                let lo = spans[start..end].iter().map(|s| s.0).min().unwrap();
                let hi = spans[start..end].iter().map(|s| s.1).max().unwrap();
                written += merged;
                tables.splice(start..end, [(merged, (lo, hi))]);
            }
            most = most.max(tables.len());
        }
        (written as f64 / flushes as f64, most, tables)
    }

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
                let Some((start, end)) = pick_tables(&sizes, max_inputs, max_bytes, force) else { break };
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
        assert_eq!(pick_tables(&[10; 8], 16, MAX_MERGE_BYTES, false), Some((0, 8)));
        assert_eq!(pick_tables(&[10; 7], 16, MAX_MERGE_BYTES, false), None);
        // Similar sizes form one tier.
        assert_eq!(pick_tables(&[12, 9, 10, 11, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some((0, 8)));
    }

    #[test]
    fn a_much_larger_older_table_starts_another_tier() {
        assert_eq!(
            pick_tables(&[80, 10, 10, 10, 10, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false),
            Some((1, 9))
        );
        assert_eq!(pick_tables(&[80, 10, 10, 10, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), None);
        // A full tier in the middle is merged where it lies, newer small tables left alone.
        let mut sizes = vec![640, 80, 80, 80, 80, 80, 80, 80, 80, 10, 10, 10];
        assert_eq!(pick_tables(&sizes, 16, MAX_MERGE_BYTES, false), Some((1, 9)));
        sizes.truncate(9);
        sizes.extend([10; 8]);
        assert_eq!(
            pick_tables(&sizes, 16, MAX_MERGE_BYTES, false),
            Some((9, 17)),
            "the newest full tier first"
        );
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
        assert_eq!(pick_tables(&tier, 16, 100, false), Some((5, 8)), "90 of 100");
        assert_eq!(pick_tables(&tier, 16, 1000, false), Some((0, 8)));
        // Two tables over the limit together are left alone.
        assert_eq!(pick_tables(&[60; 8], 16, 100, false), None);
        // Under a limit, tables end up between half of it and all of it, and stay few.
        let (_, most, sizes) = simulate(1000, 16, 100);
        assert!(most <= 31, "{most} tables");
        assert!(sizes.iter().all(|&s| s <= 100));
        let big = sizes.iter().filter(|&&s| s > 50).count();
        assert!(big * 2 >= sizes.len(), "most tables hold over half the limit: {sizes:?}");
    }

    #[test]
    fn input_count_is_capped_and_force_takes_two() {
        // The oldest three of the tier first.
        assert_eq!(pick_tables(&[1; 10], 3, MAX_MERGE_BYTES, false), Some((0, 3)));
        assert_eq!(pick_tables(&[1; 10], 1, MAX_MERGE_BYTES, false), None);
        assert_eq!(pick_tables(&[1; 10], 16, MAX_MERGE_BYTES, false), Some((0, 10)));
        assert_eq!(pick_tables(&[100, 1], 4, MAX_MERGE_BYTES, true), Some((0, 2)));
        assert_eq!(pick_tables(&[100, 1], 4, 50, true), None);
        // With few inputs allowed the table count still stays bounded.
        let (_, most, _) = simulate(2000, 3, MAX_MERGE_BYTES);
        assert!(most < MAX_TABLES, "{most} tables");
    }

    #[test]
    #[cfg(feature = "many-tables")]
    fn sequential_tables_form_one_run_and_are_never_rewritten() {
        // 290 flushes of ascending keys (10^7 keys with 4 MiB MemTables): kept as flushed.
        let (written, most, tables) = simulate_spans(290, |i| (i * 10, i * 10 + 9), MAX_TABLES);
        assert_eq!(written, 1.0, "{tables:?}");
        assert_eq!(most, 290);
        // Descending keys too.
        let (written, _, _) = simulate_spans(100, |i| (10_000 - i * 10, 10_009 - i * 10), MAX_TABLES);
        assert_eq!(written, 1.0);
        // Overlapping tables are merged as before (the tiering alone).
        let (written, most, _) = simulate_spans(290, |_| (0, 1_000), MAX_TABLES);
        assert!(written > 2.0 && written <= 3.0 && most <= 20, "{written} {most}");
    }

    #[test]
    fn a_tier_of_runs_is_merged_whole_runs_at_a_time() {
        // Eight runs of two tables each (each run's two tables disjoint, every run over the
        // last): one tier, merged whole; with room for only five inputs, the oldest two runs.
        let sizes = [5u64; 16];
        let joins: Vec<bool> = (0..16).map(|i| i % 2 == 1).collect();
        assert_eq!(pick(&sizes, &joins, 16, MAX_MERGE_BYTES, false, false), Some((0, 16)));
        assert_eq!(pick(&sizes, &joins, 5, MAX_MERGE_BYTES, false, false), Some((0, 4)));
        // Seven runs are not yet a tier, however many tables they hold.
        assert_eq!(pick(&sizes[..14], &joins[..14], 16, MAX_MERGE_BYTES, false, false), None);
        // A run too large for the inputs is never merged in parts.
        let one_run: Vec<bool> = (0..20).map(|i| i > 0).collect();
        assert_eq!(pick(&[1; 20], &one_run, 16, MAX_MERGE_BYTES, false, false), None);
    }

    #[test]
    #[cfg(feature = "many-tables")]
    fn a_crowded_table_set_merges_its_tables_as_if_each_were_a_run() {
        let one_run: Vec<bool> = (0..20).map(|i| i > 0).collect();
        assert_eq!(pick(&[1; 20], &one_run, 16, MAX_MERGE_BYTES, false, false), None);
        assert_eq!(pick(&[1; 20], &one_run, 16, MAX_MERGE_BYTES, false, true), Some((0, 16)));
        // Sequential flushes past the crowding point: the tables stay near it, and the writes
        // are at most the tiering's.
        let (written, most, _) = simulate_spans(1000, |i| (i * 10, i * 10 + 9), 100);
        assert!(written <= 3.5, "{written} bytes written per byte flushed");
        assert!(most <= 100, "{most} tables");
    }

    #[test]
    #[cfg(feature = "many-tables")]
    fn runs_between_overlapping_flushes_still_fill_tiers() {
        // Groups of sequential flushes into fresh keys, each group followed by a flush that
        // overlaps the first table: the runs weigh as their largest table, so they tier with
        // the single flushes around them (whole, or cut when longer than a merge takes) and the
        // table count stays bounded without forcing.
        for group in [4u64, 8, 20, 40] {
            let span = |i: u64| if i % (group + 1) == group { (0, 5) } else { (i * 10 + 100, i * 10 + 109) };
            let (written, most, _) = simulate_spans(2000, span, 384);
            assert!(written <= 4.5, "group {group}: {written} bytes written per byte flushed");
            assert!(most < 384, "group {group}: {most} tables: never crowded");
        }
    }
}
