//! Avro binary encoding of values, written straight into the record buffer.
//!
//! Errors are plain reasons; the caller adds the table and column.

use std::fmt::Write as _;

use super::schema::Plan;
use crate::value::{Decimal, Value};

/// Append a `long` (or `int`): zig-zag, then base-128 varint.
pub(crate) fn long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Append `bytes` or `string`: length, then the bytes.
pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Append one value following `plan`; `Null` and the markers are the caller's business.
pub(crate) fn value(out: &mut Vec<u8>, plan: &Plan, v: &Value) -> Result<(), String> {
    match (plan, v) {
        (Plan::Boolean, Value::Bool(b)) => out.push(u8::from(*b)),
        (Plan::Int, _) => long(out, i64::from(int32(v)?)),
        (Plan::Long, _) => long(out, int64(v)?),
        (Plan::Float, Value::Float32(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Plan::Double, Value::Float64(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (Plan::Double, Value::Float32(f)) => out.extend_from_slice(&f64::from(*f).to_le_bytes()),
        (Plan::Bytes, Value::Bytes(b)) => bytes(out, b),
        (Plan::String, _) => string(out, v)?,
        (Plan::Decimal { scale, .. }, _) => decimal(out, v, *scale)?,
        (Plan::BigUnsigned, _) => decimal(out, v, 0)?,
        (Plan::Date, Value::Date(d)) => long(out, i64::from(d.0)),
        (Plan::TimeMicros, Value::Time(t)) => long(out, t.0),
        (Plan::TimestampMicros, Value::TimestampTz(ts) | Value::Timestamp(ts)) => long(out, ts.0),
        (Plan::LocalTimestampMicros, Value::Timestamp(ts) | Value::TimestampTz(ts)) => {
            long(out, ts.0)
        }
        (Plan::Uuid, Value::Uuid(u)) => uuid(out, u),
        (Plan::Interval, Value::Interval(i)) => {
            long(out, i64::from(i.months));
            long(out, i64::from(i.days));
            long(out, i.micros);
        }
        (Plan::Array(items), Value::Array(vs)) => array(out, items, vs)?,
        (Plan::Array(items), Value::Set(labels)) if **items == Plan::String => set(out, labels),
        (plan, v) => return Err(mismatch(plan, v)),
    }
    Ok(())
}

fn mismatch(plan: &Plan, v: &Value) -> String {
    let found = format!("{v:?}");
    let found = found.split(['(', ' ']).next().unwrap_or_default();
    format!(
        "a {found} value does not fit the column's Avro type {plan:?}; the source reported a value of another type than the table schema says"
    )
}

fn int32(v: &Value) -> Result<i32, String> {
    let wide = int64(v)?;
    i32::try_from(wide).map_err(|_| format!("{wide} does not fit an Avro int"))
}

fn int64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| format!("{u} does not fit an Avro long")),
        other => Err(mismatch(&Plan::Long, other)),
    }
}

fn string(out: &mut Vec<u8>, v: &Value) -> Result<(), String> {
    match v {
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => bytes(out, s.as_bytes()),
        Value::Decimal(d) => bytes(out, d.as_str().as_bytes()),
        Value::Uuid(u) => uuid(out, u),
        Value::Int(i) => bytes(out, itoa::Buffer::new().format(*i).as_bytes()),
        Value::UInt(u) => bytes(out, itoa::Buffer::new().format(*u).as_bytes()),
        Value::Bool(b) => bytes(out, if *b { b"true" } else { b"false" }),
        Value::Array(_) | Value::Set(_) | Value::Bytes(_) => {
            return Err(mismatch(&Plan::String, v));
        }
        other => bytes(out, text_form(other).as_bytes()),
    }
    Ok(())
}

/// The text form of values written as strings (time with zone, bits, dates, ...).
fn text_form(v: &Value) -> String {
    let mut s = String::new();
    let _ = match v {
        Value::TimeTz(t, z) => write!(s, "{t}{z}"),
        Value::Bits(b) => write!(s, "{b}"),
        Value::Date(d) => write!(s, "{d}"),
        Value::Time(t) => write!(s, "{t}"),
        Value::Timestamp(ts) => write!(s, "{ts}"),
        Value::TimestampTz(ts) => write!(s, "{ts}Z"),
        Value::Interval(i) => write!(s, "{i}"),
        Value::Float32(f) => write!(s, "{f}"),
        Value::Float64(f) => write!(s, "{f}"),
        _ => Ok(()),
    };
    s
}

