//! The MariaDB/MySQL side of `ordo snapshot --table` ([`crate::resnapshot`]): the signal table
//! (`source.mysql.signal_table`, an InnoDB table whose rows reach the daemon through the
//! binlog), and a table's chunks read in primary-key order with the binary protocol, converted
//! as the initial snapshot converts them.
//!
//! # Chunk boundaries
//! The last key of a chunk is kept as text in the request's `last_key` (numbers as decimal
//! text, strings and bytes as hex of their raw bytes, temporals as `YYYY-MM-DD HH:MM:SS.ffffff`)
//! and bound back in the next chunk's `WHERE`: strings through
//! `CONVERT(UNHEX(?) USING charset) COLLATE collation`, so a key compares in the column's own
//! character set and collation whatever the connection's; bytes through `UNHEX(?)`; decimals
//! through
//! `CAST(? AS DECIMAL(65,30))`. Keys with `ENUM` or `SET` columns are refused: the server
//! orders them by index but compares them to a string by text.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};
use ordo_config::MysqlSource;
use ordo_kcop::{Row, TableId};
use serde_json::Value as Json;

use super::binlog::{connect, sql_err};
use super::catalog::{self, CatalogTable, ident};
use super::schema::SchemaRegistry;
use super::snapshot::{Convert, convert, values_of};
use crate::resnapshot::signal::{Request, SnapshotError};
use crate::resnapshot::{Backend, Target, kinds};

/// One connection to the source server, with the configured signal table.
pub(crate) struct MysqlBackend {
    conn: Conn,
    signal: TableId,
    registry: SchemaRegistry,
}

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlBackend")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// What reading a MariaDB table's chunks needs.
#[derive(Debug)]
pub(crate) struct MysqlTable {
    /// The catalog's facts.
    table: CatalogTable,
    /// How each column's value becomes a model value.
    converts: Vec<Convert>,
    /// The `WHERE` placeholder of each key column.
    key_params: Vec<KeyParam>,
}

/// How a key value is kept between chunks and bound again.
#[derive(Debug, Clone)]
enum KeyParam {
    /// Signed integer: decimal text, bound as an integer.
    Int,
    /// Unsigned integer: decimal text, bound as an unsigned integer.
    UInt,
    /// Floating point: decimal text, bound as a double.
    Float,
    /// Decimal: its text, bound through `CAST(? AS DECIMAL(65,30))`.
    Decimal,
    /// A string in `charset` with `collation`: hex of its bytes.
    Text { charset: String, collation: String },
    /// Bytes (binary strings, BIT): hex, bound through `UNHEX(?)`.
    Bytes,
    /// Date, time, date-time, UUID and INET6: their text, which the server converts for the
    /// comparison.
    Temporal,
}

impl KeyParam {
    fn of(c: &catalog::CatalogColumn, conv: &Convert) -> Option<KeyParam> {
        Some(match conv {
            Convert::Int => KeyParam::Int,
            Convert::UInt => KeyParam::UInt,
            Convert::Float32 | Convert::Float64 => KeyParam::Float,
            Convert::Decimal => KeyParam::Decimal,
            Convert::Date
            | Convert::DateTime
            | Convert::TimestampTz
            | Convert::Time
            | Convert::Uuid
            | Convert::Inet6 => KeyParam::Temporal,
            Convert::Enum(_) | Convert::Set(_) => return None,
            Convert::Text(_) | Convert::Json(_) => match &c.collation {
                Some(coll) if coll != "binary" => KeyParam::Text {
                    charset: coll.split('_').next().unwrap_or(coll).to_owned(),
                    collation: coll.clone(),
                },
                _ => KeyParam::Bytes,
            },
            Convert::Bytes | Convert::Bits(_) => KeyParam::Bytes,
        })
    }

    /// The SQL that stands for one bound value of this kind.
    fn placeholder(&self) -> String {
        match self {
            KeyParam::Decimal => "CAST(? AS DECIMAL(65,30))".into(),
            // Hex text, not the bytes: the server would read bytes bound as a string in the
            // connection's character set and replace what is not valid in it.
            KeyParam::Bytes => "UNHEX(?)".into(),
            KeyParam::Text { charset, collation } => format!(
                "CONVERT(UNHEX(?) USING {charset}) COLLATE {collation}",
                charset = sql_name(charset),
                collation = sql_name(collation)
            ),
            _ => "?".into(),
        }
    }

