//! Parser for the pgoutput logical-decoding protocol, versions 1 to 4.
//!
//! [`parse`] reads one message (the payload of one XLogData frame) without copying: strings and
//! tuple values borrow from the frame. Streamed (in-progress) transactions, protocol 2 and up,
//! prefix each change message with the xid of the (sub)transaction that made it; the parser
//! is told whether it is inside a stream chunk to know whether that prefix is there.

use thiserror::Error;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A malformed pgoutput message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PgOutputError {
    /// The message ended early.
    #[error("pgoutput message `{tag}` is truncated at byte {at}")]
    Truncated {
        /// Message tag.
        tag: char,
        /// Offset where more bytes were expected.
        at: usize,
    },
    /// An unknown tag or sub-tag.
    #[error("unexpected pgoutput {what} `{found}`; is the server newer than this ordo?")]
    Unexpected {
        /// What was being read.
        what: &'static str,
        /// The byte found, as a char.
        found: char,
    },
    /// A name is not UTF-8.
    #[error("pgoutput message `{tag}` has a name that is not UTF-8")]
    NotUtf8 {
        /// Message tag.
        tag: char,
    },
    /// The frame was empty.
    #[error("empty pgoutput message")]
    Empty,
}

/// One column of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleValue<'a> {
    /// SQL NULL.
    Null,
    /// Unchanged TOAST value: not sent.
    Unchanged,
    /// Text form.
    Text(&'a [u8]),
    /// Binary form (only with the `binary` option).
    Binary(&'a [u8]),
}

/// A tuple: its column values in order. Decoded lazily from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple<'a> {
    ncols: u16,
    data: &'a [u8],
}

impl<'a> Tuple<'a> {
    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.ncols)
    }

    /// Whether the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.ncols == 0
    }

    /// Iterate over the columns.
    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter {
            remaining: self.ncols,
            r: Reader {
                buf: self.data,
                pos: 0,
                tag: 't',
            },
        }
    }
}

/// Iterator over a tuple's columns.
#[derive(Debug)]
pub struct TupleIter<'a> {
    remaining: u16,
    r: Reader<'a>,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = Result<TupleValue<'a>, PgOutputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(read_value(&mut self.r))
    }
}

fn read_value<'a>(r: &mut Reader<'a>) -> Result<TupleValue<'a>, PgOutputError> {
    match r.u8()? {
        b'n' => Ok(TupleValue::Null),
        b'u' => Ok(TupleValue::Unchanged),
        b't' => {
            let len = r.len32()?;
            Ok(TupleValue::Text(r.bytes(len)?))
        }
        b'b' => {
            let len = r.len32()?;
            Ok(TupleValue::Binary(r.bytes(len)?))
        }
        other => Err(PgOutputError::Unexpected {
            what: "tuple column kind",
            found: char::from(other),
        }),
    }
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn<'a> {
    /// Part of the replica identity.
    pub key: bool,
    /// Column name.
    pub name: &'a str,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (-1 if none).
    pub type_mod: i32,
}

/// The old-row image kind of an Update or Delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// `K`: only replica-identity columns; the others are absent.
    Key,
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full,
}

/// A parsed pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgMessage<'a> {
    /// Transaction start.
    Begin {
        /// LSN of the commit record.
        final_lsn: u64,
        /// Commit time, Unix microseconds.
        commit_time: i64,
        /// Transaction id.
        xid: u32,
    },
    /// Transaction end.
    Commit {
        /// LSN of the commit record.
        commit_lsn: u64,
        /// LSN just after the commit record: acknowledge this.
        end_lsn: u64,
        /// Commit time, Unix microseconds.
        commit_time: i64,
    },
    /// Replication origin of the transaction.
    Origin {
        /// Origin's commit LSN.
        lsn: u64,
        /// Origin name.
        name: &'a str,
    },
    /// Table definition.
    Relation {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Relation OID.
        relid: u32,
        /// Schema.
        namespace: &'a str,
        /// Table.
        name: &'a str,
        /// Replica identity: `d`efault, `n`othing, `f`ull, `i`ndex.
        replica_identity: u8,
        /// Columns.
        columns: Vec<RelationColumn<'a>>,
    },
    /// Type definition (for non-built-in types).
    Type {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Type OID.
        oid: u32,
        /// Schema.
        namespace: &'a str,
        /// Type name.
        name: &'a str,
    },
    /// A new row.
    Insert {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Relation OID.
        relid: u32,
        /// The row.
        new: Tuple<'a>,
    },
    /// A changed row.
    Update {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Relation OID.
        relid: u32,
        /// Old image, if sent.
        old: Option<(OldKind, Tuple<'a>)>,
        /// New row.
        new: Tuple<'a>,
    },
    /// A removed row.
    Delete {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Relation OID.
        relid: u32,
        /// Old image.
        old: (OldKind, Tuple<'a>),
    },
    /// Truncated tables.
    Truncate {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Option bits: 1 = CASCADE, 2 = RESTART IDENTITY.
        options: u8,
        /// Relation OIDs.
        relids: Vec<u32>,
    },
    /// A `pg_logical_emit_message` message.
    Message {
        /// Streamed (sub)transaction, if inside a stream.
        xid: Option<u32>,
        /// Whether it is part of a transaction.
        transactional: bool,
        /// Its LSN.
        lsn: u64,
        /// Prefix.
        prefix: &'a str,
        /// Content.
        content: &'a [u8],
    },
    /// A chunk of an in-progress transaction starts.
    StreamStart {
        /// Top-level transaction id.
        xid: u32,
        /// Whether this is the transaction's first chunk.
        first: bool,
    },
    /// The current chunk ends.
    StreamStop,
    /// A streamed transaction committed.
    StreamCommit {
        /// Top-level transaction id.
        xid: u32,
        /// LSN of the commit record.
        commit_lsn: u64,
        /// LSN just after it.
        end_lsn: u64,
        /// Commit time, Unix microseconds.
        commit_time: i64,
    },
    /// A streamed transaction, or one of its subtransactions, aborted.
    StreamAbort {
        /// Top-level transaction id.
        xid: u32,
        /// The aborted (sub)transaction; equal to `xid` when the whole transaction aborted.
        subxid: u32,
    },
    /// Two-phase commit messages (protocol 3+), which ordo does not request.
    TwoPhase {
        /// Message tag.
        tag: u8,
    },
}

#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    tag: char,
}

