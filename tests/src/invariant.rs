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

/// Replays the records of `topic` in commit-stream order, as a consumer applying the stream
/// would: for each commit record, its listed records of `topic` in op order; a delete removes
/// the key, anything else sets it. Returns key (the record key as text) -> value.
pub fn replay(
    commits: &[CommitRecord],
    records: &[Record],
    topic: &str,
) -> BTreeMap<String, serde_json::Value> {
    let mut table = BTreeMap::new();
    for c in commits {
        let mut recs: Vec<&Record> = Vec::new();
        for p in c.parts.iter().filter(|p| p.topic == topic) {
            recs.extend(records.iter().filter(|r| {
                r.partition == p.partition
                    && (p.first..=p.last).contains(&r.offset)
                    && r.header("ordo.txn") == Some(&c.txn)
            }));
        }
        recs.sort_by_key(|r| r.header("ordo.op").and_then(|o| o.parse::<u64>().ok()));
        for r in recs {
            let key =
                String::from_utf8_lossy(r.key.as_deref().expect("a keyed record")).into_owned();
            match r.header("ordo.optype").expect("ordo.optype") {
                "d" => {
                    table.remove(&key);
                }
                "c" | "u" | "r" => {
                    table.insert(key, r.json());
                }
                other => panic!("unexpected op {other}"),
            }
        }
    }
    table
}

/// The checks every incremental-snapshot run must pass: dense commit records; nothing of the
/// signal topic published or listed; every data record listed (exactly, when `clean`: no
/// daemon was killed, so there are no orphans); and the snapshot's `Read`s of `table_topic` in
/// at least five chunk transactions, each with exactly one commit record (a killed daemon's
/// last chunk may have none: orphans no consumer sees). `data` holds every record by topic.
pub fn assert_snapshot_chunks(
    commits: &[CommitRecord],
    data: &BTreeMap<String, Vec<Record>>,
    table_topic: &str,
    signal_topic: &str,
    clean: bool,
) {
    assert_dense(commits);
    assert!(
        data.get(signal_topic).is_none_or(Vec::is_empty),
        "signal-table rows are never published"
    );
    assert!(
        commits
            .iter()
            .all(|c| c.parts.iter().all(|p| p.topic != signal_topic)),
        "no commit record lists the signal topic"
    );
    let listed = assert_listing(commits, data);
    if clean {
        let total: usize = data.values().map(Vec::len).sum();
        assert_eq!(listed, total, "every data record is listed exactly once");
    }
    let records = data.get(table_topic).map_or(&[][..], Vec::as_slice);
    let reads: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.header("ordo.optype") == Some("r"))
        .filter_map(|r| r.header("ordo.txn"))
        .collect();
    assert!(
        reads.len() >= 5,
        "the snapshot ran in chunk transactions: {reads:?}"
    );
    for txn in &reads {
        let n = commits.iter().filter(|c| c.txn == *txn).count();
        assert!(
            n == 1 || (n == 0 && !clean),
            "chunk transaction {txn} has {n} commit records"
        );
    }
    eprintln!(
        "{} commit records, {} chunk transactions, {} records of {table_topic}",
        commits.len(),
        reads.len(),
        records.len()
    );
}
