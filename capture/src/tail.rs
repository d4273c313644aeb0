//! `ordo tail`: print transactions from the commit stream, in source order, as they arrive.
//!
//! The output formats are stable (other tools diff them); `docs/tail.md` documents them.
//! - `text`: one header line per transaction, then one line per record:
//!   `#<seq> txn <id> <position> <commit time> <n> ops` and
//!   `  <op type> <table> key=<key> <value>` (JSON shown as is, other bytes as base64).
//! - `jsonl`: one JSON object per transaction: `{"seq","txn","position","commit_time",
//!   "operations":[{"op","table","type","topic","partition","offset","key","value"}],"bookmark"}`;
//!   `key`/`value` are JSON when the bytes are JSON, else `{"base64": "..."}`, `null` if absent.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use ordo_kcop::value::Timestamp;
use ordo_tcc::{Bookmark, Start, TccConfig, TccConsumer, TccRecord, TccTransaction};
use serde_json::{Value as Json, json};

/// Arguments of `ordo tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The daemon's config file (brokers, commit topic, data topics).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Bootstrap servers (instead of --config).
    #[arg(long, required_unless_present = "config")]
    pub brokers: Option<String>,
    /// Commit-stream topic (instead of --config).
    #[arg(long, required_unless_present = "config")]
    pub commit_topic: Option<String>,
    /// Data topics to read (repeatable); default: every topic the commit records name.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TailFormat::Text)]
    pub format: TailFormat,
    /// Where to start when no bookmark is given.
    #[arg(long, value_enum, default_value_t = From::End)]
    pub from: From,
    /// Resume right after this bookmark (printed with each transaction in jsonl).
    #[arg(long)]
    pub from_bookmark: Option<String>,
    /// Stop after this many transactions.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Fail (exit 1) if --limit transactions have not arrived within this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// Output format of `ordo tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    /// Human-readable.
    Text,
    /// One JSON object per transaction.
    Jsonl,
}

/// Start position of `ordo tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// The first commit record still in the topic.
    Beginning,
    /// Only transactions committed from now on.
    End,
}

fn tcc_config(args: &TailArgs) -> Result<TccConfig, String> {
    let start = match &args.from_bookmark {
        Some(b) => Start::Bookmark(
            b.parse::<Bookmark>()
                .map_err(|e| format!("--from-bookmark: {e}"))?,
        ),
        None if args.from == From::Beginning => Start::Beginning,
        None => Start::End,
    };
    let mut cfg = match &args.config {
        Some(path) => {
            let c = ordo_config::load(path).map_err(|e| e.to_string())?;
            let mut t = TccConfig::new(
                c.kafka.bootstrap_servers.clone(),
                c.kafka.commit_topic.clone(),
                start,
            );
            for (k, v) in c.kafka.properties.iter() {
                if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                    t = t.property(k, v);
                }
            }
            t
        }
        None => TccConfig::new(
            args.brokers.clone().unwrap_or_default(),
            args.commit_topic.clone().unwrap_or_default(),
            start,
        ),
    };
    if !args.topics.is_empty() {
        cfg = cfg.topics(args.topics.clone());
    }
    Ok(cfg)
}

/// Run `ordo tail`.
pub fn main(args: TailArgs) -> ExitCode {
    let cfg = match tcc_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ordo tail: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordo tail: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let work = tail(cfg, args.format, args.limit);
        let result = match args.timeout {
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), work)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "fewer transactions than --limit arrived within {secs} s"
                    ))
                }),
            None => work.await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ordo tail: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn tail(cfg: TccConfig, format: TailFormat, limit: Option<u64>) -> Result<(), String> {
    let consumer = TccConsumer::new(cfg).map_err(|e| e.to_string())?;
    let mut txns = consumer.transactions();
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while limit.is_none_or(|l| seen < l) {
        let Some(txn) = txns.next().await else {
            return Ok(());
        };
        let txn = txn.map_err(|e| e.to_string())?;
        let text = match format {
            TailFormat::Text => text_form(&txn),
            TailFormat::Jsonl => format!("{}\n", json_form(&txn)),
        };
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing output: {e}"))?;
        seen += 1;
    }
    Ok(())
}

fn commit_time(micros: i64) -> String {
    format!("{}Z", Timestamp(micros))
}

fn bytes_text(b: Option<&[u8]>) -> String {
    match b {
        None => "null".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if serde_json::from_str::<Json>(s).is_ok() => s.to_owned(),
            _ => format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        },
    }
}

fn bytes_json(b: Option<&[u8]>) -> Json {
    match b {
        None => Json::Null,
        Some(b) => serde_json::from_slice(b).unwrap_or_else(
            |_| json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
        ),
    }
}

/// The text form of a transaction.
pub fn text_form(txn: &TccTransaction) -> String {
    let c = &txn.commit;
    let mut s = format!(
        "#{} txn {} {} {} {} ops\n",
        c.seq,
        c.txn,
        c.position,
        commit_time(c.commit_time_micros),
        c.ops
    );
    for r in txn.records() {
        s.push_str(&format!(
            "  {} {} key={} {}\n",
            r.op_type().unwrap_or("?"),
            r.table().unwrap_or("?"),
            bytes_text(r.key.as_deref()),
            bytes_text(r.value.as_deref())
        ));
    }
    s
}

fn record_json(op: u64, r: &TccRecord) -> Json {
    json!({
        "op": op,
        "table": r.table(),
        "type": r.op_type(),
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "key": bytes_json(r.key.as_deref()),
        "value": bytes_json(r.value.as_deref()),
    })
}

/// The jsonl form of a transaction.
pub fn json_form(txn: &TccTransaction) -> Json {
    let c = &txn.commit;
    let ops: Vec<Json> = txn
        .operations
        .iter()
        .flat_map(|o| o.records.iter().map(move |r| record_json(o.op_index, r)))
        .collect();
    json!({
        "seq": c.seq,
        "txn": c.txn,
        "position": c.position,
        "commit_time": commit_time(c.commit_time_micros),
        "operations": ops,
        "bookmark": txn.bookmark.to_string(),
    })
}
