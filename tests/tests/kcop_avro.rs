//! PostgreSQL -> `avro` KCOP -> broker, decoded back with apache-avro.
//!
//! A real Confluent schema registry cannot run on this project's machines: the registry tests
//! use an in-test HTTP server that implements the documented REST endpoints
//! (`POST /subjects/{subject}/versions`, `GET /schemas/ids/{id}`, HTTP 409 on an incompatible
//! schema). It is the same server the capture crate's unit tests use, included by path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "../../capture/src/routes/avro/test_registry.rs"]
mod test_registry;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use apache_avro::types::Value as Avro;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, pg_source_yaml_spilling};
use ordo_tests::kafka::wait_for_records;
use ordo_tests::stack::{
    pg_connect, pg_create_database, pg_wait_for_slot, unique_name, wait_until,
};
use test_registry::TestRegistry;

/// A value over 2 kB that does not compress, so PostgreSQL stores it out of line (TOAST).
const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)";

async fn setup(registry: Option<&str>) -> (String, String, String) {
    let (db, url) = pg_create_database("avro").await;
    let prefix = unique_name("avro");
    let source = pg_source_yaml_spilling(
        &db,
        &prefix,
        "never",
        &std::env::temp_dir().join("ordo-test-spill"),
    );
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    let registry = registry.map_or(String::new(), |url| {
        format!("schema_registry:\n  url: {url}\n")
    });
    let yaml = format!(
        r#"
{source}{kafka}{registry}mappings:
  - tables: ["public.items"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: avro
"#,
    );
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2),
                             body text NOT NULL, at timestamptz, day date, tags int[], uid uuid)",
    )
    .await
    .unwrap();
    (url, prefix, yaml)
}

/// Insert, update leaving the TOASTed `body` unchanged, delete (key-only old image).
async fn write_changes(url: &str) {
    let c = pg_connect(url).await;
    c.batch_execute(&format!(
        "INSERT INTO items VALUES (1, 'ann', 12.50, {BIG}, '2024-01-02 03:04:05.5+00', '2024-01-02',
                                   ARRAY[1, NULL, 3], 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
         UPDATE items SET name = 'bob' WHERE id = 1;
         DELETE FROM items WHERE id = 1;"
    ))
    .await
    .unwrap();
}

/// `GET /schemas/ids/{id}`, as a consumer would ask the registry.
fn schema_by_id(registry: &str, id: u32) -> String {
    let authority = registry.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET /schemas/ids/{id} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["schema"].as_str().unwrap().to_owned()
}

fn decode(schema_json: &str, body: &[u8]) -> Avro {
    let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
    let mut body = body;
    apache_avro::from_avro_datum(&schema, &mut body, None).unwrap()
}

fn field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    match &fields.iter().find(|(n, _)| n == name).unwrap().1 {
        Avro::Union(_, inner) => inner,
        v => v,
    }
}

