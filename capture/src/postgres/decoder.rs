//! From pgoutput messages to [`SourceEvent`]s.
//!
//! Ordinary transactions arrive whole, at commit, and stream straight through: the decoder
//! emits `Begin` at the first mapped change, each change as it comes, and `Commit`. Streamed
//! (in-progress) transactions, protocol 2+, arrive in chunks before they commit, interleaved
//! with other transactions; their messages are spilled to a file per transaction under the
//! spill directory and replayed at `StreamCommit`, skipping subtransactions that aborted. So no
//! transaction, however large, is held in memory.
//!
//! # Schemas
//! Each Relation message yields a [`TableSchema`]; when its shape differs from the table's
//! previous one (or from the snapshot's, see [`Decoder::know_schema`]), the version goes up.
//! A Relation message inside a streamed transaction takes effect when the transaction is
//! replayed at its commit, and stays in effect afterwards, as in PostgreSQL's own apply worker:
//! pgoutput counts the schema as sent once a streamed transaction that carried it commits.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_kcop::value::Timestamp;
use ordo_kcop::{
    Change, Column, Lsn, Op, Position, Row, SourceEvent, TableId, TableSchema, TxnBegin, TxnCommit,
    Value,
};
use tokio_postgres::Client;

use super::catalog::{self, CatalogError};
use super::pgoutput::{
    OldKind, PgMessage, PgOutputError, RelationColumn, Tuple, TupleValue, parse,
};
use super::types::{self, PgType, TypeCache, decode_text};
use crate::source::{Batcher, PipelineClosed, TableFilter};

mod offline;
#[doc(hidden)]
pub use offline::decode_offline;

/// A failure decoding the replication stream.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Malformed message.
    #[error(transparent)]
    Protocol(#[from] PgOutputError),
    /// A value did not parse.
    #[error("table {table}, column {column}: {source}")]
    Value {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Cause.
        source: types::DecodeError,
    },
    /// The stream referenced state it never sent.
    #[error("pgoutput protocol: {0}")]
    State(String),
    /// Catalog lookups failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Spill file I/O failed.
    #[error(
        "spill file {path}: {source}; check that source.postgres.spill_dir is writable and has free space"
    )]
    Spill {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The pipeline stopped.
    #[error(transparent)]
    Closed(#[from] PipelineClosed),
}

/// What the decoder knows of a relation.
#[derive(Debug)]
struct Relation {
    schema: Arc<TableSchema>,
    types: Vec<PgType>,
    identity: Vec<bool>,
    mapped: bool,
}

#[derive(Debug)]
struct OpenTxn {
    xid: u32,
    commit_lsn: u64,
    commit_time: i64,
    begun: bool,
    ops: u64,
    skip: bool,
}

#[derive(Debug)]
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
    aborted: HashSet<u32>,
}

/// Turns pgoutput messages into source events.
pub struct Decoder {
    relations: HashMap<u32, Arc<Relation>>,
    latest: HashMap<TableId, Arc<TableSchema>>,
    types: TypeCache,
    tables: TableFilter,
    txn: Option<OpenTxn>,
    in_stream: Option<u32>,
    spills: HashMap<u32, Spill>,
    spill_dir: PathBuf,
    /// Transactions whose commit LSN is below this were already handed on.
    pub skip_before: u64,
    last_progress: Instant,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("skip_before", &Lsn(self.skip_before))
            .finish_non_exhaustive()
    }
}

fn spill_err(path: &Path) -> impl FnOnce(std::io::Error) -> DecodeError + '_ {
    move |source| DecodeError::Spill {
        path: path.to_owned(),
        source,
    }
}

