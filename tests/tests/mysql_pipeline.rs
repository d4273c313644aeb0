//! MariaDB -> JSON KCOP -> broker through `ordo run`'s daemon, with the commit stream: the
//! snapshot, then mixed multi-table transactions as exact records with one commit record each,
//! in binlog order; a rollback never appears; a restart resumes exactly after the last commit
//! record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use ordo_kcop::{Gtid, Position};
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, mysql_source_yaml};
use ordo_tests::invariant::assert_listing;
use ordo_tests::kafka::{Record, read_all, wait_for_commits};
use ordo_tests::stack::{mysql_create_database, stack, unique_name};

struct Setup {
    db: String,
    prefix: String,
    yaml: String,
}

async fn conn(db: &str) -> mysql_async::Conn {
    let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
    mysql_async::Conn::from_url(url.as_str())
        .await
        .expect("connect to MariaDB: run scripts/stack up")
}

async fn setup() -> Setup {
    let db = mysql_create_database("mypipe").await;
    let prefix = unique_name("mypipe");
    let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
    let source = mysql_source_yaml(&db, server_id, "initial");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), Some(3));
    let yaml = format!(
        r#"
{source}{kafka}mappings:
  - tables: ["{db}.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
    );
    let mut c = conn(&db).await;
    c.query_drop(
        "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, \
         amount DECIMAL(10,2), placed DATETIME(6)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop(
        "CREATE TABLE order_lines (order_id INT, line_no INT, sku VARCHAR(10), qty INT, \
         PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO orders VALUES (1, 'ann', 10.50, '2024-01-01 10:00:00.123456')")
        .await
        .unwrap();
    Setup { db, prefix, yaml }
}

async fn data(topic: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&topic))
        .await
        .unwrap()
}

/// Every listed record exists with matching headers, and every data record is listed exactly
/// once.
async fn check_listing(commits: &[CommitRecord], prefix: &str) {
    let mut by_topic: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for t in ["orders", "order_lines"] {
        let topic = format!("{prefix}.{t}");
        by_topic.insert(topic.clone(), data(topic).await);
    }
    let listed = assert_listing(commits, &by_topic);
    let total: usize = by_topic.values().map(Vec::len).sum();
    assert_eq!(
        listed, total,
        "every data record is listed by exactly one commit record"
    );
}

fn gtid_seq(txn: &str) -> u64 {
    txn.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_mixed_transactions_then_restart_resume_exactly() {
    let s = setup().await;
    let commit_topic = format!("{}.commits", s.prefix);
    let mut daemon = start(&s.yaml);
    // The snapshot: one chunk with the one row, committed at the snapshot's position.
    let snap = wait_for_commits(&commit_topic, 1).await;
    daemon.assert_running().await;
    assert_eq!(snap[0].txn, format!("snapshot:{}.orders:0", s.db));
    assert_eq!(snap[0].ops, 1);

    let mut c = conn(&s.db).await;
    for sql in [
        "BEGIN; INSERT INTO orders VALUES (2, 'bob', 20.00, NOW(6)); \
         INSERT INTO order_lines VALUES (2, 1, 'a', 1), (2, 2, 'b', 2); COMMIT",
        "BEGIN; UPDATE orders SET amount = 21.25 WHERE id = 2; \
         DELETE FROM order_lines WHERE order_id = 2 AND line_no = 2; COMMIT",
        "BEGIN; INSERT INTO orders VALUES (3, 'cy', 1, NOW()); ROLLBACK",
        "BEGIN; UPDATE orders SET id = 4 WHERE id = 1; COMMIT",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let all = wait_for_commits(&commit_topic, 4).await;
    assert_eq!(
        all.len(),
        4,
        "snapshot + 3 committed transactions; the rollback never appears"
    );
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "dense sequence");
    }
    assert_eq!(
        all[1..].iter().map(|r| r.ops).collect::<Vec<_>>(),
        [3, 2, 1],
        "ops per transaction"
    );
    let seqs: Vec<u64> = all[1..].iter().map(|r| gtid_seq(&r.txn)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "binlog order {seqs:?}"
    );
    for r in &all {
        let restart: Position = r.restart.parse().unwrap();
        assert!(matches!(restart, Position::MySql { .. }), "{}", r.restart);
    }
    let Position::MySql { gtids, .. } = all[3].restart.parse().unwrap() else {
        unreachable!()
    };
    let last: Gtid = all[3].txn.parse().unwrap();
    assert!(
        gtids.contains(&last),
        "the restart position includes the last transaction"
    );
    check_listing(&all, &s.prefix).await;

    let orders = data(format!("{}.orders", s.prefix)).await;
    let insert = orders
        .iter()
        .find(|r| r.header("ordo.txn") == Some(&all[1].txn))
        .unwrap();
    assert_eq!(insert.header("ordo.optype"), Some("c"));
    assert_eq!(insert.key.as_deref(), Some(&b"{\"id\":2}"[..]));
    let v = insert.json();
    assert_eq!(v["customer"], "bob");
    assert_eq!(v["amount"], "20.00", "exact decimals as strings");
    let snapshot_row = orders
        .iter()
        .find(|r| r.header("ordo.txn") == Some(&all[0].txn))
        .unwrap();
    assert_eq!(snapshot_row.header("ordo.optype"), Some("r"));
    assert_eq!(snapshot_row.json()["placed"], "2024-01-01T10:00:00.123456");

    daemon.stop().await.unwrap();
    // While stopped, more work; after restart exactly those transactions follow, seq continues.
    c.query_drop("INSERT INTO orders VALUES (10, 'dee', 5, NOW())")
        .await
        .unwrap();
    c.query_drop(
        "BEGIN; INSERT INTO order_lines VALUES (10, 1, 'z', 9); \
         UPDATE orders SET customer = 'dee2' WHERE id = 10; COMMIT",
    )
    .await
    .unwrap();
    let daemon = start(&s.yaml);
    // A marker committed after the restart: commit records are in source order, so once its
    // record is there, a wrongly repeated transaction would already be there too.
    wait_for_commits(&commit_topic, 6).await;
    c.query_drop("INSERT INTO orders VALUES (11, 'marker', 1, NOW())")
        .await
        .unwrap();
    let all = wait_for_commits(&commit_topic, 7).await;
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|r| r.txn.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "every source transaction once");
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>(),
        "no transaction repeated after restart: {:?}",
        all.iter().map(|c| &c.txn).collect::<Vec<_>>()
    );
    assert_eq!(all[5].ops, 2);
    assert_eq!(
        all[6].ops, 1,
        "the marker comes right after the two new transactions"
    );
    check_listing(&all, &s.prefix).await;
    daemon.stop().await.unwrap();
}
