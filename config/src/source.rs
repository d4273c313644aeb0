//! The database ordo captures changes from: PostgreSQL (logical replication with `pgoutput`)
//! or MySQL/MariaDB (the binary log).

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::positions::join_key;
use crate::secret::Secret;
use crate::tls::Tls;
use crate::validate::{Validation, require_positive, require_text};
use crate::yaml::{at_key, with_hint};

/// The source database; the file names exactly one, as `postgres:` or `mysql:`.
#[derive(Debug, Clone, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A PostgreSQL server, read through a logical replication slot.
    Postgres(PostgresSource),
    /// A MySQL or MariaDB server, read as a replica of its binary log.
    Mysql(MysqlSource),
}

/// Reading changes from PostgreSQL.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// Server host name or address. Default `localhost`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port. Default 5432.
    #[serde(default = "default_postgres_port")]
    pub port: u16,
    /// Role to connect as; it needs the `REPLICATION` attribute.
    pub user: String,
    /// The role's password, if the server asks for one.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Database whose changes are captured.
    pub database: String,
    /// TLS for the connection. Default mode `prefer`.
    #[serde(default)]
    pub tls: Tls,
    /// Replication slot name; created when missing. Default `ordo`.
    #[serde(default = "default_name")]
    pub slot: String,
    /// Publication that selects the captured tables. Default `ordo`.
    #[serde(default = "default_name")]
    pub publication: String,
    /// Create the publication (`FOR ALL TABLES`) when it does not exist. Default true.
    #[serde(default = "default_true")]
    pub create_publication: bool,
    /// `pgoutput` protocol version, 1 to 4. Default 2.
    #[serde(default = "default_protocol_version")]
    pub protocol_version: u8,
    /// Receive large transactions while they are in progress (protocol 2 or later).
    /// Default true.
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// Whether to copy existing rows before streaming changes. Default `initial`.
    #[serde(default)]
    pub snapshot: Snapshot,
    /// Rows read per query while snapshotting. Default 10000.
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: u64,
    /// Directory for streamed transactions too large to keep in memory. Default
    /// `ordo-spill` in the system's temporary directory.
    #[serde(default = "default_spill_dir")]
    pub spill_dir: PathBuf,
    /// How often to report the flushed position to the server, in milliseconds.
    /// Default 10000.
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    /// How often to write a heartbeat so the slot advances on idle databases, in
    /// milliseconds; 0 disables it. Default 60000.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// The signal table `schema.table` through which `ordo snapshot --table` asks the running
    /// daemon for an incremental re-snapshot; its changes are never published. Default: none
    /// (`ordo snapshot` is refused). See docs/operations.md for its `CREATE TABLE`.
    #[serde(default)]
    pub signal_table: Option<String>,
}

/// Reading changes from MySQL or MariaDB.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlSource {
    /// Which server it is; GTIDs differ between them. Default `mariadb`.
    #[serde(default)]
    pub flavor: MysqlFlavor,
    /// Server host name or address. Default `localhost`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port. Default 3306.
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    /// User to connect as; it needs `REPLICATION SLAVE` and `REPLICATION CLIENT`.
    pub user: String,
    /// The user's password, if any.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS for the connection. Default mode `prefer`.
    #[serde(default)]
    pub tls: Tls,
    /// Replica server id ordo uses; unique among the server's replicas, 1 to 4294967295.
    pub server_id: u32,
    /// Whether to copy existing rows before streaming changes. Default `initial`.
    #[serde(default)]
    pub snapshot: Snapshot,
    /// Rows read per query while snapshotting. Default 10000.
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: u64,
    /// Databases of interest, for information and snapshots; mappings decide what is
    /// published. Default: all.
    #[serde(default)]
    pub databases: Vec<String>,
    /// The signal table (`database.table`) through which `ordo snapshot --table` talks to the
    /// daemon for an incremental re-snapshot; its changes are never published. Default: none
    /// (`ordo snapshot` is refused). See docs/operations.md for its `CREATE TABLE`.
    #[serde(default)]
    pub signal_table: Option<String>,
}

