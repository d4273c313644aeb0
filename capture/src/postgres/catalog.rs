//! Ordinary SQL against the source: the publication, mapped tables, replica identities, and
//! the catalog facts pgoutput does not send (user types, primary keys, nullability).

use std::collections::HashMap;

use ordo_config::PostgresSource;
use ordo_config::TlsMode;
use ordo_kcop::TableId;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use super::types::{PgType, TypeCache, TypeInfo, builtin};
use crate::source::TableFilter;
use crate::tls::{PgTls, TlsError};

/// The settings block named in TLS errors.
pub(crate) const TLS_SETTING: &str = "source.postgres.tls";

/// A failure talking SQL to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Connecting or running a statement failed.
    #[error("postgresql {what}: {}", describe(source))]
    Sql {
        /// What ordo was doing.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A mapped table cannot be captured as configured.
    #[error("{0}")]
    Unusable(String),
    /// TLS to the server could not be set up (certificate, CA, key, or the server lacks TLS).
    #[error("postgresql: {source}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What went wrong, naming the setting to change.
        source: TlsError,
    },
}

/// The driver's error with what it wraps: the server's message and SQLSTATE, or the i/o cause
/// (tokio-postgres's own `Display` says only "db error" or "error connecting to server").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> CatalogError {
    let what = what.into();
    move |source| CatalogError::Sql { what, source }
}

/// Quote an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Connect for ordinary SQL, with the session settings that make text forms unambiguous, over
/// TLS as `source.postgres.tls` says (see [`crate::tls`]; no TLS on unix sockets, as libpq).
///
/// # Errors
/// When the server cannot be reached, refuses the login, or the TLS handshake fails.
pub async fn connect(cfg: &PostgresSource) -> Result<Client, CatalogError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .dbname(&cfg.database)
        .application_name("ordo");
    if let Some(p) = &cfg.password {
        pg.password(p.expose());
    }
    pg.options("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C");
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let tls_error = |source| CatalogError::Tls {
        addr: addr.clone(),
        source,
    };
    let unix = cfg.host.starts_with('/');
    pg.ssl_mode(match cfg.tls.mode {
        _ if unix => SslMode::Disable,
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    let tls = crate::tls::client_config(&cfg.tls, TLS_SETTING).map_err(tls_error)?;
    let where_ = format!(
        "connect to {addr} database {} as {}",
        cfg.database, cfg.user
    );
    let (client, conn) = pg
        .connect(PgTls::new(tls))
        .await
        .map_err(|e| connect_error(e, cfg, &addr, where_))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "sql connection closed");
        }
    });
    Ok(client)
}

/// A failed connect, with TLS failures explained (which setting, which fix).
fn connect_error(
    e: tokio_postgres::Error,
    cfg: &PostgresSource,
    addr: &str,
    what: String,
) -> CatalogError {
    let tls = |source| CatalogError::Tls {
        addr: addr.to_owned(),
        source,
    };
    if let Some(rustls) = crate::tls::find_rustls_error(&e) {
        return tls(crate::tls::explain(
            rustls,
            &cfg.tls,
            TLS_SETTING,
            &cfg.host,
            addr,
        ));
    }
    // tokio-postgres's words when the server answers `N` to the SSLRequest under Require.
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    if cause.is_some_and(|c| c.contains("server does not support TLS")) {
        return tls(TlsError::NotOffered {
            setting: TLS_SETTING.to_owned(),
            mode: crate::tls::mode_name(cfg.tls.mode).to_owned(),
            addr: addr.to_owned(),
        });
    }
    CatalogError::Sql { what, source: e }
}

/// Create the publication `FOR ALL TABLES` if it is missing and the config allows it.
///
/// # Errors
/// When the publication is missing and may not be created, or creation fails.
pub async fn ensure_publication(client: &Client, cfg: &PostgresSource) -> Result<(), CatalogError> {
    let rows = client
        .query(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&cfg.publication],
        )
        .await
        .map_err(sql("look up the publication"))?;
    if !rows.is_empty() {
        return Ok(());
    }
    if !cfg.create_publication {
        return Err(CatalogError::Unusable(format!(
            "publication `{}` does not exist and source.postgres.create_publication is false; create it with: CREATE PUBLICATION {} FOR TABLE <mapped tables>",
            cfg.publication,
            ident(&cfg.publication)
        )));
    }
    let stmt = format!(
        "CREATE PUBLICATION {} FOR ALL TABLES",
        ident(&cfg.publication)
    );
    client
        .batch_execute(&stmt)
        .await
        .map_err(sql(format!("create publication `{}`", cfg.publication)))?;
    tracing::info!(publication = %cfg.publication, "created publication for all tables");
    Ok(())
}

/// A mapped table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// Name.
    pub id: TableId,
    /// OID.
    pub oid: u32,
    /// `d`, `n`, `f` or `i`.
    pub replica_identity: u8,
    /// Whether it has a primary key.
    pub has_pk: bool,
    /// Estimated rows (`pg_class.reltuples`, -1 if never analysed).
    pub estimated_rows: i64,
}

