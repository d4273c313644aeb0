//! Typed column values, exactly as the source sent them.
//!
//! Every value a PostgreSQL or MariaDB/MySQL row can hold maps to one [`Value`] variant without
//! loss: integers keep their signedness, decimals stay exact text (never `f64`), timestamps keep
//! microseconds, and the two markers [`Value::Unchanged`] and [`Value::NotInImage`] say that the
//! source did not send a value, which is never the same as SQL `NULL`.

use std::fmt;
use std::str::FromStr;

/// One column value of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// The source did not send this value because it did not change (PostgreSQL's unchanged
    /// TOAST datum). The consumer's copy of the row still holds the previous value.
    Unchanged,
    /// The column is not part of this image (a key-only old image: only the replica identity
    /// columns are present). Its value is unknown, not `NULL`.
    NotInImage,
    /// Boolean.
    Bool(bool),
    /// Signed integer up to 64 bits (smallint, int, bigint, tinyint..bigint signed, year).
    Int(i64),
    /// Unsigned integer up to 64 bits (MySQL `BIGINT UNSIGNED` and friends).
    UInt(u64),
    /// Single-precision float (`real`, `FLOAT`), kept as sent so it prints as the source does.
    Float32(f32),
    /// Double-precision float (`double precision`, `DOUBLE`).
    Float64(f64),
    /// Exact decimal (`numeric`, `DECIMAL`, `money` as its numeric value).
    Decimal(Decimal),
    /// Character data (text, varchar, char, and any type passed through as text).
    Text(String),
    /// Binary data (bytea, BLOB, BINARY).
    Bytes(Vec<u8>),
    /// Calendar date.
    Date(Date),
    /// Time of day without zone.
    Time(Time),
    /// Time of day with a UTC offset.
    TimeTz(Time, ZoneOffset),
    /// Timestamp without time zone (wall-clock), microseconds.
    Timestamp(Timestamp),
    /// Timestamp with time zone, as an instant in UTC, microseconds.
    TimestampTz(Timestamp),
    /// Interval (PostgreSQL keeps months, days and microseconds apart).
    Interval(Interval),
    /// JSON document as text, exactly as the source holds it.
    Json(String),
    /// UUID.
    Uuid([u8; 16]),
    /// Array; multi-dimensional arrays nest.
    Array(Vec<Value>),
    /// Enum label.
    Enum(String),
    /// Set of labels (MySQL `SET`).
    Set(Vec<String>),
    /// Bit string (`bit`, `varbit`, MySQL `BIT`).
    Bits(BitString),
}

impl Value {
    /// Whether this is one of the two markers that stand for "no value sent".
    pub fn is_marker(&self) -> bool {
        matches!(self, Value::Unchanged | Value::NotInImage)
    }
}

/// An error parsing a value from its text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{text}`: {reason}")]
pub struct ParseValueError {
    /// What was being parsed (e.g. "decimal").
    pub kind: &'static str,
    /// The offending text (truncated to 64 bytes).
    pub text: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl ParseValueError {
    fn new(kind: &'static str, text: &str, reason: &'static str) -> Self {
        let mut end = text.len().min(64);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            kind,
            text: text[..end].to_owned(),
            reason,
        }
    }
}

/// An exact decimal number kept in canonical text form: an optional `-`, digits, an optional
/// `.` and digits; or one of `NaN`, `Infinity`, `-Infinity` (PostgreSQL `numeric` has them).
///
/// Trailing fractional zeros are kept: `1.50` with scale 2 is not the same column value as `1.5`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a finite number (not NaN or an infinity).
    pub fn is_finite(&self) -> bool {
        !matches!(self.0.as_str(), "NaN" | "Infinity" | "-Infinity")
    }

    /// Digits after the decimal point (0 for integers and non-finite values).
    pub fn scale(&self) -> u32 {
        match self.0.split_once('.') {
            Some((_, frac)) if self.is_finite() => frac.len() as u32,
            _ => 0,
        }
    }

    /// The unscaled integer as a sign and decimal digits (no leading zeros, "0" for zero),
    /// e.g. `-12.50` -> `(true, "1250")`. `None` for non-finite values.
    pub fn unscaled(&self) -> Option<(bool, String)> {
        if !self.is_finite() {
            return None;
        }
        let (neg, body) = match self.0.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.0.as_str()),
        };
        let digits: String = body.chars().filter(|c| *c != '.').collect();
        let trimmed = digits.trim_start_matches('0');
        let digits = if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        };
        let neg = neg && digits != "0";
        Some((neg, digits))
    }
}

