//! CEL expressions over one operation: an output's `filter`, its computed `headers` and its
//! `route`.
//!
//! Expressions are written in the [Common Expression Language](https://github.com/google/cel-spec)
//! and evaluated by the `cel` crate; ordo adds no syntax of its own.
//!
//! # Variables
//! | name | CEL type | value |
//! |---|---|---|
//! | `op` | string | `c`, `u`, `d`, `r` or `t` ([`Op::code`](crate::Op::code)) |
//! | `table` | string | the table's name, without its namespace |
//! | `schema` | string | the table's namespace (PostgreSQL schema, MySQL database) |
//! | `before`, `after` | map of string to values | the row images, column name to value |
//! | `txn` | map | `txn.id` (string) and `txn.commit_time` (timestamp) |
//!
//! An image the operation does not have (`before` of an insert, `after` of a delete, both of a
//! truncate) is an **empty map**, so `has(after.amount)` is false for a delete. A column whose
//! value the source did not send ([`Value::Unchanged`], [`Value::NotInImage`]) is **absent**
//! from its map, never `null`: `after.doc` is then an error ("no such key") and
//! `has(after.doc)` is false. SQL `NULL` is CEL `null`. A filter that reads a column which
//! some operations lack should test for it first: `has(after.amount) && after.amount > 500`,
//! or `op != "d" && after.amount > 500`.
//!
//! # Column values
//! | column value | CEL value |
//! |---|---|
//! | bool | bool |
//! | signed integers | int |
//! | unsigned integers | uint |
//! | float, double | double |
//! | exact decimal | **double** (nearest; `NaN` and the infinities as such), so `after.amount > 500` works. Compare exact amounts with care |
//! | text, enum, JSON document | string (JSON stays text) |
//! | binary | bytes |
//! | timestamp with time zone | timestamp |
//! | timestamp without time zone | timestamp, reading the wall-clock value as UTC |
//! | infinite timestamps | string `infinity` or `-infinity` |
//! | date, time, time with zone, interval, UUID, bit string | string, as the `json` format writes it (`2024-05-01`, `12:30:00`, `P1D`, ...) |
//! | array, MySQL `SET` | list |
//!
//! # Header values
//! [`Expr::header_value`] renders a result as text: strings as they are, integers and
//! doubles in decimal, bools as `true`/`false`, bytes as they are, timestamps in RFC 3339
//! (`2024-05-01T12:30:00Z`). A `null` result omits the header from the record. Lists and maps
//! are refused.
//!
//! # Routes
//! [`Expr::topic_name`] takes a string result as a topic name. Any other result, an empty
//! string, `.`, `..`, a name with a character other than `a-z`, `A-Z`, `0-9`, `.`, `_` and `-`,
//! or one longer than 249 characters is an [`ExprError`] that says which rule the name broke
//! (and at which character) without quoting it, since it is made of row values.
//!
//! # Error handling
//! [`Expr::compile`] reports syntax errors with their line and column inside the expression.
//! Evaluation errors (a missing key, a type mismatch, a division by zero) and non-bool filter
//! results are [`ExprError`]s; the messages name types and columns but never row values.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr, LiteralValue};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};

use crate::change::Row;
use crate::kcop::Operation;
use crate::schema::TableSchema;
use crate::value::{Timestamp, Value, format_uuid};

/// The variables an expression may use.
pub const VARIABLES: [&str; 6] = ["op", "table", "schema", "before", "after", "txn"];

