//! The KCOP API: one operation in, zero or more Kafka records out.

use std::fmt;
use std::sync::Arc;

use crate::change::{Change, TxnBegin};
use crate::record::ProducerRecord;

/// Which kind of database the change came from, and its name; formats that describe their
/// source (Debezium's `source` block) read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// `postgresql`, `mariadb` or `mysql`.
    pub connector: &'static str,
    /// Logical server name (used in Debezium's `source.name`).
    pub name: String,
    /// Database name (PostgreSQL database; for MySQL the namespace of each table is its database).
    pub database: String,
}

/// Everything a KCOP sees of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// The row change, with its table schema (and schema version), op type, images and op index.
    pub change: &'a Change,
    /// The transaction's id, commit time and (when known up front) position.
    pub txn: &'a TxnBegin,
    /// Where the change came from.
    pub source: &'a SourceInfo,
}

/// A KCOP failed on one operation. The daemon stops without acknowledging the transaction,
/// so nothing is lost: fix the cause (config, key, data) and restart.
#[derive(Debug, thiserror::Error)]
pub enum KcopError {
    /// A value cannot be encoded by this format.
    #[error("table {table}, column {column}: {reason}")]
    Encode {
        /// `namespace.name`.
        table: String,
        /// Column name.
        column: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The KCOP's configuration does not fit this table (e.g. a key column that does not exist).
    #[error("table {table}: {reason}")]
    Config {
        /// `namespace.name`.
        table: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Any other failure, from a user KCOP.
    #[error("{0}")]
    Other(String),
}

/// A Kafka custom operation processor.
///
/// # Contract
/// - **Input:** one operation at a time, in source commit order and, within a transaction, in
///   op order. A KCOP may be called from one thread at a time per pipeline, but must be `Sync`
///   because the daemon may share it between pipelines.
/// - **Output:** records appended to `out`, in the order they should be produced. Appending
///   nothing drops the operation from this output (the transaction still commits).
///   Records for the same partition keep their order; the daemon adds the `ordo.*` headers
///   ([`crate::record::headers`]) to every record after `process` returns.
/// - **Purity:** the result must depend only on the operation and the KCOP's configuration,
///   so that a transaction replayed after a crash yields the same records. No I/O on the hot
///   path (a schema registry lookup is cached after the first call per schema version).
/// - **Errors:** an `Err` stops the daemon before the transaction is acknowledged; the source
///   position does not advance past it.
pub trait Kcop: Send + Sync + fmt::Debug {
    /// Turn one operation into zero or more records appended to `out`.
    ///
    /// # Errors
    /// When the operation cannot be represented (see [`KcopError`]).
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError>;
}

impl<K: Kcop + ?Sized> Kcop for Arc<K> {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        (**self).process(op, out)
    }
}
