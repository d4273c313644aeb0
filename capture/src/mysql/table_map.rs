//! TABLE_MAP events: a table's binlog column layout and, with `binlog_row_metadata=FULL`, its
//! column names, signedness, character sets, ENUM/SET labels and primary key.
//!
//! Parsed by hand from the event bytes: the optional metadata's per-kind lists are indexed by
//! MariaDB's own rules (signedness covers TINYINT..BIGINT, FLOAT, DOUBLE, DECIMAL and YEAR;
//! character sets cover CHAR, VARCHAR, BLOB/TEXT and GEOMETRY, ENUM and SET apart), which a
//! MySQL-oriented parser gets wrong.

use super::wire::{Reader, Short};

/// Binlog column type codes (`enum_field_types`).
pub(crate) mod ty {
    pub(crate) const DECIMAL: u8 = 0;
    pub(crate) const TINY: u8 = 1;
    pub(crate) const SHORT: u8 = 2;
    pub(crate) const LONG: u8 = 3;
    pub(crate) const FLOAT: u8 = 4;
    pub(crate) const DOUBLE: u8 = 5;
    pub(crate) const TIMESTAMP: u8 = 7;
    pub(crate) const LONGLONG: u8 = 8;
    pub(crate) const INT24: u8 = 9;
    pub(crate) const DATE: u8 = 10;
    pub(crate) const TIME: u8 = 11;
    pub(crate) const DATETIME: u8 = 12;
    pub(crate) const YEAR: u8 = 13;
    pub(crate) const NEWDATE: u8 = 14;
    pub(crate) const VARCHAR: u8 = 15;
    pub(crate) const BIT: u8 = 16;
    pub(crate) const TIMESTAMP2: u8 = 17;
    pub(crate) const DATETIME2: u8 = 18;
    pub(crate) const TIME2: u8 = 19;
    pub(crate) const JSON: u8 = 245;
    pub(crate) const NEWDECIMAL: u8 = 246;
    pub(crate) const ENUM: u8 = 247;
    pub(crate) const SET: u8 = 248;
    pub(crate) const TINY_BLOB: u8 = 249;
    pub(crate) const MEDIUM_BLOB: u8 = 250;
    pub(crate) const LONG_BLOB: u8 = 251;
    pub(crate) const BLOB: u8 = 252;
    pub(crate) const VAR_STRING: u8 = 253;
    pub(crate) const STRING: u8 = 254;
    pub(crate) const GEOMETRY: u8 = 255;
}

/// One column as the table map describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapColumn {
    /// The real type: ENUM and SET (sent as STRING) are resolved.
    pub(crate) ty: u8,
    /// Type metadata: pack length, max length, precision/scale, fsp, bit length.
    pub(crate) meta: u16,
    pub(crate) nullable: bool,
    /// Name, when the server logs names.
    pub(crate) name: Option<String>,
    /// Unsigned, for numeric columns, when logged.
    pub(crate) unsigned: bool,
    /// Collation id for character, ENUM and SET columns, when logged.
    pub(crate) collation: Option<u16>,
    /// ENUM or SET labels as raw bytes in the column's character set.
    pub(crate) labels: Vec<Vec<u8>>,
}

/// A parsed TABLE_MAP event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMap {
    pub(crate) table_id: u64,
    pub(crate) database: String,
    pub(crate) table: String,
    pub(crate) columns: Vec<MapColumn>,
    /// Primary key column indexes, in key order (empty when there is none or it is not logged).
    pub(crate) primary_key: Vec<usize>,
    /// Whether column names were logged (`binlog_row_metadata=FULL`).
    pub(crate) has_names: bool,
}

/// The database and table names of a TABLE_MAP event, cheaply, to decide whether to parse it.
pub(crate) fn names(data: &[u8], id_len: usize) -> Result<(u64, &[u8], &[u8]), Short> {
    let mut r = Reader::new(data);
    let table_id = r.uint_le(id_len)?;
    r.skip(2)?;
    let db_len = usize::from(r.u8()?);
    let db = r.take(db_len)?;
    r.skip(1)?;
    let t_len = usize::from(r.u8()?);
    let table = r.take(t_len)?;
    Ok((table_id, db, table))
}

fn is_numeric(t: u8) -> bool {
    matches!(
        t,
        ty::TINY
            | ty::SHORT
            | ty::INT24
            | ty::LONG
            | ty::LONGLONG
            | ty::FLOAT
            | ty::DOUBLE
            | ty::NEWDECIMAL
            | ty::DECIMAL
            | ty::YEAR
    )
}

fn is_character(t: u8) -> bool {
    matches!(
        t,
        ty::STRING
            | ty::VAR_STRING
            | ty::VARCHAR
            | ty::BLOB
            | ty::TINY_BLOB
            | ty::MEDIUM_BLOB
            | ty::LONG_BLOB
            | ty::GEOMETRY
    )
}

