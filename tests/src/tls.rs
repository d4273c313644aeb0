//! TLS and SASL fixtures: certificates made by the test with the `openssl` command, private
//! PostgreSQL and MariaDB servers with `ssl` on, private nisshi brokers with a TLS listener or
//! SCRAM authentication, and a Kafka reader that takes librdkafka properties. Nothing here
//! touches the shared stack's servers, so these suites run in parallel with the others.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::ops::{ThrowawayPg, free_local_addr};
use crate::stack::{stack, wait_until};

/// A certificate authority, a server certificate it signed for `localhost` and `127.0.0.1`,
/// a client certificate it signed, and an unrelated authority (the "wrong CA").
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
    /// The authority that signed the server and client certificates.
    pub ca: PathBuf,
    /// An authority that signed nothing here.
    pub wrong_ca: PathBuf,
    /// The server certificate (subject alternative names `localhost`, `127.0.0.1` unless made
    /// by [`TestCerts::generate_for`]).
    pub server_cert: PathBuf,
    /// Its key (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// A client certificate (CN `ordo`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=ordo test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_leaf(dir: &Path, name: &str, cn: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write the extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

impl TestCerts {
    /// Makes the certificates in a new temporary directory (readable by the `postgres` OS
    /// user, which the private PostgreSQL runs as when the tests run as root).
    pub fn generate() -> Self {
        Self::generate_for("DNS:localhost,IP:127.0.0.1")
    }

