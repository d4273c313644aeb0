//! Transactions arrive whole, exactly once and in commit order, with the server's xid, commit
//! LSN and commit time; rolled-back work never appears; truncates arrive. The oracles are the
//! server itself: a `test_decoding` slot created next to the source's (xids, changes, commit
//! times, order) and `pg_walinspect` (commit record positions).
//!
//! The second test makes the walsender stream in-progress transactions (protocol 2,
//! `logical_decoding_work_mem` of 64 kB for the test database) and checks that subtransactions
//! rolled back after their rows were streamed are left out, row for row.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::time::Duration;

use ordo_kcop::value::Timestamp;
use ordo_kcop::{Change, Op, Value};
use pg_source_support::{Behaviour, PgEnv, Txn, describe, lsn, start, wait_slot};
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(120);

/// A transaction as `test_decoding` describes it.
#[derive(Debug, PartialEq)]
struct Oracle {
    xid: String,
    changes: Vec<String>,
    commit_time: Timestamp,
}

/// `test_decoding`'s view of everything the slot `slot` holds, whole transactions in commit
/// order, changes as `table op id` (like [`describe`]).
async fn test_decoding(c: &Client, slot: &str) -> Vec<Oracle> {
    // The stack runs with synchronous_commit off, and a peek reads only flushed WAL: wait until
    // everything written so far is flushed.
    let written: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    ordo_tests::stack::wait_until("the wal flush", WAIT, || async {
        c.query_one(
            "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn",
            &[&written],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
        .then_some(())
    })
    .await;
    let rows = c
        .query(
            "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'include-timestamp', 'on', 'skip-empty-xacts', '1')",
            &[&slot],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut open: Option<Oracle> = None;
    for r in rows {
        let line: String = r.get(0);
        if let Some(xid) = line.strip_prefix("BEGIN ") {
            open = Some(Oracle {
                xid: xid.to_owned(),
                changes: Vec::new(),
                commit_time: Timestamp(0),
            });
        } else if let Some(rest) = line.strip_prefix("COMMIT ") {
            let mut t = open.take().unwrap();
            let (xid, at) = rest.split_once(" (at ").unwrap();
            assert_eq!(xid, t.xid);
            let at = at.trim_end_matches(')').trim_end_matches("+00");
            t.commit_time = at.parse().unwrap();
            out.push(t);
        } else if let Some(rest) = line.strip_prefix("table ") {
            let (tables, what) = rest.split_once(": ").unwrap();
            let t = open.as_mut().unwrap();
            if what.starts_with("TRUNCATE") {
                for table in tables.split(", ") {
                    let name = table.trim_start_matches("public.");
                    t.changes.push(format!("{name} truncate"));
                }
                continue;
            }
            let (op, tuple) = what.split_once(": ").unwrap();
            let tuple = tuple.split_once("new-tuple: ").map_or(tuple, |(_, n)| n);
            let id = tuple
                .strip_prefix("id[integer]:")
                .and_then(|s| s.split(' ').next())
                .unwrap();
            let op = match op {
                "INSERT" => "insert",
                "UPDATE" => "update",
                "DELETE" => "delete",
                other => panic!("unknown test_decoding op {other}"),
            };
            t.changes.push(format!(
                "{} {op} {id}",
                tables.trim_start_matches("public.")
            ));
        }
    }
    out
}

/// Commit records (xid -> start and end LSN) between `from` and now.
async fn commit_records(c: &Client, from: &str) -> std::collections::HashMap<String, (u64, u64)> {
    c.query(
        "SELECT xid::text, (start_lsn - '0/0')::text, (end_lsn - '0/0')::text FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_flush_lsn()) \
         WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'",
        &[&from],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let (x, s, e): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        (x, (s.parse().unwrap(), e.parse().unwrap()))
    })
    .collect()
}

/// One writer: `n` random transactions on tables a, b and c, ids in its own range, some of
/// them rolled back.
async fn writer(c: Client, k: i32, n: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(k as u64);
    let mut live: Vec<i32> = Vec::new();
    let mut next = k * 1_000_000;
    for _ in 0..n {
        let mut sql = String::from("BEGIN;");
        let mut added = Vec::new();
        let mut gone = Vec::new();
        for _ in 0..rng.random_range(1..=5) {
            let table = ["a", "b", "c"][rng.random_range(0..3)];
            let pick = |rng: &mut rand::rngs::StdRng, live: &[i32]| -> Option<i32> {
                (!live.is_empty()).then(|| live[rng.random_range(0..live.len())])
            };
            match rng.random_range(0..4) {
                0 | 1 => {
                    next += 1;
                    added.push(next);
                    sql.push_str(&format!("INSERT INTO {table} VALUES ({next}, 'v{next}');"));
                }
                2 => {
                    if let Some(id) = pick(&mut rng, &live).filter(|i| !gone.contains(i)) {
                        sql.push_str(&format!("UPDATE {table} SET v = v || '+' WHERE id = {id};"));
                    }
                }
                _ => {
                    if let Some(id) = pick(&mut rng, &live).filter(|i| !gone.contains(i)) {
                        gone.push(id);
                        sql.push_str(&format!("DELETE FROM {table} WHERE id = {id};"));
                    }
                }
            }
        }
        if rng.random_bool(0.1) {
            sql.push_str("ROLLBACK;");
        } else {
            sql.push_str("COMMIT;");
            live.extend(added);
            live.retain(|i| !gone.contains(i));
        }
        c.batch_execute(&sql).await.unwrap();
    }
}

fn changes(t: &Txn) -> Vec<String> {
    t.changes.iter().map(describe).collect()
}

#[tokio::test]
async fn transactions_arrive_in_commit_order_with_server_metadata() {
    let env = PgEnv::new("pgorder").await;
    env.client
        .batch_execute(
            "CREATE EXTENSION pg_walinspect;
             CREATE TABLE a (id int PRIMARY KEY, v text);
             CREATE TABLE b (id int PRIMARY KEY, v text);
             CREATE TABLE c (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(&env).await;
    let oracle_slot = format!("{}_td", env.slot);
    let from: String = env
        .client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&oracle_slot],
        )
        .await
        .unwrap()
        .get(0);

    // Scripted interleaving: commit order differs from begin order.
    let (c1, c2) = (env.connect().await, env.connect().await);
    c1.batch_execute("BEGIN; INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 'x')")
        .await
        .unwrap();
    c2.batch_execute("BEGIN; INSERT INTO c VALUES (1, 'y'); UPDATE c SET id = 2 WHERE id = 1")
        .await
        .unwrap();
    c2.batch_execute("COMMIT").await.unwrap();
    c1.batch_execute("UPDATE a SET v = 'z' WHERE id = 1; COMMIT")
        .await
        .unwrap();
    // Rolled back, and partly rolled back.
    c1.batch_execute("BEGIN; INSERT INTO a VALUES (50, 'gone'); DELETE FROM b; ROLLBACK")
        .await
        .unwrap();
    c1.batch_execute(
        "BEGIN; INSERT INTO a VALUES (60, 'kept'); SAVEPOINT s; INSERT INTO a VALUES (61, 'gone'); \
         ROLLBACK TO s; INSERT INTO b VALUES (62, 'kept'); COMMIT",
    )
    .await
    .unwrap();
    // Truncates, one table and two at once.
    c2.batch_execute("TRUNCATE b; INSERT INTO b VALUES (70, 'after')")
        .await
        .unwrap();
    c2.batch_execute("BEGIN; TRUNCATE a, c; INSERT INTO c VALUES (71, 'after'); COMMIT")
        .await
        .unwrap();
    // Three writers at once.
    let writers: Vec<_> = futures::future::join_all((1..=3).map(|_| env.connect())).await;
    futures::future::join_all(writers.into_iter().zip(1..).map(|(c, k)| writer(c, k, 80))).await;

    let want = test_decoding(&env.client, &oracle_slot).await;
    let records = commit_records(&env.client, &from).await;
    run.wait_streamed(want.len(), WAIT).await;
    run.assert_quiet(Duration::from_secs(1)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    let got: Vec<&Txn> = seen.streamed().collect();
    assert_eq!(got.len(), want.len());
    assert!(
        want.len() > 150,
        "the writers made {} transactions",
        want.len()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.id(), w.xid, "transaction order");
        assert_eq!(changes(g), w.changes, "changes of xid {}", w.xid);
        assert_eq!(
            g.commit.commit_time, w.commit_time,
            "commit time of {}",
            w.xid
        );
        assert_eq!(g.begin.commit_time, w.commit_time);
        let (start_lsn, end_lsn) = records[&w.xid];
        assert_eq!(
            lsn(&g.commit.commit_position),
            start_lsn,
            "commit lsn of {}",
            w.xid
        );
        assert_eq!(g.restart_lsn(), end_lsn, "end lsn of {}", w.xid);
        assert_eq!(g.begin.position.as_ref(), Some(&g.commit.commit_position));
    }
    // The scripted part, spelled out.
    let first: Vec<Vec<String>> = got.iter().take(5).map(|t| changes(t)).collect();
    let scripted: [&[&str]; 5] = [
        &["c insert 1", "c update 2"],
        &["a insert 1", "b insert 1", "a update 1"],
        &["a insert 60", "b insert 62"],
        &["b truncate", "b insert 70"],
        &["a truncate", "c truncate", "c insert 71"],
    ];
    assert_eq!(first, scripted);
    let update = &got[0].changes[1];
    assert_eq!(update.before.as_ref().unwrap()[0], Value::Int(1));
    assert_eq!(update.before.as_ref().unwrap()[1], Value::NotInImage);
    // Commit positions strictly increase.
    assert!(
        got.windows(2)
            .all(|w| w[0].restart_lsn() <= lsn(&w[1].commit.commit_position))
    );
    env.cleanup(&[&oracle_slot]).await;
}

fn ids(changes: &[Change], op: Op) -> Vec<i64> {
    changes
        .iter()
        .filter(|c| c.op == op)
        .map(pg_source_support::row_id)
        .collect()
}

#[tokio::test]
async fn aborted_subtransactions_of_streamed_transactions_are_left_out() {
    let env = PgEnv::new("pgstream").await;
    env.small_decoding_memory().await;
    env.client
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text);
             CREATE TABLE d (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(&env).await;
    let ins = |t: &str, from: i32, to: i32| {
        format!(
            "INSERT INTO {t} SELECT i, repeat('r', 50) || i FROM generate_series({from}, {to}) i;"
        )
    };
    let (big, small) = (env.connect().await, env.connect().await);
    big.batch_execute(&format!("BEGIN; {}", ins("a", 1, 3000)))
        .await
        .unwrap();
    big.batch_execute(&format!(
        "SAVEPOINT s1; {} RELEASE s1;",
        ins("a", 3001, 6000)
    ))
    .await
    .unwrap();
    // A small transaction commits while the big one is being streamed: it comes first.
    small
        .batch_execute("INSERT INTO a VALUES (-1, 'small')")
        .await
        .unwrap();
    big.batch_execute(&format!(
        "SAVEPOINT s2; {} SAVEPOINT s3; {} ROLLBACK TO s2;",
        ins("a", 6001, 9000),
        ins("a", 9001, 12000)
    ))
    .await
    .unwrap();
    big.batch_execute(&format!(
        "SAVEPOINT s4; UPDATE a SET v = 'u' WHERE id <= 100; DELETE FROM a WHERE id BETWEEN 101 AND 200; {} ROLLBACK TO s4;",
        ins("a", 20001, 23000)
    ))
    .await
    .unwrap();
    // Table d's first change in this session is inside the stream; later plain transactions
    // on d rely on the Relation message sent there.
    big.batch_execute(&format!(
        "SAVEPOINT s5; {} {} UPDATE a SET v = 'top' WHERE id BETWEEN 201 AND 300; COMMIT;",
        ins("a", 12001, 15000),
        ins("d", 1, 2000)
    ))
    .await
    .unwrap();
    small
        .batch_execute("INSERT INTO d VALUES (-1, 'after'); UPDATE d SET v = 'x' WHERE id = 1")
        .await
        .unwrap();
    // A streamed transaction that rolls back entirely.
    big.batch_execute(&format!("BEGIN; {} ROLLBACK;", ins("a", 30001, 36000)))
        .await
        .unwrap();
    small
        .batch_execute("INSERT INTO a VALUES (-2, 'last')")
        .await
        .unwrap();

    run.wait_streamed(4, WAIT).await;
    run.assert_quiet(Duration::from_secs(1)).await;
    let streamed: i64 = env
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
    assert!(streamed >= 2, "the server streamed {streamed} transactions");
    let got: Vec<&Txn> = seen.streamed().collect();
    assert_eq!(
        got.len(),
        4,
        "{:?}",
        got.iter().map(|t| t.id()).collect::<Vec<_>>()
    );
    assert_eq!(changes(got[0]), ["a insert -1"]);
    let big = &got[1].changes;
    let range = |a: i64, b: i64| (a..=b).collect::<Vec<_>>();
    let inserted_a: Vec<i64> = big
        .iter()
        .filter(|c| c.op == Op::Insert && c.table.id.name == "a")
        .map(pg_source_support::row_id)
        .collect();
    let want: Vec<i64> = [range(1, 6000), range(12001, 15000)].concat();
    assert_eq!(inserted_a, want);
    assert_eq!(ids(big, Op::Update), range(201, 300));
    assert!(ids(big, Op::Delete).is_empty());
    let inserted_d = big
        .iter()
        .filter(|c| c.table.id.name == "d")
        .map(pg_source_support::row_id)
        .collect::<Vec<_>>();
    assert_eq!(inserted_d, range(1, 2000));
    assert_eq!(big.len(), 6000 + 3000 + 2000 + 100);
    assert_eq!(changes(got[2]), ["d insert -1", "d update 1"]);
    assert_eq!(
        got[2].changes[1].after.as_ref().unwrap()[1],
        Value::Text("x".into())
    );
    assert_eq!(changes(got[3]), ["a insert -2"]);
    // Nothing is left in the spill directory.
    let spill = pg_source_support::spill_dir(&env);
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().flatten().collect();
    assert!(left.is_empty(), "spill files left: {left:?}");
    env.cleanup(&[]).await;
}
