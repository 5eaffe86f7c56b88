//! The basic contract of `put`, `get` and `delete`: last write wins, absent keys read as `None`,
//! keys and values are arbitrary bytes, and size limits are errors, never truncation.

mod common;

use minivault::{Db, Durability, Error, Options, MAX_KEY_LEN, MAX_VALUE_LEN};
use minivault_core::Error as CoreError;

#[test]
fn put_get_overwrite_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"k").unwrap(), None);
    db.put(b"k", b"v1").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    db.put(b"k", b"second value, longer").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"second value, longer"[..]));
    db.put(b"k", b"3").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"3"[..]));
    db.delete(b"k").unwrap();
    assert_eq!(db.get(b"k").unwrap(), None);
    db.put(b"k", b"after delete").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"after delete"[..]));
}

#[test]
fn absent_keys_read_as_none_and_deleting_them_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(b"b", b"1").unwrap();
    for k in [&b"a"[..], b"c", b"bb", b"B", b"b\0"] {
        assert_eq!(db.get(k).unwrap(), None, "{k:?}");
    }
    db.delete(b"never-written").unwrap();
    assert_eq!(db.get(b"never-written").unwrap(), None);
    assert_eq!(db.get(b"b").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn neighbouring_keys_do_not_interfere() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let keys: [&[u8]; 6] = [b"a", b"aa", b"ab", b"a\0", b"a\xff", b"b"];
    for (i, k) in keys.iter().enumerate() {
        db.put(k, format!("v{i}").as_bytes()).unwrap();
    }
    db.delete(b"aa").unwrap();
    for round in 0..2 {
        for (i, k) in keys.iter().enumerate() {
            let want = (i != 1).then(|| format!("v{i}").into_bytes());
            assert_eq!(db.get(k).unwrap(), want, "round {round}, key {k:?}");
        }
        db.flush().unwrap();
    }
}

#[test]
fn binary_keys_and_values_with_nul_and_ff_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all_bytes: Vec<u8> = (0..=255u8).rev().collect();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (vec![0], vec![0xff]),
        (vec![0xff], vec![0]),
        (vec![0, 0, 0], vec![0; 100]),
        (vec![0xff; 7], vec![0xff; 300]),
        (b"\0key\xffwith\r\nbytes".to_vec(), all_bytes.clone()),
        (all_bytes.clone(), b"value for the 256-byte key".to_vec()),
    ];
    {
        let db = Db::open(dir.path()).unwrap();
        for (k, v) in &pairs {
            db.put(k, v).unwrap();
        }
        for (k, v) in &pairs {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "memtable, key {k:?}");
        }
        db.flush().unwrap();
        for (k, v) in &pairs {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "sstable, key {k:?}");
        }
    }
    let db = Db::open(dir.path()).unwrap();
    for (k, v) in &pairs {
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "after reopen, key {k:?}");
    }
}

#[test]
fn empty_value_is_present_not_absent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        db.put(b"empty", b"").unwrap();
        db.put(b"tomb", b"x").unwrap();
        db.delete(b"tomb").unwrap();
        assert_eq!(db.get(b"empty").unwrap(), Some(vec![]));
        assert_eq!(db.get(b"tomb").unwrap(), None);
    }
    {
        // From the WAL.
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get(b"empty").unwrap(), Some(vec![]));
        assert_eq!(db.get(b"tomb").unwrap(), None);
        db.flush().unwrap();
        assert_eq!(db.get(b"empty").unwrap(), Some(vec![]));
    }
    // From the SSTable.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"empty").unwrap(), Some(vec![]));
    assert_eq!(db.get(b"tomb").unwrap(), None);
}

