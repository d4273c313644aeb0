//! Stopping the `ordo` binary: SIGTERM under a concurrent multi-table workload loses nothing,
//! for PostgreSQL and MariaDB (one scenario, both sources), and a KCOP error stops the daemon
//! within seconds without acknowledging the failed transaction.
//!
//! The SIGTERM scenario stops the daemon several times mid-load and restarts it after each
//! clean exit. Every stop must exit 0 within [`STOP_BOUND`] (the drain times are printed). In
//! the end the commit stream holds exactly one record per committed source transaction, in
//! commit order, with dense sequence numbers and the source's op counts; every data record is
//! listed by a commit record (a graceful stop drains, so there are no orphans); and a TCC
//! consumer reading from the beginning yields exactly those transactions, whose records rebuild
//! exactly the source tables' contents.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use mysql_async::prelude::Queryable as _;
use ordo_tcc::commit_stream::CommitRecord;
use ordo_tcc::{Start, TccConfig, TccConsumer, TccTransaction};
use ordo_tests::capture::ordo_binary;
use ordo_tests::config::mysql_source_yaml;
use ordo_tests::invariant::{assert_dense, assert_listing, decode_commits};
use ordo_tests::kafka::{Record, read_all};
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, stack, unique_name, wait_until,
};
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
const MIN_TXNS_PER_WRITER: usize = 20;
const STOPS: usize = 6;
/// Rows of the large transactions committed right before some of the stops.
const BULK_ROWS: usize = 20_000;
/// How long a graceful stop may take.
const STOP_BOUND: Duration = Duration::from_secs(30);
/// The tables of the workload and their columns, key first.
const TABLES: [(&str, &[&str]); 3] = [
    ("orders", &["id", "customer", "amount"]),
    ("order_lines", &["order_id", "line_no", "sku"]),
    ("audit", &["id", "note"]),
];

/// The source under test, with what it needs to connect.
enum Source {
    Postgres { url: String },
    Mariadb { db: String },
}

/// A connection to the source's test database.
enum Conn {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Source {
    async fn connect(&self) -> Conn {
        match self {
            Source::Postgres { url } => Conn::Postgres(pg_connect(url).await),
            Source::Mariadb { db } => {
                let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
                Conn::Mariadb(mysql_async::Conn::from_url(url.as_str()).await.unwrap())
            }
        }
    }

    fn ddl(&self) -> [&'static str; 3] {
        match self {
            Source::Postgres { .. } => [
                "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount int)",
                "CREATE TABLE order_lines (order_id int, line_no int, sku text, PRIMARY KEY (order_id, line_no))",
                "CREATE TABLE audit (id serial PRIMARY KEY, note text)",
            ],
            Source::Mariadb { .. } => [
                "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(20), amount INT) ENGINE=InnoDB",
                "CREATE TABLE order_lines (order_id INT, line_no INT, sku VARCHAR(20), PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB",
                "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB",
            ],
        }
    }

    /// The config file's `source:` section.
    fn source_yaml(&self, prefix: &str, spill: &Path) -> String {
        let s = stack();
        match self {
            Source::Postgres { url } => {
                let db = url.rsplit('/').next().unwrap();
                format!(
                    "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: never\n    spill_dir: {}\n    status_interval_ms: 100\n",
                    s.pg_host,
                    s.pg_port,
                    spill.display()
                )
            }
            Source::Mariadb { db } => {
                let server_id = 100_000 + rand::random::<u32>() % 1_000_000_000;
                mysql_source_yaml(db, server_id, "initial")
            }
        }
    }

    /// One statement inserting `n` rows of order `order` into `order_lines`.
    fn bulk_insert(&self, order: usize, n: usize) -> String {
        let rows = match self {
            Source::Postgres { .. } => format!("generate_series(0, {}) g(n)", n - 1),
            Source::Mariadb { .. } => format!("seq_0_to_{} g", n - 1),
        };
        let seq = match self {
            Source::Postgres { .. } => "g.n",
            Source::Mariadb { .. } => "g.seq",
        };
        format!("INSERT INTO order_lines SELECT {order}, {seq}, 'bulk' FROM {rows}")
    }

