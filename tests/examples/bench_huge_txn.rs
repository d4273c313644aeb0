//! Peak memory for one huge transaction: PostgreSQL commits N rows (default 10M, 6 columns) in
//! a single transaction; the release `ordo` captures it (PostgreSQL streams it in progress, ordo
//! spills it to disk and replays it at commit) through the JSON KCOP to the broker, then a TCC
//! consumer in this process reads its operations back one at a time. Prints the daemon's and
//! the consumer's peak RSS (`VmHWM`), and a `BENCH|` line for `scripts/bench`.
//!
//! Run: `scripts/stack up && cargo run --release -p ordo-tests --example bench_huge_txn [rows]`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use ordo_tcc::{Start, TccConfig, TccConsumer};
use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name};

/// Peak resident set size of a process in MiB, from `/proc/<pid>/status`.
fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let ordo = common::release_ordo();
    let s = stack();
    let (db, url) = pg_create_database("huge").await;
    let name = unique_name("huge");
    let c = pg_connect(&url).await;
    c.batch_execute(&format!(
        "{};
         CREATE PUBLICATION {name} FOR TABLE bench;",
        common::BENCH_TABLE
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("huge.yaml");
    std::fs::write(&config, common::pg_config(dir.path(), &db, &name, &name)).unwrap();
    let mut daemon = Command::new(&ordo)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = daemon.id().to_string();
    pg_wait_for_slot(&c, &name).await;

    let t = Instant::now();
    c.batch_execute(&format!(
        "INSERT INTO bench SELECT g, g % 1000, md5(g::text), now(), (g % 100000) / 100.0, g % 2 = 0 FROM generate_series(1, {rows}) g"
    ))
    .await
    .unwrap();
    let loaded = t.elapsed().as_secs_f64();
    let commits = format!("{name}.commits");
    let deadline = Instant::now() + Duration::from_secs(1800);
    while high_watermark(&commits, 0) < 1 {
        assert!(Instant::now() < deadline, "no commit record within 30 min");
        assert!(daemon.try_wait().unwrap().is_none(), "ordo exited early");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let captured = t.elapsed().as_secs_f64();
    let capture_peak = peak_rss_mib(&pid);
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    let _ = daemon.wait();

    let before = peak_rss_mib("self");
    let t = Instant::now();
    let cfg = TccConfig::new(s.kafka.as_str(), commits.as_str(), Start::Beginning);
    let mut ops = TccConsumer::new(cfg).unwrap().operations();
    let mut n = 0u64;
    while n < rows {
        tokio::time::timeout(Duration::from_secs(120), ops.try_next())
            .await
            .expect("an operation within 120 s")
            .unwrap()
            .unwrap();
        n += 1;
    }
    let consumed = t.elapsed().as_secs_f64();
    let consumer_peak = peak_rss_mib("self");
    println!("\n| one transaction of {rows} rows, 6 columns | s | peak RSS MiB |");
    println!("|---|---|---|");
    println!("| PostgreSQL insert and commit | {loaded:.1} | |");
    println!(
        "| ordo: commit record written (from the insert's start) | {captured:.1} | {capture_peak:.0} |"
    );
    println!(
        "| TCC consumer: every operation read (process before: {before:.0} MiB) | {consumed:.1} | {consumer_peak:.0} |"
    );
    println!(
        "BENCH|peak RSS, one {rows}-row transaction|||capture / TCC consumer, MiB|{capture_peak:.0} / {consumer_peak:.0}|"
    );
}
