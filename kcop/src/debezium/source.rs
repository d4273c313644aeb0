//! The envelope's `source` block, per connector.

use super::{DebeziumKcop, int, push, text};
use crate::change::Op;
use crate::kcop::{Operation, SourceInfo};
use crate::position::Position;

pub(super) fn source_block(out: &mut Vec<u8>, k: &DebeziumKcop, op: &Operation<'_>) {
    let s = op.source;
    push(out, "{\"version\":");
    text(out, &k.config.version);
    push(out, ",\"connector\":");
    text(out, s.connector);
    push(out, ",\"name\":");
    text(out, &s.name);
    push(out, ",\"ts_ms\":");
    int(out, op.txn.commit_time.as_millis());
    push(
        out,
        if op.change.op == Op::Read {
            ",\"snapshot\":\"true\""
        } else {
            ",\"snapshot\":\"false\""
        },
    );
    if s.connector == "postgresql" {
        pg_source(out, s, op);
    } else {
        mysql_source(out, op);
    }
    push(out, "}");
}

fn pg_source(out: &mut Vec<u8>, s: &SourceInfo, op: &Operation<'_>) {
    let lsn = match &op.txn.position {
        Some(Position::Postgres(l)) => Some(l.0),
        _ => None,
    };
    push(out, ",\"db\":");
    text(out, &s.database);
    push(out, ",\"sequence\":");
    match lsn {
        Some(l) => text(out, &format!("[null,\"{l}\"]")),
        None => push(out, "null"),
    }
    push(out, ",\"schema\":");
    text(out, &op.change.table.id.namespace);
    push(out, ",\"table\":");
    text(out, &op.change.table.id.name);
    push(out, ",\"txId\":");
    push(
        out,
        &op.txn
            .id
            .parse::<u64>()
            .map_or("null".to_owned(), |x| x.to_string()),
    );
    push(out, ",\"lsn\":");
    push(out, &lsn.map_or("null".to_owned(), |x| x.to_string()));
    push(out, ",\"xmin\":null");
}

fn mysql_source(out: &mut Vec<u8>, op: &Operation<'_>) {
    // The transaction id is the GTID, except for snapshot batches (`snapshot:..`).
    let gtid = Some(&*op.txn.id).filter(|id| !id.starts_with("snapshot:"));
    let mariadb: Option<crate::position::Gtid> = gtid.and_then(|g| g.parse().ok());
    let (file, pos) = match &op.txn.position {
        Some(Position::MySql { coord, .. }) => (coord.file.as_str(), coord.pos),
        _ => ("", 0),
    };
    push(out, ",\"db\":");
    text(out, &op.change.table.id.namespace);
    push(out, ",\"sequence\":null,\"table\":");
    text(out, &op.change.table.id.name);
    push(out, ",\"server_id\":");
    int(out, mariadb.map_or(0, |g| i64::from(g.server_id)));
    push(out, ",\"gtid\":");
    match gtid {
        Some(g) => text(out, g),
        None => push(out, "null"),
    }
    push(out, ",\"file\":");
    text(out, file);
    push(out, ",\"pos\":");
    push(out, itoa::Buffer::new().format(pos));
    push(out, ",\"row\":0,\"thread\":null,\"query\":null");
}
