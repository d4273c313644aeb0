//! Secrets never leak: a full `ordo check`, a succeeding and two failing `ordo run`s, `ordo
//! status` and the `/metrics` body, all with `RUST_LOG=debug`, must not contain the PostgreSQL
//! password (of a role made by the test, scram-sha-256), the Kafka SASL/SCRAM password (of a
//! private broker that requires it), the wrong passwords tried, nor the encryption key in hex or
//! base64.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ordo_tests::capture::ordo_binary;
use ordo_tests::ops::{free_local_addr, http_get};
use ordo_tests::process::write_config;
use ordo_tests::stack::{pg_connect, pg_create_database, stack, unique_name};
use ordo_tests::tls::{BrokerSecurity, PrivateBroker, TestCerts, wait_for_values};

/// The secrets of one run, as distinctive strings.
struct Secrets {
    pg_password: String,
    kafka_password: String,
    wrong_pg_password: String,
    wrong_kafka_password: String,
    key: [u8; 32],
}

impl Secrets {
    fn new() -> Self {
        let random = || unique_name("x").trim_start_matches("x_").to_owned();
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::try_from(i * 7 + 13).unwrap() ^ random().as_bytes()[0];
        }
        Self {
            pg_password: format!("PgPass{}", random()),
            kafka_password: format!("KafkaPass{}", random()),
            wrong_pg_password: format!("WrongPg{}", random()),
            wrong_kafka_password: format!("WrongKafka{}", random()),
            key,
        }
    }

    /// Every form in which a secret could show up in text.
    fn forms(&self) -> Vec<(String, &'static str)> {
        let hex: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        vec![
            (self.pg_password.clone(), "the postgresql password"),
            (self.kafka_password.clone(), "the kafka sasl password"),
            (
                self.wrong_pg_password.clone(),
                "the wrong postgresql password",
            ),
            (
                self.wrong_kafka_password.clone(),
                "the wrong kafka password",
            ),
            (hex.clone(), "the key in hex"),
            (hex.to_uppercase(), "the key in upper-case hex"),
            (hex[..16].to_owned(), "the key's first 8 bytes in hex"),
            (b64.encode(self.key), "the key in base64"),
            (b64url.encode(self.key), "the key in url-safe base64"),
            (
                b64.encode(&self.key[..12]),
                "the key's first 12 bytes in base64",
            ),
            (
                format!("{:?}", &self.key[..8]),
                "the key's bytes as a debug list",
            ),
        ]
    }
}

/// What one command printed.
struct Output {
    what: String,
    text: String,
}

fn ordo_cmd(args: &[&str], config: &Path, pg_password: &str) -> Command {
    let mut cmd = Command::new(ordo_binary());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "debug")
        .env("ORDO_SECRET_PG_PASSWORD", pg_password);
    cmd
}

