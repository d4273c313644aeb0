//! What can go wrong while following the commit stream.
//!
//! Every error ends the stream: the consumer never skips data on its own. For the integrity
//! errors [`TccError::MissingRecords`] and [`TccError::SequenceGap`],
//! [`TccError::resume_past`] gives a bookmark with which the application may deliberately go
//! on past the problem.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::bookmark::Bookmark;
use crate::commit_stream::CommitRecordError;

/// An error of the transactionally consistent consumer.
///
/// # Examples
///
/// An application that retries environment problems and stops on integrity problems:
///
/// ```no_run
/// use futures::TryStreamExt as _;
/// use ordo_tcc::{Bookmark, Start, TccConfig, TccConsumer, TccError};
///
/// async fn process(start: Start) -> Result<Option<Bookmark>, TccError> {
///     let cfg = TccConfig::new("localhost:9092", "shop.commits", start);
///     let mut last = None;
///     let mut txns = TccConsumer::new(cfg)?.transactions();
///     while let Some(txn) = txns.try_next().await? {
///         last = Some(txn.bookmark); // ... after applying txn
///     }
///     Ok(last)
/// }
///
/// # async fn example(mut start: Start) {
/// loop {
///     match process(start).await {
///         Ok(_) => break,
///         Err(e) if e.is_transient() => {
///             eprintln!("{e}; retrying");
///             tokio::time::sleep(std::time::Duration::from_secs(5)).await;
///             // resume from the last bookmark stored with the results
///         }
///         Err(e) => {
///             // An operator decides; `e.resume_past()` would skip a broken transaction.
///             eprintln!("stopping: {e}");
///             break;
///         }
///     }
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TccError {
    /// A setting of [`TccConfig`](crate::TccConfig) is unusable.
    #[error("invalid tcc consumer setting `{setting}`: {reason}")]
    Config {
        /// The setting (`bootstrap_servers`, `commit_topic`, `topics`, or a client property).
        setting: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// Kafka (librdkafka) reported an error.
    #[error(
        "kafka error while trying to {what}: {source}; check that the brokers are reachable and the topic exists"
    )]
    Kafka {
        /// What the consumer was doing.
        what: String,
        /// The client's error.
        source: KafkaError,
    },

    /// A commit record could not be decoded (not a commit record, or a newer format).
    #[error(transparent)]
    CommitRecord(#[from] CommitRecordError),

    /// A commit record decoded but contradicts itself.
    #[error(
        "commit record at offset {offset} (seq {seq}) is inconsistent: {reason}; the commit topic was written by something other than ordo"
    )]
    InvalidCommitRecord {
        /// Offset in the commit topic.
        offset: i64,
        /// Its sequence number.
        seq: u64,
        /// What is inconsistent.
        reason: String,
    },

    /// A commit record's `seq` is not the previous one plus one.
    #[error(
        "commit stream sequence gap at offset {offset}: expected seq {expected}, found {found}; commit records were deleted or two capture daemons write to the same commit topic; to accept the gap, resume from this error's resume_past() bookmark"
    )]
    SequenceGap {
        /// Offset of the offending commit record.
        offset: i64,
        /// The sequence number that should have come.
        expected: u64,
        /// The one that came.
        found: u64,
    },

    /// The bookmark does not fit the commit stream.
    #[error(
        "the bookmark does not match the commit stream: offset {offset} should hold seq {expected}, it holds {found}; was the bookmark taken from another commit topic, or was the topic recreated?"
    )]
    BookmarkMismatch {
        /// Offset in the commit topic.
        offset: i64,
        /// Sequence number the bookmark expects there.
        expected: u64,
        /// Sequence number found.
        found: u64,
    },

    /// The commit topic has no record where the consumer has to start.
    #[error(
        "commit topic {topic} has no record at offset {offset} (it holds offsets {low}..{high}); the bookmark is older than the topic's retention, or the topic was recreated: start again from Start::Beginning or Start::End deliberately"
    )]
    CommitStreamOffset {
        /// Commit topic.
        topic: String,
        /// Offset the consumer needed.
        offset: i64,
        /// First offset the topic holds.
        low: i64,
        /// Offset after its last record.
        high: i64,
    },

    /// Records a commit record lists are not in their data partition.
    #[error(
        "transaction {txn} (commit seq {seq}) lists {expected} records at offsets {first}..={last} of {topic} partition {partition}, but only {found} could be read: {reason}; the records were deleted (retention, recreated topic) or written out of operation order, or the commit record is wrong; to go on without them, resume from this error's resume_past() bookmark"
    )]
    MissingRecords {
        /// Data topic.
        topic: String,
        /// Data partition.
        partition: i32,
        /// First listed offset.
        first: i64,
        /// Last listed offset.
        last: i64,
        /// Source transaction id.
        txn: String,
        /// Commit sequence number.
        seq: u64,
        /// Offset of the commit record.
        commit_offset: i64,
        /// Records listed.
        expected: u64,
        /// Records found.
        found: u64,
        /// Why reading stopped.
        reason: MissingReason,
    },

    /// A data record carries the transaction's id but unusable `ordo.*` headers.
    #[error(
        "data record at offset {offset} of {topic} partition {partition} (transaction {txn}) has an invalid `{header}` header {value:?}: expected a decimal number; the topic is written by something other than ordo"
    )]
    MalformedDataRecord {
        /// Data topic.
        topic: String,
        /// Data partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// Source transaction id.
        txn: String,
        /// The header.
        header: &'static str,
        /// Its value (lossy UTF-8), empty when missing.
        value: String,
    },

    /// The reader thread could not be started.
    #[error(
        "could not start the tcc reader thread: {source}; the process is out of threads or memory"
    )]
    Thread {
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The reader thread ended without saying why (a bug).
    #[error(
        "the tcc reader thread stopped unexpectedly (a bug in ordo-tcc); restart the consumer from the last bookmark"
    )]
    ReaderStopped,
}

