//! The daemon's own numbers: what it captured and published, how far behind it is, and what
//! state it is in, rendered in the Prometheus text format.
//!
//! One [`Metrics`] value belongs to one running daemon ([`crate::daemon::run`]); the pipeline,
//! the publisher's delivery callback, the slot monitor ([`slot`]) and the snapshot readers
//! update it, and [`http`] serves it on `metrics.listen` with `/health`. Every metric name is a
//! constant in [`names`] and described once in [`HELP`]. The only labels are `table` (bounded by
//! the mapped tables) and `state` (the closed set [`State`]).
//!
//! # Lag
//! Source lag is now minus the commit time of the last transaction handed to the pipeline;
//! end-to-end lag is now minus the commit time of the last transaction whose commit record
//! Kafka acknowledged. Both are 0 while the source reports it is idle (it has sent everything
//! up to its log's end) and, for end-to-end lag, nothing is waiting for Kafka: an idle database
//! is not a lagging capture.

pub mod http;
pub mod slot;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use ordo_kcop::TableId;

/// Metric names.
pub mod names {
    /// Row changes read from the source and handed to the pipeline (counter, label `table`).
    pub const ROWS_CAPTURED: &str = "ordo_rows_captured_total";
    /// Row changes whose transaction's commit record Kafka acknowledged (counter, `table`).
    pub const ROWS_PUBLISHED: &str = "ordo_rows_published_total";
    /// Source transactions handed to the pipeline (counter).
    pub const TXNS_CAPTURED: &str = "ordo_transactions_captured_total";
    /// Transactions whose commit record Kafka acknowledged (counter).
    pub const TXNS_PUBLISHED: &str = "ordo_transactions_published_total";
    /// Commit records handed to the producer (counter).
    pub const COMMIT_RECORDS: &str = "ordo_commit_records_written_total";
    /// Seconds between now and the commit time of the last captured transaction (gauge).
    pub const SOURCE_LAG: &str = "ordo_source_lag_seconds";
    /// Seconds between now and the commit time of the last published transaction (gauge).
    pub const END_TO_END_LAG: &str = "ordo_end_to_end_lag_seconds";
    /// WAL the PostgreSQL replication slot keeps on the server, in bytes (gauge).
    pub const SLOT_RETAINED: &str = "ordo_replication_slot_retained_bytes";
    /// Messages in librdkafka's queue, not yet acknowledged (gauge).
    pub const QUEUE_DEPTH: &str = "ordo_producer_queue_depth";
    /// Records Kafka refused for good (counter).
    pub const DELIVERY_ERRORS: &str = "ordo_delivery_errors_total";
    /// Rows read by the initial snapshot or by `ordo snapshot --table` so far (gauge, label `table`).
    pub const SNAPSHOT_DONE: &str = "ordo_snapshot_rows_done";
    /// The table's estimated row count when its snapshot started (gauge, label `table`).
    pub const SNAPSHOT_ESTIMATED: &str = "ordo_snapshot_rows_estimated";
    /// 1 for the daemon's current state, 0 for the others (gauge, label `state`).
    pub const STATE: &str = "ordo_state";
}

/// Each metric's type and description, in output order.
pub const HELP: [(&str, &str, &str); 13] = [
    (
        names::ROWS_CAPTURED,
        "counter",
        "Row changes read from the source, per table.",
    ),
    (
        names::ROWS_PUBLISHED,
        "counter",
        "Row changes durable in Kafka with their commit record, per table.",
    ),
    (
        names::TXNS_CAPTURED,
        "counter",
        "Source transactions handed to the pipeline.",
    ),
    (
        names::TXNS_PUBLISHED,
        "counter",
        "Transactions whose commit record Kafka acknowledged.",
    ),
    (
        names::COMMIT_RECORDS,
        "counter",
        "Commit records handed to the producer.",
    ),
    (
        names::SOURCE_LAG,
        "gauge",
        "Now minus the commit time of the last captured transaction (0 when the source is idle).",
    ),
    (
        names::END_TO_END_LAG,
        "gauge",
        "Now minus the commit time of the last transaction with an acknowledged commit record (0 when idle).",
    ),
    (
        names::SLOT_RETAINED,
        "gauge",
        "WAL bytes the PostgreSQL replication slot retains (pg_current_wal_lsn() - restart_lsn).",
    ),
    (
        names::QUEUE_DEPTH,
        "gauge",
        "Messages in the producer queue waiting for acknowledgement.",
    ),
    (
        names::DELIVERY_ERRORS,
        "counter",
        "Records Kafka did not accept after librdkafka's retries.",
    ),
    (
        names::SNAPSHOT_DONE,
        "gauge",
        "Rows read by the latest snapshot of each table (initial or ordo snapshot --table).",
    ),
    (
        names::SNAPSHOT_ESTIMATED,
        "gauge",
        "Estimated rows of each table in its latest snapshot (-1 when unknown).",
    ),
    (names::STATE, "gauge", "1 for the daemon's current state."),
];

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Reading the commit stream, connecting.
    Starting = 0,
    /// Taking the initial snapshot.
    Snapshotting = 1,
    /// Streaming the source's log.
    Streaming = 2,
    /// The source connection was lost; reconnecting with backoff.
    Reconnecting = 3,
    /// Draining after SIGTERM or a failure.
    Stopping = 4,
}

