//! `ordo snapshot --table` against a running daemon: the table is read again in chunks while
//! writers insert, update and delete in it, and replaying the published records in
//! commit-stream order rebuilds exactly the table. Refusals name their reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ordo_capture::resnapshot::command;
use ordo_capture::resnapshot::signal::SnapshotError;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::{RunningDaemon, spawn_ordo_run, start};
use ordo_tests::config::{kafka_yaml, pg_source_yaml};
use ordo_tests::invariant::{assert_snapshot_chunks, decode_commits, replay};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{
    pg_connect, pg_create_database, pg_wait_for_slot, unique_name, wait_until,
};
use serde_json::Value as Json;

const ROWS: i32 = 1500;

struct Setup {
    url: String,
    prefix: String,
    yaml: String,
}

async fn setup() -> Setup {
    let (db, url) = pg_create_database("isnap").await;
    let prefix = unique_name("isnap");
    let source = pg_source_yaml(&db, &prefix, "never");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), Some(3));
    // `ordo.*` is mapped too: the signal table must still never be published.
    let yaml = format!(
        r#"
{source}    signal_table: ordo.signal
{kafka}mappings:
  - tables: ["public.*", "ordo.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
    );
    let c = pg_connect(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, val text NOT NULL, n int);
         INSERT INTO items SELECT g, 'v' || g, g FROM generate_series(1, {ROWS}) g;
         CREATE TABLE marker (id int PRIMARY KEY);
         CREATE TABLE nopk (a int, b text);
         ALTER TABLE nopk REPLICA IDENTITY FULL;
         CREATE PUBLICATION \"{prefix}\" FOR ALL TABLES;
         CREATE SCHEMA ordo;
         CREATE TABLE ordo.signal (
           id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
           kind text NOT NULL,
           data jsonb NOT NULL DEFAULT '{{}}',
           created timestamptz NOT NULL DEFAULT now(),
           updated timestamptz NOT NULL DEFAULT now());
         -- Widen each chunk's window after its read, so that writers change rows of the
         -- chunk between the read and the closing watermark.
         CREATE FUNCTION ordo.slow_close() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.kind = 'window-close' THEN PERFORM pg_sleep(0.05); END IF; RETURN NEW; END $$;
         CREATE TRIGGER slow_close BEFORE INSERT ON ordo.signal
           FOR EACH ROW EXECUTE FUNCTION ordo.slow_close();"
    ))
    .await
    .unwrap();
    Setup { url, prefix, yaml }
}

fn config(yaml: &str) -> ordo_config::Config {
    ordo_config::parse_with_env(yaml, "test.yaml", |_| None).unwrap()
}

/// Inserts, updates and deletes on `items` until `stop`, each in its own transaction.
async fn writer(url: String, seed: i32, stop: Arc<AtomicBool>) -> u64 {
    let c = pg_connect(&url).await;
    let mut i: i64 = 0;
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = (i64::from(seed) * 7919 + i * 104_729) % i64::from(ROWS + 300) + 1;
        let sql = match i % 4 {
            0 => format!("DELETE FROM items WHERE id = {id}"),
            1 => format!(
                "INSERT INTO items VALUES ({id}, 'w{seed}-{i}', {i}) ON CONFLICT (id) DO UPDATE SET val = excluded.val, n = excluded.n"
            ),
            2 => format!("UPDATE items SET val = 'u{seed}-{i}', n = n + 1 WHERE id = {id}"),
            _ => format!(
                "BEGIN; UPDATE items SET n = -{i} WHERE id = {id}; UPDATE items SET val = 'x' || val WHERE id = {} ; COMMIT",
                (id % i64::from(ROWS)) + 1
            ),
        };
        c.batch_execute(&sql).await.unwrap();
        done += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done
}

/// Commits a marker transaction and waits until its commit record is in the commit stream;
/// returns every commit record.
async fn sync_marker(url: &str, commits: &str, id: i32) -> Vec<CommitRecord> {
    let c = pg_connect(url).await;
    let row = c
        .query_one(
            &format!(
                "WITH i AS (INSERT INTO marker VALUES ({id}) RETURNING 1) SELECT (txid_current() % 4294967296)::text FROM i"
            ),
            &[],
        )
        .await
        .unwrap();
    let xid: String = row.get(0);
    wait_until(
        "the marker's commit record",
        Duration::from_secs(120),
        || {
            let (topic, xid) = (commits.to_owned(), xid.clone());
            async move {
                let recs = tokio::task::spawn_blocking(move || read_all(&topic))
                    .await
                    .unwrap();
                let commits = decode_commits(&recs);
                commits.iter().any(|c| c.txn == xid).then_some(commits)
            }
        },
    )
    .await
}

async fn topic(name: String) -> Vec<Record> {
    tokio::task::spawn_blocking(move || read_all(&name))
        .await
        .unwrap()
}

