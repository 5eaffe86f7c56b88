//! A row with a time to live that is served from the row cache stops being served at its
//! expiry, exactly as the engine stops returning it, and does not uncover an older value.

use std::thread::sleep;
use std::time::{Duration, Instant};

use minivault::Db;

const TTL: Duration = Duration::from_millis(300);
/// Sleep this long to be sure a `TTL` entry written before the sleep has expired.
const PAST_TTL: Duration = Duration::from_millis(400);

#[test]
fn ttl_row_read_from_the_cache_expires() {
    for flushed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path()).unwrap();
        db.put(b"t", b"older plain value").unwrap();
        db.flush().unwrap();
        let start = Instant::now();
        db.put_with_ttl(b"t", b"v", TTL).unwrap();
        if flushed {
            db.flush().unwrap();
        }
        let first = db.get(b"t").unwrap();
        let second = db.get(b"t").unwrap();
        if start.elapsed() >= TTL {
            eprintln!("skipped (flushed: {flushed}): the machine took longer than the TTL");
            continue;
        }
        assert_eq!(first.as_deref(), Some(&b"v"[..]));
        assert_eq!(second.as_deref(), Some(&b"v"[..]));
        assert_eq!(db.row_cache_stats().hits, 1, "the second read came from the row cache");
        sleep(PAST_TTL);
        assert_eq!(db.get(b"t").unwrap(), None, "served after its expiry (flushed: {flushed})");
        assert_eq!(db.row_cache_stats().rows, 0, "the expired row was dropped");
        assert_eq!(db.get(b"t").unwrap(), None, "the expired entry still hides the older value");
    }
}
