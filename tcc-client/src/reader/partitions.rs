//! The data partitions a consumer reads: assigned lazily, each with its own librdkafka queue,
//! positioned at the first offset a transaction needs.
//!
//! One librdkafka consumer serves every partition: one connection per broker, one fetch
//! request per broker covering all partitions. Each partition's records go to a queue of its
//! own ([`split_partition_queue`](rdkafka::consumer::BaseConsumer::split_partition_queue),
//! set up before the partition is assigned so no record lands on the main queue), so the
//! merge pulls exactly from the partition whose head it needs. Partitions that run ahead
//! stop being fetched once their queue holds `queued.max.messages.kbytes` (librdkafka applies
//! it per partition queue), which bounds read-ahead without explicit pause/resume.
//!
//! A transaction's range usually starts where the previous one's ended: the partition reads
//! on. When it starts before (interleaved transactions), the records are replayed from those
//! [kept](super::kept) if they still are, else the partition seeks back; when it starts far
//! ahead, the partition seeks forward instead of reading through.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::kept::Kept;
use super::{Consumer, Queue};
use crate::error::TccError;

/// Read through at most this many records to reach the next transaction's first offset;
/// further away, seek (which drops what librdkafka prefetched).
const READ_THROUGH: i64 = 4096;
const SEEK_TIMEOUT: Duration = Duration::from_secs(30);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct DataPartition {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) queue: Queue,
    /// Offset of the next record the queue yields (or a later one).
    pub(crate) next: i64,
    /// Undelivered records before `next`, for transactions whose range starts before it.
    pub(crate) kept: Kept,
}

pub(crate) struct DataPartitions {
    pub(crate) consumer: Arc<Consumer>,
    pub(crate) list: Vec<DataPartition>,
    index: HashMap<String, HashMap<i32, usize>>,
    /// Topics whose metadata was asked for.
    known: HashSet<String>,
}

impl DataPartitions {
    pub(crate) fn new(consumer: Arc<Consumer>) -> Self {
        DataPartitions {
            consumer,
            list: Vec::new(),
            index: HashMap::new(),
            known: HashSet::new(),
        }
    }

    /// The partition's index in `list`, positioned so that the records from `first` on can be
    /// read: from the kept records then the queue, or from the queue, which may start a little
    /// before `first` (records before it are then read and passed over).
    pub(crate) fn position(
        &mut self,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<usize, TccError> {
        let Some(&i) = self.index.get(topic).and_then(|m| m.get(&partition)) else {
            return self.add(topic, partition, first);
        };
        let dp = &mut self.list[i];
        let replay = first < dp.next && dp.kept.covers(first);
        if !replay && (first < dp.next || first - dp.next > READ_THROUGH) {
            tracing::debug!(topic, partition, from = dp.next, to = first, "seek");
            let seek = self
                .consumer
                .seek(topic, partition, Offset::Offset(first), SEEK_TIMEOUT);
            if let Err(error) = seek {
                // A partition in an error state refuses seeks: start it again instead.
                tracing::debug!(topic, partition, %error, "seek failed; reassigning");
                let tpl = one(topic, partition, Offset::Invalid)?;
                self.consumer
                    .incremental_unassign(&tpl)
                    .map_err(TccError::kafka(format!(
                        "unassign {topic} partition {partition}"
                    )))?;
                assign(&self.consumer, topic, partition, first)?;
            }
            dp.next = first;
            dp.kept.reset(first);
        }
        Ok(i)
    }

    /// Asks for a topic's metadata once. librdkafka looks up the leader of a partition of an
    /// unknown topic itself, but only after up to a second; asking first avoids that wait.
    pub(crate) fn learn(&mut self, topic: &str) {
        if self.known.insert(topic.to_owned())
            && let Err(error) = self.consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)
        {
            tracing::warn!(topic, %error, "could not read the topic's metadata; going on");
        }
    }

    /// Asks for every topic's metadata (one request, before any fetch is in flight).
    pub(crate) fn learn_all(&mut self) {
        match self.consumer.fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(md) => self
                .known
                .extend(md.topics().iter().map(|t| t.name().to_owned())),
            Err(error) => tracing::warn!(%error, "could not read the cluster's metadata; going on"),
        }
    }

    fn add(&mut self, topic: &str, partition: i32, first: i64) -> Result<usize, TccError> {
        self.learn(topic);
        let queue = self
            .consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| TccError::Config {
                setting: "topics".into(),
                reason: format!("no queue for topic {topic:?} partition {partition}"),
            })?;
        assign(&self.consumer, topic, partition, first)?;
        let i = self.list.len();
        self.list.push(DataPartition {
            topic: topic.to_owned(),
            partition,
            queue,
            next: first,
            kept: Kept::new(first),
        });
        self.index
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, i);
        Ok(i)
    }

    /// `(log start, high watermark)` of a partition, from the broker.
    pub(crate) fn watermarks(&self, i: usize) -> Result<(i64, i64), TccError> {
        let dp = &self.list[i];
        self.consumer
            .fetch_watermarks(&dp.topic, dp.partition, WATERMARK_TIMEOUT)
            .map_err(TccError::kafka(format!(
                "read the watermarks of {} partition {}",
                dp.topic, dp.partition
            )))
    }
}

fn one(topic: &str, partition: i32, offset: Offset) -> Result<TopicPartitionList, TccError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset)
        .map_err(TccError::kafka(format!(
            "name {topic} partition {partition} at {offset:?}"
        )))?;
    Ok(tpl)
}

/// Adds a partition to the consumer's assignment, starting at `offset`.
pub(crate) fn assign(
    consumer: &Consumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), TccError> {
    let tpl = one(topic, partition, Offset::Offset(offset))?;
    consumer
        .incremental_assign(&tpl)
        .map_err(TccError::kafka(format!(
            "assign {topic} partition {partition} at offset {offset}"
        )))
}

/// Whether a per-partition error says the requested offset is outside the partition.
pub(crate) fn out_of_range(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::OffsetOutOfRange | C::AutoOffsetReset)
    )
}
