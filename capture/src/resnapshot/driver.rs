//! The daemon side of `ordo snapshot --table`: one task that serves the signal table's
//! requests one at a time, chunk by chunk (see the [module](super) docs), on a connection of
//! the source's [`Backend`].
//!
//! # Error handling
//! A lost connection (or a window that never closed in the stream) ends the session; the task
//! connects again with backoff and continues each open request after its last durable chunk.
//! A request that cannot be served (unknown or unmapped table, no primary key, a value that
//! does not decode) is marked `failed` with the reason, which `ordo snapshot` prints.

use std::time::Duration;

use ordo_kcop::{Position, TableId};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::signal::{Request, SnapshotError};
use super::{Active, Backend, ChunkRows, Note, SharedState, Target, is_durable, kinds, lock};
use crate::metrics::{SourceState, snapshot_progress, source_state};
use crate::source::TableFilter;

/// How long a chunk's close watermark may take to come through the stream before the chunk
/// is read again.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(600);

/// How often open requests are looked for without a note from the stream.
const POLL: Duration = Duration::from_secs(5);

/// The driver task and what it works with.
pub struct Driver<B: Backend> {
    /// The source settings (for connecting and the default chunk size).
    pub cfg: B::Config,
    /// Mapped tables; only those can be snapshotted.
    pub tables: TableFilter,
    /// Shared with the hook.
    pub shared: SharedState,
    /// From the hook.
    pub notes: mpsc::Receiver<Note>,
    /// Durable positions.
    pub durable: watch::Receiver<Option<Position>>,
    /// Stops the task.
    pub shutdown: CancellationToken,
    /// Tells this run's watermarks from older runs'.
    pub run_id: String,
}

impl<B: Backend> std::fmt::Debug for Driver<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// What a request's progress is.
struct Progress {
    rows_done: u64,
    chunks: u64,
    last_key: Option<Vec<String>>,
    estimated: i64,
}

