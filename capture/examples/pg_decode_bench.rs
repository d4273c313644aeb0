//! How fast the PostgreSQL source decodes, next to `pg_recvlogical` over the same WAL.
//!
//! Creates a database with a six-column table, a publication and two slots (one for ordo, one
//! for `pg_recvlogical`), then loads 1,000,000 rows in 10,000 transactions of 100. Then, one
//! after the other:
//!
//! * the ordo source alone (`postgres::source::run` on a current-thread runtime, as the
//!   daemon runs it), its events counted and dropped by this program, which also plays the
//!   publisher and reports each commit durable;
//! * `pg_recvlogical --start -o proto_version=1 -o publication_names=... -f /dev/null` up to
//!   the load's end position: the server's own client, doing no decoding at all.
//!
//! Both are limited by the server's walsender, which decodes the WAL; the ratio says how much
//! ordo's client side costs on top. Run it in release mode against the test stack:
//!
//! ```text
//! scripts/stack up
//! cargo run -p ordo-capture --release --example pg_decode_bench
//! ```
//!
//! Settings come from the environment: `ORDO_BENCH_PG_HOST` (default `127.0.0.1`),
//! `ORDO_BENCH_PG_PORT` (55432), `ORDO_BENCH_PG_USER` / `ORDO_BENCH_PG_PASSWORD` (`ordo`),
//! `ORDO_BENCH_PG_BIN` (directory of `pg_recvlogical`; default: `$ORDO_TEST_PG_BIN`, else
//! `PATH`), `ORDO_BENCH_TXNS` (10000) and `ORDO_BENCH_PROTO` (ordo's pgoutput protocol, 1).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ordo_capture::source::SourceContext;
use ordo_kcop::SourceEvent;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

const ROWS_PER_TXN: u64 = 100;

struct Settings {
    host: String,
    port: u16,
    user: String,
    password: String,
    bin: Option<String>,
    txns: u64,
    proto: u8,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        Ok(Settings {
            host: env_or("ORDO_BENCH_PG_HOST", "127.0.0.1"),
            port: env_or("ORDO_BENCH_PG_PORT", "55432")
                .parse()
                .context("ORDO_BENCH_PG_PORT")?,
            user: env_or("ORDO_BENCH_PG_USER", "ordo"),
            password: env_or("ORDO_BENCH_PG_PASSWORD", "ordo"),
            bin: std::env::var("ORDO_BENCH_PG_BIN")
                .or_else(|_| std::env::var("ORDO_TEST_PG_BIN"))
                .ok(),
            txns: env_or("ORDO_BENCH_TXNS", "10000")
                .parse()
                .context("ORDO_BENCH_TXNS")?,
            proto: env_or("ORDO_BENCH_PROTO", "1")
                .parse()
                .context("ORDO_BENCH_PROTO")?,
        })
    }

    fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={db}",
            self.host, self.port, self.user, self.password
        )
    }

    async fn connect(&self, db: &str) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(db), NoTls)
            .await
            .with_context(|| format!("connecting to postgresql at {}:{}", self.host, self.port))?;
        tokio::spawn(conn);
        Ok(client)
    }
}

/// Database, table, publication, two slots, and the load. Returns the WAL position after it.
async fn prepare(s: &Settings, db: &str) -> anyhow::Result<String> {
    let admin = s.connect("postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let c = s.connect(db).await?;
    c.batch_execute(&format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, n int, payload text, created_at timestamptz, amount numeric(12,2), flag bool);
         CREATE PUBLICATION {db} FOR ALL TABLES;"
    ))
    .await?;
    for slot in ["ordo", "recv"] {
        c.batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{db}_{slot}', 'pgoutput')"
        ))
        .await?;
    }
    let started = Instant::now();
    c.batch_execute(&format!(
        "DO $$ BEGIN FOR t IN 0..{last} LOOP
           INSERT INTO bench SELECT i, i % 1000, md5(i::text), '2024-01-01'::timestamptz + i * interval '1 second', i / 100.0, i % 2 = 0
             FROM generate_series(t * {ROWS_PER_TXN} + 1, (t + 1) * {ROWS_PER_TXN}) i;
           COMMIT;
         END LOOP; END $$;",
        last = s.txns - 1
    ))
    .await?;
    let row = c
        .query_one(
            "SELECT pg_current_wal_lsn()::text, pg_size_pretty(pg_current_wal_lsn() - confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = $1",
            &[&format!("{db}_ordo")],
        )
        .await?;
    let (end, wal): (String, String) = (row.get(0), row.get(1));
    println!(
        "load: {} rows in {} transactions in {:.1} s, {wal} of WAL",
        s.txns * ROWS_PER_TXN,
        s.txns,
        started.elapsed().as_secs_f64()
    );
    Ok(end)
}

