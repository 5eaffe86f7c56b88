//! The compaction policy: which tables to merge, decided from their sizes alone.
//!
//! Size-tiered, like RocksDB's universal compaction: starting from the newest table, take the
//! next older one while it is no larger than everything taken so far (the two newest always
//! qualify); merge when that run has at least [`MIN_MERGE`] tables. Tables then form a binary
//! counter of sizes: about log2(data / MemTable size) + [`MIN_MERGE`] tables, and each entry
//! is rewritten about log2(data / MemTable size) times.

use crate::limits::{MAX_MERGE, MAX_MERGE_BYTES};

/// Fewest tables merged at once (unless forced by the table limit).
pub const MIN_MERGE: usize = 4;

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
