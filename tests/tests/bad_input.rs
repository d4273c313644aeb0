//! Bad input, through the real `ordo` binary against the real servers: for each class of
//! docs/bad-input.md, what ordo does (the error text, the exit code, or a retry) and that no
//! position moves past what was not published.
//!
//! Shape of the runtime cases: a daemon publishes a good transaction, then meets the bad one
//! and must exit 1 within a bound naming the cause; the commit stream holds nothing of the bad
//! transaction and the replication slot is not confirmed past it; a restart meets it again
//! (nothing is skipped); once the cause is fixed, a restart publishes it (or what follows it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ordo_tests::config::{kafka_yaml, mysql_source_yaml, pg_source_yaml_spilling};
use ordo_tests::kafka::{read_all, wait_for_commits, wait_for_records};
use ordo_tests::process::{OrdoRun, ordo, write_config};
use ordo_tests::stack::{
    mysql_create_database, pg_connect, pg_create_database, pg_wait_for_slot, stack, unique_name,
};

/// How long a definite error may take to stop the daemon.
const STOP_BOUND: Duration = Duration::from_secs(60);

fn assert_has(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "expected {wanted:?} in:\n{text}");
}

/// A PostgreSQL database with one table, and a daemon config for it.
struct PgCase {
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
}

impl PgCase {
    /// A database `name_*` with `ddl`, mapping `public.*` to `<prefix>.{table}` with the
    /// output lines `output` (indented as list items' fields: 8 spaces), `kafka_extra` under
    /// `kafka:`.
    async fn new(name: &str, ddl: &str, output: &str, kafka_extra: &str) -> Self {
        let (db, url) = pg_create_database(name).await;
        let prefix = unique_name(name);
        let dir = tempfile::tempdir().unwrap();
        let c = pg_connect(&url).await;
        c.batch_execute(ddl).await.unwrap();
        // To find the commit record of a transaction in the WAL (superuser `ordo`).
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            .await
            .unwrap();
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let mut case = PgCase {
            url,
            prefix,
            config: PathBuf::new(),
            log,
            dir,
        };
        let yaml = case.yaml(&db, output, kafka_extra);
        case.config = write_config(case.dir.path(), "ordo.yaml", &yaml);
        case
    }

    fn yaml(&self, db: &str, output: &str, kafka_extra: &str) -> String {
        let spill = self.dir.path().join("spill");
        let source = pg_source_yaml_spilling(db, &self.prefix, "never", &spill);
        let kafka = kafka_yaml(&format!("{}.commits", self.prefix), None);
        format!(
            "{source}{kafka}{kafka_extra}mappings:\n  - tables: [\"public.*\"]\n    outputs:\n      - topic: \"{p}.{{table}}\"\n{output}",
            p = self.prefix
        )
    }

    fn commit_topic(&self) -> String {
        format!("{}.commits", self.prefix)
    }

    /// Starts the daemon and waits until its slot exists.
    async fn start(&self) -> OrdoRun {
        let run = OrdoRun::start(&self.config, &self.log);
        pg_wait_for_slot(&pg_connect(&self.url).await, &self.prefix).await;
        run
    }

    /// Runs `sql` in one transaction and returns its xid (the commit stream's `txn`).
    async fn txn(&self, sql: &str) -> String {
        let c = pg_connect(&self.url).await;
        let msgs = c
            .simple_query(&format!(
                "BEGIN; {sql}; SELECT txid_current()::text; COMMIT;"
            ))
            .await
            .unwrap();
        msgs.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    }

    /// The WAL insert position: past every record written so far (the stack runs with
    /// `synchronous_commit = off`, so `pg_current_wal_lsn()`, the write position, may lag).
    async fn wal_lsn(&self) -> u64 {
        let c = pg_connect(&self.url).await;
        let row = c
            .query_one("SELECT (pg_current_wal_insert_lsn() - '0/0')::int8", &[])
            .await
            .unwrap();
        u64::try_from(row.get::<_, i64>(0)).unwrap()
    }