fn meta_len(t: u8) -> usize {
    match t {
        ty::FLOAT
        | ty::DOUBLE
        | ty::BLOB
        | ty::TINY_BLOB
        | ty::MEDIUM_BLOB
        | ty::LONG_BLOB
        | ty::GEOMETRY
        | ty::JSON
        | ty::TIME2
        | ty::DATETIME2
        | ty::TIMESTAMP2 => 1,
        ty::VARCHAR
        | ty::VAR_STRING
        | ty::BIT
        | ty::NEWDECIMAL
        | ty::STRING
        | ty::ENUM
        | ty::SET => 2,
        _ => 0,
    }
}

/// Optional metadata field types.
mod opt {
    pub(super) const SIGNEDNESS: u8 = 1;
    pub(super) const DEFAULT_CHARSET: u8 = 2;
    pub(super) const COLUMN_CHARSET: u8 = 3;
    pub(super) const COLUMN_NAME: u8 = 4;
    pub(super) const SET_STR_VALUE: u8 = 5;
    pub(super) const ENUM_STR_VALUE: u8 = 6;
    pub(super) const SIMPLE_PRIMARY_KEY: u8 = 8;
    pub(super) const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
    pub(super) const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;
    pub(super) const ENUM_AND_SET_COLUMN_CHARSET: u8 = 11;
}

/// Parse a TABLE_MAP event body (`id_len` is 6, or 4 for very old servers).
pub(crate) fn parse(data: &[u8], id_len: usize) -> Result<TableMap, Short> {
    let mut r = Reader::new(data);
    let table_id = r.uint_le(id_len)?;
    r.skip(2)?;
    let db_len = usize::from(r.u8()?);
    let database = String::from_utf8_lossy(r.take(db_len)?).into_owned();
    r.skip(1)?;
    let t_len = usize::from(r.u8()?);
    let table = String::from_utf8_lossy(r.take(t_len)?).into_owned();
    r.skip(1)?;
    let n = r.lenenc_usize()?;
    let types = r.take(n)?;
    let meta_block = r.lenenc_bytes()?;
    let nulls = r.take(n.div_ceil(8))?;
    let mut meta = Reader::new(meta_block);
    let mut columns = Vec::with_capacity(n);
    for (i, &t) in types.iter().enumerate() {
        let (ty, m) = column_meta(t, &mut meta)?;
        columns.push(MapColumn {
            ty,
            meta: m,
            nullable: nulls[i / 8] & (1 << (i % 8)) != 0,
            name: None,
            unsigned: false,
            collation: None,
            labels: Vec::new(),
        });
    }
    let mut map = TableMap {
        table_id,
        database,
        table,
        columns,
        primary_key: Vec::new(),
        has_names: false,
    };
    optional_metadata(&mut map, &mut r)?;
    Ok(map)
}

/// Read one column's metadata and resolve STRING into ENUM/SET/STRING with its length.
fn column_meta(t: u8, meta: &mut Reader<'_>) -> Result<(u8, u16), Short> {
    let raw = meta.take(meta_len(t))?;
    let m = match raw {
        [] => 0,
        [a] => u16::from(*a),
        [a, b] => match t {
            // VARCHAR max length and BIT are little-endian; the rest are byte pairs.
            ty::VARCHAR | ty::VAR_STRING => u16::from_le_bytes([*a, *b]),
            _ => u16::from_be_bytes([*a, *b]),
        },
        _ => return Err(Short("column metadata too long")),
    };
    if t != ty::STRING {
        let t = if t == ty::DATE { ty::NEWDATE } else { t };
        return Ok((t, m));
    }
    let (b0, b1) = ((m >> 8) as u8, (m & 0xff) as u8);
    if b0 & 0x30 != 0x30 {
        // A CHAR longer than 255 bytes keeps the high bits of its length in the type byte.
        let len = u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4);
        return Ok((b0 | 0x30, len));
    }
    Ok((if b0 == 0 { ty::STRING } else { b0 }, u16::from(b1)))
}

