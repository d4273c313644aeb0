//! The `avro` format: exact bytes pinned by snapshots, and a round trip through apache-avro's
//! reader with the generated schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use common::{col, field, hex_dump, strings};
use ordo_kcop::avro::{AvroFormat, AvroKcop, AvroSettings, DecimalMode, Framing};
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::{
    Change, Column, ColumnKind, Interval, Kcop, KcopError, Op, Operation, ProducerRecord,
    SourceInfo, TableId, TableSchema, Time, Timestamp, TxnBegin, Value, ZoneOffset,
};

/// One column per value variant (and per integer width), with the value of the insert.
fn columns() -> Vec<(Column, Value)> {
    use ColumnKind as K;
    let dec = |p, s| K::Decimal {
        precision: p,
        scale: s,
    };
    vec![
        (col("id", "integer", K::Int(32), false), Value::Int(7)),
        (col("flag", "boolean", K::Bool, true), Value::Bool(true)),
        (col("small", "smallint", K::Int(16), true), Value::Int(-3)),
        (
            col("big", "bigint", K::Int(64), true),
            Value::Int(-9_000_000_000),
        ),
        (
            col("ubig", "bigint unsigned", K::UInt(64), true),
            Value::UInt(u64::MAX),
        ),
        (
            col("uint", "int unsigned", K::UInt(32), true),
            Value::UInt(4_000_000_000),
        ),
        (col("real", "real", K::Float32, true), Value::Float32(1.5)),
        (
            col("dbl", "double precision", K::Float64, true),
            Value::Float64(-2.5e10),
        ),
        (
            col("amount", "numeric(10,2)", dec(Some(10), Some(2)), true),
            Value::Decimal("-12.5".parse().unwrap()),
        ),
        (
            col("ratio", "numeric", dec(None, None), true),
            Value::Decimal("NaN".parse().unwrap()),
        ),
        (
            col("note", "text", K::Text, true),
            Value::Text("héllo \"x\"".into()),
        ),
        (
            col("data", "bytea", K::Bytes, true),
            Value::Bytes(vec![0, 1, 255]),
        ),
        (
            col("day", "date", K::Date, true),
            Value::Date(ordo_kcop::Date(19_000)),
        ),
        (
            col("at", "time", K::Time, true),
            Value::Time(Time(45_296_000_001)),
        ),
        (
            col("at_tz", "timetz", K::TimeTz, true),
            Value::TimeTz(Time(3_600_000_000), ZoneOffset(3600)),
        ),
        (
            col("ts", "timestamp", K::Timestamp, true),
            Value::Timestamp(Timestamp(1_700_000_000_123_456)),
        ),
        (
            col("ts_tz", "timestamptz", K::TimestampTz, true),
            Value::TimestampTz(Timestamp(-1)),
        ),
        (
            col("span", "interval", K::Interval, true),
            Value::Interval(Interval {
                months: 14,
                days: -3,
                micros: 5_000_001,
            }),
        ),
        (
            col("doc", "jsonb", K::Json, true),
            Value::Json(r#"{"a":[1,2]}"#.into()),
        ),
        (
            col("uid", "uuid", K::Uuid, true),
            Value::Uuid(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x23\x45\x67\x89\xab\xcd\xef"),
        ),
        (
            col("tags", "integer[]", K::Array(Box::new(K::Int(32))), true),
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)]),
        ),
        (
            col("spans", "interval[]", K::Array(Box::new(K::Interval)), true),
            Value::Array(vec![Value::Interval(Interval {
                months: 0,
                days: 1,
                micros: 0,
            })]),
        ),
        (
            col("mood", "mood", K::Enum(vec!["happy".into()]), true),
            Value::Enum("happy".into()),
        ),
        (
            col(
                "perms",
                "set('r','w')",
                K::Set(vec!["r".into(), "w".into()]),
                true,
            ),
            Value::Set(vec!["r".into(), "w".into()]),
        ),
        (
            col("mask", "bit(5)", K::Bits, true),
            Value::Bits("10110".parse().unwrap()),
        ),
        (col("gone", "text", K::Text, true), Value::Null),
        (
            col("body", "text", K::Text, false),
            Value::Text("long".into()),
        ),
        (
            col("1st-name", "text", K::Text, true),
            Value::Text("ann".into()),
        ),
    ]
}

