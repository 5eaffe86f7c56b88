//! Ordered reads on the POSIX handle, on real files: `Db::range`, `prefix`, `keys`, `count`,
//! `first` and `last`, forward, backward and from both ends at once, against a `BTreeMap`,
//! through flushes, compactions, TTLs and reopens; and a long scan leaves the page cache's hot
//! set alone.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use common::Rng;
use minivault::{Db, Durability, Options};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options() -> Options {
    // Small MemTables: many tables, and scans that cross them.
    Options { memtable_bytes: 16 << 10, durability: Durability::Manual, ..Options::default() }
}

fn key(rng: &mut Rng) -> Vec<u8> {
    const A: &[u8] = b"\x00ab\xff";
    let len = rng.range(1, 5) as usize;
    (0..len).map(|_| A[rng.below(A.len() as u64) as usize]).collect()
}

fn in_range(model: &Model, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    model.range::<Vec<u8>, _>((lo.clone(), hi.clone())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn bound(rng: &mut Rng) -> Bound<Vec<u8>> {
    match rng.below(3) {
        0 => Bound::Included(key(rng)),
        1 => Bound::Excluded(key(rng)),
        _ => Bound::Unbounded,
    }
}

#[test]
fn range_prefix_keys_count_first_and_last_match_a_sorted_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5CA1);
    let mut db = Db::open_with(dir.path(), options()).unwrap();
    let mut model = Model::new();
    let mut checked = 0;
    for round in 0..40 {
        for i in 0..rng.range(20, 400) {
            let k = key(&mut rng);
            if rng.chance(1, 5) {
                db.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let v = format!("r{round}-{i}-{}", "v".repeat(rng.below(300) as usize)).into_bytes();
                db.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        if rng.chance(1, 4) {
            drop(db);
            db = Db::open_with(dir.path(), options()).unwrap();
        }
        for _ in 0..10 {
            let (mut lo, mut hi) = (bound(&mut rng), bound(&mut rng));
            if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
                (&lo, &hi)
            {
                if a > b {
                    std::mem::swap(&mut lo, &mut hi);
                }
            }
            // BTreeMap refuses an empty range given as (Excluded(x), Excluded(x)); so does nothing here.
            if matches!((&lo, &hi), (Bound::Excluded(a), Bound::Excluded(b)) if a == b) {
                continue;
            }
            if matches!((&lo, &hi), (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) if a > b)
            {
                continue;
            }
            let want = in_range(&model, &lo, &hi);
            let got: Vec<_> = db.range((lo.clone(), hi.clone())).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, want, "range {lo:?}..{hi:?}");
            let mut rev: Vec<_> = db.range((lo.clone(), hi.clone())).rev().collect::<Result<_, _>>().unwrap();
            rev.reverse();
            assert_eq!(rev, want, "reverse range {lo:?}..{hi:?}");
            // From both ends at once, in a random interleaving: every entry once, in order.
            let mut it = db.range((lo.clone(), hi.clone()));
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let next = if rng.chance(1, 2) {
                    it.next().map(|e| (true, e))
                } else {
                    it.next_back().map(|e| (false, e))
                };
                match next {
                    Some((true, e)) => front.push(e.unwrap()),
                    Some((false, e)) => back.push(e.unwrap()),
                    None => break,
                }
            }
            drop(it);
            back.reverse();
            front.extend(back);
            assert_eq!(front, want, "both ends of {lo:?}..{hi:?}");
            let keys: Vec<_> = db.keys((lo.clone(), hi.clone())).collect::<Result<_, _>>().unwrap();
            assert_eq!(keys, want.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
            assert_eq!(db.count((lo.clone(), hi.clone())).unwrap(), want.len() as u64);
            checked += 1;
        }
        for p in [&b""[..], b"a", b"\xff", b"\xff\xff", b"\x00a"] {
            let want: Vec<_> =
                model.iter().filter(|(k, _)| k.starts_with(p)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let got: Vec<_> = db.prefix(p).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, want, "prefix {p:?}");
            let mut rev: Vec<_> = db.prefix(p).rev().collect::<Result<_, _>>().unwrap();
            rev.reverse();
            assert_eq!(rev, want, "reverse prefix {p:?}");
        }
        let first = model.iter().next().map(|(k, v)| (k.clone(), v.clone()));
        let last = model.iter().next_back().map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!((db.first().unwrap(), db.last().unwrap()), (first, last));
    }
    assert!(db.stats().tables >= 2, "the scans should have crossed tables: {:?}", db.stats());
    assert!(checked > 300);
}

#[test]
fn an_expired_entry_is_not_scanned_and_the_expiry_is_read_when_the_scan_starts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(b"a", b"1").unwrap();
    db.put_with_ttl(b"b", b"brief", Duration::from_millis(50)).unwrap();
    db.put(b"c", b"3").unwrap();
    assert_eq!(db.count::<&[u8], _>(..).unwrap(), 3);
    std::thread::sleep(Duration::from_millis(80));
    let keys: Vec<_> = db.keys::<&[u8], _>(..).collect::<Result<_, _>>().unwrap();
    assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
}

