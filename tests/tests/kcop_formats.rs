//! The `debezium`, `csv-audit` and `audit-rows` formats on real PostgreSQL changes: one
//! transaction of two inserts, an update that leaves a TOAST value unchanged, a delete with a
//! key-only old image, and a truncate, through the daemon to the broker.
//!
//! MariaDB: a snapshot read, an insert and an update in one transaction, a delete (its binlog
//! has full row images and no TRUNCATE rows).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use mysql_async::prelude::Queryable;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, mysql_source_yaml, pg_source_yaml};
use ordo_tests::kafka::{Record, read_all, wait_for_commits};
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name,
};
use serde_json::{Value, json};

/// A value over 2 kB that does not compress, so PostgreSQL stores it out of line: 200 md5
/// digests, 6400 characters.
const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)";

/// The three outputs under test, for tables matching `tables`.
fn outputs(prefix: &str, tables: &str) -> String {
    kafka_yaml(&format!("{prefix}.commits"), Some(1))
        + &format!(
            r#"mappings:
  - tables: ["{tables}"]
    outputs:
      - topic: "{prefix}.dbz"
        format: debezium
        deletes: tombstone
      - topic: "{prefix}.csv"
        format: csv-audit
      - topic: "{prefix}.audit"
        format: audit-rows
"#,
        )
}

fn config(db: &str, prefix: &str) -> String {
    pg_source_yaml(db, prefix, "never") + &outputs(prefix, "public.items")
}

async fn read(topic: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&topic))
        .await
        .unwrap()
}

/// Start the daemon on a fresh database and wait until its slot exists, so that changes made
/// afterwards are captured (snapshot: never).
async fn setup() -> (
    tokio_postgres::Client,
    String,
    String,
    ordo_tests::capture::RunningDaemon,
) {
    let (db, url) = pg_create_database("kfmt").await;
    let prefix = unique_name("kfmt");
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount numeric(10,2), placed timestamptz, big text)",
    )
    .await
    .unwrap();
    let mut daemon = start(&config(&db, &prefix));
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    (c, db, prefix, daemon)
}