/// Why a data partition could not deliver all the records a commit record lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingReason {
    /// The listed range `[first, last]` was read to its end.
    RangeExhausted,
    /// The partition ends before the listed range does.
    PartitionEnd {
        /// The partition's high watermark (offset after its last record).
        high_watermark: i64,
    },
    /// The partition starts after the range's first offset (retention deleted records).
    Truncated {
        /// The partition's first offset.
        log_start: i64,
    },
}

impl fmt::Display for MissingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingReason::RangeExhausted => {
                f.write_str("the listed range holds fewer records of the transaction")
            }
            MissingReason::PartitionEnd { high_watermark } => {
                write!(f, "the partition ends at offset {high_watermark}")
            }
            MissingReason::Truncated { log_start } => {
                write!(f, "the partition now starts at offset {log_start}")
            }
        }
    }
}

impl TccError {
    pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> TccError {
        let what = what.into();
        move |source| TccError::Kafka { what, source }
    }

    /// Whether retrying (restarting the consumer from the last bookmark, after a pause) may
    /// succeed: network trouble and broker fail-overs. Everything else needs a person.
    pub fn is_transient(&self) -> bool {
        let TccError::Kafka { source, .. } = self else {
            return false;
        };
        matches!(
            source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::NetworkException
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::NotCoordinator
                    | RDKafkaErrorCode::CoordinatorNotAvailable
            )
        )
    }

    /// A bookmark that goes on past the problem, for an application that decides to: after
    /// the transaction whose records are missing, or accepting a sequence gap. `None` for
    /// other errors.
    pub fn resume_past(&self) -> Option<Bookmark> {
        match *self {
            TccError::MissingRecords {
                commit_offset, seq, ..
            } => Some(Bookmark::after_transaction(commit_offset, seq)),
            // Offsets start at 0 and a gap needs a record before it: offset >= 1, found >= 1.
            TccError::SequenceGap { offset, found, .. } if offset > 0 && found > 0 => {
                Some(Bookmark::after_transaction(offset - 1, found - 1))
            }
            _ => None,
        }
    }

    /// Whether the error says the data is incomplete or inconsistent (as opposed to an
    /// environment problem): a missing record, a sequence gap, a malformed record.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            TccError::MissingRecords { .. }
                | TccError::SequenceGap { .. }
                | TccError::CommitRecord(_)
                | TccError::InvalidCommitRecord { .. }
                | TccError::MalformedDataRecord { .. }
                | TccError::BookmarkMismatch { .. }
                | TccError::CommitStreamOffset { .. }
        )
    }
}
