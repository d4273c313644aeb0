//! The validation pass: collects every problem with its path and position.

use crate::error::{ConfigError, ConfigErrors};
use crate::positions::Positions;

/// Looks up environment variables; `std::env::var` in production, a map in tests.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// State of one validation pass over a parsed file.
pub(crate) struct Validation<'a> {
    origin: &'a str,
    positions: &'a Positions,
    env: EnvLookup<'a>,
    errors: Vec<ConfigError>,
}

impl<'a> Validation<'a> {
    pub(crate) fn new(origin: &'a str, positions: &'a Positions, env: EnvLookup<'a>) -> Self {
        Self {
            origin,
            positions,
            env,
            errors: Vec::new(),
        }
    }

    /// Records a problem with the value at `path`, pointing at that value's line and column.
    pub(crate) fn error(
        &mut self,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let position = self.positions.lookup(path);
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            path: path.to_owned(),
            line: position.map(|at| at.line),
            column: position.map(|at| at.column),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }

    /// True when the file itself sets the value at `path` (rather than a default).
    pub(crate) fn is_written(&self, path: &str) -> bool {
        self.positions.contains(path)
    }

    /// The value of environment variable `name`, if set.
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Every problem found, in file order, or `Ok` when there were none.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|error| (error.line, error.column));
        Err(ConfigErrors {
            errors: self.errors,
        })
    }
}

/// Reports each value of `items` that appeared earlier in the list.
pub(crate) fn report_duplicates(cx: &mut Validation<'_>, path: &str, items: &[String], what: &str) {
    for (index, item) in items.iter().enumerate() {
        if items[..index].contains(item) {
            cx.error(
                &crate::positions::join_index(path, index),
                format!("{what} `{item}` is listed twice"),
                "remove the duplicate",
            );
        }
    }
}

/// Reports `value` at `path` when it is empty or only whitespace.
pub(crate) fn require_text(cx: &mut Validation<'_>, path: &str, value: &str, hint: &str) {
    if value.trim().is_empty() {
        cx.error(path, "must not be empty", hint);
    }
}

/// Reports `value` at `path` when it is zero.
pub(crate) fn require_positive(cx: &mut Validation<'_>, path: &str, value: u64) {
    if value == 0 {
        cx.error(path, "must be greater than 0", "use a positive number");
    }
}
