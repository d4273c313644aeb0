//! ordo's transactionally consistent consumer (TCC) and the commit-stream format.
//!
//! The capture daemon writes each source transaction's records to data topics, then, once
//! Kafka acknowledged all of them, one [commit record](commit_stream::CommitRecord) to the
//! commit topic. A TCC consumer follows the commit topic and, for each commit record, reads
//! from the data partitions exactly the records it lists, and nothing else: duplicates of
//! producer retries, orphans of a crashed capture run that never got a commit record, and
//! records of other transactions are dropped. The application sees whole source
//! transactions, in source commit order, each exactly once, with their operations in
//! source order, across any number of topics and partitions.
//!
//! ```no_run
//! use futures::TryStreamExt as _;
//! use ordo_tcc::{Start, TccConfig, TccConsumer};
//!
//! # async fn example() -> Result<(), ordo_tcc::TccError> {
//! let cfg = TccConfig::new("localhost:9092", "shop.commits", Start::Beginning);
//! let mut transactions = TccConsumer::new(cfg)?.transactions();
//! while let Some(txn) = transactions.try_next().await? {
//!     println!("transaction {} with {} operations", txn.commit.txn, txn.operations.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The algorithm
//! 1. Follow the commit topic's only partition, assigned explicitly (no consumer group).
//!    Each record's `seq` must be the previous one plus one.
//! 2. For each part of the commit record on a wanted topic (`topic`, `partition`, `first`,
//!    `last`, `count`), position the data partition at `first`: it is assigned the first time
//!    it is needed, read on when `first` is at or a little after its position, sought when
//!    far after. When `first` is before its position (transactions written concurrently
//!    interleave their ranges), the records the previous transactions passed over are
//!    replayed from memory (up to 1 MiB per partition), or else the partition seeks back.
//! 3. On each partition, a record belongs to the transaction when its offset is within
//!    `[first, last]` and its `ordo.txn` header is the transaction's id. Its (`ordo.op`,
//!    `ordo.sub`) must rise; one that does not is a duplicate and dropped. The partition is
//!    done after `count` records; reaching `last`, or the partition's end, first is an error.
//! 4. Merge the partitions by (op, sub), k-way, holding one record per partition, and deliver
//!    each operation with all its records.
//!
//! All partitions share one librdkafka consumer, each with its own queue, so one fetch
//! request per broker serves all of them and the merge pulls exactly from the partition it
//! needs; librdkafka stops fetching a partition whose queue is full
//! (`queued.max.messages.kbytes`, per partition), so no explicit pause is needed.
//!
//! # Ordering
//! Transactions come in commit-record order, which is source commit order. Inside a
//! transaction, operations come by `op_index` and an operation's records by sub-index,
//! whatever topics and partitions they are on. Operations without records on the wanted
//! topics are absent, so indexes may have holes. The merge relies on the daemon writing a
//! transaction's records to each partition in operation order (its producer is idempotent);
//! a record out of that order is taken for a duplicate, and the transaction then lacks a
//! record: an error, never a misordered delivery.
//!
//! # Resumption
//! Every [`TccTransaction`] and [`TccOperation`] carries a [`Bookmark`] naming the commit
//! record (offset and seq) and, for an operation inside a transaction, its index. Starting
//! with [`Start::Bookmark`] yields exactly what follows: the rest of a transaction, then the
//! next transactions. Store the bookmark atomically with the effects of what it follows, and
//! the application processes every operation exactly once across restarts.
//!
//! # Memory
//! [`TccConsumer::transactions`] holds one whole transaction at a time.
//! [`TccConsumer::operations`] holds, per data partition, one record, librdkafka's read-ahead
//! (`queued.max.messages.kbytes`, 2 MiB by default) and at most 1 MiB of records kept for
//! interleaved transactions, plus up to 256 operations on their way to the application:
//! bounded whatever the size of a transaction.
//!
//! # Error handling
//! Nothing is skipped silently. A listed record that cannot be read (deleted by retention,
//! range exhausted, partition too short) ends the stream with
//! [`TccError::MissingRecords`], naming the topic, partition, offsets and transaction; a
//! hole in the commit sequence with [`TccError::SequenceGap`]; an undecodable commit record
//! with [`TccError::CommitRecord`]. For the first two, [`TccError::resume_past`] gives a
//! bookmark with which the application may deliberately go on. [`TccError::is_transient`]
//! tells which errors are worth a retry from the last bookmark. A stream ends after its
//! first error.

pub mod bookmark;
pub mod commit_stream;
pub mod config;
pub mod decrypt;
pub mod error;
pub mod model;
mod reader;
mod stream;

pub use bookmark::{Bookmark, BookmarkError};
pub use config::{Start, TccConfig};
pub use error::{MissingReason, TccError};
pub use model::{TccOperation, TccRecord, TccTransaction};
pub use stream::{OperationStream, TccConsumer, TransactionStream};
