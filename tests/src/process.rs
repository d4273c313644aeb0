//! The `ordo` binary as an operating-system process: one-shot commands with their exit code
//! and output, `ordo run` children waited for with a bound, and the resident memory and open
//! file descriptors of a running daemon (from `/proc`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::capture::ordo_binary;

/// Writes `yaml` to `dir/name` and returns the path.
pub fn write_config(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Runs `ordo <args>` to its end: the exit code (-1 when killed by a signal) and its stdout
/// followed by its stderr.
pub fn ordo(args: &[&str]) -> (i32, String) {
    let out = Command::new(ordo_binary())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ordo {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// An `ordo run` child with its log file (stderr, `RUST_LOG=info`), killed on drop.
#[derive(Debug)]
pub struct OrdoRun {
    /// The process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl OrdoRun {
    /// Starts `ordo run --config config`, appending its log to `log`.
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_command(Command::new(ordo_binary()), config, log)
    }

    /// Starts `command` (the `ordo` binary, or a wrapper that ends by running it with the
    /// arguments given here) with `run --config config`, appending its log to `log`.
    pub fn start_command(mut command: Command, config: &Path, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open the log {}: {e}", log.display()));
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start ordo run: {e}"));
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `marker`, panicking (with the log) after `bound` or when
    /// the process exits first.
    pub async fn wait_log(&mut self, marker: &str, bound: Duration) {
        let started = Instant::now();
        loop {
            if self.log_text().contains(marker) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ordo exited ({status}) before logging {marker:?}; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < bound,
                "no {marker:?} in the log within {bound:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit on its own: its exit code (-1 for a signal) and how long
    /// it took. Panics with the log when it still runs after `bound`.
    pub async fn wait_exit(&mut self, bound: Duration) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return (status.code().unwrap_or(-1), started.elapsed()),
                Ok(None) => {}
                Err(e) => panic!("waiting for ordo: {e}"),
            }
            assert!(
                started.elapsed() < bound,
                "ordo still runs after {bound:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits (up to 60 s) for the exit code.
    pub async fn sigterm(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(60)).await.0
    }
}

impl Drop for OrdoRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory (`VmRSS`, KiB) and open file descriptors of process `pid`; `None` once it
/// has exited.
pub fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}
