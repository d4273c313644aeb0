//! Prerequisite checks for `ordo check`: what the server and the capture role must provide
//! before `ordo run` can work. Every problem comes with the statement or setting that fixes it.
//!
//! Checked: server version (14+), `wal_level=logical`, a free replication slot and WAL sender
//! (unless ordo's slot exists already), the slot itself (a pgoutput slot of this database, not
//! in use), the REPLICATION attribute, the publication (exists and lists every mapped table, or
//! can be created), and for each mapped table SELECT and a usable replica identity.

use ordo_config::PostgresSource;
use ordo_kcop::TableId;
use tokio_postgres::Client;

use super::catalog::{self, ident};
use crate::check::Problem;
use crate::source::TableFilter;

fn problem(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        found: found.into(),
        fix: fix.into(),
    }
}

fn qualified(t: &TableId) -> String {
    format!("{}.{}", ident(&t.namespace), ident(&t.name))
}

/// Check everything `ordo run` needs from the server; an empty list means ready.
pub async fn check(cfg: &PostgresSource, tables: &TableFilter) -> Vec<Problem> {
    let client = match catalog::connect(cfg).await {
        Ok(c) => c,
        Err(e @ catalog::CatalogError::Tls { .. }) => {
            return vec![problem(
                "tls to the source",
                format!("failing ({e})"),
                "change source.postgres.tls (or the server's certificate) as the message says",
            )];
        }
        Err(e) => {
            return vec![problem(
                "the connection",
                format!("failing ({e})"),
                "check source.postgres host, port, user, password and database",
            )];
        }
    };
    match run_checks(&client, cfg, tables).await {
        Ok(problems) => problems,
        Err(e) => vec![problem(
            "reading the server's catalog",
            format!("failing ({e})"),
            "let the capture role read pg_settings, pg_roles and pg_replication_slots",
        )],
    }
}

async fn run_checks(
    client: &Client,
    cfg: &PostgresSource,
    tables: &TableFilter,
) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let mut out = settings(client).await?;
    out.extend(slots(client, cfg).await?);
    let role = role(client).await?;
    if !role.replication && !role.superuser {
        out.push(problem(
            "the REPLICATION attribute",
            format!("missing for role {}", role.name),
            format!("ALTER ROLE {} REPLICATION", ident(&role.name)),
        ));
    }
    let mapped = mapped_tables(client, tables).await?;
    if mapped.is_empty() {
        out.push(problem(
            "the number of mapped tables",
            format!("0 in database {}", cfg.database),
            "check mappings[].tables (schema-qualified names or globs such as public.*)",
        ));
    }
    out.extend(publication(client, cfg, &role, &mapped).await?);
    for t in &mapped {
        out.extend(table_problems(t, &role.name));
    }
    Ok(out)
}

async fn settings(client: &Client) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('wal_level')",
            &[],
        )
        .await?;
    let (version, wal_level): (i32, String) = (row.get(0), row.get(1));
    let mut out = Vec::new();
    if version < 140_000 {
        out.push(problem(
            "the server version",
            format!("{version}"),
            "upgrade to PostgreSQL 14 or later",
        ));
    }
    if wal_level != "logical" {
        out.push(problem(
            "wal_level",
            wal_level,
            "ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL",
        ));
    }
    Ok(out)
}

async fn slots(
    client: &Client,
    cfg: &PostgresSource,
) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('max_replication_slots')::int, \
                    (SELECT count(*)::int FROM pg_replication_slots), \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*)::int FROM pg_stat_replication)",
            &[],
        )
        .await?;
    let (max_slots, slots, max_senders, senders): (i32, i32, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let ours = client
        .query_opt(
            "SELECT plugin::text, database::text, active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await?;
    let mut out = Vec::new();
    let raise = "in postgresql.conf and restart PostgreSQL";
    match ours {
        None if slots >= max_slots => out.push(problem(
            "free replication slots",
            format!("none ({slots} of max_replication_slots={max_slots} used)"),
            format!("raise max_replication_slots {raise}, or drop an unused slot"),
        )),
        None => {}
        Some(r) => out.extend(our_slot(cfg, &r)),
    }
    if senders >= max_senders {
        out.push(problem(
            "free WAL senders",
            format!("none ({senders} of max_wal_senders={max_senders} used)"),
            format!("raise max_wal_senders {raise}"),
        ));
    }
    Ok(out)
}

fn our_slot(cfg: &PostgresSource, r: &tokio_postgres::Row) -> Option<Problem> {
    let (plugin, db): (Option<String>, Option<String>) = (r.get(0), r.get(1));
    let (active, pid): (bool, Option<i32>) = (r.get(2), r.get(3));
    if plugin.as_deref() != Some("pgoutput") || db.as_deref() != Some(cfg.database.as_str()) {
        return Some(problem(
            format!("replication slot {}", cfg.slot),
            format!(
                "a {} slot of database {}",
                plugin.unwrap_or_else(|| "physical".into()),
                db.unwrap_or_else(|| "(none)".into())
            ),
            "choose another source.postgres.slot",
        ));
    }
    active.then(|| {
        problem(
            format!("replication slot {}", cfg.slot),
            format!("in use by process {}", pid.unwrap_or(0)),
            "stop the other ordo (or consumer) using this slot, or choose another source.postgres.slot",
        )
    })
}

struct Role {
    name: String,
    replication: bool,
    superuser: bool,
}

async fn role(client: &Client) -> Result<Role, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT rolname::text, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    Ok(Role {
        name: row.get(0),
        replication: row.get(1),
        superuser: row.get(2),
    })
}

