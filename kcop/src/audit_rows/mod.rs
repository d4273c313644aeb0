//! The `audit-rows` format: IBM IIDR's multi-row audit (`KcopMultiRowAvroLiveAuditIntegrated`)
//! in JSON or Avro (`options.encoding`): every row image becomes its own record, tagged with
//! audit columns, so an update is two records (the before image, then the after image).
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
//! The audit columns, in both encodings:
//! - `A_ENTTYP`: the journal entry type above.
//! - `A_TIMSTAMP`: commit time, UTC, `YYYY-MM-DD HH:MM:SS.ffffff`.
//! - `A_CCID`: the source transaction id (`ordo.txn`).
//! - `A_USER`: always null (neither source tells ordo who made the change).
//!
//! # JSON ([`AuditRowsKcop`])
//! The value is a JSON object: the audit columns first, then the image's columns in output
//! order, encoded like the `json` format (exact decimals as strings, binary as base64,
//! timestamps per the `timestamps` option; a column whose value was not sent is left out):
//! `{"A_ENTTYP":"UP","A_TIMSTAMP":"2024-05-01 12:30:00.250000","A_CCID":"7421","A_USER":null,"id":1,..}`.
//! The key is the record's own image's key columns as a JSON object (`{"id":1}`): the before
//! image's for `UB` and `DL`, the after image's otherwise; no key for `CR` or with `key: none`.
//!
//! # Avro ([`AuditAvroKcop`])
//! The value is the record `<prefix>.<namespace>.<table>.AuditRow` (names as in the `avro`
//! format, see [`crate::avro`]), one schema for every entry type:
//!
//! | field | Avro type |
//! |---|---|
//! | `A_ENTTYP` | `string` |
//! | `A_TIMSTAMP` | `string`, the same text as in JSON (not a logical type: IIDR's form) |
//! | `A_CCID` | `string` |
//! | `A_USER` | `["null", "string"]`, always null |
//! | the image's columns, in output order | `["null", T]` with `T` as the `avro` format maps the column |
//! | `A_UNAVAILABLE` | `array` of `string` |
//!
//! Every column field is nullable whatever the column's nullability, for the `avro` format's
//! reason: a value the source did not send ([`Value::Unchanged`], [`Value::NotInImage`]) must
//! be written as something. Such a field is null *and* its name is listed in `A_UNAVAILABLE`;
//! a null field not listed is SQL `NULL`. `CR` records have every column field null and an
//! empty list. A column whose Avro field name is one of these five is refused.
//!
//! The key is the `avro` format's key record (`<...>.Key`, the key columns, nullable only where
//! the column is) taken from the record's own image as in JSON; a tombstone has the deleted
//! row's key.
//!
//! Framing is the `avro` format's ([`Framing`](crate::avro::Framing)): with a schema registry,
//! the Confluent wire format with the ids of the schemas registered under `<topic>-key` and
//! `<topic>-value`; without one, single-object encoding, the KCOP publishing both schemas to
//! the schema topic (keyed by their fingerprints) before its first data record.

use std::sync::Arc;

mod avro;

pub use avro::{AuditAvroFormat, AuditAvroKcop, UNAVAILABLE_FIELD};

use crate::change::{Change, Op};
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
}

/// One record an operation becomes, whatever the encoding.
#[derive(Debug, Clone, Copy)]
enum Record<'a> {
    /// An audit record: its entry type and image (`None` for `CR`).
    Image {
        code: &'static str,
        row: Option<&'a [Value]>,
    },
    /// A delete's tombstone, keyed like the `DL` record.
    Tombstone { row: Option<&'a [Value]> },
}

/// Call `f` with each record `change` becomes, in order (see the module docs).
fn records<'a>(
    change: &'a Change,
    deletes: DeleteMode,
    truncate: TruncateMode,
    mut f: impl FnMut(Record<'a>) -> Result<(), KcopError>,
) -> Result<(), KcopError> {
    let before = change.before.as_deref();
    let after = change.after.as_deref();
    let image = |code, row| Record::Image { code, row };
    match change.op {
        Op::Insert => f(image("PT", after)),
        Op::Read => f(image("RR", after)),
        Op::Update => {
            if before.is_some() {
                f(image("UB", before))?;
            }
            f(image("UP", after))
        }
        Op::Delete => {
            f(image("DL", before))?;
            if deletes == DeleteMode::Tombstone {
                f(Record::Tombstone { row: before })?;
            }
            Ok(())
        }
        Op::Truncate if truncate == TruncateMode::Skip => Ok(()),
        Op::Truncate => f(image("CR", None)),
    }
}

impl Kcop for AuditRowsKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        records(op.change, self.deletes, self.truncate, |record| {
            let (key, value) = match record {
                Record::Image { code, row } => (self.key(row), Some(self.value(op, code, row))),
                Record::Tombstone { row } => (self.key(row), None),
            };
            out.push(ProducerRecord::new(self.topic.clone(), key, value));
            Ok(())
        })
    }
}
