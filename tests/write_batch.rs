//! A write batch is applied as a whole, survives reopen, and a batch entry error is a clear error.

use minivault::{Db, Options, WriteBatch};

#[test]
fn write_batch_is_applied_and_survives_reopen() -> Result<(), minivault::Error> {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open_with(dir.path(), Options { memtable_bytes: 16 * 1024, ..Options::default() })?;
        db.put(b"queue/7", b"pending")?;
        let mut batch = WriteBatch::new(vec![0; 64 * 1024]);
        batch.put(b"job/7", b"done")?;
        batch.delete(b"queue/7")?;
        for i in 0..100u32 {
            batch.put(format!("item/{i}").as_bytes(), &i.to_le_bytes())?;
        }
        db.write_batch(&batch)?;
        assert_eq!(db.get(b"job/7")?.as_deref(), Some(&b"done"[..]));
        assert_eq!(db.get(b"queue/7")?, None);
    }
    let db = Db::open_with(dir.path(), Options { memtable_bytes: 16 * 1024, ..Options::default() })?;
    assert_eq!(db.get(b"job/7")?.as_deref(), Some(&b"done"[..]));
    assert_eq!(db.get(b"queue/7")?, None);
    for i in 0..100u32 {
        assert_eq!(db.get(format!("item/{i}").as_bytes())?, Some(i.to_le_bytes().to_vec()));
    }
    Ok(())
}

#[test]
fn bad_batch_entries_are_clear_errors() {
    let mut batch = WriteBatch::new(vec![0; 64]);
    let e = minivault::Error::from(batch.put(b"", b"v").unwrap_err());
    assert_eq!(e.to_string(), "empty key");
    let e = minivault::Error::from(batch.put(b"k", &[0; 100]).unwrap_err());
    assert_eq!(e.to_string(), "write batch is full");
}

#[test]
fn a_batch_of_megabytes_survives_reopen_and_a_larger_one_is_refused() {
    // A batch is one WAL record. Before MAX_BATCH_LEN existed, a batch over the largest record
    // length replay accepted (about 1 MiB) was acknowledged, then read back as a torn tail: lost.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        let mut batch = WriteBatch::new(vec![0; 8 << 20]);
        batch.put(b"a", &vec![1u8; 1 << 20]).unwrap();
        batch.put(b"b", &vec![2u8; 1 << 20]).unwrap();
        db.write_batch(&batch).unwrap();
        let mut too_big = WriteBatch::new(vec![0; 8 << 20]);
        for i in 0..5u8 {
            too_big.put(&[b'x', i], &vec![i; 1 << 20]).unwrap();
        }
        match db.write_batch(&too_big) {
            Err(minivault::Error::Engine(minivault_core::Error::BatchTooLarge { len, max })) => {
                assert!(len > max && max <= minivault_core::limits::MAX_BATCH_LEN, "{len} {max}")
            }
            other => panic!("a batch over MAX_BATCH_LEN: {other:?}"),
        }
        assert!(!db.is_poisoned());
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(b"a").unwrap(), Some(vec![1u8; 1 << 20]));
    assert_eq!(db.get(b"b").unwrap(), Some(vec![2u8; 1 << 20]));
    assert_eq!(db.get(&[b'x', 0]).unwrap(), None, "nothing of the refused batch");
}
