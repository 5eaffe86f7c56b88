//! How replies print values and keys, so that what is printed can be pasted back as input.

use std::fmt;

/// How many bytes of an offending token an error message quotes before eliding the rest.
const MAX_QUOTED_IN_ERROR: usize = 32;

/// Formats a value (or key) for printing so that it can be pasted back as one input token.
///
/// Printed as-is when it is non-empty valid UTF-8 with no control characters, no whitespace, no
/// `"` or `'`, and is not exactly `(nil)` or `ERR` (so that neither reads as a reply of its
/// own: an mget line never starts with `ERR `). Otherwise it is printed double-quoted, with `"` and `\`
/// escaped, `\n` `\r` `\t` `\0` for those bytes, and `\xHH` for every other control character,
/// non-space whitespace character and byte that is not UTF-8; so for any bytes `v`,
/// `parse_line(b"get " + format_value(v))` gives back key `v`.
#[must_use]
pub fn format_value(v: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(v) {
        let plain = !text.is_empty()
            && text != "(nil)"
            && text != "ERR"
            && !text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\'');
        if plain {
            return text.to_owned();
        }
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    let mut utf8 = [0u8; 4];
                    for &byte in c.encode_utf8(&mut utf8).as_bytes() {
                        push_hex_escape(&mut out, byte);
                    }
                }
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_hex_escape(&mut out, byte);
        }
    }
    out.push('"');
    out
}

fn push_hex_escape(out: &mut String, byte: u8) {
    use fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{byte:02X}");
}

/// A user-supplied token for an error message: formatted, and cut short if long.
pub(super) fn quote_for_error(token: &[u8]) -> String {
    match token.get(..MAX_QUOTED_IN_ERROR) {
        Some(head) if token.len() > MAX_QUOTED_IN_ERROR => format!("{}...", format_value(head)),
        _ => format_value(token),
    }
}

/// Replaces control characters (line breaks included) with spaces so a reply stays on one line.
pub(super) fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A byte count for people: `78 B`, `3.5 MiB`, `4 MiB`, `1.2 GiB` (binary units, one decimal
/// below 100 of a unit, none from 100 up or when it is .0).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("EiB");
    let tenths = (value * 10.0).round() / 10.0;
    if value >= 100.0 || tenths.fract() == 0.0 {
        format!("{value:.0} {name}")
    } else {
        format!("{tenths:.1} {name}")
    }
}

/// A count with thousands separators, for people: `49,152`.
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
