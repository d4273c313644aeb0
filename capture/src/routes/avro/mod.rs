//! The `avro` format's builder: options, and schema registration when a route is built.
//!
//! Options (`output.options`):
//! - `schema_topic`: where schemas go without a schema registry (default `<topic>.schemas`);
//!   refused when `schema_registry` is configured.
//! - `decimals`: `bytes` (default; Avro `decimal` where the column declares a precision) or
//!   `string` (exact text, which also carries `NaN` and infinities).
//! - `namespace`: prefix of the Avro record names (default `ordo`).
//!
//! # Registration
//! With `schema_registry` configured, the key and value schemas are registered under the
//! subjects `<topic>-key` and `<topic>-value` (TopicNameStrategy) when the route for a table
//! schema version is built, that is on the first change of that version, and the records use
//! the returned ids. Ids are cached per subject and schema for the life of the process, so a
//! schema seen again costs no request. Routes are built from the pipeline's async code; the
//! request is blocking HTTP with timeouts that does not need the runtime, run through
//! `block_in_place` on a multi-threaded runtime (on a current-thread runtime it blocks that
//! thread for the request's duration, which cannot deadlock because nothing the request needs
//! runs on it).

mod registry;
#[cfg(test)]
mod registry_tests;
#[cfg(test)]
pub(crate) mod test_registry;

use std::sync::Arc;

use ordo_config::{Config, Output};
use ordo_kcop::avro::{
    AvroFormat, AvroSchema, AvroSettings, DecimalMode, Framing, is_avro_namespace,
};
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::{Kcop, KcopError, TableSchema};
use serde_json::Value;

use super::{column_indexes, key_indexes};
use registry::RegistryClient;

const OPTIONS: &str = "schema_topic, decimals, namespace";

/// Options of one `avro` output (also `audit-rows` in Avro).
#[derive(Debug, Default)]
pub(super) struct Options {
    schema_topic: Option<String>,
    decimals: DecimalMode,
    namespace: Option<String>,
}

/// The `avro` KCOP for one table and output.
///
/// # Errors
/// When the output does not fit the table (unknown option or column, a column without an
/// Avro mapping), or the schema registry refuses or cannot be reached.
pub(super) fn build(
    config: &Config,
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    let table = schema.id.to_string();
    let config_error = |reason: String| KcopError::Config {
        table: table.clone(),
        reason,
    };
    let options = parse_options(output).map_err(config_error)?;
    let format = AvroFormat::new(schema, settings(output, schema, topic.clone(), &options)?)?;
    let framing = framing(
        config,
        &topic,
        &options,
        format.key_schema(),
        format.value_schema(),
    )
    .map_err(config_error)?;
    Ok(Arc::new(format.into_kcop(framing)))
}

/// How the records of `topic` announce their schemas: with `schema_registry` configured, the
/// ids of `key` and `value` registered under `<topic>-key` and `<topic>-value`; without, the
/// schema topic.
///
/// # Errors
/// When `schema_topic` is set with a registry, or the registry refuses or cannot be reached.
pub(super) fn framing(
    config: &Config,
    topic: &str,
    options: &Options,
    key: Option<&AvroSchema>,
    value: &AvroSchema,
) -> Result<Framing, String> {
    match &config.schema_registry {
        Some(registry) => {
            if options.schema_topic.is_some() {
                return Err(
                    "options.schema_topic is only used without a schema registry; remove it, or remove `schema_registry`".into(),
                );
            }
            let client = RegistryClient::shared(registry).map_err(|e| e.to_string())?;
            register(&client, topic, key, value).map_err(|e| e.to_string())
        }
        None => Ok(Framing::SingleObject {
            schema_topic: options
                .schema_topic
                .clone()
                .unwrap_or_else(|| format!("{topic}.schemas"))
                .into(),
        }),
    }
}

/// The settings of an Avro output (`avro`, or `audit-rows` in Avro).
///
/// # Errors
/// When a key, projected or encrypted column does not exist.
pub(super) fn settings(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
    options: &Options,
) -> Result<AvroSettings, KcopError> {
    let columns = match &output.columns {
        Some(cols) => column_indexes(schema, cols, "projected")?,
        None => (0..schema.columns.len()).collect(),
    };
    Ok(AvroSettings {
        topic,
        key: key_indexes(output, schema)?,
        columns,
        deletes: match output.deletes {
            ordo_config::DeleteMode::Tombstone => DeleteMode::Tombstone,
            ordo_config::DeleteMode::Image => DeleteMode::Image,
        },
        truncate: match output.truncate {
            ordo_config::TruncateMode::Skip => TruncateMode::Skip,
            ordo_config::TruncateMode::Record => TruncateMode::Record,
        },
        decimals: options.decimals,
        namespace: options.namespace.clone().unwrap_or_else(|| "ordo".into()),
        text_columns: column_indexes(schema, &output.encrypt, "encrypted")?,
    })
}

/// The options of an `avro` output.
///
/// # Errors
/// When an option is unknown or invalid.
fn parse_options(output: &Output) -> Result<Options, String> {
    let mut options = Options::default();
    for (name, value) in &output.options {
        if !parse_option(&mut options, name, value)? {
            return Err(format!(
                "the avro format has no option `{name}`; valid options: {OPTIONS}"
            ));
        }
    }
    Ok(options)
}

/// Parse the Avro option `name` into `options`; `Ok(false)` when `name` is not one.
///
/// # Errors
/// When the value is invalid.
pub(super) fn parse_option(
    options: &mut Options,
    name: &str,
    value: &Value,
) -> Result<bool, String> {
    match name {
        "schema_topic" => options.schema_topic = Some(topic_name(text(name, value)?)?),
        "decimals" => {
            options.decimals = match text(name, value)? {
                "bytes" => DecimalMode::Bytes,
                "string" => DecimalMode::String,
                other => {
                    return Err(format!(
                        "options.decimals `{other}` is not one of bytes, string"
                    ));
                }
            }
        }
        "namespace" => {
            let ns = text(name, value)?;
            if !is_avro_namespace(ns) {
                return Err(format!(
                    "options.namespace `{ns}` is not a valid Avro namespace; use dot-separated names of letters, digits and `_`, not starting with a digit"
                ));
            }
            options.namespace = Some(ns.to_owned());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn topic_name(topic: &str) -> Result<String, String> {
    let valid = topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid && topic != "." && topic != ".." {
        Ok(topic.to_owned())
    } else {
        Err(format!(
            "options.schema_topic `{topic}` is not a valid Kafka topic name; use up to 249 letters, digits, `.`, `_` and `-`"
        ))
    }
}

fn text<'v>(name: &str, value: &'v Value) -> Result<&'v str, String> {
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("options.{name} must be a non-empty string, found {value}"))
}

/// Register the output's schemas (subjects `<topic>-key`, `<topic>-value`) and return the
/// framing with their ids.
fn register(
    client: &RegistryClient,
    topic: &str,
    key: Option<&AvroSchema>,
    value: &AvroSchema,
) -> Result<Framing, registry::RegistryError> {
    blocking(|| {
        let key_id = match key {
            Some(key) => Some(client.register(&format!("{topic}-key"), &key.json)?),
            None => None,
        };
        let value_id = client.register(&format!("{topic}-value"), &value.json)?;
        Ok(Framing::Registry { key_id, value_id })
    })
}

/// Run blocking I/O from code that may be inside a tokio runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
