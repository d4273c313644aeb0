//! The commit stream as the capture's checkpoint: topic creation and reading the last record.
//!
//! # Resumption
//! On start the daemon reads the record just below the commit partition's high watermark. Its
//! `restart` position is where the source resumes, its `seq` + 1 is the next sequence number.
//! Records are only ever appended after the data they list is durable, so whatever the last
//! record says is safe to resume after.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ordo_tcc::commit_stream::CommitRecord;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::PublishError;

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> PublishError {
    let what = what.into();
    move |source| PublishError::Kafka { what, source }
}

fn client_config(kafka_cfg: &ordo_config::Kafka) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka_cfg.bootstrap_servers)
        .set("allow.auto.create.topics", "false");
    for (k, v) in kafka_cfg.properties.iter() {
        // Security settings apply to every client; producer tuning is ignored by the others.
        if k.starts_with("security.")
            || k.starts_with("sasl.")
            || k.starts_with("ssl.")
            || k == "client.id"
        {
            cfg.set(k, v);
        }
    }
    cfg
}

/// Creates topics that do not exist yet.
pub struct Topics {
    admin: AdminClient<DefaultClientContext>,
    known: HashSet<String>,
    create: bool,
    partitions: i32,
    replication: i32,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("known", &self.known.len())
            .finish()
    }
}

impl Topics {
    /// An admin client for the cluster.
    ///
    /// # Errors
    /// When the client cannot be created.
    pub fn new(kafka_cfg: &ordo_config::Kafka) -> Result<Self, PublishError> {
        let admin = client_config(kafka_cfg)
            .create()
            .map_err(kafka("create the admin client"))?;
        Ok(Self {
            admin,
            known: HashSet::new(),
            create: kafka_cfg.create_topics,
            partitions: i32::try_from(kafka_cfg.topic_partitions)
                .unwrap_or(1)
                .max(1),
            replication: i32::from(kafka_cfg.replication_factor).max(1),
        })
    }

    /// Make sure `topic` exists (creating it with `partitions`, or the default, if allowed).
    ///
    /// # Errors
    /// When it is missing and may not or cannot be created.
    pub async fn ensure(
        &mut self,
        topic: &str,
        partitions: Option<i32>,
        configs: &[(&str, &str)],
    ) -> Result<(), PublishError> {
        if self.known.contains(topic) {
            return Ok(());
        }
        let metadata = self
            .admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(kafka(format!("read metadata of topic {topic}")))?;
        let exists = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            if !self.create {
                return Err(PublishError::Setup(format!(
                    "topic {topic} does not exist and kafka.create_topics is false; create it, or set kafka.create_topics: true"
                )));
            }
            let mut new = NewTopic::new(
                topic,
                partitions.unwrap_or(self.partitions),
                TopicReplication::Fixed(self.replication),
            );
            for (k, v) in configs {
                new = new.set(k, v);
            }
            let results = self
                .admin
                .create_topics(
                    [&new],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                )
                .await
                .map_err(kafka(format!("create topic {topic}")))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => {
                        return Err(PublishError::Setup(format!(
                            "could not create topic {t}: {code}; create it yourself or grant ordo's principal CREATE on the cluster"
                        )));
                    }
                }
            }
            tracing::info!(topic, "created topic");
        }
        self.known.insert(topic.to_owned());
        Ok(())
    }
}

/// Create the commit topic if needed: one partition, never compacted, kept forever.
///
/// # Errors
/// When it cannot be created, or exists with more than one partition.
pub async fn ensure_commit_topic(
    topics: &mut Topics,
    kafka_cfg: &ordo_config::Kafka,
) -> Result<(), PublishError> {
    let topic = &kafka_cfg.commit_topic;
    topics
        .ensure(
            topic,
            Some(1),
            &[("cleanup.policy", "delete"), ("retention.ms", "-1")],
        )
        .await?;
    let md = topics
        .admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka(format!("read metadata of topic {topic}")))?;
    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
    if parts != 1 {
        return Err(PublishError::Setup(format!(
            "commit topic {topic} has {parts} partitions; it must have exactly one (commit records are ordered): use a new kafka.commit_topic"
        )));
    }
    Ok(())
}

/// Read the last commit record of the commit topic, if any.
///
/// # Errors
/// When the topic cannot be read in time or its last record is not a commit record.
pub fn last_commit_record(
    kafka_cfg: &ordo_config::Kafka,
) -> Result<Option<CommitRecord>, PublishError> {
    let topic = &kafka_cfg.commit_topic;
    let consumer: BaseConsumer = client_config(kafka_cfg)
        .set("group.id", "ordo-checkpoint")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("create the checkpoint reader"))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(kafka(format!(
            "read the watermarks of commit topic {topic}"
        )))?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(high - 1))
        .map_err(kafka("assign the commit topic"))?;
    consumer
        .assign(&tpl)
        .map_err(kafka("assign the commit topic"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) if msg.offset() == high - 1 => {
                return CommitRecord::decode(msg.payload(), msg.offset())
                    .map(Some)
                    .map_err(Into::into);
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "transient error reading the commit topic; retrying")
            }
        }
    }
    Err(PublishError::Setup(format!(
        "could not read the last record (offset {}) of commit topic {topic} within 30 s",
        high - 1
    )))
}

/// How many partitions the commit topic has; `None` when it does not exist.
///
/// # Errors
/// When the cluster cannot be reached within `timeout`.
pub fn commit_topic_partitions(
    kafka_cfg: &ordo_config::Kafka,
    timeout: Duration,
) -> Result<Option<usize>, PublishError> {
    let topic = &kafka_cfg.commit_topic;
    let consumer: BaseConsumer = client_config(kafka_cfg)
        .create()
        .map_err(kafka("create a metadata client"))?;
    // Cluster-wide metadata first: it fails when no broker answers, whatever the topic.
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(kafka("read the cluster metadata"))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic.as_str() && t.error().is_none())
        .map(|t| t.partitions().len()))
}
