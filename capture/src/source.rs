//! The contract between a source reader and the pipeline.
//!
//! A reader runs on its own current-thread runtime (a multi-threaded runtime costs the hot
//! decode loop about 25% here) and hands [`SourceEvent`]s to the pipeline through a bounded
//! channel in batches, so a full pipeline slows the reader down instead of growing memory.
//!
//! # Ordering
//! Transactions arrive whole and in commit order: `Begin`, its changes, `Commit`; never two
//! interleaved. Snapshot rows arrive as `Read` changes in transactions of their own before the
//! streamed ones; an incremental re-snapshot's rows ([`crate::resnapshot`]) arrive as `Read`
//! changes at the end of the streamed transaction that closed their window.
//!
//! # Resumption
//! The pipeline starts a reader with the restart position of the last commit record (or none).
//! The reader must not emit any transaction at or before that position. It may acknowledge to
//! the server (PostgreSQL flush LSN) only positions the pipeline reports as durable through
//! [`SourceContext::durable`].

use std::sync::Arc;

use ordo_kcop::{Position, SourceEvent, TableId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How many events go in one batch on the channel.
pub const BATCH_EVENTS: usize = 512;

/// Batches of events, in order.
pub type EventSender = mpsc::Sender<Vec<SourceEvent>>;

/// Which tables the configuration maps; readers skip the others.
pub type TableFilter = Arc<dyn Fn(&TableId) -> bool + Send + Sync>;

/// What a source reader gets from the pipeline.
#[derive(Clone)]
pub struct SourceContext {
    /// Where to send events.
    pub events: EventSender,
    /// The newest position whose transaction (and all before it) is durable in Kafka with its
    /// commit record; `None` until the first one.
    pub durable: watch::Receiver<Option<Position>>,
    /// The restart position from the commit stream, if any.
    pub resume: Option<Position>,
    /// Mapped tables.
    pub tables: TableFilter,
    /// Fires on shutdown: stop reading at a transaction boundary (finish the transaction being
    /// read, within a bound, so no record is left without a commit record), send what is
    /// batched, return `Ok`. When the pipeline has failed (`events` is closed), stop at once.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceContext")
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// Sees every event a reader hands on, before it is batched, and decides what the pipeline
/// gets instead: the same event, nothing, or more events. A hook keeps the reader's contract
/// (whole transactions in commit order, dense op indexes); the incremental snapshot
/// ([`crate::resnapshot`]) uses one to drop signal-table changes and to add snapshot rows to
/// the transaction that closes a snapshot window.
pub trait EventHook: Send {
    /// Turn `ev` into the events to send, appended to `out` in order.
    fn on_event(&mut self, ev: SourceEvent, out: &mut Vec<SourceEvent>);
}

/// Collects events into batches and sends them when full.
pub struct Batcher {
    tx: EventSender,
    batch: Vec<SourceEvent>,
    hook: Option<Box<dyn EventHook>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("queued", &self.batch.len())
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The pipeline has stopped; the reader should return.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pipeline stopped receiving events")]
pub struct PipelineClosed;

impl Batcher {
    /// A batcher sending on `tx`.
    pub fn new(tx: EventSender) -> Self {
        Self {
            tx,
            batch: Vec::with_capacity(BATCH_EVENTS),
            hook: None,
        }
    }

    /// Pass every event pushed from now on through `hook` first. Install it between
    /// transactions.
    pub fn set_hook(&mut self, hook: Box<dyn EventHook>) {
        self.hook = Some(hook);
    }

    /// Queue one event; sends the batch (waiting for room) when it is full.
    ///
    /// # Errors
    /// When the pipeline is gone.
    pub async fn push(&mut self, ev: SourceEvent) -> Result<(), PipelineClosed> {
        match self.hook.as_mut() {
            Some(hook) => hook.on_event(ev, &mut self.batch),
            None => self.batch.push(ev),
        }
        if self.batch.len() >= BATCH_EVENTS {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Send what is queued.
    ///
    /// # Errors
    /// When the pipeline is gone.
    pub async fn flush(&mut self) -> Result<(), PipelineClosed> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_EVENTS));
        self.tx.send(batch).await.map_err(|_| PipelineClosed)
    }
}
