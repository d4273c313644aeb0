//! What KCOPs produce: Kafka records, and the headers that tie them to their transaction.

use std::sync::Arc;

/// Header names ordo puts on every data record, so any consumer can match a record to its
/// commit record without decoding the value. Values are ASCII text.
pub mod headers {
    /// Source transaction id ([`TxnId`](crate::TxnId)).
    pub const TXN: &str = "ordo.txn";
    /// Operation index within the transaction (decimal).
    pub const OP: &str = "ordo.op";
    /// Sub-index when one operation became several records (decimal, from 0).
    pub const SUB: &str = "ordo.sub";
    /// Table, `namespace.name`.
    pub const TABLE: &str = "ordo.table";
    /// Operation code: c, u, d, t, r ([`Op::code`](crate::Op::code)).
    pub const OP_TYPE: &str = "ordo.optype";
    /// Schema version of the table when the change was captured (decimal).
    pub const SCHEMA_VERSION: &str = "ordo.schema";
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value bytes.
    pub value: Vec<u8>,
}

/// A record for the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Explicit partition, or `None` to partition by key (murmur2, like the Java client).
    pub partition: Option<i32>,
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers the KCOP adds; the pipeline appends the `ordo.*` headers after these.
    pub headers: Vec<Header>,
}

impl ProducerRecord {
    /// A record with no explicit partition and no headers.
    pub fn new(topic: Arc<str>, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        Self {
            topic,
            partition: None,
            key,
            value,
            headers: Vec::new(),
        }
    }

    /// Bytes the record occupies (key, value and headers), for memory accounting.
    pub fn size(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + h
    }
}
