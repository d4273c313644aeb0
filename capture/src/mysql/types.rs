//! Column types: the binlog's type codes and metadata, and the catalog's declared types, to
//! the model's [`ColumnKind`]s, type names and row decoders.

use ordo_kcop::{Column, ColumnKind, TableId};

use super::catalog::{self, CatalogColumn};
use super::charset::{Charset, Collations};
use super::error::MysqlSourceError;
use super::table_map::{MapColumn, ty};
use super::values::{ColumnDecoder, StrAs};

/// Type mapping with the server's collations at hand.
#[derive(Debug)]
pub(crate) struct ColumnTypes {
    collations: Collations,
}

pub(crate) fn table_error(
    id: &TableId,
    reason: impl Into<String>,
    fix: impl Into<String>,
) -> MysqlSourceError {
    MysqlSourceError::Table {
        table: id.to_string(),
        reason: reason.into(),
        fix: fix.into(),
    }
}

impl ColumnTypes {
    pub(crate) fn new(collations: Collations) -> Self {
        Self { collations }
    }

    /// The character set of a collation id.
    pub(crate) fn charset_of_id(
        &self,
        id: &TableId,
        column: &str,
        coll: u16,
    ) -> Result<Charset, MysqlSourceError> {
        let name = self.collations.charset_of_id(coll).ok_or_else(|| {
            table_error(id, format!("column `{column}` uses collation id {coll}, unknown to the server's information_schema"), "report this as a bug")
        })?;
        charset_named(id, column, name)
    }

    /// The character set of a collation name.
    pub(crate) fn charset_of_name(
        &self,
        id: &TableId,
        column: &str,
        coll: &str,
    ) -> Result<Charset, MysqlSourceError> {
        let name = self.collations.charset_of_name(coll).ok_or_else(|| {
            table_error(
                id,
                format!("column `{column}` uses collation `{coll}`, unknown to the server"),
                "report this as a bug",
            )
        })?;
        charset_named(id, column, name)
    }

    /// A table map column as the binlog alone describes it, with its decoder.
    pub(crate) fn binlog_column(
        &self,
        id: &TableId,
        c: &MapColumn,
    ) -> Result<(Column, ColumnDecoder), MysqlSourceError> {
        let name = c.name.clone().unwrap_or_default();
        let typed = match c.ty {
            ty::VARCHAR | ty::VAR_STRING | ty::STRING => Some(self.string(id, &name, c)?),
            ty::BLOB | ty::TINY_BLOB | ty::MEDIUM_BLOB | ty::LONG_BLOB | ty::GEOMETRY => {
                Some(self.blob(id, &name, c)?)
            }
            ty::ENUM | ty::SET => Some(self.enum_or_set(id, &name, c)?),
            _ => numeric(c).or_else(|| temporal(c)),
        };
        let Some((type_name, kind, dec)) = typed else {
            return Err(table_error(
                id,
                format!(
                    "column `{name}` has binlog type {}, which ordo does not decode",
                    c.ty
                ),
                "change the column's type or leave the table unmapped",
            ));
        };
        let nullable = c.nullable;
        Ok((
            Column {
                name,
                type_name,
                kind,
                nullable,
            },
            dec,
        ))
    }

    fn charset(
        &self,
        id: &TableId,
        name: &str,
        c: &MapColumn,
    ) -> Result<Charset, MysqlSourceError> {
        match c.collation {
            Some(coll) => self.charset_of_id(id, name, coll),
            None => Err(table_error(
                id,
                format!("column `{name}` has no character set in the table map"),
                "set binlog_row_metadata=FULL",
            )),
        }
    }

