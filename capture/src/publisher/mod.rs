//! Producing to Kafka: data records, delivery tracking, and the commit stream.
//!
//! One idempotent producer (`enable.idempotence=true`, `acks=all`) carries every record, so
//! records keep their order per partition through retries, and all records of transaction T are
//! handed over before those of T+1. Each record's delivery report is attributed to its
//! transaction ([`tracker`]). When every record of the oldest transaction is acknowledged, its
//! commit record goes to the commit topic (one partition); when that is acknowledged, the
//! transaction's restart position becomes durable and the source may confirm it.
//!
//! # Error handling
//! librdkafka retries retriable errors itself. Any delivery that still fails (a fatal
//! idempotence error, a record too large, a missing topic) stops the daemon: no position after
//! the failure ever becomes durable, so a restart resumes before it.
//!
//! # Back-pressure
//! When librdkafka's queue is full, `send` waits for room; the pipeline, and through its
//! bounded channel the source reader, wait with it. Nothing is dropped.

pub mod checkpoint;
pub mod tracker;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ordo_kcop::{Position, ProducerRecord, TxnCommit};
use ordo_tcc::commit_stream::{CommitRecord, FORMAT_VERSION, SourceKind};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::{Notify, watch};

use self::tracker::{InFlight, Next, Tracker};
use crate::metrics::{Metrics, TableRows};

/// Delivery tokens with this bit set are commit records (the rest is the sequence number).
const COMMIT_BIT: usize = 1 << 63;

/// A publishing failure.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Creating the producer or talking to the cluster failed.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What ordo was doing.
        what: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A record was not delivered.
    #[error(
        "kafka delivery failed: {0}; no position after this transaction was acknowledged, restart resumes before it"
    )]
    Delivery(String),
    /// The commit topic holds something that is not a commit stream.
    #[error(transparent)]
    CommitStream(#[from] ordo_tcc::commit_stream::CommitRecordError),
    /// Other setup problems.
    #[error("{0}")]
    Setup(String),
}

/// The producer's context: routes delivery reports into the tracker.
pub struct DeliveryContext {
    tracker: Arc<Mutex<Tracker>>,
    durable: watch::Sender<Option<Position>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for DeliveryContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryContext")
    }
}

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // A panic while holding the lock is a bug; the tracker is still consistent enough to stop.
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let mut tracker = lock(&self.tracker);
        match result {
            Ok(_) if token & COMMIT_BIT != 0 => {
                if let Some(d) = tracker.commit_delivered((token & !COMMIT_BIT) as u64) {
                    drop(tracker);
                    self.metrics.txns_published(d.txns, d.commit_micros);
                    self.durable.send_replace(Some(d.restart));
                }
            }
            Ok(msg) => {
                let complete =
                    tracker.delivered(token as u64, msg.topic(), msg.partition(), msg.offset());
                // Most records complete nothing: waking the pipeline for each would cost a
                // cross-thread wake-up per record.
                if !complete {
                    return;
                }
            }
            Err((err, msg)) => {
                self.metrics.delivery_error();
                tracker.fail(format!(
                    "record for topic {} partition {}: {err}",
                    msg.topic(),
                    msg.partition()
                ));
            }
        }
        self.wake.notify_one();
    }
}

/// The producer and the commit-stream writer.
pub struct Publisher {
    producer: ThreadedProducer<DeliveryContext>,
    tracker: Arc<Mutex<Tracker>>,
    wake: Arc<Notify>,
    commit_topic: String,
    source: SourceKind,
    next_seq: u64,
    /// Records of the open transaction handed to the producer so far.
    sent_in_txn: u64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("commit_topic", &self.commit_topic)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// The producer settings ordo insists on, then the user's, which may tune batching and
/// compression but not turn off idempotence.
///
/// `linger.ms` defaults to 20 rather than librdkafka's 5: a change-data stream arrives in
/// bursts of whole transactions, and the larger batches cut the CPU time per record of both
/// the producer and the broker (about 15% less in the end-to-end benchmark) for at most 20 ms
/// more latency.
pub fn producer_config(kafka: &ordo_config::Kafka) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("linger.ms", "20")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144");
    for (k, v) in kafka.properties.iter() {
        cfg.set(k, v);
    }
    cfg.set("enable.idempotence", "true").set("acks", "all");
    cfg
}

