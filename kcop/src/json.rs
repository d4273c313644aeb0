//! JSON encoding of values and rows, and the `json` format KCOP.
//!
//! Values map to JSON without loss: exact decimals are strings (`"12.50"`), binary is base64,
//! 64-bit integers are numbers (JSON has no limit; consumers that parse into doubles should
//! read them as strings), timestamps follow [`TimestampForm`]. Columns whose value was not sent
//! ([`Value::Unchanged`], [`Value::NotInImage`]) are left out of the object, so a missing field
//! means "not sent", never `null`.

use std::sync::Arc;

use base64::Engine as _;

use crate::change::{Change, Op};
use crate::kcop::{Kcop, KcopError, Operation};
use crate::record::ProducerRecord;
use crate::schema::TableSchema;
use crate::value::{BitString, Decimal, Timestamp, Value, format_uuid};

/// How timestamps (and dates and times) appear in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampForm {
    /// ISO 8601 text; `timestamptz` ends in `Z`.
    #[default]
    Iso,
    /// Milliseconds since the epoch (dates: days since the epoch; times: microseconds).
    EpochMillis,
    /// Microseconds since the epoch (dates: days since the epoch; times: microseconds).
    EpochMicros,
}

/// Writes JSON text into a byte buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonWriter {
    /// Timestamp form.
    pub timestamps: TimestampForm,
}

impl JsonWriter {
    /// Write `s` as a JSON string.
    pub fn string(out: &mut Vec<u8>, s: &str) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc = ESCAPES[usize::from(b)];
            if esc == 0 {
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            push_escape(out, b, esc);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }

    /// Write one value. Markers must be filtered out by the caller; they are written as `null`.
    pub fn value(&self, out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Null | Value::Unchanged | Value::NotInImage => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Value::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
            Value::Float32(f) => float(out, f64::from(*f), f.is_finite(), || {
                ryu::Buffer::new().format(*f).to_owned()
            }),
            Value::Float64(f) => float(out, *f, f.is_finite(), || {
                ryu::Buffer::new().format(*f).to_owned()
            }),
            Value::Decimal(d) => Self::string(out, d.as_str()),
            Value::Text(s) | Value::Enum(s) => Self::string(out, s),
            Value::Json(s) => out.extend_from_slice(s.as_bytes()),
            Value::Bytes(b) => {
                out.push(b'"');
                let mut text = String::new();
                base64::engine::general_purpose::STANDARD.encode_string(b, &mut text);
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            }
            Value::Uuid(u) => Self::string(out, &format_uuid(u)),
            Value::Date(d) => match self.timestamps {
                TimestampForm::Iso => quoted(out, |o| iso::date(o, *d)),
                _ => out.extend_from_slice(itoa::Buffer::new().format(d.0).as_bytes()),
            },
            Value::Time(t) => match self.timestamps {
                TimestampForm::Iso => quoted(out, |o| iso::time(o, *t)),
                _ => out.extend_from_slice(itoa::Buffer::new().format(t.0).as_bytes()),
            },
            Value::TimeTz(t, z) => Self::string(out, &format!("{t}{z}")),
            Value::Timestamp(ts) => self.timestamp(out, *ts, ""),
            Value::TimestampTz(ts) => self.timestamp(out, *ts, "Z"),
            Value::Interval(i) => Self::string(out, &i.to_string()),
            Value::Bits(b) => Self::string(out, &b.to_string()),
            Value::Array(items) => self.list(out, items.iter(), |w, o, v| w.value(o, v)),
            Value::Set(items) => self.list(out, items.iter(), |_, o, s| Self::string(o, s)),
        }
    }

    fn list<'v, T: 'v>(
        &self,
        out: &mut Vec<u8>,
        items: impl Iterator<Item = &'v T>,
        mut each: impl FnMut(&Self, &mut Vec<u8>, &T),
    ) {
        out.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            each(self, out, item);
        }
        out.push(b']');
    }

    fn timestamp(&self, out: &mut Vec<u8>, ts: Timestamp, zone: &str) {
        if !ts.is_finite() {
            return Self::string(out, &ts.to_string());
        }
        match self.timestamps {
            TimestampForm::Iso => quoted(out, |o| {
                iso::timestamp(o, ts);
                o.extend_from_slice(zone.as_bytes());
            }),
            TimestampForm::EpochMillis => {
                out.extend_from_slice(itoa::Buffer::new().format(ts.as_millis()).as_bytes())
            }
            TimestampForm::EpochMicros => {
                out.extend_from_slice(itoa::Buffer::new().format(ts.0).as_bytes())
            }
        }
    }

    /// Write the columns `cols` (indexes into `schema.columns`) of `row` as a JSON object,
    /// leaving out columns whose value was not sent.
    pub fn row(&self, out: &mut Vec<u8>, schema: &TableSchema, row: &[Value], cols: &[usize]) {
        out.push(b'{');
        let mut first = true;
        for &i in cols {
            let (Some(col), Some(v)) = (schema.columns.get(i), row.get(i)) else {
                continue;
            };
            if v.is_marker() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            Self::string(out, &col.name);
            out.push(b':');
            self.value(out, v);
        }
        out.push(b'}');
    }
}

