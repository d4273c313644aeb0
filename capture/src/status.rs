//! `ordo status`: where capture stands, read from the outside (the daemon need not run).
//!
//! The commit stream's last record says what is durable (its transaction, positions and commit
//! time); the source says where its log is: for PostgreSQL the slot's confirmed flush LSN, the
//! WAL it retains and whether a WAL sender streams from it, for MariaDB `@@gtid_binlog_pos`.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use ordo_config::{Config, Source};
use ordo_tcc::commit_stream::CommitRecord;
use serde_json::{Value, json};

use crate::metrics::{now_micros, slot};
use crate::publisher::checkpoint;

/// What `ordo status` found.
#[derive(Debug)]
pub struct Status {
    /// The commit stream's last record, if any.
    pub last: Option<CommitRecord>,
    /// The source's side, as name/value pairs in display order.
    pub source: Vec<(&'static str, Value)>,
}

/// Read the commit stream and the source.
///
/// # Errors
/// A message saying which side could not be read and why.
pub async fn read(config: &Config) -> Result<Status, String> {
    let kafka = config.kafka.clone();
    let last = tokio::task::spawn_blocking(move || {
        match checkpoint::commit_topic_partitions(&kafka, Duration::from_secs(10))? {
            None => Ok(None),
            Some(_) => checkpoint::last_commit_record(&kafka),
        }
    })
    .await
    .map_err(|e| format!("reading the commit stream failed: {e}"))?
    .map_err(|e| format!("reading commit topic {}: {e}", config.kafka.commit_topic))?;
    let source = match &config.source {
        Source::Postgres(pg) => postgres(pg).await?,
        Source::Mysql(my) => mariadb(my).await?,
    };
    Ok(Status { last, source })
}

async fn postgres(pg: &ordo_config::PostgresSource) -> Result<Vec<(&'static str, Value)>, String> {
    let client = crate::postgres::catalog::connect(pg)
        .await
        .map_err(|e| e.to_string())?;
    let info = slot::read(&client, &pg.slot)
        .await
        .map_err(|e| format!("reading replication slot {}: {e}", pg.slot))?;
    let Some(s) = info else {
        return Ok(vec![
            ("slot", json!(pg.slot)),
            ("slot_exists", json!(false)),
        ]);
    };
    Ok(vec![
        ("slot", json!(pg.slot)),
        ("slot_exists", json!(true)),
        ("slot_active", json!(s.active)),
        ("wal_sender_state", json!(s.sender_state)),
        ("current_wal_lsn", json!(s.current_lsn)),
        ("confirmed_flush_lsn", json!(s.confirmed_flush)),
        ("unconfirmed_wal_bytes", json!(s.unconfirmed_bytes)),
        ("retained_wal_bytes", json!(s.retained_bytes)),
    ])
}

async fn mariadb(my: &ordo_config::MysqlSource) -> Result<Vec<(&'static str, Value)>, String> {
    let mut conn = crate::check::mysql_connect(my)
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", my.host, my.port))?;
    let pos: Option<String> = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(|e| format!("reading @@gtid_binlog_pos: {e}"))?;
    let _ = conn.disconnect().await;
    Ok(vec![("gtid_binlog_pos", json!(pos.unwrap_or_default()))])
}

impl Status {
    /// Seconds since the last commit record's transaction committed at the source.
    pub fn commit_age(&self) -> Option<f64> {
        let t = self.last.as_ref()?.commit_time_micros;
        Some(Duration::from_micros(u64::try_from(now_micros() - t).unwrap_or(0)).as_secs_f64())
    }

    /// As one JSON object.
    pub fn to_json(&self) -> Value {
        let last = self.last.as_ref().map(|r| {
            json!({
                "seq": r.seq,
                "txn": r.txn,
                "position": r.position,
                "restart": r.restart,
                "commit_time_micros": r.commit_time_micros,
                "ops": r.ops,
                "records": r.records,
            })
        });
        let source: serde_json::Map<String, Value> = self
            .source
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        json!({
            "last_commit_record": last,
            "seconds_since_last_commit": self.commit_age(),
            "source": source,
        })
    }

    /// As aligned `name: value` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match &self.last {
            None => out.push_str("last commit record:  none (nothing captured yet)\n"),
            Some(r) => {
                out.push_str(&format!(
                    "last commit record:  seq {} txn {} ({} ops, {} records)\n",
                    r.seq, r.txn, r.ops, r.records
                ));
                out.push_str(&format!(
                    "  position:          {}\n  restart:           {}\n",
                    r.position, r.restart
                ));
                if let Some(age) = self.commit_age() {
                    out.push_str(&format!("  committed:         {age:.1} s ago\n"));
                }
            }
        }
        out.push_str("source:\n");
        for (k, v) in &self.source {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push_str(&format!("  {:<19}{v}\n", format!("{k}:")));
        }
        out
    }
}