    /// [`TestCerts::generate`] with a server certificate for `names` (a subject alternative
    /// name list such as `DNS:db.example`).
    pub fn generate_for(names: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordo-tls-")
            .tempdir()
            .expect("a temp dir");
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "wrong-ca");
        make_leaf(
            d,
            "server",
            "ordo test server",
            &format!(
                "subjectAltName={names}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
            ),
        );
        make_leaf(
            d,
            "client",
            "ordo",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        chmod(d, 0o755);
        for f in ["ca.pem", "wrong-ca.pem", "server.pem", "client.pem"] {
            chmod(&d.join(f), 0o644);
        }
        Self {
            ca: d.join("ca.pem"),
            wrong_ca: d.join("wrong-ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A throwaway PostgreSQL 15 (`wal_level=logical`) with `ssl=on` and `certs`' server
/// certificate; the superuser `ordo` logs in without a password.
pub fn start_tls_pg(certs: &TestCerts) -> ThrowawayPg {
    // PostgreSQL wants its key owned by its OS user (or root) and private.
    let key = certs.dir().join("pg-server.key");
    std::fs::copy(&certs.server_key, &key).expect("copy the server key");
    chmod(&key, 0o600);
    if is_root() {
        let ok = Command::new("chown")
            .arg("postgres:")
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown the server key to postgres");
    }
    let cert = format!("ssl_cert_file={}", certs.server_cert.display());
    let key = format!("ssl_key_file={}", key.display());
    let ca = format!("ssl_ca_file={}", certs.ca.display());
    ThrowawayPg::start(&["wal_level=logical", "ssl=on", &cert, &key, &ca])
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A private MariaDB server on its own port and socket, with TLS when `certs` is given (and
/// the binlog settings ordo needs). User `ordo`/`ordo` has all privileges. Killed on drop.
#[derive(Debug)]
pub struct PrivateMariadb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl PrivateMariadb {
    /// Installs a data directory and starts the server.
    pub async fn start(certs: Option<&TestCerts>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordo-my-")
            .tempdir()
            .expect("a temp dir");
        let data = dir.path().join("data");
        let user = if is_root() {
            vec!["--user=root"]
        } else {
            vec![]
        };
        // Parallel installs collide on temporary tables in the shared /tmp.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = INSTALL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(&user)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(["--skip-name-resolve"])
            .output()
            .expect("run mariadb-install-db");
        drop(guard);
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_local_addr().port();
        let sock = dir.path().join("mariadb.sock");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .args(&user)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--tmpdir={}", dir.path().display()))
            .arg(format!("--log-error={}", dir.path().join("log").display()))
            .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
            .args([
                "--skip-name-resolve",
                "--log-bin=mariadb-bin",
                "--server-id=1",
            ])
            .args(["--binlog-format=ROW", "--binlog-row-image=FULL"])
            .args(["--binlog-row-metadata=FULL", "--gtid-strict-mode=ON"])
            .args(["--innodb-buffer-pool-size=16M", "--skip-innodb-doublewrite"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(c) = certs {
            cmd.arg(format!("--ssl-cert={}", c.server_cert.display()))
                .arg(format!("--ssl-key={}", c.server_key.display()))
                .arg(format!("--ssl-ca={}", c.ca.display()));
        } else {
            cmd.arg("--skip-ssl");
        }
        let child = cmd.spawn().expect("start mariadbd");
        let server = Self { port, dir, child };
        server.provision().await;
        server
    }

    async fn provision(&self) {
        let sock = self.dir.path().join("mariadb.sock");
        let sql = "CREATE USER 'ordo'@'%' IDENTIFIED BY 'ordo'; \
                   GRANT ALL PRIVILEGES ON *.* TO 'ordo'@'%' WITH GRANT OPTION;";
        wait_until(
            "the private mariadb to accept the ordo user",
            Duration::from_secs(60),
            || {
                let sock = sock.clone();
                async move {
                    let out = tokio::process::Command::new("mariadb")
                        .arg("--no-defaults")
                        .arg(format!("--socket={}", sock.display()))
                        .args(["-uroot", "-e", sql])
                        .output()
                        .await
                        .ok()?;
                    out.status.success().then_some(())
                }
            },
        )
        .await;
    }

    /// Runs `sql` as root over the socket.
    pub fn sql(&self, sql: &str) {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mariadb.sock").display()
            ))
            .args(["-uroot", "-e", sql])
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a private broker authenticates and encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerSecurity {
    /// A TLS listener with the test's server certificate.
    Tls,
    /// SASL/SCRAM over plain TCP, with the users given to [`PrivateBroker::start`].
    Scram,
}

/// A private nisshi broker (sqlite storage in a temp dir) on its own port. Killed on drop.
#[derive(Debug)]
pub struct PrivateBroker {
    /// `127.0.0.1:port`.
    pub bootstrap: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts a broker. For [`BrokerSecurity::Scram`] the users (`name`, `password`) are made
    /// first, with SCRAM-SHA-256 and SCRAM-SHA-512 credentials, on a broker without
    /// authentication over the same storage, which then restarts with `--authentication`.
    pub async fn start(
        security: BrokerSecurity,
        certs: &TestCerts,
        users: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordo-broker-")
            .tempdir()
            .expect("a temp dir");
        let port = free_local_addr().port();
        let mut b = Self {
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        std::fs::write(b.dir.path().join(".env"), "").expect("write .env");
        match security {
            BrokerSecurity::Tls => {
                b.spawn(&[
                    "--cert",
                    &certs.server_cert.display().to_string(),
                    "--key",
                    &certs.server_key.display().to_string(),
                ]);
                b.listening().await;
            }
            BrokerSecurity::Scram => {
                b.spawn(&[]);
                b.listening().await;
                for (name, password) in users {
                    for mechanism in ["scram256", "scram512"] {
                        b.nisshi_user(name, password, mechanism);
                    }
                }
                b.stop();
                b.spawn(&["--authentication"]);
                b.listening().await;
            }
        }
        b
    }

    fn nisshi() -> PathBuf {
        stack()
            .nisshi
            .clone()
            .expect("the nisshi binary: run scripts/stack up")
    }

    fn nisshi_user(&self, name: &str, password: &str, mechanism: &str) {
        let url = format!("tcp://{}", self.bootstrap);
        let out = Command::new(Self::nisshi())
            .args(["user", "create", "--broker", &url, "--mechanism", mechanism])
            .args([name, password])
            .current_dir(self.dir.path())
            .env_remove("SCHEMA_REGISTRY")
            .output()
            .expect("run nisshi user create");
        assert!(
            out.status.success(),
            "nisshi user create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&mut self, extra: &[&str]) {
        let url = format!("tcp://{}", self.bootstrap);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("open the broker log");
        let child = Command::new(Self::nisshi())
            .args(["broker", "--cluster-id", "ordo-tls-test", "--listener-url"])
            .args([&url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"])
            .args(extra)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("CLUSTER_ID")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nisshi");
        self.child = Some(child);
    }

    async fn listening(&self) {
        let addr = self.bootstrap.clone();
        wait_until(
            "the private broker to listen",
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
            },
        )
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every record value (with its partition and offset) of `topic` read with the librdkafka
/// properties `props` (bootstrap servers and security), from the beginning to the high
/// watermarks at the time of the call. Panics after 60 s.
pub fn read_values_with(props: &[(&str, &str)], topic: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let mut config = ClientConfig::new();
    config
        .set("group.id", "ordo-tests-tls-reader")
        .set("enable.auto.commit", "false");
    for (k, v) in props {
        config.set(*k, *v);
    }
    let c: BaseConsumer = config.create().expect("create a test consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .expect("metadata");
    let n = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    let mut highs = Vec::new();
    let mut remaining = 0;
    for p in 0..i32::try_from(n).unwrap_or(0) {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        highs.push(high);
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .expect("assign");
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while i64::try_from(out.len()).unwrap_or(i64::MAX) < remaining {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        let Some(Ok(msg)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let p = usize::try_from(msg.partition()).unwrap_or(0);
        if msg.offset() < highs[p] {
            out.push((
                msg.partition(),
                msg.offset(),
                msg.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Waits (up to 60 s) until `topic`, read with `props` (see [`read_values_with`]), holds at
/// least `n` records; returns how many it holds.
pub async fn wait_for_values(props: &[(&str, String)], topic: &str, n: usize) -> usize {
    let props: Vec<(String, String)> = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    wait_until(
        &format!("{n} records on {topic}"),
        Duration::from_secs(60),
        || {
            let props = props.clone();
            let topic = topic.to_owned();
            async move {
                let got = tokio::task::spawn_blocking(move || {
                    let props: Vec<(&str, &str)> = props
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    read_values_with(&props, &topic).len()
                })
                .await
                .expect("reading the topic panicked");
                (got >= n).then_some(got)
            }
        },
    )
    .await
}
