//! Soak: a long mixed workload on PostgreSQL and MariaDB at once, each captured by its own
//! `ordo run` (the real binary), with a TCC consumer per commit stream consuming all along.
//!
//! Per source, three writers commit multi-table transactions (inserts, updates, deletes) at a
//! moderate rate, and every few minutes one huge transaction replaces the `bulk` table (200,000
//! rows deleted and 200,000 inserted; PostgreSQL streams and spills it). Every 10 s the test
//! samples each daemon's resident memory and open file descriptors. At the end the writers
//! stop, a marker transaction is committed, and once each consumer has seen its marker:
//! - the consumer saw exactly the committed transactions, each once;
//! - the tables it rebuilt from the records equal the source tables (`SELECT`);
//! - memory and descriptors are flat: the last sample is within a tolerance of the peak of
//!   the first third of the run (the warm-up, which includes huge transactions), and
//!   descriptors do not grow;
//! - SIGTERM stops both daemons with exit 0.
//!
//! It prints one `SOAK|...` line per source with the figures. Run it (ignored by default):
//!
//! ```sh
//! eval "$(scripts/stack env)"
//! ORDO_SOAK_SECS=1800 cargo test -p ordo-tests --test soak -- --ignored --nocapture
//! # the 3-minute check that it works:
//! ORDO_SOAK_SECS=180 cargo test -p ordo-tests --test soak -- --ignored --nocapture
//! ```
//!
//! `ORDO_SOAK_SECS` (default 1800) is the writing time; `ORDO_SOAK_HUGE_ROWS` (default 200000)
//! the rows of a huge transaction; `ORDO_SOAK_HUGE_EVERY_SECS` (default the smaller of 180
//! and a third of the run) the time between huge transactions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use mysql_async::prelude::Queryable as _;
use ordo_tcc::{Start, TccConfig, TccConsumer, TccOperation};
use ordo_tests::config::{kafka_yaml, mysql_source_yaml, pg_source_yaml_spilling};
use ordo_tests::process::{OrdoRun, rss_and_fds, write_config};
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name,
};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

const WRITERS: usize = 3;
/// The tables and their columns, key first.
const TABLES: [(&str, &[&str]); 4] = [
    ("orders", &["id", "customer", "amount"]),
    ("order_lines", &["order_id", "line_no", "sku"]),
    ("audit", &["id", "note"]),
    ("bulk", &["id", "batch", "pad"]),
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
enum Source {
    Postgres { url: String },
    Mariadb { db: String },
}

enum Conn {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => "postgres",
            Source::Mariadb { .. } => "mariadb",
        }
    }

    async fn connect(&self) -> Conn {
        match self {
            Source::Postgres { url } => Conn::Postgres(pg_connect(url).await),
            Source::Mariadb { db } => {
                let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
                Conn::Mariadb(mysql_async::Conn::from_url(url.as_str()).await.unwrap())
            }
        }
    }

    fn ddl(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => {
                "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount int);
                 CREATE TABLE order_lines (order_id int, line_no int, sku text, PRIMARY KEY (order_id, line_no));
                 CREATE TABLE audit (id int PRIMARY KEY, note text);
                 CREATE TABLE bulk (id int PRIMARY KEY, batch int, pad text);
                 CREATE TABLE marker (id int PRIMARY KEY)"
            }
            Source::Mariadb { .. } => {
                "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(20), amount INT) ENGINE=InnoDB;
                 CREATE TABLE order_lines (order_id INT, line_no INT, sku VARCHAR(20), PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB;
                 CREATE TABLE audit (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB;
                 CREATE TABLE bulk (id INT PRIMARY KEY, batch INT, pad VARCHAR(40)) ENGINE=InnoDB;
                 CREATE TABLE marker (id INT PRIMARY KEY) ENGINE=InnoDB"
            }
        }
    }

    /// The statements of huge transaction `batch`: replace `bulk` by `rows` new rows.
    fn huge(&self, batch: u64, rows: u64) -> Vec<String> {
        let series = match self {
            Source::Postgres { .. } => format!("generate_series(1, {rows}) g(n)"),
            Source::Mariadb { .. } => format!("seq_1_to_{rows} g"),
        };
        let n = match self {
            Source::Postgres { .. } => "g.n",
            Source::Mariadb { .. } => "g.seq",
        };
        vec![
            "DELETE FROM bulk".to_owned(),
            format!(
                "INSERT INTO bulk SELECT {n}, {batch}, CONCAT('pad-', {batch}, '-', {n}) FROM {series}"
            ),
        ]
    }
}

