//! The compaction policy: which tables to merge, decided from their sizes alone.
//!
//! Size-tiered, like RocksDB's universal compaction: starting from the newest table, take the
//! next older one while it is no larger than everything taken so far (the two newest always
//! qualify); merge when that run has at least [`MIN_MERGE`] tables. Tables then form a binary
//! counter of sizes: about log2(data / MemTable size) + [`MIN_MERGE`] tables, and each entry
//! is rewritten about log2(data / MemTable size) times.

use crate::limits::MAX_MERGE;

/// Fewest tables merged at once (unless forced by the table limit).
pub const MIN_MERGE: usize = 4;

/// Chooses the run of newest tables to merge, given table sizes oldest first; returns the index
/// of the oldest table of the run, which holds at most `max_bytes` in all. `force` merges the
/// newest `max_inputs` even when the policy would wait (used when the table limit is near).
pub fn pick(sizes: &[u64], max_inputs: usize, max_bytes: u64, force: bool) -> Option<usize> {
    let n = sizes.len();
    let max_inputs = max_inputs.min(MAX_MERGE);
    let mut start = n;
    let mut sum = 0u64;
    let mut at_byte_limit = false;
    while start > 0 && n - start < max_inputs {
        let s = sizes[start - 1];
        if n - start >= 2 && s > sum && !force {
            break;
        }
        if sum + s > max_bytes {
            at_byte_limit = true;
            break;
        }
        sum += s;
        start -= 1;
    }
    let taken = n - start;
    // With little scratch memory, merge fewer tables rather than none. A run that the size
    // rule would extend but the byte limit stops already holds over half the limit: merge it
    // (its output is then too large to be merged again, so no table is rewritten forever).
    let min_merge = MIN_MERGE.min(max_inputs).max(2);
    (taken >= min_merge || ((force || at_byte_limit) && taken >= 2)).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_MERGE_BYTES;

    #[test]
    fn four_equal_tables_are_merged() {
        assert_eq!(pick(&[10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some(0));
        assert_eq!(pick(&[10, 10, 10], 16, MAX_MERGE_BYTES, false), None);
    }

    #[test]
    fn a_much_larger_older_table_is_left_alone() {
        assert_eq!(pick(&[80, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some(1));
        assert_eq!(pick(&[40, 10, 10, 10, 10], 16, MAX_MERGE_BYTES, false), Some(0));
    }

    #[test]
    fn table_count_stays_logarithmic_under_repeated_flushes() {
        let mut sizes: Vec<u64> = vec![];
        let mut most = 0;
        for _ in 0..1000 {
            sizes.push(1);
            while let Some(start) = pick(&sizes, 16, MAX_MERGE_BYTES, false) {
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
    fn a_byte_limit_merges_a_run_it_stops_once_the_run_holds_over_half_of_it() {
        // Newest three would be merged without the limit; with it, the newest two (0.6 of it).
        assert_eq!(pick(&[60, 30, 30], 16, 100, false), Some(1));
        assert_eq!(pick(&[60, 30, 30], 16, 1000, false), None);
        // Two tables over the limit together are left alone; so is a run the size rule stops.
        assert_eq!(pick(&[60, 60], 16, 100, false), None);
        assert_eq!(pick(&[80, 10, 10], 16, 100, false), None);
        // Under a limit, tables end up between half of it and all of it, and stay few.
        let mut sizes: Vec<u64> = vec![];
        for _ in 0..1000 {
            sizes.push(7);
            while let Some(start) = pick(&sizes, 16, 100, false) {
                let merged: u64 = sizes[start..].iter().sum();
                assert!(merged <= 100);
                sizes.truncate(start);
                sizes.push(merged);
            }
            let total: u64 = sizes.iter().sum();
            assert!(sizes.len() as u64 <= 2 * total / 100 + 8, "{sizes:?}");
        }
        let big = sizes.iter().filter(|&&s| s > 50).count();
        assert!(big * 2 >= sizes.len(), "most tables hold over half the limit: {sizes:?}");
    }

    #[test]
    fn input_count_is_capped_and_force_takes_two() {
        assert_eq!(pick(&[1; 10], 3, MAX_MERGE_BYTES, false), Some(7));
        assert_eq!(pick(&[1; 10], 1, MAX_MERGE_BYTES, false), None);
        assert_eq!(pick(&[1; 10], 4, MAX_MERGE_BYTES, false), Some(6));
        assert_eq!(pick(&[100, 1], 4, MAX_MERGE_BYTES, true), Some(0));
    }
}
