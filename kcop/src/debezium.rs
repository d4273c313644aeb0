//! The `debezium` format: Debezium's change-event envelope, as Kafka Connect's `JsonConverter`
//! writes it, so consumers written for Debezium read ordo's topics unchanged.
//!
//! # Key
//! With `schemas` (the default, `schemas.enable=true`):
//! `{"schema":{"type":"struct","fields":[..],"optional":false,"name":"<prefix>.Key"},"payload":{"id":1}}`,
//! without: `{"id":1}`. The key holds the output's key columns (the primary key by default);
//! outputs with `key: none` and truncate events have no key.
//!
//! # Value
//! `{"schema":{..},"payload":{"before":..,"after":..,"source":{..},"op":"c","ts_ms":..,"transaction":{..}}}`
//! (only the payload object without `schemas`). `<prefix>` is `<source name>.<namespace>.<table>`
//! (the source name is the PostgreSQL slot or `server-<id>` for MariaDB/MySQL); the before and
//! after structs are named `<prefix>.Value`, the envelope `<prefix>.Envelope`.
//! - `before`: the old image when the source sent one (updates with a key-only or full replica
//!   identity, deletes), else `null`. Columns a key-only image does not hold are left out.
//! - `after`: the new image for `c`, `u`, `r`; `null` for `d` and `t`.
//! - `source`: PostgreSQL: `version, connector, name, ts_ms, snapshot, db, sequence, schema,
//!   table, txId, lsn, xmin`; MariaDB/MySQL: `version, connector, name, ts_ms, snapshot, db,
//!   sequence, table, server_id, gtid, file, pos, row, thread, query`. `ts_ms` is the commit
//!   time; `snapshot` is `"true"` for snapshot reads, else `"false"` (never `"last"`); `lsn` is
//!   the transaction's commit LSN (ordo does not track each change's own LSN), `sequence` is
//!   `[null,"<lsn>"]`; `txId` is the xid (`null` for snapshot batches); `xmin`, `thread`,
//!   `query` are `null`, `row` is 0; `file`/`pos` are the binlog coordinates ordo knows for the
//!   transaction's start (`TxnBegin::position`); `gtid` is the transaction's GTID
//!   (`null` for snapshot reads) and `server_id` the server id in a MariaDB GTID (else 0).
//! - `op`: `c`, `u`, `d`, `r` or `t`. `ts_ms`: the commit time too (Debezium puts its own
//!   processing time here; ordo's output must not depend on the wall clock).
//! - `transaction`: `{"id":"<ordo.txn>","total_order":<op index + 1>,"data_collection_order":<n>}`
//!   where `n` counts this table's changes in the transaction from 1. The count lives in the
//!   KCOP, which the daemon builds per table and schema version: a schema change in the middle
//!   of a transaction starts it again at 1.
//!
//! An update that changes the key is one `u` event keyed by the new key, with the old key in
//! `before` (Debezium emits a delete, a tombstone and a create instead).
//!
//! Deletes: the delete event, then (with `deletes: tombstone`, Debezium's default
//! `tombstones.on.delete=true`) a tombstone with the same key. Truncates: an event with
//! `op: "t"`, no key and null images (or nothing with `truncate: skip`).
//!
//! # Values
//! As Debezium's defaults (`time.precision.mode=adaptive`, `binary.handling.mode=bytes`):
//! booleans; 8/16-bit integers `int16`, 24/32-bit `int32`, 64-bit `int64` (unsigned widths go
//! one size up; an unsigned 64-bit value above `i64::MAX` is written as its true value); floats `float32`/`float64`; decimals per [`DecimalHandling`]; text, enums
//! (`io.debezium.data.Enum`), sets (`io.debezium.data.EnumSet`, comma-separated), JSON
//! (`io.debezium.data.Json`, the document as a string), UUID (`io.debezium.data.Uuid`) as
//! strings; binary as base64; `bit(1)` as boolean, longer bit strings as base64 of the
//! little-endian bytes (`io.debezium.data.Bits`); DATE as days since the epoch
//! (`io.debezium.time.Date`); TIME as `io.debezium.time.Time` (ms) for precision 0-3, else
//! `io.debezium.time.MicroTime` (µs); TIMESTAMP/DATETIME as `io.debezium.time.Timestamp` (ms)
//! for precision 0-3, else `io.debezium.time.MicroTimestamp` (µs); timestamptz as
//! `io.debezium.time.ZonedTimestamp` (ISO text in UTC, `Z`); timetz as
//! `io.debezium.time.ZonedTime`; intervals as `io.debezium.time.MicroDuration` (a month is
//! 30.4375 days); arrays as arrays. An unchanged TOAST value is `__debezium_unavailable_value`
//! for text-like columns (base64 of those bytes for binary ones) and `null` otherwise.