impl Conn {
    /// Runs `statements` in one transaction; the source's id of it, as the commit stream names
    /// it (the xid, or the GTID).
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

    async fn execute(&mut self, sql: &str) {
        match self {
            Conn::Postgres(c) => c.batch_execute(sql).await.unwrap(),
            Conn::Mariadb(c) => c.query_drop(sql).await.unwrap(),
        }
    }

    /// Every row of `table` as canonical JSON text of `columns`.
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

/// A JSON object as text with sorted keys, so equal rows compare equal.
fn canonical(v: &serde_json::Value) -> String {
    let sorted: BTreeMap<&String, &serde_json::Value> = v.as_object().unwrap().iter().collect();
    serde_json::to_string(&sorted).unwrap()
}

/// One writer transaction: a new order with lines and an audit row; every third also updates
/// and deletes rows of earlier transactions.
fn writer_txn(writer: usize, i: usize, rng: &mut impl Rng) -> Vec<String> {
    let id = (writer * 10_000_000 + i) as i64;
    let mut sql = vec![format!(
        "INSERT INTO orders VALUES ({id}, 'w{writer}', {})",
        rng.random_range(1..500)
    )];
    for l in 0..rng.random_range(1..5) {
        sql.push(format!(
            "INSERT INTO order_lines VALUES ({id}, {l}, 'sku{l}')"
        ));
    }
    sql.push(format!("INSERT INTO audit VALUES ({id}, 'w{writer}-{i}')"));
    if i % 3 == 2 {
        let prev = id - 2;
        sql.push(format!(
            "UPDATE orders SET amount = amount + 1, customer = 'upd' WHERE id = {prev}"
        ));
        sql.push(format!(
            "DELETE FROM order_lines WHERE order_id = {prev} AND line_no = 0"
        ));
        sql.push(format!("DELETE FROM audit WHERE id = {}", id - 30));
    }
    sql
}

/// Commits writer transactions until `stop`; returns their ids.
async fn writer(source: Source, w: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut c = source.connect().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
    let mut done = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let sql = writer_txn(w, i, &mut rng);
        done.push(c.transaction(&sql).await);
        i += 1;
        // Pacing the load, not waiting for a state.
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..120))).await;
    }
    done
}

/// Commits a huge transaction every `every` (the first after half of it) until `stop`.
async fn huge_writer(
    source: Source,
    rows: u64,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut c = source.connect().await;
    let mut done = Vec::new();
    let mut next = Instant::now() + every / 2;
    let mut batch = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        batch += 1;
        let started = Instant::now();
        done.push(c.transaction(&source.huge(batch, rows)).await);
        println!(
            "{}: huge transaction {batch} committed in {:.1}s",
            source.name(),
            started.elapsed().as_secs_f64()
        );
        next += every;
    }
    done
}

/// What a consumer rebuilt: rows by table and key, and the transactions it saw in order.
#[derive(Default)]
struct Rebuilt {
    tables: BTreeMap<String, BTreeMap<Vec<u8>, String>>,
    txns: Vec<String>,
    ops: u64,
}

impl Rebuilt {
    fn apply(&mut self, op: &TccOperation) {
        self.ops += 1;
        for r in &op.records {
            let table = r.table().unwrap().rsplit('.').next().unwrap().to_owned();
            let rows = self.tables.entry(table).or_default();
            let key = r.key.clone().expect("records are keyed by the primary key");
            match r.op_type() {
                Some("d") => {
                    assert!(rows.remove(&key).is_some(), "a delete of a known row");
                }
                Some("c" | "u" | "r") => {
                    let v: serde_json::Value =
                        serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
                    rows.insert(key, canonical(&v));
                }
                other => panic!("unexpected op type {other:?}"),
            }
        }
        if op.last {
            self.txns.push(op.commit.txn.clone());
        }
    }
}

/// Follows `commit_topic` from the beginning until it has applied the transaction that
/// `marker` names.
async fn consume(commit_topic: String, mut marker: watch::Receiver<Option<String>>) -> Rebuilt {
    let cfg = TccConfig::new(stack().kafka.clone(), commit_topic, Start::Beginning);
    let mut ops = TccConsumer::new(cfg).unwrap().operations();
    let mut out = Rebuilt::default();
    loop {
        let done = |out: &Rebuilt, m: &Option<String>| {
            m.as_ref()
                .is_some_and(|m| out.txns.last() == Some(m) || out.txns.contains(m))
        };
        tokio::select! {
            op = ops.try_next() => {
                let op = op.expect("the TCC consumer reads on").expect("the stream goes on");
                out.apply(&op);
                if op.last && done(&out, &marker.borrow()) {
                    return out;
                }
            }
            changed = marker.changed() => {
                changed.unwrap();
                if done(&out, &marker.borrow()) {
                    return out;
                }
            }
        }
    }
}

