//! Source transactions and the row changes in them.

use std::fmt;
use std::sync::Arc;

use crate::position::Position;
use crate::schema::SchemaRef;
use crate::value::{Timestamp, Value};

/// A row image: one value per column of the change's schema, in column order.
pub type Row = Vec<Value>;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A new row (`after` only).
    Insert,
    /// A changed row (`after`, and `before` when the source sends it).
    Update,
    /// A removed row (`before`, possibly key-only).
    Delete,
    /// The table was truncated (no row images).
    Truncate,
    /// A row read by a snapshot (`after` only).
    Read,
}

impl Op {
    /// The one-letter code used in headers and the Debezium envelope: c, u, d, t, r.
    pub fn code(self) -> &'static str {
        match self {
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Read => "r",
        }
    }

    /// Parse [`Op::code`].
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Insert,
            "u" => Op::Update,
            "d" => Op::Delete,
            "t" => Op::Truncate,
            "r" => Op::Read,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Read => "read",
        })
    }
}

/// One row change inside a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The schema the row images follow.
    pub table: SchemaRef,
    /// What happened.
    pub op: Op,
    /// The old row, when the source sends one. Columns the source left out of a key-only image
    /// are [`Value::NotInImage`].
    pub before: Option<Row>,
    /// The new row. Unchanged TOAST columns are [`Value::Unchanged`].
    pub after: Option<Row>,
    /// Position of this change in its transaction, from 0, dense.
    pub op_index: u64,
}

/// The source's identifier of a transaction, stable across capture restarts: the PostgreSQL
/// xid, or the MariaDB GTID (`domain-server-seq`). Snapshot batches get `snapshot:<table>:<n>`.
pub type TxnId = Arc<str>;

/// What is known of a transaction when its first change arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnBegin {
    /// Source transaction id.
    pub id: TxnId,
    /// Commit time as the source recorded it (UTC microseconds).
    pub commit_time: Timestamp,
    /// Commit position if the source announces it up front (PostgreSQL's final LSN), else the
    /// position of the transaction's start.
    pub position: Option<Position>,
}

/// What is known of a transaction once it has committed.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnCommit {
    /// Source transaction id (same as in [`TxnBegin`]).
    pub id: TxnId,
    /// Commit time (UTC microseconds).
    pub commit_time: Timestamp,
    /// Where the transaction committed.
    pub commit_position: Position,
    /// Where the capture resumes to continue right after this transaction.
    pub restart_position: Position,
    /// Number of changes the transaction had.
    pub change_count: u64,
}

/// A whole transaction, for tests and consumers that want one value (the pipeline itself
/// streams [`SourceEvent`]s so that huge transactions never sit in memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// Commit metadata.
    pub commit: TxnCommit,
    /// Changes in source order.
    pub changes: Vec<Change>,
}

/// What a source reader hands to the pipeline, in commit order: each transaction is
/// `Begin`, its `Change`s, `Commit`; no two transactions interleave.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A transaction starts.
    Begin(TxnBegin),
    /// One change of the current transaction.
    Change(Change),
    /// The current transaction committed.
    Commit(TxnCommit),
    /// The current transaction will not commit in this stream (the connection dropped in the
    /// middle of it); discard it. The source sends it again, whole, after reconnecting. Records
    /// already produced for it stay in Kafka as orphans that no commit record lists.
    Rollback,
    /// The source advanced past log content that contains no mapped change (idle WAL,
    /// heartbeats); the position may be acknowledged once everything before it is durable.
    Progress(Position),
}
