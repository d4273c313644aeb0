//! `ordo snapshot --table T`: check the request, write it to the signal table, and follow the
//! progress the running daemon writes back (a progress bar on a terminal, log lines otherwise).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ordo_config::{Config, Source};
use ordo_kcop::TableId;

use super::Backend;
use super::postgres::PgBackend;
use super::signal::{Request, SnapshotError};
use crate::mysql::resnapshot::MysqlBackend;
use crate::routes::Router;

/// `ordo snapshot` arguments.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// The YAML config file of the running daemon.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The table to snapshot again, as schema.table (PostgreSQL) or database.table (MariaDB).
    #[arg(long)]
    pub table: String,
    /// Rows per chunk. Default: the source's `snapshot_chunk_rows`.
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Return once the request is recorded instead of following its progress.
    #[arg(long)]
    pub no_wait: bool,
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The signal row's id.
    pub id: i64,
    /// The table.
    pub table: TableId,
    /// Rows to expect (estimate).
    pub estimated: i64,
    /// Whether this call created the signal table.
    pub created_signal_table: bool,
}

/// How often progress is read back.
const POLL: Duration = Duration::from_millis(500);

/// After this long without the daemon taking the request, say so.
const PICKUP_NOTICE: Duration = Duration::from_secs(10);

/// The source's signal table setting, by source kind.
fn signal_setting(config: &Config) -> (&'static str, Option<TableId>) {
    match &config.source {
        Source::Postgres(pg) => (
            "source.postgres.signal_table",
            pg.signal_table_parts().map(|(s, t)| TableId::new(s, t)),
        ),
        Source::Mysql(my) => (
            "source.mysql.signal_table",
            my.signal_table_parts().map(|(s, t)| TableId::new(s, t)),
        ),
    }
}

/// Check the request and record it in the signal table (created when missing).
///
/// # Errors
/// [`SnapshotError::Refused`] when the request cannot be served (no signal table set,
/// unknown, unmapped or uncaptured table, no primary key); SQL failures.
pub async fn request(
    config: &Config,
    table: &str,
    chunk_size: Option<u64>,
) -> Result<Requested, SnapshotError> {
    let (setting, signal) = signal_setting(config);
    let Some(signal) = signal else {
        return Err(SnapshotError::Refused(format!(
            "{setting} is not set; set it (for example `signal_table: ordo.signal`) and restart `ordo run`, which watches it for requests"
        )));
    };
    let Some((schema, name)) = table.split_once('.') else {
        let example = match &config.source {
            Source::Postgres(_) => "schema.table (for example public.orders)",
            Source::Mysql(_) => "database.table (for example shop.orders)",
        };
        return Err(SnapshotError::Refused(format!(
            "`{table}` is not a table name as {example}"
        )));
    };
    let id = TableId::new(schema, name);
    if id == signal {
        return Err(SnapshotError::Refused(format!("{id} is the signal table")));
    }
    if !Router::is_mapped(config, &id) {
        return Err(SnapshotError::Refused(format!(
            "table {id} is not mapped by the config's mappings; add a mapping for it (and restart ordo run) first"
        )));
    }
    match &config.source {
        Source::Postgres(pg) => {
            let chunk = chunk_size.unwrap_or(pg.snapshot_chunk_rows);
            record::<PgBackend>(pg, id, chunk).await
        }
        Source::Mysql(my) => {
            let chunk = chunk_size.unwrap_or(my.snapshot_chunk_rows);
            record::<MysqlBackend>(my, id, chunk).await
        }
    }
}

async fn record<B: Backend>(
    cfg: &B::Config,
    id: TableId,
    chunk: u64,
) -> Result<Requested, SnapshotError> {
    let mut db = B::connect(cfg).await?;
    let created_signal_table = db.ensure_signal_table().await?;
    let t = db.target(&id).await?;
    let req = db.request(&id, chunk.max(1), t.estimated).await?;
    Ok(Requested {
        id: req,
        table: id,
        estimated: t.estimated,
        created_signal_table,
    })
}

/// Poll request `req` until it is done (`Ok` with its last state) or failed (`Failed` with
/// the daemon's reason), calling `progress` on every read.
///
/// # Errors
/// When the request failed, disappeared, or SQL failed.
pub async fn follow(
    config: &Config,
    req: &Requested,
    progress: impl FnMut(&Request, Duration),
) -> Result<Request, SnapshotError> {
    match &config.source {
        Source::Postgres(pg) => poll(PgBackend::connect(pg).await?, req, progress).await,
        Source::Mysql(my) => poll(MysqlBackend::connect(my).await?, req, progress).await,
    }
}

async fn poll<B: Backend>(
    mut db: B,
    req: &Requested,
    mut progress: impl FnMut(&Request, Duration),
) -> Result<Request, SnapshotError> {
    let started = Instant::now();
    loop {
        let Some(r) = db.get(req.id).await? else {
            return Err(SnapshotError::Refused(format!(
                "request {} was deleted from the signal table",
                req.id
            )));
        };
        progress(&r, started.elapsed());
        match r.text("state") {
            Some("done") => return Ok(r),
            Some("failed") => {
                return Err(SnapshotError::Failed(
                    r.text("error")
                        .unwrap_or("the daemon gave no reason")
                        .to_owned(),
                ));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Shows progress: a bar on a terminal, a log line per change otherwise.
#[derive(Debug)]
pub struct Display {
    bar: Option<indicatif::ProgressBar>,
    last: Option<i64>,
    noticed: bool,
}

impl Display {
    /// A bar when stderr is a terminal, else log lines.
    pub fn new(req: &Requested) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(req.estimated.max(1).unsigned_abs());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} rows ({elapsed}, eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("snapshot {}", req.table));
            bar
        });
        Self {
            bar,
            last: None,
            noticed: false,
        }
    }

    /// Show `r`'s progress.
    pub fn update(&mut self, r: &Request, waited: Duration) {
        let state = r.text("state").unwrap_or("pending");
        if state == "pending" && waited >= PICKUP_NOTICE && !self.noticed {
            self.noticed = true;
            self.println(&format!(
                "request {} is still pending: is `ordo run` running with this config? It takes the request when it sees it",
                r.id
            ));
        }
        let done = r.number("rows_done").unwrap_or(0);
        let estimated = r.number("rows_estimated").unwrap_or(-1).max(done);
        if let Some(bar) = &self.bar {
            bar.set_length(estimated.max(1).unsigned_abs());
            bar.set_position(done.max(0).unsigned_abs());
        } else if self.last != Some(done) {
            tracing::info!(target: "ordo", table = r.text("table").unwrap_or_default(), rows = done, estimated, state, "snapshot progress");
        }
        self.last = Some(done);
    }

    /// Print a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
