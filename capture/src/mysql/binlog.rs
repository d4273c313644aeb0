//! The binlog connection: register as a replica, request the stream from a GTID position (or
//! binlog coordinates), feed events to the [`Assembler`], reconnect when the connection drops.
//!
//! # Resumption
//! A stream starts from the executed GTID set after the last complete group
//! (`@slave_connect_state`, with `@mariadb_slave_capability=4` so real GTID events arrive and
//! `@slave_gtid_strict_mode=1` so a purged position is an error, not a silent gap). With no
//! GTID yet it starts from binlog coordinates. After a lost connection the reader tells the
//! pipeline to discard a half-sent transaction (`Rollback`) and reconnects with capped
//! exponential backoff (100 ms doubling to 30 s) from the position after the last transaction
//! it sent whole, so nothing is missed and nothing is sent twice.
//!
//! # Shutdown
//! A graceful stop waits for the event group being read to end (at most
//! `FINISH_GROUP_TIMEOUT`), so the pipeline gets whole transactions only and no record is left
//! without a commit record.
//!
//! # Flow control
//! Events go to the pipeline in batches; a batch is flushed whenever no further event is
//! already received, so a busy stream fills batches and an idle one delivers at once.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::Event;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, OptsBuilder};
use ordo_config::{MysqlSource, TlsMode};

use super::catalog;
use super::error::MysqlSourceError;
use super::events::kind;
use super::gtid;
use super::txn::Assembler;
use crate::metrics::{SourceState, source_state};
use crate::source::{Batcher, SourceContext};

/// Heartbeat period asked of the server; silence for [`SILENCE`] means a dead connection.
const HEARTBEAT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection options from the configuration.
///
/// # Errors
/// For TLS modes this source does not support yet.
pub(crate) fn opts(cfg: &MysqlSource) -> Result<Opts, MysqlSourceError> {
    if !matches!(cfg.tls.mode, TlsMode::Disable | TlsMode::Prefer) {
        return Err(MysqlSourceError::Setting {
            setting: "source.mysql.tls.mode".into(),
            found: format!("{:?}", cfg.tls.mode).to_lowercase(),
            fix: "the mysql source has no tls support yet: use `disable` or `prefer` (plain tcp) on a trusted network".into(),
        });
    }
    let builder = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.as_ref().map(|p| p.expose().to_owned()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .stmt_cache_size(32);
    Ok(builder.into())
}

/// Connect, with a deadline.
pub(crate) async fn connect(cfg: &MysqlSource) -> Result<Conn, MysqlSourceError> {
    let opts = opts(cfg)?;
    let err = |source| MysqlSourceError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        source,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Ok(conn) => conn.map_err(err),
        Err(_) => Err(err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        )))),
    }
}

pub(crate) fn sql_err(
    what: impl Into<String>,
) -> impl FnOnce(mysql_async::Error) -> MysqlSourceError {
    let what = what.into();
    move |source| MysqlSourceError::Sql { what, source }
}

/// Stream until shutdown, reconnecting after transient failures.
pub(crate) async fn stream_with_retries(
    cfg: &MysqlSource,
    ctx: &SourceContext,
    asm: &mut Assembler,
    out: &mut Batcher,
) -> Result<(), MysqlSourceError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut progressed = false;
        let result = session(cfg, ctx, asm, out, &mut progressed).await;
        asm.reset(out).await?;
        match result {
            Ok(()) => {
                out.flush().await?;
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                if progressed {
                    backoff = Duration::from_millis(100);
                }
                source_state(SourceState::Reconnecting);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, position = %asm.position(), "binlog connection lost; reconnecting");
                out.flush().await?;
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                out.flush().await?;
                return Err(e);
            }
        }
    }
}

