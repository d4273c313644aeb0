//! How each column is represented: its Kafka Connect type and semantic name, from the
//! column kind, the source's type name and the decimal handling.

use super::DecimalHandling;
use crate::schema::ColumnKind;

/// How one column is represented (its Kafka Connect type and semantic name).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Field {
    Plain(&'static str),
    Named(&'static str, &'static str),
    Enum(&'static str, String),
    Decimal(u32, Option<u32>),
    VarDecimal,
    Bits(usize),
    Array(Box<Field>),
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

pub(super) fn field_for(kind: &ColumnKind, type_name: &str, decimals: DecimalHandling) -> Field {
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
