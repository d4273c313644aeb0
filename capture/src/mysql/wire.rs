//! A bounds-checked reader over binlog event bytes (little-endian fixed integers and the
//! length-encoded integers of the MySQL protocol).

/// The bytes ran out, or a value could not be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Short(pub(crate) &'static str);

/// A cursor over a byte slice; every read checks the remaining length.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// What is left, without consuming it.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if n > self.buf.len() {
            return Err(Short("event ends in the middle of a value"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Short> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned little-endian integer of `n` bytes (at most 8).
    pub(crate) fn uint_le(&mut self, n: usize) -> Result<u64, Short> {
        let bytes = self.take(n)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// An unsigned big-endian integer of `n` bytes (at most 8).
    pub(crate) fn uint_be(&mut self, n: usize) -> Result<u64, Short> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Short> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Short> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer (`net_store_length`): one byte below 251, else a marker
    /// (0xfc, 0xfd, 0xfe) and 2, 3 or 8 bytes.
    pub(crate) fn lenenc(&mut self) -> Result<u64, Short> {
        match self.u8()? {
            n @ 0..=250 => Ok(u64::from(n)),
            0xfc => self.uint_le(2),
            0xfd => self.uint_le(3),
            0xfe => self.uint_le(8),
            _ => Err(Short("invalid length-encoded integer")),
        }
    }

    /// A length-encoded count that must fit in memory.
    pub(crate) fn lenenc_usize(&mut self) -> Result<usize, Short> {
        let n = self.lenenc()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining().saturating_mul(8).max(64))
            .ok_or(Short("length-encoded count larger than the event"))
    }

    /// Bytes preceded by their length-encoded length.
    pub(crate) fn lenenc_bytes(&mut self) -> Result<&'a [u8], Short> {
        let n = self.lenenc()?;
        let n = usize::try_from(n).map_err(|_| Short("length larger than memory"))?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integers_and_refuses_short_input() {
        let mut r = Reader::new(&[1, 2, 0, 0xfc, 0x10, 0x27, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.lenenc(), Ok(10_000));
        assert_eq!(r.remaining(), 1);
        assert!(r.u32().is_err());
        assert_eq!(Reader::new(&[1, 2, 3]).uint_be(3), Ok(0x010203));
        assert_eq!(Reader::new(&[1, 2, 3]).uint_le(3), Ok(0x030201));
    }
}
