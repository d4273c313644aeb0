//! The `avro` format: key and value as Avro binary, with schemas derived from the table schema.
//!
//! # Schemas
//! Each table schema version gets two schemas (see [`AvroFormat::key_schema`] and
//! [`AvroFormat::value_schema`]), named in the namespace `<prefix>.<namespace>.<table>`
//! (prefix `ordo` unless `options.namespace` says otherwise; characters outside
//! `[A-Za-z0-9_]` become `_`, and a leading digit gets a `_`):
//! - **`Key`**: the key columns, each field nullable (a union `["null", T]`) only where the
//!   column is.
//! - **`Envelope`** (the value): `before` and `after` (each `null` or a record `Value` with the
//!   output's columns), `op` (`c`, `u`, `d`, `r`, `t`), `ts_us` (commit time,
//!   `timestamp-micros`), `txn` (source transaction id), `op_index`, and the two lists
//!   `before_unavailable` and `after_unavailable` described below. Every field of `Value` is a
//!   union with `null` (null first, default null), whatever the column's nullability: a
//!   value the source did not send must be written as something.
//!
//! # Values the source did not send
//! [`Value::Unchanged`] (PostgreSQL's unchanged TOAST) and [`Value::NotInImage`] (a column
//! outside a key-only old image) are never passed off as SQL `NULL`: their field is `null` *and*
//! its name is listed in `after_unavailable` / `before_unavailable`. A null field not listed is
//! SQL `NULL`; a listed one means "not sent" (for `after`: the row keeps its previous value).
//! A marker in a key column is an error naming the table and column.
//!
//! # Types
//! | column | Avro |
//! |---|---|
//! | boolean | `boolean` |
//! | integers up to 32 bits (unsigned: up to 24) | `int` |
//! | 64-bit integers, 32-bit unsigned | `long` |
//! | 64-bit unsigned (`BIGINT UNSIGNED`) | `bytes`, `decimal(20, 0)` (exact; a `long` cannot hold it) |
//! | real / double | `float` / `double` (NaN and infinities as IEEE values) |
//! | numeric(p, s) | `bytes`, `decimal(p, s)`; NaN and infinities are an error naming table and column, which suggests `options.decimals: string` |
//! | numeric without precision, money, or `options.decimals: string` | `string`, the exact text (`"12.50"`, `"NaN"`) |
//! | text, varchar, enum labels, json, bit strings, time with zone, other types | `string` |
//! | bytea / blob | `bytes` |
//! | date | `int`, `date` |
//! | time | `long`, `time-micros` |
//! | timestamp (without zone) | `long`, `local-timestamp-micros` |
//! | timestamp with zone | `long`, `timestamp-micros` |
//! | uuid | `string`, `uuid` |
//! | interval | record `<prefix>.Interval { months: int, days: int, micros: long }` |
//! | arrays | `array` of `["null", T]`; multi-dimensional arrays are an error |
//! | MySQL `SET` | `array` of `["null", "string"]` |
//!
//! Columns listed in [`AvroSettings::text_columns`] (encrypted columns) are `string` whatever
//! their type.
//!
//! Dates and timestamps `infinity`/`-infinity` are written as PostgreSQL stores them: the
//! largest and smallest `int` (dates) or `long` (timestamps).
//!
//! # Framing
//! [`Framing::Registry`]: the Confluent wire format, a zero byte, the schema id (4 bytes,
//! big-endian), then the Avro binary. [`Framing::SingleObject`]: Avro single-object encoding,
//! `C3 01`, the schema's CRC-64-AVRO fingerprint (8 bytes, little-endian), then the binary.
//! In that mode the KCOP also publishes the schemas: before the first data record of its
//! schema version it emits one record per schema (key first) to the schema topic, keyed by
//! the 8 fingerprint bytes (as they appear in the data records) with the full schema JSON as
//! value. They belong to the transaction like any record (the commit record lists them), and a
//! restarted daemon publishes them again (same key, same value).
//!
//! The fingerprint covers the Parsing Canonical Form, which leaves out logical types and their
//! attributes: two schema versions that differ only there (a decimal's scale, say) share a
//! fingerprint, and the schema topic then holds both under one key. A consumer reading the
//! topic in order should decode with the latest schema published before the record; with a
//! schema registry, ids are per full schema and the question does not arise. (apache-avro for
//! Rust, up to at least 0.21, keeps logical types in its canonical form and so computes other
//! fingerprints than the specification and Java: look schemas up by the record's 8 bytes.)
//!
//! The schemas go out once per KCOP, that is once per table schema version and process: a
//! transaction the source sends again after a dropped connection does not repeat them (the
//! first attempt's records, schema records included, are already in Kafka).