/// For each byte, 0 when it stands for itself in a JSON string, else the character after
/// the backslash of its escape (`u` for `\u00XX`).
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

fn push_escape(out: &mut Vec<u8>, b: u8, esc: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if esc == b'u' {
        let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
        out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
    } else {
        out.extend_from_slice(&[b'\\', esc]);
    }
}

/// Write what `body` writes between double quotes (it must need no escaping).
fn quoted(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'"');
    body(out);
    out.push(b'"');
}

/// ISO 8601 text of dates, times and timestamps written straight into the buffer: the same
/// bytes as their `Display` forms, without the formatting machinery and its allocations
/// (the `json` format's hot path).
mod iso {
    use crate::value::{Date, Time, Timestamp};

    /// `n` in decimal, left-padded with zeros to `width` digits (like `{n:0width$}`).
    fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(n);
        out.extend(std::iter::repeat_n(
            b'0',
            width.saturating_sub(digits.len()),
        ));
        out.extend_from_slice(digits.as_bytes());
    }

    /// `[-]YYYY-MM-DD`, or `infinity` / `-infinity`.
    pub(super) fn date(out: &mut Vec<u8>, d: Date) {
        if d == Date::INFINITY || d == Date::NEG_INFINITY {
            return out.extend_from_slice(d.to_string().as_bytes());
        }
        let (y, m, day) = d.ymd();
        if y <= 0 {
            out.push(b'-');
        }
        padded(out, i64::from(y).unsigned_abs(), 4);
        out.push(b'-');
        padded(out, u64::from(m), 2);
        out.push(b'-');
        padded(out, u64::from(day), 2);
    }

    /// `[-]HH:MM:SS[.ffffff]` with trailing zeros of the fraction left out.
    pub(super) fn time(out: &mut Vec<u8>, t: Time) {
        let us = t.0.unsigned_abs();
        let (secs, frac) = (us / 1_000_000, us % 1_000_000);
        if t.0 < 0 {
            out.push(b'-');
        }
        padded(out, secs / 3600, 2);
        out.push(b':');
        padded(out, secs / 60 % 60, 2);
        out.push(b':');
        padded(out, secs % 60, 2);
        if frac != 0 {
            let mut digits = [b'0'; 6];
            let mut rest = frac;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            let len = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
    }

    /// `<date>T<time>` of a finite timestamp.
    pub(super) fn timestamp(out: &mut Vec<u8>, ts: Timestamp) {
        let (d, t) = ts.split();
        date(out, d);
        out.push(b'T');
        time(out, t);
    }
}

fn float(out: &mut Vec<u8>, f: f64, finite: bool, text: impl FnOnce() -> String) {
    if finite {
        out.extend_from_slice(text().as_bytes());
    } else if f.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if f > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// What a delete becomes on an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// The before image as the value (with the key).
    #[default]
    Image,
    /// A record with the key and no value, for compacted topics.
    Tombstone,
}

/// What a truncate becomes on an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncateMode {
    /// A record with no key and an empty object value (the `ordo.optype` header says `t`).
    #[default]
    Record,
    /// Nothing.
    Skip,
}

/// The `json` format: key and value as JSON objects.
///
/// Value: the row image (after image for inserts, updates and snapshot reads; before image for
/// deletes in [`DeleteMode::Image`]). With `envelope`, the value is
/// `{"op":"u","before":{..}|null,"after":{..}|null}` instead, so updates keep their old image.
#[derive(Debug, Clone)]
pub struct JsonKcop {
    /// Destination topic (already resolved for the table).
    pub topic: Arc<str>,
    /// Key columns (indexes); empty for no key.
    pub key: Vec<usize>,
    /// Columns in the value (indexes).
    pub columns: Vec<usize>,
    /// Delete handling.
    pub deletes: DeleteMode,
    /// Truncate handling.
    pub truncate: TruncateMode,
    /// Wrap images in an envelope with the op code and both images.
    pub envelope: bool,
    /// Value writer settings.
    pub writer: JsonWriter,
}

impl JsonKcop {
    fn key_bytes(&self, change: &Change) -> Option<Vec<u8>> {
        if self.key.is_empty() {
            return None;
        }
        let row = change.after.as_ref().or(change.before.as_ref())?;
        let mut out = Vec::with_capacity(32);
        self.writer.row(&mut out, &change.table, row, &self.key);
        Some(out)
    }

    fn image(&self, out: &mut Vec<u8>, change: &Change, row: Option<&Vec<crate::Value>>) {
        match row {
            Some(r) => self.writer.row(out, &change.table, r, &self.columns),
            None => out.extend_from_slice(b"null"),
        }
    }

    fn value_bytes(&self, change: &Change) -> Vec<u8> {
        let images = if self.envelope { 2 } else { 1 };
        let mut out = Vec::with_capacity(32 + images * (32 + 32 * self.columns.len()));
        if self.envelope {
            out.extend_from_slice(b"{\"op\":\"");
            out.extend_from_slice(change.op.code().as_bytes());
            out.extend_from_slice(b"\",\"before\":");
            self.image(&mut out, change, change.before.as_ref());
            out.extend_from_slice(b",\"after\":");
            self.image(&mut out, change, change.after.as_ref());
            out.push(b'}');
        } else {
            let row = if change.op == Op::Delete {
                change.before.as_ref()
            } else {
                change.after.as_ref()
            };
            self.image(&mut out, change, row);
        }
        out
    }
}

