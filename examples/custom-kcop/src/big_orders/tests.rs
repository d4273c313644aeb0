//! The `big-orders` KCOP on hand-made changes: which operations make a record, its exact bytes,
//! and the factory's errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use ordo_kcop::{Column, SourceInfo, TableId, Timestamp, TxnBegin};
use serde_json::json;

use super::*;

fn column(name: &str, type_name: &str, kind: ColumnKind) -> Column {
    Column {
        name: name.to_owned(),
        type_name: type_name.to_owned(),
        kind,
        nullable: true,
    }
}

/// `public.orders (id int, customer text, amount <amount>)`.
fn orders(amount_type: &str, amount_kind: ColumnKind) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("public", "orders"),
        version: 1,
        columns: vec![
            column("id", "integer", ColumnKind::Int(32)),
            column("customer", "text", ColumnKind::Text),
            column("amount", amount_type, amount_kind),
        ],
        key: vec![0],
    })
}

fn numeric() -> Arc<TableSchema> {
    let kind = ColumnKind::Decimal {
        precision: Some(10),
        scale: Some(2),
    };
    orders("numeric(10,2)", kind)
}

fn output(options: serde_json::Value) -> Output {
    serde_json::from_value(json!({
        "topic": "shop.big_orders",
        "format": "custom",
        "kcop": NAME,
        "options": options,
    }))
    .unwrap()
}

fn kcop(schema: &TableSchema, options: serde_json::Value) -> BigOrders {
    BigOrders::new(&output(options), schema, "shop.big_orders".into()).unwrap()
}

fn config_error(schema: &TableSchema, output: &Output) -> String {
    match BigOrders::new(output, schema, "t".into()) {
        Err(e @ KcopError::Config { .. }) => e.to_string(),
        other => panic!("expected a config error, got {other:?}"),
    }
}

fn dec(text: &str) -> Value {
    Value::Decimal(text.parse().unwrap())
}

fn row(id: i64, customer: &str, amount: Value) -> Vec<Value> {
    vec![Value::Int(id), Value::Text(customer.to_owned()), amount]
}

/// The records `kcop` makes for one change.
fn process(
    kcop: &BigOrders,
    schema: &Arc<TableSchema>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> Result<Vec<ProducerRecord>, KcopError> {
    let change = Change {
        table: schema.clone(),
        op,
        before,
        after,
        op_index: 0,
    };
    let txn = TxnBegin {
        id: "742".into(),
        commit_time: Timestamp(0),
        position: None,
    };
    let source = SourceInfo {
        connector: "postgresql",
        name: "shop".to_owned(),
        database: "shop".to_owned(),
    };
    let mut out = Vec::new();
    let op = Operation {
        change: &change,
        txn: &txn,
        source: &source,
    };
    kcop.process(&op, &mut out)?;
    Ok(out)
}

fn insert(kcop: &BigOrders, schema: &Arc<TableSchema>, amount: Value) -> Vec<ProducerRecord> {
    process(kcop, schema, Op::Insert, None, Some(row(7, "ann", amount))).unwrap()
}

fn text(bytes: Option<&Vec<u8>>) -> &str {
    std::str::from_utf8(bytes.unwrap()).unwrap()
}

#[test]
fn only_amounts_strictly_above_the_default_threshold_make_a_record() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    assert_eq!(k.threshold().to_string(), "500");
    for small in ["100.00", "500", "500.00", "499.99", "-1200.00", "0"] {
        assert!(insert(&k, &schema, dec(small)).is_empty(), "{small}");
    }
    for big in ["500.01", "500.001", "1200.00", "99999999.99"] {
        let out = insert(&k, &schema, dec(big));
        assert_eq!(out.len(), 1, "{big}");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(out[0].value.as_ref().unwrap()).unwrap()["amount"],
            big,
            "the amount exactly as the source sent it"
        );
    }
}

