//! Support for the `pg_source_*` suites: the PostgreSQL source run alone, without Kafka.
//!
//! [`PgEnv`] is one test's own database, slot, publication and spill directory. [`SourceRun`]
//! runs `ordo_capture::postgres::source::run` on a thread of its own with a current-thread
//! runtime (as the daemon does) and plays the pipeline: it reads the event batches, assembles
//! them into [`Txn`]s, and, like the publisher, reports each commit's restart position as
//! durable (unless told not to).
//!
//! Each suite uses only part of this module.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_capture::source::SourceContext;
use ordo_config::PostgresSource;
use ordo_kcop::value::Timestamp;
use ordo_kcop::{Change, Lsn, Op, Position, SourceEvent, TxnBegin, TxnCommit, Value};
use ordo_tests::stack::{pg_connect, pg_create_database, stack, unique_name};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// One test's database, slot, publication and spill directory.
pub struct PgEnv {
    /// Database name.
    pub db: String,
    /// URL of the database as the superuser.
    pub url: String,
    /// Replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Spill directory (removed on drop).
    pub spill: tempfile::TempDir,
    /// A connection to the database for the test's writes and oracle queries, with the same
    /// session settings ordo uses.
    pub client: Client,
}

impl PgEnv {
    /// A fresh database (and names) for one test.
    pub async fn new(prefix: &str) -> PgEnv {
        let (db, url) = pg_create_database(prefix).await;
        let slot = unique_name(prefix);
        let client = pg_connect(&url).await;
        client
            .batch_execute(
                "SET TimeZone = 'UTC'; SET DateStyle = ISO; SET extra_float_digits = 3; SET lc_monetary = 'C'",
            )
            .await
            .unwrap();
        PgEnv {
            db,
            url,
            publication: slot.clone(),
            slot,
            spill: tempfile::tempdir().unwrap(),
            client,
        }
    }

    /// Another connection to the test database.
    pub async fn connect(&self) -> Client {
        let c = pg_connect(&self.url).await;
        c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        c
    }

    /// Make the walsenders of this database stream any transaction over 64 kB (protocol v2).
    pub async fn small_decoding_memory(&self) {
        self.client
            .batch_execute(&format!(
                "ALTER DATABASE \"{}\" SET logical_decoding_work_mem = '64kB'",
                self.db
            ))
            .await
            .unwrap();
    }

    /// The source config, with `extra` YAML lines (indented by four spaces) under
    /// `source.postgres`.
    pub fn config(&self, extra: &str) -> PostgresSource {
        let s = stack();
        let extra: String = extra
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("    {}\n", l.trim()))
            .collect();
        let yaml = format!(
            "source:\n  postgres:\n    host: {host}\n    port: {port}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {slot}\n    publication: {publication}\n    spill_dir: {spill}\n    status_interval_ms: 200\n{extra}kafka:\n  bootstrap_servers: \"{kafka}\"\n  commit_topic: {slot}.commits\nmappings:\n  - tables: [\"public.*\"]\n    outputs:\n      - topic: \"{slot}.{{table}}\"\n        format: json\n",
            host = s.pg_host,
            port = s.pg_port,
            db = self.db,
            slot = self.slot,
            publication = self.publication,
            spill = self.spill.path().display(),
            kafka = s.kafka,
        );
        let config = ordo_config::parse_with_env(&yaml, "t.yaml", |_| None)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n{yaml}"));
        match config.source {
            ordo_config::Source::Postgres(pg) => pg,
            ordo_config::Source::Mysql(_) => unreachable!("the yaml is a postgres source"),
        }
    }

    /// Drop the test's slots (`slots` besides the main one) and database. The source must be
    /// stopped.
    pub async fn cleanup(self, slots: &[&str]) {
        let admin = pg_connect(&stack().pg_url).await;
        for slot in std::iter::once(self.slot.as_str()).chain(slots.iter().copied()) {
            let _ = admin
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
        }
        drop(self.client);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.db))
            .await;
    }
}

/// A transaction as the source handed it on.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Its `Begin`.
    pub begin: TxnBegin,
    /// Its changes (empty when the run does not keep them; see [`Txn::count`]).
    pub changes: Vec<Change>,
    /// How many changes arrived.
    pub count: u64,
    /// Its `Commit`.
    pub commit: TxnCommit,
}

impl Txn {
    /// The source transaction id.
    pub fn id(&self) -> &str {
        &self.commit.id
    }

    /// The restart LSN.
    pub fn restart_lsn(&self) -> u64 {
        lsn(&self.commit.restart_position)
    }

    /// Whether this is a snapshot transaction.
    pub fn is_snapshot(&self) -> bool {
        self.id().starts_with("snapshot:")
    }
}

/// The LSN of a PostgreSQL position.
pub fn lsn(p: &Position) -> u64 {
    match p {
        Position::Postgres(Lsn(l)) => *l,
        other => panic!("not a postgres position: {other}"),
    }
}

