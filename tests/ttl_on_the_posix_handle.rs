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

/// Telemetry written in key order with a short TTL, through the POSIX handle with its
/// background threads: the tables it flushes overlap nothing and all their entries expire, so
/// they are kept as flushed and each is removed whole once its latest entry has expired. The
/// tables and their bytes stay within a few times the live data however long the stream runs
/// (kept and never removed, they grew by a table per flush).
#[test]
fn a_stream_of_keys_in_order_with_a_ttl_keeps_its_tables_and_bytes_bounded() {
    use minivault::{Durability, Options};
    let tmp = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 64 << 10, durability: Durability::Manual, ..Options::default() };
    let db = Db::open_with(tmp.path(), options).unwrap();
    let key = |i: u32| format!("t{i:010}").into_bytes();
    let (rounds, per_round, ttl) = (300u32, 500u32, Duration::from_millis(50));
    let (mut most_tables, mut most_bytes) = (0, 0);
    for round in 0..rounds {
        // About one MemTable (64 KiB) of entries, then a pause: a flush a round.
        for i in round * per_round..(round + 1) * per_round {
            db.put_with_ttl(&key(i), &[b'v'; 100], ttl).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let s = db.stats();
        most_tables = most_tables.max(s.tables);
        most_bytes = most_bytes.max(s.table_bytes);
    }
    let s = db.stats();
    assert!(s.flushes >= u64::from(rounds) / 2, "{s:?}");
    assert!(s.expired_tables >= s.flushes / 2, "removed whole: {s:?}");
    // About 19 MB written in all, a few hundred KB live at a time: merged (the build before the
    // latest expiry was recorded), at most 16 tables and 4.2 MB were seen; kept and never
    // removed, 329 tables and 20 MB.
    assert!(most_tables < 100, "at most {most_tables} tables: {s:?}");
    assert!(most_bytes < 12 << 20, "at most {most_bytes} bytes of tables: {s:?}");
    // A key with a long TTL among them reads back; the stream's keys expire.
    let last = rounds * per_round;
    db.put_with_ttl(&key(last), b"kept", Duration::from_secs(3600)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.get(&key(last)).unwrap(), Some(b"kept".to_vec()));
    std::thread::sleep(ttl);
    assert_eq!(db.get(&key(last - 1)).unwrap(), None, "the stream's newest key expired");
}

/// The same stream under a cap that refuses writes (`max_bytes` 2 MiB, several times less than
/// the stream writes): what expired is removed before a write would be refused, so none is
/// while what is alive fits (a few hundred KB). With the removal disabled (the tables kept as
/// flushed and never removed) a write was refused at the 28th round.
#[test]
fn a_stream_with_a_ttl_under_a_cap_that_refuses_writes_is_never_refused_while_what_lives_fits() {
    use minivault::{Durability, Options, WhenFull};
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_bytes: 64 << 10,
        durability: Durability::Manual,
        max_bytes: Some(2 << 20),
        when_full: WhenFull::RefuseWrites,
        ..Options::default()
    };
    let db = Db::open_with(tmp.path(), options).unwrap();
    let key = |i: u32| format!("t{i:010}").into_bytes();
    let (rounds, per_round, ttl) = (300u32, 500u32, Duration::from_millis(50));
    for round in 0..rounds {
        for i in round * per_round..(round + 1) * per_round {
            db.put_with_ttl(&key(i), &[b'v'; 100], ttl)
                .unwrap_or_else(|e| panic!("round {round}, key {i}: {e}; {:?}", db.stats()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = db.stats();
    assert!(u64::from(rounds * per_round) * 100 > 4 * (2 << 20), "the stream wrote several caps");
    assert_eq!(s.full_refusals, 0, "{s:?}");
    assert!(s.expired_tables > 0 && s.file_bytes <= 2 << 20, "{s:?}");
}
