//! End-to-end benchmark for MariaDB: 1M rows (6 mixed-type columns) in 10k transactions of 100
//! rows, from the binlog through the JSON KCOP to the broker with commit records, next to
//! `mariadb-binlog --read-from-remote-server -v` to /dev/null over the same binlog range.
//! Prints rows/s and the ratio.
//!
//! The daemon first starts on the empty table and stops once its position is in the commit
//! stream; then the load runs; then the timed run catches up with the whole backlog, from start
//! to the last commit record acknowledged.
//!
//! Run: `scripts/stack up && cargo run --release -p ordo-tests --example bench_mysql_e2e [rows]`
//! (it builds the release `ordo` binary first).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed unwrap is a failed run

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{mysql_create_database, stack, unique_name};

fn spawn(ordo: &Path, config: &Path) -> Child {
    Command::new(ordo)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

fn stop(mut daemon: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
}

fn wait_for_commits(topic: &str, n: i64, daemon: &mut Child) {
    while high_watermark(topic, 0) < n {
        assert!(daemon.try_wait().unwrap().is_none(), "ordo exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn master_status(c: &mut mysql_async::Conn) -> (String, u64) {
    c.query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| {
            let (f, p, ..): (String, u64, String, String) = mysql_async::from_row(r);
            (f, p)
        })
        .unwrap()
}

fn mariadb_binlog(file: &str, start: u64, end: u64) -> f64 {
    let s = stack();
    let t = Instant::now();
    let status = Command::new("mariadb-binlog")
        .args(["--read-from-remote-server", "-v", "--host", &s.mysql_host])
        .arg(format!("--port={}", s.mysql_port))
        .args(["--user=ordo", "--password=ordo"])
        .arg(format!("--start-position={start}"))
        .arg(format!("--stop-position={end}"))
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("run mariadb-binlog");
    assert!(status.success());
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let txns = rows / 100;
    let ordo = ordo_tests::capture::release_ordo_binary();
    let s = stack();
    let db = mysql_create_database("bench").await;
    let name = unique_name("mybench");
    let url = format!("{}/{db}", s.mysql_url.trim_end_matches('/'));
    let mut c = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    c.query_drop(
        "CREATE TABLE bench (id BIGINT PRIMARY KEY, a INT, b VARCHAR(32), c DECIMAL(10,2), \
         d DATETIME(6), e DOUBLE) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO bench VALUES (0, 0, 'seed', 0, NOW(6), 0)")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.yaml");
    let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
    // Extra librdkafka properties to try (`ORDO_BENCH_KAFKA_PROPERTIES='{"linger.ms": "20"}'`).
    let props = std::env::var("ORDO_BENCH_KAFKA_PROPERTIES")
        .map(|p| format!("  properties: {p}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "source:\n  mysql:\n    flavor: mariadb\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    tls: {{ mode: disable }}\n    server_id: {server_id}\n    snapshot: initial\n    databases: [{db}]\nkafka:\n  bootstrap_servers: \"{}\"\n  commit_topic: {name}.commits\n  topic_partitions: 4\n{props}mappings:\n  - tables: [\"{db}.bench\"]\n    outputs:\n      - topic: \"{name}.bench\"\n        format: json\n",
            s.mysql_host, s.mysql_port, s.kafka
        ),
    )
    .unwrap();
    let topic = format!("{name}.commits");
    // First run: the snapshot of the seed row puts the start position in the commit stream.
    let mut daemon = spawn(&ordo, &config);
    wait_for_commits(&topic, 1, &mut daemon);
    stop(daemon);

    let (file, start_pos) = master_status(&mut c).await;
    let t = Instant::now();
    for k in 0..txns {
        c.query_drop(format!(
            "INSERT INTO bench SELECT seq, seq * 7, CONCAT('row number ', seq), seq / 100, \
             TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + INTERVAL (seq % 1000000) \
             MICROSECOND, seq * 1.5 FROM seq_{}_to_{}",
            k * 100 + 1,
            k * 100 + 100
        ))
        .await
        .unwrap();
    }
    let (end_file, end_pos) = master_status(&mut c).await;
    assert_eq!(
        file, end_file,
        "the load rotated the binlog; use fewer rows"
    );
    println!(
        "loaded {rows} rows in {txns} transactions in {:.1} s; binlog {file}:{start_pos}..{end_pos}",
        t.elapsed().as_secs_f64()
    );

    let base = mariadb_binlog(&file, start_pos, end_pos);
    let t = Instant::now();
    let mut daemon = spawn(&ordo, &config);
    wait_for_commits(&topic, 1 + txns as i64, &mut daemon);
    let e2e = t.elapsed().as_secs_f64();
    stop(daemon);
    let r = rows as f64;
    println!("\n| workload: {rows} rows, {txns} txns of 100 rows, 6 columns | wall s | rows/s |");
    println!("|---|---|---|");
    println!(
        "| mariadb-binlog --read-from-remote-server -v -> /dev/null | {base:.2} | {:.0} |",
        r / base
    );
    println!(
        "| ordo MariaDB -> json KCOP -> broker + commit records | {e2e:.2} | {:.0} |",
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
        "BENCH|MariaDB end to end: {rows} rows in 100-row txns|mariadb-binlog -v -> /dev/null|{:.0}|ordo -> json -> broker + commit records|{:.0}|0.8",
        r / base,
        r / e2e
    );
    c.query_drop(format!("DROP DATABASE `{db}`")).await.unwrap();
}
