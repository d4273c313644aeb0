//! PostgreSQL types: what each OID is, and how its text form becomes a [`Value`].
//!
//! The replication session runs with `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601`,
//! `extra_float_digits=3` and `bytea_output=hex` (see the connection's startup parameters), so
//! every text form parsed here is the unambiguous one. Types ordo does not know pass through as
//! [`Value::Text`] with their type name in the schema.

use std::collections::HashMap;

use ordo_kcop::value::{Date, Decimal, Interval, Time, Timestamp, ZoneOffset, parse_uuid};
use ordo_kcop::{BitString, ColumnKind, Value};

/// How to decode a type's text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// bool
    Bool,
    /// int2, int4, int8, oid
    Int(u8),
    /// float4
    Float4,
    /// float8
    Float8,
    /// numeric
    Numeric,
    /// money (lc_monetary C form, `$1,234.56`)
    Money,
    /// text, varchar, bpchar, name, char, and pass-through types
    Text,
    /// bytea (hex output)
    Bytea,
    /// date
    Date,
    /// time
    Time,
    /// timetz
    TimeTz,
    /// timestamp
    Timestamp,
    /// timestamptz
    TimestampTz,
    /// interval
    Interval,
    /// json, jsonb
    Json,
    /// uuid
    Uuid,
    /// bit, varbit
    Bits,
    /// An enum type.
    Enum,
    /// Array of the element type.
    Array(Box<PgType>),
    /// Anything else: text.
    Other,
}

/// A resolved type: how to decode it and its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// Decoder.
    pub ty: PgType,
    /// Type name as `format_type` would print it without modifiers, e.g. `numeric`.
    pub name: String,
    /// Enum labels, for enums.
    pub labels: Vec<String>,
    /// The modifier a domain puts on its base type (`numeric(12,3)`), else -1.
    pub typmod: i32,
}

impl TypeInfo {
    /// A type decoded as text, under `name`.
    pub fn other(name: String) -> TypeInfo {
        TypeInfo {
            ty: PgType::Other,
            name,
            labels: Vec::new(),
            typmod: -1,
        }
    }
}

/// The built-in types by OID, and array types of them.
pub fn builtin(oid: u32) -> Option<TypeInfo> {
    let (ty, name) = match oid {
        16 => (PgType::Bool, "boolean"),
        21 => (PgType::Int(16), "smallint"),
        23 => (PgType::Int(32), "integer"),
        20 => (PgType::Int(64), "bigint"),
        26 => (PgType::Int(64), "oid"),
        700 => (PgType::Float4, "real"),
        701 => (PgType::Float8, "double precision"),
        1700 => (PgType::Numeric, "numeric"),
        790 => (PgType::Money, "money"),
        25 => (PgType::Text, "text"),
        1043 => (PgType::Text, "character varying"),
        1042 => (PgType::Text, "character"),
        19 => (PgType::Text, "name"),
        18 => (PgType::Text, "\"char\""),
        17 => (PgType::Bytea, "bytea"),
        1082 => (PgType::Date, "date"),
        1083 => (PgType::Time, "time without time zone"),
        1266 => (PgType::TimeTz, "time with time zone"),
        1114 => (PgType::Timestamp, "timestamp without time zone"),
        1184 => (PgType::TimestampTz, "timestamp with time zone"),
        1186 => (PgType::Interval, "interval"),
        114 => (PgType::Json, "json"),
        3802 => (PgType::Json, "jsonb"),
        2950 => (PgType::Uuid, "uuid"),
        1560 => (PgType::Bits, "bit"),
        1562 => (PgType::Bits, "bit varying"),
        869 => (PgType::Other, "inet"),
        650 => (PgType::Other, "cidr"),
        829 => (PgType::Other, "macaddr"),
        774 => (PgType::Other, "macaddr8"),
        142 => (PgType::Other, "xml"),
        _ => return builtin_array(oid),
    };
    Some(TypeInfo {
        ty,
        name: name.to_owned(),
        labels: Vec::new(),
        typmod: -1,
    })
}

