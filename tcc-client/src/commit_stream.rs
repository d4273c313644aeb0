//! The commit-stream record format, version 1.
//!
//! The capture daemon appends one commit record per source transaction to the commit-stream
//! topic (one partition), in source commit order, after every data record of the transaction
//! is acknowledged by Kafka. The full specification, for consumers in other languages, is in
//! `docs/commit-stream.md`; the tests in this module pin the exact bytes.
//!
//! A record is one compact JSON object (record key: none; value: the object in UTF-8):
//!
//! ```json
//! {"v":1,"seq":7,"src":"postgresql","txn":"748","pos":"pg:0/1A2B3C8","restart":"pg:0/1A2B3F0",
//!  "ts":1732280400123456,"ops":3,"n":3,"parts":[["shop.orders",0,41,42,2],["shop.lines",1,17,17,1]]}
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// The format version this crate writes; readers refuse records with a higher version.
pub const FORMAT_VERSION: u32 = 1;

/// Which kind of source wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// PostgreSQL logical replication.
    Postgresql,
    /// MariaDB binlog.
    Mariadb,
    /// MySQL binlog.
    Mysql,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Postgresql => "postgresql",
            SourceKind::Mariadb => "mariadb",
            SourceKind::Mysql => "mysql",
        })
    }
}

/// The records one transaction put on one data partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// Data topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the transaction's first record on this partition.
    pub first: i64,
    /// Offset of its last record (inclusive).
    pub last: i64,
    /// How many of the offsets in `[first, last]` belong to the transaction (others may be
    /// records of neighbouring transactions or retried duplicates).
    pub count: u64,
}

impl Serialize for PartitionRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.topic,
            self.partition,
            self.first,
            self.last,
            self.count,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PartitionRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (topic, partition, first, last, count) =
            <(String, i32, i64, i64, u64)>::deserialize(d)?;
        Ok(PartitionRange {
            topic,
            partition,
            first,
            last,
            count,
        })
    }
}

/// One commit record: a source transaction, durable in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Format version ([`FORMAT_VERSION`]).
    #[serde(rename = "v")]
    pub version: u32,
    /// Dense sequence number: the first record is 1, each next one is one more, across restarts.
    pub seq: u64,
    /// Source kind.
    #[serde(rename = "src")]
    pub source: SourceKind,
    /// Source transaction id, as in the `ordo.txn` header of the data records.
    pub txn: String,
    /// Commit position (text form of `ordo_kcop::Position`).
    #[serde(rename = "pos")]
    pub position: String,
    /// Where the capture resumes after this transaction (text form of `ordo_kcop::Position`).
    pub restart: String,
    /// Commit time, microseconds since the Unix epoch (UTC).
    #[serde(rename = "ts")]
    pub commit_time_micros: i64,
    /// Number of source operations (row changes) in the transaction.
    pub ops: u64,
    /// Number of data records produced for it (sum of the parts' counts).
    #[serde(rename = "n")]
    pub records: u64,
    /// Data partitions touched, sorted by topic then partition.
    pub parts: Vec<PartitionRange>,
}

/// A commit record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CommitRecordError {
    /// Not JSON of the expected shape.
    #[error(
        "commit record at offset {offset} is not a valid commit record: {source}; is the commit topic shared with something else?"
    )]
    Malformed {
        /// Offset in the commit topic.
        offset: i64,
        /// Parser error.
        source: serde_json::Error,
    },
    /// Written by a newer ordo.
    #[error(
        "commit record at offset {offset} has format version {version}, newer than this reader's {FORMAT_VERSION}; upgrade the consumer"
    )]
    Version {
        /// Offset in the commit topic.
        offset: i64,
        /// Version found.
        version: u32,
    },
    /// The record has no value.
    #[error(
        "commit record at offset {offset} has no value; is the commit topic compacted or shared?"
    )]
    Empty {
        /// Offset in the commit topic.
        offset: i64,
    },
}

impl CommitRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a record's value; `offset` is only used in errors.
    ///
    /// # Errors
    /// When the bytes are not a commit record, or one of a newer format version.
    pub fn decode(bytes: Option<&[u8]>, offset: i64) -> Result<CommitRecord, CommitRecordError> {
        let bytes = bytes.ok_or(CommitRecordError::Empty { offset })?;
        #[derive(Deserialize)]
        struct VersionOnly {
            v: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|source| CommitRecordError::Malformed { offset, source })?;
        if v.v > FORMAT_VERSION {
            return Err(CommitRecordError::Version {
                offset,
                version: v.v,
            });
        }
        serde_json::from_slice(bytes)
            .map_err(|source| CommitRecordError::Malformed { offset, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> CommitRecord {
        CommitRecord {
            version: 1,
            seq: 7,
            source: SourceKind::Postgresql,
            txn: "748".into(),
            position: "pg:0/1A2B3C8".into(),
            restart: "pg:0/1A2B3F0".into(),
            commit_time_micros: 1_732_280_400_123_456,
            ops: 3,
            records: 3,
            parts: vec![
                PartitionRange {
                    topic: "shop.lines".into(),
                    partition: 1,
                    first: 17,
                    last: 17,
                    count: 1,
                },
                PartitionRange {
                    topic: "shop.orders".into(),
                    partition: 0,
                    first: 41,
                    last: 42,
                    count: 2,
                },
            ],
        }
    }

    #[test]
    fn bytes_are_pinned() {
        let bytes = sample().encode();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"v":1,"seq":7,"src":"postgresql","txn":"748","pos":"pg:0/1A2B3C8","restart":"pg:0/1A2B3F0","ts":1732280400123456,"ops":3,"n":3,"parts":[["shop.lines",1,17,17,1],["shop.orders",0,41,42,2]]}"#
        );
    }

    #[test]
    fn newer_versions_are_refused() {
        let err = CommitRecord::decode(Some(br#"{"v":2,"anything":true}"#), 9).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_offset() {
        let err = CommitRecord::decode(Some(b"hello"), 12).unwrap_err();
        assert!(err.to_string().contains("offset 12"), "{err}");
        assert!(CommitRecord::decode(None, 3).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(seq: u64, txn in "[0-9a-z-]{1,20}", ts: i64, n in 0u64..10, first in 0i64..1_000_000) {
            let mut r = sample();
            r.seq = seq;
            r.txn = txn;
            r.commit_time_micros = ts;
            r.records = n;
            r.parts[0].first = first;
            prop_assert_eq!(CommitRecord::decode(Some(&r.encode()), 0).unwrap(), r);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes: Vec<u8>) {
            let _ = CommitRecord::decode(Some(&bytes), 0);
        }
    }
}
