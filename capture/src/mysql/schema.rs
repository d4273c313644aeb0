//! Table schemas with versions, and the compiled row decoders that go with them.
//!
//! A TABLE_MAP is compiled once per distinct layout: its columns become a [`TableSchema`] and
//! a [`ColumnDecoder`] each. The catalog refines what the binlog cannot say (declared type
//! names, `UUID`, `INET6`, `JSON`) whenever it still matches the logged layout; a table that
//! changed since the event falls back to what the binlog alone says. The version increases
//! whenever a table's shape differs from its previous one.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::Conn;
use ordo_kcop::{Column, ColumnKind, SchemaRef, TableId, TableSchema};

use super::catalog::{self, CatalogColumn, CatalogTable};
use super::charset::{Charset, Collations};
use super::error::MysqlSourceError;
use super::table_map::{self, MapColumn, TableMap, ty};
use super::values::{ColumnDecoder, StrAs};

/// A table map compiled for decoding rows.
#[derive(Debug)]
pub(crate) struct CompiledTable {
    pub(crate) schema: SchemaRef,
    pub(crate) decoders: Vec<ColumnDecoder>,
    /// The TABLE_MAP body after the table id, to recognise the same layout again.
    raw: Vec<u8>,
}

/// Schemas and decoders of the mapped tables.
#[derive(Debug)]
pub(crate) struct SchemaRegistry {
    collations: Collations,
    catalog: HashMap<TableId, Option<Arc<CatalogTable>>>,
    latest: HashMap<TableId, SchemaRef>,
    compiled: HashMap<TableId, Arc<CompiledTable>>,
    /// Binlog table ids of the current stream: `None` for tables nobody maps.
    by_id: HashMap<u64, Option<Arc<CompiledTable>>>,
}

fn table_error(
    id: &TableId,
    reason: impl Into<String>,
    fix: impl Into<String>,
) -> MysqlSourceError {
    MysqlSourceError::Table {
        table: id.to_string(),
        reason: reason.into(),
        fix: fix.into(),
    }
}

