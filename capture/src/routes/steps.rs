//! The row-level steps of an output (filter, column encryption, computed headers) that run
//! before and around its format.
//!
//! # Order
//! 1. `filter` sees the operation as captured (plaintext); when it is false the operation
//!    goes no further on this output (the transaction still commits).
//! 2. `encrypt` replaces the listed columns' values in both images with their encrypted text
//!    ([`ordo_kcop::encrypt`]).
//! 3. The format makes the records from the encrypted operation.
//! 4. `headers` are evaluated once on the encrypted operation (a header reading an encrypted
//!    column gets its encrypted text, never the plaintext) and added to every record the
//!    format made for it; a `null` result leaves that header out.
//!
//! # Error handling
//! Everything that can be known per table is checked when the chain is built: columns the
//! expressions read that the table lacks, unknown variable names, encrypted columns that do
//! not exist or are part of the record key, missing key material. An expression that fails
//! on one operation, or a filter that gives something else than a bool, stops the daemon
//! with an error naming the table, the output's topic and the expression.

use std::sync::Arc;

use ordo_config::{Config, Output};
use ordo_kcop::encrypt::{ColumnEncryptor, Keyring};
use ordo_kcop::expr::{Expr, ExprError};
use ordo_kcop::{Header, Kcop, KcopError, Operation, ProducerRecord, TableSchema};

use super::{column_indexes, key_indexes};

/// The output's chain: its row-level steps, then `format`.
///
/// # Errors
/// When a step does not fit the table (see the module docs).
pub(super) fn chain(
    config: &Config,
    output: &Output,
    schema: &TableSchema,
    format: Arc<dyn Kcop>,
) -> Result<Arc<dyn Kcop>, KcopError> {
    let out = OutputRef {
        table: schema.id.to_string(),
        topic: output.topic.clone(),
    };
    let filter = match &output.filter {
        Some(source) => Some(out.compile(source, schema, "filter")?),
        None => None,
    };
    let headers = output
        .headers
        .iter()
        .map(|(name, source)| Ok((name.clone(), out.compile(source, schema, name)?)))
        .collect::<Result<Vec<_>, KcopError>>()?;
    let encrypt = encryptor(config, output, schema, &out)?;
    if filter.is_none() && headers.is_empty() && encrypt.is_none() {
        return Ok(format);
    }
    Ok(Arc::new(Steps {
        out,
        filter,
        encrypt,
        headers,
        format,
    }))
}

/// Names the output in errors.
#[derive(Debug)]
struct OutputRef {
    /// `namespace.name`.
    table: String,
    /// The output's topic as configured.
    topic: String,
}

impl OutputRef {
    fn error(&self, reason: String) -> KcopError {
        KcopError::Config {
            table: self.table.clone(),
            reason,
        }
    }

    fn expr_error(&self, what: &str, expr: &Expr, e: &ExprError) -> KcopError {
        self.error(format!(
            "output for topic `{}`, {what} `{}`: {e}",
            self.topic,
            expr.source()
        ))
    }

