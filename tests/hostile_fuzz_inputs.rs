//! The fuzz targets' checks in the normal `cargo test`: every input saved under
//! `fuzz/regressions/<target>/` (crashes found by `scripts/fuzz.sh`, kept after the fix), a few
//! hand-made edge cases, and a few hundred pseudo-random inputs per target, go through the same
//! functions the libFuzzer targets call (`minivault_suite::fault::targets`).

use std::fs;
use std::path::Path;

use minivault_suite::fault::{targets, Rng};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("record_decode", targets::record_decode),
    ("wal_replay", targets::wal_replay),
    ("sstable_lookup", targets::sstable_lookup),
    ("repl_parse", targets::repl_parse),
    ("ops", targets::ops),
];

#[test]
fn saved_fuzz_inputs_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let Ok(entries) = fs::read_dir(root.join(name)) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let data = fs::read(&path).expect("read saved input");
            eprintln!("replaying {}", path.display());
            target(&data);
            replayed += 1;
        }
    }
    eprintln!("{replayed} saved fuzz inputs replayed");
}

#[test]
fn hand_made_edge_cases() {
    let huge_len = [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0, 1, 2, 3];
    let zero_len = [0u8; 16];
    let one_record = {
        // kind put, key "k", value "v", framed.
        let payload = [1u8, 1, 0, b'k', b'v'];
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(&minivault_core::record::crc32c(&[&payload]).to_le_bytes());
        r.extend_from_slice(&payload);
        r
    };
    let mut twice = one_record.clone();
    twice.extend_from_slice(&one_record);
    let mut damaged_middle = twice.clone();
    damaged_middle[one_record.len() - 1] ^= 1;
    let footer_only = {
        let mut b = b"MVSSTBL1".to_vec();
        b.resize(48, 0);
        b
    };
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        huge_len.to_vec(),
        zero_len.to_vec(),
        one_record.clone(),
        [&[0u8][..], &one_record].concat(),
        [&[3u8][..], &twice].concat(),
        [&[0u8][..], &damaged_middle].concat(),
        [&[1u8][..], &damaged_middle].concat(),
        [&[0u8][..], &footer_only, b"k"].concat(),
        [&[1u8][..], &[7u8; 200][..]].concat(),
        b"put \"\\xff\\x00\" 'v' EX 4294967295".to_vec(),
        b"put k \"\xc3\x28\"".to_vec(),
        [&[5u8][..], &[0u8, 1, 9, 1, 7, 0, 8, 0, 9, 0, 6, 1][..]].concat(),
    ];
    for (name, target) in TARGETS {
        for input in &inputs {
            eprintln!("{name}: {} bytes", input.len());
            target(input);
        }
    }
}

#[test]
fn pseudo_random_inputs_do_not_break_the_targets() {
    let mut rng = Rng::new(0xF022);
    for (name, target) in TARGETS {
        let runs = if name == "ops" { 60 } else { 300 };
        for _ in 0..runs {
            let len = rng.below(600) as usize;
            let data = rng.bytes(len);
            target(&data);
        }
    }
}