    /// The slot's confirmed flush LSN.
    async fn confirmed(&self) -> u64 {
        let c = pg_connect(&self.url).await;
        let row = c
            .query_one(
                "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.prefix],
            )
            .await
            .unwrap();
        u64::try_from(row.get::<_, i64>(0)).unwrap()
    }

    /// The transaction ids of the commit stream, in order.
    async fn committed(&self) -> Vec<String> {
        let topic = self.commit_topic();
        let recs = tokio::task::spawn_blocking(move || read_all(&topic))
            .await
            .unwrap();
        ordo_tests::invariant::decode_commits(&recs)
            .into_iter()
            .map(|c| c.txn)
            .collect()
    }

    /// Where the commit record of transaction `xid` starts in the WAL (read with pg_walinspect
    /// from `from` on; waits up to 30 s for the record to be flushed).
    async fn commit_lsn(&self, xid: &str, from: u64) -> u64 {
        let c = pg_connect(&self.url).await;
        let sql = format!(
            "SELECT (start_lsn - '0/0')::int8 FROM pg_get_wal_records_info_till_end_of_wal('{:X}/{:X}') \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid::text = '{xid}'",
            from >> 32,
            from & 0xFFFF_FFFF
        );
        ordo_tests::stack::wait_until(
            &format!("the commit record of transaction {xid}"),
            Duration::from_secs(30),
            || async {
                let rows = c.query(&sql, &[]).await.unwrap();
                rows.first()
                    .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap())
            },
        )
        .await
    }

    /// The daemon stopped on the bad transaction `bad` (its xid, and the WAL position before
    /// it): exit 1 within [`STOP_BOUND`], the log has every one of `wanted`, the commit stream
    /// is still `good`, and the slot is not confirmed past the start of the bad transaction's
    /// commit record, so PostgreSQL sends it again. (The slot may be confirmed inside the bad
    /// transaction: a keepalive while the server still reads it reports such a position when no
    /// transaction is pending. PostgreSQL replays every transaction whose commit record starts
    /// at or after the confirmed position, so that is safe.)
    async fn assert_stopped_before(
        &self,
        run: &mut OrdoRun,
        wanted: &[&str],
        good: &[String],
        bad: (&str, u64),
    ) {
        let (code, took) = run.wait_exit(STOP_BOUND).await;
        let log = run.log_text();
        println!("stopped with exit code {code} after {took:?}");
        assert_eq!(code, 1, "a runtime failure exits 1; log:\n{log}");
        for w in wanted {
            assert_has(&log, w);
        }
        assert_eq!(
            self.committed().await,
            good,
            "nothing of the bad transaction"
        );
        let confirmed = self.confirmed().await;
        let commit = self.commit_lsn(bad.0, bad.1).await;
        assert!(
            confirmed <= commit,
            "the slot is confirmed at {confirmed:#x}, past the commit of the bad transaction at {commit:#x}"
        );
    }

    /// Replaces `from` by `to` in the config file.
    fn edit(&self, from: &str, to: &str) {
        let yaml = std::fs::read_to_string(&self.config).unwrap();
        assert!(yaml.contains(from), "{from:?} in the config");
        std::fs::write(&self.config, yaml.replace(from, to)).unwrap();
    }

    async fn drop_slot(&self) {
        let c = pg_connect(&self.url).await;
        let _ = c
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.prefix],
            )
            .await;
    }
}

/// Waits until the commit stream lists `txn` and returns every transaction id.
async fn wait_committed(case: &PgCase, txn: &str) -> Vec<String> {
    ordo_tests::stack::wait_until(
        &format!(
            "transaction {txn} in the commit stream (log: {})",
            case.log.display()
        ),
        Duration::from_secs(60),
        || async {
            let all = case.committed().await;
            all.iter().any(|t| t == txn).then_some(all)
        },
    )
    .await
}