fn builtin_array(oid: u32) -> Option<TypeInfo> {
    let elem = match oid {
        1000 => 16,
        1005 => 21,
        1007 => 23,
        1016 => 20,
        1028 => 26,
        1021 => 700,
        1022 => 701,
        1231 => 1700,
        791 => 790,
        1009 => 25,
        1015 => 1043,
        1014 => 1042,
        1003 => 19,
        1001 => 17,
        1182 => 1082,
        1183 => 1083,
        1270 => 1266,
        1115 => 1114,
        1185 => 1184,
        1187 => 1186,
        199 => 114,
        3807 => 3802,
        2951 => 2950,
        1561 => 1560,
        1563 => 1562,
        1041 => 869,
        651 => 650,
        1040 => 829,
        _ => return None,
    };
    let e = builtin(elem)?;
    Some(TypeInfo {
        ty: PgType::Array(Box::new(e.ty)),
        name: format!("{}[]", e.name),
        labels: Vec::new(),
        typmod: -1,
    })
}

/// The type name with its modifier, like `format_type(oid, typmod)`: `numeric(10,2)`,
/// `character varying(20)`, `timestamp(3) with time zone`, `interval day to second(3)`,
/// `numeric(10,2)[]`.
pub fn display_name(info: &TypeInfo, typmod: i32) -> String {
    if typmod < 0 {
        return info.name.clone();
    }
    let (base, dims) = match info.name.find("[]") {
        Some(i) => info.name.split_at(i),
        None => (info.name.as_str(), ""),
    };
    let with_mod = match base {
        "numeric" if typmod >= 4 => {
            let m = typmod - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        "character varying" | "character" if typmod >= 4 => format!("{base}({})", typmod - 4),
        "bit" | "bit varying" => format!("{base}({typmod})"),
        "time without time zone"
        | "time with time zone"
        | "timestamp without time zone"
        | "timestamp with time zone" => match base.split_once(' ') {
            Some((head, zone)) => format!("{head}({typmod}) {zone}"),
            None => base.to_owned(),
        },
        "interval" => format!("interval{}", interval_typmod(typmod)),
        _ => base.to_owned(),
    };
    format!("{with_mod}{dims}")
}

/// `intervaltypmodout`: the field range, then the precision unless it is the full one.
fn interval_typmod(typmod: i32) -> String {
    const YEAR: i32 = 1 << 2;
    const MONTH: i32 = 1 << 1;
    const DAY: i32 = 1 << 3;
    const HOUR: i32 = 1 << 10;
    const MINUTE: i32 = 1 << 11;
    const SECOND: i32 = 1 << 12;
    let range = (typmod >> 16) & 0x7fff;
    let fields = match range {
        YEAR => " year",
        MONTH => " month",
        DAY => " day",
        HOUR => " hour",
        MINUTE => " minute",
        SECOND => " second",
        r if r == YEAR | MONTH => " year to month",
        r if r == DAY | HOUR => " day to hour",
        r if r == DAY | HOUR | MINUTE => " day to minute",
        r if r == DAY | HOUR | MINUTE | SECOND => " day to second",
        r if r == HOUR | MINUTE => " hour to minute",
        r if r == HOUR | MINUTE | SECOND => " hour to second",
        r if r == MINUTE | SECOND => " minute to second",
        _ => "",
    };
    match typmod & 0xffff {
        0xffff => fields.to_owned(),
        precision => format!("{fields}({precision})"),
    }
}

/// The model's column kind for a type; `typmod` is the column's modifier (for arrays, the
/// element's), else the domain's.
pub fn column_kind(info: &TypeInfo, typmod: i32) -> ColumnKind {
    let typmod = if typmod >= 0 { typmod } else { info.typmod };
    kind_of(&info.ty, &info.labels, typmod)
}

fn kind_of(ty: &PgType, labels: &[String], numeric_mod: i32) -> ColumnKind {
    match ty {
        PgType::Bool => ColumnKind::Bool,
        PgType::Int(bits) => ColumnKind::Int(*bits),
        PgType::Float4 => ColumnKind::Float32,
        PgType::Float8 => ColumnKind::Float64,
        PgType::Numeric if numeric_mod >= 4 => {
            let m = numeric_mod - 4;
            ColumnKind::Decimal {
                precision: Some(((m >> 16) & 0xffff) as u32),
                scale: Some((m & 0xffff) as u32),
            }
        }
        PgType::Numeric => ColumnKind::Decimal {
            precision: None,
            scale: None,
        },
        PgType::Money => ColumnKind::Decimal {
            precision: None,
            scale: Some(2),
        },
        PgType::Text | PgType::Other => ColumnKind::Text,
        PgType::Bytea => ColumnKind::Bytes,
        PgType::Date => ColumnKind::Date,
        PgType::Time => ColumnKind::Time,
        PgType::TimeTz => ColumnKind::TimeTz,
        PgType::Timestamp => ColumnKind::Timestamp,
        PgType::TimestampTz => ColumnKind::TimestampTz,
        PgType::Interval => ColumnKind::Interval,
        PgType::Json => ColumnKind::Json,
        PgType::Uuid => ColumnKind::Uuid,
        PgType::Bits => ColumnKind::Bits,
        PgType::Enum => ColumnKind::Enum(labels.to_vec()),
        PgType::Array(e) => ColumnKind::Array(Box::new(kind_of(e, labels, numeric_mod))),
    }
}

/// A text form that does not parse as its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read a {ty} value from `{text}`{hint}")]
pub struct DecodeError {
    /// Type name.
    pub ty: &'static str,
    /// The text (truncated).
    pub text: String,
    /// Why, and what to do, starting with `; ` (empty for a plain mismatch between the server
    /// and ordo, which is a bug).
    pub hint: &'static str,
}

fn bad(ty: &'static str, text: &str) -> DecodeError {
    DecodeError {
        ty,
        text: text.chars().take(64).collect(),
        hint: "",
    }
}

/// A timestamp PostgreSQL accepts but ordo's model cannot hold.
const TIMESTAMP_RANGE: &str = "; ordo's timestamps end at 294247-01-10 04:00:54.775806 UTC (microseconds since 1970 in 64 bits): change the value or leave the table out of the mappings";

/// Decode one value's text form.
///
/// # Errors
/// When the text is not a valid value of the type (a server/ordo mismatch, never user data).
pub fn decode_text(ty: &PgType, text: &str) -> Result<Value, DecodeError> {
    Ok(match ty {
        PgType::Bool => Value::Bool(text == "t"),
        PgType::Int(_) => Value::Int(text.parse().map_err(|_| bad("integer", text))?),
        PgType::Float4 => Value::Float32(parse_float(text).ok_or_else(|| bad("real", text))?),
        PgType::Float8 => {
            Value::Float64(parse_float(text).ok_or_else(|| bad("double precision", text))?)
        }
        PgType::Numeric => Value::Decimal(text.parse().map_err(|_| bad("numeric", text))?),
        PgType::Money => Value::Decimal(parse_money(text).ok_or_else(|| bad("money", text))?),
        PgType::Text | PgType::Other => Value::Text(text.to_owned()),
        PgType::Enum => Value::Enum(text.to_owned()),
        PgType::Bytea => Value::Bytes(parse_bytea(text).ok_or_else(|| bad("bytea", text))?),
        PgType::Date => Value::Date(parse_date(text).ok_or_else(|| bad("date", text))?),
        PgType::Time => Value::Time(text.parse().map_err(|_| bad("time", text))?),
        PgType::TimeTz => {
            let (t, z) = parse_timetz(text).ok_or_else(|| bad("time with time zone", text))?;
            Value::TimeTz(t, z)
        }
        PgType::Timestamp => Value::Timestamp(parse_timestamp(text, false, "timestamp")?),
        PgType::TimestampTz => {
            Value::TimestampTz(parse_timestamp(text, true, "timestamp with time zone")?)
        }
        PgType::Interval => {
            Value::Interval(parse_interval(text).ok_or_else(|| bad("interval", text))?)
        }
        PgType::Json => Value::Json(text.to_owned()),
        PgType::Uuid => Value::Uuid(parse_uuid(text).map_err(|_| bad("uuid", text))?),
        PgType::Bits => Value::Bits(
            text.parse::<BitString>()
                .map_err(|_| bad("bit string", text))?,
        ),
        PgType::Array(elem) => parse_array(elem, text)?,
    })
}

/// A float's text form, parsed straight into its own width (going through `f64` would round
/// twice).
fn parse_float<F: std::str::FromStr>(text: &str) -> Option<F> {
    let text = match text {
        "Infinity" => "inf",
        "-Infinity" => "-inf",
        other => other,
    };
    text.parse().ok()
}

fn parse_money(text: &str) -> Option<Decimal> {
    let neg = text.starts_with('-') || text.starts_with('(');
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let s = if neg { format!("-{digits}") } else { digits };
    s.parse().ok()
}

fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.strip_prefix("\\x")?).ok()
}

