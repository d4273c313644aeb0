//! The two "no value" markers: an unchanged TOAST value is `Value::Unchanged` (never its old
//! value, never NULL), and a column left out of a key-only old image is `Value::NotInImage`
//! (never NULL). `REPLICA IDENTITY FULL` gives whole old rows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::time::Duration;

use ordo_kcop::{Change, Op, Value};
use pg_source_support::{Behaviour, PgEnv, start, wait_slot};

const WAIT: Duration = Duration::from_secs(60);

/// A value over 2 kB that does not compress: 200 md5 digests, about 6.4 kB.
const BIG: &str = "(SELECT string_agg(md5(i::text || $1), '') FROM generate_series(1, 200) i)";

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

async fn big(c: &tokio_postgres::Client, seed: &str) -> String {
    let sql = format!("SELECT {BIG}");
    c.query_one(&sql, &[&seed]).await.unwrap().get(0)
}

async fn changes_of(env: &PgEnv, sql: &[(&str, &str)], n: usize) -> Vec<Change> {
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(env).await;
    for (stmt, seed) in sql {
        if stmt.contains("$1") {
            env.client.execute(*stmt, &[seed]).await.unwrap();
        } else {
            env.client.batch_execute(stmt).await.unwrap();
        }
    }
    run.wait_for(&format!("{n} changes"), WAIT, |s| {
        s.streamed_changes().count() >= n
    })
    .await;
    run.assert_quiet(Duration::from_millis(500)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    seen.streamed_changes().cloned().collect()
}

#[tokio::test]
async fn unchanged_toast_and_key_only_images_are_markers() {
    let env = PgEnv::new("pgmark").await;
    env.client
        .batch_execute(
            "CREATE TABLE doc (id int PRIMARY KEY, title text, body text, note text);
             ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;",
        )
        .await
        .unwrap();
    let ins = format!("INSERT INTO doc VALUES (1, 'a', {BIG}, NULL)");
    let upd_body = format!("UPDATE doc SET body = {BIG} WHERE id = 2");
    let changes = changes_of(
        &env,
        &[
            (&ins, "first"),
            ("UPDATE doc SET title = 'b' WHERE id = 1", ""),
            ("UPDATE doc SET id = 2, note = 'n' WHERE id = 1", ""),
            (&upd_body, "second"),
            ("DELETE FROM doc WHERE id = 2", ""),
        ],
        5,
    )
    .await;
    let (first, second) = (
        big(&env.client, "first").await,
        big(&env.client, "second").await,
    );
    assert!(first.len() > 6000);
    let ops: Vec<Op> = changes.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [Op::Insert, Op::Update, Op::Update, Op::Update, Op::Delete]
    );
    // The insert carries the whole value.
    assert_eq!(
        changes[0].after,
        Some(vec![int(1), text("a"), text(&first), Value::Null])
    );
    // An update that leaves the big column alone: no old image (default identity, same key),
    // the big column is Unchanged, the NULL column stays NULL.
    assert_eq!(changes[1].before, None);
    assert_eq!(
        changes[1].after,
        Some(vec![int(1), text("b"), Value::Unchanged, Value::Null])
    );
    // A key change: the old image has only the key; the others are not in it (not NULL).
    assert_eq!(
        changes[2].before,
        Some(vec![
            int(1),
            Value::NotInImage,
            Value::NotInImage,
            Value::NotInImage
        ])
    );
    assert_eq!(
        changes[2].after,
        Some(vec![int(2), text("b"), Value::Unchanged, text("n")])
    );
    // Updating the big column sends it whole.
    assert_eq!(
        changes[3].after,
        Some(vec![int(2), text("b"), text(&second), text("n")])
    );
    // A delete under the default identity: key only.
    assert_eq!(
        changes[4].before,
        Some(vec![
            int(2),
            Value::NotInImage,
            Value::NotInImage,
            Value::NotInImage
        ])
    );
    assert_eq!(changes[4].after, None);
    assert_eq!(changes[4].table.key, vec![0]);
    env.cleanup(&[]).await;
}

#[tokio::test]
async fn replica_identity_full_gives_whole_old_rows() {
    let env = PgEnv::new("pgfull").await;
    env.client
        .batch_execute(
            "CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric(10,2), memo text);
             ALTER TABLE acct ALTER COLUMN memo SET STORAGE EXTERNAL;
             ALTER TABLE acct REPLICA IDENTITY FULL;",
        )
        .await
        .unwrap();
    let ins = format!("INSERT INTO acct VALUES (1, 'ann', 10.50, {BIG}), (2, NULL, NULL, 'short')");
    let changes = changes_of(
        &env,
        &[
            (&ins, "full"),
            ("UPDATE acct SET balance = 11.00 WHERE id = 1", ""),
            ("UPDATE acct SET id = 3 WHERE id = 2", ""),
            ("DELETE FROM acct WHERE id = 1", ""),
            ("DELETE FROM acct WHERE id = 3", ""),
        ],
        6,
    )
    .await;
    let memo = big(&env.client, "full").await;
    let dec = |s: &str| Value::Decimal(s.parse().unwrap());
    let row1 = vec![int(1), text("ann"), dec("10.50"), text(&memo)];
    assert_eq!(changes[2].op, Op::Update);
    assert_eq!(changes[2].before.as_ref(), Some(&row1));
    assert_eq!(
        changes[2].after,
        Some(vec![int(1), text("ann"), dec("11.00"), Value::Unchanged])
    );
    // NULLs in a full old image are real NULLs.
    assert_eq!(
        changes[3].before,
        Some(vec![int(2), Value::Null, Value::Null, text("short")])
    );
    assert_eq!(
        changes[3].after,
        Some(vec![int(3), Value::Null, Value::Null, text("short")])
    );
    assert_eq!(
        changes[4].before,
        Some(vec![int(1), text("ann"), dec("11.00"), text(&memo)])
    );
    assert_eq!(
        changes[5].before,
        Some(vec![int(3), Value::Null, Value::Null, text("short")])
    );
    // The key is still the primary key, not every column.
    assert_eq!(changes[5].table.key, vec![0]);
    env.cleanup(&[]).await;
}

#[tokio::test]
async fn replica_identity_using_index_sends_the_index_columns() {
    let env = PgEnv::new("pgidx").await;
    env.client
        .batch_execute(
            "CREATE TABLE person (id int PRIMARY KEY, email text NOT NULL, name text);
             CREATE UNIQUE INDEX person_email ON person (email);
             ALTER TABLE person REPLICA IDENTITY USING INDEX person_email;",
        )
        .await
        .unwrap();
    let changes = changes_of(
        &env,
        &[
            ("INSERT INTO person VALUES (1, 'a@x', 'ann')", ""),
            ("UPDATE person SET email = 'b@x' WHERE id = 1", ""),
            ("DELETE FROM person WHERE id = 1", ""),
        ],
        3,
    )
    .await;
    assert_eq!(
        changes[1].before,
        Some(vec![Value::NotInImage, text("a@x"), Value::NotInImage])
    );
    assert_eq!(
        changes[2].before,
        Some(vec![Value::NotInImage, text("b@x"), Value::NotInImage])
    );
    assert_eq!(changes[2].table.key, vec![1]);
    env.cleanup(&[]).await;
}
