//! `ordo snapshot --table` on a MariaDB source: the table is read again in chunks while
//! writers insert, update and delete in it; replaying the published records in commit-stream
//! order rebuilds exactly the table, and the signal table is never published. Refusals name
//! their reason; a daemon killed mid-snapshot continues after its last durable chunk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use ordo_capture::resnapshot::command;
use ordo_capture::resnapshot::signal::SnapshotError;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::{RunningDaemon, spawn_ordo_run, start};
use ordo_tests::config::{kafka_yaml, mysql_source_yaml};
use ordo_tests::invariant::{assert_snapshot_chunks, decode_commits, replay};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{mysql_create_database, stack, unique_name, wait_until};
use serde_json::Value as Json;

const ROWS: i64 = 1200;

struct Setup {
    db: String,
    prefix: String,
    yaml: String,
}

async fn conn(db: &str) -> mysql_async::Conn {
    let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
    mysql_async::Conn::from_url(url.as_str()).await.unwrap()
}

fn server_id() -> u32 {
    1_100_000_000 + rand::random::<u32>() % 1_000_000_000
}

async fn setup() -> Setup {
    let db = mysql_create_database("misnap").await;
    let prefix = unique_name("misnap");
    let source = mysql_source_yaml(&db, server_id(), "never");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), Some(3));
    // The signal table is in the mapped database: it must still never be published.
    let yaml = format!(
        r#"
{source}    signal_table: {db}.ordo_signal
{kafka}mappings:
  - tables: ["{db}.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
    );
    let mut c = conn(&db).await;
    c.query_drop(format!(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, val VARCHAR(64) NOT NULL, n BIGINT) ENGINE=InnoDB;
         INSERT INTO items SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_{ROWS};
         CREATE TABLE marker (id INT PRIMARY KEY) ENGINE=InnoDB;
         CREATE TABLE nopk (a INT, b TEXT) ENGINE=InnoDB;
         CREATE TABLE tagged (tag ENUM('a','b') PRIMARY KEY) ENGINE=InnoDB;
         CREATE TABLE words (w VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_german1_ci,
                             k INT, v INT, PRIMARY KEY (w, k)) ENGINE=InnoDB;
         -- Equal in latin1_german1_ci: apfel = Äpfel, Öl = ol; so chunks must go by (w, k).
         INSERT INTO words VALUES ('apfel', 1, 1), ('Äpfel', 2, 2), ('Äpfel', 3, 3),
           ('zebra', 1, 4), ('ähnlich', 1, 5), ('Öl', 1, 6), ('ol', 2, 7), ('Übel', 1, 8);"
    ))
    .await
    .unwrap();
    Setup { db, prefix, yaml }
}

fn config(yaml: &str) -> ordo_config::Config {
    ordo_config::parse_with_env(yaml, "test.yaml", |_| None).unwrap()
}

/// A trigger that holds each closing watermark's insert for 50 ms, so that writers change rows
/// of the chunk between its read and the closing watermark.
async fn slow_close(db: &str) {
    let mut c = conn(db).await;
    c.query_drop(
        "CREATE TRIGGER slow_close BEFORE INSERT ON ordo_signal FOR EACH ROW \
         IF NEW.kind = 'window-close' THEN SET @ordo_slept = SLEEP(0.05); END IF",
    )
    .await
    .unwrap();
}

/// Inserts, updates and deletes on `items` until `stop`, each in its own transaction.
async fn writer(db: String, seed: i64, stop: Arc<AtomicBool>) -> u64 {
    let mut c = conn(&db).await;
    let mut i: i64 = 0;
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = (seed * 7919 + i * 104_729) % (ROWS + 300) + 1;
        match i % 4 {
            0 => c.query_drop(format!("DELETE FROM items WHERE id = {id}")).await,
            1 => {
                c.query_drop(format!(
                    "INSERT INTO items VALUES ({id}, 'w{seed}-{i}', {i}) ON DUPLICATE KEY UPDATE val = VALUES(val), n = VALUES(n)"
                ))
                .await
            }
            2 => {
                c.query_drop(format!(
                    "UPDATE items SET val = 'u{seed}-{i}', n = n + 1 WHERE id = {id}"
                ))
                .await
            }
            _ => {
                let mut t = c
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .unwrap();
                t.query_drop(format!("UPDATE items SET n = -{i} WHERE id = {id}"))
                    .await
                    .unwrap();
                t.query_drop(format!(
                    "UPDATE items SET val = CONCAT('x', val) WHERE id = {}",
                    id % ROWS + 1
                ))
                .await
                .unwrap();
                t.commit().await
            }
        }
        .unwrap();
        done += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done
}