    /// CHAR, VARCHAR, BINARY, VARBINARY: a 1- or 2-byte length (by the maximum byte length).
    fn string(&self, id: &TableId, name: &str, c: &MapColumn) -> Result<Typed, MysqlSourceError> {
        let cs = self.charset(id, name, c)?;
        let fixed = c.ty == ty::STRING;
        let (t, kind, out) = match (cs, fixed) {
            (Charset::Binary, true) => (
                format!("binary({})", c.meta),
                ColumnKind::Bytes,
                StrAs::Bytes,
            ),
            (Charset::Binary, false) => (
                format!("varbinary({})", c.meta),
                ColumnKind::Bytes,
                StrAs::Bytes,
            ),
            (cs, true) => ("char".to_owned(), ColumnKind::Text, StrAs::Text(cs)),
            (cs, false) => ("varchar".to_owned(), ColumnKind::Text, StrAs::Text(cs)),
        };
        let len_bytes = if c.meta < 256 { 1 } else { 2 };
        // The server strips trailing 0x00 from fixed binary values; put them back.
        let pad_to = (fixed && cs == Charset::Binary).then_some(c.meta);
        Ok((
            t,
            kind,
            ColumnDecoder::Str {
                len_bytes,
                pad_to,
                out,
            },
        ))
    }

    /// BLOB, TEXT (and MariaDB's JSON, a LONGTEXT), GEOMETRY: a length of 1 to 4 bytes.
    fn blob(&self, id: &TableId, name: &str, c: &MapColumn) -> Result<Typed, MysqlSourceError> {
        let size = ["tiny", "", "medium", "long"].get(usize::from(c.meta).wrapping_sub(1));
        let Some(size) = size else {
            let reason = format!("column `{name}` has blob length size {}", c.meta);
            return Err(table_error(id, reason, "report this as a bug"));
        };
        let (t, kind, out) = if c.ty == ty::GEOMETRY {
            ("geometry".to_owned(), ColumnKind::Bytes, StrAs::Bytes)
        } else {
            match self.charset(id, name, c)? {
                Charset::Binary => (format!("{size}blob"), ColumnKind::Bytes, StrAs::Bytes),
                cs => (format!("{size}text"), ColumnKind::Text, StrAs::Text(cs)),
            }
        };
        let dec = ColumnDecoder::Str {
            len_bytes: c.meta as u8,
            pad_to: None,
            out,
        };
        Ok((t, kind, dec))
    }

    /// ENUM and SET, with their labels in the column's character set.
    fn enum_or_set(
        &self,
        id: &TableId,
        name: &str,
        c: &MapColumn,
    ) -> Result<Typed, MysqlSourceError> {
        let cs = self.charset(id, name, c)?;
        let bad = || {
            table_error(
                id,
                format!("a label of column `{name}` is not valid text"),
                "report this as a bug",
            )
        };
        let labels: Vec<String> = c
            .labels
            .iter()
            .map(|l| cs.decode(l).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        let len = (c.meta & 0xff) as u8;
        Ok(if c.ty == ty::ENUM {
            (
                "enum".into(),
                ColumnKind::Enum(labels.clone()),
                ColumnDecoder::Enum {
                    len,
                    labels: labels.into(),
                },
            )
        } else {
            (
                "set".into(),
                ColumnKind::Set(labels.clone()),
                ColumnDecoder::Set {
                    len,
                    labels: labels.into(),
                },
            )
        })
    }

    /// The kind of a catalog column.
    pub(crate) fn catalog_kind(
        &self,
        id: &TableId,
        c: &CatalogColumn,
    ) -> Result<ColumnKind, MysqlSourceError> {
        let unsigned = c.column_type.contains("unsigned");
        let int = |bits| {
            if unsigned {
                ColumnKind::UInt(bits)
            } else {
                ColumnKind::Int(bits)
            }
        };
        let text = || -> Result<ColumnKind, MysqlSourceError> {
            let cs = match &c.collation {
                Some(coll) => self.charset_of_name(id, &c.name, coll)?,
                None => Charset::Binary,
            };
            Ok(match cs {
                Charset::Binary => ColumnKind::Bytes,
                _ if c.json => ColumnKind::Json,
                _ => ColumnKind::Text,
            })
        };
        Ok(match c.data_type.as_str() {
            "tinyint" => int(8),
            "smallint" => int(16),
            "mediumint" => int(24),
            "int" | "integer" => int(32),
            "bigint" => int(64),
            "year" => ColumnKind::Int(16),
            "float" => ColumnKind::Float32,
            "double" | "real" => ColumnKind::Float64,
            "decimal" | "numeric" => ColumnKind::Decimal {
                precision: c.precision,
                scale: c.scale,
            },
            "date" => ColumnKind::Date,
            "time" => ColumnKind::Time,
            "datetime" => ColumnKind::Timestamp,
            "timestamp" => ColumnKind::TimestampTz,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => text()?,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColumnKind::Bytes
            }
            "enum" => ColumnKind::Enum(catalog::labels(&c.column_type)),
            "set" => ColumnKind::Set(catalog::labels(&c.column_type)),
            "bit" => ColumnKind::Bits,
            "uuid" => ColumnKind::Uuid,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => ColumnKind::Bytes,
            _ => ColumnKind::Other,
        })
    }
}

