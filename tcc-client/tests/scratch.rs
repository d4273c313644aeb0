mod common;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Ctx(Instant, Mutex<Vec<String>>);
impl ClientContext for Ctx {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, msg: &str) {
        self.1
            .lock()
            .unwrap()
            .push(format!("{:>6}ms {fac} {msg}", self.0.elapsed().as_millis()));
    }
}
impl ConsumerContext for Ctx {}

#[tokio::test(flavor = "multi_thread")]
async fn scratch() {
    let commit = common::unique("scratch");
    let a = common::unique("scratch-a");
    let b = common::unique("scratch-b");
    common::create_topics(&[(&commit, 1), (&a, 2), (&b, 2)]).await;
    let d = common::Daemon::new(&commit);
    for _ in 0..3 {
        d.write_raw_commit(b"x").await;
    }
    for t in [&a, &b] {
        for p in 0..2 {
            for i in 0..10 {
                let rec = rdkafka::producer::FutureRecord::<(), _>::to(t)
                    .partition(p)
                    .payload(b"v");
                let _ = i;
                d.producer.send(rec, common::DEADLINE).await.unwrap();
            }
        }
    }
    let mut slow = 0;
    for round in 0..30 {
        let t0 = Instant::now();
        let c: std::sync::Arc<BaseConsumer<Ctx>> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", common::kafka())
            .set("group.id", "ordo-tcc")
            .set("debug", "all")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "50")
            .set("fetch.queue.backoff.ms", "20")
            .set("queued.max.messages.kbytes", "8192")
            .create_with_context(Ctx(t0, Mutex::new(Vec::new())))
            .map(std::sync::Arc::new)
            .unwrap();
        let q = c.split_partition_queue(&commit, 0).unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&commit, 0, rdkafka::Offset::Offset(1))
            .unwrap();
        c.incremental_assign(&tpl).unwrap();
        loop {
            if let Some(m) = q.poll(Duration::from_millis(10)) {
                m.unwrap();
                break;
            }
            let _ = c.poll(Duration::ZERO);
        }
        let t1 = t0.elapsed();
        let mut qs = Vec::new();
        for t in [&a, &b] {
            for p in 0..2 {
                let q = c.split_partition_queue(t, p).unwrap();
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset(t, p, rdkafka::Offset::Offset(round % 5))
                    .unwrap();
                c.incremental_assign(&tpl).unwrap();
                qs.push(q);
            }
        }
        for q in &qs {
            loop {
                if let Some(m) = q.poll(Duration::from_millis(10)) {
                    m.unwrap();
                    break;
                }
                let _ = c.poll(Duration::ZERO);
            }
        }
        let t2 = t0.elapsed();
        eprintln!("round {round}: commit {t1:?} data {t2:?}");
        if t2 > Duration::from_millis(500) && slow == 0 {
            slow += 1;
            for l in c.context().1.lock().unwrap().iter() {
                eprintln!("{l}");
            }
        }
    }
}
