//! The PostgreSQL replication slot seen from an ordinary SQL connection: how much WAL it
//! retains, how far it is confirmed, and whether a WAL sender is streaming from it.
//!
//! The daemon polls it every few seconds ([`monitor`]) on its own tokio-postgres connection,
//! apart from the replication connection; `ordo status` reads it once ([`read`]).

use std::sync::Arc;
use std::time::Duration;

use ordo_config::PostgresSource;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::postgres::catalog;

/// How often the slot is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The slot's state on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `pg_current_wal_lsn() - restart_lsn`: WAL the server keeps for this slot.
    pub retained_bytes: i64,
    /// The position acknowledged by the capture (`confirmed_flush_lsn`), e.g. `0/16B3748`.
    pub confirmed_flush: Option<String>,
    /// The server's current WAL position.
    pub current_lsn: String,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn`: WAL not yet acknowledged.
    pub unconfirmed_bytes: Option<i64>,
    /// Whether a connection is using the slot.
    pub active: bool,
    /// The WAL sender's state (`streaming`, `catchup`, `startup`...), empty when none.
    pub sender_state: String,
}

/// Read the slot `slot`; `None` when it does not exist.
///
/// # Errors
/// When the query fails (also on a standby, where `pg_current_wal_lsn()` is not available).
pub async fn read(client: &Client, slot: &str) -> Result<Option<SlotInfo>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT (pg_current_wal_lsn() - s.restart_lsn)::bigint, s.confirmed_flush_lsn::text, \
                    pg_current_wal_lsn()::text, (pg_current_wal_lsn() - s.confirmed_flush_lsn)::bigint, \
                    s.active, COALESCE(r.state, '') \
             FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotInfo {
        retained_bytes: r.get::<_, Option<i64>>(0).unwrap_or(0),
        confirmed_flush: r.get(1),
        current_lsn: r.get(2),
        unconfirmed_bytes: r.get(3),
        active: r.get(4),
        sender_state: r.get(5),
    }))
}

/// Poll the slot into `metrics` until `stop` fires. A lost connection is opened again at the
/// next poll; failures are logged at debug level once per outage, never fatal.
pub async fn monitor(cfg: PostgresSource, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match catalog::connect(&cfg).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "slot monitor: cannot connect; retrying");
                    continue;
                }
            };
        }
        let Some(c) = &client else { continue };
        match read(c, &cfg.slot).await {
            Ok(Some(info)) => apply(&metrics, &info),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, slot = %cfg.slot, "slot monitor: query failed"),
        }
    }
}

/// Only the retained WAL: the source reader reports its own state
/// ([`crate::metrics::source_state`]).
fn apply(metrics: &Metrics, info: &SlotInfo) {
    metrics.set_slot_retained(info.retained_bytes);
}
