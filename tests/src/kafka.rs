//! Reading topics back in tests: every record from the beginning up to the high watermark.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::stack::stack;

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.value.as_deref().map_or(serde_json::Value::Null, |v| {
            serde_json::from_slice(v).expect("value is JSON")
        })
    }
}

fn consumer() -> BaseConsumer {
    consumer_of(&stack().kafka)
}

fn consumer_of(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ordo-tests-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a test consumer")
}

/// Number of partitions of `topic` (0 if it does not exist).
pub fn partitions(topic: &str) -> i32 {
    let md = consumer()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics().first().map_or(0, |t| {
        if t.error().is_some() {
            0
        } else {
            t.partitions().len() as i32
        }
    })
}

/// The high watermark of a partition.
pub fn high_watermark(topic: &str, partition: i32) -> i64 {
    consumer()
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_or(0, |(_, h)| h)
}

/// Every record of every partition of `topic`, from the beginning to the current high
/// watermarks, sorted by partition and offset.
pub fn read_all(topic: &str) -> Vec<Record> {
    read_all_from(&stack().kafka, topic)
}

/// [`read_all`] from the broker at `brokers` rather than the stack's.
pub fn read_all_from(brokers: &str, topic: &str) -> Vec<Record> {
    let c = consumer_of(brokers);
    let n = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_or(0, |md| {
            md.topics()
                .first()
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32)
        });
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut highs = Vec::new();
    for p in 0..n {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        highs.push(high);
        if high > low {
            remaining += high - low;
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .expect("assign");
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic}: got {} of {remaining} records in 60 s",
            out.len()
        );
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        // Transient client errors (a dropped idle connection) resolve themselves; the deadline
        // above bounds the wait.
        let Ok(msg) = msg else { continue };
        if msg.offset() >= highs[msg.partition() as usize] {
            continue;
        }
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The broker's ceiling for a workload: how many records per second one idempotent producer
/// (`acks=all`, as ordo's) gets through to the stack's broker when the records are already
/// encoded: `n` records shaped like ordo's JSON output for a 6-column row (a ~40-byte key, a
/// ~150-byte value and five `ordo.*` headers) over 4 partitions of a new topic.
/// Benchmarks print it next to ordo's end-to-end rate: no capture can publish faster.
pub fn producer_ceiling(topic: &str, n: u64) -> f64 {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &stack().kafka)
        .create()
        .expect("create an admin client");
    let new = rdkafka::admin::NewTopic::new(topic, 4, rdkafka::admin::TopicReplication::Fixed(1));
    futures::executor::block_on(admin.create_topics([&new], &rdkafka::admin::AdminOptions::new()))
        .expect("create the topic");
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack().kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("create a producer");
    let started = std::time::Instant::now();
    for i in 0..n {
        let key = format!("{{\"id\":{i}}}");
        let value = format!(
            "{{\"id\":{i},\"a\":{},\"b\":\"row number {i}\",\"c\":\"{}.{:02}\",\"d\":\"2024-01-01T00:00:00.{:06}\",\"e\":{}}}",
            i * 7,
            i / 100,
            i % 100,
            i % 1_000_000,
            i as f64 * 1.5
        );
        let (txn, op) = ((i / 100).to_string(), (i % 100).to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ordo.txn",
                value: Some(txn.as_str()),
            })
            .insert(Header {
                key: "ordo.op",
                value: Some(op.as_str()),
            })
            .insert(Header {
                key: "ordo.table",
                value: Some("bench.bench"),
            })
            .insert(Header {
                key: "ordo.optype",
                value: Some("c"),
            })
            .insert(Header {
                key: "ordo.schema",
                value: Some("1"),
            });
        let mut record = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    n as f64 / started.elapsed().as_secs_f64()
}

/// Waits up to 60 s until `topic` holds at least `at_least` records and returns them all, as
/// [`read_all`] does (which runs on a blocking thread).
pub async fn wait_for_records(topic: &str, at_least: usize) -> Vec<Record> {
    wait_for(&format!("{at_least} records on {topic}"), topic, at_least).await
}

/// Waits up to 60 s until the commit topic `topic` holds at least `at_least` records and
/// returns them all, decoded.
pub async fn wait_for_commits(
    topic: &str,
    at_least: usize,
) -> Vec<ordo_tcc::commit_stream::CommitRecord> {
    let what = format!("{at_least} commit records on {topic}");
    crate::invariant::decode_commits(&wait_for(&what, topic, at_least).await)
}

async fn wait_for(what: &str, topic: &str, at_least: usize) -> Vec<Record> {
    crate::stack::wait_until(what, Duration::from_secs(60), || {
        let topic = topic.to_owned();
        async move {
            let recs = tokio::task::spawn_blocking(move || read_all(&topic))
                .await
                .expect("reading the topic panicked");
            (recs.len() >= at_least).then_some(recs)
        }
    })
    .await
}