impl FromStr for Decimal {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NaN" | "Infinity" | "-Infinity" => return Ok(Decimal(s.to_owned())),
            _ => {}
        }
        let body = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) {
            return Err(ParseValueError::new(
                "decimal",
                s,
                "expected digits before the point",
            ));
        }
        if let Some(f) = frac
            && (f.is_empty() || !all_digits(f))
        {
            return Err(ParseValueError::new(
                "decimal",
                s,
                "expected digits after the point",
            ));
        }
        Ok(Decimal(s.to_owned()))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// A calendar date as days since 1970-01-01 (proleptic Gregorian).
///
/// Like PostgreSQL itself, `i32::MAX` and `i32::MIN` stand for `infinity` and `-infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i32);

impl Date {
    /// `infinity`.
    pub const INFINITY: Date = Date(i32::MAX);
    /// `-infinity`.
    pub const NEG_INFINITY: Date = Date(i32::MIN);

    /// The date for a year, month (1-12) and day (1-31), if valid.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date(days_from_civil(year, month, day)))
    }

    /// Year, month and day.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Date::INFINITY => f.write_str("infinity"),
            Date::NEG_INFINITY => f.write_str("-infinity"),
            d => write_ymd(f, d.ymd()),
        }
    }
}

impl FromStr for Date {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "infinity" => return Ok(Date::INFINITY),
            "-infinity" => return Ok(Date::NEG_INFINITY),
            _ => {}
        }
        parse_ymd(s).ok_or_else(|| ParseValueError::new("date", s, "expected YYYY-MM-DD"))
    }
}

fn write_ymd(f: &mut fmt::Formatter<'_>, (y, m, d): (i32, u32, u32)) -> fmt::Result {
    if y <= 0 {
        // ISO 8601 astronomical years: 0 is 1 BC.
        write!(f, "-{:04}-{m:02}-{d:02}", -(y as i64))
    } else {
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn parse_ymd(s: &str) -> Option<Date> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut parts = body.splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    Date::from_ymd(if neg { -y } else { y }, m, d)
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = i64::from(z) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// A time of day as microseconds since midnight (`0..=86_400_000_000`; PostgreSQL allows
/// `24:00:00`). MySQL `TIME` can be negative or exceed a day (an elapsed time); such values
/// are kept as they are and printed as `[-]HHH:MM:SS[.ffffff]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let us = self.0.unsigned_abs();
        let secs = us / 1_000_000;
        let frac = us % 1_000_000;
        if neg {
            f.write_str("-")?;
        }
        write!(
            f,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        write_frac(f, frac)
    }
}

fn write_frac(f: &mut fmt::Formatter<'_>, frac: u64) -> fmt::Result {
    if frac == 0 {
        return Ok(());
    }
    let text = format!("{frac:06}");
    write!(f, ".{}", text.trim_end_matches('0'))
}

impl FromStr for Time {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hms(s)
            .map(Time)
            .ok_or_else(|| ParseValueError::new("time", s, "expected HH:MM:SS[.ffffff]"))
    }
}

fn parse_hms(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = match body.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (body, None),
    };
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = parts.next()?.parse().ok()?;
    if !(0..60).contains(&m) || !(0..=60).contains(&sec) || h < 0 {
        return None;
    }
    let micros = match frac {
        None => 0,
        Some(fr) if !fr.is_empty() && fr.len() <= 6 && fr.bytes().all(|b| b.is_ascii_digit()) => {
            fr.parse::<i64>().ok()? * 10_i64.pow(6 - fr.len() as u32)
        }
        Some(_) => return None,
    };
    let total = ((h * 60 + m) * 60 + sec) * MICROS_PER_SEC + micros;
    Some(if neg { -total } else { total })
}

