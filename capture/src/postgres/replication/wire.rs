//! Framing of the PostgreSQL frontend/backend protocol (version 3.0) for the replication
//! connection.
//!
//! Every backend message is a tag byte followed by a big-endian `i32` length that counts itself
//! and the body. [`Wire::next_frame`] reads until one whole message sits in a reusable read
//! buffer and hands out its tag; [`Wire::body`] borrows the body in place. The frame stays in the
//! buffer until the next call, so the hot path (XLogData) never allocates.
//!
//! Messages we send are encoded into a reusable write buffer (mostly with `postgres-protocol`'s
//! `message::frontend` encoders) and written out by [`Wire::flush`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::error::{ReplicationError, ServerError};

/// Initial size of the read buffer; one read of the socket fills at most this much.
pub(crate) const READ_BUFFER_SIZE: usize = 256 * 1024;
/// A read is only started with at least this much free space in the buffer.
const MIN_READ: usize = 16 * 1024;
/// After a huge message the buffer is given back once empty if it grew past this.
const SHRINK_ABOVE: usize = 16 * 1024 * 1024;
/// PostgreSQL builds messages in a `StringInfo`, which is capped at 1 GiB.
const MAX_MESSAGE_LEN: usize = (1 << 30) + (1 << 20);
/// Tag byte and length word.
const HEADER_LEN: usize = 5;

/// The byte stream under the protocol. An enum rather than a generic so the public types stay
/// simple; TLS is the stream after an accepted SSLRequest.
#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A framed protocol connection: transport plus reusable read and write buffers.
pub(crate) struct Wire {
    io: Transport,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Length of the frame handed out last; it is dropped from `rbuf` on the next read.
    current: usize,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("io", &self.io)
            .field("buffered", &self.rbuf.len())
            .field("unsent", &self.wbuf.len())
            .finish()
    }
}

impl Wire {
    pub(crate) fn new(io: Transport) -> Self {
        Wire {
            io,
            rbuf: BytesMut::with_capacity(READ_BUFFER_SIZE),
            wbuf: BytesMut::with_capacity(1024),
            current: 0,
        }
    }

    /// The buffer to encode outgoing messages into; [`Wire::flush`] sends it.
    pub(crate) fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Sends a message that carries a secret (a password or its MD5 hash): whatever is queued
    /// goes first, then `build` writes the message into a buffer of its own, sized so that it
    /// never reallocates, which is sent and wiped. The shared write buffer never holds it.
    pub(crate) async fn send_secret(
        &mut self,
        size: usize,
        build: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<(), ReplicationError> {
        self.flush().await?;
        let mut buf = BytesMut::with_capacity(size);
        let built = build(&mut buf);
        let sent = match built {
            Ok(()) if buf.len() <= size => self.io.write_all(&buf).await.map_err(io_error),
            Ok(()) => Err(ReplicationError::Protocol(
                "an authentication message outgrew its buffer".into(),
            )),
            Err(e) => Err(ReplicationError::Protocol(format!(
                "an authentication message: {e}"
            ))),
        };
        zeroize::Zeroize::zeroize(buf.as_mut());
        sent?;
        self.io.flush().await.map_err(io_error)
    }

    /// Sends everything in the write buffer.
    ///
    /// Cancel safe: bytes are removed from the buffer as they are written, so a later call
    /// continues where a cancelled one stopped and the stream stays well framed.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        while self.wbuf.has_remaining() {
            let n = self.io.write_buf(&mut self.wbuf).await.map_err(io_error)?;
            if n == 0 {
                return Err(ReplicationError::ConnectionClosed);
            }
        }
        self.io.flush().await.map_err(io_error)
    }

    /// Reads until a whole message is buffered and returns its tag; [`Wire::body`] is its body.
    ///
    /// Cancel safe: a cancelled call loses no data, the next call carries on.
    pub(crate) async fn next_frame(&mut self) -> Result<u8, ReplicationError> {
        self.release();
        loop {
            let missing = match frame_len(&self.rbuf)? {
                Some(total) if self.rbuf.len() >= total => {
                    self.current = total;
                    return Ok(self.rbuf[0]);
                }
                Some(total) => total - self.rbuf.len(),
                None => HEADER_LEN,
            };
            let want = missing.max(MIN_READ);
            if self.rbuf.capacity() - self.rbuf.len() < want {
                self.rbuf.reserve(want.max(READ_BUFFER_SIZE / 2));
            }
            if self.io.read_buf(&mut self.rbuf).await.map_err(io_error)? == 0 {
                return Err(ReplicationError::ConnectionClosed);
            }
        }
    }

    /// The body of the message returned by the last [`Wire::next_frame`].
    pub(crate) fn body(&self) -> &[u8] {
        self.rbuf.get(HEADER_LEN..self.current).unwrap_or_default()
    }

    /// Drops the frame handed out last.
    fn release(&mut self) {
        if self.current > 0 {
            self.rbuf.advance(self.current);
            self.current = 0;
            if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
                self.rbuf = BytesMut::with_capacity(READ_BUFFER_SIZE);
            }
        }
    }

    /// Closes the write side; the server then ends the session.
    pub(crate) async fn shutdown(&mut self) -> Result<(), ReplicationError> {
        self.io.shutdown().await.map_err(io_error)
    }
}

