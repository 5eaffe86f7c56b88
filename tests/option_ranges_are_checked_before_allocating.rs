//! Sizes outside their documented ranges (`minivault::options`) are an error from `open_with`,
//! reported before anything is allocated or created: a MemTable of 100 TB is
//! `Error::InvalidOption`, not an allocation abort.

use minivault::options::{CACHE_BYTES, COMPACTION_NICE, INDEX_BYTES, MEMTABLE_BYTES, ROW_CACHE_BYTES};
use minivault::{Db, Error, Options};

#[test]
fn sizes_above_their_range_are_invalid_options_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let huge = 100_000_000_000_000u64 as usize;
    let cases = [
        ("memtable_bytes", Options { memtable_bytes: huge, ..Options::default() }, MEMTABLE_BYTES),
        ("memtable_bytes", Options { memtable_bytes: (1 << 30) + 1, ..Options::default() }, MEMTABLE_BYTES),
        ("cache_bytes", Options { cache_bytes: huge, ..Options::default() }, CACHE_BYTES),
        ("row_cache_bytes", Options { row_cache_bytes: huge, ..Options::default() }, ROW_CACHE_BYTES),
        ("index_bytes", Options { index_bytes: huge, ..Options::default() }, INDEX_BYTES),
        ("compaction_nice", Options { compaction_nice: 20, ..Options::default() }, COMPACTION_NICE),
    ];
    for (name, options, limit) in cases {
        match Db::open_with(&dir, options) {
            Err(Error::InvalidOption { option, max, .. }) => {
                assert_eq!((option, max), (name, limit.max));
            }
            other => panic!("{name}: expected InvalidOption, got {other:?}"),
        }
        let shown = Db::open_with(&dir, options).unwrap_err().to_string();
        assert!(shown.starts_with(&format!("{name} = ")) && shown.contains("out of range"), "{shown}");
        assert!(!dir.exists(), "{name}: nothing is created for invalid options");
    }
    // The largest MemTable accepted is 1 GiB; the smallest is the engine's (512 bytes).
    assert_eq!((MEMTABLE_BYTES.min, MEMTABLE_BYTES.max), (512, 1 << 30));
    let at_max =
        Options { memtable_bytes: 1 << 30, cache_bytes: 0, row_cache_bytes: 0, ..Options::default() };
    assert!(at_max.validate().is_ok());
}
