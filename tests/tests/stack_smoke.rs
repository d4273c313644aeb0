//! Smoke test of the test stack (`scripts/stack up`): each server answers with the settings
//! that the end-to-end suites rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::{collections::BTreeMap, time::Duration};

use mysql_async::prelude::Queryable as _;
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, stack, unique_name,
};
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer as _, StreamConsumer},
    message::{Header, Headers as _, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn postgres_is_ready_for_logical_replication() {
    let (db, url) = pg_create_database("smoke").await;
    let client = pg_connect(&url).await;

    let current: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, db);

    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "logical");
    let slots: String = client
        .query_one("SHOW max_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        slots.parse::<u32>().unwrap() >= 64,
        "max_replication_slots = {slots}"
    );
    let senders: String = client
        .query_one("SHOW max_wal_senders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        senders.parse::<u32>().unwrap() >= 64,
        "max_wal_senders = {senders}"
    );

    let roles = client
        .query(
            "SELECT rolname, rolreplication, rolsuper, rolcanlogin FROM pg_roles \
             WHERE rolname IN ('ordo', 'ordo_repl', 'ordo_norepl') ORDER BY rolname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get::<_, String>(0),
                (row.get(1), row.get(2), row.get(3)),
            )
        })
        .collect::<BTreeMap<String, (bool, bool, bool)>>();
    // (replication, superuser, login)
    assert_eq!(roles["ordo"], (true, true, true));
    assert_eq!(roles["ordo_repl"], (true, false, true));
    assert_eq!(roles["ordo_norepl"], (false, false, true));

    // The non-superuser roles log in over TCP with their passwords (scram-sha-256).
    for role in ["ordo_repl", "ordo_norepl"] {
        let url = format!(
            "postgres://{role}:{role}@{}:{}/{db}",
            stack().pg_host,
            stack().pg_port
        );
        let client = pg_connect(&url).await;
        let user: String = client
            .query_one("SELECT current_user", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, role);
    }

    // A logical slot can be created and dropped (pgoutput).
    let slot = unique_name("smoke_slot");
    client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb_writes_a_full_row_binlog() {
    let mut conn = mysql_async::Conn::from_url(&stack().mysql_url)
        .await
        .unwrap();
    let settings: (i64, String, String, String, i64, u32) = conn
        .query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
             @@gtid_strict_mode, @@server_id",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        settings,
        (1, "ROW".into(), "FULL".into(), "FULL".into(), 1, 1),
        "(log_bin, binlog_format, binlog_row_image, binlog_row_metadata, gtid_strict_mode, server_id)"
    );
    let (checksum, annotate): (String, i64) = conn
        .query_first("SELECT @@binlog_checksum, @@binlog_annotate_row_events")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((checksum.as_str(), annotate), ("CRC32", 1));

    // A committed row moves the GTID position.
    let db = mysql_create_database("smoke").await;
    conn.query_drop(format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB"
    ))
    .await
    .unwrap();
    let before: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    conn.query_drop(format!("INSERT INTO `{db}`.t VALUES (1, 'a')"))
        .await
        .unwrap();
    let after: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before, after);
    assert!(after.starts_with("0-1-"), "gtid_binlog_pos = {after}");

    // ordo_norepl reads but doesn't write.
    let mut norepl = mysql_async::Conn::from_url(format!(
        "mysql://ordo_norepl:ordo_norepl@{}:{}",
        stack().mysql_host,
        stack().mysql_port
    ))
    .await
    .unwrap();
    let v: String = norepl
        .query_first(format!("SELECT v FROM `{db}`.t"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "a");
    assert!(
        norepl
            .query_drop(format!("INSERT INTO `{db}`.t VALUES (2, 'b')"))
            .await
            .is_err()
    );
    norepl.disconnect().await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn broker_round_trips_records_with_headers() {
    let kafka = &stack().kafka;
    let topic = unique_name("smoke");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(DEADLINE)),
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].as_ref().map_err(|(_, code)| *code), Ok(&topic));

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    // (partition, key, payload); partition 0 gets two records, partition 1 one.
    let records = [(0, "k0", "v0"), (0, "k1", "v1"), (1, "k2", "v2")];
    let mut expected = BTreeMap::new();
    for (i, (partition, key, payload)) in records.into_iter().enumerate() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "index",
                value: Some(&i.to_string()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let delivery = producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                DEADLINE,
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
        assert_eq!(delivery.partition, partition);
        expected.insert(
            (partition, delivery.offset),
            (key.to_owned(), payload.to_owned(), i.to_string()),
        );
    }
    let offsets: Vec<_> = expected.keys().copied().collect();
    assert_eq!(offsets, [(0, 0), (0, 1), (1, 0)]);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", unique_name("smoke_group"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in [0, 1] {
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut received = BTreeMap::new();
    tokio::time::timeout(DEADLINE, async {
        while received.len() < expected.len() {
            let message = consumer.recv().await.unwrap();
            let text = |bytes: Option<&[u8]>| String::from_utf8(bytes.unwrap().to_vec()).unwrap();
            let headers = message.headers().unwrap();
            let headers: Vec<_> = headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect();
            assert_eq!(headers.len(), 2, "headers {headers:?}");
            assert_eq!(headers[0].0, "index");
            assert_eq!(headers[1], ("empty".to_owned(), None));
            let index = String::from_utf8(headers[0].1.clone().unwrap()).unwrap();
            received.insert(
                (message.partition(), message.offset()),
                (text(message.key()), text(message.payload()), index),
            );
        }
    })
    .await
    .unwrap_or_else(|_| panic!("received only {received:?} within {DEADLINE:?}"));
    assert_eq!(received, expected);

    // High watermarks: the next offset of each partition.
    for (partition, high) in [(0, 2), (1, 1)] {
        let marks = consumer
            .fetch_watermarks(&topic, partition, DEADLINE)
            .unwrap();
        assert_eq!(marks, (0, high), "watermarks of partition {partition}");
    }
}
