//! Prerequisite checks (`ordo check`): server settings and the capture user's privileges.

use std::fmt;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use ordo_config::MysqlSource;
use ordo_kcop::TableId;

use super::MysqlSourceError;
use super::binlog::{connect, sql_err};
use super::catalog::ident;

/// A prerequisite the server does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting or privilege, e.g. `binlog_format`, `REPLICATION SLAVE privilege`.
    pub what: String,
    /// What the server has.
    pub found: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}: {}", self.what, self.found, self.fix)
    }
}

fn problem(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        found: found.into(),
        fix: fix.into(),
    }
}

/// The problem to report when connecting fails: TLS failures name their own setting and fix.
pub(crate) fn connection_problem(e: &MysqlSourceError) -> Problem {
    match e {
        MysqlSourceError::Tls(tls) => problem(
            "tls to the source",
            format!("failing ({tls})"),
            "change source.mysql.tls (or the server's certificate) as the message says",
        ),
        other => problem(
            "the connection",
            format!("failing ({other})"),
            "check source.mysql host, port, user and password",
        ),
    }
}

/// Check that the server can be captured from: binary log on, in ROW format with full row
/// images and metadata, no compression, a server id other than ordo's, and the privileges
/// (`REPLICATION SLAVE`, `BINLOG MONITOR`, `SELECT` on `tables`). An empty list means ready.
pub async fn check(cfg: &MysqlSource, tables: &[TableId]) -> Vec<Problem> {
    let mut conn = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return vec![connection_problem(&e)],
    };
    let mut problems = match settings(&mut conn, cfg).await {
        Ok(p) => p,
        Err(e) => {
            return vec![problem(
                "reading server settings",
                format!("failing ({e})"),
                "grant the user access to the server's variables",
            )];
        }
    };
    match privileges(&mut conn).await {
        Ok(p) => problems.extend(p),
        Err(e) => problems.push(problem(
            "reading the user's privileges",
            format!("failing ({e})"),
            "check information_schema access",
        )),
    }
    for t in tables {
        let sql = format!(
            "SELECT 1 FROM {}.{} LIMIT 0",
            ident(&t.namespace),
            ident(&t.name)
        );
        if let Err(e) = conn.query_drop(&sql).await {
            problems.push(problem(
                format!("SELECT on `{t}`"),
                format!("refused ({e})"),
                format!(
                    "GRANT SELECT ON {}.{} TO {}",
                    ident(&t.namespace),
                    ident(&t.name),
                    user(cfg)
                ),
            ));
        }
    }
    let _ = conn.disconnect().await;
    problems
}

/// Refuse to start capture from a server that is not MariaDB or whose binlog settings would
/// lose data; every problem is listed with its fix.
///
/// # Errors
/// [`MysqlSourceError::Setting`] naming each problem, or the query failure.
pub(crate) async fn ensure_capturable(
    conn: &mut Conn,
    cfg: &MysqlSource,
) -> Result<(), MysqlSourceError> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(sql_err("reading the server version"))?;
    let version = version.unwrap_or_default();
    if !version.to_ascii_lowercase().contains("mariadb") {
        return Err(MysqlSourceError::Setting {
            setting: "the source server".into(),
            found: format!("version {version}, not MariaDB"),
            fix: "ordo reads MariaDB's binlog protocol (10.5+, tested on 10.11); MySQL 8 is not \
                  supported yet"
                .into(),
        });
    }
    let problems = settings(conn, cfg)
        .await
        .map_err(sql_err("reading the binlog settings"))?;
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(MysqlSourceError::Setting {
        setting: "the server's binlog settings".into(),
        found: "not ready for capture".into(),
        fix: list.join("; "),
    })
}

fn user(cfg: &MysqlSource) -> String {
    format!("'{}'@'%'", cfg.user.replace('\'', "''"))
}

async fn settings(conn: &mut Conn, cfg: &MysqlSource) -> Result<Vec<Problem>, mysql_async::Error> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<u64>,
        Option<String>,
    );
    let row: Option<Row> = conn
        .query_first(
            "SELECT CAST(@@log_bin AS CHAR), @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, \
             @@server_id, CAST(@@log_bin_compress AS CHAR)",
        )
        .await?;
    let Some((log_bin, format, image, metadata, server_id, compress)) = row else {
        return Ok(vec![problem(
            "server variables",
            "unreadable",
            "connect to a MariaDB server",
        )]);
    };
    let mut out = Vec::new();
    let restart = "in the server's config file ([mariadb] section) and restart it";
    if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
        out.push(problem(
            "log_bin",
            "OFF",
            format!("set log_bin=mariadb-bin {restart}"),
        ));
    }
    let mut want = |name: &str, found: Option<String>, want: &str| {
        let found = found.unwrap_or_default();
        if !found.eq_ignore_ascii_case(want) {
            out.push(problem(
                name,
                if found.is_empty() {
                    "not set".to_owned()
                } else {
                    found
                },
                format!(
                    "SET GLOBAL {name}={want} and put {name}={want} in the server's config file"
                ),
            ));
        }
    };
    want("binlog_format", format, "ROW");
    want("binlog_row_image", image, "FULL");
    want("binlog_row_metadata", metadata, "FULL");
    if matches!(compress.as_deref(), Some("1" | "ON")) {
        want("log_bin_compress", Some("ON".into()), "OFF");
    }
    out.extend(server_id_problem(server_id, cfg, restart));
    Ok(out)
}

fn server_id_problem(server_id: Option<u64>, cfg: &MysqlSource, restart: &str) -> Option<Problem> {
    match server_id {
        Some(0) | None => Some(problem(
            "server_id",
            "0",
            format!("set server_id to a unique non-zero number {restart}"),
        )),
        Some(id) if id == u64::from(cfg.server_id) => Some(problem(
            "source.mysql.server_id",
            format!("{id}, the server's own id"),
            "pick a replica id no other server or replica uses",
        )),
        Some(_) => None,
    }
}

async fn privileges(conn: &mut Conn) -> Result<Vec<Problem>, mysql_async::Error> {
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    let current = current.unwrap_or_default();
    let (name, host) = current.rsplit_once('@').unwrap_or((current.as_str(), "%"));
    let grantee = format!("'{name}'@'{host}'");
    let privs: Vec<String> = conn
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
            (grantee.clone(),),
        )
        .await?;
    let has = |p: &str| privs.iter().any(|x| x.eq_ignore_ascii_case(p));
    let account = format!(
        "'{}'@'{}'",
        name.replace('\'', "''"),
        host.replace('\'', "''")
    );
    let mut out = Vec::new();
    if !has("REPLICATION SLAVE") {
        out.push(problem(
            "the REPLICATION SLAVE privilege",
            format!("missing for {grantee}"),
            format!("GRANT REPLICATION SLAVE ON *.* TO {account}"),
        ));
    }
    if !has("BINLOG MONITOR") && !has("REPLICATION CLIENT") && !has("SUPER") {
        out.push(problem(
            "the BINLOG MONITOR privilege",
            format!("missing for {grantee}"),
            format!("GRANT BINLOG MONITOR ON *.* TO {account}"),
        ));
    }
    Ok(out)
}