/// A mapped table's catalog facts.
struct Mapped {
    id: TableId,
    can_select: bool,
    replica_identity: String,
    has_pk: bool,
    owned: bool,
}

async fn mapped_tables(
    client: &Client,
    tables: &TableFilter,
) -> Result<Vec<Mapped>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, has_table_privilege(c.oid, 'SELECT'), \
                    c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                    pg_has_role(c.relowner, 'USAGE') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Mapped {
            id: TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            can_select: r.get(2),
            replica_identity: r.get(3),
            has_pk: r.get(4),
            owned: r.get(5),
        })
        .filter(|m| tables(&m.id))
        .collect())
}

fn table_problems(t: &Mapped, role: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    if !t.can_select {
        out.push(problem(
            format!("SELECT on {}", t.id),
            format!("not granted to {role}"),
            format!("GRANT SELECT ON {} TO {}", qualified(&t.id), ident(role)),
        ));
    }
    let usable = match t.replica_identity.as_str() {
        "n" => false,
        "d" => t.has_pk,
        _ => true,
    };
    if !usable {
        let found = if t.replica_identity == "n" {
            "NOTHING"
        } else {
            "DEFAULT without a primary key"
        };
        out.push(problem(
            format!("the replica identity of {}", t.id),
            found,
            format!(
                "ALTER TABLE {} REPLICA IDENTITY FULL (or add a primary key); without it updates and deletes cannot be captured",
                qualified(&t.id)
            ),
        ));
    }
    out
}

async fn publication(
    client: &Client,
    cfg: &PostgresSource,
    role: &Role,
    mapped: &[Mapped],
) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let name = &cfg.publication;
    let exists = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[name],
        )
        .await?;
    let list = mapped
        .iter()
        .map(|t| qualified(&t.id))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(row) = exists else {
        return Ok(missing_publication(cfg, role, mapped, &list));
    };
    if row.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[name],
        )
        .await?;
    let members: Vec<TableId> = rows
        .iter()
        .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    Ok(mapped
        .iter()
        .filter(|t| !members.contains(&t.id))
        .map(|t| {
            problem(
                format!("publication {name}"),
                format!("without mapped table {}", t.id),
                format!(
                    "ALTER PUBLICATION {} ADD TABLE {}",
                    ident(name),
                    qualified(&t.id)
                ),
            )
        })
        .collect())
}

fn missing_publication(
    cfg: &PostgresSource,
    role: &Role,
    mapped: &[Mapped],
    list: &str,
) -> Vec<Problem> {
    let name = &cfg.publication;
    let create = format!(
        "CREATE PUBLICATION {} FOR TABLE {}",
        ident(name),
        if list.is_empty() {
            "<mapped tables>"
        } else {
            list
        }
    );
    if !cfg.create_publication {
        return vec![problem(
            format!("publication {name}"),
            "missing (and source.postgres.create_publication is false)",
            create,
        )];
    }
    if role.superuser {
        return Vec::new();
    }
    let owns_all = mapped.iter().all(|t| t.owned);
    vec![problem(
        format!("publication {name}"),
        format!(
            "missing, and role {} cannot create it FOR ALL TABLES (that needs superuser)",
            role.name
        ),
        if owns_all {
            format!(
                "{create} (as {}), then set source.postgres.create_publication: false",
                role.name
            )
        } else {
            format!(
                "have a superuser or the tables' owner run: {create}; then set source.postgres.create_publication: false"
            )
        },
    )]
}