/// One source under test: its daemon, workload and consumer.
struct Run {
    source: Source,
    prefix: String,
    daemon: OrdoRun,
    samples: Vec<(u64, u64, usize)>,
    writers: Vec<tokio::task::JoinHandle<Vec<String>>>,
    consumer: tokio::task::JoinHandle<Rebuilt>,
    marker: watch::Sender<Option<String>>,
    _dir: tempfile::TempDir,
}

async fn start(source: Source, stop: &Arc<AtomicBool>, huge_rows: u64, every: Duration) -> Run {
    let prefix = unique_name(&format!("soak_{}", source.name()));
    let dir = tempfile::tempdir().unwrap();
    source.connect().await.execute(source.ddl()).await;
    let (src_yaml, tables) = match &source {
        Source::Postgres { url } => {
            let db = url.rsplit('/').next().unwrap();
            pg_connect(url)
                .await
                .batch_execute(&format!(
                    "ALTER DATABASE \"{db}\" SET logical_decoding_work_mem = '1MB'"
                ))
                .await
                .unwrap();
            let spill = dir.path().join("spill");
            (
                pg_source_yaml_spilling(db, &prefix, "never", &spill),
                "public.*".to_owned(),
            )
        }
        Source::Mariadb { db } => {
            let server_id = 300_000 + rand::random::<u32>() % 1_000_000;
            (
                mysql_source_yaml(db, server_id, "initial"),
                format!("{db}.*"),
            )
        }
    };
    let yaml = format!(
        "{src_yaml}{}mappings:\n  - tables: [\"{tables}\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
        kafka_yaml(&format!("{prefix}.commits"), Some(2))
    );
    let config = write_config(dir.path(), "ordo.yaml", &yaml);
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let mut daemon = OrdoRun::start(&config, &log);
    println!(
        "{}: daemon pid {}, log {}",
        source.name(),
        daemon.pid(),
        log.display()
    );
    match &source {
        Source::Postgres { url } => pg_wait_for_slot(&pg_connect(url).await, &prefix).await,
        Source::Mariadb { .. } => {
            daemon
                .wait_log("requesting the binlog stream", Duration::from_secs(60))
                .await;
        }
    }
    let (marker, marker_rx) = watch::channel(None);
    let consumer = tokio::spawn(consume(format!("{prefix}.commits"), marker_rx));
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(source.clone(), w + 1, stop.clone())))
        .collect();
    writers.push(tokio::spawn(huge_writer(
        source.clone(),
        huge_rows,
        every,
        stop.clone(),
    )));
    Run {
        source,
        prefix,
        daemon,
        samples: Vec::new(),
        writers,
        consumer,
        marker,
        _dir: dir,
    }
}

impl Run {
    fn sample(&mut self, at: u64) {
        if let Ok(Some(status)) = self.daemon.child.try_wait() {
            panic!(
                "{} daemon exited ({status}); log:\n{}",
                self.source.name(),
                self.daemon.log_text()
            );
        }
        let (rss, fds) = rss_and_fds(self.daemon.pid()).expect("the daemon's /proc entry");
        self.samples.push((at, rss, fds));
    }

    /// Stops the writers, commits the marker, waits for the consumer; checks everything and
    /// prints the `SOAK|` line.
    async fn finish(mut self, secs: u64, catch_up: Duration) {
        let mut committed = Vec::new();
        for w in self.writers.drain(..) {
            committed.extend(w.await.unwrap());
        }
        let mut c = self.source.connect().await;
        let marker = c
            .transaction(&["INSERT INTO marker VALUES (1)".to_owned()])
            .await;
        committed.push(marker.clone());
        let stopped = Instant::now();
        self.marker.send(Some(marker)).unwrap();
        let rebuilt = tokio::time::timeout(catch_up, &mut self.consumer)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: the consumer did not see the marker within {catch_up:?}; log: {}",
                    self.source.name(),
                    self.daemon.log.display()
                )
            })
            .unwrap();
        let caught_up = stopped.elapsed();
        self.sample(secs + caught_up.as_secs());
        check_transactions(&self.source, &rebuilt, &committed);
        check_tables(&self.source, &mut c, rebuilt.tables).await;
        let (rss, fds) = check_flat(&self.source, &self.samples);
        assert_eq!(
            self.daemon.sigterm().await,
            0,
            "log:\n{}",
            self.daemon.log_text()
        );
        println!(
            "SOAK|source={}|secs={secs}|txns={}|ops={}|catch_up_s={:.1}|rss_kb first={} warm={} max={} last={}|fds first={} warm={} max={} last={}|prefix={}",
            self.source.name(),
            committed.len(),
            rebuilt.ops,
            caught_up.as_secs_f64(),
            rss[0],
            rss[1],
            rss[2],
            rss[3],
            fds[0],
            fds[1],
            fds[2],
            fds[3],
            self.prefix,
        );
    }
}