/// CPU time of this process so far (user + system), from `/proc/self/stat` (Linux; zero
/// elsewhere), assuming the usual 100 clock ticks per second.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Run the ordo source on its own thread until every row has arrived; returns the wall time
/// and the CPU time this process used meanwhile.
async fn run_ordo(s: &Settings, db: &str) -> anyhow::Result<(Duration, Duration)> {
    let yaml = format!(
        "source:\n  postgres:\n    host: {}\n    port: {}\n    user: {}\n    password: {}\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {db}_ordo\n    publication: {db}\n    snapshot: never\n    protocol_version: {}\n    streaming: {}\n    spill_dir: {}\nkafka:\n  bootstrap_servers: \"127.0.0.1:9\"\n  commit_topic: bench.commits\nmappings:\n  - tables: [\"public.*\"]\n    outputs:\n      - topic: \"bench.{{table}}\"\n        format: json\n",
        s.host,
        s.port,
        s.user,
        s.password,
        s.proto,
        s.proto >= 2,
        std::env::temp_dir().join("ordo-bench-spill").display()
    );
    let config = ordo_config::parse_with_env(&yaml, "bench.yaml", |_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ordo_config::Source::Postgres(pg) = config.source else {
        bail!("the bench config is not a postgres source");
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (durable_tx, durable_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let ctx = SourceContext {
        events: tx,
        durable: durable_rx,
        resume: None,
        tables: Arc::new(|_| true),
        shutdown: shutdown.clone(),
    };
    let (started, cpu_before) = (Instant::now(), cpu_time());
    let thread = std::thread::Builder::new()
        .name("ordo-source".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(ordo_capture::postgres::source::run(&pg, ctx))
                .map_err(|e| e.to_string())
        })?;
    let (mut rows, mut commits) = (0u64, 0u64);
    while commits < s.txns {
        let Some(batch) = rx.recv().await else {
            bail!("the source stopped after {rows} rows");
        };
        for ev in batch {
            match ev {
                SourceEvent::Change(_) => rows += 1,
                SourceEvent::Commit(c) => {
                    commits += 1;
                    let _ = durable_tx.send(Some(c.restart_position));
                }
                _ => {}
            }
        }
    }
    let elapsed = (started.elapsed(), cpu_time().saturating_sub(cpu_before));
    shutdown.cancel();
    while rx.recv().await.is_some() {}
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("the source failed: {e}"),
        Err(_) => bail!("the source panicked"),
    }
    if rows != s.txns * ROWS_PER_TXN {
        bail!("ordo delivered {rows} rows");
    }
    Ok(elapsed)
}

fn run_recvlogical(s: &Settings, db: &str, end: &str) -> anyhow::Result<Duration> {
    let exe = s.bin.as_ref().map_or_else(
        || "pg_recvlogical".to_owned(),
        |b| format!("{b}/pg_recvlogical"),
    );
    let started = Instant::now();
    let status = Command::new(&exe)
        .args([
            "-d",
            &s.conninfo(db),
            "--slot",
            &format!("{db}_recv"),
            "--start",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            &format!("publication_names={db}"),
        ])
        .args(["--endpos", end, "--no-loop", "-f", "/dev/null"])
        .status()
        .with_context(|| format!("running {exe}"))?;
    if !status.success() {
        bail!("{exe} failed: {status}");
    }
    Ok(started.elapsed())
}

async fn cleanup(s: &Settings, db: &str) -> anyhow::Result<()> {
    let admin = s.connect("postgres").await?;
    admin
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('{db}_ordo', '{db}_recv')"
        ))
        .await?;
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let s = Settings::from_env()?;
    let db = format!("ordo_bench_{}", std::process::id());
    let end = prepare(&s, &db).await?;
    let result = async {
        let ordo = run_ordo(&s, &db).await?;
        let recv = run_recvlogical(&s, &db, &end)?;
        Ok::<_, anyhow::Error>((ordo, recv))
    }
    .await;
    let cleaned = cleanup(&s, &db).await;
    let ((ordo, ordo_cpu), recv) = result?;
    cleaned?;
    let rows = (s.txns * ROWS_PER_TXN) as f64;
    let rate = |d: Duration| rows / d.as_secs_f64();
    println!("| consumer | wall | rows/s | client cpu |");
    println!("|---|---|---|---|");
    println!(
        "| ordo source, pgoutput v{}, decoded to events | {:.2} s | {:.0} | {:.2} s |",
        s.proto,
        ordo.as_secs_f64(),
        rate(ordo),
        ordo_cpu.as_secs_f64()
    );
    println!(
        "| pg_recvlogical, pgoutput v1, to /dev/null | {:.2} s | {:.0} | |",
        recv.as_secs_f64(),
        rate(recv)
    );
    println!(
        "ratio ordo / pg_recvlogical: {:.2} (goal >= 0.95)",
        rate(ordo) / rate(recv)
    );
    // One line for scripts/bench's table.
    println!(
        "BENCH|PG decode: {rows} rows in 100-row txns|pg_recvlogical -> /dev/null|{:.0}|ordo source alone|{:.0}|0.95",
        rate(recv),
        rate(ordo)
    );
    Ok(())
}
