//! The pipeline: source events through each table's KCOP chain into the publisher.
//!
//! # Ordering
//! Events arrive in commit order; each transaction's records are handed to the producer in op
//! order (and, within an op, in the order its KCOPs produced them, numbered by `ordo.sub`),
//! before any record of the next transaction.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_kcop::{
    KcopError, Operation, ProducerRecord, SchemaRef, SourceEvent, SourceInfo, TxnBegin,
};
use tokio::sync::mpsc;

use crate::metrics::{Metrics, TableRows, TableStats};
use crate::notify::Wedge;
use crate::publisher::checkpoint::Topics;
use crate::publisher::{PublishError, Publisher, record_headers};
use crate::routes::{Route, Router};

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

/// What the pipeline keeps per table schema.
#[derive(Debug)]
struct TableEntry {
    /// Keeps the schema (and so the key's address) alive.
    _schema: SchemaRef,
    /// `namespace.name`, for the `ordo.table` header.
    name: Arc<str>,
    stats: Arc<TableStats>,
    routes: Arc<[Route]>,
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
    /// For each of `records`, the index of the route whose KCOP made it.
    made_by: Vec<usize>,
    /// Changes handed to KCOPs (for metrics and tests).
    pub changes: u64,
    metrics: Arc<Metrics>,
    /// Per table schema (keyed by the schema's address, kept alive here): its name, counters
    /// and routes, so a change costs one lookup.
    tables: HashMap<usize, TableEntry>,
    /// Rows per table of the current transaction.
    rows: TableRows,
    wedge: Wedge,
}

impl Pipeline {
    /// A pipeline routing through `router`, counting into `metrics`.
    pub fn new(router: Router, topics: Topics, source: SourceInfo, metrics: Arc<Metrics>) -> Self {
        Self {
            router,
            topics,
            source,
            txn_no: 0,
            current: None,
            records: Vec::with_capacity(8),
            made_by: Vec::with_capacity(8),
            changes: 0,
            metrics,
            tables: HashMap::new(),
            rows: Vec::new(),
            wedge: Wedge::from_env(),
        }
    }

    /// The name, counters and routes of a change's table schema.
    fn table(&mut self, schema: &SchemaRef) -> Result<(Arc<str>, Arc<[Route]>), PipelineError> {
        let key = Arc::as_ptr(schema) as usize;
        let entry = match self.tables.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let name: Arc<str> = schema.id.to_string().into();
                e.insert(TableEntry {
                    _schema: schema.clone(),
                    stats: self.metrics.table(&name),
                    routes: self.router.routes(schema)?,
                    name,
                })
            }
        };
        let stats = &entry.stats;
        stats.captured(1);
        match self.rows.iter_mut().find(|(t, _)| Arc::ptr_eq(t, stats)) {
            Some((_, n)) => *n += 1,
            None => self.rows.push((stats.clone(), 1)),
        }
        Ok((entry.name.clone(), entry.routes.clone()))
    }

    /// One turn of the loop: liveness for the watchdog, queue depth for the metrics.
    async fn tick(&self, publisher: &Publisher) {
        self.wedge.hold().await;
        self.metrics.pipeline_tick();
        let pending = publisher.with_tracker(|t| t.pending());
        self.metrics
            .set_queue(publisher.in_flight(), u64::try_from(pending).unwrap_or(0));
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
            self.tick(publisher).await;
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
                self.metrics.set_source_idle(false);
                self.rows.clear();
                self.txn_no += 1;
                publisher.begin(self.txn_no);
                self.current = Some((self.txn_no, begin));
            }
            SourceEvent::Change(change) => {
                let (table, routes) = self.table(&change.table)?;
                let Some((no, begin)) = &self.current else {
                    return Err(PipelineError::Protocol("change outside a transaction"));
                };
                let no = *no;
                self.changes += 1;
                let op = Operation {
                    change: &change,
                    txn: begin,
                    source: &self.source,
                };
                self.records.clear();
                self.made_by.clear();
                for (i, route) in routes.iter().enumerate() {
                    route.kcop.process(&op, &mut self.records)?;
                    self.made_by.resize(self.records.len(), i);
                }
                let txn_id: Arc<str> = begin.id.clone();
                let made = self.records.drain(..).zip(self.made_by.drain(..));
                for (sub, (rec, by)) in made.enumerate() {
                    // A topic no route names (an output's `route`, a schema topic) is created
                    // as the output that made the record says.
                    let partitions = routes
                        .iter()
                        .find(|r| r.topic == rec.topic)
                        .or_else(|| routes.get(by))
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
                self.metrics.txn_captured(commit.commit_time.0);
                let rows = std::mem::take(&mut self.rows);
                publisher.seal(no, commit, rows);
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
                self.metrics.set_source_idle(true);
                publisher.with_tracker(|t| t.progress(pos));
            }
        }
        Ok(())
    }
}