impl State {
    /// Every state, in metric output order.
    pub const ALL: [State; 5] = [
        State::Starting,
        State::Snapshotting,
        State::Streaming,
        State::Reconnecting,
        State::Stopping,
    ];

    /// The lowercase name used in metrics, `/health` and systemd's STATUS.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Snapshotting => "snapshotting",
            State::Streaming => "streaming",
            State::Reconnecting => "reconnecting",
            State::Stopping => "stopping",
        }
    }

    /// Whether `/health` answers 200 and systemd may be told READY.
    pub fn is_healthy(self) -> bool {
        matches!(self, State::Snapshotting | State::Streaming)
    }

    fn from_u8(v: u8) -> State {
        State::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(State::Stopping)
    }
}

/// What a source reader reports about itself: the states only a source can tell (see
/// [`source_state`]). `Starting` and `Stopping` belong to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// The initial snapshot is being read.
    Snapshotting,
    /// The server accepted the stream request: changes flow from the log.
    Streaming,
    /// The connection was lost; the reader waits to reconnect.
    Reconnecting,
}

impl From<SourceState> for State {
    fn from(s: SourceState) -> Self {
        match s {
            SourceState::Snapshotting => State::Snapshotting,
            SourceState::Streaming => State::Streaming,
            SourceState::Reconnecting => State::Reconnecting,
        }
    }
}

/// One table's row counters.
#[derive(Debug, Default)]
pub struct TableStats {
    captured: AtomicU64,
    published: AtomicU64,
}

impl TableStats {
    /// `n` more rows of this table were captured.
    pub fn captured(&self, n: u64) {
        self.captured.fetch_add(n, Relaxed);
    }

    /// `n` more rows of this table were published.
    pub fn published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }
}

/// Rows per table of one transaction, for the published counters.
pub type TableRows = Vec<(Arc<TableStats>, u64)>;

#[derive(Debug, Clone, Copy)]
struct SnapshotProgress {
    done: u64,
    estimated: i64,
}

