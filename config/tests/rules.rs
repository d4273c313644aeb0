//! The validation rules not covered by `errors.rs`, each checked by path and message.

use ordo_config::parse_with_env;

fn env(name: &str) -> Option<String> {
    match name {
        "SET" => Some(String::from("value")),
        "KEY" => Some("ab".repeat(32)),
        _ => None,
    }
}

/// (path, message) of every error in a file made of `source`, `kafka` and `rest`.
fn problems(source: &str, kafka: &str, rest: &str) -> Vec<(String, String)> {
    let text = format!("source:\n{source}kafka:\n{kafka}{rest}");
    match parse_with_env(&text, "ordo.yaml", env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .errors
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect(),
    }
}

const PG: &str = "  postgres:\n    user: ordo\n    database: shop\n";
const KAFKA: &str = "  bootstrap_servers: \"k:9092\"\n  commit_topic: commits\n";
const MAPPING: &str =
    "mappings:\n  - tables: [public.t]\n    outputs: [{ topic: t, format: json }]\n";

/// Problems of a file whose only output has `fields` (flow mapping entries) added.
fn output_problems(fields: &str) -> Vec<(String, String)> {
    let rest = format!(
        "mappings:\n  - tables: [public.t]\n    outputs: [{{ topic: t, format: json, {fields} }}]\n"
    );
    problems(PG, KAFKA, &rest)
}

fn one(path: &str, message: &str) -> Vec<(String, String)> {
    vec![(path.to_owned(), message.to_owned())]
}

#[test]
fn tls_needs_cert_and_key_together_and_existing_files() {
    let source = format!("{PG}    tls: {{ mode: verify-full, cert_file: /nonexistent/c.pem }}\n");
    assert_eq!(
        problems(&source, KAFKA, MAPPING),
        [
            (
                String::from("source.postgres.tls.cert_file"),
                String::from("`cert_file` is set without `key_file`")
            ),
            (
                String::from("source.postgres.tls.cert_file"),
                String::from("file `/nonexistent/c.pem` does not exist")
            ),
        ]
    );
}

#[test]
fn postgres_names_and_protocol_are_checked() {
    let source = format!("{PG}    protocol_version: 9\n    publication: \"\"\n");
    assert_eq!(
        problems(&source, KAFKA, MAPPING),
        [
            (
                String::from("source.postgres.protocol_version"),
                String::from("pgoutput protocol version 9 does not exist")
            ),
            (
                String::from("source.postgres.publication"),
                String::from("`` is not a valid publication name")
            ),
        ]
    );
}

#[test]
fn mysql_server_id_must_not_be_zero() {
    let source = "  mysql:\n    user: ordo\n    server_id: 0\n";
    assert_eq!(
        problems(source, KAFKA, MAPPING),
        one(
            "source.mysql.server_id",
            "server_id 0 is not allowed for a replica"
        )
    );
}

#[test]
fn brokers_need_valid_ports() {
    let kafka = "  bootstrap_servers: \"a:9092, [::1]:9093, b:x\"\n  commit_topic: c\n";
    assert_eq!(
        problems(PG, kafka, MAPPING),
        one(
            "kafka.bootstrap_servers",
            "broker `b:x` has an invalid port"
        )
    );
}

#[test]
fn kafka_properties_cannot_set_brokers() {
    let kafka = format!("{KAFKA}  properties:\n    bootstrap.servers: x:1\n");
    assert_eq!(
        problems(PG, &kafka, MAPPING),
        one(
            "kafka.properties.\"bootstrap.servers\"",
            "`bootstrap.servers` is set through `kafka.bootstrap_servers`"
        )
    );
}

#[test]
fn schema_registry_needs_an_http_url_and_a_user_for_its_password() {
    let rest = format!("schema_registry:\n  url: registry:8081\n  password: pw\n{MAPPING}");
    assert_eq!(
        problems(PG, KAFKA, &rest),
        [
            (
                String::from("schema_registry.url"),
                String::from("`registry:8081` is not an http(s) url")
            ),
            (
                String::from("schema_registry.password"),
                String::from("`password` is set without `username`")
            ),
        ]
    );
}

#[test]
fn encryption_keys_need_one_source_and_unique_ids() {
    let rest = format!(
        "encryption:\n  active_key: a\n  keys:\n    - {{ id: a, env: SET, file: /x }}\n    \
         - {{ id: a, env: UNSET }}\n{MAPPING}"
    );
    assert_eq!(
        problems(PG, KAFKA, &rest),
        [
            (
                String::from("encryption.keys[0]"),
                String::from("both `file` and `env` are set")
            ),
            (
                String::from("encryption.keys[1].id"),
                String::from("key id `a` is used twice")
            ),
            (
                String::from("encryption.keys[1].env"),
                String::from("secret `UNSET` is not set in the environment")
            ),
        ]
    );
}

