//! Incremental re-snapshot of one table while the daemon runs (`ordo snapshot --table`).
//!
//! The method is DBLog's (Netflix), also used by Debezium's incremental snapshots: the table is
//! read in chunks ordered by primary key, each chunk between two watermark rows written to a
//! signal table that is part of the publication, so the watermarks arrive in the replication
//! stream at the points in commit order where the chunk's read began and ended.
//!
//! - `ordo snapshot` ([`command`]) inserts a `snapshot` row into the signal table
//!   (`source.postgres.signal_table` or `source.mysql.signal_table`) and follows the progress
//!   the daemon writes back to it.
//! - In the daemon, the [`driver`] task sees the request (from the stream, or at start-up from the
//!   table) and, for each chunk, on its own connection: inserts a `window-open` row, selects the
//!   next `chunk_size` rows after the last key, hands them to the hook, inserts a `window-close`
//!   row.
//! - The stream-side [`hook::WindowHook`] sits in front of the pipeline ([`crate::source::EventHook`]):
//!   it drops every signal-table change (they are never published), and while a window is open
//!   it notes the key of every change to the table. When the `window-close` transaction
//!   arrives, the chunk's rows whose keys did not change inside the window are added to that
//!   transaction as `Read` changes: the chunk becomes a real source transaction with its
//!   position, its commit record and its sequence number. A key that did change in the window
//!   is left to the stream, whose value is at least as new. So snapshot rows and concurrent
//!   changes merge without loss and without a stale row after a newer one.
//!
//! # Resumption
//! The driver records the last key of a chunk in the signal row only once the chunk's
//! transaction is durable (its commit record acknowledged: the daemon's durable-position
//! watch). A daemon that stops mid-snapshot continues after that key when it starts again.
//! A chunk whose commit record was written but whose key was not yet recorded (a crash between
//! the two) is read and emitted again: snapshot rows are at least once, as in Debezium. The
//! repeated rows are `Read`s of values at least as new as the stream's before them, so
//! replaying the stream still ends at the table's state.

pub mod command;
pub mod driver;
pub mod hook;
pub mod postgres;
pub mod signal;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use ordo_kcop::{Position, Row, TableId, TableSchema};
use serde_json::Value as Json;

use signal::{Request, SnapshotError};

use crate::source::{Batcher, SourceContext, TableFilter};

/// What the driver and `ordo snapshot` need from a source: the signal table's rows and
/// chunked reads of a table in key order, on one connection. PostgreSQL's is
/// [`postgres::PgBackend`], MariaDB's is `crate::mysql::resnapshot::MysqlBackend`.
pub trait Backend: Send + Sized {
    /// The source's settings.
    type Config: Clone + Send + Sync + 'static;
    /// What a source needs, beyond [`Target`]'s fields, to read a table's chunks.
    type Table: Send + Sync;

    /// Open a connection.
    fn connect(cfg: &Self::Config) -> impl Future<Output = Result<Self, SnapshotError>> + Send;
    /// Rows per chunk when a request names none.
    fn default_chunk_rows(cfg: &Self::Config) -> u64;
    /// Whether the signal table exists.
    fn signal_exists(&mut self) -> impl Future<Output = Result<bool, SnapshotError>> + Send;
    /// Create the signal table when missing (true when this call created it), and make sure
    /// the daemon sees its changes.
    fn ensure_signal_table(&mut self) -> impl Future<Output = Result<bool, SnapshotError>> + Send;
    /// Insert a request to snapshot `table`; returns its id.
    fn request(
        &mut self,
        table: &TableId,
        chunk_size: u64,
        rows_estimated: i64,
    ) -> impl Future<Output = Result<i64, SnapshotError>> + Send;
    /// The request `id`, if it exists.
    fn get(
        &mut self,
        id: i64,
    ) -> impl Future<Output = Result<Option<Request>, SnapshotError>> + Send;
    /// Requests not yet done or failed, oldest first.
    fn open_requests(&mut self)
    -> impl Future<Output = Result<Vec<Request>, SnapshotError>> + Send;
    /// Merge `fields` into request `id`'s data.
    fn update(
        &mut self,
        id: i64,
        fields: &Json,
    ) -> impl Future<Output = Result<(), SnapshotError>> + Send;
    /// Insert a watermark row of `kind` for chunk `token` of request `request`.
    fn watermark(
        &mut self,
        kind: &str,
        token: &str,
        request: i64,
    ) -> impl Future<Output = Result<(), SnapshotError>> + Send;
    /// Delete the watermark rows of request `request`.
    fn delete_watermarks(
        &mut self,
        request: i64,
    ) -> impl Future<Output = Result<(), SnapshotError>> + Send;
    /// Look `id` up and make sure it can be read in key order (and that its changes are
    /// captured).
    fn target(
        &mut self,
        id: &TableId,
    ) -> impl Future<Output = Result<Target<Self::Table>, SnapshotError>> + Send;
    /// Read up to `limit` rows after `after` (the last key, as text) in key order; returns
    /// them and the last row's key as text.
    fn read_chunk(
        &mut self,
        t: &Target<Self::Table>,
        after: Option<&[String]>,
        limit: u64,
    ) -> impl Future<Output = Result<(Vec<Row>, Option<Vec<String>>), SnapshotError>> + Send;
}

