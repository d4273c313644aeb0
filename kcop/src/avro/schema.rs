//! Avro schemas derived from a table schema, and the per-column plans the encoder follows.

use std::collections::HashSet;

use serde_json::{Value as Json, json};

use super::AvroSettings;
use super::canonical::{canonical_form, fingerprint};
use crate::kcop::KcopError;
use crate::schema::{Column, ColumnKind, TableSchema};

/// How exact decimals are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalMode {
    /// Avro `decimal` on `bytes` (two's-complement unscaled value) when the column declares a
    /// precision; a `string` otherwise (unbounded `numeric`, `money`).
    #[default]
    Bytes,
    /// Every decimal column as a `string` with the exact text (`"12.50"`, `"NaN"`).
    String,
}

/// One schema as published: the JSON text, its Parsing Canonical Form and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroSchema {
    /// The full schema JSON, with logical types and docs (what a registry or consumer needs).
    pub json: String,
    /// The Parsing Canonical Form.
    pub canonical: String,
    /// CRC-64-AVRO fingerprint of the canonical form.
    pub fingerprint: u64,
}

impl AvroSchema {
    /// The schema `schema`, with its canonical form and fingerprint.
    pub(crate) fn new(schema: &Json) -> Self {
        let canonical = canonical_form(schema);
        Self {
            json: schema.to_string(),
            fingerprint: fingerprint(canonical.as_bytes()),
            canonical,
        }
    }
}

/// How one value is written: the Avro type chosen for its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// `decimal` on `bytes`; values are rescaled to `scale`.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// Unsigned 64-bit integers: `decimal(20, 0)` on `bytes`.
    BigUnsigned,
    Date,
    TimeMicros,
    TimestampMicros,
    LocalTimestampMicros,
    Uuid,
    /// The record `<namespace>.Interval { months: int, days: int, micros: long }`.
    Interval,
    /// An array of nullable items.
    Array(Box<Plan>),
}

/// One field of a key or row record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// Index of the column in the table schema.
    pub(crate) column: usize,
    /// Avro field name.
    pub(crate) name: String,
    /// The column's name in the table (for error messages).
    pub(crate) column_name: String,
    /// How values are written.
    pub(crate) plan: Plan,
    /// Whether the field is a union with `null` (null first).
    pub(crate) nullable: bool,
}

/// The Avro namespace of a table's records: `<prefix>.<namespace>.<table>`, each part made a
/// valid Avro name.
pub(crate) fn record_namespace(prefix: &str, table: &TableSchema) -> String {
    format!(
        "{}.{}.{}",
        prefix,
        avro_name(&table.id.namespace),
        avro_name(&table.id.name)
    )
}

/// `text` as a valid Avro name: characters outside `[A-Za-z0-9_]` become `_`, and a leading
/// digit (or an empty name) gets a `_` in front.
pub fn avro_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Whether `text` is a valid Avro namespace (dot-separated names).
pub fn is_avro_namespace(text: &str) -> bool {
    text.split('.')
        .all(|part| avro_name(part) == part && !part.is_empty())
}

/// The fields for `columns` of `table`, with names checked for collisions.
pub(crate) fn fields(
    table: &TableSchema,
    columns: &[usize],
    settings: &AvroSettings,
    all_nullable: bool,
) -> Result<Vec<Field>, KcopError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(columns.len());
    for &i in columns {
        let col = table.columns.get(i).ok_or_else(|| KcopError::Config {
            table: table.id.to_string(),
            reason: format!("column index {i} is out of range (a bug)"),
        })?;
        let name = avro_name(&col.name);
        if !seen.insert(name.clone()) {
            return Err(KcopError::Config {
                table: table.id.to_string(),
                reason: format!(
                    "two columns map to the Avro field name `{name}` (`{}` and another); rename one, or leave one out with `columns`",
                    col.name
                ),
            });
        }
        let plan = if settings.text_columns.contains(&i) {
            Plan::String
        } else {
            plan_for(&col.kind, settings.decimals).map_err(|reason| KcopError::Encode {
                table: table.id.to_string(),
                column: col.name.clone(),
                reason,
            })?
        };
        out.push(Field {
            column: i,
            name,
            column_name: col.name.clone(),
            plan,
            nullable: all_nullable || col.nullable,
        });
    }
    Ok(out)
}

