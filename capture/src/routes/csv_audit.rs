//! The `csv-audit` format's builder. Option: `delimiter` (one ASCII character other than `"`,
//! CR and LF; default `,`).

use std::sync::Arc;

use ordo_config::Output;
use ordo_kcop::csv_audit::CsvAuditKcop;
use ordo_kcop::{Kcop, KcopError, TableSchema};

use super::debezium::{check_options, delete_mode, invalid, projection, truncate_mode};
use super::key_indexes;

/// The `csv-audit` KCOP for one table and output.
///
/// # Errors
/// When the output does not fit the table or an option is unknown or invalid.
pub(super) fn build(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    check_options(output, schema, &["delimiter"])?;
    let delimiter = match output.options.get("delimiter") {
        None => b',',
        Some(v) => match v.as_str().map(str::as_bytes) {
            Some([d]) if d.is_ascii() && !matches!(d, b'"' | b'\r' | b'\n') => *d,
            _ => {
                let expected =
                    "one ASCII character other than `\"`, CR and LF, e.g. \",\" or \"|\"";
                return Err(invalid(output, schema, "delimiter", v, expected));
            }
        },
    };
    Ok(Arc::new(CsvAuditKcop {
        topic,
        table: Arc::new(schema.clone()),
        key: key_indexes(output, schema)?,
        columns: projection(output, schema)?,
        deletes: delete_mode(output),
        truncate: truncate_mode(output),
        delimiter,
    }))
}
