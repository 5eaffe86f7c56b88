//! The POSIX handle answers how long a key has left (`Db::ttl`, as redis' TTL: absent, never,
//! or the time left) and returns a value with its expiry (`Db::get_with_expiry`), the same from
//! the MemTable, the row cache and an SSTable.

use std::time::{Duration, SystemTime};

use minivault::{Db, Ttl};

fn left(db: &mut Db, key: &[u8]) -> Duration {
    match db.ttl(key).unwrap() {
        Ttl::ExpiresIn(d) => d,
        other => panic!("expected a TTL for {key:?}, got {other:?}"),
    }
}

#[test]
fn ttl_and_expiry_read_the_same_from_memtable_row_cache_and_sstable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = Db::open(tmp.path()).unwrap();
    let before = SystemTime::now();
    db.put_with_ttl(b"session", b"token", Duration::from_secs(60)).unwrap();
    db.put(b"forever", b"1").unwrap();
    for place in ["memtable", "row cache", "sstable"] {
        let d = left(&mut db, b"session");
        assert!(d > Duration::from_secs(55) && d <= Duration::from_secs(60), "{place}: {d:?}");
        let (value, expires) = db.get_with_expiry(b"session").unwrap().expect("present");
        assert_eq!(value, b"token", "{place}");
        let expires = expires.expect("has an expiry");
        assert!(
            expires >= before + Duration::from_secs(59)
                && expires <= SystemTime::now() + Duration::from_secs(60)
        );
        assert_eq!(db.ttl(b"forever").unwrap(), Ttl::NoExpiry, "{place}");
        assert_eq!(db.get_with_expiry(b"forever").unwrap(), Some((b"1".to_vec(), None)), "{place}");
        assert_eq!(db.ttl(b"never-written").unwrap(), Ttl::NoKey, "{place}");
        if place == "row cache" {
            db.flush().unwrap();
        }
    }
    assert!(db.row_cache_stats().hits > 0, "the second round was served by the row cache");
    db.delete(b"forever").unwrap();
    assert_eq!(db.ttl(b"forever").unwrap(), Ttl::NoKey);
}

#[test]
fn an_expired_key_has_no_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = Db::open(tmp.path()).unwrap();
    db.put_with_ttl(b"brief", b"x", Duration::from_millis(100)).unwrap();
    assert!(left(&mut db, b"brief") <= Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(db.ttl(b"brief").unwrap(), Ttl::NoKey);
    assert_eq!(db.get_with_expiry(b"brief").unwrap(), None);
}
