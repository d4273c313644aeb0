//! The `csv-audit` format's exact bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{changes, every_table, null_row, pg_source, pg_txn, render, run, txn};
use ordo_kcop::csv_audit::CsvAuditKcop;
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::{Change, Op, SchemaRef, Value};

fn kcop(table: &SchemaRef) -> CsvAuditKcop {
    CsvAuditKcop {
        topic: "audit.every".into(),
        table: table.clone(),
        key: table.key.clone(),
        columns: (0..table.columns.len()).collect(),
        deletes: DeleteMode::Tombstone,
        truncate: TruncateMode::Record,
        delimiter: b',',
    }
}

#[test]
fn insert_update_delete_truncate() {
    let table = every_table();
    let records = run(&kcop(&table), &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(
        records.len(),
        5,
        "insert, update, delete + tombstone, truncate"
    );
    let line = String::from_utf8(records[0].value.clone().unwrap()).unwrap();
    assert!(
        line.starts_with("2024-05-01 12:30:00.250000,7421,I,,"),
        "{line}"
    );
    insta::assert_snapshot!(render(&records));
}

#[test]
fn snapshot_reads_projection_and_a_custom_delimiter() {
    let table = every_table();
    let k = CsvAuditKcop {
        columns: vec![0, 9, 23],
        delimiter: b'|',
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Skip,
        ..kcop(&table)
    };
    let mut row = null_row(7);
    row[9] = Value::Text(String::new());
    row[23] = Value::Text("\\N".into());
    let read = Change {
        table: table.clone(),
        op: Op::Read,
        before: None,
        after: Some(row),
        op_index: 0,
    };
    let mut all = changes(&table);
    all.insert(0, read);
    let t = txn("snapshot:public.every:0", "2024-05-01T00:00:00", None);
    let records = run(&k, &all, &t, &pg_source());
    let lines: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        "2024-05-01 00:00:00.000000|snapshot:public.every:0|R|||||7|\"\"|\"\\N\""
    );
    assert_eq!(lines.len(), 4, "no tombstone, truncate skipped");
    insta::assert_snapshot!(lines.join("\n"));
}