fn start_writers(db: &str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (1..=3)
        .map(|seed| tokio::spawn(writer(db.to_owned(), seed, stop.clone())))
        .collect()
}

async fn topic(name: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&name))
        .await
        .unwrap()
}

/// Waits until the daemon streams: commits marker rows (ids from -1 down) until one is
/// published.
async fn wait_streaming(s: &Setup) {
    let mut c = conn(&s.db).await;
    let marker_topic = format!("{}.marker", s.prefix);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for id in 1.. {
        c.query_drop(format!("INSERT INTO marker VALUES (-{id})"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !topic(marker_topic.clone()).await.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not publish a marker row within 120 s"
        );
    }
}

/// Commits a marker row and waits until its transaction's commit record is in the commit
/// stream; returns every commit record.
async fn sync_marker(s: &Setup, id: i64) -> Vec<CommitRecord> {
    conn(&s.db)
        .await
        .query_drop(format!("INSERT INTO marker VALUES ({id})"))
        .await
        .unwrap();
    let marker_topic = format!("{}.marker", s.prefix);
    let txn = wait_until("the marker's record", Duration::from_secs(120), || {
        let t = marker_topic.clone();
        async move {
            let recs = topic(t).await;
            recs.iter()
                .find(|r| {
                    let key: Json = serde_json::from_slice(r.key.as_deref().unwrap()).unwrap();
                    key["id"].as_i64() == Some(id)
                })
                .and_then(|r| r.header("ordo.txn").map(str::to_owned))
        }
    })
    .await;
    let commits = format!("{}.commits", s.prefix);
    wait_until(
        "the marker's commit record",
        Duration::from_secs(120),
        || {
            let (topic, txn) = (commits.clone(), txn.clone());
            async move {
                let recs = tokio::task::spawn_blocking(move || read_all(&topic))
                    .await
                    .unwrap();
                let commits = decode_commits(&recs);
                commits.iter().any(|c| c.txn == txn).then_some(commits)
            }
        },
    )
    .await
}

async fn source_items(db: &str) -> BTreeMap<i64, Json> {
    let rows: Vec<(i64, String, Option<i64>)> = conn(db)
        .await
        .query("SELECT id, val, n FROM items")
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, val, n)| (id, serde_json::json!({ "id": id, "val": val, "n": n })))
        .collect()
}

fn by_id(replayed: BTreeMap<String, Json>) -> BTreeMap<i64, Json> {
    replayed
        .into_iter()
        .map(|(k, v)| {
            let key: Json = serde_json::from_str(&k).unwrap();
            (key["id"].as_i64().unwrap(), v)
        })
        .collect()
}

async fn run_snapshot(cfg: &ordo_config::Config, table: &str, chunk: u64) -> i64 {
    let req = command::request(cfg, table, Some(chunk)).await.unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(180),
        command::follow(cfg, &req, |_, _| {}),
    )
    .await
    .expect("the snapshot finishes in time")
    .unwrap();
    done.number("rows_done").unwrap()
}

