//! Event groups to transactions: one GTID group in, at most one transaction out.
//!
//! # Event groups
//! Every group starts with a GTID event. An InnoDB transaction ends with XID, a
//! non-transactional one with QUERY `COMMIT` (or `ROLLBACK`, which cannot undo what was
//! logged); a standalone group (DDL) is its GTID and one QUERY; an `XA PREPARE`d transaction
//! is a group of its own ended by XA_PREPARE, and its `XA COMMIT`/`XA ROLLBACK` another.
//! Rolled-back transactions never reach the binlog.
//!
//! # What is emitted
//! A group with rows of a mapped table becomes `Begin`, its `Change`s and `Commit` (id
//! `domain-server-seq`, commit time from the GTID event). The prepared half of an XA
//! transaction is emitted when it is prepared: a later `XA ROLLBACK` cannot take it back (a
//! warning says so). Groups touching no mapped table only move the position, reported as
//! `Progress` at most once a second.
//!
//! # Positions
//! The commit and restart position of a transaction is the executed GTID set after it (all
//! domains) and the binlog coordinates of its last event's end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::binlog::events::Event;
use ordo_kcop::{
    BinlogCoord, Change, Gtid, GtidSet, Position, SourceEvent, Timestamp, TxnBegin, TxnCommit,
};

use super::error::MysqlSourceError;
use super::events::{self, QueryKind, kind};
use super::gtid::{self, GtidEvent, flags};
use super::rows;
use super::schema::SchemaRegistry;
use crate::source::{Batcher, TableFilter};

/// How often, at most, idle progress is reported.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Group {
    ev: GtidEvent,
    timestamp: u32,
    /// Position of the GTID event (the group's start).
    start: Position,
    begun: bool,
    changes: u64,
    /// Already handed on in an earlier run (at or before the resume position).
    skip: bool,
}

/// Turns binlog events into source events.
pub(crate) struct Assembler {
    tables: TableFilter,
    pub(crate) registry: SchemaRegistry,
    /// GTIDs executed up to the last complete group.
    executed: GtidSet,
    /// Binlog coordinates after the last complete group.
    coord: BinlogCoord,
    /// Groups at or before this set were handed on before the restart.
    resume: GtidSet,
    file: String,
    group: Option<Group>,
    /// XA transactions whose prepared rows were handed on, until their XA COMMIT/ROLLBACK.
    prepared: HashSet<Vec<u8>>,
    progress_pending: bool,
    last_progress: Instant,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler")
            .field("executed", &self.executed)
            .field("coord", &self.coord)
            .finish_non_exhaustive()
    }
}

impl Assembler {
    /// Start after `executed` / `coord`; groups contained in `executed` are skipped.
    pub(crate) fn new(
        tables: TableFilter,
        registry: SchemaRegistry,
        executed: GtidSet,
        coord: BinlogCoord,
    ) -> Self {
        Self {
            tables,
            registry,
            resume: executed.clone(),
            executed,
            file: coord.file.clone(),
            coord,
            group: None,
            prepared: HashSet::new(),
            progress_pending: false,
            last_progress: Instant::now(),
        }
    }

    /// The position after the last complete group: where a new stream starts.
    pub(crate) fn position(&self) -> Position {
        Position::MySql {
            gtids: self.executed.clone(),
            coord: self.coord.clone(),
        }
    }

    pub(crate) fn executed(&self) -> &GtidSet {
        &self.executed
    }

    pub(crate) fn coord(&self) -> &BinlogCoord {
        &self.coord
    }

    /// The stream broke or stops: drop a partial group (telling the pipeline to discard it if
    /// it was begun); the next stream sends it again, whole.
    pub(crate) async fn reset(&mut self, out: &mut Batcher) -> Result<(), MysqlSourceError> {
        if self.group.take().is_some_and(|g| g.begun) {
            out.push(SourceEvent::Rollback).await?;
        }
        self.registry.forget_table_ids();
        Ok(())
    }

    /// When a pending progress report is due, if one is pending.
    pub(crate) fn progress_due(&self) -> Option<Instant> {
        self.progress_pending
            .then(|| self.last_progress + PROGRESS_EVERY)
    }

    /// Report idle progress now if one is pending and due.
    pub(crate) async fn tick(&mut self, out: &mut Batcher) -> Result<(), MysqlSourceError> {
        if self.progress_pending
            && self.group.is_none()
            && self.last_progress.elapsed() >= PROGRESS_EVERY
        {
            self.progress_pending = false;
            self.last_progress = Instant::now();
            out.push(SourceEvent::Progress(self.position())).await?;
        }
        Ok(())
    }

