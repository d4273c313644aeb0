//! Character sets: which collation ids the server knows, and turning column bytes into text.
//!
//! The binlog and a snapshot read with `character_set_results = NULL` both carry the column's
//! own bytes; both decode them here, so a row reads the same either way.

use std::collections::HashMap;

/// How the bytes of a character column become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Charset {
    /// `binary`: no text at all; the column is bytes.
    Binary,
    /// `utf8mb3` and `utf8mb4`.
    Utf8,
    /// `ascii`.
    Ascii,
    /// `latin1` (MariaDB's latin1 is Windows-1252 with the five undefined bytes kept as C1
    /// control characters).
    Latin1,
    /// `ucs2`: big-endian UTF-16 without surrogates.
    Ucs2,
    /// `utf16`: big-endian.
    Utf16Be,
    /// `utf16le`.
    Utf16Le,
    /// `utf32`: big-endian.
    Utf32,
}

impl Charset {
    /// The decoder for a character set name, if ordo has one.
    pub(crate) fn from_name(name: &str) -> Option<Charset> {
        Some(match name {
            "binary" => Charset::Binary,
            "utf8mb4" | "utf8mb3" | "utf8" => Charset::Utf8,
            "ascii" => Charset::Ascii,
            "latin1" => Charset::Latin1,
            "ucs2" => Charset::Ucs2,
            "utf16" => Charset::Utf16Be,
            "utf16le" => Charset::Utf16Le,
            "utf32" => Charset::Utf32,
            _ => return None,
        })
    }

    /// Bytes to text; `None` when they are not valid in this character set.
    pub(crate) fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Utf8 | Charset::Binary => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Charset::Ascii => bytes
                .is_ascii()
                .then(|| String::from_utf8_lossy(bytes).into_owned()),
            Charset::Latin1 => Some(bytes.iter().map(|b| latin1_char(*b)).collect()),
            Charset::Ucs2 | Charset::Utf16Be => utf16(bytes, u16::from_be_bytes),
            Charset::Utf16Le => utf16(bytes, u16::from_le_bytes),
            Charset::Utf32 => bytes
                .chunks(4)
                .map(|c| {
                    let a: [u8; 4] = c.try_into().ok()?;
                    char::from_u32(u32::from_be_bytes(a))
                })
                .collect(),
        }
    }
}

fn utf16(bytes: &[u8], word: fn([u8; 2]) -> u16) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| word([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// Windows-1252 for 0x80..0x9F, ISO 8859-1 elsewhere.
fn latin1_char(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// The server's collations: id and name to character set name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collations {
    by_id: HashMap<u16, String>,
    by_name: HashMap<String, String>,
}

impl Collations {
    /// From `(id, collation name, character set name)` rows.
    pub(crate) fn new(rows: impl IntoIterator<Item = (u16, String, String)>) -> Self {
        let mut c = Collations::default();
        for (id, name, charset) in rows {
            c.by_id.insert(id, charset.clone());
            c.by_name.insert(name, charset);
        }
        c
    }

    /// The character set name of collation `id`.
    pub(crate) fn charset_of_id(&self, id: u16) -> Option<&str> {
        match id {
            63 => Some("binary"),
            _ => self.by_id.get(&id).map(String::as_str),
        }
    }

    /// The character set name of a collation name.
    pub(crate) fn charset_of_name(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_common_charsets() {
        assert_eq!(
            Charset::Utf8.decode("é€😀".as_bytes()).as_deref(),
            Some("é€😀")
        );
        assert_eq!(Charset::Utf8.decode(&[0xff]), None);
        assert_eq!(
            Charset::Latin1.decode(&[0x41, 0xe9, 0x80]).as_deref(),
            Some("Aé€")
        );
        assert_eq!(Charset::Ascii.decode(&[0x80]), None);
        assert_eq!(
            Charset::Utf16Be
                .decode(&[0xd8, 0x3d, 0xde, 0x00])
                .as_deref(),
            Some("😀")
        );
        assert_eq!(Charset::Utf16Le.decode(&[0x41, 0x00]).as_deref(), Some("A"));
        assert_eq!(
            Charset::Utf32.decode(&[0, 1, 0xf6, 0]).as_deref(),
            Some("😀")
        );
    }
}