impl<'a> Reader<'a> {
    fn truncated(&self) -> PgOutputError {
        PgOutputError::Truncated {
            tag: self.tag,
            at: self.pos,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], PgOutputError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PgOutputError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PgOutputError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, PgOutputError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, PgOutputError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, PgOutputError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, PgOutputError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn len32(&mut self) -> Result<usize, PgOutputError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.truncated())
    }

    fn timestamp(&mut self) -> Result<i64, PgOutputError> {
        let pg = i64::from_be_bytes(self.array()?);
        Ok(pg.saturating_add(PG_EPOCH_OFFSET_MICROS))
    }

    fn cstr(&mut self) -> Result<&'a str, PgOutputError> {
        let rest = &self.buf[self.pos..];
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.truncated())?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| PgOutputError::NotUtf8 { tag: self.tag })?;
        self.pos += nul + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple<'a>, PgOutputError> {
        let ncols = self.u16()?;
        let start = self.pos;
        // Walk the columns once to find the tuple's end (and validate it).
        for _ in 0..ncols {
            read_value(self)?;
        }
        Ok(Tuple {
            ncols,
            data: &self.buf[start..self.pos],
        })
    }

    fn xid_if(&mut self, streaming: bool) -> Result<Option<u32>, PgOutputError> {
        if streaming {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }

    fn old_kind(&mut self) -> Result<OldKind, PgOutputError> {
        match self.u8()? {
            b'K' => Ok(OldKind::Key),
            b'O' => Ok(OldKind::Full),
            other => Err(PgOutputError::Unexpected {
                what: "old tuple kind",
                found: char::from(other),
            }),
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), PgOutputError> {
        match self.u8()? {
            b if b == want => Ok(()),
            other => Err(PgOutputError::Unexpected {
                what: "tuple marker",
                found: char::from(other),
            }),
        }
    }
}

/// Parse one pgoutput message. `in_stream` says whether a `StreamStart` is open (change
/// messages then carry an xid).
///
/// # Errors
/// When the message is truncated or has unknown tags.
pub fn parse(frame: &[u8], in_stream: bool) -> Result<PgMessage<'_>, PgOutputError> {
    let tag = *frame.first().ok_or(PgOutputError::Empty)?;
    let mut r = Reader {
        buf: frame,
        pos: 1,
        tag: char::from(tag),
    };
    let msg = match tag {
        b'B' => PgMessage::Begin {
            final_lsn: r.u64()?,
            commit_time: r.timestamp()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            PgMessage::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time: r.timestamp()?,
            }
        }
        b'O' => PgMessage::Origin {
            lsn: r.u64()?,
            name: r.cstr()?,
        },
        b'R' => parse_relation(&mut r, in_stream)?,
        b'Y' => PgMessage::Type {
            xid: r.xid_if(in_stream)?,
            oid: r.u32()?,
            namespace: r.cstr()?,
            name: r.cstr()?,
        },
        b'I' => {
            let xid = r.xid_if(in_stream)?;
            let relid = r.u32()?;
            r.expect(b'N')?;
            PgMessage::Insert {
                xid,
                relid,
                new: r.tuple()?,
            }
        }
        b'U' => parse_update(&mut r, in_stream)?,
        b'D' => {
            let xid = r.xid_if(in_stream)?;
            let relid = r.u32()?;
            let kind = r.old_kind()?;
            PgMessage::Delete {
                xid,
                relid,
                old: (kind, r.tuple()?),
            }
        }
        b'T' => {
            let xid = r.xid_if(in_stream)?;
            let n = r.u32()?;
            let options = r.u8()?;
            let relids = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            PgMessage::Truncate {
                xid,
                options,
                relids,
            }
        }
        b'M' => {
            let xid = r.xid_if(in_stream)?;
            let transactional = r.u8()? & 1 == 1;
            let lsn = r.u64()?;
            let prefix = r.cstr()?;
            let len = r.len32()?;
            PgMessage::Message {
                xid,
                transactional,
                lsn,
                prefix,
                content: r.bytes(len)?,
            }
        }
        b'S' => PgMessage::StreamStart {
            xid: r.u32()?,
            first: r.u8()? == 1,
        },
        b'E' => PgMessage::StreamStop,
        b'c' => {
            let xid = r.u32()?;
            let _flags = r.u8()?;
            PgMessage::StreamCommit {
                xid,
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_time: r.timestamp()?,
            }
        }
        // Protocol 4 adds abort LSN and time after these when parallel apply is requested.
        b'A' => PgMessage::StreamAbort {
            xid: r.u32()?,
            subxid: r.u32()?,
        },
        b'b' | b'P' | b'K' | b'r' | b'p' => PgMessage::TwoPhase { tag },
        other => {
            return Err(PgOutputError::Unexpected {
                what: "message tag",
                found: char::from(other),
            });
        }
    };
    Ok(msg)
}

