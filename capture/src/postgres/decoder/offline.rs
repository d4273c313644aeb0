//! The decoder's message handling without a server, for the fuzz targets (`fuzz/`) and tests.
//!
//! Relation messages define tables with built-in types only (no catalog lookups), changes
//! decode into rows through the same code as [`Decoder`](super::Decoder), and the messages of a
//! stream chunk are read with their xid, as the decoder reads them back from a spill file.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_kcop::{Row, TableId};

use super::{DecodeError, Relation, relation_shape, row};
use crate::postgres::catalog::ColumnFacts;
use crate::postgres::pgoutput::{PgMessage, parse};
use crate::postgres::types::TypeCache;

/// Decode `frames` (XLogData payloads) in order and return the row images they carry (before,
/// then after, for an update). Stops at the first error, as the decoder does.
///
/// # Errors
/// On a malformed message, a value that does not parse, or a change for a relation that no
/// Relation message defined.
#[doc(hidden)]
pub fn decode_offline<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Row>, DecodeError> {
    let types = TypeCache::default();
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut in_stream = false;
    let mut rows = Vec::new();
    for frame in frames {
        let lookup = |relid: u32| {
            relations.get(&relid).ok_or_else(|| {
                DecodeError::State(format!(
                    "change for relation {relid} before its Relation message"
                ))
            })
        };
        match parse(frame, in_stream)? {
            PgMessage::StreamStart { .. } => in_stream = true,
            PgMessage::StreamStop => in_stream = false,
            PgMessage::Relation {
                relid,
                namespace,
                name,
                replica_identity,
                columns,
                ..
            } => {
                let id = TableId::new(namespace, name);
                let facts = ColumnFacts::default();
                let (schema, types, identity) =
                    relation_shape(&types, id, replica_identity, &columns, &facts);
                let rel = Relation {
                    schema: Arc::new(schema),
                    types,
                    identity,
                    mapped: true,
                };
                relations.insert(relid, rel);
            }
            PgMessage::Insert { relid, new, .. } => rows.push(row(lookup(relid)?, new, None)?),
            PgMessage::Update {
                relid, old, new, ..
            } => {
                let rel = lookup(relid)?;
                if let Some((kind, old)) = old {
                    rows.push(row(rel, old, Some(kind))?);
                }
                rows.push(row(rel, new, None)?);
            }
            PgMessage::Delete {
                relid,
                old: (kind, old),
                ..
            } => rows.push(row(lookup(relid)?, old, Some(kind))?),
            PgMessage::Truncate { relids, .. } => {
                for relid in relids {
                    lookup(relid)?;
                }
            }
            _ => {}
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use ordo_kcop::Value;

    use super::*;

    /// A Relation message for `public.t (id int4 key, v text)`.
    fn relation() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.extend_from_slice(b"public\0t\0d");
        m.extend_from_slice(&2u16.to_be_bytes());
        for (key, name, oid) in [(1u8, "id", 23u32), (0, "v", 25)] {
            m.push(key);
            m.extend_from_slice(name.as_bytes());
            m.push(0);
            m.extend_from_slice(&oid.to_be_bytes());
            m.extend_from_slice(&(-1i32).to_be_bytes());
        }
        m
    }

    fn insert(id: &str) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.push(b'N');
        m.extend_from_slice(&2u16.to_be_bytes());
        m.push(b't');
        m.extend_from_slice(&u32::try_from(id.len()).unwrap().to_be_bytes());
        m.extend_from_slice(id.as_bytes());
        m.push(b'n');
        m
    }

    #[test]
    fn relations_then_changes_decode_to_typed_rows() {
        let frames = [relation(), insert("42")];
        let rows = decode_offline(frames.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(rows, vec![vec![Value::Int(42), Value::Null]]);
    }

    #[test]
    fn a_change_before_its_relation_is_an_error() {
        let err = decode_offline([insert("1").as_slice()]).unwrap_err();
        assert!(err.to_string().contains("before its Relation"), "{err}");
        let bad = [relation(), insert("x")];
        assert!(decode_offline(bad.iter().map(Vec::as_slice)).is_err());
    }
}
