//! The MariaDB source: reads the binary log as a replica and hands each transaction touching a
//! mapped table to the pipeline.
//!
//! ordo registers as a replica (`source.mysql.server_id`) and streams the binlog from a GTID
//! position. It decodes MariaDB's own events (GTID, GTID_LIST, BINLOG_CHECKPOINT,
//! ANNOTATE_ROWS), verifies CRC32 checksums, and decodes row images itself from each TABLE_MAP
//! compiled once (module `values`): exact integers of every width and sign, exact decimals,
//! temporal types with fractional seconds, text by character set, `UUID`, `ENUM`, `SET`,
//! `BIT`. The server needs `log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`,
//! `binlog_row_metadata=FULL`, and no `log_bin_compress`; [`check`] says what is missing.
//!
//! # Values
//! Unsigned integer columns are `UInt` of their width, signed ones (and `YEAR`) `Int`;
//! `DECIMAL` is exact text with the declared scale; `DATETIME` is a wall-clock `Timestamp`,
//! `TIMESTAMP` a UTC `TimestampTz`; zero and partial dates (`0000-00-00`) have no model value
//! and become `NULL`. `BINARY(n)` keeps its trailing zero bytes, `UUID` is `Uuid`, `INET6` its
//! text, MariaDB's `JSON` (a checked `LONGTEXT`) `Json`, geometry its internal bytes. Types the
//! binlog cannot tell apart (`UUID` vs `BINARY(16)`, `JSON` vs `LONGTEXT`) and declared type
//! names come from `information_schema` while it still matches the logged table; otherwise
//! the binlog's own description is used (and may give another schema version). Character
//! sets: utf8mb3/utf8mb4, ascii, latin1, ucs2, utf16, utf16le, utf32, binary; a column in
//! any other stops the source with a message naming it.
//!
//! # Ordering
//! Transactions arrive in binlog (commit) order, whole, with dense op indexes; see module
//! `txn` for how event groups become transactions (DDL, XA, non-transactional engines).
//!
//! # Resumption
//! Commit and restart positions are `mysql:<executed GTID set>@<file:pos>`. Restarting from a
//! restart position streams from that GTID set; transactions contained in it are never handed
//! on again. Without a resume position the source takes a snapshot first (see module `snapshot`),
//! or with `snapshot: never` starts at the server's current `@@gtid_binlog_pos`. A connection
//! lost mid-stream is retried as module `binlog` describes.
//!
//! TLS is not supported yet: `tls.mode` must be `disable` or `prefer` (plain TCP).
//!
//! # Error handling
//! Every failure is a [`MysqlSourceError`]; [`MysqlSourceError::is_transient`] tells the
//! reconnecting ones (network, server restart) from the definite ones (settings, privileges,
//! compressed or corrupt events), which stop the source with a message saying how to fix them.

mod binlog;
mod catalog;
mod charset;
mod check;
mod error;
mod events;
pub(crate) mod fuzzing;
mod gtid;
pub(crate) mod resnapshot;
mod rows;
mod schema;
mod snapshot;
mod table_map;
mod txn;
mod types;
mod values;
mod wire;

use mysql_async::prelude::Queryable;
use ordo_config::{MysqlSource, Snapshot};
use ordo_kcop::{BinlogCoord, GtidSet, Position};

pub(crate) use binlog::{connect, sql_err};
pub(crate) use check::connection_problem;
pub use check::{Problem, check};
pub use error::MysqlSourceError;

use schema::SchemaRegistry;
use txn::Assembler;

use crate::metrics::{SourceState, source_state};
use crate::source::{Batcher, SourceContext};

/// Where streaming starts.
enum Start {
    At(GtidSet, BinlogCoord),
    Snapshot,
}