fn table() -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("public", "all types"),
        version: 1,
        columns: columns().into_iter().map(|(c, _)| c).collect(),
        key: vec![0],
    })
}

fn settings(table: &TableSchema) -> AvroSettings {
    AvroSettings {
        topic: "shop.all".into(),
        key: table.key.clone(),
        columns: (0..table.columns.len()).collect(),
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Record,
        decimals: DecimalMode::Bytes,
        namespace: "ordo".into(),
        text_columns: Vec::new(),
    }
}

fn insert_row() -> Vec<Value> {
    columns().into_iter().map(|(_, v)| v).collect()
}

/// A key-only old image: `id` and nothing else.
fn key_only() -> Vec<Value> {
    let mut row = vec![Value::NotInImage; columns().len()];
    row[0] = Value::Int(7);
    row
}

fn changes(table: &Arc<TableSchema>) -> Vec<Change> {
    let change = |op, before, after, op_index| Change {
        table: table.clone(),
        op,
        before,
        after,
        op_index,
    };
    let mut updated = insert_row();
    updated[10] = Value::Text("changed".into());
    updated[26] = Value::Unchanged; // body: unchanged TOAST
    vec![
        change(Op::Insert, None, Some(insert_row()), 0),
        change(Op::Update, Some(key_only()), Some(updated), 1),
        change(Op::Delete, Some(key_only()), None, 2),
        change(Op::Truncate, None, None, 3),
    ]
}

fn run(kcop: &AvroKcop, changes: &[Change]) -> Vec<ProducerRecord> {
    let txn = TxnBegin {
        id: "4711".into(),
        commit_time: Timestamp(1_700_000_000_000_000),
        position: None,
    };
    let source = SourceInfo {
        connector: "postgresql",
        name: "slot".into(),
        database: "shop".into(),
    };
    common::run(kcop, changes, &txn, &source)
}

fn registry_kcop(table: &TableSchema) -> AvroKcop {
    AvroFormat::new(table, settings(table))
        .unwrap()
        .into_kcop(Framing::Registry {
            key_id: Some(1),
            value_id: 2,
        })
}

#[test]
fn schemas_are_pinned() {
    let table = table();
    let format = AvroFormat::new(&table, settings(&table)).unwrap();
    let pretty = |json: &str| {
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(json).unwrap())
            .unwrap()
    };
    insta::assert_snapshot!("key_schema", pretty(&format.key_schema().unwrap().json));
    insta::assert_snapshot!("value_schema", pretty(&format.value_schema().json));
}

#[test]
fn registry_framing_bytes_are_pinned() {
    let table = table();
    let records = run(&registry_kcop(&table), &changes(&table));
    assert_eq!(records.len(), 4);
    insta::assert_snapshot!("registry_records", hex_dump(&records));
}

#[test]
fn single_object_framing_publishes_schemas_once_before_the_data() {
    let table = table();
    let format = AvroFormat::new(&table, settings(&table)).unwrap();
    let (key_fp, value_fp) = (
        format.key_schema().unwrap().fingerprint,
        format.value_schema().fingerprint,
    );
    let kcop = format.into_kcop(Framing::SingleObject {
        schema_topic: "shop.all.schemas".into(),
    });
    let records = run(&kcop, &changes(&table));
    assert_eq!(records.len(), 6, "2 schema records, then 4 data records");
    assert_eq!(&*records[0].topic, "shop.all.schemas");
    assert_eq!(records[0].key.as_deref(), Some(&key_fp.to_le_bytes()[..]));
    assert_eq!(records[1].key.as_deref(), Some(&value_fp.to_le_bytes()[..]));
    assert_eq!(
        records[1].value.as_deref(),
        Some(kcop.format().value_schema().json.as_bytes())
    );
    let value = records[2].value.as_ref().unwrap();
    assert_eq!(value[..2], [0xc3, 0x01]);
    assert_eq!(value[2..10], value_fp.to_le_bytes());
    assert_eq!(
        records[2].key.as_ref().unwrap()[2..10],
        key_fp.to_le_bytes()
    );
    insta::assert_snapshot!("single_object_data", hex_dump(&records[2..]));
    assert!(
        run(&kcop, &changes(&table)[..1]).len() == 1,
        "schemas are published once"
    );
}

