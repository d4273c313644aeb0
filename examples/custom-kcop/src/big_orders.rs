//! The `big-orders` KCOP: one monitoring record for each order whose amount exceeds a threshold.
//!
//! For an insert or an update of a mapped table (meant for `public.orders`) whose after image's
//! amount is strictly more than the threshold, it makes one record on the output's topic:
//!
//! ```json
//! key:   {"order_id":4}
//! value: {"order_id":4,"amount":"500.01","customer":"dee","op":"c"}
//! ```
//!
//! `amount` is the exact text the source sent (a `numeric(10,2)` column gives `"1200.00"`),
//! `op` is `c` (insert) or `u` (update). Every other operation (smaller amounts, NULL or NaN
//! amounts, deletes, truncates, snapshot reads of rows that existed before the capture started)
//! makes nothing on this output; the transaction still gets its commit record.
//!
//! # Options
//! From the output's `options` in the config file, all optional:
//! - `threshold`: a decimal number, best written as a string (`"500"`, `"1250.50"`); default
//!   `"500"`. A YAML number works too, unless it needs an exponent.
//! - `amount_column`, `id_column`, `customer_column`: the columns to read; default `amount`,
//!   `id` and `customer`. The amount column must be an exact number (`numeric`, `decimal` or an
//!   integer type): amounts are compared exactly, never as floats.
//!
//! # Error handling
//! Everything that can be known before the first change is checked by [`build`], which the
//! daemon calls once per table and schema version: unknown options, a threshold that is not a
//! number, columns the table lacks (named with the table and the columns it has), an amount
//! column that is not exact, and output settings this KCOP does not use (`columns`, `key`).
//! Each is a [`KcopError::Config`] that stops the daemon before anything of that table is
//! published.

use std::sync::Arc;

use ordo_config::{KeyMode, Output};
use ordo_kcop::json::JsonWriter;
use ordo_kcop::{
    Change, ColumnKind, Kcop, KcopError, Op, Operation, ProducerRecord, TableSchema, Value,
};
use serde::Deserialize;

use crate::amount::{Amount, Reading};

/// The name this KCOP is registered under; the config file selects it with
/// `format: custom` and `kcop: big-orders`.
pub const NAME: &str = "big-orders";

/// The threshold when the output's options set none.
pub const DEFAULT_THRESHOLD: &str = "500";

/// The output's `options`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Amounts strictly above this make a record.
    #[serde(default)]
    threshold: Option<serde_json::Value>,
    /// The column holding the amount.
    #[serde(default = "default_amount_column")]
    amount_column: String,
    /// The column identifying the order.
    #[serde(default = "default_id_column")]
    id_column: String,
    /// The column naming the customer.
    #[serde(default = "default_customer_column")]
    customer_column: String,
}

fn default_amount_column() -> String {
    "amount".to_owned()
}

fn default_id_column() -> String {
    "id".to_owned()
}

fn default_customer_column() -> String {
    "customer".to_owned()
}

/// The `big-orders` KCOP for one table at one schema version, as [`build`] makes it.
#[derive(Debug, Clone)]
pub struct BigOrders {
    /// The output's topic, already resolved for the table.
    topic: Arc<str>,
    /// Amounts strictly above it make a record.
    threshold: Amount,
    /// `namespace.name`, for errors.
    table: String,
    /// Index of the order id column in the table's rows.
    id: usize,
    /// Index of the amount column.
    amount: usize,
    /// Name of the amount column, for errors.
    amount_name: String,
    /// Index of the customer column.
    customer: usize,
}

/// The factory the daemon calls for each table and schema version an output with
/// `kcop: big-orders` applies to; register it with
/// `registry.register(big_orders::NAME, Arc::new(big_orders::build))`.
///
/// # Errors
/// [`KcopError::Config`] naming the table when the options or the table do not fit (see the
/// module's `# Error handling`).
pub fn build(
    output: &Output,
    schema: &TableSchema,
    topic: Arc<str>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    Ok(Arc::new(BigOrders::new(output, schema, topic)?))
}

impl BigOrders {
    /// The KCOP for `schema`, configured by `output`'s options, writing to `topic`.
    ///
    /// # Errors
    /// As [`build`].
    pub fn new(output: &Output, schema: &TableSchema, topic: Arc<str>) -> Result<Self, KcopError> {
        let table = schema.id.to_string();
        let config_error = |reason: String| KcopError::Config {
            table: table.clone(),
            reason,
        };
        if output.columns.is_some() || output.key != KeyMode::Primary {
            return Err(config_error(format!(
                "the `{NAME}` KCOP makes its own key (the order id) and fields, so `columns` and \
                 `key` do nothing on its output `{}`; remove them",
                output.topic
            )));
        }
        let options: Options = serde_json::from_value(serde_json::Value::Object(
            output.options.clone(),
        ))
        .map_err(|e| {
            config_error(format!(
                "options of the `{NAME}` KCOP on output `{}`: {e}; the options are \
                 threshold, amount_column, id_column and customer_column",
                output.topic
            ))
        })?;
        let threshold = threshold(options.threshold.as_ref()).map_err(config_error)?;
        let amount = column(schema, &options.amount_column, "amount_column")?;
        ensure_exact(schema, amount)?;
        Ok(Self {
            topic,
            threshold,
            id: column(schema, &options.id_column, "id_column")?,
            amount,
            amount_name: options.amount_column,
            customer: column(schema, &options.customer_column, "customer_column")?,
            table,
        })
    }

