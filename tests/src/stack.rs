//! The test stack of `scripts/stack`: where its servers are, and helpers for tests that use them.
//!
//! `scripts/stack up` starts PostgreSQL 15, MariaDB and the broker nisshi on 127.0.0.1 and writes
//! their addresses as `export NAME='value'` lines to `target/stack/env`. [`stack`] reads each
//! variable from the environment first (so `eval "$(scripts/stack env)"` or CI can point the
//! tests elsewhere), else from that file (`$ORDO_STACK_DIR/env` when `ORDO_STACK_DIR` is set).
//! Tests share the servers, so each creates its own uniquely named databases, slots and topics
//! with [`unique_name`], [`pg_create_database`] and [`mysql_create_database`].

use std::{
    collections::HashMap,
    future::Future,
    io,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use rand::Rng as _;

const NOT_RUNNING: &str = "the test stack is not running: run `scripts/stack up` (or scripts/test, which does everything)";

/// The servers of the running test stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// URL of the `postgres` database as the superuser `ordo`, over TCP with a password.
    pub pg_url: String,
    /// PostgreSQL's host (`127.0.0.1`).
    pub pg_host: String,
    /// PostgreSQL's port (55432).
    pub pg_port: u16,
    /// `mysql://ordo:ordo@host:port` (no database); `ordo` has all privileges.
    pub mysql_url: String,
    /// MariaDB's host (`127.0.0.1`).
    pub mysql_host: String,
    /// MariaDB's port (53306).
    pub mysql_port: u16,
    /// The broker's bootstrap address, `host:port`.
    pub kafka: String,
    /// The `nisshi` binary, for tests that start brokers of their own; `None` when unknown.
    pub nisshi: Option<PathBuf>,
    /// The stack's directory (`target/stack`): data, sockets and server logs.
    pub dir: PathBuf,
}

/// The running test stack. Panics when it isn't configured: tests must never pass silently
/// without their servers.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let dir = std::env::var_os("ORDO_STACK_DIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(default_stack_dir, PathBuf::from);
        let file = dir.join("env");
        let from_file = match std::fs::read_to_string(&file) {
            Ok(text) => parse_env_file(&text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => panic!("{NOT_RUNNING} (can't read {}: {error})", file.display()),
        };
        Stack::from_lookup(dir.clone(), |name| {
            std::env::var(name)
                .ok()
                .or_else(|| from_file.get(name).cloned())
                .filter(|value| !value.is_empty())
        })
        .unwrap_or_else(|missing| {
            panic!(
                "{NOT_RUNNING} ({missing} is neither in the environment nor in {})",
                file.display()
            )
        })
    })
}

impl Stack {
    /// Builds the stack from `lookup` (a variable's value, `None` when unset); the error is the
    /// name of the first variable that is missing.
    fn from_lookup(dir: PathBuf, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let required = |name: &str| lookup(name).ok_or_else(|| name.to_owned());
        let port =
            |name: &str| {
                let value = required(name)?;
                Ok::<u16, String>(value.parse().unwrap_or_else(|error| {
                    panic!("{name}={value:?} is not a port number: {error}")
                }))
            };
        Ok(Self {
            pg_url: required("ORDO_TEST_PG_URL")?,
            pg_host: required("ORDO_TEST_PG_HOST")?,
            pg_port: port("ORDO_TEST_PG_PORT")?,
            mysql_url: required("ORDO_TEST_MYSQL_URL")?,
            mysql_host: required("ORDO_TEST_MYSQL_HOST")?,
            mysql_port: port("ORDO_TEST_MYSQL_PORT")?,
            kafka: required("ORDO_TEST_KAFKA")?,
            nisshi: lookup("ORDO_TEST_NISSHI").map(PathBuf::from),
            dir: lookup("ORDO_STACK_DIR").map_or(dir, PathBuf::from),
        })
    }
}

/// `<repo>/target/stack`, where `scripts/stack` keeps its servers.
fn default_stack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the ordo-tests crate is in a subdirectory of the repository")
        .join("target")
        .join("stack")
}

/// Parses the `export NAME='value'` lines of `target/stack/env`; other lines are ignored.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_prefix("export ")?.split_once('=')?;
            let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                // `scripts/stack` writes a quote inside a value as '\''.
                Some(quoted) => quoted.replace(r"'\''", "'"),
                None => value.to_owned(),
            };
            Some((name.trim().to_owned(), value))
        })
        .collect()
}

