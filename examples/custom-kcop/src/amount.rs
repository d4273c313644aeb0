//! Exact amounts: decimal text compared digit by digit, never through `f64`.
//!
//! `500.01` is more than `500`, and `500.00` is exactly `500`. A float would get both right here,
//! but not `0.1 + 0.2`-style values or amounts beyond 2^53, and a monitoring rule should not
//! depend on which ones happen to round well.

use std::cmp::Ordering;
use std::fmt;

use ordo_kcop::Value;

/// A finite exact decimal number, normalised so that equal numbers are equal values:
/// no leading zeros in the integer part, no trailing zeros in the fraction, and zero is never
/// negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    negative: bool,
    /// Integer digits without leading zeros (empty for zero).
    integer: String,
    /// Fraction digits without trailing zeros (empty when there are none).
    fraction: String,
}

impl Amount {
    /// Parses plain decimal text: an optional `-`, digits, and optionally `.` and digits
    /// (`500`, `-12.50`, `0.001`). `None` for anything else (exponents, `NaN`, blanks).
    pub fn parse(text: &str) -> Option<Amount> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (integer, fraction) = body.split_once('.').unwrap_or((body, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if integer.is_empty() || !digits(integer) || !digits(fraction) {
            return None;
        }
        if body.ends_with('.') {
            return None;
        }
        let integer = integer.trim_start_matches('0').to_owned();
        let fraction = fraction.trim_end_matches('0').to_owned();
        let zero = integer.is_empty() && fraction.is_empty();
        Some(Amount {
            negative: negative && !zero,
            integer,
            fraction,
        })
    }

    /// Compares the absolute values: more integer digits is larger; then digit by digit.
    /// Fractions have no trailing zeros, so comparing them as text is comparing them as
    /// numbers (`"05"` < `"5"` < `"51"`).
    fn cmp_magnitude(&self, other: &Amount) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(&other.integer))
            .then_with(|| self.fraction.cmp(&other.fraction))
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Amount) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Amount) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Amount {
    /// The normalised text: `500`, `500.01`, `-0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(if self.integer.is_empty() {
            "0"
        } else {
            &self.integer
        })?;
        if !self.fraction.is_empty() {
            write!(f, ".{}", self.fraction)?;
        }
        Ok(())
    }
}

/// What a column value says about a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A number, and its exact source text (`500.00` stays `500.00` in the record).
    Number(Amount, String),
    /// `Infinity` (PostgreSQL `numeric` allows it): more than any threshold.
    Infinite,
    /// No number to compare: SQL NULL, `NaN`, `-Infinity`, or a value the source did not send
    /// (an unchanged TOAST value: the amount did not change in this update).
    Nothing,
    /// A value of a kind that is not an exact number (a column type the factory should have
    /// refused).
    NotExact,
}

impl Reading {
    /// Reads a column value.
    pub fn of(value: &Value) -> Reading {
        let text = match value {
            Value::Decimal(d) => match d.as_str() {
                "Infinity" => return Reading::Infinite,
                "NaN" | "-Infinity" => return Reading::Nothing,
                text => text.to_owned(),
            },
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Null | Value::Unchanged | Value::NotInImage => return Reading::Nothing,
            _ => return Reading::NotExact,
        };
        match Amount::parse(&text) {
            Some(amount) => Reading::Number(amount, text),
            None => Reading::NotExact,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    fn a(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn equal_numbers_are_equal_whatever_their_scale() {
        assert_eq!(a("500"), a("500.00"));
        assert_eq!(a("007.50"), a("7.5"));
        assert_eq!(a("-0.00"), a("0"));
        assert_eq!(a("500.00").to_string(), "500");
        assert_eq!(a("-0012.340").to_string(), "-12.34");
        assert_eq!(a("0.0").to_string(), "0");
    }

    #[test]
    fn orders_exactly() {
        let ascending = [
            "-1000",
            "-500.01",
            "-500",
            "-0.5",
            "0",
            "0.05",
            "0.5",
            "0.51",
            "9.99",
            "10",
            "500",
            "500.001",
            "500.01",
            "1200",
            "9007199254740993",
            "9007199254740993.000001",
        ];
        for pair in ascending.windows(2) {
            assert!(a(pair[0]) < a(pair[1]), "{} < {}", pair[0], pair[1]);
            assert!(a(pair[1]) > a(pair[0]), "{} > {}", pair[1], pair[0]);
        }
    }

    #[test]
    fn refuses_what_is_not_plain_decimal_text() {
        for bad in [
            "", "-", ".5", "5.", "1e3", "NaN", " 5", "5 ", "+5", "1.2.3", "--1", "٣",
        ] {
            assert_eq!(Amount::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_column_values() {
        let dec = |s: &str| Value::Decimal(s.parse().unwrap());
        assert_eq!(
            Reading::of(&dec("500.01")),
            Reading::Number(a("500.01"), "500.01".to_owned())
        );
        assert_eq!(
            Reading::of(&Value::Int(-3)),
            Reading::Number(a("-3"), "-3".to_owned())
        );
        assert_eq!(
            Reading::of(&Value::UInt(u64::MAX)),
            Reading::Number(a("18446744073709551615"), u64::MAX.to_string())
        );
        assert_eq!(Reading::of(&dec("Infinity")), Reading::Infinite);
        assert_eq!(Reading::of(&dec("-Infinity")), Reading::Nothing);
        assert_eq!(Reading::of(&dec("NaN")), Reading::Nothing);
        assert_eq!(Reading::of(&Value::Null), Reading::Nothing);
        assert_eq!(Reading::of(&Value::Unchanged), Reading::Nothing);
        assert_eq!(Reading::of(&Value::Float64(600.0)), Reading::NotExact);
    }
}
