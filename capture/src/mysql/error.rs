//! Why the MariaDB/MySQL source stopped, and which failures are worth a reconnect.

use crate::source::PipelineClosed;

/// Why the MariaDB/MySQL source stopped.
#[derive(Debug, thiserror::Error)]
pub enum MysqlSourceError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to the mysql source {host}:{port}: {source}")]
    Connect {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What the driver reported.
        #[source]
        source: mysql_async::Error,
    },
    /// A query on the server failed.
    #[error("{what} failed on the mysql source: {source}")]
    Sql {
        /// What ordo was doing.
        what: String,
        /// What the driver reported.
        #[source]
        source: mysql_async::Error,
    },
    /// The binlog stream failed.
    #[error("the binlog stream failed at {at}: {source}")]
    Stream {
        /// Binlog position of the last event read.
        at: String,
        /// What the driver reported.
        #[source]
        source: mysql_async::Error,
    },
    /// Nothing arrived for longer than the heartbeat allows.
    #[error("the binlog stream sent nothing (not even a heartbeat) for {secs} s")]
    Silent {
        /// Seconds of silence.
        secs: u64,
    },
    /// The server ended the stream.
    #[error("the server closed the binlog stream at {at}")]
    StreamEnded {
        /// Binlog position of the last event read.
        at: String,
    },
    /// An event could not be read.
    #[error("binlog event {event} at {at} is malformed: {reason}")]
    Corrupt {
        /// Event type.
        event: u8,
        /// Binlog position of the event.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// The server writes compressed events.
    #[error(
        "binlog event {event} at {at} is compressed, which ordo cannot read: set log_bin_compress=OFF \
         on the server (SET GLOBAL log_bin_compress=OFF and in its config file), then restart capture \
         with a new snapshot or from a position after the compressed events"
    )]
    Compressed {
        /// Event type.
        event: u8,
        /// Binlog position of the event.
        at: String,
    },
    /// A row value could not be decoded.
    #[error("column `{column}` of `{table}` at {at} cannot be decoded: {reason}")]
    Value {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Binlog position of the rows event.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A table cannot be captured as it is.
    #[error("table `{table}` cannot be captured: {reason}; {fix}")]
    Table {
        /// Table.
        table: String,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        fix: String,
    },
    /// A server setting or the configuration does not allow capture.
    #[error("{setting} is {found}: {fix}")]
    Setting {
        /// The setting.
        setting: String,
        /// Its value.
        found: String,
        /// How to fix it.
        fix: String,
    },
    /// The server reported an incident: events may be missing from the binlog.
    #[error(
        "the server logged an incident at {at} ({message}): events may be missing; take a new snapshot with a new kafka.commit_topic"
    )]
    Incident {
        /// Binlog position.
        at: String,
        /// The incident message.
        message: String,
    },
    /// TLS to the server could not be set up (certificate, CA, key, or the server lacks TLS).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The pipeline stopped receiving events.
    #[error(transparent)]
    Pipeline(#[from] PipelineClosed),
}

impl MysqlSourceError {
    /// Whether reconnecting may help (a lost connection, a restarting server) rather than a
    /// definite problem (privileges, settings, malformed data).
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlSourceError::Connect { source, .. }
            | MysqlSourceError::Sql { source, .. }
            | MysqlSourceError::Stream { source, .. } => transient(source),
            MysqlSourceError::Silent { .. } | MysqlSourceError::StreamEnded { .. } => true,
            MysqlSourceError::Tls(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Whether the server or the configuration must change before capture can run (settings,
    /// privileges, tables that cannot be captured, TLS set-up): `ordo run` exits 2 for these,
    /// so a service manager does not restart it in a loop.
    pub fn is_prerequisite(&self) -> bool {
        match self {
            MysqlSourceError::Setting { .. }
            | MysqlSourceError::Table { .. }
            | MysqlSourceError::Compressed { .. } => true,
            MysqlSourceError::Tls(e) => !e.is_transient(),
            _ => false,
        }
    }
}

/// Server errors that go away by themselves: too many connections, shutdown in progress,
/// killed connection, lock wait, network errors reported by the server.
fn transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(d, mysql_async::DriverError::ConnectionClosed),
        mysql_async::Error::Server(s) => matches!(
            s.code,
            1040 | 1053 | 1152 | 1153 | 1158..=1161 | 1205 | 1213 | 1412 | 1927 | 2006 | 2013
        ),
        _ => false,
    }
}
