//! Rows events (WRITE/UPDATE/DELETE, v1 and v2): row images decoded with a compiled table.
//!
//! Layout: table id, flags, (v2: extra data), column count, the columns-present bitmap (two
//! for UPDATE: before and after image), then row images until the end of the event. Each
//! image is a NULL bitmap over the present columns followed by the non-NULL values.

use ordo_kcop::{Op, Row, Value};

use super::events::kind;
use super::schema::CompiledTable;
use super::values::BadValue;
use super::wire::{Reader, Short};

/// The fixed part of a rows event.
#[derive(Debug)]
pub(crate) struct RowsEvent<'a> {
    pub(crate) table_id: u64,
    pub(crate) op: Op,
    width: usize,
    before_cols: &'a [u8],
    after_cols: &'a [u8],
    rows: Reader<'a>,
}

/// A row change's before and after images.
pub(crate) type Images = (Option<Row>, Option<Row>);

/// Where decoding a row failed: the column index (if any) and why.
#[derive(Debug)]
pub(crate) struct RowError {
    pub(crate) column: Option<usize>,
    pub(crate) reason: &'static str,
}

impl From<Short> for RowError {
    fn from(s: Short) -> Self {
        RowError {
            column: None,
            reason: s.0,
        }
    }
}

/// Whether an event type is a rows event ordo reads.
pub(crate) fn is_rows(t: u8) -> bool {
    matches!(
        t,
        kind::WRITE_ROWS_V1
            | kind::UPDATE_ROWS_V1
            | kind::DELETE_ROWS_V1
            | kind::WRITE_ROWS_V2
            | kind::UPDATE_ROWS_V2
            | kind::DELETE_ROWS_V2
    )
}

/// Parse the fixed part of a rows event; `post_header` is its post-header length.
pub(crate) fn parse(t: u8, data: &[u8], post_header: usize) -> Result<RowsEvent<'_>, Short> {
    let mut r = Reader::new(data);
    let table_id = r.uint_le(if post_header == 6 { 4 } else { 6 })?;
    r.skip(2)?; // flags
    if matches!(
        t,
        kind::WRITE_ROWS_V2 | kind::UPDATE_ROWS_V2 | kind::DELETE_ROWS_V2
    ) {
        let extra = usize::from(r.u16()?);
        r.skip(extra.saturating_sub(2))?;
    }
    let width = r.lenenc_usize()?;
    let before_cols = r.take(width.div_ceil(8))?;
    let op = match t {
        kind::WRITE_ROWS_V1 | kind::WRITE_ROWS_V2 => Op::Insert,
        kind::DELETE_ROWS_V1 | kind::DELETE_ROWS_V2 => Op::Delete,
        _ => Op::Update,
    };
    let after_cols = if op == Op::Update {
        r.take(width.div_ceil(8))?
    } else {
        before_cols
    };
    Ok(RowsEvent {
        table_id,
        op,
        width,
        before_cols,
        after_cols,
        rows: r,
    })
}

impl RowsEvent<'_> {
    /// Whether any row images remain.
    pub(crate) fn has_rows(&self) -> bool {
        !self.rows.is_empty()
    }

    /// The next row change as (before, after) images, or `None` at the end.
    pub(crate) fn next_row(&mut self, table: &CompiledTable) -> Option<Result<Images, RowError>> {
        if self.rows.is_empty() {
            return None;
        }
        Some(self.read_change(table))
    }

    fn read_change(&mut self, table: &CompiledTable) -> Result<Images, RowError> {
        if self.width != table.decoders.len() {
            return Err(RowError {
                column: None,
                reason: "the rows event has another column count than its table map",
            });
        }
        let start = self.rows.remaining();
        let images = self.read_images(table)?;
        // Every real image has a NULL bitmap of at least one byte: one that reads nothing
        // would be read again forever.
        if self.rows.remaining() == start {
            return Err(RowError {
                column: None,
                reason: "a row image has no columns present; the rows event is corrupt",
            });
        }
        Ok(images)
    }

    fn read_images(&mut self, table: &CompiledTable) -> Result<Images, RowError> {
        Ok(match self.op {
            Op::Insert => (None, Some(image(&mut self.rows, self.after_cols, table)?)),
            Op::Delete => (Some(image(&mut self.rows, self.before_cols, table)?), None),
            _ => {
                let before = image(&mut self.rows, self.before_cols, table)?;
                (
                    Some(before),
                    Some(image(&mut self.rows, self.after_cols, table)?),
                )
            }
        })
    }
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// One row image: NULL bitmap over the present columns, then their values.
fn image(r: &mut Reader<'_>, present: &[u8], table: &CompiledTable) -> Result<Row, RowError> {
    let width = table.decoders.len();
    let count = (0..width).filter(|i| bit(present, *i)).count();
    let nulls = r.take(count.div_ceil(8))?;
    let mut row = Vec::with_capacity(width);
    let mut k = 0;
    for (i, dec) in table.decoders.iter().enumerate() {
        if !bit(present, i) {
            row.push(Value::NotInImage);
            continue;
        }
        let null = bit(nulls, k);
        k += 1;
        if null {
            row.push(Value::Null);
        } else {
            let v = dec.decode(r).map_err(|BadValue(reason)| RowError {
                column: Some(i),
                reason,
            })?;
            row.push(v);
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use crate::mysql::fuzzing::rows_against;

    /// The TABLE_MAP of `k (a int, b varchar(5))` as MariaDB 10.11 logged it.
    const MAP_K: &str = "50000000000001000e66757a7a736565645f333135353200016b0002030f0214000301010002012d040401610162";

    #[test]
    fn an_image_without_present_columns_is_an_error_not_an_endless_loop() {
        // Found by the `binlog` fuzz target: the columns-present bitmap names only columns
        // beyond the table's two, so each image read zero bytes and the rows never ended.
        let map = hex::decode(MAP_K).unwrap();
        let rows = hex::decode("15000000000001000244ff").unwrap();
        let err = rows_against(&map, 23, &rows).unwrap_err();
        assert!(err.contains("no columns present"), "{err}");
    }

    #[test]
    fn rows_decode_against_their_table_map() {
        let map = hex::decode(MAP_K).unwrap();
        // WRITE_ROWS_V1: table 0x50, flags, 2 columns, both present; (1, 'a') and (2, NULL).
        let rows = hex::decode("500000000000010002ff000100000001610202000000").unwrap();
        let (width, changes) = rows_against(&map, 23, &rows).unwrap();
        assert_eq!((width, changes.len()), (2, 2));
    }
}