/// Run the source until shutdown (or, with `snapshot: initial_only`, until the snapshot is
/// taken).
///
/// # Errors
/// On definite failures (settings, privileges, malformed or compressed events, a foreign
/// resume position); lost connections are retried.
pub async fn run(cfg: &MysqlSource, ctx: SourceContext) -> Result<(), MysqlSourceError> {
    let mut out = Batcher::new(ctx.events.clone());
    let mut meta = connect(cfg).await?;
    check::ensure_capturable(&mut meta, cfg).await?;
    let collations = catalog::collations(&mut meta)
        .await
        .map_err(sql_err("reading the server's collations"))?;
    let mut registry = SchemaRegistry::new(collations);
    let start = match &ctx.resume {
        Some(Position::MySql { gtids, coord }) if !snapshot::is_unfinished(coord) => {
            Start::At(gtids.clone(), coord.clone())
        }
        Some(Position::MySql { gtids, coord }) if cfg.snapshot == Snapshot::Never => {
            let file = coord.file.trim_start_matches(snapshot::MARK).to_owned();
            Start::At(
                gtids.clone(),
                BinlogCoord {
                    file,
                    pos: coord.pos,
                },
            )
        }
        Some(Position::MySql { .. }) => {
            tracing::info!("the last run stopped inside its snapshot; taking the snapshot again");
            Start::Snapshot
        }
        Some(other) => {
            return Err(MysqlSourceError::Setting {
                setting: "the commit stream's restart position".into(),
                found: format!("`{other}`, not a MariaDB position"),
                fix: "this commit topic belongs to another source: use a new kafka.commit_topic"
                    .into(),
            });
        }
        None if cfg.snapshot == Snapshot::Never => current_position(&mut meta).await?,
        None => Start::Snapshot,
    };
    drop(meta);
    let (gtids, coord) = match start {
        Start::At(gtids, coord) => {
            if cfg.snapshot == Snapshot::InitialOnly {
                return Ok(()); // the snapshot is complete: nothing to do
            }
            (gtids, coord)
        }
        Start::Snapshot => {
            source_state(SourceState::Snapshotting);
            let taken = snapshot::run(cfg, &ctx, &mut registry, &mut out).await?;
            if !taken.complete || cfg.snapshot == Snapshot::InitialOnly {
                out.flush().await?;
                return Ok(());
            }
            match taken.position {
                Position::MySql { gtids, coord } => (gtids, coord),
                Position::Postgres(_) => return Ok(()),
            }
        }
    };
    let signal = cfg
        .signal_table_parts()
        .map(|(db, table)| ordo_kcop::TableId::new(db, table));
    let decoded = crate::resnapshot::decoded_tables(&ctx.tables, signal.as_ref());
    let mut asm = Assembler::new(decoded, registry, gtids, coord);
    let driver = signal
        .map(|s| crate::resnapshot::start::<resnapshot::MysqlBackend>(cfg, s, &ctx, &mut out));
    let result = binlog::stream_with_retries(cfg, &ctx, &mut asm, &mut out).await;
    if let Some(task) = driver {
        task.abort();
        let _ = task.await;
    }
    result
}

/// The server's current position, for `snapshot: never`.
async fn current_position(conn: &mut mysql_async::Conn) -> Result<Start, MysqlSourceError> {
    let status: Option<(String, u64)> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(sql_err(
            "SHOW MASTER STATUS (needs the BINLOG MONITOR privilege)",
        ))?
        .map(|row: mysql_async::Row| {
            mysql_async::from_row_opt::<(String, u64, String, String)>(row).map(|(f, p, ..)| (f, p))
        })
        .transpose()
        .map_err(|e| MysqlSourceError::Setting {
            setting: "SHOW MASTER STATUS".into(),
            found: e.to_string(),
            fix: "report this as a bug".into(),
        })?;
    let Some((file, pos)) = status else {
        return Err(MysqlSourceError::Setting {
            setting: "log_bin".into(),
            found: "OFF".into(),
            fix: "set log_bin=mariadb-bin in the server's config file and restart it".into(),
        });
    };
    let gtids: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
        .await
        .map_err(sql_err("reading BINLOG_GTID_POS"))?;
    let gtids: GtidSet = gtids
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|_| gtid::empty());
    tracing::info!(%gtids, %file, pos, "starting at the server's current position (snapshot: never)");
    Ok(Start::At(gtids, BinlogCoord { file, pos }))
}
