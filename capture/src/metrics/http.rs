//! The metrics endpoint: a small HTTP/1.1 server answering `GET /metrics` (Prometheus text
//! format) and `GET /health` (200 `ok` while snapshotting or streaming, 503 with the state
//! otherwise). One request per connection; anything else gets 404 or 405.
//!
//! # Shutdown
//! [`serve`] returns when its token fires; connections in progress finish on their own (each
//! is bounded by a timeout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// How long one connection may take to send its request and receive the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Bind `addr`.
///
/// # Errors
/// When the address is in use or not available, with the config key to change.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on metrics.listen {addr}: {e}; choose a free address or remove metrics.listen")
    })
}

/// Serve `metrics` on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        // Owned by nothing but its timeout: a connection task ends within CONNECTION_TIMEOUT.
        tokio::spawn(async move {
            let answer = tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, &metrics)).await;
            if let Ok(Err(e)) = answer {
                tracing::debug!(error = %e, %peer, "metrics endpoint: connection failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET\n").await;
    }
    match path {
        "/metrics" => {
            let body = metrics.render();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        "/health" => {
            let state = metrics.state();
            if state.is_healthy() {
                respond(&mut stream, 200, "text/plain", "ok\n").await
            } else {
                respond(
                    &mut stream,
                    503,
                    "text/plain",
                    &format!("{}\n", state.name()),
                )
                .await
            }
        }
        _ => respond(&mut stream, 404, "text/plain", "try /metrics or /health\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::metrics::State;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, metrics.clone(), stop.clone()));
        assert!(get(addr, "/health").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/health").await.ends_with("\r\n\r\nstarting\n"));
        metrics.transition(State::Streaming);
        assert!(get(addr, "/health").await.ends_with("\r\n\r\nok\n"));
        assert!(
            get(addr, "/metrics")
                .await
                .contains("ordo_state{state=\"streaming\"} 1")
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        task.await.unwrap();
    }
}
