//! The producing side's invariant under crashes, for MariaDB: kill -9 the daemon at random
//! moments during a concurrent multi-table workload, restart it each time; in the end the commit
//! stream holds exactly one record per committed source transaction (by GTID), in binlog order,
//! with dense sequence numbers, each listing exactly records whose headers match.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::spawn_ordo_run;
use ordo_tests::capture::wait_then_stop;
use ordo_tests::config::{kafka_yaml, mysql_source_yaml};
use ordo_tests::invariant::{assert_dense, assert_listing};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{mysql_create_database, stack, unique_name, wait_until};
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
const TXNS_PER_WRITER: usize = 60;
const KILLS: usize = 6;

async fn conn(db: &str) -> mysql_async::Conn {
    let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
    mysql_async::Conn::from_url(url.as_str()).await.unwrap()
}

/// Runs the writer's transactions and returns the GTID of each one committed.
async fn writer(db: String, id: usize, seed: u64) -> Vec<String> {
    let mut c = conn(&db).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut gtids = Vec::new();
    for i in 0..TXNS_PER_WRITER {
        let order = (id * 10_000 + i) as i32;
        let lines = rng.random_range(1..4);
        let mut sql = format!(
            "BEGIN; INSERT INTO orders VALUES ({order}, 'w{id}', {});",
            rng.random_range(1..500)
        );
        for l in 0..lines {
            sql.push_str(&format!(
                "INSERT INTO order_lines VALUES ({order}, {l}, 'sku{l}');"
            ));
        }
        if i % 5 == 4 {
            sql.push_str(&format!(
                "UPDATE orders SET amount = amount + 1 WHERE id = {};",
                order - 1
            ));
            sql.push_str(&format!(
                "DELETE FROM order_lines WHERE order_id = {} AND line_no = 0;",
                order - 1
            ));
        }
        sql.push_str("INSERT INTO audit (note) VALUES ('x'); COMMIT");
        c.query_drop(sql).await.unwrap();
        let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
        gtids.push(gtid);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
    gtids
}

fn commit_records(topic: &str) -> Vec<CommitRecord> {
    read_all(topic)
        .iter()
        .map(|r| CommitRecord::decode(r.value.as_deref(), r.offset).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kill_9_at_random_points_keeps_exactly_one_commit_record_per_transaction() {
    let db = mysql_create_database("mycrash").await;
    let prefix = unique_name("mycrash");
    let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    std::fs::write(
        &config,
        mysql_source_yaml(&db, server_id, "initial")
            + &kafka_yaml(&format!("{prefix}.commits"), Some(3))
            + &format!(
            "mappings:\n  - tables: [\"{db}.*\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
        ),
    )
    .unwrap();
    let mut c = conn(&db).await;
    for ddl in [
        "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(20), amount INT) ENGINE=InnoDB",
        "CREATE TABLE order_lines (order_id INT, line_no INT, sku VARCHAR(20), PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB",
        "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB",
    ] {
        c.query_drop(ddl).await.unwrap();
    }

    c.query_drop("INSERT INTO orders VALUES (0, 'seed', 0)")
        .await
        .unwrap();
    let mut daemon = spawn_ordo_run(&config, &log);
    // The snapshot (one chunk, holding the seed row) is durable before the writers start, so
    // every transaction they commit must come through the stream exactly once.
    let commits_topic = format!("{prefix}.commits");
    wait_until(
        "the snapshot's commit record",
        Duration::from_secs(60),
        || {
            let t = commits_topic.clone();
            async move {
                let recs = tokio::task::spawn_blocking(move || commit_records(&t))
                    .await
                    .unwrap();
                (!recs.is_empty()).then_some(())
            }
        },
    )
    .await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(db.clone(), w + 1, w as u64 * 7 + 1)))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
        if k % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        }
        daemon = spawn_ordo_run(&config, &log);
    }
    let mut committed = BTreeSet::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    let expected = committed.len() + 1; // and the snapshot chunk
    let records = wait_then_stop(daemon, &commits_topic, expected, &log).await;

    assert_eq!(
        records.len(),
        expected,
        "exactly one commit record per committed transaction"
    );
    assert_dense(&records);
    assert_eq!(records[0].txn, format!("snapshot:{db}.orders:0"));
    let records = &records[1..];
    let txns: BTreeSet<String> = records.iter().map(|r| r.txn.clone()).collect();
    assert_eq!(
        txns, committed,
        "the commit stream lists exactly the committed transactions"
    );
    let seqnos: Vec<u64> = records
        .iter()
        .map(|r| r.txn.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqnos.windows(2).all(|w| w[0] < w[1]),
        "binlog order (GTID sequence numbers increase)"
    );

    let mut data: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for t in ["orders", "order_lines", "audit"] {
        let topic = format!("{prefix}.{t}");
        let recs = tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || read_all(&topic)
        })
        .await
        .unwrap();
        data.insert(topic, recs);
    }
    let listed = assert_listing(records, &data);
    let total: usize = data.values().map(Vec::len).sum();
    println!(
        "{} transactions, {listed} listed records, {} orphan records from killed runs",
        records.len(),
        total - listed - 1 // the snapshot's seed row, listed by the first commit record
    );
}