impl Kcop for JsonKcop {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let change = op.change;
        let (key, value) = match change.op {
            Op::Truncate if self.truncate == TruncateMode::Skip => return Ok(()),
            Op::Truncate => (None, Some(b"{}".to_vec())),
            Op::Delete if self.deletes == DeleteMode::Tombstone => (self.key_bytes(change), None),
            _ => (self.key_bytes(change), Some(self.value_bytes(change))),
        };
        out.push(ProducerRecord::new(self.topic.clone(), key, value));
        Ok(())
    }
}

// Value encodings other formats share (Debezium, Avro decimals).

/// The unscaled value of `d` at `scale` as big-endian two's-complement bytes (minimal length,
/// like Java's `BigInteger.toByteArray`). `None` for NaN, infinities and values with more
/// fractional digits than `scale`.
pub fn unscaled_bytes(d: &Decimal, scale: u32) -> Option<Vec<u8>> {
    let extra = scale.checked_sub(d.scale())?;
    let (neg, mut digits) = d.unscaled()?;
    if digits != "0" {
        digits.extend(std::iter::repeat_n('0', extra as usize));
    }
    let mut mag = decimal_to_base256(&digits);
    if !neg {
        if mag[0] & 0x80 != 0 {
            mag.insert(0, 0);
        }
        return Some(mag);
    }
    let mut carry = true;
    for b in mag.iter_mut().rev() {
        let (v, c) = (!*b).overflowing_add(u8::from(carry));
        *b = v;
        carry = c;
    }
    if mag[0] & 0x80 == 0 {
        mag.insert(0, 0xFF);
    }
    Some(mag)
}

/// Decimal digits to big-endian magnitude bytes (at least one byte, no leading zeros).
fn decimal_to_base256(digits: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = vec![0];
    for d in digits.bytes().map(|b| b.wrapping_sub(b'0')) {
        let mut carry = u32::from(d);
        for b in bytes.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes.split_off(first)
}

/// Write `bytes` as a JSON string in standard base64.
pub fn base64_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut s = String::new();
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A bit string read as a binary number (first bit most significant), as little-endian bytes
/// (Debezium's `io.debezium.data.Bits`): `101` becomes `[0x05]`.
pub fn bits_le(b: &BitString) -> Vec<u8> {
    let mut out = vec![0u8; b.len.div_ceil(8)];
    for i in 0..b.len {
        if b.bit(i) {
            let pos = b.len - 1 - i;
            out[pos / 8] |= 1 << (pos % 8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::value::{Date, Time};

    /// The escaping rules spelled out one byte at a time, to check the table against.
    fn reference_string(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if u32::from(c) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes())
                }
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    fn written(v: &Value) -> String {
        let mut out = Vec::new();
        JsonWriter::default().value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_are_pinned() {
        let mut out = Vec::new();
        JsonWriter::string(&mut out, "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}é");
        assert_eq!(
            out,
            b"\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\x7f\xc3\xa9\""
        );
    }

    #[test]
    fn iso_edges_match_display() {
        for ts in [
            0,
            -1,
            1,
            999_999,
            -86_400_000_000,
            i64::MAX - 1,
            i64::MIN + 1,
        ] {
            let ts = Timestamp(ts);
            assert_eq!(written(&Value::Timestamp(ts)), format!("\"{ts}\""));
        }
        for d in [Date::INFINITY, Date::NEG_INFINITY, Date(0), Date(-719_529)] {
            assert_eq!(written(&Value::Date(d)), format!("\"{d}\""));
        }
        for t in [
            i64::MIN,
            i64::MAX,
            -1,
            0,
            86_400_000_000,
            3_600_000_000 * 838,
        ] {
            assert_eq!(written(&Value::Time(Time(t))), format!("\"{}\"", Time(t)));
        }
    }

    proptest! {
        #[test]
        fn strings_escape_as_the_reference(s in any::<String>()) {
            let mut out = Vec::new();
            JsonWriter::string(&mut out, &s);
            prop_assert_eq!(out, reference_string(&s));
        }

        #[test]
        fn timestamps_match_display(us in any::<i64>()) {
            let ts = Timestamp(us);
            prop_assert_eq!(written(&Value::Timestamp(ts)), format!("\"{ts}\""));
            prop_assert_eq!(written(&Value::TimestampTz(ts)), format!("\"{ts}{}\"", if ts.is_finite() { "Z" } else { "" }));
        }

        #[test]
        fn dates_and_times_match_display(days in any::<i32>(), us in any::<i64>()) {
            prop_assert_eq!(written(&Value::Date(Date(days))), format!("\"{}\"", Date(days)));
            prop_assert_eq!(written(&Value::Time(Time(us))), format!("\"{}\"", Time(us)));
        }
    }
}