impl SchemaRegistry {
    pub(crate) fn new(collations: Collations) -> Self {
        Self {
            collations,
            catalog: HashMap::new(),
            latest: HashMap::new(),
            compiled: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    /// A new stream starts: binlog table ids mean nothing any more.
    pub(crate) fn forget_table_ids(&mut self) {
        self.by_id.clear();
    }

    /// The compiled table of a binlog table id: `Some(None)` for a table nobody maps, `None`
    /// for an id no TABLE_MAP announced.
    pub(crate) fn by_table_id(&self, table_id: u64) -> Option<Option<&Arc<CompiledTable>>> {
        self.by_id.get(&table_id).map(Option::as_ref)
    }

    /// A statement that may be DDL ran: forget what the catalog said about every table whose
    /// name (or database name) appears in it.
    pub(crate) fn invalidate(&mut self, query: &str) {
        let q = query.to_ascii_lowercase();
        let hit = |id: &TableId| {
            q.contains(&id.name.to_ascii_lowercase())
                || q.contains(&id.namespace.to_ascii_lowercase())
        };
        self.catalog.retain(|id, _| !hit(id));
        self.compiled.retain(|id, _| !hit(id));
    }

    /// Handle a TABLE_MAP event body.
    pub(crate) async fn table_map(
        &mut self,
        meta: &mut Conn,
        data: &[u8],
        id_len: usize,
        mapped: &(dyn Fn(&TableId) -> bool + Send + Sync),
    ) -> Result<(), MysqlSourceError> {
        let short = |s: super::wire::Short| s.0.to_owned();
        let (table_id, db, table) =
            table_map::names(data, id_len).map_err(|e| corrupt(short(e)))?;
        let id = TableId::new(String::from_utf8_lossy(db), String::from_utf8_lossy(table));
        if !mapped(&id) {
            self.by_id.insert(table_id, None);
            return Ok(());
        }
        let raw = &data[id_len.min(data.len())..];
        if let Some(c) = self.compiled.get(&id).filter(|c| c.raw == raw) {
            self.by_id.insert(table_id, Some(c.clone()));
            return Ok(());
        }
        let map = table_map::parse(data, id_len).map_err(|e| corrupt(short(e)))?;
        let catalog = self.catalog(meta, &id).await?;
        let (columns, decoders) = self.compile(&id, &map, catalog.as_deref())?;
        let schema = self.version(TableSchema {
            id: id.clone(),
            version: 0,
            columns,
            key: map.primary_key.clone(),
        });
        let c = Arc::new(CompiledTable {
            schema,
            decoders,
            raw: raw.to_vec(),
        });
        self.compiled.insert(id, c.clone());
        self.by_id.insert(table_id, Some(c));
        Ok(())
    }

    /// The catalog's view of a table (cached until DDL mentions it).
    pub(crate) async fn catalog(
        &mut self,
        meta: &mut Conn,
        id: &TableId,
    ) -> Result<Option<Arc<CatalogTable>>, MysqlSourceError> {
        if let Some(c) = self.catalog.get(id) {
            return Ok(c.clone());
        }
        let loaded =
            catalog::load_table(meta, id)
                .await
                .map_err(|source| MysqlSourceError::Sql {
                    what: format!("reading the definition of `{id}` from information_schema"),
                    source,
                })?;
        let loaded = loaded.map(Arc::new);
        self.catalog.insert(id.clone(), loaded.clone());
        Ok(loaded)
    }

    /// Give `schema` its version: the previous one when the shape is unchanged, else the next.
    pub(crate) fn version(&mut self, mut schema: TableSchema) -> SchemaRef {
        if let Some(prev) = self.latest.get(&schema.id) {
            schema.version = prev.version;
            if prev.same_shape(&schema) {
                return prev.clone();
            }
            schema.version = prev.version + 1;
        } else {
            schema.version = 1;
        }
        let schema = Arc::new(schema);
        self.latest.insert(schema.id.clone(), schema.clone());
        schema
    }

    /// The character set of a collation id.
    pub(crate) fn charset_of_id(
        &self,
        id: &TableId,
        column: &str,
        coll: u16,
    ) -> Result<Charset, MysqlSourceError> {
        let name = self.collations.charset_of_id(coll).ok_or_else(|| {
            table_error(id, format!("column `{column}` uses collation id {coll}, unknown to the server's information_schema"), "report this as a bug")
        })?;
        charset_named(id, column, name)
    }

    /// The character set of a collation name.
    pub(crate) fn charset_of_name(
        &self,
        id: &TableId,
        column: &str,
        coll: &str,
    ) -> Result<Charset, MysqlSourceError> {
        let name = self.collations.charset_of_name(coll).ok_or_else(|| {
            table_error(
                id,
                format!("column `{column}` uses collation `{coll}`, unknown to the server"),
                "report this as a bug",
            )
        })?;
        charset_named(id, column, name)
    }

    fn compile(
        &self,
        id: &TableId,
        map: &TableMap,
        catalog: Option<&CatalogTable>,
    ) -> Result<(Vec<Column>, Vec<ColumnDecoder>), MysqlSourceError> {
        if !map.has_names {
            return Err(MysqlSourceError::Setting {
                setting: "binlog_row_metadata".into(),
                found: "not FULL (the table map of this table has no column names)".into(),
                fix: "SET GLOBAL binlog_row_metadata=FULL and put binlog_row_metadata=FULL in the server's config".into(),
            });
        }
        let mut columns = Vec::with_capacity(map.columns.len());
        let mut decoders = Vec::with_capacity(map.columns.len());
        for c in &map.columns {
            let (col, dec) = self.binlog_column(id, c)?;
            columns.push(col);
            decoders.push(dec);
        }
        if let Some(cat) = catalog.filter(|cat| cat.columns.len() == columns.len()) {
            let refined: Option<Vec<_>> = columns
                .iter()
                .zip(&decoders)
                .zip(&cat.columns)
                .map(|((col, dec), cc)| refine(col, dec, cc))
                .collect();
            match refined {
                Some(r) => return Ok(r.into_iter().unzip()),
                None => {
                    tracing::debug!(table = %id, "the catalog no longer matches the logged table; using the binlog's column types")
                }
            }
        }
        Ok((columns, decoders))
    }

    fn binlog_column(
        &self,
        id: &TableId,
        c: &MapColumn,
    ) -> Result<(Column, ColumnDecoder), MysqlSourceError> {
        let name = c.name.clone().unwrap_or_default();
        let charset = |coll: Option<u16>| match coll {
            Some(coll) => self.charset_of_id(id, &name, coll),
            None => Err(table_error(
                id,
                format!("column `{name}` has no character set in the table map"),
                "set binlog_row_metadata=FULL",
            )),
        };
        let unsigned = if c.unsigned { " unsigned" } else { "" };
        let int = |len: u8, t: &str| {
            let kind = if c.unsigned {
                ColumnKind::UInt(len * 8)
            } else {
                ColumnKind::Int(len * 8)
            };
            (
                format!("{t}{unsigned}"),
                kind,
                ColumnDecoder::Int {
                    len,
                    unsigned: c.unsigned,
                },
            )
        };
        let fsp = |t: &str, m: u16| {
            if m == 0 {
                t.to_owned()
            } else {
                format!("{t}({m})")
            }
        };
        let (type_name, kind, dec) = match c.ty {
            ty::TINY => int(1, "tinyint"),
            ty::SHORT => int(2, "smallint"),
            ty::INT24 => int(3, "mediumint"),
            ty::LONG => int(4, "int"),
            ty::LONGLONG => int(8, "bigint"),
            ty::YEAR => ("year".into(), ColumnKind::Int(16), ColumnDecoder::Year),
            ty::FLOAT => ("float".into(), ColumnKind::Float32, ColumnDecoder::Float),
            ty::DOUBLE => ("double".into(), ColumnKind::Float64, ColumnDecoder::Double),
            ty::NEWDECIMAL => {
                let (p, s) = ((c.meta >> 8) as u8, (c.meta & 0xff) as u8);
                let kind = ColumnKind::Decimal {
                    precision: Some(p.into()),
                    scale: Some(s.into()),
                };
                (
                    format!("decimal({p},{s}){unsigned}"),
                    kind,
                    ColumnDecoder::Decimal {
                        precision: p,
                        scale: s,
                    },
                )
            }
            ty::NEWDATE => ("date".into(), ColumnKind::Date, ColumnDecoder::Date),
            ty::TIME => ("time".into(), ColumnKind::Time, ColumnDecoder::Time),
            ty::TIME2 => (
                fsp("time", c.meta),
                ColumnKind::Time,
                ColumnDecoder::Time2 { fsp: c.meta as u8 },
            ),
            ty::DATETIME => (
                "datetime".into(),
                ColumnKind::Timestamp,
                ColumnDecoder::DateTime,
            ),
            ty::DATETIME2 => (
                fsp("datetime", c.meta),
                ColumnKind::Timestamp,
                ColumnDecoder::DateTime2 { fsp: c.meta as u8 },
            ),
            ty::TIMESTAMP => (
                "timestamp".into(),
                ColumnKind::TimestampTz,
                ColumnDecoder::Timestamp,
            ),
            ty::TIMESTAMP2 => (
                fsp("timestamp", c.meta),
                ColumnKind::TimestampTz,
                ColumnDecoder::Timestamp2 { fsp: c.meta as u8 },
            ),
            ty::VARCHAR | ty::VAR_STRING | ty::STRING => {
                let cs = charset(c.collation)?;
                let len_bytes = if c.meta < 256 { 1 } else { 2 };
                let fixed = c.ty == ty::STRING;
                let (t, kind, out) = match (cs, fixed) {
                    (Charset::Binary, true) => (
                        format!("binary({})", c.meta),
                        ColumnKind::Bytes,
                        StrAs::Bytes,
                    ),
                    (Charset::Binary, false) => (
                        format!("varbinary({})", c.meta),
                        ColumnKind::Bytes,
                        StrAs::Bytes,
                    ),
                    (cs, true) => ("char".to_owned(), ColumnKind::Text, StrAs::Text(cs)),
                    (cs, false) => ("varchar".to_owned(), ColumnKind::Text, StrAs::Text(cs)),
                };
                let pad_to = (fixed && cs == Charset::Binary).then_some(c.meta);
                (
                    t,
                    kind,
                    ColumnDecoder::Str {
                        len_bytes,
                        pad_to,
                        out,
                    },
                )
            }
            ty::BLOB | ty::TINY_BLOB | ty::MEDIUM_BLOB | ty::LONG_BLOB | ty::GEOMETRY => {
                let cs = if c.ty == ty::GEOMETRY {
                    Charset::Binary
                } else {
                    charset(c.collation)?
                };
                let size = ["tiny", "", "medium", "long"]
                    .get(usize::from(c.meta).wrapping_sub(1))
                    .copied();
                let size = size.ok_or_else(|| {
                    corrupt(format!("blob length size {} of column `{name}`", c.meta))
                })?;
                let (t, kind, out) = match cs {
                    _ if c.ty == ty::GEOMETRY => {
                        ("geometry".to_owned(), ColumnKind::Bytes, StrAs::Bytes)
                    }
                    Charset::Binary => (format!("{size}blob"), ColumnKind::Bytes, StrAs::Bytes),
                    cs => (format!("{size}text"), ColumnKind::Text, StrAs::Text(cs)),
                };
                (
                    t,
                    kind,
                    ColumnDecoder::Str {
                        len_bytes: c.meta as u8,
                        pad_to: None,
                        out,
                    },
                )
            }
            ty::ENUM | ty::SET => {
                let cs = charset(c.collation)?;
                let labels: Vec<String> = c
                    .labels
                    .iter()
                    .map(|l| {
                        cs.decode(l).ok_or_else(|| {
                            table_error(
                                id,
                                format!("a label of column `{name}` is not valid text"),
                                "report this as a bug",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let len = (c.meta & 0xff) as u8;
                if c.ty == ty::ENUM {
                    (
                        "enum".into(),
                        ColumnKind::Enum(labels.clone()),
                        ColumnDecoder::Enum {
                            len,
                            labels: labels.into(),
                        },
                    )
                } else {
                    (
                        "set".into(),
                        ColumnKind::Set(labels.clone()),
                        ColumnDecoder::Set {
                            len,
                            labels: labels.into(),
                        },
                    )
                }
            }
            ty::BIT => {
                let bits = (c.meta & 0xff) * 8 + (c.meta >> 8);
                (
                    format!("bit({bits})"),
                    ColumnKind::Bits,
                    ColumnDecoder::Bit { bits },
                )
            }
            other => {
                return Err(table_error(
                    id,
                    format!("column `{name}` has binlog type {other}, which ordo does not decode"),
                    "change the column's type or leave the table unmapped",
                ));
            }
        };
        Ok((
            Column {
                name,
                type_name,
                kind,
                nullable: c.nullable,
            },
            dec,
        ))
    }

    /// A schema from the catalog alone (for the snapshot), with the version the binlog path
    /// would give the same shape.
    pub(crate) fn catalog_schema(
        &mut self,
        id: &TableId,
        cat: &CatalogTable,
    ) -> Result<SchemaRef, MysqlSourceError> {
        let columns = cat
            .columns
            .iter()
            .map(|c| {
                Ok(Column {
                    name: c.name.clone(),
                    type_name: c.column_type.clone(),
                    kind: self.catalog_kind(id, c)?,
                    nullable: c.nullable,
                })
            })
            .collect::<Result<Vec<_>, MysqlSourceError>>()?;
        Ok(self.version(TableSchema {
            id: id.clone(),
            version: 0,
            columns,
            key: cat.primary_key.clone(),
        }))
    }

    /// The kind of a catalog column.
    pub(crate) fn catalog_kind(
        &self,
        id: &TableId,
        c: &CatalogColumn,
    ) -> Result<ColumnKind, MysqlSourceError> {
        let unsigned = c.column_type.contains("unsigned");
        let int = |bits| {
            if unsigned {
                ColumnKind::UInt(bits)
            } else {
                ColumnKind::Int(bits)
            }
        };
        let text = || -> Result<ColumnKind, MysqlSourceError> {
            let cs = match &c.collation {
                Some(coll) => self.charset_of_name(id, &c.name, coll)?,
                None => Charset::Binary,
            };
            Ok(match cs {
                Charset::Binary => ColumnKind::Bytes,
                _ if c.json => ColumnKind::Json,
                _ => ColumnKind::Text,
            })
        };
        Ok(match c.data_type.as_str() {
            "tinyint" => int(8),
            "smallint" => int(16),
            "mediumint" => int(24),
            "int" | "integer" => int(32),
            "bigint" => int(64),
            "year" => ColumnKind::Int(16),
            "float" => ColumnKind::Float32,
            "double" | "real" => ColumnKind::Float64,
            "decimal" | "numeric" => ColumnKind::Decimal {
                precision: c.precision,
                scale: c.scale,
            },
            "date" => ColumnKind::Date,
            "time" => ColumnKind::Time,
            "datetime" => ColumnKind::Timestamp,
            "timestamp" => ColumnKind::TimestampTz,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => text()?,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColumnKind::Bytes
            }
            "enum" => ColumnKind::Enum(catalog::labels(&c.column_type)),
            "set" => ColumnKind::Set(catalog::labels(&c.column_type)),
            "bit" => ColumnKind::Bits,
            "uuid" => ColumnKind::Uuid,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => ColumnKind::Bytes,
            _ => ColumnKind::Other,
        })
    }
}

/// The catalog's column in place of the binlog's, when both describe the same column.
fn refine(
    col: &Column,
    dec: &ColumnDecoder,
    cc: &CatalogColumn,
) -> Option<(Column, ColumnDecoder)> {
    if col.name != cc.name || col.nullable != cc.nullable {
        return None;
    }
    let mut dec = dec.clone();
    let kind = match (&mut dec, cc.data_type.as_str()) {
        (
            ColumnDecoder::Str {
                pad_to: Some(16),
                out: out @ StrAs::Bytes,
                ..
            },
            "uuid",
        ) => {
            *out = StrAs::Uuid;
            ColumnKind::Uuid
        }
        (
            ColumnDecoder::Str {
                pad_to: Some(16),
                out: out @ StrAs::Bytes,
                ..
            },
            "inet6",
        ) => {
            *out = StrAs::Inet6;
            ColumnKind::Other
        }
        (
            ColumnDecoder::Str {
                out: out @ StrAs::Text(_),
                ..
            },
            _,
        ) if cc.json => {
            if let StrAs::Text(cs) = *out {
                *out = StrAs::Json(cs);
            }
            ColumnKind::Json
        }
        _ => col.kind.clone(),
    };
    if !same_family(&kind, cc) {
        return None;
    }
    Some((
        Column {
            name: col.name.clone(),
            type_name: cc.column_type.clone(),
            kind,
            nullable: col.nullable,
        },
        dec,
    ))
}

/// Whether the binlog's kind is what the catalog's declared type would give.
fn same_family(kind: &ColumnKind, cc: &CatalogColumn) -> bool {
    let unsigned = cc.column_type.contains("unsigned");
    let t = cc.data_type.as_str();
    match kind {
        ColumnKind::Int(16) if t == "year" => true,
        ColumnKind::Int(b) | ColumnKind::UInt(b) => {
            let want = match t {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "int" | "integer" => 32,
                "bigint" => 64,
                _ => return false,
            };
            *b == want && matches!(kind, ColumnKind::UInt(_)) == unsigned
        }
        ColumnKind::Decimal { precision, scale } => {
            matches!(t, "decimal" | "numeric") && *precision == cc.precision && *scale == cc.scale
        }
        ColumnKind::Enum(l) => t == "enum" && *l == catalog::labels(&cc.column_type),
        ColumnKind::Set(l) => t == "set" && *l == catalog::labels(&cc.column_type),
        ColumnKind::Float32 => t == "float",
        ColumnKind::Float64 => matches!(t, "double" | "real"),
        ColumnKind::Date => t == "date",
        ColumnKind::Time => t == "time",
        ColumnKind::Timestamp => t == "datetime",
        ColumnKind::TimestampTz => t == "timestamp",
        ColumnKind::Bits => t == "bit",
        ColumnKind::Uuid => t == "uuid",
        ColumnKind::Other => t == "inet6",
        ColumnKind::Json => cc.json,
        ColumnKind::Text => matches!(
            t,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
        ),
        ColumnKind::Bytes => !matches!(
            t,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "uuid" | "inet6"
        ),
        _ => false,
    }
}

fn charset_named(id: &TableId, column: &str, name: &str) -> Result<Charset, MysqlSourceError> {
    Charset::from_name(name).ok_or_else(|| {
        table_error(
            id,
            format!("column `{column}` uses character set `{name}`, which ordo does not decode yet"),
            format!("convert it, e.g. ALTER TABLE {} MODIFY {} ... CHARACTER SET utf8mb4, or leave the table unmapped", id, catalog::ident(column)),
        )
    })
}

fn corrupt(reason: String) -> MysqlSourceError {
    MysqlSourceError::Corrupt {
        event: 19,
        at: "a table map".into(),
        reason,
    }
}
