//! Transactions come out whole, in commit and operation order, with exactly their records,
//! whatever else the data partitions hold. Against the real broker of `scripts/stack`.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use common::{Daemon, all_transactions, config, create_topics, plan, seen, unique};
use ordo_tcc::{Start, TccTransaction};

/// Three topics of four partitions and a commit topic, created.
async fn topics(prefix: &str) -> (String, Vec<String>) {
    let commit = unique(&format!("{prefix}-commits"));
    let data: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| unique(&format!("{prefix}-{t}")))
        .collect();
    let mut all: Vec<(&str, i32)> = data.iter().map(|t| (t.as_str(), 4)).collect();
    all.push((&commit, 1));
    create_topics(&all).await;
    (commit, data)
}

fn by_txn(txns: &[TccTransaction]) -> Vec<(String, Vec<common::Seen>)> {
    txns.iter()
        .map(|t| {
            (
                t.commit.txn.clone(),
                t.operations.iter().map(seen).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_twelve_partitions_comes_out_in_operation_order() {
    let (commit, data) = topics("order").await;
    let mut rng = plan::rng(1);
    let mut txns = plan::random_txns(&mut rng, &data, 4, 1, 800);
    txns.extend(plan::random_txns(&mut rng, &data, 4, 5, 20));
    for (i, t) in txns.iter_mut().enumerate() {
        t.id = format!("order-{i}");
        for r in &mut t.records {
            r.txn = t.id.clone();
        }
    }
    let big = &txns[0];
    let partitions: std::collections::HashSet<_> = big
        .records
        .iter()
        .map(|r| (&r.topic, r.partition))
        .collect();
    assert_eq!(
        partitions.len(),
        12,
        "the big transaction touches every partition"
    );

    let mut daemon = Daemon::new(&commit);
    plan::write(&mut daemon, &txns, &mut rng, false).await;

    let got = all_transactions(config(&commit, Start::Beginning))
        .await
        .unwrap();
    assert_eq!(by_txn(&got), plan::expected(&txns, None));
    let seqs: Vec<u64> = got.iter().map(|t| t.commit.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert!(
        got[0].operations.len() > 600,
        "{} operations",
        got[0].operations.len()
    );

    // A consumer of two of the three topics gets exactly their records, in the same order.
    let subset = [data[0].as_str(), data[2].as_str()];
    let cfg = config(&commit, Start::Beginning).topics(subset);
    let got = all_transactions(cfg).await.unwrap();
    assert_eq!(by_txn(&got), plan::expected(&txns, Some(&subset)));
    assert!(
        got.iter()
            .flat_map(|t| t.records())
            .all(|r| subset.contains(&r.topic.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_orphans_and_foreign_records_never_reach_the_application() {
    let (commit, data) = topics("noise").await;
    let mut rng = plan::rng(2);
    let txns = plan::random_txns(&mut rng, &data, 4, 60, 25);
    let mut daemon = Daemon::new(&commit);
    let started = std::time::Instant::now();
    plan::write(&mut daemon, &txns, &mut rng, true).await;
    eprintln!("noise: wrote in {:?}", started.elapsed());

    // The partitions really hold more than the transactions' records.
    let real: usize = txns.iter().map(|t| t.records.len()).sum();
    let total = total_records(&data);
    assert!(
        total > real + real / 3,
        "noise: {total} records for {real} real ones"
    );

    let started = std::time::Instant::now();
    let got = all_transactions(config(&commit, Start::Beginning))
        .await
        .unwrap();
    eprintln!(
        "noise: read {} transactions in {:?}",
        got.len(),
        started.elapsed()
    );
    assert_eq!(by_txn(&got), plan::expected(&txns, None));
    assert!(got.iter().flat_map(|t| t.records()).all(|r| {
        !r.value
            .as_deref()
            .unwrap_or_default()
            .starts_with(b"orphan")
            && r.value.as_deref() != Some(b"foreign")
    }));

    let subset = [data[1].as_str()];
    let got = all_transactions(config(&commit, Start::Beginning).topics(subset))
        .await
        .unwrap();
    assert_eq!(by_txn(&got), plan::expected(&txns, Some(&subset)));
    assert_eq!(
        got.len(),
        txns.len(),
        "transactions without wanted records come too"
    );
}

fn total_records(topics: &[String]) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka())
        .create()
        .unwrap();
    let mut total = 0;
    for t in topics {
        for p in 0..4 {
            let (low, high) = c.fetch_watermarks(t, p, common::DEADLINE).unwrap();
            total += usize::try_from(high - low).unwrap();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_transactions_come_out_right_however_large() {
    // Records of the second transaction inside the first one's range are replayed from
    // memory when few, and re-read with a seek when more than the consumer keeps (1 MiB).
    let commit = unique("interleave-commits");
    let data = unique("interleave-data");
    create_topics(&[(&commit, 1), (&data, 1)]).await;
    let mut rng = plan::rng(5);
    let txn = |id: &str, ops: u64, value_len: usize| plan::Txn {
        id: id.to_owned(),
        ops,
        records: (0..ops)
            .map(|op| common::DataRecord {
                topic: data.clone(),
                partition: 0,
                txn: id.to_owned(),
                op,
                sub: 0,
                key: op.to_string().into_bytes(),
                value: format!("{id}/{op}/{}", "x".repeat(value_len)).into_bytes(),
            })
            .collect(),
    };
    let txns = [
        txn("small-a", 50, 10),
        txn("small-b", 50, 10),
        txn("big-a", 300, 8000),
        txn("big-b", 300, 8000),
    ];
    let mut daemon = Daemon::new(&commit);
    plan::write_interleaved(&mut daemon, &txns[0], &txns[1], &mut rng).await;
    plan::write_interleaved(&mut daemon, &txns[2], &txns[3], &mut rng).await;

    let got = all_transactions(config(&commit, Start::Beginning))
        .await
        .unwrap();
    assert_eq!(by_txn(&got), plan::expected(&txns, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_without_records_comes_with_no_operations() {
    // The daemon writes a commit record (n = 0, no parts) when a KCOP filtered everything out.
    let (commit, data) = topics("empty").await;
    let mut rng = plan::rng(7);
    let txns = plan::random_txns(&mut rng, &data, 4, 2, 5);
    let mut daemon = Daemon::new(&commit);
    plan::write(&mut daemon, &txns[..1], &mut rng, false).await;
    let empty = daemon.commit_for("filtered", 3, &[]);
    daemon.write_commit(&empty).await;
    plan::write(&mut daemon, &txns[1..], &mut rng, false).await;

    let got = all_transactions(config(&commit, Start::Beginning))
        .await
        .unwrap();
    let ids: Vec<_> = got
        .iter()
        .map(|t| (t.commit.txn.as_str(), t.operations.len()))
        .collect();
    assert_eq!(ids[1], ("filtered", 0));
    assert_eq!(got.len(), 3);
    let ops = common::all_operations(config(&commit, Start::Beginning))
        .await
        .unwrap();
    assert!(ops.iter().all(|op| op.commit.txn != "filtered"));
    // The bookmark of the empty transaction resumes after it.
    let rest = all_transactions(config(&commit, Start::Bookmark(got[1].bookmark)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].commit.txn, got[2].commit.txn);
}
