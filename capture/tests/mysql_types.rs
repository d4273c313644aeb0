//! Every column type round-trips through the MariaDB source, with the server as the oracle:
//! each decoded value (from the snapshot, a streamed insert and a streamed delete's before
//! image) must print as the server prints the stored value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mysql_support;

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_support::{admin, config, database, exec, start};
use ordo_config::Snapshot;
use ordo_kcop::value::format_uuid;
use ordo_kcop::{Change, ColumnKind, Op, Time, Timestamp, Value};

const TABLE: &str = "CREATE TABLE ty (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    d1 DECIMAL(10,2), d2 DECIMAL(65,30), d3 DECIMAL(5,0) UNSIGNED, d4 DECIMAL(18,9),
    f FLOAT, db DOUBLE,
    dt DATE, tm TIME, tm6 TIME(6), tm2 TIME(2), dtm DATETIME, dtm6 DATETIME(6), dtm3 DATETIME(3),
    ts TIMESTAMP(3) NULL, ts0 TIMESTAMP NULL, yr YEAR,
    c4 CHAR(4), vc VARCHAR(300), tx TEXT, mt MEDIUMTEXT,
    l1 VARCHAR(20) CHARACTER SET latin1, u16 VARCHAR(10) CHARACTER SET utf16,
    bn BINARY(4), vb VARBINARY(10), bl BLOB, lb LONGBLOB,
    e ENUM('a','b','c d'), s SET('x','y','z'), b10 BIT(10), b1 BIT(1), b64 BIT(64),
    j JSON, uu UUID, ip INET6, g POINT
) ENGINE=InnoDB";

const ROWS: [&str; 4] = [
    "(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
      -9223372036854775808, 18446744073709551615,
      -12345678.90, '-12345678901234567890123456789012345.123456789012345678901234567890', 99999,
      0.000000001, 3.14159, 2.718281828459045,
      '2024-02-29', '-838:59:59', '-01:02:03.000004', '12:34:56.78', '1000-01-01 00:00:00',
      '9999-12-31 23:59:59.999999', '2024-05-01 12:30:00.250', '2038-01-19 03:14:07.999',
      '1970-01-01 00:00:01', 2155,
      'ab', REPEAT('é', 300), 'text 😀', REPEAT('x', 70000), 'Ünï€', 'utf16 😀',
      'a', x'00ff00', x'00010203', x'00', 'c d', 'x,z', b'1010101010', b'1',
      b'1111111111111111111111111111111111111111111111111111111111111111',
      '{\"a\": [1, 2, {\"b\": null}]}', '12345678-1234-1234-1234-123456000000', '::ffff:1.2.3.4',
      POINT(1, 2))",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, 0, 0, 1, 1, -5, 5, -1, 0, 0, 0, 0.05, 0, 0, -0.5, -1.5, -0.1,
      '0000-00-00', '00:00:00', '00:00:00.5', '-00:00:00.01', '0000-00-00 00:00:00',
      '2000-01-01 00:00:00.000001', '1999-12-31 23:59:59.5', '1970-01-01 00:00:01.001', NULL, 0,
      '', '', '', '', '', '', '', '', '', '', 'a', '', b'0', b'0', b'0',
      '[]', '00000000-0000-0000-0000-000000000000', '::', POINT(-1.5, 0))",
    "(4, 127, 1, 32767, 2, 8388607, 3, 2147483647, 4, 9223372036854775807, 5, 99999999.99,
      '0.000000000000000000000000000001', 1, 123456789.123456789, 1e30, -1e-300,
      '1970-01-01', '838:59:59', '23:59:59.999999', '00:00:00.99', '2024-02-29 13:14:15',
      '1970-01-01 00:00:00.000000', '2024-01-01 00:00:00.001', NOW(3), '2000-02-29 12:00:00', 1901,
      'abcd', 'tab\\there', 'new\\nline', 'q''uote', 'latin', 'z', 'abcd', 'abcdefghij',
      x'deadbeef', x'', 'b', 'x,y,z', b'1000000000', b'1',
      b'1000000000000000000000000000000000000000000000000000000000000001',
      '\"just a string\"', '6ccd780c-baba-1026-9564-5b8c656024db', '2001:db8::1', POINT(3, 4))",
];

/// How the server prints a column (the oracle expression) and how to compare.
#[derive(Clone, Copy)]
enum Cmp {
    Text,
    Float32,
    Float64,
    Hex,
    Time,
    DateTime,
    Bits(usize),
    Int,
}

fn oracle(name: &str, kind: &ColumnKind) -> (String, Cmp) {
    let c = format!("`{name}`");
    match (name, kind) {
        ("yr", _) => (format!("CAST({c} AS CHAR)"), Cmp::Int),
        ("f", _) => (format!("CAST({c} AS CHAR)"), Cmp::Float32),
        ("db", _) => (format!("CAST({c} AS CHAR)"), Cmp::Float64),
        ("b10", _) => (format!("LPAD(BIN({c}), 10, '0')"), Cmp::Bits(10)),
        ("b1", _) => (format!("BIN({c})"), Cmp::Bits(1)),
        ("b64", _) => (format!("LPAD(BIN({c}), 64, '0')"), Cmp::Bits(64)),
        (_, ColumnKind::Bytes) => (format!("HEX({c})"), Cmp::Hex),
        (_, ColumnKind::Time) => (format!("CAST({c} AS CHAR)"), Cmp::Time),
        (_, ColumnKind::Timestamp | ColumnKind::TimestampTz) => {
            (format!("CAST({c} AS CHAR)"), Cmp::DateTime)
        }
        (_, ColumnKind::Text) => (format!("CONVERT({c} USING utf8mb4)"), Cmp::Text),
        _ => (format!("CAST({c} AS CHAR)"), Cmp::Text),
    }
}

