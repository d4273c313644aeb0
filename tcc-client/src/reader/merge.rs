//! One transaction: exactly the records its commit record lists, merged across partitions by
//! (operation index, sub-index), delivered one operation at a time.
//!
//! # Ordering
//! On each partition the daemon writes a transaction's records in operation order, so each
//! partition yields an ascending (op, sub) sequence and a k-way merge of the partitions'
//! heads gives the transaction's order while holding one record per partition.
//!
//! # Duplicates
//! A record belongs to the transaction when its offset is in `[first, last]` and its
//! `ordo.txn` header is the transaction's id. Among those, one whose (op, sub) is not above
//! the previous one on its partition is a duplicate (a producer retry) and is dropped; a
//! partition is done after `count` records. Records of other transactions inside the range,
//! retries after it and orphans of crashed runs before it are never looked at twice.

use std::sync::Arc;
use std::time::Duration;

use ordo_kcop::record::headers;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

use super::Event;
use super::control::{Control, Halt, Polled};
use super::partitions::{DataPartitions, out_of_range};
use crate::bookmark::Bookmark;
use crate::commit_stream::{CommitRecord, PartitionRange};
use crate::error::{MissingReason, TccError};
use crate::model::{TccOperation, TccRecord, parse_decimal};

/// A listed record is already in Kafka when its commit record is read; when none arrives for
/// this long, the broker is asked whether the partition holds it at all.
const STALL: Duration = Duration::from_secs(5);

/// The transaction being read.
pub(crate) struct Txn<'a> {
    pub(crate) commit_offset: i64,
    pub(crate) commit: &'a Arc<CommitRecord>,
}

/// The next record of one partition.
struct Head {
    op: u64,
    sub: u64,
    record: TccRecord,
}

/// Progress through one partition's range.
struct Cursor<'c> {
    dp: usize,
    range: &'c PartitionRange,
    found: u64,
    prev: Option<(u64, u64)>,
    head: Option<Head>,
}

/// Reads the transaction's records on the wanted topics and emits its operations, skipping
/// those at or below `skip_to` (resumption inside the transaction).
pub(crate) fn read_transaction(
    ctl: &mut Control,
    data: &mut DataPartitions,
    wants: &dyn Fn(&str) -> bool,
    t: &Txn<'_>,
    skip_to: Option<u64>,
) -> Result<(), Halt> {
    let mut cursors = Vec::new();
    for range in t.commit.parts.iter().filter(|r| wants(&r.topic)) {
        let dp = data.position(&range.topic, range.partition, range.first)?;
        cursors.push(Cursor {
            dp,
            range,
            found: 0,
            prev: None,
            head: None,
        });
    }
    for c in &mut cursors {
        c.head = next_match(ctl, data, c, t)?;
    }
    let seq = t.commit.seq;
    while let Some(op) = cursors
        .iter()
        .filter_map(|c| c.head.as_ref().map(|h| h.op))
        .min()
    {
        let mut records = Vec::new();
        for c in &mut cursors {
            while let Some(head) = c.head.take_if(|h| h.op == op) {
                records.push((head.sub, head.record));
                c.head = next_match(ctl, data, c, t)?;
            }
        }
        if skip_to.is_some_and(|k| op <= k) {
            continue;
        }
        // Subs of one operation may sit on several partitions.
        records.sort_by_key(|(sub, _)| *sub);
        let last = cursors.iter().all(|c| c.head.is_none());
        let bookmark = if last {
            Bookmark::after_transaction(t.commit_offset, seq)
        } else {
            Bookmark::after_operation(t.commit_offset, seq, op)
        };
        ctl.emit(Event::Operation(TccOperation {
            op_index: op,
            records: records.into_iter().map(|(_, r)| r).collect(),
            bookmark,
            commit: Arc::clone(t.commit),
            last,
        }))?;
    }
    Ok(())
}

