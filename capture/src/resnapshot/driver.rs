//! The daemon side of `ordo snapshot --table` for PostgreSQL: one task that serves the
//! signal table's requests one at a time, chunk by chunk (see the [module](super) docs).
//!
//! # Error handling
//! A lost connection (or a window that never closed in the stream) ends the session; the task
//! connects again with backoff and continues each open request after its last durable chunk.
//! A request that cannot be served (unknown or unmapped table, no primary key, a value that
//! does not decode) is marked `failed` with the reason, which `ordo snapshot` prints.

use std::sync::Arc;
use std::time::Duration;

use ordo_config::PostgresSource;
use ordo_kcop::{Lsn, Position, Row, TableId, TableSchema};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

use super::signal::{Request, SignalTable, SnapshotError, sql};
use super::{Active, ChunkRows, Note, SharedState, kinds, lock};
use crate::metrics::{SourceState, snapshot_progress, source_state};
use crate::postgres::catalog::{self, CatalogTable, ident, literal};
use crate::postgres::snapshot::{decode_row, table_schema};
use crate::postgres::types::{PgType, TypeCache};
use crate::source::TableFilter;

/// How long a chunk's close watermark may take to come through the stream before the chunk
/// is read again.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(600);

/// How often open requests are looked for without a note from the stream.
const POLL: Duration = Duration::from_secs(5);

/// A table ready to be read in key order.
#[derive(Debug)]
pub struct Target {
    /// The catalog's facts.
    pub table: CatalogTable,
    /// Its schema now.
    pub schema: Arc<TableSchema>,
    /// Each column's type, for decoding.
    pub types: Vec<PgType>,
    /// Primary-key columns, in key order.
    pub key_columns: Vec<String>,
    /// Their SQL types (`format_type`), for the key literals.
    pub key_types: Vec<String>,
}

/// Look `id` up and make sure it can be read in key order.
///
/// # Errors
/// [`SnapshotError::Refused`] when the table does not exist or has no primary key; SQL failures.
pub async fn target(client: &Client, id: &TableId) -> Result<Target, SnapshotError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.reltuples::bigint, c.relreplident::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&id.namespace, &id.name],
        )
        .await
        .map_err(sql(format!("look up table {id}")))?;
    let Some(row) = row else {
        return Err(SnapshotError::Refused(format!(
            "table {id} does not exist; name an existing table as schema.table"
        )));
    };
    let table = CatalogTable {
        id: id.clone(),
        oid: row.get(0),
        estimated_rows: row.get(1),
        replica_identity: row.get::<_, String>(2).bytes().next().unwrap_or(b'd'),
        has_pk: true,
    };
    let (schema, types) = table_schema(client, &mut TypeCache::default(), &table)
        .await
        .map_err(|e| SnapshotError::Source(e.into()))?;
    if schema.key.is_empty() {
        return Err(SnapshotError::Refused(format!(
            "table {id} has no primary key; ordo snapshot reads a table in primary-key order; add one (ALTER TABLE {}.{} ADD PRIMARY KEY (...))",
            ident(&id.namespace),
            ident(&id.name)
        )));
    }
    let key_columns: Vec<String> = schema
        .key
        .iter()
        .filter_map(|&i| schema.columns.get(i).map(|c| c.name.clone()))
        .collect();
    let mut key_types = Vec::with_capacity(key_columns.len());
    for c in &key_columns {
        let r = client
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2",
                &[&table.oid, c],
            )
            .await
            .map_err(sql(format!("read the key type of {id}")))?;
        key_types.push(r.get(0));
    }
    Ok(Target {
        table,
        schema: Arc::new(schema),
        types,
        key_columns,
        key_types,
    })
}

/// The row count to show progress against: `reltuples`, or a count when the table was never
/// analysed.
///
/// # Errors
/// On SQL failures.
pub async fn estimate(client: &Client, t: &Target) -> Result<i64, SnapshotError> {
    if t.table.estimated_rows >= 0 {
        return Ok(t.table.estimated_rows);
    }
    let q = format!(
        "SELECT count(*) FROM {}.{}",
        ident(&t.table.id.namespace),
        ident(&t.table.id.name)
    );
    let row = client
        .query_one(&q, &[])
        .await
        .map_err(sql(format!("count the rows of {}", t.table.id)))?;
    Ok(row.get(0))
}

/// Read up to `limit` rows after `after` (the last key's text values) in key order; returns
/// them and the last row's key.
async fn read_chunk(
    client: &Client,
    t: &Target,
    after: Option<&[String]>,
    limit: u64,
) -> Result<(Vec<Row>, Option<Vec<String>>), SnapshotError> {
    let cols: Vec<String> = t.schema.columns.iter().map(|c| ident(&c.name)).collect();
    let keys: Vec<String> = t.key_columns.iter().map(|c| ident(c)).collect();
    let filter = match after {
        Some(values) => {
            let lits: Vec<String> = values
                .iter()
                .zip(&t.key_types)
                .map(|(v, ty)| format!("{}::{ty}", literal(v)))
                .collect();
            format!(" WHERE ({}) > ({})", keys.join(", "), lits.join(", "))
        }
        None => String::new(),
    };
    let q = format!(
        "SELECT {} FROM {}.{}{filter} ORDER BY {} LIMIT {limit}",
        cols.join(", "),
        ident(&t.table.id.namespace),
        ident(&t.table.id.name),
        keys.join(", ")
    );
    let msgs = client
        .simple_query(&q)
        .await
        .map_err(sql(format!("read a chunk of {}", t.table.id)))?;
    let mut rows = Vec::new();
    let mut last = None;
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push(
                decode_row(&t.schema, &t.types, &r).map_err(|e| SnapshotError::Source(e.into()))?,
            );
            last = Some(r);
        }
    }
    let last_key = last.map(|r| {
        t.schema
            .key
            .iter()
            .map(|&i| r.get(i).unwrap_or_default().to_owned())
            .collect()
    });
    Ok((rows, last_key))
}

