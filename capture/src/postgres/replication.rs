//! A PostgreSQL logical-replication connection (`replication=database`), written on
//! `postgres-protocol`'s message encoders and SCRAM client because tokio-postgres cannot stream
//! replication (no `replication` startup parameter, no CopyBoth).
//!
//! [`ReplicationConnection::connect`] opens the session; on it run replication commands
//! (`IDENTIFY_SYSTEM`, [`ReplicationConnection::create_slot`], plain SQL through
//! [`ReplicationConnection::simple_query`]). [`ReplicationConnection::start_replication`] turns it
//! into a [`ReplicationStream`] of XLogData and keepalive frames; the caller acknowledges progress
//! with [`ReplicationStream::send_status`].
//!
//! # Resumption
//!
//! The server resumes a logical slot at its `confirmed_flush_lsn`, whatever `start_lsn` says when
//! it is lower. Only acknowledge (`flushed`) a position once everything up to it is durable
//! downstream; transactions after it are sent again on the next session.
//!
//! # Error handling
//!
//! Every error is a [`ReplicationError`]; [`ReplicationError::is_transient`] says whether to
//! reconnect with backoff or stop and tell someone.
//!
//! # TLS
//!
//! [`ReplicationConfig::tls`] follows libpq's `sslmode` (see [`crate::tls`]): after the
//! SSLRequest is accepted the byte stream becomes a rustls stream; `prefer` carries on in plain
//! text when the server declines; `require` and the `verify-*` modes refuse to. Unix sockets are
//! never encrypted, as with libpq. A certificate the settings do not trust fails with
//! [`ReplicationError::Tls`], naming `source.postgres.tls.ca_file` and the fix.

mod auth;
mod error;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use std::fmt;
use std::time::Duration;

use ordo_config::{Tls, TlsMode};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

pub use error::ReplicationError;
pub use stream::{ReplicationMessage, ReplicationStream};

use auth::unexpected;
use wire::{
    Transport, Wire, log_notice, parse_data_row, parse_error_fields, parse_parameter_status,
};

/// Where and how to open a replication connection.
#[derive(Clone)]
pub struct ReplicationConfig {
    /// Host name or IP address; a value starting with `/` is a unix-socket directory, as in libpq.
    pub host: String,
    /// TCP port, also the suffix of the socket file name (`.s.PGSQL.<port>`).
    pub port: u16,
    /// The role to log in as; it needs the REPLICATION attribute (or superuser).
    pub user: String,
    /// Password for cleartext, md5 and scram-sha-256 authentication; never logged.
    pub password: Option<String>,
    /// The database whose changes are decoded.
    pub database: String,
    /// Shown in `pg_stat_replication.application_name`.
    pub application_name: String,
    /// Limit for connecting and authenticating; zero waits forever.
    pub connect_timeout: Duration,
    /// Whether to use TLS and how to check the server (the `source.postgres.tls` block).
    pub tls: Tls,
}

impl Drop for ReplicationConfig {
    fn drop(&mut self) {
        if let Some(password) = &mut self.password {
            zeroize::Zeroize::zeroize(password);
        }
    }
}

impl fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How the server authenticated us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password asked (`trust`).
    Trust,
    /// Cleartext password (`password`).
    Cleartext,
    /// `md5`.
    Md5,
    /// SCRAM-SHA-256 without channel binding.
    ScramSha256,
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemId {
    /// The cluster's unique system identifier.
    pub system_id: u64,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlog_pos: u64,
    /// The database of this connection.
    pub dbname: Option<String>,
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// The first position the slot decodes: every transaction committing after it is streamed,
    /// everything before it is in the exported snapshot.
    pub consistent_point: u64,
    /// The exported snapshot, for `SET TRANSACTION SNAPSHOT` in another session. It stays valid
    /// only until the next command on the replication connection that created the slot (or its
    /// close); take it before running anything else on that connection.
    pub snapshot_name: Option<String>,
}

/// One replication session with the server, before streaming starts.
#[derive(Debug)]
pub struct ReplicationConnection {
    wire: Wire,
    server_version: Option<String>,
    backend_pid: Option<i32>,
    auth_method: AuthMethod,
}

impl ReplicationConnection {
    /// Connects, authenticates (trust, cleartext, md5 or SCRAM-SHA-256) and waits until the
    /// server is ready for commands.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Connect`] or [`ReplicationError::Timeout`] when the server cannot be
    /// reached in time, [`ReplicationError::Auth`] when the credentials are refused or the
    /// authentication method is unsupported, [`ReplicationError::Server`] when the server refuses
    /// the session (e.g. `42501` for a role without REPLICATION, `3D000` for a missing database,
    /// `53300` when all wal senders are busy).
    pub async fn connect(cfg: &ReplicationConfig) -> Result<Self, ReplicationError> {
        if cfg.connect_timeout.is_zero() {
            return Self::connect_inner(cfg).await;
        }
        tokio::time::timeout(cfg.connect_timeout, Self::connect_inner(cfg))
            .await
            .unwrap_or_else(|_| {
                Err(ReplicationError::Timeout {
                    addr: address(cfg),
                    after: cfg.connect_timeout,
                })
            })
    }

