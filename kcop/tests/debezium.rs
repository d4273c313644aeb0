//! The `debezium` format's exact bytes, and its output checked against Debezium's published
//! example change events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::{changes, col, every_table, full_row, null_row, pg_source, pg_txn, render, run, txn};
use ordo_kcop::debezium::{DebeziumConfig, DebeziumKcop, DecimalHandling};
use ordo_kcop::json::{DeleteMode, TruncateMode, unscaled_bytes};
use ordo_kcop::{
    BinlogCoord, Change, ColumnKind, Gtid, GtidSet, Kcop, Lsn, Op, Operation, Position,
    ProducerRecord, Row, SchemaRef, SourceInfo, TableId, TableSchema, Timestamp, TxnBegin, Value,
};
use serde_json::{Value as Json, json};

fn config(table: &TableSchema) -> DebeziumConfig {
    DebeziumConfig {
        topic: "cdc.every".into(),
        key: table.key.clone(),
        columns: (0..table.columns.len()).collect(),
        deletes: DeleteMode::Tombstone,
        truncate: TruncateMode::Record,
        schemas: true,
        decimals: DecimalHandling::Precise,
        version: "test".into(),
    }
}

#[test]
fn postgres_changes_with_schemas() {
    let table = every_table();
    let kcop = DebeziumKcop::new(config(&table), &table).unwrap();
    let records = run(&kcop, &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(
        records.len(),
        5,
        "insert, update, delete + tombstone, truncate"
    );
    for r in &records[..4] {
        if let Some(v) = &r.value {
            serde_json::from_slice::<Json>(v).expect("every value is valid JSON");
        }
    }
    insta::assert_snapshot!(render(&records));
}

#[test]
fn without_schemas_and_decimals_as_strings() {
    let table = every_table();
    let cfg = DebeziumConfig {
        schemas: false,
        decimals: DecimalHandling::String,
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Skip,
        ..config(&table)
    };
    let kcop = DebeziumKcop::new(cfg, &table).unwrap();
    let records = run(&kcop, &changes(&table), &pg_txn(), &pg_source());
    assert_eq!(
        records.len(),
        3,
        "insert, update, delete; no tombstone, truncate skipped"
    );
    insta::assert_snapshot!(render(&records));
}

#[test]
fn decimals_as_doubles_and_snapshot_reads() {
    let table = every_table();
    let cfg = DebeziumConfig {
        schemas: false,
        decimals: DecimalHandling::Double,
        ..config(&table)
    };
    let kcop = DebeziumKcop::new(cfg, &table).unwrap();
    let read = Change {
        table: table.clone(),
        op: Op::Read,
        before: None,
        after: Some(full_row(5, "snap")),
        op_index: 0,
    };
    let t = txn("snapshot:public.every:0", "2024-05-01T00:00:00", None);
    let records = run(&kcop, &[read], &t, &pg_source());
    let v: Json = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(v["op"], "r");
    assert_eq!(v["source"]["snapshot"], "true");
    assert_eq!(
        v["source"]["txId"],
        Json::Null,
        "snapshot batches have no xid"
    );
    assert_eq!(v["after"]["amount"], -12.5);
    insta::assert_snapshot!(render(&records));
}

#[test]
fn precise_decimals_refuse_nan_with_a_hint() {
    let table = every_table();
    let kcop = DebeziumKcop::new(config(&table), &table).unwrap();
    let mut row = full_row(1, "x");
    row[7] = Value::Decimal("NaN".parse().unwrap());
    let c = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(row),
        op_index: 0,
    };
    let op = Operation {
        change: &c,
        txn: &pg_txn(),
        source: &pg_source(),
    };
    let err = kcop.process(&op, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        err.contains("public.every") && err.contains("amount"),
        "{err}"
    );
    assert!(err.contains("decimal_handling"), "{err}");
}