#[test]
fn a_long_scan_leaves_the_hot_set_in_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    // A page cache of 1 MiB and no row cache, so every get reads pages; 16 MiB of data.
    let opts = Options { cache_bytes: 1 << 20, row_cache_bytes: 0, memtable_bytes: 2 << 20, ..options() };
    let mut db = Db::open_with(dir.path(), opts).unwrap();
    let value = vec![7u8; 400];
    let n = 40_000u32;
    for i in 0..n {
        db.put(format!("key{i:08}").as_bytes(), &value).unwrap();
    }
    // The table set stays as the flush leaves it: a merge finishing meanwhile is not installed
    // (its output's pages would be new misses, not the scan's doing).
    db.hold_background_installs(true);
    db.flush().unwrap();
    let hot: Vec<Vec<u8>> = (0..40u32).map(|i| format!("key{:08}", i * 997).into_bytes()).collect();
    let read_hot = |db: &mut Db| {
        for k in &hot {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(&value[..]));
        }
    };
    read_hot(&mut db);
    read_hot(&mut db);
    let (_, misses_warm) = db.page_cache_counts();
    read_hot(&mut db);
    let (_, misses_hot) = db.page_cache_counts();
    assert_eq!(misses_hot, misses_warm, "the hot set fits in the cache");
    assert_eq!(db.count::<&[u8], _>(..).unwrap(), u64::from(n));
    let (_, misses_scan) = db.page_cache_counts();
    read_hot(&mut db);
    let (_, misses_after) = db.page_cache_counts();
    // The scan's first batch and its seeks read a few pages through the cache; the rest goes
    // around it. Had the 16 MiB gone through a 1 MiB cache, every hot page would be gone.
    assert!(
        misses_scan - misses_hot < 100,
        "the scan read {} pages through the cache",
        misses_scan - misses_hot
    );
    assert!(misses_after - misses_scan < 10, "the scan pushed {} hot pages out", misses_after - misses_scan);
}

#[test]
fn the_repl_scans_prints_each_pair_quoted_and_a_count_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = "put s1/0002 21.3\nput s1/0001 21.1\nput s2/0001 19\nput \"s1/with space\" \"a b\"\nflush\n\
                  put s1/0003 21.5\ndel s1/0002\nscan s1/ s2/\nscan - + LIMIT 2 REV\nprefix s1/ REV\ncount\ncount s1/ s1/0003\n";
    let out = std::process::Command::new(common::minivault_bin())
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let expected = "OK\nOK\nOK\nOK\nOK\nOK\nOK\n\
                    s1/0001 21.1\ns1/0003 21.5\n\"s1/with space\" \"a b\"\n(3 keys)\n\
                    s2/0001 19\n\"s1/with space\" \"a b\"\n(2 keys)\n\
                    \"s1/with space\" \"a b\"\ns1/0003 21.5\ns1/0001 21.1\n(3 keys)\n\
                    4\n1\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
