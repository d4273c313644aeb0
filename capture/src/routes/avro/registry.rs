//! A small client for a Confluent-compatible schema registry: schema registration, with ids
//! cached per subject and schema.
//!
//! Plain HTTP/1.1 over a `TcpStream`, one connection per request (`Connection: close`), with
//! connect, read and write timeouts. `https://` registries are refused with an error that says
//! so; put them behind a local TLS-terminating proxy until TLS support lands.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use ordo_config::SchemaRegistry;

const TIMEOUT: Duration = Duration::from_secs(30);
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why the registry did not give a schema id.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    /// The registry's compatibility check refused the schema (HTTP 409).
    #[error(
        "schema registry: the new schema for subject `{subject}` is incompatible with its earlier versions: {message}; make the table change compatible, or change the subject's compatibility level in the registry"
    )]
    Incompatible {
        /// Subject.
        subject: String,
        /// The registry's message.
        message: String,
    },
    /// Any other HTTP error status.
    #[error(
        "schema registry at {url}: {what} answered HTTP {status}: {message}{hint}",
        hint = status_hint(*.status)
    )]
    Status {
        /// Registry base URL.
        url: String,
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached or its answer was not HTTP.
    #[error(
        "schema registry at {url}: {what}: {reason}; check `schema_registry.url` and that the registry is running"
    )]
    Transport {
        /// Registry base URL.
        url: String,
        /// What was asked.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The URL cannot be used.
    #[error("schema registry url `{url}`: {reason}")]
    Url {
        /// Registry base URL.
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "; check `schema_registry.username` and `password`",
        422 => "; the registry finds the schema invalid (a bug in ordo: please report it)",
        _ => "",
    }
}

/// Registry URL and `Authorization` value: one shared client each.
type ClientKey = (String, Option<String>);

/// A registry client. Cloning is not needed: share it through [`RegistryClient::shared`].
pub(crate) struct RegistryClient {
    url: String,
    /// `host:port`, for connecting and the `Host` header.
    authority: String,
    /// Path prefix without a trailing `/` (often empty).
    base_path: String,
    /// `Basic ...` header value.
    auth: Option<String>,
    /// `(subject, schema JSON)` -> id.
    ids: Mutex<HashMap<(String, String), u32>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.url)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `config`.
    pub(crate) fn new(config: &SchemaRegistry) -> Result<Self, RegistryError> {
        let url = config.url.trim_end_matches('/').to_owned();
        let url_error = |reason: &str| RegistryError::Url {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        if url.starts_with("https://") {
            return Err(url_error(
                "https is not supported by this build of ordo; reach the registry over http://, e.g. through a local TLS-terminating proxy",
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| url_error("expected `http://host:port`"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(url_error(
                "expected `http://host[:port][/path]`; put credentials in `username`/`password`",
            ));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let auth = config.username.as_ref().map(|user| {
            let password = config.password.as_ref().map_or("", |p| p.expose());
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        Ok(Self {
            base_path: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
            url,
            authority,
            auth,
            ids: Mutex::new(HashMap::new()),
        })
    }

    /// The process-wide client for `config` (one per URL and user), so ids cached by one
    /// route serve every other.
    pub(crate) fn shared(config: &SchemaRegistry) -> Result<Arc<Self>, RegistryError> {
        static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, Arc<RegistryClient>>>> = OnceLock::new();
        let client = Self::new(config)?;
        let key = (client.url.clone(), client.auth.clone());
        let mut clients = CLIENTS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(clients
            .entry(key)
            .or_insert_with(|| Arc::new(client))
            .clone())
    }

    /// Register `schema` under `subject` (`POST /subjects/{subject}/versions`) and return its
    /// id; a schema already registered by this client is answered from the cache.
    pub(crate) fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = self.cached(&key) {
            return Ok(id);
        }
        let body = serde_json::json!({ "schema": schema }).to_string();
        let path = format!("/subjects/{}/versions", percent_encode(subject));
        let what = format!("registering the schema for subject `{subject}`");
        let (status, reply) = self.request("POST", &path, Some(&body), &what)?;
        match status {
            200..=299 => {}
            409 => {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    message: error_message(&reply),
                });
            }
            _ => return Err(self.status_error(what, status, &reply)),
        }
        let id = serde_json::from_slice::<serde_json::Value>(&reply)
            .ok()
            .and_then(|v| v.get("id")?.as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.transport(&what, "the answer has no schema id"))?;
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, id);
        Ok(id)
    }

    fn cached(&self, key: &(String, String)) -> Option<u32> {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.get(key).copied()
    }

    fn status_error(&self, what: String, status: u16, reply: &[u8]) -> RegistryError {
        RegistryError::Status {
            url: self.url.clone(),
            what,
            status,
            message: error_message(reply),
        }
    }

    fn transport(&self, what: &str, reason: impl ToString) -> RegistryError {
        RegistryError::Transport {
            url: self.url.clone(),
            what: what.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// One HTTP exchange; returns the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        what: &str,
    ) -> Result<(u16, Vec<u8>), RegistryError> {
        let mut stream = self.connect().map_err(|e| self.transport(what, e))?;
        let head = self.request_head(method, path, body.map_or(0, str::len));
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.unwrap_or_default().as_bytes()));
        sent.map_err(|e| self.transport(what, e))?;
        let reply = read_response(&mut stream).map_err(|e| self.transport(what, e))?;
        parse_response(&reply).map_err(|reason| self.transport(what, reason))
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in self.authority.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(TIMEOUT))?;
                    stream.set_write_timeout(Some(TIMEOUT))?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the host name has no address")))
    }

    fn request_head(&self, method: &str, path: &str, len: usize) -> String {
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: {CONTENT_TYPE}, application/json\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len}\r\nConnection: close\r\nUser-Agent: ordo\r\n",
            self.base_path, self.authority
        );
        if let Some(auth) = &self.auth {
            head.push_str("Authorization: ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

/// The registry's `message` from an error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect())
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Read one response: up to its `Content-Length`, its last chunk, or the end of the stream
/// (so a server that keeps the connection open despite `Connection: close` does not stall).
pub(crate) fn read_response(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(reply);
        }
        reply.extend_from_slice(&buf[..n]);
        if is_complete(&reply) {
            return Ok(reply);
        }
    }
}

fn is_complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
    let body = reply.len() - end - 4;
    if let Some(len) = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body >= len;
    }
    head.contains("chunked") && reply.ends_with(b"\r\n0\r\n\r\n")
}

/// Split an HTTP/1.1 response into status and body (plain, `Content-Length` or chunked).
pub(crate) fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer is not an HTTP response (no end of headers)")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the HTTP headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("the answer has no HTTP status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body ends early")?;
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("a chunk is shorter than its size")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}