/// The next record of the transaction on the cursor's partition, `None` once all `count`
/// were found.
fn next_match(
    ctl: &mut Control,
    data: &mut DataPartitions,
    c: &mut Cursor<'_>,
    t: &Txn<'_>,
) -> Result<Option<Head>, Halt> {
    let txn = t.commit.txn.as_bytes();
    loop {
        if c.found == c.range.count {
            return Ok(None);
        }
        let dp = &mut data.list[c.dp];
        if dp.next > c.range.last {
            return Err(missing(c, t, MissingReason::RangeExhausted));
        }
        let msg = match ctl.poll(&dp.queue, STALL)? {
            Polled::Got(Ok(msg)) => msg,
            Polled::Got(Err(error)) => {
                check_partition(data, c, t, Some(error))?;
                continue;
            }
            Polled::Idle => {
                check_partition(data, c, t, None)?;
                continue;
            }
        };
        let offset = msg.offset();
        dp.next = offset + 1;
        if offset < c.range.first {
            continue;
        }
        if offset > c.range.last {
            return Err(missing(c, t, MissingReason::RangeExhausted));
        }
        let (h_txn, h_op, h_sub) = ordo_headers(&msg);
        if h_txn != Some(txn) {
            continue;
        }
        let malformed =
            |header: &'static str, value: Option<&[u8]>| TccError::MalformedDataRecord {
                topic: c.range.topic.clone(),
                partition: c.range.partition,
                offset,
                txn: t.commit.txn.clone(),
                header,
                value: String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
            };
        let op = h_op
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(headers::OP, h_op))?;
        let sub = match h_sub {
            None => 0,
            Some(v) => parse_decimal(v).ok_or_else(|| malformed(headers::SUB, h_sub))?,
        };
        if c.prev.is_some_and(|prev| (op, sub) <= prev) {
            tracing::debug!(topic = %c.range.topic, partition = c.range.partition, offset, op, sub, "duplicate dropped");
            continue;
        }
        c.prev = Some((op, sub));
        c.found += 1;
        let record = to_record(&msg, &c.range.topic, c.range.partition);
        return Ok(Some(Head { op, sub, record }));
    }
}

/// After an end-of-partition event, a partition error, or a long wait: decides whether the
/// listed records can still come, with the partition's watermarks.
fn check_partition(
    data: &DataPartitions,
    c: &Cursor<'_>,
    t: &Txn<'_>,
    error: Option<KafkaError>,
) -> Result<(), Halt> {
    let (low, high) = data.watermarks(c.dp)?;
    let next = data.list[c.dp].next;
    if low > next {
        return Err(missing(c, t, MissingReason::Truncated { log_start: low }));
    }
    let at_end = high <= next;
    let end = MissingReason::PartitionEnd {
        high_watermark: high,
    };
    match error {
        // Records arrived after the end was reported, or are still on their way.
        None | Some(KafkaError::PartitionEOF(_)) if !at_end => Ok(()),
        None | Some(KafkaError::PartitionEOF(_)) => Err(missing(c, t, end)),
        Some(e) if at_end && out_of_range(&e) => Err(missing(c, t, end)),
        Some(source) => Err(Halt::Failed(TccError::Kafka {
            what: format!("read {} partition {}", c.range.topic, c.range.partition),
            source,
        })),
    }
}

fn missing(c: &Cursor<'_>, t: &Txn<'_>, reason: MissingReason) -> Halt {
    Halt::Failed(TccError::MissingRecords {
        topic: c.range.topic.clone(),
        partition: c.range.partition,
        first: c.range.first,
        last: c.range.last,
        txn: t.commit.txn.clone(),
        seq: t.commit.seq,
        expected: c.range.count,
        found: c.found,
        reason,
        skip: Bookmark::after_transaction(t.commit_offset, t.commit.seq),
    })
}

/// The `ordo.txn`, `ordo.op` and `ordo.sub` headers. The daemon appends them after the
/// KCOP's own headers, so the last occurrence of each counts.
fn ordo_headers<'m>(
    msg: &'m BorrowedMessage<'_>,
) -> (Option<&'m [u8]>, Option<&'m [u8]>, Option<&'m [u8]>) {
    let (mut txn, mut op, mut sub) = (None, None, None);
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            match h.key {
                headers::TXN => txn = h.value,
                headers::OP => op = h.value,
                headers::SUB => sub = h.value,
                _ => {}
            }
        }
    }
    (txn, op, sub)
}

fn to_record(msg: &BorrowedMessage<'_>, topic: &str, partition: i32) -> TccRecord {
    let headers = msg
        .headers()
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
        .unwrap_or_default();
    TccRecord {
        topic: topic.to_owned(),
        partition,
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers,
    }
}