#[test]
fn malformed_yaml_exits_2_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "source:\n  postgres:\n    host: \"db\n",
            "3:11: source.postgres.host: unclosed quote",
        ),
        ("source:\n\tpostgres: {}\n", "2:2: source: tabs disallowed"),
        (
            "source:\n  postgres:\n    host: db\n    colour: blue\n",
            "4:5: source.postgres.colour: unknown field `colour`",
        ),
    ];
    for (i, (yaml, wanted)) in cases.iter().enumerate() {
        let path = write_config(dir.path(), &format!("bad{i}.yaml"), yaml);
        let path = path.to_str().unwrap();
        for args in [
            &["check", "--offline", "--config", path][..],
            &["run", "--config", path][..],
        ] {
            let (code, out) = ordo(args);
            assert_eq!(code, 2, "ordo {args:?}: {out}");
            assert_has(&out, &format!("{path}:{wanted}"));
            assert_has(&out, "hint: ");
        }
    }
    let missing = dir.path().join("missing.yaml");
    let (code, out) = ordo(&["run", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "cannot read the config file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_that_select_no_table_fail_the_check() {
    let case = PgCase::new(
        "unknowntbl",
        "CREATE TABLE orders (id int PRIMARY KEY)",
        "        format: json\n",
        "",
    )
    .await;
    case.edit("tables: [\"public.*\"]", "tables: [\"public.nope\"]");
    let (code, out) = ordo(&["check", "--config", case.config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert_has(
        &out,
        "problem: the number of mapped tables is 0 in database",
    );
    assert_has(&out, "fix: check mappings[].tables");
}

/// Types ordo has no decoder for pass through as their text form (PostgreSQL's output
/// function), typed `text` in the schema, instead of failing: a composite, an array of a
/// composite, a range, a domain over one, and an enum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_types_without_a_decoder_pass_as_text() {
    let case = PgCase::new(
        "oddtypes",
        "CREATE TYPE pair AS (a int, b text);
         CREATE TYPE mood AS ENUM ('sad', 'ok');
         CREATE DOMAIN span AS int4range CHECK (NOT isempty(VALUE));
         CREATE TABLE odd (id int PRIMARY KEY, p pair, ps pair[], r int4range, s span, m mood)",
        "        format: json\n",
        "",
    )
    .await;
    let mut run = case.start().await;
    case.txn(
        "INSERT INTO odd VALUES (1, ROW(1, 'x y'), ARRAY[ROW(2, 'z')::pair, NULL], '[1,5)', '[2,3)', 'ok')",
    )
    .await;
    let recs = wait_for_records(&format!("{}.odd", case.prefix), 1).await;
    assert_eq!(run.sigterm().await, 0, "log:\n{}", run.log_text());
    let after = &recs[0].json();
    assert_eq!(after["p"], "(1,\"x y\")", "{after}");
    assert_eq!(after["ps"], serde_json::json!(["(2,z)", null]), "{after}");
    assert_eq!(after["r"], "[1,5)", "{after}");
    assert_eq!(after["s"], "[2,3)", "{after}");
    assert_eq!(after["m"], "ok", "{after}");
    case.drop_slot().await;
}

/// MariaDB's own types (UUID, INET6) and spatial types are captured too: UUID and INET6 as
/// their text, GEOMETRY as its WKB bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_uuid_inet6_and_geometry_are_captured() {
    use mysql_async::prelude::Queryable as _;
    let db = mysql_create_database("myodd").await;
    let prefix = unique_name("myodd");
    let url = format!("{}/{db}", stack().mysql_url.trim_end_matches('/'));
    let mut c = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    c.query_drop(
        "CREATE TABLE odd (id INT PRIMARY KEY, u UUID, ip INET6, g GEOMETRY) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_id = 200_000 + rand::random::<u32>() % 1_000_000;
    let yaml = format!(
        "{}{}mappings:\n  - tables: [\"{db}.*\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
        mysql_source_yaml(&db, server_id, "initial"),
        kafka_yaml(&format!("{prefix}.commits"), None)
    );
    let config = write_config(dir.path(), "ordo.yaml", &yaml);
    let mut run = OrdoRun::start(&config, &dir.path().join("ordo.log"));
    run.wait_log("requesting the binlog stream", Duration::from_secs(60))
        .await;
    c.query_drop(
        "INSERT INTO odd VALUES (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1', ST_GeomFromText('POINT(1 2)'))",
    )
    .await
    .unwrap();
    let recs = wait_for_records(&format!("{prefix}.odd"), 1).await;
    assert_eq!(run.sigterm().await, 0, "log:\n{}", run.log_text());
    let after = &recs[0].json();
    println!("mariadb odd types as JSON: {after}");
    assert_eq!(after["id"], 1, "{after}");
    assert_eq!(
        after["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{after}"
    );
    assert_eq!(after["ip"], "2001:db8::1", "{after}");
    assert!(!after["g"].is_null(), "{after}");
}

/// Creates `topic` with one partition and `max.message.bytes` = `max`.
async fn create_small_topic(topic: &str, max: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack().kafka)
        .create()
        .unwrap();
    let max = max.to_string();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &max);
    let res = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap();
    for r in res {
        r.unwrap();
    }
}

/// A row whose record is larger than a size limit: the record is refused, the daemon stops
/// (exit 1) naming the refusal, the transaction is not acknowledged, a restart meets it again;
/// a filter that leaves the row out lets the capture go on. `topic_limit`: the data topic is
/// created with that `max.message.bytes` (the broker refuses); else the topic has the default
/// and the row is over librdkafka's `message.max.bytes` (1,000,000: the producer refuses).
async fn oversized_row(name: &str, topic_limit: Option<usize>, md5s: usize, wanted: &[&str]) {
    let case = PgCase::new(
        name,
        "CREATE TABLE docs (id int PRIMARY KEY, body text)",
        "        format: json\n",
        "",
    )
    .await;
    if let Some(max) = topic_limit {
        create_small_topic(&format!("{}.docs", case.prefix), max).await;
    }
    let mut run = case.start().await;
    let good = vec![case.txn("INSERT INTO docs VALUES (1, 'small')").await];
    wait_committed(&case, &good[0]).await;
    let before = case.wal_lsn().await;
    // 32 bytes of hex per md5: a value that does not compress away.
    let bad = case
        .txn(&format!(
            "INSERT INTO docs SELECT 2, string_agg(md5(random()::text), '') FROM generate_series(1, {md5s})"
        ))
        .await;
    let next = case.txn("INSERT INTO docs VALUES (3, 'after')").await;
    case.assert_stopped_before(&mut run, wanted, &good, (&bad, before))
        .await;

    let mut again = OrdoRun::start(&case.config, &case.log);
    case.assert_stopped_before(&mut again, wanted, &good, (&bad, before))
        .await;

    case.edit(
        "        format: json\n",
        "        format: json\n        filter: \"!has(after.body) || after.body == null || size(after.body) < 60000\"\n",
    );
    let mut fixed = OrdoRun::start(&case.config, &case.log);
    let all = wait_committed(&case, &next).await;
    assert_eq!(fixed.sigterm().await, 0, "log:\n{}", fixed.log_text());
    assert_eq!(
        all.len(),
        3,
        "the filtered transaction and the next one: {all:?}"
    );
    let ids: Vec<i64> = read_all(&format!("{}.docs", case.prefix))
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3], "the big row is left out, nothing else");
    case.drop_slot().await;
}

