//! `ordo run`: wire the source, the pipeline and the publisher together.
//!
//! # Resumption
//! The last commit record gives the source's restart position and the next sequence number.
//! The source runs on its own thread with a current-thread runtime; the pipeline and the
//! producer run on the caller's runtime.
//!
//! # Shutdown
//! Cancelling `shutdown` stops the source from reading; the pipeline then hands over what it
//! has, waits for the commit records of every complete transaction, and the source
//! acknowledges the last durable position before it disconnects.

use std::sync::Arc;
use std::time::Duration;

use ordo_config::{Config, Source};
use ordo_kcop::{Position, SourceInfo};
use ordo_tcc::commit_stream::SourceKind;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, PipelineError};
use crate::publisher::checkpoint::{self, Topics};
use crate::publisher::{PublishError, Publisher};
use crate::routes::{KcopRegistry, Router};
use crate::source::{SourceContext, TableFilter};

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Publishing or checkpoint failure.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Pipeline failure.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The source failed.
    #[error("source: {0}")]
    Source(String),
    /// The commit stream's restart position does not parse.
    #[error(
        "the commit stream's last restart position `{0}` is not a position ordo can read; was the commit topic written by another tool?"
    )]
    BadRestart(String),
}

/// How long shutdown waits for outstanding acknowledgements.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The table filter the config implies.
pub fn table_filter(config: &Arc<Config>) -> TableFilter {
    let c = config.clone();
    Arc::new(move |t| Router::is_mapped(&c, t))
}

/// Run the daemon until `shutdown` fires (or the source finishes, for `initial_only`).
///
/// # Errors
/// On any definite failure; positions after it are not acknowledged.
pub async fn run(
    config: Arc<Config>,
    registry: KcopRegistry,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let mut topics = Topics::new(&config.kafka)?;
    checkpoint::ensure_commit_topic(&mut topics, &config.kafka).await?;
    let kafka = config.kafka.clone();
    let last = tokio::task::spawn_blocking(move || checkpoint::last_commit_record(&kafka))
        .await
        .map_err(|e| DaemonError::Source(format!("checkpoint reader panicked: {e}")))??;
    let resume = match &last {
        Some(r) => Some(
            r.restart
                .parse::<Position>()
                .map_err(|_| DaemonError::BadRestart(r.restart.clone()))?,
        ),
        None => None,
    };
    let next_seq = last.as_ref().map_or(1, |r| r.seq + 1);
    tracing::info!(next_seq, resume = ?resume.as_ref().map(ToString::to_string), "read the commit stream");
    let (durable_tx, durable_rx) = watch::channel(resume.clone());
    let (kind, info) = source_info(&config);
    let mut publisher = Publisher::new(&config.kafka, kind, next_seq, durable_tx)?;
    let (events_tx, events_rx) = mpsc::channel(64);
    let ctx = SourceContext {
        events: events_tx,
        durable: durable_rx,
        resume,
        tables: table_filter(&config),
        shutdown: shutdown.clone(),
    };
    let source_thread = spawn_source(config.clone(), ctx)?;
    let router = Router::new(config.clone(), info.database.clone(), registry);
    let mut pipeline = Pipeline::new(router, topics, info);
    let result = pipeline.run(events_rx, &mut publisher, DRAIN_TIMEOUT).await;
    if result.is_err() {
        shutdown.cancel();
    }
    let source_result = tokio::task::spawn_blocking(move || source_thread.join())
        .await
        .map_err(|e| DaemonError::Source(format!("source thread: {e}")))?
        .map_err(|_| DaemonError::Source("the source thread panicked (a bug)".into()))?;
    publisher.flush(Duration::from_secs(5));
    result?;
    source_result.map_err(DaemonError::Source)
}

fn source_info(config: &Config) -> (SourceKind, SourceInfo) {
    match &config.source {
        Source::Postgres(pg) => (
            SourceKind::Postgresql,
            SourceInfo {
                connector: "postgresql",
                name: pg.slot.clone(),
                database: pg.database.clone(),
            },
        ),
        Source::Mysql(my) => {
            let (kind, connector) = match my.flavor {
                ordo_config::MysqlFlavor::Mariadb => (SourceKind::Mariadb, "mariadb"),
                ordo_config::MysqlFlavor::Mysql => (SourceKind::Mysql, "mysql"),
            };
            (
                kind,
                SourceInfo {
                    connector,
                    name: format!("server-{}", my.server_id),
                    database: String::new(),
                },
            )
        }
    }
}

fn spawn_source(
    config: Arc<Config>,
    ctx: SourceContext,
) -> Result<std::thread::JoinHandle<Result<(), String>>, DaemonError> {
    std::thread::Builder::new()
        .name("ordo-source".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the source runtime: {e}"))?;
            rt.block_on(async move {
                match &config.source {
                    Source::Postgres(pg) => crate::postgres::source::run(pg, ctx)
                        .await
                        .map_err(|e| e.to_string()),
                    Source::Mysql(_) => {
                        Err("the MariaDB/MySQL source is not wired into this build yet".to_owned())
                    }
                }
            })
        })
        .map_err(|e| DaemonError::Source(format!("cannot start the source thread: {e}")))
}