impl<B: Backend> Driver<B> {
    /// Serve requests until shutdown.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.session().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "incremental snapshot: interrupted; continuing after the last durable chunk");
                }
            }
            lock(&self.shared).active = None;
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn session(&mut self) -> Result<(), SnapshotError> {
        let mut db = B::connect(&self.cfg).await?;
        let mut poll = tokio::time::interval(POLL);
        loop {
            if db.signal_exists().await? {
                for req in db.open_requests().await? {
                    self.serve(&mut db, req).await?;
                    if self.shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                note = self.notes.recv() => if note.is_none() { return Ok(()) },
                _ = poll.tick() => {}
            }
        }
    }

    async fn serve(&mut self, db: &mut B, req: Request) -> Result<(), SnapshotError> {
        match self.snapshot(db, &req).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                lock(&self.shared).active = None;
                tracing::error!(request = req.id, error = %e, "incremental snapshot failed");
                let fields = json!({ "state": "failed", "error": e.to_string() });
                db.update(req.id, &fields).await
            }
        }
    }

    fn requested_table(&self, req: &Request) -> Result<TableId, SnapshotError> {
        let name = req.text("table").unwrap_or_default();
        let Some((schema, table)) = name.split_once('.') else {
            return Err(SnapshotError::Refused(format!(
                "request {}: `{name}` is not a schema.table name",
                req.id
            )));
        };
        let id = TableId::new(schema, table);
        if !(self.tables)(&id) {
            return Err(SnapshotError::Refused(format!(
                "table {id} is not mapped by the daemon's config; add a mapping for it first"
            )));
        }
        Ok(id)
    }

    async fn snapshot(&mut self, db: &mut B, req: &Request) -> Result<(), SnapshotError> {
        let id = self.requested_table(req)?;
        let t = db.target(&id).await?;
        let chunk_size = req
            .number("chunk_size")
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| B::default_chunk_rows(&self.cfg));
        let mut p = Progress {
            rows_done: req
                .number("rows_done")
                .map_or(0, |n| n.max(0).unsigned_abs()),
            chunks: req.number("chunks").map_or(0, |n| n.max(0).unsigned_abs()),
            last_key: req
                .data
                .get("last_key")
                .and_then(|k| serde_json::from_value(k.clone()).ok()),
            estimated: t.estimated,
        };
        db.delete_watermarks(req.id).await?;
        let fields =
            json!({ "state": "running", "rows_estimated": p.estimated, "run": self.run_id });
        db.update(req.id, &fields).await?;
        tracing::info!(table = %id, request = req.id, chunk_size, resume_after_rows = p.rows_done, "incremental snapshot started");
        loop {
            let Some(n) = self.chunk(db, req.id, &t, &mut p, chunk_size).await? else {
                return Ok(()); // shutdown; continues on the next start
            };
            if n < chunk_size {
                break;
            }
        }
        lock(&self.shared).active = None;
        let fields = json!({ "state": "done", "rows_done": p.rows_done });
        db.update(req.id, &fields).await?;
        tracing::info!(table = %id, request = req.id, rows = p.rows_done, chunks = p.chunks, "incremental snapshot done");
        Ok(())
    }

    /// Read, hand over and record one chunk; returns how many rows it read, or `None` on
    /// shutdown.
    async fn chunk(
        &mut self,
        db: &mut B,
        request: i64,
        t: &Target<B::Table>,
        p: &mut Progress,
        chunk_size: u64,
    ) -> Result<Option<u64>, SnapshotError> {
        let token = format!("{}:{request}:{}", self.run_id, p.chunks);
        lock(&self.shared).active = Some(Active {
            token: token.clone(),
            table: t.id.clone(),
            key_columns: t.key_columns.clone(),
            rows: None,
        });
        db.watermark(kinds::WINDOW_OPEN, &token, request).await?;
        let (rows, last_key) = db.read_chunk(t, p.last_key.as_deref(), chunk_size).await?;
        let n = rows.len() as u64;
        if let Some(a) = lock(&self.shared).active.as_mut() {
            a.rows = Some(ChunkRows {
                schema: t.schema.clone(),
                rows,
            });
        }
        db.watermark(kinds::WINDOW_CLOSE, &token, request).await?;
        let Some(restart) = self.wait_emitted(&token).await? else {
            return Ok(None);
        };
        if !self.wait_durable(&restart).await {
            return Ok(None);
        }
        p.rows_done += n;
        p.chunks += 1;
        if last_key.is_some() {
            p.last_key = last_key;
        }
        let fields =
            json!({ "rows_done": p.rows_done, "chunks": p.chunks, "last_key": p.last_key });
        db.update(request, &fields).await?;
        db.delete_watermarks(request).await?;
        snapshot_progress(&t.id, p.rows_done, Some(p.estimated));
        source_state(SourceState::Streaming);
        tracing::info!(table = %t.id, rows = p.rows_done, estimated = p.estimated.max(p.rows_done as i64), "incremental snapshot progress");
        Ok(Some(n))
    }

    /// Wait until the hook has emitted chunk `token`; its restart position, or `None` on
    /// shutdown.
    async fn wait_emitted(&mut self, token: &str) -> Result<Option<Position>, SnapshotError> {
        let deadline = tokio::time::sleep(WINDOW_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(None),
                () = &mut deadline => return Err(SnapshotError::Stalled(token.to_owned())),
                note = self.notes.recv() => match note {
                    None => return Ok(None),
                    Some(Note::Emitted { token: t, rows, restart }) if t == token => {
                        tracing::debug!(token, rows, restart = %restart, "incremental snapshot: chunk emitted");
                        return Ok(Some(restart));
                    }
                    Some(_) => {}
                },
            }
        }
    }

    /// Wait until `restart` is durable; false on shutdown or when the pipeline is gone.
    async fn wait_durable(&mut self, restart: &Position) -> bool {
        loop {
            if is_durable(self.durable.borrow().as_ref(), restart) {
                return true;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                changed = self.durable.changed() => if changed.is_err() { return false },
            }
        }
    }
}
