//! File names: what the engine calls its files, and how it recognises them when listing.
//!
//! `<id>.wal` (write-ahead log), `<id>.sst` (SSTable) and `<id>.tmp` (an SSTable being written),
//! where `<id>` is 16 lowercase hex digits. Ids come from one counter, starting at 1, so they order
//! files by age. Any other name in the directory (a lock file, a user's notes) is left alone,
//! and so is a name whose id the engine never issues (0, or 2^63 and above): the engine adds to
//! ids and subtracts from them, which such a name would make overflow.

use core::fmt::Write as _;

/// Longest file name the engine uses, and the capacity of [`FileName`].
pub const MAX_NAME_LEN: usize = 24;

/// A file name, held without allocation.
pub type FileName = heapless::String<MAX_NAME_LEN>;

/// The kinds of file the engine owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FileKind {
    /// A write-ahead log.
    Wal,
    /// A finished SSTable.
    Table,
    /// An SSTable whose write did not finish.
    TempTable,
}

impl FileKind {
    fn extension(self) -> &'static str {
        match self {
            FileKind::Wal => "wal",
            FileKind::Table => "sst",
            FileKind::TempTable => "tmp",
        }
    }
}

/// The name of file `id` of `kind`.
pub fn file_name(kind: FileKind, id: u64) -> FileName {
    let mut s = FileName::new();
    // 16 + 1 + 3 characters always fit in MAX_NAME_LEN.
    let _ = write!(s, "{id:016x}.{}", kind.extension());
    s
}

/// Recognises one of the engine's names.
pub fn parse_name(name: &str) -> Option<(FileKind, u64)> {
    let (stem, ext) = name.split_once('.')?;
    let kind =
        [FileKind::Wal, FileKind::Table, FileKind::TempTable].into_iter().find(|k| k.extension() == ext)?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let id = u64::from_str_radix(stem, 16).ok()?;
    (1..MAX_ID).contains(&id).then_some((kind, id))
}

/// Ids the engine issues and recognises are below this.
pub const MAX_ID: u64 = 1 << 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [FileKind::Wal, FileKind::Table, FileKind::TempTable] {
            for id in [1, 0xabc, MAX_ID - 1] {
                assert_eq!(parse_name(&file_name(kind, id)), Some((kind, id)));
            }
        }
        assert_eq!(file_name(FileKind::Wal, 1).as_str(), "0000000000000001.wal");
    }

    #[test]
    fn foreign_names_are_not_recognised() {
        for n in [
            "LOCK",
            "notes.txt",
            "1.wal",
            "000000000000000G.sst",
            "0000000000000001.log",
            "",
            "0000000000000000.wal",
            "8000000000000000.sst",
            "ffffffffffffffff.tmp",
        ] {
            assert_eq!(parse_name(n), None, "{n}");
        }
    }
}
