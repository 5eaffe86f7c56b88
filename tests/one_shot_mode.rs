//! One-shot mode, like redis-cli: `minivault DIR COMMAND ARG...` runs one command, prints its
//! reply and exits 0, or 1 after an `ERR` reply. The first argument is DIR and every word after
//! it is one token of the command, taken literally (spaces, quotes, leading dashes).

mod common;

use common::cli::{minivault_in, Ran};
use std::path::Path;

fn mv(cwd: &Path, args: &[&str]) -> Ran {
    minivault_in(cwd, args, "")
}

fn reply(cwd: &Path, args: &[&str]) -> (String, i32) {
    let ran = mv(cwd, args);
    (ran.stdout, ran.code)
}

#[test]
fn one_command_prints_its_reply_and_exits_0() {
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    assert_eq!(reply(cwd, &["db", "put", "key1", "value1"]), ("OK\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "get", "key1"]), ("value1\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "get", "missing"]), ("(nil)\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "quit"]), ("".into(), 0));
    let ran = mv(cwd, &["db", "get", "key1"]);
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
}

#[test]
fn each_word_after_dir_is_one_token_taken_literally() {
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    assert_eq!(reply(cwd, &["db", "put", "my key", "a \"b\" c"]), ("OK\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "get", "my key"]), ("\"a \\\"b\\\" c\"\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "put", "-k", "--help"]), ("OK\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "get", "-k"]), ("--help\n".into(), 0));
    assert_eq!(reply(cwd, &["db", "SET", "t", "v", "EX", "60"]), ("OK\n".into(), 0));
}

#[test]
fn an_err_reply_exits_1() {
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    let (out, code) = reply(cwd, &["db", "put", "", "v"]);
    assert_eq!((out.as_str(), code), ("ERR empty key\n", 1));
    let (out, code) = reply(cwd, &["db", "get"]);
    assert!(out.starts_with("ERR wrong number of arguments for get") && code == 1, "{out}");
}

#[test]
fn a_command_that_does_not_parse_opens_and_creates_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    // DIR forgotten: "get" is taken as the directory and "key1" as the command.
    let ran = mv(cwd, &["get", "key1"]);
    assert_eq!((ran.stdout.as_str(), ran.code), ("ERR unknown command key1 (type help)\n", 1));
    assert!(ran.stderr.contains("was taken as the database directory"), "{}", ran.stderr);
    assert!(!cwd.join("get").exists());
    let ran = mv(cwd, &["db", "frobnicate"]);
    assert_eq!(ran.code, 1);
    assert!(!cwd.join("db").exists());
}

#[test]
fn a_locked_database_is_an_open_failure_with_exit_1() {
    let cwd = tempfile::tempdir().unwrap();
    let _held = minivault::Db::open(cwd.path().join("db")).unwrap();
    let ran = mv(cwd.path(), &["db", "get", "k"]);
    assert_eq!((ran.stdout.as_str(), ran.code), ("", 1));
    assert!(ran.stderr.contains("database is locked"), "{}", ran.stderr);
}
