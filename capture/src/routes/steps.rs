//! The row-level steps of an output (filter, column encryption, routing, computed headers)
//! that run before and around its format.
//!
//! # Order
//! 1. `filter` sees the operation as captured (plaintext); when it is false the operation
//!    goes no further on this output (the transaction still commits).
//! 2. `encrypt` replaces the listed columns' values in both images with their encrypted text
//!    ([`ordo_kcop::encrypt`]).
//! 3. The format makes the records from the encrypted operation.
//! 4. `route` is evaluated once on the operation as captured (plaintext, like `filter`) and
//!    moves every record the format made for it on the output's topic to the topic it names,
//!    keeping the record's explicit partition, if any. Records the format writes elsewhere (the
//!    `avro` format's schema topic, a custom KCOP's side topics) stay where they are, and
//!    schema subjects and record names keep following the output's topic. The pipeline creates
//!    a routed topic on first use with the output's `partitions`. Because the route sees
//!    plaintext, a route that reads an encrypted column reveals that value in the topic name:
//!    route by columns that are not encrypted.
//! 5. `headers` are evaluated once on the encrypted operation (a header reading an encrypted
//!    column gets its encrypted text, never the plaintext) and added to every record the
//!    format made for it; a `null` result leaves that header out.
//!
//! # Error handling
//! Everything that can be known per table is checked when the chain is built: columns the
//! expressions read that the table lacks, unknown variable names, encrypted columns that do
//! not exist or are part of the record key, missing key material. An expression that fails
//! on one operation, a filter that gives something else than a bool, or a route that gives
//! something else than a valid topic name stops the daemon with an error naming the table,
//! the output's topic and the expression (never the row's values).

use std::sync::Arc;

use ordo_config::{Config, Output, Source};
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
    let route = match &output.route {
        Some(source) => Some(Routing {
            own: own_topic(config, output, schema),
            expr: out.compile(source, schema, "route")?,
        }),
        None => None,
    };
    let headers = output
        .headers
        .iter()
        .map(|(name, source)| Ok((name.clone(), out.compile(source, schema, &header(name))?)))
        .collect::<Result<Vec<_>, KcopError>>()?;
    let encrypt = encryptor(config, output, schema, &out)?;
    if filter.is_none() && route.is_none() && headers.is_empty() && encrypt.is_none() {
        return Ok(format);
    }
    Ok(Arc::new(Steps {
        out,
        filter,
        encrypt,
        route,
        headers,
        format,
    }))
}

