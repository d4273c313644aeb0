//! The real `ordo-custom` binary against the stack's PostgreSQL and broker: orders of 100, 500,
//! 500.01 and 1200, an update raising an amount over the threshold and a delete; exactly the
//! orders above 500 reach the monitoring topic, each with its `ordo.*` headers and listed by its
//! transaction's commit record; SIGTERM stops the daemon with exit code 0. And a factory error
//! (an unknown column) stops it with exit code 1, naming the table and the column, before
//! anything is published.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::config::{kafka_yaml, pg_source_yaml};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{pg_connect, pg_create_database, stack, unique_name, wait_until};

/// The daemon as a child process; killed on drop if the test fails before stopping it.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, log: PathBuf) -> Self {
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ordo-custom"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ordo-custom");
        Self { child, log }
    }

    /// Panics with the daemon's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("ordo-custom exited with {status}:\n{log}");
        }
    }

    /// Waits (up to 60 s) for the daemon to exit on its own; its exit code and log.
    async fn exited(mut self) -> (Option<i32>, String) {
        let status = wait_until("ordo-custom to exit", Duration::from_secs(60), || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await;
        (
            status.code(),
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// SIGTERM, then wait (up to 60 s) for the exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let status = wait_until("ordo-custom to exit", Duration::from_secs(60), || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await;
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("ordo-custom log:\n{log}");
        }
        status.code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The daemon's config; `options` is the YAML flow map of the `big-orders` output's options.
/// Drops the test's replication slot and database once the daemon has stopped (the shared
/// server has a limited number of slots).
async fn clean_up(db: &str, slot: &str) {
    let admin = pg_connect(&stack().pg_url).await;
    // The server may take a moment to see the daemon's replication connection gone.
    wait_until(
        &format!("dropping replication slot {slot}"),
        Duration::from_secs(10),
        || {
            let admin = &admin;
            async move {
                let sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                           WHERE slot_name = $1";
                admin.execute(sql, &[&slot]).await.ok()
            }
        },
    )
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .unwrap();
}

fn config(db: &str, prefix: &str, options: &str) -> String {
    let source = pg_source_yaml(db, prefix, "initial");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    format!(
        r#"
{source}{kafka}mappings:
  - tables: ["public.orders"]
    outputs:
      - topic: "{prefix}.big_orders"
        format: custom
        kcop: big-orders
        options: {options}
logging:
  level: info
  format: text
"#
    )
}

async fn read(topic: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&topic))
        .await
        .unwrap()
}