    fn at(&self, ev: &Event) -> String {
        format!("{}:{}", self.file, ev.header().log_pos())
    }

    /// Handle one event.
    pub(crate) async fn handle(
        &mut self,
        ev: &Event,
        meta: &mut Conn,
        out: &mut Batcher,
    ) -> Result<(), MysqlSourceError> {
        let t = ev.header().event_type_raw();
        let corrupt = |reason: String| MysqlSourceError::Corrupt {
            event: t,
            at: self.at(ev),
            reason,
        };
        let data = events::payload(ev).map_err(corrupt)?;
        let post_header = usize::from(
            ev.fde()
                .event_type_header_lengths()
                .get(usize::from(t).wrapping_sub(1))
                .copied()
                .unwrap_or(0),
        );
        match t {
            kind::ROTATE => {
                let (pos, file) = events::rotate(data).map_err(|e| corrupt(e.0.into()))?;
                if ev.header().flags_raw() & events::ARTIFICIAL == 0 {
                    self.registry.forget_table_ids();
                }
                self.file = file.clone();
                if self.group.is_none() {
                    self.coord = BinlogCoord { file, pos };
                }
            }
            kind::GTID => {
                let g =
                    gtid::parse(data, ev.header().server_id()).map_err(|e| corrupt(e.0.into()))?;
                self.start_group(g, ev, out).await?;
            }
            kind::TABLE_MAP => {
                if self.group.as_ref().is_none_or(|g| !g.skip) {
                    let id_len = if post_header == 6 { 4 } else { 6 };
                    self.registry
                        .table_map(meta, data, id_len, &*self.tables)
                        .await?;
                }
            }
            t if rows::is_rows(t) => self.rows(ev, data, post_header, out).await?,
            kind::QUERY => {
                let q = events::query(data, post_header).map_err(|e| corrupt(e.0.into()))?;
                self.query(ev, q.sql, out).await?;
            }
            kind::XID | kind::XA_PREPARE => self.end_group(ev, out).await?,
            _ => self.other(ev, data)?,
        }
        Ok(())
    }

    /// Events that neither carry rows nor delimit groups: refused, logged or ignored.
    fn other(&self, ev: &Event, data: &[u8]) -> Result<(), MysqlSourceError> {
        let t = ev.header().event_type_raw();
        let at = || self.at(ev);
        match t {
            kind::INCIDENT => Err(MysqlSourceError::Incident {
                at: at(),
                message: events::incident(data),
            }),
            kind::FIRST_COMPRESSED..=kind::LAST_COMPRESSED => {
                Err(MysqlSourceError::Compressed { event: t, at: at() })
            }
            kind::PRE_GA_WRITE_ROWS..=kind::PRE_GA_DELETE_ROWS => Err(MysqlSourceError::Corrupt {
                event: t,
                at: at(),
                reason: "pre-GA rows events (MySQL 5.1) are not supported".into(),
            }),
            kind::GTID_LIST => {
                let list = gtid::parse_list(data).map_err(|e| MysqlSourceError::Corrupt {
                    event: t,
                    at: at(),
                    reason: e.0.into(),
                })?;
                tracing::trace!(file = %self.file, gtids = list.len(), "gtid list");
                Ok(())
            }
            // The stream reader tracks the FORMAT_DESCRIPTION; the rest say nothing about rows
            // or group boundaries.
            kind::FORMAT_DESCRIPTION
            | kind::HEARTBEAT
            | kind::ANNOTATE_ROWS
            | kind::BINLOG_CHECKPOINT
            | kind::START_ENCRYPTION
            | kind::STOP => Ok(()),
            _ => {
                tracing::trace!(event = t, "ignoring binlog event");
                Ok(())
            }
        }
    }

    async fn start_group(
        &mut self,
        g: GtidEvent,
        ev: &Event,
        out: &mut Batcher,
    ) -> Result<(), MysqlSourceError> {
        if let Some(open) = self.group.take() {
            tracing::warn!(gtid = %open.ev.gtid, next = %g.gtid, "event group ended without commit; dropping it");
            if open.begun {
                out.push(SourceEvent::Rollback).await?;
            }
        }
        let h = ev.header();
        let start_pos = u64::from(h.log_pos()).saturating_sub(u64::from(h.event_size()));
        let start = Position::MySql {
            gtids: self.executed.clone(),
            coord: BinlogCoord {
                file: self.file.clone(),
                pos: start_pos,
            },
        };
        let skip = self.resume.contains(&g.gtid);
        self.group = Some(Group {
            ev: g,
            timestamp: h.timestamp(),
            start,
            begun: false,
            changes: 0,
            skip,
        });
        Ok(())
    }