/// `YYYY-MM-DD`, `YYYY-MM-DD BC`, `infinity`, `-infinity`.
fn parse_date(text: &str) -> Option<Date> {
    match text.strip_suffix(" BC") {
        Some(d) => parse_ymd(d, true),
        None => match text {
            "infinity" => Some(Date::INFINITY),
            "-infinity" => Some(Date::NEG_INFINITY),
            _ => parse_ymd(text, false),
        },
    }
}

/// `YYYY-MM-DD` (the year has at least four digits); with `bc`, the year is before Christ, so
/// year `n` BC is the astronomical year `1 - n` (5 BC is a leap year).
fn parse_ymd(text: &str, bc: bool) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    Date::from_ymd(if bc { 1 - y } else { y }, m, d)
}

/// Split a trailing UTC offset (`+HH`, `-HH:MM`, `+HH:MM:SS`) off a time text.
fn split_offset(text: &str) -> Option<(&str, ZoneOffset)> {
    let at = text.rfind(['+', '-'])?;
    let (t, z) = text.split_at(at);
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let mut parts = z[1..].split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let s: u32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let secs = h.checked_mul(3600)?.checked_add(m.checked_mul(60)?)?;
    let secs = i32::try_from(secs.checked_add(s)?).ok()?;
    Some((t, ZoneOffset(sign * secs)))
}

