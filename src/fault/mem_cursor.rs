//! `MemCursor`: an in-memory file for the format readers, outside any `Storage`.

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};

/// A growable in-memory file for the format readers (`sstable::open`, `wal::next`, ...): reads,
/// writes and seeks over a `Vec<u8>`, and never fails.
#[derive(Debug, Clone, Default)]
pub struct MemCursor {
    /// The file's bytes.
    pub data: Vec<u8>,
    /// The position of the next read or write.
    pub pos: u64,
}

impl MemCursor {
    /// A file holding `data`, positioned at its start.
    pub fn new(data: Vec<u8>) -> Self {
        MemCursor { data, pos: 0 }
    }
}

impl ErrorType for MemCursor {
    type Error = core::convert::Infallible;
}

impl Read for MemCursor {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let src = usize::try_from(self.pos).ok().and_then(|p| self.data.get(p..)).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for MemCursor {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let pos = self.pos as usize;
        let end = pos + buf.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[pos..end].copy_from_slice(buf);
        self.pos = end as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl Seek for MemCursor {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, Self::Error> {
        let len = self.data.len() as i128;
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        self.pos = new.clamp(0, u64::MAX as i128) as u64;
        Ok(self.pos)
    }
}