    /// Compile `source` and check the names it uses against the table.
    fn compile(&self, source: &str, schema: &TableSchema, what: &str) -> Result<Expr, KcopError> {
        let what = describe(what);
        let expr = Expr::compile(source).map_err(|e| {
            self.error(format!(
                "output for topic `{}`, {what} `{source}`: {e}",
                self.topic
            ))
        })?;
        let unknown = expr.unknown_variables();
        if let Some(name) = unknown.first() {
            return Err(self.error(format!(
                "output for topic `{}`, {what} `{source}`: unknown name `{name}`; the variables \
                 are {}",
                self.topic,
                ordo_kcop::expr::VARIABLES.join(", ")
            )));
        }
        let columns = expr.unknown_columns(schema);
        if let Some(column) = columns.first() {
            return Err(self.error(format!(
                "output for topic `{}`, {what} `{source}`: column `{column}` does not exist; \
                 the table has: {}",
                self.topic,
                schema
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(expr)
    }
}

/// `filter`, or `header \`name\``.
fn describe(what: &str) -> String {
    if what == "filter" {
        what.to_owned()
    } else {
        format!("header `{what}`")
    }
}

/// The encryption step, when the output encrypts columns.
fn encryptor(
    config: &Config,
    output: &Output,
    schema: &TableSchema,
    out: &OutputRef,
) -> Result<Option<ColumnEncryptor>, KcopError> {
    if output.encrypt.is_empty() {
        return Ok(None);
    }
    let columns = column_indexes(schema, &output.encrypt, "encrypted")?;
    let key = key_indexes(output, schema)?;
    if let Some(&i) = columns.iter().find(|i| key.contains(i)) {
        return Err(out.error(format!(
            "output for topic `{}`: column `{}` is part of the record key and cannot be \
             encrypted (each change would get a different key); remove it from `encrypt`, or \
             key the records by other columns (`key: columns`)",
            out.topic, schema.columns[i].name
        )));
    }
    let keyring = keyring(config).map_err(|reason| out.error(reason))?;
    ColumnEncryptor::new(Arc::new(keyring), schema, columns).map(Some)
}

/// The keys of the config's `encryption` section, the active one selected.
fn keyring(config: &Config) -> Result<Keyring, String> {
    let Some(encryption) = &config.encryption else {
        return Err("columns are encrypted but there is no `encryption` section".to_owned());
    };
    let mut keyring = Keyring::new();
    for key in &encryption.keys {
        let bytes = key.key_bytes().ok_or_else(|| {
            format!(
                "encryption key `{}` has no valid material; check the config with `ordo check`",
                key.id
            )
        })?;
        keyring
            .add(&key.id, bytes)
            .map_err(|e| format!("encryption key `{}`: {e}", key.id))?;
    }
    keyring
        .set_active(&encryption.active_key)
        .map_err(|e| format!("encryption.active_key: {e}"))?;
    Ok(keyring)
}

/// An output's steps around its format.
#[derive(Debug)]
struct Steps {
    out: OutputRef,
    filter: Option<Expr>,
    encrypt: Option<ColumnEncryptor>,
    headers: Vec<(String, Expr)>,
    format: Arc<dyn Kcop>,
}

impl Kcop for Steps {
    fn process(&self, op: &Operation<'_>, out: &mut Vec<ProducerRecord>) -> Result<(), KcopError> {
        if let Some(filter) = &self.filter {
            let keep = filter
                .matches(op)
                .map_err(|e| self.out.expr_error("filter", filter, &e))?;
            if !keep {
                return Ok(());
            }
        }
        let encrypted = match &self.encrypt {
            Some(enc) => Some(enc.encrypt(op.change)?),
            None => None,
        };
        let op = Operation {
            change: encrypted.as_ref().unwrap_or(op.change),
            ..*op
        };
        let start = out.len();
        self.format.process(&op, out)?;
        if self.headers.is_empty() || out.len() == start {
            return Ok(());
        }
        let headers = self.header_values(&op)?;
        for record in &mut out[start..] {
            record.headers.extend(headers.iter().cloned());
        }
        Ok(())
    }
}

impl Steps {
    fn header_values(&self, op: &Operation<'_>) -> Result<Vec<Header>, KcopError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, expr) in &self.headers {
            let value = expr
                .header_value(op)
                .map_err(|e| self.out.expr_error(&describe(name), expr, &e))?;
            if let Some(value) = value {
                headers.push(Header {
                    name: name.clone(),
                    value,
                });
            }
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ordo_kcop::{Column, ColumnKind, TableId};

    use super::*;

    const KEY: &str = "abababababababababababababababababababababababababababababababab";

    fn build(output: &str) -> Result<Arc<dyn Kcop>, KcopError> {
        let yaml = format!(
            "source:\n  postgres:\n    user: ordo\n    database: shop\nkafka:\n  \
             bootstrap_servers: \"k:9092\"\n  commit_topic: c\nencryption:\n  active_key: k1\n  \
             keys: [{{ id: k1, env: KEY }}]\nmappings:\n  - tables: [public.t]\n    outputs:\n      \
             - {{ topic: t, format: json, {output} }}\n"
        );
        let config = ordo_config::parse_with_env(&yaml, "test.yaml", |name| {
            (name == "KEY").then(|| KEY.to_owned())
        })
        .unwrap();
        let schema = TableSchema {
            id: TableId::new("public", "t"),
            version: 1,
            columns: ["id", "email"]
                .map(|name| Column {
                    name: name.to_owned(),
                    type_name: "text".to_owned(),
                    kind: ColumnKind::Text,
                    nullable: true,
                })
                .to_vec(),
            key: vec![0],
        };
        let output = &config.mappings[0].outputs[0];
        let format = Arc::new(super::super::json::build(output, &schema, "t".into())?);
        chain(&config, output, &schema, format)
    }

    #[test]
    fn names_unknown_columns_and_variables_when_built() {
        let err = build("filter: 'after.emial != null'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("filter `after.emial != null`: column `emial` does not exist"),
            "{err}"
        );
        assert!(err.contains("output for topic `t`"), "{err}");
        let err = build("headers: { h: 'aftr.email' }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("header `h` `aftr.email`: unknown name `aftr`"),
            "{err}"
        );
    }

    #[test]
    fn refuses_to_encrypt_key_columns() {
        let err = build("encrypt: [id]").unwrap_err().to_string();
        assert!(
            err.contains("column `id` is part of the record key"),
            "{err}"
        );
        assert!(build("encrypt: [email], filter: 'has(after.email)'").is_ok());
    }
}