fn plan_for(kind: &ColumnKind, decimals: DecimalMode) -> Result<Plan, String> {
    Ok(match kind {
        ColumnKind::Bool => Plan::Boolean,
        ColumnKind::Int(bits) if *bits <= 32 => Plan::Int,
        ColumnKind::Int(_) => Plan::Long,
        ColumnKind::UInt(bits) if *bits < 32 => Plan::Int,
        ColumnKind::UInt(bits) if *bits < 64 => Plan::Long,
        ColumnKind::UInt(_) => Plan::BigUnsigned,
        ColumnKind::Float32 => Plan::Float,
        ColumnKind::Float64 => Plan::Double,
        ColumnKind::Decimal { precision, scale } => decimal_plan(*precision, *scale, decimals),
        ColumnKind::Bytes => Plan::Bytes,
        ColumnKind::Date => Plan::Date,
        ColumnKind::Time => Plan::TimeMicros,
        ColumnKind::Timestamp => Plan::LocalTimestampMicros,
        ColumnKind::TimestampTz => Plan::TimestampMicros,
        ColumnKind::Interval => Plan::Interval,
        ColumnKind::Uuid => Plan::Uuid,
        ColumnKind::Set(_) => Plan::Array(Box::new(Plan::String)),
        ColumnKind::Array(inner) if matches!(**inner, ColumnKind::Array(_)) => {
            return Err("nested array types have no Avro mapping in ordo".into());
        }
        ColumnKind::Array(inner) => Plan::Array(Box::new(plan_for(inner, decimals)?)),
        ColumnKind::Text
        | ColumnKind::TimeTz
        | ColumnKind::Json
        | ColumnKind::Enum(_)
        | ColumnKind::Bits
        | ColumnKind::Other => Plan::String,
    })
}

fn decimal_plan(precision: Option<u32>, scale: Option<u32>, mode: DecimalMode) -> Plan {
    let scale = scale.unwrap_or(0);
    match precision {
        Some(precision) if mode == DecimalMode::Bytes && precision > 0 && scale <= precision => {
            Plan::Decimal { precision, scale }
        }
        _ => Plan::String,
    }
}

/// Tracks which named types a schema document has defined, so later uses refer by name.
#[derive(Debug)]
struct Names {
    interval: String,
    interval_defined: bool,
}

fn type_json(plan: &Plan, names: &mut Names) -> Json {
    match plan {
        Plan::Boolean => json!("boolean"),
        Plan::Int => json!("int"),
        Plan::Long => json!("long"),
        Plan::Float => json!("float"),
        Plan::Double => json!("double"),
        Plan::Bytes => json!("bytes"),
        Plan::String => json!("string"),
        Plan::Decimal { precision, scale } => decimal_json(*precision, *scale),
        Plan::BigUnsigned => decimal_json(20, 0),
        Plan::Date => logical("int", "date"),
        Plan::TimeMicros => logical("long", "time-micros"),
        Plan::TimestampMicros => logical("long", "timestamp-micros"),
        Plan::LocalTimestampMicros => logical("long", "local-timestamp-micros"),
        Plan::Uuid => logical("string", "uuid"),
        Plan::Interval => interval_json(names),
        Plan::Array(items) => {
            json!({"type": "array", "items": ["null", type_json(items, names)]})
        }
    }
}

fn logical(ty: &str, logical: &str) -> Json {
    json!({"type": ty, "logicalType": logical})
}

fn decimal_json(precision: u32, scale: u32) -> Json {
    json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
}

fn interval_json(names: &mut Names) -> Json {
    if names.interval_defined {
        return json!(names.interval);
    }
    names.interval_defined = true;
    json!({
        "type": "record",
        "name": names.interval,
        "doc": "an interval: months, days and microseconds kept apart",
        "fields": [
            {"name": "months", "type": "int"},
            {"name": "days", "type": "int"},
            {"name": "micros", "type": "long"}
        ]
    })
}