    async fn rows(
        &mut self,
        ev: &Event,
        data: &[u8],
        post_header: usize,
        out: &mut Batcher,
    ) -> Result<(), MysqlSourceError> {
        let Some(group) = self.group.as_mut().filter(|g| !g.skip) else {
            return Ok(());
        };
        let at = || format!("{}:{}", self.file, ev.header().log_pos());
        let corrupt = |reason: &str| MysqlSourceError::Corrupt {
            event: ev.header().event_type_raw(),
            at: at(),
            reason: reason.into(),
        };
        let mut rows = rows::parse(ev.header().event_type_raw(), data, post_header)
            .map_err(|e| corrupt(e.0))?;
        let table = match self.registry.by_table_id(rows.table_id) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(()),
            None if !rows.has_rows() => return Ok(()),
            None => return Err(corrupt("rows for a table id no table map announced")),
        };
        while let Some(row) = rows.next_row(&table) {
            let (before, after) = row.map_err(|e| match e.column {
                Some(i) => MysqlSourceError::Value {
                    table: table.schema.id.to_string(),
                    column: table
                        .schema
                        .columns
                        .get(i)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    at: at(),
                    reason: e.reason.into(),
                },
                None => corrupt(e.reason),
            })?;
            if !group.begun {
                group.begun = true;
                out.push(SourceEvent::Begin(TxnBegin {
                    id: txn_id(&group.ev.gtid),
                    commit_time: commit_time(group.timestamp),
                    position: Some(group.start.clone()),
                }))
                .await?;
            }
            let change = Change {
                table: Arc::clone(&table.schema),
                op: rows.op,
                before,
                after,
                op_index: group.changes,
            };
            group.changes += 1;
            out.push(SourceEvent::Change(change)).await?;
        }
        Ok(())
    }

    async fn query(
        &mut self,
        ev: &Event,
        sql: &[u8],
        out: &mut Batcher,
    ) -> Result<(), MysqlSourceError> {
        match events::classify(sql) {
            QueryKind::Begin | QueryKind::Ignore => Ok(()),
            QueryKind::Commit | QueryKind::Rollback | QueryKind::XaCommit => {
                self.end_group(ev, out).await
            }
            QueryKind::XaRollback => {
                let xid = self.group.as_ref().and_then(|g| g.ev.xid.clone());
                if xid.is_some_and(|x| self.prepared.remove(&x)) {
                    tracing::warn!(statement = %String::from_utf8_lossy(sql), "xa rollback of a prepared transaction whose rows were already handed on when it was prepared");
                }
                self.end_group(ev, out).await
            }
            QueryKind::Other => {
                self.registry.invalidate(&String::from_utf8_lossy(sql));
                if self.group.as_ref().is_some_and(|g| g.ev.standalone()) {
                    self.end_group(ev, out).await?;
                }
                Ok(())
            }
        }
    }

    async fn end_group(&mut self, ev: &Event, out: &mut Batcher) -> Result<(), MysqlSourceError> {
        let Some(g) = self.group.take() else {
            return Ok(());
        };
        if let Some(xid) = &g.ev.xid {
            if g.ev.flags & flags::PREPARED_XA != 0 && g.begun {
                self.prepared.insert(xid.clone());
            } else if g.ev.flags & flags::COMPLETED_XA != 0 {
                self.prepared.remove(xid);
            }
        }
        self.executed.advance(g.ev.gtid);
        self.coord = BinlogCoord {
            file: self.file.clone(),
            pos: u64::from(ev.header().log_pos()),
        };
        if g.begun {
            let position = self.position();
            out.push(SourceEvent::Commit(TxnCommit {
                id: txn_id(&g.ev.gtid),
                commit_time: commit_time(g.timestamp),
                commit_position: position.clone(),
                restart_position: position,
                change_count: g.changes,
            }))
            .await?;
            self.progress_pending = false;
            self.last_progress = Instant::now();
        } else if !g.skip {
            self.progress_pending = true;
            self.tick(out).await?;
        }
        Ok(())
    }
}

fn txn_id(g: &Gtid) -> Arc<str> {
    Arc::from(g.to_string())
}

fn commit_time(secs: u32) -> Timestamp {
    Timestamp(i64::from(secs) * 1_000_000)
}
