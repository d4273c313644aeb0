//! The helpers the daemon uses, secrets hygiene, the JSON Schema and the example files.

use std::collections::HashMap;
use std::path::Path;

use ordo_config::{Config, Format, KeyMode, Source, TlsMode, load, parse_with_env};

/// Encryption keys: 32 bytes as 64 hex digits.
const KEY_ONE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_TWO: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Values for every variable the example files and tests reference.
fn env(name: &str) -> Option<String> {
    let vars = HashMap::from([
        ("ORDO_PG_PASSWORD", "pg-hunter2"),
        ("ORDO_MARIADB_PASSWORD", "maria-hunter2"),
        ("ORDO_REGISTRY_PASSWORD", "registry-hunter2"),
        ("ORDO_KEY_K1", KEY_ONE),
        ("ORDO_KEY_K2", KEY_TWO),
        ("KAFKA_PASSWORD", "kafka-hunter2"),
    ]);
    vars.get(name).map(|value| (*value).to_owned())
}

fn example(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    match parse_with_env(&text, name, env) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    }
}

#[test]
fn postgres_example_parses_and_validates() {
    let config = example("postgres.yaml");
    let Source::Postgres(postgres) = &config.source else {
        panic!("expected a postgres source");
    };
    assert_eq!(postgres.password.as_ref().unwrap().expose(), "pg-hunter2");
    assert_eq!(postgres.tls.mode, TlsMode::Prefer);
    assert_eq!(config.mappings.len(), 2);
    assert_eq!(config.mappings[1].outputs[0].key, KeyMode::Columns);
    let encryption = config.encryption.as_ref().unwrap();
    assert_eq!(encryption.active().unwrap().material().expose(), KEY_TWO);
}

#[test]
fn mariadb_example_parses_and_validates() {
    let config = example("mariadb.yaml");
    let Source::Mysql(mysql) = &config.source else {
        panic!("expected a mysql source");
    };
    assert_eq!(mysql.server_id, 4242);
    assert_eq!(config.mappings[0].outputs[0].format, Format::Debezium);
}

const SECRETS: &str = "\
source:
  postgres:
    user: ordo
    password: \"pw-${ORDO_PG_PASSWORD}\"
    database: shop
kafka:
  bootstrap_servers: \"127.0.0.1:9092\"
  commit_topic: ordo.commits
  properties:
    sasl.password: ${KAFKA_PASSWORD}
    sasl.username: ${ORDO_KEY_K1}
    ssl.key.password: inline-hunter2
    linger.ms: 5
schema_registry:
  url: https://registry.example
  username: ordo
  password: { env: ORDO_REGISTRY_PASSWORD }
encryption:
  active_key: k1
  keys: [{ id: k1, env: ORDO_KEY_K1 }]
