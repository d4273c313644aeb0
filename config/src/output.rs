//! One output of a mapping: a topic, a record format, and how rows are keyed, projected,
//! filtered and encrypted on the way.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::positions::{join_index, join_key};
use crate::topic::{render, template_problems};
use crate::validate::{Validation, report_duplicates, require_positive};

/// Where and how a mapping's changes are published.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Topic name, or a template with `{db}`, `{schema}` and `{table}`, e.g.
    /// `cdc.{schema}.{table}`.
    pub topic: String,
    /// Record format.
    pub format: Format,
    /// Name of a KCOP registered by the user; required with `format: custom`, not allowed
    /// otherwise.
    #[serde(default)]
    pub kcop: Option<String>,
    /// Options of the format or custom KCOP, passed to it as is. Default empty.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// What the record key is. Default `primary`.
    #[serde(default)]
    pub key: KeyMode,
    /// Key columns, in key order; required with `key: columns`, not allowed otherwise.
    #[serde(default)]
    pub key_columns: Vec<String>,
    /// Columns to publish, in order; all columns when not set.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// CEL expression; only changes for which it is true are published, e.g.
    /// `after.amount > 500`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Record headers: header name to CEL expression giving its value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// CEL expression giving the topic of each change's records instead of `topic`, e.g.
    /// `after.region == "eu" ? "orders.eu" : "orders.other"` or `"audit." + table`. The result
    /// must be a valid topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_` and `-`); routed topics
    /// are created like `topic`, with `partitions`. It sees the row as captured, before
    /// `encrypt`: a route that reads an encrypted column reveals its value in the topic name.
    /// Deletes and truncates have no `after`; test with `has(after.region)` first.
    #[serde(default)]
    pub route: Option<String>,
    /// How deletes are published. Default `image`.
    #[serde(default)]
    pub deletes: DeleteMode,
    /// What happens with `TRUNCATE`. Default `record`.
    #[serde(default)]
    pub truncate: TruncateMode,
    /// Columns whose values are encrypted with the active key; needs the `encryption`
    /// section.
    #[serde(default)]
    pub encrypt: Vec<String>,
    /// Partitions to create this topic with; `kafka.topic_partitions` when not set.
    #[serde(default)]
    pub partitions: Option<u32>,
}

/// Record formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON object per change with `before`, `after` and metadata.
    Json,
    /// Avro, with schemas in the schema registry.
    Avro,
    /// Debezium-compatible JSON envelope.
    Debezium,
    /// One CSV line per change with audit columns.
    CsvAudit,
    /// Audit rows: one row per change with operation and commit metadata columns.
    AuditRows,
    /// A user-registered KCOP, named by `kcop`.
    Custom,
}

impl Format {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Avro => "avro",
            Format::Debezium => "debezium",
            Format::CsvAudit => "csv-audit",
            Format::AuditRows => "audit-rows",
            Format::Custom => "custom",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a record's key is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// The table's primary key (or replica identity).
    #[default]
    Primary,
    /// The columns listed in `key_columns`.
    Columns,
    /// No key; records are spread over partitions.
    None,
}

/// How deleted rows are published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// A record with the row's last image.
    #[default]
    Image,
    /// The delete record followed by a tombstone (null value) so compaction drops the key.
    Tombstone,
}

/// What happens when a table is truncated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncateMode {
    /// Publish a truncate record.
    #[default]
    Record,
    /// Publish nothing.
    Skip,
}

impl KeyMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Primary => "primary",
            KeyMode::Columns => "columns",
            KeyMode::None => "none",
        }
    }
}

impl Output {
    /// The topic for a change to `table`: the template with `{db}`, `{schema}` and `{table}`
    /// filled in. For MySQL sources pass the database name as both `db` and `schema`.
    /// Characters Kafka does not allow in topic names become `_`.
    pub fn topic_for(&self, db: &str, schema: &str, table: &str) -> String {
        render(&self.topic, db, schema, table)
    }

    /// True when the topic depends on the table (it has placeholders).
    pub fn is_templated(&self) -> bool {
        self.topic.contains('{')
    }

    /// `format`, or `custom:<kcop>` for custom outputs: two outputs with different
    /// identities cannot share a topic.
    pub(crate) fn format_identity(&self) -> String {
        match (&self.format, &self.kcop) {
            (Format::Custom, Some(kcop)) => format!("custom:{kcop}"),
            (format, _) => format.to_string(),
        }
    }

    pub(crate) fn validate(&self, cx: &mut Validation<'_>, path: &str, has_encryption: bool) {
        let at = |field: &str| join_key(path, field);
        for (message, hint) in template_problems(&self.topic) {
            cx.error(&at("topic"), message, hint);
        }
        self.validate_kcop(cx, path);
        self.validate_key(cx, path);
        self.validate_columns(cx, path);
        self.validate_expressions(cx, path);
        self.validate_encrypt(cx, path, has_encryption);
        if let Some(partitions) = self.partitions {
            require_positive(cx, &at("partitions"), u64::from(partitions));
        }
    }

