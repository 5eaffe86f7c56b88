//! MemStorage: a [`Storage`] in a caller-provided byte buffer, for tests and microcontrollers.
//!
//! The buffer is cut into `FILES` equal regions; each file lives in one region, so a file can
//! grow to `buffer length / FILES` bytes. File metadata (name, length) is held in the struct.
//! Dropping a [`crate::Db`] and opening a new one on the same `MemStorage` is the equivalent of
//! a reboot with the storage kept. Everything is "durable" at once: `sync` and `sync_dir` only
//! count calls. (A storage that models power cuts is built on top of this in the tests.)
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
}

/// An in-memory flat directory of at most `FILES` files over the buffer `B`.
pub struct MemStorage<B, const FILES: usize> {
    buf: B,
    meta: [Meta; FILES],
    /// Calls to `sync` so far.
    pub syncs: u64,
    /// Calls to `sync_dir` so far.
    pub dir_syncs: u64,
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
        MemStorage { buf, meta: core::array::from_fn(|_| Meta::default()), syncs: 0, dir_syncs: 0 }
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
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const FILES: usize> Storage for MemStorage<B, FILES> {
    type Error = MemError;
    type File = MemFile;
    type Io<'a>
        = MemIo<'a>
    where
        Self: 'a;

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
        m.len = m.len.min(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }

    fn sync(&mut self, file: &mut MemFile) -> Result<(), MemError> {
        self.check(file)?;
        self.syncs += 1;
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
