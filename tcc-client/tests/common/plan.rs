//! Random transactions, and writing them the way the daemon does, with the noise Kafka and
//! crashes leave behind: retried duplicates, orphans of a crashed run, foreign records,
//! interleaved transactions.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};

use super::{Daemon, DataRecord, Seen};

/// One source transaction: its records in production (op, sub) order.
#[derive(Debug, Clone)]
pub struct Txn {
    pub id: String,
    pub ops: u64,
    pub records: Vec<DataRecord>,
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` transactions of 1..=`max_ops` operations over `topics` x `partitions`. An operation
/// becomes no record (filtered), one, or two on different topics (sub 0 and 1).
pub fn random_txns(
    rng: &mut StdRng,
    topics: &[String],
    partitions: i32,
    n: usize,
    max_ops: u64,
) -> Vec<Txn> {
    (0..n)
        .map(|i| {
            let id = format!("{}", 7000 + i);
            let ops = rng.random_range(1..=max_ops);
            let mut records = Vec::new();
            for op in 0..ops {
                let fanout = match rng.random_range(0..100) {
                    0..15 => 0,
                    15..35 => 2,
                    _ => 1,
                };
                for sub in 0..fanout {
                    let topic = topics.choose(rng).unwrap().clone();
                    records.push(DataRecord {
                        partition: rng.random_range(0..partitions),
                        key: format!("k{op}").into_bytes(),
                        value: format!("{id}/{op}/{sub} {}", "x".repeat(rng.random_range(0..40)))
                            .into_bytes(),
                        topic,
                        txn: id.clone(),
                        op,
                        sub,
                    });
                }
            }
            // A transaction with no record gets no commit record: give it one.
            if records.is_empty() {
                records.push(DataRecord {
                    topic: topics[0].clone(),
                    partition: 0,
                    txn: id.clone(),
                    op: 0,
                    sub: 0,
                    key: b"k0".to_vec(),
                    value: format!("{id}/0/0").into_bytes(),
                });
            }
            Txn { id, ops, records }
        })
        .collect()
}

/// What a consumer of `topics` (None: all) must see: per transaction, its operations.
pub fn expected(txns: &[Txn], topics: Option<&[&str]>) -> Vec<(String, Vec<Seen>)> {
    txns.iter()
        .map(|t| {
            let mut ops: Vec<Seen> = Vec::new();
            let mut sorted: Vec<&DataRecord> = t
                .records
                .iter()
                .filter(|r| topics.is_none_or(|w| w.contains(&r.topic.as_str())))
                .collect();
            sorted.sort_by_key(|r| (r.op, r.sub));
            for r in sorted {
                let rec = (r.topic.clone(), r.sub, r.key.clone(), r.value.clone());
                match ops.last_mut() {
                    Some((_, op, recs)) if *op == r.op => recs.push(rec),
                    _ => ops.push((t.id.clone(), r.op, vec![rec])),
                }
            }
            (t.id.clone(), ops)
        })
        .collect()
}

/// Writes the transactions and their commit records. With `noise`, adds orphans of a
/// crashed run before a transaction, duplicates inside and after its ranges, records of
/// transactions that never commit inside them, and writes some pairs interleaved.
pub async fn write(d: &mut Daemon, txns: &[Txn], rng: &mut StdRng, noise: bool) {
    let mut i = 0;
    while i < txns.len() {
        if noise && i + 1 < txns.len() && rng.random_bool(0.25) {
            write_interleaved(d, &txns[i], &txns[i + 1], rng).await;
            i += 2;
        } else {
            write_one(d, &txns[i], rng, noise).await;
            i += 1;
        }
    }
}

async fn write_one(d: &mut Daemon, t: &Txn, rng: &mut StdRng, noise: bool) {
    if noise && rng.random_bool(0.3) {
        // A crashed run got this far with the transaction, and never wrote its commit record.
        let n = rng.random_range(1..=t.records.len());
        for r in &t.records[..n] {
            let mut orphan = r.clone();
            orphan.value = format!("orphan of {}", String::from_utf8_lossy(&r.value)).into_bytes();
            drop(d.send(&orphan).await);
        }
        d.flush();
    }
    let mut futures = Vec::new();
    for (j, r) in t.records.iter().enumerate() {
        futures.push(d.send(r).await);
        if noise && rng.random_bool(0.2) {
            let mut foreign = r.clone();
            foreign.txn = format!("foreign-{}", rng.random::<u16>());
            foreign.value = b"foreign".to_vec();
            drop(d.send(&foreign).await);
        }
        if noise && rng.random_bool(0.2) {
            // A retried send of this or an earlier record of the transaction.
            let again = &t.records[rng.random_range(0..=j)];
            drop(d.send(again).await);
        }
    }
    let refs: Vec<_> = t.records.iter().collect();
    let at = d.delivered(&refs, futures).await;
    if noise && rng.random_bool(0.3) {
        for r in t.records.iter().filter(|_| rng.random_bool(0.5)) {
            drop(d.send(r).await);
        }
    }
    let c = d.commit_for(&t.id, t.ops, &at);
    d.write_commit(&c).await;
}

/// Two transactions produced at once (records interleaved, each in its own order), committed
/// in order: their ranges overlap.
pub async fn write_interleaved(d: &mut Daemon, a: &Txn, b: &Txn, rng: &mut StdRng) {
    let (mut ia, mut ib) = (0, 0);
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    while ia < a.records.len() || ib < b.records.len() {
        let take_a = ib == b.records.len() || (ia < a.records.len() && rng.random_bool(0.5));
        if take_a {
            fa.push(d.send(&a.records[ia]).await);
            ia += 1;
        } else {
            fb.push(d.send(&b.records[ib]).await);
            ib += 1;
        }
    }
    let ra: Vec<_> = a.records.iter().collect();
    let rb: Vec<_> = b.records.iter().collect();
    let at_a = d.delivered(&ra, fa).await;
    let at_b = d.delivered(&rb, fb).await;
    let ca = d.commit_for(&a.id, a.ops, &at_a);
    d.write_commit(&ca).await;
    let cb = d.commit_for(&b.id, b.ops, &at_b);
    d.write_commit(&cb).await;
}
