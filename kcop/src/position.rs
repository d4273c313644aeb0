//! Source log positions: PostgreSQL LSNs, MariaDB/MySQL GTIDs and binlog coordinates.
//!
//! Every position has a text form (`Display`) that parses back (`FromStr`) to the same value;
//! the commit stream stores positions in that form.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An error parsing a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{text}`: expected {expected}")]
pub struct ParsePositionError {
    /// What was being parsed.
    pub kind: &'static str,
    /// The offending text.
    pub text: String,
    /// The expected form.
    pub expected: &'static str,
}

fn perr(kind: &'static str, text: &str, expected: &'static str) -> ParsePositionError {
    ParsePositionError {
        kind,
        text: text.chars().take(120).collect(),
        expected,
    }
}

/// A PostgreSQL write-ahead-log position, printed as `XXXXXXXX/XXXXXXXX` (hex, upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            perr(
                "lsn",
                s,
                "two hex numbers separated by `/`, e.g. 16/B374D848",
            )
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// A MariaDB global transaction id: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    /// Replication domain id.
    pub domain: u32,
    /// Originating server id.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || perr("gtid", s, "domain-server-sequence, e.g. 0-1-42");
        let mut it = s.trim().splitn(3, '-');
        let domain = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let server_id = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let seq = it.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        Ok(Gtid {
            domain,
            server_id,
            seq,
        })
    }
}

/// A set of executed GTIDs.
///
/// MariaDB keeps the last GTID per replication domain (`0-1-42,1-1-7`); MySQL keeps intervals of
/// transaction numbers per source UUID (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GtidSet {
    /// MariaDB: the last GTID of each domain.
    MariaDb(BTreeMap<u32, Gtid>),
    /// MySQL: per source UUID (lowercase text), sorted disjoint inclusive intervals.
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

impl GtidSet {
    /// Record that `gtid` executed (MariaDB).
    pub fn advance(&mut self, gtid: Gtid) {
        if let GtidSet::MariaDb(map) = self {
            map.insert(gtid.domain, gtid);
        }
    }

    /// Whether `gtid` is at or before this set's position in its domain (MariaDB).
    pub fn contains(&self, gtid: &Gtid) -> bool {
        match self {
            GtidSet::MariaDb(map) => map.get(&gtid.domain).is_some_and(|g| g.seq >= gtid.seq),
            GtidSet::MySql(_) => false,
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MariaDb(map) => {
                for (i, g) in map.values().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{g}")?;
                }
                Ok(())
            }
            GtidSet::MySql(map) => {
                for (i, (uuid, ranges)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(uuid)?;
                    for (a, b) in ranges {
                        if a == b {
                            write!(f, ":{a}")?
                        } else {
                            write!(f, ":{a}-{b}")?
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl FromStr for GtidSet {
    type Err = ParsePositionError;

    /// Parses either form; an empty string is an empty MariaDB set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.contains(':') {
            return parse_mysql_set(s);
        }
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part.parse()?;
            if map.insert(g.domain, g).is_some() {
                return Err(perr("gtid set", s, "at most one gtid per domain"));
            }
        }
        Ok(GtidSet::MariaDb(map))
    }
}

fn parse_mysql_set(s: &str) -> Result<GtidSet, ParsePositionError> {
    let err = || {
        perr(
            "gtid set",
            s,
            "uuid:interval[:interval...] separated by commas, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        )
    };
    let mut map = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let uuid = it.next().ok_or_else(err)?.to_ascii_lowercase();
        if crate::value::parse_uuid(&uuid).is_err() {
            return Err(err());
        }
        let mut ranges = Vec::new();
        for iv in it {
            let (a, b) = match iv.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?),
                None => {
                    let n: u64 = iv.parse().map_err(|_| err())?;
                    (n, n)
                }
            };
            if a > b || a == 0 {
                return Err(err());
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() {
            return Err(err());
        }
        map.insert(uuid, ranges);
    }
    Ok(GtidSet::MySql(map))
}

/// A binlog file and byte offset, printed as `file:pos`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BinlogCoord {
    /// Binlog file name, e.g. `mariadb-bin.000003`.
    pub file: String,
    /// Byte offset in the file.
    pub pos: u64,
}

impl fmt::Display for BinlogCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for BinlogCoord {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            perr(
                "binlog coordinates",
                s,
                "file:position, e.g. mariadb-bin.000003:1234",
            )
        };
        let (file, pos) = s.rsplit_once(':').ok_or_else(err)?;
        if file.is_empty() {
            return Err(err());
        }
        Ok(BinlogCoord {
            file: file.to_owned(),
            pos: pos.parse().map_err(|_| err())?,
        })
    }
}