/// The metrics of one daemon (see the module docs).
#[derive(Debug)]
pub struct Metrics {
    tables: Mutex<BTreeMap<String, Arc<TableStats>>>,
    snapshot: Mutex<BTreeMap<String, SnapshotProgress>>,
    txns_captured: AtomicU64,
    txns_published: AtomicU64,
    commit_records: AtomicU64,
    delivery_errors: AtomicU64,
    queue_depth: AtomicU64,
    pending_txns: AtomicU64,
    /// Commit time (UTC microseconds) of the last captured / published transaction; 0 = none.
    captured_commit_micros: AtomicI64,
    published_commit_micros: AtomicI64,
    source_idle: AtomicBool,
    /// -1 until the slot monitor has measured it.
    slot_retained: AtomicI64,
    state: AtomicU8,
    pipeline_ticks: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            tables: Mutex::default(),
            snapshot: Mutex::default(),
            txns_captured: AtomicU64::new(0),
            txns_published: AtomicU64::new(0),
            commit_records: AtomicU64::new(0),
            delivery_errors: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            pending_txns: AtomicU64::new(0),
            captured_commit_micros: AtomicI64::new(0),
            published_commit_micros: AtomicI64::new(0),
            source_idle: AtomicBool::new(false),
            slot_retained: AtomicI64::new(-1),
            state: AtomicU8::new(State::Starting as u8),
            pipeline_ticks: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful even if a holder panicked.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Metrics {
    /// The counters of `table` (created on first use; callers cache the `Arc`).
    pub fn table(&self, table: &str) -> Arc<TableStats> {
        lock(&self.tables)
            .entry(table.to_owned())
            .or_default()
            .clone()
    }

    /// A transaction committed at `commit_micros` was handed to the pipeline whole.
    pub fn txn_captured(&self, commit_micros: i64) {
        self.txns_captured.fetch_add(1, Relaxed);
        self.captured_commit_micros.store(commit_micros, Relaxed);
    }

    /// `txns` commit records were acknowledged, the newest for a commit at `commit_micros`.
    pub fn txns_published(&self, txns: u64, commit_micros: i64) {
        self.txns_published.fetch_add(txns, Relaxed);
        self.published_commit_micros.store(commit_micros, Relaxed);
    }

    /// A commit record was handed to the producer.
    pub fn commit_record_written(&self) {
        self.commit_records.fetch_add(1, Relaxed);
    }

    /// Kafka refused a record for good.
    pub fn delivery_error(&self) {
        self.delivery_errors.fetch_add(1, Relaxed);
    }

    /// The producer queue holds `depth` messages; `pending` transactions wait for Kafka.
    pub fn set_queue(&self, depth: u64, pending: u64) {
        self.queue_depth.store(depth, Relaxed);
        self.pending_txns.store(pending, Relaxed);
    }

    /// Whether the source has reported that it is idle since its last transaction.
    pub fn set_source_idle(&self, idle: bool) {
        self.source_idle.store(idle, Relaxed);
    }

    /// The replication slot retains `bytes` of WAL.
    pub fn set_slot_retained(&self, bytes: i64) {
        self.slot_retained.store(bytes, Relaxed);
    }

    /// Snapshot progress of `table`; `estimated` is `None` when the source has no estimate.
    pub fn snapshot_progress(&self, table: &str, done: u64, estimated: Option<i64>) {
        let estimated = estimated.map_or(-1, |e| e.max(i64::try_from(done).unwrap_or(i64::MAX)));
        lock(&self.snapshot).insert(table.to_owned(), SnapshotProgress { done, estimated });
        self.transition(State::Snapshotting);
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    /// Move to `to`, unless the daemon is stopping already (that state is final).
    pub fn transition(&self, to: State) {
        let _ = self.state.fetch_update(Relaxed, Relaxed, |cur| {
            (cur != State::Stopping as u8 && cur != to as u8).then_some(to as u8)
        });
    }

    /// The pipeline loop went round once (drives the systemd watchdog).
    pub fn pipeline_tick(&self) {
        self.pipeline_ticks.fetch_add(1, Relaxed);
    }

    /// How many times the pipeline loop went round.
    pub fn pipeline_ticks(&self) -> u64 {
        self.pipeline_ticks.load(Relaxed)
    }

    /// Source lag in seconds at `now`, if a transaction was captured.
    pub fn source_lag(&self, now: i64) -> Option<f64> {
        let idle = self.source_idle.load(Relaxed);
        lag(self.captured_commit_micros.load(Relaxed), now, idle)
    }

    /// End-to-end lag in seconds at `now`, if a transaction was published.
    pub fn end_to_end_lag(&self, now: i64) -> Option<f64> {
        let idle = self.source_idle.load(Relaxed) && self.pending_txns.load(Relaxed) == 0;
        lag(self.published_commit_micros.load(Relaxed), now, idle)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            self.render_samples(name, &mut out);
        }
        out
    }

    fn render_samples(&self, name: &str, out: &mut String) {
        let now = now_micros();
        let plain = |out: &mut String, v: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{name} {v}");
        };
        match name {
            names::ROWS_CAPTURED | names::ROWS_PUBLISHED => {
                for (table, s) in lock(&self.tables).iter() {
                    let c = if name == names::ROWS_CAPTURED {
                        &s.captured
                    } else {
                        &s.published
                    };
                    labelled(out, name, "table", table, c.load(Relaxed));
                }
            }
            names::SNAPSHOT_DONE | names::SNAPSHOT_ESTIMATED => {
                for (table, p) in lock(&self.snapshot).iter() {
                    let v = if name == names::SNAPSHOT_DONE {
                        p.done as i64
                    } else {
                        p.estimated
                    };
                    labelled(out, name, "table", table, v);
                }
            }
            names::STATE => {
                let cur = self.state();
                for s in State::ALL {
                    labelled(out, name, "state", s.name(), u8::from(s == cur));
                }
            }
            names::TXNS_CAPTURED => plain(out, &self.txns_captured.load(Relaxed)),
            names::TXNS_PUBLISHED => plain(out, &self.txns_published.load(Relaxed)),
            names::COMMIT_RECORDS => plain(out, &self.commit_records.load(Relaxed)),
            names::DELIVERY_ERRORS => plain(out, &self.delivery_errors.load(Relaxed)),
            names::QUEUE_DEPTH => plain(out, &self.queue_depth.load(Relaxed)),
            names::SOURCE_LAG => self
                .source_lag(now)
                .into_iter()
                .for_each(|v| plain(out, &v)),
            names::END_TO_END_LAG => self
                .end_to_end_lag(now)
                .into_iter()
                .for_each(|v| plain(out, &v)),
            names::SLOT_RETAINED => {
                let v = self.slot_retained.load(Relaxed);
                if v >= 0 {
                    plain(out, &v);
                }
            }
            _ => {}
        }
    }
}

