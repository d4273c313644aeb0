//! Check-time errors of the row-level steps: CEL syntax in filters, routes and headers, and
//! encryption keys (material, ids, key-file permissions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ordo_config::{ConfigError, parse_with_env};

const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn env(name: &str) -> Option<String> {
    match name {
        "GOOD_KEY" => Some(HEX_KEY.to_owned()),
        "B64_KEY" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()),
        "SHORT_KEY" => Some("abcd".to_owned()),
        _ => None,
    }
}

const HEAD: &str = "source:\n  postgres:\n    user: ordo\n    database: shop\nkafka:\n  \
                    bootstrap_servers: \"k:9092\"\n  commit_topic: commits\n";

fn errors(rest: &str) -> Vec<ConfigError> {
    match parse_with_env(&format!("{HEAD}{rest}"), "ordo.yaml", env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors,
    }
}

/// A file with one mapping of two outputs; the second gets `fields`.
fn output_errors(fields: &str) -> Vec<ConfigError> {
    errors(&format!(
        "mappings:\n  - tables: [public.t]\n    outputs:\n      - {{ topic: a, format: json }}\n      \
         - topic: b\n        format: json\n{fields}"
    ))
}

#[test]
fn filter_syntax_errors_name_the_path_and_line() {
    let found = output_errors("        filter: \"after.amount >\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e.path, "mappings[0].outputs[1].filter");
    assert_eq!(e.line, Some(14));
    assert!(
        e.message
            .starts_with("CEL syntax error at line 1, column 15 of the expression: "),
        "{}",
        e.message
    );
    assert!(e.hint.as_deref().unwrap().contains("CEL"));
}

#[test]
fn header_syntax_errors_name_the_header() {
    let found = output_errors(
        "        headers:\n          region: after.region\n          tier: \"(after.amount\"\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "mappings[0].outputs[1].headers.tier");
    assert_eq!(found[0].line, Some(16));
}

#[test]
fn route_errors_name_the_route() {
    let found = output_errors("        route: '\"audit.\" +'\n");
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e.path, "mappings[0].outputs[1].route");
    assert_eq!(e.line, Some(14));
    assert!(
        e.message.starts_with("CEL syntax error at line 1, column "),
        "{}",
        e.message
    );
    assert!(e.hint.as_deref().unwrap().contains("CEL"));

    let found = output_errors("        route: ' '\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "mappings[0].outputs[1].route");
    assert_eq!(found[0].message, "the route is empty");
}

#[test]
fn valid_expressions_pass() {
    let found = output_errors(
        "        filter: 'op == \"d\" || has(after.amount) && after.amount > 500'\n        \
         route: 'has(after.region) && after.region == \"eu\" ? \"orders.eu\" : \"audit.\" + table'\n        \
         headers: { region: after.region, at: string(txn.commit_time) }\n",
    );
    assert!(found.is_empty(), "{found:?}");
}

fn encryption(keys: &str) -> Vec<ConfigError> {
    errors(&format!(
        "encryption:\n  active_key: k1\n  keys:\n{keys}mappings:\n  - tables: [public.t]\n    \
         outputs: [{{ topic: t, format: json, encrypt: [email] }}]\n"
    ))
}

fn key_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn key_files_readable_by_others_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let open = key_file(dir.path(), "k1.key", HEX_KEY, 0o644);
    let found = encryption(&format!("    - {{ id: k1, file: {open} }}\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "encryption.keys[0].file");
    assert_eq!(
        found[0].message,
        format!("key file `{open}` may be read or written by other users (mode 0644)")
    );
    assert_eq!(
        found[0].hint.as_deref(),
        Some(&*format!("run `chmod 600 {open}`"))
    );

    let group = key_file(dir.path(), "k1g.key", HEX_KEY, 0o640);
    assert_eq!(
        encryption(&format!("    - {{ id: k1, file: {group} }}\n")).len(),
        1
    );
}

#[test]
fn private_key_files_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1.key", &format!("{HEX_KEY}\n"), 0o600);
    let k0 = key_file(dir.path(), "k0.key", HEX_KEY, 0o400);
    let text = format!(
        "{HEAD}encryption:\n  active_key: k1\n  keys:\n    - {{ id: k0, file: {k0} }}\n    \
         - {{ id: k1, file: {k1} }}\n    - {{ id: k2, env: B64_KEY }}\nmappings:\n  - tables: \
         [public.t]\n    outputs: [{{ topic: t, format: json, encrypt: [email] }}]\n"
    );
    let config = parse_with_env(&text, "ordo.yaml", env).unwrap();
    let encryption = config.encryption.unwrap();
    let expected: Vec<u8> = (0u8..32).collect();
    for key in &encryption.keys {
        assert_eq!(
            key.key_bytes().unwrap().as_slice(),
            expected.as_slice(),
            "{}",
            key.id
        );
    }
    assert!(!format!("{encryption:?}").contains("0001020304"));
}

#[test]
fn key_material_of_the_wrong_length_is_refused() {
    let found = encryption("    - { id: k1, env: SHORT_KEY }\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "encryption.keys[0].env");
    assert!(
        found[0].message.contains("decodes from base64 to 3 bytes"),
        "{}",
        found[0].message
    );
    assert!(!found[0].message.contains("abcd"));
}

#[test]
fn key_ids_cannot_hold_separators() {
    let found = errors(
        "encryption:\n  active_key: \"k:1\"\n  keys:\n    - { id: \"k:1\", env: GOOD_KEY }\n\
         mappings:\n  - tables: [public.t]\n    outputs: [{ topic: t, format: json }]\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "encryption.keys[0].id");
}
