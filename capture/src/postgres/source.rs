//! The PostgreSQL source reader: slot, snapshot, streaming, acknowledgement, reconnects.
//!
//! # Resumption
//! The slot's confirmed flush LSN only moves to positions the pipeline reports durable
//! ([`SourceContext::durable`]: the commit stream holds them). On start, streaming begins at
//! the restart LSN of the last commit record; the server resends anything after the slot's
//! confirmed position, and the decoder skips transactions that committed before the restart
//! LSN. After a lost connection the reader reconnects with capped exponential backoff and the
//! same rules apply, so nothing is lost and nothing is handed on twice.

use std::time::Duration;

use futures::FutureExt as _;

use ordo_config::{PostgresSource, Snapshot};
use ordo_kcop::{Lsn, Position};
use tokio_postgres::Client;

use super::catalog::{self, CatalogError, ident};
use super::decoder::{DecodeError, Decoder};
use super::replication::{
    ReplicationConfig, ReplicationConnection, ReplicationError, ReplicationMessage,
    ReplicationStream,
};
use super::snapshot;
use crate::metrics::{SourceState, source_state};
use crate::resnapshot::decoded_tables;
use crate::resnapshot::postgres::PgBackend;
use crate::resnapshot::signal::SignalTable;
use crate::source::{Batcher, SourceContext};

/// Why the PostgreSQL source stopped.
#[derive(Debug, thiserror::Error)]
pub enum PgSourceError {
    /// The replication connection failed.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// Decoding failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// SQL failed or a prerequisite is missing.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The configuration does not fit the server state.
    #[error("{0}")]
    Setup(String),
}

impl PgSourceError {
    /// Whether reconnecting may help: the replication connection or the SQL connection (also
    /// when a catalog lookup during decoding found it closed) was lost.
    fn is_transient(&self) -> bool {
        match self {
            PgSourceError::Replication(e) => e.is_transient(),
            PgSourceError::Catalog(CatalogError::Sql { source, .. })
            | PgSourceError::Decode(DecodeError::Catalog(CatalogError::Sql { source, .. })) => {
                source.is_closed()
            }
            _ => false,
        }
    }

    /// Whether the server or the configuration must change before capture can run (server
    /// settings, privileges, missing objects, tables that cannot be captured, TLS set-up):
    /// `ordo run` exits 2 for these, so a service manager does not restart it in a loop.
    pub fn is_prerequisite(&self) -> bool {
        match self {
            PgSourceError::Setup(_)
            | PgSourceError::Catalog(CatalogError::Unusable(_) | CatalogError::Tls { .. }) => true,
            PgSourceError::Catalog(CatalogError::Sql { source, .. }) => source
                .as_db_error()
                .is_some_and(|db| is_prerequisite_sqlstate(db.code().code())),
            PgSourceError::Replication(e) => e.code().is_some_and(is_prerequisite_sqlstate),
            PgSourceError::Decode(_) => false,
        }
    }
}

/// SQLSTATEs that name something to fix on the server or in the config rather than a
/// passing failure: `wal_level` too low (55000), missing privilege (42501), no free slot or
/// WAL sender (53400), failed authentication (28000, 28P01), unknown database (3D000) or
/// object such as the publication (42704).
fn is_prerequisite_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "55000" | "42501" | "53400" | "28000" | "28P01" | "3D000" | "42704"
    )
}

/// How long a clean end of the replication session may take at shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown keeps reading to hand over the transaction being read whole, so that a
/// graceful stop leaves no records without a commit record behind.
const FINISH_TXN_TIMEOUT: Duration = Duration::from_secs(10);

fn replication_config(cfg: &PostgresSource) -> ReplicationConfig {
    ReplicationConfig {
        host: cfg.host.clone(),
        port: cfg.port,
        user: cfg.user.clone(),
        password: cfg.password.as_ref().map(|p| p.expose().to_owned()),
        database: cfg.database.clone(),
        application_name: format!("ordo/{}", cfg.slot),
        connect_timeout: Duration::from_secs(10),
        tls: cfg.tls.clone(),
    }
}

