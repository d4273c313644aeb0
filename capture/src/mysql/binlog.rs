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
use mysql_async::{
    BinlogStream, BinlogStreamRequest, ClientIdentity, Conn, Opts, OptsBuilder, SslOpts,
};
use ordo_config::{MysqlSource, Tls, TlsMode};

use super::catalog;
use super::error::MysqlSourceError;
use super::events::kind;
use super::gtid;
use super::txn::Assembler;
use crate::metrics::{SourceState, source_state};
use crate::source::{Batcher, SourceContext};
use crate::tls::TlsError;

/// Heartbeat period asked of the server; silence for [`SILENCE`] means a dead connection.
const HEARTBEAT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The settings block named in TLS errors.
const TLS_SETTING: &str = "source.mysql.tls";

/// Connection options from the configuration, with `ssl` as the TLS options (`None`: plain).
fn opts(cfg: &MysqlSource, ssl: Option<SslOpts>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.as_ref().map(|p| p.expose().to_owned()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .stmt_cache_size(32)
        .ssl_opts(ssl)
        .into()
}

/// `mysql_async`'s TLS options for `source.mysql.tls` (libpq's meanings, see [`crate::tls`]);
/// `name` overrides the name the certificate is checked against. The files are read here
/// first so that a bad one is reported with its setting.
fn ssl_opts(tls: &Tls, name: Option<String>) -> Result<Option<SslOpts>, TlsError> {
    let mut ssl = SslOpts::default();
    match tls.mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Prefer | TlsMode::Require => ssl = ssl.with_danger_accept_invalid_certs(true),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = match &tls.ca_file {
                Some(ca) => {
                    crate::tls::read_certs(ca, &format!("{TLS_SETTING}.ca_file"))?;
                    vec![ca.clone().into()]
                }
                None => rustls_native_certs::load_native_certs()
                    .certs
                    .into_iter()
                    .map(|der| der.to_vec().into())
                    .collect(),
            };
            ssl = ssl
                .with_root_certs(roots)
                .with_disable_built_in_roots(true)
                .with_danger_tls_hostname_override(name);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        crate::tls::read_certs(cert, &format!("{TLS_SETTING}.cert_file"))?;
        crate::tls::read_key(key, &format!("{TLS_SETTING}.key_file"))?;
        ssl = ssl.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Ok(Some(ssl))
}

/// Connect, with a deadline, over TLS as `source.mysql.tls` says.
///
/// `prefer` falls back to plain text when the server has no TLS. `verify-ca` checks the chain
/// only: `mysql_async` always checks the host name, so when the chain is trusted but the name
/// differs, the connection is made again checking the name the certificate carries.
///
/// # Errors
/// [`MysqlSourceError::Connect`] when the server cannot be reached or refuses the login,
/// [`MysqlSourceError::Tls`] when TLS cannot be set up (naming the setting and the fix).
pub(crate) async fn connect(cfg: &MysqlSource) -> Result<Conn, MysqlSourceError> {
    crate::tls::install_default_provider();
    let e = match connect_with(cfg, ssl_opts(&cfg.tls, None)?).await {
        Ok(conn) => return Ok(conn),
        Err(e) => e,
    };
    let no_tls = matches!(
        e,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
    );
    if no_tls && cfg.tls.mode == TlsMode::Prefer {
        tracing::debug!(host = %cfg.host, "the mysql source offers no tls; continuing in plain text");
        return connect_with(cfg, None)
            .await
            .map_err(|e| connect_error(cfg, e));
    }
    if cfg.tls.mode == TlsMode::VerifyCa
        && let Some(name) = crate::tls::find_rustls_error(&e).and_then(certificate_dns_name)
    {
        let ssl = ssl_opts(&cfg.tls, Some(name))?;
        return connect_with(cfg, ssl)
            .await
            .map_err(|e| connect_error(cfg, e));
    }
    Err(connect_error(cfg, e))
}

async fn connect_with(cfg: &MysqlSource, ssl: Option<SslOpts>) -> Result<Conn, mysql_async::Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts(cfg, ssl))).await {
        Ok(conn) => conn,
        Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        ))),
    }
}

/// A DNS name the server's certificate carries, from a name-mismatch error (which webpki
/// reports only after the chain was verified).
fn certificate_dns_name(e: &rustls::Error) -> Option<String> {
    let rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
        presented,
        ..
    }) = e
    else {
        return None;
    };
    presented.iter().find_map(|name| {
        let name = name.strip_prefix("DnsName(\"")?.strip_suffix("\")")?;
        // A wildcard matches any single label.
        Some(name.replacen("*.", "ordo-verify-ca.", 1))
    })
}

/// A failed connect, with TLS failures explained.
fn connect_error(cfg: &MysqlSource, e: mysql_async::Error) -> MysqlSourceError {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    if matches!(
        e,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
    ) {
        return MysqlSourceError::Tls(TlsError::NotOffered {
            setting: TLS_SETTING.to_owned(),
            mode: crate::tls::mode_name(cfg.tls.mode).to_owned(),
            addr,
        });
    }
    if let Some(rustls) = crate::tls::find_rustls_error(&e) {
        let host = cfg.host.as_str();
        return MysqlSourceError::Tls(crate::tls::explain(
            rustls,
            &cfg.tls,
            TLS_SETTING,
            host,
            &addr,
        ));
    }
    MysqlSourceError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        source: e,
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

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;

    use super::certificate_dns_name;

    fn mismatch(presented: &[&str]) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: presented.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn takes_a_dns_name_from_a_name_mismatch() {
        let e = mismatch(&["IpAddress(10.0.0.1)", "DnsName(\"db.internal\")"]);
        assert_eq!(certificate_dns_name(&e).as_deref(), Some("db.internal"));
        let e = mismatch(&["DnsName(\"*.example.com\")"]);
        assert_eq!(
            certificate_dns_name(&e).as_deref(),
            Some("ordo-verify-ca.example.com")
        );
        assert_eq!(certificate_dns_name(&mismatch(&[])), None);
        let other = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(certificate_dns_name(&other), None);
    }
}
