//! An exactly-once sink: reads ordo's transactions in source order with the transactionally
//! consistent consumer and applies each one to a PostgreSQL table, storing the consumer's
//! bookmark **in the same database transaction** as the writes. After a crash at any point,
//! the sink resumes from the bookmark its last committed transaction stored, so every source
//! transaction is applied exactly once.
//!
//! It mirrors JSON-format topics whose key and value are JSON objects into one `jsonb` table:
//! `(topic text, key jsonb, row jsonb, PRIMARY KEY (topic, key))`: inserts, updates and
//! snapshot reads upsert `row`, deletes remove the key.
//!
//! Next to the bookmark it keeps the commit-stream sequence number of the last applied
//! transaction, and refuses a transaction whose number is not the next one: a duplicate or a
//! gap would stop the sink instead of corrupting its table.
//!
//! ```sh
//! cargo run -p ordo-example-sink -- <bootstrap servers> <commit topic> <postgres url>
//! ```

use anyhow::Context as _;
use futures::StreamExt;
use ordo_tcc::{Bookmark, Start, TccConfig, TccConsumer, TccTransaction};
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ordo_sink_rows (topic text, key jsonb, row jsonb, PRIMARY KEY (topic, key));
                      CREATE TABLE IF NOT EXISTS ordo_sink_bookmark (id int PRIMARY KEY CHECK (id = 1), bookmark text NOT NULL, seq bigint NOT NULL);";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, commit_topic, url] = args.as_slice() else {
        anyhow::bail!("usage: ordo-example-sink <bootstrap servers> <commit topic> <postgres url>");
    };
    let stop_at_end = std::env::var_os("SINK_STOP_AT_END").is_some();
    run(brokers, commit_topic, url, stop_at_end).await
}

/// Apply every transaction (from the stored bookmark on) until the stream ends.
async fn run(
    brokers: &str,
    commit_topic: &str,
    url: &str,
    stop_at_end: bool,
) -> anyhow::Result<()> {
    let (mut db, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connect to the sink database")?;
    tokio::spawn(conn);
    db.batch_execute(SCHEMA)
        .await
        .context("create the sink tables")?;
    let start = match stored_bookmark(&db).await? {
        Some(b) => Start::Bookmark(b),
        None => Start::Beginning,
    };
    let cfg = TccConfig::new(brokers, commit_topic, start).stop_at_end(stop_at_end);
    let mut txns = TccConsumer::new(cfg)?.transactions();
    while let Some(txn) = txns.next().await {
        let txn = txn?;
        apply(&mut db, &txn)
            .await
            .with_context(|| format!("apply transaction {}", txn.commit.txn))?;
    }
    Ok(())
}

async fn stored_bookmark(db: &Client) -> anyhow::Result<Option<Bookmark>> {
    let row = db
        .query_opt("SELECT bookmark FROM ordo_sink_bookmark WHERE id = 1", &[])
        .await?;
    row.map(|r| {
        r.get::<_, String>(0)
            .parse::<Bookmark>()
            .context("stored bookmark")
    })
    .transpose()
}

/// One source transaction = one sink transaction, bookmark included.
async fn apply(db: &mut Client, txn: &TccTransaction) -> anyhow::Result<()> {
    let tx = db.transaction().await?;
    let last: Option<i64> = tx
        .query_opt("SELECT seq FROM ordo_sink_bookmark WHERE id = 1", &[])
        .await?
        .map(|r| r.get(0));
    let seq = i64::try_from(txn.commit.seq).context("sequence number")?;
    if let Some(last) = last
        && seq != last + 1
    {
        anyhow::bail!("transaction seq {seq} after seq {last}: the stream is not exactly once");
    }
    for rec in txn.records() {
        let key: serde_json::Value = match &rec.key {
            Some(k) => serde_json::from_slice(k)?,
            None => continue,
        };
        match (rec.op_type(), &rec.value) {
            (Some("d"), _) | (_, None) => {
                tx.execute(
                    "DELETE FROM ordo_sink_rows WHERE topic = $1 AND key = $2",
                    &[&rec.topic, &key],
                )
                .await?;
            }
            (_, Some(v)) => {
                let row: serde_json::Value = serde_json::from_slice(v)?;
                tx.execute(
                    "INSERT INTO ordo_sink_rows VALUES ($1, $2, $3) ON CONFLICT (topic, key) DO UPDATE SET row = EXCLUDED.row",
                    &[&rec.topic, &key, &row],
                )
                .await?;
            }
        }
    }
    tx.execute(
        "INSERT INTO ordo_sink_bookmark VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET bookmark = EXCLUDED.bookmark, seq = EXCLUDED.seq",
        &[&txn.bookmark.to_string(), &seq],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
