//! `audit-rows` with `encoding: avro`: the same records as the JSON encoding, with Avro values
//! and keys framed like the `avro` format's (see the [parent module](super) for the layout).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value as Json, json};

use super::{AUDIT_COLUMNS, Record, records};
use crate::avro::encode;
use crate::avro::schema::{self, Field};
use crate::avro::{AvroSchema, AvroSettings, Framing, framed, key_field, row_field};
use crate::csv_audit::audit_time;
use crate::kcop::{Kcop, KcopError, Operation};
use crate::record::ProducerRecord;
use crate::schema::TableSchema;
use crate::value::Value;

/// The field after the image's columns that lists the columns the source did not send.
pub const UNAVAILABLE_FIELD: &str = "A_UNAVAILABLE";

/// The schemas and encoding plan of one `audit-rows` output in Avro for one table schema
/// version, before the framing (registry ids or fingerprints) is known.
#[derive(Debug, Clone)]
pub struct AuditAvroFormat {
    settings: AvroSettings,
    table: String,
    key: Vec<Field>,
    row: Vec<Field>,
    key_schema: Option<AvroSchema>,
    value_schema: AvroSchema,
}

impl AuditAvroFormat {
    /// Derive the schemas for `table`. [`AvroSettings::deletes`] and
    /// [`AvroSettings::truncate`] mean what they mean for the JSON encoding.
    ///
    /// # Errors
    /// When a column has no Avro mapping, two columns map to the same field name, or a
    /// column's field name is an audit column's.
    pub fn new(table: &TableSchema, settings: AvroSettings) -> Result<Self, KcopError> {
        let ns = schema::record_namespace(&settings.namespace, table);
        let key = schema::fields(table, &settings.key, &settings, false)?;
        let row = schema::fields(table, &settings.columns, &settings, true)?;
        let reserved =
            |f: &&Field| AUDIT_COLUMNS.contains(&f.name.as_str()) || f.name == UNAVAILABLE_FIELD;
        if let Some(f) = row.iter().find(reserved) {
            return Err(KcopError::Config {
                table: table.id.to_string(),
                reason: format!(
                    "column `{}` maps to the Avro field `{}`, the name of an audit field ({}, {UNAVAILABLE_FIELD}); leave it out with `columns`",
                    f.column_name,
                    f.name,
                    AUDIT_COLUMNS.join(", ")
                ),
            });
        }
        let key_schema =
            (!key.is_empty()).then(|| schema::key_schema(table, &ns, &settings.namespace, &key));
        let value_schema = value_schema(table, &ns, &settings.namespace, &row);
        Ok(Self {
            table: table.id.to_string(),
            settings,
            key,
            row,
            key_schema,
            value_schema,
        })
    }

    /// The key schema (the `avro` format's), `None` when the output has no key.
    pub fn key_schema(&self) -> Option<&AvroSchema> {
        self.key_schema.as_ref()
    }

    /// The value schema: record `<namespace>.AuditRow`.
    pub fn value_schema(&self) -> &AvroSchema {
        &self.value_schema
    }

    /// The KCOP, framing its records as `framing` says.
    pub fn into_kcop(self, framing: Framing) -> AuditAvroKcop {
        let (key_prefix, value_prefix, schemas) =
            framed(&framing, self.key_schema.as_ref(), &self.value_schema);
        AuditAvroKcop {
            format: self,
            key_prefix,
            value_prefix,
            schema_records: schemas,
            announced: AtomicBool::new(false),
        }
    }
}