/// Which MySQL-compatible server the source is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MysqlFlavor {
    /// MariaDB (domain-server-sequence GTIDs).
    #[default]
    Mariadb,
    /// Oracle MySQL (uuid:sequence GTIDs).
    Mysql,
}

/// Whether existing rows are copied before changes are streamed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Snapshot {
    /// Copy existing rows on first start, then stream changes.
    #[default]
    Initial,
    /// Stream changes only.
    Never,
    /// Copy existing rows, then stop.
    InitialOnly,
}

fn default_host() -> String {
    String::from("localhost")
}

fn default_postgres_port() -> u16 {
    5432
}

fn default_mysql_port() -> u16 {
    3306
}

fn default_name() -> String {
    String::from("ordo")
}

fn default_true() -> bool {
    true
}

fn default_protocol_version() -> u8 {
    2
}

fn default_snapshot_chunk_rows() -> u64 {
    10_000
}

fn default_spill_dir() -> PathBuf {
    std::env::temp_dir().join("ordo-spill")
}

fn default_status_interval_ms() -> u64 {
    10_000
}

fn default_heartbeat_interval_ms() -> u64 {
    60_000
}

impl Source {
    pub(crate) fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        match self {
            Source::Postgres(postgres) => postgres.validate(cx, &join_key(path, "postgres")),
            Source::Mysql(mysql) => mysql.validate(cx, &join_key(path, "mysql")),
        }
    }
}

impl PostgresSource {
    fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        let at = |field: &str| join_key(path, field);
        require_text(cx, &at("host"), &self.host, "give the server's host name");
        require_positive(cx, &at("port"), u64::from(self.port));
        require_text(cx, &at("user"), &self.user, "give a role with REPLICATION");
        require_text(cx, &at("database"), &self.database, "name the database");
        if let Some(password) = &mut self.password {
            password.resolve(cx, &at("password"));
        }
        self.tls.validate(cx, &at("tls"));
        validate_slot_name(cx, &at("slot"), &self.slot);
        validate_publication_name(cx, &at("publication"), &self.publication);
        self.validate_protocol(cx, path);
        require_positive(cx, &at("snapshot_chunk_rows"), self.snapshot_chunk_rows);
        require_positive(cx, &at("status_interval_ms"), self.status_interval_ms);
        if let Some(table) = &self.signal_table {
            validate_signal_table(cx, &at("signal_table"), table, "schema");
        }
    }

    /// The signal table as (schema, table), when it is set and well formed.
    pub fn signal_table_parts(&self) -> Option<(&str, &str)> {
        split_qualified(self.signal_table.as_deref()?)
    }

    fn validate_protocol(&self, cx: &mut Validation<'_>, path: &str) {
        let version_path = join_key(path, "protocol_version");
        if !(1..=4).contains(&self.protocol_version) {
            cx.error(
                &version_path,
                format!(
                    "pgoutput protocol version {} does not exist",
                    self.protocol_version
                ),
                "use 1, 2, 3 or 4 (2 needs PostgreSQL 14, 3 and 4 need 15 and 16)",
            );
        } else if self.streaming && self.protocol_version < 2 {
            let streaming_path = join_key(path, "streaming");
            let at = if cx.is_written(&streaming_path) {
                streaming_path
            } else {
                version_path
            };
            cx.error(
                &at,
                "streaming needs pgoutput protocol_version 2 or later",
                "set `protocol_version: 2` (PostgreSQL 14 or later) or `streaming: false`",
            );
        }
    }
}

/// Replication slot names are limited by PostgreSQL to `[a-z0-9_]{1,63}`.
fn validate_slot_name(cx: &mut Validation<'_>, path: &str, slot: &str) {
    let valid_chars = slot
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if slot.is_empty() || slot.len() > 63 || !valid_chars {
        cx.error(
            path,
            format!("`{slot}` is not a valid replication slot name"),
            "use 1 to 63 lowercase letters, digits and `_`",
        );
    }
}

/// `schema.table`, each part non-empty and without another `.`.
fn split_qualified(name: &str) -> Option<(&str, &str)> {
    let (schema, table) = name.split_once('.')?;
    let ok = |p: &str| !p.is_empty() && !p.contains('.') && p.len() <= 63;
    (ok(schema) && ok(table)).then_some((schema, table))
}

