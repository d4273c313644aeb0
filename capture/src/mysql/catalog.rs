//! What `information_schema` says about tables, columns and collations.
//!
//! The binlog's table map gives the physical layout; the catalog adds what it cannot say: the
//! exact declared type (`int(10) unsigned`, `uuid`, `json`), so the two agree whenever the
//! table has not changed since the logged event.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use ordo_kcop::TableId;

use super::charset::Collations;

/// One column as the catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogColumn {
    pub(crate) name: String,
    /// `DATA_TYPE`, lower case: `int`, `varchar`, `uuid`, `longtext`...
    pub(crate) data_type: String,
    /// `COLUMN_TYPE`: `int(10) unsigned`, `enum('a','b')`...
    pub(crate) column_type: String,
    pub(crate) nullable: bool,
    /// Collation name of character, ENUM and SET columns.
    pub(crate) collation: Option<String>,
    pub(crate) precision: Option<u32>,
    pub(crate) scale: Option<u32>,
    /// A `CHECK (json_valid(col))` constraint makes a `LONGTEXT` a `JSON` column.
    pub(crate) json: bool,
}

/// A table as the catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogTable {
    pub(crate) columns: Vec<CatalogColumn>,
    /// Primary key column indexes, in key order.
    pub(crate) primary_key: Vec<usize>,
    /// Storage engine (`InnoDB`, `Aria`...).
    pub(crate) engine: String,
}

type Result<T> = std::result::Result<T, mysql_async::Error>;

/// The table's definition now, or `None` when it does not exist.
pub(crate) async fn load_table(conn: &mut Conn, id: &TableId) -> Result<Option<CatalogTable>> {
    let key = (id.namespace.as_str(), id.name.as_str());
    let engine: Option<Option<String>> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            key,
        )
        .await?;
    let Some(engine) = engine else {
        return Ok(None);
    };
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME, \
             NUMERIC_PRECISION, NUMERIC_SCALE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            key,
        )
        .await?;
    let mut columns: Vec<CatalogColumn> = rows.into_iter().filter_map(column).collect();
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            key,
        )
        .await?;
    let checks: Vec<(String, String)> = conn
        .exec(
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? AND LEVEL = 'Column'",
            key,
        )
        .await?;
    for c in &mut columns {
        c.json = checks.iter().any(|(name, clause)| {
            *name == c.name
                && clause.replace(' ', "") == format!("json_valid(`{}`)", c.name.replace('`', "``"))
        });
    }
    let primary_key = pk
        .iter()
        .filter_map(|n| columns.iter().position(|c| c.name == *n))
        .collect();
    Ok(Some(CatalogTable {
        columns,
        primary_key,
        engine: engine.unwrap_or_default(),
    }))
}

fn column(row: Row) -> Option<CatalogColumn> {
    type Cols = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<u64>,
        Option<u64>,
    );
    let (name, data_type, column_type, nullable, collation, precision, scale): Cols =
        mysql_async::from_row_opt(row).ok()?;
    Some(CatalogColumn {
        name,
        data_type: data_type.to_ascii_lowercase(),
        column_type,
        nullable: nullable == "YES",
        collation,
        precision: precision.and_then(|p| u32::try_from(p).ok()),
        scale: scale.and_then(|s| u32::try_from(s).ok()),
        json: false,
    })
}

/// Every collation the server knows, with its character set.
pub(crate) async fn collations(conn: &mut Conn) -> Result<Collations> {
    let full: Result<Vec<(u64, String, String)>> = conn
        .query(
            "SELECT ID, FULL_COLLATION_NAME, CHARACTER_SET_NAME \
             FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL",
        )
        .await;
    let rows = match full {
        Ok(rows) => rows,
        // Before MariaDB 10.10 the applicability table has no ids.
        Err(mysql_async::Error::Server(_)) => {
            conn.query(
                "SELECT ID, COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS \
                 WHERE ID IS NOT NULL AND CHARACTER_SET_NAME IS NOT NULL",
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    Ok(Collations::new(rows.into_iter().filter_map(
        |(id, name, cs)| Some((u16::try_from(id).ok()?, name, cs)),
    )))
}

/// Base tables of the configured databases (all but the system ones when none are listed).
pub(crate) async fn list_tables(conn: &mut Conn, databases: &[String]) -> Result<Vec<TableId>> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(db, _)| databases.is_empty() || databases.contains(db))
        .map(|(db, t)| TableId::new(db, t))
        .collect())
}

/// Quote an identifier for SQL.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quote a string literal for SQL.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The labels of an `enum('a','b''c')` or `set(...)` column type.
pub(crate) fn labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        label.push(n);
                    }
                }
                _ => label.push(c),
            }
        }
        out.push(label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_labels_unquote() {
        assert_eq!(labels("enum('a','b''c','d,e')"), ["a", "b'c", "d,e"]);
        assert_eq!(labels("set('')"), [""]);
        assert!(labels("int(11)").is_empty());
        assert_eq!(ident("a`b"), "`a``b`");
    }
}
