//! Tests against a real PostgreSQL 15 started by `scripts/stack up`, found through
//! `ORDO_TEST_PG_URL` (`postgres://user:password@host:port/database`, a superuser). Each test
//! makes its own database and slot names, so they run in parallel.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use super::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn admin_config() -> tokio_postgres::Config {
    let url = std::env::var("ORDO_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "ORDO_TEST_PG_URL is not set: run scripts/stack up and export the variable it prints \
             (postgres://ordo:ordo@127.0.0.1:55432/postgres)"
        )
    });
    url.parse()
        .unwrap_or_else(|e| panic!("ORDO_TEST_PG_URL {url:?} is not a postgres url: {e}"))
}

/// A replication config for `user`/`password` on `database` of the test server.
fn repl_config(database: &str, user: &str, password: &str) -> ReplicationConfig {
    let admin = admin_config();
    let host = match admin.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    ReplicationConfig {
        host,
        port: admin.get_ports().first().copied().unwrap_or(5432),
        user: user.to_owned(),
        password: Some(password.to_owned()),
        database: database.to_owned(),
        application_name: "ordo-test".to_owned(),
        connect_timeout: Duration::from_secs(10),
        tls: ordo_config::Tls::default(),
    }
}

/// A replication config as the superuser of `ORDO_TEST_PG_URL`.
fn superuser_repl_config(database: &str) -> ReplicationConfig {
    let admin = admin_config();
    let user = admin.get_user().unwrap_or("postgres").to_owned();
    let password = admin
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    repl_config(database, &user, &password)
}

fn url_database() -> String {
    admin_config().get_dbname().unwrap_or("postgres").to_owned()
}

async fn sql(database: &str) -> tokio_postgres::Client {
    let mut cfg = admin_config();
    cfg.dbname(database);
    let (client, connection) = cfg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!("cannot connect to ORDO_TEST_PG_URL (run scripts/stack up): {e}")
    });
    tokio::spawn(connection);
    client
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// Polls `check` every 50 ms until it returns true, failing after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `body` in a fresh database with table `t` and publication `p`, then drops the
/// database and its slots whether or not the body panicked.
async fn with_database<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = unique("ordo_test");
    let admin = sql(&url_database()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    sql(&name)
        .await
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t",
        )
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(body(name.clone())).catch_unwind().await;
    let drop_slots = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                      WHERE database = $1 AND NOT active";
    let remaining = "SELECT count(*) FROM pg_replication_slots WHERE database = $1";
    wait_until("the test's replication slots are dropped", || async {
        admin.execute(drop_slots, &[&name]).await.unwrap();
        admin
            .query_one(remaining, &[&name])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
    })
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn confirmed_flush_lsn(client: &tokio_postgres::Client, slot: &str) -> u64 {
    let row = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0)
        .as_deref()
        .and_then(parse_lsn)
        .unwrap_or(0)
}

/// `end_lsn` of a pgoutput Commit message.
fn commit_end_lsn(data: &[u8]) -> u64 {
    u64::from_be_bytes(data[10..18].try_into().unwrap())
}

