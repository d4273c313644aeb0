//! Hand-made fixtures shared by the format tests: a table with a column of every kind, rows
//! with a value of every variant (and both markers), the changes, transaction and source
//! metadata, and helpers to run a kcop and show or decode its records.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use ordo_kcop::{
    Change, Column, ColumnKind, Interval, Kcop, Lsn, Op, Operation, Position, ProducerRecord, Row,
    SchemaRef, SourceInfo, TableId, TableSchema, Time, Timestamp, TxnBegin, Value, ZoneOffset,
};

pub(crate) fn col(name: &str, type_name: &str, kind: ColumnKind, nullable: bool) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
        kind,
        nullable,
    }
}

/// A table with a column of every kind.
pub(crate) fn every_table() -> SchemaRef {
    use ColumnKind as K;
    let dec = |p, s| K::Decimal {
        precision: p,
        scale: s,
    };
    let columns = vec![
        col("id", "integer", K::Int(32), false),
        col("flag", "boolean", K::Bool, true),
        col("small", "smallint", K::Int(16), true),
        col("big", "bigint", K::Int(64), true),
        col("ubig", "bigint unsigned", K::UInt(64), true),
        col("real", "real", K::Float32, true),
        col("dbl", "double precision", K::Float64, true),
        col("amount", "numeric(10,2)", dec(Some(10), Some(2)), true),
        col("num", "numeric", dec(None, None), true),
        col("name", "text", K::Text, true),
        col("data", "bytea", K::Bytes, true),
        col("day", "date", K::Date, true),
        col("at_time", "time without time zone", K::Time, true),
        col("at_timetz", "time with time zone", K::TimeTz, true),
        col(
            "at_ts",
            "timestamp(3) without time zone",
            K::Timestamp,
            true,
        ),
        col("at_tstz", "timestamp with time zone", K::TimestampTz, true),
        col("span", "interval", K::Interval, true),
        col("doc", "jsonb", K::Json, true),
        col("uid", "uuid", K::Uuid, true),
        col("tags", "text[]", K::Array(Box::new(K::Text)), true),
        col(
            "mood",
            "mood",
            K::Enum(vec!["happy".into(), "sad".into()]),
            true,
        ),
        col(
            "perms",
            "set('r','w')",
            K::Set(vec!["r".into(), "w".into()]),
            true,
        ),
        col("bits", "bit(3)", K::Bits, true),
        col("note", "text", K::Text, true),
    ];
    Arc::new(TableSchema {
        id: TableId::new("public", "every"),
        version: 1,
        columns,
        key: vec![0],
    })
}

/// A row with a value of every variant.
pub(crate) fn full_row(id: i64, name: &str) -> Row {
    vec![
        Value::Int(id),
        Value::Bool(true),
        Value::Int(-2),
        Value::Int(9_007_199_254_740_993),
        Value::UInt(u64::MAX),
        Value::Float32(1.5),
        Value::Float64(-0.25),
        Value::Decimal("-12.50".parse().unwrap()),
        Value::Decimal("3.14159".parse().unwrap()),
        Value::Text(name.into()),
        Value::Bytes(vec![0, 1, 254, 255]),
        Value::Date("2024-05-01".parse().unwrap()),
        Value::Time("12:30:00.25".parse().unwrap()),
        Value::TimeTz(Time(12 * 3_600_000_000), ZoneOffset(7200)),
        Value::Timestamp("2024-05-01T12:30:00.123".parse().unwrap()),
        Value::TimestampTz("2024-05-01T12:30:00.123456".parse().unwrap()),
        Value::Interval(Interval {
            months: 14,
            days: 3,
            micros: 14_400_500_000,
        }),
        Value::Json(r#"{"a":[1,2]}"#.into()),
        Value::Uuid(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc\xde\xf0"),
        Value::Array(vec![Value::Text("x".into()), Value::Null]),
        Value::Enum("happy".into()),
        Value::Set(vec!["r".into(), "w".into()]),
        Value::Bits("101".parse().unwrap()),
        Value::Text("long text".into()),
    ]
}

pub(crate) fn null_row(id: i64) -> Row {
    let mut row = vec![Value::Null; 24];
    row[0] = Value::Int(id);
    row
}

/// Insert, update (key-only old image; unchanged TOAST values), delete, truncate.
pub(crate) fn changes(table: &SchemaRef) -> Vec<Change> {
    let mut key_only = vec![Value::NotInImage; 24];
    key_only[0] = Value::Int(1);
    let mut updated = full_row(1, "renamed");
    updated[10] = Value::Unchanged;
    updated[19] = Value::Unchanged;
    updated[23] = Value::Unchanged;
    let change = |op, before, after, op_index| Change {
        table: table.clone(),
        op,
        before,
        after,
        op_index,
    };
    vec![
        change(
            Op::Insert,
            None,
            Some(full_row(1, "a \"quoted\", multi\nline")),
            0,
        ),
        change(Op::Update, Some(key_only), Some(updated), 1),
        change(Op::Delete, Some(null_row(2)), None, 2),
        change(Op::Truncate, None, None, 3),
    ]
}

pub(crate) fn pg_source() -> SourceInfo {
    SourceInfo {
        connector: "postgresql",
        name: "shop".into(),
        database: "shopdb".into(),
    }
}

pub(crate) fn txn(id: &str, commit: &str, position: Option<Position>) -> TxnBegin {
    TxnBegin {
        id: id.into(),
        commit_time: commit.parse::<Timestamp>().unwrap(),
        position,
    }
}

pub(crate) fn run(
    kcop: &dyn Kcop,
    changes: &[Change],
    txn: &TxnBegin,
    source: &SourceInfo,
) -> Vec<ProducerRecord> {
    let mut out = Vec::new();
    for change in changes {
        let op = Operation {
            change,
            txn,
            source,
        };
        kcop.process(&op, &mut out).unwrap();
    }
    out
}

pub(crate) fn render(records: &[ProducerRecord]) -> String {
    let text = |b: &Option<Vec<u8>>| {
        b.as_ref().map_or("(none)".to_owned(), |b| {
            String::from_utf8(b.clone()).unwrap()
        })
    };
    records
        .iter()
        .map(|r| {
            format!(
                "topic: {}\nkey: {}\nvalue: {}\n",
                r.topic,
                text(&r.key),
                text(&r.value)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn pg_txn() -> TxnBegin {
    txn(
        "7421",
        "2024-05-01T12:30:00.25",
        Some(Position::Postgres(Lsn(0x16_B374_D848))),
    )
}

pub(crate) fn hex_dump(records: &[ProducerRecord]) -> String {
    let mut text = String::new();
    for r in records {
        let show = |b: &Option<Vec<u8>>| b.as_ref().map_or("none".to_owned(), hex::encode);
        writeln!(
            text,
            "{} key={} value={}",
            r.topic,
            show(&r.key),
            show(&r.value)
        )
        .unwrap();
    }
    text
}

pub(crate) fn decode(schema_json: &str, body: &[u8]) -> Avro {
    let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
    let mut body = body;
    let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
    assert!(body.is_empty(), "every byte is consumed");
    value
}

pub(crate) fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    match &fields.iter().find(|(n, _)| n == name).unwrap().1 {
        Avro::Union(_, inner) => inner,
        v => v,
    }
}

pub(crate) fn strings(v: &Avro) -> Vec<String> {
    let Avro::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    items
        .iter()
        .map(|i| match i {
            Avro::String(s) => s.clone(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}
