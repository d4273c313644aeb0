//! The commit stream's invariant, checked after a run: one commit record per source
//! transaction, dense sequence numbers, and each record listing exactly the data records whose
//! headers carry its transaction id, every op index once.

use std::collections::{BTreeMap, BTreeSet};

use ordo_tcc::commit_stream::CommitRecord;

use crate::kafka::Record;

/// Decodes every record of a commit topic.
pub fn decode_commits(records: &[Record]) -> Vec<CommitRecord> {
    records
        .iter()
        .map(|r| CommitRecord::decode(r.value.as_deref(), r.offset).expect("a commit record"))
        .collect()
}

/// Asserts that sequence numbers run 1, 2, 3... without gap or repeat.
pub fn assert_dense(commits: &[CommitRecord]) {
    let seqs: Vec<u64> = commits.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (1..=commits.len() as u64).collect();
    assert_eq!(seqs, want, "dense sequence numbers");
}

/// Asserts that each commit record lists, per partition, exactly `count` distinct op indexes
/// among the records in `[first, last]` with its transaction id, and that the transaction's op
/// indexes are `0..ops`, each once. `data` holds every record of the data topics by topic.
/// Returns how many data records are listed; the others are orphans of killed runs or
/// producer retries.
pub fn assert_listing(commits: &[CommitRecord], data: &BTreeMap<String, Vec<Record>>) -> usize {
    let mut listed = 0;
    for c in commits {
        let mut ops = Vec::new();
        for p in &c.parts {
            let recs = data.get(&p.topic).map_or(&[][..], Vec::as_slice);
            let seen: BTreeSet<u64> = recs
                .iter()
                .filter(|d| {
                    d.partition == p.partition
                        && (p.first..=p.last).contains(&d.offset)
                        && d.header("ordo.txn") == Some(&c.txn)
                })
                .map(|d| {
                    d.header("ordo.op")
                        .and_then(|o| o.parse().ok())
                        .expect("ordo.op")
                })
                .collect();
            assert_eq!(
                seen.len() as u64,
                p.count,
                "txn {} on {}/{}",
                c.txn,
                p.topic,
                p.partition
            );
            listed += seen.len();
            ops.extend(seen);
        }
        ops.sort_unstable();
        assert_eq!(
            ops,
            (0..c.ops).collect::<Vec<_>>(),
            "txn {} has each op exactly once",
            c.txn
        );
    }
    listed
}
