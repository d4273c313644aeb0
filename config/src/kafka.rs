//! Where ordo publishes: the Kafka cluster, and the optional schema registry for Avro.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::positions::join_key;
use crate::secret::Secret;
use crate::topic::{TOPIC_NAME_HINT, topic_name_problem};
use crate::validate::{Validation, require_positive};

/// The Kafka cluster ordo publishes to.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Brokers to connect to first, as `host:port` separated by commas.
    pub bootstrap_servers: String,
    /// Topic of the commit stream: one record per source transaction, which consumers use to
    /// reassemble transactions across topics.
    pub commit_topic: String,
    /// librdkafka producer properties (`compression.type`, `sasl.password`, ...). Values are
    /// secrets: they may use `${NAME}`, `{ env: NAME }` or `{ file: path }`.
    #[serde(default)]
    pub properties: KafkaProperties,
    /// Create missing data topics (and the commit topic). Default true.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Partitions of topics ordo creates, unless an output says otherwise. Default 1.
    #[serde(default = "default_one")]
    pub topic_partitions: u32,
    /// Replication factor of topics ordo creates. Default 1.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u16,
}

/// librdkafka properties, with environment references resolved.
///
/// `Debug` hides the value of every property whose name contains `password`, `secret` or
/// `key`, and of every property whose value came from the environment or a file.
#[derive(Clone, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, Secret>);

impl KafkaProperties {
    /// Each property name with its resolved value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose()))
    }

    /// The resolved value of property `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(Secret::expose)
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        for (name, value) in &mut self.0 {
            let at = join_key(path, name);
            if name == "bootstrap.servers" {
                cx.error(
                    &at,
                    "`bootstrap.servers` is set through `kafka.bootstrap_servers`",
                    "move the brokers to `kafka.bootstrap_servers`",
                );
            }
            value.resolve(cx, &at);
        }
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.iter().map(|(name, value)| {
            let hidden = is_sensitive(name) || !value.is_inline();
            (name, if hidden { "***" } else { value.expose() })
        });
        f.debug_map().entries(shown).finish()
    }
}

fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "key"]
        .iter()
        .any(|word| name.contains(word))
}

/// A Confluent-compatible schema registry, used by the Avro format.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistry {
    /// Base URL, `http://` or `https://`.
    pub url: String,
    /// User for HTTP basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for HTTP basic authentication; needs `username`.
    #[serde(default)]
    pub password: Option<Secret>,
}

fn default_true() -> bool {
    true
}

fn default_one() -> u32 {
    1
}

fn default_replication_factor() -> u16 {
    1
}

impl Kafka {
    pub(crate) fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        let at = |field: &str| join_key(path, field);
        validate_brokers(cx, &at("bootstrap_servers"), &self.bootstrap_servers);
        if let Some(problem) = topic_name_problem(&self.commit_topic) {
            cx.error(&at("commit_topic"), problem, TOPIC_NAME_HINT);
        }
        self.properties.validate(cx, &at("properties"));
        require_positive(
            cx,
            &at("topic_partitions"),
            u64::from(self.topic_partitions),
        );
        require_positive(
            cx,
            &at("replication_factor"),
            u64::from(self.replication_factor),
        );
    }
}

fn validate_brokers(cx: &mut Validation<'_>, path: &str, servers: &str) {
    const HINT: &str = "write brokers as `host:port`, separated by commas";
    if servers.trim().is_empty() {
        cx.error(path, "no broker is given", HINT);
        return;
    }
    for broker in servers.split(',').map(str::trim) {
        let port = broker.rsplit_once(':').filter(|(host, _)| !host.is_empty());
        match port.map(|(_, port)| port.parse::<u16>()) {
            Some(Ok(port)) if port > 0 => {}
            Some(_) => cx.error(path, format!("broker `{broker}` has an invalid port"), HINT),
            None => cx.error(path, format!("broker `{broker}` has no port"), HINT),
        }
    }
}

impl SchemaRegistry {
    pub(crate) fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        let at = |field: &str| join_key(path, field);
        let host = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        if host.is_none_or(str::is_empty) {
            cx.error(
                &at("url"),
                format!("`{}` is not an http(s) url", self.url),
                "write the registry's url as `http://host:port` or `https://host`",
            );
        }
        if let Some(password) = &mut self.password {
            if self.username.is_none() {
                cx.error(
                    &at("password"),
                    "`password` is set without `username`",
                    "add `username`, or remove `password`",
                );
            }
            password.resolve(cx, &at("password"));
        }
    }
}
