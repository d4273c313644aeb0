//! The signal table: its DDL, requests and their progress, watermark rows, and the checks
//! `ordo check` runs on it.
//!
//! One row per request (`kind = 'snapshot'`); its `data` holds the request (`table`,
//! `chunk_size`) and the progress the daemon writes back (`state`, `rows_done`,
//! `rows_estimated`, `last_key`, `chunks`, `error`). Watermark rows (`window-open`,
//! `window-close`, `data.token`, `data.request`) live only while their chunk is read.

use ordo_config::PostgresSource;
use ordo_kcop::TableId;
use serde_json::{Value as Json, json};
use tokio_postgres::Client;

use super::kinds;
use crate::mysql::Problem;
use crate::postgres::catalog::ident;

/// A failure talking to the signal table or reading the table to snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A statement failed.
    #[error("postgresql: {what}: {source}")]
    Sql {
        /// What ordo was doing.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The request cannot be carried out as asked; the message says how to fix it.
    #[error("{0}")]
    Refused(String),
    /// Connecting or reading rows failed.
    #[error(transparent)]
    Source(#[from] crate::postgres::source::PgSourceError),
    /// Talking to the MariaDB/MySQL source failed.
    #[error(transparent)]
    MysqlSource(crate::mysql::MysqlSourceError),
    /// A chunk's closing watermark did not come through the replication stream in time.
    #[error(
        "the closing watermark of chunk {0} did not arrive through the replication stream in time; reading the chunk again"
    )]
    Stalled(String),
    /// The daemon marked the request failed, for this reason.
    #[error("the daemon could not take the snapshot: {0}")]
    Failed(String),
}

impl SnapshotError {
    /// Whether trying again later may help (the connection was lost).
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Sql { source, .. } => source.is_closed(),
            SnapshotError::Refused(_) | SnapshotError::Failed(_) => false,
            SnapshotError::Stalled(_) => true,
            SnapshotError::MysqlSource(e) => e.is_transient(),
            SnapshotError::Source(e) => !matches!(
                e,
                crate::postgres::source::PgSourceError::Decode(
                    crate::postgres::decoder::DecodeError::Value { .. }
                )
            ),
        }
    }
}

pub(crate) fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Sql { what, source }
}

/// The configured signal table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTable {
    /// Its name.
    pub id: TableId,
}

/// A request row.
#[derive(Debug, Clone)]
pub struct Request {
    /// The row's id.
    pub id: i64,
    /// Its `data`.
    pub data: Json,
}

impl Request {
    /// A string field of `data`.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.data.get(field).and_then(Json::as_str)
    }

    /// A number field of `data`.
    pub fn number(&self, field: &str) -> Option<i64> {
        self.data.get(field).and_then(Json::as_i64)
    }
}

