//! Stopping anywhere and resuming from the last bookmark gives exactly the uninterrupted
//! output: nothing lost, nothing twice. Against the real broker of `scripts/stack`.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use std::time::Instant;

use common::{Daemon, Seen, all_operations, config, create_topics, plan, seen, unique};
use futures::StreamExt as _;
use ordo_tcc::{Bookmark, Start, TccConsumer};
use rand::Rng as _;
use rand::rngs::StdRng;

/// One session: from `start`, take some items, return what they were and the last bookmark.
/// `None` as bookmark: the stream ended.
async fn session(
    commit: &str,
    start: Start,
    rng: &mut StdRng,
    out: &mut Vec<Seen>,
) -> Option<Bookmark> {
    let mut bookmark = match start {
        Start::Bookmark(b) => Some(b),
        _ => None,
    };
    let cfg = config(commit, start);
    let deadline = common::DEADLINE;
    if rng.random_bool(0.5) {
        // Stop after some operations: often inside a transaction.
        let take = rng.random_range(1..=40);
        let mut ops = TccConsumer::new(cfg).unwrap().operations();
        for _ in 0..take {
            match tokio::time::timeout(deadline, ops.next()).await.unwrap() {
                Some(op) => {
                    let op = op.unwrap();
                    out.push(seen(&op));
                    bookmark = Some(op.bookmark);
                }
                None => return None,
            }
        }
    } else {
        let take = rng.random_range(1..=6);
        let mut txns = TccConsumer::new(cfg).unwrap().transactions();
        for _ in 0..take {
            match tokio::time::timeout(deadline, txns.next()).await.unwrap() {
                Some(t) => {
                    let t = t.unwrap();
                    out.extend(t.operations.iter().map(seen));
                    bookmark = Some(t.bookmark);
                }
                None => return None,
            }
        }
    }
    // Through the string form, as an application would store it.
    bookmark.map(|b| b.to_string().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_bookmarks_anywhere_equals_an_uninterrupted_run() {
    let commit = unique("resume-commits");
    let data: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| unique(&format!("resume-{t}")))
        .collect();
    create_topics(&[(&commit, 1), (&data[0], 3), (&data[1], 2)]).await;
    let mut rng = plan::rng(3);
    // Partition counts differ per topic: use the smaller for the plan, then spread topic a.
    let mut txns = plan::random_txns(&mut rng, &data, 2, 40, 30);
    for r in txns.iter_mut().flat_map(|t| t.records.iter_mut()) {
        if r.topic == data[0] && rng.random_bool(0.3) {
            r.partition = 2;
        }
    }
    let mut daemon = Daemon::new(&commit);
    plan::write(&mut daemon, &txns, &mut rng, true).await;

    let baseline: Vec<Seen> = all_operations(config(&commit, Start::Beginning))
        .await
        .unwrap()
        .iter()
        .map(seen)
        .collect();
    let expected: Vec<Seen> = plan::expected(&txns, None)
        .into_iter()
        .flat_map(|(_, ops)| ops)
        .collect();
    assert_eq!(baseline, expected);

    let started = Instant::now();
    let (mut sessions, iterations) = (0, 10);
    for iteration in 0..iterations {
        let mut rng = plan::rng(100 + iteration);
        let mut out = Vec::new();
        let mut start = Start::Beginning;
        while let Some(b) = session(&commit, start, &mut rng, &mut out).await {
            start = Start::Bookmark(b);
            sessions += 1;
        }
        sessions += 1;
        assert_eq!(out.len(), baseline.len(), "iteration {iteration}");
        assert_eq!(out, baseline, "iteration {iteration}");
    }
    eprintln!(
        "{iterations} interrupted runs, {sessions} sessions over {} operations in {:?}",
        baseline.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subset_consumer_resumes_too() {
    let commit = unique("resume-sub-commits");
    let data: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| unique(&format!("resume-sub-{t}")))
        .collect();
    create_topics(&[(&commit, 1), (&data[0], 2), (&data[1], 2)]).await;
    let mut rng = plan::rng(4);
    let txns = plan::random_txns(&mut rng, &data, 2, 20, 10);
    let mut daemon = Daemon::new(&commit);
    plan::write(&mut daemon, &txns, &mut rng, true).await;

    let subset = [data[1].as_str()];
    let expected: Vec<Seen> = plan::expected(&txns, Some(&subset))
        .into_iter()
        .flat_map(|(_, ops)| ops)
        .collect();
    for iteration in 0..4 {
        let mut rng = plan::rng(200 + iteration);
        let mut out = Vec::new();
        let mut start = Start::Beginning;
        loop {
            let cfg = config(&commit, start).topics(subset);
            let mut ops = TccConsumer::new(cfg).unwrap().operations();
            let mut last = None;
            for _ in 0..rng.random_range(1..=8) {
                let Some(op) = ops.next().await else { break };
                let op = op.unwrap();
                out.push(seen(&op));
                last = Some(op.bookmark);
            }
            match last {
                Some(b) => start = Start::Bookmark(b),
                None if matches!(start, Start::Bookmark(_)) => break,
                None => panic!("nothing at all"),
            }
        }
        assert_eq!(out, expected, "iteration {iteration}");
    }
}