/// What the fake pipeline has seen.
#[derive(Debug, Default)]
pub struct Seen {
    /// Whole transactions, in the order they arrived.
    pub txns: Vec<Txn>,
    /// The transaction being received.
    pub open: Option<Txn>,
    /// `Rollback` events.
    pub rollbacks: u64,
    /// `Progress` events.
    pub progress: Vec<Position>,
    /// Changes received, in all transactions (also those rolled back).
    pub changes: u64,
    /// The newest position reported durable.
    pub durable: Option<u64>,
    /// The sum of the first (integer) column of every change's row, wrapping: a cheap check
    /// when changes are not kept.
    pub id_sum: i64,
}

impl Seen {
    /// Transactions that are not snapshot chunks.
    pub fn streamed(&self) -> impl Iterator<Item = &Txn> {
        self.txns.iter().filter(|t| !t.is_snapshot())
    }

    /// Changes of the streamed transactions, in order.
    pub fn streamed_changes(&self) -> impl Iterator<Item = &Change> {
        self.streamed().flat_map(|t| t.changes.iter())
    }
}

/// How the fake pipeline behaves.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Keep each change (else only count them).
    pub keep_changes: bool,
    /// Report each commit's restart position (and each progress position) durable.
    pub ack: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            keep_changes: true,
            ack: true,
        }
    }
}

/// The source running on its own thread, and the fake pipeline in front of it.
pub struct SourceRun {
    events: Option<mpsc::Receiver<Vec<SourceEvent>>>,
    durable: Option<watch::Sender<Option<Position>>>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// What has arrived so far.
    pub seen: Seen,
    /// How it behaves.
    pub behaviour: Behaviour,
}

/// Start the source with `resume` (the commit stream's last restart position).
pub fn start(cfg: &PostgresSource, resume: Option<Position>, behaviour: Behaviour) -> SourceRun {
    ordo_tests::capture::init_logging();
    let (tx, rx) = mpsc::channel(64);
    let (durable_tx, durable_rx) = watch::channel(resume.clone());
    let shutdown = CancellationToken::new();
    let ctx = SourceContext {
        events: tx,
        durable: durable_rx,
        resume,
        tables: Arc::new(|t| t.namespace == "public"),
        shutdown: shutdown.clone(),
    };
    let cfg = cfg.clone();
    let thread = std::thread::Builder::new()
        .name("test-pg-source".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(ordo_capture::postgres::source::run(&cfg, ctx))
                .map_err(|e| e.to_string())
        })
        .unwrap();
    SourceRun {
        events: Some(rx),
        durable: Some(durable_tx),
        shutdown,
        thread: Some(thread),
        seen: Seen::default(),
        behaviour,
    }
}

impl SourceRun {
    fn ack(&mut self, p: &Position) {
        let l = lsn(p);
        if self.behaviour.ack && l > self.seen.durable.unwrap_or(0) {
            self.seen.durable = Some(l);
            if let Some(d) = &self.durable {
                let _ = d.send(Some(p.clone()));
            }
        }
    }

    /// Report `p` durable now (for tests that acknowledge by hand).
    pub fn ack_now(&mut self, p: &Position) {
        let saved = self.behaviour.ack;
        self.behaviour.ack = true;
        self.ack(p);
        self.behaviour.ack = saved;
    }

    fn take(&mut self, ev: SourceEvent) {
        let seen = &mut self.seen;
        match ev {
            SourceEvent::Begin(begin) => {
                assert!(seen.open.is_none(), "begin inside an open transaction");
                seen.open = Some(Txn {
                    begin,
                    changes: Vec::new(),
                    count: 0,
                    commit: TxnCommit {
                        id: "".into(),
                        commit_time: Timestamp(0),
                        commit_position: Position::Postgres(Lsn(0)),
                        restart_position: Position::Postgres(Lsn(0)),
                        change_count: 0,
                    },
                });
            }
            SourceEvent::Change(c) => {
                let t = seen.open.as_mut().expect("change outside a transaction");
                assert_eq!(c.op_index, t.count, "op_index is dense from 0");
                t.count += 1;
                seen.changes += 1;
                let row = c.after.as_ref().or(c.before.as_ref());
                if let Some(Value::Int(i)) = row.and_then(|r| r.first()) {
                    seen.id_sum = seen.id_sum.wrapping_add(*i);
                }
                if self.behaviour.keep_changes {
                    t.changes.push(c);
                }
            }
            SourceEvent::Commit(commit) => {
                let mut t = seen.open.take().expect("commit without begin");
                assert_eq!(t.begin.id, commit.id, "begin and commit ids differ");
                assert_eq!(
                    commit.change_count, t.count,
                    "change_count of {}",
                    commit.id
                );
                let restart = commit.restart_position.clone();
                t.commit = commit;
                seen.txns.push(t);
                self.ack(&restart);
            }
            SourceEvent::Rollback => {
                seen.open = None;
                seen.rollbacks += 1;
            }
            SourceEvent::Progress(p) => {
                seen.progress.push(p.clone());
                self.ack(&p);
            }
        }
    }