impl SignalTable {
    /// The signal table `cfg` names, if any.
    pub fn of(cfg: &PostgresSource) -> Option<Self> {
        let (schema, name) = cfg.signal_table_parts()?;
        Some(Self {
            id: TableId::new(schema, name),
        })
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.id.namespace), ident(&self.id.name))
    }

    /// The statements that create the table (and its schema).
    pub fn ddl(&self) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};\n\
             CREATE TABLE IF NOT EXISTS {table} (\n  \
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  \
               kind text NOT NULL,\n  \
               data jsonb NOT NULL DEFAULT '{{}}',\n  \
               created timestamptz NOT NULL DEFAULT now(),\n  \
               updated timestamptz NOT NULL DEFAULT now()\n);",
            schema = ident(&self.id.namespace),
            table = self.qualified()
        )
    }

    /// Whether the table exists.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn exists(&self, client: &Client) -> Result<bool, SnapshotError> {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.qualified()])
            .await
            .map_err(sql("look up the signal table"))?;
        Ok(row.get(0))
    }

    /// Whether the table is in `publication`.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn in_publication(
        &self,
        client: &Client,
        publication: &str,
    ) -> Result<bool, SnapshotError> {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_publication_tables \
                 WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
                &[&publication, &self.id.namespace, &self.id.name],
            )
            .await
            .map_err(sql("look up the publication's tables"))?;
        Ok(row.get(0))
    }

    /// Insert a request to snapshot `table` in chunks of `chunk_size` rows; returns its id.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn request(
        &self,
        client: &Client,
        table: &TableId,
        chunk_size: u64,
        rows_estimated: i64,
    ) -> Result<i64, SnapshotError> {
        let data = json!({
            "table": table.to_string(),
            "chunk_size": chunk_size,
            "state": "pending",
            "rows_done": 0,
            "rows_estimated": rows_estimated,
        });
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO {} (kind, data) VALUES ($1, $2::text::jsonb) RETURNING id",
                    self.qualified()
                ),
                &[&kinds::SNAPSHOT, &data.to_string()],
            )
            .await
            .map_err(sql(format!("insert a request into {}", self.qualified())))?;
        Ok(row.get(0))
    }

    /// The request `id`, if it exists.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn get(&self, client: &Client, id: i64) -> Result<Option<Request>, SnapshotError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT id, data::text FROM {} WHERE id = $1 AND kind = $2",
                    self.qualified()
                ),
                &[&id, &kinds::SNAPSHOT],
            )
            .await
            .map_err(sql("read a snapshot request"))?;
        Ok(row.map(|r| to_request(r.get(0), r.get(1))))
    }

    /// Requests not yet done or failed, oldest first.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn open_requests(&self, client: &Client) -> Result<Vec<Request>, SnapshotError> {
        let rows = client
            .query(
                &format!(
                    "SELECT id, data::text FROM {} WHERE kind = $1 \
                     AND coalesce(data->>'state', 'pending') NOT IN ('done', 'failed') ORDER BY id",
                    self.qualified()
                ),
                &[&kinds::SNAPSHOT],
            )
            .await
            .map_err(sql("list the snapshot requests"))?;
        Ok(rows
            .iter()
            .map(|r| to_request(r.get(0), r.get(1)))
            .collect())
    }

    /// Merge `fields` into request `id`'s data.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn update(
        &self,
        client: &Client,
        id: i64,
        fields: &Json,
    ) -> Result<(), SnapshotError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET data = data || $2::text::jsonb, updated = now() WHERE id = $1",
                    self.qualified()
                ),
                &[&id, &fields.to_string()],
            )
            .await
            .map_err(sql("record snapshot progress"))?;
        Ok(())
    }

    /// Insert a watermark row of `kind` for chunk `token` of request `request`.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn watermark(
        &self,
        client: &Client,
        kind: &str,
        token: &str,
        request: i64,
    ) -> Result<(), SnapshotError> {
        let data = json!({ "token": token, "request": request.to_string() });
        client
            .execute(
                &format!(
                    "INSERT INTO {} (kind, data) VALUES ($1, $2::text::jsonb)",
                    self.qualified()
                ),
                &[&kind, &data.to_string()],
            )
            .await
            .map_err(sql(format!("insert a {kind} watermark")))?;
        Ok(())
    }

    /// Delete the watermark rows of request `request`.
    ///
    /// # Errors
    /// On SQL failures.
    pub async fn delete_watermarks(
        &self,
        client: &Client,
        request: i64,
    ) -> Result<(), SnapshotError> {
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE kind IN ($1, $2) AND data->>'request' = $3",
                    self.qualified()
                ),
                &[
                    &kinds::WINDOW_OPEN,
                    &kinds::WINDOW_CLOSE,
                    &request.to_string(),
                ],
            )
            .await
            .map_err(sql("delete old watermarks"))?;
        Ok(())
    }

    /// The problems `ordo check` reports: the table is missing, not in the publication, or not
    /// writable by the configured role.
    pub async fn check(&self, client: &Client, cfg: &PostgresSource) -> Vec<Problem> {
        let what = format!("the signal table {}", self.id);
        let problem = |found: String, fix: String| Problem {
            what: what.clone(),
            found,
            fix,
        };
        match self.exists(client).await {
            Ok(true) => {}
            Ok(false) => {
                return vec![problem(
                    "missing".into(),
                    format!(
                        "create it (ordo snapshot does so too): {}",
                        self.ddl().replace('\n', " ")
                    ),
                )];
            }
            Err(e) => {
                return vec![problem(
                    format!("not readable ({e})"),
                    "check the role's privileges".into(),
                )];
            }
        }
        let mut out = Vec::new();
        match self.in_publication(client, &cfg.publication).await {
            Ok(true) => {}
            Ok(false) => out.push(problem(
                format!("not in publication `{}`", cfg.publication),
                format!(
                    "ALTER PUBLICATION {} ADD TABLE {}",
                    ident(&cfg.publication),
                    self.qualified()
                ),
            )),
            Err(e) => out.push(problem(
                format!("not checkable ({e})"),
                "check the role's privileges".into(),
            )),
        }
        let writable = client
            .query_one(
                "SELECT has_table_privilege($1, 'INSERT, UPDATE, DELETE')",
                &[&self.qualified()],
            )
            .await
            .map(|r| r.get::<_, bool>(0));
        if !matches!(writable, Ok(true)) {
            out.push(problem(
                format!("not writable by role `{}`", cfg.user),
                format!(
                    "GRANT INSERT, UPDATE, DELETE, SELECT ON {} TO {}",
                    self.qualified(),
                    ident(&cfg.user)
                ),
            ));
        }
        out
    }
}

/// `ordo check`'s problems with the configured signal table (none when none is set).
pub async fn check_source(cfg: &PostgresSource) -> Vec<Problem> {
    let Some(signal) = SignalTable::of(cfg) else {
        return Vec::new();
    };
    match crate::postgres::catalog::connect(cfg).await {
        Ok(client) => signal.check(&client, cfg).await,
        // The source check reports the connection itself.
        Err(_) => Vec::new(),
    }
}

fn to_request(id: i64, data: String) -> Request {
    Request {
        id,
        data: serde_json::from_str(&data).unwrap_or(Json::Null),
    }
}