/// A column's type name, kind and decoder.
type Typed = (String, ColumnKind, ColumnDecoder);

/// Integers, YEAR, FLOAT, DOUBLE, DECIMAL and BIT.
fn numeric(c: &MapColumn) -> Option<Typed> {
    let unsigned = if c.unsigned { " unsigned" } else { "" };
    let int = |len: u8, t: &str| {
        let bits = len * 8;
        let kind = if c.unsigned {
            ColumnKind::UInt(bits)
        } else {
            ColumnKind::Int(bits)
        };
        (
            format!("{t}{unsigned}"),
            kind,
            ColumnDecoder::Int {
                len,
                unsigned: c.unsigned,
            },
        )
    };
    Some(match c.ty {
        ty::TINY => int(1, "tinyint"),
        ty::SHORT => int(2, "smallint"),
        ty::INT24 => int(3, "mediumint"),
        ty::LONG => int(4, "int"),
        ty::LONGLONG => int(8, "bigint"),
        ty::YEAR => ("year".into(), ColumnKind::Int(16), ColumnDecoder::Year),
        ty::FLOAT => ("float".into(), ColumnKind::Float32, ColumnDecoder::Float),
        ty::DOUBLE => ("double".into(), ColumnKind::Float64, ColumnDecoder::Double),
        ty::NEWDECIMAL => {
            let (p, s) = ((c.meta >> 8) as u8, (c.meta & 0xff) as u8);
            let kind = ColumnKind::Decimal {
                precision: Some(p.into()),
                scale: Some(s.into()),
            };
            let dec = ColumnDecoder::Decimal {
                precision: p,
                scale: s,
            };
            (format!("decimal({p},{s}){unsigned}"), kind, dec)
        }
        ty::BIT => {
            // Metadata: bits beyond whole bytes, then whole bytes.
            let bits = (c.meta & 0xff) * 8 + (c.meta >> 8);
            (
                format!("bit({bits})"),
                ColumnKind::Bits,
                ColumnDecoder::Bit { bits },
            )
        }
        _ => return None,
    })
}

/// DATE, TIME, DATETIME, TIMESTAMP in both the old and the fractional-second forms.
fn temporal(c: &MapColumn) -> Option<Typed> {
    let fsp = c.meta as u8;
    let name = |t: &str| {
        if fsp == 0 {
            t.to_owned()
        } else {
            format!("{t}({fsp})")
        }
    };
    Some(match c.ty {
        ty::NEWDATE => ("date".into(), ColumnKind::Date, ColumnDecoder::Date),
        ty::TIME => ("time".into(), ColumnKind::Time, ColumnDecoder::Time),
        ty::TIME2 => (name("time"), ColumnKind::Time, ColumnDecoder::Time2 { fsp }),
        ty::DATETIME => (
            "datetime".into(),
            ColumnKind::Timestamp,
            ColumnDecoder::DateTime,
        ),
        ty::DATETIME2 => (
            name("datetime"),
            ColumnKind::Timestamp,
            ColumnDecoder::DateTime2 { fsp },
        ),
        ty::TIMESTAMP => (
            "timestamp".into(),
            ColumnKind::TimestampTz,
            ColumnDecoder::Timestamp,
        ),
        ty::TIMESTAMP2 => (
            name("timestamp"),
            ColumnKind::TimestampTz,
            ColumnDecoder::Timestamp2 { fsp },
        ),
        _ => return None,
    })
}

