//! The producing side's invariant under crashes: kill -9 the daemon at random moments during a
//! concurrent multi-table workload, restart it each time; in the end the commit stream holds
//! exactly one record per committed source transaction, in commit order, with dense sequence
//! numbers, each listing exactly records whose headers match.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ordo_tests::capture::spawn_ordo_run;
use ordo_tests::capture::wait_then_stop;
use ordo_tests::config::kafka_yaml;
use ordo_tests::invariant::{assert_dense, assert_listing};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name};
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
const TXNS_PER_WRITER: usize = 60;
const KILLS: usize = 6;

async fn writer(url: String, id: usize, seed: u64) -> Vec<u32> {
    let c = pg_connect(&url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut xids = Vec::new();
    for i in 0..TXNS_PER_WRITER {
        let order = (id * 10_000 + i) as i32;
        let lines = rng.random_range(1..4);
        let mut sql = format!(
            "BEGIN; INSERT INTO orders VALUES ({order}, 'w{id}', {});",
            rng.random_range(1..500)
        );
        for l in 0..lines {
            sql.push_str(&format!(
                "INSERT INTO lines VALUES ({order}, {l}, 'sku{l}');"
            ));
        }
        if i % 5 == 4 {
            sql.push_str(&format!(
                "UPDATE orders SET amount = amount + 1 WHERE id = {};",
                order - 1
            ));
            sql.push_str(&format!(
                "DELETE FROM lines WHERE order_id = {} AND line_no = 0;",
                order - 1
            ));
        }
        sql.push_str("INSERT INTO audit VALUES (DEFAULT, txid_current()::text);");
        let rows = c
            .simple_query(&format!("{sql} SELECT txid_current()::int4; COMMIT;"))
            .await
            .unwrap();
        let xid = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).map(|v| v.parse::<u32>().unwrap())
                }
                _ => None,
            })
            .unwrap();
        xids.push(xid);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
    xids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_keeps_exactly_one_commit_record_per_transaction() {
    let (_db, url) = pg_create_database("crash").await;
    let prefix = unique_name("crash");
    let s = stack();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    std::fs::write(
        &config,
        format!(
            "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {}\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: never\n    spill_dir: {}\n    status_interval_ms: 100\n{}mappings:\n  - tables: [\"public.orders\", \"public.lines\", \"public.audit\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
            s.pg_host,
            s.pg_port,
            _db,
            dir.path().join("spill").display(),
            kafka_yaml(&format!("{prefix}.commits"), Some(3)),
        ),
    )
    .unwrap();
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount int);
         CREATE TABLE lines (order_id int, line_no int, sku text, PRIMARY KEY (order_id, line_no));
         CREATE TABLE audit (id serial PRIMARY KEY, note text);",
    )
    .await
    .unwrap();

    let mut daemon = spawn_ordo_run(&config, &log);
    pg_wait_for_slot(&c, &prefix).await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(url.clone(), w + 1, w as u64 * 7 + 1)))
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
    let expected = committed.len();
    let commits_topic = format!("{prefix}.commits");
    let records = wait_then_stop(daemon, &commits_topic, expected, &log).await;

    assert_eq!(
        records.len(),
        expected,
        "exactly one commit record per committed transaction"
    );
    assert_dense(&records);
    let txns: BTreeSet<u32> = records.iter().map(|r| r.txn.parse().unwrap()).collect();
    assert_eq!(
        txns, committed,
        "the commit stream lists exactly the committed transactions"
    );
    let lsns: Vec<ordo_kcop::Position> = records
        .iter()
        .map(|r| r.position.parse().unwrap())
        .collect();
    let lsns: Vec<u64> = lsns
        .iter()
        .map(|p| {
            if let ordo_kcop::Position::Postgres(l) = p {
                l.0
            } else {
                0
            }
        })
        .collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "commit order (commit LSNs increase)"
    );

    let mut data: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for t in ["orders", "lines", "audit"] {
        let topic = format!("{prefix}.{t}");
        let recs = tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || read_all(&topic)
        })
        .await
        .unwrap();
        data.insert(topic, recs);
    }
    let listed = assert_listing(&records, &data);
    let total: usize = data.values().map(Vec::len).sum();
    println!(
        "{} transactions, {listed} listed records, {} orphan records from killed runs",
        records.len(),
        total - listed
    );
}