    /// The text kept for `v`.
    fn keep(&self, v: &MyValue) -> Option<String> {
        Some(match (self, v) {
            (_, MyValue::NULL) => return None,
            (_, MyValue::Int(i)) => i.to_string(),
            (_, MyValue::UInt(u)) => u.to_string(),
            (_, MyValue::Float(f)) => f.to_string(),
            (_, MyValue::Double(d)) => d.to_string(),
            (KeyParam::Text { .. } | KeyParam::Bytes, MyValue::Bytes(b)) => hex::encode(b),
            (_, MyValue::Bytes(b)) => String::from_utf8(b.clone()).ok()?,
            (_, MyValue::Date(y, mo, d, h, mi, s, us)) => {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            }
            (_, MyValue::Time(neg, days, h, mi, s, us)) => {
                let hours = u64::from(*days) * 24 + u64::from(*h);
                let sign = if *neg { "-" } else { "" };
                format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
            }
        })
    }

    /// The value to bind for kept text `t`.
    fn bind(&self, t: &str) -> Option<MyValue> {
        Some(match self {
            KeyParam::Int => MyValue::Int(t.parse().ok()?),
            KeyParam::UInt => MyValue::UInt(t.parse().ok()?),
            KeyParam::Float => MyValue::Double(t.parse().ok()?),
            KeyParam::Text { .. } | KeyParam::Bytes => {
                hex::decode(t).ok()?;
                MyValue::Bytes(t.as_bytes().to_vec())
            }
            KeyParam::Decimal | KeyParam::Temporal => MyValue::Bytes(t.as_bytes().to_vec()),
        })
    }
}

/// A character set or collation name as SQL (they are plain identifiers).
fn sql_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn my_err(what: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> SnapshotError {
    let f = sql_err(what);
    move |e| SnapshotError::MysqlSource(f(e))
}

impl MysqlBackend {
    /// `` `database`.`table` `` of the signal table.
    fn qualified(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.signal.namespace),
            ident(&self.signal.name)
        )
    }

    /// The statements that create the signal table (and its database).
    pub(crate) fn ddl(signal: &TableId) -> [String; 2] {
        [
            format!("CREATE DATABASE IF NOT EXISTS {}", ident(&signal.namespace)),
            format!(
                "CREATE TABLE IF NOT EXISTS {}.{} (\
                 id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
                 kind VARCHAR(32) CHARACTER SET utf8mb4 NOT NULL, \
                 data LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
                 created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 updated DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)\
                 ) ENGINE=InnoDB",
                ident(&signal.namespace),
                ident(&signal.name)
            ),
        ]
    }

    async fn rows(&mut self, filter: &str, params: Params) -> Result<Vec<Request>, SnapshotError> {
        let q = format!(
            "SELECT id, data FROM {} WHERE kind = 'snapshot'{filter} ORDER BY id",
            self.qualified()
        );
        let rows: Vec<(i64, Vec<u8>)> = self
            .conn
            .exec(q, params)
            .await
            .map_err(my_err("reading snapshot requests from the signal table"))?;
        Ok(rows
            .into_iter()
            .map(|(id, data)| Request {
                id,
                data: serde_json::from_slice(&data).unwrap_or(Json::Null),
            })
            .collect())
    }

    async fn estimate(&mut self, id: &TableId) -> Result<i64, SnapshotError> {
        let rows: Option<Option<u64>> = self
            .conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (id.namespace.as_str(), id.name.as_str()),
            )
            .await
            .map_err(my_err(format!("estimating the rows of `{id}`")))?;
        if let Some(Some(n)) = rows {
            return Ok(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let q = format!(
            "SELECT COUNT(*) FROM {}.{}",
            ident(&id.namespace),
            ident(&id.name)
        );
        let n: Option<i64> = self
            .conn
            .query_first(q)
            .await
            .map_err(my_err(format!("counting the rows of `{id}`")))?;
        Ok(n.unwrap_or(0))
    }
}

impl Backend for MysqlBackend {
    type Config = MysqlSource;
    type Table = MysqlTable;

