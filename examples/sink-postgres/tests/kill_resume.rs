//! The exactly-once sink under crashes: PostgreSQL -> ordo -> broker -> sink, with the sink
//! killed (SIGKILL) at random moments while a transfer workload runs, and restarted from the
//! bookmark it stored in its own database. In the end the sink's table equals the source table,
//! and its stored sequence number equals the number of commit records: every transaction was
//! applied exactly once (the sink itself refuses a duplicate or a gap).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ordo_tests::capture::start;
use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{pg_connect, pg_create_database, stack, unique_name, wait_until};
use rand::{Rng, SeedableRng};

const ACCOUNTS: i32 = 20;
const TRANSFERS: usize = 150;
const KILLS: usize = 5;

fn spawn_sink(commit_topic: &str, url: &str, to_end: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordo-example-sink"));
    cmd.args([stack().kafka.as_str(), commit_topic, url])
        .stdout(Stdio::null());
    if to_end {
        cmd.env("SINK_STOP_AT_END", "1");
    }
    cmd.spawn().expect("start the sink")
}

async fn transfers(url: String) {
    let c = pg_connect(&url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..TRANSFERS {
        let from = rng.random_range(0..ACCOUNTS);
        let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rng.random_range(1..20);
        c.batch_execute(&format!(
            "BEGIN; UPDATE accounts SET balance = balance - {amount} WHERE id = {from};
             UPDATE accounts SET balance = balance + {amount} WHERE id = {to}; COMMIT;"
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..15))).await;
    }
}

async fn balances(url: &str, sql: &str) -> BTreeMap<i64, i64> {
    let c = pg_connect(url).await;
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_at_random_points_applies_every_transaction_exactly_once() {
    let (db, url) = pg_create_database("sinksrc").await;
    let (_sink_db, sink_url) = pg_create_database("sinkdst").await;
    let prefix = unique_name("sink");
    let s = stack();
    let spill = std::env::temp_dir().join("ordo-test-spill");
    let yaml = format!(
        "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: initial\n    spill_dir: {}\nkafka:\n  bootstrap_servers: \"{}\"\n  commit_topic: {prefix}.commits\n  topic_partitions: 3\nmappings:\n  - tables: [\"public.accounts\"]\n    outputs:\n      - topic: \"{prefix}.accounts\"\n        format: json\n",
        s.pg_host,
        s.pg_port,
        spill.display(),
        s.kafka
    );
    pg_connect(&url)
        .await
        .batch_execute(&format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
             INSERT INTO accounts SELECT g, 100 FROM generate_series(0, {}) g;",
            ACCOUNTS - 1
        ))
        .await
        .unwrap();
    let daemon = start(&yaml);
    let commit_topic = format!("{prefix}.commits");
    // The snapshot: one chunk and the completion marker.
    let t = commit_topic.clone();
    wait_until(
        "the snapshot's commit records",
        Duration::from_secs(60),
        || {
            let t = t.clone();
            async move {
                let n = tokio::task::spawn_blocking(move || high_watermark(&t, 0))
                    .await
                    .unwrap();
                (n >= 2).then_some(())
            }
        },
    )
    .await;

    let writer = tokio::spawn(transfers(url.clone()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..KILLS {
        let mut sink = spawn_sink(&commit_topic, &sink_url, false);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if let Some(status) = sink.try_wait().unwrap() {
            panic!("the sink stopped by itself with {status}");
        }
        sink.kill().unwrap(); // SIGKILL
        sink.wait().unwrap();
    }
    writer.await.unwrap();
    let expected = 2 + TRANSFERS as i64;
    let t = commit_topic.clone();
    wait_until(
        &format!("{expected} commit records"),
        Duration::from_secs(60),
        || {
            let t = t.clone();
            async move {
                let n = tokio::task::spawn_blocking(move || high_watermark(&t, 0))
                    .await
                    .unwrap();
                (n >= expected).then_some(())
            }
        },
    )
    .await;
    daemon.stop().await.unwrap();

    let status = spawn_sink(&commit_topic, &sink_url, true).wait().unwrap();
    assert!(status.success(), "the final sink run failed: {status}");
    let source = balances(&url, "SELECT id::int8, balance::int8 FROM accounts").await;
    let sink = balances(
        &sink_url,
        "SELECT (key->>'id')::int8, (row->>'balance')::int8 FROM ordo_sink_rows",
    )
    .await;
    assert_eq!(sink, source, "the sink's table equals the source table");
    let seq: i64 = pg_connect(&sink_url)
        .await
        .query_one("SELECT seq FROM ordo_sink_bookmark", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, expected, "every transaction applied once, in order");
}
