//! PostgreSQL -> `audit-rows` with `encoding: avro` -> broker, decoded back with apache-avro:
//! an update on a table with `REPLICA IDENTITY FULL` becomes a `UB` then a `UP` record.
//!
//! A real Confluent schema registry cannot run on this project's machines: the registry test
//! uses an in-test HTTP server that implements the documented REST endpoints (the one the
//! capture crate's unit tests use, included by path).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "../../capture/src/routes/avro/test_registry.rs"]
mod test_registry;

use std::collections::HashMap;
use std::io::{Read, Write};

use apache_avro::types::Value as Avro;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tests::capture::start;
use ordo_tests::config::{kafka_yaml, pg_source_yaml};
use ordo_tests::kafka::wait_for_records;
use ordo_tests::stack::{pg_connect, pg_create_database, pg_wait_for_slot, unique_name};
use test_registry::TestRegistry;

async fn setup(registry: Option<&str>) -> (String, String, String) {
    let (db, url) = pg_create_database("auditavro").await;
    let prefix = unique_name("auditavro");
    let source = pg_source_yaml(&db, &prefix, "never");
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
        format: audit-rows
        deletes: tombstone
        options: {{ encoding: avro }}
"#,
    );
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2),
                             at timestamptz);
         ALTER TABLE items REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    (url, prefix, yaml)
}

