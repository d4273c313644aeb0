//! The initial snapshot: mapped tables read inside the slot's exported snapshot.
//!
//! The slot is created with `SNAPSHOT 'export'`; this connection imports that snapshot in a
//! `REPEATABLE READ` transaction, so it sees exactly the data as of the slot's consistent point,
//! and streaming continues from that point with no gap and no duplicate. Each table is read
//! through a cursor in primary-key order, `snapshot_chunk_rows` rows at a time; each chunk is one
//! transaction of `Read` changes (id `snapshot:<table>:<chunk>`). A last, empty transaction
//! `snapshot:complete` carries the consistent point as its restart position; the chunks before
//! it carry restart position `0/0`, which makes a restarted daemon take the snapshot again
//! instead of streaming from a half-read table (rows read before the crash then appear twice,
//! as `Read` operations, like a restarted Debezium snapshot).

use std::sync::Arc;
use std::time::Instant;

use ordo_kcop::value::Timestamp;
use ordo_kcop::{
    Change, Column, Lsn, Op, Position, SourceEvent, TableSchema, TxnBegin, TxnCommit, Value,
};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::catalog::{self, CatalogError, CatalogTable, ident, literal};
use super::decoder::DecodeError;
use super::types::{self, PgType, TypeCache, decode_text};
use crate::source::Batcher;

/// Decode one row of a text-format query whose columns are `schema`'s, typed `tys`.
///
/// # Errors
/// When a value does not parse as its column's type.
pub(crate) fn decode_row(
    schema: &TableSchema,
    tys: &[PgType],
    r: &tokio_postgres::SimpleQueryRow,
) -> Result<Vec<Value>, DecodeError> {
    let mut row = Vec::with_capacity(tys.len());
    for (c, ty) in tys.iter().enumerate() {
        let v = match r.get(c) {
            None => Value::Null,
            Some(text) => decode_text(ty, text).map_err(|source| DecodeError::Value {
                table: schema.id.to_string(),
                column: schema
                    .columns
                    .get(c)
                    .map_or_else(String::new, |col| col.name.clone()),
                source,
            })?,
        };
        row.push(v);
    }
    Ok(row)
}

fn sql(what: String) -> impl FnOnce(tokio_postgres::Error) -> DecodeError {
    move |source| DecodeError::Catalog(CatalogError::Sql { what, source })
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Read every mapped table inside `snapshot_name` and hand the rows on. Returns the schema of
/// each table as read.
///
/// # Errors
/// On SQL failures, undecodable values, or a closed pipeline.
pub async fn run(
    client: &Client,
    snapshot_name: &str,
    tables: &[CatalogTable],
    chunk_rows: u64,
    consistent_point: u64,
    out: &mut Batcher,
) -> Result<Vec<Arc<TableSchema>>, DecodeError> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            literal(snapshot_name)
        ))
        .await
        .map_err(sql("import the slot's exported snapshot".into()))?;
    let mut types = TypeCache::default();
    let mut schemas = Vec::with_capacity(tables.len());
    for table in tables {
        schemas.push(read_table(client, &mut types, table, chunk_rows.max(1), out).await?);
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(sql("end the snapshot transaction".into()))?;
    let restart = Position::Postgres(Lsn(consistent_point));
    let id: Arc<str> = "snapshot:complete".into();
    out.push(SourceEvent::Begin(TxnBegin {
        id: id.clone(),
        commit_time: Timestamp(now_micros()),
        position: None,
    }))
    .await?;
    out.push(SourceEvent::Commit(TxnCommit {
        id,
        commit_time: Timestamp(now_micros()),
        commit_position: restart.clone(),
        restart_position: restart,
        change_count: 0,
    }))
    .await?;
    out.flush().await?;
    Ok(schemas)
}

