//! The outbox (`minivault::outbox`) on real files: seqs strictly increasing per stream and across
//! reopens (also once every record is trimmed), reads in order, cursors that only move forward,
//! trimming below every consumer's cursor (at every acknowledgement with a trim step of 1, in
//! steps of 1,024 records by default), the gap a missing record leaves counted as evicted
//! before it was acknowledged, names checked, batches atomic, and appenders on several threads
//! beside a reader that acknowledges.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use minivault::outbox::{key, Outbox, OutboxError};
use minivault::{Durability, Error, Options};

fn options() -> Options {
    Options { durability: Durability::Manual, memtable_bytes: 64 << 10, ..Options::default() }
}

fn seqs(outbox: &Outbox, stream: &[u8]) -> Vec<u64> {
    outbox.read(stream, 0, usize::MAX).unwrap().iter().map(|r| r.seq).collect()
}

#[test]
fn seqs_start_at_one_and_increase_per_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    assert_eq!(outbox.append(b"a", b"a1").unwrap(), 1);
    assert_eq!(outbox.append(b"a", b"a2").unwrap(), 2);
    assert_eq!(outbox.append(b"b", b"b1").unwrap(), 1);
    assert_eq!(outbox.append_batch(b"a", &[b"a3", b"a4", b"a5"]).unwrap(), 3..6);
    assert_eq!(outbox.append_batch::<&[u8]>(b"a", &[]).unwrap(), 6..6);
    let read = outbox.read(b"a", 2, 3).unwrap();
    assert_eq!(
        read.iter().map(|r| (r.seq, r.value.as_slice())).collect::<Vec<_>>(),
        [(2, &b"a2"[..]), (3, b"a3"), (4, b"a4")]
    );
    assert_eq!(seqs(&outbox, b"b"), [1]);
    assert!(outbox.read(b"a", 6, 10).unwrap().is_empty());
    assert!(outbox.read(b"a", 1, 0).unwrap().is_empty());
    assert_eq!(outbox.newest(b"a").unwrap(), 5);
    assert_eq!(outbox.newest(b"never").unwrap(), 0);
    assert_eq!(outbox.streams().unwrap(), [b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn the_next_seq_survives_a_reopen_also_when_everything_was_trimmed() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
        for i in 0..300u32 {
            outbox.append(b"s", &i.to_le_bytes()).unwrap();
        }
        outbox.db().flush().unwrap();
        outbox.append(b"s", b"after flush").unwrap();
    }
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    assert_eq!(outbox.append(b"s", b"x").unwrap(), 302, "found by a reverse seek");
    outbox.ack(b"s", b"c", 302).unwrap();
    assert!(seqs(&outbox, b"s").is_empty(), "acknowledged by the only consumer: trimmed");
    drop(outbox);
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    assert_eq!(outbox.append(b"s", b"y").unwrap(), 303, "above the cursor with no record left");
    assert!(outbox.remove_consumer(b"s", b"c").unwrap());
    drop(outbox);
    // Trim 303 through a consumer, then forget it: the stream has no key left.
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    outbox.ack(b"s", b"d", 303).unwrap();
    outbox.remove_consumer(b"s", b"d").unwrap();
    assert_eq!(outbox.stats(b"s").unwrap().records, 0);
    drop(outbox);
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    assert_eq!(outbox.append(b"s", b"z").unwrap(), 304, "no record, no cursor: above its stored head");
    assert_eq!(outbox.append(b"new", b"1").unwrap(), 1, "a new stream starts at 1");
}

#[test]
fn a_stream_with_no_key_left_goes_on_above_its_stored_head() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
        for _ in 0..40 {
            outbox.append(b"gone", b"v").unwrap();
        }
        outbox.ack(b"gone", b"c", 40).unwrap();
        // As a space cap that evicts whole old tables would: every key of the stream is gone.
        let db = outbox.db();
        let keys: Vec<Vec<u8>> = db.keys(key::stream_prefix(b"gone")..).map(|k| k.unwrap()).collect();
        for k in keys.iter().filter(|k| k.starts_with(&key::stream_prefix(b"gone"))) {
            db.delete(k).unwrap();
        }
    }
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    assert_eq!(outbox.append(b"gone", b"again").unwrap(), 41, "never 1 again: a receiver saw 1..=40");
    assert_eq!(outbox.append(b"other", b"first").unwrap(), 1);
}

