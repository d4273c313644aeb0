//! The `csv-audit` format: one CSV line per change, in the layout of IBM IIDR's live-audit
//! KCOP (`KcopLiveAuditSingleRowIntegrated`): journal fields, then the before image, then the
//! after image.
//!
//! # Value
//! One line (no line terminator) of `4 + 2 × n` fields, `n` being the output's columns:
//!
//! | # | field |
//! |---|---|
//! | 1 | commit time, UTC, `YYYY-MM-DD HH:MM:SS.ffffff` |
//! | 2 | source transaction id (`ordo.txn`) |
//! | 3 | operation: `I` insert, `U` update, `D` delete, `T` truncate, `R` snapshot read |
//! | 4 | user who made the change: always empty (neither source tells ordo) |
//! | 5 .. 4+n | before image, in column order |
//! | 5+n .. 4+2n | after image, in column order |
//!
//! An image the change does not have (before of an insert or of an update whose source sent
//! no old row, after of a delete, both of a truncate) is `n` empty fields. SQL `NULL` is `\N`;
//! a value the source did not send (unchanged TOAST, a column outside a key-only old image) is
//! an empty field. Fields are quoted as RFC 4180 says (a field containing the delimiter, `"`,
//! CR or LF is enclosed in `"` with inner `"` doubled); an empty string is always `""` and a
//! text that is literally `\N` is `"\N"`, so neither reads as a missing value or `NULL`.
//!
//! Values are their text forms: `true`/`false`; integers and floats in decimal (`NaN`,
//! `Infinity`, `-Infinity`); exact decimals as sent (`12.50`); binary as base64; dates
//! `YYYY-MM-DD`; times `HH:MM:SS[.ffffff]`; timestamps ISO 8601 with `T` (`timestamptz` in UTC
//! with `Z`); intervals as ISO 8601 durations; UUIDs hyphenated; JSON as sent; arrays as JSON
//! arrays; MySQL sets comma-separated; bit strings as `0`/`1` characters.
//!
//! # Key
//! The output's key columns as a JSON object, exactly as the `json` format writes it
//! (`{"id":1}`); no key for truncates or with `key: none`.
//!
//! Deletes: the `D` line, then (with `deletes: tombstone`) a tombstone with the same key.
//! Truncates: a `T` line with empty images (or nothing with `truncate: skip`).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;

use crate::change::{Change, Op};
use crate::json::{DeleteMode, JsonWriter, TruncateMode};
use crate::kcop::{Kcop, KcopError, Operation};
use crate::record::ProducerRecord;
use crate::schema::SchemaRef;
use crate::value::{Timestamp, Value, format_uuid};

/// The IIDR-style one-letter operation code of `op`.
pub fn op_letter(op: Op) -> &'static str {
    match op {
        Op::Insert => "I",
        Op::Update => "U",
        Op::Delete => "D",
        Op::Truncate => "T",
        Op::Read => "R",
    }
}

/// A commit time as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC, always six fractional digits).
pub fn audit_time(ts: Timestamp) -> String {
    if !ts.is_finite() {
        return ts.to_string();
    }
    let (date, time) = ts.split();
    let secs = time.0 / 1_000_000;
    let (h, m, s, us) = (secs / 3600, secs / 60 % 60, secs % 60, time.0 % 1_000_000);
    format!("{date} {h:02}:{m:02}:{s:02}.{us:06}")
}

/// Settings of a [`CsvAuditKcop`].
#[derive(Debug, Clone)]
pub struct CsvAuditKcop {
    /// Destination topic.
    pub topic: Arc<str>,
    /// The table's schema (column names for errors, the key writer).
    pub table: SchemaRef,
    /// Key columns (indexes); empty for no key.
    pub key: Vec<usize>,
    /// Columns of each image (indexes).
    pub columns: Vec<usize>,
    /// Delete handling.
    pub deletes: DeleteMode,
    /// Truncate handling.
    pub truncate: TruncateMode,
    /// Field delimiter (an ASCII character other than `"`, CR, LF); `,` by default.
    pub delimiter: u8,
}

