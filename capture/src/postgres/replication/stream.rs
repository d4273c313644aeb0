//! The CopyBoth phase of a replication connection: XLogData and keepalives in, standby status
//! updates out.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BufMut;
use postgres_protocol::message::frontend;

use super::auth::unexpected;
use super::error::ReplicationError;
use super::wire::{Reader, Wire, log_notice, parse_error_fields, parse_parameter_status};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One message of the replication stream, borrowed from the stream's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMessage<'a> {
    /// A chunk of decoded WAL (`w`): for `pgoutput`, exactly one pgoutput message in `data`.
    XLogData {
        /// The WAL position this data starts at (0 for some pgoutput messages).
        wal_start: u64,
        /// The server's current WAL end.
        wal_end: u64,
        /// Server clock when sent, microseconds since 2000-01-01.
        server_time_micros: i64,
        /// The payload.
        data: &'a [u8],
    },
    /// A keepalive (`k`); when `reply_requested`, answer soon with
    /// [`ReplicationStream::send_status`] or the server disconnects after `wal_sender_timeout`.
    Keepalive {
        /// The server's current WAL end.
        wal_end: u64,
        /// Server clock when sent, microseconds since 2000-01-01.
        server_time_micros: i64,
        /// Whether the server wants a status update now.
        reply_requested: bool,
    },
}

/// A replication connection in streaming mode, made by
/// [`ReplicationConnection::start_replication`](super::ReplicationConnection::start_replication).
///
/// Reading ([`ReplicationStream::next`]) and acknowledging ([`ReplicationStream::send_status`])
/// are both cancel safe, so one task can `select!` between the next message and a status timer.
#[derive(Debug)]
pub struct ReplicationStream {
    wire: Wire,
    backend_pid: Option<i32>,
    /// The server sent CopyDone: no more data will come.
    server_done: bool,
}

impl ReplicationStream {
    pub(crate) fn new(wire: Wire, backend_pid: Option<i32>) -> Self {
        ReplicationStream {
            wire,
            backend_pid,
            server_done: false,
        }
    }

    /// The process id of the server's wal sender (for `pg_stat_replication` and logs).
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// The next XLogData or keepalive; `None` once the server has ended the copy.
    ///
    /// The message borrows the stream's read buffer: nothing is allocated per message. Notices
    /// and parameter statuses in between are logged and skipped.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Server`] when the server ends the session with an error (e.g.
    /// `57P01` on shutdown, transient), [`ReplicationError::ConnectionClosed`] or
    /// [`ReplicationError::Io`] when the connection is lost, [`ReplicationError::Protocol`] for
    /// malformed data.
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage<'_>>, ReplicationError> {
        if self.server_done {
            return Ok(None);
        }
        loop {
            match self.wire.next_frame().await? {
                b'd' => break,
                b'c' => {
                    self.server_done = true;
                    return Ok(None);
                }
                b'E' => return Err(parse_error_fields(self.wire.body())?.into()),
                b'N' => log_notice(self.wire.body()),
                b'S' => {
                    let (name, value) = parse_parameter_status(self.wire.body())?;
                    tracing::debug!(name, value, "parameter status during replication");
                }
                tag => return Err(unexpected(tag, "during replication")),
            }
        }
        parse_copy_data(self.wire.body()).map(Some)
    }

    /// Sends a standby status update (`r`): everything up to `written` is received, up to
    /// `flushed` durable (the server advances the slot's `confirmed_flush_lsn` to it and may
    /// recycle WAL before it), up to `applied` applied. `reply_requested` asks the server for an
    /// immediate keepalive.
    ///
    /// # Errors
    ///
    /// [`ReplicationError::ConnectionClosed`] or [`ReplicationError::Io`] when the connection
    /// is lost.
    pub async fn send_status(
        &mut self,
        written: u64,
        flushed: u64,
        applied: u64,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let buf = self.wire.write_buf();
        buf.put_u8(b'd');
        buf.put_i32(4 + 1 + 8 * 4 + 1);
        buf.put_u8(b'r');
        buf.put_u64(written);
        buf.put_u64(flushed);
        buf.put_u64(applied);
        buf.put_i64(pg_now_micros());
        buf.put_u8(u8::from(reply_requested));
        self.wire.flush().await
    }

    /// Ends streaming: sends CopyDone, discards data still in flight up to the server's
    /// ReadyForQuery, then terminates the session. Send a final
    /// [`ReplicationStream::send_status`] first, or the slot keeps its older position and the
    /// next session receives those transactions again.
    ///
    /// The server may finish decoding its current transaction before it answers; wrap the call
    /// in a timeout when shutdown must be quick (dropping the stream also closes the session).
    ///
    /// # Errors
    ///
    /// [`ReplicationError::Server`] when the server reports an error while stopping, connection
    /// errors when it is lost.
    pub async fn stop(mut self) -> Result<(), ReplicationError> {
        frontend::copy_done(self.wire.write_buf());
        self.wire.flush().await?;
        loop {
            match self.wire.next_frame().await? {
                b'd' | b'c' | b'C' | b'T' | b'D' | b'S' => {}
                b'N' => log_notice(self.wire.body()),
                b'E' => return Err(parse_error_fields(self.wire.body())?.into()),
                b'Z' => break,
                tag => return Err(unexpected(tag, "while stopping replication")),
            }
        }
        frontend::terminate(self.wire.write_buf());
        self.wire.flush().await?;
        self.wire.shutdown().await
    }
}

/// Parses the CopyData payload of the replication stream.
fn parse_copy_data(body: &[u8]) -> Result<ReplicationMessage<'_>, ReplicationError> {
    let mut r = Reader::new(body, "replication copy data");
    match r.u8()? {
        b'w' => {
            let mut r = Reader::new(r.rest(), "XLogData");
            Ok(ReplicationMessage::XLogData {
                wal_start: r.u64()?,
                wal_end: r.u64()?,
                server_time_micros: r.i64()?,
                data: r.rest(),
            })
        }
        b'k' => {
            let mut r = Reader::new(r.rest(), "primary keepalive");
            Ok(ReplicationMessage::Keepalive {
                wal_end: r.u64()?,
                server_time_micros: r.i64()?,
                reply_requested: r.u8()? != 0,
            })
        }
        other => Err(ReplicationError::Protocol(format!(
            "unknown replication message type {:?}",
            char::from(other)
        ))),
    }
}

/// Now in PostgreSQL's timestamp representation.
fn pg_now_micros() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    since_unix.saturating_sub(PG_EPOCH_OFFSET_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_in_place() {
        let mut body = vec![b'w'];
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&2u64.to_be_bytes());
        body.extend_from_slice(&3i64.to_be_bytes());
        body.extend_from_slice(b"Bxyz");
        let msg = parse_copy_data(&body).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::XLogData {
                wal_start: 1,
                wal_end: 2,
                server_time_micros: 3,
                data: b"Bxyz"
            }
        );
    }

    #[test]
    fn parses_keepalive() {
        let mut body = vec![b'k'];
        body.extend_from_slice(&7u64.to_be_bytes());
        body.extend_from_slice(&(-1i64).to_be_bytes());
        body.push(1);
        let msg = parse_copy_data(&body).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::Keepalive {
                wal_end: 7,
                server_time_micros: -1,
                reply_requested: true
            }
        );
        assert!(parse_copy_data(&body[..17]).is_err());
        assert!(parse_copy_data(b"x").is_err());
    }

    #[test]
    fn pg_clock_is_after_2020() {
        // 2020-01-01 is 631_152_000 s after the PostgreSQL epoch.
        assert!(pg_now_micros() > 631_152_000_000_000);
    }
}