    /// The threshold in force (normalised: `500.00` reads `500`).
    pub fn threshold(&self) -> &Amount {
        &self.threshold
    }

    /// The exact amount text when `row`'s amount exceeds the threshold.
    fn exceeding(&self, row: &[Value]) -> Result<Option<String>, KcopError> {
        match Reading::of(row.get(self.amount).unwrap_or(&Value::Null)) {
            Reading::Number(amount, text) if amount > self.threshold => Ok(Some(text)),
            Reading::Infinite => Ok(Some("Infinity".to_owned())),
            Reading::Number(..) | Reading::Nothing => Ok(None),
            Reading::NotExact => Err(KcopError::Encode {
                table: self.table.clone(),
                column: self.amount_name.clone(),
                reason: format!(
                    "the `{NAME}` KCOP got a value that is not an exact number; this is a bug \
                     in the source's type mapping, please report it"
                ),
            }),
        }
    }

    /// The monitoring record for `change`, whose after image is `row` with amount `amount`.
    fn record(&self, change: &Change, row: &[Value], amount: &str) -> ProducerRecord {
        let writer = JsonWriter::default();
        let id = row.get(self.id).unwrap_or(&Value::Null);
        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(b"{\"order_id\":");
        writer.value(&mut key, id);
        key.push(b'}');
        let mut value = Vec::with_capacity(96);
        value.extend_from_slice(&key[..key.len() - 1]);
        value.extend_from_slice(b",\"amount\":");
        JsonWriter::string(&mut value, amount);
        // A customer the source did not send (unchanged TOAST) is left out, never `null`.
        if let Some(customer) = row.get(self.customer).filter(|v| !v.is_marker()) {
            value.extend_from_slice(b",\"customer\":");
            writer.value(&mut value, customer);
        }
        value.extend_from_slice(b",\"op\":");
        JsonWriter::string(&mut value, change.op.code());
        value.push(b'}');
        ProducerRecord::new(self.topic.clone(), Some(key), Some(value))
    }
}

impl Kcop for BigOrders {
    /// Inserts and updates whose after image's amount exceeds the threshold make one record;
    /// everything else makes none.
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        let change = op.change;
        if !matches!(change.op, Op::Insert | Op::Update) {
            return Ok(());
        }
        let Some(row) = change.after.as_deref() else {
            return Ok(());
        };
        if let Some(amount) = self.exceeding(row)? {
            out.push(self.record(change, row, &amount));
        }
        Ok(())
    }
}

/// The threshold from its option value; the error says what is wrong and how to write it.
fn threshold(value: Option<&serde_json::Value>) -> Result<Amount, String> {
    let text = match value {
        None => DEFAULT_THRESHOLD.to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "options.threshold is {other}, not a number; write it like \"500\" or \"1250.50\""
            ));
        }
    };
    Amount::parse(&text).ok_or_else(|| {
        format!(
            "options.threshold `{text}` is not a plain decimal number; write it as a string \
             of digits with an optional `-` and `.`, like \"500\" or \"1250.50\""
        )
    })
}

/// The index of the column `name` (set by the option `option`), or an error naming the table,
/// the column and the columns the table has.
fn column(schema: &TableSchema, name: &str, option: &str) -> Result<usize, KcopError> {
    schema.column_index(name).ok_or_else(|| KcopError::Config {
        table: schema.id.to_string(),
        reason: format!(
            "the `{NAME}` KCOP reads column `{name}` (options.{option}), which the table does \
             not have; it has: {}. Set options.{option} to one of those, or map `{NAME}` to \
             another table",
            schema
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The amount column must hold exact numbers.
fn ensure_exact(schema: &TableSchema, index: usize) -> Result<(), KcopError> {
    let Some(col) = schema.columns.get(index) else {
        return Ok(());
    };
    match col.kind {
        ColumnKind::Decimal { .. } | ColumnKind::Int(_) | ColumnKind::UInt(_) => Ok(()),
        _ => Err(KcopError::Config {
            table: schema.id.to_string(),
            reason: format!(
                "the `{NAME}` KCOP compares amounts exactly, but column `{}` is `{}`, not an \
                 exact number; use a numeric, decimal or integer column (an encrypted column \
                 is text and cannot be compared)",
                col.name, col.type_name
            ),
        }),
    }
}

#[cfg(test)]
mod tests;
