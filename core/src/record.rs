//! Record framing: the unit in which the WAL and SSTables store entries.
//!
//! ```text
//! offset  size  field
//! 0       4     length   u32 LE, bytes of payload, 1..=MAX_RECORD_LEN
//! 4       4     crc      u32 LE, CRC-32C (Castagnoli) of the payload
//! 8       len   payload
//! ```
//!
//! This module owns the header, the checksum, and decoding of a record held in a byte slice.
//! Decoding never panics: every length is checked before it is used.

use crate::entry::ENTRY_MAX_OVERHEAD;
use crate::error::Corruption;
use crate::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// Bytes in a record header.
pub const HEADER_LEN: usize = 8;

/// The largest payload a record may declare: the largest entry.
pub const MAX_RECORD_LEN: usize = ENTRY_MAX_OVERHEAD + MAX_KEY_LEN + MAX_VALUE_LEN;

// A 16-way sliced table (16 KiB of flash) where memory is cheap; a 1 KiB table on small targets.
#[cfg(target_pointer_width = "64")]
type CrcImpl = crc::Table<16>;
#[cfg(not(target_pointer_width = "64"))]
type CrcImpl = crc::Table<1>;

static CRC32C: crc::Crc<u32, CrcImpl> = crc::Crc::<u32, CrcImpl>::new(&crc::CRC_32_ISCSI);

/// An incremental CRC-32C, for payloads written or read in pieces.
pub struct Checksum(crc::Digest<'static, u32, CrcImpl>);

impl Checksum {
    /// A fresh checksum.
    pub fn new() -> Self {
        Checksum(CRC32C.digest())
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The checksum of everything fed.
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32C of the concatenation of `parts`.
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut c = Checksum::new();
    for p in parts {
        c.update(p);
    }
    c.finish()
}

/// The 8-byte header in front of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// CRC-32C of the payload.
    pub crc: u32,
}

impl RecordHeader {
    /// The header for a payload made of `parts`, in order.
    pub fn for_payload(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        RecordHeader { len: u32::try_from(len).unwrap_or(u32::MAX), crc: crc32c(parts) }
    }

    /// Encodes to the on-disk bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let (len, crc) = b.split_at_mut(4);
        len.copy_from_slice(&self.len.to_le_bytes());
        crc.copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Decodes the on-disk bytes (any 8 bytes decode; [`RecordHeader::payload_len`] validates).
    pub fn decode(b: [u8; HEADER_LEN]) -> Self {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = b;
        RecordHeader { len: u32::from_le_bytes([l0, l1, l2, l3]), crc: u32::from_le_bytes([c0, c1, c2, c3]) }
    }

    /// The payload length, if it is within `1..=MAX_RECORD_LEN`.
    pub fn payload_len(&self) -> Result<usize, Corruption> {
        let len = self.len as usize;
        if len == 0 || len > MAX_RECORD_LEN {
            Err(Corruption::BadLength(self.len))
        } else {
            Ok(len)
        }
    }

    /// Checks `payload` against the stored checksum.
    pub fn verify(&self, payload: &[u8]) -> Result<(), Corruption> {
        let got = crc32c(&[payload]);
        if got == self.crc {
            Ok(())
        } else {
            Err(Corruption::ChecksumMismatch { expected: self.crc, got })
        }
    }
}

/// Why a byte slice did not start with a whole, valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The slice ends before the record does (a torn write looks like this).
    Incomplete,
    /// The record is damaged.
    Corrupt(Corruption),
}

/// Decodes the record at the front of `bytes`: its payload and the bytes it occupies.
pub fn decode(bytes: &[u8]) -> Result<(&[u8], usize), FrameError> {
    let header: [u8; HEADER_LEN] =
        bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(FrameError::Incomplete)?;
    let header = RecordHeader::decode(header);
    let len = header.payload_len().map_err(FrameError::Corrupt)?;
    let end = HEADER_LEN + len;
    let payload = bytes.get(HEADER_LEN..end).ok_or(FrameError::Incomplete)?;
    header.verify(payload).map_err(FrameError::Corrupt)?;
    Ok((payload, end))
}

/// Writes the record for `parts` into `out`; returns the bytes used, or `None` if `out` is short.
pub fn encode_into(parts: &[&[u8]], out: &mut [u8]) -> Option<usize> {
    let header = RecordHeader::for_payload(parts);
    let total = HEADER_LEN + header.len as usize;
    let dst = out.get_mut(..total)?;
    let (h, mut rest) = dst.split_at_mut(HEADER_LEN);
    h.copy_from_slice(&header.encode());
    for p in parts {
        let (d, r) = rest.split_at_mut(p.len());
        d.copy_from_slice(p);
        rest = r;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_record_decodes_to_same_payload() {
        let mut buf = [0u8; 64];
        let n = encode_into(&[b"hello ", b"world"], &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 11);
        let (payload, used) = decode(&buf[..n]).unwrap();
        assert_eq!(payload, b"hello world");
        assert_eq!(used, n);
    }

    #[test]
    fn header_layout_is_length_then_crc_little_endian() {
        let mut buf = [0u8; 16];
        encode_into(&[b"abc"], &mut buf).unwrap();
        assert_eq!(&buf[..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &crc32c(&[b"abc"]).to_le_bytes());
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The catalogue check value of CRC-32C for "123456789".
        assert_eq!(crc32c(&[b"123456789"]), 0xE306_9283);
    }

    #[test]
    fn every_prefix_of_a_record_is_incomplete() {
        let mut buf = [0u8; 32];
        let n = encode_into(&[b"payload"], &mut buf).unwrap();
        for cut in 0..n {
            assert_eq!(decode(&buf[..cut]), Err(FrameError::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = [0u8; 32];
        let n = encode_into(&[b"some payload"], &mut buf).unwrap();
        for byte in 0..n {
            for bit in 0..8 {
                let mut copy = buf;
                copy[byte] ^= 1 << bit;
                let r = decode(&copy[..n]);
                assert!(r.is_err(), "flip at byte {byte} bit {bit} decoded as valid");
            }
        }
    }

    #[test]
    fn zero_and_oversized_lengths_are_rejected() {
        let mut h = [0u8; 8];
        assert_eq!(decode(&h), Err(FrameError::Corrupt(Corruption::BadLength(0))));
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&h), Err(FrameError::Corrupt(Corruption::BadLength(u32::MAX))));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 48];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let len = (state % 49) as usize;
            // Small lengths make the header's declared length plausible sometimes.
            buf[1] = 0;
            buf[2] = 0;
            buf[3] = 0;
            let _ = decode(&buf[..len]);
        }
    }
}
