//! Every built-in PostgreSQL type the source knows decodes exactly, with the server as the
//! oracle: each value is compared with what PostgreSQL itself says about it (binary send
//! functions, `extract(epoch ...)`, day counts, interval fields), both as a snapshot row and as
//! a streamed insert. Types ordo does not know pass through as their text form.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pg_source_support;

use std::time::Duration;

use ordo_kcop::value::{Date, Decimal, Interval, Time, Timestamp, ZoneOffset};
use ordo_kcop::{BitString, ColumnKind, Value};
use pg_source_support::{Behaviour, PgEnv, start, unhex, wait_slot};

/// How the server describes a value, and how that description becomes the expected value.
#[derive(Debug, Clone, Copy)]
enum Oracle {
    Int,
    Numeric,
    Float4,
    Float8,
    Text,
    Bytea,
    Bool,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Json,
    Uuid,
    Bits,
    Money,
    Enum,
    /// An array of the element oracle (elements in storage order, reshaped by dimensions).
    Array(&'static Oracle),
}

impl Oracle {
    /// A SQL expression over `x` that describes the value as text.
    fn sql(self, x: &str) -> String {
        match self {
            Oracle::Int | Oracle::Numeric | Oracle::Json | Oracle::Bits => format!("{x}::text"),
            Oracle::Enum | Oracle::Bool => format!("{x}::text"),
            // The output function (a cast to text drops char(n) padding and adds inet masks).
            Oracle::Text => format!("CASE WHEN {x} IS NULL THEN NULL ELSE format('%s', {x}) END"),
            Oracle::Float4 => format!("encode(float4send({x}), 'hex')"),
            Oracle::Float8 => format!("encode(float8send({x}), 'hex')"),
            Oracle::Bytea => format!("encode({x}, 'hex')"),
            Oracle::Date => format!(
                "CASE WHEN isfinite({x}) THEN ({x} - DATE '1970-01-01')::text ELSE {x}::text END"
            ),
            Oracle::Time | Oracle::Timestamp | Oracle::TimestampTz => {
                format!("extract(epoch FROM {x})::text")
            }
            Oracle::TimeTz => format!(
                "extract(epoch FROM {x}::time)::text || '|' || extract(timezone FROM {x})::text"
            ),
            Oracle::Interval => format!(
                "(extract(year FROM {x}) * 12 + extract(month FROM {x}))::text || '|' || extract(day FROM {x})::text || '|' || \
                 (extract(hour FROM {x}) * 3600000000 + extract(minute FROM {x}) * 60000000 + extract(microseconds FROM {x}))::text"
            ),
            Oracle::Uuid => format!("encode(uuid_send({x}), 'hex')"),
            Oracle::Money => format!("{x}::numeric::text"),
            Oracle::Array(_) => unreachable!("arrays are described element by element"),
        }
    }

