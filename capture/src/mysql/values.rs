//! Column values in the binlog's row format, decoded straight into the model's [`Value`]s.
//!
//! Each column of a table map compiles once into a [`ColumnDecoder`] (type, metadata,
//! signedness, charset); rows then decode with no per-row lookups. The conversions shared with
//! the snapshot (bits, sets, enums, dates, strings) live here too, so both paths agree.

use std::sync::Arc;

use ordo_kcop::{BitString, Date, Decimal, Time, Timestamp, Value};

use super::charset::Charset;
use super::wire::{Reader, Short};

const MICROS: i64 = 1_000_000;

/// How a character or binary column's bytes become a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrAs {
    /// Text in a character set.
    Text(Charset),
    /// A JSON document (MariaDB's `JSON` is `LONGTEXT` with a `json_valid` check).
    Json(Charset),
    /// Raw bytes (binary character set).
    Bytes,
    /// MariaDB's `UUID` type: 16 bytes in text order.
    Uuid,
    /// MariaDB's `INET6` type: 16 bytes, shown as an IPv6 address.
    Inet6,
}

/// How one column's binlog bytes become a [`Value`].
#[derive(Debug, Clone)]
pub(crate) enum ColumnDecoder {
    /// TINYINT (1), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8).
    Int { len: u8, unsigned: bool },
    /// YEAR: one byte, 0 or the year minus 1900.
    Year,
    /// FLOAT.
    Float,
    /// DOUBLE.
    Double,
    /// DECIMAL(precision, scale) in the packed binary form.
    Decimal { precision: u8, scale: u8 },
    /// DATE: 3 bytes.
    Date,
    /// TIME in the pre-5.6 form: 3 bytes, HHMMSS.
    Time,
    /// TIME(fsp) in the 5.6 form.
    Time2 { fsp: u8 },
    /// DATETIME in the pre-5.6 form: 8 bytes, YYYYMMDDhhmmss.
    DateTime,
    /// DATETIME(fsp) in the 5.6 form.
    DateTime2 { fsp: u8 },
    /// TIMESTAMP in the pre-5.6 form: 4 bytes of seconds.
    Timestamp,
    /// TIMESTAMP(fsp) in the 5.6 form.
    Timestamp2 { fsp: u8 },
    /// CHAR, VARCHAR, BINARY, VARBINARY, TEXT, BLOB, JSON, GEOMETRY: a length of `len_bytes`
    /// bytes, then the bytes. `pad_to` restores the trailing 0x00 bytes the server strips from
    /// fixed-length binary columns.
    Str {
        len_bytes: u8,
        pad_to: Option<u16>,
        out: StrAs,
    },
    /// ENUM: a 1- or 2-byte index into the labels (from 1; 0 is the empty error value).
    Enum { len: u8, labels: Arc<[String]> },
    /// SET: a bitmask of `len` bytes over the labels.
    Set { len: u8, labels: Arc<[String]> },
    /// BIT(bits): big-endian bytes.
    Bit { bits: u16 },
}

/// Why a value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadValue(pub(crate) &'static str);

impl From<Short> for BadValue {
    fn from(s: Short) -> Self {
        BadValue(s.0)
    }
}