/// ~320 kB against a topic limited to 64 KiB: the broker refuses the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_over_the_topics_max_message_bytes_stops_the_daemon() {
    let wanted = [
        "kafka delivery failed: record for topic",
        "MessageSizeTooLarge (Broker: Message size too large)",
        "no position after this transaction was acknowledged",
    ];
    oversized_row("bigrow", Some(64 * 1024), 10_000, &wanted).await;
}

/// ~1.3 MB against librdkafka's default `message.max.bytes`: the producer refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_over_the_producers_message_max_bytes_stops_the_daemon() {
    let wanted = ["kafka: produce to topic", "MessageSizeTooLarge"];
    oversized_row("hugerow", None, 40_000, &wanted).await;
}

/// A value the output format cannot encode (numeric NaN into an Avro `decimal`): exit 1 naming
/// table, column and the option that fixes it; with `decimals: string` a restart publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_value_stops_the_daemon_until_the_output_is_fixed() {
    let case = PgCase::new(
        "poison",
        "CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,2))",
        "        format: avro\n",
        "",
    )
    .await;
    let mut run = case.start().await;
    let good = vec![case.txn("INSERT INTO prices VALUES (1, 12.5)").await];
    wait_committed(&case, &good[0]).await;
    let before = case.wal_lsn().await;
    let bad = case.txn("INSERT INTO prices VALUES (2, 'NaN')").await;
    let wanted = [
        "table public.prices, column amount: numeric NaN",
        "options.decimals: string",
    ];
    case.assert_stopped_before(&mut run, &wanted, &good, (&bad, before))
        .await;
    let mut again = OrdoRun::start(&case.config, &case.log);
    case.assert_stopped_before(&mut again, &wanted, &good, (&bad, before))
        .await;

    case.edit(
        "        format: avro\n",
        "        format: avro\n        options: { decimals: string }\n",
    );
    let mut fixed = OrdoRun::start(&case.config, &case.log);
    let all = wait_committed(&case, &bad).await;
    assert_eq!(fixed.sigterm().await, 0, "log:\n{}", fixed.log_text());
    assert_eq!(all, [good[0].clone(), bad]);
    case.drop_slot().await;
}