/// apache-avro 0.21 keeps logical-type attributes in its canonical form (AVRO-4004), unlike
/// the specification and the Java implementation; so the comparison is on ordo's canonical
/// text, which has none: apache-avro must find it canonical already and fingerprint it alike.
#[test]
fn fingerprints_and_canonical_forms_match_apache_avro() {
    let table = table();
    let format = AvroFormat::new(&table, settings(&table)).unwrap();
    for schema in [format.key_schema().unwrap(), format.value_schema()] {
        apache_avro::Schema::parse_str(&schema.json).unwrap();
        let canonical = apache_avro::Schema::parse_str(&schema.canonical).unwrap();
        assert_eq!(schema.canonical, canonical.canonical_form());
        let fp = canonical.fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(fp.bytes, schema.fingerprint.to_le_bytes());
        assert!(!schema.canonical.contains("logicalType") && !schema.canonical.contains("scale"));
    }
    let key = format.key_schema().unwrap();
    let parsed = apache_avro::Schema::parse_str(&key.json).unwrap();
    assert_eq!(
        key.canonical,
        parsed.canonical_form(),
        "no logical types in the key"
    );
}

/// A registry-framed datum: the magic byte and schema id, then the body.
fn decode(schema_json: &str, framed: &[u8]) -> Avro {
    common::decode(schema_json, &framed[5..])
}

#[test]
fn records_round_trip_through_apache_avro() {
    let table = table();
    let kcop = registry_kcop(&table);
    let records = run(&kcop, &changes(&table));
    let (key_schema, value_schema) = (
        &kcop.format().key_schema().unwrap().json,
        &kcop.format().value_schema().json,
    );
    let key = decode(key_schema, records[0].key.as_ref().unwrap());
    assert_eq!(key, Avro::Record(vec![("id".into(), Avro::Int(7))]));
    let insert = decode(value_schema, records[0].value.as_ref().unwrap());
    let after = field(&insert, "after");
    assert_eq!(field(&insert, "op"), &Avro::String("c".into()));
    assert_eq!(field(&insert, "txn"), &Avro::String("4711".into()));
    assert_eq!(
        field(&insert, "ts_us"),
        &Avro::TimestampMicros(1_700_000_000_000_000)
    );
    assert_eq!(field(&insert, "before"), &Avro::Null);
    assert_eq!(
        field(after, "ubig"),
        &Avro::Decimal(apache_avro::Decimal::from([
            0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
        ]))
    );
    assert_eq!(
        field(after, "amount"),
        &Avro::Decimal(apache_avro::Decimal::from([0xfb, 0x1e]))
    );
    assert_eq!(field(after, "ratio"), &Avro::String("NaN".into()));
    assert_eq!(
        field(after, "ts"),
        &Avro::LocalTimestampMicros(1_700_000_000_123_456)
    );
    assert_eq!(field(after, "ts_tz"), &Avro::TimestampMicros(-1));
    assert_eq!(
        field(after, "at_tz"),
        &Avro::String("01:00:00+01:00".into())
    );
    assert_eq!(field(after, "gone"), &Avro::Null);
    assert_eq!(field(after, "_1st_name"), &Avro::String("ann".into()));
    match field(after, "uid") {
        Avro::Uuid(u) => assert_eq!(u.to_string(), "12345678-9abc-def0-0123-456789abcdef"),
        other => panic!("uuid decoded as {other:?}"),
    }
    insta::assert_debug_snapshot!("decoded_insert", after);

    let update = decode(value_schema, records[1].value.as_ref().unwrap());
    assert_eq!(strings(field(&update, "after_unavailable")), ["body"]);
    assert_eq!(field(field(&update, "after"), "body"), &Avro::Null);
    let unknown = strings(field(&update, "before_unavailable"));
    assert_eq!(
        unknown.len(),
        table.columns.len() - 1,
        "every column but the key"
    );
    let delete = decode(value_schema, records[2].value.as_ref().unwrap());
    assert_eq!(field(&delete, "op"), &Avro::String("d".into()));
    assert_eq!(field(field(&delete, "before"), "id"), &Avro::Int(7));
    let truncate = decode(value_schema, records[3].value.as_ref().unwrap());
    assert_eq!(field(&truncate, "op"), &Avro::String("t".into()));
    assert!(records[3].key.is_none());
}

