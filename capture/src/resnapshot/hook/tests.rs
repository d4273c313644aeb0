#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use ordo_kcop::value::Timestamp;
use ordo_kcop::{Column, ColumnKind, Lsn, Position};

use super::*;
use crate::resnapshot::{Active, ChunkRows};

fn schema(id: TableId, cols: &[&str]) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id,
        version: 1,
        columns: cols
            .iter()
            .map(|c| Column {
                name: (*c).to_owned(),
                type_name: "text".into(),
                kind: ColumnKind::Text,
                nullable: false,
            })
            .collect(),
        key: vec![0],
    })
}

struct Fixture {
    hook: WindowHook,
    shared: SharedState,
    notes: mpsc::Receiver<Note>,
    items: Arc<TableSchema>,
    signal: Arc<TableSchema>,
    lsn: u64,
}

impl Fixture {
    fn new() -> Self {
        let shared = SharedState::default();
        let (tx, notes) = mpsc::channel(8);
        let signal_id = TableId::new("ordo", "signal");
        Self {
            hook: WindowHook::new(signal_id.clone(), shared.clone(), tx),
            shared,
            notes,
            items: schema(TableId::new("public", "items"), &["id", "val"]),
            signal: schema(signal_id, &["id", "kind", "data"]),
            lsn: 100,
        }
    }

    /// Feed one transaction of `changes`; returns what the hook hands on.
    fn txn(&mut self, changes: Vec<Change>) -> Vec<SourceEvent> {
        self.lsn += 10;
        let id: Arc<str> = self.lsn.to_string().into();
        let mut out = Vec::new();
        self.hook.on_event(
            SourceEvent::Begin(TxnBegin {
                id: id.clone(),
                commit_time: Timestamp(0),
                position: None,
            }),
            &mut out,
        );
        let n = changes.len() as u64;
        for c in changes {
            self.hook.on_event(SourceEvent::Change(c), &mut out);
        }
        self.hook.on_event(
            SourceEvent::Commit(TxnCommit {
                id,
                commit_time: Timestamp(0),
                commit_position: Position::Postgres(Lsn(self.lsn)),
                restart_position: Position::Postgres(Lsn(self.lsn + 1)),
                change_count: n,
            }),
            &mut out,
        );
        out
    }

    fn item(&self, op: Op, id: &str, val: &str) -> Change {
        let row = vec![Value::Text(id.into()), Value::Text(val.into())];
        let (before, after) = match op {
            Op::Delete => (Some(row), None),
            _ => (None, Some(row)),
        };
        Change {
            table: self.items.clone(),
            op,
            before,
            after,
            op_index: 0,
        }
    }

