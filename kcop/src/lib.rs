//! ordo's row-change model and the KCOP API.
//!
//! # The model
//! A source reader turns the database log into [`SourceEvent`]s: each transaction is a
//! [`TxnBegin`], its [`Change`]s in source order, and a [`TxnCommit`] with the commit and
//! restart [`Position`]s. A change carries its table's [`TableSchema`] (with a version that
//! increases on every schema change), the [`Op`], and before/after rows of typed [`Value`]s.
//! Two markers are never `NULL`: [`Value::Unchanged`] (PostgreSQL did not send an unchanged
//! TOAST value) and [`Value::NotInImage`] (a key-only old image left the column out).
//!
//! # KCOPs
//! A [`Kcop`] turns one operation into zero or more [`ProducerRecord`]s (topic, optional
//! partition, key, value or tombstone, headers). Each mapped table has a chain of outputs;
//! the built-in formats live in this crate ([`json`]), and users add their own by implementing
//! the trait. The daemon adds the `ordo.*` [`headers`](record::headers) that let consumers
//! match each record to its transaction's commit record.

pub mod audit_rows;
pub mod avro;
pub mod change;
pub mod csv_audit;
pub mod debezium;
pub mod encrypt;
pub mod expr;
pub mod json;
pub mod kcop;
pub mod position;
pub mod record;
pub mod schema;
pub mod value;

pub use change::{Change, Op, Row, SourceEvent, Transaction, TxnBegin, TxnCommit, TxnId};
pub use kcop::{Kcop, KcopError, Operation, SourceInfo};
pub use position::{BinlogCoord, Gtid, GtidSet, Lsn, Position};
pub use record::{Header, ProducerRecord};
pub use schema::{Column, ColumnKind, SchemaRef, TableId, TableSchema};
pub use value::{BitString, Date, Decimal, Interval, Time, Timestamp, Value, ZoneOffset};