    /// The expected value from the server's description.
    fn value(self, d: &str) -> Value {
        match self {
            Oracle::Int => Value::Int(d.parse().unwrap()),
            Oracle::Numeric | Oracle::Money => Value::Decimal(d.parse::<Decimal>().unwrap()),
            Oracle::Float4 => Value::Float32(f32::from_bits(u32::from_str_radix(d, 16).unwrap())),
            Oracle::Float8 => Value::Float64(f64::from_bits(u64::from_str_radix(d, 16).unwrap())),
            Oracle::Text => Value::Text(d.to_owned()),
            Oracle::Bytea => Value::Bytes(unhex(d)),
            Oracle::Bool => Value::Bool(d == "true"),
            Oracle::Date => Value::Date(match d {
                "infinity" => Date::INFINITY,
                "-infinity" => Date::NEG_INFINITY,
                days => Date(days.parse().unwrap()),
            }),
            Oracle::Time => Value::Time(Time(micros(d))),
            Oracle::TimeTz => {
                let (t, z) = d.split_once('|').unwrap();
                Value::TimeTz(Time(micros(t)), ZoneOffset(z.parse().unwrap()))
            }
            Oracle::Timestamp => Value::Timestamp(timestamp(d)),
            Oracle::TimestampTz => Value::TimestampTz(timestamp(d)),
            Oracle::Interval => {
                let mut parts = d.split('|');
                let mut next = || parts.next().unwrap();
                Value::Interval(Interval {
                    months: next().parse().unwrap(),
                    days: next().parse().unwrap(),
                    micros: micros_whole(next()),
                })
            }
            Oracle::Json => Value::Json(d.to_owned()),
            Oracle::Uuid => Value::Uuid(unhex(d).try_into().unwrap()),
            Oracle::Bits => Value::Bits(d.parse::<BitString>().unwrap()),
            Oracle::Enum => Value::Enum(d.to_owned()),
            Oracle::Array(_) => unreachable!(),
        }
    }
}

/// Seconds as PostgreSQL's numeric text (`-12.500000`) to microseconds.
fn micros(d: &str) -> i64 {
    let (neg, body) = d.strip_prefix('-').map_or((false, d), |b| (true, b));
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let frac = format!("{frac:0<6}");
    let us = int.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap();
    if neg { -us } else { us }
}

/// A whole number that may carry a zero fraction (`5250000` or `5250000.000`).
fn micros_whole(d: &str) -> i64 {
    d.split_once('.').map_or(d, |(i, _)| i).parse().unwrap()
}

fn timestamp(d: &str) -> Timestamp {
    match d {
        "Infinity" => Timestamp::INFINITY,
        "-Infinity" => Timestamp::NEG_INFINITY,
        s => Timestamp(micros(s)),
    }
}

/// Equality that compares floats by their bits (NaN equals NaN, -0 differs from 0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float32(x), Value::Float32(y)) => x.to_bits() == y.to_bits(),
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

struct Case {
    name: &'static str,
    ty: &'static str,
    values: &'static [&'static str],
    oracle: Oracle,
}

const fn case(
    name: &'static str,
    ty: &'static str,
    oracle: Oracle,
    values: &'static [&'static str],
) -> Case {
    Case {
        name,
        ty,
        values,
        oracle,
    }
}

