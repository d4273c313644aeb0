//! An in-test stand-in for a Confluent schema registry: a real Confluent registry cannot run
//! on this project's machines, so tests talk HTTP/1.1 to this small server, which implements
//! the documented REST endpoints ordo and its consumers use:
//! - `POST /subjects/{subject}/versions` with `{"schema": "..."}` answers `{"id": n}`; ids are
//!   global per schema text, as in the real registry. A subject marked with
//!   [`TestRegistry::reject_changes`] answers HTTP 409 with Confluent's error body for any
//!   schema that differs from its latest version.
//! - `GET /schemas/ids/{id}` answers `{"schema": "..."}`, or 404 with error code 40403.
//! - With credentials set, requests without the matching basic `Authorization` get 401.
//!
//! Self-contained (std and serde_json only) so the end-to-end suite can include it by path.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request the server received.
#[derive(Debug, Clone)]
pub(crate) struct SeenRequest {
    /// `POST`, `GET`.
    pub(crate) method: String,
    /// Path, e.g. `/subjects/t-value/versions`.
    pub(crate) path: String,
    /// The `Authorization` header, if any.
    pub(crate) authorization: Option<String>,
    /// Body.
    pub(crate) body: String,
}

#[derive(Debug, Default)]
struct State {
    /// Schema texts; id = index + 1.
    schemas: Vec<String>,
    /// Subject -> ids of its versions, in order.
    subjects: HashMap<String, Vec<u32>>,
    strict: HashSet<String>,
    requests: Vec<SeenRequest>,
    /// Expected `Authorization` header value.
    auth: Option<String>,
}

/// A running test registry on 127.0.0.1; it serves until the test process ends.
#[derive(Debug, Clone)]
pub(crate) struct TestRegistry {
    /// `http://127.0.0.1:port`.
    pub(crate) url: String,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Start a registry on a free loopback port.
    pub(crate) fn start() -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test registry");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(State::default()));
        let served = state.clone();
        std::thread::Builder::new()
            .name("test-registry".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    serve(stream, &served);
                }
            })
            .expect("spawn the test registry");
        TestRegistry { url, state }
    }

    /// Require HTTP basic authentication with these credentials (`Basic base64(user:pass)`).
    pub(crate) fn require_auth(&self, header_value: &str) {
        self.state.lock().unwrap().auth = Some(header_value.to_owned());
    }

    /// Answer 409 for any schema under `subject` that differs from its latest version.
    pub(crate) fn reject_changes(&self, subject: &str) {
        self.state.lock().unwrap().strict.insert(subject.to_owned());
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The schema with id `id`.
    pub(crate) fn schema(&self, id: u32) -> Option<String> {
        let state = self.state.lock().unwrap();
        state.schemas.get(id.checked_sub(1)? as usize).cloned()
    }

    /// Ids registered under `subject`, in order.
    pub(crate) fn versions(&self, subject: &str) -> Vec<u32> {
        let state = self.state.lock().unwrap();
        state.subjects.get(subject).cloned().unwrap_or_default()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let (status, body) = answer(&request, &mut state.lock().unwrap());
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = reader.get_mut().write_all(reply.as_bytes());
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<SeenRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mut len, mut authorization) = (0usize, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => len = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(SeenRequest {
        method,
        path,
        authorization,
        body: String::from_utf8(body).ok()?,
    })
}

fn error(code: u32, message: &str) -> String {
    serde_json::json!({ "error_code": code, "message": message }).to_string()
}

fn answer(request: &SeenRequest, state: &mut State) -> (u16, String) {
    state.requests.push(request.clone());
    if state.auth.is_some() && state.auth != request.authorization {
        return (401, error(40101, "Unauthorized"));
    }
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => register(state, subject, &request.body),
        ("GET", ["schemas", "ids", id]) => {
            let found = id
                .parse::<usize>()
                .ok()
                .and_then(|id| state.schemas.get(id.checked_sub(1)?));
            match found {
                Some(schema) => (200, serde_json::json!({ "schema": schema }).to_string()),
                None => (404, error(40403, "Schema not found")),
            }
        }
        _ => (404, error(404, "HTTP 404 Not Found")),
    }
}

fn register(state: &mut State, subject: &str, body: &str) -> (u16, String) {
    let Some(schema) = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("schema")?.as_str().map(str::to_owned))
    else {
        return (422, error(42201, "Invalid schema"));
    };
    let latest = state
        .subjects
        .get(subject)
        .and_then(|v| v.last())
        .and_then(|id| state.schemas.get(*id as usize - 1));
    if state.strict.contains(subject) && latest.is_some_and(|l| *l != schema) {
        let message = format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\""
        );
        return (409, error(409, &message));
    }
    let id = match state.schemas.iter().position(|s| *s == schema) {
        Some(i) => i as u32 + 1,
        None => {
            state.schemas.push(schema);
            state.schemas.len() as u32
        }
    };
    let versions = state.subjects.entry(subject.to_owned()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (200, serde_json::json!({ "id": id }).to_string())
}