/// The output's own topic for this table, named as the router names it: `{db}` is the
/// PostgreSQL database, or the table's namespace (its database) for MySQL.
fn own_topic(config: &Config, output: &Output, schema: &TableSchema) -> Arc<str> {
    let db = match &config.source {
        Source::Postgres(pg) => pg.database.as_str(),
        Source::Mysql(_) => schema.id.namespace.as_str(),
    };
    output
        .topic_for(db, &schema.id.namespace, &schema.id.name)
        .into()
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

    /// Compile `source` (the output's `what`) and check the names it uses against the table.
    fn compile(&self, source: &str, schema: &TableSchema, what: &str) -> Result<Expr, KcopError> {
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

/// How errors name the expression of header `name`.
fn header(name: &str) -> String {
    format!("header `{name}`")
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
    route: Option<Routing>,
    headers: Vec<(String, Expr)>,
    format: Arc<dyn Kcop>,
}

/// An output's `route`.
#[derive(Debug)]
struct Routing {
    /// The output's own topic for this table: the records the route moves.
    own: Arc<str>,
    expr: Expr,
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
        let published = Operation {
            change: encrypted.as_ref().unwrap_or(op.change),
            ..*op
        };
        let start = out.len();
        self.format.process(&published, out)?;
        if let Some(route) = &self.route {
            self.reroute(route, op, &mut out[start..])?;
        }
        if self.headers.is_empty() || out.len() == start {
            return Ok(());
        }
        let headers = self.header_values(&published)?;
        for record in &mut out[start..] {
            record.headers.extend(headers.iter().cloned());
        }
        Ok(())
    }
}

impl Steps {
    /// Move the `records` on the output's own topic to the topic `route` gives for `op`, the
    /// operation as captured.
    fn reroute(
        &self,
        route: &Routing,
        op: &Operation<'_>,
        records: &mut [ProducerRecord],
    ) -> Result<(), KcopError> {
        if !records.iter().any(|r| r.topic == route.own) {
            return Ok(());
        }
        let topic = route
            .expr
            .topic_name(op)
            .map_err(|e| self.out.expr_error("route", &route.expr, &e))?;
        for record in records.iter_mut().filter(|r| r.topic == route.own) {
            record.topic = topic.clone();
        }
        Ok(())
    }

    fn header_values(&self, op: &Operation<'_>) -> Result<Vec<Header>, KcopError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, expr) in &self.headers {
            let value = expr
                .header_value(op)
                .map_err(|e| self.out.expr_error(&header(name), expr, &e))?;
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

    use ordo_kcop::{
        Change, Column, ColumnKind, Op, SourceInfo, TableId, Timestamp, TxnBegin, Value,
    };

    use super::*;

    const KEY: &str = "abababababababababababababababababababababababababababababababab";

    /// `public.t`: text columns `id` (the key) and `email`.
    fn schema() -> TableSchema {
        TableSchema {
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
        }
    }

    /// A config with one output to topic `t` with `fields`.
    fn config(fields: &str) -> Config {
        let yaml = format!(
            "source:\n  postgres:\n    user: ordo\n    database: shop\nkafka:\n  \
             bootstrap_servers: \"k:9092\"\n  commit_topic: c\nencryption:\n  active_key: k1\n  \
             keys: [{{ id: k1, env: KEY }}]\nmappings:\n  - tables: [public.t]\n    outputs:\n      \
             - {{ topic: t, format: json, {fields} }}\n"
        );
        ordo_config::parse_with_env(&yaml, "test.yaml", |name| {
            (name == "KEY").then(|| KEY.to_owned())
        })
        .unwrap()
    }

    fn build(fields: &str) -> Result<Arc<dyn Kcop>, KcopError> {
        let config = config(fields);
        let output = &config.mappings[0].outputs[0];
        let schema = schema();
        let format = Arc::new(super::super::json::build(output, &schema, "t".into())?);
        chain(&config, output, &schema, format)
    }

    /// The records `kcop` makes for the insert of the row `(id, email)`.
    fn insert(kcop: &dyn Kcop, id: &str, email: &str) -> Result<Vec<ProducerRecord>, KcopError> {
        let change = Change {
            table: Arc::new(schema()),
            op: Op::Insert,
            before: None,
            after: Some(vec![
                Value::Text(id.to_owned()),
                Value::Text(email.to_owned()),
            ]),
            op_index: 0,
        };
        let txn = TxnBegin {
            id: "7".into(),
            commit_time: Timestamp(0),
            position: None,
        };
        let source = SourceInfo {
            connector: "postgresql",
            name: "test".to_owned(),
            database: "shop".to_owned(),
        };
        let op = Operation {
            change: &change,
            txn: &txn,
            source: &source,
        };
        let mut out = Vec::new();
        kcop.process(&op, &mut out)?;
        Ok(out)
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

    #[test]
    fn routes_by_the_plaintext_row() {
        let kcop = build(
            "encrypt: [email], headers: { mail: after.email }, route: \
             'after.email.endsWith(\"@eu.example\") ? \"t.eu\" : \"t.\" + table'",
        )
        .unwrap();
        let eu = insert(&*kcop, "1", "ann@eu.example").unwrap();
        assert_eq!(eu.len(), 1);
        assert_eq!(&*eu[0].topic, "t.eu");
        assert_eq!(eu[0].partition, None);
        assert!(
            eu[0].headers[0].value.starts_with(b"ordo:enc:v1:"),
            "headers still see the encrypted value"
        );
        let other = insert(&*kcop, "2", "bob@us.example").unwrap();
        assert_eq!(&*other[0].topic, "t.t");
    }

    /// A format that writes a record with an explicit partition on the output's topic, after
    /// one on a side topic (as the `avro` format announces its schemas).
    #[derive(Debug)]
    struct SideTopic;

    impl Kcop for SideTopic {
        fn process(
            &self,
            _: &Operation<'_>,
            out: &mut Vec<ProducerRecord>,
        ) -> Result<(), KcopError> {
            out.push(ProducerRecord::new("t.schemas".into(), None, None));
            let mut record = ProducerRecord::new("t".into(), None, None);
            record.partition = Some(3);
            out.push(record);
            Ok(())
        }
    }

    #[test]
    fn moves_only_the_records_on_the_output_topic_and_keeps_their_partition() {
        let config = config("route: '\"audit.\" + table'");
        let output = &config.mappings[0].outputs[0];
        let kcop = chain(&config, output, &schema(), Arc::new(SideTopic)).unwrap();
        let records = insert(&*kcop, "1", "ann@eu.example").unwrap();
        let placed: Vec<_> = records.iter().map(|r| (&*r.topic, r.partition)).collect();
        assert_eq!(placed, [("t.schemas", None), ("audit.t", Some(3))]);
    }

    #[test]
    fn refuses_results_that_are_not_topic_names_without_quoting_them() {
        let kcop = build("route: 'after.email'").unwrap();
        let long = "s".repeat(250);
        for (email, problem) in [
            ("", "the route gave an empty string"),
            ("..", "the route gave `.` or `..`"),
            (
                "secret value",
                "the route gave a name with a character Kafka does not allow at position 7",
            ),
            (long.as_str(), "the route gave a name of 250 characters"),
        ] {
            let err = insert(&*kcop, "1", email).unwrap_err().to_string();
            assert!(err.starts_with("table public.t: "), "{err}");
            assert!(
                err.contains("output for topic `t`, route `after.email`: "),
                "{err}"
            );
            assert!(err.contains(problem), "{err}");
            assert!(!err.contains("secret") && !err.contains("sss"), "{err}");
        }
        let kcop = build("route: 'size(after.email)'").unwrap();
        let err = insert(&*kcop, "1", "a").unwrap_err().to_string();
        assert!(
            err.contains(
                "route `size(after.email)`: the route gave a value of type int, not a string"
            ),
            "{err}"
        );
        let err = build("route: 'after.mail'").unwrap_err().to_string();
        assert!(
            err.contains("route `after.mail`: column `mail` does not exist"),
            "{err}"
        );
    }
}