/// The driver task and what it works with.
pub struct Driver {
    /// The source settings (for connecting and the default chunk size).
    pub cfg: PostgresSource,
    /// The signal table.
    pub signal: SignalTable,
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

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("signal", &self.signal)
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

impl Driver {
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
        let client = catalog::connect(&self.cfg)
            .await
            .map_err(|e| SnapshotError::Source(e.into()))?;
        let mut poll = tokio::time::interval(POLL);
        loop {
            if self.signal.exists(&client).await? {
                for req in self.signal.open_requests(&client).await? {
                    self.serve(&client, req).await?;
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

    async fn serve(&mut self, client: &Client, req: Request) -> Result<(), SnapshotError> {
        match self.snapshot(client, &req).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                lock(&self.shared).active = None;
                tracing::error!(request = req.id, error = %e, "incremental snapshot failed");
                let fields = json!({ "state": "failed", "error": e.to_string() });
                self.signal.update(client, req.id, &fields).await
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

    async fn snapshot(&mut self, client: &Client, req: &Request) -> Result<(), SnapshotError> {
        let id = self.requested_table(req)?;
        let t = target(client, &id).await?;
        let chunk_size = req
            .number("chunk_size")
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(self.cfg.snapshot_chunk_rows);
        let mut p = Progress {
            rows_done: req
                .number("rows_done")
                .map_or(0, |n| n.max(0).unsigned_abs()),
            chunks: req.number("chunks").map_or(0, |n| n.max(0).unsigned_abs()),
            last_key: req
                .data
                .get("last_key")
                .and_then(|k| serde_json::from_value(k.clone()).ok()),
            estimated: estimate(client, &t).await?,
        };
        self.signal.delete_watermarks(client, req.id).await?;
        let fields =
            json!({ "state": "running", "rows_estimated": p.estimated, "run": self.run_id });
        self.signal.update(client, req.id, &fields).await?;
        tracing::info!(table = %id, request = req.id, chunk_size, resume_after_rows = p.rows_done, "incremental snapshot started");
        loop {
            let Some(n) = self.chunk(client, req.id, &t, &mut p, chunk_size).await? else {
                return Ok(()); // shutdown; continues on the next start
            };
            if n < chunk_size {
                break;
            }
        }
        lock(&self.shared).active = None;
        let fields = json!({ "state": "done", "rows_done": p.rows_done });
        self.signal.update(client, req.id, &fields).await?;
        tracing::info!(table = %id, request = req.id, rows = p.rows_done, chunks = p.chunks, "incremental snapshot done");
        Ok(())
    }

    /// Read, hand over and record one chunk; returns how many rows it read, or `None` on
    /// shutdown.
    async fn chunk(
        &mut self,
        client: &Client,
        request: i64,
        t: &Target,
        p: &mut Progress,
        chunk_size: u64,
    ) -> Result<Option<u64>, SnapshotError> {
        let token = format!("{}:{request}:{}", self.run_id, p.chunks);
        lock(&self.shared).active = Some(Active {
            token: token.clone(),
            table: t.table.id.clone(),
            key_columns: t.key_columns.clone(),
            rows: None,
        });
        self.signal
            .watermark(client, kinds::WINDOW_OPEN, &token, request)
            .await?;
        let (rows, last_key) = read_chunk(client, t, p.last_key.as_deref(), chunk_size).await?;
        let n = rows.len() as u64;
        if let Some(a) = lock(&self.shared).active.as_mut() {
            a.rows = Some(ChunkRows {
                schema: t.schema.clone(),
                rows,
            });
        }
        self.signal
            .watermark(client, kinds::WINDOW_CLOSE, &token, request)
            .await?;
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
        self.signal.update(client, request, &fields).await?;
        self.signal.delete_watermarks(client, request).await?;
        snapshot_progress(&t.table.id, p.rows_done, Some(p.estimated));
        source_state(SourceState::Streaming);
        tracing::info!(table = %t.table.id, rows = p.rows_done, estimated = p.estimated.max(p.rows_done as i64), "incremental snapshot progress");
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
        let target = lsn(Some(restart));
        loop {
            if lsn(self.durable.borrow().as_ref()) >= target {
                return true;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                changed = self.durable.changed() => if changed.is_err() { return false },
            }
        }
    }
}

fn lsn(p: Option<&Position>) -> u64 {
    match p {
        Some(Position::Postgres(Lsn(l))) => *l,
        _ => 0,
    }
}
