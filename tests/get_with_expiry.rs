//! The core engine's `get_with_expiry` returns the same value as `get` together with the entry's
//! expiry (`None` for an entry that never expires), from the MemTable and from an SSTable, and
//! nothing for a deleted or expired key.

use std::cell::Cell;
use std::rc::Rc;

use minivault_core::{Config, Db, MemStorage};

type CoreDb = Db<MemStorage<Vec<u8>, 64>, Box<dyn FnMut() -> u64>, Vec<u8>>;

fn open(now: &Rc<Cell<u64>>) -> CoreDb {
    let now = Rc::clone(now);
    let clock: Box<dyn FnMut() -> u64> = Box::new(move || now.get());
    CoreDb::open(
        MemStorage::new(vec![0u8; 1 << 20]),
        clock,
        [vec![0u8; 4096], vec![0u8; 4096]],
        Config::default(),
    )
    .unwrap()
}

fn read(db: &mut CoreDb, key: &[u8]) -> Option<(Vec<u8>, Option<u64>)> {
    let mut buf = [0u8; 64];
    db.get_with_expiry(key, &mut buf).unwrap().map(|(v, t)| (v.to_vec(), t))
}

#[test]
fn get_with_expiry_reports_the_expiry_from_memtable_and_sstable() {
    let now = Rc::new(Cell::new(10));
    let mut db = open(&now);
    for flushed in [false, true] {
        db.put(b"plain", b"p").unwrap();
        db.put_expiring(b"ttl", b"t", 500).unwrap();
        db.put(b"deleted", b"d").unwrap();
        db.delete(b"deleted").unwrap();
        if flushed {
            db.flush().unwrap();
            assert_eq!(db.stats().memtable_keys, 0);
        }
        assert_eq!(read(&mut db, b"plain"), Some((b"p".to_vec(), None)), "flushed: {flushed}");
        assert_eq!(read(&mut db, b"ttl"), Some((b"t".to_vec(), Some(500))), "flushed: {flushed}");
        assert_eq!(read(&mut db, b"deleted"), None, "flushed: {flushed}");
        assert_eq!(read(&mut db, b"absent"), None, "flushed: {flushed}");
        now.set(500);
        assert_eq!(read(&mut db, b"ttl"), None, "expired, flushed: {flushed}");
        now.set(10);
    }
}
