//! The Python package as a user installs it: `scripts/python-tests.sh` makes a virtual
//! environment, `pip install ./python` builds the extension (maturin from PyPI, cargo), and the
//! package's pytest suite and example run in it. A failing pytest fails this test.
//!
//! Needs `python3` with its `venv` module and pip reaching PyPI. Without `venv` the test says so and
//! passes, unless `MINIVAULT_REQUIRE_PYTHON=1` is set (as `.ci/run` does after installing it).

use std::path::Path;
use std::process::Command;

const REQUIRE_ENV: &str = "MINIVAULT_REQUIRE_PYTHON";

fn python_with_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

#[test]
fn pip_install_of_the_python_package_passes_its_pytest_suite() {
    if !python_with_venv() {
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "{REQUIRE_ENV} is set but python3 with venv and ensurepip is missing"
        );
        eprintln!("SKIPPED: python3 with its venv module is not installed (apt-get install python3-venv)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The extension is built by cargo under pip: a target directory of its own, so that it
    // never waits for (or overwrites) the one `cargo test` is using.
    let status = Command::new(root.join("scripts/python-tests.sh"))
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target/python-build"))
        .status()
        .expect("run scripts/python-tests.sh");
    assert!(status.success(), "scripts/python-tests.sh failed: {status}");
}
