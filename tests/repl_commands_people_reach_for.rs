//! The commands people reach for from redis: `set` (as `put`), `PX` beside `EX`, `ttl` / `pttl`
//! (`-1` never expires, `-2` absent), `exists`, `mget`, `del` of several keys, `help COMMAND`,
//! and `info`, the readable statistics: sections, human units, ending with an empty line. Every
//! other reply stays one line, so a script reads one line per command.

mod common;

use std::time::Duration;

use common::cli::minivault_in;

fn session(dir: &std::path::Path, script: &str) -> Vec<String> {
    let ran = minivault_in(dir, ["db"], script);
    assert_eq!(ran.code, 0, "stderr: {}", ran.stderr);
    ran.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn set_px_ttl_pttl_exists_mget_and_del() {
    let cwd = tempfile::tempdir().unwrap();
    let script = "set a 1\nput b \"two words\" EX 60\nSET c 3 PX 1500\nttl a\nttl b\nttl nope\npttl c\n\
                  exists a b nope a\nmget a b nope c\ndel a b nope\nmget a b c\nexists a b\n";
    let out = session(cwd.path(), script);
    assert_eq!(out.len(), 12, "{out:?}");
    assert_eq!(out[..3], ["OK", "OK", "OK"]);
    assert_eq!(out[3..6], ["-1", "60", "-2"]);
    let pttl: u64 = out[6].parse().unwrap();
    assert!(pttl > 1000 && pttl <= 1500, "pttl {pttl}");
    assert_eq!(out[7], "3", "exists counts each key given, repeats included");
    assert_eq!(out[8], "1 \"two words\" (nil) 3", "mget: one line, values as get prints them");
    assert_eq!(out[9], "OK", "del prints OK, whether or not the keys existed");
    assert_eq!(out[10..], ["(nil) (nil) 3", "0"]);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(session(cwd.path(), "get c\nttl c\npttl c\n"), ["(nil)", "-2", "-2"], "PX expired");
}

#[test]
fn a_value_that_reads_as_a_reply_is_quoted() {
    let cwd = tempfile::tempdir().unwrap();
    let out = session(cwd.path(), "put e ERR\nput n \"(nil)\"\nget e\nmget e n\n");
    assert_eq!(out, ["OK", "OK", "\"ERR\"", "\"ERR\" \"(nil)\""], "no value line starts with ERR");
}

#[test]
fn invalid_px_is_one_err_line() {
    let cwd = tempfile::tempdir().unwrap();
    let out =
        session(cwd.path(), "put k v PX 0\nput k v PX\nput k v PX 1.5\nput k v PX 4294967295001\nget k\n");
    assert_eq!(out.len(), 5, "{out:?}");
    for line in &out[..4] {
        assert!(line.starts_with("ERR invalid TTL"), "{line}");
    }
    assert_eq!(out[4], "(nil)");
}

#[test]
fn help_command_says_what_one_command_does() {
    let cwd = tempfile::tempdir().unwrap();
    let out = session(cwd.path(), "help ttl\nHELP SET\nhelp nope\nhelp\n");
    assert!(out[0].starts_with("ttl KEY: ") && out[0].contains("-2"), "{}", out[0]);
    assert!(out[1].starts_with("put KEY VALUE [EX SECONDS | PX MILLISECONDS]: "), "{}", out[1]);
    assert_eq!(out[2], "ERR unknown command nope (type help)");
    assert!(out[3].starts_with("commands: ") && out[3].contains("mget KEY..."), "{}", out[3]);
    assert_eq!(out.len(), 4);
}

#[test]
fn info_is_readable_sections_ending_with_an_empty_line() {
    let cwd = tempfile::tempdir().unwrap();
    let out = session(cwd.path(), "put key1 value1\nget key1\ninfo\nget key1\nstats\n");
    let end = out.iter().position(String::is_empty).expect("info ends with an empty line");
    let info = &out[2..end];
    for section in ["# database", "# memtable", "# sstables", "# reads"] {
        assert!(info.iter().any(|l| l == section), "{section} in {info:?}");
    }
    let active = info.iter().find(|l| l.starts_with("active")).unwrap();
    assert!(active.contains("of 3.5 MiB, 1 key"), "{active}");
    let memory = info.iter().find(|l| l.starts_with("memory")).unwrap();
    assert!(memory.contains("at most 64 MiB"), "{memory}");
    // The parts it names add up to the total: 2 MemTables, 2 merge buffers and 1 flush copy of
    // 4 MiB each, 8 MiB of pages, 4 MiB of rows, 32 MiB of table indexes.
    assert!(
        memory.contains("(2 MemTables of 4 MiB, 2 merge buffers and 1 flush copy as large, page cache 8 MiB, row cache 4 MiB, table indexes 32 MiB)"),
        "{memory}"
    );
    let indexes = info.iter().find(|l| l.starts_with("indexes")).unwrap();
    assert!(indexes.starts_with("indexes    0 of 0 tables resident (0 filters), 0 B of 32 MiB"), "{indexes}");
    let row_cache = info.iter().find(|l| l.starts_with("row cache")).unwrap();
    assert!(row_cache.starts_with("row cache  1 row, "), "{row_cache}");
    assert!(info.iter().any(|l| l.starts_with("disk ")), "{info:?}");
    // The next command's reply follows the empty line; stats stays one line.
    assert_eq!(out[end + 1], "value1");
    assert!(out[end + 2].starts_with("memtable_keys=1/"), "{}", out[end + 2]);
    // The writes' waits for the background work, last: none in a session this small.
    assert!(
        out[end + 2].ends_with(" flush_waits=0 paced_writes=0 slowed_writes=0 stopped_writes=0 stalled_ms=0"),
        "{}",
        out[end + 2]
    );
    assert_eq!(out.len(), end + 3);
}

#[test]
fn delrange_deletes_from_start_up_to_but_not_including_end_and_survives_reopen() {
    let cwd = tempfile::tempdir().unwrap();
    let script = "put log/1 a\nput log/2 b\nput log/3 c\nput log/4 d\nflush\nput log/5 e\n\
                  delrange log/2 log/4\nscan - +\ndelrange b a\ndelrange x\n";
    let out = session(cwd.path(), script);
    assert_eq!(out[..7], ["OK"; 7], "{out:?}");
    assert_eq!(out[7..11], ["log/1 a", "log/4 d", "log/5 e", "(3 keys)"], "the flushed keys are hidden too");
    assert!(
        out[11].starts_with("ERR ") && out[11].contains("range"),
        "an empty range is refused: {}",
        out[11]
    );
    assert!(out[12].starts_with("ERR ") && out[12].contains("delrange START END"), "{}", out[12]);
    assert_eq!(session(cwd.path(), "count - +\nget log/3\n"), ["3", "(nil)"], "after reopen");
}

#[test]
fn max_bytes_with_drop_oldest_on_the_command_line_keeps_the_files_under_the_cap() {
    let cwd = tempfile::tempdir().unwrap();
    let value = "v".repeat(1000);
    let mut script: String = (0..3000).map(|i| format!("put k{i:05} {value}\n")).collect();
    script.push_str("get k02999\nget k00000\ninfo\n");
    let args = [
        "--memtable-bytes",
        "64K",
        "--max-bytes",
        "1M",
        "--when-full",
        "drop-oldest",
        "--sync",
        "manual",
        "db",
    ];
    let ran = minivault_in(cwd.path(), args, &script);
    assert_eq!(ran.code, 0, "stderr: {}", ran.stderr);
    let out: Vec<&str> = ran.stdout.lines().collect();
    assert!(out[..3000].iter().all(|l| *l == "OK"), "every put is accepted: {:?}", &out[..3]);
    assert_eq!(out[3000], value, "the newest key is kept");
    assert_eq!(out[3001], "(nil)", "the oldest key was dropped");
    let info = out[3002..].join("\n");
    assert!(info.contains("of a 1 MiB cap, oldest tables dropped when full"), "{info}");
    assert!(info.contains("\nevicted    "), "{info}");
    let files: u64 =
        std::fs::read_dir(cwd.path().join("db")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(files <= (1 << 20) + (1 << 17), "files take {files} bytes, over the cap and its eighth");
    let refused = minivault_in(
        cwd.path(),
        ["--memtable-bytes", "64K", "--max-bytes", "1M", "db", "put", "a", value.as_str()],
        "",
    );
    assert_eq!(refused.code, 1, "refuse is the default: {}", refused.stdout);
    assert!(refused.stdout.starts_with("ERR no space"), "{}", refused.stdout);
}
