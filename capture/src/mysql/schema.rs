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
use ordo_kcop::{Column, SchemaRef, TableId, TableSchema};

use super::catalog::{self, CatalogTable};
use super::charset::Collations;
use super::error::MysqlSourceError;
use super::table_map::{self, TableMap};
use super::types::{self, ColumnTypes};
use super::values::ColumnDecoder;

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
    pub(crate) types: ColumnTypes,
    catalog: HashMap<TableId, Option<Arc<CatalogTable>>>,
    latest: HashMap<TableId, SchemaRef>,
    compiled: HashMap<TableId, Arc<CompiledTable>>,
    /// Binlog table ids of the current stream: `None` for tables nobody maps.
    by_id: HashMap<u64, Option<Arc<CompiledTable>>>,
}

impl SchemaRegistry {
    pub(crate) fn new(collations: Collations) -> Self {
        Self {
            types: ColumnTypes::new(collations),
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

    /// Compile a TABLE_MAP body from the binlog alone, without the catalog, as
    /// [`SchemaRegistry::table_map`] does for a table the catalog no longer matches (for the
    /// fuzz targets and tests).
    pub(crate) fn compile_offline(
        &mut self,
        data: &[u8],
        id_len: usize,
    ) -> Result<Arc<CompiledTable>, MysqlSourceError> {
        let map = table_map::parse(data, id_len).map_err(|e| corrupt(e.0.to_owned()))?;
        let id = TableId::new(map.database.clone(), map.table.clone());
        let (columns, decoders) = self.compile(&id, &map, None)?;
        let schema = self.version(TableSchema {
            id,
            version: 0,
            columns,
            key: map.primary_key.clone(),
        });
        let raw = data[id_len.min(data.len())..].to_vec();
        let c = Arc::new(CompiledTable {
            schema,
            decoders,
            raw,
        });
        self.by_id.insert(map.table_id, Some(c.clone()));
        Ok(c)
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
            let (col, dec) = self.types.binlog_column(id, c)?;
            columns.push(col);
            decoders.push(dec);
        }
        if let Some(cat) = catalog.filter(|cat| cat.columns.len() == columns.len()) {
            let refined: Option<Vec<_>> = columns
                .iter()
                .zip(&decoders)
                .zip(&cat.columns)
                .map(|((col, dec), cc)| types::refine(col, dec, cc))
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
                    kind: self.types.catalog_kind(id, c)?,
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
}

fn corrupt(reason: String) -> MysqlSourceError {
    MysqlSourceError::Corrupt {
        event: 19,
        at: "a table map".into(),
        reason,
    }
}
