//! `ordo check` against deliberately unready servers: each problem is named with its fix and
//! the exit code is 2; a ready setup exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use ordo_tests::capture::ordo_binary;
use ordo_tests::ops::ThrowawayPg;
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, stack, unique_name,
};

struct Pg<'a> {
    port: u16,
    user: &'a str,
    password: Option<&'a str>,
    db: &'a str,
    publication: &'a str,
    create_publication: bool,
}

fn pg_yaml(pg: &Pg<'_>, commit_topic: &str, kafka: &str) -> String {
    let password = pg
        .password
        .map_or(String::new(), |p| format!("password: {p}"));
    format!(
        r#"
source:
  postgres:
    host: 127.0.0.1
    port: {port}
    user: {user}
    {password}
    database: {db}
    tls: {{ mode: disable }}
    slot: {publication}
    publication: {publication}
    create_publication: {create}
kafka:
  bootstrap_servers: "{kafka}"
  commit_topic: {commit_topic}
mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{publication}.{{table}}"
        format: json
"#,
        port = pg.port,
        user = pg.user,
        db = pg.db,
        publication = pg.publication,
        create = pg.create_publication,
    )
}

/// Run `ordo check` on `yaml`: the exit code and stdout.
fn check(dir: &Path, yaml: &str) -> (i32, String) {
    let path = dir.join(format!("{}.yaml", unique_name("check")));
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(ordo_binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn assert_has(out: &str, wanted: &str) {
    assert!(out.contains(wanted), "expected {wanted:?} in:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_role_privileges_identity_and_publication_problems() {
    let (db, url) = pg_create_database("chk").await;
    let publication = unique_name("chk");
    let c = pg_connect(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE noid (a int, b text);
         CREATE PUBLICATION {publication} FOR TABLE orders;"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = stack();
    let pg = Pg {
        port: s.pg_port,
        user: "ordo_norepl",
        password: Some("ordo_norepl"),
        db: &db,
        publication: &publication,
        create_publication: false,
    };
    let (code, out) = check(
        dir.path(),
        &pg_yaml(&pg, &format!("{publication}.commits"), &s.kafka),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(
        &out,
        "problem: the REPLICATION attribute is missing for role ordo_norepl",
    );
    assert_has(&out, "fix: ALTER ROLE \"ordo_norepl\" REPLICATION");
    assert_has(
        &out,
        "problem: SELECT on public.orders is not granted to ordo_norepl",
    );
    assert_has(
        &out,
        "fix: GRANT SELECT ON \"public\".\"orders\" TO \"ordo_norepl\"",
    );
    assert_has(
        &out,
        "problem: the replica identity of public.noid is DEFAULT without a primary key",
    );
    assert_has(
        &out,
        "fix: ALTER TABLE \"public\".\"noid\" REPLICA IDENTITY FULL (or add a primary key)",
    );
    assert_has(
        &out,
        &format!("problem: publication {publication} is without mapped table public.noid"),
    );
    assert_has(
        &out,
        &format!("fix: ALTER PUBLICATION \"{publication}\" ADD TABLE \"public\".\"noid\""),
    );
    assert!(
        !out.contains("public.orders is DEFAULT"),
        "orders has a primary key:\n{out}"
    );
    assert!(
        !out.contains("wal_level"),
        "the stack server has wal_level=logical:\n{out}"
    );

    // Fixed as the output says (as the superuser, which needs no grants), the check passes.
    c.batch_execute(&format!(
        "ALTER TABLE noid REPLICA IDENTITY FULL; ALTER PUBLICATION {publication} ADD TABLE noid;"
    ))
    .await
    .unwrap();
    let ok = Pg {
        user: "ordo",
        password: Some("ordo"),
        ..pg
    };
    let (code, out) = check(
        dir.path(),
        &pg_yaml(&ok, &format!("{publication}.commits"), &s.kafka),
    );
    assert_eq!(code, 0, "{out}");
    assert_has(&out, "source and kafka: ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_settings_on_a_throwaway_server() {
    let server = tokio::task::spawn_blocking(|| {
        ThrowawayPg::start(&[
            "wal_level=replica",
            "max_replication_slots=0",
            "max_wal_senders=0",
        ])
    })
    .await
    .unwrap();
    let c = pg_connect(&format!(
        "postgresql://ordo@127.0.0.1:{}/postgres",
        server.port
    ))
    .await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg {
        port: server.port,
        user: "ordo",
        password: None,
        db: "postgres",
        publication: "ordo",
        create_publication: true,
    };
    let (code, out) = check(
        dir.path(),
        &pg_yaml(&pg, &unique_name("chk"), &stack().kafka),
    );
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: wal_level is replica");
    assert_has(
        &out,
        "fix: ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL",
    );
    assert_has(
        &out,
        "problem: free replication slots is none (0 of max_replication_slots=0 used)",
    );
    assert_has(
        &out,
        "problem: free WAL senders is none (0 of max_wal_senders=0 used)",
    );
    assert!(
        !out.contains("REPLICATION attribute"),
        "ordo is a superuser:\n{out}"
    );
    drop(c);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_user_without_replication_and_a_bad_commit_topic() {
    let db = mysql_create_database("chk").await;
    let s = stack();
    let prefix = unique_name("chk");
    // A commit topic with three partitions, made by running the producer side once.
    let topic = format!("{prefix}.commits");
    ordo_tests::ops::create_topic(&s.kafka, &topic, 3).await;
    let yaml = format!(
        r#"
source:
  mysql:
    host: {host}
    port: {port}
    user: ordo_norepl
    password: ordo_norepl
    tls: {{ mode: disable }}
    server_id: 4242
    databases: [{db}]
kafka:
  bootstrap_servers: "{kafka}"
  commit_topic: {topic}
mappings:
  - tables: ["{db}.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
        host = s.mysql_host,
        port = s.mysql_port,
        kafka = s.kafka,
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 2, "{out}");
    assert_has(
        &out,
        "problem: the REPLICATION SLAVE privilege is missing for 'ordo_norepl'@",
    );
    assert_has(
        &out,
        "fix: GRANT REPLICATION SLAVE ON *.* TO 'ordo_norepl'@",
    );
    assert_has(
        &out,
        &format!("problem: commit topic {topic} is 3 partitions"),
    );

    let unreachable = yaml.replace(&s.kafka, "127.0.0.1:1");
    let (code, out) = check(dir.path(), &unreachable);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: the kafka cluster is unreachable");
}
