//! ordo's configuration file: its shape, how it is read, and how mistakes are reported.
//!
//! One YAML file describes one daemon. `source` names the database changes are captured
//! from, either `postgres:` (a logical replication slot read with `pgoutput`) or `mysql:`
//! (MySQL or MariaDB, read as a binlog replica). `kafka` names the cluster records are
//! published to and the commit topic, where one record per source transaction lets consumers
//! reassemble transactions across topics. `schema_registry` (for Avro) and `encryption` (keys
//! for encrypting chosen columns) are optional, as are `metrics` and `logging`.
//!
//! `mappings` is the heart of the file: each mapping names tables with glob patterns
//! (`public.order_*`) and lists outputs. An output is a topic, or a topic template such as
//! `cdc.{schema}.{table}`, with a record format (`json`, `avro`, `debezium`, `csv-audit`,
//! `audit-rows`, or a user's `custom` KCOP) and per-output choices: the record key, a column
//! projection, a CEL filter, headers, how deletes and truncates are published, and which
//! columns are encrypted. A table may match several mappings; all of them apply.
//!
//! Passwords and other secrets are never written in the file itself: a secret is a string
//! with `${NAME}` environment references, `{ env: NAME }` or `{ file: path }`, resolved while
//! the file is loaded. [`Secret`] prints as `***` and cannot be serialized.
//!
//! # Error handling
//!
//! [`load`] and [`parse`] report problems as [`ConfigErrors`], each with the config path
//! (`mappings[0].outputs[1].format`), the line and column in the file, what is wrong and a
//! hint for fixing it. YAML syntax errors, unknown fields, wrong types and missing fields are
//! found by the YAML library while deserializing and stop there; every later problem
//! (cross-field rules, names, templates, secrets) is found by one validation pass that
//! reports all of them at once. Positions for those come from an index of the file's nodes
//! built from the parser's marked events.

mod config;
mod encryption;
mod error;
mod kafka;
mod mapping;
mod output;
mod positions;
mod secret;
mod source;
mod spelling;
mod telemetry;
mod tls;
mod topic;
mod validate;
mod yaml;

use std::path::Path;

pub use config::Config;
pub use encryption::{Encryption, EncryptionKey};
pub use error::{ConfigError, ConfigErrors};
pub use kafka::{Kafka, KafkaProperties, SchemaRegistry};
pub use mapping::Mapping;
pub use output::{DeleteMode, Format, KeyMode, Output, TruncateMode};
pub use secret::Secret;
pub use source::{MysqlFlavor, MysqlSource, PostgresSource, Snapshot, Source};
pub use telemetry::{LogFormat, Logging, Metrics};
pub use tls::{Tls, TlsMode};

use positions::Positions;
use validate::Validation;

/// Reads, parses and validates the config file at `path`. Secrets are read from the process
/// environment and from files; relative paths are relative to the working directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors::single(ConfigError {
            origin: origin.clone(),
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the config file: {err}"),
            hint: Some(String::from(
                "check the path and that ordo may read the file",
            )),
        })
    })?;
    parse(&text, &origin)
}

/// Parses and validates config `text`; `origin` names it in error messages. Secrets are read
/// from the process environment.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, origin, |name| std::env::var(name).ok())
}

/// Like [`parse`], with environment variables looked up through `env` instead of the
/// process environment.
pub fn parse_with_env(
    text: &str,
    origin: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let positions = Positions::scan(text);
    let mut config: Config = yaml::deserialize(text, origin, &positions)?;
    let mut cx = Validation::new(origin, &positions, &env);
    config.validate(&mut cx);
    cx.finish()?;
    Ok(config)
}

/// The JSON Schema of the config file, pretty-printed (for `ordo config schema` and editors).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
