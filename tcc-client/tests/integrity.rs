//! Missing records, sequence gaps and broken commit records end the stream with an error
//! that says exactly what is missing: never a silent skip. Against the real broker.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use common::{
    DEADLINE, Daemon, DataRecord, all_operations, all_transactions, config, create_topics, unique,
};
use futures::StreamExt as _;
use ordo_tcc::{MissingReason, Start, TccConsumer, TccError};

fn records(topic: &str, txn: &str, ops: u64, partition: i32) -> Vec<DataRecord> {
    (0..ops)
        .map(|op| DataRecord {
            topic: topic.to_owned(),
            partition,
            txn: txn.to_owned(),
            op,
            sub: 0,
            key: format!("k{op}").into_bytes(),
            value: format!("{txn}/{op}").into_bytes(),
        })
        .collect()
}

async fn setup(prefix: &str) -> (String, String, Daemon) {
    let commit = unique(&format!("{prefix}-commits"));
    let data = unique(&format!("{prefix}-data"));
    create_topics(&[(&commit, 1), (&data, 2)]).await;
    let daemon = Daemon::new(&commit);
    (commit, data, daemon)
}

/// Writes `txn`'s records, then a commit record altered by `forge`.
async fn forged(
    d: &mut Daemon,
    data: &str,
    txn: &str,
    ops: u64,
    forge: impl FnOnce(&mut ordo_tcc::commit_stream::PartitionRange),
) {
    let recs = records(data, txn, ops, 0);
    let mut futures = Vec::new();
    for r in &recs {
        futures.push(d.send(r).await);
    }
    let refs: Vec<_> = recs.iter().collect();
    let at = d.delivered(&refs, futures).await;
    let mut c = d.commit_for(txn, ops, &at);
    forge(&mut c.parts[0]);
    d.write_commit(&c).await;
}

