//! MariaDB's GTID events, which start every event group (transaction, DDL, XA phase).

use std::collections::BTreeMap;

use ordo_kcop::{Gtid, GtidSet};

use super::wire::{Reader, Short};

/// Flags of a GTID event (`flags2`).
pub(crate) mod flags {
    /// The group is one statement with no BEGIN/COMMIT (DDL): its QUERY event ends it.
    pub(crate) const STANDALONE: u8 = 0x01;
    /// A commit id follows (group commit).
    pub(crate) const GROUP_COMMIT_ID: u8 = 0x02;
    /// The group is an `XA PREPARE`d transaction (its rows; ended by XA_PREPARE).
    pub(crate) const PREPARED_XA: u8 = 0x40;
    /// The group is the `XA COMMIT` or `XA ROLLBACK` of a prepared transaction.
    pub(crate) const COMPLETED_XA: u8 = 0x80;
}

/// A parsed GTID event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GtidEvent {
    pub(crate) gtid: Gtid,
    pub(crate) flags: u8,
    /// The XA transaction id (format id, gtrid, bqual) of an XA group.
    pub(crate) xid: Option<Vec<u8>>,
}

impl GtidEvent {
    pub(crate) fn standalone(&self) -> bool {
        self.flags & flags::STANDALONE != 0
    }
}

/// Parse a GTID event (type 162): sequence number, domain, flags; the server id is the
/// event header's.
pub(crate) fn parse(data: &[u8], server_id: u32) -> Result<GtidEvent, Short> {
    let mut r = Reader::new(data);
    let seq = r.u64()?;
    let domain = r.u32()?;
    let flags = r.u8()?;
    if flags & flags::GROUP_COMMIT_ID != 0 {
        r.u64()?;
    }
    let xid = if flags & (flags::PREPARED_XA | flags::COMPLETED_XA) != 0 {
        let format = r.take(4)?;
        let gtrid = usize::from(r.u8()?);
        let bqual = usize::from(r.u8()?);
        let mut id = format.to_vec();
        id.extend_from_slice(r.take(gtrid + bqual)?);
        Some(id)
    } else {
        None
    };
    Ok(GtidEvent {
        gtid: Gtid {
            domain,
            server_id,
            seq,
        },
        flags,
        xid,
    })
}

/// Parse a GTID_LIST event (type 163): the binlog state at the start of a binlog file.
pub(crate) fn parse_list(data: &[u8]) -> Result<Vec<Gtid>, Short> {
    let mut r = Reader::new(data);
    let count = r.u32()? & 0x0fff_ffff;
    (0..count)
        .map(|_| {
            let domain = r.u32()?;
            let server_id = r.u32()?;
            let seq = r.u64()?;
            Ok(Gtid {
                domain,
                server_id,
                seq,
            })
        })
        .collect()
}

/// An empty MariaDB GTID set.
pub(crate) fn empty() -> GtidSet {
    GtidSet::MariaDb(BTreeMap::new())
}

/// Whether a set names no domain at all.
pub(crate) fn is_empty(set: &GtidSet) -> bool {
    match set {
        GtidSet::MariaDb(m) => m.is_empty(),
        GtidSet::MySql(m) => m.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gtid_events() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(7u32.to_le_bytes());
        data.push(flags::STANDALONE | flags::GROUP_COMMIT_ID);
        data.extend(9u64.to_le_bytes());
        let ev = parse(&data, 1).unwrap();
        assert_eq!(ev.gtid.to_string(), "7-1-42");
        assert!(ev.standalone());
        assert!(parse(&data[..10], 1).is_err());

        let mut list = 1u32.to_le_bytes().to_vec();
        list.extend(0u32.to_le_bytes());
        list.extend(1u32.to_le_bytes());
        list.extend(5u64.to_le_bytes());
        assert_eq!(parse_list(&list).unwrap()[0].to_string(), "0-1-5");
    }
}