use std::sync::{Arc, Mutex};

use crate::change::{Change, Op};
use crate::json::{DeleteMode, JsonWriter, TruncateMode, base64_string, bits_le, unscaled_bytes};
use crate::kcop::{Kcop, KcopError, Operation, SourceInfo};
use crate::position::Position;
use crate::record::ProducerRecord;
use crate::schema::{ColumnKind, TableSchema};
use crate::value::{Decimal, Timestamp, Value, format_uuid};

/// Debezium's placeholder for a value the source did not send (unchanged TOAST).
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// How exact decimals are written (Debezium's `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// `org.apache.kafka.connect.data.Decimal`: base64 of the big-endian two's-complement
    /// unscaled value, `scale` in the schema parameters; columns without a declared scale use
    /// `io.debezium.data.VariableScaleDecimal` (`{"scale":..,"value":..}`). NaN and infinities
    /// cannot be written this way.
    #[default]
    Precise,
    /// The decimal's text, e.g. `"12.50"`.
    String,
    /// A JSON number (`float64`), which may lose digits.
    Double,
}

/// Settings of a [`DebeziumKcop`].
#[derive(Debug, Clone)]
pub struct DebeziumConfig {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Key columns (indexes); empty for no key.
    pub key: Vec<usize>,
    /// Columns in the images (indexes).
    pub columns: Vec<usize>,
    /// Delete handling: the delete event alone, or followed by a tombstone.
    pub deletes: DeleteMode,
    /// Truncate handling.
    pub truncate: TruncateMode,
    /// Include the `schema` parts (JsonConverter's `schemas.enable`).
    pub schemas: bool,
    /// Decimal representation.
    pub decimals: DecimalHandling,
    /// `source.version`.
    pub version: Arc<str>,
}