    /// The full name of `table` (also `*`) in the config's mappings.
    fn table(&self, table: &str) -> String {
        match self {
            Source::Postgres { .. } => format!("public.{table}"),
            Source::Mariadb { db } => format!("{db}.{table}"),
        }
    }

    /// The order of transactions in the source's log, from a commit record: the commit LSN
    /// (PostgreSQL) or the GTID sequence number (MariaDB, one domain and server).
    fn log_order(&self, c: &CommitRecord) -> u64 {
        match self {
            Source::Postgres { .. } => match c.position.parse().unwrap() {
                ordo_kcop::Position::Postgres(l) => l.0,
                other => panic!("not a PostgreSQL position: {other}"),
            },
            Source::Mariadb { .. } => c.txn.rsplit('-').next().unwrap().parse().unwrap(),
        }
    }
}

impl Conn {
    async fn execute(&mut self, sql: &str) {
        match self {
            Conn::Postgres(c) => c.batch_execute(sql).await.unwrap(),
            Conn::Mariadb(c) => c.query_drop(sql).await.unwrap(),
        }
    }

    /// Run `statements` in one transaction and return the source's id of it (the xid, or the
    /// GTID), as the commit stream names it.
    async fn transaction(&mut self, statements: &[String]) -> String {
        let body = statements.join("; ");
        match self {
            Conn::Postgres(c) => {
                let msgs = c
                    .simple_query(&format!(
                        "BEGIN; {body}; SELECT txid_current()::text; COMMIT;"
                    ))
                    .await
                    .unwrap();
                msgs.iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .unwrap()
            }
            Conn::Mariadb(c) => {
                c.query_drop(format!("BEGIN; {body}; COMMIT"))
                    .await
                    .unwrap();
                c.query_first("SELECT @@last_gtid").await.unwrap().unwrap()
            }
        }
    }

    /// Every row of `table` as a JSON object of `columns`, canonical text.
    async fn rows(&mut self, table: &str, columns: &[&str]) -> BTreeSet<String> {
        let pairs: Vec<String> = columns.iter().map(|c| format!("'{c}', {c}")).collect();
        let pairs = pairs.join(", ");
        let texts: Vec<String> = match self {
            Conn::Postgres(c) => c
                .query(
                    &format!("SELECT json_build_object({pairs})::text FROM {table}"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Conn::Mariadb(c) => c
                .query(format!("SELECT JSON_OBJECT({pairs}) FROM {table}"))
                .await
                .unwrap(),
        };
        texts
            .iter()
            .map(|t| canonical(&serde_json::from_str(t).unwrap()))
            .collect()
    }
}

/// A JSON object as text with its keys sorted, so equal rows compare equal.
fn canonical(v: &serde_json::Value) -> String {
    let sorted: BTreeMap<&String, &serde_json::Value> = v.as_object().unwrap().iter().collect();
    serde_json::to_string(&sorted).unwrap()
}

/// One writer transaction: its statements and how many row changes it makes.
fn writer_txn(writer: usize, i: usize, rng: &mut impl Rng) -> (Vec<String>, u64) {
    let order = (writer * 10_000 + i) as i32;
    // One transaction in four is larger, so that stops often fall inside a transaction.
    let lines = if rng.random_ratio(1, 4) {
        30
    } else {
        rng.random_range(1..4)
    };
    let mut sql = vec![format!(
        "INSERT INTO orders VALUES ({order}, 'w{writer}', {})",
        rng.random_range(1..500)
    )];
    for l in 0..lines {
        sql.push(format!(
            "INSERT INTO order_lines VALUES ({order}, {l}, 'sku{l}')"
        ));
    }
    if i % 5 == 4 {
        let prev = order - 1;
        sql.push(format!(
            "UPDATE orders SET amount = amount + 1 WHERE id = {prev}"
        ));
        sql.push(format!(
            "DELETE FROM order_lines WHERE order_id = {prev} AND line_no = 0"
        ));
    }
    sql.push(format!("INSERT INTO audit (note) VALUES ('w{writer}-{i}')"));
    let ops = sql.len() as u64;
    (sql, ops)
}

/// Runs one writer's transactions until `stop` is set (at least [`MIN_TXNS_PER_WRITER`]);
/// returns each committed one's source id and op count.
async fn writer(source: &Source, id: usize, seed: u64, stop: &AtomicBool) -> Vec<(String, u64)> {
    let mut c = source.connect().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut done = Vec::new();
    for i in 0..10_000 {
        if i >= MIN_TXNS_PER_WRITER && stop.load(Ordering::Relaxed) {
            break;
        }
        let (sql, ops) = writer_txn(id, i, &mut rng);
        done.push((c.transaction(&sql).await, ops));
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..10))).await;
    }
    done
}