fn parse_timetz(text: &str) -> Option<(Time, ZoneOffset)> {
    let (t, z) = split_offset(text)?;
    Some((t.parse().ok()?, z))
}

/// `YYYY-MM-DD HH:MM:SS[.f][+HH[:MM]][ BC]`; with `tz`, the offset is applied to get UTC.
fn parse_timestamp(text: &str, tz: bool, ty: &'static str) -> Result<Timestamp, DecodeError> {
    match text {
        "infinity" => return Ok(Timestamp::INFINITY),
        "-infinity" => return Ok(Timestamp::NEG_INFINITY),
        _ => {}
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let (date_text, time_text) = body.split_once(' ').ok_or_else(|| bad(ty, text))?;
    let (time_text, offset) = if tz {
        split_offset(time_text).ok_or_else(|| bad(ty, text))?
    } else {
        (time_text, ZoneOffset(0))
    };
    let date = parse_ymd(date_text, bc).ok_or_else(|| bad(ty, text))?;
    let time: Time = time_text.parse().map_err(|_| bad(ty, text))?;
    i64::from(date.0)
        .checked_mul(86_400_000_000)
        .and_then(|m| m.checked_add(time.0))
        .and_then(|m| m.checked_sub(i64::from(offset.0) * 1_000_000))
        .map(Timestamp)
        .filter(|t| t.is_finite())
        .ok_or_else(|| DecodeError {
            hint: TIMESTAMP_RANGE,
            ..bad(ty, text)
        })
}

/// ISO 8601 interval (`IntervalStyle=iso_8601`): `P1Y2M3DT4H5M6.5S`, fields may be negative.
fn parse_interval(text: &str) -> Option<Interval> {
    let body = text.strip_prefix('P')?;
    let (date_part, time_part) = body.split_once('T').unwrap_or((body, ""));
    let mut iv = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };
    for (num, unit) in iso_fields(date_part)? {
        let n: i32 = num.parse().ok()?;
        match unit {
            'Y' => iv.months = iv.months.checked_add(n.checked_mul(12)?)?,
            'M' => iv.months = iv.months.checked_add(n)?,
            'W' => iv.days = iv.days.checked_add(n.checked_mul(7)?)?,
            'D' => iv.days = iv.days.checked_add(n)?,
            _ => return None,
        }
    }
    for (num, unit) in iso_fields(time_part)? {
        let micros = match unit {
            'H' => num.parse::<i64>().ok()?.checked_mul(3_600_000_000)?,
            'M' => num.parse::<i64>().ok()?.checked_mul(60_000_000)?,
            'S' => seconds_to_micros(num)?,
            _ => return None,
        };
        iv.micros = iv.micros.checked_add(micros)?;
    }
    Some(iv)
}