/// The consumer saw exactly the committed transactions (besides snapshot chunks), each once.
fn check_transactions(source: &Source, rebuilt: &Rebuilt, committed: &[String]) {
    let seen: Vec<&String> = rebuilt
        .txns
        .iter()
        .filter(|t| !t.starts_with("snapshot:"))
        .collect();
    let unique: BTreeSet<&String> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "{}: each transaction once",
        source.name()
    );
    let want: BTreeSet<&String> = committed.iter().collect();
    let missing: Vec<_> = want.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: the consumer's transactions vs the committed ones: missing {missing:?}, extra {extra:?}",
        source.name()
    );
}

/// The tables rebuilt from the consumer's records equal the source's.
async fn check_tables(
    source: &Source,
    c: &mut Conn,
    mut rebuilt: BTreeMap<String, BTreeMap<Vec<u8>, String>>,
) {
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
            "{}: {table} row count",
            source.name()
        );
        assert!(
            got == want,
            "{}: {table} rebuilt from the consumer differs from SELECT",
            source.name()
        );
    }
}

/// RSS and descriptor figures (first, warm-up peak, max, last); asserts the last are within
/// tolerance of the warm-up peak (the first third of the run).
fn check_flat(source: &Source, samples: &[(u64, u64, usize)]) -> ([u64; 4], [usize; 4]) {
    let end = samples.last().unwrap().0;
    let warm: Vec<_> = samples.iter().filter(|s| s.0 * 3 <= end).collect();
    let warm_rss = warm.iter().map(|s| s.1).max().unwrap_or(samples[0].1);
    let warm_fds = warm.iter().map(|s| s.2).max().unwrap_or(samples[0].2);
    let (first, last) = (samples[0], *samples.last().unwrap());
    let max_rss = samples.iter().map(|s| s.1).max().unwrap();
    let max_fds = samples.iter().map(|s| s.2).max().unwrap();
    let series: Vec<String> = samples
        .iter()
        .map(|s| format!("{}s:{}MB/{}fd", s.0, s.1 / 1024, s.2))
        .collect();
    println!("{}: samples {}", source.name(), series.join(" "));
    assert!(
        last.1 <= warm_rss + warm_rss / 4 + 32 * 1024,
        "{}: RSS grew: {} kB at the end vs {warm_rss} kB peak in the warm-up",
        source.name(),
        last.1
    );
    assert!(
        last.2 <= warm_fds + 4,
        "{}: descriptors grew: {} at the end vs {warm_fds} in the warm-up",
        source.name(),
        last.2
    );
    (
        [first.1, warm_rss, max_rss, last.1],
        [first.2, warm_fds, max_fds, last.2],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long soak (ORDO_SOAK_SECS, default 30 minutes): run on demand"]
async fn soak_mixed_workload_postgres_and_mariadb() {
    let secs = env_u64("ORDO_SOAK_SECS", 1800);
    let huge_rows = env_u64("ORDO_SOAK_HUGE_ROWS", 200_000);
    let every = Duration::from_secs(env_u64(
        "ORDO_SOAK_HUGE_EVERY_SECS",
        (secs / 3).clamp(10, 180),
    ));
    let catch_up = Duration::from_secs(300 + secs / 6);
    let stop = Arc::new(AtomicBool::new(false));
    let (_db, url) = pg_create_database("soak").await;
    let my_db = mysql_create_database("soak").await;
    let mut runs = vec![
        start(Source::Postgres { url }, &stop, huge_rows, every).await,
        start(Source::Mariadb { db: my_db }, &stop, huge_rows, every).await,
    ];
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let at = started.elapsed().as_secs();
        for r in &mut runs {
            r.sample(at);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in runs {
        r.finish(secs, catch_up).await;
    }
}
