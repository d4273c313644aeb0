//! `ordo run`: wire the source, the pipeline and the publisher together.
//!
//! # Resumption
//! The last commit record gives the source's restart position and the next sequence number.
//! The source runs on its own thread with a current-thread runtime; the pipeline and the
//! producer run on the caller's runtime.
//!
//! # Shutdown
//! Cancelling `shutdown` stops the source from reading at the next transaction boundary (a
//! PostgreSQL transaction being read is finished first, within a bound); the pipeline then
//! hands over what it has, waits for the commit records of every complete transaction, and
//! the source acknowledges the last durable position before it disconnects.
//!
//! When the pipeline fails (a KCOP or Kafka error), it drops its end of the event channel and
//! the daemon cancels `shutdown`: the source sees the closed channel, stops waiting for
//! positions that can no longer become durable, acknowledges only what is durable (never the
//! failed transaction) and returns, so a definite error stops the daemon within seconds.
//!
//! # Services
//! Beside the pipeline run, each under the daemon's ownership and stopped when it returns:
//! `metrics-http` (when `metrics.listen` is set), `slot-monitor` (PostgreSQL), `systemd-notify`
//! (under systemd) and `state-watch` (marks the daemon stopping when shutdown fires).

use std::sync::Arc;
use std::time::Duration;

use ordo_config::{Config, Source};
use ordo_kcop::{Position, SourceInfo, TableId};
use ordo_tcc::commit_stream::SourceKind;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, State};
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
    /// The metrics endpoint could not be set up.
    #[error("{0}")]
    Telemetry(String),
    /// Something to fix in the configuration, the source server or Kafka before capture can
    /// run (a source setting or privilege, the commit topic that may not be created).
    #[error("{0}")]
    Prerequisite(String),
}

impl DaemonError {
    /// The process exit code: 2 for configuration and prerequisite errors (a restart cannot
    /// help; the unit file does not restart on 2), 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Telemetry(_) | DaemonError::Prerequisite(_) => 2,
            _ => 1,
        }
    }
}

/// Why the source thread stopped.
#[derive(Debug)]
struct SourceFailure {
    message: String,
    prerequisite: bool,
}

impl From<SourceFailure> for DaemonError {
    fn from(f: SourceFailure) -> Self {
        if f.prerequisite {
            DaemonError::Prerequisite(format!("source: {}", f.message))
        } else {
            DaemonError::Source(f.message)
        }
    }
}

/// How long shutdown waits for outstanding acknowledgements.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The table filter the config implies: the mapped tables, never the signal table of
/// `ordo snapshot` (its changes are not data).
pub fn table_filter(config: &Arc<Config>) -> TableFilter {
    let c = config.clone();
    let signal = match &config.source {
        Source::Postgres(pg) => pg.signal_table_parts().map(|(s, t)| TableId::new(s, t)),
        Source::Mysql(my) => my.signal_table_parts().map(|(d, t)| TableId::new(d, t)),
    };
    Arc::new(move |t| signal.as_ref() != Some(t) && Router::is_mapped(&c, t))
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
    let metrics = Arc::new(Metrics::default());
    let listener = match config.metrics.listen {
        Some(addr) => Some(
            crate::metrics::http::bind(addr)
                .await
                .map_err(DaemonError::Telemetry)?,
        ),
        None => None,
    };
    let mut topics = Topics::new(&config.kafka)?;
    let (resume, next_seq) = read_checkpoint(&config, &mut topics).await?;
    let (durable_tx, durable_rx) = watch::channel(resume.clone());
    let (kind, info) = source_info(&config);
    let mut publisher = Publisher::new(&config.kafka, kind, next_seq, durable_tx, metrics.clone())?;
    let services = Services::start(&config, &metrics, listener, &durable_rx, &shutdown);
    let (events_tx, events_rx) = mpsc::channel(64);
    let ctx = SourceContext {
        events: events_tx,
        durable: durable_rx,
        resume,
        tables: table_filter(&config),
        shutdown: shutdown.clone(),
    };
    let source_thread = match spawn_source(config.clone(), ctx, metrics.clone()) {
        Ok(t) => t,
        Err(e) => {
            services.stop().await;
            return Err(e);
        }
    };
    let router = Router::new(config.clone(), info.database.clone(), registry);
    let mut pipeline = Pipeline::new(router, topics, info, metrics.clone());
    let result = pipeline.run(events_rx, &mut publisher, DRAIN_TIMEOUT).await;
    if result.is_err() {
        metrics.transition(State::Stopping);
        shutdown.cancel();
    }
    let source_result = tokio::task::spawn_blocking(move || source_thread.join()).await;
    publisher.flush(Duration::from_secs(5));
    services.stop().await;
    let source_result = source_result
        .map_err(|e| DaemonError::Source(format!("source thread: {e}")))?
        .map_err(|_| DaemonError::Source("the source thread panicked (a bug)".into()))?;
    // A source that stopped on a prerequisite is the cause of whatever the pipeline saw.
    if let Err(f) = &source_result
        && f.prerequisite
    {
        return Err(DaemonError::Prerequisite(format!("source: {}", f.message)));
    }
    result?;
    source_result.map_err(DaemonError::from)
}

