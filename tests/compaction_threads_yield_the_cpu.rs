//! The compaction threads run as many nice levels below the writer and the readers as
//! `Options::compaction_nice` asks (none by default), on Linux where a nice value belongs to
//! one thread; the flush thread keeps the process's priority. Its own test binary: the threads
//! are found by name among the process's, and no other test's database may have any then.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use minivault::{Db, Options};

/// `(name, nice value)` of every thread of this process, from `/proc/self/task`.
fn threads() -> Vec<(String, i64)> {
    let mut found = vec![];
    for task in fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let (Ok(comm), Ok(stat)) =
            (fs::read_to_string(path.join("comm")), fs::read_to_string(path.join("stat")))
        else {
            continue; // a thread that ended meanwhile
        };
        found.push((comm.trim_end().to_string(), nice_in(&stat)));
    }
    found
}

/// The nice value in a `/proc/.../stat` line: `pid (comm) state ppid ...`, its 19th field, the
/// 17th after the name's closing parenthesis (the name itself may hold spaces and parentheses).
fn nice_in(stat: &str) -> i64 {
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(16).unwrap().parse().unwrap()
}

fn nice_of(prefix: &str) -> Vec<i64> {
    threads().into_iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, nice)| nice).collect()
}

#[test]
#[cfg(target_os = "linux")]
fn compaction_threads_run_as_far_below_the_process_as_asked_and_the_flush_thread_level() {
    let tmp = tempfile::tempdir().unwrap();
    // What the process runs at (its main thread's nice value, whatever the runner gave it).
    let base = nice_in(&fs::read_to_string("/proc/self/stat").unwrap());
    for (nice, expected) in [(Options::DEFAULT.compaction_nice, 0), (10, 10), (19, 19)] {
        let db = Db::open_with(
            tmp.path().join(format!("db{nice}")),
            Options { compaction_nice: nice, ..Options::default() },
        )
        .unwrap();
        let want = (base + expected).min(19);
        // Each thread names itself and lowers its own priority once it runs (until it names
        // itself it has the name of the thread that started it): wait for both (5 s at most).
        let deadline = Instant::now() + Duration::from_secs(5);
        let compaction = loop {
            let compaction = nice_of("minivault-compa");
            let settled = compaction.len() == Options::DEFAULT.background_threads
                && compaction.iter().all(|&n| n == want)
                && !nice_of("minivault-flush").is_empty();
            if settled || Instant::now() > deadline {
                break compaction;
            }
            thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(compaction.len(), Options::DEFAULT.background_threads, "{:?}", threads());
        assert!(compaction.iter().all(|&n| n == want), "compaction_nice {nice}: {compaction:?}, want {want}");
        assert_eq!(nice_of("minivault-flush"), vec![base], "the flush thread keeps the process's priority");
        db.close().unwrap();
        assert!(nice_of("minivault-compa").is_empty(), "close joins the threads");
    }
}
