//! What the consumer delivers: transactions, their operations, and the Kafka records of each.

use std::sync::Arc;

use ordo_kcop::record::headers;

use crate::bookmark::Bookmark;
use crate::commit_stream::CommitRecord;

/// One data record, exactly as the capture daemon produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TccRecord {
    /// Data topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in record order, the KCOP's own first, then the `ordo.*` ones (a header
    /// without a value has an empty one here).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TccRecord {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The `ordo.table` header: the source table, `namespace.name`.
    pub fn table(&self) -> Option<&str> {
        self.header(headers::TABLE)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `ordo.optype` header: `c`, `u`, `d`, `t` or `r`.
    pub fn op_type(&self) -> Option<&str> {
        self.header(headers::OP_TYPE)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `ordo.sub` header: the record's index among those of its operation.
    pub fn sub(&self) -> Option<u64> {
        self.header(headers::SUB).and_then(parse_decimal)
    }
}

/// One source operation (row change): every wanted record it became, in `ordo.sub` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TccOperation {
    /// Index of the operation in its transaction (`ordo.op`). Indexes of operations that
    /// produced no wanted record are absent, so they need not be dense.
    pub op_index: u64,
    /// The records, sorted by `ordo.sub`.
    pub records: Vec<TccRecord>,
    /// Resumes right after this operation; after the last operation of the transaction it
    /// resumes after the whole transaction.
    pub bookmark: Bookmark,
    /// The commit record of the transaction.
    pub commit: Arc<CommitRecord>,
    /// Whether this is the transaction's last operation delivered to this consumer.
    pub last: bool,
}

/// One source transaction: its commit record and its operations in source order.
///
/// A transaction none of whose records are on the wanted topics is delivered too, with no
/// operations, so that its bookmark moves the application past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TccTransaction {
    /// The commit record (transaction id, commit position and time, partitions).
    pub commit: CommitRecord,
    /// The operations with records on wanted topics, by `op_index`.
    pub operations: Vec<TccOperation>,
    /// Resumes after this transaction.
    pub bookmark: Bookmark,
}

impl TccTransaction {
    /// All records, in operation then sub-index order.
    pub fn records(&self) -> impl Iterator<Item = &TccRecord> {
        self.operations.iter().flat_map(|op| op.records.iter())
    }
}

/// An ASCII decimal header value.
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b"1 "), None);
    }
}
