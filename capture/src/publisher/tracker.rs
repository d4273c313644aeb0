//! Delivery tracking: which records of which transaction Kafka has acknowledged, and when a
//! transaction's commit record may be written.
//!
//! # Ordering
//! Entries are kept in source order. The front transaction becomes *ready* once it is sealed
//! (its `Commit` arrived) and every one of its records is acknowledged; ready transactions get
//! their commit records strictly in that order, so sequence numbers are dense and follow commit
//! order even when a later transaction's records are acknowledged first. A source position
//! becomes durable when the commit record of its transaction is acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;

use ordo_kcop::{Position, TxnCommit};
use ordo_tcc::commit_stream::PartitionRange;

use crate::metrics::TableRows;

/// One data partition's records of a transaction.
#[derive(Debug, Clone)]
struct Part {
    topic: Arc<str>,
    partition: i32,
    first: i64,
    last: i64,
    count: u64,
}

#[derive(Debug)]
struct TxnState {
    no: u64,
    sent: u64,
    acked: u64,
    sealed: Option<TxnCommit>,
    parts: Vec<Part>,
    rows: TableRows,
}

#[derive(Debug)]
enum Entry {
    Txn(TxnState),
    /// A position with no transaction to record (idle WAL, unmapped changes).
    Progress(Position),
}

/// A transaction whose records are all durable, ready for its commit record.
#[derive(Debug)]
pub struct Ready {
    /// The source's commit metadata.
    pub commit: TxnCommit,
    /// Records produced.
    pub records: u64,
    /// Partitions touched, sorted by topic and partition.
    pub parts: Vec<PartitionRange>,
    /// Row changes per table, counted as published when the commit record is acknowledged.
    pub rows: TableRows,
}

/// A commit record handed to the producer, waiting for its acknowledgement.
#[derive(Debug)]
pub struct InFlight {
    /// The transaction's restart position, durable once acknowledged.
    pub restart: Position,
    /// The transaction's commit time (UTC microseconds).
    pub commit_micros: i64,
    /// Row changes per table.
    pub rows: TableRows,
}

/// What acknowledged commit records made durable.
#[derive(Debug, PartialEq)]
pub struct Delivered {
    /// The newest restart position now durable.
    pub restart: Position,
    /// Commit time of its transaction (UTC microseconds).
    pub commit_micros: i64,
    /// How many commit records this acknowledgement covered.
    pub txns: u64,
}

/// What the front of the queue allows next.
#[derive(Debug)]
pub enum Next {
    /// Write this commit record.
    Commit(Ready),
    /// This position is durable now (all earlier commit records are acknowledged).
    Durable(Position),
}

/// The delivery tracker (guarded by a mutex shared with the delivery callback).
#[derive(Debug, Default)]
pub struct Tracker {
    queue: VecDeque<Entry>,
    /// Commit records handed to the producer and not yet acknowledged, with their restart
    /// positions, in order.
    commits_in_flight: VecDeque<(u64, InFlight)>,
    failure: Option<String>,
}

impl Tracker {
    /// A transaction begins; its records will carry `no` as their delivery token.
    pub fn begin(&mut self, no: u64) {
        self.queue.push_back(Entry::Txn(TxnState {
            no,
            sent: 0,
            acked: 0,
            sealed: None,
            parts: Vec::new(),
            rows: Vec::new(),
        }));
    }

    /// Transaction `no` committed at the source after `sent` records were handed to the
    /// producer (the publisher counts them, so handing one over takes no lock); `rows` counts
    /// its row changes per table.
    pub fn seal(&mut self, no: u64, commit: TxnCommit, rows: TableRows, sent: u64) {
        if let Some(t) = self.txn_mut(no) {
            t.sealed = Some(commit);
            t.rows = rows;
            t.sent = sent;
        }
    }

    /// Transaction `no` will not commit in this stream: forget it (its records become orphans).
    pub fn abandon(&mut self, no: u64) {
        self.queue
            .retain(|e| !matches!(e, Entry::Txn(t) if t.no == no));
    }

    /// A source position to acknowledge once everything before it is durable.
    pub fn progress(&mut self, pos: Position) {
        self.queue.push_back(Entry::Progress(pos));
    }

    fn txn_mut(&mut self, no: u64) -> Option<&mut TxnState> {
        // Deliveries mostly concern the oldest transactions: scan from the front.
        self.queue.iter_mut().find_map(|e| match e {
            Entry::Txn(t) if t.no == no => Some(t),
            _ => None,
        })
    }

    /// A data record of transaction `no` was acknowledged at `topic`/`partition`/`offset`.
    /// Returns whether that completed the transaction (sealed, every record acknowledged), the
    /// only time the pipeline needs waking.
    pub fn delivered(&mut self, no: u64, topic: &str, partition: i32, offset: i64) -> bool {
        let Some(t) = self.txn_mut(no) else {
            return false;
        };
        t.acked += 1;
        let complete = t.sealed.is_some() && t.acked == t.sent;
        match t
            .parts
            .iter_mut()
            .find(|p| p.partition == partition && &*p.topic == topic)
        {
            Some(p) => {
                p.first = p.first.min(offset);
                p.last = p.last.max(offset);
                p.count += 1;
            }
            None => t.parts.push(Part {
                topic: topic.into(),
                partition,
                first: offset,
                last: offset,
                count: 1,
            }),
        }
        complete
    }

