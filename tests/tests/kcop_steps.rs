//! PostgreSQL -> filter, encrypted column, computed headers -> json -> broker, then decrypted
//! with `ordo_tcc::decrypt`, across a key rotation (restart with a new active key); and
//! PostgreSQL -> `route` by a column -> two topics, listed by the commit records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use ordo_tcc::decrypt::Decryptor;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, pg_source_yaml_spilling};
use ordo_tests::kafka::{Record, partitions, read_all, wait_for_commits};
use ordo_tests::stack::{
    pg_connect, pg_create_database, pg_wait_for_slot, unique_name, wait_until,
};
use serde_json::json;

const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];

/// Writes `key` as hex into a 0600 file.
fn key_file(dir: &Path, name: &str, key: &[u8; 32]) -> String {
    let path = dir.join(name);
    let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, text + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn config(db: &str, prefix: &str, keys: &Path, active: &str) -> String {
    let source = pg_source_yaml_spilling(
        db,
        prefix,
        "never",
        &std::env::temp_dir().join("ordo-test-spill"),
    );
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    format!(
        r#"
{source}{kafka}encryption:
  active_key: {active}
  keys:
    - {{ id: k1, file: {k1} }}
    - {{ id: k2, file: {k2} }}
mappings:
  - tables: ["public.customers"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
        partitions: 1
        filter: 'op != "d" && after.amount > 500'
        headers:
          region: after.region
          big: after.amount > 1000
          mail: after.email
          note: after.note
        encrypt: [email]
"#,
        k1 = key_file(keys, "k1.key", &K1),
        k2 = key_file(keys, "k2.key", &K2),
    )
}

/// The topic's records once the record for customer `last_id` is there (one partition, so
/// every earlier record is there too).
async fn records_until(topic: &str, last_id: i64) -> Vec<Record> {
    wait_until(
        &format!("customer {last_id} on {topic}"),
        Duration::from_secs(60),
        || {
            let topic = topic.to_owned();
            async move {
                let recs = tokio::task::spawn_blocking(move || read_all(&topic))
                    .await
                    .unwrap();
                recs.iter()
                    .any(|r| r.json()["id"] == last_id)
                    .then_some(recs)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_headers_and_encryption_through_the_daemon() {
    let (db, url) = pg_create_database("steps").await;
    let prefix = unique_name("steps");
    let keys = tempfile::tempdir().unwrap();
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE customers (id bigint PRIMARY KEY, email text, amount numeric(10,2), \
         region text, note text)",
    )
    .await
    .unwrap();

    let daemon = start(&config(&db, &prefix, keys.path(), "k1"));
    pg_wait_for_slot(&c, &prefix).await;
    c.batch_execute(
        "INSERT INTO customers VALUES (1, 'small@example.com', 100, 'eu', NULL);
         INSERT INTO customers VALUES (2, 'big@example.com', 600, 'us', NULL);
         UPDATE customers SET amount = 1700.25 WHERE id = 1;
         DELETE FROM customers WHERE id = 2;
         INSERT INTO customers VALUES (3, NULL, 900, 'eu', 'n3');",
    )
    .await
    .unwrap();
    let topic = format!("{prefix}.customers");
    let first = records_until(&topic, 3).await;
    daemon.stop().await.unwrap();

    // Rotation: the daemon now encrypts with k2; k1's values must still decrypt.
    let daemon = start(&config(&db, &prefix, keys.path(), "k2"));
    c.batch_execute("INSERT INTO customers VALUES (4, 'new@example.com', 501, 'ap', NULL)")
        .await
        .unwrap();
    let all = records_until(&topic, 4).await;
    daemon.stop().await.unwrap();
    assert_eq!(all[..first.len()], first[..]);

    let ids: Vec<_> = all.iter().map(|r| r.json()["id"].clone()).collect();
    assert_eq!(ids, [json!(2), json!(1), json!(3), json!(4)], "filtered");
    let optypes: Vec<_> = all
        .iter()
        .map(|r| r.header("ordo.optype").unwrap())
        .collect();
    assert_eq!(optypes, ["c", "u", "c", "c"]);

    let headers = |r: &Record, name: &str| r.header(name).map(str::to_owned);
    assert_eq!(headers(&all[0], "region").as_deref(), Some("us"));
    assert_eq!(headers(&all[0], "big").as_deref(), Some("false"));
    assert_eq!(headers(&all[1], "big").as_deref(), Some("true"));
    assert_eq!(headers(&all[0], "note"), None, "null omits the header");
    assert_eq!(headers(&all[2], "note").as_deref(), Some("n3"));
    for r in &all {
        let mail = r.header("mail").unwrap();
        assert!(
            mail.starts_with("ordo:enc:v1:"),
            "headers see the encrypted value"
        );
        assert!(!String::from_utf8_lossy(r.value.as_deref().unwrap()).contains("@example"));
    }
    let key_ids: Vec<_> = all
        .iter()
        .map(|r| {
            r.json()["email"]
                .as_str()
                .unwrap()
                .split(':')
                .nth(3)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(key_ids, ["k1", "k1", "k1", "k2"]);

    let decryptor = Decryptor::from_keys([("k1", &K1[..]), ("k2", &K2[..])]).unwrap();
    let mut plain = Vec::new();
    for r in &all {
        let mut value = r.json();
        let table = r.header("ordo.table").unwrap();
        assert_eq!(decryptor.decrypt_record(table, &mut value).unwrap(), 1);
        plain.push(value);
    }
    assert_eq!(
        plain,
        [
            json!({"id": 2, "email": "big@example.com", "amount": "600.00", "region": "us", "note": null}),
            json!({"id": 1, "email": "small@example.com", "amount": "1700.25", "region": "eu", "note": null}),
            json!({"id": 3, "email": null, "amount": "900.00", "region": "eu", "note": "n3"}),
            json!({"id": 4, "email": "new@example.com", "amount": "501.00", "region": "ap", "note": null}),
        ]
    );

    // Without the old key, the old values name it.
    let only_new = Decryptor::from_keys([("k2", &K2[..])]).unwrap();
    let err = only_new
        .decrypt_record("public.customers", &mut all[0].json())
        .unwrap_err();
    assert!(
        err.to_string().contains("key `k1`, which is not loaded"),
        "{err}"
    );
}

/// One output for `public.orders`, routed by region, its topics created with 2 partitions
/// (the default is 1).
fn route_config(db: &str, prefix: &str) -> String {
    let source = pg_source_yaml_spilling(
        db,
        prefix,
        "never",
        &std::env::temp_dir().join("ordo-test-spill"),
    );
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    format!(
        r#"
{source}{kafka}mappings:
  - tables: ["public.orders"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
        partitions: 2
        route: 'has(after.region) && after.region == "eu" ? "{prefix}.eu" : "{prefix}.other." + table'
"#,
    )
}

async fn read(topic: &str) -> Vec<Record> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_all(&topic))
        .await
        .unwrap()
}

/// `(id, op type)` of each record, sorted (the topics have two partitions).
fn ids_and_ops(records: &[Record]) -> Vec<(i64, String)> {
    let mut found: Vec<_> = records
        .iter()
        .map(|r| {
            let id = r.json()["id"].as_i64().unwrap();
            (id, r.header("ordo.optype").unwrap().to_owned())
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_sends_records_to_the_topic_a_column_names() {
    let (db, url) = pg_create_database("route").await;
    let prefix = unique_name("route");
    let c = pg_connect(&url).await;
    c.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, region text, amount int)")
        .await
        .unwrap();

    let daemon = start(&route_config(&db, &prefix));
    pg_wait_for_slot(&c, &prefix).await;
    for sql in [
        "BEGIN;
         INSERT INTO orders VALUES (1, 'eu', 10);
         INSERT INTO orders VALUES (2, 'us', 20);
         COMMIT;",
        "UPDATE orders SET region = 'eu' WHERE id = 2",
        "DELETE FROM orders WHERE id = 1",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    let commits = wait_for_commits(&format!("{prefix}.commits"), 3).await;
    daemon.stop().await.unwrap();

    let (eu, other) = (format!("{prefix}.eu"), format!("{prefix}.other.orders"));
    let (eu_records, other_records) = (read(&eu).await, read(&other).await);
    let pair = |id: i64, op: &str| (id, op.to_owned());
    assert_eq!(ids_and_ops(&eu_records), [pair(1, "c"), pair(2, "u")]);
    // The delete has no `after`, so `has(after.region)` is false.
    assert_eq!(ids_and_ops(&other_records), [pair(1, "d"), pair(2, "c")]);
    assert_eq!(partitions(&eu), 2, "created with the output's partitions");
    assert_eq!(
        partitions(&other),
        2,
        "created with the output's partitions"
    );

    // Nothing went to the output's own topic (`<prefix>.orders`).
    assert_eq!(commits.len(), 3, "{commits:?}");
    let topics: Vec<Vec<&str>> = commits
        .iter()
        .map(|c| c.parts.iter().map(|p| p.topic.as_str()).collect())
        .collect();
    assert_eq!(topics, [vec![&*eu, &*other], vec![&*eu], vec![&*other]]);
    assert_eq!(
        commits.iter().map(|c| c.records).collect::<Vec<_>>(),
        [2, 1, 1]
    );
    for r in eu_records.iter().chain(&other_records) {
        let txn = r.header("ordo.txn").unwrap();
        let commit = commits.iter().find(|c| c.txn == txn).unwrap();
        assert!(
            commit.parts.iter().any(|p| p.topic == r.topic
                && p.partition == r.partition
                && (p.first..=p.last).contains(&r.offset)),
            "record {}:{}@{} is not in the commit record of its transaction {commit:?}",
            r.topic,
            r.partition,
            r.offset
        );
    }
}