#[test]
fn the_record_has_exact_bytes() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    let out = insert(&k, &schema, dec("500.01"));
    assert_eq!(
        out,
        vec![ProducerRecord::new(
            "shop.big_orders".into(),
            Some(br#"{"order_id":7}"#.to_vec()),
            Some(br#"{"order_id":7,"amount":"500.01","customer":"ann","op":"c"}"#.to_vec()),
        )],
        "no explicit partition and no headers of its own: the daemon adds the ordo.* headers"
    );
}

#[test]
fn an_update_that_raises_the_amount_is_reported_with_op_u() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    let out = process(
        &k,
        &schema,
        Op::Update,
        Some(row(7, "ann", dec("100.00"))),
        Some(row(7, "ann \"the\" big", dec("750.00"))),
    )
    .unwrap();
    assert_eq!(
        text(out[0].value.as_ref()),
        r#"{"order_id":7,"amount":"750.00","customer":"ann \"the\" big","op":"u"}"#
    );
    let lowered = process(
        &k,
        &schema,
        Op::Update,
        Some(row(7, "ann", dec("750.00"))),
        Some(row(7, "ann", dec("20.00"))),
    );
    assert!(lowered.unwrap().is_empty(), "the after image decides");
}

#[test]
fn deletes_truncates_snapshot_reads_and_missing_amounts_make_nothing() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    let big = || Some(row(7, "ann", dec("1200.00")));
    assert!(
        process(&k, &schema, Op::Delete, big(), None)
            .unwrap()
            .is_empty()
    );
    assert!(
        process(&k, &schema, Op::Truncate, None, None)
            .unwrap()
            .is_empty()
    );
    assert!(
        process(&k, &schema, Op::Read, None, big())
            .unwrap()
            .is_empty()
    );
    for nothing in [Value::Null, Value::Unchanged, dec("NaN"), dec("-Infinity")] {
        assert!(
            insert(&k, &schema, nothing.clone()).is_empty(),
            "{nothing:?}"
        );
    }
    assert_eq!(insert(&k, &schema, dec("Infinity")).len(), 1);
}

#[test]
fn an_unsent_customer_is_left_out_and_a_null_one_is_null() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    let unsent = vec![Value::Int(8), Value::Unchanged, dec("600.00")];
    let out = process(&k, &schema, Op::Update, None, Some(unsent)).unwrap();
    assert_eq!(
        text(out[0].value.as_ref()),
        r#"{"order_id":8,"amount":"600.00","op":"u"}"#
    );
    let null = vec![Value::Int(8), Value::Null, dec("600.00")];
    let out = process(&k, &schema, Op::Insert, None, Some(null)).unwrap();
    assert_eq!(
        text(out[0].value.as_ref()),
        r#"{"order_id":8,"amount":"600.00","customer":null,"op":"c"}"#
    );
}

#[test]
fn the_threshold_and_columns_come_from_the_options() {
    let schema = Arc::new(TableSchema {
        id: TableId::new("sales", "orders"),
        version: 3,
        columns: vec![
            column("order_no", "bigint", ColumnKind::Int(64)),
            column("total_cents", "bigint unsigned", ColumnKind::UInt(64)),
            column("buyer", "varchar(40)", ColumnKind::Text),
        ],
        key: vec![0],
    });
    let options = json!({
        "threshold": 100000,
        "amount_column": "total_cents",
        "id_column": "order_no",
        "customer_column": "buyer",
    });
    let k = kcop(&schema, options);
    let row = |cents: u64| vec![Value::Int(5), Value::UInt(cents), Value::Text("bo".into())];
    let run = |cents| process(&k, &schema, Op::Insert, None, Some(row(cents))).unwrap();
    assert!(run(100_000).is_empty());
    assert_eq!(
        text(run(100_001)[0].value.as_ref()),
        r#"{"order_id":5,"amount":"100001","customer":"bo","op":"c"}"#
    );
}