    async fn connect(cfg: &MysqlSource) -> Result<Self, SnapshotError> {
        let Some((db, table)) = cfg.signal_table_parts() else {
            return Err(SnapshotError::Refused(
                "source.mysql.signal_table is not set; set it (for example `signal_table: ordo.signal`) and restart `ordo run`, which watches it for requests".into(),
            ));
        };
        let signal = TableId::new(db, table);
        let mut conn = connect(cfg).await.map_err(SnapshotError::MysqlSource)?;
        for stmt in [
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION character_set_results = NULL",
        ] {
            conn.query_drop(stmt)
                .await
                .map_err(my_err(format!("`{stmt}`")))?;
        }
        let collations = catalog::collations(&mut conn)
            .await
            .map_err(my_err("reading the server's collations"))?;
        Ok(Self {
            conn,
            signal,
            registry: SchemaRegistry::new(collations),
        })
    }

    fn default_chunk_rows(cfg: &MysqlSource) -> u64 {
        cfg.snapshot_chunk_rows
    }

    async fn signal_exists(&mut self) -> Result<bool, SnapshotError> {
        let found: Option<i64> = self
            .conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (self.signal.namespace.as_str(), self.signal.name.as_str()),
            )
            .await
            .map_err(my_err("looking up the signal table"))?;
        Ok(found.is_some())
    }

    async fn ensure_signal_table(&mut self) -> Result<bool, SnapshotError> {
        if self.signal_exists().await? {
            return Ok(false);
        }
        for stmt in Self::ddl(&self.signal) {
            self.conn
                .query_drop(&stmt)
                .await
                .map_err(my_err(format!("creating the signal table ({stmt})")))?;
        }
        Ok(true)
    }

    async fn request(
        &mut self,
        table: &TableId,
        chunk_size: u64,
        rows_estimated: i64,
    ) -> Result<i64, SnapshotError> {
        let data = serde_json::json!({
            "table": table.to_string(),
            "chunk_size": chunk_size,
            "state": "pending",
            "rows_done": 0,
            "rows_estimated": rows_estimated,
        });
        let q = format!(
            "INSERT INTO {} (kind, data) VALUES (?, ?)",
            self.qualified()
        );
        self.conn
            .exec_drop(q, (kinds::SNAPSHOT, data.to_string()))
            .await
            .map_err(my_err(format!("inserting a request into {}", self.signal)))?;
        self.conn
            .last_insert_id()
            .and_then(|id| i64::try_from(id).ok())
            .ok_or_else(|| {
                SnapshotError::Refused(format!(
                    "the signal table {} gave the request no id; its `id` column must be AUTO_INCREMENT",
                    self.signal
                ))
            })
    }

    async fn get(&mut self, id: i64) -> Result<Option<Request>, SnapshotError> {
        Ok(self.rows(" AND id = ?", (id,).into()).await?.pop())
    }

    async fn open_requests(&mut self) -> Result<Vec<Request>, SnapshotError> {
        let all = self.rows("", Params::Empty).await?;
        Ok(all
            .into_iter()
            .filter(|r| !matches!(r.text("state"), Some("done" | "failed")))
            .collect())
    }

    async fn update(&mut self, id: i64, fields: &Json) -> Result<(), SnapshotError> {
        // Only the daemon writes a request after its insert, so a read-merge-write is safe.
        let Some(mut req) = self.get(id).await? else {
            return Ok(());
        };
        if let (Json::Object(data), Json::Object(new)) = (&mut req.data, fields) {
            for (k, v) in new {
                data.insert(k.clone(), v.clone());
            }
        }
        let q = format!(
            "UPDATE {} SET data = ?, updated = CURRENT_TIMESTAMP(6) WHERE id = ?",
            self.qualified()
        );
        self.conn
            .exec_drop(q, (req.data.to_string(), id))
            .await
            .map_err(my_err("recording snapshot progress"))
    }

    async fn watermark(
        &mut self,
        kind: &str,
        token: &str,
        request: i64,
    ) -> Result<(), SnapshotError> {
        let data = serde_json::json!({ "token": token, "request": request.to_string() });
        let q = format!(
            "INSERT INTO {} (kind, data) VALUES (?, ?)",
            self.qualified()
        );
        self.conn
            .exec_drop(q, (kind, data.to_string()))
            .await
            .map_err(my_err(format!("inserting a {kind} watermark")))
    }

    async fn delete_watermarks(&mut self, request: i64) -> Result<(), SnapshotError> {
        let q = format!(
            "DELETE FROM {} WHERE kind IN (?, ?) AND JSON_UNQUOTE(JSON_EXTRACT(data, '$.request')) = ?",
            self.qualified()
        );
        self.conn
            .exec_drop(
                q,
                (kinds::WINDOW_OPEN, kinds::WINDOW_CLOSE, request.to_string()),
            )
            .await
            .map_err(my_err("deleting old watermarks"))
    }

    async fn target(&mut self, id: &TableId) -> Result<Target<MysqlTable>, SnapshotError> {
        let table = catalog::load_table(&mut self.conn, id)
            .await
            .map_err(my_err(format!("reading the definition of `{id}`")))?;
        let Some(table) = table else {
            return Err(SnapshotError::Refused(format!(
                "table {id} does not exist; name an existing table as database.table"
            )));
        };
        if table.primary_key.is_empty() {
            return Err(SnapshotError::Refused(format!(
                "table {id} has no primary key; ordo snapshot reads a table in primary-key order; add one (ALTER TABLE {}.{} ADD PRIMARY KEY (...))",
                ident(&id.namespace),
                ident(&id.name)
            )));
        }
        let schema = self
            .registry
            .catalog_schema(id, &table)
            .map_err(SnapshotError::MysqlSource)?;
        let converts = table
            .columns
            .iter()
            .zip(&schema.columns)
            .map(|(cc, col)| convert(&self.registry, id, cc, &col.kind))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SnapshotError::MysqlSource)?;
        let mut key_params = Vec::with_capacity(table.primary_key.len());
        for &i in &table.primary_key {
            let (Some(cc), Some(conv)) = (table.columns.get(i), converts.get(i)) else {
                continue;
            };
            let Some(p) = KeyParam::of(cc, conv) else {
                return Err(SnapshotError::Refused(format!(
                    "the primary key of {id} has the {} column `{}`, which the server orders by position but compares by text; ordo snapshot cannot read it in chunks",
                    cc.data_type, cc.name
                )));
            };
            key_params.push(p);
        }
        let key_columns = table
            .primary_key
            .iter()
            .filter_map(|&i| table.columns.get(i).map(|c| c.name.clone()))
            .collect();
        let estimated = self.estimate(id).await?;
        Ok(Target {
            id: id.clone(),
            schema,
            key_columns,
            estimated,
            source: MysqlTable {
                table,
                converts,
                key_params,
            },
        })
    }

    async fn read_chunk(
        &mut self,
        t: &Target<MysqlTable>,
        after: Option<&[String]>,
        limit: u64,
    ) -> Result<(Vec<Row>, Option<Vec<String>>), SnapshotError> {
        let cols: Vec<String> = t
            .source
            .table
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect();
        let keys: Vec<String> = t.key_columns.iter().map(|c| ident(c)).collect();
        let mut params = Vec::new();
        let filter = match after {
            Some(values) => {
                let (sql, bound) = after_key(&keys, &t.source.key_params, values).ok_or_else(|| {
                    SnapshotError::Refused(format!(
                        "the recorded last key {values:?} of {} does not fit its primary key; delete the request from the signal table and ask again",
                        t.id
                    ))
                })?;
                params = bound;
                format!(" WHERE {sql}")
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
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        let read: Vec<mysql_async::Row> = self
            .conn
            .exec(q, params)
            .await
            .map_err(my_err(format!("reading a chunk of `{}`", t.id)))?;
        let mut rows = Vec::with_capacity(read.len());
        let mut last_key = None;
        let n = read.len();
        for (i, row) in read.into_iter().enumerate() {
            if i + 1 == n {
                let key: Option<Vec<String>> = t
                    .source
                    .table
                    .primary_key
                    .iter()
                    .zip(&t.source.key_params)
                    .map(|(&c, p)| row.as_ref(c).and_then(|v| p.keep(v)))
                    .collect();
                last_key = Some(key.ok_or_else(|| {
                    SnapshotError::Refused(format!(
                        "a primary-key value of {} could not be kept as the chunk boundary",
                        t.id
                    ))
                })?);
            }
            rows.push(
                values_of(row, &t.source.converts, &t.id, &t.schema.columns)
                    .map_err(SnapshotError::MysqlSource)?,
            );
        }
        Ok((rows, last_key))
    }
}

/// `(k1 > v1) OR (k1 = v1 AND k2 > v2) OR ...` with its bound values, or `None` when the
/// kept values do not fit the key.
fn after_key(
    keys: &[String],
    params: &[KeyParam],
    values: &[String],
) -> Option<(String, Vec<MyValue>)> {
    if keys.len() != params.len() || values.len() != keys.len() {
        return None;
    }
    let bound: Vec<MyValue> = params
        .iter()
        .zip(values)
        .map(|(p, v)| p.bind(v))
        .collect::<Option<_>>()?;
    let mut terms = Vec::with_capacity(keys.len());
    let mut out = Vec::new();
    for i in 0..keys.len() {
        let mut parts = Vec::with_capacity(i + 1);
        for j in 0..i {
            parts.push(format!("{} = {}", keys[j], params[j].placeholder()));
            out.push(bound[j].clone());
        }
        parts.push(format!("{} > {}", keys[i], params[i].placeholder()));
        out.push(bound[i].clone());
        terms.push(format!("({})", parts.join(" AND ")));
    }
    Some((terms.join(" OR "), out))
}

/// `ordo check`'s problems with the configured signal table (none when none is set).
pub(crate) async fn check_source(cfg: &MysqlSource) -> Vec<super::Problem> {
    let Some((db, table)) = cfg.signal_table_parts() else {
        return Vec::new();
    };
    let id = TableId::new(db, table);
    // The source check reports a connection that fails.
    let Ok(mut db) = MysqlBackend::connect(cfg).await else {
        return Vec::new();
    };
    let what = format!("the signal table {id}");
    match db.signal_exists().await {
        Ok(true) => Vec::new(),
        Ok(false) => vec![super::Problem {
            what,
            found: "missing".into(),
            fix: format!(
                "create it (ordo snapshot does so too): {}",
                MysqlBackend::ddl(&id).join("; ")
            ),
        }],
        Err(e) => vec![super::Problem {
            what,
            found: format!("not readable ({e})"),
            fix: "grant the user SELECT, INSERT, UPDATE and DELETE on it".into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_after_key_condition_compares_lexicographically() {
        let keys = vec!["`a`".to_owned(), "`b`".to_owned()];
        let params = vec![
            KeyParam::Int,
            KeyParam::Text {
                charset: "latin1".into(),
                collation: "latin1_swedish_ci".into(),
            },
        ];
        let (sql, bound) =
            after_key(&keys, &params, &["7".into(), hex::encode("é")]).expect("fits");
        assert_eq!(
            sql,
            "(`a` > ?) OR (`a` = ? AND `b` > CONVERT(UNHEX(?) USING latin1) COLLATE latin1_swedish_ci)"
        );
        assert_eq!(
            bound,
            vec![
                MyValue::Int(7),
                MyValue::Int(7),
                MyValue::Bytes(hex::encode("é").into_bytes())
            ]
        );
        assert!(after_key(&keys, &params, &["x".into(), String::new()]).is_none());
        assert!(after_key(&keys, &params, &["1".into()]).is_none());
    }

    #[test]
    fn kept_keys_bind_back_to_the_same_value() {
        let cases = [
            (KeyParam::UInt, MyValue::UInt(u64::MAX)),
            (KeyParam::Int, MyValue::Int(i64::MIN)),
        ];
        for (p, v) in cases {
            let kept = p.keep(&v).expect("kept");
            assert_eq!(p.bind(&kept), Some(v));
        }
        let bytes = KeyParam::Bytes.keep(&MyValue::Bytes(vec![0, 255, 7]));
        assert_eq!(bytes.as_deref(), Some("00ff07"));
        assert_eq!(
            KeyParam::Bytes.bind("00ff07"),
            Some(MyValue::Bytes(b"00ff07".to_vec()))
        );
        assert_eq!(KeyParam::Bytes.bind("zz"), None);
        let t = KeyParam::Temporal;
        assert_eq!(
            t.keep(&MyValue::Date(2026, 11, 30, 1, 2, 3, 45)).as_deref(),
            Some("2026-11-30 01:02:03.000045")
        );
        assert_eq!(
            t.keep(&MyValue::Time(true, 1, 2, 3, 4, 5)).as_deref(),
            Some("-26:03:04.000005")
        );
        assert_eq!(sql_name("utf8mb4_bin`; DROP"), "utf8mb4_binDROP");
    }
}
