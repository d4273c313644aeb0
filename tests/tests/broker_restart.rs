//! The broker goes away mid-stream: a private nisshi broker with the persistent sqlite engine is
//! restarted twice (once SIGTERM, once SIGKILL) while PostgreSQL writers commit and the daemon
//! publishes. The daemon either rides the outage out (librdkafka retries, idempotent producer)
//! or stops with an error and is started again; either way the commit stream ends up with
//! exactly one record per committed transaction, in commit order, dense, each listing exactly
//! its records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ordo_tests::capture::spawn_ordo_run;
use ordo_tests::invariant::{assert_dense, assert_listing, decode_commits};
use ordo_tests::kafka::read_all_from;
use ordo_tests::stack::{
    pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name, wait_until,
};

const WRITERS: usize = 2;
const TXNS_PER_WRITER: usize = 50;

struct Broker {
    dir: tempfile::TempDir,
    url: String,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Broker {
            dir: tempfile::tempdir().unwrap(),
            url: format!("127.0.0.1:{port}"),
            child: None,
        };
        std::fs::write(b.dir.path().join(".env"), "").unwrap();
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let nisshi = stack()
            .nisshi
            .clone()
            .expect("the nisshi binary: run scripts/stack up");
        let url = format!("tcp://{}", self.url);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let child = Command::new(nisshi)
            .args([
                "broker",
                "--cluster-id",
                "ordo-restart-test",
                "--listener-url",
            ])
            .args([&url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("CLUSTER_ID")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nisshi");
        self.child = Some(child);
    }

    async fn ready(&self) {
        let addr = self.url.clone();
        wait_until(
            "the private broker to listen",
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
            },
        )
        .await;
    }

    fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            child.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop("-KILL");
    }
}

async fn writer(url: String, id: usize) -> Vec<u32> {
    let c = pg_connect(&url).await;
    let mut xids = Vec::new();
    for i in 0..TXNS_PER_WRITER {
        let order = (id * 10_000 + i) as i32;
        let rows = c
            .simple_query(&format!(
                "BEGIN; INSERT INTO orders VALUES ({order}, 'w{id}', {i});
                 INSERT INTO lines VALUES ({order}, 0, 'a'), ({order}, 1, 'b');
                 SELECT txid_current()::int4; COMMIT;"
            ))
            .await
            .unwrap();
        xids.extend(rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(0).map(|v| v.parse::<u32>().unwrap())
            }
            _ => None,
        }));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    xids
}

/// Keeps one daemon running: starts it again when it stopped (e.g. on a delivery error while
/// the broker was away). Returns how many times it had stopped.
fn keep_running(daemon: &mut Child, config: &Path, log: &Path) -> usize {
    match daemon.try_wait().unwrap() {
        Some(_) => {
            *daemon = spawn_ordo_run(config, log);
            1
        }
        None => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_mid_stream_keep_one_commit_record_per_transaction() {
    let mut broker = Broker::start();
    broker.ready().await;
    let (db, url) = pg_create_database("brk").await;
    let prefix = unique_name("brk");
    let s = stack();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    std::fs::write(
        &config,
        format!(
            "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: never\n    spill_dir: {}\n    status_interval_ms: 100\nkafka:\n  bootstrap_servers: \"{}\"\n  commit_topic: {prefix}.commits\n  topic_partitions: 2\nmappings:\n  - tables: [\"public.orders\", \"public.lines\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
            s.pg_host,
            s.pg_port,
            dir.path().join("spill").display(),
            broker.url
        ),
    )
    .unwrap();
    let c = pg_connect(&url).await;
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount int);
         CREATE TABLE lines (order_id int, line_no int, sku text, PRIMARY KEY (order_id, line_no));",
    )
    .await
    .unwrap();
    let mut daemon = spawn_ordo_run(&config, &log);
    pg_wait_for_slot(&c, &prefix).await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(url.clone(), w + 1)))
        .collect();
    let mut daemon_stops = 0;
    for signal in ["-TERM", "-KILL"] {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        broker.stop(signal);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        broker.spawn();
        broker.ready().await;
        daemon_stops += keep_running(&mut daemon, &config, &log);
    }
    let mut committed = BTreeSet::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    let expected = committed.len();
    let topic = format!("{prefix}.commits");
    let brokers = broker.url.clone();
    let records = wait_until(
        &format!("{expected} commit records (log: {})", log.display()),
        Duration::from_secs(120),
        || {
            daemon_stops += keep_running(&mut daemon, &config, &log);
            let (t, b) = (topic.clone(), brokers.clone());
            async move {
                let recs = tokio::task::spawn_blocking(move || read_all_from(&b, &t))
                    .await
                    .unwrap();
                (recs.len() >= expected).then(|| decode_commits(&recs))
            }
        },
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    assert!(
        daemon.wait().unwrap().success(),
        "graceful stop; log: {}",
        log.display()
    );

    assert_eq!(
        records.len(),
        expected,
        "one commit record per committed transaction"
    );
    assert_dense(&records);
    let txns: BTreeSet<u32> = records.iter().map(|r| r.txn.parse().unwrap()).collect();
    assert_eq!(txns, committed, "exactly the committed transactions");
    let lsns: Vec<String> = records.iter().map(|r| r.position.clone()).collect();
    let lsns: Vec<u64> = lsns
        .iter()
        .map(|p| match p.parse().unwrap() {
            ordo_kcop::Position::Postgres(l) => l.0,
            other => panic!("not a PostgreSQL position: {other}"),
        })
        .collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "commit order");
    let mut data = BTreeMap::new();
    for t in ["orders", "lines"] {
        let (topic, b) = (format!("{prefix}.{t}"), broker.url.clone());
        let recs = tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || read_all_from(&b, &topic)
        })
        .await
        .unwrap();
        data.insert(topic, recs);
    }
    let listed = assert_listing(&records, &data);
    let total: usize = data.values().map(Vec::len).sum();
    println!(
        "{expected} transactions across 2 broker restarts; the daemon stopped {daemon_stops} \
         time(s) and was restarted; {listed} listed records, {} unlisted",
        total - listed
    );
}