/// A table ready to be read in key order.
#[derive(Debug)]
pub struct Target<T> {
    /// Its name.
    pub id: TableId,
    /// Its schema now.
    pub schema: Arc<TableSchema>,
    /// Primary-key columns, in key order.
    pub key_columns: Vec<String>,
    /// Rows to expect (the catalog's estimate, or a count).
    pub estimated: i64,
    /// What the source needs to read it.
    pub source: T,
}

/// Whether the transaction that restarts at `restart` is durable once `durable` is.
pub fn is_durable(durable: Option<&Position>, restart: &Position) -> bool {
    match (durable, restart) {
        (Some(Position::Postgres(d)), Position::Postgres(r)) => d >= r,
        // One server's binlog coordinates grow in commit order (file names have a
        // fixed-width sequence number).
        (Some(Position::MySql { coord: d, .. }), Position::MySql { coord: r, .. }) => {
            d.file.len() > r.file.len() || (d.file.len() == r.file.len() && d >= r)
        }
        _ => false,
    }
}

/// The chunk the driver is working on, shared with the stream-side hook.
#[derive(Debug)]
pub struct Active {
    /// Identifies this chunk's watermarks: `<run>:<request>:<chunk>`.
    pub token: String,
    /// The table being snapshotted.
    pub table: TableId,
    /// Its primary-key columns, in key order.
    pub key_columns: Vec<String>,
    /// The chunk's rows, set by the driver before it writes the `window-close` watermark.
    pub rows: Option<ChunkRows>,
}

/// The rows one chunk read.
#[derive(Debug)]
pub struct ChunkRows {
    /// The schema the rows follow (as the catalog described the table).
    pub schema: Arc<TableSchema>,
    /// The rows, in key order.
    pub rows: Vec<Row>,
}

/// State shared by the driver and the hook (both on the source thread).
#[derive(Debug, Default)]
pub struct Shared {
    /// The chunk in progress, if any.
    pub active: Option<Active>,
}

/// A handle to [`Shared`].
pub type SharedState = Arc<Mutex<Shared>>;

/// Lock the shared state; a panic elsewhere while holding it leaves plain data behind, so a
/// poisoned lock is used as is.
pub fn lock(state: &SharedState) -> MutexGuard<'_, Shared> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the hook tells the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A `snapshot` request row (its id) was inserted into the signal table.
    Requested(i64),
    /// The chunk `token` was handed to the pipeline: `rows` rows (after leaving out the keys the
    /// stream changed) in the transaction that restarts at `restart`.
    Emitted {
        /// The chunk's token.
        token: String,
        /// Rows emitted.
        rows: u64,
        /// Once this position is durable, the chunk is.
        restart: Position,
    },
}

/// The kinds of signal-table rows.
pub mod kinds {
    /// A request to snapshot a table (`data.table`, `data.chunk_size`), and its progress.
    pub const SNAPSHOT: &str = "snapshot";
    /// Low watermark: a chunk read begins.
    pub const WINDOW_OPEN: &str = "window-open";
    /// High watermark: a chunk read ended.
    pub const WINDOW_CLOSE: &str = "window-close";
}

/// The tables a source reader hands on: the mapped ones and the signal table, whose changes
/// the incremental snapshot's hook takes out of the stream.
pub fn decoded_tables(mapped: &TableFilter, signal: Option<&TableId>) -> TableFilter {
    let Some(signal) = signal else {
        return mapped.clone();
    };
    let (mapped, signal) = (mapped.clone(), signal.clone());
    Arc::new(move |t| *t == signal || mapped(t))
}

/// Put the incremental snapshot's hook (for the signal table `signal`) in front of the
/// pipeline and start its driver task, owned by the caller, which stops it when streaming
/// ends.
pub fn start<B: Backend + 'static>(
    cfg: &B::Config,
    signal: TableId,
    ctx: &SourceContext,
    out: &mut Batcher,
) -> tokio::task::JoinHandle<()> {
    let (notes_tx, notes) = tokio::sync::mpsc::channel(64);
    let shared = SharedState::default();
    out.set_hook(Box::new(hook::WindowHook::new(
        signal,
        shared.clone(),
        notes_tx,
    )));
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let driver = driver::Driver::<B> {
        cfg: cfg.clone(),
        tables: ctx.tables.clone(),
        shared,
        notes,
        durable: ctx.durable.clone(),
        shutdown: ctx.shutdown.clone(),
        run_id,
    };
    tokio::spawn(driver.run())
}