    /// Receive one batch (waiting at most `wait`); false when nothing came or the source ended.
    pub async fn pump(&mut self, wait: Duration) -> bool {
        let Some(rx) = self.events.as_mut() else {
            return false;
        };
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(batch)) => {
                for ev in batch {
                    self.take(ev);
                }
                true
            }
            Ok(None) => {
                self.events = None;
                false
            }
            Err(_) => false,
        }
    }

    /// Receive until `done` holds; panics after `deadline` or when the source stops.
    pub async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&Seen) -> bool,
    ) {
        let started = Instant::now();
        while !done(&self.seen) {
            if self.events.is_none() {
                let res = self.join();
                panic!("the source stopped while waiting for {what}: {res:?}");
            }
            assert!(
                started.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {what}; seen {} txns, {} changes; the last: {:?}",
                self.seen.txns.len(),
                self.seen.changes,
                self.seen
                    .txns
                    .iter()
                    .rev()
                    .take(5)
                    .map(|t| (
                        t.id().to_owned(),
                        t.changes.iter().take(5).map(describe).collect::<Vec<_>>()
                    ))
                    .collect::<Vec<_>>()
            );
            self.pump(Duration::from_millis(200)).await;
        }
    }

    /// Wait until `n` streamed (non-snapshot) transactions have arrived.
    pub async fn wait_streamed(&mut self, n: usize, deadline: Duration) {
        self.wait_for(&format!("{n} streamed transactions"), deadline, |s| {
            s.streamed().count() >= n
        })
        .await;
    }

    /// Wait a little and assert nothing more arrives.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        let before = (self.seen.txns.len(), self.seen.changes);
        let started = Instant::now();
        while started.elapsed() < wait {
            self.pump(Duration::from_millis(100)).await;
        }
        assert_eq!(
            before,
            (self.seen.txns.len(), self.seen.changes),
            "unexpected transactions arrived"
        );
    }

    fn join(&mut self) -> Result<(), String> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("the source panicked".into())),
            None => Ok(()),
        }
    }

    /// Shut down gracefully: fire shutdown, keep receiving (and acknowledging) until the
    /// source has returned. Returns what it returned and everything seen.
    pub async fn stop(mut self) -> (Result<(), String>, Seen) {
        self.shutdown.cancel();
        let started = Instant::now();
        while self.events.is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the source did not stop within 60 s of shutdown"
            );
            self.pump(Duration::from_millis(200)).await;
        }
        let res = self.join();
        (res, std::mem::take(&mut self.seen))
    }

    /// Stop like a crash of the pipeline: drop the event channel and the durable position and
    /// fire shutdown; nothing more is received or made durable. Returns what the source
    /// returned (an error, or `Ok` when it saw the shutdown first) and everything seen.
    pub async fn crash(mut self) -> (Result<(), String>, Seen) {
        self.events = None;
        self.durable = None;
        self.shutdown.cancel();
        let started = Instant::now();
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the source did not stop within 10 s of a crash"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let res = self.join();
        (res, std::mem::take(&mut self.seen))
    }
}

/// The VmRSS of this process in kB.
pub fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Where spill files live for `env`'s slot.
pub fn spill_dir(env: &PgEnv) -> PathBuf {
    env.spill.path().join(&env.slot)
}

/// Expected value helpers.
pub fn int(v: i64) -> Value {
    Value::Int(v)
}

/// A text value.
pub fn text(v: &str) -> Value {
    Value::Text(v.to_owned())
}

/// The ids (`id` column, first column) of a change's after (or before) image.
pub fn row_id(c: &Change) -> i64 {
    let row = c.after.as_ref().or(c.before.as_ref()).expect("a row image");
    match row.first() {
        Some(Value::Int(i)) => *i,
        other => panic!("first column is not an integer id: {other:?}"),
    }
}

/// A short description of a change: `table op id`.
pub fn describe(c: &Change) -> String {
    match c.op {
        Op::Truncate => format!("{} truncate", c.table.id.name),
        op => format!("{} {op} {}", c.table.id.name, row_id(c)),
    }
}

/// Bytes from lowercase or uppercase hex digits.
pub fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// Wait until the source is streaming from its slot (so writes after this are captured: a
/// slot that is still being created may leave them to its snapshot).
pub async fn wait_slot(env: &PgEnv) {
    ordo_tests::stack::wait_until("the source to stream", Duration::from_secs(30), || async {
        env.client
            .query_opt(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = 'ordo/' || $1 AND state = 'streaming'",
                &[&env.slot],
            )
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
}