/// The `ordo run` process, its config and its log.
struct Daemon {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Start `ordo run` and wait until it has read the commit stream (so its signal handlers
    /// are installed).
    async fn start(config: &Path, log: &Path) -> Self {
        let mut d = Daemon {
            config: config.to_owned(),
            log: log.to_owned(),
            child: None,
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        let from = std::fs::metadata(&self.log).map_or(0, |m| m.len()) as usize;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(ordo_binary())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ordo");
        self.child = Some(child);
        let log = self.log.clone();
        wait_until(
            &format!("ordo to read the commit stream (log: {})", log.display()),
            Duration::from_secs(60),
            || {
                let text = std::fs::read(&log).unwrap_or_default();
                let started = text
                    .get(from..)
                    .is_some_and(|t| String::from_utf8_lossy(t).contains("read the commit stream"));
                async move { started.then_some(()) }
            },
        )
        .await;
    }

    /// Wait until the source streams from its log (logged by this run or an earlier one).
    async fn wait_streaming(&self, source: &Source) {
        let marker = match source {
            Source::Postgres { .. } => "\"message\":\"streaming\"",
            Source::Mariadb { .. } => "requesting the binlog stream",
        };
        wait_until(
            &format!("the source to stream (log: {})", self.log.display()),
            Duration::from_secs(60),
            || {
                let streaming = self.log_text().contains(marker);
                async move { streaming.then_some(()) }
            },
        )
        .await;
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) for the process to exit; its status and how long it took.
    async fn wait_exit(&mut self, bound: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let child = self.child.as_mut().expect("a running daemon");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, started.elapsed());
            }
            if started.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "ordo did not exit within {bound:?}; log: {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns how long the drain took.
    async fn sigterm(&mut self) -> Duration {
        let pid = self.child.as_ref().expect("a running daemon").id();
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let (status, _) = self.wait_exit(STOP_BOUND).await;
        assert!(
            status.success(),
            "graceful stop exit status {status:?}; log: {}",
            self.log.display()
        );
        started.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A test's names and files.
struct Setup {
    source: Source,
    prefix: String,
    _dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
}

impl Setup {
    /// `mappings` maps each list of tables (short names) to its outputs' YAML.
    async fn new(source: Source, name: &str, mappings: &[(&[&str], &str)]) -> Self {
        let prefix = unique_name(name);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ordo.yaml");
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let mut yaml = format!(
            "{}kafka:\n  bootstrap_servers: \"{}\"\n  commit_topic: {prefix}.commits\n  topic_partitions: 3\nmappings:\n",
            source.source_yaml(&prefix, &dir.path().join("spill")),
            stack().kafka,
        );
        for (tables, outputs) in mappings {
            let tables: Vec<String> = tables
                .iter()
                .map(|t| format!("\"{}\"", source.table(t)))
                .collect();
            yaml.push_str(&format!(
                "  - tables: [{}]\n    outputs:\n{outputs}",
                tables.join(", ")
            ));
        }
        std::fs::write(&config, yaml.replace("{prefix}", &prefix)).unwrap();
        let mut c = source.connect().await;
        for ddl in source.ddl() {
            c.execute(ddl).await;
        }
        Setup {
            source,
            prefix,
            _dir: dir,
            config,
            log,
        }
    }

    /// Drop the test's replication slot (PostgreSQL; the daemon has stopped), so finished
    /// tests do not use up the shared server's `max_replication_slots`.
    async fn drop_slot(&self) {
        if let Source::Postgres { url } = &self.source {
            pg_connect(url)
                .await
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
                    &[&self.prefix],
                )
                .await
                .unwrap();
        }
    }

    fn commit_topic(&self) -> String {
        format!("{}.commits", self.prefix)
    }

    async fn commits(&self) -> Vec<CommitRecord> {
        let t = self.commit_topic();
        let recs = tokio::task::spawn_blocking(move || read_all(&t))
            .await
            .unwrap();
        decode_commits(&recs)
    }

    async fn wait_commits(&self, n: usize) -> Vec<CommitRecord> {
        wait_until(
            &format!("{n} commit records (log: {})", self.log.display()),
            Duration::from_secs(120),
            || async move {
                let recs = self.commits().await;
                (recs.len() >= n).then_some(recs)
            },
        )
        .await
    }
}

const JSON_OUTPUT: &str = "      - topic: \"{prefix}.{table}\"\n        format: json\n";

/// The SIGTERM scenario (see the module docs) for `source`.
async fn sigterm_under_load(source: Source, name: &str) {
    let s = Setup::new(source, name, &[(&["*"], JSON_OUTPUT)]).await;
    let snapshot_txns = match &s.source {
        // MariaDB without a resume position snapshots; one seed row makes that one commit
        // record, durable before the writers start.
        Source::Mariadb { .. } => {
            s.source
                .connect()
                .await
                .execute("INSERT INTO orders VALUES (0, 'seed', 0)")
                .await;
            1
        }
        Source::Postgres { .. } => 0,
    };
    let mut daemon = Daemon::start(&s.config, &s.log).await;
    if snapshot_txns > 0 {
        s.wait_commits(snapshot_txns).await;
    } else {
        daemon.wait_streaming(&s.source).await;
    }

    let source = Arc::new(s.source);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (source, stop) = (source.clone(), stop_writing.clone());
            tokio::spawn(async move { writer(&source, w + 1, w as u64 * 7 + 1, &stop).await })
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut drains = Vec::new();
    let mut committed: Vec<(String, u64)> = Vec::new();
    let mut bulk = source.connect().await;
    for k in 0..STOPS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if k % 2 == 1 {
            // A large transaction just before the stop: the source is most likely in the
            // middle of it when SIGTERM arrives, and must hand it over whole.
            let sql = [
                source.bulk_insert(900_000 + k, BULK_ROWS),
                format!("INSERT INTO audit (note) VALUES ('bulk-{k}')"),
            ];
            committed.push((bulk.transaction(&sql).await, BULK_ROWS as u64 + 1));
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        }
        drains.push(daemon.sigterm().await);
        daemon.spawn().await;
    }
    stop_writing.store(true, Ordering::Relaxed);
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    let s = Setup {
        source: Arc::into_inner(source).unwrap(),
        ..s
    };
    let expected = committed.len() + snapshot_txns;
    s.wait_commits(expected).await;
    drains.push(daemon.sigterm().await);
    println!(
        "{name}: drain times {:?} (bound {STOP_BOUND:?})",
        drains
            .iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    let commits = s.commits().await;
    check_commit_stream(&s, &commits, &committed, snapshot_txns);
    let data = data_records(&s).await;
    let listed = assert_listing(&commits, &data);
    let total: usize = data.values().map(Vec::len).sum();
    assert_eq!(
        listed,
        total,
        "every data record is listed by a commit record: graceful stops leave no orphans (log: {})",
        s.log.display()
    );
    let txns = tcc_transactions(&s).await;
    check_tcc(&commits, &txns);
    check_contents(&s, &txns).await;
    println!(
        "{name}: {} transactions, {listed} records, no orphans",
        commits.len()
    );
    s.drop_slot().await;
}

/// One commit record per committed transaction, in log order, with the source's op counts.
fn check_commit_stream(
    s: &Setup,
    commits: &[CommitRecord],
    committed: &[(String, u64)],
    snapshot_txns: usize,
) {
    assert_eq!(
        commits.len(),
        committed.len() + snapshot_txns,
        "exactly one commit record per committed transaction (log: {})",
        s.log.display()
    );
    assert_dense(commits);
    let streamed = &commits[snapshot_txns..];
    assert!(
        commits[..snapshot_txns]
            .iter()
            .all(|c| c.txn.starts_with("snapshot:"))
    );
    let got: BTreeMap<&str, u64> = streamed.iter().map(|c| (c.txn.as_str(), c.ops)).collect();
    let want: BTreeMap<&str, u64> = committed.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    assert_eq!(
        got, want,
        "the commit stream lists exactly the committed transactions, with their op counts"
    );
    let order: Vec<u64> = streamed.iter().map(|c| s.source.log_order(c)).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "commit records follow the source's commit order"
    );
}

async fn data_records(s: &Setup) -> BTreeMap<String, Vec<Record>> {
    let mut data = BTreeMap::new();
    for (t, _) in TABLES {
        let topic = format!("{}.{t}", s.prefix);
        let recs = tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || read_all(&topic)
        })
        .await
        .unwrap();
        data.insert(topic, recs);
    }
    data
}