fn iso_fields(s: &str) -> Option<Vec<(&str, char)>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            if i == start {
                return None;
            }
            out.push((&s[start..i], c));
            start = i + 1;
        }
    }
    (start == s.len()).then_some(out)
}

fn seconds_to_micros(num: &str) -> Option<i64> {
    let neg = num.starts_with('-');
    let body = num.trim_start_matches('-');
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if frac.len() > 6 {
        return None;
    }
    let mut micros = int.parse::<i64>().ok()?.checked_mul(1_000_000)?;
    if !frac.is_empty() {
        micros += frac.parse::<i64>().ok()? * 10_i64.pow(6 - frac.len() as u32);
    }
    Some(if neg { -micros } else { micros })
}

/// Parse an array's text form: `{a,b,"c d",NULL,{nested}}`, optionally prefixed by bounds
/// `[1:3]=`.
fn parse_array(elem: &PgType, text: &str) -> Result<Value, DecodeError> {
    let body = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let mut p = ArrayParser {
        s: body.as_bytes(),
        pos: 0,
    };
    let v = p.array(elem).ok_or_else(|| bad("array", text))?;
    if p.pos != p.s.len() {
        return Err(bad("array", text));
    }
    Ok(v)
}

struct ArrayParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn array(&mut self, elem: &PgType) -> Option<Value> {
        if self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.element(elem)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn element(&mut self, elem: &PgType) -> Option<Value> {
        match self.peek()? {
            b'{' => self.array(elem),
            b'"' => {
                self.pos += 1;
                let mut buf = Vec::new();
                loop {
                    match self.peek()? {
                        b'\\' => {
                            buf.push(*self.s.get(self.pos + 1)?);
                            self.pos += 2;
                        }
                        b'"' => {
                            self.pos += 1;
                            break;
                        }
                        b => {
                            buf.push(b);
                            self.pos += 1;
                        }
                    }
                }
                decode_text(elem, std::str::from_utf8(&buf).ok()?).ok()
            }
            _ => {
                let start = self.pos;
                while !matches!(self.peek()?, b',' | b'}') {
                    self.pos += 1;
                }
                let raw = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
                if raw == "NULL" {
                    Some(Value::Null)
                } else {
                    decode_text(elem, raw).ok()
                }
            }
        }
    }
}

/// Types resolved so far: built-ins plus user types (enums, domains, arrays of them) looked up
/// in the catalog when a relation uses them.
#[derive(Debug, Default)]
pub struct TypeCache {
    user: HashMap<u32, TypeInfo>,
}

impl TypeCache {
    /// The type for `oid`, if known (built-in or already looked up).
    pub fn get(&self, oid: u32) -> Option<TypeInfo> {
        builtin(oid).or_else(|| self.user.get(&oid).cloned())
    }

