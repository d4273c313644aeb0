//! TLS to the source databases: private PostgreSQL and MariaDB servers with certificates made by
//! the test. `verify-full` captures end to end, a wrong CA and a server without TLS are refused
//! with errors that name the setting and the fix, `require` needs no CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use ordo_tests::capture::start;
use ordo_tests::config::kafka_yaml;
use ordo_tests::kafka::{wait_for_commits, wait_for_records};
use ordo_tests::ops::ThrowawayPg;
use ordo_tests::process::{OrdoRun, ordo, write_config};
use ordo_tests::stack::{pg_connect, unique_name};
use ordo_tests::tls::{PrivateMariadb, TestCerts, start_tls_pg};

/// `tls:` as a YAML flow mapping.
fn tls_yaml(mode: &str, ca: Option<&Path>) -> String {
    match ca {
        Some(ca) => format!("{{ mode: {mode}, ca_file: \"{}\" }}", ca.display()),
        None => format!("{{ mode: {mode} }}"),
    }
}

fn pg_yaml(port: u16, host: &str, tls: &str, prefix: &str) -> String {
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    format!(
        r#"source:
  postgres:
    host: {host}
    port: {port}
    user: ordo
    database: postgres
    tls: {tls}
    slot: {prefix}
    publication: {prefix}
    snapshot: initial
    status_interval_ms: 200
{kafka}mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#
    )
}