    async fn connect_inner(cfg: &ReplicationConfig) -> Result<Self, ReplicationError> {
        let mut wire = Wire::new(open_transport(cfg).await?);
        let session = auth::start_session(&mut wire, cfg).await?;
        let server_version = session
            .parameters
            .into_iter()
            .find_map(|(name, value)| (name == "server_version").then_some(value));
        tracing::debug!(
            server_version = server_version.as_deref(),
            backend_pid = session.backend_pid,
            auth = ?session.auth_method,
            "replication connection ready"
        );
        Ok(ReplicationConnection {
            wire,
            server_version,
            backend_pid: session.backend_pid,
            auth_method: session.auth_method,
        })
    }

    /// The server version as `server_version_num` (`150018` for 15.18, `90624` for 9.6.24).
    pub fn server_version_num(&self) -> Option<u32> {
        self.server_version
            .as_deref()
            .and_then(parse_server_version)
    }

    /// The process id of the server's wal sender for this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// How the server authenticated this connection.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }

    /// Runs `IDENTIFY_SYSTEM`.
    ///
    /// # Errors
    ///
    /// Connection failures, or [`ReplicationError::Protocol`] when the answer is malformed.
    pub async fn identify_system(&mut self) -> Result<SystemId, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = single_row(&rows, "IDENTIFY_SYSTEM", 4)?;
        Ok(SystemId {
            system_id: parse_column(row, 0, "IDENTIFY_SYSTEM systemid", |s| s.parse().ok())?,
            timeline: parse_column(row, 1, "IDENTIFY_SYSTEM timeline", |s| s.parse().ok())?,
            xlog_pos: parse_column(row, 2, "IDENTIFY_SYSTEM xlogpos", parse_lsn)?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// Runs one simple-protocol query (a replication command or SQL) and returns the rows of
    /// all its result sets as text columns (`None` is NULL).
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Server`] when the command fails (the connection stays usable),
    /// [`ReplicationError::Protocol`] when the command starts a copy (use
    /// [`ReplicationConnection::start_replication`]); the connection is then unusable.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        self.send_query(sql).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.wire.next_frame().await? {
                b'D' => rows.push(parse_data_row(self.wire.body())?),
                b'T' | b'C' | b'I' => {}
                b'E' => error = Some(parse_error_fields(self.wire.body())?),
                b'N' => log_notice(self.wire.body()),
                b'S' => self.parameter_status()?,
                b'Z' => break,
                b'W' | b'H' | b'G' => {
                    return Err(ReplicationError::Protocol(format!(
                        "the command {sql:?} started a copy; use start_replication for START_REPLICATION"
                    )));
                }
                tag => return Err(unexpected(tag, "in a query response")),
            }
        }
        error.map_or(Ok(rows), |e| Err(e.into()))
    }

    /// Creates a logical replication slot for the `pgoutput` plugin, exporting a snapshot of
    /// the database as of the slot's consistent point when `export_snapshot` is true.
    ///
    /// The exported snapshot ([`CreatedSlot::snapshot_name`]) stays valid only until the next
    /// command on this connection (or until it closes): import it in another session with
    /// `SET TRANSACTION SNAPSHOT` first, then run anything else here.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Server`], e.g. `42710` when the slot exists, `53400` when all slots
    /// are in use, `55000` when `wal_level` is not `logical`.
    pub async fn create_slot(
        &mut self,
        slot: &str,
        export_snapshot: bool,
    ) -> Result<CreatedSlot, ReplicationError> {
        let modern = self.server_version_num().is_none_or(|v| v >= 150_000);
        let snapshot = match (modern, export_snapshot) {
            (true, true) => "(SNAPSHOT 'export')",
            (true, false) => "(SNAPSHOT 'nothing')",
            (false, true) => "EXPORT_SNAPSHOT",
            (false, false) => "NOEXPORT_SNAPSHOT",
        };
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {snapshot}",
            quote_ident(slot)
        );
        let rows = self.simple_query(&sql).await?;
        let row = single_row(&rows, "CREATE_REPLICATION_SLOT", 4)?;
        Ok(CreatedSlot {
            slot_name: parse_column(row, 0, "slot_name", |s| Some(s.to_owned()))?,
            consistent_point: parse_column(row, 1, "consistent_point", parse_lsn)?,
            snapshot_name: row.get(2).cloned().flatten(),
        })
    }

