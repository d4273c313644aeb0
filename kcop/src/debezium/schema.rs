//! Schemas in Kafka Connect's JSON schema form (the `schema` parts with `schemas.enable`).

use super::field::Field;
use super::{DebeziumKcop, push, text};
use crate::kcop::SourceInfo;

fn optional_flag(out: &mut Vec<u8>, optional: bool) {
    push(
        out,
        if optional {
            ",\"optional\":true"
        } else {
            ",\"optional\":false"
        },
    );
}

/// `{"type":..,"optional":..,["name":..,"version":1,]["parameters":{..},]["field":..]}`.
fn field_schema(out: &mut Vec<u8>, f: &Field, optional: bool, name: Option<&str>) {
    let (ty, semantic) = match f {
        Field::Plain(t) => (*t, None),
        Field::Named(t, n) => (*t, Some(*n)),
        Field::Enum(n, _) => ("string", Some(*n)),
        Field::Decimal(..) => ("bytes", Some("org.apache.kafka.connect.data.Decimal")),
        Field::Bits(_) => ("bytes", Some("io.debezium.data.Bits")),
        Field::VarDecimal => return var_decimal_schema(out, optional, name),
        Field::Array(inner) => {
            push(out, "{\"type\":\"array\",\"items\":");
            field_schema(out, inner, true, None);
            optional_flag(out, optional);
            return end_field(out, name);
        }
    };
    push(out, "{\"type\":");
    text(out, ty);
    optional_flag(out, optional);
    if let Some(n) = semantic {
        push(out, ",\"name\":");
        text(out, n);
        push(out, ",\"version\":1");
    }
    parameters(out, f);
    end_field(out, name);
}

fn parameters(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Decimal(scale, precision) => {
            push(out, &format!(",\"parameters\":{{\"scale\":\"{scale}\""));
            if let Some(p) = precision {
                push(out, &format!(",\"connect.decimal.precision\":\"{p}\""));
            }
            push(out, "}");
        }
        Field::Enum(_, allowed) => {
            push(out, ",\"parameters\":{\"allowed\":");
            text(out, allowed);
            push(out, "}");
        }
        Field::Bits(len) => push(out, &format!(",\"parameters\":{{\"length\":\"{len}\"}}")),
        _ => {}
    }
}

fn var_decimal_schema(out: &mut Vec<u8>, optional: bool, name: Option<&str>) {
    push(
        out,
        "{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"scale\"},{\"type\":\"bytes\",\"optional\":false,\"field\":\"value\"}]",
    );
    optional_flag(out, optional);
    push(
        out,
        ",\"name\":\"io.debezium.data.VariableScaleDecimal\",\"version\":1,\"doc\":\"Variable scaled decimal\"",
    );
    end_field(out, name);
}

fn end_field(out: &mut Vec<u8>, name: Option<&str>) {
    if let Some(n) = name {
        push(out, ",\"field\":");
        text(out, n);
    }
    push(out, "}");
}

/// A struct schema of the columns `cols`.
pub(super) fn struct_schema(
    out: &mut Vec<u8>,
    k: &DebeziumKcop,
    cols: &[usize],
    optional: bool,
    name: &str,
    field: Option<&str>,
) {
    push(out, "{\"type\":\"struct\",\"fields\":[");
    for (n, &i) in cols.iter().enumerate() {
        if n > 0 {
            push(out, ",");
        }
        field_schema(
            out,
            &k.fields[i],
            optional && k.nullable[i],
            Some(&k.names[i]),
        );
    }
    push(
        out,
        if optional {
            "],\"optional\":true,\"name\":"
        } else {
            "],\"optional\":false,\"name\":"
        },
    );
    text(out, name);
    end_field(out, field);
}

const PG_SOURCE: &[(&str, bool, &str)] = &[
    ("string", false, "db"),
    ("string", true, "sequence"),
    ("string", false, "schema"),
    ("string", false, "table"),
    ("int64", true, "txId"),
    ("int64", true, "lsn"),
    ("int64", true, "xmin"),
];

const MYSQL_SOURCE: &[(&str, bool, &str)] = &[
    ("string", false, "db"),
    ("string", true, "sequence"),
    ("string", true, "table"),
    ("int64", false, "server_id"),
    ("string", true, "gtid"),
    ("string", false, "file"),
    ("int64", false, "pos"),
    ("int32", false, "row"),
    ("int64", true, "thread"),
    ("string", true, "query"),
];

fn source_schema(out: &mut Vec<u8>, connector: &str) {
    push(
        out,
        "{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},",
    );
    push(
        out,
        "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,\"parameters\":{\"allowed\":\"true,last,false,incremental\"},\"default\":\"false\",\"field\":\"snapshot\"}",
    );
    let (fields, name) = match connector {
        "postgresql" => (PG_SOURCE, "io.debezium.connector.postgresql.Source"),
        "mariadb" => (MYSQL_SOURCE, "io.debezium.connector.mariadb.Source"),
        _ => (MYSQL_SOURCE, "io.debezium.connector.mysql.Source"),
    };
    for (ty, optional, field) in fields {
        push(out, ",");
        field_schema(out, &Field::Plain(ty), *optional, Some(field));
    }
    push(out, "],\"optional\":false,\"name\":");
    text(out, name);
    push(out, ",\"field\":\"source\"}");
}

const TXN_SCHEMA: &str = "{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

pub(super) fn envelope_schema(out: &mut Vec<u8>, k: &DebeziumKcop, source: &SourceInfo) {
    let prefix = k.prefix(source);
    let value_name = format!("{prefix}.Value");
    push(out, "{\"type\":\"struct\",\"fields\":[");
    struct_schema(out, k, &k.config.columns, true, &value_name, Some("before"));
    push(out, ",");
    struct_schema(out, k, &k.config.columns, true, &value_name, Some("after"));
    push(out, ",");
    source_schema(out, source.connector);
    push(
        out,
        ",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},",
    );
    push(out, TXN_SCHEMA);
    push(out, "],\"optional\":false,\"name\":");
    text(out, &format!("{prefix}.Envelope"));
    push(out, "}");
}