/// The schema of `table` as the catalog describes it now (version 1; key = primary key),
/// with each column's type for decoding text values.
///
/// # Errors
/// On SQL failures.
pub(crate) async fn table_schema(
    client: &Client,
    types_cache: &mut TypeCache,
    table: &CatalogTable,
) -> Result<(TableSchema, Vec<PgType>), DecodeError> {
    let rows = client
        .query(
            "SELECT attname::text, atttypid, atttypmod, attnotnull FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table.oid],
        )
        .await
        .map_err(sql(format!("read the columns of {}", table.id)))?;
    let oids: Vec<u32> = rows.iter().map(|r| r.get(1)).collect();
    catalog::resolve_types(client, types_cache, &oids).await?;
    let facts = catalog::column_facts(client, table.oid).await?;
    let mut columns = Vec::new();
    let mut tys = Vec::new();
    for r in &rows {
        let (name, oid, typmod, not_null): (String, u32, i32, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let info = types_cache
            .get(oid)
            .unwrap_or_else(|| types::TypeInfo::other(format!("type {oid}")));
        columns.push(Column {
            type_name: types::display_name(&info, typmod),
            kind: types::column_kind(&info, typmod),
            nullable: !not_null,
            name,
        });
        tys.push(info.ty);
    }
    let key = facts
        .primary_key
        .iter()
        .filter_map(|k| columns.iter().position(|c: &Column| &c.name == k))
        .collect();
    Ok((
        TableSchema {
            id: table.id.clone(),
            version: 1,
            columns,
            key,
        },
        tys,
    ))
}

async fn read_table(
    client: &Client,
    types_cache: &mut TypeCache,
    table: &CatalogTable,
    chunk_rows: u64,
    out: &mut Batcher,
) -> Result<Arc<TableSchema>, DecodeError> {
    crate::metrics::snapshot_progress(&table.id, 0, Some(table.estimated_rows));
    let (schema, tys) = table_schema(client, types_cache, table).await?;
    let schema = Arc::new(schema);
    let cols: Vec<String> = schema.columns.iter().map(|c| ident(&c.name)).collect();
    let order: Vec<String> = schema
        .key
        .iter()
        .filter_map(|&i| cols.get(i).cloned())
        .collect();
    let order_by = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    let qualified = format!("{}.{}", ident(&table.id.namespace), ident(&table.id.name));
    client
        .batch_execute(&format!(
            "DECLARE ordo_snap NO SCROLL CURSOR FOR SELECT {} FROM {qualified}{order_by}",
            cols.join(", ")
        ))
        .await
        .map_err(sql(format!("open a cursor on {}", table.id)))?;
    let started = Instant::now();
    let (mut done, mut chunk) = (0u64, 0u64);
    loop {
        let msgs = client
            .simple_query(&format!("FETCH {chunk_rows} FROM ordo_snap"))
            .await
            .map_err(sql(format!("read {}", table.id)))?;
        let rows: Vec<_> = msgs
            .into_iter()
            .filter_map(|m| {
                if let SimpleQueryMessage::Row(r) = m {
                    Some(r)
                } else {
                    None
                }
            })
            .collect();
        if rows.is_empty() {
            break;
        }
        let id: Arc<str> = format!("snapshot:{}:{chunk}", table.id).into();
        let begin = TxnBegin {
            id: id.clone(),
            commit_time: Timestamp(now_micros()),
            position: None,
        };
        out.push(SourceEvent::Begin(begin)).await?;
        for (i, r) in rows.iter().enumerate() {
            let row = decode_row(&schema, &tys, r)?;
            let change = Change {
                table: schema.clone(),
                op: Op::Read,
                before: None,
                after: Some(row),
                op_index: i as u64,
            };
            out.push(SourceEvent::Change(change)).await?;
        }
        done += rows.len() as u64;
        let zero = Position::Postgres(Lsn(0));
        out.push(SourceEvent::Commit(TxnCommit {
            id,
            commit_time: Timestamp(now_micros()),
            commit_position: zero.clone(),
            restart_position: zero,
            change_count: rows.len() as u64,
        }))
        .await?;
        out.flush().await?;
        chunk += 1;
        tracing::info!(table = %table.id, rows = done, estimated = table.estimated_rows.max(done as i64), "snapshot progress");
        crate::metrics::snapshot_progress(&table.id, done, Some(table.estimated_rows));
    }
    client
        .batch_execute("CLOSE ordo_snap")
        .await
        .map_err(sql(format!("close the cursor on {}", table.id)))?;
    tracing::info!(table = %table.id, rows = done, secs = started.elapsed().as_secs_f64(), "snapshot of table done");
    Ok(schema)
}
