//! Every kind of mistake is reported with its config path, line, column, message and hint.
//!
//! Each test builds a small file, so the line numbers in the expected messages can be
//! checked by eye: [`BASE`] is lines 1 to 7, and [`with_output`] puts the output's extra
//! fields from line 12 on.

use std::collections::HashMap;

use ordo_config::{ConfigError, parse_with_env};

/// A valid file up to (not including) `mappings`; 7 lines.
const BASE: &str = "\
source:
  postgres:
    user: ordo
    database: shop
kafka:
  bootstrap_servers: \"127.0.0.1:9092\"
  commit_topic: ordo.commits
";

/// An encryption key: 32 bytes as 64 hex digits.
const KEY_K1: &str = "abababababababababababababababababababababababababababababababab";

fn env(name: &str) -> Option<String> {
    let vars = HashMap::from([("ORDO_PG_PASSWORD", "pg-secret"), ("KEY_K1", KEY_K1)]);
    vars.get(name).map(|value| (*value).to_owned())
}

/// `BASE` then `rest` (from line 8).
fn file(rest: &str) -> String {
    format!("{BASE}{rest}")
}

/// `BASE` and one mapping with output `topic: orders` (line 11); `fields` are more lines of
/// that output, from line 12.
fn with_output(fields: &[&str]) -> String {
    let mut text =
        file("mappings:\n  - tables: [\"public.orders\"]\n    outputs:\n      - topic: orders\n");
    for field in fields {
        text.push_str(&format!("        {field}\n"));
    }
    text
}

fn all_errors(text: &str) -> Vec<ConfigError> {
    match parse_with_env(text, "ordo.yaml", env) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(errors) => errors.errors,
    }
}

/// The one error in `text`, displayed.
fn error(text: &str) -> String {
    let errors = all_errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors[0].to_string()
}

#[test]
fn valid_base_file_parses() {
    let config = parse_with_env(&with_output(&["format: json"]), "ordo.yaml", env).unwrap();
    assert_eq!(config.kafka.commit_topic, "ordo.commits");
}

#[test]
fn errors_are_structured() {
    let errors = all_errors(&with_output(&["format: jsn"]));
    let error = &errors[0];
    assert_eq!(error.origin, "ordo.yaml");
    assert_eq!(error.path, "mappings[0].outputs[0].format");
    assert_eq!((error.line, error.column), (Some(12), Some(17)));
    assert_eq!(error.message, "unknown format `jsn`");
    assert_eq!(
        error.hint.as_deref(),
        Some(
            "did you mean `json`? use one of: json, avro, debezium, csv-audit, audit-rows, custom"
        )
    );
}

#[test]
fn bad_yaml_syntax() {
    let text = "source:\n  postgres:\n    user: \"ordo\n    database: shop\n";
    assert_eq!(
        error(text),
        "ordo.yaml:3:11: source.postgres.user: unclosed quote\n  \
         hint: fix the YAML syntax here: check indentation, quotes and brackets"
    );
}

#[test]
fn unknown_field_suggests_the_closest() {
    assert_eq!(
        error(&with_output(&["fromat: json"])),
        "ordo.yaml:12:9: mappings[0].outputs[0].fromat: unknown field `fromat`\n  \
         hint: did you mean `format`?"
    );
}

#[test]
fn unknown_field_lists_the_fields_when_none_is_close() {
    let text = file("mappings: []\nmetrics:\n  port: 9187\n");
    assert_eq!(
        error(&text),
        "ordo.yaml:10:3: metrics.port: unknown field `port`\n  hint: expected one of: listen"
    );
}

#[test]
fn wrong_type() {
    let text = "source:\n  postgres:\n    user: ordo\n    database: shop\n    port: abc\n";
    assert_eq!(
        error(text),
        "ordo.yaml:5:11: source.postgres.port: `abc` is not a whole number from 0 to 65535\n  \
         hint: write a whole number from 0 to 65535 here"
    );
    let text = "source:\n  postgres:\n    user: [ordo]\n    database: shop\n";
    assert_eq!(
        error(text),
        "ordo.yaml:3:11: source.postgres.user: expected a single value, found a list or mapping\n  \
         hint: write a string, number or boolean here"
    );
}

#[test]
fn missing_required_field() {
    assert_eq!(
        error(&with_output(&[])),
        "ordo.yaml:11:9: mappings[0].outputs[0].format: missing field `format`\n  \
         hint: add `format: ...` to this mapping"
    );
}