/// The standard CEL environment, shared by every expression.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The expression is not valid CEL.
    #[error("CEL syntax error at line {line}, column {column} of the expression: {message}")]
    Syntax {
        /// Line inside the expression, from 1.
        line: usize,
        /// Column inside the expression, from 1.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Evaluation failed on an operation.
    #[error("evaluation failed: {0}")]
    Eval(String),
    /// A filter gave something else than a bool.
    #[error(
        "the filter gave a {actual}, not a bool; write a condition such as `after.amount > 500`"
    )]
    NotBool {
        /// The CEL type of the result.
        actual: String,
    },
    /// A route gave something else than a string.
    #[error(
        "the route gave a value of type {actual}, not a string; write an expression giving a topic name, such as `\"audit.\" + table`"
    )]
    NotString {
        /// The CEL type of the result.
        actual: String,
    },
    /// A route gave a string Kafka does not allow as a topic name.
    #[error(
        "the route gave {problem}, which is not a valid Kafka topic name; a topic name is 1 to 249 of the characters a-z, A-Z, 0-9, `.`, `_` and `-`"
    )]
    NotTopicName {
        /// Which rule the name broke, without the name.
        problem: String,
    },
    /// A header expression gave a list, a map or another value with no text form.
    #[error(
        "the header expression gave a {actual}; a header takes a string, number, bool, bytes, timestamp or null"
    )]
    NotHeaderValue {
        /// The CEL type of the result.
        actual: String,
    },
}

