//! The whole file: one daemon's source, Kafka cluster, mappings and telemetry.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::encryption::Encryption;
use crate::kafka::{Kafka, SchemaRegistry};
use crate::mapping::{Mapping, validate_mappings};
use crate::source::Source;
use crate::telemetry::{Logging, Metrics};
use crate::validate::Validation;

/// One daemon's configuration, as read from its YAML file.
///
/// Values returned by `parse` and `load` are validated: secrets are resolved, table patterns
/// compiled, and every cross-field rule holds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The database changes are captured from: `postgres:` or `mysql:`.
    pub source: Source,
    /// The Kafka cluster changes are published to.
    pub kafka: Kafka,
    /// Schema registry for the Avro format.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistry>,
    /// Keys for encrypting columns listed under an output's `encrypt`.
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// Which tables go to which outputs. A table matching several mappings is published by
    /// all of them.
    pub mappings: Vec<Mapping>,
    /// Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: Metrics,
    /// Log level and format.
    #[serde(default)]
    pub logging: Logging,
}

impl Config {
    /// Every mapping that applies to table `namespace.table`, with its index in `mappings`.
    ///
    /// A table may match several mappings; all of them apply, each publishing to its own
    /// outputs. Mappings marked `default` apply only to tables no other mapping selects. The
    /// iterator yields them in file order and is empty for tables no mapping names (their
    /// changes are not published).
    pub fn mappings_for<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Mapping)> + 'a {
        let specific = self
            .mappings
            .iter()
            .any(|mapping| !mapping.default && mapping.matches(namespace, table));
        // The `default` mappings apply only where no other mapping does.
        self.mappings
            .iter()
            .enumerate()
            .filter(move |(_, mapping)| {
                mapping.default != specific && mapping.matches(namespace, table)
            })
    }

    /// Checks every rule serde cannot, resolves secrets and compiles table patterns.
    pub(crate) fn validate(&mut self, cx: &mut Validation<'_>) {
        self.source.validate(cx, "source");
        self.kafka.validate(cx, "kafka");
        if let Some(registry) = &mut self.schema_registry {
            registry.validate(cx, "schema_registry");
        }
        if let Some(encryption) = &mut self.encryption {
            encryption.validate(cx, "encryption");
        }
        validate_mappings(cx, &mut self.mappings, self.encryption.is_some());
        self.logging.validate(cx, "logging");
    }
}
