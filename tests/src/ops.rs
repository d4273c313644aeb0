//! Helpers for the operations suites: the metrics endpoint and Prometheus text.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback address with a port that was free a moment ago (bind it soon).
pub fn free_local_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local address of a bound socket")
}

/// `GET path` over HTTP/1.1: the status code and the body; `None` when nothing listens.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the sample `series` (the name with its labels exactly as printed, e.g.
/// `ordo_rows_captured_total{table="public.orders"}`) in Prometheus text `body`.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A throwaway PostgreSQL 15 server in a temporary directory, for settings the shared stack
/// server must keep (`wal_level`, `max_replication_slots`...). Stopped and removed on drop.
#[derive(Debug)]
pub struct ThrowawayPg {
    /// TCP port on 127.0.0.1; the superuser `ordo` logs in without a password.
    pub port: u16,
    dir: tempfile::TempDir,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL program, as the OS user `postgres` when we are root (PostgreSQL refuses
/// to run as root), from `/`.
fn as_pg(program: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{PG_BIN}/{program}");
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        std::process::Command::new(&path)
    };
    cmd.args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("running {path}: {e}"))
}

impl ThrowawayPg {
    /// initdb and start a server with `settings` (`name=value`) on a free port.
    pub fn start(settings: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordo-pg-")
            .tempdir()
            .expect("a temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create the data directory");
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the throwaway PostgreSQL directory to postgres");
        }
        let data_s = data.to_str().expect("a UTF-8 temp path");
        let out = as_pg(
            "initdb",
            &[
                "-D",
                data_s,
                "--username=ordo",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_local_addr().port();
        let dir_s = dir.path().to_str().expect("a UTF-8 temp path");
        let mut opts = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir_s} -c fsync=off"
        );
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let log = format!("{dir_s}/log");
        let out = as_pg(
            "pg_ctl",
            &[
                "-D", data_s, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
        );
        assert!(
            out.status.success(),
            "throwaway PostgreSQL did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self { port, dir }
    }

    /// Replaces `pg_hba.conf` with `lines` and reloads the server.
    pub fn set_hba(&self, lines: &str) {
        let data = self.dir.path().join("data");
        std::fs::write(data.join("pg_hba.conf"), lines).expect("write pg_hba.conf");
        let out = as_pg(
            "pg_ctl",
            &["-D", data.to_str().expect("a UTF-8 temp path"), "reload"],
        );
        assert!(
            out.status.success(),
            "pg_ctl reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `sql` with psql over the server's Unix socket as `ordo` (whatever `pg_hba.conf`
    /// says for TCP).
    pub fn psql(&self, sql: &str) {
        let sock = self.dir.path().to_str().expect("a UTF-8 temp path");
        let port = self.port.to_string();
        let out = as_pg(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                sock,
                "-p",
                &port,
                "-U",
                "ordo",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if let Some(d) = data.to_str() {
            let _ = as_pg("pg_ctl", &["-D", d, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// Create `topic` with `partitions` partitions on the broker at `bootstrap`.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create an admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}
