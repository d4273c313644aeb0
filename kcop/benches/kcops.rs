//! Nanoseconds per operation of the built-in formats and of column encryption, on an update
//! of a realistic 6-column row with both images (issue 5's goal: `json` under 1 µs).
//!
//! Run with `cargo bench -p ordo-kcop --bench kcops`. Criterion prints its own estimates;
//! a summary table with one figure per KCOP (a plain timed loop of [`ITERATIONS`]
//! iterations in batches, `ORDO_BENCH_ITERS` to change it; the median batch) follows. The output `Vec` is cleared and
//! reused between operations, as the pipeline does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failure is a broken bench

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ordo_kcop::avro::{AvroFormat, AvroSettings, DecimalMode, Framing};
use ordo_kcop::debezium::{DebeziumConfig, DebeziumKcop, DecimalHandling};
use ordo_kcop::encrypt::{ColumnEncryptor, KEY_LEN, Keyring};
use ordo_kcop::json::{DeleteMode, JsonKcop, JsonWriter, TruncateMode};
use ordo_kcop::{
    Change, Column, ColumnKind, Kcop, Lsn, Op, Operation, Position, ProducerRecord, Row, SchemaRef,
    SourceInfo, TableId, TableSchema, TxnBegin, Value,
};

/// Iterations of the summary loop per KCOP.
const ITERATIONS: u64 = 1_000_000;
/// The goal for `json`, in nanoseconds per operation.
const JSON_GOAL_NS: f64 = 1_000.0;

fn col(name: &str, type_name: &str, kind: ColumnKind, nullable: bool) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
        kind,
        nullable,
    }
}

/// `public.orders (id bigint, qty int, customer text, amount numeric(12,2),
/// updated_at timestamptz, paid bool)`, keyed on `id`.
fn table() -> SchemaRef {
    let amount = ColumnKind::Decimal {
        precision: Some(12),
        scale: Some(2),
    };
    Arc::new(TableSchema {
        id: TableId::new("public", "orders"),
        version: 1,
        columns: vec![
            col("id", "bigint", ColumnKind::Int(64), false),
            col("qty", "integer", ColumnKind::Int(32), true),
            col("customer", "text", ColumnKind::Text, true),
            col("amount", "numeric(12,2)", amount, true),
            col(
                "updated_at",
                "timestamp with time zone",
                ColumnKind::TimestampTz,
                true,
            ),
            col("paid", "boolean", ColumnKind::Bool, true),
        ],
        key: vec![0],
    })
}

fn row(qty: i64, amount: &str, at: &str, paid: bool) -> Row {
    vec![
        Value::Int(4_200_017),
        Value::Int(qty),
        Value::Text("Ada Lovelace, London".into()),
        Value::Decimal(amount.parse().unwrap()),
        Value::TimestampTz(at.parse().unwrap()),
        Value::Bool(paid),
    ]
}

/// The update every KCOP processes, with what it needs around it.
struct Fixture {
    change: Change,
    txn: TxnBegin,
    source: SourceInfo,
}

impl Fixture {
    fn new() -> Self {
        let change = Change {
            table: table(),
            op: Op::Update,
            before: Some(row(2, "1234.50", "2024-05-01T12:30:00.123456", false)),
            after: Some(row(3, "1851.75", "2024-05-01T12:31:07.654321", true)),
            op_index: 4,
        };
        let txn = TxnBegin {
            id: "758913".into(),
            commit_time: "2024-05-01T12:31:07.7".parse().unwrap(),
            position: Some(Position::Postgres(Lsn(0x1_6B37_4D48))),
        };
        let source = SourceInfo {
            connector: "postgresql",
            name: "ordo_shop".into(),
            database: "shop".into(),
        };
        Self {
            change,
            txn,
            source,
        }
    }

    fn operation(&self) -> Operation<'_> {
        Operation {
            change: &self.change,
            txn: &self.txn,
            source: &self.source,
        }
    }
}

fn all_columns() -> Vec<usize> {
    (0..table().columns.len()).collect()
}

fn json_kcop(envelope: bool) -> JsonKcop {
    JsonKcop {
        topic: "shop.orders".into(),
        key: vec![0],
        columns: all_columns(),
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Record,
        envelope,
        writer: JsonWriter::default(),
    }
}

/// Single-object framing without a registry, as the daemon builds it when no
/// `schema_registry` is configured.
fn avro_kcop() -> impl Kcop {
    let settings = AvroSettings {
        topic: "shop.orders".into(),
        key: vec![0],
        columns: all_columns(),
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Record,
        decimals: DecimalMode::Bytes,
        namespace: "ordo".into(),
        text_columns: Vec::new(),
    };
    let format = AvroFormat::new(&table(), settings).unwrap();
    format.into_kcop(Framing::SingleObject {
        schema_topic: "shop.orders.schemas".into(),
    })
}

