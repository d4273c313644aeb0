//! Memory stays bounded for a huge transaction read through `operations()`. Against the real
//! broker of `scripts/stack`; alone in its test binary so that its RSS is its own. Run with
//! `--nocapture` to see the numbers.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use std::time::Instant;

use common::{DEADLINE, Daemon, DataRecord, config, create_topics, peak_rss_kib, rss_kib, unique};
use futures::StreamExt as _;
use ordo_tcc::{Start, TccConsumer};
use rdkafka::producer::Producer as _;

/// Writes one transaction of `ops` operations (one record each, `value_len` bytes), spread
/// round-robin over `partitions` partitions of `topic`, without keeping the records.
async fn write_huge(d: &mut Daemon, topic: &str, partitions: i32, ops: u64, value_len: usize) {
    let mut pending = std::collections::VecDeque::new();
    let mut at = Vec::with_capacity(usize::try_from(ops).unwrap());
    let value = vec![b'v'; value_len];
    for op in 0..ops {
        let r = DataRecord {
            topic: topic.to_owned(),
            partition: (op % partitions as u64) as i32,
            txn: "huge".into(),
            op,
            sub: 0,
            key: op.to_string().into_bytes(),
            value: value.clone(),
        };
        pending.push_back((r.partition, d.send(&r).await));
        while pending.len() > 20_000 {
            let (p, f) = pending.pop_front().unwrap();
            at.push((
                topic.to_owned(),
                p,
                f.await.unwrap().map_err(|(e, _)| e).unwrap().offset,
            ));
        }
    }
    for (p, f) in pending {
        at.push((
            topic.to_owned(),
            p,
            f.await.unwrap().map_err(|(e, _)| e).unwrap().offset,
        ));
    }
    let c = d.commit_for("huge", ops, &at);
    d.write_commit(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_transaction_streams_in_bounded_memory() {
    // `ORDO_TCC_HUGE_OPS=1000000` for the 1M-operation figure (a few minutes in release).
    let ops_env = std::env::var("ORDO_TCC_HUGE_OPS").ok();
    let ops_total: u64 = ops_env.and_then(|v| v.parse().ok()).unwrap_or(200_000);
    const VALUE: usize = 1000;
    let commit = unique("huge-commits");
    let data = unique("huge-data");
    create_topics(&[(&commit, 1), (&data, 4)]).await;
    let started = Instant::now();
    {
        let mut d = Daemon::with_buffer(&commit, 16_384);
        write_huge(&mut d, &data, 4, ops_total, VALUE).await;
        d.producer.flush(DEADLINE).unwrap();
    }
    let wrote = started.elapsed();

    let before = rss_kib();
    let started = Instant::now();
    let mut ops = TccConsumer::new(config(&commit, Start::Beginning))
        .unwrap()
        .operations();
    let (mut next, mut max_rss, mut bytes) = (0u64, before, 0usize);
    while let Some(op) = tokio::time::timeout(DEADLINE, ops.next()).await.unwrap() {
        let op = op.unwrap();
        assert_eq!(op.op_index, next);
        assert_eq!(op.records.len(), 1);
        assert_eq!(op.last, next == ops_total - 1);
        bytes += op.records[0].value.as_ref().map_or(0, Vec::len);
        next += 1;
        if next % 10_000 == 0 {
            max_rss = max_rss.max(rss_kib());
        }
    }
    let read = started.elapsed();
    assert_eq!(next, ops_total);
    let growth_mib = max_rss.saturating_sub(before) / 1024;
    eprintln!(
        "huge transaction: {ops_total} operations, {} MiB of values; wrote in {wrote:?}, read in {read:?} ({:.0} ops/s); \
         VmRSS before reading {} MiB, max while reading {} MiB (+{growth_mib} MiB), VmHWM {} MiB",
        bytes / (1 << 20),
        ops_total as f64 / read.as_secs_f64(),
        before / 1024,
        max_rss / 1024,
        peak_rss_kib() / 1024,
    );
    // The transaction is ~190 MiB; reading it holds librdkafka's read-ahead of 4 partitions.
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB while streaming"
    );
}