    fn signal(&self, kind: &str, token: &str) -> Change {
        Change {
            table: self.signal.clone(),
            op: Op::Insert,
            before: None,
            after: Some(vec![
                Value::Int(7),
                Value::Text(kind.into()),
                Value::Json(format!(r#"{{"token":"{token}","request":"1"}}"#)),
            ]),
            op_index: 0,
        }
    }

    fn activate(&self, token: &str) {
        lock(&self.shared).active = Some(Active {
            token: token.into(),
            table: self.items.id.clone(),
            key_columns: vec!["id".into()],
            rows: None,
        });
    }

    fn chunk(&self, ids: &[&str]) {
        let rows = ids
            .iter()
            .map(|i| vec![Value::Text((*i).into()), Value::Text(format!("snap{i}"))])
            .collect();
        lock(&self.shared).active.as_mut().unwrap().rows = Some(ChunkRows {
            schema: self.items.clone(),
            rows,
        });
    }
}

fn reads(out: &[SourceEvent]) -> Vec<String> {
    out.iter()
        .filter_map(|e| match e {
            SourceEvent::Change(c) if c.op == Op::Read => match &c.after.as_ref().unwrap()[0] {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn signal_only_transactions_become_progress() {
    let mut f = Fixture::new();
    let sig = f.signal("window-open", "other-run");
    let out = f.txn(vec![sig]);
    assert!(
        matches!(out.as_slice(), [SourceEvent::Progress(_)]),
        "{out:?}"
    );
}

#[test]
fn signal_changes_are_dropped_and_op_indexes_stay_dense() {
    let mut f = Fixture::new();
    let (a, sig, b) = (
        f.item(Op::Insert, "1", "a"),
        f.signal("window-open", "x"),
        f.item(Op::Insert, "2", "b"),
    );
    let out = f.txn(vec![a, sig, b]);
    let ops: Vec<u64> = out
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Change(c) => Some(c.op_index),
            _ => None,
        })
        .collect();
    assert_eq!(ops, vec![0, 1]);
    match out.last() {
        Some(SourceEvent::Commit(c)) => assert_eq!(c.change_count, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_changed_inside_the_window_are_left_to_the_stream() {
    let mut f = Fixture::new();
    f.activate("t1");
    let open = f.signal("window-open", "t1");
    f.txn(vec![open]);
    let (u, d) = (f.item(Op::Update, "2", "new"), f.item(Op::Delete, "4", "x"));
    f.txn(vec![u, d]);
    f.chunk(&["1", "2", "3", "4"]);
    let close = f.signal("window-close", "t1");
    let out = f.txn(vec![close]);
    assert_eq!(reads(&out), vec!["1", "3"]);
    assert!(matches!(out.first(), Some(SourceEvent::Begin(_))));
    match out.last() {
        Some(SourceEvent::Commit(c)) => assert_eq!(c.change_count, 2),
        other => panic!("{other:?}"),
    }
    match f.notes.try_recv().unwrap() {
        Note::Emitted { token, rows, .. } => assert_eq!((token.as_str(), rows), ("t1", 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn changes_before_the_window_or_rolled_back_do_not_count() {
    let mut f = Fixture::new();
    f.activate("t1");
    let before = f.item(Op::Update, "1", "old");
    f.txn(vec![before]);
    let open = f.signal("window-open", "t1");
    f.txn(vec![open]);
    let mut out = Vec::new();
    let rolled = f.item(Op::Delete, "2", "x");
    f.hook.on_event(
        SourceEvent::Begin(TxnBegin {
            id: "9".into(),
            commit_time: Timestamp(0),
            position: None,
        }),
        &mut out,
    );
    f.hook.on_event(SourceEvent::Change(rolled), &mut out);
    f.hook.on_event(SourceEvent::Rollback, &mut out);
    assert!(matches!(out.last(), Some(SourceEvent::Rollback)));
    f.chunk(&["1", "2"]);
    let close = f.signal("window-close", "t1");
    assert_eq!(reads(&f.txn(vec![close])), vec!["1", "2"]);
}

#[test]
fn a_truncate_inside_the_window_drops_the_chunk() {
    let mut f = Fixture::new();
    f.activate("t1");
    let open = f.signal("window-open", "t1");
    f.txn(vec![open]);
    let mut t = f.item(Op::Truncate, "0", "");
    t.after = None;
    f.txn(vec![t]);
    f.chunk(&["1", "2"]);
    let close = f.signal("window-close", "t1");
    let out = f.txn(vec![close]);
    assert!(reads(&out).is_empty());
    assert!(
        matches!(out.as_slice(), [SourceEvent::Progress(_)]),
        "{out:?}"
    );
}

#[test]
fn watermarks_of_another_run_are_ignored() {
    let mut f = Fixture::new();
    f.activate("t2");
    let open = f.signal("window-open", "t1");
    f.txn(vec![open]);
    f.chunk(&["1"]);
    let close = f.signal("window-close", "t1");
    assert!(reads(&f.txn(vec![close])).is_empty());
    assert!(f.notes.try_recv().is_err());
}

#[test]
fn a_snapshot_request_is_noted() {
    let mut f = Fixture::new();
    let mut req = f.signal("snapshot", "");
    req.after.as_mut().unwrap()[0] = Value::Int(42);
    f.txn(vec![req]);
    assert_eq!(f.notes.try_recv().unwrap(), Note::Requested(42));
}