fn my_yaml(port: u16, tls: &str, db: &str, prefix: &str) -> String {
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    format!(
        r#"source:
  mysql:
    flavor: mariadb
    host: 127.0.0.1
    port: {port}
    user: ordo
    password: ordo
    tls: {tls}
    server_id: 7301
    snapshot: initial
    databases: [{db}]
{kafka}mappings:
  - tables: ["{db}.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#
    )
}

fn check(dir: &Path, yaml: &str) -> (i32, String) {
    let path = write_config(dir, &format!("{}.yaml", unique_name("tls")), yaml);
    ordo(&["check", "--config", path.to_str().unwrap()])
}

fn assert_has(out: &str, wanted: &str) {
    assert!(out.contains(wanted), "expected {wanted:?} in:\n{out}");
}

/// `ordo run` must stop by itself with a non-zero code; returns its log.
async fn run_fails(dir: &Path, yaml: &str) -> String {
    let config = write_config(dir, &format!("{}.yaml", unique_name("run")), yaml);
    let mut run = OrdoRun::start(&config, &dir.join(format!("{}.log", unique_name("run"))));
    let (code, _) = run.wait_exit(Duration::from_secs(60)).await;
    let log = run.log_text();
    assert_ne!(code, 0, "ordo run should fail:\n{log}");
    log
}

/// A private PostgreSQL with TLS on and the table `t` in database `postgres`.
async fn tls_pg() -> (TestCerts, ThrowawayPg) {
    let (certs, pg) = tokio::task::spawn_blocking(|| {
        let certs = TestCerts::generate();
        let pg = start_tls_pg(&certs);
        (certs, pg)
    })
    .await
    .unwrap();
    create_table(pg.port).await;
    (certs, pg)
}

async fn create_table(port: u16) {
    let c = pg_connect(&format!("postgresql://ordo@127.0.0.1:{port}/postgres")).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_captures_over_tls() {
    let (certs, pg) = tls_pg().await;
    let url = format!("postgresql://ordo@127.0.0.1:{}/postgres", pg.port);
    let c = pg_connect(&url).await;
    let prefix = unique_name("tlspg");
    let dir = tempfile::tempdir().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let yaml = pg_yaml(
            pg.port,
            host,
            &tls_yaml("verify-full", Some(&certs.ca)),
            &prefix,
        );
        let (code, out) = check(dir.path(), &yaml);
        assert_eq!(code, 0, "ordo check over verify-full to {host}:\n{out}");
        assert_has(&out, "source and kafka: ready");
    }
    let yaml = pg_yaml(
        pg.port,
        "127.0.0.1",
        &tls_yaml("verify-full", Some(&certs.ca)),
        &prefix,
    );
    let mut daemon = start(&yaml);
    let commits = format!("{prefix}.commits");
    wait_for_commits(&commits, 1).await; // the snapshot
    c.batch_execute("INSERT INTO t VALUES (2, 'b')")
        .await
        .unwrap();
    wait_for_commits(&commits, 2).await;
    wait_for_records(&format!("{prefix}.t"), 2).await;
    // Both the replication session and the SQL session are encrypted.
    let rows = c
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a \
             USING (pid) WHERE a.application_name LIKE 'ordo%'",
            &[],
        )
        .await
        .unwrap();
    daemon.assert_running().await;
    let sessions: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        sessions
            .iter()
            .any(|(app, _)| app == &format!("ordo/{prefix}")),
        "{sessions:?}"
    );
    assert!(sessions.iter().all(|(_, ssl)| *ssl), "{sessions:?}");
    daemon.stop().await.unwrap();
    drop(c);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_ca_is_refused_and_require_needs_none() {
    let (certs, pg) = tls_pg().await;
    let prefix = unique_name("tlspgca");
    let dir = tempfile::tempdir().unwrap();
    let wrong = pg_yaml(
        pg.port,
        "127.0.0.1",
        &tls_yaml("verify-full", Some(&certs.wrong_ca)),
        &prefix,
    );
    let (code, out) = check(dir.path(), &wrong);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: tls to the source is failing");
    assert_has(&out, "not signed by a certificate authority in");
    assert_has(
        &out,
        "set source.postgres.tls.ca_file to the PEM certificate",
    );
    assert_has(&out, &format!("127.0.0.1:{}", pg.port));
    let log = run_fails(dir.path(), &wrong).await;
    assert_has(&log, "source.postgres.tls.ca_file");
    assert_has(&log, "not signed by a certificate authority");
    // verify-ca with the wrong CA fails the same way.
    let (code, out) = check(
        dir.path(),
        &pg_yaml(
            pg.port,
            "127.0.0.1",
            &tls_yaml("verify-ca", Some(&certs.wrong_ca)),
            &prefix,
        ),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "source.postgres.tls.ca_file");
    for mode in ["require", "prefer"] {
        let (code, out) = check(
            dir.path(),
            &pg_yaml(pg.port, "127.0.0.1", &tls_yaml(mode, None), &prefix),
        );
        assert_eq!(code, 0, "{mode}: {out}");
    }
    let (code, out) = check(
        dir.path(),
        &pg_yaml(
            pg.port,
            "127.0.0.1",
            &tls_yaml("verify-ca", Some(&certs.ca)),
            &prefix,
        ),
    );
    assert_eq!(code, 0, "verify-ca: {out}");
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_tls_is_refused_under_require() {
    let pg = tokio::task::spawn_blocking(|| ThrowawayPg::start(&["wal_level=logical"]))
        .await
        .unwrap();
    create_table(pg.port).await;
    let prefix = unique_name("tlspgno");
    let dir = tempfile::tempdir().unwrap();
    for mode in ["require", "verify-full"] {
        let (code, out) = check(
            dir.path(),
            &pg_yaml(pg.port, "127.0.0.1", &tls_yaml(mode, None), &prefix),
        );
        assert_eq!(code, 2, "{out}");
        assert_has(
            &out,
            &format!(
                "source.postgres.tls.mode is {mode} but the server at 127.0.0.1:{} does not accept tls",
                pg.port
            ),
        );
    }
    let log = run_fails(
        dir.path(),
        &pg_yaml(pg.port, "127.0.0.1", &tls_yaml("require", None), &prefix),
    )
    .await;
    assert_has(&log, "does not accept tls");
    let (code, out) = check(
        dir.path(),
        &pg_yaml(pg.port, "127.0.0.1", &tls_yaml("prefer", None), &prefix),
    );
    assert_eq!(code, 0, "prefer falls back to plain text: {out}");
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_verify_full_captures_over_tls_and_a_wrong_ca_is_refused() {
    let certs = tokio::task::spawn_blocking(TestCerts::generate)
        .await
        .unwrap();
    let my = PrivateMariadb::start(Some(&certs)).await;
    let db = unique_name("tlsmy");
    my.sql(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id int PRIMARY KEY, v text); \
         INSERT INTO {db}.t VALUES (1, 'a'); \
         ALTER USER 'ordo'@'%' REQUIRE SSL;"
    ));
    let prefix = unique_name("tlsmy");
    let dir = tempfile::tempdir().unwrap();
    let good = my_yaml(
        my.port,
        &tls_yaml("verify-full", Some(&certs.ca)),
        &db,
        &prefix,
    );
    let (code, out) = check(dir.path(), &good);
    assert_eq!(code, 0, "{out}");
    for (mode, ca) in [
        ("require", None),
        ("verify-ca", Some(&certs.ca)),
        ("prefer", None),
    ] {
        let (code, out) = check(
            dir.path(),
            &my_yaml(
                my.port,
                &tls_yaml(mode, ca.map(|c| c.as_path())),
                &db,
                &prefix,
            ),
        );
        assert_eq!(code, 0, "{mode}: {out}");
    }
    let wrong = my_yaml(
        my.port,
        &tls_yaml("verify-full", Some(&certs.wrong_ca)),
        &db,
        &prefix,
    );
    let (code, out) = check(dir.path(), &wrong);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: tls to the source is failing");
    assert_has(&out, "set source.mysql.tls.ca_file to the PEM certificate");
    let log = run_fails(dir.path(), &wrong).await;
    assert_has(&log, "source.mysql.tls.ca_file");
    let mut daemon = start(&good);
    let commits = format!("{prefix}.commits");
    wait_for_commits(&commits, 1).await;
    my.sql(&format!("INSERT INTO {db}.t VALUES (2, 'b')"));
    wait_for_commits(&commits, 2).await;
    wait_for_records(&format!("{prefix}.t"), 2).await;
    daemon.assert_running().await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_without_tls_is_refused_under_require() {
    let my = PrivateMariadb::start(None).await;
    let db = unique_name("tlsmyno");
    my.sql(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id int PRIMARY KEY)"
    ));
    let prefix = unique_name("tlsmyno");
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(
        dir.path(),
        &my_yaml(my.port, &tls_yaml("require", None), &db, &prefix),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(
        &out,
        &format!(
            "source.mysql.tls.mode is require but the server at 127.0.0.1:{} does not accept tls",
            my.port
        ),
    );
    let (code, out) = check(
        dir.path(),
        &my_yaml(my.port, &tls_yaml("prefer", None), &db, &prefix),
    );
    assert_eq!(code, 0, "prefer falls back to plain text: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    // The servers' certificate names db.example only; ordo connects to 127.0.0.1.
    let (certs, pg) = tokio::task::spawn_blocking(|| {
        let certs = TestCerts::generate_for("DNS:db.example");
        let pg = start_tls_pg(&certs);
        (certs, pg)
    })
    .await
    .unwrap();
    create_table(pg.port).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_name("tlsname");
    let full = pg_yaml(
        pg.port,
        "127.0.0.1",
        &tls_yaml("verify-full", Some(&certs.ca)),
        &prefix,
    );
    let (code, out) = check(dir.path(), &full);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "does not name the host `127.0.0.1`");
    assert_has(&out, "set source.postgres.tls.mode to verify-ca");
    let ca = pg_yaml(
        pg.port,
        "127.0.0.1",
        &tls_yaml("verify-ca", Some(&certs.ca)),
        &prefix,
    );
    let (code, out) = check(dir.path(), &ca);
    assert_eq!(code, 0, "{out}");
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();

    let my = PrivateMariadb::start(Some(&certs)).await;
    let db = unique_name("tlsname");
    my.sql(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id int PRIMARY KEY)"
    ));
    let (code, out) = check(
        dir.path(),
        &my_yaml(
            my.port,
            &tls_yaml("verify-full", Some(&certs.ca)),
            &db,
            &prefix,
        ),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "does not name the host `127.0.0.1`");
    let (code, out) = check(
        dir.path(),
        &my_yaml(
            my.port,
            &tls_yaml("verify-ca", Some(&certs.ca)),
            &db,
            &prefix,
        ),
    );
    assert_eq!(code, 0, "verify-ca: {out}");
    let (code, out) = check(
        dir.path(),
        &my_yaml(
            my.port,
            &tls_yaml("verify-ca", Some(&certs.wrong_ca)),
            &db,
            &prefix,
        ),
    );
    assert_eq!(code, 2, "verify-ca, wrong CA: {out}");
    assert_has(&out, "source.mysql.tls.ca_file");
}