/// `clean`: no daemon was killed, so no orphan records exist.
async fn check_result(s: &Setup, commits: &[CommitRecord], clean: bool) {
    let items_topic = format!("{}.items", s.prefix);
    let mut by_topic = BTreeMap::new();
    for t in ["items", "marker", "words", "ordo_signal"] {
        let name = format!("{}.{t}", s.prefix);
        by_topic.insert(name.clone(), topic(name).await);
    }
    let signal_topic = format!("{}.ordo_signal", s.prefix);
    assert_snapshot_chunks(commits, &by_topic, &items_topic, &signal_topic, clean);
    let replayed = by_id(replay(commits, &by_topic[&items_topic], &items_topic));
    let want = source_items(&s.db).await;
    assert_eq!(replayed.len(), want.len(), "row count");
    assert_eq!(replayed, want, "replaying the topic rebuilds the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_merge_without_loss_or_duplicates() {
    let s = setup().await;
    let cfg = config(&s.yaml);
    // `ordo snapshot` creates the signal table the first time.
    let daemon: RunningDaemon = start(&s.yaml);
    wait_streaming(&s).await;
    let words = run_snapshot(&cfg, &format!("{}.words", s.db), 3).await;
    assert_eq!(words, 8, "a text key in latin1 chunks correctly");
    slow_close(&s.db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&s.db, &stop);
    let rows = run_snapshot(&cfg, &format!("{}.items", s.db), 100).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    assert!(
        writes > 50,
        "the writers ran during the snapshot ({writes} writes)"
    );
    assert!(rows >= ROWS - 400, "rows read {rows}");
    let commits = sync_marker(&s, 1).await;
    daemon.stop().await.unwrap();
    check_result(&s, &commits, true).await;

    // Every `words` row was read once, in key (collation) order, by chunks of 3.
    let words_topic = format!("{}.words", s.prefix);
    let words = topic(words_topic.clone()).await;
    let read: Vec<(String, i64)> = words
        .iter()
        .filter(|r| r.header("ordo.optype") == Some("r"))
        .map(|r| {
            let v = r.json();
            (
                v["w"].as_str().unwrap().to_owned(),
                v["k"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(read.len(), 8, "{read:?}");
    let distinct: BTreeSet<_> = read.iter().collect();
    assert_eq!(distinct.len(), 8, "no row twice: {read:?}");

    let left: Option<i64> = conn(&s.db)
        .await
        .query_first("SELECT COUNT(*) FROM ordo_signal WHERE kind <> 'snapshot'")
        .await
        .unwrap();
    assert_eq!(left, Some(0), "watermark rows are cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tables_it_cannot_snapshot() {
    let s = setup().await;
    let cfg = config(&s.yaml);
    let refused = |r: Result<command::Requested, SnapshotError>| match r {
        Err(SnapshotError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let db = &s.db;
    // `ordo check` names a missing signal table (and, below, has nothing to say about it once
    // it exists).
    let problems = ordo_capture::check::check(&Arc::new(config(&s.yaml))).await;
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("ordo_signal") && p.found == "missing"),
        "{problems:?}"
    );
    let m = refused(command::request(&cfg, &format!("{db}.nopk"), None).await);
    assert!(m.contains("no primary key"), "{m}");
    let m = refused(command::request(&cfg, &format!("{db}.tagged"), None).await);
    assert!(m.contains("enum column `tag`"), "{m}");
    let m = refused(command::request(&cfg, &format!("{db}.missing"), None).await);
    assert!(m.contains("does not exist"), "{m}");
    let m = refused(command::request(&cfg, "other.items", None).await);
    assert!(m.contains("not mapped"), "{m}");
    let m = refused(command::request(&cfg, "items", None).await);
    assert!(m.contains("database.table"), "{m}");
    let no_signal = s
        .yaml
        .replace(&format!("    signal_table: {db}.ordo_signal\n"), "");
    let m = refused(command::request(&config(&no_signal), &format!("{db}.items"), None).await);
    assert!(m.contains("source.mysql.signal_table is not set"), "{m}");

    // A refused request has created the signal table already.
    let problems = ordo_capture::check::check(&Arc::new(config(&s.yaml))).await;
    assert!(
        !problems.iter().any(|p| p.what.contains("signal")),
        "{problems:?}"
    );

    // The command line: exit 2 with the reason on stderr.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.yaml");
    std::fs::write(&path, &s.yaml).unwrap();
    let out = std::process::Command::new(ordo_tests::capture::ordo_binary())
        .args(["snapshot", "--table", &format!("{db}.nopk"), "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no primary key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_snapshot_then_restart_still_rebuilds_the_table() {
    let s = setup().await;
    let cfg = config(&s.yaml);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.yaml");
    std::fs::write(&path, &s.yaml).unwrap();
    let log = dir.path().join("ordo.log");
    let mut first = spawn_ordo_run(&path, &log);
    wait_streaming(&s).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&s.db, &stop);
    let req = command::request(&cfg, &format!("{}.items", s.db), Some(50))
        .await
        .unwrap();
    wait_until("a few durable chunks", Duration::from_secs(120), || {
        let (db, id) = (s.db.clone(), req.id);
        async move {
            let chunks: Option<Option<i64>> = conn(&db)
                .await
                .exec_first(
                    "SELECT CAST(JSON_VALUE(data, '$.chunks') AS SIGNED) FROM ordo_signal WHERE id = ?",
                    (id,),
                )
                .await
                .unwrap();
            (chunks.flatten().unwrap_or(0) >= 4).then_some(())
        }
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_ordo_run(&path, &log);
    let done = tokio::time::timeout(
        Duration::from_secs(180),
        command::follow(&cfg, &req, |_, _| {}),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the snapshot finishes after the restart (log: {})",
            log.display()
        )
    })
    .unwrap();
    eprintln!("request after the restart: {}", done.data);
    assert!(done.number("chunks").unwrap() > 4);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let commits = sync_marker(&s, 2).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    assert!(second.wait().unwrap().success(), "log: {}", log.display());
    check_result(&s, &commits, false).await;
}