/// Make sure the commit topic exists and read where to resume: the last commit record's
/// restart position and the next sequence number.
async fn read_checkpoint(
    config: &Config,
    topics: &mut Topics,
) -> Result<(Option<Position>, u64), DaemonError> {
    checkpoint::ensure_commit_topic(topics, &config.kafka)
        .await
        .map_err(|e| match e {
            // Missing and not to be created, or more than one partition: fix the config.
            PublishError::Setup(m) => DaemonError::Prerequisite(m),
            e => DaemonError::Publish(e),
        })?;
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
    Ok((resume, next_seq))
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
    metrics: Arc<Metrics>,
) -> Result<std::thread::JoinHandle<Result<(), SourceFailure>>, DaemonError> {
    std::thread::Builder::new()
        .name("ordo-source".into())
        .spawn(move || {
            crate::metrics::install_for_thread(metrics);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SourceFailure {
                    message: format!("cannot start the source runtime: {e}"),
                    prerequisite: false,
                })?;
            rt.block_on(async move {
                match &config.source {
                    Source::Postgres(pg) => {
                        crate::postgres::source::run(pg, ctx)
                            .await
                            .map_err(|e| SourceFailure {
                                prerequisite: e.is_prerequisite(),
                                message: e.to_string(),
                            })
                    }
                    Source::Mysql(my) => {
                        crate::mysql::run(my, ctx).await.map_err(|e| SourceFailure {
                            prerequisite: e.is_prerequisite(),
                            message: e.to_string(),
                        })
                    }
                }
            })
        })
        .map_err(|e| DaemonError::Source(format!("cannot start the source thread: {e}")))
}

/// The daemon's background tasks (see `# Services`), each with its name.
struct Services {
    stop: CancellationToken,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl Services {
    fn start(
        config: &Config,
        metrics: &Arc<Metrics>,
        listener: Option<tokio::net::TcpListener>,
        durable: &watch::Receiver<Option<Position>>,
        shutdown: &CancellationToken,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(l) = listener {
            let task = crate::metrics::http::serve(l, metrics.clone(), stop.clone());
            tasks.push(("metrics-http", tokio::spawn(task)));
        }
        if let Source::Postgres(pg) = &config.source {
            let task = crate::metrics::slot::monitor(pg.clone(), metrics.clone(), stop.clone());
            tasks.push(("slot-monitor", tokio::spawn(task)));
        }
        if crate::notify::enabled() {
            let task = crate::notify::run(metrics.clone(), durable.clone(), stop.clone());
            tasks.push(("systemd-notify", tokio::spawn(task)));
        }
        let (m, sd, st) = (metrics.clone(), shutdown.clone(), stop.clone());
        let watch_state = async move {
            tokio::select! {
                () = sd.cancelled() => m.transition(State::Stopping),
                () = st.cancelled() => {}
            }
        };
        tasks.push(("state-watch", tokio::spawn(watch_state)));
        Self { stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(task = name, error = %e, "a daemon service task failed");
            }
        }
    }
}
