//! Model-based property test of the row cache through the `Db` handle: random puts, puts with a
//! (long) TTL, deletes, write batches, failed writes, flushes, gets and reopens over a small key
//! space, with small MemTables (so values move to SSTables and get compacted) and a small row
//! cache (so rows are evicted all the time). Every get must agree with a `HashMap` model, and
//! the row cache's byte charge must never exceed its capacity. `PROPTEST_CASES=<n>` runs more.

use std::collections::HashMap;
use std::time::Duration;

use minivault::{Db, Durability, Options, WriteBatch};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    PutWithTtl(u8, Vec<u8>),
    Delete(u8),
    /// (key, value or delete) entries applied as one batch.
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    /// A put the engine refuses (value too large).
    FailedPut(u8),
    Get(u8),
    Flush,
    Reopen,
}

fn key(i: u8) -> Vec<u8> {
    format!("key{i:03}").into_bytes()
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120)
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0u8..40;
    prop_oneof![
        4 => (k(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (k(), value()).prop_map(|(k, v)| Op::PutWithTtl(k, v)),
        2 => k().prop_map(Op::Delete),
        1 => prop::collection::vec((k(), prop::option::weighted(0.8, value())), 1..8).prop_map(Op::Batch),
        1 => k().prop_map(Op::FailedPut),
        8 => k().prop_map(Op::Get),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

const MEMTABLE: usize = 16 * 1024;

fn open(dir: &std::path::Path, row_cache_bytes: usize) -> Db {
    let options = Options {
        memtable_bytes: MEMTABLE,
        durability: Durability::Manual,
        row_cache_bytes,
        ..Options::default()
    };
    Db::open_with(dir, options).expect("open")
}

fn check(db: &mut Db, model: &HashMap<Vec<u8>, Vec<u8>>, k: &[u8], step: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(db.get(k).expect("get"), model.get(k).cloned(), "step {}: key {:?}", step, k);
    let s = db.row_cache_stats();
    prop_assert!(s.bytes <= s.capacity_bytes, "step {}: {:?}", step, s);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn gets_agree_with_a_model_and_the_row_cache_stays_within_its_bytes(
        ops in prop::collection::vec(op(), 1..400),
        row_cache_bytes in prop_oneof![Just(0usize), 2048usize..16 * 1024, Just(1usize << 20)],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = open(dir.path(), row_cache_bytes);
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let long = Duration::from_secs(3600);
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &v).expect("put");
                    model.insert(key(k), v);
                }
                Op::PutWithTtl(k, v) => {
                    db.put_with_ttl(&key(k), &v, long).expect("put_with_ttl");
                    model.insert(key(k), v);
                }
                Op::Delete(k) => {
                    db.delete(&key(k)).expect("delete");
                    model.remove(&key(k));
                }
                Op::Batch(entries) => {
                    let mut batch = WriteBatch::new(vec![0; 4096]);
                    for (k, v) in &entries {
                        match v {
                            Some(v) => batch.put(&key(*k), v).expect("batch put"),
                            None => batch.delete(&key(*k)).expect("batch delete"),
                        }
                    }
                    db.write_batch(&batch).expect("write_batch");
                    for (k, v) in entries {
                        match v {
                            Some(v) => model.insert(key(k), v),
                            None => model.remove(&key(k)),
                        };
                    }
                }
                Op::FailedPut(k) => {
                    prop_assert!(db.put(&key(k), &vec![0; MEMTABLE]).is_err());
                }
                Op::Get(k) => check(&mut db, &model, &key(k), step)?,
                Op::Flush => db.flush().expect("flush"),
                Op::Reopen => {
                    drop(db);
                    db = open(dir.path(), row_cache_bytes);
                }
            }
        }
        for k in 0..40 {
            check(&mut db, &model, &key(k), usize::MAX)?;
        }
    }
}
