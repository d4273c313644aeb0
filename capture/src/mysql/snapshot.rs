//! The initial snapshot: every mapped table's rows as of one binlog position.
//!
//! One connection runs `START TRANSACTION WITH CONSISTENT SNAPSHOT` under REPEATABLE READ;
//! MariaDB's `binlog_snapshot_file`/`_position` status then name the binlog position of that
//! very snapshot, and `BINLOG_GTID_POS` turns it into the GTID position streaming starts from.
//! (`@@gtid_binlog_pos` read afterwards may already be ahead.) Only InnoDB tables are
//! consistent this way.
//!
//! Rows are read in primary-key order and handed on as `Read` changes in transactions of
//! `snapshot_chunk_rows` rows, ids `snapshot:<db.table>:<chunk>`, committed at the snapshot's
//! position.
//!
//! # Resumption
//! Every chunk but the very last one carries a restart position whose file is marked
//! `(snapshot)`: resuming from it takes the snapshot again from scratch (a crash in the middle
//! of a snapshot repeats it; the consumer sees the already published rows twice, as `Read`s).
//! The last chunk carries the real position, so once it is durable a restart streams on.

use futures::Future;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as MyValue};
use ordo_config::MysqlSource;
use ordo_kcop::value::parse_uuid;
use ordo_kcop::{
    BinlogCoord, Change, ColumnKind, GtidSet, Op, Position, SourceEvent, Time, Timestamp, TxnBegin,
    TxnCommit, Value,
};

use super::binlog::{connect, sql_err};
use super::catalog::{self, CatalogTable};
use super::charset::Charset;
use super::error::MysqlSourceError;
use super::schema::SchemaRegistry;
use super::values::{bits_value, date_value, datetime_value};
use crate::source::{Batcher, SourceContext};

/// The file-name prefix that marks a restart position inside an unfinished snapshot.
pub(crate) const MARK: &str = "(snapshot)";

/// Whether a restart position was taken in the middle of a snapshot.
pub(crate) fn is_unfinished(coord: &BinlogCoord) -> bool {
    coord.file.starts_with(MARK)
}

/// How a snapshot value becomes a model value.
#[derive(Debug, Clone)]
pub(super) enum Convert {
    Int,
    UInt,
    Float32,
    Float64,
    Decimal,
    Date,
    DateTime,
    TimestampTz,
    Time,
    Text(Charset),
    Json(Charset),
    Bytes,
    Uuid,
    Inet6,
    Enum(Charset),
    Set(Charset),
    Bits(u16),
}

/// The snapshot's position and the outcome.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The snapshot's binlog position (where streaming continues).
    pub(crate) position: Position,
    /// False when shutdown interrupted it.
    pub(crate) complete: bool,
}

