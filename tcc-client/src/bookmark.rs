//! Where a consumer resumes: after a transaction, or after an operation inside one.
//!
//! A bookmark names a commit record by its offset in the commit topic and its sequence number
//! (checked on resumption, so a bookmark of another commit topic is refused), plus, inside
//! that transaction, the index of the last operation processed.
//!
//! # Encoding
//! [`Bookmark::to_bytes`] writes a version byte (1), a flags byte (bit 0: an operation index
//! follows), then the commit offset, the sequence number and the operation index as unsigned
//! LEB128 varints: 4 to 31 bytes. The string form ([`Display`](std::fmt::Display) /
//! [`FromStr`]) is those bytes in URL-safe base64 without padding. Applications should store
//! either form as an opaque token.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const VERSION: u8 = 1;
const HAS_OP: u8 = 1;

/// A resumption point in the commit stream: small, opaque, serialisable.
///
/// Every [`TccTransaction`](crate::TccTransaction) and [`TccOperation`](crate::TccOperation)
/// carries the bookmark that resumes right after it; pass it back in
/// [`Start::Bookmark`](crate::Start::Bookmark).
///
/// # Examples
///
/// ```
/// use ordo_tcc::Bookmark;
///
/// # fn stored() -> String { "AQAqBw".to_owned() }
/// let bookmark: Bookmark = stored().parse()?;
/// assert_eq!(bookmark.to_string(), stored());
/// assert_eq!(Bookmark::from_bytes(&bookmark.to_bytes())?, bookmark);
/// # Ok::<(), ordo_tcc::BookmarkError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bookmark {
    commit_offset: i64,
    seq: u64,
    op: Option<u64>,
}

/// Bytes or text that are not a bookmark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BookmarkError {
    /// Not URL-safe base64.
    #[error(
        "bookmark text is not URL-safe base64 ({0}); pass the string a bookmark's to_string() gave"
    )]
    Text(String),
    /// Too short, too long, or a number does not fit.
    #[error(
        "bookmark bytes are truncated or corrupt ({0}); pass the bytes a bookmark's to_bytes() gave"
    )]
    Corrupt(&'static str),
    /// Written by a newer ordo.
    #[error(
        "bookmark format version {0} is newer than this consumer's {VERSION}; upgrade ordo-tcc"
    )]
    Version(u8),
}

impl Bookmark {
    /// After the whole transaction of the commit record at `commit_offset` with `seq`.
    pub(crate) fn after_transaction(commit_offset: i64, seq: u64) -> Self {
        Bookmark {
            commit_offset,
            seq,
            op: None,
        }
    }

    /// After operation `op` of that transaction (the rest of it comes next).
    pub(crate) fn after_operation(commit_offset: i64, seq: u64, op: u64) -> Self {
        Bookmark {
            commit_offset,
            seq,
            op: Some(op),
        }
    }

    /// Offset of the commit record in the commit topic.
    pub fn commit_offset(&self) -> i64 {
        self.commit_offset
    }

    /// Sequence number of the commit record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The last operation processed inside the transaction, or `None` when the whole
    /// transaction was.
    pub fn operation(&self) -> Option<u64> {
        self.op
    }

    /// The binary form (4 to 31 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.push(VERSION);
        out.push(if self.op.is_some() { HAS_OP } else { 0 });
        // Offsets of records are never negative: `from_bytes` refuses what i64 cannot hold.
        put_varint(&mut out, self.commit_offset.unsigned_abs());
        put_varint(&mut out, self.seq);
        if let Some(op) = self.op {
            put_varint(&mut out, op);
        }
        out
    }

    /// Parses the binary form.
    ///
    /// # Errors
    /// When the bytes are not a bookmark, or one of a newer format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BookmarkError> {
        let (&version, rest) = bytes.split_first().ok_or(BookmarkError::Corrupt("empty"))?;
        if version != VERSION {
            return Err(if version > VERSION {
                BookmarkError::Version(version)
            } else {
                BookmarkError::Corrupt("version 0")
            });
        }
        let (&flags, mut rest) = rest
            .split_first()
            .ok_or(BookmarkError::Corrupt("no flags"))?;
        if flags & !HAS_OP != 0 {
            return Err(BookmarkError::Corrupt("unknown flags"));
        }
        let offset = take_varint(&mut rest)?;
        let commit_offset =
            i64::try_from(offset).map_err(|_| BookmarkError::Corrupt("offset too large"))?;
        let seq = take_varint(&mut rest)?;
        let op = if flags & HAS_OP != 0 {
            Some(take_varint(&mut rest)?)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err(BookmarkError::Corrupt("trailing bytes"));
        }
        Ok(Bookmark {
            commit_offset,
            seq,
            op,
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation intended: the low seven bits, with the continuation bit.
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, BookmarkError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return Err(BookmarkError::Corrupt("number too large"));
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(BookmarkError::Corrupt("number not minimally encoded"));
            }
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    Err(BookmarkError::Corrupt("number cut short"))
}

impl fmt::Display for Bookmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

impl fmt::Debug for Bookmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Bookmark");
        d.field("commit_offset", &self.commit_offset)
            .field("seq", &self.seq);
        if let Some(op) = self.op {
            d.field("after_op", &op);
        }
        d.finish()
    }
}

impl FromStr for Bookmark {
    type Err = BookmarkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|e| BookmarkError::Text(e.to_string()))?;
        Bookmark::from_bytes(&bytes)
    }
}

impl serde::Serialize for Bookmark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Bookmark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_bookmark() -> impl Strategy<Value = Bookmark> {
        (
            0..=i64::MAX,
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(commit_offset, seq, op)| Bookmark {
                commit_offset,
                seq,
                op,
            })
    }

    #[test]
    fn small_bookmarks_are_small() {
        let b = Bookmark::after_operation(41, 7, 12);
        assert_eq!(b.to_bytes(), [1, 1, 41, 7, 12]);
        assert_eq!(b.to_string(), "AQEpBww");
        assert_eq!(Bookmark::after_transaction(0, 1).to_bytes(), [1, 0, 0, 1]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            Bookmark::from_bytes(&[2, 0, 0, 0]),
            Err(BookmarkError::Version(2))
        );
        assert!(matches!(
            "not base64!".parse::<Bookmark>(),
            Err(BookmarkError::Text(_))
        ));
        let err = Bookmark::from_bytes(&[1, 0, 0x80]).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        // Offset i64::MAX + 1 does not fit.
        let mut bytes = vec![1, 0];
        put_varint(&mut bytes, 1 << 63);
        bytes.push(0);
        assert!(Bookmark::from_bytes(&bytes).is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let b = Bookmark::after_transaction(1234, 99);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, format!("\"{b}\""));
        assert_eq!(serde_json::from_str::<Bookmark>(&json).unwrap(), b);
    }

    proptest! {
        #[test]
        fn round_trips(b in any_bookmark()) {
            prop_assert_eq!(Bookmark::from_bytes(&b.to_bytes()).unwrap(), b);
            prop_assert_eq!(b.to_string().parse::<Bookmark>().unwrap(), b);
            prop_assert!(b.to_bytes().len() <= 31);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes: Vec<u8>, text in "\\PC*") {
            let _ = Bookmark::from_bytes(&bytes);
            let _ = text.parse::<Bookmark>();
        }

        #[test]
        fn decoding_is_canonical(bytes: Vec<u8>) {
            // Whatever decodes re-encodes to the same bytes: one bookmark, one encoding.
            if let Ok(b) = Bookmark::from_bytes(&bytes) {
                prop_assert_eq!(b.to_bytes(), bytes);
            }
        }
    }
}
