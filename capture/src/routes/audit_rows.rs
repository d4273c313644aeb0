//! The `audit-rows` format's builder. Options: `encoding` (`json`, the default; `avro` is not
//! available yet) and `timestamps` (`iso`, `epoch_millis`, `epoch_micros`, as for `json`).

use std::sync::Arc;

use ordo_config::Output;
use ordo_kcop::audit_rows::{AuditRowsConfig, AuditRowsKcop};
use ordo_kcop::json::{JsonWriter, TimestampForm};
use ordo_kcop::{Kcop, KcopError, TableSchema};

use super::debezium::{check_options, delete_mode, invalid, projection, truncate_mode};
use super::key_indexes;

/// The `audit-rows` KCOP for one table and output.
///
/// # Errors
/// When the output does not fit the table or an option is unknown or invalid.
pub(super) fn build(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    check_options(output, schema, &["encoding", "timestamps"])?;
    match output.options.get("encoding") {
        None => {}
        Some(v) if v.as_str() == Some("json") => {}
        Some(v) if v.as_str() == Some("avro") => {
            return Err(KcopError::Config {
                table: schema.id.to_string(),
                reason: format!(
                    "options.encoding `avro` of format `audit-rows` (topic {}) is not available in this build of ordo yet; use `encoding: json`, or format `avro` for Avro records",
                    output.topic
                ),
            });
        }
        Some(v) => return Err(invalid(output, schema, "encoding", v, "`json` or `avro`")),
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