impl Publisher {
    /// Create the producer. `next_seq` continues the commit stream; `durable` receives each
    /// position as it becomes durable; deliveries are counted in `metrics`.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn new(
        kafka: &ordo_config::Kafka,
        source: SourceKind,
        next_seq: u64,
        durable: watch::Sender<Option<Position>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PublishError> {
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let wake = Arc::new(Notify::new());
        let ctx = DeliveryContext {
            tracker: tracker.clone(),
            durable,
            wake: wake.clone(),
            metrics: metrics.clone(),
        };
        let producer = producer_config(kafka)
            .create_with_context(ctx)
            .map_err(|source| PublishError::Kafka {
                what: "create the producer (check kafka.properties)".into(),
                source,
            })?;
        Ok(Self {
            producer,
            tracker,
            wake,
            commit_topic: kafka.commit_topic.clone(),
            source,
            next_seq,
            sent_in_txn: 0,
            metrics,
        })
    }

    /// Messages in librdkafka's queue not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// The tracker (for tests and metrics).
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    /// Sequence number the next commit record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Hand one record of transaction `txn_no` to the producer, waiting while the queue is full.
    ///
    /// # Errors
    /// On a non-retriable produce error or an earlier delivery failure.
    pub async fn send(
        &mut self,
        txn_no: u64,
        rec: &ProducerRecord,
        headers: OwnedHeaders,
    ) -> Result<(), PublishError> {
        let mut headers = Some(headers);
        loop {
            let mut br: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&rec.topic, txn_no as usize);
            if let Some(k) = &rec.key {
                br = br.key(k.as_slice());
            }
            if let Some(v) = &rec.value {
                br = br.payload(v.as_slice());
            }
            if let Some(p) = rec.partition {
                br = br.partition(p);
            }
            if let Some(h) = headers.take() {
                br = br.headers(h);
            }
            match self.producer.send(br) {
                Ok(()) => {
                    self.sent_in_txn += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    headers = back.headers;
                    // Waiting for room in the queue is progress as far as the watchdog goes.
                    self.metrics.pipeline_tick();
                    self.check_failure()?;
                    self.drive_commits()?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, _)) => {
                    return Err(PublishError::Kafka {
                        what: format!("produce to topic {}", rec.topic),
                        source,
                    });
                }
            }
        }
    }

    fn check_failure(&self) -> Result<(), PublishError> {
        match lock(&self.tracker).failure() {
            Some(f) => Err(PublishError::Delivery(f.to_owned())),
            None => Ok(()),
        }
    }

    /// Transaction `no` begins: its records follow, with `no` as their delivery token.
    pub fn begin(&mut self, no: u64) {
        self.sent_in_txn = 0;
        lock(&self.tracker).begin(no);
    }

    /// Transaction `no` committed at the source: every record it makes has been handed over.
    pub fn seal(&mut self, no: u64, commit: TxnCommit, rows: TableRows) {
        let sent = std::mem::take(&mut self.sent_in_txn);
        lock(&self.tracker).seal(no, commit, rows, sent);
    }

    /// The tracker itself (to register transactions).
    pub fn with_tracker<R>(&self, f: impl FnOnce(&mut Tracker) -> R) -> R {
        f(&mut lock(&self.tracker))
    }

    /// Write the commit records of every transaction that is ready, in order.
    ///
    /// # Errors
    /// On an earlier delivery failure, or when the commit record cannot be handed over.
    pub fn drive_commits(&mut self) -> Result<(), PublishError> {
        loop {
            let next = {
                let mut t = lock(&self.tracker);
                if let Some(f) = t.failure() {
                    return Err(PublishError::Delivery(f.to_owned()));
                }
                t.take_next()
            };
            match next {
                None => return Ok(()),
                Some(Next::Durable(pos)) => {
                    self.producer.context().durable.send_replace(Some(pos));
                }
                Some(Next::Commit(ready)) => self.write_commit(ready)?,
            }
        }
    }

    fn write_commit(&mut self, ready: tracker::Ready) -> Result<(), PublishError> {
        let seq = self.next_seq;
        tracing::debug!(seq, txn = %ready.commit.id, records = ready.records, "commit record");
        let rec = CommitRecord {
            version: FORMAT_VERSION,
            seq,
            source: self.source,
            txn: ready.commit.id.to_string(),
            position: ready.commit.commit_position.to_string(),
            restart: ready.commit.restart_position.to_string(),
            commit_time_micros: ready.commit.commit_time.0,
            ops: ready.commit.change_count,
            records: ready.records,
            parts: ready.parts,
        };
        let bytes = rec.encode();
        let in_flight = InFlight {
            restart: ready.commit.restart_position,
            commit_micros: ready.commit.commit_time.0,
            rows: ready.rows,
        };
        lock(&self.tracker).commit_sent(seq, in_flight);
        let mut payload = bytes;
        loop {
            let br: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.commit_topic, COMMIT_BIT | seq as usize)
                    .partition(0)
                    .payload(&payload);
            match self.producer.send(br) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(PublishError::Kafka {
                        what: format!("produce commit record {seq}"),
                        source,
                    });
                }
            }
            payload = rec.encode();
        }
        self.next_seq += 1;
        self.metrics.commit_record_written();
        Ok(())
    }

    /// Wait until every handed-over transaction has its commit record acknowledged, or the
    /// deadline passes.
    ///
    /// # Errors
    /// On a delivery failure, or when the deadline passes first.
    pub async fn drain(&mut self, deadline: Duration) -> Result<(), PublishError> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            self.drive_commits()?;
            if lock(&self.tracker).is_idle() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                let pending = lock(&self.tracker).pending();
                return Err(PublishError::Setup(format!(
                    "{pending} transactions were still waiting for kafka acknowledgements after {deadline:?}; their positions were not acknowledged"
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.wake.notified()).await;
        }
    }

    /// Wait for a delivery report (or a short timeout).
    pub async fn wait_for_deliveries(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(100), self.wake.notified()).await;
    }

    /// Flush librdkafka's queue (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

