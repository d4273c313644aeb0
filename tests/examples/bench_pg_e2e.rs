//! End-to-end benchmark: 1M rows (6 mixed-type columns) in 10k transactions of 100 rows, from
//! PostgreSQL through the JSON KCOP to the broker with commit records, next to
//! `pg_recvlogical` (pgoutput) to /dev/null over the same WAL. Prints rows/s and the ratio.
//!
//! Run: `scripts/stack up && cargo run --release -p ordo-tests --example bench_pg_e2e [rows [rows
//! per transaction]]` (it builds the release `ordo` binary first); `-- 10000 1` is the
//! single-row-transaction workload.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{pg_connect, pg_create_database, unique_name};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let per_txn: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100)
        .max(1);
    let txns = rows / per_txn;
    let ordo = common::release_ordo();
    let (db, url) = pg_create_database("bench").await;
    let name = unique_name("bench");
    let c = pg_connect(&url).await;
    c.batch_execute(&format!(
        "{};
         CREATE PUBLICATION {name} FOR TABLE bench;
         CREATE PROCEDURE load(txns int, k int) LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 0..txns-1 LOOP
             INSERT INTO bench SELECT g, g % 1000, md5(g::text), now(), (g % 100000) / 100.0, g % 2 = 0
               FROM generate_series(i::bigint * k, i::bigint * k + k - 1) g;
             COMMIT;
           END LOOP;
         END $$;",
        common::BENCH_TABLE
    ))
    .await
    .unwrap();
    // Each slot in its own transaction (a slot cannot be created after writes in the same one).
    for suffix in ["o", "r"] {
        c.batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{name}_{suffix}', 'pgoutput')"
        ))
        .await
        .unwrap();
    }
    let t = Instant::now();
    c.batch_execute(&format!("CALL load({txns}, {per_txn})"))
        .await
        .unwrap();
    let end_lsn: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "loaded {rows} rows in {txns} transactions in {:.1} s; WAL end {end_lsn}",
        t.elapsed().as_secs_f64()
    );

    // Baseline: pg_recvlogical, pgoutput v1, to /dev/null, until the WAL end.
    let t = Instant::now();
    let st = Command::new(format!(
        "{}/pg_recvlogical",
        std::env::var("ORDO_TEST_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into())
    ))
    .args([
        "-d",
        &url,
        "--slot",
        &format!("{name}_r"),
        "--start",
        "-o",
        "proto_version=1",
        "-o",
    ])
    .arg(format!("publication_names={name}"))
    .args(["-f", "/dev/null", "--endpos", &end_lsn])
    .env("PGPASSWORD", "ordo")
    .stderr(Stdio::inherit())
    .status()
    .unwrap();
    assert!(st.success());
    let base = t.elapsed().as_secs_f64();

    // ordo: start to the last commit record acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.yaml");
    std::fs::write(
        &config,
        common::pg_config(dir.path(), &db, &format!("{name}_o"), &name),
    )
    .unwrap();
    let t = Instant::now();
    let mut daemon = Command::new(&ordo)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let topic = format!("{name}.commits");
    loop {
        if high_watermark(&topic, 0) >= txns as i64 {
            break;
        }
        assert!(daemon.try_wait().unwrap().is_none(), "ordo exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e2e = t.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
    let r = rows as f64;
    println!(
        "\n| workload: {rows} rows, {txns} txns of {per_txn} rows, 6 columns | wall s | rows/s |"
    );
    println!("|---|---|---|");
    println!(
        "| pg_recvlogical pgoutput v1 -> /dev/null | {base:.2} | {:.0} |",
        r / base
    );
    println!(
        "| ordo PG -> json KCOP -> broker + commit records | {e2e:.2} | {:.0} |",
        r / e2e
    );
    println!(
        "| ratio ordo / baseline (goal >= 0.8) | | {:.2} |",
        base / e2e
    );
    // The broker's own ceiling for the same number of pre-encoded records.
    let ceiling_topic = format!("{}.ceiling", unique_name("ceiling"));
    let ceiling = ordo_tests::kafka::producer_ceiling(&ceiling_topic, rows);
    println!(
        "| broker ceiling: one idempotent producer, {rows} pre-encoded records | | {ceiling:.0} |"
    );
    println!(
        "| ordo / broker ceiling | | {:.2} |",
        rows as f64 / e2e / ceiling
    );
    // One line for scripts/bench's table.
    println!(
        "BENCH|PG end to end: {rows} rows in {per_txn}-row txns|pg_recvlogical -> /dev/null|{:.0}|ordo -> json -> broker + commit records|{:.0}|0.8",
        r / base,
        r / e2e
    );
}
