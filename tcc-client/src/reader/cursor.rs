//! Reading one transaction's records from one partition: from the kept records first when
//! the range starts before the partition's position, then from its queue.
//!
//! # Duplicates
//! A record belongs to the transaction when its offset is in `[first, last]` and its
//! `ordo.txn` header is the transaction's id. Among those, one whose (op, sub) is not above
//! the previous one on the partition is a duplicate (a producer retry) and is dropped; the
//! partition is done after `count` records. Records of other transactions are kept a while
//! for the transactions that follow; retries after the range and orphans of crashed runs
//! before it are never delivered.

use std::time::Duration;

use ordo_kcop::record::headers;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

use super::control::{Control, Halt, Polled};
use super::kept::KeptRecord;
use super::merge::Txn;
use super::partitions::{DataPartitions, out_of_range};
use crate::commit_stream::PartitionRange;
use crate::error::{MissingReason, TccError};
use crate::model::{TccRecord, parse_decimal};

/// A listed record is already in Kafka when its commit record is read; when none arrives for
/// this long, the broker is asked whether the partition holds it at all.
const STALL: Duration = Duration::from_secs(5);
/// How long records may take to come after an end-of-partition event.
const END_GRACE: Duration = Duration::from_millis(500);

/// The next record of one partition.
pub(crate) struct Head {
    pub(crate) op: u64,
    pub(crate) sub: u64,
    pub(crate) record: TccRecord,
}

/// Progress through one partition's range.
pub(crate) struct Cursor<'c> {
    dp: usize,
    range: &'c PartitionRange,
    /// The next offset to look at.
    pos: i64,
    found: u64,
    prev: Option<(u64, u64)>,
    /// The partition reported its end since the last record.
    at_end: bool,
    /// The next record of the transaction, `None` when all were read.
    pub(crate) head: Option<Head>,
}

/// What a record is to the transaction being read.
enum Verdict {
    /// Its next record.
    Match(u64, u64),
    /// Another transaction's (keep it).
    Other,
    /// An orphan before the range, or a duplicate (drop it).
    Own,
}

impl<'c> Cursor<'c> {
    /// A cursor on partition `dp` (already positioned) for `range`.
    pub(crate) fn new(dp: usize, range: &'c PartitionRange) -> Self {
        Cursor {
            dp,
            range,
            pos: range.first,
            found: 0,
            prev: None,
            at_end: false,
            head: None,
        }
    }

    /// Reads the next record of the transaction into `head`.
    pub(crate) fn advance(
        &mut self,
        ctl: &mut Control,
        data: &mut DataPartitions,
        t: &Txn<'_>,
    ) -> Result<(), Halt> {
        self.head = None;
        while self.found < self.range.count && self.head.is_none() {
            self.head = if self.pos < data.list[self.dp].next {
                self.next_kept(data, t)?
            } else {
                self.next_live(ctl, data, t)?
            };
        }
        Ok(())
    }

    /// One step through the kept records.
    fn next_kept(&mut self, data: &mut DataPartitions, t: &Txn<'_>) -> Result<Option<Head>, Halt> {
        let dp = &mut data.list[self.dp];
        let Some((i, k)) = dp
            .kept
            .at_or_after(self.pos)
            .filter(|(_, k)| k.offset < dp.next)
        else {
            self.pos = dp.next;
            return Ok(None);
        };
        let offset = k.offset;
        self.pos = offset + 1;
        let fields = OrdoHeaders::of(k.headers.iter().map(|(n, v)| (n.as_str(), Some(&v[..]))));
        let Verdict::Match(op, sub) = self.classify(t, offset, &fields)? else {
            return Ok(None);
        };
        let k = dp.kept.take(i);
        let record = TccRecord {
            topic: self.range.topic.clone(),
            partition: self.range.partition,
            offset,
            key: k.key,
            value: k.value,
            headers: k.headers,
        };
        Ok(Some(Head { op, sub, record }))
    }

    /// One step through the partition's queue.
    fn next_live(
        &mut self,
        ctl: &mut Control,
        data: &mut DataPartitions,
        t: &Txn<'_>,
    ) -> Result<Option<Head>, Halt> {
        let dp = &mut data.list[self.dp];
        if dp.next > self.range.last {
            return Err(self.missing(t, MissingReason::RangeExhausted));
        }
        // After an end-of-partition event, wait briefly for records fetched since, then ask
        // the broker (the event may predate the records: it is not worth a round trip).
        let idle = if self.at_end { END_GRACE } else { STALL };
        let msg = match ctl.poll(&dp.queue, idle)? {
            Polled::Got(Ok(msg)) => msg,
            Polled::Got(Err(KafkaError::PartitionEOF(_))) => {
                self.at_end = true;
                return Ok(None);
            }
            Polled::Got(Err(error)) => return self.check_partition(data, t, Some(error)),
            Polled::Idle => return self.check_partition(data, t, None),
        };
        self.at_end = false;
        let offset = msg.offset();
        dp.next = offset + 1;
        self.pos = dp.next;
        let hs = msg.headers();
        let fields = OrdoHeaders::of(hs.iter().flat_map(|h| h.iter()).map(|h| (h.key, h.value)));
        match self.classify(t, offset, &fields)? {
            Verdict::Match(op, sub) => {
                let record = to_record(&msg, &self.range.topic, self.range.partition);
                Ok(Some(Head { op, sub, record }))
            }
            Verdict::Other => {
                dp.kept.push(kept_record(&msg));
                Ok(None)
            }
            Verdict::Own => Ok(None),
        }
    }