async fn source_rows(url: &str) -> BTreeMap<i64, Json> {
    let c = pg_connect(url).await;
    c.query("SELECT id, val, n FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let (id, val, n): (i32, String, Option<i32>) = (r.get(0), r.get(1), r.get(2));
            (
                i64::from(id),
                serde_json::json!({ "id": id, "val": val, "n": n }),
            )
        })
        .collect()
}

async fn run_snapshot(cfg: &ordo_config::Config, chunk: u64) -> i64 {
    let req = command::request(cfg, "public.items", Some(chunk))
        .await
        .unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(180),
        command::follow(cfg, &req, |_, _| {}),
    )
    .await
    .expect("the snapshot finishes in time")
    .unwrap();
    done.number("rows_done").unwrap()
}

fn start_writers(url: &str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (1..=3)
        .map(|seed| tokio::spawn(writer(url.to_owned(), seed, stop.clone())))
        .collect()
}

/// `clean`: no daemon was killed, so no orphan records exist.
async fn check_result(s: &Setup, commits: &[CommitRecord], clean: bool) {
    let items_topic = format!("{}.items", s.prefix);
    let mut by_topic = BTreeMap::new();
    for t in ["items", "marker", "signal"] {
        let name = format!("{}.{t}", s.prefix);
        by_topic.insert(name.clone(), topic(name).await);
    }
    let signal_topic = format!("{}.signal", s.prefix);
    assert_snapshot_chunks(commits, &by_topic, &items_topic, &signal_topic, clean);
    let replayed: BTreeMap<i64, Json> = replay(commits, &by_topic[&items_topic], &items_topic)
        .into_iter()
        .map(|(k, v)| {
            let key: Json = serde_json::from_str(&k).unwrap();
            (key["id"].as_i64().unwrap(), v)
        })
        .collect();
    let want = source_rows(&s.url).await;
    assert_eq!(replayed.len(), want.len(), "row count");
    assert_eq!(replayed, want, "replaying the topic rebuilds the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_merge_without_loss_or_duplicates() {
    let s = setup().await;
    let cfg = config(&s.yaml);
    let daemon: RunningDaemon = start(&s.yaml);
    let c = pg_connect(&s.url).await;
    pg_wait_for_slot(&c, &s.prefix).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&s.url, &stop);
    let rows = run_snapshot(&cfg, 100).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    assert!(
        writes > 50,
        "the writers ran during the snapshot ({writes} writes)"
    );
    assert!(rows >= i64::from(ROWS) - 400, "rows read {rows}");
    let commits = sync_marker(&s.url, &format!("{}.commits", s.prefix), 1).await;
    daemon.stop().await.unwrap();
    check_result(&s, &commits, true).await;
    let left = c
        .query_one(
            "SELECT count(*) FROM ordo.signal WHERE kind <> 'snapshot'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(left.get::<_, i64>(0), 0, "watermark rows are cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tables_it_cannot_snapshot() {
    let s = setup().await;
    let cfg = config(&s.yaml);
    let refused = |r: Result<command::Requested, SnapshotError>| match r {
        Err(SnapshotError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let m = refused(command::request(&cfg, "public.nopk", None).await);
    assert!(m.contains("no primary key"), "{m}");
    let m = refused(command::request(&cfg, "public.missing", None).await);
    assert!(m.contains("does not exist"), "{m}");
    let m = refused(command::request(&cfg, "other.items", None).await);
    assert!(m.contains("not mapped"), "{m}");
    let m = refused(command::request(&cfg, "items", None).await);
    assert!(m.contains("schema.table"), "{m}");
    let no_signal = s.yaml.replace("    signal_table: ordo.signal\n", "");
    let m = refused(command::request(&config(&no_signal), "public.items", None).await);
    assert!(m.contains("signal_table is not set"), "{m}");

    // `ordo check` names a missing signal table and has nothing to say about a good one.
    let missing = s
        .yaml
        .replace("signal_table: ordo.signal", "signal_table: ordo.nosuch");
    let problems = ordo_capture::check::check(&Arc::new(config(&missing))).await;
    assert!(
        problems
            .iter()
            .any(|p| p.what.contains("ordo.nosuch") && p.found == "missing"),
        "{problems:?}"
    );
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
        .args(["snapshot", "--table", "public.nopk", "--config"])
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
    let c = pg_connect(&s.url).await;
    pg_wait_for_slot(&c, &s.prefix).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&s.url, &stop);
    let req = command::request(&cfg, "public.items", Some(50))
        .await
        .unwrap();
    wait_until("a few durable chunks", Duration::from_secs(120), || {
        let c = &c;
        async move {
            let r = c
                .query_one(
                    "SELECT coalesce((data->>'chunks')::int, 0) FROM ordo.signal WHERE id = $1",
                    &[&req.id],
                )
                .await
                .unwrap();
            (r.get::<_, i32>(0) >= 4).then_some(())
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
    let commits = sync_marker(&s.url, &format!("{}.commits", s.prefix), 2).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    assert!(second.wait().unwrap().success(), "log: {}", log.display());
    check_result(&s, &commits, false).await;
}