fn fields(r: &Record) -> Vec<String> {
    let line = String::from_utf8(r.value.clone().unwrap()).unwrap();
    // No field in this test holds a comma or quote, so a plain split is exact.
    line.split(',').map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_csv_audit_and_audit_rows_from_postgres() {
    let (c, db, prefix, daemon) = setup().await;
    // One call per transaction: a multi-statement string is one implicit transaction.
    for sql in [
        format!(
            "BEGIN;
             INSERT INTO items VALUES (1, 'ann', 10.50, '2024-01-01 10:00:00+00', {BIG});
             INSERT INTO items VALUES (2, 'bob', -0.01, NULL, 'small');
             COMMIT;"
        ),
        "UPDATE items SET name = 'ann2' WHERE id = 1".to_owned(),
        "DELETE FROM items WHERE id = 2".to_owned(),
        "TRUNCATE items".to_owned(),
    ] {
        c.batch_execute(&sql).await.unwrap();
    }
    let commits = wait_for_commits(&format!("{prefix}.commits"), 4).await;
    let txns: Vec<&str> = commits.iter().map(|c| c.txn.as_str()).collect();
    assert_eq!(
        commits.iter().map(|c| c.ops).collect::<Vec<_>>(),
        [2, 1, 1, 1]
    );
    // Per op: debezium 1 (+1 tombstone for the delete), csv-audit 1, audit-rows 1.
    assert_eq!(
        commits.iter().map(|c| c.records).collect::<Vec<_>>(),
        [6, 3, 4, 3]
    );

    check_debezium(&read(format!("{prefix}.dbz")).await, &txns, &db, &prefix);
    check_csv(&read(format!("{prefix}.csv")).await, &txns);
    check_audit_rows(&read(format!("{prefix}.audit")).await, &txns);
    daemon.stop().await.unwrap();
}

fn check_debezium(recs: &[Record], txns: &[&str], db: &str, prefix: &str) {
    assert_eq!(recs.len(), 6, "c, c, u, d, tombstone, t");
    let v: Vec<Value> = recs.iter().map(Record::json).collect();
    let p = |i: usize| &v[i]["payload"];
    assert_eq!(
        v[0]["schema"]["name"],
        format!("{prefix}.public.items.Envelope")
    );
    let key: Value = serde_json::from_slice(recs[0].key.as_ref().unwrap()).unwrap();
    assert_eq!(key["payload"], json!({"id": 1}));
    assert_eq!(key["schema"]["name"], format!("{prefix}.public.items.Key"));
    let ops: Vec<&str> = [0, 1, 2, 3, 5]
        .iter()
        .map(|&i| p(i)["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "c", "u", "d", "t"]);

    let after = &p(0)["after"];
    assert_eq!(after["name"], "ann");
    assert_eq!(
        after["amount"], "BBo=",
        "1050 as big-endian two's complement, base64"
    );
    assert_eq!(after["placed"], "2024-01-01T10:00:00Z");
    assert_eq!(after["big"].as_str().unwrap().len(), 6400);
    assert_eq!(p(1)["after"]["amount"], "/w==", "-0.01 is the unscaled -1");
    assert_eq!(p(1)["after"]["placed"], Value::Null);

    let source = &p(0)["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], prefix);
    assert_eq!(
        (&source["db"], &source["schema"], &source["table"]),
        (&json!(db), &json!("public"), &json!("items"))
    );
    assert_eq!(source["txId"], txns[0].parse::<u64>().unwrap());
    assert_eq!(source["snapshot"], "false");
    assert!(source["lsn"].as_u64().unwrap() > 0);
    for (i, (txn, total, per_table)) in [(0, 1, 1), (0, 2, 2), (1, 1, 1), (2, 1, 1), (3, 1, 1)]
        .iter()
        .enumerate()
    {
        let rec = if i == 4 { 5 } else { i };
        let t = &p(rec)["transaction"];
        assert_eq!(
            t,
            &json!({"id": txns[*txn], "total_order": total, "data_collection_order": per_table}),
            "record {rec}"
        );
        assert_eq!(recs[rec].header("ordo.txn"), Some(txns[*txn]));
    }

    assert_eq!(
        p(2)["before"],
        Value::Null,
        "replica identity default: no old row for an update"
    );
    assert_eq!(p(2)["after"]["name"], "ann2");
    assert_eq!(p(2)["after"]["big"], "__debezium_unavailable_value");
    assert_eq!(p(3)["before"], json!({"id": 2}), "key-only old image");
    assert_eq!(p(3)["after"], Value::Null);
    assert_eq!(recs[4].value, None, "tombstone after the delete");
    assert_eq!(recs[4].key, recs[3].key);
    assert_eq!(recs[4].header("ordo.sub"), Some("1"));
    assert_eq!(recs[5].key, None, "truncates have no key");
}

fn check_csv(recs: &[Record], txns: &[&str]) {
    assert_eq!(recs.len(), 4 + 1, "I, I, U, D, T");
    let rows: Vec<Vec<String>> = recs.iter().map(fields).collect();
    for (row, (txn, op)) in rows
        .iter()
        .zip([(0, "I"), (0, "I"), (1, "U"), (2, "D"), (3, "T")])
    {
        assert_eq!(row.len(), 4 + 2 * 5, "{row:?}");
        assert_eq!(row[0].len(), "2024-01-01 10:00:00.000000".len(), "{row:?}");
        assert_eq!(
            (row[1].as_str(), row[2].as_str(), row[3].as_str()),
            (txns[txn], op, "")
        );
    }
    let empty = vec![String::new(); 5];
    assert_eq!(rows[0][4..9], empty[..], "an insert has no before image");
    assert_eq!(
        rows[0][9..13],
        ["1", "ann", "10.50", "2024-01-01T10:00:00Z"]
    );
    assert_eq!(rows[0][13].len(), 6400);
    assert_eq!(rows[1][9..14], ["2", "bob", "-0.01", "\\N", "small"]);
    assert_eq!(rows[2][4..9], empty[..], "no old row for the update");
    assert_eq!(
        rows[2][9..14],
        ["1", "ann2", "10.50", "2024-01-01T10:00:00Z", ""],
        "unchanged TOAST is empty"
    );
    assert_eq!(rows[3][4..9], ["2", "", "", "", ""], "key-only old image");
    assert_eq!(rows[3][9..14], empty[..]);
    assert_eq!(rows[4][4..14], [empty.clone(), empty].concat()[..]);
    assert_eq!(recs[0].key.as_deref(), Some(&b"{\"id\":1}"[..]));
}

fn check_audit_rows(recs: &[Record], txns: &[&str]) {
    let v: Vec<Value> = recs.iter().map(Record::json).collect();
    let codes: Vec<&str> = v.iter().map(|v| v["A_ENTTYP"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        ["PT", "PT", "UP", "DL", "CR"],
        "no UB: the update has no old row"
    );
    let ccids: Vec<&str> = v.iter().map(|v| v["A_CCID"].as_str().unwrap()).collect();
    assert_eq!(ccids, [txns[0], txns[0], txns[1], txns[2], txns[3]]);
    assert_eq!(v[0]["amount"], "10.50");
    assert_eq!(v[0]["A_USER"], Value::Null);
    assert!(
        v[2].get("big").is_none(),
        "an unchanged TOAST value is left out"
    );
    assert_eq!(v[2]["name"], "ann2");
    let dl = v[3].as_object().unwrap();
    assert_eq!(
        dl.keys().collect::<Vec<_>>(),
        ["A_ENTTYP", "A_TIMSTAMP", "A_CCID", "A_USER", "id"]
    );
    assert_eq!(recs[4].key, None);
}

// ---------------------------------------------------------------------------------------------
// MariaDB.

async fn mysql_conn(db: &str) -> mysql_async::Conn {
    let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
    mysql_async::Conn::from_url(url.as_str())
        .await
        .expect("connect to MariaDB: run scripts/stack up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_csv_audit_and_audit_rows_from_mariadb() {
    let db = mysql_create_database("kfmt").await;
    let prefix = unique_name("kfmt");
    let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
    let yaml =
        mysql_source_yaml(&db, server_id, "initial") + &outputs(&prefix, &format!("{db}.items"));
    let mut c = mysql_conn(&db).await;
    c.query_drop(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, \
         amount DECIMAL(10,2), placed DATETIME(6)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO items VALUES (1, 'ann', 10.50, '2024-01-01 10:00:00.123456')")
        .await
        .unwrap();
    let mut daemon = start(&yaml);
    let commit_topic = format!("{prefix}.commits");
    wait_for_commits(&commit_topic, 1).await; // the snapshot
    daemon.assert_running().await;
    for sql in [
        "BEGIN; INSERT INTO items VALUES (2, 'bob', -0.01, NULL); \
         UPDATE items SET name = 'ann2' WHERE id = 1; COMMIT",
        "DELETE FROM items WHERE id = 2",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let commits = wait_for_commits(&commit_topic, 3).await;
    let txns: Vec<&str> = commits.iter().map(|c| c.txn.as_str()).collect();
    assert_eq!(commits.iter().map(|c| c.ops).collect::<Vec<_>>(), [1, 2, 1]);

    let dbz = read(format!("{prefix}.dbz")).await;
    assert_eq!(dbz.len(), 5, "r, c, u, d, tombstone");
    let p: Vec<Value> = dbz[..4]
        .iter()
        .map(|r| r.json()["payload"].clone())
        .collect();
    let ops: Vec<&str> = p.iter().map(|p| p["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["r", "c", "u", "d"]);
    assert_eq!(p[0]["source"]["snapshot"], "true");
    assert_eq!(
        p[0]["after"]["placed"], 1_704_103_200_123_456_i64,
        "io.debezium.time.MicroTimestamp"
    );
    assert_eq!(p[0]["after"]["amount"], "BBo=");
    let source = &p[1]["source"];
    assert_eq!(source["connector"], "mariadb");
    assert_eq!(source["name"], format!("server-{server_id}"));
    assert_eq!(
        (&source["db"], &source["table"]),
        (&json!(db), &json!("items"))
    );
    assert_eq!(source["gtid"], txns[1]);
    let gtid: ordo_kcop::Gtid = txns[1].parse().unwrap();
    assert_eq!(source["server_id"], gtid.server_id);
    assert!(!source["file"].as_str().unwrap().is_empty() && source["pos"].as_u64().unwrap() > 0);
    assert_eq!(p[1]["after"]["amount"], "/w==");
    let orders: Vec<Value> = p[1..].iter().map(|p| p["transaction"].clone()).collect();
    assert_eq!(
        orders,
        [
            json!({"id": txns[1], "total_order": 1, "data_collection_order": 1}),
            json!({"id": txns[1], "total_order": 2, "data_collection_order": 2}),
            json!({"id": txns[2], "total_order": 1, "data_collection_order": 1}),
        ]
    );
    assert_eq!(
        p[2]["before"]["name"], "ann",
        "full row images: the update has its old row"
    );
    assert_eq!(p[2]["after"]["name"], "ann2");
    assert_eq!(p[3]["before"]["name"], "bob");
    assert_eq!((dbz[4].value.as_ref(), &dbz[4].key), (None, &dbz[3].key));

    let rows: Vec<Vec<String>> = read(format!("{prefix}.csv"))
        .await
        .iter()
        .map(fields)
        .collect();
    let codes: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(codes, ["R", "I", "U", "D"]);
    assert_eq!(
        rows[0][4..12],
        [
            "",
            "",
            "",
            "",
            "1",
            "ann",
            "10.50",
            "2024-01-01T10:00:00.123456"
        ]
    );
    assert_eq!(
        rows[2][4..12],
        [
            "1",
            "ann",
            "10.50",
            "2024-01-01T10:00:00.123456",
            "1",
            "ann2",
            "10.50",
            "2024-01-01T10:00:00.123456"
        ]
    );
    assert_eq!(rows[3][4..12], ["2", "bob", "-0.01", "\\N", "", "", "", ""]);

    let audit: Vec<Value> = read(format!("{prefix}.audit"))
        .await
        .iter()
        .map(Record::json)
        .collect();
    let codes: Vec<&str> = audit
        .iter()
        .map(|v| v["A_ENTTYP"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["RR", "PT", "UB", "UP", "DL"],
        "an update is its before then its after image"
    );
    assert_eq!(
        (&audit[2]["name"], &audit[3]["name"]),
        (&json!("ann"), &json!("ann2"))
    );
    assert_eq!(audit[2]["A_CCID"], txns[1]);
    daemon.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Options (no servers needed: the routes are built from the config and a table schema).

/// The error building the routes of `public.items` for one output with `output` as its
/// format-specific lines.
fn route_error(output: &str) -> String {
    use ordo_kcop::{Column, ColumnKind, TableId, TableSchema};
    let yaml = format!(
        "source:\n  postgres:\n    host: localhost\n    user: ordo\n    password: ordo\n    database: shop\n    slot: s\n    publication: p\n\
         kafka:\n  bootstrap_servers: \"localhost:9092\"\n  commit_topic: commits\n\
         mappings:\n  - tables: [\"public.items\"]\n    outputs:\n      - topic: items\n{output}"
    );
    let config = ordo_config::parse_with_env(&yaml, "test.yaml", |_| None)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    let mut router = ordo_capture::routes::Router::new(
        std::sync::Arc::new(config),
        "shop".into(),
        ordo_capture::routes::KcopRegistry::default(),
    );
    let schema = std::sync::Arc::new(TableSchema {
        id: TableId::new("public", "items"),
        version: 1,
        columns: vec![Column {
            name: "id".into(),
            type_name: "integer".into(),
            kind: ColumnKind::Int(32),
            nullable: false,
        }],
        key: vec![0],
    });
    router
        .routes(&schema)
        .expect_err("the output is refused")
        .to_string()
}

#[test]
fn unknown_and_invalid_options_are_refused_with_the_valid_ones() {
    let err = route_error("        format: debezium\n        options: { schema: false }\n");
    assert!(
        err.contains("public.items") && err.contains("`schema`"),
        "{err}"
    );
    assert!(
        err.contains("valid options: schemas, decimal_handling"),
        "{err}"
    );
    let err =
        route_error("        format: debezium\n        options: { decimal_handling: exact }\n");
    assert!(
        err.contains("options.decimal_handling") && err.contains("precise, string, double"),
        "{err}"
    );
    let err = route_error("        format: csv-audit\n        options: { delimiter: \";;\" }\n");
    assert!(
        err.contains("options.delimiter") && err.contains("one ASCII character"),
        "{err}"
    );
    let err = route_error("        format: audit-rows\n        options: { sep: \",\" }\n");
    assert!(err.contains("valid options: encoding, timestamps"), "{err}");
}

#[test]
fn audit_rows_options_of_the_other_encoding_are_refused() {
    let err = route_error(
        "        format: audit-rows\n        options: { encoding: avro, timestamps: iso }\n",
    );
    assert!(
        err.contains("options.timestamps") && err.contains("`encoding: json` only"),
        "{err}"
    );
    let err = route_error("        format: audit-rows\n        options: { schema_topic: x }\n");
    assert!(
        err.contains("options.schema_topic") && err.contains("`encoding: avro` only"),
        "{err}"
    );
}
