//! Passwords and keys: read from the environment or a file, never printed.
//!
//! A secret is written as a string, where `${NAME}` is replaced by environment variable
//! `NAME` (`$${` writes a literal `${`), or as `{ file: path }` (the file's contents, without
//! a trailing newline) or `{ env: NAME }`. Secrets are resolved while the file is validated,
//! so a missing variable or unreadable file is reported with every other problem.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};

use zeroize::Zeroize;

use crate::validate::Validation;
use crate::yaml::with_hint;

/// A secret value. `Debug` and `Display` print `***`; it cannot be serialized. Its value (and
/// an inline value as written in the file) is overwritten with zeros when it is dropped;
/// copies handed to drivers (`expose`) are theirs to clear.
#[derive(Clone, Default)]
pub struct Secret {
    source: SecretSource,
    value: String,
}

/// Where a secret comes from, as written in the file.
#[derive(Clone)]
enum SecretSource {
    /// A string, possibly with `${NAME}` references.
    Text(String),
    /// `{ file: path }`.
    File(PathBuf),
    /// `{ env: NAME }`.
    Env(String),
}

impl Default for SecretSource {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl Secret {
    /// A secret with a known value, for configs built in code.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Self {
            source: SecretSource::Text(value.replace("${", "$${")),
            value,
        }
    }

    /// A secret read from `file` when resolved.
    pub(crate) fn from_file(file: PathBuf) -> Self {
        Self {
            source: SecretSource::File(file),
            value: String::new(),
        }
    }

    /// A secret read from environment variable `name` when resolved.
    pub(crate) fn from_env(name: String) -> Self {
        Self {
            source: SecretSource::Env(name),
            value: String::new(),
        }
    }

    /// The secret's value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// True when the value was written in the file as is, with no environment variable or file
    /// behind it.
    pub(crate) fn is_inline(&self) -> bool {
        matches!(&self.source, SecretSource::Text(text) if references(text).is_empty())
    }

    /// Reads the secret's value from its source; problems are reported against `path`.
    /// Returns whether the value could be read.
    pub(crate) fn resolve(&mut self, cx: &mut Validation<'_>, path: &str) -> bool {
        let resolved = match &self.source {
            SecretSource::Text(text) => interpolate(text, cx, path),
            SecretSource::Env(name) => env_var(name, cx, path),
            SecretSource::File(file) => read_file(file, cx, path),
        };
        let found = resolved.is_some();
        if let Some(value) = resolved {
            self.value.zeroize();
            self.value = value;
        }
        found
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.value.zeroize();
        if let SecretSource::Text(text) = &mut self.source {
            text.zeroize();
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn env_var(name: &str, cx: &mut Validation<'_>, path: &str) -> Option<String> {
    let value = cx.env(name);
    if value.is_none() {
        cx.error(
            path,
            format!("secret `{name}` is not set in the environment"),
            "export it or use `{ file: ... }`",
        );
    }
    value
}

fn read_file(file: &std::path::Path, cx: &mut Validation<'_>, path: &str) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_owned()),
        Err(err) => {
            cx.error(
                path,
                format!("cannot read secret file `{}`: {err}", file.display()),
                "check that the file exists and that ordo may read it",
            );
            None
        }
    }
}

/// A piece of a secret string: literal text or an environment variable reference.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Var(&'a str),
    /// `${` with no closing `}`.
    Unterminated,
}

/// Splits `text` at `${NAME}` references; `$${` is a literal `${`.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push(Piece::Literal(&rest[..at]));
            out.push(Piece::Literal("${"));
            rest = escaped;
        } else if let Some(inner) = after.strip_prefix('{') {
            out.push(Piece::Literal(&rest[..at]));
            let Some(end) = inner.find('}') else {
                out.push(Piece::Unterminated);
                return out;
            };
            out.push(Piece::Var(&inner[..end]));
            rest = &inner[end + 1..];
        } else {
            out.push(Piece::Literal(&rest[..=at]));
            rest = after;
        }
    }
    out.push(Piece::Literal(rest));
    out
}

fn references(text: &str) -> Vec<Piece<'_>> {
    pieces(text)
        .into_iter()
        .filter(|piece| !matches!(piece, Piece::Literal(_)))
        .collect()
}

