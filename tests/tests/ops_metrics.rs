//! The metrics endpoint after a known workload through the real daemon, for PostgreSQL and
//! MariaDB: exact row, transaction and commit-record counts, snapshot progress, slot retained
//! WAL (PostgreSQL) and `/health`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use ordo_tests::capture::start;
use ordo_tests::config::kafka_yaml;
use ordo_tests::ops::{free_local_addr, http_get, sample};
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, stack, unique_name, wait_until,
};

const SETUP: [&str; 3] = [
    "CREATE TABLE orders (id int PRIMARY KEY, customer varchar(20) NOT NULL)",
    "CREATE TABLE items (order_id int, line_no int, qty int, PRIMARY KEY (order_id, line_no))",
    "INSERT INTO orders VALUES (1, 'ann'), (2, 'bob'), (3, 'cy')",
];

/// Three committed transactions and a rolled-back one, statement by statement.
const WORKLOAD: [&str; 12] = [
    "BEGIN",
    "INSERT INTO orders VALUES (4, 'dee'), (5, 'eve')",
    "INSERT INTO items VALUES (4, 1, 1), (4, 2, 2), (5, 1, 3)",
    "COMMIT",
    "BEGIN",
    "UPDATE orders SET customer = 'dee2' WHERE id = 4",
    "DELETE FROM items WHERE order_id = 4 AND line_no = 2",
    "COMMIT",
    "BEGIN",
    "INSERT INTO orders VALUES (6, 'fay')",
    "ROLLBACK",
    "INSERT INTO items VALUES (5, 2, 9)",
];