const CASES: &[Case] = &[
    case("int2", "smallint", Oracle::Int, &["-32768", "0", "32767"]),
    case(
        "int4",
        "integer",
        Oracle::Int,
        &["-2147483648", "2147483647"],
    ),
    case(
        "int8",
        "bigint",
        Oracle::Int,
        &["-9223372036854775808", "9223372036854775807"],
    ),
    case("oid", "oid", Oracle::Int, &["0", "4294967295"]),
    case(
        "num",
        "numeric",
        Oracle::Numeric,
        &[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "0",
            "-0.000",
            "1.50",
            "1e-20",
            "123456789012345678901234567890.123456789",
            "-99999999999999999999999999999999999999999",
        ],
    ),
    case(
        "num65",
        "numeric(65,30)",
        Oracle::Numeric,
        &[
            "'12345678901234567890123456789012345.123456789012345678901234567890'",
            "-0.000000000000000000000000000001",
            "0",
            "'NaN'",
        ],
    ),
    case(
        "num102",
        "numeric(10,2)",
        Oracle::Numeric,
        &["1.5", "-99999999.99", "0.005"],
    ),
    case(
        "real",
        "real",
        Oracle::Float4,
        &[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "0.1",
            "'-0'",
            "3.4028235e38",
            "1.17549435e-38",
            "1e-45",
            "16777217",
            "0.3",
            "2.7182817",
        ],
    ),
    case(
        "dbl",
        "double precision",
        Oracle::Float8,
        &[
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "0.1",
            "'-0'",
            "1.7976931348623157e308",
            "5e-324",
            "2.2250738585072014e-308",
            "0.30000000000000004",
        ],
    ),
    case(
        "txt",
        "text",
        Oracle::Text,
        &[
            "''",
            "'héllo wörld ✓'",
            "E'tab\\there \"q\" back\\\\slash\\nnewline'",
            "'NULL'",
            "repeat('x', 5000)",
        ],
    ),
    case("vc", "varchar(10)", Oracle::Text, &["'abc'", "''"]),
    case("bpc", "char(5)", Oracle::Text, &["'ab'", "'abcde'", "''"]),
    case("qchar", "\"char\"", Oracle::Text, &["'a'"]),
    case("nm", "name", Oracle::Text, &["'some_name'"]),
    case(
        "bya",
        "bytea",
        Oracle::Bytea,
        &[
            "'\\x'",
            "'\\x00ff10'",
            "decode(repeat('ab01', 1000), 'hex')",
        ],
    ),
    case("bool", "boolean", Oracle::Bool, &["true", "false"]),
    case(
        "date",
        "date",
        Oracle::Date,
        &[
            "'2024-02-29'",
            "'1970-01-01'",
            "'1969-12-31'",
            "'0001-01-01'",
            "'0001-12-31 BC'",
            "'0005-02-29 BC'",
            "'4713-01-01 BC'",
            "'5874897-12-31'",
            "'infinity'",
            "'-infinity'",
        ],
    ),
    case(
        "time",
        "time",
        Oracle::Time,
        &["'00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:34:56.5'"],
    ),
    case("time3", "time(3)", Oracle::Time, &["'12:34:56.123'"]),
    case("time0", "time(0)", Oracle::Time, &["'12:34:56.5'"]),
    case(
        "timetz",
        "timetz",
        Oracle::TimeTz,
        &[
            "'00:00+00'",
            "'12:34:56.789-07'",
            "'23:59:59.999999+14:59'",
            "'01:02:03+05:30'",
            "'10:00:00+01:02:03'",
            "'10:00:00-00:30:15'",
            "'24:00:00-15:59'",
        ],
    ),
    case(
        "ts",
        "timestamp",
        Oracle::Timestamp,
        &[
            "'2024-05-01 12:30:00.000250'",
            "'1970-01-01'",
            "'1900-01-01 00:00:00.000001'",
            "'0044-03-15 12:00 BC'",
            "'0005-02-29 10:00 BC'",
            "'4713-01-01 00:00 BC'",
            "'294246-12-31 23:59:59.999999'",
            "'infinity'",
            "'-infinity'",
        ],
    ),
    case(
        "ts3",
        "timestamp(3)",
        Oracle::Timestamp,
        &["'2024-05-01 12:30:00.1234'"],
    ),
    case(
        "tstz",
        "timestamptz",
        Oracle::TimestampTz,
        &[
            "'2024-05-01 12:30:00.5+02'",
            "'1969-12-31 23:59:59.999999+00'",
            "'0044-03-15 12:00+00 BC'",
            "'0005-02-29 10:00-03 BC'",
            "'2262-04-11 23:47:16.854775+00'",
            "'294246-12-31 23:59:59.999999+00'",
            "'infinity'",
            "'-infinity'",
        ],
    ),
    case(
        "iv",
        "interval",
        Oracle::Interval,
        &[
            "'0'",
            "'1 year 2 mons 3 days 04:05:06.5'",
            "'-1 year -2 mons +3 days -04:05:06.25'",
            "'1 day -00:00:00.000001'",
            "'178000000 years'",
            "'-178000000 years'",
            "'2562047788 hours'",
            "'-0.5 seconds'",
            "'1 mon -1 day'",
            "'7 days'",
        ],
    ),
    case(
        "iv3",
        "interval(3)",
        Oracle::Interval,
        &["'1.23456 seconds'"],
    ),
    case(
        "ivds",
        "interval day to second(3)",
        Oracle::Interval,
        &["'3 days 04:05:06.7891'"],
    ),
    case(
        "ivym",
        "interval year to month",
        Oracle::Interval,
        &["'1 year 2 mons'"],
    ),
    case(
        "json",
        "json",
        Oracle::Json,
        &["'{\"b\": 1,  \"a\": [1, 2.50, null]}'", "'\"x\"'", "'null'"],
    ),
    case(
        "jsonb",
        "jsonb",
        Oracle::Json,
        &[
            "'{\"b\": 1,  \"a\": [1, 2.50, null], \"u\": \"\\u00e9\"}'",
            "'[]'",
        ],
    ),
    case(
        "uuid",
        "uuid",
        Oracle::Uuid,
        &[
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
            "'00000000-0000-0000-0000-000000000000'",
        ],
    ),
    case(
        "inet",
        "inet",
        Oracle::Text,
        &["'192.168.0.1/24'", "'::1'", "'10.0.0.1'"],
    ),
    case(
        "cidr",
        "cidr",
        Oracle::Text,
        &["'10.0.0.0/8'", "'2001:db8::/32'"],
    ),
    case("mac", "macaddr", Oracle::Text, &["'08:00:2b:01:02:03'"]),
    case(
        "money",
        "money",
        Oracle::Money,
        &[
            "1234.56",
            "-0.05",
            "0",
            "'-92233720368547758.08'",
            "'92233720368547758.07'",
        ],
    ),
    case("bit", "bit(5)", Oracle::Bits, &["B'10101'", "B'00000'"]),
    case(
        "varbit",
        "varbit(20)",
        Oracle::Bits,
        &["B''", "B'1'", "B'110010101011'"],
    ),
    case(
        "int4a",
        "integer[]",
        Oracle::Array(&Oracle::Int),
        &[
            "'{}'",
            "'{1,NULL,3}'",
            "'{{1,2},{3,4}}'",
            "'[0:1]={5,6}'",
            "'{{{1},{2}}}'",
        ],
    ),
    case(
        "texta",
        "text[]",
        Oracle::Array(&Oracle::Text),
        &[
            "ARRAY['a b', '', NULL, 'NULL', 'x,y', 'q\"uote', 'back\\slash', 'é', '{}']",
            "'{{a,b},{c,NULL}}'",
        ],
    ),
    case(
        "numa",
        "numeric(10,2)[]",
        Oracle::Array(&Oracle::Numeric),
        &["'{1.50,NaN,NULL,-3}'"],
    ),
    case(
        "tstza",
        "timestamptz[]",
        Oracle::Array(&Oracle::TimestampTz),
        &[
            "ARRAY['2024-01-01 00:00:00.000001+00', 'infinity', NULL, '0044-03-15 12:00+00 BC']::timestamptz[]",
        ],
    ),
    case(
        "byteaa",
        "bytea[]",
        Oracle::Array(&Oracle::Bytea),
        &["ARRAY['\\x00ff'::bytea, NULL, '\\x'::bytea]"],
    ),
    case(
        "datea",
        "date[]",
        Oracle::Array(&Oracle::Date),
        &["ARRAY['2024-01-01', '0005-02-29 BC', 'infinity']::date[]"],
    ),
    case(
        "boola",
        "boolean[]",
        Oracle::Array(&Oracle::Bool),
        &["'{t,f,NULL}'"],
    ),
    case(
        "dbla",
        "double precision[]",
        Oracle::Array(&Oracle::Float8),
        &["'{NaN,Infinity,-0,0.1,NULL}'"],
    ),
    case(
        "reala",
        "real[]",
        Oracle::Array(&Oracle::Float4),
        &["'{0.1,-Infinity}'"],
    ),
    case(
        "jsonba",
        "jsonb[]",
        Oracle::Array(&Oracle::Json),
        &["ARRAY['{\"a\": \"b,c\"}'::jsonb, '[1]', NULL]"],
    ),
    case(
        "uuida",
        "uuid[]",
        Oracle::Array(&Oracle::Uuid),
        &["ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]"],
    ),
    case(
        "iva",
        "interval[]",
        Oracle::Array(&Oracle::Interval),
        &["ARRAY['1 day', '-1 mon 2 sec']::interval[]"],
    ),
    case(
        "inta",
        "inet[]",
        Oracle::Array(&Oracle::Text),
        &["'{10.0.0.1,::1/128}'"],
    ),
    case("mood", "mood", Oracle::Enum, &["'sad'", "'very happy'"]),
    case(
        "mooda",
        "mood[]",
        Oracle::Array(&Oracle::Enum),
        &["'{sad,\"very happy\",NULL}'"],
    ),
    case("posnum", "posnum", Oracle::Numeric, &["1.5", "99999999.99"]),
    case(
        "posnuma",
        "posnum[]",
        Oracle::Array(&Oracle::Numeric),
        &["ARRAY[1.5, 2]::posnum[]"],
    ),
    case(
        "tsv",
        "tsvector",
        Oracle::Text,
        &["'a fat cat sat on a mat'"],
    ),
    case(
        "point",
        "point",
        Oracle::Text,
        &["'(1,2)'", "'(-1.5,2.25)'"],
    ),
    case(
        "pointa",
        "point[]",
        Oracle::Array(&Oracle::Text),
        &["ARRAY['(1,2)'::point, '(3,4)']"],
    ),
    case(
        "boxa",
        "box[]",
        Oracle::Text,
        &["ARRAY['(1,1),(0,0)'::box, '(2,2),(1,1)']"],
    ),
    case(
        "i4range",
        "int4range",
        Oracle::Text,
        &["'[1,10)'", "'empty'"],
    ),
    case("xml", "xml", Oracle::Text, &["'<a>b</a>'"]),
    case("i2vec", "int2vector", Oracle::Text, &["'1 2 3'"]),
];