/// Build the `ordo.*` headers (after the KCOP's own).
pub fn record_headers(
    rec: &ProducerRecord,
    txn: &str,
    op: u64,
    sub: u64,
    table: &str,
    op_code: &str,
    schema_version: u32,
) -> OwnedHeaders {
    use ordo_kcop::record::headers as h;
    let mut out = OwnedHeaders::new_with_capacity(rec.headers.len() + 6);
    for hd in &rec.headers {
        out = out.insert(Header {
            key: &hd.name,
            value: Some(&hd.value),
        });
    }
    let mut ib = itoa::Buffer::new();
    out = out.insert(Header {
        key: h::TXN,
        value: Some(txn),
    });
    out = out.insert(Header {
        key: h::OP,
        value: Some(ib.format(op)),
    });
    let mut ib2 = itoa::Buffer::new();
    out = out.insert(Header {
        key: h::SUB,
        value: Some(ib2.format(sub)),
    });
    out = out.insert(Header {
        key: h::TABLE,
        value: Some(table),
    });
    out = out.insert(Header {
        key: h::OP_TYPE,
        value: Some(op_code),
    });
    let mut ib3 = itoa::Buffer::new();
    out.insert(Header {
        key: h::SCHEMA_VERSION,
        value: Some(ib3.format(schema_version)),
    })
}