/// Schemas on and the daemon's default options.
fn debezium_kcop() -> impl Kcop {
    let config = DebeziumConfig {
        topic: "ordo_shop.public.orders".into(),
        key: vec![0],
        columns: all_columns(),
        deletes: DeleteMode::Image,
        truncate: TruncateMode::Record,
        schemas: true,
        decimals: DecimalHandling::Precise,
        version: "ordo-0.1.0".into(),
    };
    DebeziumKcop::new(config, &table()).unwrap()
}

/// Encrypts `customer` (a text column) in both images.
fn encryptor() -> ColumnEncryptor {
    let mut ring = Keyring::new();
    ring.add("bench", &[0x5a; KEY_LEN]).unwrap();
    ring.set_active("bench").unwrap();
    ColumnEncryptor::new(Arc::new(ring), &table(), vec![2]).unwrap()
}

/// One measured case: a name and one operation's work.
type Case = (&'static str, Box<dyn FnMut()>);

fn kcop_case(name: &'static str, kcop: impl Kcop + 'static, fx: &Arc<Fixture>) -> Case {
    let fx = fx.clone();
    let mut out: Vec<ProducerRecord> = Vec::with_capacity(4);
    let step = move || {
        out.clear();
        kcop.process(black_box(&fx.operation()), &mut out).unwrap();
        black_box(&out);
    };
    (name, Box::new(step))
}

fn encrypt_case(fx: &Arc<Fixture>) -> Case {
    let fx = fx.clone();
    let enc = encryptor();
    let step = move || {
        black_box(enc.encrypt(black_box(&fx.change)).unwrap());
    };
    ("encrypt 1 column", Box::new(step))
}

fn cases() -> Vec<Case> {
    let fx = Arc::new(Fixture::new());
    vec![
        kcop_case("json", json_kcop(false), &fx),
        kcop_case("json (envelope)", json_kcop(true), &fx),
        kcop_case("avro (single-object)", avro_kcop(), &fx),
        kcop_case("debezium (schemas)", debezium_kcop(), &fx),
        encrypt_case(&fx),
    ]
}

/// Fails the bench when `json` stops writing the bytes it is measured on.
fn check_json_bytes() {
    let fx = Fixture::new();
    let mut out = Vec::new();
    json_kcop(true).process(&fx.operation(), &mut out).unwrap();
    let value = String::from_utf8(out[0].value.clone().unwrap()).unwrap();
    let expected = concat!(
        r#"{"op":"u","before":{"id":4200017,"qty":2,"customer":"Ada Lovelace, London","#,
        r#""amount":"1234.50","updated_at":"2024-05-01T12:30:00.123456Z","paid":false},"#,
        r#""after":{"id":4200017,"qty":3,"customer":"Ada Lovelace, London","#,
        r#""amount":"1851.75","updated_at":"2024-05-01T12:31:07.654321Z","paid":true}}"#,
    );
    assert_eq!(value, expected);
    assert_eq!(out[0].key.as_deref(), Some(&br#"{"id":4200017}"#[..]));
}

fn criterion_benches(c: &mut Criterion, cases: &mut [Case]) {
    for (name, step) in cases.iter_mut() {
        c.bench_function(name, |b| b.iter(&mut *step));
    }
}

/// Batches the summary loop's iterations are split into; the table shows the median batch,
/// so a burst of load from other processes moves it less than a single long run.
const BATCHES: u64 = 20;

/// Nanoseconds per call of `step`: the median over [`BATCHES`] batches of `iterations`
/// calls in all (after a short warm-up).
fn time_loop(step: &mut dyn FnMut(), iterations: u64) -> f64 {
    for _ in 0..iterations.min(10_000) {
        step();
    }
    let per_batch = (iterations / BATCHES).max(1);
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                step();
            }
            start.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

/// The 1-minute load average, to judge how quiet the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn summary(cases: &mut [Case]) {
    let iterations = std::env::var("ORDO_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITERATIONS);
    println!(
        "\nsummary: {iterations} iterations per KCOP in {BATCHES} batches, median batch \
         (load average {} on {} cores)\n",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("| kcop | ns/op |");
    println!("|---|---:|");
    let mut json_ns = None;
    for (name, step) in cases.iter_mut() {
        let ns = time_loop(step.as_mut(), iterations);
        if *name == "json" {
            json_ns = Some(ns);
        }
        println!("| {name} | {ns:.0} |");
    }
    if let Some(ns) = json_ns {
        let verdict = if ns < JSON_GOAL_NS { "met" } else { "NOT met" };
        println!("\njson: {ns:.0} ns/op against a goal of {JSON_GOAL_NS:.0} ns/op: goal {verdict}");
    }
}

fn main() {
    check_json_bytes();
    let quick = std::env::args().any(|a| a == "--test" || a == "--list" || a == "--profile-time");
    let mut cases = cases();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &mut cases);
    c.final_summary();
    if !quick {
        summary(&mut cases);
    }
}