/// No broker answers at the bootstrap address: `ordo check` exits 2 naming it; `ordo run`
/// exits 1 within a bound (librdkafka's metadata timeouts), before touching the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_an_error_within_a_bound() {
    let case = PgCase::new(
        "nobroker",
        "CREATE TABLE t (id int PRIMARY KEY)",
        "        format: json\n",
        "",
    )
    .await;
    let closed = ordo_tests::ops::free_local_addr().to_string();
    case.edit(&stack().kafka, &closed);
    let (code, out) = ordo(&["check", "--config", case.config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert_has(&out, "problem: the kafka cluster is unreachable");
    assert_has(&out, "fix: check kafka.bootstrap_servers");

    let mut run = OrdoRun::start(&case.config, &case.log);
    let (code, took) = run.wait_exit(Duration::from_secs(90)).await;
    let log = run.log_text();
    println!("ordo run with no broker: exit {code} after {took:?}");
    assert_eq!(code, 1, "log:\n{log}");
    assert_has(&log, "kafka: read metadata of topic");
    assert!(
        !log.contains("streaming"),
        "the source is not started: {log}"
    );
}

/// `kafka.create_topics: false` stands for a principal without CREATE (nisshi has no ACLs):
/// a missing commit topic fails `ordo check` (exit 2); a missing data topic stops `ordo run`
/// at the first change for it (exit 1), before any commit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_without_create_rights() {
    let case = PgCase::new(
        "nocreate",
        "CREATE TABLE t (id int PRIMARY KEY)",
        "        format: json\n",
        "  create_topics: false\n",
    )
    .await;
    let (code, out) = ordo(&["check", "--config", case.config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert_has(
        &out,
        &format!(
            "problem: commit topic {} is missing, and kafka.create_topics is false",
            case.commit_topic()
        ),
    );

    ordo_tests::ops::create_topic(&stack().kafka, &case.commit_topic(), 1).await;
    let mut run = case.start().await;
    let before = case.wal_lsn().await;
    let bad = case.txn("INSERT INTO t VALUES (1)").await;
    let wanted = [format!(
        "topic {}.t does not exist and kafka.create_topics is false; create it, or set kafka.create_topics: true",
        case.prefix
    )];
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    case.assert_stopped_before(&mut run, &wanted, &[], (&bad, before))
        .await;
    case.drop_slot().await;
}

/// A missing commit topic that may not be created is a prerequisite error: nothing starts,
/// and operations.md promises exit 2 for that (systemd's unit does not restart on 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_commit_topic_without_create_rights_exits_2() {
    let case = PgCase::new(
        "nocommit",
        "CREATE TABLE t (id int PRIMARY KEY)",
        "        format: json\n",
        "  create_topics: false\n",
    )
    .await;
    let mut run = OrdoRun::start(&case.config, &case.log);
    let (code, _) = run.wait_exit(STOP_BOUND).await;
    let log = run.log_text();
    assert_has(
        &log,
        &format!(
            "topic {} does not exist and kafka.create_topics is false",
            case.commit_topic()
        ),
    );
    assert_eq!(code, 2, "a prerequisite error; log:\n{log}");
}

/// `ordo run` on `config` until it exits by itself: the exit code and the `ordo:` line.
async fn run_to_exit(config: &Path, log: &Path) -> (i32, String) {
    let mut run = OrdoRun::start(config, log);
    let (code, took) = run.wait_exit(STOP_BOUND).await;
    let text = run.log_text();
    let line = text
        .lines()
        .find(|l| l.starts_with("ordo: "))
        .unwrap_or_else(|| panic!("no `ordo:` error line in the log:\n{text}"))
        .to_owned();
    println!("exit {code} after {took:?}: {line}");
    (code, line)
}

/// A PostgreSQL server with `wal_level=replica`: `ordo run` stops before capturing, naming the
/// setting and its fix. Returns the exit code.
async fn postgres_wrong_settings_run() -> i32 {
    let server =
        tokio::task::spawn_blocking(|| ordo_tests::ops::ThrowawayPg::start(&["wal_level=replica"]))
            .await
            .unwrap();
    let c = pg_connect(&format!(
        "postgresql://ordo@127.0.0.1:{}/postgres",
        server.port
    ))
    .await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let prefix = unique_name("walrep");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source:\n  postgres:\n    host: 127.0.0.1\n    port: {}\n    user: ordo\n    database: postgres\n    tls: {{ mode: disable }}\n    slot: {prefix}\n    publication: {prefix}\n    snapshot: never\n    spill_dir: {}\n{}mappings:\n  - tables: [\"public.*\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
        server.port,
        dir.path().join("spill").display(),
        kafka_yaml(&format!("{prefix}.commits"), None)
    );
    let config = write_config(dir.path(), "ordo.yaml", &yaml);
    let (code, line) = run_to_exit(&config, &dir.path().join("ordo.log")).await;
    assert_has(&line, "wal_level");
    assert_has(&line, "logical");
    drop(c);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_with_wrong_server_settings_names_the_fix() {
    assert_ne!(postgres_wrong_settings_run().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_with_wrong_server_settings_exits_2() {
    assert_eq!(postgres_wrong_settings_run().await, 2);
}

/// A MariaDB server with statement-based, minimal-image binlogs: `ordo check` exits 2 naming
/// each setting with its fix; `ordo run` stops naming them. Returns `ordo run`'s exit code.
async fn mariadb_wrong_settings() -> i32 {
    use mysql_async::prelude::Queryable as _;
    let server = tokio::task::spawn_blocking(|| {
        ordo_tests::mariadb_server::ThrowawayMariadb::start(&[
            "--log-bin=mb",
            "--server-id=1",
            "--binlog-format=STATEMENT",
            "--binlog-row-image=MINIMAL",
        ])
    })
    .await
    .unwrap();
    let url = format!("mysql://ordo:ordo@127.0.0.1:{}", server.port);
    let mut c = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    c.query_drop("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    let prefix = unique_name("mywrong");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source:\n  mysql:\n    flavor: mariadb\n    host: 127.0.0.1\n    port: {}\n    user: ordo\n    password: ordo\n    tls: {{ mode: disable }}\n    server_id: 4243\n    databases: [shop]\n{}mappings:\n  - tables: [\"shop.*\"]\n    outputs:\n      - topic: \"{prefix}.{{table}}\"\n        format: json\n",
        server.port,
        kafka_yaml(&format!("{prefix}.commits"), None)
    );
    let config = write_config(dir.path(), "ordo.yaml", &yaml);
    let (code, out) = ordo(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    for setting in ["binlog_format", "binlog_row_image", "binlog_row_metadata"] {
        assert_has(&out, &format!("problem: {setting} is "));
    }
    assert_has(&out, "fix: ");
    let (code, line) = run_to_exit(&config, &dir.path().join("ordo.log")).await;
    assert_has(&line, "binlog_format");
    drop(c);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_wrong_binlog_settings_name_each_fix() {
    assert_ne!(mariadb_wrong_settings().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_run_with_wrong_binlog_settings_exits_2() {
    assert_eq!(mariadb_wrong_settings().await, 2);
}

/// `ordo run` inside a private mount namespace whose spill directory is a 1 MiB tmpfs.
fn run_with_small_spill_dir(spill: &Path, config: &Path, log: &Path) -> OrdoRun {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs -o size=1m ordo-spill "$0" && bin="$1" && shift && exec "$bin" "$@""#,
        )
        .arg(spill)
        .arg(ordo_tests::capture::ordo_binary());
    OrdoRun::start_command(cmd, config, log)
}

/// The spill directory fills up while a streamed (in-progress) transaction spills: exit 1
/// naming the spill file and the fix, nothing acknowledged; with space again, a restart
/// captures the transaction whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_directory_stops_the_daemon_and_loses_nothing() {
    let case = PgCase::new(
        "spillfull",
        "CREATE TABLE t (id int PRIMARY KEY, note text)",
        "        format: json\n",
        "",
    )
    .await;
    let db = case.url.rsplit('/').next().unwrap().to_owned();
    pg_connect(&case.url)
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET logical_decoding_work_mem = '64kB'"
        ))
        .await
        .unwrap();
    let spill = case.dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let mut run = run_with_small_spill_dir(&spill, &case.config, &case.log);
    pg_wait_for_slot(&pg_connect(&case.url).await, &case.prefix).await;
    let good = vec![case.txn("INSERT INTO t VALUES (0, 'small')").await];
    wait_committed(&case, &good[0]).await;
    let before = case.wal_lsn().await;
    // ~6 MB of changes in one transaction: streamed in 64 kB chunks, over the 1 MiB tmpfs.
    let big = case
        .txn("INSERT INTO t SELECT g, repeat('x', 100) || g FROM generate_series(1, 40000) g")
        .await;
    let wanted = [
        "spill file ",
        "No space left on device",
        "check that source.postgres.spill_dir is writable and has free space",
    ];
    case.assert_stopped_before(&mut run, &wanted, &good, (&big, before))
        .await;
    assert_has(&run.log_text(), &spill.display().to_string());

    let mut fine = OrdoRun::start(&case.config, &case.log);
    let all = wait_committed(&case, &big).await;
    let commits = wait_for_commits(&case.commit_topic(), 2).await;
    assert_eq!(fine.sigterm().await, 0, "log:\n{}", fine.log_text());
    assert_eq!(all, [good[0].clone(), big]);
    assert_eq!(commits[1].ops, 40_000, "the whole transaction");
    case.drop_slot().await;
}