impl ColumnDecoder {
    /// Decode one non-NULL value.
    pub(crate) fn decode(&self, r: &mut Reader<'_>) -> Result<Value, BadValue> {
        Ok(match self {
            ColumnDecoder::Int { len, unsigned } => int(r, *len, *unsigned)?,
            ColumnDecoder::Year => match r.u8()? {
                0 => Value::Int(0),
                y => Value::Int(1900 + i64::from(y)),
            },
            ColumnDecoder::Float => Value::Float32(f32::from_bits(r.u32()?)),
            ColumnDecoder::Double => Value::Float64(f64::from_bits(r.u64()?)),
            ColumnDecoder::Decimal { precision, scale } => {
                let text = decimal(r, *precision, *scale)?;
                Value::Decimal(
                    text.parse::<Decimal>()
                        .map_err(|_| BadValue("bad decimal"))?,
                )
            }
            ColumnDecoder::Date => date3(r.uint_le(3)?),
            ColumnDecoder::Time => time3(r.uint_le(3)?),
            ColumnDecoder::Time2 { fsp } => time2(r, *fsp)?,
            ColumnDecoder::DateTime => datetime8(r.u64()?)?,
            ColumnDecoder::DateTime2 { fsp } => datetime2(r, *fsp)?,
            ColumnDecoder::Timestamp => timestamp(i64::from(r.u32()?), 0),
            ColumnDecoder::Timestamp2 { fsp } => {
                let secs = r.uint_be(4)? as i64;
                timestamp(secs, frac_unsigned(r, *fsp)?)
            }
            ColumnDecoder::Str {
                len_bytes,
                pad_to,
                out,
            } => {
                let n = r.uint_le(usize::from(*len_bytes))?;
                let bytes = r.take(usize::try_from(n).map_err(|_| BadValue("huge value"))?)?;
                string(bytes, *pad_to, *out)?
            }
            ColumnDecoder::Enum { len, labels } => {
                enum_value(r.uint_le(usize::from(*len))?, labels)?
            }
            ColumnDecoder::Set { len, labels } => set_value(r.uint_le(usize::from(*len))?, labels),
            ColumnDecoder::Bit { bits } => {
                let n = usize::from(*bits).div_ceil(8);
                Value::Bits(bits_value(r.take(n)?, *bits))
            }
        })
    }
}

fn int(r: &mut Reader<'_>, len: u8, unsigned: bool) -> Result<Value, BadValue> {
    let raw = r.uint_le(usize::from(len))?;
    if unsigned {
        return Ok(Value::UInt(raw));
    }
    let shift = 64 - 8 * u32::from(len);
    // Sign-extend from the column's width.
    Ok(Value::Int(((raw << shift) as i64) >> shift))
}

/// A character or binary value; fixed binary columns get their stripped 0x00 bytes back.
pub(crate) fn string(bytes: &[u8], pad_to: Option<u16>, out: StrAs) -> Result<Value, BadValue> {
    let padded;
    let bytes = match pad_to {
        Some(n) if bytes.len() < usize::from(n) => {
            let mut v = bytes.to_vec();
            v.resize(usize::from(n), 0);
            padded = v;
            &padded[..]
        }
        _ => bytes,
    };
    Ok(match out {
        StrAs::Bytes => Value::Bytes(bytes.to_vec()),
        StrAs::Text(cs) => Value::Text(
            cs.decode(bytes)
                .ok_or(BadValue("invalid text in its character set"))?,
        ),
        StrAs::Json(cs) => Value::Json(
            cs.decode(bytes)
                .ok_or(BadValue("invalid json text in its character set"))?,
        ),
        StrAs::Uuid => Value::Uuid(
            bytes
                .try_into()
                .map_err(|_| BadValue("uuid is not 16 bytes"))?,
        ),
        StrAs::Inet6 => {
            let a: [u8; 16] = bytes
                .try_into()
                .map_err(|_| BadValue("inet6 is not 16 bytes"))?;
            Value::Text(inet6_text(a))
        }
    })
}

/// MariaDB prints IPv4-mapped and IPv4-compatible addresses with a dotted quad, like std.
fn inet6_text(a: [u8; 16]) -> String {
    let ip = std::net::Ipv6Addr::from(a);
    let compat = a[..12].iter().all(|b| *b == 0) && (a[12] != 0 || a[13] != 0);
    if compat {
        return format!("::{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
    }
    ip.to_string()
}

/// ENUM index to its label (index 0 is the empty string MariaDB stores for invalid input).
pub(crate) fn enum_value(index: u64, labels: &[String]) -> Result<Value, BadValue> {
    if index == 0 {
        return Ok(Value::Enum(String::new()));
    }
    let i = usize::try_from(index - 1).map_err(|_| BadValue("enum index out of range"))?;
    labels
        .get(i)
        .map(|l| Value::Enum(l.clone()))
        .ok_or(BadValue("enum index beyond the column's labels"))
}

/// SET bitmask to its labels, in definition order.
pub(crate) fn set_value(mask: u64, labels: &[String]) -> Value {
    let chosen = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && mask & (1 << i) != 0)
        .map(|(_, l)| l.clone())
        .collect();
    Value::Set(chosen)
}