/// Insert, update (the full old row: `UB` then `UP`), delete: one transaction each.
async fn write_changes(url: &str) {
    let c = pg_connect(url).await;
    for sql in [
        "INSERT INTO items VALUES (1, 'ann', 12.50, '2024-01-02 03:04:05.5+00')",
        "UPDATE items SET name = 'bob', price = NULL WHERE id = 1",
        "DELETE FROM items WHERE id = 1",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
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
    let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
    assert!(body.is_empty(), "every byte is consumed");
    value
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

fn text(v: &Avro) -> &str {
    match v {
        Avro::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// The four records (`PT`, `UB`, `UP`, `DL`) decoded: checks shared by both framings.
fn check_records(values: &[Avro], keys: &[Avro]) {
    let codes: Vec<&str> = values.iter().map(|v| text(field(v, "A_ENTTYP"))).collect();
    assert_eq!(codes, ["PT", "UB", "UP", "DL"]);
    let ccids: Vec<&str> = values.iter().map(|v| text(field(v, "A_CCID"))).collect();
    assert_eq!(ccids[1], ccids[2], "UB and UP belong to one transaction");
    assert!(ccids[0] != ccids[1] && ccids[1] != ccids[3]);
    for v in values {
        let stamp = text(field(v, "A_TIMSTAMP"));
        assert_eq!(stamp.len(), 26, "YYYY-MM-DD HH:MM:SS.ffffff: {stamp}");
        assert_eq!(field(v, "A_USER"), &Avro::Null);
        assert_eq!(field(v, "A_UNAVAILABLE"), &Avro::Array(Vec::new()));
        assert_eq!(field(v, "id"), &Avro::Int(1));
    }
    let price = Avro::Decimal(apache_avro::Decimal::from([0x04, 0xe2]));
    assert_eq!(field(&values[0], "name"), &Avro::String("ann".into()));
    assert_eq!(field(&values[0], "price"), &price, "12.50 as unscaled 1250");
    assert_eq!(
        field(&values[0], "at"),
        &Avro::TimestampMicros(1_704_164_645_500_000)
    );
    assert_eq!(field(&values[1], "name"), &Avro::String("ann".into()));
    assert_eq!(field(&values[1], "price"), &price, "UB: the row before");
    assert_eq!(field(&values[2], "name"), &Avro::String("bob".into()));
    assert_eq!(field(&values[2], "price"), &Avro::Null, "UP: the row after");
    assert_eq!(field(&values[3], "name"), &Avro::String("bob".into()));
    let key = Avro::Record(vec![("id".into(), Avro::Int(1))]);
    assert_eq!(keys, [key.clone(), key.clone(), key.clone(), key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_framing_publishes_the_schemas_to_the_schema_topic() {
    let (url, prefix, yaml) = setup(None).await;
    let mut daemon = start(&yaml);
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    write_changes(&url).await;
    let topic = format!("{prefix}.items");
    // PT, UB, UP, DL, then the delete's tombstone.
    let recs = wait_for_records(&topic, 5).await;
    let published = wait_for_records(&format!("{topic}.schemas"), 2).await;
    let commits = wait_for_records(&format!("{prefix}.commits"), 3).await;
    daemon.stop().await.unwrap();
    assert_eq!((recs.len(), published.len()), (5, 2));
    let first = CommitRecord::decode(commits[0].value.as_deref(), commits[0].offset).unwrap();
    let schema_part = first.parts.iter().find(|p| p.topic.ends_with(".schemas"));
    assert_eq!(
        schema_part.map(|p| p.count),
        Some(2),
        "the schema records belong to the first transaction: {first:?}"
    );
    let update = CommitRecord::decode(commits[1].value.as_deref(), commits[1].offset).unwrap();
    assert_eq!(
        (update.ops, update.records),
        (1, 2),
        "UB and UP: {update:?}"
    );

    let by_fingerprint: HashMap<Vec<u8>, String> = published
        .iter()
        .map(|r| {
            let json = String::from_utf8(r.value.clone().unwrap()).unwrap();
            (r.key.clone().unwrap(), json)
        })
        .collect();
    let unframe = |framed: &[u8]| {
        assert_eq!(framed[..2], [0xc3, 0x01], "single-object marker");
        let schema = &by_fingerprint[&framed[2..10]];
        // The specification's canonical form (apache-avro 0.21 keeps logical types in its own).
        let json: serde_json::Value = serde_json::from_str(schema).unwrap();
        let fp = ordo_kcop::avro::fingerprint(ordo_kcop::avro::canonical_form(&json).as_bytes());
        assert_eq!(fp.to_le_bytes(), framed[2..10], "keyed by the fingerprint");
        decode(schema, &framed[10..])
    };
    let values: Vec<Avro> = recs[..4]
        .iter()
        .map(|r| unframe(r.value.as_deref().unwrap()))
        .collect();
    let keys: Vec<Avro> = recs[..4]
        .iter()
        .map(|r| unframe(r.key.as_deref().unwrap()))
        .collect();
    check_records(&values, &keys);
    assert!(recs[4].value.is_none(), "the tombstone");
    assert_eq!(recs[4].key, recs[3].key, "keyed like the DL record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_framing_registers_the_topic_subjects() {
    let registry = TestRegistry::start();
    let (url, prefix, yaml) = setup(Some(&registry.url)).await;
    let mut daemon = start(&yaml);
    pg_wait_for_slot(&pg_connect(&url).await, &prefix).await;
    daemon.assert_running().await;
    write_changes(&url).await;
    let topic = format!("{prefix}.items");
    let recs = wait_for_records(&topic, 5).await;
    daemon.stop().await.unwrap();
    assert_eq!(recs.len(), 5);

    let key_ids = registry.versions(&format!("{topic}-key"));
    let value_ids = registry.versions(&format!("{topic}-value"));
    assert_eq!((key_ids.len(), value_ids.len()), (1, 1), "one version each");
    let (key_schema, value_schema) = (
        schema_by_id(&registry.url, key_ids[0]),
        schema_by_id(&registry.url, value_ids[0]),
    );
    let unframe = |framed: &[u8], id: u32, schema: &str| {
        assert_eq!(framed[0], 0, "magic byte");
        assert_eq!(u32::from_be_bytes(framed[1..5].try_into().unwrap()), id);
        decode(schema, &framed[5..])
    };
    let values: Vec<Avro> = recs[..4]
        .iter()
        .map(|r| unframe(r.value.as_deref().unwrap(), value_ids[0], &value_schema))
        .collect();
    let keys: Vec<Avro> = recs[..4]
        .iter()
        .map(|r| unframe(r.key.as_deref().unwrap(), key_ids[0], &key_schema))
        .collect();
    check_records(&values, &keys);
    assert!(recs[4].value.is_none(), "the tombstone");
}
