//! Decode throughput of the MariaDB source against `mariadb-binlog -v` over the same binlog
//! range: 1M rows of 6 mixed-type columns in 100-row transactions.
//!
//! Run in release: `cargo test --release -p ordo-capture --test mysql_bench -- --ignored --nocapture`
//! (`ORDO_BENCH_ROWS` changes the row count, `ORDO_BENCH_SHAPE=single` loads single-row
//! INSERTs, 100 per transaction).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mysql_support;

use std::process::Stdio;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_support::{admin, config, database, start, url};
use ordo_config::Snapshot;
use ordo_kcop::{BinlogCoord, GtidSet, Position, SourceEvent};

#[tokio::test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn decode_throughput_against_mariadb_binlog() {
    let rows: u64 = std::env::var("ORDO_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = database("ordo_bench").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop(
        "CREATE TABLE bench (id BIGINT PRIMARY KEY, a INT, b VARCHAR(32), c DECIMAL(10,2), \
         d DATETIME(6), e DOUBLE) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (file, start_pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| {
            let (f, p, ..): (String, u64, String, String) = mysql_async::from_row(r);
            (f, p)
        })
        .unwrap();
    let gtids: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    let load = Instant::now();
    // Shape A (default): one 100-row INSERT per transaction. Shape B
    // (`ORDO_BENCH_SHAPE=single`): 100 single-row INSERTs per transaction.
    let single = std::env::var("ORDO_BENCH_SHAPE").is_ok_and(|s| s == "single");
    let row = |seq: u64| {
        format!(
            "({seq}, {}, 'row number {seq}', {seq} / 100, TIMESTAMP('2024-01-01') + INTERVAL {seq} \
             SECOND + INTERVAL {} MICROSECOND, {seq} * 1.5)",
            seq * 7,
            seq % 1_000_000
        )
    };
    for k in 0..rows / 100 {
        let sql = if single {
            let inserts: Vec<String> = (k * 100 + 1..=k * 100 + 100)
                .map(|seq| format!("INSERT INTO bench VALUES {}", row(seq)))
                .collect();
            format!("BEGIN; {}; COMMIT", inserts.join("; "))
        } else {
            format!(
                "INSERT INTO bench SELECT seq, seq * 7, CONCAT('row number ', seq), seq / 100, \
                 TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + INTERVAL (seq % 1000000) \
                 MICROSECOND, seq * 1.5 FROM seq_{}_to_{}",
                k * 100 + 1,
                k * 100 + 100
            )
        };
        c.query_drop(sql).await.unwrap();
    }
    let last: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let (end_file, end_pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| {
            let (f, p, ..): (String, u64, String, String) = mysql_async::from_row(r);
            (f, p)
        })
        .unwrap();
    assert_eq!(
        file, end_file,
        "the load rotated the binlog; use fewer rows"
    );
    eprintln!(
        "loaded {rows} rows in {:.1} s; binlog {file}:{start_pos}..{end_pos} ({} MB)",
        load.elapsed().as_secs_f64(),
        (end_pos - start_pos) / 1_000_000
    );

    // ordo: from the position before the load to the last transaction, every value decoded.
    let resume = Position::MySql {
        gtids: gtids.parse::<GtidSet>().unwrap(),
        coord: BinlogCoord {
            file: file.clone(),
            pos: start_pos,
        },
    };
    let mut best_ordo = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut src = start(
            config("ordo", "ordo", Snapshot::Never, vec![]),
            &db,
            Some(resume.clone()),
        );
        let mut seen = 0u64;
        loop {
            match src
                .events
                .event(Instant::now() + mysql_support::DEADLINE)
                .await
                .expect("events")
            {
                SourceEvent::Change(_) => seen += 1,
                SourceEvent::Commit(c) if *c.id == *last => break,
                _ => {}
            }
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(seen, rows);
        src.shutdown.cancel();
        src.task.await.unwrap().unwrap();
        best_ordo = best_ordo.min(secs);
    }

    // mariadb-binlog -v over the same range.
    let opts = mysql_async::Opts::from_url(&url()).unwrap();
    let mut best_tool = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let status = std::process::Command::new("mariadb-binlog")
            .args([
                "--read-from-remote-server",
                "-v",
                "--host",
                opts.ip_or_hostname(),
            ])
            .arg(format!("--port={}", opts.tcp_port()))
            .arg(format!("--user={}", opts.user().unwrap_or("ordo")))
            .arg(format!("--password={}", opts.pass().unwrap_or("")))
            .arg(format!("--start-position={start_pos}"))
            .arg(format!("--stop-position={end_pos}"))
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .expect("run mariadb-binlog");
        assert!(status.success());
        best_tool = best_tool.min(t.elapsed().as_secs_f64());
    }
    let (ordo_rate, tool_rate) = (rows as f64 / best_ordo, rows as f64 / best_tool);
    eprintln!(
        "ordo:               {best_ordo:.3} s, {:.0} rows/s (best of 3)",
        ordo_rate
    );
    eprintln!(
        "mariadb-binlog -v:  {best_tool:.3} s, {:.0} rows/s (best of 3)",
        tool_rate
    );
    eprintln!(
        "ratio (ordo / mariadb-binlog): {:.2}x",
        ordo_rate / tool_rate
    );
    // One line for scripts/bench's table.
    println!(
        "BENCH|MariaDB decode: {rows} rows ({})|mariadb-binlog -v -> /dev/null|{tool_rate:.0}|ordo source alone|{ordo_rate:.0}|1.0",
        if single {
            "single-row INSERTs"
        } else {
            "100-row INSERTs"
        }
    );
    c.query_drop(format!("DROP DATABASE `{db}`")).await.unwrap();
}
