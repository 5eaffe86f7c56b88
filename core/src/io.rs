//! Positioned reads and writes over `embedded_io`. Format readers return [`ReadError`] (defined
//! with the crate's other errors in [`crate::error`]).

use embedded_io::{Read, ReadExactError, Seek, SeekFrom, Write};

use crate::error::Corruption;
pub use crate::error::ReadError;

/// Fills as much of `buf` as the file holds from `pos`; returns the bytes read.
pub fn read_at<IO: Read + Seek>(io: &mut IO, pos: u64, buf: &mut [u8]) -> Result<usize, IO::Error> {
    io.seek(SeekFrom::Start(pos))?;
    let mut done = 0;
    while done < buf.len() {
        match io.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Reads exactly `buf.len()` bytes from `pos`; a short file is corruption (`Truncated`) at `pos`.
pub fn read_exact_at<IO: Read + Seek>(
    io: &mut IO,
    pos: u64,
    buf: &mut [u8],
) -> Result<(), ReadError<IO::Error>> {
    io.seek(SeekFrom::Start(pos))?;
    io.read_exact(buf).map_err(|e| match e {
        ReadExactError::UnexpectedEof => ReadError::Corrupt { offset: pos, kind: Corruption::Truncated },
        ReadExactError::Other(e) => ReadError::Io(e),
    })
}

/// Writes all of `parts` in order starting at `pos`; returns the position after them.
/// The bytes may stay buffered until `flush` or [`crate::Storage::sync`].
pub fn write_at<IO: Write + Seek>(io: &mut IO, pos: u64, parts: &[&[u8]]) -> Result<u64, IO::Error> {
    io.seek(SeekFrom::Start(pos))?;
    let mut end = pos;
    for p in parts {
        io.write_all(p)?;
        end += p.len() as u64;
    }
    Ok(end)
}

/// Reads a little-endian `u32` at `pos`.
pub fn read_u32_at<IO: Read + Seek>(io: &mut IO, pos: u64) -> Result<u32, ReadError<IO::Error>> {
    let mut b = [0u8; 4];
    read_exact_at(io, pos, &mut b)?;
    Ok(u32::from_le_bytes(b))
}