    fn validate_kcop(&self, cx: &mut Validation<'_>, path: &str) {
        match (&self.format, &self.kcop) {
            (Format::Custom, None) => cx.error(
                path,
                "`format: custom` needs `kcop`",
                "add `kcop: <name>` with the name the KCOP was registered under",
            ),
            (Format::Custom, Some(kcop)) if kcop.trim().is_empty() => cx.error(
                &join_key(path, "kcop"),
                "must not be empty",
                "give the name the KCOP was registered under",
            ),
            (format, Some(_)) if *format != Format::Custom => cx.error(
                &join_key(path, "kcop"),
                format!("`kcop` is only used with `format: custom`, not `{format}`"),
                "remove `kcop`, or set `format: custom`",
            ),
            _ => {}
        }
    }

    fn validate_key(&self, cx: &mut Validation<'_>, path: &str) {
        let columns_path = join_key(path, "key_columns");
        match self.key {
            KeyMode::Columns if self.key_columns.is_empty() => cx.error(
                &join_key(path, "key"),
                "`key: columns` needs `key_columns`",
                "list the key columns, e.g. `key_columns: [id]`",
            ),
            KeyMode::Columns => report_duplicates(cx, &columns_path, &self.key_columns, "column"),
            KeyMode::Primary | KeyMode::None if !self.key_columns.is_empty() => cx.error(
                &columns_path,
                format!(
                    "`key_columns` is only used with `key: columns`, not `{}`",
                    self.key.as_str()
                ),
                "set `key: columns`, or remove `key_columns`",
            ),
            _ => {}
        }
        if self.deletes == DeleteMode::Tombstone && self.key == KeyMode::None {
            cx.error(
                &join_key(path, "deletes"),
                "`deletes: tombstone` needs a record key, but `key` is `none`",
                "use `deletes: image`, or key the records",
            );
        }
    }

    fn validate_columns(&self, cx: &mut Validation<'_>, path: &str) {
        let Some(columns) = &self.columns else {
            return;
        };
        let columns_path = join_key(path, "columns");
        if columns.is_empty() {
            let hint = "list the columns to publish, or remove `columns` to publish all";
            cx.error(&columns_path, "no column is listed", hint);
        }
        report_duplicates(cx, &columns_path, columns, "column");
        for (index, column) in self.encrypt.iter().enumerate() {
            if !columns.contains(column) {
                cx.error(
                    &join_index(&join_key(path, "encrypt"), index),
                    format!("column `{column}` is encrypted but not in `columns`"),
                    "add it to `columns`, or stop encrypting it",
                );
            }
        }
    }

    fn validate_expressions(&self, cx: &mut Validation<'_>, path: &str) {
        let filter_example = "`after.amount > 500`";
        check_optional(cx, path, "filter", self.filter.as_deref(), filter_example);
        let route_example = "`\"audit.\" + table`";
        check_optional(cx, path, "route", self.route.as_deref(), route_example);
        let headers_path = join_key(path, "headers");
        for (name, expression) in &self.headers {
            let at = join_key(&headers_path, name);
            if name.trim().is_empty() {
                cx.error(&at, "header name is empty", "name the header");
            }
            if expression.trim().is_empty() {
                let hint = "write a CEL expression such as `after.region`";
                cx.error(&at, format!("header `{name}` has no expression"), hint);
            } else {
                check_cel(cx, &at, expression);
            }
        }
    }

    fn validate_encrypt(&self, cx: &mut Validation<'_>, path: &str, has_encryption: bool) {
        let encrypt_path = join_key(path, "encrypt");
        if !self.encrypt.is_empty() && !has_encryption {
            cx.error(
                &encrypt_path,
                "columns are encrypted but there is no `encryption` section",
                "add `encryption:` with `active_key` and `keys`",
            );
        }
        report_duplicates(cx, &encrypt_path, &self.encrypt, "column");
    }
}

/// Checks the optional expression `field` (`filter`, `route`) of the output at `path`: not
/// empty, valid CEL.
fn check_optional(
    cx: &mut Validation<'_>,
    path: &str,
    field: &str,
    expression: Option<&str>,
    example: &str,
) {
    let Some(expression) = expression else {
        return;
    };
    let at = join_key(path, field);
    if expression.trim().is_empty() {
        let hint = format!("write a CEL expression such as {example}, or remove `{field}`");
        cx.error(&at, format!("the {field} is empty"), hint);
    } else {
        check_cel(cx, &at, expression);
    }
}

/// Reports a CEL syntax error in `expression` at `path`, with its line and column inside the
/// expression. Names and types are only known per table, when the daemon builds the output.
fn check_cel(cx: &mut Validation<'_>, path: &str, expression: &str) {
    let Err(errors) = cel::Program::compile(expression) else {
        return;
    };
    let Some(first) = errors.errors.first() else {
        return;
    };
    let (line, column) = (first.pos.0.max(1), first.pos.1.max(1));
    cx.error(
        path,
        format!(
            "CEL syntax error at line {line}, column {column} of the expression: {}",
            first.msg
        ),
        "fix the expression; it is CEL (https://github.com/google/cel-spec), with the \
         variables op, table, schema, before, after and txn",
    );
}