#[test]
fn empty_key_is_an_error_for_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert!(matches!(db.put(b"", b"v"), Err(Error::Engine(CoreError::EmptyKey))));
    assert!(matches!(db.get(b""), Err(Error::Engine(CoreError::EmptyKey))));
    assert!(matches!(db.delete(b""), Err(Error::Engine(CoreError::EmptyKey))));
    let ttl = std::time::Duration::from_secs(60);
    assert!(matches!(db.put_with_ttl(b"", b"v", ttl), Err(Error::Engine(CoreError::EmptyKey))));
    assert!(!db.is_poisoned());
    assert_eq!(db.stats().wal_bytes, 0, "a rejected write reached the WAL");
    db.put(b"k", b"v").unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn key_of_max_len_works_and_one_more_byte_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let max_key = vec![b'k'; MAX_KEY_LEN];
    let mut other_max_key = max_key.clone();
    *other_max_key.last_mut().unwrap() = b'j';
    let too_long = vec![b'k'; MAX_KEY_LEN + 1];
    {
        let db = Db::open(dir.path()).unwrap();
        db.put(&max_key, b"max").unwrap();
        db.put(&other_max_key, b"other").unwrap();
        assert_eq!(db.get(&max_key).unwrap().as_deref(), Some(&b"max"[..]));
        for result in
            [db.put(&too_long, b"v").map(|_| None), db.get(&too_long), db.delete(&too_long).map(|_| None)]
        {
            match result {
                Err(Error::Engine(CoreError::KeyTooLarge { len, max })) => {
                    assert_eq!((len, max), (MAX_KEY_LEN + 1, MAX_KEY_LEN));
                }
                other => panic!("expected KeyTooLarge, got {other:?}"),
            }
        }
        assert!(!db.is_poisoned());
        db.flush().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(&max_key).unwrap().as_deref(), Some(&b"max"[..]));
    assert_eq!(db.get(&other_max_key).unwrap().as_deref(), Some(&b"other"[..]));
    assert_eq!(db.get(&max_key[..MAX_KEY_LEN - 1]).unwrap(), None);
}

#[test]
fn value_larger_than_a_memtable_is_a_clear_error_and_the_largest_allowed_works() {
    let dir = tempfile::tempdir().unwrap();
    let options = common::options(16 * 1024, Durability::Always);
    let db = Db::open_with(dir.path(), options).unwrap();
    db.put(b"before", b"1").unwrap();
    let huge = vec![7u8; options.memtable_bytes + 1];
    let max = match db.put(b"big", &huge) {
        Err(e @ Error::Engine(CoreError::ValueTooLarge { .. })) => {
            let text = e.to_string();
            assert!(text.contains("value of") && text.contains("exceeds"), "{text}");
            let Error::Engine(CoreError::ValueTooLarge { len, max }) = e else { unreachable!() };
            assert_eq!(len, huge.len());
            max
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    };
    assert!(max > 0 && max < options.memtable_bytes, "max {max}");
    assert!(!db.is_poisoned(), "a rejected value poisoned the database");
    assert_eq!(db.get(b"big").unwrap(), None);

    let over = vec![0xabu8; max + 1];
    assert!(
        matches!(db.put(b"big", &over), Err(Error::Engine(CoreError::ValueTooLarge { len, max: m })) if len == max + 1 && m == max),
        "the reported maximum plus one byte must be rejected too"
    );
    let largest: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    db.put(b"big", &largest).expect("a value of exactly the reported maximum is accepted");
    assert_eq!(db.get(b"big").unwrap().as_ref(), Some(&largest));
    assert_eq!(db.get(b"before").unwrap().as_deref(), Some(&b"1"[..]));
    db.put(b"after", b"2").unwrap();
    drop(db);

    let db = Db::open_with(dir.path(), options).unwrap();
    assert_eq!(db.get(b"big").unwrap().as_ref(), Some(&largest));
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"2"[..]));
    db.flush().unwrap();
    assert_eq!(db.get(b"big").unwrap().as_ref(), Some(&largest));
}

#[test]
fn value_of_max_value_len_with_default_memtables() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        Db::open_with(dir.path(), Options { durability: Durability::Manual, ..Options::default() }).unwrap();
    let value: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i * 7 % 256) as u8).collect();
    db.put(b"m", &value).unwrap();
    assert_eq!(db.get(b"m").unwrap().as_ref(), Some(&value));
    let over = vec![1u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        db.put(b"m2", &over),
        Err(Error::Engine(CoreError::ValueTooLarge { len, max })) if len == MAX_VALUE_LEN + 1 && max == MAX_VALUE_LEN
    ));
    db.flush().unwrap();
    assert_eq!(db.get(b"m").unwrap().as_ref(), Some(&value));
}