    /// Starts logical replication from `slot` at `start_lsn` (0 = the slot's confirmed
    /// position) with pgoutput options such as `("proto_version", "2")`,
    /// `("publication_names", "\"pub\"")`, `("streaming", "on")`, `("messages", "true")`.
    /// Names are quoted as identifiers, values as literals.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Server`], e.g. `42704` for a missing slot or publication, `55006`
    /// when another session is using the slot (transient).
    pub async fn start_replication(
        mut self,
        slot: &str,
        start_lsn: u64,
        options: &[(&str, String)],
    ) -> Result<ReplicationStream, ReplicationError> {
        let mut sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {}",
            quote_ident(slot),
            format_lsn(start_lsn)
        );
        for (i, (name, value)) in options.iter().enumerate() {
            sql.push_str(if i == 0 { " (" } else { ", " });
            sql.push_str(&quote_ident(name));
            sql.push(' ');
            sql.push_str(&quote_literal(value));
        }
        if !options.is_empty() {
            sql.push(')');
        }
        self.send_query(&sql).await?;
        let mut error = None;
        loop {
            match self.wire.next_frame().await? {
                b'W' => break,
                b'E' => error = Some(parse_error_fields(self.wire.body())?),
                b'N' => log_notice(self.wire.body()),
                b'S' => self.parameter_status()?,
                b'Z' => {
                    return Err(error.map_or_else(
                        || unexpected(b'Z', "instead of CopyBothResponse"),
                        ReplicationError::from,
                    ));
                }
                tag => return Err(unexpected(tag, "instead of CopyBothResponse")),
            }
        }
        tracing::debug!(slot, lsn = %format_lsn(start_lsn), "replication started");
        Ok(ReplicationStream::new(self.wire, self.backend_pid))
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), ReplicationError> {
        frontend::query(sql, self.wire.write_buf()).map_err(|_| {
            ReplicationError::Config(format!("the command {sql:?} contains a NUL byte"))
        })?;
        self.wire.flush().await
    }

    fn parameter_status(&mut self) -> Result<(), ReplicationError> {
        let (name, value) = parse_parameter_status(self.wire.body())?;
        if name == "server_version" {
            self.server_version = Some(value.to_owned());
        }
        Ok(())
    }
}

fn address(cfg: &ReplicationConfig) -> String {
    if cfg.host.starts_with('/') {
        format!("{}/.s.PGSQL.{}", cfg.host, cfg.port)
    } else {
        format!("{}:{}", cfg.host, cfg.port)
    }
}

/// Opens the socket and negotiates TLS according to [`ReplicationConfig::tls`].
async fn open_transport(cfg: &ReplicationConfig) -> Result<Transport, ReplicationError> {
    let addr = address(cfg);
    let connect_error = |source| ReplicationError::Connect {
        addr: addr.clone(),
        source,
    };
    if cfg.host.starts_with('/') {
        let stream = UnixStream::connect(&addr).await.map_err(connect_error)?;
        return Ok(Transport::Unix(stream));
    }
    let mut stream = TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    if cfg.tls.mode == TlsMode::Disable {
        return Ok(Transport::Tcp(stream));
    }
    // Read the files before asking, so a bad file is reported as such.
    let config = crate::tls::client_config(&cfg.tls, TLS_SETTING)?;
    let mut request = bytes::BytesMut::with_capacity(8);
    frontend::ssl_request(&mut request);
    stream.write_all(&request).await.map_err(wire::io_error)?;
    match stream.read_u8().await.map_err(wire::io_error)? {
        b'S' => {
            let name = crate::tls::server_name(&cfg.host, TLS_SETTING)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| {
                    crate::tls::TlsError::handshake(e, &cfg.tls, TLS_SETTING, &cfg.host, &addr)
                })?;
            Ok(Transport::Tls(Box::new(tls)))
        }
        b'N' if cfg.tls.mode == TlsMode::Prefer => Ok(Transport::Tcp(stream)),
        b'N' => Err(crate::tls::TlsError::NotOffered {
            setting: TLS_SETTING.to_owned(),
            mode: crate::tls::mode_name(cfg.tls.mode).to_owned(),
            addr,
        }
        .into()),
        other => Err(ReplicationError::Protocol(format!(
            "unexpected answer {:?} to SSLRequest",
            char::from(other)
        ))),
    }
}

/// The settings block named in TLS errors.
const TLS_SETTING: &str = "source.postgres.tls";

fn single_row<'a>(
    rows: &'a [Vec<Option<String>>],
    command: &str,
    columns: usize,
) -> Result<&'a [Option<String>], ReplicationError> {
    match rows {
        [row] if row.len() >= columns => Ok(row),
        _ => Err(ReplicationError::Protocol(format!(
            "{command} returned {} rows, expected one row of {columns} columns",
            rows.len()
        ))),
    }
}

fn parse_column<T>(
    row: &[Option<String>],
    index: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ReplicationError> {
    let value = row.get(index).and_then(Option::as_deref);
    value
        .and_then(parse)
        .ok_or_else(|| ReplicationError::Protocol(format!("unreadable {what} value {value:?}")))
}

/// Parses a textual LSN such as `16/B374D848`.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Formats an LSN as PostgreSQL does (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// `15.18 (Debian 15.18-0+deb12u1)` -> 150018, `9.6.24` -> 90624, `16beta1` -> 160000.
fn parse_server_version(version: &str) -> Option<u32> {
    let numeric = version
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?;
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10_000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10_000 + minor * 100 + patch)
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