/// A UTC offset in seconds east of Greenwich.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneOffset(pub i32);

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, a / 60 % 60)?;
        if !a.is_multiple_of(60) {
            write!(f, ":{:02}", a % 60)?;
        }
        Ok(())
    }
}

/// A timestamp as microseconds since 1970-01-01 00:00:00 (UTC for `TimestampTz`,
/// wall-clock for `Timestamp`). `i64::MAX` and `i64::MIN` stand for `infinity` and
/// `-infinity`, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `infinity`.
    pub const INFINITY: Timestamp = Timestamp(i64::MAX);
    /// `-infinity`.
    pub const NEG_INFINITY: Timestamp = Timestamp(i64::MIN);

    /// Whether this is a real instant (not an infinity).
    pub fn is_finite(self) -> bool {
        self != Self::INFINITY && self != Self::NEG_INFINITY
    }

    /// Milliseconds since the epoch, rounded towards negative infinity.
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The date and the time of day.
    pub fn split(self) -> (Date, Time) {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        (Date(days as i32), Time(self.0.rem_euclid(MICROS_PER_DAY)))
    }

    /// Build from a date and a time of day.
    pub fn from_parts(date: Date, time: Time) -> Timestamp {
        Timestamp(i64::from(date.0) * MICROS_PER_DAY + time.0)
    }
}

impl fmt::Display for Timestamp {
    /// ISO 8601 with a `T`, no zone suffix: `2024-05-01T12:30:00.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::INFINITY => f.write_str("infinity"),
            Timestamp::NEG_INFINITY => f.write_str("-infinity"),
            ts => {
                let (d, t) = ts.split();
                write!(f, "{d}T{t}")
            }
        }
    }
}

impl FromStr for Timestamp {
    type Err = ParseValueError;

    /// Accepts `YYYY-MM-DD[T| ]HH:MM:SS[.ffffff]`, `infinity`, `-infinity`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "infinity" => return Ok(Timestamp::INFINITY),
            "-infinity" => return Ok(Timestamp::NEG_INFINITY),
            _ => {}
        }
        let err = || ParseValueError::new("timestamp", s, "expected YYYY-MM-DDTHH:MM:SS[.ffffff]");
        let split = s.rfind(['T', ' ']).ok_or_else(err)?;
        let date = parse_ymd(&s[..split]).ok_or_else(err)?;
        let time = parse_hms(&s[split + 1..]).ok_or_else(err)?;
        Ok(Timestamp::from_parts(date, Time(time)))
    }
}

/// An interval: months, days and microseconds kept apart (a month is not a fixed number of days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    /// Months (years are 12 months).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

impl fmt::Display for Interval {
    /// ISO 8601 duration, e.g. `P1Y2M3DT4H5M6.5S`; `PT0S` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        let (y, m) = (self.months / 12, self.months % 12);
        if y != 0 {
            write!(f, "{y}Y")?;
        }
        if m != 0 {
            write!(f, "{m}M")?;
        }
        if self.days != 0 {
            write!(f, "{}D", self.days)?;
        }
        if self.micros != 0 || (self.months == 0 && self.days == 0) {
            f.write_str("T")?;
            let neg = self.micros < 0;
            let us = self.micros.unsigned_abs();
            let sign = if neg { "-" } else { "" };
            let (h, mi, s, fr) = (
                us / 3_600_000_000,
                us / 60_000_000 % 60,
                us / 1_000_000 % 60,
                us % 1_000_000,
            );
            if h != 0 {
                write!(f, "{sign}{h}H")?;
            }
            if mi != 0 {
                write!(f, "{sign}{mi}M")?;
            }
            if s != 0 || fr != 0 || us == 0 {
                write!(f, "{sign}{s}")?;
                write_frac(f, fr)?;
                f.write_str("S")?;
            }
        }
        Ok(())
    }
}

/// A bit string of `len` bits, most significant bit first, padded with zero bits in the last byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BitString {
    /// Number of bits.
    pub len: usize,
    /// The bits, MSB first.
    pub bytes: Vec<u8>,
}