/// A PostgreSQL that admits TCP clients by certificate only (`hostssl ... cert`): with
/// `cert_file` and `key_file`, ordo's SQL and replication sessions both log in and capture;
/// without them, `ordo check` and `ordo run` name the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_client_certificate_login() {
    let (certs, pg) = tls_pg().await;
    pg.set_hba(
        "local all all trust\n\
         hostssl all ordo 127.0.0.1/32 cert\n\
         hostssl replication ordo 127.0.0.1/32 cert\n",
    );
    let prefix = unique_name("tlspgcert");
    let dir = tempfile::tempdir().unwrap();
    let with_cert = format!(
        "{{ mode: verify-full, ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let yaml = pg_yaml(pg.port, "127.0.0.1", &with_cert, &prefix);
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 0, "ordo check with a client certificate:\n{out}");
    let daemon = start(&yaml);
    let commits = format!("{prefix}.commits");
    wait_for_commits(&commits, 1).await; // the snapshot, read over the SQL session
    pg.psql("INSERT INTO t VALUES (2, 'b')");
    wait_for_commits(&commits, 2).await; // streamed over the replication session
    wait_for_records(&format!("{prefix}.t"), 2).await;
    daemon.stop().await.unwrap();

    let other = unique_name("tlspgnocert");
    let without = pg_yaml(
        pg.port,
        "127.0.0.1",
        &tls_yaml("verify-full", Some(&certs.ca)),
        &other,
    );
    let (code, out) = check(dir.path(), &without);
    assert_eq!(code, 2, "ordo check without a client certificate:\n{out}");
    assert_has(&out, "certificate");
    let log = run_fails(dir.path(), &without).await;
    assert_has(&log, "certificate");
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