/// A session on the source database.
enum Sql {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Sql {
    async fn run(&mut self, statements: &[&str]) {
        for s in statements {
            match self {
                Sql::Pg(c) => c.batch_execute(s).await.unwrap(),
                Sql::My(c) => c.query_drop(*s).await.unwrap(),
            }
        }
    }
}

const MAPPINGS: &str = r#"mappings:
  - tables: ["{namespace}.*"]
    outputs:
      - topic: "{prefix}.{table}"
        format: json
metrics:
  listen: "{listen}"
"#;

fn output(prefix: &str, namespace: &str, listen: SocketAddr) -> String {
    kafka_yaml(&format!("{prefix}.commits"), None)
        + &MAPPINGS
            .replace("{prefix}", prefix)
            .replace("{namespace}", namespace)
            .replace("{listen}", &listen.to_string())
}

async fn postgres(listen: SocketAddr) -> (Sql, String) {
    let (db, url) = pg_create_database("opsm").await;
    let prefix = unique_name("opsm");
    let s = stack();
    let source = format!(
        "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: initial\n    snapshot_chunk_rows: 2\n    spill_dir: {}\n    status_interval_ms: 200\n",
        s.pg_host,
        s.pg_port,
        std::env::temp_dir().join("ordo-test-spill").display(),
    );
    let sql = Sql::Pg(pg_connect(&url).await);
    (sql, source + &output(&prefix, "public", listen))
}

async fn mariadb(listen: SocketAddr) -> (Sql, String, String) {
    let db = mysql_create_database("opsm").await;
    let prefix = unique_name("opsm");
    let s = stack();
    let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
    let source = format!(
        "source:\n  mysql:\n    flavor: mariadb\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    tls: {{ mode: disable }}\n    server_id: {server_id}\n    snapshot: initial\n    snapshot_chunk_rows: 2\n    databases: [{db}]\n",
        s.mysql_host, s.mysql_port,
    );
    let url = format!("{}/{db}", s.mysql_url.trim_end_matches('/'));
    let conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    (Sql::My(conn), source + &output(&prefix, &db, listen), db)
}

async fn metrics_when(addr: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_until(what, Duration::from_secs(60), || {
        let ok = &ok;
        async move {
            let (status, body) = http_get(addr, "/metrics").await?;
            (status == 200 && ok(&body)).then_some(body)
        }
    })
    .await
}

/// Set up, start the daemon, run the workload and check every count. `namespace` is the
/// tables' schema or database; `snapshot_txns` the snapshot's transactions (PostgreSQL adds a
/// completion marker). Returns the last scrape, taken once the series `required` are present.
async fn scenario(
    mut sql: Sql,
    yaml: &str,
    addr: SocketAddr,
    namespace: &str,
    snapshot_txns: u64,
    required: &[&str],
) -> String {
    sql.run(&SETUP).await;
    let mut daemon = start(yaml);
    let (_, health) = wait_until("/health says ok", Duration::from_secs(60), || async {
        http_get(addr, "/health").await.filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(health, "ok\n");
    daemon.assert_running().await;
    sql.run(&WORKLOAD).await;

    // orders: 3 snapshot rows in chunks of 2, then 2 inserts and 1 update; items: 3 inserts,
    // 1 delete, 1 insert. The rolled-back insert never counts.
    let txns = snapshot_txns + 3;
    let body = metrics_when(addr, &format!("{txns} published transactions"), |b| {
        sample(b, "ordo_transactions_published_total") == Some(txns as f64)
    })
    .await;
    let m = |series: &str| sample(&body, series);
    let orders = format!(r#"{{table="{namespace}.orders"}}"#);
    let items = format!(r#"{{table="{namespace}.items"}}"#);
    assert_eq!(
        m(&format!("ordo_rows_captured_total{orders}")),
        Some(6.0),
        "{body}"
    );
    assert_eq!(
        m(&format!("ordo_rows_captured_total{items}")),
        Some(5.0),
        "{body}"
    );
    assert_eq!(m(&format!("ordo_rows_published_total{orders}")), Some(6.0));
    assert_eq!(m(&format!("ordo_rows_published_total{items}")), Some(5.0));
    assert_eq!(m("ordo_transactions_captured_total"), Some(txns as f64));
    assert_eq!(m("ordo_commit_records_written_total"), Some(txns as f64));
    assert_eq!(m("ordo_delivery_errors_total"), Some(0.0));
    assert_eq!(
        m(&format!("ordo_snapshot_rows_done{orders}")),
        Some(3.0),
        "{body}"
    );
    assert_eq!(m(&format!("ordo_snapshot_rows_done{items}")), Some(0.0));
    assert_eq!(m(r#"ordo_state{state="streaming"}"#), Some(1.0));
    assert_eq!(m(r#"ordo_state{state="starting"}"#), Some(0.0));
    for lag in ["ordo_source_lag_seconds", "ordo_end_to_end_lag_seconds"] {
        let v = m(lag).unwrap_or_else(|| panic!("{lag} missing:\n{body}"));
        assert!((0.0..60.0).contains(&v), "{lag} = {v}");
    }
    assert!(body.contains("# TYPE ordo_rows_captured_total counter\n"));
    let body = metrics_when(addr, "an empty producer queue", |b| {
        sample(b, "ordo_producer_queue_depth") == Some(0.0)
            && required.iter().all(|r| sample(b, r).is_some())
    })
    .await;
    assert_eq!(
        sample(&body, "ordo_transactions_published_total"),
        Some(txns as f64)
    );

    daemon.stop().await.unwrap();
    assert!(
        http_get(addr, "/health").await.is_none(),
        "the endpoint stops with the daemon"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metrics_count_a_known_workload_exactly() {
    let addr = free_local_addr();
    let (sql, yaml) = postgres(addr).await;
    let slot = "ordo_replication_slot_retained_bytes";
    let body = scenario(sql, &yaml, addr, "public", 3, &[slot]).await;
    assert!(sample(&body, slot).unwrap() >= 0.0);
    let estimated = r#"ordo_snapshot_rows_estimated{table="public.orders"}"#;
    assert!(sample(&body, estimated).unwrap() >= 3.0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_metrics_count_a_known_workload_exactly() {
    let addr = free_local_addr();
    let (sql, yaml, db) = mariadb(addr).await;
    let body = scenario(sql, &yaml, addr, &db, 2, &[]).await;
    let estimated = format!(r#"ordo_snapshot_rows_estimated{{table="{db}.orders"}}"#);
    assert_eq!(
        sample(&body, &estimated),
        Some(-1.0),
        "no estimate from MariaDB"
    );
    assert_eq!(sample(&body, "ordo_replication_slot_retained_bytes"), None);
}
