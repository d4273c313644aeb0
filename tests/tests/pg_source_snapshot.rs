//! The initial snapshot and the stream after it fit together exactly: a writer inserts,
//! updates (also keys) and deletes rows all through a slow, chunked snapshot; replaying the
//! snapshot rows and then the streamed changes gives exactly the table's final contents, with
//! no row missing, doubled or stale.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordo_kcop::{Change, Op, Row, Value};
use pg_source_support::{Behaviour, PgEnv, Txn, start};
use rand::{Rng, SeedableRng};

const ROWS: i32 = 20_000;

/// Keep changing the table until `stop`; count committed transactions in `done`.
async fn writer(c: tokio_postgres::Client, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut fresh = 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.random_range(1..=4) {
            let id = rng.random_range(1..=ROWS + 2_000);
            match rng.random_range(0..5) {
                0 => sql.push_str(&format!(
                    "INSERT INTO t VALUES ({id}, 'new', 0, 1.25) ON CONFLICT DO NOTHING;"
                )),
                1 | 2 => sql.push_str(&format!(
                    "UPDATE t SET v = v || '+', n = n + 1, d = d * 2 WHERE id = {id};"
                )),
                3 => sql.push_str(&format!("DELETE FROM t WHERE id = {id};")),
                _ => {
                    fresh += 1;
                    sql.push_str(&format!("UPDATE t SET id = {fresh} WHERE id = {id};"));
                }
            }
        }
        sql.push_str("COMMIT;");
        c.batch_execute(&sql).await.unwrap();
        done.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn key(row: &Row) -> i64 {
    match row[0] {
        Value::Int(i) => i,
        ref other => panic!("id is {other:?}"),
    }
}

/// Apply one change to the replica, checking it fits what the replica holds.
fn apply(replica: &mut BTreeMap<i64, Row>, c: &Change) {
    match c.op {
        Op::Read | Op::Insert => {
            let row = c.after.clone().unwrap();
            let prev = replica.insert(key(&row), row);
            assert!(prev.is_none(), "{:?} of a row that exists: {prev:?}", c.op);
        }
        Op::Update => {
            let after = c.after.clone().unwrap();
            let old_key = c.before.as_ref().map_or(key(&after), key);
            let prev = replica.remove(&old_key);
            assert!(prev.is_some(), "update of missing row {old_key}");
            assert!(!after.iter().any(Value::is_marker));
            replica.insert(key(&after), after);
        }
        Op::Delete => {
            let k = key(c.before.as_ref().unwrap());
            assert!(replica.remove(&k).is_some(), "delete of missing row {k}");
        }
        Op::Truncate => replica.clear(),
    }
}

#[tokio::test]
async fn snapshot_plus_stream_equals_the_final_table() {
    let env = PgEnv::new("pgsnap").await;
    env.client
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n bigint, d numeric(20,2));
             INSERT INTO t SELECT i, 'row' || i, i, i / 100.0 FROM generate_series(1, {ROWS}) i;"
        ))
        .await
        .unwrap();
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let w = tokio::spawn(writer(env.connect().await, stop.clone(), done.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cfg = env.config("snapshot: initial\nsnapshot_chunk_rows: 500");
    let mut run = start(&cfg, None, Behaviour::default());
    // Read slowly while the snapshot runs, so the writer gets ahead of it.
    let started = Instant::now();
    let mut during = None;
    while !run.seen.txns.iter().any(|t| t.id() == "snapshot:complete") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "snapshot too slow"
        );
        if during.is_none() && !run.seen.txns.is_empty() {
            during = Some(done.load(Ordering::Relaxed));
        }
        run.pump(Duration::from_millis(200)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let writes_during_snapshot = done.load(Ordering::Relaxed) - during.unwrap_or(0);
    // Keep writing a while after the snapshot, then stop and mark the end.
    let after_snapshot = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < after_snapshot + 200 {
        run.pump(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    env.client
        .batch_execute("INSERT INTO t VALUES (-1, 'end', 0, 0)")
        .await
        .unwrap();
    run.wait_for("the end marker", Duration::from_secs(120), |s| {
        s.streamed_changes()
            .any(|c| c.after.as_ref().is_some_and(|r| key(r) == -1))
    })
    .await;
    run.assert_quiet(Duration::from_millis(500)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();

    let chunks: Vec<&Txn> = seen.txns.iter().filter(|t| t.is_snapshot()).collect();
    let read: u64 = chunks.iter().map(|t| t.count).sum();
    let streamed = seen.streamed().count();
    println!(
        "snapshot: {} chunks, {read} rows; {writes_during_snapshot} writer transactions during the snapshot; {streamed} streamed transactions",
        chunks.len()
    );
    assert!(
        writes_during_snapshot > 10,
        "the writer did not overlap the snapshot"
    );
    assert!(chunks.len() >= (ROWS / 500) as usize);
    assert!(chunks.iter().all(|t| t.count <= 500));
    // Snapshot first, then the stream; the snapshot's own transactions are not in the stream.
    let first_streamed = seen.txns.iter().position(|t| !t.is_snapshot()).unwrap();
    assert!(seen.txns[first_streamed..].iter().all(|t| !t.is_snapshot()));
    assert_eq!(seen.txns[first_streamed - 1].id(), "snapshot:complete");

    let mut replica = BTreeMap::new();
    for t in &seen.txns {
        for c in &t.changes {
            apply(&mut replica, c);
        }
    }
    let table: BTreeMap<i64, Row> = env
        .client
        .query("SELECT id, v, n, d::text FROM t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            let d: Option<String> = r.get(3);
            let n: Option<i64> = r.get(2);
            let row = vec![
                Value::Int(i64::from(id)),
                Value::Text(r.get(1)),
                n.map_or(Value::Null, Value::Int),
                d.map_or(Value::Null, |d| Value::Decimal(d.parse().unwrap())),
            ];
            (i64::from(id), row)
        })
        .collect();
    assert_eq!(replica.len(), table.len());
    let differ: Vec<_> = table
        .iter()
        .filter(|(k, row)| replica.get(k) != Some(row))
        .take(5)
        .collect();
    assert!(differ.is_empty(), "rows differ, e.g. {differ:?}");
    assert_eq!(replica, table);
    env.cleanup(&[]).await;
}