#[test]
fn cursors_move_forward_only_and_trim_below_every_consumer() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    for i in 1..=10u8 {
        outbox.append(b"s", &[i]).unwrap();
    }
    assert_eq!(outbox.ack(b"s", b"fast", 7).unwrap(), 7);
    assert_eq!(seqs(&outbox, b"s"), [8, 9, 10], "one consumer: trimmed below its cursor");
    assert_eq!(outbox.ack(b"s", b"slow", 2).unwrap(), 7, "a new consumer starts at the oldest record");
    assert_eq!(outbox.ack(b"s", b"fast", 5).unwrap(), 7, "a cursor never moves back");
    assert_eq!(outbox.cursor(b"s", b"fast").unwrap(), 7);
    assert_eq!(outbox.cursor(b"s", b"nobody").unwrap(), 0);
    assert_eq!(outbox.ack(b"s", b"slow", 9).unwrap(), 9);
    assert_eq!(seqs(&outbox, b"s"), [8, 9, 10], "held back by fast at 7");
    assert_eq!(outbox.ack(b"s", b"fast", 10).unwrap(), 10);
    assert_eq!(seqs(&outbox, b"s"), [10], "now by slow at 9");
    let stats = outbox.stats(b"s").unwrap();
    assert_eq!((stats.oldest, stats.newest, stats.next_seq, stats.records), (Some(10), Some(10), 11, 1));
    let lag: BTreeMap<Vec<u8>, (u64, u64, u64)> =
        stats.consumers.iter().map(|c| (c.name.clone(), (c.acked, c.lag, c.evicted_before_ack))).collect();
    assert_eq!(lag[&b"fast"[..]], (10, 0, 0));
    assert_eq!(lag[&b"slow"[..]], (9, 1, 0));
    assert_eq!(stats.evicted_before_ack, 0, "3..=7 were trimmed before slow existed: not its loss");
    assert!(outbox.remove_consumer(b"s", b"slow").unwrap());
    assert!(!outbox.remove_consumer(b"s", b"slow").unwrap());
    assert!(seqs(&outbox, b"s").is_empty(), "slow no longer holds 10 back");
}

#[test]
fn records_missing_above_a_cursor_count_as_evicted_before_they_were_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    for _ in 0..20 {
        outbox.append(b"s", b"reading").unwrap();
    }
    outbox.ack(b"s", b"up", 5).unwrap();
    // What a space cap does to the oldest data: 6..=12 vanish unacknowledged.
    {
        let db = outbox.db();
        for seq in 6..=12 {
            db.delete(&key::record(b"s", seq)).unwrap();
        }
    }
    let stats = outbox.stats(b"s").unwrap();
    assert_eq!((stats.oldest, stats.consumers[0].evicted_before_ack), (Some(13), 7));
    assert_eq!(stats.consumers[0].lag, 15);
    outbox.ack(b"s", b"up", 15).unwrap();
    let stats = outbox.stats(b"s").unwrap();
    assert_eq!(stats.consumers[0].evicted_before_ack, 7, "kept in the cursor once acknowledged past");
    assert_eq!(stats.evicted_before_ack, 7);
    // A consumer that arrives now starts at the oldest record: nothing was its to lose.
    outbox.ack(b"s", b"late", 18).unwrap();
    let late = outbox.stats(b"s").unwrap().consumers.into_iter().find(|c| c.name == b"late").unwrap();
    assert_eq!(late.evicted_before_ack, 0);
}

#[test]
fn bad_names_and_acknowledgements_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    let long = vec![b'x'; key::MAX_NAME_LEN + 1];
    for e in [outbox.append(b"", b"v").unwrap_err(), outbox.append(&long, b"v").unwrap_err()] {
        assert!(matches!(e, Error::Outbox(OutboxError::InvalidName { what: "stream", .. })), "{e}");
    }
    let e = outbox.ack(b"s", b"", 0).unwrap_err();
    assert_eq!(e.to_string(), "empty consumer name");
    outbox.append(&long[1..], b"the longest name").unwrap();
    outbox.append(b"s", b"1").unwrap();
    let e = outbox.ack(b"s", b"c", 2).unwrap_err();
    assert_eq!(e.to_string(), "cannot acknowledge seq 2: the stream's newest seq is 1");
    let e = outbox.append(b"s", &vec![0u8; minivault::MAX_VALUE_LEN + 1]).unwrap_err();
    assert!(e.to_string().contains("exceeds"), "{e}");
    assert_eq!(outbox.append(b"s", b"2").unwrap(), 2, "a refused append takes no seq");
    // A key someone else wrote under the outbox's prefix is reported, not misread.
    outbox.db().put(&[key::record_prefix(b"s"), vec![1, 2]].concat(), b"?").unwrap();
    let e = outbox.stats(b"s").unwrap_err();
    assert!(e.to_string().contains("was not written by it"), "{e}");
    drop(outbox);
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    let e = outbox.append(b"s", b"3").unwrap_err();
    assert!(e.to_string().contains("was not written by it"), "found by the reverse seek: {e}");
}

#[test]
fn appenders_on_several_threads_and_a_consumer_beside_them() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap().with_trim_step(1);
    const PER_THREAD: u32 = 500;
    let writers: Vec<_> = (0..3u32)
        .map(|t| {
            let outbox = outbox.clone();
            thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..PER_THREAD {
                    mine.push(outbox.append(b"s", format!("{t}/{i}").as_bytes()).unwrap());
                }
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "each thread's seqs increase");
                mine
            })
        })
        .collect();
    let reader = {
        let outbox = outbox.clone();
        thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 3 * PER_THREAD as usize {
                let from = outbox.cursor(b"s", b"c").unwrap() + 1;
                let batch = outbox.read(b"s", from, 64).unwrap();
                if let Some(last) = batch.last() {
                    seen.extend(batch.iter().map(|r| r.seq));
                    outbox.ack(b"s", b"c", last.seq).unwrap();
                }
            }
            seen
        })
    };
    let mut all: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort();
    assert_eq!(all, (1..=3 * PER_THREAD as u64).collect::<Vec<_>>(), "every seq handed out once");
    let seen = reader.join().unwrap();
    assert_eq!(seen, (1..=3 * PER_THREAD as u64).collect::<Vec<_>>(), "read in order, none skipped");
    assert_eq!(outbox.stats(b"s").unwrap().records, 0);
    let _: Arc<_> = outbox.db().clone();
}

