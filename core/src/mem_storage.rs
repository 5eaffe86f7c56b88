//! MemStorage: a [`Storage`] in a caller-provided byte buffer, for tests and microcontrollers.
//!
//! The buffer is cut into `FILES` equal regions; each file lives in one region, so a file can
//! grow to `buffer length / FILES` bytes. File metadata (name, length) is held in the struct.
//! Dropping a [`crate::Db`] and opening a new one on the same `MemStorage` is the equivalent of
//! a reboot with the storage kept. Everything is "durable" at once: `sync` and `sync_dir` only
//! count calls, and nothing is lost unless a test asks for a power cut.
//!
//! # Power cuts
//! [`MemStorage::power_cut`] simulates one, without `alloc`, so the firmware configuration can
//! be crash-tested. Each file remembers its length at its last `sync` (`durable_len`) and the
//! lowest offset changed since (`unsynced_from`); that costs two words per file and changes
//! nothing else. At a cut, every file with an unsynced change is rewritten in place as a device
//! may leave it (the same rules as the tests' `FaultStorage` wide model, `src/fault/power_cut.rs`):
//!
//! ```text
//! durable_len   unsynced_from                 len
//!      |              |                         |
//! [ synced bytes ][ . . . unsynced change . . . ]   units of 512 B or 4 KiB (drawn per cut)
//!
//! per file: none of it (1 in 5) | all of it (1 in 5) | a torn prefix (1 in 5) |
//!           scattered (2 in 5): each unit new, zeroed, or torn (new bytes, then zeros);
//!           the length old, new or anything between
//! ```
//!
//! "Lost" bytes past `durable_len` read as zeros (what the medium held there). There is no second
//! copy of the data, so bytes *below* `durable_len` that were overwritten since the sync keep
//! their new contents (the engine never overwrites synced bytes in place: a WAL is appended to,
//! a table written once). Directory operations stay durable at once; the engine's directory
//! protocol is tested on `FaultStorage`. Open handles go stale at a cut.
//! `preallocate` keeps the trait's default and does nothing: there is no file size to commit
//! here, so an extension would gain nothing, and zero-filling ahead of the writer is the wrong
//! model for the flash this stands in for (zeros cannot be overwritten without an erase). The
//! engine's zero-tail handling is exercised through the tests' `FaultStorage` instead.

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};

use crate::names::{FileName, MAX_NAME_LEN};
use crate::storage::Storage;

/// Why a MemStorage call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MemError {
    /// No file by that name.
    NotFound,
    /// The file is at its region's size, or every region is in use.
    Full,
    /// The name is empty or longer than [`MAX_NAME_LEN`].
    InvalidName,
    /// The handle's file was removed or replaced.
    StaleHandle,
    /// A seek before the start of the file.
    InvalidSeek,
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MemError::NotFound => "file not found",
            MemError::Full => "storage full",
            MemError::InvalidName => "invalid file name",
            MemError::StaleHandle => "file was removed",
            MemError::InvalidSeek => "seek before start of file",
        })
    }
}

impl core::error::Error for MemError {}

impl embedded_io::Error for MemError {
    fn kind(&self) -> ErrorKind {
        match self {
            MemError::NotFound => ErrorKind::NotFound,
            MemError::Full => ErrorKind::OutOfMemory,
            MemError::InvalidName | MemError::InvalidSeek => ErrorKind::InvalidInput,
            MemError::StaleHandle => ErrorKind::Other,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Meta {
    name: FileName,
    len: usize,
    in_use: bool,
    generation: u32,
    /// The length at the last `sync` (what a power cut keeps at least).
    durable_len: usize,
    /// The lowest offset written or cut since the last `sync`, if any.
    unsynced_from: Option<usize>,
}

impl Meta {
    /// Records a change of the bytes from `offset` on.
    fn touch(&mut self, offset: usize) {
        self.unsynced_from = Some(self.unsynced_from.map_or(offset, |f| f.min(offset)));
    }
}

/// What [`MemStorage::power_cut`] did, for a test's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PowerCutReport {
    /// The unit of this cut: 512 (a sector) or 4096 (a page).
    pub unit: usize,
    /// Files that had an unsynced change.
    pub changed_files: u32,
    /// Of those, files whose change was lost whole.
    pub lost: u32,
    /// Files whose change was kept whole.
    pub kept: u32,
    /// Files cut inside their change (a torn prefix).
    pub torn: u32,
    /// Files whose units were kept, zeroed or torn one by one.
    pub scattered: u32,
    /// Scattered files in which a unit lost bytes before a later unit kept some (a hole).
    pub holes: u32,
}

/// SplitMix64, for [`MemStorage::power_cut`]'s choices.
struct CutRng(u64);

impl CutRng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        match (hi.saturating_sub(lo) as u64).checked_add(1) {
            Some(n) if hi >= lo => lo + (self.next() % n) as usize,
            _ => lo,
        }
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den.max(1) < num
    }
}

