//! The stream side of the incremental snapshot: drops signal-table changes, notes the keys the
//! stream changes inside a window, and adds the chunk's remaining rows to the transaction that
//! closes the window.
//!
//! # Ordering
//! The hook keeps the source contract: whole transactions in commit order with dense op
//! indexes. A transaction's `Begin` is held until its first change that is not a signal, so a
//! transaction of signal changes only becomes a `Progress` event; op indexes are renumbered
//! without the signal changes; the chunk's rows follow the transaction's own changes.
//! A window opens and closes at the commit of its watermark transaction; keys changed by a
//! transaction count at its commit (a `Rollback` forgets them).

use std::collections::HashMap;
use std::sync::Arc;

use ordo_kcop::{Change, Op, Row, SourceEvent, TableId, TableSchema, TxnBegin, TxnCommit, Value};
use tokio::sync::mpsc;

use super::{Note, SharedState, kinds, lock};
use crate::source::EventHook;

/// A signal row the stream carried, as the hook needs it.
#[derive(Debug, Clone, PartialEq)]
enum Signal {
    Requested(i64),
    Open(String),
    Close(String),
}

/// The open window.
#[derive(Debug)]
struct Window {
    token: String,
    table: TableId,
    key_columns: Vec<String>,
    changed: Vec<Row>,
    truncated: bool,
}

/// The transaction being read.
#[derive(Debug)]
struct Txn {
    begin: TxnBegin,
    sent_begin: bool,
    ops: u64,
    signals: Vec<Signal>,
    keys: Vec<Row>,
    truncated: bool,
}

/// The [`EventHook`] of the incremental snapshot.
#[derive(Debug)]
pub struct WindowHook {
    signal: TableId,
    shared: SharedState,
    notes: mpsc::Sender<Note>,
    txn: Option<Txn>,
    window: Option<Window>,
    schemas: HashMap<TableId, Arc<TableSchema>>,
}

impl WindowHook {
    /// A hook dropping changes of `signal`, working with the driver through `shared` and
    /// `notes`.
    pub fn new(signal: TableId, shared: SharedState, notes: mpsc::Sender<Note>) -> Self {
        Self {
            signal,
            shared,
            notes,
            txn: None,
            window: None,
            schemas: HashMap::new(),
        }
    }

    fn note(&self, note: Note) {
        if let Err(e) = self.notes.try_send(note) {
            // The driver also polls the signal table, and waits for one chunk at a time.
            tracing::debug!(error = %e, "incremental snapshot: driver note not delivered");
        }
    }

    fn change(&mut self, mut change: Change, out: &mut Vec<SourceEvent>) {
        let Some(txn) = self.txn.as_mut() else {
            out.push(SourceEvent::Change(change));
            return;
        };
        if change.table.id == self.signal {
            if let Some(s) = parse_signal(&change) {
                txn.signals.push(s);
            }
            return;
        }
        if let Some(w) = &self.window
            && w.table == change.table.id
        {
            if change.op == Op::Truncate {
                txn.truncated = true;
            }
            for image in [&change.before, &change.after].into_iter().flatten() {
                if let Some(k) = key_of(&change.table, image, &w.key_columns) {
                    txn.keys.push(k);
                }
            }
        }
        self.schemas
            .insert(change.table.id.clone(), change.table.clone());
        if !txn.sent_begin {
            txn.sent_begin = true;
            out.push(SourceEvent::Begin(txn.begin.clone()));
        }
        change.op_index = txn.ops;
        txn.ops += 1;
        out.push(SourceEvent::Change(change));
    }

    fn commit(&mut self, mut commit: TxnCommit, out: &mut Vec<SourceEvent>) {
        let Some(mut txn) = self.txn.take() else {
            out.push(SourceEvent::Commit(commit));
            return;
        };
        if let Some(w) = self.window.as_mut() {
            w.changed.append(&mut txn.keys);
            w.truncated |= txn.truncated;
        }
        for s in std::mem::take(&mut txn.signals) {
            match s {
                Signal::Requested(id) => self.note(Note::Requested(id)),
                Signal::Open(token) => self.open(token),
                Signal::Close(token) => self.close(&token, &mut txn, &commit, out),
            }
        }
        if txn.sent_begin {
            commit.change_count = txn.ops;
            out.push(SourceEvent::Commit(commit));
        } else {
            out.push(SourceEvent::Progress(commit.restart_position));
        }
    }

