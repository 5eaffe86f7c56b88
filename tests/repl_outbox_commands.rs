//! The outbox's REPL commands through the `minivault` binary, piped and one-shot: `append`
//! prints each record's seq, `read STREAM FROM [LIMIT N]` prints `SEQ VALUE` lines and
//! `(N records)`, `ack STREAM CONSUMER SEQ` prints the cursor (which never moves back) and trims,
//! `lag STREAM` prints the stream, a line per consumer and `(N consumers)`; bad input is an
//! `ERR` line, never a panic; everything survives a restart.

mod common;

use common::cli::minivault_in;

#[test]
fn append_read_ack_lag_in_a_piped_session() {
    let tmp = tempfile::tempdir().unwrap();
    let script = "append s1 21.5\nappend s1 \"21.7 C\"\nappend s2 x\nappend s1 '\\xff'\nread s1 0\n\
                  read s1 2 LIMIT 1\nack s1 uplink 2\nack s1 uplink 1\nlag s1\nread s1 0\nack s1 audit 3\nlag s1\n\
                  read s1 9\nlag never\n";
    let ran = minivault_in(tmp.path(), ["db"], script);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let want = "1\n2\n1\n3\n\
                1 21.5\n2 \"21.7 C\"\n3 \\xff\n(3 records)\n\
                2 \"21.7 C\"\n(1 record)\n\
                2\n2\n\
                stream s1 oldest=3 newest=3 next=4 records=1 bytes=19 evicted_before_ack=0\n\
                consumer uplink cursor=2 lag=1 evicted_before_ack=0\n(1 consumer)\n\
                3 \\xff\n(1 record)\n\
                3\n\
                stream s1 oldest=3 newest=3 next=4 records=1 bytes=19 evicted_before_ack=0\n\
                consumer audit cursor=3 lag=0 evicted_before_ack=0\nconsumer uplink cursor=2 lag=1 evicted_before_ack=0\n\
                (2 consumers)\n\
                (0 records)\n\
                stream never oldest=- newest=- next=1 records=0 bytes=0 evicted_before_ack=0\n(0 consumers)\n";
    assert_eq!(ran.stdout, want);
    // After a restart: the next seq, the cursors, a one-shot command.
    let again = minivault_in(tmp.path(), ["db"], "append s1 next\nappend s2 y\nread s1 3\n");
    assert_eq!(again.stdout, "4\n2\n3 \\xff\n4 next\n(2 records)\n");
    let one = minivault_in(tmp.path(), ["db", "ack", "s1", "uplink", "4"], "");
    assert_eq!((one.code, one.stdout.as_str()), (0, "4\n"));
}

#[test]
fn bad_outbox_commands_are_err_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let script =
        "append s1\nappend s1 a b\nread s1\nread s1 -1\nread s1 x\nread s1 1 LIMIT 0\nread s1 1 LIMIT\n\
                  read s1 1 TAKE 5\nack s1 c\nack s1 c 18446744073709551616\nack s1 c 1\nappend \"\" v\nlag\n\
                  append s1 ok\nack s1 \"\" 1\nhelp append\n";
    let ran = minivault_in(tmp.path(), ["db"], script);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let want = [
        "ERR wrong number of arguments for append; usage: append STREAM VALUE",
        "ERR wrong number of arguments for append; usage: append STREAM VALUE",
        "ERR wrong number of arguments for read; usage: read STREAM FROM [LIMIT N]",
        "ERR invalid sequence number -1; expected an integer from 0 to 18446744073709551615",
        "ERR invalid sequence number x; expected an integer from 0 to 18446744073709551615",
        "ERR invalid LIMIT 0; LIMIT N needs an integer of at least 1",
        "ERR invalid LIMIT: LIMIT needs N, an integer of at least 1",
        "ERR wrong number of arguments for read; usage: read STREAM FROM [LIMIT N]",
        "ERR wrong number of arguments for ack; usage: ack STREAM CONSUMER SEQ",
        "ERR invalid sequence number 18446744073709551616; expected an integer from 0 to 18446744073709551615",
        "ERR cannot acknowledge seq 1: the stream's newest seq is 0",
        "ERR empty stream name",
        "ERR wrong number of arguments for lag; usage: lag STREAM",
        "1",
        "ERR empty consumer name",
    ];
    assert_eq!(&lines[..want.len()], want);
    assert!(lines[want.len()].starts_with("append STREAM VALUE: appends VALUE"), "{}", lines[want.len()]);
    let strict = minivault_in(tmp.path(), ["--strict", "db"], "read s1 x\nappend s1 never\n");
    assert_eq!(strict.code, 1);
    assert_eq!(minivault_in(tmp.path(), ["db", "read", "s1", "0"], "").stdout, "1 ok\n(1 record)\n");
}
