//! The reader thread's link to the application: waiting on librdkafka queues without missing
//! a stop request, serving the consumer's main queue, and handing events over.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message as _};
use tokio::sync::mpsc;

use super::{Consumer, Event, Queue};
use crate::error::TccError;
use std::sync::Arc;

/// How long one wait on a queue lasts before the stop flag is checked again.
const POLL: Duration = Duration::from_millis(100);
/// How often the main queue (client errors, OAuth refresh...) is served while records flow.
const SERVE_EVERY: Duration = Duration::from_millis(250);

/// Why the reader stops early.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The application dropped the stream.
    Stopped,
    /// An error to hand to the application (boxed: errors are rare, results are not).
    Failed(Box<TccError>),
}

impl From<TccError> for Halt {
    fn from(e: TccError) -> Self {
        Halt::Failed(Box::new(e))
    }
}

/// What a wait on a queue gave.
pub(crate) enum Polled<'q> {
    /// A record or a per-partition event (end of partition, error).
    Got(KafkaResult<BorrowedMessage<'q>>),
    /// Nothing for the requested time.
    Idle,
}

pub(crate) struct Control {
    consumer: Arc<Consumer>,
    tx: mpsc::Sender<Event>,
    polls: u32,
    served: Instant,
}

impl Control {
    pub(crate) fn new(consumer: Arc<Consumer>, tx: mpsc::Sender<Event>) -> Self {
        Control {
            consumer,
            tx,
            polls: 0,
            served: Instant::now(),
        }
    }

    /// The next record or event of `queue`, or [`Polled::Idle`] after `idle` without one.
    pub(crate) fn poll<'q>(
        &mut self,
        queue: &'q Queue,
        idle: Duration,
    ) -> Result<Polled<'q>, Halt> {
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(1024) && self.served.elapsed() > SERVE_EVERY {
            self.serve()?;
        }
        let started = Instant::now();
        loop {
            if let Some(got) = queue.poll(POLL) {
                return Ok(Polled::Got(got));
            }
            self.serve()?;
            if started.elapsed() >= idle {
                return Ok(Polled::Idle);
            }
        }
    }

    /// Serves the main queue and notices a dropped stream.
    fn serve(&mut self) -> Result<(), Halt> {
        if self.tx.is_closed() {
            return Err(Halt::Stopped);
        }
        self.served = Instant::now();
        for _ in 0..100 {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(TccError::Kafka {
                        what: "consume (fatal client error)".into(),
                        source: KafkaError::MessageConsumptionFatal(code),
                    }
                    .into());
                }
                Some(Err(error)) => tracing::warn!(%error, "kafka consumer error"),
                Some(Ok(msg)) => tracing::warn!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "record on the consumer's main queue ignored"
                ),
            }
        }
        Ok(())
    }

    /// Hands an event to the application, waiting while its queue is full.
    pub(crate) fn emit(&mut self, event: Event) -> Result<(), Halt> {
        self.tx.blocking_send(event).map_err(|_| Halt::Stopped)
    }
}
