//! The `audit-rows` format's exact bytes, in JSON and in Avro (with a round trip through
//! apache-avro's reader and the generated schemas).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use common::{
    changes, decode, every_table, field, full_row, hex_dump, pg_source, pg_txn, render, run,
    strings,
};
use ordo_kcop::audit_rows::{AuditAvroFormat, AuditAvroKcop, AuditRowsConfig, AuditRowsKcop};
use ordo_kcop::avro::{AvroSettings, DecimalMode, Framing};
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::json::{JsonWriter, TimestampForm};
use ordo_kcop::{Change, Op, ProducerRecord, SchemaRef};

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