/// `prefix` + `_` + 12 random lowercase letters and digits: a name that is valid unquoted as a
/// PostgreSQL or MariaDB database name, a replication slot name and a Kafka topic.
///
/// `prefix` must start with a lowercase letter, hold only lowercase letters, digits and `_`, and
/// be at most 50 characters (PostgreSQL names have at most 63).
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    assert!(
        prefix.len() <= 50
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "unique_name: the prefix {prefix:?} must match [a-z][a-z0-9_]{{0,49}}"
    );
    let mut rng = rand::rng();
    let suffix: String = (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}_{suffix}")
}

/// Connects to PostgreSQL at `url` (without TLS) and drives the connection on a spawned task.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to PostgreSQL at {url}: {error}"));
    drop(tokio::spawn(async move {
        // The error, if any, also fails the client's next request, which reports it.
        _ = connection.await;
    }));
    client
}

/// Creates a PostgreSQL database with a [`unique_name`] and returns its name and the URL to it
/// (the stack's URL, as the superuser `ordo`, with its database replaced).
pub async fn pg_create_database(prefix: &str) -> (String, String) {
    let name = unique_name(prefix);
    let client = pg_connect(&stack().pg_url).await;
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    let url = url_with_database(&stack().pg_url, &name);
    (name, url)
}

/// `url` with its path (the database) replaced by `/database`; its query, if any, is kept.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates a MariaDB database with a [`unique_name`] and returns its name.
pub async fn mysql_create_database(prefix: &str) -> String {
    use mysql_async::prelude::Queryable as _;

    let name = unique_name(prefix);
    let url = &stack().mysql_url;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|error| panic!("connecting to MariaDB at {url}: {error}"));
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    conn.disconnect()
        .await
        .unwrap_or_else(|error| panic!("disconnecting from MariaDB: {error}"));
    name
}

/// Calls `f` every 50 ms until it returns `Some`, and returns that value. Panics, naming `what`,
/// when `deadline` passes first.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if started.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to 60 s until a daemon streams from the replication slot `slot` on the server `c`
/// is connected to: a daemon with `snapshot: never` captures the changes made after that.
/// (A slot shows in `pg_replication_slots` while it is still being created, before its
/// consistent point: a transaction committed then is not decoded. `active` comes after.)
pub async fn pg_wait_for_slot(c: &tokio_postgres::Client, slot: &str) {
    wait_until(
        &format!("the replication slot {slot}"),
        Duration::from_secs(60),
        || async move {
            let rows = c
                .query(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                    &[&slot],
                )
                .await
                .unwrap_or_else(|e| panic!("looking for the slot {slot}: {e}"));
            (!rows.is_empty()).then_some(())
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_file_of_scripts_stack() {
        let vars = parse_env_file(
            "# comment\nexport ORDO_TEST_KAFKA='127.0.0.1:59092'\nexport ORDO_STACK_DIR='/a b/it'\\''s'\nexport EMPTY=''\nnoise\n",
        );
        assert_eq!(vars["ORDO_TEST_KAFKA"], "127.0.0.1:59092");
        assert_eq!(vars["ORDO_STACK_DIR"], "/a b/it's");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn missing_variables_are_named() {
        let error = Stack::from_lookup(PathBuf::from("/x"), |_| None).unwrap_err();
        assert_eq!(error, "ORDO_TEST_PG_URL");
    }

    #[test]
    fn unique_names_are_valid_identifiers() {
        let a = unique_name("smoke_test1");
        let b = unique_name("smoke_test1");
        assert_ne!(a, b);
        assert!(a.starts_with("smoke_test1_"));
        assert_eq!(a.len(), "smoke_test1_".len() + 12);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    #[should_panic(expected = "must match")]
    fn unique_name_rejects_uppercase() {
        _ = unique_name("Smoke");
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            url_with_database("postgres://ordo:ordo@127.0.0.1:55432/postgres", "db1"),
            "postgres://ordo:ordo@127.0.0.1:55432/db1"
        );
        assert_eq!(
            url_with_database("postgres://u@h:1", "db1"),
            "postgres://u@h:1/db1"
        );
        assert_eq!(
            url_with_database("postgres://u@h:1/p?sslmode=disable", "db1"),
            "postgres://u@h:1/db1?sslmode=disable"
        );
    }
}