/// What the server says each row of `case`'s table holds, by id.
async fn expected(c: &tokio_postgres::Client, case: &Case) -> Vec<(i32, Value)> {
    let table = format!("t_{}", case.name);
    let Oracle::Array(elem) = case.oracle else {
        let sql = format!(
            "SELECT id, {} FROM {table} ORDER BY id",
            case.oracle.sql("v")
        );
        return c
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let d: Option<String> = r.get(1);
                (r.get(0), d.map_or(Value::Null, |d| case.oracle.value(&d)))
            })
            .collect();
    };
    let mut out = Vec::new();
    let rows = c
        .query(
            &format!(
                "SELECT id, v IS NULL, ARRAY(SELECT array_length(v, d) FROM generate_series(1, coalesce(array_ndims(v), 0)) d) FROM {table} ORDER BY id"
            ),
            &[],
        )
        .await
        .unwrap();
    for r in rows {
        let (id, null, dims): (i32, bool, Vec<i32>) = (r.get(0), r.get(1), r.get(2));
        if null {
            out.push((id, Value::Null));
            continue;
        }
        let sql = format!(
            "SELECT {} FROM {table}, unnest(v) WITH ORDINALITY AS o(e, n) WHERE id = $1 ORDER BY n",
            elem.sql("o.e")
        );
        let flat: Vec<Value> = c
            .query(&sql, &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                r.get::<_, Option<String>>(0)
                    .map_or(Value::Null, |d| elem.value(&d))
            })
            .collect();
        out.push((id, reshape(&flat, &dims)));
    }
    out
}

