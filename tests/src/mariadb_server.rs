//! A throwaway MariaDB server in a temporary directory, for settings the shared stack server
//! must keep (`binlog_format`, `binlog_row_image`...). Killed and removed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ops::free_local_addr;

/// A private `mariadbd` on 127.0.0.1 with the user `ordo`/`ordo` (all privileges).
#[derive(Debug)]
pub struct ThrowawayMariadb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ThrowawayMariadb {
    /// `mariadb-install-db`, then `mariadbd` with `settings` (command-line options such as
    /// `--binlog-format=STATEMENT`) on a free port; waits (60 s) until `ordo` can log in.
    pub fn start(settings: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ordo-mariadb-")
            .tempdir()
            .expect("a temp dir");
        let data = dir.path().join("data");
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ]),
            "mariadb-install-db",
        );
        let port = free_local_addr().port();
        let sock = dir.path().join("sock");
        let log = std::fs::File::create(dir.path().join("log")).expect("create the server log");
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(settings)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mariadbd");
        let server = Self { port, child, dir };
        server.provision(&sock);
        server
    }

    /// Waits for the socket and creates the user `ordo`.
    fn provision(&self, sock: &std::path::Path) {
        let started = Instant::now();
        let sql = "CREATE USER 'ordo'@'%' IDENTIFIED BY 'ordo'; \
                   GRANT ALL PRIVILEGES ON *.* TO 'ordo'@'%' WITH GRANT OPTION;";
        loop {
            // `timeout`: a server that cannot write (a full disk) waits forever inside a query.
            let out = Command::new("timeout")
                .args(["20", "mariadb", "--no-defaults"])
                .arg(format!("--socket={}", sock.display()))
                .args(["-uroot", "--connect-timeout=2", "-e", sql])
                .output()
                .expect("run the mariadb client");
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the throwaway MariaDB did not accept connections in 60 s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ThrowawayMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