    fn open(&mut self, token: String) {
        let state = lock(&self.shared);
        let Some(active) = state.active.as_ref().filter(|a| a.token == token) else {
            tracing::debug!(
                token,
                "incremental snapshot: a watermark of another run; ignored"
            );
            return;
        };
        self.window = Some(Window {
            table: active.table.clone(),
            key_columns: active.key_columns.clone(),
            token,
            changed: Vec::new(),
            truncated: false,
        });
    }

    fn close(
        &mut self,
        token: &str,
        txn: &mut Txn,
        commit: &TxnCommit,
        out: &mut Vec<SourceEvent>,
    ) {
        let Some(window) = self.window.take_if(|w| w.token == token) else {
            return;
        };
        let chunk = lock(&self.shared)
            .active
            .as_mut()
            .filter(|a| a.token == token)
            .and_then(|a| a.rows.take());
        let Some(chunk) = chunk else {
            tracing::warn!(
                token,
                "incremental snapshot: the window closed without its rows; the driver reads the chunk again"
            );
            return;
        };
        let schema = match self.schemas.get(&window.table) {
            Some(s) if s.same_shape(&chunk.schema) => s.clone(),
            Some(s) => Arc::new(TableSchema {
                version: s.version + 1,
                ..(*chunk.schema).clone()
            }),
            None => chunk.schema.clone(),
        };
        let mut emitted = 0u64;
        for row in chunk.rows {
            let changed = window.truncated
                || key_of(&chunk.schema, &row, &window.key_columns)
                    .is_some_and(|k| window.changed.contains(&k));
            if changed {
                continue;
            }
            if !txn.sent_begin {
                txn.sent_begin = true;
                out.push(SourceEvent::Begin(txn.begin.clone()));
            }
            out.push(SourceEvent::Change(Change {
                table: schema.clone(),
                op: Op::Read,
                before: None,
                after: Some(row),
                op_index: txn.ops,
            }));
            txn.ops += 1;
            emitted += 1;
        }
        self.note(Note::Emitted {
            token: window.token,
            rows: emitted,
            restart: commit.restart_position.clone(),
        });
    }
}

impl EventHook for WindowHook {
    fn on_event(&mut self, ev: SourceEvent, out: &mut Vec<SourceEvent>) {
        match ev {
            SourceEvent::Begin(begin) => {
                self.txn = Some(Txn {
                    begin,
                    sent_begin: false,
                    ops: 0,
                    signals: Vec::new(),
                    keys: Vec::new(),
                    truncated: false,
                });
            }
            SourceEvent::Change(c) => self.change(c, out),
            SourceEvent::Commit(c) => self.commit(c, out),
            SourceEvent::Rollback => {
                if self.txn.take().is_some_and(|t| t.sent_begin) {
                    out.push(SourceEvent::Rollback);
                }
            }
            SourceEvent::Progress(p) => out.push(SourceEvent::Progress(p)),
        }
    }
}

/// The values of `columns` in `row` (of `schema`), or `None` when a column is missing or its
/// value is not in the image.
fn key_of(schema: &TableSchema, row: &Row, columns: &[String]) -> Option<Row> {
    columns
        .iter()
        .map(|c| {
            let v = row.get(schema.column_index(c)?)?;
            (!matches!(v, Value::NotInImage | Value::Unchanged)).then(|| v.clone())
        })
        .collect()
}

/// The signal an inserted signal-table row carries.
fn parse_signal(change: &Change) -> Option<Signal> {
    if change.op != Op::Insert {
        return None;
    }
    let row = change.after.as_ref()?;
    let get = |name: &str| row.get(change.table.column_index(name)?);
    let kind = match get("kind")? {
        Value::Text(k) => k.as_str(),
        _ => return None,
    };
    if kind == kinds::SNAPSHOT {
        return match get("id")? {
            Value::Int(id) => Some(Signal::Requested(*id)),
            _ => None,
        };
    }
    // `jsonb` on PostgreSQL; `LONGTEXT` holding JSON on MariaDB.
    let (Value::Json(data) | Value::Text(data)) = get("data")? else {
        return None;
    };
    let token = serde_json::from_str::<serde_json::Value>(data)
        .ok()?
        .get("token")?
        .as_str()?
        .to_owned();
    match kind {
        kinds::WINDOW_OPEN => Some(Signal::Open(token)),
        kinds::WINDOW_CLOSE => Some(Signal::Close(token)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