impl Decoder {
    /// A decoder spilling under `spill_dir` (created, and emptied of old spill files).
    ///
    /// # Errors
    /// When the directory cannot be prepared.
    pub fn new(
        tables: TableFilter,
        spill_dir: PathBuf,
        skip_before: u64,
    ) -> Result<Self, DecodeError> {
        std::fs::create_dir_all(&spill_dir).map_err(spill_err(&spill_dir))?;
        for entry in std::fs::read_dir(&spill_dir)
            .map_err(spill_err(&spill_dir))?
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "spill") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            relations: HashMap::new(),
            latest: HashMap::new(),
            types: TypeCache::default(),
            tables,
            txn: None,
            in_stream: None,
            spills: HashMap::new(),
            spill_dir,
            skip_before,
            last_progress: Instant::now(),
        })
    }

    /// Remember a table's schema as the snapshot described it, so that a Relation message of
    /// the same shape keeps its version and a different one gets the next.
    pub fn know_schema(&mut self, schema: Arc<TableSchema>) {
        self.latest.insert(schema.id.clone(), schema);
    }

    /// Whether a transaction is open (between Begin and Commit).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The connection dropped: forget any open transaction and stream chunks (the server sends
    /// them again), and tell the pipeline to discard a half-sent transaction.
    ///
    /// # Errors
    /// When the pipeline is gone.
    pub async fn reset(&mut self, out: &mut Batcher) -> Result<(), DecodeError> {
        if self.txn.take().is_some_and(|t| t.begun) {
            out.push(SourceEvent::Rollback).await?;
        }
        self.in_stream = None;
        for (_, s) in self.spills.drain() {
            let _ = std::fs::remove_file(&s.path);
        }
        // Relation messages are sent once per session: a new session sends them again.
        self.relations.clear();
        Ok(())
    }

    /// Emit a progress position for idle WAL, at most once a second.
    ///
    /// # Errors
    /// When the pipeline is gone.
    pub async fn idle_progress(
        &mut self,
        wal_end: u64,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        if self.txn.is_none()
            && wal_end > self.skip_before
            && self.last_progress.elapsed() >= Duration::from_secs(1)
        {
            self.last_progress = Instant::now();
            out.push(SourceEvent::Progress(Position::Postgres(Lsn(wal_end))))
                .await?;
            out.flush().await?;
        }
        Ok(())
    }

    /// Handle one XLogData payload.
    ///
    /// # Errors
    /// On malformed messages, catalog failures, spill I/O, or a closed pipeline.
    pub async fn handle(
        &mut self,
        frame: &[u8],
        client: &Client,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        if let Some(xid) = self.in_stream
            && !matches!(frame.first(), Some(b'E' | b'S'))
        {
            return self.spill(xid, frame);
        }
        let msg = parse(frame, false)?;
        match msg {
            PgMessage::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                let skip = final_lsn < self.skip_before;
                tracing::debug!(xid, lsn = %Lsn(final_lsn), skip, "begin");
                self.txn = Some(OpenTxn {
                    xid,
                    commit_lsn: final_lsn,
                    commit_time,
                    begun: false,
                    ops: 0,
                    skip,
                });
            }
            PgMessage::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                self.commit(commit_lsn, end_lsn, commit_time, out).await?;
            }
            PgMessage::Relation {
                relid,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } => {
                let rel = self
                    .relation(client, namespace, name, replica_identity, &columns, relid)
                    .await?;
                self.relations.insert(relid, rel);
            }
            PgMessage::StreamStart { xid, first } => self.stream_start(xid, first)?,
            PgMessage::StreamStop => self.in_stream = None,
            PgMessage::StreamAbort { xid, subxid } => self.stream_abort(xid, subxid),
            PgMessage::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                self.stream_commit(xid, commit_lsn, end_lsn, commit_time, client, out)
                    .await?;
            }
            PgMessage::TwoPhase { tag } => {
                return Err(DecodeError::State(format!(
                    "two-phase message `{}` received, but ordo does not enable two_phase; drop and recreate the slot without two_phase",
                    char::from(tag)
                )));
            }
            PgMessage::Type { .. } | PgMessage::Origin { .. } | PgMessage::Message { .. } => {}
            change => self.change(change, out).await?,
        }
        Ok(())
    }

    async fn relation(
        &mut self,
        client: &Client,
        namespace: &str,
        name: &str,
        replica_identity: u8,
        columns: &[RelationColumn<'_>],
        relid: u32,
    ) -> Result<Arc<Relation>, DecodeError> {
        let id = TableId::new(namespace, name);
        tracing::debug!(table = %id, relid, "relation");
        let oids: Vec<u32> = columns.iter().map(|c| c.type_oid).collect();
        catalog::resolve_types(client, &mut self.types, &oids).await?;
        let facts = catalog::column_facts(client, relid).await?;
        let (schema, types, identity) =
            relation_shape(&self.types, id, replica_identity, columns, &facts);
        let schema = self.versioned(schema);
        let mapped = (self.tables)(&schema.id);
        Ok(Arc::new(Relation {
            schema,
            types,
            identity,
            mapped,
        }))
    }

    /// The schema to use for `schema`: the table's previous one when the shape is the same,
    /// else `schema` with the next version.
    fn versioned(&mut self, mut schema: TableSchema) -> Arc<TableSchema> {
        match self.latest.get(&schema.id) {
            Some(prev) if prev.same_shape(&schema) => prev.clone(),
            prev => {
                schema.version = prev.map_or(1, |p| p.version + 1);
                let s = Arc::new(schema);
                self.latest.insert(s.id.clone(), s.clone());
                s
            }
        }
    }

    async fn begin_if_needed(&mut self, out: &mut Batcher) -> Result<Option<u64>, DecodeError> {
        let Some(t) = self.txn.as_mut() else {
            return Err(DecodeError::State(
                "row change outside a transaction".into(),
            ));
        };
        if t.skip {
            return Ok(None);
        }
        if !t.begun {
            t.begun = true;
            let begin = TxnBegin {
                id: t.xid.to_string().into(),
                commit_time: Timestamp(t.commit_time),
                position: Some(Position::Postgres(Lsn(t.commit_lsn))),
            };
            out.push(SourceEvent::Begin(begin)).await?;
        }
        let i = t.ops;
        t.ops += 1;
        Ok(Some(i))
    }

    async fn change(&mut self, msg: PgMessage<'_>, out: &mut Batcher) -> Result<(), DecodeError> {
        let relations = &self.relations;
        let lookup = |relid: u32| {
            relations.get(&relid).cloned().ok_or_else(|| {
                DecodeError::State(format!(
                    "change for relation {relid} before its Relation message"
                ))
            })
        };
        match msg {
            PgMessage::Insert { relid, new, .. } => {
                let rel = lookup(relid)?;
                if rel.mapped {
                    let after = row(&rel, new, None)?;
                    self.emit(&rel, Op::Insert, None, Some(after), out).await?;
                }
            }
            PgMessage::Update {
                relid, old, new, ..
            } => {
                let rel = lookup(relid)?;
                if rel.mapped {
                    let before = old.map(|(k, t)| row(&rel, t, Some(k))).transpose()?;
                    let after = row(&rel, new, None)?;
                    self.emit(&rel, Op::Update, before, Some(after), out)
                        .await?;
                }
            }
            PgMessage::Delete {
                relid, old: (k, t), ..
            } => {
                let rel = lookup(relid)?;
                if rel.mapped {
                    let before = row(&rel, t, Some(k))?;
                    self.emit(&rel, Op::Delete, Some(before), None, out).await?;
                }
            }
            PgMessage::Truncate { relids, .. } => {
                let rels = relids
                    .into_iter()
                    .map(lookup)
                    .collect::<Result<Vec<_>, _>>()?;
                for rel in rels {
                    if rel.mapped {
                        self.emit(&rel, Op::Truncate, None, None, out).await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn emit(
        &mut self,
        rel: &Relation,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        if let Some(op_index) = self.begin_if_needed(out).await? {
            let change = Change {
                table: rel.schema.clone(),
                op,
                before,
                after,
                op_index,
            };
            out.push(SourceEvent::Change(change)).await?;
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        let Some(t) = self.txn.take() else {
            return Err(DecodeError::State("commit without begin".into()));
        };
        if t.skip {
            return Ok(());
        }
        self.skip_before = self.skip_before.max(end_lsn);
        tracing::debug!(xid = t.xid, end = %Lsn(end_lsn), ops = t.ops, "commit");
        if t.begun {
            let commit = TxnCommit {
                id: t.xid.to_string().into(),
                commit_time: Timestamp(commit_time),
                commit_position: Position::Postgres(Lsn(commit_lsn)),
                restart_position: Position::Postgres(Lsn(end_lsn)),
                change_count: t.ops,
            };
            out.push(SourceEvent::Commit(commit)).await?;
            out.flush().await?;
        } else if self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            out.push(SourceEvent::Progress(Position::Postgres(Lsn(end_lsn))))
                .await?;
            out.flush().await?;
        }
        Ok(())
    }

    fn stream_start(&mut self, xid: u32, first: bool) -> Result<(), DecodeError> {
        self.in_stream = Some(xid);
        if first || !self.spills.contains_key(&xid) {
            let path = self.spill_dir.join(format!("{xid}.spill"));
            let file = File::create(&path).map_err(spill_err(&path))?;
            self.spills.insert(
                xid,
                Spill {
                    writer: BufWriter::with_capacity(1 << 20, file),
                    path,
                    aborted: HashSet::new(),
                },
            );
        }
        Ok(())
    }

    fn spill(&mut self, xid: u32, frame: &[u8]) -> Result<(), DecodeError> {
        let Some(s) = self.spills.get_mut(&xid) else {
            return Err(DecodeError::State(format!(
                "stream data for transaction {xid} without StreamStart"
            )));
        };
        let len = u32::try_from(frame.len())
            .map_err(|_| DecodeError::State("message over 4 GiB".into()))?;
        s.writer
            .write_all(&len.to_le_bytes())
            .map_err(spill_err(&s.path))?;
        s.writer.write_all(frame).map_err(spill_err(&s.path))
    }

    fn stream_abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(s) = self.spills.remove(&xid) {
                let _ = std::fs::remove_file(&s.path);
            }
        } else if let Some(s) = self.spills.get_mut(&xid) {
            s.aborted.insert(subxid);
        }
    }

    async fn stream_commit(
        &mut self,
        xid: u32,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
        client: &Client,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        let Some(mut spill) = self.spills.remove(&xid) else {
            return Err(DecodeError::State(format!(
                "commit of streamed transaction {xid} that never streamed"
            )));
        };
        spill.writer.flush().map_err(spill_err(&spill.path))?;
        let skip = commit_lsn < self.skip_before;
        self.txn = Some(OpenTxn {
            xid,
            commit_lsn,
            commit_time,
            begun: false,
            ops: 0,
            skip,
        });
        let replayed = self.replay(&spill, skip, client, out).await;
        let _ = std::fs::remove_file(&spill.path);
        replayed?;
        self.commit(commit_lsn, end_lsn, commit_time, out).await
    }

    /// Replay a committed stream's spill file in order, leaving out the subtransactions that
    /// aborted; with `skip` (already handed on before a restart), only its Relation messages.
    ///
    /// A Relation message inside a stream replaces the relation for everything after it, as in
    /// PostgreSQL's own apply worker: when the streamed transaction commits, pgoutput counts
    /// the schema as sent and does not send it again for later transactions.
    async fn replay(
        &mut self,
        spill: &Spill,
        skip: bool,
        client: &Client,
        out: &mut Batcher,
    ) -> Result<(), DecodeError> {
        let file = File::open(&spill.path).map_err(spill_err(&spill.path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut frame = Vec::new();
        loop {
            let mut len = [0u8; 4];
            match reader.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(spill_err(&spill.path)(e)),
            }
            frame.resize(u32::from_le_bytes(len) as usize, 0);
            reader
                .read_exact(&mut frame)
                .map_err(spill_err(&spill.path))?;
            let msg = parse(&frame, true)?;
            if let PgMessage::Relation {
                relid,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } = &msg
            {
                let rel = self
                    .relation(client, namespace, name, *replica_identity, columns, *relid)
                    .await?;
                self.relations.insert(*relid, rel);
                continue;
            }
            if skip || message_xid(&msg).is_some_and(|x| spill.aborted.contains(&x)) {
                continue;
            }
            self.change(msg, out).await?;
        }
        Ok(())
    }
}

/// A Relation message's schema (version 1), column decoders and replica-identity flags, with
/// the types resolved in `types` and the catalog's `facts`.
fn relation_shape(
    types: &TypeCache,
    id: TableId,
    replica_identity: u8,
    columns: &[RelationColumn<'_>],
    facts: &catalog::ColumnFacts,
) -> (TableSchema, Vec<PgType>, Vec<bool>) {
    let mut cols = Vec::with_capacity(columns.len());
    let mut tys = Vec::with_capacity(columns.len());
    for c in columns {
        let info = types
            .get(c.type_oid)
            .unwrap_or_else(|| types::TypeInfo::other(format!("type {}", c.type_oid)));
        cols.push(Column {
            name: c.name.to_owned(),
            type_name: types::display_name(&info, c.type_mod),
            kind: types::column_kind(&info, c.type_mod),
            nullable: !facts.not_null.get(c.name).copied().unwrap_or(false),
        });
        tys.push(info.ty);
    }
    let identity: Vec<bool> = columns.iter().map(|c| c.key).collect();
    let key: Vec<usize> = if replica_identity == b'f' || identity.iter().all(|k| !k) {
        facts
            .primary_key
            .iter()
            .filter_map(|k| cols.iter().position(|c| &c.name == k))
            .collect()
    } else {
        identity
            .iter()
            .enumerate()
            .filter(|(_, k)| **k)
            .map(|(i, _)| i)
            .collect()
    };
    let schema = TableSchema {
        id,
        version: 1,
        columns: cols,
        key,
    };
    (schema, tys, identity)
}

fn message_xid(msg: &PgMessage<'_>) -> Option<u32> {
    match msg {
        PgMessage::Insert { xid, .. }
        | PgMessage::Update { xid, .. }
        | PgMessage::Delete { xid, .. }
        | PgMessage::Truncate { xid, .. }
        | PgMessage::Message { xid, .. } => *xid,
        _ => None,
    }
}

/// Decode a tuple into a row. In a key-only old image, non-identity columns are not in the
/// image; in any image, an unchanged TOAST value is [`Value::Unchanged`].
fn row(rel: &Relation, tuple: Tuple<'_>, old: Option<OldKind>) -> Result<Row, DecodeError> {
    let key_only = old == Some(OldKind::Key);
    let mut out = Vec::with_capacity(tuple.len());
    for (i, v) in tuple.iter().enumerate() {
        let v = v?;
        let value = match v {
            _ if key_only && !rel.identity.get(i).copied().unwrap_or(false) => Value::NotInImage,
            TupleValue::Null => Value::Null,
            TupleValue::Unchanged => Value::Unchanged,
            TupleValue::Text(bytes) | TupleValue::Binary(bytes) => {
                let ty = rel.types.get(i).unwrap_or(&PgType::Other);
                let col = || {
                    rel.schema
                        .columns
                        .get(i)
                        .map_or_else(|| format!("#{i}"), |c| c.name.clone())
                };
                let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Value {
                    table: rel.schema.id.to_string(),
                    column: col(),
                    source: types::DecodeError {
                        ty: "text",
                        text: "<not utf-8>".into(),
                        hint: "",
                    },
                })?;
                decode_text(ty, text).map_err(|source| DecodeError::Value {
                    table: rel.schema.id.to_string(),
                    column: col(),
                    source,
                })?
            }
        };
        out.push(value);
    }
    Ok(out)
}