fn reshape(flat: &[Value], dims: &[i32]) -> Value {
    match dims {
        [] => Value::Array(Vec::new()),
        [_] => Value::Array(flat.to_vec()),
        [n, rest @ ..] => {
            let per = flat.len() / usize::try_from(*n).unwrap();
            Value::Array(flat.chunks(per).map(|c| reshape(c, rest)).collect())
        }
    }
}

async fn create_tables(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'very happy');
         CREATE DOMAIN posnum AS numeric(10,2) CHECK (VALUE > 0);",
    )
    .await
    .unwrap();
    let ddl: String = CASES
        .iter()
        .map(|k| {
            format!(
                "CREATE TABLE t_{} (id serial PRIMARY KEY, v {});\n",
                k.name, k.ty
            )
        })
        .collect();
    c.batch_execute(&ddl).await.unwrap();
}

async fn insert_all(c: &tokio_postgres::Client) {
    let mut sql = String::from("BEGIN;\n");
    for k in CASES {
        let values: Vec<String> = k.values.iter().map(|v| format!("({v})")).collect();
        sql.push_str(&format!(
            "INSERT INTO t_{} (v) VALUES {}, (NULL);\n",
            k.name,
            values.join(", ")
        ));
    }
    sql.push_str("COMMIT;");
    c.batch_execute(&sql).await.unwrap();
}

