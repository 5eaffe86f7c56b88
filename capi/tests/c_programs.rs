//! The C API from C, built with the system's C compiler (`$CC`, else `cc`) against this
//! crate's `libminivault.a` and `libminivault.so` (built by the tests: see [`lib_dir`]):
//!
//! - `tests/c/test_minivault.c` (every function, errors, NULLs, iterators, batches, TTLs, a
//!   second handle locked out, read-only, threads) linked statically and dynamically, and
//!   under AddressSanitizer with LeakSanitizer and UBSan for the C side (when the compiler
//!   supports `-fsanitize=address`), and under Valgrind's memcheck with leak checking when
//!   `MINIVAULT_VALGRIND=1` (`.ci/run` sets it);
//! - `examples/c/telemetry.c`, whose output is checked;
//! - `nm -D`: the shared library exports `minivault_*` symbols and nothing else.
//!
//! `MINIVAULT_REQUIRE_SANITIZERS=1` (`.ci/run`) turns a missing sanitizer or tool into a
//! failure instead of a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory holding `libminivault.a` and `libminivault.so`, built for these tests.
///
/// `cargo test` builds this crate's library only as a test harness (a cdylib or staticlib is
/// nothing an integration test can link), so the tests build it themselves, once per test
/// binary: `cargo build --profile c-tests -p minivault-capi --lib`. The `c-tests` profile (the
/// dev profile, in the root Cargo.toml) has its own directory, `target/c-tests`, and so its
/// own build lock: the `cargo test` running these tests holds `target/debug`'s.
fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // <target dir>/<profile>/deps/<this test>
        let target_dir = exe.ancestors().nth(3).expect("target directory").to_path_buf();
        let output = Command::new(env!("CARGO"))
            .args(["build", "--profile", "c-tests", "-p", "minivault-capi", "--lib"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(repo())
            .output()
            .expect("run cargo");
        assert!(
            output.status.success(),
            "cargo build --profile c-tests -p minivault-capi failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = target_dir.join("c-tests");
        assert!(
            dir.join("libminivault.a").exists() && dir.join("libminivault.so").exists(),
            "{}",
            dir.display()
        );
        dir
    })
    .clone()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

fn require_sanitizers() -> bool {
    std::env::var_os("MINIVAULT_REQUIRE_SANITIZERS").is_some_and(|v| v == "1")
}

/// Skips (returns false, saying why) or, when sanitizers are required, fails.
fn unavailable(what: &str) -> bool {
    assert!(!require_sanitizers(), "{what} is not available, and MINIVAULT_REQUIRE_SANITIZERS=1");
    eprintln!("skipped: {what} is not available");
    false
}

#[derive(Clone, Copy)]
enum Link {
    Static,
    Shared,
}

/// Compiles `source` into `out` with `flags`, linked against the library.
fn compile(source: &Path, out: &Path, flags: &[&str], link: Link) -> Output {
    let lib = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .args(flags)
        .arg("-I")
        .arg(repo().join("capi/include"))
        .arg(source)
        .arg("-o")
        .arg(out);
    match link {
        Link::Static => cmd.arg(lib.join("libminivault.a")),
        Link::Shared => cmd
            .arg(format!("-L{}", lib.display()))
            .arg("-lminivault")
            .arg(format!("-Wl,-rpath,{}", lib.display())),
    };
    // What Rust's standard library needs from the C library when linked statically.
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    cmd.output().unwrap_or_else(|e| panic!("cannot run the C compiler {}: {e}", cc()))
}

fn build(source: &Path, out: &Path, flags: &[&str], link: Link) {
    let output = compile(source, out, flags, link);
    assert!(
        output.status.success(),
        "{} failed to compile {}:\n{}",
        cc(),
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `cmd`, expecting exit status 0; returns its standard output.
fn run(mut cmd: Command, what: &str) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

fn test_program() -> PathBuf {
    repo().join("capi/tests/c/test_minivault.c")
}

/// Builds and runs the C test program; checks its closing line.
fn run_test_program(flags: &[&str], link: Link, wrapper: &[&str], env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let exe = tmp.path().join("test_minivault");
    build(&test_program(), &exe, flags, link);
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch directory");
    let mut cmd = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg(&scratch).envs(env.iter().copied());
    let out = run(cmd, "the C test program");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "unexpected closing line: {last}");
    eprintln!("C test program: {last}");
}

#[test]
fn c_test_program_passes_linked_statically() {
    run_test_program(&[], Link::Static, &[], &[]);
}

#[test]
fn c_test_program_passes_linked_dynamically() {
    run_test_program(&[], Link::Shared, &[], &[]);
}

#[test]
fn c_test_program_passes_under_address_sanitizer() {
    let flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"];
    let probe = tempfile::tempdir().expect("temporary directory");
    let src = probe.path().join("probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").expect("write probe");
    let ok = Command::new(cc())
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(probe.path().join("probe"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok && !unavailable("AddressSanitizer (cc -fsanitize=address)") {
        return;
    }
    // Leak detection on; any report fails the run (exit status non-zero).
    let env = [
        ("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86"),
        ("UBSAN_OPTIONS", "halt_on_error=1"),
    ];
    run_test_program(&flags, Link::Static, &[], &env);
}

#[test]
fn c_test_program_passes_under_valgrind() {
    if std::env::var_os("MINIVAULT_VALGRIND").is_none_or(|v| v != "1") {
        eprintln!(
            "skipped: set MINIVAULT_VALGRIND=1 to run the C test program under Valgrind (.ci/run does)"
        );
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() && !unavailable("valgrind") {
        return;
    }
    // One pattern of glibc's own is not counted (the file says why).
    let suppressions = format!("--suppressions={}", repo().join("capi/tests/c/valgrind.supp").display());
    let valgrind = [
        "valgrind",
        "--quiet",
        "--error-exitcode=86",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect,possible",
        "--errors-for-leak-kinds=definite,indirect,possible",
        &suppressions,
    ];
    run_test_program(&[], Link::Static, &valgrind, &[]);
}

#[test]
fn telemetry_example_runs() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let exe = tmp.path().join("telemetry");
    build(&repo().join("examples/c/telemetry.c"), &exe, &["-O2"], Link::Static);
    let mut cmd = Command::new(&exe);
    cmd.arg(tmp.path().join("data"));
    let out = run(cmd, "examples/c/telemetry.c");
    let expected_starts = [
        "newest reading of sensor1: sensor1/0000000999 = ",
        "sensor4 since t=1040: 10 readings, mean ",
        "wrote 4050 readings: ",
        "reopened: every reading checked, the expired alarm is gone",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected_starts.len(), "{out}");
    for (line, start) in lines.iter().zip(expected_starts) {
        assert!(line.starts_with(start), "expected a line starting with {start:?}, got {line:?}");
    }
}

#[test]
fn the_shared_library_exports_only_minivault_symbols() {
    let so = lib_dir().join("libminivault.so");
    let Ok(output) = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output() else {
        unavailable("nm");
        return;
    };
    assert!(output.status.success(), "nm failed: {}", String::from_utf8_lossy(&output.stderr));
    let listing = String::from_utf8_lossy(&output.stdout);
    let symbols: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    let foreign: Vec<&&str> = symbols.iter().filter(|s| !s.starts_with("minivault_")).collect();
    assert!(foreign.is_empty(), "exported symbols outside minivault_*: {foreign:?}");
    for expected in
        ["minivault_open", "minivault_close", "minivault_get", "minivault_iter_next", "minivault_last_error"]
    {
        assert!(symbols.contains(&expected), "{expected} is not exported");
    }
}
