//! Where each node of the YAML file sits, by config path.
//!
//! Serde hands validation a plain `Config` with no positions, so before deserializing we walk
//! the parser's marked events once and record, for every node, its config path
//! (`mappings[0].outputs[1].format`) with the line and column of its key and of its value.
//! Validation looks paths up here; a path with no node of its own (a missing field) falls back
//! to its nearest ancestor. Deserialization errors come with a position but no path, so the
//! index also answers the reverse question: which path is at this position?

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, Span};

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    /// Line number, starting at 1.
    pub(crate) line: usize,
    /// Column number in characters, starting at 1.
    pub(crate) column: usize,
}

impl Position {
    fn from_marker(marker: Marker) -> Self {
        Self {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// One node of the file: its path, the position of its mapping key (if it has one) and the
/// position of its value.
#[derive(Debug)]
struct Node {
    path: String,
    key: Option<Position>,
    value: Position,
}

/// Path to position index of one YAML document.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// Nodes in document order.
    nodes: Vec<Node>,
    /// Path to index into `nodes`.
    by_path: HashMap<String, usize>,
}

impl Positions {
    /// Indexes every node of `text`. Stops quietly at a syntax error: the deserializer reports
    /// that error itself, and what was indexed so far still names its path.
    pub(crate) fn scan(text: &str) -> Self {
        let mut walker = Walker::default();
        for item in Parser::new_from_str(text) {
            match item {
                Ok((event, span)) => walker.event(&event, span),
                Err(_) => {
                    walker.abort();
                    break;
                }
            }
        }
        walker.positions
    }

    /// Position of the value at `path`, or of its nearest ancestor that is in the file.
    pub(crate) fn lookup(&self, path: &str) -> Option<Position> {
        let mut current = path;
        loop {
            if let Some(&index) = self.by_path.get(current) {
                return Some(self.nodes[index].value);
            }
            if current.is_empty() {
                return None;
            }
            current = parent_path(current);
        }
    }

    /// Position of the key of the value at `path` (of the value itself for sequence items and
    /// the root), or of its nearest ancestor that is in the file.
    pub(crate) fn lookup_key(&self, path: &str) -> Option<Position> {
        match self.by_path.get(path) {
            Some(&index) => Some(self.nodes[index].key.unwrap_or(self.nodes[index].value)),
            None => self.lookup(path),
        }
    }

    /// Path of the node whose value (not key) starts at `position`: for a block mapping, that
    /// is where its first key is.
    pub(crate) fn value_path_at(&self, position: Position) -> Option<&str> {
        self.nodes
            .iter()
            .rev()
            .find(|node| node.value == position)
            .map(|node| node.path.as_str())
    }

    /// True when the file has a node at exactly `path`.
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// Path of the node whose key or value starts at `position`; failing that, the last node
    /// that starts before it (the innermost node around it, in a block document).
    pub(crate) fn path_at(&self, position: Position) -> Option<&str> {
        let exact = self
            .nodes
            .iter()
            .rev()
            .find(|node| node.key == Some(position) || node.value == position);
        let enclosing = || {
            self.nodes
                .iter()
                .rev()
                .find(|node| node.key.unwrap_or(node.value) <= position)
        };
        exact.or_else(enclosing).map(|node| node.path.as_str())
    }

    fn record(&mut self, path: String, key: Option<Position>, value: Position) {
        self.by_path.insert(path.clone(), self.nodes.len());
        self.nodes.push(Node { path, key, value });
    }
}

/// The path one level up: `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> ``.
pub(crate) fn parent_path(path: &str) -> &str {
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        last_unquoted_dot(path)
    };
    cut.map_or("", |at| &path[..at])
}

fn last_unquoted_dot(path: &str) -> Option<usize> {
    let mut quoted = false;
    let mut last = None;
    for (at, ch) in path.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '.' | '[' if !quoted => last = Some(at),
            _ => {}
        }
    }
    last
}

/// `parent.key`, quoting keys that would make the path ambiguous (`properties."linger.ms"`).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// An open collection while walking the events.
#[derive(Debug)]
struct Frame {
    path: String,
    kind: FrameKind,
    /// A collection used as a mapping key (`? [a, b]: x`); its children are not indexed.
    is_key: bool,
}

#[derive(Debug)]
enum FrameKind {
    Mapping {
        pending_key: Option<(String, Position)>,
    },
    Sequence {
        next_index: usize,
    },
}

/// Where the next node goes: a mapping key, or a value at a path.
enum Slot {
    Key,
    Value { path: String, key: Option<Position> },
}

#[derive(Debug, Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: Positions,
}