/// Take the snapshot of every mapped table; returns its position.
pub(crate) async fn run(
    cfg: &MysqlSource,
    ctx: &SourceContext,
    registry: &mut SchemaRegistry,
    out: &mut Batcher,
) -> Result<Taken, MysqlSourceError> {
    let mut conn = connect(cfg).await?;
    for stmt in [
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION character_set_results = NULL",
        "SET SESSION net_write_timeout = 3600",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
    ] {
        conn.query_drop(stmt)
            .await
            .map_err(sql_err(format!("`{stmt}`")))?;
    }
    let position = snapshot_position(&mut conn).await?;
    let tables: Vec<_> = catalog::list_tables(&mut conn, &cfg.databases)
        .await
        .map_err(sql_err("listing tables"))?
        .into_iter()
        .filter(|t| (ctx.tables)(t))
        .collect();
    tracing::info!(tables = tables.len(), %position, "taking the initial snapshot");
    let mut chunks = Chunks {
        out,
        chunk_rows: cfg.snapshot_chunk_rows.max(1),
        position: position.clone(),
        time: now(),
        pending: None,
    };
    for table in &tables {
        let Some(cat) = registry.catalog(&mut conn, table).await? else {
            continue; // dropped meanwhile
        };
        if !cat.engine.eq_ignore_ascii_case("InnoDB") {
            tracing::warn!(%table, engine = %cat.engine, "snapshot of a non-InnoDB table is not consistent with the binlog position");
        }
        let read = read_table(
            &mut conn,
            registry,
            table,
            &cat,
            &mut chunks,
            ctx.shutdown.cancelled(),
        );
        if !read.await? {
            return Ok(Taken {
                position,
                complete: false,
            });
        }
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(sql_err("ending the snapshot transaction"))?;
    chunks.finish().await?;
    out.push(SourceEvent::Progress(position.clone())).await?;
    out.flush().await?;
    Ok(Taken {
        position,
        complete: true,
    })
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

async fn snapshot_position(conn: &mut Conn) -> Result<Position, MysqlSourceError> {
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(sql_err(
            "reading binlog_snapshot_file and binlog_snapshot_position",
        ))?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("Binlog_snapshot_file"), get("Binlog_snapshot_position"))
    else {
        return Err(MysqlSourceError::Setting {
            setting: "binlog_snapshot_file".into(),
            found: "missing".into(),
            fix: "the server must be MariaDB with log_bin enabled".into(),
        });
    };
    let pos: u64 = pos.parse().map_err(|_| MysqlSourceError::Setting {
        setting: "binlog_snapshot_position".into(),
        found: pos.clone(),
        fix: "report this as a bug".into(),
    })?;
    let gtids: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
        .await
        .map_err(sql_err("reading BINLOG_GTID_POS of the snapshot"))?;
    let text = gtids.flatten().unwrap_or_default();
    let gtids: GtidSet = text.parse().map_err(|_| MysqlSourceError::Setting {
        setting: "BINLOG_GTID_POS".into(),
        found: text.clone(),
        fix: "report this as a bug".into(),
    })?;
    Ok(Position::MySql {
        gtids,
        coord: BinlogCoord { file, pos },
    })
}

/// Cuts the row stream into transactions; a chunk's commit waits until it is known whether
/// another chunk follows (only the last one may carry the real restart position).
struct Chunks<'a> {
    out: &'a mut Batcher,
    chunk_rows: u64,
    position: Position,
    time: Timestamp,
    pending: Option<TxnCommit>,
}

impl Chunks<'_> {
    fn marked(&self) -> Position {
        match &self.position {
            Position::MySql { gtids, coord } => Position::MySql {
                gtids: gtids.clone(),
                coord: BinlogCoord {
                    file: format!("{MARK}{}", coord.file),
                    pos: coord.pos,
                },
            },
            other => other.clone(),
        }
    }

    async fn begin(&mut self, id: String) -> Result<(), MysqlSourceError> {
        if let Some(c) = self.pending.take() {
            self.out.push(SourceEvent::Commit(c)).await?;
        }
        let begin = TxnBegin {
            id: id.into(),
            commit_time: self.time,
            position: Some(self.position.clone()),
        };
        self.out.push(SourceEvent::Begin(begin)).await?;
        Ok(())
    }

    fn end(&mut self, id: String, count: u64) {
        self.pending = Some(TxnCommit {
            id: id.into(),
            commit_time: self.time,
            commit_position: self.position.clone(),
            restart_position: self.marked(),
            change_count: count,
        });
    }

    async fn finish(&mut self) -> Result<(), MysqlSourceError> {
        if let Some(mut c) = self.pending.take() {
            c.restart_position = self.position.clone();
            self.out.push(SourceEvent::Commit(c)).await?;
        }
        Ok(())
    }
}