/// A position in a source's log: where a transaction committed, or where to resume.
///
/// Text form: `pg:16/B374D848` or `mysql:<gtid set>@<file:pos>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    /// PostgreSQL.
    Postgres(Lsn),
    /// MariaDB or MySQL: the executed GTID set and the binlog coordinates after the transaction.
    MySql {
        /// GTIDs executed up to and including this point.
        gtids: GtidSet,
        /// Binlog coordinates just after this point.
        coord: BinlogCoord,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Postgres(lsn) => write!(f, "pg:{lsn}"),
            Position::MySql { gtids, coord } => write!(f, "mysql:{gtids}@{coord}"),
        }
    }
}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("pg:") {
            return Ok(Position::Postgres(rest.parse()?));
        }
        if let Some(rest) = s.strip_prefix("mysql:") {
            let (gtids, coord) = rest
                .rsplit_once('@')
                .ok_or_else(|| perr("position", s, "mysql:<gtid set>@<file:pos>"))?;
            return Ok(Position::MySql {
                gtids: gtids.parse()?,
                coord: coord.parse()?,
            });
        }
        Err(perr(
            "position",
            s,
            "`pg:<lsn>` or `mysql:<gtid set>@<file:pos>`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_prints_like_postgres() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert!("16-B3".parse::<Lsn>().is_err());
    }

    #[test]
    fn mysql_sets_parse() {
        let s: GtidSet = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7"
            .parse()
            .unwrap();
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7");
    }

    #[test]
    fn mariadb_set_contains() {
        let s: GtidSet = "0-1-10,2-1-4".parse().unwrap();
        assert!(s.contains(&Gtid {
            domain: 0,
            server_id: 1,
            seq: 10
        }));
        assert!(!s.contains(&Gtid {
            domain: 0,
            server_id: 1,
            seq: 11
        }));
        assert!(!s.contains(&Gtid {
            domain: 1,
            server_id: 1,
            seq: 1
        }));
    }

    fn gtid() -> impl Strategy<Value = Gtid> {
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(domain, server_id, seq)| Gtid {
            domain,
            server_id,
            seq,
        })
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v: u64) {
            prop_assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }

        #[test]
        fn gtid_round_trips(g in gtid()) {
            prop_assert_eq!(g.to_string().parse::<Gtid>().unwrap(), g);
        }

        #[test]
        fn position_round_trips(gs in proptest::collection::vec(gtid(), 0..4), file in "[a-z.-]{1,12}\\.[0-9]{6}", pos: u64, lsn: u64) {
            let mut set = GtidSet::MariaDb(BTreeMap::new());
            for g in gs { set.advance(g); }
            let p = Position::MySql { gtids: set, coord: BinlogCoord { file, pos } };
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
            let p = Position::Postgres(Lsn(lsn));
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }

        #[test]
        fn mysql_set_round_trips(uuid: [u8; 16], ranges in proptest::collection::vec((1u64..1000, 0u64..1000), 1..4)) {
            let mut next = 1;
            let ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(gap, len)| { let a = next + gap; next = a + len + 2; (a, a + len) }).collect();
            let mut map = BTreeMap::new();
            map.insert(crate::value::format_uuid(&uuid), ranges);
            let set = GtidSet::MySql(map);
            prop_assert_eq!(set.to_string().parse::<GtidSet>().unwrap(), set);
        }
    }
}