/// Open the binlog stream at the assembler's position.
async fn open(cfg: &MysqlSource, asm: &Assembler) -> Result<BinlogStream, MysqlSourceError> {
    let mut conn = connect(cfg).await?;
    let mut setup = vec![
        "SET @mariadb_slave_capability = 4".to_owned(),
        format!("SET @master_heartbeat_period = {}", HEARTBEAT.as_nanos()),
    ];
    let by_gtid = !gtid::is_empty(asm.executed());
    if by_gtid {
        setup.push(format!(
            "SET @slave_connect_state = {}",
            catalog::literal(&asm.executed().to_string())
        ));
        setup.push("SET @slave_gtid_strict_mode = 1".to_owned());
        setup.push("SET @slave_gtid_ignore_duplicates = 0".to_owned());
    }
    for stmt in setup {
        conn.query_drop(&stmt)
            .await
            .map_err(sql_err(format!("`{stmt}`")))?;
    }
    let coord = asm.coord();
    let file = coord.file.as_bytes();
    let mut request = BinlogStreamRequest::new(cfg.server_id);
    if !by_gtid {
        request = request.with_filename(file).with_pos(coord.pos.max(4));
    }
    tracing::info!(position = %asm.position(), by_gtid, "requesting the binlog stream");
    conn.get_binlog_stream(request)
        .await
        .map_err(|source| MysqlSourceError::Stream {
            at: asm.position().to_string(),
            source,
        })
}

async fn session(
    cfg: &MysqlSource,
    ctx: &SourceContext,
    asm: &mut Assembler,
    out: &mut Batcher,
    progressed: &mut bool,
) -> Result<(), MysqlSourceError> {
    let mut meta = connect(cfg).await?;
    meta.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(sql_err("setting the session time zone"))?;
    let mut stream = open(cfg, asm).await?;
    source_state(SourceState::Streaming);
    let mut stop = StopPoint::default();
    loop {
        if stop.should_stop(ctx) {
            return Ok(());
        }
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => {
                out.flush().await?;
                let progress_at = asm.progress_due();
                let tick = async {
                    match progress_at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let finish_by = stop.finish_by;
                tokio::select! {
                    next = stream.next() => next,
                    // Wake up to stop (see `StopPoint`).
                    () = ctx.shutdown.cancelled(), if !ctx.shutdown.is_cancelled() => continue,
                    () = sleep_until_some(finish_by), if finish_by.is_some() => continue,
                    () = tick => {
                        asm.tick(out).await?;
                        continue;
                    }
                    () = tokio::time::sleep(SILENCE) => {
                        return Err(MysqlSourceError::Silent { secs: SILENCE.as_secs() });
                    }
                }
            }
        };
        let ev = match next {
            Some(Ok(ev)) => ev,
            Some(Err(source)) => {
                return Err(MysqlSourceError::Stream {
                    at: asm.position().to_string(),
                    source,
                });
            }
            None => {
                return Err(MysqlSourceError::StreamEnded {
                    at: asm.position().to_string(),
                });
            }
        };
        asm.handle(&ev, &mut meta, out).await?;
        stop.handled(asm, &ev);
        *progressed = true;
    }
}

/// How long shutdown keeps reading to hand over the event group being read whole.
const FINISH_GROUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the reader stands for a graceful stop: a stop between event groups hands over whole
/// transactions only, so it leaves no records without a commit record behind.
#[derive(Debug, Default)]
struct StopPoint {
    in_group: bool,
    /// Set once shutdown met an open group: stop anyway then (the group is rolled back).
    finish_by: Option<tokio::time::Instant>,
}

impl StopPoint {
    /// Track `ev`, just handled: a GTID event opens a group; an event that moved the
    /// assembler's position to its own end closed one.
    fn handled(&mut self, asm: &Assembler, ev: &Event) {
        let ended = asm.coord().pos == u64::from(ev.header().log_pos());
        self.in_group = !ended && (self.in_group || ev.header().event_type_raw() == kind::GTID);
    }

    /// Whether to stop now: shutdown fired and no group is half read (or the pipeline is
    /// gone, or the group did not end within [`FINISH_GROUP_TIMEOUT`]).
    fn should_stop(&mut self, ctx: &SourceContext) -> bool {
        if !ctx.shutdown.is_cancelled() {
            return false;
        }
        if !self.in_group || ctx.events.is_closed() {
            return true;
        }
        let now = tokio::time::Instant::now();
        let deadline = *self.finish_by.get_or_insert(now + FINISH_GROUP_TIMEOUT);
        let late = now >= deadline;
        if late {
            tracing::warn!(
                "shutdown: the event group being read did not end in time; a restart reads it again"
            );
        }
        late
    }
}

/// Sleep until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