#[test]
fn unknown_format() {
    assert_eq!(
        error(&with_output(&["format: yaml"])),
        "ordo.yaml:12:17: mappings[0].outputs[0].format: unknown format `yaml`\n  \
         hint: use one of: json, avro, debezium, csv-audit, audit-rows, custom"
    );
}

#[test]
fn unknown_source_kind() {
    let text = "source:\n  postgress:\n    user: ordo\n";
    assert_eq!(
        error(text),
        "ordo.yaml:2:3: source.postgress: unknown source `postgress`\n  \
         hint: did you mean `postgres`? use one of: postgres, mysql"
    );
}

#[test]
fn both_postgres_and_mysql() {
    let text = "\
source:
  postgres:
    user: ordo
    database: shop
  mysql:
    user: ordo
    server_id: 1
";
    assert_eq!(
        error(text),
        "ordo.yaml:5:3: source.mysql: both `postgres` and `mysql` are given; \
         a daemon reads one source\n  \
         hint: keep one of them, and run a second daemon with its own file for the other"
    );
}

#[test]
fn duplicate_output_in_one_mapping() {
    let text = file(
        "\
mappings:
  - tables: [\"public.orders\"]
    outputs:
      - topic: orders
        format: json
      - topic: orders
        format: json
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:13:16: mappings[0].outputs[1].topic: duplicate output: \
         mappings[0].outputs[0] already writes `json` to `orders`\n  \
         hint: remove one of the two outputs"
    );
}

#[test]
fn same_topic_with_two_formats_across_mappings() {
    let text = file(
        "\
mappings:
  - tables: [\"public.orders\"]
    outputs:
      - { topic: orders, format: json }
  - tables: [\"public.order_lines\"]
    outputs:
      - { topic: orders, format: avro }
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:14:18: mappings[1].outputs[0].topic: topic `orders` gets format `avro` \
         here but `json` from mappings[0].outputs[0]\n  \
         hint: a topic carries one format: give this output its own topic"
    );
}

#[test]
fn bad_glob_in_tables() {
    let text = file(
        "\
mappings:
  - tables: [\"public.orders\", \"public.[order\"]
    outputs:
      - { topic: orders, format: json }
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:9:31: mappings[0].tables[1]: `public.[order` is not a valid glob: \
         unclosed character class; missing ']'\n  \
         hint: use `*`, `?`, `[abc]` and `{a,b}`; escape special characters as `[*]`"
    );
}

#[test]
fn key_columns_without_key_columns() {
    assert_eq!(
        error(&with_output(&["format: json", "key: columns"])),
        "ordo.yaml:13:14: mappings[0].outputs[0].key: `key: columns` needs `key_columns`\n  \
         hint: list the key columns, e.g. `key_columns: [id]`"
    );
}

#[test]
fn encrypt_without_encryption_section() {
    assert_eq!(
        error(&with_output(&["format: json", "encrypt: [card_number]"])),
        "ordo.yaml:13:18: mappings[0].outputs[0].encrypt: columns are encrypted but there is \
         no `encryption` section\n  \
         hint: add `encryption:` with `active_key` and `keys`"
    );
}

#[test]
fn undefined_active_key() {
    let text = file(
        "\
encryption:
  active_key: k2
  keys:
    - { id: k1, env: KEY_K1 }
mappings:
  - tables: [\"public.orders\"]
    outputs:
      - { topic: orders, format: json, encrypt: [card_number] }
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:9:15: encryption.active_key: active key `k2` is not defined in `keys`\n  \
         hint: use one of: k1, or add a key with this id"
    );
}

#[test]
fn topic_template_with_unknown_placeholder() {
    let text = file(
        "\
mappings:
  - tables: [\"public.*\"]
    outputs:
      - topic: \"cdc.{schema}.{tabel}\"
        format: json
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:11:16: mappings[0].outputs[0].topic: unknown placeholder `{tabel}` in \
         topic `cdc.{schema}.{tabel}`\n  \
         hint: did you mean `{table}`? the placeholders are `{db}`, `{schema}` and `{table}`"
    );
}

#[test]
fn topic_template_with_invalid_characters() {
    let text = file(
        "\
mappings:
  - tables: [\"public.*\"]
    outputs:
      - topic: \"cdc/{table}\"
        format: json
",
    );
    assert_eq!(
        error(&text),
        "ordo.yaml:11:16: mappings[0].outputs[0].topic: topic `cdc/{table}` contains `/`\n  \
         hint: use 1 to 249 of the characters a-z, A-Z, 0-9, `.`, `_` and `-`"
    );
}

#[test]
fn missing_secret_environment_variable() {
    let text = "\
source:
  postgres:
    user: ordo
    password: ${ORDO_PG_PASSWORD_TYPO}
    database: shop
kafka:
  bootstrap_servers: \"127.0.0.1:9092\"
  commit_topic: ordo.commits
mappings:
  - tables: [\"public.orders\"]
    outputs: [{ topic: orders, format: json }]
";
    assert_eq!(
        error(text),
        "ordo.yaml:4:15: source.postgres.password: secret `ORDO_PG_PASSWORD_TYPO` is not set \
         in the environment\n  \
         hint: export it or use `{ file: ... }`"
    );
}

#[test]
fn invalid_commit_topic() {
    let text = "\
source:
  postgres: { user: ordo, database: shop }
kafka:
  bootstrap_servers: \"127.0.0.1:9092\"
  commit_topic: ordo commits
mappings:
  - tables: [\"public.orders\"]
    outputs: [{ topic: orders, format: json }]
";
    assert_eq!(
        error(text),
        "ordo.yaml:5:17: kafka.commit_topic: topic name `ordo commits` contains ` `\n  \
         hint: use 1 to 249 of the characters a-z, A-Z, 0-9, `.`, `_` and `-`"
    );
}

#[test]
fn streaming_with_protocol_version_1() {
    let text = |streaming: &str| {
        format!(
            "\
source:
  postgres:
    user: ordo
    database: shop
    protocol_version: 1
{streaming}kafka:
  bootstrap_servers: \"127.0.0.1:9092\"
  commit_topic: ordo.commits
mappings:
  - tables: [\"public.orders\"]
    outputs: [{{ topic: orders, format: json }}]
"
        )
    };
    const HINT: &str =
        "\n  hint: set `protocol_version: 2` (PostgreSQL 14 or later) or `streaming: false`";
    assert_eq!(
        error(&text("    streaming: true\n")),
        format!(
            "ordo.yaml:6:16: source.postgres.streaming: streaming needs pgoutput \
             protocol_version 2 or later{HINT}"
        )
    );
    // Streaming is on by default: the error then points at the protocol version.
    assert_eq!(
        error(&text("")),
        format!(
            "ordo.yaml:5:23: source.postgres.protocol_version: streaming needs pgoutput \
             protocol_version 2 or later{HINT}"
        )
    );
    assert!(parse_with_env(&text("    streaming: false\n"), "ordo.yaml", env).is_ok());
}

#[test]
fn several_errors_are_reported_together() {
    let text = "\
source:
  postgres:
    user: ordo
    password: ${MISSING}
    database: shop
    slot: Ordo-Slot
kafka:
  bootstrap_servers: \"127.0.0.1\"
  commit_topic: \"..\"
mappings:
  - tables: [\"orders\"]
    outputs:
      - topic: \"{table}\"
        format: custom
      - topic: \"x.{nope}\"
        format: json
        key: none
        deletes: tombstone
        columns: [id, id]
";
    let shown: Vec<String> = all_errors(text).iter().map(ToString::to_string).collect();
    let first_lines: Vec<&str> = shown.iter().filter_map(|e| e.lines().next()).collect();
    assert_eq!(
        first_lines,
        [
            "ordo.yaml:4:15: source.postgres.password: secret `MISSING` is not set in the \
             environment",
            "ordo.yaml:6:11: source.postgres.slot: `Ordo-Slot` is not a valid replication slot \
             name",
            "ordo.yaml:8:22: kafka.bootstrap_servers: broker `127.0.0.1` has no port",
            "ordo.yaml:9:17: kafka.commit_topic: `..` is not allowed as a topic name",
            "ordo.yaml:11:14: mappings[0].tables[0]: `orders` does not say which schema or \
             database the table is in",
            "ordo.yaml:13:9: mappings[0].outputs[0]: `format: custom` needs `kcop`",
            "ordo.yaml:15:16: mappings[0].outputs[1].topic: unknown placeholder `{nope}` in \
             topic `x.{nope}`",
            "ordo.yaml:18:18: mappings[0].outputs[1].deletes: `deletes: tombstone` needs a \
             record key, but `key` is `none`",
            "ordo.yaml:19:23: mappings[0].outputs[1].columns[1]: column `id` is listed twice",
        ]
    );
    assert!(shown.iter().all(|e| e.contains("\n  hint: ")), "{shown:#?}");
}