mod canonical;
pub(crate) mod encode;
pub(crate) mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use canonical::{canonical_form, fingerprint};
pub use schema::{AvroSchema, DecimalMode, avro_name, is_avro_namespace};

use crate::change::{Change, Op};
use crate::json::{DeleteMode, TruncateMode};
use crate::kcop::{Kcop, KcopError, Operation};
use crate::record::ProducerRecord;
use crate::schema::TableSchema;
use crate::value::Value;
use schema::Field;

/// The settings of one `avro` output for one table.
#[derive(Debug, Clone)]
pub struct AvroSettings {
    /// Destination topic (already resolved for the table).
    pub topic: Arc<str>,
    /// Key columns (indexes); empty for no key.
    pub key: Vec<usize>,
    /// Columns of the row images (indexes), in order.
    pub columns: Vec<usize>,
    /// Delete handling.
    pub deletes: DeleteMode,
    /// Truncate handling.
    pub truncate: TruncateMode,
    /// Decimal handling.
    pub decimals: DecimalMode,
    /// Namespace prefix of the records (a valid Avro namespace), `ordo` by default.
    pub namespace: String,
    /// Columns whose values reach the format as text whatever their type (encrypted columns,
    /// see [`crate::encrypt`]): their field is a `string`.
    pub text_columns: Vec<usize>,
}

/// How records announce their schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Confluent wire format with registry ids (`None` for the key when there is no key).
    Registry {
        /// Id of the key schema.
        key_id: Option<u32>,
        /// Id of the value schema.
        value_id: u32,
    },
    /// Single-object encoding; schemas are published to `schema_topic`.
    SingleObject {
        /// Where the schemas go.
        schema_topic: Arc<str>,
    },
}

/// The schemas and encoding plan of one output for one table schema version, before the
/// framing (registry ids or fingerprints) is known.
#[derive(Debug, Clone)]
pub struct AvroFormat {
    settings: AvroSettings,
    table: String,
    key: Vec<Field>,
    row: Vec<Field>,
    key_schema: Option<AvroSchema>,
    value_schema: AvroSchema,
}

impl AvroFormat {
    /// Derive the schemas for `table`.
    ///
    /// # Errors
    /// When a column has no Avro mapping, or two columns map to the same field name.
    pub fn new(table: &TableSchema, settings: AvroSettings) -> Result<Self, KcopError> {
        let ns = schema::record_namespace(&settings.namespace, table);
        let key = schema::fields(table, &settings.key, &settings, false)?;
        let row = schema::fields(table, &settings.columns, &settings, true)?;
        let key_schema =
            (!key.is_empty()).then(|| schema::key_schema(table, &ns, &settings.namespace, &key));
        let value_schema = schema::value_schema(table, &ns, &settings.namespace, &row);
        Ok(Self {
            table: table.id.to_string(),
            settings,
            key,
            row,
            key_schema,
            value_schema,
        })
    }

    /// The key schema, `None` when the output has no key.
    pub fn key_schema(&self) -> Option<&AvroSchema> {
        self.key_schema.as_ref()
    }