    /// A record could not be delivered: nothing may become durable any more.
    pub fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    /// The first delivery failure, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The commit record with sequence `seq` is being produced.
    pub fn commit_sent(&mut self, seq: u64, txn: InFlight) {
        self.commits_in_flight.push_back((seq, txn));
    }

    /// The commit record `seq` was acknowledged: counts the published rows of every
    /// transaction it covers and returns what is durable now.
    pub fn commit_delivered(&mut self, seq: u64) -> Option<Delivered> {
        let mut durable: Option<Delivered> = None;
        while let Some((s, _)) = self.commits_in_flight.front() {
            if *s > seq {
                break;
            }
            let Some((_, txn)) = self.commits_in_flight.pop_front() else {
                break;
            };
            for (table, n) in &txn.rows {
                table.published(*n);
            }
            let txns = durable.as_ref().map_or(0, |d| d.txns) + 1;
            durable = Some(Delivered {
                restart: txn.restart,
                commit_micros: txn.commit_micros,
                txns,
            });
        }
        durable
    }

    /// Whether nothing is pending: no open or unacknowledged transaction, no commit in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.commits_in_flight.is_empty()
    }

    /// Number of transactions waiting for acknowledgements or their commit record.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Take the next thing the front of the queue allows, if any.
    pub fn take_next(&mut self) -> Option<Next> {
        if self.failure.is_some() {
            return None;
        }
        match self.queue.front()? {
            Entry::Progress(_) if !self.commits_in_flight.is_empty() => None,
            Entry::Progress(_) => match self.queue.pop_front() {
                Some(Entry::Progress(p)) => Some(Next::Durable(p)),
                _ => None,
            },
            Entry::Txn(t) if t.sealed.is_none() || t.acked < t.sent => None,
            Entry::Txn(_) => {
                let Some(Entry::Txn(t)) = self.queue.pop_front() else {
                    return None;
                };
                let mut parts: Vec<PartitionRange> = t
                    .parts
                    .into_iter()
                    .map(|p| PartitionRange {
                        topic: p.topic.to_string(),
                        partition: p.partition,
                        first: p.first,
                        last: p.last,
                        count: p.count,
                    })
                    .collect();
                parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                let commit = t.sealed?;
                Some(Next::Commit(Ready {
                    commit,
                    records: t.acked,
                    parts,
                    rows: t.rows,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_kcop::Lsn;
    use ordo_kcop::value::Timestamp;

    fn commit(id: &str, lsn: u64) -> TxnCommit {
        TxnCommit {
            id: id.into(),
            commit_time: Timestamp(0),
            commit_position: Position::Postgres(Lsn(lsn)),
            restart_position: Position::Postgres(Lsn(lsn + 1)),
            change_count: 1,
        }
    }

    #[test]
    fn commit_records_follow_source_order_not_ack_order() {
        let mut t = Tracker::default();
        t.begin(1);
        t.seal(1, commit("a", 10), Vec::new(), 1);
        t.begin(2);
        t.seal(2, commit("b", 20), Vec::new(), 1);
        assert!(t.delivered(2, "x", 0, 5), "txn 2 is complete");
        assert!(t.take_next().is_none(), "txn 1 is not acknowledged yet");
        assert!(t.delivered(1, "x", 1, 7));
        assert!(matches!(t.take_next(), Some(Next::Commit(r)) if &*r.commit.id == "a"));
        assert!(
            matches!(t.take_next(), Some(Next::Commit(r)) if &*r.commit.id == "b" && r.parts[0].first == 5)
        );
    }

    #[test]
    fn acknowledgements_before_the_commit_count_once_it_arrives() {
        let mut t = Tracker::default();
        t.begin(1);
        assert!(
            !t.delivered(1, "x", 0, 1),
            "not sealed yet: nothing to wake"
        );
        assert!(!t.delivered(1, "x", 0, 2));
        assert!(
            t.take_next().is_none(),
            "open transactions never get a commit record"
        );
        t.seal(1, commit("a", 10), Vec::new(), 3);
        assert!(
            t.take_next().is_none(),
            "one record is still unacknowledged"
        );
        assert!(
            t.delivered(1, "x", 0, 3),
            "the last acknowledgement completes it"
        );
        assert!(
            matches!(t.take_next(), Some(Next::Commit(r)) if r.records == 3 && r.parts[0].first == 1 && r.parts[0].last == 3)
        );
    }

    #[test]
    fn progress_waits_for_earlier_commit_records() {
        let mut t = Tracker::default();
        t.begin(1);
        t.seal(1, commit("a", 10), Vec::new(), 0);
        t.progress(Position::Postgres(Lsn(99)));
        assert!(matches!(t.take_next(), Some(Next::Commit(_))));
        t.commit_sent(
            1,
            InFlight {
                restart: Position::Postgres(Lsn(11)),
                commit_micros: 5,
                rows: Vec::new(),
            },
        );
        assert!(t.take_next().is_none());
        assert_eq!(
            t.commit_delivered(1),
            Some(Delivered {
                restart: Position::Postgres(Lsn(11)),
                commit_micros: 5,
                txns: 1
            })
        );
        assert!(matches!(
            t.take_next(),
            Some(Next::Durable(Position::Postgres(Lsn(99))))
        ));
    }

    #[test]
    fn failures_stop_everything() {
        let mut t = Tracker::default();
        t.begin(1);
        t.seal(1, commit("a", 10), Vec::new(), 0);
        t.fail("boom".into());
        assert!(t.take_next().is_none());
    }
}