/// Reads XLogData until `commits` Commit messages arrived; returns the pgoutput tags and the
/// last commit's end LSN, answering keepalives that ask for a reply.
async fn read_transactions(stream: &mut ReplicationStream, commits: usize) -> (String, u64) {
    let mut tags = String::new();
    let mut end_lsn = 0;
    let mut seen = 0;
    let read = async {
        while seen < commits {
            match stream.next().await.unwrap() {
                Some(ReplicationMessage::XLogData { data, .. }) => {
                    tags.push(char::from(data[0]));
                    if data[0] == b'C' {
                        end_lsn = commit_end_lsn(data);
                        seen += 1;
                    }
                }
                Some(ReplicationMessage::Keepalive {
                    reply_requested: true,
                    wal_end,
                    ..
                }) => {
                    stream
                        .send_status(wal_end, end_lsn, end_lsn, false)
                        .await
                        .unwrap();
                }
                Some(ReplicationMessage::Keepalive { .. }) => {}
                None => panic!("the server ended the copy early"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("timed out reading transactions");
    (tags, end_lsn)
}

async fn streaming_scenario(options: Vec<(&'static str, String)>, emit_message: bool) {
    with_database(|db| async move {
        let client = sql(&db).await;
        let mut conn = ReplicationConnection::connect(&superuser_repl_config(&db))
            .await
            .unwrap();
        assert!(conn.server_version_num().unwrap() >= 150_000);
        assert_eq!(conn.auth_method(), AuthMethod::ScramSha256);
        let system = conn.identify_system().await.unwrap();
        assert_eq!(system.dbname.as_deref(), Some(db.as_str()));
        assert!(system.timeline >= 1 && system.xlog_pos > 0 && system.system_id > 0);

        let slot = unique("ordo_slot");
        let created = conn.create_slot(&slot, true).await.unwrap();
        assert_eq!(created.slot_name, slot);
        assert!(created.consistent_point > 0);
        // The exported snapshot is importable while the replication connection is idle.
        let snapshot = created.snapshot_name.expect("an exported snapshot");
        let reader = sql(&db).await;
        reader
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
            ))
            .await
            .unwrap();

        client
            .batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3) g")
            .await
            .unwrap();
        let in_snapshot = reader
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap();
        assert_eq!(
            in_snapshot.get::<_, i64>(0),
            0,
            "the snapshot predates the insert"
        );
        reader.batch_execute("COMMIT").await.unwrap();
        if emit_message {
            client
                .batch_execute("SELECT pg_logical_emit_message(true, 'ordo', 'hello')")
                .await
                .unwrap();
        }

        let mut stream = conn.start_replication(&slot, 0, &options).await.unwrap();
        let commits = if emit_message { 2 } else { 1 };
        let (tags, end_lsn) = read_transactions(&mut stream, commits).await;
        let expected = if emit_message { "BRIIICBMC" } else { "BRIIIC" };
        assert_eq!(tags, expected);
        assert!(end_lsn > created.consistent_point);

        assert!(confirmed_flush_lsn(&client, &slot).await < end_lsn);
        stream
            .send_status(end_lsn, end_lsn, end_lsn, false)
            .await
            .unwrap();
        wait_until(
            "confirmed_flush_lsn reaches the acknowledged commit",
            || async { confirmed_flush_lsn(&client, &slot).await >= end_lsn },
        )
        .await;
        stream.stop().await.unwrap();
        let active = "SELECT active FROM pg_replication_slots WHERE slot_name = $1";
        wait_until("the slot is released", || async {
            !client
                .query_one(active, &[&slot])
                .await
                .unwrap()
                .get::<_, bool>(0)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn streams_pgoutput_v1_and_advances_the_slot() {
    let options = vec![
        ("proto_version", "1".to_owned()),
        ("publication_names", "\"p\"".to_owned()),
    ];
    streaming_scenario(options, false).await;
}

#[tokio::test]
async fn streams_pgoutput_v2_with_messages_and_advances_the_slot() {
    let options = vec![
        ("proto_version", "2".to_owned()),
        ("publication_names", "\"p\"".to_owned()),
        ("streaming", "on".to_owned()),
        ("messages", "true".to_owned()),
    ];
    streaming_scenario(options, true).await;
}

#[tokio::test]
async fn busy_slot_and_terminated_walsender_are_transient() {
    with_database(|db| async move {
        let cfg = superuser_repl_config(&db);
        let slot = unique("ordo_slot");
        let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
        conn.create_slot(&slot, false).await.unwrap();
        let options = [
            ("proto_version", "1".to_owned()),
            ("publication_names", "p".to_owned()),
        ];
        let mut stream = conn.start_replication(&slot, 0, &options).await.unwrap();

        let second = ReplicationConnection::connect(&cfg).await.unwrap();
        let busy = second
            .start_replication(&slot, 0, &options)
            .await
            .unwrap_err();
        assert_eq!(busy.code(), Some("55006"), "{busy}");
        assert!(busy.is_transient());

        let pid = stream.backend_pid().expect("walsender pid");
        let admin = sql(&db).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let ended = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Err(e) = stream.next().await {
                    return e;
                }
            }
        })
        .await
        .expect("the terminated walsender ends the stream");
        assert!(ended.is_transient(), "{ended}");
        assert_eq!(ended.code(), Some("57P01"), "{ended}");
    })
    .await;
}

#[tokio::test]
async fn server_errors_leave_the_connection_usable() {
    let mut conn = ReplicationConnection::connect(&superuser_repl_config(&url_database()))
        .await
        .unwrap();
    let e = conn.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(e.code(), Some("22012"), "{e}");
    assert!(!e.is_transient());
    let rows = conn.simple_query("SELECT 1, NULL::text").await.unwrap();
    assert_eq!(rows, vec![vec![Some("1".to_owned()), None]]);

    let missing = conn
        .start_replication(&unique("missing"), 0, &[])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("42704"), "{missing}");
    assert!(!missing.is_transient());
    assert!(missing.to_string().contains("does not exist"), "{missing}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let mut cfg = superuser_repl_config(&url_database());
    cfg.password = Some("not-the-password".to_owned());
    let e = ReplicationConnection::connect(&cfg).await.unwrap_err();
    let ReplicationError::Auth(message) = &e else {
        panic!("expected an auth error, got {e}")
    };
    assert!(
        message.contains("28P01") && message.contains("password"),
        "{message}"
    );
    assert!(!e.is_transient());
}

/// Creates or updates a login role whose password is its name (roles are cluster-wide; one
/// test owns each role it ensures).
async fn ensure_role(name: &str, attributes: &str, encryption: &str) {
    // Not the roles of scripts/stack (ordo_repl, ordo_norepl): those are its to define.
    let admin = sql(&url_database()).await;
    admin
        .batch_execute(&format!(
            "SET password_encryption = '{encryption}';
             DO $$ BEGIN CREATE ROLE {name} LOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
             ALTER ROLE {name} LOGIN {attributes} PASSWORD '{name}'"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn role_without_replication_is_refused() {
    // scripts/stack up creates ordo_norepl (LOGIN NOREPLICATION, password ordo_norepl).
    let cfg = repl_config(&url_database(), "ordo_norepl", "ordo_norepl");
    let e = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert_eq!(e.code(), Some("42501"), "{e}");
    assert!(e.to_string().contains("replication"), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn scram_sha_256_auth() {
    // scripts/stack up creates ordo_repl (LOGIN REPLICATION, password ordo_repl).
    let cfg = repl_config(&url_database(), "ordo_repl", "ordo_repl");
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    assert_eq!(conn.auth_method(), AuthMethod::ScramSha256);
    assert!(conn.backend_pid().is_some());
    assert_eq!(
        conn.identify_system().await.unwrap().dbname,
        Some(url_database())
    );
}

#[tokio::test]
async fn md5_auth() {
    ensure_role("ordo_md5", "REPLICATION", "md5").await;
    let cfg = repl_config(&url_database(), "ordo_md5", "ordo_md5");
    let conn = ReplicationConnection::connect(&cfg)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "md5 login failed; pg_hba.conf of the test server (scripts/stack up) needs \
             `host all ordo_md5 127.0.0.1/32 md5` before its scram-sha-256 lines: {e}"
            )
        });
    assert_eq!(conn.auth_method(), AuthMethod::Md5);
}

#[test]
fn lsn_text_round_trip() {
    assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
    assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    assert_eq!(format_lsn(0), "0/0");
    assert_eq!(parse_lsn("0/0"), Some(0));
    assert_eq!(parse_lsn("16B374D848"), None);
    assert_eq!(parse_lsn("1/100000000"), None);
}

#[test]
fn server_version_numbers() {
    assert_eq!(
        parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
        Some(150_018)
    );
    assert_eq!(parse_server_version("9.6.24"), Some(90_624));
    assert_eq!(parse_server_version("16beta1"), Some(160_000));
    assert_eq!(parse_server_version("devel"), None);
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
}

#[tokio::test]
async fn connect_times_out_when_the_server_is_silent() {
    // A local listener that accepts and never answers the startup message.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(DEADLINE).await;
        drop(socket);
    });
    let cfg = ReplicationConfig {
        host: "127.0.0.1".to_owned(),
        port,
        user: "ordo".to_owned(),
        password: None,
        database: "postgres".to_owned(),
        application_name: "ordo-test".to_owned(),
        connect_timeout: Duration::from_millis(200),
        tls: ordo_config::Tls {
            mode: ordo_config::TlsMode::Disable,
            ..ordo_config::Tls::default()
        },
    };
    let e = ReplicationConnection::connect(&cfg).await.unwrap_err();
    assert!(matches!(e, ReplicationError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
    silent.abort();
}
