//! What a consumer reads, from where, and where it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rdkafka::config::ClientConfig;

use crate::bookmark::Bookmark;
use crate::error::TccError;

/// Where the consumer starts in the commit stream. There is no default: an application says
/// whether it wants the history, only new transactions, or to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the first commit record the commit topic still holds. Its sequence number is not
    /// checked against 1: retention may have removed older ones.
    Beginning,
    /// After the last commit record written so far: only transactions committed from now on.
    End,
    /// Right after what the bookmark names (a transaction, or an operation inside one).
    Bookmark(Bookmark),
}

/// Settings of a [`TccConsumer`](crate::TccConsumer).
///
/// # Examples
///
/// ```
/// use ordo_tcc::{Start, TccConfig};
///
/// let cfg = TccConfig::new("localhost:9092", "shop.commits", Start::Beginning)
///     .topics(["shop.orders", "shop.lines"])
///     .property("client.id", "billing")
///     .stop_at_end(true);
/// assert_eq!(cfg.topics.as_ref().map(|t| t.len()), Some(2));
/// ```
#[derive(Clone)]
pub struct TccConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka client properties (security, timeouts, `client.id`...). The consumer sets
    /// these itself and overrides them: `enable.auto.commit`, `enable.auto.offset.store`,
    /// `enable.partition.eof`, `auto.offset.reset`. It sets `group.id` (required by
    /// librdkafka for partition assignment; no group is joined and nothing is committed),
    /// `queued.max.messages.kbytes` (2048: the read-ahead per data partition, which bounds
    /// memory), `fetch.wait.max.ms` (50) and `fetch.queue.backoff.ms` (20) unless given.
    pub properties: BTreeMap<String, String>,
    /// The commit-stream topic (one partition) the capture daemon writes.
    pub commit_topic: String,
    /// The data topics the application wants; `None` for every topic named in commit records.
    pub topics: Option<BTreeSet<String>>,
    /// Where to start.
    pub start: Start,
    /// End the stream once the end of the commit topic is reached, instead of waiting for
    /// new transactions (batch jobs, tests).
    pub stop_at_end: bool,
}

impl fmt::Debug for TccConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Property values may be secrets (sasl.password): show only their names.
        f.debug_struct("TccConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .field("commit_topic", &self.commit_topic)
            .field("topics", &self.topics)
            .field("start", &self.start)
            .field("stop_at_end", &self.stop_at_end)
            .finish()
    }
}

/// Properties the consumer controls; what the user gives is replaced.
const FORCED: [(&str, &str); 4] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "error"),
];

/// Properties the consumer sets unless the user does.
const DEFAULTS: [(&str, &str); 4] = [
    ("group.id", "ordo-tcc"),
    ("queued.max.messages.kbytes", "2048"),
    // A seek or a new partition waits for the fetch in flight, which the broker holds up to
    // this long when the other partitions are at their end (librdkafka: 500).
    ("fetch.wait.max.ms", "50"),
    // A partition whose queue was full is fetched again after this long (librdkafka: 1000).
    ("fetch.queue.backoff.ms", "20"),
];

impl TccConfig {
    /// A consumer of every data topic named in the commit records of `commit_topic`.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        commit_topic: impl Into<String>,
        start: Start,
    ) -> Self {
        TccConfig {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            commit_topic: commit_topic.into(),
            topics: None,
            start,
            stop_at_end: false,
        }
    }

    /// Only these data topics (records on other topics are never read).
    #[must_use]
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Sets a librdkafka client property.
    #[must_use]
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Ends the stream at the end of the commit topic (see [`TccConfig::stop_at_end`]).
    #[must_use]
    pub fn stop_at_end(mut self, stop: bool) -> Self {
        self.stop_at_end = stop;
        self
    }

    /// Checks the settings ([`TccConsumer::new`](crate::TccConsumer::new) does).
    ///
    /// # Errors
    /// The first problem found, as [`TccError::Config`], naming the setting.
    pub fn validate(&self) -> Result<(), TccError> {
        let bad = |setting: &str, reason: &str| TccError::Config {
            setting: setting.to_owned(),
            reason: reason.to_owned(),
        };
        if self.bootstrap_servers.trim().is_empty() {
            return Err(bad(
                "bootstrap_servers",
                "empty; give the brokers as host:port[,host:port...]",
            ));
        }
        if self.commit_topic.trim().is_empty() {
            return Err(bad(
                "commit_topic",
                "empty; give the commit topic of the capture daemon (its kafka.commit_topic)",
            ));
        }
        if let Some(topics) = &self.topics {
            if topics.is_empty() {
                return Err(bad(
                    "topics",
                    "an empty list selects nothing; use None for every topic",
                ));
            }
            if topics.iter().any(|t| t.trim().is_empty()) {
                return Err(bad("topics", "contains an empty topic name"));
            }
        }
        if self.properties.contains_key("bootstrap.servers") {
            return Err(bad(
                "properties.bootstrap.servers",
                "set it in bootstrap_servers instead",
            ));
        }
        Ok(())
    }

    /// The librdkafka configuration of the consumer.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (name, value) in DEFAULTS {
            cfg.set(name, value);
        }
        for (name, value) in &self.properties {
            cfg.set(name, value);
        }
        for (name, value) in FORCED {
            cfg.set(name, value);
        }
        cfg.set("bootstrap.servers", &self.bootstrap_servers);
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_properties_win_and_defaults_yield() {
        let cfg = TccConfig::new("b:1", "c", Start::End)
            .property("enable.partition.eof", "false")
            .property("group.id", "mine")
            .client_config();
        assert_eq!(cfg.get("enable.partition.eof"), Some("true"));
        assert_eq!(cfg.get("group.id"), Some("mine"));
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("2048"));
    }

    #[test]
    fn validation_names_the_setting() {
        let err = TccConfig::new("", "c", Start::End).validate().unwrap_err();
        assert!(err.to_string().contains("`bootstrap_servers`"), "{err}");
        let err = TccConfig::new("b:1", "c", Start::End)
            .topics(Vec::<String>::new())
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`topics`"), "{err}");
    }

    #[test]
    fn debug_hides_property_values() {
        let cfg = TccConfig::new("b:1", "c", Start::End).property("sasl.password", "hunter2");
        let text = format!("{cfg:?}");
        assert!(
            text.contains("sasl.password") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
