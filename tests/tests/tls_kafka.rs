//! TLS and SASL/SCRAM to Kafka through librdkafka properties in `kafka.properties`, against
//! private nisshi brokers: one with a TLS listener (certificate made by the test), one that
//! requires SCRAM authentication. Records and commit records arrive; a wrong CA or a wrong
//! password makes `ordo check` name the property to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use ordo_tests::capture::start;
use ordo_tests::config::pg_source_yaml;
use ordo_tests::process::{ordo, write_config};
use ordo_tests::stack::{pg_connect, pg_create_database, unique_name};
use ordo_tests::tls::{BrokerSecurity, PrivateBroker, TestCerts, wait_for_values};

fn yaml(db: &str, prefix: &str, bootstrap: &str, props: &[(&str, String)]) -> String {
    let source = pg_source_yaml(db, prefix, "initial");
    let props: String = props
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    format!(
        r#"{source}kafka:
  bootstrap_servers: "{bootstrap}"
  commit_topic: {prefix}.commits
  properties:
{props}mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#
    )
}

fn check(dir: &Path, yaml: &str) -> (i32, String) {
    let path = write_config(dir, &format!("{}.yaml", unique_name("kchk")), yaml);
    ordo(&["check", "--config", path.to_str().unwrap()])
}

fn assert_has(out: &str, wanted: &str) {
    assert!(out.contains(wanted), "expected {wanted:?} in:\n{out}");
}

/// Captures two transactions (snapshot + insert) through the broker with `props`.
async fn capture_end_to_end(bootstrap: &str, props: &[(&str, String)]) {
    let (db, url) = pg_create_database("tlsk").await;
    let c = pg_connect(&url).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let prefix = unique_name("tlsk");
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(&db, &prefix, bootstrap, props);
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 0, "{out}");
    assert_has(&out, "source and kafka: ready");
    let mut daemon = start(&yaml);
    let mut read = props.to_vec();
    read.push(("bootstrap.servers", bootstrap.to_owned()));
    wait_for_values(&read, &format!("{prefix}.commits"), 1).await;
    c.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
    wait_for_values(&read, &format!("{prefix}.commits"), 2).await;
    assert!(wait_for_values(&read, &format!("{prefix}.t"), 2).await >= 2);
    daemon.assert_running().await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_and_a_wrong_ca() {
    let certs = tokio::task::spawn_blocking(TestCerts::generate)
        .await
        .unwrap();
    let broker = PrivateBroker::start(BrokerSecurity::Tls, &certs, &[]).await;
    let ca = certs.ca.display().to_string();
    let tls = [
        ("security.protocol", "ssl".to_owned()),
        ("ssl.ca.location", ca),
    ];
    capture_end_to_end(&broker.bootstrap, &tls).await;

    let dir = tempfile::tempdir().unwrap();
    let wrong = [
        ("security.protocol", "ssl".to_owned()),
        ("ssl.ca.location", certs.wrong_ca.display().to_string()),
    ];
    let (code, out) = check(
        dir.path(),
        &yaml("postgres", &unique_name("tlskw"), &broker.bootstrap, &wrong),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: the kafka cluster is unreachable");
    assert_has(&out, "certificate verify failed");
    assert_has(&out, "fix: set kafka.properties ssl.ca.location");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_sasl_scram_and_a_wrong_password() {
    let certs = tokio::task::spawn_blocking(TestCerts::generate)
        .await
        .unwrap();
    let user = "ordo-scram-user";
    let password = "Scram-pw-4tls-kafka";
    let broker = PrivateBroker::start(BrokerSecurity::Scram, &certs, &[(user, password)]).await;
    let sasl = |mechanism: &str, password: &str| {
        vec![
            ("security.protocol", "sasl_plaintext".to_owned()),
            ("sasl.mechanism", mechanism.to_owned()),
            ("sasl.username", user.to_owned()),
            ("sasl.password", password.to_owned()),
        ]
    };
    capture_end_to_end(&broker.bootstrap, &sasl("SCRAM-SHA-256", password)).await;

    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_name("tlsks");
    let (code, out) = check(
        dir.path(),
        &yaml(
            "postgres",
            &prefix,
            &broker.bootstrap,
            &sasl("SCRAM-SHA-512", password),
        ),
    );
    assert!(!out.contains("the kafka cluster"), "SCRAM-SHA-512: {out}");
    let _ = code;
    let (code, out) = check(
        dir.path(),
        &yaml(
            "postgres",
            &prefix,
            &broker.bootstrap,
            &sasl("SCRAM-SHA-256", "not-the-password"),
        ),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: the kafka cluster is unreachable");
    assert_has(&out, "SASL authentication error");
    assert_has(
        &out,
        "fix: check kafka.properties sasl.mechanism, sasl.username and sasl.password",
    );
    assert!(!out.contains("not-the-password"), "{out}");
    // nisshi offers SCRAM only: PLAIN is refused by the broker.
    let (code, out) = check(
        dir.path(),
        &yaml(
            "postgres",
            &prefix,
            &broker.bootstrap,
            &sasl("PLAIN", password),
        ),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: the kafka cluster is unreachable");
    assert!(broker.log().len() < 1_000_000);
}