/// Run the source until shutdown (or, with `snapshot: initial_only`, until the snapshot is done).
///
/// # Errors
/// On definite failures (prerequisites, protocol, decoding); transient connection losses are
/// retried.
pub async fn run(cfg: &PostgresSource, ctx: SourceContext) -> Result<(), PgSourceError> {
    let client = catalog::connect(cfg).await?;
    catalog::ensure_publication(&client, cfg).await?;
    let tables = catalog::mapped_tables(&client, cfg, &ctx.tables).await?;
    let resume = match &ctx.resume {
        None => None,
        Some(Position::Postgres(lsn)) => Some(lsn.0),
        Some(other) => {
            return Err(PgSourceError::Setup(format!(
                "the commit stream's last restart position `{other}` is not a PostgreSQL position; this commit topic belongs to another source: use a new kafka.commit_topic"
            )));
        }
    };
    let mut out = Batcher::new(ctx.events.clone());
    let spill_dir = cfg.spill_dir.join(&cfg.slot);
    let signal = SignalTable::of(cfg);
    let decoded = decoded_tables(&ctx.tables, signal.as_ref().map(|s| &s.id));
    let mut decoder = Decoder::new(decoded, spill_dir, resume.unwrap_or(0))?;
    let snapshot_wanted = match resume {
        Some(0) => true,
        Some(_) => false,
        None => cfg.snapshot != Snapshot::Never,
    };
    let slot_exists = slot_exists(&client, cfg).await?;
    let mut start = resume.unwrap_or(0);
    let rcfg = replication_config(cfg);
    if snapshot_wanted {
        if slot_exists {
            tracing::info!(slot = %cfg.slot, "dropping the slot to take a fresh snapshot (no complete snapshot in the commit stream)");
            client
                .batch_execute(&format!(
                    "SELECT pg_drop_replication_slot({})",
                    catalog::literal(&cfg.slot)
                ))
                .await
                .map_err(|source| CatalogError::Sql {
                    what: format!("drop slot `{}`", cfg.slot),
                    source,
                })?;
        }
        let mut conn = ReplicationConnection::connect(&rcfg).await?;
        let created = conn.create_slot(&cfg.slot, true).await?;
        let name = created.snapshot_name.unwrap_or_default();
        source_state(SourceState::Snapshotting);
        tracing::info!(slot = %cfg.slot, consistent_point = %Lsn(created.consistent_point), tables = tables.len(), "created slot; taking the initial snapshot");
        let schemas = snapshot::run(
            &client,
            &name,
            &tables,
            cfg.snapshot_chunk_rows,
            created.consistent_point,
            &mut out,
        )
        .await?;
        for schema in schemas {
            decoder.know_schema(schema);
        }
        start = created.consistent_point;
        decoder.skip_before = start;
        drop(conn);
        if cfg.snapshot == Snapshot::InitialOnly {
            return Ok(());
        }
    } else if !slot_exists {
        if let Some(lsn) = resume {
            return Err(PgSourceError::Setup(format!(
                "replication slot `{}` does not exist, but the commit stream says capture stopped at {}; changes since then are gone. Recreate the slot and start over with a new kafka.commit_topic (and snapshot: initial), or restore the slot",
                cfg.slot,
                Lsn(lsn)
            )));
        }
        let mut conn = ReplicationConnection::connect(&rcfg).await?;
        let created = conn.create_slot(&cfg.slot, false).await?;
        start = created.consistent_point;
        tracing::info!(slot = %cfg.slot, consistent_point = %Lsn(start), "created slot without snapshot");
    }
    let driver = signal.map(|s| crate::resnapshot::start::<PgBackend>(cfg, s.id, &ctx, &mut out));
    let result = stream_with_retries(cfg, &rcfg, client, &ctx, &mut decoder, &mut out, start).await;
    if let Some(task) = driver {
        task.abort();
        let _ = task.await;
    }
    result
}

async fn slot_exists(client: &Client, cfg: &PostgresSource) -> Result<bool, CatalogError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await
        .map_err(|source| CatalogError::Sql {
            what: "look up the replication slot".into(),
            source,
        })?;
    match row {
        None => Ok(false),
        Some(r) => {
            let (plugin, db): (Option<String>, Option<String>) = (r.get(0), r.get(1));
            if plugin.as_deref() != Some("pgoutput") || db.as_deref() != Some(cfg.database.as_str())
            {
                return Err(CatalogError::Unusable(format!(
                    "replication slot `{}` exists but is not a pgoutput slot of database `{}`; choose another source.postgres.slot",
                    cfg.slot, cfg.database
                )));
            }
            Ok(true)
        }
    }
}