/// `qualifier` is what names the table's namespace: `schema` or `database`.
fn validate_signal_table(cx: &mut Validation<'_>, path: &str, table: &str, qualifier: &str) {
    if split_qualified(table).is_none() {
        cx.error(
            path,
            format!("`{table}` is not a {qualifier}-qualified table name"),
            format!("write it as `{qualifier}.table`, for example `ordo.signal`"),
        );
    }
}

fn validate_publication_name(cx: &mut Validation<'_>, path: &str, publication: &str) {
    if publication.is_empty() || publication.len() > 63 {
        cx.error(
            path,
            format!("`{publication}` is not a valid publication name"),
            "use 1 to 63 characters",
        );
    }
}

impl MysqlSource {
    fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        let at = |field: &str| join_key(path, field);
        require_text(cx, &at("host"), &self.host, "give the server's host name");
        require_positive(cx, &at("port"), u64::from(self.port));
        require_text(
            cx,
            &at("user"),
            &self.user,
            "give a user with replication grants",
        );
        if let Some(password) = &mut self.password {
            password.resolve(cx, &at("password"));
        }
        self.tls.validate(cx, &at("tls"));
        if self.server_id == 0 {
            cx.error(
                &at("server_id"),
                "server_id 0 is not allowed for a replica",
                "pick a number from 1 to 4294967295 that no other replica of this server uses",
            );
        }
        require_positive(cx, &at("snapshot_chunk_rows"), self.snapshot_chunk_rows);
        for (index, database) in self.databases.iter().enumerate() {
            let item = crate::positions::join_index(&at("databases"), index);
            require_text(cx, &item, database, "name a database or remove the entry");
        }
        if let Some(table) = &self.signal_table {
            validate_signal_table(cx, &at("signal_table"), table, "database");
        }
    }

    /// The signal table as (database, table), when it is set and well formed.
    pub fn signal_table_parts(&self) -> Option<(&str, &str)> {
        split_qualified(self.signal_table.as_deref()?)
    }
}

/// The key naming the source kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    Postgres,
    Mysql,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
        })
    }
}

/// Deserializes `{ postgres: ... }` or `{ mysql: ... }`, with clear errors for neither or both.
struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = Source;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with one key, `postgres` or `mysql`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
        let Some(kind) = map.next_key::<SourceKind>()? else {
            return Err(de::Error::custom(with_hint(
                "no source is given",
                "add `postgres:` or `mysql:` with its settings",
            )));
        };
        let source = match kind {
            SourceKind::Postgres => Source::Postgres(map.next_value()?),
            SourceKind::Mysql => Source::Mysql(map.next_value()?),
        };
        if let Some(other) = map.next_key::<SourceKind>()? {
            return Err(de::Error::custom(at_key(
                &format!("both `{kind}` and `{other}` are given; a daemon reads one source"),
                "keep one of them, and run a second daemon with its own file for the other",
                &other.to_string(),
            )));
        }
        Ok(source)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SourceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::split_qualified;

    fn parse(signal: &str) -> Result<crate::Config, String> {
        let text = format!(
            "source:\n  postgres:\n    user: ordo\n    database: shop\n    signal_table: {signal}\nkafka:\n  bootstrap_servers: \"127.0.0.1:9092\"\n  commit_topic: ordo.commits\nmappings:\n  - tables: [\"public.orders\"]\n    outputs:\n      - topic: orders\n        format: json\n"
        );
        crate::parse_with_env(&text, "ordo.yaml", |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn signal_table_is_schema_qualified() {
        assert_eq!(split_qualified("ordo.signal"), Some(("ordo", "signal")));
        assert_eq!(split_qualified("signal"), None);
        assert_eq!(split_qualified("a.b.c"), None);
        assert_eq!(split_qualified(".b"), None);
        assert!(parse("ordo.signal").is_ok());
        let err = parse("signal").expect_err("an unqualified name is refused");
        assert!(err.contains("source.postgres.signal_table"), "{err}");
        assert!(err.contains("ordo.yaml:5:19"), "{err}");
        assert!(err.contains("schema.table"), "{err}");
    }
}