/// A compiled CEL expression.
pub struct Expr {
    source: String,
    program: Program,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compile `source`.
    ///
    /// # Errors
    /// [`ExprError::Syntax`] with the position of the first error.
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map_or((1, 1), |e| e.pos);
            ExprError::Syntax {
                line: usize::try_from(line).unwrap_or(1).max(1),
                column: usize::try_from(column).unwrap_or(1).max(1),
                message: first.map_or_else(|| "invalid expression".to_owned(), |e| e.msg.clone()),
            }
        })?;
        Ok(Expr {
            source: source.to_owned(),
            program,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate against one operation.
    ///
    /// # Errors
    /// [`ExprError::Eval`] when CEL cannot evaluate it (see the module docs).
    pub fn evaluate(&self, op: &Operation<'_>) -> Result<Cel, ExprError> {
        let mut cx = Context::with_env(Arc::clone(&ENV));
        let change = op.change;
        let schema = &change.table;
        cx.add_variable_from_value("op", change.op.code());
        cx.add_variable_from_value("table", schema.id.name.as_str());
        cx.add_variable_from_value("schema", schema.id.namespace.as_str());
        cx.add_variable_from_value("before", image(schema, change.before.as_ref()));
        cx.add_variable_from_value("after", image(schema, change.after.as_ref()));
        let txn = HashMap::from([
            (Key::from("id".to_owned()), Cel::from(op.txn.id.to_string())),
            (
                Key::from("commit_time".to_owned()),
                timestamp(op.txn.commit_time),
            ),
        ]);
        cx.add_variable_from_value("txn", txn);
        self.program
            .execute(&cx)
            .map_err(|e| ExprError::Eval(describe(&e)))
    }

    /// Evaluate as a filter: whether the operation goes through.
    ///
    /// # Errors
    /// When evaluation fails or the result is not a bool.
    pub fn matches(&self, op: &Operation<'_>) -> Result<bool, ExprError> {
        match self.evaluate(op)? {
            Cel::Bool(b) => Ok(b),
            other => Err(ExprError::NotBool {
                actual: other.type_of().to_string(),
            }),
        }
    }

    /// Evaluate as a header value: the result's text (see the module docs), or `None` for
    /// `null`.
    ///
    /// # Errors
    /// When evaluation fails or the result has no text form.
    pub fn header_value(&self, op: &Operation<'_>) -> Result<Option<Vec<u8>>, ExprError> {
        let text = match self.evaluate(op)? {
            Cel::Null => return Ok(None),
            Cel::String(s) => s.as_bytes().to_vec(),
            Cel::Bytes(b) => b.as_ref().clone(),
            Cel::Int(i) => i.to_string().into_bytes(),
            Cel::UInt(u) => u.to_string().into_bytes(),
            Cel::Float(f) => f.to_string().into_bytes(),
            Cel::Bool(b) => b.to_string().into_bytes(),
            Cel::Timestamp(t) => t
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into_bytes(),
            Cel::Duration(d) => format!("{}s", d.as_seconds_f64()).into_bytes(),
            other => {
                return Err(ExprError::NotHeaderValue {
                    actual: other.type_of().to_string(),
                });
            }
        };
        Ok(Some(text))
    }

    /// Evaluate as a route: the topic name the result gives (see the module docs).
    ///
    /// # Errors
    /// When evaluation fails, the result is not a string, or not a valid topic name.
    pub fn topic_name(&self, op: &Operation<'_>) -> Result<Arc<str>, ExprError> {
        match self.evaluate(op)? {
            Cel::String(name) => match topic_name_problem(&name) {
                None => Ok(Arc::from(name.as_str())),
                Some(problem) => Err(ExprError::NotTopicName { problem }),
            },
            other => Err(ExprError::NotString {
                actual: other.type_of().to_string(),
            }),
        }
    }

    /// Names the expression uses that are not [`VARIABLES`] (nor bound by a macro such as
    /// `all(x, ...)`), e.g. a misspelt `aftr`.
    pub fn unknown_variables(&self) -> BTreeSet<String> {
        let mut refs = References::default();
        refs.walk(self.program.expression(), &mut Vec::new());
        refs.unknown
    }

    /// Columns the expression reads as `before.x`, `after.x`, `before["x"]` or `after["x"]`
    /// that `schema` does not have. Presence tests (`has(after.x)`) are not counted.
    pub fn unknown_columns(&self, schema: &TableSchema) -> BTreeSet<String> {
        let mut refs = References::default();
        refs.walk(self.program.expression(), &mut Vec::new());
        refs.columns
            .into_iter()
            .filter(|c| schema.column_index(c).is_none())
            .collect()
    }
}

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// Which rule of Kafka's topic names `name` breaks, without quoting it (it is made of row
/// values), or `None` when it is a valid name.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an empty string".to_owned());
    }
    if name == "." || name == ".." {
        return Some("`.` or `..`".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(at) = name.chars().position(|c| !allowed(c)) {
        return Some(format!(
            "a name with a character Kafka does not allow at position {}",
            at + 1
        ));
    }
    (name.len() > MAX_TOPIC_LEN).then(|| format!("a name of {} characters", name.len()))
}

/// Names found while walking an expression.
#[derive(Default)]
struct References {
    columns: BTreeSet<String>,
    unknown: BTreeSet<String>,
}

impl References {
    fn walk(&mut self, e: &IdedExpr, bound: &mut Vec<String>) {
        match &e.expr {
            Node::Ident(name) if !bound.contains(name) && !VARIABLES.contains(&name.as_str()) => {
                self.unknown.insert(name.clone());
            }
            Node::Select(sel) => {
                if !sel.test && is_image(&sel.operand, bound) {
                    self.columns.insert(sel.field.clone());
                }
                self.walk(&sel.operand, bound);
            }
            Node::Call(call) => {
                if call.func_name == "_[_]"
                    && let [
                        target,
                        IdedExpr {
                            expr: Node::Literal(LiteralValue::String(s)),
                            ..
                        },
                    ] = call.args.as_slice()
                    && is_image(target, bound)
                {
                    self.columns.insert(s.inner().to_string());
                }
                call.target.iter().for_each(|t| self.walk(t, bound));
                call.args.iter().for_each(|a| self.walk(a, bound));
            }
            Node::Comprehension(c) => self.comprehension(c, bound),
            Node::List(list) => list.elements.iter().for_each(|x| self.walk(x, bound)),
            Node::Map(map) => map.entries.iter().for_each(|x| self.entry(&x.expr, bound)),
            Node::Struct(st) => st.entries.iter().for_each(|x| self.entry(&x.expr, bound)),
            _ => {}
        }
    }

    fn entry(&mut self, entry: &EntryExpr, bound: &mut Vec<String>) {
        match entry {
            EntryExpr::MapEntry(m) => {
                self.walk(&m.key, bound);
                self.walk(&m.value, bound);
            }
            EntryExpr::StructField(f) => self.walk(&f.value, bound),
        }
    }

    fn comprehension(&mut self, c: &cel::common::ast::ComprehensionExpr, bound: &mut Vec<String>) {
        self.walk(&c.iter_range, bound);
        self.walk(&c.accu_init, bound);
        let depth = bound.len();
        bound.push(c.iter_var.clone());
        bound.extend(c.iter_var2.iter().cloned());
        bound.push(c.accu_var.clone());
        for part in [&c.loop_cond, &c.loop_step, &c.result] {
            self.walk(part, bound);
        }
        bound.truncate(depth);
    }
}

fn is_image(e: &IdedExpr, bound: &[String]) -> bool {
    matches!(&e.expr, Node::Ident(n) if (n == "before" || n == "after") && !bound.contains(n))
}

/// Safe text for an evaluation error: types, names and operators, never values.
fn describe(e: &ExecutionError) -> String {
    let ty = |v: &Cel| v.type_of().to_string();
    match e {
        ExecutionError::NoSuchKey(k) => format!(
            "no such key `{k}`: the column is not in this image (no such column, an unchanged \
             TOAST value, a key-only old image, or an operation without this image); test with \
             `has(...)` first"
        ),
        ExecutionError::UndeclaredReference(name) => format!(
            "unknown name `{name}`; the variables are {}",
            VARIABLES.join(", ")
        ),
        ExecutionError::NoSuchOverload(o) => o.to_string(),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("a {} cannot be compared with a {}", ty(a), ty(b))
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            format!("`{op}` does not apply to a {} and a {}", ty(a), ty(b))
        }
        ExecutionError::UnexpectedType { got, want } => format!("got a {got}, expected {want}"),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "division by zero".to_owned()
        }
        ExecutionError::Overflow(op, _, _) => format!("integer overflow in `{op}`"),
        ExecutionError::FunctionError { function, .. } => format!("function `{function}` failed"),
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("a function takes {expected} arguments, not {actual}")
        }
        ExecutionError::IndexOutOfBounds(_) => "list index out of bounds".to_owned(),
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("`{method}` cannot be called on a {}", ty(target))
        }
        _ => "the expression cannot be evaluated on this operation".to_owned(),
    }
}

