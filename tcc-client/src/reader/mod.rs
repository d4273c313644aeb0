//! The reader thread: follows the commit stream and reads each transaction's records.
//!
//! librdkafka's calls block, so the reading runs on a thread of its own and hands
//! operations to the async streams through a bounded channel: the thread is at most
//! [`CHANNEL_CAPACITY`] events ahead of the application, and stops within
//! a fraction of a second once the stream is dropped.

mod control;
mod cursor;
mod kept;
mod merge;
mod partitions;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer as _, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use tokio::sync::mpsc;

use crate::bookmark::Bookmark;
use crate::commit_stream::CommitRecord;
use crate::config::{Start, TccConfig};
use crate::error::TccError;
use crate::model::TccOperation;
use control::{Control, Halt, Polled};
use partitions::{DataPartitions, out_of_range};

pub(crate) type Consumer = BaseConsumer<DefaultConsumerContext>;
pub(crate) type Queue = PartitionQueue<DefaultConsumerContext>;

/// Events between the reader thread and the streams.
pub(crate) const CHANNEL_CAPACITY: usize = 256;

/// What the reader thread hands to the streams.
#[derive(Debug)]
pub(crate) enum Event {
    /// The next operation.
    Operation(TccOperation),
    /// Every operation of this transaction was sent.
    Transaction {
        commit: Arc<CommitRecord>,
        bookmark: Bookmark,
    },
    /// The end of the commit topic was reached (with `stop_at_end`).
    End,
    /// Reading failed; nothing follows.
    Failed(TccError),
}

/// A consumer set up to follow the commit stream, not yet reading.
pub(crate) struct Reader {
    consumer: Arc<Consumer>,
    commit_topic: String,
    commit_queue: Queue,
    /// Where the commit partition starts.
    commit_start: rdkafka::Offset,
    wanted: Option<HashSet<String>>,
    /// The offset the commit partition starts at, when known (resumption).
    start_offset: Option<i64>,
    /// The seq the next commit record must have.
    expected_seq: Option<u64>,
    /// Whether the first record is the bookmark's own (resumption inside a transaction).
    first_is_bookmarked: bool,
    /// Operations of the first transaction to skip (resumption inside it).
    skip_to: Option<u64>,
    stop_at_end: bool,
}

impl Reader {
    /// Creates the client; nothing is assigned yet.
    pub(crate) fn new(cfg: &TccConfig) -> Result<Self, TccError> {
        cfg.validate()?;
        let consumer: Consumer = cfg
            .client_config()
            .create()
            .map_err(TccError::kafka("create the kafka consumer"))?;
        let consumer = Arc::new(consumer);
        let commit_queue = consumer
            .split_partition_queue(&cfg.commit_topic, 0)
            .ok_or_else(|| TccError::Config {
                setting: "commit_topic".into(),
                reason: "not a valid topic name".into(),
            })?;
        let (offset, start_offset, expected_seq, first_is_bookmarked, skip_to) = match cfg.start {
            Start::Beginning => (rdkafka::Offset::Beginning, None, None, false, None),
            Start::End => (rdkafka::Offset::End, None, None, false, None),
            Start::Bookmark(b) => match b.operation() {
                Some(op) => {
                    let at = b.commit_offset();
                    (
                        rdkafka::Offset::Offset(at),
                        Some(at),
                        Some(b.seq()),
                        true,
                        Some(op),
                    )
                }
                None => {
                    let at = b.commit_offset().saturating_add(1);
                    let seq = b.seq().saturating_add(1);
                    (rdkafka::Offset::Offset(at), Some(at), Some(seq), true, None)
                }
            },
        };
        Ok(Reader {
            consumer,
            commit_topic: cfg.commit_topic.clone(),
            commit_queue,
            commit_start: offset,
            wanted: cfg.topics.as_ref().map(|t| t.iter().cloned().collect()),
            start_offset,
            expected_seq,
            first_is_bookmarked,
            skip_to,
            stop_at_end: cfg.stop_at_end,
        })
    }

    /// Starts the thread; its events arrive on the returned channel.
    pub(crate) fn spawn(self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let failed = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("ordo-tcc-reader".into())
            .spawn(move || self.run(tx));
        if let Err(error) = spawned {
            let _ = failed.try_send(Event::Failed(TccError::Thread { source: error }));
        }
        rx
    }

    fn run(mut self, tx: mpsc::Sender<Event>) {
        let mut ctl = Control::new(Arc::clone(&self.consumer), tx);
        let mut data = DataPartitions::new(Arc::clone(&self.consumer));
        let event = match self.follow(&mut ctl, &mut data) {
            Ok(()) => Event::End,
            Err(Halt::Stopped) => return,
            Err(Halt::Failed(e)) => Event::Failed(*e),
        };
        let _ = ctl.emit(event);
    }