/// Every transaction a TCC consumer reads from the beginning to the end of the commit topic.
async fn tcc_transactions(s: &Setup) -> Vec<TccTransaction> {
    let cfg =
        TccConfig::new(stack().kafka.clone(), s.commit_topic(), Start::Beginning).stop_at_end(true);
    let stream = TccConsumer::new(cfg).unwrap().transactions();
    tokio::time::timeout(Duration::from_secs(120), stream.try_collect())
        .await
        .expect("the TCC consumer reads the commit stream within 120 s")
        .unwrap()
}

/// The consumer yields the commit stream's transactions in order, each with every op once.
fn check_tcc(commits: &[CommitRecord], txns: &[TccTransaction]) {
    let want: Vec<&str> = commits.iter().map(|c| c.txn.as_str()).collect();
    let got: Vec<&str> = txns.iter().map(|t| t.commit.txn.as_str()).collect();
    assert_eq!(
        got, want,
        "the TCC consumer yields every transaction once, in order"
    );
    for t in txns {
        let ops: Vec<u64> = t.operations.iter().map(|o| o.op_index).collect();
        assert_eq!(
            ops,
            (0..t.commit.ops).collect::<Vec<_>>(),
            "txn {}: every operation once, in order",
            t.commit.txn
        );
        assert!(
            t.operations.iter().all(|o| o.records.len() == 1),
            "txn {}: one JSON record per operation",
            t.commit.txn
        );
    }
}

