//! Table schemas with versions, so a schema change in the middle of a stream is explicit.

use std::fmt;
use std::sync::Arc;

/// A table's name: namespace (PostgreSQL schema, MySQL database) and table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// PostgreSQL schema or MySQL database.
    pub namespace: String,
    /// Table name.
    pub name: String,
}

impl TableId {
    /// A table id from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableId {
    /// `namespace.name`, the form mappings match against.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// The kind of data a column holds, normalised across sources; formats (Avro, JSON) derive
/// their field types from it. The exact source type stays in [`Column::type_name`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// Boolean.
    Bool,
    /// Signed integer of the given width in bits (8, 16, 24, 32, 64).
    Int(u8),
    /// Unsigned integer of the given width in bits.
    UInt(u8),
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Exact decimal; precision and scale when the type declares them.
    Decimal {
        /// Total digits, if declared.
        precision: Option<u32>,
        /// Digits after the point, if declared.
        scale: Option<u32>,
    },
    /// Character data.
    Text,
    /// Binary data.
    Bytes,
    /// Date.
    Date,
    /// Time of day.
    Time,
    /// Time of day with zone.
    TimeTz,
    /// Timestamp without zone.
    Timestamp,
    /// Timestamp with zone.
    TimestampTz,
    /// Interval.
    Interval,
    /// JSON document.
    Json,
    /// UUID.
    Uuid,
    /// Enum with its labels, when known.
    Enum(Vec<String>),
    /// Set with its labels (MySQL).
    Set(Vec<String>),
    /// Bit string.
    Bits,
    /// Array of the element kind.
    Array(Box<ColumnKind>),
    /// A type ordo passes through as text (the source's text form).
    Other,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// The source's type name, e.g. `numeric(10,2)`, `varchar(40)`, `int unsigned`.
    pub type_name: String,
    /// Normalised kind.
    pub kind: ColumnKind,
    /// Whether the column may be NULL (true when the source does not say).
    pub nullable: bool,
}

/// The shape of a table at one point in the stream.
///
/// `version` increases each time the source reports a different shape for the same table
/// (PostgreSQL sends a new Relation message, MySQL a new table map or DDL), so every
/// [`Change`](crate::Change) names the exact schema its rows follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableSchema {
    /// Table name.
    pub id: TableId,
    /// Schema version, starting at 1 for the first shape seen by this capture.
    pub version: u32,
    /// Columns in source order; row values are positional against these.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key (primary key or replica identity), in key order.
    pub key: Vec<usize>,
}

impl TableSchema {
    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Whether the shape (columns and key) equals `other`'s, ignoring the version.
    pub fn same_shape(&self, other: &TableSchema) -> bool {
        self.id == other.id && self.columns == other.columns && self.key == other.key
    }
}

/// Shared handle to a schema; changes reference the schema they follow.
pub type SchemaRef = Arc<TableSchema>;