fn uuid(out: &mut Vec<u8>, u: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(72); // zig-zag varint of 36
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn array(out: &mut Vec<u8>, items: &Plan, vs: &[Value]) -> Result<(), String> {
    if !vs.is_empty() {
        long(out, vs.len() as i64);
        for v in vs {
            match v {
                Value::Null => out.push(0),
                Value::Array(_) if !matches!(items, Plan::Array(_)) => {
                    return Err(
                        "multi-dimensional arrays have no Avro mapping in ordo; publish the column with another format, or leave it out with `columns`"
                            .into(),
                    );
                }
                v => {
                    out.push(2); // union branch 1
                    value(out, items, v)?;
                }
            }
        }
    }
    out.push(0);
    Ok(())
}

fn set(out: &mut Vec<u8>, labels: &[String]) {
    if !labels.is_empty() {
        long(out, labels.len() as i64);
        for label in labels {
            out.push(2);
            bytes(out, label.as_bytes());
        }
    }
    out.push(0);
}

fn decimal(out: &mut Vec<u8>, v: &Value, scale: u32) -> Result<(), String> {
    match v {
        Value::Decimal(d) => decimal_text(out, d, scale),
        Value::Int(i) => scaled_integer(out, i128::from(*i), scale),
        Value::UInt(u) => scaled_integer(out, i128::from(*u), scale),
        other => Err(mismatch(
            &Plan::Decimal {
                precision: 0,
                scale,
            },
            other,
        )),
    }
}

fn scaled_integer(out: &mut Vec<u8>, n: i128, scale: u32) -> Result<(), String> {
    let scaled = 10i128
        .checked_pow(scale)
        .and_then(|p| n.checked_mul(p))
        .ok_or_else(|| format!("{n} with scale {scale} is too large for this encoder"))?;
    unscaled_i128(out, scaled);
    Ok(())
}

/// Write `d` rescaled to `scale` as a two's-complement big-endian unscaled integer.
fn decimal_text(out: &mut Vec<u8>, d: &Decimal, scale: u32) -> Result<(), String> {
    if !d.is_finite() {
        return Err(format!(
            "numeric {d} cannot be written as an Avro decimal; set `options.decimals: string` on this output to publish decimals as text"
        ));
    }
    let text = d.as_str();
    let (neg, body) = text.strip_prefix('-').map_or((false, text), |b| (true, b));
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let scale = scale as usize;
    if frac.len() > scale && frac.as_bytes()[scale..].iter().any(|&b| b != b'0') {
        return Err(format!(
            "{d} has more digits after the point than the column's scale {scale}"
        ));
    }
    let kept = &frac[..frac.len().min(scale)];
    let pad = scale - kept.len();
    let digits = int
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', pad));
    match small_unscaled(digits.clone()) {
        Some(n) => unscaled_i128(out, if neg { -n } else { n }),
        None => unscaled_big(out, neg, digits),
    }
    Ok(())
}

fn small_unscaled(mut digits: impl Iterator<Item = u8>) -> Option<i128> {
    digits.try_fold(0i128, |acc, b| {
        acc.checked_mul(10)?.checked_add(i128::from(b - b'0'))
    })
}

fn unscaled_i128(out: &mut Vec<u8>, n: i128) {
    let be = n.to_be_bytes();
    let skip = redundant_sign_bytes(&be);
    bytes(out, &be[skip..]);
}

/// Leading bytes that only repeat the sign (at least one byte is kept).
fn redundant_sign_bytes(be: &[u8]) -> usize {
    let mut skip = 0;
    while skip + 1 < be.len() {
        let (b, next) = (be[skip], be[skip + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            skip += 1;
        } else {
            break;
        }
    }
    skip
}

/// Unscaled integers beyond 38 digits: base-256 magnitude, then two's complement.
fn unscaled_big(out: &mut Vec<u8>, neg: bool, digits: impl Iterator<Item = u8>) {
    let mut mag: Vec<u8> = vec![0]; // big-endian, a leading zero byte for the sign bit
    for d in digits {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let x = u32::from(*byte) * 10 + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            mag.insert(0, carry as u8);
            carry >>= 8;
        }
        if mag[0] & 0x80 != 0 {
            mag.insert(0, 0);
        }
    }
    if neg {
        negate(&mut mag);
    }
    let skip = redundant_sign_bytes(&mag);
    bytes(out, &mag[skip..]);
}

fn negate(be: &mut [u8]) {
    let mut carry = true;
    for byte in be.iter_mut().rev() {
        let (v, c) = (!*byte).overflowing_add(u8::from(carry));
        *byte = v;
        carry = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str, scale: u32) -> Vec<u8> {
        let mut out = Vec::new();
        decimal_text(&mut out, &text.parse().unwrap(), scale).unwrap();
        out
    }

    #[test]
    fn varints_zig_zag() {
        let enc = |v| {
            let mut out = Vec::new();
            long(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(i64::MIN).len(), 10);
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(dec("1.5", 2), [4, 0x00, 0x96]);
        assert_eq!(dec("-1.00", 2), [2, 0x9c], "-100 fits one byte");
        assert_eq!(dec("-1.29", 2), [4, 0xff, 0x7f], "-129 needs two");
        assert_eq!(dec("0", 2), [2, 0]);
        assert_eq!(
            dec("1.2300", 2),
            [2, 0x7b],
            "trailing zeros beyond the scale"
        );
        let mut out = Vec::new();
        let err = decimal_text(&mut out, &"1.234".parse().unwrap(), 2).unwrap_err();
        assert_eq!(
            err,
            "1.234 has more digits after the point than the column's scale 2"
        );
    }

    #[test]
    fn long_decimals_match_the_small_path() {
        for text in [
            "123456789012345678901234567890",
            "-98765432109876543210987654321",
            "-128",
            "127",
            "-1",
        ] {
            let n: i128 = text.parse().unwrap();
            let mut small = Vec::new();
            unscaled_i128(&mut small, n);
            let mut big = Vec::new();
            let digits = text.trim_start_matches('-');
            unscaled_big(&mut big, n < 0, digits.bytes());
            assert_eq!(small, big, "{text}");
        }
    }
}
