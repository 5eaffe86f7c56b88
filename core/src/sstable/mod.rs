//! SSTable: an immutable file of entries sorted by key, written once from a frozen MemTable.
//!
//! ```text
//! [ data  : entry records (u32 len | u32 crc32c | entry payload), ascending key order ]
//! [ index : entry_count × u32 LE, the offset of each record in the data section        ]
//! [ fences: the key of every FENCE_STRIDE-th record (records 0, 16, 32, ...):           ]
//! [         fence_count × u32 LE offset of each fence key, relative to the keys' start, ]
//! [         then the keys, each u16 LE key_len | key                                    ]
//! [ filter: filter_len bytes, a blocked Bloom filter of the keys (crate::filter); may be empty ]
//! [ footer: 56 bytes                                                                    ]
//!   0  magic         8  b"MVSSTBL1"
//!   8  version       u16 = 2 (version 1: no fences and no filter; still read)
//!   10 flags         u16 = 0 (reserved)
//!   12 entry_count   u32
//!   16 index_offset  u64 (= length of the data section)
//!   24 index_crc     u32  CRC-32C of the index and fence sections
//!   28 filter_len    u32  bytes of filter, a multiple of 64 (0 = no filter)
//!   32 wal_covered   u64  every WAL with id <= this is fully contained in SSTables
//!   40 replaces_from u64  this table replaces every table with an id in [replaces_from, own id)
//!   48 max_key_len   u16  longest key in the table (sizes compaction's scratch memory)
//!   50 reserved      u16 = 0
//!   52 footer_crc    u32  CRC-32C of footer bytes 0..52
//! ```
//!
//! Every byte a lookup trusts is checksummed: the footer by its own CRC, the index and the
//! fences by `index_crc` (checked when the table is opened), each filter block by its own CRC (checked on
//! every query), each record by its header CRC (checked on every probe, while the key is
//! compared, by streaming the record through a 128-byte buffer). A lookup therefore never loads
//! the file, and a flipped bit yields [`crate::Corruption`], never a wrong value.
//!
//! A lookup first asks the filter (one 64-byte read): a key it rules out costs no search. Then a
//! binary search over the fences, a compact section that stays in a read cache, picks the run of
//! [`FENCE_STRIDE`] records that can hold the key, and a binary search over that run (a few
//! hundred bytes of data, usually one page) finds it.
//!
//! Files: [`footer`] (the footer and the checks made when a table is opened), [`table`] (an open
//! table and its point lookup), [`bounds`] (the prefixes of a table's least and greatest keys,
//! which let a lookup skip it and the policy keep tables that overlap nothing), [`index`] (where a lookup finds the filter and fences: storage,
//! or memory a host gives it), [`builder`] (writing a table).
// Decodes bytes read from storage: every index is checked.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod bounds;
pub mod builder;
pub mod footer;
pub mod index;
pub mod table;

pub use bounds::{key_prefix, KeyBounds, KeyPrefix};
pub use builder::{Finish, ReadBack, SsTableBuilder};
pub use footer::{open, Footer};
pub use index::{ResidentIndex, Run, StoredIndex, TableIndex};
pub use table::{
    get, lookup, may_contain, probe, probe_with, range_vs_key, ranges_cover, read_range, Lookup, Probe,
    ProbeTable, ReadCounters, Table, TableInfo,
};

/// The footer's magic number.
pub const MAGIC: [u8; 8] = *b"MVSSTBL1";
/// The format version this build writes for a table without range deletes (it also reads
/// version 1, which has no filter).
pub const VERSION: u16 = 2;
/// The format version of a table with range deletes: version 2 plus a range-delete section.
pub const VERSION_RANGES: u16 = 3;
/// Bytes in the footer.
pub const FOOTER_LEN: usize = 56;
/// Records per fence: the fence section holds the key of every `FENCE_STRIDE`-th record.
pub const FENCE_STRIDE: u32 = 16;

/// Fences a table of `entries` entries has.
pub fn fence_count(entries: u32) -> u32 {
    entries.div_ceil(FENCE_STRIDE)
}