    /// The value (envelope) schema.
    pub fn value_schema(&self) -> &AvroSchema {
        &self.value_schema
    }

    /// The KCOP, framing its records as `framing` says.
    pub fn into_kcop(self, framing: Framing) -> AvroKcop {
        let (key_prefix, value_prefix, schema_records) =
            framed(&framing, self.key_schema.as_ref(), &self.value_schema);
        AvroKcop {
            format: self,
            key_prefix,
            value_prefix,
            schema_records,
            announced: AtomicBool::new(false),
        }
    }
}

/// What `framing` puts before each key and each value, and the schema records to publish before
/// the first data record (none with a registry).
pub(crate) fn framed(
    framing: &Framing,
    key: Option<&AvroSchema>,
    value: &AvroSchema,
) -> (Vec<u8>, Vec<u8>, Vec<ProducerRecord>) {
    match framing {
        Framing::Registry { key_id, value_id } => (
            confluent_prefix(key_id.unwrap_or(0)),
            confluent_prefix(*value_id),
            Vec::new(),
        ),
        Framing::SingleObject { schema_topic } => (
            single_object_prefix(key),
            single_object_prefix(Some(value)),
            schema_records(schema_topic, key, value),
        ),
    }
}

/// The records that publish `key` (when there is one) and `value` to the schema topic: keyed
/// by the fingerprint's 8 bytes, the schema JSON as value.
pub(crate) fn schema_records(
    topic: &Arc<str>,
    key: Option<&AvroSchema>,
    value: &AvroSchema,
) -> Vec<ProducerRecord> {
    key.into_iter()
        .chain(Some(value))
        .map(|s| {
            let key = s.fingerprint.to_le_bytes().to_vec();
            ProducerRecord::new(topic.clone(), Some(key), Some(s.json.clone().into_bytes()))
        })
        .collect()
}

/// The Confluent wire format's prefix: a zero byte, then the schema id (big-endian).
pub(crate) fn confluent_prefix(id: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(5);
    p.push(0);
    p.extend_from_slice(&id.to_be_bytes());
    p
}

/// The single-object encoding's prefix: `C3 01`, then the fingerprint (little-endian).
pub(crate) fn single_object_prefix(schema: Option<&AvroSchema>) -> Vec<u8> {
    let mut p = Vec::with_capacity(10);
    p.extend_from_slice(&[0xc3, 0x01]);
    p.extend_from_slice(&schema.map_or(0, |s| s.fingerprint).to_le_bytes());
    p
}

/// The `avro` format KCOP for one table schema version (see the [module docs](self)).
#[derive(Debug)]
pub struct AvroKcop {
    format: AvroFormat,
    key_prefix: Vec<u8>,
    value_prefix: Vec<u8>,
    /// Schema records still to publish (single-object framing), before the first data record.
    schema_records: Vec<ProducerRecord>,
    announced: AtomicBool,
}

impl AvroKcop {
    /// The schemas and settings this KCOP encodes with.
    pub fn format(&self) -> &AvroFormat {
        &self.format
    }

    fn encode_error(&self, field: &Field, reason: String) -> KcopError {
        KcopError::Encode {
            table: self.format.table.clone(),
            column: field.column_name.clone(),
            reason,
        }
    }

    fn key_bytes(&self, change: &Change) -> Result<Option<Vec<u8>>, KcopError> {
        if self.format.key.is_empty() {
            return Ok(None);
        }
        let Some(row) = change.after.as_ref().or(change.before.as_ref()) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(16 + 8 * self.format.key.len());
        out.extend_from_slice(&self.key_prefix);
        for field in &self.format.key {
            let v = row.get(field.column).unwrap_or(&Value::NotInImage);
            self.key_field(&mut out, field, v)?;
        }
        Ok(Some(out))
    }

    fn key_field(&self, out: &mut Vec<u8>, field: &Field, v: &Value) -> Result<(), KcopError> {
        key_field(out, field, v).map_err(|r| self.encode_error(field, r))
    }

