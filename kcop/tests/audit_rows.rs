//! The `audit-rows` format's exact bytes, in JSON and in Avro (with a round trip through
//! apache-avro's reader and the generated schemas).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fmt::Write as _;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use ordo_kcop::audit_rows::{AuditAvroFormat, AuditAvroKcop, AuditRowsConfig, AuditRowsKcop};
use ordo_kcop::avro::{AvroSettings, DecimalMode, Framing};
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::json::{JsonWriter, TimestampForm};
use ordo_kcop::{
    Change, Column, ColumnKind, Interval, Kcop, Lsn, Op, Operation, Position, ProducerRecord, Row,
    SchemaRef, SourceInfo, TableId, TableSchema, Time, Timestamp, TxnBegin, Value, ZoneOffset,
};

// The same hand-made changes as kcop/tests/debezium.rs: every value variant, both markers.
fn col(name: &str, type_name: &str, kind: ColumnKind, nullable: bool) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
        kind,
        nullable,
    }
}

/// A table with a column of every kind.
fn every_table() -> SchemaRef {
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
fn full_row(id: i64, name: &str) -> Row {
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

fn null_row(id: i64) -> Row {
    let mut row = vec![Value::Null; 24];
    row[0] = Value::Int(id);
    row
}

/// Insert, update (key-only old image; unchanged TOAST values), delete, truncate.
fn changes(table: &SchemaRef) -> Vec<Change> {
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

fn pg_source() -> SourceInfo {
    SourceInfo {
        connector: "postgresql",
        name: "shop".into(),
        database: "shopdb".into(),
    }
}

fn txn(id: &str, commit: &str, position: Option<Position>) -> TxnBegin {
    TxnBegin {
        id: id.into(),
        commit_time: commit.parse::<Timestamp>().unwrap(),
        position,
    }
}

fn run(
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

fn render(records: &[ProducerRecord]) -> String {
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

fn pg_txn() -> TxnBegin {
    txn(
        "7421",
        "2024-05-01T12:30:00.25",
        Some(Position::Postgres(Lsn(0x16_B374_D848))),
    )
}

fn config(table: &SchemaRef) -> AuditRowsConfig {
    AuditRowsConfig {
        topic: "audit.every".into(),
        key: table.key.clone(),
        columns: (0..table.columns.len()).collect(),
        deletes: DeleteMode::Tombstone,
        truncate: TruncateMode::Record,
        writer: JsonWriter::default(),
    }
}

fn codes(records: &[ProducerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.value {
            Some(v) => serde_json::from_slice::<serde_json::Value>(v).unwrap()["A_ENTTYP"]
                .as_str()
                .unwrap()
                .to_owned(),
            None => "tombstone".to_owned(),
        })
        .collect()
}

#[test]
fn an_update_becomes_before_and_after_records() {
    let table = every_table();
    let k = AuditRowsKcop::new(config(&table), table.clone()).unwrap();
    let records = run(&k, &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(codes(&records), ["PT", "UB", "UP", "DL", "tombstone", "CR"]);
    insta::assert_snapshot!(render(&records));
}

#[test]
fn snapshot_reads_updates_without_old_image_and_epoch_timestamps() {
    let table = every_table();
    let cfg = AuditRowsConfig {
        columns: vec![0, 9, 14, 15],
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Skip,
        writer: JsonWriter {
            timestamps: TimestampForm::EpochMicros,
        },
        ..config(&table)
    };
    let k = AuditRowsKcop::new(cfg, table.clone()).unwrap();
    let mut all = changes(&table);
    all[1].before = None;
    all.insert(
        0,
        Change {
            table: table.clone(),
            op: Op::Read,
            before: None,
            after: Some(full_row(9, "snap")),
            op_index: 0,
        },
    );
    let records = run(&k, &all, &pg_txn(), &pg_source());
    assert_eq!(codes(&records), ["RR", "PT", "UP", "DL"]);
    insta::assert_snapshot!(render(&records));
}

#[test]
fn columns_named_like_audit_columns_are_refused() {
    let mut schema = (*every_table()).clone();
    schema.columns[9].name = "A_CCID".into();
    let table = Arc::new(schema);
    let err = AuditRowsKcop::new(config(&table), table.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("public.every") && err.contains("A_CCID") && err.contains("columns"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Avro.

fn avro_settings(table: &SchemaRef) -> AvroSettings {
    AvroSettings {
        topic: "audit.every".into(),
        key: table.key.clone(),
        columns: (0..table.columns.len()).collect(),
        deletes: DeleteMode::Tombstone,
        truncate: TruncateMode::Record,
        decimals: DecimalMode::Bytes,
        namespace: "ordo".into(),
        text_columns: Vec::new(),
    }
}

fn registry_kcop(table: &SchemaRef) -> AuditAvroKcop {
    AuditAvroFormat::new(table, avro_settings(table))
        .unwrap()
        .into_kcop(Framing::Registry {
            key_id: Some(1),
            value_id: 2,
        })
}

fn hex_dump(records: &[ProducerRecord]) -> String {
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

fn decode(schema_json: &str, body: &[u8]) -> Avro {
    let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
    let mut body = body;
    let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
    assert!(body.is_empty(), "every byte is consumed");
    value
}

fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    match &fields.iter().find(|(n, _)| n == name).unwrap().1 {
        Avro::Union(_, inner) => inner,
        v => v,
    }
}

fn strings(v: &Avro) -> Vec<String> {
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

#[test]
fn avro_schema_and_registry_bytes_are_pinned() {
    let table = every_table();
    let kcop = registry_kcop(&table);
    let pretty = |json: &str| {
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(json).unwrap())
            .unwrap()
    };
    insta::assert_snapshot!(
        "avro_value_schema",
        pretty(&kcop.format().value_schema().json)
    );
    let records = run(&kcop, &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(records.len(), 6, "PT, UB, UP, DL, tombstone, CR");
    insta::assert_snapshot!("avro_registry_records", hex_dump(&records));
}

#[test]
fn avro_records_round_trip_through_apache_avro() {
    let table = every_table();
    let kcop = registry_kcop(&table);
    let records = run(&kcop, &changes(&table), &pg_txn(), &pg_source());
    let value_schema = &kcop.format().value_schema().json;
    let key_schema = &kcop.format().key_schema().unwrap().json;
    let values: Vec<Avro> = records
        .iter()
        .filter_map(|r| r.value.as_ref())
        .map(|v| {
            assert_eq!(v[..5], [0, 0, 0, 0, 2], "magic byte and value schema id");
            decode(value_schema, &v[5..])
        })
        .collect();
    let codes: Vec<&Avro> = values.iter().map(|v| field(v, "A_ENTTYP")).collect();
    let code = |c: &str| Avro::String(c.into());
    assert_eq!(
        codes,
        [
            &code("PT"),
            &code("UB"),
            &code("UP"),
            &code("DL"),
            &code("CR")
        ]
    );
    for v in &values {
        let stamp = Avro::String("2024-05-01 12:30:00.250000".into());
        assert_eq!(field(v, "A_TIMSTAMP"), &stamp, "the JSON encoding's text");
        assert_eq!(field(v, "A_CCID"), &Avro::String("7421".into()));
        assert_eq!(field(v, "A_USER"), &Avro::Null);
    }
    let pt = &values[0];
    assert_eq!(field(pt, "id"), &Avro::Int(1));
    assert_eq!(
        field(pt, "amount"),
        &Avro::Decimal(apache_avro::Decimal::from([0xfb, 0x1e])),
        "-12.50 as unscaled -1250"
    );
    assert_eq!(field(pt, "num"), &Avro::String("3.14159".into()));
    assert_eq!(
        field(pt, "name"),
        &Avro::String("a \"quoted\", multi\nline".into())
    );
    assert!(strings(field(pt, "A_UNAVAILABLE")).is_empty());

    let ub = &values[1];
    assert_eq!(field(ub, "id"), &Avro::Int(1));
    assert_eq!(field(ub, "name"), &Avro::Null);
    assert_eq!(
        strings(field(ub, "A_UNAVAILABLE")).len(),
        23,
        "a key-only old image: every column but the key"
    );
    let up = &values[2];
    assert_eq!(field(up, "name"), &Avro::String("renamed".into()));
    assert_eq!(field(up, "data"), &Avro::Null);
    assert_eq!(
        strings(field(up, "A_UNAVAILABLE")),
        ["data", "tags", "note"],
        "the unchanged TOAST values"
    );
    let dl = &values[3];
    assert_eq!(field(dl, "id"), &Avro::Int(2));
    assert_eq!(field(dl, "name"), &Avro::Null, "SQL NULL: not listed");
    assert!(strings(field(dl, "A_UNAVAILABLE")).is_empty());
    assert_eq!(field(&values[4], "id"), &Avro::Null);

    let keys: Vec<Option<Avro>> = records
        .iter()
        .map(|r| r.key.as_ref().map(|k| decode(key_schema, &k[5..])))
        .collect();
    let key = |id| Some(Avro::Record(vec![("id".into(), Avro::Int(id))]));
    assert_eq!(keys, [key(1), key(1), key(1), key(2), key(2), None]);
    assert!(records[4].value.is_none(), "the delete's tombstone");
}

#[test]
fn avro_single_object_framing_publishes_schemas_once_before_the_data() {
    let table = every_table();
    let format = AuditAvroFormat::new(&table, avro_settings(&table)).unwrap();
    let (key_fp, value_fp) = (
        format.key_schema().unwrap().fingerprint,
        format.value_schema().fingerprint,
    );
    let value_json = format.value_schema().json.clone();
    let kcop = format.into_kcop(Framing::SingleObject {
        schema_topic: "audit.every.schemas".into(),
    });
    let records = run(&kcop, &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(records.len(), 8, "2 schema records, then 6 data records");
    assert_eq!(&*records[0].topic, "audit.every.schemas");
    assert_eq!(records[0].key.as_deref(), Some(&key_fp.to_le_bytes()[..]));
    assert_eq!(records[1].key.as_deref(), Some(&value_fp.to_le_bytes()[..]));
    assert_eq!(records[1].value.as_deref(), Some(value_json.as_bytes()));
    for r in &records[2..] {
        assert_eq!(&*r.topic, "audit.every");
        if let Some(v) = &r.value {
            assert_eq!(v[..2], [0xc3, 0x01]);
            assert_eq!(v[2..10], value_fp.to_le_bytes());
            decode(&value_json, &v[10..]);
        }
        if let Some(k) = &r.key {
            assert_eq!(k[2..10], key_fp.to_le_bytes());
        }
    }
    insta::assert_snapshot!("avro_single_object_data", hex_dump(&records[2..]));
    let again = run(&kcop, &changes(&table)[..1], &pg_txn(), &pg_source());
    assert_eq!(again.len(), 1, "schemas are published once");
}

#[test]
fn avro_field_names_of_audit_fields_are_refused() {
    for name in ["A-USER", "A_UNAVAILABLE"] {
        let mut schema = (*every_table()).clone();
        schema.columns[9].name = name.into();
        let table = Arc::new(schema);
        let err = AuditAvroFormat::new(&table, avro_settings(&table))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("public.every") && err.contains(name) && err.contains("`columns`"),
            "{err}"
        );
    }
}