fn optional_metadata(map: &mut TableMap, r: &mut Reader<'_>) -> Result<(), Short> {
    while !r.is_empty() {
        let kind = r.u8()?;
        let mut v = Reader::new(r.lenenc_bytes()?);
        match kind {
            opt::SIGNEDNESS => signedness(map, v.rest()),
            opt::DEFAULT_CHARSET => default_charset(map, &mut v, is_character)?,
            opt::COLUMN_CHARSET => column_charset(map, &mut v, is_character)?,
            opt::ENUM_AND_SET_DEFAULT_CHARSET => default_charset(map, &mut v, is_enum_or_set)?,
            opt::ENUM_AND_SET_COLUMN_CHARSET => column_charset(map, &mut v, is_enum_or_set)?,
            opt::COLUMN_NAME => {
                for c in &mut map.columns {
                    c.name = Some(String::from_utf8_lossy(v.lenenc_bytes()?).into_owned());
                }
                map.has_names = true;
            }
            opt::SET_STR_VALUE => labels(map, &mut v, ty::SET)?,
            opt::ENUM_STR_VALUE => labels(map, &mut v, ty::ENUM)?,
            opt::SIMPLE_PRIMARY_KEY => {
                while !v.is_empty() {
                    map.primary_key.push(v.lenenc_usize()?);
                }
            }
            opt::PRIMARY_KEY_WITH_PREFIX => {
                while !v.is_empty() {
                    map.primary_key.push(v.lenenc_usize()?);
                    v.lenenc()?;
                }
            }
            _ => {} // geometry types, visibility and future fields: not needed
        }
    }
    if map.primary_key.iter().any(|i| *i >= map.columns.len()) {
        return Err(Short("primary key column index beyond the table's columns"));
    }
    Ok(())
}

fn is_enum_or_set(t: u8) -> bool {
    t == ty::ENUM || t == ty::SET
}

fn signedness(map: &mut TableMap, bits: &[u8]) {
    let numeric = map.columns.iter_mut().filter(|c| is_numeric(c.ty));
    for (i, c) in numeric.enumerate() {
        c.unsigned = bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
    }
}

fn default_charset(
    map: &mut TableMap,
    v: &mut Reader<'_>,
    pick: fn(u8) -> bool,
) -> Result<(), Short> {
    let default = collation(v)?;
    let mut chosen: Vec<&mut MapColumn> = map.columns.iter_mut().filter(|c| pick(c.ty)).collect();
    for c in chosen.iter_mut() {
        c.collation = Some(default);
    }
    while !v.is_empty() {
        let index = v.lenenc_usize()?;
        let coll = collation(v)?;
        let c = chosen
            .get_mut(index)
            .ok_or(Short("charset for a column that does not exist"))?;
        c.collation = Some(coll);
    }
    Ok(())
}

fn column_charset(
    map: &mut TableMap,
    v: &mut Reader<'_>,
    pick: fn(u8) -> bool,
) -> Result<(), Short> {
    for c in map.columns.iter_mut().filter(|c| pick(c.ty)) {
        c.collation = Some(collation(v)?);
    }
    Ok(())
}

fn collation(v: &mut Reader<'_>) -> Result<u16, Short> {
    u16::try_from(v.lenenc()?).map_err(|_| Short("collation id out of range"))
}

fn labels(map: &mut TableMap, v: &mut Reader<'_>, kind: u8) -> Result<(), Short> {
    for c in map.columns.iter_mut().filter(|c| c.ty == kind) {
        let count = v.lenenc_usize()?;
        c.labels = (0..count)
            .map(|_| v.lenenc_bytes().map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The body of a TABLE_MAP event MariaDB 10.11 logged for
    /// `t(id int primary key, y year, u int unsigned, m mediumint, b bit(10), e enum('a','b'),
    /// s set('x','y'), uu uuid, j json, c char(4), bn binary(4))`.
    pub(crate) const EVENT: &str = "17000000000001000770726f62655f78000174000b030d030910fefefefcfefe\
        0d0201f701f801fe1004fe10fe04fe0701016003043f2e2d3f04190269640179\
        0175016d016201650173027575016a016302626e0a012d050502017801790605\
        0201610162080100";

    pub(crate) fn event() -> Vec<u8> {
        let hex: String = EVENT.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(hex).unwrap()
    }

    #[test]
    fn parses_mariadb_full_metadata() {
        let raw = event();
        let (id, db, table) = names(&raw, 6).unwrap();
        assert_eq!((id, db, table), (23, &b"probe_x"[..], &b"t"[..]));
        let m = parse(&raw, 6).unwrap();
        let names: Vec<_> = m.columns.iter().map(|c| c.name.clone().unwrap()).collect();
        assert_eq!(
            names,
            ["id", "y", "u", "m", "b", "e", "s", "uu", "j", "c", "bn"]
        );
        let unsigned: Vec<_> = m.columns.iter().map(|c| c.unsigned).collect();
        assert_eq!(&unsigned[..4], [false, true, true, false]);
        assert_eq!(m.columns[4].meta, 0x0201);
        assert_eq!(m.columns[5].ty, ty::ENUM);
        assert_eq!(m.columns[5].labels, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(m.columns[6].ty, ty::SET);
        assert_eq!(
            (m.columns[7].ty, m.columns[7].meta, m.columns[7].collation),
            (ty::STRING, 16, Some(63))
        );
        assert_eq!(m.columns[8].collation, Some(46));
        assert_eq!(m.columns[9].collation, Some(45));
        assert_eq!(m.columns[5].collation, Some(45));
        assert_eq!(m.primary_key, [0]);
        assert!(!m.columns[0].nullable && m.columns[1].nullable);
    }
}