fn parse_relation<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<PgMessage<'a>, PgOutputError> {
    let xid = r.xid_if(in_stream)?;
    let relid = r.u32()?;
    let namespace = r.cstr()?;
    let name = r.cstr()?;
    let replica_identity = r.u8()?;
    let n = r.u16()?;
    let mut columns = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let key = r.u8()? & 1 == 1;
        columns.push(RelationColumn {
            key,
            name: r.cstr()?,
            type_oid: r.u32()?,
            type_mod: r.i32()?,
        });
    }
    Ok(PgMessage::Relation {
        xid,
        relid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn parse_update<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<PgMessage<'a>, PgOutputError> {
    let xid = r.xid_if(in_stream)?;
    let relid = r.u32()?;
    let (old, new) = match r.u8()? {
        b'N' => (None, r.tuple()?),
        b'K' | b'O' => {
            r.pos -= 1;
            let kind = r.old_kind()?;
            let old = r.tuple()?;
            r.expect(b'N')?;
            (Some((kind, old)), r.tuple()?)
        }
        other => {
            return Err(PgOutputError::Unexpected {
                what: "update tuple kind",
                found: char::from(other),
            });
        }
    };
    Ok(PgMessage::Update {
        xid,
        relid,
        old,
        new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tuple(cols: &[Option<&str>]) -> Vec<u8> {
        let mut out = (cols.len() as u16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                None => out.push(b'n'),
                Some("<u>") => out.push(b'u'),
                Some(t) => {
                    out.push(b't');
                    out.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn parses_an_update_with_key_image_and_unchanged_toast() {
        let mut m = vec![b'U'];
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.push(b'K');
        m.extend(tuple(&[Some("1"), None]));
        m.push(b'N');
        m.extend(tuple(&[Some("2"), Some("<u>")]));
        let PgMessage::Update {
            relid,
            old: Some((OldKind::Key, old)),
            new,
            xid: None,
        } = parse(&m, false).unwrap()
        else {
            panic!("not an update")
        };
        assert_eq!(relid, 16384);
        assert_eq!(
            old.iter().collect::<Result<Vec<_>, _>>().unwrap(),
            vec![TupleValue::Text(b"1"), TupleValue::Null]
        );
        assert_eq!(
            new.iter().collect::<Result<Vec<_>, _>>().unwrap(),
            vec![TupleValue::Text(b"2"), TupleValue::Unchanged]
        );
    }

    #[test]
    fn streamed_changes_carry_their_xid() {
        let mut m = vec![b'I'];
        m.extend_from_slice(&777u32.to_be_bytes());
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.push(b'N');
        m.extend(tuple(&[Some("x")]));
        assert!(matches!(
            parse(&m, true).unwrap(),
            PgMessage::Insert {
                xid: Some(777),
                relid: 16384,
                ..
            }
        ));
        assert!(parse(&m, false).is_err());
    }

    #[test]
    fn truncated_messages_are_errors() {
        let m = [b'B', 0, 0, 1];
        assert_eq!(
            parse(&m, false),
            Err(PgOutputError::Truncated { tag: 'B', at: 1 })
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes: Vec<u8>, in_stream: bool) {
            if let Ok(PgMessage::Insert { new, .. } | PgMessage::Update { new, .. }) = parse(&bytes, in_stream) {
                for v in new.iter() { let _ = v; }
            }
        }
    }
}
