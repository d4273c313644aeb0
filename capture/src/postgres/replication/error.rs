//! Errors of the replication connection and their transient/definite classification.

use std::fmt;
use std::io;
use std::time::Duration;

/// Something that went wrong on a replication connection.
///
/// [`ReplicationError::is_transient`] is the one place that decides whether reconnecting with
/// backoff can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The TCP or unix-socket connection could not be opened.
    #[error(
        "could not connect to postgresql at {addr}: {source}; check that the server is running and that host and port are right"
    )]
    Connect {
        /// `host:port` or the socket path.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Connecting and authenticating took longer than `connect_timeout`.
    #[error(
        "timed out after {after:?} connecting to postgresql at {addr}; check that the server is reachable and not overloaded, or raise connect_timeout"
    )]
    Timeout {
        /// `host:port` or the socket path.
        addr: String,
        /// The configured timeout.
        after: Duration,
    },
    /// Reading from or writing to the connection failed.
    #[error("i/o error on the replication connection: {0}")]
    Io(#[source] io::Error),
    /// The server closed the connection without an error message (server restart, network
    /// failure, or the backend was killed).
    #[error(
        "postgresql closed the replication connection unexpectedly; reconnect once the server is back"
    )]
    ConnectionClosed,
    /// The server sent an ErrorResponse.
    #[error("{}", ServerDisplay(self))]
    Server {
        /// `ERROR`, `FATAL` or `PANIC` (never localized).
        severity: String,
        /// The SQLSTATE code, e.g. `42501`.
        code: String,
        /// The primary message.
        message: String,
        /// The optional detail.
        detail: Option<String>,
        /// The optional hint.
        hint: Option<String>,
    },
    /// Authentication failed or needs something ordo cannot do; the message says which.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server sent something this client does not understand.
    #[error("replication protocol error: {0}; this is a bug in ordo or an unsupported server")]
    Protocol(String),
    /// TLS could not be set up: a certificate the settings do not trust, a file that cannot be
    /// read, or a server without TLS under a mode that needs it.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The configuration or an argument cannot be used (a NUL byte in a name, TLS required).
    #[error("invalid replication connection setting: {0}")]
    Config(String),
}

impl ReplicationError {
    /// Whether retrying (reconnecting with backoff) can succeed without anyone changing
    /// anything: lost connections, timeouts, server shutdown or restart (`57P01`..`57P03`),
    /// connection exceptions (`08xxx`), too many connections (`53300`) and a replication slot
    /// still in use by a previous session (`55006`). Everything else needs a person.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Connect { .. }
            | ReplicationError::Timeout { .. }
            | ReplicationError::Io(_)
            | ReplicationError::ConnectionClosed => true,
            ReplicationError::Server { code, .. } => is_transient_sqlstate(code),
            ReplicationError::Tls(e) => e.is_transient(),
            ReplicationError::Auth(_)
            | ReplicationError::Protocol(_)
            | ReplicationError::Config(_) => false,
        }
    }

    /// The SQLSTATE code when the server reported the error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ReplicationError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55006")
}

/// What to do about the server errors a replication connection commonly meets.
fn advice(code: &str) -> Option<&'static str> {
    Some(match code {
        "42501" => {
            "the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) or must be a superuser"
        }
        "55006" => {
            "another session is streaming from this replication slot; stop it, or wait for it to exit"
        }
        "53300" => {
            "the server has no free connection or wal sender; raise max_wal_senders or max_connections"
        }
        "53400" => {
            "the server has no free replication slot; raise max_replication_slots or drop unused slots"
        }
        "42704" => "check the slot and publication names, or create them first",
        "3D000" => "check the database name",
        "55000" => "logical decoding needs wal_level = logical on the server (restart required)",
        _ => return None,
    })
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ServerError {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
    pub(crate) hint: Option<String>,
}

impl From<ServerError> for ReplicationError {
    fn from(e: ServerError) -> Self {
        ReplicationError::Server {
            severity: e.severity,
            code: e.code,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

struct ServerDisplay<'a>(&'a ReplicationError);

impl fmt::Display for ServerDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ReplicationError::Server {
            severity,
            code,
            message,
            detail,
            hint,
        } = self.0
        else {
            return Ok(());
        };
        write!(
            f,
            "postgresql {} {code}: {message}",
            severity.to_lowercase()
        )?;
        if let Some(detail) = detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = hint {
            write!(f, "; hint: {hint}")?;
        }
        if let Some(advice) = advice(code) {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> ReplicationError {
        ServerError {
            severity: "FATAL".into(),
            code: code.into(),
            message: "m".into(),
            ..ServerError::default()
        }
        .into()
    }

    #[test]
    fn transient_classification() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08P01", "53300", "55006",
        ] {
            assert!(server(code).is_transient(), "{code}");
        }
        for code in [
            "42501", "28P01", "42704", "53400", "3D000", "XX000", "57014",
        ] {
            assert!(!server(code).is_transient(), "{code}");
        }
        assert!(ReplicationError::ConnectionClosed.is_transient());
        assert!(!ReplicationError::Auth("x".into()).is_transient());
        assert!(!ReplicationError::Protocol("x".into()).is_transient());
    }

    #[test]
    fn server_error_display_has_code_and_advice() {
        let e: ReplicationError = ServerError {
            severity: "FATAL".into(),
            code: "42501".into(),
            message: "must be superuser or replication role to start walsender".into(),
            detail: Some("d".into()),
            hint: None,
        }
        .into();
        assert_eq!(
            e.to_string(),
            "postgresql fatal 42501: must be superuser or replication role to start walsender; \
             detail: d; the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) \
             or must be a superuser"
        );
        assert_eq!(e.code(), Some("42501"));
    }
}
