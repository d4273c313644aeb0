//! systemd integration of the real `ordo` binary: READY=1, STATUS= and WATCHDOG=1 on a
//! NOTIFY_SOCKET the test listens on; the watchdog stops while the pipeline is wedged (test
//! hook) and resumes after; SIGTERM ends with STOPPING=1 and exit 0. And the example unit file
//! passes `systemd-analyze verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ordo_tests::capture::ordo_binary;
use ordo_tests::config::{kafka_yaml, pg_source_yaml_spilling};
use ordo_tests::stack::{pg_create_database, unique_name};

fn write_config(dir: &Path, db: &str, prefix: &str) -> std::path::PathBuf {
    let source = pg_source_yaml_spilling(db, prefix, "never", &dir.join("spill"));
    let kafka = kafka_yaml(&format!("{prefix}.commits"), None);
    let yaml = format!(
        r#"
{source}{kafka}mappings:
  - tables: ["public.*"]
    outputs:
      - topic: "{prefix}.{{table}}"
        format: json
logging:
  level: info
  format: text
"#,
    );
    let path = dir.join("ordo.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Datagrams received within `window`.
fn receive(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let until = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

/// Receive until `pred` holds for everything received so far, or fail after `deadline`.
fn receive_until(
    sock: &UnixDatagram,
    child: &mut Child,
    what: &str,
    deadline: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let until = Instant::now() + deadline;
    let mut all = Vec::new();
    while !pred(&all) {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; got {all:?}"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ordo exited with {status} while waiting for {what}; got {all:?}");
        }
        all.extend(receive(sock, Duration::from_millis(200)));
    }
    all
}

/// Kills the daemon if the test fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter()
        .flat_map(|m| m.lines())
        .filter(|l| *l == line)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_and_a_watchdog_that_stops_when_wedged() {
    let (db, _url) = pg_create_database("opsd").await;
    let prefix = unique_name("opsd");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db, &prefix);
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let wedge = dir.path().join("wedge");
    let log = dir.path().join("ordo.log");
    let mut guard = KillOnDrop(
        Command::new(ordo_binary())
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "1000000")
            .env("ORDO_TEST_WEDGE_PIPELINE", &wedge)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;

    let msgs = receive_until(
        &sock,
        child,
        "READY=1 and 2 pings",
        Duration::from_secs(60),
        |m| count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 2,
    );
    let status = msgs
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .and_then(|m| m.lines().find(|l| l.starts_with("STATUS=")))
        .expect("a STATUS= line with READY=1");
    assert!(
        status.starts_with("STATUS=streaming; durable position "),
        "{status}"
    );
    assert!(status.contains("source lag"), "{status}");

    std::fs::write(&wedge, b"").unwrap();
    // A ping already on its way may still arrive; after that, silence.
    receive(&sock, Duration::from_millis(1500));
    let wedged = receive(&sock, Duration::from_secs(3));
    assert_eq!(
        count(&wedged, "WATCHDOG=1"),
        0,
        "no pings while wedged: {wedged:?}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while wedged"
    );

    std::fs::remove_file(&wedge).unwrap();
    receive_until(
        &sock,
        child,
        "pings to resume",
        Duration::from_secs(10),
        |m| count(m, "WATCHDOG=1") >= 1,
    );

    // SIGHUP applies the file's new log level and says what it cannot reload.
    let pid = child.id().to_string();
    let yaml = std::fs::read_to_string(&config).unwrap();
    let debug = yaml.replace("level: info", "level: \"info,ordo_capture=debug\"");
    std::fs::write(&config, debug).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let until = Instant::now() + Duration::from_secs(30);
    let reloaded = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("SIGHUP: reloaded the log level") {
            break text;
        }
        assert!(Instant::now() < until, "no reload line in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reloaded.contains("mappings cannot be reloaded without a restart"));

    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let msgs = receive_until(&sock, child, "STOPPING=1", Duration::from_secs(30), |m| {
        count(m, "STOPPING=1") >= 1
    });
    assert!(count(&msgs, "STOPPING=1") >= 1);
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "ordo did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM drains and exits 0: {status}");
}

/// The example unit passes `systemd-analyze verify` (with ExecStart pointing at the built
/// binary, since verify checks that the executable exists). Skipped, loudly, without systemd.
#[test]
fn example_unit_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipping (apt-get install systemd)");
        return;
    };
    assert!(probe.status.success());
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/systemd/ordo.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/ordo run"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ordo.service");
    let bin = ordo_binary();
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/ordo", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        !stderr.contains("ordo.service"),
        "systemd-analyze verify warned about the unit:\n{stderr}"
    );
}