/// The catalog's column in place of the binlog's, when both describe the same column.
pub(crate) fn refine(
    col: &Column,
    dec: &ColumnDecoder,
    cc: &CatalogColumn,
) -> Option<(Column, ColumnDecoder)> {
    if col.name != cc.name || col.nullable != cc.nullable {
        return None;
    }
    let mut dec = dec.clone();
    let kind = match (&mut dec, cc.data_type.as_str()) {
        (
            ColumnDecoder::Str {
                pad_to: Some(16),
                out: out @ StrAs::Bytes,
                ..
            },
            "uuid",
        ) => {
            *out = StrAs::Uuid;
            ColumnKind::Uuid
        }
        (
            ColumnDecoder::Str {
                pad_to: Some(16),
                out: out @ StrAs::Bytes,
                ..
            },
            "inet6",
        ) => {
            *out = StrAs::Inet6;
            ColumnKind::Other
        }
        (
            ColumnDecoder::Str {
                out: out @ StrAs::Text(_),
                ..
            },
            _,
        ) if cc.json => {
            if let StrAs::Text(cs) = *out {
                *out = StrAs::Json(cs);
            }
            ColumnKind::Json
        }
        _ => col.kind.clone(),
    };
    if !same_family(&kind, cc) {
        return None;
    }
    Some((
        Column {
            name: col.name.clone(),
            type_name: cc.column_type.clone(),
            kind,
            nullable: col.nullable,
        },
        dec,
    ))
}

/// Whether the binlog's kind is what the catalog's declared type would give.
fn same_family(kind: &ColumnKind, cc: &CatalogColumn) -> bool {
    let unsigned = cc.column_type.contains("unsigned");
    let t = cc.data_type.as_str();
    match kind {
        ColumnKind::Int(16) if t == "year" => true,
        ColumnKind::Int(b) | ColumnKind::UInt(b) => {
            let want = match t {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "int" | "integer" => 32,
                "bigint" => 64,
                _ => return false,
            };
            *b == want && matches!(kind, ColumnKind::UInt(_)) == unsigned
        }
        ColumnKind::Decimal { precision, scale } => {
            matches!(t, "decimal" | "numeric") && *precision == cc.precision && *scale == cc.scale
        }
        ColumnKind::Enum(l) => t == "enum" && *l == catalog::labels(&cc.column_type),
        ColumnKind::Set(l) => t == "set" && *l == catalog::labels(&cc.column_type),
        ColumnKind::Float32 => t == "float",
        ColumnKind::Float64 => matches!(t, "double" | "real"),
        ColumnKind::Date => t == "date",
        ColumnKind::Time => t == "time",
        ColumnKind::Timestamp => t == "datetime",
        ColumnKind::TimestampTz => t == "timestamp",
        ColumnKind::Bits => t == "bit",
        ColumnKind::Uuid => t == "uuid",
        ColumnKind::Other => t == "inet6",
        ColumnKind::Json => cc.json,
        ColumnKind::Text => matches!(
            t,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
        ),
        ColumnKind::Bytes => !matches!(
            t,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "uuid" | "inet6"
        ),
        _ => false,
    }
}

fn charset_named(id: &TableId, column: &str, name: &str) -> Result<Charset, MysqlSourceError> {
    Charset::from_name(name).ok_or_else(|| {
        table_error(
            id,
            format!("column `{column}` uses character set `{name}`, which ordo does not decode yet"),
            format!("convert it, e.g. ALTER TABLE {} MODIFY {} ... CHARACTER SET utf8mb4, or leave the table unmapped", id, catalog::ident(column)),
        )
    })
}
