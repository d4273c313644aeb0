//! Records a partition yielded that the transaction being read did not want, kept a while
//! for the next transactions: when transactions are produced concurrently their ranges
//! interleave, and the next transaction's range starts before the partition's position.
//! Reading those records again from here avoids a seek, which costs a fetch round trip.

use std::collections::VecDeque;

/// Keep at most this many bytes per partition...
const MAX_BYTES: usize = 1 << 20;
/// ...and this many records.
const MAX_RECORDS: usize = 8192;

/// One record, owned.
#[derive(Debug)]
pub(crate) struct KeptRecord {
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    /// Emptied once the record is delivered, so that it matches no transaction again.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

impl KeptRecord {
    fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers
    }
}

/// The kept records of one partition, by offset.
#[derive(Debug)]
pub(crate) struct Kept {
    records: VecDeque<KeptRecord>,
    bytes: usize,
    /// Every undelivered record read from this offset on is kept.
    from: i64,
}

impl Kept {
    pub(crate) fn new(from: i64) -> Self {
        Kept {
            records: VecDeque::new(),
            bytes: 0,
            from,
        }
    }

    /// Whether every undelivered record from `offset` on is here.
    pub(crate) fn covers(&self, offset: i64) -> bool {
        self.from <= offset
    }

    /// Forgets everything; records from `from` on are kept again.
    pub(crate) fn reset(&mut self, from: i64) {
        self.records.clear();
        self.bytes = 0;
        self.from = from;
    }

    /// Keeps a record read after all others, dropping the oldest beyond the limits.
    pub(crate) fn push(&mut self, record: KeptRecord) {
        self.bytes += record.size();
        self.records.push_back(record);
        while self.bytes > MAX_BYTES || self.records.len() > MAX_RECORDS {
            let Some(old) = self.records.pop_front() else {
                break;
            };
            self.bytes -= old.size();
            self.from = old.offset + 1;
        }
    }

    /// The index of the first kept record at `offset` or after, and the record.
    pub(crate) fn at_or_after(&self, offset: i64) -> Option<(usize, &KeptRecord)> {
        let i = self.records.partition_point(|r| r.offset < offset);
        self.records.get(i).map(|r| (i, r))
    }

    /// Takes the data of the record at index `i` (from `at_or_after`), leaving it empty.
    pub(crate) fn take(&mut self, i: usize) -> KeptRecord {
        let r = &mut self.records[i];
        self.bytes -= r.size();
        KeptRecord {
            offset: r.offset,
            key: r.key.take(),
            value: r.value.take(),
            headers: std::mem::take(&mut r.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, len: usize) -> KeptRecord {
        KeptRecord {
            offset,
            key: None,
            value: Some(vec![0; len]),
            headers: vec![("ordo.txn".into(), b"1".to_vec())],
        }
    }

    #[test]
    fn keeps_in_order_and_forgets_the_oldest() {
        let mut k = Kept::new(10);
        k.push(rec(10, 10));
        k.push(rec(12, 10));
        assert!(k.covers(10) && !k.covers(9));
        assert_eq!(k.at_or_after(11).map(|(i, r)| (i, r.offset)), Some((1, 12)));
        assert!(k.at_or_after(13).is_none());
        let taken = k.take(1);
        assert_eq!((taken.offset, taken.value.map(|v| v.len())), (12, Some(10)));
        assert!(k.at_or_after(12).unwrap().1.headers.is_empty());
        k.push(rec(13, MAX_BYTES));
        assert!(
            k.covers(14) && !k.covers(13),
            "the big record pushed everything out"
        );
    }
}
