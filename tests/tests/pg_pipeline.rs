//! PostgreSQL -> JSON KCOP -> broker, with the commit stream: exact records, one commit record
//! per transaction in commit order, and a restart that resumes exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, pg_source_yaml_spilling};
use ordo_tests::invariant::assert_listing;
use ordo_tests::kafka::{Record, read_all, wait_for_commits};
use ordo_tests::stack::{pg_connect, pg_create_database, unique_name};

struct Setup {
    db: String,
    url: String,
    prefix: String,
    yaml: String,
}

async fn setup(snapshot: &str) -> Setup {
    let (db, url) = pg_create_database("pipe").await;
    let prefix = unique_name("pipe");
    let source = pg_source_yaml_spilling(
        &db,
        &prefix,
        snapshot,
        &std::env::temp_dir().join("ordo-test-spill"),
    );
    let kafka = kafka_yaml(&format!("{prefix}.commits"), Some(3));
    let yaml = format!(
        r#"
{source}{kafka}mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
    );
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), placed timestamptz);
         CREATE TABLE lines (order_id int, line_no int, sku text, qty int, PRIMARY KEY (order_id, line_no));
         INSERT INTO orders VALUES (1, 'ann', 10.50, '2024-01-01 10:00:00+00');",
    )
    .await
    .unwrap();
    Setup {
        db,
        url,
        prefix,
        yaml,
    }
}

async fn data(topic: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&topic))
        .await
        .unwrap()
}

/// Every listed record exists with matching headers, and every data record is listed exactly once.
async fn check_listing(commits: &[CommitRecord], prefix: &str) {
    let mut by_topic: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for t in ["orders", "lines"] {
        let topic = format!("{prefix}.{t}");
        by_topic.insert(topic.clone(), data(topic).await);
    }
    let listed = assert_listing(commits, &by_topic);
    for c in commits {
        assert_eq!(c.records, c.ops, "txn {} records", c.txn);
    }
    let total: usize = by_topic.values().map(Vec::len).sum();
    assert_eq!(
        listed, total,
        "every data record is listed by exactly one commit record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_transactions_then_restart_resume_exactly() {
    let s = setup("initial").await;
    let mut daemon = start(&s.yaml);
    let c = pg_connect(&s.url).await;
    // The snapshot (1 row + the completion marker) comes first.
    let snap = wait_for_commits(&format!("{}.commits", s.prefix), 2).await;
    daemon.assert_running().await;
    assert_eq!(snap[0].txn, "snapshot:public.orders:0");
    assert_eq!(snap[1].txn, "snapshot:complete");

    c.batch_execute(
        "BEGIN; INSERT INTO orders VALUES (2, 'bob', 20.00, now()); INSERT INTO lines VALUES (2, 1, 'a', 1), (2, 2, 'b', 2); COMMIT;
         BEGIN; UPDATE orders SET amount = 21.25 WHERE id = 2; DELETE FROM lines WHERE order_id = 2 AND line_no = 2; COMMIT;
         BEGIN; INSERT INTO orders VALUES (3, 'cy', 1, now()); ROLLBACK;
         BEGIN; UPDATE orders SET id = 4 WHERE id = 1; COMMIT;
         TRUNCATE lines;",
    )
    .await
    .unwrap();
    let all = wait_for_commits(&format!("{}.commits", s.prefix), 6).await;
    assert_eq!(
        all.len(),
        6,
        "snapshot(2) + 4 committed transactions; the rollback never appears"
    );
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "dense sequence");
    }
    assert_eq!(all[2].ops, 3);
    assert_eq!(all[3].ops, 2);
    assert_eq!(all[4].ops, 1);
    assert_eq!(all[5].ops, 1, "truncate");
    let xids: Vec<u64> = all[2..].iter().map(|r| r.txn.parse().unwrap()).collect();
    assert!(
        xids.windows(2).all(|w| w[0] < w[1]),
        "commit order {xids:?}"
    );
    check_listing(&all, &s.prefix).await;

    let orders = data(format!("{}.orders", s.prefix)).await;
    let insert = orders
        .iter()
        .find(|r| r.header("ordo.txn") == Some(&all[2].txn))
        .unwrap();
    assert_eq!(insert.header("ordo.optype"), Some("c"));
    assert_eq!(insert.key.as_deref(), Some(&b"{\"id\":2}"[..]));
    let v = insert.json();
    assert_eq!(v["customer"], "bob");
    assert_eq!(v["amount"], "20.00", "exact decimals as strings");
    let pk_change = orders
        .iter()
        .find(|r| r.header("ordo.txn") == Some(&all[4].txn))
        .unwrap();
    assert_eq!(pk_change.json()["id"], 4);

    daemon.stop().await.unwrap();
    // While stopped, more work; after restart exactly those transactions follow, seq continues.
    c.batch_execute("INSERT INTO orders VALUES (10, 'dee', 5, now())")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO lines VALUES (10, 1, 'z', 9); UPDATE orders SET customer = 'dee2' WHERE id = 10; COMMIT;")
        .await
        .unwrap();
    let daemon = start(&s.yaml);
    // A marker committed after the restart: commit records are in source order, so once its
    // record is there, a wrongly repeated transaction would already be there too.
    let commit_topic = format!("{}.commits", s.prefix);
    wait_for_commits(&commit_topic, 8).await;
    c.batch_execute("INSERT INTO orders VALUES (11, 'marker', 1, now())")
        .await
        .unwrap();
    let all = wait_for_commits(&commit_topic, 9).await;
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|r| r.txn.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "every source transaction once");
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>(),
        "no transaction repeated after restart: {:?}",
        all.iter().map(|c| &c.txn).collect::<Vec<_>>()
    );
    assert_eq!(all[7].ops, 2);
    assert_eq!(
        all[8].ops, 1,
        "the marker comes right after the two new transactions"
    );
    check_listing(&all, &s.prefix).await;
    daemon.stop().await.unwrap();
    let _ = s.db;
}
