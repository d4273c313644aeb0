//! Which KCOPs each table's changes go through, built from the config's mappings.
//!
//! A table may match several mappings and each mapping may have several outputs: every one
//! applies, in file order. The chain for a table is built the first time a change of a given
//! schema version arrives, and cached.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_config::{Config, Format, KeyMode, Output};
use ordo_kcop::{Kcop, KcopError, SchemaRef, TableId, TableSchema};

mod audit_rows;
mod avro;
mod csv_audit;
mod debezium;
mod json;
mod steps;

/// Builds a user KCOP for one table and output.
pub type KcopFactory =
    Arc<dyn Fn(&Output, &TableSchema, Arc<str>) -> Result<Arc<dyn Kcop>, KcopError> + Send + Sync>;

/// User KCOPs by name, for outputs with `format: custom` and `kcop: <name>`.
#[derive(Default, Clone)]
pub struct KcopRegistry {
    factories: HashMap<String, KcopFactory>,
}

impl std::fmt::Debug for KcopRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl KcopRegistry {
    /// Register a KCOP under `name`.
    pub fn register(&mut self, name: impl Into<String>, factory: KcopFactory) {
        self.factories.insert(name.into(), factory);
    }

    /// Names registered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}

/// One output of a table: the KCOP and the topic it writes (for topic creation).
#[derive(Debug, Clone)]
pub struct Route {
    /// The KCOP.
    pub kcop: Arc<dyn Kcop>,
    /// Its main topic.
    pub topic: Arc<str>,
    /// Partitions to create the topic with.
    pub partitions: Option<i32>,
}

/// Table -> routes, cached per schema version.
#[derive(Debug)]
pub struct Router {
    config: Arc<Config>,
    database: String,
    registry: KcopRegistry,
    /// Keyed by the schema's address; the schema is kept alive so the address stays unique.
    cache: HashMap<usize, (SchemaRef, Arc<[Route]>)>,
}

impl Router {
    /// A router for `config`. `database` is the source database name (`{db}` in topic
    /// templates for PostgreSQL; for MySQL the namespace is the database).
    pub fn new(config: Arc<Config>, database: String, registry: KcopRegistry) -> Self {
        Self {
            config,
            database,
            registry,
            cache: HashMap::new(),
        }
    }

    /// Whether any mapping selects `table`.
    pub fn is_mapped(config: &Config, table: &TableId) -> bool {
        config
            .mappings_for(&table.namespace, &table.name)
            .next()
            .is_some()
    }

    /// The routes for a table at a schema version.
    ///
    /// # Errors
    /// When an output does not fit the table (unknown key or projected column, unavailable
    /// format).
    pub fn routes(&mut self, schema: &SchemaRef) -> Result<Arc<[Route]>, KcopError> {
        let key = Arc::as_ptr(schema) as usize;
        if let Some((_, r)) = self.cache.get(&key) {
            return Ok(r.clone());
        }
        let mut routes = Vec::new();
        for (_, mapping) in self
            .config
            .mappings_for(&schema.id.namespace, &schema.id.name)
        {
            for output in &mapping.outputs {
                routes.push(self.build(output, schema)?);
            }
        }
        let routes: Arc<[Route]> = routes.into();
        self.cache.insert(key, (schema.clone(), routes.clone()));
        Ok(routes)
    }

    fn build(&self, output: &Output, schema: &TableSchema) -> Result<Route, KcopError> {
        let db = if self.database.is_empty() {
            &schema.id.namespace
        } else {
            &self.database
        };
        let topic: Arc<str> = output
            .topic_for(db, &schema.id.namespace, &schema.id.name)
            .into();
        let table = schema.id.to_string();
        let plain = schema;
        // Formats see encrypted columns as the text the encryption step puts there.
        let published;
        let schema = if output.encrypt.is_empty() {
            plain
        } else {
            let columns = column_indexes(plain, &output.encrypt, "encrypted")?;
            published = ordo_kcop::encrypt::published_schema(plain, &columns);
            &published
        };
        let format: Arc<dyn Kcop> = match output.format {
            Format::Json => Arc::new(json::build(output, schema, topic.clone())?),
            Format::Debezium => debezium::build(output, schema, topic.clone())?,
            Format::CsvAudit => csv_audit::build(output, schema, topic.clone())?,
            Format::AuditRows => audit_rows::build(&self.config, output, schema, topic.clone())?,
            Format::Avro => avro::build(&self.config, output, schema, topic.clone())?,
            Format::Custom => {
                let name = output.kcop.as_deref().unwrap_or_default();
                let factory = self.registry.factories.get(name).ok_or_else(|| {
                    KcopError::Config {
                        table: table.clone(),
                        reason: format!(
                            "no KCOP named `{name}` is registered in this build; registered: {:?}",
                            self.registry.names().collect::<Vec<_>>()
                        ),
                    }
                })?;
                factory(output, schema, topic.clone())?
            }
        };
        let kcop = steps::chain(&self.config, output, plain, format)?;
        Ok(Route {
            kcop,
            topic,
            partitions: output.partitions.and_then(|p| i32::try_from(p).ok()),
        })
    }
}

/// Indexes of `names` in the schema, or an error naming the missing column.
///
/// # Errors
/// When a column does not exist.
pub fn column_indexes(
    schema: &TableSchema,
    names: &[String],
    what: &str,
) -> Result<Vec<usize>, KcopError> {
    names
        .iter()
        .map(|n| {
            schema.column_index(n).ok_or_else(|| KcopError::Config {
                table: schema.id.to_string(),
                reason: format!(
                    "{what} column `{n}` does not exist; the table has: {}",
                    schema
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        })
        .collect()
}

/// The key columns of an output for a table.
///
/// # Errors
/// When a configured key column does not exist.
pub fn key_indexes(output: &Output, schema: &TableSchema) -> Result<Vec<usize>, KcopError> {
    match output.key {
        KeyMode::Primary => Ok(schema.key.clone()),
        KeyMode::Columns => column_indexes(schema, &output.key_columns, "key"),
        KeyMode::None => Ok(Vec::new()),
    }
}