    /// Learns the wanted topics' metadata (so their partitions start fetching at once when
    /// assigned, instead of after librdkafka's own lookup) and assigns the commit partition.
    fn start(&self, data: &mut DataPartitions) -> Result<(), TccError> {
        match &self.wanted {
            Some(wanted) => wanted.iter().for_each(|topic| data.learn(topic)),
            None => data.learn_all(),
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&self.commit_topic, 0, self.commit_start)
            .map_err(TccError::kafka("name the commit partition"))?;
        self.consumer
            .incremental_assign(&tpl)
            .map_err(TccError::kafka(format!(
                "assign {} partition 0",
                self.commit_topic
            )))
    }

    fn follow(&mut self, ctl: &mut Control, data: &mut DataPartitions) -> Result<(), Halt> {
        self.start(data)?;
        let wanted = self.wanted.take();
        let wants = |topic: &str| wanted.as_ref().is_none_or(|w| w.contains(topic));
        while let Some((commit_offset, commit)) = self.next_commit(ctl)? {
            self.check_seq(commit_offset, &commit)?;
            check_parts(commit_offset, &commit)?;
            let commit = Arc::new(commit);
            let t = merge::Txn {
                commit_offset,
                commit: &commit,
            };
            merge::read_transaction(ctl, data, &wants, &t, self.skip_to.take())?;
            let bookmark = Bookmark::after_transaction(commit_offset, commit.seq);
            ctl.emit(Event::Transaction { commit, bookmark })?;
        }
        Ok(())
    }

    /// The next commit record and its offset; `None` at the end with `stop_at_end`.
    fn next_commit(&mut self, ctl: &mut Control) -> Result<Option<(i64, CommitRecord)>, Halt> {
        loop {
            let error = match ctl.poll(&self.commit_queue, Duration::MAX)? {
                Polled::Got(Ok(msg)) => {
                    let offset = msg.offset();
                    let record =
                        CommitRecord::decode(msg.payload(), offset).map_err(TccError::from)?;
                    return Ok(Some((offset, record)));
                }
                Polled::Got(Err(KafkaError::PartitionEOF(_))) if self.stop_at_end => {
                    return Ok(None);
                }
                Polled::Got(Err(KafkaError::PartitionEOF(_))) | Polled::Idle => continue,
                Polled::Got(Err(error)) => error,
            };
            return Err(self.commit_error(error).into());
        }
    }

    fn commit_error(&self, error: KafkaError) -> TccError {
        if let (true, Some(offset)) = (out_of_range(&error), self.start_offset) {
            let marks =
                self.consumer
                    .fetch_watermarks(&self.commit_topic, 0, Duration::from_secs(30));
            if let Ok((low, high)) = marks {
                return TccError::CommitStreamOffset {
                    topic: self.commit_topic.clone(),
                    offset,
                    low,
                    high,
                };
            }
        }
        TccError::Kafka {
            what: format!("read commit topic {}", self.commit_topic),
            source: error,
        }
    }

    fn check_seq(&mut self, offset: i64, commit: &CommitRecord) -> Result<(), TccError> {
        let found = commit.seq;
        if let Some(expected) = self.expected_seq
            && found != expected
        {
            return Err(if std::mem::take(&mut self.first_is_bookmarked) {
                TccError::BookmarkMismatch {
                    offset,
                    expected,
                    found,
                }
            } else {
                TccError::SequenceGap {
                    offset,
                    expected,
                    found,
                }
            });
        }
        self.first_is_bookmarked = false;
        self.expected_seq = Some(found.wrapping_add(1));
        Ok(())
    }
}

/// Parts must be sane before any data partition is read for them.
fn check_parts(offset: i64, commit: &CommitRecord) -> Result<(), TccError> {
    let invalid = |reason: String| TccError::InvalidCommitRecord {
        offset,
        seq: commit.seq,
        reason,
    };
    let mut seen = HashSet::new();
    for p in &commit.parts {
        let span = p.last.checked_sub(p.first).and_then(|d| d.checked_add(1));
        let fits = span
            .and_then(|s| u64::try_from(s).ok())
            .is_some_and(|s| p.count <= s);
        if p.first < 0 || p.partition < 0 || p.count == 0 || !fits {
            return Err(invalid(format!(
                "part {} partition {} lists {} records at offsets {}..={}",
                p.topic, p.partition, p.count, p.first, p.last
            )));
        }
        if !seen.insert((p.topic.as_str(), p.partition)) {
            return Err(invalid(format!(
                "{} partition {} is listed twice",
                p.topic, p.partition
            )));
        }
    }
    Ok(())
}