impl Walker {
    fn event(&mut self, event: &Event<'_>, span: Span) {
        let at = Position::from_marker(span.start);
        match event {
            Event::Scalar(text, ..) => self.leaf(Some(text), at),
            Event::Alias(_) => self.leaf(None, at),
            Event::MappingStart(..) => self.open(FrameKind::Mapping { pending_key: None }, at),
            Event::SequenceStart(..) => self.open(FrameKind::Sequence { next_index: 0 }, at),
            Event::MappingEnd | Event::SequenceEnd => self.close(at),
            _ => {}
        }
    }

    /// Called at a syntax error: a key waiting for its value still gets indexed, so the error
    /// can name it.
    fn abort(&mut self) {
        if let Some(Frame {
            path,
            kind: FrameKind::Mapping {
                pending_key: Some((key, at)),
            },
            ..
        }) = self.stack.last()
        {
            self.positions.record(join_key(path, key), Some(*at), *at);
        }
    }

    fn leaf(&mut self, text: Option<&str>, at: Position) {
        match self.next_slot() {
            Slot::Key => self.set_pending_key(text.unwrap_or("*").to_owned(), at),
            Slot::Value { path, key } => self.positions.record(path, key, at),
        }
    }

    fn open(&mut self, kind: FrameKind, at: Position) {
        let (path, is_key) = match self.next_slot() {
            Slot::Key => (String::from("?"), true),
            Slot::Value { path, key } => {
                self.positions.record(path.clone(), key, at);
                (path, false)
            }
        };
        self.stack.push(Frame { path, kind, is_key });
    }

    fn close(&mut self, at: Position) {
        if let Some(frame) = self.stack.pop()
            && frame.is_key
        {
            self.set_pending_key(String::from("?"), at);
        }
    }

    fn set_pending_key(&mut self, key: String, at: Position) {
        if let Some(Frame {
            kind: FrameKind::Mapping { pending_key },
            ..
        }) = self.stack.last_mut()
        {
            *pending_key = Some((key, at));
        }
    }

    /// Decides what the next node is and advances the enclosing collection past it.
    fn next_slot(&mut self) -> Slot {
        let Some(frame) = self.stack.last_mut() else {
            return Slot::Value {
                path: String::new(),
                key: None,
            };
        };
        let inside_key = frame.is_key;
        let slot = match &mut frame.kind {
            FrameKind::Mapping { pending_key } => match pending_key.take() {
                None => Slot::Key,
                Some((key, key_at)) => Slot::Value {
                    path: join_key(&frame.path, &key),
                    key: Some(key_at),
                },
            },
            FrameKind::Sequence { next_index } => {
                *next_index += 1;
                Slot::Value {
                    path: join_index(&frame.path, *next_index - 1),
                    key: None,
                }
            }
        };
        match slot {
            Slot::Value { .. } if inside_key => Slot::Value {
                path: String::from("?"),
                key: None,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
source:
  postgres:
    host: db
mappings:
  - tables: [\"public.a\", \"public.b\"]
    outputs:
      - topic: t
        format: json
kafka:
  properties:
    linger.ms: \"5\"
";

    fn pos(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn values_are_indexed_by_path() {
        let positions = Positions::scan(DOC);
        assert_eq!(positions.lookup("source.postgres.host"), pos(3, 11));
        assert_eq!(positions.lookup("mappings[0].tables[1]"), pos(5, 26));
        assert_eq!(
            positions.lookup("mappings[0].outputs[0].format"),
            pos(8, 17)
        );
        assert_eq!(
            positions.lookup("kafka.properties.\"linger.ms\""),
            pos(11, 16)
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let positions = Positions::scan(DOC);
        assert_eq!(
            positions.lookup("mappings[0].outputs[0].key_columns"),
            positions.lookup("mappings[0].outputs[0]")
        );
        assert_eq!(positions.lookup("mappings[0].outputs[0]"), pos(7, 9));
    }

    #[test]
    fn positions_map_back_to_paths() {
        let positions = Positions::scan(DOC);
        let key = Position { line: 8, column: 9 };
        assert_eq!(
            positions.path_at(key),
            Some("mappings[0].outputs[0].format")
        );
        let inside = Position {
            line: 8,
            column: 12,
        };
        assert_eq!(
            positions.path_at(inside),
            Some("mappings[0].outputs[0].format")
        );
    }

    #[test]
    fn parent_paths_strip_one_segment() {
        assert_eq!(parent_path("a.b[2].c"), "a.b[2]");
        assert_eq!(parent_path("a.b[2]"), "a.b");
        assert_eq!(parent_path("a.\"x.y\""), "a");
        assert_eq!(parent_path("a"), "");
    }
}