/// Read one table; false when shutdown interrupted it.
async fn read_table(
    conn: &mut Conn,
    registry: &mut SchemaRegistry,
    table: &ordo_kcop::TableId,
    cat: &CatalogTable,
    chunks: &mut Chunks<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<bool, MysqlSourceError> {
    let schema = registry.catalog_schema(table, cat)?;
    let converts = cat
        .columns
        .iter()
        .zip(&schema.columns)
        .map(|(cc, col)| convert(registry, table, cc, &col.kind))
        .collect::<Result<Vec<_>, _>>()?;
    let cols: Vec<String> = cat
        .columns
        .iter()
        .map(|c| catalog::ident(&c.name))
        .collect();
    let order: Vec<String> = cat.primary_key.iter().map(|i| cols[*i].clone()).collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        cols.join(", "),
        catalog::ident(&table.namespace),
        catalog::ident(&table.name)
    );
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    let what = format!("reading `{table}` for the snapshot");
    let mut result = conn
        .exec_iter(sql, ())
        .await
        .map_err(sql_err(what.clone()))?;
    let (mut chunk, mut in_chunk) = (0u64, 0u64);
    crate::metrics::snapshot_progress(table, 0, None);
    let id = |chunk: u64| format!("snapshot:{table}:{chunk}");
    tokio::pin!(shutdown);
    loop {
        let row = tokio::select! {
            row = result.next() => row.map_err(sql_err(what.clone()))?,
            () = &mut shutdown => return Ok(false),
        };
        let Some(row) = row else { break };
        if in_chunk == 0 {
            chunks.begin(id(chunk)).await?;
        }
        let after = values_of(row, &converts, table, &schema.columns)?;
        let change = Change {
            table: schema.clone(),
            op: Op::Read,
            before: None,
            after: Some(after),
            op_index: in_chunk,
        };
        chunks.out.push(SourceEvent::Change(change)).await?;
        in_chunk += 1;
        if in_chunk == chunks.chunk_rows {
            chunks.end(id(chunk), in_chunk);
            (chunk, in_chunk) = (chunk + 1, 0);
            crate::metrics::snapshot_progress(table, chunk * chunks.chunk_rows, None);
        }
    }
    if in_chunk > 0 {
        chunks.end(id(chunk), in_chunk);
    }
    crate::metrics::snapshot_progress(table, chunk * chunks.chunk_rows + in_chunk, None);
    Ok(true)
}