#[test]
fn thresholds_are_exact_whether_written_as_strings_or_numbers() {
    let schema = numeric();
    for (written, normalised) in [
        (json!("1250.50"), "1250.5"),
        (json!(1250.5), "1250.5"),
        (json!(0.1), "0.1"),
        (json!(-3), "-3"),
        (json!("0500.000"), "500"),
    ] {
        let k = kcop(&schema, json!({ "threshold": written }));
        assert_eq!(k.threshold().to_string(), normalised, "{written}");
    }
    let k = kcop(&schema, json!({ "threshold": "0.1" }));
    assert!(insert(&k, &schema, dec("0.10")).is_empty());
    assert_eq!(insert(&k, &schema, dec("0.11")).len(), 1);
}

#[test]
fn bad_options_are_config_errors_that_say_how_to_fix_them() {
    let schema = numeric();
    let cases = [
        (json!({ "threshold": "5OO" }), "options.threshold `5OO`"),
        (json!({ "threshold": 1e300 }), "like \"500\""),
        (
            json!({ "threshold": true }),
            "options.threshold is true, not a number",
        ),
        (json!({ "treshold": "500" }), "unknown field `treshold`"),
    ];
    for (options, expected) in cases {
        let e = config_error(&schema, &output(options));
        assert!(e.starts_with("table public.orders: "), "{e}");
        assert!(e.contains(expected), "{e}");
    }
}

#[test]
fn unknown_columns_name_the_table_the_column_and_what_the_table_has() {
    let schema = numeric();
    let e = config_error(&schema, &output(json!({ "amount_column": "total" })));
    assert_eq!(
        e,
        "table public.orders: the `big-orders` KCOP reads column `total` (options.amount_column), \
         which the table does not have; it has: id, customer, amount. Set options.amount_column \
         to one of those, or map `big-orders` to another table"
    );
    let e = config_error(&schema, &output(json!({ "id_column": "order_id" })));
    assert!(e.contains("column `order_id` (options.id_column)"), "{e}");
    let mut renamed = (*schema).clone();
    renamed.columns[1].name = "client".to_owned();
    let e = config_error(&renamed, &output(json!({})));
    assert!(
        e.contains("column `customer` (options.customer_column)"),
        "{e}"
    );
}

#[test]
fn an_inexact_amount_column_or_unused_output_settings_are_refused() {
    let floats = orders("double precision", ColumnKind::Float64);
    let e = config_error(&floats, &output(json!({})));
    assert!(
        e.contains("column `amount` is `double precision`, not an exact number"),
        "{e}"
    );
    let mut projected = output(json!({}));
    projected.columns = Some(vec!["id".to_owned()]);
    let e = config_error(&numeric(), &projected);
    assert!(e.contains("`columns` and `key` do nothing"), "{e}");
}

#[test]
fn a_value_that_contradicts_the_schema_is_an_encode_error() {
    let schema = numeric();
    let k = kcop(&schema, json!({}));
    let e = process(
        &k,
        &schema,
        Op::Insert,
        None,
        Some(row(1, "a", Value::Float64(9e9))),
    );
    assert!(
        matches!(&e, Err(KcopError::Encode { table, column, .. }) if table == "public.orders" && column == "amount"),
        "{e:?}"
    );
}

#[test]
fn the_factory_is_a_registrable_kcop_factory() {
    let factory: ordo_capture::routes::KcopFactory = Arc::new(build);
    let mut registry = ordo_capture::routes::KcopRegistry::default();
    registry.register(NAME, factory);
    assert_eq!(registry.names().collect::<Vec<_>>(), [NAME]);
}

#[test]
fn the_example_config_selects_this_kcop() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ordo.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let config = ordo_config::parse_with_env(&text, path, |_| Some("secret".to_owned()))
        .unwrap_or_else(|e| panic!("{path} is invalid:\n{e}"));
    let outputs: Vec<&Output> = config
        .mappings
        .iter()
        .flat_map(|m| &m.outputs)
        .filter(|o| o.kcop.as_deref() == Some(NAME))
        .collect();
    assert_eq!(outputs.len(), 1, "one `kcop: {NAME}` output");
    assert_eq!(outputs[0].format, ordo_config::Format::Custom);
    let k = BigOrders::new(outputs[0], &numeric(), "t".into()).unwrap();
    assert_eq!(k.threshold().to_string(), "500");
}