/// Big-endian BIT bytes to a bit string of `bits` bits, first bit most significant: the low
/// `bits` bits of `be` (zero-extended when it is shorter), shifted to the left edge.
pub(crate) fn bits_value(be: &[u8], bits: u16) -> BitString {
    let nbytes = usize::from(bits).div_ceil(8);
    let mut bytes = vec![0u8; nbytes];
    let src = &be[be.len().saturating_sub(nbytes)..];
    bytes[nbytes - src.len()..].copy_from_slice(src);
    let shift = nbytes * 8 - usize::from(bits);
    if shift > 0 {
        for i in 0..nbytes {
            let next = bytes.get(i + 1).map_or(0, |b| b >> (8 - shift));
            bytes[i] = (bytes[i] << shift) | next;
        }
    }
    BitString {
        len: usize::from(bits),
        bytes,
    }
}

/// A calendar date; zero and partial dates (`0000-00-00`, `2024-00-10`) have no model value
/// and become NULL.
pub(crate) fn date_value(y: i64, m: i64, d: i64) -> Option<Date> {
    let (y, m, d) = (
        i32::try_from(y).ok()?,
        u32::try_from(m).ok()?,
        u32::try_from(d).ok()?,
    );
    Date::from_ymd(y, m, d)
}

/// A DATETIME; NULL when its date part is zero or partial.
pub(crate) fn datetime_value(ymd: (i64, i64, i64), hms: (i64, i64, i64), micros: i64) -> Value {
    match date_value(ymd.0, ymd.1, ymd.2) {
        Some(d) => {
            let t = ((hms.0 * 60 + hms.1) * 60 + hms.2) * MICROS + micros;
            Value::Timestamp(Timestamp::from_parts(d, Time(t)))
        }
        None => Value::Null,
    }
}

fn date3(v: u64) -> Value {
    let v = v as i64;
    date_value(v >> 9, (v >> 5) & 15, v & 31).map_or(Value::Null, Value::Date)
}

fn time3(v: u64) -> Value {
    let v = (((v as u32) << 8) as i32 >> 8) as i64;
    let a = v.abs();
    let micros = ((a / 10_000 * 60 + a / 100 % 100) * 60 + a % 100) * MICROS;
    Value::Time(Time(if v < 0 { -micros } else { micros }))
}

fn datetime8(v: u64) -> Result<Value, BadValue> {
    let (d, t) = ((v / 1_000_000) as i64, (v % 1_000_000) as i64);
    if d / 10_000 > 9999 {
        // Beyond any DATETIME; its timestamp would not fit in 64 bits.
        return Err(BadValue("datetime year above 9999"));
    }
    Ok(datetime_value(
        (d / 10_000, d / 100 % 100, d % 100),
        (t / 10_000, t / 100 % 100, t % 100),
        0,
    ))
}

/// Fractional seconds of the 5.6 temporal forms, as micros (signed for DATETIME2 and TIME2).
fn frac_signed(r: &mut Reader<'_>, fsp: u8) -> Result<i64, BadValue> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => i64::from(r.u8()? as i8) * 10_000,
        3 | 4 => i64::from(r.uint_be(2)? as u16 as i16) * 100,
        5 | 6 => ((r.uint_be(3)? << 40) as i64) >> 40,
        _ => return Err(BadValue("fractional seconds precision above 6")),
    })
}

fn frac_unsigned(r: &mut Reader<'_>, fsp: u8) -> Result<i64, BadValue> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => i64::from(r.u8()?) * 10_000,
        3 | 4 => r.uint_be(2)? as i64 * 100,
        5 | 6 => r.uint_be(3)? as i64,
        _ => return Err(BadValue("fractional seconds precision above 6")),
    })
}

fn timestamp(secs: i64, micros: i64) -> Value {
    if secs == 0 && micros == 0 {
        return Value::Null; // '0000-00-00 00:00:00'
    }
    Value::TimestampTz(Timestamp(secs * MICROS + micros))
}

