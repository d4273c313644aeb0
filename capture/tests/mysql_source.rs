//! The MariaDB source against the stack's real MariaDB: transactions, DDL, XA, domains,
//! snapshot, resume, reconnect and prerequisite checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mysql_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_support::{DEADLINE, Txn, admin, config, database, exec, start};
use ordo_config::Snapshot;
use ordo_kcop::{Change, GtidSet, Op, Position, Value};

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::UInt(u) => *u as i64,
        other => panic!("not an integer: {other:?}"),
    }
}

fn row_of(c: &Change) -> &Vec<Value> {
    c.after.as_ref().or(c.before.as_ref()).unwrap()
}

fn gtid_set(p: &Position) -> &GtidSet {
    match p {
        Position::MySql { gtids, .. } => gtids,
        other => panic!("not a mysql position: {other}"),
    }
}

#[tokio::test]
async fn transactions_ddl_xa_and_domains_arrive_in_commit_order() {
    let db = database("ordo_mix").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20), n INT) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE b (id BIGINT PRIMARY KEY, t TEXT) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE other (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE aria (x INT) ENGINE=Aria")
        .await
        .unwrap();
    let unmapped = database("ordo_unmapped").await;
    c.query_drop(format!("CREATE TABLE `{unmapped}`.u (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let mut src = start(config("ordo", "ordo", Snapshot::Never, vec![]), &db, None);
    // Let the source take its start position before writing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut want = Vec::new();
    want.push(
        exec(
            &mut c,
            &[
                "BEGIN",
                "INSERT INTO a VALUES (1, 'x', 1)",
                "INSERT INTO b VALUES (1, 't1')",
                "UPDATE a SET n = 2 WHERE id = 1",
                "COMMIT",
            ],
        )
        .await,
    );
    exec(
        &mut c,
        &[
            "BEGIN",
            "INSERT INTO a VALUES (2, 'rolled back', 2)",
            "ROLLBACK",
        ],
    )
    .await;
    want.push(exec(&mut c, &["INSERT INTO other VALUES (1)"]).await);
    // A table of another database is not mapped: its transaction is not handed on.
    exec(&mut c, &[&format!("INSERT INTO `{unmapped}`.u VALUES (1)")]).await;
    want.push(
        exec(
            &mut c,
            &[
                "BEGIN",
                "DELETE FROM b WHERE id = 1",
                "INSERT INTO b VALUES (2, 't2')",
                "COMMIT",
            ],
        )
        .await,
    );
    exec(&mut c, &["ALTER TABLE a ADD COLUMN extra INT DEFAULT 7"]).await;
    want.push(exec(&mut c, &["INSERT INTO a (id, v, n) VALUES (3, 'z', 3)"]).await);
    exec(&mut c, &["ALTER TABLE a DROP COLUMN v"]).await;
    want.push(exec(&mut c, &["INSERT INTO a VALUES (4, 4, 40)"]).await);
    exec(&mut c, &["ALTER TABLE a MODIFY n BIGINT UNSIGNED"]).await;
    want.push(
        exec(
            &mut c,
            &["UPDATE a SET n = 18446744073709551615 WHERE id = 4"],
        )
        .await,
    );
    want.push(
        exec(
            &mut c,
            &[
                "XA START 'ordo1'",
                "INSERT INTO b VALUES (3, 'xa')",
                "XA END 'ordo1'",
                "XA PREPARE 'ordo1'",
            ],
        )
        .await,
    );
    exec(&mut c, &["XA COMMIT 'ordo1'"]).await;
    want.push(
        exec(
            &mut c,
            &[
                "XA START 'ordo2'",
                "INSERT INTO b VALUES (4, 'one phase')",
                "XA END 'ordo2'",
                "XA COMMIT 'ordo2' ONE PHASE",
            ],
        )
        .await,
    );
    want.push(
        exec(
            &mut c,
            &[
                "SET SESSION gtid_domain_id = 7",
                "INSERT INTO b VALUES (7, 'domain 7')",
            ],
        )
        .await,
    );
    // A non-transactional engine ends its group with QUERY COMMIT; no primary key.
    want.push(exec(&mut c, &["INSERT INTO aria VALUES (5), (6)"]).await);
    c.query_drop("SET SESSION gtid_domain_id = 0")
        .await
        .unwrap();
    let last = want.last().unwrap().clone();

    let txns = src
        .events
        .txns_until("up to the domain 7 insert", |t| *t.commit.id == *last)
        .await;
    let ids: Vec<&str> = txns.iter().map(|t| &*t.commit.id).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());

    // Commit order, GTID ids and positions.
    let mut prev_pos = 0;
    for t in &txns {
        assert_eq!(t.commit.commit_position, t.commit.restart_position);
        let gtid: ordo_kcop::Gtid = t.commit.id.parse().unwrap();
        let set = gtid_set(&t.commit.commit_position);
        assert!(set.contains(&gtid), "{set} contains {gtid}");
        assert!(t.commit.commit_time.0 > 0);
        if let Position::MySql { coord, .. } = &t.commit.commit_position {
            assert!(
                coord.pos > prev_pos || !coord.file.is_empty(),
                "positions move forward"
            );
            prev_pos = coord.pos;
        }
    }
    // The last position knows both domains.
    let set = gtid_set(&txns.last().unwrap().commit.restart_position).to_string();
    assert!(set.contains("0-1-") && set.contains("7-1-"), "{set}");

    // First transaction: insert a, insert b, update a with before and after images.
    let t0 = &txns[0];
    let ops: Vec<(Op, &str)> = t0
        .changes
        .iter()
        .map(|c| (c.op, c.table.id.name.as_str()))
        .collect();
    assert_eq!(
        ops,
        [(Op::Insert, "a"), (Op::Insert, "b"), (Op::Update, "a")]
    );
    assert_eq!(
        t0.changes[0].after.as_ref().unwrap(),
        &vec![Value::Int(1), Value::Text("x".into()), Value::Int(1)]
    );
    assert_eq!(int(&t0.changes[2].before.as_ref().unwrap()[2]), 1);
    assert_eq!(int(&t0.changes[2].after.as_ref().unwrap()[2]), 2);
    assert_eq!(t0.changes[0].table.key, vec![0]);
    let v1 = t0.changes[0].table.version;

    // The rolled-back insert never appears.
    for t in &txns {
        for ch in &t.changes {
            assert_ne!(row_of(ch).get(1), Some(&Value::Text("rolled back".into())));
        }
    }
    assert_eq!(txns[1].changes[0].table.id.name, "other");
    assert_eq!(
        txns[2].changes.iter().map(|c| c.op).collect::<Vec<_>>(),
        [Op::Delete, Op::Insert]
    );

    // DDL: new versions with the new shapes.
    let add = &txns[3].changes[0];
    assert_eq!(add.table.version, v1 + 1);
    assert_eq!(
        add.table
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "v", "n", "extra"]
    );
    assert_eq!(add.after.as_ref().unwrap()[3], Value::Int(7));
    let drop = &txns[4].changes[0];
    assert_eq!(drop.table.version, v1 + 2);
    assert_eq!(
        drop.after.as_ref().unwrap(),
        &vec![Value::Int(4), Value::Int(4), Value::Int(40)]
    );
    let modify = &txns[5].changes[0];
    assert_eq!(modify.table.version, v1 + 3);
    assert_eq!(modify.table.columns[1].type_name, "bigint(20) unsigned");
    assert_eq!(modify.after.as_ref().unwrap()[1], Value::UInt(u64::MAX));
    assert_eq!(modify.before.as_ref().unwrap()[1], Value::UInt(4));

    // XA: the prepared half carries the rows.
    assert_eq!(
        txns[6].changes[0].after.as_ref().unwrap()[1],
        Value::Text("xa".into())
    );
    assert_eq!(
        txns[7].changes[0].after.as_ref().unwrap()[1],
        Value::Text("one phase".into())
    );
    // Domain 7.
    assert!(txns[8].commit.id.starts_with("7-"));
    let aria = &txns[9];
    assert_eq!(aria.changes.len(), 2);
    assert!(aria.changes[0].table.key.is_empty());
    assert_eq!(
        aria.changes[1].after.as_ref().unwrap(),
        &vec![Value::Int(6)]
    );

    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

/// Reads `(id, n)` rows from snapshot and streamed changes into a map.
fn apply(state: &mut BTreeMap<i64, i64>, t: &Txn) {
    for c in t.changes.iter().filter(|c| c.table.id.name == "t") {
        match c.op {
            Op::Read | Op::Insert | Op::Update => {
                let r = c.after.as_ref().unwrap();
                if let Some(b) = &c.before {
                    state.remove(&int(&b[0]));
                }
                state.insert(int(&r[0]), int(&r[1]));
            }
            Op::Delete => {
                state.remove(&int(&c.before.as_ref().unwrap()[0]));
            }
            Op::Truncate => state.clear(),
        }
    }
}

async fn writer(db: String, rounds: usize) {
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    for i in 0..rounds {
        let id = 100_000 + i as i64;
        c.query_drop(format!(
            "BEGIN; INSERT INTO t VALUES ({id}, {i}); UPDATE t SET n = n + 1 WHERE id = {}; DELETE FROM t WHERE id = {}; COMMIT",
            (i * 7) % 20000,
            (i * 13 + 1) % 20000
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn snapshot_plus_stream_equals_the_final_table() {
    let db = database("ordo_snap").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE done (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, seq FROM seq_0_to_19999")
        .await
        .unwrap();
    let mut cfg = config("ordo", "ordo", Snapshot::Initial, vec![db.clone()]);
    cfg.snapshot_chunk_rows = 500;
    let mut src = start(cfg, &db, None);
    let write = tokio::spawn(writer(db.clone(), 1000));
    write.await.unwrap();
    let marker = exec(&mut c, &["INSERT INTO done VALUES (1)"]).await;

    let txns = src
        .events
        .txns_until("up to the marker", |t| *t.commit.id == *marker)
        .await;
    let snapshot: Vec<&Txn> = txns
        .iter()
        .filter(|t| t.commit.id.starts_with("snapshot:"))
        .collect();
    assert!(snapshot.len() >= 40, "20000 rows in chunks of 500");
    assert!(
        snapshot
            .iter()
            .all(|t| t.changes.len() <= 500 && t.changes.iter().all(|c| c.op == Op::Read))
    );
    assert_eq!(&*snapshot[0].commit.id, format!("snapshot:{db}.t:0"));
    // Primary-key order within the table.
    let ids: Vec<i64> = snapshot
        .iter()
        .flat_map(|t| t.changes.iter().map(|c| int(&row_of(c)[0])))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Only the last chunk may be resumed from without repeating the snapshot.
    let last_snap = snapshot.last().unwrap();
    for t in &snapshot[..snapshot.len() - 1] {
        assert!(t.commit.restart_position.to_string().contains("(snapshot)"));
    }
    assert!(
        !last_snap
            .commit
            .restart_position
            .to_string()
            .contains("(snapshot)")
    );

    let streamed = txns
        .iter()
        .filter(|t| !t.commit.id.starts_with("snapshot:"))
        .count();
    assert!(streamed > 1, "writes went on during the snapshot");
    let mut state = BTreeMap::new();
    for t in &txns {
        apply(&mut state, t);
    }
    let rows: Vec<(i64, i64)> = c.query("SELECT id, n FROM t ORDER BY id").await.unwrap();
    let want: BTreeMap<i64, i64> = rows.into_iter().collect();
    assert_eq!(state.len(), want.len());
    assert!(state == want, "snapshot + stream differs from the table");

    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn restart_from_the_last_commit_misses_nothing_and_repeats_nothing() {
    let db = database("ordo_resume").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    let cfg = config("ordo", "ordo", Snapshot::Never, vec![]);
    let mut src = start(cfg.clone(), &db, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = Vec::new();
    for i in 0..60 {
        all.push(
            exec(
                &mut c,
                &[
                    "BEGIN",
                    &format!("INSERT INTO t VALUES ({i}, {i})"),
                    &format!("UPDATE t SET v = v + 1 WHERE id = {i}"),
                    "COMMIT",
                ],
            )
            .await,
        );
    }
    // Read part of the stream, then stop.
    let mut seen = src
        .events
        .txns_until("20 transactions", {
            let mut n = 0;
            move |_| {
                n += 1;
                n == 20
            }
        })
        .await;
    src.shutdown.cancel();
    while let Some(t) = src.events.txn(Instant::now() + DEADLINE).await {
        seen.push(t);
    }
    src.task.await.unwrap().unwrap();
    let resume = seen.last().unwrap().commit.restart_position.clone();
    for i in 60..100 {
        all.push(
            exec(
                &mut c,
                &[
                    "BEGIN",
                    &format!("INSERT INTO t VALUES ({i}, {i})"),
                    "COMMIT",
                ],
            )
            .await,
        );
    }
    let mut src = start(cfg, &db, Some(resume));
    let last = all.last().unwrap().clone();
    seen.extend(
        src.events
            .txns_until("the rest", |t| *t.commit.id == *last)
            .await,
    );
    let ids: Vec<String> = seen.iter().map(|t| t.commit.id.to_string()).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no transaction twice"
    );
    assert_eq!(ids, all, "every transaction once, in order");
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_killed_connection_is_resumed_without_gaps() {
    let db = database("ordo_kill").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    let dump_threads =
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'";
    let before: Vec<u64> = c.query(dump_threads).await.unwrap();
    let mut src = start(config("ordo", "ordo", Snapshot::Never, vec![]), &db, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(exec(&mut c, &[&format!("INSERT INTO t VALUES ({i})")]).await);
    }
    let first = src
        .events
        .txns_until("the first ten", |t| *t.commit.id == *all[9])
        .await;
    // Kill the dump thread of this replica (those that started with it).
    let now: Vec<u64> = c.query(dump_threads).await.unwrap();
    let ours: Vec<&u64> = now.iter().filter(|id| !before.contains(id)).collect();
    assert!(!ours.is_empty(), "the source's dump thread is running");
    for id in ours {
        let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    for i in 10..20 {
        all.push(exec(&mut c, &[&format!("INSERT INTO t VALUES ({i})")]).await);
    }
    let last = all.last().unwrap().clone();
    let rest = src
        .events
        .txns_until("the rest after the kill", |t| *t.commit.id == *last)
        .await;
    let ids: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|t| t.commit.id.to_string())
        .collect();
    assert_eq!(ids, all);
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_connection_lost_inside_a_transaction_sends_it_again_whole() {
    let db = database("ordo_midtxn").await;
    let mut c = admin().await;
    c.query_drop(format!("USE `{db}`")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(100)) ENGINE=InnoDB")
        .await
        .unwrap();
    let dump_threads =
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'";
    let before: Vec<u64> = c.query(dump_threads).await.unwrap();
    let mut src = start(config("ordo", "ordo", Snapshot::Never, vec![]), &db, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let big = exec(
        &mut c,
        &["INSERT INTO t SELECT seq, REPEAT('p', 100) FROM seq_1_to_100000"],
    )
    .await;
    // Take the transaction's start, then cut the connection while the source waits for the
    // pipeline in the middle of it.
    let until = Instant::now() + DEADLINE;
    let mut got = 0;
    while got < 1000 {
        if let Some(ordo_kcop::SourceEvent::Change(_)) = src.events.event(until).await {
            got += 1;
        }
    }
    let now: Vec<u64> = c.query(dump_threads).await.unwrap();
    for id in now.iter().filter(|id| !before.contains(id)) {
        let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    let after = exec(&mut c, &["INSERT INTO t VALUES (0, 'after')"]).await;
    let mut rollbacks = 0;
    let whole = loop {
        match src
            .events
            .event(until)
            .await
            .expect("events until the next transaction")
        {
            ordo_kcop::SourceEvent::Rollback => rollbacks += 1,
            ordo_kcop::SourceEvent::Begin(b) => {
                let mut n = 0u64;
                loop {
                    match src.events.event(until).await.expect("the rest") {
                        ordo_kcop::SourceEvent::Change(ch) => {
                            assert_eq!(ch.op_index, n);
                            n += 1;
                        }
                        ordo_kcop::SourceEvent::Commit(cm) => {
                            assert_eq!(cm.change_count, n);
                            break;
                        }
                        ordo_kcop::SourceEvent::Rollback => {
                            rollbacks += 1;
                            n = u64::MAX;
                            break;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                if n != u64::MAX {
                    break Some((b.id.to_string(), n));
                }
            }
            _ => {}
        }
    };
    // Each reconnect that lands inside the transaction discards the half-sent part once.
    assert!(
        rollbacks >= 1,
        "the half-sent transaction was discarded ({rollbacks} rollbacks)"
    );
    assert_eq!(whole, Some((big, 100_000)), "then sent again whole");
    let next = src.events.txn(until).await.unwrap();
    assert_eq!(*next.commit.id, *after);
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn unmapped_transactions_only_report_progress() {
    let db = database("ordo_idle").await;
    let unmapped = database("ordo_idle_other").await;
    let mut c = admin().await;
    c.query_drop(format!("CREATE TABLE `{unmapped}`.u (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let mut src = start(config("ordo", "ordo", Snapshot::Never, vec![]), &db, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last = String::new();
    for i in 0..50 {
        last = exec(
            &mut c,
            &[&format!("INSERT INTO `{unmapped}`.u VALUES ({i})")],
        )
        .await;
    }
    let gtid: ordo_kcop::Gtid = last.parse().unwrap();
    let until = Instant::now() + DEADLINE;
    let mut progress = 0;
    loop {
        match src
            .events
            .event(until)
            .await
            .expect("a progress report covering the writes")
        {
            ordo_kcop::SourceEvent::Progress(p) => {
                progress += 1;
                if gtid_set(&p).contains(&gtid) {
                    break;
                }
            }
            other => panic!("only progress expected, got {other:?}"),
        }
    }
    assert!(
        progress <= 5,
        "progress is rate limited ({progress} reports for 50 transactions)"
    );
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn check_names_the_missing_replication_privilege() {
    let db = database("ordo_check").await;
    let mut c = admin().await;
    c.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let tables = [ordo_kcop::TableId::new(db.clone(), "t")];
    let ok =
        ordo_capture::mysql::check(&config("ordo", "ordo", Snapshot::Never, vec![]), &tables).await;
    assert!(ok.is_empty(), "{ok:?}");
    let problems = ordo_capture::mysql::check(
        &config("ordo_norepl", "ordo_norepl", Snapshot::Never, vec![]),
        &tables,
    )
    .await;
    let repl = problems
        .iter()
        .find(|p| p.what.contains("REPLICATION SLAVE"))
        .unwrap_or_else(|| panic!("no REPLICATION SLAVE problem in {problems:?}"));
    assert!(
        repl.fix
            .starts_with("GRANT REPLICATION SLAVE ON *.* TO 'ordo_norepl'@"),
        "{}",
        repl.fix
    );
    assert!(repl.to_string().contains("missing"), "{repl}");
    let bad = ordo_capture::mysql::check(
        &config("ordo", "wrong password", Snapshot::Never, vec![]),
        &tables,
    )
    .await;
    assert_eq!(bad.len(), 1);
    assert!(bad[0].what.contains("connection"), "{bad:?}");
}
