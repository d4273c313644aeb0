//! Test support: the broker of `scripts/stack`, topics, and a simulated capture daemon that
//! writes data records and commit records exactly as ordo's does.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt as _;
use ordo_kcop::record::headers as h;
use ordo_tcc::commit_stream::{CommitRecord, PartitionRange, SourceKind};
use ordo_tcc::{Start, TccConfig, TccConsumer, TccError, TccOperation, TccTransaction};
use rand::Rng as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The broker's bootstrap address: `ORDO_TEST_KAFKA`, else `target/stack/env`.
pub fn kafka() -> String {
    if let Ok(v) = std::env::var("ORDO_TEST_KAFKA")
        && !v.is_empty()
    {
        return v;
    }
    let dir = std::env::var("ORDO_STACK_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/stack").to_owned());
    let env = std::fs::read_to_string(format!("{dir}/env")).unwrap_or_default();
    env.lines()
        .find_map(|l| l.strip_prefix("export ORDO_TEST_KAFKA="))
        .map(|v| v.trim_matches('\'').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no broker configured: run scripts/stack up"))
}

/// `prefix` with a random suffix, so tests run in parallel.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::rng().random::<u32>())
}

/// Creates topics (name, partitions).
pub async fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let new: Vec<_> = topics
        .iter()
        .map(|(name, n)| NewTopic::new(name, *n, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(DEADLINE));
    for result in admin.create_topics(&new, &opts).await.unwrap() {
        result.unwrap();
    }
}

/// One data record as the daemon would produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord {
    pub topic: String,
    pub partition: i32,
    pub txn: String,
    pub op: u64,
    pub sub: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// The simulated capture daemon: an idempotent producer, and the commit sequence.
pub struct Daemon {
    pub producer: FutureProducer,
    pub commit_topic: String,
    pub seq: u64,
}

impl Daemon {
    pub fn new(commit_topic: &str) -> Self {
        Self::with_buffer(commit_topic, 262_144)
    }