fn datetime2(r: &mut Reader<'_>, fsp: u8) -> Result<Value, BadValue> {
    let int = r.uint_be(5)? as i64 - 0x80_0000_0000;
    if int < 0 {
        // No DATETIME is before 0000-00-00; (int << 24) + frac would overflow for some.
        return Err(BadValue("datetime with a negative packed value"));
    }
    let packed = (int << 24) + frac_signed(r, fsp)?;
    let packed = packed.abs();
    let (ymdhms, micros) = (packed >> 24, packed % (1 << 24));
    let (ymd, hms) = (ymdhms >> 17, ymdhms % (1 << 17));
    let ym = ymd >> 5;
    Ok(datetime_value(
        (ym / 13, ym % 13, ymd % 32),
        (hms >> 12, (hms >> 6) % 64, hms % 64),
        micros,
    ))
}

fn time2(r: &mut Reader<'_>, fsp: u8) -> Result<Value, BadValue> {
    let packed = match fsp {
        5 | 6 => r.uint_be(6)? as i64 - 0x8000_0000_0000,
        _ => {
            let mut int = r.uint_be(3)? as i64 - 0x80_0000;
            let (mut frac, unit, width) = match fsp {
                0 => (0, 0, 0),
                1 | 2 => (i64::from(r.u8()?), 10_000, 0x100),
                3 | 4 => (r.uint_be(2)? as i64, 100, 0x1_0000),
                _ => return Err(BadValue("fractional seconds precision above 6")),
            };
            if int < 0 && frac != 0 {
                // Negative values store the fraction reversed, for binary sorting.
                int += 1;
                frac -= width;
            }
            (int << 24) + frac * unit
        }
    };
    let neg = packed < 0;
    let p = packed.abs();
    let (hms, micros) = (p >> 24, p % (1 << 24));
    let total = (((hms >> 12) % 1024 * 60 + (hms >> 6) % 64) * 60 + hms % 64) * MICROS + micros;
    Ok(Value::Time(Time(if neg { -total } else { total })))
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// DECIMAL's packed binary form to text with exactly `scale` fractional digits, the way the
/// server prints it.
pub(crate) fn decimal(r: &mut Reader<'_>, precision: u8, scale: u8) -> Result<String, BadValue> {
    let (precision, scale) = (usize::from(precision), usize::from(scale));
    let intg = precision
        .checked_sub(scale)
        .ok_or(BadValue("decimal scale above precision"))?;
    let (intg0, intg0x, frac0, frac0x) = (intg / 9, intg % 9, scale / 9, scale % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let mut buf = [0u8; 40];
    let raw = r.take(size)?;
    let buf = buf
        .get_mut(..size)
        .ok_or(BadValue("decimal wider than 65 digits"))?;
    buf.copy_from_slice(raw);
    let Some(first) = buf.first_mut() else {
        return Ok("0".to_owned());
    };
    let negative = *first & 0x80 == 0;
    *first ^= 0x80;
    if negative {
        buf.iter_mut().for_each(|b| *b = !*b);
    }
    let mut digits = String::with_capacity(precision + 2);
    let mut g = Reader::new(buf);
    let mut group = |g: &mut Reader<'_>, bytes: usize, width: usize| -> Result<(), BadValue> {
        let v = g.uint_be(bytes)?;
        if v >= 10u64.pow(width as u32) {
            return Err(BadValue("decimal digit group out of range"));
        }
        let mut b = itoa::Buffer::new();
        let s = b.format(v);
        (s.len()..width).for_each(|_| digits.push('0'));
        digits.push_str(s);
        Ok(())
    };
    if intg0x > 0 {
        group(&mut g, DIG2BYTES[intg0x], intg0x)?;
    }
    for _ in 0..intg0 {
        group(&mut g, 4, 9)?;
    }
    for _ in 0..frac0 {
        group(&mut g, 4, 9)?;
    }
    if frac0x > 0 {
        group(&mut g, DIG2BYTES[frac0x], frac0x)?;
    }
    let (int_part, frac_part) = digits.split_at(intg);
    let int_part = int_part.trim_start_matches('0');
    let zero = int_part.is_empty() && frac_part.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(digits.len() + 3);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if scale > 0 {
        out.push('.');
        out.push_str(frac_part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        decimal(&mut Reader::new(bytes), p, s).unwrap()
    }

    #[test]
    fn decimals_print_like_the_server() {
        // DECIMAL(10,2) 1234.56 and -1234.56 (examples from the server's decimal2bin).
        assert_eq!(dec(&[0x80, 0x00, 0x04, 0xd2, 0x38], 10, 2), "1234.56");
        assert_eq!(dec(&[0x7f, 0xff, 0xfb, 0x2d, 0xc7], 10, 2), "-1234.56");
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x00, 0x05], 10, 2), "0.05");
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x00, 0x00], 10, 2), "0.00");
        assert_eq!(dec(&[0x80, 0x01], 4, 0), "1");
    }

    #[test]
    fn integers_keep_their_sign() {
        let v = |b: &[u8], len, unsigned| int(&mut Reader::new(b), len, unsigned).unwrap();
        assert_eq!(v(&[0xfb, 0xff, 0xff], 3, false), Value::Int(-5));
        assert_eq!(v(&[0xfb, 0xff, 0xff], 3, true), Value::UInt(16_777_211));
        assert_eq!(v(&[0xff; 8], 8, true), Value::UInt(u64::MAX));
        assert_eq!(v(&[0x80], 1, false), Value::Int(-128));
    }

    #[test]
    fn bits_are_left_aligned() {
        let b = bits_value(&[0x02, 0xaa], 10);
        assert_eq!(b.to_string(), "1010101010");
        assert_eq!(
            bits_value(&[0xff, 0x02, 0xaa], 10),
            b,
            "extra high bytes are dropped"
        );
        assert_eq!(bits_value(&[0x05], 3).to_string(), "101");
        assert_eq!(bits_value(&[0x01], 9).to_string(), "000000001");
    }

    #[test]
    fn bits_wider_than_128_do_not_panic() {
        // Found by the `binlog` fuzz target: a table map claiming BIT(136) made the value
        // 17 bytes, past the 16 a u128 holds.
        let mut be = vec![0u8; 17];
        be[0] = 0x80;
        be[16] = 0x01;
        let b = bits_value(&be, 136);
        assert_eq!((b.len, b.bytes.len()), (136, 17));
        assert_eq!((b.bytes[0], b.bytes[16]), (0x80, 0x01));
    }

    #[test]
    fn fixed_binary_gets_its_zero_bytes_back() {
        let v = string(&[0x12], Some(16), StrAs::Uuid).unwrap();
        let mut want = [0u8; 16];
        want[0] = 0x12;
        assert_eq!(v, Value::Uuid(want));
    }

    #[test]
    fn old_datetime_beyond_year_9999_is_an_error_not_an_overflow() {
        // Found by the `binlog` fuzz target: an 8-byte DATETIME of year ~1.8e9 overflowed
        // the timestamp's microseconds.
        let err = datetime8(u64::MAX).unwrap_err();
        assert_eq!(err, BadValue("datetime year above 9999"));
        let v = datetime8(20_240_229_235_959).unwrap();
        assert_eq!(v, datetime_value((2024, 2, 29), (23, 59, 59), 0));
    }

    #[test]
    fn negative_datetime2_is_an_error_not_an_overflow() {
        // Found by the `binlog` fuzz target: packed value -2^39 overflowed `abs()`.
        let err = datetime2(&mut Reader::new(&[0, 0, 0, 0, 0]), 0).unwrap_err();
        assert_eq!(err, BadValue("datetime with a negative packed value"));
        // '0000-00-00 00:00:00.0' with fsp 1 still decodes (to NULL, a zero date).
        let v = datetime2(&mut Reader::new(&[0x80, 0, 0, 0, 0, 0]), 1).unwrap();
        assert_eq!(v, Value::Null);
    }

    #[test]
    fn time2_negative_fractions() {
        // TIME(1) '-00:00:00.1' is stored as int part -1 with fraction 0x100 - 10.
        let int = (0x80_0000u64 - 1).to_be_bytes();
        let bytes = [int[5], int[6], int[7], 0xf6];
        let v = time2(&mut Reader::new(&bytes), 1).unwrap();
        assert_eq!(v, Value::Time(Time(-100_000)));
    }
}
