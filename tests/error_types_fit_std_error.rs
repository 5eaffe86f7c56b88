//! The library fits the Rust ecosystem's error handling: every public error type is a
//! `std::error::Error` with a `Display` (so `?` takes it into `Box<dyn Error>` or `anyhow`), a
//! message names each cause once even when printed with its whole chain (`anyhow`'s `{:#}`),
//! the engine's errors are matched through `minivault` alone, and the handle is `Debug`.

use std::fs;

use minivault::{BatchError, Corruption, Db, EngineError, Error, FileName, WriteBatch};

/// The error and its sources joined by ": ", as `anyhow`'s `{:#}` prints them.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn is_std_error<E: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn every_public_error_type_is_a_std_error() {
    is_std_error::<Error>();
    is_std_error::<EngineError>();
    is_std_error::<BatchError>();
}

#[test]
fn a_batch_error_goes_into_a_boxed_error_with_the_question_mark() {
    fn add_too_much() -> Result<(), Box<dyn std::error::Error>> {
        let mut batch = WriteBatch::new(vec![0; 16]);
        batch.put(b"key", &[0u8; 64])?;
        Ok(())
    }
    let e = add_too_much().unwrap_err();
    assert_eq!(e.to_string(), "write batch is full");
    assert_eq!(e.downcast_ref::<BatchError>(), Some(&BatchError::Full));
}

#[test]
fn an_os_error_is_named_once_with_the_whole_chain_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let e = Db::open(&file).unwrap_err();
    assert!(matches!(e, Error::Open { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("a-file") && shown.contains("Not a directory"), "{shown}");
    let chained = with_sources(&e);
    assert_eq!(chained.matches("Not a directory").count(), 1, "{chained}");
}

#[test]
fn engine_errors_are_matched_through_minivault_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    assert!(matches!(db.put(b"", b"v"), Err(Error::Engine(EngineError::EmptyKey))));
    db.put(b"key", &[b'v'; 3000]).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let table = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a flush wrote an SSTable");
    let mut bytes = fs::read(&table).unwrap();
    bytes[100] ^= 0xFF; // inside the record's value
    fs::write(&table, bytes).unwrap();
    let db = Db::open(tmp.path()).unwrap();
    match db.get(b"key") {
        Err(Error::Engine(EngineError::Corrupted {
            file,
            kind: Corruption::ChecksumMismatch { .. },
            ..
        })) => {
            let file: FileName = file;
            assert!(file.as_str().ends_with(".sst"), "{}", file.as_str());
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}

#[test]
fn the_handle_is_debug_and_says_where_and_how_it_stands() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path()).unwrap();
    db.put(b"k", b"v").unwrap();
    let shown = format!("{db:?}");
    for part in ["Db", tmp.path().to_str().unwrap(), "memtable_bytes", "poisoned: false", "memtable_keys: 1"]
    {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
}
