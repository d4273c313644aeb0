//! Avro's Parsing Canonical Form and its CRC-64-AVRO (Rabin) fingerprint, as the Avro
//! specification defines them for single-object encoding.
//!
//! The canonical form keeps only what decides how bytes decode (names, types, fields, symbols,
//! items, values, sizes), with full names and no whitespace. It drops `logicalType`,
//! `precision`, `scale`, `doc`, `default` and every other attribute.

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The initial value and polynomial of CRC-64-AVRO.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static TABLE: [u64; 256] = rabin_table();

/// The CRC-64-AVRO fingerprint of `bytes` (normally a schema's canonical form).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

/// The Parsing Canonical Form of a schema given as JSON.
pub fn canonical_form(schema: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_schema(&mut out, schema, "");
    out
}

fn write_schema(out: &mut String, schema: &Value, namespace: &str) {
    match schema {
        Value::String(name) => write_name_ref(out, name, namespace),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(out, branch, namespace);
            }
            out.push(']');
        }
        Value::Object(obj) => write_object(out, obj, namespace),
        other => out.push_str(&other.to_string()),
    }
}

fn write_name_ref(out: &mut String, name: &str, namespace: &str) {
    if PRIMITIVES.contains(&name) {
        push_json_str(out, name);
    } else {
        push_json_str(out, &full_name(name, namespace));
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn write_object(out: &mut String, obj: &Map<String, Value>, namespace: &str) {
    let ty = match obj.get("type") {
        Some(Value::String(ty)) => ty.as_str(),
        Some(nested) => return write_schema(out, nested, namespace),
        None => return out.push_str("null"),
    };
    match ty {
        "record" | "error" | "enum" | "fixed" => write_named(out, obj, ty, namespace),
        "array" => write_wrapper(out, "array", "items", obj.get("items"), namespace),
        "map" => write_wrapper(out, "map", "values", obj.get("values"), namespace),
        other => write_name_ref(out, other, namespace),
    }
}

fn write_wrapper(out: &mut String, ty: &str, key: &str, inner: Option<&Value>, ns: &str) {
    out.push_str("{\"type\":");
    push_json_str(out, ty);
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    write_schema(out, inner.unwrap_or(&Value::Null), ns);
    out.push('}');
}

fn write_named(out: &mut String, obj: &Map<String, Value>, ty: &str, namespace: &str) {
    let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
    let own_ns = obj
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(namespace);
    let full = full_name(name, own_ns);
    let inner_ns = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_owned();
    out.push_str("{\"name\":");
    push_json_str(out, &full);
    out.push_str(",\"type\":");
    push_json_str(out, ty);
    match ty {
        "enum" => {
            out.push_str(",\"symbols\":");
            out.push_str(&obj.get("symbols").map(Value::to_string).unwrap_or_default());
        }
        "fixed" => {
            out.push_str(",\"size\":");
            out.push_str(&obj.get("size").map(Value::to_string).unwrap_or_default());
        }
        _ => write_fields(out, obj.get("fields"), &inner_ns),
    }
    out.push('}');
}

fn write_fields(out: &mut String, fields: Option<&Value>, namespace: &str) {
    out.push_str(",\"fields\":[");
    for (i, field) in fields
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(
            out,
            field
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        out.push_str(",\"type\":");
        write_schema(out, field.get("type").unwrap_or(&Value::Null), namespace);
        out.push('}');
    }
    out.push(']');
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_empty_input_is_the_seed() {
        assert_eq!(fingerprint(b""), EMPTY);
    }

    #[test]
    fn canonical_form_strips_attributes_and_qualifies_names() {
        let schema: Value = serde_json::from_str(
            r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
                {"name":"f","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2},"default":null},
                {"name":"g","type":["null",{"type":"record","name":"S","fields":[]}]},
                {"name":"h","type":{"type":"array","items":"S"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_form(&schema),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"f","type":"bytes"},{"name":"g","type":["null",{"name":"a.b.S","type":"record","fields":[]}]},{"name":"h","type":{"type":"array","items":"a.b.S"}}]}"#
        );
    }
}