/// The transactions before the error come, then the error, then nothing.
async fn error_after(commit: &str, good: usize) -> TccError {
    let mut stream = TccConsumer::new(config(commit, Start::Beginning))
        .unwrap()
        .transactions();
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
        items.push(item);
    }
    assert_eq!(items.len(), good + 1, "{items:?}");
    let err = items.pop().unwrap().unwrap_err();
    assert!(items.into_iter().all(|i| i.is_ok()));
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_larger_than_the_records_present_is_an_error_naming_the_range() {
    let (commit, data, mut d) = setup("count").await;
    d.transaction("t1", 3, &records(&data, "t1", 3, 0)).await;
    // t2 has 4 records at offsets 3..=6; its commit record lists 5 at 3..=7 (7 is t3's).
    forged(&mut d, &data, "t2", 4, |p| {
        p.last += 1;
        p.count += 1;
    })
    .await;
    d.transaction("t3", 2, &records(&data, "t3", 2, 0)).await;

    let err = error_after(&commit, 1).await;
    let TccError::MissingRecords {
        topic,
        partition,
        first,
        last,
        txn,
        seq,
        expected,
        found,
        reason,
        commit_offset,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((topic, *partition, *first, *last), (&data, 0, 3, 7));
    assert_eq!((txn.as_str(), *seq, *expected, *found), ("t2", 2, 5, 4));
    assert_eq!(*commit_offset, 1);
    assert_eq!(*reason, MissingReason::RangeExhausted);
    let text = err.to_string();
    for part in [
        data.as_str(),
        "partition 0",
        "offsets 3..=7",
        "transaction t2",
        "5 records",
        "only 4",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(err.is_integrity() && !err.is_transient());

    // The skip bookmark goes on with the next transaction, deliberately.
    let rest = all_transactions(config(&commit, Start::Bookmark(err.resume_past().unwrap())))
        .await
        .unwrap();
    assert_eq!(
        rest.iter()
            .map(|t| t.commit.txn.as_str())
            .collect::<Vec<_>>(),
        ["t3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_beyond_the_partition_end_are_an_error() {
    let (commit, data, mut d) = setup("beyond").await;
    d.transaction("t1", 2, &records(&data, "t1", 2, 0)).await;
    // Listed up to offset 9 (and one more record) while the partition ends at 4.
    forged(&mut d, &data, "t2", 2, |p| {
        p.last += 5;
        p.count += 1;
    })
    .await;
    let err = error_after(&commit, 1).await;
    match &err {
        TccError::MissingRecords {
            first: 2,
            last: 8,
            found: 2,
            expected: 3,
            reason,
            ..
        } => {
            assert_eq!(*reason, MissingReason::PartitionEnd { high_watermark: 4 });
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("the partition ends at offset 4"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_wholly_past_the_end_is_an_error() {
    let (commit, data, mut d) = setup("past").await;
    forged(&mut d, &data, "t1", 2, |p| {
        p.first = 10;
        p.last = 11;
    })
    .await;
    let err = error_after(&commit, 0).await;
    match &err {
        TccError::MissingRecords {
            first: 10,
            last: 11,
            found: 0,
            txn,
            reason,
            ..
        } => {
            assert_eq!(txn, "t1");
            assert_eq!(*reason, MissingReason::PartitionEnd { high_watermark: 2 });
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_is_an_error_that_can_be_accepted() {
    let (commit, data, mut d) = setup("gap").await;
    d.transaction("t1", 1, &records(&data, "t1", 1, 1)).await;
    d.seq += 1; // seq 2 is lost
    d.transaction("t3", 1, &records(&data, "t3", 1, 1)).await;
    d.transaction("t4", 1, &records(&data, "t4", 1, 1)).await;

    let err = error_after(&commit, 1).await;
    let TccError::SequenceGap {
        offset: 1,
        expected: 2,
        found: 3,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(err.to_string().contains("expected seq 2, found 3"), "{err}");
    let rest = all_transactions(config(&commit, Start::Bookmark(err.resume_past().unwrap())))
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|t| t.commit.seq).collect::<Vec<_>>(),
        [3, 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commit_records_and_foreign_bookmarks_are_errors() {
    let (commit, data, mut d) = setup("malformed").await;
    d.transaction("t1", 1, &records(&data, "t1", 1, 0)).await;
    d.write_raw_commit(b"{\"not\":\"a commit record\"}").await;
    let err = error_after(&commit, 1).await;
    assert!(matches!(err, TccError::CommitRecord(_)), "{err:?}");
    assert!(err.to_string().contains("offset 1"), "{err}");

    // A commit record whose parts contradict themselves.
    let (commit, data, mut d) = setup("inconsistent").await;
    forged(&mut d, &data, "t1", 2, |p| p.count = 7).await;
    let err = error_after(&commit, 0).await;
    assert!(
        matches!(
            err,
            TccError::InvalidCommitRecord {
                offset: 0,
                seq: 1,
                ..
            }
        ),
        "{err:?}"
    );

    // A bookmark of another commit topic does not fit.
    let (commit, data, mut d) = setup("mismatch").await;
    for txn in ["t1", "t2", "t3"] {
        d.transaction(txn, 1, &records(&data, txn, 1, 0)).await;
    }
    let (other, _, mut d2) = setup("other").await;
    d2.seq = 40;
    d2.transaction("x", 1, &records(&data, "x", 1, 0)).await;
    d2.transaction("y", 1, &records(&data, "y", 1, 0)).await;
    let b = all_transactions(config(&other, Start::Beginning))
        .await
        .unwrap()[0]
        .bookmark;
    let err = all_operations(config(&commit, Start::Bookmark(b)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TccError::BookmarkMismatch {
                offset: 1,
                expected: 42,
                found: _
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_by_retention_are_an_error() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let (commit, data, mut d) = setup("retention").await;
    d.transaction("t1", 3, &records(&data, "t1", 3, 0)).await;
    d.transaction("t2", 2, &records(&data, "t2", 2, 0)).await;
    // Retention removes the first record of t1.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka())
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&data, 0, rdkafka::Offset::Offset(1))
        .unwrap();
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .unwrap();

    let err = error_after(&commit, 0).await;
    match &err {
        TccError::MissingRecords {
            first: 0,
            last: 2,
            found: 0,
            txn,
            reason,
            ..
        } => {
            assert_eq!(txn, "t1");
            assert_eq!(*reason, MissingReason::Truncated { log_start: 1 });
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("now starts at offset 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bookmark_older_than_the_commit_topic_is_an_error() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let (commit, data, mut d) = setup("expired").await;
    for txn in ["t1", "t2", "t3"] {
        d.transaction(txn, 1, &records(&data, txn, 1, 1)).await;
    }
    let first = all_transactions(config(&commit, Start::Beginning))
        .await
        .unwrap()[0]
        .bookmark;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka())
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&commit, 0, rdkafka::Offset::Offset(2))
        .unwrap();
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .unwrap();

    let err = all_transactions(config(&commit, Start::Bookmark(first)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TccError::CommitStreamOffset {
                offset: 1,
                low: 2,
                high: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_record_with_a_bad_operation_header_is_an_error() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;

    let (commit, data, mut d) = setup("badop").await;
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "ordo.txn",
            value: Some("t1"),
        })
        .insert(Header {
            key: "ordo.op",
            value: Some("seven"),
        });
    let rec = FutureRecord::<(), _>::to(&data)
        .partition(1)
        .payload("v")
        .headers(headers);
    let at = d
        .producer
        .send(rec, DEADLINE)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let c = d.commit_for("t1", 1, &[(data.clone(), 1, at.offset)]);
    d.write_commit(&c).await;

    let err = error_after(&commit, 0).await;
    assert!(
        matches!(&err, TccError::MalformedDataRecord { partition: 1, offset: 0, header: "ordo.op", value, .. } if value == "seven"),
        "{err:?}"
    );
}
