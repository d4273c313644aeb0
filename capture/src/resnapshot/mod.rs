//! Incremental re-snapshot of one table while the daemon runs (`ordo snapshot --table`).
//!
//! The method is DBLog's (Netflix), also used by Debezium's incremental snapshots: the table is
//! read in chunks ordered by primary key, each chunk between two watermark rows written to a
//! signal table that is part of the publication, so the watermarks arrive in the replication
//! stream at the points in commit order where the chunk's read began and ended.
//!
//! - `ordo snapshot` ([`command`]) inserts a `snapshot` row into the signal table
//!   (`source.postgres.signal_table`) and follows the progress the daemon writes back to it.
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
pub mod signal;

use std::sync::{Arc, Mutex, MutexGuard};

use ordo_kcop::{Position, Row, TableId, TableSchema};

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
