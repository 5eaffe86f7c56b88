//! A delete must hide every older value of its key, wherever that value lives: a tombstone in a
//! MemTable or a newer SSTable shadows a value in an older SSTable, through flushes and reopens;
//! and likewise a newer value shadows an older one.

mod common;

use common::get;
use minivault::{Db, Durability, Options};

#[test]
fn tombstone_in_memtable_then_sstable_hides_older_sstable_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"old").unwrap();
        db.put(b"other", b"stays").unwrap();
        db.flush().unwrap();
        assert_eq!(db.tables().len(), 1);
        assert_eq!(db.stats().wal_bytes, 0, "after flush the value lives only in the SSTable");

        db.delete(b"k").unwrap();
        assert_eq!(get(&mut db, b"k"), None, "tombstone in the MemTable");

        db.flush().unwrap();
        assert_eq!(db.tables().len(), 2);
        assert_eq!(db.tables()[1].entries, 1, "the newer table holds the tombstone");
        assert_eq!(db.stats().wal_bytes, 0);
        assert_eq!(get(&mut db, b"k"), None, "tombstone in the newer SSTable");
        assert_eq!(get(&mut db, b"other").as_deref(), Some(&b"stays"[..]));
    }
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(db.tables().len(), 2);
    assert_eq!(get(&mut db, b"k"), None, "after reopen");
    assert_eq!(get(&mut db, b"other").as_deref(), Some(&b"stays"[..]));
}

#[test]
fn tombstone_only_in_the_wal_hides_sstable_value_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"old").unwrap();
        db.flush().unwrap();
        db.delete(b"k").unwrap();
    }
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k"), None);
    db.flush().unwrap();
    drop(db);
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k"), None);
}

#[test]
fn newer_sstable_value_shadows_older_sstable_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"v1").unwrap();
        db.put(b"a", b"a1").unwrap();
        db.flush().unwrap();
        db.put(b"k", b"v2").unwrap();
        db.flush().unwrap();
        db.put(b"z", b"z1").unwrap();
        db.flush().unwrap();
        assert_eq!(db.tables().len(), 3);
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"v2"[..]));
    }
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"v2"[..]));
    assert_eq!(get(&mut db, b"a").as_deref(), Some(&b"a1"[..]));
    assert_eq!(get(&mut db, b"z").as_deref(), Some(&b"z1"[..]));
}

#[test]
fn put_delete_put_across_tables_ends_with_the_last_put() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Db::open(dir.path()).unwrap();
        db.put(b"k", b"first").unwrap();
        db.flush().unwrap();
        db.delete(b"k").unwrap();
        db.flush().unwrap();
        assert_eq!(get(&mut db, b"k"), None);
        db.put(b"k", b"third").unwrap();
        assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"third"[..]));
        db.flush().unwrap();
        db.delete(b"k").unwrap();
        db.put(b"k", b"fifth").unwrap();
    }
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k").as_deref(), Some(&b"fifth"[..]));
    db.delete(b"k").unwrap();
    db.flush().unwrap();
    drop(db);
    let mut db = Db::open(dir.path()).unwrap();
    assert_eq!(get(&mut db, b"k"), None);
}

#[test]
fn tombstone_in_the_immutable_memtable_hides_sstable_value() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 4096, durability: Durability::Manual, ..Options::default() };
    let mut db = Db::open_with(dir.path(), options).unwrap();
    // Only a write installs the flush of the frozen MemTable (not the flush thread's nudge,
    // nor the gets below): the tombstone stays in the immutable MemTable while it is read.
    db.hold_background_installs(true);
    db.put(b"k", b"old").unwrap();
    db.flush().unwrap();
    db.delete(b"k").unwrap();
    // Fill the active MemTable until it rotates: the tombstone moves to the immutable one.
    let mut i = 0;
    while db.stats().immutable_keys == 0 {
        db.put(format!("fill{i:04}").as_bytes(), b"xxxxxxxxxxxxxxxx").unwrap();
        i += 1;
        assert!(i < 10_000, "the MemTable never rotated");
    }
    assert_eq!(db.tables().len(), 1, "the tombstone must not be in an SSTable yet");
    assert_eq!(get(&mut db, b"k"), None, "tombstone in the immutable MemTable");
    drop(db);
    let mut db = Db::open_with(dir.path(), options).unwrap();
    assert_eq!(get(&mut db, b"k"), None);
    assert_eq!(get(&mut db, b"fill0000").as_deref(), Some(&b"xxxxxxxxxxxxxxxx"[..]));
}

#[test]
fn many_deletes_over_many_tables() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    {
        let db = Db::open(dir.path()).unwrap();
        for i in 0..n {
            db.put(format!("key{i:03}").as_bytes(), format!("v{i}").as_bytes()).unwrap();
        }
        db.flush().unwrap();
        // Delete every third key, in a second table; re-put every ninth in a third.
        for i in (0..n).step_by(3) {
            db.delete(format!("key{i:03}").as_bytes()).unwrap();
        }
        db.flush().unwrap();
        for i in (0..n).step_by(9) {
            db.put(format!("key{i:03}").as_bytes(), format!("again{i}").as_bytes()).unwrap();
        }
        db.flush().unwrap();
        assert_eq!(db.tables().len(), 3);
    }
    let mut db = Db::open(dir.path()).unwrap();
    for i in 0..n {
        let want = if i % 9 == 0 {
            Some(format!("again{i}").into_bytes())
        } else if i % 3 == 0 {
            None
        } else {
            Some(format!("v{i}").into_bytes())
        };
        assert_eq!(get(&mut db, format!("key{i:03}").as_bytes()), want, "key{i:03}");
    }
}
