//! `ordo status`: the last commit record and the source's position, as text and JSON, for
//! PostgreSQL (after a known workload through the real daemon) and MariaDB (nothing captured).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ordo_tests::capture::{ordo_binary, start};
use ordo_tests::config::{kafka_yaml, pg_source_yaml};
use ordo_tests::kafka::high_watermark;
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name,
    wait_until,
};

fn status(config: &Path, format: &str) -> (i32, String) {
    let out = Command::new(ordo_binary())
        .args(["status", "--format", format, "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ordo status failed: {err}");
    (out.status.code().unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_status_after_a_known_workload() {
    let (db, url) = pg_create_database("opss").await;
    let prefix = unique_name("opss");
    let source = pg_source_yaml(&db, &prefix, "never");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    let yaml = format!(
        r#"
{source}{kafka}mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
    );
    let c = pg_connect(&url).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let daemon = start(&yaml);
    let commits = format!("{prefix}.commits");
    // The slot exists once the daemon streams; then two transactions.
    pg_wait_for_slot(&c, &prefix).await;
    // Two transactions (one simple query would make them one).
    c.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (2), (3)")
        .await
        .unwrap();
    wait_until("2 commit records", Duration::from_secs(60), || {
        let commits = commits.clone();
        async move {
            let hw = tokio::task::spawn_blocking(move || high_watermark(&commits, 0))
                .await
                .unwrap();
            (hw == 2).then_some(())
        }
    })
    .await;
    daemon.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let (_, json) = status(&config, "json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let last = &v["last_commit_record"];
    assert_eq!(last["seq"], 2, "{v}");
    assert_eq!(last["ops"], 2, "{v}");
    assert!(last["position"].as_str().unwrap().starts_with("pg:"), "{v}");
    let src = &v["source"];
    assert_eq!(src["slot"], prefix.as_str());
    assert_eq!(src["slot_exists"], true);
    assert_eq!(src["slot_active"], false, "the daemon stopped");
    assert!(
        src["confirmed_flush_lsn"].as_str().unwrap().contains('/'),
        "{v}"
    );
    assert!(src["retained_wal_bytes"].as_i64().unwrap() >= 0, "{v}");
    let age = v["seconds_since_last_commit"].as_f64().unwrap();
    assert!((0.0..120.0).contains(&age), "{v}");

    let (_, text) = status(&config, "text");
    assert!(
        text.starts_with("last commit record:  seq 2 txn "),
        "{text}"
    );
    assert!(
        text.contains(&format!("  slot:              {prefix}\n")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_status_before_anything_was_captured() {
    let db = mysql_create_database("opss").await;
    let s = stack();
    let prefix = unique_name("opss");
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    let yaml = format!(
        r#"
source:
  mysql:
    host: {host}
    port: {port}
    user: ordo
    password: ordo
    tls: {{ mode: disable }}
    server_id: 4243
    databases: [{db}]
{kafka}mappings:
  - tables: ["{db}.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
"#,
        host = s.mysql_host,
        port = s.mysql_port,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let (_, json) = status(&config, "json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["last_commit_record"].is_null(), "{v}");
    let pos = v["source"]["gtid_binlog_pos"].as_str().unwrap();
    assert!(pos.is_empty() || pos.contains('-'), "a GTID position: {v}");
    let (_, text) = status(&config, "text");
    assert!(text.starts_with("last commit record:  none"), "{text}");
}
