//! Reading the YAML file with serde-saphyr, and turning its errors into [`ConfigError`]s that
//! name the config path, not only the position.
//!
//! serde-saphyr gives each error a position; the path is found by looking that position up
//! in the file's [`Positions`]. Errors about a mapping as a whole (a missing field, two
//! sources) are positioned at the mapping's start, so they are anchored to the mapping and,
//! when they concern one of its keys, moved onto that key.

use serde::de::DeserializeOwned;
use serde_saphyr::{Error, Location, MessageFormatter, UserMessageFormatter};

use crate::error::{ConfigError, ConfigErrors};
use crate::positions::{Position, Positions, join_key, parent_path};
use crate::spelling::closest;

/// Separates message and hint in errors raised from our own `Deserialize` impls, which can
/// only pass a string through serde.
const HINT_MARKER: &str = "; hint: ";

/// Follows the hint when the error concerns one key of the mapping being deserialized.
const KEY_MARKER: &str = "; key: ";

/// A custom deserialization error message carrying a hint.
pub(crate) fn with_hint(message: &str, hint: &str) -> String {
    format!("{message}{HINT_MARKER}{hint}")
}

/// A custom deserialization error about key `key` of the mapping being deserialized.
pub(crate) fn at_key(message: &str, hint: &str, key: &str) -> String {
    format!("{message}{HINT_MARKER}{hint}{KEY_MARKER}{key}")
}

/// Deserializes `text`, reporting the first structural problem (syntax, unknown field, wrong
/// type, missing field) with its path and position.
pub(crate) fn deserialize<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    positions: &Positions,
) -> Result<T, ConfigErrors> {
    serde_saphyr::from_str(text).map_err(|err| {
        let err = err.without_snippet();
        let position = err.location().and_then(position_of);
        let node_path = position.and_then(|at| positions.path_at(at));
        let (message, hint, anchor) = describe(err, text, node_path.unwrap_or_default());
        let (path, position) = anchor.resolve(position, positions);
        ConfigErrors::single(ConfigError {
            origin: origin.to_owned(),
            path,
            line: position.map(|at| at.line),
            column: position.map(|at| at.column),
            message,
            hint,
        })
    })
}

fn position_of(location: Location) -> Option<Position> {
    let line = usize::try_from(location.line()).ok()?;
    let column = usize::try_from(location.column()).ok()?;
    (line > 0).then_some(Position { line, column })
}

/// What an error's position points at.
enum Anchor {
    /// The node at the position.
    Node,
    /// Key `.0` of the mapping that starts at the position.
    MappingKey(String),
}

impl Anchor {
    fn resolve(
        self,
        position: Option<Position>,
        positions: &Positions,
    ) -> (String, Option<Position>) {
        let Some(at) = position else {
            return (String::new(), None);
        };
        match self {
            Anchor::Node => (
                positions.path_at(at).unwrap_or_default().to_owned(),
                position,
            ),
            Anchor::MappingKey(key) => {
                let mapping = positions.value_path_at(at).unwrap_or_default();
                let path = join_key(mapping, &key);
                let key_at = positions
                    .contains(&path)
                    .then(|| positions.lookup_key(&path));
                (path, key_at.flatten().or(position))
            }
        }
    }
}

/// The message, hint and anchor for `err`, found in the node at `path`.
fn describe(err: &Error, text: &str, path: &str) -> (String, Option<String>, Anchor) {
    match err {
        Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let hint = match closest(field, expected) {
                Some(best) => format!("did you mean `{best}`?"),
                None if expected.is_empty() => String::from("remove it"),
                None => format!("expected one of: {}", expected.join(", ")),
            };
            (format!("unknown field `{field}`"), Some(hint), Anchor::Node)
        }
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let message = format!("unknown {} `{variant}`", noun(path, variant));
            (message, Some(variant_hint(variant, expected)), Anchor::Node)
        }
        Error::SerdeMissingField { field, .. } => {
            let hint = format!("add `{field}: ...` to this mapping");
            let anchor = Anchor::MappingKey((*field).to_owned());
            (format!("missing field `{field}`"), Some(hint), anchor)
        }
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => {
            let message = format!("expected {expected}, found {unexpected}");
            (
                message,
                Some(format!("write {expected} here")),
                Anchor::Node,
            )
        }
        Error::InvalidScalar { ty, location } => invalid_scalar(ty, scalar_text(text, *location)),
        Error::Unexpected {
            expected: "string scalar",
            ..
        } => (
            String::from("expected a single value, found a list or mapping"),
            Some(String::from("write a string, number or boolean here")),
            Anchor::Node,
        ),
        Error::Message { msg, .. } => custom_message(msg),
        Error::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("?");
            let message = format!("key `{key}` appears twice in the same mapping");
            (
                message,
                Some(String::from("keep one of them")),
                Anchor::Node,
            )
        }
        Error::ExternalMessage { .. } => (
            UserMessageFormatter.format_message(err).into_owned(),
            Some(String::from(
                "fix the YAML syntax here: check indentation, quotes and brackets",
            )),
            Anchor::Node,
        ),
        other => {
            let message = UserMessageFormatter.format_message(other).into_owned();
            (message, None, Anchor::Node)
        }
    }
}

/// Splits a message from our own `Deserialize` impls into message, hint and anchor.
fn custom_message(msg: &str) -> (String, Option<String>, Anchor) {
    let Some((message, rest)) = msg.split_once(HINT_MARKER) else {
        return (msg.to_owned(), None, Anchor::Node);
    };
    match rest.split_once(KEY_MARKER) {
        Some((hint, key)) => (
            message.to_owned(),
            Some(hint.to_owned()),
            Anchor::MappingKey(key.to_owned()),
        ),
        None => (message.to_owned(), Some(rest.to_owned()), Anchor::Node),
    }
}

/// The source text of the scalar at `location`.
fn scalar_text(text: &str, location: Location) -> Option<&str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

fn invalid_scalar(ty: &str, written: Option<&str>) -> (String, Option<String>, Anchor) {
    let wanted = match ty {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number from 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "boolean" => "`true` or `false`",
        other => other,
    };
    let message = match written.filter(|text| !text.is_empty()) {
        Some(text) => format!("`{text}` is not {wanted}"),
        None => format!("expected {wanted}"),
    };
    (message, Some(format!("write {wanted} here")), Anchor::Node)
}

fn variant_hint(variant: &str, expected: &[&str]) -> String {
    let all = format!("use one of: {}", expected.join(", "));
    match closest(variant, expected) {
        Some(best) => format!("did you mean `{best}`? {all}"),
        None => all,
    }
}

/// What kind of value an unknown variant was meant to be: the field it is in (`format`), or
/// for keys that are themselves the variant (`source: { postgress: ... }`) the enclosing field.
fn noun<'a>(path: &'a str, variant: &str) -> &'a str {
    let last = last_segment(path);
    let noun = if last == variant || last.is_empty() {
        last_segment(parent_path(path))
    } else {
        last
    };
    if noun.is_empty() { "value" } else { noun }
}

fn last_segment(path: &str) -> &str {
    let parent = parent_path(path);
    path[parent.len()..]
        .trim_start_matches('.')
        .split('[')
        .next()
        .unwrap_or_default()
}