impl BitString {
    /// Bit `i` (0 = first).
    pub fn bit(&self, i: usize) -> bool {
        self.bytes
            .get(i / 8)
            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }
}

impl fmt::Display for BitString {
    /// As `0` and `1` characters, like PostgreSQL's text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.len {
            f.write_str(if self.bit(i) { "1" } else { "0" })?;
        }
        Ok(())
    }
}

impl FromStr for BitString {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = vec![0u8; s.len().div_ceil(8)];
        for (i, c) in s.bytes().enumerate() {
            match c {
                b'1' => bytes[i / 8] |= 0x80 >> (i % 8),
                b'0' => {}
                _ => {
                    return Err(ParseValueError::new(
                        "bit string",
                        s,
                        "expected only 0 and 1",
                    ));
                }
            }
        }
        Ok(BitString {
            len: s.len(),
            bytes,
        })
    }
}

/// Format a UUID in its canonical lowercase hyphenated form.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parse a UUID from its hyphenated (or plain 32 hex digit) form.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], ParseValueError> {
    let hexits: String = s.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    if hexits.len() != 32 || hex::decode_to_slice(&hexits, &mut out).is_err() {
        return Err(ParseValueError::new("uuid", s, "expected 32 hex digits"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_print_like_postgres() {
        assert_eq!(Date(0).to_string(), "1970-01-01");
        assert_eq!(Date(-1).to_string(), "1969-12-31");
        assert_eq!(
            Date::from_ymd(2024, 2, 29)
                .map(|d| d.to_string())
                .as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(Date::from_ymd(2023, 2, 29), None);
        assert_eq!(Date::INFINITY.to_string(), "infinity");
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let ts: Timestamp = "2024-05-01 12:30:00.000250".parse().unwrap();
        assert_eq!(ts.to_string(), "2024-05-01T12:30:00.00025");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999");
    }

    #[test]
    fn intervals_print_as_iso_durations() {
        let i = Interval {
            months: 14,
            days: 3,
            micros: 4 * 3_600_000_000 + 500_000,
        };
        assert_eq!(i.to_string(), "P1Y2M3DT4H0.5S");
        assert_eq!(
            Interval {
                months: 0,
                days: 0,
                micros: 0
            }
            .to_string(),
            "PT0S"
        );
    }

    #[test]
    fn decimals_stay_exact() {
        let d: Decimal = "-0012.500".parse().unwrap();
        assert_eq!(d.scale(), 3);
        assert_eq!(d.unscaled(), Some((true, "12500".to_owned())));
        assert!("1e5".parse::<Decimal>().is_err());
        assert!("NaN".parse::<Decimal>().is_ok_and(|d| !d.is_finite()));
    }

    proptest! {
        #[test]
        fn date_round_trips(days in -1_000_000i32..1_000_000) {
            let d = Date(days);
            prop_assert_eq!(d.to_string().parse::<Date>().unwrap(), d);
        }

        #[test]
        fn timestamp_round_trips(us in -200_000_000_000_000_000i64..200_000_000_000_000_000) {
            let ts = Timestamp(us);
            prop_assert_eq!(ts.to_string().parse::<Timestamp>().unwrap(), ts);
        }

        #[test]
        fn time_round_trips(us in -3_000_000_000_000i64..3_000_000_000_000) {
            prop_assert_eq!(Time(us).to_string().parse::<Time>().unwrap(), Time(us));
        }

        #[test]
        fn decimal_round_trips(neg: bool, int in "[0-9]{1,30}", frac in proptest::option::of("[0-9]{1,30}")) {
            let text = format!("{}{}{}", if neg { "-" } else { "" }, int, frac.map(|f| format!(".{f}")).unwrap_or_default());
            let d: Decimal = text.parse().unwrap();
            prop_assert_eq!(d.to_string(), text);
        }

        #[test]
        fn bits_round_trip(bits in "[01]{0,70}") {
            let b: BitString = bits.parse().unwrap();
            prop_assert_eq!(b.to_string(), bits);
        }

        #[test]
        fn uuid_round_trips(bytes: [u8; 16]) {
            prop_assert_eq!(parse_uuid(&format_uuid(&bytes)).unwrap(), bytes);
        }
    }
}
