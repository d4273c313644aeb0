//! The `json` format's builder: options `timestamps` (iso, epoch_millis, epoch_micros) and
//! `envelope` (bool).

use std::sync::Arc;

use ordo_config::Output;
use ordo_kcop::json::{DeleteMode, JsonKcop, JsonWriter, TimestampForm, TruncateMode};
use ordo_kcop::{KcopError, TableSchema};

use super::{column_indexes, key_indexes};

pub(super) fn build(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<JsonKcop, KcopError> {
    let columns = match &output.columns {
        Some(cols) => column_indexes(schema, cols, "projected")?,
        None => (0..schema.columns.len()).collect(),
    };
    let timestamps = match output.options.get("timestamps").and_then(|v| v.as_str()) {
        None | Some("iso") => TimestampForm::Iso,
        Some("epoch_millis") => TimestampForm::EpochMillis,
        Some("epoch_micros") => TimestampForm::EpochMicros,
        Some(other) => {
            return Err(KcopError::Config {
                table: schema.id.to_string(),
                reason: format!(
                    "options.timestamps `{other}` is not one of iso, epoch_millis, epoch_micros"
                ),
            });
        }
    };
    Ok(JsonKcop {
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
        envelope: output
            .options
            .get("envelope")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        writer: JsonWriter { timestamps },
    })
}
