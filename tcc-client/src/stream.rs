//! The consumer and its two streams: whole transactions, or operations one by one.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use tokio::sync::mpsc;

use crate::config::TccConfig;
use crate::error::TccError;
use crate::model::{TccOperation, TccTransaction};
use crate::reader::{Event, Reader};

/// A transactionally consistent consumer: the transactions of one commit stream, in commit
/// order, each exactly once, with exactly their records.
///
/// # Examples
///
/// ```no_run
/// use futures::TryStreamExt as _;
/// use ordo_tcc::{Start, TccConfig, TccConsumer};
///
/// # async fn example() -> Result<(), ordo_tcc::TccError> {
/// let cfg = TccConfig::new("localhost:9092", "shop.commits", Start::Beginning)
///     .topics(["shop.orders"]);
/// let mut transactions = TccConsumer::new(cfg)?.transactions();
/// while let Some(txn) = transactions.try_next().await? {
///     for record in txn.records() {
///         println!("{} {:?}", txn.commit.txn, record.value);
///     }
///     // Store txn.bookmark with the results, atomically; resume with Start::Bookmark.
/// }
/// # Ok(())
/// # }
/// ```
pub struct TccConsumer {
    reader: Reader,
    cfg: TccConfig,
}

impl fmt::Debug for TccConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TccConsumer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl TccConsumer {
    /// Checks the settings and creates the Kafka client. Nothing is read before a stream is
    /// created: then the commit partition is assigned at `cfg.start`, and each data partition
    /// when a transaction first needs it.
    ///
    /// # Errors
    /// [`TccError::Config`] for unusable settings, [`TccError::Kafka`] when librdkafka
    /// refuses the client properties.
    pub fn new(cfg: TccConfig) -> Result<Self, TccError> {
        let reader = Reader::new(&cfg)?;
        Ok(TccConsumer { reader, cfg })
    }

    /// The transactions, each with all its operations on the wanted topics.
    ///
    /// A transaction is collected whole before it is yielded: use
    /// [`operations`](TccConsumer::operations) when transactions may not fit in memory.
    /// Transactions with no record on the wanted topics are yielded with no operations, so
    /// their bookmarks move the application past them. After a resumption inside a
    /// transaction, the first item holds only that transaction's remaining operations.
    ///
    /// The stream ends after an error, or at the end of the commit topic with
    /// [`TccConfig::stop_at_end`]; otherwise it waits for new transactions forever.
    pub fn transactions(self) -> TransactionStream {
        TransactionStream {
            rx: self.reader.spawn(),
            pending: Vec::new(),
            done: false,
        }
    }

    /// The operations one at a time, in commit order then operation order, each with the
    /// bookmark that resumes after it. Memory stays bounded whatever a transaction's size:
    /// one record per data partition, librdkafka's read-ahead
    /// (`queued.max.messages.kbytes` per partition) and a bounded queue of operations.
    ///
    /// Transactions with no record on the wanted topics yield nothing here: the bookmark of
    /// the last operation stays before them, and a resumption reads their commit records
    /// again (not their data).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futures::TryStreamExt as _;
    /// use ordo_tcc::{Start, TccConfig, TccConsumer};
    ///
    /// # async fn example(saved: ordo_tcc::Bookmark) -> Result<(), ordo_tcc::TccError> {
    /// let cfg = TccConfig::new("localhost:9092", "shop.commits", Start::Bookmark(saved));
    /// let mut operations = TccConsumer::new(cfg)?.operations();
    /// while let Some(op) = operations.try_next().await? {
    ///     println!("txn {} op {}: {} records", op.commit.txn, op.op_index, op.records.len());
    ///     if op.last {
    ///         // End of the transaction: a good moment to commit work and op.bookmark.
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn operations(self) -> OperationStream {
        OperationStream {
            rx: self.reader.spawn(),
            done: false,
        }
    }
}

/// The stream of [`TccConsumer::transactions`]. Dropping it stops the reading.
#[derive(Debug)]
pub struct TransactionStream {
    rx: mpsc::Receiver<Event>,
    pending: Vec<TccOperation>,
    done: bool,
}

impl Stream for TransactionStream {
    type Item = Result<TccTransaction, TccError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let item = match ready!(this.rx.poll_recv(cx)) {
                Some(Event::Operation(op)) => {
                    this.pending.push(op);
                    continue;
                }
                Some(Event::Transaction { commit, bookmark }) => {
                    let operations = std::mem::take(&mut this.pending);
                    Ok(TccTransaction {
                        commit: (*commit).clone(),
                        operations,
                        bookmark,
                    })
                }
                other => {
                    this.done = true;
                    return Poll::Ready(finish(other));
                }
            };
            return Poll::Ready(Some(item));
        }
    }
}

/// The stream of [`TccConsumer::operations`]. Dropping it stops the reading.
#[derive(Debug)]
pub struct OperationStream {
    rx: mpsc::Receiver<Event>,
    done: bool,
}

impl Stream for OperationStream {
    type Item = Result<TccOperation, TccError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(this.rx.poll_recv(cx)) {
                Some(Event::Operation(op)) => return Poll::Ready(Some(Ok(op))),
                Some(Event::Transaction { .. }) => continue,
                other => {
                    this.done = true;
                    return Poll::Ready(finish(other));
                }
            }
        }
    }
}

/// The last item of a stream: an error, or none at the end.
fn finish<T>(event: Option<Event>) -> Option<Result<T, TccError>> {
    match event {
        Some(Event::End) => None,
        Some(Event::Failed(e)) => Some(Err(e)),
        // The thread ended without a word: it panicked.
        _ => Some(Err(TccError::ReaderStopped)),
    }
}