#[test]
fn unscaled_bytes_are_minimal_twos_complement() {
    let b = |s: &str, scale| unscaled_bytes(&s.parse().unwrap(), scale).unwrap();
    assert_eq!(b("12.50", 2), vec![0x04, 0xE2]);
    assert_eq!(
        b("12.5", 2),
        vec![0x04, 0xE2],
        "rescaled to the column's scale"
    );
    assert_eq!(b("1.28", 2), vec![0x00, 0x80]);
    assert_eq!(b("-1", 0), vec![0xFF]);
    assert_eq!(b("-1.28", 2), vec![0x80]);
    assert_eq!(b("-1.29", 2), vec![0xFF, 0x7F]);
    assert_eq!(b("-2.56", 2), vec![0xFF, 0x00]);
    assert_eq!(b("0.00", 2), vec![0x00]);
    assert_eq!(
        b("18446744073709551616", 0),
        vec![1, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert!(
        unscaled_bytes(&"1.234".parse().unwrap(), 2).is_none(),
        "would lose digits"
    );
}

#[test]
fn transaction_block_counts_per_table_and_restarts_on_replay() {
    let table = every_table();
    let kcop = DebeziumKcop::new(
        DebeziumConfig {
            schemas: false,
            ..config(&table)
        },
        &table,
    )
    .unwrap();
    let insert = |id, op_index| Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(null_row(id)),
        op_index,
    };
    // Ops 0 and 3 of the transaction are this table's (1, 2 went to other tables).
    let ops = [insert(1, 0), insert(2, 3)];
    let orders = |recs: &[ProducerRecord]| {
        recs.iter()
            .map(|r| {
                let v: Json = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
                let t = &v["transaction"];
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["total_order"].as_u64().unwrap(),
                    t["data_collection_order"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = orders(&run(&kcop, &ops, &pg_txn(), &pg_source()));
    assert_eq!(first, vec![("7421".into(), 1, 1), ("7421".into(), 4, 2)]);
    let replay = orders(&run(&kcop, &ops, &pg_txn(), &pg_source()));
    assert_eq!(
        replay, first,
        "a replayed transaction yields the same records"
    );
    let next = txn("7422", "2024-05-01T12:31:00", None);
    let second = orders(&run(&kcop, &ops[1..], &next, &pg_source()));
    assert_eq!(second, vec![("7422".into(), 4, 1)]);
}

// ---------------------------------------------------------------------------------------------
// Published examples.

/// Debezium's `customers` example table (`id` key, three NOT NULL varchar columns).
fn customers(namespace: &str) -> SchemaRef {
    Arc::new(TableSchema {
        id: TableId::new(namespace, "customers"),
        version: 1,
        columns: vec![
            col("id", "integer", ColumnKind::Int(32), false),
            col("first_name", "varchar(255)", ColumnKind::Text, false),
            col("last_name", "varchar(255)", ColumnKind::Text, false),
            col("email", "varchar(255)", ColumnKind::Text, false),
        ],
        key: vec![0],
    })
}

fn anne(id: i64) -> Row {
    ["Anne", "Kretchmar", "annek@noanswer.org"]
        .into_iter()
        .map(|s| Value::Text(s.into()))
        .fold(vec![Value::Int(id)], |mut row, v| {
            row.push(v);
            row
        })
}

/// Check that every field of `published` is in `ours` with the same value (struct schemas'
/// `fields` arrays are matched by field name), except the paths in `differs`. Returns the
/// paths that were compared.
fn compare(ours: &Json, published: &Json, path: &str, differs: &[&str], seen: &mut Vec<String>) {
    if differs.contains(&path) {
        return;
    }
    match published {
        Json::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let o = ours.get(k).unwrap_or_else(|| panic!("missing {child}"));
                compare(o, v, &child, differs, seen);
            }
        }
        Json::Array(items) if items.iter().all(|i| i.get("field").is_some()) => {
            for item in items {
                let name = item["field"].as_str().unwrap();
                let o = ours
                    .as_array()
                    .and_then(|a| a.iter().find(|o| o["field"] == name))
                    .unwrap_or_else(|| panic!("missing schema field {path}[{name}]"));
                compare(o, item, &format!("{path}[{name}]"), differs, seen);
            }
        }
        _ => {
            assert_eq!(ours, published, "at {path}");
            seen.push(path.to_owned());
        }
    }
}

fn struct_of(name: &str, field: &str) -> Json {
    let text = |f: &str| json!({"type": "string", "optional": false, "field": f});
    json!({
        "type": "struct",
        "fields": [{"type": "int32", "optional": false, "field": "id"}, text("first_name"), text("last_name"), text("email")],
        "optional": true, "name": name, "field": field
    })
}

/// The create event of the Debezium PostgreSQL connector documentation ("Data change events" >
/// "create events", debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-create-events):
/// the `customers` row 1 Anne Kretchmar, txId 555, lsn 24023128, server `PostgreSQL_server`,
/// database `postgres`.
#[test]
fn postgres_create_event_matches_debezium_documentation() {
    let source =
        |ty: &str, optional: bool, f: &str| json!({"type": ty, "optional": optional, "field": f});
    let published = json!({
        "schema": {
            "type": "struct",
            "fields": [
                struct_of("PostgreSQL_server.inventory.customers.Value", "before"),
                struct_of("PostgreSQL_server.inventory.customers.Value", "after"),
                {"type": "struct", "fields": [
                    source("string", false, "version"), source("string", false, "connector"),
                    source("string", false, "name"), source("int64", false, "ts_ms"),
                    {"type": "boolean", "optional": true, "default": false, "field": "snapshot"},
                    source("string", false, "db"), source("string", false, "schema"),
                    source("string", false, "table"), source("int64", true, "txId"),
                    source("int64", true, "lsn"), source("int64", true, "xmin")
                 ], "optional": false, "name": "io.debezium.connector.postgresql.Source", "field": "source"},
                {"type": "string", "optional": false, "field": "op"},
                {"type": "int64", "optional": true, "field": "ts_ms"}
            ],
            "optional": false,
            "name": "PostgreSQL_server.inventory.customers.Envelope"
        },
        "payload": {
            "before": null,
            "after": {"id": 1, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"},
            "source": {
                "version": "2.x", "connector": "postgresql", "name": "PostgreSQL_server",
                "ts_ms": 1_559_033_904_863_i64, "snapshot": true, "db": "postgres",
                "sequence": "[\"24023119\",\"24023128\"]", "schema": "public", "table": "customers",
                "txId": 555, "lsn": 24_023_128, "xmin": null
            },
            "op": "c",
            "ts_ms": 1_559_033_904_863_i64
        }
    });
    // The documented table is `inventory.customers` in the schema names but `public` in the
    // source block; ordo names both after the table's schema, so the table lives in `inventory`
    // here and `source.schema` is the one documented difference of that kind.
    let table = customers("inventory");
    let kcop = DebeziumKcop::new(
        DebeziumConfig {
            deletes: DeleteMode::Image,
            ..config(&table)
        },
        &table,
    )
    .unwrap();
    let change = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(anne(1)),
        op_index: 0,
    };
    let t = TxnBegin {
        id: "555".into(),
        commit_time: Timestamp(1_559_033_904_863_000),
        position: Some(Position::Postgres(Lsn(24_023_128))),
    };
    let source = SourceInfo {
        connector: "postgresql",
        name: "PostgreSQL_server".into(),
        database: "postgres".into(),
    };
    let records = run(&kcop, &[change], &t, &source);
    let ours: Json = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    let differs = [
        // ordo's own version string.
        "payload.source.version",
        // Debezium 2.x writes `snapshot` as the string enum "true"/"false"/"last"/"incremental"
        // (io.debezium.data.Enum), which ordo follows; the example still shows a boolean (and
        // `true` for a streamed create event).
        "payload.source.snapshot",
        "schema.fields[source].fields[snapshot]",
        // ordo knows the commit LSN, not the previous one: `[null,"24023128"]`.
        "payload.source.sequence",
        "payload.source.schema",
    ];
    let mut seen = Vec::new();
    compare(&ours, &published, "", &differs, &mut seen);
    assert_eq!(ours["payload"]["source"]["sequence"], "[null,\"24023128\"]");
    assert_eq!(ours["payload"]["source"]["snapshot"], "false");
    assert_eq!(
        ours["payload"]["transaction"],
        json!({"id": "555", "total_order": 1, "data_collection_order": 1})
    );
    assert!(seen.len() > 40, "compared {} leaves", seen.len());
    let key: Json = serde_json::from_slice(records[0].key.as_ref().unwrap()).unwrap();
    assert_eq!(key["payload"], json!({"id": 1}));
    assert_eq!(
        key["schema"]["name"],
        "PostgreSQL_server.inventory.customers.Key"
    );
}

/// The create event of the Debezium MySQL connector documentation ("Data change events" >
/// "create events", debezium.io/documentation/reference/stable/connectors/mysql.html#mysql-create-events):
/// the `inventory.customers` row 1004 Anne Kretchmar, server `mysql-server-1`, binlog
/// `mysql-bin.000003` position 154.
#[test]
fn mysql_create_event_matches_debezium_documentation() {
    let source =
        |ty: &str, optional: bool, f: &str| json!({"type": ty, "optional": optional, "field": f});
    let published = json!({
        "schema": {
            "type": "struct",
            "fields": [
                struct_of("mysql-server-1.inventory.customers.Value", "before"),
                struct_of("mysql-server-1.inventory.customers.Value", "after"),
                {"type": "struct", "fields": [
                    source("string", false, "version"), source("string", false, "connector"),
                    source("string", false, "name"), source("int64", false, "ts_ms"),
                    {"type": "boolean", "optional": true, "default": false, "field": "snapshot"},
                    source("string", false, "db"), source("string", true, "table"),
                    source("int64", false, "server_id"), source("string", true, "gtid"),
                    source("string", false, "file"), source("int64", false, "pos"),
                    source("int32", false, "row"), source("int64", true, "thread"),
                    source("string", true, "query")
                 ], "optional": false, "name": "io.debezium.connector.mysql.Source", "field": "source"},
                {"type": "string", "optional": false, "field": "op"},
                {"type": "int64", "optional": true, "field": "ts_ms"}
            ],
            "optional": false,
            "name": "mysql-server-1.inventory.customers.Envelope"
        },
        "payload": {
            "op": "c", "ts_ms": 1_465_491_411_815_i64, "before": null,
            "after": {"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"},
            "source": {
                "version": "1.9.3.Final", "connector": "mysql", "name": "mysql-server-1", "ts_ms": 0,
                "snapshot": false, "db": "inventory", "table": "customers", "server_id": 0,
                "gtid": null, "file": "mysql-bin.000003", "pos": 154, "row": 0, "thread": 7,
                "query": "INSERT INTO customers (first_name, last_name, email) VALUES ('Anne', 'Kretchmar', 'annek@noanswer.org')"
            }
        }
    });
    let table = customers("inventory");
    let kcop = DebeziumKcop::new(config(&table), &table).unwrap();
    let change = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(anne(1004)),
        op_index: 0,
    };
    let coord = BinlogCoord {
        file: "mysql-bin.000003".into(),
        pos: 154,
    };
    let t = TxnBegin {
        id: "3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into(),
        commit_time: Timestamp(1_465_491_411_815_000),
        position: Some(Position::MySql {
            gtids: GtidSet::MySql(Default::default()),
            coord,
        }),
    };
    let source = SourceInfo {
        connector: "mysql",
        name: "mysql-server-1".into(),
        database: String::new(),
    };
    let records = run(&kcop, &[change], &t, &source);
    let ours: Json = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    let differs = [
        "payload.source.version",
        "payload.source.snapshot",
        "schema.fields[source].fields[snapshot]",
        // ordo's source.ts_ms is the commit time (the example shows 0 for it).
        "payload.source.ts_ms",
        // ordo's transaction id is the GTID; the example's server runs without GTIDs.
        "payload.source.gtid",
        // The binlog's thread id and the statement (binlog_rows_query_log_events) are not read.
        "payload.source.thread",
        "payload.source.query",
    ];
    let mut seen = Vec::new();
    compare(&ours, &published, "", &differs, &mut seen);
    assert_eq!(ours["payload"]["source"]["thread"], Json::Null);
    assert_eq!(
        ours["payload"]["source"]["gtid"],
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
    );
    assert!(seen.len() > 50, "compared {} leaves", seen.len());
    // A MariaDB GTID fills server_id and gtid.
    let g: Gtid = "0-3306-42".parse().unwrap();
    let t = TxnBegin {
        id: g.to_string().into(),
        ..t
    };
    let change = Change {
        table: table.clone(),
        op: Op::Insert,
        before: None,
        after: Some(anne(1005)),
        op_index: 0,
    };
    let source = SourceInfo {
        connector: "mariadb",
        ..source
    };
    let records = run(&kcop, &[change], &t, &source);
    let v: Json = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(v["payload"]["source"]["server_id"], 3306);
    assert_eq!(v["payload"]["source"]["gtid"], "0-3306-42");
    assert_eq!(
        v["schema"]["fields"][2]["name"],
        "io.debezium.connector.mariadb.Source"
    );
}
