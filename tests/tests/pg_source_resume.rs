//! Stopping and restarting the source loses nothing and repeats nothing: a restart resumes
//! at the restart position of the last commit the (fake) publisher reported durable, after a
//! graceful shutdown and after a crash of the pipeline with acknowledgements lagging behind.
//! And schema changes mid-stream (ADD COLUMN, DROP COLUMN, ALTER TYPE, also inside a streamed
//! transaction) give new schema versions whose rows follow them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::time::{Duration, Instant};

use ordo_kcop::{Lsn, Op, Position, Value};
use pg_source_support::{Behaviour, PgEnv, SourceRun, Txn, start, wait_slot};

const WAIT: Duration = Duration::from_secs(120);
const TXNS: i32 = 300;

/// Transaction `s` inserts three rows (`seq` = s); every fourth also updates the rows of the
/// one before.
async fn writer(c: tokio_postgres::Client) {
    for s in 1..=TXNS {
        let mut sql = format!(
            "BEGIN; INSERT INTO r SELECT {s} * 10 + k, {s}, k FROM generate_series(0, 2) k;"
        );
        if s % 4 == 0 {
            sql.push_str(&format!("UPDATE r SET k = k + 100 WHERE seq = {};", s - 1));
        }
        sql.push_str("COMMIT;");
        c.batch_execute(&sql).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The writer's sequence number of a transaction.
fn seq(t: &Txn) -> i64 {
    match t.changes[0].after.as_ref().unwrap()[1] {
        Value::Int(s) => s,
        ref other => panic!("seq is {other:?}"),
    }
}

fn check_txn(t: &Txn) {
    let s = seq(t);
    let want = if s % 4 == 0 { 6 } else { 3 };
    assert_eq!(t.count, want, "changes of writer transaction {s}");
}

/// Every writer transaction exactly once, in order.
fn assert_exactly_once(delivered: &[&Txn]) {
    let seqs: Vec<i64> = delivered.iter().map(|t| seq(t)).collect();
    let want: Vec<i64> = (1..=i64::from(TXNS)).collect();
    if seqs != want {
        let mut dup = seqs.clone();
        dup.sort_unstable();
        dup.dedup();
        panic!(
            "{} transactions delivered, {} distinct, want {}; first differences: {:?}",
            seqs.len(),
            dup.len(),
            TXNS,
            seqs.iter()
                .zip(&want)
                .filter(|(a, b)| a != b)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    delivered.iter().for_each(|t| check_txn(t));
}

async fn setup(prefix: &str) -> PgEnv {
    let env = PgEnv::new(prefix).await;
    env.client
        .batch_execute("CREATE TABLE r (id int PRIMARY KEY, seq int NOT NULL, k int)")
        .await
        .unwrap();
    env
}

async fn finish(mut run: SourceRun) -> Vec<Txn> {
    run.wait_for("the last writer transaction", WAIT, |s| {
        s.streamed().any(|t| seq(t) == i64::from(TXNS))
    })
    .await;
    run.assert_quiet(Duration::from_millis(500)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    seen.txns
}

#[tokio::test]
async fn graceful_restart_resumes_exactly() {
    let env = setup("pgresume").await;
    let cfg = env.config("snapshot: never");
    let mut run = start(&cfg, None, Behaviour::default());
    wait_slot(&env).await;
    let w = tokio::spawn(writer(env.connect().await));
    run.wait_for("50 transactions", WAIT, |s| s.streamed().count() >= 50)
        .await;
    let (res, first) = run.stop().await;
    res.unwrap();
    let durable = first.durable.unwrap();
    let last = first.txns.last().unwrap();
    assert_eq!(durable, last.restart_lsn(), "the last commit is durable");
    println!(
        "stopped after {} transactions ({} rolled back), resuming at {}",
        first.txns.len(),
        first.rollbacks,
        Lsn(durable)
    );

    let resume = Some(Position::Postgres(Lsn(durable)));
    let run = start(&cfg, resume, Behaviour::default());
    let second = finish(run).await;
    w.await.unwrap();
    assert!(
        second.iter().all(|t| t.restart_lsn() > durable),
        "a transaction at or before the resume position was handed on again"
    );
    let delivered: Vec<&Txn> = first.txns.iter().chain(&second).collect();
    assert_exactly_once(&delivered);
    env.cleanup(&[]).await;
}

#[tokio::test]
async fn restart_after_a_crash_with_lagging_acks_redelivers_only_the_unacknowledged() {
    let env = setup("pgcrash").await;
    let cfg = env.config("snapshot: never");
    let lazy = Behaviour {
        keep_changes: true,
        ack: false,
    };
    let mut run = start(&cfg, None, lazy);
    wait_slot(&env).await;
    let w = tokio::spawn(writer(env.connect().await));
    // The publisher makes every third transaction durable, late.
    let (mut acked, mut checked) = (None, 0);
    let started = Instant::now();
    while run.seen.txns.len() < 60 {
        assert!(started.elapsed() < WAIT, "timed out");
        run.pump(Duration::from_millis(100)).await;
        while checked < run.seen.txns.len() {
            if checked % 3 == 2 && checked < 55 {
                let p = run.seen.txns[checked].commit.restart_position.clone();
                run.ack_now(&p);
                acked = Some(checked);
            }
            checked += 1;
        }
    }
    let (_, first) = run.crash().await;
    let acked = acked.unwrap();
    let durable = first.txns[acked].restart_lsn();
    assert_eq!(first.durable, Some(durable));
    println!(
        "crashed after {} transactions, {} durable; resuming at {}",
        first.txns.len(),
        acked + 1,
        Lsn(durable)
    );

    let run = start(
        &cfg,
        Some(Position::Postgres(Lsn(durable))),
        Behaviour::default(),
    );
    let second = finish(run).await;
    w.await.unwrap();
    // What the first run handed on but was never made durable comes again.
    assert_eq!(seq(&second[0]), seq(&first.txns[acked + 1]));
    let delivered: Vec<&Txn> = first.txns[..=acked].iter().chain(&second).collect();
    assert_exactly_once(&delivered);
    env.cleanup(&[]).await;
}

fn names(t: &Txn) -> Vec<&str> {
    t.changes[0]
        .table
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test]
async fn schema_changes_give_new_versions_with_matching_rows() {
    let env = PgEnv::new("pgddl").await;
    env.small_decoding_memory().await;
    env.client
        .batch_execute("CREATE TABLE s (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let cfg = env.config("snapshot: never");
    let mut run = start(&cfg, None, Behaviour::default());
    wait_slot(&env).await;
    for sql in [
        "INSERT INTO s VALUES (1, 'a')",
        "ALTER TABLE s ADD COLUMN extra int DEFAULT 7; INSERT INTO s VALUES (2, 'b', 8)",
        "UPDATE s SET v = 'a2' WHERE id = 1",
        "ALTER TABLE s DROP COLUMN v; INSERT INTO s VALUES (3, 9)",
        "ALTER TABLE s ALTER COLUMN extra TYPE numeric(10,2); INSERT INTO s VALUES (4, 1.5)",
        // DDL inside a transaction large enough to be streamed.
        "BEGIN; INSERT INTO s SELECT i, i FROM generate_series(100, 3099) i; \
         ALTER TABLE s ADD COLUMN z text DEFAULT 'zz'; \
         INSERT INTO s SELECT i, i, 'new' FROM generate_series(5000, 7999) i; COMMIT",
        "INSERT INTO s VALUES (5, 5, 'after')",
    ] {
        env.client.batch_execute(sql).await.unwrap();
    }
    run.wait_streamed(7, WAIT).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    let t: Vec<&Txn> = seen.streamed().collect();
    let version = |t: &Txn| t.changes[0].table.version;
    let dec = |s: &str| Value::Decimal(s.parse().unwrap());
    let after = |t: &Txn, i: usize| t.changes[i].after.clone().unwrap();

    assert_eq!((version(t[0]), names(t[0])), (1, vec!["id", "v"]));
    assert_eq!(after(t[0], 0), [Value::Int(1), Value::Text("a".into())]);
    assert_eq!((version(t[1]), names(t[1])), (2, vec!["id", "v", "extra"]));
    assert_eq!(
        after(t[1], 0),
        [Value::Int(2), Value::Text("b".into()), Value::Int(8)]
    );
    // An old row updated after ADD COLUMN carries the default.
    assert_eq!(version(t[2]), 2);
    assert_eq!(
        after(t[2], 0),
        [Value::Int(1), Value::Text("a2".into()), Value::Int(7)]
    );
    assert_eq!((version(t[3]), names(t[3])), (3, vec!["id", "extra"]));
    assert_eq!(after(t[3], 0), [Value::Int(3), Value::Int(9)]);
    assert_eq!(version(t[4]), 4);
    assert_eq!(t[4].changes[0].table.columns[1].type_name, "numeric(10,2)");
    assert_eq!(after(t[4], 0), [Value::Int(4), dec("1.50")]);

    // The streamed transaction switches schema in the middle.
    let big = &t[5].changes;
    assert_eq!(big.len(), 6000);
    assert!(big.iter().all(|c| c.op == Op::Insert));
    assert!(big[..3000].iter().all(|c| c.table.version == 4));
    assert!(big[3000..].iter().all(|c| c.table.version == 5));
    assert_eq!(
        big[2999].after.clone().unwrap(),
        [Value::Int(3099), dec("3099.00")]
    );
    assert_eq!(
        big[3000].after.clone().unwrap(),
        [Value::Int(5000), dec("5000.00"), Value::Text("new".into())]
    );
    // And the transaction after it uses the schema the stream introduced.
    assert_eq!((version(t[6]), names(t[6])), (5, vec!["id", "extra", "z"]));
    assert_eq!(
        after(t[6], 0),
        [Value::Int(5), dec("5.00"), Value::Text("after".into())]
    );
    env.cleanup(&[]).await;
}

/// Terminate the source's walsender (the server ends the session with 57P01).
async fn kill_walsender(env: &PgEnv) {
    let killed = env
        .client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'ordo/' || $1",
            &[&env.slot],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one walsender to kill");
}

#[tokio::test]
async fn a_killed_walsender_is_survived_without_loss_or_duplicates() {
    let env = setup("pgkill").await;
    env.small_decoding_memory().await;
    env.client
        .batch_execute("CREATE TABLE r2 (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(&env).await;
    let w = tokio::spawn(writer(env.connect().await));
    // A big transaction is being streamed (and spilled) when the connection dies.
    let big = env.connect().await;
    big.batch_execute(
        "BEGIN; INSERT INTO r2 SELECT i, md5(i::text) FROM generate_series(1, 20000) i",
    )
    .await
    .unwrap();
    run.wait_for("30 transactions", WAIT, |s| s.streamed().count() >= 30)
        .await;
    kill_walsender(&env).await;
    big.batch_execute(
        "INSERT INTO r2 SELECT i, 'late' FROM generate_series(20001, 25000) i; COMMIT",
    )
    .await
    .unwrap();
    run.wait_for("100 transactions", WAIT, |s| s.streamed().count() >= 100)
        .await;
    wait_slot(&env).await;
    kill_walsender(&env).await;
    run.wait_for("the last writer transaction", WAIT, |s| {
        s.streamed()
            .any(|t| t.changes[0].table.id.name == "r" && seq(t) == i64::from(TXNS))
    })
    .await;
    w.await.unwrap();
    run.assert_quiet(Duration::from_millis(500)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    println!(
        "{} transactions, {} rollbacks after lost connections",
        seen.txns.len(),
        seen.rollbacks
    );
    let (bigs, small): (Vec<&Txn>, Vec<&Txn>) = seen
        .streamed()
        .partition(|t| t.changes[0].table.id.name == "r2");
    assert_exactly_once(&small);
    assert_eq!(bigs.len(), 1, "the big transaction arrives once");
    assert_eq!(bigs[0].count, 25_000);
    env.cleanup(&[]).await;
}

#[tokio::test]
async fn a_lost_sql_connection_is_opened_again() {
    let env = setup("pgsqlkill").await;
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(&env).await;
    let w = tokio::spawn(writer(env.connect().await));
    run.wait_for("30 transactions", WAIT, |s| s.streamed().count() >= 30)
        .await;
    // The source's SQL connection goes; the next session's Relation messages need it.
    let killed = env
        .client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ordo'",
            &[&env.db],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one sql connection to kill");
    kill_walsender(&env).await;
    run.wait_for("the last writer transaction", WAIT, |s| {
        s.streamed().any(|t| seq(t) == i64::from(TXNS))
    })
    .await;
    w.await.unwrap();
    let (res, seen) = run.stop().await;
    res.unwrap();
    let delivered: Vec<&Txn> = seen.streamed().collect();
    assert_exactly_once(&delivered);
    env.cleanup(&[]).await;
}
