//! Mappings: which tables go to which outputs.
//!
//! A mapping names tables with glob patterns (`public.order_*`) and lists outputs. A table may
//! match several mappings; then every matching mapping applies, and the table's changes are
//! published to the outputs of all of them. A mapping marked `default: true` is the fallback
//! rule: it applies to the tables its patterns select only when no other mapping selects them.

use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::output::Output;
use crate::positions::{join_index, join_key};
use crate::validate::Validation;

/// A set of tables and the outputs their changes go to.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Tables as `schema.table` (PostgreSQL) or `db.table` (MySQL); glob patterns such as
    /// `public.*` or `shop.order_?` are allowed.
    pub tables: Vec<String>,
    /// Where the changes of these tables are published.
    pub outputs: Vec<Output>,
    /// The fallback rule: when true, this mapping applies only to those of its tables that no
    /// mapping without `default` selects (e.g. `tables: ["*.*"]`, `default: true` publishes
    /// every table not mapped otherwise). Default false.
    #[serde(default)]
    pub default: bool,
    /// `tables`, compiled during validation.
    #[serde(skip)]
    matcher: GlobSet,
}

impl Mapping {
    /// True when table `namespace.table` (schema or database, then table) is one of this
    /// mapping's tables. Always false on a mapping that did not come from [`crate::parse`] or
    /// [`crate::load`].
    pub fn matches(&self, namespace: &str, table: &str) -> bool {
        self.matcher.is_match(format!("{namespace}.{table}"))
    }

    fn validate(&mut self, cx: &mut Validation<'_>, path: &str, has_encryption: bool) {
        let tables_path = join_key(path, "tables");
        if self.tables.is_empty() {
            let hint = "list tables such as `public.orders` or `shop.*`";
            cx.error(&tables_path, "no table is listed", hint);
        }
        self.matcher = compile_tables(cx, &tables_path, &self.tables);
        let outputs_path = join_key(path, "outputs");
        if self.outputs.is_empty() {
            let hint = "add an output with `topic` and `format`";
            cx.error(&outputs_path, "no output is listed", hint);
        }
        for (index, output) in self.outputs.iter().enumerate() {
            output.validate(cx, &join_index(&outputs_path, index), has_encryption);
        }
    }
}

fn compile_tables(cx: &mut Validation<'_>, path: &str, tables: &[String]) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for (index, pattern) in tables.iter().enumerate() {
        let at = join_index(path, index);
        if !pattern.contains('.') {
            cx.error(
                &at,
                format!("`{pattern}` does not say which schema or database the table is in"),
                "write `schema.table` or `db.table`, e.g. `public.orders` or `*.orders`",
            );
        }
        match Glob::new(pattern) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(err) => cx.error(
                &at,
                format!("`{pattern}` is not a valid glob: {}", err.kind()),
                "use `*`, `?`, `[abc]` and `{a,b}`; escape special characters as `[*]`",
            ),
        }
    }
    builder.build().unwrap_or_default()
}

/// Validates every mapping, then checks that topics are not written twice with one format, or
/// with two formats.
pub(crate) fn validate_mappings(
    cx: &mut Validation<'_>,
    mappings: &mut [Mapping],
    has_encryption: bool,
) {
    if mappings.is_empty() {
        let hint = "add a mapping with `tables` and `outputs`";
        cx.error(
            "mappings",
            "no mapping is given, so nothing would be published",
            hint,
        );
    }
    for (index, mapping) in mappings.iter_mut().enumerate() {
        mapping.validate(cx, &join_index("mappings", index), has_encryption);
    }
    check_topic_conflicts(cx, mappings);
}

/// The first output seen for a topic: its path, mapping and format.
struct FirstUse {
    path: String,
    mapping: usize,
    format: String,
}

fn check_topic_conflicts(cx: &mut Validation<'_>, mappings: &[Mapping]) {
    let mut first_use: HashMap<&str, FirstUse> = HashMap::new();
    for (m, mapping) in mappings.iter().enumerate() {
        for (o, output) in mapping.outputs.iter().enumerate() {
            let path = join_index(&join_key(&join_index("mappings", m), "outputs"), o);
            let format = output.format_identity();
            let Some(first) = first_use.get(output.topic.as_str()) else {
                let first = FirstUse {
                    path,
                    mapping: m,
                    format,
                };
                first_use.insert(&output.topic, first);
                continue;
            };
            report_conflict(cx, &path, &output.topic, &format, first, m);
        }
    }
}

fn report_conflict(
    cx: &mut Validation<'_>,
    path: &str,
    topic: &str,
    format: &str,
    first: &FirstUse,
    mapping: usize,
) {
    let at = join_key(path, "topic");
    if first.format != format {
        cx.error(
            &at,
            format!(
                "topic `{topic}` gets format `{format}` here but `{}` from {}",
                first.format, first.path
            ),
            "a topic carries one format: give this output its own topic",
        );
    } else if first.mapping == mapping {
        cx.error(
            &at,
            format!(
                "duplicate output: {} already writes `{format}` to `{topic}`",
                first.path
            ),
            "remove one of the two outputs",
        );
    }
}
