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
//!
//! # Layout
//! The submodules: `field` maps column kinds to Kafka Connect types, `schema` writes the
//! Connect schemas, `values` the column values and row images, `source` the `source` block;
//! this module assembles keys and envelopes.

mod field;
mod schema;
mod source;
mod values;

use std::sync::{Arc, Mutex};

use crate::change::{Change, Op};
use crate::json::{DeleteMode, JsonWriter, TruncateMode};
use crate::kcop::{Kcop, KcopError, Operation, SourceInfo};
use crate::record::ProducerRecord;
use crate::schema::TableSchema;
use field::{Field, field_for};
use schema::{envelope_schema, struct_schema};
use source::source_block;

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

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn text(out: &mut Vec<u8>, s: &str) {
    JsonWriter::string(out, s);
}

fn int(out: &mut Vec<u8>, i: i64) {
    push(out, itoa::Buffer::new().format(i));
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
