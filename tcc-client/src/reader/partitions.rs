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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::{Consumer, Queue};
use crate::error::TccError;

/// Read through at most this many records to reach the next transaction's first offset;
/// further away, seek (which drops what librdkafka prefetched).
const READ_THROUGH: i64 = 4096;
const SEEK_TIMEOUT: Duration = Duration::from_secs(30);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct DataPartition {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) queue: Queue,
    /// Offset of the next record the queue yields (or a later one).
    pub(crate) next: i64,
}

pub(crate) struct DataPartitions {
    pub(crate) consumer: Arc<Consumer>,
    pub(crate) list: Vec<DataPartition>,
    index: HashMap<String, HashMap<i32, usize>>,
}

impl DataPartitions {
    pub(crate) fn new(consumer: Arc<Consumer>) -> Self {
        DataPartitions {
            consumer,
            list: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The partition's index in `list`, positioned so that its next record is at `first`, or
    /// a little before it (records before `first` are then read and dropped).
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
        if first < dp.next || first - dp.next > READ_THROUGH {
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
        }
        Ok(i)
    }

    fn add(&mut self, topic: &str, partition: i32, first: i64) -> Result<usize, TccError> {
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
