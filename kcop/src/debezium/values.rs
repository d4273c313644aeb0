//! Column values as Debezium writes them, and the row images.

use super::field::Field;
use super::{DebeziumKcop, UNAVAILABLE, int, push, text};
use crate::json::{JsonWriter, base64_string, bits_le, unscaled_bytes};
use crate::kcop::KcopError;
use crate::value::{Decimal, Timestamp, Value, format_uuid};

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
    pub(super) fn row(
        &self,
        out: &mut Vec<u8>,
        row: &[Value],
        cols: &[usize],
    ) -> Result<(), KcopError> {
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

    pub(super) fn image(
        &self,
        out: &mut Vec<u8>,
        row: Option<&Vec<Value>>,
    ) -> Result<(), KcopError> {
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