/// The text form of a value; `None` for the markers (an empty field).
fn text_form(v: &Value) -> Option<Cow<'_, str>> {
    Some(match v {
        Value::Unchanged | Value::NotInImage => return None,
        Value::Null => Cow::Borrowed("\\N"),
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => Cow::Borrowed(s.as_str()),
        Value::Decimal(d) => Cow::Borrowed(d.as_str()),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Float32(f) => Cow::Owned(float_text(f64::from(*f), || f.to_string())),
        Value::Float64(f) => Cow::Owned(float_text(*f, || f.to_string())),
        Value::Bytes(b) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Uuid(u) => Cow::Owned(format_uuid(u)),
        Value::Date(d) => Cow::Owned(d.to_string()),
        Value::Time(t) => Cow::Owned(t.to_string()),
        Value::TimeTz(t, z) => Cow::Owned(format!("{t}{z}")),
        Value::Timestamp(ts) => Cow::Owned(ts.to_string()),
        Value::TimestampTz(ts) if ts.is_finite() => Cow::Owned(format!("{ts}Z")),
        Value::TimestampTz(ts) => Cow::Owned(ts.to_string()),
        Value::Interval(i) => Cow::Owned(i.to_string()),
        Value::Bits(b) => Cow::Owned(b.to_string()),
        Value::Set(items) => Cow::Owned(items.join(",")),
        Value::Array(_) => {
            let mut out = Vec::new();
            JsonWriter::default().value(&mut out, v);
            Cow::Owned(String::from_utf8_lossy(&out).into_owned())
        }
    })
}

fn float_text(f: f64, finite: impl FnOnce() -> String) -> String {
    match f {
        f if f.is_finite() => finite(),
        f if f.is_nan() => "NaN".to_owned(),
        f if f > 0.0 => "Infinity".to_owned(),
        _ => "-Infinity".to_owned(),
    }
}

/// Append one field, quoted when RFC 4180 requires it (and for `""` and a literal `\N` text).
fn field(out: &mut Vec<u8>, text: &str, delimiter: u8, is_null: bool) {
    let needs_quotes = !is_null
        && (text.is_empty()
            || text == "\\N"
            || text
                .bytes()
                .any(|b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n')));
    if !needs_quotes {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

impl CsvAuditKcop {
    fn image(&self, out: &mut Vec<u8>, row: Option<&Vec<Value>>) {
        for &i in &self.columns {
            out.push(self.delimiter);
            let Some(v) = row.and_then(|r| r.get(i)) else {
                continue;
            };
            if let Some(text) = text_form(v) {
                field(out, &text, self.delimiter, *v == Value::Null);
            }
        }
    }

    /// The CSV line for `op`.
    pub fn line(&self, op: &Operation<'_>) -> Vec<u8> {
        let c = op.change;
        let mut out = Vec::with_capacity(64 + 16 * self.columns.len());
        let d = self.delimiter;
        out.extend_from_slice(audit_time(op.txn.commit_time).as_bytes());
        out.push(d);
        field(&mut out, &op.txn.id, d, false);
        out.push(d);
        out.extend_from_slice(op_letter(c.op).as_bytes());
        out.push(d);
        self.image(&mut out, c.before.as_ref());
        self.image(&mut out, c.after.as_ref().filter(|_| c.op != Op::Delete));
        out
    }

    fn key_bytes(&self, change: &Change) -> Option<Vec<u8>> {
        if self.key.is_empty() {
            return None;
        }
        let row = change.after.as_ref().or(change.before.as_ref())?;
        let mut out = Vec::with_capacity(32);
        JsonWriter::default().row(&mut out, &self.table, row, &self.key);
        Some(out)
    }
}

impl Kcop for CsvAuditKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let change = op.change;
        if change.op == Op::Truncate && self.truncate == TruncateMode::Skip {
            return Ok(());
        }
        let key = self.key_bytes(change);
        let line = self.line(op);
        out.push(ProducerRecord::new(
            self.topic.clone(),
            key.clone(),
            Some(line),
        ));
        if change.op == Op::Delete && self.deletes == DeleteMode::Tombstone {
            out.push(ProducerRecord::new(self.topic.clone(), key, None));
        }
        Ok(())
    }
}