/// An in-memory flat directory of at most `FILES` files over the buffer `B`.
pub struct MemStorage<B, const FILES: usize> {
    buf: B,
    meta: [Meta; FILES],
    /// Calls to `sync` so far.
    pub syncs: u64,
    /// Calls to `sync_dir` so far.
    pub dir_syncs: u64,
    /// Files closed through [`Storage::retire`] whose name was removed or replaced first, as
    /// the database promises (a file still live does not count).
    pub retired: u64,
}

/// An open MemStorage file.
#[derive(Debug)]
pub struct MemFile {
    index: usize,
    generation: u32,
    pos: usize,
}

/// Byte I/O on a [`MemFile`].
pub struct MemIo<'a> {
    region: &'a mut [u8],
    meta: &'a mut Meta,
    file: &'a mut MemFile,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const FILES: usize> MemStorage<B, FILES> {
    /// A storage with no files over `buf`.
    pub fn new(buf: B) -> Self {
        MemStorage {
            buf,
            meta: core::array::from_fn(|_| Meta::default()),
            syncs: 0,
            dir_syncs: 0,
            retired: 0,
        }
    }

    /// The largest size one file can reach.
    pub fn file_capacity(&self) -> usize {
        self.buf.as_ref().len() / FILES.max(1)
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.meta.iter().position(|m| m.in_use && m.name.as_str() == name)
    }

    fn check(&self, file: &MemFile) -> Result<(), MemError> {
        match self.meta.get(file.index) {
            Some(m) if m.in_use && m.generation == file.generation => Ok(()),
            _ => Err(MemError::StaleHandle),
        }
    }

    fn name_of(name: &str) -> Result<FileName, MemError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(MemError::InvalidName);
        }
        FileName::try_from(name).map_err(|_| MemError::InvalidName)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> B {
        self.buf
    }

    /// Cuts the power: every file's unsynced change is kept, lost, torn or scattered unit by unit
    /// as the module documentation says, drawn from `seed`; every open handle goes stale. Drop
    /// the engine first (`core::mem::replace(db.storage(), ...)` takes the storage without the
    /// sync that [`crate::Db::close`] does), then open a new one on this storage.
    pub fn power_cut(&mut self, seed: u64) -> PowerCutReport {
        let mut rng = CutRng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        let unit = if rng.chance(1, 2) { 512 } else { 4096 };
        let mut report = PowerCutReport { unit, ..PowerCutReport::default() };
        let cap = self.file_capacity();
        for (index, m) in self.meta.iter_mut().enumerate() {
            m.generation = m.generation.wrapping_add(1);
            if !m.in_use {
                continue;
            }
            let start = index.saturating_mul(cap);
            let region = self.buf.as_mut().get_mut(start..start.saturating_add(cap)).unwrap_or(&mut []);
            cut_file(m, region, unit, &mut rng, &mut report);
        }
        report
    }
}

