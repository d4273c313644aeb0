//! The PostgreSQL side of `ordo snapshot --table`: the signal table in a publication, and a
//! table's chunks read in primary-key order with `simple_query` (text values, decoded as the
//! initial snapshot decodes them).

use std::sync::Arc;

use ordo_config::PostgresSource;
use ordo_kcop::{Row, TableId};
use serde_json::Value as Json;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::signal::{Request, SignalTable, SnapshotError, sql};
use super::{Backend, Target};
use crate::postgres::catalog::{self, CatalogTable, ident, literal};
use crate::postgres::snapshot::{decode_row, table_schema};
use crate::postgres::types::{PgType, TypeCache};

/// One connection to the source database, with the configured signal table.
pub struct PgBackend {
    client: Client,
    signal: SignalTable,
    publication: String,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// What reading a PostgreSQL table's chunks needs.
#[derive(Debug)]
pub struct PgTable {
    /// The catalog's facts.
    pub table: CatalogTable,
    /// Each column's type, for decoding.
    pub types: Vec<PgType>,
    /// The key columns' SQL types (`format_type`), for the key literals.
    pub key_types: Vec<String>,
}

/// The signal table `cfg` names, or why there is none.
///
/// # Errors
/// [`SnapshotError::Refused`] when `source.postgres.signal_table` is not set.
pub fn signal_table(cfg: &PostgresSource) -> Result<SignalTable, SnapshotError> {
    SignalTable::of(cfg).ok_or_else(|| {
        SnapshotError::Refused(
            "source.postgres.signal_table is not set; set it (for example `signal_table: ordo.signal`) and restart `ordo run`, which watches it for requests".into(),
        )
    })
}

impl Backend for PgBackend {
    type Config = PostgresSource;
    type Table = PgTable;

    async fn connect(cfg: &PostgresSource) -> Result<Self, SnapshotError> {
        let signal = signal_table(cfg)?;
        let client = catalog::connect(cfg)
            .await
            .map_err(|e| SnapshotError::Source(e.into()))?;
        Ok(Self {
            client,
            signal,
            publication: cfg.publication.clone(),
        })
    }

    fn default_chunk_rows(cfg: &PostgresSource) -> u64 {
        cfg.snapshot_chunk_rows
    }

    async fn signal_exists(&mut self) -> Result<bool, SnapshotError> {
        self.signal.exists(&self.client).await
    }

    async fn ensure_signal_table(&mut self) -> Result<bool, SnapshotError> {
        let created = !self.signal.exists(&self.client).await?;
        if created {
            self.client
                .batch_execute(&self.signal.ddl())
                .await
                .map_err(sql(format!("create the signal table {}", self.signal.id)))?;
        }
        if !self
            .signal
            .in_publication(&self.client, &self.publication)
            .await?
        {
            return Err(SnapshotError::Refused(format!(
                "the signal table {} is not in publication `{}`, so the daemon cannot see requests; fix: ALTER PUBLICATION {} ADD TABLE {} (then run ordo snapshot again)",
                self.signal.id,
                self.publication,
                ident(&self.publication),
                self.signal.qualified()
            )));
        }
        Ok(created)
    }

    async fn request(
        &mut self,
        table: &TableId,
        chunk_size: u64,
        rows_estimated: i64,
    ) -> Result<i64, SnapshotError> {
        self.signal
            .request(&self.client, table, chunk_size, rows_estimated)
            .await
    }

    async fn get(&mut self, id: i64) -> Result<Option<Request>, SnapshotError> {
        self.signal.get(&self.client, id).await
    }

    async fn open_requests(&mut self) -> Result<Vec<Request>, SnapshotError> {
        self.signal.open_requests(&self.client).await
    }

    async fn update(&mut self, id: i64, fields: &Json) -> Result<(), SnapshotError> {
        self.signal.update(&self.client, id, fields).await
    }

    async fn watermark(
        &mut self,
        kind: &str,
        token: &str,
        request: i64,
    ) -> Result<(), SnapshotError> {
        self.signal
            .watermark(&self.client, kind, token, request)
            .await
    }

    async fn delete_watermarks(&mut self, request: i64) -> Result<(), SnapshotError> {
        self.signal.delete_watermarks(&self.client, request).await
    }

    async fn target(&mut self, id: &TableId) -> Result<Target<PgTable>, SnapshotError> {
        let t = target(&self.client, id).await?;
        ensure_published(&self.client, id, &self.publication).await?;
        Ok(t)
    }

