//! A transaction of a million rows passes through the source in bounded memory: the server
//! streams it while in progress (protocol 2), the source spills the chunks to disk and replays
//! them at commit, and this test, the consumer, counts the rows and drops them. The process's
//! resident memory is sampled throughout and must stay under 300 MB.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::time::{Duration, Instant};

use pg_source_support::{Behaviour, PgEnv, rss_kb, start, wait_slot};

const ROWS: i64 = 1_000_000;
const RSS_LIMIT_KB: u64 = 300 * 1024;

#[tokio::test]
async fn a_million_row_transaction_streams_in_bounded_memory() {
    let env = PgEnv::new("pglarge").await;
    env.client
        .batch_execute(
            "CREATE TABLE bench (id bigint PRIMARY KEY, n int, payload text, created_at timestamptz)",
        )
        .await
        .unwrap();
    let behaviour = Behaviour {
        keep_changes: false,
        ack: true,
    };
    let mut run = start(&env.config("snapshot: never"), None, behaviour);
    wait_slot(&env).await;
    let writer = env.connect().await;
    let started = Instant::now();
    let insert = tokio::spawn(async move {
        writer
            .batch_execute(&format!(
                "INSERT INTO bench SELECT i, i % 1000, md5(i::text), '2024-01-01'::timestamptz + i * interval '1 second' \
                 FROM generate_series(1, {ROWS}) i"
            ))
            .await
            .unwrap();
        started.elapsed()
    });
    let (mut max_rss, mut last_print) = (rss_kb(), Instant::now());
    println!("rss at start: {} MB", max_rss / 1024);
    while run.seen.streamed().count() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "timed out; {} rows so far",
            run.seen.changes
        );
        run.pump(Duration::from_millis(100)).await;
        let rss = rss_kb();
        max_rss = max_rss.max(rss);
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "{:>6.1} s: {:>7} rows, rss {} MB",
                started.elapsed().as_secs_f64(),
                run.seen.changes,
                rss / 1024
            );
        }
    }
    let total = started.elapsed();
    let inserted = insert.await.unwrap();
    let stream_txns: i64 = env
        .client
        .query_one(
            "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1",
            &[&env.slot],
        )
        .await
        .unwrap()
        .get(0);
    let (res, seen) = run.stop().await;
    res.unwrap();
    println!(
        "{ROWS} rows: insert {:.1} s, received at {:.1} s ({:.0} rows/s end to end); max rss {} MB; server streamed {stream_txns} transaction(s)",
        inserted.as_secs_f64(),
        total.as_secs_f64(),
        ROWS as f64 / total.as_secs_f64(),
        max_rss / 1024
    );
    let txn = seen.streamed().next().unwrap();
    assert_eq!(txn.count, ROWS as u64);
    assert_eq!(seen.changes, ROWS as u64);
    assert_eq!(seen.id_sum, ROWS * (ROWS + 1) / 2);
    assert!(
        stream_txns >= 1,
        "the server did not stream the transaction"
    );
    assert!(
        max_rss < RSS_LIMIT_KB,
        "rss reached {} MB (limit {} MB)",
        max_rss / 1024,
        RSS_LIMIT_KB / 1024
    );
    env.cleanup(&[]).await;
}
