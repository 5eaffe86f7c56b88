//! `include/minivault.h` is what cbindgen makes of the crate now: regenerates the header into a
//! string and compares it with the committed file. With `MINIVAULT_UPDATE_HEADER=1` it writes
//! the file instead.

use std::path::PathBuf;

#[test]
fn committed_header_matches_the_code() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/minivault.h");
    if std::env::var_os("MINIVAULT_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/minivault.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "capi/include/minivault.h is out of date (first difference at line {}): regenerate it with\n  \
             MINIVAULT_UPDATE_HEADER=1 cargo test -p minivault-capi --test header_is_current",
            first_difference + 1
        );
    }
}