    /// With a producer queue of at most `kbytes`.
    pub fn with_buffer(commit_topic: &str, kbytes: u32) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", kbytes.to_string())
            .set("message.timeout.ms", "60000")
            .create()
            .unwrap();
        Daemon {
            producer,
            commit_topic: commit_topic.to_owned(),
            seq: 0,
        }
    }

    /// Enqueues a record (in order); its delivery comes later.
    pub async fn send(&self, r: &DataRecord) -> DeliveryFuture {
        let (op, sub) = (r.op.to_string(), r.sub.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "kcop.own",
                value: Some("x"),
            })
            .insert(Header {
                key: h::TXN,
                value: Some(&r.txn),
            })
            .insert(Header {
                key: h::OP,
                value: Some(&op),
            })
            .insert(Header {
                key: h::SUB,
                value: Some(&sub),
            })
            .insert(Header {
                key: h::TABLE,
                value: Some("shop.orders"),
            })
            .insert(Header {
                key: h::OP_TYPE,
                value: Some("c"),
            })
            .insert(Header {
                key: h::SCHEMA_VERSION,
                value: Some("1"),
            });
        loop {
            let rec = FutureRecord::to(&r.topic)
                .partition(r.partition)
                .key(&r.key)
                .payload(&r.value)
                .headers(headers.clone());
            match self.producer.send_result(rec) {
                Ok(f) => return f,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }

    /// Waits for deliveries: (topic, partition, offset) of each.
    pub async fn delivered(
        &self,
        records: &[&DataRecord],
        futures: Vec<DeliveryFuture>,
    ) -> Vec<(String, i32, i64)> {
        let mut out = Vec::with_capacity(futures.len());
        for (r, f) in records.iter().zip(futures) {
            let d = f.await.unwrap().map_err(|(e, _)| e).unwrap();
            out.push((r.topic.clone(), d.partition, d.offset));
        }
        out
    }

    /// The commit record of a transaction whose records were delivered at `at`.
    pub fn commit_for(&mut self, txn: &str, ops: u64, at: &[(String, i32, i64)]) -> CommitRecord {
        let mut parts: BTreeMap<(String, i32), PartitionRange> = BTreeMap::new();
        for (topic, partition, offset) in at {
            let p = parts
                .entry((topic.clone(), *partition))
                .or_insert(PartitionRange {
                    topic: topic.clone(),
                    partition: *partition,
                    first: *offset,
                    last: *offset,
                    count: 0,
                });
            p.first = p.first.min(*offset);
            p.last = p.last.max(*offset);
            p.count += 1;
        }
        self.seq += 1;
        CommitRecord {
            version: 1,
            seq: self.seq,
            source: SourceKind::Postgresql,
            txn: txn.to_owned(),
            position: format!("pg:0/{:X}", self.seq * 16),
            restart: format!("pg:0/{:X}", self.seq * 16 + 8),
            commit_time_micros: 1_732_280_400_000_000 + self.seq as i64,
            ops,
            records: at.len() as u64,
            parts: parts.into_values().collect(),
        }
    }

    /// Writes a commit record (after the data it lists is acknowledged); its offset.
    pub async fn write_commit(&self, c: &CommitRecord) -> i64 {
        self.write_raw_commit(&c.encode()).await
    }

    /// Enqueues a commit record without waiting for it (commit records keep their order).
    pub fn send_commit(&self, c: &CommitRecord) -> DeliveryFuture {
        let bytes = c.encode();
        let rec = FutureRecord::<(), _>::to(&self.commit_topic)
            .partition(0)
            .payload(&bytes);
        self.producer.send_result(rec).map_err(|(e, _)| e).unwrap()
    }

    pub async fn write_raw_commit(&self, bytes: &[u8]) -> i64 {
        let rec = FutureRecord::<(), _>::to(&self.commit_topic)
            .partition(0)
            .payload(bytes);
        let d = self
            .producer
            .send(rec, DEADLINE)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        d.offset
    }

    /// A whole transaction, no noise: records in order, then its commit record.
    pub async fn transaction(
        &mut self,
        txn: &str,
        ops: u64,
        records: &[DataRecord],
    ) -> CommitRecord {
        let mut futures = Vec::new();
        for r in records {
            futures.push(self.send(r).await);
        }
        let refs: Vec<_> = records.iter().collect();
        let at = self.delivered(&refs, futures).await;
        let c = self.commit_for(txn, ops, &at);
        self.write_commit(&c).await;
        c
    }

    pub fn flush(&self) {
        self.producer.flush(DEADLINE).unwrap();
    }
}

/// A consumer config for the test broker that stops at the end of the commit topic.
pub fn config(commit_topic: &str, start: Start) -> TccConfig {
    TccConfig::new(kafka(), commit_topic, start).stop_at_end(true)
}

/// Every transaction up to the end of the commit topic.
pub async fn all_transactions(cfg: TccConfig) -> Result<Vec<TccTransaction>, TccError> {
    let stream = TccConsumer::new(cfg)?.transactions();
    tokio::time::timeout(DEADLINE, stream.try_collect())
        .await
        .expect("transactions within the deadline")
}

/// Every operation up to the end of the commit topic.
pub async fn all_operations(cfg: TccConfig) -> Result<Vec<TccOperation>, TccError> {
    let stream = TccConsumer::new(cfg)?.operations();
    tokio::time::timeout(DEADLINE, stream.try_collect())
        .await
        .expect("operations within the deadline")
}

/// An operation as compared in tests: (txn, op, [(topic, sub, key, value)]).
pub type Seen = (String, u64, Vec<(String, u64, Vec<u8>, Vec<u8>)>);

pub fn seen(op: &TccOperation) -> Seen {
    let records = op
        .records
        .iter()
        .map(|r| {
            (
                r.topic.clone(),
                r.sub().unwrap(),
                r.key.clone().unwrap_or_default(),
                r.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    (op.commit.txn.clone(), op.op_index, records)
}

/// VmRSS of this process, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// VmHWM (peak RSS) of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