    /// Remember a user type.
    pub fn insert(&mut self, oid: u32, info: TypeInfo) {
        self.user.insert(oid, info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ty: PgType, text: &str) -> Value {
        decode_text(&ty, text).unwrap()
    }

    #[test]
    fn timestamps_with_zone_become_utc() {
        assert_eq!(
            d(PgType::TimestampTz, "2024-05-01 12:00:00.5+02"),
            Value::TimestampTz("2024-05-01T10:00:00.5".parse().unwrap())
        );
        assert_eq!(
            d(PgType::Timestamp, "0044-03-15 12:00:00 BC").to_owned(),
            Value::Timestamp("-0043-03-15T12:00:00".parse().unwrap())
        );
        assert_eq!(
            d(PgType::TimestampTz, "infinity"),
            Value::TimestampTz(Timestamp::INFINITY)
        );
    }

    #[test]
    fn bc_dates_use_the_proleptic_leap_years() {
        // 5 BC is astronomical year -4, a leap year.
        assert_eq!(
            d(PgType::Date, "0005-02-29 BC"),
            Value::Date(Date::from_ymd(-4, 2, 29).unwrap())
        );
        assert_eq!(
            d(PgType::Timestamp, "0005-02-29 10:00:00 BC"),
            Value::Timestamp("-0004-02-29T10:00:00".parse().unwrap())
        );
        assert!(decode_text(&PgType::Date, "0004-02-29 BC").is_err());
        assert_eq!(
            d(PgType::Date, "-infinity"),
            Value::Date(Date::NEG_INFINITY)
        );
    }

    #[test]
    fn timestamps_past_the_model_are_errors_not_panics() {
        let e = decode_text(&PgType::Timestamp, "294276-12-31 23:59:59.999999").unwrap_err();
        assert!(e.to_string().contains("294247-01-10"), "{e}");
        assert!(decode_text(&PgType::TimestampTz, "294247-01-10 04:00:54.775806+00").is_ok());
        assert!(decode_text(&PgType::TimestampTz, "294247-01-10 04:00:54.775807+00").is_err());
    }

    #[test]
    fn huge_zone_offsets_are_errors_not_overflows() {
        // Found by the `pgoutput` fuzz target: `+2147483647` hours overflowed the seconds.
        let text = "2024-05-01 12:00:00+2147483647";
        assert!(decode_text(&PgType::TimestampTz, text).is_err());
        assert!(decode_text(&PgType::TimeTz, "12:00:00-99999999:99999999").is_err());
        assert_eq!(
            d(PgType::TimestampTz, "2024-05-01 12:00:00-05:30:15"),
            Value::TimestampTz("2024-05-01T17:30:15".parse().unwrap())
        );
    }

    #[test]
    fn floats_parse_at_their_own_width() {
        assert_eq!(d(PgType::Float4, "0.1"), Value::Float32(0.1));
        assert_eq!(
            d(PgType::Float4, "-Infinity"),
            Value::Float32(f32::NEG_INFINITY)
        );
        assert!(matches!(d(PgType::Float8, "NaN"), Value::Float64(f) if f.is_nan()));
    }

    #[test]
    fn intervals_parse_iso() {
        assert_eq!(
            d(PgType::Interval, "P1Y2M-3DT4H5M-6.25S"),
            Value::Interval(Interval {
                months: 14,
                days: -3,
                micros: 4 * 3_600_000_000 + 5 * 60_000_000 - 6_250_000
            })
        );
        assert_eq!(
            d(PgType::Interval, "PT0S"),
            Value::Interval(Interval {
                months: 0,
                days: 0,
                micros: 0
            })
        );
    }

    #[test]
    fn arrays_nest_and_quote() {
        let v = d(
            PgType::Array(Box::new(PgType::Text)),
            r#"{{a,"b,c"},{NULL,"d\"e"}}"#,
        );
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Array(vec![Value::Text("a".into()), Value::Text("b,c".into())]),
                Value::Array(vec![Value::Null, Value::Text("d\"e".into())]),
            ])
        );
        assert_eq!(
            d(PgType::Array(Box::new(PgType::Int(32))), "[0:1]={1,2}"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
    }

    #[test]
    fn money_and_numeric_stay_exact() {
        assert_eq!(
            d(PgType::Money, "-$1,234.56"),
            Value::Decimal("-1234.56".parse().unwrap())
        );
        assert_eq!(
            d(PgType::Numeric, "NaN"),
            Value::Decimal("NaN".parse().unwrap())
        );
        assert_eq!(d(PgType::Bytea, "\\x00ff"), Value::Bytes(vec![0, 255]));
    }

    #[test]
    fn type_names_carry_modifiers() {
        let info = builtin(1700).unwrap();
        assert_eq!(display_name(&info, (10 << 16 | 2) + 4), "numeric(10,2)");
        let info = builtin(1231).unwrap();
        assert_eq!(display_name(&info, (10 << 16 | 2) + 4), "numeric(10,2)[]");
        let info = builtin(1184).unwrap();
        assert_eq!(display_name(&info, 3), "timestamp(3) with time zone");
        let info = builtin(1083).unwrap();
        assert_eq!(display_name(&info, 0), "time(0) without time zone");
        let info = builtin(1186).unwrap();
        assert_eq!(display_name(&info, 0x7fff_0003), "interval(3)");
        assert_eq!(
            display_name(&info, ((8 | 1024 | 2048 | 4096) << 16) | 0xffff),
            "interval day to second"
        );
        assert_eq!(
            display_name(&info, (6 << 16) | 0xffff),
            "interval year to month"
        );
    }
}