    async fn read_chunk(
        &mut self,
        t: &Target<PgTable>,
        after: Option<&[String]>,
        limit: u64,
    ) -> Result<(Vec<Row>, Option<Vec<String>>), SnapshotError> {
        read_chunk(&self.client, t, after, limit).await
    }
}

/// Look `id` up and make sure it can be read in key order.
async fn target(client: &Client, id: &TableId) -> Result<Target<PgTable>, SnapshotError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.reltuples::bigint, c.relreplident::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&id.namespace, &id.name],
        )
        .await
        .map_err(sql(format!("look up table {id}")))?;
    let Some(row) = row else {
        return Err(SnapshotError::Refused(format!(
            "table {id} does not exist; name an existing table as schema.table"
        )));
    };
    let table = CatalogTable {
        id: id.clone(),
        oid: row.get(0),
        estimated_rows: row.get(1),
        replica_identity: row.get::<_, String>(2).bytes().next().unwrap_or(b'd'),
        has_pk: true,
    };
    let (schema, types) = table_schema(client, &mut TypeCache::default(), &table)
        .await
        .map_err(|e| SnapshotError::Source(e.into()))?;
    if schema.key.is_empty() {
        return Err(SnapshotError::Refused(format!(
            "table {id} has no primary key; ordo snapshot reads a table in primary-key order; add one (ALTER TABLE {}.{} ADD PRIMARY KEY (...))",
            ident(&id.namespace),
            ident(&id.name)
        )));
    }
    let key_columns: Vec<String> = schema
        .key
        .iter()
        .filter_map(|&i| schema.columns.get(i).map(|c| c.name.clone()))
        .collect();
    let mut key_types = Vec::with_capacity(key_columns.len());
    for c in &key_columns {
        let r = client
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2",
                &[&table.oid, c],
            )
            .await
            .map_err(sql(format!("read the key type of {id}")))?;
        key_types.push(r.get(0));
    }
    let estimated = estimate(client, &table).await?;
    Ok(Target {
        id: id.clone(),
        schema: Arc::new(schema),
        key_columns,
        estimated,
        source: PgTable {
            table,
            types,
            key_types,
        },
    })
}

/// The row count to show progress against: `reltuples`, or a count when the table was never
/// analysed.
async fn estimate(client: &Client, t: &CatalogTable) -> Result<i64, SnapshotError> {
    if t.estimated_rows >= 0 {
        return Ok(t.estimated_rows);
    }
    let q = format!(
        "SELECT count(*) FROM {}.{}",
        ident(&t.id.namespace),
        ident(&t.id.name)
    );
    let row = client
        .query_one(&q, &[])
        .await
        .map_err(sql(format!("count the rows of {}", t.id)))?;
    Ok(row.get(0))
}

async fn ensure_published(
    client: &Client,
    id: &TableId,
    publication: &str,
) -> Result<(), SnapshotError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
            &[&publication, &id.namespace, &id.name],
        )
        .await
        .map_err(sql("look up the publication's tables"))?;
    if row.get(0) {
        Ok(())
    } else {
        Err(SnapshotError::Refused(format!(
            "table {id} is not in publication `{publication}`, so its changes are not captured; add it to the publication first"
        )))
    }
}

async fn read_chunk(
    client: &Client,
    t: &Target<PgTable>,
    after: Option<&[String]>,
    limit: u64,
) -> Result<(Vec<Row>, Option<Vec<String>>), SnapshotError> {
    let cols: Vec<String> = t.schema.columns.iter().map(|c| ident(&c.name)).collect();
    let keys: Vec<String> = t.key_columns.iter().map(|c| ident(c)).collect();
    let filter = match after {
        Some(values) => {
            let lits: Vec<String> = values
                .iter()
                .zip(&t.source.key_types)
                .map(|(v, ty)| format!("{}::{ty}", literal(v)))
                .collect();
            format!(" WHERE ({}) > ({})", keys.join(", "), lits.join(", "))
        }
        None => String::new(),
    };
    let q = format!(
        "SELECT {} FROM {}.{}{filter} ORDER BY {} LIMIT {limit}",
        cols.join(", "),
        ident(&t.id.namespace),
        ident(&t.id.name),
        keys.join(", ")
    );
    let msgs = client
        .simple_query(&q)
        .await
        .map_err(sql(format!("read a chunk of {}", t.id)))?;
    let mut rows = Vec::new();
    let mut last = None;
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push(
                decode_row(&t.schema, &t.source.types, &r)
                    .map_err(|e| SnapshotError::Source(e.into()))?,
            );
            last = Some(r);
        }
    }
    let last_key = last.map(|r| {
        t.schema
            .key
            .iter()
            .map(|&i| r.get(i).unwrap_or_default().to_owned())
            .collect()
    });
    Ok((rows, last_key))
}
