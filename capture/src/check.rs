//! `ordo check`: after the config file validates, connect to the source and to Kafka and check
//! every prerequisite `ordo run` has, printing each problem with its fix.
//!
//! The source checks live with the sources ([`crate::postgres::check`],
//! [`crate::mysql::check`]); this module adds the Kafka side (brokers reachable, the commit
//! topic has exactly one partition or may be created) and puts them together.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use ordo_config::{Config, MysqlSource, Source};
use ordo_kcop::TableId;

mod kafka;

use crate::daemon::table_filter;
pub use crate::mysql::Problem;
use crate::publisher::checkpoint;

fn problem(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        found: found.into(),
        fix: fix.into(),
    }
}

/// Every problem with the source and Kafka; empty when `ordo run` can start.
pub async fn check(config: &Arc<Config>) -> Vec<Problem> {
    let mut out = match &config.source {
        Source::Postgres(pg) => crate::postgres::check::check(pg, &table_filter(config)).await,
        Source::Mysql(my) => mysql(my, config).await,
    };
    out.extend(match &config.source {
        Source::Postgres(pg) => crate::resnapshot::signal::check_source(pg).await,
        Source::Mysql(my) => crate::mysql::resnapshot::check_source(my).await,
    });
    let kafka = config.kafka.clone();
    match tokio::task::spawn_blocking(move || kafka_problems(&kafka)).await {
        Ok(p) => out.extend(p),
        Err(e) => out.push(problem(
            "the kafka check",
            format!("failing ({e})"),
            "report this bug",
        )),
    }
    out
}

/// Print `problems` as `problem:`/`fix:` pairs to stdout.
pub fn print(problems: &[Problem]) {
    for p in problems {
        println!("problem: {} is {}\n    fix: {}", p.what, p.found, p.fix);
    }
}

async fn mysql(cfg: &MysqlSource, config: &Arc<Config>) -> Vec<Problem> {
    let tables = match mysql_tables(cfg).await {
        Ok(t) => t,
        Err(e) => {
            return vec![crate::mysql::connection_problem(&e)];
        }
    };
    let filter = table_filter(config);
    let mapped: Vec<TableId> = tables.into_iter().filter(|t| filter(t)).collect();
    let mut out = crate::mysql::check(cfg, &mapped).await;
    if mapped.is_empty() && out.is_empty() {
        out.push(problem(
            "the number of mapped tables",
            "0 on the server",
            "check mappings[].tables and source.mysql.databases",
        ));
    }
    out
}

/// A plain SQL connection to the MariaDB/MySQL source (bounded by a timeout, over TLS as
/// `source.mysql.tls` says).
///
/// # Errors
/// When the server cannot be reached in time, refuses the login or the TLS handshake fails.
pub(crate) async fn mysql_connect(
    cfg: &MysqlSource,
) -> Result<mysql_async::Conn, crate::mysql::MysqlSourceError> {
    crate::mysql::connect(cfg).await
}

async fn mysql_tables(cfg: &MysqlSource) -> Result<Vec<TableId>, crate::mysql::MysqlSourceError> {
    let mut conn = mysql_connect(cfg).await?;
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys')",
        )
        .await
        .map_err(crate::mysql::sql_err("listing the tables"))?;
    let _ = conn.disconnect().await;
    Ok(rows
        .into_iter()
        .filter(|(db, _)| cfg.databases.is_empty() || cfg.databases.contains(db))
        .map(|(db, t)| TableId::new(db, t))
        .collect())
}

/// Brokers reachable; the commit topic exists with one partition, or may be created.
fn kafka_problems(kafka: &ordo_config::Kafka) -> Vec<Problem> {
    let topic = &kafka.commit_topic;
    match checkpoint::commit_topic_partitions(kafka, Duration::from_secs(10)) {
        Err(e) => {
            let (found, fix) = match kafka::diagnose(kafka, Duration::from_secs(5)) {
                Some((reason, fix)) => (format!("unreachable ({e}: {reason})"), fix),
                None => (
                    format!("unreachable ({e})"),
                    "check kafka.bootstrap_servers and the security settings in kafka.properties"
                        .to_owned(),
                ),
            };
            vec![problem("the kafka cluster", found, fix)]
        }
        Ok(Some(1)) => Vec::new(),
        Ok(Some(n)) => vec![problem(
            format!("commit topic {topic}"),
            format!("{n} partitions"),
            "commit records must stay in order: use a new kafka.commit_topic (created with one partition)",
        )],
        Ok(None) if kafka.create_topics => Vec::new(),
        Ok(None) => vec![problem(
            format!("commit topic {topic}"),
            "missing, and kafka.create_topics is false",
            format!(
                "create it with one partition (kafka-topics.sh --create --topic {topic} --partitions 1 --config retention.ms=-1), or set kafka.create_topics: true"
            ),
        )],
    }
}
