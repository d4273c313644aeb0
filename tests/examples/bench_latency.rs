//! Commit-to-consumer latency: PostgreSQL commits 50-row transactions at a steady 5,000 rows/s
//! (100 transactions a second) for 30 s while the release `ordo` captures them through the JSON
//! KCOP and a TCC consumer reads them back. For each transaction, latency is the time the
//! consumer received it minus its source commit time (same machine, same clock). Prints p50,
//! p99 and max, and a `BENCH|` line for `scripts/bench`.
//!
//! Run: `scripts/stack up && cargo run --release -p ordo-tests --example bench_latency [seconds
//! [rows/s]]`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt as _;
use ordo_tcc::{Start, TccConfig, TccConsumer};
use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name};

const ROWS_PER_TXN: u64 = 50;

fn now_micros() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_micros()).unwrap()
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let rate: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000);
    let ordo = common::release_ordo();
    let s = stack();
    let (db, url) = pg_create_database("latency").await;
    let name = unique_name("latency");
    let c = pg_connect(&url).await;
    // The stack runs with synchronous_commit=off for test speed, which leaves commits in WAL
    // buffers for up to wal_writer_delay (200 ms) before a WAL sender can read them; a
    // production server flushes at commit.
    c.batch_execute("SET synchronous_commit = on")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "{};
         CREATE PUBLICATION {name} FOR TABLE bench;",
        common::BENCH_TABLE
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latency.yaml");
    std::fs::write(&config, common::pg_config(dir.path(), &db, &name, &name)).unwrap();
    let mut daemon = Command::new(&ordo)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    pg_wait_for_slot(&c, &name).await;
    // One transaction first, so the commit topic exists before the consumer starts.
    c.batch_execute("INSERT INTO bench VALUES (-1, 0, 'warm-up', now(), 0, true)")
        .await
        .unwrap();
    let commits = format!("{name}.commits");
    let deadline = Instant::now() + Duration::from_secs(60);
    while high_watermark(&commits, 0) < 1 {
        assert!(Instant::now() < deadline, "no commit record within 60 s");
        assert!(daemon.try_wait().unwrap().is_none(), "ordo exited early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let txns = secs * rate / ROWS_PER_TXN;
    let consumer = tokio::spawn({
        let cfg = TccConfig::new(s.kafka.as_str(), commits.as_str(), Start::Beginning);
        async move {
            let mut stream = TccConsumer::new(cfg).unwrap().transactions();
            let mut latencies = Vec::with_capacity(usize::try_from(txns).unwrap());
            // The warm-up transaction, then the measured ones.
            stream.try_next().await.unwrap().unwrap();
            while (latencies.len() as u64) < txns {
                let txn = tokio::time::timeout(Duration::from_secs(60), stream.try_next())
                    .await
                    .expect("a transaction within 60 s")
                    .unwrap()
                    .unwrap();
                latencies.push(now_micros() - txn.commit.commit_time_micros);
            }
            latencies
        }
    });

    // The writer: one 50-row transaction every 1/(rate/50) s, catching up after a late tick.
    let period = Duration::from_secs_f64(ROWS_PER_TXN as f64 / rate as f64);
    let mut tick = tokio::time::interval(period);
    let started = Instant::now();
    for i in 0..txns {
        tick.tick().await;
        let first = i * ROWS_PER_TXN;
        c.batch_execute(&format!(
            "INSERT INTO bench SELECT g, g % 1000, md5(g::text), now(), (g % 100000) / 100.0, g % 2 = 0 FROM generate_series({first}, {}) g",
            first + ROWS_PER_TXN - 1
        ))
        .await
        .unwrap();
    }
    let wrote = started.elapsed().as_secs_f64();
    let mut latencies = consumer.await.unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
    latencies.sort_unstable();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let achieved = (txns * ROWS_PER_TXN) as f64 / wrote;
    println!(
        "\n| {txns} transactions of {ROWS_PER_TXN} rows at {achieved:.0} rows/s for {wrote:.1} s | ms |"
    );
    println!("|---|---|");
    println!("| p50 commit -> TCC consumer | {p50:.1} |");
    println!("| p99 | {p99:.1} |");
    println!("| max | {max:.1} |");
    println!(
        "BENCH|PG commit -> TCC consumer latency at {achieved:.0} rows/s ({ROWS_PER_TXN}-row txns, {wrote:.0} s)|||ordo p50 / p99 / max ms|{p50:.0} / {p99:.0} / {max:.0}|"
    );
}