/// What a power cut leaves of one file (see the module documentation).
fn cut_file(m: &mut Meta, region: &mut [u8], unit: usize, rng: &mut CutRng, report: &mut PowerCutReport) {
    let (old_len, new_len) = (m.durable_len, m.len);
    let changed_from = match m.unsynced_from {
        Some(from) => from.min(old_len).min(new_len),
        None if old_len == new_len => return,
        None => old_len.min(new_len),
    };
    m.unsynced_from = None;
    report.changed_files += 1;
    // Zeros where the medium never held anything: past the old length, `from..to`.
    let lose = |region: &mut [u8], from: usize, to: usize| {
        let from = from.max(old_len);
        if let Some(bytes) = region.get_mut(from..to.min(region.len())) {
            bytes.fill(0);
        }
    };
    let span = old_len.max(new_len);
    let len = match rng.next() % 5 {
        0 => {
            report.lost += 1;
            lose(region, changed_from, span);
            old_len
        }
        1 => {
            report.kept += 1;
            new_len
        }
        2 => {
            // New bytes up to the cut, then what the medium held (zeros past its old end).
            report.torn += 1;
            let cut = rng.range(changed_from, new_len);
            lose(region, cut, span);
            cut.max(if new_len < old_len && rng.chance(1, 2) { new_len } else { old_len })
        }
        _ => {
            report.scattered += 1;
            let len = if old_len == new_len {
                new_len
            } else {
                match rng.next() % 3 {
                    0 => old_len,
                    1 => new_len,
                    _ => rng.range(old_len.min(new_len), span),
                }
            };
            let density = rng.range(1, 3) as u64;
            let (mut gap, mut hole) = (false, false);
            let mut at = changed_from - changed_from % unit.max(1);
            while at < span {
                let end = (at + unit).min(span);
                let first = at.max(changed_from);
                // How many of the unit's changed bytes stay new: a torn part, all, or none.
                let keep = if rng.chance(1, 4) {
                    rng.range(0, end - first)
                } else if rng.chance(density, 4) {
                    end - first
                } else {
                    0
                };
                lose(region, first + keep, end);
                if at < len {
                    hole |= gap && keep > 0;
                    gap |= keep < end - first;
                }
                at = end;
            }
            report.holes += u32::from(hole);
            len
        }
    };
    m.len = len.min(region.len());
    m.durable_len = m.len;
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const FILES: usize> Storage for MemStorage<B, FILES> {
    type Error = MemError;
    type File = MemFile;
    type Io<'a>
        = MemIo<'a>
    where
        Self: 'a;

    fn max_files(&self) -> Option<usize> {
        Some(FILES)
    }

    fn create(&mut self, name: &str) -> Result<MemFile, MemError> {
        let fname = Self::name_of(name)?;
        let index = match self.find(name) {
            Some(i) => i,
            None => self.meta.iter().position(|m| !m.in_use).ok_or(MemError::Full)?,
        };
        let m = &mut self.meta[index];
        m.generation = m.generation.wrapping_add(1);
        m.name = fname;
        m.len = 0;
        m.in_use = true;
        m.durable_len = 0;
        m.unsynced_from = None;
        Ok(MemFile { index, generation: m.generation, pos: 0 })
    }

    fn open(&mut self, name: &str) -> Result<MemFile, MemError> {
        Self::name_of(name)?;
        let index = self.find(name).ok_or(MemError::NotFound)?;
        Ok(MemFile { index, generation: self.meta[index].generation, pos: 0 })
    }

    fn io<'a>(&'a mut self, file: &'a mut MemFile) -> MemIo<'a> {
        let cap = self.file_capacity();
        let index = file.index.min(FILES.saturating_sub(1));
        let start = index * cap;
        let region = &mut self.buf.as_mut()[start..start + cap];
        MemIo { region, meta: &mut self.meta[index], file }
    }

    fn len(&mut self, file: &mut MemFile) -> Result<u64, MemError> {
        self.check(file)?;
        Ok(self.meta[file.index].len as u64)
    }

    fn truncate(&mut self, file: &mut MemFile, len: u64) -> Result<(), MemError> {
        self.check(file)?;
        let m = &mut self.meta[file.index];
        let len = m.len.min(usize::try_from(len).unwrap_or(usize::MAX));
        if len < m.len {
            m.touch(len);
        }
        m.len = len;
        Ok(())
    }

    fn sync(&mut self, file: &mut MemFile) -> Result<(), MemError> {
        self.check(file)?;
        self.syncs += 1;
        let m = &mut self.meta[file.index];
        m.durable_len = m.len;
        m.unsynced_from = None;
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), MemError> {
        let to_name = Self::name_of(to)?;
        let src = self.find(from).ok_or(MemError::NotFound)?;
        if let Some(dst) = self.find(to) {
            if dst != src {
                let m = &mut self.meta[dst];
                m.in_use = false;
                m.generation = m.generation.wrapping_add(1);
            }
        }
        self.meta[src].name = to_name;
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), MemError> {
        let i = self.find(name).ok_or(MemError::NotFound)?;
        let m = &mut self.meta[i];
        m.in_use = false;
        m.generation = m.generation.wrapping_add(1);
        Ok(())
    }

    fn retire(&mut self, file: MemFile) {
        if self.check(&file).is_err() {
            self.retired += 1;
        }
    }

    fn sync_dir(&mut self) -> Result<(), MemError> {
        self.dir_syncs += 1;
        Ok(())
    }

    fn list(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), MemError> {
        for m in self.meta.iter().filter(|m| m.in_use) {
            visit(m.name.as_str());
        }
        Ok(())
    }
}

impl MemIo<'_> {
    fn live(&self) -> Result<(), MemError> {
        if self.meta.in_use && self.meta.generation == self.file.generation {
            Ok(())
        } else {
            Err(MemError::StaleHandle)
        }
    }
}