/// How one column is represented (its Kafka Connect type and semantic name).
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Plain(&'static str),
    Named(&'static str, &'static str),
    Enum(&'static str, String),
    Decimal(u32, Option<u32>),
    VarDecimal,
    Bits(usize),
    Array(Box<Field>),
}

/// The `debezium` KCOP for one table (see the module docs for the exact layout).
#[derive(Debug)]
pub struct DebeziumKcop {
    config: DebeziumConfig,
    table: crate::schema::TableId,
    names: Vec<String>,
    fields: Vec<Field>,
    nullable: Vec<bool>,
    /// Per-transaction count of this table's changes, for `data_collection_order`.
    counter: Mutex<Counter>,
}

#[derive(Debug, Default)]
struct Counter {
    txn: Option<Arc<str>>,
    last_op: u64,
    count: u64,
}

impl DebeziumKcop {
    /// The KCOP for `schema`.
    ///
    /// # Errors
    /// When a key or image column index is out of range.
    pub fn new(config: DebeziumConfig, schema: &TableSchema) -> Result<Self, KcopError> {
        if let Some(&i) = config
            .key
            .iter()
            .chain(&config.columns)
            .find(|&&i| i >= schema.columns.len())
        {
            return Err(KcopError::Config {
                table: schema.id.to_string(),
                reason: format!(
                    "column index {i} is out of range; the table has {} columns",
                    schema.columns.len()
                ),
            });
        }
        let fields = schema
            .columns
            .iter()
            .map(|c| field_for(&c.kind, &c.type_name, config.decimals))
            .collect();
        Ok(Self {
            names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            nullable: schema.columns.iter().map(|c| c.nullable).collect(),
            table: schema.id.clone(),
            fields,
            config,
            counter: Mutex::new(Counter::default()),
        })
    }

    /// The next `data_collection_order` for this table in `txn`. A replayed transaction (op
    /// index not increasing) starts again from 1, so replays yield the same records.
    fn next_order(&self, txn: &Arc<str>, op_index: u64) -> u64 {
        let mut c = self
            .counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replay = c.count > 0 && op_index <= c.last_op;
        if c.txn.as_ref() != Some(txn) || replay {
            c.txn = Some(txn.clone());
            c.count = 0;
        }
        c.last_op = op_index;
        c.count += 1;
        c.count
    }

    fn prefix(&self, source: &SourceInfo) -> String {
        format!(
            "{}.{}.{}",
            source.name, self.table.namespace, self.table.name
        )
    }
}

fn precision(type_name: &str) -> Option<u32> {
    let (_, rest) = type_name.split_once('(')?;
    rest.split_once(')')?.0.trim().parse().ok()
}

fn int_field(bits: u8) -> Field {
    Field::Plain(match bits {
        0..=16 => "int16",
        17..=32 => "int32",
        _ => "int64",
    })
}

fn field_for(kind: &ColumnKind, type_name: &str, decimals: DecimalHandling) -> Field {
    let fine = |default: u32| precision(type_name).unwrap_or(default) > 3;
    // MySQL DATETIME defaults to whole seconds, PostgreSQL timestamps to microseconds.
    let ts_default = if type_name.starts_with("datetime") {
        0
    } else {
        6
    };
    match kind {
        ColumnKind::Bool => Field::Plain("boolean"),
        ColumnKind::Int(w) => int_field(*w),
        // Unsigned values need one size up: `int unsigned` does not fit an int32.
        ColumnKind::UInt(w) => int_field(w.saturating_add(8)),
        ColumnKind::Float32 => Field::Plain("float"),
        ColumnKind::Float64 => Field::Plain("double"),
        ColumnKind::Decimal { precision, scale } => match (decimals, scale) {
            (DecimalHandling::Precise, Some(s)) => Field::Decimal(*s, *precision),
            (DecimalHandling::Precise, None) => Field::VarDecimal,
            (DecimalHandling::String, _) => Field::Plain("string"),
            (DecimalHandling::Double, _) => Field::Plain("double"),
        },
        ColumnKind::Text | ColumnKind::Other => Field::Plain("string"),
        ColumnKind::Bytes => Field::Plain("bytes"),
        ColumnKind::Date => Field::Named("int32", "io.debezium.time.Date"),
        ColumnKind::Time if fine(6) => Field::Named("int64", "io.debezium.time.MicroTime"),
        ColumnKind::Time => Field::Named("int32", "io.debezium.time.Time"),
        ColumnKind::TimeTz => Field::Named("string", "io.debezium.time.ZonedTime"),
        ColumnKind::Timestamp if fine(ts_default) => {
            Field::Named("int64", "io.debezium.time.MicroTimestamp")
        }
        ColumnKind::Timestamp => Field::Named("int64", "io.debezium.time.Timestamp"),
        ColumnKind::TimestampTz => Field::Named("string", "io.debezium.time.ZonedTimestamp"),
        ColumnKind::Interval => Field::Named("int64", "io.debezium.time.MicroDuration"),
        ColumnKind::Json => Field::Named("string", "io.debezium.data.Json"),
        ColumnKind::Uuid => Field::Named("string", "io.debezium.data.Uuid"),
        ColumnKind::Enum(labels) => Field::Enum("io.debezium.data.Enum", labels.join(",")),
        ColumnKind::Set(labels) => Field::Enum("io.debezium.data.EnumSet", labels.join(",")),
        ColumnKind::Bits if precision(type_name) == Some(1) => Field::Plain("boolean"),
        ColumnKind::Bits => Field::Bits(precision(type_name).unwrap_or(i32::MAX as u32) as usize),
        ColumnKind::Array(inner) => Field::Array(Box::new(field_for(inner, "", decimals))),
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas (Kafka Connect's JSON schema form).

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn text(out: &mut Vec<u8>, s: &str) {
    JsonWriter::string(out, s);
}

fn optional_flag(out: &mut Vec<u8>, optional: bool) {
    push(
        out,
        if optional {
            ",\"optional\":true"
        } else {
            ",\"optional\":false"
        },
    );
}

/// `{"type":..,"optional":..,["name":..,"version":1,]["parameters":{..},]["field":..]}`.
fn field_schema(out: &mut Vec<u8>, f: &Field, optional: bool, name: Option<&str>) {
    let (ty, semantic) = match f {
        Field::Plain(t) => (*t, None),
        Field::Named(t, n) => (*t, Some(*n)),
        Field::Enum(n, _) => ("string", Some(*n)),
        Field::Decimal(..) => ("bytes", Some("org.apache.kafka.connect.data.Decimal")),
        Field::Bits(_) => ("bytes", Some("io.debezium.data.Bits")),
        Field::VarDecimal => return var_decimal_schema(out, optional, name),
        Field::Array(inner) => {
            push(out, "{\"type\":\"array\",\"items\":");
            field_schema(out, inner, true, None);
            optional_flag(out, optional);
            return end_field(out, name);
        }
    };
    push(out, "{\"type\":");
    text(out, ty);
    optional_flag(out, optional);
    if let Some(n) = semantic {
        push(out, ",\"name\":");
        text(out, n);
        push(out, ",\"version\":1");
    }
    parameters(out, f);
    end_field(out, name);
}

fn parameters(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Decimal(scale, precision) => {
            push(out, &format!(",\"parameters\":{{\"scale\":\"{scale}\""));
            if let Some(p) = precision {
                push(out, &format!(",\"connect.decimal.precision\":\"{p}\""));
            }
            push(out, "}");
        }
        Field::Enum(_, allowed) => {
            push(out, ",\"parameters\":{\"allowed\":");
            text(out, allowed);
            push(out, "}");
        }
        Field::Bits(len) => push(out, &format!(",\"parameters\":{{\"length\":\"{len}\"}}")),
        _ => {}
    }
}

fn var_decimal_schema(out: &mut Vec<u8>, optional: bool, name: Option<&str>) {
    push(
        out,
        "{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"scale\"},{\"type\":\"bytes\",\"optional\":false,\"field\":\"value\"}]",
    );
    optional_flag(out, optional);
    push(
        out,
        ",\"name\":\"io.debezium.data.VariableScaleDecimal\",\"version\":1,\"doc\":\"Variable scaled decimal\"",
    );
    end_field(out, name);
}

fn end_field(out: &mut Vec<u8>, name: Option<&str>) {
    if let Some(n) = name {
        push(out, ",\"field\":");
        text(out, n);
    }
    push(out, "}");
}

/// A struct schema of the columns `cols`.
fn struct_schema(
    out: &mut Vec<u8>,
    k: &DebeziumKcop,
    cols: &[usize],
    optional: bool,
    name: &str,
    field: Option<&str>,
) {
    push(out, "{\"type\":\"struct\",\"fields\":[");
    for (n, &i) in cols.iter().enumerate() {
        if n > 0 {
            push(out, ",");
        }
        field_schema(
            out,
            &k.fields[i],
            optional && k.nullable[i],
            Some(&k.names[i]),
        );
    }
    push(
        out,
        if optional {
            "],\"optional\":true,\"name\":"
        } else {
            "],\"optional\":false,\"name\":"
        },
    );
    text(out, name);
    end_field(out, field);
}

const PG_SOURCE: &[(&str, bool, &str)] = &[
    ("string", false, "db"),
    ("string", true, "sequence"),
    ("string", false, "schema"),
    ("string", false, "table"),
    ("int64", true, "txId"),
    ("int64", true, "lsn"),
    ("int64", true, "xmin"),
];

const MYSQL_SOURCE: &[(&str, bool, &str)] = &[
    ("string", false, "db"),
    ("string", true, "sequence"),
    ("string", true, "table"),
    ("int64", false, "server_id"),
    ("string", true, "gtid"),
    ("string", false, "file"),
    ("int64", false, "pos"),
    ("int32", false, "row"),
    ("int64", true, "thread"),
    ("string", true, "query"),
];

fn source_schema(out: &mut Vec<u8>, connector: &str) {
    push(
        out,
        "{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},",
    );
    push(
        out,
        "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,\"parameters\":{\"allowed\":\"true,last,false,incremental\"},\"default\":\"false\",\"field\":\"snapshot\"}",
    );
    let (fields, name) = match connector {
        "postgresql" => (PG_SOURCE, "io.debezium.connector.postgresql.Source"),
        "mariadb" => (MYSQL_SOURCE, "io.debezium.connector.mariadb.Source"),
        _ => (MYSQL_SOURCE, "io.debezium.connector.mysql.Source"),
    };
    for (ty, optional, field) in fields {
        push(out, ",");
        field_schema(out, &Field::Plain(ty), *optional, Some(field));
    }
    push(out, "],\"optional\":false,\"name\":");
    text(out, name);
    push(out, ",\"field\":\"source\"}");
}

const TXN_SCHEMA: &str = "{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

fn envelope_schema(out: &mut Vec<u8>, k: &DebeziumKcop, source: &SourceInfo) {
    let prefix = k.prefix(source);
    let value_name = format!("{prefix}.Value");
    push(out, "{\"type\":\"struct\",\"fields\":[");
    struct_schema(out, k, &k.config.columns, true, &value_name, Some("before"));
    push(out, ",");
    struct_schema(out, k, &k.config.columns, true, &value_name, Some("after"));
    push(out, ",");
    source_schema(out, source.connector);
    push(
        out,
        ",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},",
    );
    push(out, TXN_SCHEMA);
    push(out, "],\"optional\":false,\"name\":");
    text(out, &format!("{prefix}.Envelope"));
    push(out, "}");
}

// ---------------------------------------------------------------------------------------------
// Values.

fn int(out: &mut Vec<u8>, i: i64) {
    push(out, itoa::Buffer::new().format(i));
}

const MICROS_PER_MONTH: i64 = 2_629_800_000_000; // 30.4375 days
const MICROS_PER_DAY: i64 = 86_400_000_000;

impl DebeziumKcop {
    fn encode_err(&self, col: usize, reason: String) -> KcopError {
        KcopError::Encode {
            table: self.table.to_string(),
            column: self.names.get(col).cloned().unwrap_or_default(),
            reason,
        }
    }

    fn value(&self, out: &mut Vec<u8>, f: &Field, v: &Value, col: usize) -> Result<(), KcopError> {
        match v {
            Value::Unchanged => unavailable(out, f),
            Value::Decimal(d) => return self.decimal(out, f, d, col),
            Value::Text(s) | Value::Enum(s) | Value::Json(s) => text(out, s),
            Value::Uuid(u) => text(out, &format_uuid(u)),
            Value::Date(d) => int(out, i64::from(d.0)),
            Value::Set(items) => text(out, &items.join(",")),
            Value::Time(t) if *f == Field::Named("int32", "io.debezium.time.Time") => {
                int(out, t.0.div_euclid(1000))
            }
            Value::Time(t) => int(out, t.0),
            Value::TimeTz(t, z) => {
                let utc = crate::value::Time(
                    (t.0 - i64::from(z.0) * 1_000_000).rem_euclid(MICROS_PER_DAY),
                );
                text(out, &format!("{utc}Z"));
            }
            Value::Timestamp(ts) if *f == Field::Named("int64", "io.debezium.time.Timestamp") => {
                int(out, ts.as_millis());
            }
            Value::Timestamp(ts) => int(out, ts.0),
            Value::TimestampTz(ts) => zoned(out, *ts),
            Value::Interval(i) => int(
                out,
                i64::from(i.months)
                    .saturating_mul(MICROS_PER_MONTH)
                    .saturating_add(i64::from(i.days).saturating_mul(MICROS_PER_DAY))
                    .saturating_add(i.micros),
            ),
            Value::Bits(b) if *f == Field::Plain("boolean") => {
                push(out, if b.bit(0) { "true" } else { "false" })
            }
            Value::Bits(b) => base64_string(out, &bits_le(b)),
            Value::Array(items) => return self.array(out, f, items, col),
            other => JsonWriter::default().value(out, other),
        }
        Ok(())
    }

    fn array(
        &self,
        out: &mut Vec<u8>,
        f: &Field,
        items: &[Value],
        col: usize,
    ) -> Result<(), KcopError> {
        let inner = match f {
            Field::Array(inner) => inner.as_ref(),
            other => other,
        };
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.value(out, inner, item, col)?;
        }
        out.push(b']');
        Ok(())
    }

    fn decimal(
        &self,
        out: &mut Vec<u8>,
        f: &Field,
        d: &Decimal,
        col: usize,
    ) -> Result<(), KcopError> {
        let scale = match f {
            Field::Decimal(s, _) => *s,
            Field::VarDecimal => d.scale(),
            Field::Plain("double") => {
                let x: f64 = d.as_str().parse().unwrap_or(f64::NAN);
                JsonWriter::default().value(out, &Value::Float64(x));
                return Ok(());
            }
            _ => {
                text(out, d.as_str());
                return Ok(());
            }
        };
        let bytes = unscaled_bytes(d, scale).ok_or_else(|| {
            self.encode_err(col, format!(
                "decimal `{d}` cannot be written with decimal_handling precise at scale {scale}; set options.decimal_handling to `string`"
            ))
        })?;
        if *f == Field::VarDecimal {
            push(out, &format!("{{\"scale\":{scale},\"value\":"));
            base64_string(out, &bytes);
            out.push(b'}');
        } else {
            base64_string(out, &bytes);
        }
        Ok(())
    }

    /// The columns `cols` of `row` as a JSON object, leaving out columns not in the image.
    fn row(&self, out: &mut Vec<u8>, row: &[Value], cols: &[usize]) -> Result<(), KcopError> {
        out.push(b'{');
        let mut first = true;
        for &i in cols {
            let Some(v) = row.get(i).filter(|v| **v != Value::NotInImage) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            text(out, &self.names[i]);
            out.push(b':');
            self.value(out, &self.fields[i], v, i)?;
        }
        out.push(b'}');
        Ok(())
    }

    fn image(&self, out: &mut Vec<u8>, row: Option<&Vec<Value>>) -> Result<(), KcopError> {
        match row {
            Some(r) => self.row(out, r, &self.config.columns),
            None => {
                push(out, "null");
                Ok(())
            }
        }
    }
}

fn unavailable(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Plain("string") | Field::Named("string", _) | Field::Enum(..) => {
            text(out, UNAVAILABLE)
        }
        Field::Plain("bytes") => base64_string(out, UNAVAILABLE.as_bytes()),
        Field::Array(inner)
            if matches!(**inner, Field::Plain("string") | Field::Named("string", _)) =>
        {
            push(out, "[");
            text(out, UNAVAILABLE);
            push(out, "]");
        }
        _ => push(out, "null"),
    }
}

fn zoned(out: &mut Vec<u8>, ts: Timestamp) {
    if ts.is_finite() {
        text(out, &format!("{ts}Z"));
    } else {
        text(out, &ts.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope.

fn source_block(out: &mut Vec<u8>, k: &DebeziumKcop, op: &Operation<'_>) {
    let s = op.source;
    push(out, "{\"version\":");
    text(out, &k.config.version);
    push(out, ",\"connector\":");
    text(out, s.connector);
    push(out, ",\"name\":");
    text(out, &s.name);
    push(out, ",\"ts_ms\":");
    int(out, op.txn.commit_time.as_millis());
    push(
        out,
        if op.change.op == Op::Read {
            ",\"snapshot\":\"true\""
        } else {
            ",\"snapshot\":\"false\""
        },
    );
    if s.connector == "postgresql" {
        pg_source(out, s, op);
    } else {
        mysql_source(out, op);
    }
    push(out, "}");
}

fn pg_source(out: &mut Vec<u8>, s: &SourceInfo, op: &Operation<'_>) {
    let lsn = match &op.txn.position {
        Some(Position::Postgres(l)) => Some(l.0),
        _ => None,
    };
    push(out, ",\"db\":");
    text(out, &s.database);
    push(out, ",\"sequence\":");
    match lsn {
        Some(l) => text(out, &format!("[null,\"{l}\"]")),
        None => push(out, "null"),
    }
    push(out, ",\"schema\":");
    text(out, &op.change.table.id.namespace);
    push(out, ",\"table\":");
    text(out, &op.change.table.id.name);
    push(out, ",\"txId\":");
    push(
        out,
        &op.txn
            .id
            .parse::<u64>()
            .map_or("null".to_owned(), |x| x.to_string()),
    );
    push(out, ",\"lsn\":");
    push(out, &lsn.map_or("null".to_owned(), |x| x.to_string()));
    push(out, ",\"xmin\":null");
}

fn mysql_source(out: &mut Vec<u8>, op: &Operation<'_>) {
    // The transaction id is the GTID, except for snapshot batches (`snapshot:..`).
    let gtid = Some(&*op.txn.id).filter(|id| !id.starts_with("snapshot:"));
    let mariadb: Option<crate::position::Gtid> = gtid.and_then(|g| g.parse().ok());
    let (file, pos) = match &op.txn.position {
        Some(Position::MySql { coord, .. }) => (coord.file.as_str(), coord.pos),
        _ => ("", 0),
    };
    push(out, ",\"db\":");
    text(out, &op.change.table.id.namespace);
    push(out, ",\"sequence\":null,\"table\":");
    text(out, &op.change.table.id.name);
    push(out, ",\"server_id\":");
    int(out, mariadb.map_or(0, |g| i64::from(g.server_id)));
    push(out, ",\"gtid\":");
    match gtid {
        Some(g) => text(out, g),
        None => push(out, "null"),
    }
    push(out, ",\"file\":");
    text(out, file);
    push(out, ",\"pos\":");
    push(out, itoa::Buffer::new().format(pos));
    push(out, ",\"row\":0,\"thread\":null,\"query\":null");
}

impl DebeziumKcop {
    fn payload(&self, out: &mut Vec<u8>, op: &Operation<'_>) -> Result<(), KcopError> {
        let c = op.change;
        push(out, "{\"before\":");
        self.image(out, c.before.as_ref())?;
        push(out, ",\"after\":");
        self.image(out, c.after.as_ref().filter(|_| c.op != Op::Delete))?;
        push(out, ",\"source\":");
        source_block(out, self, op);
        push(out, ",\"op\":\"");
        push(out, c.op.code());
        push(out, "\",\"ts_ms\":");
        int(out, op.txn.commit_time.as_millis());
        push(out, ",\"transaction\":{\"id\":");
        text(out, &op.txn.id);
        push(out, ",\"total_order\":");
        push(out, itoa::Buffer::new().format(c.op_index + 1));
        push(out, ",\"data_collection_order\":");
        push(
            out,
            itoa::Buffer::new().format(self.next_order(&op.txn.id, c.op_index)),
        );
        push(out, "}}");
        Ok(())
    }

    fn value_bytes(&self, op: &Operation<'_>) -> Result<Vec<u8>, KcopError> {
        let mut out = Vec::with_capacity(if self.config.schemas { 2048 } else { 512 });
        if self.config.schemas {
            push(&mut out, "{\"schema\":");
            envelope_schema(&mut out, self, op.source);
            push(&mut out, ",\"payload\":");
            self.payload(&mut out, op)?;
            push(&mut out, "}");
        } else {
            self.payload(&mut out, op)?;
        }
        Ok(out)
    }

    fn key_bytes(
        &self,
        change: &Change,
        source: &SourceInfo,
    ) -> Result<Option<Vec<u8>>, KcopError> {
        let Some(row) = change.after.as_ref().or(change.before.as_ref()) else {
            return Ok(None);
        };
        if self.config.key.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(64);
        if self.config.schemas {
            push(&mut out, "{\"schema\":");
            let name = format!("{}.Key", self.prefix(source));
            struct_schema(&mut out, self, &self.config.key, false, &name, None);
            push(&mut out, ",\"payload\":");
            self.row(&mut out, row, &self.config.key)?;
            push(&mut out, "}");
        } else {
            self.row(&mut out, row, &self.config.key)?;
        }
        Ok(Some(out))
    }
}

impl Kcop for DebeziumKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let change = op.change;
        if change.op == Op::Truncate && self.config.truncate == TruncateMode::Skip {
            return Ok(());
        }
        let key = self.key_bytes(change, op.source)?;
        let value = self.value_bytes(op)?;
        let topic = self.config.topic.clone();
        out.push(ProducerRecord::new(topic.clone(), key.clone(), Some(value)));
        if change.op == Op::Delete && self.config.deletes == DeleteMode::Tombstone {
            out.push(ProducerRecord::new(topic, key, None));
        }
        Ok(())
    }
}
