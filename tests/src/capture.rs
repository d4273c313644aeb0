//! Running the capture daemon inside a test.

use std::sync::Arc;

use ordo_capture::daemon;
use ordo_capture::routes::KcopRegistry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daemon running in the test's runtime.
#[derive(Debug)]
pub struct RunningDaemon {
    /// Fires shutdown.
    pub shutdown: CancellationToken,
    /// The daemon's task.
    pub task: JoinHandle<Result<(), daemon::DaemonError>>,
}

impl RunningDaemon {
    /// Panic with the daemon's error if it has stopped (for waits that would otherwise time out).
    pub async fn assert_running(&mut self) {
        if self.task.is_finished() {
            let res = (&mut self.task).await.expect("daemon task panicked");
            panic!("the daemon stopped: {res:?}");
        }
    }

    /// Stop gracefully and return the daemon's result.
    pub async fn stop(self) -> Result<(), daemon::DaemonError> {
        self.shutdown.cancel();
        self.task.await.expect("daemon task panicked")
    }

    /// Kill the daemon without draining (like kill -9 for everything but the OS process):
    /// the task is aborted where it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Parse `yaml` (no environment variables) and start the daemon.
pub fn start(yaml: &str) -> RunningDaemon {
    init_logging();
    let config = ordo_config::parse_with_env(yaml, "test.yaml", |_| None)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    start_config(Arc::new(config), KcopRegistry::default())
}

/// Start the daemon with a parsed config and a KCOP registry.
pub fn start_config(config: Arc<ordo_config::Config>, registry: KcopRegistry) -> RunningDaemon {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon::run(config, registry, shutdown.clone()));
    RunningDaemon { shutdown, task }
}

/// Send the daemon's logs to the test output (`RUST_LOG` sets the level; default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts `ordo run --config <config>` as a child process with `RUST_LOG=info`, its stdout
/// discarded and its stderr (the log) appended to `log`.
pub fn spawn_ordo_run(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open the log {}: {e}", log.display()));
    std::process::Command::new(ordo_binary())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ordo")
}

/// `cargo` as a shell would start it: without the variables cargo sets for the programs it
/// runs (`CARGO_PKG_*`, `CARGO_MANIFEST_*`, `CARGO_BIN_*`, `LD_LIBRARY_PATH` with the target
/// directories...). Build scripts watch some of them, so a build started with them would
/// rebuild native dependencies (`ring`, and all above it), and the next build from a shell
/// would rebuild them again.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "LD_LIBRARY_PATH",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// The `ordo` binary of `profile` (`debug` or `release`): the path in the environment variable
/// `var` when it is set, else built now with `cargo build -p ordo-capture --bin ordo`.
fn built_ordo(var: &str, profile: &str) -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os(var) {
        let bin = std::path::PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{var}={} is not a file: build it (cargo build --profile {profile} -p ordo-capture --bin ordo) or unset {var}",
            bin.display()
        );
        return bin;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo_profile = if profile == "debug" { "dev" } else { profile };
    let status = cargo()
        .args(["build", "-q", "--profile", cargo_profile])
        .args(["-p", "ordo-capture", "--bin", "ordo"])
        .current_dir(&root)
        .status()
        .expect("run cargo build for the ordo binary");
    assert!(
        status.success(),
        "building the {profile} ordo binary failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    target.join(profile).join("ordo")
}

/// The release `ordo` for benchmarks: `$ORDO_RELEASE_BIN` when set (`scripts/bench` builds it
/// once), else built now.
pub fn release_ordo_binary() -> std::path::PathBuf {
    built_ordo("ORDO_RELEASE_BIN", "release")
}

/// The `ordo` binary: `$ORDO_BIN` when set (`scripts/test` points it at the binary its own
/// `cargo test --no-run` built, so no second build with other features happens), else built on
/// first use.
pub fn ordo_binary() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| built_ordo("ORDO_BIN", "debug")).clone()
}

/// After a fault run: waits (up to 120 s) until the commit topic holds `expected` records,
/// stops `daemon` with SIGTERM and asserts it exits 0 and writes no further commit record.
/// Returns the commit records. `log` is the daemon's log file, named in failures.
pub async fn wait_then_stop(
    mut daemon: std::process::Child,
    commit_topic: &str,
    expected: usize,
    log: &std::path::Path,
) -> Vec<ordo_tcc::commit_stream::CommitRecord> {
    let read = |topic: String| async move {
        let recs = tokio::task::spawn_blocking(move || crate::kafka::read_all(&topic))
            .await
            .expect("read the commit topic");
        crate::invariant::decode_commits(&recs)
    };
    let what = format!("{expected} commit records (log: {})", log.display());
    let records = crate::stack::wait_until(&what, std::time::Duration::from_secs(120), || {
        let topic = commit_topic.to_owned();
        async move { Some(read(topic).await).filter(|r| r.len() >= expected) }
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().expect("wait for ordo");
    assert!(
        status.success(),
        "graceful stop exit status {status:?}; log: {}",
        log.display()
    );
    let again = read(commit_topic.to_owned()).await;
    assert_eq!(
        again.len(),
        records.len(),
        "no commit record after the graceful stop"
    );
    again
}
