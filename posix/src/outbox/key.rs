//! The outbox's keys: where records, cursors and the sequence high-water mark live in the
//! database's one key space (`docs/FORMAT.md`, "Outbox keys", says the same).
//!
//! Every key starts with the namespace `FF 6F 62` (`\xFF` `o` `b`): `0xFF` never starts a UTF-8
//! text key, so an application's text keys never meet the outbox's. A stream's keys share its
//! *stream prefix*: the namespace, the stream name's length (one byte) and the name. The length
//! byte makes stream prefixes prefix-free: no stream's keys sort inside another's.
//!
//! ```text
//! heads        FF 6F 62 00                                       value: 01 | (len u8 | stream | head u64 BE)*
//! record       FF 6F 62 | len u8 | stream | 01 | seq u64 BE      value: the record's bytes
//! cursor       FF 6F 62 | len u8 | stream | 02 | consumer        value: acked u64 BE | evicted u64 BE
//! ```
//!
//! - **record**: the big-endian sequence number makes key order the order of `seq`, so a
//!   stream's records are one contiguous key range, oldest first; the newest is found by one
//!   reverse seek, and everything below a seq is one range (which a range delete removes).
//! - **cursor**: a consumer's last acknowledged seq (`acked`: every record up to and including
//!   it is done) and how many records it never acknowledged because they were evicted first
//!   (`evicted`). Readers take the first 16 bytes and ignore anything after them, so later
//!   versions can append fields. Cursors sort after the stream's records.
//! - **heads**: the newest seq of every stream (up to [`MAX_HEADS`] of them), as of the last
//!   acknowledgement of any stream: a version byte (1), then an entry per stream in name
//!   order. Every acknowledgement rewrites it, so it stays among the newest data, and a stream
//!   that lost every key of its own (all evicted by a space cap, cursors included) goes on
//!   above every seq a receiver may have seen instead of starting again at 1. The length byte
//!   of a stream prefix is never 0 (names hold 1 ..= 255 bytes), so this key belongs to no
//!   stream.
// Decodes keys read from the database: every index is checked.
#![deny(clippy::indexing_slicing)]

/// The first bytes of every outbox key.
pub const NAMESPACE: &[u8] = b"\xFFob";

/// The longest stream or consumer name, in bytes (its length is stored in one byte).
pub const MAX_NAME_LEN: usize = 255;

/// The tag after a stream prefix that starts a record key.
const RECORD: u8 = 0x01;
/// The tag after a stream prefix that starts a cursor key.
const CURSOR: u8 = 0x02;

/// Bytes of a cursor's value that readers decode (`acked`, `evicted`).
pub const CURSOR_VALUE_LEN: usize = 16;

/// Streams the heads key remembers at most; beyond that, the streams least recently touched
/// by this handle are left out.
pub const MAX_HEADS: usize = 1024;

/// The version byte that starts the heads key's value.
const HEADS_VERSION: u8 = 1;

/// The key of the streams' heads.
pub fn heads() -> Vec<u8> {
    let mut k = NAMESPACE.to_vec();
    k.push(0);
    k
}

/// `FF 6F 62 | len | stream`: every key of `stream` starts with this. `stream` holds
/// 1 ..= [`MAX_NAME_LEN`] bytes (checked by the caller).
pub fn stream_prefix(stream: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(NAMESPACE.len() + 1 + stream.len() + 1 + 8);
    k.extend_from_slice(NAMESPACE);
    k.push(u8::try_from(stream.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(stream);
    k
}

/// The prefix of `stream`'s record keys.
pub fn record_prefix(stream: &[u8]) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.push(RECORD);
    k
}

/// The key of record `seq` of `stream`.
pub fn record(stream: &[u8], seq: u64) -> Vec<u8> {
    let mut k = record_prefix(stream);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of a record key of `stream` (`prefix_len` = the length of its [`record_prefix`]),
/// or `None` when `key` is not shaped like one.
pub fn record_seq(key: &[u8], prefix_len: usize) -> Option<u64> {
    let tail: [u8; 8] = key.get(prefix_len..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The prefix of `stream`'s cursor keys.
pub fn cursor_prefix(stream: &[u8]) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.push(CURSOR);
    k
}

/// The key of `consumer`'s cursor on `stream`.
pub fn cursor(stream: &[u8], consumer: &[u8]) -> Vec<u8> {
    let mut k = cursor_prefix(stream);
    k.extend_from_slice(consumer);
    k
}

/// A cursor's value: `acked u64 BE | evicted u64 BE`.
pub fn cursor_value(acked: u64, evicted: u64) -> [u8; CURSOR_VALUE_LEN] {
    let mut v = [0u8; CURSOR_VALUE_LEN];
    let (a, e) = v.split_at_mut(8);
    a.copy_from_slice(&acked.to_be_bytes());
    e.copy_from_slice(&evicted.to_be_bytes());
    v
}

/// `(acked, evicted)` from a cursor's value, or `None` when it is shorter than
/// [`CURSOR_VALUE_LEN`]. Bytes after the first 16 are ignored.
pub fn decode_cursor(value: &[u8]) -> Option<(u64, u64)> {
    let acked: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let evicted: [u8; 8] = value.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(acked), u64::from_be_bytes(evicted)))
}

/// The heads key's value for `heads` (stream, newest seq), in the order given.
pub fn encode_heads<'a>(heads: impl IntoIterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
    let mut v = vec![HEADS_VERSION];
    for (stream, head) in heads {
        v.push(u8::try_from(stream.len()).unwrap_or(u8::MAX));
        v.extend_from_slice(stream);
        v.extend_from_slice(&head.to_be_bytes());
    }
    v
}