impl ErrorType for MemIo<'_> {
    type Error = MemError;
}

impl Read for MemIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, MemError> {
        self.live()?;
        let src = self.region.get(self.file.pos..self.meta.len).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.file.pos += n;
        Ok(n)
    }
}

impl Write for MemIo<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, MemError> {
        self.live()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let start = self.file.pos;
        let end = start.saturating_add(buf.len()).min(self.region.len());
        if end <= start {
            return Err(MemError::Full);
        }
        let n = end - start;
        if start > self.meta.len {
            // Writing past the end leaves a hole of zeros, as a file system does.
            self.region[self.meta.len..start].fill(0);
        }
        self.meta.touch(start.min(self.meta.len));
        self.region[start..end].copy_from_slice(&buf[..n]);
        self.file.pos = end;
        self.meta.len = self.meta.len.max(end);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), MemError> {
        self.live()
    }
}

impl Seek for MemIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, MemError> {
        self.live()?;
        let new = match pos {
            SeekFrom::Start(p) => Some(p as i128),
            SeekFrom::End(d) => Some(self.meta.len as i128 + d as i128),
            SeekFrom::Current(d) => Some(self.file.pos as i128 + d as i128),
        };
        match new {
            Some(p) if p >= 0 => {
                self.file.pos = usize::try_from(p).unwrap_or(usize::MAX);
                Ok(self.file.pos as u64)
            }
            _ => Err(MemError::InvalidSeek),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Mem = MemStorage<Vec<u8>, 4>;

    #[test]
    fn files_hold_what_was_written() {
        let mut s = Mem::new(vec![0; 4096]);
        let mut f = s.create("a").unwrap();
        s.io(&mut f).write_all(b"hello").unwrap();
        let mut g = s.open("a").unwrap();
        let mut buf = [0u8; 8];
        let n = s.io(&mut g).read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(s.len(&mut f).unwrap(), 5);
    }

    #[test]
    fn file_is_full_at_its_region_size() {
        let mut s = Mem::new(vec![0; 64]);
        let mut f = s.create("a").unwrap();
        assert_eq!(s.io(&mut f).write_all(&[1; 17]), Err(MemError::Full));
        assert_eq!(s.len(&mut f).unwrap(), 16);
    }

    #[test]
    fn rename_replaces_target_and_stales_its_handles() {
        let mut s = Mem::new(vec![0; 256]);
        let mut a = s.create("a").unwrap();
        let mut b = s.create("b").unwrap();
        s.io(&mut a).write_all(b"A").unwrap();
        s.rename("a", "b").unwrap();
        assert_eq!(s.len(&mut a).unwrap(), 1);
        assert_eq!(s.len(&mut b), Err(MemError::StaleHandle));
        assert_eq!(s.open("a").err(), Some(MemError::NotFound));
        let mut names = vec![];
        s.list(&mut |n| names.push(n.to_string())).unwrap();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn removed_file_frees_its_region() {
        let mut s = MemStorage::<Vec<u8>, 1>::new(vec![0; 16]);
        s.create("a").unwrap();
        assert_eq!(s.create("b").err(), Some(MemError::Full));
        s.remove("a").unwrap();
        s.create("b").unwrap();
    }

    fn contents(s: &mut Mem, name: &str) -> Vec<u8> {
        let mut f = s.open(name).unwrap();
        let len = s.len(&mut f).unwrap() as usize;
        let mut out = vec![0u8; len];
        s.io(&mut f).read_exact(&mut out).unwrap();
        out
    }

    #[test]
    fn a_power_cut_keeps_synced_bytes_and_leaves_unsynced_ones_new_or_zero_in_any_unit() {
        let synced: Vec<u8> = (0..700).map(|i| (i % 200) as u8 + 1).collect();
        let unsynced: Vec<u8> = (0..9000).map(|i| (i % 100) as u8 + 1).collect();
        let (mut holes, mut kinds) = (0, [0u32; 4]);
        for seed in 0..400 {
            let mut s = Mem::new(vec![0; 4 * 16384]);
            let mut f = s.create("a").unwrap();
            s.io(&mut f).write_all(&synced).unwrap();
            s.sync(&mut f).unwrap();
            s.io(&mut f).write_all(&unsynced).unwrap();
            let report = s.power_cut(seed);
            assert_eq!(report.changed_files, 1);
            assert!(report.unit == 512 || report.unit == 4096);
            kinds[0] += report.lost;
            kinds[1] += report.kept;
            kinds[2] += report.torn;
            kinds[3] += report.scattered;
            assert_eq!(s.len(&mut f), Err(MemError::StaleHandle), "handles go stale");
            let got = contents(&mut s, "a");
            assert!(got.len() >= 700 && got.len() <= 9700, "length {}", got.len());
            assert_eq!(got[..700], synced[..], "seed {seed}: synced bytes changed");
            for (i, &b) in got[700..].iter().enumerate() {
                assert!(b == 0 || b == unsynced[i], "seed {seed}: byte {} is {b}", 700 + i);
            }
            // A hole: a zero before a later kept byte.
            let tail = &got[700..];
            if let Some(z) = tail.iter().position(|&b| b == 0) {
                if tail[z..].iter().any(|&b| b != 0) {
                    holes += 1;
                    assert!(report.holes == 1, "seed {seed}: a hole the report missed");
                }
            }
            // A second cut changes nothing: everything is durable now.
            s.power_cut(seed + 1000);
            assert_eq!(contents(&mut s, "a"), got);
        }
        assert!(kinds.iter().all(|&k| k > 20), "{kinds:?}");
        assert!(holes > 20, "only {holes} holes");
    }

    #[test]
    fn without_a_power_cut_nothing_changes_and_sync_makes_a_change_durable() {
        let mut s = Mem::new(vec![0; 4 * 4096]);
        let mut f = s.create("a").unwrap();
        s.io(&mut f).write_all(b"written").unwrap();
        assert_eq!(contents(&mut s, "a"), b"written", "the default behaviour: all at once");
        s.sync(&mut f).unwrap();
        s.truncate(&mut f, 3).unwrap();
        for seed in 0..50 {
            let mut t = Mem::new(vec![0; 4 * 4096]);
            let mut g = t.create("a").unwrap();
            t.io(&mut g).write_all(b"written").unwrap();
            t.sync(&mut g).unwrap();
            t.truncate(&mut g, 3).unwrap();
            t.power_cut(seed);
            let got = contents(&mut t, "a");
            assert!(got == b"wri" || b"written".starts_with(&got), "seed {seed}: {got:?}");
            assert!(got.len() >= 3);
        }
    }

    #[test]
    fn truncate_and_bad_seek() {
        let mut s = Mem::new(vec![0; 256]);
        let mut f = s.create("a").unwrap();
        s.io(&mut f).write_all(b"abcdef").unwrap();
        s.truncate(&mut f, 2).unwrap();
        assert_eq!(s.len(&mut f).unwrap(), 2);
        assert_eq!(s.io(&mut f).seek(SeekFrom::Current(-100)), Err(MemError::InvalidSeek));
        assert_eq!(s.create("").err(), Some(MemError::InvalidName));
    }
}
