//! Throughput of the consumer compared with a plain consumer reading the same topics. Against
//! the real broker of `scripts/stack`. Run with `--nocapture` (and `--release`) to see the
//! numbers.
#![allow(clippy::unwrap_used)] // helpers of tests may unwrap too

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{DEADLINE, Daemon, DataRecord, config, create_topics, unique};
use futures::StreamExt as _;
use ordo_tcc::{Start, TccConsumer};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_compared_with_a_plain_consumer() {
    const TXNS: u64 = 1000;
    const PER_TXN: u64 = 100;
    let commit = unique("speed-commits");
    let topics = [unique("speed-a"), unique("speed-b")];
    create_topics(&[(&commit, 1), (&topics[0], 4), (&topics[1], 4)]).await;
    let mut d = Daemon::new(&commit);
    let value = vec![b'v'; 100];
    // All data first, then the commit records in order, each after its data is acknowledged.
    let mut sent = Vec::new();
    for t in 0..TXNS {
        let txn = format!("t{t}");
        let records: Vec<DataRecord> = (0..PER_TXN)
            .map(|op| DataRecord {
                topic: topics[(op % 2) as usize].clone(),
                partition: ((op / 2) % 4) as i32,
                txn: txn.clone(),
                op,
                sub: 0,
                key: op.to_string().into_bytes(),
                value: value.clone(),
            })
            .collect();
        let mut futures = Vec::new();
        for r in &records {
            futures.push(d.send(r).await);
        }
        sent.push((txn, records, futures));
    }
    let mut commits = Vec::new();
    for (txn, records, futures) in sent {
        let refs: Vec<_> = records.iter().collect();
        let at = d.delivered(&refs, futures).await;
        let c = d.commit_for(&txn, PER_TXN, &at);
        commits.push(d.send_commit(&c));
    }
    for c in commits {
        c.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    let total = TXNS * PER_TXN;

    // A plain consumer reading the data topics to their ends (no ordering, no filtering).
    let started = Instant::now();
    let plain = plain_read(&topics, total);
    let plain_time = started.elapsed();
    assert_eq!(plain, total);

    let started = Instant::now();
    let mut txns = TccConsumer::new(config(&commit, Start::Beginning))
        .unwrap()
        .transactions();
    let (mut n_txns, mut n_records) = (0, 0);
    while let Some(t) = tokio::time::timeout(DEADLINE, txns.next()).await.unwrap() {
        let t = t.unwrap();
        n_txns += 1;
        n_records += t.records().count() as u64;
    }
    let tcc_time = started.elapsed();
    assert_eq!((n_txns, n_records), (TXNS, total));

    let started = Instant::now();
    let ops = TccConsumer::new(config(&commit, Start::Beginning))
        .unwrap()
        .operations();
    let n_ops = ops.count().await as u64;
    let ops_time = started.elapsed();
    assert_eq!(n_ops, total);

    let rate = |t: Duration| total as f64 / t.as_secs_f64();
    eprintln!(
        "throughput on {total} records ({TXNS} transactions, 2 topics x 4 partitions): \
         plain consumer {:.0} records/s ({plain_time:?}); tcc transactions() {:.0} records/s ({tcc_time:?}); \
         tcc operations() {:.0} records/s ({ops_time:?})",
        rate(plain_time),
        rate(tcc_time),
        rate(ops_time),
    );
    // One line for scripts/bench's table.
    println!(
        "BENCH|TCC ordered delivery: {total} records, {TXNS} txns, 2 topics x 4 partitions|plain rdkafka consumer|{:.0}|tcc transactions()|{:.0}|0.8",
        rate(plain_time),
        rate(tcc_time)
    );
}

/// Reads every record of the topics (4 partitions each) from the beginning: the count.
fn plain_read(topics: &[String], expected: u64) -> u64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka())
        .set("group.id", "plain")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..4 {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let (mut n, mut bytes) = (0u64, 0usize);
    let mut per_partition = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while n < expected && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            bytes += m.payload().map_or(0, <[u8]>::len);
            *per_partition
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0) += 1;
            n += 1;
        }
    }
    assert!(bytes > 0);
    n
}