/// The (stream, newest seq) entries of the heads key's value, or `None` when it does not
/// decode.
pub fn decode_heads(value: &[u8]) -> Option<Vec<(Vec<u8>, u64)>> {
    let (&version, mut rest) = value.split_first()?;
    if version != HEADS_VERSION {
        return None;
    }
    let mut out = Vec::new();
    while let Some((&len, after)) = rest.split_first() {
        let name = after.get(..usize::from(len))?;
        let head: [u8; 8] = after.get(usize::from(len)..usize::from(len) + 8)?.try_into().ok()?;
        out.push((name.to_vec(), u64::from_be_bytes(head)));
        rest = after.get(usize::from(len) + 8..)?;
    }
    Some(out)
}

/// The stream whose keys `key` (an outbox key) belongs to, and the tag that follows its name;
/// `None` for the high-water key or a key too short for its length byte.
pub fn split_stream(key: &[u8]) -> Option<(&[u8], Option<u8>)> {
    let rest = key.strip_prefix(NAMESPACE)?;
    let (&len, rest) = rest.split_first()?;
    if len == 0 {
        return None;
    }
    let name = rest.get(..usize::from(len))?;
    Some((name, rest.get(usize::from(len)).copied()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn records_sort_by_stream_then_seq() {
        let mut keys = vec![
            record(b"b", 1),
            record(b"a", 300),
            record(b"a", 2),
            record(b"ab", 1),
            record(b"a", 256),
            cursor(b"a", b"mqtt"),
            heads(),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                heads(),
                record(b"a", 2),
                record(b"a", 256),
                record(b"a", 300),
                cursor(b"a", b"mqtt"),
                record(b"b", 1),
                record(b"ab", 1),
            ]
        );
    }

    #[test]
    fn no_stream_prefix_is_a_prefix_of_another_streams_keys() {
        // "a" + the record tag could look like stream "a\x01..." without the length byte.
        let a = stream_prefix(b"a");
        let a1 = record(b"a\x01", 5);
        assert!(!a1.starts_with(&a));
        assert!(!record(b"a", 1).starts_with(&stream_prefix(b"a\x01")));
    }

    #[test]
    fn keys_decode_back() {
        let p = record_prefix(b"s1");
        assert_eq!(record_seq(&record(b"s1", 0x0102_0304_0506_0708), p.len()), Some(0x0102_0304_0506_0708));
        assert_eq!(record_seq(&p, p.len()), None);
        assert_eq!(record_seq(b"", p.len()), None);
        assert_eq!(decode_cursor(&cursor_value(7, 3)), Some((7, 3)));
        assert_eq!(decode_cursor(&[0; 15]), None);
        let mut longer = cursor_value(9, 1).to_vec();
        longer.push(42);
        assert_eq!(decode_cursor(&longer), Some((9, 1)));
        assert_eq!(split_stream(&cursor(b"s1", b"c")), Some((&b"s1"[..], Some(0x02))));
        assert_eq!(split_stream(&heads()), None);
        let h = encode_heads([(&b"a"[..], 7), (&b"bc"[..], u64::MAX)]);
        assert_eq!(decode_heads(&h), Some(vec![(b"a".to_vec(), 7), (b"bc".to_vec(), u64::MAX)]));
        assert_eq!(decode_heads(&[1]), Some(vec![]));
        assert_eq!(decode_heads(&h[..h.len() - 1]), None);
        assert_eq!(decode_heads(&[2]), None);
        assert_eq!(split_stream(b"\xFFob\x09ab"), None);
    }
}