fn field_json(field: &Field, col: &Column, names: &mut Names) -> Json {
    let ty = type_json(&field.plan, names);
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), json!(field.name));
    if field.nullable {
        obj.insert("type".into(), json!(["null", ty]));
        obj.insert("default".into(), Json::Null);
    } else {
        obj.insert("type".into(), ty);
    }
    if field.name != col.name {
        obj.insert("ordo.column".into(), json!(col.name));
    }
    obj.insert("ordo.type".into(), json!(col.type_name));
    Json::Object(obj)
}

fn record_json(
    table: &TableSchema,
    name: &str,
    ns: Option<&str>,
    doc: &str,
    fields: &[Field],
    names: &mut Names,
) -> Json {
    let fields: Vec<Json> = fields
        .iter()
        .filter_map(|f| Some(field_json(f, table.columns.get(f.column)?, names)))
        .collect();
    let mut obj = serde_json::Map::new();
    obj.insert("type".into(), json!("record"));
    obj.insert("name".into(), json!(name));
    if let Some(ns) = ns {
        obj.insert("namespace".into(), json!(ns));
    }
    obj.insert("doc".into(), json!(doc));
    obj.insert("fields".into(), Json::Array(fields));
    Json::Object(obj)
}

/// The fields of `row` as JSON, for a format that builds its own record around them (named
/// types such as `<prefix>.Interval` are defined at their first use in `row`).
pub(crate) fn fields_json(table: &TableSchema, prefix: &str, row: &[Field]) -> Vec<Json> {
    let mut names = names(prefix);
    row.iter()
        .filter_map(|f| Some(field_json(f, table.columns.get(f.column)?, &mut names)))
        .collect()
}

/// The key schema: record `<ns>.Key` with the key columns, nullable only where the column is.
pub(crate) fn key_schema(table: &TableSchema, ns: &str, prefix: &str, key: &[Field]) -> AvroSchema {
    let mut names = names(prefix);
    let record = record_json(
        table,
        "Key",
        Some(ns),
        "the row's key columns",
        key,
        &mut names,
    );
    AvroSchema::new(&record)
}

/// The value schema: record `<ns>.Envelope` (see the module docs) around record `<ns>.Value`.
pub(crate) fn value_schema(
    table: &TableSchema,
    ns: &str,
    prefix: &str,
    row: &[Field],
) -> AvroSchema {
    let mut names = names(prefix);
    let value = record_json(
        table,
        "Value",
        None,
        "one row image; a null field is SQL NULL unless the envelope lists it as unavailable",
        row,
        &mut names,
    );
    let names_list = json!({"type": "array", "items": "string"});
    let envelope = json!({
        "type": "record",
        "name": "Envelope",
        "namespace": ns,
        "doc": format!("a change of {}", table.id),
        "fields": [
            {"name": "before", "type": ["null", value], "default": null,
             "doc": "the row before the change (updates when the source sends it, deletes)"},
            {"name": "after", "type": ["null", "Value"], "default": null,
             "doc": "the row after the change (inserts, updates, snapshot reads)"},
            {"name": "op", "type": "string", "doc": "c insert, u update, d delete, r snapshot read, t truncate"},
            {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"},
             "doc": "commit time of the source transaction"},
            {"name": "txn", "type": "string", "doc": "source transaction id"},
            {"name": "op_index", "type": "long", "doc": "position of the change in its transaction, from 0"},
            {"name": "before_unavailable", "type": names_list.clone(),
             "doc": "fields of before whose value the source did not send (not in a key-only old image, or unchanged TOAST): their null means unknown"},
            {"name": "after_unavailable", "type": names_list,
             "doc": "fields of after whose value the source did not send (unchanged TOAST): the row keeps its previous value"}
        ]
    });
    AvroSchema::new(&envelope)
}

fn names(prefix: &str) -> Names {
    Names {
        interval: format!("{prefix}.Interval"),
        interval_defined: false,
    }
}