fn names(v: &Avro) -> Vec<String> {
    let Avro::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    items
        .iter()
        .map(|i| match i {
            Avro::String(s) => s.clone(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The three changes, decoded: checks shared by both framings.
fn check_changes(values: &[Avro]) {
    let after = field(&values[0], "after");
    assert_eq!(field(&values[0], "op"), &Avro::String("c".into()));
    assert_eq!(field(after, "name"), &Avro::String("ann".into()));
    assert_eq!(
        field(after, "price"),
        &Avro::Decimal(apache_avro::Decimal::from([0x04, 0xe2])),
        "12.50 as unscaled 1250"
    );
    assert_eq!(
        field(after, "at"),
        &Avro::TimestampMicros(1_704_164_645_500_000)
    );
    assert_eq!(field(after, "day"), &Avro::Date(19_724));
    assert_eq!(
        field(after, "tags"),
        &Avro::Array(vec![
            Avro::Union(1, Box::new(Avro::Int(1))),
            Avro::Union(0, Box::new(Avro::Null)),
            Avro::Union(1, Box::new(Avro::Int(3))),
        ])
    );
    let Avro::String(body) = field(after, "body") else {
        panic!("body is a string")
    };
    assert_eq!(body.len(), 6400);

    assert_eq!(field(&values[1], "op"), &Avro::String("u".into()));
    assert_eq!(
        field(field(&values[1], "after"), "name"),
        &Avro::String("bob".into())
    );
    assert_eq!(field(field(&values[1], "after"), "body"), &Avro::Null);
    assert_eq!(names(field(&values[1], "after_unavailable")), ["body"]);

    assert_eq!(field(&values[2], "op"), &Avro::String("d".into()));
    assert_eq!(field(field(&values[2], "before"), "id"), &Avro::Int(1));
    assert_eq!(field(&values[2], "after"), &Avro::Null);
    assert_eq!(names(field(&values[2], "before_unavailable")).len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_framing_through_the_daemon() {
    let registry = TestRegistry::start();
    let (url, prefix, yaml) = setup(Some(&registry.url)).await;
    let mut daemon = start(&yaml);
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    write_changes(&url).await;
    let recs = wait_for_records(&format!("{prefix}.items"), 3).await;
    daemon.stop().await.unwrap();
    assert_eq!(recs.len(), 3);

    let topic = format!("{prefix}.items");
    let value_ids = registry.versions(&format!("{topic}-value"));
    let key_ids = registry.versions(&format!("{topic}-key"));
    assert_eq!(
        (key_ids.len(), value_ids.len()),
        (1, 1),
        "one schema version each"
    );
    let mut schemas: HashMap<u32, String> = HashMap::new();
    let mut values = Vec::new();
    for r in &recs {
        let (key, value) = (r.key.as_deref().unwrap(), r.value.as_deref().unwrap());
        assert_eq!((key[0], value[0]), (0, 0), "magic byte");
        let key_id = u32::from_be_bytes(key[1..5].try_into().unwrap());
        let value_id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        assert_eq!((key_id, value_id), (key_ids[0], value_ids[0]));
        let key_schema = schemas
            .entry(key_id)
            .or_insert_with(|| schema_by_id(&registry.url, key_id))
            .clone();
        assert_eq!(
            decode(&key_schema, &key[5..]),
            Avro::Record(vec![("id".into(), Avro::Int(1))])
        );
        let value_schema = schemas
            .entry(value_id)
            .or_insert_with(|| schema_by_id(&registry.url, value_id));
        values.push(decode(value_schema, &value[5..]));
    }
    check_changes(&values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_framing_publishes_schemas_to_the_schema_topic() {
    let (url, prefix, yaml) = setup(None).await;
    let mut daemon = start(&yaml);
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    write_changes(&url).await;
    let recs = wait_for_records(&format!("{prefix}.items"), 3).await;
    let published = wait_for_records(&format!("{prefix}.items.schemas"), 2).await;
    let commits = wait_for_records(&format!("{prefix}.commits"), 1).await;
    daemon.stop().await.unwrap();
    assert_eq!((recs.len(), published.len()), (3, 2));
    let first = CommitRecord::decode(commits[0].value.as_deref(), commits[0].offset).unwrap();
    let schema_part = first.parts.iter().find(|p| p.topic.ends_with(".schemas"));
    assert_eq!(
        schema_part.map(|p| p.count),
        Some(2),
        "the schema records belong to the first transaction: {first:?}"
    );

    let by_fingerprint: HashMap<Vec<u8>, String> = published
        .iter()
        .map(|r| {
            let json = String::from_utf8(r.value.clone().unwrap()).unwrap();
            (r.key.clone().unwrap(), json)
        })
        .collect();
    let mut values = Vec::new();
    for r in &recs {
        let value = r.value.as_deref().unwrap();
        assert_eq!(value[..2], [0xc3, 0x01], "single-object marker");
        let schema = &by_fingerprint[&value[2..10]];
        // The specification's canonical form (apache-avro 0.21 keeps logical types in its own).
        let json: serde_json::Value = serde_json::from_str(schema).unwrap();
        let fp = ordo_kcop::avro::fingerprint(ordo_kcop::avro::canonical_form(&json).as_bytes());
        assert_eq!(
            fp.to_le_bytes(),
            value[2..10],
            "the key is the schema's fingerprint"
        );
        values.push(decode(schema, &value[10..]));
    }
    check_changes(&values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_schema_change_stops_the_daemon_naming_the_subject() {
    let registry = TestRegistry::start();
    let (url, prefix, yaml) = setup(Some(&registry.url)).await;
    let topic = format!("{prefix}.items");
    registry.reject_changes(&format!("{topic}-value"));
    let mut daemon = start(&yaml);
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    let c = pg_connect(&url).await;
    c.batch_execute("INSERT INTO items (id, name, body) VALUES (1, 'a', 'b')")
        .await
        .unwrap();
    wait_for_records(&topic, 1).await;
    c.batch_execute(
        "ALTER TABLE items ADD COLUMN extra int;
         INSERT INTO items (id, name, body, extra) VALUES (2, 'a', 'b', 3);",
    )
    .await
    .unwrap();
    wait_until(
        "the daemon to stop on the 409",
        Duration::from_secs(60),
        || {
            let stopped = daemon.task.is_finished();
            async move { stopped.then_some(()) }
        },
    )
    .await;
    let error = daemon.stop().await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("subject `{topic}-value` is incompatible")),
        "{error}"
    );
    assert!(error.contains("table public.items"), "{error}");
    assert_eq!(registry.versions(&format!("{topic}-value")).len(), 1);
}