/// Maps an end-of-file or reset to [`ReplicationError::ConnectionClosed`].
pub(crate) fn io_error(e: io::Error) -> ReplicationError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ReplicationError::ConnectionClosed,
        _ => ReplicationError::Io(e),
    }
}

/// Total length (tag included) of the message at the start of `buf`, once its header is there.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, ReplicationError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    match usize::try_from(len) {
        Ok(len) if (4..=MAX_MESSAGE_LEN).contains(&len) => Ok(Some(len + 1)),
        _ => Err(ReplicationError::Protocol(format!(
            "invalid length {len} for a message of type {:?}",
            char::from(header[0])
        ))),
    }
}

/// A bounds-checked cursor over a message body; every read failure is a protocol error naming
/// the message.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn truncated(&self) -> ReplicationError {
        ReplicationError::Protocol(format!("truncated {} message from the server", self.what))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReplicationError> {
        if self.buf.len() < n {
            return Err(self.truncated());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReplicationError> {
        let Some((head, tail)) = self.buf.split_first_chunk::<N>() else {
            return Err(self.truncated());
        };
        self.buf = tail;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ReplicationError> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ReplicationError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ReplicationError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ReplicationError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, ReplicationError> {
        self.array().map(i64::from_be_bytes)
    }

    pub(crate) fn salt(&mut self) -> Result<[u8; 4], ReplicationError> {
        self.array()
    }

    /// A NUL-terminated string, without the NUL.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, ReplicationError> {
        let Some(end) = memchr::memchr(0, self.buf) else {
            return Err(self.truncated());
        };
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| {
            ReplicationError::Protocol(format!("invalid utf-8 in a {} message", self.what))
        })?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Parses an ErrorResponse or NoticeResponse body (fields `S`/`V`, `C`, `M`, `D`, `H`).
pub(crate) fn parse_error_fields(body: &[u8]) -> Result<ServerError, ReplicationError> {
    let mut r = Reader::new(body, "error or notice");
    let mut e = ServerError::default();
    let mut localized_severity = None;
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'S' => localized_severity = Some(value),
            b'V' => e.severity = value.to_owned(),
            b'C' => e.code = value.to_owned(),
            b'M' => e.message = value.to_owned(),
            b'D' => e.detail = Some(value.to_owned()),
            b'H' => e.hint = Some(value.to_owned()),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity.unwrap_or("ERROR").to_owned();
    }
    Ok(e)
}

/// Parses a DataRow body into text columns.
pub(crate) fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ReplicationError> {
    let mut r = Reader::new(body, "data row");
    let count = r.i16()?;
    let mut row = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let len = r.i32()?;
        let value = match usize::try_from(len) {
            Ok(len) => {
                let bytes = r.bytes(len)?;
                Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ReplicationError::Protocol("invalid utf-8 in a data row".to_owned())
                })?)
            }
            Err(_) => None,
        };
        row.push(value);
    }
    Ok(row)
}

/// Logs a NoticeResponse body.
pub(crate) fn log_notice(body: &[u8]) {
    match parse_error_fields(body) {
        Ok(n) => tracing::info!(
            severity = %n.severity,
            code = %n.code,
            detail = n.detail.as_deref(),
            "postgresql notice: {}",
            n.message
        ),
        Err(e) => tracing::warn!(error = %e, "unreadable notice from postgresql"),
    }
}

/// Reads a ParameterStatus body as (name, value).
pub(crate) fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), ReplicationError> {
    let mut r = Reader::new(body, "parameter status");
    Ok((r.cstr()?, r.cstr()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_needs_a_whole_header() {
        assert_eq!(frame_len(b"").unwrap(), None);
        assert_eq!(frame_len(b"Z\0\0\0").unwrap(), None);
        assert_eq!(frame_len(b"Z\0\0\0\x05I").unwrap(), Some(6));
    }

    #[test]
    fn frame_len_rejects_bad_lengths() {
        assert!(matches!(
            frame_len(b"Z\0\0\0\x03"),
            Err(ReplicationError::Protocol(_))
        ));
        assert!(matches!(
            frame_len(b"d\xff\xff\xff\xff"),
            Err(ReplicationError::Protocol(_))
        ));
        assert!(matches!(
            frame_len(b"d\x7f\xff\xff\xff"),
            Err(ReplicationError::Protocol(_))
        ));
    }

    #[test]
    fn error_fields_prefer_the_unlocalized_severity() {
        let body =
            b"SFEHLER\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Hcreate it\0\0";
        let e = parse_error_fields(body).unwrap();
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42704");
        assert_eq!(e.message, "replication slot \"x\" does not exist");
        assert_eq!(e.detail, None);
        assert_eq!(e.hint.as_deref(), Some("create it"));
    }

    #[test]
    fn truncated_error_fields_are_a_protocol_error() {
        assert!(matches!(
            parse_error_fields(b"C4270"),
            Err(ReplicationError::Protocol(_))
        ));
    }

    #[test]
    fn data_row_with_null() {
        let body = b"\0\x02\0\0\0\x03abc\xff\xff\xff\xff";
        let row = parse_data_row(body).unwrap();
        assert_eq!(row, vec![Some("abc".to_owned()), None]);
        assert!(parse_data_row(b"\0\x01\0\0\0\x09ab").is_err());
    }
}