fn lag(commit_micros: i64, now: i64, idle: bool) -> Option<f64> {
    if commit_micros == 0 {
        return None;
    }
    if idle {
        return Some(0.0);
    }
    Some(((now - commit_micros).max(0) as f64) / 1e6)
}

fn labelled(out: &mut String, name: &str, label: &str, value: &str, v: impl std::fmt::Display) {
    let _ = write!(out, "{name}{{{label}=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\"}} {v}");
}

thread_local! {
    static SOURCE_METRICS: RefCell<Option<Arc<Metrics>>> = const { RefCell::new(None) };
}

/// Make `metrics` the target of [`snapshot_progress`] and [`source_state`] calls on this thread
/// (the daemon calls it on the source thread, so source readers need no extra parameter).
pub fn install_for_thread(metrics: Arc<Metrics>) {
    SOURCE_METRICS.with(|m| *m.borrow_mut() = Some(metrics));
}

/// Record snapshot progress of `table` in the metrics installed on this thread, if any.
pub fn snapshot_progress(table: &TableId, done: u64, estimated: Option<i64>) {
    SOURCE_METRICS.with(|m| {
        if let Some(m) = m.borrow().as_ref() {
            m.snapshot_progress(&table.to_string(), done, estimated);
        }
    });
}

/// Report the source reader's state to the metrics installed on this thread, if any. Readers
/// call it when a snapshot starts, when the server accepts a stream request, and when a lost
/// connection makes them wait to reconnect; once the daemon is stopping it has no effect.
pub fn source_state(state: SourceState) {
    SOURCE_METRICS.with(|m| {
        if let Some(m) = m.borrow().as_ref() {
            m.transition(state.into());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_escaped_labels() {
        let m = Metrics::default();
        m.table("public.\"odd\"").captured(3);
        m.txn_captured(1);
        m.transition(State::Streaming);
        let text = m.render();
        assert!(text.contains("ordo_rows_captured_total{table=\"public.\\\"odd\\\"\"} 3\n"));
        assert!(text.contains("ordo_state{state=\"streaming\"} 1\n"));
        assert!(text.contains("ordo_state{state=\"starting\"} 0\n"));
        assert!(text.contains("ordo_transactions_captured_total 1\n"));
        for (name, _, _) in HELP {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    #[test]
    fn source_state_reaches_the_installed_metrics_only() {
        source_state(SourceState::Streaming); // nothing installed: no effect, no panic
        let m = Arc::new(Metrics::default());
        install_for_thread(m.clone());
        source_state(SourceState::Streaming);
        assert_eq!(m.state(), State::Streaming);
        source_state(SourceState::Reconnecting);
        assert_eq!(m.state(), State::Reconnecting);
        m.transition(State::Stopping);
        source_state(SourceState::Streaming);
        assert_eq!(m.state(), State::Stopping);
    }

    #[test]
    fn stopping_is_final_and_idle_means_no_lag() {
        let m = Metrics::default();
        m.transition(State::Stopping);
        m.transition(State::Streaming);
        assert_eq!(m.state(), State::Stopping);
        m.txn_captured(1_000_000);
        assert_eq!(m.source_lag(3_000_000), Some(2.0));
        m.set_source_idle(true);
        assert_eq!(m.source_lag(3_000_000), Some(0.0));
    }
}