/// A row image as a CEL map of column name to value, markers left out.
fn image(schema: &TableSchema, row: Option<&Row>) -> Cel {
    let mut map = HashMap::new();
    for (col, v) in schema.columns.iter().zip(row.into_iter().flatten()) {
        if !v.is_marker() {
            map.insert(Key::from(col.name.clone()), cel_value(v));
        }
    }
    Cel::Map(Map { map: Arc::new(map) })
}

/// One column value as CEL sees it (see the module docs).
pub fn cel_value(v: &Value) -> Cel {
    let text = |s: String| Cel::String(Arc::new(s));
    match v {
        Value::Null | Value::Unchanged | Value::NotInImage => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Int(i) => Cel::Int(*i),
        Value::UInt(u) => Cel::UInt(*u),
        Value::Float32(f) => Cel::Float(f64::from(*f)),
        Value::Float64(f) => Cel::Float(*f),
        Value::Decimal(d) => Cel::Float(d.as_str().parse().unwrap_or(f64::NAN)),
        Value::Text(s) | Value::Enum(s) | Value::Json(s) => text(s.clone()),
        Value::Bytes(b) => Cel::Bytes(Arc::new(b.clone())),
        Value::Uuid(u) => text(format_uuid(u)),
        Value::Date(d) => text(d.to_string()),
        Value::Time(t) => text(t.to_string()),
        Value::TimeTz(t, z) => text(format!("{t}{z}")),
        Value::Interval(i) => text(i.to_string()),
        Value::Bits(b) => text(b.to_string()),
        Value::Timestamp(ts) | Value::TimestampTz(ts) => timestamp(*ts),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(cel_value).collect())),
        Value::Set(items) => Cel::List(Arc::new(items.iter().map(|s| text(s.clone())).collect())),
    }
}

/// A timestamp as a CEL timestamp in UTC, or its text when chrono cannot represent it.
fn timestamp(ts: Timestamp) -> Cel {
    let instant = ts
        .is_finite()
        .then(|| chrono::DateTime::from_timestamp_micros(ts.0))
        .flatten();
    match instant {
        Some(t) => Cel::Timestamp(t.fixed_offset()),
        None => Cel::String(Arc::new(ts.to_string())),
    }
}