/// The value schema: the audit fields, the image's fields (all nullable), then the list of
/// fields the source did not send.
fn value_schema(table: &TableSchema, ns: &str, prefix: &str, row: &[Field]) -> AvroSchema {
    let mut fields: Vec<Json> = vec![
        json!({"name": "A_ENTTYP", "type": "string",
               "doc": "journal entry type: PT insert, RR snapshot read, UB before image of an update, UP after image of an update, DL delete, CR truncate"}),
        json!({"name": "A_TIMSTAMP", "type": "string",
               "doc": "commit time of the source transaction, UTC, YYYY-MM-DD HH:MM:SS.ffffff"}),
        json!({"name": "A_CCID", "type": "string", "doc": "source transaction id"}),
        json!({"name": "A_USER", "type": ["null", "string"], "default": null,
               "doc": "who made the change; always null (the sources do not say)"}),
    ];
    fields.extend(schema::fields_json(table, prefix, row));
    fields.push(json!({"name": UNAVAILABLE_FIELD, "type": {"type": "array", "items": "string"},
        "doc": "fields of this image whose value the source did not send (not in a key-only old image, or unchanged TOAST): their null means unknown, not SQL NULL"}));
    let record = json!({
        "type": "record",
        "name": "AuditRow",
        "namespace": ns,
        "doc": format!("one row image of a change of {}, with IIDR's audit columns", table.id),
        "fields": fields,
    });
    AvroSchema::new(&record)
}

/// The `audit-rows` KCOP in Avro for one table schema version (see the
/// [parent module](super)).
#[derive(Debug)]
pub struct AuditAvroKcop {
    format: AuditAvroFormat,
    key_prefix: Vec<u8>,
    value_prefix: Vec<u8>,
    /// Schema records still to publish (single-object framing), before the first data record.
    schema_records: Vec<ProducerRecord>,
    announced: AtomicBool,
}

impl AuditAvroKcop {
    /// The schemas and settings this KCOP encodes with.
    pub fn format(&self) -> &AuditAvroFormat {
        &self.format
    }

    fn encode_error(&self, field: &Field, reason: String) -> KcopError {
        KcopError::Encode {
            table: self.format.table.clone(),
            column: field.column_name.clone(),
            reason,
        }
    }

    fn key(&self, row: Option<&[Value]>) -> Result<Option<Vec<u8>>, KcopError> {
        let Some(row) = row.filter(|_| !self.format.key.is_empty()) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(16 + 8 * self.format.key.len());
        out.extend_from_slice(&self.key_prefix);
        for field in &self.format.key {
            let v = row.get(field.column).unwrap_or(&Value::NotInImage);
            key_field(&mut out, field, v).map_err(|r| self.encode_error(field, r))?;
        }
        Ok(Some(out))
    }

    fn value(
        &self,
        op: &Operation<'_>,
        code: &str,
        row: Option<&[Value]>,
    ) -> Result<Vec<u8>, KcopError> {
        let mut out = Vec::with_capacity(64 + 24 * self.format.row.len());
        out.extend_from_slice(&self.value_prefix);
        encode::bytes(&mut out, code.as_bytes());
        encode::bytes(&mut out, audit_time(op.txn.commit_time).as_bytes());
        encode::bytes(&mut out, op.txn.id.as_bytes());
        out.push(0); // A_USER: null
        for field in &self.format.row {
            let v = row.and_then(|r| r.get(field.column));
            row_field(&mut out, field, v).map_err(|r| self.encode_error(field, r))?;
        }
        let missing = |f: &&Field| {
            row.and_then(|r| r.get(f.column))
                .is_some_and(Value::is_marker)
        };
        let count = self.format.row.iter().filter(missing).count();
        if count > 0 {
            encode::long(&mut out, count as i64);
            for f in self.format.row.iter().filter(missing) {
                encode::bytes(&mut out, f.name.as_bytes());
            }
        }
        out.push(0);
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

    fn topic(&self) -> Arc<str> {
        self.format.settings.topic.clone()
    }
}

impl Kcop for AuditAvroKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let s = &self.format.settings;
        let mut made = Vec::with_capacity(2);
        records(op.change, s.deletes, s.truncate, |record| {
            made.push(match record {
                Record::Image { code, row } => ProducerRecord::new(
                    self.topic(),
                    self.key(row)?,
                    Some(self.value(op, code, row)?),
                ),
                Record::Tombstone { row } => {
                    ProducerRecord::new(self.topic(), self.key(row)?, None)
                }
            });
            Ok(())
        })?;
        if !made.is_empty() {
            self.announce(out);
        }
        out.append(&mut made);
        Ok(())
    }
}