    fn classify(&mut self, t: &Txn<'_>, offset: i64, h: &OrdoHeaders<'_>) -> Result<Verdict, Halt> {
        if offset > self.range.last {
            return Err(self.missing(t, MissingReason::RangeExhausted));
        }
        if h.txn != Some(t.commit.txn.as_bytes()) {
            return Ok(Verdict::Other);
        }
        if offset < self.range.first {
            return Ok(Verdict::Own);
        }
        let malformed =
            |header: &'static str, value: Option<&[u8]>| TccError::MalformedDataRecord {
                topic: self.range.topic.clone(),
                partition: self.range.partition,
                offset,
                txn: t.commit.txn.clone(),
                header,
                value: String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
            };
        let op =
            h.op.and_then(parse_decimal)
                .ok_or_else(|| malformed(headers::OP, h.op))?;
        let sub = match h.sub {
            None => 0,
            Some(v) => parse_decimal(v).ok_or_else(|| malformed(headers::SUB, h.sub))?,
        };
        if self.prev.is_some_and(|prev| (op, sub) <= prev) {
            tracing::debug!(topic = %self.range.topic, partition = self.range.partition, offset, op, sub, "duplicate dropped");
            return Ok(Verdict::Own);
        }
        self.prev = Some((op, sub));
        self.found += 1;
        Ok(Verdict::Match(op, sub))
    }

    /// After a partition error, or a wait with no record: decides with the partition's
    /// watermarks whether the listed records can still come.
    fn check_partition(
        &self,
        data: &DataPartitions,
        t: &Txn<'_>,
        error: Option<KafkaError>,
    ) -> Result<Option<Head>, Halt> {
        let (low, high) = data.watermarks(self.dp)?;
        let next = data.list[self.dp].next;
        if low > next {
            return Err(self.missing(t, MissingReason::Truncated { log_start: low }));
        }
        let at_end = high <= next;
        let end = MissingReason::PartitionEnd {
            high_watermark: high,
        };
        match error {
            // The records are there, still on their way.
            None if !at_end => Ok(None),
            None => Err(self.missing(t, end)),
            Some(e) if at_end && out_of_range(&e) => Err(self.missing(t, end)),
            Some(source) => Err(Halt::from(TccError::Kafka {
                what: format!(
                    "read {} partition {}",
                    self.range.topic, self.range.partition
                ),
                source,
            })),
        }
    }

    fn missing(&self, t: &Txn<'_>, reason: MissingReason) -> Halt {
        Halt::from(TccError::MissingRecords {
            topic: self.range.topic.clone(),
            partition: self.range.partition,
            first: self.range.first,
            last: self.range.last,
            txn: t.commit.txn.clone(),
            seq: t.commit.seq,
            expected: self.range.count,
            found: self.found,
            reason,
            commit_offset: t.commit_offset,
        })
    }
}

/// The `ordo.txn`, `ordo.op` and `ordo.sub` header values of a record.
struct OrdoHeaders<'m> {
    txn: Option<&'m [u8]>,
    op: Option<&'m [u8]>,
    sub: Option<&'m [u8]>,
}

impl<'m> OrdoHeaders<'m> {
    /// The daemon appends the `ordo.*` headers after the KCOP's own, so the last occurrence
    /// of each counts.
    fn of(headers: impl Iterator<Item = (&'m str, Option<&'m [u8]>)>) -> Self {
        let mut out = OrdoHeaders {
            txn: None,
            op: None,
            sub: None,
        };
        for (name, value) in headers {
            match name {
                headers::TXN => out.txn = value,
                headers::OP => out.op = value,
                headers::SUB => out.sub = value,
                _ => {}
            }
        }
        out
    }
}

fn owned_headers(msg: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    msg.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn to_record(msg: &BorrowedMessage<'_>, topic: &str, partition: i32) -> TccRecord {
    TccRecord {
        topic: topic.to_owned(),
        partition,
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers: owned_headers(msg),
    }
}

fn kept_record(msg: &BorrowedMessage<'_>) -> KeptRecord {
    KeptRecord {
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers: owned_headers(msg),
    }
}