/// Compare one decoded value with the server's text of it.
fn same(v: &Value, server: Option<&str>, cmp: Cmp) -> bool {
    let Some(s) = server else {
        return *v == Value::Null;
    };
    if s.starts_with("0000-00-00") {
        return *v == Value::Null; // zero dates have no model value
    }
    match (cmp, v) {
        (Cmp::Float32, Value::Float32(f)) => s.parse::<f32>().is_ok_and(|p| p == *f),
        (Cmp::Float64, Value::Float64(f)) => s.parse::<f64>().is_ok_and(|p| p == *f),
        (Cmp::Hex, Value::Bytes(b)) => hex::encode_upper(b) == s,
        (Cmp::Time, Value::Time(t)) => s.parse::<Time>().is_ok_and(|p| p == *t),
        (Cmp::DateTime, Value::Timestamp(t) | Value::TimestampTz(t)) => {
            s.parse::<Timestamp>().is_ok_and(|p| p == *t)
        }
        (Cmp::Bits(n), Value::Bits(b)) => b.len == n && b.to_string() == s,
        (Cmp::Int, Value::Int(i)) => s.parse::<i64>().is_ok_and(|p| p == *i),
        (Cmp::Text, v) => text(v) == s,
        _ => false,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Text(t) | Value::Json(t) | Value::Enum(t) => t.clone(),
        Value::Set(s) => s.join(","),
        Value::Date(d) => d.to_string(),
        Value::Uuid(u) => format_uuid(u),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn every_type_round_trips_with_the_server_as_oracle() {
    let db = database("ordo_types").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("SET SESSION sql_mode = '', time_zone = '+00:00'")
        .await
        .unwrap();
    c.query_drop(TABLE).await.unwrap();
    c.query_drop(format!("INSERT INTO ty VALUES {}", ROWS.join(", ")))
        .await
        .unwrap();
    let mut src = start(
        config("ordo", "ordo", Snapshot::Initial, vec![db.clone()]),
        &db,
        None,
    );
    let snap = src
        .events
        .txns_until("the snapshot", |t| t.commit.id.starts_with("snapshot:"))
        .await;
    let copy = exec(&mut c, &["INSERT INTO ty SELECT id + 10, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d1, d2, d3, d4, f, db, dt, tm, tm6, tm2, dtm, dtm6, dtm3, ts, ts0, yr, c4, vc, tx, mt, l1, u16, bn, vb, bl, lb, e, s, b10, b1, b64, j, uu, ip, g FROM ty"]).await;
    let delete = exec(&mut c, &["DELETE FROM ty WHERE id > 10"]).await;
    let streamed = src
        .events
        .txns_until("the delete", |t| *t.commit.id == *delete)
        .await;
    assert_eq!(&*streamed[0].commit.id, copy.as_str());

    let mut checked: Vec<(&str, &Change)> = Vec::new();
    checked.extend(
        snap.iter()
            .flat_map(|t| &t.changes)
            .map(|c| ("snapshot", c)),
    );
    checked.extend(streamed.iter().flat_map(|t| &t.changes).map(|c| {
        (
            if c.op == Op::Insert {
                "insert"
            } else {
                "delete"
            },
            c,
        )
    }));
    assert_eq!(checked.len(), 12);
    let schema = checked[0].1.table.clone();
    assert!(
        checked
            .iter()
            .all(|(_, c)| c.table.version == schema.version),
        "snapshot and stream agree on the schema"
    );
    assert_eq!(
        schema.columns.iter().find(|c| c.name == "uu").unwrap().kind,
        ColumnKind::Uuid
    );
    assert_eq!(
        schema.columns.iter().find(|c| c.name == "j").unwrap().kind,
        ColumnKind::Json
    );
    assert_eq!(
        schema
            .columns
            .iter()
            .find(|c| c.name == "miu")
            .unwrap()
            .type_name,
        "mediumint(8) unsigned"
    );

    let exprs: Vec<(String, Cmp)> = schema
        .columns
        .iter()
        .map(|col| oracle(&col.name, &col.kind))
        .collect();
    let sql = format!(
        "SELECT id, {} FROM ty ORDER BY id",
        exprs
            .iter()
            .map(|(e, _)| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap();
    let mut server: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    for row in rows {
        let vals: Vec<mysql_async::Value> = row.unwrap();
        let id: i64 = mysql_async::from_value(vals[0].clone());
        let texts = vals[1..]
            .iter()
            .map(|v| mysql_async::from_value::<Option<String>>(v.clone()))
            .collect();
        server.insert(id, texts);
    }
    let mut failures = Vec::new();
    for (path, change) in &checked {
        let row = change.after.as_ref().or(change.before.as_ref()).unwrap();
        let Value::Int(id) = row[0] else {
            panic!("id {:?}", row[0])
        };
        let want = &server[&(id % 10)];
        for (i, col) in schema.columns.iter().enumerate().skip(1) {
            if !same(&row[i], want[i].as_deref(), exprs[i].1) {
                failures.push(format!(
                    "{path} row {id} column {}: decoded {:?}, server {:?}",
                    col.name, row[i], want[i]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}
