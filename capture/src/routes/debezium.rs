//! The `debezium` format's builder. Options: `schemas` (bool, default true: include the
//! Kafka Connect `schema` parts, like `schemas.enable`) and `decimal_handling` (`precise`,
//! `string` or `double`; default `precise`).

use std::sync::Arc;

use ordo_config::Output;
use ordo_kcop::debezium::{DebeziumConfig, DebeziumKcop, DecimalHandling};
use ordo_kcop::json::{DeleteMode, TruncateMode};
use ordo_kcop::{Kcop, KcopError, TableSchema};

use super::{column_indexes, key_indexes};

const OPTIONS: &[&str] = &["schemas", "decimal_handling"];

/// The `debezium` KCOP for one table and output.
///
/// # Errors
/// When the output does not fit the table or an option is unknown or invalid.
pub(super) fn build(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    check_options(output, schema, OPTIONS)?;
    let schemas = match output.options.get("schemas") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid(output, schema, "schemas", v, "true or false"))?,
    };
    let decimals = match output.options.get("decimal_handling") {
        None => DecimalHandling::Precise,
        Some(v) => match v.as_str() {
            Some("precise") => DecimalHandling::Precise,
            Some("string") => DecimalHandling::String,
            Some("double") => DecimalHandling::Double,
            _ => {
                let expected = "one of precise, string, double";
                return Err(invalid(output, schema, "decimal_handling", v, expected));
            }
        },
    };
    let config = DebeziumConfig {
        topic,
        key: key_indexes(output, schema)?,
        columns: projection(output, schema)?,
        deletes: delete_mode(output),
        truncate: truncate_mode(output),
        schemas,
        decimals,
        version: concat!("ordo-", env!("CARGO_PKG_VERSION")).into(),
    };
    Ok(Arc::new(DebeziumKcop::new(config, schema)?))
}

/// The output's `columns` as indexes, or every column.
pub(super) fn projection(output: &Output, schema: &TableSchema) -> Result<Vec<usize>, KcopError> {
    match &output.columns {
        Some(cols) => column_indexes(schema, cols, "projected"),
        None => Ok((0..schema.columns.len()).collect()),
    }
}

/// Refuse option names the format does not know.
pub(super) fn check_options(
    output: &Output,
    schema: &TableSchema,
    valid: &[&str],
) -> Result<(), KcopError> {
    match output.options.keys().find(|k| !valid.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(KcopError::Config {
            table: schema.id.to_string(),
            reason: format!(
                "format `{}` (topic {}) has no option `{unknown}`; valid options: {}",
                output.format,
                output.topic,
                valid.join(", ")
            ),
        }),
    }
}

/// An option with a value of the wrong kind.
pub(super) fn invalid(
    output: &Output,
    schema: &TableSchema,
    option: &str,
    value: &serde_json::Value,
    expected: &str,
) -> KcopError {
    KcopError::Config {
        table: schema.id.to_string(),
        reason: format!(
            "options.{option} of format `{}` (topic {}) is {value}; expected {expected}",
            output.format, output.topic
        ),
    }
}

/// The output's delete handling.
pub(super) fn delete_mode(output: &Output) -> DeleteMode {
    match output.deletes {
        ordo_config::DeleteMode::Tombstone => DeleteMode::Tombstone,
        ordo_config::DeleteMode::Image => DeleteMode::Image,
    }
}

/// The output's truncate handling.
pub(super) fn truncate_mode(output: &Output) -> TruncateMode {
    match output.truncate {
        ordo_config::TruncateMode::Skip => TruncateMode::Skip,
        ordo_config::TruncateMode::Record => TruncateMode::Record,
    }
}
