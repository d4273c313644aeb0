//! The binlog decoders without a server, for the fuzz targets (`fuzz/`) and tests.
//!
//! Each function decodes what the [`Assembler`](super::txn::Assembler) would, through the same
//! code, and returns a short error text where the assembler returns an error; none of them may
//! panic, loop forever or allocate beyond its input's size, whatever the bytes.

use mysql_async::binlog::BinlogVersion;
use mysql_async::binlog::events::{BinlogEventFooter, Event, FormatDescriptionEvent};
use ordo_kcop::Row;

use super::charset::Collations;
use super::events::{self, kind};
use super::schema::SchemaRegistry;
use super::{gtid, rows, table_map};

/// Post-header lengths of MariaDB 10.11's FORMAT_DESCRIPTION event, by event type - 1.
const MARIADB_POST_HEADERS: [u8; 164] = post_headers();

const fn post_headers() -> [u8; 164] {
    let mut h = [0u8; 164];
    h[kind::QUERY as usize - 1] = 13;
    h[kind::ROTATE as usize - 1] = 8;
    h[kind::FORMAT_DESCRIPTION as usize - 1] = 84;
    h[kind::TABLE_MAP as usize - 1] = 8;
    h[kind::WRITE_ROWS_V1 as usize - 1] = 8;
    h[kind::UPDATE_ROWS_V1 as usize - 1] = 8;
    h[kind::DELETE_ROWS_V1 as usize - 1] = 8;
    h[kind::INCIDENT as usize - 1] = 2;
    h[kind::WRITE_ROWS_V2 as usize - 1] = 10;
    h[kind::UPDATE_ROWS_V2 as usize - 1] = 10;
    h[kind::DELETE_ROWS_V2 as usize - 1] = 10;
    h[kind::ANNOTATE_ROWS as usize - 1] = 0;
    h[kind::BINLOG_CHECKPOINT as usize - 1] = 4;
    h[kind::GTID as usize - 1] = 19;
    h[kind::GTID_LIST as usize - 1] = 4;
    h
}

/// The collations of a MariaDB 10.11 server that the fuzz inputs use: one or more per
/// character set ordo decodes, and one it does not (gbk).
fn collations() -> Collations {
    let rows = [
        (8, "latin1_swedish_ci", "latin1"),
        (11, "ascii_general_ci", "ascii"),
        (28, "gbk_chinese_ci", "gbk"),
        (33, "utf8mb3_general_ci", "utf8mb3"),
        (35, "ucs2_general_ci", "ucs2"),
        (45, "utf8mb4_general_ci", "utf8mb4"),
        (46, "utf8mb4_bin", "utf8mb4"),
        (54, "utf16_general_ci", "utf16"),
        (56, "utf16le_general_ci", "utf16le"),
        (60, "utf32_general_ci", "utf32"),
        (224, "utf8mb4_unicode_ci", "utf8mb4"),
    ];
    Collations::new(
        rows.into_iter()
            .map(|(id, name, cs)| (id, name.to_owned(), cs.to_owned())),
    )
}

/// Frame `body` as a binlog event of type `t` (header, body, and with `crc` a correct CRC32
/// after it) and read it back as the stream does; then decode its body with
/// [`event_body`]. Without `crc`, the body's last four bytes are taken for its checksum.
///
/// # Errors
/// When the checksum or the body is wrong.
pub fn event(t: u8, flags: u16, body: &[u8], crc: bool) -> Result<(), String> {
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4)
        .with_event_type_header_lengths(&MARIADB_POST_HEADERS[..])
        .with_footer(BinlogEventFooter::new(
            mysql_async::binlog::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
        ));
    // A FORMAT_DESCRIPTION would replace this one: not what the stream reader hands on.
    let t = if t == kind::FORMAT_DESCRIPTION { 0 } else { t };
    let mut bytes = Vec::with_capacity(19 + body.len() + 4);
    let size = u32::try_from(19 + body.len() + if crc { 4 } else { 0 })
        .map_err(|_| "event larger than 4 GiB".to_owned())?;
    if size < 23 {
        return Err("event shorter than its header and checksum".into());
    }
    bytes.extend_from_slice(&0u32.to_le_bytes()); // timestamp
    bytes.push(t);
    bytes.extend_from_slice(&1u32.to_le_bytes()); // server id
    bytes.extend_from_slice(&size.to_le_bytes());
    bytes.extend_from_slice(&size.to_le_bytes()); // log position
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(body);
    if crc {
        let sum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
    }
    let ev = Event::read(&fde, &bytes[..]).map_err(|e| e.to_string())?;
    let data = events::payload(&ev)?;
    let post_header = ev
        .fde()
        .event_type_header_lengths()
        .get(usize::from(t).wrapping_sub(1))
        .copied()
        .unwrap_or(0);
    event_body(t, data, usize::from(post_header))
}

/// Decode an event body of type `t` the way the assembler does (ROTATE, GTID, GTID_LIST,
/// QUERY, INCIDENT, TABLE_MAP, rows events without their table; others are not read).
///
/// # Errors
/// When the body is malformed.
pub fn event_body(t: u8, data: &[u8], post_header: usize) -> Result<(), String> {
    let short = |e: super::wire::Short| e.0.to_owned();
    match t {
        kind::ROTATE => events::rotate(data).map(drop).map_err(short),
        kind::GTID => gtid::parse(data, 1).map(drop).map_err(short),
        kind::GTID_LIST => gtid::parse_list(data).map(drop).map_err(short),
        kind::QUERY => {
            let q = events::query(data, post_header).map_err(short)?;
            events::classify(q.sql);
            Ok(())
        }
        kind::INCIDENT => {
            events::incident(data);
            Ok(())
        }
        kind::TABLE_MAP => {
            let id_len = if post_header == 6 { 4 } else { 6 };
            table_map::names(data, id_len).map_err(short)?;
            table_map::parse(data, id_len).map(drop).map_err(short)
        }
        t if rows::is_rows(t) => rows::parse(t, data, post_header).map(drop).map_err(short),
        _ => Ok(()),
    }
}

/// A row change's before and after images.
pub type Images = (Option<Row>, Option<Row>);

/// Compile the TABLE_MAP body `map` (6-byte table ids) and decode the rows event body `data`
/// of type `t` against it, row by row, as the assembler does. Returns the table's column count
/// and the row changes.
///
/// # Errors
/// When the table map cannot be compiled or a row does not decode.
pub fn rows_against(map: &[u8], t: u8, data: &[u8]) -> Result<(usize, Vec<Images>), String> {
    if !rows::is_rows(t) {
        return Err(format!("event type {t} is not a rows event"));
    }
    let mut registry = SchemaRegistry::new(collations());
    let table = registry
        .compile_offline(map, 6)
        .map_err(|e| e.to_string())?;
    let post_header = usize::from(MARIADB_POST_HEADERS[usize::from(t) - 1]);
    let mut ev = rows::parse(t, data, post_header).map_err(|e| e.0.to_owned())?;
    let mut changes = Vec::new();
    while let Some(row) = ev.next_row(&table) {
        changes.push(row.map_err(|e| format!("column {:?}: {}", e.column, e.reason))?);
    }
    Ok((table.decoders.len(), changes))
}