#[test]
fn by_default_acknowledged_records_are_trimmed_in_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(tmp.path(), options()).unwrap();
    let values: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for chunk in values.chunks(500) {
        outbox.append_batch(b"s", chunk).unwrap();
    }
    outbox.ack(b"s", b"c", 1000).unwrap();
    assert_eq!(outbox.stats(b"s").unwrap().records, 3000, "1,000 acknowledged: under one step, kept");
    assert_eq!(outbox.read(b"s", 1001, 1).unwrap()[0].seq, 1001);
    outbox.ack(b"s", b"c", 2500).unwrap();
    let stats = outbox.stats(b"s").unwrap();
    assert_eq!((stats.records, stats.oldest), (500, Some(2501)), "one range delete below the cursor");
    assert_eq!(outbox.read(b"s", 0, 1).unwrap()[0].seq, 2501, "a read from 0 steps over the trimmed range");
    drop(outbox);
    let outbox = Outbox::open(tmp.path(), options()).unwrap();
    assert_eq!(outbox.append(b"s", b"next").unwrap(), 3001);
    assert_eq!(outbox.cursor(b"s", b"c").unwrap(), 2500);
}

#[test]
fn the_applications_own_reads_do_not_wait_for_an_appends_sync() {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Always, ..Options::default() };
    let outbox = Outbox::open(tmp.path(), options).unwrap();
    outbox.db().put(b"config", b"1").unwrap();
    // Holds every WAL sync "in progress" until the test lets it go.
    let (started_tx, started) = channel::<()>();
    let (go, go_rx) = channel::<()>();
    let (started_tx, go_rx) = (Mutex::new(started_tx), Mutex::new(go_rx));
    outbox.db().set_wal_sync_hook(Some(Arc::new(move || {
        started_tx.lock().unwrap().send(()).unwrap();
        go_rx.lock().unwrap().recv_timeout(Duration::from_secs(60)).expect("never let go");
        Ok(())
    })));
    let appender = {
        let outbox = outbox.clone();
        thread::spawn(move || outbox.append(b"s", b"record").unwrap())
    };
    started.recv_timeout(Duration::from_secs(60)).expect("the append's sync began");
    // The append is waiting for its sync: the application's get on the same handle goes on
    // meanwhile (with the handle behind a mutex the append held, it waited for the sync).
    let (done_tx, done) = channel::<Option<Vec<u8>>>();
    let reader = {
        let db = Arc::clone(outbox.db());
        let done_tx: Sender<_> = done_tx;
        thread::spawn(move || done_tx.send(db.get(b"config").unwrap()).unwrap())
    };
    let got = done.recv_timeout(Duration::from_secs(10));
    go.send(()).unwrap();
    assert_eq!(got.expect("the get waited for the outbox's sync"), Some(b"1".to_vec()));
    reader.join().unwrap();
    assert_eq!(appender.join().unwrap(), 1);
    outbox.db().set_wal_sync_hook(None);
}

#[test]
fn an_append_that_panics_after_its_record_was_logged_leaves_its_seq_taken() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Always, ..Options::default() };
    let outbox = Outbox::open(tmp.path(), options).unwrap();
    assert_eq!(outbox.append(b"s", b"one").unwrap(), 1);
    // The next WAL sync panics: the append's record is logged and in the MemTable, and the
    // panic goes up through the outbox while it holds its sequence counters.
    let armed = Arc::new(AtomicBool::new(true));
    let hook_armed = armed.clone();
    outbox.db().set_wal_sync_hook(Some(Arc::new(move || {
        if hook_armed.swap(false, Ordering::SeqCst) {
            panic!("a WAL sync that panics (on purpose)");
        }
        Ok(())
    })));
    let panicked = {
        let outbox = outbox.clone();
        thread::spawn(move || outbox.append(b"s", b"two")).join()
    };
    assert!(panicked.is_err(), "the append panics with its sync");
    assert!(!armed.load(Ordering::SeqCst));
    outbox.db().set_wal_sync_hook(None);
    // The record of the call that panicked is stored; the next append takes the seq after it
    // (a consumer may have read seq 2 already: handing it out again would lose a record).
    assert_eq!(outbox.append(b"s", b"three").unwrap(), 3);
    let stored: Vec<(u64, Vec<u8>)> =
        outbox.read(b"s", 1, 10).unwrap().into_iter().map(|r| (r.seq, r.value)).collect();
    assert_eq!(stored, vec![(1, b"one".to_vec()), (2, b"two".to_vec()), (3, b"three".to_vec())]);
}
