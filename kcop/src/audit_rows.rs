//! The `audit-rows` format: IBM IIDR's multi-row audit (`KcopMultiRowAvroLiveAuditIntegrated`)
//! in JSON: every row image becomes its own record, tagged with audit columns, so an update is
//! two records (the before image, then the after image).
//!
//! # Records per operation
//! | operation | records (`A_ENTTYP`) |
//! |---|---|
//! | insert | `PT` with the after image |
//! | snapshot read | `RR` with the after image |
//! | update | `UB` with the before image (only when the source sent one), then `UP` with the after image |
//! | delete | `DL` with the before image; then a tombstone with `deletes: tombstone` |
//! | truncate | `CR` with no columns and no key (nothing with `truncate: skip`) |
//!
//! # Value
//! A JSON object: the audit columns first, then the image's columns in output order, encoded
//! like the `json` format (exact decimals as strings, binary as base64, timestamps per the
//! `timestamps` option; a column whose value was not sent is left out):
//! `{"A_ENTTYP":"UP","A_TIMSTAMP":"2024-05-01 12:30:00.250000","A_CCID":"7421","A_USER":null,"id":1,..}`
//! - `A_ENTTYP`: the journal entry type above.
//! - `A_TIMSTAMP`: commit time, UTC, `YYYY-MM-DD HH:MM:SS.ffffff`.
//! - `A_CCID`: the source transaction id (`ordo.txn`).
//! - `A_USER`: always `null` (neither source tells ordo who made the change).
//!
//! # Key
//! The record's own image's key columns as a JSON object (`{"id":1}`): the before image's for
//! `UB` and `DL`, the after image's otherwise; no key for `CR` or with `key: none`.

use std::sync::Arc;

use crate::change::Op;
use crate::csv_audit::audit_time;
use crate::json::{DeleteMode, JsonWriter, TruncateMode};
use crate::kcop::{Kcop, KcopError, Operation};
use crate::record::ProducerRecord;
use crate::schema::SchemaRef;
use crate::value::Value;

/// The audit column names, which no table column may use.
pub const AUDIT_COLUMNS: [&str; 4] = ["A_ENTTYP", "A_TIMSTAMP", "A_CCID", "A_USER"];

/// The `audit-rows` KCOP for one table (see the module docs for the exact layout).
#[derive(Debug, Clone)]
pub struct AuditRowsKcop {
    topic: Arc<str>,
    table: SchemaRef,
    key: Vec<usize>,
    columns: Vec<usize>,
    deletes: DeleteMode,
    truncate: TruncateMode,
    writer: JsonWriter,
}

/// Settings of an [`AuditRowsKcop`].
#[derive(Debug, Clone)]
pub struct AuditRowsConfig {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Key columns (indexes); empty for no key.
    pub key: Vec<usize>,
    /// Columns of each image (indexes).
    pub columns: Vec<usize>,
    /// Delete handling.
    pub deletes: DeleteMode,
    /// Truncate handling.
    pub truncate: TruncateMode,
    /// Value encoding settings (timestamp form).
    pub writer: JsonWriter,
}

impl AuditRowsKcop {
    /// The KCOP for `table`.
    ///
    /// # Errors
    /// When a published column is named like an audit column.
    pub fn new(config: AuditRowsConfig, table: SchemaRef) -> Result<Self, KcopError> {
        let clash = config
            .columns
            .iter()
            .filter_map(|&i| table.columns.get(i))
            .find(|c| AUDIT_COLUMNS.contains(&c.name.as_str()));
        if let Some(c) = clash {
            return Err(KcopError::Config {
                table: table.id.to_string(),
                reason: format!(
                    "column `{}` has the name of an audit column ({}); leave it out with `columns`",
                    c.name,
                    AUDIT_COLUMNS.join(", ")
                ),
            });
        }
        Ok(Self {
            topic: config.topic,
            table,
            key: config.key,
            columns: config.columns,
            deletes: config.deletes,
            truncate: config.truncate,
            writer: config.writer,
        })
    }

    fn value(&self, op: &Operation<'_>, code: &str, row: Option<&[Value]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + 24 * self.columns.len());
        out.extend_from_slice(b"{\"A_ENTTYP\":\"");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\",\"A_TIMSTAMP\":");
        JsonWriter::string(&mut out, &audit_time(op.txn.commit_time));
        out.extend_from_slice(b",\"A_CCID\":");
        JsonWriter::string(&mut out, &op.txn.id);
        out.extend_from_slice(b",\"A_USER\":null");
        if let Some(row) = row {
            let mut cols = Vec::with_capacity(24 * self.columns.len());
            self.writer.row(&mut cols, &self.table, row, &self.columns);
            if cols.len() > 2 {
                out.push(b',');
                out.extend_from_slice(&cols[1..cols.len() - 1]);
            }
        }
        out.push(b'}');
        out
    }

    fn key(&self, row: Option<&[Value]>) -> Option<Vec<u8>> {
        let row = row.filter(|_| !self.key.is_empty())?;
        let mut out = Vec::with_capacity(32);
        self.writer.row(&mut out, &self.table, row, &self.key);
        Some(out)
    }

    fn push(
        &self,
        out: &mut Vec<ProducerRecord>,
        op: &Operation<'_>,
        code: &str,
        row: Option<&[Value]>,
    ) {
        let value = self.value(op, code, row);
        out.push(ProducerRecord::new(
            self.topic.clone(),
            self.key(row),
            Some(value),
        ));
    }
}

impl Kcop for AuditRowsKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let c = op.change;
        let before = c.before.as_deref();
        let after = c.after.as_deref();
        match c.op {
            Op::Insert => self.push(out, op, "PT", after),
            Op::Read => self.push(out, op, "RR", after),
            Op::Update => {
                if before.is_some() {
                    self.push(out, op, "UB", before);
                }
                self.push(out, op, "UP", after);
            }
            Op::Delete => {
                self.push(out, op, "DL", before);
                if self.deletes == DeleteMode::Tombstone {
                    out.push(ProducerRecord::new(
                        self.topic.clone(),
                        self.key(before),
                        None,
                    ));
                }
            }
            Op::Truncate if self.truncate == TruncateMode::Skip => {}
            Op::Truncate => self.push(out, op, "CR", None),
        }
        Ok(())
    }
}
