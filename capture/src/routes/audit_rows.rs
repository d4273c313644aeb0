//! The `audit-rows` format's builder. Options: `encoding` (`json`, the default, or `avro`);
//! with `json`, `timestamps` (`iso`, `epoch_millis`, `epoch_micros`, as for `json`); with
//! `avro`, the `avro` format's `schema_topic`, `decimals` and `namespace`, and its schema
//! registration (see [`super::avro`]): subjects `<topic>-key` and `<topic>-value` with a
//! schema registry, the schema topic (default `<topic>.schemas`) without one.

use std::sync::Arc;

use ordo_config::{Config, Output};
use ordo_kcop::audit_rows::{AuditAvroFormat, AuditRowsConfig, AuditRowsKcop};
use ordo_kcop::json::{JsonWriter, TimestampForm};
use ordo_kcop::{Kcop, KcopError, TableSchema};

use super::avro;
use super::debezium::{check_options, delete_mode, invalid, projection, truncate_mode};
use super::key_indexes;

const OPTIONS: [&str; 5] = [
    "encoding",
    "timestamps",
    "schema_topic",
    "decimals",
    "namespace",
];

/// The options that only apply to `encoding: avro`.
const AVRO_OPTIONS: [&str; 3] = ["schema_topic", "decimals", "namespace"];

/// The `audit-rows` KCOP for one table and output.
///
/// # Errors
/// When the output does not fit the table, an option is unknown, invalid or meant for the
/// other encoding, or (Avro) the schema registry refuses or cannot be reached.
pub(super) fn build(
    config: &Config,
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    check_options(output, schema, &OPTIONS)?;
    match output.options.get("encoding") {
        None => build_json(output, schema, topic),
        Some(v) if v.as_str() == Some("json") => build_json(output, schema, topic),
        Some(v) if v.as_str() == Some("avro") => build_avro(config, output, schema, topic),
        Some(v) => Err(invalid(output, schema, "encoding", v, "`json` or `avro`")),
    }
}

fn build_json(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    if let Some(name) = AVRO_OPTIONS
        .iter()
        .find(|n| output.options.contains_key(**n))
    {
        return Err(only_for(output, schema, name, "avro"));
    }
    let timestamps = match output.options.get("timestamps") {
        None => TimestampForm::Iso,
        Some(v) => match v.as_str() {
            Some("iso") => TimestampForm::Iso,
            Some("epoch_millis") => TimestampForm::EpochMillis,
            Some("epoch_micros") => TimestampForm::EpochMicros,
            _ => {
                let expected = "one of iso, epoch_millis, epoch_micros";
                return Err(invalid(output, schema, "timestamps", v, expected));
            }
        },
    };
    let config = AuditRowsConfig {
        topic,
        key: key_indexes(output, schema)?,
        columns: projection(output, schema)?,
        deletes: delete_mode(output),
        truncate: truncate_mode(output),
        writer: JsonWriter { timestamps },
    };
    Ok(Arc::new(AuditRowsKcop::new(
        config,
        Arc::new(schema.clone()),
    )?))
}

fn build_avro(
    config: &Config,
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    if output.options.contains_key("timestamps") {
        return Err(only_for(output, schema, "timestamps", "json"));
    }
    let config_error = |reason: String| KcopError::Config {
        table: schema.id.to_string(),
        reason,
    };
    let mut options = avro::Options::default();
    for name in AVRO_OPTIONS {
        if let Some(value) = output.options.get(name) {
            avro::parse_option(&mut options, name, value).map_err(config_error)?;
        }
    }
    let settings = avro::settings(output, schema, topic.clone(), &options)?;
    let format = AuditAvroFormat::new(schema, settings)?;
    let framing = avro::framing(
        config,
        &topic,
        &options,
        format.key_schema(),
        format.value_schema(),
    )
    .map_err(config_error)?;
    Ok(Arc::new(format.into_kcop(framing)))
}

/// An option set for the other encoding.
fn only_for(output: &Output, schema: &TableSchema, option: &str, encoding: &str) -> KcopError {
    KcopError::Config {
        table: schema.id.to_string(),
        reason: format!(
            "options.{option} of format `audit-rows` (topic {}) applies to `encoding: {encoding}` only; remove it, or set `encoding: {encoding}`",
            output.topic
        ),
    }
}