    fn image(&self, out: &mut Vec<u8>, row: Option<&Vec<Value>>) -> Result<(), KcopError> {
        let Some(row) = row else {
            out.push(0);
            return Ok(());
        };
        out.push(2);
        for field in &self.format.row {
            row_field(out, field, row.get(field.column))
                .map_err(|r| self.encode_error(field, r))?;
        }
        Ok(())
    }

    fn unavailable(&self, out: &mut Vec<u8>, row: Option<&Vec<Value>>) {
        let missing = |f: &&Field| {
            row.and_then(|r| r.get(f.column))
                .is_some_and(Value::is_marker)
        };
        let count = self.format.row.iter().filter(missing).count();
        if count > 0 {
            encode::long(out, count as i64);
            for f in self.format.row.iter().filter(missing) {
                encode::bytes(out, f.name.as_bytes());
            }
        }
        out.push(0);
    }

    fn value_bytes(&self, op: &Operation<'_>) -> Result<Vec<u8>, KcopError> {
        let change = op.change;
        let mut out = Vec::with_capacity(64 + 24 * self.format.row.len());
        out.extend_from_slice(&self.value_prefix);
        self.image(&mut out, change.before.as_ref())?;
        self.image(&mut out, change.after.as_ref())?;
        encode::bytes(&mut out, change.op.code().as_bytes());
        encode::long(&mut out, op.txn.commit_time.0);
        encode::bytes(&mut out, op.txn.id.as_bytes());
        encode::long(&mut out, change.op_index as i64);
        self.unavailable(&mut out, change.before.as_ref());
        self.unavailable(&mut out, change.after.as_ref());
        Ok(out)
    }

    fn announce(&self, out: &mut Vec<ProducerRecord>) {
        if self.schema_records.is_empty() || self.announced.load(Ordering::Relaxed) {
            return;
        }
        if !self.announced.swap(true, Ordering::Relaxed) {
            out.extend(self.schema_records.iter().cloned());
        }
    }
}

/// Append a key field's value (the reason of an error is the caller's to wrap): the markers,
/// and `NULL` in a `NOT NULL` column, are errors.
pub(crate) fn key_field(out: &mut Vec<u8>, field: &Field, v: &Value) -> Result<(), String> {
    match v {
        Value::Unchanged | Value::NotInImage => Err(
            "the source did not send this key column's value; key on columns the source always sends (the replica identity)".into(),
        ),
        Value::Null if field.nullable => {
            out.push(0);
            Ok(())
        }
        Value::Null => Err("NULL in a key column the schema says is NOT NULL".into()),
        v => {
            if field.nullable {
                out.push(2);
            }
            encode::value(out, &field.plan, v)
        }
    }
}

/// Append a row field (a union with `null`, null first): null for `NULL`, for the markers and
/// for a missing value.
pub(crate) fn row_field(out: &mut Vec<u8>, field: &Field, v: Option<&Value>) -> Result<(), String> {
    match v {
        None | Some(Value::Null | Value::Unchanged | Value::NotInImage) => {
            out.push(0);
            Ok(())
        }
        Some(v) => {
            out.push(2);
            encode::value(out, &field.plan, v)
        }
    }
}

impl Kcop for AvroKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let change = op.change;
        let s = &self.format.settings;
        let (key, value) = match change.op {
            Op::Truncate if s.truncate == TruncateMode::Skip => return Ok(()),
            Op::Truncate => (None, Some(self.value_bytes(op)?)),
            Op::Delete if s.deletes == DeleteMode::Tombstone => (self.key_bytes(change)?, None),
            _ => (self.key_bytes(change)?, Some(self.value_bytes(op)?)),
        };
        self.announce(out);
        out.push(ProducerRecord::new(s.topic.clone(), key, value));
        Ok(())
    }
}