fn interpolate(text: &str, cx: &mut Validation<'_>, path: &str) -> Option<String> {
    let mut value = String::with_capacity(text.len());
    let mut complete = true;
    for piece in pieces(text) {
        match piece {
            Piece::Literal(literal) => value.push_str(literal),
            Piece::Var(name) if !is_var_name(name) => {
                complete = false;
                cx.error(
                    path,
                    format!("`${{{name}}}` is not a valid environment variable reference"),
                    "use letters, digits and `_` in the name, or write `$${` for a literal `${`",
                );
            }
            Piece::Var(name) => match env_var(name, cx, path) {
                Some(var) => value.push_str(&var),
                None => complete = false,
            },
            Piece::Unterminated => {
                complete = false;
                cx.error(
                    path,
                    "`${` is not closed with `}`",
                    "close the reference as `${NAME}`, or write `$${` for a literal `${`",
                );
            }
        }
    }
    complete.then_some(value)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// `{ file: path }` or `{ env: NAME }` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    file: Option<PathBuf>,
    env: Option<String>,
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, `{ file: path }` or `{ env: NAME }`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Secret, E> {
        Ok(Secret {
            source: SecretSource::Text(text.to_owned()),
            value: String::new(),
        })
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Secret, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Secret, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Secret, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Secret, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Secret, A::Error> {
        let written = SecretRef::deserialize(MapAccessDeserializer::new(map))?;
        match (written.file, written.env) {
            (Some(file), None) => Ok(Secret::from_file(file)),
            (None, Some(name)) => Ok(Secret::from_env(name)),
            _ => Err(de::Error::custom(with_hint(
                "a secret needs exactly one of `file` or `env`",
                "write `{ file: /path/to/secret }` or `{ env: NAME }`",
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Secret")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A secret: a string where `${NAME}` is replaced by environment \
                variable NAME (`$${` for a literal `${`), or `{ file: path }`, or `{ env: NAME }`.",
            "oneOf": [
                { "type": ["string", "number", "boolean"] },
                {
                    "type": "object",
                    "properties": { "file": { "type": "string" } },
                    "required": ["file"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": { "env": { "type": "string" } },
                    "required": ["env"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::Positions;

    fn resolve(text: &str) -> Result<String, Vec<String>> {
        let positions = Positions::default();
        let env = |name: &str| (name == "PW").then(|| String::from("hunter2"));
        let mut cx = Validation::new("test.yaml", &positions, &env);
        let mut secret: Secret = serde_saphyr::from_str(text).unwrap();
        secret.resolve(&mut cx, "password");
        match cx.finish() {
            Ok(()) => Ok(secret.expose().to_owned()),
            Err(errors) => Err(errors.errors.into_iter().map(|e| e.message).collect()),
        }
    }

    #[test]
    fn interpolates_environment_variables() {
        assert_eq!(resolve("\"${PW}\"").unwrap(), "hunter2");
        assert_eq!(resolve("\"a-${PW}-b\"").unwrap(), "a-hunter2-b");
        assert_eq!(resolve("\"$${PW}\"").unwrap(), "${PW}");
        assert_eq!(resolve("\"cost $5\"").unwrap(), "cost $5");
        assert_eq!(resolve("{ env: PW }").unwrap(), "hunter2");
        assert_eq!(resolve("12345").unwrap(), "12345");
    }

    #[test]
    fn reports_missing_and_malformed_references() {
        assert_eq!(
            resolve("\"${NOPE}\"").unwrap_err(),
            ["secret `NOPE` is not set in the environment"]
        );
        assert_eq!(
            resolve("\"${PW\"").unwrap_err(),
            ["`${` is not closed with `}`"]
        );
        assert_eq!(
            resolve("\"${1x}\"").unwrap_err(),
            ["`${1x}` is not a valid environment variable reference"]
        );
    }

    #[test]
    fn reads_files_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            resolve(&format!("{{ file: {} }}", file.display())).unwrap(),
            "s3cret"
        );
        let missing = resolve("{ file: /nonexistent/ordo-secret }").unwrap_err();
        assert!(missing[0].starts_with("cannot read secret file `/nonexistent/ordo-secret`"));
    }

    #[test]
    fn never_prints_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
    }
}