pub(super) fn convert(
    registry: &SchemaRegistry,
    table: &ordo_kcop::TableId,
    cc: &catalog::CatalogColumn,
    kind: &ColumnKind,
) -> Result<Convert, MysqlSourceError> {
    let cs = || match &cc.collation {
        Some(c) => registry.types.charset_of_name(table, &cc.name, c),
        None => Ok(Charset::Binary),
    };
    Ok(match kind {
        ColumnKind::Int(_) => Convert::Int,
        ColumnKind::UInt(_) => Convert::UInt,
        ColumnKind::Float32 => Convert::Float32,
        ColumnKind::Float64 => Convert::Float64,
        ColumnKind::Decimal { .. } => Convert::Decimal,
        ColumnKind::Date => Convert::Date,
        ColumnKind::Timestamp => Convert::DateTime,
        ColumnKind::TimestampTz => Convert::TimestampTz,
        ColumnKind::Time => Convert::Time,
        ColumnKind::Text => Convert::Text(cs()?),
        ColumnKind::Json => Convert::Json(cs()?),
        ColumnKind::Uuid => Convert::Uuid,
        ColumnKind::Enum(_) => Convert::Enum(cs()?),
        ColumnKind::Set(_) => Convert::Set(cs()?),
        ColumnKind::Bits => {
            let n = cc
                .column_type
                .trim_start_matches("bit(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or(1);
            Convert::Bits(n)
        }
        ColumnKind::Other if cc.data_type == "inet6" => Convert::Inet6,
        ColumnKind::Other => Convert::Text(Charset::Utf8),
        _ => Convert::Bytes,
    })
}

pub(super) fn values_of(
    row: Row,
    converts: &[Convert],
    table: &ordo_kcop::TableId,
    columns: &[ordo_kcop::Column],
) -> Result<Vec<Value>, MysqlSourceError> {
    row.unwrap()
        .into_iter()
        .zip(converts)
        .enumerate()
        .map(|(i, (v, c))| {
            value(v, c).ok_or_else(|| MysqlSourceError::Value {
                table: table.to_string(),
                column: columns.get(i).map(|c| c.name.clone()).unwrap_or_default(),
                at: "the snapshot".into(),
                reason: "the server sent a value of an unexpected form".into(),
            })
        })
        .collect()
}

/// A value of the binary protocol (with `character_set_results = NULL` and UTC).
fn value(v: MyValue, c: &Convert) -> Option<Value> {
    let text = |v: &MyValue| match v {
        MyValue::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    };
    Some(match (c, v) {
        (_, MyValue::NULL) => Value::Null,
        (Convert::Int, MyValue::Int(i)) => Value::Int(i),
        (Convert::Int, MyValue::UInt(u)) => Value::Int(i64::try_from(u).ok()?),
        (Convert::UInt, MyValue::UInt(u)) => Value::UInt(u),
        (Convert::UInt, MyValue::Int(i)) => Value::UInt(u64::try_from(i).ok()?),
        (
            Convert::Int | Convert::UInt | Convert::Float32 | Convert::Float64,
            v @ MyValue::Bytes(_),
        ) => {
            let t = text(&v)?;
            match c {
                Convert::Int => Value::Int(t.parse().ok()?),
                Convert::UInt => Value::UInt(t.parse().ok()?),
                Convert::Float32 => Value::Float32(t.parse().ok()?),
                _ => Value::Float64(t.parse().ok()?),
            }
        }
        (Convert::Float32, MyValue::Float(f)) => Value::Float32(f),
        (Convert::Float64, MyValue::Double(d)) => Value::Float64(d),
        (Convert::Decimal, v) => Value::Decimal(text(&v)?.parse().ok()?),
        (Convert::Date | Convert::DateTime | Convert::TimestampTz | Convert::Time, v) => {
            temporal(c, v)?
        }
        (Convert::Text(cs), MyValue::Bytes(b)) => Value::Text(cs.decode(&b)?),
        (Convert::Json(cs), MyValue::Bytes(b)) => Value::Json(cs.decode(&b)?),
        (Convert::Bytes, MyValue::Bytes(b)) => Value::Bytes(b),
        (Convert::Uuid, v) => Value::Uuid(parse_uuid(&text(&v)?).ok()?),
        (Convert::Inet6, v) => Value::Text(text(&v)?),
        (Convert::Enum(cs), MyValue::Bytes(b)) => Value::Enum(cs.decode(&b)?),
        (Convert::Set(cs), MyValue::Bytes(b)) => {
            let t = cs.decode(&b)?;
            Value::Set(if t.is_empty() {
                Vec::new()
            } else {
                t.split(',').map(str::to_owned).collect()
            })
        }
        (Convert::Bits(n), MyValue::Bytes(b)) => Value::Bits(bits_value(&b, *n)),
        _ => return None,
    })
}

/// DATE, DATETIME, TIMESTAMP (read in UTC) and TIME values of the binary protocol.
fn temporal(c: &Convert, v: MyValue) -> Option<Value> {
    Some(match (c, v) {
        (Convert::Date, MyValue::Date(y, m, d, ..)) => {
            date_value(y.into(), m.into(), d.into()).map_or(Value::Null, Value::Date)
        }
        (Convert::DateTime | Convert::TimestampTz, MyValue::Date(y, mo, d, h, mi, s, us)) => {
            let ymd = (y.into(), mo.into(), d.into());
            match (
                c,
                datetime_value(ymd, (h.into(), mi.into(), s.into()), us.into()),
            ) {
                (Convert::TimestampTz, Value::Timestamp(ts)) => Value::TimestampTz(ts),
                (_, other) => other,
            }
        }
        (Convert::Time, MyValue::Time(neg, days, h, m, s, us)) => {
            let hours = i64::from(days) * 24 + i64::from(h);
            let secs = (hours * 60 + i64::from(m)) * 60 + i64::from(s);
            let micros = secs * 1_000_000 + i64::from(us);
            Value::Time(Time(if neg { -micros } else { micros }))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_protocol_values_match_the_binlog_forms() {
        assert_eq!(value(MyValue::Int(-5), &Convert::Int), Some(Value::Int(-5)));
        assert_eq!(
            value(MyValue::UInt(u64::MAX), &Convert::UInt),
            Some(Value::UInt(u64::MAX))
        );
        assert_eq!(
            value(
                MyValue::Bytes(b"a,c".to_vec()),
                &Convert::Set(Charset::Utf8)
            ),
            Some(Value::Set(vec!["a".into(), "c".into()]))
        );
        assert_eq!(
            value(MyValue::Date(0, 0, 0, 0, 0, 0, 0), &Convert::DateTime),
            Some(Value::Null)
        );
        assert_eq!(
            value(MyValue::Time(true, 1, 2, 0, 0, 5), &Convert::Time),
            Some(Value::Time(Time(-(26 * 3600 * 1_000_000 + 5))))
        );
    }
}
