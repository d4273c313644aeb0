//! One transaction: exactly the records its commit record lists, merged across partitions by
//! (operation index, sub-index), delivered one operation at a time.
//!
//! # Ordering
//! On each partition the daemon writes a transaction's records in operation order, so each
//! partition yields an ascending (op, sub) sequence and a k-way merge of the partitions'
//! heads gives the transaction's order while holding one record per partition. Which
//! records belong to the transaction: see [`cursor`](super::cursor).

use std::sync::Arc;

use super::Event;
use super::control::{Control, Halt};
use super::cursor::Cursor;
use super::partitions::DataPartitions;
use crate::bookmark::Bookmark;
use crate::commit_stream::CommitRecord;
use crate::model::TccOperation;

/// The transaction being read.
pub(crate) struct Txn<'a> {
    pub(crate) commit_offset: i64,
    pub(crate) commit: &'a Arc<CommitRecord>,
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
        cursors.push(Cursor::new(dp, range));
    }
    for c in &mut cursors {
        c.advance(ctl, data, t)?;
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
                c.advance(ctl, data, t)?;
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