/// The tables in the publication that the mappings select, checked for a usable replica
/// identity.
///
/// # Errors
/// One error listing every mapped table without a usable replica identity, with the
/// `ALTER TABLE` that fixes each.
pub async fn mapped_tables(
    client: &Client,
    cfg: &PostgresSource,
    tables: &TableFilter,
) -> Result<Vec<CatalogTable>, CatalogError> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, c.oid, c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                    c.reltuples::bigint \
             FROM pg_publication_tables p \
             JOIN pg_namespace n ON n.nspname = p.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
             WHERE p.pubname = $1 ORDER BY 1, 2",
            &[&cfg.publication],
        )
        .await
        .map_err(sql("list the publication's tables"))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        let id = TableId::new(row.get::<_, String>(0), row.get::<_, String>(1));
        if !tables(&id) {
            continue;
        }
        let ident_kind = row.get::<_, String>(3).bytes().next().unwrap_or(b'd');
        let t = CatalogTable {
            oid: row.get(2),
            replica_identity: ident_kind,
            has_pk: row.get(4),
            estimated_rows: row.get(5),
            id,
        };
        if t.replica_identity == b'n' || (t.replica_identity == b'd' && !t.has_pk) {
            problems.push(format!(
                "table {} has no usable replica identity, so its updates and deletes cannot be captured; fix: ALTER TABLE {}.{} REPLICA IDENTITY FULL (or add a primary key)",
                t.id,
                ident(&t.id.namespace),
                ident(&t.id.name)
            ));
        }
        out.push(t);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(CatalogError::Unusable(problems.join("\n")))
    }
}

/// Column facts pgoutput does not send.
#[derive(Debug, Clone, Default)]
pub struct ColumnFacts {
    /// Column name -> NOT NULL.
    pub not_null: HashMap<String, bool>,
    /// Primary-key column names, in key order.
    pub primary_key: Vec<String>,
}

/// Nullability and primary key of a relation.
///
/// # Errors
/// When the catalog query fails.
pub async fn column_facts(client: &Client, relid: u32) -> Result<ColumnFacts, CatalogError> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.attnotnull, \
                    COALESCE(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0) \
             FROM pg_attribute a \
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&relid],
        )
        .await
        .map_err(sql(format!("read the columns of relation {relid}")))?;
    let mut facts = ColumnFacts::default();
    let mut pk: Vec<(i32, String)> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let pos: i32 = row.get(2);
        if pos > 0 {
            pk.push((pos, name.clone()));
        }
        facts.not_null.insert(name, row.get(1));
    }
    pk.sort();
    facts.primary_key = pk.into_iter().map(|(_, n)| n).collect();
    Ok(facts)
}

/// Resolve the types in `oids` that are not built-in (enums, domains, arrays of them, extension
/// types) into `cache`.
///
/// # Errors
/// When the catalog query fails.
pub async fn resolve_types(
    client: &Client,
    cache: &mut TypeCache,
    oids: &[u32],
) -> Result<(), CatalogError> {
    for &oid in oids {
        if cache.get(oid).is_some() {
            continue;
        }
        let info = lookup_type(client, cache, oid, 0).await?;
        cache.insert(oid, info);
    }
    Ok(())
}

async fn lookup_type(
    client: &Client,
    cache: &TypeCache,
    oid: u32,
    depth: u8,
) -> Result<TypeInfo, CatalogError> {
    if let Some(t) = cache.get(oid).or_else(|| builtin(oid)) {
        return Ok(t);
    }
    let row = client
        .query_opt(
            "SELECT t.typname::text, t.typtype::text, t.typbasetype, t.typelem, t.typcategory::text, \
                    COALESCE((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '{}'), \
                    t.typtypmod, \
                    COALESCE((SELECT e.typarray = t.oid AND e.typdelim = ',' FROM pg_type e WHERE e.oid = t.typelem), false) \
             FROM pg_type t WHERE t.oid = $1",
            &[&oid],
        )
        .await
        .map_err(sql(format!("look up type {oid}")))?;
    let Some(row) = row else {
        return Ok(TypeInfo::other(format!("type {oid}")));
    };
    let name: String = row.get(0);
    let typtype: String = row.get(1);
    let base: u32 = row.get(2);
    let elem: u32 = row.get(3);
    let category: String = row.get(4);
    let labels: Vec<String> = row.get(5);
    let typmod: i32 = row.get(6);
    // A true array of its element type, printed with `,` between elements (not `box[]`, whose
    // elements are separated by `;`, nor `int2vector`, which prints without braces).
    let comma_array: bool = row.get(7);
    if depth > 4 {
        return Ok(TypeInfo::other(name));
    }
    Ok(match (typtype.as_str(), category.as_str()) {
        ("e", _) => TypeInfo {
            ty: PgType::Enum,
            name,
            labels,
            typmod: -1,
        },
        ("d", _) => {
            let b = Box::pin(lookup_type(client, cache, base, depth + 1)).await?;
            TypeInfo {
                name,
                typmod: if typmod >= 0 { typmod } else { b.typmod },
                ..b
            }
        }
        (_, "A") if elem != 0 && comma_array => {
            let e = Box::pin(lookup_type(client, cache, elem, depth + 1)).await?;
            TypeInfo {
                ty: PgType::Array(Box::new(e.ty)),
                name: format!("{}[]", e.name),
                labels: e.labels,
                typmod: e.typmod,
            }
        }
        ("b", "A") if elem != 0 => {
            // Not a comma-separated array: pass the text through, under the element's name.
            let e = Box::pin(lookup_type(client, cache, elem, depth + 1)).await?;
            let display = if name.starts_with('_') {
                format!("{}[]", e.name)
            } else {
                name
            };
            TypeInfo::other(display)
        }
        _ => TypeInfo::other(name),
    })
}