/// Stream, reconnecting after transient failures with capped exponential backoff (reset once
/// a session has started streaming). A closed SQL connection is opened again too.
async fn stream_with_retries(
    cfg: &PostgresSource,
    rcfg: &ReplicationConfig,
    mut client: Client,
    ctx: &SourceContext,
    decoder: &mut Decoder,
    out: &mut Batcher,
    start: u64,
) -> Result<(), PgSourceError> {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let durable = durable_lsn(ctx).unwrap_or(start).max(start);
        let mut streaming = false;
        let e = match stream(
            cfg,
            rcfg,
            &client,
            ctx,
            decoder,
            out,
            durable,
            &mut streaming,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        if streaming {
            backoff = FIRST_BACKOFF;
        }
        source_state(SourceState::Reconnecting);
        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "replication connection lost; reconnecting");
        decoder.reset(out).await?;
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        if client.is_closed() {
            match catalog::connect(cfg).await {
                Ok(c) => client = c,
                Err(e) => tracing::warn!(error = %e, "sql connection lost; reconnecting"),
            }
        }
    }
}

/// Wait (bounded) until the pipeline reports `target` durable, so the final status update
/// confirms everything that was handed on. `start` is where this run began: everything
/// before it is durable already, whatever the pipeline says.
///
/// When the pipeline has stopped on an error (it closed the event channel), nothing more
/// becomes durable: the wait ends at once and only what is durable is confirmed.
async fn wait_durable(ctx: &SourceContext, start: u64, target: u64) {
    let mut rx = ctx.durable.clone();
    let wait = async {
        while durable_lsn(ctx).unwrap_or(start).max(start) < target {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = wait => {}
        () = ctx.events.closed() => {
            tracing::info!(target = %Lsn(target), "shutdown: the pipeline stopped on an error; confirming only what is durable");
        }
        () = tokio::time::sleep(crate::daemon::DRAIN_TIMEOUT) => {
            tracing::warn!(target = %Lsn(target), "shutdown: not every transaction became durable in time; a restart resumes before them");
        }
    }
}

/// Whether a session should stop now: shutdown fired and no transaction is half read (or the
/// pipeline is gone), or the
/// transaction being read did not end within [`FINISH_TXN_TIMEOUT`] (`finish_by` holds that
/// deadline once shutdown met an open transaction; it is then handed back as a `Rollback`).
fn should_stop(
    ctx: &SourceContext,
    decoder: &Decoder,
    finish_by: &mut Option<tokio::time::Instant>,
) -> bool {
    if !ctx.shutdown.is_cancelled() {
        return false;
    }
    // With the pipeline gone (it stopped on an error) there is nothing to hand over.
    if !decoder.in_transaction() || ctx.events.is_closed() {
        return true;
    }
    let deadline =
        *finish_by.get_or_insert_with(|| tokio::time::Instant::now() + FINISH_TXN_TIMEOUT);
    let late = tokio::time::Instant::now() >= deadline;
    if late {
        tracing::warn!(
            "shutdown: the transaction being read did not end in time; a restart reads it again"
        );
    }
    late
}

fn durable_lsn(ctx: &SourceContext) -> Option<u64> {
    match &*ctx.durable.borrow() {
        Some(Position::Postgres(l)) => Some(l.0),
        _ => None,
    }
}

/// One replication session from `start` until shutdown or failure; `streaming` is set once
/// the server has accepted START_REPLICATION.
#[allow(clippy::too_many_arguments)]
async fn stream(
    cfg: &PostgresSource,
    rcfg: &ReplicationConfig,
    client: &Client,
    ctx: &SourceContext,
    decoder: &mut Decoder,
    out: &mut Batcher,
    start: u64,
    streaming: &mut bool,
) -> Result<(), PgSourceError> {
    let conn = ReplicationConnection::connect(rcfg).await?;
    let mut options = vec![
        ("proto_version", cfg.protocol_version.to_string()),
        ("publication_names", ident(&cfg.publication)),
        ("messages", "true".to_owned()),
    ];
    if cfg.streaming && cfg.protocol_version >= 2 {
        options.push(("streaming", "on".to_owned()));
    }
    let opts: Vec<(&str, String)> = options.iter().map(|(k, v)| (*k, v.clone())).collect();
    let mut stream = conn.start_replication(&cfg.slot, start, &opts).await?;
    *streaming = true;
    source_state(SourceState::Streaming);
    tracing::info!(slot = %cfg.slot, start = %Lsn(start), "streaming");
    let mut status = tokio::time::interval(Duration::from_millis(cfg.status_interval_ms.max(100)));
    let heartbeat_ms = if cfg.heartbeat_interval_ms == 0 {
        u64::MAX / 4
    } else {
        cfg.heartbeat_interval_ms
    };
    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms));
    let mut received = start;
    let mut finish_by = None;
    loop {
        if should_stop(ctx, decoder, &mut finish_by) {
            return end_session(ctx, decoder, out, stream, start, received).await;
        }
        let finish_deadline = finish_by;
        tokio::select! {
            biased;
            // Wakes the loop to stop; with a transaction half read, the loop reads on until it
            // ends (or `finish_by` passes).
            () = ctx.shutdown.cancelled(), if !ctx.shutdown.is_cancelled() => {}
            () = sleep_until_some(finish_deadline), if finish_deadline.is_some() => {}
            msg = stream.next() => {
                let mut reply = handle_message(msg?, &mut received, decoder, client, out).await?;
                // Messages already buffered are read on without another turn of `select!`,
                // whose timers and shutdown future cost more than a small message.
                for _ in 0..BURST {
                    let Some(msg) = stream.next().now_or_never() else { break };
                    reply |= handle_message(msg?, &mut received, decoder, client, out).await?;
                }
                if reply {
                    let flushed = durable_lsn(ctx).unwrap_or(start);
                    stream.send_status(received, flushed, flushed, false).await?;
                }
            }
            _ = status.tick() => {
                let flushed = durable_lsn(ctx).unwrap_or(start);
                stream.send_status(received, flushed, flushed, false).await?;
            }
            _ = heartbeat.tick() => {
                // A non-transactional message moves WAL forward when nothing mapped changes, so
                // the slot can advance and the server can recycle WAL.
                if let Err(e) = client.batch_execute("SELECT pg_logical_emit_message(false, 'ordo.heartbeat', '')").await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        }
    }
}

