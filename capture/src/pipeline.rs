//! The pipeline: source events through each table's KCOP chain into the publisher.
//!
//! # Ordering
//! Events arrive in commit order; each transaction's records are handed to the producer in op
//! order (and, within an op, in the order its KCOPs produced them, numbered by `ordo.sub`),
//! before any record of the next transaction.

use std::sync::Arc;

use ordo_kcop::{KcopError, Operation, ProducerRecord, SourceEvent, SourceInfo, TxnBegin};
use tokio::sync::mpsc;

use crate::publisher::checkpoint::Topics;
use crate::publisher::{PublishError, Publisher, record_headers};
use crate::routes::Router;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A KCOP failed.
    #[error("kcop: {0}")]
    Kcop(#[from] KcopError),
    /// The source broke the event protocol (a bug).
    #[error("source event out of order: {0}")]
    Protocol(&'static str),
}

/// The pipeline's state.
#[derive(Debug)]
pub struct Pipeline {
    router: Router,
    topics: Topics,
    source: SourceInfo,
    txn_no: u64,
    current: Option<(u64, TxnBegin)>,
    records: Vec<ProducerRecord>,
    /// Changes handed to KCOPs (for metrics and tests).
    pub changes: u64,
}

impl Pipeline {
    /// A pipeline routing through `router`.
    pub fn new(router: Router, topics: Topics, source: SourceInfo) -> Self {
        Self {
            router,
            topics,
            source,
            txn_no: 0,
            current: None,
            records: Vec::with_capacity(8),
            changes: 0,
        }
    }

    /// Run until the source closes the channel, then wait (up to `drain`) for every handed-over
    /// transaction's commit record.
    ///
    /// # Errors
    /// On KCOP or publishing failures.
    pub async fn run(
        &mut self,
        mut events: mpsc::Receiver<Vec<SourceEvent>>,
        publisher: &mut Publisher,
        drain: std::time::Duration,
    ) -> Result<(), PipelineError> {
        loop {
            tokio::select! {
                batch = events.recv() => match batch {
                    Some(batch) => {
                        for ev in batch {
                            self.event(ev, publisher).await?;
                        }
                        publisher.drive_commits()?;
                    }
                    None => break,
                },
                () = publisher.wait_for_deliveries() => publisher.drive_commits()?,
            }
        }
        if let Some((no, _)) = self.current.take() {
            publisher.with_tracker(|t| t.abandon(no));
        }
        publisher.drain(drain).await?;
        Ok(())
    }

    async fn event(
        &mut self,
        ev: SourceEvent,
        publisher: &mut Publisher,
    ) -> Result<(), PipelineError> {
        match ev {
            SourceEvent::Begin(begin) => {
                if self.current.is_some() {
                    return Err(PipelineError::Protocol("begin inside a transaction"));
                }
                self.txn_no += 1;
                publisher.with_tracker(|t| t.begin(self.txn_no));
                self.current = Some((self.txn_no, begin));
            }
            SourceEvent::Change(change) => {
                let Some((no, begin)) = &self.current else {
                    return Err(PipelineError::Protocol("change outside a transaction"));
                };
                let no = *no;
                self.changes += 1;
                let routes = self.router.routes(&change.table)?;
                let op = Operation {
                    change: &change,
                    txn: begin,
                    source: &self.source,
                };
                self.records.clear();
                for route in routes.iter() {
                    route.kcop.process(&op, &mut self.records)?;
                }
                let txn_id: Arc<str> = begin.id.clone();
                let table = change.table.id.to_string();
                for (sub, rec) in self.records.drain(..).enumerate() {
                    let partitions = routes
                        .iter()
                        .find(|r| r.topic == rec.topic)
                        .and_then(|r| r.partitions);
                    self.topics.ensure(&rec.topic, partitions, &[]).await?;
                    let headers = record_headers(
                        &rec,
                        &txn_id,
                        change.op_index,
                        sub as u64,
                        &table,
                        change.op.code(),
                        change.table.version,
                    );
                    publisher.send(no, &rec, headers).await?;
                }
            }
            SourceEvent::Commit(commit) => {
                let Some((no, _)) = self.current.take() else {
                    return Err(PipelineError::Protocol("commit outside a transaction"));
                };
                publisher.with_tracker(|t| t.seal(no, commit));
            }
            SourceEvent::Rollback => {
                if let Some((no, _)) = self.current.take() {
                    publisher.with_tracker(|t| t.abandon(no));
                }
            }
            SourceEvent::Progress(pos) => {
                if self.current.is_some() {
                    return Err(PipelineError::Protocol("progress inside a transaction"));
                }
                publisher.with_tracker(|t| t.progress(pos));
            }
        }
        Ok(())
    }
}
