//! A consumer that follows the stream live sees each transaction once committed, without
//! waiting for more. Against the real broker of `scripts/stack`.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, Daemon, Seen, create_topics, plan, seen, unique};
use futures::StreamExt as _;
use ordo_tcc::{Start, TccConfig, TccConsumer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_consumer_gets_each_transaction_as_it_commits() {
    let commit = unique("tail-commits");
    let data: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| unique(&format!("tail-{t}")))
        .collect();
    create_topics(&[(&commit, 1), (&data[0], 2), (&data[1], 2)]).await;
    let mut rng = plan::rng(6);
    let txns = plan::random_txns(&mut rng, &data, 2, 30, 8);
    let mut daemon = Daemon::new(&commit);
    // Some history the consumer starting at the end must not see.
    plan::write(&mut daemon, &txns[..5], &mut rng, true).await;

    let cfg = TccConfig::new(common::kafka(), &commit, Start::End);
    let mut stream = TccConsumer::new(cfg).unwrap().transactions();
    // Let it reach the end before anything new is committed.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), stream.next())
            .await
            .is_err(),
        "nothing new yet"
    );
    let mut latencies = Vec::new();
    let mut got: Vec<(String, Vec<Seen>)> = Vec::new();
    for t in &txns[5..] {
        plan::write(&mut daemon, std::slice::from_ref(t), &mut rng, true).await;
        let committed = Instant::now();
        let txn = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        latencies.push(committed.elapsed());
        got.push((
            txn.commit.txn.clone(),
            txn.operations.iter().map(seen).collect(),
        ));
    }
    assert_eq!(got, plan::expected(&txns[5..], None));
    latencies.sort();
    eprintln!(
        "live: commit-to-delivery latency median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(500));
}