fn run_to_end(what: &str, mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    Output {
        what: what.to_owned(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Starts `cmd` with stdout and stderr to `log`.
fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    cmd.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Lets a failing `ordo run` fail for up to `bound` (it may retry), then stops it.
fn failing_run(what: &str, cmd: Command, log: &Path, bound: Duration) -> Output {
    let mut child = spawn_logged(cmd, log);
    let started = Instant::now();
    while started.elapsed() < bound {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    Output {
        what: what.to_owned(),
        text: std::fs::read_to_string(log).unwrap(),
    }
}

#[allow(clippy::too_many_arguments)]
fn config(
    db: &str,
    prefix: &str,
    user: &str,
    pg_password: &str,
    bootstrap: &str,
    kafka_password: &str,
    key_file: &Path,
    metrics: &str,
) -> String {
    let s = stack();
    format!(
        r#"source:
  postgres:
    host: {host}
    port: {port}
    user: {user}
    password: "{pg_password}"
    database: {db}
    tls: {{ mode: prefer }}
    slot: {prefix}
    publication: {prefix}
    create_publication: false
    snapshot: initial
    status_interval_ms: 200
kafka:
  bootstrap_servers: "{bootstrap}"
  commit_topic: {prefix}.commits
  properties:
    security.protocol: sasl_plaintext
    sasl.mechanism: SCRAM-SHA-256
    sasl.username: ordo-secrets
    sasl.password: "{kafka_password}"
encryption:
  active_key: k1
  keys:
    - {{ id: k1, file: {key} }}
metrics:
  listen: "{metrics}"
mappings:
  - tables: ["public.customers"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
        encrypt: [email]
"#,
        host = s.pg_host,
        port = s.pg_port,
        key = key_file.display(),
    )
}

fn key_file(dir: &Path, key: &[u8; 32]) -> PathBuf {
    let path = dir.join("k1.key");
    let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, text + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A role with a password and REPLICATION, a table it may read and a publication for it.
async fn pg_setup(secrets: &Secrets) -> (String, String, String) {
    let (db, url) = pg_create_database("secr").await;
    let role = unique_name("secr_role");
    let admin = pg_connect(&url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{pw}';
             CREATE TABLE customers (id int PRIMARY KEY, email text);
             INSERT INTO customers VALUES (1, 'one@example.com');
             GRANT SELECT ON customers TO {role};
             CREATE PUBLICATION {role} FOR TABLE customers;",
            pw = secrets.pg_password
        ))
        .await
        .unwrap();
    (db, role, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output() {
    let secrets = Secrets::new();
    let certs = tokio::task::spawn_blocking(TestCerts::generate)
        .await
        .unwrap();
    let broker = PrivateBroker::start(
        BrokerSecurity::Scram,
        &certs,
        &[("ordo-secrets", &secrets.kafka_password)],
    )
    .await;
    let (db, role, url) = pg_setup(&secrets).await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), &secrets.key);
    let metrics = free_local_addr();
    let yaml = |pg: &str, kafka: &str, prefix: &str| {
        config(
            &db,
            prefix,
            &role,
            pg,
            &broker.bootstrap,
            kafka,
            &key,
            &metrics.to_string(),
        )
    };
    // The publication is named after the role; the slot after the prefix.
    let good = write_config(
        dir.path(),
        "good.yaml",
        &yaml("${ORDO_SECRET_PG_PASSWORD}", &secrets.kafka_password, &role),
    );
    let mut outputs = Vec::new();

    outputs.push(run_to_end(
        "ordo check",
        ordo_cmd(&["check"], &good, &secrets.pg_password),
    ));
    assert!(
        outputs[0].text.contains("source and kafka: ready"),
        "{}",
        outputs[0].text
    );

    let log = dir.path().join("run.log");
    let mut run = spawn_logged(ordo_cmd(&["run"], &good, &secrets.pg_password), &log);
    let admin = pg_connect(&url).await;
    let commits = format!("{role}.commits");
    let props = [
        ("bootstrap.servers", broker.bootstrap.clone()),
        ("security.protocol", "sasl_plaintext".to_owned()),
        ("sasl.mechanism", "SCRAM-SHA-256".to_owned()),
        ("sasl.username", "ordo-secrets".to_owned()),
        ("sasl.password", secrets.kafka_password.clone()),
    ];
    wait_for_values(&props, &commits, 1).await;
    admin
        .batch_execute("INSERT INTO customers VALUES (2, 'two@example.com')")
        .await
        .unwrap();
    wait_for_values(&props, &commits, 2).await;
    let (code, body) = http_get(metrics, "/metrics")
        .await
        .expect("the metrics endpoint");
    assert_eq!(code, 200);
    outputs.push(Output {
        what: "/metrics".to_owned(),
        text: body,
    });
    outputs.push(run_to_end(
        "ordo status",
        ordo_cmd(&["status"], &good, &secrets.pg_password),
    ));
    outputs.push(run_to_end(
        "ordo status --format json",
        ordo_cmd(&["status", "--format", "json"], &good, &secrets.pg_password),
    ));
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = run.wait().unwrap();
    outputs.push(Output {
        what: "ordo run".to_owned(),
        text: std::fs::read_to_string(&log).unwrap(),
    });
    assert!(
        status.success(),
        "ordo run: {}",
        outputs.last().unwrap().text
    );

    // Failing runs and checks: a wrong PostgreSQL password, a wrong Kafka password.
    let bad_pg = write_config(
        dir.path(),
        "bad-pg.yaml",
        &yaml(
            &secrets.wrong_pg_password,
            &secrets.kafka_password,
            &unique_name("secb"),
        ),
    );
    let bad_kafka = write_config(
        dir.path(),
        "bad-kafka.yaml",
        &yaml(
            &secrets.pg_password,
            &secrets.wrong_kafka_password,
            &unique_name("secc"),
        ),
    );
    for (name, path) in [
        ("wrong pg password", &bad_pg),
        ("wrong kafka password", &bad_kafka),
    ] {
        let out = run_to_end(
            &format!("ordo check, {name}"),
            ordo_cmd(&["check"], path, &secrets.pg_password),
        );
        let cause = if name.contains("pg") {
            "password authentication failed"
        } else {
            "SASL authentication error"
        };
        assert!(out.text.contains(cause), "{name}: {}", out.text);
        outputs.push(out);
        outputs.push(failing_run(
            &format!("ordo run, {name}"),
            ordo_cmd(&["run"], path, &secrets.pg_password),
            &dir.path().join(format!("{}.log", unique_name("fail"))),
            Duration::from_secs(20),
        ));
    }

    let total: usize = outputs.iter().map(|o| o.text.len()).sum();
    assert!(total > 10_000, "debug logging produced only {total} bytes");
    for out in &outputs {
        for (secret, name) in secrets.forms() {
            assert!(
                !out.text.contains(&secret),
                "{name} appears in the output of {}:\n{}",
                out.what,
                out.text
            );
        }
    }
    drop(broker);
}
