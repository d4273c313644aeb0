//! CEL filters and header expressions against hand-made operations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ordo_kcop::expr::{Expr, ExprError};
use ordo_kcop::{
    Change, Column, ColumnKind, Op, Operation, SourceInfo, TableId, TableSchema, Timestamp,
    TxnBegin, Value,
};

fn schema() -> Arc<TableSchema> {
    let col = |name: &str, kind: ColumnKind| Column {
        name: name.to_owned(),
        type_name: String::new(),
        kind,
        nullable: true,
    };
    Arc::new(TableSchema {
        id: TableId::new("shop", "orders"),
        version: 1,
        columns: vec![
            col("id", ColumnKind::Int(64)),
            col(
                "amount",
                ColumnKind::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
            ),
            col("region", ColumnKind::Text),
            col("note", ColumnKind::Text),
            col("placed", ColumnKind::TimestampTz),
            col("qty", ColumnKind::UInt(32)),
        ],
        key: vec![0],
    })
}

fn row(amount: &str, note: Value) -> Vec<Value> {
    vec![
        Value::Int(1),
        Value::Decimal(amount.parse().unwrap()),
        Value::Text("eu".to_owned()),
        note,
        Value::TimestampTz("2024-05-01T12:30:00".parse().unwrap()),
        Value::UInt(3),
    ]
}

fn change(op: Op, before: Option<Vec<Value>>, after: Option<Vec<Value>>) -> Change {
    Change {
        table: schema(),
        op,
        before,
        after,
        op_index: 0,
    }
}

fn eval<T>(source: &str, change: &Change, f: impl Fn(&Expr, &Operation<'_>) -> T) -> T {
    let txn = TxnBegin {
        id: "771".into(),
        commit_time: "2024-05-01T12:30:01".parse::<Timestamp>().unwrap(),
        position: None,
    };
    let source_info = SourceInfo {
        connector: "postgresql",
        name: "test".to_owned(),
        database: "shop".to_owned(),
    };
    let op = Operation {
        change,
        txn: &txn,
        source: &source_info,
    };
    f(&Expr::compile(source).unwrap(), &op)
}

fn matches(source: &str, change: &Change) -> Result<bool, ExprError> {
    eval(source, change, |e, op| e.matches(op))
}

fn header(source: &str, change: &Change) -> Result<Option<String>, ExprError> {
    eval(source, change, |e, op| {
        e.header_value(op)
            .map(|v| v.map(|b| String::from_utf8(b).unwrap()))
    })
}

#[test]
fn filters_on_typed_columns_and_metadata() {
    let insert = change(Op::Insert, None, Some(row("600.50", Value::Null)));
    assert!(matches("after.amount > 500", &insert).unwrap());
    assert!(!matches("after.amount > 600.5", &insert).unwrap());
    assert!(
        matches(
            r#"op == "c" && table == "orders" && schema == "shop""#,
            &insert
        )
        .unwrap()
    );
    assert!(matches("after.note == null && after.qty == 3u", &insert).unwrap());
    assert!(
        matches(
            r#"after.placed > timestamp("2024-05-01T00:00:00Z")"#,
            &insert
        )
        .unwrap()
    );
    assert!(
        matches(
            r#"txn.id == "771" && txn.commit_time > after.placed"#,
            &insert
        )
        .unwrap()
    );
    assert!(matches(r#"after.region in ["eu", "us"]"#, &insert).unwrap());
}

#[test]
fn absent_images_are_empty_maps_and_markers_are_absent_keys() {
    let delete = change(Op::Delete, Some(row("10", Value::NotInImage)), None);
    assert!(!matches("has(after.amount)", &delete).unwrap());
    assert!(!matches("has(before.note)", &delete).unwrap());
    assert!(matches(r#"op != "d" && after.amount > 500 || op == "d""#, &delete).unwrap());
    let err = matches("after.amount > 500", &delete).unwrap_err();
    assert!(err.to_string().contains("no such key `amount`"), "{err}");

    let update = change(Op::Update, None, Some(row("10", Value::Unchanged)));
    assert!(matches("!has(after.note) && has(after.region)", &update).unwrap());
}

#[test]
fn non_bool_filters_and_errors_never_show_values() {
    let insert = change(
        Op::Insert,
        None,
        Some(row("600.50", Value::Text("secret".into()))),
    );
    assert_eq!(
        matches("after.region", &insert).unwrap_err(),
        ExprError::NotBool {
            actual: "string".to_owned()
        }
    );
    let err = matches("after.note > 5", &insert).unwrap_err().to_string();
    assert!(!err.contains("secret"), "{err}");
    assert!(err.contains("string"), "{err}");
}

#[test]
fn header_values_are_text() {
    let insert = change(Op::Insert, None, Some(row("600.50", Value::Null)));
    assert_eq!(
        header("after.region", &insert).unwrap().as_deref(),
        Some("eu")
    );
    assert_eq!(
        header("after.id * 10", &insert).unwrap().as_deref(),
        Some("10")
    );
    assert_eq!(
        header("after.amount", &insert).unwrap().as_deref(),
        Some("600.5")
    );
    assert_eq!(
        header("after.qty > 2u", &insert).unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        header("after.placed", &insert).unwrap().as_deref(),
        Some("2024-05-01T12:30:00Z")
    );
    assert_eq!(header("after.note", &insert).unwrap(), None);
    assert!(matches!(
        header("[1, 2]", &insert),
        Err(ExprError::NotHeaderValue { .. })
    ));
}

#[test]
fn syntax_errors_have_a_position() {
    let err = Expr::compile("after.amount >").unwrap_err();
    let ExprError::Syntax { line, column, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(line, 1);
    assert_eq!(column, 15, "the end of the expression");
    let err = Expr::compile("op == \"c\" &&\n  (after.x").unwrap_err();
    assert!(matches!(err, ExprError::Syntax { line: 2, .. }), "{err:?}");
}

#[test]
fn unknown_columns_and_names_are_found_before_running() {
    let e =
        Expr::compile(r#"after.amont > 5 && before["regon"] == "x" && has(after.gone)"#).unwrap();
    let unknown: Vec<_> = e.unknown_columns(&schema()).into_iter().collect();
    assert_eq!(unknown, ["amont", "regon"]);
    let e = Expr::compile("aftr.amount > 5 && [1, 2].all(x, x > 0)").unwrap();
    let names: Vec<_> = e.unknown_variables().into_iter().collect();
    assert_eq!(names, ["aftr"]);
}