mappings:
  - tables: [\"public.*\"]
    outputs: [{ topic: \"{schema}.{table}\", format: json, encrypt: [card] }]
";

#[test]
fn debug_output_never_contains_a_secret() {
    let config = parse_with_env(SECRETS, "ordo.yaml", env).unwrap();
    let debug = format!("{config:?} {config:#?}");
    for secret in ["hunter2", KEY_ONE] {
        assert!(!debug.contains(secret), "`{secret}` leaked into {debug}");
    }
    assert!(
        debug.contains("\"linger.ms\": \"5\""),
        "plain properties stay readable"
    );
    let properties = &config.kafka.properties;
    assert_eq!(properties.get("sasl.password"), Some("kafka-hunter2"));
    assert_eq!(properties.get("ssl.key.password"), Some("inline-hunter2"));
    assert_eq!(properties.get("linger.ms"), Some("5"));
    let Source::Postgres(postgres) = &config.source else {
        panic!("expected a postgres source");
    };
    assert_eq!(
        postgres.password.as_ref().unwrap().expose(),
        "pw-pg-hunter2"
    );
}

const MAPPINGS: &str = "\
source:
  postgres: { user: ordo, database: shop }
kafka: { bootstrap_servers: \"k:9092\", commit_topic: commits }
mappings:
  - tables: [\"public.order_*\", \"public.orders\"]
    outputs: [{ topic: \"cdc.{db}.{schema}.{table}\", format: json }]
  - tables: [\"public.*\"]
    outputs: [{ topic: audit, format: audit-rows }]
";

#[test]
fn tables_match_every_applicable_mapping() {
    let config = parse_with_env(MAPPINGS, "ordo.yaml", env).unwrap();
    let indexes = |namespace, table| {
        config
            .mappings_for(namespace, table)
            .map(|(index, _)| index)
            .collect::<Vec<_>>()
    };
    assert_eq!(indexes("public", "orders"), [0, 1]);
    assert_eq!(indexes("public", "order_lines"), [0, 1]);
    assert_eq!(indexes("public", "customers"), [1]);
    assert_eq!(indexes("private", "orders"), Vec::<usize>::new());
    assert!(config.mappings[0].matches("public", "orders"));
}

#[test]
fn topics_are_rendered_from_templates() {
    let config = parse_with_env(MAPPINGS, "ordo.yaml", env).unwrap();
    let output = &config.mappings[0].outputs[0];
    assert_eq!(
        output.topic_for("shop", "public", "orders"),
        "cdc.shop.public.orders"
    );
    assert_eq!(
        output.topic_for("shop", "public", "odd name!"),
        "cdc.shop.public.odd_name_"
    );
    assert_eq!(
        config.mappings[1].outputs[0].topic_for("shop", "public", "x"),
        "audit"
    );
}

#[test]
fn defaults_are_filled_in() {
    let config = parse_with_env(MAPPINGS, "ordo.yaml", env).unwrap();
    let Source::Postgres(postgres) = &config.source else {
        panic!("expected a postgres source");
    };
    assert_eq!((postgres.host.as_str(), postgres.port), ("localhost", 5432));
    assert_eq!(
        (postgres.slot.as_str(), postgres.protocol_version),
        ("ordo", 2)
    );
    assert!(postgres.streaming && postgres.create_publication && config.kafka.create_topics);
    assert!(postgres.spill_dir.ends_with("ordo-spill"));
    assert_eq!(config.logging.level, "info");
    assert_eq!(config.metrics.listen, None);
}

#[test]
fn json_schema_describes_the_file() {
    let schema: serde_json::Value = serde_json::from_str(&ordo_config::json_schema()).unwrap();
    let properties = &schema["properties"];
    for section in [
        "source",
        "kafka",
        "schema_registry",
        "encryption",
        "mappings",
        "metrics",
    ] {
        assert!(
            properties.get(section).is_some(),
            "no `{section}` in the schema"
        );
    }
    assert_eq!(schema["additionalProperties"], false);
    let text = ordo_config::json_schema();
    assert!(text.contains("csv-audit") && text.contains("verify-full"));
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.yaml");
    std::fs::write(&path, "source: {}\n").unwrap();
    let errors = load(&path).unwrap_err();
    let shown = errors.to_string();
    assert!(
        shown.starts_with(&format!("{}:1:9: source: ", path.display())),
        "{shown}"
    );

    let missing = load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the config file"),
        "{missing}"
    );
}

/// The schema is read by editors and `ordo config schema` users: a change to it must be a
/// conscious one (`cargo insta review`).
#[test]
fn json_schema_snapshot() {
    let spill_default = std::env::temp_dir().join("ordo-spill");
    let spill_default = serde_json::to_string(&spill_default).unwrap();
    let schema = ordo_config::json_schema().replace(&spill_default, "\"<temp>/ordo-spill\"");
    insta::assert_snapshot!("json_schema", schema);
}

#[test]
fn anchors_aliases_and_merge_keys_work() {
    let text = "\
source:
  postgres: { user: ordo, database: shop }
kafka: { bootstrap_servers: \"k:9092\", commit_topic: commits }
mappings:
  - tables: [\"public.a\"]
    outputs:
      - &json { topic: \"{schema}.{table}\", format: json }
  - tables: [\"public.b\"]
    outputs:
      - *json
      - <<: *json
        topic: other
        partitions: 3
";
    let config = parse_with_env(text, "ordo.yaml", env).unwrap();
    let merged = &config.mappings[1].outputs[1];
    assert_eq!(
        (merged.topic.as_str(), merged.partitions),
        ("other", Some(3))
    );
    assert_eq!(merged.format, Format::Json);

    let broken = text.replace("partitions: 3", "partitions: 0");
    let errors = parse_with_env(&broken, "ordo.yaml", env).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "ordo.yaml:13:21: mappings[1].outputs[1].partitions: must be greater than 0\n  \
         hint: use a positive number"
    );
}

#[test]
fn a_default_mapping_applies_only_to_tables_no_other_mapping_selects() {
    let text = "source:\n  postgres:\n    user: ordo\n    database: shop\nkafka:\n  bootstrap_servers: \"k:9092\"\n  commit_topic: commits\nmappings:\n  - tables: [public.orders]\n    outputs: [{ topic: orders, format: json }]\n  - tables: [\"*.*\"]\n    default: true\n    outputs: [{ topic: \"all.{table}\", format: json }]\n  - tables: [\"audit.*\"]\n    outputs: [{ topic: audit, format: csv-audit }]\n";
    let config = parse_with_env(text, "ordo.yaml", env).unwrap();
    let indexes = |namespace, table| {
        config
            .mappings_for(namespace, table)
            .map(|(index, _)| index)
            .collect::<Vec<_>>()
    };
    assert_eq!(indexes("public", "orders"), [0]);
    assert_eq!(indexes("public", "customers"), [1], "the fallback rule");
    assert_eq!(indexes("audit", "log"), [2]);
}