/// The tables rebuilt from the consumer's records equal the source's tables.
async fn check_contents(s: &Setup, txns: &[TccTransaction]) {
    let mut rebuilt: BTreeMap<String, BTreeMap<Vec<u8>, String>> = BTreeMap::new();
    for r in txns.iter().flat_map(TccTransaction::records) {
        let table = r.table().unwrap().rsplit('.').next().unwrap().to_owned();
        let rows = rebuilt.entry(table).or_default();
        let key = r.key.clone().expect("records are keyed by the primary key");
        match r.op_type() {
            Some("d") => {
                assert!(rows.remove(&key).is_some(), "a delete of a known row");
            }
            Some("c" | "u" | "r") => {
                let value: serde_json::Value =
                    serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                rows.insert(key, canonical(&value));
            }
            other => panic!("unexpected op type {other:?}"),
        }
    }
    let mut c = s.source.connect().await;
    for (table, columns) in TABLES {
        let want = c.rows(table, columns).await;
        let got: BTreeSet<String> = rebuilt
            .remove(table)
            .unwrap_or_default()
            .into_values()
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{table}: rows rebuilt from the TCC consumer vs SELECT"
        );
        assert_eq!(
            got, want,
            "{table}: rows rebuilt from the TCC consumer vs SELECT"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_under_load_loses_nothing() {
    let (_db, url) = pg_create_database("sigterm").await;
    sigterm_under_load(Source::Postgres { url }, "sigterm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_sigterm_under_load_loses_nothing() {
    let db = mysql_create_database("mysigterm").await;
    sigterm_under_load(Source::Mariadb { db }, "mysigterm").await;
}

/// A KCOP error (here: `key: columns` naming a column the table lacks, refused when the route
/// is built at the first change) stops the daemon within seconds with exit code 1, and the
/// failed transaction is neither recorded nor acknowledged: once the output is fixed, a restart
/// captures it.
async fn kcop_error_stops_promptly(source: Source, name: &str) {
    const BAD_KEY: &str = "        key: columns\n        key_columns: [nope]\n";
    let bad = format!("{JSON_OUTPUT}{BAD_KEY}");
    let mappings: [(&[&str], &str); 2] = [(&["audit"], JSON_OUTPUT), (&["orders"], &bad)];
    let s = Setup::new(source, name, &mappings).await;
    if let Source::Mariadb { .. } = s.source {
        // A snapshot commit record gives the restart below a position to resume from.
        let mut c = s.source.connect().await;
        c.execute("INSERT INTO audit (note) VALUES ('seed')").await;
    }
    let mut daemon = Daemon::start(&s.config, &s.log).await;
    if let Source::Mariadb { .. } = s.source {
        s.wait_commits(1).await;
    }
    daemon.wait_streaming(&s.source).await;
    let mut c = s.source.connect().await;
    let failed = c
        .transaction(&[
            "INSERT INTO orders VALUES (1, 'ann', 5)".to_owned(),
            "INSERT INTO audit (note) VALUES ('x')".to_owned(),
        ])
        .await;
    let (status, took) = daemon.wait_exit(Duration::from_secs(60)).await;
    println!(
        "{name}: a KCOP error stopped the daemon ({status:?}) {:.2}s after the failing commit",
        took.as_secs_f64()
    );
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "a runtime failure; log: {log}");
    assert!(
        took < Duration::from_secs(10),
        "a KCOP error stops the daemon within seconds, took {took:?}; log: {log}"
    );
    assert!(log.contains("nope"), "the error names the column: {log}");
    let streamed = |commits: Vec<CommitRecord>| -> Vec<CommitRecord> {
        commits
            .into_iter()
            .filter(|c| !c.txn.starts_with("snapshot:"))
            .collect()
    };
    assert!(
        streamed(s.commits().await).is_empty(),
        "no commit record for the failed transaction"
    );

    let yaml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, yaml.replace(BAD_KEY, "")).unwrap();
    daemon.spawn().await;
    let commits = wait_until(
        "the failed transaction after the restart",
        Duration::from_secs(60),
        || async { Some(streamed(s.commits().await)).filter(|c| !c.is_empty()) },
    )
    .await;
    daemon.sigterm().await;
    assert_eq!(commits.len(), 1, "exactly the failed transaction");
    assert_eq!(
        (commits[0].txn.as_str(), commits[0].ops),
        (failed.as_str(), 2)
    );
    s.drop_slot().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kcop_error_stops_the_daemon_promptly() {
    let (_db, url) = pg_create_database("kcoperr").await;
    kcop_error_stops_promptly(Source::Postgres { url }, "kcoperr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kcop_error_stops_the_daemon_promptly() {
    let db = mysql_create_database("mykcoperr").await;
    kcop_error_stops_promptly(Source::Mariadb { db }, "mykcoperr").await;
}