/// Messages handled per turn of the streaming loop at most, when they are already buffered.
const BURST: usize = 256;

/// Decode one replication message; returns whether the server asked for a status reply.
async fn handle_message(
    msg: Option<ReplicationMessage<'_>>,
    received: &mut u64,
    decoder: &mut Decoder,
    client: &Client,
    out: &mut Batcher,
) -> Result<bool, PgSourceError> {
    match msg {
        None => Err(ReplicationError::ConnectionClosed.into()),
        Some(ReplicationMessage::XLogData { wal_end, data, .. }) => {
            *received = (*received).max(wal_end);
            decoder.handle(data, client, out).await?;
            Ok(false)
        }
        Some(ReplicationMessage::Keepalive {
            wal_end,
            reply_requested,
            ..
        }) => {
            *received = (*received).max(wal_end);
            decoder.idle_progress(wal_end, out).await?;
            Ok(reply_requested)
        }
    }
}

/// Shutdown: hand over what was read, wait for it to become durable, confirm that to the
/// server and end the session.
async fn end_session(
    ctx: &SourceContext,
    decoder: &mut Decoder,
    out: &mut Batcher,
    mut stream: ReplicationStream,
    start: u64,
    received: u64,
) -> Result<(), PgSourceError> {
    decoder.reset(out).await?;
    out.flush().await.map_err(DecodeError::from)?;
    wait_durable(ctx, start, decoder.skip_before).await;
    let flushed = durable_lsn(ctx).unwrap_or(start);
    stream
        .send_status(received, flushed, flushed, false)
        .await?;
    // The server finishes decoding its current transaction before it answers, which can take
    // long in a huge one; closing the socket ends it as well.
    match tokio::time::timeout(STOP_TIMEOUT, stream.stop()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(error = %e, "ending the replication session failed; closing the connection");
        }
        Err(_) => {
            tracing::info!(
                "the server did not end the replication session in time; closing the connection"
            );
        }
    }
    Ok(())
}

/// Sleep until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