/// The commit records, once there are at least `at_least`.
async fn commits(daemon: &mut Daemon, topic: &str, at_least: usize) -> Vec<CommitRecord> {
    wait_until(
        &format!("{at_least} commit records on {topic}"),
        Duration::from_secs(60),
        || {
            daemon.assert_running();
            let topic = topic.to_owned();
            async move {
                let records = read(topic).await;
                (records.len() >= at_least).then(|| {
                    records
                        .iter()
                        .map(|r| CommitRecord::decode(r.value.as_deref(), r.offset).unwrap())
                        .collect::<Vec<_>>()
                })
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_orders_above_500_reach_the_monitoring_topic() {
    let (db, url) = pg_create_database("bigorders").await;
    let prefix = unique_name("bigorders");
    let pg = pg_connect(&url).await;
    // An order that exists before the capture starts is a snapshot read: not reported.
    pg.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2));
         INSERT INTO orders VALUES (1, 'ann', 900.00);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ordo.yaml");
    std::fs::write(&config_path, config(&db, &prefix, "{}")).unwrap();
    let mut daemon = Daemon::start(&config_path, dir.path().join("ordo.log"));
    let commit_topic = format!("{prefix}.commits");

    // The snapshot's commit records: the daemon is streaming from its slot after them.
    let snapshot = commits(&mut daemon, &commit_topic, 2).await;
    assert_eq!(snapshot[0].txn, "snapshot:public.orders:0");
    assert_eq!(snapshot[0].records, 0, "snapshot reads are not reported");
    assert_eq!(snapshot[1].txn, "snapshot:complete");

    for sql in [
        // ops 0, 1, 2: only 500.01 (op 2) exceeds 500.
        "INSERT INTO orders VALUES (2, 'bob', 100), (3, 'cy', 500), (4, 'dee', 500.01)",
        "INSERT INTO orders VALUES (5, 'eve', 1200)",
        // op 0 keeps 500.00 (not above 500), op 1 raises order 2 to 750.00.
        "BEGIN; UPDATE orders SET customer = 'cy2' WHERE id = 3;
         UPDATE orders SET amount = 750 WHERE id = 2; COMMIT;",
        "DELETE FROM orders WHERE id = 5",
    ] {
        pg.batch_execute(sql).await.unwrap();
    }
    let all = commits(&mut daemon, &commit_topic, 6).await;
    assert_eq!(all.len(), 6, "2 snapshot + 4 transactions");
    let txns = &all[2..];
    assert_eq!(
        txns.iter().map(|c| (c.ops, c.records)).collect::<Vec<_>>(),
        [(3, 1), (1, 1), (2, 1), (1, 0)],
        "(ops, records) per transaction"
    );

    let big = read(format!("{prefix}.big_orders")).await;
    let values: Vec<serde_json::Value> = big.iter().map(Record::json).collect();
    let expected = [
        (
            &txns[0].txn,
            "2",
            r#"{"order_id":4,"amount":"500.01","customer":"dee","op":"c"}"#,
        ),
        (
            &txns[1].txn,
            "0",
            r#"{"order_id":5,"amount":"1200.00","customer":"eve","op":"c"}"#,
        ),
        (
            &txns[2].txn,
            "1",
            r#"{"order_id":2,"amount":"750.00","customer":"bob","op":"u"}"#,
        ),
    ];
    assert_eq!(big.len(), expected.len(), "monitoring records: {values:?}");
    // Records of different orders may sit on different partitions: match them by transaction.
    for (txn, op_index, value) in expected {
        let r = big
            .iter()
            .find(|r| r.header("ordo.txn") == Some(txn.as_str()))
            .unwrap_or_else(|| panic!("no record of txn {txn}: {values:?}"));
        assert_eq!(
            std::str::from_utf8(r.value.as_deref().unwrap()).unwrap(),
            value
        );
        assert_eq!(r.header("ordo.op"), Some(op_index), "txn {txn}");
        assert_eq!(r.header("ordo.sub"), Some("0"));
        assert_eq!(r.header("ordo.table"), Some("public.orders"));
        let code = if value.ends_with(r#""op":"u"}"#) {
            "u"
        } else {
            "c"
        };
        assert_eq!(r.header("ordo.optype"), Some(code));
        let key = format!(r#"{{"order_id":{}}}"#, r.json()["order_id"]);
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        // The transaction's commit record lists exactly this record.
        let commit = txns.iter().find(|c| &c.txn == txn).unwrap();
        assert_eq!(commit.parts.len(), 1, "txn {txn}");
        let part = &commit.parts[0];
        assert_eq!(part.topic, format!("{prefix}.big_orders"));
        assert_eq!(
            (part.partition, part.first, part.last, part.count),
            (r.partition, r.offset, r.offset, 1)
        );
    }
    assert!(txns[3].parts.is_empty(), "the delete makes no record");

    daemon.assert_running();
    assert_eq!(
        daemon.terminate().await,
        Some(0),
        "SIGTERM drains and exits 0"
    );
    drop(pg);
    clean_up(&db, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_column_stops_the_daemon_naming_table_and_column() {
    let (db, url) = pg_create_database("bigorders_bad").await;
    let prefix = unique_name("bigorders_bad");
    let pg = pg_connect(&url).await;
    pg.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2));
         INSERT INTO orders VALUES (1, 'ann', 900.00);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ordo.yaml");
    let options = r#"{ amount_column: total, threshold: "1000" }"#;
    std::fs::write(&config_path, config(&db, &prefix, options)).unwrap();
    // The first change of the table (here the snapshot read) builds the KCOP, which fails.
    let daemon = Daemon::start(&config_path, dir.path().join("ordo.log"));
    let (code, log) = daemon.exited().await;
    assert_eq!(code, Some(1), "a runtime failure:\n{log}");
    let expected = "table public.orders: the `big-orders` KCOP reads column `total` \
                    (options.amount_column), which the table does not have; it has: id, \
                    customer, amount";
    assert!(log.contains(expected), "{log}");
    assert!(
        read(format!("{prefix}.commits")).await.is_empty(),
        "no transaction of the table was committed"
    );
    drop(pg);
    clean_up(&db, &prefix).await;
}