#[test]
fn encryption_keys_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k1.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "source:\n{PG}kafka:\n{KAFKA}encryption:\n  active_key: k1\n  keys:\n    \
         - {{ id: k1, file: {} }}\n{MAPPING}",
        key.display()
    );
    let config = parse_with_env(&text, "ordo.yaml", env).unwrap();
    let encryption = config.encryption.unwrap();
    let key = encryption.active().unwrap();
    assert_eq!(key.material().expose(), "ab".repeat(32));
    assert_eq!(key.key_bytes(), Some(&[0xab; 32]));
    assert!(!format!("{encryption:?}").contains("abab"));
}

#[test]
fn kcop_is_only_for_custom_outputs() {
    assert_eq!(
        output_problems("kcop: mine"),
        one(
            "mappings[0].outputs[0].kcop",
            "`kcop` is only used with `format: custom`, not `json`"
        )
    );
}

#[test]
fn key_columns_are_only_for_column_keys() {
    assert_eq!(
        output_problems("key_columns: [id]"),
        one(
            "mappings[0].outputs[0].key_columns",
            "`key_columns` is only used with `key: columns`, not `primary`"
        )
    );
}

#[test]
fn encrypted_columns_must_be_projected() {
    let rest = "encryption:\n  active_key: k\n  keys: [{ id: k, env: KEY }]\n\
                mappings:\n  - tables: [public.t]\n    \
                outputs: [{ topic: t, format: json, columns: [id], encrypt: [card] }]\n";
    assert_eq!(
        problems(PG, KAFKA, rest),
        one(
            "mappings[0].outputs[0].encrypt[0]",
            "column `card` is encrypted but not in `columns`"
        )
    );
}

#[test]
fn filters_and_headers_must_not_be_empty() {
    assert_eq!(
        output_problems("filter: \" \", headers: { region: \"\" }"),
        [
            (
                String::from("mappings[0].outputs[0].filter"),
                String::from("the filter is empty")
            ),
            (
                String::from("mappings[0].outputs[0].headers.region"),
                String::from("header `region` has no expression")
            ),
        ]
    );
}

#[test]
fn mappings_and_outputs_must_not_be_empty() {
    assert_eq!(
        problems(PG, KAFKA, "mappings: []\n"),
        one(
            "mappings",
            "no mapping is given, so nothing would be published"
        )
    );
    assert_eq!(
        problems(PG, KAFKA, "mappings:\n  - { tables: [], outputs: [] }\n"),
        [
            (
                String::from("mappings[0].tables"),
                String::from("no table is listed")
            ),
            (
                String::from("mappings[0].outputs"),
                String::from("no output is listed")
            ),
        ]
    );
}

#[test]
fn same_topic_and_format_in_two_mappings_is_allowed() {
    let rest = "mappings:\n  - tables: [a.b]\n    outputs: [{ topic: t, format: json }]\n  \
                - tables: [c.d]\n    outputs: [{ topic: t, format: json }]\n";
    assert_eq!(problems(PG, KAFKA, rest), []);
}

#[test]
fn log_levels_are_checked() {
    let ok = format!("{MAPPING}logging: {{ level: \"warn,ordo_capture=debug\", format: json }}\n");
    assert_eq!(problems(PG, KAFKA, &ok), []);
    let bad = format!("{MAPPING}logging: {{ level: \"infoo\" }}\n");
    assert_eq!(
        problems(PG, KAFKA, &bad),
        one(
            "logging.level",
            "`infoo` is not a log level or filter directive"
        )
    );
}

#[test]
fn metrics_listen_must_be_a_socket_address() {
    let rest = format!("{MAPPING}metrics:\n  listen: localhost\n");
    assert_eq!(
        problems(PG, KAFKA, &rest),
        one("metrics.listen", "invalid socket address syntax")
    );
}

#[test]
fn escaped_references_stay_literal() {
    let source = format!("{PG}    password: \"$${{SET}}-${{SET}}\"\n");
    let text = format!("source:\n{source}kafka:\n{KAFKA}{MAPPING}");
    let config = parse_with_env(&text, "ordo.yaml", env).unwrap();
    let ordo_config::Source::Postgres(postgres) = config.source else {
        panic!("expected a postgres source");
    };
    assert_eq!(postgres.password.unwrap().expose(), "${SET}-value");
}
