//! The registry client against [`TestRegistry`], an in-test HTTP server implementing the
//! documented Confluent REST endpoints (a real Confluent registry cannot run here).

use std::sync::Arc;

use ordo_config::{Output, SchemaRegistry, Secret};
use ordo_kcop::avro::Framing;
use ordo_kcop::{Column, ColumnKind, TableId, TableSchema};

use super::registry::{RegistryClient, RegistryError, parse_response};
use super::test_registry::TestRegistry;

fn config(url: &str, user: Option<&str>, password: Option<&str>) -> SchemaRegistry {
    serde_json::from_value::<SchemaRegistry>(serde_json::json!({ "url": url, "username": user }))
        .map(|mut c| {
            c.password = password.map(Secret::new);
            c
        })
        .unwrap()
}

#[test]
fn registers_and_answers_repeats_from_the_cache() {
    let registry = TestRegistry::start();
    let client = RegistryClient::new(&config(&registry.url, None, None)).unwrap();
    let a = client.register("t-value", r#""string""#).unwrap();
    let again = client.register("t-value", r#""string""#).unwrap();
    let b = client.register("t-key", r#""long""#).unwrap();
    assert_eq!(a, again);
    assert_ne!(a, b);
    let requests = registry.requests();
    assert_eq!(requests.len(), 2, "the repeat is a cache hit: {requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/subjects/t-value/versions");
    assert_eq!(requests[0].body, r#"{"schema":"\"string\""}"#);
    assert_eq!(registry.schema(a).as_deref(), Some(r#""string""#));
}

#[test]
fn incompatible_schemas_name_the_subject_and_the_registry_message() {
    let registry = TestRegistry::start();
    registry.reject_changes("orders-value");
    let client = RegistryClient::new(&config(&registry.url, None, None)).unwrap();
    client.register("orders-value", r#""string""#).unwrap();
    let err = client.register("orders-value", r#""long""#).unwrap_err();
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("subject `orders-value`"), "{text}");
    assert!(
        text.contains("Schema being registered is incompatible with an earlier schema"),
        "{text}"
    );
}

#[test]
fn basic_auth_is_sent_and_refusals_say_what_to_check() {
    let registry = TestRegistry::start();
    // base64("ordo:s3cret")
    registry.require_auth("Basic b3JkbzpzM2NyZXQ=");
    let good = RegistryClient::new(&config(&registry.url, Some("ordo"), Some("s3cret"))).unwrap();
    good.register("s-value", r#""int""#).unwrap();
    let bad = RegistryClient::new(&config(&registry.url, Some("ordo"), Some("nope"))).unwrap();
    let text = bad.register("s-value", r#""int""#).unwrap_err().to_string();
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("schema_registry.username"), "{text}");
    assert!(!text.contains("nope"), "no password in messages: {text}");
}

#[test]
fn unusable_urls_are_refused_clearly() {
    let https = RegistryClient::new(&config("https://registry:8081", None, None)).unwrap_err();
    assert!(
        https.to_string().contains("https is not supported"),
        "{https}"
    );
    let down = RegistryClient::new(&config("http://127.0.0.1:1", None, None)).unwrap();
    let text = down.register("x-value", "\"int\"").unwrap_err().to_string();
    assert!(text.contains("check `schema_registry.url`"), "{text}");
}

/// A connection the server keeps open: reading past the response would block.
struct StillOpen;

impl std::io::Read for StillOpen {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("read past the end of the response")
    }
}

#[test]
fn responses_end_at_their_length_even_on_open_connections() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":7}".to_vec();
    let mut open = std::io::Read::chain(std::io::Cursor::new(raw), StillOpen);
    let reply = super::registry::read_response(&mut open).unwrap();
    assert_eq!(
        parse_response(&reply).unwrap(),
        (200, b"{\"id\":7}".to_vec())
    );
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec();
    let mut open = std::io::Read::chain(std::io::Cursor::new(chunked), StillOpen);
    let reply = super::registry::read_response(&mut open).unwrap();
    assert_eq!(parse_response(&reply).unwrap(), (200, b"{}".to_vec()));
}

#[test]
fn chunked_answers_are_decoded() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"id\r\n4\r\n\":7}\r\n0\r\n\r\n";
    assert_eq!(parse_response(raw).unwrap(), (200, b"{\"id\":7}".to_vec()));
}

fn table() -> TableSchema {
    let col = |name: &str, kind, nullable| Column {
        name: name.into(),
        type_name: "t".into(),
        kind,
        nullable,
    };
    TableSchema {
        id: TableId::new("public", "orders"),
        version: 1,
        columns: vec![
            col("id", ColumnKind::Int(32), false),
            col("note", ColumnKind::Text, true),
        ],
        key: vec![0],
    }
}

fn output(options: serde_json::Value) -> Output {
    serde_json::from_value(serde_json::json!({
        "topic": "shop.orders", "format": "avro", "options": options
    }))
    .unwrap()
}

#[test]
fn build_registers_key_and_value_subjects() {
    let registry = TestRegistry::start();
    let client = Arc::new(RegistryClient::new(&config(&registry.url, None, None)).unwrap());
    let options = super::parse_options(&output(serde_json::json!({}))).unwrap();
    let settings = super::settings(
        &output(serde_json::json!({})),
        &table(),
        "shop.orders".into(),
        &options,
    )
    .unwrap();
    let format = ordo_kcop::avro::AvroFormat::new(&table(), settings).unwrap();
    let framing = super::register(
        &client,
        "shop.orders",
        format.key_schema(),
        format.value_schema(),
    )
    .unwrap();
    let (key, value) = (
        registry.versions("shop.orders-key"),
        registry.versions("shop.orders-value"),
    );
    assert_eq!(
        framing,
        Framing::Registry {
            key_id: Some(key[0]),
            value_id: value[0]
        }
    );
    assert_eq!(
        registry.schema(value[0]).unwrap(),
        format.value_schema().json
    );
}

#[test]
fn unknown_options_list_the_valid_ones() {
    let err = super::parse_options(&output(serde_json::json!({"envelope": true}))).unwrap_err();
    assert_eq!(
        err,
        "the avro format has no option `envelope`; valid options: schema_topic, decimals, namespace"
    );
    let err = super::parse_options(&output(serde_json::json!({"namespace": "1x"}))).unwrap_err();
    assert!(err.contains("not a valid Avro namespace"), "{err}");
    let err =
        super::parse_options(&output(serde_json::json!({"schema_topic": "a b"}))).unwrap_err();
    assert!(err.contains("not a valid Kafka topic name"), "{err}");
}
