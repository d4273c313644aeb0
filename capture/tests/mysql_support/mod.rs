//! Shared helpers of the MariaDB source tests: the stack's server, a source running on the
//! test's runtime, and a collector that reassembles transactions from the event batches.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use ordo_capture::mysql::{self, MysqlSourceError};
use ordo_capture::source::SourceContext;
use ordo_config::{MysqlFlavor, MysqlSource, Secret, Snapshot, Tls};
use ordo_kcop::{Change, Position, SourceEvent, TableId, TxnBegin, TxnCommit};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// `mysql://ordo:ordo@host:port` of the test stack.
pub fn url() -> String {
    if let Ok(u) = std::env::var("ORDO_TEST_MYSQL_URL") {
        return u;
    }
    let env = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/stack/env");
    let text = std::fs::read_to_string(env).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("export ORDO_TEST_MYSQL_URL="))
        .map(|v| v.trim_matches('\'').to_owned())
        .expect(
            "ORDO_TEST_MYSQL_URL is not set and target/stack/env has none: run scripts/stack up",
        )
}

pub async fn admin() -> Conn {
    Conn::new(Opts::from_url(&url()).unwrap())
        .await
        .expect("connect to MariaDB: run scripts/stack up")
}

/// A fresh database named `<prefix>_<random>`.
pub async fn database(prefix: &str) -> String {
    let name = format!("{prefix}_{:08x}", rand::rng().random::<u32>());
    admin()
        .await
        .query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    name
}

/// Source settings for `user` with a random replica server id.
pub fn config(
    user: &str,
    password: &str,
    snapshot: Snapshot,
    databases: Vec<String>,
) -> MysqlSource {
    let opts = Opts::from_url(&url()).unwrap();
    MysqlSource {
        flavor: MysqlFlavor::Mariadb,
        host: opts.ip_or_hostname().to_owned(),
        port: opts.tcp_port(),
        user: user.to_owned(),
        password: Some(Secret::new(password)),
        tls: Tls::default(),
        server_id: rand::rng().random_range(10_000..2_000_000_000),
        snapshot,
        snapshot_chunk_rows: 1000,
        databases,
        signal_table: None,
    }
}

/// A source running on the test's runtime.
pub struct Running {
    pub events: Collector,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), MysqlSourceError>>,
}

/// Start the source for the tables of `db`.
pub fn start(cfg: MysqlSource, db: &str, resume: Option<Position>) -> Running {
    let (tx, rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let db = db.to_owned();
    let ctx = SourceContext {
        events: tx,
        durable: watch::channel(None).1,
        resume,
        tables: Arc::new(move |t: &TableId| t.namespace == db),
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(async move { mysql::run(&cfg, ctx).await });
    Running {
        events: Collector {
            rx,
            buf: VecDeque::new(),
            closed: false,
        },
        shutdown,
        task,
    }
}

/// One transaction as the source handed it on.
#[derive(Debug, Clone)]
pub struct Txn {
    pub begin: TxnBegin,
    pub changes: Vec<Change>,
    pub commit: TxnCommit,
}

/// Reads event batches and reassembles transactions.
pub struct Collector {
    rx: mpsc::Receiver<Vec<SourceEvent>>,
    buf: VecDeque<SourceEvent>,
    pub closed: bool,
}

impl Collector {
    /// The next event, or `None` when the source stopped or `until` passed.
    pub async fn event(&mut self, until: Instant) -> Option<SourceEvent> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return Some(e);
            }
            let left = until.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(batch)) => self.buf.extend(batch),
                Ok(None) => {
                    self.closed = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next whole transaction (a `Rollback` discards the partial one).
    pub async fn txn(&mut self, until: Instant) -> Option<Txn> {
        let mut open: Option<(TxnBegin, Vec<Change>)> = None;
        loop {
            match self.event(until).await? {
                SourceEvent::Begin(b) => {
                    assert!(open.is_none(), "begin inside a transaction");
                    open = Some((b, Vec::new()));
                }
                SourceEvent::Change(c) => open
                    .as_mut()
                    .expect("change outside a transaction")
                    .1
                    .push(c),
                SourceEvent::Commit(commit) => {
                    let (begin, changes) = open.take().expect("commit outside a transaction");
                    assert_eq!(begin.id, commit.id);
                    assert_eq!(commit.change_count as usize, changes.len());
                    for (i, c) in changes.iter().enumerate() {
                        assert_eq!(c.op_index, i as u64, "dense op indexes");
                    }
                    return Some(Txn {
                        begin,
                        changes,
                        commit,
                    });
                }
                SourceEvent::Rollback => open = None,
                SourceEvent::Progress(_) => {}
            }
        }
    }

    /// Transactions until one satisfies `last` (included); panics after the deadline.
    pub async fn txns_until(&mut self, what: &str, mut last: impl FnMut(&Txn) -> bool) -> Vec<Txn> {
        let until = Instant::now() + DEADLINE;
        let mut out = Vec::new();
        loop {
            let t = self.txn(until).await.unwrap_or_else(|| {
                panic!(
                    "no transaction {what} within {DEADLINE:?} (got {})",
                    out.len()
                )
            });
            let done = last(&t);
            out.push(t);
            if done {
                return out;
            }
        }
    }
}

/// `@@last_gtid` after running `sql` statements (each one a transaction or part of one).
pub async fn exec(conn: &mut Conn, sql: &[&str]) -> String {
    for s in sql {
        conn.query_drop(*s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.query_first::<String, _>("SELECT @@last_gtid")
        .await
        .unwrap()
        .unwrap_or_default()
}
