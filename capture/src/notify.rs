//! systemd integration (`Type=notify`): `READY=1` once the daemon snapshots or streams,
//! `STATUS=` with its state, durable position and lag, and `WATCHDOG=1` pings driven by the
//! pipeline's own loop.
//!
//! # Watchdog
//! The pipeline loop counts its turns ([`Metrics::pipeline_tick`]); it turns at least every
//! 100 ms even when the source is idle. [`run`] pings every half watchdog interval, and only
//! when the count moved since the last ping: a pipeline stuck anywhere (a KCOP that never
//! returns, a deadlock) stops the pings and systemd restarts the service.
//!
//! Nothing here runs unless `NOTIFY_SOCKET` is set, so outside systemd it costs nothing.
//!
//! # Test hook
//! With `ORDO_TEST_WEDGE_PIPELINE=<file>` in the environment, the pipeline stops turning while
//! that file exists ([`Wedge`]); tests use it to show the watchdog stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ordo_kcop::Position;
use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, State, now_micros};

/// The environment variable of the test hook.
pub const WEDGE_ENV: &str = "ORDO_TEST_WEDGE_PIPELINE";

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The test hook that wedges the pipeline (see the module docs).
#[derive(Debug, Default)]
pub struct Wedge {
    file: Option<PathBuf>,
}

impl Wedge {
    /// The hook as the environment configures it (usually: off).
    pub fn from_env() -> Self {
        Self {
            file: std::env::var_os(WEDGE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Wait while the wedge file exists.
    pub async fn hold(&self) {
        let Some(file) = &self.file else { return };
        let mut logged = false;
        while file.exists() {
            if !logged {
                tracing::warn!(file = %file.display(), "test hook: the pipeline is wedged while this file exists");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether the daemon runs under a service manager that listens for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "systemd notification failed");
    }
}

/// The `STATUS=` line: state, durable position and both lags.
pub fn status_line(metrics: &Metrics, durable: Option<&Position>) -> String {
    let now = now_micros();
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
    format!(
        "{}; durable position {}; source lag {}; end-to-end lag {}",
        metrics.state().name(),
        durable.map_or_else(|| "none yet".to_owned(), ToString::to_string),
        secs(metrics.source_lag(now)),
        secs(metrics.end_to_end_lag(now)),
    )
}

/// Notify systemd until `stop` fires, then send `STOPPING=1`.
pub async fn run(
    metrics: Arc<Metrics>,
    durable: watch::Receiver<Option<Position>>,
    stop: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 2).max(Duration::from_millis(10))
    });
    tracing::info!(
        watchdog_ms = watchdog.map(|w| w.as_millis() as u64),
        "notifying systemd"
    );
    let mut tick = tokio::time::interval(period);
    let (mut ready, mut last_ticks, mut last_state) = (false, metrics.pipeline_ticks(), None);
    let mut last_status = tokio::time::Instant::now();
    let mut stopping = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let state = metrics.state();
        let status = status_line(&metrics, durable.borrow().as_ref());
        if !ready && state.is_healthy() {
            ready = true;
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            (last_state, last_status) = (Some(state), tokio::time::Instant::now());
        } else if last_state != Some(state) || last_status.elapsed() >= STATUS_EVERY {
            send(&[NotifyState::Status(&status)]);
            (last_state, last_status) = (Some(state), tokio::time::Instant::now());
        }
        let ticks = metrics.pipeline_ticks();
        if watchdog.is_some() && ticks != last_ticks {
            send(&[NotifyState::Watchdog]);
        }
        last_ticks = ticks;
        if state == State::Stopping && !stopping {
            stopping = true;
            send(&[NotifyState::Stopping]);
        }
    }
    if !stopping {
        send(&[NotifyState::Stopping]);
    }
}