#[tokio::test]
async fn every_type_decodes_exactly_in_snapshots_and_streams() {
    let env = PgEnv::new("pgtypes").await;
    create_tables(&env.client).await;
    insert_all(&env.client).await;
    let mut run = start(&env.config("snapshot: initial"), None, Behaviour::default());
    run.wait_for("the snapshot", Duration::from_secs(60), |s| {
        s.txns.iter().any(|t| t.id() == "snapshot:complete")
    })
    .await;
    insert_all(&env.client).await;
    run.wait_streamed(1, Duration::from_secs(60)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();

    let mut failures = Vec::new();
    let rows_per_table = |k: &Case| k.values.len() as i32 + 1;
    for k in CASES {
        let table = format!("t_{}", k.name);
        let want = expected(&env.client, k).await;
        assert_eq!(want.len() as i32, 2 * rows_per_table(k), "{table}");
        let snap: Vec<_> = seen
            .txns
            .iter()
            .filter(|t| t.is_snapshot())
            .flat_map(|t| &t.changes)
            .filter(|c| c.table.id.name == table)
            .collect();
        let streamed: Vec<_> = seen
            .streamed_changes()
            .filter(|c| c.table.id.name == table)
            .collect();
        assert_eq!(
            snap.len() as i32,
            rows_per_table(k),
            "{table} snapshot rows"
        );
        assert_eq!(
            streamed.len() as i32,
            rows_per_table(k),
            "{table} streamed rows"
        );
        for (change, (id, want)) in snap.iter().chain(&streamed).zip(&want) {
            let row = change.after.as_ref().unwrap();
            assert_eq!(row[0], Value::Int(i64::from(*id)), "{table} row order");
            if !same(&row[1], want) {
                failures.push(format!(
                    "{table} ({}) id {id}: got {:?}, want {want:?}",
                    k.ty, row[1]
                ));
            }
        }
        check_schema(&env.client, k, snap[0], streamed[0], &mut failures).await;
    }
    env.cleanup(&[]).await;
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The column's type name is `format_type`'s, and snapshot and stream agree on the schema.
async fn check_schema(
    c: &tokio_postgres::Client,
    k: &Case,
    snap: &ordo_kcop::Change,
    streamed: &ordo_kcop::Change,
    failures: &mut Vec<String>,
) {
    let row = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'v'",
            &[&format!("t_{}", k.name)],
        )
        .await
        .unwrap();
    let (name, nullable): (String, bool) = (row.get(0), row.get(1));
    let col = &streamed.table.columns[1];
    if col.type_name != name || col.nullable != nullable {
        failures.push(format!(
            "t_{}: column type {:?} nullable {}, server says {name:?} {nullable}",
            k.name, col.type_name, col.nullable
        ));
    }
    if snap.table.columns != streamed.table.columns || snap.table.key != streamed.table.key {
        failures.push(format!(
            "t_{}: snapshot schema {:?} differs from streamed schema {:?}",
            k.name, snap.table.columns, streamed.table.columns
        ));
    }
    let kind_ok = match (k.oracle, &col.kind) {
        (Oracle::Array(_), ColumnKind::Array(_)) => true,
        (Oracle::Numeric | Oracle::Money, ColumnKind::Decimal { .. }) => true,
        (Oracle::Text, ColumnKind::Text) => true,
        (Oracle::Enum, ColumnKind::Enum(labels)) => labels.len() == 4,
        (_, kind) => !matches!(kind, ColumnKind::Text | ColumnKind::Array(_)),
    };
    if !kind_ok {
        failures.push(format!("t_{}: column kind {:?}", k.name, col.kind));
    }
}

#[tokio::test]
async fn numeric_typmods_give_precision_and_scale() {
    let env = PgEnv::new("pgtypmod").await;
    env.client
        .batch_execute(
            "CREATE DOMAIN price AS numeric(12,3);
             CREATE TABLE m (id int PRIMARY KEY, a numeric(65,30), b numeric, c price, d money);",
        )
        .await
        .unwrap();
    let mut run = start(&env.config("snapshot: never"), None, Behaviour::default());
    wait_slot(&env).await;
    env.client
        .batch_execute("INSERT INTO m VALUES (1, 1, 2, 3, 4)")
        .await
        .unwrap();
    run.wait_streamed(1, Duration::from_secs(30)).await;
    let (res, seen) = run.stop().await;
    res.unwrap();
    let schema = &seen.txns[0].changes[0].table;
    let kinds: Vec<_> = schema.columns.iter().map(|c| c.kind.clone()).collect();
    let dec = |p, s| ColumnKind::Decimal {
        precision: p,
        scale: s,
    };
    assert_eq!(
        kinds,
        vec![
            ColumnKind::Int(32),
            dec(Some(65), Some(30)),
            dec(None, None),
            dec(Some(12), Some(3)),
            dec(None, Some(2)),
        ]
    );
    env.cleanup(&[]).await;
}