#[test]
fn non_finite_decimals_name_table_and_column() {
    let table = table();
    let kcop = registry_kcop(&table);
    let mut row = insert_row();
    row[8] = Value::Decimal("Infinity".parse().unwrap());
    let change = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(row),
        op_index: 0,
    };
    let txn = TxnBegin {
        id: "1".into(),
        commit_time: Timestamp(0),
        position: None,
    };
    let source = SourceInfo {
        connector: "postgresql",
        name: "s".into(),
        database: "d".into(),
    };
    let err = kcop
        .process(
            &Operation {
                change: &change,
                txn: &txn,
                source: &source,
            },
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, KcopError::Encode { column, .. } if column == "amount"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("table public.all types, column amount: numeric Infinity"),
        "{text}"
    );
    assert!(text.contains("options.decimals: string"), "{text}");
}

#[test]
fn string_decimals_and_tombstones() {
    let table = table();
    let mut s = settings(&table);
    s.decimals = DecimalMode::String;
    s.deletes = DeleteMode::Tombstone;
    s.truncate = TruncateMode::Skip;
    s.columns = vec![0, 8];
    let kcop = AvroFormat::new(&table, s)
        .unwrap()
        .into_kcop(Framing::Registry {
            key_id: Some(1),
            value_id: 2,
        });
    let records = run(&kcop, &changes(&table));
    assert_eq!(records.len(), 3, "truncate skipped");
    assert!(records[2].value.is_none(), "delete as tombstone");
    let insert = decode(
        &kcop.format().value_schema().json,
        records[0].value.as_ref().unwrap(),
    );
    assert_eq!(
        field(field(&insert, "after"), "amount"),
        &Avro::String("-12.5".into())
    );
}

#[test]
fn colliding_field_names_are_refused() {
    let mut table = (*table()).clone();
    table
        .columns
        .push(col("1st_name", "text", ColumnKind::Text, true));
    let s = settings(&table);
    let err = AvroFormat::new(&table, s).unwrap_err().to_string();
    assert!(
        err.contains("two columns map to the Avro field name `_1st_name`"),
        "{err}"
    );
}

#[test]
fn text_columns_are_strings_whatever_their_type() {
    let table = table();
    let mut s = settings(&table);
    s.text_columns = vec![8]; // amount, numeric(10,2), encrypted upstream
    let kcop = AvroFormat::new(&table, s)
        .unwrap()
        .into_kcop(Framing::Registry {
            key_id: Some(1),
            value_id: 2,
        });
    let mut row = insert_row();
    row[8] = Value::Text("v1:k1:c2VhbGVk".into());
    let change = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(row),
        op_index: 0,
    };
    let records = run(&kcop, &[change]);
    let insert = decode(
        &kcop.format().value_schema().json,
        records[0].value.as_ref().unwrap(),
    );
    assert_eq!(
        field(field(&insert, "after"), "amount"),
        &Avro::String("v1:k1:c2VhbGVk".into())
    );
}