#[cfg(test)]
mod tests {
    use super::footer::TRAILER_LEN;
    use super::*;
    use crate::entry::EntryHeader;
    use crate::error::Corruption;
    use crate::io::{write_at, ReadError};
    use crate::mem_storage::MemStorage;
    use crate::record::{crc32c, RecordHeader};
    use crate::storage::Storage;

    type Mem = MemStorage<Vec<u8>, 2>;

    fn payload(key: &[u8], value: &[u8], tombstone: bool) -> Vec<u8> {
        let h = EntryHeader { tombstone, key_len: key.len(), expires_at: None };
        let (hb, n) = h.encode();
        [&hb[..n], key, value].concat()
    }

    /// What a builder reads back from a list of payloads held in memory.
    struct Payloads<'a>(&'a [Vec<u8>]);

    impl<S: Storage> ReadBack<S> for Payloads<'_> {
        fn payload_len(&mut self, _: &mut S, i: u32) -> Result<usize, crate::Error<S::Error>> {
            Ok(self.0[i as usize].len())
        }
        fn key(&mut self, _: &mut S, i: u32) -> Result<&[u8], crate::Error<S::Error>> {
            Ok(crate::entry::decode(&self.0[i as usize]).unwrap().key)
        }
    }

    /// Writes a table of `(key, value)` (value `None` = tombstone), keys ascending.
    fn build(entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> (Mem, crate::mem_storage::MemFile, Footer) {
        let mut s = Mem::new(vec![0; 1 << 20]);
        let mut f = s.create("t.sst").unwrap();
        let payloads: Vec<Vec<u8>> =
            entries.iter().map(|(k, v)| payload(k, v.as_deref().unwrap_or(&[]), v.is_none())).collect();
        let mut b = SsTableBuilder::new();
        for p in &payloads {
            b.add(&mut s, &mut f, p).unwrap();
        }
        let mut filter_mem = vec![0u8; 4096];
        let filter = match crate::filter::FilterBuilder::new(&mut filter_mem, entries.len()) {
            Some(mut fb) => {
                entries.iter().for_each(|(k, _)| fb.add(crate::filter::key_hash(k)));
                fb.finish()
            }
            None => &[],
        };
        let name = crate::names::FileName::new();
        let footer = b.finish(&mut s, &mut f, &mut Payloads(&payloads), filter, 7, 3, &name).unwrap();
        (s, f, footer)
    }

    fn entries(n: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..n)
            .map(|i| {
                let k = format!("key{:05}", i * 2).into_bytes();
                let v = if i % 7 == 3 {
                    None
                } else {
                    Some(format!("value-{i}").repeat(1 + i as usize % 9).into_bytes())
                };
                (k, v)
            })
            .collect()
    }

    #[test]
    fn every_key_is_found_and_gaps_are_absent() {
        let es = entries(300);
        let (mut s, mut f, footer) = build(&es);
        let len = s.len(&mut f).unwrap();
        assert_eq!(open(&mut s.io(&mut f), len).unwrap(), footer);
        assert_eq!((footer.entry_count, footer.wal_covered, footer.replaces_from), (300, 7, 3));
        let mut out = [0u8; 256];
        for (i, (k, v)) in es.iter().enumerate() {
            let got = lookup(&mut s.io(&mut f), &footer, k, &mut out).unwrap();
            match (got, v) {
                (Lookup::Found { value_len, tombstone: false, .. }, Some(v)) => {
                    assert_eq!(&out[..value_len], &v[..])
                }
                (Lookup::Found { tombstone: true, value_len: 0, .. }, None) => {}
                other => panic!("entry {i}: {other:?}"),
            }
            // Keys between and around stored ones are absent.
            let gap = format!("key{:05}", i * 2 + 1).into_bytes();
            assert_eq!(lookup(&mut s.io(&mut f), &footer, &gap, &mut out).unwrap(), Lookup::Absent);
        }
        for k in [&b"a"[..], b"key", b"key0", b"zzz", b"key00000\0"] {
            assert_eq!(lookup(&mut s.io(&mut f), &footer, k, &mut out).unwrap(), Lookup::Absent, "{k:?}");
        }
    }

    #[test]
    fn version_1_tables_without_fences_or_filter_are_still_read() {
        let es = entries(100);
        let mut s = Mem::new(vec![0; 1 << 20]);
        let mut f = s.create("t.sst").unwrap();
        let mut io = s.io(&mut f);
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (k, v) in &es {
            let p = payload(k, v.as_deref().unwrap_or(&[]), v.is_none());
            index.extend_from_slice(&(data.len() as u32).to_le_bytes());
            data.extend_from_slice(&RecordHeader::for_payload(&[&p]).encode());
            data.extend_from_slice(&p);
        }
        let v1 = Footer {
            version: 1,
            entry_count: es.len() as u32,
            index_offset: data.len() as u64,
            index_crc: crc32c(&[&index]),
            wal_covered: 1,
            replaces_from: 1,
            max_key_len: 8,
            filter_len: 0,
            filter_offset: (data.len() + index.len()) as u64,
            range_count: 0,
            ranges_offset: data.len() as u64,
            expires: false,
            all_expire_by: 0,
        };
        write_at(&mut io, 0, &[&data, &index, &v1.encode()]).unwrap();
        let len = (data.len() + index.len() + FOOTER_LEN) as u64;
        let footer = open(&mut io, len).unwrap();
        assert_eq!((footer, footer.fence_count()), (v1, 0));
        let mut out = [0u8; 256];
        for (k, v) in &es {
            let got = lookup(&mut io, &footer, k, &mut out).unwrap();
            match (got, v) {
                (Lookup::Found { value_len, tombstone: false, .. }, Some(v)) => {
                    assert_eq!(&out[..value_len], &v[..])
                }
                (Lookup::Found { tombstone: true, .. }, None) => {}
                other => panic!("{k:?}: {other:?}"),
            }
        }
        assert_eq!(lookup(&mut io, &footer, b"key00001", &mut out).unwrap(), Lookup::Absent);
    }

    #[test]
    fn a_read_back_that_disagrees_with_the_data_written_is_an_error() {
        /// Reads back what was written, except that its key rounds disagree, or its lengths lie.
        struct Liar {
            payloads: Vec<Vec<u8>>,
            rounds: u32,
            lie_about_len: bool,
        }
        impl<S: Storage> ReadBack<S> for Liar {
            fn payload_len(&mut self, _: &mut S, i: u32) -> Result<usize, crate::Error<S::Error>> {
                Ok(self.payloads[i as usize].len() + usize::from(self.lie_about_len))
            }
            fn key(&mut self, _: &mut S, i: u32) -> Result<&[u8], crate::Error<S::Error>> {
                if i == 0 {
                    self.rounds += 1;
                }
                let key = crate::entry::decode(&self.payloads[i as usize]).unwrap().key;
                // The second round of keys is one byte short.
                Ok(if self.rounds == 2 && !self.lie_about_len { &key[..key.len() - 1] } else { key })
            }
        }
        for lie_about_len in [false, true] {
            let mut s = Mem::new(vec![0; 1 << 16]);
            let mut f = s.create("t.sst").unwrap();
            let payloads = vec![payload(b"key", b"value", false), payload(b"kez", b"v", false)];
            let mut b = SsTableBuilder::new();
            for p in &payloads {
                b.add(&mut s, &mut f, p).unwrap();
            }
            let mut liar = Liar { payloads, rounds: 0, lie_about_len };
            let got = b.finish(&mut s, &mut f, &mut liar, &[], 1, 1, &crate::names::FileName::new());
            assert!(
                matches!(got, Err(crate::Error::Corrupted { kind: Corruption::BadLayout, .. })),
                "lie_about_len {lie_about_len}: {got:?}"
            );
        }
    }

    /// A table's resident parts, each loaded when asked for (`None`: read from storage).
    struct Parts {
        fences: Option<Vec<u8>>,
        filter: Option<Vec<u8>>,
    }

    impl Parts {
        /// Loads the parts asked for; a part whose load finds damage is left out when
        /// `keep_sound` (the damage is then met, or not, through storage), an error otherwise.
        fn load<IO: embedded_io::Read + embedded_io::Seek>(
            io: &mut IO,
            footer: &Footer,
            (fences, filter): (bool, bool),
            keep_sound: bool,
        ) -> Result<Parts, ReadError<IO::Error>> {
            let mut parts = Parts { fences: None, filter: None };
            if let (true, Some(len)) = (fences, ResidentIndex::fences_len(footer)) {
                let mut buf = vec![0u8; len];
                match ResidentIndex::load_fences(io, footer, &mut buf) {
                    Ok(()) => parts.fences = Some(buf),
                    Err(ReadError::Corrupt { .. }) if keep_sound => {}
                    Err(e) => return Err(e),
                }
            }
            if let (true, Some(len)) = (filter, ResidentIndex::filter_len(footer)) {
                let mut buf = vec![0u8; len];
                match ResidentIndex::load_filter(io, footer, &mut buf) {
                    Ok(()) => parts.filter = Some(buf),
                    Err(ReadError::Corrupt { .. }) if keep_sound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(parts)
        }

        fn index(&self, footer: &Footer) -> ResidentIndex<'_> {
            ResidentIndex::over(footer, self.fences.as_deref(), self.filter.as_deref())
        }
    }

    /// Every way a host may hold a table's index: both parts, the fences alone, the filter
    /// alone, neither.
    const PART_CHOICES: [(bool, bool); 4] = [(true, true), (true, false), (false, true), (false, false)];

    /// Looks `key` up through the resident `parts` of the table, with a run buffer of `run_len`
    /// bytes.
    fn resident_lookup<IO: embedded_io::Read + embedded_io::Seek>(
        io: &mut IO,
        footer: &Footer,
        parts: &Parts,
        key: &[u8],
        out: &mut [u8],
        run_len: usize,
    ) -> Result<Lookup, ReadError<IO::Error>> {
        let mut run = vec![0u8; run_len];
        let index = parts.index(footer);
        Ok(probe_with(io, footer, &index, key, crate::filter::key_hash(key), out, &mut run)?.lookup)
    }

    #[test]
    fn the_resident_index_answers_as_storage_does_for_every_key_and_gap_whichever_parts_are_held() {
        let es = entries(300);
        let (mut s, mut f, footer) = build(&es);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for i in 0..=600 {
            keys.push(format!("key{i:05}").into_bytes());
        }
        keys.extend([
            b"a".to_vec(),
            b"key".to_vec(),
            b"key0".to_vec(),
            b"zzz".to_vec(),
            b"key00000\0".to_vec(),
        ]);
        for choice in PART_CHOICES {
            let parts = Parts::load(&mut s.io(&mut f), &footer, choice, false).unwrap();
            assert_eq!((parts.fences.is_some(), parts.filter.is_some()), choice);
            // No run buffer (streamed), one too small for most runs, one that holds every run.
            for run_len in [0, 200, 8192] {
                for k in &keys {
                    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
                    let stored = lookup(&mut s.io(&mut f), &footer, k, &mut a).unwrap();
                    let resident =
                        resident_lookup(&mut s.io(&mut f), &footer, &parts, k, &mut b, run_len).unwrap();
                    assert_eq!(resident, stored, "{k:?} with a run buffer of {run_len}, parts {choice:?}");
                    if let Lookup::Found { value_len, .. } = stored {
                        assert_eq!(a[..value_len], b[..value_len], "{k:?}, parts {choice:?}");
                    }
                }
            }
            // The filter rules keys out without a search, as the stored one does.
            let index = parts.index(&footer);
            let mut out = [0u8; 256];
            let skipped = (0..2000)
                .map(|i| format!("other{i}").into_bytes())
                .filter(|k| {
                    let h = crate::filter::key_hash(k);
                    !probe_with(&mut s.io(&mut f), &footer, &index, k, h, &mut out, &mut []).unwrap().searched
                })
                .count();
            assert!(skipped > 1800, "the filter ruled out {skipped} of 2000, parts {choice:?}");
        }
    }

    #[test]
    fn a_resident_part_is_read_from_memory_not_from_storage() {
        let es = entries(300);
        let (mut s, mut f, footer) = build(&es);
        let parts: Vec<Parts> = PART_CHOICES
            .iter()
            .map(|&choice| Parts::load(&mut s.io(&mut f), &footer, choice, false).unwrap())
            .collect();
        // The file's filter, then its fences, overwritten after the loads: a part held in memory
        // answers as before, a part read from storage reports the damage.
        let len = s.len(&mut f).unwrap() as usize;
        let mut bytes = vec![0u8; len];
        crate::io::read_exact_at(&mut s.io(&mut f), 0, &mut bytes).unwrap();
        let filter =
            footer.filter_offset as usize..footer.filter_offset as usize + footer.filter_len as usize;
        let fences = footer.fence_offset() as usize..footer.filter_offset as usize;
        for (section, range) in [("filter", filter), ("fences", fences)] {
            let mut m = Mem::new(vec![0; 1 << 20]);
            let mut g = m.create("t.sst").unwrap();
            let mut damaged = bytes.clone();
            damaged[range].iter_mut().for_each(|b| *b ^= 0xa5);
            embedded_io::Write::write_all(&mut m.io(&mut g), &damaged).unwrap();
            for (choice, parts) in PART_CHOICES.iter().zip(&parts) {
                let held = match section {
                    "filter" => choice.1,
                    _ => choice.0,
                };
                let mut out = [0u8; 256];
                let answers: Vec<_> = es
                    .iter()
                    .map(|(k, _)| resident_lookup(&mut m.io(&mut g), &footer, parts, k, &mut out, 8192))
                    .collect();
                let corrupt = answers.iter().filter(|a| matches!(a, Err(ReadError::Corrupt { .. }))).count();
                if held {
                    assert_eq!(corrupt, 0, "{section} held in memory, parts {choice:?}");
                    assert!(
                        answers.iter().all(|a| matches!(a, Ok(Lookup::Found { .. }))),
                        "{section}, {choice:?}"
                    );
                } else {
                    assert_eq!(corrupt, es.len(), "{section} read from storage, parts {choice:?}");
                }
            }
        }
    }

    /// Key sets for the guide: a long shared prefix with suffixes of many lengths; heads that
    /// tie across whole stretches of fences; short keys full of zero and 0xff bytes.
    fn guide_key_sets() -> Vec<Vec<Vec<u8>>> {
        let mut prefixed: Vec<Vec<u8>> =
            (0..3000u32).map(|i| format!("user/0042/{}", i * 7).into_bytes()).collect();
        prefixed.sort();
        let tied =
            (0..3000u32).map(|i| format!("k{}SAMESAMESAME{:04}", i / 700, i % 700).into_bytes()).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = [0u8, 1, b'a', 0xfe, 0xff];
        let mut odd: Vec<Vec<u8>> = (0..3000)
            .map(|_| {
                let len = 1 + (next() % 14) as usize;
                (0..len).map(|_| alphabet[(next() % 5) as usize]).collect()
            })
            .collect();
        odd.sort();
        odd.dedup();
        vec![prefixed, tied, odd]
    }

    #[test]
    fn the_guide_narrows_the_fence_search_to_the_run_a_full_search_finds() {
        for keys in guide_key_sets() {
            let es: Vec<_> = keys.iter().map(|k| (k.clone(), Some(b"v".to_vec()))).collect();
            let (mut s, mut f, footer) = build(&es);
            let mut buf = vec![0u8; ResidentIndex::fences_len(&footer).unwrap()];
            ResidentIndex::load_fences(&mut s.io(&mut f), &footer, &mut buf).unwrap();
            let resident = ResidentIndex::over(&footer, Some(&buf), None);
            // Every key, what sorts around it, and keys without the shared prefix.
            let mut probes: Vec<Vec<u8>> =
                vec![vec![], vec![0], vec![0xff; 20], b"user".to_vec(), b"k".to_vec()];
            for k in &keys {
                probes.push(k.clone());
                probes.push([&k[..], &[0]].concat());
                probes.push([&k[..], &[0xff, 0xff]].concat());
                probes.push(k[..k.len() - 1].to_vec());
                let mut bumped = k.clone();
                *bumped.last_mut().unwrap() ^= 1;
                probes.push(bumped);
            }
            for p in &probes {
                let full = StoredIndex.run_of(&mut s.io(&mut f), &footer, p).unwrap();
                let guided = resident.run_of(&mut s.io(&mut f), &footer, p).unwrap();
                assert_eq!(guided.map(|r| (r.first, r.end)), full.map(|r| (r.first, r.end)), "probe {p:?}");
            }
        }
    }

    #[test]
    fn a_resident_part_of_the_wrong_size_is_refused() {
        let (mut s, mut f, footer) = build(&entries(40));
        let len = ResidentIndex::fences_len(&footer).unwrap();
        for wrong in [0, len - 1, len + 1] {
            let mut buf = vec![0u8; wrong];
            assert!(matches!(
                ResidentIndex::load_fences(&mut s.io(&mut f), &footer, &mut buf),
                Err(ReadError::Corrupt { kind: Corruption::BadLayout, .. })
            ));
        }
        let len = ResidentIndex::filter_len(&footer).unwrap();
        for wrong in [0, len - 1, len + 1] {
            let mut buf = vec![0u8; wrong];
            assert!(matches!(
                ResidentIndex::load_filter(&mut s.io(&mut f), &footer, &mut buf),
                Err(ReadError::Corrupt { kind: Corruption::BadLayout, .. })
            ));
        }
        let v1 = Footer { version: 1, filter_len: 0, ..footer };
        assert_eq!(ResidentIndex::fences_len(&v1), None, "a table without fences is read from storage");
        assert_eq!(ResidentIndex::filter_len(&v1), None, "nor has it a filter to hold");
    }

    #[test]
    fn value_larger_than_buffer_reports_its_length_without_copying() {
        let es = vec![(b"k".to_vec(), Some(vec![9u8; 100]))];
        let (mut s, mut f, footer) = build(&es);
        let mut out = [0u8; 10];
        let got = lookup(&mut s.io(&mut f), &footer, b"k", &mut out).unwrap();
        assert!(matches!(got, Lookup::Found { value_len: 100, .. }));
        assert_eq!(out, [0u8; 10]);
    }

    #[test]
    fn every_flipped_byte_gives_an_error_or_the_right_answer_never_a_wrong_value() {
        // Three fences and a filter block, so flips land in every section.
        let es = entries(40);
        let (s, f, _) = build(&es);
        let len = {
            let mut s = s;
            let mut f = f;
            let len = s.len(&mut f).unwrap() as usize;
            let mut bytes = vec![0u8; len];
            crate::io::read_exact_at(&mut s.io(&mut f), 0, &mut bytes).unwrap();
            (bytes, len)
        };
        let (bytes, len) = len;
        let mut out = [0u8; 256];
        for pos in 0..len {
            for flip in [0x01u8, 0x80] {
                let mut m = Mem::new(vec![0; 1 << 16]);
                let mut g = m.create("t.sst").unwrap();
                let mut copy = bytes.clone();
                copy[pos] ^= flip;
                embedded_io::Write::write_all(&mut m.io(&mut g), &copy).unwrap();
                let footer = match open(&mut m.io(&mut g), len as u64) {
                    Ok(f) => f,
                    Err(ReadError::Corrupt { .. }) => continue,
                    Err(e) => panic!("{e:?}"),
                };
                // Through storage, then through the resident parts whose loads pass their checks
                // (each part on its own, then both) with a run buffer that holds every run.
                let held: Vec<Parts> = [(true, false), (false, true), (true, true)]
                    .into_iter()
                    .map(|choice| Parts::load(&mut m.io(&mut g), &footer, choice, true).unwrap())
                    .collect();
                for (k, v) in &es {
                    let mut io = m.io(&mut g);
                    let mut answers = vec![lookup(&mut io, &footer, k, &mut out).map(|l| (l, out))];
                    for parts in &held {
                        let l = resident_lookup(&mut io, &footer, parts, k, &mut out, 4096);
                        answers.push(l.map(|l| (l, out)));
                    }
                    for answer in answers {
                        match answer {
                            Err(ReadError::Corrupt { .. }) => {}
                            Ok((Lookup::Found { value_len, tombstone, .. }, out)) => match v {
                                Some(v) => assert!(
                                    !tombstone && out[..value_len] == v[..],
                                    "wrong value, flip at {pos}"
                                ),
                                None => assert!(tombstone, "flip at {pos}"),
                            },
                            other => panic!("flip at {pos} for {k:?}: {other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_tiny_files_are_corruption_not_panics() {
        let es = entries(5);
        let (mut s, mut f, _) = build(&es);
        let len = s.len(&mut f).unwrap();
        for cut in [0, 1, 10, FOOTER_LEN as u64 - 1, FOOTER_LEN as u64, len - 1] {
            s.truncate(&mut f, cut).unwrap();
            assert!(matches!(open(&mut s.io(&mut f), cut), Err(ReadError::Corrupt { .. })), "cut {cut}");
        }
    }

    #[test]
    fn footer_rejects_unknown_version_and_reserved_bits() {
        let f = Footer {
            version: VERSION,
            entry_count: 1,
            index_offset: 2,
            index_crc: 3,
            wal_covered: 4,
            replaces_from: 5,
            max_key_len: 6,
            filter_len: 64,
            filter_offset: 1000 - 64,
            range_count: 0,
            ranges_offset: 2,
            expires: false,
            all_expire_by: 0,
        };
        let b = f.encode();
        assert_eq!(Footer::decode(&b, &[0; TRAILER_LEN], 1000), Ok(f));
        let patched = |at: usize, bytes: &[u8]| {
            let mut c = b;
            c[at..at + bytes.len()].copy_from_slice(bytes);
            let crc = crc32c(&[&c[..52]]);
            c[52..56].copy_from_slice(&crc.to_le_bytes());
            Footer::decode(&c, &[0; TRAILER_LEN], 1000)
        };
        assert_eq!(patched(8, &3u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(3)));
        // Version 1 tables have no filter; version 2 filters are whole 64-byte blocks.
        assert_eq!(patched(8, &1u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(1)));
        assert_eq!(patched(28, &65u32.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        // Flags: bits 0 (some entry expires) and 1 (all do, below) are known; any other bit is a
        // newer format.
        assert_eq!(patched(10, &1u16.to_le_bytes()), Ok(Footer { expires: true, ..f }));
        assert_eq!(patched(10, &4u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        assert_eq!(patched(10, &0x8001u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        let expiring = Footer { expires: true, ..f };
        assert_eq!(Footer::decode(&expiring.encode(), &[0; TRAILER_LEN], 1000), Ok(expiring));
        // Range deletes come with version 3, and version 3 has some.
        assert_eq!(patched(50, &1u16.to_le_bytes()), Err(Corruption::UnsupportedVersion(2)));
        let v3 = Footer { version: VERSION_RANGES, range_count: 1, ..f };
        assert_eq!(Footer::decode(&v3.encode(), &[0; TRAILER_LEN], 1000), Ok(v3));
        let v1 = Footer { version: 1, filter_len: 0, filter_offset: 1000, ..f };
        let b1 = v1.encode();
        assert_eq!(
            Footer::decode(&b1, &[0; TRAILER_LEN], 1000),
            Ok(v1),
            "a version 1 footer (no filter) is still read"
        );
        let v1_flagged = Footer { expires: true, ..v1 };
        assert_eq!(
            Footer::decode(&v1_flagged.encode(), &[0; TRAILER_LEN], 1000),
            Err(Corruption::UnsupportedVersion(1))
        );
        // Bit 1: every entry expires, the latest expiry in the 12 bytes before the footer (with a
        // checksum of its own), which move the filter back by 12 bytes.
        let all_expire = Footer { expires: true, all_expire_by: 77, filter_offset: 1000 - 12 - 64, ..f };
        let trailer = all_expire.trailer().unwrap();
        assert_eq!(Footer::decode(&all_expire.encode(), &trailer, 1000), Ok(all_expire));
        let encoded = all_expire.encode();
        assert_eq!(
            u32::from_le_bytes(encoded[52..56].try_into().unwrap()),
            crc32c(&[&encoded[..52]]),
            "the footer's checksum covers the footer alone: a build before the flag reads an unknown \
             flag (UnsupportedVersion), not damage"
        );
        let mut other = trailer;
        other[0] ^= 1;
        assert!(matches!(
            Footer::decode(&all_expire.encode(), &other, 1000),
            Err(Corruption::ChecksumMismatch { .. })
        ));
        let without_expires = Footer { expires: false, ..all_expire };
        assert_eq!(Footer::decode(&without_expires.encode(), &trailer, 1000), Err(Corruption::BadLayout));
        let mut magic = b;
        magic[0] ^= 1;
        assert_eq!(Footer::decode(&magic, &[0; TRAILER_LEN], 1000), Err(Corruption::BadMagic));
    }
}
